/* Finite-difference gradient check of every op in float64: the gradient of
 * L = sum(op(inputs) * w) from ag_backward against central differences
 * (L(x + h) - L(x - h)) / 2h for each input element. Broadcasting cases,
 * shared inputs and every reduction variant included. */
#include "check.h"

#define H 1e-6

typedef enum { ANY, POSITIVE, AWAY_FROM_ZERO } domain;

typedef struct {
    const char *op;
    int nin;
    int ndim[2];
    int64_t shape[2][4];
    double a0, a1;
    domain dom[2];
    bool same_input; /* op(x, x): both operands are one tensor */
} gc_case;

static const gc_case CASES[] = {
    {"add", 2, {2, 2}, {{3, 4}, {3, 4}}, 0, 0, {ANY, ANY}, false},
    {"add", 2, {2, 2}, {{3, 1}, {1, 4}}, 0, 0, {ANY, ANY}, false},
    {"add", 2, {3, 1}, {{2, 3, 4}, {4}}, 0, 0, {ANY, ANY}, false},
    {"add", 2, {0, 2}, {{0}, {2, 3}}, 0, 0, {ANY, ANY}, false},
    {"sub", 2, {1, 3}, {{4}, {2, 1, 4}}, 0, 0, {ANY, ANY}, false},
    {"sub", 2, {2, 2}, {{2, 3}, {2, 3}}, 0, 0, {ANY, ANY}, true},
    {"mul", 2, {2, 2}, {{2, 3}, {2, 3}}, 0, 0, {ANY, ANY}, false},
    {"mul", 2, {3, 2}, {{2, 3, 4}, {3, 1}}, 0, 0, {ANY, ANY}, false},
    {"mul", 2, {2, 2}, {{3, 3}, {3, 3}}, 0, 0, {ANY, ANY}, true},
    {"mul", 2, {0, 1}, {{0}, {5}}, 0, 0, {ANY, ANY}, false},
    {"div", 2, {2, 2}, {{3, 3}, {3, 3}}, 0, 0, {ANY, AWAY_FROM_ZERO}, false},
    {"div", 2, {3, 2}, {{2, 1, 3}, {4, 1}}, 0, 0, {ANY, AWAY_FROM_ZERO}, false},
    {"div", 2, {1, 1}, {{4}, {4}}, 0, 0, {AWAY_FROM_ZERO, AWAY_FROM_ZERO}, true},
    /* one-element operands take a path of their own */
    {"div", 2, {1, 0}, {{1}, {0}}, 0, 0, {ANY, AWAY_FROM_ZERO}, false},
    {"mul", 2, {0, 1}, {{0}, {1}}, 0, 0, {ANY, ANY}, false},
    {"sub", 2, {1, 1}, {{1}, {1}}, 0, 0, {ANY, ANY}, false},
    {"mul", 2, {1, 1}, {{1}, {1}}, 0, 0, {ANY, ANY}, true},
    {"add_scalar", 1, {2}, {{2, 3}}, 2.5, 0, {ANY}, false},
    {"mul_scalar", 1, {2}, {{2, 3}}, -1.5, 0, {ANY}, false},
    {"pow_scalar", 1, {1}, {{6}}, 2, 0, {ANY}, false},
    {"pow_scalar", 1, {2}, {{2, 2}}, 3, 0, {ANY}, false},
    {"pow_scalar", 1, {1}, {{5}}, 0.5, 0, {POSITIVE}, false},
    {"pow_scalar", 1, {1}, {{5}}, -1.5, 0, {POSITIVE}, false},
    {"pow_scalar", 1, {1}, {{4}}, 0, 0, {ANY}, false},
    {"neg", 1, {2}, {{3, 2}}, 0, 0, {ANY}, false},
    {"sqrt", 1, {2}, {{3, 2}}, 0, 0, {POSITIVE}, false},
    {"exp", 1, {1}, {{7}}, 0, 0, {ANY}, false},
    {"log", 1, {2}, {{2, 4}}, 0, 0, {POSITIVE}, false},
    {"tanh", 1, {2}, {{2, 5}}, 0, 0, {ANY}, false},
    {"sigmoid", 1, {2}, {{2, 5}}, 0, 0, {ANY}, false},
    {"relu", 1, {2}, {{3, 4}}, 0, 0, {AWAY_FROM_ZERO}, false},
    {"sum", 1, {2}, {{3, 4}}, 0, 0, {ANY}, false},
    {"sum", 1, {0}, {{0}}, 0, 0, {ANY}, false},
    {"sum_dim", 1, {2}, {{3, 4}}, 0, 0, {ANY}, false},
    {"sum_dim", 1, {2}, {{3, 4}}, 1, 1, {ANY}, false},
    {"sum_dim", 1, {3}, {{2, 3, 4}}, -2, 0, {ANY}, false},
    {"sum_dim", 1, {3}, {{2, 3, 4}}, 2, 1, {ANY}, false},
    {"mean", 1, {2}, {{4, 5}}, 0, 0, {ANY}, false},
    {"mean_dim", 1, {3}, {{2, 3, 4}}, 2, 0, {ANY}, false},
    {"mean_dim", 1, {3}, {{2, 3, 4}}, 0, 1, {ANY}, false},
    {"mean_dim", 1, {2}, {{3, 4}}, -1, 1, {ANY}, false},
    {"max", 1, {2}, {{3, 4}}, 0, 0, {ANY}, false},
    {"matmul", 2, {2, 2}, {{3, 5}, {5, 2}}, 0, 0, {ANY, ANY}, false},
    {"matmul", 2, {2, 2}, {{1, 7}, {7, 1}}, 0, 0, {ANY, ANY}, false},
    {"matmul", 2, {2, 2}, {{4, 4}, {4, 4}}, 0, 0, {ANY, ANY}, true},
    {"reshape", 1, {2}, {{2, 6}}, 3, 4, {ANY}, false},
    {"reshape", 1, {3}, {{2, 3, 2}}, -1, 3, {ANY}, false},
    {"transpose", 1, {2}, {{3, 4}}, 0, 1, {ANY}, false},
    {"transpose", 1, {3}, {{2, 3, 4}}, 0, -1, {ANY}, false},
    {"transpose", 1, {3}, {{2, 3, 4}}, 1, 2, {ANY}, false},
    {"clone", 1, {2}, {{2, 2}}, 0, 0, {ANY}, false},
};

static ag_tensor *make_input(ag_ctx *ctx, int ndim, const int64_t *shape, domain dom) {
    ag_tensor *t = ag_randn(ctx, AG_FLOAT64, ndim, shape);
    double *p = ag_mutable_data_ptr(t);
    for (int64_t i = 0; i < ag_numel(t); i++) {
        if (dom == POSITIVE)
            p[i] = fabs(p[i]) + 0.5;
        else if (dom == AWAY_FROM_ZERO)
            p[i] += p[i] >= 0 ? 0.3 : -0.3;
    }
    return t;
}

/* L = sum(op(in) * w), evaluated without recording. */
static double loss(ag_ctx *ctx, const gc_case *c, ag_tensor **in, ag_tensor *w) {
    bool prev = ag_set_grad_enabled(false);
    ag_tensor *out = run_op(ctx, c->op, in, c->a0, c->a1);
    double l = ag_item(ag_sum(ctx, ag_mul(ctx, out, w)));
    ag_set_grad_enabled(prev);
    return l;
}

static void test_gradcheck_all_ops(void **state) {
    (void)state;
    ag_manual_seed(2024);
    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
        const gc_case *c = &CASES[k];
        ag_ctx *ctx = ag_ctx_new(), *tmp = ag_ctx_new();
        ag_tensor *in[2] = {NULL, NULL};
        for (int i = 0; i < c->nin; i++) {
            in[i] = c->same_input && i == 1 ? in[0] : make_input(ctx, c->ndim[i], c->shape[i], c->dom[i]);
            assert_int_equal(ag_requires_grad_(in[i], true), 0);
        }
        ag_tensor *out = run_op(ctx, c->op, in, c->a0, c->a1);
        if (!out)
            fail_msg("case %zu (%s): %s", k, c->op, ag_last_error());
        ag_tensor *w = ag_randn(ctx, AG_FLOAT64, ag_ndim(out), NULL);
        if (ag_ndim(out) > 0) {
            int64_t shape[AG_MAX_DIMS];
            for (int d = 0; d < ag_ndim(out); d++)
                shape[d] = ag_size(out, d);
            w = ag_randn(ctx, AG_FLOAT64, ag_ndim(out), shape);
        }
        if (ag_backward(ag_sum(ctx, ag_mul(ctx, out, w)), NULL, NULL))
            fail_msg("case %zu (%s): backward: %s", k, c->op, ag_last_error());
        int distinct = c->same_input ? 1 : c->nin;
        for (int i = 0; i < distinct; i++) {
            double *x = (double *)ag_data_ptr(in[i]); /* perturbed without a version bump: nothing is saved */
            ag_tensor *g = ag_grad(in[i]);
            if (ag_numel(in[i]) > 0)
                assert_non_null(g);
            for (int64_t e = 0; e < ag_numel(in[i]); e++) {
                double x0 = x[e];
                x[e] = x0 + H;
                double lp = loss(tmp, c, in, w);
                x[e] = x0 - H;
                double lm = loss(tmp, c, in, w);
                x[e] = x0;
                ag_ctx_reset(tmp);
                double num = (lp - lm) / (2 * H), ana = ag_get(g, e);
                if (!(fabs(num - ana) <= 1e-6 + 1e-5 * fabs(num)))
                    fail_msg("case %zu (%s) input %d element %lld: backward %.12g, finite difference %.12g", k,
                             c->op, i, (long long)e, ana, num);
            }
        }
        ag_ctx_free(tmp);
        ag_ctx_free(ctx);
    }
}

/* max with ties: the gradient is split evenly among the maxima, as PyTorch
 * 1.13 does (a finite difference is undefined there). */
static void test_max_ties_split_evenly(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = ag_tensor_from(ctx, AG_FLOAT64, 1, (int64_t[]){5}, (double[]){1, 3, -2, 3, 3});
    ag_requires_grad_(x, true);
    assert_int_equal(ag_backward(ag_mul_scalar(ctx, ag_max(ctx, x), 6), NULL, NULL), 0);
    const double want[] = {0, 2, 0, 2, 2};
    for (int i = 0; i < 5; i++)
        assert_true(ag_get(ag_grad(x), i) == want[i]);
    ag_ctx_free(ctx);
}

/* relu at exactly 0 has gradient 0, as PyTorch's threshold_backward. */
static void test_relu_kink(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = ag_tensor_from(ctx, AG_FLOAT32, 1, (int64_t[]){3}, (float[]){-1, 0, 2});
    ag_requires_grad_(x, true);
    assert_int_equal(ag_backward(ag_sum(ctx, ag_relu(ctx, x)), NULL, NULL), 0);
    assert_true(ag_get(ag_grad(x), 0) == 0 && ag_get(ag_grad(x), 1) == 0 && ag_get(ag_grad(x), 2) == 1);
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_all_ops),
        cmocka_unit_test(test_max_ties_split_evenly),
        cmocka_unit_test(test_relu_kink),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
