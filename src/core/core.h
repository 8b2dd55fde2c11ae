/* Private core of libcfnet (not installed): errors, memory, random numbers, tensors. Every
 * translation unit of the library includes this, directly or through its folder's header. */
#ifndef CFNET_CORE_CORE_H
#define CFNET_CORE_CORE_H

#include "cfnet/cfnet.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define CF_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define CF_UNUSED __attribute__((unused))
#else
#define CF_PRINTF(a, b)
#define CF_UNUSED
#endif

/* ------------------------------------------------------------------------------------------ */
/* Errors: record a one-line message for this thread and return the status.                  */

/* Formats the thread's error message and returns `status` (so `return cf_error(...)` works). */
cfnet_status cf_error(cfnet_status status, const char *fmt, ...) CF_PRINTF(2, 3);

#define CF_CHECK(expr)                      \
    do {                                    \
        cfnet_status cf_st_ = (expr);       \
        if (cf_st_ != CFNET_OK) return cf_st_; \
    } while (0)

#define CF_FAIL_IF(cond, status, ...)                    \
    do {                                                 \
        if (cond) return cf_error((status), __VA_ARGS__); \
    } while (0)

/* ------------------------------------------------------------------------------------------ */
/* Memory. Every allocation names its allocator: the one stored in the object it belongs to
 * (a network's, a layer's, a tensor's: set at creation, inherited on append and load), or NULL
 * for the default (malloc/free) where no object is involved. There is no implicit routing.     */

typedef struct cf_allocator {
    cfnet_alloc_fn alloc;
    cfnet_free_fn free;
    void *opaque;
} cf_allocator;

extern const cf_allocator cf_default_allocator;

/* Every block is CF_ALIGN-byte aligned whatever the hooks return. */
#define CF_ALIGN 64

/* Allocates `size` bytes (0 gives a valid block) from `a` (NULL: the default), CF_ALIGN-byte
 * aligned; NULL on failure. The block remembers the hooks that made it, so cf_free returns it
 * there whoever frees it (the allocator stored in an object may be replaced later). */
void *cf_alloc(const cf_allocator *a, size_t size);
/* cf_alloc of count * size zeroed bytes (NULL on overflow). */
void *cf_alloc_zero(const cf_allocator *a, size_t count, size_t size);
/* Frees a block of cf_alloc / cf_alloc_zero. Accepts NULL. */
void cf_free(void *p);

/* Allocation meters of the calling thread (they nest): while a meter is active, every block
 * allocated is counted in `live` (and `peak`) until it is freed, and an allocation that would
 * take `live` over `limit` fails (setting `exceeded`). A block is credited back only to the
 * meters that counted it. A meter with `tables_only` does not count the data of parameter and
 * state tensors (allocated under cf_alloc_exempt), only what a layer builds besides them. */
typedef struct cf_alloc_meter {
    uint64_t limit, live, peak;
    bool exceeded, tables_only;
    unsigned serial;
    struct cf_alloc_meter *outer;
} cf_alloc_meter;
void cf_alloc_meter_begin(cf_alloc_meter *m, uint64_t limit, bool tables_only);
/* Ends the innermost meter, which must be m. */
void cf_alloc_meter_end(cf_alloc_meter *m);
/* cf_alloc_exempt(+1) ... cf_alloc_exempt(-1): parameter/state data, not layer tables. */
void cf_alloc_exempt(int delta);

/* Overflow-checked products; return false on overflow. */
bool cf_mul_size(size_t a, size_t b, size_t *out);
bool cf_mul_i64(int64_t a, int64_t b, int64_t *out);
/* Saturating sum and product: UINT64_MAX instead of wrapping (limits near UINT64_MAX must mean
 * "no limit", not "everything is over the limit"). */
static inline uint64_t cf_add_sat_u64(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}
static inline uint64_t cf_mul_sat_u64(uint64_t a, uint64_t b)
{
    return (a != 0 && b > UINT64_MAX / a) ? UINT64_MAX : a * b;
}

/* ------------------------------------------------------------------------------------------ */
/* Random numbers: xoshiro256** seeded by splitmix64. Deterministic, no global state.         */

typedef struct cf_rng {
    uint64_t s[4];
} cf_rng;

void cf_rng_seed(cf_rng *rng, uint64_t seed);
uint64_t cf_rng_next(cf_rng *rng);
double cf_rng_uniform(cf_rng *rng);              /* [0, 1) */
double cf_rng_normal(cf_rng *rng);               /* standard normal */
uint64_t cf_rng_below(cf_rng *rng, uint64_t n); /* uniform in [0, n), n > 0 */
/* Seed for the draws of sample `index` at optimiser step `step` under `key`: per-sample keyed
 * randomness, independent of how a batch is split over calls or processes. */
uint64_t cf_sample_seed(uint64_t key, int64_t step, int64_t index);

/* ------------------------------------------------------------------------------------------ */
/* Tensors                                                                                    */

/* Handle checks. Every handle struct starts with a magic number naming its kind; freeing a
 * handle overwrites it with CF_MAGIC_FREED before the memory goes back. Every public entry point
 * checks its handles, so a double free, a use after free (while the memory is not yet reused)
 * or a handle of the wrong kind gives CFNET_E_INVALID_ARGUMENT instead of undefined behaviour.
 * (Reading the magic of freed memory is itself undefined; in practice it is what the freed
 * block still holds. Memory checkers report it: see SECURITY.md.) */
#define CF_MAGIC_TENSOR 0x54464e43u  /* "CNFT" */
#define CF_MAGIC_LAYER 0x4c464e43u   /* "CNFL" */
#define CF_MAGIC_NETWORK 0x4e464e43u /* "CNFN" */
#define CF_MAGIC_CONTEXT 0x58464e43u /* "CNFX" */
#define CF_MAGIC_FREED 0x44454144u   /* "DEAD" */
/* True for NULL and for a live handle of `magic`'s kind; otherwise records an error naming fn
 * and the kind ("network") and returns false. */
bool cf_handle_ok(const void *h, uint32_t magic, const char *kind, const char *fn);
/* The same as a status: CFNET_E_INVALID_ARGUMENT for a stale or foreign handle. */
cfnet_status cf_handle_check(const void *h, uint32_t magic, const char *kind, const char *fn);
/* The value of a public indexed accessor: element i of the handle's array `arr` of `count`
 * entries, or NULL for a NULL handle, a stale or foreign one (reported as cf_handle_ok does) or
 * an i outside [0, count). */
#define CF_HANDLE_ITEM(h, magic, kind, count, arr, i)                                        \
    (cf_handle_ok((h), (magic), (kind), __func__) && (h) && (i) >= 0 && (i) < (h)->count    \
         ? (h)->arr[(i)]                                                                    \
         : NULL)

struct cfnet_tensor {
    uint32_t magic; /* CF_MAGIC_TENSOR */
    float *data;
    int64_t numel;
    int ndim;
    int64_t shape[CFNET_MAX_DIMS];
    bool owns_data;
    /* A layer's parameter, gradient or state tensor (handed out borrowed by cfnet_layer_param,
     * _grad, _state): the layer frees it and fixes its shape, so cfnet_tensor_free and
     * cfnet_tensor_reshape refuse it; cf_tensor_destroy frees it. */
    bool layer_owned;
    /* Made by cfnet_tensor_wrap_const: the caller's data is const. Every function that writes
     * a tensor's values refuses it (cf_tensor_writable). */
    bool read_only;
    cf_allocator alloc; /* of the struct and of owned data */
};

/* Creates a zeroed tensor with allocator `a` (NULL: the default); used by layers for their
 * parameters. */
cfnet_status cf_tensor_new(const cf_allocator *a, int ndim, const int64_t *shape,
                           cfnet_tensor **out);
/* Frees a tensor, including a layer's own (layer_owned); accepts NULL. */
void cf_tensor_destroy(cfnet_tensor *t);
/* Validates a shape and computes its element count; `what` names the caller for messages. */
cfnet_status cf_shape_numel(const char *what, int ndim, const int64_t *shape, int64_t *numel);
/* CFNET_E_INVALID_ARGUMENT if t (may be NULL: OK, other checks report it) is read-only, i.e.
 * made by cfnet_tensor_wrap_const; `who` names the function, `what` the tensor. Every public
 * function that writes into a caller's tensor calls it before writing anything. */
cfnet_status cf_tensor_writable(const char *who, const char *what, const cfnet_tensor *t);
/* Writes "31x30"-style text for a shape into buf and returns buf. */
const char *cf_shape_str(char *buf, size_t size, int ndim, const int64_t *shape);

/* Checks that t is a batch of samples of shape shape[0..ndim-1], i.e. N x shape; when *n > 0, N
 * must equal *n, otherwise *n receives N. Messages: "<who>: <what> is 2x3, expected N x 3x4". */
cfnet_status cf_check_batch(const char *who, const char *what, const cfnet_tensor *t, int ndim,
                            const int64_t *shape, int64_t *n);

/* ------------------------------------------------------------------------------------------ */
/* Numeric helpers (numeric.c)                                                                */

/* p = softmax(z) over k >= 1 entries (p may alias z, or be NULL), computed in double after
 * subtracting max z and rounded to float once; returns log(sum_j exp(z_j)). Every softmax of
 * the library (the layer, the loss, cfnet_network_probabilities) is this one. */
double cf_softmax(const float *z, float *p, int64_t k);
/* Index of the first largest of k >= 1 entries. */
int64_t cf_argmax(const float *z, int64_t k);

/* Rounds a workspace size up so that sub-buffers carved from it stay 64-byte aligned. */
static inline size_t cf_align64(size_t n) { return (n + 63u) & ~(size_t)63u; }

#endif /* CFNET_CORE_CORE_H */
