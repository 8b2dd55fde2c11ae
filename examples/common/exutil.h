/* Small helpers shared by the examples: error checks, timing, a progress line. */
#ifndef CFNET_EXAMPLES_EXUTIL_H
#define CFNET_EXAMPLES_EXUTIL_H

#include <cfnet/cfnet.h>

#include <stdint.h>
#include <stdio.h>

/* Evaluates a libcfnet call; on failure prints the status and cfnet_last_error() and exits 1. */
#define EX_CHECK(call) ex_check_((call), #call, __FILE__, __LINE__)
void ex_check_(cfnet_status st, const char *what, const char *file, int line);

/* Prints a message to stderr and exits 1. */
void ex_die(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;
/* Prints a message about a command-line argument to stderr and exits 2 (a usage error, like
 * the ex_arg_* readers below): for a value that is read but cannot be used. */
void ex_bad_arg(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;
/* Command-line numbers: the whole of `v` must be one decimal integer that fits the type, or one
 * finite number; otherwise prints "PROG: OPT takes ..., not 'V'" and exits 2 (a usage error).
 * Ranges are the caller's to check. */
int ex_arg_int(const char *prog, const char *opt, const char *v);
long long ex_arg_ll(const char *prog, const char *opt, const char *v);
uint64_t ex_arg_u64(const char *prog, const char *opt, const char *v);
double ex_arg_double(const char *prog, const char *opt, const char *v);
/* A comma-separated list of min_n to max_n whole numbers, each from lo to hi, with nothing
 * before, between or after them (no spaces, no sign other than '-', no empty entry); stores them
 * in out[] and returns their count. Otherwise prints "PROG: OPT takes KIND, not 'V'" and exits
 * 2. */
int ex_arg_int_list(const char *prog, const char *opt, const char *v, int min_n, int max_n,
                    long long lo, long long hi, const char *kind, int *out);
/* Creates a folder and its parents (mkdir -p); exits with a message when one cannot be made. */
void ex_make_dirs(const char *dir);

/* Allocations that exit on failure. */
void *ex_malloc(size_t size);
void *ex_calloc(size_t n, size_t size);

/* Limits OpenBLAS to one thread when the library is linked against OpenBLAS (a no-op with
 * other BLAS libraries) unless OPENBLAS_NUM_THREADS is set. libcfnet's own threads
 * (CFNET_OPTION_THREADS) split the batch; BLAS threads on top of them oversubscribe the cores and
 * were measured slower for these small matrices (see docs/results.md). */
void ex_blas_single_thread(void);

/* Seconds on a monotonic clock. */
double ex_now(void);

/* Creates an N x C x H x W tensor (exits on failure). */
cfnet_tensor *ex_tensor4(int64_t n, int64_t c, int64_t h, int64_t w);

/* Copies samples idx[0..n-1] of `src` (per-sample size `per` floats) into `dst` (n x ...). */
void ex_gather(const float *src, const int32_t *src_labels, int64_t per, const int64_t *idx,
               int64_t n, float *dst, int32_t *dst_labels);

/* Fisher-Yates shuffle of idx[0..n-1] with a splitmix64 state. */
void ex_shuffle(int64_t *idx, int64_t n, uint64_t *state);
uint64_t ex_rand(uint64_t *state);
double ex_uniform(uint64_t *state); /* [0, 1) */

/* Mean and sample standard deviation (n - 1 in the denominator; 0 for n = 1) of v[0..n-1]. */
void ex_mean_sd(const double *v, int n, double *mean, double *sd);

/* A progress line: "\r"-updated on a terminal, one plain line every `plain_every` updates
 * otherwise. */
typedef struct ex_progress {
    FILE *out;
    int tty;
    int64_t total;
    int64_t plain_every;
    double t0;
    char label[48];
} ex_progress;

void ex_progress_start(ex_progress *p, FILE *out, const char *label, int64_t total);
/* step in 1..total; loss and accuracy (fraction) of the recent training batches. */
void ex_progress_update(ex_progress *p, int64_t step, double loss, double acc);
/* Ends the line; returns the elapsed seconds. */
double ex_progress_end(ex_progress *p);

/* Appends a layer created by `expr` (which writes to `l_`) to `net`; exits on failure. */
#define EX_APPEND(net, expr)                         \
    do {                                             \
        cfnet_layer *l_ = NULL;                      \
        EX_CHECK(expr);                              \
        EX_CHECK(cfnet_network_append((net), l_));   \
    } while (0)

#endif
