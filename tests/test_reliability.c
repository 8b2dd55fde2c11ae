/* Reliability: the defects of the second adversarial round, each as the class it belongs to.
 *   - the step count is bounded on load and never wraps (training.step = INT64_MAX),
 *   - a failed training step changes nothing: failed at every allocation, on non-finite
 *     activations, on an overflowing update, on the step limit, on bad arguments — the whole
 *     saved state (parameters, statistics, moments, generators, step) is compared,
 *   - a diverging step is refused with CFNET_E_NUMERIC and never leaves non-finite parameters,
 *     and save refuses non-finite values unless asked explicitly,
 *   - loading refuses FIFOs, devices and directories without blocking, and refuses a large
 *     non-model file after reading its first bytes; quoted paths stay on one line,
 *   - loader limits near UINT64_MAX mean "no limit" (no wrap-around),
 *   - file names up to NAME_MAX save and load (the temporary name is shortened). */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include <jansson.h>

enum { S = 12, K = 3, NB = 4 };

/* ---- a counting allocator that can fail the k-th allocation ---- */

typedef struct counting {
    long calls, fail_at; /* fail_at 0: never */
    long live;
    size_t largest_wanted;
    size_t refuse_above; /* 0: no cap */
} counting;

static void *count_alloc(void *opaque, size_t size)
{
    counting *c = opaque;
    c->calls++;
    if (size > c->largest_wanted) c->largest_wanted = size;
    if (c->fail_at && c->calls == c->fail_at) return NULL;
    if (c->refuse_above && size > c->refuse_above) return NULL;
    void *p = malloc(size);
    if (p) c->live++;
    return p;
}

static void count_free(void *opaque, void *p)
{
    counting *c = opaque;
    c->live--;
    free(p);
}

#define APPEND(net, expr)                              \
    do {                                               \
        cfnet_layer *l_ = NULL;                        \
        CF_ASSERT_OK(expr);                            \
        CF_ASSERT_OK(cfnet_network_append((net), l_)); \
    } while (0)

/* Every kind of training state: batch-norm statistics, dropout and augmentation generators. */
static cfnet_network *make_net(cfnet_context *ctx, uint64_t seed)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create_in(ctx, 1, S, S, seed, &net));
    APPEND(net, cfnet_layer_conic_conv_create(4, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l_));
    APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
    APPEND(net, cfnet_layer_dropout_create(0.3f, &l_));
    APPEND(net, cfnet_layer_dense_create(K, &l_));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_AUG_ROTATION, CFNET_AUG_ROTATION_ANY));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_AUG_JITTER, 1));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_AUG_FLIP, 1));
    return net;
}

static cfnet_tensor *make_batch(uint64_t seed, int32_t *labels)
{
    int64_t xs[4] = {NB, 1, S, S};
    tu_rng r = {seed};
    cfnet_tensor *x = tu_tensor(4, xs, &r);
    for (int i = 0; i < NB; i++) labels[i] = i % K;
    return x;
}

static char *out_file(const char *name)
{
    size_t n = strlen(tu_outdir()) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", tu_outdir(), name);
    return p;
}

typedef struct blob {
    void *p;
    size_t n;
} blob;

/* The whole state a save can see, non-finite values included. */
static blob state_of(const cfnet_network *net)
{
    blob b = {NULL, 0};
    CF_ASSERT_OK(cfnet_network_save_buffer(net, CFNET_SAVE_OPTIMIZER | CFNET_SAVE_ALLOW_NONFINITE,
                                           &b.p, &b.n));
    return b;
}

static void assert_same_state(blob before, const cfnet_network *net, const char *what)
{
    blob after = state_of(net);
    if (after.n != before.n || memcmp(after.p, before.p, before.n) != 0)
        fail_msg("%s changed the network's saved state", what);
    cfnet_free(after.p);
}

static bool params_finite(const cfnet_network *net)
{
    for (int i = 0; i < cfnet_network_layer_count(net); i++) {
        cfnet_layer *l = cfnet_network_layer(net, i);
        for (int p = 0; p < cfnet_layer_param_count(l); p++) {
            cfnet_tensor *t = cfnet_layer_param(l, p);
            const float *d = cfnet_tensor_data(t);
            for (int64_t j = 0; j < cfnet_tensor_numel(t); j++)
                if (!isfinite(d[j])) return false;
        }
    }
    return true;
}

/* ---- header editing: the architecture (a JSON string in __metadata__) ---- */

static unsigned char *with_training_step(const void *buf, size_t size, json_int_t step,
                                         size_t *out_size)
{
    const unsigned char *b = buf;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
    json_t *root = json_loadb((const char *)b + 8, (size_t)hlen, 0, NULL);
    assert_non_null(root);
    json_t *meta = json_object_get(root, "__metadata__");
    json_t *arch = json_loads(json_string_value(json_object_get(meta, "architecture")), 0, NULL);
    assert_non_null(arch);
    json_t *training = json_object_get(arch, "training");
    assert_non_null(training);
    json_object_set_new(training, "step", json_integer(step));
    char *text = json_dumps(arch, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_object_set_new(meta, "architecture", json_string(text));
    free(text);
    json_decref(arch);
    char *h = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    size_t hl = strlen(h), padded = (hl + 7) & ~(size_t)7, dsize = size - 8 - (size_t)hlen;
    unsigned char *o = malloc(8 + padded + dsize);
    assert_non_null(o);
    for (int i = 0; i < 8; i++) o[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(o + 8, h, hl);
    memset(o + 8 + hl, ' ', padded - hl);
    memcpy(o + 8 + padded, b + 8 + hlen, dsize);
    free(h);
    *out_size = 8 + padded + dsize;
    return o;
}

static void step_count_is_bounded_on_load_and_never_wraps(void **state)
{
    (void)state;
    int32_t y[NB];
    cfnet_tensor *x = make_batch(1, y);
    cfnet_network *net = make_net(NULL, 3);
    CF_ASSERT_OK(cfnet_network_train_step(net, x, y, NB, NULL));
    blob saved = state_of(net);
    size_t n;
    unsigned char *f;
    cfnet_network *back = NULL;

    static const json_int_t refused[] = {INT64_MAX, ((json_int_t)1 << 53) + 1, -1};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        f = with_training_step(saved.p, saved.n, refused[i], &n);
        CF_ASSERT_STATUS(cfnet_network_load_buffer(f, n, &back), CFNET_E_FORMAT);
        assert_non_null(strstr(cfnet_last_error(), "step"));
        assert_null(back);
        free(f);
    }
    /* At the limit: loads, but one more step is refused and changes nothing; the network
     * still saves a file that loads. */
    f = with_training_step(saved.p, saved.n, (json_int_t)1 << 53, &n);
    CF_ASSERT_OK(cfnet_network_load_buffer(f, n, &back));
    free(f);
    assert_true(cfnet_network_step_count(back) == (int64_t)1 << 53);
    blob before = state_of(back);
    CF_ASSERT_STATUS(cfnet_network_train_step(back, x, y, NB, NULL), CFNET_E_LIMIT);
    assert_same_state(before, back, "a step at the step limit");
    assert_true(cfnet_network_step_count(back) == (int64_t)1 << 53);
    cfnet_network *again = NULL;
    CF_ASSERT_OK(cfnet_network_load_buffer(before.p, before.n, &again));
    cfnet_network_free(again);
    cfnet_free(before.p);
    cfnet_network_free(back);
    cfnet_free(saved.p);
    cfnet_network_free(net);
    cfnet_tensor_free(x);
}

/* Every allocation of a step fails in turn, on a network that has trained before and on a fresh
 * one (whose optimiser state a failed step must not create). */
static void a_step_failing_at_any_allocation_changes_nothing(void **state)
{
    (void)state;
    int32_t y[NB];
    cfnet_tensor *x = make_batch(2, y);
    for (int trained = 0; trained <= 1; trained++) {
        counting c = {0};
        cfnet_context *ctx = NULL;
        CF_ASSERT_OK(cfnet_context_create(&ctx));
        CF_ASSERT_OK(cfnet_context_set_allocator(ctx, count_alloc, count_free, &c));
        cfnet_network *net = make_net(ctx, 5);
        if (trained) CF_ASSERT_OK(cfnet_network_train_step(net, x, y, NB, NULL));
        int failures = 0;
        for (long k = 1;; k++) {
            blob before = state_of(net);
            c.calls = 0;
            c.fail_at = k;
            cfnet_status st = cfnet_network_train_step(net, x, y, NB, NULL);
            c.fail_at = 0;
            if (st == CFNET_OK) {
                cfnet_free(before.p);
                break;
            }
            assert_int_equal(st, CFNET_E_OUT_OF_MEMORY);
            assert_same_state(before, net, "a step failing at an allocation");
            cfnet_free(before.p);
            failures++;
            /* Buffers freed by a failure are rebuilt: start the next round from scratch. */
            assert_true(k < 1000);
        }
        assert_true(failures > 0);
        print_message("%s network: the step failed at each of its %d allocations, state intact\n",
                      trained ? "trained" : "fresh", failures);
        cfnet_network_free(net);
        cfnet_context_free(ctx);
        assert_int_equal(c.live, 0);
    }
    cfnet_tensor_free(x);
}

/* A training-mode forward is all or nothing too: failed at each of its allocations — on a fresh
 * network (buffers to build) and on one whose buffers are too small for the batch — the
 * parameters, the running statistics and the generators are the same bits as before. */
static void a_training_forward_failing_at_any_allocation_changes_nothing(void **state)
{
    (void)state;
    int32_t y[NB];
    cfnet_tensor *x = make_batch(6, y);
    int64_t xs2[4] = {2 * NB, 1, S, S}, os2[2] = {2 * NB, K};
    tu_rng r = {7};
    cfnet_tensor *x2 = tu_tensor(4, xs2, &r), *out2 = NULL;
    CF_ASSERT_OK(cfnet_tensor_create(2, os2, &out2));
    for (int trained = 0; trained <= 1; trained++) {
        counting c = {0};
        cfnet_context *ctx = NULL;
        CF_ASSERT_OK(cfnet_context_create(&ctx));
        CF_ASSERT_OK(cfnet_context_set_allocator(ctx, count_alloc, count_free, &c));
        cfnet_network *net = make_net(ctx, 8);
        if (trained) CF_ASSERT_OK(cfnet_network_train_step(net, x, y, NB, NULL)); /* buffers for NB */
        int failures = 0;
        for (long k = 1;; k++) {
            blob before = state_of(net);
            c.calls = 0;
            c.fail_at = k;
            cfnet_status st = cfnet_network_forward(net, x2, out2, CFNET_MODE_TRAINING);
            c.fail_at = 0;
            if (st == CFNET_OK) {
                cfnet_free(before.p);
                break;
            }
            assert_int_equal(st, CFNET_E_OUT_OF_MEMORY);
            assert_same_state(before, net, "a training forward failing at an allocation");
            cfnet_free(before.p);
            failures++;
            assert_true(k < 1000);
        }
        assert_true(failures > 0);
        /* and the network still trains: a backward needs the successful forward just made */
        int64_t gs[2] = {2 * NB, K};
        cfnet_tensor *g = NULL;
        CF_ASSERT_OK(cfnet_tensor_create(2, gs, &g));
        CF_ASSERT_OK(cfnet_network_backward(net, g));
        cfnet_tensor_free(g);
        print_message("%s network: the training forward failed at each of its %d allocations, "
                      "state intact\n", trained ? "trained" : "fresh", failures);
        cfnet_network_free(net);
        cfnet_context_free(ctx);
        assert_int_equal(c.live, 0);
    }
    cfnet_tensor_free(out2);
    cfnet_tensor_free(x2);
    cfnet_tensor_free(x);
}

static void set_all(cfnet_tensor *t, float v)
{
    float *d = cfnet_tensor_data(t);
    for (int64_t j = 0; j < cfnet_tensor_numel(t); j++) d[j] = v;
}

/* Non-finite activations (an overflowing layer) and overflowing updates: CFNET_E_NUMERIC
 * naming the layer, and nothing changed — not the running statistics, not the generators. */
static void a_step_failing_on_numbers_changes_nothing(void **state)
{
    (void)state;
    int32_t y[NB];
    cfnet_tensor *x = make_batch(3, y);
    cfnet_network *net = make_net(NULL, 7);
    CF_ASSERT_OK(cfnet_network_train_step(net, x, y, NB, NULL));
    cfnet_layer *dense = cfnet_network_layer(net, 5);
    cfnet_tensor *w = cfnet_layer_param(dense, 0);
    blob good = state_of(net);

    /* The dense layer overflows: its output is infinite. */
    set_all(w, 3e38f);
    blob before = state_of(net);
    CF_ASSERT_STATUS(cfnet_network_train_step(net, x, y, NB, NULL), CFNET_E_NUMERIC);
    if (!strstr(cfnet_last_error(), "layer 5 (dense)"))
        fail_msg("message does not name the layer: %s", cfnet_last_error());
    assert_same_state(before, net, "a step with non-finite activations");
    cfnet_free(before.p);

    /* Updates that overflow (SGD, learning rate 1e38): steps go on while every value stays
     * finite; the step that would overflow is refused before anything is written. */
    cfnet_network_free(net);
    CF_ASSERT_OK(cfnet_network_load_buffer(good.p, good.n, &net));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_OPTIMIZER, CFNET_OPTIMIZER_SGD));
    CF_ASSERT_OK(cfnet_network_train_step(net, x, y, NB, NULL));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, 1e38));
    cfnet_status st = CFNET_OK;
    for (int i = 0; i < 20 && st == CFNET_OK; i++) {
        before = state_of(net);
        st = cfnet_network_train_step(net, x, y, NB, NULL);
        assert_true(params_finite(net));
        if (st != CFNET_OK) {
            assert_int_equal(st, CFNET_E_NUMERIC);
            assert_non_null(strstr(cfnet_last_error(), "layer"));
            assert_same_state(before, net, "a step with an overflowing update");
        }
        cfnet_free(before.p);
    }
    assert_int_equal(st, CFNET_E_NUMERIC);

    /* Validation errors change nothing either. */
    before = state_of(net);
    int32_t bad[NB] = {0, 1, K, 0};
    CF_ASSERT_STATUS(cfnet_network_train_step(net, x, bad, NB, NULL), CFNET_E_INVALID_ARGUMENT);
    cfnet_tensor_data(x)[5] = NAN;
    CF_ASSERT_STATUS(cfnet_network_train_step(net, x, y, NB, NULL), CFNET_E_INVALID_ARGUMENT);
    assert_same_state(before, net, "a step with bad arguments");
    cfnet_free(before.p);
    cfnet_free(good.p);
    cfnet_network_free(net);
    cfnet_tensor_free(x);
}

/* A large learning rate: training must stop with CFNET_E_NUMERIC before any parameter becomes
 * non-finite, and the network then still saves (finite) and loads. */
static void divergence_is_refused_and_never_leaves_nonfinite_parameters(void **state)
{
    (void)state;
    int32_t y[NB];
    cfnet_tensor *x = make_batch(4, y);
    for (int opt = 0; opt <= 1; opt++) {
        cfnet_network *net = make_net(NULL, 9);
        CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_OPTIMIZER, opt));
        CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, 1e30));
        cfnet_status st = CFNET_OK;
        int steps = 0;
        while (st == CFNET_OK && steps < 50) {
            st = cfnet_network_train_step(net, x, y, NB, NULL);
            if (st == CFNET_OK) steps++;
            assert_true(params_finite(net));
        }
        if (st != CFNET_E_NUMERIC)
            fail_msg("optimizer %d: %d steps, then %s (%s)", opt, steps, cfnet_status_string(st),
                     cfnet_last_error());
        assert_non_null(strstr(cfnet_last_error(), "layer"));
        void *buf = NULL;
        size_t n = 0;
        CF_ASSERT_OK(cfnet_network_save_buffer(net, CFNET_SAVE_OPTIMIZER, &buf, &n));
        cfnet_network *back = NULL;
        CF_ASSERT_OK(cfnet_network_load_buffer(buf, n, &back));
        assert_true(cfnet_network_step_count(back) == steps);
        cfnet_network_free(back);
        cfnet_free(buf);
        cfnet_network_free(net);
    }
    cfnet_tensor_free(x);
}

/* Finite activations whose batch variance overflows float (inputs of 1e30: the batch-norm
 * layer normalises them to finite values, but its running variance would become infinite):
 * the step is refused with CFNET_E_NUMERIC naming the layer and statistic, nothing changes, and
 * the network still saves without CFNET_SAVE_ALLOW_NONFINITE. */
static void a_step_overflowing_the_running_statistics_changes_nothing(void **state)
{
    (void)state;
    int32_t y[NB];
    cfnet_tensor *x = make_batch(5, y);
    cfnet_network *net = make_net(NULL, 19);
    CF_ASSERT_OK(cfnet_network_train_step(net, x, y, NB, NULL));
    float *d = cfnet_tensor_data(x);
    for (int64_t j = 0; j < cfnet_tensor_numel(x); j++) d[j] = (d[j] + 2.0f) * 1e30f;
    blob before = state_of(net);
    CF_ASSERT_STATUS(cfnet_network_train_step(net, x, y, NB, NULL), CFNET_E_NUMERIC);
    if (!strstr(cfnet_last_error(), "layer 1 (batch_norm) running_var"))
        fail_msg("message does not name the statistic: %s", cfnet_last_error());
    assert_same_state(before, net, "a step overflowing the running variance");
    assert_int_equal(cfnet_network_step_count(net), 1);
    void *buf = NULL;
    size_t n = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(net, CFNET_SAVE_OPTIMIZER, &buf, &n));
    cfnet_free(buf);
    cfnet_free(before.p);
    cfnet_network_free(net);
    cfnet_tensor_free(x);
}

/* Adam's epsilon is a double option; one below float's range (1e-300) must not make the
 * update of a parameter without gradient 0/0: blank images leave the convolution's weights
 * without gradient, and the step trains the rest and leaves them as they were. */
static void an_epsilon_below_float_range_still_trains(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S, S, 23, &net));
    APPEND(net, cfnet_layer_conv2d_create(4, 3, 1, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_dense_create(K, &l_));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_EPSILON, 1e-300));
    int64_t xs[4] = {NB, 1, S, S};
    cfnet_tensor *x = tu_tensor(4, xs, NULL);
    CF_ASSERT_OK(cfnet_tensor_zero(x));
    int32_t y[NB];
    for (int i = 0; i < NB; i++) y[i] = i % K;
    cfnet_tensor *w = cfnet_layer_param(cfnet_network_layer(net, 0), 0);
    int64_t nw = cfnet_tensor_numel(w);
    float *w0 = malloc((size_t)nw * sizeof *w0);
    assert_non_null(w0);
    CF_ASSERT_OK(cfnet_tensor_copy_out(w, w0, nw));
    for (int t = 0; t < 3; t++) CF_ASSERT_OK(cfnet_network_train_step(net, x, y, NB, NULL));
    assert_int_equal(cfnet_network_step_count(net), 3);
    assert_memory_equal(cfnet_tensor_data(w), w0, (size_t)nw * sizeof *w0);
    assert_true(params_finite(net));
    free(w0);
    cfnet_tensor_free(x);
    cfnet_network_free(net);
}

/* Adam's betas are double options below 1; one within 3e-8 of 1 (0.99999999) rounds to 1.0f
 * in the float update. The moments must still move (1 - beta from the double): the first step
 * moves the weights by about the learning rate, as with the default betas (beta1: not at all
 * before; beta2: by orders of magnitude more, v staying 0), and they stay finite. */
static void betas_next_to_one_still_train(void **state)
{
    (void)state;
    int32_t y[NB];
    cfnet_tensor *x = make_batch(6, y);
    for (int which = 0; which < 2; which++) {
        cfnet_network *net = NULL;
        CF_ASSERT_OK(cfnet_network_create(1, S, S, 29, &net));
        APPEND(net, cfnet_layer_dense_create(K, &l_));
        CF_ASSERT_OK(cfnet_network_set_option(
            net, which ? CFNET_OPTION_BETA2 : CFNET_OPTION_BETA1, 0.99999999));
        cfnet_tensor *w = cfnet_layer_param(cfnet_network_layer(net, 0), 0);
        int64_t nw = cfnet_tensor_numel(w);
        float *w0 = malloc((size_t)nw * sizeof *w0);
        assert_non_null(w0);
        CF_ASSERT_OK(cfnet_tensor_copy_out(w, w0, nw));
        CF_ASSERT_OK(cfnet_network_train_step(net, x, y, NB, NULL));
        int moved = 0;
        double largest = 0; /* Adam's first step moves each weight by about the rate, 1e-3 */
        for (int64_t j = 0; j < nw; j++) {
            moved += cfnet_tensor_data(w)[j] != w0[j];
            largest = fmax(largest, fabs((double)cfnet_tensor_data(w)[j] - w0[j]));
        }
        if (moved < nw / 2 || largest > 1e-2)
            fail_msg("beta%d = 0.99999999: %d of %d weights moved, the largest by %g",
                     which + 1, moved, (int)nw, largest);
        for (int t = 0; t < 5; t++) CF_ASSERT_OK(cfnet_network_train_step(net, x, y, NB, NULL));
        assert_true(params_finite(net));
        free(w0);
        cfnet_network_free(net);
    }
    cfnet_tensor_free(x);
}

static void save_refuses_nonfinite_values_unless_asked(void **state)
{
    (void)state;
    static const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int b = 0; b < 3; b++) {
        cfnet_network *net = make_net(NULL, 11);
        cfnet_layer *bn = cfnet_network_layer(net, 1);
        /* a parameter, then a running statistic */
        for (int which = 0; which < 2; which++) {
            cfnet_tensor *t = which == 0 ? cfnet_layer_param(cfnet_network_layer(net, 5), 0)
                                         : cfnet_layer_state(bn, 0);
            float keep = cfnet_tensor_data(t)[1];
            cfnet_tensor_data(t)[1] = bad[b];
            void *buf = NULL;
            size_t n = 0;
            CF_ASSERT_STATUS(cfnet_network_save_buffer(net, 0, &buf, &n), CFNET_E_NUMERIC);
            assert_null(buf);
            assert_non_null(strstr(cfnet_last_error(), "CFNET_SAVE_ALLOW_NONFINITE"));
            char *path = out_file("nonfinite.safetensors");
            unlink(path);
            CF_ASSERT_STATUS(cfnet_network_save(net, path, CFNET_SAVE_OPTIMIZER), CFNET_E_NUMERIC);
            assert_int_equal(access(path, F_OK), -1);
            CF_ASSERT_OK(cfnet_network_save(net, path, CFNET_SAVE_ALLOW_NONFINITE));
            cfnet_network *back = NULL;
            CF_ASSERT_OK(cfnet_network_load(path, &back));
            cfnet_layer *lb = which == 0 ? cfnet_network_layer(back, 5) : cfnet_network_layer(back, 1);
            float got = cfnet_tensor_data(which == 0 ? cfnet_layer_param(lb, 0)
                                                     : cfnet_layer_state(lb, 0))[1];
            assert_memory_equal(&got, &bad[b], sizeof got);
            cfnet_network_free(back);
            unlink(path);
            free(path);
            cfnet_tensor_data(t)[1] = keep;
        }
        cfnet_network_free(net);
    }
}

/* ---- files ---- */


static void sigalrm_abort(int sig)
{
    (void)sig;
    static const char msg[] = "test_reliability: a load blocked (watchdog)\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(3);
}

static void fifos_devices_and_directories_are_refused_without_blocking(void **state)
{
    (void)state;
    char *fifo = out_file("model.fifo");
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    signal(SIGALRM, sigalrm_abort); /* a watchdog against a hang, not a timing assertion */
    alarm(60);
    cfnet_network *net = NULL;
    const char *paths[] = {fifo, "/dev/null", tu_outdir()};
    for (int i = 0; i < 3; i++) {
        CF_ASSERT_STATUS(cfnet_network_load(paths[i], &net), CFNET_E_IO);
        assert_null(net);
        if (!strstr(cfnet_last_error(), "not a regular file"))
            fail_msg("%s: %s", paths[i], cfnet_last_error());
    }
    alarm(0);
    signal(SIGALRM, SIG_DFL);
    unlink(fifo);
    free(fifo);
}

static void write_head(const char *path, const void *head, size_t n, off_t total)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, head, n), (ssize_t)n);
    assert_int_equal(ftruncate(fd, total), 0); /* sparse: costs no disk */
    close(fd);
}

/* A 3 GiB file that is not a model (within the default size limits): refused after its first
 * bytes, with no allocation anywhere near its size. */
static void a_large_non_model_file_is_refused_before_it_is_read(void **state)
{
    (void)state;
    const off_t big = (off_t)3 << 30;
    char *path = out_file("large_non_model.bin");
    counting c = {0};
    c.refuse_above = (size_t)1 << 20;
    cfnet_context *ctx = NULL;
    CF_ASSERT_OK(cfnet_context_create(&ctx));
    CF_ASSERT_OK(cfnet_context_set_allocator(ctx, count_alloc, count_free, &c));
    cfnet_network *net = NULL;

    /* A plausible header length, but the header is not JSON. */
    unsigned char head[24] = {16, 0, 0, 0, 0, 0, 0, 0};
    memcpy(head + 8, "\x7f" "ELF not a model", 16);
    write_head(path, head, sizeof head, big);
    if (cfnet_network_load_in(ctx, path, &net) != CFNET_E_FORMAT) fail_msg("%s", cfnet_last_error());
    assert_non_null(strstr(cfnet_last_error(), "JSON"));
    /* A header length over the limit (text read as a length). */
    write_head(path, "GIF89a..", 8, big);
    CF_ASSERT_STATUS(cfnet_network_load_in(ctx, path, &net), CFNET_E_LIMIT);
    /* A header length past the end of the file. */
    unsigned char past[8] = {0x88, 0x13, 0, 0, 0, 0, 0, 0}; /* 5000 */
    write_head(path, past, 8, 4096);
    CF_ASSERT_STATUS(cfnet_network_load_in(ctx, path, &net), CFNET_E_FORMAT);
    assert_null(net);
    /* A real model followed by 3 GiB of zeros: its header says where the tensors end, so the
     * trailing bytes are refused before the data section is read. */
    cfnet_network *small = make_net(NULL, 1);
    void *model = NULL;
    size_t model_size = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(small, 0, &model, &model_size));
    cfnet_network_free(small);
    write_head(path, model, model_size, big);
    cfnet_free(model);
    if (cfnet_network_load_in(ctx, path, &net) != CFNET_E_FORMAT) fail_msg("%s", cfnet_last_error());
    assert_non_null(strstr(cfnet_last_error(), "trailing bytes"));
    assert_null(net);
    assert_true(c.largest_wanted <= ((size_t)1 << 20));
    unlink(path);
    free(path);
    cfnet_context_free(ctx);
    assert_int_equal(c.live, 0);
}

static void quoted_paths_stay_on_one_line(void **state)
{
    (void)state;
    char *path = out_file("no\nsuch\tmodel\x01\x7f.safetensors");
    cfnet_network *net = NULL;
    CF_ASSERT_STATUS(cfnet_network_load(path, &net), CFNET_E_IO);
    const char *msg = cfnet_last_error();
    assert_null(strchr(msg, '\n'));
    assert_null(strchr(msg, '\t'));
    if (!strstr(msg, "no\\nsuch\\tmodel\\x01\\x7f.safetensors")) fail_msg("%s", msg);
    free(path);
    /* a C1 control (U+009B, CSI) is escaped too; U+00A0 and a byte that is not UTF-8 are kept */
    path = out_file("c1\xc2\x9b[2J\xc2\xa0\xff\xc2.safetensors");
    CF_ASSERT_STATUS(cfnet_network_load(path, &net), CFNET_E_IO);
    msg = cfnet_last_error();
    if (!strstr(msg, "c1\\xc2\\x9b[2J\xc2\xa0\xff\xc2.safetensors")) fail_msg("%s", msg);
    free(path);
    net = make_net(NULL, 1);
    path = out_file("missing\ndir/x.safetensors");
    CF_ASSERT_STATUS(cfnet_network_save(net, path, 0), CFNET_E_IO);
    assert_null(strchr(cfnet_last_error(), '\n'));
    assert_non_null(strstr(cfnet_last_error(), "missing\\ndir"));
    free(path);
    cfnet_network_free(net);
}

static void limits_near_uint64_max_mean_no_limit(void **state)
{
    (void)state;
    cfnet_network *net = make_net(NULL, 13);
    char *path = out_file("extreme_limits.safetensors");
    CF_ASSERT_OK(cfnet_network_save(net, path, CFNET_SAVE_OPTIMIZER));
    void *buf = NULL;
    size_t n = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(net, 0, &buf, &n));
    static const uint64_t values[] = {UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 8,
                                      UINT64_MAX / 2 + 1, (uint64_t)INT64_MAX};
    for (size_t a = 0; a < 5; a++) {
        for (size_t b = 0; b < 5; b++) {
            cfnet_context *ctx = NULL;
            CF_ASSERT_OK(cfnet_context_create(&ctx));
            CF_ASSERT_OK(cfnet_context_set_limit(ctx, CFNET_LIMIT_HEADER_BYTES, values[a]));
            CF_ASSERT_OK(cfnet_context_set_limit(ctx, CFNET_LIMIT_TENSOR_BYTES, values[b]));
            uint64_t got = 0;
            CF_ASSERT_OK(cfnet_context_get_limit(ctx, CFNET_LIMIT_HEADER_BYTES, &got));
            assert_true(got == values[a]);
            cfnet_network *back = NULL;
            CF_ASSERT_OK(cfnet_network_load_in(ctx, path, &back));
            cfnet_network_free(back);
            back = NULL;
            CF_ASSERT_OK(cfnet_network_load_buffer_in(ctx, buf, n, &back));
            /* saving in such a context applies the same (absent) limits */
            void *b2 = NULL;
            size_t n2 = 0;
            CF_ASSERT_OK(cfnet_network_save_buffer(back, 0, &b2, &n2));
            cfnet_free(b2);
            cfnet_network_free(back);
            cfnet_context_free(ctx);
        }
    }
    /* And the smallest limits still refuse. */
    cfnet_context *ctx = NULL;
    CF_ASSERT_OK(cfnet_context_create(&ctx));
    CF_ASSERT_OK(cfnet_context_set_limit(ctx, CFNET_LIMIT_TENSOR_BYTES, 1));
    cfnet_network *back = NULL;
    CF_ASSERT_STATUS(cfnet_network_load_in(ctx, path, &back), CFNET_E_LIMIT);
    cfnet_context_free(ctx);
    cfnet_free(buf);
    unlink(path);
    free(path);
    cfnet_network_free(net);
}

static int temp_files_in_outdir(void)
{
    DIR *d = opendir(tu_outdir());
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static void file_names_up_to_name_max_save_and_load(void **state)
{
    (void)state;
    long name_max = pathconf(tu_outdir(), _PC_NAME_MAX);
    if (name_max < 32 || name_max > 4096) skip();
    cfnet_network *net = make_net(NULL, 17), *other = make_net(NULL, 18);
    int before = temp_files_in_outdir();
    for (long len = name_max - 16; len <= name_max; len++) {
        char *name = malloc((size_t)len + 1);
        assert_non_null(name);
        memset(name, 'n', (size_t)len);
        name[len] = '\0';
        char *path = out_file(name);
        CF_ASSERT_OK(cfnet_network_save(net, path, 0));
        CF_ASSERT_OK(cfnet_network_save(other, path, 0)); /* over an existing file */
        cfnet_network *back = NULL;
        CF_ASSERT_OK(cfnet_network_load(path, &back));
        cfnet_network_free(back);
        assert_int_equal(temp_files_in_outdir(), before);
        unlink(path);
        free(path);
        free(name);
    }
    /* One byte more than the system allows is the system's error, as a status. */
    char *name = malloc((size_t)name_max + 2);
    memset(name, 'n', (size_t)name_max + 1);
    name[name_max + 1] = '\0';
    char *path = out_file(name);
    CF_ASSERT_STATUS(cfnet_network_save(net, path, 0), CFNET_E_IO);
    free(path);
    free(name);
    cfnet_network_free(net);
    cfnet_network_free(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(step_count_is_bounded_on_load_and_never_wraps),
        cmocka_unit_test(a_step_failing_at_any_allocation_changes_nothing),
        cmocka_unit_test(a_training_forward_failing_at_any_allocation_changes_nothing),
        cmocka_unit_test(a_step_failing_on_numbers_changes_nothing),
        cmocka_unit_test(divergence_is_refused_and_never_leaves_nonfinite_parameters),
        cmocka_unit_test(a_step_overflowing_the_running_statistics_changes_nothing),
        cmocka_unit_test(an_epsilon_below_float_range_still_trains),
        cmocka_unit_test(betas_next_to_one_still_train),
        cmocka_unit_test(save_refuses_nonfinite_values_unless_asked),
        cmocka_unit_test(fifos_devices_and_directories_are_refused_without_blocking),
        cmocka_unit_test(a_large_non_model_file_is_refused_before_it_is_read),
        cmocka_unit_test(quoted_paths_stay_on_one_line),
        cmocka_unit_test(limits_near_uint64_max_mean_no_limit),
        cmocka_unit_test(file_names_up_to_name_max_save_and_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
