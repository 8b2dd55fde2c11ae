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

void cf_gemm_nt_runs_generic(int M, int L, const float *A, int lda, const float *x,
                             int64_t plane, int nb, int w, const int32_t *rowoff,
                             const cf_run *a, const cf_run *e, float *C, int ldc)
{
    for (int m = 0; m < M; m++)
        for (int l = 0; l < L; l++) {
            float s[8] = {0};
            for (int b = 0; b < nb; b++)
                for (const cf_run *r = a; r < e; r++) {
                    const float *am = A + (size_t)m * lda + (size_t)b * w + r->dst;
                    const float *xb = x + b * plane + rowoff[l] + r->src;
                    for (int j = 0; j < r->len; j += 8)
                        for (int u = 0; u < 8; u++) s[u] = fmaf(am[j + u], xb[j + u], s[u]);
                }
            C[(size_t)m * ldc + l] += tree8(s);
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

/* ---- direct convolution over a flat run (see gemm.h) ---- */

void cf_conv_fwd_flat_generic(int M, int K, const float *Ap, const float *x,
                              const int32_t *rowoff, int32_t src, int32_t len, int Wp, int OW,
                              float *y, int64_t ldy, const float *bias)
{
    for (int64_t F = src; F < (int64_t)src + len; F++) {
        int oj = (int)(F % Wp);
        if (oj >= OW) continue;
        int64_t q = F / Wp * OW + oj;
        for (int m = 0; m < M; m++) {
            const float *am = Ap + (size_t)(m / 4 * 4) * K + m % 4;
            float c = 0.0f;
            for (int k = 0; k < K; k++) c = fmaf(am[(size_t)k * 4], x[rowoff[k] + F], c);
            y[m * ldy + q] = bias ? c + bias[m] : c;
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

/* C[i][0 .. lr-1] += the trees of a register tile's chains acc[i][j] (mr <= 3 rows of A
 * against lr <= 4 rows of B), combined with horizontal adds, which form exactly the pairs of
 * the tree in gemm.h: hadd gives s0+s1, s2+s3, hadd again (s0+s1)+(s2+s3), and the two
 * 128-bit halves hold that for lanes 0..3 and 4..7. */
INL void nt_finish(const int mr, const int lr, __m256 acc[3][4], float *C, int ldc)
{
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

/* Sums of one register tile: mr rows of A against lr rows of B, each an 8-lane chain. */
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
    nt_finish(mr, lr, acc, C, ldc);
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

/* nt_tile on the columns read where they lie (gemm.h, gemm_nt_runs): lr rows of B at
 * x + rowoff[j]. */
INL void nt_runs_tile(const int mr, const int lr, const float *A, int lda, const float *x,
                      int64_t plane, int nb, int w, const int32_t *rowoff, const cf_run *a,
                      const cf_run *e, float *C, int ldc)
{
    __m256 acc[3][4];
#pragma GCC unroll 3
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int j = 0; j < lr; j++) acc[i][j] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++)
        for (const cf_run *r = a; r < e; r++) {
            const float *ab = A + (size_t)b * w + r->dst, *xb = x + b * plane + r->src;
            for (int n = 0; n < r->len; n += 8) {
                __m256 bv[4];
#pragma GCC unroll 4
                for (int j = 0; j < lr; j++) bv[j] = _mm256_loadu_ps(xb + rowoff[j] + n);
#pragma GCC unroll 3
                for (int i = 0; i < mr; i++) {
                    __m256 av = _mm256_loadu_ps(ab + (size_t)i * lda + n);
#pragma GCC unroll 4
                    for (int j = 0; j < lr; j++) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
                }
            }
        }
    nt_finish(mr, lr, acc, C, ldc);
}

INL void nt_runs_cols(const int lr, int M, const float *A, int lda, const float *x,
                      int64_t plane, int nb, int w, const int32_t *rowoff, const cf_run *a,
                      const cf_run *e, float *C, int ldc)
{
    int m = 0;
    for (; m + 3 <= M; m += 3)
        nt_runs_tile(3, lr, A + (size_t)m * lda, lda, x, plane, nb, w, rowoff, a, e,
                     C + (size_t)m * ldc, ldc);
    const float *am = A + (size_t)m * lda;
    float *c = C + (size_t)m * ldc;
    if (M - m == 2) nt_runs_tile(2, lr, am, lda, x, plane, nb, w, rowoff, a, e, c, ldc);
    else if (M - m == 1) nt_runs_tile(1, lr, am, lda, x, plane, nb, w, rowoff, a, e, c, ldc);
}

T2 void cf_gemm_nt_runs_avx2(int M, int L, const float *A, int lda, const float *x,
                             int64_t plane, int nb, int w, const int32_t *rowoff,
                             const cf_run *a, const cf_run *e, float *C, int ldc)
{
    int l = 0;
    for (; l + 4 <= L; l += 4)
        nt_runs_cols(4, M, A, lda, x, plane, nb, w, rowoff + l, a, e, C + l, ldc);
    const int32_t *ro = rowoff + l;
    switch (L - l) {
    case 3: nt_runs_cols(3, M, A, lda, x, plane, nb, w, ro, a, e, C + l, ldc); break;
    case 2: nt_runs_cols(2, M, A, lda, x, plane, nb, w, ro, a, e, C + l, ldc); break;
    case 1: nt_runs_cols(1, M, A, lda, x, plane, nb, w, ro, a, e, C + l, ldc); break;
    default: break;
    }
}

/* One block of up to 8 x 8 through registers (unpack, shuffle, swap of halves): nr rows of
 * nq floats read (under a mask when nq < 8; rows past nr are zeros), nq rows of nr floats
 * written (under a mask when nr < 8), nothing outside the block touched. */
INL void tr8_block(const float *s, int64_t lds, int nr, int nq, float *d, int64_t ldd,
                   const bool full)
{
    __m256i qm = mask_of(full ? 8 : nq), om = mask_of(full ? 8 : nr);
    __m256 r[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        r[i] = full     ? _mm256_loadu_ps(s + i * lds)
               : i < nr ? _mm256_maskload_ps(s + i * lds, qm)
                        : _mm256_setzero_ps();
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]),
           t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]),
           t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]),
           t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
           u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
           u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
           u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    __m256 o[8] = {_mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                   _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                   _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                   _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        if (full) _mm256_storeu_ps(d + j * ldd, o[j]);
        else if (j < nq) _mm256_maskstore_ps(d + j * ldd, om, o[j]);
    }
}

/* The start of the last block along a side of n elements in blocks of b: a side of at least b
 * ends with a full block that overlaps the one before it (elements written twice, with the
 * same values); a shorter side is one masked block at 0. */
static inline int64_t last_block(int64_t n, int b) { return n >= b ? n - b : 0; }

/* Blocks of 8 x 8. The edges (rows or columns not a multiple of 8) of a side of 8 or more go
 * through a full block that overlaps the one before; only a side shorter than 8 takes masked
 * loads and stores (vmaskmovps stores are slow on AMD cores): the conic layers' 15 channels
 * and 26-pixel rows would otherwise move half their elements one by one. */
T2 void cf_transpose_avx2(const float *src, int64_t lds, int rows, int64_t cols, float *dst,
                          int64_t ldd)
{
    if (rows <= 0 || cols <= 0) return;
    int64_t olast = last_block(rows, 8), qlast = last_block(cols, 8);
    int nr = rows < 8 ? rows : 8, nq = cols < 8 ? (int)cols : 8;
    for (int64_t o0 = 0;; o0 = o0 + 8 < olast ? o0 + 8 : olast) {
        const float *s = src + o0 * lds;
        for (int64_t q0 = 0;; q0 = q0 + 8 < qlast ? q0 + 8 : qlast) {
            if (nr == 8 && nq == 8) tr8_block(s + q0, lds, 8, 8, dst + q0 * ldd + o0, ldd, true);
            else tr8_block(s + q0, lds, nr, nq, dst + q0 * ldd + o0, ldd, false);
            if (q0 == qlast) break;
        }
        if (o0 == olast) break;
    }
}

#ifndef PIX_BW_CHUNK
#define PIX_BW_CHUNK 128
#endif

/* Columns of the next piece of a run (the direct forwards over runs and over a flat run,
 * cf_conv_fwd_runs and cf_conv_fwd_flat) with `left`
 * columns to go: pieces of up to 3 vectors of vw lanes, but where that would leave a last
 * piece of one vector behind a piece of 3, with 16 lanes, two pieces of 2 instead (a row of 64:
 * 32 + 32, not 48 + 16). A piece of one vector by 8 rows holds 8 accumulators for 9 loads per
 * 8 multiply-adds, and ran at about 75 % of a 3-vector piece's rate per column at 64 x 64
 * (docs/performance.md, round 28). Every output's chain is the same whatever the pieces, and
 * so are the vectors a run takes (only its last piece is partial), so are the bits. */
static inline int fr_piece_cols(int left, int vw)
{
    if (left <= 3 * vw) return left;
    if (vw > 8 && left <= 4 * vw) return 2 * vw;
    return 3 * vw;
}

/* The kernels written once for a vector width (gemm_vec.inc): AVX2 + FMA, 8 lanes. */
#define VW 8
#define V __m256
#define VM __m256i
#define VN(name) name##_avx2
#define VT T2
#define vzero() _mm256_setzero_ps()
#define vload(p) _mm256_loadu_ps(p)
#define vstore(p, v) _mm256_storeu_ps(p, v)
#define vbcast(p) _mm256_broadcast_ss(p)
#define vset1(x) _mm256_set1_ps(x)
#define vfma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vadd(a, b) _mm256_add_ps(a, b)
#define vmask(rem) mask_of(rem)
#define vmload(p, m) _mm256_maskload_ps(p, m)
#define vmstore(p, m, v) _mm256_maskstore_ps(p, m, v)
#define vmrange(lo, hi) _mm256_andnot_si256(mask_of(lo), mask_of(hi))
#include "gemm_vec.inc" /* which undefines its parameters */

/* The same kernels in AVX-512, 16 lanes (masks in mask registers). */
#define T5 __attribute__((target("avx512f,avx2,fma")))
static inline __attribute__((always_inline)) T5 __mmask16 mask16_of(int rem)
{
    return (__mmask16)((1u << rem) - 1u);
}
#define VW 16
#define V __m512
#define VM __mmask16
#define VN(name) name##_avx512
#define VT T5
#define vzero() _mm512_setzero_ps()
#define vload(p) _mm512_loadu_ps(p)
#define vstore(p, v) _mm512_storeu_ps(p, v)
#define vbcast(p) _mm512_set1_ps(*(p))
#define vset1(x) _mm512_set1_ps(x)
#define vfma(a, b, c) _mm512_fmadd_ps(a, b, c)
#define vadd(a, b) _mm512_add_ps(a, b)
#define vmask(rem) mask16_of(rem)
#define vmload(p, m) _mm512_maskz_loadu_ps(m, p)
#define vmstore(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define vmrange(lo, hi) ((__mmask16)(mask16_of(hi) & ~mask16_of(lo)))
#include "gemm_vec.inc" /* which undefines its parameters */

/* One block of up to 16 x 16 (the 8 x 8 block's unpacks and shuffles, then two rounds of
 * 128-bit lane shuffles): nr rows of nq floats read (under a mask when nq < 16; rows past nr
 * are zeros), nq rows of nr floats written (under a mask when nr < 16), nothing else touched.
 * AVX-512 masked loads and stores are as fast as plain ones. */
static inline __attribute__((always_inline)) T5 void tr16_block(const float *s, int64_t lds,
                                                                int nr, int nq, float *d,
                                                                int64_t ldd)
{
    __mmask16 qm = mask16_of(nq), om = mask16_of(nr);
    __m512 r[16], t[16], u[16], w[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        r[i] = i < nr ? _mm512_maskz_loadu_ps(qm, s + i * lds) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4 g + k]: rows 4 g .. 4 g + 3 of columns k, k + 4, k + 8, k + 12 (one per 128 bits) */
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        u[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    /* w[k], w[4 + k]: rows 0 .. 7 of columns (k, k + 8) and (k + 4, k + 12); w[8 + k],
     * w[12 + k] the same of rows 8 .. 15 */
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        w[k] = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88);
        w[4 + k] = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xDD);
        w[8 + k] = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
        w[12 + k] = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xDD);
    }
    __m512 o[16];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        o[k] = _mm512_shuffle_f32x4(w[k], w[8 + k], 0x88);
        o[k + 8] = _mm512_shuffle_f32x4(w[k], w[8 + k], 0xDD);
        o[k + 4] = _mm512_shuffle_f32x4(w[4 + k], w[12 + k], 0x88);
        o[k + 12] = _mm512_shuffle_f32x4(w[4 + k], w[12 + k], 0xDD);
    }
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++)
        if (j < nq) _mm512_mask_storeu_ps(d + j * ldd, om, o[j]);
}

/* Blocks of 16 x 16, the edges as the AVX2 transpose's: a full block overlapping the one
 * before on a side of 16 or more, masks on a shorter side (the conic layers' 15 channels are
 * one masked block; the AVX2 transpose took two overlapping 8 x 8 blocks). */
T5 void cf_transpose_avx512(const float *src, int64_t lds, int rows, int64_t cols, float *dst,
                            int64_t ldd)
{
    if (rows <= 0 || cols <= 0) return;
    int64_t olast = last_block(rows, 16), qlast = last_block(cols, 16);
    int nr = rows < 16 ? rows : 16, nq = cols < 16 ? (int)cols : 16;
    for (int64_t o0 = 0;; o0 = o0 + 16 < olast ? o0 + 16 : olast) {
        const float *s = src + o0 * lds;
        for (int64_t q0 = 0;; q0 = q0 + 16 < qlast ? q0 + 16 : qlast) {
            if (nr == 16 && nq == 16) tr16_block(s + q0, lds, 16, 16, dst + q0 * ldd + o0, ldd);
            else tr16_block(s + q0, lds, nr, nq, dst + q0 * ldd + o0, ldd);
            if (q0 == qlast) break;
        }
        if (o0 == olast) break;
    }
}

/* gemm_nt with 16 lanes: a vector holds the 8 partial sums of two elements, (m, l) in lanes
 * 0..7 and (m, l + 1) in lanes 8..15 (A's row m in both halves, B's rows l and l + 1 side by
 * side), so each lane's chain is exactly the AVX2 lane's; the halves then go through nt_tile's
 * horizontal adds. Tiles of 4 rows of A by 8 rows of B; the rows of B past a multiple of 8 go
 * to the AVX2 kernel (the same bits either way). */
static inline __attribute__((always_inline)) T5 __m512 nt5_pair(const float *b0, const float *b1)
{
    return _mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(b0))),
        _mm256_castps_pd(_mm256_loadu_ps(b1)), 1));
}

static inline __attribute__((always_inline)) T5 __m512 nt5_pair_masked(const float *b0,
                                                                       const float *b1, __m256i m)
{
    return _mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_maskload_ps(b0, m))),
        _mm256_castps_pd(_mm256_maskload_ps(b1, m)), 1));
}

static inline __attribute__((always_inline)) T5 __m512 nt5_both(__m256 a)
{
    return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(a)));
}

/* C[i][l .. l + 3] += the trees of pairs P0 = (l, l + 1) and P1 = (l + 2, l + 3). */
static inline __attribute__((always_inline)) T5 void nt5_store4(__m512 p0, __m512 p1, float *c)
{
    __m256 h01 = _mm256_hadd_ps(_mm512_castps512_ps256(p0),
                                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(p0), 1)));
    __m256 h23 = _mm256_hadd_ps(_mm512_castps512_ps256(p1),
                                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(p1), 1)));
    __m256 h = _mm256_hadd_ps(h01, h23);
    __m128 sum = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    _mm_storeu_ps(c, _mm_add_ps(_mm_loadu_ps(c), sum));
}

/* C[i][0 .. 7] += the trees of a tile's 4 x 8 elements (mr <= 4 rows of A). */
static inline __attribute__((always_inline)) T5 void nt5_finish(const int mr, __m512 acc[4][4],
                                                                float *C, int ldc)
{
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++) {
        nt5_store4(acc[i][0], acc[i][1], C + (size_t)i * ldc);
        nt5_store4(acc[i][2], acc[i][3], C + (size_t)i * ldc + 4);
    }
}

static inline __attribute__((always_inline)) T5 void nt5_tile(const int mr, int N, const float *A,
                                                              int lda, const float *B, int ldb,
                                                              float *C, int ldc)
{
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) acc[i][p] = _mm512_setzero_ps();
    int n = 0;
    for (; n + 8 <= N; n += 8) {
        __m512 bv[4];
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++)
            bv[p] = nt5_pair(B + (size_t)(2 * p) * ldb + n, B + (size_t)(2 * p + 1) * ldb + n);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m512 a = nt5_both(_mm256_loadu_ps(A + (size_t)i * lda + n));
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) acc[i][p] = _mm512_fmadd_ps(a, bv[p], acc[i][p]);
        }
    }
    if (n < N) {
        __m256i mask = mask_of(N - n);
        __m512 bv[4];
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++)
            bv[p] = nt5_pair_masked(B + (size_t)(2 * p) * ldb + n,
                                    B + (size_t)(2 * p + 1) * ldb + n, mask);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m512 a = nt5_both(_mm256_maskload_ps(A + (size_t)i * lda + n, mask));
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) acc[i][p] = _mm512_fmadd_ps(a, bv[p], acc[i][p]);
        }
    }
    nt5_finish(mr, acc, C, ldc);
}

T5 void cf_gemm_nt_avx512(int M, int L, int N, const float *A, int lda, const float *B, int ldb,
                          float *C, int ldc)
{
    int l = 0;
    for (; l + 8 <= L; l += 8) {
        const float *b = B + (size_t)l * ldb;
        int m = 0;
        for (; m + 4 <= M; m += 4)
            nt5_tile(4, N, A + (size_t)m * lda, lda, b, ldb, C + (size_t)m * ldc + l, ldc);
        const float *a = A + (size_t)m * lda;
        float *c = C + (size_t)m * ldc + l;
        switch (M - m) {
        case 3: nt5_tile(3, N, a, lda, b, ldb, c, ldc); break;
        case 2: nt5_tile(2, N, a, lda, b, ldb, c, ldc); break;
        case 1: nt5_tile(1, N, a, lda, b, ldb, c, ldc); break;
        default: break;
        }
    }
    if (l < L) cf_gemm_nt_avx2(M, L - l, N, A, lda, B + (size_t)l * ldb, ldb, C + l, ldc);
}

/* nt5_tile on the columns read where they lie (gemm.h, gemm_nt_runs): 8 rows of B at
 * x + rowoff[j]. */
static inline __attribute__((always_inline)) T5 void
nt5_runs_tile(const int mr, const float *A, int lda, const float *x, int64_t plane, int nb,
              int w, const int32_t *rowoff, const cf_run *a, const cf_run *e, float *C, int ldc)
{
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) acc[i][p] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++)
        for (const cf_run *r = a; r < e; r++) {
            const float *ab = A + (size_t)b * w + r->dst, *xb = x + b * plane + r->src;
            for (int n = 0; n < r->len; n += 8) {
                __m512 bv[4];
#pragma GCC unroll 4
                for (int p = 0; p < 4; p++)
                    bv[p] = nt5_pair(xb + rowoff[2 * p] + n, xb + rowoff[2 * p + 1] + n);
#pragma GCC unroll 4
                for (int i = 0; i < mr; i++) {
                    __m512 av = nt5_both(_mm256_loadu_ps(ab + (size_t)i * lda + n));
#pragma GCC unroll 4
                    for (int p = 0; p < 4; p++) acc[i][p] = _mm512_fmadd_ps(av, bv[p], acc[i][p]);
                }
            }
        }
    nt5_finish(mr, acc, C, ldc);
}

T5 void cf_gemm_nt_runs_avx512(int M, int L, const float *A, int lda, const float *x,
                               int64_t plane, int nb, int w, const int32_t *rowoff,
                               const cf_run *a, const cf_run *e, float *C, int ldc)
{
    int l = 0;
    for (; l + 8 <= L; l += 8) {
        const int32_t *ro = rowoff + l;
        int m = 0;
        for (; m + 4 <= M; m += 4)
            nt5_runs_tile(4, A + (size_t)m * lda, lda, x, plane, nb, w, ro, a, e,
                          C + (size_t)m * ldc + l, ldc);
        const float *am = A + (size_t)m * lda;
        float *c = C + (size_t)m * ldc + l;
        switch (M - m) {
        case 3: nt5_runs_tile(3, am, lda, x, plane, nb, w, ro, a, e, c, ldc); break;
        case 2: nt5_runs_tile(2, am, lda, x, plane, nb, w, ro, a, e, c, ldc); break;
        case 1: nt5_runs_tile(1, am, lda, x, plane, nb, w, ro, a, e, c, ldc); break;
        default: break;
        }
    }
    if (l < L)
        cf_gemm_nt_runs_avx2(M, L - l, A, lda, x, plane, nb, w, rowoff + l, a, e, C + l, ldc);
}

#endif
