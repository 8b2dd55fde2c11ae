/* cfnet_network_set_interrupt: the callback is asked before each layer of infer, probabilities,
 * predict, evaluate and invariance, and between parts of the batch in per-sample layers; one
 * that never stops changes no bits (for every layer kind, part size and thread count); a stop
 * at any point gives CFNET_E_CANCELLED, writes no output and leaves the network as it was and
 * usable. */
#include "testutil.h"

#include "nn/network.h" /* interrupt_part: small parts of the batch, to test them */

#include <string.h>

#define S 16
#define N 37
#define K 5
/* The stop at every call runs all five calls once per stop point (quadratic in the number of
 * calls), on NS samples in parts of PART_S and batches of BATCH_S: the same sequence of calls
 * as N samples in parts of 9 and batches of 10 (5 parts of a per-sample layer, 2,2,2,2,2 as
 * 9,9,9,9,1; 4 batches, 3,3,3,1 in parts 2+1,2+1,2+1,1 as 10,10,10,7 in 9+1,9+1,9+1,7), which
 * the test checks, at a quarter of the work (on 37 samples it took 12 minutes under valgrind).
 * The fewest samples for that sequence. */
#define NS 10
#define PART_S 2
#define BATCH_S 3

typedef struct probe {
    int64_t calls;
    int64_t stop_at; /* stop at this call (0-based); -1: never */
    int64_t last_done, total;
    int monotone; /* done grew at every call */
    const cfnet_network *net; /* non-NULL: make a read-only and a modifying call inside */
    cfnet_status inner_read, inner_write, inner_set;
    int64_t (*seq)[2]; /* non-NULL: (done, total) of each call, up to seq_cap of them */
    int64_t seq_cap;
} probe;

static int ask(void *user, int64_t done, int64_t total)
{
    probe *p = user;
    if (p->calls > 0 && done < p->last_done) p->monotone = 0; /* parts repeat `done` */
    if (done < 0 || done >= total) p->monotone = 0;
    p->last_done = done;
    p->total = total;
    if (p->seq && p->calls < p->seq_cap) {
        p->seq[p->calls][0] = done;
        p->seq[p->calls][1] = total;
    }
    if (p->net) {
        size_t need = 0;
        char buf[16];
        p->inner_read = cfnet_network_summary(p->net, buf, sizeof buf, &need);
        if (p->inner_read == CFNET_E_LIMIT) p->inner_read = CFNET_OK; /* it was read */
        p->inner_write = cfnet_network_set_option((cfnet_network *)p->net,
                                                  CFNET_OPTION_LEARNING_RATE, 0.5);
        p->inner_set = cfnet_network_set_interrupt((cfnet_network *)p->net, NULL, NULL);
    }
    return p->calls++ == p->stop_at;
}

static void probe_reset(probe *p, int64_t stop_at)
{
    memset(p, 0, sizeof *p);
    p->stop_at = stop_at;
    p->last_done = -1;
    p->monotone = 1;
}

static cfnet_network *make_net(int threads)
{
    cfnet_network *net = NULL;
    /* cfnet: conic convolutions, a DFT projection and dense layers (OpenBLAS GEMMs whose bits
     * depend on the batch), ReLUs fused with the layers before them */
    CF_ASSERT_OK(cfnet_network_create_classifier(CFNET_FAMILY_CFNET, 1, S, K, 4, 3, &net));
    if (threads > 1) CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, threads));
    return net;
}

static cfnet_tensor *make_images_n(int64_t n)
{
    tu_rng r = {9};
    int64_t shape[4] = {n, 1, S, S};
    return tu_tensor(4, shape, &r);
}

static cfnet_tensor *make_images(void)
{
    tu_rng r = {9};
    int64_t shape[4] = {N, 1, S, S};
    return tu_tensor(4, shape, &r);
}

static int32_t labels[N];

/* Every output of the five calls (on up to N samples; the rest zero). */
typedef struct results {
    float out[N * K], probs[N * K];
    int32_t pred[N];
    float loss, acc;
    double inv;
    cfnet_status st[5];
} results;

/* The five calls on the n samples of x, evaluate in batches of `batch`. */
static void run_all_n(cfnet_network *net, const cfnet_tensor *x, int64_t n, int64_t batch,
                      results *r)
{
    memset(r, 0, sizeof *r);
    int64_t oshape[2] = {n, K};
    cfnet_tensor *out = tu_tensor(2, oshape, NULL), *probs = tu_tensor(2, oshape, NULL);
    for (int i = 0; i < n * K; i++) cfnet_tensor_data(out)[i] = cfnet_tensor_data(probs)[i] = 7;
    for (int i = 0; i < n; i++) r->pred[i] = -5;
    r->loss = r->acc = 7;
    r->inv = 7;
    r->st[0] = cfnet_network_infer(net, x, out);
    r->st[1] = cfnet_network_probabilities(net, x, probs);
    r->st[2] = cfnet_network_predict(net, x, r->pred, n);
    r->st[3] = cfnet_network_evaluate(net, x, labels, n, batch, &r->loss, &r->acc);
    r->st[4] = cfnet_network_invariance_ex(net, x, NULL, 0, CFNET_INVARIANCE_REFLECT, &r->inv);
    memcpy(r->out, cfnet_tensor_data(out), (size_t)(n * K) * sizeof(float));
    memcpy(r->probs, cfnet_tensor_data(probs), (size_t)(n * K) * sizeof(float));
    cfnet_tensor_free(out);
    cfnet_tensor_free(probs);
}

static void run_all(cfnet_network *net, const cfnet_tensor *x, results *r)
{
    run_all_n(net, x, N, 10, r);
}

static void assert_same_results(const results *a, const results *b)
{
    assert_memory_equal(a->out, b->out, sizeof a->out);
    assert_memory_equal(a->probs, b->probs, sizeof a->probs);
    assert_memory_equal(a->pred, b->pred, sizeof a->pred);
    assert_memory_equal(&a->loss, &b->loss, sizeof a->loss);
    assert_memory_equal(&a->acc, &b->acc, sizeof a->acc);
    assert_memory_equal(&a->inv, &b->inv, sizeof a->inv);
}

static void *saved(const cfnet_network *net, size_t *n)
{
    void *b = NULL;
    CF_ASSERT_OK(cfnet_network_save_buffer(net, CFNET_SAVE_OPTIMIZER, &b, n));
    return b;
}

static void a_callback_that_never_stops_changes_no_bits(void **state)
{
    (void)state;
    for (int i = 0; i < N; i++) labels[i] = i % K;
    cfnet_tensor *x = make_images();
    for (int threads = 1; threads <= 2; threads++) {
        cfnet_network *net = make_net(threads);
        results plain, asked;
        run_all(net, x, &plain);
        probe p;
        probe_reset(&p, -1);
        CF_ASSERT_OK(cfnet_network_set_interrupt(net, ask, &p));
        run_all(net, x, &asked);
        for (int i = 0; i < 5; i++) {
            CF_ASSERT_OK(plain.st[i]);
            CF_ASSERT_OK(asked.st[i]);
        }
        assert_same_results(&plain, &asked);
        assert_true(p.calls > 0);
        /* infer alone: asked before each layer run, done counting up to below total */
        int nl = cfnet_network_layer_count(net);
        int64_t oshape[2] = {N, K};
        cfnet_tensor *out = tu_tensor(2, oshape, NULL);
        probe_reset(&p, -1);
        CF_ASSERT_OK(cfnet_network_infer(net, x, out));
        assert_int_equal(p.total, nl);
        assert_true(p.monotone);
        assert_true(p.calls >= 2 && p.calls <= nl);
        assert_true(p.last_done < nl);
        /* invariance with reflections: 8 passes (x and the 7 other elements of D4) */
        double inv;
        probe_reset(&p, -1);
        CF_ASSERT_OK(cfnet_network_invariance_ex(net, x, NULL, 0, CFNET_INVARIANCE_REFLECT, &inv));
        assert_int_equal(p.total, 8 * nl);
        assert_int_equal(p.calls % 8, 0);
        /* evaluate: ceil(37 / 10) = 4 batches */
        float loss;
        probe_reset(&p, -1);
        CF_ASSERT_OK(cfnet_network_evaluate(net, x, labels, N, 10, &loss, NULL));
        assert_int_equal(p.total % 4, 0);
        assert_int_equal(p.calls % 4, 0);
        /* removed: no more calls */
        CF_ASSERT_OK(cfnet_network_set_interrupt(net, NULL, &p));
        probe_reset(&p, 0);
        CF_ASSERT_OK(cfnet_network_infer(net, x, out));
        assert_int_equal(p.calls, 0);
        cfnet_tensor_free(out);
        cfnet_network_free(net);
    }
    cfnet_tensor_free(x);
}

/* The (done, total) of every call of the five calls on n samples, parts of `part`. */
static int64_t call_sequence(cfnet_network *net, const cfnet_tensor *x, int64_t n, int64_t part,
                             int64_t batch, int64_t (*seq)[2], int64_t cap)
{
    probe p;
    probe_reset(&p, -1);
    p.seq = seq;
    p.seq_cap = cap;
    net->interrupt_part = part;
    CF_ASSERT_OK(cfnet_network_set_interrupt(net, ask, &p));
    results r;
    run_all_n(net, x, n, batch, &r);
    for (int i = 0; i < 5; i++) CF_ASSERT_OK(r.st[i]);
    CF_ASSERT_OK(cfnet_network_set_interrupt(net, NULL, NULL));
    net->interrupt_part = 0;
    assert_true(p.calls <= cap);
    return p.calls;
}

static void a_stop_at_any_point_writes_nothing_and_keeps_the_network(void **state)
{
    (void)state;
    for (int i = 0; i < N; i++) labels[i] = i % K;
    cfnet_network *net = make_net(1);
    /* NS samples in parts of PART_S stop at the same points as N in parts of 9 (stops inside
     * layers too), calls of every layer of every pass of the five calls, every part. */
    enum { CAP = 4096 };
    static int64_t seq_n[CAP][2], seq_ns[CAP][2];
    cfnet_tensor *xn = make_images(), *x = make_images_n(NS);
    int64_t calls_n = call_sequence(net, xn, N, 9, 10, seq_n, CAP);
    int64_t calls_ns = call_sequence(net, x, NS, PART_S, BATCH_S, seq_ns, CAP);
    assert_int_equal(calls_n, calls_ns);
    assert_memory_equal(seq_n, seq_ns, (size_t)calls_n * sizeof *seq_n);
    cfnet_tensor_free(xn);
    net->interrupt_part = PART_S;
    /* some training state, so that "unchanged" covers the optimiser and the step count */
    CF_ASSERT_OK(cfnet_network_train_step(net, x, labels, NS, NULL));
    results ref;
    run_all_n(net, x, NS, BATCH_S, &ref);
    size_t n0;
    void *before = saved(net, &n0);
    probe p;
    probe_reset(&p, -1);
    CF_ASSERT_OK(cfnet_network_set_interrupt(net, ask, &p));
    results all;
    run_all_n(net, x, NS, BATCH_S, &all);
    int64_t total_calls = p.calls;
    assert_int_equal(total_calls, calls_ns);
    assert_true(total_calls > 10);
    /* Stop at every call in turn: exactly the call that was running then fails. */
    for (int64_t k = 0; k < total_calls; k++) {
        probe_reset(&p, k);
        results r;
        run_all_n(net, x, NS, BATCH_S, &r);
        int cancelled = 0;
        for (int i = 0; i < 5; i++) {
            if (r.st[i] == CFNET_E_CANCELLED) {
                cancelled++;
                assert_non_null(strstr(cfnet_last_error(), "stopped by the interrupt callback"));
            } else {
                CF_ASSERT_OK(r.st[i]);
            }
        }
        assert_int_equal(cancelled, 1);
        const float sentinel = 7;
        for (int i = 0; i < NS * K; i++) {
            if (r.st[0]) assert_memory_equal(&r.out[i], &sentinel, sizeof sentinel);
            else assert_memory_equal(&r.out[i], &ref.out[i], sizeof(float));
            if (r.st[1]) assert_memory_equal(&r.probs[i], &sentinel, sizeof sentinel);
            else assert_memory_equal(&r.probs[i], &ref.probs[i], sizeof(float));
        }
        for (int i = 0; i < NS; i++) assert_int_equal(r.pred[i], r.st[2] ? -5 : ref.pred[i]);
        if (r.st[3]) {
            assert_true(r.loss == 7 && r.acc == 7);
        } else {
            assert_memory_equal(&r.loss, &ref.loss, sizeof r.loss);
            assert_memory_equal(&r.acc, &ref.acc, sizeof r.acc);
        }
        if (r.st[4]) assert_true(r.inv == 7);
        else assert_memory_equal(&r.inv, &ref.inv, sizeof r.inv);
        size_t n1;
        void *after = saved(net, &n1);
        assert_int_equal(n0, n1);
        assert_memory_equal(before, after, n0);
        cfnet_free(after);
    }
    /* The message says who stopped and where. */
    probe_reset(&p, 1);
    int64_t oshape[2] = {NS, K};
    cfnet_tensor *out = tu_tensor(2, oshape, NULL);
    CF_ASSERT_STATUS(cfnet_network_infer(net, x, out), CFNET_E_CANCELLED);
    assert_non_null(strstr(cfnet_last_error(), "network_infer: stopped by the interrupt callback"));
    /* Still usable and trainable afterwards: the same as a network that never stopped. */
    probe_reset(&p, -1);
    results again;
    run_all_n(net, x, NS, BATCH_S, &again);
    assert_same_results(&ref, &again);
    CF_ASSERT_OK(cfnet_network_train_step(net, x, labels, NS, NULL));
    cfnet_tensor_free(out);
    cfnet_free(before);
    cfnet_network_free(net);
    cfnet_tensor_free(x);
}

/* Per-sample layers run on parts of the batch between checks: the bits of every family's
 * layers (every kind with per_sample set: the convolutions, p4 and p4m, conic mirror, pooling,
 * group pooling, batch norm, ReLU, dropout, softmax) are those of one run over the batch, for
 * parts of 1, 3 and 16 samples on 1 to 3 threads. */
static void parts_of_the_batch_change_no_bits(void **state)
{
    (void)state;
    static const int families[] = {CFNET_FAMILY_CFNET, CFNET_FAMILY_CNET, CFNET_FAMILY_GCNN,
                                   CFNET_FAMILY_GCNN_DFT, CFNET_FAMILY_CNN,
                                   CFNET_FAMILY_GCNN_P4M};
    static const int64_t parts[] = {1, 3, 16};
    cfnet_tensor *x = make_images();
    int64_t oshape[2] = {N, K};
    cfnet_tensor *ref = tu_tensor(2, oshape, NULL), *got = tu_tensor(2, oshape, NULL);
    for (size_t f = 0; f < sizeof families / sizeof *families; f++) {
        for (int threads = 1; threads <= 3; threads++) {
            cfnet_network *net = NULL;
            CF_ASSERT_OK(cfnet_network_create_classifier(families[f], 1, S, K, 4, 5, &net));
            if (threads > 1)
                CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, threads));
            CF_ASSERT_OK(cfnet_network_infer(net, x, ref));
            for (size_t k = 0; k < sizeof parts / sizeof *parts; k++) {
                probe p;
                probe_reset(&p, -1);
                net->interrupt_part = parts[k];
                CF_ASSERT_OK(cfnet_network_set_interrupt(net, ask, &p));
                CF_ASSERT_OK(cfnet_network_infer(net, x, got));
                assert_memory_equal(cfnet_tensor_data(ref), cfnet_tensor_data(got),
                                    N * K * sizeof(float));
                assert_true(p.monotone);
                assert_true(p.calls > cfnet_network_layer_count(net)); /* parts were run */
                CF_ASSERT_OK(cfnet_network_set_interrupt(net, NULL, NULL));
            }
            cfnet_network_free(net);
        }
    }
    /* The kinds the presets leave out. */
    for (int threads = 1; threads <= 2; threads++) {
        cfnet_network *net = NULL;
        CF_ASSERT_OK(cfnet_network_create(1, S, S, 7, &net));
        cfnet_layer *l = NULL;
        CF_ASSERT_OK(cfnet_layer_conic_conv_mirror_create(3, 3, 2, CFNET_PADDING_SAME,
                                                      CFNET_INTERP_BILINEAR, &l));
        CF_ASSERT_OK(cfnet_network_append(net, l));
        CF_ASSERT_OK(cfnet_layer_relu_create(&l));
        CF_ASSERT_OK(cfnet_network_append(net, l));
        CF_ASSERT_OK(cfnet_layer_dropout_create(0.5f, &l));
        CF_ASSERT_OK(cfnet_network_append(net, l));
        CF_ASSERT_OK(cfnet_layer_pool_create(CFNET_POOL_MEAN, 0, 0, &l));
        CF_ASSERT_OK(cfnet_network_append(net, l));
        CF_ASSERT_OK(cfnet_layer_dense_create(K, &l));
        CF_ASSERT_OK(cfnet_network_append(net, l));
        CF_ASSERT_OK(cfnet_layer_softmax_create(&l));
        CF_ASSERT_OK(cfnet_network_append(net, l));
        if (threads > 1) CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, 2));
        CF_ASSERT_OK(cfnet_network_infer(net, x, ref));
        probe p;
        probe_reset(&p, -1);
        net->interrupt_part = 2;
        CF_ASSERT_OK(cfnet_network_set_interrupt(net, ask, &p));
        CF_ASSERT_OK(cfnet_network_infer(net, x, got));
        assert_memory_equal(cfnet_tensor_data(ref), cfnet_tensor_data(got), N * K * sizeof(float));
        assert_true(p.calls > 4 * (N / 2));
        cfnet_network_free(net);
    }
    cfnet_tensor_free(ref);
    cfnet_tensor_free(got);
    cfnet_tensor_free(x);
}

static void the_callback_may_read_but_not_modify_the_network(void **state)
{
    (void)state;
    cfnet_tensor *x = make_images();
    cfnet_network *net = make_net(1);
    probe p;
    probe_reset(&p, -1);
    p.net = net;
    CF_ASSERT_OK(cfnet_network_set_interrupt(net, ask, &p));
    int32_t pred[N];
    CF_ASSERT_OK(cfnet_network_predict(net, x, pred, N));
    assert_true(p.calls > 0);
    CF_ASSERT_OK(p.inner_read);
    /* (the messages are gone: the successful predict cleared them) */
    assert_int_equal(p.inner_write, CFNET_E_STATE);
    assert_int_equal(p.inner_set, CFNET_E_STATE);
    double lr;
    CF_ASSERT_OK(cfnet_network_get_option(net, CFNET_OPTION_LEARNING_RATE, &lr));
    assert_true(lr != 0.5);
    cfnet_network_free(net);
    cfnet_tensor_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_callback_that_never_stops_changes_no_bits),
        cmocka_unit_test(a_stop_at_any_point_writes_nothing_and_keeps_the_network),
        cmocka_unit_test(parts_of_the_batch_change_no_bits),
        cmocka_unit_test(the_callback_may_read_but_not_modify_the_network),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
