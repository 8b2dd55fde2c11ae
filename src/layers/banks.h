/* The filter banks the rotation layers build from their parameters in every forward pass,
 * exposed (private) so that the ONNX export writes exactly the filters the library applies.
 * Each function allocates new buffers (cf_free) and changes nothing in the layer, which must be
 * set up. */
#ifndef CFNET_LAYERS_BANKS_H
#define CFNET_LAYERS_BANKS_H

#include "nn/layer.h"

/* Conic convolution as a selection among ordinary convolutions: `bank` holds, for each of the
 * *ngroups pixel groups that has an output pixel (cone interiors, rays, centre, in group
 * order), the O x C x k x k filter the forward uses there; `group_of` (S' x S', row-major)
 * gives each output pixel's index into `bank`. */
cfnet_status cf_conic_conv_group_banks(const cfnet_layer *l, float **bank, int *ngroups,
                                       int32_t **group_of);

/* p4 and p4m lifting and group convolution: the expanded bank (nO) x (C G k k), row o*n + g
 * with n = 4 (p4) or 8 (p4m), and the expanded bias (nO). */
cfnet_status cf_p4_expanded_bank(const cfnet_layer *l, float **bank, float **bias);

/* DFT projection: the rotated bank (filters 4R) x D, row n*4R + r. */
cfnet_status cf_dft_projection_bank(const cfnet_layer *l, float **bank);

#endif
