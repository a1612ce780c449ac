/* Vector math at the SSE2 level, which every x86-64 CPU has: SLEEF's 1-ulp
 * functions on 4 floats or 2 doubles at a time, through SLEEF's own
 * dispatchers (they take SSE4.1 or AVX2's 128-bit forms where the CPU has
 * them). For x86-64 CPUs without AVX2. */
#include "ops/vmath.h"

#include <emmintrin.h>
#include <sleef.h>
#include <string.h>

#define VM(f) VM_(f, VM_SUFFIX)
#define VM_(f, s) VM__(f, s)
#define VM__(f, s) ag__vm_##f##_##s
#define VM_SLEEF

/* a where m is set, else b */
#define AG__SEL_PS(m, a, b) _mm_or_ps(_mm_and_ps((m), (a)), _mm_andnot_ps((m), (b)))
#define AG__SEL_PD(m, a, b) _mm_or_pd(_mm_and_pd((m), (a)), _mm_andnot_pd((m), (b)))

#define T float
#define V __m128
#define VN 4
#define VL(f) Sleef_##f##f4_u10
#define VLOAD _mm_loadu_ps
#define VSTORE _mm_storeu_ps
#define VSET1 _mm_set1_ps
#define VSQRT _mm_sqrt_ps
#define VABS(x) _mm_andnot_ps(_mm_set1_ps(-0.0f), (x))
#define VSEL_NONNEG(x, a, b) AG__SEL_PS(_mm_cmpge_ps((x), _mm_setzero_ps()), (a), (b))
#define VANY_GE(x, c) _mm_movemask_ps(_mm_cmpge_ps((x), _mm_set1_ps(c))) != 0
#define VM_SUFFIX f32_sse2
#define VM_FN ag__vm_f32
#include "ops/vmath_level.inc"

#define T double
#define V __m128d
#define VN 2
#define VL(f) Sleef_##f##d2_u10
#define VLOAD _mm_loadu_pd
#define VSTORE _mm_storeu_pd
#define VSET1 _mm_set1_pd
#define VSQRT _mm_sqrt_pd
#define VABS(x) _mm_andnot_pd(_mm_set1_pd(-0.0), (x))
#define VSEL_NONNEG(x, a, b) AG__SEL_PD(_mm_cmpge_pd((x), _mm_setzero_pd()), (a), (b))
#define VANY_GE(x, c) _mm_movemask_pd(_mm_cmpge_pd((x), _mm_set1_pd(c))) != 0
#define VM_SUFFIX f64_sse2
#define VM_FN ag__vm_f64
#include "ops/vmath_level.inc"

const ag__vmath ag__vmath_sse2 = {"sse2", ag__vm_fns_f32_sse2, ag__vm_fns_f64_sse2, ag__vm_pow_f32_sse2,
                                  ag__vm_pow_f64_sse2};
