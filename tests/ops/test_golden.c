/* Every op against PyTorch 1.13's numbers: forward values, the gradients of
 * (out * w).sum() for each input, and the node name and edge count, for the
 * cases gen_golden.py recorded in golden_ops.txt (both dtypes). */
#include "ops_check.h"

#include <stdlib.h>

#define MAX_VALS 4096

/* Reads `tag ndim shape... values...` into a tensor of dtype dt in ctx. */
static ag_tensor *read_tensor(FILE *f, const char *tag, ag_ctx *ctx, ag_dtype dt) {
    char word[16];
    int ndim;
    if (fscanf(f, "%15s %d", word, &ndim) != 2 || strcmp(word, tag) != 0)
        fail_msg("expected a '%s' line, got '%s'", tag, word);
    int64_t shape[AG_MAX_DIMS], n = 1;
    for (int d = 0; d < ndim; d++) {
        long long s;
        if (fscanf(f, "%lld", &s) != 1)
            fail_msg("bad shape in a '%s' line", tag);
        shape[d] = s;
        n *= s;
    }
    static double vals[MAX_VALS];
    assert_true(n <= MAX_VALS);
    for (int64_t i = 0; i < n; i++) {
        char num[64];
        if (fscanf(f, "%63s", num) != 1)
            fail_msg("missing values in a '%s' line", tag);
        vals[i] = strtod(num, NULL);
    }
    if (dt == AG_FLOAT64)
        return ag_tensor_from(ctx, dt, ndim, shape, vals);
    static float fv[MAX_VALS];
    for (int64_t i = 0; i < n; i++)
        fv[i] = (float)vals[i];
    return ag_tensor_from(ctx, dt, ndim, shape, fv);
}

static void test_ops_match_pytorch(void **state) {
    (void)state;
    const char *root = getenv("AGRAD_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/ops/golden_ops.txt", root ? root : ".");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    char line[256];
    assert_non_null(fgets(line, sizeof line, f));
    int cases = 0;
    char name[64], op[32], dts[8];
    int nin;
    double a0, a1;
    while (fscanf(f, " case %63s %31s %7s %d %lf %lf", name, op, dts, &nin, &a0, &a1) == 6) {
        ag_dtype dt = strcmp(dts, "f64") == 0 ? AG_FLOAT64 : AG_FLOAT32;
        /* float32: PyTorch may sum in another order; float64 is near exact */
        double rtol = dt == AG_FLOAT64 ? 1e-12 : 2e-5, atol = dt == AG_FLOAT64 ? 1e-12 : 2e-6;
        ag_ctx *ctx = ag_ctx_new();
        ag_tensor *in[2] = {NULL, NULL};
        for (int i = 0; i < nin; i++) {
            in[i] = read_tensor(f, "in", ctx, dt);
            assert_int_equal(ag_requires_grad_(in[i], true), 0);
        }
        ag_tensor *want = read_tensor(f, "out", ctx, dt);
        ag_tensor *w = read_tensor(f, "w", ctx, dt);
        char what[128];
        ag_tensor *out = run_op(ctx, op, in, a0, a1);
        snprintf(what, sizeof what, "%s (%s) forward", name, dts);
        assert_close(out, want, rtol, atol, what);
        char node[64];
        int num_next;
        for (int i = 0; i < nin; i++) {
            ag_tensor *g = read_tensor(f, "grad", ctx, dt);
            if (i == 0) {
                assert_int_equal(ag_backward(ag_sum(ctx, ag_mul(ctx, out, w)), NULL, NULL), 0);
            }
            snprintf(what, sizeof what, "%s (%s) grad of input %d", name, dts, i);
            assert_close(ag_grad(in[i]), g, rtol * 10, atol * 10, what);
        }
        assert_int_equal(fscanf(f, " node %63s %d", node, &num_next), 2);
        if (strcmp(ag_node_name(ag_grad_fn(out)), node) != 0)
            fail_msg("%s: node %s, PyTorch has %s", name, ag_node_name(ag_grad_fn(out)), node);
        assert_int_equal(ag_node_num_next(ag_grad_fn(out)), num_next);
        ag_ctx_free(ctx);
        cases++;
    }
    fclose(f);
    assert_true(cases >= 80);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_match_pytorch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
