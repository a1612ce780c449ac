/* Tensors and contexts: creation, shapes, element access, arena reset,
 * random generators and the thread-local error state. */
#include "../common/check.h"

#include "core/internal.h"

static void test_create_and_read(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    int64_t shape[] = {2, 3};
    ag_tensor *z = ag_zeros(ctx, AG_FLOAT32, 2, shape);
    assert_nonnull_ag(z);
    assert_int_equal(ag_ndim(z), 2);
    assert_int_equal(ag_size(z, 0), 2);
    assert_int_equal(ag_size(z, -1), 3);
    assert_int_equal(ag_numel(z), 6);
    assert_int_equal(ag_tensor_dtype(z), AG_FLOAT32);
    assert_values(z, 0, 0, 0, 0, 0, 0, 0);
    assert_values(ag_ones(ctx, AG_FLOAT64, 2, shape), 0, 1, 1, 1, 1, 1, 1);
    assert_values(ag_full(ctx, AG_FLOAT64, 1, (int64_t[]){2}, 2.5), 0, 2.5, 2.5);
    ag_tensor *s = ag_scalar(ctx, AG_FLOAT64, 10);
    assert_int_equal(ag_ndim(s), 0);
    assert_int_equal(ag_numel(s), 1);
    assert_true(ag_item(s) == 10.0);
    double data[] = {1, 2, 3, 4, 5, 6};
    ag_tensor *t = ag_tensor_from(ctx, AG_FLOAT64, 2, shape, data);
    data[0] = 100; /* copied */
    assert_true(ag_get(t, 0) == 1.0);
    assert_true(ag_get(t, 5) == 6.0);
    assert_true(((const double *)ag_data_ptr(t))[4] == 5.0);
    float out[6];
    assert_ok(ag_copy_to(t, out, AG_FLOAT32));
    assert_true(out[5] == 6.0f);
    ag_tensor *empty = ag_zeros(ctx, AG_FLOAT32, 2, (int64_t[]){0, 3});
    assert_nonnull_ag(empty);
    assert_int_equal(ag_numel(empty), 0);
    ag_ctx_free(ctx);
}

static void test_bad_arguments(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_clear_error();
    assert_null(ag_zeros(ctx, AG_FLOAT32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}));
    assert_int_equal(ag_last_status(), AG_EINVAL);
    assert_null(ag_zeros(ctx, AG_FLOAT32, 1, (int64_t[]){-2}));
    assert_error(AG_EINVAL, "Trying to create tensor with negative dimension -2");
    assert_null(ag_zeros(ctx, (ag_dtype)7, 1, (int64_t[]){2}));
    assert_int_equal(ag_last_status(), AG_EDTYPE);
    assert_null(ag_zeros(NULL, AG_FLOAT32, 1, (int64_t[]){2}));
    assert_int_equal(ag_last_status(), AG_EINVAL);
    assert_null(ag_tensor_from(ctx, AG_FLOAT32, 1, (int64_t[]){2}, NULL));
    assert_int_equal(ag_last_status(), AG_EINVAL);
    assert_null(ag_zeros(ctx, AG_FLOAT32, 2, NULL));
    assert_int_equal(ag_last_status(), AG_EINVAL);
    assert_null(ag_zeros(ctx, AG_FLOAT32, 3, (int64_t[]){INT64_MAX / 4, INT64_MAX / 4, 4}));
    assert_int_equal(ag_last_status(), AG_ENOMEM);

    ag_tensor *t = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){4});
    assert_int_equal(ag_size(t, 1), AG_EINVAL);
    assert_error(AG_EINVAL, "Dimension out of range (expected to be in range of [-1, 0], but got 1)");
    assert_true(isnan(ag_item(t)));
    assert_error(AG_EINVAL, "a Tensor with 4 elements cannot be converted to Scalar");
    assert_true(isnan(ag_get(t, 4)));
    assert_int_equal(ag_last_status(), AG_EINVAL);
    assert_int_equal(ag_ndim(NULL), AG_EINVAL);
    assert_int_equal(ag_numel(NULL), AG_EINVAL);
    assert_int_equal(ag_tensor_dtype(NULL), AG_DTYPE_COUNT);
    assert_null(ag_grad(NULL));
    assert_null(ag_detach(NULL));
    assert_false(ag_requires_grad(NULL));
    assert_int_equal(ag_requires_grad_(NULL, true), AG_EINVAL);
    assert_int_equal(ag_set_grad(t, ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3})), AG_ESHAPE);
    assert_error(AG_ESHAPE, "assigned grad has data of a different size");
    assert_int_equal(ag_set_grad(t, ag_ones(ctx, AG_FLOAT64, 1, (int64_t[]){4})), AG_EDTYPE);
    assert_ok(ag_set_grad(t, ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){4})));
    assert_values(ag_grad(t), 0, 1, 1, 1, 1);
    assert_ok(ag_zero_grad(t));
    assert_values(ag_grad(t), 0, 0, 0, 0, 0);
    assert_ok(ag_set_grad(t, NULL));
    assert_null(ag_grad(t));
    assert_int_equal(ag_set_num_threads(-1), AG_EINVAL);
    ag_ctx_reset(NULL);
    ag_ctx_free(NULL);
    ag_ctx_free(ctx);
}

/* The first error in a chain survives the NULLs that follow it. */
static void test_null_keeps_first_error(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_clear_error();
    ag_tensor *a = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3});
    ag_tensor *b = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){4});
    ag_tensor *r = ag_sum(ctx, ag_exp(ctx, ag_mul(ctx, a, b)));
    assert_null(r);
    assert_error(AG_ESHAPE,
                 "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 0");
    /* accessors and state setters given that NULL keep the first error too */
    assert_int_equal(ag_requires_grad_(r, true), AG_ESHAPE);
    assert_int_equal(ag_ndim(r), AG_ESHAPE);
    assert_int_equal(ag_retain_grad(r), AG_ESHAPE);
    assert_int_equal(ag_last_status(), AG_ESHAPE);
    ag_clear_error();
    assert_string_equal(ag_last_error(), "");
    assert_int_equal(ag_last_status(), AG_OK);
    assert_null(ag_sum(ctx, NULL));
    assert_int_equal(ag_last_status(), AG_EINVAL);
    assert_string_equal(ag_strerror(AG_ESHAPE), "shapes do not fit");
    ag_ctx_free(ctx);
}

static void test_reset_reuses_memory(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    const void *first = NULL;
    uint64_t calls = 0;
    for (int round = 0; round < 5; round++) {
        if (round == 2)
            calls = ag__heap_calls();
        for (int i = 0; i < 200; i++) {
            ag_tensor *t = ag_zeros(ctx, AG_FLOAT64, 1, (int64_t[]){100 + i});
            assert_nonnull_ag(t);
            if (i == 0 && round == 1)
                first = ag_data_ptr(t);
            if (i == 0 && round > 1)
                assert_ptr_equal(ag_data_ptr(t), first);
            assert_int_equal((uintptr_t)ag_data_ptr(t) % 64, 0);
        }
        assert_true(ag_ctx_bytes(ctx) > 200 * 800);
        ag_ctx_reset(ctx);
        assert_int_equal(ag_ctx_bytes(ctx), 0);
    }
    assert_int_equal(ag__heap_calls() - calls, 0);
    /* a big tensor gets its own chunk; the reset folds it into the context's
     * chunk, so a step that makes it again needs no heap call */
    for (int round = 0; round < 3; round++) {
        if (round == 2)
            calls = ag__heap_calls();
        assert_nonnull_ag(ag_zeros(ctx, AG_FLOAT32, 1, (int64_t[]){1 << 22}));
        assert_nonnull_ag(ag_zeros(ctx, AG_FLOAT32, 1, (int64_t[]){100}));
        ag_ctx_reset(ctx);
    }
    assert_int_equal(ag__heap_calls() - calls, 0);
    ag_ctx_free(ctx);
}

static void test_random(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_manual_seed(42);
    ag_tensor *u = ag_rand(ctx, AG_FLOAT32, 1, (int64_t[]){10000});
    ag_tensor *n = ag_randn(ctx, AG_FLOAT64, 1, (int64_t[]){10000});
    double su = 0, sn = 0, sn2 = 0;
    for (int i = 0; i < 10000; i++) {
        double x = ag_get(u, i);
        assert_true(x >= 0 && x < 1);
        su += x;
        sn += ag_get(n, i);
        sn2 += ag_get(n, i) * ag_get(n, i);
    }
    assert_true(fabs(su / 10000 - 0.5) < 0.02);
    assert_true(fabs(sn / 10000) < 0.05);
    assert_true(fabs(sn2 / 10000 - 1) < 0.05);
    ag_manual_seed(42);
    ag_tensor *u2 = ag_rand(ctx, AG_FLOAT32, 1, (int64_t[]){10000});
    assert_memory_equal(ag_data_ptr(u), ag_data_ptr(u2), 10000 * sizeof(float));
    ag_ctx_free(ctx);
}

static void test_settings(void **state) {
    (void)state;
    int def = ag_get_num_threads();
    assert_true(def >= 1);
    assert_ok(ag_set_num_threads(3));
    assert_int_equal(ag_get_num_threads(), 3);
    assert_ok(ag_set_num_threads(0));
    assert_int_equal(ag_get_num_threads(), def);
    ag_set_deterministic(true);
    assert_true(ag_is_deterministic());
    ag_set_deterministic(false);
    assert_false(ag_is_deterministic());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_and_read),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_null_keeps_first_error),
        cmocka_unit_test(test_reset_reuses_memory),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
