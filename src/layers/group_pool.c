/* Pooling over the group axis of a p4 or p4m map: y[c, i, j] = max or mean over g of
 * x[c, g, i, j], g = 0..G-1 with G = 4 (p4), 8 (p4m, the dihedral group D4) or 2 (the two
 * mirror copies of conic_conv_mirror).
 * Input C x G x H x W, output C x H x W. Transforming the input (spatially, and permuting g)
 * transforms the output spatially, since the pooled set {x[c, g, .]} is only permuted. */
#include "nn/layer.h"

#include <string.h>

static cfnet_status group_pool_setup(cfnet_layer *l, uint64_t seed)
{
    (void)seed;
    char sb[96];
    CF_FAIL_IF(l->in_ndim != 4 ||
                   (l->in_shape[1] != 2 && l->in_shape[1] != 4 && l->in_shape[1] != 8),
               CFNET_E_SHAPE_MISMATCH,
               "group_pool: input is %s, needs C x 4 x H x W (p4), C x 8 x H x W (p4m) or "
               "C x 2 x H x W (conic_conv_mirror)",
               cf_shape_str(sb, sizeof sb, l->in_ndim, l->in_shape));
    cf_layer_set_out_shape(l, 3,
                           (const int64_t[]){l->in_shape[0], l->in_shape[2], l->in_shape[3]});
    return CFNET_OK;
}

static cfnet_status group_pool_forward(cfnet_layer *l, const float *x, float *y, int64_t n,
                                       bool training, void *ws)
{
    (void)training;
    (void)ws;
    const int64_t P = l->out_size / l->in_shape[0]; /* H * W */
    const int64_t maps = n * l->in_shape[0];
    const int G = (int)l->in_shape[1];
    const bool is_max = l->icfg[0] == CFNET_POOL_MAX;
    for (int64_t m = 0; m < maps; m++) {
        const float *xm = x + m * G * P;
        float *ym = y + m * P;
        memcpy(ym, xm, (size_t)P * sizeof *ym);
        for (int r = 1; r < G; r++) {
            const float *xr = xm + r * P;
            if (is_max) {
                for (int64_t j = 0; j < P; j++) ym[j] = xr[j] > ym[j] ? xr[j] : ym[j];
            } else {
                for (int64_t j = 0; j < P; j++) ym[j] += xr[j];
            }
        }
        if (!is_max)
            for (int64_t j = 0; j < P; j++) ym[j] *= 1.0f / (float)G;
    }
    return CFNET_OK;
}

/* Max: dy to the first g attaining the maximum (recomputed from x), zero elsewhere.
 * Mean: dy / G to every g. */
static cfnet_status group_pool_backward(cfnet_layer *l, const float *x, const float *y,
                                        const float *dy, float *dx, int64_t n, void *ws)
{
    (void)y;
    (void)ws;
    const int64_t P = l->out_size / l->in_shape[0];
    const int64_t maps = n * l->in_shape[0];
    const int G = (int)l->in_shape[1];
    const bool is_max = l->icfg[0] == CFNET_POOL_MAX;
    for (int64_t m = 0; m < maps; m++) {
        const float *xm = x + m * G * P, *dym = dy + m * P;
        float *dxm = dx + m * G * P;
        if (is_max) {
            for (int64_t j = 0; j < P; j++) {
                int best_r = 0;
                float best = xm[j];
                for (int r = 1; r < G; r++) {
                    if (xm[r * P + j] > best) {
                        best = xm[r * P + j];
                        best_r = r;
                    }
                }
                for (int r = 0; r < G; r++) dxm[r * P + j] = r == best_r ? dym[j] : 0.0f;
            }
        } else {
            for (int r = 0; r < G; r++)
                for (int64_t j = 0; j < P; j++) dxm[r * P + j] = dym[j] / (float)G;
        }
    }
    return CFNET_OK;
}

static cfnet_status group_pool_check(int *ic, float *fc)
{
    (void)fc;
    CF_FAIL_IF(ic[0] != CFNET_POOL_MAX && ic[0] != CFNET_POOL_MEAN, CFNET_E_INVALID_ARGUMENT,
               "group_pool: mode is %d, must be CFNET_POOL_MAX (0) or CFNET_POOL_MEAN (1)",
               ic[0]);
    return CFNET_OK;
}

const cf_layer_ops cf_group_pool_ops = {
    .name = "group_pool",
    .per_sample = true,
    .icfg_names = {"mode", NULL},
    .fcfg_names = {NULL},
    .check = group_pool_check,
    .setup = group_pool_setup,
    .forward = group_pool_forward,
    .backward = group_pool_backward,
};

CFNET_API cfnet_status cfnet_layer_group_pool_create(cfnet_pool_mode mode, cfnet_layer **out)
{
    const int cfg[] = {(int)mode};
    return cf_layer_create(CFNET_LAYER_GROUP_POOL, cfg, NULL, NULL, out);
}
