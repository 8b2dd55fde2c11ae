/* Inverted dropout, any shape. Training: y = m * x / (1 - drop) with m ~ Bernoulli(1 - drop)
 * drawn from the layer's own generator (seeded at setup, advanced by every training forward);
 * inference: y = x. The training forward keeps its mask in the workspace for the backward.
 * Inside a train step with a batch position (cfnet_network_set_batch_position) the mask of
 * sample b comes instead from a generator keyed by (layer key, step, global index of b), so it
 * does not depend on how the global batch is split; the layer's own generator is not used. */
#include "nn/layer.h"

#include <math.h>
#include <string.h>

typedef struct dropout_ws {
    int training; /* mode of the preceding forward */
} dropout_ws;

/* Workspace: header, then one mask byte per unit of the batch. */
static size_t dropout_workspace(const cfnet_layer *l, int64_t n)
{
    return cf_align64(sizeof(dropout_ws)) + (size_t)(n * l->in_size);
}

static unsigned char *mask_of(void *ws)
{
    return (unsigned char *)ws + cf_align64(sizeof(dropout_ws));
}

static float keep_scale(const cfnet_layer *l) { return 1.0f / (1.0f - l->fcfg[0]); }

static cfnet_status dropout_setup(cfnet_layer *l, uint64_t seed)
{
    cf_layer_set_out_shape(l, l->in_ndim, l->in_shape);
    cf_rng *rng = cf_alloc(&l->alloc, sizeof *rng);
    CF_FAIL_IF(!rng, CFNET_E_OUT_OF_MEMORY, "dropout: out of memory");
    cf_rng_seed(rng, seed);
    l->priv = rng;
    return CFNET_OK;
}

static void dropout_destroy_priv(cfnet_layer *l) { cf_free(l->priv); }

static cf_rng *dropout_rng(cfnet_layer *l) { return l->priv; }

static cfnet_status dropout_forward(cfnet_layer *l, const float *x, float *y, int64_t n,
                                    bool training, void *ws)
{
    const int64_t total = n * l->in_size;
    ((dropout_ws *)ws)->training = training;
    if (!training) {
        memcpy(y, x, (size_t)total * sizeof *y);
        return CFNET_OK;
    }
    /* A unit is kept when its uniform u = k * 2^-53 (k the top 53 bits of a draw) is >= drop,
     * i.e. when k >= ceil(drop * 2^53); drop * 2^53 is exact in double. */
    const uint64_t threshold = (uint64_t)ceil((double)l->fcfg[0] * 0x1p53);
    const float scale = keep_scale(l);
    cf_rng *rng = l->priv, keyed;
    const cf_batch_ctx *key = l->batch && l->batch->keyed ? l->batch : NULL;
    unsigned char *mask = mask_of(ws);
    for (int64_t i = 0; i < total; i++) {
        if (key && i % l->in_size == 0) {
            cf_rng_seed(&keyed, cf_sample_seed(l->batch_key, key->step,
                                               key->offset + i / l->in_size));
            rng = &keyed;
        }
        const bool keep = (cf_rng_next(rng) >> 11) >= threshold;
        mask[i] = keep;
        y[i] = keep ? x[i] * scale : 0.0f;
    }
    return CFNET_OK;
}

static cfnet_status dropout_backward(cfnet_layer *l, const float *x, const float *y,
                                     const float *dy, float *dx, int64_t n, void *ws)
{
    (void)x;
    (void)y;
    const int64_t total = n * l->in_size;
    if (!((const dropout_ws *)ws)->training) {
        memcpy(dx, dy, (size_t)total * sizeof *dx);
        return CFNET_OK;
    }
    const float scale = keep_scale(l);
    const unsigned char *mask = mask_of(ws);
    for (int64_t i = 0; i < total; i++) dx[i] = mask[i] ? dy[i] * scale : 0.0f;
    return CFNET_OK;
}

static cfnet_status dropout_check(int *ic, float *fc)
{
    (void)ic;
    CF_FAIL_IF(!(fc[0] >= 0.0f && fc[0] < 1.0f), CFNET_E_INVALID_ARGUMENT,
               "dropout: drop is %g, must be in [0, 1)", (double)fc[0]);
    return CFNET_OK;
}

const cf_layer_ops cf_dropout_ops = {
    .name = "dropout",
    .per_sample = true,
    .icfg_names = {NULL},
    .fcfg_names = {"drop", NULL},
    .check = dropout_check,
    .setup = dropout_setup,
    .workspace = dropout_workspace,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .destroy_priv = dropout_destroy_priv,
    .rng = dropout_rng,
};

CFNET_API cfnet_status cfnet_layer_dropout_create(float drop, cfnet_layer **out)
{
    const float cfg[] = {drop};
    return cf_layer_create(CFNET_LAYER_DROPOUT, NULL, cfg, NULL, out);
}
