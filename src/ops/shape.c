/* Shape ops: reshape (a view sharing storage, as PyTorch's reshape of a
 * contiguous tensor), transpose (a copy: agrad tensors are contiguous) and
 * clone. */
#include "ops/grad_ops.h"
#include "ops/ops.h"

#include <inttypes.h>

/* ==== reshape ================================================================
 * out shares a's storage and version counter; da += g (same elements). */
int ag__view_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    ag_tensor *d = dinp[0];
    if (!d)
        return 0;
    /* the same elements in the same order: add flat */
    if (d->dtype == AG_FLOAT32) {
        float *dd = d->data;
        const float *g = dout->data;
#pragma omp simd
        for (int64_t i = 0; i < d->numel; i++)
            dd[i] += g[i];
    } else {
        double *dd = d->data;
        const double *g = dout->data;
#pragma omp simd
        for (int64_t i = 0; i < d->numel; i++)
            dd[i] += g[i];
    }
    return 0;
}

/* create_graph: da = g.reshape(a's shape), recorded. */
static int ag__view_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    if (!need[0])
        return 0;
    const ag_tensor *in = ag__edge_input(node, 0);
    return ag__graph_result(dinp[0] = ag_reshape(ctx, g, in->ndim, in->shape));
}

static const ag__node_kind ag__view_kind = {"ViewBackward0", ag__view_backward, ag__view_backward_graph};

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

ag_tensor *ag_reshape(ag_ctx *ctx, ag_tensor *a, int ndim, const int64_t *shape) {
    if (ag__check_unary(ctx, a, "ag_reshape"))
        return NULL;
    int64_t sh[AG_MAX_DIMS];
    if (ag__infer_shape(a, ndim, shape, sh))
        return NULL;
    ag_tensor *out = ag__ctx_alloc(ctx, sizeof *out);
    if (!out)
        return NULL;
    memset(out, 0, sizeof *out);
    out->ctx = ctx;
    out->storage = a->storage;
    out->data = a->data;
    out->dtype = a->dtype;
    out->ndim = ndim;
    out->numel = a->numel;
    memcpy(out->shape, sh, (size_t)ndim * sizeof(int64_t));
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins) && !ag__record(ctx, &ag__view_kind, out, 1, ins))
        return NULL;
    return out;
}

/* ==== transpose ==============================================================
 * out = a with dims d0 and d1 swapped (copied);  da += transpose(g, d0, d1). */

/* dst (shape of src with d0, d1 swapped) op= src; add selects += over =.
 * Swapping the last two dims is a batch of matrix transposes, done in
 * tiles so both sides stay in cache; other pairs walk src in order. */
#define AG__TRANSPOSE_TILE 32
#define AG__TRANSPOSE(T)                                                                                               \
    static void ag__transpose_2d_##T(T *dst, const T *src, int64_t batch, int64_t rows, int64_t cols, bool add) {      \
        for (int64_t b = 0; b < batch; b++) {                                                                          \
            const T *s = src + b * rows * cols;                                                                        \
            T *d = dst + b * rows * cols;                                                                              \
            for (int64_t r0 = 0; r0 < rows; r0 += AG__TRANSPOSE_TILE)                                                  \
                for (int64_t c0 = 0; c0 < cols; c0 += AG__TRANSPOSE_TILE) {                                            \
                    int64_t r1 = r0 + AG__TRANSPOSE_TILE < rows ? r0 + AG__TRANSPOSE_TILE : rows;                      \
                    int64_t c1 = c0 + AG__TRANSPOSE_TILE < cols ? c0 + AG__TRANSPOSE_TILE : cols;                      \
                    for (int64_t c = c0; c < c1; c++)                                                                  \
                        for (int64_t r = r0; r < r1; r++) {                                                            \
                            if (add)                                                                                   \
                                d[c * rows + r] += s[r * cols + c];                                                    \
                            else                                                                                       \
                                d[c * rows + r] = s[r * cols + c];                                                     \
                        }                                                                                              \
                }                                                                                                      \
        }                                                                                                              \
    }                                                                                                                  \
    static void ag__transpose_nd_##T(T *dst, const T *src, const ag_tensor *s, int d0, int d1, bool add) {             \
        int64_t dst_shape[AG_MAX_DIMS], dst_stride[AG_MAX_DIMS], walk_stride[AG_MAX_DIMS];                             \
        int nd = s->ndim;                                                                                              \
        for (int d = 0; d < nd; d++)                                                                                   \
            dst_shape[d] = s->shape[d == d0 ? d1 : d == d1 ? d0 : d];                                                  \
        int64_t st = 1;                                                                                                \
        for (int d = nd - 1; d >= 0; d--) {                                                                            \
            dst_stride[d] = st;                                                                                        \
            st *= dst_shape[d];                                                                                        \
        }                                                                                                              \
        /* walking src in order, dim d of src is dim (swap d) of dst */                                                \
        for (int d = 0; d < nd; d++)                                                                                   \
            walk_stride[d] = dst_stride[d == d0 ? d1 : d == d1 ? d0 : d];                                              \
        int64_t idx[AG_MAX_DIMS] = {0}, off = 0;                                                                       \
        for (int64_t i = 0; i < s->numel; i++) {                                                                       \
            if (add)                                                                                                   \
                dst[off] += src[i];                                                                                    \
            else                                                                                                       \
                dst[off] = src[i];                                                                                     \
            for (int d = nd - 1; d >= 0; d--) {                                                                        \
                if (++idx[d] < s->shape[d]) {                                                                          \
                    off += walk_stride[d];                                                                             \
                    break;                                                                                             \
                }                                                                                                      \
                off -= walk_stride[d] * (idx[d] - 1);                                                                  \
                idx[d] = 0;                                                                                            \
            }                                                                                                          \
        }                                                                                                              \
    }                                                                                                                  \
    static void ag__transpose_##T(T *dst, const T *src, const ag_tensor *s, int d0, int d1, bool add) {                \
        int nd = s->ndim, lo = d0 < d1 ? d0 : d1, hi = d0 < d1 ? d1 : d0;                                              \
        if (nd >= 2 && lo == nd - 2 && hi == nd - 1) { /* s has elements: rows * cols fits */                          \
            int64_t rows = s->shape[nd - 2], cols = s->shape[nd - 1];                                                  \
            int64_t batch = s->numel / (rows * cols);                                                                  \
            ag__transpose_2d_##T(dst, src, batch, rows, cols, add);                                                    \
        } else {                                                                                                       \
            ag__transpose_nd_##T(dst, src, s, d0, d1, add);                                                            \
        }                                                                                                              \
    }
AG__TRANSPOSE(float)
AG__TRANSPOSE(double)

/* An empty tensor has nothing to move, and its trailing sizes may not
 * multiply without overflow: the kernels only see tensors with elements. */
void ag__transpose_into(ag_tensor *dst, const ag_tensor *src, int d0, int d1, bool add) {
    if (src->numel == 0)
        return;
    if (src->dtype == AG_FLOAT32)
        ag__transpose_float(dst->data, src->data, src, d0, d1, add);
    else
        ag__transpose_double(dst->data, src->data, src, d0, d1, add);
}

static int ag__transpose_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    if (dinp[0])
        ag__transpose_into(dinp[0], dout, (int)node->iarg[0], (int)node->iarg[1], true);
    return 0;
}

/* create_graph: da = g.transpose(d0, d1), recorded. */
static int ag__transpose_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    return need[0] ? ag__graph_result(dinp[0] = ag_transpose(ctx, g, (int)node->iarg[0], (int)node->iarg[1])) : 0;
}

static const ag__node_kind ag__transpose_kind = {"TransposeBackward0", ag__transpose_backward,
                                                 ag__transpose_backward_graph};

ag_tensor *ag_transpose(ag_ctx *ctx, ag_tensor *a, int dim0, int dim1) {
    if (ag__check_unary(ctx, a, "ag_transpose"))
        return NULL;
    int d0 = 0, d1 = 0;
    if (ag__normalize_dim(dim0, a->ndim, &d0) || ag__normalize_dim(dim1, a->ndim, &d1))
        return NULL;
    int64_t shape[AG_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++)
        shape[d] = a->shape[d == d0 ? d1 : d == d1 ? d0 : d];
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, a->ndim, shape);
    if (!out)
        return NULL;
    if (a->ndim == 0)
        memcpy(out->data, a->data, (size_t)a->numel * ag__dtype_size(a->dtype));
    else
        ag__transpose_into(out, a, d0, d1, false);
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins)) {
        ag_node *node = ag__record(ctx, &ag__transpose_kind, out, 1, ins);
        if (!node)
            return NULL;
        node->iarg[0] = d0;
        node->iarg[1] = d1;
    }
    return out;
}

/* ==== clone ==================================================================
 * out = copy of a;  da += g. */
static int ag__clone_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    if (dinp[0])
        ag__add_reduced(dinp[0], dout, 1.0);
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

static const ag__node_kind ag__clone_kind = {"CloneBackward0", ag__clone_backward, ag__clone_backward_graph};

ag_tensor *ag_clone(ag_ctx *ctx, ag_tensor *a) {
    if (ag__check_unary(ctx, a, "ag_clone"))
        return NULL;
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, a->ndim, a->shape);
    if (!out)
        return NULL;
    memcpy(out->data, a->data, (size_t)a->numel * ag__dtype_size(a->dtype));
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins) && !ag__record(ctx, &ag__clone_kind, out, 1, ins))
        return NULL;
    return out;
}
