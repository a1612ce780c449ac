/* dtype promotion, ag_to and the selection, joining and normalisation
 * ops: float64 finite-difference gradient checks (the gradient of
 * L = sum(op(inputs) * w) from ag_backward against central differences),
 * the points finite differences cannot judge (ties, kinks) against
 * PyTorch's definitions, and hostile arguments (NULL, bad dims and
 * indices, empty tensors with huge dimensions). */
#include "../common/check.h"

#include <stdlib.h>

/* The function under test: out = f(in) in ctx. */
typedef ag_tensor *(*build_fn)(ag_ctx *ctx, ag_tensor **in, const void *arg);

/* check.h's gradcheck on inputs reused across cases: their .grad is
 * cleared first. */
static void extra_gradcheck(const char *label, build_fn f, const void *arg, ag_tensor **in, int nin, double rtol,
                            double atol) {
    for (int i = 0; i < nin; i++)
        assert_int_equal(ag_set_grad(in[i], NULL), 0);
    gradcheck(label, f, arg, in, nin, (gradcheck_tol){rtol, atol});
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
    extra_gradcheck("x64 op c32", build_promoted, NULL, in, 2, 1e-6, 1e-7);
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

/* ==== min, max/min over a dim, argmax, where, gather ============================= */

typedef struct {
    int dim;
    bool keep, is_min;
} dim_arg;

static ag_tensor *build_extreme(ag_ctx *ctx, ag_tensor **in, const void *arg) {
    const dim_arg *a = arg;
    if (a->dim == 99)
        return ag_min(ctx, in[0]);
    return a->is_min ? ag_min_dim(ctx, in[0], a->dim, a->keep, NULL) : ag_max_dim(ctx, in[0], a->dim, a->keep, NULL);
}

static ag_tensor *build_where(ag_ctx *ctx, ag_tensor **in, const void *arg) {
    (void)arg;
    return ag_where(ctx, in[2], in[0], in[1]);
}

typedef struct {
    int dim, ndim;
    int64_t shape[3];
    const int64_t *index;
} gather_arg;

static ag_tensor *build_gather(ag_ctx *ctx, ag_tensor **in, const void *arg) {
    const gather_arg *g = arg;
    return ag_gather(ctx, in[0], g->dim, g->ndim, g->shape, g->index);
}

static void test_select_gradcheck(void **state) {
    (void)state;
    ag_manual_seed(12);
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = randn64(ctx, 3, (int64_t[]){2, 3, 4});
    const dim_arg dims[] = {{99, 0, 0}, {0, 0, 0}, {1, 1, 0}, {-1, 0, 1}, {2, 1, 1}, {-3, 1, 1}};
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++)
        extra_gradcheck("max/min", build_extreme, &dims[k], &x, 1, 1e-6, 1e-7);
    ag_tensor *w[3] = {randn64(ctx, 2, (int64_t[]){3, 1}), randn64(ctx, 1, (int64_t[]){4}),
                       ag_tensor_from(ctx, AG_FLOAT32, 2, (int64_t[]){1, 4}, (float[]){1, 0, NAN, -2})};
    extra_gradcheck("where", build_where, NULL, w, 3, 1e-6, 1e-7);
    const int64_t idx[] = {0, 2, 2, 1, 0, 0, 1, 2, 2, 1, 1, 0, 0, 0, 2, 1, 1, 1};
    const int64_t idx01[] = {0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0, 1, 0};
    const gather_arg g[] = {{1, 3, {2, 3, 3}, idx}, {0, 3, {2, 2, 4}, idx01}, {-1, 3, {1, 2, 2}, idx}};
    for (int k = 0; k < 3; k++)
        extra_gradcheck("gather", build_gather, &g[k], &x, 1, 1e-6, 1e-7);
    ag_ctx_free(ctx);
}

static void test_select_values(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x =
        leaf(ag_tensor_from(ctx, AG_FLOAT32, 2, (int64_t[]){3, 3}, (float[]){1, 3, 3, NAN, 2, NAN, -1, -1, -5}));
    int64_t idx[3] = {-7, -7, -7};
    assert_int_equal(ag_argmax(x), 3); /* the first nan */
    assert_int_equal(ag_argmax_dim(x, 1, idx), 0);
    assert_true(idx[0] == 1 && idx[1] == 0 && idx[2] == 0);
    assert_int_equal(ag_argmax_dim(x, 0, idx), 0);
    assert_true(idx[0] == 1 && idx[1] == 0 && idx[2] == 1);
    ag_tensor *m = ag_min_dim(ctx, x, -1, true, idx);
    assert_int_equal(ag_ndim(m), 2);
    assert_true(idx[0] == 0 && idx[1] == 0 && idx[2] == 2);
    /* a second backward through a node that kept indices is refused, as in PyTorch */
    assert_int_equal(ag_backward(ag_sum(ctx, m), NULL, NULL), 0);
    assert_int_equal(ag_backward(m, ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){3, 1}), NULL), AG_ESTATE);
    ag_clear_error();
    /* empty tensors with huge dimensions */
    ag_tensor *e = ag_zeros(ctx, AG_FLOAT64, 3, (int64_t[]){0, INT64_MAX, 2});
    ag_tensor *em = ag_max_dim(ctx, e, 1, false, NULL);
    assert_non_null(em);
    assert_int_equal(ag_numel(em), 0);
    assert_non_null(ag_gather(ctx, e, 1, 3, (int64_t[]){0, 5, 9}, NULL));
    assert_non_null(ag_where(ctx, e, e, e));
    assert_int_equal(ag_argmax_dim(e, 2, idx), 0);
    ag_ctx_free(ctx);
}

static void test_select_errors(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = ag_ones(ctx, AG_FLOAT64, 2, (int64_t[]){3, 4});
    ag_tensor *e = ag_ones(ctx, AG_FLOAT64, 2, (int64_t[]){2, 0});
    int64_t idx[16] = {0};
    expect_null(ag_min(ctx, e), AG_EINVAL, "min(): Expected reduction dim to be specified for input.numel() == 0.");
    expect_null(ag_max_dim(ctx, e, 1, false, idx), AG_EINVAL, "max(): Expected reduction dim 1 to have non-zero size.");
    expect_null(ag_min_dim(ctx, x, 2, false, idx), AG_EINVAL,
                "Dimension out of range (expected to be in range of [-2, 1], but got 2)");
    expect_code((int)ag_argmax(e), AG_EINVAL, "argmax(): Expected reduction dim to be specified");
    expect_code(ag_argmax_dim(x, 0, NULL), AG_EINVAL, "ag_argmax_dim: indices is NULL");
    expect_null(ag_where(ctx, ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){2}), x, x), AG_ESHAPE,
                "The size of tensor a (2) must match the size of tensor b (4) at non-singleton dimension 1");
    const int64_t bad[] = {0, 4};
    expect_null(ag_gather(ctx, x, 1, 2, (int64_t[]){1, 2}, bad), AG_EINVAL,
                "index 4 is out of bounds for dimension 1 with size 4");
    expect_null(ag_gather(ctx, x, 1, 2, (int64_t[]){1, 2}, (int64_t[]){-1, 0}), AG_EINVAL,
                "index -1 is out of bounds for dimension 1 with size 4");
    expect_null(ag_gather(ctx, x, 1, 1, (int64_t[]){2}, idx), AG_EINVAL,
                "Index tensor must have the same number of dimensions as input tensor");
    expect_null(ag_gather(ctx, x, 1, 2, (int64_t[]){4, 2}, idx), AG_ESHAPE,
                "Size does not match at dimension 0 expected index [4, 2] to be smaller than self [3, 4] apart from "
                "dimension 1");
    expect_null(ag_gather(ctx, x, 1, 2, (int64_t[]){INT64_MAX, 3}, idx), AG_ENOMEM,
                "Storage size calculation overflowed with sizes=[9223372036854775807, 3]");
    expect_null(ag_gather(ctx, x, 1, 2, (int64_t[]){-1, 3}, idx), AG_EINVAL, "");
    expect_null(ag_gather(ctx, x, 1, 2, (int64_t[]){1, 1}, NULL), AG_EINVAL, "ag_gather: index is NULL");
    expect_null(ag_gather(ctx, x, 1, AG_MAX_DIMS + 1, (int64_t[]){1, 1}, idx), AG_EINVAL, "ag_gather");
    /* NULL keeps the first error */
    ag_tensor *none = ag_min(ctx, e);
    expect_null(ag_where(ctx, none, x, x), AG_EINVAL, "min(): Expected");
    none = ag_min(ctx, e);
    expect_null(ag_gather(ctx, ag_max_dim(ctx, none, 0, false, NULL), 0, 0, NULL, NULL), AG_EINVAL, "min(): Expected");
    ag_ctx_free(ctx);
}

/* ==== stack ========================================================================= */

static ag_tensor *build_stack(ag_ctx *ctx, ag_tensor **in, const void *arg) {
    return ag_stack(ctx, in, 3, *(const int *)arg);
}

static void test_stack(void **state) {
    (void)state;
    ag_manual_seed(13);
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *in[3];
    for (int i = 0; i < 3; i++)
        in[i] = randn64(ctx, 2, (int64_t[]){2, 3});
    for (int dim = -3; dim <= 2; dim++)
        extra_gradcheck("stack", build_stack, &dim, in, 3, 1e-6, 1e-7);
    ag_tensor *sh[3] = {in[0], in[0], in[1]}; /* one tensor twice */
    int dim = 1;
    extra_gradcheck("stack shared", build_stack, &dim, sh, 3, 1e-6, 1e-7);
    ag_tensor *x = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3}), *y = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){4});
    expect_null(ag_stack(ctx, NULL, 2, 0), AG_EINVAL, "stack expects a non-empty TensorList");
    expect_null(ag_stack(ctx, (ag_tensor *[]){x}, 0, 0), AG_EINVAL, "stack expects a non-empty TensorList");
    expect_null(ag_stack(ctx, (ag_tensor *[]){x, y}, 2, 0), AG_ESHAPE,
                "stack expects each tensor to be equal size, but got [3] at entry 0 and [4] at entry 1");
    expect_null(ag_stack(ctx, (ag_tensor *[]){x, x}, 2, 2), AG_EINVAL,
                "Dimension out of range (expected to be in range of [-2, 1], but got 2)");
    ag_tensor *big = ag_zeros(ctx, AG_FLOAT32, AG_MAX_DIMS, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1});
    expect_null(ag_stack(ctx, &big, 1, 0), AG_EINVAL, "more than 8 dimensions");
    expect_null(ag_stack(ctx, (ag_tensor *[]){x, ag_min(ctx, ag_zeros(ctx, AG_FLOAT32, 1, (int64_t[]){0}))}, 2, 0),
                AG_EINVAL, "min(): Expected");
    ag_tensor *e = ag_zeros(ctx, AG_FLOAT64, 2, (int64_t[]){0, INT64_MAX});
    ag_tensor *s = ag_stack(ctx, (ag_tensor *[]){e, e}, 2, 1);
    assert_non_null(s);
    assert_int_equal(ag_size(s, 1), 2);
    assert_int_equal(ag_size(s, 2), INT64_MAX);
    /* [INT64_MAX, 2, 0]: the sizes overflow before the 0, PyTorch's rule */
    ag_tensor *f = ag_zeros(ctx, AG_FLOAT64, 2, (int64_t[]){INT64_MAX, 0});
    expect_null(ag_stack(ctx, (ag_tensor *[]){f, f}, 2, 1), AG_ENOMEM, "Storage size calculation overflowed");
    ag_ctx_free(ctx);
}

/* ==== matmul with a 1-D operand ================================================ */

static ag_tensor *build_matmul(ag_ctx *ctx, ag_tensor **in, const void *arg) {
    (void)arg;
    return ag_matmul(ctx, in[0], in[1]);
}

static void test_matmul_1d(void **state) {
    (void)state;
    ag_manual_seed(14);
    ag_ctx *ctx = ag_ctx_new();
    const int64_t shapes[][2][2] = {{{5}, {5}}, {{3, 4}, {4}}, {{4}, {4, 3}}, {{1}, {1}}, {{2, 1}, {1}}};
    const int nd[][2] = {{1, 1}, {2, 1}, {1, 2}, {1, 1}, {2, 1}};
    for (int k = 0; k < 5; k++) {
        ag_tensor *in[2] = {randn64(ctx, nd[k][0], shapes[k][0]), randn64(ctx, nd[k][1], shapes[k][1])};
        extra_gradcheck("matmul 1-D", build_matmul, NULL, in, 2, 1e-6, 1e-6);
    }
    ag_tensor *v = randn64(ctx, 1, (int64_t[]){4});
    ag_tensor *vv[2] = {v, v}; /* v . v */
    extra_gradcheck("dot shared", build_matmul, NULL, vv, 2, 1e-6, 1e-6);
    /* vector @ matrix: SqueezeBackward3(MmBackward0(UnsqueezeBackward0(v), AccumulateGrad)) */
    ag_tensor *m = randn64(ctx, 2, (int64_t[]){4, 2});
    const ag_node *sq = ag_grad_fn(ag_matmul(ctx, v, m));
    assert_string_equal(ag_node_name(sq), "SqueezeBackward3");
    assert_string_equal(ag_node_name(ag_node_next(sq, 0)), "MmBackward0");
    assert_string_equal(ag_node_name(ag_node_next(ag_node_next(sq, 0), 0)), "UnsqueezeBackward0");
    ag_tensor *f = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){4});
    expect_null(ag_matmul(ctx, v, f), AG_EDTYPE,
                "dot : expected both vectors to have same dtype, but found Double and Float");
    expect_null(ag_matmul(ctx, m, ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){2})), AG_EDTYPE,
                "expected scalar type Double but found Float");
    expect_null(ag_matmul(ctx, v, ag_ones(ctx, AG_FLOAT64, 1, (int64_t[]){3})), AG_ESHAPE,
                "inconsistent tensor size, expected tensor [4] and src [3] to have the same number of elements, but "
                "got 4 and 3 elements respectively");
    expect_null(ag_matmul(ctx, m, v), AG_ESHAPE, "size mismatch, got 4, 4x2,4");
    expect_null(ag_matmul(ctx, ag_ones(ctx, AG_FLOAT64, 1, (int64_t[]){3}), m), AG_ESHAPE,
                "mat1 and mat2 shapes cannot be multiplied (1x3 and 4x2)");
    expect_null(ag_matmul(ctx, ag_scalar(ctx, AG_FLOAT64, 1), v), AG_ESHAPE,
                "both arguments to matmul need to be at least 1D, but they are 0D and 1D");
    expect_null(ag_matmul(NULL, v, v), AG_EINVAL, "ag_matmul: context is NULL");
    /* (huge, 0) @ (0): a result of INT64_MAX elements is refused before anything is allocated */
    ag_tensor *e = ag_zeros(ctx, AG_FLOAT64, 2, (int64_t[]){INT64_MAX, 0});
    expect_null(ag_matmul(ctx, e, ag_zeros(ctx, AG_FLOAT64, 1, (int64_t[]){0})), AG_ENOMEM, "");
    ag_tensor *e0 = ag_zeros(ctx, AG_FLOAT64, 1, (int64_t[]){0});
    assert_true(ag_item(ag_matmul(ctx, e0, e0)) == 0); /* the empty sum */
    ag_ctx_free(ctx);
}

/* ==== norm ================================================================== */

static ag_tensor *build_norm(ag_ctx *ctx, ag_tensor **in, const void *arg) {
    return ag_norm(ctx, in[0], *(const double *)arg);
}

static void test_norm(void **state) {
    (void)state;
    ag_manual_seed(15);
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = randn64(ctx, 2, (int64_t[]){3, 4});
    const double ps[] = {1, 2, INFINITY, 3, 1.5, 0.7};
    for (int k = 0; k < 6; k++)
        extra_gradcheck("norm", build_norm, &ps[k], &x, 1, 1e-5, 1e-6);
    /* the subgradient at 0, as PyTorch 1.13 (test_norm_subgradient) */
    for (int k = 0; k < 4; k++) {
        ag_tensor *z = leaf(ag_zeros(ctx, AG_FLOAT64, 1, (int64_t[]){3}));
        ag_tensor *y = ag_norm(ctx, z, ps[k]);
        assert_true(ag_item(y) == 0);
        assert_int_equal(ag_backward(y, NULL, NULL), 0);
        for (int i = 0; i < 3; i++)
            assert_true(ag_get(ag_grad(z), i) == 0);
    }
    ag_tensor *f = ag_tensor_from(ctx, AG_FLOAT32, 1, (int64_t[]){2}, (float[]){3, -4});
    assert_true(ag_item(ag_norm(ctx, f, 2)) == 5);
    assert_true(ag_item(ag_norm(ctx, f, INFINITY)) == 4);
    assert_true(ag_item(ag_norm(ctx, ag_zeros(ctx, AG_FLOAT32, 2, (int64_t[]){INT64_MAX, 0}), 2)) == 0);
    expect_null(ag_norm(ctx, f, 0), AG_EUNSUPPORTED, "ag_norm: p must be > 0");
    expect_null(ag_norm(ctx, f, NAN), AG_EUNSUPPORTED, "ag_norm: p must be > 0");
    expect_null(ag_norm(ctx, f, -INFINITY), AG_EUNSUPPORTED, "ag_norm: p must be > 0");
    expect_null(ag_norm(ctx, NULL, 2), AG_EINVAL, "ag_norm");
    ag_ctx_free(ctx);
}

/* ==== dropout ================================================================ */

static void test_dropout(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = randn64(ctx, 2, (int64_t[]){50, 40});
    assert_ptr_equal(ag_dropout(ctx, x, 0.3, false), x);
    assert_ptr_equal(ag_dropout(ctx, x, 0, true), x);
    ag_manual_seed(99);
    ag_tensor *y = ag_dropout(ctx, x, 0.25, true);
    ag_manual_seed(99);
    ag_tensor *y2 = ag_dropout(ctx, x, 0.25, true);
    assert_tensor_close(y, y2, 0, 0); /* seeded: the same mask */
    assert_string_equal(ag_node_name(ag_grad_fn(y)), "MulBackward0");
    assert_null(ag_node_next(ag_grad_fn(y), 1));
    assert_int_equal(ag_backward(ag_sum(ctx, y), NULL, NULL), 0);
    int64_t kept = 0;
    for (int64_t i = 0; i < 2000; i++) {
        double g = ag_get(ag_grad(x), i), v = ag_get(y, i);
        assert_true(g == 0 || fabs(g - 1 / 0.75) < 1e-15);          /* the mask */
        assert_true(fabs(v - g * ag_get(x, i)) <= 1e-15 * fabs(v)); /* out = a * mask */
        kept += g != 0;
    }
    assert_true(kept > 1300 && kept < 1700); /* 1500 expected; sd 19 */
    ag_tensor *z = ag_dropout(ctx, x, 1, true);
    assert_true(ag_item(ag_sum(ctx, ag_mul(ctx, z, z))) == 0);
    expect_null(ag_dropout(ctx, x, 1.5, true), AG_EINVAL, "dropout probability has to be between 0 and 1, but got 1.5");
    expect_null(ag_dropout(ctx, x, NAN, true), AG_EINVAL, "dropout probability");
    expect_null(ag_dropout(NULL, x, 0.5, true), AG_EINVAL, "ag_dropout: context is NULL");
    ag_tensor *e = ag_zeros(ctx, AG_FLOAT32, 2, (int64_t[]){0, INT64_MAX});
    assert_ptr_equal(ag_dropout(ctx, e, 0.5, true), e);
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promotion_gradcheck),
        cmocka_unit_test(test_promotion_result_types),
        cmocka_unit_test(test_to),
        cmocka_unit_test(test_select_gradcheck),
        cmocka_unit_test(test_select_values),
        cmocka_unit_test(test_select_errors),
        cmocka_unit_test(test_stack),
        cmocka_unit_test(test_matmul_1d),
        cmocka_unit_test(test_norm),
        cmocka_unit_test(test_dropout),
    };
    return cmocka_run_group_tests(tests, poison_fresh_gradients, NULL);
}
