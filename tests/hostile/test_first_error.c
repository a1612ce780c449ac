/* The first-error rule for every public function that takes a tensor (or
 * another object agrad made: an optimizer, a node): given NULL after an
 * earlier failure it fails too, and the earlier error is what the caller
 * reads. Given NULL with no error pending, it names itself. */
#include "hostile.h"

#include <stdlib.h>

#define FIRST_MSG "The size of tensor a (2) must match the size of tensor b (3) at non-singleton dimension 0"

static ag_ctx *ctx;
static ag_tensor *a; /* a tensor that exists */

static int setup(void **state) {
    (void)state;
    ctx = ag_ctx_new();
    a = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){2});
    return ctx && a ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    ag_ctx_free(ctx);
    return 0;
}

/* A failure whose result is the NULL the next call is given. */
static ag_tensor *fail_first(void) {
    ag_clear_error();
    ag_tensor *bad = ag_add(ctx, a, ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3}));
    assert_null(bad);
    assert_int_equal(ag_last_status(), AG_ESHAPE);
    return bad;
}

/* The call failed (`failed`) and the pending error is still the first one. */
static void check_kept(bool failed, const char *call, const char *file, int line) {
    if (!failed || ag_last_status() != AG_ESHAPE || strcmp(ag_last_error(), FIRST_MSG) != 0) {
        print_error("%s: %s, and the error is now %d \"%s\"\n", call, failed ? "failed" : "did not fail",
                    ag_last_status(), ag_last_error());
        _fail(file, line);
    }
}
#define KEEPS(failed_when, call)                                                                                       \
    do {                                                                                                               \
        ag_tensor *bad = fail_first();                                                                                 \
        (void)bad;                                                                                                     \
        check_kept((call)failed_when, #call, __FILE__, __LINE__);                                                      \
    } while (0)
/* int results return the kept code; pointers are NULL */
#define KEEPS_RC(call) KEEPS(== AG_ESHAPE, call)
#define KEEPS_NULL(call) KEEPS(== NULL, call)

static ag_tensor *hook(ag_tensor *g, void *ud) {
    (void)ud;
    return g;
}

static void test_inplace_ops_keep_first_error(void **state) {
    (void)state;
    KEEPS_RC(ag_zero_(bad));
    KEEPS_RC(ag_fill_(bad, 1));
    KEEPS_RC(ag_add_(bad, a, 1));
    KEEPS_RC(ag_add_(a, bad, 1));
    KEEPS_RC(ag_sub_(bad, a));
    KEEPS_RC(ag_sub_(a, bad));
    KEEPS_RC(ag_mul_(bad, a));
    KEEPS_RC(ag_mul_(a, bad));
    KEEPS_RC(ag_add_scalar_(bad, 1));
    KEEPS_RC(ag_mul_scalar_(bad, 2));
}

static void test_reading_keeps_first_error(void **state) {
    (void)state;
    float out[2];
    KEEPS_RC(ag_copy_to(bad, out, AG_FLOAT32));
    KEEPS_RC(ag_ndim(bad));
    KEEPS_RC(ag_size(bad, 0));
    KEEPS_RC(ag_numel(bad));
    KEEPS(== AG_DTYPE_COUNT, ag_tensor_dtype(bad));
    KEEPS(!= 0, isnan(ag_item(bad)));
    KEEPS(!= 0, isnan(ag_get(bad, 0)));
    KEEPS_NULL(ag_data_ptr(bad));
    KEEPS_NULL(ag_mutable_data_ptr(bad));
    KEEPS(== 0, ag_version(bad));
}

static void test_printing_keeps_first_error(void **state) {
    (void)state;
    FILE *devnull = fopen("/dev/null", "w");
    assert_non_null(devnull);
    KEEPS_RC(ag_print(bad));
    KEEPS_RC(ag_fprint(devnull, bad));
    KEEPS_RC(ag_fprint(NULL, bad));
    KEEPS_NULL(ag_to_string(bad));
    KEEPS_RC(ag_graph_dot(bad, devnull));
    KEEPS_RC(ag_graph_dot(bad, NULL));
    fclose(devnull);
}

static void test_autograd_state_keeps_first_error(void **state) {
    (void)state;
    KEEPS_RC(ag_requires_grad_(bad, true));
    KEEPS_NULL(ag_grad(bad));
    KEEPS_RC(ag_zero_grad(bad));
    KEEPS_RC(ag_set_grad(bad, NULL));
    KEEPS_RC(ag_retain_grad(bad));
    KEEPS_NULL(ag_detach(bad));
    KEEPS_NULL(ag_grad_fn(bad));
    KEEPS_NULL(ag_node_name(NULL));
    KEEPS_RC(ag_node_num_next(NULL));
    KEEPS_NULL(ag_node_next(NULL, 0));
    KEEPS_NULL(ag_node_variable(NULL));
    KEEPS_RC(ag_backward(bad, NULL, NULL));
    KEEPS_RC(ag_register_hook(bad, hook, NULL));
    KEEPS_RC(ag_remove_hook(bad, 1));
}

static void test_optimizers_keep_first_error(void **state) {
    (void)state;
    KEEPS_NULL(ag_sgd_new(ctx, (ag_tensor *[]){a, bad}, 2, &(ag_sgd_opts){.lr = 0.1}));
    KEEPS_NULL(ag_adam_new(ctx, (ag_tensor *[]){bad}, 1, NULL));
    KEEPS_RC(ag_zero_grads((ag_tensor *[]){bad}, 1));
    /* an optimizer that could not be made */
    KEEPS_RC(ag_optim_step(NULL));
    KEEPS_RC(ag_optim_zero_grad(NULL));
}

static void test_ops_keep_first_error(void **state) {
    (void)state;
    int64_t ids[] = {0};
    KEEPS_NULL(ag_abs(ctx, bad));
    KEEPS_NULL(ag_clamp(ctx, bad, 0, 1));
    KEEPS_NULL(ag_maximum(ctx, a, bad));
    KEEPS_NULL(ag_softmax(ctx, bad, 0));
    KEEPS_NULL(ag_log_softmax(ctx, bad, 0));
    KEEPS_NULL(ag_nll_loss(ctx, bad, ids));
    KEEPS_NULL(ag_cross_entropy(ctx, bad, ids));
    KEEPS_NULL(ag_mse_loss(ctx, bad, a));
    KEEPS_NULL(ag_linear(ctx, bad, a, NULL));
    KEEPS_NULL(ag_linear(ctx, a, bad, NULL));
    KEEPS_NULL(ag_bmm(ctx, bad, a));
    KEEPS_NULL(ag_index_select(ctx, bad, 0, ids, 1));
    KEEPS_NULL(ag_embedding(ctx, bad, ids, 1));
    KEEPS_NULL(ag_cat(ctx, (ag_tensor *[]){a, bad}, 2, 0));
    KEEPS_NULL(ag_cat(NULL, (ag_tensor *[]){bad}, 1, 0));
    KEEPS_NULL(ag_narrow(ctx, bad, 0, 0, 1));
    KEEPS_NULL(ag_expand(ctx, bad, 1, (int64_t[]){2}));
    KEEPS_NULL(ag_reshape(ctx, bad, 1, (int64_t[]){2}));
    KEEPS_NULL(ag_transpose(ctx, bad, 0, 0));
    KEEPS_NULL(ag_matmul(ctx, bad, a));
    KEEPS_NULL(ag_max(ctx, bad));
    KEEPS_NULL(ag_mean_dim(ctx, bad, 0, false));
    KEEPS_NULL(ag_pow_scalar(ctx, bad, 2));
}

/* With no error pending, a NULL names the function that was given it. */
static void test_null_names_the_function(void **state) {
    (void)state;
    FILE *devnull = fopen("/dev/null", "w");
    assert_non_null(devnull);
    ag_clear_error();
    expect_rc(ag_zero_(NULL), AG_EINVAL, "ag_zero_: got a NULL tensor");
    expect_rc(ag_add_(a, NULL, 1), AG_EINVAL, "ag_add_: got a NULL tensor");
    expect_rc(ag_copy_to(NULL, NULL, AG_FLOAT32), AG_EINVAL, "ag_copy_to: got a NULL tensor");
    expect_rc(ag_copy_to(a, NULL, AG_FLOAT32), AG_EINVAL, "ag_copy_to: out is NULL");
    expect_rc(ag_graph_dot(NULL, devnull), AG_EINVAL, "ag_graph_dot: got a NULL tensor");
    expect_rc(ag_graph_dot(a, NULL), AG_EINVAL, "ag_graph_dot: FILE is NULL");
    expect_rc(ag_print(NULL), AG_EINVAL, "ag_print: got a NULL tensor");
    expect_rc(ag_fprint(devnull, NULL), AG_EINVAL, "ag_fprint: got a NULL tensor");
    expect_rc(ag_fprint(NULL, a), AG_EINVAL, "ag_fprint: FILE is NULL");
    expect_rc(ag_optim_step(NULL), AG_EINVAL, "ag_optim_step: optimizer is NULL");
    expect_rc(ag_optim_zero_grad(NULL), AG_EINVAL, "ag_optim_zero_grad: optimizer is NULL");
    expect_rc(ag_node_num_next(NULL), AG_EINVAL, "ag_node_num_next: node is NULL");
    fclose(devnull);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_inplace_ops_keep_first_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reading_keeps_first_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_printing_keeps_first_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_autograd_state_keeps_first_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_optimizers_keep_first_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ops_keep_first_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_names_the_function, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
