/* Kernels per dtype from one template. An op family keeps its kernels in a
 * template file (ops/<family>_kernels.inc) written once, for an element
 * type T, and has it compiled for float and for double:
 *
 *     #define AG__KERNELS "ops/linalg_kernels.inc"
 *     #include "ops/kernel_template.h"
 *
 * While the template is compiled it sees
 *     T               float, then double
 *     K(name)         the kernel `name` for T: K(ag__gemm_c) is ag__gemm_c_f32, then ag__gemm_c_f64
 *     AG__T_IS_F64    0, then 1 (for the few lines that must name a typed library call)
 * so every kernel is a plain function with real lines: a debugger steps
 * through it, sanitizer reports and cppcheck point into the template. The
 * caller picks the copy for a tensor's dtype (an if on the dtype, or a
 * table indexed by it). No include guard: the template is read once per
 * inclusion. */

#ifndef AG__KERNELS
#error "define AG__KERNELS as the kernel template to instantiate"
#endif

#define AG__K_CAT_(a, b) a##b
#define AG__K_CAT(a, b) AG__K_CAT_(a, b)

#define T float
#define K(name) AG__K_CAT(name, _f32)
#define AG__T_IS_F64 0
#include AG__KERNELS
#undef T
#undef K
#undef AG__T_IS_F64

#define T double
#define K(name) AG__K_CAT(name, _f64)
#define AG__T_IS_F64 1
#include AG__KERNELS
#undef T
#undef K
#undef AG__T_IS_F64

#undef AG__KERNELS
