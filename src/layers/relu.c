/* ReLU: y = max(0, x). Any shape; no parameters. */
#include "core/pool.h"
#include "kernels/simd.h"
#include "nn/layer.h"

#include <string.h>

/* The loops are the dispatched kernels of kernels/simd.h: branch-free (on real activations the
 * sign is close to random, and a branch per element mispredicts half the time), bit-exact with
 * `x > 0 ? x : +0.0f`. */

/* Elementwise, so split over the layer's threads in ranges of whole elements (the same bits
 * whatever the split). */
typedef struct relu_job {
    const float *x, *y, *dy;
    float *out;
} relu_job;

static void relu_fwd_range(void *v, int64_t i0, int64_t i1)
{
    const relu_job *j = v;
    cf_simd()->relu(j->x + i0, j->out + i0, i1 - i0);
}

static void relu_bwd_range(void *v, int64_t i0, int64_t i1)
{
    const relu_job *j = v;
    cf_simd()->relu_backward(j->y + i0, j->dy + i0, j->out + i0, i1 - i0);
}

static cfnet_status relu_forward(cfnet_layer *l, const float *x, float *y, int64_t n,
                                 bool training, void *ws)
{
    (void)training;
    (void)ws;
    relu_job j = {.x = x, .out = y};
    cf_parallel_for(l->threads, n * l->in_size, CF_PAR_MIN_FLOATS, relu_fwd_range, &j);
    return CFNET_OK;
}

/* dx = dy where y > 0 (the subgradient at 0 is taken as 0). */
static cfnet_status relu_backward(cfnet_layer *l, const float *x, const float *y,
                                  const float *dy, float *dx, int64_t n, void *ws)
{
    (void)x;
    (void)ws;
    relu_job j = {.y = y, .dy = dy, .out = dx};
    cf_parallel_for(l->threads, n * l->in_size, CF_PAR_MIN_FLOATS, relu_bwd_range, &j);
    return CFNET_OK;
}

const cf_layer_ops cf_relu_ops = {
    .name = "relu",
    .per_sample = true,
    .setup = cf_layer_setup_same_shape,
    .forward = relu_forward,
    .backward = relu_backward,
};

CFNET_API cfnet_status cfnet_layer_relu_create(cfnet_layer **out)
{
    return cf_layer_create(CFNET_LAYER_RELU, NULL, NULL, NULL, out);
}
