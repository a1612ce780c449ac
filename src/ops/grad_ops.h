/* Ops that PyTorch's derivative formulas call and agrad's public API has
 * no name for (ops/grad_ops.c): the backward_graph functions of the op
 * files build their gradients with these and the public ops, so a
 * recorded backward carries PyTorch's node names (TanhBackwardBackward0,
 * MulBackward1, TBackward0, ...). Each records its node when grad mode is
 * on and an input requires grad, and has a backward and a backward_graph
 * of its own, so gradients of any order go through it. NULL on error, a
 * NULL input keeps the first error. */
#ifndef AG_GRAD_OPS_H
#define AG_GRAD_OPS_H

#include "core/internal.h"

/* a * s, C++'s Tensor * Scalar (mul.Scalar): MulBackward1, one edge. */
ag_tensor *ag__mul_scalar1(ag_ctx *ctx, ag_tensor *a, double s);
/* a + s (add.Scalar): AddBackward1, one edge. */
ag_tensor *ag__add_scalar1(ag_ctx *ctx, ag_tensor *a, double s);
/* a / s (div.Scalar): DivBackward1, one edge. */
ag_tensor *ag__div_scalar1(ag_ctx *ctx, ag_tensor *a, double s);
/* a - s (sub.Scalar): SubBackward1, one edge. */
ag_tensor *ag__sub_scalar1(ag_ctx *ctx, ag_tensor *a, double s);
/* a.unsqueeze(dim) (UnsqueezeBackward0) and a.squeeze(dim) of a size-1
 * dimension (SqueezeBackward1): views of a's storage. */
ag_tensor *ag__unsqueeze(ag_ctx *ctx, ag_tensor *a, int dim);
ag_tensor *ag__squeeze(ag_ctx *ctx, ag_tensor *a, int dim);
/* a.reshape(shape) as PyTorch's backward formulas record it for a
 * contiguous tensor (_reshape_alias): ReshapeAliasBackward0, a view. */
ag_tensor *ag__reshape_alias(ag_ctx *ctx, ag_tensor *a, int ndim, const int64_t *shape);
/* at::where with a zero on one side: mask (no history; 0 or 1 in x's
 * dtype, its shape broadcasting to x's) picks x where it is nonzero when
 * keep_true, else where it is zero; 0 elsewhere. WhereBackward0, whose
 * edges are PyTorch's (self, other): (x, none) when keep_true, else
 * (none, x). */
ag_tensor *ag__where0(ag_ctx *ctx, ag_tensor *mask, ag_tensor *x, bool keep_true);
/* zeros(mask's shape).masked_fill_(mask, v), v a one-element tensor:
 * MaskedFillBackward1, edges (none, v). */
ag_tensor *ag__masked_fill1(ag_ctx *ctx, ag_tensor *mask, ag_tensor *v);
/* threshold_backward(g, y, 0) = g where y > 0, else 0:
 * ThresholdBackwardBackward0. */
ag_tensor *ag__threshold_grad(ag_ctx *ctx, ag_tensor *g, ag_tensor *y);
/* A tensor without history of f(a, b) for every element of a and b
 * broadcast together (masks, weights), in a's dtype; b may be NULL (then f
 * sees 0). */
ag_tensor *ag__mask2(ag_ctx *ctx, const ag_tensor *a, const ag_tensor *b, double (*f)(double, double));
/* zeros(size along dim).index_add_(dim, index, g): g's slices added at
 * the rows index[0..k) name. IndexAddBackward0 (index_select's gradient);
 * with embedding, EmbeddingDenseBackwardBackward0 (dim 0). */
ag_tensor *ag__index_add(ag_ctx *ctx, ag_tensor *g, int dim, const int64_t *index, int64_t k, int64_t size,
                         bool embedding);
/* slice_backward: zeros of shape (ndim, shape) with g at [start, start +
 * g's size) along dim: SliceBackwardBackward0. */
ag_tensor *ag__slice_grad(ag_ctx *ctx, ag_tensor *g, int ndim, const int64_t *shape, int dim, int64_t start);
/* a.t() of a 2-D (or smaller) tensor, as a copy: TBackward0. */
ag_tensor *ag__t(ag_ctx *ctx, ag_tensor *a);
/* a.t() where a is a header whose data is not laid out as its shape says
 * (ag_linear's w^T, sharing w's storage): the result holds `value` (a's
 * true transpose, w), its node is a's TBackward0. */
ag_tensor *ag__t_of(ag_ctx *ctx, ag_tensor *a, const ag_tensor *value);
/* tanh_backward(g, y) = g (1 - y^2): TanhBackwardBackward0. */
ag_tensor *ag__tanh_grad(ag_ctx *ctx, ag_tensor *g, ag_tensor *y);
/* sigmoid_backward(g, y) = g (1 - y) y: SigmoidBackwardBackward0. */
ag_tensor *ag__sigmoid_grad(ag_ctx *ctx, ag_tensor *g, ag_tensor *y);
/* a summed over `dims` (a bit per dimension), keeping them as size 1:
 * SumBackward1 (sum.dim_IntList with keepdim). */
ag_tensor *ag__sum_keepdim(ag_ctx *ctx, ag_tensor *a, uint32_t dims);
/* at::sum_to: g summed down to shape (which broadcasts to g's): the sum
 * over the leading and stretched dimensions (SumBackward1, or SumBackward0
 * to a 0-dim shape), then a view without the leading ones
 * (ViewBackward0). g itself when the shapes are equal. */
ag_tensor *ag__sum_to(ag_ctx *ctx, ag_tensor *g, int ndim, const int64_t *shape);
/* The copy AccumulateGrad makes of a leaf's first gradient under
 * create_graph: CopyBackwards, whose edges are (none, g). */
ag_tensor *ag__copy_grad(ag_ctx *ctx, ag_tensor *g);
/* a cast to dtype (a copy): ToCopyBackward0. */
ag_tensor *ag__cast_copy(ag_ctx *ctx, ag_tensor *a, ag_dtype dtype);

/* A backward_graph's result t: 0, or the error of the op that made it. */
static inline int ag__graph_result(const ag_tensor *t) {
    return t ? 0 : (ag_last_status() ? ag_last_status() : AG_ENOMEM);
}
/* The tensor behind a node's edge i (its producer's output): the shape and
 * dtype input i's gradient has. */
static inline const ag_tensor *ag__edge_input(const ag_node *node, int i) { return node->next[i]->out; }

/* ref's shape broadcasts to g's (PyTorch's is_expandable_to). */
bool ag__expandable(const ag_tensor *ref, const ag_tensor *g);
/* PyTorch's validate_outputs error for gradient i of node `name`. */
int ag__invalid_gradient(const char *name, int i, const ag_tensor *got, const ag_tensor *ref);

#endif /* AG_GRAD_OPS_H */
