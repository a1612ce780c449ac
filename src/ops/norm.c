/* Norms: the p-norm of all elements (torch.norm(a, p), NormBackward1).
 * Kernels in ops/norm_kernels.inc. */
#include "ops/ops.h"

#include <math.h>

#define AG__KERNELS "ops/norm_kernels.inc"
#include "ops/kernel_template.h"

typedef struct {
    double p;
} ag__norm_attr;
static ag__norm_attr *ag__norm_attr_of(ag_node *node) { return ag__node_attr(node); }

/* out = ||a||_p:  da (=|+=) the subgradient times g (norm_kernels.inc) */
static int ag__norm_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                             ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *d = dinp[0], *a, *r;
    if (!d)
        return 0;
    if (!(a = ag__saved_get(node, 0)) || !(r = ag__saved_get(node, 1)))
        return ag_last_status();
    double p = ag__norm_attr_of(node)->p;
    if (d->dtype == AG_FLOAT32)
        ag__norm_bwd_f32(d->data, *(const float *)dout->data, a->data, a->numel, *(const float *)r->data, p, !fresh[0]);
    else
        ag__norm_bwd_f64(d->data, *(const double *)dout->data, a->data, a->numel, *(const double *)r->data, p,
                         !fresh[0]);
    return 0;
}

static const ag__node_kind ag__norm_kind = {
    .name = "NormBackward1", .backward = ag__norm_backward, .attr_size = sizeof(ag__norm_attr), .writes_fresh = true};

ag_tensor *ag_norm(ag_ctx *ctx, ag_tensor *a, double p) {
    ag_tensor *in[1] = {a};
    ag__op op;
    if (ag__op_begin(&op, "ag_norm", ctx, 1, in))
        return NULL;
    if (!(p > 0)) /* also nan */
        return ag__error_null(AG_EUNSUPPORTED, "ag_norm: p must be > 0 (or INFINITY), got %g", p);
    ag_tensor *out = ag__op_output(&op, 0, NULL);
    if (!out)
        return NULL;
    if (a->dtype == AG_FLOAT32)
        *(float *)out->data = (float)ag__norm_fwd_f32(a->data, a->numel, p);
    else
        *(double *)out->data = ag__norm_fwd_f64(a->data, a->numel, p);
    ag_node *node = ag__op_record(&op, &ag__norm_kind);
    if (node) {
        ag__norm_attr_of(node)->p = p;
        ag__save(node, 0, a, false);
        ag__save(node, 1, out, true);
    }
    return ag__op_end(&op);
}

/* ==== dropout =====================================================================
 * out = a * mask, mask = bernoulli(1 - p) / (1 - p) from this thread's
 * generator (ag_manual_seed), recorded as PyTorch 1.13's CPU dropout
 * records it: MulBackward0 with the mask as an operand that needs no
 * gradient. */

ag_tensor *ag_dropout(ag_ctx *ctx, ag_tensor *a, double p, bool training) {
    if (!a)
        return ag__null_arg("ag_dropout");
    if (!ctx)
        return ag__error_null(AG_EINVAL, "ag_dropout: context is NULL");
    if (!(p >= 0 && p <= 1))
        return ag__error_null(AG_EINVAL, "dropout probability has to be between 0 and 1, but got %g", p);
    if (!training || p == 0 || a->numel == 0)
        return a; /* as PyTorch: the input itself */
    ag__ctx_pos pos;
    ag__ctx_mark(ctx, &pos);
    ag_tensor *mask = ag_rand(ctx, a->dtype, a->ndim, a->shape);
    for (int64_t i = 0; mask && i < mask->numel; i++)
        ag__store(mask, i, ag__load(mask, i) < 1 - p ? 1 / (1 - p) : 0);
    ag_tensor *out = mask ? ag_mul(ctx, a, mask) : NULL;
    if (!out)
        ag__ctx_rollback(ctx, &pos);
    return out;
}
