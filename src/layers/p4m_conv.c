/* p4m group convolution, p4m -> p4m (the dihedral group D4):
 *   out[o, g, x] = sum_{c, h, z} f[c, h, x + z] (T_g phi)[o, c, g^-1 h, z] + b[o],
 * g, h = 4 m + r in D4, T_g phi = rot90^r (F^m phi). Shapes: x N x C x 8 x S x S,
 * phi O x C x 8 x k x k, b O, y N x O x 8 x S' x S'. The bank is expanded to an (8O) x (8C k k)
 * matrix (transformed spatially and permuted along the group axis) and run as one convolution
 * over the 8C input planes (p4_common.c). */
#include "p4_common.h"

static cfnet_status p4m_conv_setup(cfnet_layer *l, uint64_t seed)
{
    return cf_p4_setup(l, seed, 8, 8);
}

const cf_layer_ops cf_p4m_conv_ops = {
    .name = "p4m_conv",
    .per_sample = true,
    .icfg_names = {"out_channels", "kernel", "padding", NULL},
    .check = cf_p4m_check_conv,
    .setup = p4m_conv_setup,
    .workspace = cf_p4_workspace,
    .workspace_kept = cf_p4_workspace_kept,
    .forward = cf_p4_forward,
    .forward_relu = cf_p4_forward_relu,
    .backward = cf_p4_backward,
    .destroy_priv = cf_p4_destroy,
    .cache_bytes = cf_p4_cache_bytes,
};

CFNET_API cfnet_status cfnet_layer_p4m_conv_create(int out_channels, int kernel,
                                                   cfnet_padding padding, cfnet_layer **out)
{
    const int cfg[] = {out_channels, kernel, (int)padding};
    return cf_layer_create(CFNET_LAYER_P4M_CONV, cfg, NULL, NULL, out);
}
