/* Saving and loading whole networks in the safetensors layout (format: docs/format.md).
 *
 * A file is an 8-byte little-endian header length H, H bytes of JSON (jansson parses and
 * writes it), then the float32 tensors. The loader validates everything before it hands out a
 * network: the tensor table against the buffer, the architecture by re-creating every layer
 * through its public create function and appending it, then every tensor against the shapes
 * the layers expect. */
#include "../core/network.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

_Static_assert(sizeof(float) == 4 && FLT_MANT_DIG == 24, "float must be IEEE 754 binary32");

/* Built-in limits of the loader. Kept as named constants so that a later version can make them
 * caller-settable. Exceeding one gives CFNET_E_LIMIT. */
#define CF_PERSIST_MAX_HEADER ((uint64_t)16 << 20) /* bytes of JSON header */
#define CF_PERSIST_MAX_DATA ((uint64_t)4 << 30)    /* bytes of tensor data */
#define CF_PERSIST_MAX_LAYERS 65536                /* layers in one architecture */

#define CF_FORMAT_NAME "cfnet"
#define CF_FORMAT_VERSION "1"
#define CF_TENSOR_NAME_MAX 128

#define LOAD "network_load"

/* File-supplied text quoted in an error message: printable ASCII only (so the message stays one
 * line), at most 80 characters. The result lives until the end of the enclosing full
 * expression (C11 temporary lifetime), which covers a cf_error call. */
typedef struct safe_text {
    char s[88];
} safe_text;

static safe_text make_safe(const char *in)
{
    safe_text t;
    size_t n = 0;
    for (; in && in[n] && n < 80; n++)
        t.s[n] = (in[n] >= 0x20 && in[n] < 0x7f) ? in[n] : '?';
    if (in && in[n]) {
        memcpy(t.s + n, "...", 3);
        n += 3;
    }
    t.s[n] = '\0';
    return t;
}
#define SAFE(str) (make_safe(str).s)

/* ------------------------------------------------------------------------------------------ */
/* Kinds                                                                                      */

static const cf_layer_ops *const ops_table[] = {
    [CFNET_LAYER_CONV2D] = &cf_conv2d_ops,
    [CFNET_LAYER_CONIC_CONV] = &cf_conic_conv_ops,
    [CFNET_LAYER_P4_LIFT] = &cf_p4_lift_ops,
    [CFNET_LAYER_P4_CONV] = &cf_p4_conv_ops,
    [CFNET_LAYER_GROUP_POOL] = &cf_group_pool_ops,
    [CFNET_LAYER_DFT_PROJECTION] = &cf_dft_projection_ops,
    [CFNET_LAYER_DFT_MAGNITUDE] = &cf_dft_magnitude_ops,
    [CFNET_LAYER_DENSE] = &cf_dense_ops,
    [CFNET_LAYER_RELU] = &cf_relu_ops,
    [CFNET_LAYER_POOL] = &cf_pool_ops,
    [CFNET_LAYER_BATCH_NORM] = &cf_batch_norm_ops,
    [CFNET_LAYER_DROPOUT] = &cf_dropout_ops,
    [CFNET_LAYER_SOFTMAX] = &cf_softmax_ops,
};
#define N_KINDS ((int)(sizeof ops_table / sizeof ops_table[0]))

const cf_layer_ops *cf_layer_ops_of(int kind)
{
    return kind > 0 && kind < N_KINDS ? ops_table[kind] : NULL;
}

static int kind_of_name(const char *name)
{
    for (int k = 1; k < N_KINDS; k++)
        if (ops_table[k] && strcmp(ops_table[k]->name, name) == 0) return k;
    return 0;
}

static int count_names(const char *const *names, int max)
{
    int n = 0;
    while (n < max && names[n]) n++;
    return n;
}

/* Re-creates a layer through its public create function, so that its validation applies. The
 * icfg / fcfg slots are the create arguments in order (see each kind's icfg_names). */
static cfnet_status create_layer(int kind, const int *ic, const float *fc, cfnet_layer **out)
{
    switch (kind) {
    case CFNET_LAYER_CONV2D:
        return cfnet_layer_conv2d_create(ic[0], ic[1], ic[2], (cfnet_padding)ic[3], out);
    case CFNET_LAYER_CONIC_CONV:
        return cfnet_layer_conic_conv_create(ic[0], ic[1], ic[2], (cfnet_padding)ic[3],
                                             (cfnet_interp)ic[4], out);
    case CFNET_LAYER_P4_LIFT:
        return cfnet_layer_p4_lift_create(ic[0], ic[1], (cfnet_padding)ic[2], out);
    case CFNET_LAYER_P4_CONV:
        return cfnet_layer_p4_conv_create(ic[0], ic[1], (cfnet_padding)ic[2], out);
    case CFNET_LAYER_GROUP_POOL:
        return cfnet_layer_group_pool_create((cfnet_pool_mode)ic[0], out);
    case CFNET_LAYER_DFT_PROJECTION:
        return cfnet_layer_dft_projection_create(ic[0], ic[1], (cfnet_interp)ic[2], out);
    case CFNET_LAYER_DFT_MAGNITUDE: return cfnet_layer_dft_magnitude_create(out);
    case CFNET_LAYER_DENSE: return cfnet_layer_dense_create(ic[0], out);
    case CFNET_LAYER_RELU: return cfnet_layer_relu_create(out);
    case CFNET_LAYER_POOL:
        return cfnet_layer_pool_create((cfnet_pool_mode)ic[0], ic[1], ic[2], out);
    case CFNET_LAYER_BATCH_NORM: return cfnet_layer_batch_norm_create(fc[0], fc[1], out);
    case CFNET_LAYER_DROPOUT: return cfnet_layer_dropout_create(fc[0], out);
    case CFNET_LAYER_SOFTMAX: return cfnet_layer_softmax_create(out);
    }
    return cf_error(CFNET_E_INTERNAL, "no create function for layer kind %d", kind);
}

/* The dropout layer keeps its mask generator as l->priv (src/layers/dropout.c); it is part of
 * the training state. */
static cf_rng *layer_rng(const cfnet_layer *l)
{
    return l->kind == CFNET_LAYER_DROPOUT ? (cf_rng *)l->priv : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Options: name in the file, key, and how the value is written.                              */

typedef enum { OPT_REAL, OPT_INT, OPT_OPTIMIZER, OPT_ROTATION } opt_type;

static const struct {
    const char *name;
    cfnet_option key;
    opt_type type;
} option_table[] = {
    {"optimizer", CFNET_OPTION_OPTIMIZER, OPT_OPTIMIZER},
    {"lr", CFNET_OPTION_LEARNING_RATE, OPT_REAL},
    {"beta1", CFNET_OPTION_BETA1, OPT_REAL},
    {"beta2", CFNET_OPTION_BETA2, OPT_REAL},
    {"epsilon", CFNET_OPTION_EPSILON, OPT_REAL},
    {"momentum", CFNET_OPTION_MOMENTUM, OPT_REAL},
    {"weight_decay", CFNET_OPTION_WEIGHT_DECAY, OPT_REAL},
    {"decay_rate", CFNET_OPTION_LR_DECAY_RATE, OPT_REAL},
    {"decay_steps", CFNET_OPTION_LR_DECAY_STEPS, OPT_INT},
    {"threads", CFNET_OPTION_THREADS, OPT_INT},
    {"aug_rotation", CFNET_OPTION_AUG_ROTATION, OPT_ROTATION},
    {"aug_jitter", CFNET_OPTION_AUG_JITTER, OPT_INT},
    {"aug_flip", CFNET_OPTION_AUG_FLIP, OPT_INT},
};
#define N_OPTIONS ((int)(sizeof option_table / sizeof option_table[0]))

static const char *const optimizer_names[] = {[CFNET_OPTIMIZER_ADAM] = "adam",
                                              [CFNET_OPTIMIZER_SGD] = "sgd"};
static const char *const rotation_names[] = {[CFNET_AUG_ROTATION_NONE] = "none",
                                             [CFNET_AUG_ROTATION_QUARTER] = "quarter",
                                             [CFNET_AUG_ROTATION_ANY] = "any"};

/* ------------------------------------------------------------------------------------------ */
/* The tensors of a network, in file order: per layer its parameters then its state; then, if
 * requested and present, the optimiser moments (m, and v for Adam) of every parameter.       */

typedef struct tensor_ref {
    char name[CF_TENSOR_NAME_MAX];
    float *data;
    int ndim;
    const int64_t *shape;
    int64_t numel;
} tensor_ref;

typedef struct tensor_list {
    tensor_ref *t;
    size_t n, cap;
} tensor_list;

static void list_free(tensor_list *ls)
{
    cf_free(ls->t);
    memset(ls, 0, sizeof *ls);
}

static cfnet_status list_add(tensor_list *ls, const char *what, float *data, int ndim,
                             const int64_t *shape, int64_t numel, const char *fmt, ...)
    CF_PRINTF(7, 8);

static cfnet_status list_add(tensor_list *ls, const char *what, float *data, int ndim,
                             const int64_t *shape, int64_t numel, const char *fmt, ...)
{
    if (ls->n == ls->cap) {
        size_t cap = ls->cap ? 2 * ls->cap : 32;
        tensor_ref *grown = cf_malloc(cap * sizeof *grown);
        CF_FAIL_IF(!grown, CFNET_E_OUT_OF_MEMORY, "%s: out of memory", what);
        if (ls->n) memcpy(grown, ls->t, ls->n * sizeof *grown);
        cf_free(ls->t);
        ls->t = grown;
        ls->cap = cap;
    }
    tensor_ref *r = &ls->t[ls->n];
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(r->name, sizeof r->name, fmt, ap);
    va_end(ap);
    CF_FAIL_IF(w < 0 || (size_t)w >= sizeof r->name, CFNET_E_INTERNAL,
               "%s: tensor name too long", what);
    r->data = data;
    r->ndim = ndim;
    r->shape = shape;
    r->numel = numel;
    ls->n++;
    return CFNET_OK;
}

static cfnet_status list_layer_tensors(const cfnet_network *net, const char *what,
                                       tensor_list *ls)
{
    for (int i = 0; i < net->nlayers; i++) {
        const cfnet_layer *l = net->layers[i];
        for (int p = 0; p < l->nparam; p++) {
            const cfnet_tensor *t = l->param[p];
            CF_CHECK(list_add(ls, what, t->data, t->ndim, t->shape, t->numel, "%d.%s.%s", i,
                              l->ops->name, l->param_name[p]));
        }
        for (int s = 0; s < l->nstate; s++) {
            const cfnet_tensor *t = l->state[s];
            CF_CHECK(list_add(ls, what, t->data, t->ndim, t->shape, t->numel, "%d.%s.%s", i,
                              l->ops->name, l->state_name[s]));
        }
    }
    return CFNET_OK;
}

/* The moments of every parameter; net->slots must cover every layer. */
static cfnet_status list_optimizer_tensors(const cfnet_network *net, const char *what,
                                           tensor_list *ls)
{
    bool adam = net->opt.optimizer == CFNET_OPTIMIZER_ADAM;
    for (int i = 0; i < net->nlayers; i++) {
        const cfnet_layer *l = net->layers[i];
        for (int p = 0; p < l->nparam; p++) {
            const cfnet_tensor *t = l->param[p];
            const cf_opt_slot *s = &net->slots[i * CF_MAX_PARAMS + p];
            CF_CHECK(list_add(ls, what, s->m, t->ndim, t->shape, t->numel, "optimizer.%d.%s.%s.m",
                              i, l->ops->name, l->param_name[p]));
            if (adam)
                CF_CHECK(list_add(ls, what, s->v, t->ndim, t->shape, t->numel,
                                  "optimizer.%d.%s.%s.v", i, l->ops->name, l->param_name[p]));
        }
    }
    return CFNET_OK;
}

static bool has_optimizer_state(const cfnet_network *net)
{
    return net->slots && net->slots_for == net->nlayers && net->nlayers > 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Little-endian encoding, independent of the host's byte order.                              */

static void put_u64le(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void put_f32le(unsigned char *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(u >> (8 * i));
}

static float get_f32le(const unsigned char *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ------------------------------------------------------------------------------------------ */
/* Saving                                                                                     */

/* jansson's set/append functions take (and on failure release) the new reference and fail on
 * NULL, so a chain of `ok = ok && ... == 0` builds an object without leaks. */
static bool obj_set(json_t *o, const char *key, json_t *v)
{
    return json_object_set_new(o, key, v) == 0;
}

static bool arr_add(json_t *a, json_t *v) { return json_array_append_new(a, v) == 0; }

static json_t *u64_string(uint64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, v);
    return json_string(s);
}

static json_t *rng_json(const cf_rng *rng)
{
    json_t *a = json_array();
    bool ok = a != NULL;
    for (int i = 0; ok && i < 4; i++) ok = arr_add(a, u64_string(rng->s[i]));
    if (!ok) {
        json_decref(a);
        return NULL;
    }
    return a;
}

static json_t *layer_json(const cfnet_layer *l)
{
    json_t *o = json_object();
    bool ok = o && obj_set(o, "kind", json_string(l->ops->name));
    for (int j = 0; ok && j < CF_MAX_ICFG && l->ops->icfg_names[j]; j++)
        ok = obj_set(o, l->ops->icfg_names[j], json_integer(l->icfg[j]));
    for (int j = 0; ok && j < CF_MAX_FCFG && l->ops->fcfg_names[j]; j++)
        ok = obj_set(o, l->ops->fcfg_names[j], json_real((double)l->fcfg[j]));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *options_json(const cfnet_network *net)
{
    json_t *o = json_object();
    bool ok = o != NULL;
    for (int k = 0; ok && k < N_OPTIONS; k++) {
        double v = 0;
        ok = cfnet_network_get_option(net, option_table[k].key, &v) == CFNET_OK;
        if (!ok) break;
        json_t *j = NULL;
        switch (option_table[k].type) {
        case OPT_REAL: j = json_real(v); break;
        case OPT_INT: j = json_integer((json_int_t)v); break;
        case OPT_OPTIMIZER: j = json_string(optimizer_names[(int)v]); break;
        case OPT_ROTATION: j = json_string(rotation_names[(int)v]); break;
        }
        ok = obj_set(o, option_table[k].name, j);
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *training_json(const cfnet_network *net)
{
    json_t *o = json_object(), *lr = json_object();
    bool ok = o && lr && obj_set(o, "step", json_integer((json_int_t)net->step)) &&
              obj_set(o, "rng", rng_json(&net->rng));
    for (int i = 0; ok && i < net->nlayers; i++) {
        const cf_rng *r = layer_rng(net->layers[i]);
        if (!r) continue;
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        ok = obj_set(lr, key, rng_json(r));
    }
    if (ok) {
        ok = obj_set(o, "layer_rng", lr);
        lr = NULL;
    }
    json_decref(lr);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Serialises `v` into a new NUL-terminated buffer (cf_free) through json_dumpb, so that no
 * memory from jansson's allocator changes hands. */
static char *dump_json(const json_t *v, size_t flags, size_t *len)
{
    size_t n = json_dumpb(v, NULL, 0, flags);
    char *text = n ? cf_malloc(n + 1) : NULL;
    if (!text) return NULL;
    if (json_dumpb(v, text, n, flags) != n) {
        cf_free(text);
        return NULL;
    }
    text[n] = '\0';
    *len = n;
    return text;
}

/* The architecture as a JSON string value holding the text
 * {"input", "seed", "layers", "options"[, "training"]}. */
static json_t *architecture_string(const cfnet_network *net, bool training)
{
    json_t *a = json_object(), *in = json_array(), *layers = json_array();
    bool ok = a && in && layers;
    for (int d = 0; ok && d < 3; d++) ok = arr_add(in, json_integer((json_int_t)net->in_shape[d]));
    for (int i = 0; ok && i < net->nlayers; i++) ok = arr_add(layers, layer_json(net->layers[i]));
    if (ok) { /* obj_set consumes the reference, also on failure */
        ok = obj_set(a, "input", in);
        in = NULL;
    }
    ok = ok && obj_set(a, "seed", u64_string(net->seed));
    if (ok) {
        ok = obj_set(a, "layers", layers);
        layers = NULL;
    }
    ok = ok && obj_set(a, "options", options_json(net));
    if (training) ok = ok && obj_set(a, "training", training_json(net));
    size_t len = 0;
    char *text = ok ? dump_json(a, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17),
                                &len)
                    : NULL;
    json_t *str = text ? json_stringn(text, len) : NULL;
    cf_free(text);
    json_decref(in);
    json_decref(layers);
    json_decref(a);
    return str;
}

static json_t *tensor_entry_json(const tensor_ref *r, uint64_t begin, uint64_t end)
{
    json_t *o = json_object(), *shape = json_array(), *offs = json_array();
    bool ok = o && shape && offs;
    for (int d = 0; ok && d < r->ndim; d++) ok = arr_add(shape, json_integer(r->shape[d]));
    ok = ok && arr_add(offs, json_integer((json_int_t)begin)) &&
         arr_add(offs, json_integer((json_int_t)end));
    ok = ok && obj_set(o, "dtype", json_string("F32"));
    if (ok) {
        ok = obj_set(o, "shape", shape);
        shape = NULL;
    }
    if (ok) {
        ok = obj_set(o, "data_offsets", offs);
        offs = NULL;
    }
    json_decref(shape);
    json_decref(offs);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Builds the whole file in a new buffer (freed with cf_free). */
static cfnet_status serialize(const cfnet_network *net, unsigned flags, const char *what,
                              unsigned char **buf_out, size_t *size_out)
{
    CF_FAIL_IF(flags & ~CFNET_SAVE_OPTIMIZER, CFNET_E_INVALID_ARGUMENT,
               "%s: unknown flags 0x%x", what, flags & ~CFNET_SAVE_OPTIMIZER);
    bool with_opt = (flags & CFNET_SAVE_OPTIMIZER) != 0;
    tensor_list ls = {0};
    cfnet_status st = list_layer_tensors(net, what, &ls);
    if (st == CFNET_OK && with_opt && has_optimizer_state(net))
        st = list_optimizer_tensors(net, what, &ls);
    if (st != CFNET_OK) {
        list_free(&ls);
        return st;
    }

    json_t *root = json_object(), *meta = json_object();
    bool ok = root && meta && obj_set(meta, "format", json_string(CF_FORMAT_NAME)) &&
              obj_set(meta, "format_version", json_string(CF_FORMAT_VERSION)) &&
              obj_set(meta, "library_version", json_string(CFNET_VERSION_STRING)) &&
              obj_set(meta, "architecture", architecture_string(net, with_opt));
    if (ok) {
        ok = obj_set(root, "__metadata__", meta);
        meta = NULL;
    }
    uint64_t offset = 0;
    for (size_t i = 0; ok && i < ls.n; i++) {
        uint64_t bytes = (uint64_t)ls.t[i].numel * 4u;
        ok = obj_set(root, ls.t[i].name, tensor_entry_json(&ls.t[i], offset, offset + bytes));
        offset += bytes;
    }
    const size_t dump_flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
    size_t hlen = ok ? json_dumpb(root, NULL, 0, dump_flags) : 0;
    json_decref(meta);
    if (hlen == 0) {
        json_decref(root);
        list_free(&ls);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "%s: out of memory building the header", what);
    }

    size_t padded = (hlen + 7u) & ~(size_t)7u;
    st = CFNET_OK;
    if ((uint64_t)padded > CF_PERSIST_MAX_HEADER || offset > CF_PERSIST_MAX_DATA)
        st = cf_error(CFNET_E_LIMIT,
                      "%s: the model needs a %zu-byte header and %" PRIu64 " bytes of data; the "
                      "loader accepts at most %" PRIu64 " and %" PRIu64,
                      what, padded, offset, CF_PERSIST_MAX_HEADER, CF_PERSIST_MAX_DATA);
    unsigned char *buf = NULL;
    size_t total = 8 + padded + (size_t)offset;
    if (st == CFNET_OK) {
        buf = cf_malloc(total);
        if (!buf)
            st = cf_error(CFNET_E_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", what, total);
    }
    if (st == CFNET_OK && json_dumpb(root, (char *)buf + 8, hlen, dump_flags) != hlen)
        st = cf_error(CFNET_E_INTERNAL, "%s: the header changed size while being written", what);
    if (st == CFNET_OK) {
        put_u64le(buf, (uint64_t)padded);
        memset(buf + 8 + hlen, ' ', padded - hlen);
        unsigned char *p = buf + 8 + padded;
        for (size_t i = 0; i < ls.n; i++)
            for (int64_t j = 0; j < ls.t[i].numel; j++, p += 4) put_f32le(p, ls.t[i].data[j]);
        *buf_out = buf;
        *size_out = total;
        buf = NULL;
    }
    cf_free(buf);
    json_decref(root);
    list_free(&ls);
    return st;
}

CFNET_API cfnet_status cfnet_network_save_buffer(const cfnet_network *net, unsigned flags,
                                                 void **buffer, size_t *size)
{
    CF_FAIL_IF(!net || !buffer || !size, CFNET_E_INVALID_ARGUMENT,
               "network_save_buffer: NULL argument");
    unsigned char *buf;
    size_t n;
    CF_CHECK(serialize(net, flags, "network_save_buffer", &buf, &n));
    *buffer = buf;
    *size = n;
    return CFNET_OK;
}

static const char *errno_text(int err, char *buf, size_t size)
{
    if (strerror_r(err, buf, size) != 0) snprintf(buf, size, "error %d", err);
    return buf;
}

/* The process umask, read without changing it (Linux /proc); 022 if unavailable. */
static mode_t current_umask(void)
{
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return mask;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned m;
        if (sscanf(line, "Umask: %o", &m) == 1) {
            mask = (mode_t)(m & 0777);
            break;
        }
    }
    fclose(f);
    return mask;
}

/* Best effort: makes the rename durable. The file itself is already complete and synced. */
static void sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = NULL;
    if (slash) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = cf_malloc(n + 1);
        if (!dir) return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir ? dir : ".", O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    cf_free(dir);
}

/* Writes buf to a temporary file beside `path`, syncs it and renames it over `path`. */
static cfnet_status write_atomically(const char *path, const unsigned char *buf, size_t size)
{
    static const char suffix[] = ".tmp.XXXXXX";
    const char *what = "network_save";
    char ebuf[128];
    size_t plen = strlen(path);
    char *tmp = cf_malloc(plen + sizeof suffix);
    CF_FAIL_IF(!tmp, CFNET_E_OUT_OF_MEMORY, "%s: out of memory", what);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, suffix, sizeof suffix);

    int fd = mkstemp(tmp);
    if (fd < 0) {
        int err = errno;
        cf_free(tmp);
        return cf_error(CFNET_E_IO, "%s: cannot create a temporary file beside '%s': %s", what,
                        path, errno_text(err, ebuf, sizeof ebuf));
    }
    /* mkstemp creates the file 0600; give it the mode an ordinary create would (or the mode of
     * the file it replaces). Failing to do so is not worth losing the save over. */
    struct stat sb;
    mode_t mode = (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) ? (sb.st_mode & 0777)
                                                                : (0666 & ~current_umask());
    (void)fchmod(fd, mode);

    const char *step = NULL;
    int err = 0;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        err = errno;
        close(fd);
        step = "opening";
    } else {
        if (size > 0 && fwrite(buf, 1, size, f) != size) step = "writing";
        else if (fflush(f) != 0) step = "writing";
        else if (fsync(fileno(f)) != 0) step = "syncing";
        if (step) err = errno;
        if (fclose(f) != 0 && !step) {
            err = errno;
            step = "closing";
        }
    }
    if (!step && rename(tmp, path) != 0) {
        err = errno;
        step = "renaming";
    }
    if (step) {
        unlink(tmp);
        cf_error(CFNET_E_IO, "%s: %s the temporary file '%s' for '%s' failed: %s", what, step, tmp,
                 path, errno_text(err, ebuf, sizeof ebuf));
        cf_free(tmp);
        return CFNET_E_IO;
    }
    cf_free(tmp);
    sync_parent_dir(path);
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_save(const cfnet_network *net, const char *path,
                                          unsigned flags)
{
    CF_FAIL_IF(!net || !path, CFNET_E_INVALID_ARGUMENT, "network_save: NULL argument");
    CF_FAIL_IF(!*path, CFNET_E_INVALID_ARGUMENT, "network_save: path is empty");
    unsigned char *buf;
    size_t size;
    CF_CHECK(serialize(net, flags, "network_save", &buf, &size));
    cfnet_status st = write_atomically(path, buf, size);
    cf_free(buf);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Loading: the tensor table                                                                  */

typedef struct st_entry {
    const char *name; /* key in the parsed header (lives as long as the root) */
    int ndim;
    int64_t shape[CFNET_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;
    bool used;
} st_entry;

typedef struct st_table {
    st_entry *e;
    size_t n;
} st_table;

static int by_begin(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static st_entry *table_find(const st_table *tab, const char *name)
{
    st_entry key = {.name = name};
    return tab->n ? bsearch(&key, tab->e, tab->n, sizeof *tab->e, by_name) : NULL;
}

static const char *shape_text(char *buf, size_t size, int ndim, const int64_t *shape)
{
    if (ndim == 0) {
        snprintf(buf, size, "[] (scalar)");
        return buf;
    }
    return cf_shape_str(buf, size, ndim, shape);
}

static cfnet_status parse_entry(const char *key_name, json_t *v, uint64_t dsize, st_entry *e)
{
    safe_text nm = make_safe(key_name);
    const char *name = nm.s;
    char sbuf[96];
    CF_FAIL_IF(!json_is_object(v), CFNET_E_FORMAT, LOAD ": tensor '%s' is not a JSON object",
               name);
    const char *key;
    json_t *x;
    json_object_foreach(v, key, x)
    {
        CF_FAIL_IF(strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"),
                   CFNET_E_FORMAT, LOAD ": tensor '%s' has an unknown field '%s'", name, SAFE(key));
    }
    json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    CF_FAIL_IF(!dtype || !shape || !offs, CFNET_E_FORMAT,
               LOAD ": tensor '%s' lacks \"%s\"", name,
               !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    CF_FAIL_IF(!json_is_string(dtype), CFNET_E_FORMAT, LOAD ": tensor '%s': dtype is not a string",
               name);
    CF_FAIL_IF(strcmp(json_string_value(dtype), "F32") != 0, CFNET_E_FORMAT,
               LOAD ": tensor '%s' has dtype \"%s\", only \"F32\" is supported", name,
               SAFE(json_string_value(dtype)));
    CF_FAIL_IF(!json_is_array(shape), CFNET_E_FORMAT, LOAD ": tensor '%s': shape is not an array",
               name);
    size_t nd = json_array_size(shape);
    CF_FAIL_IF(nd > CFNET_MAX_DIMS, CFNET_E_FORMAT,
               LOAD ": tensor '%s' has %zu dimensions, at most %d are supported", name, nd,
               CFNET_MAX_DIMS);
    e->name = key_name;
    e->ndim = (int)nd;
    e->numel = 1;
    for (size_t d = 0; d < nd; d++) {
        json_t *s = json_array_get(shape, d);
        CF_FAIL_IF(!json_is_integer(s) || json_integer_value(s) < 0, CFNET_E_FORMAT,
                   LOAD ": tensor '%s': shape entry %zu is not a non-negative integer", name, d);
        e->shape[d] = (int64_t)json_integer_value(s);
        CF_FAIL_IF(!cf_mul_i64(e->numel, e->shape[d], &e->numel), CFNET_E_FORMAT,
                   LOAD ": tensor '%s': element count overflows", name);
    }
    CF_FAIL_IF(e->numel > INT64_MAX / 4, CFNET_E_FORMAT,
               LOAD ": tensor '%s': byte count overflows", name);
    CF_FAIL_IF(!json_is_array(offs) || json_array_size(offs) != 2 ||
                   !json_is_integer(json_array_get(offs, 0)) ||
                   !json_is_integer(json_array_get(offs, 1)),
               CFNET_E_FORMAT, LOAD ": tensor '%s': data_offsets is not [begin, end] (integers)",
               name);
    json_int_t b = json_integer_value(json_array_get(offs, 0)),
               en = json_integer_value(json_array_get(offs, 1));
    CF_FAIL_IF(b < 0 || en < b, CFNET_E_FORMAT,
               LOAD ": tensor '%s': data_offsets [%lld, %lld] needs 0 <= begin <= end", name,
               (long long)b, (long long)en);
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    CF_FAIL_IF(e->end - e->begin != (uint64_t)e->numel * 4u, CFNET_E_FORMAT,
               LOAD ": tensor '%s': data_offsets [%lld, %lld] span %" PRIu64 " bytes, shape %s "
                    "needs %" PRIu64,
               name, (long long)b, (long long)en, e->end - e->begin,
               shape_text(sbuf, sizeof sbuf, e->ndim, e->shape), (uint64_t)e->numel * 4u);
    CF_FAIL_IF(e->end > dsize, CFNET_E_FORMAT,
               LOAD ": tensor '%s' ends at byte %" PRIu64 ", past the end of the %" PRIu64
                    "-byte data section",
               name, e->end, dsize);
    return CFNET_OK;
}

/* Reads and checks every tensor entry; on success the table is sorted by name. */
static cfnet_status read_table(json_t *root, uint64_t dsize, st_table *tab)
{
    size_t n = json_object_size(root) - (json_object_get(root, "__metadata__") ? 1 : 0);
    tab->e = cf_calloc(n ? n : 1, sizeof *tab->e);
    CF_FAIL_IF(!tab->e, CFNET_E_OUT_OF_MEMORY, LOAD ": out of memory");
    tab->n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "__metadata__") == 0) continue;
        CF_CHECK(parse_entry(key, v, dsize, &tab->e[tab->n]));
        tab->n++;
    }
    /* The data must be tiled exactly: sorted by begin, each tensor starts where the previous
     * one ended, from 0 to the end of the buffer. */
    if (tab->n) qsort(tab->e, tab->n, sizeof *tab->e, by_begin);
    uint64_t at = 0;
    for (size_t i = 0; i < tab->n; i++) {
        const st_entry *e = &tab->e[i];
        if (e->begin < at)
            return cf_error(CFNET_E_FORMAT,
                            LOAD ": tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64
                                 ", %" PRIu64 ") overlap",
                            SAFE(tab->e[i - 1].name), tab->e[i - 1].begin, tab->e[i - 1].end,
                            SAFE(e->name), e->begin, e->end);
        if (e->begin > at)
            return cf_error(CFNET_E_FORMAT,
                            LOAD ": gap of %" PRIu64 " bytes in the data before tensor '%s' "
                                 "(begins at %" PRIu64 ", previous data ends at %" PRIu64 ")",
                            e->begin - at, SAFE(e->name), e->begin, at);
        at = e->end;
    }
    CF_FAIL_IF(at != dsize, CFNET_E_FORMAT,
               LOAD ": %" PRIu64 " trailing bytes after the last tensor (data section of %" PRIu64
                    " bytes, tensors end at %" PRIu64 ")",
               dsize - at, dsize, at);
    if (tab->n) qsort(tab->e, tab->n, sizeof *tab->e, by_name);
    return CFNET_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Loading: metadata and architecture                                                         */

static cfnet_status read_metadata(json_t *root, json_t **arch_out)
{
    json_t *meta = json_object_get(root, "__metadata__");
    CF_FAIL_IF(!meta, CFNET_E_FORMAT, LOAD ": the header has no \"__metadata__\"");
    CF_FAIL_IF(!json_is_object(meta), CFNET_E_FORMAT, LOAD ": \"__metadata__\" is not an object");
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v)
    {
        CF_FAIL_IF(!json_is_string(v), CFNET_E_FORMAT,
                   LOAD ": metadata \"%s\" is not a string", SAFE(key));
    }
    static const char *const required[] = {"format", "format_version", "architecture"};
    for (int i = 0; i < 3; i++)
        CF_FAIL_IF(!json_object_get(meta, required[i]), CFNET_E_FORMAT,
                   LOAD ": metadata lacks \"%s\"", required[i]);
    const char *fmt = json_string_value(json_object_get(meta, "format"));
    CF_FAIL_IF(strcmp(fmt, CF_FORMAT_NAME) != 0, CFNET_E_FORMAT,
               LOAD ": metadata format is \"%s\", expected \"" CF_FORMAT_NAME "\"", SAFE(fmt));
    const char *ver = json_string_value(json_object_get(meta, "format_version"));
    CF_FAIL_IF(strcmp(ver, CF_FORMAT_VERSION) != 0, CFNET_E_FORMAT,
               LOAD ": format_version is \"%s\", this library reads \"" CF_FORMAT_VERSION "\"",
               SAFE(ver));
    json_t *text = json_object_get(meta, "architecture");
    json_error_t jerr;
    json_t *arch = json_loadb(json_string_value(text), json_string_length(text),
                              JSON_REJECT_DUPLICATES, &jerr);
    if (!arch) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return cf_error(CFNET_E_OUT_OF_MEMORY, LOAD ": out of memory parsing the architecture");
        return cf_error(CFNET_E_FORMAT, LOAD ": architecture is not valid JSON: %s (at byte %d)",
                        SAFE(jerr.text), jerr.position);
    }
    if (!json_is_object(arch)) {
        json_decref(arch);
        return cf_error(CFNET_E_FORMAT, LOAD ": architecture is not a JSON object");
    }
    *arch_out = arch;
    return CFNET_OK;
}

/* Parses a canonical decimal uint64 ("0" or no leading zero, digits only). */
static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || (s[0] == '0' && s[1])) return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static cfnet_status read_rng(json_t *v, const char *what, cf_rng *rng)
{
    CF_FAIL_IF(!json_is_array(v) || json_array_size(v) != 4, CFNET_E_FORMAT,
               LOAD ": %s is not an array of 4 decimal strings", what);
    uint64_t any = 0;
    for (size_t i = 0; i < 4; i++) {
        json_t *s = json_array_get(v, i);
        CF_FAIL_IF(!json_is_string(s) || !parse_u64(json_string_value(s), &rng->s[i]),
                   CFNET_E_FORMAT, LOAD ": %s entry %zu is not a decimal uint64 string", what, i);
        any |= rng->s[i];
    }
    CF_FAIL_IF(!any, CFNET_E_FORMAT, LOAD ": %s is all zero (not a valid generator state)", what);
    return CFNET_OK;
}

/* Fails on any key of `o` not in the NULL-terminated list `known`. */
static cfnet_status only_keys(json_t *o, const char *where, const char *const *known)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        bool ok = false;
        for (int i = 0; known[i] && !ok; i++) ok = strcmp(key, known[i]) == 0;
        CF_FAIL_IF(!ok, CFNET_E_FORMAT, LOAD ": %s has an unknown field \"%s\"", where, SAFE(key));
    }
    return CFNET_OK;
}

/* The status to report for a rejection by a public function called on file contents. */
static cfnet_status as_format_error(cfnet_status st)
{
    return st == CFNET_E_OUT_OF_MEMORY || st == CFNET_E_LIMIT ? st : CFNET_E_FORMAT;
}

static cfnet_status make_layer(json_t *lj, int index, cfnet_layer **out)
{
    char where[48];
    snprintf(where, sizeof where, "layer %d", index);
    CF_FAIL_IF(!json_is_object(lj), CFNET_E_FORMAT, LOAD ": %s is not an object", where);
    json_t *kj = json_object_get(lj, "kind");
    CF_FAIL_IF(!json_is_string(kj), CFNET_E_FORMAT, LOAD ": %s has no \"kind\" string", where);
    int kind = kind_of_name(json_string_value(kj));
    CF_FAIL_IF(!kind, CFNET_E_FORMAT, LOAD ": %s has unknown kind \"%s\"", where,
               SAFE(json_string_value(kj)));
    const cf_layer_ops *ops = cf_layer_ops_of(kind);
    int ni = count_names(ops->icfg_names, CF_MAX_ICFG);
    int nf = count_names(ops->fcfg_names, CF_MAX_FCFG);
    int ic[CF_MAX_ICFG] = {0};
    float fc[CF_MAX_FCFG] = {0};
    for (int j = 0; j < ni; j++) {
        const char *name = ops->icfg_names[j];
        json_t *v = json_object_get(lj, name);
        CF_FAIL_IF(!v, CFNET_E_FORMAT, LOAD ": %s (%s) lacks \"%s\"", where, ops->name, name);
        CF_FAIL_IF(!json_is_integer(v) || json_integer_value(v) < INT_MIN ||
                       json_integer_value(v) > INT_MAX,
                   CFNET_E_FORMAT, LOAD ": %s (%s): \"%s\" is not an integer in the int range",
                   where, ops->name, name);
        ic[j] = (int)json_integer_value(v);
    }
    for (int j = 0; j < nf; j++) {
        const char *name = ops->fcfg_names[j];
        json_t *v = json_object_get(lj, name);
        CF_FAIL_IF(!v, CFNET_E_FORMAT, LOAD ": %s (%s) lacks \"%s\"", where, ops->name, name);
        double d = json_number_value(v);
        CF_FAIL_IF(!json_is_number(v) || !(fabs(d) <= FLT_MAX), CFNET_E_FORMAT,
                   LOAD ": %s (%s): \"%s\" is not a number in the float range", where, ops->name,
                   name);
        fc[j] = (float)d;
    }
    const char *key;
    json_t *v;
    json_object_foreach(lj, key, v)
    {
        bool known = strcmp(key, "kind") == 0;
        for (int j = 0; j < ni && !known; j++) known = strcmp(key, ops->icfg_names[j]) == 0;
        for (int j = 0; j < nf && !known; j++) known = strcmp(key, ops->fcfg_names[j]) == 0;
        CF_FAIL_IF(!known, CFNET_E_FORMAT, LOAD ": %s (%s) has an unknown field \"%s\"", where,
                   ops->name, SAFE(key));
    }
    cfnet_status st = create_layer(kind, ic, fc, out);
    if (st != CFNET_OK)
        return cf_error(as_format_error(st), LOAD ": %s (%s) has an invalid configuration: %s",
                        where, ops->name, cfnet_last_error());
    return CFNET_OK;
}

static cfnet_status set_options(cfnet_network *net, json_t *oj)
{
    CF_FAIL_IF(!json_is_object(oj), CFNET_E_FORMAT, LOAD ": \"options\" is not an object");
    const char *key;
    json_t *v;
    json_object_foreach(oj, key, v)
    {
        int k = 0;
        while (k < N_OPTIONS && strcmp(option_table[k].name, key) != 0) k++;
        CF_FAIL_IF(k == N_OPTIONS, CFNET_E_FORMAT, LOAD ": unknown option \"%s\"", SAFE(key));
    }
    /* Table order: the optimiser first (setting it resets the optimiser state). */
    for (int k = 0; k < N_OPTIONS; k++) {
        v = json_object_get(oj, option_table[k].name);
        if (!v) continue; /* absent: the default */
        double value = 0;
        bool ok = false;
        switch (option_table[k].type) {
        case OPT_REAL:
            ok = json_is_number(v);
            value = json_number_value(v);
            break;
        case OPT_INT:
            ok = json_is_integer(v);
            value = (double)json_integer_value(v);
            break;
        case OPT_OPTIMIZER:
        case OPT_ROTATION: {
            const char *const *names =
                option_table[k].type == OPT_OPTIMIZER ? optimizer_names : rotation_names;
            int count = option_table[k].type == OPT_OPTIMIZER ? 2 : 3;
            for (int i = 0; json_is_string(v) && i < count && !ok; i++) {
                ok = strcmp(json_string_value(v), names[i]) == 0;
                value = i;
            }
            break;
        }
        }
        CF_FAIL_IF(!ok, CFNET_E_FORMAT, LOAD ": option \"%s\" has a value of the wrong type",
                   option_table[k].name);
        cfnet_status st = cfnet_network_set_option(net, option_table[k].key, value);
        if (st != CFNET_OK)
            return cf_error(as_format_error(st), LOAD ": option \"%s\": %s", option_table[k].name,
                            cfnet_last_error());
    }
    return CFNET_OK;
}

/* Creates the network, its layers and options from the architecture. */
static cfnet_status build_network(json_t *arch, cfnet_network **out)
{
    static const char *const known[] = {"input", "seed", "layers", "options", "training", NULL};
    CF_CHECK(only_keys(arch, "the architecture", known));
    json_t *in = json_object_get(arch, "input"), *seed = json_object_get(arch, "seed"),
           *layers = json_object_get(arch, "layers");
    CF_FAIL_IF(!json_is_array(in) || json_array_size(in) != 3, CFNET_E_FORMAT,
               LOAD ": architecture \"input\" is not an array [C, H, W]");
    int dims[3];
    for (size_t d = 0; d < 3; d++) {
        json_t *x = json_array_get(in, d);
        CF_FAIL_IF(!json_is_integer(x) || json_integer_value(x) < 1 ||
                       json_integer_value(x) > INT_MAX,
                   CFNET_E_FORMAT, LOAD ": architecture \"input\" entry %zu is not a positive int",
                   d);
        dims[d] = (int)json_integer_value(x);
    }
    uint64_t sd;
    CF_FAIL_IF(!json_is_string(seed) || !parse_u64(json_string_value(seed), &sd), CFNET_E_FORMAT,
               LOAD ": architecture \"seed\" is not a decimal uint64 string");
    CF_FAIL_IF(!json_is_array(layers), CFNET_E_FORMAT,
               LOAD ": architecture \"layers\" is not an array");
    CF_FAIL_IF(json_array_size(layers) > CF_PERSIST_MAX_LAYERS, CFNET_E_LIMIT,
               LOAD ": %zu layers, the limit is %d", json_array_size(layers),
               CF_PERSIST_MAX_LAYERS);

    cfnet_network *net = NULL;
    cfnet_status st = cfnet_network_create(dims[0], dims[1], dims[2], sd, &net);
    if (st != CFNET_OK)
        return cf_error(as_format_error(st), LOAD ": invalid input shape: %s", cfnet_last_error());
    for (size_t i = 0; st == CFNET_OK && i < json_array_size(layers); i++) {
        cfnet_layer *l = NULL;
        st = make_layer(json_array_get(layers, i), (int)i, &l);
        if (st != CFNET_OK) break;
        st = cf_network_append(net, l);
        if (st != CFNET_OK) {
            cfnet_layer_free(l);
            st = cf_error(as_format_error(st), LOAD ": %s", cfnet_last_error());
        }
    }
    json_t *opts = json_object_get(arch, "options");
    if (st == CFNET_OK && opts) st = set_options(net, opts);
    if (st != CFNET_OK) {
        cfnet_network_free(net);
        return st;
    }
    *out = net;
    return CFNET_OK;
}

/* Copies the tensors of `ls` from the file, checking names and shapes; marks them used. */
static cfnet_status fill_tensors(const tensor_list *ls, st_table *tab, const unsigned char *data)
{
    char a[96], b[96];
    for (size_t i = 0; i < ls->n; i++) {
        const tensor_ref *r = &ls->t[i];
        st_entry *e = table_find(tab, r->name);
        CF_FAIL_IF(!e, CFNET_E_FORMAT, LOAD ": tensor '%s' is missing", r->name);
        bool same = e->ndim == r->ndim;
        for (int d = 0; same && d < r->ndim; d++) same = e->shape[d] == r->shape[d];
        CF_FAIL_IF(!same, CFNET_E_FORMAT, LOAD ": tensor '%s' has shape %s, the layer needs %s",
                   r->name, shape_text(a, sizeof a, e->ndim, e->shape),
                   shape_text(b, sizeof b, r->ndim, r->shape));
        const unsigned char *p = data + e->begin;
        for (int64_t j = 0; j < r->numel; j++, p += 4) r->data[j] = get_f32le(p);
        e->used = true;
    }
    return CFNET_OK;
}

static cfnet_status restore_training(cfnet_network *net, json_t *tj)
{
    CF_FAIL_IF(!json_is_object(tj), CFNET_E_FORMAT, LOAD ": \"training\" is not an object");
    static const char *const known[] = {"step", "rng", "layer_rng", NULL};
    CF_CHECK(only_keys(tj, "\"training\"", known));
    json_t *step = json_object_get(tj, "step"), *rng = json_object_get(tj, "rng"),
           *lr = json_object_get(tj, "layer_rng");
    CF_FAIL_IF(!json_is_integer(step) || json_integer_value(step) < 0, CFNET_E_FORMAT,
               LOAD ": training \"step\" is not a non-negative integer");
    CF_FAIL_IF(!rng, CFNET_E_FORMAT, LOAD ": training lacks \"rng\"");
    CF_FAIL_IF(!json_is_object(lr), CFNET_E_FORMAT,
               LOAD ": training \"layer_rng\" is not an object");
    cf_rng r;
    CF_CHECK(read_rng(rng, "training \"rng\"", &r));
    /* Every layer with a generator has exactly one entry, keyed by its decimal index. */
    size_t with_rng = 0;
    for (int i = 0; i < net->nlayers; i++) {
        cf_rng *lrng = layer_rng(net->layers[i]);
        if (!lrng) continue;
        char key[16], what[48];
        snprintf(key, sizeof key, "%d", i);
        snprintf(what, sizeof what, "training \"layer_rng\" of layer %d", i);
        json_t *v = json_object_get(lr, key);
        CF_FAIL_IF(!v, CFNET_E_FORMAT, LOAD ": training \"layer_rng\" lacks layer %d (%s)", i,
                   net->layers[i]->ops->name);
        CF_CHECK(read_rng(v, what, lrng));
        with_rng++;
    }
    CF_FAIL_IF(json_object_size(lr) != with_rng, CFNET_E_FORMAT,
               LOAD ": training \"layer_rng\" has entries for layers without a generator");
    net->rng = r;
    net->step = (int64_t)json_integer_value(step);
    return CFNET_OK;
}

/* Parses and validates a whole file image; *out only on success. */
static cfnet_status load(const unsigned char *buf, size_t size, cfnet_network **out)
{
    CF_FAIL_IF(size < 8, CFNET_E_FORMAT,
               LOAD ": %zu bytes is too short for the 8-byte header length", size);
    uint64_t hlen = get_u64le(buf);
    CF_FAIL_IF(hlen > CF_PERSIST_MAX_HEADER, CFNET_E_LIMIT,
               LOAD ": header length %" PRIu64 " exceeds the limit of %" PRIu64 " bytes", hlen,
               CF_PERSIST_MAX_HEADER);
    CF_FAIL_IF(hlen > size - 8, CFNET_E_FORMAT,
               LOAD ": header length %" PRIu64 " runs past the end of the %zu-byte input", hlen,
               size);
    uint64_t dsize = (uint64_t)(size - 8) - hlen;
    CF_FAIL_IF(dsize > CF_PERSIST_MAX_DATA, CFNET_E_LIMIT,
               LOAD ": %" PRIu64 " bytes of tensor data exceed the limit of %" PRIu64, dsize,
               CF_PERSIST_MAX_DATA);
    const unsigned char *data = buf + 8 + hlen;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return cf_error(CFNET_E_OUT_OF_MEMORY, LOAD ": out of memory parsing the header");
        return cf_error(CFNET_E_FORMAT, LOAD ": header is not valid JSON: %s (at byte %d)",
                        SAFE(jerr.text), jerr.position);
    }
    json_t *arch = NULL;
    st_table tab = {0};
    tensor_list ls = {0};
    cfnet_network *net = NULL;
    cfnet_status st = CFNET_OK;
    if (!json_is_object(root))
        st = cf_error(CFNET_E_FORMAT, LOAD ": header is not a JSON object");
    if (st == CFNET_OK) st = read_metadata(root, &arch);
    if (st == CFNET_OK) st = read_table(root, dsize, &tab);
    if (st == CFNET_OK) st = build_network(arch, &net);
    if (st == CFNET_OK) st = list_layer_tensors(net, LOAD, &ls);
    if (st == CFNET_OK) st = fill_tensors(&ls, &tab, data);

    json_t *training = arch ? json_object_get(arch, "training") : NULL;
    if (st == CFNET_OK && training) st = restore_training(net, training);
    /* Optimiser moments: all present or all absent, and only with the training state. */
    bool any_opt = false;
    for (size_t i = 0; i < tab.n && !any_opt; i++)
        any_opt = !tab.e[i].used && strncmp(tab.e[i].name, "optimizer.", 10) == 0;
    if (st == CFNET_OK && any_opt && !training)
        st = cf_error(CFNET_E_FORMAT, LOAD ": optimizer tensors without a \"training\" section");
    if (st == CFNET_OK && any_opt) {
        ls.n = 0;
        st = cf_network_ensure_slots(net);
        if (st == CFNET_OK && !has_optimizer_state(net))
            st = cf_error(CFNET_E_FORMAT,
                          LOAD ": optimizer tensors for a network without parameters");
        if (st == CFNET_OK) st = list_optimizer_tensors(net, LOAD, &ls);
        if (st == CFNET_OK) st = fill_tensors(&ls, &tab, data);
    }
    for (size_t i = 0; st == CFNET_OK && i < tab.n; i++)
        if (!tab.e[i].used)
            st = cf_error(CFNET_E_FORMAT, LOAD ": unexpected tensor '%s'", SAFE(tab.e[i].name));

    list_free(&ls);
    cf_free(tab.e);
    json_decref(arch);
    json_decref(root);
    if (st != CFNET_OK) {
        cfnet_network_free(net);
        return st;
    }
    *out = net;
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_load_buffer(const void *buffer, size_t size,
                                                 cfnet_network **out)
{
    CF_FAIL_IF(!buffer || !out, CFNET_E_INVALID_ARGUMENT, "network_load_buffer: NULL argument");
    return load(buffer, size, out);
}

CFNET_API cfnet_status cfnet_network_load(const char *path, cfnet_network **out)
{
    CF_FAIL_IF(!path || !out, CFNET_E_INVALID_ARGUMENT, "network_load: NULL argument");
    char ebuf[128];
    FILE *f = fopen(path, "rb");
    if (!f) {
        int err = errno;
        return cf_error(CFNET_E_IO, LOAD ": cannot open '%s': %s", path,
                        errno_text(err, ebuf, sizeof ebuf));
    }
    struct stat sb;
    cfnet_status st = CFNET_OK;
    if (fstat(fileno(f), &sb) != 0) {
        int err = errno;
        st = cf_error(CFNET_E_IO, LOAD ": cannot stat '%s': %s", path,
                      errno_text(err, ebuf, sizeof ebuf));
    } else if (!S_ISREG(sb.st_mode)) {
        st = cf_error(CFNET_E_IO, LOAD ": '%s' is not a regular file", path);
    } else if ((uint64_t)sb.st_size > 8 + CF_PERSIST_MAX_HEADER + CF_PERSIST_MAX_DATA ||
               (uint64_t)sb.st_size > SIZE_MAX) {
        st = cf_error(CFNET_E_LIMIT,
                      LOAD ": '%s' has %lld bytes, more than a model within the limits (%" PRIu64
                           ")",
                      path, (long long)sb.st_size,
                      8 + CF_PERSIST_MAX_HEADER + CF_PERSIST_MAX_DATA);
    }
    unsigned char *buf = NULL;
    size_t size = st == CFNET_OK ? (size_t)sb.st_size : 0;
    if (st == CFNET_OK) {
        buf = cf_malloc(size);
        if (!buf)
            st = cf_error(CFNET_E_OUT_OF_MEMORY, LOAD ": cannot allocate %zu bytes for '%s'",
                          size, path);
    }
    if (st == CFNET_OK && size > 0 && fread(buf, 1, size, f) != size) {
        int err = errno;
        st = ferror(f) ? cf_error(CFNET_E_IO, LOAD ": reading '%s' failed: %s", path,
                                  errno_text(err, ebuf, sizeof ebuf))
                       : cf_error(CFNET_E_IO, LOAD ": '%s' ended early (it changed while being "
                                              "read)", path);
    }
    fclose(f);
    if (st == CFNET_OK) st = load(buf, size, out);
    cf_free(buf);
    return st;
}
