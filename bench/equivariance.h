/* Single-layer rotation-equivariance error of filter resampling (header only; used by
 * bench/bench_equivariance.c, which prints the table of docs/results.md, and by
 * tests/test_equivariance.c).
 *
 * Protocol (docs/results.md states it in words):
 *   - input: one channel, S x S = 41 x 41, f(p) = sum_{i<16} a_i exp(-|p - c_i|^2 / (2 * 2^2)),
 *     a_i ~ N(0, 1), c_i uniform in [-14, 14]^2, p = (u, v) the centred pixel coordinates of
 *     docs/conventions.md; the rotated input (T_g f)(p) = f(g^{-1} p) is evaluated exactly;
 *   - filters: one output, weights N(0, 1), bias 0, valid padding (the output keeps the centre);
 *   - measured: y = layer(T_g f) on the output grid, computed by the library;
 *     reference ref(x) = layer_c(f)(g^{-1} x), the same layer evaluated at the off-grid point
 *     g^{-1} x (its own rotated filters psi_r, exact input values, cone weights of g^{-1} x);
 *   - error: sqrt(sum (y - ref)^2 / sum ref^2) over the output pixels with |x| <= 10 and over
 *     EQV_TRIALS independent (input, filter) draws.
 * "conic": a conic convolution with the given R. "filter": a plain correlation with the
 * resampled filter psi_1 = T_{g_R(1)} phi (angle pi/(2R)) against the reference correlation with
 * psi_0 = T_0 phi, which isolates the resampling from the cones. */
#ifndef CFNET_BENCH_EQUIVARIANCE_H
#define CFNET_BENCH_EQUIVARIANCE_H

#include <cfnet/cfnet.h>

#include "kernels/rotate.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define EQV_S 41
#define EQV_BLOBS 16
#define EQV_SIGMA 2.0
#define EQV_SPREAD 14.0
#define EQV_DISC 10.0
#define EQV_TRIALS 16
#define EQV_PI 3.14159265358979323846

typedef struct eqv_rng {
    uint64_t s;
} eqv_rng;

static inline double eqv_uniform(eqv_rng *g)
{
    uint64_t z = (g->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static inline double eqv_normal(eqv_rng *g)
{
    double a = eqv_uniform(g), b = eqv_uniform(g);
    return sqrt(-2.0 * log(a)) * cos(2.0 * EQV_PI * b);
}

typedef struct eqv_field {
    double a[EQV_BLOBS], cu[EQV_BLOBS], cv[EQV_BLOBS];
} eqv_field;

static inline double eqv_eval(const eqv_field *f, double u, double v)
{
    double s = 0.0;
    for (int i = 0; i < EQV_BLOBS; i++) {
        double du = u - f->cu[i], dv = v - f->cv[i];
        s += f->a[i] * exp(-(du * du + dv * dv) / (2.0 * EQV_SIGMA * EQV_SIGMA));
    }
    return s;
}

/* Cone weight of a continuous point (u, v) for cone r of 4R (docs/conventions.md). */
static inline double eqv_cone_weight(int R, int r, double u, double v)
{
    int n = 4 * R;
    if (fabs(u) < 1e-9 && fabs(v) < 1e-9) return 1.0 / n;
    double d = EQV_PI / (2.0 * R), th = atan2(v, u);
    if (th < 0) th += 2.0 * EQV_PI;
    double pos = th / d;
    double nearest = floor(pos + 0.5);
    if (fabs(pos - nearest) < 1e-9) { /* on the ray between cones nearest-1 and nearest */
        int ray = ((int)nearest) % n;
        return (r == ray || r == (ray + n - 1) % n) ? 0.5 : 0.0;
    }
    return ((int)floor(pos)) % n == r ? 1.0 : 0.0;
}

/* Correlation of the exact input with a k x k filter at the continuous point (u, v); each blob
 * is separable, exp(-(du^2 + dv^2) / 2s^2) = exp(-du^2 / 2s^2) exp(-dv^2 / 2s^2). */
static inline double eqv_corr(const eqv_field *f, const float *psi, int k, double u, double v)
{
    double c = (k - 1) / 2.0, s = 0.0, ex[32], ey[32];
    for (int b = 0; b < EQV_BLOBS; b++) {
        for (int j = 0; j < k; j++) {
            double du = u + (j - c) - f->cu[b];
            ex[j] = exp(-du * du / (2.0 * EQV_SIGMA * EQV_SIGMA));
        }
        for (int i = 0; i < k; i++) {
            double dv = v + (c - i) - f->cv[b];
            ey[i] = f->a[b] * exp(-dv * dv / (2.0 * EQV_SIGMA * EQV_SIGMA));
        }
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++) s += ey[i] * ex[j] * psi[i * k + j];
    }
    return s;
}

/* Equivariance error for rotation angle `deg` (degrees). conic_R > 0: conic layer with that R;
 * conic_R == 0: the "filter" measure at the angle pi/(2 filter_R); conic_R < 0: a plain
 * correlation with the unrotated filter (no resampling at all). Returns -1 on a library error. */
static double eqv_error(int k, int conic_R, int filter_R, double deg, cfnet_interp interp,
                        uint64_t seed)
{
    const int S = EQV_S, OS = S - k + 1, kk = k * k;
    const double c = (S - 1) / 2.0, oc = (OS - 1) / 2.0, th = deg * EQV_PI / 180.0;
    const double cs = cos(th), sn = sin(th);
    int R = conic_R > 0 ? conic_R : filter_R, nrot = conic_R > 0 ? 4 * R : 2;
    double num = 0.0, den = 0.0;
    eqv_rng g = {seed};
    cfnet_layer *layer = NULL;
    cfnet_tensor *x = NULL, *y = NULL;
    float *phi = malloc((size_t)kk * sizeof *phi), *psi = malloc((size_t)nrot * kk * sizeof *psi);
    float *grid_filter = malloc((size_t)kk * sizeof *grid_filter);
    cf_rotmap *maps = calloc((size_t)nrot, sizeof *maps);
    int64_t xs[4] = {1, 1, S, S}, ys[4] = {1, 1, OS, OS}, in3[3] = {1, S, S};
    bool ok = phi && psi && grid_filter && maps;
    if (ok && conic_R > 0) {
        ok = cfnet_layer_conic_conv_create(1, k, R, CFNET_PADDING_VALID, interp, &layer) ==
                 CFNET_OK &&
             cfnet_layer_setup(layer, 3, in3, 1) == CFNET_OK;
    } else if (ok) {
        ok = cfnet_layer_conv2d_create(1, k, 1, CFNET_PADDING_VALID, &layer) == CFNET_OK &&
             cfnet_layer_setup(layer, 3, in3, 1) == CFNET_OK;
    }
    ok = ok && cfnet_tensor_create(4, xs, &x) == CFNET_OK &&
         cfnet_tensor_create(4, ys, &y) == CFNET_OK;
    for (int r = 0; ok && r < nrot; r++) ok = cf_rotmap_build(NULL, k, R, r, interp, &maps[r]) == CFNET_OK;
    for (int trial = 0; ok && trial < EQV_TRIALS; trial++) {
        eqv_field f;
        for (int i = 0; i < EQV_BLOBS; i++) {
            f.a[i] = eqv_normal(&g);
            f.cu[i] = (2.0 * eqv_uniform(&g) - 1.0) * EQV_SPREAD;
            f.cv[i] = (2.0 * eqv_uniform(&g) - 1.0) * EQV_SPREAD;
        }
        for (int t = 0; t < kk; t++) phi[t] = (float)eqv_normal(&g);
        for (int r = 0; r < nrot; r++) cf_rotmap_apply(&maps[r], phi, psi + (size_t)r * kk);
        /* Layer weights: the base filter for the conic layer; for the correlations, the filter
         * the grid side uses (psi_1 resampled, or phi itself). */
        const float *w = conic_R > 0 ? phi : conic_R == 0 ? psi + kk : phi;
        for (int t = 0; t < kk; t++) grid_filter[t] = w[t];
        ok = cfnet_tensor_copy_in(cfnet_layer_param(layer, 0), grid_filter, kk) == CFNET_OK &&
             cfnet_tensor_zero(cfnet_layer_param(layer, 1)) == CFNET_OK;
        float *xd = cfnet_tensor_data(x);
        for (int i = 0; i < S; i++)
            for (int j = 0; j < S; j++) {
                double u = j - c, v = c - i;
                xd[i * S + j] = (float)eqv_eval(&f, u * cs + v * sn, -u * sn + v * cs);
            }
        ok = ok && cfnet_layer_forward(layer, x, y, CFNET_MODE_INFERENCE) == CFNET_OK;
        const float *yd = cfnet_tensor_data(y);
        for (int i = 0; ok && i < OS; i++)
            for (int j = 0; j < OS; j++) {
                double u = j - oc, v = oc - i;
                if (u * u + v * v > EQV_DISC * EQV_DISC) continue;
                double bu = u * cs + v * sn, bv = -u * sn + v * cs; /* g^{-1} x */
                double ref = 0.0;
                if (conic_R > 0) {
                    for (int r = 0; r < nrot; r++) {
                        double wr = eqv_cone_weight(R, r, bu, bv);
                        if (wr != 0.0) ref += wr * eqv_corr(&f, psi + (size_t)r * kk, k, bu, bv);
                    }
                } else {
                    ref = eqv_corr(&f, conic_R == 0 ? psi : phi, k, bu, bv);
                }
                double d = yd[i * OS + j] - ref;
                num += d * d;
                den += ref * ref;
            }
    }
    if (maps)
        for (int r = 0; r < nrot; r++) cf_rotmap_free(&maps[r]);
    free(maps);
    free(phi);
    free(psi);
    free(grid_filter);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(layer);
    return ok && den > 0 ? sqrt(num / den) : -1.0;
}

#endif
