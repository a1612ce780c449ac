/* The lifetime rule of create_graph gradients: the recorded backward and
 * the gradients it makes live in the root's context (ag_backward) or in
 * ctx (ag_autograd_grad); a leaf's .grad made so belongs to that context,
 * and resetting or freeing it sets the .grad back to NULL. Run under
 * ASan (the unit suite of the sanitizer build), a dangling .grad would
 * be a use after free here. Also: saved tensors of custom functions are
 * version-checked and freed like built-in ones. */
#include "autograd_check.h"

/* Parameters in one context, each step's graph in another: the step
 * context going first clears the .grad it owned. */
static void test_reset_clears_grad(void **state) {
    (void)state;
    ag_ctx *params = ag_ctx_new(), *step = ag_ctx_new();
    ag_tensor *w = vec64(params, 1, (int64_t[]){3}, (double[]){1, 2, 3}, true);
    for (int round = 0; round < 3; round++) {
        ag_tensor *loss = ag_sum(step, ag_mul(step, ag_mul(step, w, w), w));
        assert_ok(ag_backward(loss, NULL, &(ag_backward_opts){.create_graph = true}));
        ag_tensor *g = ag_grad(w);
        assert_non_null(g);
        assert_non_null(ag_grad_fn(g)); /* 3 w^2, with history */
        assert_true(ag_get(g, 1) == 12.0);
        /* the gradient of the gradient, through the recorded backward */
        ag_tensor *gg = NULL;
        ag_tensor *s = ag_sum(step, g);
        assert_ok(ag_autograd_grad(step, &s, NULL, 1, &w, 1, &gg, NULL));
        assert_true(ag_get(gg, 2) == 18.0); /* 6 w */
        ag_ctx_reset(step);
        assert_null(ag_grad(w)); /* never a dangling pointer */
    }
    ag_ctx_free(step);
    ag_ctx_free(params);
}

/* A .grad accumulated over two create_graph backwards, then the leaf's
 * own context freed first: the step context forgets the link. */
static void test_leaf_context_goes_first(void **state) {
    (void)state;
    ag_ctx *params = ag_ctx_new(), *step = ag_ctx_new();
    ag_tensor *w = vec64(params, 1, (int64_t[]){2}, (double[]){1, -1}, true);
    for (int k = 0; k < 2; k++)
        assert_ok(ag_backward(ag_sum(step, ag_mul(step, w, w)), NULL, &(ag_backward_opts){.create_graph = true}));
    assert_true(ag_get(ag_grad(w), 0) == 4.0);
    ag_ctx_free(params);
    ag_ctx_reset(step); /* must not write into the freed leaf */
    ag_ctx_free(step);
}

/* A .grad set by the program after a create_graph backward is the
 * program's: resetting the step context leaves it alone. */
static void test_replaced_grad_kept(void **state) {
    (void)state;
    ag_ctx *params = ag_ctx_new(), *step = ag_ctx_new();
    ag_tensor *w = vec64(params, 1, (int64_t[]){2}, (double[]){1, 2}, true);
    assert_ok(ag_backward(ag_sum(step, ag_mul(step, w, w)), NULL, &(ag_backward_opts){.create_graph = true}));
    ag_tensor *mine = ag_zeros(params, AG_FLOAT64, 1, (int64_t[]){2});
    assert_ok(ag_set_grad(w, mine));
    ag_ctx_reset(step);
    assert_ptr_equal(ag_grad(w), mine);
    ag_ctx_free(step);
    ag_ctx_free(params);
}

/* ag_autograd_grad with create_graph: the gradients live in ctx. */
static void test_grad_in_ctx(void **state) {
    (void)state;
    ag_ctx *a = ag_ctx_new(), *b = ag_ctx_new(), *out = ag_ctx_new();
    ag_tensor *x = vec64(a, 1, (int64_t[]){2}, (double[]){0.5, 2}, true);
    ag_tensor *y = ag_sum(b, ag_exp(b, x)), *g = NULL;
    assert_ok(ag_autograd_grad(out, &y, NULL, 1, &x, 1, &g, &(ag_grad_opts){.create_graph = true}));
    assert_non_null(ag_grad_fn(g));
    assert_null(ag_grad(x)); /* grad() touches no .grad */
    ag_tensor *gg = NULL, *s = ag_sum(out, g);
    assert_ok(ag_autograd_grad(out, &s, NULL, 1, &x, 1, &gg, NULL));
    assert_true(fabs(ag_get(gg, 1) - exp(2.0)) < 1e-12);
    ag_ctx_free(out); /* the recorded backward goes with out; b's forward graph is left as it was */
    ag_ctx_free(b);
    ag_ctx_free(a);
}

/* ---- Custom functions' saved tensors ------------------------------------------------------- */

static ag_tensor *sq_forward(ag_function_ctx *fc, ag_ctx *c, ag_tensor *const *in, int n, void *u) {
    (void)n, (void)u;
    if (ag_function_save(fc, in, 1))
        return NULL;
    return ag_mul(c, in[0], in[0]);
}

static int sq_backward(ag_function_ctx *fc, ag_ctx *c, const ag_tensor *g, ag_tensor **gi, void *u) {
    (void)u;
    ag_tensor *x = (ag_tensor *)ag_function_saved(fc, 0);
    if (!x)
        return ag_last_status();
    gi[0] = ag_mul_scalar(c, ag_mul(c, (ag_tensor *)g, x), 2);
    return gi[0] ? 0 : ag_last_status();
}

static const ag_function square = {"SquareBackward", sq_forward, sq_backward};

static void test_custom_saved_checked(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = vec64(ctx, 1, (int64_t[]){2}, (double[]){1, 3}, true);
    ag_tensor *x2 = ag_mul_scalar(ctx, x, 1); /* a non-leaf: may change in place */
    ag_tensor *y = ag_sum(ctx, ag_function_apply(ctx, &square, &x2, 1, NULL));
    bool prev = ag_set_grad_enabled(false);
    assert_ok(ag_mul_scalar_(x2, 2)); /* the saved input changed (its version bumped) */
    ag_set_grad_enabled(prev);
    assert_int_equal(ag_backward(y, NULL, NULL), AG_ESTATE);
    assert_non_null(strstr(ag_last_error(), "modified by an inplace operation"));
    assert_null(ag_grad(x));

    /* freed by a backward without retain_graph: a second one is refused */
    ag_tensor *z = ag_sum(ctx, ag_function_apply(ctx, &square, &x, 1, NULL));
    assert_ok(ag_backward(z, NULL, NULL));
    assert_true(ag_get(ag_grad(x), 1) == 6.0);
    assert_int_equal(ag_backward(z, NULL, NULL), AG_ESTATE);
    assert_non_null(strstr(ag_last_error(), "Trying to backward through the graph a second time"));
    ag_ctx_free(ctx);
}

/* A custom function's wrong gradient count and shape are PyTorch's errors. */
static int two_backward(ag_function_ctx *fc, ag_ctx *c, const ag_tensor *g, ag_tensor **gi, void *u) {
    (void)fc, (void)u;
    gi[0] = ag_ones(c, AG_FLOAT64, 1, (int64_t[]){5});
    (void)g;
    return 2;
}
static const ag_function wrong = {"WrongBackward", sq_forward, two_backward};

static int shape_backward(ag_function_ctx *fc, ag_ctx *c, const ag_tensor *g, ag_tensor **gi, void *u) {
    (void)fc, (void)u, (void)g;
    gi[0] = ag_ones(c, AG_FLOAT64, 1, (int64_t[]){5});
    return 0;
}
static const ag_function badshape = {"BadShapeBackward", sq_forward, shape_backward};

static void test_custom_errors(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = vec64(ctx, 1, (int64_t[]){2}, (double[]){1, 3}, true);
    ag_tensor *y = ag_sum(ctx, ag_function_apply(ctx, &wrong, &x, 1, NULL));
    assert_int_equal(ag_backward(y, NULL, NULL), AG_EINVAL);
    assert_non_null(strstr(ag_last_error(), "function WrongBackward returned an incorrect number of gradients"));
    y = ag_sum(ctx, ag_function_apply(ctx, &badshape, &x, 1, NULL));
    assert_int_equal(ag_backward(y, NULL, NULL), AG_ESHAPE);
    assert_non_null(strstr(ag_last_error(), "Function BadShapeBackward returned an invalid gradient at index 0"));
    assert_null(ag_grad(x));
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reset_clears_grad),    cmocka_unit_test(test_leaf_context_goes_first),
        cmocka_unit_test(test_replaced_grad_kept),   cmocka_unit_test(test_grad_in_ctx),
        cmocka_unit_test(test_custom_saved_checked), cmocka_unit_test(test_custom_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
