/* The backward graph ag_linear records, against PyTorch 1.13's for
 * F.linear (golden_graph.txt, from gen_golden_graph.py): the same node
 * names and the same next_functions, None where an input needs no
 * gradient, for every input rank and every choice of which of x, w and b
 * require grad. Then a backward through each graph gives the gradients of
 * sum(y) that the arithmetic says. */
#include "../common/check.h"

/* Appends Name(next, ...) for node to buf, "None" for a missing edge. */
static void walk(const ag_node *node, char *buf, size_t cap) {
    size_t len = strlen(buf);
    if (!node) {
        snprintf(buf + len, cap - len, "None");
        return;
    }
    snprintf(buf + len, cap - len, "%s", ag_node_name(node));
    int n = ag_node_num_next(node);
    for (int i = 0; i < n; i++) {
        len = strlen(buf);
        snprintf(buf + len, cap - len, i == 0 ? "(" : ",");
        walk(ag_node_next(node, i), buf, cap);
    }
    if (n > 0) {
        len = strlen(buf);
        snprintf(buf + len, cap - len, ")");
    }
}

/* sum(y) for y = x @ w^T + b: dx[r, i] = sum_o w[o, i], dw[o, i] = sum_r x[r, i], db[o] = rows. */
static void check_grads(const ag_tensor *x, const ag_tensor *w, const ag_tensor *b, const char *line) {
    int64_t in = ag_size(w, 1), out = ag_size(w, 0), rows = ag_numel(x) / in;
    if (ag_requires_grad(x))
        for (int64_t e = 0; e < ag_numel(x); e++) {
            double want = 0;
            for (int64_t o = 0; o < out; o++)
                want += ag_get(w, o * in + e % in);
            if (!(fabs(ag_get(ag_grad(x), e) - want) <= 1e-5 * (1 + fabs(want))))
                fail_msg("%s: x.grad[%lld] = %g, expected %g", line, (long long)e, ag_get(ag_grad(x), e), want);
        }
    if (ag_requires_grad(w))
        for (int64_t e = 0; e < ag_numel(w); e++) {
            double want = 0;
            for (int64_t r = 0; r < rows; r++)
                want += ag_get(x, r * in + e % in);
            if (!(fabs(ag_get(ag_grad(w), e) - want) <= 1e-5 * (1 + fabs(want))))
                fail_msg("%s: w.grad[%lld] = %g, expected %g", line, (long long)e, ag_get(ag_grad(w), e), want);
        }
    if (b && ag_requires_grad(b))
        for (int64_t e = 0; e < out; e++)
            if (ag_get(ag_grad(b), e) != (double)rows)
                fail_msg("%s: b.grad[%lld] = %g, expected %lld", line, (long long)e, ag_get(ag_grad(b), e),
                         (long long)rows);
}

static void test_linear_graph_as_pytorch(void **state) {
    (void)state;
    FILE *f = golden_open("tests/ops/golden_graph.txt");
    char line[1024];
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#')
            continue;
        line[strcspn(line, "\n")] = 0;
        char *p = line, *end;
        if (strncmp(p, "linear ", 7) != 0)
            fail_msg("bad line: %s", line);
        p += 7;
        int ndim = (int)strtol(p, &end, 10);
        assert_true(ndim >= 1 && ndim <= AG_MAX_DIMS);
        int64_t shape[AG_MAX_DIMS];
        for (int d = 0; d < ndim; d++)
            shape[d] = strtoll(end, &end, 10);
        int bias = (int)strtol(end, &end, 10), rx = (int)strtol(end, &end, 10);
        int rw = (int)strtol(end, &end, 10), rb = (int)strtol(end, &end, 10);
        const char *want = end + strspn(end, " ");

        ag_ctx *ctx = ag_ctx_new();
        int64_t in = shape[ndim - 1], out = 4;
        ag_tensor *x = ag_randn(ctx, AG_FLOAT32, ndim, shape);
        ag_tensor *w = ag_randn(ctx, AG_FLOAT32, 2, (int64_t[]){out, in});
        ag_tensor *b = bias ? ag_randn(ctx, AG_FLOAT32, 1, (int64_t[]){out}) : NULL;
        assert_int_equal(ag_requires_grad_(x, rx), 0);
        assert_int_equal(ag_requires_grad_(w, rw), 0);
        if (b)
            assert_int_equal(ag_requires_grad_(b, rb), 0);
        ag_tensor *y = ag_linear(ctx, x, w, b);
        if (!y)
            fail_msg("%s: %s", line, ag_last_error());
        char got[1024] = "";
        if (ag_grad_fn(y))
            walk(ag_grad_fn(y), got, sizeof got);
        else
            snprintf(got, sizeof got, "-");
        if (strcmp(got, want) != 0)
            fail_msg("%s\n  agrad:   %s\n  PyTorch: %s", line, got, want);
        assert_int_equal(ag_size(y, -1), out);
        if (ag_grad_fn(y)) {
            ag_tensor *s = ag_sum(ctx, y);
            if (!s || ag_backward(s, NULL, NULL))
                fail_msg("%s: backward: %s", line, ag_last_error());
            check_grads(x, w, b, line);
        }
        ag_ctx_free(ctx);
        cases++;
    }
    fclose(f);
    assert_int_equal(cases, 60);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_graph_as_pytorch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
