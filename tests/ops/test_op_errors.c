/* Op error paths: NULL operands keep the first error, NULL contexts, dtype
 * and shape mismatches with PyTorch's messages, bad dims, reshape and
 * matmul errors. No error may crash or return a half-built tensor. */
#include "check.h"

static void expect(ag_tensor *t, int code, const char *prefix) {
    assert_null(t);
    assert_int_equal(ag_last_status(), code);
    if (strncmp(ag_last_error(), prefix, strlen(prefix)) != 0)
        fail_msg("message \"%s\", expected it to start with \"%s\"", ag_last_error(), prefix);
    ag_clear_error();
}

static const char *UNARY[] = {"neg", "sqrt", "exp", "log", "tanh", "sigmoid", "relu", "sum", "mean", "max", "clone",
                              "add_scalar", "mul_scalar", "pow_scalar"};
static const char *BINARY[] = {"add", "sub", "mul", "div"};

static void test_null_and_context(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *a = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3});
    ag_tensor *nul[2] = {NULL, NULL}, *one[2] = {a, a};
    for (size_t i = 0; i < sizeof UNARY / sizeof *UNARY; i++) {
        ag_clear_error();
        expect(run_op(ctx, UNARY[i], nul, 1, 0), AG_EINVAL, "ag_");
        expect(run_op(NULL, UNARY[i], one, 1, 0), AG_EINVAL, "ag_");
    }
    for (size_t i = 0; i < sizeof BINARY / sizeof *BINARY; i++) {
        ag_tensor *half[2] = {a, NULL};
        expect(run_op(ctx, BINARY[i], half, 0, 0), AG_EINVAL, "ag_");
        expect(run_op(NULL, BINARY[i], one, 0, 0), AG_EINVAL, "ag_");
    }
    /* the first error survives */
    ag_tensor *b = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){4});
    assert_null(ag_exp(ctx, ag_relu(ctx, ag_add(ctx, a, b))));
    expect(NULL, AG_ESHAPE, "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 0");
    ag_ctx_free(ctx);
}

static void test_dtype_and_shape(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *f = ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){2, 3});
    ag_tensor *d = ag_ones(ctx, AG_FLOAT64, 2, (int64_t[]){2, 3});
    for (size_t i = 0; i < sizeof BINARY / sizeof *BINARY; i++)
        expect(run_op(ctx, BINARY[i], (ag_tensor *[]){f, d}, 0, 0), AG_EDTYPE, "ag_");
    expect(ag_matmul(ctx, f, ag_ones(ctx, AG_FLOAT64, 2, (int64_t[]){3, 2})), AG_EDTYPE, "ag_matmul");
    ag_tensor *c = ag_ones(ctx, AG_FLOAT32, 3, (int64_t[]){4, 5, 3});
    expect(ag_mul(ctx, f, c), AG_ESHAPE,
           "The size of tensor a (2) must match the size of tensor b (5) at non-singleton dimension 1");
    expect(ag_matmul(ctx, f, f), AG_ESHAPE, "mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)");
    expect(ag_matmul(ctx, f, ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3})), AG_ESHAPE,
           "ag_matmul: both arguments must be 2-D");
    ag_ctx_free(ctx);
}

static void test_dims_and_reshape(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *t = ag_ones(ctx, AG_FLOAT64, 2, (int64_t[]){2, 2});
    expect(ag_sum_dim(ctx, t, 2, false), AG_EINVAL,
           "Dimension out of range (expected to be in range of [-2, 1], but got 2)");
    expect(ag_mean_dim(ctx, t, -3, true), AG_EINVAL,
           "Dimension out of range (expected to be in range of [-2, 1], but got -3)");
    expect(ag_transpose(ctx, t, 0, 5), AG_EINVAL, "Dimension out of range");
    expect(ag_reshape(ctx, t, 2, (int64_t[]){2, 5}), AG_ESHAPE, "shape '[2, 5]' is invalid for input of size 4");
    expect(ag_reshape(ctx, t, 2, (int64_t[]){-1, -1}), AG_EINVAL, "only one dimension can be inferred");
    expect(ag_reshape(ctx, t, 2, (int64_t[]){3, -1}), AG_ESHAPE, "shape '[3, -1]' is invalid for input of size 4");
    expect(ag_reshape(ctx, t, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 4}), AG_EINVAL, "ndim 9");
    expect(ag_max(ctx, ag_zeros(ctx, AG_FLOAT32, 1, (int64_t[]){0})), AG_EINVAL,
           "max(): Expected reduction dim to be specified for input.numel() == 0.");
    ag_tensor *r = ag_reshape(ctx, t, 1, (int64_t[]){-1});
    assert_non_null(r);
    assert_int_equal(ag_size(r, 0), 4);
    assert_ptr_equal(ag_data_ptr(r), ag_data_ptr(t)); /* a view */
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_and_context),
        cmocka_unit_test(test_dtype_and_shape),
        cmocka_unit_test(test_dims_and_reshape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
