/* p4 lifting convolution, Z^2 -> p4 (Cohen & Welling 2016):
 *   out[o, r, x] = sum_{c, z} f[c, x + z] (rot90^r phi)[o, c, z] + b[o],   r = 0..3.
 * Shapes: x N x C x S x S, phi O x C x k x k, b O, y N x O x 4 x S' x S'. The bank is expanded
 * to the 4O filters rot90^r phi[o] and run as one convolution (p4_common.c). */
#include "p4_common.h"

static cfnet_status p4_lift_setup(cfnet_layer *l, uint64_t seed)
{
    return cf_p4_setup(l, seed, 4, 1);
}

const cf_layer_ops cf_p4_lift_ops = {
    .name = "p4_lift",
    .per_sample = true,
    .icfg_names = {"out_channels", "kernel", "padding", NULL},
    .check = cf_p4_check_lift,
    .setup = p4_lift_setup,
    .workspace = cf_p4_workspace,
    .workspace_kept = cf_p4_workspace_kept,
    .forward = cf_p4_forward,
    .forward_relu = cf_p4_forward_relu,
    .backward = cf_p4_backward,
    .destroy_priv = cf_p4_destroy,
    .cache_bytes = cf_p4_cache_bytes,
};

CFNET_API cfnet_status cfnet_layer_p4_lift_create(int out_channels, int kernel,
                                                  cfnet_padding padding, cfnet_layer **out)
{
    const int cfg[] = {out_channels, kernel, (int)padding};
    return cf_layer_create(CFNET_LAYER_P4_LIFT, cfg, NULL, NULL, out);
}
