/* Kind-independent part of the layer API: setup, validation of tensors, parameters. */
#include "nn/layer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

cfnet_status cf_layer_alloc(int kind, const cf_layer_ops *ops, const cf_allocator *a,
                            cfnet_layer **out)
{
    if (!a) a = &cf_default_allocator;
    cfnet_layer *l = cf_alloc_zero(a, 1, sizeof *l);
    CF_FAIL_IF(!l, CFNET_E_OUT_OF_MEMORY, "%s: out of memory", ops->name);
    l->alloc = *a;
    l->magic = CF_MAGIC_LAYER;
    l->kind = kind;
    l->ops = ops;
    *out = l;
    return CFNET_OK;
}

cfnet_status cf_layer_add_param(cfnet_layer *l, const char *name, int ndim, const int64_t *shape,
                                cfnet_tensor **out)
{
    CF_FAIL_IF(l->nparam >= CF_MAX_PARAMS, CFNET_E_INTERNAL, "%s: too many parameters",
               l->ops->name);
    cfnet_tensor *p = NULL, *g = NULL;
    cf_alloc_exempt(1); /* parameters are not layer tables (see cf_network_append) */
    cfnet_status st = cf_tensor_new(&l->alloc, ndim, shape, &p);
    if (st == CFNET_OK) st = cf_tensor_new(&l->alloc, ndim, shape, &g);
    cf_alloc_exempt(-1);
    if (st != CFNET_OK) {
        cfnet_tensor_free(p);
        return cf_error(st, "%s: cannot allocate parameter '%s': %s", l->ops->name, name,
                        cfnet_status_string(st));
    }
    p->layer_owned = g->layer_owned = true;
    l->param[l->nparam] = p;
    l->grad[l->nparam] = g;
    l->param_name[l->nparam] = name;
    l->nparam++;
    if (out) *out = p;
    return CFNET_OK;
}

cfnet_status cf_layer_add_state(cfnet_layer *l, const char *name, int ndim, const int64_t *shape,
                                cfnet_tensor **out)
{
    CF_FAIL_IF(l->nstate >= CF_MAX_STATE, CFNET_E_INTERNAL, "%s: too many state tensors",
               l->ops->name);
    cfnet_tensor *s = NULL;
    cf_alloc_exempt(1);
    cfnet_status st = cf_tensor_new(&l->alloc, ndim, shape, &s);
    cf_alloc_exempt(-1);
    if (st != CFNET_OK)
        return cf_error(st, "%s: cannot allocate state '%s'", l->ops->name, name);
    s->layer_owned = true;
    l->state[l->nstate] = s;
    l->state_name[l->nstate] = name;
    l->nstate++;
    if (out) *out = s;
    return CFNET_OK;
}

void cf_layer_release(cfnet_layer *l)
{
    for (int i = 0; i < l->nparam; i++) {
        cf_tensor_destroy(l->param[i]);
        cf_tensor_destroy(l->grad[i]);
        l->param[i] = l->grad[i] = NULL;
        l->param_name[i] = NULL;
    }
    for (int i = 0; i < l->nstate; i++) {
        cf_tensor_destroy(l->state[i]);
        l->state[i] = NULL;
        l->state_name[i] = NULL;
    }
    l->nparam = l->nstate = 0;
    if (l->priv && l->ops->destroy_priv) l->ops->destroy_priv(l);
    l->priv = NULL;
    cf_free(l->ws);
    l->ws = NULL;
    l->ws_size = 0;
}

void cf_init_he(cfnet_tensor *t, int64_t fan_in, cf_rng *rng)
{
    double sd = sqrt(2.0 / (double)(fan_in > 0 ? fan_in : 1));
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (float)(sd * cf_rng_normal(rng));
}

void cf_layer_destroy(cfnet_layer *layer)
{
    if (!layer) return;
    cf_layer_release(layer);
    layer->magic = CF_MAGIC_FREED;
    cf_free(layer);
}

cfnet_status cf_layer_add_weight_bias(cfnet_layer *l, int wdim, const int64_t *wshape,
                                      int64_t fan_in, uint64_t seed)
{
    cfnet_tensor *w;
    CF_CHECK(cf_layer_add_param(l, "weight", wdim, wshape, &w));
    CF_CHECK(cf_layer_add_param(l, "bias", 1, wshape, NULL));
    cf_rng rng;
    cf_rng_seed(&rng, seed);
    cf_init_he(w, fan_in, &rng);
    return CFNET_OK;
}

void cf_layer_set_out_shape(cfnet_layer *l, int ndim, const int64_t *shape)
{
    l->out_ndim = ndim;
    for (int i = 0; i < ndim; i++) l->out_shape[i] = shape[i];
}

cfnet_status cf_layer_setup_same_shape(cfnet_layer *l, uint64_t seed)
{
    (void)seed;
    cf_layer_set_out_shape(l, l->in_ndim, l->in_shape);
    return CFNET_OK;
}

CFNET_API void cfnet_layer_free(cfnet_layer *layer)
{
    if (!cf_handle_ok(layer, CF_MAGIC_LAYER, "layer", __func__)) return;
    if (!layer) return;
    if (layer->owned) {
        /* Freeing it would leave the network with a dangling layer: refuse. */
        cf_error(CFNET_E_INVALID_ARGUMENT,
                 "layer_free: this %s layer belongs to a network, which frees it; nothing was "
                 "freed", layer->ops->name);
        return;
    }
    cf_layer_destroy(layer);
}

CFNET_API int cfnet_layer_kind_of(const cfnet_layer *layer)
{
    if (!cf_handle_ok(layer, CF_MAGIC_LAYER, "layer", __func__)) layer = NULL;
    return layer ? layer->kind : 0;
}

CFNET_API cfnet_status cfnet_layer_setup(cfnet_layer *layer, int ndim, const int64_t *shape,
                                         uint64_t seed)
{
    CF_CHECK(cf_handle_check(layer, CF_MAGIC_LAYER, "layer", __func__));
    CF_FAIL_IF(!layer, CFNET_E_INVALID_ARGUMENT, "layer_setup: layer is NULL");
    CF_FAIL_IF(layer->owned, CFNET_E_STATE,
               "%s: the layer belongs to a network, which sets it up", layer->ops->name);
    int64_t numel;
    CF_CHECK(cf_shape_numel(layer->ops->name, ndim, shape, &numel));
    CF_FAIL_IF(ndim > CFNET_MAX_DIMS - 1, CFNET_E_INVALID_ARGUMENT,
               "%s: per-sample shape has %d dimensions, at most %d (the batch axis is added)",
               layer->ops->name, ndim, CFNET_MAX_DIMS - 1);

    /* Set up a copy so that a failure leaves the layer as it was. */
    cfnet_layer trial = *layer;
    trial.nparam = trial.nstate = 0;
    memset(trial.param, 0, sizeof trial.param);
    memset(trial.grad, 0, sizeof trial.grad);
    memset(trial.state, 0, sizeof trial.state);
    trial.priv = NULL;
    trial.ws = NULL;
    trial.ws_size = 0;
    trial.last_n = 0;
    trial.in_ndim = ndim;
    memcpy(trial.in_shape, shape, (size_t)ndim * sizeof *shape);
    trial.in_size = numel;
    trial.out_ndim = 0;
    cfnet_status st = layer->ops->setup(&trial, seed);
    if (st == CFNET_OK) {
        int64_t on = 0;
        st = cf_shape_numel(layer->ops->name, trial.out_ndim, trial.out_shape, &on);
        if (st == CFNET_OK && trial.out_ndim > CFNET_MAX_DIMS - 1)
            st = cf_error(CFNET_E_INTERNAL, "%s: output rank too large", layer->ops->name);
        trial.out_size = on;
    }
    if (st != CFNET_OK) {
        cf_layer_release(&trial);
        return st;
    }
    cf_layer_release(layer);
    trial.is_setup = true;
    *layer = trial;
    return CFNET_OK;
}

/* The per-sample input (in) or output shape of a set-up layer. */
static cfnet_status layer_shape(const cfnet_layer *layer, bool in, int *ndim, int64_t *shape,
                                const char *func)
{
    CF_CHECK(cf_handle_check(layer, CF_MAGIC_LAYER, "layer", func));
    CF_FAIL_IF(!layer || !ndim || !shape, CFNET_E_INVALID_ARGUMENT, "%s: NULL argument",
               in ? "layer_input_shape" : "layer_output_shape");
    CF_FAIL_IF(!layer->is_setup, CFNET_E_STATE, "%s: layer is not set up", layer->ops->name);
    *ndim = in ? layer->in_ndim : layer->out_ndim;
    memcpy(shape, in ? layer->in_shape : layer->out_shape, (size_t)*ndim * sizeof *shape);
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_layer_input_shape(const cfnet_layer *layer, int *ndim,
                                               int64_t *shape)
{
    return layer_shape(layer, true, ndim, shape, __func__);
}

CFNET_API cfnet_status cfnet_layer_output_shape(const cfnet_layer *layer, int *ndim,
                                                int64_t *shape)
{
    return layer_shape(layer, false, ndim, shape, __func__);
}

static cfnet_status check_batch(const cfnet_layer *l, const char *what, const cfnet_tensor *t,
                                int ndim, const int64_t *shape, int64_t *n)
{
    return cf_check_batch(l->ops->name, what, t, ndim, shape, n);
}

static cfnet_status ensure_ws(cfnet_layer *l, int64_t n)
{
    size_t need = l->ops->workspace ? l->ops->workspace(l, n) : 0;
    if (need <= l->ws_size && l->ws) return CFNET_OK;
    void *ws = cf_alloc(&l->alloc, need);
    CF_FAIL_IF(!ws, CFNET_E_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes of workspace",
               l->ops->name, need);
    cf_free(l->ws);
    l->ws = ws;
    l->ws_size = need;
    return CFNET_OK;
}

cfnet_status cf_layer_forward_raw(cfnet_layer *l, const float *x, float *y, int64_t n,
                                  bool training, void *ws)
{
    return l->ops->forward(l, x, y, n, training, ws);
}

cfnet_status cf_layer_backward_raw(cfnet_layer *l, const float *x, const float *y,
                                   const float *dy, float *dx, int64_t n, void *ws)
{
    if (!dx && l->nparam == 0) return CFNET_OK; /* no gradient wanted: nothing to compute */
    return l->ops->backward(l, x, y, dy, dx, n, ws);
}

CFNET_API cfnet_status cfnet_layer_forward(cfnet_layer *layer, const cfnet_tensor *x,
                                           cfnet_tensor *y, cfnet_mode mode)
{
    CF_CHECK(cf_handle_check(layer, CF_MAGIC_LAYER, "layer", __func__));
    CF_CHECK(cf_handle_check(x, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_CHECK(cf_handle_check(y, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_FAIL_IF(!layer, CFNET_E_INVALID_ARGUMENT, "layer_forward: layer is NULL");
    CF_FAIL_IF(!layer->is_setup, CFNET_E_STATE,
               "%s: layer is not set up (call cfnet_layer_setup first)", layer->ops->name);
    CF_FAIL_IF(mode != CFNET_MODE_INFERENCE && mode != CFNET_MODE_TRAINING,
               CFNET_E_INVALID_ARGUMENT, "%s: unknown mode %d", layer->ops->name, (int)mode);
    int64_t n = 0;
    CF_CHECK(check_batch(layer, "input", x, layer->in_ndim, layer->in_shape, &n));
    CF_CHECK(check_batch(layer, "output", y, layer->out_ndim, layer->out_shape, &n));
    CF_CHECK(cf_tensor_writable(layer->ops->name, "output tensor", y));
    CF_FAIL_IF(x->data == y->data, CFNET_E_INVALID_ARGUMENT,
               "%s: input and output must not share memory", layer->ops->name);
    CF_CHECK(ensure_ws(layer, n));
    layer->last_n = 0;
    const bool training = mode == CFNET_MODE_TRAINING;
    if (!training || layer->nstate == 0) {
        CF_CHECK(layer->ops->forward(layer, x->data, y->data, n, training, layer->ws));
        layer->last_n = n;
        return CFNET_OK;
    }
    /* A training forward moves the state (batch-norm running statistics): copied first and put
     * back if the call fails or would leave a NaN or an infinity there (an input holding one, or
     * activations so large that the variance overflows), which inference would use and save
     * refuses. */
    size_t floats = 0;
    for (int s = 0; s < layer->nstate; s++) floats += (size_t)layer->state[s]->numel;
    float *copy = cf_alloc(&layer->alloc, floats * sizeof(float));
    CF_FAIL_IF(!copy, CFNET_E_OUT_OF_MEMORY, "%s: out of memory", layer->ops->name);
    float *at = copy;
    for (int s = 0; s < layer->nstate; s++) {
        memcpy(at, layer->state[s]->data, (size_t)layer->state[s]->numel * sizeof(float));
        at += layer->state[s]->numel;
    }
    cfnet_status st = layer->ops->forward(layer, x->data, y->data, n, true, layer->ws);
    for (int s = 0; s < layer->nstate && st == CFNET_OK; s++) {
        const float *v = layer->state[s]->data;
        for (int64_t j = 0; j < layer->state[s]->numel; j++) {
            if (!isfinite(v[j])) {
                st = cf_error(CFNET_E_NUMERIC,
                              "%s: %s would become non-finite (NaN or infinite inputs, or "
                              "activations too large); the state is unchanged",
                              layer->ops->name, layer->state_name[s]);
                break;
            }
        }
    }
    if (st != CFNET_OK) {
        at = copy;
        for (int s = 0; s < layer->nstate; s++) {
            memcpy(layer->state[s]->data, at, (size_t)layer->state[s]->numel * sizeof(float));
            at += layer->state[s]->numel;
        }
    } else {
        layer->last_n = n;
    }
    cf_free(copy);
    return st;
}

CFNET_API cfnet_status cfnet_layer_backward(cfnet_layer *layer, const cfnet_tensor *x,
                                            const cfnet_tensor *y, const cfnet_tensor *dy,
                                            cfnet_tensor *dx)
{
    CF_CHECK(cf_handle_check(layer, CF_MAGIC_LAYER, "layer", __func__));
    CF_CHECK(cf_handle_check(x, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_CHECK(cf_handle_check(y, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_CHECK(cf_handle_check(dy, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_CHECK(cf_handle_check(dx, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_FAIL_IF(!layer, CFNET_E_INVALID_ARGUMENT, "layer_backward: layer is NULL");
    CF_FAIL_IF(!layer->is_setup || !layer->ws || layer->last_n == 0, CFNET_E_STATE,
               "%s: backward needs a preceding forward", layer->ops->name);
    int64_t n = 0;
    CF_CHECK(check_batch(layer, "input", x, layer->in_ndim, layer->in_shape, &n));
    CF_CHECK(check_batch(layer, "output", y, layer->out_ndim, layer->out_shape, &n));
    CF_CHECK(check_batch(layer, "output gradient", dy, layer->out_ndim, layer->out_shape, &n));
    if (dx) CF_CHECK(check_batch(layer, "input gradient", dx, layer->in_ndim, layer->in_shape, &n));
    CF_CHECK(cf_tensor_writable(layer->ops->name, "input gradient tensor", dx));
    CF_FAIL_IF(n != layer->last_n, CFNET_E_STATE,
               "%s: backward batch is %lld, the preceding forward had %lld", layer->ops->name,
               (long long)n, (long long)layer->last_n);
    return cf_layer_backward_raw(layer, x->data, y->data, dy->data, dx ? dx->data : NULL, n,
                                 layer->ws);
}

CFNET_API int cfnet_layer_param_count(const cfnet_layer *layer)
{
    if (!cf_handle_ok(layer, CF_MAGIC_LAYER, "layer", __func__)) layer = NULL;
    return layer ? layer->nparam : 0;
}

CFNET_API cfnet_tensor *cfnet_layer_param(const cfnet_layer *layer, int i)
{
    return CF_HANDLE_ITEM(layer, CF_MAGIC_LAYER, "layer", nparam, param, i);
}

CFNET_API cfnet_tensor *cfnet_layer_grad(const cfnet_layer *layer, int i)
{
    return CF_HANDLE_ITEM(layer, CF_MAGIC_LAYER, "layer", nparam, grad, i);
}

CFNET_API const char *cfnet_layer_param_name(const cfnet_layer *layer, int i)
{
    return CF_HANDLE_ITEM(layer, CF_MAGIC_LAYER, "layer", nparam, param_name, i);
}

CFNET_API int cfnet_layer_state_count(const cfnet_layer *layer)
{
    if (!cf_handle_ok(layer, CF_MAGIC_LAYER, "layer", __func__)) layer = NULL;
    return layer ? layer->nstate : 0;
}

CFNET_API cfnet_tensor *cfnet_layer_state(const cfnet_layer *layer, int i)
{
    return CF_HANDLE_ITEM(layer, CF_MAGIC_LAYER, "layer", nstate, state, i);
}

CFNET_API const char *cfnet_layer_state_name(const cfnet_layer *layer, int i)
{
    return CF_HANDLE_ITEM(layer, CF_MAGIC_LAYER, "layer", nstate, state_name, i);
}

CFNET_API cfnet_status cfnet_layer_zero_grad(cfnet_layer *layer)
{
    CF_CHECK(cf_handle_check(layer, CF_MAGIC_LAYER, "layer", __func__));
    CF_FAIL_IF(!layer, CFNET_E_INVALID_ARGUMENT, "layer_zero_grad: layer is NULL");
    for (int i = 0; i < layer->nparam; i++) cfnet_tensor_zero(layer->grad[i]);
    return CFNET_OK;
}
