/* p4 group convolution, p4 -> p4 (Cohen & Welling 2016):
 *   out[o, r, x] = sum_{c, s, z} f[c, s, x + z] (rot90^r phi)[o, c, (s - r) mod 4, z] + b[o].
 * Shapes: x N x C x 4 x S x S, phi O x C x 4 x k x k, b O, y N x O x 4 x S' x S'. The bank is
 * expanded to a (4O) x (4C k k) matrix (rotated and cyclically shifted along the rotation axis)
 * and run as one convolution over the 4C input planes (p4_common.c). */
#include "p4_common.h"

static cfnet_status p4_conv_setup(cfnet_layer *l, uint64_t seed)
{
    return cf_p4_setup(l, seed, 4, 4);
}

const cf_layer_ops cf_p4_conv_ops = {
    .name = "p4_conv",
    .per_sample = true,
    .icfg_names = {"out_channels", "kernel", "padding", NULL},
    .check = cf_p4_check_conv,
    .setup = p4_conv_setup,
    .workspace = cf_p4_workspace,
    .workspace_kept = cf_p4_workspace_kept,
    .forward = cf_p4_forward,
    .forward_relu = cf_p4_forward_relu,
    .backward = cf_p4_backward,
    .destroy_priv = cf_p4_destroy,
    .cache_bytes = cf_p4_cache_bytes,
};

CFNET_API cfnet_status cfnet_layer_p4_conv_create(int out_channels, int kernel,
                                                  cfnet_padding padding, cfnet_layer **out)
{
    const int cfg[] = {out_channels, kernel, (int)padding};
    return cf_layer_create(CFNET_LAYER_P4_CONV, cfg, NULL, NULL, out);
}
