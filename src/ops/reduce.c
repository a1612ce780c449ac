/* Reductions: sum and mean over all elements or one dimension, and max over
 * all elements. Sums accumulate in double for both dtypes; a mean is the sum
 * divided by the count, as PyTorch computes it (sum, then div_). */
#include "ops/grad_ops.h"
#include "ops/ops.h"

#include <math.h>

/* The reduced dimension splits a tensor into (outer, n, inner) (ag__split):
 * element (o, k, i) sits at (o * n + k) * inner + i. A reduction over all
 * elements is the split (1, numel, 1). */

/* ==== sum, sum_dim, mean, mean_dim ==============================================
 * out (outer, inner) = sum over k of a (outer, n, inner), divided by div
 * (1 for sums, n for means). */
#define AG__SUM_DIM(T)                                                                                                 \
    static void ag__sum_dim_fwd_##T(T *out, const T *a, int64_t outer, int64_t n, int64_t inner, T div) {              \
        for (int64_t o = 0; o < outer; o++) {                                                                          \
            if (inner == 1) {                                                                                          \
                const T *src = a + o * n;                                                                              \
                double acc = 0;                                                                                        \
                _Pragma("omp simd reduction(+ : acc)") for (int64_t k = 0; k < n; k++) acc += src[k];                  \
                out[o] = (T)acc / div;                                                                                 \
                continue;                                                                                              \
            }                                                                                                          \
            /* rows of inner elements: add whole rows so the loop vectorizes */                                        \
            T *row = out + o * inner;                                                                                  \
            for (int64_t i = 0; i < inner; i++)                                                                        \
                row[i] = 0;                                                                                            \
            for (int64_t k = 0; k < n; k++) {                                                                          \
                const T *src = a + (o * n + k) * inner;                                                                \
                _Pragma("omp simd") for (int64_t i = 0; i < inner; i++) row[i] += src[i];                              \
            }                                                                                                          \
            if (div != 1)                                                                                              \
                for (int64_t i = 0; i < inner; i++)                                                                    \
                    row[i] /= div;                                                                                     \
        }                                                                                                              \
    }                                                                                                                  \
    /* out[o, i] = sum_k a[o, k, i] / div   =>   da[o, k, i] += g[o, i] / div */                                       \
    static void ag__sum_dim_bwd_##T(T *da, const T *g, int64_t outer, int64_t n, int64_t inner, T div) {               \
        for (int64_t o = 0; o < outer; o++) {                                                                          \
            const T *gg = g + o * inner;                                                                               \
            if (inner == 1) {                                                                                          \
                const T v = gg[0] / div;                                                                               \
                T *d = da + o * n;                                                                                     \
                _Pragma("omp simd") for (int64_t k = 0; k < n; k++) d[k] += v;                                         \
                continue;                                                                                              \
            }                                                                                                          \
            for (int64_t k = 0; k < n; k++) {                                                                          \
                T *d = da + (o * n + k) * inner;                                                                       \
                _Pragma("omp simd") for (int64_t i = 0; i < inner; i++) d[i] += gg[i] / div;                           \
            }                                                                                                          \
        }                                                                                                              \
    }
AG__SUM_DIM(float)
AG__SUM_DIM(double)

/* A big sum of one row (all elements, or a dimension with outer = inner =
 * 1) runs as a parallel-for: partial sums over chunks whose size depends on
 * n alone, added in chunk order, so the result never depends on the thread
 * count. Its backward (adding one value to every element) splits likewise. */

typedef struct {
    bool dbl;
    const void *a;
    void *d;
    int64_t n, chunk;
    double v;        /* backward: the value added to every element */
    double *partial; /* forward: one per chunk */
} ag__sum_job;

static void ag__sum_chunks(void *arg, int64_t lo, int64_t hi) {
    const ag__sum_job *j = arg;
    for (int64_t c = lo; c < hi; c++) {
        int64_t e0 = c * j->chunk, e1 = e0 + j->chunk < j->n ? e0 + j->chunk : j->n;
        double acc = 0;
        if (j->partial && j->dbl) {
            const double *a = j->a;
            _Pragma("omp simd reduction(+ : acc)") for (int64_t k = e0; k < e1; k++) acc += a[k];
            j->partial[c] = acc;
        } else if (j->partial) {
            const float *a = j->a;
            _Pragma("omp simd reduction(+ : acc)") for (int64_t k = e0; k < e1; k++) acc += a[k];
            j->partial[c] = acc;
        } else if (j->dbl) {
            double *d = j->d;
            const double v = j->v;
            _Pragma("omp simd") for (int64_t k = e0; k < e1; k++) d[k] += v;
        } else {
            float *d = j->d;
            const float v = (float)j->v;
            _Pragma("omp simd") for (int64_t k = e0; k < e1; k++) d[k] += v;
        }
    }
}

static int64_t ag__sum_chunk_size(int64_t n) {
    int64_t chunk = 1 << 15;
    if (n > chunk * AG__MAX_PARTIALS)
        chunk = (n + AG__MAX_PARTIALS - 1) / AG__MAX_PARTIALS;
    return chunk;
}

/* The sum of a[0:n] (nb of them double), or false when n is too small to split. */
static bool ag__sum_row_par(const void *a, bool dbl, int64_t n, double *out) {
    if (n < AG__PAR_REDUCE_MIN)
        return false;
    double partial[AG__MAX_PARTIALS];
    ag__sum_job j = {.dbl = dbl, .a = a, .n = n, .chunk = ag__sum_chunk_size(n), .partial = partial};
    int64_t chunks = (n + j.chunk - 1) / j.chunk;
    ag__parallel_for(chunks, 1, ag__sum_chunks, &j);
    double acc = 0;
    for (int64_t c = 0; c < chunks; c++)
        acc += partial[c];
    *out = acc;
    return true;
}

static bool ag__add_value_par(void *d, bool dbl, int64_t n, double v) {
    if (n < AG__PAR_REDUCE_MIN)
        return false;
    ag__sum_job j = {.dbl = dbl, .d = d, .n = n, .chunk = ag__sum_chunk_size(n), .v = v};
    ag__parallel_for((n + j.chunk - 1) / j.chunk, 1, ag__sum_chunks, &j);
    return true;
}

/* iarg[0]: the reduced dim (normalised), -1 for all elements; scalar: the
 * divisor (1 for sums, the count for means). mean_dim saves its input, as
 * PyTorch 1.13's MeanBackward1 does (so it cannot run twice without
 * retain_graph, and an in-place change of the input is caught); the other
 * three save sizes only and may run again. */
static int ag__sum_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *d = dinp[0];
    if (!d)
        return 0;
    if (node->num_saved && !ag__saved_get(node, 0))
        return ag_last_status();
    if (d->numel == 0)
        return 0;
    int64_t outer = 1, n = d->numel, inner = 1;
    if (node->iarg[0] >= 0)
        ag__split(d, (int)node->iarg[0], &outer, &n, &inner);
    if (outer == 1 && inner == 1) {
        double v = d->dtype == AG_FLOAT32 ? (double)(((const float *)dout->data)[0] / (float)node->scalar)
                                          : ((const double *)dout->data)[0] / node->scalar;
        if (ag__add_value_par(d->data, d->dtype == AG_FLOAT64, n, v))
            return 0;
    }
    if (d->dtype == AG_FLOAT32)
        ag__sum_dim_bwd_float(d->data, dout->data, outer, n, inner, (float)node->scalar);
    else
        ag__sum_dim_bwd_double(d->data, dout->data, outer, n, inner, node->scalar);
    return 0;
}

/* The same for create_graph, over all elements (PyTorch's formulas):
 *   sum:   da = g.expand(a's shape)                       ExpandBackward0
 *   mean:  da = g.expand(a's shape) / a.numel()           DivBackward1 */
static int ag__sum_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    if (!need[0])
        return 0;
    const ag_tensor *in = ag__edge_input(node, 0);
    return ag__graph_result(dinp[0] = ag_expand(ctx, g, in->ndim, in->shape));
}
static int ag__mean_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    if (!need[0])
        return 0;
    const ag_tensor *in = ag__edge_input(node, 0);
    return ag__graph_result(dinp[0] = ag__div_scalar1(ctx, ag_expand(ctx, g, in->ndim, in->shape), (double)in->numel));
}

static const ag__node_kind ag__sum0_kind = {"SumBackward0", ag__sum_backward, ag__sum_backward_graph};
static const ag__node_kind ag__sum1_kind = {"SumBackward1", ag__sum_backward, NULL};
static const ag__node_kind ag__mean0_kind = {"MeanBackward0", ag__sum_backward, ag__mean_backward_graph};
static const ag__node_kind ag__mean1_kind = {"MeanBackward1", ag__sum_backward, NULL};

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
            ag__split(a, d, &outer, &n, &inner);
        for (int k = 0; k < a->ndim; k++) {
            if (k == d && !keepdim)
                continue;
            shape[ndim++] = k == d ? 1 : a->shape[k];
        }
    }
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, ndim, shape);
    if (!out)
        return NULL;
    /* the mean of nothing is 0 / 0 = nan, as in PyTorch */
    double div = mean ? (double)n : 1.0;
    double total;
    if (out->numel == 1 && outer == 1 && inner == 1 && ag__sum_row_par(a->data, a->dtype == AG_FLOAT64, n, &total)) {
        if (a->dtype == AG_FLOAT32)
            ((float *)out->data)[0] = (float)total / (float)div;
        else
            ((double *)out->data)[0] = total / div;
    } else if (a->numel == 0) {
        /* sums of nothing are 0, means 0 / 0 = nan; no split of an empty
         * shape (core/checked.h) */
        for (int64_t i = 0; i < out->numel; i++)
            ag__store(out, i, mean ? NAN : 0.0);
    } else if (out->numel > 0) {
        if (a->dtype == AG_FLOAT32)
            ag__sum_dim_fwd_float(out->data, a->data, outer, n, inner, (float)div);
        else
            ag__sum_dim_fwd_double(out->data, a->data, outer, n, inner, div);
    }
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins)) {
        ag_node *node = ag__record(ctx, kind, out, 1, ins);
        if (!node)
            return NULL;
        node->iarg[0] = d;
        node->scalar = div;
        if (kind == &ag__mean1_kind)
            ag__save(node, 0, a, false);
    }
    return out;
}

ag_tensor *ag_sum(ag_ctx *ctx, ag_tensor *a) {
    return ag__reduce(ctx, a, true, 0, false, false, "ag_sum", &ag__sum0_kind);
}
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
 * r = max(a), nan if any element is nan. Backward, as PyTorch 1.13's
 * evenly_distribute_backward(grad, a, r):
 *   mask = (a == r) | (isnan(a) & isnan(r));  da += mask * (g / mask.sum())
 * so ties share the gradient evenly. */
#define AG__MAX(T)                                                                                                     \
    static T ag__max_fwd_##T(const T *a, int64_t n) {                                                                  \
        T m = a[0];                                                                                                    \
        for (int64_t i = 1; i < n && !isnan(m); i++)                                                                   \
            if (isnan(a[i]) || a[i] > m)                                                                               \
                m = a[i];                                                                                              \
        return m;                                                                                                      \
    }                                                                                                                  \
    static void ag__max_bwd_##T(T *da, T g, const T *a, T r, int64_t n) {                                              \
        const bool r_nan = isnan(r);                                                                                   \
        int64_t count = 0;                                                                                             \
        for (int64_t i = 0; i < n; i++)                                                                                \
            count += a[i] == r || (r_nan && isnan(a[i]));                                                              \
        const T share = g / (T)count;                                                                                  \
        for (int64_t i = 0; i < n; i++)                                                                                \
            if (a[i] == r || (r_nan && isnan(a[i])))                                                                   \
                da[i] += share;                                                                                        \
    }
AG__MAX(float)
AG__MAX(double)

static int ag__max_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *d = dinp[0];
    if (!d)
        return 0;
    ag_tensor *a, *r;
    if (!(a = ag__saved_get(node, 0)) || !(r = ag__saved_get(node, 1)))
        return ag_last_status();
    if (d->dtype == AG_FLOAT32)
        ag__max_bwd_float(d->data, *(const float *)dout->data, a->data, *(const float *)r->data, a->numel);
    else
        ag__max_bwd_double(d->data, *(const double *)dout->data, a->data, *(const double *)r->data, a->numel);
    return 0;
}

static const ag__node_kind ag__max_kind = {"MaxBackward1", ag__max_backward, NULL};

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
    if (a->dtype == AG_FLOAT32)
        *(float *)out->data = ag__max_fwd_float(a->data, a->numel);
    else
        *(double *)out->data = ag__max_fwd_double(a->data, a->numel);
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
