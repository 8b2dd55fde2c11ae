/* The persistent thread pool and the BLAS thread policy (src/core/pool.c): every share runs
 * exactly once on every path (pool, threads started for the call, busy pool), a network with
 * CFNET_OPTION_THREADS > 1 runs its convolutions on its own pool, its worker threads end with
 * the network (or when the option changes), and OpenBLAS is single-threaded exactly while the
 * engine runs several shares, with the host's setting restored afterwards. Workers and callers
 * poll before sleeping, and stop polling for a while when a polling thread was late (the
 * machine busy); cf_parallel_for cuts ranges for the layers' own loops, which keep
 * their bits on any number of threads. */
#define _GNU_SOURCE /* sched_setaffinity, RTLD_NEXT */
#include "testutil.h"

#include "core/pool.h"
#include "nn/network.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

enum { SHARES = 4 };

typedef struct counts {
    atomic_int hits[SHARES];
    int blas_seen[SHARES]; /* cf_blas_threads() inside each share */
} counts;

static void count_share(void *arg, int i)
{
    counts *c = arg;
    atomic_fetch_add(&c->hits[i], 1);
    c->blas_seen[i] = cf_blas_threads();
}

static void assert_each_once(counts *c, int n)
{
    for (int i = 0; i < SHARES; i++) {
        assert_int_equal(atomic_load(&c->hits[i]), i < n ? 1 : 0);
        atomic_store(&c->hits[i], 0);
    }
}

/* Threads of this process (entries of /proc/self/task). */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* The thread count once it has reached `want`, or after 10 s whatever it is. pthread_join
 * returns when the kernel clears the thread's id, a moment before the thread leaves
 * /proc/self/task; under valgrind that moment can be long, so a joined worker may still be
 * listed. This waits for the kernel's bookkeeping, not for the library: a worker that is
 * never joined stays listed and the assertion after the wait fails. */
static int settled_thread_count(int want)
{
    int n = thread_count();
    for (int i = 0; i < 10000 && n != want; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        n = thread_count();
    }
    return n;
}

static void pool_runs_every_share_once(void **state)
{
    (void)state;
    cf_pool *p = NULL;
    CF_ASSERT_OK(cf_pool_create(NULL, 3, &p));
    assert_non_null(p);
    assert_int_equal(cf_pool_threads(p), 3);
    counts c;
    memset(&c, 0, sizeof c);
    {
        CF_POOL_SCOPE(p);
        assert_ptr_equal(cf_pool_current(), p);
        for (int rep = 0; rep < 200; rep++) {
            int n = 1 + rep % 3; /* 1, 2 or 3 shares on a 3-share pool */
            cf_parallel_run(n, count_share, &c);
            assert_each_once(&c, n);
            if (n > 1) assert_int_equal(cf_parallel_last_path(), 1);
        }
        /* More shares than the pool has: threads started for the call. */
        cf_parallel_run(4, count_share, &c);
        assert_each_once(&c, 4);
        assert_int_equal(cf_parallel_last_path(), 2);
    }
    assert_null(cf_pool_current());
    /* No pool at all: threads started for the call. */
    cf_parallel_run(2, count_share, &c);
    assert_each_once(&c, 2);
    assert_int_equal(cf_parallel_last_path(), 2);
    cf_pool_destroy(p);
    /* threads <= 1: no pool. */
    CF_ASSERT_OK(cf_pool_create(NULL, 1, &p));
    assert_null(p);
    cf_pool_destroy(NULL);
}

/* Share 0 (run by the caller, whose current pool is still set) starts a nested parallel run:
 * the pool is busy, so the nested run starts its own threads and still runs every share. */
typedef struct nested {
    counts inner;
    int inner_path;
} nested;

static void nested_share(void *arg, int i)
{
    nested *ns = arg;
    if (i != 0) return;
    cf_parallel_run(2, count_share, &ns->inner);
    ns->inner_path = cf_parallel_last_path();
}

static void busy_pool_falls_back_to_own_threads(void **state)
{
    (void)state;
    cf_pool *p = NULL;
    CF_ASSERT_OK(cf_pool_create(NULL, 2, &p));
    nested ns;
    memset(&ns, 0, sizeof ns);
    {
        CF_POOL_SCOPE(p);
        cf_parallel_run(2, nested_share, &ns);
        assert_int_equal(cf_parallel_last_path(), 1);
    }
    assert_int_equal(ns.inner_path, 2);
    assert_each_once(&ns.inner, 2);
    cf_pool_destroy(p);
}

static cfnet_network *small_net(void)
{
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 12, 12, 7, &net));
    CF_ASSERT_OK(cfnet_layer_conic_conv_create(4, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST,
                                               &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dense_create(3, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    return net;
}

static void network_pool_follows_the_thread_option(void **state)
{
    (void)state;
    /* Threads joined by the tests before may linger a moment (see above): the base count is
     * the lowest seen over 0.2 s. */
    int base = thread_count();
    for (int i = 0; i < 100; i++) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        int n = thread_count();
        if (n < base) base = n;
    }
    assert_true(base >= 1);
    cfnet_network *net = small_net();
    assert_null(net->pool);
    assert_int_equal(settled_thread_count(base), base);
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, 3));
    assert_non_null(net->pool);
    assert_int_equal(cf_pool_threads(net->pool), 3);
    assert_int_equal(settled_thread_count(base + 2), base + 2);
    /* The convolution of an inference call runs on the network's pool. */
    int64_t xs[] = {6, 1, 12, 12}, os[] = {6, 3};
    tu_rng r = {5};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *o = tu_tensor(2, os, NULL);
    for (int rep = 0; rep < 20; rep++) {
        CF_ASSERT_OK(cfnet_network_infer(net, x, o));
        assert_int_equal(cf_parallel_last_path(), 1);
    }
    assert_null(cf_pool_current()); /* the scope ended with the call */
    int32_t labels[6] = {0, 1, 2, 0, 1, 2};
    float loss;
    CF_ASSERT_OK(cfnet_network_train_step(net, x, labels, 6, &loss));
    assert_int_equal(cf_parallel_last_path(), 1);
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, 2));
    assert_int_equal(settled_thread_count(base + 1), base + 1);
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, 1));
    assert_null(net->pool);
    assert_int_equal(settled_thread_count(base), base);
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, 2));
    assert_int_equal(settled_thread_count(base + 1), base + 1);
    cfnet_network_free(net);
    assert_int_equal(settled_thread_count(base), base); /* no worker outlives its network */
    cfnet_tensor_free(x);
    cfnet_tensor_free(o);
}

#ifdef CF_BLAS_OPENBLAS
#include <cblas.h>
/* OpenBLAS's thread setting in every cblas_sgemm the library makes (this definition comes before
 * OpenBLAS's, which it calls): the dense and DFT projection layers call sgemm outside the
 * engine's shares, on any number of engine threads. */
static atomic_int sgemm_calls, sgemm_most_threads;
void cblas_sgemm(OPENBLAS_CONST enum CBLAS_ORDER Order, OPENBLAS_CONST enum CBLAS_TRANSPOSE TransA,
                 OPENBLAS_CONST enum CBLAS_TRANSPOSE TransB, OPENBLAS_CONST blasint M,
                 OPENBLAS_CONST blasint N, OPENBLAS_CONST blasint K, OPENBLAS_CONST float alpha,
                 OPENBLAS_CONST float *A, OPENBLAS_CONST blasint lda, OPENBLAS_CONST float *B,
                 OPENBLAS_CONST blasint ldb, OPENBLAS_CONST float beta, float *C,
                 OPENBLAS_CONST blasint ldc)
{
    typedef void sgemm_fn(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, blasint,
                          blasint, blasint, float, const float *, blasint, const float *,
                          blasint, float, float *, blasint);
    sgemm_fn *real;
    *(void **)&real = dlsym(RTLD_NEXT, "cblas_sgemm"); /* each time: no shared state to race on */
    int t = cf_blas_threads(), most = atomic_load(&sgemm_most_threads);
    while (t > most && !atomic_compare_exchange_weak(&sgemm_most_threads, &most, t)) {}
    atomic_fetch_add(&sgemm_calls, 1);
    real(Order, TransA, TransB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* A network on ONE engine thread runs its dense and DFT projection products on one OpenBLAS
 * thread too (OpenBLAS's idle workers spin in sched_yield for ~0.1 s after every
 * multi-threaded product, also after the call has returned), and leaves the host's setting as it
 * was. */
static void blas_is_single_threaded_in_one_thread_networks(void **state)
{
    (void)state;
    int host = cf_blas_threads();
    cf_blas_set_threads(2);
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 12, 12, 7, &net));
    CF_ASSERT_OK(cfnet_layer_conic_conv_create(4, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST,
                                               &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dft_projection_create(4, 2, CFNET_INTERP_NEAREST, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dense_create(3, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    for (int threads = 1; threads <= 2; threads++) {
        CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, threads));
        int64_t xs[] = {4, 1, 12, 12}, os[] = {4, 3};
        tu_rng r = {9};
        cfnet_tensor *x = tu_tensor(4, xs, &r), *o = tu_tensor(2, os, NULL);
        int32_t labels[4] = {0, 1, 2, 0};
        atomic_store(&sgemm_calls, 0);
        atomic_store(&sgemm_most_threads, 0);
        CF_ASSERT_OK(cfnet_network_infer(net, x, o));
        float loss = 0;
        CF_ASSERT_OK(cfnet_network_train_step(net, x, labels, 4, &loss));
        assert_true(atomic_load(&sgemm_calls) >= 5); /* 2 forward + 3 backward at least */
        assert_int_equal(atomic_load(&sgemm_most_threads), 1);
        assert_int_equal(cf_blas_threads(), 2); /* the host's setting, restored */
        cfnet_tensor_free(x);
        cfnet_tensor_free(o);
    }
    cfnet_network_free(net);
    cf_blas_set_threads(host);
}
#endif

static void blas_is_single_threaded_inside_parallel_runs(void **state)
{
    (void)state;
    if (cf_blas_threads() == 0) skip(); /* not OpenBLAS (make BLAS=blas): no such setting */
    int host = cf_blas_threads();
    cf_blas_set_threads(2);
    assert_int_equal(cf_blas_threads(), 2);
    cf_blas_single_enter();
    assert_int_equal(cf_blas_threads(), 1);
    cf_blas_single_enter(); /* nested */
    cf_blas_single_leave();
    assert_int_equal(cf_blas_threads(), 1);
    cf_blas_single_leave();
    assert_int_equal(cf_blas_threads(), 2);
    counts c;
    memset(&c, 0, sizeof c);
    cf_pool *p = NULL;
    CF_ASSERT_OK(cf_pool_create(NULL, 2, &p));
    {
        CF_POOL_SCOPE(p);
        cf_parallel_run(2, count_share, &c);
    }
    assert_int_equal(c.blas_seen[0], 1);
    assert_int_equal(c.blas_seen[1], 1);
    assert_int_equal(cf_blas_threads(), 2);
    /* A single share leaves the host's setting alone. */
    cf_parallel_run(1, count_share, &c);
    assert_int_equal(c.blas_seen[0], 2);
    cf_pool_destroy(p);
    /* Through a network with two engine threads. */
    cfnet_network *net = small_net();
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, 2));
    int64_t xs[] = {4, 1, 12, 12}, os[] = {4, 3};
    tu_rng r = {9};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *o = tu_tensor(2, os, NULL);
    CF_ASSERT_OK(cfnet_network_infer(net, x, o));
    assert_int_equal(cf_blas_threads(), 2);
    cfnet_network_free(net);
    cfnet_tensor_free(x);
    cfnet_tensor_free(o);
    cf_blas_set_threads(host);
}

/* Workers poll for the next job for a while and then sleep; callers poll for the end of their
 * job and then sleep. Every share runs exactly once whether the workers are found polling (no
 * gap between jobs, polling longer than any gap) or asleep (no polling, or gaps longer than
 * it), and a pool whose workers are polling stops when destroyed. */
static void pool_polls_then_sleeps_and_runs_every_share_once(void **state)
{
    (void)state;
    const uint64_t spins[] = {0, 20000, 1000000000ull}; /* none, 20 us, 1 s */
    for (int s = 0; s < 3; s++) {
        cf_pool *p = NULL;
        CF_ASSERT_OK(cf_pool_create(NULL, 3, &p));
        cf_pool_set_spin_ns(p, spins[s]);
        assert_true(cf_pool_spin_ns(p) == spins[s]);
        counts c;
        memset(&c, 0, sizeof c);
        {
            CF_POOL_SCOPE(p);
            for (int rep = 0; rep < 300; rep++) {
                int n = 2 + rep % 2;
                cf_parallel_run(n, count_share, &c);
                assert_each_once(&c, n);
                assert_int_equal(cf_parallel_last_path(), 1);
                if (rep % 25 == 0) { /* a gap longer than the 20 us of polling */
                    struct timespec ts = {0, 300000};
                    nanosleep(&ts, NULL);
                }
            }
        }
        cf_pool_destroy(p);
    }
    assert_true(cf_pool_spin_ns(NULL) == 0);
}

/* CFNET_SPIN_US sets a new pool's polling time; values that are not whole microseconds in
 * [0, 1000000] are ignored. Without it a pool polls 1 ms, or not at all when it has more
 * threads than the process has processors. */
static void pool_polling_time_from_the_environment(void **state)
{
    (void)state;
    const int cpus = cf_platform_cpu_count();
    assert_true(cpus >= 1);
    const uint64_t def = cpus >= 2 ? 1000000 : 0; /* for a 2-thread pool */
    const struct {
        const char *env;
        uint64_t ns;
    } cases[] = {{"250", 250000}, {"0", 0},     {"1000000", 1000000000ull},
                 {"abc", def},    {"12x", def}, {"-5", def},
                 {"1000001", def}, {"", def},   {NULL, def}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (cases[i].env) setenv("CFNET_SPIN_US", cases[i].env, 1);
        else unsetenv("CFNET_SPIN_US");
        cf_pool *p = NULL;
        CF_ASSERT_OK(cf_pool_create(NULL, 2, &p));
        assert_true(cf_pool_spin_ns(p) == cases[i].ns);
        cf_pool_destroy(p);
    }
    /* more threads than processors: no polling, unless asked for */
    cf_pool *p = NULL;
    CF_ASSERT_OK(cf_pool_create(NULL, cpus + 1, &p));
    assert_true(cf_pool_spin_ns(p) == 0);
    cf_pool_destroy(p);
    setenv("CFNET_SPIN_US", "250", 1);
    CF_ASSERT_OK(cf_pool_create(NULL, cpus + 1, &p));
    assert_true(cf_pool_spin_ns(p) == 250000);
    cf_pool_destroy(p);
    unsetenv("CFNET_SPIN_US");
}

/* Polling on a busy machine (pool.c): a thread found late while polling -- off its processor,
 * the machine's processors taken by others -- stops all polling of the pool for 100 ms. The
 * pool reads a clock the test sets: frozen at fake_now (a polling thread then never runs out
 * of polling time), minus the calling thread's fake_skew. */
static _Atomic uint64_t fake_now = 1000000000000ull; /* 1000 s */
static _Thread_local uint64_t fake_skew;
static uint64_t fake_clock(void) { return atomic_load(&fake_now) - fake_skew; }

/* The calling thread's preemptions as the pools on the test clock read them: a count that grows
 * at every read, so that every late look was preempted (the machine busy), or while
 * fake_preempt_step is 0 one that stands still (late looks while the virtual machine's host held
 * the processor). */
static _Atomic int64_t fake_preempt_count, fake_preempt_step = 1;
static int64_t fake_preemptions(void)
{
    int64_t step = atomic_load(&fake_preempt_step);
    return atomic_fetch_add(&fake_preempt_count, step) + step; /* the count after this read */
}

typedef struct poll_stats {
    uint64_t worker, caller, quiets;
} poll_stats;

static poll_stats stats_of(const cf_pool *p)
{
    poll_stats s;
    cf_pool_poll_stats(p, &s.worker, &s.caller, &s.quiets);
    return s;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (up to 30 s) until the pool's workers have begun `worker` polling waits and it has
 * begun `quiets` quiet spells. */
static poll_stats wait_for_stats(const cf_pool *p, uint64_t worker, uint64_t quiets)
{
    poll_stats s = stats_of(p);
    for (int i = 0; i < 30000 && (s.worker < worker || s.quiets < quiets); i++) {
        sleep_ms(1);
        s = stats_of(p);
    }
    assert_true(s.worker == worker);
    assert_true(s.quiets == quiets);
    return s;
}

/* A job that puts a 2-thread pool on the test's clock with 1 ms of polling while its worker
 * is inside its share: the worker's first polling wait, after the share, is on that clock. */
typedef struct clock_setup {
    cf_pool *p;
    atomic_int in_share, set;
} clock_setup;

static void clock_setup_share(void *arg, int i)
{
    clock_setup *cs = arg;
    if (i == 1) {
        atomic_store(&cs->in_share, 1);
        while (!atomic_load(&cs->set)) sched_yield();
    } else {
        while (!atomic_load(&cs->in_share)) sched_yield();
        cf_pool_set_clock(cs->p, fake_clock);
        cf_pool_set_preemptions(cs->p, fake_preemptions);
        cf_pool_set_spin_ns(cs->p, 1000000);
        atomic_store(&cs->set, 1);
    }
}

/* The pool, its worker polling for the next job on the test's clock (which stands still, so
 * that the polling goes on until the test moves it or runs a job). It starts without polling,
 * so that its worker never reads the monotonic clock and then the test's. */
static cf_pool *pool_on_fake_clock(void)
{
    atomic_store(&fake_preempt_step, 1);
    setenv("CFNET_SPIN_US", "0", 1);
    cf_pool *p = NULL;
    CF_ASSERT_OK(cf_pool_create(NULL, 2, &p));
    unsetenv("CFNET_SPIN_US");
    clock_setup cs = {.p = p};
    {
        CF_POOL_SCOPE(p);
        cf_parallel_run(2, clock_setup_share, &cs);
        assert_int_equal(cf_parallel_last_path(), 1);
    }
    wait_for_stats(p, 1, 0);
    return p;
}

static void run_job(cf_pool *p, counts *c)
{
    CF_POOL_SCOPE(p);
    cf_parallel_run(2, count_share, c);
    assert_int_equal(cf_parallel_last_path(), 1);
    assert_each_once(c, 2);
}

/* The worker polls for the next job on a clock that stands still, and is never late; the
 * clock jumps 0.3 ms between two of its looks: the pool goes quiet, the worker sleeps. For the
 * next 100 ms neither the worker nor a caller polls (the jobs run all the same), and after
 * them both poll again. */
static void pool_goes_quiet_when_a_polling_thread_was_late(void **state)
{
    (void)state;
    counts c;
    memset(&c, 0, sizeof c);
    fake_skew = 0;
    cf_pool *p = pool_on_fake_clock();
    run_job(p, &c);
    poll_stats s = wait_for_stats(p, 2, 0); /* the worker polls again, after its share */
    sleep_ms(20);
    assert_true(stats_of(p).quiets == 0); /* not late: the clock stands still */
    atomic_fetch_add(&fake_now, 300000);  /* 0.3 ms pass between two of its looks */
    s = wait_for_stats(p, 2, 1);
    /* quiet: two jobs within 100 ms run without polling */
    for (int j = 0; j < 2; j++) {
        atomic_fetch_add(&fake_now, 40000000); /* 40 ms later */
        run_job(p, &c);
    }
    sleep_ms(20);
    poll_stats q = stats_of(p);
    assert_true(q.worker == s.worker && q.caller == s.caller && q.quiets == 1);
    /* 100 ms after the late look the pool polls again */
    atomic_fetch_add(&fake_now, 30000000);
    run_job(p, &c);
    wait_for_stats(p, 3, 1);
    cf_pool_destroy(p);
}

/* The worker polls; a job published 1 ms (on the publishing thread's clock) before the worker
 * sees it: the worker was late, and the pool goes quiet. A job it sees at once does not. */
static void pool_goes_quiet_when_a_job_waited_for_a_polling_thread(void **state)
{
    (void)state;
    counts c;
    memset(&c, 0, sizeof c);
    fake_skew = 0;
    cf_pool *p = pool_on_fake_clock();
    run_job(p, &c); /* seen at once by the polling worker */
    wait_for_stats(p, 2, 0);
    fake_skew = 1000000; /* this thread's clock 1 ms behind the worker's */
    run_job(p, &c);
    fake_skew = 0;
    assert_true(stats_of(p).quiets == 1);
    cf_pool_destroy(p);
}

/* A polling thread late without having been preempted -- its count of preemptions unchanged:
 * the virtual machine's host held its processor, no thread of this machine wanted it -- begins
 * no quiet spell, and the pool polls on; when the count has grown, the same late look does.
 * Both kinds of late look: a jump of 0.3 ms between two looks of the worker, and a job
 * published 1 ms before the polling worker saw it. */
static void pool_polls_on_when_late_without_preemption(void **state)
{
    (void)state;
    counts c;
    memset(&c, 0, sizeof c);
    fake_skew = 0;
    cf_pool *p = pool_on_fake_clock();
    atomic_store(&fake_preempt_step, 0);
    run_job(p, &c);
    wait_for_stats(p, 2, 0);
    atomic_fetch_add(&fake_now, 300000); /* late between two looks, not preempted */
    sleep_ms(20);
    assert_true(stats_of(p).quiets == 0);
    fake_skew = 1000000; /* a job published 1 ms before the worker sees it */
    run_job(p, &c);
    fake_skew = 0;
    wait_for_stats(p, 3, 0);
    sleep_ms(20);
    assert_true(stats_of(p).quiets == 0);
    run_job(p, &c); /* the worker still polls (the caller polls only when its share ends first) */
    wait_for_stats(p, 4, 0);
    atomic_store(&fake_preempt_step, 1); /* preempted from now on: the same late look counts */
    atomic_fetch_add(&fake_now, 300000);
    wait_for_stats(p, 4, 1);
    atomic_store(&fake_preempt_step, 0);
    atomic_fetch_add(&fake_now, 110000000); /* after the spell */
    run_job(p, &c);
    wait_for_stats(p, 5, 1);
    atomic_store(&fake_preempt_step, 1);
    fake_skew = 1000000;
    run_job(p, &c);
    fake_skew = 0;
    assert_true(stats_of(p).quiets == 2);
    cf_pool_destroy(p);
}

/* Puts the calling thread (and the threads it starts) on the first of its processors, its
 * affinity before in *old; false where the system does not allow it. */
static bool pin_to_one_processor(cpu_set_t *old)
{
    cpu_set_t one;
    if (sched_getaffinity(0, sizeof *old, old) != 0) return false;
    int cpu = -1;
    for (int i = 0; i < CPU_SETSIZE && cpu < 0; i++)
        if (CPU_ISSET(i, old)) cpu = i;
    assert_true(cpu >= 0);
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return sched_setaffinity(0, sizeof one, &one) == 0;
}

/* The platform's count of preemptions (cf_platform_thread_preemptions) grows while two busy
 * threads share one processor, and stands still enough to tell it from a clock. */
typedef struct busy_arg {
    uint64_t until;
} busy_arg;

static void *busy_until(void *v)
{
    const busy_arg *b = v;
    while (cf_platform_now_ns() < b->until) cf_cpu_relax();
    return NULL;
}

static void thread_preemptions_count_a_shared_processor(void **state)
{
    (void)state;
    int64_t before = cf_platform_thread_preemptions();
    if (before < 0) skip(); /* a system that cannot tell; the pool then counts every late look */
    cpu_set_t old;
    if (!pin_to_one_processor(&old)) skip();
    busy_arg b = {cf_platform_now_ns() + 200000000u}; /* both busy for 200 ms */
    pthread_t t;
    int started = pthread_create(&t, NULL, busy_until, &b) == 0;
    before = cf_platform_thread_preemptions();
    busy_until(&b);
    int64_t after = cf_platform_thread_preemptions();
    if (started) pthread_join(t, NULL);
    assert_int_equal(sched_setaffinity(0, sizeof old, &old), 0);
    assert_true(started);
    assert_true(after > before);
    /* alone on the processors again, a short busy spell is rarely preempted: the count is not
     * a clock (it may grow by a few when other work shares the machine) */
    int64_t quiet0 = cf_platform_thread_preemptions();
    busy_arg shortb = {cf_platform_now_ns() + 2000000u};
    busy_until(&shortb);
    assert_true(cf_platform_thread_preemptions() - quiet0 < 100);
}

/* Quiet spells on a machine that stays busy (pool.c): a late look within 100 ms of the end of
 * the last spell doubles the spell, up to 1.6 s; one after that begins a 100 ms spell again.
 * The worker polls on the test clock (and has begun s->worker polling waits): `on_time` jobs,
 * 0.15 ms of the test clock apart, each seen at once by the polling worker; then a jump of
 * 0.3 ms between two of its looks. The pool must stay quiet for `ms` of the test clock: a job
 * 10 ms before the spell's end runs without polling, one 10 ms after it finds the worker
 * polling again. */
static void expect_spell(cf_pool *p, counts *c, poll_stats *s, int on_time, uint64_t ms)
{
    for (int j = 0; j < on_time; j++) {
        atomic_fetch_add(&fake_now, 150000); /* not late: less than 0.2 ms between two looks */
        run_job(p, c);
    }
    *s = wait_for_stats(p, s->worker + (uint64_t)on_time, s->quiets);
    atomic_fetch_add(&fake_now, 300000); /* late */
    wait_for_stats(p, s->worker, s->quiets + 1);
    atomic_fetch_add(&fake_now, (ms - 10) * 1000000);
    run_job(p, c);
    sleep_ms(20);
    poll_stats q = stats_of(p);
    assert_true(q.worker == s->worker && q.caller == s->caller && q.quiets == s->quiets + 1);
    atomic_fetch_add(&fake_now, 20000000);
    run_job(p, c);
    *s = wait_for_stats(p, s->worker + 1, s->quiets + 1);
}

/* Late again 10 ms after each spell's end, some of them after 300 jobs seen on time (45 ms of
 * the test clock): the spells last 100, 200, 400 and 800 ms. */
static void pool_quiet_spell_doubles_while_late_again(void **state)
{
    (void)state;
    counts c;
    memset(&c, 0, sizeof c);
    fake_skew = 0;
    cf_pool *p = pool_on_fake_clock();
    poll_stats s = stats_of(p);
    expect_spell(p, &c, &s, 0, 100);
    expect_spell(p, &c, &s, 300, 200);
    expect_spell(p, &c, &s, 0, 400);
    expect_spell(p, &c, &s, 300, 800);
    cf_pool_destroy(p);
}

/* The spells double up to 1.6 s and stay there. */
static void pool_quiet_spell_stops_growing_at_its_cap(void **state)
{
    (void)state;
    counts c;
    memset(&c, 0, sizeof c);
    fake_skew = 0;
    cf_pool *p = pool_on_fake_clock();
    poll_stats s = stats_of(p);
    static const uint64_t ms[] = {100, 200, 400, 800, 1600, 1600, 1600};
    for (size_t k = 0; k < sizeof ms / sizeof ms[0]; k++) expect_spell(p, &c, &s, 0, ms[k]);
    cf_pool_destroy(p);
}

/* After a 400 ms spell, 700 jobs seen on time by the polling worker (105 ms of the test clock,
 * beyond the 100 ms in which a late look counts as late again): the next late look begins a
 * 100 ms spell, and growth starts over. */
static void pool_quiet_spell_starts_over_after_polling_on_time(void **state)
{
    (void)state;
    counts c;
    memset(&c, 0, sizeof c);
    fake_skew = 0;
    cf_pool *p = pool_on_fake_clock();
    poll_stats s = stats_of(p);
    expect_spell(p, &c, &s, 0, 100);
    expect_spell(p, &c, &s, 0, 200);
    expect_spell(p, &c, &s, 0, 400);
    expect_spell(p, &c, &s, 700, 100);
    expect_spell(p, &c, &s, 0, 200);
    cf_pool_destroy(p);
}

/* A job that puts a 3-thread pool on the test's clock with 1 ms of polling while both of its
 * workers are inside their shares. */
static void clock_setup_share3(void *arg, int i)
{
    clock_setup *cs = arg;
    if (i) {
        atomic_fetch_add(&cs->in_share, 1);
        while (!atomic_load(&cs->set)) sched_yield();
    } else {
        while (atomic_load(&cs->in_share) < 2) sched_yield();
        cf_pool_set_clock(cs->p, fake_clock);
        cf_pool_set_preemptions(cs->p, fake_preemptions);
        cf_pool_set_spin_ns(cs->p, 1000000);
        atomic_store(&cs->set, 1);
    }
}

/* Both workers of a 3-thread pool poll on the test clock; it jumps 0.3 ms between two looks of
 * each, so both are late together: one quiet spell begins, not two, and the second late look
 * (within the spell) neither restarts it nor resets its growth: 10 ms after the spell's end the
 * pool is late again and the next spell lasts 200 ms. */
static void pool_two_late_workers_begin_one_spell(void **state)
{
    (void)state;
    fake_skew = 0;
    setenv("CFNET_SPIN_US", "0", 1);
    cf_pool *p = NULL;
    CF_ASSERT_OK(cf_pool_create(NULL, 3, &p));
    unsetenv("CFNET_SPIN_US");
    clock_setup cs = {.p = p};
    {
        CF_POOL_SCOPE(p);
        cf_parallel_run(3, clock_setup_share3, &cs);
        assert_int_equal(cf_parallel_last_path(), 1);
    }
    wait_for_stats(p, 2, 0);
    atomic_fetch_add(&fake_now, 300000); /* both workers late */
    wait_for_stats(p, 2, 1);
    sleep_ms(50); /* the other worker's late look, too */
    assert_true(stats_of(p).quiets == 1);
    counts c;
    memset(&c, 0, sizeof c);
    atomic_fetch_add(&fake_now, 110000000); /* 10 ms after the spell's end */
    {
        CF_POOL_SCOPE(p);
        cf_parallel_run(3, count_share, &c);
        assert_int_equal(cf_parallel_last_path(), 1);
        assert_each_once(&c, 3);
    }
    poll_stats s = wait_for_stats(p, 4, 1); /* both workers poll again */
    atomic_fetch_add(&fake_now, 300000);     /* late again: a 200 ms spell */
    wait_for_stats(p, 4, 2);
    sleep_ms(50);
    assert_true(stats_of(p).quiets == 2);
    atomic_fetch_add(&fake_now, 150000000); /* 150 ms into the 200 ms spell: nobody polls */
    memset(&c, 0, sizeof c);
    {
        CF_POOL_SCOPE(p);
        cf_parallel_run(3, count_share, &c);
        assert_each_once(&c, 3);
    }
    sleep_ms(20);
    poll_stats q = stats_of(p);
    assert_true(q.worker == s.worker && q.caller == s.caller && q.quiets == 2);
    cf_pool_destroy(p);
}

/* On the monotonic clock: with the process on one processor, the worker and the caller take
 * turns on it, and the one polling while the other has work is taken off it and finds itself
 * late. The pool goes quiet instead of polling for its 50 ms at every job. */
static void pool_on_one_processor_goes_quiet(void **state)
{
    (void)state;
    cpu_set_t old;
    if (!pin_to_one_processor(&old)) skip();
    cf_pool *p = NULL;
    CF_ASSERT_OK(cf_pool_create(NULL, 2, &p)); /* the worker inherits the one processor */
    cf_pool_set_spin_ns(p, 50000000);
    counts c;
    memset(&c, 0, sizeof c);
    for (int j = 0; j < 40; j++) run_job(p, &c);
    uint64_t quiets = stats_of(p).quiets;
    cf_pool_destroy(p);
    /* back on every processor before asserting, so that a failure leaves the later tests be */
    assert_int_equal(sched_setaffinity(0, sizeof old, &old), 0);
    assert_true(quiets >= 1);
}

/* cf_parallel_for: contiguous ranges covering [0, n) once, one per share, as many shares as
 * the threads allow with at least min_items each, and the caller alone when that is one. */
typedef struct ranges {
    atomic_int calls;
    int64_t lo[8], hi[8];
    atomic_int hit[1000];
} ranges;

static void record_range(void *arg, int64_t i0, int64_t i1)
{
    ranges *r = arg;
    int k = atomic_fetch_add(&r->calls, 1);
    if (k < 8) r->lo[k] = i0, r->hi[k] = i1;
    for (int64_t i = i0; i < i1; i++) atomic_fetch_add(&r->hit[i], 1);
}

static void parallel_for_covers_the_range_once(void **state)
{
    (void)state;
    static ranges r;
    const int64_t ns[] = {0, 1, 7, 64, 100, 999, 1000};
    const int64_t mins[] = {1, 10, 64, 5000};
    for (int threads = 0; threads <= 4; threads++)
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
            for (size_t b = 0; b < sizeof mins / sizeof *mins; b++) {
                memset(&r, 0, sizeof r);
                int64_t n = ns[a], m = mins[b];
                cf_parallel_run(2, count_share, &(counts){0}); /* last path: 2 */
                cf_parallel_for(threads, n, m, record_range, &r);
                int64_t most = n / m, want = threads < 1 ? 1 : threads;
                if (want > most) want = most < 1 ? 1 : most;
                if (n == 0) want = 0;
                assert_int_equal(atomic_load(&r.calls), (int)want);
                for (int64_t i = 0; i < 1000; i++)
                    assert_int_equal(atomic_load(&r.hit[i]), i < n ? 1 : 0);
                /* the ranges tile [0, n) without gaps, each non-empty and >= m when split */
                int64_t covered = 0;
                for (int k = 0; k < want; k++) {
                    assert_true(r.hi[k] > r.lo[k]);
                    if (want > 1) assert_true(r.hi[k] - r.lo[k] >= m);
                    covered += r.hi[k] - r.lo[k];
                }
                assert_int_equal(covered, n);
                /* several shares ran through cf_parallel_run (here without a pool) */
                assert_int_equal(cf_parallel_last_path(), 2);
            }
}

/* ReLU, batch norm and pooling split their loops over the layer's threads (by element, by
 * channel, by plane): forward outputs, input gradients and parameter gradients have the same
 * bits on 1 and 3 threads, and the 3-thread run really ran in parallel (on the pool). */
static void run_layer(cfnet_layer *l, int threads, cfnet_tensor *x, cfnet_tensor *y,
                      cfnet_tensor *dy, cfnet_tensor *dx)
{
    l->threads = threads;
    for (int i = 0; i < cfnet_layer_param_count(l); i++)
        memset(cfnet_tensor_data(cfnet_layer_grad(l, i)), 0,
               (size_t)cfnet_tensor_numel(cfnet_layer_grad(l, i)) * sizeof(float));
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
}

static void layers_split_over_threads_keep_their_bits(void **state)
{
    (void)state;
    enum { NL = 6 };
    cfnet_layer *ls[NL] = {NULL};
    CF_ASSERT_OK(cfnet_layer_relu_create(&ls[0]));
    CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &ls[1]));
    CF_ASSERT_OK(cfnet_layer_pool_create(CFNET_POOL_MAX, 2, 2, &ls[2]));
    CF_ASSERT_OK(cfnet_layer_pool_create(CFNET_POOL_MEAN, 2, 2, &ls[3]));
    CF_ASSERT_OK(cfnet_layer_pool_create(CFNET_POOL_MAX, 3, 2, &ls[4]));
    CF_ASSERT_OK(cfnet_layer_pool_create(CFNET_POOL_MEAN, 3, 1, &ls[5]));
    const int64_t in[] = {16, 32, 33}, xs[] = {8, 16, 32, 33}; /* odd width: uncovered columns */
    cf_pool *p = NULL;
    CF_ASSERT_OK(cf_pool_create(NULL, 3, &p));
    for (int k = 0; k < NL; k++) {
        cfnet_layer *l = ls[k];
        CF_ASSERT_OK(cfnet_layer_setup(l, 3, in, 1));
        int ond;
        int64_t os[CFNET_MAX_DIMS + 1];
        CF_ASSERT_OK(cfnet_layer_output_shape(l, &ond, os + 1));
        os[0] = 8;
        tu_rng r = {100 + (uint64_t)k};
        cfnet_tensor *x = tu_tensor(4, xs, &r), *dy = tu_tensor(ond + 1, os, &r);
        cfnet_tensor *y1 = tu_tensor(ond + 1, os, NULL), *y3 = tu_tensor(ond + 1, os, NULL);
        cfnet_tensor *d1 = tu_tensor(4, xs, NULL), *d3 = tu_tensor(4, xs, NULL);
        /* ties and signed zeros, which a max or a ReLU must keep picking the same way */
        float *xv = cfnet_tensor_data(x);
        for (int64_t i = 0; i < cfnet_tensor_numel(x); i += 7) xv[i] = (i % 14) ? 0.0f : -0.0f;
        run_layer(l, 1, x, y1, dy, d1);
        float g1[2][16];
        for (int i = 0; i < cfnet_layer_param_count(l); i++)
            memcpy(g1[i], cfnet_tensor_data(cfnet_layer_grad(l, i)), 16 * sizeof(float));
        cf_parallel_run(2, count_share, &(counts){0}); /* last path: 2 (no pool) */
        {
            CF_POOL_SCOPE(p);
            run_layer(l, 3, x, y3, dy, d3);
            assert_int_equal(cf_parallel_last_path(), 1);
        }
        assert_memory_equal(cfnet_tensor_data(y1), cfnet_tensor_data(y3),
                            (size_t)cfnet_tensor_numel(y1) * sizeof(float));
        assert_memory_equal(cfnet_tensor_data(d1), cfnet_tensor_data(d3),
                            (size_t)cfnet_tensor_numel(d1) * sizeof(float));
        for (int i = 0; i < cfnet_layer_param_count(l); i++)
            assert_memory_equal(g1[i], cfnet_tensor_data(cfnet_layer_grad(l, i)),
                                16 * sizeof(float));
        cfnet_tensor_free(x);
        cfnet_tensor_free(dy);
        cfnet_tensor_free(y1);
        cfnet_tensor_free(y3);
        cfnet_tensor_free(d1);
        cfnet_tensor_free(d3);
        cfnet_layer_free(l);
    }
    cf_pool_destroy(p);
}

/* The same for batch norm fused with the ReLU after it (the network's pass): a network of
 * both on 1 and 3 threads gives the same outputs and parameter gradients, bit for bit. */
static void fused_batch_norm_relu_split_over_threads_keeps_its_bits(void **state)
{
    (void)state;
    static float out[2][8 * 16 * 32 * 32], grads[2][64];
    int64_t xs[] = {8, 16, 32, 32};
    tu_rng r = {5};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *dy = tu_tensor(4, xs, &r);
    for (int t = 0; t < 2; t++) {
        cfnet_network *net = NULL;
        CF_ASSERT_OK(cfnet_network_create(16, 32, 32, 3, &net));
        cfnet_layer *l = NULL;
        CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l));
        CF_ASSERT_OK(cfnet_network_append(net, l));
        CF_ASSERT_OK(cfnet_layer_relu_create(&l));
        CF_ASSERT_OK(cfnet_network_append(net, l));
        CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l));
        CF_ASSERT_OK(cfnet_network_append(net, l));
        CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, t ? 3 : 1));
        cfnet_tensor *o = tu_tensor(4, xs, NULL);
        CF_ASSERT_OK(cfnet_network_forward(net, x, o, CFNET_MODE_TRAINING));
        if (t) assert_int_equal(cf_parallel_last_path(), 1);
        CF_ASSERT_OK(cfnet_network_backward(net, dy));
        memcpy(out[t], cfnet_tensor_data(o), sizeof out[t]);
        assert_int_equal(cfnet_network_param_count(net), 64);
        CF_ASSERT_OK(cfnet_network_gradients(net, grads[t], 64));
        cfnet_tensor_free(o);
        cfnet_network_free(net);
    }
    assert_memory_equal(out[0], out[1], sizeof out[0]);
    assert_memory_equal(grads[0], grads[1], sizeof grads[0]);
    cfnet_tensor_free(x);
    cfnet_tensor_free(dy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pool_runs_every_share_once),
        cmocka_unit_test(busy_pool_falls_back_to_own_threads),
        cmocka_unit_test(network_pool_follows_the_thread_option),
        cmocka_unit_test(blas_is_single_threaded_inside_parallel_runs),
#ifdef CF_BLAS_OPENBLAS
        cmocka_unit_test(blas_is_single_threaded_in_one_thread_networks),
#endif
        cmocka_unit_test(pool_polls_then_sleeps_and_runs_every_share_once),
        cmocka_unit_test(pool_polling_time_from_the_environment),
        cmocka_unit_test(pool_goes_quiet_when_a_polling_thread_was_late),
        cmocka_unit_test(pool_goes_quiet_when_a_job_waited_for_a_polling_thread),
        cmocka_unit_test(pool_polls_on_when_late_without_preemption),
        cmocka_unit_test(thread_preemptions_count_a_shared_processor),
        cmocka_unit_test(pool_quiet_spell_doubles_while_late_again),
        cmocka_unit_test(pool_quiet_spell_stops_growing_at_its_cap),
        cmocka_unit_test(pool_quiet_spell_starts_over_after_polling_on_time),
        cmocka_unit_test(pool_two_late_workers_begin_one_spell),
        cmocka_unit_test(pool_on_one_processor_goes_quiet),
        cmocka_unit_test(parallel_for_covers_the_range_once),
        cmocka_unit_test(layers_split_over_threads_keep_their_bits),
        cmocka_unit_test(fused_batch_norm_relu_split_over_threads_keeps_its_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
