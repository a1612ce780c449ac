/* Ops that pick elements: min over all elements, max and min over a
 * dimension (values, and indices into a caller's array), argmax, where
 * and gather. Kernels in ops/select_kernels.inc; this file checks
 * arguments, records the nodes and keeps what backward needs. */
#include "ops/ops.h"

#include <inttypes.h>
#include <math.h>

#define AG__KERNELS "ops/select_kernels.inc"
#include "ops/kernel_template.h"

/* ==== min over all elements ======================================================
 * out () = min(a), nan if any element is nan; the gradient goes to the
 * elements equal to it, ties sharing it evenly, as ag_max. */

/* out = min(a):  da (=|+=) g / count where a == out */
static int ag__min_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                            ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *d = dinp[0], *a, *r;
    if (!d)
        return 0;
    if (!(a = ag__saved_get(node, 0)) || !(r = ag__saved_get(node, 1)))
        return ag_last_status();
    if (d->dtype == AG_FLOAT32)
        ag__evenly_bwd_f32(d->data, *(const float *)dout->data, a->data, *(const float *)r->data, a->numel, !fresh[0]);
    else
        ag__evenly_bwd_f64(d->data, *(const double *)dout->data, a->data, *(const double *)r->data, a->numel,
                           !fresh[0]);
    return 0;
}

static const ag__node_kind ag__min_kind = {.name = "MinBackward1", .backward = ag__min_backward, .writes_fresh = true};

ag_tensor *ag_min(ag_ctx *ctx, ag_tensor *a) {
    ag_tensor *in[1] = {a};
    ag__op op;
    if (ag__op_begin(&op, "ag_min", ctx, 1, in))
        return NULL;
    if (a->numel == 0)
        return ag__error_null(AG_EINVAL, "min(): Expected reduction dim to be specified for input.numel() == 0. "
                                         "Specify the reduction dim with the 'dim' argument.");
    ag_tensor *out = ag__op_output(&op, 0, NULL);
    if (!out)
        return NULL;
    if (a->dtype == AG_FLOAT32)
        *(float *)out->data = ag__min_fwd_f32(a->data, a->numel);
    else
        *(double *)out->data = ag__min_fwd_f64(a->data, a->numel);
    ag_node *node = ag__op_record(&op, &ag__min_kind);
    if (node) {
        ag__save(node, 0, a, false);
        ag__save(node, 1, out, true);
    }
    return ag__op_end(&op);
}

/* ==== max / min over a dimension ==================================================
 * a (outer, n, inner) around dim:  out (outer, inner) (keepdim: with a size-1
 * dim) = the max (min) over n, idx the index of the first such element. */

typedef struct {
    int dim;       /* normalised; 0 for a 0-dim input */
    int64_t idx[]; /* one per element of out: PyTorch saves the indices */
} ag__extreme_attr;
static ag__extreme_attr *ag__extreme_attr_of(ag_node *node) { return ag__node_attr(node); }

/* out[o, i] = a[o, idx[o, i], i]:  da[o, idx[o, i], i] (=|+=) g[o, i], 0 elsewhere */
static int ag__extreme_dim_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                    ag_ctx *scratch) {
    AG__UNUSED(scratch);
    const ag__extreme_attr *at = ag__extreme_attr_of(node);
    ag_tensor *d = dinp[0];
    if (!d)
        return 0;
    if (fresh[0]) /* a scatter */
        memset(d->data, 0, d->storage->nbytes);
    if (dout->numel == 0)
        return 0;
    int64_t outer, n, inner;
    ag__split(d, d->ndim ? at->dim : 0, &outer, &n, &inner);
    if (d->dtype == AG_FLOAT32)
        ag__extreme_dim_bwd_f32(d->data, dout->data, at->idx, outer, n, inner);
    else
        ag__extreme_dim_bwd_f64(d->data, dout->data, at->idx, outer, n, inner);
    return 0;
}

static const ag__node_kind ag__max_dim_kind = {.name = "MaxBackward0",
                                               .backward = ag__extreme_dim_backward,
                                               .attr_size = sizeof(ag__extreme_attr),
                                               .writes_fresh = true};
static const ag__node_kind ag__min_dim_kind = {.name = "MinBackward0",
                                               .backward = ag__extreme_dim_backward,
                                               .attr_size = sizeof(ag__extreme_attr),
                                               .writes_fresh = true};

/* The result's shape (*ndim, shape) of reducing a over dim, normalised into *d. */
static int ag__extreme_check(const ag_tensor *a, int dim, bool keepdim, const char *fn, int *d, int *ndim,
                             int64_t *shape) {
    if (ag__normalize_dim(dim, a->ndim, d))
        return AG_EINVAL;
    if (a->ndim > 0 && a->shape[*d] == 0 && a->numel == 0) {
        bool others_empty = false;
        for (int k = 0; k < a->ndim; k++)
            others_empty = others_empty || (k != *d && a->shape[k] == 0);
        if (!others_empty)
            return ag__error(AG_EINVAL, "%s(): Expected reduction dim %d to have non-zero size.", fn, *d);
    }
    *ndim = 0;
    for (int k = 0; k < a->ndim; k++)
        if (k != *d || keepdim)
            shape[(*ndim)++] = k == *d ? 1 : a->shape[k];
    return 0;
}

/* out and idx (out->numel entries) from a around dim d. */
static void ag__extreme_fwd(ag_tensor *out, int64_t *idx, const ag_tensor *a, int d, bool is_min) {
    if (out->numel == 0)
        return;
    int64_t outer, n, inner;
    ag__split(a, a->ndim ? d : 0, &outer, &n, &inner);
    if (a->dtype == AG_FLOAT32)
        ag__extreme_dim_fwd_f32(out->data, idx, a->data, outer, n, inner, is_min);
    else
        ag__extreme_dim_fwd_f64(out->data, idx, a->data, outer, n, inner, is_min);
}

static ag_tensor *ag__extreme_dim(ag_ctx *ctx, ag_tensor *a, int dim, bool keepdim, int64_t *indices, bool is_min) {
    const char *name = is_min ? "ag_min_dim" : "ag_max_dim";
    ag_tensor *in[1] = {a};
    ag__op op;
    int d, ndim;
    int64_t shape[AG_MAX_DIMS];
    if (ag__op_begin(&op, name, ctx, 1, in) ||
        ag__extreme_check(a, dim, keepdim, is_min ? "min" : "max", &d, &ndim, shape))
        return NULL;
    ag_tensor *out = ag__op_output(&op, ndim, shape);
    if (!out)
        return NULL;
    /* the indices go to the node (when recorded) and to the caller */
    size_t bytes = (size_t)out->numel * sizeof(int64_t);
    ag_node *node = ag__op_record_edges(&op, is_min ? &ag__min_dim_kind : &ag__max_dim_kind, 1, in, bytes);
    int64_t *idx = node ? ag__extreme_attr_of(node)->idx : indices;
    if (!node && !indices && !op.failed && out->numel > 0)
        idx = ag__ctx_alloc(ctx, bytes); /* wanted by no one, yet the kernel writes them */
    op.failed = op.failed || (out->numel > 0 && !idx);
    if (!op.failed) {
        ag__extreme_fwd(out, idx, a, d, is_min);
        if (node) {
            ag__extreme_attr_of(node)->dim = a->ndim ? d : 0;
            node->saved_scalar = true; /* the indices */
        }
        if (indices && idx != indices && out->numel > 0)
            memcpy(indices, idx, bytes);
    }
    return ag__op_end(&op);
}

ag_tensor *ag_max_dim(ag_ctx *ctx, ag_tensor *a, int dim, bool keepdim, int64_t *indices) {
    return ag__extreme_dim(ctx, a, dim, keepdim, indices, false);
}

ag_tensor *ag_min_dim(ag_ctx *ctx, ag_tensor *a, int dim, bool keepdim, int64_t *indices) {
    return ag__extreme_dim(ctx, a, dim, keepdim, indices, true);
}

/* ==== argmax ======================================================================
 * No tensor and no history: the indices of max_dim, computed into the
 * caller's array (argmax over all elements: of a flattened). */

static int ag__argmax(const ag_tensor *a, int dim, bool all, int64_t *indices, const char *name) {
    if (!a)
        return ag__null_code(name);
    if (!indices)
        return ag__error(AG_EINVAL, "%s: indices is NULL", name);
    if (all && a->numel == 0)
        return ag__error(AG_EINVAL, "argmax(): Expected reduction dim to be specified for input.numel() == 0.");
    int d = 0, ndim;
    int64_t shape[AG_MAX_DIMS];
    if (!all && ag__extreme_check(a, dim, false, "argmax", &d, &ndim, shape))
        return ag_last_status();
    int64_t outer = 1, n = a->numel, inner = 1;
    if (!all)
        ag__split(a, a->ndim ? d : 0, &outer, &n, &inner);
    if (outer == 0 || inner == 0 || n == 0)
        return 0;
    if (a->dtype == AG_FLOAT32)
        ag__argmax_dim_f32(indices, a->data, outer, n, inner);
    else
        ag__argmax_dim_f64(indices, a->data, outer, n, inner);
    return 0;
}

int64_t ag_argmax(const ag_tensor *a) {
    int64_t index = 0;
    int rc = ag__argmax(a, 0, true, &index, "ag_argmax");
    return rc ? rc : index;
}

int ag_argmax_dim(const ag_tensor *a, int dim, int64_t *indices) {
    return ag__argmax(a, dim, false, indices, "ag_argmax_dim");
}

/* ==== where =======================================================================
 * out (the broadcast shape of cond, a and b) = cond != 0 ? a : b. cond
 * takes no gradient; it is converted to out's dtype when it has another. */

/* out = where(c, a, b):  da (=|+=) sum-to-a(where(c, g, 0));  db (=|+=) sum-to-b(where(c, 0, g)) */
static int ag__where_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                              ag_ctx *scratch) {
    ag_tensor *c = ag__saved_get(node, 0);
    if (!c)
        return ag_last_status();
    for (int which = 0; which < 2; which++) {
        ag_tensor *d = dinp[which], *m;
        if (!d)
            continue;
        if (!(m = ag__tensor_like(scratch, dout)))
            return ag_last_status();
        if (dout->numel > 0) {
            const ag_tensor *ops[2] = {m, c};
            ag__iter it;
            ag__iter_init(&it, dout->ndim, dout->shape, 2, ops);
            const int64_t n = it.shape[it.ndim - 1], sc = it.stride[1][it.ndim - 1];
            for (ag__row r = ag__row_first(&it); r.i < r.n; ag__row_next(&it, &r)) {
                if (d->dtype == AG_FLOAT32)
                    ag__where_mask_row_f32((float *)m->data + r.off[0], (const float *)dout->data + r.off[0],
                                           (const float *)c->data + r.off[1], sc, n, which == 0);
                else
                    ag__where_mask_row_f64((double *)m->data + r.off[0], (const double *)dout->data + r.off[0],
                                           (const double *)c->data + r.off[1], sc, n, which == 0);
            }
        }
        ag__reduce_into(d, m, 1.0, !fresh[which]);
    }
    return 0;
}

static const ag__node_kind ag__where_kind = {
    .name = "WhereBackward0", .backward = ag__where_backward, .writes_fresh = true};

/* out = where(c, a, b), walked over out's shape with operands {out, c, a, b}. */
static void ag__where_fwd(ag_tensor *out, const ag_tensor *c, const ag_tensor *a, const ag_tensor *b) {
    const ag_tensor *ops[4] = {out, c, a, b};
    ag__iter it;
    ag__iter_init(&it, out->ndim, out->shape, 4, ops);
    const int l = it.ndim - 1;
    const int64_t n = it.shape[l], sc = it.stride[1][l], sa = it.stride[2][l], sb = it.stride[3][l];
    for (ag__row r = ag__row_first(&it); r.i < r.n; ag__row_next(&it, &r)) {
        if (out->dtype == AG_FLOAT32)
            ag__where_row_f32((float *)out->data + r.off[0], (const float *)c->data + r.off[1], sc,
                              (const float *)a->data + r.off[2], sa, (const float *)b->data + r.off[3], sb, n);
        else
            ag__where_row_f64((double *)out->data + r.off[0], (const double *)c->data + r.off[1], sc,
                              (const double *)a->data + r.off[2], sa, (const double *)b->data + r.off[3], sb, n);
    }
}

/* The broadcast shape of cond, a and b. */
static int ag__where_shape(const ag_tensor *c, const ag_tensor *a, const ag_tensor *b, int *ndim, int64_t *shape) {
    ag_tensor ab = {.ndim = 0};
    if (ag__broadcast_shape(a, b, &ab.ndim, ab.shape))
        return AG_ESHAPE;
    return ag__broadcast_shape(c, &ab, ndim, shape);
}

ag_tensor *ag_where(ag_ctx *ctx, ag_tensor *cond, ag_tensor *a, ag_tensor *b) {
    if (!cond)
        return ag__null_arg("ag_where");
    ag_tensor *in[2] = {a, b};
    ag__op op;
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    if (ag__op_begin_mixed(&op, "ag_where", ctx, 2, in) || ag__where_shape(cond, a, b, &ndim, shape) ||
        ag__op_promote(&op))
        return NULL;
    a = op.in[0], b = op.in[1];
    if (cond->dtype != a->dtype) { /* a condition takes no gradient */
        bool prev = ag_set_grad_enabled(false);
        cond = ag_to(ctx, cond, a->dtype);
        ag_set_grad_enabled(prev);
        op.failed = !cond;
    }
    ag_tensor *out = op.failed ? NULL : ag__op_output(&op, ndim, shape);
    if (out && out->numel > 0)
        ag__where_fwd(out, cond, a, b);
    ag_node *node = ag__op_record(&op, &ag__where_kind);
    if (node)
        ag__save(node, 0, cond, false);
    return ag__op_end(&op);
}

/* ==== gather ======================================================================
 * out (index's shape) with out[p] = a[p with p[dim] = index[p]]; a 0-dim
 * tensor counts as one of shape [1]. */

typedef struct {
    int dim, ndim; /* ndim >= 1 */
    int64_t ashape[AG_MAX_DIMS], ishape[AG_MAX_DIMS];
    int64_t n;       /* elements of index */
    int64_t index[]; /* PyTorch saves the index */
} ag__gather_attr;
static ag__gather_attr *ag__gather_attr_of(ag_node *node) { return ag__node_attr(node); }

/* out[p] = a[p with p[dim] = index[p]]:  da[p with p[dim] = index[p]] += g[p], 0 where no index points */
static int ag__gather_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                               ag_ctx *scratch) {
    AG__UNUSED(scratch);
    const ag__gather_attr *at = ag__gather_attr_of(node);
    ag_tensor *d = dinp[0];
    if (!d)
        return 0;
    if (fresh[0]) /* a scatter */
        memset(d->data, 0, d->storage->nbytes);
    if (dout->numel == 0)
        return 0;
    if (d->dtype == AG_FLOAT32)
        ag__gather_bwd_f32(d->data, dout->data, at->index, at->n, at->ndim, at->ashape, at->ishape, at->dim);
    else
        ag__gather_bwd_f64(d->data, dout->data, at->index, at->n, at->ndim, at->ashape, at->ishape, at->dim);
    return 0;
}

static const ag__node_kind ag__gather_kind = {.name = "GatherBackward0",
                                              .backward = ag__gather_backward,
                                              .attr_size = sizeof(ag__gather_attr),
                                              .writes_fresh = true};

/* The index's shape against a's (PyTorch's rules and messages); its
 * element count into *n, a's dim normalised into *d. */
static int ag__gather_check(const ag_tensor *a, int dim, int ndim, const int64_t *shape, const int64_t *index, int *d,
                            int64_t *n) {
    size_t bytes;
    if (ag__normalize_dim(dim, a->ndim, d))
        return AG_EINVAL;
    if (ndim < 0 || ndim > AG_MAX_DIMS || (ndim > 0 && !shape))
        return ag__error(AG_EINVAL, "ag_gather: bad index shape (ndim %d)", ndim);
    if ((ndim ? ndim : 1) != (a->ndim ? a->ndim : 1))
        return ag__error(AG_EINVAL, "Index tensor must have the same number of dimensions as input tensor");
    if (ag__check_shape(AG_FLOAT64, ndim, shape, n, &bytes)) /* int64 entries: 8 bytes, as a float64 */
        return ag_last_status();
    if (*n > 0 && !index)
        return ag__error(AG_EINVAL, "ag_gather: index is NULL");
    for (int k = 0; k < a->ndim && ndim == a->ndim && *n > 0; k++)
        if (k != *d && shape[k] > a->shape[k]) {
            char is[128], as[128];
            ag__shape_str(is, sizeof is, ndim, shape);
            ag__shape_str(as, sizeof as, a->ndim, a->shape);
            return ag__error(AG_ESHAPE,
                             "Size does not match at dimension %d expected index %s to be smaller than self %s "
                             "apart from dimension %d",
                             k, is, as, *d);
        }
    int64_t size = a->ndim ? a->shape[*d] : 1;
    for (int64_t e = 0; e < *n; e++)
        if (index[e] < 0 || index[e] >= size)
            return ag__error(AG_EINVAL, "index %" PRId64 " is out of bounds for dimension %d with size %" PRId64,
                             index[e], *d, size);
    return 0;
}

ag_tensor *ag_gather(ag_ctx *ctx, ag_tensor *a, int dim, int ndim, const int64_t *shape, const int64_t *index) {
    ag_tensor *in[1] = {a};
    ag__op op;
    int d;
    int64_t n;
    if (ag__op_begin(&op, "ag_gather", ctx, 1, in) || ag__gather_check(a, dim, ndim, shape, index, &d, &n))
        return NULL;
    ag_tensor *out = ag__op_output(&op, ndim, shape);
    if (!out)
        return NULL;
    int kdim = a->ndim ? a->ndim : 1;
    int64_t ashape[AG_MAX_DIMS] = {1}, ishape[AG_MAX_DIMS] = {1};
    for (int k = 0; k < a->ndim; k++)
        ashape[k] = a->shape[k];
    for (int k = 0; k < ndim; k++)
        ishape[k] = shape[k];
    if (n > 0 && a->dtype == AG_FLOAT32)
        ag__gather_fwd_f32(out->data, a->data, index, n, kdim, ashape, ishape, d);
    else if (n > 0)
        ag__gather_fwd_f64(out->data, a->data, index, n, kdim, ashape, ishape, d);
    ag_node *node = ag__op_record_edges(&op, &ag__gather_kind, 1, in, (size_t)n * sizeof(int64_t));
    if (node) {
        ag__gather_attr *at = ag__gather_attr_of(node);
        at->dim = d, at->ndim = kdim, at->n = n;
        memcpy(at->ashape, ashape, sizeof ashape);
        memcpy(at->ishape, ishape, sizeof ishape);
        memcpy(at->index, index, (size_t)n * sizeof(int64_t));
        node->saved_scalar = true; /* the index */
    }
    return ag__op_end(&op);
}
