/* Runtime CPU dispatch: the kernels of simd_kernels.inc in three variants; see simd.h. */
#include "simd.h"
#include "platform/platform.h"

#include <stdlib.h>
#include <string.h>

/* Contraction of a*b+c into an FMA would make the variants differ in rounding. GCC does not
 * contract in ISO C mode (-std=c11); Clang needs to be told. */
#ifdef __clang__
#pragma clang fp contract(off)
#endif

#define CF_SFX generic
#define CF_NAME "generic"
#define CF_ATTR
#define CF_VW 1
#define CF_GEMM_NN cf_gemm_nn_generic
#define CF_GEMM_NT cf_gemm_nt_generic
#define CF_GEMM_NT_RUNS cf_gemm_nt_runs_generic
#define CF_CONV_FWD_RUNS cf_conv_fwd_runs_generic
#define CF_CONV_FWD_FLAT cf_conv_fwd_flat_generic
#define CF_CONV_FWD_PIX cf_conv_fwd_pix_generic
#define CF_CONV_BWD_W_PIX cf_conv_bwd_w_pix_generic
#define CF_CONV_BWD_X_PIX cf_conv_bwd_x_pix_generic
#define CF_TRANSPOSE cf_transpose_generic
#include "simd_kernels.inc"
#undef CF_GEMM_NN
#undef CF_GEMM_NT
#undef CF_GEMM_NT_RUNS
#undef CF_CONV_FWD_RUNS
#undef CF_CONV_FWD_FLAT
#undef CF_CONV_FWD_PIX
#undef CF_CONV_BWD_W_PIX
#undef CF_CONV_BWD_X_PIX
#undef CF_TRANSPOSE
#undef CF_SFX
#undef CF_NAME
#undef CF_ATTR
#undef CF_VW

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CF_HAVE_X86_VARIANTS 1
#define CF_GEMM_NN cf_gemm_nn_avx2
#define CF_GEMM_NT cf_gemm_nt_avx2
#define CF_GEMM_NT_RUNS cf_gemm_nt_runs_avx2
#define CF_CONV_FWD_RUNS cf_conv_fwd_runs_avx2
#define CF_CONV_FWD_FLAT cf_conv_fwd_flat_avx2
#define CF_CONV_FWD_PIX cf_conv_fwd_pix_avx2
#define CF_CONV_BWD_W_PIX cf_conv_bwd_w_pix_avx2
#define CF_CONV_BWD_X_PIX cf_conv_bwd_x_pix_avx2
#define CF_TRANSPOSE cf_transpose_avx2
#define CF_SFX avx2
#define CF_NAME "avx2"
#define CF_ATTR __attribute__((target("avx2")))
#define CF_VW 8
#include "simd_kernels.inc"
#undef CF_SFX
#undef CF_NAME
#undef CF_ATTR
#undef CF_VW

#undef CF_GEMM_NN
#undef CF_GEMM_NT
#undef CF_GEMM_NT_RUNS
#undef CF_CONV_FWD_RUNS
#undef CF_CONV_FWD_FLAT
#undef CF_CONV_FWD_PIX
#undef CF_CONV_BWD_W_PIX
#undef CF_CONV_BWD_X_PIX
#undef CF_TRANSPOSE
#define CF_GEMM_NN cf_gemm_nn_avx512
#define CF_GEMM_NT cf_gemm_nt_avx512
#define CF_GEMM_NT_RUNS cf_gemm_nt_runs_avx512
#define CF_CONV_FWD_RUNS cf_conv_fwd_runs_avx512
#define CF_CONV_FWD_FLAT cf_conv_fwd_flat_avx512
#define CF_CONV_FWD_PIX cf_conv_fwd_pix_avx512
#define CF_CONV_BWD_W_PIX cf_conv_bwd_w_pix_avx512
#define CF_CONV_BWD_X_PIX cf_conv_bwd_x_pix_avx512
#define CF_TRANSPOSE cf_transpose_avx512
#define CF_SFX avx512
#define CF_NAME "avx512"
#define CF_ATTR __attribute__((target("avx512f")))
#define CF_VW 16
#include "simd_kernels.inc"
#undef CF_SFX
#undef CF_NAME
#undef CF_ATTR
#undef CF_VW
#undef CF_GEMM_NN
#undef CF_GEMM_NT
#undef CF_GEMM_NT_RUNS
#undef CF_CONV_FWD_RUNS
#undef CF_CONV_FWD_FLAT
#undef CF_CONV_FWD_PIX
#undef CF_CONV_BWD_W_PIX
#undef CF_CONV_BWD_X_PIX
#undef CF_TRANSPOSE
#endif

const cf_simd_ops *cf_simd_variant(int variant)
{
    switch (variant) {
    case CF_SIMD_GENERIC: return &ops_generic;
#ifdef CF_HAVE_X86_VARIANTS
    case CF_SIMD_AVX2:
        return cf_platform_cpu_has(CF_CPU_AVX2) && cf_platform_cpu_has(CF_CPU_FMA) ? &ops_avx2
                                                                                  : NULL;
    case CF_SIMD_AVX512:
        return cf_platform_cpu_has(CF_CPU_AVX512F) && cf_platform_cpu_has(CF_CPU_AVX2) &&
                       cf_platform_cpu_has(CF_CPU_FMA)
                   ? &ops_avx512
                   : NULL;
#endif
    default: return NULL;
    }
}

static const cf_simd_ops *cf_active;
static cf_once cf_simd_once = CF_ONCE_INIT;

static void choose(void)
{
    const char *want = getenv("CFNET_CPU");
    static const char *const names[CF_SIMD_COUNT] = {"generic", "avx2", "avx512"};
    if (want)
        for (int v = 0; v < CF_SIMD_COUNT; v++)
            if (!strcmp(want, names[v]) && cf_simd_variant(v)) {
                cf_active = cf_simd_variant(v);
                return;
            }
    for (int v = CF_SIMD_COUNT - 1; v >= 0; v--)
        if (cf_simd_variant(v)) {
            cf_active = cf_simd_variant(v);
            return;
        }
}

const cf_simd_ops *cf_simd(void)
{
    cf_once_run(&cf_simd_once, choose);
    return cf_active;
}
