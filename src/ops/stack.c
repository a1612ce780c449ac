/* torch.stack: n tensors of one shape joined along a new dimension. The
 * inputs promote to one dtype as the binary ops do. Gradient kernel in
 * ops/stack_kernels.inc. */
#include "ops/ops.h"

#include <inttypes.h>

#define AG__KERNELS "ops/stack_kernels.inc"
#include "ops/kernel_template.h"

/* out (outer, n, inner) with out[o, t, i] = input_t (outer, inner)[o, i],
 * the new dimension dim of out at n. */

typedef struct {
    int dim; /* of out, normalised */
} ag__stack_attr;
static ag__stack_attr *ag__stack_attr_of(ag_node *node) { return ag__node_attr(node); }

/* out[o, t, i] = input_t[o, i]:  d_t (=|+=) g[o, t, :] */
static int ag__stack_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                              ag_ctx *scratch) {
    AG__UNUSED(scratch);
    int64_t outer, n, inner;
    ag__split(dout, ag__stack_attr_of(node)->dim, &outer, &n, &inner);
    for (int t = 0; t < node->num_next; t++) {
        ag_tensor *d = dinp[t];
        if (!d || d->numel == 0)
            continue;
        if (d->dtype == AG_FLOAT32)
            ag__stack_get_f32(d->data, dout->data, outer, n, t, inner, !fresh[t]);
        else
            ag__stack_get_f64(d->data, dout->data, outer, n, t, inner, !fresh[t]);
    }
    return 0;
}

static const ag__node_kind ag__stack_kind = {.name = "StackBackward0",
                                             .backward = ag__stack_backward,
                                             .attr_size = sizeof(ag__stack_attr),
                                             .writes_fresh = true};

/* Every tensor has the first one's shape; out's shape has n inserted at
 * dim (normalised into *d, over ndim + 1 dimensions). */
static int ag__stack_check(ag_tensor *const *ts, int n, int dim, int *d, int64_t *shape) {
    const ag_tensor *first = ts[0];
    if (first->ndim >= AG_MAX_DIMS)
        return ag__error(AG_EINVAL, "ag_stack: the result would have more than %d dimensions", AG_MAX_DIMS);
    if (ag__normalize_dim(dim, first->ndim + 1, d))
        return AG_EINVAL;
    for (int t = 1; t < n; t++)
        if (!ag__same_shape(ts[t], first)) {
            char s0[128], st[128];
            ag__shape_str(s0, sizeof s0, first->ndim, first->shape);
            ag__shape_str(st, sizeof st, ts[t]->ndim, ts[t]->shape);
            return ag__error(AG_ESHAPE,
                             "stack expects each tensor to be equal size, but got %s at entry 0 and %s at entry %d", s0,
                             st, t);
        }
    for (int k = 0, j = 0; k <= first->ndim; k++)
        shape[k] = k == *d ? n : first->shape[j++];
    return 0;
}

/* out[o, t, :] = input_t[o, :], as bytes */
static void ag__stack_fwd(ag_tensor *out, ag_tensor *const *ts, int n, int d) {
    int64_t outer, total, inner;
    ag__split(out, d, &outer, &total, &inner);
    size_t row = (size_t)inner * ag__dtype_size(out->dtype);
    for (int64_t o = 0; o < outer; o++)
        for (int t = 0; t < n; t++)
            memcpy((char *)out->data + (size_t)(o * n + t) * row, (const char *)ts[t]->data + (size_t)o * row, row);
}

ag_tensor *ag_stack(ag_ctx *ctx, ag_tensor *const *ts, int n, int dim) {
    if (!ts || n <= 0)
        return ag__error_null(AG_EINVAL, "stack expects a non-empty TensorList");
    ag__op op;
    int d;
    int64_t shape[AG_MAX_DIMS];
    if (ag__op_begin_mixed(&op, "ag_stack", ctx, n, ts) || ag__stack_check(ts, n, dim, &d, shape) ||
        ag__op_promote(&op))
        return NULL;
    ts = op.in;
    ag_tensor *out = ag__op_output(&op, ts[0]->ndim + 1, shape);
    if (!out)
        return NULL;
    if (out->numel > 0)
        ag__stack_fwd(out, ts, n, d);
    ag_node *node = ag__op_record(&op, &ag__stack_kind);
    if (node)
        ag__stack_attr_of(node)->dim = d;
    return ag__op_end(&op);
}
