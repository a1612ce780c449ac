/* Private helpers shared by the op families (ops_*.c): argument checks,
 * broadcast strides and the strided walk over an output shape, the
 * broadcast-gradient reduction, and the matmul kernels (declared here so the
 * tests can hold the fast kernel against the naive one). */
#ifndef AG_OPS_H
#define AG_OPS_H

#include "core/checked.h"
#include "core/internal.h"
#include "core/tuning.h"

/* `omp simd` asks for vectorisation; where clang cannot give it (sanitizer
 * instrumentation in the loop) the loop still runs correctly, so that is
 * not a warning worth failing a -Werror build for. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

/* NULL tensors (keeping the first error), NULL ctx and dtype mismatch,
 * reported with the op's name. Returns 0 when the arguments may be used. */
int ag__check_unary(ag_ctx *ctx, const ag_tensor *a, const char *op);
int ag__check_binary(ag_ctx *ctx, const ag_tensor *a, const ag_tensor *b, const char *op);

/* A walk over an output shape with up to AG__ITER_OPS operands, each with
 * its own element strides (0 along broadcast dimensions). Dimensions of
 * size 1 are dropped and adjacent dimensions that are contiguous for every
 * operand are merged, so most walks are one flat loop; when every operand
 * has either all the elements or one, the walk is one row at once. */
#define AG__ITER_OPS 4
typedef struct ag__iter {
    int ndim; /* >= 1 after ag__iter_init; the innermost is ndim - 1 */
    int nops;
    int64_t shape[AG_MAX_DIMS];
    int64_t stride[AG__ITER_OPS][AG_MAX_DIMS];
} ag__iter;

/* ops[k] is an operand whose shape broadcasts to (ndim, shape). */
void ag__iter_init(ag__iter *it, int ndim, const int64_t *shape, int nops, const ag_tensor *const *ops);

/* Runs the statement(s) in __VA_ARGS__ once per innermost row, with
 * OFF[k] the element offset of operand k at the start of the row. The
 * macro form keeps the row loop visible to the compiler. */
#define AG__ITER_ROWS(it, OFF, ...)                                                                                    \
    do {                                                                                                               \
        int64_t idx_[AG_MAX_DIMS] = {0};                                                                               \
        int64_t OFF[AG__ITER_OPS] = {0};                                                                               \
        const int last_ = (it)->ndim - 1;                                                                              \
        int64_t rows_ = 1;                                                                                             \
        for (int d_ = 0; d_ < last_; d_++)                                                                             \
            rows_ *= (it)->shape[d_];                                                                                  \
        for (int64_t r_ = 0; r_ < rows_; r_++) {                                                                       \
            __VA_ARGS__;                                                                                               \
            for (int d_ = last_ - 1; d_ >= 0; d_--) {                                                                  \
                if (++idx_[d_] < (it)->shape[d_]) {                                                                    \
                    for (int k_ = 0; k_ < (it)->nops; k_++)                                                            \
                        OFF[k_] += (it)->stride[k_][d_];                                                               \
                    break;                                                                                             \
                }                                                                                                      \
                for (int k_ = 0; k_ < (it)->nops; k_++)                                                                \
                    OFF[k_] -= (it)->stride[k_][d_] * (idx_[d_] - 1);                                                  \
                idx_[d_] = 0;                                                                                          \
            }                                                                                                          \
        }                                                                                                              \
    } while (0)

/* dst += scale * src where src's shape broadcasts to dst's or dst's to
 * src's: sums src over the dimensions dst was broadcast along (the backward
 * of broadcasting), or adds src across the dimensions src is broadcast
 * along (the backward of a reduction). Same dtype. */
void ag__add_reduced(ag_tensor *dst, const ag_tensor *src, double scale);

/* Shape kernels (ops/shape.c): a reshape's backward (dinp[0] += dout,
 * element for element), and dst op= src with dims d0 and d1 swapped. */
int ag__view_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch);
void ag__transpose_into(ag_tensor *dst, const ag_tensor *src, int d0, int d1, bool add);

/* Matmul kernels (ops/linalg.c). C (m,n) += op(A) @ op(B) with op(X) = X or
 * X^T as ta/tb say; lda/ldb/ldc are the row lengths of the stored
 * matrices. The _ref kernels are the naive triple loop C += A @ B. */
void ag__gemm_float(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float *C, int64_t ldc);
void ag__gemm_double(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double *A, int64_t lda, const double *B,
                     int64_t ldb, double *C, int64_t ldc);
/* What runs the products: "BLIS 0.9.0, skx kernels (chosen by agrad)", ...;
 * and the BLIS context (cntx_t *) agrad passes to every call, NULL where
 * BLIS picks its kernels itself (for the GEMM benchmark). */
const char *ag__blas_name(void);
void *ag__blis_kernels(void);
void ag__gemm_ref_float(int64_t m, int64_t n, int64_t k, const float *A, const float *B, float *C);
void ag__gemm_ref_double(int64_t m, int64_t n, int64_t k, const double *A, const double *B, double *C);

static inline void ag__gemm_any(ag_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A,
                                int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc) {
    /* A size of 0 adds nothing: the kernels' loops over the other sizes
     * (2^62 of them, for an empty operand) never start. */
    if (m == 0 || n == 0 || k == 0)
        return;
    if (dt == AG_FLOAT32)
        ag__gemm_float(ta, tb, m, n, k, A, lda, B, ldb, C, ldc);
    else
        ag__gemm_double(ta, tb, m, n, k, A, lda, B, ldb, C, ldc);
}

/* (outer, n, inner) split of a tensor around dimension dim. Only a tensor
 * with elements has well-defined products (core/checked.h): an empty one
 * splits as (0, n, 0), so loops over it do nothing and no trailing product
 * of huge sizes is ever formed. */
static inline void ag__split(const ag_tensor *a, int dim, int64_t *outer, int64_t *n, int64_t *inner) {
    *n = a->ndim ? a->shape[dim] : 1;
    if (a->numel == 0) {
        *outer = 0;
        *inner = 0;
        return;
    }
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < dim; d++)
        *outer *= a->shape[d];
    for (int d = dim + 1; d < a->ndim; d++)
        *inner *= a->shape[d];
}

#endif /* AG_OPS_H */
