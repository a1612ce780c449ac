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

static const ag__node_kind ag__abs_kind = {"AbsBackward0", ag__abs_backward};
static const ag__node_kind ag__clamp_kind = {"ClampBackward1", ag__clamp_backward};

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

static const ag__node_kind ag__maximum_kind = {"MaximumBackward0", ag__maximum_backward};

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

static const ag__node_kind ag__softmax_kind = {"SoftmaxBackward0", ag__softmax_backward};
static const ag__node_kind ag__log_softmax_kind = {"LogSoftmaxBackward0", ag__softmax_backward};

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

static const ag__node_kind ag__nll_kind = {"NllLossBackward0", ag__nll_backward};

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

static const ag__node_kind ag__mse_kind = {"MseLossBackward0", ag__mse_backward};

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
 * x (M, in) viewed from (..., in), w (out, in), b (out):
 *   y = x @ w^T + b        dx += g @ w;   dw += g^T @ x;   db += sum_rows g */

static int ag__linear_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    int64_t M = node->iarg[0], in = node->iarg[1], out = node->iarg[2];
    /* edges: 0 = b (may be absent), 1 = x, 2 = w, as PyTorch's AddmmBackward0 */
    if (dinp[1]) {
        ag_tensor *w = ag__saved_get(node, 1);
        if (!w)
            return ag_last_status();
        ag__gemm_any(dout->dtype, false, false, M, in, out, dout->data, out, w->data, in, dinp[1]->data, in);
    }
    if (dinp[2]) {
        ag_tensor *x = ag__saved_get(node, 0);
        if (!x)
            return ag_last_status();
        ag__gemm_any(dout->dtype, true, false, out, in, M, dout->data, out, x->data, in, dinp[2]->data, in);
    }
    if (dinp[0])
        ag__add_reduced(dinp[0], dout, 1.0);
    return 0;
}

static const ag__node_kind ag__linear_kind = {"AddmmBackward0", ag__linear_backward};
static const ag__node_kind ag__linear_nobias_kind = {"MmBackward0", ag__linear_backward};

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
    int64_t in = x->shape[x->ndim - 1], out_f = w->shape[0], M = 1;
    ag__numel_ok(x->ndim - 1, x->shape, &M);
    if (w->shape[1] != in)
        return ag__error_null(AG_ESHAPE,
                              "mat1 and mat2 shapes cannot be multiplied (%" PRId64 "x%" PRId64 " and %" PRId64
                              "x%" PRId64 ")",
                              M, in, w->shape[1], w->shape[0]);
    if (b && (b->ndim != 1 || b->shape[0] != out_f))
        return ag__error_null(AG_ESHAPE, "ag_linear: bias must have shape [%" PRId64 "]", out_f);
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = out_f;
    ag_tensor *out = ag__tensor_new(ctx, x->dtype, x->ndim, shape);
    if (!out)
        return NULL;
    if (out->numel > 0) {
        for (int64_t r = 0; r < M; r++) /* rows start as the bias, then += x @ w^T */
            for (int64_t j = 0; j < out_f; j++)
                ag__store(out, r * out_f + j, b ? ag__load(b, j) : 0.0);
        ag__gemm_any(x->dtype, false, true, M, out_f, in, x->data, in, w->data, in, out->data, out_f);
    }
    ag_tensor *ins[3] = {b, x, w};
    if (ag__needs_grad(3, ins)) {
        ag_node *n = ag__record(ctx, b ? &ag__linear_kind : &ag__linear_nobias_kind, out, 3, ins);
        if (!n)
            return NULL;
        n->iarg[0] = M;
        n->iarg[1] = in;
        n->iarg[2] = out_f;
        ag__save(n, 0, x, false);
        ag__save(n, 1, w, false);
    }
    return out;
}
