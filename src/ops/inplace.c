/* In-place updates (optimizer steps, zero_-style resets). Each bumps the
 * tensor's version counter, so a backward that saved the old values fails
 * as PyTorch's does; a leaf that requires grad refuses them while grad mode
 * is on. Rebasing the history of a non-leaf is not supported. */
#include "ops/ops.h"

#define AG__KERNELS "ops/inplace_kernels.inc"
#include "ops/kernel_template.h"

/* 0 when t may be changed in place now; else the error. */
static int ag__inplace_check(ag_tensor *t, const ag_tensor *other, const char *op) {
    if (ag__grad_enabled()) {
        if (t->requires_grad && !t->grad_fn)
            return ag__error(AG_ESTATE, "a leaf Variable that requires grad is being used in an in-place operation.");
        if (t->grad_fn || (other && other->requires_grad))
            return ag__error(AG_EUNSUPPORTED,
                             "%s: in-place operations that would be recorded in the graph are not supported; "
                             "use the out-of-place op, or run it with grad mode off",
                             op);
    }
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

/* t op= other, other broadcast to t's shape. */
static int ag__inplace_binary(ag_tensor *t, const ag_tensor *other, double alpha, bool mul, const char *op) {
    if (!t || !other) /* most often an earlier op failed: keep its error */
        return ag__null_code(op);
    if (ag__check_alive(t, op) || ag__check_alive(other, op))
        return AG_ESTATE;
    if (t->dtype != other->dtype)
        return ag__error(AG_EDTYPE, "%s: expected both operands to have the same dtype, but got %s and %s", op,
                         ag__dtype_scalar_name(t->dtype), ag__dtype_scalar_name(other->dtype));
    int rc = ag__inplace_check(t, other, op);
    if (rc || (rc = ag__inplace_shape(t, other)))
        return rc;
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
    ag__bump_version(t);
    return 0;
}

int ag_add_(ag_tensor *t, const ag_tensor *other, double alpha) {
    return ag__inplace_binary(t, other, alpha, false, "ag_add_");
}
int ag_sub_(ag_tensor *t, const ag_tensor *other) { return ag__inplace_binary(t, other, -1.0, false, "ag_sub_"); }
int ag_mul_(ag_tensor *t, const ag_tensor *other) { return ag__inplace_binary(t, other, 0, true, "ag_mul_"); }

static int ag__inplace_scalar(ag_tensor *t, double s, int kind, const char *op) {
    if (!t)
        return ag__null_code(op);
    if (ag__check_alive(t, op))
        return AG_ESTATE;
    int rc = ag__inplace_check(t, NULL, op);
    if (rc)
        return rc;
    ag__iter it;
    ag__iter_init(&it, t->ndim, t->shape, 1, (const ag_tensor *const[]){t});
    const int64_t n = it.shape[it.ndim - 1], sd = it.stride[0][it.ndim - 1];
    for (ag__row r = ag__row_first(&it); r.i < r.n && t->numel > 0; ag__row_next(&it, &r)) {
        if (t->dtype == AG_FLOAT32)
            ag__inplace_scalar_f32((float *)t->data + r.off[0], sd, n, s, kind);
        else
            ag__inplace_scalar_f64((double *)t->data + r.off[0], sd, n, s, kind);
    }
    ag__bump_version(t);
    return 0;
}

int ag_add_scalar_(ag_tensor *t, double s) { return ag__inplace_scalar(t, s, 0, "ag_add_scalar_"); }
int ag_mul_scalar_(ag_tensor *t, double s) { return ag__inplace_scalar(t, s, 1, "ag_mul_scalar_"); }
int ag_fill_(ag_tensor *t, double v) { return ag__inplace_scalar(t, v, 2, "ag_fill_"); }
int ag_zero_(ag_tensor *t) { return ag__inplace_scalar(t, 0.0, 2, "ag_zero_"); }
