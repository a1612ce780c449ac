/* matmul with a 1-D operand, as PyTorch 1.13 dispatches it: vector @
 * vector is dot (DotBackward0), matrix @ vector is mv (MvBackward0), and
 * vector @ matrix is the vector unsqueezed to a row, the 2-D product and
 * the result squeezed (SqueezeBackward3(MmBackward0(UnsqueezeBackward0))).
 * The products go through ag__gemm (ops/linalg.c). */
#include "ops/ops.h"

#include <inttypes.h>

/* ==== dot ==========================================================================
 * out () = a (k) . b (k) */

/* out = a . b:  da (=|+=) g b;  db (=|+=) g a */
static int ag__dot_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                            ag_ctx *scratch) {
    AG__UNUSED(scratch);
    for (int i = 0; i < 2; i++) {
        ag_tensor *other;
        if (!dinp[i])
            continue;
        if (!(other = ag__saved_get(node, 1 - i)))
            return ag_last_status();
        /* d (1,k) = g (1,1) @ other^T (1,k) */
        int64_t k = other->numel;
        ag__gemm(dout->dtype, false, true, 1, k, 1, dout->data, 1, other->data, 1, dinp[i]->data, k, !fresh[i]);
    }
    return 0;
}

static const ag__node_kind ag__dot_kind = {.name = "DotBackward0", .backward = ag__dot_backward, .writes_fresh = true};

/* ==== mv ===========================================================================
 * out (m) = a (m,k) @ v (k) */

/* out = a @ v:  da (m,k) (=|+=) g (m,1) @ v^T (1,k);  dv (k) (=|+=) a^T (k,m) @ g (m) */
static int ag__mv_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *a = dinp[1] ? ag__saved_get(node, 0) : NULL, *v = dinp[0] ? ag__saved_get(node, 1) : NULL;
    if ((dinp[1] && !a) || (dinp[0] && !v))
        return ag_last_status();
    const ag_tensor *d = dinp[0] ? dinp[0] : dinp[1];
    if (!d)
        return 0;
    int64_t m = dout->numel, k = dinp[0] ? dinp[0]->shape[1] : dinp[1]->numel;
    if (dinp[0])
        ag__gemm(dout->dtype, false, true, m, k, 1, dout->data, 1, v->data, 1, dinp[0]->data, k, !fresh[0]);
    if (dinp[1])
        ag__gemm(dout->dtype, true, false, k, 1, m, a->data, k, dout->data, 1, dinp[1]->data, 1, !fresh[1]);
    return 0;
}

static const ag__node_kind ag__mv_kind = {.name = "MvBackward0", .backward = ag__mv_backward, .writes_fresh = true};

/* The shapes and dtypes of a 1-D product, with PyTorch's messages. */
static int ag__matvec_check(const ag_tensor *a, const ag_tensor *b) {
    if (a->ndim == 0 || b->ndim == 0)
        return ag__error(AG_ESHAPE, "both arguments to matmul need to be at least 1D, but they are %dD and %dD",
                         a->ndim, b->ndim);
    if (a->ndim > 2 || b->ndim > 2)
        return ag__error(AG_EUNSUPPORTED, "ag_matmul: a 1-D operand with a %d-D one (use ag_bmm)",
                         a->ndim > b->ndim ? a->ndim : b->ndim);
    if (a->ndim == 1 && b->ndim == 1 && a->dtype != b->dtype)
        return ag__error(AG_EDTYPE, "dot : expected both vectors to have same dtype, but found %s and %s",
                         ag__dtype_scalar_name(a->dtype), ag__dtype_scalar_name(b->dtype));
    if (a->dtype != b->dtype)
        return ag__error(AG_EDTYPE, "expected scalar type %s but found %s", ag__dtype_scalar_name(a->dtype),
                         ag__dtype_scalar_name(b->dtype));
    if (a->ndim == 1 && b->ndim == 1 && a->shape[0] != b->shape[0])
        return ag__error(AG_ESHAPE,
                         "inconsistent tensor size, expected tensor [%" PRId64 "] and src [%" PRId64
                         "] to have the same number of elements, but got %" PRId64 " and %" PRId64
                         " elements respectively",
                         a->shape[0], b->shape[0], a->shape[0], b->shape[0]);
    if (a->ndim == 2 && a->shape[1] != b->shape[0])
        return ag__error(AG_ESHAPE, "size mismatch, got %" PRId64 ", %" PRId64 "x%" PRId64 ",%" PRId64, a->shape[0],
                         a->shape[0], a->shape[1], b->shape[0]);
    return 0;
}

/* dot (a 1-D) or mv (a 2-D) of a and the vector b. */
static ag_tensor *ag__dot_or_mv(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    ag_tensor *in[2] = {a, b};
    ag__op op;
    if (ag__op_begin(&op, "ag_matmul", ctx, 2, in))
        return NULL;
    bool dot = a->ndim == 1;
    int64_t m = dot ? 1 : a->shape[0], k = b->shape[0];
    ag_tensor *out = ag__op_output(&op, dot ? 0 : 1, &m);
    if (!out)
        return NULL;
    /* out (m,1) = a (m,k) @ b (k,1) */
    ag__gemm(a->dtype, false, false, m, 1, k, a->data, k, b->data, 1, out->data, 1, false);
    ag_node *node = ag__op_record(&op, dot ? &ag__dot_kind : &ag__mv_kind);
    if (node) {
        if (b->requires_grad) /* each factor saved only for the other's gradient */
            ag__save(node, 0, a, false);
        if (a->requires_grad)
            ag__save(node, 1, b, false);
    }
    return ag__op_end(&op);
}

/* ==== vector @ matrix ==============================================================
 * out (n) = squeeze(unsqueeze(a, 0) (1,k) @ b (k,n), 0) */

static const ag__node_kind ag__unsqueeze_kind = {
    .name = "UnsqueezeBackward0", .backward = ag__view_backward, .writes_fresh = true, .passes_grad = 1};
static const ag__node_kind ag__squeeze_kind = {
    .name = "SqueezeBackward3", .backward = ag__view_backward, .writes_fresh = true, .passes_grad = 1};

/* A view of x with another shape, recorded as kind. */
static ag_tensor *ag__view_as(ag_ctx *ctx, ag_tensor *x, int ndim, const int64_t *shape, const ag__node_kind *kind) {
    ag_tensor *in[1] = {x};
    ag__op op;
    if (ag__op_begin(&op, "ag_matmul", ctx, 1, in))
        return NULL;
    if (ag__op_view(&op, x, ndim, shape))
        ag__op_record(&op, kind);
    return ag__op_end(&op);
}

ag_tensor *ag__matmul_1d(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    if (ag__matvec_check(a, b))
        return NULL;
    if (b->ndim == 1)
        return ag__dot_or_mv(ctx, a, b);
    if (a->shape[0] != b->shape[0])
        return ag__error_null(AG_ESHAPE,
                              "mat1 and mat2 shapes cannot be multiplied (1x%" PRId64 " and %" PRId64 "x%" PRId64 ")",
                              a->shape[0], b->shape[0], b->shape[1]);
    ag__ctx_pos pos;
    ag__ctx_mark(ctx, &pos);
    ag_tensor *row = ag__view_as(ctx, a, 2, (int64_t[]){1, a->shape[0]}, &ag__unsqueeze_kind);
    ag_tensor *prod = row ? ag_matmul(ctx, row, b) : NULL;
    ag_tensor *out = prod ? ag__view_as(ctx, prod, 1, &b->shape[1], &ag__squeeze_kind) : NULL;
    if (!out)
        ag__ctx_rollback(ctx, &pos);
    return out;
}
