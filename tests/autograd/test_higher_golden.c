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

static const int64_t targets[3] = {2, 0, 3};      /* gen_higher.py's TARGETS */
static const int64_t sel_index[4] = {2, 0, 2, 1}; /* and its INDEX */

static ag_tensor *apply_more(ag_ctx *ctx, const higher_case *c, ag_tensor **x) {
    const char *op = c->op;
    if (!strcmp(op, "pow"))
        return ag_pow(ctx, x[0], x[1]);
    if (!strcmp(op, "log1p"))
        return ag_log1p(ctx, x[0]);
    if (!strcmp(op, "sin"))
        return ag_sin(ctx, x[0]);
    if (!strcmp(op, "cos"))
        return ag_cos(ctx, x[0]);
    if (!strcmp(op, "relu"))
        return ag_relu(ctx, x[0]);
    if (!strcmp(op, "abs"))
        return ag_abs(ctx, x[0]);
    if (!strcmp(op, "clamp"))
        return ag_clamp(ctx, x[0], -c->a0, c->a0);
    if (!strcmp(op, "maximum"))
        return ag_maximum(ctx, x[0], x[1]);
    if (!strcmp(op, "sum_dim"))
        return ag_sum_dim(ctx, x[0], 1, false);
    if (!strcmp(op, "sum_keepdim"))
        return ag_sum_dim(ctx, x[0], 0, true);
    if (!strcmp(op, "mean_dim"))
        return ag_mean_dim(ctx, x[0], -1, false);
    if (!strcmp(op, "max"))
        return ag_max(ctx, x[0]);
    if (!strcmp(op, "reshape"))
        return ag_reshape(ctx, x[0], 1, (int64_t[]){-1});
    if (!strcmp(op, "transpose"))
        return ag_transpose(ctx, x[0], 0, 1);
    if (!strcmp(op, "clone"))
        return ag_clone(ctx, x[0]);
    if (!strcmp(op, "softmax"))
        return ag_softmax(ctx, x[0], 1);
    if (!strcmp(op, "log_softmax"))
        return ag_log_softmax(ctx, x[0], 0);
    if (!strcmp(op, "nll_loss"))
        return ag_nll_loss(ctx, ag_log_softmax(ctx, x[0], 1), targets);
    if (!strcmp(op, "cross_entropy"))
        return ag_cross_entropy(ctx, x[0], targets);
    if (!strcmp(op, "mse_loss"))
        return ag_mse_loss(ctx, x[0], x[1]);
    if (!strcmp(op, "linear"))
        return ag_linear(ctx, x[0], x[1], x[2]);
    if (!strcmp(op, "linear_nobias"))
        return ag_linear(ctx, x[0], x[1], NULL);
    if (!strcmp(op, "bmm"))
        return ag_bmm(ctx, x[0], x[1]);
    if (!strcmp(op, "index_select"))
        return ag_index_select(ctx, x[0], 1, sel_index, 4);
    if (!strcmp(op, "embedding"))
        return ag_embedding(ctx, x[0], sel_index, 4);
    if (!strcmp(op, "cat"))
        return ag_cat(ctx, (ag_tensor *[]){x[0], x[1]}, 2, 1);
    if (!strcmp(op, "narrow"))
        return ag_narrow(ctx, x[0], 1, 1, 2);
    if (!strcmp(op, "expand"))
        return ag_expand(ctx, x[0], 3, (int64_t[]){2, 3, 4});
    fail_msg("unknown op %s", op);
    return NULL;
}

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
        out = apply_more(ctx, c, x);
    if (!strncmp(c->wrap, "sq", 2))
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
                if (!g[i] && c.wrap[strlen(c.wrap) - 1] == '-') { /* PyTorch's zeros, ours none */
                    for (int64_t e = 0; e < ag_numel(want); e++)
                        if (ag_get(want, e) != 0)
                            fail_msg("%s: no gradient, PyTorch's is not zero", what);
                    continue;
                }
                assert_close(g[i], want, 1e-10, 1e-12, what);
            }
            for (int i = 0; i < c.nin; i++) {
                char want[1024], got[1024] = "";
                assert_int_equal(fscanf(f, " fn %1023s", want), 1);
                if (g[i] && ag_grad_fn(g[i]))
                    graph_string(ag_grad_fn(g[i]), 2, got, sizeof got);
                else
                    strcpy(got, "-");
                bool named = c.wrap[strlen(c.wrap) - 1] != '-'; /* '-': values only */
                if (names && named && strcmp(got, want) != 0)
                    fail_msg("%s order %d input %d: graph %s, PyTorch's %s", c.name, order, i, got, want);
                if (!names && named) /* same history or none, whatever the order of the joins */
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
