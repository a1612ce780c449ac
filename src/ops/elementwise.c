/* Elementwise ops: binary ops with NumPy broadcasting (add, sub, mul, div),
 * ops with a scalar (add_scalar, mul_scalar, pow_scalar) and unary maths
 * (neg, sqrt, exp, log, tanh, sigmoid, relu). Each op's forward kernel, its
 * backward kernel and its node kind sit together. Backward kernels add into
 * the gradient buffers they are given. */
#include "ops/grad_ops.h"
#include "ops/ops.h"

#include <math.h>

/* ==== Binary ops with broadcasting ==========================================
 * out = a OP b; out has the broadcast shape of a and b. */

typedef enum { AG__ADD, AG__SUB, AG__MUL, AG__DIV } ag__binop;

#define AG__ADD_EXPR(x, y) ((x) + (y))
#define AG__SUB_EXPR(x, y) ((x) - (y))
#define AG__MUL_EXPR(x, y) ((x) * (y))
#define AG__DIV_EXPR(x, y) ((x) / (y))

/* One output row o[0:n] = x OP y, x stepping by sa and y by sb. out is
 * never broadcast, so it always steps by 1; a stride of 0 is an operand
 * broadcast along the row (a scalar against a tensor). */
#define AG__BINARY_ROW(T, name, EXPR)                                                                                  \
    static void ag__##name##_row_##T(T *restrict o, const T *x, int64_t sa, const T *y, int64_t sb, int64_t n) {       \
        if (sa == 1 && sb == 1) {                                                                                      \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = EXPR(x[i], y[i]);                               \
        } else if (sa == 0 && sb == 1) {                                                                               \
            const T x0 = x[0];                                                                                         \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = EXPR(x0, y[i]);                                 \
        } else if (sa == 1 && sb == 0) {                                                                               \
            const T y0 = y[0];                                                                                         \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = EXPR(x[i], y0);                                 \
        } else {                                                                                                       \
            for (int64_t i = 0; i < n; i++)                                                                            \
                o[i] = EXPR(x[i * sa], y[i * sb]);                                                                     \
        }                                                                                                              \
    }
#define AG__BINARY_ROWS(T)                                                                                             \
    AG__BINARY_ROW(T, add, AG__ADD_EXPR)                                                                               \
    AG__BINARY_ROW(T, sub, AG__SUB_EXPR)                                                                               \
    AG__BINARY_ROW(T, mul, AG__MUL_EXPR)                                                                               \
    AG__BINARY_ROW(T, div, AG__DIV_EXPR)                                                                               \
    static void ag__binary_fwd_##T(ag__binop op, const ag__iter *it, T *out, const T *a, const T *b) {                 \
        void (*row)(T *restrict, const T *, int64_t, const T *, int64_t, int64_t) = op == AG__ADD   ? ag__add_row_##T  \
                                                                                    : op == AG__SUB ? ag__sub_row_##T  \
                                                                                    : op == AG__MUL ? ag__mul_row_##T  \
                                                                                                    : ag__div_row_##T; \
        const int last = it->ndim - 1;                                                                                 \
        const int64_t n = it->shape[last], sa = it->stride[1][last], sb = it->stride[2][last];                         \
        AG__ITER_ROWS(it, off, row(out + off[0], a + off[1], sa, b + off[2], sb, n));                                  \
    }
AG__BINARY_ROWS(float)
AG__BINARY_ROWS(double)

/* Backward of mul and div (add and sub are ag__add_reduced with +-1), walked
 * over out's shape with operands {d, g, a, b}. d's stride is 0 along the
 * dimensions its input was broadcast in, so contributions sum there.
 *   out = a * b:  da += g * b               db += g * a
 *   out = a / b:  da += g / b               db += -g * ((a / b) / b)
 * (div's db is grouped as PyTorch's div_tensor_other_backward groups it.) */
#define AG__MUL_DA(g, x, y) ((g) * (y))
#define AG__MUL_DB(g, x, y) ((g) * (x))
#define AG__DIV_DA(g, x, y) ((g) / (y))
#define AG__DIV_DB(g, x, y) (-(g) * (((x) / (y)) / (y)))

#define AG__BINARY_BWD_ROW(T, name, EXPR)                                                                              \
    static void ag__##name##_bwd_row_##T(T *d, int64_t sd, const T *g, const T *x, int64_t sa, const T *y, int64_t sb, \
                                         int64_t n) {                                                                  \
        (void)x; /* mul's gradients read one of x, y */                                                                \
        (void)y;                                                                                                       \
        if (sd == 1 && sa == 1 && sb == 1) {                                                                           \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += EXPR(g[i], x[i], y[i]);                        \
        } else if (sd == 0) { /* d broadcast along the row: sum the row */                                             \
            double acc = 0;                                                                                            \
            for (int64_t i = 0; i < n; i++)                                                                            \
                acc += EXPR(g[i], x[i * sa], y[i * sb]);                                                               \
            d[0] += (T)acc;                                                                                            \
        } else {                                                                                                       \
            for (int64_t i = 0; i < n; i++)                                                                            \
                d[i * sd] += EXPR(g[i], x[i * sa], y[i * sb]);                                                         \
        }                                                                                                              \
    }
typedef enum { AG__MUL_A, AG__MUL_B, AG__DIV_A, AG__DIV_B } ag__binop_grad;
#define AG__BINARY_BWD(T)                                                                                              \
    AG__BINARY_BWD_ROW(T, mul_da, AG__MUL_DA)                                                                          \
    AG__BINARY_BWD_ROW(T, mul_db, AG__MUL_DB)                                                                          \
    AG__BINARY_BWD_ROW(T, div_da, AG__DIV_DA)                                                                          \
    AG__BINARY_BWD_ROW(T, div_db, AG__DIV_DB)                                                                          \
    static void ag__binary_bwd_##T(ag__binop_grad which, const ag__iter *it, T *d, const T *g, const T *a,             \
                                   const T *b) {                                                                       \
        void (*row)(T *, int64_t, const T *, const T *, int64_t, const T *, int64_t, int64_t) =                        \
            which == AG__MUL_A   ? ag__mul_da_bwd_row_##T                                                              \
            : which == AG__MUL_B ? ag__mul_db_bwd_row_##T                                                              \
            : which == AG__DIV_A ? ag__div_da_bwd_row_##T                                                              \
                                 : ag__div_db_bwd_row_##T;                                                             \
        const int last = it->ndim - 1;                                                                                 \
        const int64_t n = it->shape[last], sd = it->stride[0][last];                                                   \
        const int64_t sa = it->stride[2][last], sb = it->stride[3][last];                                              \
        AG__ITER_ROWS(it, off, row(d + off[0], sd, g + off[1], a + off[2], sa, b + off[3], sb, n));                    \
    }
AG__BINARY_BWD(float)
AG__BINARY_BWD(double)

/* One-element operands (then every d has one element too): the formulas
 * above without a walk, the common case of scalar chains. */
#define AG__BINARY_BWD_ONE(T)                                                                                          \
    static void ag__binary_bwd_one_##T(ag__binop op, ag_tensor **dinp, const ag_tensor *dout, const ag_tensor *a,      \
                                       const ag_tensor *b) {                                                           \
        const T g = *(const T *)dout->data, x = a ? *(const T *)a->data : 0, y = b ? *(const T *)b->data : 1;          \
        if (dinp[0])                                                                                                   \
            *(T *)dinp[0]->data += op == AG__MUL ? AG__MUL_DA(g, x, y) : op == AG__DIV ? AG__DIV_DA(g, x, y) : g;      \
        if (dinp[1])                                                                                                   \
            *(T *)dinp[1]->data += op == AG__MUL   ? AG__MUL_DB(g, x, y)                                               \
                                   : op == AG__DIV ? AG__DIV_DB(g, x, y)                                               \
                                   : op == AG__SUB ? -g                                                                \
                                                   : g;                                                                \
    }
AG__BINARY_BWD_ONE(float)
AG__BINARY_BWD_ONE(double)

/* Saved: slot 0 a, slot 1 b, only those the wanted gradients read (as
 * PyTorch saves them): mul's da reads b and db reads a; div's da reads b,
 * db reads a and b. */
static int ag__binary_backward(ag__binop op, ag_node *node, const ag_tensor *dout, ag_tensor **dinp) {
    if (dout->numel == 0)
        return 0;
    ag_tensor *a = NULL, *b = NULL;
    if ((op == AG__MUL || op == AG__DIV) && dinp[1] && !(a = ag__saved_get(node, 0)))
        return ag_last_status();
    if ((op == AG__MUL && dinp[0]) || op == AG__DIV) {
        if (!(b = ag__saved_get(node, 1)))
            return ag_last_status();
    }
    if (dout->numel == 1) {
        if (dout->dtype == AG_FLOAT32)
            ag__binary_bwd_one_float(op, dinp, dout, a, b);
        else
            ag__binary_bwd_one_double(op, dinp, dout, a, b);
        return 0;
    }
    if (op == AG__ADD || op == AG__SUB) {
        if (dinp[0])
            ag__add_reduced(dinp[0], dout, 1.0);
        if (dinp[1])
            ag__add_reduced(dinp[1], dout, op == AG__ADD ? 1.0 : -1.0);
        return 0;
    }
    for (int which = 0; which < 2; which++) {
        ag_tensor *d = dinp[which];
        if (!d)
            continue;
        /* operands not read by this gradient walk along as dout */
        const ag_tensor *x = a ? a : dout, *y = b ? b : dout;
        const ag_tensor *ops[4] = {d, dout, x, y};
        ag__iter it;
        ag__iter_init(&it, dout->ndim, dout->shape, 4, ops);
        ag__binop_grad g = op == AG__MUL ? (which ? AG__MUL_B : AG__MUL_A) : (which ? AG__DIV_B : AG__DIV_A);
        if (d->dtype == AG_FLOAT32)
            ag__binary_bwd_float(g, &it, d->data, dout->data, x->data, y->data);
        else
            ag__binary_bwd_double(g, &it, d->data, dout->data, x->data, y->data);
    }
    return 0;
}

/* The same backward as recorded ops, for create_graph (PyTorch 1.13's
 * formulas, each summed back to its input's shape as PyTorch's
 * validate_outputs does with sum_to):
 *   add:  da = g                    db = g
 *   sub:  da = g                    db = -g
 *   mul:  da = g * b                db = g * a
 *   div:  da = g / b                db = -g * ((a / b) / b) */
static int ag__binary_backward_graph(ag__binop op, ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp,
                                     ag_ctx *ctx) {
    ag_tensor *a = NULL, *b = NULL;
    if ((op == AG__MUL || op == AG__DIV) && need[1] && !(a = ag__saved_get(node, 0)))
        return ag_last_status();
    if (((op == AG__MUL && need[0]) || op == AG__DIV) && !(b = ag__saved_get(node, 1)))
        return ag_last_status();
    for (int i = 1; i >= 0; i--) { /* the second input first, as PyTorch's generated backwards (node order) */
        if (!need[i])
            continue;
        ag_tensor *d = g;
        if (op == AG__SUB && i == 1)
            d = ag_neg(ctx, g);
        else if (op == AG__MUL)
            d = ag_mul(ctx, g, i == 0 ? b : a);
        else if (op == AG__DIV)
            d = i == 0 ? ag_div(ctx, g, b) : ag_mul(ctx, ag_neg(ctx, g), ag_div(ctx, ag_div(ctx, a, b), b));
        const ag_tensor *in = ag__edge_input(node, i);
        int rc = ag__graph_result(dinp[i] = d ? ag__sum_to(ctx, d, in->ndim, in->shape) : NULL);
        if (rc)
            return rc;
    }
    return 0;
}

#define AG__BINARY_NODE(lname, OP, Name)                                                                               \
    static int ag__##lname##_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {       \
        AG__UNUSED(scratch);                                                                                           \
        return ag__binary_backward(OP, node, dout, dinp);                                                              \
    }                                                                                                                  \
    static int ag__##lname##_backward_graph(ag_node *node, ag_tensor *dout, const bool *need, ag_tensor **dinp,        \
                                            ag_ctx *ctx) {                                                             \
        return ag__binary_backward_graph(OP, node, dout, need, dinp, ctx);                                             \
    }                                                                                                                  \
    static const ag__node_kind ag__##lname##_kind = {Name, ag__##lname##_backward, ag__##lname##_backward_graph};
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
    if (AG__LIKELY(out->numel == 1)) {
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

ag_tensor *ag_add(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    return ag__binary(ctx, AG__ADD, a, b, "ag_add", &ag__add_kind);
}
ag_tensor *ag_sub(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    return ag__binary(ctx, AG__SUB, a, b, "ag_sub", &ag__sub_kind);
}
ag_tensor *ag_mul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    return ag__binary(ctx, AG__MUL, a, b, "ag_mul", &ag__mul_kind);
}
ag_tensor *ag_div(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    return ag__binary(ctx, AG__DIV, a, b, "ag_div", &ag__div_kind);
}

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

/* x ** s as PyTorch 1.13 computes it (Pow.cpp, PowKernel.cpp): exponents
 * 0 and 1 are exact, 0.5, -0.5, -1, 2, 3 and -2 are spelled out with sqrt,
 * division and products, the rest go through pow in double. The backward
 * reuses it for x ** (s - 1), as PyTorch's pow_backward calls pow. */
#define AG__POW(T, SQRT)                                                                                               \
    static inline T ag__pow1_##T(T x, double s) {                                                                      \
        if (s == 0)                                                                                                    \
            return 1;                                                                                                  \
        if (s == 1)                                                                                                    \
            return x;                                                                                                  \
        if (s == 0.5)                                                                                                  \
            return SQRT(x);                                                                                            \
        if (s == -0.5)                                                                                                 \
            return (T)1 / SQRT(x);                                                                                     \
        if (s == -1)                                                                                                   \
            return (T)1 / x;                                                                                           \
        if (s == 2)                                                                                                    \
            return x * x;                                                                                              \
        if (s == 3)                                                                                                    \
            return x * x * x;                                                                                          \
        if (s == -2)                                                                                                   \
            return (T)1 / (x * x);                                                                                     \
        return (T)pow((double)x, s);                                                                                   \
    }                                                                                                                  \
    static void ag__pow_fwd_##T(T *restrict o, const T *x, int64_t n, double s) {                                      \
        if (s == 2) {                                                                                                  \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = x[i] * x[i];                                    \
        } else {                                                                                                       \
            for (int64_t i = 0; i < n; i++)                                                                            \
                o[i] = ag__pow1_##T(x[i], s);                                                                          \
        }                                                                                                              \
    }
AG__POW(float, sqrtf)
AG__POW(double, sqrt)

/* out = f(x) over n contiguous elements; s is the op's scalar. relu keeps
 * nan and -0 as PyTorch's clamp_min(x, 0) does. */
#define AG__UNARY_FWD(T, SQRT, EXP, LOG, TANH)                                                                         \
    static void ag__unary_fwd_##T(ag__unop op, T *restrict o, const T *x, int64_t n, double s) {                       \
        const T st = (T)s;                                                                                             \
        switch (op) {                                                                                                  \
        case AG__NEG:                                                                                                  \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = -x[i];                                          \
            break;                                                                                                     \
        case AG__SQRT:                                                                                                 \
            for (int64_t i = 0; i < n; i++)                                                                            \
                o[i] = SQRT(x[i]);                                                                                     \
            break;                                                                                                     \
        case AG__EXP:                                                                                                  \
            for (int64_t i = 0; i < n; i++)                                                                            \
                o[i] = EXP(x[i]);                                                                                      \
            break;                                                                                                     \
        case AG__LOG:                                                                                                  \
            for (int64_t i = 0; i < n; i++)                                                                            \
                o[i] = LOG(x[i]);                                                                                      \
            break;                                                                                                     \
        case AG__TANH:                                                                                                 \
            for (int64_t i = 0; i < n; i++)                                                                            \
                o[i] = TANH(x[i]);                                                                                     \
            break;                                                                                                     \
        case AG__SIGMOID:                                                                                              \
            for (int64_t i = 0; i < n; i++)                                                                            \
                o[i] = (T)1 / ((T)1 + EXP(-x[i]));                                                                     \
            break;                                                                                                     \
        case AG__RELU:                                                                                                 \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = x[i] < 0 ? (T)0 : x[i];                         \
            break;                                                                                                     \
        case AG__ADDS:                                                                                                 \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = x[i] + st;                                      \
            break;                                                                                                     \
        case AG__MULS:                                                                                                 \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = x[i] * st;                                      \
            break;                                                                                                     \
        case AG__POWS:                                                                                                 \
            ag__pow_fwd_##T(o, x, n, s);                                                                               \
            break;                                                                                                     \
        }                                                                                                              \
    }
AG__UNARY_FWD(float, sqrtf, expf, logf, tanhf)
AG__UNARY_FWD(double, sqrt, exp, log, tanh)

/* Backward, with x the saved input and r the saved result where needed,
 * each line under the forward it differentiates (PyTorch's formulas):
 *   out = -x                  dx -= g
 *   r = sqrt(x)               dx += g / (2 r)
 *   r = exp(x)                dx += g r
 *   out = log(x)              dx += g / x
 *   r = tanh(x)               dx += g (1 - r^2)
 *   r = 1 / (1 + exp(-x))     dx += g (1 - r) r
 *   r = max(x, 0)             dx += r <= 0 ? 0 : g      (0 at the kink)
 *   out = x + s               dx += g
 *   out = x * s               dx += g s
 *   out = x ** s              dx += g (s x^(s-1)), nothing when s == 0 */
#define AG__UNARY_BWD(T)                                                                                               \
    static void ag__unary_bwd_##T(ag__unop op, T *d, const T *g, const T *x, const T *r, int64_t n, double s) {        \
        const T st = (T)s;                                                                                             \
        switch (op) {                                                                                                  \
        case AG__NEG:                                                                                                  \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] -= g[i];                                          \
            break;                                                                                                     \
        case AG__SQRT:                                                                                                 \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += g[i] / (2 * r[i]);                             \
            break;                                                                                                     \
        case AG__EXP:                                                                                                  \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += g[i] * r[i];                                   \
            break;                                                                                                     \
        case AG__LOG:                                                                                                  \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += g[i] / x[i];                                   \
            break;                                                                                                     \
        case AG__TANH:                                                                                                 \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += g[i] * (1 - r[i] * r[i]);                      \
            break;                                                                                                     \
        case AG__SIGMOID:                                                                                              \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += g[i] * (1 - r[i]) * r[i];                      \
            break;                                                                                                     \
        case AG__RELU:                                                                                                 \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += r[i] <= 0 ? (T)0 : g[i];                       \
            break;                                                                                                     \
        case AG__ADDS:                                                                                                 \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += g[i];                                          \
            break;                                                                                                     \
        case AG__MULS:                                                                                                 \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += g[i] * st;                                     \
            break;                                                                                                     \
        case AG__POWS:                                                                                                 \
            if (s == 0)                                                                                                \
                break;                                                                                                 \
            if (s == 2) {                                                                                              \
                _Pragma("omp simd") for (int64_t i = 0; i < n; i++) d[i] += g[i] * (st * x[i]);                        \
            } else {                                                                                                   \
                for (int64_t i = 0; i < n; i++)                                                                        \
                    d[i] += g[i] * (st * ag__pow1_##T(x[i], s - 1));                                                   \
            }                                                                                                          \
            break;                                                                                                     \
        }                                                                                                              \
    }
AG__UNARY_BWD(float)
AG__UNARY_BWD(double)

/* Which saved tensor each backward reads: the input (slot 0), the result
 * (slot 1) or nothing. */
static bool ag__unop_saves_input(ag__unop op) { return op == AG__LOG || op == AG__POWS; }
static bool ag__unop_saves_result(ag__unop op) {
    return op == AG__SQRT || op == AG__EXP || op == AG__TANH || op == AG__SIGMOID || op == AG__RELU;
}

/* Big unary ops run as a parallel-for over chunks of elements (each element
 * is computed alone, so any split gives the same bits; sizes in
 * core/tuning.h). */
typedef struct {
    ag__unop op;
    bool fwd, dbl;
    void *o;                    /* forward: out; backward: d */
    const void *x, *g, *r, *in; /* backward: g, x, r; forward: in */
    double s;
    int64_t n;
} ag__unary_job;

static void ag__unary_chunks(void *arg, int64_t lo, int64_t hi) {
    const ag__unary_job *j = arg;
    int64_t e0 = lo * AG__ELEM_CHUNK, e1 = hi * AG__ELEM_CHUNK < j->n ? hi * AG__ELEM_CHUNK : j->n;
    size_t es = j->dbl ? sizeof(double) : sizeof(float);
#define AG__AT(p) ((p) ? (const void *)((const char *)(p) + (size_t)e0 * es) : NULL)
    void *o = (char *)j->o + (size_t)e0 * es;
    if (j->fwd && j->dbl)
        ag__unary_fwd_double(j->op, o, AG__AT(j->in), e1 - e0, j->s);
    else if (j->fwd)
        ag__unary_fwd_float(j->op, o, AG__AT(j->in), e1 - e0, j->s);
    else if (j->dbl)
        ag__unary_bwd_double(j->op, o, AG__AT(j->g), AG__AT(j->x), AG__AT(j->r), e1 - e0, j->s);
    else
        ag__unary_bwd_float(j->op, o, AG__AT(j->g), AG__AT(j->x), AG__AT(j->r), e1 - e0, j->s);
#undef AG__AT
}

static void ag__unary_run(ag__unary_job *j) {
    int64_t chunks = (j->n + AG__ELEM_CHUNK - 1) / AG__ELEM_CHUNK;
    if (j->n >= AG__PAR_ELEMS)
        ag__parallel_for(chunks, 1, ag__unary_chunks, j);
    else
        ag__unary_chunks(j, 0, chunks);
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
    ag__unary_job j = {.op = op,
                       .fwd = false,
                       .dbl = d->dtype == AG_FLOAT64,
                       .o = d->data,
                       .g = dout->data,
                       .x = x ? x->data : NULL,
                       .r = r ? r->data : NULL,
                       .s = node->scalar,
                       .n = d->numel};
    ag__unary_run(&j);
    return 0;
}

/* The same backward as recorded ops, for create_graph (PyTorch 1.13's
 * formulas; r the saved result, x the saved input):
 *   -x        dx = -g                       NegBackward0
 *   sqrt(x)   dx = g / (2 * r)              DivBackward0, MulBackward1
 *   exp(x)    dx = g * r                    MulBackward0
 *   log(x)    dx = g / x                    DivBackward0
 *   tanh(x)   dx = tanh_backward(g, r)      TanhBackwardBackward0
 *   sigmoid   dx = sigmoid_backward(g, r)   SigmoidBackwardBackward0
 *   x + s     dx = g
 *   x * s     dx = g * s                    MulBackward0
 *   x ** s    dx = g * (s * x ** (s - 1))   MulBackward0, MulBackward1, PowBackward0;
 *             zeros (no history) when s == 0 */
static int ag__unary_backward_graph(ag__unop op, ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp,
                                    ag_ctx *ctx) {
    if (!need[0])
        return 0;
    ag_tensor *x = NULL, *r = NULL;
    if (ag__unop_saves_input(op) && !(x = ag__saved_get(node, 0)))
        return ag_last_status();
    if (ag__unop_saves_result(op) && !(r = ag__saved_get(node, 1)))
        return ag_last_status();
    ag_tensor *d = NULL;
    switch (op) {
    case AG__NEG:
        d = ag_neg(ctx, g);
        break;
    case AG__SQRT:
        d = ag_div(ctx, g, ag__mul_scalar1(ctx, r, 2));
        break;
    case AG__EXP:
        d = ag_mul(ctx, g, r);
        break;
    case AG__LOG:
        d = ag_div(ctx, g, x);
        break;
    case AG__TANH:
        d = ag__tanh_grad(ctx, g, r);
        break;
    case AG__SIGMOID:
        d = ag__sigmoid_grad(ctx, g, r);
        break;
    case AG__ADDS:
        d = g;
        break;
    case AG__MULS:
        d = ag_mul_scalar(ctx, g, node->scalar);
        break;
    case AG__POWS:
        d = node->scalar == 0
                ? ag_zeros(ctx, x->dtype, x->ndim, x->shape)
                : ag_mul(ctx, g, ag__mul_scalar1(ctx, ag_pow_scalar(ctx, x, node->scalar - 1), node->scalar));
        break;
    case AG__RELU: /* no backward_graph yet (its kind has none) */
        break;
    }
    return ag__graph_result(dinp[0] = d);
}

#define AG__UNARY_GRAPH(lname, OP)                                                                                     \
    static int ag__##lname##_backward_graph(ag_node *node, ag_tensor *dout, const bool *need, ag_tensor **dinp,        \
                                            ag_ctx *ctx) {                                                             \
        return ag__unary_backward_graph(OP, node, dout, need, dinp, ctx);                                              \
    }
AG__UNARY_GRAPH(neg, AG__NEG)
AG__UNARY_GRAPH(sqrt, AG__SQRT)
AG__UNARY_GRAPH(exp, AG__EXP)
AG__UNARY_GRAPH(log, AG__LOG)
AG__UNARY_GRAPH(tanh, AG__TANH)
AG__UNARY_GRAPH(sigmoid, AG__SIGMOID)
AG__UNARY_GRAPH(adds, AG__ADDS)
AG__UNARY_GRAPH(muls, AG__MULS)
AG__UNARY_GRAPH(pows, AG__POWS)

#define AG__UNARY_NODE(lname, OP, Name, GRAPH)                                                                         \
    static int ag__##lname##_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {       \
        AG__UNUSED(scratch);                                                                                           \
        return ag__unary_backward(OP, node, dout, dinp);                                                               \
    }                                                                                                                  \
    static const ag__node_kind ag__##lname##_kind = {Name, ag__##lname##_backward, GRAPH};
AG__UNARY_NODE(neg, AG__NEG, "NegBackward0", ag__neg_backward_graph)
AG__UNARY_NODE(sqrt, AG__SQRT, "SqrtBackward0", ag__sqrt_backward_graph)
AG__UNARY_NODE(exp, AG__EXP, "ExpBackward0", ag__exp_backward_graph)
AG__UNARY_NODE(log, AG__LOG, "LogBackward0", ag__log_backward_graph)
AG__UNARY_NODE(tanh, AG__TANH, "TanhBackward0", ag__tanh_backward_graph)
AG__UNARY_NODE(sigmoid, AG__SIGMOID, "SigmoidBackward0", ag__sigmoid_backward_graph)
AG__UNARY_NODE(relu, AG__RELU, "ReluBackward0", NULL)
AG__UNARY_NODE(adds, AG__ADDS, "AddBackward0", ag__adds_backward_graph)
AG__UNARY_NODE(muls, AG__MULS, "MulBackward0", ag__muls_backward_graph)
AG__UNARY_NODE(pows, AG__POWS, "PowBackward0", ag__pows_backward_graph)

static ag_tensor *ag__unary(ag_ctx *ctx, ag__unop op, ag_tensor *a, double s, const char *name,
                            const ag__node_kind *kind) {
    if (ag__check_unary(ctx, a, name))
        return NULL;
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, a->ndim, a->shape);
    if (!out)
        return NULL;
    ag__unary_job j = {
        .op = op, .fwd = true, .dbl = a->dtype == AG_FLOAT64, .o = out->data, .in = a->data, .s = s, .n = a->numel};
    ag__unary_run(&j);
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
