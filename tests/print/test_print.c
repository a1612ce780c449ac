/* ag_to_string against PyTorch 1.13's print(t), character for character,
 * for the cases gen_print_cases.py recorded (modes, widths, rounding,
 * wrapping, summarisation, nan/inf, empty tensors, suffixes); plus the
 * examples of API.md, ag_fprint, and NULL arguments.
 * AGRAD_PRINT_CASES=path reads another case file (a --fuzz run) instead. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/internal.h"

#define MIN_GOLDEN_CASES 200

static char *read_line(FILE *f) {
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    int c;
    while ((c = fgetc(f)) != EOF && c != '\n') {
        if (len + 2 > cap) {
            s = realloc(s, cap *= 2);
            assert_non_null(s);
        }
        s[len++] = (char)c;
    }
    s[len] = '\0';
    return s;
}

/* The generator writes newlines as \n and backslashes as \\. */
static void unescape(char *s) {
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '\\' && (p[1] == 'n' || p[1] == '\\')) {
            *o++ = p[1] == 'n' ? '\n' : '\\';
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

/* One recorded case: `case NAME DTYPE NDIM SHAPE... RG GRADFN`, then the
 * values as hex floats, then PyTorch's str(t). Returns false at the end. */
typedef struct {
    char name[128], grad_fn[256];
    ag_dtype dtype;
    int ndim, requires_grad;
    int64_t shape[AG_MAX_DIMS], numel;
    double *values;
    char *want;
} print_case;

static bool read_case(FILE *f, print_case *c) {
    char *head = read_line(f);
    if (!*head) {
        free(head);
        return false;
    }
    char dts[8];
    int n = 0;
    assert_int_equal(sscanf(head, "case %127s %7s %d%n", c->name, dts, &c->ndim, &n), 3);
    assert_in_range(c->ndim, 0, AG_MAX_DIMS);
    c->dtype = strcmp(dts, "f64") == 0 ? AG_FLOAT64 : AG_FLOAT32;
    char *p = head + n;
    c->numel = 1;
    for (int d = 0; d < c->ndim; d++) {
        c->shape[d] = strtoll(p, &p, 10);
        c->numel *= c->shape[d];
    }
    assert_int_equal(sscanf(p, "%d %255s", &c->requires_grad, c->grad_fn), 2);
    free(head);
    char *vals = read_line(f), *q = vals;
    c->values = malloc(sizeof(double) * (size_t)(c->numel ? c->numel : 1));
    assert_non_null(c->values);
    for (int64_t i = 0; i < c->numel; i++)
        c->values[i] = strtod(q, &q); /* hex floats: exact */
    free(vals);
    c->want = read_line(f);
    unescape(c->want);
    return true;
}

/* The test links the static library, so it can give a tensor a grad_fn of
 * any name without running an op: only the name is printed. */
static ag__node_kind fake_kind;
static ag_node fake_node;

static ag_tensor *build_case(ag_ctx *ctx, const print_case *c) {
    void *data = c->values;
    float *f32 = NULL;
    if (c->dtype == AG_FLOAT32) {
        f32 = malloc(sizeof(float) * (size_t)(c->numel ? c->numel : 1));
        assert_non_null(f32);
        for (int64_t i = 0; i < c->numel; i++)
            f32[i] = (float)c->values[i]; /* recorded from float32: exact */
        data = f32;
    }
    ag_tensor *t = ag_tensor_from(ctx, c->dtype, c->ndim, c->shape, data);
    free(f32);
    assert_non_null(t);
    if (c->requires_grad)
        assert_int_equal(ag_requires_grad_(t, true), 0);
    if (strcmp(c->grad_fn, "-") != 0) {
        fake_kind.name = c->grad_fn;
        fake_node.kind = &fake_kind;
        t->grad_fn = &fake_node;
        t->requires_grad = true;
    }
    return t;
}

static void test_matches_pytorch(void **state) {
    (void)state;
    const char *path_env = getenv("AGRAD_PRINT_CASES");
    const char *root = getenv("AGRAD_SOURCE_ROOT");
    char path[4096];
    if (path_env)
        snprintf(path, sizeof path, "%s", path_env);
    else
        snprintf(path, sizeof path, "%s/tests/print/print_cases.txt", root ? root : ".");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    int cases = 0, failures = 0;
    print_case c;
    ag_ctx *ctx = ag_ctx_new();
    assert_non_null(ctx);
    while (read_case(f, &c)) {
        ag_tensor *t = build_case(ctx, &c);
        char *got = ag_to_string(t);
        assert_non_null(got);
        if (strcmp(got, c.want) != 0) {
            if (failures < 20)
                print_error("case %s:\n--- PyTorch\n%s\n--- agrad\n%s\n", c.name, c.want, got);
            failures++;
        }
        free(got);
        free(c.values);
        free(c.want);
        ag_ctx_reset(ctx);
        cases++;
    }
    ag_ctx_free(ctx);
    fclose(f);
    if (failures)
        fail_msg("%d of %d cases print differently from PyTorch", failures, cases);
    if (!path_env)
        assert_true(cases >= MIN_GOLDEN_CASES);
}

static void assert_prints(const ag_tensor *t, const char *want) {
    char *got = ag_to_string(t);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

/* The examples of API.md, made by real ops rather than recorded values. */
static void test_api_examples(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    const int64_t s22[] = {2, 2}, s3[] = {3};
    ag_tensor *x = ag_tensor_from(ctx, AG_FLOAT32, 2, s22, (const float[]){1, 2, 3, 4});
    assert_int_equal(ag_requires_grad_(x, true), 0);
    assert_prints(x, "tensor([[1., 2.],\n        [3., 4.]], requires_grad=True)");
    assert_prints(ag_sum(ctx, x), "tensor(10., grad_fn=<SumBackward0>)");
    assert_prints(ag_mul_scalar(ctx, x, 2), "tensor([[2., 4.],\n        [6., 8.]], grad_fn=<MulBackward0>)");
    /* PyTorch 1.13 prints these three values in scientific notation (1024 /
     * 0.1024 is past the 1000 ratio), not as API.md's third example shows. */
    ag_tensor *g = ag_tensor_from(ctx, AG_FLOAT32, 1, s3, (const float[]){10.24f, 1024.f, 0.1024f});
    assert_prints(g, "tensor([1.0240e+01, 1.0240e+03, 1.0240e-01])");
    /* Its layout, with values in the range PyTorch keeps fixed. */
    ag_tensor *h = ag_tensor_from(ctx, AG_FLOAT32, 1, s3, (const float[]){10.24f, 1024.f, 1.25f});
    assert_prints(h, "tensor([  10.2400, 1024.0000,    1.2500])");
    ag_ctx_free(ctx);
}

static void test_fprint(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *t = ag_tensor_from(ctx, AG_FLOAT64, 2, (const int64_t[]){2, 1}, (const double[]){1.5, -2});
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(ag_fprint(f, t), 0);
    assert_int_equal(ag_fprint(f, ag_scalar(ctx, AG_FLOAT32, 0.5)), 0);
    rewind(f);
    char buf[256];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    assert_string_equal(buf, "tensor([[ 1.5000],\n        [-2.0000]], dtype=torch.float64)\ntensor(0.5000)\n");
    fclose(f);
    ag_ctx_free(ctx);
}

static void test_null(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *t = ag_scalar(ctx, AG_FLOAT32, 1);
    ag_clear_error();
    assert_null(ag_to_string(NULL));
    assert_int_equal(ag_last_status(), AG_EINVAL);
    assert_non_null(strstr(ag_last_error(), "ag_to_string"));
    ag_clear_error();
    assert_int_equal(ag_print(NULL), AG_EINVAL);
    assert_int_equal(ag_last_status(), AG_EINVAL);
    ag_clear_error();
    assert_int_equal(ag_fprint(NULL, t), AG_EINVAL);
    assert_int_equal(ag_last_status(), AG_EINVAL);

    /* A NULL from a failed op keeps that op's error, as a chain expects. */
    ag_clear_error();
    ag_tensor *a = ag_zeros(ctx, AG_FLOAT32, 1, (const int64_t[]){3});
    ag_tensor *b = ag_zeros(ctx, AG_FLOAT32, 1, (const int64_t[]){4});
    assert_null(ag_to_string(ag_add(ctx, a, b)));
    assert_int_equal(ag_last_status(), AG_ESHAPE);
    assert_int_equal(ag_print(ag_add(ctx, a, b)), AG_ESHAPE);
    assert_int_equal(ag_last_status(), AG_ESHAPE);
    ag_clear_error();
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_pytorch),
        cmocka_unit_test(test_api_examples),
        cmocka_unit_test(test_fprint),
        cmocka_unit_test(test_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
