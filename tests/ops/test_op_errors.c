/* Op error paths: NULL operands keep the first error, NULL contexts, dtype
 * and shape mismatches with PyTorch's messages, bad dims, reshape and
 * matmul errors, max of nothing; no error may crash, return a tensor or
 * leave anything behind (no arena bytes, no change to the inputs). Then the
 * errors that come later, in backward, from what each op saved: a second
 * backward without retain_graph and inputs changed in place, where PyTorch
 * 1.13 refuses them and only there. */
#include "../common/check.h"

#define RETAIN_MSG "Trying to backward through the graph a second time"
#define INPLACE_MSG "one of the variables needed for gradient computation has been modified by an inplace operation"

static const char *UNARY[] = {"neg",   "sqrt",       "exp",        "log",        "tanh", "sigmoid", "relu",
                              "sum",   "sum_dim",    "mean",       "mean_dim",   "max",  "reshape", "transpose",
                              "clone", "add_scalar", "mul_scalar", "pow_scalar", "sin",  "cos",     "log1p"};
static const char *BINARY[] = {"add", "sub", "mul", "div", "matmul", "pow"};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void test_null_tensor_keeps_first_error(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *a = ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){2, 2});
    ag_tensor *none[2] = {NULL, NULL};
    char msg[64];
    for (size_t i = 0; i < COUNT(UNARY); i++) {
        ag_clear_error();
        snprintf(msg, sizeof msg, "ag_%s: got a NULL tensor", UNARY[i]);
        expect_error(run_op(ctx, UNARY[i], none, 0, 1), AG_EINVAL, msg);
    }
    for (size_t i = 0; i < COUNT(BINARY); i++) {
        snprintf(msg, sizeof msg, "ag_%s: got a NULL tensor", BINARY[i]);
        expect_error(run_op(ctx, BINARY[i], (ag_tensor *[]){a, NULL}, 0, 0), AG_EINVAL, msg);
        expect_error(run_op(ctx, BINARY[i], (ag_tensor *[]){NULL, a}, 0, 0), AG_EINVAL, msg);
    }
    /* a chain is checked once at its end: the first failure's error survives */
    ag_tensor *b = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3});
    ag_tensor *bad = ag_add(ctx, a, b);
    for (size_t i = 0; i < COUNT(UNARY); i++)
        assert_null(run_op(ctx, UNARY[i], (ag_tensor *[]){bad, NULL}, 0, 1));
    for (size_t i = 0; i < COUNT(BINARY); i++)
        assert_null(run_op(ctx, BINARY[i], (ag_tensor *[]){a, bad}, 0, 0));
    expect_error(ag_exp(ctx, ag_relu(ctx, ag_sum(ctx, ag_mul(ctx, bad, a)))), AG_ESHAPE,
                 "The size of tensor a (2) must match the size of tensor b (3) at non-singleton dimension 1");
    ag_ctx_free(ctx);
}

static void test_null_context(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *a = ag_ones(ctx, AG_FLOAT64, 2, (int64_t[]){2, 2});
    char msg[64];
    for (size_t i = 0; i < COUNT(UNARY); i++) {
        snprintf(msg, sizeof msg, "ag_%s: context is NULL", UNARY[i]);
        expect_error(run_op(NULL, UNARY[i], (ag_tensor *[]){a, NULL}, 0, 1), AG_EINVAL, msg);
    }
    for (size_t i = 0; i < COUNT(BINARY); i++) {
        snprintf(msg, sizeof msg, "ag_%s: context is NULL", BINARY[i]);
        expect_error(run_op(NULL, BINARY[i], (ag_tensor *[]){a, a}, 0, 0), AG_EINVAL, msg);
    }
    ag_ctx_free(ctx);
}

/* The elementwise ops promote (test_promotion.c); products refuse mixed
 * dtypes with PyTorch's message. */
static void test_dtype_mismatch(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *f = ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){2, 2});
    ag_tensor *d = ag_ones(ctx, AG_FLOAT64, 2, (int64_t[]){2, 2});
    expect_error(ag_matmul(ctx, f, d), AG_EDTYPE, "ag_matmul: expected scalar type Float but found Double");
    expect_error(ag_matmul(ctx, d, f), AG_EDTYPE, "ag_matmul: expected scalar type Double but found Float");
    ag_ctx_free(ctx);
}

static void test_shape_mismatch(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *v3 = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3});
    ag_tensor *v4 = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){4});
    ag_tensor *m23 = ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){2, 3});
    ag_tensor *t453 = ag_ones(ctx, AG_FLOAT32, 3, (int64_t[]){4, 5, 3});
    for (size_t i = 0; i < 4; i++) {
        expect_error(run_op(ctx, BINARY[i], (ag_tensor *[]){v3, v4}, 0, 0), AG_ESHAPE,
                     "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 0");
        /* as PyTorch: dimensions counted in the broadcast result */
        expect_error(run_op(ctx, BINARY[i], (ag_tensor *[]){m23, t453}, 0, 0), AG_ESHAPE,
                     "The size of tensor a (2) must match the size of tensor b (5) at non-singleton dimension 1");
        expect_error(run_op(ctx, BINARY[i], (ag_tensor *[]){t453, v4}, 0, 0), AG_ESHAPE,
                     "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 2");
    }
    ag_tensor *m45 = ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){4, 5});
    expect_error(ag_matmul(ctx, m23, m45), AG_ESHAPE, "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)");
    expect_error(ag_matmul(ctx, m23, m23), AG_ESHAPE, "mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)");
    expect_error(ag_matmul(ctx, m23, v4), AG_ESHAPE, "size mismatch, got 2, 2x3,4");
    expect_error(ag_matmul(ctx, t453, m23), AG_ESHAPE, "ag_matmul: both arguments must be 2-D, but got 3-D and 2-D");
    expect_error(ag_matmul(ctx, ag_scalar(ctx, AG_FLOAT32, 1), m23), AG_ESHAPE,
                 "both arguments to matmul need to be at least 1D, but they are 0D and 2D");
    ag_ctx_free(ctx);
}

static void test_bad_dims(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *t = ag_ones(ctx, AG_FLOAT64, 2, (int64_t[]){2, 2});
    ag_tensor *s = ag_scalar(ctx, AG_FLOAT64, 1);
    expect_error(ag_sum_dim(ctx, t, 2, false), AG_EINVAL,
                 "Dimension out of range (expected to be in range of [-2, 1], but got 2)");
    expect_error(ag_mean_dim(ctx, t, -3, true), AG_EINVAL,
                 "Dimension out of range (expected to be in range of [-2, 1], but got -3)");
    expect_error(ag_transpose(ctx, t, 0, 2), AG_EINVAL,
                 "Dimension out of range (expected to be in range of [-2, 1], but got 2)");
    expect_error(ag_transpose(ctx, t, -3, 0), AG_EINVAL,
                 "Dimension out of range (expected to be in range of [-2, 1], but got -3)");
    /* a 0-dim tensor takes dims -1 and 0, as in PyTorch */
    expect_error(ag_sum_dim(ctx, s, 1, false), AG_EINVAL,
                 "Dimension out of range (expected to be in range of [-1, 0], but got 1)");
    expect_error(ag_mean_dim(ctx, s, -2, false), AG_EINVAL,
                 "Dimension out of range (expected to be in range of [-1, 0], but got -2)");
    assert_non_null(ag_sum_dim(ctx, s, -1, true));
    assert_non_null(ag_transpose(ctx, s, 0, -1));
    ag_ctx_free(ctx);
}

static void test_reshape_and_max_errors(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *t = ag_ones(ctx, AG_FLOAT64, 2, (int64_t[]){2, 2});
    ag_tensor *e = ag_zeros(ctx, AG_FLOAT64, 2, (int64_t[]){0, 3});
    expect_error(ag_reshape(ctx, t, 2, (int64_t[]){2, 5}), AG_ESHAPE, "shape '[2, 5]' is invalid for input of size 4");
    expect_error(ag_reshape(ctx, t, 2, (int64_t[]){3, -1}), AG_ESHAPE,
                 "shape '[3, -1]' is invalid for input of size 4");
    expect_error(ag_reshape(ctx, t, 2, (int64_t[]){0, -1}), AG_ESHAPE,
                 "shape '[0, -1]' is invalid for input of size 4");
    expect_error(ag_reshape(ctx, t, 0, NULL), AG_ESHAPE, "shape '[]' is invalid for input of size 4");
    expect_error(ag_reshape(ctx, t, 2, (int64_t[]){-1, -1}), AG_EINVAL, "only one dimension can be inferred");
    expect_error(ag_reshape(ctx, t, 2, (int64_t[]){2, -2}), AG_EINVAL, "invalid shape dimension -2");
    expect_error(ag_reshape(ctx, e, 2, (int64_t[]){-1, 0}), AG_ESHAPE,
                 "cannot reshape tensor of 0 elements into shape [-1, 0] because the unspecified dimension size "
                 "-1 can be any value and is ambiguous");
    expect_error(ag_reshape(ctx, t, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 4}), AG_EINVAL,
                 "ndim 9 is out of range (0 to 8)");
    expect_error(ag_reshape(ctx, t, 2, NULL), AG_EINVAL, "ag_reshape: shape is NULL");
    expect_error(ag_max(ctx, ag_zeros(ctx, AG_FLOAT32, 1, (int64_t[]){0})), AG_EINVAL,
                 "max(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim "
                 "with the 'dim' argument.");
    expect_error(ag_max(ctx, e), AG_EINVAL, "max(): Expected reduction dim to be specified");
    /* what does work: -1 inference (also with 0 elements), 0-dim <-> 1 element */
    ag_tensor *r = ag_reshape(ctx, t, 1, (int64_t[]){-1});
    assert_non_null(r);
    assert_int_equal(ag_size(r, 0), 4);
    assert_ptr_equal(ag_data_ptr(r), ag_data_ptr(t)); /* a view, as PyTorch's reshape of a contiguous tensor */
    ag_tensor *r0 = ag_reshape(ctx, e, 2, (int64_t[]){-1, 3});
    assert_non_null(r0);
    assert_int_equal(ag_size(r0, 0), 0);
    ag_tensor *s = ag_reshape(ctx, ag_reshape(ctx, ag_scalar(ctx, AG_FLOAT64, 5), 2, (int64_t[]){1, -1}), 0, NULL);
    assert_non_null(s);
    assert_int_equal(ag_ndim(s), 0);
    assert_true(ag_item(s) == 5);
    ag_ctx_free(ctx);
}

/* An op that fails allocates nothing in its context and leaves its inputs
 * as they were: same history, same version, no grad. */
static void test_errors_leave_nothing_behind(void **state) {
    (void)state;
    ag_ctx *in_ctx = ag_ctx_new(), *ctx = ag_ctx_new();
    ag_tensor *a = ag_randn(in_ctx, AG_FLOAT32, 2, (int64_t[]){2, 3});
    ag_tensor *b = ag_randn(in_ctx, AG_FLOAT64, 2, (int64_t[]){4, 3});
    ag_tensor *e = ag_zeros(in_ctx, AG_FLOAT32, 1, (int64_t[]){0});
    assert_int_equal(ag_requires_grad_(a, true), 0);
    assert_int_equal(ag_requires_grad_(b, true), 0);
    ag_tensor *h = ag_exp(in_ctx, a); /* a non-leaf input too */
    size_t bytes = ag_ctx_bytes(ctx);
    uint32_t va = ag_version(a), vh = ag_version(h);
    ag_tensor *fails[] = {
        ag_add(ctx, a, b),
        ag_mul(ctx, h, ag_ones(in_ctx, AG_FLOAT32, 1, (int64_t[]){4})),
        ag_div(NULL, a, h),
        ag_matmul(ctx, h, a),
        ag_matmul(ctx, h, e),
        ag_sum_dim(ctx, h, 5, false),
        ag_mean_dim(ctx, a, -3, true),
        ag_transpose(ctx, h, 0, 7),
        ag_reshape(ctx, h, 2, (int64_t[]){4, -1}),
        ag_reshape(ctx, a, 3, (int64_t[]){-1, 2, -1}),
        ag_max(ctx, e),
        ag_pow_scalar(NULL, h, 2),
        ag_clone(ctx, NULL),
    };
    for (size_t i = 0; i < COUNT(fails); i++)
        if (fails[i])
            fail_msg("failing op %zu returned a tensor", i);
    assert_int_equal(ag_ctx_bytes(ctx), bytes);
    assert_int_equal(ag_version(a), va);
    assert_int_equal(ag_version(h), vh);
    assert_null(ag_grad(a));
    assert_true(ag_is_leaf(a));
    assert_string_equal(ag_node_name(ag_grad_fn(h)), "ExpBackward0");
    ag_clear_error();
    /* and the inputs still work */
    ag_tensor *ok = ag_sum(ctx, ag_mul(ctx, h, a));
    assert_non_null(ok);
    assert_int_equal(ag_backward(ok, NULL, NULL), 0);
    assert_non_null(ag_grad(a));
    ag_ctx_free(ctx);
    ag_ctx_free(in_ctx);
}

/* Without retain_graph, a node that saved tensors (or, for 2 * x, the
 * wrapped scalar) refuses a second backward; one that saved only sizes
 * runs again and accumulates once more, as in PyTorch 1.13. */
static void test_second_backward(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = ag_full(ctx, AG_FLOAT64, 1, (int64_t[]){3}, 1.5);
    assert_int_equal(ag_requires_grad_(x, true), 0);

    ag_tensor *y = ag_add_scalar(ctx, ag_mul_scalar(ctx, x, 2), 3); /* 2 * x + 3 */
    ag_tensor *root = ag_sum(ctx, y);
    assert_int_equal(ag_backward(root, NULL, NULL), 0);
    expect_rc(ag_backward(root, NULL, NULL), AG_ESTATE, RETAIN_MSG);
    assert_true(ag_get(ag_grad(x), 0) == 2);

    ag_backward_opts keep = {.retain_graph = true};
    assert_int_equal(ag_zero_grad(x), 0);
    root = ag_sum(ctx, ag_add_scalar(ctx, ag_mul_scalar(ctx, x, 2), 3));
    assert_int_equal(ag_backward(root, NULL, &keep), 0);
    assert_int_equal(ag_backward(root, NULL, NULL), 0);
    assert_true(ag_get(ag_grad(x), 0) == 4);

    /* nothing saved anywhere on the path: runs again */
    assert_int_equal(ag_zero_grad(x), 0);
    ag_tensor *v = ag_reshape(ctx, ag_neg(ctx, ag_sub(ctx, ag_add_scalar(ctx, x, 3), x)), 2, (int64_t[]){1, 3});
    root = ag_mean(ctx, ag_sum_dim(ctx, ag_clone(ctx, ag_transpose(ctx, v, 0, 1)), 0, true));
    for (int i = 0; i < 3; i++)
        assert_int_equal(ag_backward(root, NULL, NULL), 0);
    assert_true(ag_get(ag_grad(x), 1) == 0); /* x - x: the two paths cancel */

    /* mean_dim saves its input in 1.13, mean does not */
    root = ag_sum(ctx, ag_mean_dim(ctx, ag_add_scalar(ctx, x, 1), 0, false));
    assert_int_equal(ag_backward(root, NULL, NULL), 0);
    expect_rc(ag_backward(root, NULL, NULL), AG_ESTATE, RETAIN_MSG);
    root = ag_mean(ctx, ag_add_scalar(ctx, x, 1));
    assert_int_equal(ag_backward(root, NULL, NULL), 0);
    assert_int_equal(ag_backward(root, NULL, NULL), 0);
    ag_ctx_free(ctx);
}

/* In-place changes to a saved tensor are caught at backward, with
 * PyTorch's message; changes to tensors the op did not save are not. */
static void test_inplace_change_of_saved_tensor(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = ag_randn(ctx, AG_FLOAT64, 2, (int64_t[]){2, 3});
    ag_tensor *c = ag_randn(ctx, AG_FLOAT64, 2, (int64_t[]){2, 3});
    assert_int_equal(ag_requires_grad_(x, true), 0);

    /* mul saves only what the wanted gradients read: c, not x + 1 */
    ag_tensor *t = ag_add_scalar(ctx, x, 1);
    ag_tensor *root = ag_sum(ctx, ag_mul(ctx, t, c));
    assert_non_null(ag_mutable_data_ptr(t));
    assert_int_equal(ag_backward(root, NULL, NULL), 0);
    root = ag_sum(ctx, ag_mul(ctx, ag_add_scalar(ctx, x, 1), c));
    assert_non_null(ag_mutable_data_ptr(c));
    expect_rc(ag_backward(root, NULL, NULL), AG_ESTATE,
              INPLACE_MSG ": [torch.DoubleTensor [2, 3]] is at version 1; expected version 0 instead.");

    /* mean_dim saves its input (so does max); mean does not */
    t = ag_add_scalar(ctx, x, 1);
    root = ag_sum(ctx, ag_mean_dim(ctx, t, 0, false));
    assert_non_null(ag_mutable_data_ptr(t));
    expect_rc(ag_backward(root, NULL, NULL), AG_ESTATE,
              INPLACE_MSG ": [torch.DoubleTensor [2, 3]], which is output 0 of AddBackward0, is at version 1; "
                          "expected version 0 instead.");
    t = ag_add_scalar(ctx, x, 1);
    root = ag_max(ctx, t);
    assert_non_null(ag_mutable_data_ptr(t));
    expect_rc(ag_backward(root, NULL, NULL), AG_ESTATE, INPLACE_MSG);
    t = ag_add_scalar(ctx, x, 1);
    root = ag_mean(ctx, t);
    assert_non_null(ag_mutable_data_ptr(t));
    assert_int_equal(ag_backward(root, NULL, NULL), 0);

    /* exp saves its result: changing the result is caught, named as exp's */
    ag_tensor *r = ag_exp(ctx, x);
    root = ag_sum(ctx, r);
    assert_non_null(ag_mutable_data_ptr(r));
    expect_rc(ag_backward(root, NULL, NULL), AG_ESTATE,
              INPLACE_MSG ": [torch.DoubleTensor [2, 3]], which is output 0 of ExpBackward0, is at version 1");

    /* reshape is a view: changing it changes its base's version too */
    t = ag_add_scalar(ctx, x, 1);
    root = ag_sum(ctx, ag_div(ctx, x, t)); /* div saves its divisor t */
    assert_non_null(ag_mutable_data_ptr(ag_reshape(ctx, t, 1, (int64_t[]){6})));
    expect_rc(ag_backward(root, NULL, NULL), AG_ESTATE, INPLACE_MSG);
    ag_ctx_free(ctx);
}

/* ag_bmm's shape errors, word for word as PyTorch 1.13's torch.matmul gives
 * them for the same shapes: batch dimensions folded into the rows of a
 * 2-D product when one operand is 2-D, the broadcast batch otherwise. */
static void test_bmm_shape_errors_as_pytorch(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
#define BATCH2 "Expected size for first two dimensions of batch2 tensor to be: "
#define MAT "mat1 and mat2 shapes cannot be multiplied "
#define BCAST_2_3 "The size of tensor a (2) must match the size of tensor b (3) at non-singleton dimension 0"
    static const struct {
        const char *msg;
        int nda;
        int64_t a[4];
        int ndb;
        int64_t b[4];
    } cases[] = {
        {BATCH2 "[2, 4] but got: [2, 5].", 3, {2, 3, 4}, 3, {2, 5, 6}},
        {BATCH2 "[2, 4] but got: [2, 5].", 3, {1, 3, 4}, 3, {2, 5, 6}},
        {BATCH2 "[0, 4] but got: [0, 5].", 3, {0, 3, 4}, 3, {0, 5, 6}},
        {BATCH2 "[6, 4] but got: [6, 5].", 4, {2, 1, 3, 4}, 3, {3, 5, 6}},
        {BATCH2 "[6, 4] but got: [6, 5].", 4, {3, 2, 3, 4}, 3, {2, 5, 6}},
        {BCAST_2_3, 3, {2, 3, 4}, 3, {3, 5, 6}},
        {BCAST_2_3, 3, {2, 3, 4}, 3, {3, 4, 6}},
        {MAT "(12x5 and 4x3)", 2, {3, 4}, 3, {2, 5, 6}},
        {MAT "(84x5 and 4x3)", 2, {3, 4}, 4, {7, 2, 5, 6}},
        {MAT "(0x5 and 4x3)", 2, {3, 4}, 3, {0, 5, 6}},
        {MAT "(6x4 and 5x6)", 3, {2, 3, 4}, 2, {5, 6}},
        {MAT "(42x4 and 5x6)", 4, {7, 2, 3, 4}, 2, {5, 6}},
        {MAT "(0x4 and 5x6)", 3, {0, 3, 4}, 2, {5, 6}},
        {MAT "(3x4 and 5x6)", 2, {3, 4}, 2, {5, 6}},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        ag_tensor *a = ag_zeros(ctx, AG_FLOAT32, cases[i].nda, cases[i].a);
        ag_tensor *b = ag_zeros(ctx, AG_FLOAT32, cases[i].ndb, cases[i].b);
        size_t bytes = ag_ctx_bytes(ctx);
        ag_clear_error();
        assert_null(ag_bmm(ctx, a, b));
        assert_int_equal(ag_last_status(), AG_ESHAPE);
        assert_string_equal(ag_last_error(), cases[i].msg);
        assert_int_equal(ag_ctx_bytes(ctx), bytes);
    }
    ag_ctx_free(ctx);
}

/* sin, cos and log1p save their input; pow with a tensor exponent saves
 * both operands and, for the exponent's gradient, its result: a change to
 * any of them is caught, and none runs a second time. */
static void test_math_ops_saved_tensors(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = ag_rand(ctx, AG_FLOAT64, 2, (int64_t[]){2, 3});
    ag_tensor *e = ag_rand(ctx, AG_FLOAT64, 2, (int64_t[]){2, 3});
    assert_int_equal(ag_requires_grad_(x, true), 0);
    ag_tensor *(*unary[])(ag_ctx *, ag_tensor *) = {ag_sin, ag_cos, ag_log1p};
    for (size_t i = 0; i < COUNT(unary); i++) {
        ag_tensor *t = ag_add_scalar(ctx, x, 1);
        ag_tensor *root = ag_sum(ctx, unary[i](ctx, t));
        assert_int_equal(ag_backward(root, NULL, NULL), 0);
        expect_rc(ag_backward(root, NULL, NULL), AG_ESTATE, RETAIN_MSG);
        root = ag_sum(ctx, unary[i](ctx, t));
        assert_non_null(ag_mutable_data_ptr(t));
        expect_rc(ag_backward(root, NULL, NULL), AG_ESTATE, INPLACE_MSG);
    }
    ag_tensor *root = ag_sum(ctx, ag_pow(ctx, x, e));
    assert_int_equal(ag_backward(root, NULL, NULL), 0);
    expect_rc(ag_backward(root, NULL, NULL), AG_ESTATE, RETAIN_MSG);
    root = ag_sum(ctx, ag_pow(ctx, x, e));
    assert_non_null(ag_mutable_data_ptr(e));
    expect_rc(ag_backward(root, NULL, NULL), AG_ESTATE,
              INPLACE_MSG ": [torch.DoubleTensor [2, 3]] is at version 1; expected version 0 instead.");
    assert_int_equal(ag_requires_grad_(e, true), 0);
    ag_tensor *y = ag_pow(ctx, x, e);
    root = ag_sum(ctx, y);
    assert_non_null(ag_mutable_data_ptr(y));
    expect_rc(ag_backward(root, NULL, NULL), AG_ESTATE,
              INPLACE_MSG ": [torch.DoubleTensor [2, 3]], which is output 0 of PowBackward1, is at version 1");
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_math_ops_saved_tensors),
        cmocka_unit_test(test_null_tensor_keeps_first_error),
        cmocka_unit_test(test_null_context),
        cmocka_unit_test(test_dtype_mismatch),
        cmocka_unit_test(test_shape_mismatch),
        cmocka_unit_test(test_bad_dims),
        cmocka_unit_test(test_reshape_and_max_errors),
        cmocka_unit_test(test_errors_leave_nothing_behind),
        cmocka_unit_test(test_second_backward),
        cmocka_unit_test(test_inplace_change_of_saved_tensor),
        cmocka_unit_test(test_bmm_shape_errors_as_pytorch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
