/* The safetensors container (docs/format.md): an 8-byte little-endian header length H, H bytes
 * of JSON (jansson parses and writes it, padded with spaces to a multiple of 8), then the
 * float32 tensors, tiled without gaps. This file knows nothing of networks: it encodes a list of
 * tensors under a header object and decodes and checks the tensor table of a file. */
#include "io/io.h"

#include <float.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(float) == 4 && FLT_MANT_DIG == 24, "float must be IEEE 754 binary32");

cf_safe_text cf_make_safe(const char *in)
{
    cf_safe_text t;
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
/* jansson's set/append functions take (and on failure release) the new reference and fail on
 * NULL, so a chain of `ok = ok && ... == 0` builds an object without leaks. */
bool cf_json_set(json_t *o, const char *key, json_t *v)
{
    return json_object_set_new(o, key, v) == 0;
}

bool cf_json_append(json_t *a, json_t *v) { return json_array_append_new(a, v) == 0; }

json_t *cf_json_built(json_t *v, bool ok)
{
    if (ok) return v;
    json_decref(v);
    return NULL;
}

cfnet_status cf_json_parse_object(const char *text, size_t len, const char *what, json_t **out)
{
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return cf_error(CFNET_E_OUT_OF_MEMORY, CF_LOAD ": out of memory parsing the %s", what);
        return cf_error(CFNET_E_FORMAT, CF_LOAD ": %s is not valid JSON: %s (at byte %d)", what,
                        CF_SAFE(jerr.text), jerr.position);
    }
    if (!json_is_object(v)) {
        json_decref(v);
        return cf_error(CFNET_E_FORMAT, CF_LOAD ": %s is not a JSON object", what);
    }
    *out = v;
    return CFNET_OK;
}

void cf_io_limits(const cfnet_context *ctx, uint64_t *max_header, uint64_t *max_data)
{
    *max_header = ctx ? ctx->max_header_bytes : CF_DEFAULT_MAX_HEADER_BYTES;
    *max_data = ctx ? ctx->max_tensor_bytes : CF_DEFAULT_MAX_TENSOR_BYTES;
}

/* ------------------------------------------------------------------------------------------ */
/* Tensor lists                                                                               */

void cf_tensor_list_free(cf_tensor_list *ls)
{
    cf_free(ls->t);
    memset(ls, 0, sizeof *ls);
}

cfnet_status cf_tensor_list_add(cf_tensor_list *ls, const char *what, float *data, int ndim,
                                const int64_t *shape, int64_t numel, const char *fmt, ...)
{
    if (ls->n == ls->cap) {
        size_t cap = ls->cap ? 2 * ls->cap : 32;
        cf_tensor_ref *grown = cf_alloc(ls->alloc, cap * sizeof *grown);
        CF_FAIL_IF(!grown, CFNET_E_OUT_OF_MEMORY, "%s: out of memory", what);
        if (ls->n) memcpy(grown, ls->t, ls->n * sizeof *grown);
        cf_free(ls->t);
        ls->t = grown;
        ls->cap = cap;
    }
    cf_tensor_ref *r = &ls->t[ls->n];
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
/* Encoding                                                                                   */

static json_t *tensor_entry_json(const cf_tensor_ref *r, uint64_t begin, uint64_t end)
{
    json_t *o = json_object(), *shape = json_array(), *offs = json_array();
    bool ok = o && shape && offs;
    for (int d = 0; ok && d < r->ndim; d++) ok = cf_json_append(shape, json_integer(r->shape[d]));
    ok = ok && cf_json_append(offs, json_integer((json_int_t)begin)) &&
         cf_json_append(offs, json_integer((json_int_t)end));
    ok = ok && cf_json_set(o, "dtype", json_string("F32"));
    if (ok) {
        ok = cf_json_set(o, "shape", shape);
        shape = NULL;
    }
    if (ok) {
        ok = cf_json_set(o, "data_offsets", offs);
        offs = NULL;
    }
    json_decref(shape);
    json_decref(offs);
    return cf_json_built(o, ok);
}

cfnet_status cf_container_encode(const cf_allocator *a, json_t *root, const cf_tensor_list *ls, uint64_t max_header,
                                 uint64_t max_data, const char *what, unsigned char **buf_out,
                                 size_t *size_out)
{
    bool ok = true;
    uint64_t offset = 0;
    for (size_t i = 0; ok && i < ls->n; i++) {
        uint64_t bytes = (uint64_t)ls->t[i].numel * 4u;
        ok = cf_json_set(root, ls->t[i].name, tensor_entry_json(&ls->t[i], offset, offset + bytes));
        offset += bytes;
    }
    const size_t dump_flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
    size_t hlen = ok ? json_dumpb(root, NULL, 0, dump_flags) : 0;
    CF_FAIL_IF(hlen == 0, CFNET_E_OUT_OF_MEMORY, "%s: out of memory building the header", what);

    size_t padded = (hlen + 7u) & ~(size_t)7u;
    CF_FAIL_IF((uint64_t)padded > max_header || offset > max_data, CFNET_E_LIMIT,
               "%s: the model needs a %zu-byte header and %" PRIu64 " bytes of data; the "
               "loader accepts at most %" PRIu64 " and %" PRIu64,
               what, padded, offset, max_header, max_data);
    size_t total = 8 + padded + (size_t)offset;
    unsigned char *buf = cf_alloc(a, total);
    CF_FAIL_IF(!buf, CFNET_E_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", what, total);
    if (json_dumpb(root, (char *)buf + 8, hlen, dump_flags) != hlen) {
        cf_free(buf);
        return cf_error(CFNET_E_INTERNAL, "%s: the header changed size while being written", what);
    }
    put_u64le(buf, (uint64_t)padded);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    unsigned char *p = buf + 8 + padded;
    for (size_t i = 0; i < ls->n; i++)
        for (int64_t j = 0; j < ls->t[i].numel; j++, p += 4) put_f32le(p, ls->t[i].data[j]);
    *buf_out = buf;
    *size_out = total;
    return CFNET_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding: the tensor table                                                                 */

static int by_begin(const void *a, const void *b)
{
    const cf_st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const cf_st_entry *)a)->name, ((const cf_st_entry *)b)->name);
}

static cf_st_entry *table_find(const cf_st_table *tab, const char *name)
{
    cf_st_entry key = {.name = name};
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

static cfnet_status parse_entry(const char *key_name, json_t *v, uint64_t dsize, cf_st_entry *e)
{
    cf_safe_text nm = cf_make_safe(key_name);
    const char *name = nm.s;
    char sbuf[96];
    CF_FAIL_IF(!json_is_object(v), CFNET_E_FORMAT, CF_LOAD ": tensor '%s' is not a JSON object",
               name);
    const char *key;
    json_t *x;
    json_object_foreach(v, key, x)
    {
        CF_FAIL_IF(strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"),
                   CFNET_E_FORMAT, CF_LOAD ": tensor '%s' has an unknown field '%s'", name, CF_SAFE(key));
    }
    json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    CF_FAIL_IF(!dtype || !shape || !offs, CFNET_E_FORMAT,
               CF_LOAD ": tensor '%s' lacks \"%s\"", name,
               !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    CF_FAIL_IF(!json_is_string(dtype), CFNET_E_FORMAT, CF_LOAD ": tensor '%s': dtype is not a string",
               name);
    CF_FAIL_IF(strcmp(json_string_value(dtype), "F32") != 0, CFNET_E_FORMAT,
               CF_LOAD ": tensor '%s' has dtype \"%s\", only \"F32\" is supported", name,
               CF_SAFE(json_string_value(dtype)));
    CF_FAIL_IF(!json_is_array(shape), CFNET_E_FORMAT, CF_LOAD ": tensor '%s': shape is not an array",
               name);
    size_t nd = json_array_size(shape);
    CF_FAIL_IF(nd > CFNET_MAX_DIMS, CFNET_E_FORMAT,
               CF_LOAD ": tensor '%s' has %zu dimensions, at most %d are supported", name, nd,
               CFNET_MAX_DIMS);
    e->name = key_name;
    e->ndim = (int)nd;
    e->numel = 1;
    for (size_t d = 0; d < nd; d++) {
        json_t *s = json_array_get(shape, d);
        CF_FAIL_IF(!json_is_integer(s) || json_integer_value(s) < 0, CFNET_E_FORMAT,
                   CF_LOAD ": tensor '%s': shape entry %zu is not a non-negative integer", name, d);
        e->shape[d] = (int64_t)json_integer_value(s);
        CF_FAIL_IF(!cf_mul_i64(e->numel, e->shape[d], &e->numel), CFNET_E_FORMAT,
                   CF_LOAD ": tensor '%s': element count overflows", name);
    }
    CF_FAIL_IF(e->numel > INT64_MAX / 4, CFNET_E_FORMAT,
               CF_LOAD ": tensor '%s': byte count overflows", name);
    CF_FAIL_IF(!json_is_array(offs) || json_array_size(offs) != 2 ||
                   !json_is_integer(json_array_get(offs, 0)) ||
                   !json_is_integer(json_array_get(offs, 1)),
               CFNET_E_FORMAT, CF_LOAD ": tensor '%s': data_offsets is not [begin, end] (integers)",
               name);
    json_int_t b = json_integer_value(json_array_get(offs, 0)),
               en = json_integer_value(json_array_get(offs, 1));
    CF_FAIL_IF(b < 0 || en < b, CFNET_E_FORMAT,
               CF_LOAD ": tensor '%s': data_offsets [%lld, %lld] needs 0 <= begin <= end", name,
               (long long)b, (long long)en);
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    CF_FAIL_IF(e->end - e->begin != (uint64_t)e->numel * 4u, CFNET_E_FORMAT,
               CF_LOAD ": tensor '%s': data_offsets [%lld, %lld] span %" PRIu64 " bytes, shape %s "
                    "needs %" PRIu64,
               name, (long long)b, (long long)en, e->end - e->begin,
               shape_text(sbuf, sizeof sbuf, e->ndim, e->shape), (uint64_t)e->numel * 4u);
    CF_FAIL_IF(e->end > dsize, CFNET_E_FORMAT,
               CF_LOAD ": tensor '%s' ends at byte %" PRIu64 ", past the end of the %" PRIu64
                    "-byte data section",
               name, e->end, dsize);
    return CFNET_OK;
}

/* Reads and checks every tensor entry; on success the table is sorted by name. */
static cfnet_status read_table(const cf_allocator *a, json_t *root, uint64_t dsize,
                               cf_st_table *tab)
{
    size_t n = json_object_size(root) - (json_object_get(root, "__metadata__") ? 1 : 0);
    tab->e = cf_alloc_zero(a, n ? n : 1, sizeof *tab->e);
    CF_FAIL_IF(!tab->e, CFNET_E_OUT_OF_MEMORY, CF_LOAD ": out of memory");
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
        const cf_st_entry *e = &tab->e[i];
        if (e->begin < at)
            return cf_error(CFNET_E_FORMAT,
                            CF_LOAD ": tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64
                                 ", %" PRIu64 ") overlap",
                            CF_SAFE(tab->e[i - 1].name), tab->e[i - 1].begin, tab->e[i - 1].end,
                            CF_SAFE(e->name), e->begin, e->end);
        if (e->begin > at)
            return cf_error(CFNET_E_FORMAT,
                            CF_LOAD ": gap of %" PRIu64 " bytes in the data before tensor '%s' "
                                 "(begins at %" PRIu64 ", previous data ends at %" PRIu64 ")",
                            e->begin - at, CF_SAFE(e->name), e->begin, at);
        at = e->end;
    }
    CF_FAIL_IF(at != dsize, CFNET_E_FORMAT,
               CF_LOAD ": %" PRIu64 " trailing bytes after the last tensor (data section of %" PRIu64
                    " bytes, tensors end at %" PRIu64 ")",
               dsize - at, dsize, at);
    if (tab->n) qsort(tab->e, tab->n, sizeof *tab->e, by_name);
    return CFNET_OK;
}

cfnet_status cf_container_check_framing(const unsigned char *head, uint64_t hlen, size_t size,
                                        uint64_t max_header, uint64_t max_data)
{
    (void)head;
    CF_FAIL_IF(size < 8, CFNET_E_FORMAT,
               CF_LOAD ": %zu bytes is too short for the 8-byte header length", size);
    /* Any other file (an image, an ONNX export, text) read as a model has a "header length"
     * far over the cap and past its end: say that it is not a model, not only the limit. */
    CF_FAIL_IF(hlen > max_header && hlen > size - 8, CFNET_E_LIMIT,
               CF_LOAD ": header length %" PRIu64 " exceeds the limit of %" PRIu64
                    " bytes and the %zu-byte input: not a libcfnet model file (one begins with "
                    "the 8-byte length of its JSON header)",
               hlen, max_header, size);
    CF_FAIL_IF(hlen > max_header, CFNET_E_LIMIT,
               CF_LOAD ": header length %" PRIu64 " exceeds the limit of %" PRIu64 " bytes", hlen,
               max_header);
    CF_FAIL_IF(hlen > size - 8, CFNET_E_FORMAT,
               CF_LOAD ": header length %" PRIu64 " runs past the end of the %zu-byte input", hlen,
               size);
    uint64_t dsize = (uint64_t)(size - 8) - hlen;
    CF_FAIL_IF(dsize > max_data, CFNET_E_LIMIT,
               CF_LOAD ": %" PRIu64 " bytes of tensor data exceed the limit of %" PRIu64, dsize,
               max_data);
    return CFNET_OK;
}

cfnet_status cf_container_check_header(const cf_allocator *a, const unsigned char *text,
                                       size_t hlen, uint64_t dsize)
{
    json_t *root = NULL;
    CF_CHECK(cf_json_parse_object((const char *)text, hlen, "header", &root));
    /* The tensor table says where the data ends: a file with bytes after its tensors (or too
     * few) is refused before its data section is read. */
    cf_st_table tab = {0};
    cfnet_status st = read_table(a, root, dsize, &tab);
    cf_free(tab.e);
    json_decref(root);
    return st;
}

cfnet_status cf_container_decode(const cf_allocator *a, const unsigned char *buf, size_t size, uint64_t max_header,
                                 uint64_t max_data, cf_container *c)
{
    memset(c, 0, sizeof *c);
    uint64_t hlen = size >= 8 ? get_u64le(buf) : 0;
    CF_CHECK(cf_container_check_framing(buf, hlen, size, max_header, max_data));
    uint64_t dsize = (uint64_t)(size - 8) - hlen;
    json_t *root = NULL;
    CF_CHECK(cf_json_parse_object((const char *)buf + 8, (size_t)hlen, "header", &root));
    c->root = root;
    c->data = buf + 8 + hlen;
    c->dsize = dsize;
    cfnet_status st = read_table(a, root, dsize, &c->tab);
    if (st != CFNET_OK) cf_container_free(c);
    return st;
}

void cf_container_free(cf_container *c)
{
    cf_free(c->tab.e);
    json_decref(c->root);
    memset(c, 0, sizeof *c);
}

cfnet_status cf_container_fill(cf_container *c, const cf_tensor_list *ls)
{
    char a[96], b[96];
    for (size_t i = 0; i < ls->n; i++) {
        const cf_tensor_ref *r = &ls->t[i];
        cf_st_entry *e = table_find(&c->tab, r->name);
        CF_FAIL_IF(!e, CFNET_E_FORMAT, CF_LOAD ": tensor '%s' is missing", r->name);
        bool same = e->ndim == r->ndim;
        for (int d = 0; same && d < r->ndim; d++) same = e->shape[d] == r->shape[d];
        CF_FAIL_IF(!same, CFNET_E_FORMAT, CF_LOAD ": tensor '%s' has shape %s, the layer needs %s",
                   r->name, shape_text(a, sizeof a, e->ndim, e->shape),
                   shape_text(b, sizeof b, r->ndim, r->shape));
        const unsigned char *p = c->data + e->begin;
        for (int64_t j = 0; j < r->numel; j++, p += 4) r->data[j] = get_f32le(p);
        e->used = true;
    }
    return CFNET_OK;
}

cfnet_status cf_container_all_used(const cf_container *c)
{
    for (size_t i = 0; i < c->tab.n; i++)
        CF_FAIL_IF(!c->tab.e[i].used, CFNET_E_FORMAT, CF_LOAD ": unexpected tensor '%s'",
                   CF_SAFE(c->tab.e[i].name));
    return CFNET_OK;
}

bool cf_container_has_unused(const cf_container *c, const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < c->tab.n; i++)
        if (!c->tab.e[i].used && strncmp(c->tab.e[i].name, prefix, n) == 0) return true;
    return false;
}
