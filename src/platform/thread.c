/* Threads: POSIX threads behind the functions of platform.h. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT, dladdr, RTLD_NODELETE */
#include "platform/platform.h"

#include <dlfcn.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

bool cf_thread_start(cf_thread *t, void *(*fn)(void *), void *arg)
{
    return pthread_create(t, NULL, fn, arg) == 0;
}

void cf_thread_join(cf_thread t) { pthread_join(t, NULL); }

void cf_mutex_init(cf_mutex *m) { pthread_mutex_init(m, NULL); }
void cf_mutex_destroy(cf_mutex *m) { pthread_mutex_destroy(m); }
void cf_mutex_lock(cf_mutex *m) { pthread_mutex_lock(m); }
void cf_mutex_unlock(cf_mutex *m) { pthread_mutex_unlock(m); }

void cf_cond_init(cf_cond *c) { pthread_cond_init(c, NULL); }
void cf_cond_destroy(cf_cond *c) { pthread_cond_destroy(c); }
void cf_cond_wait(cf_cond *c, cf_mutex *m) { pthread_cond_wait(c, m); }
void cf_cond_signal(cf_cond *c) { pthread_cond_signal(c); }
void cf_cond_broadcast(cf_cond *c) { pthread_cond_broadcast(c); }

void cf_once_run(cf_once *once, void (*fn)(void)) { pthread_once(once, fn); }

static _Atomic uint64_t cf_fork_gen;
static pthread_once_t cf_fork_once = PTHREAD_ONCE_INIT;
/* Runs in the child only, right after fork: an atomic increment is async-signal-safe. (glibc
 * removes the handler when the object that registered it is unloaded.) */
static void fork_child(void) { atomic_fetch_add_explicit(&cf_fork_gen, 1, memory_order_relaxed); }
static void fork_watch(void) { pthread_atfork(NULL, NULL, fork_child); }

uint64_t cf_platform_fork_generation(void)
{
    pthread_once(&cf_fork_once, fork_watch);
    return atomic_load_explicit(&cf_fork_gen, memory_order_relaxed);
}

void cf_platform_keep_loaded(void (*fn)(void))
{
#if defined(RTLD_NODELETE) && defined(RTLD_NOLOAD)
    /* POSIX lets a function pointer be represented as a void * (as dlsym returns them). */
    const void *code = NULL;
    memcpy(&code, &fn, sizeof code < sizeof fn ? sizeof code : sizeof fn);
    Dl_info info;
    if (!code || !dladdr(code, &info) || !info.dli_fname || !info.dli_fname[0]) return;
    /* RTLD_NOLOAD: only if it is loaded already (never loads anything); RTLD_NODELETE marks it
     * as never unloaded. The reference taken is never released, on purpose. */
    if (!dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE))
        (void)dlerror(); /* leave no error behind for a host that reads dlerror() */
#else
    (void)fn;
#endif
}

static pthread_once_t cf_self_once = PTHREAD_ONCE_INIT;
static void keep_self(void) { cf_platform_keep_loaded(keep_self); }
void cf_platform_keep_self_loaded(void) { pthread_once(&cf_self_once, keep_self); }

uint64_t cf_platform_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t cf_platform_thread_preemptions(void)
{
#ifdef RUSAGE_THREAD
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) == 0) return (int64_t)ru.ru_nivcsw;
#endif
    return -1;
}

int cf_platform_cpu_count(void)
{
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
