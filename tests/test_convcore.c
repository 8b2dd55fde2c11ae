/* The convolution engine (src/kernels/convcore.c) and its products (src/kernels/gemm.c):
 *   - every CPU variant's gemm_nn / gemm_nt gives the portable variant's bits, on every shape
 *     edge (rows not a multiple of 4, columns not a multiple of 8 or 24, K across the internal
 *     blocking, sub-matrices of packed operands, continued chains);
 *   - both agree with a double-precision product;
 *   - gemm_nn cut into column pieces and into consecutive K ranges (continued chains) gives
 *     exactly the bits of one call;
 *   - a grouped convolution (random groups, as conic convolution uses them) agrees with a
 *     direct loop written here, in value and in all three gradients;
 *   - its output is bit-identical whatever the tiling, the thread count and the batch a sample
 *     is in, its input gradient whatever the thread count and the batch for a given plan (the
 *     claims of convcore.h); otherwise the gradients agree within float rounding;
 *   - no path reads or writes past the caller's input gradient (it ends at an inaccessible
 *     page). */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include "testutil.h"

#include "kernels/convcore.h"
#include "kernels/gemm.h"
#include "kernels/simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static float *randf(size_t n, tu_rng *r)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    tu_fill_normal(x, (int64_t)n, r);
    return x;
}

/* C = A B with A given row-major (M x K, lda), through the packed form. */
static void nn_call(const cf_simd_ops *v, int M, int N, int K, const float *A, int lda,
                    const float *B, int ldb, float *C, int ldc)
{
    float *Ap = malloc(cf_gemm_packed_floats(M, K) * sizeof *Ap + 4);
    assert_non_null(Ap);
    cf_gemm_pack_a(M, K, A, lda, Ap);
    v->gemm_nn(M, N, K, Ap, K, B, ldb, C, ldc, 0);
    free(Ap);
}

static void gemm_variants_match_generic(void **state)
{
    (void)state;
    const cf_simd_ops *g = cf_simd_variant(CF_SIMD_GENERIC);
    tu_rng r = {7};
    /* 5 to 7 rows past a multiple of 8 (5, 6, 7, 13, 14, 15, 22) are one tile of that many
     * rows with 16 lanes */
    static const int Ms[] = {1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 15, 22, 32};
    static const int Ns[] = {0, 1, 5, 8, 9, 16, 23, 24, 25, 47, 49, 100};
    static const int Ks[] = {0, 1, 3, 9, 127, 128, 129, 300};
    int checked = 0;
    for (int vi = 0; vi < CF_SIMD_COUNT; vi++) {
        const cf_simd_ops *v = cf_simd_variant(vi);
        if (!v) continue;
        for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
            for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
                for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++) {
                    int M = Ms[a], N = Ns[b], K = Ks[c];
                    int ldb = N + 3, ldc = N + 5;
                    float *A = randf((size_t)M * K, &r), *B = randf((size_t)K * ldb, &r);
                    float *C1 = randf((size_t)M * ldc, &r);
                    size_t cn = (size_t)M * (size_t)ldc;
                    float *C2 = malloc((cn ? cn : 1) * sizeof *C2);
                    assert_non_null(C2);
                    memcpy(C2, C1, (size_t)M * ldc * sizeof *C1);
                    /* nn: columns outside N must stay untouched (the whole buffers compare) */
                    nn_call(g, M, N, K, A, K, B, ldb, C1, ldc);
                    nn_call(v, M, N, K, A, K, B, ldb, C2, ldc);
                    assert_memory_equal(C1, C2, (size_t)M * ldc * sizeof *C1);
                    /* nt: C (M x K) += A' (M x N) B' (K x N)^T with A' = B's first M rows
                     * (when K >= M) or fresh data */
                    float *An = randf((size_t)M * ldb, &r), *D1 = randf((size_t)M * (K + 2), &r);
                    float *D2 = malloc(((size_t)M * (K + 2)) * sizeof *D2);
                    assert_non_null(D2);
                    memcpy(D2, D1, (size_t)M * (K + 2) * sizeof *D1);
                    g->gemm_nt(M, K, N, An, ldb, B, ldb, D1, K + 2);
                    v->gemm_nt(M, K, N, An, ldb, B, ldb, D2, K + 2);
                    assert_memory_equal(D1, D2, (size_t)M * (K + 2) * sizeof *D1);
                    free(A), free(B), free(C1), free(C2), free(An), free(D1), free(D2);
                    checked++;
                }
    }
    print_message("gemm shapes checked against generic: %d\n", checked);
    assert_true(checked >= (int)(sizeof Ms / sizeof *Ms * sizeof Ns / sizeof *Ns *
                                 sizeof Ks / sizeof *Ks));
}

static void gemm_matches_double_products(void **state)
{
    (void)state;
    const cf_simd_ops *v = cf_simd();
    tu_rng r = {11};
    int M = 15, N = 77, K = 290;
    /* every row count of the last tile (1 to 8 rows past a multiple of 8), each element of C
     * against its double sum: a tile that computes or stores a row wrong fails here */
    static const int Mn[] = {1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 15, 22};
    for (size_t t = 0; t < sizeof Mn / sizeof *Mn; t++) {
        int Mt = Mn[t];
        float *At = randf((size_t)Mt * K, &r), *Bt = randf((size_t)K * N, &r);
        float *Ct = randf((size_t)Mt * N, &r);
        nn_call(v, Mt, N, K, At, K, Bt, N, Ct, N);
        for (int m = 0; m < Mt; m++)
            for (int n = 0; n < N; n++) {
                double s = 0, mag = 0;
                for (int k = 0; k < K; k++) {
                    s += (double)At[m * K + k] * Bt[k * N + n];
                    mag += fabs((double)At[m * K + k] * Bt[k * N + n]);
                }
                if (!(fabs(Ct[m * N + n] - s) <= 1e-6 * mag + 1e-30))
                    fail_msg("gemm_nn M = %d: C[%d][%d] = %.9g, double sum %.9g", Mt, m, n,
                             (double)Ct[m * N + n], s);
            }
        free(At), free(Bt), free(Ct);
    }
    /* nt: D (M x K) = 0 + A2 (M x N) B2 (K x N)^T */
    float *A2 = randf((size_t)M * N, &r), *B2 = randf((size_t)K * N, &r);
    float *D = calloc((size_t)M * K, sizeof *D);
    assert_non_null(D);
    v->gemm_nt(M, K, N, A2, N, B2, N, D, K);
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) {
            double s = 0, mag = 0;
            for (int n = 0; n < N; n++) {
                s += (double)A2[m * N + n] * B2[k * N + n];
                mag += fabs((double)A2[m * N + n] * B2[k * N + n]);
            }
            assert_true(fabs(D[m * K + k] - s) <= 1e-6 * mag + 1e-30);
        }
    free(A2), free(B2), free(D);
}

/* One call against pieces: columns in any cut, K in consecutive ranges continued through C,
 * rows from a multiple of 4 (sub-matrices of the packed operand). */
static void gemm_pieces_give_the_same_bits(void **state)
{
    (void)state;
    const cf_simd_ops *v = cf_simd();
    tu_rng r = {13};
    int M = 22, N = 101, K = 333;
    float *A = randf((size_t)M * K, &r), *B = randf((size_t)K * N, &r);
    float *Ap = malloc(cf_gemm_packed_floats(M, K) * sizeof *Ap);
    float *C1 = calloc((size_t)M * N, sizeof *C1), *C2 = calloc((size_t)M * N, sizeof *C2);
    assert_non_null(Ap), assert_non_null(C1), assert_non_null(C2);
    cf_gemm_pack_a(M, K, A, K, Ap);
    v->gemm_nn(M, N, K, Ap, K, B, N, C1, N, 0);
    static const int ncut[] = {0, 7, 31, 32, 80, 101}, kcut[] = {0, 1, 100, 129, 250, 333},
                     mcut[] = {0, 4, 16, 22}; /* 4, 12 (8 + 4) and 6 rows */
    for (int a = 0; a + 1 < 3 + 1; a++)
        for (int b = 0; b + 1 < 6; b++)
            for (int c = 0; c + 1 < 6; c++) {
                int m0 = mcut[a], m1 = mcut[a + 1], n0 = ncut[b], n1 = ncut[b + 1],
                    k0 = kcut[c], k1 = kcut[c + 1];
                v->gemm_nn(m1 - m0, n1 - n0, k1 - k0, Ap + (size_t)m0 * K + 4 * k0, K,
                           B + (size_t)k0 * N + n0, N, C2 + (size_t)m0 * N + n0, N, k0 > 0);
            }
    assert_memory_equal(C1, C2, (size_t)M * N * sizeof *C1);
    /* The transposed packing gives the product with A^T. */
    float *At = malloc((size_t)K * M * sizeof *At), *Atp = malloc(cf_gemm_packed_floats(M, K) * sizeof *Atp);
    assert_non_null(At), assert_non_null(Atp);
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) At[(size_t)k * M + m] = A[(size_t)m * K + k];
    cf_gemm_pack_at(M, K, At, M, Atp);
    assert_memory_equal(Ap, Atp, cf_gemm_packed_floats(M, K) * sizeof *Ap);
    free(A), free(B), free(Ap), free(C1), free(C2), free(At), free(Atp);
}

/* The direct forward over runs: every variant gives the generic bits, writes exactly the
 * runs' outputs (the whole buffer compares), and agrees with a double-precision product. */
static void direct_forward_variants_match_generic(void **state)
{
    (void)state;
    const cf_simd_ops *g = cf_simd_variant(CF_SIMD_GENERIC);
    tu_rng r = {11};
    /* 63 and 64, 112: runs of 4 and 7 vectors of 16 lanes, cut 32 + 32 and 48 + 32 + 32
     * (fr_piece_cols; also 50, 57, 97); 128: 8 vectors, 48 + 48 + 32 as before */
    static const int lens[] = {1,  2,  7,  8,  9,  15, 16, 17, 23,  24,  25,
                               31, 33, 48, 50, 57, 63, 64, 95, 97, 112, 128};
    enum { NR = sizeof lens / sizeof *lens, XS = 4096, YS = 2048 };
    cf_run runs[NR];
    int32_t rq[NR];
    int src = 0, dst = 0;
    for (int i = 0; i < NR; i++) {
        runs[i].dst = dst;
        runs[i].src = src;
        runs[i].len = lens[i];
        rq[i] = dst + 3 * i; /* gaps between the runs' outputs stay untouched */
        src += lens[i] + 5;
        dst += lens[i];
    }
    int ldy = dst + 3 * NR;
    int checked = 0;
    /* every row count of a last tile: 1 to 4 rows past a multiple of 4, 5 to 8 past one of 8
     * (each tile computes only the rows it stores, fr_tile_MRxNV) */
    static const int Ms[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15, 17, 32};
    static const int Ks[] = {1, 9, 27, 135};
    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
        for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++) {
            int M = Ms[a], K = Ks[c];
            int32_t rowoff[135];
            for (int k = 0; k < K; k++) rowoff[k] = (k * 37) % 700;
            float *x = randf((size_t)XS, &r), *A = randf((size_t)M * K, &r),
                  *bias = randf((size_t)M, &r);
            float *Ap = malloc(cf_gemm_packed_floats(M, K) * sizeof *Ap);
            float *y0 = randf((size_t)M * ldy, &r);
            float *y1 = malloc((size_t)M * ldy * sizeof *y1);
            assert_non_null(Ap), assert_non_null(y1);
            assert_true(src + 700 + 8 <= XS && M * ldy <= 32 * YS);
            cf_gemm_pack_a(M, K, A, K, Ap);
            float *yg = malloc((size_t)M * ldy * sizeof *yg);
            assert_non_null(yg);
            memcpy(yg, y0, (size_t)M * ldy * sizeof *yg);
            g->conv_fwd_runs(M, K, Ap, x, rowoff, runs, runs + NR, rq, yg, ldy, bias);
            for (int i = 0; i < NR; i++)
                for (int m = 0; m < M; m++)
                    for (int nn = 0; nn < lens[i]; nn++) {
                        double ref = bias[m];
                        for (int k = 0; k < K; k++)
                            ref += (double)A[m * K + k] * x[rowoff[k] + runs[i].src + nn];
                        assert_true(fabs(yg[m * ldy + rq[i] + nn] - ref) <= 1e-4 * (1 + fabs(ref)));
                    }
            for (int vi = 0; vi < CF_SIMD_COUNT; vi++) {
                const cf_simd_ops *v = cf_simd_variant(vi);
                if (!v) continue;
                memcpy(y1, y0, (size_t)M * ldy * sizeof *y1);
                v->conv_fwd_runs(M, K, Ap, x, rowoff, runs, runs + NR, rq, y1, ldy, bias);
                assert_memory_equal(y1, yg, (size_t)M * ldy * sizeof *y1);
                /* without bias: the bare chains */
                memcpy(y1, y0, (size_t)M * ldy * sizeof *y1);
                v->conv_fwd_runs(M, K, Ap, x, rowoff, runs, runs + NR, rq, y1, ldy, NULL);
                float *y2 = malloc((size_t)M * ldy * sizeof *y2);
                assert_non_null(y2);
                memcpy(y2, y0, (size_t)M * ldy * sizeof *y2);
                g->conv_fwd_runs(M, K, Ap, x, rowoff, runs, runs + NR, rq, y2, ldy, NULL);
                assert_memory_equal(y1, y2, (size_t)M * ldy * sizeof *y1);
                free(y2);
                checked++;
            }
            /* the gaps were not written */
            for (int i = 0; i < NR; i++)
                for (int m = 0; m < M; m++)
                    for (int q = 0; q < 3; q++) {
                        size_t at = (size_t)m * ldy + rq[i] + lens[i] + q;
                        if (at < (size_t)M * ldy && (i + 1 == NR || (int)(rq[i] + lens[i] + q) < rq[i + 1]))
                            assert_memory_equal(&yg[at], &y0[at], sizeof(float));
                    }
            free(x), free(A), free(bias), free(Ap), free(y0), free(y1), free(yg);
        }
    print_message("direct forward shapes checked against generic: %d\n", checked);
    assert_true(checked >= (int)(sizeof Ms / sizeof *Ms * sizeof Ks / sizeof *Ks));
}

/* The direct forward over a flat run (conv_fwd_flat): a stretch of output rows read as one run
 * of the padded rows (stride Wp), the halo columns between rows dropped. Every variant gives
 * the generic bits; each output pixel (oi, oj) of the stretch agrees with a double product
 * over the taps at (oi Wp + oj) + rowoff[k], written here from the pixel, not from the flat
 * position; every other element of y (before, after and the rows' ends) is left alone. Rows
 * of 1 to 40 pixels with 0 to 4 halo columns, stretches starting and ending inside rows, on
 * the first row (where a narrow row's later lanes land before y) or later. */
static void flat_forward_variants_match_pixels(void **state)
{
    (void)state;
    const cf_simd_ops *g = cf_simd_variant(CF_SIMD_GENERIC);
    tu_rng r = {13};
    static const struct { int OW, halo, Hrows, q0, q1; } cs[] = {
        {28, 2, 28, 0, 480},    /* the conv2d 28 x 28 tiles */
        {28, 2, 28, 480, 784},
        {17, 2, 9, 0, 153},     {17, 4, 9, 5, 140}, {16, 2, 6, 3, 96},
        {15, 2, 7, 0, 105},     {33, 2, 5, 31, 130}, {40, 4, 4, 1, 159},
        {20, 0, 5, 0, 100},     {9, 2, 8, 0, 72},   {5, 2, 9, 0, 45},
        {3, 4, 11, 2, 31},      {1, 2, 30, 0, 30},  {7, 1, 6, 6, 42},
        /* a last 4 vectors of 16 lanes cut as 2 + 2 (fr_piece_cols): 64 = 32 + 32, 102 =
         * 48 + 32 + 22 (the conv2d 50 x 50 last tile), 112 = 48 + 32 + 32 */
        {64, 2, 2, 0, 64},      {50, 2, 3, 0, 100}, {56, 0, 2, 0, 112},
    };
    int checked = 0;
    static const int Ms[] = {1, 4, 5, 8, 9, 15, 17};
    static const int Ks[] = {1, 9, 27, 135};
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++)
        for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
            for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++) {
                int OW = cs[ci].OW, Wp = OW + cs[ci].halo, H = cs[ci].Hrows, M = Ms[a],
                    K = Ks[c];
                int64_t P = (int64_t)OW * H, ldy = P + 3;
                int q0 = cs[ci].q0, q1 = cs[ci].q1; /* output pixels [q0, q1) */
                int32_t src = q0 / OW * Wp + q0 % OW,
                        len = (q1 - 1) / OW * Wp + (q1 - 1) % OW - src + 1;
                int32_t rowoff[135];
                for (int k = 0; k < K; k++) rowoff[k] = (k * 37) % (2 * Wp + 3);
                size_t xn = (size_t)(H + 3) * Wp + 8;
                float *x = randf(xn, &r), *A = randf((size_t)M * K, &r),
                      *bias = randf((size_t)M, &r);
                float *Ap = malloc(cf_gemm_packed_floats(M, K) * sizeof *Ap);
                size_t yn = (size_t)M * ldy;
                float *y0 = randf(yn, &r), *yg = malloc(yn * sizeof *yg),
                      *y1 = malloc(yn * sizeof *y1);
                assert_non_null(Ap), assert_non_null(yg), assert_non_null(y1);
                cf_gemm_pack_a(M, K, A, K, Ap);
                memcpy(yg, y0, yn * sizeof *yg);
                g->conv_fwd_flat(M, K, Ap, x, rowoff, src, len, Wp, OW, yg, ldy, bias);
                for (int m = 0; m < M; m++)
                    for (int64_t q = 0; q < ldy; q++) {
                        size_t at = (size_t)m * ldy + (size_t)q;
                        if (q < q0 || q >= q1) {
                            assert_memory_equal(&yg[at], &y0[at], sizeof(float));
                            continue;
                        }
                        int64_t tap0 = q / OW * Wp + q % OW;
                        double ref = bias[m];
                        for (int k = 0; k < K; k++)
                            ref += (double)A[m * K + k] * x[rowoff[k] + tap0];
                        assert_true(fabs(yg[at] - ref) <= 1e-4 * (1 + fabs(ref)));
                    }
                for (int vi = 0; vi < CF_SIMD_COUNT; vi++) {
                    const cf_simd_ops *v = cf_simd_variant(vi);
                    if (!v) continue;
                    memcpy(y1, y0, yn * sizeof *y1);
                    v->conv_fwd_flat(M, K, Ap, x, rowoff, src, len, Wp, OW, y1, ldy, bias);
                    assert_memory_equal(y1, yg, yn * sizeof *y1);
                    /* without bias: the bare chains, the direct runs' bits (one run per row) */
                    memcpy(y1, y0, yn * sizeof *y1);
                    v->conv_fwd_flat(M, K, Ap, x, rowoff, src, len, Wp, OW, y1, ldy, NULL);
                    float *y2 = malloc(yn * sizeof *y2);
                    assert_non_null(y2);
                    memcpy(y2, y0, yn * sizeof *y2);
                    for (int q = q0; q < q1;) {
                        int e = (q / OW + 1) * OW < q1 ? (q / OW + 1) * OW : q1;
                        cf_run run = {.dst = 0, .src = q / OW * Wp + q % OW, .len = e - q};
                        int32_t rq = q;
                        v->conv_fwd_runs(M, K, Ap, x, rowoff, &run, &run + 1, &rq, y2, ldy, NULL);
                        q = e;
                    }
                    assert_memory_equal(y1, y2, yn * sizeof *y1);
                    free(y2);
                    checked++;
                }
                free(x), free(A), free(bias), free(Ap), free(y0), free(yg), free(y1);
            }
    print_message("flat forward cases checked against generic: %d\n", checked);
    assert_true(checked >= (int)(sizeof cs / sizeof *cs * sizeof Ms / sizeof *Ms * sizeof Ks /
                                 sizeof *Ks));
}

/* AUTO's flat runs follow the active variant (tests/test_cpu_variants.sh runs this under each):
 * with 16 lanes conv2d 28 x 28's direct tiles go as flat runs, with 8 (avx2, generic) they
 * keep one run per row, where the flat run measured slower (docs/performance.md, "The padded
 * input copy"). ALWAYS takes every tile flat whatever the width. */
static void flat_auto_follows_the_vector_width(void **state)
{
    (void)state;
    const cf_allocator *a = &cf_default_allocator;
    cf_conv_plan p;
    CF_ASSERT_OK(cf_conv_plan_init(a, &p, 3, 28, 28, 3, 1, CFNET_PADDING_SAME, NULL, 1));
    assert_true(cf_conv_plan_set_direct(&p, CF_CONV_DIRECT_ALWAYS));
    int nflat = 0;
    for (int i = 0; i < p.ntiles; i++) nflat += p.tdirect[i] == 2;
    print_message("%d lanes: %d of %d tiles flat\n", cf_simd()->lanes, nflat, p.ntiles);
    if (cf_simd()->lanes >= 16) assert_true(nflat > 0);
    else assert_int_equal(nflat, 0);
    assert_true(cf_conv_plan_set_flat(&p, CF_CONV_DIRECT_ALWAYS));
    for (int i = 0; i < p.ntiles; i++) assert_int_equal(p.tdirect[i], 2);
    cf_conv_plan_free(&p);
}

/* gemm_nt on columns read in place (gemm_nt_runs): every variant gives exactly generic
 * gemm_nt's bits on the column matrix built here from the runs, for several samples, row
 * counts across the tiles' edges (M, L not multiples of 3, 4 or 8) and runs of 8 to 72
 * columns; it adds to C. */
static void nt_runs_match_gemm_nt_on_columns(void **state)
{
    (void)state;
    const cf_simd_ops *g = cf_simd_variant(CF_SIMD_GENERIC);
    tu_rng r = {13};
    static const int lens[] = {8, 16, 24, 64, 40, 72, 8, 32};
    enum { NR = sizeof lens / sizeof *lens, PLANE = 2048 };
    cf_run runs[NR];
    int src = 3, w = 0;
    for (int i = 0; i < NR; i++) {
        runs[i].dst = w;
        runs[i].src = src;
        runs[i].len = lens[i];
        src += lens[i] + 5;
        w += lens[i];
    }
    static const int Ms[] = {1, 2, 3, 4, 5, 7, 8, 13, 32};
    static const int Ls[] = {1, 3, 4, 7, 8, 9, 13, 17, 36};
    int checked = 0;
    for (int nb = 1; nb <= 3; nb++)
        for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
            for (size_t c = 0; c < sizeof Ls / sizeof *Ls; c++) {
                int M = Ms[a], L = Ls[c], N = nb * w, lda = N + 3, ldc = L + 2;
                int32_t rowoff[36];
                for (int l = 0; l < L; l++) rowoff[l] = (l * 29) % 600;
                assert_true(src + 600 <= PLANE);
                float *x = randf((size_t)nb * PLANE, &r), *A = randf((size_t)M * lda, &r);
                float *B = malloc((size_t)L * N * sizeof *B);
                float *C0 = randf((size_t)M * ldc, &r), *Cg = malloc((size_t)M * ldc * sizeof *Cg),
                      *Cv = malloc((size_t)M * ldc * sizeof *Cv);
                assert_non_null(B), assert_non_null(Cg), assert_non_null(Cv);
                for (int l = 0; l < L; l++)
                    for (int b = 0; b < nb; b++)
                        for (int i = 0; i < NR; i++)
                            for (int j = 0; j < lens[i]; j++)
                                B[(size_t)l * N + b * w + runs[i].dst + j] =
                                    x[(size_t)b * PLANE + rowoff[l] + runs[i].src + j];
                memcpy(Cg, C0, (size_t)M * ldc * sizeof *Cg);
                g->gemm_nt(M, L, N, A, lda, B, N, Cg, ldc);
                for (int vi = 0; vi < CF_SIMD_COUNT; vi++) {
                    const cf_simd_ops *v = cf_simd_variant(vi);
                    if (!v) continue;
                    memcpy(Cv, C0, (size_t)M * ldc * sizeof *Cv);
                    v->gemm_nt_runs(M, L, A, lda, x, PLANE, nb, w, rowoff, runs, runs + NR, Cv,
                                    ldc);
                    assert_memory_equal(Cv, Cg, (size_t)M * ldc * sizeof *Cv);
                    checked++;
                }
                free(x), free(A), free(B), free(C0), free(Cg), free(Cv);
            }
    print_message("gemm_nt_runs shapes checked against gemm_nt: %d\n", checked);
    assert_true(checked >= 3 * (int)(sizeof Ms / sizeof *Ms * sizeof Ls / sizeof *Ls));
}

/* ---- the engine ---- */

/* The forward over output channels (conic tiles): columns in any order, each its own input
 * offset and output pixel; every variant gives the generic bits, which agree with a double
 * product, and writes exactly the columns' outputs. */
static void pix_forward_variants_match_generic(void **state)
{
    (void)state;
    const cf_simd_ops *g = cf_simd_variant(CF_SIMD_GENERIC);
    tu_rng r = {13};
    enum { XS = 4096, NMAX = 23, P = 64 };
    int checked = 0;
    static const int Ms[] = {1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 57, 64, 65, 72};
    static const int Ks[] = {1, 9, 27, 135};
    static const int Ns[] = {1, 5, 6, 7, 12, 13, NMAX};
    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
        for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++)
            for (size_t e = 0; e < sizeof Ns / sizeof *Ns; e++) {
                int M = Ms[a], K = Ks[c], n = Ns[e];
                int32_t rowoff[135], src[NMAX], q[NMAX];
                for (int k = 0; k < K; k++) rowoff[k] = (k * 37) % 700;
                /* distinct output pixels in a scrambled order, some left unwritten */
                for (int j = 0; j < n; j++) {
                    src[j] = (int32_t)(tu_uniform(&r) * (XS - 701));
                    q[j] = (j * 29 + 5) % P;
                }
                float *x = randf((size_t)XS, &r), *A = randf((size_t)M * K, &r),
                      *bias = randf((size_t)M, &r), *y0 = randf((size_t)M * P, &r);
                float *Ap = malloc(cf_gemm_pix_floats(M, K) * sizeof *Ap),
                      *yg = malloc((size_t)M * P * sizeof *yg),
                      *y1 = malloc((size_t)M * P * sizeof *y1);
                assert_non_null(Ap), assert_non_null(yg), assert_non_null(y1);
                cf_gemm_pack_pix(M, K, A, K, Ap);
                for (int bi = 0; bi < 2; bi++) {
                    const float *bs = bi ? bias : NULL;
                    memcpy(yg, y0, (size_t)M * P * sizeof *yg);
                    g->conv_fwd_pix(M, K, Ap, x, rowoff, src, q, n, yg, P, bs);
                    for (int m = 0; m < M; m++)
                        for (int qq = 0; qq < P; qq++) {
                            int j = 0;
                            while (j < n && q[j] != qq) j++;
                            float got = yg[m * P + qq];
                            if (j == n) { /* not an output of these columns: untouched */
                                assert_memory_equal(&got, &y0[m * P + qq], sizeof got);
                                continue;
                            }
                            double ref = bs ? bs[m] : 0.0;
                            for (int k = 0; k < K; k++)
                                ref += (double)A[m * K + k] * x[rowoff[k] + src[j]];
                            assert_true(fabs(got - ref) <= 1e-4 * (1 + fabs(ref)));
                        }
                    for (int vi = 0; vi < CF_SIMD_COUNT; vi++) {
                        const cf_simd_ops *v = cf_simd_variant(vi);
                        if (!v) continue;
                        memcpy(y1, y0, (size_t)M * P * sizeof *y1);
                        v->conv_fwd_pix(M, K, Ap, x, rowoff, src, q, n, y1, P, bs);
                        assert_memory_equal(y1, yg, (size_t)M * P * sizeof *y1);
                        checked++;
                    }
                }
                /* the chain is gemm_nn's: the same bits as the column path's product */
                if (K >= 9) {
                    float *col = malloc((size_t)K * n * sizeof *col),
                          *Ac = malloc(cf_gemm_packed_floats(M, K) * sizeof *Ac),
                          *yc = malloc((size_t)M * n * sizeof *yc);
                    assert_non_null(col), assert_non_null(Ac), assert_non_null(yc);
                    for (int k = 0; k < K; k++)
                        for (int j = 0; j < n; j++) col[k * n + j] = x[rowoff[k] + src[j]];
                    cf_gemm_pack_a(M, K, A, K, Ac);
                    g->gemm_nn(M, n, K, Ac, K, col, n, yc, n, 0);
                    memcpy(y1, y0, (size_t)M * P * sizeof *y1);
                    cf_simd()->conv_fwd_pix(M, K, Ap, x, rowoff, src, q, n, y1, P, NULL);
                    for (int m = 0; m < M; m++)
                        for (int j = 0; j < n; j++)
                            assert_memory_equal(&y1[m * P + q[j]], &yc[m * n + j], sizeof(float));
                    free(col), free(Ac), free(yc);
                }
                free(x), free(A), free(bias), free(y0), free(Ap), free(yg), free(y1);
            }
    print_message("forward over output channels, cases checked against generic: %d\n", checked);
    assert_true(checked >= 2 * (int)(sizeof Ms / sizeof *Ms * sizeof Ks / sizeof *Ks * sizeof Ns / sizeof *Ns));
}

/* The backward over output channels: the weight gradient (columns in any order, the output
 * gradient transposed) and the input gradient of a grouped map; every variant gives the
 * generic bits, which agree with double sums. */
static void pix_backward_variants_match_generic(void **state)
{
    (void)state;
    const cf_simd_ops *g = cf_simd_variant(CF_SIMD_GENERIC);
    tu_rng r = {23};
    int checked = 0;
    /* weight gradient */
    enum { XS = 4096, NMAX = 23, P = 64 };
    static const int Ms[] = {1, 7, 8, 9, 15, 16, 17, 24, 25, 32, 33, 40, 41};
    static const int Ks[] = {1, 5, 6, 7, 13, 135};
    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
        for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++) {
            int M = Ms[a], K = Ks[c], Mp = (M + 7) / 8 * 8, n = 1 + (int)(tu_uniform(&r) * NMAX);
            int32_t rowoff[135], src[NMAX], q[NMAX];
            for (int k = 0; k < K; k++) rowoff[k] = (k * 37) % 700;
            for (int j = 0; j < n; j++) {
                src[j] = (int32_t)(tu_uniform(&r) * (XS - 701));
                q[j] = (int32_t)(tu_uniform(&r) * P); /* repeats allowed */
            }
            float *x = randf((size_t)XS, &r), *dyT = randf((size_t)P * Mp, &r),
                  *w0 = randf((size_t)K * Mp, &r);
            for (int qq = 0; qq < P; qq++)
                for (int m = M; m < Mp; m++) dyT[qq * Mp + m] = 0.0f;
            float *wg = malloc((size_t)K * Mp * sizeof *wg), *wv = malloc((size_t)K * Mp * sizeof *wv);
            assert_non_null(wg), assert_non_null(wv);
            memcpy(wg, w0, (size_t)K * Mp * sizeof *wg);
            g->conv_bwd_w_pix(M, K, dyT, x, rowoff, src, q, n, wg);
            for (int k = 0; k < K; k++)
                for (int m = 0; m < Mp; m++) {
                    double ref = w0[k * Mp + m], mag = fabs(ref);
                    for (int j = 0; j < n; j++) {
                        double t = (double)x[rowoff[k] + src[j]] * dyT[q[j] * Mp + m];
                        ref += t, mag += fabs(t);
                    }
                    assert_true(fabs(wg[k * Mp + m] - ref) <= 1e-5 * (1 + mag));
                }
            for (int vi = 0; vi < CF_SIMD_COUNT; vi++) {
                const cf_simd_ops *v = cf_simd_variant(vi);
                if (!v) continue;
                memcpy(wv, w0, (size_t)K * Mp * sizeof *wv);
                v->conv_bwd_w_pix(M, K, dyT, x, rowoff, src, q, n, wv);
                assert_memory_equal(wv, wg, (size_t)K * Mp * sizeof *wv);
                checked++;
            }
            free(x), free(dyT), free(w0), free(wg), free(wv);
        }
    /* input gradient: a tile of columns (distinct output pixels q in a scrambled order, their
     * windows' tap 0 at src) into a pixel-by-pixel buffer holding earlier sums */
    static const struct { int C, M, k, n; } xc[] = {
        {1, 15, 3, 9}, {15, 15, 3, 13}, {3, 5, 5, 11}, {9, 17, 3, 8},
        {16, 8, 1, 7}, {17, 3, 3, 14}, {24, 16, 3, 6}, {32, 32, 3, 23}, {15, 15, 3, 1},
        {33, 12, 3, 7}, {40, 9, 3, 10}, {48, 5, 1, 6},
    };
    for (size_t ci = 0; ci < sizeof xc / sizeof *xc; ci++) {
        int C = xc[ci].C, M = xc[ci].M, k = xc[ci].k, n = xc[ci].n, T = k * k,
            Cp = (C + 7) / 8 * 8, Wp = 12, HWp = 12 * 12;
        int64_t Pq = 40;
        int32_t rowoff[25], src[23], q[23];
        for (int t = 0; t < T; t++) rowoff[t] = t / k * Wp + t % k;
        int used[40] = {0};
        for (int j = 0; j < n; j++) {
            int qq;
            do qq = (int)(tu_uniform(&r) * (double)Pq); while (used[qq]);
            used[qq] = 1;
            q[j] = qq;
            src[j] = (int32_t)(tu_uniform(&r) * (double)(Wp - k + 1)) +
                     Wp * (int32_t)(tu_uniform(&r) * (double)(Wp - k + 1));
        }
        size_t gs = cf_gemm_dx_floats(C, M, k), CK = (size_t)C * k * k, xn = (size_t)HWp * Cp;
        float *Wd = randf((size_t)M * CK, &r), *Wc = malloc(gs * sizeof *Wc);
        float *dy = randf((size_t)M * Pq, &r), *d0 = randf(xn, &r);
        float *dg = malloc(xn * sizeof *dg), *dv = malloc(xn * sizeof *dv);
        assert_non_null(Wc), assert_non_null(dg), assert_non_null(dv);
        cf_gemm_pack_dx(C, M, k, Wd, Wc);
        memcpy(dg, d0, xn * sizeof *dg);
        g->conv_bwd_x_pix(Cp, M, T, Wc, dy, Pq, rowoff, src, q, n, dg);
        for (int pix = 0; pix < HWp; pix++)
            for (int c = 0; c < Cp; c++) {
                double ref = d0[pix * Cp + c], mag = fabs(ref);
                for (int t = 0; t < T; t++)
                    for (int j = 0; j < n; j++) {
                        if (src[j] + rowoff[t] != pix || c >= C) continue;
                        for (int m = 0; m < M; m++) {
                            double v = (double)Wd[m * CK + (size_t)c * T + t] * dy[m * Pq + q[j]];
                            ref += v, mag += fabs(v);
                        }
                    }
                assert_true(fabs(dg[pix * Cp + c] - ref) <= 1e-5 * (1 + mag));
            }
        for (int vi = 0; vi < CF_SIMD_COUNT; vi++) {
            const cf_simd_ops *v = cf_simd_variant(vi);
            if (!v) continue;
            memcpy(dv, d0, xn * sizeof *dv);
            v->conv_bwd_x_pix(Cp, M, T, Wc, dy, Pq, rowoff, src, q, n, dv);
            assert_memory_equal(dv, dg, xn * sizeof *dv);
            checked++;
        }
        free(Wd), free(Wc), free(dy), free(d0), free(dg), free(dv);
    }
    print_message("backward over output channels, cases checked against generic: %d\n", checked);
    assert_true(checked >= (int)(sizeof Ms / sizeof *Ms * sizeof Ks / sizeof *Ks + sizeof xc / sizeof *xc));
}

/* The strided transpose between plane-major and pixel-major gradients: every variant gives a
 * plain loop's destination for every shape of 1 .. 40 rows and columns (the AVX2 and AVX-512
 * blocks' full, masked and overlapping edges), with the source's and destination's strides
 * equal to the extents or longer by an odd number, moving each element to its place and
 * writing nothing else (guard floats on both sides of the destination; the source's last row
 * ends at the end of its allocation, so an over-read shows under ASan and valgrind). */
static void transpose_variants_match_a_plain_loop(void **state)
{
    (void)state;
    tu_rng r = {29};
    int checked = 0;
    enum { GUARD = 24 };
    for (int rows = 1; rows <= 40; rows++)
        for (int64_t cols = 1; cols <= 40; cols++) {
            int pick = (int)(tu_uniform(&r) * 4);
            int64_t lds = cols + (pick & 1 ? 1 + 2 * (int64_t)(tu_uniform(&r) * 4) : 0),
                    ldd = rows + (pick & 2 ? 1 + 2 * (int64_t)(tu_uniform(&r) * 4) : 0);
            size_t sn = (size_t)((rows - 1) * lds + cols), dn = (size_t)(cols * ldd) + 2 * GUARD;
            float *src = randf(sn, &r), *want = malloc(dn * sizeof *want),
                  *got = malloc(dn * sizeof *got);
            assert_non_null(want);
            assert_non_null(got);
            memset(want, 0xff, dn * sizeof *want); /* NaN where nothing is written */
            for (int o = 0; o < rows; o++)
                for (int64_t q = 0; q < cols; q++) want[GUARD + q * ldd + o] = src[o * lds + q];
            for (int vi = 0; vi < CF_SIMD_COUNT; vi++) {
                const cf_simd_ops *v = cf_simd_variant(vi);
                if (!v) continue;
                memset(got, 0xff, dn * sizeof *got);
                v->transpose(src, lds, rows, cols, got + GUARD, ldd);
                if (memcmp(got, want, dn * sizeof *got)) {
                    print_error("variant %d: transpose of %d x %lld (lds %lld, ldd %lld) differs "
                                "from the plain loop\n",
                                vi, rows, (long long)cols, (long long)lds, (long long)ldd);
                    fail();
                }
                checked++;
            }
            free(src), free(want), free(got);
        }
    print_message("transposes checked: %d\n", checked);
    assert_true(checked >= 40 * 40);
}

typedef struct conv_case {
    int C, S, k, stride, O, ngroups;
    cfnet_padding pad;
} conv_case;

/* Direct grouped correlation in double: output pixel q uses group g[q]'s weights. */
static void ref_forward(const conv_case *cc, const cf_conv_plan *p, const int32_t *grp,
                        const float *const *W, const float *bias, const float *x, double *y,
                        int n)
{
    for (int s = 0; s < n; s++)
        for (int o = 0; o < cc->O; o++)
            for (int64_t q = 0; q < p->P; q++) {
                int i = (int)(q / p->OW), j = (int)(q % p->OW);
                const float *w = W[grp ? grp[q] : 0] + (size_t)o * p->CK;
                double acc = bias[o];
                for (int c = 0; c < cc->C; c++)
                    for (int a = 0; a < cc->k; a++)
                        for (int d = 0; d < cc->k; d++) {
                            int ii = i * cc->stride - p->pad + a, jj = j * cc->stride - p->pad + d;
                            if (ii < 0 || ii >= cc->S || jj < 0 || jj >= cc->S) continue;
                            acc += (double)x[((size_t)(s * cc->C + c) * cc->S + ii) * cc->S + jj] *
                                   w[(c * cc->k + a) * cc->k + d];
                        }
                y[((size_t)s * cc->O + o) * p->P + q] = acc;
            }
}

typedef struct run_out {
    float *y, *dx, *dW, *db;
} run_out;

static void run_engine(const cf_conv_plan *p, int O, int ngroups, const float *const *W,
                       const float *bias, const float *x, const float *dy, int n, int threads,
                       run_out *out)
{
    size_t ws = cf_conv_workspace(p, O, n, threads);
    assert_int_equal(cf_conv_workspace_kept(p, O, n, threads), 0);
    void *buf = aligned_alloc(64, (ws + 63) / 64 * 64);
    assert_non_null(buf);
    size_t bank = (size_t)O * p->CK;
    out->y = malloc((size_t)n * O * p->P * sizeof(float));
    out->dx = malloc((size_t)n * p->C * p->H * p->W * sizeof(float));
    out->dW = calloc((size_t)ngroups * bank, sizeof(float));
    out->db = calloc((size_t)O, sizeof(float));
    assert_non_null(out->y), assert_non_null(out->dx), assert_non_null(out->dW),
        assert_non_null(out->db);
    float *dWg[64];
    for (int g = 0; g < ngroups; g++) dWg[g] = out->dW + (size_t)g * bank;
    cf_conv_forward(p, O, W, bias, x, out->y, n, buf, NULL, threads, false);
    /* The forward with the ReLU applied by the engine: max(0, y) of the plain forward, bit for
     * bit, on every path, tiling and thread count this is called with (a lone sample on 2 or 3
     * threads shares its tiles). */
    size_t yn = (size_t)n * O * p->P;
    float *yr = malloc(yn * sizeof(float));
    assert_non_null(yr);
    for (size_t i = 0; i < yn; i++) yr[i] = NAN;
    cf_conv_forward(p, O, W, bias, x, yr, n, buf, NULL, threads, true);
    for (size_t i = 0; i < yn; i++) {
        float want = out->y[i] > 0.0f ? out->y[i] : 0.0f;
        assert_memory_equal(&yr[i], &want, sizeof(float));
    }
    free(yr);
    /* dx is overwritten whole, whatever it held (every path; dx_in_place zeroes it first).
     * It ends where an inaccessible page starts: a read or write past the last sample's
     * planes (col2im's adds into dx itself) faults, in every build. */
    size_t xn = (size_t)n * p->C * p->H * p->W, pg = (size_t)sysconf(_SC_PAGESIZE),
           span = (xn * sizeof(float) + pg - 1) / pg * pg;
    char *map = mmap(NULL, span + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + span, pg, PROT_NONE), 0);
    float *gdx = (float *)(map + span) - xn;
    for (size_t i = 0; i < xn; i++) gdx[i] = NAN;
    cf_conv_backward(p, O, W, dWg, out->db, x, dy, gdx, n, buf, NULL, threads);
    memcpy(out->dx, gdx, xn * sizeof(float));
    munmap(map, span + pg);
    free(buf);
}

static void free_out(run_out *o) { free(o->y), free(o->dx), free(o->dW), free(o->db); }

static void check_case(const conv_case *cc, tu_rng *r)
{
    const cf_allocator *a = &cf_default_allocator;
    int n = 5;
    cf_conv_plan ref;
    int OS = cf_conv_out_size(cc->S, cc->k, cc->stride, cc->pad);
    int32_t *grp = NULL;
    if (cc->ngroups > 1) {
        grp = malloc((size_t)OS * OS * sizeof *grp);
        assert_non_null(grp);
        /* groups as blobs of pixels, some groups empty */
        for (int q = 0; q < OS * OS; q++)
            grp[q] = (int32_t)(((q / OS) / 2 * 3 + (q % OS) / 3) % (cc->ngroups - 1));
    }
    CF_ASSERT_OK(cf_conv_plan_init(a, &ref, cc->C, cc->S, cc->S, cc->k, cc->stride, cc->pad, grp,
                                   cc->ngroups));
    size_t bank = (size_t)cc->O * ref.CK;
    float *Wd = randf(bank * cc->ngroups, r), *bias = randf((size_t)cc->O, r);
    const float *W[64];
    for (int g = 0; g < cc->ngroups; g++) W[g] = Wd + (size_t)g * bank;
    size_t xn = (size_t)n * cc->C * cc->S * cc->S, yn = (size_t)n * cc->O * ref.P;
    float *x = randf(xn, r), *dy = randf(yn, r);
    double *yref = malloc(yn * sizeof *yref);
    assert_non_null(yref);
    ref_forward(cc, &ref, grp, W, bias, x, yref, n);

    run_out base;
    run_engine(&ref, cc->O, cc->ngroups, W, bias, x, dy, n, 1, &base);
    /* value */
    for (size_t i = 0; i < yn; i++) assert_true(fabs(base.y[i] - yref[i]) <= 1e-4 * (1 + fabs(yref[i])));
    /* gradients against the reference by linearity: dx = d/dx <dy, y>, checked by directional
     * derivative along a random direction (exact in double for a linear map) */
    float *u = randf(xn, r);
    double *yu = malloc(yn * sizeof *yu);
    float *zero_b = calloc((size_t)cc->O, sizeof *zero_b);
    assert_non_null(yu), assert_non_null(zero_b);
    ref_forward(cc, &ref, grp, W, zero_b, u, yu, n);
    double lhs = 0, rhs = 0, mag = 0;
    for (size_t i = 0; i < yn; i++) lhs += (double)dy[i] * yu[i], mag += fabs((double)dy[i] * yu[i]);
    for (size_t i = 0; i < xn; i++) rhs += (double)base.dx[i] * u[i];
    assert_true(fabs(lhs - rhs) <= 1e-5 * mag);
    /* dW: <dW, V> = <dy, conv_V(x)> without bias */
    float *Vd = randf(bank * cc->ngroups, r);
    const float *V[64];
    for (int g = 0; g < cc->ngroups; g++) V[g] = Vd + (size_t)g * bank;
    ref_forward(cc, &ref, grp, V, zero_b, x, yu, n);
    lhs = rhs = mag = 0;
    for (size_t i = 0; i < yn; i++) lhs += (double)dy[i] * yu[i], mag += fabs((double)dy[i] * yu[i]);
    for (size_t i = 0; i < bank * cc->ngroups; i++) rhs += (double)base.dW[i] * Vd[i];
    assert_true(fabs(lhs - rhs) <= 1e-5 * mag);
    for (int o = 0; o < cc->O; o++) {
        double s = 0;
        for (int b = 0; b < n; b++)
            for (int64_t q = 0; q < ref.P; q++) s += dy[((size_t)b * cc->O + o) * ref.P + q];
        assert_true(fabs(base.db[o] - s) <= 1e-5 * (1 + fabs(s)));
    }

    /* Other tilings and thread counts: identical output and input gradient. */
    static const int64_t cols[] = {1, 7, 24, 100, 480, 100000};
    static const size_t bytes[] = {64, 4096, 196608};
    for (size_t ci = 0; ci < sizeof cols / sizeof *cols; ci++)
        for (size_t bi = 0; bi < sizeof bytes / sizeof *bytes; bi++)
            for (int threads = 1; threads <= 3; threads += 2) {
                cf_conv_plan p;
                CF_ASSERT_OK(cf_conv_plan_init_tiled(a, &p, cc->C, cc->S, cc->S, cc->k,
                                                     cc->stride, cc->pad, grp, cc->ngroups,
                                                     cols[ci], bytes[bi]));
                run_out o;
                run_engine(&p, cc->O, cc->ngroups, W, bias, x, dy, n, threads, &o);
                assert_memory_equal(o.y, base.y, yn * sizeof(float));
                /* The input gradient adds the tiles' contributions tile by tile, so its bits
                 * follow the plan's tiling (not the threads, see below). */
                assert_true(tu_max_rel_diff(o.dx, base.dx, (int64_t)xn) < 1e-4);
                assert_true(tu_max_rel_diff(o.dW, base.dW, (int64_t)(bank * cc->ngroups)) < 1e-4);
                free_out(&o);
                cf_conv_plan_free(&p);
            }
    /* The direct forward (stride 1; over output channels for grouped plans) and the column
     * forward give the same bits, whichever tiles take which path; the backward does not
     * depend on it. */
    for (int mode = CF_CONV_DIRECT_NEVER; mode <= CF_CONV_DIRECT_AUTO; mode++) {
        cf_conv_plan p;
        CF_ASSERT_OK(cf_conv_plan_init(a, &p, cc->C, cc->S, cc->S, cc->k, cc->stride, cc->pad,
                                       grp, cc->ngroups));
        bool ok = cf_conv_plan_set_direct(&p, (cf_conv_direct)mode);
        if (grp) {
            /* grouped: over output channels with ALWAYS and AUTO, whatever the stride */
            assert_true(ok);
            assert_int_equal(p.pix, mode != CF_CONV_DIRECT_NEVER);
        } else {
            assert_int_equal(ok, cc->stride == 1 || mode == CF_CONV_DIRECT_NEVER);
            assert_false(p.pix);
            if (mode == CF_CONV_DIRECT_ALWAYS && ok)
                for (int i = 0; i < p.ntiles; i++) assert_true(p.tdirect[i]);
        }
        for (int threads = 1; threads <= 2; threads++) {
            run_out o;
            run_engine(&p, cc->O, cc->ngroups, W, bias, x, dy, n, threads, &o);
            assert_memory_equal(o.y, base.y, yn * sizeof(float));
            /* grouped plans' backward, over output channels or through columns (which the
             * rule picks depends on O and C k k): the input gradient's sums in the same order,
             * the weight gradient's in two orders */
            assert_memory_equal(o.dx, base.dx, xn * sizeof(float));
            if (grp && cc->stride == 1 && mode != CF_CONV_DIRECT_AUTO)
                assert_true(tu_max_rel_diff(o.dW, base.dW, (int64_t)(bank * cc->ngroups)) < 1e-4);
            free_out(&o);
        }
        cf_conv_plan_free(&p);
    }
    /* Direct tiles each output row a run, or each tile one flat run over its rows (stride 1,
     * kernel > 1): the same bits, on 1 and 2 threads, in the batch and for a lone sample on 3
     * threads (tiles split over the threads). */
    for (int mode = CF_CONV_DIRECT_NEVER; mode <= CF_CONV_DIRECT_AUTO; mode++) {
        cf_conv_plan p;
        CF_ASSERT_OK(cf_conv_plan_init(a, &p, cc->C, cc->S, cc->S, cc->k, cc->stride, cc->pad,
                                       grp, cc->ngroups));
        bool flat = !grp && cc->stride == 1 && cc->k > 1;
        assert_int_equal(p.fsrc != NULL, flat);
        assert_true(cf_conv_plan_set_direct(&p, cc->stride == 1 || grp ? CF_CONV_DIRECT_ALWAYS
                                                                       : CF_CONV_DIRECT_NEVER));
        assert_int_equal(cf_conv_plan_set_flat(&p, (cf_conv_direct)mode),
                         flat || mode == CF_CONV_DIRECT_NEVER);
        int nflat = 0;
        for (int i = 0; p.tdirect && i < p.ntiles; i++) nflat += p.tdirect[i] == 2;
        if (flat && mode == CF_CONV_DIRECT_ALWAYS) assert_int_equal(nflat, p.ntiles);
        if (mode == CF_CONV_DIRECT_NEVER || !flat) assert_int_equal(nflat, 0);
        for (int threads = 1; threads <= 2; threads++) {
            run_out o;
            run_engine(&p, cc->O, cc->ngroups, W, bias, x, dy, n, threads, &o);
            assert_memory_equal(o.y, base.y, yn * sizeof(float));
            free_out(&o);
        }
        run_out o;
        run_engine(&p, cc->O, cc->ngroups, W, bias, x + (size_t)(n - 1) * cc->C * cc->S * cc->S,
                   dy + (size_t)(n - 1) * cc->O * ref.P, 1, 3, &o);
        assert_memory_equal(o.y, base.y + (size_t)(n - 1) * cc->O * ref.P,
                            (size_t)cc->O * ref.P * 4);
        free_out(&o);
        cf_conv_plan_free(&p);
    }
    /* Same plan: any thread count, and a sample alone, give the output and input gradient bits
     * it gets inside the batch on one thread. */
    for (int threads = 2; threads <= 4; threads++) {
        run_out o;
        run_engine(&ref, cc->O, cc->ngroups, W, bias, x, dy, n, threads, &o);
        assert_memory_equal(o.y, base.y, yn * sizeof(float));
        assert_memory_equal(o.dx, base.dx, xn * sizeof(float));
        assert_true(tu_max_rel_diff(o.dW, base.dW, (int64_t)(bank * cc->ngroups)) < 1e-4);
        free_out(&o);
    }
    for (int s = 0; s < n; s++) {
        /* 2 and 3 threads split a lone sample's tiles in the forward */
        run_out o;
        run_engine(&ref, cc->O, cc->ngroups, W, bias, x + (size_t)s * cc->C * cc->S * cc->S,
                   dy + (size_t)s * cc->O * ref.P, 1, 1 + s % 3, &o);
        assert_memory_equal(o.y, base.y + (size_t)s * cc->O * ref.P, (size_t)cc->O * ref.P * 4);
        assert_memory_equal(o.dx, base.dx + (size_t)s * cc->C * cc->S * cc->S,
                            (size_t)cc->C * cc->S * cc->S * 4);
        free_out(&o);
    }
    free_out(&base);
    cf_conv_plan_free(&ref);
    free(grp), free(Wd), free(bias), free(x), free(dy), free(yref), free(u), free(yu),
        free(zero_b), free(Vd);
}

static void engine_matches_direct_loop_and_ignores_tiling(void **state)
{
    (void)state;
    tu_rng r = {17};
    static const conv_case cases[] = {
        {3, 11, 3, 1, 5, 1, CFNET_PADDING_SAME},
        {2, 12, 3, 1, 4, 1, CFNET_PADDING_VALID},
        {4, 13, 5, 1, 6, 7, CFNET_PADDING_SAME},
        {3, 14, 3, 2, 5, 1, CFNET_PADDING_SAME},
        {5, 9, 1, 1, 9, 3, CFNET_PADDING_VALID},
        {1, 20, 3, 1, 15, 9, CFNET_PADDING_VALID},
        {3, 15, 3, 2, 17, 4, CFNET_PADDING_SAME}, /* grouped, stride 2 */
        /* plain, stride 1, rows of 17 to 28 pixels: AUTO takes tiles as flat runs (pad 1, 0,
         * 2; kernels 3 and 5); and a 1 x 1 kernel (no halo: its runs are flat already) */
        {3, 17, 3, 1, 5, 1, CFNET_PADDING_SAME},
        {2, 21, 5, 1, 9, 1, CFNET_PADDING_VALID},
        {4, 19, 5, 1, 7, 1, CFNET_PADDING_SAME},
        {3, 28, 3, 1, 15, 1, CFNET_PADDING_SAME},
        {3, 18, 1, 1, 4, 1, CFNET_PADDING_SAME},
        /* grouped, 24 channels: AUTO's forward over output channels, backward through the
         * columns (the backward's rule stops at 16 channels) */
        {32, 12, 3, 1, 24, 5, CFNET_PADDING_SAME},
        /* grouped with weights too large for AUTO's forward over output channels (48 x 432
         * floats), and too many channels (40) */
        {48, 10, 3, 1, 24, 5, CFNET_PADDING_VALID},
        {16, 12, 3, 1, 40, 5, CFNET_PADDING_SAME},
        /* large enough (P C k k >= CF_CONV_SPLIT_WORK) for a lone sample's forward to split
         * its tiles over the threads */
        {32, 48, 3, 1, 4, 1, CFNET_PADDING_SAME},
        {16, 64, 3, 1, 3, 9, CFNET_PADDING_VALID},
    };
    /* Under valgrind (make check-valgrind) the two large layers are left out: they add
     * minutes there and nothing the small ones do not check for memory errors. */
    size_t count = sizeof cases / sizeof *cases;
    if (getenv("CFNET_TEST_UNDER_VALGRIND")) count -= 2;
    for (size_t i = 0; i < count; i++) check_case(&cases[i], &r);
}

/* Two plans of one convolution run on the same random data, on one and two threads, give
 * the same output, input gradient, weight gradient and bias gradient, bit for bit. */
static void plans_give_the_same_bits(const cf_conv_plan *p0, const cf_conv_plan *p1,
                                     const conv_case *cc, int n, tu_rng *r)
{
    size_t bank = (size_t)cc->O * p0->CK, xn = (size_t)n * cc->C * cc->S * cc->S,
           yn = (size_t)n * cc->O * p0->P;
    float *Wd = randf(bank, r), *bias = randf((size_t)cc->O, r);
    const float *W[1] = {Wd};
    float *x = randf(xn, r), *dy = randf(yn, r);
    for (int threads = 1; threads <= 2; threads++) {
        run_out o0, o1;
        run_engine(p0, cc->O, 1, W, bias, x, dy, n, threads, &o0);
        run_engine(p1, cc->O, 1, W, bias, x, dy, n, threads, &o1);
        assert_memory_equal(o0.y, o1.y, yn * sizeof(float));
        assert_memory_equal(o0.dx, o1.dx, xn * sizeof(float));
        assert_memory_equal(o0.dW, o1.dW, bank * sizeof(float));
        assert_memory_equal(o0.db, o1.db, (size_t)cc->O * sizeof(float));
        free_out(&o0), free_out(&o1);
    }
    free(Wd), free(bias), free(x), free(dy);
}

/* A plain convolution planned as one group over output channels (cf_conv_plain_over_channels:
 * group_of all zero, bwd_columns set; conv2d on 50 x 50 maps) gives the plain plan's bits: its
 * forward products are the same chains, its backward the same column path. With the
 * backward over output channels instead, the weight gradient's sums would run in another
 * order. */
static void plain_plan_over_channels_keeps_the_bits(void **state)
{
    (void)state;
    const cf_allocator *a = &cf_default_allocator;
    tu_rng r = {31};
    static const conv_case cases[] = {
        {4, 34, 3, 1, 8, 1, CFNET_PADDING_SAME},
        {3, 50, 3, 1, 16, 1, CFNET_PADDING_SAME},
        {2, 36, 3, 1, 5, 1, CFNET_PADDING_VALID},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const conv_case *cc = &cases[ci];
        assert_true(cf_conv_plain_over_channels(cc->C, cc->S, cc->S, cc->k, cc->stride, cc->pad,
                                                cc->O));
        int OS = cf_conv_out_size(cc->S, cc->k, cc->stride, cc->pad), n = 3;
        int32_t *zeros = calloc((size_t)OS * OS, sizeof *zeros);
        assert_non_null(zeros);
        cf_conv_plan plain, one;
        CF_ASSERT_OK(cf_conv_plan_init(a, &plain, cc->C, cc->S, cc->S, cc->k, 1, cc->pad, NULL, 1));
        CF_ASSERT_OK(cf_conv_plan_init(a, &one, cc->C, cc->S, cc->S, cc->k, 1, cc->pad, zeros, 1));
        one.bwd_columns = true;
        plans_give_the_same_bits(&plain, &one, cc, n, &r);
        cf_conv_plan_free(&plain), cf_conv_plan_free(&one);
        free(zeros);
    }
}

/* Plans whose runs all start and end on multiples of 8 columns (maps 8 k pixels wide, in
 * natural order: runs_fit) can take their weight gradient on the columns read in place
 * (nt_runs); it gives the bits of the column path (im2col + gemm_nt), and so does everything
 * else, on one and two threads, with one sample per block (64 x 64: tiles end in the middle of
 * rows) and with several (8 x 8). The planner takes the path where the runs are at least 32
 * columns long on average (64 x 64, 32 x 32), not on shorter rows (8, 16, 24), and maps of
 * other widths keep the columns. */
static void weight_gradient_in_place_keeps_the_bits(void **state)
{
    (void)state;
    const cf_allocator *a = &cf_default_allocator;
    tu_rng r = {37};
    static const conv_case cases[] = {
        {4, 64, 3, 1, 5, 1, CFNET_PADDING_SAME},
        {3, 18, 3, 1, 9, 1, CFNET_PADDING_VALID},
        {5, 8, 3, 1, 4, 1, CFNET_PADDING_SAME},
        {2, 16, 1, 1, 3, 1, CFNET_PADDING_SAME},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const conv_case *cc = &cases[ci];
        int n = 5;
        cf_conv_plan p;
        CF_ASSERT_OK(cf_conv_plan_init(a, &p, cc->C, cc->S, cc->S, cc->k, 1, cc->pad, NULL, 1));
        assert_true(p.runs_fit);
        /* 1 x 1 filters without padding: a tile's columns are one run */
        assert_true(p.nt_runs == (cc->S == 64 || cc->k == 1));
        if (cc->S == 8) assert_true(p.spb > 1);
        p.nt_runs = true;
        cf_conv_plan cols = p; /* the same tables, the weight gradient through im2col */
        cols.nt_runs = false;
        plans_give_the_same_bits(&cols, &p, cc, n, &r);
        cf_conv_plan_free(&p);
    }
    /* The rule, with valid padding too (the rotated-MNIST G-CNN's 24 x 24 and 8 x 8 outputs
     * keep the columns), and widths whose runs do not fit (50, 28, 12 columns per row). */
    static const struct { int S, fit, in_place; cfnet_padding pad; } widths[] = {
        {64, 1, 1, CFNET_PADDING_SAME},  {32, 1, 1, CFNET_PADDING_SAME},
        {34, 1, 1, CFNET_PADDING_VALID}, {24, 1, 0, CFNET_PADDING_SAME},
        {26, 1, 0, CFNET_PADDING_VALID}, {16, 1, 0, CFNET_PADDING_SAME},
        {10, 1, 0, CFNET_PADDING_VALID}, {50, 0, 0, CFNET_PADDING_SAME},
        {28, 0, 0, CFNET_PADDING_SAME},  {12, 0, 0, CFNET_PADDING_SAME},
    };
    for (size_t i = 0; i < sizeof widths / sizeof *widths; i++) {
        cf_conv_plan p;
        CF_ASSERT_OK(cf_conv_plan_init(a, &p, 3, widths[i].S, widths[i].S, 3, 1, widths[i].pad,
                                       NULL, 1));
        assert_int_equal(p.runs_fit, widths[i].fit);
        assert_int_equal(p.nt_runs, widths[i].in_place);
        cf_conv_plan_free(&p);
    }
}

/* Plans without a border (valid padding, or 1 x 1 filters) take the input gradient's col2im
 * straight into dx (dx_in_place) instead of into padded planes copied out after: the same sums
 * in the same order, so the bits of the copy, on one and two threads, with one sample per
 * block (26 x 26, 34 x 34, 40 x 40) and several (small maps), for kernels 1, 3 and 5 and odd
 * sizes. The kernels add a run shorter than 8 columns as a block of 8, which near the end of a
 * sample's planes would pass it: from column row dx_exact_row on, col2im adds exact lengths.
 * Outputs under 8 pixels wide (the rotated-MNIST 6 x 6 -> 4 x 4 layer, 8 x 8 -> 6 x 6), tiles
 * ending in a short run at the end of the planes (12 x 12 -> 10 x 10: tiles of 96 and 4
 * columns; 40 x 40 -> 38 x 38; 11 x 11 with 1 x 1 filters: 120 and 1, 5 x 5: 24 and 1) take
 * both: run_engine's dx ends at an inaccessible page, so a block past the last sample faults,
 * and the sweep below checks that no block before dx_exact_row passes its sample's planes
 * (another thread's sample would be a race). */
static void input_gradient_in_place_keeps_the_bits(void **state)
{
    (void)state;
    const cf_allocator *a = &cf_default_allocator;
    tu_rng r = {41};
    static const struct { conv_case cc; int exact; } cases[] = {
        {{15, 26, 3, 1, 15, 1, CFNET_PADDING_VALID}, 0}, {{60, 10, 3, 1, 60, 1, CFNET_PADDING_VALID}, 0},
        {{3, 13, 5, 1, 7, 1, CFNET_PADDING_VALID}, 0},   {{5, 12, 1, 1, 3, 1, CFNET_PADDING_VALID}, 0},
        {{2, 9, 1, 1, 4, 1, CFNET_PADDING_SAME}, 0},     {{4, 34, 3, 1, 5, 1, CFNET_PADDING_VALID}, 0},
        {{3, 10, 3, 1, 2, 1, CFNET_PADDING_VALID}, 0},   {{1, 3, 1, 1, 2, 1, CFNET_PADDING_VALID}, 0},
        {{60, 6, 3, 1, 60, 1, CFNET_PADDING_VALID}, 1},  {{60, 12, 3, 1, 60, 1, CFNET_PADDING_VALID}, 1},
        {{15, 8, 3, 1, 15, 1, CFNET_PADDING_VALID}, 1},  {{4, 40, 3, 1, 5, 1, CFNET_PADDING_VALID}, 1},
        {{5, 11, 1, 1, 3, 1, CFNET_PADDING_VALID}, 1},   {{3, 5, 1, 1, 4, 1, CFNET_PADDING_SAME}, 1},
        {{3, 9, 5, 1, 4, 1, CFNET_PADDING_VALID}, 1},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const conv_case *cc = &cases[ci].cc;
        cf_conv_plan p;
        CF_ASSERT_OK(cf_conv_plan_init(a, &p, cc->C, cc->S, cc->S, cc->k, 1, cc->pad, NULL, 1));
        if (!p.dx_in_place || (p.dx_exact_row < p.CK) != (bool)cases[ci].exact)
            fail_msg("%d x %d x %d, k %d: dx_in_place %d, exact from row %lld of %lld", cc->C,
                     cc->S, cc->S, cc->k, p.dx_in_place, (long long)p.dx_exact_row,
                     (long long)p.CK);
        if (cc->S <= 13) assert_true(p.spb > 1);
        cf_conv_plan copy = p; /* the same tables, col2im into padded planes copied out */
        copy.dx_in_place = false;
        assert_true(cf_conv_workspace(&p, cc->O, 5, 1) < cf_conv_workspace(&copy, cc->O, 5, 1));
        plans_give_the_same_bits(&copy, &p, cc, 5, &r);
        cf_conv_plan_free(&p);
    }
    /* The rule: every plan without a border, none with one. */
    static const struct { int C, S, k, in_place; cfnet_padding pad; } rule[] = {
        {15, 26, 3, 1, CFNET_PADDING_VALID}, {60, 10, 3, 1, CFNET_PADDING_VALID},
        {60, 12, 3, 1, CFNET_PADDING_VALID},
        {60, 6, 3, 1, CFNET_PADDING_VALID},  {15, 8, 3, 1, CFNET_PADDING_VALID},
        {3, 9, 5, 1, CFNET_PADDING_VALID},   {3, 12, 5, 1, CFNET_PADDING_VALID},
        {3, 4, 1, 1, CFNET_PADDING_VALID},   {3, 28, 3, 0, CFNET_PADDING_SAME},
        {3, 6, 1, 1, CFNET_PADDING_SAME},    {3, 64, 5, 0, CFNET_PADDING_SAME},
        {3, 5, 1, 1, CFNET_PADDING_SAME},    {3, 6, 3, 0, CFNET_PADDING_SAME},
        {4, 40, 3, 1, CFNET_PADDING_VALID},  {5, 11, 1, 1, CFNET_PADDING_VALID},
    };
    for (size_t i = 0; i < sizeof rule / sizeof *rule; i++) {
        cf_conv_plan p;
        CF_ASSERT_OK(cf_conv_plan_init(a, &p, rule[i].C, rule[i].S, rule[i].S, rule[i].k, 1,
                                       rule[i].pad, NULL, 1));
        if (p.dx_in_place != (bool)rule[i].in_place)
            fail_msg("%d x %d x %d, k %d, %s: dx_in_place %d", rule[i].C, rule[i].S, rule[i].S,
                     rule[i].k, rule[i].pad == CFNET_PADDING_SAME ? "same" : "valid",
                     p.dx_in_place);
        cf_conv_plan_free(&p);
    }
    /* Every plan without a border, over small maps, kernels and strides 1 to 3 (stride 2 and 3
     * runs are single columns, each added as a block of 8), one and two input planes: the
     * flag's bits; every run's block of 8 (or exact run) inside its sample's planes on every
     * column row before dx_exact_row, and some run's block past them on row dx_exact_row (the
     * first row with exact adds is no later than needed, and no earlier). */
    int taken = 0, exact = 0;
    for (int S = 1; S <= 12; S++)
        for (int k = 1; k <= 5; k += 2)
            for (int stride = 1; stride <= 3; stride++)
                for (int C = 1; C <= 2; C++) {
                    conv_case cc = {C, S, k, stride, 3 + S % 5, 1, CFNET_PADDING_VALID};
                    if (cf_conv_out_size(S, k, stride, cc.pad) < 1) continue;
                    cf_conv_plan p;
                    CF_ASSERT_OK(cf_conv_plan_init(a, &p, C, S, S, k, stride, cc.pad, NULL, 1));
                    assert_true(p.dx_in_place);
                    assert_true(p.dx_exact_row >= 0 && p.dx_exact_row <= p.CK);
                    taken++;
                    exact += p.dx_exact_row < p.CK;
                    bool past = false;
                    for (int64_t q = 0; q < p.run_off[p.ntiles]; q++) {
                        int64_t len = p.runs[q].len < 8 ? 8 : p.runs[q].len;
                        for (int64_t row = 0; row < p.dx_exact_row; row++)
                            assert_true(p.rowoff[row] + p.runs[q].src + len <= C * S * S);
                        if (p.dx_exact_row < p.CK &&
                            p.rowoff[p.dx_exact_row] + p.runs[q].src + len > C * S * S)
                            past = true;
                    }
                    assert_true(past == (p.dx_exact_row < p.CK));
                    cf_conv_plan copy = p;
                    copy.dx_in_place = false;
                    plans_give_the_same_bits(&copy, &p, &cc, 3, &r);
                    cf_conv_plan_free(&p);
                }
    print_message("plans in place: %d, with exact rows: %d\n", taken, exact);
    assert_true(taken > 150 && exact > 80);
}

/* The weight gradient's chunks of rows (backward_range): with the input gradient through the
 * columns, chunks of p->rows; without it (no dx, the first layer; or dx over output channels)
 * chunks rounded down to multiples of 8 on the columns, and all CK rows at once read in place
 * (nt_runs). Each element of dW is the same tile's chain whatever the chunk, so the backward
 * without dx gives the bits of the backward with dx: every row once, none dropped or added
 * twice. The chunk bytes give p->rows = 12 or 20 (4 rows past a multiple of 8, rounded down to
 * 8 or 16) and 8; CK 9 to 175, not multiples of 8; strides, valid padding, grouped plans;
 * 1 and 3 threads. */
static void weight_gradient_chunks_keep_the_bits(void **state)
{
    (void)state;
    const cf_allocator *a = &cf_default_allocator;
    tu_rng r = {41};
    static const conv_case cases[] = {
        {3, 11, 3, 1, 5, 1, CFNET_PADDING_SAME},  {4, 13, 5, 1, 6, 1, CFNET_PADDING_VALID},
        {3, 14, 3, 2, 5, 1, CFNET_PADDING_SAME},  {7, 12, 5, 1, 3, 1, CFNET_PADDING_SAME},
        {1, 9, 3, 1, 4, 1, CFNET_PADDING_VALID},  {5, 15, 3, 2, 17, 4, CFNET_PADDING_SAME},
        {24, 10, 3, 1, 9, 3, CFNET_PADDING_SAME}, {1, 1, 1, 1, 2, 1, CFNET_PADDING_SAME},
        {3, 9, 1, 1, 4, 1, CFNET_PADDING_VALID},
        /* runs_fit (64 pixels wide): the weight gradient read in place */
        {4, 64, 3, 1, 5, 1, CFNET_PADDING_SAME},  {3, 16, 5, 1, 4, 1, CFNET_PADDING_SAME},
    };
    static const int row_counts[] = {8, 12, 20};
    int rounded = 0, in_place = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const conv_case *cc = &cases[ci];
        int n = 3, OS = cf_conv_out_size(cc->S, cc->k, cc->stride, cc->pad);
        int32_t *grp = NULL;
        if (cc->ngroups > 1) {
            grp = malloc((size_t)OS * OS * sizeof *grp);
            assert_non_null(grp);
            for (int q = 0; q < OS * OS; q++) grp[q] = (int32_t)(q % cc->ngroups);
        }
        cf_conv_plan p0;
        CF_ASSERT_OK(cf_conv_plan_init_tiled(a, &p0, cc->C, cc->S, cc->S, cc->k, cc->stride,
                                             cc->pad, grp, cc->ngroups, 480, (size_t)192 << 10));
        int64_t tcols = p0.spb * p0.wmax;
        size_t bank = (size_t)cc->O * p0.CK, xn = (size_t)n * cc->C * cc->S * cc->S,
               yn = (size_t)n * cc->O * p0.P;
        float *Wd = randf(bank * cc->ngroups, &r), *bias = randf((size_t)cc->O, &r);
        const float *W[64];
        for (int g = 0; g < cc->ngroups; g++) W[g] = Wd + (size_t)g * bank;
        float *x = randf(xn, &r), *dy = randf(yn, &r);
        float *dW = malloc(bank * cc->ngroups * sizeof(float)),
              *db = malloc((size_t)cc->O * sizeof(float));
        assert_non_null(dW), assert_non_null(db);
        float *dWg[64];
        for (int g = 0; g < cc->ngroups; g++) dWg[g] = dW + (size_t)g * bank;
        for (size_t ri = 0; ri < sizeof row_counts / sizeof *row_counts; ri++)
            for (int nt = 0; nt <= (int)p0.runs_fit; nt++)
                for (int threads = 1; threads <= 3; threads += 2) {
                    cf_conv_plan p;
                    CF_ASSERT_OK(cf_conv_plan_init_tiled(
                        a, &p, cc->C, cc->S, cc->S, cc->k, cc->stride, cc->pad, grp,
                        cc->ngroups, 480, (size_t)(tcols * row_counts[ri]) * sizeof(float)));
                    assert_true(p.spb * p.wmax == tcols);
                    assert_true(p.rows == (row_counts[ri] < p.CK ? row_counts[ri] : p.CK));
                    p.nt_runs = nt;
                    if (p.rows % 8 && p.rows < p.CK) nt ? in_place++ : rounded++;
                    run_out o;
                    run_engine(&p, cc->O, cc->ngroups, W, bias, x, dy, n, threads, &o);
                    size_t ws = cf_conv_workspace(&p, cc->O, n, threads);
                    void *buf = aligned_alloc(64, (ws + 63) / 64 * 64);
                    assert_non_null(buf);
                    memset(dW, 0, bank * cc->ngroups * sizeof(float));
                    memset(db, 0, (size_t)cc->O * sizeof(float));
                    cf_conv_backward(&p, cc->O, W, dWg, db, x, dy, NULL, n, buf, NULL, threads);
                    assert_memory_equal(dW, o.dW, bank * cc->ngroups * sizeof(float));
                    assert_memory_equal(db, o.db, (size_t)cc->O * sizeof(float));
                    free(buf);
                    free_out(&o);
                    cf_conv_plan_free(&p);
                }
        free(Wd), free(bias), free(x), free(dy), free(dW), free(db), free(grp);
        cf_conv_plan_free(&p0);
    }
    print_message("chunks rounded down: %d, read in place: %d\n", rounded, in_place);
    assert_true(rounded >= 20 && in_place >= 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gemm_variants_match_generic),
        cmocka_unit_test(gemm_matches_double_products),
        cmocka_unit_test(gemm_pieces_give_the_same_bits),
        cmocka_unit_test(direct_forward_variants_match_generic),
        cmocka_unit_test(flat_forward_variants_match_pixels),
        cmocka_unit_test(flat_auto_follows_the_vector_width),
        cmocka_unit_test(pix_forward_variants_match_generic),
        cmocka_unit_test(pix_backward_variants_match_generic),
        cmocka_unit_test(transpose_variants_match_a_plain_loop),
        cmocka_unit_test(engine_matches_direct_loop_and_ignores_tiling),
        cmocka_unit_test(plain_plan_over_channels_keeps_the_bits),
        cmocka_unit_test(nt_runs_match_gemm_nt_on_columns),
        cmocka_unit_test(weight_gradient_in_place_keeps_the_bits),
        cmocka_unit_test(input_gradient_in_place_keeps_the_bits),
        cmocka_unit_test(weight_gradient_chunks_keep_the_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
