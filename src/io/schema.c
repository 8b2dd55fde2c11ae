/* What a cfnet model file says (docs/format.md): the "__metadata__" strings, the architecture
 * (input, seed, layers with their hyper-parameters, options, optional training state) and the
 * names and order of the tensors. Loading re-creates every layer through its public create
 * function and appends it, so the same validation applies as for a network built by hand, then
 * checks every tensor against the shapes the layers expect. */
#include "io/io.h"

#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CF_FORMAT_NAME "cfnet"
#define CF_FORMAT_VERSION "1"
/* Prefix of the user metadata keys (cfnet_network_set_metadata) in "__metadata__". */
#define CF_USER_PREFIX "user."

/* A layer's own generator (dropout's mask generator), part of the training state. */
static cf_rng *layer_rng(const cfnet_layer *l)
{
    return l->ops->rng ? l->ops->rng((cfnet_layer *)l) : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* The tensors of a network, in file order: per layer its parameters then its state; then, if
 * requested and present, the optimiser moments (m, and v for Adam) of every parameter.       */

static cfnet_status list_layer_tensors(const cfnet_network *net, const char *what,
                                       cf_tensor_list *ls)
{
    for (int i = 0; i < net->nlayers; i++) {
        const cfnet_layer *l = net->layers[i];
        for (int p = 0; p < l->nparam; p++) {
            const cfnet_tensor *t = l->param[p];
            CF_CHECK(cf_tensor_list_add(ls, what, t->data, t->ndim, t->shape, t->numel, "%d.%s.%s", i,
                              l->ops->name, l->param_name[p]));
        }
        for (int s = 0; s < l->nstate; s++) {
            const cfnet_tensor *t = l->state[s];
            CF_CHECK(cf_tensor_list_add(ls, what, t->data, t->ndim, t->shape, t->numel, "%d.%s.%s", i,
                              l->ops->name, l->state_name[s]));
        }
    }
    return CFNET_OK;
}

/* The moments of every parameter; net->slots must cover every layer. */
static cfnet_status list_optimizer_tensors(const cfnet_network *net, const char *what,
                                           cf_tensor_list *ls)
{
    bool adam = net->opt.optimizer == CFNET_OPTIMIZER_ADAM;
    for (int i = 0; i < net->nlayers; i++) {
        const cfnet_layer *l = net->layers[i];
        for (int p = 0; p < l->nparam; p++) {
            const cfnet_tensor *t = l->param[p];
            const cf_opt_slot *s = &net->slots[i * CF_MAX_PARAMS + p];
            CF_CHECK(cf_tensor_list_add(ls, what, s->m, t->ndim, t->shape, t->numel, "optimizer.%d.%s.%s.m",
                              i, l->ops->name, l->param_name[p]));
            if (adam)
                CF_CHECK(cf_tensor_list_add(ls, what, s->v, t->ndim, t->shape, t->numel,
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
/* Saving                                                                                     */

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
    for (int i = 0; ok && i < 4; i++) ok = cf_json_append(a, u64_string(rng->s[i]));
    return cf_json_built(a, ok);
}

static json_t *layer_json(const cfnet_layer *l)
{
    json_t *o = json_object();
    bool ok = o && cf_json_set(o, "kind", json_string(l->ops->name));
    for (int j = 0; ok && j < CF_MAX_ICFG && l->ops->icfg_names[j]; j++)
        ok = cf_json_set(o, l->ops->icfg_names[j], json_integer(l->icfg[j]));
    for (int j = 0; ok && j < CF_MAX_FCFG && l->ops->fcfg_names[j]; j++)
        ok = cf_json_set(o, l->ops->fcfg_names[j], json_real((double)l->fcfg[j]));
    return cf_json_built(o, ok);
}

static json_t *options_json(const cfnet_network *net)
{
    json_t *o = json_object();
    bool ok = o != NULL;
    for (int k = 0; ok && k < cf_option_count(); k++) {
        const cf_option_def *d = cf_option_at(k);
        double v = 0;
        ok = cfnet_network_get_option(net, d->key, &v) == CFNET_OK;
        if (!ok) break;
        json_t *j = NULL;
        switch (d->type) {
        case CF_OPTION_REAL: j = json_real(v); break;
        case CF_OPTION_INT: j = json_integer((json_int_t)v); break;
        case CF_OPTION_NAMED: j = json_string(d->value_names[(int)(v - d->min)]); break;
        }
        ok = cf_json_set(o, d->file_name, j);
    }
    return cf_json_built(o, ok);
}

static json_t *training_json(const cfnet_network *net)
{
    json_t *o = json_object(), *lr = json_object();
    bool ok = o && lr && cf_json_set(o, "step", json_integer((json_int_t)net->step)) &&
              cf_json_set(o, "rng", rng_json(&net->rng));
    for (int i = 0; ok && i < net->nlayers; i++) {
        const cf_rng *r = layer_rng(net->layers[i]);
        if (!r) continue;
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        ok = cf_json_set(lr, key, rng_json(r));
    }
    if (ok) {
        ok = cf_json_set(o, "layer_rng", lr);
        lr = NULL;
    }
    json_decref(lr);
    return cf_json_built(o, ok);
}

/* Serialises `v` into a new NUL-terminated buffer (cf_free) through json_dumpb, so that no
 * memory from jansson's allocator changes hands. */
static char *dump_json(const cf_allocator *alloc, const json_t *v, size_t flags, size_t *len)
{
    size_t n = json_dumpb(v, NULL, 0, flags);
    char *text = n ? cf_alloc(alloc, n + 1) : NULL;
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
    for (int d = 0; ok && d < 3; d++) ok = cf_json_append(in, json_integer((json_int_t)net->in_shape[d]));
    for (int i = 0; ok && i < net->nlayers; i++) ok = cf_json_append(layers, layer_json(net->layers[i]));
    if (ok) { /* cf_json_set consumes the reference, also on failure */
        ok = cf_json_set(a, "input", in);
        in = NULL;
    }
    ok = ok && cf_json_set(a, "seed", u64_string(net->seed));
    if (ok) {
        ok = cf_json_set(a, "layers", layers);
        layers = NULL;
    }
    ok = ok && cf_json_set(a, "options", options_json(net));
    if (training) ok = ok && cf_json_set(a, "training", training_json(net));
    size_t len = 0;
    char *text = ok ? dump_json(&net->alloc, a, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17),
                                &len)
                    : NULL;
    json_t *str = text ? json_stringn(text, len) : NULL;
    cf_free(text);
    json_decref(in);
    json_decref(layers);
    json_decref(a);
    return str;
}

/* Builds the whole file in a new buffer (freed with cf_free). */
cfnet_status cf_schema_serialize(const cfnet_network *net, unsigned flags, const char *what,
                                 unsigned char **buf_out, size_t *size_out)
{
    const unsigned known = CFNET_SAVE_OPTIMIZER | CFNET_SAVE_ALLOW_NONFINITE;
    CF_FAIL_IF(flags & ~known, CFNET_E_INVALID_ARGUMENT, "%s: unknown flags 0x%x", what,
               flags & ~known);
    bool with_opt = (flags & CFNET_SAVE_OPTIMIZER) != 0;
    cf_tensor_list ls = {0};
    ls.alloc = &net->alloc;
    cfnet_status st = list_layer_tensors(net, what, &ls);
    if (st == CFNET_OK && with_opt && has_optimizer_state(net))
        st = list_optimizer_tensors(net, what, &ls);
    /* A model with NaN or infinite values is almost always a diverged one: refuse it unless the
     * caller says so explicitly. */
    for (size_t i = 0; st == CFNET_OK && !(flags & CFNET_SAVE_ALLOW_NONFINITE) && i < ls.n; i++)
        for (int64_t j = 0; j < ls.t[i].numel; j++)
            if (!isfinite(ls.t[i].data[j])) {
                st = cf_error(CFNET_E_NUMERIC,
                              "%s: tensor '%s' holds a non-finite value at index %lld (pass "
                              "CFNET_SAVE_ALLOW_NONFINITE to save it anyway)",
                              what, ls.t[i].name, (long long)j);
                break;
            }
    if (st != CFNET_OK) {
        cf_tensor_list_free(&ls);
        return st;
    }

    json_t *root = json_object(), *meta = json_object();
    bool ok = root && meta && cf_json_set(meta, "format", json_string(CF_FORMAT_NAME)) &&
              cf_json_set(meta, "format_version", json_string(CF_FORMAT_VERSION)) &&
              cf_json_set(meta, "library_version", json_string(CFNET_VERSION_STRING)) &&
              cf_json_set(meta, "architecture", architecture_string(net, with_opt));
    for (int i = 0; ok && i < net->nmeta; i++) {
        char key[sizeof CF_USER_PREFIX + CFNET_METADATA_MAX_KEY];
        snprintf(key, sizeof key, CF_USER_PREFIX "%s", net->meta[i].key);
        ok = cf_json_set(meta, key, json_string(net->meta[i].value));
    }
    if (ok) {
        ok = cf_json_set(root, "__metadata__", meta);
        meta = NULL;
    }
    json_decref(meta);
    if (!ok) {
        st = cf_error(CFNET_E_OUT_OF_MEMORY, "%s: out of memory building the header", what);
    } else {
        uint64_t max_header, max_data;
        cf_io_limits(net->ctx, &max_header, &max_data);
        st = cf_container_encode(&net->alloc, root, &ls, max_header, max_data, what, buf_out, size_out);
    }
    json_decref(root);
    cf_tensor_list_free(&ls);
    return st;
}

CFNET_API cfnet_status cfnet_network_save_buffer(const cfnet_network *net, unsigned flags,
                                                 void **buffer, size_t *size)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_NET_GUARD(net, false, "network_save_buffer");
    CF_FAIL_IF(!net || !buffer || !size, CFNET_E_INVALID_ARGUMENT,
               "network_save_buffer: NULL argument");
    CF_NET_SCOPE(net);
    unsigned char *buf;
    size_t n;
    CF_CHECK(cf_schema_serialize(net, flags, "network_save_buffer", &buf, &n));
    *buffer = buf;
    *size = n;
    return CFNET_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Loading: metadata and architecture                                                         */

static cfnet_status read_metadata(json_t *root, json_t **arch_out)
{
    json_t *meta = json_object_get(root, "__metadata__");
    CF_FAIL_IF(!meta, CFNET_E_FORMAT, CF_LOAD ": the header has no \"__metadata__\"");
    CF_FAIL_IF(!json_is_object(meta), CFNET_E_FORMAT, CF_LOAD ": \"__metadata__\" is not an object");
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v)
    {
        CF_FAIL_IF(!json_is_string(v), CFNET_E_FORMAT,
                   CF_LOAD ": metadata \"%s\" is not a string", CF_SAFE(key));
    }
    static const char *const required[] = {"format", "format_version", "architecture"};
    for (int i = 0; i < 3; i++)
        CF_FAIL_IF(!json_object_get(meta, required[i]), CFNET_E_FORMAT,
                   CF_LOAD ": metadata lacks \"%s\"", required[i]);
    const char *fmt = json_string_value(json_object_get(meta, "format"));
    CF_FAIL_IF(strcmp(fmt, CF_FORMAT_NAME) != 0, CFNET_E_FORMAT,
               CF_LOAD ": metadata format is \"%s\", expected \"" CF_FORMAT_NAME "\"", CF_SAFE(fmt));
    const char *ver = json_string_value(json_object_get(meta, "format_version"));
    /* Name the writer (library_version is informative, but tells the user which libcfnet reads
     * the file) and this library, so that a file from another release says what to do. */
    const char *writer = json_string_value(json_object_get(meta, "library_version"));
    CF_FAIL_IF(strcmp(ver, CF_FORMAT_VERSION) != 0, CFNET_E_FORMAT,
               CF_LOAD ": format_version is \"%s\"%s%s%s, but libcfnet " CFNET_VERSION_STRING
                       " reads format_version \"" CF_FORMAT_VERSION
                       "\" only: load the file with the libcfnet that wrote it",
               CF_SAFE(ver), writer ? " (written by libcfnet " : "", writer ? CF_SAFE(writer) : "",
               writer ? ")" : "");
    json_t *text = json_object_get(meta, "architecture");
    return cf_json_parse_object(json_string_value(text), json_string_length(text), "architecture",
                                arch_out);
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
               CF_LOAD ": %s is not an array of 4 decimal strings", what);
    uint64_t any = 0;
    for (size_t i = 0; i < 4; i++) {
        json_t *s = json_array_get(v, i);
        CF_FAIL_IF(!json_is_string(s) || !parse_u64(json_string_value(s), &rng->s[i]),
                   CFNET_E_FORMAT, CF_LOAD ": %s entry %zu is not a decimal uint64 string", what, i);
        any |= rng->s[i];
    }
    CF_FAIL_IF(!any, CFNET_E_FORMAT, CF_LOAD ": %s is all zero (not a valid generator state)", what);
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
        CF_FAIL_IF(!ok, CFNET_E_FORMAT, CF_LOAD ": %s has an unknown field \"%s\"", where, CF_SAFE(key));
    }
    return CFNET_OK;
}

/* The status to report for a rejection by a public function called on file contents. */
static cfnet_status as_format_error(cfnet_status st)
{
    return st == CFNET_E_OUT_OF_MEMORY || st == CFNET_E_LIMIT ? st : CFNET_E_FORMAT;
}

static cfnet_status make_layer(const cf_allocator *alloc, json_t *lj, int index,
                               cfnet_layer **out)
{
    char where[48];
    snprintf(where, sizeof where, "layer %d", index);
    CF_FAIL_IF(!json_is_object(lj), CFNET_E_FORMAT, CF_LOAD ": %s is not an object", where);
    json_t *kj = json_object_get(lj, "kind");
    CF_FAIL_IF(!json_is_string(kj), CFNET_E_FORMAT, CF_LOAD ": %s has no \"kind\" string", where);
    int kind = cf_layer_kind_of_name(json_string_value(kj));
    CF_FAIL_IF(!kind, CFNET_E_FORMAT, CF_LOAD ": %s has unknown kind \"%s\"", where,
               CF_SAFE(json_string_value(kj)));
    const cf_layer_ops *ops = cf_layer_ops_of(kind);
    int ni = cf_count_names(ops->icfg_names, CF_MAX_ICFG);
    int nf = cf_count_names(ops->fcfg_names, CF_MAX_FCFG);
    int ic[CF_MAX_ICFG] = {0};
    float fc[CF_MAX_FCFG] = {0};
    for (int j = 0; j < ni; j++) {
        const char *name = ops->icfg_names[j];
        json_t *v = json_object_get(lj, name);
        CF_FAIL_IF(!v, CFNET_E_FORMAT, CF_LOAD ": %s (%s) lacks \"%s\"", where, ops->name, name);
        CF_FAIL_IF(!json_is_integer(v) || json_integer_value(v) < INT_MIN ||
                       json_integer_value(v) > INT_MAX,
                   CFNET_E_FORMAT, CF_LOAD ": %s (%s): \"%s\" is not an integer in the int range",
                   where, ops->name, name);
        ic[j] = (int)json_integer_value(v);
    }
    for (int j = 0; j < nf; j++) {
        const char *name = ops->fcfg_names[j];
        json_t *v = json_object_get(lj, name);
        CF_FAIL_IF(!v, CFNET_E_FORMAT, CF_LOAD ": %s (%s) lacks \"%s\"", where, ops->name, name);
        double d = json_number_value(v);
        CF_FAIL_IF(!json_is_number(v) || !(fabs(d) <= FLT_MAX), CFNET_E_FORMAT,
                   CF_LOAD ": %s (%s): \"%s\" is not a number in the float range", where, ops->name,
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
        CF_FAIL_IF(!known, CFNET_E_FORMAT, CF_LOAD ": %s (%s) has an unknown field \"%s\"", where,
                   ops->name, CF_SAFE(key));
    }
    cfnet_status st = cf_layer_create(kind, ic, fc, alloc, out);
    if (st != CFNET_OK)
        return cf_error(as_format_error(st), CF_LOAD ": %s (%s) has an invalid configuration: %s",
                        where, ops->name, cfnet_last_error());
    return CFNET_OK;
}

/* The table entry whose file name is `key`, or NULL. */
static const cf_option_def *option_of_file_name(const char *key)
{
    for (int k = 0; k < cf_option_count(); k++)
        if (strcmp(cf_option_at(k)->file_name, key) == 0) return cf_option_at(k);
    return NULL;
}

static cfnet_status set_options(cfnet_network *net, json_t *oj)
{
    CF_FAIL_IF(!json_is_object(oj), CFNET_E_FORMAT, CF_LOAD ": \"options\" is not an object");
    const char *key;
    json_t *v;
    json_object_foreach(oj, key, v)
    {
        CF_FAIL_IF(!option_of_file_name(key), CFNET_E_FORMAT, CF_LOAD ": unknown option \"%s\"",
                   CF_SAFE(key));
    }
    /* Table order: the optimiser first (setting it resets the optimiser state). */
    for (int k = 0; k < cf_option_count(); k++) {
        const cf_option_def *d = cf_option_at(k);
        v = json_object_get(oj, d->file_name);
        if (!v) continue; /* absent: the default */
        double value = 0;
        bool ok = false;
        switch (d->type) {
        case CF_OPTION_REAL:
            ok = json_is_number(v);
            value = json_number_value(v);
            break;
        case CF_OPTION_INT:
            ok = json_is_integer(v);
            value = (double)json_integer_value(v);
            break;
        case CF_OPTION_NAMED:
            for (int i = 0; json_is_string(v) && d->value_names[i] && !ok; i++) {
                ok = strcmp(json_string_value(v), d->value_names[i]) == 0;
                value = d->min + i;
            }
            break;
        }
        CF_FAIL_IF(!ok, CFNET_E_FORMAT, CF_LOAD ": option \"%s\" has a value of the wrong type",
                   d->file_name);
        cfnet_status st = cfnet_network_set_option(net, d->key, value);
        if (st != CFNET_OK)
            return cf_error(as_format_error(st), CF_LOAD ": option \"%s\": %s", d->file_name,
                            cfnet_last_error());
    }
    return CFNET_OK;
}

/* Creates the network, its layers and options from the architecture. */
static cfnet_status build_network(cfnet_context *ctx, json_t *arch, cfnet_network **out)
{
    static const char *const known[] = {"input", "seed", "layers", "options", "training", NULL};
    CF_CHECK(only_keys(arch, "the architecture", known));
    json_t *in = json_object_get(arch, "input"), *seed = json_object_get(arch, "seed"),
           *layers = json_object_get(arch, "layers");
    CF_FAIL_IF(!json_is_array(in) || json_array_size(in) != 3, CFNET_E_FORMAT,
               CF_LOAD ": architecture \"input\" is not an array [C, H, W]");
    int dims[3];
    for (size_t d = 0; d < 3; d++) {
        json_t *x = json_array_get(in, d);
        CF_FAIL_IF(!json_is_integer(x) || json_integer_value(x) < 1 ||
                       json_integer_value(x) > INT_MAX,
                   CFNET_E_FORMAT, CF_LOAD ": architecture \"input\" entry %zu is not a positive int",
                   d);
        dims[d] = (int)json_integer_value(x);
    }
    uint64_t sd;
    CF_FAIL_IF(!json_is_string(seed) || !parse_u64(json_string_value(seed), &sd), CFNET_E_FORMAT,
               CF_LOAD ": architecture \"seed\" is not a decimal uint64 string");
    CF_FAIL_IF(!json_is_array(layers), CFNET_E_FORMAT,
               CF_LOAD ": architecture \"layers\" is not an array");
    CF_FAIL_IF(json_array_size(layers) > CF_PERSIST_MAX_LAYERS, CFNET_E_LIMIT,
               CF_LOAD ": %zu layers, the limit is %d", json_array_size(layers),
               CF_PERSIST_MAX_LAYERS);

    cfnet_network *net = NULL;
    cfnet_status st = cfnet_network_create_in(ctx, dims[0], dims[1], dims[2], sd, &net);
    if (st != CFNET_OK)
        return cf_error(as_format_error(st), CF_LOAD ": invalid input shape: %s", cfnet_last_error());
    for (size_t i = 0; st == CFNET_OK && i < json_array_size(layers); i++) {
        cfnet_layer *l = NULL;
        st = make_layer(&net->alloc, json_array_get(layers, i), (int)i, &l);
        if (st != CFNET_OK) break;
        st = cf_network_append(net, l);
        if (st != CFNET_OK) {
            cfnet_layer_free(l);
            st = cf_error(as_format_error(st), CF_LOAD ": %s", cfnet_last_error());
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

static cfnet_status restore_training(cfnet_network *net, json_t *tj)
{
    CF_FAIL_IF(!json_is_object(tj), CFNET_E_FORMAT, CF_LOAD ": \"training\" is not an object");
    static const char *const known[] = {"step", "rng", "layer_rng", NULL};
    CF_CHECK(only_keys(tj, "\"training\"", known));
    json_t *step = json_object_get(tj, "step"), *rng = json_object_get(tj, "rng"),
           *lr = json_object_get(tj, "layer_rng");
    CF_FAIL_IF(!json_is_integer(step) || json_integer_value(step) < 0 ||
                   json_integer_value(step) > CF_MAX_STEP,
               CFNET_E_FORMAT,
               CF_LOAD ": training \"step\" is not an integer in [0, 2^53]");
    CF_FAIL_IF(!rng, CFNET_E_FORMAT, CF_LOAD ": training lacks \"rng\"");
    CF_FAIL_IF(!json_is_object(lr), CFNET_E_FORMAT,
               CF_LOAD ": training \"layer_rng\" is not an object");
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
        CF_FAIL_IF(!v, CFNET_E_FORMAT, CF_LOAD ": training \"layer_rng\" lacks layer %d (%s)", i,
                   net->layers[i]->ops->name);
        CF_CHECK(read_rng(v, what, lrng));
        with_rng++;
    }
    CF_FAIL_IF(json_object_size(lr) != with_rng, CFNET_E_FORMAT,
               CF_LOAD ": training \"layer_rng\" has entries for layers without a generator");
    net->rng = r;
    net->step = (int64_t)json_integer_value(step);
    return CFNET_OK;
}

/* The "user." entries of "__metadata__" into the network's metadata, validated as
 * cfnet_network_set_metadata validates its arguments. */
static cfnet_status read_user_metadata(json_t *root, cfnet_network *net)
{
    json_t *meta = json_object_get(root, "__metadata__"), *v;
    const char *key;
    size_t klen;
    const size_t plen = sizeof CF_USER_PREFIX - 1;
    json_object_keylen_foreach(meta, key, klen, v)
    {
        if (klen < plen || memcmp(key, CF_USER_PREFIX, plen) != 0) continue;
        const char *why = cf_metadata_key_problem(key + plen, klen - plen);
        if (!why && strlen(key) != klen) why = "the key contains a NUL character";
        if (!why)
            why = cf_metadata_value_problem(json_string_value(v), json_string_length(v));
        CF_FAIL_IF(why, CFNET_E_FORMAT, CF_LOAD ": metadata \"%s\": %s", CF_SAFE(key), why);
        cfnet_status st = cf_network_put_metadata(net, CF_LOAD, key + plen, json_string_value(v));
        CF_FAIL_IF(st == CFNET_E_LIMIT, CFNET_E_FORMAT, "%s", cfnet_last_error());
        CF_CHECK(st);
    }
    return CFNET_OK;
}

/* Parses and validates a whole file image; *out only on success. */
cfnet_status cf_schema_load(cfnet_context *ctx, const unsigned char *buf, size_t size,
                            cfnet_network **out)
{
    uint64_t max_header, max_data;
    cf_io_limits(ctx, &max_header, &max_data);
    cf_container c;
    CF_CHECK(cf_container_decode(cf_context_allocator(ctx), buf, size, max_header, max_data, &c));
    json_t *arch = NULL;
    cf_tensor_list ls = {0};
    ls.alloc = cf_context_allocator(ctx);
    cfnet_network *net = NULL;
    cfnet_status st = read_metadata(c.root, &arch);
    if (st == CFNET_OK) {
        /* Building allocates parameters and layer tables before they can be compared with the
         * tensors: bound it by the data present, so a crafted architecture cannot make the
         * loader claim more memory than a genuine model of this size would. */
        uint64_t budget = cf_add_sat_u64(cf_mul_sat_u64(4, c.dsize), CF_LOAD_TABLE_ALLOWANCE);
        cf_alloc_meter meter;
        cf_alloc_meter_begin(&meter, budget, false);
        st = build_network(ctx, arch, &net);
        cf_alloc_meter_end(&meter);
        if (meter.exceeded && st != CFNET_OK && st != CFNET_E_LIMIT)
            st = cf_error(CFNET_E_LIMIT,
                          CF_LOAD ": the architecture needs more than %" PRIu64
                               " bytes for %" PRIu64 " bytes of tensors",
                          budget, c.dsize);
    }
    if (st == CFNET_OK) st = read_user_metadata(c.root, net);
    if (st == CFNET_OK) st = list_layer_tensors(net, CF_LOAD, &ls);
    if (st == CFNET_OK) st = cf_container_fill(&c, &ls);

    json_t *training = arch ? json_object_get(arch, "training") : NULL;
    if (st == CFNET_OK && training) st = restore_training(net, training);
    /* Optimiser moments: all present or all absent, and only with the training state. */
    bool any_opt = st == CFNET_OK && cf_container_has_unused(&c, "optimizer.");
    if (st == CFNET_OK && any_opt && !training)
        st = cf_error(CFNET_E_FORMAT, CF_LOAD ": optimizer tensors without a \"training\" section");
    if (st == CFNET_OK && any_opt) {
        ls.n = 0;
        st = cf_network_ensure_slots(net);
        if (st == CFNET_OK && !has_optimizer_state(net))
            st = cf_error(CFNET_E_FORMAT,
                          CF_LOAD ": optimizer tensors for a network without parameters");
        if (st == CFNET_OK) st = list_optimizer_tensors(net, CF_LOAD, &ls);
        if (st == CFNET_OK) st = cf_container_fill(&c, &ls);
        if (st == CFNET_OK) net->slots_fresh = false; /* loaded moments, not zeros */
    }
    if (st == CFNET_OK) st = cf_container_all_used(&c);

    cf_tensor_list_free(&ls);
    json_decref(arch);
    cf_container_free(&c);
    if (st != CFNET_OK) {
        cfnet_network_free(net);
        return st;
    }
    *out = net;
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_load_buffer_in(cfnet_context *ctx, const void *buffer,
                                                    size_t size, cfnet_network **out)
{
    CF_CHECK(cf_handle_check(ctx, CF_MAGIC_CONTEXT, "context", __func__));
    CF_FAIL_IF(!buffer || !out, CFNET_E_INVALID_ARGUMENT, "network_load_buffer: NULL argument");
    return cf_schema_load(ctx, buffer, size, out);
}

CFNET_API cfnet_status cfnet_network_load_buffer(const void *buffer, size_t size,
                                                 cfnet_network **out)
{
    return cfnet_network_load_buffer_in(NULL, buffer, size, out);
}

