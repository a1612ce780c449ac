/* dtype promotion, ag_to and the selection, joining and normalisation
 * ops: float64 finite-difference gradient checks (the gradient of
 * L = sum(op(inputs) * w) from ag_backward against central differences),
 * the points finite differences cannot judge (ties, kinks) against
 * PyTorch's definitions, and hostile arguments (NULL, bad dims and
 * indices, empty tensors with huge dimensions). */
#include "check.h"

#include <stdlib.h>

#define H 1e-6

/* The function under test: out = f(in) in ctx. */
typedef ag_tensor *(*build_fn)(ag_ctx *ctx, ag_tensor **in, const void *arg);

static ag_tensor *randn_like(ag_ctx *ctx, const ag_tensor *t) {
    int64_t shape[AG_MAX_DIMS];
    for (int d = 0; d < ag_ndim(t); d++)
        shape[d] = ag_size(t, d);
    return ag_randn(ctx, AG_FLOAT64, ag_ndim(t), shape);
}

/* Backward of L = sum(f(in) * w) against central differences for each
 * element of in[0..nin) that requires grad; label names the case. */
static void gradcheck(const char *label, build_fn f, const void *arg, ag_tensor **in, int nin, double rtol,
                      double atol) {
    ag_ctx *ctx = ag_ctx_new(), *tmp = ag_ctx_new();
    ag_tensor *out = f(ctx, in, arg);
    if (!out)
        fail_msg("%s: %s", label, ag_last_error());
    ag_tensor *w = randn_like(ctx, out);
    if (ag_backward(ag_sum(ctx, ag_mul(ctx, out, w)), NULL, NULL) != 0)
        fail_msg("%s: backward: %s", label, ag_last_error());
    for (int i = 0; i < nin; i++) {
        if (!ag_requires_grad(in[i]))
            continue;
        ag_tensor *g = ag_grad(in[i]);
        if (ag_numel(in[i]) > 0)
            assert_non_null(g);
        double *x = (double *)ag_data_ptr(in[i]);
        for (int64_t e = 0; e < ag_numel(in[i]); e++) {
            double x0 = x[e], l[2];
            bool prev = ag_set_grad_enabled(false);
            for (int s = 0; s < 2; s++) {
                x[e] = s ? x0 - H : x0 + H;
                l[s] = ag_item(ag_sum(tmp, ag_mul(tmp, f(tmp, in, arg), w)));
            }
            ag_set_grad_enabled(prev);
            x[e] = x0;
            ag_ctx_reset(tmp);
            double num = (l[0] - l[1]) / (2 * H), ana = ag_get(g, e);
            if (!(fabs(num - ana) <= atol + rtol * fabs(num)))
                fail_msg("%s: input %d element %lld: backward %.12g, finite difference %.12g", label, i, (long long)e,
                         ana, num);
        }
    }
    ag_ctx_free(tmp);
    ag_ctx_free(ctx);
}

static ag_tensor *leaf(ag_tensor *t) {
    assert_non_null(t);
    assert_int_equal(ag_requires_grad_(t, true), 0);
    return t;
}

static ag_tensor *randn64(ag_ctx *ctx, int ndim, const int64_t *shape) {
    return leaf(ag_randn(ctx, AG_FLOAT64, ndim, shape));
}

/* t is NULL (or code < 0) and the error is code with a message containing text. */
static void check_error(int code, int want, const char *text, const char *file, int line) {
    if (code != want || !strstr(ag_last_error(), text)) {
        print_error("got %d \"%s\", expected %d \"%s\"\n", code, ag_last_error(), want, text);
        _fail(file, line);
    }
    ag_clear_error();
}
#define expect_null(t, want, text) check_error((t) ? 0 : ag_last_status(), (want), (text), __FILE__, __LINE__)
#define expect_code(rc, want, text) check_error((rc), (want), (text), __FILE__, __LINE__)

/* ==== promotion and ag_to ===================================================== */

static ag_tensor *build_promoted(ag_ctx *ctx, ag_tensor **in, const void *arg) {
    (void)arg;
    /* x64 * c32 + x64 / c32: c converted to float64 exactly */
    return ag_add(ctx, ag_mul(ctx, in[0], in[1]), ag_div(ctx, in[0], in[1]));
}

static void test_promotion_gradcheck(void **state) {
    (void)state;
    ag_manual_seed(11);
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *in[2] = {randn64(ctx, 2, (int64_t[]){2, 3}), ag_rand(ctx, AG_FLOAT32, 1, (int64_t[]){3})};
    ag_add_scalar_(in[1], 0.5);
    gradcheck("x64 op c32", build_promoted, NULL, in, 2, 1e-6, 1e-7);
    ag_ctx_free(ctx);
}

static void test_promotion_result_types(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *f3 = leaf(ag_full(ctx, AG_FLOAT32, 1, (int64_t[]){3}, 1.5));
    ag_tensor *d3 = leaf(ag_full(ctx, AG_FLOAT64, 1, (int64_t[]){3}, 2.0));
    ag_tensor *f0 = leaf(ag_scalar(ctx, AG_FLOAT32, 3.0));
    ag_tensor *d0 = leaf(ag_scalar(ctx, AG_FLOAT64, 0.25));
    assert_int_equal(ag_tensor_dtype(ag_add(ctx, f3, d3)), AG_FLOAT64);
    assert_int_equal(ag_tensor_dtype(ag_mul(ctx, d3, f3)), AG_FLOAT64);
    assert_int_equal(ag_tensor_dtype(ag_mul(ctx, f3, d0)), AG_FLOAT32); /* a 0-dim tensor does not widen */
    assert_int_equal(ag_tensor_dtype(ag_sub(ctx, d0, f3)), AG_FLOAT32);
    assert_int_equal(ag_tensor_dtype(ag_div(ctx, f0, d0)), AG_FLOAT64); /* both 0-dim */
    assert_int_equal(ag_tensor_dtype(ag_maximum(ctx, f0, d3)), AG_FLOAT64);
    assert_int_equal(ag_tensor_dtype(ag_cat(ctx, (ag_tensor *[]){f3, d3}, 2, 0)), AG_FLOAT64);
    /* gradients come back in each input's dtype */
    ag_tensor *y = ag_sum(ctx, ag_mul(ctx, ag_mul(ctx, f3, d0), d3));
    assert_int_equal(ag_tensor_dtype(y), AG_FLOAT64);
    assert_int_equal(ag_backward(y, NULL, NULL), 0);
    assert_int_equal(ag_tensor_dtype(ag_grad(f3)), AG_FLOAT32);
    assert_int_equal(ag_tensor_dtype(ag_grad(d0)), AG_FLOAT64);
    assert_int_equal(ag_tensor_dtype(ag_grad(d3)), AG_FLOAT64);
    assert_true(ag_get(ag_grad(f3), 0) == 0.5);   /* d0 * d3 */
    assert_true(ag_get(ag_grad(d0), 0) == 9.0);   /* sum(f3 * d3) */
    assert_true(ag_get(ag_grad(d3), 0) == 0.375); /* f3 * d0 */
    ag_ctx_free(ctx);
}

static void test_to(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = leaf(ag_tensor_from(ctx, AG_FLOAT32, 1, (int64_t[]){3}, (float[]){1.5f, -2, 1e-30f}));
    assert_ptr_equal(ag_to(ctx, x, AG_FLOAT32), x);
    ag_tensor *y = ag_to(ctx, x, AG_FLOAT64);
    assert_int_equal(ag_tensor_dtype(y), AG_FLOAT64);
    assert_string_equal(ag_node_name(ag_grad_fn(y)), "ToCopyBackward0");
    assert_true(ag_get(y, 2) == (double)1e-30f);
    ag_tensor *z = ag_to(ctx, ag_mul_scalar(ctx, y, 1e300), AG_FLOAT32); /* overflows to inf, as PyTorch */
    assert_true(isinf(ag_get(z, 0)));
    assert_int_equal(ag_backward(ag_sum(ctx, ag_mul(ctx, y, y)), NULL, NULL), 0);
    assert_int_equal(ag_tensor_dtype(ag_grad(x)), AG_FLOAT32);
    assert_true(ag_get(ag_grad(x), 1) == -4.0);
    /* an empty tensor with a huge dimension */
    ag_tensor *e = ag_zeros(ctx, AG_FLOAT32, 2, (int64_t[]){0, INT64_MAX});
    ag_tensor *e64 = ag_to(ctx, e, AG_FLOAT64);
    assert_non_null(e64);
    assert_int_equal(ag_size(e64, 1), INT64_MAX);
    expect_null(ag_to(ctx, x, (ag_dtype)7), AG_EINVAL, "ag_to: unknown dtype 7");
    expect_null(ag_to(NULL, x, AG_FLOAT64), AG_EINVAL, "ag_to: context is NULL");
    expect_null(ag_to(ctx, NULL, AG_FLOAT64), AG_EINVAL, "ag_to");
    /* a NULL input keeps the first error */
    expect_null(ag_to(ctx, ag_to(ctx, x, (ag_dtype)-1), AG_FLOAT64), AG_EINVAL, "unknown dtype -1");
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promotion_gradcheck),
        cmocka_unit_test(test_promotion_result_types),
        cmocka_unit_test(test_to),
    };
    return cmocka_run_group_tests(tests, poison_fresh_gradients, NULL);
}
