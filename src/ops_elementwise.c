/* Elementwise ops: binary ops with NumPy broadcasting (add, sub, mul, div),
 * ops with a scalar (add_scalar, mul_scalar, pow_scalar) and unary maths
 * (neg, sqrt, exp, log, tanh, sigmoid, relu). Each op's forward kernel, its
 * backward kernel and its node kind sit together. Backward kernels add into
 * the gradient buffers they are given. */
#include "ops.h"

#include <math.h>

/* ==== Binary ops with broadcasting ==========================================
 * out = a OP b, out has the broadcast shape of a and b. */

typedef enum { AG__ADD, AG__SUB, AG__MUL, AG__DIV } ag__binop;

#define AG__BINARY_FWD(T)                                                                          \
    static void ag__binary_fwd_##T(ag__binop op, const ag__iter *it, T *out, const T *a, const T *b) { \
        const int last = it->ndim - 1;                                                             \
        const int64_t n = it->shape[last];                                                         \
        const int64_t sa = it->stride[1][last], sb = it->stride[2][last];                          \
        AG__ITER_ROWS(it, off, {                                                                   \
            T *o = out + off[0];                                                                   \
            const T *x = a + off[1], *y = b + off[2];                                              \
            if (sa == 1 && sb == 1) {                                                              \
                switch (op) {                                                                      \
                case AG__ADD: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = x[i] + y[i]; break; \
                case AG__SUB: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = x[i] - y[i]; break; \
                case AG__MUL: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = x[i] * y[i]; break; \
                case AG__DIV: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = x[i] / y[i]; break; \
                }                                                                                  \
            } else {                                                                               \
                switch (op) {                                                                      \
                case AG__ADD: for (int64_t i = 0; i < n; i++) o[i] = x[i * sa] + y[i * sb]; break;  \
                case AG__SUB: for (int64_t i = 0; i < n; i++) o[i] = x[i * sa] - y[i * sb]; break;  \
                case AG__MUL: for (int64_t i = 0; i < n; i++) o[i] = x[i * sa] * y[i * sb]; break;  \
                case AG__DIV: for (int64_t i = 0; i < n; i++) o[i] = x[i * sa] / y[i * sb]; break;  \
                }                                                                                  \
            }                                                                                      \
        });                                                                                        \
    }
AG__BINARY_FWD(float)
AG__BINARY_FWD(double)

/* Backward of input `which` (0: a, 1: b), summed back to its shape:
 *   add: da += g          db += g
 *   sub: da += g          db -= g
 *   mul: da += g * b      db += g * a
 *   div: da += g / b      db -= g * a / (b * b)
 * Walked over the output shape; d's strides are 0 along the dimensions it
 * was broadcast in, so contributions sum where they must. */
#define AG__BINARY_BWD(T)                                                                          \
    static void ag__binary_bwd_##T(ag__binop op, int which, const ag__iter *it, T *d, const T *g, const T *a, \
                                   const T *b) {                                                   \
        const int last = it->ndim - 1;                                                             \
        const int64_t n = it->shape[last];                                                         \
        const int64_t sd = it->stride[0][last], sg = it->stride[1][last];                          \
        const int64_t sa = it->stride[2][last], sb = it->stride[3][last];                          \
        AG__ITER_ROWS(it, off, {                                                                   \
            T *dd = d + off[0];                                                                    \
            const T *gg = g + off[1], *x = a ? a + off[2] : NULL, *y = b ? b + off[3] : NULL;      \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T gi = gg[i * sg], v;                                                              \
                switch (op) {                                                                      \
                case AG__ADD: v = gi; break;                                                       \
                case AG__SUB: v = which ? -gi : gi; break;                                         \
                case AG__MUL: v = which ? gi * x[i * sa] : gi * y[i * sb]; break;                  \
                default: {                                                                         \
                    T yi = y[i * sb];                                                              \
                    v = which ? -gi * x[i * sa] / (yi * yi) : gi / yi;                             \
                }                                                                                  \
                }                                                                                  \
                dd[i * sd] += v;                                                                   \
            }                                                                                      \
        });                                                                                        \
    }
AG__BINARY_BWD(float)
AG__BINARY_BWD(double)

static int ag__binary_backward(ag__binop op, ag_node *node, const ag_tensor *dout, ag_tensor **dinp) {
    ag_tensor *a = NULL, *b = NULL;
    /* What each gradient reads: mul's da needs b (saved in slot 1), db
     * needs a (slot 0); div needs b for both and a for db. */
    bool need_a = (op == AG__MUL && dinp[1]) || (op == AG__DIV && dinp[1]);
    bool need_b = (op == AG__MUL && dinp[0]) || op == AG__DIV;
    if (need_a && !(a = ag__saved_get(node, 0)))
        return ag_last_status();
    if (need_b && !(b = ag__saved_get(node, 1)))
        return ag_last_status();
    if (dout->numel == 1 && (!a || a->numel == 1) && (!b || b->numel == 1)) {
        /* one-element operands (every d then has one element too) */
        for (int which = 0; which < 2; which++) {
            ag_tensor *d = dinp[which];
            if (!d)
                continue;
            if (d->dtype == AG_FLOAT32) {
                float g = *(const float *)dout->data, x = a ? *(float *)a->data : 0, y = b ? *(float *)b->data : 1;
                float v = op == AG__ADD ? g
                          : op == AG__SUB ? (which ? -g : g)
                          : op == AG__MUL ? (which ? g * x : g * y)
                                          : (which ? -g * x / (y * y) : g / y);
                *(float *)d->data += v;
            } else {
                double g = *(const double *)dout->data, x = a ? *(double *)a->data : 0,
                       y = b ? *(double *)b->data : 1;
                double v = op == AG__ADD ? g
                           : op == AG__SUB ? (which ? -g : g)
                           : op == AG__MUL ? (which ? g * x : g * y)
                                           : (which ? -g * x / (y * y) : g / y);
                *(double *)d->data += v;
            }
        }
        return 0;
    }
    for (int which = 0; which < 2; which++) {
        ag_tensor *d = dinp[which];
        if (!d)
            continue;
        if (op == AG__ADD || (op == AG__SUB && which == 0)) {
            ag__add_reduced(d, dout, 1.0);
            continue;
        }
        if (op == AG__SUB) {
            ag__add_reduced(d, dout, -1.0);
            continue;
        }
        const ag_tensor *ops[4] = {d, dout, a ? a : dout, b ? b : dout};
        ag__iter it;
        if (d->numel == dout->numel && (!a || a->numel == dout->numel) && (!b || b->numel == dout->numel)) {
            /* no broadcasting: one flat row */
            it.ndim = 1;
            it.nops = 4;
            it.shape[0] = dout->numel;
            for (int k = 0; k < 4; k++)
                it.stride[k][0] = 1;
        } else {
            ag__iter_init(&it, dout->ndim, dout->shape, 4, ops);
        }
        if (d->dtype == AG_FLOAT32)
            ag__binary_bwd_float(op, which, &it, d->data, dout->data, a ? a->data : NULL, b ? b->data : NULL);
        else
            ag__binary_bwd_double(op, which, &it, d->data, dout->data, a ? a->data : NULL, b ? b->data : NULL);
    }
    return 0;
}

#define AG__BINARY_NODE(lname, OP, Name)                                                           \
    static int ag__##lname##_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) { \
        AG__UNUSED(scratch);                                                                       \
        return ag__binary_backward(OP, node, dout, dinp);                                          \
    }                                                                                              \
    static const ag__node_kind ag__##lname##_kind = {Name, ag__##lname##_backward};
AG__BINARY_NODE(add, AG__ADD, "AddBackward0")
AG__BINARY_NODE(sub, AG__SUB, "SubBackward0")
AG__BINARY_NODE(mul, AG__MUL, "MulBackward0")
AG__BINARY_NODE(div, AG__DIV, "DivBackward0")

static ag_tensor *ag__binary(ag_ctx *ctx, ag__binop op, ag_tensor *a, ag_tensor *b, const char *name,
                             const ag__node_kind *kind) {
    if (ag__check_binary(ctx, a, b, name))
        return NULL;
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    if (ag__broadcast_shape(a, b, &ndim, shape))
        return NULL;
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, ndim, shape);
    if (!out)
        return NULL;
    if (AG__LIKELY(a->numel == 1 && b->numel == 1 && out->numel == 1)) {
        /* one-element tensors: no walk to set up */
        if (a->dtype == AG_FLOAT32) {
            float x = *(float *)a->data, y = *(float *)b->data;
            *(float *)out->data = op == AG__ADD ? x + y : op == AG__SUB ? x - y : op == AG__MUL ? x * y : x / y;
        } else {
            double x = *(double *)a->data, y = *(double *)b->data;
            *(double *)out->data = op == AG__ADD ? x + y : op == AG__SUB ? x - y : op == AG__MUL ? x * y : x / y;
        }
    } else if (out->numel > 0) {
        const ag_tensor *ops[3] = {out, a, b};
        ag__iter it;
        ag__iter_init(&it, ndim, shape, 3, ops);
        if (a->dtype == AG_FLOAT32)
            ag__binary_fwd_float(op, &it, out->data, a->data, b->data);
        else
            ag__binary_fwd_double(op, &it, out->data, a->data, b->data);
    }
    ag_tensor *ins[2] = {a, b};
    if (ag__needs_grad(2, ins)) {
        ag_node *node = ag__record(ctx, kind, out, 2, ins);
        if (!node)
            return NULL;
        /* PyTorch saves only what the wanted gradients read. */
        if (op == AG__MUL) {
            if (b->requires_grad)
                ag__save(node, 0, a, false);
            if (a->requires_grad)
                ag__save(node, 1, b, false);
        } else if (op == AG__DIV) {
            if (b->requires_grad)
                ag__save(node, 0, a, false);
            ag__save(node, 1, b, false);
        }
    }
    return out;
}

ag_tensor *ag_add(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) { return ag__binary(ctx, AG__ADD, a, b, "ag_add", &ag__add_kind); }
ag_tensor *ag_sub(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) { return ag__binary(ctx, AG__SUB, a, b, "ag_sub", &ag__sub_kind); }
ag_tensor *ag_mul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) { return ag__binary(ctx, AG__MUL, a, b, "ag_mul", &ag__mul_kind); }
ag_tensor *ag_div(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) { return ag__binary(ctx, AG__DIV, a, b, "ag_div", &ag__div_kind); }

/* ==== Unary ops ============================================================
 * out = f(a), same shape; backward reads the saved input or result. */

typedef enum {
    AG__NEG,
    AG__SQRT,
    AG__EXP,
    AG__LOG,
    AG__TANH,
    AG__SIGMOID,
    AG__RELU,
    AG__ADDS, /* a + s */
    AG__MULS, /* a * s */
    AG__POWS, /* a ** s */
} ag__unop;

#define AG__UNARY_FWD(T, SQRT, EXP, LOG, TANH, POW)                                                \
    static void ag__unary_fwd_##T(ag__unop op, T *o, const T *x, int64_t n, T s) {                 \
        switch (op) {                                                                              \
        case AG__NEG: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = -x[i]; break;     \
        case AG__SQRT: for (int64_t i = 0; i < n; i++) o[i] = SQRT(x[i]); break;                   \
        case AG__EXP: for (int64_t i = 0; i < n; i++) o[i] = EXP(x[i]); break;                     \
        case AG__LOG: for (int64_t i = 0; i < n; i++) o[i] = LOG(x[i]); break;                     \
        case AG__TANH: for (int64_t i = 0; i < n; i++) o[i] = TANH(x[i]); break;                   \
        case AG__SIGMOID: for (int64_t i = 0; i < n; i++) o[i] = (T)1 / ((T)1 + EXP(-x[i])); break; \
        case AG__RELU: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = x[i] > 0 ? x[i] : (x[i] != x[i] ? x[i] : 0); break; \
        case AG__ADDS: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = x[i] + s; break; \
        case AG__MULS: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = x[i] * s; break; \
        case AG__POWS:                                                                             \
            if (s == 2) {                                                                          \
                _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = x[i] * x[i];            \
            } else {                                                                               \
                for (int64_t i = 0; i < n; i++)                                                    \
                    o[i] = POW(x[i], s);                                                           \
            }                                                                                      \
            break;                                                                                 \
        }                                                                                          \
    }
AG__UNARY_FWD(float, sqrtf, expf, logf, tanhf, powf)
AG__UNARY_FWD(double, sqrt, exp, log, tanh, pow)

/* Backward, with x the saved input and r the saved result where needed:
 *   neg:     dx -= g                      (out = -x)
 *   sqrt:    dx += g / (2 r)              (r = sqrt(x))
 *   exp:     dx += g r                    (r = exp(x))
 *   log:     dx += g / x                  (out = log(x))
 *   tanh:    dx += g (1 - r^2)            (r = tanh(x))
 *   sigmoid: dx += g (1 - r) r            (r = 1 / (1 + exp(-x)))
 *   relu:    dx += r > 0 ? g : 0          (r = max(x, 0))
 *   adds:    dx += g                      (out = x + s)
 *   muls:    dx += g s                    (out = x * s)
 *   pows:    dx += g s x^(s-1), 0 if s==0 (out = x ** s) */
#define AG__UNARY_BWD(T, POW)                                                                      \
    static void ag__unary_bwd_##T(ag__unop op, T *d, const T *g, const T *x, const T *r, int64_t n, T s) { \
        switch (op) {                                                                              \
        case AG__NEG: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] -= g[i]; break;     \
        case AG__SQRT: for (int64_t i = 0; i < n; i++) d[i] += g[i] / (2 * r[i]); break;           \
        case AG__EXP: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += g[i] * r[i]; break; \
        case AG__LOG: for (int64_t i = 0; i < n; i++) d[i] += g[i] / x[i]; break;                  \
        case AG__TANH: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += g[i] * (1 - r[i] * r[i]); break; \
        case AG__SIGMOID: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += g[i] * (1 - r[i]) * r[i]; break; \
        case AG__RELU: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += r[i] > 0 ? g[i] : 0; break; \
        case AG__ADDS: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += g[i]; break;    \
        case AG__MULS: _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += g[i] * s; break; \
        case AG__POWS:                                                                             \
            if (s == 0)                                                                            \
                break;                                                                             \
            for (int64_t i = 0; i < n; i++)                                                        \
                d[i] += g[i] * (s * POW(x[i], s - 1));                                             \
            break;                                                                                 \
        }                                                                                          \
    }
AG__UNARY_BWD(float, powf)
AG__UNARY_BWD(double, pow)

/* Which saved tensor each backward reads: the input (slot 0), the result
 * (slot 1) or nothing. */
static bool ag__unop_saves_input(ag__unop op) { return op == AG__LOG || op == AG__POWS; }
static bool ag__unop_saves_result(ag__unop op) {
    return op == AG__SQRT || op == AG__EXP || op == AG__TANH || op == AG__SIGMOID || op == AG__RELU;
}

static int ag__unary_backward(ag__unop op, ag_node *node, const ag_tensor *dout, ag_tensor **dinp) {
    ag_tensor *d = dinp[0];
    if (!d)
        return 0;
    const ag_tensor *x = NULL, *r = NULL;
    if (ag__unop_saves_input(op) && !(x = ag__saved_get(node, 0)))
        return ag_last_status();
    if (ag__unop_saves_result(op) && !(r = ag__saved_get(node, 1)))
        return ag_last_status();
    if (d->dtype == AG_FLOAT32)
        ag__unary_bwd_float(op, d->data, dout->data, x ? x->data : NULL, r ? r->data : NULL, d->numel,
                            (float)node->scalar);
    else
        ag__unary_bwd_double(op, d->data, dout->data, x ? x->data : NULL, r ? r->data : NULL, d->numel,
                             node->scalar);
    return 0;
}

#define AG__UNARY_NODE(lname, OP, Name)                                                            \
    static int ag__##lname##_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) { \
        AG__UNUSED(scratch);                                                                       \
        return ag__unary_backward(OP, node, dout, dinp);                                           \
    }                                                                                              \
    static const ag__node_kind ag__##lname##_kind = {Name, ag__##lname##_backward};
AG__UNARY_NODE(neg, AG__NEG, "NegBackward0")
AG__UNARY_NODE(sqrt, AG__SQRT, "SqrtBackward0")
AG__UNARY_NODE(exp, AG__EXP, "ExpBackward0")
AG__UNARY_NODE(log, AG__LOG, "LogBackward0")
AG__UNARY_NODE(tanh, AG__TANH, "TanhBackward0")
AG__UNARY_NODE(sigmoid, AG__SIGMOID, "SigmoidBackward0")
AG__UNARY_NODE(relu, AG__RELU, "ReluBackward0")
AG__UNARY_NODE(adds, AG__ADDS, "AddBackward0")
AG__UNARY_NODE(muls, AG__MULS, "MulBackward0")
AG__UNARY_NODE(pows, AG__POWS, "PowBackward0")

static ag_tensor *ag__unary(ag_ctx *ctx, ag__unop op, ag_tensor *a, double s, const char *name,
                            const ag__node_kind *kind) {
    if (ag__check_unary(ctx, a, name))
        return NULL;
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, a->ndim, a->shape);
    if (!out)
        return NULL;
    if (a->dtype == AG_FLOAT32)
        ag__unary_fwd_float(op, out->data, a->data, a->numel, (float)s);
    else
        ag__unary_fwd_double(op, out->data, a->data, a->numel, s);
    /* PyTorch wraps the scalar of x + s and x * s as a second operand that
     * needs no grad: next_functions has two entries, the second None. */
    bool two_edges = op == AG__ADDS || op == AG__MULS;
    ag_tensor *ins[2] = {a, NULL};
    if (ag__needs_grad(1, ins)) {
        ag_node *node = ag__record(ctx, kind, out, two_edges ? 2 : 1, ins);
        if (!node)
            return NULL;
        node->scalar = s;
        if (ag__unop_saves_input(op))
            ag__save(node, 0, a, false);
        if (ag__unop_saves_result(op))
            ag__save(node, 1, out, true);
        node->saved_scalar = op == AG__MULS || op == AG__POWS; /* the wrapped scalar / exponent */
    }
    return out;
}

ag_tensor *ag_neg(ag_ctx *ctx, ag_tensor *a) { return ag__unary(ctx, AG__NEG, a, 0, "ag_neg", &ag__neg_kind); }
ag_tensor *ag_sqrt(ag_ctx *ctx, ag_tensor *a) { return ag__unary(ctx, AG__SQRT, a, 0, "ag_sqrt", &ag__sqrt_kind); }
ag_tensor *ag_exp(ag_ctx *ctx, ag_tensor *a) { return ag__unary(ctx, AG__EXP, a, 0, "ag_exp", &ag__exp_kind); }
ag_tensor *ag_log(ag_ctx *ctx, ag_tensor *a) { return ag__unary(ctx, AG__LOG, a, 0, "ag_log", &ag__log_kind); }
ag_tensor *ag_tanh(ag_ctx *ctx, ag_tensor *a) { return ag__unary(ctx, AG__TANH, a, 0, "ag_tanh", &ag__tanh_kind); }
ag_tensor *ag_sigmoid(ag_ctx *ctx, ag_tensor *a) {
    return ag__unary(ctx, AG__SIGMOID, a, 0, "ag_sigmoid", &ag__sigmoid_kind);
}
ag_tensor *ag_relu(ag_ctx *ctx, ag_tensor *a) { return ag__unary(ctx, AG__RELU, a, 0, "ag_relu", &ag__relu_kind); }
ag_tensor *ag_add_scalar(ag_ctx *ctx, ag_tensor *a, double s) {
    return ag__unary(ctx, AG__ADDS, a, s, "ag_add_scalar", &ag__adds_kind);
}
ag_tensor *ag_mul_scalar(ag_ctx *ctx, ag_tensor *a, double s) {
    return ag__unary(ctx, AG__MULS, a, s, "ag_mul_scalar", &ag__muls_kind);
}
ag_tensor *ag_pow_scalar(ag_ctx *ctx, ag_tensor *a, double s) {
    return ag__unary(ctx, AG__POWS, a, s, "ag_pow_scalar", &ag__pows_kind);
}
