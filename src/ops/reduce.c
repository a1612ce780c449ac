/* Reductions: sum and mean over all elements or one dimension, and max over
 * all elements. Sums accumulate in double for both dtypes; a mean is the sum
 * divided by the count, as PyTorch computes it (sum, then div_). Kernels in
 * ops/reduce_kernels.inc. */
#include "ops/grad_ops.h"
#include "ops/ops.h"

#include <math.h>

#define AG__KERNELS "ops/reduce_kernels.inc"
#include "ops/kernel_template.h"

/* ==== Long rows over the pool ====================================================
 * A big sum of one row (all elements, or a dimension with outer = inner =
 * 1) runs as a parallel-for: partial sums over chunks whose size depends on
 * n alone, added in chunk order, so the result never depends on the thread
 * count. Its backward (one value into every element) splits likewise. */

typedef struct {
    bool dbl, acc;
    const void *a;
    void *d;
    int64_t n, chunk;
    double v;        /* backward: the value written or added to every element */
    double *partial; /* forward: one per chunk */
} ag__sum_job;

static void ag__sum_chunks(void *arg, int64_t lo, int64_t hi) {
    const ag__sum_job *j = arg;
    for (int64_t c = lo; c < hi; c++) {
        int64_t e0 = c * j->chunk, e1 = e0 + j->chunk < j->n ? e0 + j->chunk : j->n;
        if (j->partial)
            j->partial[c] = j->dbl ? ag__sum_range_f64(j->a, e0, e1) : ag__sum_range_f32(j->a, e0, e1);
        else if (j->dbl)
            ag__fill_range_f64(j->d, e0, e1, j->v, j->acc);
        else
            ag__fill_range_f32(j->d, e0, e1, (float)j->v, j->acc);
    }
}

static int64_t ag__sum_chunk_size(int64_t n) {
    int64_t chunk = 1 << 15;
    if (n > chunk * AG__MAX_PARTIALS)
        chunk = (n + AG__MAX_PARTIALS - 1) / AG__MAX_PARTIALS;
    return chunk;
}

/* The sum of a[0:n], or false when n is too small to split. */
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

/* d[0:n] (=|+=) v, or false when n is too small to split. */
static bool ag__fill_row_par(void *d, bool dbl, int64_t n, double v, bool acc) {
    if (n < AG__PAR_REDUCE_MIN)
        return false;
    ag__sum_job j = {.dbl = dbl, .acc = acc, .d = d, .n = n, .chunk = ag__sum_chunk_size(n), .v = v};
    ag__parallel_for((n + j.chunk - 1) / j.chunk, 1, ag__sum_chunks, &j);
    return true;
}

/* ==== sum, sum_dim, mean, mean_dim ==============================================
 * out (outer, inner) = sum over k of a (outer, n, inner), divided by div
 * (1 for sums, n for means). mean_dim saves its input, as PyTorch 1.13's
 * MeanBackward1 does (so it cannot run twice without retain_graph, and an
 * in-place change of the input is caught); the other three save sizes only
 * and may run again. */

typedef struct {
    int dim;    /* the reduced dim (normalised); -1: all elements */
    double div; /* 1 for sums, the count for means */
} ag__sum_attr;
static ag__sum_attr *ag__sum_attr_of(ag_node *node) { return ag__node_attr(node); }

/* out = sum_k a[o, k, i] / div:  da[o, k, i] (=|+=) g[o, i] / div */
static int ag__sum_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                            ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *d = dinp[0];
    const ag__sum_attr *at = ag__sum_attr_of(node);
    if (!d)
        return 0;
    if (node->num_saved && !ag__saved_get(node, 0))
        return ag_last_status();
    if (d->numel == 0)
        return 0;
    int64_t outer = 1, n = d->numel, inner = 1;
    if (at->dim >= 0)
        ag__split(d, at->dim, &outer, &n, &inner);
    bool dbl = d->dtype == AG_FLOAT64;
    if (outer == 1 && inner == 1) {
        double v =
            dbl ? ((const double *)dout->data)[0] / at->div : (double)(((const float *)dout->data)[0] / (float)at->div);
        if (ag__fill_row_par(d->data, dbl, n, v, !fresh[0]))
            return 0;
    }
    if (dbl)
        ag__sum_dim_bwd_f64(d->data, dout->data, outer, n, inner, at->div, !fresh[0]);
    else
        ag__sum_dim_bwd_f32(d->data, dout->data, outer, n, inner, (float)at->div, !fresh[0]);
    return 0;
}

/* The same for create_graph (PyTorch's formulas):
 *   sum:       da = g.expand(a's shape)                          ExpandBackward0
 *   sum_dim:   da = g.unsqueeze(dim).expand(a's shape)           ExpandBackward0, UnsqueezeBackward0
 *   mean(_dim): the same divided by the count                    DivBackward1
 * (no unsqueeze with keepdim, or for a 0-dim input). */
static int ag__sum_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    if (!need[0])
        return 0;
    const ag_tensor *in = ag__edge_input(node, 0);
    const ag__sum_attr *at = ag__sum_attr_of(node);
    if (node->num_saved && !ag__saved_get(node, 0))
        return ag_last_status();
    ag_tensor *d = g;
    if (at->dim >= 0 && g->ndim < in->ndim)
        d = ag__unsqueeze(ctx, d, at->dim);
    d = ag_expand(ctx, d, in->ndim, in->shape);
    if (d && strncmp(node->kind->name, "Mean", 4) == 0) /* even by a count of 1 */
        d = ag__div_scalar1(ctx, d, at->div);
    return ag__graph_result(dinp[0] = d);
}

#define AG__SUM_KIND(lname, Name)                                                                                      \
    static const ag__node_kind lname = {.name = Name,                                                                  \
                                        .backward = ag__sum_backward,                                                  \
                                        .backward_graph = ag__sum_backward_graph,                                      \
                                        .attr_size = sizeof(ag__sum_attr),                                             \
                                        .writes_fresh = true}
AG__SUM_KIND(ag__sum0_kind, "SumBackward0");
AG__SUM_KIND(ag__sum1_kind, "SumBackward1");
AG__SUM_KIND(ag__mean0_kind, "MeanBackward0");
AG__SUM_KIND(ag__mean1_kind, "MeanBackward1");

/* out = the reduction of a (outer, n, inner) over k, divided by div */
static void ag__reduce_fwd(ag_tensor *out, const ag_tensor *a, int64_t outer, int64_t n, int64_t inner, double div) {
    bool dbl = a->dtype == AG_FLOAT64;
    double total;
    if (out->numel == 1 && outer == 1 && inner == 1 && ag__sum_row_par(a->data, dbl, n, &total)) {
        if (dbl)
            ((double *)out->data)[0] = total / div;
        else
            ((float *)out->data)[0] = (float)total / (float)div;
    } else if (a->numel == 0) {
        /* sums of nothing are 0, means 0 / 0 = nan, as in PyTorch; no split
         * of an empty shape (core/checked.h) */
        for (int64_t i = 0; i < out->numel; i++)
            if (dbl)
                ((double *)out->data)[i] = div == 1 ? 0.0 : NAN;
            else
                ((float *)out->data)[i] = div == 1 ? 0.0f : NAN;
    } else if (out->numel > 0) {
        if (dbl)
            ag__sum_dim_fwd_f64(out->data, a->data, outer, n, inner, div);
        else
            ag__sum_dim_fwd_f32(out->data, a->data, outer, n, inner, (float)div);
    }
}

static ag_tensor *ag__reduce(ag_ctx *ctx, ag_tensor *a, bool all, int dim, bool keepdim, bool mean, const char *name,
                             const ag__node_kind *kind) {
    ag_tensor *in[1] = {a};
    ag__op op;
    int d = -1;
    if (ag__op_begin(&op, name, ctx, 1, in) || (!all && ag__normalize_dim(dim, a->ndim, &d)))
        return NULL;
    int64_t shape[AG_MAX_DIMS], outer = 1, n = a->numel, inner = 1;
    int ndim = 0;
    if (!all && a->ndim == 0)
        d = -1; /* a 0-dim tensor reduces to itself */
    else if (!all)
        ag__split(a, d, &outer, &n, &inner);
    for (int k = 0; !all && k < a->ndim; k++)
        if (k != d || keepdim)
            shape[ndim++] = k == d ? 1 : a->shape[k];
    ag_tensor *out = ag__op_output(&op, ndim, shape);
    if (!out)
        return NULL;
    a = op.in[0]; /* made contiguous by ag__op_output */

    double div = mean ? (double)n : 1.0; /* the mean of nothing is 0 / 0 = nan, as in PyTorch */
    ag__reduce_fwd(out, a, outer, n, inner, div);
    ag_node *node = ag__op_record(&op, kind);
    if (node) {
        *ag__sum_attr_of(node) = (ag__sum_attr){d, div};
        if (kind == &ag__mean1_kind)
            ag__save(node, 0, a, false);
    }
    return ag__op_end(&op);
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
 * out () = max(a), nan if any element is nan; the gradient goes to the
 * elements equal to it, ties sharing it evenly (reduce_kernels.inc). */

/* out = max(a):  da (=|+=) g / count where a == out */
static int ag__max_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                            ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *d = dinp[0], *a, *r;
    if (!d)
        return 0;
    if (!(a = ag__saved_get(node, 0)) || !(r = ag__saved_get(node, 1)))
        return ag_last_status();
    if (d->dtype == AG_FLOAT32)
        ag__max_bwd_f32(d->data, *(const float *)dout->data, a->data, *(const float *)r->data, a->numel, !fresh[0]);
    else
        ag__max_bwd_f64(d->data, *(const double *)dout->data, a->data, *(const double *)r->data, a->numel, !fresh[0]);
    return 0;
}

/* create_graph: PyTorch's evenly_distribute_backward on the CPU,
 * zeros.masked_fill_(a == out, g / count) (MaskedFillBackward1,
 * DivBackward0); a nan maximum picks the nan elements. */
static int ag__max_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    ag_tensor *a, *r;
    if (!need[0])
        return 0;
    if (!(a = ag__saved_get(node, 0)) || !(r = ag__saved_get(node, 1)))
        return ag_last_status();
    ag_tensor *mask = ag__tensor_like(ctx, a);
    if (!mask)
        return ag_last_status();
    double m = ag__load(r, 0), count = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        double v = ag__load(a, i);
        bool hit = isnan(m) ? isnan(v) : v == m;
        ag__store(mask, i, hit);
        count += hit;
    }
    ag_tensor *c = ag_scalar(ctx, g->dtype, count);
    return ag__graph_result(dinp[0] = ag__masked_fill1(ctx, mask, ag_div(ctx, g, c)));
}

static const ag__node_kind ag__max_kind = {.name = "MaxBackward1",
                                           .backward = ag__max_backward,
                                           .backward_graph = ag__max_backward_graph,
                                           .writes_fresh = true};

static int ag__max_check(const ag_tensor *a) {
    if (a->numel == 0)
        return ag__error(AG_EINVAL, "max(): Expected reduction dim to be specified for input.numel() == 0. Specify "
                                    "the reduction dim with the 'dim' argument.");
    return 0;
}

ag_tensor *ag_max(ag_ctx *ctx, ag_tensor *a) {
    ag_tensor *in[1] = {a};
    ag__op op;
    if (ag__op_begin(&op, "ag_max", ctx, 1, in) || ag__max_check(a))
        return NULL;
    ag_tensor *out = ag__op_output(&op, 0, NULL);
    if (!out)
        return NULL;
    a = op.in[0]; /* contiguous */
    if (a->dtype == AG_FLOAT32)
        *(float *)out->data = ag__max_fwd_f32(a->data, a->numel);
    else
        *(double *)out->data = ag__max_fwd_f64(a->data, a->numel);
    ag_node *node = ag__op_record(&op, &ag__max_kind);
    if (node) {
        ag__save(node, 0, a, false);
        ag__save(node, 1, out, true);
    }
    return ag__op_end(&op);
}
