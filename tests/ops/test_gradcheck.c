/* Finite-difference gradient check of every op in float64: the gradient of
 * L = sum(op(inputs) * w), w random so every output element matters, from
 * ag_backward against central differences (L(x + h) - L(x - h)) / 2h for
 * each input element, with per-op tolerances. Broadcasting, 0-dim operands,
 * shared inputs, every reduction variant and graphs where one tensor feeds
 * several ops included; then the points finite differences cannot judge
 * (max's ties, relu's kink, pow's 0 exponent) against PyTorch's definitions. */
#include "../common/check.h"

#include <stdlib.h>

typedef enum { ANY, POSITIVE, AWAY_FROM_ZERO } domain;

typedef gradcheck_tol tol;
#define SMOOTH                                                                                                         \
    { 1e-6, 1e-7 } /* the error of the difference itself */
#define STEEP                                                                                                          \
    { 1e-5, 1e-6 } /* 1/x, sqrt, negative powers near 0.5 */
#define SUMMED                                                                                                         \
    { 1e-6, 1e-6 } /* larger losses: more rounding in L */

typedef struct {
    const char *op;
    int nin;
    int ndim[2];
    int64_t shape[2][4];
    double a0, a1;
    domain dom[2];
    bool same_input; /* op(x, x): both operands are one tensor */
    tol tol;
} gc_case;

static const gc_case CASES[] = {
    {"add", 2, {2, 2}, {{3, 4}, {3, 4}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"add", 2, {2, 2}, {{3, 1}, {1, 4}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"add", 2, {3, 1}, {{2, 3, 4}, {4}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"add", 2, {0, 2}, {{0}, {2, 3}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"add", 2, {2, 0}, {{2, 3}, {0}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"add", 2, {0, 0}, {{0}, {0}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"add", 2, {2, 2}, {{2, 3}, {2, 3}}, 0, 0, {ANY, ANY}, true, SMOOTH},
    {"sub", 2, {1, 3}, {{4}, {2, 1, 4}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"sub", 2, {3, 2}, {{2, 3, 1}, {3, 4}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"sub", 2, {2, 2}, {{2, 3}, {2, 3}}, 0, 0, {ANY, ANY}, true, SMOOTH},
    {"sub", 2, {2, 0}, {{2, 3}, {0}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"sub", 2, {1, 1}, {{1}, {1}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"mul", 2, {2, 2}, {{2, 3}, {2, 3}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"mul", 2, {3, 2}, {{2, 3, 4}, {3, 1}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"mul", 2, {3, 2}, {{4, 1, 3}, {2, 1}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"mul", 2, {2, 2}, {{3, 3}, {3, 3}}, 0, 0, {ANY, ANY}, true, SMOOTH},
    {"mul", 2, {0, 1}, {{0}, {5}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"mul", 2, {0, 1}, {{0}, {1}}, 0, 0, {ANY, ANY}, false, SMOOTH},
    {"mul", 2, {1, 1}, {{1}, {1}}, 0, 0, {ANY, ANY}, true, SMOOTH},
    {"div", 2, {2, 2}, {{3, 3}, {3, 3}}, 0, 0, {ANY, AWAY_FROM_ZERO}, false, STEEP},
    {"div", 2, {3, 2}, {{2, 1, 3}, {4, 1}}, 0, 0, {ANY, AWAY_FROM_ZERO}, false, STEEP},
    {"div", 2, {1, 1}, {{4}, {4}}, 0, 0, {AWAY_FROM_ZERO, AWAY_FROM_ZERO}, true, STEEP},
    {"div", 2, {2, 0}, {{2, 3}, {0}}, 0, 0, {ANY, AWAY_FROM_ZERO}, false, STEEP},
    {"div", 2, {0, 2}, {{0}, {2, 2}}, 0, 0, {ANY, AWAY_FROM_ZERO}, false, STEEP},
    {"div", 2, {1, 0}, {{1}, {0}}, 0, 0, {ANY, AWAY_FROM_ZERO}, false, STEEP},
    {"add_scalar", 1, {2}, {{2, 3}}, 2.5, 0, {ANY}, false, SMOOTH},
    {"add_scalar", 1, {0}, {{0}}, -1, 0, {ANY}, false, SMOOTH},
    {"mul_scalar", 1, {2}, {{2, 3}}, -1.5, 0, {ANY}, false, SMOOTH},
    {"mul_scalar", 1, {0}, {{0}}, 3, 0, {ANY}, false, SMOOTH},
    {"pow_scalar", 1, {1}, {{6}}, 2, 0, {ANY}, false, SMOOTH},
    {"pow_scalar", 1, {2}, {{2, 2}}, 3, 0, {ANY}, false, SMOOTH},
    {"pow_scalar", 1, {1}, {{3}}, 1, 0, {ANY}, false, SMOOTH},
    {"pow_scalar", 1, {1}, {{4}}, 0, 0, {ANY}, false, SMOOTH},
    {"pow_scalar", 1, {1}, {{5}}, 0.5, 0, {POSITIVE}, false, STEEP},
    {"pow_scalar", 1, {1}, {{5}}, -0.5, 0, {POSITIVE}, false, STEEP},
    {"pow_scalar", 1, {1}, {{5}}, -1, 0, {AWAY_FROM_ZERO}, false, STEEP},
    {"pow_scalar", 1, {1}, {{5}}, -2, 0, {AWAY_FROM_ZERO}, false, STEEP},
    {"pow_scalar", 1, {1}, {{5}}, -1.5, 0, {POSITIVE}, false, STEEP},
    {"pow_scalar", 1, {2}, {{2, 3}}, 2.5, 0, {POSITIVE}, false, STEEP},
    {"pow_scalar", 1, {0}, {{0}}, 3, 0, {ANY}, false, SMOOTH},
    {"neg", 1, {2}, {{3, 2}}, 0, 0, {ANY}, false, SMOOTH},
    {"sqrt", 1, {2}, {{3, 2}}, 0, 0, {POSITIVE}, false, STEEP},
    {"exp", 1, {1}, {{7}}, 0, 0, {ANY}, false, SMOOTH},
    {"exp", 1, {0}, {{0}}, 0, 0, {ANY}, false, SMOOTH},
    {"log", 1, {2}, {{2, 4}}, 0, 0, {POSITIVE}, false, STEEP},
    {"tanh", 1, {2}, {{2, 5}}, 0, 0, {ANY}, false, SMOOTH},
    {"sigmoid", 1, {2}, {{2, 5}}, 0, 0, {ANY}, false, SMOOTH},
    {"relu", 1, {2}, {{3, 4}}, 0, 0, {AWAY_FROM_ZERO}, false, SMOOTH},
    {"sin", 1, {2}, {{2, 5}}, 0, 0, {ANY}, false, SMOOTH},
    {"sin", 1, {0}, {{0}}, 0, 0, {ANY}, false, SMOOTH},
    {"cos", 1, {2}, {{3, 2}}, 0, 0, {ANY}, false, SMOOTH},
    {"cos", 1, {0}, {{0}}, 0, 0, {ANY}, false, SMOOTH},
    {"log1p", 1, {2}, {{2, 4}}, 0, 0, {POSITIVE}, false, STEEP},
    {"log1p", 1, {0}, {{0}}, 0, 0, {POSITIVE}, false, STEEP},
    {"pow", 2, {2, 2}, {{2, 3}, {2, 3}}, 0, 0, {POSITIVE, ANY}, false, STEEP},
    {"pow", 2, {2, 1}, {{3, 4}, {4}}, 0, 0, {POSITIVE, ANY}, false, STEEP},
    {"pow", 2, {2, 2}, {{3, 1}, {3, 4}}, 0, 0, {POSITIVE, ANY}, false, STEEP},
    {"pow", 2, {3, 2}, {{4, 1, 3}, {2, 1}}, 0, 0, {POSITIVE, ANY}, false, STEEP},
    {"pow", 2, {0, 2}, {{0}, {2, 3}}, 0, 0, {POSITIVE, ANY}, false, STEEP},
    {"pow", 2, {2, 0}, {{2, 3}, {0}}, 0, 0, {POSITIVE, ANY}, false, STEEP},
    {"pow", 2, {2, 2}, {{2, 2}, {2, 2}}, 0, 0, {POSITIVE, POSITIVE}, true, STEEP},
    {"relu", 1, {0}, {{0}}, 0, 0, {AWAY_FROM_ZERO}, false, SMOOTH},
    {"sum", 1, {2}, {{3, 4}}, 0, 0, {ANY}, false, SMOOTH},
    {"sum", 1, {0}, {{0}}, 0, 0, {ANY}, false, SMOOTH},
    {"sum_dim", 1, {2}, {{3, 4}}, 0, 0, {ANY}, false, SMOOTH},
    {"sum_dim", 1, {2}, {{3, 4}}, 1, 1, {ANY}, false, SMOOTH},
    {"sum_dim", 1, {3}, {{2, 3, 4}}, -2, 0, {ANY}, false, SMOOTH},
    {"sum_dim", 1, {3}, {{2, 3, 4}}, 2, 1, {ANY}, false, SMOOTH},
    {"sum_dim", 1, {3}, {{2, 3, 4}}, -3, 1, {ANY}, false, SMOOTH},
    {"sum_dim", 1, {0}, {{0}}, -1, 1, {ANY}, false, SMOOTH},
    {"mean", 1, {2}, {{4, 5}}, 0, 0, {ANY}, false, SMOOTH},
    {"mean", 1, {0}, {{0}}, 0, 0, {ANY}, false, SMOOTH},
    {"mean_dim", 1, {3}, {{2, 3, 4}}, 2, 0, {ANY}, false, SMOOTH},
    {"mean_dim", 1, {3}, {{2, 3, 4}}, 0, 1, {ANY}, false, SMOOTH},
    {"mean_dim", 1, {3}, {{2, 3, 4}}, 1, 0, {ANY}, false, SMOOTH},
    {"mean_dim", 1, {2}, {{3, 4}}, -1, 1, {ANY}, false, SMOOTH},
    {"mean_dim", 1, {0}, {{0}}, 0, 0, {ANY}, false, SMOOTH},
    {"max", 1, {2}, {{3, 4}}, 0, 0, {ANY}, false, SMOOTH},
    {"max", 1, {0}, {{0}}, 0, 0, {ANY}, false, SMOOTH},
    {"matmul", 2, {2, 2}, {{3, 5}, {5, 2}}, 0, 0, {ANY, ANY}, false, SUMMED},
    {"matmul", 2, {2, 2}, {{1, 7}, {7, 1}}, 0, 0, {ANY, ANY}, false, SUMMED},
    {"matmul", 2, {2, 2}, {{5, 1}, {1, 4}}, 0, 0, {ANY, ANY}, false, SUMMED},
    {"matmul", 2, {2, 2}, {{2, 40}, {40, 3}}, 0, 0, {ANY, ANY}, false, SUMMED},
    {"matmul", 2, {2, 2}, {{4, 4}, {4, 4}}, 0, 0, {ANY, ANY}, true, SUMMED},
    {"reshape", 1, {2}, {{2, 6}}, 3, 4, {ANY}, false, SMOOTH},
    {"reshape", 1, {3}, {{2, 3, 2}}, -1, 3, {ANY}, false, SMOOTH},
    {"reshape", 1, {1}, {{6}}, 2, -1, {ANY}, false, SMOOTH},
    {"reshape", 1, {0}, {{0}}, 1, 1, {ANY}, false, SMOOTH},
    {"transpose", 1, {2}, {{3, 4}}, 0, 1, {ANY}, false, SMOOTH},
    {"transpose", 1, {3}, {{2, 3, 4}}, 0, -1, {ANY}, false, SMOOTH},
    {"transpose", 1, {3}, {{2, 3, 4}}, 1, 2, {ANY}, false, SMOOTH},
    {"transpose", 1, {3}, {{2, 3, 4}}, -1, -2, {ANY}, false, SMOOTH},
    {"transpose", 1, {4}, {{2, 3, 2, 3}}, 1, 3, {ANY}, false, SMOOTH},
    {"transpose", 1, {2}, {{2, 3}}, 1, 1, {ANY}, false, SMOOTH},
    {"transpose", 1, {0}, {{0}}, 0, -1, {ANY}, false, SMOOTH},
    {"clone", 1, {2}, {{2, 2}}, 0, 0, {ANY}, false, SMOOTH},
    {"clone", 1, {0}, {{0}}, 0, 0, {ANY}, false, SMOOTH},
};

static ag_tensor *make_input(ag_ctx *ctx, int ndim, const int64_t *shape, domain dom) {
    ag_tensor *t = ag_randn(ctx, AG_FLOAT64, ndim, shape);
    assert_non_null(t);
    double *p = ag_mutable_data_ptr(t);
    for (int64_t i = 0; i < ag_numel(t); i++) {
        if (dom == POSITIVE)
            p[i] = fabs(p[i]) + 0.5;
        else if (dom == AWAY_FROM_ZERO)
            p[i] += p[i] >= 0 ? 0.3 : -0.3;
    }
    return t;
}

static ag_tensor *build_case(ag_ctx *ctx, ag_tensor **in, const void *arg) {
    const gc_case *c = arg;
    return run_op(ctx, c->op, in, c->a0, c->a1);
}

static void test_gradcheck_every_op(void **state) {
    (void)state;
    ag_manual_seed(2024);
    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
        const gc_case *c = &CASES[k];
        ag_ctx *ctx = ag_ctx_new();
        ag_tensor *in[2] = {NULL, NULL};
        for (int i = 0; i < c->nin; i++) {
            in[i] = c->same_input && i == 1 ? in[0] : make_input(ctx, c->ndim[i], c->shape[i], c->dom[i]);
            assert_int_equal(ag_requires_grad_(in[i], true), 0);
        }
        char label[64];
        snprintf(label, sizeof label, "case %zu (%s)", k, c->op);
        gradcheck(label, build_case, c, in, c->same_input ? 1 : c->nin, c->tol);
        ag_ctx_free(ctx);
    }
}

/* Graphs where one tensor feeds several ops (its gradient is the sum over
 * its uses) and ops feed each other. */
static ag_tensor *build_shared(ag_ctx *ctx, ag_tensor **in, const void *arg) {
    (void)arg;
    ag_tensor *x = in[0], *y = in[1]; /* (3, 4) and (3, 1) */
    /* (x * x + exp(x)) / (1 + y^2) - tanh(x) * sum_dim(y, 0, keepdim) */
    ag_tensor *num = ag_add(ctx, ag_mul(ctx, x, x), ag_exp(ctx, x));
    ag_tensor *den = ag_add_scalar(ctx, ag_pow_scalar(ctx, y, 2), 1);
    return ag_sub(ctx, ag_div(ctx, num, den), ag_mul(ctx, ag_tanh(ctx, x), ag_sum_dim(ctx, y, 0, true)));
}

static ag_tensor *build_mlp(ag_ctx *ctx, ag_tensor **in, const void *arg) {
    (void)arg;
    ag_tensor *x = in[0], *w = in[1];
    /* mean_dim(sigmoid(x @ w) * reshape(transpose(x @ w)), 1) over a view */
    ag_tensor *h = ag_matmul(ctx, x, w); /* (3, 3) */
    ag_tensor *t = ag_transpose(ctx, h, 0, 1);
    ag_tensor *v = ag_reshape(ctx, ag_clone(ctx, t), 2, (int64_t[]){3, -1});
    return ag_mean_dim(ctx, ag_mul(ctx, ag_sigmoid(ctx, h), v), 1, false);
}

static void test_gradcheck_shared_producers(void **state) {
    (void)state;
    ag_manual_seed(7);
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *xy[2] = {make_input(ctx, 2, (int64_t[]){3, 4}, ANY), make_input(ctx, 2, (int64_t[]){3, 1}, ANY)};
    for (int i = 0; i < 2; i++)
        assert_int_equal(ag_requires_grad_(xy[i], true), 0);
    gradcheck("shared producers", build_shared, NULL, xy, 2, (tol)SMOOTH);

    ag_tensor *mlp[2] = {make_input(ctx, 2, (int64_t[]){3, 5}, ANY), make_input(ctx, 2, (int64_t[]){5, 3}, ANY)};
    for (int i = 0; i < 2; i++)
        assert_int_equal(ag_requires_grad_(mlp[i], true), 0);
    gradcheck("matmul chain", build_mlp, NULL, mlp, 2, (tol)SUMMED);
    ag_ctx_free(ctx);
}

/* max with ties: the gradient is split evenly among the maxima, as PyTorch
 * 1.13's evenly_distribute_backward does (a finite difference is undefined
 * there); with nan the nan elements share it. */
static void test_max_ties_split_evenly(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    for (int dt = AG_FLOAT32; dt <= AG_FLOAT64; dt++) {
        const double v[] = {1, 3, -2, 3, 3};
        ag_tensor *x = dt == AG_FLOAT64 ? ag_tensor_from(ctx, dt, 1, (int64_t[]){5}, v)
                                        : ag_tensor_from(ctx, dt, 1, (int64_t[]){5}, (float[]){1, 3, -2, 3, 3});
        assert_int_equal(ag_requires_grad_(x, true), 0);
        ag_tensor *m = ag_max(ctx, x);
        assert_true(ag_item(m) == 3);
        assert_int_equal(ag_backward(ag_mul_scalar(ctx, m, 6), NULL, NULL), 0);
        const double want[] = {0, 2, 0, 2, 2};
        for (int i = 0; i < 5; i++)
            assert_true(ag_get(ag_grad(x), i) == want[i]);
    }
    ag_tensor *x = ag_tensor_from(ctx, AG_FLOAT64, 1, (int64_t[]){4}, (double[]){1, NAN, 3, NAN});
    assert_int_equal(ag_requires_grad_(x, true), 0);
    ag_tensor *m = ag_max(ctx, x);
    assert_true(isnan(ag_item(m)));
    assert_int_equal(ag_backward(m, NULL, NULL), 0);
    const double want[] = {0, 0.5, 0, 0.5};
    for (int i = 0; i < 4; i++)
        assert_true(ag_get(ag_grad(x), i) == want[i]);
    ag_ctx_free(ctx);
}

/* relu at exactly 0 (and -0) has gradient 0, at nan the gradient passes, as
 * PyTorch's threshold_backward(grad, result, 0) decides on the result. */
static void test_relu_kink(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = ag_tensor_from(ctx, AG_FLOAT32, 1, (int64_t[]){5}, (float[]){-1, 0, -0.0f, 2, NAN});
    assert_int_equal(ag_requires_grad_(x, true), 0);
    ag_tensor *r = ag_relu(ctx, x);
    assert_true(signbit(ag_get(r, 2))); /* -0 stays -0, as clamp_min keeps it */
    assert_true(isnan(ag_get(r, 4)));
    assert_int_equal(ag_backward(ag_sum(ctx, r), NULL, NULL), 0);
    const double want[] = {0, 0, 0, 1, 1};
    for (int i = 0; i < 5; i++)
        assert_true(ag_get(ag_grad(x), i) == want[i]);
    ag_ctx_free(ctx);
}

/* x ** 0 has gradient 0 everywhere, even where s * x^(s-1) would be nan
 * (x = 0 gives 0 * inf); x ** 1 passes the gradient through. */
static void test_pow_special_exponents(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = ag_tensor_from(ctx, AG_FLOAT64, 1, (int64_t[]){3}, (double[]){0, -2, INFINITY});
    assert_int_equal(ag_requires_grad_(x, true), 0);
    ag_tensor *y = ag_pow_scalar(ctx, x, 0);
    for (int i = 0; i < 3; i++)
        assert_true(ag_get(y, i) == 1);
    assert_int_equal(ag_backward(ag_sum(ctx, y), NULL, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_true(ag_get(ag_grad(x), i) == 0);
    assert_int_equal(ag_zero_grad(x), 0);
    assert_int_equal(ag_backward(ag_sum(ctx, ag_pow_scalar(ctx, x, 1)), NULL, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_true(ag_get(ag_grad(x), i) == 1);
    ag_ctx_free(ctx);
}

/* pow with a tensor exponent where finite differences cannot judge: base
 * 0, PyTorch's pow_backward_self and pow_backward_exponent (0 for a where
 * b == 0; 0 for b where a == 0 and b >= 0; otherwise the formulas, inf
 * and nan included), and a negative base (nan for b). */
static void test_pow_tensor_base_zero(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    const double av[] = {0, 0, 0, 0, -2, 2};
    const double bv[] = {0, 2, -1, 0.5, 2, 0};
    ag_tensor *a = ag_tensor_from(ctx, AG_FLOAT64, 1, (int64_t[]){6}, av);
    ag_tensor *b = ag_tensor_from(ctx, AG_FLOAT64, 1, (int64_t[]){6}, bv);
    assert_int_equal(ag_requires_grad_(a, true), 0);
    assert_int_equal(ag_requires_grad_(b, true), 0);
    ag_tensor *y = ag_pow(ctx, a, b);
    assert_string_equal(ag_node_name(ag_grad_fn(y)), "PowBackward1");
    const double want_y[] = {1, 0, INFINITY, 0, 4, 1};
    for (int i = 0; i < 6; i++)
        assert_true(ag_get(y, i) == want_y[i]);
    assert_int_equal(ag_backward(ag_sum(ctx, y), NULL, NULL), 0);
    const double want_da[] = {0, 0, -INFINITY, INFINITY, -4, 0};
    const double want_db[] = {0, 0, -INFINITY, 0, NAN, log(2)};
    for (int i = 0; i < 6; i++) {
        assert_true(ag_get(ag_grad(a), i) == want_da[i]);
        double db = ag_get(ag_grad(b), i);
        assert_true(isnan(want_db[i]) ? isnan(db) : db == want_db[i]);
    }
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_every_op),    cmocka_unit_test(test_gradcheck_shared_producers),
        cmocka_unit_test(test_max_ties_split_evenly), cmocka_unit_test(test_relu_kink),
        cmocka_unit_test(test_pow_special_exponents), cmocka_unit_test(test_pow_tensor_base_zero),
    };
    return cmocka_run_group_tests(tests, poison_fresh_gradients, NULL);
}
