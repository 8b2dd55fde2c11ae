/* Private layer interface (not installed): the per-kind operation table every layer file in
 * src/layers implements, the layer object, and the helpers layers share. */
#ifndef CFNET_NN_LAYER_H
#define CFNET_NN_LAYER_H

#include "core/core.h"

/* ------------------------------------------------------------------------------------------ */
/* Layers                                                                                     */

#define CF_MAX_PARAMS 2
#define CF_MAX_STATE 2
#define CF_MAX_ICFG 6
#define CF_MAX_FCFG 2

/* What a training step tells its layers about the batch (see cfnet_network_set_batch_position
 * and cfnet_network_set_sum_hook). Layers used outside a network's train step see NULL. */
typedef struct cf_batch_ctx {
    bool keyed;          /* per-sample randomness keyed by (key, step, offset + b) */
    int64_t step;        /* the optimiser step being taken */
    int64_t offset;      /* global index of the first local sample */
    int64_t global_n;    /* samples in the global batch (== n for a single process) */
    cfnet_sum_fn sum;    /* cross-process sums of batch statistics, or NULL */
    void *sum_user;
} cf_batch_ctx;

typedef struct cf_layer_ops {
    const char *name; /* also the kind's name in model files */
    /* In inference mode each sample's output bits depend on that sample only, not on the rest
     * of the batch or its size (the layer computes sample by sample, as the convolution engine,
     * pooling and the elementwise kinds do; not a kind that hands the whole batch to one
     * OpenBLAS GEMM or a batched FFTW plan, whose blocking depends on the batch). Inference
     * with an interrupt callback runs such a layer on parts of the batch, asking the callback
     * between them (network.c); tests/test_interrupt.c checks the bits of every such kind. */
    bool per_sample;
    /* Names of the integer and float hyper-parameters (icfg / fcfg), NULL-terminated lists, in
     * the order of the public create function's arguments. */
    const char *icfg_names[CF_MAX_ICFG + 1];
    const char *fcfg_names[CF_MAX_FCFG + 1];
    /* Validates the hyper-parameters a layer is created from (the create function's arguments,
     * or the fields of a model file) and may normalise them in place (pool's stride 0 -> 2).
     * NULL for kinds without hyper-parameters. */
    cfnet_status (*check)(int *icfg, float *fcfg);
    /* Validates l->in_shape (set by the caller), sets l->out_ndim/out_shape, allocates the
     * parameters (l->param/grad/state, names, counts) and any shape-dependent tables in
     * l->priv, and initialises parameters from `seed`. On error it must leave no allocation
     * behind in `l` (the caller restores the previous state). */
    cfnet_status (*setup)(cfnet_layer *l, uint64_t seed);
    /* Bytes of scratch needed by forward and backward for a batch of n. The same workspace is
     * passed to a training forward and to the backward that follows it, untouched in between,
     * so forward may leave there what backward needs (rotated filters, masks, statistics). */
    size_t (*workspace)(const cfnet_layer *l, int64_t n);
    /* How many of those bytes, at the start of the workspace, are kept from a training forward
     * to its backward (at most workspace(l, n)); the rest is scratch that a call uses only
     * while it runs. A layer that has this op finds its scratch at l->scratch when that is not
     * NULL (a network's training calls: one region shared by all layers, see network.c), else
     * right after the kept bytes (standalone layers, inference). NULL: all bytes are kept. */
    size_t (*workspace_kept)(const cfnet_layer *l, int64_t n);
    /* y = f(x) for a batch of n. In inference mode it must not write to the layer (several
     * threads may run it at once with their own workspaces); in training mode it may update
     * the layer's state (batch-norm running statistics). */
    cfnet_status (*forward)(cfnet_layer *l, const float *x, float *y, int64_t n, bool training,
                            void *ws);
    /* The forward followed by a ReLU, y = max(0, f(x)), in one call: the same bits, state
     * updates and workspace contents as forward then the ReLU layer. NULL when the kind has no
     * such path. A network runs a layer of such a kind and the ReLU layer after it as one pair
     * (src/nn/network.c); in training the pair shares one output buffer, so only kinds whose
     * backward does not read y may have this op. */
    cfnet_status (*forward_relu)(cfnet_layer *l, const float *x, float *y, int64_t n,
                                 bool training, void *ws);
    /* dx = J^T dy (dx may be NULL), parameter gradients += . Receives the x, y and workspace of
     * the preceding forward. Not called for a layer without parameters when dx is NULL (there
     * is nothing to compute; cf_layer_backward_raw skips it). */
    cfnet_status (*backward)(cfnet_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, int64_t n, void *ws);
    /* Frees l->priv (parameters are freed by the generic code). May be NULL. */
    void (*destroy_priv)(cfnet_layer *l);
    /* Bytes of the inference cache the layer holds now (allocated by its first inference, kept
     * until the layer is freed; counted by cfnet_network_memory_usage), read under the lock that
     * guards it. NULL for kinds without one. */
    size_t (*cache_bytes)(const cfnet_layer *l);
    /* The layer's own random generator, part of its training state (saved with the optimiser
     * state); NULL for layers without one. The op itself may be NULL. */
    cf_rng *(*rng)(cfnet_layer *l);
} cf_layer_ops;

struct cfnet_layer {
    uint32_t magic; /* CF_MAGIC_LAYER */
    const cf_layer_ops *ops;
    /* Everything the layer allocates: the create function's (the default for the public ones,
     * the network's when a loader creates it), replaced by the network's on append. */
    cf_allocator alloc;
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
    /* Set by the network for the duration of a train step, NULL otherwise. */
    const cf_batch_ctx *batch;
    /* Set by the network for the duration of one training forward or backward call of a layer
     * with ops->workspace_kept: where its scratch is (see there); NULL otherwise. */
    void *scratch;
    uint64_t batch_key; /* the layer's key for per-sample randomness (network seed, index) */
    /* Bytes of the tables its setup left allocated besides the parameter and state tensors
     * (priv: rotation maps, index tables, convolution plans), measured by the network when it
     * sets the layer up on append (cf_network_append); 0 for a layer outside a network. */
    size_t table_bytes;
};

/* Frees a layer whether or not a network owns it (the network's own free uses it). */
void cf_layer_destroy(cfnet_layer *layer);
/* Allocates a layer of the given kind with zeroed fields and allocator `a` (NULL: the
 * default); used by cf_layer_create. */
cfnet_status cf_layer_alloc(int kind, const cf_layer_ops *ops, const cf_allocator *a,
                            cfnet_layer **out);
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
/* Adds the parameters of a weighted layer: "weight" of shape wshape[0..wdim-1], He-initialised
 * from `seed` with fan-in `fan_in`, and a zero "bias" of wshape[0] entries. */
cfnet_status cf_layer_add_weight_bias(cfnet_layer *l, int wdim, const int64_t *wshape,
                                      int64_t fan_in, uint64_t seed);
/* Sets the per-sample output shape during setup: ndim dimensions shape[0..ndim-1]. */
void cf_layer_set_out_shape(cfnet_layer *l, int ndim, const int64_t *shape);
/* The setup of a kind without parameters whose output has the shape of its input (relu,
 * softmax). */
cfnet_status cf_layer_setup_same_shape(cfnet_layer *l, uint64_t seed);

/* Runs a whole forward / backward for a batch with a caller-supplied workspace, checking
 * nothing but the layer's setup state (the network and the public API validate tensors). */
cfnet_status cf_layer_forward_raw(cfnet_layer *l, const float *x, float *y, int64_t n,
                                  bool training, void *ws);
cfnet_status cf_layer_backward_raw(cfnet_layer *l, const float *x, const float *y,
                                   const float *dy, float *dx, int64_t n, void *ws);

/* ------------------------------------------------------------------------------------------ */
/* The layer-kind registry (src/nn/registry.c): one entry per value of cfnet_layer_kind.      */

/* The ops table of a kind, or NULL for a value that is not a kind. */
const cf_layer_ops *cf_layer_ops_of(int kind);
/* The kind whose ops->name is `name` (as in model files), or 0. */
int cf_layer_kind_of_name(const char *name);
/* Entries of a NULL-terminated name list (icfg_names, fcfg_names) of at most max entries. */
int cf_count_names(const char *const *names, int max);
/* Creates a layer of `kind` from its hyper-parameters (icfg_names / fcfg_names order; NULL
 * when the kind has none of that type) with allocator `a` (NULL: the default): the kind's
 * check, then allocation. Every public
 * create function and the model loader create layers through this. */
cfnet_status cf_layer_create(int kind, const int *icfg, const float *fcfg, const cf_allocator *a,
                             cfnet_layer **out);

#endif /* CFNET_NN_LAYER_H */
