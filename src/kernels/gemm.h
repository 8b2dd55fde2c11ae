/* The convolution engine's own small matrix products (private).
 *
 * Two products, in a portable C variant, an AVX2+FMA and an AVX-512 variant chosen with the other kernels
 * (see simd.h, cf_simd_ops.gemm_nn / gemm_nt). Unlike a BLAS sgemm, whose result for an element
 * depends on the shape of the whole call (how it blocks and packs), every element here is
 * computed in one fixed order that depends only on the element's own dot product, so
 *   - the result does not depend on how a caller cuts a product into tiles, nor on the CPU
 *     variant (all variants give bit-identical results: fused multiply-adds in the same order);
 *   - the engine can build its columns in cache-sized tiles and keep nothing between calls.
 *
 * gemm_nn: C (M x N, row stride ldc) = A (M x K) * B (K x N, ldb), A packed by cf_gemm_pack_a
 *   (or the transpose of a K x M matrix by cf_gemm_pack_at) for ak >= K columns; Ap may point
 *   at column k0 of a packed matrix (Ap + 4 * k0) and M rows from a multiple of 4
 *   (Ap + m0 * ak). Element (m, n) is the chain c = fma(A[m][k], B[k][n], c) for k = 0 .. K-1,
 *   from c = 0, or with cont from the value in C, so that calls over consecutive ranges of k
 *   give exactly the chain of one call.
 * gemm_nt: C (M x L, ldc) += A (M x N, lda) * B (L x N, ldb)^T. Element (m, l) sums
 *   A[m][n] * B[l][n] in 8 partial sums (n mod 8, each a chain of fmas in increasing n, the
 *   last incomplete group of 8 padded with 0 * 0), combined as
 *   ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)) and added to C. */
#ifndef CFNET_KERNELS_GEMM_H
#define CFNET_KERNELS_GEMM_H

#include <stddef.h>
#include <stdint.h>

typedef void (*cf_gemm_nn_fn)(int M, int N, int K, const float *Ap, int ak, const float *B,
                              int ldb, float *C, int ldc, int cont);
typedef void (*cf_gemm_nt_fn)(int M, int L, int N, const float *A, int lda, const float *B,
                              int ldb, float *C, int ldc);

/* The direct convolution forward (stride 1): the product of gemm_nn with the columns read
 * where they lie, in the zero-padded input planes, instead of copied into a column matrix.
 * A run r (see simd.h) is r->len consecutive columns whose tap-0 input is at x + r->src and
 * whose output pixels are y + rq[r - a] onwards; column row k (plane c, tap t) of column n of
 * the run is x[rowoff[k] + r->src + n]. For each run, column n and row m < M:
 *   y[m * ldy + rq + n] = chain(m, n) (+ bias[m] if bias),
 * where chain is gemm_nn's fma chain over k = 0 .. K-1 from 0 (A packed by cf_gemm_pack_a,
 * ak = K): exactly the value the column path gives. x is read up to 7 floats past a run (the
 * padded planes' slack). */
struct cf_run;
typedef void (*cf_conv_fwd_runs_fn)(int M, int K, const float *Ap, const float *x,
                                    const int32_t *rowoff, const struct cf_run *a,
                                    const struct cf_run *e, const int32_t *rq, float *y,
                                    int64_t ldy, const float *bias);

/* The direct forward over one flat run of the padded planes (stride 1, one group): a tile's
 * output rows taken as consecutive positions F in [src, src + len) of the padded plane (row
 * stride Wp), so that every vector is full; positions with F % Wp >= OW (the halo columns
 * between output rows) are computed by the vector variants and not stored. For every other F
 * and row m < M, with q = (F / Wp) OW + F % Wp:
 *   y[m * ldy + q] = chain(m, F) (+ bias[m] if bias),
 * chain being gemm_nn's fma chain over k = 0 .. K-1 of A[m][k] x[rowoff[k] + F] from 0: the
 * bits of conv_fwd_runs and of the column path. x is read at rowoff[k] + [src, src + len) and
 * up to 7 floats past it (the padded planes' slack). */
typedef void (*cf_conv_fwd_flat_fn)(int M, int K, const float *Ap, const float *x,
                                    const int32_t *rowoff, int32_t src, int32_t len, int Wp,
                                    int OW, float *y, int64_t ldy, const float *bias);

/* gemm_nt on a tile of columns read where they lie (the weight gradient without im2col): B
 * (L x N, N = nb w) is the column matrix whose row l, column b w + r->dst + j (sample b < nb,
 * run r in [a, e), j < r->len) is x[b * plane + rowoff[l] + r->src + j], A (M x N) as for
 * gemm_nt. Every run's dst and len are multiples of 8, so that each column falls in the same
 * one of gemm_nt's 8 partial sums, in the same order, as in the column matrix: the result is
 * gemm_nt's on that matrix, bit for bit. x is read exactly. */
typedef void (*cf_gemm_nt_runs_fn)(int M, int L, const float *A, int lda, const float *x,
                                   int64_t plane, int nb, int w, const int32_t *rowoff,
                                   const struct cf_run *a, const struct cf_run *e, float *C,
                                   int ldc);

/* The direct convolution forward over output channels, for columns in any order (conic
 * tiles, whose runs are too short to fill vectors of pixels): column j < n has its tap-0 input
 * at x + src[j] and its output pixel at y + q[j]. For every column j and row m < M:
 *   y[m * ldy + q[j]] = chain(m, j) (+ bias[m] if bias),
 * the same fma chain over k = 0 .. K-1 from 0 as gemm_nn's (so the column path's bits), with
 * A packed by cf_gemm_pack_pix: vectors of 8 rows (output channels) per k. x is read exactly. */
typedef void (*cf_conv_fwd_pix_fn)(int M, int K, const float *Ap, const float *x,
                                   const int32_t *rowoff, const int32_t *src, const int32_t *q,
                                   int n, float *y, int64_t ldy, const float *bias);

/* The backward of conv_fwd_pix (stride 1), over output channels too, with M output channels
 * padded to Mp = M rounded up to 8.
 * Weight gradient: dyT holds the output gradient transposed, dyT[q * Mp + m] (zero for m >= M);
 * for every k < K and m < Mp, over the columns j = 0 .. n-1 in order:
 *   dWt[k * Mp + m] = fma(x[rowoff[k] + src[j]], dyT[q[j] * Mp + m], dWt[k * Mp + m]).
 * Input gradient of one tile of columns (the transpose of conv_fwd_pix), into dxT, the padded
 * input gradient pixel by pixel (Cp floats per pixel, Cp = the input planes rounded up to 8):
 * for every tap t < T in order, then every column j < n in order, and every plane c < Cp,
 *   dxT[(src[j] + rowoff[t]) * Cp + c] += s,  s = one chain from 0 over m < M in order of
 *   s = fma(dy[m * P + q[j]], Wc[(t * M + m) * Cp + c], s),
 * dy the sample's output gradient (M planes of P) and Wc one group's weights packed by
 * cf_gemm_pack_dx. These are the column path's sums (gemm_nn's chains over the output
 * channels, then col2im adding tap by tap), so tile by tile the same bits. */
/* dst[q * ldd + o] = src[o * lds + q] for o < rows, q < cols (a strided transpose; the
 * products over output channels move gradients between plane-major and pixel-major). src and
 * dst must not overlap: the x86 variants' edge blocks overlap the blocks before them, reading
 * some of src and writing some of dst twice. */
typedef void (*cf_transpose_fn)(const float *src, int64_t lds, int rows, int64_t cols,
                                float *dst, int64_t ldd);
typedef void (*cf_conv_bwd_w_pix_fn)(int M, int K, const float *dyT, const float *x,
                                     const int32_t *rowoff, const int32_t *src,
                                     const int32_t *q, int n, float *dWt);
typedef void (*cf_conv_bwd_x_pix_fn)(int Cp, int M, int T, const float *Wc, const float *dy,
                                     int64_t P, const int32_t *rowoff, const int32_t *src,
                                     const int32_t *q, int n, float *dxT);

/* Packed A: rows in blocks of 4 (the last padded with zeros), within a block k-major: element
 * (m, k) at [(m / 4) * 4 * K + k * 4 + m % 4]; cf_gemm_packed_floats(M, K) floats. pack_at
 * packs the transpose of a K x M matrix (A[m][k] = At[k * lda + m]). */
size_t cf_gemm_packed_floats(int M, int K);
void cf_gemm_pack_a(int M, int K, const float *A, int lda, float *Ap);
void cf_gemm_pack_at(int M, int K, const float *At, int lda, float *Ap);
/* For conv_fwd_pix: element (m, k) of an M x K matrix at [k * Mp + m], Mp = M rounded up to a
 * multiple of 8 (the rows past M zero); cf_gemm_pix_floats(M, K) = Mp * K floats. */
size_t cf_gemm_pix_floats(int M, int K);
void cf_gemm_pack_pix(int M, int K, const float *A, int lda, float *Ap);
/* For conv_bwd_x_pix: an M x (C k k) weight matrix A (row m, column c k k + t) as
 * Wc[(t * M + m) * Cp + c], Cp = C rounded up to 8 (zeros past C); cf_gemm_dx_floats(C, M, k)
 * = k k M Cp floats. */
size_t cf_gemm_dx_floats(int C, int M, int k);
void cf_gemm_pack_dx(int C, int M, int k, const float *A, float *Wc);

void cf_gemm_nn_generic(int M, int N, int K, const float *Ap, int ak, const float *B, int ldb,
                        float *C, int ldc, int cont);
void cf_gemm_nt_generic(int M, int L, int N, const float *A, int lda, const float *B, int ldb,
                        float *C, int ldc);
void cf_gemm_nt_runs_generic(int M, int L, const float *A, int lda, const float *x,
                             int64_t plane, int nb, int w, const int32_t *rowoff,
                             const struct cf_run *a, const struct cf_run *e, float *C, int ldc);
void cf_conv_fwd_runs_generic(int M, int K, const float *Ap, const float *x,
                              const int32_t *rowoff, const struct cf_run *a,
                              const struct cf_run *e, const int32_t *rq, float *y, int64_t ldy,
                              const float *bias);
void cf_conv_fwd_flat_generic(int M, int K, const float *Ap, const float *x,
                           const int32_t *rowoff, int32_t src, int32_t len, int Wp, int OW,
                           float *y, int64_t ldy, const float *bias);
void cf_conv_fwd_pix_generic(int M, int K, const float *Ap, const float *x,
                             const int32_t *rowoff, const int32_t *src, const int32_t *q, int n,
                             float *y, int64_t ldy, const float *bias);
void cf_conv_bwd_w_pix_generic(int M, int K, const float *dyT, const float *x,
                               const int32_t *rowoff, const int32_t *src, const int32_t *q, int n,
                               float *dWt);
void cf_transpose_generic(const float *src, int64_t lds, int rows, int64_t cols, float *dst,
                          int64_t ldd);
void cf_conv_bwd_x_pix_generic(int Cp, int M, int T, const float *Wc, const float *dy,
                               int64_t P, const int32_t *rowoff, const int32_t *src,
                               const int32_t *q, int n, float *dxT);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CF_HAVE_GEMM_AVX2 1
void cf_gemm_nn_avx2(int M, int N, int K, const float *Ap, int ak, const float *B, int ldb,
                     float *C, int ldc, int cont);
void cf_gemm_nt_avx2(int M, int L, int N, const float *A, int lda, const float *B, int ldb,
                     float *C, int ldc);
void cf_gemm_nt_runs_avx2(int M, int L, const float *A, int lda, const float *x, int64_t plane,
                          int nb, int w, const int32_t *rowoff, const struct cf_run *a,
                          const struct cf_run *e, float *C, int ldc);
void cf_conv_fwd_runs_avx2(int M, int K, const float *Ap, const float *x, const int32_t *rowoff,
                           const struct cf_run *a, const struct cf_run *e, const int32_t *rq,
                           float *y, int64_t ldy, const float *bias);
void cf_conv_fwd_flat_avx2(int M, int K, const float *Ap, const float *x,
                           const int32_t *rowoff, int32_t src, int32_t len, int Wp, int OW,
                           float *y, int64_t ldy, const float *bias);
void cf_conv_fwd_pix_avx2(int M, int K, const float *Ap, const float *x, const int32_t *rowoff,
                          const int32_t *src, const int32_t *q, int n, float *y, int64_t ldy,
                          const float *bias);
void cf_conv_bwd_w_pix_avx2(int M, int K, const float *dyT, const float *x,
                            const int32_t *rowoff, const int32_t *src, const int32_t *q, int n,
                            float *dWt);
void cf_transpose_avx2(const float *src, int64_t lds, int rows, int64_t cols, float *dst,
                       int64_t ldd);
void cf_conv_bwd_x_pix_avx2(int Cp, int M, int T, const float *Wc, const float *dy, int64_t P,
                            const int32_t *rowoff, const int32_t *src, const int32_t *q, int n,
                            float *dxT);
/* The same kernels with 16 lanes (AVX-512F): the same bits as every other variant (gemm_nt's
 * vectors hold two elements' 8 partial sums); the transpose in 16 x 16 blocks. */
void cf_gemm_nn_avx512(int M, int N, int K, const float *Ap, int ak, const float *B, int ldb,
                       float *C, int ldc, int cont);
void cf_gemm_nt_avx512(int M, int L, int N, const float *A, int lda, const float *B, int ldb,
                       float *C, int ldc);
void cf_gemm_nt_runs_avx512(int M, int L, const float *A, int lda, const float *x,
                            int64_t plane, int nb, int w, const int32_t *rowoff,
                            const struct cf_run *a, const struct cf_run *e, float *C, int ldc);
void cf_conv_fwd_runs_avx512(int M, int K, const float *Ap, const float *x,
                             const int32_t *rowoff, const struct cf_run *a,
                             const struct cf_run *e, const int32_t *rq, float *y, int64_t ldy,
                             const float *bias);
void cf_conv_fwd_flat_avx512(int M, int K, const float *Ap, const float *x,
                           const int32_t *rowoff, int32_t src, int32_t len, int Wp, int OW,
                           float *y, int64_t ldy, const float *bias);
void cf_conv_fwd_pix_avx512(int M, int K, const float *Ap, const float *x,
                            const int32_t *rowoff, const int32_t *src, const int32_t *q, int n,
                            float *y, int64_t ldy, const float *bias);
void cf_conv_bwd_w_pix_avx512(int M, int K, const float *dyT, const float *x,
                              const int32_t *rowoff, const int32_t *src, const int32_t *q, int n,
                              float *dWt);
void cf_transpose_avx512(const float *src, int64_t lds, int rows, int64_t cols, float *dst,
                         int64_t ldd);
void cf_conv_bwd_x_pix_avx512(int Cp, int M, int T, const float *Wc, const float *dy, int64_t P,
                              const int32_t *rowoff, const int32_t *src, const int32_t *q, int n,
                              float *dxT);
#endif

#endif /* CFNET_KERNELS_GEMM_H */
