/* CPU features for the runtime dispatch of the SIMD kernels (see platform.h). */
#include "platform/platform.h"

bool cf_platform_cpu_has(cf_cpu_feature f)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    switch (f) {
    case CF_CPU_AVX2: return __builtin_cpu_supports("avx2");
    case CF_CPU_AVX512F: return __builtin_cpu_supports("avx512f");
    case CF_CPU_FMA: return __builtin_cpu_supports("fma");
    }
    return false;
#else
    (void)f;
    return false;
#endif
}
