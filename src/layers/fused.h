/* Fused layer pairs (private): batch norm followed by ReLU in one pass, the batch-norm kind's
 * cf_layer_ops.forward_relu (the network runs such pairs as one, src/nn/network.c). */
#ifndef CFNET_LAYERS_FUSED_H
#define CFNET_LAYERS_FUSED_H

#include "nn/layer.h"

/* y = max(0, BN(x)): the batch-norm layer's forward (same statistics, running-average updates
 * and workspace contents for its backward) with the ReLU applied to its output. Bit-identical
 * to the two layers' forwards one after the other. */
cfnet_status cf_batch_norm_forward_relu(cfnet_layer *l, const float *x, float *y, int64_t n,
                                        bool training, void *ws);

#endif
