/* Data-parallel training through the sum hook, without MPI: "processes" are threads, each with
 * its own copy of the network, and the hook adds their buffers. The contract of cfnet.h says
 * that N processes with batch B/N compute what one process with batch B computes, with batch
 * norm (synchronised), dropout and augmentation on; these tests hold the library to it. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { C_IN = 2, S = 16, CLASSES = 5, GLOBAL = 24, STEPS = 4, MAXP = 3 };

static int use_adam; /* adam_agrees_except_biases_before_batch_norm */

static cfnet_network *make_net(uint64_t seed)
{
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(C_IN, S, S, seed, &net));
#define ADD(call)                               \
    do {                                        \
        CF_ASSERT_OK(call);                     \
        CF_ASSERT_OK(cfnet_network_append(net, l)); \
    } while (0)
    ADD(cfnet_layer_conic_conv_create(6, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l));
    ADD(cfnet_layer_batch_norm_create(0.1f, 1e-3f, &l));
    ADD(cfnet_layer_relu_create(&l));
    ADD(cfnet_layer_dropout_create(0.25f, &l));
    ADD(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l));
    ADD(cfnet_layer_conic_conv_create(6, 3, 1, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l));
    ADD(cfnet_layer_batch_norm_create(0.1f, 1e-3f, &l));
    ADD(cfnet_layer_relu_create(&l));
    ADD(cfnet_layer_dft_projection_create(4, 1, CFNET_INTERP_NEAREST, &l));
    ADD(cfnet_layer_dft_magnitude_create(&l));
    ADD(cfnet_layer_dense_create(CLASSES, &l));
#undef ADD
    /* SGD: with Adam, a parameter whose gradient is zero in exact arithmetic (the bias of a
     * convolution followed by batch norm) moves by a full step of random sign driven by
     * rounding noise, so no two summation orders agree on it; see docs/distributed.md. */
    CF_ASSERT_OK(cfnet_network_set_option(
        net, CFNET_OPTION_OPTIMIZER, use_adam ? CFNET_OPTIMIZER_ADAM : CFNET_OPTIMIZER_SGD));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, use_adam ? 5e-3 : 0.05));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_WEIGHT_DECAY, 1e-3));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_AUG_ROTATION, CFNET_AUG_ROTATION_ANY));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_AUG_JITTER, 2));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_AUG_FLIP, 1));
    return net;
}

/* The data set: 2 global batches; step s uses batch s % 2. */
typedef struct data {
    float x[2 * GLOBAL * C_IN * S * S];
    int32_t y[2 * GLOBAL];
} data;

static void make_data(data *d)
{
    tu_rng r = {1234};
    tu_fill_normal(d->x, (int64_t)sizeof d->x / (int64_t)sizeof d->x[0], &r);
    for (int i = 0; i < 2 * GLOBAL; i++) d->y[i] = (int32_t)((i * 7) % CLASSES);
}

/* Every parameter, then every state tensor, of a network, concatenated. */
static int64_t snapshot(const cfnet_network *net, float *out)
{
    int64_t n = 0;
    for (int i = 0; i < cfnet_network_layer_count(net); i++) {
        cfnet_layer *l = cfnet_network_layer(net, i);
        for (int p = 0; p < cfnet_layer_param_count(l); p++) {
            cfnet_tensor *t = cfnet_layer_param(l, p);
            if (out) memcpy(out + n, cfnet_tensor_data(t), (size_t)cfnet_tensor_numel(t) * 4);
            n += cfnet_tensor_numel(t);
        }
        for (int s = 0; s < cfnet_layer_state_count(l); s++) {
            cfnet_tensor *t = cfnet_layer_state(l, s);
            if (out) memcpy(out + n, cfnet_tensor_data(t), (size_t)cfnet_tensor_numel(t) * 4);
            n += cfnet_tensor_numel(t);
        }
    }
    return n;
}

/* ---- a group of threads that sum buffers (an in-process all-reduce) ---- */

typedef struct group {
    int size;
    pthread_barrier_t bar;
    void *bufs[MAXP];
    int kinds[MAXP];
    int64_t counts[MAXP];
    int calls, fail_at; /* fail_at: the call (counted on rank 0) at which every rank fails */
    int mismatch;
} group;

typedef struct member {
    group *g;
    int rank;
    const data *d;
    cfnet_network *net;
    float losses[STEPS];
    cfnet_status st;
    char msg[256];
} member;

static int skip_statistics; /* batch_statistics_sums_matter */
static int hook_alone, threads = 1; /* a_hook_alone_gives_the_bits_of_none */
static int poison_rank = -1; /* overflow_on_one_process_fails_every_process */

static cfnet_status group_sum(void *user, cfnet_sum_kind kind, void *data_, int64_t count)
{
    member *m = user;
    group *g = m->g;
    if (skip_statistics && kind == CFNET_SUM_STATISTICS) return CFNET_OK;
    g->bufs[m->rank] = data_;
    g->kinds[m->rank] = kind;
    g->counts[m->rank] = count;
    pthread_barrier_wait(&g->bar);
    for (int r = 1; r < g->size; r++)
        if (g->kinds[r] != g->kinds[0] || g->counts[r] != g->counts[0]) g->mismatch = 1;
    size_t elem = kind == CFNET_SUM_GRADIENTS ? sizeof(float) : sizeof(double);
    void *sum = malloc((size_t)count * elem);
    for (int64_t i = 0; i < count && !g->mismatch; i++) {
        if (kind == CFNET_SUM_GRADIENTS) {
            float s = 0;
            for (int r = 0; r < g->size; r++) s += ((float *)g->bufs[r])[i];
            ((float *)sum)[i] = s;
        } else {
            double s = 0;
            for (int r = 0; r < g->size; r++) s += ((double *)g->bufs[r])[i];
            ((double *)sum)[i] = s;
        }
    }
    int call = g->calls;
    pthread_barrier_wait(&g->bar); /* everyone has read every buffer */
    if (!g->mismatch) memcpy(data_, sum, (size_t)count * elem);
    free(sum);
    if (m->rank == 0) g->calls++;
    pthread_barrier_wait(&g->bar); /* calls is updated before anyone reads it again */
    if (g->mismatch) return CFNET_E_STATE;
    return call == g->fail_at ? CFNET_E_IO : CFNET_OK;
}

/* Global batch `step % 2`; this rank's contiguous share of it. */
static void share(int rank, int size, int64_t *off, int64_t *cnt)
{
    int64_t base = GLOBAL / size, extra = GLOBAL % size;
    *off = rank * base + (rank < extra ? rank : extra);
    *cnt = base + (rank < extra ? 1 : 0);
}

static cfnet_status member_step(member *m, int step, float *loss)
{
    int64_t off, cnt;
    share(m->rank, m->g->size, &off, &cnt);
    int64_t first = (step % 2) * GLOBAL + off;
    const int64_t shape[4] = {cnt, C_IN, S, S};
    cfnet_tensor *x = NULL;
    float *own = NULL, *src = (float *)m->d->x + first * C_IN * S * S;
    if (m->rank == poison_rank) { /* finite inputs whose forward overflows */
        own = malloc((size_t)(cnt * C_IN * S * S) * sizeof(float));
        for (int64_t i = 0; i < cnt * C_IN * S * S; i++) own[i] = src[i] < 0 ? -3e38f : 3e38f;
        src = own;
    }
    cfnet_status st = cfnet_tensor_wrap(src, 4, shape, &x);
    if (st == CFNET_OK) st = cfnet_network_set_batch_position(m->net, off, GLOBAL);
    if (st == CFNET_OK) st = cfnet_network_train_step(m->net, x, m->d->y + first, cnt, loss);
    cfnet_tensor_free(x);
    free(own);
    return st;
}

static void *member_main(void *arg)
{
    member *m = arg;
    m->st = CFNET_OK;
    for (int s = 0; s < STEPS && m->st == CFNET_OK; s++) m->st = member_step(m, s, &m->losses[s]);
    if (m->st != CFNET_OK) snprintf(m->msg, sizeof m->msg, "%s", cfnet_last_error());
    return NULL;
}

/* Trains `size` copies for STEPS steps; returns rank 0's network (the others are freed). */
static cfnet_network *train_group(int size, const data *d, int fail_at, member *out0)
{
    group g;
    memset(&g, 0, sizeof g);
    g.size = size;
    g.fail_at = fail_at;
    pthread_barrier_init(&g.bar, NULL, (unsigned)size);
    member m[MAXP];
    pthread_t th[MAXP];
    for (int r = 0; r < size; r++) {
        m[r] = (member){.g = &g, .rank = r, .d = d, .net = make_net(77)};
        CF_ASSERT_OK(cfnet_network_set_option(m[r].net, CFNET_OPTION_THREADS, threads));
        if (size > 1 || hook_alone) CF_ASSERT_OK(cfnet_network_set_sum_hook(m[r].net, group_sum, &m[r]));
    }
    for (int r = 0; r < size; r++)
        assert_int_equal(pthread_create(&th[r], NULL, member_main, &m[r]), 0);
    for (int r = 0; r < size; r++) assert_int_equal(pthread_join(th[r], NULL), 0);
    pthread_barrier_destroy(&g.bar);
    assert_int_equal(g.mismatch, 0);
    /* Every rank ends with the same weights, state and losses (unless the statistics were
     * deliberately left unsummed). */
    int64_t n = snapshot(m[0].net, NULL);
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
    snapshot(m[0].net, a);
    for (int r = 1; r < size; r++) {
        assert_int_equal(m[r].st, m[0].st);
        snapshot(m[r].net, b);
        if (!skip_statistics) {
            assert_memory_equal(a, b, (size_t)n * 4);
            assert_memory_equal(m[r].losses, m[0].losses, sizeof m[0].losses);
        }
        cfnet_network_free(m[r].net);
    }
    free(a);
    free(b);
    *out0 = m[0];
    return m[0].net;
}

static double compare_nets(const cfnet_network *x, const cfnet_network *y)
{
    int64_t n = snapshot(x, NULL);
    assert_int_equal(n, snapshot(y, NULL));
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
    snapshot(x, a);
    snapshot(y, b);
    double d = tu_max_rel_diff(a, b, n);
    free(a);
    free(b);
    return d;
}

static void two_and_three_processes_train_like_one(void **state)
{
    (void)state;
    data *d = malloc(sizeof *d);
    make_data(d);
    member m1, m2, m3;
    cfnet_network *one = train_group(1, d, -1, &m1);
    assert_int_equal(m1.st, CFNET_OK);
    cfnet_network *two = train_group(2, d, -1, &m2);
    assert_int_equal(m2.st, CFNET_OK);
    cfnet_network *three = train_group(3, d, -1, &m3); /* shares of 8: 8, 8, 8 */
    assert_int_equal(m3.st, CFNET_OK);
    double e2 = compare_nets(two, one), e3 = compare_nets(three, one);
    /* Only the order of float additions differs (the gradient sums, 1e-7 relative each). */
    assert_true(e2 < 1e-5);
    assert_true(e3 < 1e-5);
    for (int s = 0; s < STEPS; s++) {
        assert_true(fabsf(m2.losses[s] - m1.losses[s]) <= 1e-5f * fabsf(m1.losses[s]));
        assert_true(fabsf(m3.losses[s] - m1.losses[s]) <= 1e-5f * fabsf(m1.losses[s]));
    }
    /* The same network trained with its default (sequential) generators differs: the
     * comparison above is not vacuous. */
    cfnet_network *seq = make_net(77);
    for (int s = 0; s < STEPS; s++) {
        const int64_t shape[4] = {GLOBAL, C_IN, S, S};
        cfnet_tensor *x = NULL;
        CF_ASSERT_OK(cfnet_tensor_wrap(d->x + (s % 2) * GLOBAL * C_IN * S * S, 4, shape, &x));
        CF_ASSERT_OK(cfnet_network_train_step(seq, x, d->y + (s % 2) * GLOBAL, GLOBAL, NULL));
        cfnet_tensor_free(x);
    }
    assert_true(compare_nets(seq, one) > 1e-3);
    cfnet_network_free(seq);
    cfnet_network_free(one);
    cfnet_network_free(two);
    cfnet_network_free(three);
    free(d);
}

static void adam_agrees_except_biases_before_batch_norm(void **state)
{
    /* With Adam every parameter agrees too, except the biases of the two convolutions that
     * feed a batch norm: their exact gradient is zero, so Adam normalises rounding noise into
     * steps of random sign (and they cannot change the network's function). */
    (void)state;
    data *d = malloc(sizeof *d);
    make_data(d);
    use_adam = 1;
    member m1, m2;
    cfnet_network *one = train_group(1, d, -1, &m1);
    cfnet_network *two = train_group(2, d, -1, &m2);
    use_adam = 0;
    for (int i = 0; i < cfnet_network_layer_count(one); i++) {
        cfnet_layer *a = cfnet_network_layer(one, i), *b = cfnet_network_layer(two, i);
        for (int p = 0; p < cfnet_layer_param_count(a); p++) {
            if ((i == 0 || i == 5) && p == 1) continue; /* conic_conv bias, then batch_norm */
            cfnet_tensor *ta = cfnet_layer_param(a, p), *tb = cfnet_layer_param(b, p);
            assert_true(tu_max_rel_diff(cfnet_tensor_data(tb), cfnet_tensor_data(ta),
                                        cfnet_tensor_numel(ta)) < 1e-5);
        }
    }
    cfnet_network_free(one);
    cfnet_network_free(two);
    free(d);
}

static void a_hook_alone_gives_the_bits_of_none(void **state)
{
    /* One process with a hook (which then adds nothing) against none: batch norm runs its
     * passes over all channels with the hook in between, and without a hook a channel's passes
     * one after the other; both are the same operations on the same values, so the same bits,
     * on 1, 2 and 3 threads. */
    (void)state;
    data *d = malloc(sizeof *d);
    make_data(d);
    for (threads = 1; threads <= 3; threads++) {
        member m0, m1;
        cfnet_network *none = train_group(1, d, -1, &m0);
        hook_alone = 1;
        cfnet_network *hooked = train_group(1, d, -1, &m1);
        hook_alone = 0;
        assert_int_equal(m0.st, CFNET_OK);
        assert_int_equal(m1.st, CFNET_OK);
        int64_t n = snapshot(none, NULL);
        float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
        snapshot(none, a);
        snapshot(hooked, b);
        assert_memory_equal(a, b, (size_t)n * 4);
        assert_memory_equal(m0.losses, m1.losses, sizeof m0.losses);
        free(a);
        free(b);
        cfnet_network_free(none);
        cfnet_network_free(hooked);
    }
    threads = 1;
    free(d);
}

static void batch_statistics_sums_matter(void **state)
{
    /* A group whose hook adds the gradients but leaves the batch-norm sums local (each half
     * then normalises with wrong statistics) ends far from the single process: the
     * equivalence above rests on the synchronised statistics, not on luck. */
    (void)state;
    data *d = malloc(sizeof *d);
    make_data(d);
    member m1, m2;
    cfnet_network *one = train_group(1, d, -1, &m1);
    skip_statistics = 1;
    cfnet_network *two = train_group(2, d, -1, &m2);
    skip_statistics = 0;
    assert_int_equal(m2.st, CFNET_OK);
    assert_true(compare_nets(two, one) > 1e-3);
    cfnet_network_free(one);
    cfnet_network_free(two);
    free(d);
}

static void failing_hook_changes_nothing(void **state)
{
    (void)state;
    data *d = malloc(sizeof *d);
    make_data(d);
    /* Reference: a group that fails at once (the first statistics sum of step 0). Each call
     * of the first step in turn fails in a second run; every failure leaves parameters, state
     * and step count as before the step. Calls per step: 2 batch norms x 2 forward sums + 2
     * backward sums + 1 gradient sum = 7. */
    for (int fail_at = 0; fail_at < 7; fail_at++) {
        member m0;
        cfnet_network *net = train_group(2, d, fail_at, &m0);
        assert_int_equal(m0.st, CFNET_E_IO);
        assert_non_null(strstr(m0.msg, "sum hook"));
        assert_int_equal(cfnet_network_step_count(net), 0);
        cfnet_network *fresh = make_net(77);
        assert_true(compare_nets(net, fresh) == 0.0);
        cfnet_network_free(fresh);
        cfnet_network_free(net);
    }
    free(d);
}

typedef struct recorder {
    float *buf;
    int64_t count;
    int grad_calls, stat_calls;
} recorder;

static cfnet_status record_sum(void *user, cfnet_sum_kind kind, void *data_, int64_t count)
{
    recorder *r = user;
    if (kind == CFNET_SUM_GRADIENTS) {
        free(r->buf);
        r->buf = malloc((size_t)count * sizeof(float));
        memcpy(r->buf, data_, (size_t)count * sizeof(float));
        r->count = count;
        r->grad_calls++;
    } else {
        r->stat_calls++;
    }
    return CFNET_OK;
}

static void overflow_on_one_process_fails_every_process(void **state)
{
    /* Rank 1's inputs make its forward overflow. It must not leave the others waiting in a sum:
     * the non-finite values travel through the sums, and every process fails the first step
     * with CFNET_E_NUMERIC, each network as it was. */
    (void)state;
    data *d = malloc(sizeof *d);
    make_data(d);
    poison_rank = 1;
    member m0;
    cfnet_network *net = train_group(2, d, -1, &m0);
    poison_rank = -1;
    assert_int_equal(m0.st, CFNET_E_NUMERIC);
    assert_int_equal(cfnet_network_step_count(net), 0);
    cfnet_network *fresh = make_net(77);
    assert_true(compare_nets(net, fresh) == 0.0);
    cfnet_network_free(fresh);
    cfnet_network_free(net);
    free(d);
}

static void gradients_are_the_hook_buffer(void **state)
{
    /* A single process with a hook that only records: the hook sees every gradient in the
     * documented order plus the loss, and cfnet_network_gradients returns the same numbers. */
    (void)state;
    data *d = malloc(sizeof *d);
    make_data(d);
    cfnet_network *net = make_net(5);
    int64_t P = cfnet_network_param_count(net);
    recorder rec = {0};
    CF_ASSERT_OK(cfnet_network_set_sum_hook(net, record_sum, &rec));
    const int64_t shape[4] = {GLOBAL, C_IN, S, S};
    cfnet_tensor *x = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap(d->x, 4, shape, &x));
    float loss;
    CF_ASSERT_OK(cfnet_network_train_step(net, x, d->y, GLOBAL, &loss));
    assert_int_equal(rec.grad_calls, 1);
    assert_int_equal(rec.stat_calls, 2 * 2 + 2); /* 2 batch norms: 2 forward + 1 backward */
    assert_int_equal(rec.count, P + 1);
    assert_true(rec.buf[P] == loss);
    float *g = malloc((size_t)P * sizeof(float));
    CF_ASSERT_OK(cfnet_network_gradients(net, g, P));
    assert_memory_equal(g, rec.buf, (size_t)P * sizeof(float));
    /* the order: layer 0's weight first, then its bias, then layer 1's gamma */
    cfnet_layer *l0 = cfnet_network_layer(net, 0), *l1 = cfnet_network_layer(net, 1);
    int64_t w = cfnet_tensor_numel(cfnet_layer_grad(l0, 0)),
            b = cfnet_tensor_numel(cfnet_layer_grad(l0, 1));
    assert_memory_equal(rec.buf, cfnet_tensor_data(cfnet_layer_grad(l0, 0)), (size_t)w * 4);
    assert_memory_equal(rec.buf + w, cfnet_tensor_data(cfnet_layer_grad(l0, 1)), (size_t)b * 4);
    assert_memory_equal(rec.buf + w + b, cfnet_tensor_data(cfnet_layer_grad(l1, 0)),
                        (size_t)cfnet_tensor_numel(cfnet_layer_grad(l1, 0)) * 4);
    /* Removing the hook: no more calls. */
    CF_ASSERT_OK(cfnet_network_set_sum_hook(net, NULL, NULL));
    CF_ASSERT_OK(cfnet_network_train_step(net, x, d->y, GLOBAL, &loss));
    assert_int_equal(rec.grad_calls, 1);
    free(g);
    free(rec.buf);
    cfnet_tensor_free(x);
    cfnet_network_free(net);
    free(d);
}

static void batch_position_is_checked(void **state)
{
    (void)state;
    data *d = malloc(sizeof *d);
    make_data(d);
    cfnet_network *net = make_net(5);
    const int64_t shape[4] = {GLOBAL, C_IN, S, S};
    cfnet_tensor *x = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap(d->x, 4, shape, &x));
    /* a part of a global batch without a hook to sum the parts */
    CF_ASSERT_OK(cfnet_network_set_batch_position(net, 0, 2 * GLOBAL));
    CF_ASSERT_STATUS(cfnet_network_train_step(net, x, d->y, GLOBAL, NULL), CFNET_E_STATE);
    /* more samples than the global batch has from that offset */
    CF_ASSERT_OK(cfnet_network_set_batch_position(net, 1, GLOBAL));
    CF_ASSERT_STATUS(cfnet_network_train_step(net, x, d->y, GLOBAL, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(cfnet_network_step_count(net), 0);
    /* back to the default */
    CF_ASSERT_OK(cfnet_network_set_batch_position(net, 0, 0));
    CF_ASSERT_OK(cfnet_network_train_step(net, x, d->y, GLOBAL, NULL));
    assert_int_equal(cfnet_network_step_count(net), 1);
    cfnet_tensor_free(x);
    cfnet_network_free(net);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_and_three_processes_train_like_one),
        cmocka_unit_test(adam_agrees_except_biases_before_batch_norm),
        cmocka_unit_test(a_hook_alone_gives_the_bits_of_none),
        cmocka_unit_test(batch_statistics_sums_matter),
        cmocka_unit_test(failing_hook_changes_nothing),
        cmocka_unit_test(overflow_on_one_process_fails_every_process),
        cmocka_unit_test(gradients_are_the_hook_buffer),
        cmocka_unit_test(batch_position_is_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
