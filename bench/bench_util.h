/* Helpers shared by the benchmark programs (header only: each bench program is one .c file).
 *
 * Timing: a case is run once to warm up, then repeated until it has taken at least
 * BENCH_MIN_SECONDS and BENCH_MIN_REPS times; the fastest repetition is reported (the machine
 * may be shared: other work only ever adds time, so the minimum is the stable estimate).
 * Threads: "T threads" means libcfnet's engine threads = T with OpenBLAS on 1 thread (mode
 * "engine") or libcfnet on 1 thread with OpenBLAS on T threads (mode "blas"; since round 35 the
 * library keeps OpenBLAS on one thread in the dense and DFT projection layers too, so mode
 * "blas" runs like 1 thread: docs/performance.md). */
#ifndef CFNET_BENCH_UTIL_H
#define CFNET_BENCH_UTIL_H

#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/simd.h" /* the kernel variant that runs (linked statically) */

#ifndef BENCH_MIN_SECONDS
#define BENCH_MIN_SECONDS 0.6
#endif
#define BENCH_MIN_REPS 3
#define BENCH_MAX_REPS 200

/* Wall-clock seconds; with BENCH_CLOCK=cpu in the environment, the process's CPU time instead
 * (for comparing single-threaded variants on a busy machine; not for the reported tables).
 * BENCH_REPS=n fixes the number of timed repetitions (for profiling). */
static inline double bench_now(void)
{
    static int cpu = -1;
    if (cpu < 0) cpu = getenv("BENCH_CLOCK") && strcmp(getenv("BENCH_CLOCK"), "cpu") == 0;
    struct timespec ts;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Fastest of the timed calls of fn(arg), in seconds, after one warm-up call. */
static inline double bench_time(void (*fn)(void *), void *arg, double min_seconds)
{
    double t[BENCH_MAX_REPS], total = 0.0;
    int n = 0, fixed = getenv("BENCH_REPS") ? atoi(getenv("BENCH_REPS")) : 0;
    if (fixed > BENCH_MAX_REPS) fixed = BENCH_MAX_REPS;
    fn(arg);
    while (fixed > 0 ? n < fixed
                     : n < BENCH_MAX_REPS && (n < BENCH_MIN_REPS || total < min_seconds)) {
        double t0 = bench_now();
        fn(arg);
        t[n] = bench_now() - t0;
        total += t[n++];
    }
    qsort(t, (size_t)n, sizeof t[0], bench_cmp_double);
    return t[0];
}

/* Threads OpenBLAS uses for one call (the pthread build); 1 if the BLAS cannot tell. */
static inline void bench_blas_threads(int n)
{
#ifdef OPENBLAS_VERSION
    openblas_set_num_threads(n);
#else
    (void)n;
#endif
}

/* One line naming the BLAS kernel that runs, as "# blas: ...". */
static inline void bench_print_blas(FILE *f)
{
#ifdef OPENBLAS_VERSION
    const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    fprintf(f, "# blas: %s| core %s | OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s\n",
            openblas_get_config(), openblas_get_corename(), ct ? ct : "(unset)",
            l2 ? l2 : "(unset)");
#else
    fprintf(f, "# blas: reference CBLAS (not OpenBLAS)\n");
#endif
}

/* One line naming libcfnet's kernel variant (generic, avx2 or avx512: the best the CPU has, or
 * the one CFNET_CPU forces), as "# cfnet kernels: ...". */
static inline void bench_print_kernels(FILE *f)
{
    const char *want = getenv("CFNET_CPU");
    fprintf(f, "# cfnet kernels: %s | CFNET_CPU=%s\n", cf_simd()->name, want ? want : "(unset)");
}

/* The integer value of option `opt` of program `prog`, in lo..hi; anything else (not a number,
 * trailing characters, out of range) is a usage error: a message and exit status 2. */
static inline int bench_int_arg(const char *prog, const char *opt, const char *v, int lo, int hi)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "%s: %s %s: must be an integer in %d..%d\n", prog, opt, v, lo, hi);
        exit(2);
    }
    return (int)x;
}

/* The environment variables the programs read, when set: BENCH_REPS (1..2147483647, at most
 * BENCH_MAX_REPS are run), BENCH_LAT_CALLS (1..1000000, at least 10 are made) and BENCH_CLOCK
 * (cpu or wall). Any other value is a usage error (a message and exit status 2), as in
 * bench/run.sh, rather than silently the default. */
static inline void bench_check_env(const char *prog)
{
    static const struct {
        const char *name;
        long hi;
    } ints[] = {{"BENCH_REPS", 2147483647L}, {"BENCH_LAT_CALLS", 1000000L}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        const char *v = getenv(ints[i].name);
        if (!v) continue;
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < 1 || x > ints[i].hi) {
            fprintf(stderr, "%s: %s=%s: must be an integer in 1..%ld\n", prog, ints[i].name, v,
                    ints[i].hi);
            exit(2);
        }
    }
    const char *clk = getenv("BENCH_CLOCK");
    if (clk && strcmp(clk, "cpu") && strcmp(clk, "wall")) {
        fprintf(stderr, "%s: BENCH_CLOCK=%s: must be cpu or wall\n", prog, clk);
        exit(2);
    }
}

/* --mode: "engine" or "blas" (usage error otherwise). */
static inline const char *bench_mode_arg(const char *prog, const char *v)
{
    if (strcmp(v, "engine") && strcmp(v, "blas")) {
        fprintf(stderr, "%s: --mode %s: must be engine or blas\n", prog, v);
        exit(2);
    }
    return v;
}

static inline void bench_fill(float *p, size_t n, unsigned seed)
{
    unsigned s = seed * 2654435761u + 1u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
}

#endif
