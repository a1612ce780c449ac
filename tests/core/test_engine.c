/* The engine's PyTorch semantics on the calling thread: accumulation across
 * calls, retain_graph, hooks, retain_grad, version counters, requires_grad_
 * rules, grad mode, detach, execution order and dead branches. */
#include "../common/check.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/internal.h"

static int setup_ctx(void **state) {
    *state = ag_ctx_new();
    ag_clear_error();
    ag_set_grad_enabled(true);
    return *state ? 0 : -1;
}

static int teardown_ctx(void **state) {
    ag_ctx_free(*state);
    return 0;
}

static ag_tensor *leaf(ag_tensor *t) {
    assert_nonnull_ag(t);
    assert_ok(ag_requires_grad_(t, true));
    return t;
}

/* seeds/003: (weights*3).sum() three times accumulates 3, 6, 9; zero_ resets. */
static void test_accumulates_across_calls(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *w = leaf(ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){4}));
    for (int epoch = 1; epoch <= 3; epoch++) {
        ag_tensor *out = ag_sum(ctx, ag_mul_scalar(ctx, w, 3));
        assert_nonnull_ag(out);
        assert_ok(ag_backward(out, NULL, NULL));
        assert_values(ag_grad(w), 0, 3.0 * epoch, 3.0 * epoch, 3.0 * epoch, 3.0 * epoch);
    }
    assert_ok(ag_zero_grad(w));
    ag_tensor *out = ag_sum(ctx, ag_mul_scalar(ctx, w, 3));
    assert_ok(ag_backward(out, NULL, NULL));
    assert_values(ag_grad(w), 0, 3, 3, 3, 3);
}

/* seeds/000: z = 2*y + 1, out = z.sum(); y.grad = 2, non-leaf grads stay NULL. */
static void test_simple_graph_and_grad_fn(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *y = leaf(mk(ctx, AG_FLOAT32, 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4}));
    ag_tensor *z = ag_add_scalar(ctx, ag_mul_scalar(ctx, y, 2), 1);
    ag_tensor *out = ag_sum(ctx, z);
    assert_nonnull_ag(out);
    assert_string_equal(ag_node_name(ag_grad_fn(z)), "AddBackward0");
    assert_string_equal(ag_node_name(ag_grad_fn(out)), "SumBackward0");
    assert_null(ag_grad_fn(y));
    assert_true(ag_is_leaf(y));
    assert_false(ag_is_leaf(z));
    const ag_node *mul = ag_node_next(ag_grad_fn(z), 0);
    assert_string_equal(ag_node_name(mul), "MulBackward0");
    assert_string_equal(ag_node_name(ag_node_next(mul, 0)), "AccumulateGrad");
    assert_ptr_equal(ag_node_variable(ag_node_next(mul, 0)), y);
    assert_ok(ag_backward(out, NULL, NULL));
    assert_values(ag_grad(y), 0, 2, 2, 2, 2);
    assert_null(ag_grad(z));
    assert_null(ag_grad(out));
}

/* A node that saved tensors refuses a second backward without retain_graph;
 * one that saved nothing (AddBackward0) may run again. */
static void test_retain_graph(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){2, 2}));
    ag_tensor *y = ag_add_scalar(ctx, x, 2);
    ag_tensor *ones = ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){2, 2});
    ag_backward_opts keep = {.retain_graph = true};
    assert_ok(ag_backward(y, ones, &keep));
    assert_values(ag_grad(x), 0, 1, 1, 1, 1);
    assert_ok(ag_backward(y, ones, NULL));
    assert_ok(ag_backward(y, ones, NULL)); /* AddBackward0 saved nothing */
    assert_values(ag_grad(x), 0, 3, 3, 3, 3);

    ag_tensor *z = ag_sum(ctx, ag_mul(ctx, x, x));
    assert_ok(ag_backward(z, NULL, &keep));
    assert_ok(ag_backward(z, NULL, NULL));
    assert_int_equal(ag_backward(z, NULL, NULL), AG_ESTATE);
    assert_error(AG_ESTATE, "Trying to backward through the graph a second time");
    assert_values(ag_grad(x), 0, 7, 7, 7, 7); /* 3 + 2*x + 2*x */

    /* seeds/004: 2*x + 3 saved the wrapped scalar, as in PyTorch 1.13 */
    ag_tensor *w = leaf(VEC(ctx, AG_FLOAT32, 3));
    ag_tensor *v = ag_add_scalar(ctx, ag_mul_scalar(ctx, w, 2), 3);
    assert_ok(ag_backward(v, NULL, NULL));
    assert_int_equal(ag_backward(v, NULL, NULL), AG_ESTATE);
    assert_values(ag_grad(w), 0, 2);
}

typedef struct {
    ag_ctx *keep;
    ag_tensor *seen;
    int calls;
    double scale; /* 0: keep the gradient */
} hook_state;

static ag_tensor *record_hook(ag_tensor *grad, void *ud) {
    hook_state *h = ud;
    h->calls++;
    h->seen = ag_clone(h->keep, grad);
    if (h->scale != 0) {
        bool prev = ag_set_grad_enabled(false);
        ag_tensor *r = ag_mul_scalar(h->keep, grad, h->scale);
        ag_set_grad_enabled(prev);
        return r;
    }
    return NULL;
}

/* A hook sees the fully accumulated gradient once per backward; a returned
 * tensor replaces it downstream; removal works. */
static void test_hooks(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(VEC(ctx, AG_FLOAT64, 1, 2, 3));
    ag_tensor *y = ag_mul_scalar(ctx, x, 2);
    /* y feeds two consumers: the hook must see both contributions summed */
    ag_tensor *out = ag_sum(ctx, ag_add(ctx, ag_mul_scalar(ctx, y, 3), ag_exp(ctx, ag_mul_scalar(ctx, y, 0))));
    hook_state h = {.keep = ctx};
    int handle = ag_register_hook(y, record_hook, &h);
    assert_true(handle > 0);
    assert_ok(ag_backward(out, NULL, &(ag_backward_opts){.retain_graph = true}));
    assert_int_equal(h.calls, 1);
    assert_values(h.seen, 1e-12, 3, 3, 3);
    assert_values(ag_grad(x), 1e-12, 6, 6, 6);

    h.scale = 10; /* replace: x.grad gets 2 * 30 more */
    assert_ok(ag_backward(out, NULL, &(ag_backward_opts){.retain_graph = true}));
    assert_int_equal(h.calls, 2);
    assert_values(ag_grad(x), 1e-12, 66, 66, 66);

    assert_ok(ag_remove_hook(y, handle));
    assert_ok(ag_backward(out, NULL, NULL));
    assert_int_equal(h.calls, 2);
    assert_values(ag_grad(x), 1e-12, 72, 72, 72);
    assert_int_equal(ag_remove_hook(y, handle), AG_EINVAL);
}

/* ag_set_grad refuses what PyTorch 1.13's `x.grad = g` refuses, with its
 * messages and in its order (the tensor itself, then dtype, then size). */
static void test_set_grad_checks(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){2, 2}));
    assert_int_equal(ag_set_grad(x, x), AG_EINVAL);
    assert_string_equal(ag_last_error(), "can't assign Variable as its own grad");
    assert_null(ag_grad(x));
    assert_int_equal(ag_set_grad(x, ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){4})), AG_ESHAPE);
    assert_string_equal(ag_last_error(), "assigned grad has data of a different size");
    assert_int_equal(ag_set_grad(x, ag_ones(ctx, AG_FLOAT64, 2, (int64_t[]){2, 2})), AG_EDTYPE);
    assert_string_equal(ag_last_error(), "assigned grad has data of a different type");
    assert_int_equal(ag_set_grad(x, ag_ones(ctx, AG_FLOAT64, 1, (int64_t[]){3})), AG_EDTYPE);
    assert_string_equal(ag_last_error(), "assigned grad has data of a different type");
    assert_null(ag_grad(x));
    /* a detached alias is another tensor: accepted, as in PyTorch */
    ag_tensor *d = ag_detach(x);
    assert_ok(ag_set_grad(x, d));
    assert_ptr_equal(ag_grad(x), d);
    assert_ok(ag_set_grad(x, NULL));
    assert_null(ag_grad(x));
}

/* A hook on a leaf runs before AccumulateGrad and can change what lands in .grad. */
static void test_leaf_hook(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(VEC(ctx, AG_FLOAT32, 1, 2));
    hook_state h = {.keep = ctx, .scale = 0.5};
    assert_true(ag_register_hook(x, record_hook, &h) > 0);
    assert_ok(ag_backward(ag_sum(ctx, ag_mul_scalar(ctx, x, 4)), NULL, NULL));
    assert_values(h.seen, 0, 4, 4);
    assert_values(ag_grad(x), 0, 2, 2);
    ag_tensor *c = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){2});
    assert_int_equal(ag_register_hook(c, record_hook, &h), AG_ESTATE);
    assert_error(AG_ESTATE, "cannot register a hook on a tensor that doesn't require gradient");
}

static ag_tensor *bad_shape_hook(ag_tensor *grad, void *ud) {
    (void)grad;
    return ag_ones(ud, AG_FLOAT32, 1, (int64_t[]){5});
}

static ag_tensor *bad_dtype_hook(ag_tensor *grad, void *ud) {
    (void)grad;
    return ag_ones(ud, AG_FLOAT64, 1, (int64_t[]){2});
}

/* PyTorch 1.13's messages, word for word. */
static void test_hook_wrong_shape_is_an_error(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(VEC(ctx, AG_FLOAT32, 1, 2));
    ag_tensor *y = ag_mul_scalar(ctx, x, 2);
    assert_true(ag_register_hook(y, bad_shape_hook, ctx) > 0);
    assert_int_equal(ag_backward(ag_sum(ctx, y), NULL, NULL), AG_ESHAPE);
    assert_string_equal(ag_last_error(), "hook 'hook' has changed the size of value");
    assert_null(ag_grad(x));
    ag_tensor *z = ag_mul_scalar(ctx, x, 3);
    assert_true(ag_register_hook(z, bad_dtype_hook, ctx) > 0);
    assert_int_equal(ag_backward(ag_sum(ctx, z), NULL, NULL), AG_EDTYPE);
    assert_string_equal(ag_last_error(),
                        "hook 'hook' has changed the type of value (was torch.FloatTensor got torch.DoubleTensor)");
    assert_null(ag_grad(x));
}

static void test_retain_grad(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(VEC(ctx, AG_FLOAT32, 1, 2, 3));
    ag_tensor *y = ag_add_scalar(ctx, x, 2);
    ag_tensor *z = ag_mean(ctx, ag_mul_scalar(ctx, ag_mul(ctx, y, y), 2));
    assert_ok(ag_retain_grad(y));
    assert_ok(ag_retain_grad(x)); /* no-op on a leaf */
    assert_ok(ag_backward(z, NULL, NULL));
    /* dz/dy = 4y/3 */
    assert_values(ag_grad(y), 1e-5, 4.0 * 3 / 3, 4.0 * 4 / 3, 4.0 * 5 / 3);
    assert_values(ag_grad(x), 1e-5, 4.0 * 3 / 3, 4.0 * 4 / 3, 4.0 * 5 / 3);
    ag_tensor *c = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){2});
    assert_int_equal(ag_retain_grad(c), AG_ESTATE);
}

/* PyTorch 1.13's retain_grad is a hook at the point where it was called:
 * a hook registered after it does not change the retained grad, one
 * registered before it does (checked against torch 1.13). */
static void test_retain_grad_among_hooks(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(VEC(ctx, AG_FLOAT32, 1, 1));
    ag_tensor *y = ag_mul_scalar(ctx, x, 2);
    hook_state h = {.keep = ctx, .scale = 10};
    assert_ok(ag_retain_grad(y));
    assert_true(ag_register_hook(y, record_hook, &h) > 0);
    assert_ok(ag_backward(ag_sum(ctx, y), NULL, &(ag_backward_opts){.retain_graph = true}));
    assert_values(h.seen, 0, 1, 1);
    assert_values(ag_grad(y), 0, 1, 1); /* before the hook */
    assert_values(ag_grad(x), 0, 20, 20);
    assert_ok(ag_retain_grad(y)); /* again: no new position */
    assert_ok(ag_backward(ag_sum(ctx, y), NULL, NULL));
    assert_values(ag_grad(y), 0, 2, 2); /* accumulates, as PyTorch's does */

    ag_tensor *x2 = leaf(VEC(ctx, AG_FLOAT32, 1, 1));
    ag_tensor *y2 = ag_mul_scalar(ctx, x2, 2);
    hook_state h2 = {.keep = ctx, .scale = 10};
    assert_true(ag_register_hook(y2, record_hook, &h2) > 0);
    assert_ok(ag_retain_grad(y2));
    assert_ok(ag_backward(ag_sum(ctx, y2), NULL, NULL));
    assert_values(h2.seen, 0, 1, 1);
    assert_values(ag_grad(y2), 0, 10, 10); /* after the hook */
    assert_values(ag_grad(x2), 0, 20, 20);
}

static ag_tensor *fail_hook(ag_tensor *grad, void *ud) {
    (void)grad;
    return ag_zeros(ud, AG_FLOAT32, 1, (int64_t[]){7});
}

/* Snapshot of a .grad: the tensor and its values. */
typedef struct {
    const ag_tensor *ptr;
    double v[4];
} grad_snap;

static grad_snap snap(const ag_tensor *t) {
    grad_snap s = {ag_grad(t), {0}};
    for (int64_t i = 0; s.ptr && i < ag_numel(s.ptr) && i < 4; i++)
        s.v[i] = ag_get(s.ptr, i);
    return s;
}

static void assert_same_snap(grad_snap a, const ag_tensor *t) {
    grad_snap b = snap(t);
    assert_ptr_equal(a.ptr, b.ptr);
    assert_memory_equal(a.v, b.v, sizeof a.v);
}

/* A backward that fails leaves every .grad as it was, including those of
 * leaves whose part of the graph ran before the failure (PyTorch keeps
 * the partial sums of what ran). Nodes run latest created first, so here
 * u's and x's leaves are done when TanhBackward0 (created first) fails. */
static void test_failed_backward_changes_no_grad(void **state) {
    ag_ctx *ctx = *state;
    for (int how = 0; how < 3; how++) {
        ag_tensor *x = leaf(VEC(ctx, AG_FLOAT32, 1, 2));
        ag_tensor *y = leaf(VEC(ctx, AG_FLOAT32, 3, 4));
        ag_tensor *u = leaf(VEC(ctx, AG_FLOAT32, 5, 6));
        assert_ok(ag_set_grad(x, VEC(ctx, AG_FLOAT32, 7, 7)));
        ag_tensor *t = ag_tanh(ctx, y);
        ag_tensor *a = ag_mul_scalar(ctx, x, 3);
        assert_ok(ag_retain_grad(a));
        ag_tensor *b = ag_mul(ctx, u, u);
        ag_tensor *root = ag_sum(ctx, ag_add(ctx, ag_add(ctx, a, b), t));
        assert_nonnull_ag(root);
        int want;
        if (how == 0) { /* a saved tensor changed in place */
            ag_mutable_data_ptr(t);
            want = AG_ESTATE;
        } else if (how == 1) { /* a hook on the node that runs last */
            assert_true(ag_register_hook(t, fail_hook, ctx) > 0);
            want = AG_ESHAPE;
        } else { /* a leaf's hook, after the other leaves were summed */
            assert_true(ag_register_hook(y, fail_hook, ctx) > 0);
            want = AG_ESHAPE;
        }
        grad_snap sx = snap(x), sy = snap(y), su = snap(u), sa = snap(a);
        assert_int_equal(ag_backward(root, NULL, NULL), want);
        assert_same_snap(sx, x);
        assert_same_snap(sy, y);
        assert_same_snap(su, u);
        assert_same_snap(sa, a);
        assert_null(ag_grad(u));
        assert_null(ag_grad(a));
    }
}

extern size_t ag__backward_scratch_peak(void);

/* The calling thread gives a consumed gradient back as the pool's threads
 * do: two chains of 100 nodes over a 1 MiB tensor touch a few buffers'
 * worth of scratch, not one per node. */
static void test_serial_gives_buffers_back(void **state) {
    ag_ctx *ctx = *state;
    enum { N = 1 << 18, LINKS = 100 };
    ag_tensor *x = leaf(ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){N}));
    for (int det = 0; det < 2; det++) {
        ag_set_deterministic(det);
        ag_ctx *g = ag_ctx_new();
        ag_tensor *h1 = x, *h2 = x;
        for (int i = 0; i < LINKS; i++) {
            h1 = ag_mul_scalar(g, h1, 1.0);
            h2 = ag_mul_scalar(g, h2, 1.0);
        }
        assert_ok(ag_backward(ag_sum(g, ag_add(g, h1, h2)), NULL, &(ag_backward_opts){.num_threads = 1}));
        size_t peak = ag__backward_scratch_peak();
        if (peak > (size_t)6 * N * sizeof(float))
            print_error("deterministic %d: %zu bytes of scratch\n", det, peak);
        assert_true(peak <= (size_t)6 * N * sizeof(float));
        assert_true(ag_get(ag_grad(x), 0) == 2.0 * (det + 1));
        assert_true(ag_get(ag_grad(x), N - 1) == 2.0 * (det + 1));
        ag_ctx_free(g);
    }
    ag_set_deterministic(false);
}

/* Changing a saved tensor in place makes backward fail with PyTorch's message. */
static void test_version_counter(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(VEC(ctx, AG_FLOAT32, 1, 2, 3));
    ag_tensor *a = ag_mul_scalar(ctx, x, 1);
    ag_tensor *e = ag_exp(ctx, a);
    ag_tensor *out = ag_sum(ctx, ag_mul(ctx, e, a));
    assert_int_equal(ag_version(e), 0);
    float *p = ag_mutable_data_ptr(e);
    p[0] = 0;
    assert_int_equal(ag_version(e), 1);
    assert_int_equal(ag_backward(out, NULL, NULL), AG_ESTATE);
    assert_error(AG_ESTATE, "one of the variables needed for gradient computation has been modified by an "
                            "inplace operation: [torch.FloatTensor [3]], which is output 0 of ExpBackward0, is "
                            "at version 1; expected version 0 instead. Hint:");
    /* detach shares storage and so the version counter */
    ag_tensor *d = ag_detach(a);
    assert_ptr_equal(ag_data_ptr(d), ag_data_ptr(a));
    assert_false(ag_requires_grad(d));
    assert_true(ag_is_leaf(d));
    assert_null(ag_grad_fn(d));
    ag_mutable_data_ptr(d);
    assert_int_equal(ag_version(a), 1);
}

static void test_requires_grad_rules(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3});
    assert_false(ag_requires_grad(x));
    ag_tensor *y0 = ag_mul_scalar(ctx, x, 2);
    assert_false(ag_requires_grad(y0));
    assert_null(ag_grad_fn(y0));
    assert_int_equal(ag_backward(ag_sum(ctx, y0), NULL, NULL), AG_ESTATE);
    assert_error(AG_ESTATE, "element 0 of tensors does not require grad and does not have a grad_fn");
    assert_ok(ag_requires_grad_(x, true));
    ag_tensor *y = ag_mul_scalar(ctx, x, 2);
    assert_true(ag_requires_grad(y));
    assert_ok(ag_requires_grad_(y, true));
    assert_int_equal(ag_requires_grad_(y, false), AG_ESTATE);
    assert_error(AG_ESTATE, "you can only change requires_grad flags of leaf variables.");
    assert_ok(ag_requires_grad_(x, false));
    assert_false(ag_requires_grad(ag_mul_scalar(ctx, x, 2)));
    assert_int_equal(ag_backward(y, NULL, NULL), AG_ESTATE);
    assert_error(AG_ESTATE, "grad can be implicitly created only for scalar outputs");
}

static void test_no_grad(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(VEC(ctx, AG_FLOAT32, 1, 2));
    assert_true(ag_is_grad_enabled());
    assert_true(ag_requires_grad(ag_pow_scalar(ctx, x, 2)));
    bool prev = ag_set_grad_enabled(false);
    assert_true(prev);
    ag_tensor *y = ag_pow_scalar(ctx, x, 2);
    assert_false(ag_requires_grad(y));
    assert_null(ag_grad_fn(y));
    ag_set_grad_enabled(prev);
    assert_true(ag_requires_grad(ag_pow_scalar(ctx, x, 2)));
}

/* A consumer of an intermediate that is not reachable from the root must
 * not hold back the nodes below it. */
static void test_dead_branch_blocks_nothing(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(VEC(ctx, AG_FLOAT64, 1, 2));
    ag_tensor *y = ag_mul_scalar(ctx, x, 2);
    ag_tensor *dead = ag_exp(ctx, y);
    assert_nonnull_ag(dead);
    assert_ok(ag_backward(ag_sum(ctx, y), NULL, NULL));
    assert_values(ag_grad(x), 0, 2, 2);
}

/* A non-scalar root with an explicit gradient, and a leaf as the root. */
static void test_explicit_grad_and_leaf_root(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(VEC(ctx, AG_FLOAT32, 0.7171, -0.4471, -0.6513));
    ag_tensor *y = ag_mul_scalar(ctx, x, 2);
    for (int i = 0; i < 9; i++)
        y = ag_mul_scalar(ctx, y, 2);
    ag_tensor *g = VEC(ctx, AG_FLOAT32, 0.01, 1.0, 0.0001);
    assert_ok(ag_backward(y, g, NULL));
    assert_values(ag_grad(x), 1e-4, 10.24, 1024, 0.1024);
    ag_tensor *bad = VEC(ctx, AG_FLOAT32, 1, 2);
    assert_int_equal(ag_backward(y, bad, NULL), AG_ESHAPE);
    assert_error(AG_ESHAPE, "Mismatch in shape: grad_output[0] has a shape of torch.Size([2]) and output[0] "
                            "has a shape of torch.Size([3]).");
    ag_tensor *s = leaf(ag_scalar(ctx, AG_FLOAT64, 5));
    assert_ok(ag_backward(s, NULL, NULL));
    assert_values(ag_grad(s), 0, 1);
    assert_ok(ag_backward(s, NULL, &(ag_backward_opts){.create_graph = true}));
    assert_values(ag_grad(s), 0, 2);
    assert_int_equal(ag_backward(s, NULL, &(ag_backward_opts){.num_threads = -1}), AG_EINVAL);
    assert_int_equal(ag_backward(s, NULL, &(ag_backward_opts){.num_threads = 1025}), AG_EINVAL);
    assert_error(AG_EINVAL, "num_threads must be from 0 (the default) to 1024, got 1025");
    assert_values(ag_grad(s), 0, 2);
}

static void *leaf_root_backward(void *arg) {
    ag_tensor *s = arg;
    intptr_t rc = ag_backward(s, NULL, NULL);
    return (void *)rc;
}

/* A leaf as the root, as a thread's first backward (no engine arrays yet):
 * the graph has no edge at all (UBSan checks the pointer arithmetic). */
static void test_leaf_root_first_backward(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *s = leaf(ag_scalar(ctx, AG_FLOAT64, 5));
    pthread_t th;
    void *rc = (void *)1;
    assert_int_equal(pthread_create(&th, NULL, leaf_root_backward, s), 0);
    assert_int_equal(pthread_join(th, &rc), 0);
    assert_int_equal((intptr_t)rc, 0);
    assert_values(ag_grad(s), 0, 1);
}

typedef struct {
    int order[16];
    int n;
    int id;
} order_log;

typedef struct {
    order_log *log;
    int id;
} order_hook;

static ag_tensor *log_order(ag_tensor *grad, void *ud) {
    order_hook *o = ud;
    (void)grad;
    o->log->order[o->log->n++] = o->id;
    return NULL;
}

/* Ready nodes run latest-created first, as PyTorch's engine does, when
 * the graph runs on one thread (small graphs always do). */
static void test_latest_created_first(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(VEC(ctx, AG_FLOAT32, 1));
    ag_tensor *a = ag_mul_scalar(ctx, x, 2);
    ag_tensor *b = ag_mul_scalar(ctx, x, 3);
    ag_tensor *c = ag_mul_scalar(ctx, x, 4);
    order_log log = {.n = 0};
    order_hook ha = {&log, 1}, hb = {&log, 2}, hc = {&log, 3};
    ag_register_hook(a, log_order, &ha);
    ag_register_hook(b, log_order, &hb);
    ag_register_hook(c, log_order, &hc);
    /* root = (a + c) + b: all three become ready together */
    ag_tensor *root = ag_sum(ctx, ag_add(ctx, ag_add(ctx, a, c), b));
    assert_ok(ag_backward(root, NULL, &(ag_backward_opts){.num_threads = 1}));
    assert_int_equal(log.n, 3);
    assert_int_equal(log.order[0], 3);
    assert_int_equal(log.order[1], 2);
    assert_int_equal(log.order[2], 1);
    assert_values(ag_grad(x), 0, 9);
}

typedef struct {
    ag_ctx *ctx;
    ag_tensor *w;
    int rc;
} nested_state;

static ag_tensor *nested_backward_hook(ag_tensor *grad, void *ud) {
    nested_state *s = ud;
    (void)grad;
    bool prev = ag_set_grad_enabled(true);
    ag_tensor *l = ag_sum(s->ctx, ag_mul_scalar(s->ctx, s->w, 5));
    s->rc = ag_backward(l, NULL, NULL);
    ag_set_grad_enabled(prev);
    return NULL;
}

/* ag_backward from inside a hook runs a backward of its own. */
static void test_nested_backward(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(VEC(ctx, AG_FLOAT32, 1));
    ag_tensor *w = leaf(VEC(ctx, AG_FLOAT32, 1));
    nested_state s = {ctx, w, -100};
    ag_tensor *y = ag_mul_scalar(ctx, x, 2);
    ag_register_hook(y, nested_backward_hook, &s);
    assert_ok(ag_backward(ag_sum(ctx, y), NULL, NULL));
    assert_ok(s.rc);
    assert_values(ag_grad(w), 0, 5);
    assert_values(ag_grad(x), 0, 2);
}

/* After warm-up, building and running the same-shaped graph in a context
 * that is reset every step makes no heap calls. */
static void test_no_heap_calls_when_warm(void **state) {
    ag_ctx *params = *state;
    ag_tensor *w = leaf(ag_randn(params, AG_FLOAT32, 2, (int64_t[]){16, 16}));
    ag_ctx *step = ag_ctx_new();
    uint64_t before = 0;
    for (int it = 0; it < 6; it++) {
        if (it == 4)
            before = ag__heap_calls();
        ag_tensor *h = ag_tanh(step, ag_matmul(step, w, w));
        for (int k = 0; k < 20; k++)
            h = ag_add(step, ag_mul(step, h, h), h);
        assert_ok(ag_backward(ag_mean(step, h), NULL, NULL));
        ag_ctx_reset(step);
    }
    assert_int_equal(ag__heap_calls() - before, 0);
    ag_ctx_free(step);
}

/* The DOT export names every node once, marks leaves and draws each edge. */
static void test_graph_dot(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(VEC(ctx, AG_FLOAT32, 1, 2));
    ag_tensor *c = VEC(ctx, AG_FLOAT32, 3, 4);
    ag_tensor *y = ag_sum(ctx, ag_mul(ctx, ag_mul(ctx, x, x), c));
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_ok(ag_graph_dot(y, f));
    rewind(f);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_non_null(strstr(buf, "digraph agrad {"));
    assert_non_null(strstr(buf, "SumBackward0\\n[]"));
    assert_non_null(strstr(buf, "AccumulateGrad\\nleaf Float [2]"));
    int nodes = 0, edges = 0;
    for (char *p = buf; (p = strstr(p, "[label=")); p++)
        nodes++;
    for (char *p = buf; (p = strstr(p, " -> ")); p++)
        edges++;
    assert_int_equal(nodes, 4); /* Sum, Mul, Mul, AccumulateGrad(x) */
    assert_int_equal(edges, 4); /* Sum->Mul, Mul->Mul, Mul(x,x)->Acc twice */
    assert_int_equal(ag_graph_dot(NULL, stdout), AG_EINVAL);
}

/* A traced backward writes one complete event per node run, with its name. */
static void test_trace(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf(VEC(ctx, AG_FLOAT32, 1, 2));
    ag_tensor *y = ag_sum(ctx, ag_exp(ctx, ag_mul_scalar(ctx, x, 2)));
    assert_ok(ag_trace_start());
    assert_ok(ag_backward(y, NULL, NULL));
    char path[] = "/tmp/agrad_trace_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_ok(ag_trace_stop(path));
    FILE *f = fopen(path, "r");
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(path);
    assert_non_null(strstr(buf, "{\"traceEvents\":["));
    int events = 0;
    for (char *p = buf; (p = strstr(p, "\"ph\":\"X\"")); p++)
        events++;
    assert_int_equal(events, 4); /* Sum, Exp, Mul, AccumulateGrad */
    assert_non_null(strstr(buf, "\"name\":\"ExpBackward0\""));
    assert_non_null(strstr(buf, "\"name\":\"AccumulateGrad\""));
    /* off again: nothing recorded, and a bad path is an error */
    assert_ok(ag_backward(ag_sum(ctx, ag_mul_scalar(ctx, x, 2)), NULL, NULL));
    assert_ok(ag_trace_start());
    assert_int_equal(ag_trace_stop("/nonexistent-dir/trace.json"), AG_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_accumulates_across_calls, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_simple_graph_and_grad_fn, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_retain_graph, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_set_grad_checks, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_hooks, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_leaf_hook, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_hook_wrong_shape_is_an_error, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_retain_grad, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_retain_grad_among_hooks, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_failed_backward_changes_no_grad, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_serial_gives_buffers_back, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_version_counter, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_requires_grad_rules, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_no_grad, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_dead_branch_blocks_nothing, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_explicit_grad_and_leaf_root, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_leaf_root_first_backward, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_latest_created_first, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_nested_backward, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_no_heap_calls_when_warm, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_graph_dot, setup_ctx, teardown_ctx),
        cmocka_unit_test_setup_teardown(test_trace, setup_ctx, teardown_ctx),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
