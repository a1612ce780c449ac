/* Vector math for the elementwise kernels: exp, log, log1p, tanh, sigmoid,
 * sin, cos, sqrt and pow over contiguous arrays, in float and double.
 *
 * Levels: SLEEF's 1-ulp vector functions (Debian's libsleef-dev) at the
 * widest x86-64 level this CPU runs (AVX-512F, AVX2 with FMA, SSE2),
 * chosen at the first call, and plain libm loops: the fallback where SLEEF
 * is absent and the reference the accuracy test holds the others to.
 * AG_VMATH=libm|sse2|avx2|avx512 in the environment picks a level (for
 * comparisons; a level the CPU cannot run is ignored).
 *
 * Every element is computed alone, through the same code wherever it sits
 * in its array (a tail shorter than a vector goes through a padded one),
 * so a result never depends on how an array was cut into pieces. */
#ifndef AG_OPS_VMATH_H
#define AG_OPS_VMATH_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    AG__VM_EXP,
    AG__VM_LOG,
    AG__VM_LOG1P,
    AG__VM_TANH,
    AG__VM_SIGMOID, /* 1 / (1 + exp(-x)), computed as exp(x) / (1 + exp(x)) below 0 */
    AG__VM_SIN,
    AG__VM_COS,
    AG__VM_SQRT,
    AG__VM_COUNT
} ag__vm_fn;

/* o[i] = f(x[i]) for i < n; o may be x. */
typedef void (*ag__vm_f32)(float *o, const float *x, int64_t n);
typedef void (*ag__vm_f64)(double *o, const double *x, int64_t n);
/* o[i] = x[i] ** y[i] for i < n, C's pow; o may be x or y. */
typedef void (*ag__vm_pow_f32)(float *o, const float *x, const float *y, int64_t n);
typedef void (*ag__vm_pow_f64)(double *o, const double *x, const double *y, int64_t n);

typedef struct ag__vmath {
    const char *name;      /* "libm", "sse2", "avx2", "avx512" */
    const ag__vm_f32 *f32; /* [AG__VM_COUNT], by ag__vm_fn */
    const ag__vm_f64 *f64;
    ag__vm_pow_f32 pow_f32;
    ag__vm_pow_f64 pow_f64;
} ag__vmath;

/* Levels from the reference up: AG__VM_LIBM always exists; the others when
 * SLEEF was found at build time and this CPU runs them. */
typedef enum { AG__VM_LIBM, AG__VM_SSE2, AG__VM_AVX2, AG__VM_AVX512, AG__VM_LEVELS } ag__vm_level;

/* The table of one level, or NULL where it cannot run here. */
const ag__vmath *ag__vmath_level(ag__vm_level level);

/* The table the kernels use: the widest level (or AG_VMATH's), chosen once. */
const ag__vmath *ag__vmath_get(void);

/* Tables of the SLEEF levels (vmath_<isa>.c), built with SLEEF only. */
extern const ag__vmath ag__vmath_sse2, ag__vmath_avx2, ag__vmath_avx512;

#endif /* AG_OPS_VMATH_H */
