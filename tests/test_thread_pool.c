/* The persistent thread pool and the BLAS thread policy (src/core/pool.c): every share runs
 * exactly once on every path (pool, threads started for the call, busy pool), a network with
 * CFNET_OPTION_THREADS > 1 runs its convolutions on its own pool, its worker threads end with
 * the network (or when the option changes), and OpenBLAS is single-threaded exactly while the
 * engine runs several shares, with the host's setting restored afterwards. */
#include "testutil.h"

#include "core/pool.h"
#include "nn/network.h"

#include <dirent.h>
#include <pthread.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pool_runs_every_share_once),
        cmocka_unit_test(busy_pool_falls_back_to_own_threads),
        cmocka_unit_test(network_pool_follows_the_thread_option),
        cmocka_unit_test(blas_is_single_threaded_inside_parallel_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
