/* Views: which ops return them (include/agrad.h says at each declaration),
 * their strides, that every op reads them right (against the same op on a
 * contiguous copy), that gradients flow through them to their base
 * (float64 finite differences), and the lifetime rule across contexts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "agrad.h"
#include "../common/check.h"

enum { VIEW, COPY };

/* A write into a (contiguous) is seen through a view r, with the shared
 * version counter; a copy sees neither. */
static void check_alias(ag_tensor *a, ag_tensor *r, int kind, const char *op) {
    if (!r)
        fail_msg("%s: %s", op, ag_last_error());
    double before = ag_get(r, 0);
    uint32_t version = ag_version(r);
    float *d = ag_mutable_data_ptr(a);
    assert_non_null(d);
    d[0] = (float)(before + 42.0);
    if (kind == VIEW && (ag_get(r, 0) != (double)d[0] || ag_version(r) == version))
        fail_msg("%s should return a view: result %g, version %u -> %u", op, ag_get(r, 0), version, ag_version(r));
    if (kind == COPY && (ag_get(r, 0) != before || ag_version(r) != version))
        fail_msg("%s should return a copy: result %g (was %g), version %u -> %u", op, ag_get(r, 0), before, version,
                 ag_version(r));
}

static void test_views_and_copies_as_documented(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    int64_t s23[2] = {2, 3};
    ag_tensor *a = ag_randn(ctx, AG_FLOAT32, 2, s23);
    check_alias(a, ag_reshape(ctx, a, 1, (int64_t[]){6}), VIEW, "ag_reshape");
    check_alias(a, ag_detach(a), VIEW, "ag_detach");
    check_alias(a, ag_transpose(ctx, a, 0, 1), VIEW, "ag_transpose");
    check_alias(a, ag_narrow(ctx, a, 0, 0, 1), VIEW, "ag_narrow");
    check_alias(a, ag_narrow(ctx, a, 1, 0, 2), VIEW, "ag_narrow");
    check_alias(a, ag_select(ctx, a, 1, 0), VIEW, "ag_select");
    check_alias(a, ag_contiguous(ctx, a), VIEW, "ag_contiguous of a contiguous tensor");
    ag_tensor *col = ag_randn(ctx, AG_FLOAT32, 2, (int64_t[]){2, 1});
    check_alias(col, ag_expand(ctx, col, 2, (int64_t[]){2, 4}), VIEW, "ag_expand");
    check_alias(a, ag_clone(ctx, a), COPY, "ag_clone");
    check_alias(a, ag_contiguous(ctx, ag_transpose(ctx, a, 0, 1)), COPY, "ag_contiguous of a transpose");
    check_alias(a, ag_reshape(ctx, ag_transpose(ctx, a, 0, 1), 1, (int64_t[]){6}), COPY, "ag_reshape of a transpose");
    check_alias(a, ag_index_select(ctx, a, 0, (const int64_t[]){0}, 1), COPY, "ag_index_select");
    check_alias(a, ag_cat(ctx, (ag_tensor *[]){a, a}, 2, 0), COPY, "ag_cat");
    ag_ctx_free(ctx);
}

static ag_tensor *arange(ag_ctx *ctx, int ndim, const int64_t *shape) {
    ag_tensor *t = ag_zeros(ctx, AG_FLOAT64, ndim, shape);
    double *d = ag_mutable_data_ptr(t);
    for (int64_t i = 0; i < ag_numel(t); i++)
        d[i] = (double)i;
    return t;
}

static void expect_strides(const ag_tensor *t, int ndim, const int64_t *want, bool contiguous) {
    assert_non_null(t);
    assert_int_equal(ag_ndim(t), ndim);
    for (int d = 0; d < ndim; d++)
        assert_int_equal(ag_stride(t, d), want[d]);
    assert_int_equal(ag_is_contiguous(t), contiguous);
}

/* The strides PyTorch gives the same views (x = arange(24).view(2, 3, 4)). */
static void test_strides(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = arange(ctx, 3, (int64_t[]){2, 3, 4});
    expect_strides(x, 3, (int64_t[]){12, 4, 1}, true);
    ag_tensor *t = ag_transpose(ctx, x, 0, 2);
    expect_strides(t, 3, (int64_t[]){1, 4, 12}, false);
    assert_int_equal(ag_get(t, 1), 12.0); /* t[0, 0, 1] = x[1, 0, 0] */
    expect_strides(ag_narrow(ctx, x, 0, 1, 1), 3, (int64_t[]){12, 4, 1}, true);
    ag_tensor *n = ag_narrow(ctx, x, 2, 1, 2);
    expect_strides(n, 3, (int64_t[]){12, 4, 1}, false);
    assert_int_equal(ag_get(n, 0), 1.0);
    assert_int_equal(ag_get(n, 5), 10.0); /* n[0, 2, 1] = x[0, 2, 2] */
    ag_tensor *s = ag_select(ctx, x, 1, 2);
    expect_strides(s, 2, (int64_t[]){12, 1}, false);
    assert_int_equal(ag_get(s, 4), 20.0); /* x[1, 2, 0] */
    ag_tensor *e = ag_expand(ctx, ag_select(ctx, x, 2, 3), 3, (int64_t[]){5, 2, 3});
    expect_strides(e, 3, (int64_t[]){0, 12, 4}, false);
    assert_int_equal(ag_get(e, 6 * 4 + 5), 23.0);
    /* a reshape that the strides allow is a view, one that they do not a copy */
    ag_tensor *r = ag_reshape(ctx, ag_transpose(ctx, x, 1, 2), 4, (int64_t[]){2, 2, 2, 3});
    expect_strides(r, 4, (int64_t[]){12, 2, 1, 4}, false);
    ag_tensor *c = ag_reshape(ctx, ag_transpose(ctx, x, 1, 2), 1, (int64_t[]){24});
    expect_strides(c, 1, (int64_t[]){1}, true);
    assert_int_equal(ag_get(c, 1), 4.0);
    /* 0-dim and negative dims */
    ag_tensor *z = ag_select(ctx, ag_select(ctx, ag_select(ctx, x, 0, -1), 0, -1), 0, -1);
    assert_int_equal(ag_ndim(z), 0);
    assert_int_equal(ag_item(z), 23.0);
    assert_int_equal(ag_stride(z, 0), 1);
    assert_int_equal(ag_stride(x, -1), 1);
    assert_int_equal(ag_stride(x, 3), AG_EINVAL);
    ag_ctx_free(ctx);
}

static void test_data_access(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = arange(ctx, 2, (int64_t[]){2, 3});
    ag_tensor *t = ag_transpose(ctx, x, 0, 1);
    assert_null(ag_data_ptr(t));
    assert_int_equal(ag_last_status(), AG_EINVAL);
    assert_non_null(strstr(ag_last_error(), "ag_contiguous"));
    assert_null(ag_mutable_data_ptr(t));
    ag_clear_error();
    double got[6];
    float gotf[6];
    assert_int_equal(ag_copy_to(t, got, AG_FLOAT64), 0);
    assert_int_equal(ag_copy_to(t, gotf, AG_FLOAT32), 0);
    const double want[6] = {0, 3, 1, 4, 2, 5};
    for (int i = 0; i < 6; i++) {
        assert_true(got[i] == want[i]);
        assert_true(gotf[i] == (float)want[i]);
    }
    ag_tensor *c = ag_contiguous(ctx, t);
    assert_true(ag_is_contiguous(c));
    const double *cd = ag_data_ptr(c);
    assert_non_null(cd);
    assert_memory_equal(cd, want, sizeof want);
    /* a contiguous view that starts inside its base's storage */
    ag_tensor *row = ag_select(ctx, x, 0, 1);
    const double *rd = ag_data_ptr(row);
    assert_non_null(rd);
    assert_true(rd[0] == 3.0 && rd[2] == 5.0);
    assert_null(ag_is_contiguous(NULL) ? x : NULL);
    ag_ctx_free(ctx);
}

/* Writes through a view under no_grad reach the base (in-place ops walk
 * the view's strides), and a view of a view is a view of the base. */
static void test_writes_through_views(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = arange(ctx, 2, (int64_t[]){3, 4});
    ag_tensor *col = ag_select(ctx, ag_transpose(ctx, x, 0, 1), 0, 2); /* x[:, 2] */
    uint32_t v0 = ag_version(x);
    assert_int_equal(ag_fill_(col, -1.0), 0);
    assert_true(ag_version(x) == v0 + 1);
    for (int64_t i = 0; i < 12; i++)
        assert_true(ag_get(x, i) == (i % 4 == 2 ? -1.0 : (double)i));
    ag_tensor *sub = ag_narrow(ctx, ag_narrow(ctx, x, 0, 1, 2), 1, 1, 2); /* x[1:3, 1:3] */
    ag_tensor *ones = ag_ones(ctx, AG_FLOAT64, 1, (int64_t[]){2});
    assert_int_equal(ag_add_(sub, ones, 10.0), 0);
    assert_true(ag_get(x, 5) == 15.0 && ag_get(x, 6) == 9.0 && ag_get(x, 9) == 19.0 && ag_get(x, 10) == 9.0);
    assert_true(ag_get(x, 4) == 4.0 && ag_get(x, 7) == 7.0 && ag_get(x, 1) == 1.0);
    ag_ctx_free(ctx);
}

/* Every family on views equals the same op on contiguous copies. */
static void test_ops_read_views(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_manual_seed(7);
    ag_tensor *x = ag_randn(ctx, AG_FLOAT64, 3, (int64_t[]){3, 4, 5});
    ag_tensor *v = ag_transpose(ctx, ag_narrow(ctx, x, 2, 1, 3), 0, 2); /* (3, 4, 3), strided */
    ag_tensor *c = ag_contiguous(ctx, v);
    assert_false(ag_is_contiguous(v));
    ag_tensor *m = ag_select(ctx, x, 0, 1); /* (4, 5) */
    ag_tensor *mt = ag_transpose(ctx, m, 0, 1), *mtc = ag_contiguous(ctx, mt);
    ag_tensor *row = ag_expand(ctx, ag_select(ctx, m, 1, 0), 2, (int64_t[]){3, 4});
    ag_tensor *rowc = ag_contiguous(ctx, row);
    struct {
        const char *what;
        ag_tensor *got, *want;
    } cases[] = {
        {"add", ag_add(ctx, v, v), ag_add(ctx, c, c)},
        {"mul bcast", ag_mul(ctx, v, ag_select(ctx, v, 0, 1)), ag_mul(ctx, c, ag_select(ctx, c, 0, 1))},
        {"exp", ag_exp(ctx, v), ag_exp(ctx, c)},
        {"tanh", ag_tanh(ctx, v), ag_tanh(ctx, c)},
        {"sum_dim", ag_sum_dim(ctx, v, 1, false), ag_sum_dim(ctx, c, 1, false)},
        {"softmax", ag_softmax(ctx, v, 2), ag_softmax(ctx, c, 2)},
        {"matmul", ag_matmul(ctx, mt, m), ag_matmul(ctx, mtc, m)},
        {"bmm", ag_bmm(ctx, v, ag_transpose(ctx, v, 1, 2)),
         ag_bmm(ctx, c, ag_contiguous(ctx, ag_transpose(ctx, c, 1, 2)))},
        {"linear", ag_linear(ctx, row, mt, NULL), ag_linear(ctx, rowc, mtc, NULL)},
        {"cat", ag_cat(ctx, (ag_tensor *[]){v, c}, 2, 1), ag_cat(ctx, (ag_tensor *[]){c, c}, 2, 1)},
        {"index_select", ag_index_select(ctx, v, 2, (const int64_t[]){2, 0}, 2),
         ag_index_select(ctx, c, 2, (const int64_t[]){2, 0}, 2)},
        {"clamp", ag_clamp(ctx, row, -0.5, 0.5), ag_clamp(ctx, rowc, -0.5, 0.5)},
        {"maximum", ag_maximum(ctx, row, ag_select(ctx, v, 2, 1)), ag_maximum(ctx, rowc, ag_select(ctx, c, 2, 1))},
        {"max", ag_max(ctx, v), ag_max(ctx, c)},
        {"mse", ag_mse_loss(ctx, row, ag_select(ctx, v, 2, 0)), ag_mse_loss(ctx, rowc, ag_select(ctx, c, 2, 0))},
        {"clone", ag_clone(ctx, v), c},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!cases[i].got || !cases[i].want)
            fail_msg("%s: %s", cases[i].what, ag_last_error());
        assert_tensor_close_msg(cases[i].got, cases[i].want, 0, 0, cases[i].what);
    }
    ag_ctx_free(ctx);
}

/* ---- Gradients through views, against central differences in float64 */

typedef ag_tensor *(*view_fn)(ag_ctx *ctx, ag_tensor *x);

static ag_tensor *f_narrow_transpose(ag_ctx *ctx, ag_tensor *x) {
    ag_tensor *v = ag_transpose(ctx, ag_narrow(ctx, x, 1, 1, 3), 0, 1);
    return ag_sum(ctx, ag_mul(ctx, ag_exp(ctx, v), v));
}

static ag_tensor *f_select_expand(ag_ctx *ctx, ag_tensor *x) {
    ag_tensor *row = ag_select(ctx, x, 0, 2);
    ag_tensor *e = ag_expand(ctx, row, 2, (int64_t[]){3, 5});
    ag_tensor *col = ag_reshape(ctx, ag_narrow(ctx, ag_select(ctx, x, 1, -1), 0, 1, 3), 2, (int64_t[]){3, 1});
    return ag_sum(ctx, ag_tanh(ctx, ag_mul(ctx, e, col)));
}

static ag_tensor *f_reshape_matmul(ag_ctx *ctx, ag_tensor *x) {
    ag_tensor *t = ag_transpose(ctx, x, 0, 1);                                        /* (5, 4) */
    ag_tensor *r = ag_reshape(ctx, t, 2, (int64_t[]){10, 2});                         /* a copy */
    ag_tensor *v = ag_reshape(ctx, ag_narrow(ctx, x, 0, 0, 2), 2, (int64_t[]){2, 5}); /* a view */
    return ag_sum(ctx, ag_sigmoid(ctx, ag_matmul(ctx, r, v)));
}

static double eval(view_fn f, ag_tensor *x) {
    ag_ctx *tmp = ag_ctx_new();
    double v = ag_item(f(tmp, x));
    ag_ctx_free(tmp);
    return v;
}

static void gradcheck_view(view_fn f, const char *what) {
    ag_ctx *ctx = ag_ctx_new();
    ag_manual_seed(3);
    ag_tensor *x = ag_randn(ctx, AG_FLOAT64, 2, (int64_t[]){4, 5});
    assert_int_equal(ag_requires_grad_(x, true), 0);
    ag_tensor *loss = f(ctx, x);
    if (!loss || ag_backward(loss, NULL, NULL))
        fail_msg("%s: %s", what, ag_last_error());
    const ag_tensor *g = ag_grad(x);
    assert_non_null(g);
    bool was = ag_set_grad_enabled(false);
    for (int64_t i = 0; i < ag_numel(x); i++) {
        double *d = ag_mutable_data_ptr(x), x0 = d[i], h = 1e-6;
        d[i] = x0 + h;
        double up = eval(f, x);
        d[i] = x0 - h;
        double down = eval(f, x);
        d[i] = x0;
        double fd = (up - down) / (2 * h), an = ag_get(g, i);
        if (!(fabs(fd - an) <= 1e-7 + 1e-6 * fabs(fd)))
            fail_msg("%s: element %lld: finite difference %.12g, backward %.12g", what, (long long)i, fd, an);
    }
    ag_set_grad_enabled(was);
    ag_ctx_free(ctx);
}

static void test_gradcheck_views(void **state) {
    (void)state;
    gradcheck_view(f_narrow_transpose, "narrow + transpose");
    gradcheck_view(f_select_expand, "select + expand");
    gradcheck_view(f_reshape_matmul, "reshape (view and copy) + matmul");
}

/* ---- Lifetime across contexts */

static void test_view_outlives_base_context(void **state) {
    (void)state;
    ag_ctx *base_ctx = ag_ctx_new(), *view_ctx = ag_ctx_new();
    ag_tensor *x = arange(base_ctx, 2, (int64_t[]){2, 3});
    ag_tensor *v = ag_transpose(view_ctx, x, 0, 1);
    ag_tensor *vv = ag_narrow(view_ctx, v, 0, 1, 2); /* a view of a view, also across */
    ag_tensor *d = ag_detach(v);
    assert_true(ag_get(vv, 0) == 1.0);
    ag_ctx_reset(base_ctx); /* the storage goes first: the views are detached */
    ag_clear_error();
    assert_true(isnan(ag_get(v, 0)));
    assert_int_equal(ag_last_status(), AG_ESTATE);
    assert_non_null(strstr(ag_last_error(), "was reset or freed"));
    assert_null(ag_exp(view_ctx, vv));
    assert_int_equal(ag_last_status(), AG_ESTATE);
    assert_null(ag_narrow(view_ctx, d, 0, 0, 1));
    assert_null(ag_data_ptr(d));
    double out[6];
    assert_int_equal(ag_copy_to(v, out, AG_FLOAT64), AG_ESTATE);
    assert_int_equal(ag_fill_(v, 0), AG_ESTATE);
    assert_null(ag_add(view_ctx, v, v));
    /* the view's context goes first: the link goes with it */
    ag_tensor *y = arange(base_ctx, 1, (int64_t[]){4});
    ag_tensor *w = ag_expand(view_ctx, y, 2, (int64_t[]){2, 4});
    assert_true(ag_get(w, 5) == 1.0);
    ag_ctx_reset(view_ctx);
    ag_ctx_free(base_ctx);
    ag_ctx_free(view_ctx);
    /* and several rounds of both, in either order */
    for (int round = 0; round < 4; round++) {
        ag_ctx *a = ag_ctx_new(), *b = ag_ctx_new();
        ag_tensor *p = arange(a, 1, (int64_t[]){8});
        ag_tensor *q = ag_narrow(b, p, 0, 2, 3);
        assert_true(ag_get(q, 2) == 4.0);
        ag_tensor *r = ag_narrow(a, q, 0, 1, 1); /* back in the storage's own context */
        assert_true(ag_item(r) == 3.0);
        ag_ctx_free(round % 2 ? a : b);
        ag_ctx_free(round % 2 ? b : a);
    }
}

/* An op on a view that fails leaves no link behind (the context is as it
 * was), and a view in the same context as its storage needs none. */
static void test_failed_view_ops_leave_nothing(void **state) {
    (void)state;
    ag_ctx *a = ag_ctx_new(), *b = ag_ctx_new();
    ag_tensor *x = arange(a, 2, (int64_t[]){2, 3});
    size_t before = ag_ctx_bytes(b);
    assert_null(ag_narrow(b, x, 1, 2, 5));
    assert_null(ag_select(b, x, 0, 2));
    assert_string_equal(ag_last_error(), "select(): index 2 out of range for tensor of size [2, 3] at dimension 0");
    assert_null(ag_select(b, ag_scalar(a, AG_FLOAT64, 1), 0, 0));
    assert_string_equal(ag_last_error(), "select() cannot be applied to a 0-dim tensor.");
    assert_null(ag_expand(b, x, 2, (int64_t[]){4, 3}));
    assert_int_equal(ag_ctx_bytes(b), before);
    ag_ctx_free(a); /* would touch b's memory if a failed op had linked */
    ag_ctx_free(b);
}

/* A hook's replacement gradient that is a non-contiguous view is refused
 * with a clear error (the engine reads gradients flat), and the backward
 * changes no .grad. */
static ag_tensor *transposed_hook(ag_tensor *grad, void *user_data) {
    return ag_transpose((ag_ctx *)user_data, ag_mul_scalar((ag_ctx *)user_data, grad, 2.0), 0, 1);
}

static void test_hook_view_replacement_refused(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = ag_randn(ctx, AG_FLOAT64, 2, (int64_t[]){3, 3});
    assert_int_equal(ag_requires_grad_(x, true), 0);
    ag_tensor *y = ag_mul(ctx, x, x);
    assert_true(ag_register_hook(y, transposed_hook, ctx) > 0);
    int rc = ag_backward(ag_sum(ctx, y), NULL, NULL);
    assert_int_equal(rc, AG_EINVAL);
    assert_non_null(strstr(ag_last_error(), "non-contiguous"));
    assert_null(ag_grad(x));
    ag_clear_error();
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_views_and_copies_as_documented),
        cmocka_unit_test(test_strides),
        cmocka_unit_test(test_data_access),
        cmocka_unit_test(test_writes_through_views),
        cmocka_unit_test(test_ops_read_views),
        cmocka_unit_test(test_gradcheck_views),
        cmocka_unit_test(test_view_outlives_base_context),
        cmocka_unit_test(test_failed_view_ops_leave_nothing),
        cmocka_unit_test(test_hook_view_replacement_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
