/* Neural-network ops: abs, clamp, maximum, softmax and log_softmax, the
 * nll / cross-entropy and mse losses, and linear (x @ w^T + b). Forward
 * and backward kernels side by side; backward kernels add into their
 * gradient buffers. Elementwise maths runs in double and stores in the
 * tensor's dtype where a kernel serves both dtypes. */
#include "ops/ops.h"

#include <inttypes.h>
#include <math.h>

/* ==== abs, clamp ===============================================================
 * abs:   out = |x|                  dx += g * sign(x)
 * clamp: out = min(max(x, lo), hi)  dx += g where lo <= x <= hi (NAN: no bound) */

static int ag__abs_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *x = ag__saved_get(node, 0);
    if (!x)
        return ag_last_status();
    for (int64_t i = 0; i < x->numel; i++) {
        double v = ag__load(x, i), s = v > 0 ? 1 : v < 0 ? -1 : 0;
        ag__store(dinp[0], i, ag__load(dinp[0], i) + ag__load(dout, i) * s);
    }
    return 0;
}

static int ag__clamp_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *x = ag__saved_get(node, 0);
    if (!x)
        return ag_last_status();
    double lo = node->scalar, hi = *(double *)node->attr;
    for (int64_t i = 0; i < x->numel; i++) {
        double v = ag__load(x, i);
        bool pass = (isnan(lo) || v >= lo) && (isnan(hi) || v <= hi);
        if (pass)
            ag__store(dinp[0], i, ag__load(dinp[0], i) + ag__load(dout, i));
    }
    return 0;
}

static const ag__node_kind ag__abs_kind = {"AbsBackward0", ag__abs_backward, NULL};
static const ag__node_kind ag__clamp_kind = {"ClampBackward1", ag__clamp_backward, NULL};

ag_tensor *ag_abs(ag_ctx *ctx, ag_tensor *a) {
    if (ag__check_unary(ctx, a, "ag_abs"))
        return NULL;
    ag_tensor *out = ag__tensor_like(ctx, a);
    if (!out)
        return NULL;
    for (int64_t i = 0; i < a->numel; i++)
        ag__store(out, i, fabs(ag__load(a, i)));
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins)) {
        ag_node *n = ag__record(ctx, &ag__abs_kind, out, 1, ins);
        if (!n)
            return NULL;
        ag__save(n, 0, a, false);
    }
    return out;
}

ag_tensor *ag_clamp(ag_ctx *ctx, ag_tensor *a, double lo, double hi) {
    if (ag__check_unary(ctx, a, "ag_clamp"))
        return NULL;
    if (isnan(lo) && isnan(hi))
        return ag__error_null(AG_EINVAL, "torch.clamp: At least one of 'min' or 'max' must not be None");
    ag_tensor *out = ag__tensor_like(ctx, a);
    if (!out)
        return NULL;
    for (int64_t i = 0; i < a->numel; i++) {
        double v = ag__load(a, i);
        if (!isnan(lo) && v < lo)
            v = lo;
        if (!isnan(hi) && v > hi)
            v = hi;
        ag__store(out, i, v);
    }
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins)) {
        ag_node *n = ag__record(ctx, &ag__clamp_kind, out, 1, ins);
        double *hp = ag__ctx_alloc(ctx, sizeof *hp);
        if (!n || !hp)
            return NULL;
        n->scalar = lo;
        *hp = hi;
        n->attr = hp;
        ag__save(n, 0, a, false);
    }
    return out;
}

/* ==== maximum (broadcasting) =====================================================
 * out = max(a, b) elementwise (nan if either is nan). PyTorch 1.13:
 *   da += where(a == b, g / 2, g) masked to 0 where a < b
 *   db += where(a == b, g / 2, g) masked to 0 where a > b */

static void ag__maximum_walk(const ag_tensor *out_shape_of, ag_tensor *o, const ag_tensor *a, const ag_tensor *b,
                             const ag_tensor *g, ag_tensor *d, int which) {
    const ag_tensor *ops[4] = {o ? o : out_shape_of, a, b, d ? d : out_shape_of};
    ag__iter it;
    ag__iter_init(&it, out_shape_of->ndim, out_shape_of->shape, 4, ops);
    const int last = it.ndim - 1;
    const int64_t n = it.shape[last];
    AG__ITER_ROWS(&it, off, {
        for (int64_t i = 0; i < n; i++) {
            int64_t oo = off[0] + i * it.stride[0][last];
            double x = ag__load(a, off[1] + i * it.stride[1][last]);
            double y = ag__load(b, off[2] + i * it.stride[2][last]);
            if (o) {
                ag__store(o, oo, isnan(x) || isnan(y) ? NAN : (x > y ? x : y));
            } else {
                double gi = ag__load(g, oo), v = x == y ? gi / 2 : gi;
                if (which == 0 ? x < y : x > y)
                    v = 0;
                int64_t od = off[3] + i * it.stride[3][last];
                ag__store(d, od, ag__load(d, od) + v);
            }
        }
    });
}

static int ag__maximum_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *a = ag__saved_get(node, 0), *b = ag__saved_get(node, 1);
    if (!a || !b)
        return ag_last_status();
    for (int which = 0; which < 2; which++)
        if (dinp[which])
            ag__maximum_walk(dout, NULL, a, b, dout, dinp[which], which);
    return 0;
}

static const ag__node_kind ag__maximum_kind = {"MaximumBackward0", ag__maximum_backward, NULL};

ag_tensor *ag_maximum(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    if (ag__check_binary(ctx, a, b, "ag_maximum"))
        return NULL;
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    if (ag__broadcast_shape(a, b, &ndim, shape))
        return NULL;
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, ndim, shape);
    if (!out)
        return NULL;
    if (out->numel > 0)
        ag__maximum_walk(out, out, a, b, NULL, NULL, 0);
    ag_tensor *ins[2] = {a, b};
    if (ag__needs_grad(2, ins)) {
        ag_node *n = ag__record(ctx, &ag__maximum_kind, out, 2, ins);
        if (!n)
            return NULL;
        ag__save(n, 0, a, false);
        ag__save(n, 1, b, false);
    }
    return out;
}

/* ==== softmax, log_softmax over one dimension ===================================
 * x is (outer, n, inner) around dim.
 *   softmax:     y = exp(x - max) / sum exp(x - max)   dx += y * (g - sum_k g y)
 *   log_softmax: y = x - max - log sum exp(x - max)    dx += g - exp(y) * sum_k g */

static void ag__softmax_fwd(const ag_tensor *x, ag_tensor *y, int dim, bool log_mode) {
    int64_t outer, n, inner;
    ag__split(x, dim, &outer, &n, &inner);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * n * inner + i;
            double m = -INFINITY;
            for (int64_t k = 0; k < n; k++) {
                double v = ag__load(x, base + k * inner);
                m = v > m || isnan(v) ? v : m;
            }
            double sum = 0;
            for (int64_t k = 0; k < n; k++)
                sum += exp(ag__load(x, base + k * inner) - m);
            double lse = log(sum);
            for (int64_t k = 0; k < n; k++) {
                double v = ag__load(x, base + k * inner) - m;
                ag__store(y, base + k * inner, log_mode ? v - lse : exp(v) / sum);
            }
        }
}

static int ag__softmax_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *y = ag__saved_get(node, 0);
    if (!y)
        return ag_last_status();
    bool log_mode = node->iarg[1] != 0;
    int64_t outer, n, inner;
    ag__split(y, (int)node->iarg[0], &outer, &n, &inner);
    ag_tensor *d = dinp[0];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * n * inner + i;
            double s = 0;
            for (int64_t k = 0; k < n; k++) {
                int64_t e = base + k * inner;
                s += log_mode ? ag__load(dout, e) : ag__load(dout, e) * ag__load(y, e);
            }
            for (int64_t k = 0; k < n; k++) {
                int64_t e = base + k * inner;
                double g = ag__load(dout, e), yv = ag__load(y, e);
                double v = log_mode ? g - exp(yv) * s : yv * (g - s);
                ag__store(d, e, ag__load(d, e) + v);
            }
        }
    return 0;
}

static const ag__node_kind ag__softmax_kind = {"SoftmaxBackward0", ag__softmax_backward, NULL};
static const ag__node_kind ag__log_softmax_kind = {"LogSoftmaxBackward0", ag__softmax_backward, NULL};

static ag_tensor *ag__softmax(ag_ctx *ctx, ag_tensor *a, int dim, bool log_mode) {
    const char *name = log_mode ? "ag_log_softmax" : "ag_softmax";
    if (ag__check_unary(ctx, a, name))
        return NULL;
    int d = 0;
    if (ag__normalize_dim(dim, a->ndim, &d))
        return NULL;
    if (a->ndim == 0)
        d = 0;
    ag_tensor *out = ag__tensor_like(ctx, a);
    if (!out)
        return NULL;
    if (a->numel > 0) {
        if (a->ndim == 0) /* a 0-dim tensor is its own dimension of one */
            ag__store(out, 0, log_mode ? 0.0 : 1.0);
        else
            ag__softmax_fwd(a, out, d, log_mode);
    }
    ag_tensor *ins[1] = {a};
    if (ag__needs_grad(1, ins)) {
        ag_node *n = ag__record(ctx, log_mode ? &ag__log_softmax_kind : &ag__softmax_kind, out, 1, ins);
        if (!n)
            return NULL;
        n->iarg[0] = a->ndim ? d : 0;
        n->iarg[1] = log_mode;
        ag__save(n, 0, out, true);
    }
    return out;
}

ag_tensor *ag_softmax(ag_ctx *ctx, ag_tensor *a, int dim) { return ag__softmax(ctx, a, dim, false); }
ag_tensor *ag_log_softmax(ag_ctx *ctx, ag_tensor *a, int dim) { return ag__softmax(ctx, a, dim, true); }

/* ==== nll_loss and cross_entropy (mean over the batch) ============================
 * logp (N, C), targets t:  out = -1/N sum_n logp[n, t_n]
 * backward:                dlogp[n, t_n] += -g / N */

static int ag__nll_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    if (ag__node_check_released(node))
        return ag_last_status();
    const int64_t *t = node->attr;
    int64_t N = node->iarg[0], C = node->iarg[1];
    double g = ag__load(dout, 0) / (double)N;
    for (int64_t n = 0; n < N; n++)
        ag__store(dinp[0], n * C + t[n], ag__load(dinp[0], n * C + t[n]) - g);
    return 0;
}

static const ag__node_kind ag__nll_kind = {"NllLossBackward0", ag__nll_backward, NULL};

ag_tensor *ag_nll_loss(ag_ctx *ctx, ag_tensor *logp, const int64_t *targets) {
    if (ag__check_unary(ctx, logp, "ag_nll_loss"))
        return NULL;
    if (logp->ndim != 2)
        return ag__error_null(AG_ESHAPE, "ag_nll_loss: expected a 2-D input (N, C), got %d-D", logp->ndim);
    int64_t N = logp->shape[0], C = logp->shape[1];
    if (N > 0 && !targets)
        return ag__error_null(AG_EINVAL, "ag_nll_loss: targets is NULL");
    for (int64_t n = 0; n < N; n++)
        if (targets[n] < 0 || targets[n] >= C)
            return ag__error_null(AG_EINVAL, "Target %" PRId64 " is out of bounds.", targets[n]);
    ag_tensor *out = ag__tensor_new(ctx, logp->dtype, 0, NULL);
    if (!out)
        return NULL;
    double s = 0;
    for (int64_t n = 0; n < N; n++)
        s += ag__load(logp, n * C + targets[n]);
    ag__store(out, 0, N ? -s / (double)N : NAN);
    ag_tensor *ins[1] = {logp};
    if (ag__needs_grad(1, ins)) {
        ag_node *node = ag__record(ctx, &ag__nll_kind, out, 1, ins);
        if (!node || !ag__node_keep_ints(ctx, node, targets, N)) /* PyTorch saves the target */
            return NULL;
        node->iarg[0] = N;
        node->iarg[1] = C;
    }
    return out;
}

ag_tensor *ag_cross_entropy(ag_ctx *ctx, ag_tensor *logits, const int64_t *targets) {
    if (logits && logits->ndim != 2)
        return ag__error_null(AG_ESHAPE, "ag_cross_entropy: expected 2-D logits (N, C), got %d-D", logits->ndim);
    return ag_nll_loss(ctx, ag_log_softmax(ctx, logits, 1), targets);
}

/* ==== mse_loss (mean) ===========================================================
 * out = mean((a - b)^2);  da += 2 g (a - b) / N;  db -= 2 g (a - b) / N */

static int ag__mse_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    ag_tensor *a = ag__saved_get(node, 0), *b = ag__saved_get(node, 1);
    if (!a || !b)
        return ag_last_status();
    double g = 2 * ag__load(dout, 0) / (double)a->numel;
    for (int64_t i = 0; i < a->numel; i++) {
        double diff = ag__load(a, i) - ag__load(b, i);
        if (dinp[0])
            ag__store(dinp[0], i, ag__load(dinp[0], i) + g * diff);
        if (dinp[1])
            ag__store(dinp[1], i, ag__load(dinp[1], i) - g * diff);
    }
    return 0;
}

static const ag__node_kind ag__mse_kind = {"MseLossBackward0", ag__mse_backward, NULL};

ag_tensor *ag_mse_loss(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    if (ag__check_binary(ctx, a, b, "ag_mse_loss"))
        return NULL;
    if (!ag__same_shape(a, b))
        return ag__error_null(AG_ESHAPE, "ag_mse_loss: input and target must have the same shape");
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, 0, NULL);
    if (!out)
        return NULL;
    double s = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        double d = ag__load(a, i) - ag__load(b, i);
        s += d * d;
    }
    ag__store(out, 0, a->numel ? s / (double)a->numel : NAN);
    ag_tensor *ins[2] = {a, b};
    if (ag__needs_grad(2, ins)) {
        ag_node *n = ag__record(ctx, &ag__mse_kind, out, 2, ins);
        if (!n)
            return NULL;
        ag__save(n, 0, a, false);
        ag__save(n, 1, b, false);
    }
    return out;
}

/* ==== linear ==================================================================
 * x (..., in), w (out, in), b (out) or NULL:  y = x @ w^T + b, multiplied as
 * x2 (M, in) @ wt (in, out) with M the product of x's leading sizes.
 *
 * The graph is the one PyTorch 1.13 records for F.linear, node for node, so
 * next_functions walk the same way:
 *   x 2-D, bias:      AddmmBackward0(b, x, TBackward0(w))
 *   x 2-D:            MmBackward0(x, TBackward0(w))
 *   x 3-D, bias:      ViewBackward0(AddmmBackward0(b, ViewBackward0(x), TBackward0(w)))
 *   x 3-D and more:   UnsafeViewBackward0(MmBackward0(ReshapeAliasBackward0(x), TBackward0(w)))
 *   x 1-D:            SqueezeBackward3(MmBackward0(UnsqueezeBackward0(x), TBackward0(w)))
 * and, where the bias is not fused (1-D, 4-D and more), AddBackward0(that, b).
 * The tensors between these nodes (x as (M, in), w^T, the (M, out) product)
 * are headers sharing x's, w's and y's storage, for their shapes: no
 * backward reads their data, and w^T's is not even laid out transposed. */

/* y2 = x2 @ wt [+ b]:  dx2 += g @ wt^T = g @ w;  dwt += x2^T @ g;  db += sum_rows g.
 * Edges: (b,) x2, wt, as PyTorch's AddmmBackward0 and MmBackward0. */
static int ag__linear_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    int64_t M = node->iarg[0], in = node->iarg[1], out = node->iarg[2];
    int e = node->num_next == 3; /* AddmmBackward0: edge 0 is the bias */
    if (dinp[e]) {
        ag_tensor *w = ag__saved_get(node, 1);
        if (!w)
            return ag_last_status();
        ag__gemm_any(dout->dtype, false, false, M, in, out, dout->data, out, w->data, in, dinp[e]->data, in);
    }
    if (dinp[e + 1]) {
        ag_tensor *x = ag__saved_get(node, 0);
        if (!x)
            return ag_last_status();
        ag__gemm_any(dout->dtype, true, false, in, out, M, x->data, in, dout->data, out, dinp[e + 1]->data, out);
    }
    if (e && dinp[0])
        ag__add_reduced(dinp[0], dout, 1.0);
    return 0;
}

/* wt = w.t():  dw += g^T */
static int ag__linear_t_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(node);
    AG__UNUSED(scratch);
    if (dinp[0])
        ag__transpose_into(dinp[0], dout, 0, 1, true);
    return 0;
}

static const ag__node_kind ag__addmm_kind = {"AddmmBackward0", ag__linear_backward, NULL};
static const ag__node_kind ag__linear_mm_kind = {"MmBackward0", ag__linear_backward, NULL};
static const ag__node_kind ag__linear_t_kind = {"TBackward0", ag__linear_t_backward, NULL};
/* The reshapes around the product: the same elements, another shape. */
static const ag__node_kind ag__linear_view_kind = {"ViewBackward0", ag__view_backward, NULL};
static const ag__node_kind ag__linear_unsafe_view_kind = {"UnsafeViewBackward0", ag__view_backward, NULL};
static const ag__node_kind ag__linear_reshape_alias_kind = {"ReshapeAliasBackward0", ag__view_backward, NULL};
static const ag__node_kind ag__linear_unsqueeze_kind = {"UnsqueezeBackward0", ag__view_backward, NULL};
static const ag__node_kind ag__linear_squeeze_kind = {"SqueezeBackward3", ag__view_backward, NULL};

/* A header for base's storage with another shape (same number of elements). */
static ag_tensor *ag__linear_alias(ag_ctx *ctx, const ag_tensor *base, int64_t rows, int64_t cols) {
    ag_tensor *t = ag__ctx_alloc(ctx, sizeof *t);
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    t->ctx = ctx;
    t->storage = base->storage;
    t->data = base->data;
    t->dtype = base->dtype;
    t->ndim = 2;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->numel = base->numel;
    return t;
}

/* Records `kind` for out = a reshape of `in`, when `in` requires grad. */
static int ag__linear_record_view(ag_ctx *ctx, const ag__node_kind *kind, ag_tensor *out, ag_tensor *in) {
    ag_tensor *ins[1] = {in};
    if (ag__needs_grad(1, ins) && !ag__record(ctx, kind, out, 1, ins))
        return ag_last_status();
    return 0;
}

ag_tensor *ag_linear(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *b) {
    if (ag__check_binary(ctx, x, w, "ag_linear"))
        return NULL;
    if (b && b->dtype != x->dtype)
        return ag__error_null(AG_EDTYPE, "ag_linear: bias has dtype %s, input %s", ag__dtype_scalar_name(b->dtype),
                              ag__dtype_scalar_name(x->dtype));
    if (x->ndim < 1 || w->ndim != 2)
        return ag__error_null(AG_ESHAPE, "ag_linear: expected input (..., in) and a 2-D weight (out, in)");
    /* M: the rows of x, its leading sizes (whose product fits, as x exists),
     * also when there are 0 input features: then each row is the bias */
    int nd = x->ndim;
    int64_t in = x->shape[nd - 1], out_f = w->shape[0], M = 1;
    ag__numel_ok(nd - 1, x->shape, &M);
    if (w->shape[1] != in)
        return ag__error_null(AG_ESHAPE,
                              "mat1 and mat2 shapes cannot be multiplied (%" PRId64 "x%" PRId64 " and %" PRId64
                              "x%" PRId64 ")",
                              M, in, w->shape[1], w->shape[0]);
    if (b && (b->ndim != 1 || b->shape[0] != out_f))
        return ag__error_null(AG_ESHAPE, "ag_linear: bias must have shape [%" PRId64 "]", out_f);
    bool addmm = b && (nd == 2 || nd == 3); /* where PyTorch adds the bias inside the product */
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[nd - 1] = out_f;
    ag_tensor *y = ag__tensor_new(ctx, x->dtype, nd, shape);
    if (!y)
        return NULL;
    size_t es = ag__dtype_size(x->dtype);
    if (y->numel > 0) { /* an empty result may have more rows than fit in memory: none is visited */
        if (addmm)      /* rows start as the bias, then += x @ w^T */
            for (int64_t r = 0; r < M; r++)
                memcpy((char *)y->data + (size_t)(r * out_f) * es, b->data, (size_t)out_f * es);
        else
            memset(y->data, 0, (size_t)y->numel * es);
        ag__gemm_any(x->dtype, false, true, M, out_f, in, x->data, in, w->data, in, y->data, out_f);
    }

    ag_tensor *all[3] = {b, x, w};
    if (!ag__needs_grad(3, all))
        return b && !addmm ? ag_add(ctx, y, b) : y;
    ag_tensor *wt = ag__linear_alias(ctx, w, in, out_f), *x2 = x, *y2 = y;
    if (!wt || ag__linear_record_view(ctx, &ag__linear_t_kind, wt, w))
        return NULL;
    if (nd != 2) {
        x2 = ag__linear_alias(ctx, x, M, in);
        y2 = ag__linear_alias(ctx, y, M, out_f);
        const ag__node_kind *k = nd == 1 ? &ag__linear_unsqueeze_kind
                                 : addmm ? &ag__linear_view_kind
                                         : &ag__linear_reshape_alias_kind;
        if (!x2 || !y2 || ag__linear_record_view(ctx, k, x2, x))
            return NULL;
    }
    ag_tensor *ins[3] = {b, x2, wt};
    ag_tensor **mm_ins = addmm ? ins : ins + 1;
    int n_ins = addmm ? 3 : 2;
    if (ag__needs_grad(n_ins, mm_ins)) {
        ag_node *n = ag__record(ctx, addmm ? &ag__addmm_kind : &ag__linear_mm_kind, y2, n_ins, mm_ins);
        if (!n)
            return NULL;
        n->iarg[0] = M;
        n->iarg[1] = in;
        n->iarg[2] = out_f;
        if (wt->requires_grad) /* as PyTorch: each factor saved only for the other's gradient */
            ag__save(n, 0, x, false);
        if (x2->requires_grad)
            ag__save(n, 1, w, false);
    }
    if (nd != 2) {
        const ag__node_kind *k = nd == 1 ? &ag__linear_squeeze_kind
                                 : addmm ? &ag__linear_view_kind
                                         : &ag__linear_unsafe_view_kind;
        if (ag__linear_record_view(ctx, k, y, y2))
            return NULL;
    }
    return b && !addmm ? ag_add(ctx, y, b) : y;
}
