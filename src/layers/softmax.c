/* Softmax over the flattened per-sample input: y_i = exp(x_i - m) / sum_j exp(x_j - m), with
 * m = max_j x_j so that no exponential overflows. Output shape = input shape. */
#include "nn/layer.h"

#include <math.h>

static cfnet_status softmax_forward(cfnet_layer *l, const float *x, float *y, int64_t n,
                                    bool training, void *ws)
{
    (void)training;
    (void)ws;
    const int64_t K = l->in_size;
    for (int64_t b = 0; b < n; b++) cf_softmax(x + b * K, y + b * K, K);
    return CFNET_OK;
}

/* dx = y * (dy - sum_j y_j dy_j). */
static cfnet_status softmax_backward(cfnet_layer *l, const float *x, const float *y,
                                     const float *dy, float *dx, int64_t n, void *ws)
{
    (void)x;
    (void)ws;
    const int64_t K = l->in_size;
    for (int64_t b = 0; b < n; b++) {
        const float *yb = y + b * K, *dyb = dy + b * K;
        float *dxb = dx + b * K;
        double dot = 0;
        for (int64_t i = 0; i < K; i++) dot += (double)yb[i] * dyb[i];
        const float d = (float)dot;
        for (int64_t i = 0; i < K; i++) dxb[i] = yb[i] * (dyb[i] - d);
    }
    return CFNET_OK;
}

const cf_layer_ops cf_softmax_ops = {
    .name = "softmax",
    .per_sample = true,
    .icfg_names = {NULL},
    .fcfg_names = {NULL},
    .setup = cf_layer_setup_same_shape,
    .forward = softmax_forward,
    .backward = softmax_backward,
};

CFNET_API cfnet_status cfnet_layer_softmax_create(cfnet_layer **out)
{
    return cf_layer_create(CFNET_LAYER_SOFTMAX, NULL, NULL, NULL, out);
}
