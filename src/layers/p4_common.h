/* Shared machinery of the p4 layers (private): the lifting layer (Z^2 -> p4, G = 1 input
 * rotation) and the group layer (p4 -> p4, G = 4) differ only in G.
 *
 *   out[o, r, x] = sum_{c, s, z} f[c, s, x + z] (rot90^r phi)[o, c, (s - r) mod G, z] + b[o]
 *
 * x: N x C x G x S x S (G = 1: N x C x S x S), phi: O x C x G x k x k (G = 1: O x C x k x k),
 * y: N x O x 4 x S' x S'. Each pass expands the bank once into a (4O) x (C G k k) matrix whose
 * row o*4 + r holds rot90^r phi[o, c, (s - r) mod G] in column block c*G + s, then runs one
 * im2col + GEMM convolution over the C*G input planes with 4O output planes; in the
 * N x O x 4 x H x W layout, engine output plane o*4 + r is exactly out[o, r]. The gradient of
 * phi is the expanded gradient sent back through the transposed permutations. */
#ifndef CFNET_P4_COMMON_H
#define CFNET_P4_COMMON_H

#include "kernels/convcore.h"
#include "kernels/rotate.h"

enum { CF_P4_CFG_OUT, CF_P4_CFG_K, CF_P4_CFG_PAD };

/* The config checks of p4_lift and p4_conv (out_channels, kernel, padding). */
cfnet_status cf_p4_check_lift(int *icfg, float *fcfg);
cfnet_status cf_p4_check_conv(int *icfg, float *fcfg);

/* Setup for input rotations G (1: lifting, 4: group convolution); validates l->in_shape. */
cfnet_status cf_p4_setup(cfnet_layer *l, uint64_t seed, int G);

size_t cf_p4_workspace(const cfnet_layer *l, int64_t n);
cfnet_status cf_p4_forward(cfnet_layer *l, const float *x, float *y, int64_t n, bool training,
                           void *ws);
cfnet_status cf_p4_backward(cfnet_layer *l, const float *x, const float *y, const float *dy,
                            float *dx, int64_t n, void *ws);
void cf_p4_destroy(cfnet_layer *l);

#endif
