/* Shared by the autograd tests: the core tests' assertions, a reader for
 * the golden files' tensor lines, and the graph of a gradient as a string
 * in the format the generators write. */
#ifndef AG_TESTS_AUTOGRAD_CHECK_H
#define AG_TESTS_AUTOGRAD_CHECK_H

#include "../common/check.h"

#include <stdlib.h>

/* A float64 tensor in ctx, requiring grad when `leaf` is true. */
static inline ag_tensor *vec64(ag_ctx *ctx, int ndim, const int64_t *shape, const double *v, bool leaf) {
    ag_tensor *t = ag_tensor_from(ctx, AG_FLOAT64, ndim, shape, v);
    assert_non_null(t);
    if (leaf)
        assert_int_equal(ag_requires_grad_(t, true), 0);
    return t;
}

/* Reads `tag ndim shape... values...` (values as C reads them: hex floats
 * exact) into a float64 tensor in ctx. */
static inline ag_tensor *read_tensor_line(FILE *f, const char *tag, ag_ctx *ctx) {
    char word[16] = "";
    int ndim;
    if (fscanf(f, "%15s %d", word, &ndim) != 2 || strcmp(word, tag) != 0)
        fail_msg("expected a '%s' line, got '%s'", tag, word);
    assert_true(ndim >= 0 && ndim <= AG_MAX_DIMS);
    int64_t shape[AG_MAX_DIMS], n = 1;
    for (int d = 0; d < ndim; d++) {
        long long s;
        if (fscanf(f, "%lld", &s) != 1)
            fail_msg("bad shape in a '%s' line", tag);
        shape[d] = s;
        n *= s;
    }
    double *vals = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    assert_non_null(vals);
    for (int64_t i = 0; i < n; i++) {
        char num[64];
        if (fscanf(f, "%63s", num) != 1)
            fail_msg("missing values in a '%s' line", tag);
        vals[i] = strtod(num, NULL);
    }
    ag_tensor *t = ag_tensor_from(ctx, AG_FLOAT64, ndim, shape, vals);
    free(vals);
    assert_non_null(t);
    return t;
}

/* A golden file under tests/autograd, found through AGRAD_SOURCE_ROOT,
 * past its header comment. */
static inline FILE *open_autograd_golden(const char *name) {
    const char *root = getenv("AGRAD_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/autograd/%s", root ? root : ".", name);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s (is AGRAD_SOURCE_ROOT set?)", path);
    char line[512];
    assert_non_null(fgets(line, sizeof line, f));
    return f;
}

/* The node and its next functions, depth levels deep:
 * "MulBackward0(None,AccumulateGrad)", as the generators write them. */
static inline void graph_string(const ag_node *n, int depth, char *buf, size_t cap) {
    size_t len = strlen(buf);
    if (!n) {
        snprintf(buf + len, cap - len, "None");
        return;
    }
    snprintf(buf + len, cap - len, "%s", ag_node_name(n));
    int k = ag_node_num_next(n);
    if (depth == 0 || k == 0)
        return;
    strncat(buf, "(", cap - strlen(buf) - 1);
    for (int i = 0; i < k; i++) {
        if (i)
            strncat(buf, ",", cap - strlen(buf) - 1);
        graph_string(ag_node_next(n, i), depth - 1, buf, cap);
    }
    strncat(buf, ")", cap - strlen(buf) - 1);
}

/* a and b agree element by element within atol + rtol |b|. */
static inline void check_close(const ag_tensor *a, const ag_tensor *b, double rtol, double atol, const char *what,
                               const char *file, int line) {
    if (!a || !b) {
        print_error("%s: %s is NULL (%s)\n", what, a ? "expected" : "result", ag_last_error());
        _fail(file, line);
    }
    if (ag_numel(a) != ag_numel(b) || ag_ndim(a) != ag_ndim(b)) {
        print_error("%s: shapes differ\n", what);
        _fail(file, line);
    }
    for (int64_t i = 0; i < ag_numel(a); i++) {
        double x = ag_get(a, i), y = ag_get(b, i);
        if (!(fabs(x - y) <= atol + rtol * fabs(y))) {
            print_error("%s: element %lld: got %.17g, expected %.17g\n", what, (long long)i, x, y);
            _fail(file, line);
        }
    }
}
#define assert_close(a, b, rtol, atol, what) check_close((a), (b), (rtol), (atol), (what), __FILE__, __LINE__)

#endif /* AG_TESTS_AUTOGRAD_CHECK_H */
