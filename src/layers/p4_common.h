/* Shared machinery of the group convolution layers (private): p4 (the 4 rotations) and p4m
 * (the dihedral group D4: 4 rotations and their reflections). Lifting layers (Z^2 -> group,
 * G = 1 input copy) and group layers (group -> group, G = |group| input copies) differ only in G.
 *
 *   out[o, g, x] = sum_{c, h, z} f[c, h, x + z] (T_g phi)[o, c, g^-1 h, z] + b[o]
 *
 * (lifting: h and g^-1 h are 0). Elements are indexed g = 4 m + r for rho^r F^m: m = 1 mirrors
 * first (F: (u, v) -> (-u, v), column j <-> k-1-j), then r counter-clockwise quarter turns; p4
 * uses g = r (m = 0) only, so the p4 layers are the same code on the subgroup. T_g phi(z) =
 * phi(g^-1 z) = rot90^r (F^m phi).
 *
 * x: N x C x G x S x S (G = 1: N x C x S x S), phi: O x C x G x k x k (G = 1: O x C x k x k),
 * y: N x O x n x S' x S' with n = |group| (4 or 8). Each pass expands the bank once into a
 * (n O) x (C G k k) matrix whose row o*n + g holds T_g phi[o, c, g^-1 h] in column block c*G + h,
 * then runs one im2col + GEMM convolution over the C*G input planes with n O output planes; in
 * the N x O x n x H x W layout, engine output plane o*n + g is exactly out[o, g]. The gradient
 * of phi is the expanded gradient sent back through the transposed permutations. Inference
 * keeps the expanded bank packed for the engine (and the expanded bias) while the weights stay
 * the same bit for bit, so an inference with unchanged weights expands and packs nothing. */
#ifndef CFNET_P4_COMMON_H
#define CFNET_P4_COMMON_H

#include "kernels/convcore.h"
#include "kernels/rotate.h"

enum { CF_P4_CFG_OUT, CF_P4_CFG_K, CF_P4_CFG_PAD };

/* D4 with g = 4 m + r <-> rho^r F^m (rho: quarter turn, F: mirror u -> -u); F rho = rho^-1 F, so
 * (m1, r1)(m2, r2) = (m1 xor m2, r1 + (-1)^m1 r2). The rotations 0..3 are the subgroup p4. */
static inline int cf_d4_mul(int a, int b)
{
    int ma = a >> 2, ra = a & 3, mb = b >> 2, rb = b & 3;
    return ((ma ^ mb) << 2) | ((ra + (ma ? -rb : rb)) & 3);
}

static inline int cf_d4_inv(int a) { return a >= 4 ? a : (4 - a) & 3; }

/* The config checks of p4_lift, p4_conv, p4m_lift and p4m_conv (out_channels, kernel,
 * padding). */
cfnet_status cf_p4_check_lift(int *icfg, float *fcfg);
cfnet_status cf_p4_check_conv(int *icfg, float *fcfg);
cfnet_status cf_p4m_check_lift(int *icfg, float *fcfg);
cfnet_status cf_p4m_check_conv(int *icfg, float *fcfg);

/* Setup for a group of `order` elements (4: p4, 8: p4m) and input copies G (1: lifting,
 * G = order: group convolution); validates l->in_shape. */
cfnet_status cf_p4_setup(cfnet_layer *l, uint64_t seed, int order, int G);

size_t cf_p4_workspace(const cfnet_layer *l, int64_t n);
size_t cf_p4_workspace_kept(const cfnet_layer *l, int64_t n);
cfnet_status cf_p4_forward(cfnet_layer *l, const float *x, float *y, int64_t n, bool training,
                           void *ws);
/* The forward with max(0, .) applied to its output by the engine (cf_layer_ops.forward_relu). */
cfnet_status cf_p4_forward_relu(cfnet_layer *l, const float *x, float *y, int64_t n,
                                bool training, void *ws);
cfnet_status cf_p4_backward(cfnet_layer *l, const float *x, const float *y, const float *dy,
                            float *dx, int64_t n, void *ws);
void cf_p4_destroy(cfnet_layer *l);
size_t cf_p4_cache_bytes(const cfnet_layer *l);

#endif
