/* Vector math (vmath.h): the libm level, one element at a time (the
 * fallback without SLEEF and the reference of the accuracy test), and the
 * choice of level, made once per process from what this CPU runs. */
#include "ops/vmath.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define VM(f) VM_(f, VM_SUFFIX)
#define VM_(f, s) VM__(f, s)
#define VM__(f, s) ag__vm_##f##_##s

/* sigmoid of a float in double, rounded once at the end (as fast as
 * the float formula with libm) */
static float ag__vm_sigmoid_f32_wide(float x) {
    const double e = exp(-fabs((double)x));
    return (float)((x >= 0 ? 1 : e) / (1 + e));
}

#define T float
#define V float
#define VSIGMOID ag__vm_sigmoid_f32_wide
#define VN 1
#define VL(fn) fn##f
#define VLOAD(p) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VSET1(t) ((float)(t))
#define VSQRT sqrtf
#define VABS fabsf
#define VSEL_NONNEG(x, a, b) ((x) >= 0 ? (a) : (b))
#define VANY_GE(x, c) ((x) >= (c))
#define VM_SUFFIX f32_libm
#define VM_FN ag__vm_f32
#include "ops/vmath_level.inc"

#define T double
#define V double
#define VN 1
#define VL(f) f
#define VLOAD(p) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VSET1(t) ((double)(t))
#define VSQRT sqrt
#define VABS fabs
#define VSEL_NONNEG(x, a, b) ((x) >= 0 ? (a) : (b))
#define VANY_GE(x, c) ((x) >= (c))
#define VM_SUFFIX f64_libm
#define VM_FN ag__vm_f64
#include "ops/vmath_level.inc"

static const ag__vmath ag__vmath_libm = {"libm", ag__vm_fns_f32_libm, ag__vm_fns_f64_libm, ag__vm_pow_f32_libm,
                                         ag__vm_pow_f64_libm};

const ag__vmath *ag__vmath_level(ag__vm_level level) {
    switch (level) {
    case AG__VM_LIBM:
        return &ag__vmath_libm;
#if defined(AG_HAVE_SLEEF) && defined(__x86_64__)
    case AG__VM_SSE2:
        return &ag__vmath_sse2;
    case AG__VM_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &ag__vmath_avx2 : NULL;
    case AG__VM_AVX512:
        return __builtin_cpu_supports("avx512f") ? &ag__vmath_avx512 : NULL;
#endif
    default:
        return NULL;
    }
}

static const ag__vmath *_Atomic ag__vmath_chosen;

const ag__vmath *ag__vmath_get(void) {
    const ag__vmath *vm = atomic_load_explicit(&ag__vmath_chosen, memory_order_acquire);
    if (vm)
        return vm;
    /* the widest level this CPU runs, unless AG_VMATH names another it runs;
     * threads that race here all find the same one */
    const char *want = getenv("AG_VMATH");
    for (int l = AG__VM_LEVELS - 1; l >= 0 && !vm; l--) {
        const ag__vmath *t = ag__vmath_level((ag__vm_level)l);
        if (t && (!want || !strcmp(want, t->name)))
            vm = t;
    }
    for (int l = AG__VM_LEVELS - 1; l >= 0 && !vm; l--) /* AG_VMATH named none of them */
        vm = ag__vmath_level((ag__vm_level)l);
    atomic_store_explicit(&ag__vmath_chosen, vm, memory_order_release);
    return vm;
}
