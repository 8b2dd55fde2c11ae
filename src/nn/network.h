/* The network object (private). */
#ifndef CFNET_NETWORK_H
#define CFNET_NETWORK_H

#include "nn/layer.h"
#include "core/context.h"
#include "core/pool.h"

#include "platform/platform.h"

#include <stdatomic.h>

/* Optimiser state of one parameter tensor: Adam moments (m, v) or SGD velocity (m). */
typedef struct cf_opt_slot {
    float *m, *v;
} cf_opt_slot;

typedef struct cf_options {
    int optimizer;
    double lr, beta1, beta2, eps, momentum, weight_decay, decay_rate;
    int64_t decay_steps;
    int threads;
    int aug_rotation, aug_jitter, aug_flip;
} cf_options;

/* Inference buffers kept between calls (network.c); the only part of a network that inference
 * (const on the network) changes, under its own lock. */
struct cf_infer_bufs;
typedef struct cf_infer_cache {
    cf_mutex lock;
    struct cf_infer_bufs *free_list;
    size_t bytes; /* of every set the network holds: those in free_list and those in use */
} cf_infer_cache;

/* One user metadata entry (cfnet_network_set_metadata); both strings NUL-terminated, owned. */
typedef struct cf_meta_entry {
    char *key, *value;
} cf_meta_entry;

/* The option table (src/nn/options.c): one entry per cfnet_option. */
typedef enum {
    CF_OPTION_REAL,  /* any finite double in the bounds */
    CF_OPTION_INT,   /* an integer in the bounds */
    CF_OPTION_NAMED, /* an integer in the bounds, written by name in model files */
} cf_option_type;


typedef struct cf_option_def {
    cfnet_option key;
    const char *name;      /* the enum's name in lower case (cfnet_option_name) */
    const char *file_name; /* the key in a model file's "options" object */
    const char *what;      /* in messages ("learning rate") */
    cf_option_type type;
    double min, max;       /* bounds; exclusive where min_open / max_open */
    bool min_open, max_open;
    double def;            /* the value of a new network */
    size_t offset;         /* of the field in cf_options */
    char field;            /* its type: 'd' double, 'i' int, 'l' int64_t */
    const char *const *value_names; /* CF_OPTION_NAMED: names of the values min..max, NULL-ended */
} cf_option_def;

/* Number of entries; entry i (key i + 1), or NULL out of range. */
int cf_option_count(void);
const cf_option_def *cf_option_at(int index);
/* Every option at its default (a new network). */
void cf_options_set_defaults(cf_options *o);

struct cfnet_network {
    uint32_t magic; /* CF_MAGIC_NETWORK */
    const cfnet_context *ctx; /* limits (NULL: defaults); outlives the network */
    cf_allocator alloc;       /* the context's at creation: every allocation of the network,
                               * its layers (from append on) and their tensors */
    int64_t in_shape[3];
    int64_t in_size;
    uint64_t seed;
    cf_rng rng;        /* augmentation and shuffling; layer seeds are derived from `seed` */
    int nlayers, cap;
    cfnet_layer **layers;
    cf_options opt;
    int64_t step;
    cf_opt_slot *slots; /* nlayers x CF_MAX_PARAMS, allocated lazily by the optimiser */
    int slots_for;      /* number of layers `slots` covers */
    bool slots_fresh;
    uint64_t table_bytes; /* layer tables (CF_MAX_TABLE_BYTES) measured at append */
    /* In-use flag (see CF_NET_GUARD): the thread that is modifying the network (0: none) and
     * the number of read-only calls running. */
    _Atomic uintptr_t writer;
    _Atomic unsigned readers;
    /* cf_platform_fork_generation() of the process whose thread last claimed the network when
     * it was free: another value than the current one in a refused call means the claim was
     * inherited through fork() from a thread that does not exist in this process. */
    _Atomic uint64_t claim_gen;   /* slots created (zeroed) and not yet used by a successful step */

    /* Training buffers, sized for `train_n` samples. */
    int64_t train_n;
    float *input;       /* the (augmented) batch */
    float **act;        /* act[i]: output of layer i */
    void **ws;          /* ws[i]: the kept part of layer i's workspace (all of it for layers
                         * without ops->workspace_kept), from forward to backward */
    void *scratch;      /* the scratch parts of the layers' workspaces, one region the size
                         * of the largest: layers run one at a time (each spreads over the
                         * threads inside its own scratch) */
    float *grad_a, *grad_b;
    size_t train_bytes;
    int64_t fwd_n;      /* batch of the last training forward, 0 if none */

    /* User metadata, sorted by key (strcmp); sizes bounded by CFNET_METADATA_MAX_*. */
    cf_meta_entry *meta;
    int nmeta, meta_cap;
    size_t meta_bytes; /* sum of key and value lengths */

    /* Worker threads for opt.threads > 1 (NULL otherwise, or if they could not be started:
     * then each parallel call starts its own threads); see core/pool.h. */
    cf_pool *pool;
    cf_infer_cache *infer_cache; /* never NULL */

    /* Data-parallel training (cfnet_network_set_batch_position / _set_sum_hook); not saved. */
    int64_t batch_offset, batch_global; /* batch_global 0: the local batch is the batch */
    cfnet_sum_fn sum_fn;
    void *sum_user;
    float *sum_buf; /* param_count + 1 floats for the gradient sum, allocated lazily */
    int64_t sum_buf_n;

    /* cfnet_network_set_interrupt; not saved. */
    cfnet_interrupt_fn interrupt_fn;
    void *interrupt_user;
    /* Samples per part of a per-sample layer's batch between interrupt checks; 0: chosen from
     * the layer's size (CF_INTERRUPT_PART_FLOATS). Tests set it to force small parts. */
    int64_t interrupt_part;
};

/* Inference with an interrupt callback runs a per-sample layer (cf_layer_ops.per_sample) on
 * parts of the batch of about this many input and output floats (32 MiB, a few ms to some tens
 * of ms of work), at least CF_INTERRUPT_PART_MIN samples each, asking the callback between them. */
#define CF_INTERRUPT_PART_FLOATS ((int64_t)8 << 20)
#define CF_INTERRUPT_PART_MIN 16

/* Concurrent use. Read-only calls (inference, evaluation, saving) may run in any number of
 * threads at once; a call that modifies the network (training, forward/backward, options,
 * append) needs it to itself. CF_NET_GUARD(net, write, what) claims the network until the end
 * of the enclosing block, or returns CFNET_E_STATE at once if another thread holds it in a
 * conflicting way: a detected misuse, never a race. The thread that modifies the network (a
 * progress callback of train_epoch) may still make read-only calls on it. NULL: no guard. */
typedef struct cf_net_guard {
    cfnet_network *net;
    bool write, held;
    bool reentered; /* not held because this thread already modifies it (a callback) */
    bool forked;    /* not held because of a claim inherited through fork() (claim_gen) */
} cf_net_guard;
cf_net_guard cf_net_guard_enter(const cfnet_network *net, bool write);
void cf_net_guard_leave(cf_net_guard *g);
#define CF_NET_GUARD(net, write, what)                                                        \
    cf_net_guard cf_guard_ CF_SCOPE_EXIT(cf_net_guard_leave) =                                \
        cf_net_guard_enter((net), (write));                                                   \
    CF_FAIL_IF(!cf_guard_.held && cf_guard_.reentered, CFNET_E_STATE,                        \
               "%s: called from inside a call that is training this network (a progress "   \
               "callback or sum hook); it cannot be modified until that call returns; "      \
               "nothing was done", (what));                                                   \
    CF_FAIL_IF(!cf_guard_.held && cf_guard_.forked, CFNET_E_STATE,                           \
               "%s: this process was forked while a thread of its parent was using the "     \
               "network; that thread does not exist here, so this copy stays in use and %s "  \
               "(load the model again in the child, or fork while no call runs on the "      \
               "network); nothing was done",                                                  \
               (what), (write) ? "every call that modifies it is refused"                    \
                               : "every call on it is refused");                              \
    CF_FAIL_IF(!cf_guard_.held, CFNET_E_STATE,                                                \
               "%s: the network is in use by another thread (%s); nothing was done", (what), \
               (write) ? "a network is modified (trained, appended to, configured) by one "   \
                         "thread at a time, with no inference running"                         \
                       : "it is being modified: inference cannot run during training")

/* Makes the network's thread pool the thread's pool until the end of the block (core/pool.h).
 * Allocation needs no scope: it names net->alloc. */
#define CF_NET_SCOPE(net) CF_POOL_SCOPE((net)->pool)

/* The opening of an entry point that runs the network on tensors, in this order: the network
 * handle, CF_NET_GUARD(net, write, what), the handles of the tensors t1 and t2 (NULL where there
 * is one tensor), a NULL network, and CF_NET_SCOPE(net). Returns from the function on failure;
 * the claim and the scope last until the end of the enclosing block. */
#define CF_NET_ENTER(net, write, what, t1, t2)                                                \
    CF_CHECK(cf_handle_check((net), CF_MAGIC_NETWORK, "network", __func__));                  \
    CF_NET_GUARD(net, write, what);                                                           \
    CF_CHECK(cf_handle_check((t1), CF_MAGIC_TENSOR, "tensor", __func__));                     \
    CF_CHECK(cf_handle_check((t2), CF_MAGIC_TENSOR, "tensor", __func__));                     \
    CF_FAIL_IF(!(net), CFNET_E_INVALID_ARGUMENT, "%s: network is NULL", (what));              \
    CF_NET_SCOPE(net)

/* CFNET_E_INVALID_ARGUMENT naming the first of the n images (per values each) that holds a NaN
 * or an infinity: inference, evaluation and training refuse them rather than return an answer
 * computed from them (ReLU and max pooling can hide a NaN). */
cfnet_status cf_check_finite_images(const char *what, const float *x, int64_t n, int64_t per);

/* Seed of layer i, derived from the network seed (so it does not depend on call order). */
uint64_t cf_network_layer_seed(const cfnet_network *net, int index);

/* Appends an already created layer without taking the public-API shortcuts (used by the
 * loader too). On failure the layer is NOT freed. */
cfnet_status cf_network_append(cfnet_network *net, cfnet_layer *layer);

/* Allocates the optimiser slots for the current layers if not yet done (zeroed). */
cfnet_status cf_network_ensure_slots(cfnet_network *net);

/* The interrupt checks of one read-only call (cfnet_network_set_interrupt): the network's
 * callback, taken when the call starts, is asked before each layer run; `done` counts the layer
 * runs finished so far in the call, `total` those it makes (a layer fused with its ReLU counts
 * as two). `what` names the call in the CFNET_E_CANCELLED message. */
typedef struct cf_interrupt {
    cfnet_interrupt_fn fn; /* NULL: no checks */
    void *user;
    const char *what;
    int64_t done, total;
} cf_interrupt;
/* The checks of a call that makes `passes` inference passes over layers [0, upto). */
cf_interrupt cf_interrupt_begin(const cfnet_network *net, const char *what, int64_t passes,
                                int upto);

/* Inference of layers [0, upto) on x (n samples) with per-call buffers; copies the result to
 * out (n x output size of layer upto-1). Read-only on the network. `ir` (may be NULL: no
 * checks) is asked before each layer; a stop gives CFNET_E_CANCELLED with out untouched. */
cfnet_status cf_network_infer_into(const cfnet_network *net, int upto, const float *x, int64_t n,
                                   float *out, cf_interrupt *ir);
/* Training buffers (activations, workspaces, gradients) for batches up to n. */
cfnet_status cf_network_ensure_train_buffers(cfnet_network *net, int64_t n);
/* Training forward of layers [0, upto) from net->input into net->act. */
cfnet_status cf_network_train_forward(cfnet_network *net, int upto, int64_t n);
/* What a training forward may move: the generators and the layers' state tensors (batch-norm
 * running statistics). Taken before, restored after a failure, so that a failed call leaves
 * them as they were; `what` names the caller in the out-of-memory message (train.c). */
typedef struct cf_net_snapshot {
    cf_rng net_rng;
    cf_rng *layer_rng; /* one per layer (unused entries for layers without a generator) */
    float *state;      /* every layer's state tensors, concatenated */
} cf_net_snapshot;
cfnet_status cf_net_snapshot_take(cfnet_network *net, cf_net_snapshot *sn, const char *what);
void cf_net_snapshot_restore(cfnet_network *net, const cf_net_snapshot *sn);
void cf_net_snapshot_free(cf_net_snapshot *sn);
/* CFNET_E_NUMERIC naming the first layer and state tensor (running statistic) holding a NaN or
 * an infinity, "<what>: layer i (kind) name would become non-finite ..."; CFNET_OK if none. */
cfnet_status cf_network_nonfinite_state(const cfnet_network *net, const char *what);

/* Backward of layers [0, upto) from d (in grad_a or grad_b); accumulates parameter gradients. */
cfnet_status cf_network_train_backward(cfnet_network *net, int upto, float *d, int64_t n);
/* Sets the thread count of the network and its layers (training buffers are rebuilt). */
void cf_network_set_threads(cfnet_network *net, int threads);
/* Index one past the layer that produces the logits (a final softmax is skipped). */
int cf_network_logits_end(const cfnet_network *net);
/* The step after the input is in place: net->input holds n samples (training buffers and
 * optimiser slots ensured, labels checked against k classes). Augments, runs the training
 * forward, the loss, backward and the update. *loss (may be NULL) gets the batch loss, *correct
 * (may be NULL) the number of samples whose training-mode logits (before the update) have their
 * label as the largest. */
cfnet_status cf_network_train_input(cfnet_network *net, const int32_t *labels, int64_t n,
                                    int64_t k, float *loss, int64_t *correct);
/* Fills order[0..n-1] with a uniformly random permutation of 0..n-1 drawn from the network's
 * generator (Fisher-Yates): the shuffle of cfnet_network_train_epoch. */
void cf_network_draw_order(cfnet_network *net, int64_t n, int64_t *order);
/* Layers in one network (the loader refuses longer architectures, so append does too). */
#define CF_MAX_LAYERS 65536
/* Memory the layers of one network may hold besides their parameters and state: rotation maps,
 * convolution index tables, the transient FFT planning buffers, measured while each layer is
 * set up (peak, summed over the layers). Appending a layer that would take a network over it
 * gives CFNET_E_LIMIT before the memory is allocated. The loader's budget is built from the same
 * number, so a network that could be built can always be loaded again. */
#define CF_MAX_TABLE_BYTES ((uint64_t)192 << 20)

/* Largest step count: 2^53, the largest integer a double (the Adam bias correction, the
 * learning-rate schedule) represents exactly. The loader refuses more; a training step at the
 * limit fails with CFNET_E_LIMIT instead of wrapping. */
#define CF_MAX_STEP ((int64_t)1 << 53)

/* Frees the user metadata. */
void cf_network_free_metadata(cfnet_network *net);
/* The value stored under `key`, or NULL: cfnet_network_get_metadata without its in-use guard,
 * for a call that already holds the network (a nested guard could be refused by another
 * thread's refused modification in the instant it holds the flag). */
const char *cf_network_metadata_value(const cfnet_network *net, const char *key);
/* Checks a metadata key or value against the rules of the public header; NULL when valid,
 * else a static description of what is wrong. */
const char *cf_metadata_key_problem(const char *key, size_t len);
const char *cf_metadata_value_problem(const char *value, size_t len);
/* Sets (value != NULL) or removes a validated entry, within the count and total limits;
 * `what` names the caller in error messages (CFNET_E_LIMIT over a limit). */
cfnet_status cf_network_put_metadata(cfnet_network *net, const char *what, const char *key,
                                     const char *value);

/* Drops the optimiser state (it is rebuilt, zeroed, on the next step). */
void cf_network_reset_optimizer(cfnet_network *net);

/* Data-parallel training (parallel.c). */
/* Checks the batch position against a step of n samples and hands the layers the batch
 * context (the train step restores everything itself on failure). Pair with cf_parallel_end. */
cfnet_status cf_parallel_begin(cfnet_network *net, int64_t n, cf_batch_ctx *ctx);
/* Detaches the batch context from the layers. */
void cf_parallel_end(cfnet_network *net);
/* Seed of the augmentation draws of local sample i under a keyed batch context. */
uint64_t cf_parallel_aug_seed(const cfnet_network *net, const cf_batch_ctx *ctx, int64_t i);
/* Packs the gradients and *loss_share, calls the sum hook, unpacks the sums. */
cfnet_status cf_parallel_sum_gradients(cfnet_network *net, float *loss_share);

#endif
