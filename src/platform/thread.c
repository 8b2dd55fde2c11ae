/* Threads: POSIX threads behind the functions of platform.h. */
#include "platform/platform.h"

#include <time.h>

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
