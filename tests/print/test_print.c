/* ag_to_string against PyTorch 1.13's print(t), character for character,
 * for the cases gen_print_cases.py recorded (modes, widths, wrapping,
 * summarisation, nan/inf, empty tensors, suffixes); plus ag_fprint and
 * NULL handling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

/* A grad_fn for the test: only its name is printed. */
static ag__node_kind fake_kind;
static ag_node fake_node;

static char *read_line(FILE *f) {
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    int c;
    while ((c = fgetc(f)) != EOF && c != '\n') {
        if (len + 2 > cap)
            s = realloc(s, cap *= 2);
        s[len++] = (char)c;
    }
    s[len] = '\0';
    return s;
}

static void unescape(char *s) {
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '\\' && p[1] == 'n') {
            *o++ = '\n';
            p++;
        } else if (*p == '\\' && p[1] == '\\') {
            *o++ = '\\';
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

static void test_matches_pytorch(void **state) {
    (void)state;
    const char *root = getenv("AGRAD_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/print/print_cases.txt", root ? root : ".");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    int cases = 0, failures = 0;
    for (;;) {
        char *head = read_line(f);
        if (!*head) {
            free(head);
            break;
        }
        char name[64], dts[8], gradfn[64];
        int ndim, n = 0, rg;
        assert_int_equal(sscanf(head, "case %63s %7s %d%n", name, dts, &ndim, &n), 3);
        int64_t shape[AG_MAX_DIMS], numel = 1;
        char *p = head + n;
        for (int d = 0; d < ndim; d++) {
            shape[d] = strtoll(p, &p, 10);
            numel *= shape[d];
        }
        assert_int_equal(sscanf(p, "%d %63s", &rg, gradfn), 2);
        char *vals = read_line(f), *want = read_line(f);
        unescape(want);
        ag_ctx *ctx = ag_ctx_new();
        ag_dtype dt = strcmp(dts, "f64") == 0 ? AG_FLOAT64 : AG_FLOAT32;
        ag_tensor *t = ag_zeros(ctx, dt, ndim, shape);
        assert_non_null(t);
        char *q = vals;
        for (int64_t i = 0; i < numel; i++)
            ag__store(t, i, strtod(q, &q));
        if (rg)
            assert_int_equal(ag_requires_grad_(t, true), 0);
        if (strcmp(gradfn, "-") != 0) {
            fake_kind.name = gradfn;
            fake_node.kind = &fake_kind;
            t->grad_fn = &fake_node;
            t->requires_grad = true;
        }
        char *got = ag_to_string(t);
        assert_non_null(got);
        if (strcmp(got, want) != 0) {
            print_error("case %s:\n--- PyTorch\n%s\n--- agrad\n%s\n", name, want, got);
            failures++;
        }
        free(got);
        free(head);
        free(vals);
        free(want);
        ag_ctx_free(ctx);
        cases++;
    }
    fclose(f);
    assert_int_equal(failures, 0);
    assert_true(cases >= 80);
}

static void test_fprint_and_null(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *t = ag_tensor_from(ctx, AG_FLOAT32, 1, (int64_t[]){2}, (float[]){1.5f, -2});
    FILE *f = tmpfile();
    assert_int_equal(ag_fprint(f, t), 0);
    rewind(f);
    char buf[128] = {0};
    assert_non_null(fgets(buf, sizeof buf, f));
    assert_string_equal(buf, "tensor([ 1.5000, -2.0000])\n");
    fclose(f);
    ag_clear_error();
    assert_null(ag_to_string(NULL));
    assert_int_equal(ag_last_status(), AG_EINVAL);
    assert_int_equal(ag_fprint(NULL, t), AG_EINVAL);
    ag_clear_error();
    assert_int_equal(ag_print(NULL), AG_EINVAL);
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_pytorch),
        cmocka_unit_test(test_fprint_and_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
