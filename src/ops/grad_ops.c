/* The ops of PyTorch's derivative formulas that agrad's public API does not
 * name (grad_ops.h): what backward_graph functions build gradients with.
 * Each op's forward, backward and backward_graph sit together, the
 * backward quoting the forward line it differentiates. Kernels are plain
 * loops per dtype: these ops run in recorded backwards, not in the hot
 * path of a training step. */
#include "ops/grad_ops.h"

#include "ops/ops.h"

#include <inttypes.h>
#include <stdio.h>

/* ---- Helpers ------------------------------------------------------------------------------- */

/* A view as a contiguous stand-in (ops/ops.h): the helpers below read
 * their inputs' elements in order. */
static ag_tensor *ag__dense(ag_ctx *ctx, const ag_tensor *a) { return ag__standin(ctx, (ag_tensor *)a); }

static ag_tensor *ag__like(ag_ctx *ctx, ag_tensor *a, const char *name) {
    if (ag__check_unary(ctx, a, name))
        return NULL;
    return ag__tensor_like(ctx, a);
}

/* d += scale * g where d and g have the same shape and dtype. */
static void ag__axpy(ag_tensor *d, const ag_tensor *g, double scale) {
    if (d->dtype == AG_FLOAT32) {
        float *dd = d->data, s = (float)scale;
        const float *gg = g->data;
        for (int64_t i = 0; i < d->numel; i++)
            dd[i] += gg[i] * s;
    } else {
        double *dd = d->data;
        const double *gg = g->data;
        for (int64_t i = 0; i < d->numel; i++)
            dd[i] += gg[i] * scale;
    }
}

/* ==== a * s, a + s, a / s with a C++ Scalar ===================================================
 * MulBackward1 (mul.Scalar), AddBackward1 (add.Scalar), DivBackward1
 * (div.Scalar): one edge each, the scalar in node->scalar. */

typedef enum { AG__S_MUL, AG__S_ADD, AG__S_DIV } ag__sop;

static ag_tensor *ag__scalar_op(ag_ctx *ctx, ag_tensor *a, double s, ag__sop op, const ag__node_kind *kind,
                                const char *name) {
    if (a && !(a = ag__dense(ctx, a)))
        return NULL;
    ag_tensor *out = ag__like(ctx, a, name);
    if (!out)
        return NULL;
    if (a->dtype == AG_FLOAT32) {
        const float *x = a->data, st = (float)s;
        float *o = out->data;
        for (int64_t i = 0; i < a->numel; i++)
            o[i] = op == AG__S_MUL ? x[i] * st : op == AG__S_ADD ? x[i] + st : x[i] / st;
    } else {
        const double *x = a->data;
        double *o = out->data;
        for (int64_t i = 0; i < a->numel; i++)
            o[i] = op == AG__S_MUL ? x[i] * s : op == AG__S_ADD ? x[i] + s : x[i] / s;
    }
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins)) {
        ag_node *node = ag__record(ctx, kind, out, 1, ins);
        if (!node)
            return NULL;
        node->scalar = s;
    }
    return out;
}

/* out = a * s:  da += g * s */
static int ag__mul_scalar1_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                    ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(scratch);
    if (dinp[0])
        ag__axpy(dinp[0], dout, node->scalar);
    return 0;
}
/* PyTorch: grad * scalar_to_tensor(s), a MulBackward0 with a second edge
 * that needs no grad: ag_mul_scalar's node. */
static int ag__mul_scalar1_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp,
                                          ag_ctx *ctx) {
    return need[0] ? ag__graph_result(dinp[0] = ag_mul_scalar(ctx, g, node->scalar)) : 0;
}
static const ag__node_kind ag__mul_scalar1_kind = {
    .name = "MulBackward1", .backward = ag__mul_scalar1_backward, .backward_graph = ag__mul_scalar1_backward_graph};

/* out = a + s:  da += g */
static int ag__add_scalar1_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                    ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    if (dinp[0])
        ag__axpy(dinp[0], dout, 1.0);
    return 0;
}
static int ag__pass_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    AG__UNUSED(node);
    AG__UNUSED(ctx);
    if (need[0])
        dinp[0] = g;
    return 0;
}
static const ag__node_kind ag__add_scalar1_kind = {
    .name = "AddBackward1", .backward = ag__add_scalar1_backward, .backward_graph = ag__pass_backward_graph};

/* out = a / s:  da += g / s (PyTorch: grad / a 0-dim tensor holding s) */
static int ag__div_scalar1_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                    ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(scratch);
    ag_tensor *d = dinp[0];
    if (!d)
        return 0;
    if (d->dtype == AG_FLOAT32) {
        float *dd = d->data, s = (float)node->scalar;
        const float *g = dout->data;
        for (int64_t i = 0; i < d->numel; i++)
            dd[i] += g[i] / s;
    } else {
        double *dd = d->data;
        const double *g = dout->data;
        for (int64_t i = 0; i < d->numel; i++)
            dd[i] += g[i] / node->scalar;
    }
    return 0;
}
static int ag__div_scalar1_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp,
                                          ag_ctx *ctx) {
    if (!need[0])
        return 0;
    return ag__graph_result(dinp[0] = ag_div(ctx, g, ag_scalar(ctx, g->dtype, node->scalar)));
}
static const ag__node_kind ag__div_scalar1_kind = {
    .name = "DivBackward1", .backward = ag__div_scalar1_backward, .backward_graph = ag__div_scalar1_backward_graph};

ag_tensor *ag__mul_scalar1(ag_ctx *ctx, ag_tensor *a, double s) {
    return ag__scalar_op(ctx, a, s, AG__S_MUL, &ag__mul_scalar1_kind, "mul");
}
ag_tensor *ag__add_scalar1(ag_ctx *ctx, ag_tensor *a, double s) {
    return ag__scalar_op(ctx, a, s, AG__S_ADD, &ag__add_scalar1_kind, "add");
}
ag_tensor *ag__div_scalar1(ag_ctx *ctx, ag_tensor *a, double s) {
    return ag__scalar_op(ctx, a, s, AG__S_DIV, &ag__div_scalar1_kind, "div");
}

/* ==== a - s with a C++ Scalar: SubBackward1 ========================================================= */

static int ag__sub_scalar1_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                    ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    if (dinp[0])
        ag__axpy(dinp[0], dout, 1.0);
    return 0;
}
static const ag__node_kind ag__sub_scalar1_kind = {
    .name = "SubBackward1", .backward = ag__sub_scalar1_backward, .backward_graph = ag__pass_backward_graph};

ag_tensor *ag__sub_scalar1(ag_ctx *ctx, ag_tensor *a, double s) {
    ag_tensor *out = ag__scalar_op(ctx, a, -s, AG__S_ADD, &ag__sub_scalar1_kind, "sub");
    if (out && out->grad_fn)
        out->grad_fn->scalar = s;
    return out;
}

/* ==== _reshape_alias ================================================================================ */

static int ag__reshape_alias_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp,
                                            ag_ctx *ctx) {
    if (!need[0])
        return 0;
    const ag_tensor *in = ag__edge_input(node, 0);
    return ag__graph_result(dinp[0] = ag__reshape_alias(ctx, g, in->ndim, in->shape));
}
static const ag__node_kind ag__reshape_alias_kind = {.name = "ReshapeAliasBackward0",
                                                     .backward = ag__view_backward,
                                                     .backward_graph = ag__reshape_alias_backward_graph,
                                                     .writes_fresh = true,
                                                     .passes_grad = 1};

ag_tensor *ag__reshape_alias(ag_ctx *ctx, ag_tensor *a, int ndim, const int64_t *shape) {
    if (ag__check_unary(ctx, a, "_reshape_alias"))
        return NULL;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    if (ndim < 0 || ndim > AG_MAX_DIMS || n != a->numel)
        return ag__error_null(AG_ESHAPE, "_reshape_alias: the shape does not fit the tensor");
    ag_tensor *out = ag__tensor_alias(ctx, a, ndim, shape);
    if (!out)
        return NULL;
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins) && !ag__record(ctx, &ag__reshape_alias_kind, out, 1, ins))
        return NULL;
    return out;
}

/* ==== unsqueeze, squeeze ===========================================================================
 * Views with a size-1 dimension added or removed: the same elements, so
 * the backward is ag__view_backward; graphs go through each other. */

static int ag__unsqueeze_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    return need[0] ? ag__graph_result(dinp[0] = ag__squeeze(ctx, g, (int)node->iarg[0])) : 0;
}
static int ag__squeeze_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    return need[0] ? ag__graph_result(dinp[0] = ag__unsqueeze(ctx, g, (int)node->iarg[0])) : 0;
}
static const ag__node_kind ag__unsqueeze_kind = {.name = "UnsqueezeBackward0",
                                                 .backward = ag__view_backward,
                                                 .backward_graph = ag__unsqueeze_backward_graph,
                                                 .writes_fresh = true};
static const ag__node_kind ag__squeeze_kind = {.name = "SqueezeBackward1",
                                               .backward = ag__view_backward,
                                               .backward_graph = ag__squeeze_backward_graph,
                                               .writes_fresh = true};

static ag_tensor *ag__dim_view(ag_ctx *ctx, ag_tensor *a, int dim, bool add) {
    if (ag__check_unary(ctx, a, add ? "unsqueeze" : "squeeze"))
        return NULL;
    int nd = a->ndim + (add ? 1 : -1);
    if (dim < 0 || nd < 0 || nd > AG_MAX_DIMS || dim > (add ? a->ndim : a->ndim - 1) || (!add && a->shape[dim] != 1))
        return ag__error_null(AG_EINVAL, "%s: dimension %d does not fit a %d-D tensor", add ? "unsqueeze" : "squeeze",
                              dim, a->ndim);
    int64_t shape[AG_MAX_DIMS];
    for (int d = 0, k = 0; d < nd; d++) {
        if (!add && k == dim)
            k++; /* the dimension squeezed away */
        shape[d] = add && d == dim ? 1 : a->shape[k++];
    }
    ag_tensor *out = ag__tensor_alias(ctx, a, nd, shape);
    if (!out)
        return NULL;
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins)) {
        ag_node *node = ag__record(ctx, add ? &ag__unsqueeze_kind : &ag__squeeze_kind, out, 1, ins);
        if (!node)
            return NULL;
        node->iarg[0] = dim;
    }
    return out;
}

ag_tensor *ag__unsqueeze(ag_ctx *ctx, ag_tensor *a, int dim) { return ag__dim_view(ctx, a, dim, true); }
ag_tensor *ag__squeeze(ag_ctx *ctx, ag_tensor *a, int dim) { return ag__dim_view(ctx, a, dim, false); }

/* ==== masks, where, masked_fill, threshold_backward ================================================= */

/* The element of t that element i of a tensor of shape (nd, shape) sees
 * when t broadcasts to it. */
static double ag__bload(const ag_tensor *t, int nd, const int64_t *shape, int64_t i) {
    int64_t off = 0, stride = 1;
    for (int d = nd - 1; d >= 0; d--) {
        int64_t idx = i % shape[d];
        i /= shape[d];
        int td = t->ndim - (nd - d);
        if (td >= 0) {
            if (t->shape[td] != 1)
                off += idx * stride;
            stride *= t->shape[td];
        }
    }
    return ag__load(t, off);
}

ag_tensor *ag__mask2(ag_ctx *ctx, const ag_tensor *a, const ag_tensor *b, double (*f)(double, double)) {
    if (a && !(a = ag__dense(ctx, a)))
        return NULL;
    if (b && !(b = ag__dense(ctx, b)))
        return NULL;
    int nd = a->ndim;
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    if (b && ag__broadcast_shape(a, b, &nd, shape))
        return NULL;
    ag_tensor *m = ag__tensor_new(ctx, a->dtype, nd, shape);
    if (!m)
        return NULL;
    for (int64_t i = 0; i < m->numel; i++)
        ag__store(m, i, f(ag__bload(a, nd, shape, i), b ? ag__bload(b, nd, shape, i) : 0.0));
    return m;
}

typedef struct {
    ag_tensor *mask;
    bool keep_true;
} ag__where0_attr;

/* out = mask == keep_true ? x : 0:  dx += mask == keep_true ? dout : 0 */
static int ag__where0_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                               ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(scratch);
    const ag__where0_attr *at = ag__node_attr(node);
    ag_tensor *d = dinp[at->keep_true ? 0 : 1];
    for (int64_t i = 0; d && i < d->numel; i++)
        if ((ag__bload(at->mask, d->ndim, d->shape, i) != 0) == at->keep_true)
            ag__store(d, i, ag__load(d, i) + ag__load(dout, i));
    return 0;
}
static int ag__where0_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    const ag__where0_attr *at = ag__node_attr(node);
    int i = at->keep_true ? 0 : 1;
    return need[i] ? ag__graph_result(dinp[i] = ag__where0(ctx, at->mask, g, at->keep_true)) : 0;
}
static const ag__node_kind ag__where0_kind = {.name = "WhereBackward0",
                                              .backward = ag__where0_backward,
                                              .backward_graph = ag__where0_backward_graph,
                                              .attr_size = sizeof(ag__where0_attr)};

ag_tensor *ag__where0(ag_ctx *ctx, ag_tensor *mask, ag_tensor *x, bool keep_true) {
    if (!mask || ag__check_unary(ctx, x, "where"))
        return mask ? NULL : ag__null_arg("where");
    if (mask && !(mask = ag__dense(ctx, mask)))
        return NULL;
    if (x && !(x = ag__dense(ctx, x)))
        return NULL;
    if (!ag__expandable(mask, x))
        return ag__error_null(AG_ESHAPE, "where: the mask does not broadcast to the values");
    ag_tensor *out = ag__tensor_like(ctx, x);
    if (!out)
        return NULL;
    for (int64_t i = 0; i < x->numel; i++)
        ag__store(out, i, (ag__bload(mask, x->ndim, x->shape, i) != 0) == keep_true ? ag__load(x, i) : 0.0);
    ag_tensor *ins[2] = {keep_true ? x : NULL, keep_true ? NULL : x};
    if (ag__needs_grad(2, ins)) {
        ag_node *node = ag__record(ctx, &ag__where0_kind, out, 2, ins);
        if (!node)
            return NULL;
        *(ag__where0_attr *)ag__node_attr(node) = (ag__where0_attr){mask, keep_true};
    }
    return out;
}

/* out = mask ? v : 0:  dv += sum(mask ? dout : 0) */
static int ag__masked_fill1_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                     ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(scratch);
    const ag__where0_attr *at = ag__node_attr(node);
    if (!dinp[1])
        return 0;
    double acc = 0;
    for (int64_t i = 0; i < dout->numel; i++)
        if (ag__load(at->mask, i) != 0)
            acc += ag__load(dout, i);
    ag__store(dinp[1], 0, ag__load(dinp[1], 0) + acc);
    return 0;
}
/* PyTorch: value's gradient is where(mask, g, 0).sum() */
static int ag__masked_fill1_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp,
                                           ag_ctx *ctx) {
    const ag__where0_attr *at = ag__node_attr(node);
    if (!need[1])
        return 0;
    const ag_tensor *v = ag__edge_input(node, 1);
    ag_tensor *s = ag_sum(ctx, ag__where0(ctx, at->mask, g, true));
    return ag__graph_result(dinp[1] = s && v->ndim > 0 ? ag_reshape(ctx, s, v->ndim, v->shape) : s);
}
static const ag__node_kind ag__masked_fill1_kind = {.name = "MaskedFillBackward1",
                                                    .backward = ag__masked_fill1_backward,
                                                    .backward_graph = ag__masked_fill1_backward_graph,
                                                    .attr_size = sizeof(ag__where0_attr)};

ag_tensor *ag__masked_fill1(ag_ctx *ctx, ag_tensor *mask, ag_tensor *v) {
    if (!mask || ag__check_unary(ctx, v, "masked_fill_"))
        return mask ? NULL : ag__null_arg("masked_fill_");
    if (mask && !(mask = ag__dense(ctx, mask)))
        return NULL;
    if (v && !(v = ag__dense(ctx, v)))
        return NULL;
    if (v->numel != 1)
        return ag__error_null(AG_EINVAL,
                              "masked_fill_ only supports a 0-dimensional value tensor, but got tensor with %d "
                              "dimension(s).",
                              v->ndim);
    ag_tensor *out = ag__tensor_like(ctx, mask);
    if (!out)
        return NULL;
    double fill = ag__load(v, 0);
    for (int64_t i = 0; i < out->numel; i++)
        ag__store(out, i, ag__load(mask, i) != 0 ? fill : 0.0);
    ag_tensor *ins[2] = {NULL, v};
    if (ag__needs_grad(2, ins)) {
        ag_node *node = ag__record(ctx, &ag__masked_fill1_kind, out, 2, ins);
        if (!node)
            return NULL;
        *(ag__where0_attr *)ag__node_attr(node) = (ag__where0_attr){mask, true};
    }
    return out;
}

/* out = y > 0 ? g : 0:  dg += y > 0 ? dout : 0; y's gradient is zeros
 * (PyTorch's zeros_like(grad)). */
static int ag__threshold_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                  ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(scratch);
    ag_tensor *y = ag__saved_get(node, 0);
    if (!y)
        return ag_last_status();
    for (int64_t i = 0; dinp[0] && i < dout->numel; i++)
        if (ag__load(y, i) > 0)
            ag__store(dinp[0], i, ag__load(dinp[0], i) + ag__load(dout, i));
    return 0;
}
static int ag__threshold_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    ag_tensor *y = ag__saved_get(node, 0);
    if (!y)
        return ag_last_status();
    int rc;
    if (need[1] && (rc = ag__graph_result(dinp[1] = ag_zeros(ctx, y->dtype, y->ndim, y->shape))))
        return rc;
    return need[0] ? ag__graph_result(dinp[0] = ag__threshold_grad(ctx, g, y)) : 0;
}
static const ag__node_kind ag__threshold_kind = {.name = "ThresholdBackwardBackward0",
                                                 .backward = ag__threshold_backward,
                                                 .backward_graph = ag__threshold_backward_graph};

ag_tensor *ag__threshold_grad(ag_ctx *ctx, ag_tensor *g, ag_tensor *y) {
    if (ag__check_binary(ctx, g, y, "threshold_backward"))
        return NULL;
    if (g && !(g = ag__dense(ctx, g)))
        return NULL;
    if (y && !(y = ag__dense(ctx, y)))
        return NULL;
    if (!ag__same_shape(g, y))
        return ag__error_null(AG_ESHAPE, "threshold_backward: grad_output and self must have the same shape");
    ag_tensor *out = ag__tensor_like(ctx, g);
    if (!out)
        return NULL;
    for (int64_t i = 0; i < g->numel; i++)
        ag__store(out, i, ag__load(y, i) > 0 ? ag__load(g, i) : 0.0);
    ag_tensor *ins[2] = {g, y};
    if (ag__needs_grad(2, ins)) {
        ag_node *node = ag__record(ctx, &ag__threshold_kind, out, 2, ins);
        if (!node)
            return NULL;
        ag__save(node, 0, y, false);
    }
    return out;
}

/* ==== index_add into zeros, slice_backward ========================================================= */

typedef struct {
    int dim;
    int64_t size, k;
    int64_t index[];
} ag__index_add_attr;

/* out[o, index[j], i] += g[o, j, i] (add) or g[o, j, i] += out[o, index[j], i] (!add) */
static void ag__index_walk(ag_tensor *out, ag_tensor *g, int dim, const int64_t *index, int64_t k, bool add) {
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < dim; d++)
        outer *= g->shape[d];
    for (int d = dim + 1; d < g->ndim; d++)
        inner *= g->shape[d];
    int64_t size = out->shape[dim];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < k; j++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t eo = (o * size + index[j]) * inner + i, eg = (o * k + j) * inner + i;
                if (add)
                    ag__store(out, eo, ag__load(out, eo) + ag__load(g, eg));
                else
                    ag__store(g, eg, ag__load(g, eg) + ag__load(out, eo));
            }
}

static int ag__index_add_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                  ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(scratch);
    ag__index_add_attr *at = ag__node_attr(node);
    ag_tensor *d = dinp[node->num_next - 1]; /* index_add's edges are (zeros: none, source) */
    if (d)
        ag__index_walk((ag_tensor *)dout, d, at->dim, at->index, at->k, false);
    return 0;
}
static int ag__index_add_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    ag__index_add_attr *at = ag__node_attr(node);
    int i = node->num_next - 1;
    if (!need[i])
        return 0;
    bool emb = i == 0;
    return ag__graph_result(dinp[i] = emb ? ag_embedding(ctx, g, at->index, at->k)
                                          : ag_index_select(ctx, g, at->dim, at->index, at->k));
}
static const ag__node_kind ag__index_add_kind = {.name = "IndexAddBackward0",
                                                 .backward = ag__index_add_backward,
                                                 .backward_graph = ag__index_add_backward_graph,
                                                 .attr_size = sizeof(ag__index_add_attr)};
static const ag__node_kind ag__embedding_dense_kind = {.name = "EmbeddingDenseBackwardBackward0",
                                                       .backward = ag__index_add_backward,
                                                       .backward_graph = ag__index_add_backward_graph,
                                                       .attr_size = sizeof(ag__index_add_attr)};

ag_tensor *ag__index_add(ag_ctx *ctx, ag_tensor *g, int dim, const int64_t *index, int64_t k, int64_t size,
                         bool embedding) {
    if (ag__check_unary(ctx, g, "index_add"))
        return NULL;
    if (g && !(g = ag__dense(ctx, g)))
        return NULL;
    if (dim < 0 || dim >= g->ndim || g->shape[dim] != k)
        return ag__error_null(AG_ESHAPE, "index_add: the gradient does not fit the index");
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, g->shape, sizeof shape);
    shape[dim] = size;
    ag_tensor *out = ag_zeros(ctx, g->dtype, g->ndim, shape);
    if (!out)
        return NULL;
    ag__index_walk(out, g, dim, index, k, true);
    ag_tensor *ins[2] = {embedding ? g : NULL, g}; /* index_add: (zeros, source) */
    if (ag__needs_grad(1, &ins[1])) {
        ag_node *node = ag__record_extra(ctx, embedding ? &ag__embedding_dense_kind : &ag__index_add_kind, out,
                                         embedding ? 1 : 2, ins, (size_t)k * sizeof(int64_t));
        if (!node)
            return NULL;
        ag__index_add_attr *at = ag__node_attr(node);
        at->dim = dim;
        at->size = size;
        at->k = k;
        if (k > 0)
            memcpy(at->index, index, (size_t)k * sizeof *index);
    }
    return out;
}

typedef struct {
    int dim;
    int64_t start;
} ag__slice_attr;

static int ag__slice_grad_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                   ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(scratch);
    const ag__slice_attr *at = ag__node_attr(node);
    ag_tensor *d = dinp[0];
    if (!d || d->numel == 0)
        return 0;
    int64_t k = d->shape[at->dim], outer = 1, inner = 1;
    for (int q = 0; q < at->dim; q++)
        outer *= d->shape[q];
    for (int q = at->dim + 1; q < d->ndim; q++)
        inner *= d->shape[q];
    int64_t size = dout->shape[at->dim];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < k; j++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t ed = (o * k + j) * inner + i, eo = (o * size + at->start + j) * inner + i;
                ag__store(d, ed, ag__load(d, ed) + ag__load(dout, eo));
            }
    return 0;
}
static int ag__slice_grad_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    const ag__slice_attr *at = ag__node_attr(node);
    if (!need[0])
        return 0;
    const ag_tensor *in = ag__edge_input(node, 0);
    return ag__graph_result(dinp[0] = ag_narrow(ctx, g, at->dim, at->start, in->shape[at->dim]));
}
static const ag__node_kind ag__slice_grad_kind = {.name = "SliceBackwardBackward0",
                                                  .backward = ag__slice_grad_backward,
                                                  .backward_graph = ag__slice_grad_backward_graph,
                                                  .attr_size = sizeof(ag__slice_attr)};

ag_tensor *ag__slice_grad(ag_ctx *ctx, ag_tensor *g, int ndim, const int64_t *shape, int dim, int64_t start) {
    if (ag__check_unary(ctx, g, "slice_backward"))
        return NULL;
    if (g && !(g = ag__dense(ctx, g)))
        return NULL;
    if (ndim != g->ndim || dim < 0 || dim >= ndim || start < 0 || start + g->shape[dim] > shape[dim])
        return ag__error_null(AG_ESHAPE, "slice_backward: the gradient does not fit the slice");
    ag_tensor *out = ag_zeros(ctx, g->dtype, ndim, shape);
    if (!out)
        return NULL;
    int64_t outer = 1, inner = 1, k = g->shape[dim];
    for (int q = 0; q < dim; q++)
        outer *= shape[q];
    for (int q = dim + 1; q < ndim; q++)
        inner *= shape[q];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < k; j++)
            for (int64_t i = 0; i < inner; i++)
                ag__store(out, (o * shape[dim] + start + j) * inner + i, ag__load(g, (o * k + j) * inner + i));
    ag_tensor *ins[1] = {g};
    if (ag__needs_grad(1, ins)) {
        ag_node *node = ag__record(ctx, &ag__slice_grad_kind, out, 1, ins);
        if (!node)
            return NULL;
        *(ag__slice_attr *)ag__node_attr(node) = (ag__slice_attr){dim, start};
    }
    return out;
}

/* ==== a.t() =======================================================================================
 * out = a with its two dimensions swapped (a copy; 0-D and 1-D: itself);
 * da += g.t(). */

static int ag__t_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh, ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    if (!dinp[0])
        return 0;
    if (dout->ndim == 2)
        ag__transpose_into(dinp[0], dout, 0, 1, true);
    else
        ag__axpy(dinp[0], dout, 1.0);
    return 0;
}
static int ag__t_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    AG__UNUSED(node);
    return need[0] ? ag__graph_result(dinp[0] = ag__t(ctx, g)) : 0;
}
static const ag__node_kind ag__t_kind = {
    .name = "TBackward0", .backward = ag__t_backward, .backward_graph = ag__t_backward_graph};

ag_tensor *ag__t(ag_ctx *ctx, ag_tensor *a) {
    if (ag__check_unary(ctx, a, "t"))
        return NULL;
    if (a && !(a = ag__dense(ctx, a)))
        return NULL;
    if (a->ndim > 2)
        return ag__error_null(AG_EINVAL, "t() expects a tensor with <= 2 dimensions, but self is %dD", a->ndim);
    int64_t shape[2] = {a->ndim == 2 ? a->shape[1] : 0, a->ndim == 2 ? a->shape[0] : 0};
    ag_tensor *out = a->ndim == 2 ? ag__tensor_new(ctx, a->dtype, 2, shape) : ag__tensor_like(ctx, a);
    if (!out)
        return NULL;
    if (a->ndim == 2)
        ag__transpose_into(out, a, 0, 1, false);
    else
        memcpy(out->data, a->data, a->storage->nbytes);
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins) && !ag__record(ctx, &ag__t_kind, out, 1, ins))
        return NULL;
    return out;
}

ag_tensor *ag__t_of(ag_ctx *ctx, ag_tensor *a, const ag_tensor *value) {
    if (ag__check_binary(ctx, a, value, "t"))
        return NULL;
    if (a && !(a = ag__dense(ctx, a)))
        return NULL;
    if (value && !(value = ag__dense(ctx, value)))
        return NULL;
    if (a->ndim != 2 || value->ndim != 2 || a->shape[0] != value->shape[1] || a->shape[1] != value->shape[0])
        return ag__error_null(AG_ESHAPE, "t: the value is not the tensor's transpose");
    ag_tensor *out = ag__tensor_like(ctx, value);
    if (!out)
        return NULL;
    memcpy(out->data, value->data, value->storage->nbytes);
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins) && !ag__record(ctx, &ag__t_kind, out, 1, ins))
        return NULL;
    return out;
}

/* ==== tanh_backward, sigmoid_backward ============================================================
 * The first derivatives as ops of (g, y), y the forward's saved output, so
 * that they can be differentiated again (PyTorch's formulas):
 *   out = g (1 - y^2):      dg += dout (1 - y^2)      dy += dout ((-2 y) g)
 *   out = g (1 - y) y:      dg += dout (1 - y) y      dy += (dout g) ((-2 y) + 1) */

typedef enum { AG__TANH_BW, AG__SIGMOID_BW } ag__actbw;

static int ag__act_backward(ag__actbw which, ag_node *node, const ag_tensor *dout, ag_tensor **dinp) {
    ag_tensor *g = ag__saved_get(node, 0), *y = ag__saved_get(node, 1);
    if (!g || !y)
        return ag_last_status();
    for (int64_t i = 0; i < dout->numel; i++) {
        double o = ag__load(dout, i), gv = ag__load(g, i), yv = ag__load(y, i);
        if (dout->dtype == AG_FLOAT32) { /* each step rounded to float, as PyTorch's float kernels */
            float of = (float)o, gf = (float)gv, yf = (float)yv;
            float dgv = which == AG__TANH_BW ? of * (1 - yf * yf) : of * (1 - yf) * yf;
            float dyv = which == AG__TANH_BW ? of * ((-2 * yf) * gf) : (of * gf) * ((-2 * yf) + 1);
            if (dinp[0])
                ((float *)dinp[0]->data)[i] += dgv;
            if (dinp[1])
                ((float *)dinp[1]->data)[i] += dyv;
        } else {
            if (dinp[0])
                ((double *)dinp[0]->data)[i] += which == AG__TANH_BW ? o * (1 - yv * yv) : o * (1 - yv) * yv;
            if (dinp[1])
                ((double *)dinp[1]->data)[i] +=
                    which == AG__TANH_BW ? o * ((-2 * yv) * gv) : (o * gv) * ((-2 * yv) + 1);
        }
    }
    return 0;
}

static int ag__act_backward_graph(ag__actbw which, ag_node *node, ag_tensor *dout, const bool *need, ag_tensor **dinp,
                                  ag_ctx *ctx) {
    ag_tensor *g = ag__saved_get(node, 0), *y = ag__saved_get(node, 1);
    if (!g || !y)
        return ag_last_status();
    int rc;
    /* the second input first, as PyTorch's generated backwards (node order) */
    if (need[1]) {
        ag_tensor *m2y = ag__mul_scalar1(ctx, y, -2);
        dinp[1] = which == AG__TANH_BW ? ag_mul(ctx, dout, ag_mul(ctx, m2y, g))
                                       : ag_mul(ctx, ag_mul(ctx, dout, g), ag__add_scalar1(ctx, m2y, 1));
        if ((rc = ag__graph_result(dinp[1])))
            return rc;
    }
    if (need[0]) {
        dinp[0] = which == AG__TANH_BW ? ag__tanh_grad(ctx, dout, y) : ag__sigmoid_grad(ctx, dout, y);
        if ((rc = ag__graph_result(dinp[0])))
            return rc;
    }
    return 0;
}

static int ag__tanh_bw_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(scratch);
    return ag__act_backward(AG__TANH_BW, node, dout, dinp);
}
static int ag__tanh_bw_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    return ag__act_backward_graph(AG__TANH_BW, node, g, need, dinp, ctx);
}
static const ag__node_kind ag__tanh_bw_kind = {
    .name = "TanhBackwardBackward0", .backward = ag__tanh_bw_backward, .backward_graph = ag__tanh_bw_backward_graph};

static int ag__sigmoid_bw_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                   ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(scratch);
    return ag__act_backward(AG__SIGMOID_BW, node, dout, dinp);
}
static int ag__sigmoid_bw_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    return ag__act_backward_graph(AG__SIGMOID_BW, node, g, need, dinp, ctx);
}
static const ag__node_kind ag__sigmoid_bw_kind = {.name = "SigmoidBackwardBackward0",
                                                  .backward = ag__sigmoid_bw_backward,
                                                  .backward_graph = ag__sigmoid_bw_backward_graph};

static ag_tensor *ag__act_bw(ag_ctx *ctx, ag_tensor *g, ag_tensor *y, ag__actbw which) {
    const char *name = which == AG__TANH_BW ? "tanh_backward" : "sigmoid_backward";
    if (ag__check_binary(ctx, g, y, name))
        return NULL;
    if (g && !(g = ag__dense(ctx, g)))
        return NULL;
    if (y && !(y = ag__dense(ctx, y)))
        return NULL;
    if (!ag__same_shape(g, y))
        return ag__error_null(AG_ESHAPE, "%s: grad_output and output must have the same shape", name);
    ag_tensor *out = ag__tensor_like(ctx, y);
    if (!out)
        return NULL;
    if (y->dtype == AG_FLOAT32) {
        const float *a = g->data, *b = y->data;
        float *o = out->data;
        for (int64_t i = 0; i < y->numel; i++)
            o[i] = which == AG__TANH_BW ? a[i] * (1 - b[i] * b[i]) : a[i] * (1 - b[i]) * b[i];
    } else {
        const double *a = g->data, *b = y->data;
        double *o = out->data;
        for (int64_t i = 0; i < y->numel; i++)
            o[i] = which == AG__TANH_BW ? a[i] * (1 - b[i] * b[i]) : a[i] * (1 - b[i]) * b[i];
    }
    ag_tensor *ins[2] = {g, y};
    if (ag__needs_grad(2, ins)) {
        ag_node *node = ag__record(ctx, which == AG__TANH_BW ? &ag__tanh_bw_kind : &ag__sigmoid_bw_kind, out, 2, ins);
        if (!node)
            return NULL;
        ag__save(node, 0, g, false);
        ag__save(node, 1, y, false);
    }
    return out;
}

ag_tensor *ag__tanh_grad(ag_ctx *ctx, ag_tensor *g, ag_tensor *y) { return ag__act_bw(ctx, g, y, AG__TANH_BW); }
ag_tensor *ag__sigmoid_grad(ag_ctx *ctx, ag_tensor *g, ag_tensor *y) { return ag__act_bw(ctx, g, y, AG__SIGMOID_BW); }

/* ==== sum over several dimensions, keepdim ==========================================================
 * out = a summed over the dims in the mask (kept as size 1);
 * da += g broadcast back (graph: g.expand(a's shape)). */

static int ag__sum_keepdim_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                    ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    if (dinp[0] && dinp[0]->numel > 0)
        ag__add_reduced(dinp[0], dout, 1.0);
    return 0;
}
static int ag__expand_to_input_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    if (!need[0])
        return 0;
    const ag_tensor *in = ag__edge_input(node, 0);
    return ag__graph_result(dinp[0] = ag_expand(ctx, g, in->ndim, in->shape));
}
static const ag__node_kind ag__sum_keepdim_kind = {
    .name = "SumBackward1", .backward = ag__sum_keepdim_backward, .backward_graph = ag__expand_to_input_graph};

ag_tensor *ag__sum_keepdim(ag_ctx *ctx, ag_tensor *a, uint32_t dims) {
    if (ag__check_unary(ctx, a, "sum"))
        return NULL;
    if (a && !(a = ag__dense(ctx, a)))
        return NULL;
    int64_t shape[AG_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++)
        shape[d] = dims >> d & 1 ? 1 : a->shape[d];
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, a->ndim, shape);
    if (!out)
        return NULL;
    memset(out->data, 0, out->storage->nbytes);
    if (a->numel > 0)
        ag__add_reduced(out, a, 1.0); /* sums a over the dimensions out has as 1 */
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins) && !ag__record(ctx, &ag__sum_keepdim_kind, out, 1, ins))
        return NULL;
    return out;
}

ag_tensor *ag__sum_to(ag_ctx *ctx, ag_tensor *g, int ndim, const int64_t *shape) {
    if (ag__check_unary(ctx, g, "sum_to"))
        return NULL;
    if (g && !(g = ag__dense(ctx, g)))
        return NULL;
    bool same = g->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = g->shape[d] == shape[d];
    if (same)
        return g;
    if (ndim == 0)
        return ag_sum(ctx, g);
    int lead = g->ndim - ndim;
    if (lead < 0)
        return ag__error_null(AG_ESHAPE, "sum_to: a %d-D shape is bigger than the %d-D gradient", ndim, g->ndim);
    uint32_t dims = 0;
    for (int d = 0; d < g->ndim; d++)
        if (d < lead || (shape[d - lead] == 1 && g->shape[d] != 1))
            dims |= 1u << d;
    ag_tensor *r = dims ? ag__sum_keepdim(ctx, g, dims) : g;
    return lead > 0 ? ag_reshape(ctx, r, ndim, shape) : r;
}

/* ==== CopyBackwards: AccumulateGrad's copy of a first gradient =====================================
 * out = g (PyTorch: an empty tensor copy_'d from g, so the edges are the
 * empty tensor's, none, and g's);  dg += dout. */

static int ag__copy_grad_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                  ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    if (dinp[1])
        ag__axpy(dinp[1], dout, 1.0);
    return 0;
}
static int ag__copy_grad_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    AG__UNUSED(node);
    AG__UNUSED(ctx);
    if (need[1])
        dinp[1] = g;
    return 0;
}
static const ag__node_kind ag__copy_grad_kind = {
    .name = "CopyBackwards", .backward = ag__copy_grad_backward, .backward_graph = ag__copy_grad_backward_graph};

ag_tensor *ag__copy_grad(ag_ctx *ctx, ag_tensor *g) {
    if (g && !(g = ag__dense(ctx, g)))
        return NULL;
    ag_tensor *out = ag__like(ctx, g, "copy_");
    if (!out)
        return NULL;
    memcpy(out->data, g->data, g->storage->nbytes);
    ag_tensor *ins[2] = {NULL, g};
    if (ag__needs_grad(2, ins) && !ag__record(ctx, &ag__copy_grad_kind, out, 2, ins))
        return NULL;
    return out;
}

/* ==== to(dtype) ========================================================================================
 * out = a cast (a copy);  da += dout cast back. */

static void ag__cast_into(ag_tensor *dst, const ag_tensor *src, bool add) {
    for (int64_t i = 0; i < dst->numel; i++)
        ag__store(dst, i, (add ? ag__load(dst, i) : 0.0) + ag__load(src, i));
}

static int ag__cast_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                             ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    if (dinp[0])
        ag__cast_into(dinp[0], dout, true);
    return 0;
}
static int ag__cast_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    return need[0] ? ag__graph_result(dinp[0] = ag__cast_copy(ctx, g, ag__edge_input(node, 0)->dtype)) : 0;
}
static const ag__node_kind ag__cast_kind = {
    .name = "ToCopyBackward0", .backward = ag__cast_backward, .backward_graph = ag__cast_backward_graph};

ag_tensor *ag__cast_copy(ag_ctx *ctx, ag_tensor *a, ag_dtype dtype) {
    if (ag__check_unary(ctx, a, "to"))
        return NULL;
    if (a && !(a = ag__dense(ctx, a)))
        return NULL;
    ag_tensor *out = ag__tensor_new(ctx, dtype, a->ndim, a->shape);
    if (!out)
        return NULL;
    ag__cast_into(out, a, false);
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins) && !ag__record(ctx, &ag__cast_kind, out, 1, ins))
        return NULL;
    return out;
}

/* ==== Checks ============================================================================================ */

bool ag__expandable(const ag_tensor *ref, const ag_tensor *g) {
    if (ref->ndim > g->ndim)
        return false;
    for (int d = 0; d < ref->ndim; d++) {
        int64_t r = ref->shape[ref->ndim - 1 - d], s = g->shape[g->ndim - 1 - d];
        if (r != s && r != 1)
            return false;
    }
    return true;
}

int ag__invalid_gradient(const char *name, int i, const ag_tensor *got, const ag_tensor *ref) {
    char gs[AG_MAX_DIMS * 22 + 3], rs[AG_MAX_DIMS * 22 + 3];
    ag__shape_str(gs, sizeof gs, got->ndim, got->shape);
    ag__shape_str(rs, sizeof rs, ref->ndim, ref->shape);
    return ag__error(AG_ESHAPE,
                     "Function %s returned an invalid gradient at index %d - got %s but expected shape "
                     "compatible with %s",
                     name, i, gs, rs);
}
