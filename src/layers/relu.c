/* ReLU: y = max(0, x). Any shape; no parameters. */
#include "kernels/simd.h"
#include "nn/layer.h"

#include <string.h>

/* The loops are the dispatched kernels of kernels/simd.h: branch-free (on real activations the
 * sign is close to random, and a branch per element mispredicts half the time), bit-exact with
 * `x > 0 ? x : +0.0f`. */

static cfnet_status relu_forward(cfnet_layer *l, const float *x, float *y, int64_t n,
                                 bool training, void *ws)
{
    (void)training;
    (void)ws;
    int64_t total = n * l->in_size;
    cf_simd()->relu(x, y, total);
    return CFNET_OK;
}

/* dx = dy where y > 0 (the subgradient at 0 is taken as 0). */
static cfnet_status relu_backward(cfnet_layer *l, const float *x, const float *y,
                                  const float *dy, float *dx, int64_t n, void *ws)
{
    (void)x;
    (void)ws;
    int64_t total = n * l->in_size;
    cf_simd()->relu_backward(y, dy, dx, total);
    return CFNET_OK;
}

const cf_layer_ops cf_relu_ops = {
    .name = "relu",
    .setup = cf_layer_setup_same_shape,
    .forward = relu_forward,
    .backward = relu_backward,
};

CFNET_API cfnet_status cfnet_layer_relu_create(cfnet_layer **out)
{
    return cf_layer_create(CFNET_LAYER_RELU, NULL, NULL, NULL, out);
}
