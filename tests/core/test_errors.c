/* Every error API.md names, triggered through the public API, with its code
 * and PyTorch's wording checked. */
#include "../common/check.h"

static ag_ctx *ctx;

static int setup(void **state) {
    (void)state;
    ctx = ag_ctx_new();
    ag_clear_error();
    return ctx ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    ag_ctx_free(ctx);
    return 0;
}

static void test_implicit_grad_needs_scalar(void **state) {
    (void)state;
    ag_tensor *x = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3});
    assert_ok(ag_requires_grad_(x, true));
    assert_int_equal(ag_backward(ag_mul_scalar(ctx, x, 2), NULL, NULL), AG_ESTATE);
    assert_error(AG_ESTATE, "grad can be implicitly created only for scalar outputs");
}

static void test_no_grad_fn(void **state) {
    (void)state;
    ag_tensor *x = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3});
    assert_int_equal(ag_backward(ag_sum(ctx, x), NULL, NULL), AG_ESTATE);
    assert_error(AG_ESTATE, "element 0 of tensors does not require grad and does not have a grad_fn");
}

static void test_backward_twice(void **state) {
    (void)state;
    ag_tensor *x = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3});
    assert_ok(ag_requires_grad_(x, true));
    ag_tensor *y = ag_sum(ctx, ag_exp(ctx, x));
    assert_ok(ag_backward(y, NULL, NULL));
    assert_int_equal(ag_backward(y, NULL, NULL), AG_ESTATE);
    assert_error(AG_ESTATE, "Trying to backward through the graph a second time (or directly access saved tensors "
                            "after they have already been freed). Saved intermediate values of the graph are freed "
                            "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
                            "backward through the graph a second time or if you need to access saved tensors after "
                            "calling backward.");
}

static void test_broadcast_mismatch(void **state) {
    (void)state;
    ag_tensor *a = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3});
    ag_tensor *b = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){4});
    assert_null(ag_add(ctx, a, b));
    assert_error(AG_ESHAPE,
                 "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 0");
    ag_clear_error();
    ag_tensor *c = ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){2, 3});
    ag_tensor *d = ag_ones(ctx, AG_FLOAT32, 3, (int64_t[]){4, 5, 3});
    assert_null(ag_mul(ctx, c, d));
    assert_error(AG_ESHAPE,
                 "The size of tensor a (2) must match the size of tensor b (5) at non-singleton dimension 1");
}

static void test_inplace_modified(void **state) {
    (void)state;
    ag_tensor *x = ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){2, 2});
    assert_ok(ag_requires_grad_(x, true));
    ag_tensor *w = ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){2, 2});
    ag_tensor *y = ag_sum(ctx, ag_mul(ctx, x, w));
    ag_mutable_data_ptr(w); /* w was saved by MulBackward0 */
    assert_int_equal(ag_backward(y, NULL, NULL), AG_ESTATE);
    assert_error(AG_ESTATE, "one of the variables needed for gradient computation has been modified by an inplace "
                            "operation: [torch.FloatTensor [2, 2]] is at version 1; expected version 0 instead. Hint: "
                            "enable anomaly detection to find the operation that failed to compute its gradient, with "
                            "torch.autograd.set_detect_anomaly(True).");
}

static void test_requires_grad_of_non_leaf(void **state) {
    (void)state;
    ag_tensor *x = ag_ones(ctx, AG_FLOAT64, 1, (int64_t[]){3});
    assert_ok(ag_requires_grad_(x, true));
    ag_tensor *y = ag_exp(ctx, x);
    assert_int_equal(ag_requires_grad_(y, false), AG_ESTATE);
    assert_error(AG_ESTATE, "you can only change requires_grad flags of leaf variables.");
}

static void test_dtype_and_unsupported(void **state) {
    (void)state;
    ag_tensor *a = ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){3, 3});
    ag_tensor *b = ag_ones(ctx, AG_FLOAT64, 2, (int64_t[]){3, 3});
    assert_null(ag_matmul(ctx, a, b));
    assert_int_equal(ag_last_status(), AG_EDTYPE);
    assert_true(strlen(ag_last_error()) > 0);
    assert_ok(ag_requires_grad_(a, true));
    /* create_graph: every op records its backward, so the gradient has history */
    assert_ok(ag_backward(ag_sum(ctx, ag_mul(ctx, a, ag_maximum(ctx, a, a))), NULL,
                          &(ag_backward_opts){.create_graph = true}));
    assert_non_null(ag_grad(a));
    assert_non_null(ag_grad_fn(ag_grad(a)));
}

static void test_leaf_in_place(void **state) {
    (void)state;
    ag_tensor *x = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3});
    assert_ok(ag_requires_grad_(x, true));
    assert_int_equal(ag_zero_(x), AG_ESTATE);
    assert_error(AG_ESTATE, "a leaf Variable that requires grad is being used in an in-place operation.");
    bool prev = ag_set_grad_enabled(false);
    assert_ok(ag_zero_(x)); /* allowed under no_grad, as an optimizer step */
    ag_set_grad_enabled(prev);
    assert_int_equal(ag_version(x), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_implicit_grad_needs_scalar, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_grad_fn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backward_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broadcast_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inplace_modified, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requires_grad_of_non_leaf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dtype_and_unsupported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leaf_in_place, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
