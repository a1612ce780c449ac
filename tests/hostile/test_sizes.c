/* Sizes near INT64_MAX and empty tensors with huge sizes: every product and
 * sum of sizes is checked (PyTorch's messages where it has one), and an
 * empty tensor costs nothing whatever its sizes, forward and backward.
 * A loop over the rows of an empty tensor (2^62 of them here) would not
 * end before the test's timeout. */
#include "hostile.h"

#include <stdlib.h>

static int setup(void **state) {
    *state = ag_ctx_new();
    ag_clear_error();
    return *state ? 0 : -1;
}

static int teardown(void **state) {
    ag_ctx_free(*state);
    return 0;
}

/* sum(y) backward from y; x, a leaf, gets a .grad of its own shape. */
static void backward_to(ag_ctx *ctx, ag_tensor *y, ag_tensor *x) {
    assert_nonnull_ag(y);
    assert_ok(ag_backward(ag_sum(ctx, y), NULL, NULL));
    ag_tensor *g = ag_grad(x);
    assert_nonnull_ag(g);
    assert_int_equal(ag_ndim(g), ag_ndim(x));
    for (int d = 0; d < ag_ndim(x); d++)
        assert_int_equal(ag_size(g, d), ag_size(x, d));
    assert_ok(ag_set_grad(x, NULL));
}

static void test_shape_overflow(void **state) {
    ag_ctx *ctx = *state;
    size_t before = ag_ctx_bytes(ctx);
    expect_error(ag_zeros(ctx, AG_FLOAT32, 2, (int64_t[]){P62, P62}), AG_ENOMEM,
                 "Storage size calculation overflowed with sizes=[4611686018427387904, 4611686018427387904]");
    expect_error(ag_zeros(ctx, AG_FLOAT32, 3, (int64_t[]){P62, P62, 0}), AG_ENOMEM,
                 "Storage size calculation overflowed with sizes=[4611686018427387904, 4611686018427387904, 0]");
    /* elements that fit, bytes that do not (PyTorch's limit: INT64_MAX bytes) */
    expect_error(ag_zeros(ctx, AG_FLOAT64, 1, (int64_t[]){(int64_t)1 << 60}), AG_ENOMEM,
                 "Storage size calculation overflowed with sizes=[1152921504606846976]");
    expect_error(ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){3, -1}), AG_EINVAL,
                 "Trying to create tensor with negative dimension -1: [3, -1]");
    expect_error(ag_full(ctx, AG_FLOAT32, 1, (int64_t[]){INT64_MIN}, 1), AG_EINVAL,
                 "Trying to create tensor with negative dimension -9223372036854775808: [-9223372036854775808]");
    assert_int_equal(ag_ctx_bytes(ctx), before);
    /* leading products that fit make a valid empty tensor */
    ag_tensor *e = ag_zeros(ctx, AG_FLOAT32, 3, (int64_t[]){0, P62, P62});
    expect_shape(e, 0, P62, P62);
    assert_int_equal(ag_numel(e), 0);
}

/* 274177 * 67280421310721 is 2^64 + 1: wrapped, it is the one element. */
static void test_reshape_overflow(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *one = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){1});
    expect_error(ag_reshape(ctx, one, 2, (int64_t[]){274177, 67280421310721}), AG_ESHAPE,
                 "shape '[274177, 67280421310721]' is invalid for input of size 1");
    expect_error(ag_reshape(ctx, one, 3, (int64_t[]){-1, 274177, 67280421310721}), AG_ESHAPE,
                 "shape '[-1, 274177, 67280421310721]' is invalid for input of size 1");
    ag_tensor *six = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){6});
    expect_error(ag_reshape(ctx, six, 3, (int64_t[]){-1, P62, P62}), AG_ESHAPE,
                 "shape '[-1, 4611686018427387904, 4611686018427387904]' is invalid for input of size 6");
    expect_error(ag_reshape(ctx, six, 3, (int64_t[]){P62, 4, 0}), AG_ESHAPE,
                 "shape '[4611686018427387904, 4, 0]' is invalid for input of size 6");

    ag_tensor *none = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){0});
    expect_shape(ag_reshape(ctx, none, 3, (int64_t[]){0, P62, P62}), 0, P62, P62);
    expect_error(ag_reshape(ctx, none, 3, (int64_t[]){P62, P62, 0}), AG_ENOMEM,
                 "numel: integer multiplication overflow");
    expect_error(ag_reshape(ctx, none, 3, (int64_t[]){P62, -1, 0}), AG_ESHAPE,
                 "cannot reshape tensor of 0 elements into shape [4611686018427387904, -1, 0] because the "
                 "unspecified dimension size -1 can be any value and is ambiguous");
}

static void test_transpose_empty_huge(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = empty_leaf(ctx, AG_FLOAT32, 3, (int64_t[]){0, P32, P32});
    ag_tensor *last2 = ag_transpose(ctx, x, 1, 2);
    expect_shape(last2, 0, P32, P32);
    backward_to(ctx, last2, x);
    ag_tensor *first2 = ag_transpose(ctx, x, 0, 1);
    expect_shape(first2, P32, 0, P32);
    backward_to(ctx, ag_transpose(ctx, first2, 1, 0), x);
    /* a view whose sizes multiply past INT64_MAX, refused as PyTorch's
     * x.transpose(0, 2) is */
    expect_error(ag_transpose(ctx, x, 0, 2), AG_ENOMEM, "numel: integer multiplication overflow");
}

static void test_narrow_bounds(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *a = ag_tensor_from(ctx, AG_FLOAT64, 1, (int64_t[]){5}, (double[]){1, 2, 3, 4, 5});
    expect_error(ag_narrow(ctx, a, 0, 1, INT64_MAX), AG_EINVAL,
                 "start (1) + length (9223372036854775807) exceeds dimension size (5).");
    expect_error(ag_narrow(ctx, a, 0, -1, INT64_MAX), AG_EINVAL,
                 "start (4) + length (9223372036854775807) exceeds dimension size (5).");
    expect_error(ag_narrow(ctx, a, 0, 2, INT64_MIN), AG_EINVAL,
                 "start (2) + length (-9223372036854775808) exceeds dimension size (5).");
    expect_error(ag_narrow(ctx, a, 0, 6, 0), AG_EINVAL,
                 "Dimension out of range (expected to be in range of [-5, 4], but got 6)");
    expect_error(ag_narrow(ctx, a, 0, INT64_MIN, 0), AG_EINVAL,
                 "Dimension out of range (expected to be in range of [-5, 4], but got -9223372036854775808)");
    expect_shape(ag_narrow(ctx, a, 0, 5, 0), 0);
    ag_tensor *last = ag_narrow(ctx, a, 0, -1, 1);
    expect_shape(last, 1);
    assert_true(ag_item(last) == ag_get(a, 4));
    ag_tensor *none = ag_zeros(ctx, AG_FLOAT64, 1, (int64_t[]){0});
    expect_shape(ag_narrow(ctx, none, 0, -1, 0), 0);
    expect_error(ag_narrow(ctx, none, 0, 1, 0), AG_EINVAL,
                 "Dimension out of range (expected to be in range of [-1, 0], but got 1)");
}

static void test_narrow_empty_huge(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = empty_leaf(ctx, AG_FLOAT64, 3, (int64_t[]){P60, 3, 0});
    ag_tensor *y = ag_narrow(ctx, x, 1, 1, 2);
    expect_shape(y, P60, 2, 0);
    backward_to(ctx, y, x);
}

static void test_cat_overflow(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *e = ag_zeros(ctx, AG_FLOAT32, 2, (int64_t[]){0, P62});
    expect_error(ag_cat(ctx, (ag_tensor *[]){e, e}, 2, 1), AG_ENOMEM,
                 "torch.cat(): the sizes along dimension 1 add up to more than 9223372036854775807");
    expect_error(ag_cat(ctx, (ag_tensor *[]){e, e, e}, 3, -1), AG_ENOMEM,
                 "torch.cat(): the sizes along dimension 1 add up to more than 9223372036854775807");
    expect_shape(ag_cat(ctx, (ag_tensor *[]){e, e, e}, 3, 0), 0, P62);
}

static void test_cat_empty_huge(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = empty_leaf(ctx, AG_FLOAT32, 3, (int64_t[]){P60, 3, 0});
    ag_tensor *y = ag_cat(ctx, (ag_tensor *[]){x, x}, 2, 1);
    expect_shape(y, P60, 6, 0);
    backward_to(ctx, y, x);
}

static void test_index_select_empty_huge(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = empty_leaf(ctx, AG_FLOAT32, 3, (int64_t[]){P60, 3, 0});
    ag_tensor *y = ag_index_select(ctx, x, 1, (int64_t[]){0, 2, 2}, 3);
    expect_shape(y, P60, 3, 0);
    backward_to(ctx, y, x);
    expect_error(ag_index_select(ctx, x, 1, (int64_t[]){3}, 1), AG_EINVAL, "index out of range in self");
    ag_tensor *w = empty_leaf(ctx, AG_FLOAT64, 2, (int64_t[]){P62, 0});
    ag_tensor *e = ag_embedding(ctx, w, (int64_t[]){0, P62 - 1}, 2);
    expect_shape(e, 2, 0);
    backward_to(ctx, e, w);
}

static void test_bmm_empty_huge(void **state) {
    ag_ctx *ctx = *state;
    /* 2^62 matrices of size 0 x 0, from broadcast batch dimensions */
    ag_tensor *a = empty_leaf(ctx, AG_FLOAT32, 4, (int64_t[]){(int64_t)1 << 31, 1, 0, 3});
    ag_tensor *b = empty_leaf(ctx, AG_FLOAT32, 4, (int64_t[]){1, (int64_t)1 << 31, 3, 0});
    ag_tensor *y = ag_bmm(ctx, a, b);
    expect_shape(y, (int64_t)1 << 31, (int64_t)1 << 31, 0, 0);
    assert_ok(ag_backward(ag_sum(ctx, y), NULL, NULL));
    expect_shape(ag_grad(a), (int64_t)1 << 31, 1, 0, 3);
    expect_shape(ag_grad(b), 1, (int64_t)1 << 31, 3, 0);
    /* an inner size of 0: a product of nothing is zeros */
    ag_tensor *p = ag_bmm(ctx, ag_zeros(ctx, AG_FLOAT64, 3, (int64_t[]){2, 3, 0}),
                          ag_zeros(ctx, AG_FLOAT64, 3, (int64_t[]){2, 0, 4}));
    expect_shape(p, 2, 3, 4);
    for (int64_t i = 0; i < ag_numel(p); i++)
        assert_true(ag_get(p, i) == 0.0);
    expect_error(ag_bmm(ctx, ag_zeros(ctx, AG_FLOAT32, 3, (int64_t[]){P61, 2, 0}),
                        ag_zeros(ctx, AG_FLOAT32, 3, (int64_t[]){P61, 0, 2})),
                 AG_ENOMEM, "Storage size calculation overflowed with sizes=[2305843009213693952, 2, 2]");
}

/* PyTorch: linear of (..., 0) features is the bias, broadcast over the rows. */
static void test_linear_zero_features(void **state) {
    ag_ctx *ctx = *state;
    for (int dt = AG_FLOAT32; dt <= AG_FLOAT64; dt++) {
        ag_tensor *x = empty_leaf(ctx, dt, 3, (int64_t[]){2, 3, 0});
        ag_tensor *w = empty_leaf(ctx, dt, 2, (int64_t[]){2, 0});
        ag_tensor *b = ag_full(ctx, dt, 1, (int64_t[]){2}, 1.5);
        assert_nonnull_ag(b);
        if (dt == AG_FLOAT32)
            ((float *)ag_mutable_data_ptr(b))[1] = -2.25f;
        else
            ((double *)ag_mutable_data_ptr(b))[1] = -2.25;
        assert_ok(ag_requires_grad_(b, true));
        ag_tensor *y = ag_linear(ctx, x, w, b);
        expect_shape(y, 2, 3, 2);
        for (int64_t i = 0; i < ag_numel(y); i++)
            assert_true(ag_get(y, i) == ag_get(b, i % 2));
        ag_tensor *nob = ag_linear(ctx, x, w, NULL);
        expect_shape(nob, 2, 3, 2);
        for (int64_t i = 0; i < ag_numel(nob); i++)
            assert_true(ag_get(nob, i) == 0.0);
        assert_ok(ag_backward(ag_sum(ctx, y), NULL, NULL));
        /* d(sum)/db: one per row of x */
        assert_true(ag_get(ag_grad(b), 0) == 6.0 && ag_get(ag_grad(b), 1) == 6.0);
        expect_shape(ag_grad(x), 2, 3, 0);
        expect_shape(ag_grad(w), 2, 0);
    }
    /* and no rows at all, however many there are */
    ag_tensor *x = ag_zeros(ctx, AG_FLOAT32, 2, (int64_t[]){P62, 0});
    expect_shape(ag_linear(ctx, x, ag_zeros(ctx, AG_FLOAT32, 2, (int64_t[]){0, 0}), NULL), P62, 0);
}

static void test_reduce_empty(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = empty_leaf(ctx, AG_FLOAT32, 3, (int64_t[]){0, P32, P32});
    expect_error(ag_sum_dim(ctx, x, 0, false), AG_ENOMEM,
                 "Storage size calculation overflowed with sizes=[4294967296, 4294967296]");
    ag_tensor *s = ag_sum_dim(ctx, x, 1, true);
    expect_shape(s, 0, 1, P32);
    backward_to(ctx, s, x);
    ag_tensor *m = ag_mean_dim(ctx, x, -1, false);
    expect_shape(m, 0, P32);
    backward_to(ctx, m, x);
    /* sums of nothing are 0, means nan, as in PyTorch */
    ag_tensor *z = ag_zeros(ctx, AG_FLOAT64, 2, (int64_t[]){3, 0});
    ag_tensor *zs = ag_sum_dim(ctx, z, 1, false), *zm = ag_mean_dim(ctx, z, 1, false);
    expect_shape(zs, 3);
    expect_shape(zm, 3);
    for (int i = 0; i < 3; i++)
        assert_true(ag_get(zs, i) == 0.0 && isnan(ag_get(zm, i)));
    expect_shape(ag_sum_dim(ctx, z, 0, false), 0);
}

static void test_expand_overflow(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *one = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){1});
    expect_error(ag_expand(ctx, one, 2, (int64_t[]){P62, P62}), AG_ENOMEM, "numel: integer multiplication overflow");
    ag_tensor *x = empty_leaf(ctx, AG_FLOAT32, 3, (int64_t[]){0, 1, P32});
    ag_tensor *y = ag_expand(ctx, x, 4, (int64_t[]){2, 0, P32, -1});
    expect_shape(y, 2, 0, P32, P32);
    backward_to(ctx, y, x);
}

static void test_print_empty_huge(void **state) {
    ag_ctx *ctx = *state;
    char *s = ag_to_string(ag_zeros(ctx, AG_FLOAT32, 3, (int64_t[]){0, P32, P32}));
    assert_nonnull_ag(s);
    assert_string_equal(s, "tensor([], size=(0, 4294967296, 4294967296))");
    free(s);
    ag_tensor *t = ag_zeros(ctx, AG_FLOAT64, 8, (int64_t[]){INT64_MAX, 0, INT64_MAX, INT64_MAX, 1, 2, 3, INT64_MAX});
    s = ag_to_string(t);
    assert_nonnull_ag(s);
    /* as PyTorch 1.13 prints it, each suffix on a line of its own */
    assert_string_equal(s, "tensor([],\n       size=(9223372036854775807, 0, 9223372036854775807, "
                           "9223372036854775807, 1, 2, 3, 9223372036854775807),\n       dtype=torch.float64)");
    free(s);
}

/* Products of nothing along a huge inner size: (0, 2^62) @ (2^62, 0) is
 * (0, 0), and its gradients (0, 2^62) and (2^62, 0) are empty: nothing
 * walks the 2^62 columns, forward or backward. The same for linear. */
static void test_matmul_empty_huge_inner(void **state) {
    ag_ctx *ctx = *state;
    for (int dt = AG_FLOAT32; dt <= AG_FLOAT64; dt++) {
        ag_tensor *a = empty_leaf(ctx, dt, 2, (int64_t[]){0, P62});
        ag_tensor *b = empty_leaf(ctx, dt, 2, (int64_t[]){P62, 0});
        ag_tensor *y = ag_matmul(ctx, a, b);
        expect_shape(y, 0, 0);
        assert_ok(ag_backward(ag_sum(ctx, y), NULL, NULL));
        expect_shape(ag_grad(a), 0, P62);
        expect_shape(ag_grad(b), P62, 0);
        ag_tensor *w = empty_leaf(ctx, dt, 2, (int64_t[]){0, P62});
        ag_tensor *l = ag_linear(ctx, a, w, NULL);
        expect_shape(l, 0, 0);
        assert_ok(ag_backward(ag_sum(ctx, l), NULL, NULL));
        expect_shape(ag_grad(w), 0, P62);
        ag_tensor *x = empty_leaf(ctx, dt, 3, (int64_t[]){2, 0, P61});
        ag_tensor *m = ag_bmm(ctx, x, ag_transpose(ctx, x, 1, 2));
        expect_shape(m, 2, 0, 0);
        backward_to(ctx, m, x);
    }
}

typedef ag_tensor *(*unary_fn)(ag_ctx *, ag_tensor *);

static ag_tensor *op_add(ag_ctx *c, ag_tensor *x) { return ag_add(c, x, ag_scalar(c, AG_FLOAT64, 1)); }
static ag_tensor *op_mul(ag_ctx *c, ag_tensor *x) { return ag_mul(c, x, x); }
static ag_tensor *op_div(ag_ctx *c, ag_tensor *x) { return ag_div(c, ag_scalar(c, AG_FLOAT64, 1), x); }
static ag_tensor *op_sub(ag_ctx *c, ag_tensor *x) { return ag_sub(c, x, ag_ones(c, AG_FLOAT64, 1, (int64_t[]){1})); }
static ag_tensor *op_pow(ag_ctx *c, ag_tensor *x) { return ag_pow_scalar(c, x, 3); }
static ag_tensor *op_adds(ag_ctx *c, ag_tensor *x) { return ag_add_scalar(c, x, 2); }
static ag_tensor *op_muls(ag_ctx *c, ag_tensor *x) { return ag_mul_scalar(c, x, 2); }
static ag_tensor *op_clamp(ag_ctx *c, ag_tensor *x) { return ag_clamp(c, x, -1, 1); }
static ag_tensor *op_softmax(ag_ctx *c, ag_tensor *x) { return ag_softmax(c, x, 0); }
static ag_tensor *op_log_softmax(ag_ctx *c, ag_tensor *x) { return ag_log_softmax(c, x, -1); }
static ag_tensor *op_maximum(ag_ctx *c, ag_tensor *x) { return ag_maximum(c, x, ag_scalar(c, AG_FLOAT64, 0)); }
static ag_tensor *op_mse(ag_ctx *c, ag_tensor *x) { return ag_mse_loss(c, x, ag_clone(c, x)); }
static ag_tensor *op_reshape(ag_ctx *c, ag_tensor *x) { return ag_reshape(c, x, 3, (int64_t[]){P32, 0, P32}); }
static ag_tensor *op_sum_dim(ag_ctx *c, ag_tensor *x) { return ag_sum_dim(c, x, 2, false); }
static ag_tensor *op_mean(ag_ctx *c, ag_tensor *x) { return ag_mean(c, x); }
static ag_tensor *op_matmul(ag_ctx *c, ag_tensor *x) {
    return ag_matmul(c, ag_reshape(c, x, 2, (int64_t[]){0, P32}), ag_zeros(c, AG_FLOAT64, 2, (int64_t[]){P32, 0}));
}

/* Every op on an empty tensor with sizes whose trailing products overflow:
 * a result at once, and a backward that reaches the leaf. */
static void test_every_op_on_empty_huge(void **state) {
    ag_ctx *ctx = *state;
    const unary_fn ops[] = {ag_neg,     ag_sqrt,  ag_exp,   ag_log,     ag_tanh,        ag_sigmoid, ag_relu,
                            ag_abs,     ag_clone, op_add,   op_mul,     op_div,         op_sub,     op_pow,
                            op_adds,    op_muls,  op_clamp, op_softmax, op_log_softmax, op_maximum, op_mse,
                            op_reshape, ag_sum,   op_mean,  op_sum_dim, op_matmul};
    ag_tensor *x = empty_leaf(ctx, AG_FLOAT64, 3, (int64_t[]){0, P32, P32});
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        ag_tensor *y = ops[i](ctx, x);
        if (!y)
            print_error("op %zu: %s\n", i, ag_last_error());
        backward_to(ctx, y, x);
    }
    /* in place, broadcasting a scalar over nothing */
    ag_tensor *t = ag_zeros(ctx, AG_FLOAT64, 3, (int64_t[]){0, P32, P32});
    assert_ok(ag_add_(t, ag_scalar(ctx, AG_FLOAT64, 1), 2));
    assert_ok(ag_mul_(t, ag_zeros(ctx, AG_FLOAT64, 3, (int64_t[]){0, 1, 1})));
    assert_ok(ag_fill_(t, 1));
    float out[1];
    assert_ok(ag_copy_to(t, out, AG_FLOAT32));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shape_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reshape_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transpose_empty_huge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_narrow_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_narrow_empty_huge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cat_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cat_empty_huge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_select_empty_huge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bmm_empty_huge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_linear_zero_features, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reduce_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expand_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_print_empty_huge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_matmul_empty_huge_inner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_op_on_empty_huge, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
