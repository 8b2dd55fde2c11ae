#include "exutil.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

void ex_check_(cfnet_status st, const char *what, const char *file, int line)
{
    if (st == CFNET_OK) return;
    fprintf(stderr, "\n%s:%d: %s failed: %s: %s\n", file, line, what, cfnet_status_string(st),
            cfnet_last_error());
    exit(1);
}

/* The message of ex_die and ex_bad_arg, then the exit status. */
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
static void die_with(int status, const char *fmt, va_list ap)
{
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    exit(status);
}

void ex_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    die_with(1, fmt, ap);
}

void ex_bad_arg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    die_with(2, fmt, ap);
}

static void arg_error(const char *prog, const char *opt, const char *kind, const char *v)
{
    fprintf(stderr, "%s: %s takes %s, not '%s'\n", prog, opt, kind, v);
    exit(2);
}

long long ex_arg_ll(const char *prog, const char *opt, const char *v)
{
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || errno == ERANGE) arg_error(prog, opt, "a whole number", v);
    return x;
}

int ex_arg_int(const char *prog, const char *opt, const char *v)
{
    long long x = ex_arg_ll(prog, opt, v);
    if (x < INT_MIN || x > INT_MAX) arg_error(prog, opt, "a whole number", v);
    return (int)x;
}

uint64_t ex_arg_u64(const char *prog, const char *opt, const char *v)
{
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    /* strtoull takes "-1" as 2^64 - 1: a sign is refused */
    if (end == v || *end != '\0' || errno == ERANGE || strchr(v, '-'))
        arg_error(prog, opt, "a whole number from 0", v);
    return (uint64_t)x;
}

double ex_arg_double(const char *prog, const char *opt, const char *v)
{
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end != '\0' || errno == ERANGE || !isfinite(x))
        arg_error(prog, opt, "a number", v);
    return x;
}

int ex_arg_int_list(const char *prog, const char *opt, const char *v, int min_n, int max_n,
                    long long lo, long long hi, const char *kind, int *out)
{
    int n = 0;
    const char *p = v;
    for (;;) {
        char *end = NULL;
        /* strtoll would skip leading spaces and take '+': an entry starts with a digit or '-' */
        if (n == max_n || !(*p == '-' || (*p >= '0' && *p <= '9'))) arg_error(prog, opt, kind, v);
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno == ERANGE || x < lo || x > hi) arg_error(prog, opt, kind, v);
        out[n++] = (int)x;
        if (*end == '\0') break;
        if (*end != ',') arg_error(prog, opt, kind, v);
        p = end + 1;
    }
    if (n < min_n) arg_error(prog, opt, kind, v);
    return n;
}

void *ex_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p) ex_die("out of memory (%zu bytes)", size);
    return p;
}

void *ex_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) ex_die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

/* Weak: resolved only when OpenBLAS is linked. */
extern void openblas_set_num_threads(int n) __attribute__((weak));

void ex_blas_single_thread(void)
{
    if (openblas_set_num_threads && !getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
}

double ex_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

cfnet_tensor *ex_tensor4(int64_t n, int64_t c, int64_t h, int64_t w)
{
    int64_t shape[4] = {n, c, h, w};
    cfnet_tensor *t = NULL;
    EX_CHECK(cfnet_tensor_create(4, shape, &t));
    return t;
}

void ex_gather(const float *src, const int32_t *src_labels, int64_t per, const int64_t *idx,
               int64_t n, float *dst, int32_t *dst_labels)
{
    for (int64_t i = 0; i < n; i++) {
        memcpy(dst + i * per, src + idx[i] * per, (size_t)per * sizeof *dst);
        if (dst_labels) dst_labels[i] = src_labels[idx[i]];
    }
}

uint64_t ex_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double ex_uniform(uint64_t *state)
{
    return (double)(ex_rand(state) >> 11) * (1.0 / 9007199254740992.0);
}

void ex_shuffle(int64_t *idx, int64_t n, uint64_t *state)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(ex_rand(state) % (uint64_t)(i + 1));
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

void ex_progress_start(ex_progress *p, FILE *out, const char *label, int64_t total)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->tty = isatty(fileno(out));
    p->total = total > 0 ? total : 1;
    p->plain_every = p->total / 10 > 0 ? p->total / 10 : 1;
    p->t0 = ex_now();
    snprintf(p->label, sizeof p->label, "%s", label);
}

static void fmt_time(char *buf, size_t n, double s)
{
    if (s < 0) s = 0;
    if (s > 1e7) s = 1e7;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void ex_progress_update(ex_progress *p, int64_t step, double loss, double acc)
{
    if (!p->tty && step % p->plain_every != 0 && step != p->total) return;
    double el = ex_now() - p->t0;
    double eta = step > 0 ? el / (double)step * (double)(p->total - step) : 0;
    char e[48], r[48];
    fmt_time(e, sizeof e, el);
    fmt_time(r, sizeof r, eta);
    int width = 24, fill = (int)((double)width * (double)step / (double)p->total);
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    char a[32] = "";
    if (!isnan(acc)) snprintf(a, sizeof a, " acc %5.1f%%", 100.0 * acc);
    fprintf(p->out, "%s%-14s [%s] step %5lld/%-5lld loss %6.3f%s %s ETA %s%s",
            p->tty ? "\r" : "", p->label, bar, (long long)step, (long long)p->total, loss, a, e,
            r, p->tty ? "\033[K" : "\n");
    fflush(p->out);
}

double ex_progress_end(ex_progress *p)
{
    if (p->tty) {
        fputc('\n', p->out);
        fflush(p->out);
    }
    return ex_now() - p->t0;
}

void ex_mean_sd(const double *v, int n, double *mean, double *sd)
{
    double m = 0.0, q = 0.0;
    for (int i = 0; i < n; i++) m += v[i];
    m = n > 0 ? m / n : 0.0;
    for (int i = 0; i < n; i++) q += (v[i] - m) * (v[i] - m);
    *mean = m;
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0.0;
}

void ex_make_dirs(const char *dir)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) ex_die("folder name too long: %s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0777) && errno != EEXIST) ex_die("cannot create %s", tmp);
            *p = '/';
        }
    if (mkdir(tmp, 0777) && errno != EEXIST) ex_die("cannot create %s", tmp);
}
