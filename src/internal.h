/* Private declarations shared by the library's translation units. Not installed. */
#ifndef CFNET_INTERNAL_H
#define CFNET_INTERNAL_H

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
/* Memory. All library allocations go through these, so that allocation hooks have one place. */

typedef struct cf_allocator {
    cfnet_alloc_fn alloc;
    cfnet_free_fn free;
    void *opaque;
} cf_allocator;

extern const cf_allocator cf_default_allocator;

/* Allocate with the calling thread's current allocator (the default outside any scope); a
 * block always goes back to the allocator that made it. cf_malloc(0) returns a valid block. */
void *cf_malloc(size_t size);
void *cf_calloc(size_t count, size_t size);
void cf_free(void *p);

/* Scopes: CF_ALLOC_SCOPE(a) makes `a` (NULL: default) the thread's allocator until the end of
 * the enclosing block. */
const cf_allocator *cf_alloc_scope_enter(const cf_allocator *a);
void cf_alloc_scope_leave(const cf_allocator **prev);
#define CF_ALLOC_SCOPE(a)                                                                 \
    const cf_allocator *cf_scope_prev_ __attribute__((cleanup(cf_alloc_scope_leave), unused)) = \
        cf_alloc_scope_enter(a)
/* Overflow-checked products; return false on overflow. */
bool cf_mul_size(size_t a, size_t b, size_t *out);
bool cf_mul_i64(int64_t a, int64_t b, int64_t *out);

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

/* ------------------------------------------------------------------------------------------ */
/* Tensors                                                                                    */

struct cfnet_tensor {
    float *data;
    int64_t numel;
    int ndim;
    int64_t shape[CFNET_MAX_DIMS];
    bool owns_data;
};

/* Creates a tensor without setting an error prefix; used by layers for their parameters. */
cfnet_status cf_tensor_new(int ndim, const int64_t *shape, cfnet_tensor **out);
/* Validates a shape and computes its element count; `what` names the caller for messages. */
cfnet_status cf_shape_numel(const char *what, int ndim, const int64_t *shape, int64_t *numel);

/* ------------------------------------------------------------------------------------------ */
/* Layers                                                                                     */

#define CF_MAX_PARAMS 2
#define CF_MAX_STATE 2
#define CF_MAX_ICFG 6
#define CF_MAX_FCFG 2

typedef struct cf_layer_ops {
    const char *name; /* also the kind's name in model files */
    /* Names of the integer and float hyper-parameters (icfg / fcfg), NULL-terminated lists. */
    const char *icfg_names[CF_MAX_ICFG + 1];
    const char *fcfg_names[CF_MAX_FCFG + 1];
    /* Validates l->in_shape (set by the caller), sets l->out_ndim/out_shape, allocates the
     * parameters (l->param/grad/state, names, counts) and any shape-dependent tables in
     * l->priv, and initialises parameters from `seed`. On error it must leave no allocation
     * behind in `l` (the caller restores the previous state). */
    cfnet_status (*setup)(cfnet_layer *l, uint64_t seed);
    /* Bytes of scratch needed by forward and backward for a batch of n. The same workspace is
     * passed to a training forward and to the backward that follows it, untouched in between,
     * so forward may leave there what backward needs (rotated filters, masks, statistics). */
    size_t (*workspace)(const cfnet_layer *l, int64_t n);
    /* y = f(x) for a batch of n. In inference mode it must not write to the layer (several
     * threads may run it at once with their own workspaces); in training mode it may update
     * the layer's state (batch-norm running statistics). */
    cfnet_status (*forward)(cfnet_layer *l, const float *x, float *y, int64_t n, bool training,
                            void *ws);
    /* dx = J^T dy (dx may be NULL), parameter gradients += . Receives the x, y and workspace of
     * the preceding forward. */
    cfnet_status (*backward)(cfnet_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, int64_t n, void *ws);
    /* Frees l->priv (parameters are freed by the generic code). May be NULL. */
    void (*destroy_priv)(cfnet_layer *l);
} cf_layer_ops;

struct cfnet_layer {
    const cf_layer_ops *ops;
    int kind;
    bool is_setup;
    bool owned;  /* appended to a network, which frees it */
    int threads; /* threads for the layer's own loops (set by the network; 0 means 1) */
    int icfg[CF_MAX_ICFG]; /* creation hyper-parameters, meaning per kind (ops->icfg_names) */
    float fcfg[CF_MAX_FCFG];
    int in_ndim, out_ndim; /* per sample, without the batch axis */
    int64_t in_shape[CFNET_MAX_DIMS], out_shape[CFNET_MAX_DIMS];
    int64_t in_size, out_size; /* elements per sample */
    int nparam, nstate;
    cfnet_tensor *param[CF_MAX_PARAMS], *grad[CF_MAX_PARAMS], *state[CF_MAX_STATE];
    const char *param_name[CF_MAX_PARAMS], *state_name[CF_MAX_STATE];
    void *priv; /* kind-specific tables built by setup */
    /* Workspace for the standalone cfnet_layer_forward/backward API (networks own theirs). */
    void *ws;
    size_t ws_size;
    int64_t last_n; /* batch of the last standalone forward (0: none) */
};

/* Allocates a layer of the given kind with zeroed fields. */
cfnet_status cf_layer_alloc(int kind, const cf_layer_ops *ops, cfnet_layer **out);
/* Adds a zero-filled trainable parameter (and its gradient) during setup. */
cfnet_status cf_layer_add_param(cfnet_layer *l, const char *name, int ndim, const int64_t *shape,
                                cfnet_tensor **out);
/* Adds a zero-filled state tensor during setup. */
cfnet_status cf_layer_add_state(cfnet_layer *l, const char *name, int ndim, const int64_t *shape,
                                cfnet_tensor **out);
/* Frees parameters, state and priv (used on setup failure and on free). */
void cf_layer_release(cfnet_layer *l);
/* Fills `t` with N(0, 2 / fan_in) samples (He initialisation). */
void cf_init_he(cfnet_tensor *t, int64_t fan_in, cf_rng *rng);

/* Runs a whole forward / backward for a batch with a caller-supplied workspace, checking
 * nothing but the layer's setup state (the network and the public API validate tensors). */
cfnet_status cf_layer_forward_raw(cfnet_layer *l, const float *x, float *y, int64_t n,
                                  bool training, void *ws);
cfnet_status cf_layer_backward_raw(cfnet_layer *l, const float *x, const float *y,
                                   const float *dy, float *dx, int64_t n, void *ws);

/* Writes "31x30"-style text for a shape into buf and returns buf. */
const char *cf_shape_str(char *buf, size_t size, int ndim, const int64_t *shape);

/* Rounds a workspace size up so that sub-buffers carved from it stay 64-byte aligned. */
static inline size_t cf_align64(size_t n) { return (n + 63u) & ~(size_t)63u; }

/* Per-kind operation tables, defined in src/layers/. */
extern const cf_layer_ops cf_conv2d_ops, cf_conic_conv_ops, cf_p4_lift_ops, cf_p4_conv_ops,
    cf_group_pool_ops, cf_dft_projection_ops, cf_dft_magnitude_ops, cf_dense_ops, cf_relu_ops,
    cf_pool_ops, cf_batch_norm_ops, cf_dropout_ops, cf_softmax_ops;

/* The ops table of a kind, or NULL. */
const cf_layer_ops *cf_layer_ops_of(int kind);

#endif /* CFNET_INTERNAL_H */
