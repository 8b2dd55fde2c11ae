/* Threads: POSIX threads behind the functions of platform.h. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "platform/platform.h"

#include <sched.h>
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

uint64_t cf_platform_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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
