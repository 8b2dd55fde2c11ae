/* Persistent worker threads and the BLAS thread policy (private).
 *
 * A network with CFNET_OPTION_THREADS = T > 1 owns a pool of T - 1 worker threads, created when
 * the option is set and joined by cfnet_network_free (or when the option changes). Every public
 * network function makes the network's pool the calling thread's current pool for the duration
 * of the call (CF_POOL_SCOPE, like the allocator scope), and the convolution engine runs its
 * per-thread shares through cf_parallel_run, which uses that pool.
 *
 * The pool runs one job at a time. A caller that finds it busy (another thread running
 * inference on the same network, which is allowed) or too small, or that has no current pool (a
 * standalone layer), starts threads for that call instead, as the engine always did before the
 * pool; if even that fails, the shares run one after the other in the caller. Results never
 * depend on which of these ran: share i always does the same work.
 *
 * BLAS thread policy: while the engine runs more than one share at once, OpenBLAS is kept on
 * one thread (a share that calls sgemm must not start OpenBLAS's own threads on top of the
 * engine's, which would oversubscribe the cores). The dense and DFT projection layers, whose
 * sgemm calls run outside the shares, keep it on one thread around them on any number of
 * engine threads: a network asked for 1 thread uses one CPU, and OpenBLAS's workers, which
 * poll in sched_yield for about 0.1 s after each product they share, are never woken. The
 * first of possibly concurrent callers saves the host's setting (openblas_get_num_threads) and
 * sets 1; the last one restores it. Only OpenBLAS has such a setting; with another BLAS (make
 * BLAS=blas) the policy does nothing. */
#ifndef CFNET_CORE_POOL_H
#define CFNET_CORE_POOL_H

#include "core/core.h"
#include "platform/platform.h"

typedef struct cf_pool cf_pool;

/* A pool (allocated from `a`, NULL: the default) for `threads` shares (threads - 1 workers; the caller runs share 0). threads <= 1 gives
 * *out = NULL and CFNET_OK. */
cfnet_status cf_pool_create(const cf_allocator *a, int threads, cf_pool **out);
/* Stops and joins the workers, frees the pool (NULL: nothing). Must not run concurrently with a
 * job on the pool. */
void cf_pool_destroy(cf_pool *p);
/* Shares the pool runs at once (1 for NULL). */
int cf_pool_threads(const cf_pool *p);
/* How long (ns) the pool's workers poll for the next job, and a caller for the end of its job,
 * before sleeping: a new pool takes CFNET_SPIN_US from the environment (whole microseconds,
 * 0 to 1000000; anything else is ignored), or else 1 ms, or 0 when it has more threads than
 * the process has processors. The setter is for tests (NULL: nothing); the getter gives 0 for
 * NULL. */
void cf_pool_set_spin_ns(cf_pool *p, uint64_t ns);
uint64_t cf_pool_spin_ns(const cf_pool *p);
/* A thread found late while polling and preempted meanwhile (off its processor for another
 * thread: the machine is busy) stops all polling of the pool for a quiet spell: 100 ms, doubled
 * up to 1.6 s while the pool is late again soon after each spell (pool.c). For tests: the clock
 * the pool reads (NULL: the monotonic clock, cf_platform_now_ns), the calling thread's count of
 * preemptions it reads (NULL: cf_platform_thread_preemptions; a count below 0 means unknown,
 * and every late look counts), and the polling waits begun so far by the workers (for the next
 * job) and by callers (for their job's end), and the quiet spells begun (all 0 for NULL). */
void cf_pool_set_clock(cf_pool *p, uint64_t (*clock)(void));
void cf_pool_set_preemptions(cf_pool *p, int64_t (*count)(void));
void cf_pool_poll_stats(const cf_pool *p, uint64_t *worker_polls, uint64_t *caller_polls,
                        uint64_t *quiets);

/* The calling thread's current pool, and the scope that sets it until the end of the block. */
cf_pool *cf_pool_current(void);
cf_pool *cf_pool_scope_enter(cf_pool *p);
void cf_pool_scope_leave(cf_pool **prev);
#define CF_POOL_SCOPE(p)                                                                   \
    cf_pool *cf_pool_prev_ CF_SCOPE_EXIT(cf_pool_scope_leave) = cf_pool_scope_enter(p)

/* Runs fn(arg, i) for every i in [0, count), share 0 in the caller, the others at the same time
 * on the current pool's workers (or on threads started for the call, see above); returns when
 * all are done. Applies the BLAS thread policy while count > 1. */
void cf_parallel_run(int count, void (*fn)(void *arg, int i), void *arg);

/* The loops of the layers other than convolutions (ReLU, pooling, batch norm): fn(arg, i0, i1)
 * on contiguous ranges covering [0, n), one per share, at most `threads` shares and each of at
 * least `min_items` items, through cf_parallel_run; a single fn(arg, 0, n) in the caller when
 * that leaves one share. Share i's range depends only on (n, min_items, threads). For loops
 * whose items are independent, so that the result does not depend on the split. */
void cf_parallel_for(int threads, int64_t n, int64_t min_items,
                     void (*fn)(void *arg, int64_t i0, int64_t i1), void *arg);
/* Items of `item_floats` floats each that make a share worth waking another thread for (about
 * CF_PAR_MIN_FLOATS floats of work, at least 1). */
#define CF_PAR_MIN_FLOATS ((int64_t)1 << 15)
static inline int64_t cf_par_min_items(int64_t item_floats)
{
    return item_floats >= CF_PAR_MIN_FLOATS ? 1
                                            : (CF_PAR_MIN_FLOATS + item_floats - 1) /
                                                  (item_floats > 0 ? item_floats : 1);
}

/* How the last multi-share cf_parallel_run of this thread ran (for tests): 1 pool, 2 threads
 * started for the call, 3 serially in the caller, 0 none yet. */
int cf_parallel_last_path(void);

/* The BLAS thread policy as a nestable, thread-safe scope (cf_parallel_run uses it). */
void cf_blas_single_enter(void);
void cf_blas_single_leave(void);
/* OpenBLAS's current thread count, or 0 when the BLAS is not OpenBLAS. */
int cf_blas_threads(void);
/* Sets OpenBLAS's thread count (no-op for another BLAS); for tests and benchmarks. */
void cf_blas_set_threads(int n);

#endif /* CFNET_CORE_POOL_H */
