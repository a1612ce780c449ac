/* Neural-network ops: abs, clamp, maximum, softmax and log_softmax, the
 * nll / cross-entropy and mse losses, and linear (x @ w^T + b). Kernels,
 * forward next to backward, in ops/nn_kernels.inc; here the walks, the
 * checks and the nodes. */
#include "ops/grad_ops.h"
#include "ops/ops.h"

#include <inttypes.h>
#include <math.h>

#define AG__KERNELS "ops/nn_kernels.inc"
#include "ops/kernel_template.h"

/* ==== abs, clamp ===============================================================
 * out (shape of x) = |x|, or x clamped to [lo, hi] (nan: no bound). */

typedef struct {
    double lo, hi; /* nan: no bound */
} ag__clamp_attr;
static ag__clamp_attr *ag__clamp_attr_of(ag_node *node) { return ag__node_attr(node); }

/* out = |x|:  dx (=|+=) dout * sign(x) */
static int ag__abs_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                            ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *x = ag__saved_get(node, 0), *d = dinp[0];
    if (!x)
        return ag_last_status();
    if (d && d->dtype == AG_FLOAT32)
        ag__abs_bwd_f32(d->data, dout->data, x->data, x->numel, !fresh[0]);
    else if (d)
        ag__abs_bwd_f64(d->data, dout->data, x->data, x->numel, !fresh[0]);
    return 0;
}

/* out = clamp(x, lo, hi):  dx (=|+=) dout where lo <= x <= hi, else 0 */
static int ag__clamp_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                              ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *x = ag__saved_get(node, 0), *d = dinp[0];
    const ag__clamp_attr *at = ag__clamp_attr_of(node);
    if (!x)
        return ag_last_status();
    if (d && d->dtype == AG_FLOAT32)
        ag__clamp_bwd_f32(d->data, dout->data, x->data, x->numel, at->lo, at->hi, !fresh[0]);
    else if (d)
        ag__clamp_bwd_f64(d->data, dout->data, x->data, x->numel, at->lo, at->hi, !fresh[0]);
    return 0;
}

/* create_graph (PyTorch's formulas):
 *   abs:    dx = g * sgn(x)                          MulBackward0
 *   clamp:  dx = where(lo <= x <= hi, g, 0)          WhereBackward0
 * sgn(x) and the mask carry no history (their derivatives are 0). */
static double ag__sgn(double x, double y) {
    AG__UNUSED(y);
    return (x > 0) - (x < 0);
}
static int ag__abs_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    ag_tensor *x = ag__saved_get(node, 0);
    if (!x)
        return ag_last_status();
    return need[0] ? ag__graph_result(dinp[0] = ag_mul(ctx, g, ag__mask2(ctx, x, NULL, ag__sgn))) : 0;
}
static int ag__clamp_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    const ag__clamp_attr *at = ag__clamp_attr_of(node);
    ag_tensor *x = ag__saved_get(node, 0), *mask;
    if (!x)
        return ag_last_status();
    if (!need[0])
        return 0;
    if (!(mask = ag__tensor_like(ctx, x)))
        return ag_last_status();
    for (int64_t i = 0; i < x->numel; i++) {
        double v = ag__load(x, i);
        ag__store(mask, i, (isnan(at->lo) || v >= at->lo) && (isnan(at->hi) || v <= at->hi));
    }
    return ag__graph_result(dinp[0] = ag__where0(ctx, mask, g, true));
}

static const ag__node_kind ag__abs_kind = {.name = "AbsBackward0",
                                           .backward = ag__abs_backward,
                                           .backward_graph = ag__abs_backward_graph,
                                           .writes_fresh = true};
static const ag__node_kind ag__clamp_kind = {.name = "ClampBackward1",
                                             .backward = ag__clamp_backward,
                                             .backward_graph = ag__clamp_backward_graph,
                                             .attr_size = sizeof(ag__clamp_attr),
                                             .writes_fresh = true};

ag_tensor *ag_abs(ag_ctx *ctx, ag_tensor *a) {
    ag_tensor *in[1] = {a};
    ag__op op;
    if (ag__op_begin(&op, "ag_abs", ctx, 1, in))
        return NULL;
    ag_tensor *out = ag__op_output(&op, a->ndim, a->shape);
    if (!out)
        return NULL;
    a = op.in[0]; /* contiguous */
    if (a->dtype == AG_FLOAT32)
        ag__abs_fwd_f32(out->data, a->data, a->numel);
    else
        ag__abs_fwd_f64(out->data, a->data, a->numel);
    ag_node *node = ag__op_record(&op, &ag__abs_kind);
    if (node)
        ag__save(node, 0, a, false);
    return ag__op_end(&op);
}

static int ag__clamp_check(double lo, double hi) {
    if (isnan(lo) && isnan(hi))
        return ag__error(AG_EINVAL, "torch.clamp: At least one of 'min' or 'max' must not be None");
    return 0;
}

ag_tensor *ag_clamp(ag_ctx *ctx, ag_tensor *a, double lo, double hi) {
    ag_tensor *in[1] = {a};
    ag__op op;
    if (ag__op_begin(&op, "ag_clamp", ctx, 1, in) || ag__clamp_check(lo, hi))
        return NULL;
    ag_tensor *out = ag__op_output(&op, a->ndim, a->shape);
    if (!out)
        return NULL;
    a = op.in[0]; /* contiguous */
    if (a->dtype == AG_FLOAT32)
        ag__clamp_fwd_f32(out->data, a->data, a->numel, lo, hi);
    else
        ag__clamp_fwd_f64(out->data, a->data, a->numel, lo, hi);
    ag_node *node = ag__op_record(&op, &ag__clamp_kind);
    if (node) {
        *ag__clamp_attr_of(node) = (ag__clamp_attr){lo, hi};
        ag__save(node, 0, a, false);
    }
    return ag__op_end(&op);
}

/* ==== maximum (broadcasting) =====================================================
 * out (the broadcast shape of a and b) = max(a, b), nan if either is nan. */

/* out = max(a, b), walked over out's shape with operands {out, a, b}. */
static void ag__maximum_fwd(ag_tensor *out, const ag_tensor *a, const ag_tensor *b) {
    const ag_tensor *ops[3] = {out, a, b};
    ag__iter it;
    ag__iter_init(&it, out->ndim, out->shape, 3, ops);
    const int last = it.ndim - 1;
    const int64_t n = it.shape[last], sa = it.stride[1][last], sb = it.stride[2][last];
    for (ag__row r = ag__row_first(&it); r.i < r.n; ag__row_next(&it, &r)) {
        if (out->dtype == AG_FLOAT32)
            ag__maximum_row_f32((float *)out->data + r.off[0], (const float *)a->data + r.off[1], sa,
                                (const float *)b->data + r.off[2], sb, n);
        else
            ag__maximum_row_f64((double *)out->data + r.off[0], (const double *)a->data + r.off[1], sa,
                                (const double *)b->data + r.off[2], sb, n);
    }
}

/* d (dx for which 0, dy for 1) (=|+=) its share of dout, walked over
 * dout's shape with operands {d, a, b}; d is 0-strided (summed) along the
 * dimensions its input was broadcast in, and such sums start from 0. */
static void ag__maximum_bwd(ag_tensor *d, const ag_tensor *dout, const ag_tensor *a, const ag_tensor *b, int which,
                            bool acc) {
    if (!acc && d->numel < dout->numel) {
        memset(d->data, 0, d->storage->nbytes);
        acc = true;
    }
    const ag_tensor *ops[3] = {d, a, b};
    ag__iter it;
    ag__iter_init(&it, dout->ndim, dout->shape, 3, ops);
    const int last = it.ndim - 1;
    const int64_t n = it.shape[last], sd = it.stride[0][last], sa = it.stride[1][last], sb = it.stride[2][last];
    for (ag__row r = ag__row_first(&it); r.i < r.n; ag__row_next(&it, &r)) {
        int64_t g = r.i * n; /* dout is out's shape: its rows are consecutive */
        if (d->dtype == AG_FLOAT32)
            ag__maximum_bwd_row_f32((float *)d->data + r.off[0], sd, (const float *)dout->data + g,
                                    (const float *)a->data + r.off[1], sa, (const float *)b->data + r.off[2], sb, n,
                                    which, acc);
        else
            ag__maximum_bwd_row_f64((double *)d->data + r.off[0], sd, (const double *)dout->data + g,
                                    (const double *)a->data + r.off[1], sa, (const double *)b->data + r.off[2], sb, n,
                                    which, acc);
    }
}

/* out = max(a, b):  da, db (=|+=) dout where that input is the max, half each on ties */
static int ag__maximum_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *a = ag__saved_get(node, 0), *b = ag__saved_get(node, 1);
    if (!a || !b)
        return ag_last_status();
    for (int which = 0; which < 2 && dout->numel > 0; which++)
        if (dinp[which])
            ag__maximum_bwd(dinp[which], dout, a, b, which, !fresh[which]);
    for (int which = 0; which < 2 && dout->numel == 0; which++)
        if (dinp[which] && fresh[which]) /* broadcast to an empty shape: no gradient */
            memset(dinp[which]->data, 0, dinp[which]->storage->nbytes);
    return 0;
}

/* create_graph: each input's gradient is g times a weight without history
 * (1 where it is the larger, 1/2 on ties, else 0), summed to its shape. */
static double ag__max_weight_a(double a, double b) { return a > b ? 1.0 : a == b ? 0.5 : 0.0; }
static double ag__max_weight_b(double a, double b) { return b > a ? 1.0 : a == b ? 0.5 : 0.0; }
static int ag__maximum_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    ag_tensor *a = ag__saved_get(node, 0), *b = ag__saved_get(node, 1);
    if (!a || !b)
        return ag_last_status();
    for (int i = 1; i >= 0; i--) {
        if (!need[i])
            continue;
        ag_tensor *w = ag__mask2(ctx, a, b, i == 0 ? ag__max_weight_a : ag__max_weight_b);
        const ag_tensor *in = ag__edge_input(node, i);
        ag_tensor *d = ag_mul(ctx, g, w);
        int rc = ag__graph_result(dinp[i] = d ? ag__sum_to(ctx, d, in->ndim, in->shape) : NULL);
        if (rc)
            return rc;
    }
    return 0;
}

static const ag__node_kind ag__maximum_kind = {.name = "MaximumBackward0",
                                               .backward = ag__maximum_backward,
                                               .backward_graph = ag__maximum_backward_graph,
                                               .writes_fresh = true};

ag_tensor *ag_maximum(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    ag_tensor *in[2] = {a, b};
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    ag__op op;
    if (ag__op_begin_mixed(&op, "ag_maximum", ctx, 2, in) || ag__broadcast_shape(a, b, &ndim, shape) ||
        ag__op_promote(&op))
        return NULL;
    a = op.in[0], b = op.in[1];
    ag_tensor *out = ag__op_output(&op, ndim, shape);
    if (!out)
        return NULL;
    a = op.in[0], b = op.in[1]; /* contiguous */
    if (out->numel > 0)
        ag__maximum_fwd(out, a, b);
    ag_node *node = ag__op_record(&op, &ag__maximum_kind);
    if (node) {
        ag__save(node, 0, a, false);
        ag__save(node, 1, b, false);
    }
    return ag__op_end(&op);
}

/* ==== softmax, log_softmax over one dimension ===================================
 * x and y (outer, n, inner) around dim. */

typedef struct {
    int dim;       /* normalised; 0 for a 0-dim input */
    bool log_mode; /* log_softmax */
} ag__softmax_attr;
static ag__softmax_attr *ag__softmax_attr_of(ag_node *node) { return ag__node_attr(node); }

/* y = softmax(x) or log_softmax(x):  dx (=|+=) y (g - sum_k g y)  or  g - exp(y) sum_k g */
static int ag__softmax_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *y = ag__saved_get(node, 0), *d = dinp[0];
    const ag__softmax_attr *at = ag__softmax_attr_of(node);
    if (!y)
        return ag_last_status();
    if (!d)
        return 0;
    int64_t outer, n, inner;
    ag__split(y, at->dim, &outer, &n, &inner);
    if (d->dtype == AG_FLOAT32)
        ag__softmax_bwd_f32(d->data, dout->data, y->data, outer, n, inner, at->log_mode, !fresh[0]);
    else
        ag__softmax_bwd_f64(d->data, dout->data, y->data, outer, n, inner, at->log_mode, !fresh[0]);
    return 0;
}

/* create_graph, with agrad's ops (y the saved output):
 *   softmax:      dx = y * (g - sum_dim(g * y, keepdim))
 *   log_softmax:  dx = g - exp(y) * sum_dim(g, keepdim) */
static int ag__softmax_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    const ag__softmax_attr *at = ag__softmax_attr_of(node);
    ag_tensor *y = ag__saved_get(node, 0);
    if (!y)
        return ag_last_status();
    if (!need[0])
        return 0;
    dinp[0] = at->log_mode ? ag_sub(ctx, g, ag_mul(ctx, ag_exp(ctx, y), ag_sum_dim(ctx, g, at->dim, true)))
                           : ag_mul(ctx, y, ag_sub(ctx, g, ag_sum_dim(ctx, ag_mul(ctx, g, y), at->dim, true)));
    return ag__graph_result(dinp[0]);
}

static const ag__node_kind ag__softmax_kind = {.name = "SoftmaxBackward0",
                                               .backward = ag__softmax_backward,
                                               .backward_graph = ag__softmax_backward_graph,
                                               .attr_size = sizeof(ag__softmax_attr),
                                               .writes_fresh = true};
static const ag__node_kind ag__log_softmax_kind = {.name = "LogSoftmaxBackward0",
                                                   .backward = ag__softmax_backward,
                                                   .backward_graph = ag__softmax_backward_graph,
                                                   .attr_size = sizeof(ag__softmax_attr),
                                                   .writes_fresh = true};

static void ag__softmax_fwd(ag_tensor *y, const ag_tensor *x, int dim, bool log_mode) {
    int64_t outer, n, inner;
    ag__split(x, dim, &outer, &n, &inner);
    if (x->dtype == AG_FLOAT32)
        ag__softmax_fwd_f32(y->data, x->data, outer, n, inner, log_mode);
    else
        ag__softmax_fwd_f64(y->data, x->data, outer, n, inner, log_mode);
}

static ag_tensor *ag__softmax(ag_ctx *ctx, ag_tensor *a, int dim, bool log_mode) {
    ag_tensor *in[1] = {a};
    int d = 0;
    ag__op op;
    if (ag__op_begin(&op, log_mode ? "ag_log_softmax" : "ag_softmax", ctx, 1, in) ||
        ag__normalize_dim(dim, a->ndim, &d))
        return NULL;
    d = a->ndim ? d : 0; /* a 0-dim tensor is its own dimension of one */
    ag_tensor *out = ag__op_output(&op, a->ndim, a->shape);
    if (!out)
        return NULL;
    a = op.in[0]; /* contiguous */
    if (a->numel > 0)
        ag__softmax_fwd(out, a, d, log_mode);
    ag_node *node = ag__op_record(&op, log_mode ? &ag__log_softmax_kind : &ag__softmax_kind);
    if (node) {
        *ag__softmax_attr_of(node) = (ag__softmax_attr){d, log_mode};
        ag__save(node, 0, out, true);
    }
    return ag__op_end(&op);
}

ag_tensor *ag_softmax(ag_ctx *ctx, ag_tensor *a, int dim) { return ag__softmax(ctx, a, dim, false); }
ag_tensor *ag_log_softmax(ag_ctx *ctx, ag_tensor *a, int dim) { return ag__softmax(ctx, a, dim, true); }

/* ==== nll_loss and cross_entropy (mean over the batch) ============================
 * logp (N, C), targets t (N):  out () = -1/N sum_n logp[n, t_n] */

typedef struct {
    int64_t N, C;
    int64_t target[]; /* N of them: PyTorch saves the target */
} ag__nll_attr;
static ag__nll_attr *ag__nll_attr_of(ag_node *node) { return ag__node_attr(node); }

/* out = -1/N sum_n logp[n, t_n]:  dlogp[n, t_n] = -g / N, 0 elsewhere (or += onto what it holds) */
static int ag__nll_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                            ag_ctx *scratch) {
    AG__UNUSED(scratch);
    const ag__nll_attr *at = ag__nll_attr_of(node);
    ag_tensor *d = dinp[0];
    if (ag__node_check_released(node))
        return ag_last_status();
    if (!d)
        return 0;
    if (fresh[0]) /* a scatter: the other elements get 0 */
        memset(d->data, 0, d->storage->nbytes);
    if (d->dtype == AG_FLOAT32)
        ag__nll_bwd_f32(d->data, *(const float *)dout->data, at->target, at->N, at->C);
    else
        ag__nll_bwd_f64(d->data, *(const double *)dout->data, at->target, at->N, at->C);
    return 0;
}

/* create_graph: dlogp = g * W, W (no history) -1/N at the targets. */
static int ag__nll_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    const ag__nll_attr *at = ag__nll_attr_of(node);
    if (ag__node_check_released(node))
        return ag_last_status();
    if (!need[0])
        return 0;
    ag_tensor *w = ag_zeros(ctx, g->dtype, 2, (int64_t[]){at->N, at->C});
    if (!w)
        return ag_last_status();
    for (int64_t n = 0; n < at->N; n++)
        ag__store(w, n * at->C + at->target[n], -1.0 / (double)at->N);
    return ag__graph_result(dinp[0] = ag_mul(ctx, g, w));
}

static const ag__node_kind ag__nll_kind = {.name = "NllLossBackward0",
                                           .backward = ag__nll_backward,
                                           .backward_graph = ag__nll_backward_graph,
                                           .attr_size = sizeof(ag__nll_attr),
                                           .writes_fresh = true};

/* logp is (N, C) and targets has N class indices below C. */
static int ag__nll_check(const ag_tensor *logp, const int64_t *targets, const char *name) {
    if (logp->ndim != 2)
        return ag__error(AG_ESHAPE, "%s: expected a 2-D input (N, C), got %d-D", name, logp->ndim);
    int64_t N = logp->shape[0], C = logp->shape[1];
    if (N > 0 && !targets)
        return ag__error(AG_EINVAL, "%s: targets is NULL", name);
    for (int64_t n = 0; n < N; n++)
        if (targets[n] < 0 || targets[n] >= C)
            return ag__error(AG_EINVAL, "Target %" PRId64 " is out of bounds.", targets[n]);
    return 0;
}

ag_tensor *ag_nll_loss(ag_ctx *ctx, ag_tensor *logp, const int64_t *targets) {
    ag_tensor *in[1] = {logp};
    ag__op op;
    if (ag__op_begin(&op, "ag_nll_loss", ctx, 1, in) || ag__nll_check(logp, targets, "ag_nll_loss"))
        return NULL;
    int64_t N = logp->shape[0], C = logp->shape[1];
    ag_tensor *out = ag__op_output(&op, 0, NULL);
    if (!out)
        return NULL;
    logp = op.in[0]; /* contiguous */
    if (out->dtype == AG_FLOAT32)
        *(float *)out->data = ag__nll_fwd_f32(logp->data, targets, N, C);
    else
        *(double *)out->data = ag__nll_fwd_f64(logp->data, targets, N, C);
    ag_node *node = ag__op_record_edges(&op, &ag__nll_kind, 1, in, (size_t)N * sizeof(int64_t));
    if (node) {
        ag__nll_attr *at = ag__nll_attr_of(node);
        at->N = N;
        at->C = C;
        if (N > 0)
            memcpy(at->target, targets, (size_t)N * sizeof *targets);
        node->saved_scalar = true; /* the target counts as saved */
    }
    return ag__op_end(&op);
}

ag_tensor *ag_cross_entropy(ag_ctx *ctx, ag_tensor *logits, const int64_t *targets) {
    ag_tensor *in[1] = {logits};
    ag__op op;
    if (ag__op_begin(&op, "ag_cross_entropy", ctx, 1, in))
        return NULL;
    if (logits->ndim != 2)
        return ag__error_null(AG_ESHAPE, "ag_cross_entropy: expected 2-D logits (N, C), got %d-D", logits->ndim);
    if (ag__nll_check(logits, targets, "ag_cross_entropy"))
        return NULL;
    ag_tensor *out = ag_nll_loss(ctx, ag_log_softmax(ctx, logits, 1), targets);
    if (!out)
        ag__ctx_rollback(ctx, &op.pos);
    return out;
}

/* ==== mse_loss (mean) ===========================================================
 * a, b (same shape):  out () = mean((a - b)^2) */

/* out = mean((a - b)^2):  da (=|+=) 2 g (a - b) / N;  db (=|+=) -2 g (a - b) / N */
static int ag__mse_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                            ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *a = ag__saved_get(node, 0), *b = ag__saved_get(node, 1);
    if (!a || !b)
        return ag_last_status();
    for (int i = 0; i < 2; i++) {
        ag_tensor *d = dinp[i];
        if (d && d->dtype == AG_FLOAT32)
            ag__mse_bwd_f32(d->data, *(const float *)dout->data, a->data, b->data, a->numel, i ? -1 : 1, !fresh[i]);
        else if (d)
            ag__mse_bwd_f64(d->data, *(const double *)dout->data, a->data, b->data, a->numel, i ? -1 : 1, !fresh[i]);
    }
    return 0;
}

/* create_graph (PyTorch's mse_loss_backward): da = 2 (a - b) g / N, db = -da */
static int ag__mse_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    ag_tensor *a = ag__saved_get(node, 0), *b = ag__saved_get(node, 1);
    if (!a || !b)
        return ag_last_status();
    ag_tensor *d = ag_mul(ctx, ag_mul_scalar(ctx, ag_sub(ctx, a, b), 2.0 / (double)a->numel), g);
    int rc;
    if (need[1] && (rc = ag__graph_result(dinp[1] = ag_neg(ctx, d))))
        return rc;
    return need[0] ? ag__graph_result(dinp[0] = d) : ag__graph_result(d);
}

static const ag__node_kind ag__mse_kind = {.name = "MseLossBackward0",
                                           .backward = ag__mse_backward,
                                           .backward_graph = ag__mse_backward_graph,
                                           .writes_fresh = true};

/* Operands of another shape are broadcast first, as F.mse_loss does with
 * torch.broadcast_tensors: each that needs it through ag_expand
 * (ExpandBackward0), so its gradient is summed back to its shape. */
static int ag__mse_broadcast(ag__op *op, int ndim, const int64_t *shape) {
    for (int i = 0; i < 2; i++) {
        ag_tensor *x = op->in[i];
        bool same = x->ndim == ndim;
        for (int d = 0; same && d < ndim; d++)
            same = x->shape[d] == shape[d];
        if (!same && !(op->conv[i] = ag_expand(op->ctx, x, ndim, shape))) {
            int rc = ag_last_status();
            ag__ctx_rollback(op->ctx, &op->pos);
            return rc;
        }
        if (same)
            op->conv[i] = x;
    }
    op->in = op->conv;
    return 0;
}

ag_tensor *ag_mse_loss(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    ag_tensor *in[2] = {a, b};
    ag__op op;
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    if (ag__op_begin_mixed(&op, "ag_mse_loss", ctx, 2, in) || ag__broadcast_shape(a, b, &ndim, shape) ||
        ag__op_promote(&op) || ag__mse_broadcast(&op, ndim, shape))
        return NULL;
    a = op.in[0], b = op.in[1];
    ag_tensor *out = ag__op_output(&op, 0, NULL);
    if (!out)
        return NULL;
    a = op.in[0], b = op.in[1]; /* contiguous */
    if (a->dtype == AG_FLOAT32)
        *(float *)out->data = ag__mse_fwd_f32(a->data, b->data, a->numel);
    else
        *(double *)out->data = ag__mse_fwd_f64(a->data, b->data, a->numel);
    ag_node *node = ag__op_record(&op, &ag__mse_kind);
    if (node) {
        ag__save(node, 0, a, false);
        ag__save(node, 1, b, false);
    }
    return ag__op_end(&op);
}

/* ==== linear ==================================================================
 * x (..., in), w (out, in), b (out) or NULL:  y = x @ w^T + b, multiplied as
 * x2 (M, in) @ wt (in, out) with M the product of x's leading sizes.
 *
 * The graph is the one PyTorch 1.13 records for F.linear, node for node, so
 * next_functions walk the same way:
 *   x 2-D, bias:      AddmmBackward0(b, x, TBackward0(w))
 *   x 2-D:            MmBackward0(x, TBackward0(w))
 *   x 3-D, bias:      ViewBackward0(AddmmBackward0(b, ViewBackward0(x), TBackward0(w)))
 *   x 3-D and more:   UnsafeViewBackward0(MmBackward0(ReshapeAliasBackward0(x), TBackward0(w)))
 *   x 1-D:            SqueezeBackward3(MmBackward0(UnsqueezeBackward0(x), TBackward0(w)))
 * and, where the bias is not fused (1-D, 4-D and more), AddBackward0(that, b).
 * The tensors between these nodes (x as (M, in), w^T, the (M, out) product)
 * are headers sharing x's, w's and y's storage, for their shapes: no
 * backward reads their data, and w^T's is not even laid out transposed. */

typedef struct {
    int64_t M, in, out; /* rows of x, input and output features */
} ag__linear_attr;
static ag__linear_attr *ag__linear_attr_of(ag_node *node) { return ag__node_attr(node); }

/* y2 = x2 @ wt [+ b]:  dx2 (=|+=) g @ wt^T = g @ w;  dwt (=|+=) x2^T @ g;  db (=|+=) sum_rows g.
 * Edges: (b,) x2, wt, as PyTorch's AddmmBackward0 and MmBackward0. */
static int ag__linear_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                               ag_ctx *scratch) {
    AG__UNUSED(scratch);
    const ag__linear_attr *at = ag__linear_attr_of(node);
    int64_t M = at->M, in = at->in, out = at->out;
    int e = node->num_next == 3; /* AddmmBackward0: edge 0 is the bias */
    ag_tensor *x = dinp[e + 1] ? ag__saved_get(node, 0) : NULL, *w = dinp[e] ? ag__saved_get(node, 1) : NULL;
    if ((dinp[e + 1] && !x) || (dinp[e] && !w))
        return ag_last_status();
    if (dinp[e])
        ag__gemm(dout->dtype, false, false, M, in, out, dout->data, out, w->data, in, dinp[e]->data, in, !fresh[e]);
    if (dinp[e + 1])
        ag__gemm(dout->dtype, true, false, in, out, M, x->data, in, dout->data, out, dinp[e + 1]->data, out,
                 !fresh[e + 1]);
    if (e && dinp[0])
        ag__reduce_into(dinp[0], dout, 1.0, !fresh[0]);
    return 0;
}

/* wt = w.t():  dw (=|+=) g^T */
static int ag__linear_t_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                 ag_ctx *scratch) {
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    if (dinp[0])
        ag__transpose_into(dinp[0], dout, 0, 1, !fresh[0]);
    return 0;
}

/* create_graph (PyTorch's mm_mat1_backward / mm_mat2_backward, the bias's
 * gradient summed to its shape): with x2 = x as (M, in) and wt = w.t()
 * (column-major, so its gradient takes the transposed form),
 *   dx2 = g.mm(wt.t())          MmBackward0, TBackward0 (of wt's node)
 *   dwt = g.t().mm(x2).t()      TBackward0, MmBackward0
 *   db  = sum_to(g, (out))      SumBackward1, ViewBackward0 */
static int ag__linear_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    const ag__linear_attr *at = ag__linear_attr_of(node);
    int e = node->num_next == 3, rc;
    /* the last input first, as PyTorch's generated backwards (node order) */
    if (need[e + 1]) {
        ag_tensor *x = ag__saved_get(node, 0);
        if (!x)
            return ag_last_status();
        ag_tensor *x2 = x->ndim == 2 ? x : ag_reshape(ctx, x, 2, (int64_t[]){at->M, at->in});
        if ((rc = ag__graph_result(dinp[e + 1] = ag__t(ctx, ag_matmul(ctx, ag__t(ctx, g), x2)))))
            return rc;
    }
    if (need[e]) {
        /* wt.t() as PyTorch has it: through wt's own node when w needs grad */
        ag_tensor *w = ag__saved_get(node, 1);
        if (!w)
            return ag_last_status();
        ag_tensor *wtt = node->next[e + 1] ? ag__t_of(ctx, node->next[e + 1]->out, w) : w;
        if ((rc = ag__graph_result(dinp[e] = ag_matmul(ctx, g, wtt))))
            return rc;
    }
    if (e && need[0])
        return ag__graph_result(dinp[0] = ag__sum_to(ctx, g, 1, (int64_t[]){at->out}));
    return 0;
}

/* create_graph: dw = g.t() (TBackward0) */
static int ag__linear_t_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    AG__UNUSED(node);
    return need[0] ? ag__graph_result(dinp[0] = ag__t(ctx, g)) : 0;
}

/* create_graph of the reshapes: g reshaped to the input's shape. */
static int ag__linear_view_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp,
                                          ag_ctx *ctx) {
    if (!need[0])
        return 0;
    const ag_tensor *in = ag__edge_input(node, 0);
    return ag__graph_result(dinp[0] = ag__reshape_alias(ctx, g, in->ndim, in->shape));
}

static const ag__node_kind ag__addmm_kind = {.name = "AddmmBackward0",
                                             .backward = ag__linear_backward,
                                             .backward_graph = ag__linear_backward_graph,
                                             .attr_size = sizeof(ag__linear_attr),
                                             .writes_fresh = true};
static const ag__node_kind ag__linear_mm_kind = {.name = "MmBackward0",
                                                 .backward = ag__linear_backward,
                                                 .backward_graph = ag__linear_backward_graph,
                                                 .attr_size = sizeof(ag__linear_attr),
                                                 .writes_fresh = true};
static const ag__node_kind ag__linear_t_kind = {.name = "TBackward0",
                                                .backward = ag__linear_t_backward,
                                                .backward_graph = ag__linear_t_backward_graph,
                                                .writes_fresh = true};
/* The reshapes around the product: the same elements, another shape. */
#define AG__LINEAR_VIEW_KIND(lname, Name)                                                                              \
    static const ag__node_kind lname = {.name = Name,                                                                  \
                                        .backward = ag__view_backward,                                                 \
                                        .backward_graph = ag__linear_view_backward_graph,                              \
                                        .writes_fresh = true,                                                          \
                                        .passes_grad = 1}
AG__LINEAR_VIEW_KIND(ag__linear_view_kind, "ViewBackward0");
AG__LINEAR_VIEW_KIND(ag__linear_unsafe_view_kind, "UnsafeViewBackward0");
AG__LINEAR_VIEW_KIND(ag__linear_reshape_alias_kind, "ReshapeAliasBackward0");
AG__LINEAR_VIEW_KIND(ag__linear_unsqueeze_kind, "UnsqueezeBackward0");
AG__LINEAR_VIEW_KIND(ag__linear_squeeze_kind, "SqueezeBackward3");

/* x (..., in), w (out, in), b (out) or NULL. */
static int ag__linear_check(const ag_tensor *x, const ag_tensor *w, const ag_tensor *b) {
    if (b && b->dtype != x->dtype)
        return ag__error(AG_EDTYPE, "ag_linear: bias has dtype %s, input %s", ag__dtype_scalar_name(b->dtype),
                         ag__dtype_scalar_name(x->dtype));
    if (x->ndim < 1 || w->ndim != 2)
        return ag__error(AG_ESHAPE, "ag_linear: expected input (..., in) and a 2-D weight (out, in)");
    /* M: the rows of x, its leading sizes (whose product fits, as x exists) */
    int64_t in = x->shape[x->ndim - 1], out_f = w->shape[0], M = 1;
    ag__numel_ok(x->ndim - 1, x->shape, &M);
    if (w->shape[1] != in)
        return ag__error(AG_ESHAPE,
                         "mat1 and mat2 shapes cannot be multiplied (%" PRId64 "x%" PRId64 " and %" PRId64 "x%" PRId64
                         ")",
                         M, in, w->shape[1], w->shape[0]);
    if (b && (b->ndim != 1 || b->shape[0] != out_f))
        return ag__error(AG_ESHAPE, "ag_linear: bias must have shape [%" PRId64 "]", out_f);
    return 0;
}

/* y (M, out) = x (M, in) @ w^T, plus the bias on every row when addmm;
 * also when there are 0 input features: then each row is the bias. An
 * empty result may have more rows than fit in memory: none is visited. */
static void ag__linear_fwd(ag_tensor *y, const ag_tensor *x, const ag_tensor *w, const ag_tensor *b, int64_t M,
                           bool addmm) {
    int64_t in = x->shape[x->ndim - 1], out_f = w->shape[0];
    if (y->numel == 0)
        return;
    if (addmm && y->dtype == AG_FLOAT32)
        ag__bias_rows_f32(y->data, b->data, M, out_f);
    else if (addmm)
        ag__bias_rows_f64(y->data, b->data, M, out_f);
    ag__gemm(x->dtype, false, true, M, out_f, in, x->data, in, w->data, in, y->data, out_f, addmm);
}

/* Records `kind` for out = a reshape of `in`, when `in` requires grad. */
static bool ag__linear_view_node(ag_ctx *ctx, const ag__node_kind *kind, ag_tensor *out, ag_tensor *in) {
    ag_tensor *ins[1] = {in};
    return !ag__needs_grad(1, ins) || ag__record(ctx, kind, out, 1, ins);
}

/* The graph PyTorch records for F.linear (see above), around y = the
 * product (M rows), y shaped as x with out features. False on failure. */
static bool ag__linear_graph(ag__op *op, ag_tensor *x, ag_tensor *w, ag_tensor *b, int64_t M, bool addmm) {
    ag_ctx *ctx = op->ctx;
    ag_tensor *y = op->out;
    int nd = x->ndim;
    int64_t in = x->shape[nd - 1], out_f = w->shape[0];
    ag_tensor *wt = ag__tensor_alias(ctx, w, 2, (int64_t[]){in, out_f}), *x2 = x, *y2 = y;
    if (!wt || !ag__linear_view_node(ctx, &ag__linear_t_kind, wt, w))
        return false;
    const ag__node_kind *in_kind = nd == 1 ? &ag__linear_unsqueeze_kind
                                   : addmm ? &ag__linear_view_kind
                                           : &ag__linear_reshape_alias_kind;
    const ag__node_kind *out_kind = nd == 1 ? &ag__linear_squeeze_kind
                                    : addmm ? &ag__linear_view_kind
                                            : &ag__linear_unsafe_view_kind;
    if (nd != 2) {
        x2 = ag__tensor_alias(ctx, x, 2, (int64_t[]){M, in});
        y2 = ag__tensor_alias(ctx, y, 2, (int64_t[]){M, out_f});
        if (!x2 || !y2 || !ag__linear_view_node(ctx, in_kind, x2, x))
            return false;
    }
    ag_tensor *ins[3] = {b, x2, wt};
    ag_tensor **mm_ins = addmm ? ins : ins + 1;
    int n_ins = addmm ? 3 : 2;
    if (ag__needs_grad(n_ins, mm_ins)) {
        ag_node *node = ag__record(ctx, addmm ? &ag__addmm_kind : &ag__linear_mm_kind, y2, n_ins, mm_ins);
        if (!node)
            return false;
        *ag__linear_attr_of(node) = (ag__linear_attr){M, in, out_f};
        if (wt->requires_grad) /* as PyTorch: each factor saved only for the other's gradient */
            ag__save(node, 0, x, false);
        if (x2->requires_grad)
            ag__save(node, 1, w, false);
    }
    return nd == 2 || ag__linear_view_node(ctx, out_kind, y, y2);
}

ag_tensor *ag_linear(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *b) {
    ag_tensor *in[2] = {x, w};
    ag__op op;
    if (ag__op_begin(&op, "ag_linear", ctx, 2, in) || ag__linear_check(x, w, b))
        return NULL;
    int nd = x->ndim;
    int64_t M = 1, shape[AG_MAX_DIMS];
    ag__numel_ok(nd - 1, x->shape, &M);
    memcpy(shape, x->shape, sizeof shape);
    shape[nd - 1] = w->shape[0];
    bool addmm = b && (nd == 2 || nd == 3); /* where PyTorch adds the bias inside the product */
    ag_tensor *y = ag__op_output(&op, nd, shape);
    if (!y)
        return NULL;
    x = op.in[0], w = op.in[1]; /* contiguous */
    if (b && !(b = ag__standin(ctx, b))) {
        op.failed = true;
        return ag__op_end(&op);
    }
    ag__linear_fwd(y, x, w, b, M, addmm);
    ag_tensor *all[3] = {b, x, w};
    if (ag__needs_grad(3, all) && !ag__linear_graph(&op, x, w, b, M, addmm))
        op.failed = true;
    y = ag__op_end(&op);
    ag_tensor *r = y && b && !addmm ? ag_add(ctx, y, b) : y;
    if (!r && y)
        ag__ctx_rollback(ctx, &op.pos);
    return r;
}
