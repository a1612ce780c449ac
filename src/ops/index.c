/* Ops that select, join or replicate: index_select and embedding, cat,
 * narrow, expand, and batched matmul with broadcast batch dimensions.
 * agrad tensors are contiguous, so each result is a copy. Gradient
 * kernels in ops/index_kernels.inc. */
#include "ops/grad_ops.h"
#include "ops/ops.h"

#include <inttypes.h>

#define AG__KERNELS "ops/index_kernels.inc"
#include "ops/kernel_template.h"

/* ==== index_select / embedding ==================================================
 * a (outer, n, inner) around dim; out (outer, k, inner) with
 * out[o, j, i] = a[o, index[j], i]. */

typedef struct {
    int dim;
    int64_t k;       /* entries of index */
    int64_t index[]; /* PyTorch saves the index */
} ag__index_attr;
static ag__index_attr *ag__index_attr_of(ag_node *node) { return ag__node_attr(node); }

/* out[o, j, i] = a[o, index[j], i]  (rows of inner elements, copied as bytes) */
static void ag__gather_rows(ag_tensor *out, const ag_tensor *a, const int64_t *index, int64_t k, int dim) {
    int64_t outer, n, inner;
    ag__split(a, dim, &outer, &n, &inner);
    size_t es = ag__dtype_size(a->dtype), row = (size_t)inner * es;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < k; j++)
            memcpy((char *)out->data + (size_t)(o * k + j) * row,
                   (const char *)a->data + (size_t)(o * n + index[j]) * row, row);
}

/* out[o, j, i] = a[o, index[j], i]:  da[o, index[j], i] += g[o, j, i], 0 where no index points */
static int ag__index_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                              ag_ctx *scratch) {
    AG__UNUSED(scratch);
    const ag__index_attr *at = ag__index_attr_of(node);
    ag_tensor *d = dinp[0];
    if (ag__node_check_released(node))
        return ag_last_status();
    if (!d)
        return 0;
    if (fresh[0]) /* a scatter */
        memset(d->data, 0, d->storage->nbytes);
    if (dout->numel == 0)
        return 0;
    int64_t outer, n, inner;
    ag__split(d, at->dim, &outer, &n, &inner);
    if (d->dtype == AG_FLOAT32)
        ag__scatter_rows_f32(d->data, dout->data, at->index, at->k, outer, n, inner);
    else
        ag__scatter_rows_f64(d->data, dout->data, at->index, at->k, outer, n, inner);
    return 0;
}

/* create_graph: da = zeros.index_add_(dim, index, g) (IndexAddBackward0;
 * embedding: EmbeddingDenseBackwardBackward0). */
static int ag__index_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    ag__index_attr *at = ag__index_attr_of(node);
    if (ag__node_check_released(node))
        return ag_last_status();
    if (!need[0])
        return 0;
    const ag_tensor *in = ag__edge_input(node, 0);
    bool emb = node->kind->name[0] == 'E';
    return ag__graph_result(dinp[0] = ag__index_add(ctx, g, at->dim, at->index, at->k, in->shape[at->dim], emb));
}

static const ag__node_kind ag__index_select_kind = {.name = "IndexSelectBackward0",
                                                    .backward = ag__index_backward,
                                                    .backward_graph = ag__index_backward_graph,
                                                    .attr_size = sizeof(ag__index_attr),
                                                    .writes_fresh = true};
static const ag__node_kind ag__embedding_kind = {.name = "EmbeddingBackward0",
                                                 .backward = ag__index_backward,
                                                 .backward_graph = ag__index_backward_graph,
                                                 .attr_size = sizeof(ag__index_attr),
                                                 .writes_fresh = true};

static int ag__index_check(const ag_tensor *a, int dim, const int64_t *index, int64_t k, const char *name, int *d) {
    if (ag__normalize_dim(dim, a->ndim, d))
        return AG_EINVAL;
    if (a->ndim == 0)
        return ag__error(AG_EINVAL, "%s: a 0-dim tensor has no dimension to index", name);
    if (k < 0 || (k > 0 && !index))
        return ag__error(AG_EINVAL, "%s: bad index array", name);
    for (int64_t j = 0; j < k; j++)
        if (index[j] < 0 || index[j] >= a->shape[*d])
            return ag__error(AG_EINVAL, "index out of range in self");
    return 0;
}

static ag_tensor *ag__index(ag_ctx *ctx, ag_tensor *a, int dim, const int64_t *index, int64_t k, const char *name,
                            const ag__node_kind *kind) {
    ag_tensor *in[1] = {a};
    int d = 0;
    ag__op op;
    if (ag__op_begin(&op, name, ctx, 1, in) || ag__index_check(a, dim, index, k, name, &d))
        return NULL;
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[d] = k;
    ag_tensor *out = ag__op_output(&op, a->ndim, shape);
    if (!out)
        return NULL;
    a = op.in[0]; /* contiguous */
    if (out->numel > 0)
        ag__gather_rows(out, a, index, k, d);
    size_t extra;
    if (__builtin_mul_overflow((size_t)k, sizeof(int64_t), &extra))
        extra = SIZE_MAX; /* refused by the node's allocation */
    ag_node *node = ag__op_record_edges(&op, kind, 1, in, extra);
    if (node) {
        ag__index_attr *at = ag__index_attr_of(node);
        at->dim = d;
        at->k = k;
        if (k > 0)
            memcpy(at->index, index, (size_t)k * sizeof *index);
        node->saved_scalar = true; /* the index counts as saved */
    }
    return ag__op_end(&op);
}

ag_tensor *ag_index_select(ag_ctx *ctx, ag_tensor *a, int dim, const int64_t *index, int64_t n) {
    return ag__index(ctx, a, dim, index, n, "ag_index_select", &ag__index_select_kind);
}

ag_tensor *ag_embedding(ag_ctx *ctx, ag_tensor *weight, const int64_t *ids, int64_t n) {
    if (weight && weight->ndim != 2)
        return ag__error_null(AG_ESHAPE, "ag_embedding: weight must be 2-D (num_embeddings, embedding_dim)");
    return ag__index(ctx, weight, 0, ids, n, "ag_embedding", &ag__embedding_kind);
}

/* ==== cat ==========================================================================
 * out (outer, sum n_t, inner) = the inputs (outer, n_t, inner) side by side
 * along dim. */

typedef struct {
    int dim;
    int64_t size[]; /* each input's size along dim */
} ag__cat_attr;
static ag__cat_attr *ag__cat_attr_of(ag_node *node) { return ag__node_attr(node); }

/* out[o, start_t + k, i] = input_t[o, k, i]:  d(input t) (=|+=) g[o, start_t + k, i] */
static int ag__cat_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                            ag_ctx *scratch) {
    AG__UNUSED(scratch);
    const ag__cat_attr *at = ag__cat_attr_of(node);
    int64_t start = 0, outer, n, inner;
    ag__split(dout, at->dim, &outer, &n, &inner);
    for (int t = 0; t < node->num_next; t++) {
        ag_tensor *d = dinp[t];
        if (d && d->numel > 0 && d->dtype == AG_FLOAT32)
            ag__slab_get_f32(d->data, dout->data, outer, n, at->size[t], start, inner, !fresh[t]);
        else if (d && d->numel > 0)
            ag__slab_get_f64(d->data, dout->data, outer, n, at->size[t], start, inner, !fresh[t]);
        start += at->size[t];
    }
    return 0;
}

/* create_graph: each input's gradient is its slice of g (SliceBackward0). */
static int ag__cat_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    ag__cat_attr *at = ag__cat_attr_of(node);
    int64_t start = 0;
    for (int t = 0; t < node->num_next; t++) {
        int rc;
        if (need[t] && (rc = ag__graph_result(dinp[t] = ag_narrow(ctx, g, at->dim, start, at->size[t]))))
            return rc;
        start += at->size[t];
    }
    return 0;
}

static const ag__node_kind ag__cat_kind = {.name = "CatBackward0",
                                           .backward = ag__cat_backward,
                                           .backward_graph = ag__cat_backward_graph,
                                           .attr_size = sizeof(ag__cat_attr),
                                           .writes_fresh = true};

/* The inputs agree in dtype, rank and every size but dim's (normalised
 * into *d), whose sizes add up to *total. */
static int ag__cat_check(ag_tensor *const *ts, int n, int dim, int *d, int64_t *total) {
    const ag_tensor *first = ts[0];
    if (ag__normalize_dim(dim, first->ndim, d))
        return AG_EINVAL;
    if (first->ndim == 0)
        return ag__error(AG_EINVAL, "zero-dimensional tensor (at position 0) cannot be concatenated");
    *total = 0;
    for (int t = 0; t < n; t++) {
        const ag_tensor *x = ts[t];
        if (x->ndim != first->ndim)
            return ag__error(AG_ESHAPE, "Tensors must have same number of dimensions: got %d and %d", first->ndim,
                             x->ndim);
        for (int k = 0; k < x->ndim; k++)
            if (k != *d && x->shape[k] != first->shape[k])
                return ag__error(AG_ESHAPE,
                                 "Sizes of tensors must match except in dimension %d. Expected size %" PRId64
                                 " but got size %" PRId64 " for tensor number %d in the list.",
                                 *d, first->shape[k], x->shape[k], t);
        if (!ag__add_ok(*total, x->shape[*d], total))
            return ag__error(AG_ENOMEM,
                             "torch.cat(): the sizes along dimension %d add up to more than %" PRId64
                             " (at tensor number %d)",
                             *d, INT64_MAX, t);
    }
    return 0;
}

/* out[o, start_t + k, i] = input_t[o, k, i], as bytes */
static void ag__cat_fwd(ag_tensor *out, ag_tensor *const *ts, int n, int d) {
    int64_t start = 0, outer, total, inner;
    ag__split(out, d, &outer, &total, &inner);
    size_t es = ag__dtype_size(out->dtype);
    for (int t = 0; t < n; t++) {
        int64_t sn = ts[t]->shape[d];
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)out->data + (size_t)((o * total + start) * inner) * es,
                   (const char *)ts[t]->data + (size_t)(o * sn * inner) * es, (size_t)(sn * inner) * es);
        start += sn;
    }
}

ag_tensor *ag_cat(ag_ctx *ctx, ag_tensor *const *ts, int n, int dim) {
    if (!ts || n <= 0)
        return ag__error_null(AG_EINVAL, "torch.cat(): expected a non-empty list of Tensors");
    for (int t = 0; t < n; t++)
        if (!ts[t] || ag__check_alive(ts[t], "ag_cat"))
            return ts[t] ? NULL : ag__null_arg("ag_cat");
    int d = 0;
    int64_t total = 0;
    ag__op op;
    if (ag__op_begin_mixed(&op, "ag_cat", ctx, n, ts) || ag__cat_check(ts, n, dim, &d, &total) || ag__op_promote(&op))
        return NULL;
    ts = op.in;
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, ts[0]->shape, sizeof shape);
    shape[d] = total;
    op.strided = true; /* the stand-ins below, for the kernel only */
    ag_tensor *out = ag__op_output(&op, ts[0]->ndim, shape);
    if (!out)
        return NULL;
    ag_tensor *const *cs = ag__op_standins(&op, n, ts); /* contiguous */
    if (cs && out->numel > 0)
        ag__cat_fwd(out, cs, n, d);
    ag_node *node = ag__op_record_edges(&op, &ag__cat_kind, n, ts, (size_t)n * sizeof(int64_t));
    if (node) {
        ag__cat_attr *at = ag__cat_attr_of(node);
        at->dim = d;
        for (int t = 0; t < n; t++)
            at->size[t] = ts[t]->shape[d];
    }
    return ag__op_end(&op);
}

/* ==== narrow =======================================================================
 * out (outer, length, inner) = a (outer, n, inner)[o, start + k, i]. */

typedef struct {
    int dim;
    int64_t start; /* normalised */
} ag__narrow_attr;
static ag__narrow_attr *ag__narrow_attr_of(ag_node *node) { return ag__node_attr(node); }

/* out[o, k, i] = a[o, start + k, i]:  da[o, start + k, i] (=|+=) g[o, k, i], 0 elsewhere */
static int ag__narrow_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                               ag_ctx *scratch) {
    AG__UNUSED(scratch);
    const ag__narrow_attr *at = ag__narrow_attr_of(node);
    ag_tensor *d = dinp[0];
    if (!d || d->numel == 0)
        return 0;
    int64_t outer, n, inner, sn = dout->ndim ? dout->shape[at->dim] : 1;
    ag__split(d, at->dim, &outer, &n, &inner);
    if (d->dtype == AG_FLOAT32)
        ag__slab_put_f32(d->data, dout->data, outer, n, sn, at->start, inner, !fresh[0]);
    else
        ag__slab_put_f64(d->data, dout->data, outer, n, sn, at->start, inner, !fresh[0]);
    return 0;
}

/* create_graph: da = slice_backward(g) (SliceBackwardBackward0). */
static int ag__narrow_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    const ag__narrow_attr *at = ag__narrow_attr_of(node);
    if (!need[0])
        return 0;
    const ag_tensor *in = ag__edge_input(node, 0);
    return ag__graph_result(dinp[0] = ag__slice_grad(ctx, g, in->ndim, in->shape, at->dim, at->start));
}

static const ag__node_kind ag__narrow_kind = {.name = "SliceBackward0",
                                              .backward = ag__narrow_backward,
                                              .backward_graph = ag__narrow_backward_graph,
                                              .attr_size = sizeof(ag__narrow_attr),
                                              .writes_fresh = true};

/* The slice [start, start + length) of a's dim d: *start normalised. */
static int ag__narrow_check(const ag_tensor *a, int dim, int64_t *start, int64_t length, int *d) {
    if (a->ndim == 0)
        return ag__error(AG_EINVAL, "narrow() cannot be applied to a 0-dim tensor.");
    if (ag__normalize_dim(dim, a->ndim, d))
        return AG_EINVAL;
    /* PyTorch wraps start as a dimension index (of a size-1 dimension when
     * the size is 0), except that start == size is the empty end slice;
     * length is checked against size - start, which cannot overflow */
    int64_t size = a->shape[*d];
    if (*start != size) {
        int64_t wrap = size > 0 ? size : 1;
        if (*start < -wrap || *start > wrap - 1)
            return ag__error(AG_EINVAL,
                             "Dimension out of range (expected to be in range of [%" PRId64 ", %" PRId64
                             "], but got %" PRId64 ")",
                             -wrap, wrap - 1, *start);
        if (*start < 0)
            *start += wrap;
    }
    if (length < 0 || *start > size - length)
        return ag__error(AG_EINVAL, "start (%" PRId64 ") + length (%" PRId64 ") exceeds dimension size (%" PRId64 ").",
                         *start, length, size);
    return 0;
}

/* The storage offset of a view starting at index k of a's dim d. A valid
 * tensor's elements all lie in its storage, so this fits; checked anyway,
 * so a corrupt header is an error and not a wild address. */
static int ag__view_offset(const ag_tensor *a, int d, int64_t k, int64_t *off) {
    if (!ag__mul_ok(k, a->stride[d], off) || !ag__add_ok(*off, a->offset, off))
        return ag__error(AG_EINVAL, "storage offset overflows");
    return 0;
}

ag_tensor *ag_narrow(ag_ctx *ctx, ag_tensor *a, int dim, int64_t start, int64_t length) {
    ag_tensor *in[1] = {a};
    int d = 0;
    int64_t off = 0;
    ag__op op;
    if (ag__op_begin(&op, "ag_narrow", ctx, 1, in) || ag__narrow_check(a, dim, &start, length, &d) ||
        ag__view_offset(a, d, length ? start : 0, &off))
        return NULL;
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[d] = length;
    if (!ag__op_view_strided(&op, a, a->ndim, shape, a->stride, off)) /* out[.., k, ..] = a[.., start + k, ..] */
        return NULL;
    ag_node *node = ag__op_record(&op, &ag__narrow_kind);
    if (node)
        *ag__narrow_attr_of(node) = (ag__narrow_attr){d, start};
    return ag__op_end(&op);
}

/* ==== select =======================================================================
 * out (outer, inner) = a (outer, n, inner)[o, index, i]: a view without dim d. */

/* out[o, i] = a[o, index, i]:  da[o, index, i] (=|+=) g[o, i], 0 elsewhere */
static int ag__select_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                               ag_ctx *scratch) {
    AG__UNUSED(scratch);
    const ag__narrow_attr *at = ag__narrow_attr_of(node);
    ag_tensor *d = dinp[0];
    if (!d || d->numel == 0)
        return 0;
    int64_t outer, n, inner;
    ag__split(d, at->dim, &outer, &n, &inner);
    if (d->dtype == AG_FLOAT32)
        ag__slab_put_f32(d->data, dout->data, outer, n, 1, at->start, inner, !fresh[0]);
    else
        ag__slab_put_f64(d->data, dout->data, outer, n, 1, at->start, inner, !fresh[0]);
    return 0;
}

static const ag__node_kind ag__select_kind = {.name = "SelectBackward0",
                                              .backward = ag__select_backward,
                                              .attr_size = sizeof(ag__narrow_attr),
                                              .writes_fresh = true};

static int ag__select_check(const ag_tensor *a, int dim, int64_t *index, int *d) {
    if (a->ndim == 0)
        return ag__error(AG_EINVAL, "select() cannot be applied to a 0-dim tensor.");
    if (ag__normalize_dim(dim, a->ndim, d))
        return AG_EINVAL;
    int64_t size = a->shape[*d];
    if (*index < -size || *index >= size) {
        char s[AG_MAX_DIMS * 22 + 3];
        ag__shape_str(s, sizeof s, a->ndim, a->shape);
        return ag__error(AG_EINVAL, "select(): index %" PRId64 " out of range for tensor of size %s at dimension %d",
                         *index, s, dim);
    }
    if (*index < 0)
        *index += size;
    return 0;
}

ag_tensor *ag_select(ag_ctx *ctx, ag_tensor *a, int dim, int64_t index) {
    ag_tensor *in[1] = {a};
    int d = 0;
    int64_t off = 0;
    ag__op op;
    if (ag__op_begin(&op, "ag_select", ctx, 1, in) || ag__select_check(a, dim, &index, &d) ||
        ag__view_offset(a, d, index, &off))
        return NULL;
    int64_t shape[AG_MAX_DIMS], stride[AG_MAX_DIMS];
    for (int k = 0, j = 0; k < a->ndim; k++)
        if (k != d) {
            shape[j] = a->shape[k];
            stride[j++] = a->stride[k];
        }
    if (!ag__op_view_strided(&op, a, a->ndim - 1, shape, stride, off))
        return NULL;
    ag_node *node = ag__op_record(&op, &ag__select_kind);
    if (node)
        *ag__narrow_attr_of(node) = (ag__narrow_attr){d, index};
    return ag__op_end(&op);
}

/* ==== expand =======================================================================
 * out (shape) = a broadcast to shape (new leading dims, size-1 dims stretched). */

/* out = a broadcast:  da (=|+=) g summed over the stretched dimensions */
static int ag__expand_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                               ag_ctx *scratch) {
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    if (dinp[0])
        ag__reduce_into(dinp[0], dout, 1.0, !fresh[0]);
    return 0;
}

/* create_graph: da = sum_to(g, a's shape), recorded. */
static int ag__expand_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    if (!need[0])
        return 0;
    const ag_tensor *in = ag__edge_input(node, 0);
    return ag__graph_result(dinp[0] = ag__sum_to(ctx, g, in->ndim, in->shape));
}

static const ag__node_kind ag__expand_kind = {.name = "ExpandBackward0",
                                              .backward = ag__expand_backward,
                                              .backward_graph = ag__expand_backward_graph,
                                              .writes_fresh = true};

/* The shape a expands to, in sh: -1 keeps a size, size-1 dims stretch. */
static int ag__expand_check(const ag_tensor *a, int ndim, const int64_t *shape, int64_t *sh) {
    if (ndim < a->ndim || ndim > AG_MAX_DIMS || (ndim > 0 && !shape))
        return ag__error(AG_EINVAL,
                         "expand: the number of sizes provided (%d) must be greater or equal to the number of "
                         "dimensions in the tensor (%d)",
                         ndim, a->ndim);
    for (int k = 0; k < ndim; k++) {
        int ad = a->ndim - (ndim - k);
        int64_t want = shape[k], have = ad >= 0 ? a->shape[ad] : 1;
        if (want == -1 && ad < 0)
            return ag__error(AG_EINVAL,
                             "The expanded size of the tensor (-1) isn't allowed in a leading, non-existing "
                             "dimension %d",
                             k);
        want = want == -1 ? have : want;
        if (want < 0 || (have != 1 && want != have)) {
            char t[160], s[160];
            ag__shape_str(t, sizeof t, ndim, shape);
            ag__shape_str(s, sizeof s, a->ndim, a->shape);
            return ag__error(AG_ESHAPE,
                             "The expanded size of the tensor (%" PRId64 ") must match the existing size (%" PRId64
                             ") at non-singleton dimension %d.  Target sizes: %s.  Tensor sizes: %s",
                             shape[k], have, k, t, s);
        }
        sh[k] = want;
    }
    int64_t numel;
    if (!ag__numel_ok(ndim, sh, &numel))
        return ag__error(AG_ENOMEM, "numel: integer multiplication overflow");
    return 0;
}

ag_tensor *ag_expand(ag_ctx *ctx, ag_tensor *a, int ndim, const int64_t *shape) {
    ag_tensor *in[1] = {a};
    int64_t sh[AG_MAX_DIMS];
    ag__op op;
    if (ag__op_begin(&op, "ag_expand", ctx, 1, in) || ag__expand_check(a, ndim, shape, sh))
        return NULL;
    int64_t stride[AG_MAX_DIMS]; /* 0 along new and stretched dims: out = a broadcast */
    for (int k = 0; k < ndim; k++) {
        int ad = a->ndim - (ndim - k);
        stride[k] = ad >= 0 && a->shape[ad] == sh[k] ? a->stride[ad] : 0;
    }
    if (!ag__op_view_strided(&op, a, ndim, sh, stride, a->offset))
        return NULL;
    ag__op_record(&op, &ag__expand_kind);
    return ag__op_end(&op);
}

/* ==== bmm with broadcast batch dimensions ============================================
 * a (B..., n, k) @ b (B..., k, m) -> out (B..., n, m), batch dims broadcast;
 * a gradient sums over the batch dims its operand was broadcast along. */

typedef struct {
    int bnd;                     /* batch dims of the result */
    int64_t bshape[AG_MAX_DIMS]; /* batch shape of the result */
    int64_t nb;                  /* number of result matrices */
    int64_t n, k, m;
} ag__bmm_dims; /* also BmmBackward0's attributes */
static ag__bmm_dims *ag__bmm_dims_of(ag_node *node) { return ag__node_attr(node); }

/* Matrix index of operand t (ndim - 2 batch dims) for result batch index r. */
static int64_t ag__bmm_operand_index(const ag__bmm_dims *dm, const ag_tensor *t, int64_t r) {
    int tb = t->ndim - 2;
    int64_t idx = 0, mul = 1;
    for (int d = dm->bnd - 1; d >= 0; d--) {
        int64_t coord = r % dm->bshape[d];
        r /= dm->bshape[d];
        int td = tb - (dm->bnd - d);
        if (td >= 0) {
            int64_t size = t->shape[td];
            idx += (size == 1 ? 0 : coord) * mul;
            mul *= size;
        }
    }
    return idx;
}

/* A fresh gradient of an operand whose matrices each get exactly one
 * product is written by the products; one with a broadcast batch (several
 * results feed one of its matrices) or none at all is cleared and added
 * into. rows x cols: one of its matrices. */
static bool ag__bmm_must_clear(const ag_tensor *d, int64_t nb, int64_t rows, int64_t cols) {
    return d->numel > 0 && (nb == 0 || d->numel / (rows * cols) != nb);
}

/* Batches of small matrices run over the pool: a product of fewer than
 * AG__PAR_GEMM_MIN multiply-adds is not split by itself, but a batch of
 * them holding that many in all is split by matrix. Each matrix's product
 * is the same call at any thread count, so the bits are too; a gradient
 * whose matrices get several products each (a broadcast batch) is summed
 * in batch order on one thread. */
static bool ag__bmm_over_pool(const ag__bmm_dims *dm) {
    int64_t one, work;
    if (dm->nb < 2 || __builtin_mul_overflow(dm->n, dm->m, &one) || __builtin_mul_overflow(one, dm->k, &one) ||
        one >= AG__PAR_GEMM_MIN)
        return false;
    return (__builtin_mul_overflow(one, dm->nb, &work) || work >= AG__PAR_GEMM_MIN) && ag__kernel_threads() > 1;
}

typedef struct {
    const ag__bmm_dims *dm;
    const ag_tensor *dout, *a, *b;
    ag_tensor *da, *db; /* NULL: not here */
    bool acc[2];
} ag__bmm_bwd_job;

/* out[r] = a[ia] @ b[ib]:  da[ia] (=|+=) g[r] @ b[ib]^T;  db[ib] (=|+=) a[ia]^T @ g[r] */
static void ag__bmm_bwd_range(void *arg, int64_t lo, int64_t hi) {
    const ag__bmm_bwd_job *j = arg;
    const ag__bmm_dims *dm = j->dm;
    size_t es = ag__dtype_size(j->dout->dtype);
    int64_t n = dm->n, k = dm->k, m = dm->m;
    for (int64_t r = lo; r < hi; r++) {
        const char *g = (const char *)j->dout->data + (size_t)(r * n * m) * es;
        if (j->da) {
            int64_t ia = ag__bmm_operand_index(dm, j->da, r), ib = ag__bmm_operand_index(dm, j->b, r);
            ag__gemm(j->dout->dtype, false, true, n, k, m, g, m, (const char *)j->b->data + (size_t)(ib * k * m) * es,
                     m, (char *)j->da->data + (size_t)(ia * n * k) * es, k, j->acc[0]);
        }
        if (j->db) {
            int64_t ia = ag__bmm_operand_index(dm, j->a, r), ib = ag__bmm_operand_index(dm, j->db, r);
            ag__gemm(j->dout->dtype, true, false, k, m, n, (const char *)j->a->data + (size_t)(ia * n * k) * es, k, g,
                     m, (char *)j->db->data + (size_t)(ib * k * m) * es, m, j->acc[1]);
        }
    }
}

static int ag__bmm_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                            ag_ctx *scratch) {
    AG__UNUSED(scratch);
    const ag__bmm_dims *dm = ag__bmm_dims_of(node);
    ag_tensor *a = dinp[1] ? ag__saved_get(node, 0) : NULL, *b = dinp[0] ? ag__saved_get(node, 1) : NULL;
    if ((dinp[1] && !a) || (dinp[0] && !b))
        return ag_last_status();
    int64_t dims[2][2] = {{dm->n, dm->k}, {dm->k, dm->m}};
    ag__bmm_bwd_job job = {dm, dout, a, b, NULL, NULL, {false, false}};
    ag__bmm_bwd_job serial = job; /* the broadcast gradients */
    for (int i = 0; i < 2; i++) {
        if (!dinp[i])
            continue;
        bool summed = ag__bmm_must_clear(dinp[i], dm->nb, dims[i][0], dims[i][1]);
        bool acc = !fresh[i];
        if (fresh[i] && summed) {
            memset(dinp[i]->data, 0, dinp[i]->storage->nbytes);
            acc = true;
        }
        ag__bmm_bwd_job *to = summed ? &serial : &job;
        *(i == 0 ? &to->da : &to->db) = dinp[i];
        to->acc[i] = acc;
    }
    if (job.da || job.db) {
        if (ag__bmm_over_pool(dm))
            ag__parallel_for(dm->nb, 1, ag__bmm_bwd_range, &job);
        else
            ag__bmm_bwd_range(&job, 0, dm->nb);
    }
    if (serial.da || serial.db)
        ag__bmm_bwd_range(&serial, 0, dm->nb);
    return 0;
}

/* create_graph (PyTorch's formulas, summed to each input's shape where
 * its batch was broadcast):
 *   da = g.bmm(b.transpose(-2, -1))     BmmBackward0, TransposeBackward0
 *   db = a.transpose(-2, -1).bmm(g) */
static int ag__bmm_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    for (int i = 1; i >= 0; i--) { /* the second input first (node order) */
        if (!need[i])
            continue;
        ag_tensor *o = ag__saved_get(node, 1 - i);
        if (!o)
            return ag_last_status();
        ag_tensor *ot = ag_transpose(ctx, o, -2, -1);
        ag_tensor *d = i == 0 ? ag_bmm(ctx, g, ot) : ag_bmm(ctx, ot, g);
        const ag_tensor *in = ag__edge_input(node, i);
        int rc = ag__graph_result(dinp[i] = d ? ag__sum_to(ctx, d, in->ndim, in->shape) : NULL);
        if (rc)
            return rc;
    }
    return 0;
}

static const ag__node_kind ag__bmm_kind = {.name = "BmmBackward0",
                                           .backward = ag__bmm_backward,
                                           .backward_graph = ag__bmm_backward_graph,
                                           .attr_size = sizeof(ag__bmm_dims),
                                           .writes_fresh = true};

/* The product of n sizes, for an error message (INT64_MAX past it). */
static int64_t ag__bmm_rows(const int64_t *shape, int n) {
    int64_t p = 1;
    for (int d = 0; d < n; d++)
        if (__builtin_mul_overflow(p, shape[d], &p))
            return INT64_MAX;
    return p;
}

/* PyTorch 1.13's matmul folds the batch dimensions of a product with a
 * 2-D side into the rows of a 2-D product, (B.. n, k) @ (k, m) or, with
 * the batch on the right, b^T (B.. m, k) @ a^T (k, n): its error names
 * those. */
static int ag__bmm_error_2d(const ag_tensor *a, const ag_tensor *b, const ag__bmm_dims *dm, int64_t kb) {
    if (b->ndim == 2)
        return ag__error(AG_ESHAPE,
                         "mat1 and mat2 shapes cannot be multiplied (%" PRId64 "x%" PRId64 " and %" PRId64 "x%" PRId64
                         ")",
                         ag__bmm_rows(a->shape, a->ndim - 1), dm->k, kb, dm->m);
    int64_t bt[AG_MAX_DIMS]; /* b^T's shape, (B.., m, k) */
    memcpy(bt, b->shape, sizeof bt);
    bt[b->ndim - 2] = dm->m;
    return ag__error(AG_ESHAPE,
                     "mat1 and mat2 shapes cannot be multiplied (%" PRId64 "x%" PRId64 " and %" PRId64 "x%" PRId64 ")",
                     ag__bmm_rows(bt, b->ndim - 1), kb, dm->k, dm->n);
}

/* a (B..., n, k) and b (B..., k, m) multiply, their batch dims broadcast:
 * fills dm but for nb. */
static int ag__bmm_check(const ag_tensor *a, const ag_tensor *b, ag__bmm_dims *dm) {
    if (a->ndim < 2 || b->ndim < 2)
        return ag__error(AG_ESHAPE, "ag_bmm: both arguments need at least 2 dimensions, got %d and %d", a->ndim,
                         b->ndim);
    *dm = (ag__bmm_dims){.n = a->shape[a->ndim - 2], .k = a->shape[a->ndim - 1], .m = b->shape[b->ndim - 1]};
    int64_t kb = b->shape[b->ndim - 2];
    if (kb != dm->k && (a->ndim == 2 || b->ndim == 2))
        return ag__bmm_error_2d(a, b, dm, kb);
    /* broadcast the batch dims: shapes without their last two */
    ag_tensor ba = *a, bb = *b;
    ba.ndim -= 2;
    bb.ndim -= 2;
    if (ag__broadcast_shape(&ba, &bb, &dm->bnd, dm->bshape))
        return AG_ESHAPE;
    if (dm->bnd + 2 > AG_MAX_DIMS)
        return ag__error(AG_ESHAPE, "ag_bmm: too many dimensions");
    if (kb != dm->k) {
        int64_t batch = ag__bmm_rows(dm->bshape, dm->bnd);
        return ag__error(AG_ESHAPE,
                         "Expected size for first two dimensions of batch2 tensor to be: [%" PRId64 ", %" PRId64
                         "] but got: [%" PRId64 ", %" PRId64 "].",
                         batch, dm->k, batch, kb);
    }
    return 0;
}

typedef struct {
    ag_tensor *out;
    const ag_tensor *a, *b;
    const ag__bmm_dims *dm;
} ag__bmm_fwd_job;

/* out[r] = a[ia] @ b[ib] for the result matrices r in [lo, hi) */
static void ag__bmm_fwd_range(void *arg, int64_t lo, int64_t hi) {
    const ag__bmm_fwd_job *j = arg;
    const ag__bmm_dims *dm = j->dm;
    size_t es = ag__dtype_size(j->a->dtype);
    for (int64_t r = lo; r < hi; r++) {
        int64_t ia = ag__bmm_operand_index(dm, j->a, r), ib = ag__bmm_operand_index(dm, j->b, r);
        ag__gemm(j->a->dtype, false, false, dm->n, dm->m, dm->k,
                 (const char *)j->a->data + (size_t)(ia * dm->n * dm->k) * es, dm->k,
                 (const char *)j->b->data + (size_t)(ib * dm->k * dm->m) * es, dm->m,
                 (char *)j->out->data + (size_t)(r * dm->n * dm->m) * es, dm->m, false);
    }
}

static void ag__bmm_fwd(ag_tensor *out, const ag_tensor *a, const ag_tensor *b, const ag__bmm_dims *dm) {
    ag__bmm_fwd_job job = {out, a, b, dm};
    if (ag__bmm_over_pool(dm))
        ag__parallel_for(dm->nb, 1, ag__bmm_fwd_range, &job);
    else
        ag__bmm_fwd_range(&job, 0, dm->nb);
}

ag_tensor *ag_bmm(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    ag_tensor *in[2] = {a, b};
    ag__bmm_dims dm;
    ag__op op;
    if (ag__op_begin(&op, "ag_bmm", ctx, 2, in) || ag__bmm_check(a, b, &dm))
        return NULL;
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, dm.bshape, sizeof shape);
    shape[dm.bnd] = dm.n;
    shape[dm.bnd + 1] = dm.m;
    ag_tensor *out = ag__op_output(&op, dm.bnd + 2, shape);
    if (!out)
        return NULL;
    a = op.in[0], b = op.in[1]; /* contiguous */
    /* The matrices of an empty result are not counted (their number may
     * not fit in int64) nor visited: forward and backward do nothing. */
    dm.nb = out->numel > 0 ? out->numel / (dm.n * dm.m) : 0;
    ag__bmm_fwd(out, a, b, &dm);
    ag_node *node = ag__op_record(&op, &ag__bmm_kind);
    if (node) {
        *ag__bmm_dims_of(node) = dm;
        ag__save(node, 0, a, false);
        ag__save(node, 1, b, false);
    }
    return ag__op_end(&op);
}
