/* Vector math at the AVX-512F level: SLEEF's 1-ulp functions on 16 floats
 * or 8 doubles at a time. Built with -mavx512f and reached only through
 * ag__vmath_level() on a CPU that has AVX-512F. */
#include "ops/vmath.h"

#include <immintrin.h>
#include <sleef.h>
#include <string.h>

#define VM(f) VM_(f, VM_SUFFIX)
#define VM_(f, s) VM__(f, s)
#define VM__(f, s) ag__vm_##f##_##s
#define VM_SLEEF

#define T float
#define V __m512
#define VN 16
#define VL(f) Sleef_##f##f16_u10avx512f
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VSET1 _mm512_set1_ps
#define VSQRT _mm512_sqrt_ps
#define VABS _mm512_abs_ps
#define VSEL_NONNEG(x, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((x), _mm512_setzero_ps(), _CMP_GE_OQ), (b), (a))
#define VANY_GE(x, c) _mm512_cmp_ps_mask((x), _mm512_set1_ps(c), _CMP_GE_OQ) != 0
#define VM_SUFFIX f32_avx512
#define VM_FN ag__vm_f32
#include "ops/vmath_level.inc"

#define T double
#define V __m512d
#define VN 8
#define VL(f) Sleef_##f##d8_u10avx512f
#define VLOAD _mm512_loadu_pd
#define VSTORE _mm512_storeu_pd
#define VSET1 _mm512_set1_pd
#define VSQRT _mm512_sqrt_pd
#define VABS _mm512_abs_pd
#define VSEL_NONNEG(x, a, b) _mm512_mask_blend_pd(_mm512_cmp_pd_mask((x), _mm512_setzero_pd(), _CMP_GE_OQ), (b), (a))
#define VANY_GE(x, c) _mm512_cmp_pd_mask((x), _mm512_set1_pd(c), _CMP_GE_OQ) != 0
#define VM_SUFFIX f64_avx512
#define VM_FN ag__vm_f64
#include "ops/vmath_level.inc"

const ag__vmath ag__vmath_avx512 = {"avx512", ag__vm_fns_f32_avx512, ag__vm_fns_f64_avx512, ag__vm_pow_f32_avx512,
                                    ag__vm_pow_f64_avx512};
