/* Elementwise ops: binary ops with NumPy broadcasting (add, sub, mul, div,
 * pow), ops with a scalar (add_scalar, mul_scalar, pow_scalar) and unary
 * maths (neg, sqrt, exp, log, log1p, tanh, sigmoid, sin, cos, relu). The
 * kernels, forward next to backward, are plain functions per dtype from
 * elementwise_kernels.inc; transcendental functions go through vector math
 * (vmath.h). This file walks broadcast shapes, cuts large tensors into
 * pieces for the pool and records the nodes. Backward kernels add into the
 * gradient buffers they are given; each kind also has its backward as
 * recorded ops, for create_graph. */
#include "ops/grad_ops.h"
#include "ops/ops.h"
#include "ops/vmath.h"

#include <math.h>

/* Work is cut into pieces fixed by the shape alone, so a sum's order never
 * depends on the thread count; the sizes are in core/tuning.h. */

typedef enum {
    AG__NEG,
    AG__SQRT,
    AG__EXP,
    AG__LOG,
    AG__LOG1P,
    AG__TANH,
    AG__SIGMOID,
    AG__SIN,
    AG__COS,
    AG__RELU,
    AG__ADDS, /* a + s */
    AG__MULS, /* a * s */
    AG__POWS, /* a ** s */
} ag__unop;

typedef enum { AG__ADD, AG__SUB, AG__MUL, AG__DIV, AG__POW } ag__binop;

/* The gradient a binary op's backward computes for one of its inputs. */
typedef enum {
    AG__GRAD_ONE, /* add's da and db, sub's da */
    AG__GRAD_NEG, /* sub's db */
    AG__GRAD_MUL_A,
    AG__GRAD_MUL_B,
    AG__GRAD_DIV_A,
    AG__GRAD_DIV_B,
    AG__GRAD_POW_A,
    AG__GRAD_POW_B,
} ag__grad;

/* ==== Walking a broadcast shape from any row ================================
 * The rows of an ag__iter (ops.h) are the combinations of its outer
 * dimensions; off[k] is operand k's element offset at the start of a row. */

static void ag__walk_seek(const ag__iter *it, int64_t r, int64_t *idx, int64_t *off) {
    for (int k = 0; k < it->nops; k++)
        off[k] = 0;
    for (int d = it->ndim - 2; d >= 0; d--) {
        idx[d] = r % it->shape[d];
        r /= it->shape[d];
        for (int k = 0; k < it->nops; k++)
            off[k] += idx[d] * it->stride[k][d];
    }
}

static void ag__walk_next(const ag__iter *it, int64_t *idx, int64_t *off) {
    for (int d = it->ndim - 2; d >= 0; d--) {
        if (++idx[d] < it->shape[d]) {
            for (int k = 0; k < it->nops; k++)
                off[k] += it->stride[k][d];
            return;
        }
        for (int k = 0; k < it->nops; k++)
            off[k] -= it->stride[k][d] * (idx[d] - 1);
        idx[d] = 0;
    }
}

/* ==== The kernels, per dtype =============================================== */

#define VM_CAT_(a, b) a##b
#define VM_CAT(a, b) VM_CAT_(a, b)

#define T float
#define K(name) VM_CAT(name, _f32)
#define VM_FN(f) (ag__vmath_get()->f32[f])
#define VM_POW (ag__vmath_get()->pow_f32)
#include "ops/elementwise_kernels.inc"
#undef T
#undef K
#undef VM_FN
#undef VM_POW

#define T double
#define K(name) VM_CAT(name, _f64)
#define VM_FN(f) (ag__vmath_get()->f64[f])
#define VM_POW (ag__vmath_get()->pow_f64)
#include "ops/elementwise_kernels.inc"
#undef T
#undef K
#undef VM_FN
#undef VM_POW

/* ==== Pieces ================================================================
 * A walk of `rows` rows of n elements cut into `count` pieces, each a
 * range of whole rows, a part of one row, or (by_columns) a block of
 * columns over every row. */

typedef struct ag__walk {
    int64_t rows, n;
    int64_t rows_per;   /* whole rows in a piece; 0 when pieces cut rows */
    int64_t cols_per;   /* columns in a piece that cuts rows or is by_columns */
    int64_t col_pieces; /* pieces across a row */
    bool by_columns;
    int64_t count;
} ag__walk;

static int64_t ag__div_up(int64_t a, int64_t b) { return a / b + (a % b != 0); }

static void ag__walk_init(ag__walk *w, const ag__iter *it) {
    *w = (ag__walk){.rows = 1, .n = it->shape[it->ndim - 1], .rows_per = 1, .count = 0};
    for (int d = 0; d < it->ndim - 1; d++)
        w->rows *= it->shape[d];
}

/* Pieces of about `chunk` elements: groups of whole rows, or rows cut in
 * parts when a row is longer than chunk (at most max_parts of them, when
 * max_parts > 0). */
static void ag__walk_rows(ag__walk *w, const ag__iter *it, int64_t chunk, int64_t max_parts) {
    ag__walk_init(w, it);
    if (w->rows == 0 || w->n == 0)
        return;
    if (w->n > chunk) {
        w->rows_per = 0;
        w->cols_per = chunk;
        if (max_parts > 0 && ag__div_up(w->n, chunk) > max_parts)
            w->cols_per = ag__div_up(w->n, max_parts);
        w->col_pieces = ag__div_up(w->n, w->cols_per);
        w->count = w->rows * w->col_pieces;
    } else {
        w->rows_per = chunk / w->n;
        w->count = ag__div_up(w->rows, w->rows_per);
    }
}

/* One piece: everything, in order. */
static void ag__walk_whole(ag__walk *w, const ag__iter *it) {
    ag__walk_init(w, it);
    w->rows_per = w->rows;
    w->count = w->rows && w->n ? 1 : 0;
}

/* Blocks of columns over every row, of about `chunk` elements (at least 64
 * columns, a multiple of 16). */
static void ag__walk_columns(ag__walk *w, const ag__iter *it, int64_t chunk) {
    ag__walk_init(w, it);
    if (w->rows == 0 || w->n == 0)
        return;
    int64_t cols = ag__div_up(chunk, w->rows);
    cols = cols < 64 ? 64 : ag__div_up(cols, 16) * 16;
    w->by_columns = true;
    w->cols_per = cols;
    w->count = ag__div_up(w->n, cols);
}

static void ag__walk_piece(const ag__walk *w, int64_t p, int64_t *r0, int64_t *r1, int64_t *c0, int64_t *c1) {
    if (w->by_columns) {
        *r0 = 0;
        *r1 = w->rows;
        *c0 = p * w->cols_per;
    } else if (w->rows_per > 0) {
        *r0 = p * w->rows_per;
        *r1 = *r0 + w->rows_per < w->rows ? *r0 + w->rows_per : w->rows;
        *c0 = 0;
        *c1 = w->n;
        return;
    } else {
        *r0 = p / w->col_pieces;
        *r1 = *r0 + 1;
        *c0 = (p % w->col_pieces) * w->cols_per;
    }
    *c1 = *c0 + w->cols_per < w->n ? *c0 + w->cols_per : w->n;
}

/* fn over pieces [0, count), on the pool when there is enough work. */
static void ag__run_pieces(int64_t count, int64_t work, ag__range_fn fn, void *arg) {
    if (count > 1 && work >= AG__PAR_ELEMS)
        ag__parallel_for(count, 1, fn, arg);
    else if (count > 0)
        fn(arg, 0, count);
}

/* ==== Binary ops with broadcasting ==========================================
 * out = a OP b; out has the broadcast shape of a and b. */

typedef struct {
    ag__binop op;
    bool dbl;
    ag__iter it; /* {out, a, b} */
    ag__walk w;
    void *out;
    const void *a, *b;
} ag__binary_job;

static void ag__binary_pieces(void *arg, int64_t lo, int64_t hi) {
    const ag__binary_job *j = arg;
    for (int64_t p = lo; p < hi; p++) {
        int64_t r0, r1, c0, c1;
        ag__walk_piece(&j->w, p, &r0, &r1, &c0, &c1);
        if (j->dbl)
            ag__binary_piece_f64(j->op, &j->it, j->out, j->a, j->b, r0, r1, c0, c1);
        else
            ag__binary_piece_f32(j->op, &j->it, j->out, j->a, j->b, r0, r1, c0, c1);
    }
}

static void ag__binary_fwd(ag__binop op, ag_tensor *out, const ag_tensor *a, const ag_tensor *b) {
    ag__binary_job j = {.op = op, .dbl = out->dtype == AG_FLOAT64, .out = out->data, .a = a->data, .b = b->data};
    const ag_tensor *ops[3] = {out, a, b};
    ag__iter_init(&j.it, out->ndim, out->shape, 3, ops);
    const int64_t cost = op == AG__POW ? AG__VM_COST : 1;
    ag__walk_rows(&j.w, &j.it, AG__ELEM_CHUNK / cost, 0);
    ag__run_pieces(j.w.count, out->numel * cost, ag__binary_pieces, &j);
}

/* The backward of one input: d += its gradient, walked over out's shape
 * with operands {d, dout, x, y}. d's stride is 0 along the dimensions its
 * input was broadcast in, where contributions are summed: pieces then never
 * share an element of d (blocks of columns when d is broadcast over rows,
 * whole rows when it is broadcast along them) or, for a sum along few long
 * rows, each part's sum is kept and the parts added in order. */
typedef struct {
    ag__grad g;
    bool dbl;
    ag__iter it;
    ag__walk w;
    void *d;
    const void *dout, *x, *y, *out;
    double *parts; /* per piece, when pieces cut rows that sum into d */
} ag__grad_job;

static void ag__grad_pieces(void *arg, int64_t lo, int64_t hi) {
    const ag__grad_job *j = arg;
    for (int64_t p = lo; p < hi; p++) {
        int64_t r0, r1, c0, c1;
        ag__walk_piece(&j->w, p, &r0, &r1, &c0, &c1);
        double s = j->dbl ? ag__binary_bwd_piece_f64(j->g, &j->it, j->d, j->dout, j->x, j->y, j->out, r0, r1, c0, c1)
                          : ag__binary_bwd_piece_f32(j->g, &j->it, j->d, j->dout, j->x, j->y, j->out, r0, r1, c0, c1);
        if (j->parts)
            j->parts[p] = s;
    }
}

static void ag__binary_grad(ag__grad g, ag_tensor *d, const ag_tensor *dout, const ag_tensor *x, const ag_tensor *y,
                            const ag_tensor *out) {
    double parts[AG__MAX_PARTS];
    ag__grad_job j = {.g = g,
                      .dbl = d->dtype == AG_FLOAT64,
                      .d = d->data,
                      .dout = dout->data,
                      .x = x->data,
                      .y = y->data,
                      .out = out->data};
    const ag_tensor *ops[4] = {d, dout, x, y};
    ag__iter_init(&j.it, dout->ndim, dout->shape, 4, ops);
    const int64_t cost = g == AG__GRAD_POW_A || g == AG__GRAD_POW_B ? AG__VM_COST : 1;
    const int64_t chunk = AG__ELEM_CHUNK / cost;
    const int last = j.it.ndim - 1;
    bool outer_distinct = true; /* rows of the walk never share an element of d */
    for (int k = 0; k < last; k++)
        outer_distinct = outer_distinct && j.it.stride[0][k] != 0;
    if (d->numel == dout->numel) {
        ag__walk_rows(&j.w, &j.it, chunk, 0);
    } else if (j.it.stride[0][last] != 0) {
        ag__walk_columns(&j.w, &j.it, chunk);
    } else if (outer_distinct) {
        /* each row sums into an element of its own: many rows stay whole,
         * a few long ones are cut in parts */
        ag__walk_init(&j.w, &j.it);
        const bool few = j.w.rows < AG__FEW_ROWS;
        ag__walk_rows(&j.w, &j.it, chunk, few ? AG__MAX_ROW_PARTS : 0);
        if (j.w.rows_per == 0 && !few)
            j.w.rows_per = 1, j.w.count = j.w.rows;
        else if (j.w.rows_per == 0)
            j.parts = parts;
    } else {
        ag__walk_whole(&j.w, &j.it);
    }
    ag__run_pieces(j.w.count, dout->numel * cost, ag__grad_pieces, &j);
    if (j.parts) {
        /* each row's parts, in order, into its element of d */
        int64_t idx[AG_MAX_DIMS], off[AG__ITER_OPS];
        ag__walk_seek(&j.it, 0, idx, off);
        for (int64_t r = 0; r < j.w.rows; r++) {
            double s = 0;
            for (int64_t p = r * j.w.col_pieces; p < (r + 1) * j.w.col_pieces; p++)
                s += parts[p];
            if (j.dbl)
                ((double *)j.d)[off[0]] += s;
            else
                ((float *)j.d)[off[0]] += (float)s;
            ag__walk_next(&j.it, idx, off);
        }
    }
}

/* One-element operands (then every d has one element too): the formulas of
 * elementwise_kernels.inc without a walk, the common case of scalar
 * chains. */
static void ag__binary_bwd_one(ag__binop op, ag_tensor **dinp, const ag_tensor *dout, const ag_tensor *a,
                               const ag_tensor *b) {
    if (dout->dtype == AG_FLOAT32) {
        const float g = *(const float *)dout->data, x = a ? *(const float *)a->data : 0;
        const float y = b ? *(const float *)b->data : 1;
        if (dinp[0])
            *(float *)dinp[0]->data += op == AG__MUL ? g * y : op == AG__DIV ? g / y : g;
        if (dinp[1])
            *(float *)dinp[1]->data += op == AG__MUL   ? g * x
                                       : op == AG__DIV ? -g * ((x / y) / y)
                                       : op == AG__SUB ? -g
                                                       : g;
    } else {
        const double g = *(const double *)dout->data, x = a ? *(const double *)a->data : 0;
        const double y = b ? *(const double *)b->data : 1;
        if (dinp[0])
            *(double *)dinp[0]->data += op == AG__MUL ? g * y : op == AG__DIV ? g / y : g;
        if (dinp[1])
            *(double *)dinp[1]->data += op == AG__MUL   ? g * x
                                        : op == AG__DIV ? -g * ((x / y) / y)
                                        : op == AG__SUB ? -g
                                                        : g;
    }
}

/* Saved: slot 0 a, slot 1 b, slot 2 the result, only those the wanted
 * gradients read (as PyTorch saves them): mul's da reads b and db reads a;
 * div's da reads b, db reads a and b; pow's both read a and b, and its db
 * the result. */
static int ag__binary_backward(ag__binop op, ag_node *node, const ag_tensor *dout, ag_tensor **dinp) {
    if (dout->numel == 0)
        return 0;
    ag_tensor *a = NULL, *b = NULL, *out = NULL;
    bool need_a = (op == AG__MUL || op == AG__DIV) ? dinp[1] != NULL : op == AG__POW;
    bool need_b = op == AG__MUL ? dinp[0] != NULL : op == AG__DIV || op == AG__POW;
    if (need_a && !(a = ag__saved_get(node, 0)))
        return ag_last_status();
    if (need_b && !(b = ag__saved_get(node, 1)))
        return ag_last_status();
    if (op == AG__POW && dinp[1] && !(out = ag__saved_get(node, 2)))
        return ag_last_status();
    if (dout->numel == 1 && op != AG__POW) {
        ag__binary_bwd_one(op, dinp, dout, a, b);
        return 0;
    }
    static const ag__grad grads[][2] = {
        [AG__ADD] = {AG__GRAD_ONE, AG__GRAD_ONE},     [AG__SUB] = {AG__GRAD_ONE, AG__GRAD_NEG},
        [AG__MUL] = {AG__GRAD_MUL_A, AG__GRAD_MUL_B}, [AG__DIV] = {AG__GRAD_DIV_A, AG__GRAD_DIV_B},
        [AG__POW] = {AG__GRAD_POW_A, AG__GRAD_POW_B},
    };
    for (int which = 0; which < 2; which++) {
        if (dinp[which]) /* operands a gradient does not read walk along as dout */
            ag__binary_grad(grads[op][which], dinp[which], dout, a ? a : dout, b ? b : dout, out ? out : dout);
    }
    return 0;
}

/* pow's masks: where its base's gradient is 0 (exponent == 0), and where
 * its exponent's is (base == 0 and exponent >= 0). */
static double ag__is_zero(double x, double y) {
    AG__UNUSED(y);
    return x == 0;
}
static double ag__zero_base(double x, double y) { return x == 0 && y >= 0; }
static ag_tensor *ag__mask_pow_base(ag_ctx *ctx, const ag_tensor *b) { return ag__mask2(ctx, b, NULL, ag__is_zero); }
static ag_tensor *ag__mask_pow_exponent(ag_ctx *ctx, const ag_tensor *a, const ag_tensor *b) {
    return ag__mask2(ctx, a, b, ag__zero_base);
}

/* The same backward as recorded ops, for create_graph (PyTorch 1.13's
 * formulas, each summed back to its input's shape as PyTorch's
 * validate_outputs does with sum_to; r the saved result):
 *   add:  da = g                    db = g
 *   sub:  da = g                    db = -g
 *   mul:  da = g * b                db = g * a
 *   div:  da = g / b                db = -g * ((a / b) / b)
 *   pow:  da = where(b == 0, 0, g * (b * a ** (b - 1)))
 *         db = g * where(a == 0 & b >= 0, 0, r * log(a)) */
static int ag__binary_backward_graph(ag__binop op, ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp,
                                     ag_ctx *ctx) {
    ag_tensor *a = NULL, *b = NULL, *r = NULL;
    if ((op == AG__MUL || op == AG__DIV) && need[1] && !(a = ag__saved_get(node, 0)))
        return ag_last_status();
    if (((op == AG__MUL && need[0]) || op == AG__DIV) && !(b = ag__saved_get(node, 1)))
        return ag_last_status();
    if (op == AG__POW &&
        (!(a = ag__saved_get(node, 0)) || !(b = ag__saved_get(node, 1)) || (need[1] && !(r = ag__saved_get(node, 2)))))
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
        else if (op == AG__POW && i == 0)
            d = ag__where0(ctx, ag__mask_pow_base(ctx, b),
                           ag_mul(ctx, g, ag_mul(ctx, b, ag_pow(ctx, a, ag__sub_scalar1(ctx, b, 1)))), false);
        else if (op == AG__POW)
            d = ag_mul(ctx, g,
                       ag__where0(ctx, ag__mask_pow_exponent(ctx, a, b), ag_mul(ctx, r, ag_log(ctx, a)), false));
        const ag_tensor *in = ag__edge_input(node, i);
        int rc = ag__graph_result(dinp[i] = d ? ag__sum_to(ctx, d, in->ndim, in->shape) : NULL);
        if (rc)
            return rc;
    }
    return 0;
}

/* The backward of every binary kind: the kind says which op. */
static int ag__binary_node_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                    ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(scratch);
    return ag__binary_backward((ag__binop)node->kind->op, node, dout, dinp);
}
static int ag__binary_node_backward_graph(ag_node *node, ag_tensor *dout, const bool *need, ag_tensor **dinp,
                                          ag_ctx *ctx) {
    return ag__binary_backward_graph((ag__binop)node->kind->op, node, dout, need, dinp, ctx);
}
static const ag__node_kind ag__add_kind = {.name = "AddBackward0",
                                           .backward = ag__binary_node_backward,
                                           .backward_graph = ag__binary_node_backward_graph,
                                           .op = AG__ADD};
static const ag__node_kind ag__sub_kind = {.name = "SubBackward0",
                                           .backward = ag__binary_node_backward,
                                           .backward_graph = ag__binary_node_backward_graph,
                                           .op = AG__SUB};
static const ag__node_kind ag__mul_kind = {.name = "MulBackward0",
                                           .backward = ag__binary_node_backward,
                                           .backward_graph = ag__binary_node_backward_graph,
                                           .op = AG__MUL};
static const ag__node_kind ag__div_kind = {.name = "DivBackward0",
                                           .backward = ag__binary_node_backward,
                                           .backward_graph = ag__binary_node_backward_graph,
                                           .op = AG__DIV};
static const ag__node_kind ag__pow_kind = {.name = "PowBackward1",
                                           .backward = ag__binary_node_backward,
                                           .backward_graph = ag__binary_node_backward_graph,
                                           .op = AG__POW};

static ag_tensor *ag__binary(ag_ctx *ctx, ag__binop op, ag_tensor *a, ag_tensor *b, const char *name,
                             const ag__node_kind *kind) {
    ag_tensor *in[2] = {a, b};
    ag__op o;
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    if (ag__op_begin_mixed(&o, name, ctx, 2, in) || ag__broadcast_shape(a, b, &ndim, shape) || ag__op_promote(&o))
        return NULL;
    a = o.in[0], b = o.in[1];
    o.strided = true; /* the broadcast walk follows each operand's strides */
    ag_tensor *out = ag__op_output(&o, ndim, shape);
    if (!out)
        return NULL;
    if (AG__LIKELY(out->numel == 1 && op != AG__POW)) {
        /* one-element tensors: no walk to set up */
        if (a->dtype == AG_FLOAT32)
            *(float *)out->data = ag__binop1_f32(op, *(float *)a->data, *(float *)b->data);
        else
            *(double *)out->data = ag__binop1_f64(op, *(double *)a->data, *(double *)b->data);
    } else if (out->numel > 0) {
        ag__binary_fwd(op, out, a, b);
    }
    ag_node *node = ag__op_record(&o, kind);
    if (node && op == AG__MUL) {
        if (b->requires_grad)
            ag__save(node, 0, a, false);
        if (a->requires_grad)
            ag__save(node, 1, b, false);
    } else if (node && op == AG__DIV) {
        if (b->requires_grad)
            ag__save(node, 0, a, false);
        ag__save(node, 1, b, false);
    } else if (node && op == AG__POW) {
        ag__save(node, 0, a, false);
        ag__save(node, 1, b, false);
        if (b->requires_grad)
            ag__save(node, 2, out, true);
    }
    return ag__op_end(&o);
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
ag_tensor *ag_pow(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    return ag__binary(ctx, AG__POW, a, b, "ag_pow", &ag__pow_kind);
}

/* ==== Unary ops ============================================================
 * out = f(a), same shape; backward reads the saved input or result. */

/* Which saved tensor each backward reads: the input (slot 0), the result
 * (slot 1) or nothing. */
static bool ag__unop_saves_input(ag__unop op) {
    return op == AG__LOG || op == AG__LOG1P || op == AG__SIN || op == AG__COS || op == AG__POWS;
}
static bool ag__unop_saves_result(ag__unop op) {
    return op == AG__SQRT || op == AG__EXP || op == AG__TANH || op == AG__SIGMOID || op == AG__RELU;
}
/* Whether the forward (fwd) or the backward of op calls vector math. */
static bool ag__unop_vm(ag__unop op, bool fwd) {
    switch (op) {
    case AG__SIN:
    case AG__COS:
    case AG__POWS:
        return true;
    case AG__SQRT:
    case AG__EXP:
    case AG__LOG:
    case AG__LOG1P:
    case AG__TANH:
    case AG__SIGMOID:
        return fwd;
    default:
        return false;
    }
}

/* Big unary ops run as a parallel-for over pieces of elements (each element
 * is computed alone, so any split gives the same bits; sizes in
 * core/tuning.h). */
typedef struct {
    ag__unop op;
    bool fwd, dbl;
    void *o;                    /* forward: out; backward: d */
    const void *x, *g, *r, *in; /* backward: g, x, r; forward: in */
    double s;
    int64_t n, chunk;
} ag__unary_job;

static void ag__unary_pieces(void *arg, int64_t lo, int64_t hi) {
    const ag__unary_job *j = arg;
    int64_t e0 = lo * j->chunk, e1 = hi * j->chunk < j->n ? hi * j->chunk : j->n;
    size_t es = j->dbl ? sizeof(double) : sizeof(float);
#define AG__AT(p) ((p) ? (const void *)((const char *)(p) + (size_t)e0 * es) : NULL)
    void *o = (char *)j->o + (size_t)e0 * es;
    if (j->fwd && j->dbl)
        ag__unary_fwd_f64(j->op, o, AG__AT(j->in), e1 - e0, j->s);
    else if (j->fwd)
        ag__unary_fwd_f32(j->op, o, AG__AT(j->in), e1 - e0, j->s);
    else if (j->dbl)
        ag__unary_bwd_f64(j->op, o, AG__AT(j->g), AG__AT(j->x), AG__AT(j->r), e1 - e0, j->s);
    else
        ag__unary_bwd_f32(j->op, o, AG__AT(j->g), AG__AT(j->x), AG__AT(j->r), e1 - e0, j->s);
#undef AG__AT
}

static void ag__unary_run(ag__unary_job *j) {
    const int64_t cost = ag__unop_vm(j->op, j->fwd) ? AG__VM_COST : 1;
    j->chunk = AG__ELEM_CHUNK / cost;
    ag__run_pieces(ag__div_up(j->n, j->chunk), j->n * cost, ag__unary_pieces, j);
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
 *   -x        dx = -g                             NegBackward0
 *   sqrt(x)   dx = g / (2 * r)                    DivBackward0, MulBackward1
 *   exp(x)    dx = g * r                          MulBackward0
 *   log(x)    dx = g / x                          DivBackward0
 *   log1p(x)  dx = g / (x + 1)                    DivBackward0, AddBackward1
 *   tanh(x)   dx = tanh_backward(g, r)            TanhBackwardBackward0
 *   sigmoid   dx = sigmoid_backward(g, r)         SigmoidBackwardBackward0
 *   sin(x)    dx = g * cos(x)                     MulBackward0, CosBackward0
 *   cos(x)    dx = g * -sin(x)                    MulBackward0, NegBackward0, SinBackward0
 *   relu(x)   dx = threshold_backward(g, r, 0)    ThresholdBackwardBackward0
 *   x + s     dx = g
 *   x * s     dx = g * s                          MulBackward0
 *   x ** s    dx = g * (s * x ** (s - 1))         MulBackward0, MulBackward1, PowBackward0;
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
    case AG__LOG1P:
        d = ag_div(ctx, g, ag__add_scalar1(ctx, x, 1));
        break;
    case AG__TANH:
        d = ag__tanh_grad(ctx, g, r);
        break;
    case AG__SIGMOID:
        d = ag__sigmoid_grad(ctx, g, r);
        break;
    case AG__SIN:
        d = ag_mul(ctx, g, ag_cos(ctx, x));
        break;
    case AG__COS:
        d = ag_mul(ctx, g, ag_neg(ctx, ag_sin(ctx, x)));
        break;
    case AG__RELU:
        d = ag__threshold_grad(ctx, g, r);
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
    }
    return ag__graph_result(dinp[0] = d);
}

/* The backward of every unary kind: the kind says which op. */
static int ag__unary_node_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                   ag_ctx *scratch) {
    AG__UNUSED(fresh);
    AG__UNUSED(scratch);
    return ag__unary_backward((ag__unop)node->kind->op, node, dout, dinp);
}
static int ag__unary_node_backward_graph(ag_node *node, ag_tensor *dout, const bool *need, ag_tensor **dinp,
                                         ag_ctx *ctx) {
    return ag__unary_backward_graph((ag__unop)node->kind->op, node, dout, need, dinp, ctx);
}
static const ag__node_kind ag__neg_kind = {.name = "NegBackward0",
                                           .backward = ag__unary_node_backward,
                                           .backward_graph = ag__unary_node_backward_graph,
                                           .op = AG__NEG};
static const ag__node_kind ag__sqrt_kind = {.name = "SqrtBackward0",
                                            .backward = ag__unary_node_backward,
                                            .backward_graph = ag__unary_node_backward_graph,
                                            .op = AG__SQRT};
static const ag__node_kind ag__exp_kind = {.name = "ExpBackward0",
                                           .backward = ag__unary_node_backward,
                                           .backward_graph = ag__unary_node_backward_graph,
                                           .op = AG__EXP};
static const ag__node_kind ag__log_kind = {.name = "LogBackward0",
                                           .backward = ag__unary_node_backward,
                                           .backward_graph = ag__unary_node_backward_graph,
                                           .op = AG__LOG};
static const ag__node_kind ag__log1p_kind = {.name = "Log1PBackward0",
                                             .backward = ag__unary_node_backward,
                                             .backward_graph = ag__unary_node_backward_graph,
                                             .op = AG__LOG1P};
static const ag__node_kind ag__tanh_kind = {.name = "TanhBackward0",
                                            .backward = ag__unary_node_backward,
                                            .backward_graph = ag__unary_node_backward_graph,
                                            .op = AG__TANH};
static const ag__node_kind ag__sigmoid_kind = {.name = "SigmoidBackward0",
                                               .backward = ag__unary_node_backward,
                                               .backward_graph = ag__unary_node_backward_graph,
                                               .op = AG__SIGMOID};
static const ag__node_kind ag__sin_kind = {.name = "SinBackward0",
                                           .backward = ag__unary_node_backward,
                                           .backward_graph = ag__unary_node_backward_graph,
                                           .op = AG__SIN};
static const ag__node_kind ag__cos_kind = {.name = "CosBackward0",
                                           .backward = ag__unary_node_backward,
                                           .backward_graph = ag__unary_node_backward_graph,
                                           .op = AG__COS};
static const ag__node_kind ag__relu_kind = {.name = "ReluBackward0",
                                            .backward = ag__unary_node_backward,
                                            .backward_graph = ag__unary_node_backward_graph,
                                            .op = AG__RELU};
static const ag__node_kind ag__adds_kind = {.name = "AddBackward0",
                                            .backward = ag__unary_node_backward,
                                            .backward_graph = ag__unary_node_backward_graph,
                                            .op = AG__ADDS};
static const ag__node_kind ag__muls_kind = {.name = "MulBackward0",
                                            .backward = ag__unary_node_backward,
                                            .backward_graph = ag__unary_node_backward_graph,
                                            .op = AG__MULS};
static const ag__node_kind ag__pows_kind = {.name = "PowBackward0",
                                            .backward = ag__unary_node_backward,
                                            .backward_graph = ag__unary_node_backward_graph,
                                            .op = AG__POWS};

static ag_tensor *ag__unary(ag_ctx *ctx, ag__unop op, ag_tensor *a, double s, const char *name,
                            const ag__node_kind *kind) {
    if (ag__check_unary(ctx, a, name) || !(a = ag__standin(ctx, a))) /* the kernels walk a flat */
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
ag_tensor *ag_log1p(ag_ctx *ctx, ag_tensor *a) { return ag__unary(ctx, AG__LOG1P, a, 0, "ag_log1p", &ag__log1p_kind); }
ag_tensor *ag_tanh(ag_ctx *ctx, ag_tensor *a) { return ag__unary(ctx, AG__TANH, a, 0, "ag_tanh", &ag__tanh_kind); }
ag_tensor *ag_sigmoid(ag_ctx *ctx, ag_tensor *a) {
    return ag__unary(ctx, AG__SIGMOID, a, 0, "ag_sigmoid", &ag__sigmoid_kind);
}
ag_tensor *ag_sin(ag_ctx *ctx, ag_tensor *a) { return ag__unary(ctx, AG__SIN, a, 0, "ag_sin", &ag__sin_kind); }
ag_tensor *ag_cos(ag_ctx *ctx, ag_tensor *a) { return ag__unary(ctx, AG__COS, a, 0, "ag_cos", &ag__cos_kind); }
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
