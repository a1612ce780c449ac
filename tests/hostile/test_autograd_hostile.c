/* Hostile use of the functional autograd API (autograd.grad, several roots,
 * custom functions, gradcheck, node hooks, anomaly mode): a user's
 * function, hook or backward that misbehaves gets a clear error, never a
 * crash or a failure without a message. */
#include "hostile.h"

/* f returns NULL without having set an error. */
static ag_tensor *silent_null(ag_ctx *ctx, ag_tensor *const *in, int n, void *ud) {
    (void)ctx, (void)in, (void)n, (void)ud;
    return NULL;
}

static void test_gradcheck_function_returning_null_silently(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = ag_ones(ctx, AG_FLOAT64, 1, (int64_t[]){2});
    assert_int_equal(ag_requires_grad_(x, true), 0);
    ag_clear_error();
    expect_rc(ag_gradcheck(silent_null, &x, 1, NULL, NULL), AG_EINVAL, "gradcheck: the function returned NULL");
    expect_rc(ag_gradgradcheck(silent_null, &x, 1, NULL, NULL), AG_EINVAL, "gradgradcheck: the function returned NULL");
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_function_returning_null_silently),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
