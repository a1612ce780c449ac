/* In-place ops: t op= ..., as PyTorch records them. Each bumps t's
 * version counter, so a backward that saved the old values fails as
 * PyTorch's does. Without history to record (grad mode off, or nothing
 * requires grad) the kernels below write t directly, or the out-of-place
 * op runs in t's context and everything it allocated is given back.
 *
 * With history, t's grad_fn becomes the op's node: the out-of-place op runs
 * on a snapshot of t that has t's autograd identity (so the node's edges
 * are t's old producers, and a value the backward needs is the old one, as
 * PyTorch's in-place formulas save original_self), its result is written
 * into t, and the node takes t as its output (a saved result becomes t at
 * its new version, so a later in-place change of t fails the backward with
 * PyTorch's message). The node and snapshot live in t's context. */
#include "ops/ops.h"

#include <math.h>

#define AG__KERNELS "ops/inplace_kernels.inc"
#include "ops/kernel_template.h"

typedef enum {
    AG__IP_ADD, /* t += alpha * other */
    AG__IP_MUL, /* t *= other */
    AG__IP_ADDS,
    AG__IP_MULS,
    AG__IP_RELU,
    AG__IP_TANH,
    AG__IP_SIGMOID,
    AG__IP_EXP,
    AG__IP_CLAMP,
    AG__IP_FILL,
    AG__IP_ZERO,
} ag__ipop;

/* ==== fill_ and zero_ with history ===========================================
 * out = a constant:  da = 0 */

static int ag__fill_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                             ag_ctx *scratch) {
    AG__UNUSED(node);
    AG__UNUSED(dout);
    AG__UNUSED(scratch);
    if (dinp[0] && fresh[0])
        memset(dinp[0]->data, 0, (size_t)dinp[0]->numel * ag__dtype_size(dinp[0]->dtype));
    return 0;
}

static const ag__node_kind ag__fill_kind = {
    .name = "FillBackward2", .backward = ag__fill_backward, .writes_fresh = true};
static const ag__node_kind ag__zero_kind = {
    .name = "ZeroBackward0", .backward = ag__fill_backward, .writes_fresh = true};

/* ==== Views of tensors with history: CopySlices, AsStridedBackward0 ===========
 * An in-place op on a view v of base b rewrites b: b's grad_fn becomes
 * CopySlices, which runs the op's own node (fn) on the part of b's
 * gradient that v covers, and v's grad_fn becomes AsStridedBackward0 of
 * b, as in PyTorch. The geometry is v's, in b's storage (b owns it and is
 * contiguous, so it is the geometry of v inside b's gradient too). */

typedef struct {
    ag_node *fn; /* the op's node: its backward runs on the view's part */
    int ndim;
    int64_t shape[AG_MAX_DIMS], stride[AG_MAX_DIMS], offset;
} ag__slices_attr;
static ag__slices_attr *ag__slices_attr_of(ag_node *node) { return ag__node_attr(node); }

/* A header over g (b-shaped, contiguous) with the view's geometry. */
static ag_tensor *ag__slice_of(ag_ctx *ctx, ag_tensor *g, const ag__slices_attr *at) {
    return ag__tensor_view(ctx, g, at->ndim, at->shape, at->stride, at->offset);
}

static void ag__inplace_walk(ag_tensor *t, const ag_tensor *other, double alpha, bool mul);

/* b = b with b[view] = fn(b[view], others...):
 *   db += dout outside the view, and fn's gradient of its input 0 inside it;
 *   dothers += fn's gradients of them (from dout[view]) */
static int ag__slices_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                               ag_ctx *scratch) {
    AG__UNUSED(fresh); /* writes_fresh is false: every buffer is added into */
    const ag__slices_attr *at = ag__slices_attr_of(node);
    ag_node *fn = at->fn;
    ag_tensor *full = ag__tensor_new(scratch, dout->dtype, dout->ndim, dout->shape);
    ag_tensor *gv = full ? ag__slice_of(scratch, full, at) : NULL;
    ag_tensor *dslice = gv ? ag__tensor_new(scratch, dout->dtype, at->ndim, at->shape) : NULL;
    ag_tensor *d0 = dslice ? ag__tensor_new(scratch, dout->dtype, at->ndim, at->shape) : NULL;
    if (!d0)
        return ag_last_status() ? ag_last_status() : AG_ENOMEM;
    memcpy(full->data, dout->data, (size_t)dout->numel * ag__dtype_size(dout->dtype));
    ag__gather(gv, dslice->data, dout->dtype);
    memset(d0->data, 0, (size_t)d0->numel * ag__dtype_size(d0->dtype));
    ag_tensor *sub[AG__MAX_SAVED + 8] = {dinp[0] ? d0 : NULL};
    bool nofresh[AG__MAX_SAVED + 8] = {false};
    for (int i = 1; i < node->num_next; i++)
        sub[i] = dinp[i];
    int rc = fn->kind->backward(fn, dslice, sub, nofresh, scratch);
    if (rc || !dinp[0])
        return rc;
    ag__inplace_walk(gv, d0, NAN, false); /* full[view] = d0 */
    ag__copy_flat(dinp[0], full, true);
    return 0;
}

static const ag__node_kind ag__slices_kind = {
    .name = "CopySlices", .backward = ag__slices_backward, .attr_size = sizeof(ag__slices_attr)};

/* v = b viewed with v's geometry:  db[view] += dout, 0 elsewhere */
static int ag__as_strided_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                   ag_ctx *scratch) {
    if (!dinp[0])
        return 0;
    if (fresh[0])
        memset(dinp[0]->data, 0, (size_t)dinp[0]->numel * ag__dtype_size(dinp[0]->dtype));
    ag_tensor *dv = ag__slice_of(scratch, dinp[0], ag__slices_attr_of(node));
    if (!dv)
        return ag_last_status() ? ag_last_status() : AG_ENOMEM;
    ag__inplace_walk(dv, dout, 1.0, false);
    return 0;
}

static const ag__node_kind ag__as_strided_kind = {.name = "AsStridedBackward0",
                                                  .backward = ag__as_strided_backward,
                                                  .attr_size = sizeof(ag__slices_attr),
                                                  .writes_fresh = true};

/* After fn (recorded on a snapshot of view t) and t's new values: b's
 * history becomes CopySlices(b's old producer, fn's other inputs), t's
 * AsStridedBackward0(b). */
static int ag__rebase_view(ag_ctx *ctx, ag_tensor *t, ag_node *fn, ag_tensor *other) {
    ag_tensor *b = t->base;
    ag__slices_attr geo = {.fn = fn, .ndim = t->ndim, .offset = t->offset};
    memcpy(geo.shape, t->shape, sizeof geo.shape);
    memcpy(geo.stride, t->stride, sizeof geo.stride);
    ag_node *was_b = b->grad_fn, *was_t = t->grad_fn;
    bool req_b = b->requires_grad, req_t = t->requires_grad;
    ag_tensor *ins[2] = {b, other}; /* b's edge is None when b needs no grad */
    ag_node *cs = ag__record(ctx, &ag__slices_kind, b, fn->num_next, ins);
    ag_node *as = cs ? ag__record(ctx, &ag__as_strided_kind, t, 1, &b) : NULL;
    if (!as) { /* the caller rolls the context back: nothing may point into it */
        b->grad_fn = was_b, t->grad_fn = was_t;
        b->requires_grad = req_b, t->requires_grad = req_t;
        return ag_last_status() ? ag_last_status() : AG_ENOMEM;
    }
    for (int i = 1; i < fn->num_next; i++) /* fn's own inputs (alpha * other for add_) */
        cs->next[i] = fn->next[i];
    *ag__slices_attr_of(cs) = geo;
    *ag__slices_attr_of(as) = geo;
    return 0;
}

/* ==== Checks ================================================================== */

/* PyTorch's refusals of an in-place change of t while grad mode is on;
 * 0 when t may be changed. */
static int ag__inplace_check(const ag_tensor *t) {
    if (!ag__grad_enabled())
        return 0;
    if (t->requires_grad && !t->grad_fn && !t->base)
        return ag__error(AG_ESTATE, "a leaf Variable that requires grad is being used in an in-place operation.");
    const ag_tensor *base = t->base;
    if (base && base->requires_grad && t->view_no_grad)
        return ag__error(AG_ESTATE,
                         "A view was created in no_grad mode and is being modified inplace with grad mode enabled. "
                         "Given that this use case is ambiguous and error-prone, it is forbidden. You can clarify "
                         "your code by moving both the view and the inplace either both inside the no_grad block "
                         "(if you don't want the inplace to be tracked) or both outside (if you want the inplace to "
                         "be tracked).");
    if (base && base->requires_grad && !base->grad_fn)
        return ag__error(AG_ESTATE,
                         "a view of a leaf Variable that requires grad is being used in an in-place operation.");
    return 0;
}

/* Overlapping writes: an expanded t (stride 0 along a dimension of size >
 * 1) would write one element several times, as PyTorch refuses. */
static int ag__inplace_overlap(const ag_tensor *t) {
    for (int d = 0; d < t->ndim; d++)
        if (t->stride[d] == 0 && t->shape[d] > 1)
            return ag__error(AG_EINVAL, "unsupported operation: more than one element of the written-to tensor "
                                        "refers to a single memory location. Please clone() the tensor before "
                                        "performing the operation.");
    return 0;
}

/* other broadcasts to t's shape (as PyTorch: "output with shape"). */
static int ag__inplace_shape(const ag_tensor *t, const ag_tensor *other) {
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    if (ag__broadcast_shape(t, other, &ndim, shape))
        return AG_ESHAPE;
    bool same = ndim == t->ndim;
    for (int d = 0; same && d < ndim; d++)
        same = shape[d] == t->shape[d];
    if (!same) {
        char o[160], b[160];
        ag__shape_str(o, sizeof o, t->ndim, t->shape);
        ag__shape_str(b, sizeof b, ndim, shape);
        return ag__error(AG_ESHAPE, "output with shape %s doesn't match the broadcast shape %s", o, b);
    }
    return 0;
}

/* ==== Direct kernels =============================================================== */

/* t op= other, other broadcast to t's shape; alpha NAN copies other. */
static void ag__inplace_walk(ag_tensor *t, const ag_tensor *other, double alpha, bool mul) {
    const ag_tensor *ops[2] = {t, other};
    ag__iter it;
    ag__iter_init(&it, t->ndim, t->shape, 2, ops);
    const int64_t n = it.shape[it.ndim - 1], sd = it.stride[0][it.ndim - 1], sy = it.stride[1][it.ndim - 1];
    for (ag__row r = ag__row_first(&it); r.i < r.n && t->numel > 0; ag__row_next(&it, &r)) {
        if (t->dtype == AG_FLOAT32)
            ag__inplace_row_f32((float *)t->data + r.off[0], sd, (const float *)other->data + r.off[1], sy, n, alpha,
                                mul);
        else
            ag__inplace_row_f64((double *)t->data + r.off[0], sd, (const double *)other->data + r.off[1], sy, n, alpha,
                                mul);
    }
}

/* t = t + s, t * s, or s (kind 0, 1, 2) */
static void ag__inplace_scalar_walk(ag_tensor *t, double s, int kind) {
    ag__iter it;
    ag__iter_init(&it, t->ndim, t->shape, 1, (const ag_tensor *const[]){t});
    const int64_t n = it.shape[it.ndim - 1], sd = it.stride[0][it.ndim - 1];
    for (ag__row r = ag__row_first(&it); r.i < r.n && t->numel > 0; ag__row_next(&it, &r)) {
        if (t->dtype == AG_FLOAT32)
            ag__inplace_scalar_f32((float *)t->data + r.off[0], sd, n, s, kind);
        else
            ag__inplace_scalar_f64((double *)t->data + r.off[0], sd, n, s, kind);
    }
}

/* ==== Through the out-of-place op ======================================================== */

/* The out-of-place op on x (t or its snapshot) in ctx. */
static ag_tensor *ag__inplace_compute(ag_ctx *ctx, ag__ipop op, ag_tensor *x, ag_tensor *other, double a, double b) {
    switch (op) {
    case AG__IP_ADD:
        return a == 1.0    ? ag_add(ctx, x, other)
               : a == -1.0 ? ag_sub(ctx, x, other)
                           : ag_add(ctx, x, ag_mul_scalar(ctx, other, a));
    case AG__IP_MUL:
        return ag_mul(ctx, x, other);
    case AG__IP_ADDS:
        return ag_add_scalar(ctx, x, a);
    case AG__IP_MULS:
        return ag_mul_scalar(ctx, x, a);
    case AG__IP_RELU:
        return ag_relu(ctx, x);
    case AG__IP_TANH:
        return ag_tanh(ctx, x);
    case AG__IP_SIGMOID:
        return ag_sigmoid(ctx, x);
    case AG__IP_EXP:
        return ag_exp(ctx, x);
    case AG__IP_CLAMP:
        return ag_clamp(ctx, x, a, b);
    default: /* fill_, zero_ */
        return ag_full(ctx, x->dtype, x->ndim, x->shape, op == AG__IP_ZERO ? 0.0 : a);
    }
}

/* A contiguous copy of t with t's autograd identity and a version counter
 * of its own: what the recorded op reads and saves. */
static ag_tensor *ag__snapshot(ag_ctx *ctx, ag_tensor *t) {
    ag_tensor *c = ag__tensor_new(ctx, t->dtype, t->ndim, t->shape);
    if (!c)
        return NULL;
    ag__gather(t, c->data, t->dtype);
    c->requires_grad = t->requires_grad;
    c->grad_fn = t->grad_fn;
    c->grad_accumulator = t->grad_accumulator;
    return c;
}

/* fill_ / zero_ record their node themselves: the result has no inputs. */
static ag_node *ag__fill_record(ag_ctx *ctx, ag__ipop op, ag_tensor *snap, ag_tensor *r) {
    return ag__record(ctx, op == AG__IP_ZERO ? &ag__zero_kind : &ag__fill_kind, r, 1, &snap);
}

/* t takes over r's node: its values, its history, and r's place among the
 * node's saved tensors (at t's new version). */
/* t takes r's values and r's node: t's history (a view's was rebased
 * already), and r's place among the node's saved tensors (at t's new
 * version). */
static void ag__inplace_adopt(ag_tensor *t, ag_tensor *r, bool rebased) {
    ag__inplace_walk(t, r, NAN, false);
    ag__bump_version(t);
    ag_node *node = r->grad_fn;
    if (!node)
        return;
    node->out = t;
    if (!rebased) {
        t->grad_fn = node;
        t->requires_grad = true;
    }
    /* a strided t stays represented by r (backward kernels read saved
     * tensors flat), counting t's versions */
    r->storage->version = t->storage->version;
    for (int i = 0; i < AG__MAX_SAVED; i++)
        if (node->saved[i].t == r) {
            node->saved[i].t = t->contiguous ? t : r;
            node->saved[i].version = ag__version_of(t);
        }
}

static int ag__inplace_run(ag_tensor *t, ag__ipop op, ag_tensor *other, double a, double b, const char *name) {
    bool record = ag__grad_enabled() && (t->requires_grad || (other && other->requires_grad));
    ag_ctx *ctx = t->ctx;
    ag__ctx_pos pos;
    ag__ctx_mark(ctx, &pos);
    ag_tensor *x = record ? ag__snapshot(ctx, t) : t;
    bool was = ag_set_grad_enabled(record);
    ag_tensor *r = x ? ag__inplace_compute(ctx, op, x, other, a, b) : NULL;
    if (r && record && (op == AG__IP_FILL || op == AG__IP_ZERO) && ag__needs_grad(1, &x) &&
        !ag__fill_record(ctx, op, x, r))
        r = NULL;
    ag_set_grad_enabled(was);
    bool rebase = r && record && t->base && r->grad_fn;
    if (!r || (rebase && ag__rebase_view(ctx, t, r->grad_fn, other))) {
        ag__ctx_rollback(ctx, &pos);
        return ag_last_status() ? ag_last_status() : ag__error(AG_ENOMEM, "%s: out of memory", name);
    }
    ag__inplace_adopt(t, r, rebase);
    if (!record) /* nothing of it is referenced: give it all back */
        ag__ctx_rollback(ctx, &pos);
    return 0;
}

/* ==== The API ==================================================================== */

static int ag__inplace(ag_tensor *t, ag__ipop op, const ag_tensor *other, double a, double b, const char *name) {
    if (!t || (op <= AG__IP_MUL && !other)) /* most often an earlier op failed: keep its error */
        return ag__null_code(name);
    if (ag__check_alive(t, name) || (other && ag__check_alive(other, name)))
        return AG_ESTATE;
    if (other && t->dtype != other->dtype)
        return ag__error(AG_EDTYPE, "%s: expected both operands to have the same dtype, but got %s and %s", name,
                         ag__dtype_scalar_name(t->dtype), ag__dtype_scalar_name(other->dtype));
    int rc = ag__inplace_check(t);
    if (rc || (rc = ag__inplace_overlap(t)) || (other && (rc = ag__inplace_shape(t, other))))
        return rc;
    bool record = ag__grad_enabled() && (t->requires_grad || (other && other->requires_grad));
    if (!record && (op == AG__IP_ADD || op == AG__IP_MUL) && other->storage != t->storage) {
        ag__inplace_walk(t, other, op == AG__IP_MUL ? 0 : a, op == AG__IP_MUL);
        ag__bump_version(t);
        return 0;
    }
    if (!record && op >= AG__IP_ADDS && op <= AG__IP_MULS) {
        ag__inplace_scalar_walk(t, a, op == AG__IP_ADDS ? 0 : 1);
        ag__bump_version(t);
        return 0;
    }
    if (!record && (op == AG__IP_FILL || op == AG__IP_ZERO)) {
        ag__inplace_scalar_walk(t, op == AG__IP_ZERO ? 0.0 : a, 2);
        ag__bump_version(t);
        return 0;
    }
    return ag__inplace_run(t, op, (ag_tensor *)other, a, b, name);
}

int ag_add_(ag_tensor *t, const ag_tensor *other, double alpha) {
    return ag__inplace(t, AG__IP_ADD, other, alpha, 0, "ag_add_");
}
int ag_sub_(ag_tensor *t, const ag_tensor *other) { return ag__inplace(t, AG__IP_ADD, other, -1.0, 0, "ag_sub_"); }
int ag_mul_(ag_tensor *t, const ag_tensor *other) { return ag__inplace(t, AG__IP_MUL, other, 0, 0, "ag_mul_"); }
int ag_add_scalar_(ag_tensor *t, double s) { return ag__inplace(t, AG__IP_ADDS, NULL, s, 0, "ag_add_scalar_"); }
int ag_mul_scalar_(ag_tensor *t, double s) { return ag__inplace(t, AG__IP_MULS, NULL, s, 0, "ag_mul_scalar_"); }
int ag_fill_(ag_tensor *t, double v) { return ag__inplace(t, AG__IP_FILL, NULL, v, 0, "ag_fill_"); }
int ag_zero_(ag_tensor *t) { return ag__inplace(t, AG__IP_ZERO, NULL, 0, 0, "ag_zero_"); }
int ag_relu_(ag_tensor *t) { return ag__inplace(t, AG__IP_RELU, NULL, 0, 0, "ag_relu_"); }
int ag_tanh_(ag_tensor *t) { return ag__inplace(t, AG__IP_TANH, NULL, 0, 0, "ag_tanh_"); }
int ag_sigmoid_(ag_tensor *t) { return ag__inplace(t, AG__IP_SIGMOID, NULL, 0, 0, "ag_sigmoid_"); }
int ag_exp_(ag_tensor *t) { return ag__inplace(t, AG__IP_EXP, NULL, 0, 0, "ag_exp_"); }
int ag_clamp_(ag_tensor *t, double min, double max) {
    return ag__inplace(t, AG__IP_CLAMP, NULL, min, max, "ag_clamp_");
}
