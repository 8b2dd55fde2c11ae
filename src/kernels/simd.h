/* Runtime CPU dispatch for the library's own hot loops (private).
 *
 * Every kernel exists in three variants: portable C ("generic"), and AVX2 and AVX-512 builds of
 * the same loops written with GCC/Clang vector extensions (the `target` attribute, so no special
 * compiler flags are needed and the file builds everywhere). The variant is chosen once, at the
 * first use: the best one the CPU supports, or the one named by the environment variable
 * CFNET_CPU=generic|avx2|avx512 (a variant the CPU lacks, or an unknown name, falls back to the
 * best supported one). The avx2 and avx512 variants need FMA too (every CPU with AVX2 or
 * AVX-512 has it); their matrix products (kernels/gemm.h) are the AVX2+FMA ones. No kernel contracts a*b+c into an FMA and every sum uses the same
 * partial sums in the same order in every variant, so all variants give bit-identical results;
 * `tests/test_simd.c` checks that, and `make check` runs the layer suites under every variant
 * the machine supports (tests/test_cpu_variants.sh). */
#ifndef CFNET_KERNELS_SIMD_H
#define CFNET_KERNELS_SIMD_H

#include "core/core.h"
#include "kernels/gemm.h"

/* Floats of slack the run copies may write and read past a run (see convcore.c). */
#define CF_RUN_BLOCK 8

typedef struct cf_run {
    int32_t dst; /* first column, relative to the start of its segment */
    int32_t src; /* offset of that column's input in the padded plane */
    int32_t len;
} cf_run;

enum { CF_SIMD_GENERIC = 0, CF_SIMD_AVX2 = 1, CF_SIMD_AVX512 = 2, CF_SIMD_COUNT = 3 };

typedef struct cf_simd_ops {
    const char *name;
    /* A tile's im2col: for each run, then each row r in [r0, r1):
     * dst[(r - r0) * ld + r.dst ..] = src[rowoff[r] + r.src ..], len rounded up to
     * CF_RUN_BLOCK (the overshoot lands on the next run, the next sample's columns or the
     * row's slack, all written later). col2im: dst[rowoff[r] + r.src + i] +=
     * src[(r - r0) * ld + r.dst + i], i < len, row by row and within a row run by run; the
     * vector variants add a run shorter than 8 as one block of 8 whose lanes past the run
     * keep their bits, so they read src and read and rewrite dst up to 7 floats past such a
     * run (the columns' and the padded planes' slack; adding into dx itself, convcore.c gives
     * them only the column rows where that stays inside the sample's planes). */
    void (*im2col_runs)(float *dst, int64_t ld, const float *src, const int32_t *rowoff,
                        int64_t r0, int64_t r1, const cf_run *a, const cf_run *e);
    void (*col2im_runs)(float *dst, const float *src, int64_t ld, const int32_t *rowoff,
                        int64_t r0, int64_t r1, const cf_run *a, const cf_run *e);
    /* Conic output scatter of a tile's rows: for each run, each row o < rows:
     * dst[o * ldd + r.src + i] = src[o * lds + r.dst + i] + (bias ? bias[o] : 0); and the
     * gather of its gradient: dst[o * ldd + r.dst + i] = src[o * lds + r.src + i] (exact
     * lengths). */
    void (*scatter_runs)(float *dst, int64_t ldd, const float *src, int64_t lds, int rows,
                         const float *bias, const cf_run *a, const cf_run *e);
    void (*gather_runs)(float *dst, int64_t ldd, const float *src, int64_t lds, int rows,
                        const cf_run *a, const cf_run *e);
    /* dst[i] = src[i] + b */
    void (*add_scalar)(float *dst, const float *src, int64_t n, float b);
    /* y[o ld + i] += bias[o] in place, i < n, o < rows */
    void (*add_bias_rows)(float *y, int64_t ld, int rows, int64_t n, const float *bias);
    /* y = max(0, x) (bit-exact select: -0 and NaN give +0); dx = y > 0 ? dy : 0 */
    void (*relu)(const float *x, float *y, int64_t n);
    void (*relu_backward)(const float *y, const float *dy, float *dx, int64_t n);
    /* y = (x - mu) * scale + shift, then max(0, .) if relu */
    void (*affine)(const float *x, float *y, int64_t n, float mu, float scale, float shift,
                   bool relu);
    /* Sums in double over count chunks x + b ld (b < count) of n floats each: a chunk's sum
     * has 8 partial sums (element j goes to sum j mod 8), combined as
     * ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)), and the chunks' sums are added in
     * order of b to a total that starts at 0; sum_sq_dev sums (x - mu)^2. */
    double (*sum)(const float *x, int64_t ld, int64_t count, int64_t n);
    double (*sum_sq_dev)(const float *x, int64_t ld, int64_t count, int64_t n, double mu);
    /* out[r] += (float) the sum of x[r ld + j], j < n, for r < rows: in double with 8 partial
     * sums over the first n - n mod 8 elements (element j to sum j mod 8), the last n mod 8
     * added to sum 0 in order, combined as above (the convolution's bias gradient; rows are
     * independent, so the vector variants run several at once). */
    void (*sum_rows)(const float *x, int64_t ld, int rows, int64_t n, float *out);
    /* For each chunk b < count in turn (x + b ld and dy + b ld, n floats): *sdy += its sum of
     * dy, *sdyx += its sum of dy * (x - mu) (each a chunk sum as above). */
    void (*sum_dy_dyx)(const float *x, const float *dy, int64_t ld, int64_t count, int64_t n,
                       double mu, double *sdy, double *sdyx);
    /* dx = k * (dy - a - (x - m) * bc) */
    void (*bn_dx)(const float *x, const float *dy, float *dx, int64_t n, float k, float a,
                  float m, float bc);
    /* 2 x 2 max pooling with step 2 of one plane (rows of W floats; Ho x Wo windows): y is
     * each window's first maximum, scanning its rows then columns, where a later element
     * replaces the best only if greater (so ties, signed zeros and NaN resolve in that
     * order). The backward writes each window's four elements of dx: 0 + dy at that first
     * maximum, +0 at the others (elements no window covers are left as they are). */
    void (*max2_fwd)(const float *x, int64_t W, int64_t Ho, int64_t Wo, float *y);
    void (*max2_bwd)(const float *x, const float *dy, int64_t W, int64_t Ho, int64_t Wo,
                     float *dx);
    /* The convolution engine's products (kernels/gemm.h; bit-identical in every variant). */
    cf_gemm_nn_fn gemm_nn;
    cf_gemm_nt_fn gemm_nt;
    /* gemm_nt on a tile's columns read in place (the weight gradient where every run is a
     * multiple of 8 columns; bit-identical too). */
    cf_gemm_nt_runs_fn gemm_nt_runs;
    /* The direct convolution forward over runs (kernels/gemm.h; bit-identical too). */
    cf_conv_fwd_runs_fn conv_fwd_runs;
    /* ... and over a tile's output rows as one flat run (kernels/gemm.h; bit-identical too). */
    cf_conv_fwd_flat_fn conv_fwd_flat;
    /* ... and over output channels, for columns in any order (conic tiles). */
    cf_conv_fwd_pix_fn conv_fwd_pix;
    cf_conv_bwd_w_pix_fn conv_bwd_w_pix;
    cf_conv_bwd_x_pix_fn conv_bwd_x_pix;
    cf_transpose_fn transpose;
    /* Floats per vector of the products above (8, or 16 with AVX-512): the direct forward cuts
     * runs into pieces of up to 3 whole vectors (fr_piece_cols), whose lanes the engine's
     * planner counts (convcore.c). */
    int lanes;
} cf_simd_ops;

/* The active variant (chosen once; thread-safe). */
const cf_simd_ops *cf_simd(void);
/* A given variant, or NULL if the CPU (or the compiler) does not support it. */
const cf_simd_ops *cf_simd_variant(int variant);

#endif /* CFNET_KERNELS_SIMD_H */
