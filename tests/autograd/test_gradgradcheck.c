/* Every op of agrad under ag_gradcheck and ag_gradgradcheck in float64:
 * first derivatives from backward and second derivatives from a
 * create_graph backward against central differences. Linear ops are
 * checked through y * y, so that the gradient reaching their backward
 * carries history. Ops whose backward cannot be recorded yet must refuse
 * create_graph with AG_EUNSUPPORTED naming their node. */
#include "autograd_check.h"

#include <math.h>

static ag_ctx *ctx;

static int setup(void **state) {
    (void)state;
    ctx = ag_ctx_new();
    return ctx ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    ag_ctx_free(ctx);
    return 0;
}

/* ---- The functions checked -------------------------------------------------------------- */

typedef ag_tensor *(*op1)(ag_ctx *, ag_tensor *);
typedef ag_tensor *(*op2)(ag_ctx *, ag_tensor *, ag_tensor *);

static ag_tensor *sq(ag_ctx *c, ag_tensor *y) { return ag_mul(c, y, y); }

static ag_tensor *f_add(ag_ctx *c, ag_tensor *const *x, int n, void *u) {
    (void)n, (void)u;
    return sq(c, ag_add(c, x[0], x[1]));
}
static ag_tensor *f_sub(ag_ctx *c, ag_tensor *const *x, int n, void *u) {
    (void)n, (void)u;
    return sq(c, ag_sub(c, x[0], x[1]));
}
static ag_tensor *f_mul(ag_ctx *c, ag_tensor *const *x, int n, void *u) {
    (void)n, (void)u;
    return ag_mul(c, x[0], x[1]);
}
static ag_tensor *f_div(ag_ctx *c, ag_tensor *const *x, int n, void *u) {
    (void)n, (void)u;
    return ag_div(c, x[0], x[1]);
}
static ag_tensor *f_pow(ag_ctx *c, ag_tensor *const *x, int n, void *u) {
    (void)n, (void)u;
    return ag_pow(c, x[0], x[1]);
}
static ag_tensor *f_maximum(ag_ctx *c, ag_tensor *const *x, int n, void *u) {
    (void)n, (void)u;
    return sq(c, ag_maximum(c, x[0], x[1]));
}
static ag_tensor *f_mse(ag_ctx *c, ag_tensor *const *x, int n, void *u) {
    (void)n, (void)u;
    return ag_mse_loss(c, x[0], x[1]);
}
static ag_tensor *f_matmul(ag_ctx *c, ag_tensor *const *x, int n, void *u) {
    (void)n, (void)u;
    return sq(c, ag_matmul(c, x[0], x[1]));
}
static ag_tensor *f_bmm(ag_ctx *c, ag_tensor *const *x, int n, void *u) {
    (void)n, (void)u;
    return sq(c, ag_bmm(c, x[0], x[1]));
}

/* unary ops through a function pointer in user_data */
static ag_tensor *f_unary(ag_ctx *c, ag_tensor *const *x, int n, void *u) {
    (void)n;
    return ((op1)u)(c, x[0]);
}
static ag_tensor *f_unary_sq(ag_ctx *c, ag_tensor *const *x, int n, void *u) {
    (void)n;
    return sq(c, ((op1)u)(c, x[0]));
}
static ag_tensor *add_s(ag_ctx *c, ag_tensor *a) { return ag_add_scalar(c, a, 0.75); }
static ag_tensor *mul_s(ag_ctx *c, ag_tensor *a) { return ag_mul_scalar(c, a, -1.5); }
static ag_tensor *pow_s(ag_ctx *c, ag_tensor *a) { return ag_pow_scalar(c, a, 2.5); }
static ag_tensor *pow_0(ag_ctx *c, ag_tensor *a) { return ag_mul(c, ag_pow_scalar(c, a, 0), a); }
static ag_tensor *clamp(ag_ctx *c, ag_tensor *a) { return ag_clamp(c, a, -0.5, 0.5); }
static ag_tensor *sum_d(ag_ctx *c, ag_tensor *a) { return ag_sum_dim(c, a, 1, false); }
static ag_tensor *sum_k(ag_ctx *c, ag_tensor *a) { return ag_sum_dim(c, a, 0, true); }
static ag_tensor *mean_d(ag_ctx *c, ag_tensor *a) { return ag_mean_dim(c, a, -1, false); }
static ag_tensor *reshape(ag_ctx *c, ag_tensor *a) { return ag_reshape(c, a, 1, (int64_t[]){-1}); }
static ag_tensor *transpose(ag_ctx *c, ag_tensor *a) { return ag_transpose(c, a, 0, 1); }
static ag_tensor *softmax(ag_ctx *c, ag_tensor *a) { return ag_softmax(c, a, 1); }
static ag_tensor *log_softmax(ag_ctx *c, ag_tensor *a) { return ag_log_softmax(c, a, 0); }
static const int64_t targets[3] = {2, 0, 3};
static ag_tensor *nll(ag_ctx *c, ag_tensor *a) { return ag_nll_loss(c, ag_log_softmax(c, a, 1), targets); }
static ag_tensor *nll_only(ag_ctx *c, ag_tensor *a) { return ag_nll_loss(c, a, targets); }
static ag_tensor *xent(ag_ctx *c, ag_tensor *a) { return ag_cross_entropy(c, a, targets); }
static const int64_t sel_index[4] = {2, 0, 2, 1};
static ag_tensor *index_sel(ag_ctx *c, ag_tensor *a) { return ag_index_select(c, a, 1, sel_index, 4); }
static ag_tensor *embedding(ag_ctx *c, ag_tensor *a) { return ag_embedding(c, a, sel_index, 4); }
static ag_tensor *narrow(ag_ctx *c, ag_tensor *a) { return ag_narrow(c, a, 1, 1, 2); }
static ag_tensor *expand(ag_ctx *c, ag_tensor *a) {
    return ag_expand(c, ag_narrow(c, a, 0, 0, 1), 3, (int64_t[]){2, 3, 4});
}
static ag_tensor *cat(ag_ctx *c, ag_tensor *a) {
    ag_tensor *ts[2] = {a, ag_mul_scalar(c, a, 2)};
    return ag_cat(c, ts, 2, 1);
}
static ag_tensor *f_linear(ag_ctx *c, ag_tensor *const *x, int n, void *u) {
    (void)u;
    return sq(c, ag_linear(c, x[0], x[1], n > 2 ? x[2] : NULL));
}

/* ---- The table ------------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    ag_fn f;
    void *u;
    int n;
    int ndim[3];
    int64_t shape[3][3];
    double lo, hi;      /* inputs drawn from [lo, hi) */
    const char *nograd; /* node that refuses create_graph, NULL: gradgradcheck passes */
} op_case;

#define U(fn) (void *)(fn)
static const op_case cases[] = {
    {"add", f_add, NULL, 2, {2, 1}, {{3, 4}, {4}}, -1, 1, NULL},
    {"sub", f_sub, NULL, 2, {2, 2}, {{3, 1}, {1, 4}}, -1, 1, NULL},
    {"mul", f_mul, NULL, 2, {2, 1}, {{3, 4}, {4}}, -1, 1, NULL},
    {"div", f_div, NULL, 2, {2, 2}, {{3, 4}, {3, 4}}, 0.5, 2, NULL},
    {"pow", f_pow, NULL, 2, {2, 1}, {{3, 4}, {4}}, 0.5, 2, NULL},
    {"add_scalar", f_unary_sq, U(add_s), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"mul_scalar", f_unary_sq, U(mul_s), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"pow_scalar", f_unary, U(pow_s), 1, {2}, {{3, 4}}, 0.5, 2, NULL},
    {"pow_scalar 0", f_unary_sq, U(pow_0), 1, {2}, {{3, 4}}, 0.5, 2, NULL},
    {"neg", f_unary_sq, U(ag_neg), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"sqrt", f_unary, U(ag_sqrt), 1, {2}, {{3, 4}}, 0.5, 2, NULL},
    {"exp", f_unary, U(ag_exp), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"log", f_unary, U(ag_log), 1, {2}, {{3, 4}}, 0.5, 2, NULL},
    {"log1p", f_unary, U(ag_log1p), 1, {2}, {{3, 4}}, 0.5, 2, NULL},
    {"tanh", f_unary, U(ag_tanh), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"sigmoid", f_unary, U(ag_sigmoid), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"sin", f_unary, U(ag_sin), 1, {2}, {{3, 4}}, -2, 2, NULL},
    {"cos", f_unary, U(ag_cos), 1, {2}, {{3, 4}}, -2, 2, NULL},
    {"relu", f_unary_sq, U(ag_relu), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"abs", f_unary_sq, U(ag_abs), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"clamp", f_unary_sq, U(clamp), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"maximum", f_maximum, NULL, 2, {2, 1}, {{3, 4}, {4}}, -1, 1, NULL},
    {"sum", f_unary_sq, U(ag_sum), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"sum_dim", f_unary_sq, U(sum_d), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"sum_dim keepdim", f_unary_sq, U(sum_k), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"mean", f_unary_sq, U(ag_mean), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"mean_dim", f_unary_sq, U(mean_d), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"max", f_unary_sq, U(ag_max), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"matmul", f_matmul, NULL, 2, {2, 2}, {{3, 4}, {4, 2}}, -1, 1, NULL},
    {"reshape", f_unary_sq, U(reshape), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"transpose", f_unary_sq, U(transpose), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"clone", f_unary_sq, U(ag_clone), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"softmax", f_unary, U(softmax), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"log_softmax", f_unary, U(log_softmax), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"nll_loss", f_unary_sq, U(nll_only), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"nll_loss of log_softmax", f_unary, U(nll), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"cross_entropy", f_unary, U(xent), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"mse_loss", f_mse, NULL, 2, {2, 2}, {{3, 4}, {3, 4}}, -1, 1, NULL},
    {"linear", f_linear, NULL, 3, {2, 2, 1}, {{3, 4}, {2, 4}, {2}}, -1, 1, NULL},
    {"linear 3-D", f_linear, NULL, 2, {3, 2}, {{2, 3, 4}, {2, 4}}, -1, 1, NULL},
    {"bmm", f_bmm, NULL, 2, {3, 3}, {{2, 3, 4}, {2, 4, 2}}, -1, 1, NULL},
    {"index_select", f_unary_sq, U(index_sel), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"embedding", f_unary_sq, U(embedding), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"cat", f_unary_sq, U(cat), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"narrow", f_unary_sq, U(narrow), 1, {2}, {{3, 4}}, -1, 1, NULL},
    {"expand", f_unary_sq, U(expand), 1, {3}, {{2, 3, 4}}, -1, 1, NULL},
};

/* Inputs of a case: pseudo-random in [lo, hi), kept 0.05 from 0 and
 * +-0.5 and from each other, so that no kink or tie (relu, abs, clamp,
 * max, maximum) is within the differences' step. */
static void make_inputs(const op_case *oc, ag_tensor **x, uint64_t seed) {
    double used[64];
    int nused = 0;
    for (int i = 0; i < oc->n; i++) {
        x[i] = ag_zeros(ctx, AG_FLOAT64, oc->ndim[i], oc->shape[i]);
        assert_non_null(x[i]);
        double *d = ag_mutable_data_ptr(x[i]);
        for (int64_t e = 0; e < ag_numel(x[i]); e++) {
            double v;
            bool ok;
            do {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                v = oc->lo + (oc->hi - oc->lo) * (double)(seed >> 11) / 9007199254740992.0;
                ok = fabs(v) > 0.05 && fabs(fabs(v) - 0.5) > 0.05;
                for (int k = 0; k < nused && ok; k++)
                    ok = fabs(used[k] - v) > 0.02;
            } while (!ok);
            if (nused < 64)
                used[nused++] = v;
            d[e] = v;
        }
        assert_int_equal(ag_requires_grad_(x[i], true), 0);
    }
}

static void test_every_op(void **state) {
    (void)state;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const op_case *oc = &cases[k];
        ag_tensor *x[3];
        make_inputs(oc, x, 1234 + k);
        int rc = ag_gradcheck(oc->f, x, oc->n, oc->u, NULL);
        if (rc)
            fail_msg("gradcheck of %s: %s", oc->name, ag_last_error());
        rc = ag_gradgradcheck(oc->f, x, oc->n, oc->u, NULL);
        if (!oc->nograd && rc)
            fail_msg("gradgradcheck of %s: %s", oc->name, ag_last_error());
        if (oc->nograd) {
            if (rc != AG_EUNSUPPORTED || !strstr(ag_last_error(), oc->nograd))
                fail_msg("%s: expected create_graph to be refused by %s, got %d: %s", oc->name, oc->nograd, rc,
                         ag_last_error());
        }
        ag_ctx_reset(ctx);
    }
}

/* ---- A custom function: exp with its own backward, in agrad ops --------------------------- */

static ag_tensor *myexp_forward(ag_function_ctx *fc, ag_ctx *c, ag_tensor *const *in, int n, void *u) {
    (void)n, (void)u;
    ag_tensor *y = ag_exp(c, in[0]);
    if (y && ag_function_save(fc, &y, 1))
        return NULL;
    return y;
}

static int myexp_backward(ag_function_ctx *fc, ag_ctx *c, const ag_tensor *g, ag_tensor **gi, void *u) {
    (void)u;
    ag_tensor *y = (ag_tensor *)ag_function_saved(fc, 0);
    if (!y)
        return ag_last_status();
    gi[0] = ag_mul(c, (ag_tensor *)g, y);
    return gi[0] ? 0 : ag_last_status();
}

static const ag_function myexp = {"MyExpBackward", myexp_forward, myexp_backward};

static ag_tensor *f_custom(ag_ctx *c, ag_tensor *const *x, int n, void *u) {
    (void)n, (void)u;
    return ag_mul(c, ag_function_apply(c, &myexp, x, 1, NULL), x[0]);
}

static void test_custom_function(void **state) {
    (void)state;
    static const op_case oc = {"custom", f_custom, NULL, 1, {2}, {{2, 3}}, -1, 1, NULL};
    ag_tensor *x[1];
    make_inputs(&oc, x, 99);
    if (ag_gradcheck(f_custom, x, 1, NULL, NULL))
        fail_msg("gradcheck of a custom function: %s", ag_last_error());
    if (ag_gradgradcheck(f_custom, x, 1, NULL, NULL))
        fail_msg("gradgradcheck of a custom function: %s", ag_last_error());
}

/* A wrong formula is caught, with the place of the disagreement. */
static int bad_backward(ag_function_ctx *fc, ag_ctx *c, const ag_tensor *g, ag_tensor **gi, void *u) {
    (void)fc, (void)u;
    gi[0] = ag_mul_scalar(c, (ag_tensor *)g, 2.0);
    return gi[0] ? 0 : ag_last_status();
}
static const ag_function badexp = {"BadExpBackward", myexp_forward, bad_backward};
static ag_tensor *f_bad(ag_ctx *c, ag_tensor *const *x, int n, void *u) {
    (void)n, (void)u;
    return ag_function_apply(c, &badexp, x, 1, NULL);
}

static void test_mismatch_reported(void **state) {
    (void)state;
    ag_tensor *x = ag_full(ctx, AG_FLOAT64, 1, (int64_t[]){2}, 0.3);
    assert_int_equal(ag_requires_grad_(x, true), 0);
    assert_int_equal(ag_gradcheck(f_bad, &x, 1, NULL, NULL), AG_ESTATE);
    assert_non_null(strstr(ag_last_error(), "Jacobian mismatch for output 0 with respect to input 0"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_op, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custom_function, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mismatch_reported, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
