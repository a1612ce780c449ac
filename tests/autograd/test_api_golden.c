/* ag_autograd_backward (several roots, inputs=), ag_autograd_grad
 * (grad_outputs, allow_unused, create_graph), a custom function
 * differentiated twice, node pre-hooks and hooks, and the messages of
 * PyTorch's errors there and in anomaly mode, against PyTorch 1.13's
 * results recorded by gen_api.py in api_golden.txt. Each scenario runs on
 * one thread, then on two (deterministic and not): the same values. */
#include "autograd_check.h"

static FILE *golden;
static ag_ctx *ctx;

static const double X[3] = {0.5, -1.2, 2.0}, Y[3] = {1.5, 0.3, -0.7};

static void leaves(ag_tensor **x, ag_tensor **y) {
    *x = vec64(ctx, 1, (int64_t[]){3}, X, true);
    *y = vec64(ctx, 1, (int64_t[]){3}, Y, true);
}

static ag_tensor *v3(double a, double b, double c) { return vec64(ctx, 1, (int64_t[]){3}, (double[]){a, b, c}, false); }

/* The next golden line: a gradient (or `none`) that g must match. */
static void expect_grad(const ag_tensor *g, const char *what) {
    char word[8];
    long pos = ftell(golden);
    assert_int_equal(fscanf(golden, " %7s", word), 1);
    if (!strcmp(word, "none")) {
        if (g)
            fail_msg("%s: expected no gradient", what);
        return;
    }
    fseek(golden, pos, SEEK_SET);
    assert_close(g, read_tensor_line(golden, "g", ctx), 1e-12, 1e-14, what);
}

static void expect_fn(const ag_tensor *t, int depth, const char *what) {
    char want[1024], got[1024] = "";
    assert_int_equal(fscanf(golden, " fn %1023s", want), 1);
    graph_string(ag_grad_fn(t), depth, got, sizeof got);
    if (strcmp(got, want))
        fail_msg("%s: graph %s, PyTorch's %s", what, got, want);
}

/* The next golden message must begin the error (ours may go on: anomaly
 * mode appends the forward's stack). */
static void expect_msg(int rc, const char *what) {
    char want[1024];
    assert_int_equal(fscanf(golden, " msg %1023[^\n]", want), 1);
    if (rc >= 0 || strncmp(ag_last_error(), want, strlen(want)))
        fail_msg("%s: rc %d, message '%s', PyTorch's '%s'", what, rc, ag_last_error(), want);
}

static void run_all(int threads) {
    ag_backward_opts bo = {.num_threads = threads};
    ag_grad_opts go = {.num_threads = threads};
    ag_tensor *x, *y;

    /* several roots */
    leaves(&x, &y);
    ag_tensor *roots[2] = {ag_sum(ctx, ag_mul(ctx, x, y)), ag_tanh(ctx, x)};
    ag_tensor *seeds[2] = {NULL, v3(1, 2, 3)};
    assert_ok(ag_autograd_backward(roots, seeds, 2, NULL, 0, &bo));
    expect_grad(ag_grad(x), "several roots: x.grad");
    expect_grad(ag_grad(y), "several roots: y.grad");

    /* inputs= */
    leaves(&x, &y);
    ag_tensor *h = ag_mul_scalar(ctx, x, 2);
    ag_tensor *loss = ag_sum(ctx, ag_mul(ctx, h, y));
    assert_ok(ag_autograd_backward(&loss, NULL, 1, (ag_tensor *[]){h, y}, 2, &bo));
    expect_grad(ag_grad(h), "inputs=: h.grad");
    expect_grad(ag_grad(y), "inputs=: y.grad");
    expect_grad(ag_grad(x), "inputs=: x.grad");

    /* grad with grad_outputs and create_graph, then again */
    leaves(&x, &y);
    ag_tensor *out = ag_mul(ctx, ag_mul(ctx, x, y), x), *g[2] = {NULL, NULL};
    ag_grad_opts cg = go;
    cg.create_graph = true;
    assert_ok(ag_autograd_grad(ctx, &out, (ag_tensor *[]){v3(1, -1, 2)}, 1, (ag_tensor *[]){x, y}, 2, g, &cg));
    expect_grad(g[0], "grad_outputs: dx");
    expect_grad(g[1], "grad_outputs: dy");
    if (threads == 1)
        expect_fn(g[0], 2, "grad_outputs: dx's graph");
    else
        assert_int_equal(fscanf(golden, " fn %*s"), 0);
    ag_tensor *gg = NULL, *l2 = ag_sum(ctx, ag_mul(ctx, g[0], g[1]));
    assert_ok(ag_autograd_grad(ctx, &l2, NULL, 1, &x, 1, &gg, &go));
    expect_grad(gg, "second derivative");

    /* allow_unused, then PyTorch's errors */
    ag_tensor *z = vec64(ctx, 1, (int64_t[]){3}, (double[]){1, 1, 1}, true);
    ag_tensor *sq = ag_sum(ctx, ag_mul(ctx, x, x));
    ag_grad_opts au = go;
    au.allow_unused = true;
    au.retain_graph = true;
    assert_ok(ag_autograd_grad(ctx, &sq, NULL, 1, (ag_tensor *[]){x, z}, 2, g, &au));
    expect_grad(g[0], "allow_unused: dx");
    expect_grad(g[1], "allow_unused: dz");
    au.allow_unused = false;
    expect_msg(ag_autograd_grad(ctx, &sq, NULL, 1, (ag_tensor *[]){x, z}, 2, g, &au), "unused input");
    ag_tensor *xy = ag_mul(ctx, x, y), *two = vec64(ctx, 1, (int64_t[]){2}, (double[]){1, 1}, false);
    expect_msg(ag_autograd_grad(ctx, &xy, &two, 1, &x, 1, g, &go), "grad_outputs of another shape");
    ag_tensor *nograd = ag_sum(ctx, ag_ones(ctx, AG_FLOAT64, 1, (int64_t[]){3}));
    expect_msg(ag_autograd_grad(ctx, &nograd, NULL, 1, &x, 1, g, &go), "a root without grad");
}

/* ---- A custom function: exp, its backward in agrad's ops ------------------------------------ */

static ag_tensor *myexp_forward(ag_function_ctx *fc, ag_ctx *c, ag_tensor *const *in, int n, void *u) {
    (void)n, (void)u;
    ag_tensor *r = ag_exp(c, in[0]);
    if (r && ag_function_save(fc, &r, 1))
        return NULL;
    return r;
}

static int myexp_backward(ag_function_ctx *fc, ag_ctx *c, const ag_tensor *g, ag_tensor **gi, void *u) {
    (void)u;
    ag_tensor *r = (ag_tensor *)ag_function_saved(fc, 0);
    gi[0] = r ? ag_mul(c, (ag_tensor *)g, r) : NULL;
    return gi[0] ? 0 : ag_last_status();
}

static const ag_function myexp = {"MyExpBackward", myexp_forward, myexp_backward};

static void run_custom(int threads) {
    ag_grad_opts go = {.num_threads = threads}, cg = {.num_threads = threads, .create_graph = true};
    ag_tensor *x, *y, *g1 = NULL, *g2 = NULL;
    leaves(&x, &y);
    ag_tensor *e = ag_function_apply(ctx, &myexp, &x, 1, NULL);
    assert_nonnull_ag(e);
    expect_fn(e, 1, "custom function's node");
    ag_tensor *l = ag_sum(ctx, ag_mul(ctx, e, y));
    assert_ok(ag_autograd_grad(ctx, &l, NULL, 1, &x, 1, &g1, &cg));
    expect_grad(g1, "custom: first derivative");
    expect_fn(g1, 2, "custom: its graph");
    ag_tensor *l2 = ag_sum(ctx, ag_mul(ctx, g1, g1));
    assert_ok(ag_autograd_grad(ctx, &l2, NULL, 1, &x, 1, &g2, &go));
    expect_grad(g2, "custom: second derivative");
}

/* ---- Node hooks -------------------------------------------------------------------------------- */

static int double_it(const ag_node *node, ag_tensor **grad_outputs, int n, void *u) {
    (void)node, (void)n;
    grad_outputs[0] = ag_mul_scalar((ag_ctx *)u, grad_outputs[0], 2);
    return grad_outputs[0] ? 0 : ag_last_status();
}

static int add_one(const ag_node *node, ag_tensor **gi, int ni, ag_tensor *const *go, int no, void *u) {
    (void)node, (void)ni, (void)go, (void)no;
    gi[0] = ag_add_scalar((ag_ctx *)u, gi[0], 1);
    return gi[0] ? 0 : ag_last_status();
}

static void run_hooks(int threads) {
    ag_backward_opts bo = {.num_threads = threads};
    ag_tensor *x, *y;
    leaves(&x, &y);
    ag_ctx *hctx = ag_ctx_new(); /* the hooks run on any thread: one context per thread at a time */
    ag_tensor *yy = ag_mul(ctx, x, x);
    assert_true(ag_node_register_prehook(ag_grad_fn(yy), double_it, hctx) > 0);
    ag_tensor *w = ag_mul_scalar(ctx, yy, 3);
    assert_true(ag_node_register_hook(ag_grad_fn(w), add_one, hctx) > 0);
    assert_ok(ag_backward(ag_sum(ctx, w), NULL, &bo));
    expect_grad(ag_grad(x), "node hooks");
    ag_ctx_free(hctx);
}

static void run_anomaly(int threads) {
    ag_backward_opts bo = {.num_threads = threads};
    ag_set_detect_anomaly(true);
    ag_tensor *z = vec64(ctx, 1, (int64_t[]){2}, (double[]){0, 1}, true);
    ag_tensor *l = ag_sum(ctx, ag_mul_scalar(ctx, ag_sqrt(ctx, z), 0));
    int rc = ag_backward(l, NULL, &bo);
    ag_set_detect_anomaly(false);
    expect_msg(rc, "anomaly");
    assert_non_null(strstr(ag_last_error(), "Traceback of forward call that caused the error"));
    assert_null(ag_grad(z));
}

static void run_threads(int threads, bool det) {
    ag_set_deterministic(det);
    golden = open_autograd_golden("api_golden.txt");
    ctx = ag_ctx_new();
    run_all(threads);
    run_custom(threads);
    run_hooks(threads);
    run_anomaly(threads);
    ag_ctx_free(ctx);
    fclose(golden);
    ag_set_deterministic(false);
}

static void test_one_thread(void **state) {
    (void)state;
    run_threads(1, false);
}

static void test_two_threads(void **state) {
    (void)state;
    run_threads(2, false);
}

static void test_two_threads_deterministic(void **state) {
    (void)state;
    run_threads(2, true);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_thread),
        cmocka_unit_test(test_two_threads),
        cmocka_unit_test(test_two_threads_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
