/* Runtime CPU dispatch (src/kernels/simd.c): every variant the CPU supports computes exactly what
 * the portable C variant computes (bit for bit, on random data of every length 0..70 at every
 * alignment, special values included); CFNET_CPU selects the variant; the fused batch norm +
 * ReLU equals the two layers one after the other.
 *
 *   test_simd            the cmocka suite
 *   test_simd --list     prints the variants this machine supports, one per line (used by
 *                        tests/test_cpu_variants.sh to run the layer suites under each) */
#include "testutil.h"

#include "kernels/simd.h"
#include "layers/fused.h"
#include "nn/layer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAXN = 70, PAD = 32 };

static void fill(float *x, int n, tu_rng *r, bool specials)
{
    tu_fill_normal(x, n, r);
    if (specials && n > 5) {
        x[1] = -0.0f;
        x[2] = 0.0f;
        x[3] = NAN;
        x[4] = INFINITY;
        x[5] = -INFINITY;
    }
}

static void check_variant(const cf_simd_ops *g, const cf_simd_ops *v)
{
    tu_rng r = {42};
    float x[MAXN + PAD], y[MAXN + PAD], dy[MAXN + PAD], a[MAXN + PAD], b[MAXN + PAD];
    for (int off = 0; off < 8; off++) {
        for (int n = 0; n <= MAXN; n++) {
            fill(x, MAXN + PAD, &r, true);
            fill(dy, MAXN + PAD, &r, false);
            fill(y, MAXN + PAD, &r, true);
            const float *xs = x + off, *ys = y + off, *dys = dy + off;
            /* element-wise kernels: compare whole buffers, so nothing is written out of range */
            memset(a, 0x55, sizeof a);
            memset(b, 0x55, sizeof b);
            g->relu(xs, a + off, n);
            v->relu(xs, b + off, n);
            assert_memory_equal(a, b, sizeof a);
            g->relu_backward(ys, dys, a + off, n);
            v->relu_backward(ys, dys, b + off, n);
            assert_memory_equal(a, b, sizeof a);
            g->add_scalar(a + off, xs, n, 0.37f);
            v->add_scalar(b + off, xs, n, 0.37f);
            assert_memory_equal(a, b, sizeof a);
            /* the bias added in place to rows of n (3 rows, stride n + 3): exactly y + b,
             * nothing between the rows or after them written */
            if (off + 3 * (n + 3) <= MAXN + PAD) {
                const float bias[3] = {0.37f, -1.25f, 3.0e-3f};
                memcpy(a, y, sizeof a);
                memcpy(b, y, sizeof b);
                v->add_bias_rows(b + off, n + 3, 3, n, bias);
                for (int o = 0; o < 3; o++)
                    for (int i = 0; i < n; i++) {
                        volatile float want = y[off + o * (n + 3) + i] + bias[o];
                        a[off + o * (n + 3) + i] = want;
                    }
                assert_memory_equal(a, b, sizeof a);
                memcpy(a, y, sizeof a);
                g->add_bias_rows(a + off, n + 3, 3, n, bias);
                assert_memory_equal(a, b, sizeof a);
            }
            /* one row of every length: the vector variants' loops past their first vectors */
            {
                const float bias = -0.625f;
                memcpy(a, y, sizeof a);
                memcpy(b, y, sizeof b);
                v->add_bias_rows(b + off, n, 1, n, &bias);
                for (int i = 0; i < n; i++) {
                    volatile float want = y[off + i] + bias;
                    a[off + i] = want;
                }
                assert_memory_equal(a, b, sizeof a);
            }
            for (int relu = 0; relu < 2; relu++) {
                g->affine(xs, a + off, n, 0.1f, 1.7f, -0.3f, relu);
                v->affine(xs, b + off, n, 0.1f, 1.7f, -0.3f, relu);
                assert_memory_equal(a, b, sizeof a);
            }
            g->bn_dx(xs, dys, a + off, n, 0.9f, 0.01f, 0.2f, -0.4f);
            v->bn_dx(xs, dys, b + off, n, 0.9f, 0.01f, 0.2f, -0.4f);
            assert_memory_equal(a, b, sizeof a);
            /* sums (finite data) */
            fill(x, MAXN + PAD, &r, false);
            double s1 = g->sum(xs, 0, 1, n), s2 = v->sum(xs, 0, 1, n);
            assert_memory_equal(&s1, &s2, sizeof s1);
            s1 = g->sum_sq_dev(xs, 0, 1, n, 0.3);
            s2 = v->sum_sq_dev(xs, 0, 1, n, 0.3);
            assert_memory_equal(&s1, &s2, sizeof s1);
            double d1 = 1.5, e1 = -2.5, d2 = 1.5, e2 = -2.5;
            g->sum_dy_dyx(xs, dys, 0, 1, n, 0.3, &d1, &e1);
            v->sum_dy_dyx(xs, dys, 0, 1, n, 0.3, &d2, &e2);
            assert_memory_equal(&d1, &d2, sizeof d1);
            assert_memory_equal(&e1, &e2, sizeof e1);
            /* and the sums are right (against a plain double loop) */
            double ref = 0;
            for (int i = 0; i < n; i++) ref += xs[i];
            assert_true(fabs(g->sum(xs, 0, 1, n) - ref) <= 1e-12 * (1.0 + fabs(ref)) + 1e-9);
        }
    }
    /* Runs of a tile as im2col / col2im use them: random runs with consecutive dst, rows
     * [r0, r1) of a column chunk with row stride ld (slack after the last column), each row
     * reading at its own offset rowoff[q]. */
    enum { SRC = 512, DST = 512, ROWS = 5, LD = 480 };
    static float src[SRC + CF_RUN_BLOCK + ROWS * 8], d1[ROWS * LD], d2[ROWS * LD];
    int32_t rowoff[ROWS];
    cf_run runs[24];
    for (int rep = 0; rep < 200; rep++) {
        int nr = 1 + (int)(tu_uniform(&r) * 24), pos = 0;
        for (int i = 0; i < nr; i++) {
            int len = 1 + (int)(tu_uniform(&r) * 19);
            runs[i].dst = pos;
            runs[i].src = (int)(tu_uniform(&r) * (SRC - 24));
            runs[i].len = len;
            pos += len;
        }
        for (int q = 0; q < ROWS; q++) rowoff[q] = (int32_t)(tu_uniform(&r) * ROWS * 8);
        int r0 = (int)(tu_uniform(&r) * 2), r1 = r0 + 1 + (int)(tu_uniform(&r) * (ROWS - r0));
        fill(src, SRC + CF_RUN_BLOCK + ROWS * 8, &r, false);
        fill(d1, ROWS * LD, &r, false);
        memcpy(d2, d1, sizeof d1);
        g->im2col_runs(d1, LD, src, rowoff, r0, r1, runs, runs + nr);
        v->im2col_runs(d2, LD, src, rowoff, r0, r1, runs, runs + nr);
        assert_memory_equal(d1, d2, sizeof d1);
        for (int q = r0; q < r1; q++)
            for (int i = 0; i < nr; i++) /* the runs themselves hold their inputs */
                for (int k = 0; k < runs[i].len; k++) {
                    /* a later run overwrites an earlier run's overshoot, never its columns */
                    assert_memory_equal(&d1[(q - r0) * LD + runs[i].dst + k],
                                        &src[rowoff[q] + runs[i].src + k], sizeof(float));
                }
        /* col2im direction (dst[rowoff + run.src] += src[row + run.dst]): overlapping
         * destinations across rows and runs, exact sums in the same order */
        float *acc = d1, *acc2 = d2;
        fill(acc, ROWS * LD, &r, false);
        /* negative zeros everywhere: a vector tail past a run must leave them as they are
         * (adding 0 there would turn them into +0) */
        for (int i = 0; i < ROWS * LD; i += 3) acc[i] = -0.0f;
        memcpy(acc2, acc, sizeof d1);
        const float *cs = src; /* column gradients: rows of stride 64 */
        g->col2im_runs(acc, cs, 64, rowoff, r0, r1, runs, runs + (nr < 6 ? nr : 6));
        v->col2im_runs(acc2, cs, 64, rowoff, r0, r1, runs, runs + (nr < 6 ? nr : 6));
        assert_memory_equal(acc, acc2, sizeof d1);
        /* the conic output scatter and the gradient gather: disjoint destinations, one run
         * per 20-float slot */
        for (int i = 0; i < nr; i++) {
            runs[i].src = 20 * i;
            runs[i].dst = (int)(tu_uniform(&r) * (DST - 24));
        }
        fill(d1, ROWS * LD, &r, false);
        memcpy(d2, d1, sizeof d1);
        /* the conic output scatter of 3 rows (+ bias) and the gradient gather */
        static const float bias[3] = {-0.25f, 0.5f, 0.0f};
        for (int bi = 0; bi < 2; bi++) {
            const float *bs = bi ? bias : NULL;
            g->scatter_runs(d1, 600, src, 16, 3, bs, runs, runs + nr);
            v->scatter_runs(d2, 600, src, 16, 3, bs, runs, runs + nr);
            assert_memory_equal(d1, d2, sizeof d1);
            for (int o = 0; o < 3; o++)
                for (int i = 0; i < nr; i++)
                    for (int k = 0; k < runs[i].len; k++)
                        assert_true(d1[o * 600 + runs[i].src + k] ==
                                    src[o * 16 + runs[i].dst + k] + (bs ? bs[o] : 0.0f));
        }
        for (int i = 0; i < nr; i++) { /* gather: disjoint destination slots again */
            int t = runs[i].src;
            runs[i].src = runs[i].dst;
            runs[i].dst = t;
        }
        g->gather_runs(d1, 600, src, 16, 3, runs, runs + nr);
        v->gather_runs(d2, 600, src, 16, 3, runs, runs + nr);
        assert_memory_equal(d1, d2, sizeof d1);
        for (int o = 0; o < 3; o++)
            for (int i = 0; i < nr; i++)
                assert_memory_equal(d1 + o * 600 + runs[i].dst, src + o * 16 + runs[i].src,
                                    (size_t)runs[i].len * sizeof(float));
    }
}

static void variants_match_generic(void **state)
{
    (void)state;
    const cf_simd_ops *g = cf_simd_variant(CF_SIMD_GENERIC);
    assert_non_null(g);
    assert_string_equal(g->name, "generic");
    int checked = 0;
    for (int v = 0; v < CF_SIMD_COUNT; v++) {
        const cf_simd_ops *ops = cf_simd_variant(v);
        if (!ops) continue;
        check_variant(g, ops);
        checked++;
    }
    print_message("variants checked against generic: %d\n", checked);
    assert_true(checked >= 1);
    assert_null(cf_simd_variant(CF_SIMD_COUNT));
    assert_null(cf_simd_variant(-1));
}

/* col2im as the engine uses it on a map narrower than 8 pixels (a 3 x 3 valid convolution of a
 * 6 x 6 plane: output rows of 4 pixels, runs 6 floats apart, so each run's 8-float block
 * overlaps the next run's): every variant gives exactly the sums written out in the natural
 * order (taps outer, then the runs of a tile in order), whatever order it visits the runs of a
 * tap in, since a tap's runs never share an element. Negative zeros stay where nothing is
 * added. */
static void col2im_narrow_rows_match_the_natural_order(void **state)
{
    (void)state;
    enum { S = 6, OS = 4, K = 3, C = 2, Q = C * K * K, NB = 3, LD = NB * OS * OS + 8 };
    tu_rng r = {7};
    int32_t rowoff[Q];
    for (int c = 0, q = 0; c < C; c++)
        for (int ky = 0; ky < K; ky++)
            for (int kx = 0; kx < K; kx++) rowoff[q++] = c * S * S + ky * S + kx;
    cf_run runs[OS];
    for (int y = 0; y < OS; y++) runs[y] = (cf_run){.dst = y * OS, .src = y * S, .len = OS};
    static float cols[Q * LD], base[NB * C * S * S + 8], want[NB * C * S * S + 8],
        got[NB * C * S * S + 8];
    fill(cols, Q * LD, &r, false);
    fill(base, NB * C * S * S + 8, &r, false);
    for (int i = 0; i < NB * C * S * S; i += 5) base[i] = -0.0f;
    int checked = 0;
    for (int v = 0; v < CF_SIMD_COUNT; v++) {
        const cf_simd_ops *ops = cf_simd_variant(v);
        if (!ops) continue;
        /* rows [r0, r1) of the column chunk, for each of NB samples (a block) */
        for (int r0 = 0; r0 < Q; r0 += 7) {
            int r1 = r0 + 7 < Q ? r0 + 7 : Q;
            memcpy(want, base, sizeof base);
            memcpy(got, base, sizeof base);
            for (int b = 0; b < NB; b++) {
                float *w = want + b * C * S * S;
                for (int q = r0; q < r1; q++)
                    for (int t = 0; t < OS; t++)
                        for (int i = 0; i < runs[t].len; i++)
                            w[rowoff[q] + runs[t].src + i] +=
                                cols[(q - r0) * LD + b * OS * OS + runs[t].dst + i];
                ops->col2im_runs(got + b * C * S * S, cols + b * OS * OS, LD, rowoff, r0, r1,
                                 runs, runs + OS);
            }
            assert_memory_equal(got, want, sizeof want);
        }
        checked++;
    }
    assert_true(checked >= 1);
}

/* 2 x 2 max pooling, written out independently: the first maximum scanning rows then columns
 * (a later element wins only if greater). */
static int ref_window_first_max(const float *w, int W)
{
    const int at[4] = {0, 1, W, W + 1};
    int best = 0;
    for (int e = 1; e < 4; e++)
        if (w[at[e]] > w[at[best]]) best = e;
    return at[best];
}

static void max_pooling_matches_the_reference(void **state)
{
    (void)state;
    tu_rng r = {7};
    enum { HMAX = 9, WMAX = 41 };
    float x[HMAX * WMAX], dy[HMAX * WMAX], y[HMAX * WMAX], dx[HMAX * WMAX],
        ry[HMAX * WMAX], rdx[HMAX * WMAX];
    int checked = 0;
    for (int v = 0; v < CF_SIMD_COUNT; v++) {
        const cf_simd_ops *k = cf_simd_variant(v);
        if (!k) continue;
        checked++;
        for (int H = 2; H <= HMAX; H++)
            for (int W = 2; W <= WMAX; W++) {
                int Ho = H / 2, Wo = W / 2;
                /* few distinct values (ties everywhere), signed zeros, a NaN now and then */
                for (int i = 0; i < H * W; i++) {
                    float u = tu_uniform(&r);
                    x[i] = u < 0.1f    ? -0.0f
                           : u < 0.2f  ? 0.0f
                           : u < 0.23f ? NAN
                                       : (float)((int)(tu_uniform(&r) * 5) - 2);
                    dy[i] = tu_uniform(&r) < 0.1f ? -0.0f : tu_uniform(&r) - 0.5f;
                }
                memset(y, 0x55, sizeof y);
                memset(ry, 0x55, sizeof ry);
                memset(dx, 0x55, sizeof dx);
                memset(rdx, 0x55, sizeof rdx);
                for (int i = 0; i < Ho; i++)
                    for (int j = 0; j < Wo; j++) {
                        const float *w = x + 2 * i * W + 2 * j;
                        int m = ref_window_first_max(w, W);
                        ry[i * Wo + j] = w[m];
                        float *o = rdx + 2 * i * W + 2 * j;
                        o[0] = o[1] = o[W] = o[W + 1] = 0.0f;
                        o[m] = 0.0f + dy[i * Wo + j];
                    }
                k->max2_fwd(x, W, Ho, Wo, y);
                k->max2_bwd(x, dy, W, Ho, Wo, dx);
                assert_memory_equal(y, ry, sizeof y); /* nothing written past Ho x Wo */
                assert_memory_equal(dx, rdx, sizeof dx); /* uncovered elements untouched */
            }
    }
    assert_true(checked >= 1);
}

/* sum_rows against its scheme written out (8 partial sums in double, the tail into sum 0)
 * and against a plain double loop, for 0 to 17 rows (the vector variants' groups of 8, 4 and
 * fewer rows). */
static void row_sums_match_the_reference(void **state)
{
    (void)state;
    tu_rng r = {11};
    enum { ROWS = 17, N = 70, LD = N + 3 };
    float x[ROWS * LD];
    int checked = 0;
    for (int v = 0; v < CF_SIMD_COUNT; v++) {
        const cf_simd_ops *k = cf_simd_variant(v);
        if (!k) continue;
        checked++;
        for (int rows = 0; rows <= ROWS; rows++)
            for (int n = 0; n <= N; n++) {
                tu_fill_normal(x, ROWS * LD, &r);
                float out[ROWS + 1], ref[ROWS + 1];
                for (int i = 0; i <= ROWS; i++) out[i] = ref[i] = 0.25f * (float)i - 1.0f;
                k->sum_rows(x, LD, rows, n, out);
                for (int q = 0; q < rows; q++) {
                    double acc[8] = {0}, plain = 0;
                    int n8 = n - n % 8;
                    for (int i = 0; i < n; i++) {
                        acc[i < n8 ? i % 8 : 0] += x[q * LD + i];
                        plain += x[q * LD + i];
                    }
                    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                               ((acc[4] + acc[5]) + (acc[6] + acc[7]));
                    assert_true(fabs(s - plain) <= 1e-12 * (1.0 + fabs(plain)));
                    ref[q] += (float)s;
                }
                assert_memory_equal(out, ref, sizeof out); /* rows past `rows` untouched */
            }
        /* where the scheme shows in float: 2^60 and -2^60 in sums 0 and 1 cancel, and the
         * last of 11 elements goes to sum 0 (where it is lost against 2^60), not to sum 2 */
        for (int rows = 1; rows <= ROWS; rows++) {
            memset(x, 0, sizeof x);
            x[(rows - 1) * LD + 0] = 0x1p60f;
            x[(rows - 1) * LD + 1] = -0x1p60f;
            x[(rows - 1) * LD + 10] = 1.0f;
            float out[ROWS] = {0};
            k->sum_rows(x, LD, rows, 11, out);
            assert_true(out[rows - 1] == 0.0f);
        }
    }
    assert_true(checked >= 1);
}

/* One chunk's sum of f(j) in the batch norm's scheme (8 partial sums in double, element j to sum
 * j mod 8, the tail included; combined pairwise). */
static double chunk_scheme(const double *f, int n)
{
    double acc[8] = {0};
    for (int i = 0; i < n; i++) acc[i % 8] += f[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* The batch norm's sums over strided chunks (sum, sum_sq_dev, sum_dy_dyx) against their scheme
 * written out: every chunk's sum as above, added to the total in order of the chunks; bit for
 * bit in every variant, for 0 to 9 chunks (the vector variants take up to 4 side by side). */
static void chunk_sums_match_the_scheme(void **state)
{
    (void)state;
    tu_rng r = {23};
    enum { CHUNKS = 9, N = 70, LD = N + 5 };
    static float x[CHUNKS * LD], dy[CHUNKS * LD];
    double f[N], g[N];
    const double mu = 0.3;
    int checked = 0;
    for (int v = 0; v < CF_SIMD_COUNT; v++) {
        const cf_simd_ops *k = cf_simd_variant(v);
        if (!k) continue;
        checked++;
        for (int count = 0; count <= CHUNKS; count++)
            for (int n = 0; n <= N; n += (n < 20 ? 1 : 7)) {
                tu_fill_normal(x, CHUNKS * LD, &r);
                tu_fill_normal(dy, CHUNKS * LD, &r);
                double s = 0, sq = 0, sdy = 0.75, sdyx = -1.25;
                for (int b = 0; b < count; b++) {
                    const float *xb = x + b * LD, *db = dy + b * LD;
                    for (int i = 0; i < n; i++) f[i] = xb[i];
                    s += chunk_scheme(f, n);
                    for (int i = 0; i < n; i++) f[i] = ((double)xb[i] - mu) * ((double)xb[i] - mu);
                    sq += chunk_scheme(f, n);
                    for (int i = 0; i < n; i++) {
                        f[i] = db[i];
                        g[i] = (double)db[i] * ((double)xb[i] - mu);
                    }
                    sdy += chunk_scheme(f, n);
                    sdyx += chunk_scheme(g, n);
                }
                const double s2 = k->sum(x, LD, count, n), sq2 = k->sum_sq_dev(x, LD, count, n, mu);
                double sdy2 = 0.75, sdyx2 = -1.25;
                k->sum_dy_dyx(x, dy, LD, count, n, mu, &sdy2, &sdyx2);
                assert_memory_equal(&s, &s2, sizeof s);
                assert_memory_equal(&sq, &sq2, sizeof sq);
                assert_memory_equal(&sdy, &sdy2, sizeof sdy);
                assert_memory_equal(&sdyx, &sdyx2, sizeof sdyx);
            }
        /* where the order shows in double: chunk sums 2^60, 1, -2^60 added in order lose the 1
         * (another order keeps it), and in a chunk of 11 the last element goes to sum 2 (1
         * survives: 2^60 and -2^60 sit in sums 0 and 1) */
        for (int count = 3; count <= CHUNKS; count++) {
            memset(x, 0, sizeof x);
            memcpy(dy, x, sizeof dy);
            x[(count - 3) * LD] = dy[(count - 3) * LD] = 0x1p60f;
            x[(count - 2) * LD + 10] = dy[(count - 2) * LD + 10] = 1.0f;
            x[(count - 1) * LD] = dy[(count - 1) * LD] = -0x1p60f;
            double sdy2 = 0, sdyx2 = 0;
            k->sum_dy_dyx(x, dy, LD, count, 11, 0.0, &sdy2, &sdyx2);
            assert_true(k->sum(x, LD, count, 11) == 0.0 && sdy2 == 0.0);
            memset(x, 0, sizeof x);
            memcpy(dy, x, sizeof dy);
            x[(count - 1) * LD] = dy[(count - 1) * LD] = 0x1p60f;
            x[(count - 1) * LD + 1] = dy[(count - 1) * LD + 1] = -0x1p60f;
            x[(count - 1) * LD + 10] = dy[(count - 1) * LD + 10] = 1.0f;
            sdy2 = sdyx2 = 0;
            k->sum_dy_dyx(x, dy, LD, count, 11, 0.0, &sdy2, &sdyx2);
            assert_true(k->sum(x, LD, count, 11) == 1.0 && sdy2 == 1.0);
        }
    }
    assert_true(checked >= 1);
}

static void cfnet_cpu_selects_the_variant(void **state)
{
    (void)state;
    const char *want = getenv("CFNET_CPU");
    const cf_simd_ops *active = cf_simd();
    assert_non_null(active);
    static const char *const names[CF_SIMD_COUNT] = {"generic", "avx2", "avx512"};
    int best = 0;
    for (int v = 0; v < CF_SIMD_COUNT; v++)
        if (cf_simd_variant(v)) best = v;
    int forced = -1;
    for (int v = 0; want && v < CF_SIMD_COUNT; v++)
        if (!strcmp(want, names[v]) && cf_simd_variant(v)) forced = v;
    /* a supported name wins; anything else (unset, unknown, unsupported) gives the best */
    assert_string_equal(active->name, names[forced >= 0 ? forced : best]);
    assert_ptr_equal(cf_simd(), active); /* chosen once */
}

static void fused_batch_norm_relu_equals_the_two_layers(void **state)
{
    (void)state;
    cfnet_layer *bn = NULL, *relu = NULL;
    CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &bn));
    CF_ASSERT_OK(cfnet_layer_relu_create(&relu));
    int64_t in[3] = {3, 5, 7};
    CF_ASSERT_OK(cfnet_layer_setup(bn, 3, in, 1));
    CF_ASSERT_OK(cfnet_layer_setup(relu, 3, in, 2));
    enum { N = 4, SZ = N * 3 * 5 * 7 };
    float x[SZ], t[SZ], y1[SZ], y2[SZ];
    tu_rng r = {8};
    tu_fill_normal(x, SZ, &r);
    for (int i = 0; i < 3; i++) bn->param[0]->data[i] = 0.5f + (float)i; /* gamma */
    for (int i = 0; i < 3; i++) bn->param[1]->data[i] = 0.2f - 0.3f * (float)i; /* beta */
    size_t wsz = bn->ops->workspace ? bn->ops->workspace(bn, N) : 0;
    void *ws1 = calloc(1, wsz + 1), *ws2 = calloc(1, wsz + 1);
    for (int training = 0; training < 2; training++) {
        float rm[3], rv[3];
        memcpy(rm, bn->state[0]->data, sizeof rm);
        memcpy(rv, bn->state[1]->data, sizeof rv);
        CF_ASSERT_OK(cf_layer_forward_raw(bn, x, t, N, training, ws1));
        CF_ASSERT_OK(cf_layer_forward_raw(relu, t, y1, N, training, NULL));
        float rm1[3], rv1[3];
        memcpy(rm1, bn->state[0]->data, sizeof rm1);
        memcpy(rv1, bn->state[1]->data, sizeof rv1);
        memcpy(bn->state[0]->data, rm, sizeof rm); /* same running statistics again */
        memcpy(bn->state[1]->data, rv, sizeof rv);
        CF_ASSERT_OK(cf_batch_norm_forward_relu(bn, x, y2, N, training, ws2));
        assert_memory_equal(y1, y2, sizeof y1);
        assert_memory_equal(bn->state[0]->data, rm1, sizeof rm1);
        assert_memory_equal(bn->state[1]->data, rv1, sizeof rv1);
        assert_memory_equal(ws1, ws2, wsz); /* what backward needs */
    }
    free(ws1);
    free(ws2);
    cfnet_layer_free(bn);
    cfnet_layer_free(relu);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        for (int v = 0; v < CF_SIMD_COUNT; v++)
            if (cf_simd_variant(v)) printf("%s\n", cf_simd_variant(v)->name);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(variants_match_generic),
        cmocka_unit_test(col2im_narrow_rows_match_the_natural_order),
        cmocka_unit_test(max_pooling_matches_the_reference),
        cmocka_unit_test(row_sums_match_the_reference),
        cmocka_unit_test(chunk_sums_match_the_scheme),
        cmocka_unit_test(cfnet_cpu_selects_the_variant),
        cmocka_unit_test(fused_batch_norm_relu_equals_the_two_layers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
