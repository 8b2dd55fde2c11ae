/* Threads: the per-network thread count changes results only by rounding and keeps runs
 * reproducible; distinct networks train concurrently; one network serves inference to several
 * threads at once, also with worker threads of its own, with the bits of each call alone, and
 * threads prepare images (cfnet_network_prepare_image) on it meanwhile, with the same bits;
 * the memory usage read while two threads infer is the usage after them. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#define APPEND(net, expr)                              \
    do {                                               \
        cfnet_layer *l_ = NULL;                        \
        CF_ASSERT_OK(expr);                            \
        CF_ASSERT_OK(cfnet_network_append((net), l_)); \
    } while (0)

enum { S = 14, K = 4, NB = 12 };

static cfnet_network *make_net(uint64_t seed)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S, S, seed, &net));
    APPEND(net, cfnet_layer_conic_conv_create(6, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l_));
    APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
    APPEND(net, cfnet_layer_p4_lift_create(3, 3, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_group_pool_create(CFNET_POOL_MAX, &l_));
    APPEND(net, cfnet_layer_conv2d_create(5, 3, 1, CFNET_PADDING_VALID, &l_));
    APPEND(net, cfnet_layer_dense_create(K, &l_));
    return net;
}

static void fill_batch(float *x, int32_t *y, int n, uint64_t seed)
{
    tu_rng r = {seed};
    tu_fill_normal(x, (int64_t)n * S * S, &r);
    for (int i = 0; i < n; i++) y[i] = (int32_t)(tu_uniform(&r) * K);
}

static void two_threads_match_one_thread_to_rounding(void **state)
{
    (void)state;
    float x[NB * S * S];
    int32_t y[NB];
    fill_batch(x, y, NB, 1);
    int64_t xs[] = {NB, 1, S, S}, os[] = {NB, K};
    cfnet_tensor *xt = NULL, *o1 = tu_tensor(2, os, NULL), *o2 = tu_tensor(2, os, NULL);
    CF_ASSERT_OK(cfnet_tensor_wrap(x, 4, xs, &xt));
    cfnet_network *a = make_net(3), *b = make_net(3);
    CF_ASSERT_OK(cfnet_network_set_option(b, CFNET_OPTION_THREADS, 2));
    CF_ASSERT_OK(cfnet_network_infer(a, xt, o1));
    CF_ASSERT_OK(cfnet_network_infer(b, xt, o2));
    assert_true(tu_max_rel_diff(cfnet_tensor_data(o2), cfnet_tensor_data(o1), NB * K) < 1e-5);
    float la[4], lb[4];
    for (int t = 0; t < 4; t++) {
        CF_ASSERT_OK(cfnet_network_train_step(a, xt, y, NB, &la[t]));
        CF_ASSERT_OK(cfnet_network_train_step(b, xt, y, NB, &lb[t]));
        assert_float_equal(la[t], lb[t], 1e-3 * fabs(la[t]) + 1e-5);
    }
    /* Two threads, same seed, same calls: bit-identical. */
    cfnet_network *c = make_net(3);
    CF_ASSERT_OK(cfnet_network_set_option(c, CFNET_OPTION_THREADS, 2));
    for (int t = 0; t < 4; t++) {
        float lc;
        CF_ASSERT_OK(cfnet_network_train_step(c, xt, y, NB, &lc));
        assert_memory_equal(&lc, &lb[t], sizeof lc);
    }
    cfnet_network_free(a);
    cfnet_network_free(b);
    cfnet_network_free(c);
    cfnet_tensor_free(xt);
    cfnet_tensor_free(o1);
    cfnet_tensor_free(o2);
}

typedef struct job {
    cfnet_network *net;  /* trained by this thread, or shared read-only */
    const cfnet_tensor *x;
    const int32_t *y;
    float losses[3];
    float out[NB * K];
    cfnet_status st;
} job;

static void *train_job(void *arg)
{
    job *j = arg;
    j->st = CFNET_OK;
    for (int t = 0; t < 3 && j->st == CFNET_OK; t++)
        j->st = cfnet_network_train_step(j->net, j->x, j->y, NB, &j->losses[t]);
    return NULL;
}

static void *infer_job(void *arg)
{
    job *j = arg;
    int64_t os[] = {NB, K};
    cfnet_tensor *o = NULL;
    j->st = cfnet_tensor_wrap(j->out, 2, os, &o);
    for (int t = 0; t < 5 && j->st == CFNET_OK; t++) j->st = cfnet_network_infer(j->net, j->x, o);
    cfnet_tensor_free(o);
    return NULL;
}

static void networks_train_and_serve_concurrently(void **state)
{
    (void)state;
    float x[NB * S * S];
    int32_t y[NB];
    fill_batch(x, y, NB, 2);
    int64_t xs[] = {NB, 1, S, S}, os[] = {NB, K};
    cfnet_tensor *xt = NULL, *ref = tu_tensor(2, os, NULL);
    CF_ASSERT_OK(cfnet_tensor_wrap(x, 4, xs, &xt));

    /* Serial references. */
    float serial[2][3];
    for (int k = 0; k < 2; k++) {
        cfnet_network *n = make_net(10 + (uint64_t)k);
        for (int t = 0; t < 3; t++) CF_ASSERT_OK(cfnet_network_train_step(n, xt, y, NB, &serial[k][t]));
        cfnet_network_free(n);
    }
    /* The shared network is a loaded one, as a server would have it. */
    cfnet_network *orig = make_net(20), *shared = NULL;
    for (int t = 0; t < 2; t++) CF_ASSERT_OK(cfnet_network_train_step(orig, xt, y, NB, NULL));
    void *buf = NULL;
    size_t size = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(orig, 0, &buf, &size));
    CF_ASSERT_OK(cfnet_network_load_buffer(buf, size, &shared));
    cfnet_free(buf);
    cfnet_network_free(orig);
    CF_ASSERT_OK(cfnet_network_infer(shared, xt, ref));

    job jobs[5];
    pthread_t tid[5];
    for (int k = 0; k < 5; k++) {
        memset(&jobs[k], 0, sizeof jobs[k]);
        jobs[k].x = xt;
        jobs[k].y = y;
        jobs[k].net = k < 2 ? make_net(10 + (uint64_t)k) : shared;
    }
    for (int k = 0; k < 5; k++)
        assert_int_equal(pthread_create(&tid[k], NULL, k < 2 ? train_job : infer_job, &jobs[k]), 0);
    for (int k = 0; k < 5; k++) pthread_join(tid[k], NULL);
    for (int k = 0; k < 5; k++) CF_ASSERT_OK(jobs[k].st);
    for (int k = 0; k < 2; k++) {
        assert_memory_equal(jobs[k].losses, serial[k], sizeof serial[k]);
        cfnet_network_free(jobs[k].net);
    }
    for (int k = 2; k < 5; k++)
        assert_memory_equal(jobs[k].out, cfnet_tensor_data(ref), sizeof jobs[k].out);
    cfnet_network_free(shared);
    cfnet_tensor_free(xt);
    cfnet_tensor_free(ref);
}

/* ---- memory usage while several threads infer ---- */

/* Two inference calls meet inside the network (in the interrupt callback, after its first layer)
 * and wait there until the test has read the usage. Every wait is bounded (MEET_SECONDS): a
 * call that fails before the callback, or never reaches it, fails the test instead of hanging
 * it. */
enum { MEET_SECONDS = 60 };

typedef struct meeting {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived, finished; /* this round: calls in the callback, calls returned */
    bool released;         /* the test has read the usage: the calls go on */
    atomic_int armed;
} meeting;

/* Waits on m->cv (m->mu held) until the deadline; false when it has passed. */
static bool meeting_wait(meeting *m, const struct timespec *deadline)
{
    return pthread_cond_timedwait(&m->cv, &m->mu, deadline) == 0;
}

static struct timespec meeting_deadline(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += MEET_SECONDS;
    return t;
}

static int meet_inside(void *user, int64_t done, int64_t total)
{
    (void)total;
    meeting *m = user;
    if (done == 1 && atomic_load(&m->armed)) {
        struct timespec t = meeting_deadline();
        pthread_mutex_lock(&m->mu);
        m->arrived++;
        pthread_cond_broadcast(&m->cv);
        while (!m->released && meeting_wait(m, &t)) {
        }
        pthread_mutex_unlock(&m->mu);
    }
    return 0;
}

typedef struct one_infer {
    cfnet_network *net;
    const cfnet_tensor *x;
    cfnet_status st;
    meeting *m; /* told when the call returns (NULL: nobody) */
    float out[NB * K];
} one_infer;

static void *one_infer_job(void *arg)
{
    one_infer *j = arg;
    int64_t os[] = {NB, K};
    cfnet_tensor *o = NULL;
    j->st = cfnet_tensor_wrap(j->out, 2, os, &o);
    if (j->st == CFNET_OK) j->st = cfnet_network_infer(j->net, j->x, o);
    cfnet_tensor_free(o);
    if (j->m) {
        pthread_mutex_lock(&j->m->mu);
        j->m->finished++;
        pthread_cond_broadcast(&j->m->cv);
        pthread_mutex_unlock(&j->m->mu);
    }
    return NULL;
}

/* What cfnet.h says a caller sees: each concurrent inference call has a buffer set of its own,
 * counted while the call uses it as after, so the usage read while two calls run equals the
 * usage after they return, and the live bytes; two concurrent calls leave one set more than one
 * call alone (the growth is what the hooks saw), kept for later calls: more rounds of two
 * concurrent calls and calls one at a time leave the usage where it is. */
static void usage_during_concurrent_inference_is_the_usage_after(void **state)
{
    (void)state;
    float x[NB * S * S];
    int32_t y[NB];
    fill_batch(x, y, NB, 4);
    int64_t xs[] = {NB, 1, S, S};
    cfnet_tensor *xt = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap(x, 4, xs, &xt));
    cfnet_network *orig = make_net(30), *net = NULL;
    void *buf = NULL;
    size_t size = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(orig, 0, &buf, &size));
    cfnet_network_free(orig);
    tu_live_bytes c;
    atomic_init(&c.live, 0);
    atomic_init(&c.blocks, 0);
    cfnet_context *ctx = NULL;
    CF_ASSERT_OK(cfnet_context_create(&ctx));
    CF_ASSERT_OK(cfnet_context_set_allocator(ctx, tu_live_alloc, tu_live_free, &c));
    CF_ASSERT_OK(cfnet_network_load_buffer_in(ctx, buf, size, &net));
    cfnet_free(buf);
    meeting m;
    memset(&m, 0, sizeof m);
    assert_int_equal(pthread_mutex_init(&m.mu, NULL), 0);
    assert_int_equal(pthread_cond_init(&m.cv, NULL), 0);
    atomic_init(&m.armed, 0);
    CF_ASSERT_OK(cfnet_network_set_interrupt(net, meet_inside, &m));

    one_infer jobs[2];
    memset(jobs, 0, sizeof jobs);
    jobs[0].net = jobs[1].net = net;
    jobs[0].x = jobs[1].x = xt;
    one_infer_job(&jobs[0]); /* the layers' caches and one set */
    CF_ASSERT_OK(jobs[0].st);
    size_t one = cfnet_network_memory_usage(net);
    long live_one = atomic_load(&c.live), blocks_one = atomic_load(&c.blocks);
    size_t two = 0;
    for (int round = 0; round < 3; round++) {
        pthread_t tid[2];
        m.arrived = m.finished = 0;
        m.released = false;
        atomic_store(&m.armed, 1);
        for (int k = 0; k < 2; k++) {
            jobs[k].m = &m;
            assert_int_equal(pthread_create(&tid[k], NULL, one_infer_job, &jobs[k]), 0);
        }
        /* Until both calls are in the callback (they hold a set each), one has returned
         * without (it failed before) or the deadline has passed. */
        struct timespec t = meeting_deadline();
        pthread_mutex_lock(&m.mu);
        while (m.arrived < 2 && m.finished == 0 && meeting_wait(&m, &t)) {
        }
        int met = m.arrived;
        pthread_mutex_unlock(&m.mu);
        size_t during = cfnet_network_memory_usage(net);
        long live_during = atomic_load(&c.live);
        pthread_mutex_lock(&m.mu);
        m.released = true;
        pthread_cond_broadcast(&m.cv);
        pthread_mutex_unlock(&m.mu);
        for (int k = 0; k < 2; k++) {
            pthread_join(tid[k], NULL);
            jobs[k].m = NULL;
        }
        atomic_store(&m.armed, 0);
        if (met < 2)
            fail_msg("round %d: %d of the 2 inference calls in the interrupt callback when one "
                     "returned or %d s passed (statuses %s, %s)",
                     round, met, (int)MEET_SECONDS, cfnet_status_string(jobs[0].st),
                     cfnet_status_string(jobs[1].st));
        for (int k = 0; k < 2; k++) CF_ASSERT_OK(jobs[k].st);
        size_t after = cfnet_network_memory_usage(net);
        if (during != after || live_during != atomic_load(&c.live))
            fail_msg("round %d: usage %zu while two calls ran (live %ld), %zu after (live %ld)",
                     round, during, live_during, after, atomic_load(&c.live));
        if (round == 0) {
            long grew = atomic_load(&c.live) - live_one,
                 blocks = atomic_load(&c.blocks) - blocks_one;
            if (after <= one || (long)(after - one) > grew ||
                grew - (long)(after - one) > blocks * 128)
                fail_msg("two concurrent calls: usage %zu -> %zu, the hooks saw %ld bytes in %ld "
                         "blocks more", one, after, grew, blocks);
            two = after;
        }
        assert_int_equal(after, two);
    }
    for (int t = 0; t < 5; t++) {
        one_infer_job(&jobs[0]);
        CF_ASSERT_OK(jobs[0].st);
    }
    assert_int_equal(cfnet_network_memory_usage(net), two);
    assert_memory_equal(jobs[0].out, jobs[1].out, sizeof jobs[0].out);
    pthread_cond_destroy(&m.cv);
    pthread_mutex_destroy(&m.mu);
    cfnet_network_free(net);
    assert_int_equal(atomic_load(&c.live), 0);
    cfnet_context_free(ctx);
    cfnet_tensor_free(xt);
}

/* ---- training and inference on the same network: detected, never a race ---- */

typedef struct probe {
    cfnet_network *net;
    const cfnet_tensor *x;
    const int32_t *y;
    cfnet_status other_thread_infer, other_thread_train, own_thread_infer, own_thread_train;
    int calls;
    /* the other calls that modify the network (refused in both threads), and those that read
     * what they modify (refused in the other thread only) */
    cfnet_status other_modify[4], own_modify[4], other_read[3], own_read[3];
    char other_train_msg[512], own_train_msg[512]; /* cfnet_last_error() of the train steps */
} probe;

static void probe_modify_and_read(cfnet_network *net, cfnet_status *modify, cfnet_status *read)
{
    const char *key = NULL, *value = NULL;
    float g[1];
    modify[0] = cfnet_network_set_metadata(net, "k", "v");
    modify[1] = cfnet_network_init_normal(net, 0.1, 1);
    modify[2] = cfnet_network_set_sum_hook(net, NULL, NULL);
    modify[3] = cfnet_network_set_batch_position(net, 0, 0);
    read[0] = cfnet_network_get_metadata(net, "k", &value);
    read[1] = cfnet_network_metadata_at(net, 0, &key, &value);
    read[2] = cfnet_network_gradients(net, g, 0);
}

static void *probe_infer(void *arg)
{
    probe *p = arg;
    int64_t os[] = {NB, K};
    cfnet_tensor *o = NULL;
    if (cfnet_tensor_create(2, os, &o) != CFNET_OK) return NULL;
    p->other_thread_infer = cfnet_network_infer(p->net, p->x, o);
    cfnet_tensor_free(o);
    p->other_thread_train = cfnet_network_train_step(p->net, p->x, p->y, NB, NULL);
    snprintf(p->other_train_msg, sizeof p->other_train_msg, "%s", cfnet_last_error());
    probe_modify_and_read(p->net, p->other_modify, p->other_read);
    return NULL;
}

/* Runs inside train_epoch, while the epoch holds the network: another thread must be refused
 * (CFNET_E_STATE), this thread may read but not modify. */
static int probe_progress(void *user, int64_t step, int64_t steps, double loss, double acc)
{
    (void)step, (void)steps, (void)loss, (void)acc;
    probe *p = user;
    if (p->calls++) return 0;
    pthread_t t;
    if (pthread_create(&t, NULL, probe_infer, p) == 0) pthread_join(t, NULL);
    int64_t os[] = {NB, K};
    cfnet_tensor *o = NULL;
    if (cfnet_tensor_create(2, os, &o) != CFNET_OK) return 1;
    p->own_thread_infer = cfnet_network_infer(p->net, p->x, o);
    cfnet_tensor_free(o);
    p->own_thread_train = cfnet_network_train_step(p->net, p->x, p->y, NB, NULL);
    snprintf(p->own_train_msg, sizeof p->own_train_msg, "%s", cfnet_last_error());
    probe_modify_and_read(p->net, p->own_modify, p->own_read);
    return 0;
}

static void training_while_another_thread_infers_is_refused(void **state)
{
    (void)state;
    float x[NB * S * S];
    int32_t y[NB];
    fill_batch(x, y, NB, 4);
    int64_t xs[] = {NB, 1, S, S};
    cfnet_tensor *xt = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap(x, 4, xs, &xt));
    cfnet_network *net = make_net(30);
    probe p = {net, xt, y, CFNET_OK, CFNET_OK, CFNET_E_INTERNAL, CFNET_OK, 0, {0}, {0}, {0}, {0},
               "", ""};
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "k", "before"));
    double loss, acc;
    CF_ASSERT_OK(cfnet_network_train_epoch(net, xt, y, NB / 2, NULL, 0, probe_progress, &p, &loss,
                                           &acc));
    assert_int_equal(p.other_thread_infer, CFNET_E_STATE);
    assert_int_equal(p.other_thread_train, CFNET_E_STATE);
    assert_int_equal(p.own_thread_infer, CFNET_OK);
    assert_int_equal(p.own_thread_train, CFNET_E_STATE);
    /* The messages tell the two refusals apart: the callback's own thread is not "another". */
    assert_non_null(strstr(p.other_train_msg, "in use by another thread"));
    assert_non_null(strstr(p.own_train_msg, "from inside a call that is training this network"));
    assert_null(strstr(p.own_train_msg, "another thread"));
    for (int i = 0; i < 4; i++) {
        assert_int_equal(p.other_modify[i], CFNET_E_STATE);
        assert_int_equal(p.own_modify[i], CFNET_E_STATE);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(p.other_read[i], CFNET_E_STATE);
        assert_int_equal(p.own_read[i], CFNET_E_SHAPE_MISMATCH * (i == 2)); /* count 0 */
    }
    const char *value = NULL;
    CF_ASSERT_OK(cfnet_network_get_metadata(net, "k", &value));
    assert_string_equal(value, "before");
    assert_int_equal(cfnet_network_step_count(net), 2);
    /* Free again afterwards. */
    CF_ASSERT_OK(cfnet_network_train_step(net, xt, y, NB, NULL));
    cfnet_network_free(net);
    cfnet_tensor_free(xt);
}

typedef struct racer {
    cfnet_network *net;
    const cfnet_tensor *x;
    const int32_t *y;
    bool train;
    int ok, refused, other;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    int64_t os[] = {NB, K};
    cfnet_tensor *o = NULL;
    if (cfnet_tensor_create(2, os, &o) != CFNET_OK) return NULL;
    for (int i = 0; i < 6; i++) {
        cfnet_status st = r->train ? cfnet_network_train_step(r->net, r->x, r->y, NB, NULL)
                                   : cfnet_network_infer(r->net, r->x, o);
        if (st == CFNET_OK) r->ok++;
        else if (st == CFNET_E_STATE) r->refused++;
        else r->other++;
    }
    cfnet_tensor_free(o);
    return NULL;
}

/* Free-running: every call either runs or is refused with CFNET_E_STATE (ThreadSanitizer, in
 * `make check-threads`, checks that nothing races); concurrent inference alone is never
 * refused. */
static void concurrent_calls_run_or_are_refused_and_readers_share(void **state)
{
    (void)state;
    float x[NB * S * S];
    int32_t y[NB];
    fill_batch(x, y, NB, 5);
    int64_t xs[] = {NB, 1, S, S};
    cfnet_tensor *xt = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap(x, 4, xs, &xt));
    cfnet_network *net = make_net(31);
    racer r[4];
    pthread_t tid[4];
    for (int mixed = 0; mixed <= 1; mixed++) {
        for (int k = 0; k < 4; k++) {
            r[k] = (racer){net, xt, y, mixed && k == 0, 0, 0, 0};
            assert_int_equal(pthread_create(&tid[k], NULL, race, &r[k]), 0);
        }
        for (int k = 0; k < 4; k++) pthread_join(tid[k], NULL);
        for (int k = 0; k < 4; k++) {
            assert_int_equal(r[k].other, 0);
            assert_int_equal(r[k].ok + r[k].refused, 6);
            if (!mixed) assert_int_equal(r[k].refused, 0); /* readers only: all run */
        }
    }
    cfnet_network_free(net);
    cfnet_tensor_free(xt);
}

/* A read-only call that reads the network's metadata through the public accessors (the ONNX
 * export) is one reader: a modifying call tried meanwhile in another thread, itself refused,
 * must not make the export fail halfway ("in use by another thread" from the nested
 * cfnet_network_metadata_at, taken while the refused writer held the flag for an instant). */
typedef struct refused_writer {
    cfnet_network *net;
    atomic_int stop;
    long refused, other;
} refused_writer;

static void *keep_trying_to_modify(void *arg)
{
    refused_writer *w = arg;
    while (!atomic_load(&w->stop)) {
        cfnet_status st = cfnet_network_set_option(w->net, CFNET_OPTION_LEARNING_RATE, 1e-3);
        if (st == CFNET_E_STATE) w->refused++;
        else if (st != CFNET_OK) w->other++;
    }
    return NULL;
}

static void export_is_not_refused_by_a_refused_writer(void **state)
{
    (void)state;
    cfnet_network *net = make_net(32);
    for (int i = 0; i < 200; i++) {
        char key[32];
        snprintf(key, sizeof key, "key%03d", i);
        CF_ASSERT_OK(cfnet_network_set_metadata(net, key, "value"));
    }
    refused_writer w = {.net = net};
    atomic_init(&w.stop, 0);
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, keep_trying_to_modify, &w), 0);
    int failed = 0;
    char msg[512] = "";
    for (int i = 0; i < 300 && !failed; i++) {
        void *buf = NULL;
        size_t size = 0;
        cfnet_status st = cfnet_network_export_onnx_buffer(net, 0, &buf, &size);
        if (st != CFNET_OK) {
            failed = 1;
            snprintf(msg, sizeof msg, "%s", cfnet_last_error());
        }
        cfnet_free(buf);
    }
    atomic_store(&w.stop, 1);
    pthread_join(tid, NULL);
    if (failed) fail_msg("export failed while another thread's modification was refused: %s", msg);
    assert_int_equal(w.other, 0);
    cfnet_network_free(net);
}

/* ---- a viewer: one loaded classifier with worker threads, several host threads at once ---- */

enum { VS = 16, VC = 2, VK = 3, VJOBS = 4, VMAX = 7 };

typedef struct viewer_job {
    cfnet_network *net;
    const float *x; /* VMAX images */
    int n;          /* batch size of this thread */
    float out[VMAX * VK];
    cfnet_status st;
} viewer_job;

static void *viewer_classify(void *arg)
{
    viewer_job *j = arg;
    int64_t xs[] = {j->n, VC, VS, VS}, ps[] = {j->n, VK};
    for (int t = 0; t < 4; t++) {
        cfnet_tensor *x = NULL, *p = NULL;
        j->st = cfnet_tensor_wrap_const(j->x, 4, xs, &x);
        if (j->st == CFNET_OK) j->st = cfnet_tensor_wrap(j->out, 2, ps, &p);
        if (j->st == CFNET_OK) j->st = cfnet_network_probabilities(j->net, x, p);
        cfnet_tensor_free(x);
        cfnet_tensor_free(p);
        if (j->st != CFNET_OK) break;
    }
    return NULL;
}

/* docs/deploy.md: a viewer loads a model once, sets CFNET_OPTION_THREADS, and classifies from
 * its own worker threads, each with its own batch size; every call gives the bits of the same
 * call made alone (the network's workers are shared by the concurrent calls). */
static void host_threads_share_a_network_with_workers_bit_identically(void **state)
{
    (void)state;
    cfnet_network *orig = NULL, *net = NULL;
    CF_ASSERT_OK(cfnet_network_create_classifier(CFNET_FAMILY_CFNET, VC, VS, VK, 6, 7, &orig));
    void *buf = NULL;
    size_t size = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(orig, 0, &buf, &size));
    CF_ASSERT_OK(cfnet_network_load_buffer(buf, size, &net));
    cfnet_free(buf);
    cfnet_network_free(orig);
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, 3));
    static float x[VJOBS][VMAX * VC * VS * VS];
    static const int sizes[VJOBS] = {1, 2, 5, 7};
    tu_rng r = {41};
    viewer_job jobs[VJOBS], ref[VJOBS];
    for (int k = 0; k < VJOBS; k++) {
        tu_fill_normal(x[k], VMAX * VC * VS * VS, &r);
        ref[k] = (viewer_job){.net = net, .x = x[k], .n = sizes[k]};
        viewer_classify(&ref[k]); /* alone, in this thread */
        CF_ASSERT_OK(ref[k].st);
        jobs[k] = (viewer_job){.net = net, .x = x[k], .n = sizes[k]};
    }
    pthread_t tid[VJOBS];
    for (int k = 0; k < VJOBS; k++)
        assert_int_equal(pthread_create(&tid[k], NULL, viewer_classify, &jobs[k]), 0);
    for (int k = 0; k < VJOBS; k++) pthread_join(tid[k], NULL);
    for (int k = 0; k < VJOBS; k++) {
        CF_ASSERT_OK(jobs[k].st);
        assert_memory_equal(jobs[k].out, ref[k].out, sizeof(float) * (size_t)sizes[k] * VK);
    }
    cfnet_network_free(net);
}

/* ---- preparing images from several threads while others run inference ---- */

enum { PJOBS = 6, PN = 5, PROUNDS = 20 };
static const int prep_hw[PN][2] = {{16, 16}, {23, 19}, {11, 16}, {30, 27}, {9, 13}};

typedef struct prep_job {
    cfnet_network *net;
    const float *img[PN]; /* VC x H x W each, sizes prep_hw */
    const float *x;       /* PN x VC x VS x VS: the batch of an inference-only job */
    bool prepare;         /* prepare img into batch, then infer it; else infer x */
    float batch[PN * VC * VS * VS];
    float out[PN * VK];
    cfnet_status st;
    int64_t bad_round;    /* first round whose bits differ from ref (-1: none) */
    const struct prep_job *ref;
} prep_job;

/* One round: the job's batch (prepared, or x) and its network output. */
static cfnet_status prep_round(prep_job *j)
{
    int64_t bs[] = {PN, VC, VS, VS}, os[] = {PN, VK};
    cfnet_tensor *b = NULL, *o = NULL, *im = NULL;
    cfnet_status st = j->prepare ? cfnet_tensor_wrap(j->batch, 4, bs, &b)
                                 : cfnet_tensor_wrap_const(j->x, 4, bs, &b);
    for (int i = 0; j->prepare && st == CFNET_OK && i < PN; i++) {
        int64_t is[] = {VC, prep_hw[i][0], prep_hw[i][1]};
        st = cfnet_tensor_wrap_const(j->img[i], 3, is, &im);
        if (st == CFNET_OK) st = cfnet_network_prepare_image(j->net, im, 0, b, i);
        cfnet_tensor_free(im);
        im = NULL;
    }
    if (st == CFNET_OK) st = cfnet_tensor_wrap(j->out, 2, os, &o);
    if (st == CFNET_OK) st = cfnet_network_infer(j->net, b, o);
    cfnet_tensor_free(b);
    cfnet_tensor_free(o);
    return st;
}

static void *prep_worker(void *arg)
{
    prep_job *j = arg;
    j->bad_round = -1;
    for (int r = 0; r < PROUNDS; r++) {
        memset(j->batch, 0xff, sizeof j->batch); /* NaN: a row left unwritten would show */
        memset(j->out, 0xff, sizeof j->out);
        j->st = prep_round(j);
        if (j->st != CFNET_OK) break;
        if (j->bad_round < 0 && (memcmp(j->out, j->ref->out, sizeof j->out) != 0 ||
                                 (j->prepare && memcmp(j->batch, j->ref->batch,
                                                       sizeof j->batch) != 0)))
            j->bad_round = r;
    }
    return NULL;
}

/* docs/deploy.md: a host's threads each prepare their own images (cfnet_network_prepare_image:
 * percentiles, crops and pads) on one loaded model while other threads run inference on it, the
 * network with worker threads of its own: every prepared batch and every output has the bits of
 * the same calls made alone in one thread. */
static void threads_prepare_and_infer_on_one_network_bit_identically(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create_classifier(CFNET_FAMILY_CFNET, VC, VS, VK, 6, 9, &net));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "channels", "2"));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "input_size", "16"));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "pad", "1"));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "normalization", "percentile 1 99.8"));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, 3));
    int nd = 0;
    int64_t oshape[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_network_output_shape(net, &nd, oshape));
    assert_int_equal(nd, 1);
    assert_int_equal(oshape[0], VK);
    static float imgs[PJOBS][PN][VC * 30 * 30];
    static float xs[PJOBS][PN * VC * VS * VS];
    static prep_job jobs[PJOBS], ref[PJOBS];
    tu_rng r = {77};
    for (int k = 0; k < PJOBS; k++) {
        ref[k] = (prep_job){.net = net, .x = xs[k], .prepare = k % 3 != 2};
        for (int i = 0; i < PN; i++) {
            /* 16-bit-like values with a few bright outliers, so percentiles matter */
            for (int v = 0; v < VC * prep_hw[i][0] * prep_hw[i][1]; v++)
                imgs[k][i][v] = (float)(int)(tu_uniform(&r) * 4000.0) +
                                (tu_uniform(&r) < 0.01 ? 60000.0f : 0.0f);
            ref[k].img[i] = imgs[k][i];
        }
        tu_fill_normal(xs[k], PN * VC * VS * VS, &r);
        CF_ASSERT_OK(prep_round(&ref[k])); /* alone, in this thread */
        jobs[k] = ref[k];
        jobs[k].ref = &ref[k];
    }
    /* the prepared values are the images' own (a test that could not tell would pass here) */
    assert_memory_not_equal(ref[0].batch, ref[1].batch, sizeof ref[0].batch);
    pthread_t tid[PJOBS];
    for (int k = 0; k < PJOBS; k++)
        assert_int_equal(pthread_create(&tid[k], NULL, prep_worker, &jobs[k]), 0);
    for (int k = 0; k < PJOBS; k++) pthread_join(tid[k], NULL);
    for (int k = 0; k < PJOBS; k++) {
        CF_ASSERT_OK(jobs[k].st);
        if (jobs[k].bad_round >= 0)
            fail_msg("job %d (%s): round %lld differs from the single-threaded bits", k,
                     jobs[k].prepare ? "prepare + infer" : "infer", (long long)jobs[k].bad_round);
    }
    cfnet_network_free(net);
}

/* Two threads saving different networks to one path at once (the same NAME.tmp.PID.HOST
 * temporary name: one takes it locked, the other falls back to a name of its own): every save
 * succeeds, the file is always one of the two whole models, and no temporary file is left. */
typedef struct {
    const cfnet_network *net;
    const char *path;
    atomic_int *ready;
    int failed;
} save_job;

enum { SAVES = 40 };

static void *save_many(void *arg)
{
    save_job *j = arg;
    atomic_fetch_add(j->ready, 1);
    while (atomic_load(j->ready) < 2) {
    }
    for (int i = 0; i < SAVES; i++)
        if (cfnet_network_save(j->net, j->path, 0) != CFNET_OK) j->failed++;
    return NULL;
}

static void two_threads_saving_one_path_both_succeed(void **state)
{
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/threads_save", tu_outdir());
    mkdir(dir, 0777);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cfnet_network *net[2] = {make_net(21), make_net(22)};
    void *buf[2];
    size_t size[2];
    for (int k = 0; k < 2; k++) CF_ASSERT_OK(cfnet_network_save_buffer(net[k], 0, &buf[k], &size[k]));
    atomic_int ready = 0;
    save_job jobs[2] = {{net[0], path, &ready, 0}, {net[1], path, &ready, 0}};
    pthread_t tid[2];
    for (int k = 0; k < 2; k++) assert_int_equal(pthread_create(&tid[k], NULL, save_many, &jobs[k]), 0);
    for (int k = 0; k < 2; k++) pthread_join(tid[k], NULL);
    assert_int_equal(jobs[0].failed + jobs[1].failed, 0);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char *got = malloc(size[0] + size[1] + 1);
    size_t n = fread(got, 1, size[0] + size[1] + 1, f);
    fclose(f);
    int same = (n == size[0] && !memcmp(got, buf[0], n)) || (n == size[1] && !memcmp(got, buf[1], n));
    assert_true(same);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int files = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.') files++;
    closedir(d);
    assert_int_equal(files, 1); /* the model alone */
    unlink(path);
    rmdir(dir);
    free(got);
    for (int k = 0; k < 2; k++) {
        cfnet_free(buf[k]);
        cfnet_network_free(net[k]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_threads_match_one_thread_to_rounding),
        cmocka_unit_test(networks_train_and_serve_concurrently),
        cmocka_unit_test(usage_during_concurrent_inference_is_the_usage_after),
        cmocka_unit_test(training_while_another_thread_infers_is_refused),
        cmocka_unit_test(concurrent_calls_run_or_are_refused_and_readers_share),
        cmocka_unit_test(export_is_not_refused_by_a_refused_writer),
        cmocka_unit_test(host_threads_share_a_network_with_workers_bit_identically),
        cmocka_unit_test(threads_prepare_and_infer_on_one_network_bit_identically),
        cmocka_unit_test(two_threads_saving_one_path_both_succeed),
    };
    return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
