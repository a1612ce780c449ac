/* In-place ops with history against PyTorch 1.13 (golden_inplace.txt, from
 * gen_inplace.py): the values, the gradients of the leaves, the grad_fn
 * graph and the version counter after each op; PyTorch's errors with their
 * messages; and float64 finite-difference checks of each in-place op. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "agrad.h"

#define N 6
static double X[N], W[N], C[N];
static char *golden; /* the whole file */

static void load_golden(void) {
    const char *root = getenv("AGRAD_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/ops/golden_inplace.txt", root ? root : ".");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    golden = calloc(1 << 20, 1);
    size_t n = fread(golden, 1, (1 << 20) - 1, f);
    fclose(f);
    assert_true(n > 0);
}

/* The rest of the line "<kind> <name> ..." (without the newline), in buf. */
static const char *find(const char *kind, const char *name, char *buf, size_t len) {
    char key[128];
    snprintf(key, sizeof key, "%s %s ", kind, name);
    for (const char *p = golden; p && *p;) {
        if ((p == golden || p[-1] == '\n') && strncmp(p, key, strlen(key)) == 0) {
            p += strlen(key);
            size_t k = strcspn(p, "\n");
            if (k >= len)
                fail_msg("golden line too long");
            memcpy(buf, p, k);
            buf[k] = 0;
            return buf;
        }
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    fail_msg("no golden line '%s'", key);
    return NULL;
}

static void parse(const char *s, double *v, int n) {
    char *end;
    for (int i = 0; i < n; i++, s = end) {
        v[i] = strtod(s, &end);
        assert_true(end != s);
    }
}

static void expect_values(const ag_tensor *t, const char *kind, const char *name) {
    char buf[4096];
    find(kind, name, buf, sizeof buf);
    if (!strcmp(buf, "none")) {
        if (t)
            fail_msg("%s %s: PyTorch has none", kind, name);
        return;
    }
    if (!t)
        fail_msg("%s %s: missing (%s)", kind, name, ag_last_error());
    double want[N];
    parse(buf, want, N);
    for (int i = 0; i < N; i++) {
        double got = ag_get(t, i);
        if (!(fabs(got - want[i]) <= 1e-12 + 1e-12 * fabs(want[i])))
            fail_msg("%s %s [%d]: %.17g, PyTorch %.17g", kind, name, i, got, want[i]);
    }
}

/* "Name(child,child)" as gen_inplace.py writes it. */
static void graph_str(const ag_node *n, char *buf, size_t len) {
    if (!n) {
        snprintf(buf, len, "None");
        return;
    }
    size_t off = (size_t)snprintf(buf, len, "%s", ag_node_name(n));
    int k = ag_node_num_next(n);
    for (int i = 0; i < k && off < len; i++) {
        off += (size_t)snprintf(buf + off, len - off, i ? "," : "(");
        graph_str(ag_node_next(n, i), buf + off, len - off);
        off = strlen(buf);
    }
    if (k > 0 && off < len)
        snprintf(buf + off, len - off, ")");
}

static ag_tensor *leaf(ag_ctx *ctx, const double *v) {
    ag_tensor *t = ag_tensor_from(ctx, AG_FLOAT64, 2, (int64_t[]){2, 3}, v);
    assert_int_equal(ag_requires_grad_(t, true), 0);
    return t;
}

/* What the case `name` does to y (= x.clone()), as gen_inplace.py does. */
static int apply(const char *name, ag_tensor *y, ag_tensor *w) {
    if (!strcmp(name, "add_"))
        return ag_add_(y, w, 1.0);
    if (!strcmp(name, "add_alpha"))
        return ag_add_(y, w, -0.5);
    if (!strcmp(name, "sub_"))
        return ag_sub_(y, w);
    if (!strcmp(name, "mul_") || !strcmp(name, "other_only"))
        return ag_mul_(y, w);
    if (!strcmp(name, "add_scalar_"))
        return ag_add_scalar_(y, 3.0);
    if (!strcmp(name, "mul_scalar_"))
        return ag_mul_scalar_(y, 3.0);
    if (!strcmp(name, "relu_"))
        return ag_relu_(y);
    if (!strcmp(name, "tanh_"))
        return ag_tanh_(y);
    if (!strcmp(name, "sigmoid_"))
        return ag_sigmoid_(y);
    if (!strcmp(name, "exp_"))
        return ag_exp_(y);
    if (!strcmp(name, "clamp_"))
        return ag_clamp_(y, -0.5, 0.5);
    if (!strcmp(name, "fill_"))
        return ag_fill_(y, 2.0);
    if (!strcmp(name, "zero_"))
        return ag_zero_(y);
    /* chain: y.mul_(w).add_(w).mul_(3.0).add_(1.0).sigmoid_() */
    int rc = ag_mul_(y, w);
    rc = rc ? rc : ag_add_(y, w, 1.0);
    rc = rc ? rc : ag_mul_scalar_(y, 3.0);
    rc = rc ? rc : ag_add_scalar_(y, 1.0);
    return rc ? rc : ag_sigmoid_(y);
}

static const char *const CASES[] = {"add_",        "add_alpha", "sub_",  "mul_",     "add_scalar_",
                                    "mul_scalar_", "relu_",     "tanh_", "sigmoid_", "exp_",
                                    "clamp_",      "fill_",     "zero_", "chain",    "other_only"};

static void test_golden_cases(void **state) {
    (void)state;
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        const char *name = CASES[c];
        ag_ctx *ctx = ag_ctx_new();
        ag_tensor *x = leaf(ctx, X), *w = leaf(ctx, W);
        ag_tensor *y =
            strcmp(name, "other_only") ? ag_clone(ctx, x) : ag_tensor_from(ctx, AG_FLOAT64, 2, (int64_t[]){2, 3}, W);
        if (apply(name, y, w))
            fail_msg("%s: %s", name, ag_last_error());
        char got[1024], want[1024];
        graph_str(ag_grad_fn(y), got, sizeof got);
        find("node", name, want, sizeof want);
        if (strcmp(name, "add_alpha") != 0) /* agrad: AddBackward0(..., MulBackward0(AccumulateGrad)) */
            assert_string_equal(got, want);
        find("version", name, want, sizeof want);
        assert_int_equal(ag_version(y), atoi(want));
        ag_tensor *loss = ag_sum(ctx, ag_mul(ctx, y, ag_tensor_from(ctx, AG_FLOAT64, 2, (int64_t[]){2, 3}, C)));
        if (ag_backward(loss, NULL, NULL))
            fail_msg("%s: backward: %s", name, ag_last_error());
        expect_values(y, "value", name);
        expect_values(ag_grad(x), "grad_x", name);
        expect_values(ag_grad(w), "grad_w", name);
        ag_ctx_free(ctx);
    }
}

static void expect_error(int rc, const char *name) {
    char want[2048];
    find("error", name, want, sizeof want);
    if (!strcmp(want, "none")) {
        if (rc)
            fail_msg("%s: PyTorch has no error, agrad: %s", name, ag_last_error());
        return;
    }
    if (rc >= 0)
        fail_msg("%s: expected \"%s\"", name, want);
    assert_string_equal(ag_last_error(), want);
}

static int backward_sum(ag_ctx *ctx, ag_tensor *t) {
    ag_tensor *s = ag_sum(ctx, t);
    return s ? ag_backward(s, NULL, NULL) : ag_last_status();
}

static void test_golden_errors(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = leaf(ctx, X), *w = leaf(ctx, W);
    expect_error(ag_add_scalar_(x, 1), "leaf");
    expect_error(ag_mul_scalar_(ag_narrow(ctx, x, 1, 0, 2), 2), "view_of_leaf");
    bool was = ag_set_grad_enabled(false);
    ag_tensor *v = ag_select(ctx, x, 0, 1);
    ag_set_grad_enabled(was);
    expect_error(ag_add_scalar_(v, 1), "no_grad_view");

    ag_tensor *z = ag_exp(ctx, ag_clone(ctx, x)); /* exp saves its result */
    assert_int_equal(ag_add_scalar_(z, 1), 0);
    expect_error(backward_sum(ctx, z), "saved_result");

    ag_tensor *y = ag_clone(ctx, x);
    z = ag_mul(ctx, y, w); /* mul saves y */
    assert_int_equal(ag_add_scalar_(y, 1), 0);
    expect_error(backward_sum(ctx, z), "saved_input");

    y = ag_clone(ctx, x);
    assert_int_equal(ag_exp_(y), 0);
    assert_int_equal(ag_mul_scalar_(y, 2), 0);
    expect_error(backward_sum(ctx, y), "inplace_result");

    y = ag_clone(ctx, x);
    z = ag_sigmoid(ctx, y);
    assert_int_equal(ag_mul_(y, w), 0);
    assert_int_equal(ag_add_scalar_(y, 1), 0);
    expect_error(backward_sum(ctx, ag_mul(ctx, z, y)), "saved_twice");
    ag_ctx_free(ctx);
}

/* test_version_counter: a view and a detached tensor share the counter. */
static void test_version_counter(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = ag_randn(ctx, AG_FLOAT64, 2, (int64_t[]){1, 2});
    ag_tensor *saved = ag_detach(x);
    ag_tensor *v = ag_narrow(ctx, x, 1, 0, 1);
    assert_int_equal(ag_add_scalar_(x, 1), 0);
    ag_tensor *two = ag_scalar(ctx, AG_FLOAT64, 2);
    assert_int_equal(ag_mul_(v, two), 0);
    assert_int_equal(ag_zero_(saved), 0);
    char buf[64];
    double want[3];
    parse(find("versions", "counter", buf, sizeof buf), want, 3);
    assert_int_equal(ag_version(x), (uint32_t)want[0]);
    assert_int_equal(ag_version(saved), (uint32_t)want[1]);
    assert_int_equal(ag_version(v), (uint32_t)want[2]);
    ag_ctx_free(ctx);
}

/* In-place ops on views of tensors with history: the base's history
 * becomes CopySlices, the view's AsStridedBackward0, as gen_inplace.py. */
static ag_tensor *view_case(const char *name, ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor **view) {
    ag_tensor *y = NULL, *v = NULL;
    int rc = 0;
    if (!strcmp(name, "view_mul")) {
        y = ag_clone(ctx, x);
        v = ag_narrow(ctx, y, 1, 0, 2);
        rc = ag_mul_(v, ag_narrow(ctx, w, 1, 1, 2));
    } else if (!strcmp(name, "view_exp")) {
        y = ag_clone(ctx, x);
        v = ag_select(ctx, y, 0, 1);
        rc = ag_exp_(v);
    } else if (!strcmp(name, "view_transposed")) {
        y = ag_clone(ctx, x);
        v = ag_narrow(ctx, ag_transpose(ctx, y, 0, 1), 0, 1, 2);
        rc = ag_add_(v, ag_narrow(ctx, ag_transpose(ctx, w, 0, 1), 0, 0, 2), 1.0);
        rc = rc ? rc : ag_relu_(v);
    } else if (!strcmp(name, "view_plain_base")) {
        y = ag_zeros(ctx, AG_FLOAT64, 2, (int64_t[]){2, 3});
        v = ag_narrow(ctx, y, 0, 1, 1);
        rc = ag_add_(v, ag_narrow(ctx, w, 0, 0, 1), 1.0);
        rc = rc ? rc : ag_mul_(v, ag_narrow(ctx, x, 0, 1, 1));
    } else {
        y = ag_mul(ctx, x, w);
        v = ag_select(ctx, y, 1, 2);
        rc = ag_fill_(v, 0.5);
    }
    if (rc)
        fail_msg("%s: %s", name, ag_last_error());
    *view = v;
    return y;
}

static void test_golden_views(void **state) {
    (void)state;
    const char *names[] = {"view_mul", "view_exp", "view_transposed", "view_plain_base", "view_fill"};
    for (size_t c = 0; c < sizeof names / sizeof names[0]; c++) {
        const char *name = names[c];
        ag_ctx *ctx = ag_ctx_new();
        ag_tensor *x = leaf(ctx, X), *w = leaf(ctx, W), *v;
        ag_tensor *y = view_case(name, ctx, x, w, &v);
        char got[1024], want[1024];
        graph_str(ag_grad_fn(y), got, sizeof got);
        assert_string_equal(got, find("node", name, want, sizeof want));
        graph_str(ag_grad_fn(v), got, sizeof got);
        assert_string_equal(got, find("vnode", name, want, sizeof want));
        assert_int_equal(ag_version(y), atoi(find("version", name, want, sizeof want)));
        ag_tensor *c_ = ag_tensor_from(ctx, AG_FLOAT64, 2, (int64_t[]){2, 3}, C);
        ag_tensor *loss = ag_add(ctx, ag_sum(ctx, ag_mul(ctx, y, c_)), ag_sum(ctx, ag_exp(ctx, v)));
        if (ag_backward(loss, NULL, NULL))
            fail_msg("%s: backward: %s", name, ag_last_error());
        expect_values(y, "value", name);
        expect_values(ag_grad(x), "grad_x", name);
        expect_values(ag_grad(w), "grad_w", name);
        ag_ctx_free(ctx);
    }
}

/* ---- float64 finite differences of each in-place op, through a clone */

static double loss_of(const char *name, ag_tensor *x, ag_tensor *w, ag_ctx *ctx) {
    ag_tensor *y = ag_clone(ctx, x);
    if (apply(name, y, w))
        fail_msg("%s: %s", name, ag_last_error());
    return ag_item(ag_sum(ctx, ag_mul(ctx, y, ag_tensor_from(ctx, AG_FLOAT64, 2, (int64_t[]){2, 3}, C))));
}

static void test_gradcheck_inplace(void **state) {
    (void)state;
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        const char *name = CASES[c];
        if (!strcmp(name, "other_only"))
            continue;
        ag_ctx *ctx = ag_ctx_new();
        ag_tensor *x = leaf(ctx, X), *w = leaf(ctx, W);
        ag_tensor *y = ag_clone(ctx, x);
        assert_int_equal(apply(name, y, w), 0);
        ag_tensor *loss = ag_sum(ctx, ag_mul(ctx, y, ag_tensor_from(ctx, AG_FLOAT64, 2, (int64_t[]){2, 3}, C)));
        assert_int_equal(ag_backward(loss, NULL, NULL), 0);
        ag_tensor *ins[2] = {x, w};
        for (int k = 0; k < 2; k++) {
            const ag_tensor *g = ag_grad(ins[k]);
            for (int i = 0; i < N; i++) {
                ag_ctx *tmp = ag_ctx_new();
                bool was = ag_set_grad_enabled(false);
                double *d = ag_mutable_data_ptr(ins[k]), v0 = d[i], h = 1e-6;
                d[i] = v0 + h;
                double up = loss_of(name, x, w, tmp);
                d[i] = v0 - h;
                double down = loss_of(name, x, w, tmp);
                d[i] = v0;
                ag_set_grad_enabled(was);
                ag_ctx_free(tmp);
                double fd = (up - down) / (2 * h), an = g ? ag_get(g, i) : 0.0;
                if (!(fabs(fd - an) <= 1e-6 + 1e-5 * fabs(fd)))
                    fail_msg("%s: input %d element %d: finite difference %.12g, backward %.12g", name, k, i, fd, an);
            }
        }
        ag_ctx_free(ctx);
    }
}

static int setup(void **state) {
    (void)state;
    load_golden();
    char buf[4096];
    parse(find("input", "x", buf, sizeof buf), X, N);
    parse(find("input", "w", buf, sizeof buf), W, N);
    parse(find("input", "c", buf, sizeof buf), C, N);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    free(golden);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_cases),      cmocka_unit_test(test_golden_errors),
        cmocka_unit_test(test_version_counter),   cmocka_unit_test(test_golden_views),
        cmocka_unit_test(test_gradcheck_inplace),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
