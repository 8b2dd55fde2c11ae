/* Rotation of square filters (odd or even size) by r * pi / (2R), as a sparse linear map.
 *
 * Rotation r = q R + s is done as a resampled rotation by s * pi / (2R) followed by q exact
 * quarter turns, so T_{g(r+R)} phi = rot90(T_{g(r)} phi) holds exactly by construction.
 * Coordinates follow docs/conventions.md: (i, j) -> (u, v) = (j - c, c - i), c = (k - 1) / 2.
 * (T_g phi)(z) = phi(g^{-1} z), zero outside the support.
 *
 * Steerable resampling (docs/layers.md has the maths): the filter is read as the least-squares
 * fit of a circular-harmonic basis
 *   psi_{j,m,c}(rho, theta) = exp(-(rho - rho_j)^2 / (2 sigma^2)) cos(m theta),
 *   psi_{j,m,s}(rho, theta) = exp(-(rho - rho_j)^2 / (2 sigma^2)) sin(m theta),
 * rings rho_j = j (odd k) or j + 1/2 (even k), j = 0 .. floor((k-1)/2), harmonics
 * m = 0 .. floor(2 rho_j), sigma = 1/2, m > 0 functions zero at the origin. The span of the
 * continuous basis is closed under every rotation, so the rotated fit is exact within the basis:
 * T_s = B_s (B^T B)^{-1} B^T with B (k*k x nb) the basis sampled on the grid and B_s the basis
 * sampled at g^{-1} z. At s = 0 the map is the projection B (B^T B)^{-1} B^T. With R = 1 there
 * is nothing to resample and the maps are the exact quarter turns of the unprojected filter. */
#include "rotate.h"

#include <math.h>
#include <string.h>

#define CF_PI 3.14159265358979323846
#define STEER_SIGMA 0.5

/* One counter-clockwise quarter turn of index (i, j) in a k x k grid. */
static inline void quarter_turn(int k, int *i, int *j)
{
    int ni = k - 1 - *j, nj = *i;
    *i = ni;
    *j = nj;
}

/* Snaps to a 1e-9 grid so that exact ties (sin 30 deg = 1/2) are not broken by rounding noise. */
static inline double snap(double x) { return round(x * 1e9) / 1e9; }

/* Nearest grid coordinate for a centred coordinate x, round half away from zero: integers for
 * odd k, half-integers for even k. Returns the index (coordinate + c). */
static inline double nearest_index(double x, double c, bool even)
{
    x = snap(x);
    double r = even ? copysign(floor(fabs(x)) + 0.5, x) : round(x);
    return r + c;
}

void cf_rotmap_free(cf_rotmap *map)
{
    if (!map) return;
    cf_free(map->src);
    cf_free(map->w);
    memset(map, 0, sizeof *map);
}

static cfnet_status rotmap_alloc(const cf_allocator *alloc, cf_rotmap *map, int kk, int taps)
{
    map->kk = kk;
    map->taps = taps;
    map->src = cf_alloc(alloc, (size_t)kk * (size_t)taps * sizeof *map->src);
    map->w = cf_alloc_zero(alloc, (size_t)kk * (size_t)taps, sizeof *map->w);
    if (!map->src || !map->w) {
        cf_rotmap_free(map);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "filter rotation: out of memory");
    }
    for (size_t i = 0; i < (size_t)kk * (size_t)taps; i++) map->src[i] = -1;
    return CFNET_OK;
}

/* ---- steerable basis ---------------------------------------------------------------------- */

static int steer_rings(int k) { return (k - 1) / 2 + 1; }
static double steer_radius(int k, int j) { return j + ((k % 2) ? 0.0 : 0.5); }
static int steer_mmax(double rho) { return (int)floor(2.0 * rho + 1e-9); }

static int steer_count(int k)
{
    int nb = 0;
    for (int j = 0; j < steer_rings(k); j++) nb += 1 + 2 * steer_mmax(steer_radius(k, j));
    return nb;
}

/* Row of the basis sampled at the centred point (u, v): out[0 .. nb-1]. */
static void steer_row(int k, double u, double v, double *out)
{
    double rad = hypot(u, v), th = atan2(v, u);
    bool origin = rad < 1e-12;
    int n = 0;
    for (int j = 0; j < steer_rings(k); j++) {
        double rho = steer_radius(k, j), d = rad - rho;
        double g = exp(-d * d / (2.0 * STEER_SIGMA * STEER_SIGMA));
        out[n++] = g;
        for (int m = 1; m <= steer_mmax(rho); m++) {
            out[n++] = origin ? 0.0 : g * cos(m * th);
            out[n++] = origin ? 0.0 : g * sin(m * th);
        }
    }
}

/* Fills T (kk x kk, row = target in the s-step frame, column = source): T = B_s (B^T B)^-1 B^T. */
static cfnet_status steer_matrix(const cf_allocator *alloc, int k, double th, double *T)
{
    int kk = k * k, nb = steer_count(k);
    double c = (k - 1) / 2.0, cs = cos(th), sn = sin(th);
    double *B = cf_alloc(alloc, (size_t)kk * (size_t)nb * sizeof *B);
    double *Bs = cf_alloc(alloc, (size_t)kk * (size_t)nb * sizeof *Bs);
    double *G = cf_alloc(alloc, (size_t)nb * (size_t)nb * sizeof *G);
    double *Pp = cf_alloc(alloc, (size_t)nb * (size_t)kk * sizeof *Pp); /* (B^T B)^-1 B^T */
    cfnet_status st = CFNET_OK;
    if (!B || !Bs || !G || !Pp) {
        st = cf_error(CFNET_E_OUT_OF_MEMORY, "filter rotation: out of memory");
        goto done;
    }
    for (int t = 0; t < kk; t++) {
        double u = t % k - c, v = c - t / k;
        steer_row(k, u, v, B + (size_t)t * nb);
        steer_row(k, u * cs + v * sn, -u * sn + v * cs, Bs + (size_t)t * nb); /* g^{-1} z */
    }
    for (int a = 0; a < nb; a++)
        for (int b = 0; b < nb; b++) {
            double s = 0.0;
            for (int t = 0; t < kk; t++) s += B[(size_t)t * nb + a] * B[(size_t)t * nb + b];
            G[a * nb + b] = s;
        }
    /* Cholesky G = L L^T in place (lower triangle). */
    for (int j = 0; j < nb; j++) {
        double d = G[j * nb + j];
        for (int p = 0; p < j; p++) d -= G[j * nb + p] * G[j * nb + p];
        if (!(d > 1e-10 * G[j * nb + j])) {
            st = cf_error(CFNET_E_LIMIT, "filter rotation: steerable basis of a %dx%d filter is "
                          "singular", k, k);
            goto done;
        }
        d = sqrt(d);
        G[j * nb + j] = d;
        for (int i = j + 1; i < nb; i++) {
            double s = G[i * nb + j];
            for (int p = 0; p < j; p++) s -= G[i * nb + p] * G[j * nb + p];
            G[i * nb + j] = s / d;
        }
    }
    /* Pp = G^-1 B^T, column by column: solve L y = b, L^T x = y. */
    for (int t = 0; t < kk; t++) {
        double *x = Pp; /* column t, stride kk */
        for (int i = 0; i < nb; i++) {
            double s = B[(size_t)t * nb + i];
            for (int p = 0; p < i; p++) s -= G[i * nb + p] * x[(size_t)p * kk + t];
            x[(size_t)i * kk + t] = s / G[i * nb + i];
        }
        for (int i = nb - 1; i >= 0; i--) {
            double s = x[(size_t)i * kk + t];
            for (int p = i + 1; p < nb; p++) s -= G[p * nb + i] * x[(size_t)p * kk + t];
            x[(size_t)i * kk + t] = s / G[i * nb + i];
        }
    }
    for (int t = 0; t < kk; t++)
        for (int a = 0; a < kk; a++) {
            double s = 0.0;
            for (int j = 0; j < nb; j++) s += Bs[(size_t)t * nb + j] * Pp[(size_t)j * kk + a];
            T[(size_t)t * kk + a] = s;
        }
done:
    cf_free(B);
    cf_free(Bs);
    cf_free(G);
    cf_free(Pp);
    return st;
}

/* ---- maps --------------------------------------------------------------------------------- */

/* Entries of target t (in the s-step frame) for nearest or bilinear resampling. */
static void sparse_entry(int k, double cs, double sn, int s, cfnet_interp interp, int t,
                         int32_t *src, float *w)
{
    double c = (k - 1) / 2.0;
    bool even = (k % 2) == 0;
    int i = t / k, j = t % k;
    if (s == 0) {
        src[0] = t;
        w[0] = 1.0f;
        return;
    }
    double u = j - c, v = c - i;
    /* g^{-1} (u, v): rotate by -th. */
    double us = u * cs + v * sn, vs = -u * sn + v * cs;
    if (interp == CFNET_INTERP_NEAREST) {
        double jj = nearest_index(us, c, even), ii = nearest_index(-vs, c, even);
        if (ii >= 0 && ii <= k - 1 && jj >= 0 && jj <= k - 1) {
            src[0] = (int)ii * k + (int)jj;
            w[0] = 1.0f;
        }
        return;
    }
    int64_t taps[4];
    double wt[4];
    int nt = cf_bilinear_taps(k, i, j, cs, sn, true, taps, wt);
    for (int a = 0; a < nt; a++) {
        src[a] = (int32_t)taps[a];
        w[a] = (float)wt[a];
    }
}

int cf_bilinear_taps(int64_t S, int64_t i, int64_t j, double cs, double sn, bool snap_coords,
                     int64_t src[4], double w[4])
{
    double c = (double)(S - 1) / 2.0;
    double u = (double)j - c, v = c - (double)i;
    /* g^{-1} (u, v): rotation by -theta. */
    double us = u * cs + v * sn, vs = -u * sn + v * cs;
    double jx = us + c, ix = c - vs;
    if (snap_coords) {
        jx = snap(jx);
        ix = snap(ix);
    }
    double j0 = floor(jx), i0 = floor(ix);
    double fj = jx - j0, fi = ix - i0;
    int n = 0;
    for (int di = 0; di < 2; di++) {
        for (int dj = 0; dj < 2; dj++) {
            double ii = i0 + di, jj = j0 + dj;
            double wt = (di ? fi : 1.0 - fi) * (dj ? fj : 1.0 - fj);
            if (wt == 0.0 || ii < 0 || ii > (double)(S - 1) || jj < 0 || jj > (double)(S - 1))
                continue;
            src[n] = (int64_t)ii * S + (int64_t)jj;
            w[n] = wt;
            n++;
        }
    }
    return n;
}

cfnet_status cf_rotmap_build(const cf_allocator *alloc, int k, int R, int r, cfnet_interp interp,
                             cf_rotmap *map)
{
    memset(map, 0, sizeof *map);
    int kk = k * k, q = (r / R) % 4, s = r % R;
    double th = s * (CF_PI / (2.0 * R));
    /* With R = 1 every rotation is a quarter turn: nothing to resample, filters stay free. */
    bool steer = interp == CFNET_INTERP_STEERABLE && R > 1;
    CF_FAIL_IF(steer && k > CF_ROT_STEERABLE_MAX_K, CFNET_E_LIMIT,
               "filter rotation: steerable resampling supports filters up to %dx%d, got %dx%d",
               CF_ROT_STEERABLE_MAX_K, CF_ROT_STEERABLE_MAX_K, k, k);
    int taps = steer ? kk : (interp == CFNET_INTERP_NEAREST || s == 0) ? 1 : 4;
    CF_CHECK(rotmap_alloc(alloc, map, kk, taps));
    double *T = NULL;
    if (steer) {
        T = cf_alloc(alloc, (size_t)kk * (size_t)kk * sizeof *T);
        cfnet_status st = T ? steer_matrix(alloc, k, th, T)
                            : cf_error(CFNET_E_OUT_OF_MEMORY, "filter rotation: out of memory");
        if (st != CFNET_OK) {
            cf_free(T);
            cf_rotmap_free(map);
            return st;
        }
    }
    double cs = cos(th), sn = sin(th);
    for (int t = 0; t < kk; t++) {
        /* Target position after q exact quarter turns. */
        int ti = t / k, tj = t % k;
        for (int a = 0; a < q; a++) quarter_turn(k, &ti, &tj);
        size_t row = (size_t)(ti * k + tj) * (size_t)taps;
        if (steer) {
            for (int a = 0; a < kk; a++) {
                map->src[row + a] = a;
                map->w[row + a] = (float)T[(size_t)t * kk + a];
            }
        } else {
            sparse_entry(k, cs, sn, s, interp, t, map->src + row, map->w + row);
        }
    }
    cf_free(T);
    return CFNET_OK;
}

void cf_rotmap_apply(const cf_rotmap *map, const float *base, float *out)
{
    const int taps = map->taps;
    for (int t = 0; t < map->kk; t++) {
        const int32_t *src = map->src + (size_t)t * taps;
        const float *w = map->w + (size_t)t * taps;
        float acc = 0.0f;
        for (int a = 0; a < taps && src[a] >= 0; a++) acc += w[a] * base[src[a]];
        out[t] = acc;
    }
}

void cf_rotmap_mirror_source(int k, cf_rotmap *map)
{
    for (size_t e = 0; e < (size_t)map->kk * (size_t)map->taps; e++) {
        int32_t src = map->src[e];
        if (src >= 0) map->src[e] = src - src % k + (k - 1 - src % k);
    }
}

void cf_rotmap_apply_transpose(const cf_rotmap *map, const float *grad_out, float *grad_base)
{
    const int taps = map->taps;
    for (int t = 0; t < map->kk; t++) {
        const int32_t *src = map->src + (size_t)t * taps;
        const float *w = map->w + (size_t)t * taps;
        for (int a = 0; a < taps && src[a] >= 0; a++) grad_base[src[a]] += w[a] * grad_out[t];
    }
}
