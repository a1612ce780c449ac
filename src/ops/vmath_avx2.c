/* Vector math at the AVX2 level: SLEEF's 1-ulp functions on 8 floats or 4
 * doubles at a time. Built with -mavx2 -mfma and reached only through
 * ag__vmath_level() on a CPU that has both. */
#include "ops/vmath.h"

#include <immintrin.h>
#include <sleef.h>
#include <string.h>

#define VM(f) VM_(f, VM_SUFFIX)
#define VM_(f, s) VM__(f, s)
#define VM__(f, s) ag__vm_##f##_##s
#define VM_SLEEF

#define T float
#define V __m256
#define VN 8
#define VL(f) Sleef_##f##f8_u10avx2
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VSET1 _mm256_set1_ps
#define VSQRT _mm256_sqrt_ps
#define VABS(x) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), (x))
#define VSEL_NONNEG(x, a, b) _mm256_blendv_ps((b), (a), _mm256_cmp_ps((x), _mm256_setzero_ps(), _CMP_GE_OQ))
#define VANY_GE(x, c) _mm256_movemask_ps(_mm256_cmp_ps((x), _mm256_set1_ps(c), _CMP_GE_OQ)) != 0
#define VM_SUFFIX f32_avx2
#define VM_FN ag__vm_f32
#include "ops/vmath_level.inc"

#define T double
#define V __m256d
#define VN 4
#define VL(f) Sleef_##f##d4_u10avx2
#define VLOAD _mm256_loadu_pd
#define VSTORE _mm256_storeu_pd
#define VSET1 _mm256_set1_pd
#define VSQRT _mm256_sqrt_pd
#define VABS(x) _mm256_andnot_pd(_mm256_set1_pd(-0.0), (x))
#define VSEL_NONNEG(x, a, b) _mm256_blendv_pd((b), (a), _mm256_cmp_pd((x), _mm256_setzero_pd(), _CMP_GE_OQ))
#define VANY_GE(x, c) _mm256_movemask_pd(_mm256_cmp_pd((x), _mm256_set1_pd(c), _CMP_GE_OQ)) != 0
#define VM_SUFFIX f64_avx2
#define VM_FN ag__vm_f64
#include "ops/vmath_level.inc"

const ag__vmath ag__vmath_avx2 = {"avx2", ag__vm_fns_f32_avx2, ag__vm_fns_f64_avx2, ag__vm_pow_f32_avx2,
                                  ag__vm_pow_f64_avx2};
