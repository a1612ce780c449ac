/* Private helpers shared by the op families (ops_*.c): argument checks,
 * broadcast strides and the strided walk over an output shape. */
#ifndef AG_OPS_H
#define AG_OPS_H

#include "internal.h"

/* NULL ctx / NULL tensors / dtype mismatch, reported with the op's name.
 * Returns 0 when the arguments may be used. */
int ag__check_unary(ag_ctx *ctx, const ag_tensor *a, const char *op);
int ag__check_binary(ag_ctx *ctx, const ag_tensor *a, const ag_tensor *b, const char *op);

/* A walk over an output shape with up to AG__ITER_OPS operands, each with
 * its own element strides (0 along broadcast dimensions). Dimensions of
 * size 1 are dropped and adjacent dimensions that are contiguous for every
 * operand are merged, so most walks are one flat loop. */
#define AG__ITER_OPS 4
typedef struct ag__iter {
    int ndim; /* >= 1 after ag__iter_init; the innermost is ndim - 1 */
    int nops;
    int64_t shape[AG_MAX_DIMS];
    int64_t stride[AG__ITER_OPS][AG_MAX_DIMS];
} ag__iter;

/* ops[k] is an operand whose shape broadcasts to (ndim, shape). */
void ag__iter_init(ag__iter *it, int ndim, const int64_t *shape, int nops, const ag_tensor *const *ops);

/* Calls body(off0, off1, ..., inner_n, inner strides) for each innermost
 * row: the macro form keeps the inner loop visible to the compiler. */
#define AG__ITER_ROWS(it, OFF, ...)                                                                \
    do {                                                                                           \
        int64_t idx_[AG_MAX_DIMS] = {0};                                                           \
        int64_t OFF[AG__ITER_OPS] = {0};                                                           \
        const int last_ = (it)->ndim - 1;                                                          \
        int64_t rows_ = 1;                                                                         \
        for (int d_ = 0; d_ < last_; d_++)                                                         \
            rows_ *= (it)->shape[d_];                                                              \
        for (int64_t r_ = 0; r_ < rows_; r_++) {                                                   \
            __VA_ARGS__;                                                                           \
            for (int d_ = last_ - 1; d_ >= 0; d_--) {                                              \
                if (++idx_[d_] < (it)->shape[d_]) {                                                \
                    for (int k_ = 0; k_ < (it)->nops; k_++)                                        \
                        OFF[k_] += (it)->stride[k_][d_];                                           \
                    break;                                                                         \
                }                                                                                  \
                for (int k_ = 0; k_ < (it)->nops; k_++)                                            \
                    OFF[k_] -= (it)->stride[k_][d_] * (idx_[d_] - 1);                              \
                idx_[d_] = 0;                                                                      \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* dst += src where src's shape broadcasts to dst's or dst's to src's:
 * sums src over the dimensions dst broadcasts along (the backward of
 * broadcasting), or adds src across them. Same dtype. */
void ag__add_reduced(ag_tensor *dst, const ag_tensor *src, double scale);

#endif /* AG_OPS_H */
