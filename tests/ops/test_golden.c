/* Every op against PyTorch 1.13's numbers, for the cases gen_golden.py
 * recorded in golden_ops.txt and gen_golden_math.py in golden_math.txt
 * (float64 and float32): forward values, the
 * gradients of (out * w).sum() for each input, the node's name and edges,
 * and whether PyTorch lets that node run a second time without
 * retain_graph. The file is found through AGRAD_SOURCE_ROOT. */
#include "../common/check.h"

#include <stdlib.h>

typedef struct {
    char name[64], op[32], dtype[8];
    int nin;
    bool shared; /* op(x, x) */
    double a0, a1;
} golden_case;

static bool read_case(FILE *f, golden_case *c) {
    int shared;
    if (fscanf(f, " case %63s %31s %7s %d %d %lf %lf", c->name, c->op, c->dtype, &c->nin, &shared, &c->a0, &c->a1) != 7)
        return false;
    c->shared = shared != 0;
    return true;
}

static void check_case(FILE *f, const golden_case *c) {
    ag_dtype dt = strcmp(c->dtype, "f64") == 0 ? AG_FLOAT64 : AG_FLOAT32;
    /* float64 differs from PyTorch only by summation order and libm's last
     * bit; float32 also by PyTorch's vectorised exp/log/tanh (Sleef) */
    double rtol = dt == AG_FLOAT64 ? 1e-13 : 1e-6, atol = dt == AG_FLOAT64 ? 1e-14 : 1e-7;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *in[2] = {NULL, NULL};
    for (int i = 0; i < c->nin; i++) {
        in[i] = golden_read_tensor(f, "in", ctx, dt);
        assert_int_equal(ag_requires_grad_(in[i], true), 0);
    }
    if (c->shared)
        in[1] = in[0];
    ag_tensor *want = golden_read_tensor(f, "out", ctx, dt);
    ag_tensor *w = golden_read_tensor(f, "w", ctx, dt);
    char what[160];

    ag_tensor *out = run_op(ctx, c->op, in, c->a0, c->a1);
    snprintf(what, sizeof what, "%s (%s) forward", c->name, c->dtype);
    assert_tensor_close_msg(out, want, rtol, atol, what);

    if (ag_backward(ag_sum(ctx, ag_mul(ctx, out, w)), NULL, NULL) != 0)
        fail_msg("%s (%s): backward: %s", c->name, c->dtype, ag_last_error());
    for (int i = 0; i < c->nin; i++) {
        ag_tensor *g = golden_read_tensor(f, "grad", ctx, dt);
        snprintf(what, sizeof what, "%s (%s) grad of input %d", c->name, c->dtype, i);
        assert_tensor_close_msg(ag_grad(in[i]), g, rtol * 4, atol * 4, what);
    }

    char node[64];
    int num_next, again;
    assert_int_equal(fscanf(f, " node %63s %d", node, &num_next), 2);
    const ag_node *fn = ag_grad_fn(out);
    assert_non_null(fn);
    if (strcmp(ag_node_name(fn), node) != 0)
        fail_msg("%s: node %s, PyTorch has %s", c->name, ag_node_name(fn), node);
    assert_int_equal(ag_node_num_next(fn), num_next);
    for (int i = 0; i < num_next; i++) {
        char next[64];
        assert_int_equal(fscanf(f, "%63s", next), 1);
        const ag_node *nx = ag_node_next(fn, i);
        const char *got = nx ? ag_node_name(nx) : "None";
        if (strcmp(got, next) != 0)
            fail_msg("%s: edge %d goes to %s, PyTorch's to %s", c->name, i, got, next);
    }
    /* the backward above freed what the node saved: once more with out's
     * own gradient runs only if it saved nothing, as PyTorch decides */
    assert_int_equal(fscanf(f, "%d", &again), 1);
    ag_clear_error();
    int rc = ag_backward(out, w, NULL);
    if (again) {
        if (rc != 0)
            fail_msg("%s (%s): second backward failed: %s", c->name, c->dtype, ag_last_error());
    } else {
        if (rc != AG_ESTATE)
            fail_msg("%s (%s): second backward gave %d, PyTorch refuses it", c->name, c->dtype, rc);
        assert_non_null(strstr(ag_last_error(), "Trying to backward through the graph a second time"));
    }
    ag_ctx_free(ctx);
}

static void test_ops_match_pytorch(void **state) {
    (void)state;
    FILE *f = golden_open("tests/ops/golden_ops.txt");
    golden_case c;
    int cases = 0, f32 = 0;
    while (read_case(f, &c)) {
        check_case(f, &c);
        cases++;
        f32 += strcmp(c.dtype, "f32") == 0;
    }
    assert_true(feof(f)); /* stopped at the end, not at a line it could not read */
    fclose(f);
    assert_int_equal(cases, 160);
    assert_int_equal(f32, 80);
}

/* sin, cos, log1p and pow with a tensor exponent, including pow's
 * gradients at base 0 (inf, nan and PyTorch's zeros). */
static void test_math_ops_match_pytorch(void **state) {
    (void)state;
    FILE *f = golden_open("tests/ops/golden_math.txt");
    golden_case c;
    int cases = 0;
    while (read_case(f, &c)) {
        check_case(f, &c);
        cases++;
    }
    assert_true(feof(f));
    fclose(f);
    assert_int_equal(cases, 36);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_match_pytorch),
        cmocka_unit_test(test_math_ops_match_pytorch),
    };
    return cmocka_run_group_tests(tests, poison_fresh_gradients, NULL);
}
