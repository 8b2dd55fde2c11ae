/* Spatial max / mean pooling over the last two axes, square window k, step s, no padding:
 *   y[p, i, j] = max or mean of x[p, i*s + a, j*s + b], 0 <= a, b < k,
 * where p runs over every leading axis (channels, rotations) and the batch.
 * Window 0 is the equivariant choice: k = 2 for even S, 3 for odd S, s = 2, so that
 * (S - k) mod s == 0 and the windows sit symmetrically about the map centre. */
#include "core/pool.h"
#include "kernels/simd.h"
#include "nn/layer.h"

#include <string.h>

enum { ICFG_MODE, ICFG_WINDOW, ICFG_STRIDE };

typedef struct pool_geom {
    int64_t planes;              /* per sample */
    int64_t H, W;                /* input plane */
    int64_t Ho, Wo;              /* output plane */
    int64_t k, s;                /* effective window and stride */
    int64_t in_plane, out_plane; /* H * W, Ho * Wo */
    bool is_max;                 /* max pooling, else mean */
    float inv;                   /* 1 / k^2, the weight of the mean */
} pool_geom;

static pool_geom geom_of(const cfnet_layer *l)
{
    pool_geom g;
    int nd = l->in_ndim;
    g.H = l->in_shape[nd - 2];
    g.W = l->in_shape[nd - 1];
    g.planes = l->in_size / (g.H * g.W);
    if (l->icfg[ICFG_WINDOW] == 0) {
        g.k = g.H % 2 == 0 ? 2 : 3;
        g.s = 2;
    } else {
        g.k = l->icfg[ICFG_WINDOW];
        g.s = l->icfg[ICFG_STRIDE];
    }
    g.Ho = l->out_shape[nd - 2];
    g.Wo = l->out_shape[nd - 1];
    g.in_plane = g.H * g.W;
    g.out_plane = g.Ho * g.Wo;
    g.is_max = l->icfg[ICFG_MODE] == CFNET_POOL_MAX;
    g.inv = 1.0f / (float)(g.k * g.k);
    return g;
}

static cfnet_status pool_setup(cfnet_layer *l, uint64_t seed)
{
    (void)seed;
    char sb[96];
    const int nd = l->in_ndim;
    cf_shape_str(sb, sizeof sb, nd, l->in_shape);
    CF_FAIL_IF(nd < 2, CFNET_E_SHAPE_MISMATCH,
               "pool: input is %s, needs at least two axes (... x H x W)", sb);
    const int64_t H = l->in_shape[nd - 2], W = l->in_shape[nd - 1];
    int64_t k = l->icfg[ICFG_WINDOW], s = l->icfg[ICFG_STRIDE];
    if (k == 0) {
        CF_FAIL_IF(H != W, CFNET_E_SHAPE_MISMATCH,
                   "pool: input is %s, the equivariant mode (window 0) needs square maps", sb);
        k = H % 2 == 0 ? 2 : 3;
        s = 2;
    }
    CF_FAIL_IF(k > H || k > W, CFNET_E_SHAPE_MISMATCH,
               "pool: input is %s, smaller than the %lldx%lld window", sb, (long long)k,
               (long long)k);
    l->out_ndim = nd;
    for (int i = 0; i < nd - 2; i++) l->out_shape[i] = l->in_shape[i];
    l->out_shape[nd - 2] = (H - k) / s + 1;
    l->out_shape[nd - 1] = (W - k) / s + 1;
    return CFNET_OK;
}

/* Offset (within the plane) of the first maximum of the window whose top-left corner is at
 * offset `at`, scanning rows then columns. */
static inline int64_t window_argmax(const float *plane, int64_t at, int64_t W, int64_t k)
{
    int64_t best_at = at;
    float best = plane[at];
    for (int64_t a = 0; a < k; a++) {
        const float *row = plane + at + a * W;
        for (int64_t b = 0; b < k; b++) {
            if (row[b] > best) {
                best = row[b];
                best_at = at + a * W + b;
            }
        }
    }
    return best_at;
}

typedef struct pool_job {
    pool_geom g;
    const float *x, *dy;
    float *out;
} pool_job;

/* Planes [p0, p1) of the batch (each plane is independent: the split changes no bits). */
static void pool_fwd_planes(void *arg, int64_t p0, int64_t p1)
{
    const pool_job *jb = arg;
    const pool_geom g = jb->g;
    const float *x = jb->x;
    float *y = jb->out;
    if (g.is_max && g.k == 2 && g.s == 2) {
        /* the common window (kernels/simd.h): the same first maximum as window_argmax */
        const cf_simd_ops *k = cf_simd();
        for (int64_t p = p0; p < p1; p++)
            k->max2_fwd(x + p * g.in_plane, g.W, g.Ho, g.Wo, y + p * g.out_plane);
        return;
    }
    if (!g.is_max && g.k == 2 && g.s == 2) {
        /* the general loop's sum, ((0 + a) + b + c) + d, written out */
        for (int64_t p = p0; p < p1; p++) {
            const float *xp = x + p * g.in_plane;
            float *yp = y + p * g.out_plane;
            for (int64_t i = 0; i < g.Ho; i++) {
                const float *r0 = xp + 2 * i * g.W, *r1 = r0 + g.W;
                for (int64_t j = 0; j < g.Wo; j++)
                    yp[i * g.Wo + j] =
                        ((((0.0f + r0[2 * j]) + r0[2 * j + 1]) + r1[2 * j]) + r1[2 * j + 1]) *
                        g.inv;
            }
        }
        return;
    }
    for (int64_t p = p0; p < p1; p++) {
        const float *xp = x + p * g.in_plane;
        float *yp = y + p * g.out_plane;
        for (int64_t i = 0; i < g.Ho; i++) {
            for (int64_t j = 0; j < g.Wo; j++) {
                const int64_t at = i * g.s * g.W + j * g.s;
                if (g.is_max) {
                    yp[i * g.Wo + j] = xp[window_argmax(xp, at, g.W, g.k)];
                } else {
                    float sum = 0.0f;
                    for (int64_t a = 0; a < g.k; a++) {
                        const float *row = xp + at + a * g.W;
                        for (int64_t b = 0; b < g.k; b++) sum += row[b];
                    }
                    yp[i * g.Wo + j] = sum * g.inv;
                }
            }
        }
    }
}

static cfnet_status pool_forward(cfnet_layer *l, const float *x, float *y, int64_t n,
                                 bool training, void *ws)
{
    (void)training;
    (void)ws;
    pool_job j = {.g = geom_of(l), .x = x, .out = y};
    cf_parallel_for(l->threads, n * j.g.planes, cf_par_min_items(j.g.in_plane), pool_fwd_planes,
                    &j);
    return CFNET_OK;
}

/* Max: dy goes to the first maximum of each window (recomputed from x). Mean: dy / k^2 to
 * every element of the window. Overlapping windows (s < k) accumulate. */
static void pool_bwd_planes(void *arg, int64_t p0, int64_t p1)
{
    const pool_job *jb = arg;
    const pool_geom g = jb->g;
    const float *x = jb->x, *dy = jb->dy;
    float *dx = jb->out;
    if (g.is_max && g.k == 2 && g.s == 2) {
        /* The windows do not overlap: each writes its four elements (dy at the first maximum,
         * 0 + dy as the sum on zeros would give, zeros elsewhere; kernels/simd.h); only rows
         * or columns no window covers (odd sizes) need clearing first. */
        if (2 * g.Ho != g.H || 2 * g.Wo != g.W)
            memset(dx + p0 * g.in_plane, 0, (size_t)((p1 - p0) * g.in_plane) * sizeof *dx);
        const cf_simd_ops *k = cf_simd();
        for (int64_t p = p0; p < p1; p++)
            k->max2_bwd(x + p * g.in_plane, dy + p * g.out_plane, g.W, g.Ho, g.Wo,
                        dx + p * g.in_plane);
        return;
    }
    if (!g.is_max && g.k == 2 && g.s == 2) {
        /* 0 + dy / 4 to each of the window's four elements, as the general loop's sums on
         * zeros give; uncovered rows or columns (odd sizes) cleared first */
        if (2 * g.Ho != g.H || 2 * g.Wo != g.W)
            memset(dx + p0 * g.in_plane, 0, (size_t)((p1 - p0) * g.in_plane) * sizeof *dx);
        for (int64_t p = p0; p < p1; p++) {
            const float *dyp = dy + p * g.out_plane;
            float *dxp = dx + p * g.in_plane;
            for (int64_t i = 0; i < g.Ho; i++) {
                float *r0 = dxp + 2 * i * g.W, *r1 = r0 + g.W;
                for (int64_t j = 0; j < g.Wo; j++) {
                    float dm = 0.0f + dyp[i * g.Wo + j] * g.inv;
                    r0[2 * j] = dm, r0[2 * j + 1] = dm, r1[2 * j] = dm, r1[2 * j + 1] = dm;
                }
            }
        }
        return;
    }
    memset(dx + p0 * g.in_plane, 0, (size_t)((p1 - p0) * g.in_plane) * sizeof *dx);
    for (int64_t p = p0; p < p1; p++) {
        const float *xp = x + p * g.in_plane, *dyp = dy + p * g.out_plane;
        float *dxp = dx + p * g.in_plane;
        for (int64_t i = 0; i < g.Ho; i++) {
            for (int64_t j = 0; j < g.Wo; j++) {
                const int64_t at = i * g.s * g.W + j * g.s;
                const float d = dyp[i * g.Wo + j];
                if (g.is_max) {
                    dxp[window_argmax(xp, at, g.W, g.k)] += d;
                } else {
                    const float dm = d * g.inv;
                    for (int64_t a = 0; a < g.k; a++) {
                        float *row = dxp + at + a * g.W;
                        for (int64_t b = 0; b < g.k; b++) row[b] += dm;
                    }
                }
            }
        }
    }
}

static cfnet_status pool_backward(cfnet_layer *l, const float *x, const float *y,
                                  const float *dy, float *dx, int64_t n, void *ws)
{
    (void)y;
    (void)ws;
    pool_job j = {.g = geom_of(l), .x = x, .dy = dy, .out = dx};
    cf_parallel_for(l->threads, n * j.g.planes, cf_par_min_items(j.g.in_plane), pool_bwd_planes,
                    &j);
    return CFNET_OK;
}

static cfnet_status pool_check(int *ic, float *fc)
{
    (void)fc;
    int mode = ic[ICFG_MODE], window = ic[ICFG_WINDOW], stride = ic[ICFG_STRIDE];
    CF_FAIL_IF(mode != CFNET_POOL_MAX && mode != CFNET_POOL_MEAN, CFNET_E_INVALID_ARGUMENT,
               "pool: mode is %d, must be CFNET_POOL_MAX (0) or CFNET_POOL_MEAN (1)", mode);
    CF_FAIL_IF(window < 0, CFNET_E_INVALID_ARGUMENT, "pool: window is %d, must be >= 0", window);
    if (window == 0) {
        CF_FAIL_IF(stride != 0 && stride != 2, CFNET_E_INVALID_ARGUMENT,
                   "pool: stride is %d, must be 0 or 2 with window 0 (equivariant mode)", stride);
        ic[ICFG_STRIDE] = 2;
    } else {
        CF_FAIL_IF(stride < 1, CFNET_E_INVALID_ARGUMENT, "pool: stride is %d, must be >= 1",
                   stride);
    }
    return CFNET_OK;
}

const cf_layer_ops cf_pool_ops = {
    .name = "pool",
    .per_sample = true,
    .icfg_names = {"mode", "window", "stride", NULL},
    .fcfg_names = {NULL},
    .check = pool_check,
    .setup = pool_setup,
    .forward = pool_forward,
    .backward = pool_backward,
};

CFNET_API cfnet_status cfnet_layer_pool_create(cfnet_pool_mode mode, int window, int stride,
                                               cfnet_layer **out)
{
    const int cfg[] = {(int)mode, window, stride};
    return cf_layer_create(CFNET_LAYER_POOL, cfg, NULL, NULL, out);
}
