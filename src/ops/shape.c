/* Shape ops: reshape (a view where the layout allows, as PyTorch's),
 * transpose (a view), clone and contiguous (copies that read any layout).
 * Kernels in ops/shape_kernels.inc. */
#include "ops/grad_ops.h"
#include "ops/ops.h"

#include <inttypes.h>

#define AG__TRANSPOSE_TILE 32
#define AG__KERNELS "ops/shape_kernels.inc"
#include "ops/kernel_template.h"

/* ==== reshape ================================================================
 * out (shape) shares a's storage and version counter: a's elements in
 * a's order. */

/* out = a viewed with another shape:  da (=|+=) dout, element for element
 * (where the runner did not hand dout itself on as da) */
int ag__view_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh, ag_ctx *scratch) {
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    if (dinp[0])
        ag__copy_flat(dinp[0], dout, !fresh[0]);
    return 0;
}

/* create_graph: da = g.reshape(a's shape), recorded. */
static int ag__view_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    if (!need[0])
        return 0;
    const ag_tensor *in = ag__edge_input(node, 0);
    return ag__graph_result(dinp[0] = ag__reshape_alias(ctx, g, in->ndim, in->shape));
}

static const ag__node_kind ag__view_kind = {.name = "ViewBackward0",
                                            .backward = ag__view_backward,
                                            .backward_graph = ag__view_backward_graph,
                                            .writes_fresh = true,
                                            .passes_grad = 1};

static int ag__infer_shape(const ag_tensor *a, int ndim, const int64_t *shape, int64_t *out) {
    if (ndim < 0 || ndim > AG_MAX_DIMS)
        return ag__error(AG_EINVAL, "ndim %d is out of range (0 to %d)", ndim, AG_MAX_DIMS);
    if (ndim > 0 && !shape)
        return ag__error(AG_EINVAL, "ag_reshape: shape is NULL");
    int infer = -1;
    /* the product of the given sizes: 0 when one of them is, else checked
     * (a product that overflows cannot be the input's size) */
    int64_t known = 1;
    bool zero = false, overflow = false;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == -1) {
            if (infer >= 0)
                return ag__error(AG_EINVAL, "only one dimension can be inferred");
            infer = d;
        } else if (shape[d] < 0) {
            return ag__error(AG_EINVAL, "invalid shape dimension %" PRId64, shape[d]);
        } else if (shape[d] == 0) {
            zero = true;
        } else if (!overflow && !ag__mul_ok(known, shape[d], &known)) {
            overflow = true;
        }
        out[d] = shape[d];
    }
    if (zero) {
        known = 0;
        overflow = false;
    }
    char s[AG_MAX_DIMS * 22 + 3];
    if (infer >= 0 && known == 0 && a->numel == 0) {
        /* as in PyTorch's infer_size: the -1 could be anything */
        ag__shape_str(s, sizeof s, ndim, shape);
        return ag__error(AG_ESHAPE,
                         "cannot reshape tensor of 0 elements into shape %s because the unspecified dimension "
                         "size -1 can be any value and is ambiguous",
                         s);
    }
    if (!overflow && infer >= 0 && known > 0 && a->numel % known == 0) {
        out[infer] = a->numel / known;
    } else if (overflow || infer >= 0 || known != a->numel) {
        ag__shape_str(s, sizeof s, ndim, shape);
        return ag__error(AG_ESHAPE, "shape '%s' is invalid for input of size %" PRId64, s, a->numel);
    }
    /* an empty result must still have sizes whose leading products fit */
    int64_t numel;
    if (!ag__numel_ok(ndim, out, &numel))
        return ag__error(AG_ENOMEM, "numel: integer multiplication overflow");
    return 0;
}

/* The strides that view a's elements with shape (ndim, shape), where a's
 * layout allows it: PyTorch's computeStride. false when it does not (then
 * reshape copies). */
static bool ag__view_strides(const ag_tensor *a, int ndim, const int64_t *shape, int64_t *stride) {
    if (a->contiguous || a->numel == 0) {
        ag__contiguous_strides(ndim, shape, stride);
        return true;
    }
    /* a has elements and is not contiguous, so a->ndim >= 1; walk a's
     * dimensions from the last in chunks laid out contiguously, matching
     * each chunk with dimensions of the new shape */
    int view_d = ndim - 1;
    int64_t chunk_stride = a->stride[a->ndim - 1], tensor_numel = 1, view_numel = 1;
    for (int d = a->ndim - 1; d >= 0; d--) {
        tensor_numel *= a->shape[d];
        if (d > 0 && (a->shape[d - 1] == 1 || a->stride[d - 1] == tensor_numel * chunk_stride))
            continue;
        while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
            stride[view_d] = view_numel * chunk_stride;
            view_numel *= shape[view_d];
            view_d--;
        }
        if (view_numel != tensor_numel)
            return false;
        if (d > 0) {
            chunk_stride = a->stride[d - 1];
            tensor_numel = 1;
            view_numel = 1;
        }
    }
    return view_d == -1;
}

static const ag__node_kind ag__unsafe_view_kind = {
    .name = "UnsafeViewBackward0", .backward = ag__view_backward, .writes_fresh = true, .passes_grad = 1};

ag_tensor *ag_reshape(ag_ctx *ctx, ag_tensor *a, int ndim, const int64_t *shape) {
    ag_tensor *in[1] = {a};
    int64_t sh[AG_MAX_DIMS], stride[AG_MAX_DIMS];
    ag__op op;
    if (ag__op_begin(&op, "ag_reshape", ctx, 1, in) || ag__infer_shape(a, ndim, shape, sh))
        return NULL;
    if (ag__view_strides(a, ndim, sh, stride)) {
        if (!ag__op_view_strided(&op, a, ndim, sh, stride, a->offset))
            return NULL;
        ag__op_record(&op, &ag__view_kind);
        return ag__op_end(&op);
    }
    /* as PyTorch: _unsafe_view(clone(a)), a copy with a node of each */
    ag_tensor *c = ag_clone(ctx, a);
    if (!c || !ag__op_view(&op, c, ndim, sh))
        return ag__op_end(&op);
    ag_tensor *edge[1] = {c};
    ag__op_record_edges(&op, &ag__unsafe_view_kind, 1, edge, 0);
    return ag__op_end(&op);
}

/* ==== transpose ==============================================================
 * out = a with dims d0 and d1 swapped (copied). */

/* An empty tensor has nothing to move, and its trailing sizes may not
 * multiply without overflow: the kernels only see tensors with elements. */
void ag__transpose_into(ag_tensor *dst, const ag_tensor *src, int d0, int d1, bool add) {
    if (src->numel == 0)
        return;
    if (src->dtype == AG_FLOAT32)
        ag__transpose_f32(dst->data, src->data, src, d0, d1, add);
    else
        ag__transpose_f64(dst->data, src->data, src, d0, d1, add);
}

typedef struct {
    int d0, d1; /* the swapped dims, normalised */
} ag__transpose_attr;
static ag__transpose_attr *ag__transpose_attr_of(ag_node *node) { return ag__node_attr(node); }

/* out = transpose(a, d0, d1):  da (=|+=) transpose(dout, d0, d1) */
static int ag__transpose_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                  ag_ctx *scratch) {
    AG__UNUSED(scratch);
    const ag__transpose_attr *at = ag__transpose_attr_of(node);
    if (dinp[0] && dout->ndim == 0)
        ag__copy_flat(dinp[0], dout, !fresh[0]);
    else if (dinp[0])
        ag__transpose_into(dinp[0], dout, at->d0, at->d1, !fresh[0]);
    return 0;
}

/* create_graph: da = g.transpose(d0, d1), recorded. */
static int ag__transpose_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    const ag__transpose_attr *at = ag__transpose_attr_of(node);
    return need[0] ? ag__graph_result(dinp[0] = ag_transpose(ctx, g, at->d0, at->d1)) : 0;
}

static const ag__node_kind ag__transpose_kind = {.name = "TransposeBackward0",
                                                 .backward = ag__transpose_backward,
                                                 .backward_graph = ag__transpose_backward_graph,
                                                 .attr_size = sizeof(ag__transpose_attr),
                                                 .writes_fresh = true};

ag_tensor *ag_transpose(ag_ctx *ctx, ag_tensor *a, int dim0, int dim1) {
    ag_tensor *in[1] = {a};
    int d0 = 0, d1 = 0;
    ag__op op;
    if (ag__op_begin(&op, "ag_transpose", ctx, 1, in) || ag__normalize_dim(dim0, a->ndim, &d0) ||
        ag__normalize_dim(dim1, a->ndim, &d1))
        return NULL;
    int64_t shape[AG_MAX_DIMS], stride[AG_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) {
        int from = d == d0 ? d1 : d == d1 ? d0 : d;
        shape[d] = a->shape[from];
        stride[d] = a->stride[from];
    }
    if (!ag__op_view_strided(&op, a, a->ndim, shape, stride, a->offset))
        return NULL;
    ag_node *node = ag__op_record(&op, &ag__transpose_kind);
    if (node)
        *ag__transpose_attr_of(node) = (ag__transpose_attr){d0, d1};
    return ag__op_end(&op);
}

/* ==== clone, contiguous ========================================================
 * out = a copy of a, contiguous whatever a's layout. */

/* out = a:  da (=|+=) dout (where the runner did not hand dout itself on) */
static int ag__clone_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                              ag_ctx *scratch) {
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    if (dinp[0])
        ag__copy_flat(dinp[0], dout, !fresh[0]);
    return 0;
}

/* create_graph: da = g. */
static int ag__clone_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    AG__UNUSED(node);
    AG__UNUSED(ctx);
    if (need[0])
        dinp[0] = g;
    return 0;
}

static const ag__node_kind ag__clone_kind = {.name = "CloneBackward0",
                                             .backward = ag__clone_backward,
                                             .backward_graph = ag__clone_backward_graph,
                                             .writes_fresh = true,
                                             .passes_grad = 1};

ag_tensor *ag_clone(ag_ctx *ctx, ag_tensor *a) {
    ag_tensor *in[1] = {a};
    ag__op op;
    if (ag__op_begin(&op, "ag_clone", ctx, 1, in))
        return NULL;
    op.strided = true; /* the copy reads any layout */
    ag_tensor *out = ag__op_output(&op, a->ndim, a->shape);
    if (!out)
        return NULL;
    ag__gather(a, out->data, a->dtype);
    ag__op_record(&op, &ag__clone_kind);
    return ag__op_end(&op);
}

ag_tensor *ag_contiguous(ag_ctx *ctx, ag_tensor *a) {
    if (a && ctx && a->contiguous) /* a itself, as in PyTorch */
        return ag__check_alive(a, "ag_contiguous") ? NULL : a;
    return ag_clone(ctx, a);
}
