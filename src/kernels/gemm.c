/* The convolution engine's matrix products: portable C and AVX2+FMA; see gemm.h. */
#include "kernels/gemm.h"
#include "kernels/simd.h" /* cf_run */

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __clang__
#pragma clang fp contract(off)
#endif

/* K is cut into blocks of this many steps; between blocks the partial sums go through C, which
 * keeps B's strip in the L1 cache without changing any element's chain of operations. */
#ifndef KC
#define KC 128
#endif

static inline float tree8(const float s[8])
{
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

size_t cf_gemm_packed_floats(int M, int K) { return (size_t)((M + 3) / 4) * 4 * (size_t)K; }

void cf_gemm_pack_a(int M, int K, const float *A, int lda, float *Ap)
{
    for (int m0 = 0; m0 < M; m0 += 4)
        for (int k = 0; k < K; k++)
            for (int i = 0; i < 4; i++)
                Ap[(size_t)m0 * K + (size_t)k * 4 + i] =
                    m0 + i < M ? A[(size_t)(m0 + i) * lda + k] : 0.0f;
}

void cf_gemm_pack_at(int M, int K, const float *A, int lda, float *Ap)
{
    for (int m0 = 0; m0 < M; m0 += 4)
        for (int k = 0; k < K; k++)
            for (int i = 0; i < 4; i++)
                Ap[(size_t)m0 * K + (size_t)k * 4 + i] =
                    m0 + i < M ? A[(size_t)k * lda + m0 + i] : 0.0f;
}

void cf_gemm_nn_generic(int M, int N, int K, const float *Ap, int ak, const float *B, int ldb,
                        float *C, int ldc, int cont)
{
    for (int m = 0; m < M; m++) {
        float *c = C + (size_t)m * ldc;
        const float *a = Ap + (size_t)(m / 4 * 4) * ak + m % 4;
        if (!cont)
            for (int n = 0; n < N; n++) c[n] = 0.0f;
        for (int k = 0; k < K; k++) {
            const float *b = B + (size_t)k * ldb;
            for (int n = 0; n < N; n++) c[n] = fmaf(a[(size_t)k * 4], b[n], c[n]);
        }
    }
}

void cf_gemm_nt_generic(int M, int L, int N, const float *A, int lda, const float *B, int ldb,
                        float *C, int ldc)
{
    for (int m = 0; m < M; m++) {
        const float *a = A + (size_t)m * lda;
        for (int l = 0; l < L; l++) {
            const float *b = B + (size_t)l * ldb;
            float s[8] = {0};
            int n = 0;
            for (; n + 8 <= N; n += 8)
                for (int u = 0; u < 8; u++) s[u] = fmaf(a[n + u], b[n + u], s[u]);
            if (n < N)
                for (int u = 0; u < 8; u++) {
                    bool in = n + u < N;
                    s[u] = fmaf(in ? a[n + u] : 0.0f, in ? b[n + u] : 0.0f, s[u]);
                }
            C[(size_t)m * ldc + l] += tree8(s);
        }
    }
}

/* ---- direct convolution over runs (see gemm.h) ---- */

void cf_conv_fwd_runs_generic(int M, int K, const float *Ap, const float *x,
                              const int32_t *rowoff, const cf_run *a, const cf_run *e,
                              const int32_t *rq, float *y, int64_t ldy, const float *bias)
{
    for (const cf_run *r = a; r < e; r++) {
        const float *xs = x + r->src;
        float *yq = y + rq[r - a];
        for (int m = 0; m < M; m++) {
            const float *am = Ap + (size_t)(m / 4 * 4) * K + m % 4;
            for (int n = 0; n < r->len; n++) {
                float c = 0.0f;
                for (int k = 0; k < K; k++) c = fmaf(am[(size_t)k * 4], xs[rowoff[k] + n], c);
                yq[m * ldy + n] = bias ? c + bias[m] : c;
            }
        }
    }
}

/* ---- direct convolution over output channels (see gemm.h) ---- */

size_t cf_gemm_pix_floats(int M, int K) { return (size_t)((M + 7) / 8) * 8 * (size_t)K; }

void cf_gemm_pack_pix(int M, int K, const float *A, int lda, float *Ap)
{
    int Mp = (M + 7) / 8 * 8;
    for (int k = 0; k < K; k++)
        for (int m = 0; m < Mp; m++)
            Ap[(size_t)k * Mp + m] = m < M ? A[(size_t)m * lda + k] : 0.0f;
}

void cf_conv_fwd_pix_generic(int M, int K, const float *Ap, const float *x,
                             const int32_t *rowoff, const int32_t *src, const int32_t *q, int n,
                             float *y, int64_t ldy, const float *bias)
{
    int Mp = (M + 7) / 8 * 8;
    for (int j = 0; j < n; j++) {
        const float *xs = x + src[j];
        for (int m = 0; m < M; m++) {
            float c = 0.0f;
            for (int k = 0; k < K; k++) c = fmaf(Ap[(size_t)k * Mp + m], xs[rowoff[k]], c);
            y[m * ldy + q[j]] = bias ? c + bias[m] : c;
        }
    }
}

size_t cf_gemm_dx_floats(int C, int M, int k)
{
    return (size_t)k * k * (size_t)M * (size_t)((C + 7) / 8 * 8);
}

void cf_gemm_pack_dx(int C, int M, int k, const float *A, float *Wc)
{
    int Cp = (C + 7) / 8 * 8, kk = k * k;
    size_t CK = (size_t)C * kk;
    for (int t = 0; t < kk; t++)
        for (int m = 0; m < M; m++)
            for (int c = 0; c < Cp; c++)
                Wc[((size_t)t * M + m) * Cp + c] = c < C ? A[m * CK + (size_t)c * kk + t] : 0.0f;
}

void cf_conv_bwd_w_pix_generic(int M, int K, const float *dyT, const float *x,
                               const int32_t *rowoff, const int32_t *src, const int32_t *q, int n,
                               float *dWt)
{
    int Mp = (M + 7) / 8 * 8;
    for (int k = 0; k < K; k++)
        for (int m = 0; m < Mp; m++) {
            float c = dWt[(size_t)k * Mp + m];
            for (int j = 0; j < n; j++)
                c = fmaf(x[rowoff[k] + src[j]], dyT[(size_t)q[j] * Mp + m], c);
            dWt[(size_t)k * Mp + m] = c;
        }
}

void cf_transpose_generic(const float *src, int64_t lds, int rows, int64_t cols, float *dst,
                          int64_t ldd)
{
    for (int o = 0; o < rows; o++)
        for (int64_t q = 0; q < cols; q++) dst[q * ldd + o] = src[o * lds + q];
}

void cf_conv_bwd_x_pix_generic(int Cp, int M, int T, const float *Wc, const float *dy,
                               int64_t P, const int32_t *rowoff, const int32_t *src,
                               const int32_t *q, int n, float *dxT)
{
    for (int t = 0; t < T; t++)
        for (int j = 0; j < n; j++) {
            float *d = dxT + (int64_t)(src[j] + rowoff[t]) * Cp;
            const float *dq = dy + q[j];
            for (int c = 0; c < Cp; c++) {
                float acc = 0.0f;
                for (int m = 0; m < M; m++)
                    acc = fmaf(dq[(int64_t)m * P], Wc[((size_t)t * M + m) * Cp + c], acc);
                d[c] += acc;
            }
        }
}

#ifdef CF_HAVE_GEMM_AVX2
#include <immintrin.h>

#define T2 __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline)) T2

/* Lanes 0 .. rem-1 set (rem in 1..8). */
INL __m256i mask_of(int rem)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* One register tile of C: mr rows x nv vectors of 8 columns (the last one holding rem columns
 * when masked), over k in [k0, k1); first: start from 0, else from C. */
INL void nn_tile(const int mr, const int nv, const bool masked, int rem, int k0, int k1,
                 bool first, const float *A, const float *B, int ldb, float *C, int ldc)
{
    __m256 acc[4][3];
    __m256i mask = masked ? mask_of(rem) : _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) {
            if (first) acc[i][v] = _mm256_setzero_ps();
            else if (masked && v == nv - 1)
                acc[i][v] = _mm256_maskload_ps(C + (size_t)i * ldc + 8 * v, mask);
            else acc[i][v] = _mm256_loadu_ps(C + (size_t)i * ldc + 8 * v);
        }
    for (int k = k0; k < k1; k++) {
        const float *b = B + (size_t)k * ldb;
        __m256 bv[3];
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++)
            bv[v] = masked && v == nv - 1 ? _mm256_maskload_ps(b + 8 * v, mask)
                                          : _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m256 a = _mm256_broadcast_ss(A + (size_t)k * 4 + i);
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++) acc[i][v] = _mm256_fmadd_ps(a, bv[v], acc[i][v]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) {
            if (masked && v == nv - 1)
                _mm256_maskstore_ps(C + (size_t)i * ldc + 8 * v, mask, acc[i][v]);
            else _mm256_storeu_ps(C + (size_t)i * ldc + 8 * v, acc[i][v]);
        }
}

/* Rows of one strip of columns (width w <= 24) with mr rows at a time. */
INL void nn_rows(const int mr, int w, int k0, int k1, bool first, const float *A,
                 const float *B, int ldb, float *C, int ldc)
{
    if (w == 24) {
        nn_tile(mr, 3, false, 8, k0, k1, first, A, B, ldb, C, ldc);
        return;
    }
    int nv = (w + 7) / 8, rem = w - 8 * (nv - 1);
    bool masked = rem < 8;
    switch (nv * 2 + masked) {
    case 2: nn_tile(mr, 1, false, 8, k0, k1, first, A, B, ldb, C, ldc); break;
    case 3: nn_tile(mr, 1, true, rem, k0, k1, first, A, B, ldb, C, ldc); break;
    case 4: nn_tile(mr, 2, false, 8, k0, k1, first, A, B, ldb, C, ldc); break;
    case 5: nn_tile(mr, 2, true, rem, k0, k1, first, A, B, ldb, C, ldc); break;
    default: nn_tile(mr, 3, true, rem, k0, k1, first, A, B, ldb, C, ldc); break;
    }
}

static T2 void nn_strip(int M, int ak, int w, int k0, int k1, bool first, const float *Ap,
                        const float *B, int ldb, float *C, int ldc)
{
    int m = 0;
    for (; m + 4 <= M; m += 4)
        nn_rows(4, w, k0, k1, first, Ap + (size_t)m * ak, B, ldb, C + (size_t)m * ldc, ldc);
    const float *a = Ap + (size_t)m * ak;
    float *c = C + (size_t)m * ldc;
    switch (M - m) {
    case 3: nn_rows(3, w, k0, k1, first, a, B, ldb, c, ldc); break;
    case 2: nn_rows(2, w, k0, k1, first, a, B, ldb, c, ldc); break;
    case 1: nn_rows(1, w, k0, k1, first, a, B, ldb, c, ldc); break;
    default: break;
    }
}

T2 void cf_gemm_nn_avx2(int M, int N, int K, const float *Ap, int ak, const float *B, int ldb,
                        float *C, int ldc, int cont)
{
    if (K <= 0) {
        if (cont) return;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) C[(size_t)m * ldc + n] = 0.0f;
        return;
    }
    for (int k0 = 0; k0 < K; k0 += KC) {
        int k1 = K - k0 < KC ? K : k0 + KC;
        for (int n = 0; n < N; n += 24) {
            int w = N - n < 24 ? N - n : 24;
            nn_strip(M, ak, w, k0, k1, k0 == 0 && !cont, Ap, B + n, ldb, C + n, ldc);
        }
    }
}

/* Sums of one register tile: mr rows of A against lr rows of B (mr <= 3, lr <= 4), each an
 * 8-lane chain. The lanes are combined with horizontal adds, which form exactly the pairs of
 * the tree in gemm.h: hadd gives s0+s1, s2+s3, hadd again (s0+s1)+(s2+s3), and the two
 * 128-bit halves hold that for lanes 0..3 and 4..7. */
INL void nt_tile(const int mr, const int lr, int N, const float *A, int lda, const float *B,
                 int ldb, float *C, int ldc)
{
    __m256 acc[3][4];
#pragma GCC unroll 3
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int j = 0; j < lr; j++) acc[i][j] = _mm256_setzero_ps();
    int n = 0;
    for (; n + 8 <= N; n += 8) {
        __m256 bv[4];
#pragma GCC unroll 4
        for (int j = 0; j < lr; j++) bv[j] = _mm256_loadu_ps(B + (size_t)j * ldb + n);
#pragma GCC unroll 3
        for (int i = 0; i < mr; i++) {
            __m256 a = _mm256_loadu_ps(A + (size_t)i * lda + n);
#pragma GCC unroll 4
            for (int j = 0; j < lr; j++) acc[i][j] = _mm256_fmadd_ps(a, bv[j], acc[i][j]);
        }
    }
    if (n < N) {
        __m256i mask = mask_of(N - n);
        __m256 bv[4];
#pragma GCC unroll 4
        for (int j = 0; j < lr; j++) bv[j] = _mm256_maskload_ps(B + (size_t)j * ldb + n, mask);
#pragma GCC unroll 3
        for (int i = 0; i < mr; i++) {
            __m256 a = _mm256_maskload_ps(A + (size_t)i * lda + n, mask);
#pragma GCC unroll 4
            for (int j = 0; j < lr; j++) acc[i][j] = _mm256_fmadd_ps(a, bv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 3
    for (int i = 0; i < mr; i++) {
        __m256 z = _mm256_setzero_ps();
        __m256 h01 = _mm256_hadd_ps(acc[i][0], lr > 1 ? acc[i][1] : z);
        __m256 h23 = _mm256_hadd_ps(lr > 2 ? acc[i][2] : z, lr > 3 ? acc[i][3] : z);
        __m256 h = _mm256_hadd_ps(h01, h23);
        __m128 sum = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        float *c = C + (size_t)i * ldc;
        if (lr == 4) {
            _mm_storeu_ps(c, _mm_add_ps(_mm_loadu_ps(c), sum));
        } else {
            float s[4];
            _mm_storeu_ps(s, sum);
            for (int j = 0; j < lr; j++) c[j] += s[j];
        }
    }
}

/* All rows of A against lr rows of B (B's rows stay in L1 while A's rows pass). */
INL void nt_cols(const int lr, int M, int N, const float *A, int lda, const float *B, int ldb,
                 float *C, int ldc)
{
    int m = 0;
    for (; m + 3 <= M; m += 3)
        nt_tile(3, lr, N, A + (size_t)m * lda, lda, B, ldb, C + (size_t)m * ldc, ldc);
    const float *a = A + (size_t)m * lda;
    float *c = C + (size_t)m * ldc;
    if (M - m == 2) nt_tile(2, lr, N, a, lda, B, ldb, c, ldc);
    else if (M - m == 1) nt_tile(1, lr, N, a, lda, B, ldb, c, ldc);
}

T2 void cf_gemm_nt_avx2(int M, int L, int N, const float *A, int lda, const float *B, int ldb,
                        float *C, int ldc)
{
    int l = 0;
    for (; l + 4 <= L; l += 4) nt_cols(4, M, N, A, lda, B + (size_t)l * ldb, ldb, C + l, ldc);
    const float *b = B + (size_t)l * ldb;
    switch (L - l) {
    case 3: nt_cols(3, M, N, A, lda, b, ldb, C + l, ldc); break;
    case 2: nt_cols(2, M, N, A, lda, b, ldb, C + l, ldc); break;
    case 1: nt_cols(1, M, N, A, lda, b, ldb, C + l, ldc); break;
    default: break;
    }
}

/* Forward of one piece of a run: mr rows (4, or 8 from two packed blocks A0 and A1) by nv
 * vectors (the last holding rem columns), of which the first `rows` rows are stored. x is read
 * unmasked past the piece (the padded planes' slack); y is written exactly. */
INL void fr_tile(const int mr, const int nv, int rem, int rows, int K, const float *A0,
                 const float *A1, const float *xs, const int32_t *rowoff, float *yq,
                 int64_t ldy, const float *bias)
{
    __m256 acc[8][3];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) acc[i][v] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *b = xs + rowoff[k];
        __m256 bv[3];
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) bv[v] = _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            __m256 av = _mm256_broadcast_ss(i < 4 ? A0 + (size_t)k * 4 + i
                                                  : A1 + (size_t)k * 4 + (i - 4));
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
        }
    }
    __m256i mask = mask_of(rem);
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        if (i >= rows) break;
        float *c = yq + (size_t)i * ldy;
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) {
            __m256 val = bias ? _mm256_add_ps(acc[i][v], _mm256_set1_ps(bias[i])) : acc[i][v];
            if (v == nv - 1 && rem < 8) _mm256_maskstore_ps(c + 8 * v, mask, val);
            else _mm256_storeu_ps(c + 8 * v, val);
        }
    }
}

T2 void cf_conv_fwd_runs_avx2(int M, int K, const float *Ap, const float *x, const int32_t *rowoff,
                           const cf_run *a, const cf_run *e, const int32_t *rq, float *y,
                           int64_t ldy, const float *bias)
{
    for (const cf_run *r = a; r < e; r++) {
        for (int n0 = 0; n0 < r->len; n0 += 24) {
            int w = r->len - n0 < 24 ? r->len - n0 : 24;
            int nv = (w + 7) / 8, rem = w - 8 * (nv - 1);
            const float *xs = x + r->src + n0;
            float *yq = y + rq[r - a] + n0;
            int m = 0;
            if (nv == 1)
                for (; m + 4 < M; m += 8)
                    fr_tile(8, 1, rem, M - m < 8 ? M - m : 8, K, Ap + (size_t)m * K,
                            Ap + (size_t)(m + 4) * K, xs, rowoff, yq + m * ldy, ldy,
                            bias ? bias + m : NULL);
            for (; m < M; m += 4) {
                int rows = M - m < 4 ? M - m : 4;
                const float *A = Ap + (size_t)m * K, *bm = bias ? bias + m : NULL;
                float *ym = yq + m * ldy;
                if (nv == 1) fr_tile(4, 1, rem, rows, K, A, A, xs, rowoff, ym, ldy, bm);
                else if (nv == 2) fr_tile(4, 2, rem, rows, K, A, A, xs, rowoff, ym, ldy, bm);
                else fr_tile(4, 3, rem, rows, K, A, A, xs, rowoff, ym, ldy, bm);
            }
        }
    }
}

/* Forward over output channels: np columns (pixels) x nv vectors of 8 rows from row m0 (bias,
 * if any, points at row m0's and holds 8 nv values), each broadcast input shared by the
 * vectors. */
INL void fp_tile(const int np, const int nv, int M, int Mp, int m0, int K, const float *Ap,
                 const float *const *xs, const int32_t *rowoff, const int32_t *q, float *y,
                 int64_t ldy, const float *bias)
{
    __m256 acc[6][4];
#pragma GCC unroll 6
    for (int j = 0; j < np; j++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[j][v] = _mm256_setzero_ps();
    const float *a = Ap + m0;
    for (int k = 0; k < K; k++, a += Mp) {
        __m256 av[4];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) av[v] = _mm256_loadu_ps(a + 8 * v);
        int32_t off = rowoff[k];
#pragma GCC unroll 6
        for (int j = 0; j < np; j++) {
            __m256 xv = _mm256_broadcast_ss(xs[j] + off);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[j][v] = _mm256_fmadd_ps(xv, av[v], acc[j][v]);
        }
    }
    int rows = M - m0 < 8 * nv ? M - m0 : 8 * nv;
#pragma GCC unroll 6
    for (int j = 0; j < np; j++) {
        float t[32];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            __m256 val = acc[j][v];
            if (bias) val = _mm256_add_ps(val, _mm256_loadu_ps(bias + 8 * v));
            _mm256_storeu_ps(t + 8 * v, val);
        }
        float *yq = y + q[j] + m0 * ldy;
        for (int m = 0; m < rows; m++) yq[m * ldy] = t[m];
    }
}

/* Columns [j, j + np) of the rows from m0 in vectors of nv (up to 4: register tiles of 6 x 2 or
 * 3 x 4 vectors). The fp_block_NV wrappers below are not inlined: one frame per nv keeps the
 * stack small in sanitizer builds (a single function held them all, 30 KB under ASan). */
#define NOINL static __attribute__((noinline)) T2
INL void fp_block(const int nv, int np, int M, int Mp, int m0, int K, const float *Ap,
                  const float *const *xs, const int32_t *rowoff, const int32_t *q, float *y,
                  int64_t ldy, const float *bias)
{
    switch (np) {
    case 1: fp_tile(1, nv, M, Mp, m0, K, Ap, xs, rowoff, q, y, ldy, bias); break;
    case 2: fp_tile(2, nv, M, Mp, m0, K, Ap, xs, rowoff, q, y, ldy, bias); break;
    case 3: fp_tile(3, nv, M, Mp, m0, K, Ap, xs, rowoff, q, y, ldy, bias); break;
    case 4: fp_tile(4, nv < 3 ? nv : 2, M, Mp, m0, K, Ap, xs, rowoff, q, y, ldy, bias); break;
    case 5: fp_tile(5, nv < 3 ? nv : 2, M, Mp, m0, K, Ap, xs, rowoff, q, y, ldy, bias); break;
    default: fp_tile(6, nv < 3 ? nv : 2, M, Mp, m0, K, Ap, xs, rowoff, q, y, ldy, bias); break;
    }
}

#define FP_BLOCK_NV(NV)                                                                          \
    NOINL void fp_block_##NV(int np, int M, int Mp, int m0, int K, const float *Ap,              \
                             const float *const *xs, const int32_t *rowoff, const int32_t *q,    \
                             float *y, int64_t ldy, const float *bias)                           \
    {                                                                                            \
        fp_block(NV, np, M, Mp, m0, K, Ap, xs, rowoff, q, y, ldy, bias);                         \
    }
FP_BLOCK_NV(1)
FP_BLOCK_NV(2)
FP_BLOCK_NV(3)
FP_BLOCK_NV(4)
#undef FP_BLOCK_NV

T2 void cf_conv_fwd_pix_avx2(int M, int K, const float *Ap, const float *x, const int32_t *rowoff,
                          const int32_t *src, const int32_t *q, int n, float *y, int64_t ldy,
                          const float *bias)
{
    int Mp = (M + 7) / 8 * 8;
    /* 32 rows and more: 3 columns by 4 vectors (each input read once for all of them), else
     * 6 columns by up to 2 vectors */
    int pw = Mp >= 32 ? 3 : 6;
    float bpad[32];
    for (int j = 0; j < n; j += pw) {
        int np = n - j < pw ? n - j : pw;
        const float *xs[6];
        for (int i = 0; i < 6; i++) xs[i] = x + src[j + (i < np ? i : 0)];
        for (int m0 = 0; m0 < M;) {
            int left = (Mp - m0) / 8, nv = pw == 3 ? (left < 4 ? left : 4) : (left < 2 ? left : 2);
            /* the bias vectors read 8 nv rows: past M from a zero-padded copy */
            const float *b = bias ? bias + m0 : NULL;
            if (bias && m0 + 8 * nv > M) {
                for (int i = 0; i < 8 * nv; i++) bpad[i] = m0 + i < M ? bias[m0 + i] : 0.0f;
                b = bpad;
            }
            switch (nv) {
            case 1: fp_block_1(np, M, Mp, m0, K, Ap, xs, rowoff, q + j, y, ldy, b); break;
            case 2: fp_block_2(np, M, Mp, m0, K, Ap, xs, rowoff, q + j, y, ldy, b); break;
            case 3: fp_block_3(np, M, Mp, m0, K, Ap, xs, rowoff, q + j, y, ldy, b); break;
            default: fp_block_4(np, M, Mp, m0, K, Ap, xs, rowoff, q + j, y, ldy, b); break;
            }
            m0 += 8 * (np > 3 && nv > 2 ? 2 : nv);
        }
    }
}

#ifndef PIX_BW_CHUNK
#define PIX_BW_CHUNK 128
#endif

/* Weight gradient over output channels: rows k0 .. k0 + kb - 1 of dWt by nv vectors of 8
 * channels from m0, kept in registers over all n columns (each of the kb nv chains gets one
 * fma per column). */
INL void bw_tile(const int kb, const int nv, int Mp, int m0, int k0, const float *dyT,
                 const float *x, const int32_t *rowoff, const int32_t *src, const int32_t *q,
                 int n, float *dWt)
{
    __m256 acc[6][2];
    int32_t off[6];
#pragma GCC unroll 6
    for (int r = 0; r < kb; r++) {
        off[r] = rowoff[k0 + r];
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++)
            acc[r][v] = _mm256_loadu_ps(dWt + (size_t)(k0 + r) * Mp + m0 + 8 * v);
    }
    for (int j = 0; j < n; j++) {
        const float *xs = x + src[j], *d = dyT + (size_t)q[j] * Mp + m0;
        __m256 dv[2];
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) dv[v] = _mm256_loadu_ps(d + 8 * v);
#pragma GCC unroll 6
        for (int r = 0; r < kb; r++) {
            __m256 xb = _mm256_broadcast_ss(xs + off[r]);
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++) acc[r][v] = _mm256_fmadd_ps(xb, dv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < kb; r++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++)
            _mm256_storeu_ps(dWt + (size_t)(k0 + r) * Mp + m0 + 8 * v, acc[r][v]);
}

/* All rows of dWt for nv vectors of channels from m0 (one frame per nv, as fp_block_NV). */
INL void bw_rows(const int nv, int K, int Mp, int m0, const float *dyT, const float *x,
                   const int32_t *rowoff, const int32_t *src, const int32_t *q, int n, float *dWt)
{
    for (int k0 = 0; k0 < K; k0 += 6) {
        switch (K - k0 < 6 ? K - k0 : 6) {
        case 1: bw_tile(1, nv, Mp, m0, k0, dyT, x, rowoff, src, q, n, dWt); break;
        case 2: bw_tile(2, nv, Mp, m0, k0, dyT, x, rowoff, src, q, n, dWt); break;
        case 3: bw_tile(3, nv, Mp, m0, k0, dyT, x, rowoff, src, q, n, dWt); break;
        case 4: bw_tile(4, nv, Mp, m0, k0, dyT, x, rowoff, src, q, n, dWt); break;
        case 5: bw_tile(5, nv, Mp, m0, k0, dyT, x, rowoff, src, q, n, dWt); break;
        default: bw_tile(6, nv, Mp, m0, k0, dyT, x, rowoff, src, q, n, dWt); break;
        }
    }
}

#define BW_ROWS_NV(NV)                                                                           \
    NOINL void bw_rows_##NV(int K, int Mp, int m0, const float *dyT, const float *x,             \
                            const int32_t *rowoff, const int32_t *src, const int32_t *q, int n,  \
                            float *dWt)                                                          \
    {                                                                                            \
        bw_rows(NV, K, Mp, m0, dyT, x, rowoff, src, q, n, dWt);                                  \
    }
BW_ROWS_NV(1)
BW_ROWS_NV(2)
#undef BW_ROWS_NV

T2 void cf_conv_bwd_w_pix_avx2(int M, int K, const float *dyT, const float *x,
                            const int32_t *rowoff, const int32_t *src, const int32_t *q, int n,
                            float *dWt)
{
    int Mp = (M + 7) / 8 * 8;
    /* Columns in chunks, so that a chunk's output gradients and inputs stay in L1 over the
     * passes of all K rows (large cones otherwise stream them from L2 once per 6 rows). Each
     * chain goes on from the stored partial sum: the same operations, the same bits. */
    for (int j0 = 0; j0 < n; j0 += PIX_BW_CHUNK) {
        int nc = n - j0 < PIX_BW_CHUNK ? n - j0 : PIX_BW_CHUNK;
        for (int m0 = 0; m0 < Mp; m0 += 16) {
            if (Mp - m0 >= 16) bw_rows_2(K, Mp, m0, dyT, x, rowoff, src + j0, q + j0, nc, dWt);
            else bw_rows_1(K, Mp, m0, dyT, x, rowoff, src + j0, q + j0, nc, dWt);
        }
    }
}

/* Input gradient of one tap for np columns by nv vectors of planes from c0: each column's sums
 * over the output channels in registers, then added to its input pixel's Cp floats. */
INL void bx_tile(const int np, const int nv, int Cp, int M, const float *w, const float *dy,
                 int64_t P, int32_t off, const int32_t *src, const int32_t *q, float *dxT)
{
    __m256 acc[6][2];
    const float *dp[6];
#pragma GCC unroll 6
    for (int jj = 0; jj < np; jj++) {
        dp[jj] = dy + q[jj];
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) acc[jj][v] = _mm256_setzero_ps();
    }
    for (int m = 0; m < M; m++, w += Cp) {
        __m256 wv[2];
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) wv[v] = _mm256_loadu_ps(w + 8 * v);
#pragma GCC unroll 6
        for (int jj = 0; jj < np; jj++) {
            __m256 b = _mm256_broadcast_ss(dp[jj] + (int64_t)m * P);
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++) acc[jj][v] = _mm256_fmadd_ps(b, wv[v], acc[jj][v]);
        }
    }
#pragma GCC unroll 6
    for (int jj = 0; jj < np; jj++) {
        float *d = dxT + (int64_t)(src[jj] + off) * Cp;
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++)
            _mm256_storeu_ps(d + 8 * v, _mm256_add_ps(_mm256_loadu_ps(d + 8 * v), acc[jj][v]));
    }
}

/* All columns of one tap, nv vectors of planes (one frame per nv, as fp_block_NV). */
INL void bx_cols(const int nv, int Cp, int M, const float *w, const float *dy, int64_t P,
                 int32_t off, const int32_t *src, const int32_t *q, int n, float *dxT)
{
    int j = 0;
    for (; j + 6 <= n; j += 6) bx_tile(6, nv, Cp, M, w, dy, P, off, src + j, q + j, dxT);
    switch (n - j) {
#define BX_CASE(N)                                                                               \
    case N: bx_tile(N, nv, Cp, M, w, dy, P, off, src + j, q + j, dxT); break;
        BX_CASE(1)
        BX_CASE(2)
        BX_CASE(3)
        BX_CASE(4)
        BX_CASE(5)
#undef BX_CASE
    default: break;
    }
}

#define BX_COLS_NV(NV)                                                                           \
    NOINL void bx_cols_##NV(int Cp, int M, const float *w, const float *dy, int64_t P,           \
                            int32_t off, const int32_t *src, const int32_t *q, int n,            \
                            float *dxT)                                                          \
    {                                                                                            \
        bx_cols(NV, Cp, M, w, dy, P, off, src, q, n, dxT);                                       \
    }
BX_COLS_NV(1)
BX_COLS_NV(2)
#undef BX_COLS_NV

/* 8 x 8 blocks through registers (unpack, shuffle, swap of halves), the edges element by
 * element. */
T2 void cf_transpose_avx2(const float *src, int64_t lds, int rows, int64_t cols, float *dst,
                       int64_t ldd)
{
    int o0 = 0;
    for (; o0 + 8 <= rows; o0 += 8) {
        const float *s = src + (int64_t)o0 * lds;
        int64_t q0 = 0;
        for (; q0 + 8 <= cols; q0 += 8) {
            __m256 r0 = _mm256_loadu_ps(s + 0 * lds + q0), r1 = _mm256_loadu_ps(s + 1 * lds + q0),
                   r2 = _mm256_loadu_ps(s + 2 * lds + q0), r3 = _mm256_loadu_ps(s + 3 * lds + q0),
                   r4 = _mm256_loadu_ps(s + 4 * lds + q0), r5 = _mm256_loadu_ps(s + 5 * lds + q0),
                   r6 = _mm256_loadu_ps(s + 6 * lds + q0), r7 = _mm256_loadu_ps(s + 7 * lds + q0);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1),
                   t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3),
                   t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                   t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                   u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                   u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                   u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *d = dst + q0 * ldd + o0;
            _mm256_storeu_ps(d + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(d + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
        for (int o = o0; o < o0 + 8; o++)
            for (int64_t q = q0; q < cols; q++) dst[q * ldd + o] = src[o * lds + q];
    }
    for (int o = o0; o < rows; o++)
        for (int64_t q = 0; q < cols; q++) dst[q * ldd + o] = src[o * lds + q];
}

T2 void cf_conv_bwd_x_pix_avx2(int Cp, int M, int T, const float *Wc, const float *dy, int64_t P,
                            const int32_t *rowoff, const int32_t *src, const int32_t *q, int n,
                            float *dxT)
{
    for (int t = 0; t < T; t++)
        for (int c0 = 0; c0 < Cp; c0 += 16) {
            const float *w = Wc + (size_t)t * M * Cp + c0;
            if (Cp - c0 >= 16) bx_cols_2(Cp, M, w, dy, P, rowoff[t], src, q, n, dxT + c0);
            else bx_cols_1(Cp, M, w, dy, P, rowoff[t], src, q, n, dxT + c0);
        }
}

#endif
