/* Rotation of square filters (odd or even size) by r * pi / (2R), as a sparse linear map.
 *
 * Rotation r = q R + s is done as a resampled rotation by s * pi / (2R) followed by q exact
 * quarter turns, so T_{g(r+R)} phi = rot90(T_{g(r)} phi) holds exactly by construction.
 * Coordinates follow docs/conventions.md: (i, j) -> (u, v) = (j - c, c - i), c = (k - 1) / 2.
 * (T_g phi)(z) = phi(g^{-1} z), zero outside the support. */
#include "rotate.h"

#include <math.h>
#include <string.h>

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

void cf_rotmap_build(int k, int R, int r, cfnet_interp interp, cf_rotmap_entry *map)
{
    int kk = k * k, q = (r / R) % 4, s = r % R;
    double c = (k - 1) / 2.0, th = s * (3.14159265358979323846 / (2.0 * R));
    double cs = cos(th), sn = sin(th);
    bool even = (k % 2) == 0;
    for (int t = 0; t < kk; t++) {
        int i = t / k, j = t % k;
        cf_rotmap_entry e;
        memset(&e, 0, sizeof e);
        for (int a = 0; a < CF_ROT_TAPS; a++) e.src[a] = -1;
        if (s == 0) {
            e.src[0] = t;
            e.w[0] = 1.0f;
        } else {
            double u = j - c, v = c - i;
            /* g^{-1} (u, v): rotate by -th. */
            double us = u * cs + v * sn, vs = -u * sn + v * cs;
            if (interp == CFNET_INTERP_NEAREST) {
                double jj = nearest_index(us, c, even), ii = nearest_index(-vs, c, even);
                if (ii >= 0 && ii <= k - 1 && jj >= 0 && jj <= k - 1) {
                    e.src[0] = (int)ii * k + (int)jj;
                    e.w[0] = 1.0f;
                }
            } else {
                double jx = snap(us + c), ix = snap(c - vs);
                double j0 = floor(jx), i0 = floor(ix);
                double fj = jx - j0, fi = ix - i0;
                int a = 0;
                for (int di = 0; di < 2; di++) {
                    for (int dj = 0; dj < 2; dj++) {
                        int ii = (int)i0 + di, jj = (int)j0 + dj;
                        double w = (di ? fi : 1 - fi) * (dj ? fj : 1 - fj);
                        if (w == 0.0 || ii < 0 || ii >= k || jj < 0 || jj >= k) continue;
                        e.src[a] = ii * k + jj;
                        e.w[a] = (float)w;
                        a++;
                    }
                }
            }
        }
        /* Then q exact quarter turns of the target position. */
        int ti = i, tj = j;
        for (int a = 0; a < q; a++) quarter_turn(k, &ti, &tj);
        map[ti * k + tj] = e;
    }
}

void cf_rotmap_mirror_source(int k, cf_rotmap_entry *map)
{
    for (int t = 0; t < k * k; t++)
        for (int a = 0; a < CF_ROT_TAPS && map[t].src[a] >= 0; a++) {
            int src = map[t].src[a];
            map[t].src[a] = src - src % k + (k - 1 - src % k);
        }
}

void cf_rotmap_apply(const cf_rotmap_entry *map, int kk, const float *base, float *out)
{
    for (int t = 0; t < kk; t++) {
        float acc = 0.0f;
        for (int a = 0; a < CF_ROT_TAPS && map[t].src[a] >= 0; a++)
            acc += map[t].w[a] * base[map[t].src[a]];
        out[t] = acc;
    }
}

void cf_rotmap_apply_transpose(const cf_rotmap_entry *map, int kk, const float *grad_out,
                               float *grad_base)
{
    for (int t = 0; t < kk; t++)
        for (int a = 0; a < CF_ROT_TAPS && map[t].src[a] >= 0; a++)
            grad_base[map[t].src[a]] += map[t].w[a] * grad_out[t];
}
