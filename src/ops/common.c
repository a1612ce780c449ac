/* Helpers the op families share: broadcasting shapes (NumPy rules, PyTorch's
 * error message) and argument checks. */
#include "ops/ops.h"

#include <inttypes.h>

int ag__broadcast_shape(const ag_tensor *a, const ag_tensor *b, int *ndim, int64_t *shape) {
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = n - 1; i >= 0; i--) {
        int off = n - 1 - i;
        int da = a->ndim - 1 - off, db = b->ndim - 1 - off;
        int64_t sa = da >= 0 ? a->shape[da] : 1;
        int64_t sb = db >= 0 ? b->shape[db] : 1;
        if (sa != sb && sa != 1 && sb != 1)
            return ag__error(AG_ESHAPE,
                             "The size of tensor a (%" PRId64 ") must match the size of tensor b (%" PRId64
                             ") at non-singleton dimension %d",
                             sa, sb, i);
        shape[i] = sa == 1 ? sb : sa;
    }
    *ndim = n;
    return 0;
}

int ag__check_unary(ag_ctx *ctx, const ag_tensor *a, const char *op) {
    if (!a) {
        ag__null_arg(op);
        return AG_EINVAL;
    }
    if (!ctx)
        return ag__error(AG_EINVAL, "%s: context is NULL", op);
    return 0;
}

int ag__check_binary(ag_ctx *ctx, const ag_tensor *a, const ag_tensor *b, const char *op) {
    if (!a || !b) {
        ag__null_arg(op);
        return AG_EINVAL;
    }
    if (!ctx)
        return ag__error(AG_EINVAL, "%s: context is NULL", op);
    if (a->dtype != b->dtype)
        return ag__error(AG_EDTYPE, "%s: expected both operands to have the same dtype, but got %s and %s", op,
                         ag__dtype_scalar_name(a->dtype), ag__dtype_scalar_name(b->dtype));
    return 0;
}

void ag__iter_init(ag__iter *it, int ndim, const int64_t *shape, int nops, const ag_tensor *const *ops) {
    it->nops = nops;
    /* Every operand full-size or a single element (same shapes, a scalar
     * against a tensor): one row, strides 1 or 0, no per-dimension work.
     * An empty shape walks one row of nothing: its strides, products of
     * trailing sizes, may not fit in int64. */
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++)
        if (!ag__mul_ok(numel, shape[d], &numel) || numel == 0) {
            numel = 0;
            break;
        }
    bool flat = true;
    for (int k = 0; k < nops; k++)
        flat = flat && (ops[k]->numel == numel || ops[k]->numel == 1);
    if (flat || numel == 0) {
        it->ndim = 1;
        it->shape[0] = numel;
        for (int k = 0; k < nops; k++)
            it->stride[k][0] = ops[k]->numel == numel ? 1 : 0;
        return;
    }
    /* Full strides first, aligned to the right as broadcasting aligns. */
    int64_t st[AG__ITER_OPS][AG_MAX_DIMS];
    for (int k = 0; k < nops; k++) {
        const ag_tensor *t = ops[k];
        int64_t s = 1;
        for (int d = ndim - 1; d >= 0; d--) {
            int td = t->ndim - (ndim - d);
            int64_t size = td >= 0 ? t->shape[td] : 1;
            st[k][d] = (size == 1) ? 0 : s;
            s *= size;
        }
    }
    /* Drop size-1 dimensions; merge dimension d into the kept one before it
     * when every operand steps through that one as a continuation of d. */
    int n = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1)
            continue;
        if (n > 0) {
            bool merge = true;
            for (int k = 0; k < nops; k++)
                if (it->stride[k][n - 1] != st[k][d] * shape[d])
                    merge = false;
            if (merge) {
                it->shape[n - 1] *= shape[d];
                for (int k = 0; k < nops; k++)
                    it->stride[k][n - 1] = st[k][d];
                continue;
            }
        }
        it->shape[n] = shape[d];
        for (int k = 0; k < nops; k++)
            it->stride[k][n] = st[k][d];
        n++;
    }
    if (n == 0) {
        it->shape[0] = 1;
        for (int k = 0; k < nops; k++)
            it->stride[k][0] = 0;
        n = 1;
    }
    it->ndim = n;
}

/* One row of dst += scale * src: d steps by sd, s by ss (each 0 or not). */
#define AG__ADD_REDUCED(T)                                                                                             \
    static void ag__add_reduced_row_##T(T *d, int64_t sd, const T *s, int64_t ss, int64_t n, T scale) {                \
        if (sd == 1 && ss == 1) {                                                                                      \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += s[i] * scale;                                  \
        } else if (sd == 1 && ss == 0) { /* src broadcast along the row */                                             \
            const T v = s[0] * scale;                                                                                  \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += v;                                             \
        } else if (sd == 0) { /* dst broadcast along the row: sum it */                                                \
            double acc = 0;                                                                                            \
            for (int64_t i = 0; i < n; i++)                                                                            \
                acc += s[i * ss];                                                                                      \
            d[0] += (T)acc * scale;                                                                                    \
        } else {                                                                                                       \
            for (int64_t i = 0; i < n; i++)                                                                            \
                d[i * sd] += s[i * ss] * scale;                                                                        \
        }                                                                                                              \
    }                                                                                                                  \
    static void ag__add_reduced_##T(const ag__iter *it, T *dst, const T *src, T scale) {                               \
        const int64_t n = it->shape[it->ndim - 1];                                                                     \
        const int64_t sd = it->stride[0][it->ndim - 1], ss = it->stride[1][it->ndim - 1];                              \
        AG__ITER_ROWS(it, off, ag__add_reduced_row_##T(dst + off[0], sd, src + off[1], ss, n, scale));                 \
    }
AG__ADD_REDUCED(float)
AG__ADD_REDUCED(double)

void ag__add_reduced(ag_tensor *dst, const ag_tensor *src, double scale) {
    if (dst->numel == 0 || src->numel == 0)
        return;
    /* Walk the larger of the two shapes; the smaller broadcasts into it. */
    const ag_tensor *big = dst->numel >= src->numel ? dst : src;
    const ag_tensor *ops[2] = {dst, src};
    ag__iter it;
    ag__iter_init(&it, big->ndim, big->shape, 2, ops);
    if (dst->dtype == AG_FLOAT32)
        ag__add_reduced_float(&it, dst->data, src->data, (float)scale);
    else
        ag__add_reduced_double(&it, dst->data, src->data, scale);
}
