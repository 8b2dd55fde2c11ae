/* Private interface of the persistence code (not installed). Three parts, one file each:
 *
 *   container.c  the safetensors container: 8-byte header length, JSON header, float32 data;
 *                the tensor list written and the tensor table read, and the size limits;
 *   schema.c     what a cfnet model file says: metadata, architecture, options, training state;
 *                serialising a network and building one from a parsed file;
 *   file.c       files: atomic replace (temporary file, fsync, rename) and bounded reads.
 *
 * The format is specified in docs/format.md. */
#ifndef CFNET_IO_IO_H
#define CFNET_IO_IO_H

#include "nn/network.h"

#include <jansson.h>

/* The verb in the loader's error messages. */
#define CF_LOAD "network_load"

/* Layers in one architecture; more is CFNET_E_LIMIT (append refuses them too). */
#define CF_PERSIST_MAX_LAYERS CF_MAX_LAYERS
/* Memory a loaded architecture may take beyond 4x its tensor data: the layer tables, which
 * append bounds by CF_MAX_TABLE_BYTES, plus 64 MiB for the layer objects and tensor headers of
 * up to CF_MAX_LAYERS layers. Parameters, gradients and state take at most 3x the data. */
#define CF_LOAD_TABLE_ALLOWANCE (CF_MAX_TABLE_BYTES + ((uint64_t)64 << 20))
/* Longest tensor name, with its terminating NUL. */
#define CF_TENSOR_NAME_MAX 128

/* File-supplied text quoted in an error message: printable ASCII only (so the message stays one
 * line), at most 80 characters. The result lives until the end of the enclosing full
 * expression (C11 temporary lifetime), which covers a cf_error call. */
typedef struct cf_safe_text {
    char s[88];
} cf_safe_text;
cf_safe_text cf_make_safe(const char *in);
#define CF_SAFE(str) (cf_make_safe(str).s)

/* jansson's set/append functions take (and on failure release) the new reference and fail on
 * NULL, so a chain of `ok = ok && ... ` builds an object without leaks. */
bool cf_json_set(json_t *o, const char *key, json_t *v);
bool cf_json_append(json_t *a, json_t *v);
/* The end of such a chain: v when ok, otherwise NULL with v released. */
json_t *cf_json_built(json_t *v, bool ok);
/* Parses len bytes of text as a JSON object (duplicate keys refused) into *out, a new reference;
 * `what` names the text in the loader's messages ("header", "architecture"). */
cfnet_status cf_json_parse_object(const char *text, size_t len, const char *what, json_t **out);

/* ------------------------------------------------------------------------------------------ */
/* container.c                                                                                */

/* The limits that save and load both apply: a context's (the defaults for NULL). */
void cf_io_limits(const cfnet_context *ctx, uint64_t *max_header, uint64_t *max_data);

/* Tensors to write or to fill, in file order. */
typedef struct cf_tensor_ref {
    char name[CF_TENSOR_NAME_MAX];
    float *data;
    int ndim;
    const int64_t *shape;
    int64_t numel;
} cf_tensor_ref;

typedef struct cf_tensor_list {
    cf_tensor_ref *t;
    size_t n, cap;
    const cf_allocator *alloc; /* of the array (NULL: the default) */
} cf_tensor_list;

void cf_tensor_list_free(cf_tensor_list *ls);
/* Appends a tensor named by the printf-style fmt. */
cfnet_status cf_tensor_list_add(cf_tensor_list *ls, const char *what, float *data, int ndim,
                                const int64_t *shape, int64_t numel, const char *fmt, ...)
    CF_PRINTF(7, 8);

/* Encodes a whole file into a new buffer (from `a`; cf_free): `root` is the header object holding
 * "__metadata__"; the tensor entries of `ls` are added to it. Fails with CFNET_E_LIMIT when the
 * header or the data exceed the limits. */
cfnet_status cf_container_encode(const cf_allocator *a, json_t *root, const cf_tensor_list *ls, uint64_t max_header,
                                 uint64_t max_data, const char *what, unsigned char **buf_out,
                                 size_t *size_out);

/* One entry of the tensor table of a parsed file. */
typedef struct cf_st_entry {
    const char *name; /* key in the parsed header (lives as long as the root) */
    int ndim;
    int64_t shape[CFNET_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;
    bool used;
} cf_st_entry;

typedef struct cf_st_table {
    cf_st_entry *e; /* sorted by name */
    size_t n;
} cf_st_table;

/* A parsed container: the JSON header, its tensor table, the data section. */
typedef struct cf_container {
    json_t *root;
    cf_st_table tab;
    const unsigned char *data; /* inside the caller's buffer */
    uint64_t dsize;
} cf_container;

/* Checks the framing and the limits, parses the header and the tensor table (every entry
 * valid, the data tiled exactly). On success the caller releases it with cf_container_free. */
cfnet_status cf_container_decode(const cf_allocator *a, const unsigned char *buf, size_t size, uint64_t max_header,
                                 uint64_t max_data, cf_container *c);
void cf_container_free(cf_container *c);
/* The checks of cf_container_decode that need only the first 8 bytes (`head`, giving header
 * length hlen) and the total size, and those of the header text alone (JSON, tensor entries,
 * tiling of a data section of dsize bytes): a reader calls them before reading the data
 * section. */
cfnet_status cf_container_check_framing(const unsigned char *head, uint64_t hlen, size_t size,
                                        uint64_t max_header, uint64_t max_data);
cfnet_status cf_container_check_header(const cf_allocator *a, const unsigned char *text,
                                       size_t hlen, uint64_t dsize);
/* Copies the tensors of `ls` from the data, checking names and shapes; marks them used. */
cfnet_status cf_container_fill(cf_container *c, const cf_tensor_list *ls);
/* Fails on the first tensor no cf_container_fill used. */
cfnet_status cf_container_all_used(const cf_container *c);
/* True if a tensor whose name starts with `prefix` was not used. */
bool cf_container_has_unused(const cf_container *c, const char *prefix);

/* ------------------------------------------------------------------------------------------ */
/* schema.c                                                                                   */

/* The whole model file of a network in a new buffer (cf_free). */
cfnet_status cf_schema_serialize(const cfnet_network *net, unsigned flags, const char *what,
                                 unsigned char **buf_out, size_t *size_out);
/* Parses and validates a whole file image; *out only on success. */
cfnet_status cf_schema_load(cfnet_context *ctx, const unsigned char *buf, size_t size,
                            cfnet_network **out);

/* ------------------------------------------------------------------------------------------ */
/* file.c                                                                                     */

/* Writes buf to a temporary file beside `path`, syncs it and renames it over `path`; scratch
 * (the temporary name) from `a`. */
cfnet_status cf_file_write_atomic(const cf_allocator *a, const char *path, const unsigned char *buf, size_t size,
                                  const char *what);
/* Reads a whole regular file of at most 8 + max_header + max_data bytes (saturating) into a new
 * buffer (from `a`; cf_free). Non-regular files (FIFOs, devices, directories) are refused with
 * CFNET_E_IO without blocking; the framing and the JSON header are checked before the rest of
 * the file is read. */
cfnet_status cf_file_read_all(const cf_allocator *a, const char *path, uint64_t max_header, uint64_t max_data,
                              const char *what, unsigned char **buf_out, size_t *size_out);

#endif /* CFNET_IO_IO_H */
