/* Ops that select, join or replicate: index_select and embedding, cat,
 * narrow, expand, and batched matmul with broadcast batch dimensions.
 * agrad tensors are contiguous, so each result is a copy. */
#include "ops/grad_ops.h"
#include "ops/ops.h"

#include <inttypes.h>

/* ==== index_select / embedding ==================================================
 * a (outer, n, inner) around dim; out (outer, k, inner) with
 *   out[o, j, i] = a[o, index[j], i]     da[o, index[j], i] += g[o, j, i] */

static void ag__gather_rows(ag_tensor *dst, const ag_tensor *src, const int64_t *index, int64_t k, int dim,
                            bool scatter_add) {
    const ag_tensor *big = scatter_add ? dst : src; /* the tensor indexed by index[] */
    int64_t outer, n, inner;
    ag__split(big, dim, &outer, &n, &inner);
    size_t es = ag__dtype_size(src->dtype);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < k; j++) {
            int64_t small_off = (o * k + j) * inner, big_off = (o * n + index[j]) * inner;
            if (!scatter_add) {
                memcpy((char *)dst->data + (size_t)small_off * es, (const char *)src->data + (size_t)big_off * es,
                       (size_t)inner * es);
            } else {
                for (int64_t i = 0; i < inner; i++)
                    ag__store(dst, big_off + i, ag__load(dst, big_off + i) + ag__load(src, small_off + i));
            }
        }
}

static int ag__index_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    if (ag__node_check_released(node))
        return ag_last_status();
    if (dout->numel > 0)
        ag__gather_rows(dinp[0], dout, node->attr, node->iarg[1], (int)node->iarg[0], true);
    return 0;
}

static const ag__node_kind ag__index_select_kind = {"IndexSelectBackward0", ag__index_backward, NULL};
static const ag__node_kind ag__embedding_kind = {"EmbeddingBackward0", ag__index_backward, NULL};

static ag_tensor *ag__index(ag_ctx *ctx, ag_tensor *a, int dim, const int64_t *index, int64_t k, const char *name,
                            const ag__node_kind *kind) {
    if (ag__check_unary(ctx, a, name))
        return NULL;
    int d = 0;
    if (ag__normalize_dim(dim, a->ndim, &d))
        return NULL;
    if (a->ndim == 0)
        return ag__error_null(AG_EINVAL, "%s: a 0-dim tensor has no dimension to index", name);
    if (k < 0 || (k > 0 && !index))
        return ag__error_null(AG_EINVAL, "%s: bad index array", name);
    for (int64_t j = 0; j < k; j++)
        if (index[j] < 0 || index[j] >= a->shape[d])
            return ag__error_null(AG_EINVAL, "index out of range in self");
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[d] = k;
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, a->ndim, shape);
    if (!out)
        return NULL;
    if (out->numel > 0)
        ag__gather_rows(out, a, index, k, d, false);
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins)) {
        ag_node *n = ag__record(ctx, kind, out, 1, ins);
        if (!n || !ag__node_keep_ints(ctx, n, index, k))
            return NULL;
        n->iarg[0] = d;
        n->iarg[1] = k;
    }
    return out;
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
 * out (outer, sum n_t, inner) = the inputs side by side along dim;
 * d(input t) += the slice of g it came from. attr: each input's size along dim. */

static void ag__copy_slab(ag_tensor *big, const ag_tensor *small, int dim, int64_t start, bool into_small_add) {
    int64_t outer, n, inner, so, sn, si;
    ag__split(big, dim, &outer, &n, &inner);
    ag__split(small, dim, &so, &sn, &si);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < sn; k++) {
            int64_t b0 = (o * n + start + k) * inner, s0 = (o * sn + k) * inner;
            if (!into_small_add) {
                size_t es = ag__dtype_size(big->dtype);
                memcpy((char *)big->data + (size_t)b0 * es, (const char *)small->data + (size_t)s0 * es,
                       (size_t)inner * es);
            } else {
                ag_tensor *d = (ag_tensor *)small;
                for (int64_t i = 0; i < inner; i++)
                    ag__store(d, s0 + i, ag__load(d, s0 + i) + ag__load(big, b0 + i));
            }
        }
}

static int ag__cat_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    const int64_t *sizes = node->attr;
    int64_t start = 0;
    for (int t = 0; t < node->num_next && dout->numel > 0; t++) {
        if (dinp[t])
            ag__copy_slab((ag_tensor *)dout, dinp[t], (int)node->iarg[0], start, true);
        start += sizes[t];
    }
    return 0;
}

static const ag__node_kind ag__cat_kind = {"CatBackward0", ag__cat_backward, NULL};

ag_tensor *ag_cat(ag_ctx *ctx, ag_tensor *const *ts, int n, int dim) {
    if (!ts || n <= 0)
        return ag__error_null(AG_EINVAL, "torch.cat(): expected a non-empty list of Tensors");
    for (int t = 0; t < n; t++)
        if (!ts[t])
            return ag__null_arg("ag_cat");
    if (!ctx)
        return ag__error_null(AG_EINVAL, "ag_cat: context is NULL");
    const ag_tensor *first = ts[0];
    int d = 0;
    if (ag__normalize_dim(dim, first->ndim, &d))
        return NULL;
    if (first->ndim == 0)
        return ag__error_null(AG_EINVAL, "zero-dimensional tensor (at position 0) cannot be concatenated");
    int64_t total = 0;
    for (int t = 0; t < n; t++) {
        const ag_tensor *x = ts[t];
        if (x->dtype != first->dtype)
            return ag__error_null(AG_EDTYPE, "ag_cat: expected all tensors to have dtype %s, got %s at position %d",
                                  ag__dtype_scalar_name(first->dtype), ag__dtype_scalar_name(x->dtype), t);
        if (x->ndim != first->ndim)
            return ag__error_null(AG_ESHAPE, "Tensors must have same number of dimensions: got %d and %d", first->ndim,
                                  x->ndim);
        for (int k = 0; k < x->ndim; k++)
            if (k != d && x->shape[k] != first->shape[k])
                return ag__error_null(AG_ESHAPE,
                                      "Sizes of tensors must match except in dimension %d. Expected size %" PRId64
                                      " but got size %" PRId64 " for tensor number %d in the list.",
                                      d, first->shape[k], x->shape[k], t);
        if (!ag__add_ok(total, x->shape[d], &total))
            return ag__error_null(AG_ENOMEM,
                                  "torch.cat(): the sizes along dimension %d add up to more than %" PRId64
                                  " (at tensor number %d)",
                                  d, INT64_MAX, t);
    }
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, first->shape, sizeof shape);
    shape[d] = total;
    ag_tensor *out = ag__tensor_new(ctx, first->dtype, first->ndim, shape);
    if (!out)
        return NULL;
    int64_t start = 0;
    for (int t = 0; t < n && out->numel > 0; t++) {
        ag__copy_slab(out, ts[t], d, start, false);
        start += ts[t]->shape[d];
    }
    if (ag__needs_grad(n, ts)) {
        ag_node *node = ag__record(ctx, &ag__cat_kind, out, n, ts);
        int64_t *sizes = ag__ctx_alloc(ctx, (size_t)n * sizeof *sizes);
        if (!node || !sizes)
            return NULL;
        for (int t = 0; t < n; t++)
            sizes[t] = ts[t]->shape[d];
        node->attr = sizes;
        node->iarg[0] = d;
    }
    return out;
}

/* ==== narrow =======================================================================
 * out = a[..., start:start+length, ...] along dim;  da[slice] += g */

static int ag__narrow_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    /* the slab of dinp[0] at start gets dout: copy_slab adds big into small,
     * so walk it the other way round here */
    ag_tensor *d = dinp[0];
    int dim = (int)node->iarg[0];
    int64_t start = node->iarg[1], outer, n, inner, so, sn, si;
    if (!d || dout->numel == 0)
        return 0;
    ag__split(d, dim, &outer, &n, &inner);
    ag__split(dout, dim, &so, &sn, &si);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < sn; k++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t b0 = (o * n + start + k) * inner + i, s0 = (o * sn + k) * inner + i;
                ag__store(d, b0, ag__load(d, b0) + ag__load(dout, s0));
            }
    return 0;
}

static const ag__node_kind ag__narrow_kind = {"SliceBackward0", ag__narrow_backward, NULL};

ag_tensor *ag_narrow(ag_ctx *ctx, ag_tensor *a, int dim, int64_t start, int64_t length) {
    if (ag__check_unary(ctx, a, "ag_narrow"))
        return NULL;
    if (a->ndim == 0)
        return ag__error_null(AG_EINVAL, "narrow() cannot be applied to a 0-dim tensor.");
    int d = 0;
    if (ag__normalize_dim(dim, a->ndim, &d))
        return NULL;
    /* PyTorch wraps start as a dimension index (of a size-1 dimension when
     * the size is 0), except that start == size is the empty end slice;
     * length is checked against size - start, which cannot overflow */
    int64_t size = a->shape[d];
    if (start != size) {
        int64_t wrap = size > 0 ? size : 1;
        if (start < -wrap || start > wrap - 1)
            return ag__error_null(AG_EINVAL,
                                  "Dimension out of range (expected to be in range of [%" PRId64 ", %" PRId64
                                  "], but got %" PRId64 ")",
                                  -wrap, wrap - 1, start);
        if (start < 0)
            start += wrap;
    }
    if (length < 0 || start > size - length)
        return ag__error_null(AG_EINVAL,
                              "start (%" PRId64 ") + length (%" PRId64 ") exceeds dimension size (%" PRId64 ").", start,
                              length, size);
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[d] = length;
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, a->ndim, shape);
    if (!out)
        return NULL;
    int64_t outer, n, inner;
    ag__split(out, d, &outer, &n, &inner); /* (0, length, 0) when empty: no rows */
    n = a->shape[d];
    size_t es = ag__dtype_size(a->dtype);
    for (int64_t o = 0; o < outer; o++)
        memcpy((char *)out->data + (size_t)(o * length * inner) * es,
               (const char *)a->data + (size_t)((o * n + start) * inner) * es, (size_t)(length * inner) * es);
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins)) {
        ag_node *node = ag__record(ctx, &ag__narrow_kind, out, 1, ins);
        if (!node)
            return NULL;
        node->iarg[0] = d;
        node->iarg[1] = start;
    }
    return out;
}

/* ==== expand =======================================================================
 * out = a broadcast to shape (new leading dims, size-1 dims stretched);
 * da += g summed over the stretched dimensions. */

static int ag__expand_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    ag__add_reduced(dinp[0], dout, 1.0);
    return 0;
}

/* create_graph: da = sum_to(g, a's shape), recorded. */
static int ag__expand_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    if (!need[0])
        return 0;
    const ag_tensor *in = ag__edge_input(node, 0);
    return ag__graph_result(dinp[0] = ag__sum_to(ctx, g, in->ndim, in->shape));
}

static const ag__node_kind ag__expand_kind = {"ExpandBackward0", ag__expand_backward, ag__expand_backward_graph};

ag_tensor *ag_expand(ag_ctx *ctx, ag_tensor *a, int ndim, const int64_t *shape) {
    if (ag__check_unary(ctx, a, "ag_expand"))
        return NULL;
    if (ndim < a->ndim || ndim > AG_MAX_DIMS || (ndim > 0 && !shape)) {
        return ag__error_null(AG_EINVAL,
                              "expand: the number of sizes provided (%d) must be greater or equal to the number of "
                              "dimensions in the tensor (%d)",
                              ndim, a->ndim);
    }
    int64_t sh[AG_MAX_DIMS];
    for (int k = 0; k < ndim; k++) {
        int ad = a->ndim - (ndim - k);
        int64_t want = shape[k], have = ad >= 0 ? a->shape[ad] : 1;
        if (want == -1) {
            if (ad < 0)
                return ag__error_null(AG_EINVAL,
                                      "The expanded size of the tensor (-1) isn't allowed in a leading, "
                                      "non-existing dimension %d",
                                      k);
            want = have;
        }
        if (want < 0 || (have != 1 && want != have)) {
            char t[160], s[160];
            ag__shape_str(t, sizeof t, ndim, shape);
            ag__shape_str(s, sizeof s, a->ndim, a->shape);
            return ag__error_null(AG_ESHAPE,
                                  "The expanded size of the tensor (%" PRId64 ") must match the existing size (%" PRId64
                                  ") at non-singleton dimension %d.  Target sizes: %s.  Tensor sizes: %s",
                                  shape[k], have, k, t, s);
        }
        sh[k] = want;
    }
    int64_t numel;
    if (!ag__numel_ok(ndim, sh, &numel))
        return ag__error_null(AG_ENOMEM, "numel: integer multiplication overflow");
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, ndim, sh);
    if (!out)
        return NULL;
    memset(out->data, 0, out->storage->nbytes);
    if (out->numel > 0)
        ag__add_reduced(out, a, 1.0); /* out (zeros) += a broadcast */
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins) && !ag__record(ctx, &ag__expand_kind, out, 1, ins))
        return NULL;
    return out;
}

/* ==== bmm with broadcast batch dimensions ============================================
 * a (B..., n, k) @ b (B..., k, m) -> out (B..., n, m), batch dims broadcast:
 *   da[batch_a] += g @ b^T    db[batch_b] += a^T @ g  (summed over broadcast) */

typedef struct {
    int bnd;                     /* batch dims of the result */
    int64_t bshape[AG_MAX_DIMS]; /* batch shape of the result */
    int64_t nb;                  /* number of result matrices */
    int64_t n, k, m;
} ag__bmm_dims;

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

static int ag__bmm_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    const ag__bmm_dims *dm = node->attr;
    ag_tensor *a = dinp[1] ? ag__saved_get(node, 0) : NULL, *b = dinp[0] ? ag__saved_get(node, 1) : NULL;
    if ((dinp[1] && !a) || (dinp[0] && !b))
        return ag_last_status();
    size_t es = ag__dtype_size(dout->dtype);
    int64_t n = dm->n, k = dm->k, m = dm->m;
    for (int64_t r = 0; r < dm->nb; r++) {
        const char *g = (const char *)dout->data + (size_t)(r * n * m) * es;
        if (dinp[0]) {
            int64_t ia = ag__bmm_operand_index(dm, dinp[0], r), ib = ag__bmm_operand_index(dm, b, r);
            ag__gemm_any(dout->dtype, false, true, n, k, m, g, m, (const char *)b->data + (size_t)(ib * k * m) * es, m,
                         (char *)dinp[0]->data + (size_t)(ia * n * k) * es, k);
        }
        if (dinp[1]) {
            int64_t ia = ag__bmm_operand_index(dm, a, r), ib = ag__bmm_operand_index(dm, dinp[1], r);
            ag__gemm_any(dout->dtype, true, false, k, m, n, (const char *)a->data + (size_t)(ia * n * k) * es, k, g, m,
                         (char *)dinp[1]->data + (size_t)(ib * k * m) * es, m);
        }
    }
    return 0;
}

static const ag__node_kind ag__bmm_kind = {"BmmBackward0", ag__bmm_backward, NULL};

/* The product of n sizes, for an error message (INT64_MAX past it). */
static int64_t ag__bmm_rows(const int64_t *shape, int n) {
    int64_t p = 1;
    for (int d = 0; d < n; d++)
        if (__builtin_mul_overflow(p, shape[d], &p))
            return INT64_MAX;
    return p;
}

ag_tensor *ag_bmm(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    if (ag__check_binary(ctx, a, b, "ag_bmm"))
        return NULL;
    if (a->ndim < 2 || b->ndim < 2)
        return ag__error_null(AG_ESHAPE, "ag_bmm: both arguments need at least 2 dimensions, got %d and %d", a->ndim,
                              b->ndim);
    ag__bmm_dims dm = {.n = a->shape[a->ndim - 2], .k = a->shape[a->ndim - 1], .m = b->shape[b->ndim - 1]};
    int64_t kb = b->shape[b->ndim - 2];
    if (kb != dm.k && (a->ndim == 2 || b->ndim == 2)) {
        /* PyTorch 1.13's matmul folds the batch dimensions into the rows of
         * a 2-D product, (B.. n, k) @ (k, m) or, with the batch on the
         * right, b^T (B.. m, k) @ a^T (k, n), and its error names those. */
        if (b->ndim == 2)
            return ag__error_null(AG_ESHAPE,
                                  "mat1 and mat2 shapes cannot be multiplied (%" PRId64 "x%" PRId64 " and %" PRId64
                                  "x%" PRId64 ")",
                                  ag__bmm_rows(a->shape, a->ndim - 1), dm.k, kb, dm.m);
        int64_t bt[AG_MAX_DIMS]; /* b^T's shape, (B.., m, k) */
        memcpy(bt, b->shape, sizeof bt);
        bt[b->ndim - 2] = dm.m;
        return ag__error_null(AG_ESHAPE,
                              "mat1 and mat2 shapes cannot be multiplied (%" PRId64 "x%" PRId64 " and %" PRId64
                              "x%" PRId64 ")",
                              ag__bmm_rows(bt, b->ndim - 1), kb, dm.k, dm.n);
    }
    /* broadcast the batch dims: shapes without their last two */
    ag_tensor ba = *a, bb = *b;
    ba.ndim -= 2;
    bb.ndim -= 2;
    if (ag__broadcast_shape(&ba, &bb, &dm.bnd, dm.bshape))
        return NULL;
    if (dm.bnd + 2 > AG_MAX_DIMS)
        return ag__error_null(AG_ESHAPE, "ag_bmm: too many dimensions");
    if (kb != dm.k) {
        int64_t batch = ag__bmm_rows(dm.bshape, dm.bnd);
        return ag__error_null(AG_ESHAPE,
                              "Expected size for first two dimensions of batch2 tensor to be: [%" PRId64 ", %" PRId64
                              "] but got: [%" PRId64 ", %" PRId64 "].",
                              batch, dm.k, batch, kb);
    }
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, dm.bshape, sizeof shape);
    shape[dm.bnd] = dm.n;
    shape[dm.bnd + 1] = dm.m;
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, dm.bnd + 2, shape);
    if (!out)
        return NULL;
    memset(out->data, 0, out->storage->nbytes);
    /* The matrices of an empty result are not counted (their number may
     * not fit in int64) nor visited: forward and backward do nothing. */
    dm.nb = out->numel > 0 ? out->numel / (dm.n * dm.m) : 0;
    size_t es = ag__dtype_size(a->dtype);
    for (int64_t r = 0; r < dm.nb; r++) {
        int64_t ia = ag__bmm_operand_index(&dm, a, r), ib = ag__bmm_operand_index(&dm, b, r);
        ag__gemm_any(a->dtype, false, false, dm.n, dm.m, dm.k, (const char *)a->data + (size_t)(ia * dm.n * dm.k) * es,
                     dm.k, (const char *)b->data + (size_t)(ib * dm.k * dm.m) * es, dm.m,
                     (char *)out->data + (size_t)(r * dm.n * dm.m) * es, dm.m);
    }
    ag_tensor *ins[2] = {a, b};
    if (ag__needs_grad(2, ins)) {
        ag_node *node = ag__record(ctx, &ag__bmm_kind, out, 2, ins);
        ag__bmm_dims *copy = ag__ctx_alloc(ctx, sizeof *copy);
        if (!node || !copy)
            return NULL;
        *copy = dm;
        node->attr = copy;
        ag__save(node, 0, a, false);
        ag__save(node, 1, b, false);
    }
    return out;
}
