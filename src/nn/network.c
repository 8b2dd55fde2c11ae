/* Networks: layer composition, forward/backward, inference, summary. Training is in train.c. */
#include "network.h"


#include <math.h>
#include "platform/platform.h"
#include <stdio.h>
#include <string.h>

uint64_t cf_network_layer_seed(const cfnet_network *net, int index)
{
    /* splitmix64 finaliser of (seed, index): independent streams per layer. */
    uint64_t z = net->seed + 0x9e3779b97f4a7c15ull * (uint64_t)(index + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

CFNET_API cfnet_status cfnet_network_create(int channels, int height, int width, uint64_t seed,
                                            cfnet_network **out)
{
    return cfnet_network_create_in(NULL, channels, height, width, seed, out);
}

CFNET_API cfnet_status cfnet_network_create_in(cfnet_context *ctx, int channels, int height,
                                               int width, uint64_t seed, cfnet_network **out)
{
    CF_CHECK(cf_handle_check(ctx, CF_MAGIC_CONTEXT, "context", __func__));
    CF_FAIL_IF(!out, CFNET_E_INVALID_ARGUMENT, "network_create: out is NULL");
    CF_FAIL_IF(channels < 1 || height < 1 || width < 1, CFNET_E_INVALID_ARGUMENT,
               "network_create: input %dx%dx%d, sizes must be positive", channels, height, width);
    int64_t shape[3] = {channels, height, width}, numel;
    CF_CHECK(cf_shape_numel("network_create", 3, shape, &numel));
    const cf_allocator *a = cf_context_allocator(ctx);
    cfnet_network *net = cf_alloc_zero(a, 1, sizeof *net);
    CF_FAIL_IF(!net, CFNET_E_OUT_OF_MEMORY, "network_create: out of memory");
    net->magic = CF_MAGIC_NETWORK;
    net->alloc = *a;
    net->infer_cache = cf_alloc_zero(&net->alloc, 1, sizeof *net->infer_cache);
    if (!net->infer_cache) {
        cf_free(net);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "network_create: out of memory");
    }
    cf_mutex_init(&net->infer_cache->lock);
    net->ctx = ctx;
    memcpy(net->in_shape, shape, sizeof shape);
    net->in_size = numel;
    net->seed = seed;
    cf_rng_seed(&net->rng, seed ^ 0x5deece66dull);
    cf_options_set_defaults(&net->opt);
    *out = net;
    return CFNET_OK;
}

static void infer_cache_clear(cfnet_network *net);

/* Layer i and the ReLU layer after it run as one pair (cf_layer_ops.forward_relu): one forward
 * call, and in training one output buffer for both (the first layer's backward does not read
 * its output; the ReLU's reads only its own). */
static bool relu_pair(const cfnet_network *net, int i)
{
    return i + 1 < net->nlayers && net->layers[i]->ops->forward_relu &&
           net->layers[i + 1]->kind == CFNET_LAYER_RELU;
}

static void free_train_buffers(cfnet_network *net)
{
    if (net->act)
        for (int i = 0; i < net->nlayers; i++)
            if (i == 0 || net->act[i] != net->act[i - 1]) cf_free(net->act[i]);
    if (net->ws)
        for (int i = 0; i < net->nlayers; i++) cf_free(net->ws[i]);
    cf_free(net->act);
    cf_free(net->ws);
    cf_free(net->scratch);
    cf_free(net->input);
    cf_free(net->grad_a);
    cf_free(net->grad_b);
    net->act = NULL;
    net->ws = NULL;
    net->scratch = NULL;
    net->input = net->grad_a = net->grad_b = NULL;
    net->train_n = 0;
    net->train_bytes = 0;
    net->fwd_n = 0;
}

static void free_slots(cfnet_network *net)
{
    if (net->slots) {
        for (int i = 0; i < net->slots_for * CF_MAX_PARAMS; i++) {
            cf_free(net->slots[i].m);
            cf_free(net->slots[i].v);
        }
    }
    cf_free(net->slots);
    net->slots = NULL;
    net->slots_for = 0;
    net->slots_fresh = false;
}

CFNET_API void cfnet_network_free(cfnet_network *net)
{
    if (!cf_handle_ok(net, CF_MAGIC_NETWORK, "network", __func__)) return;
    if (!net) return;
    free_train_buffers(net);
    free_slots(net);
    cf_free(net->sum_buf);
    cf_pool_destroy(net->pool);
    infer_cache_clear(net);
    cf_mutex_destroy(&net->infer_cache->lock);
    cf_free(net->infer_cache);
    for (int i = 0; i < net->nlayers; i++) cf_layer_destroy(net->layers[i]);
    cf_free(net->layers);
    cf_network_free_metadata(net);
    net->magic = CF_MAGIC_FREED;
    cf_free(net);
}

/* Output shape of layer i - 1 (the network input for i == 0). */
static void shape_before(const cfnet_network *net, int i, int *ndim, const int64_t **shape)
{
    if (i == 0) {
        *ndim = 3;
        *shape = net->in_shape;
    } else {
        *ndim = net->layers[i - 1]->out_ndim;
        *shape = net->layers[i - 1]->out_shape;
    }
}

cfnet_status cf_network_append(cfnet_network *net, cfnet_layer *layer)
{
    int idx = net->nlayers, nd;
    const int64_t *shape;
    shape_before(net, idx, &nd, &shape);
    if (net->nlayers == net->cap) {
        int cap = net->cap ? 2 * net->cap : 8;
        cfnet_layer **grown = cf_alloc(&net->alloc, (size_t)cap * sizeof *grown);
        CF_FAIL_IF(!grown, CFNET_E_OUT_OF_MEMORY, "network_append: out of memory");
        if (net->nlayers) memcpy(grown, net->layers, (size_t)net->nlayers * sizeof *grown);
        cf_free(net->layers);
        net->layers = grown;
        net->cap = cap;
    }
    CF_FAIL_IF(net->nlayers >= CF_MAX_LAYERS, CFNET_E_LIMIT,
               "network_append: a network holds at most %d layers", CF_MAX_LAYERS);
    /* From now on the layer allocates with the network's allocator (its blocks made before
     * go back to the allocator that made them). */
    layer->alloc = net->alloc;
    /* The layer's tables are measured (and bounded) while it is set up. */
    uint64_t room = CF_MAX_TABLE_BYTES - net->table_bytes;
    cf_alloc_meter meter;
    cf_alloc_meter_begin(&meter, room, true);
    cfnet_status st = cfnet_layer_setup(layer, nd, shape, cf_network_layer_seed(net, idx));
    cf_alloc_meter_end(&meter);
    if (st != CFNET_OK && meter.exceeded) {
        char in[96];
        return cf_error(CFNET_E_LIMIT,
                        "network_append: layer %d (%s) on input %s needs more than the %llu "
                        "bytes of tables (rotation maps, index tables, FFT planning) left of "
                        "the limit of %llu per network",
                        idx, layer->ops->name, cf_shape_str(in, sizeof in, nd, shape),
                        (unsigned long long)room, (unsigned long long)CF_MAX_TABLE_BYTES);
    }
    if (st != CFNET_OK) {
        char in[96], msg[512];
        snprintf(msg, sizeof msg, "%s", cfnet_last_error());
        return cf_error(st, "network_append: layer %d (%s) does not fit input %s: %s", idx,
                        layer->ops->name, cf_shape_str(in, sizeof in, nd, shape), msg);
    }
    /* Buffers and optimiser state are rebuilt for the new layer list on next use. */
    free_train_buffers(net);
    infer_cache_clear(net);
    free_slots(net);
    net->table_bytes += meter.peak;
    layer->table_bytes = (size_t)meter.live; /* what the setup keeps, counted by memory_usage */
    layer->owned = true;
    layer->threads = net->opt.threads;
    net->layers[net->nlayers++] = layer;
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_append(cfnet_network *net, cfnet_layer *layer)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_NET_GUARD(net, true, "network_append");
    CF_CHECK(cf_handle_check(layer, CF_MAGIC_LAYER, "layer", __func__));
    CF_FAIL_IF(!layer, CFNET_E_INVALID_ARGUMENT, "network_append: layer is NULL");
    CF_FAIL_IF(layer->owned, CFNET_E_STATE,
               "network_append: this %s layer already belongs to a network", layer->ops->name);
    if (!net) {
        cfnet_layer_free(layer);
        return cf_error(CFNET_E_INVALID_ARGUMENT, "network_append: network is NULL");
    }
    CF_NET_SCOPE(net);
    cfnet_status st = cf_network_append(net, layer);
    if (st != CFNET_OK) cfnet_layer_free(layer);
    return st;
}

CFNET_API int cfnet_network_layer_count(const cfnet_network *net)
{
    if (!cf_handle_ok(net, CF_MAGIC_NETWORK, "network", __func__)) net = NULL;
    return net ? net->nlayers : 0;
}

CFNET_API cfnet_layer *cfnet_network_layer(const cfnet_network *net, int i)
{
    return CF_HANDLE_ITEM(net, CF_MAGIC_NETWORK, "network", nlayers, layers, i);
}

CFNET_API cfnet_status cfnet_network_input_shape(const cfnet_network *net, int *ndim,
                                                 int64_t *shape)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_FAIL_IF(!net || !ndim || !shape, CFNET_E_INVALID_ARGUMENT,
               "network_input_shape: NULL argument");
    *ndim = 3;
    memcpy(shape, net->in_shape, sizeof net->in_shape);
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_output_shape(const cfnet_network *net, int *ndim,
                                                  int64_t *shape)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_FAIL_IF(!net || !ndim || !shape, CFNET_E_INVALID_ARGUMENT,
               "network_output_shape: NULL argument");
    int nd;
    const int64_t *s;
    shape_before(net, net->nlayers, &nd, &s);
    *ndim = nd;
    memcpy(shape, s, (size_t)nd * sizeof *s);
    return CFNET_OK;
}

static int64_t out_size(const cfnet_network *net)
{
    return net->nlayers ? net->layers[net->nlayers - 1]->out_size : net->in_size;
}

CFNET_API int64_t cfnet_network_param_count(const cfnet_network *net)
{
    if (!cf_handle_ok(net, CF_MAGIC_NETWORK, "network", __func__)) net = NULL;
    if (!net) return 0;
    int64_t total = 0;
    for (int i = 0; i < net->nlayers; i++)
        for (int p = 0; p < net->layers[i]->nparam; p++) total += net->layers[i]->param[p]->numel;
    return total;
}

/* splitmix64: the stream of cfnet_network_init_normal (documented, so fixed). */
static double init_uniform(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

CFNET_API cfnet_status cfnet_network_init_normal(cfnet_network *net, double sd, uint64_t seed)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_FAIL_IF(!net, CFNET_E_INVALID_ARGUMENT, "network_init_normal: net is NULL");
    CF_NET_GUARD(net, true, "network_init_normal");
    CF_FAIL_IF(!(sd > 0.0 && sd <= 1000.0), CFNET_E_INVALID_ARGUMENT,
               "network_init_normal: sd %g, must be finite, > 0 and <= 1000", sd);
    uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
    for (int i = 0; i < net->nlayers; i++) {
        cfnet_layer *l = net->layers[i];
        for (int p = 0; p < l->nparam; p++) {
            if (strcmp(l->param_name[p], "weight") != 0) continue;
            cfnet_tensor *t = l->param[p];
            for (int64_t j = 0; j < t->numel; j++) {
                double u1 = init_uniform(&state), u2 = init_uniform(&state);
                if (u1 < 1e-300) u1 = 1e-300;
                t->data[j] = (float)(sd * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
            }
        }
    }
    return CFNET_OK;
}

CFNET_API size_t cfnet_network_memory_usage(const cfnet_network *net)
{
    if (!cf_handle_ok(net, CF_MAGIC_NETWORK, "network", __func__)) net = NULL;
    if (!net) return 0;
    size_t bytes = sizeof *net + sizeof *net->infer_cache +
                   (size_t)net->cap * sizeof(cfnet_layer *);
    for (int i = 0; i < net->nlayers; i++) {
        const cfnet_layer *l = net->layers[i];
        bytes += sizeof *l + l->table_bytes;
        if (l->ws) bytes += l->ws_size; /* kept by cfnet_layer_forward on the layer alone */
        for (int p = 0; p < l->nparam; p++) /* value + gradient */
            bytes += 2 * (sizeof(cfnet_tensor) + (size_t)l->param[p]->numel * sizeof(float));
        for (int s = 0; s < l->nstate; s++)
            bytes += sizeof(cfnet_tensor) + (size_t)l->state[s]->numel * sizeof(float);
        if (l->ops->cache_bytes) bytes += l->ops->cache_bytes(l);
    }
    if (net->slots) {
        bytes += (size_t)(net->slots_for ? net->slots_for : 1) * CF_MAX_PARAMS *
                 sizeof *net->slots;
        for (int i = 0; i < net->slots_for * CF_MAX_PARAMS; i++) {
            const cfnet_layer *l = net->layers[i / CF_MAX_PARAMS];
            int p = i % CF_MAX_PARAMS;
            if (p >= l->nparam) continue;
            size_t n = (size_t)l->param[p]->numel * sizeof(float);
            bytes += (net->slots[i].m ? n : 0) + (net->slots[i].v ? n : 0);
        }
    }
    if (net->sum_buf) bytes += (size_t)net->sum_buf_n * sizeof(float);
    /* metadata: the entries and their strings with their NULs */
    bytes += (size_t)net->meta_cap * sizeof *net->meta + net->meta_bytes + 2 * (size_t)net->nmeta;
    cf_infer_cache *c = net->infer_cache;
    cf_mutex_lock(&c->lock);
    size_t cached = c->bytes;
    cf_mutex_unlock(&c->lock);
    return bytes + net->train_bytes + cached;
}

CFNET_API cfnet_status cfnet_network_summary(const cfnet_network *net, char *buf, size_t size,
                                             size_t *needed)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_NET_GUARD(net, false, "network_summary");
    CF_FAIL_IF(!net || (!buf && size > 0), CFNET_E_INVALID_ARGUMENT,
               "network_summary: NULL argument");
    size_t used = 0;
    char line[256], shp[96];
    /* The kind column is as wide as the longest kind in the network (at least 15), so that
     * long names (p4m_dft_magnitude, conic_conv_mirror) do not push the other columns out. */
    int kind_w = 15;
    for (int i = 0; i < net->nlayers; i++) {
        int len = (int)strlen(net->layers[i]->ops->name);
        if (len > kind_w) kind_w = len;
    }
    if (size > 0) buf[0] = '\0'; /* a one-byte buffer holds only the NUL */
    for (int i = -1; i <= net->nlayers; i++) {
        int n;
        if (i < 0) {
            n = snprintf(line, sizeof line, "input %s\n",
                         cf_shape_str(shp, sizeof shp, 3, net->in_shape));
        } else if (i < net->nlayers) {
            const cfnet_layer *l = net->layers[i];
            int64_t params = 0;
            for (int p = 0; p < l->nparam; p++) params += l->param[p]->numel;
            n = snprintf(line, sizeof line, "%3d %-*s %-16s %10lld\n", i, kind_w,
                         l->ops->name, cf_shape_str(shp, sizeof shp, l->out_ndim, l->out_shape),
                         (long long)params);
        } else {
            n = snprintf(line, sizeof line, "total parameters %lld\n",
                         (long long)cfnet_network_param_count(net));
        }
        if (n < 0) return cf_error(CFNET_E_INTERNAL, "network_summary: formatting failed");
        if (size > 0 && used < size - 1) {
            size_t room = size - 1 - used, take = (size_t)n < room ? (size_t)n : room;
            memcpy(buf + used, line, take);
            buf[used + take] = '\0';
        }
        used += (size_t)n;
    }
    if (needed) *needed = used;
    CF_FAIL_IF(used >= size, CFNET_E_LIMIT, "network_summary: needs %zu bytes, buffer has %zu",
               used + 1, size);
    return CFNET_OK;
}

/* Checks that x is N x C x H x W for this network; sets *n. */
cfnet_status cf_check_finite_images(const char *what, const float *x, int64_t n, int64_t per)
{
    for (int64_t i = 0; i < n; i++) {
        const float *p = x + i * per;
        int bad = 0; /* no early exit inside an image, so the loop vectorises */
        for (int64_t j = 0; j < per; j++) bad |= !isfinite(p[j]);
        CF_FAIL_IF(bad, CFNET_E_INVALID_ARGUMENT, "%s: image %lld contains NaN or Inf", what,
                   (long long)i);
    }
    return CFNET_OK;
}

static cfnet_status check_input(const cfnet_network *net, const char *what, const cfnet_tensor *x,
                                int64_t *n)
{
    *n = 0;
    return cf_check_batch(what, "input", x, 3, net->in_shape, n);
}

static cfnet_status check_output(const cfnet_network *net, const char *what,
                                 const cfnet_tensor *t, int64_t n)
{
    int nd;
    const int64_t *s;
    shape_before(net, net->nlayers, &nd, &s);
    CF_CHECK(cf_tensor_writable(what, "output tensor", t));
    return cf_check_batch(what, "output tensor", t, nd, s, &n);
}

/* ---- inference buffers, cached per network (read-only on the layers) ---- */

/* One caller's buffers: two activation buffers and a workspace. A call takes a set from the
 * network's cache (or allocates one) and gives it back when done, so inference allocates only
 * on its first call, when the batch grows, or while more threads than ever before run inference
 * at once; concurrent callers never share a set. */
typedef struct cf_infer_bufs {
    float *a, *b;
    void *ws;
    size_t count; /* floats in a and in b */
    size_t ws_bytes;
    struct cf_infer_bufs *next;
} cf_infer_bufs;

static void infer_bufs_free(cf_infer_bufs *bf)
{
    if (!bf) return;
    cf_free(bf->a);
    cf_free(bf->b);
    cf_free(bf->ws);
    cf_free(bf);
}

/* Bytes of a set as cfnet_network_memory_usage counts them. */
static size_t infer_bufs_bytes(const cf_infer_bufs *bf)
{
    return sizeof *bf + bf->count * 2 * sizeof(float) + bf->ws_bytes;
}

/* Releases every cached set (no inference may be running). */
static void infer_cache_clear(cfnet_network *net)
{
    cf_infer_cache *c = net->infer_cache;
    if (!c) return;
    while (c->free_list) {
        cf_infer_bufs *bf = c->free_list;
        c->free_list = bf->next;
        infer_bufs_free(bf);
    }
    c->bytes = 0;
}

/* Takes a set of buffers big enough for layers [0, upto) on a batch of n. */
static cfnet_status infer_bufs_get(const cfnet_network *net, int upto, int64_t n,
                                   cf_infer_bufs **out)
{
    *out = NULL;
    int64_t maxout = 1;
    size_t maxws = 0;
    for (int i = 0; i < upto; i++) {
        const cfnet_layer *l = net->layers[i];
        if (l->out_size > maxout) maxout = l->out_size;
        size_t w = l->ops->workspace ? l->ops->workspace(l, n) : 0;
        if (w > maxws) maxws = w;
    }
    size_t count;
    if (!cf_mul_size((size_t)maxout, (size_t)n, &count) || count > SIZE_MAX / sizeof(float))
        return cf_error(CFNET_E_LIMIT, "network: batch of %lld is too large", (long long)n);
    /* The cache is the network's mutable part: its own lock makes concurrent calls safe. */
    cf_infer_cache *c = net->infer_cache;
    cf_infer_bufs *bf = NULL;
    cf_mutex_lock(&c->lock);
    if (c->free_list) {
        bf = c->free_list;
        c->free_list = bf->next;
        /* too small: freed below (c->bytes counts sets in use as well as kept ones) */
        if (bf->count < count || bf->ws_bytes < maxws) c->bytes -= infer_bufs_bytes(bf);
    }
    cf_mutex_unlock(&c->lock);
    if (bf && bf->count >= count && bf->ws_bytes >= maxws) {
        *out = bf;
        return CFNET_OK;
    }
    infer_bufs_free(bf);
    bf = cf_alloc_zero(&net->alloc, 1, sizeof *bf);
    if (bf) {
        bf->a = cf_alloc(&net->alloc, count * sizeof(float));
        bf->b = cf_alloc(&net->alloc, count * sizeof(float));
        bf->ws = cf_alloc(&net->alloc, maxws);
        bf->count = count;
        bf->ws_bytes = maxws;
    }
    if (!bf || !bf->a || !bf->b || !bf->ws) {
        infer_bufs_free(bf);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "network: cannot allocate inference buffers");
    }
    cf_mutex_lock(&c->lock);
    c->bytes += infer_bufs_bytes(bf);
    cf_mutex_unlock(&c->lock);
    *out = bf;
    return CFNET_OK;
}

/* Gives a set back to the cache (it stays counted in c->bytes). */
static void infer_bufs_put(const cfnet_network *net, cf_infer_bufs *bf)
{
    cf_infer_cache *c = net->infer_cache;
    cf_mutex_lock(&c->lock);
    bf->next = c->free_list;
    c->free_list = bf;
    cf_mutex_unlock(&c->lock);
}

cf_interrupt cf_interrupt_begin(const cfnet_network *net, const char *what, int64_t passes,
                                int upto)
{
    cf_interrupt ir = {net->interrupt_fn, net->interrupt_user, what, 0, passes * upto};
    return ir;
}

/* Asks the interrupt callback before a layer runs (between layers nothing is left half done:
 * no result's bits depend on where a call could stop). */
static cfnet_status interrupt_check(cf_interrupt *ir)
{
    if (!ir || !ir->fn || !ir->fn(ir->user, ir->done, ir->total)) return CFNET_OK;
    return cf_error(CFNET_E_CANCELLED,
                    "%s: stopped by the interrupt callback after %lld of %lld layer runs; no "
                    "output was written",
                    ir->what, (long long)ir->done, (long long)ir->total);
}

/* Samples per part when layer l (with the ReLU after it if `pair`) runs on parts of a batch of
 * n between interrupt checks, or n for one run: parts only with a callback, for per-sample
 * kinds, when their workspace fits the one sized for n. */
static int64_t part_samples(const cfnet_network *net, const cfnet_layer *l, int64_t n,
                            const cf_interrupt *ir, size_t ws_bytes)
{
    if (!ir || !ir->fn || !l->ops->per_sample) return n;
    int64_t part = net->interrupt_part;
    if (part <= 0) {
        part = CF_INTERRUPT_PART_FLOATS / (l->in_size + l->out_size);
        if (part < CF_INTERRUPT_PART_MIN) part = CF_INTERRUPT_PART_MIN;
    }
    if (part >= n) return n;
    /* a part's workspace is no larger than the batch's for the kinds here; checked anyway */
    if (l->ops->workspace && l->ops->workspace(l, part) > ws_bytes) return n;
    if (l->ops->workspace && l->ops->workspace(l, n % part ? n % part : part) > ws_bytes)
        return n;
    return part;
}

/* Runs layer i (and its ReLU if `pair`) on samples [s0, s0 + m) of cur into dst. */
static cfnet_status run_layer(const cfnet_network *net, int i, bool pair, const float *cur,
                              float *dst, int64_t s0, int64_t m, void *ws)
{
    /* Inference forwards do not write to the layer, so the cast keeps the network const. */
    cfnet_layer *l = net->layers[i];
    const float *x = cur + s0 * l->in_size;
    float *y = dst + s0 * l->out_size; /* a fused ReLU keeps the shape */
    if (pair) return l->ops->forward_relu(l, x, y, m, false, ws);
    return cf_layer_forward_raw(l, x, y, m, false, ws);
}

/* Runs layers [0, upto) in inference mode on x (n samples); returns the pointer to the result
 * (inside bf, or x itself when upto == 0). */
static cfnet_status infer_run(const cfnet_network *net, int upto, const float *x, int64_t n,
                              cf_infer_bufs *bf, const float **result, cf_interrupt *ir)
{
    const float *cur = x;
    for (int i = 0; i < upto; i++) {
        CF_CHECK(interrupt_check(ir));
        float *dst = (cur == bf->a) ? bf->b : bf->a;
        /* A layer and its ReLU run in one call (bit-identical to the two layers). */
        const bool pair = i + 1 < upto && relu_pair(net, i);
        const int64_t part = part_samples(net, net->layers[i], n, ir, bf->ws_bytes);
        for (int64_t s0 = 0; s0 < n; s0 += part) {
            if (s0 > 0) CF_CHECK(interrupt_check(ir)); /* per-sample: the same bits */
            CF_CHECK(run_layer(net, i, pair, cur, dst, s0, n - s0 < part ? n - s0 : part,
                               bf->ws));
        }
        if (n == 0) CF_CHECK(run_layer(net, i, pair, cur, dst, 0, 0, bf->ws));
        if (pair) {
            i++;
            if (ir) ir->done++;
        }
        if (ir) ir->done++;
        cur = dst;
    }
    *result = cur;
    return CFNET_OK;
}

/* Inference of layers [0, upto) on x, results copied to out (n x size of layer upto-1). */
cfnet_status cf_network_infer_into(const cfnet_network *net, int upto, const float *x, int64_t n,
                                   float *out, cf_interrupt *ir)
{
    cf_infer_bufs *bf;
    CF_CHECK(infer_bufs_get(net, upto, n, &bf));
    const float *res;
    cfnet_status st = infer_run(net, upto, x, n, bf, &res, ir);
    int64_t sz = upto ? net->layers[upto - 1]->out_size : net->in_size;
    if (st == CFNET_OK) memcpy(out, res, (size_t)(sz * n) * sizeof(float));
    infer_bufs_put(net, bf);
    return st;
}

CFNET_API cfnet_status cfnet_network_infer(const cfnet_network *net, const cfnet_tensor *x,
                                           cfnet_tensor *out)
{
    CF_NET_ENTER(net, false, "network_infer", x, out);
    int64_t n;
    CF_CHECK(check_input(net, "network_infer", x, &n));
    CF_CHECK(check_output(net, "network_infer", out, n));
    CF_CHECK(cf_check_finite_images("network_infer", x->data, n, net->in_size));
    cf_interrupt ir = cf_interrupt_begin(net, "network_infer", 1, net->nlayers);
    return cf_network_infer_into(net, net->nlayers, x->data, n, out->data, &ir);
}

CFNET_API cfnet_status cfnet_network_set_interrupt(cfnet_network *net, cfnet_interrupt_fn fn,
                                                   void *user)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_FAIL_IF(!net, CFNET_E_INVALID_ARGUMENT, "network_set_interrupt: network is NULL");
    CF_NET_GUARD(net, true, "network_set_interrupt");
    net->interrupt_fn = fn;
    net->interrupt_user = fn ? user : NULL;
    return CFNET_OK;
}

/* Outputs of finite images whose probabilities would be NaN (parameters so large that the
 * activations overflow: diverged or edited): an output that is NaN or +infinity, or all of an
 * image's outputs -infinity (exactly where cf_softmax gives a NaN). An output of -infinity among
 * finite ones is a probability of 0, and its argmax means what it says. probabilities (on its
 * probabilities) and predict (on the outputs) refuse the same images. */
static cfnet_status nonfinite_output(const char *what, const float *y, int64_t n, int64_t k)
{
    for (int64_t i = 0; i < n; i++) {
        bool some_finite = false;
        for (int64_t j = 0; j < k; j++) {
            const float v = y[i * k + j];
            CF_FAIL_IF(isnan(v) || v == INFINITY, CFNET_E_NUMERIC,
                       "%s: the output for image %lld is not finite (NaN or infinite: parameters "
                       "too large, diverged or edited?)",
                       what, (long long)i);
            some_finite |= isfinite(v);
        }
        CF_FAIL_IF(!some_finite, CFNET_E_NUMERIC,
                   "%s: the output for image %lld is not finite (NaN or infinite: parameters "
                   "too large, diverged or edited?)",
                   what, (long long)i);
    }
    return CFNET_OK;
}

static bool last_is_softmax(const cfnet_network *net)
{
    return net->nlayers > 0 && net->layers[net->nlayers - 1]->kind == CFNET_LAYER_SOFTMAX;
}

CFNET_API cfnet_status cfnet_network_probabilities(const cfnet_network *net,
                                                   const cfnet_tensor *x, cfnet_tensor *probs)
{
    CF_NET_ENTER(net, false, "network_probabilities", x, probs);
    int64_t n;
    CF_CHECK(check_input(net, "network_probabilities", x, &n));
    int64_t k = out_size(net);
    CF_CHECK(cf_tensor_writable("network_probabilities", "probs tensor", probs));
    CF_FAIL_IF(!probs || probs->ndim != 2 || probs->shape[0] != n || probs->shape[1] != k,
               CFNET_E_SHAPE_MISMATCH, "network_probabilities: probs must be %lldx%lld",
               (long long)n, (long long)k);
    CF_CHECK(cf_check_finite_images("network_probabilities", x->data, n, net->in_size));
    cf_interrupt ir = cf_interrupt_begin(net, "network_probabilities", 1, net->nlayers);
    CF_CHECK(cf_network_infer_into(net, net->nlayers, x->data, n, probs->data, &ir));
    if (!last_is_softmax(net))
        for (int64_t i = 0; i < n; i++) cf_softmax(probs->data + i * k, probs->data + i * k, k);
    return nonfinite_output("network_probabilities", probs->data, n, k);
}

CFNET_API cfnet_status cfnet_network_predict(const cfnet_network *net, const cfnet_tensor *x,
                                             int32_t *labels, int64_t n)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_NET_GUARD(net, false, "network_predict");
    CF_CHECK(cf_handle_check(x, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_FAIL_IF(!net || !labels, CFNET_E_INVALID_ARGUMENT, "network_predict: NULL argument");
    CF_NET_SCOPE(net);
    int64_t nx;
    CF_CHECK(check_input(net, "network_predict", x, &nx));
    CF_FAIL_IF(n != nx, CFNET_E_SHAPE_MISMATCH,
               "network_predict: room for %lld labels, batch has %lld", (long long)n,
               (long long)nx);
    CF_FAIL_IF(net->nlayers == 0, CFNET_E_STATE, "network_predict: the network has no layers");
    int64_t k = out_size(net);
    CF_FAIL_IF(k > INT32_MAX, CFNET_E_LIMIT, "network_predict: too many classes");
    CF_CHECK(cf_check_finite_images("network_predict", x->data, n, net->in_size));
    cf_infer_bufs *bf;
    CF_CHECK(infer_bufs_get(net, net->nlayers, n, &bf));
    const float *res;
    cf_interrupt ir = cf_interrupt_begin(net, "network_predict", 1, net->nlayers);
    cfnet_status st = infer_run(net, net->nlayers, x->data, n, bf, &res, &ir);
    if (st == CFNET_OK) st = nonfinite_output("network_predict", res, n, k);
    if (st == CFNET_OK) {
        for (int64_t i = 0; i < n; i++) labels[i] = (int32_t)cf_argmax(res + i * k, k);
    }
    infer_bufs_put(net, bf);
    return st;
}

/* ---- training-mode forward and backward with network-owned buffers ---- */

cfnet_status cf_network_ensure_train_buffers(cfnet_network *net, int64_t n)
{
    if (net->train_n >= n && net->act) return CFNET_OK;
    free_train_buffers(net);
    int L = net->nlayers;
    size_t bytes = 0, cnt, scratch = 0;
    int64_t maxsz = net->in_size;
    net->act = cf_alloc_zero(&net->alloc, (size_t)(L ? L : 1), sizeof *net->act);
    net->ws = cf_alloc_zero(&net->alloc, (size_t)(L ? L : 1), sizeof *net->ws);
    if (!net->act || !net->ws) goto oom;
    for (int i = 0; i < L; i++) {
        const cfnet_layer *l = net->layers[i];
        if (!cf_mul_size((size_t)l->out_size, (size_t)n, &cnt) || cnt > SIZE_MAX / 4) goto big;
        /* The ReLU of a pair writes over its first layer's output (same size). */
        bool shared = i > 0 && relu_pair(net, i - 1);
        net->act[i] = shared ? net->act[i - 1] : cf_alloc(&net->alloc, cnt * sizeof(float));
        size_t w = l->ops->workspace ? l->ops->workspace(l, n) : 0, kept = w;
        if (l->ops->workspace_kept) {
            kept = l->ops->workspace_kept(l, n);
            if (kept > w) kept = w;
            if (w - kept > scratch) scratch = w - kept;
        }
        net->ws[i] = cf_alloc(&net->alloc, kept);
        if (!net->act[i] || !net->ws[i]) goto oom;
        bytes += (shared ? 0 : cnt * sizeof(float)) + kept;
        if (l->out_size > maxsz) maxsz = l->out_size;
    }
    bytes += (size_t)(L ? L : 1) * (sizeof *net->act + sizeof *net->ws);
    if (!cf_mul_size((size_t)maxsz, (size_t)n, &cnt) || cnt > SIZE_MAX / 4) goto big;
    net->input = cf_alloc(&net->alloc, (size_t)(net->in_size * n) * sizeof(float));
    net->grad_a = cf_alloc(&net->alloc, cnt * sizeof(float));
    net->grad_b = cf_alloc(&net->alloc, cnt * sizeof(float));
    net->scratch = cf_alloc(&net->alloc, scratch);
    if (!net->input || !net->grad_a || !net->grad_b || !net->scratch) goto oom;
    bytes += (size_t)(net->in_size * n) * sizeof(float) + 2 * cnt * sizeof(float) + scratch;
    net->train_n = n;
    net->train_bytes = bytes;
    return CFNET_OK;
oom:
    free_train_buffers(net);
    return cf_error(CFNET_E_OUT_OF_MEMORY, "network: cannot allocate training buffers for %lld",
                    (long long)n);
big:
    free_train_buffers(net);
    return cf_error(CFNET_E_LIMIT, "network: batch of %lld is too large", (long long)n);
}

/* Training calls of layer i: the kept part of its workspace is its own, the scratch part the
 * network's shared region (for the duration of the call only, so that nothing else, such as a
 * callback's inference, ever sees it). */
static cfnet_status train_forward_layer(cfnet_network *net, int i, const float *x, int64_t n,
                                       bool relu)
{
    cfnet_layer *l = net->layers[i];
    l->scratch = l->ops->workspace_kept ? net->scratch : NULL;
    cfnet_status st = relu ? l->ops->forward_relu(l, x, net->act[i], n, true, net->ws[i])
                           : cf_layer_forward_raw(l, x, net->act[i], n, true, net->ws[i]);
    l->scratch = NULL;
    return st;
}

static cfnet_status train_backward_layer(cfnet_network *net, int i, const float *x,
                                         const float *dy, float *dx, int64_t n)
{
    cfnet_layer *l = net->layers[i];
    l->scratch = l->ops->workspace_kept ? net->scratch : NULL;
    cfnet_status st = cf_layer_backward_raw(l, x, net->act[i], dy, dx, n, net->ws[i]);
    l->scratch = NULL;
    return st;
}

/* Training forward of layers [0, upto) on net->input (already filled); results in net->act. */
cfnet_status cf_network_train_forward(cfnet_network *net, int upto, int64_t n)
{
    const float *cur = net->input;
    for (int i = 0; i < upto; i++) {
        /* A pair's ReLU has nothing left to do: its output is the first layer's. Without the
         * ReLU (upto ends between them) the first layer's output is its own. */
        bool pair = i + 1 < upto && relu_pair(net, i);
        CF_CHECK(train_forward_layer(net, i, cur, n, pair));
        cur = net->act[i];
        if (pair) i++;
    }
    net->fwd_n = n;
    return CFNET_OK;
}

/* Backward of layers [0, upto) from d (n x size of layer upto-1, in grad_a or grad_b). */
cfnet_status cf_network_train_backward(cfnet_network *net, int upto, float *d, int64_t n)
{
    for (int i = upto - 1; i >= 0; i--) {
        const float *x = i ? net->act[i - 1] : net->input;
        float *dx = i ? (d == net->grad_a ? net->grad_b : net->grad_a) : NULL;
        /* The ReLU's gradient (dy where y > 0) overwrites dy in place. */
        if (i && net->layers[i]->kind == CFNET_LAYER_RELU) dx = d;
        CF_CHECK(train_backward_layer(net, i, x, d, dx, n));
        d = dx;
    }
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_forward(cfnet_network *net, const cfnet_tensor *x,
                                             cfnet_tensor *out, cfnet_mode mode)
{
    CF_NET_ENTER(net, true, "network_forward", x, out);
    CF_FAIL_IF(mode != CFNET_MODE_INFERENCE && mode != CFNET_MODE_TRAINING,
               CFNET_E_INVALID_ARGUMENT, "network_forward: unknown mode %d", (int)mode);
    int64_t n;
    CF_CHECK(check_input(net, "network_forward", x, &n));
    CF_CHECK(check_output(net, "network_forward", out, n));
    CF_CHECK(cf_check_finite_images("network_forward", x->data, n, net->in_size));
    if (mode == CFNET_MODE_INFERENCE)
        return cf_network_infer_into(net, net->nlayers, x->data, n, out->data, NULL);
    CF_CHECK(cf_network_ensure_train_buffers(net, n));
    memcpy(net->input, x->data, (size_t)(n * net->in_size) * sizeof(float));
    net->fwd_n = 0;
    /* All or nothing: the generators and running statistics are copied first and put back if
     * the forward fails or would leave a running statistic non-finite (finite activations of
     * order 1e19 and more, or a diverged layer before a batch norm): the same check and the same
     * CFNET_E_NUMERIC as cfnet_network_train_step, so that a host that runs training forwards
     * and then infers never gets a network poisoned with NaN. */
    cf_net_snapshot sn;
    CF_CHECK(cf_net_snapshot_take(net, &sn, "network_forward"));
    cfnet_status st = cf_network_train_forward(net, net->nlayers, n);
    if (st == CFNET_OK) st = cf_network_nonfinite_state(net, "network_forward");
    if (st != CFNET_OK) {
        net->fwd_n = 0;
        cf_net_snapshot_restore(net, &sn);
        cf_net_snapshot_free(&sn);
        return st;
    }
    cf_net_snapshot_free(&sn);
    const float *res = net->nlayers ? net->act[net->nlayers - 1] : net->input;
    memcpy(out->data, res, (size_t)(n * out_size(net)) * sizeof(float));
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_backward(cfnet_network *net, const cfnet_tensor *d_out)
{
    CF_NET_ENTER(net, true, "network_backward", d_out, NULL);
    CF_FAIL_IF(net->fwd_n == 0, CFNET_E_STATE,
               "network_backward: needs a preceding training-mode forward");
    CF_CHECK(check_output(net, "network_backward", d_out, net->fwd_n));
    int64_t n = net->fwd_n;
    memcpy(net->grad_a, d_out->data, (size_t)(n * out_size(net)) * sizeof(float));
    return cf_network_train_backward(net, net->nlayers, net->grad_a, n);
}

CFNET_API cfnet_status cfnet_network_zero_grad(cfnet_network *net)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_NET_GUARD(net, true, "network_zero_grad");
    CF_FAIL_IF(!net, CFNET_E_INVALID_ARGUMENT, "network_zero_grad: network is NULL");
    for (int i = 0; i < net->nlayers; i++) cfnet_layer_zero_grad(net->layers[i]);
    return CFNET_OK;
}

CFNET_API void cfnet_free(void *p) { cf_free(p); }

void cf_network_set_threads(cfnet_network *net, int threads)
{
    if (threads != cf_pool_threads(net->pool) || (threads > 1 && !net->pool)) {
        cf_pool_destroy(net->pool);
        net->pool = NULL;
        /* Without a pool (the threads could not be started), each parallel call starts its own
         * threads, as documented in core/pool.h: the option still takes effect. */
        if (cf_pool_create(&net->alloc, threads, &net->pool) != CFNET_OK) net->pool = NULL;
    }
    net->opt.threads = threads;
    for (int i = 0; i < net->nlayers; i++) net->layers[i]->threads = threads;
    free_train_buffers(net); /* workspace sizes depend on the thread count */
    infer_cache_clear(net);
}

cfnet_status cf_network_ensure_slots(cfnet_network *net)
{
    if (net->slots && net->slots_for == net->nlayers) return CFNET_OK;
    free_slots(net);
    size_t count = (size_t)(net->nlayers ? net->nlayers : 1) * CF_MAX_PARAMS;
    net->slots = cf_alloc_zero(&net->alloc, count, sizeof *net->slots);
    CF_FAIL_IF(!net->slots, CFNET_E_OUT_OF_MEMORY, "optimizer: out of memory");
    net->slots_for = net->nlayers;
    net->slots_fresh = true;
    bool two = net->opt.optimizer == CFNET_OPTIMIZER_ADAM;
    for (int i = 0; i < net->nlayers; i++) {
        for (int p = 0; p < net->layers[i]->nparam; p++) {
            cf_opt_slot *s = &net->slots[i * CF_MAX_PARAMS + p];
            size_t n = (size_t)net->layers[i]->param[p]->numel;
            s->m = cf_alloc_zero(&net->alloc, n, sizeof(float));
            s->v = two ? cf_alloc_zero(&net->alloc, n, sizeof(float)) : NULL;
            if (!s->m || (two && !s->v)) {
                free_slots(net);
                return cf_error(CFNET_E_OUT_OF_MEMORY, "optimizer: out of memory");
            }
        }
    }
    return CFNET_OK;
}

void cf_network_reset_optimizer(cfnet_network *net) { free_slots(net); }

/* ---- the in-use flag ---- */

/* An address unique to the calling thread, as its identity. */
static uintptr_t this_thread(void)
{
    static _Thread_local char token;
    return (uintptr_t)&token;
}

cf_net_guard cf_net_guard_enter(const cfnet_network *cnet, bool write)
{
    /* The counters are the only fields read-only calls write; the network itself is not
     * const-allocated, so the cast is sound. */
    cf_net_guard g = {(cfnet_network *)cnet, write, true, false, false};
    cfnet_network *net = g.net;
    if (!net) return g;
    uintptr_t me = this_thread();
    /* A thread that finds the network free records the process's fork generation before its
     * claim becomes visible, so a refused call that sees another generation was refused by a
     * claim from before a fork(), which no thread of this process will release. (A claim
     * inherited through fork() keeps the network from ever looking free here.) */
    uint64_t gen = cf_platform_fork_generation();
    if (write) {
        if (atomic_load(&net->writer) == 0 && atomic_load(&net->readers) == 0)
            atomic_store(&net->claim_gen, gen);
        uintptr_t none = 0;
        if (!atomic_compare_exchange_strong(&net->writer, &none, me)) {
            g.held = false; /* another writer, or this thread re-entering from a callback */
            /* A claim from before a fork() is the fork's even when it is this thread's own (a
             * child forked from inside a training call's callback, which typically never
             * returns to that call): the fork's message, not "wait until that call returns". */
            g.forked = atomic_load(&net->claim_gen) != gen;
            g.reentered = none == me && !g.forked;
            return g;
        }
        if (atomic_load(&net->readers) != 0) { /* seq_cst pairs with the reader's order */
            atomic_store(&net->writer, 0);
            g.held = false;
            g.forked = atomic_load(&net->claim_gen) != gen;
        }
        return g;
    }
    unsigned r = atomic_load(&net->readers);
    do {
        if (r == 0 && atomic_load(&net->writer) == 0) atomic_store(&net->claim_gen, gen);
    } while (!atomic_compare_exchange_weak(&net->readers, &r, r + 1));
    uintptr_t w = atomic_load(&net->writer);
    if (w != 0 && w != me) {
        atomic_fetch_sub(&net->readers, 1);
        g.held = false;
        g.forked = atomic_load(&net->claim_gen) != gen;
    }
    return g;
}

void cf_net_guard_leave(cf_net_guard *g)
{
    if (!g->net || !g->held) return;
    if (g->write) atomic_store(&g->net->writer, 0);
    else atomic_fetch_sub(&g->net->readers, 1);
}
