/* Persistent worker threads and the BLAS thread policy; see pool.h. */
#include "core/pool.h"

#include "platform/platform.h"

#include <stdatomic.h>
#include <stdlib.h>

#ifdef CF_BLAS_OPENBLAS
#include <cblas.h> /* OpenBLAS's cblas.h declares openblas_get/set_num_threads */
#endif

/* ---- the pool ---- */

typedef struct cf_worker {
    struct cf_pool *pool;
    int index; /* share this worker runs: 1 .. threads - 1 */
    cf_thread tid;
} cf_worker;

struct cf_pool {
    int threads;   /* shares per job: workers + the caller */
    int nworkers;  /* workers actually started */
    cf_worker *workers;
    cf_mutex lock;
    cf_cond work, done;
    /* Job: fn, arg and count are written under `lock` before `gen` is increased (release);
     * a worker that sees the new generation (acquire) reads them. */
    _Atomic uint64_t gen;
    void (*fn)(void *arg, int i);
    void *arg;
    int count;
    _Atomic int pending; /* workers that have not finished the current generation */
    bool busy;           /* a caller owns the pool (under `lock`) */
    _Atomic bool shutdown;
    _Atomic uint64_t spin; /* polling time in ns (see below) */
    _Atomic uint64_t published;   /* clock() when the current job was published */
    /* The last quiet spell (see below) in one word, so that a thread never reads one spell's
     * end with another's length: its end in ns, rounded down to a multiple of 8, in the high
     * bits and its level (length CF_POOL_QUIET_NS << level) in the low 3. 0: none yet. */
    _Atomic uint64_t quiet;
    /* polling waits begun by workers and by callers; quiet spells begun (for tests) */
    _Atomic uint64_t worker_polls, caller_polls, quiets;
    uint64_t (*_Atomic clock)(void); /* cf_platform_now_ns, or a test's clock */
    int64_t (*_Atomic preemptions)(void); /* cf_platform_thread_preemptions, or a test's */
    uint64_t forkgen;      /* cf_platform_fork_generation() when the workers started */
};

/* The workers exist only in the process that started them: a child created by fork() (a host
 * forking worker processes, Python's multiprocessing) has copies of the pool without threads.
 * There the pool is never claimed (calls start threads of their own, with the same results) and
 * destroying it only frees its memory. */
static bool pool_forked(const cf_pool *p) { return cf_platform_fork_generation() != p->forkgen; }

/* How long a worker keeps polling for the next job, and a caller for the workers' end, before
 * sleeping on the condition variable (CF_POOL_SPIN_NS; CFNET_SPIN_US in the environment
 * overrides it, 0 never polls). On a virtual machine a core that sleeps is given back to the
 * host, and waking it again can take up to milliseconds, which the networks' 2-thread training
 * steps spent waiting between their layers (docs/performance.md, round 8). Polling costs at
 * most this much CPU time per job. */
#ifndef CF_POOL_SPIN_NS
#define CF_POOL_SPIN_NS 1000000u
#endif

/* CFNET_SPIN_US if set and valid; otherwise CF_POOL_SPIN_NS, or no polling when the pool has
 * more threads than the process has processors (a polling worker would then take a processor
 * from a thread with work). */
static uint64_t default_spin_ns(int threads)
{
    const char *e = getenv("CFNET_SPIN_US");
    if (e && *e) {
        char *end;
        long long us = strtoll(e, &end, 10);
        if (*end == '\0' && us >= 0 && us <= 1000000) return (uint64_t)us * 1000u;
    }
    return threads > cf_platform_cpu_count() ? 0 : CF_POOL_SPIN_NS;
}

/* Polling on a busy machine. When other processes take the processors, a polling thread
 * holds one that a thread with work needs (the README's quick start trained twice as slowly
 * at a load of 3 with polling as without, docs/performance.md round 19). A thread that finds
 * itself late -- more than CF_POOL_LATE_NS between two of its own looks at the clock while
 * polling, or a job it was polling for published that long before it saw it -- was off its
 * processor: the processors are taken, and polling only slows the others. Then no thread of
 * the pool begins a polling wait for a quiet spell (one under way ends at its own time); they
 * sleep at once, as with CFNET_SPIN_US=0, and polling resumes after the spell. The first spell
 * lasts CF_POOL_QUIET_NS. A machine that stays busy makes the pool late again soon after each
 * spell ends, and each of those polls costs the others: a late look within CF_POOL_AGAIN_NS of
 * the end of the last spell doubles the spell, up to CF_POOL_QUIET_MAX_NS (docs/performance.md
 * round 20); a late look after that begins a CF_POOL_QUIET_NS spell again. A thread late without
 * having been preempted -- its count of involuntary context switches
 * (cf_platform_thread_preemptions) the same as when it last looked -- was held by the virtual
 * machine's host, not by another thread of this machine: its polling took no processor from
 * anyone, and the pool keeps polling. On an idle virtual machine such delays of 0.2-2 ms come
 * every second or so, and the spells they began made a 2-thread layer wait for a sleeping core
 * on every call (docs/performance.md round 21). Where the system cannot count preemptions,
 * every late look counts. */
#define CF_POOL_LATE_NS 200000u            /* 0.2 ms */
#define CF_POOL_QUIET_NS 100000000u        /* 100 ms */
#define CF_POOL_AGAIN_NS 100000000u        /* 100 ms */
#define CF_POOL_QUIET_MAX_NS 1600000000u   /* 1.6 s: 100 ms doubled four times */

static uint64_t pool_now(cf_pool *p)
{
    return atomic_load_explicit(&p->clock, memory_order_relaxed)();
}

/* The fields of the quiet word: the end of the last spell, and its level. */
#define CF_POOL_LEVEL_BITS 7u
#define CF_POOL_LEVEL_MAX 4u /* CF_POOL_QUIET_NS << 4 == CF_POOL_QUIET_MAX_NS */
_Static_assert((uint64_t)CF_POOL_QUIET_NS << CF_POOL_LEVEL_MAX == CF_POOL_QUIET_MAX_NS,
               "the top level is the longest spell");
static uint64_t quiet_end(uint64_t w) { return w & ~(uint64_t)CF_POOL_LEVEL_BITS; }
static unsigned quiet_level(uint64_t w) { return (unsigned)(w & CF_POOL_LEVEL_BITS); }

/* A late look at `now`: false, changing nothing, when the thread was not preempted (it polls
 * on). During a spell it changes nothing (the threads of a pool are often late together);
 * otherwise it begins a spell, longer than the last when it comes soon after that one ended. Of threads late at once, the one whose compare-exchange succeeds begins it;
 * the spell's end and its length change together, in one word. */
/* The calling thread's count of preemptions when it last read it, and the pool whose counter it
 * read (a thread may poll in several pools, and tests give pools counters of their own). */
static _Thread_local const cf_pool *cf_seen_pool;
static _Thread_local int64_t cf_seen_preemptions;

static int64_t pool_preemptions(cf_pool *p)
{
    return atomic_load_explicit(&p->preemptions, memory_order_relaxed)();
}

/* At the start of a polling wait: the count a late look compares with, read once per thread and
 * pool. */
static void note_preemptions(cf_pool *p)
{
    if (cf_seen_pool == p) return;
    cf_seen_pool = p;
    cf_seen_preemptions = pool_preemptions(p);
}

/* At a late look: whether this thread was preempted since it last read its count (true when
 * the system cannot tell). */
static bool pool_was_preempted(cf_pool *p)
{
    int64_t n = pool_preemptions(p);
    bool was = n < 0 || cf_seen_pool != p || n != cf_seen_preemptions;
    cf_seen_pool = p;
    cf_seen_preemptions = n;
    return was;
}

static bool pool_go_quiet(cf_pool *p, uint64_t now)
{
    if (!pool_was_preempted(p)) return false; /* held by the host: polling costs no one */
    uint64_t w = atomic_load_explicit(&p->quiet, memory_order_relaxed);
    uint64_t end = quiet_end(w);
    if (now < end) return true;
    unsigned level = 0;
    if (w && now - end <= CF_POOL_AGAIN_NS)
        level = quiet_level(w) >= CF_POOL_LEVEL_MAX ? CF_POOL_LEVEL_MAX : quiet_level(w) + 1;
    uint64_t next = quiet_end(now + ((uint64_t)CF_POOL_QUIET_NS << level)) | level;
    if (!atomic_compare_exchange_strong_explicit(&p->quiet, &w, next, memory_order_relaxed,
                                                 memory_order_relaxed))
        return true;
    atomic_fetch_add_explicit(&p->quiets, 1, memory_order_relaxed);
    return true;
}

/* The polling time for a wait beginning at `now`: 0 while the pool is quiet. Counts the
 * polling waits in *count. */
static uint64_t poll_budget(cf_pool *p, uint64_t now, _Atomic uint64_t *count)
{
    uint64_t budget = atomic_load_explicit(&p->spin, memory_order_relaxed);
    if (!budget || now < quiet_end(atomic_load_explicit(&p->quiet, memory_order_relaxed))) return 0;
    note_preemptions(p);
    atomic_fetch_add_explicit(count, 1, memory_order_relaxed);
    return budget;
}

/* One look at the clock in a polling loop that began at t0 and last looked at *last: false
 * when the polling should end (its time is up, or the thread was late and preempted: then the
 * pool goes quiet). */
static bool keep_polling(cf_pool *p, uint64_t t0, uint64_t *last, uint64_t budget)
{
    uint64_t now = pool_now(p);
    if (now - *last > CF_POOL_LATE_NS && pool_go_quiet(p, now)) return false;
    *last = now;
    return now - t0 <= budget;
}

/* Polls until *gen differs from `seen` (or shutdown) for at most the spin time; true if it
 * did. */
static bool spin_for_job(cf_pool *p, uint64_t seen)
{
    uint64_t t0 = pool_now(p), last = t0, budget = poll_budget(p, t0, &p->worker_polls);
    if (!budget) return false;
    for (unsigned i = 1;; i++) {
        bool job = atomic_load_explicit(&p->gen, memory_order_acquire) != seen;
        if (job || atomic_load_explicit(&p->shutdown, memory_order_relaxed)) {
            if (job) { /* published long before this thread saw it: it was off its processor */
                uint64_t now = pool_now(p),
                         pub = atomic_load_explicit(&p->published, memory_order_relaxed);
                if (now > pub && now - pub > CF_POOL_LATE_NS) pool_go_quiet(p, now);
            }
            return true;
        }
        cf_cpu_relax();
        if (!(i & 63) && !keep_polling(p, t0, &last, budget)) return false;
    }
}

static void *worker_main(void *v)
{
    cf_worker *w = v;
    cf_pool *p = w->pool;
    uint64_t seen = 0;
    for (;;) {
        if (!spin_for_job(p, seen)) {
            cf_mutex_lock(&p->lock);
            while (!atomic_load(&p->shutdown) && atomic_load(&p->gen) == seen)
                cf_cond_wait(&p->work, &p->lock);
            cf_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->shutdown)) break;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (w->index < p->count) p->fn(p->arg, w->index);
        /* The last worker to finish wakes a caller that went to sleep; the lock orders the
         * signal after the caller's check (see pool_run). */
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            cf_mutex_lock(&p->lock);
            cf_cond_signal(&p->done);
            cf_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

static void pool_stop(cf_pool *p)
{
    cf_mutex_lock(&p->lock);
    atomic_store(&p->shutdown, true);
    cf_cond_broadcast(&p->work);
    cf_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nworkers; i++) cf_thread_join(p->workers[i].tid);
    p->nworkers = 0;
}

cfnet_status cf_pool_create(const cf_allocator *a, int threads, cf_pool **out)
{
    *out = NULL;
    if (threads <= 1) return CFNET_OK;
    cf_pool *p = cf_alloc_zero(a, 1, sizeof *p);
    CF_FAIL_IF(!p, CFNET_E_OUT_OF_MEMORY, "thread pool: out of memory");
    p->threads = threads;
    p->forkgen = cf_platform_fork_generation();
    /* Workers run libcfnet's code for as long as the network lives: a host that unloads the
     * library (dlclose) before freeing it must not pull the code from under them. */
    cf_platform_keep_self_loaded();
    atomic_store(&p->spin, default_spin_ns(threads));
    atomic_store_explicit(&p->clock, cf_platform_now_ns, memory_order_relaxed);
    atomic_store_explicit(&p->preemptions, cf_platform_thread_preemptions, memory_order_relaxed);
    p->workers = cf_alloc_zero(a, (size_t)threads - 1, sizeof *p->workers);
    if (!p->workers) {
        cf_free(p);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "thread pool: out of memory");
    }
    cf_mutex_init(&p->lock);
    cf_cond_init(&p->work);
    cf_cond_init(&p->done);
    for (int i = 0; i < threads - 1; i++) {
        p->workers[i].pool = p;
        p->workers[i].index = i + 1;
        if (!cf_thread_start(&p->workers[i].tid, worker_main, &p->workers[i])) {
            pool_stop(p);
            cf_pool_destroy(p);
            return cf_error(CFNET_E_INTERNAL, "thread pool: cannot start thread %d of %d", i + 1,
                            threads - 1);
        }
        p->nworkers = i + 1;
    }
    *out = p;
    return CFNET_OK;
}

void cf_pool_destroy(cf_pool *p)
{
    if (!p) return;
    if (pool_forked(p)) { /* no workers to stop; the lock may be held by a thread now gone */
        cf_free(p->workers);
        cf_free(p);
        return;
    }
    pool_stop(p);
    cf_cond_destroy(&p->work);
    cf_cond_destroy(&p->done);
    cf_mutex_destroy(&p->lock);
    cf_free(p->workers);
    cf_free(p);
}

int cf_pool_threads(const cf_pool *p) { return p ? p->threads : 1; }

void cf_pool_set_spin_ns(cf_pool *p, uint64_t ns)
{
    if (p) atomic_store_explicit(&p->spin, ns, memory_order_relaxed);
}

uint64_t cf_pool_spin_ns(const cf_pool *p)
{
    return p ? atomic_load_explicit(&((cf_pool *)p)->spin, memory_order_relaxed) : 0;
}

void cf_pool_set_clock(cf_pool *p, uint64_t (*clock)(void))
{
    if (p)
        atomic_store_explicit(&p->clock, clock ? clock : cf_platform_now_ns,
                              memory_order_relaxed);
}

void cf_pool_set_preemptions(cf_pool *p, int64_t (*count)(void))
{
    if (p)
        atomic_store_explicit(&p->preemptions, count ? count : cf_platform_thread_preemptions,
                              memory_order_relaxed);
}

void cf_pool_poll_stats(const cf_pool *p, uint64_t *worker_polls, uint64_t *caller_polls,
                        uint64_t *quiets)
{
    cf_pool *q = (cf_pool *)p;
    *worker_polls = p ? atomic_load_explicit(&q->worker_polls, memory_order_relaxed) : 0;
    *caller_polls = p ? atomic_load_explicit(&q->caller_polls, memory_order_relaxed) : 0;
    *quiets = p ? atomic_load_explicit(&q->quiets, memory_order_relaxed) : 0;
}

/* Claims the pool for a job of `count` shares; false if it is busy or too small. */
static bool pool_claim(cf_pool *p, int count)
{
    if (!p || count > p->threads || pool_forked(p)) return false;
    cf_mutex_lock(&p->lock);
    bool ok = !p->busy && !p->shutdown;
    if (ok) p->busy = true;
    cf_mutex_unlock(&p->lock);
    return ok;
}

static void pool_run(cf_pool *p, int count, void (*fn)(void *, int), void *arg)
{
    cf_mutex_lock(&p->lock);
    p->fn = fn;
    p->arg = arg;
    p->count = count;
    atomic_store_explicit(&p->pending, p->nworkers, memory_order_relaxed);
    atomic_store_explicit(&p->published, pool_now(p), memory_order_relaxed);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    cf_cond_broadcast(&p->work);
    cf_mutex_unlock(&p->lock);
    fn(arg, 0);
    /* Poll for the workers' end for a while, then sleep until the last one signals. */
    uint64_t t0 = pool_now(p), last = t0;
    uint64_t budget = atomic_load_explicit(&p->pending, memory_order_acquire) > 0
                          ? poll_budget(p, t0, &p->caller_polls)
                          : 0;
    for (unsigned i = 1; budget && atomic_load_explicit(&p->pending, memory_order_acquire) > 0;
         i++) {
        cf_cpu_relax();
        if (!(i & 63) && !keep_polling(p, t0, &last, budget)) break;
    }
    cf_mutex_lock(&p->lock);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0)
        cf_cond_wait(&p->done, &p->lock);
    p->busy = false;
    cf_mutex_unlock(&p->lock);
}

/* ---- the calling thread's current pool ---- */

static _Thread_local cf_pool *cf_cur_pool;
static _Thread_local int cf_last_path;

cf_pool *cf_pool_current(void) { return cf_cur_pool; }

cf_pool *cf_pool_scope_enter(cf_pool *p)
{
    cf_pool *prev = cf_cur_pool;
    cf_cur_pool = p;
    return prev;
}

void cf_pool_scope_leave(cf_pool **prev) { cf_cur_pool = *prev; }

int cf_parallel_last_path(void) { return cf_last_path; }

/* ---- threads started for one call (no pool, or the pool is busy) ---- */

typedef struct cf_once_thread {
    void (*fn)(void *, int);
    void *arg;
    int index;
    cf_thread tid;
    bool started;
} cf_once_thread;

static void *once_main(void *v)
{
    cf_once_thread *t = v;
    t->fn(t->arg, t->index);
    return NULL;
}

enum { CF_ONCE_MAX = 64 };

void cf_parallel_run(int count, void (*fn)(void *arg, int i), void *arg)
{
    if (count <= 1) {
        if (count == 1) fn(arg, 0);
        return;
    }
    cf_blas_single_enter();
    cf_pool *p = cf_cur_pool;
    int path;
    if (pool_claim(p, count)) {
        path = 1;
        pool_run(p, count, fn, arg);
    } else {
        cf_once_thread th[CF_ONCE_MAX];
        int n = count < CF_ONCE_MAX ? count : CF_ONCE_MAX, started = 0;
        for (int i = 1; i < n; i++) {
            th[i] = (cf_once_thread){.fn = fn, .arg = arg, .index = i};
            th[i].started = cf_thread_start(&th[i].tid, once_main, &th[i]);
            started += th[i].started;
        }
        path = started ? 2 : 3;
        fn(arg, 0);
        for (int i = 1; i < count; i++) {
            if (i < n && th[i].started) cf_thread_join(th[i].tid);
            else fn(arg, i);
        }
    }
    cf_last_path = path; /* after the shares, which may have run parallel calls of their own */
    cf_blas_single_leave();
}

typedef struct cf_for_job {
    void (*fn)(void *arg, int64_t i0, int64_t i1);
    void *arg;
    int64_t n;
    int shares;
} cf_for_job;

static void for_share(void *v, int i)
{
    const cf_for_job *j = v;
    j->fn(j->arg, j->n * i / j->shares, j->n * (i + 1) / j->shares);
}

void cf_parallel_for(int threads, int64_t n, int64_t min_items,
                     void (*fn)(void *arg, int64_t i0, int64_t i1), void *arg)
{
    if (n <= 0) return;
    if (min_items < 1) min_items = 1;
    int64_t most = n / min_items;
    int shares = threads < 1 ? 1 : threads;
    if (shares > most) shares = most < 1 ? 1 : (int)most;
    if (shares == 1) {
        fn(arg, 0, n);
        return;
    }
    cf_for_job j = {.fn = fn, .arg = arg, .n = n, .shares = shares};
    cf_parallel_run(shares, for_share, &j);
}

/* ---- BLAS thread policy ---- */

static cf_mutex cf_blas_lock = CF_MUTEX_INIT;
static int cf_blas_depth;  /* callers inside the policy */
static int cf_blas_saved;  /* the host's setting, restored when the last one leaves */

int cf_blas_threads(void)
{
#ifdef CF_BLAS_OPENBLAS
    return openblas_get_num_threads();
#else
    return 0;
#endif
}

void cf_blas_set_threads(int n)
{
#ifdef CF_BLAS_OPENBLAS
    openblas_set_num_threads(n);
#else
    (void)n;
#endif
}

void cf_blas_single_enter(void)
{
    cf_mutex_lock(&cf_blas_lock);
    if (cf_blas_depth++ == 0) {
        cf_blas_saved = cf_blas_threads();
        if (cf_blas_saved > 1) cf_blas_set_threads(1);
    }
    cf_mutex_unlock(&cf_blas_lock);
}

void cf_blas_single_leave(void)
{
    cf_mutex_lock(&cf_blas_lock);
    if (--cf_blas_depth == 0 && cf_blas_saved > 1) cf_blas_set_threads(cf_blas_saved);
    cf_mutex_unlock(&cf_blas_lock);
}
