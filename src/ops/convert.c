/* Conversions between dtypes: ag_to (ToCopyBackward0), which the type
 * promotion of the op skeleton (ops/common.c) also uses. The backward
 * converts the gradient back, so it reaches the input in its own dtype. */
#include "ops/ops.h"

/* dst[0:n] (=|+=) (float)src[0:n] */
static void ag__f64_to_f32(float *restrict dst, const double *restrict src, int64_t n, bool acc) {
    if (acc) {
        for (int64_t i = 0; i < n; i++)
            dst[i] += (float)src[i];
    } else {
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)src[i];
    }
}

/* dst[0:n] (=|+=) (double)src[0:n] */
static void ag__f32_to_f64(double *restrict dst, const float *restrict src, int64_t n, bool acc) {
    if (acc) {
        for (int64_t i = 0; i < n; i++)
            dst[i] += (double)src[i];
    } else {
        for (int64_t i = 0; i < n; i++)
            dst[i] = (double)src[i];
    }
}

/* dst (=|+=) src converted to dst's dtype; same element count. */
static void ag__convert(ag_tensor *dst, const ag_tensor *src, bool acc) {
    if (dst->dtype == src->dtype)
        ag__copy_flat(dst, src, acc);
    else if (dst->dtype == AG_FLOAT32)
        ag__f64_to_f32(dst->data, src->data, dst->numel, acc);
    else
        ag__f32_to_f64(dst->data, src->data, dst->numel, acc);
}

/* out = a.to(dtype):  da (=|+=) dout.to(a.dtype) */
static int ag__to_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh, ag_ctx *scratch) {
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    if (dinp[0])
        ag__convert(dinp[0], dout, !fresh[0]);
    return 0;
}

static const ag__node_kind ag__to_kind = {.name = "ToCopyBackward0", .backward = ag__to_backward, .writes_fresh = true};

ag_tensor *ag_to(ag_ctx *ctx, ag_tensor *a, ag_dtype dtype) {
    ag_tensor *in[1] = {a};
    ag__op op;
    if (ag__op_begin(&op, "ag_to", ctx, 1, in))
        return NULL;
    if ((unsigned)dtype >= AG_DTYPE_COUNT)
        return ag__error_null(AG_EINVAL, "ag_to: unknown dtype %d", (int)dtype);
    if (a->dtype == dtype)
        return a;
    op.out = ag__tensor_new(ctx, dtype, a->ndim, a->shape);
    op.failed = !op.out;
    if (!op.failed)
        ag__convert(op.out, a, false);
    ag__op_record(&op, &ag__to_kind);
    return ag__op_end(&op);
}
