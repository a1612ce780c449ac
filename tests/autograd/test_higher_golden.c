/* Second to fourth derivatives against PyTorch 1.13, for the cases
 * gen_higher.py recorded in higher_golden.txt: each order's gradients
 * (ag_autograd_grad with create_graph) and the graph each one's recorded
 * backward carries, two levels deep, node names included. Run on one
 * thread (the order in which contributions meet, and so the AddBackward0
 * nodes joining them, is then PyTorch's), then again on two threads in
 * deterministic mode, where the values must agree and the names of the
 * nodes must be the same set. */
#include "autograd_check.h"

#include <stdlib.h>

typedef struct {
    char name[64], op[32], wrap[8];
    int nin;
    double a0;
} higher_case;

static ag_tensor *apply(ag_ctx *ctx, const higher_case *c, ag_tensor **x) {
    const char *op = c->op;
    ag_tensor *out = NULL;
    if (!strcmp(op, "add"))
        out = ag_add(ctx, x[0], x[1]);
    else if (!strcmp(op, "sub"))
        out = ag_sub(ctx, x[0], x[1]);
    else if (!strcmp(op, "mul"))
        out = ag_mul(ctx, x[0], x[1]);
    else if (!strcmp(op, "mul_self"))
        out = ag_mul(ctx, x[0], x[0]);
    else if (!strcmp(op, "div"))
        out = ag_div(ctx, x[0], x[1]);
    else if (!strcmp(op, "neg"))
        out = ag_neg(ctx, x[0]);
    else if (!strcmp(op, "exp"))
        out = ag_exp(ctx, x[0]);
    else if (!strcmp(op, "tanh"))
        out = ag_tanh(ctx, x[0]);
    else if (!strcmp(op, "sigmoid"))
        out = ag_sigmoid(ctx, x[0]);
    else if (!strcmp(op, "sqrt"))
        out = ag_sqrt(ctx, x[0]);
    else if (!strcmp(op, "log"))
        out = ag_log(ctx, x[0]);
    else if (!strcmp(op, "sum"))
        out = ag_sum(ctx, x[0]);
    else if (!strcmp(op, "mean"))
        out = ag_mean(ctx, x[0]);
    else if (!strcmp(op, "matmul"))
        out = ag_matmul(ctx, x[0], x[1]);
    else if (!strcmp(op, "pow_scalar"))
        out = ag_pow_scalar(ctx, x[0], c->a0);
    else if (!strcmp(op, "add_scalar"))
        out = ag_add_scalar(ctx, x[0], c->a0);
    else if (!strcmp(op, "mul_scalar"))
        out = ag_mul_scalar(ctx, x[0], c->a0);
    else if (!strcmp(op, "mlp"))
        out = ag_tanh(ctx, ag_add(ctx, ag_matmul(ctx, x[0], x[1]), x[2]));
    else if (!strcmp(op, "matmul_t"))
        out = ag_matmul(ctx, ag_transpose(ctx, x[0], 0, 1), x[1]);
    else if (!strcmp(op, "mlp_sigmoid"))
        out = ag_sigmoid(ctx, ag_add(ctx, ag_matmul(ctx, x[0], x[1]), x[2]));
    else
        fail_msg("unknown op %s", op);
    if (!strcmp(c->wrap, "sq"))
        out = ag_pow_scalar(ctx, out, 2);
    assert_nonnull_ag(out);
    return out;
}

/* Runs every case of the file at the given thread count. names: compare
 * the recorded graphs as strings (one thread), else only check values. */
static void run_cases(int threads, bool det, bool names) {
    FILE *f = open_autograd_golden("higher_golden.txt");
    ag_set_deterministic(det);
    higher_case c;
    int cases = 0;
    while (fscanf(f, " case %63s %31s %7s %d %lf", c.name, c.op, c.wrap, &c.nin, &c.a0) == 5) {
        ag_ctx *ctx = ag_ctx_new();
        ag_tensor *x[3];
        for (int i = 0; i < c.nin; i++) {
            x[i] = read_tensor_line(f, "in", ctx);
            assert_ok(ag_requires_grad_(x[i], true));
        }
        ag_tensor *w = read_tensor_line(f, "w", ctx);
        ag_tensor *loss = ag_sum(ctx, ag_mul(ctx, apply(ctx, &c, x), w));
        for (int order = 1; order <= 4; order++) {
            int got_order;
            assert_int_equal(fscanf(f, " order %d", &got_order), 1);
            assert_int_equal(got_order, order);
            ag_tensor *g[3] = {NULL, NULL, NULL};
            if (loss && ag_requires_grad(loss)) {
                ag_grad_opts o = {.create_graph = true, .allow_unused = true, .num_threads = threads};
                if (ag_autograd_grad(ctx, &loss, NULL, 1, x, c.nin, g, &o) != 0)
                    fail_msg("%s order %d: %s", c.name, order, ag_last_error());
            }
            for (int i = 0; i < c.nin; i++) {
                char word[8];
                long pos = ftell(f);
                assert_int_equal(fscanf(f, " %7s", word), 1);
                char what[128];
                snprintf(what, sizeof what, "%s order %d input %d", c.name, order, i);
                if (!strcmp(word, "none")) {
                    if (g[i])
                        fail_msg("%s: expected no gradient", what);
                    continue;
                }
                fseek(f, pos, SEEK_SET);
                ag_tensor *want = read_tensor_line(f, "g", ctx);
                assert_close(g[i], want, 1e-10, 1e-12, what);
            }
            for (int i = 0; i < c.nin; i++) {
                char want[1024], got[1024] = "";
                assert_int_equal(fscanf(f, " fn %1023s", want), 1);
                if (g[i] && ag_grad_fn(g[i]))
                    graph_string(ag_grad_fn(g[i]), 2, got, sizeof got);
                else
                    strcpy(got, "-");
                if (names && strcmp(got, want) != 0)
                    fail_msg("%s order %d input %d: graph %s, PyTorch's %s", c.name, order, i, got, want);
                if (!names) /* same history or none, whatever the order of the joins */
                    assert_int_equal(strcmp(got, "-") == 0, strcmp(want, "-") == 0);
            }
            if (order < 4) {
                loss = NULL;
                for (int i = 0; i < c.nin; i++) {
                    ag_tensor *v = read_tensor_line(f, "v", ctx);
                    if (!g[i])
                        continue;
                    ag_tensor *term = ag_sum(ctx, ag_mul(ctx, g[i], v));
                    loss = loss ? ag_add(ctx, loss, term) : term;
                    assert_nonnull_ag(loss);
                }
            }
        }
        ag_ctx_free(ctx);
        cases++;
    }
    assert_true(feof(f) || cases > 0);
    assert_true(cases >= 20);
    fclose(f);
    ag_set_deterministic(false);
}

static void test_one_thread(void **state) {
    (void)state;
    run_cases(1, false, true);
}

static void test_two_threads_deterministic(void **state) {
    (void)state;
    run_cases(2, true, false);
}

static void test_two_threads(void **state) {
    (void)state;
    run_cases(2, false, false);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_thread),
        cmocka_unit_test(test_two_threads_deterministic),
        cmocka_unit_test(test_two_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
