/* Reductions: sum and mean over all elements or one dimension, and max over
 * all elements. Sums accumulate in double for both dtypes. */
#include "ops.h"

#include <math.h>

/* The reduced dimension splits a tensor into (outer, n, inner): element
 * (o, k, i) sits at (o * n + k) * inner + i. */
static void ag__split_dim(const ag_tensor *a, int dim, int64_t *outer, int64_t *n, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < dim; d++)
        *outer *= a->shape[d];
    for (int d = dim + 1; d < a->ndim; d++)
        *inner *= a->shape[d];
    *n = a->ndim ? a->shape[dim] : 1;
}

#define AG__SUM_DIM_FWD(T)                                                                         \
    /* out is (outer, inner) = sum over k of a (outer, n, inner), times scale */                   \
    static void ag__sum_dim_fwd_##T(T *out, const T *a, int64_t outer, int64_t n, int64_t inner, double scale) { \
        for (int64_t o = 0; o < outer; o++) {                                                      \
            if (inner == 1) {                                                                      \
                double acc = 0;                                                                    \
                for (int64_t k = 0; k < n; k++)                                                    \
                    acc += a[o * n + k];                                                           \
                out[o] = (T)(acc * scale);                                                         \
                continue;                                                                          \
            }                                                                                      \
            T *row = out + o * inner;                                                              \
            for (int64_t i = 0; i < inner; i++)                                                    \
                row[i] = 0;                                                                        \
            for (int64_t k = 0; k < n; k++) {                                                      \
                const T *src = a + (o * n + k) * inner;                                            \
                _Pragma("omp simd") for (int64_t i = 0; i < inner; i++) row[i] += src[i];          \
            }                                                                                      \
            if (scale != 1.0)                                                                      \
                for (int64_t i = 0; i < inner; i++)                                                \
                    row[i] = (T)(row[i] * scale);                                                  \
        }                                                                                          \
    }
AG__SUM_DIM_FWD(float)
AG__SUM_DIM_FWD(double)

/* Backward of out = scale * sum_k a[o, k, i]:  da[o, k, i] += scale * g[o, i] */
#define AG__SUM_DIM_BWD(T)                                                                         \
    static void ag__sum_dim_bwd_##T(T *da, const T *g, int64_t outer, int64_t n, int64_t inner, double scale) { \
        for (int64_t o = 0; o < outer; o++)                                                        \
            for (int64_t k = 0; k < n; k++) {                                                      \
                T *d = da + (o * n + k) * inner;                                                   \
                const T *gg = g + o * inner;                                                       \
                const T s = (T)scale;                                                              \
                _Pragma("omp simd") for (int64_t i = 0; i < inner; i++) d[i] += gg[i] * s;         \
            }                                                                                      \
    }
AG__SUM_DIM_BWD(float)
AG__SUM_DIM_BWD(double)

/* iarg[0]: dim (normalised, -1 for all elements); scalar: 1 or 1/n. */
static int ag__sum_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *d = dinp[0];
    if (!d || d->numel == 0)
        return 0;
    if (node->iarg[0] < 0) { /* all elements: the one gradient spreads */
        ag__add_reduced(d, dout, node->scalar);
        return 0;
    }
    int64_t outer, n, inner;
    ag__split_dim(d, (int)node->iarg[0], &outer, &n, &inner);
    if (d->dtype == AG_FLOAT32)
        ag__sum_dim_bwd_float(d->data, dout->data, outer, n, inner, node->scalar);
    else
        ag__sum_dim_bwd_double(d->data, dout->data, outer, n, inner, node->scalar);
    return 0;
}

static const ag__node_kind ag__sum0_kind = {"SumBackward0", ag__sum_backward};
static const ag__node_kind ag__sum1_kind = {"SumBackward1", ag__sum_backward};
static const ag__node_kind ag__mean0_kind = {"MeanBackward0", ag__sum_backward};
static const ag__node_kind ag__mean1_kind = {"MeanBackward1", ag__sum_backward};

static ag_tensor *ag__reduce(ag_ctx *ctx, ag_tensor *a, bool all, int dim, bool keepdim, bool mean, const char *name,
                             const ag__node_kind *kind) {
    if (ag__check_unary(ctx, a, name))
        return NULL;
    int d = -1;
    int64_t shape[AG_MAX_DIMS];
    int ndim = 0;
    int64_t outer = 1, n = a->numel, inner = 1;
    if (!all) {
        if (ag__normalize_dim(dim, a->ndim, &d))
            return NULL;
        if (a->ndim == 0)
            d = -1; /* a 0-dim tensor reduces to itself */
        else
            ag__split_dim(a, d, &outer, &n, &inner);
        for (int k = 0; k < a->ndim; k++) {
            if (k == d && !keepdim)
                continue;
            shape[ndim++] = k == d ? 1 : a->shape[k];
        }
    }
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, ndim, shape);
    if (!out)
        return NULL;
    /* mean of nothing is nan, as in PyTorch */
    double scale = mean ? (n > 0 ? 1.0 / (double)n : NAN) : 1.0;
    if (out->numel > 0) {
        if (a->dtype == AG_FLOAT32)
            ag__sum_dim_fwd_float(out->data, a->data, outer, n, inner, scale);
        else
            ag__sum_dim_fwd_double(out->data, a->data, outer, n, inner, scale);
    }
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins)) {
        ag_node *node = ag__record(ctx, kind, out, 1, ins);
        if (!node)
            return NULL;
        node->iarg[0] = d;
        node->scalar = scale;
    }
    return out;
}

ag_tensor *ag_sum(ag_ctx *ctx, ag_tensor *a) { return ag__reduce(ctx, a, true, 0, false, false, "ag_sum", &ag__sum0_kind); }
ag_tensor *ag_mean(ag_ctx *ctx, ag_tensor *a) {
    return ag__reduce(ctx, a, true, 0, false, true, "ag_mean", &ag__mean0_kind);
}
ag_tensor *ag_sum_dim(ag_ctx *ctx, ag_tensor *a, int dim, bool keepdim) {
    return ag__reduce(ctx, a, false, dim, keepdim, false, "ag_sum_dim", &ag__sum1_kind);
}
ag_tensor *ag_mean_dim(ag_ctx *ctx, ag_tensor *a, int dim, bool keepdim) {
    return ag__reduce(ctx, a, false, dim, keepdim, true, "ag_mean_dim", &ag__mean1_kind);
}

/* ==== max over all elements ====================================================
 * out = max(a) (nan if any element is nan). Backward, as PyTorch 1.13's
 * evenly_distribute_backward: the gradient is split evenly among the
 * elements equal to the maximum (all nan elements when it is nan). */

static int ag__max_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *d = dinp[0];
    if (!d)
        return 0;
    ag_tensor *a = ag__saved_get(node, 0), *r = ag__saved_get(node, 1);
    if (!a || !r)
        return ag_last_status();
    double m = ag__load(r, 0), g = ag__load(dout, 0);
    bool is_nan = isnan(m);
    int64_t count = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        double v = ag__load(a, i);
        count += is_nan ? isnan(v) : v == m;
    }
    double share = g / (double)count;
    for (int64_t i = 0; i < a->numel; i++) {
        double v = ag__load(a, i);
        if (is_nan ? isnan(v) : v == m)
            ag__store(d, i, ag__load(d, i) + share);
    }
    return 0;
}

static const ag__node_kind ag__max_kind = {"MaxBackward1", ag__max_backward};

ag_tensor *ag_max(ag_ctx *ctx, ag_tensor *a) {
    if (ag__check_unary(ctx, a, "ag_max"))
        return NULL;
    if (a->numel == 0)
        return ag__error_null(AG_EINVAL,
                              "max(): Expected reduction dim to be specified for input.numel() == 0. Specify "
                              "the reduction dim with the 'dim' argument.");
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, 0, NULL);
    if (!out)
        return NULL;
    double m = ag__load(a, 0);
    for (int64_t i = 1; i < a->numel && !isnan(m); i++) {
        double v = ag__load(a, i);
        if (isnan(v) || v > m)
            m = v;
    }
    ag__store(out, 0, m);
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins)) {
        ag_node *node = ag__record(ctx, &ag__max_kind, out, 1, ins);
        if (!node)
            return NULL;
        ag__save(node, 0, a, false);
        ag__save(node, 1, out, true);
    }
    return out;
}
