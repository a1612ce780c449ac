/* The neural-network ops against PyTorch 1.13 (golden_nn.txt: values,
 * gradients of (out * w).sum(), node names and edge counts in both dtypes)
 * and by float64 central differences on the same cases. */
#include "../common/check.h"

/* The op of each case, with the arguments gen_golden_nn.py used. */
static ag_tensor *build(ag_ctx *ctx, const char *name, ag_tensor **in) {
    if (!strcmp(name, "abs"))
        return ag_abs(ctx, in[0]);
    if (!strcmp(name, "clamp"))
        return ag_clamp(ctx, in[0], -0.5, 1.0);
    if (!strcmp(name, "clamp_min"))
        return ag_clamp(ctx, in[0], -0.5, NAN);
    if (!strncmp(name, "maximum", 7))
        return ag_maximum(ctx, in[0], in[1]);
    if (!strcmp(name, "softmax_d1"))
        return ag_softmax(ctx, in[0], 1);
    if (!strcmp(name, "softmax_d0"))
        return ag_softmax(ctx, in[0], 0);
    if (!strcmp(name, "softmax_3d"))
        return ag_softmax(ctx, in[0], -1);
    if (!strcmp(name, "log_softmax_d1"))
        return ag_log_softmax(ctx, in[0], 1);
    if (!strcmp(name, "log_softmax_3d"))
        return ag_log_softmax(ctx, in[0], 0);
    if (!strcmp(name, "cross_entropy"))
        return ag_cross_entropy(ctx, in[0], (const int64_t[]){1, 0, 4, 2});
    if (!strcmp(name, "nll_loss"))
        return ag_nll_loss(ctx, in[0], (const int64_t[]){2, 0, 1, 1});
    if (!strcmp(name, "mse_loss"))
        return ag_mse_loss(ctx, in[0], in[1]);
    if (!strncmp(name, "linear", 6))
        return ag_linear(ctx, in[0], in[1], strstr(name, "nobias") ? NULL : in[2]);
    if (!strncmp(name, "bmm", 3))
        return ag_bmm(ctx, in[0], in[1]);
    if (!strcmp(name, "index_select_d0"))
        return ag_index_select(ctx, in[0], 0, (const int64_t[]){4, 0, 4, 2}, 4);
    if (!strcmp(name, "index_select_d1"))
        return ag_index_select(ctx, in[0], 1, (const int64_t[]){1, 3}, 2);
    if (!strcmp(name, "embedding"))
        return ag_embedding(ctx, in[0], (const int64_t[]){5, 1, 1, 0}, 4);
    if (!strcmp(name, "cat_d0"))
        return ag_cat(ctx, in, 2, 0);
    if (!strcmp(name, "cat_d1"))
        return ag_cat(ctx, in, 2, 1);
    if (!strcmp(name, "narrow_d0"))
        return ag_narrow(ctx, in[0], 0, 1, 3);
    if (!strcmp(name, "narrow_d1"))
        return ag_narrow(ctx, in[0], 1, 2, 2);
    if (!strcmp(name, "expand"))
        return ag_expand(ctx, in[0], 3, (const int64_t[]){2, 3, 4});
    if (!strcmp(name, "expand_keep"))
        return ag_expand(ctx, in[0], 2, (const int64_t[]){3, -1});
    fail_msg("no builder for case %s", name);
    return NULL;
}

typedef void (*case_fn)(const char *name, ag_dtype dt, int nin, ag_tensor **in, ag_tensor *want, ag_tensor *w,
                        ag_tensor **grads, const char *node, int num_next, ag_ctx *ctx);

static int for_each_case(case_fn fn) {
    FILE *f = golden_open("tests/ops/golden_nn.txt");
    char name[64], dts[8], node[64];
    int nin, cases = 0, num_next;
    while (fscanf(f, " case %63s %7s %d", name, dts, &nin) == 3) {
        ag_dtype dt = strcmp(dts, "f64") == 0 ? AG_FLOAT64 : AG_FLOAT32;
        ag_ctx *ctx = ag_ctx_new();
        ag_tensor *in[3] = {0}, *grads[3] = {0};
        for (int i = 0; i < nin; i++)
            in[i] = golden_read_tensor(f, "in", ctx, dt);
        ag_tensor *want = golden_read_tensor(f, "out", ctx, dt), *w = golden_read_tensor(f, "w", ctx, dt);
        for (int i = 0; i < nin; i++)
            grads[i] = golden_read_tensor(f, "grad", ctx, dt);
        assert_int_equal(fscanf(f, " node %63s %d", node, &num_next), 2);
        fn(name, dt, nin, in, want, w, grads, node, num_next, ctx);
        ag_ctx_free(ctx);
        cases++;
    }
    fclose(f);
    return cases;
}

static void golden_case(const char *name, ag_dtype dt, int nin, ag_tensor **in, ag_tensor *want, ag_tensor *w,
                        ag_tensor **grads, const char *node, int num_next, ag_ctx *ctx) {
    double rtol = dt == AG_FLOAT64 ? 1e-11 : 3e-5, atol = dt == AG_FLOAT64 ? 1e-12 : 3e-6;
    for (int i = 0; i < nin; i++)
        assert_int_equal(ag_requires_grad_(in[i], true), 0);
    ag_tensor *out = build(ctx, name, in);
    char what[128];
    snprintf(what, sizeof what, "%s (%s) forward", name, dt == AG_FLOAT64 ? "f64" : "f32");
    assert_tensor_close_msg(out, want, rtol, atol, what);
    if (ag_backward(ag_sum(ctx, ag_mul(ctx, out, w)), NULL, NULL))
        fail_msg("%s: backward: %s", name, ag_last_error());
    for (int i = 0; i < nin; i++) {
        snprintf(what, sizeof what, "%s (%s) grad of input %d", name, dt == AG_FLOAT64 ? "f64" : "f32", i);
        assert_tensor_close_msg(ag_grad(in[i]), grads[i], rtol * 10, atol * 10, what);
    }
    if (strcmp(node, "-") != 0) {
        if (strcmp(ag_node_name(ag_grad_fn(out)), node) != 0)
            fail_msg("%s: node %s, PyTorch has %s", name, ag_node_name(ag_grad_fn(out)), node);
        assert_int_equal(ag_node_num_next(ag_grad_fn(out)), num_next);
    }
}

static void test_nn_ops_match_pytorch(void **state) {
    (void)state;
    assert_true(for_each_case(golden_case) >= 50);
}

static ag_tensor *build_named(ag_ctx *ctx, ag_tensor **in, const void *name) { return build(ctx, name, in); }

static void gradcheck_case(const char *name, ag_dtype dt, int nin, ag_tensor **in, ag_tensor *want, ag_tensor *w,
                           ag_tensor **grads, const char *node, int num_next, ag_ctx *ctx) {
    (void)want, (void)w, (void)grads, (void)node, (void)num_next, (void)ctx;
    if (dt != AG_FLOAT64)
        return; /* finite differences in float64 only */
    for (int i = 0; i < nin; i++)
        assert_int_equal(ag_requires_grad_(in[i], true), 0);
    gradcheck(name, build_named, name, in, nin, (gradcheck_tol){1e-5, 1e-6});
}

static void test_nn_ops_gradcheck(void **state) {
    (void)state;
    for_each_case(gradcheck_case);
}

/* Errors with PyTorch's wording, and in-place updates. */
static void test_nn_errors_and_inplace(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *l = ag_zeros(ctx, AG_FLOAT32, 2, (int64_t[]){2, 3});
    assert_null(ag_cross_entropy(ctx, l, (const int64_t[]){0, 3}));
    assert_string_equal(ag_last_error(), "Target 3 is out of bounds.");
    assert_null(ag_index_select(ctx, l, 0, (const int64_t[]){2}, 1));
    assert_string_equal(ag_last_error(), "index out of range in self");
    assert_null(ag_narrow(ctx, l, 1, 2, 2));
    assert_string_equal(ag_last_error(), "start (2) + length (2) exceeds dimension size (3).");
    assert_null(ag_expand(ctx, l, 2, (const int64_t[]){4, 3}));
    assert_int_equal(ag_last_status(), AG_ESHAPE);
    assert_null(ag_cat(ctx, (ag_tensor *[]){l, ag_zeros(ctx, AG_FLOAT32, 2, (int64_t[]){2, 2})}, 2, 0));
    assert_int_equal(ag_last_status(), AG_ESHAPE);
    assert_null(ag_clamp(ctx, l, NAN, NAN));
    assert_int_equal(ag_last_status(), AG_EINVAL);
    assert_null(ag_linear(ctx, l, ag_zeros(ctx, AG_FLOAT32, 2, (int64_t[]){4, 2}), NULL));
    assert_int_equal(ag_last_status(), AG_ESHAPE);

    ag_tensor *p = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3});
    ag_tensor *g = ag_full(ctx, AG_FLOAT32, 1, (int64_t[]){3}, 2);
    assert_int_equal(ag_requires_grad_(p, true), 0);
    assert_int_equal(ag_add_(p, g, -0.5), AG_ESTATE);
    assert_string_equal(ag_last_error(), "a leaf Variable that requires grad is being used in an in-place operation.");
    ag_tensor *y = ag_mul(ctx, p, p);
    bool prev = ag_set_grad_enabled(false); /* an optimizer step */
    assert_int_equal(ag_add_(p, g, -0.5), 0);
    assert_int_equal(ag_mul_scalar_(p, 4), 0);
    assert_int_equal(ag_sub_(p, g), 0);
    assert_int_equal(ag_mul_(p, g), 0);
    assert_int_equal(ag_add_scalar_(p, 1), 0);
    assert_int_equal(ag_add_(p, ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){2}), 1), AG_ESHAPE);
    ag_set_grad_enabled(prev);
    assert_true(ag_get(p, 0) == -3.0 && ag_version(p) == 5); /* ((1 - 1) * 4 - 2) * 2 + 1 */
    /* the saved p changed: backward refuses, as PyTorch does */
    assert_int_equal(ag_backward(ag_sum(ctx, y), NULL, NULL), AG_ESTATE);
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nn_ops_match_pytorch),
        cmocka_unit_test(test_nn_ops_gradcheck),
        cmocka_unit_test(test_nn_errors_and_inplace),
    };
    return cmocka_run_group_tests(tests, poison_fresh_gradients, NULL);
}
