#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void *tu_live_alloc(void *opaque, size_t size)
{
    tu_live_bytes *c = opaque;
    char *raw = malloc(size + 16);
    if (!raw) return NULL;
    memcpy(raw, &size, sizeof size);
    atomic_fetch_add(&c->live, (long)size);
    atomic_fetch_add(&c->blocks, 1);
    return raw + 16;
}

void tu_live_free(void *opaque, void *p)
{
    tu_live_bytes *c = opaque;
    if (!p) return;
    char *raw = (char *)p - 16;
    size_t size;
    memcpy(&size, raw, sizeof size);
    atomic_fetch_sub(&c->live, (long)size);
    atomic_fetch_sub(&c->blocks, 1);
    free(raw);
}

static uint64_t tu_next(tu_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double tu_uniform(tu_rng *r) { return (double)(tu_next(r) >> 11) * 0x1.0p-53; }

double tu_normal(tu_rng *r)
{
    double u = 1.0 - tu_uniform(r), v = tu_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

void tu_fill_normal(float *x, int64_t n, tu_rng *r)
{
    for (int64_t i = 0; i < n; i++) x[i] = (float)tu_normal(r);
}

void tu_fill_separated(float *x, int64_t n, tu_rng *r)
{
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    assert_non_null(perm);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(tu_uniform(r) * (double)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(0.1 * ((double)perm[i] - 0.5 * (double)n) + 0.04 * (tu_uniform(r) - 0.5));
    free(perm);
}

cfnet_tensor *tu_tensor(int ndim, const int64_t *shape, tu_rng *r)
{
    cfnet_tensor *t = NULL;
    CF_ASSERT_OK(cfnet_tensor_create(ndim, shape, &t));
    if (r) tu_fill_normal(cfnet_tensor_data(t), cfnet_tensor_numel(t), r);
    return t;
}

cfnet_tensor *tu_output_for(const cfnet_layer *l, int64_t n)
{
    int nd;
    int64_t s[CFNET_MAX_DIMS + 1];
    CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, s + 1));
    s[0] = n;
    return tu_tensor(nd + 1, s, NULL);
}

void tu_rot90_planes(const float *in, float *out, int64_t planes, int64_t S, int quarter)
{
    int q = ((quarter % 4) + 4) % 4;
    for (int64_t p = 0; p < planes; p++) {
        const float *a = in + p * S * S;
        float *b = out + p * S * S;
        for (int64_t i = 0; i < S; i++) {
            for (int64_t j = 0; j < S; j++) {
                /* One counter-clockwise quarter turn: (u, v) -> (-v, u), i.e. the value at
                 * (i, j) moves to (S-1-j, i). */
                int64_t si = i, sj = j;
                for (int k = 0; k < q; k++) {
                    int64_t ni = S - 1 - sj, nj = si;
                    si = ni;
                    sj = nj;
                }
                b[si * S + sj] = a[i * S + j];
            }
        }
    }
}

void tu_rot90_p4(const float *in, float *out, int64_t n, int64_t C, int64_t S, int quarter)
{
    int q = ((quarter % 4) + 4) % 4;
    for (int64_t b = 0; b < n * C; b++)
        for (int r = 0; r < 4; r++)
            tu_rot90_planes(in + (b * 4 + r) * S * S, out + (b * 4 + (r + q) % 4) * S * S, 1, S,
                            q);
}

/* Rotates an n x <shape> tensor's data (planes of the last two axes; p4: axis -3 is the
 * rotation axis) into out. */
static void rotate_batch(const cfnet_tensor *t, const float *in, float *out, int p4, int q)
{
    int64_t n = cfnet_tensor_dim(t, 0), S = cfnet_tensor_dim(t, -1);
    int64_t planes = cfnet_tensor_numel(t) / (S * S);
    if (p4) tu_rot90_p4(in, out, n, planes / (4 * n), S, q);
    else tu_rot90_planes(in, out, planes, S, q);
}

double tu_rot90_error(cfnet_layer *l, const cfnet_tensor *x, int in_p4, int out_p4, int q,
                      cfnet_mode mode)
{
    int64_t n = cfnet_tensor_dim(x, 0);
    int nd;
    int64_t s[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_tensor_shape(x, &nd, s));
    cfnet_tensor *xr = tu_tensor(nd, s, NULL);
    cfnet_tensor *y = tu_output_for(l, n), *yr = tu_output_for(l, n), *ry = tu_output_for(l, n);
    rotate_batch(x, cfnet_tensor_data(x), cfnet_tensor_data(xr), in_p4, q);
    CF_ASSERT_OK(cfnet_layer_forward(l, (cfnet_tensor *)x, y, mode));
    CF_ASSERT_OK(cfnet_layer_forward(l, xr, yr, mode));
    rotate_batch(y, cfnet_tensor_data(y), cfnet_tensor_data(ry), out_p4, q);
    double e = tu_max_rel_diff(cfnet_tensor_data(yr), cfnet_tensor_data(ry), cfnet_tensor_numel(y));
    cfnet_tensor_free(xr);
    cfnet_tensor_free(y);
    cfnet_tensor_free(yr);
    cfnet_tensor_free(ry);
    return e;
}

/* rho = [[0, -1], [1, 0]], F = [[-1, 0], [0, 1]] acting on (u, v). */
static void d4_matrix(int g, int m[4])
{
    int a[4] = {1, 0, 0, 1};
    if (g >= 4) a[0] = -1;
    for (int q = 0; q < (g & 3); q++) {
        int b[4] = {-a[2], -a[3], a[0], a[1]}; /* rho * a */
        memcpy(a, b, sizeof b);
    }
    memcpy(m, a, sizeof a);
}

int tu_d4_mul(int a, int b)
{
    int ma[4], mb[4], mc[4], mg[4];
    d4_matrix(a, ma);
    d4_matrix(b, mb);
    mc[0] = ma[0] * mb[0] + ma[1] * mb[2];
    mc[1] = ma[0] * mb[1] + ma[1] * mb[3];
    mc[2] = ma[2] * mb[0] + ma[3] * mb[2];
    mc[3] = ma[2] * mb[1] + ma[3] * mb[3];
    for (int g = 0; g < 8; g++) {
        d4_matrix(g, mg);
        if (memcmp(mg, mc, sizeof mg) == 0) return g;
    }
    fail_msg("tu_d4_mul: no element for %d * %d", a, b);
    return -1;
}

int tu_d4_inv(int a)
{
    for (int g = 0; g < 8; g++)
        if (tu_d4_mul(a, g) == 0) return g;
    fail_msg("tu_d4_inv: no inverse for %d", a);
    return -1;
}

void tu_d4_planes(const float *in, float *out, int64_t planes, int64_t S, int g)
{
    float *tmp = malloc((size_t)(planes * S * S) * sizeof *tmp);
    assert_non_null(tmp);
    for (int64_t p = 0; p < planes; p++)
        for (int64_t i = 0; i < S; i++)
            for (int64_t j = 0; j < S; j++)
                tmp[(p * S + i) * S + j] = in[(p * S + i) * S + (g >= 4 ? S - 1 - j : j)];
    tu_rot90_planes(tmp, out, planes, S, g & 3);
    free(tmp);
}

void tu_d4_p4m(const float *in, float *out, int64_t n, int64_t C, int64_t S, int g)
{
    for (int64_t b = 0; b < n * C; b++)
        for (int h = 0; h < 8; h++)
            tu_d4_planes(in + (b * 8 + h) * S * S, out + (b * 8 + tu_d4_mul(g, h)) * S * S, 1, S,
                         g);
}

static void d4_batch(const cfnet_tensor *t, const float *in, float *out, int p4m, int g)
{
    int64_t n = cfnet_tensor_dim(t, 0), S = cfnet_tensor_dim(t, -1);
    int64_t planes = cfnet_tensor_numel(t) / (S * S);
    if (p4m) tu_d4_p4m(in, out, n, planes / (8 * n), S, g);
    else tu_d4_planes(in, out, planes, S, g);
}

double tu_d4_error(cfnet_layer *l, const cfnet_tensor *x, int in_p4m, int out_p4m, int g,
                   cfnet_mode mode)
{
    int64_t n = cfnet_tensor_dim(x, 0);
    int nd;
    int64_t s[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_tensor_shape(x, &nd, s));
    cfnet_tensor *xg = tu_tensor(nd, s, NULL);
    cfnet_tensor *y = tu_output_for(l, n), *yg = tu_output_for(l, n), *gy = tu_output_for(l, n);
    d4_batch(x, cfnet_tensor_data(x), cfnet_tensor_data(xg), in_p4m, g);
    CF_ASSERT_OK(cfnet_layer_forward(l, (cfnet_tensor *)x, y, mode));
    CF_ASSERT_OK(cfnet_layer_forward(l, xg, yg, mode));
    d4_batch(y, cfnet_tensor_data(y), cfnet_tensor_data(gy), out_p4m, g);
    double e = tu_max_rel_diff(cfnet_tensor_data(yg), cfnet_tensor_data(gy), cfnet_tensor_numel(y));
    cfnet_tensor_free(xg);
    cfnet_tensor_free(y);
    cfnet_tensor_free(yg);
    cfnet_tensor_free(gy);
    return e;
}

double tu_max_rel_diff(const float *a, const float *b, int64_t n)
{
    double md = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return md / (mb > 1e-30 ? mb : 1e-30);
}

static double loss_of(cfnet_layer *l, cfnet_tensor *x, cfnet_tensor *y, const float *w,
                      cfnet_mode mode)
{
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, mode));
    const float *yd = cfnet_tensor_data(y);
    double s = 0;
    for (int64_t i = 0; i < cfnet_tensor_numel(y); i++) s += (double)yd[i] * (double)w[i];
    return s;
}

static double check_tensor(cfnet_layer *l, cfnet_tensor *x, cfnet_tensor *y, const float *w,
                           cfnet_mode mode, float *vals, const float *analytic, int64_t n,
                           double h, int max_checks, tu_rng *r)
{
    int64_t count = (max_checks > 0 && max_checks < n) ? max_checks : n;
    double *num = malloc((size_t)count * sizeof *num);
    int64_t *idx = malloc((size_t)count * sizeof *idx);
    assert_non_null(num);
    assert_non_null(idx);
    double scale = 0;
    for (int64_t c = 0; c < count; c++) {
        int64_t i = count == n ? c : (int64_t)(tu_uniform(r) * (double)n);
        float keep = vals[i];
        vals[i] = (float)(keep + h);
        double hp = (double)vals[i] - keep;
        double lp = loss_of(l, x, y, w, mode);
        vals[i] = (float)(keep - h);
        double hm = keep - (double)vals[i];
        double lm = loss_of(l, x, y, w, mode);
        vals[i] = keep;
        num[c] = (lp - lm) / (hp + hm);
        idx[c] = i;
        if (fabs(num[c]) > scale) scale = fabs(num[c]);
    }
    scale *= 1e-2;
    if (scale < 1e-6) scale = 1e-6;
    double worst = 0;
    for (int64_t c = 0; c < count; c++) {
        double a = analytic[idx[c]];
        double den = fmax(fmax(fabs(a), fabs(num[c])), scale);
        double e = fabs(a - num[c]) / den;
        if (e > worst || isnan(e)) worst = isnan(e) ? INFINITY : e;
    }
    free(num);
    free(idx);
    return worst;
}

double tu_gradcheck(cfnet_layer *l, cfnet_tensor *x, cfnet_mode mode, double h, int max_checks,
                    double *worst_param)
{
    tu_rng r = {12345};
    int64_t n = cfnet_tensor_dim(x, 0);
    cfnet_tensor *y = tu_output_for(l, n);
    cfnet_tensor *dy = tu_output_for(l, n);
    cfnet_tensor *dx = NULL;
    int nd;
    int64_t s[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_tensor_shape(x, &nd, s));
    CF_ASSERT_OK(cfnet_tensor_create(nd, s, &dx));
    tu_fill_normal(cfnet_tensor_data(dy), cfnet_tensor_numel(dy), &r);
    const float *w = cfnet_tensor_data(dy);

    CF_ASSERT_OK(cfnet_layer_zero_grad(l));
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, mode));
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));

    double worst = check_tensor(l, x, y, w, mode, cfnet_tensor_data(x), cfnet_tensor_data(dx),
                                cfnet_tensor_numel(x), h, max_checks, &r);
    double wp = 0;
    for (int p = 0; p < cfnet_layer_param_count(l); p++) {
        cfnet_tensor *pt = cfnet_layer_param(l, p), *gt = cfnet_layer_grad(l, p);
        double e = check_tensor(l, x, y, w, mode, cfnet_tensor_data(pt), cfnet_tensor_data(gt),
                                cfnet_tensor_numel(pt), h, max_checks, &r);
        if (e > wp) wp = e;
    }
    if (worst_param) *worst_param = wp;
    cfnet_tensor_free(y);
    cfnet_tensor_free(dy);
    cfnet_tensor_free(dx);
    return worst;
}

#ifndef TU_DEFAULT_OUTDIR /* set by the Makefile to $(abspath $(BUILD))/test-output */
#define TU_DEFAULT_OUTDIR "build/default/test-output"
#endif

const char *tu_outdir(void)
{
    const char *d = getenv("CFNET_TEST_OUTDIR");
    if (!d || !*d) d = TU_DEFAULT_OUTDIR;
    char buf[1024];
    size_t len = strlen(d);
    if (len < sizeof buf) {
        memcpy(buf, d, len + 1);
        for (size_t i = 1; i <= len; i++) {
            if (buf[i] == '/' || buf[i] == '\0') {
                char c = buf[i];
                buf[i] = '\0';
                if (mkdir(buf, 0755) != 0 && errno != EEXIST) break;
                buf[i] = c;
            }
        }
    }
    return d;
}

/* CFNET_TEST_FILTER=PATTERN runs only the cases of a suite whose names match PATTERN (cmocka's
 * `*` and `?`), e.g. CFNET_TEST_FILTER='pool_equivariant*' build/default/tests/test_pool. Every suite
 * links this file, so the filter is set before its main() runs. */
__attribute__((constructor)) static void tu_filter_from_env(void)
{
    const char *f = getenv("CFNET_TEST_FILTER");
    if (f && *f) cmocka_set_test_filter(f);
}

int tu_missing(const char *what, const char *package)
{
    const char *strict = getenv("CFNET_TEST_STRICT");
    int fails = strict && !strcmp(strict, "1");
    printf("%s %s: %s is not installed%s\n", fails ? "FAIL:" : "SKIPPED", what, package,
           fails ? "; CFNET_TEST_STRICT=1 makes this a failure, not a skip (scripts/install-deps "
                   "--extra installs it)" : " (scripts/install-deps --extra)");
    fflush(stdout);
    const char *log = getenv("CFNET_TEST_SKIPLOG");
    FILE *f = log && *log ? fopen(log, "a") : NULL;
    if (f) {
        fprintf(f, "%s %s: %s is not installed\n", fails ? "FAILED (strict):" : "SKIPPED", what,
                package);
        fclose(f);
    }
    return fails;
}
