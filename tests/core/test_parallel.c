/* The multithreaded backward: exact sums into shared leaves whatever the
 * thread count, agreement with the one-thread run on lattices and random
 * DAGs (bitwise in deterministic mode), hooks on worker threads, errors that
 * cancel a backward, backward from inside a hook, several application
 * threads at once, and no heap calls once a repeated backward is warm.
 *
 * Graphs here are small, so the size threshold under which backward stays
 * on the calling thread is lowered to 0: every forking graph runs on the
 * pool. Sums use small integers (exact in float) wherever a lost or doubled
 * contribution must show. */
#include "../common/check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

/* Private knobs of the static library. */
extern _Atomic int64_t ag__par_min_work;
uint64_t ag__heap_calls(void);

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SCALE 1
#else
#define SCALE 4
#endif

static const int thread_counts[] = {1, 2, 4, 8};

static int setup(void **state) {
    atomic_store(&ag__par_min_work, 0);
    ag_set_deterministic(false);
    ag_set_executor(AG_EXECUTOR_WS);
    *state = ag_ctx_new();
    return *state ? 0 : -1;
}

static int teardown(void **state) {
    ag_ctx_free(*state);
    ag_set_deterministic(false);
    ag_set_executor(AG_EXECUTOR_WS);
    return 0;
}

static ag_tensor *leaf_full(ag_ctx *ctx, int64_t n, double v) {
    ag_tensor *t = ag_full(ctx, AG_FLOAT32, 1, (int64_t[]){n}, v);
    assert_nonnull_ag(t);
    assert_ok(ag_requires_grad_(t, true));
    return t;
}

static ag_backward_opts threads(int n) { return (ag_backward_opts){.num_threads = n}; }

/* ---- Fan-in: one leaf, many users ------------------------------------------------ */

/* s = sum_k x * c_k as a chain of adds, each add forking to its branch;
 * returns sum(s). Every c_k is a small integer, different per branch, so a
 * branch's contribution dropped or counted twice changes the total. */
static ag_tensor *fan_in(ag_ctx *ctx, ag_tensor *x, int branches, double *expected) {
    ag_tensor *s = NULL;
    *expected = 0;
    for (int k = 0; k < branches; k++) {
        double c = (double)(k % 13 + 1);
        ag_tensor *b = ag_mul_scalar(ctx, x, c);
        s = s ? ag_add(ctx, s, b) : b;
        *expected += c;
    }
    return ag_sum(ctx, s);
}

static void test_one_leaf_ten_thousand_users(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf_full(ctx, 16, 1.0);
    double expected;
    ag_tensor *root = fan_in(ctx, x, 10000, &expected);
    assert_nonnull_ag(root);
    ag_backward_opts o = threads(4);
    o.retain_graph = true;
    assert_ok(ag_backward(root, NULL, &o));
    for (int64_t i = 0; i < 16; i++)
        assert_true(ag_get(ag_grad(x), i) == expected);
    /* again: .grad accumulates, every buffer reduced exactly once more */
    assert_ok(ag_backward(root, NULL, &o));
    for (int64_t i = 0; i < 16; i++)
        assert_true(ag_get(ag_grad(x), i) == 2 * expected);
}

/* Every thread count, many repetitions: a per-participant leaf buffer that
 * were dropped, reduced twice or shared between participants would show. */
static void test_repetitions_random_threads(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf_full(ctx, 8, 1.0);
    ag_tensor *y = leaf_full(ctx, 8, 2.0);
    unsigned seed = 12345;
    double want_x = 0, want_y = 0;
    ag_ctx *g = ag_ctx_new();
    for (int rep = 0; rep < 500 * SCALE; rep++) {
        seed = seed * 1103515245u + 12345u;
        int nt = 1 + (int)((seed >> 16) % 8);
        double ex;
        /* root = sum(fan_in(x)) + sum(x * y): y gets x, x gets y too */
        ag_tensor *a = fan_in(g, x, 16 + (int)(seed % 32), &ex);
        ag_tensor *root = ag_add(g, a, ag_sum(g, ag_mul(g, x, y)));
        assert_nonnull_ag(root);
        ag_backward_opts o = threads(nt);
        assert_ok(ag_backward(root, NULL, &o));
        want_x += ex + 2.0;
        want_y += 1.0;
        ag_ctx_reset(g);
    }
    ag_ctx_free(g);
    for (int64_t i = 0; i < 8; i++) {
        assert_true(ag_get(ag_grad(x), i) == want_x);
        assert_true(ag_get(ag_grad(y), i) == want_y);
    }
}

/* ---- Many leaves ----------------------------------------------------------------------- */

static void test_many_leaves(void **state) {
    ag_ctx *ctx = *state;
    enum { NL = 600 };
    ag_tensor *leaves[NL];
    for (int i = 0; i < NL; i++)
        leaves[i] = leaf_full(ctx, 4, 1.0);
    for (size_t ti = 0; ti < sizeof thread_counts / sizeof *thread_counts; ti++) {
        ag_ctx *g = ag_ctx_new();
        /* leaf i is used by (i % 3) + 1 nodes with factor i + 1 */
        ag_tensor *s = NULL;
        for (int i = 0; i < NL; i++)
            for (int u = 0; u <= i % 3; u++) {
                ag_tensor *b = ag_mul_scalar(g, leaves[i], (double)(i % 50 + 1));
                s = s ? ag_add(g, s, b) : b;
            }
        ag_backward_opts o = threads(thread_counts[ti]);
        assert_ok(ag_backward(ag_sum(g, s), NULL, &o));
        for (int i = 0; i < NL; i++)
            for (int64_t e = 0; e < 4; e++)
                assert_true(ag_get(ag_grad(leaves[i]), e) == (double)((ti + 1) * (size_t)((i % 3 + 1) * (i % 50 + 1))));
        ag_ctx_free(g);
    }
}

/* ---- Lattices and random DAGs against the one-thread run ---------------------------- */

typedef ag_tensor *(*graph_fn)(ag_ctx *g, ag_tensor *const *leaves, int nleaves, unsigned seed);

/* Width-wide diamonds: node (l+1, i) = tanh(a * 0.5 + b) of nodes (l, i) and
 * (l, i+1 mod width), so every node feeds two and is fed by two. */
static ag_tensor *diamond_lattice(ag_ctx *g, ag_tensor *const *leaves, int nleaves, unsigned seed) {
    (void)seed;
    enum { W = 12, DEPTH = 10 };
    ag_tensor *layer[W], *next[W];
    for (int i = 0; i < W; i++)
        layer[i] = leaves[i % nleaves];
    for (int l = 0; l < DEPTH; l++) {
        for (int i = 0; i < W; i++)
            next[i] = ag_tanh(g, ag_add(g, ag_mul_scalar(g, layer[i], 0.5), layer[(i + 1) % W]));
        memcpy(layer, next, sizeof layer);
    }
    ag_tensor *s = layer[0];
    for (int i = 1; i < W; i++)
        s = ag_add(g, s, layer[i]);
    return ag_sum(g, s);
}

/* Random ops over earlier results, each wrapped in tanh to stay bounded;
 * leaves and results are reused at random, so nodes fan in and out. */
static ag_tensor *random_dag(ag_ctx *g, ag_tensor *const *leaves, int nleaves, unsigned seed) {
    enum { N = 160 };
    ag_tensor *pool[N + 16];
    int np = 0;
    for (int i = 0; i < nleaves; i++)
        pool[np++] = leaves[i];
    for (int k = 0; k < N; k++) {
        seed = seed * 1664525u + 1013904223u;
        ag_tensor *a = pool[(seed >> 8) % (unsigned)np];
        ag_tensor *b = pool[np - 1 - (int)((seed >> 20) % (unsigned)(np < 8 ? np : 8))];
        ag_tensor *r;
        switch ((seed >> 4) % 5) {
        case 0:
            r = ag_add(g, a, b);
            break;
        case 1:
            r = ag_mul(g, a, b);
            break;
        case 2:
            r = ag_sub(g, a, ag_mul_scalar(g, b, 0.75));
            break;
        case 3:
            r = ag_sigmoid(g, ag_add(g, a, b));
            break;
        default:
            r = ag_mul(g, ag_exp(g, ag_mul_scalar(g, a, 0.1)), b);
            break;
        }
        pool[np++] = ag_tanh(g, r);
    }
    ag_tensor *s = pool[np - 1];
    for (int i = 2; i <= 12; i++)
        s = ag_add(g, s, pool[np - i]);
    return ag_sum(g, s);
}

#define NLEAVES 6
#define LEN 33

/* Runs graph at each thread count and compares every leaf's gradient with
 * the one-thread run: bitwise when exact, else within a relative 1e-12. */
static void agree_across_threads(graph_fn graph, unsigned seed, bool exact) {
    ag_ctx *params = ag_ctx_new();
    ag_tensor *leaves[NLEAVES];
    ag_manual_seed(seed);
    for (int i = 0; i < NLEAVES; i++) {
        leaves[i] = ag_randn(params, AG_FLOAT64, 1, (int64_t[]){LEN});
        assert_ok(ag_requires_grad_(leaves[i], true));
    }
    double ref[NLEAVES][LEN];
    ag_ctx *g = ag_ctx_new();
    for (size_t ti = 0; ti < sizeof thread_counts / sizeof *thread_counts; ti++) {
        for (int rep = 0; rep < 3; rep++) {
            for (int i = 0; i < NLEAVES; i++)
                ag_set_grad(leaves[i], NULL);
            ag_tensor *root = graph(g, leaves, NLEAVES, seed);
            assert_nonnull_ag(root);
            ag_backward_opts o = threads(thread_counts[ti]);
            assert_ok(ag_backward(root, NULL, &o));
            for (int i = 0; i < NLEAVES; i++) {
                ag_tensor *gr = ag_grad(leaves[i]);
                for (int64_t e = 0; e < LEN; e++) {
                    double v = gr ? ag_get(gr, e) : 0.0;
                    if (ti == 0 && rep == 0) {
                        ref[i][e] = v;
                        continue;
                    }
                    bool ok = exact ? memcmp(&v, &ref[i][e], sizeof v) == 0
                                    : fabs(v - ref[i][e]) <= 1e-12 * (1.0 + fabs(ref[i][e]));
                    if (!ok) {
                        print_error("seed %u, %d threads, leaf %d [%lld]: %.17g vs %.17g\n", seed, thread_counts[ti], i,
                                    (long long)e, v, ref[i][e]);
                        fail();
                    }
                }
            }
            ag_ctx_reset(g);
        }
    }
    ag_ctx_free(g);
    ag_ctx_free(params);
}

static void test_diamond_lattice(void **state) {
    (void)state;
    agree_across_threads(diamond_lattice, 1, false);
}

static void test_random_dags(void **state) {
    (void)state;
    for (unsigned seed = 1; seed <= 6u * SCALE; seed++)
        agree_across_threads(random_dag, seed, false);
}

static void test_deterministic_bitwise(void **state) {
    (void)state;
    ag_set_deterministic(true);
    agree_across_threads(diamond_lattice, 7, true);
    for (unsigned seed = 100; seed < 100 + 4u * SCALE; seed++)
        agree_across_threads(random_dag, seed, true);
#ifdef AG_TEST_OPENMP
    ag_set_executor(AG_EXECUTOR_OPENMP);
    agree_across_threads(random_dag, 100, true);
    ag_set_executor(AG_EXECUTOR_WS);
#endif
    ag_set_deterministic(false);
}

#ifdef AG_TEST_OPENMP
static void test_openmp_executor(void **state) {
    ag_ctx *ctx = *state;
    assert_ok(ag_set_executor(AG_EXECUTOR_OPENMP));
    assert_int_equal(ag_get_executor(), AG_EXECUTOR_OPENMP);
    ag_tensor *x = leaf_full(ctx, 16, 1.0);
    double expected;
    ag_tensor *root = fan_in(ctx, x, 2000, &expected);
    ag_backward_opts o = threads(2);
    assert_ok(ag_backward(root, NULL, &o));
    for (int64_t i = 0; i < 16; i++)
        assert_true(ag_get(ag_grad(x), i) == expected);
    agree_across_threads(random_dag, 3, false);
    ag_set_executor(AG_EXECUTOR_WS);
}
#endif

/* ---- Trace ------------------------------------------------------------------------------ */

/* How many complete events named name the Chrome JSON at path holds. */
static int trace_count(const char *path, const char *name) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[512], want[128];
    snprintf(want, sizeof want, "{\"name\":\"%s\",\"ph\":\"X\"", name);
    int n = 0;
    while (fgets(line, sizeof line, f)) /* one record a line */
        n += strncmp(line, want, strlen(want)) == 0;
    fclose(f);
    return n;
}

/* A backward that runs on the pool is traced by the pool's tracer: each
 * node once, as a task carrying its node's name, with each executor. */
static void test_trace_names_pool_tasks(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf_full(ctx, 16, 0.5);
    char path[] = "/tmp/agrad_parallel_trace_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    ag_executor execs[] = {AG_EXECUTOR_WS, AG_EXECUTOR_OPENMP};
    for (int e = 0; e < 2; e++) {
        if (ag_set_executor(execs[e]) != 0) { /* a build without OpenMP */
            ag_clear_error();
            continue;
        }
        ag_tensor *y = ag_add(ctx, ag_sum(ctx, ag_exp(ctx, x)), ag_sum(ctx, ag_tanh(ctx, x)));
        assert_ok(ag_trace_start());
        ag_backward_opts o = threads(2);
        assert_ok(ag_backward(y, NULL, &o));
        assert_ok(ag_trace_stop(path));
        assert_int_equal(trace_count(path, "AddBackward0"), 1);
        assert_int_equal(trace_count(path, "SumBackward0"), 2);
        assert_int_equal(trace_count(path, "ExpBackward0"), 1);
        assert_int_equal(trace_count(path, "TanhBackward0"), 1);
        assert_int_equal(trace_count(path, "AccumulateGrad"), 1);
    }
    unlink(path);
    ag_set_executor(AG_EXECUTOR_WS);
}

/* ---- Application threads at once ------------------------------------------------------- */

typedef struct {
    ag_tensor *x, *y;
    int id, failures;
    double ex;
    char why[256];
} app_arg;

#define APP_THREADS 8

static void *app_thread(void *p) {
    app_arg *a = p;
    ag_ctx *g = ag_ctx_new();
    for (int it = 0; it < 20 * SCALE; it++) {
        double ex;
        ag_tensor *f = fan_in(g, a->x, 40 + a->id, &ex);
        ag_tensor *root = f ? ag_add(g, f, ag_sum(g, ag_mul(g, a->x, a->y))) : NULL;
        ag_backward_opts o = threads(1 + (a->id + it) % 4);
        int rc = root ? ag_backward(root, NULL, &o) : -1;
        if (rc && !a->failures++)
            snprintf(a->why, sizeof a->why, "%s", ag_last_error());
        a->ex += ex + 2.0; /* x also gets y = 2 */
        ag_ctx_reset(g);
    }
    ag_ctx_free(g);
    return NULL;
}

static void test_application_threads_shared_leaves(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf_full(ctx, 32, 1.0);
    ag_tensor *y = leaf_full(ctx, 32, 2.0);
    pthread_t th[APP_THREADS];
    app_arg args[APP_THREADS];
    for (int i = 0; i < APP_THREADS; i++) {
        args[i] = (app_arg){.x = x, .y = y, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, app_thread, &args[i]), 0);
    }
    double want_x = 0, want_y = 0;
    for (int i = 0; i < APP_THREADS; i++) {
        pthread_join(th[i], NULL);
        if (args[i].failures)
            print_error("thread %d: %d failures: %s\n", i, args[i].failures, args[i].why);
        assert_int_equal(args[i].failures, 0);
        want_x += args[i].ex;
        want_y += 20.0 * SCALE;
    }
    for (int64_t e = 0; e < 32; e++) {
        assert_true(ag_get(ag_grad(x), e) == want_x);
        assert_true(ag_get(ag_grad(y), e) == want_y);
    }
}

/* ---- Hooks on worker threads ------------------------------------------------------------- */

typedef struct {
    atomic_int calls;
    double seen; /* first element of the gradient the hook got */
} hook_log;

static ag_tensor *log_hook(ag_tensor *grad, void *ud) {
    hook_log *h = ud;
    h->seen = ag_get(grad, 0);
    atomic_fetch_add(&h->calls, 1);
    return NULL;
}

static ag_tensor *double_hook(ag_tensor *grad, void *ud) { return ag_mul_scalar(ud, grad, 2.0); }

static void test_hooks_once_with_full_gradient(void **state) {
    ag_ctx *ctx = *state;
    for (size_t ti = 0; ti < sizeof thread_counts / sizeof *thread_counts; ti++) {
        ag_ctx *g = ag_ctx_new();
        ag_tensor *x = leaf_full(g, 8, 1.0);
        ag_tensor *h = ag_mul_scalar(g, x, 1.0); /* interior, used by 300 branches */
        hook_log hl = {0}, xl = {0};
        assert_true(ag_register_hook(h, log_hook, &hl) > 0);
        assert_true(ag_register_hook(x, double_hook, ctx) > 0); /* leaf: doubles the sum */
        assert_true(ag_register_hook(x, log_hook, &xl) > 0);    /* sees the doubled sum */
        double expected;
        ag_tensor *root = fan_in(g, h, 300, &expected);
        ag_backward_opts o = threads(thread_counts[ti]);
        assert_ok(ag_backward(root, NULL, &o));
        assert_int_equal(atomic_load(&hl.calls), 1);
        assert_true(hl.seen == expected);
        assert_int_equal(atomic_load(&xl.calls), 1);
        assert_true(xl.seen == 2 * expected);
        assert_true(ag_get(ag_grad(x), 0) == 2 * expected);
        ag_ctx_free(g);
    }
}

/* Leaf hooks run with grad mode off on every thread, as node hooks do: a
 * backward with many leaves finishes them on the pool's threads too, and
 * their grad mode is on by default. The first leaf hook on the calling
 * thread waits a little for a hook on another thread, so that some leaves
 * surely finish on the pool on a busy machine. */
typedef struct {
    pthread_t caller;
    atomic_int on, elsewhere;
    atomic_bool waited;
} leaf_mode_log;

static ag_tensor *grad_mode_hook(ag_tensor *grad, void *ud) {
    (void)grad;
    leaf_mode_log *l = ud;
    if (ag_is_grad_enabled())
        atomic_fetch_add(&l->on, 1);
    if (!pthread_equal(pthread_self(), l->caller)) {
        atomic_fetch_add(&l->elsewhere, 1);
    } else if (!atomic_exchange(&l->waited, true)) {
        for (int i = 0; i < 20000 && !atomic_load(&l->elsewhere); i++)
            usleep(10);
    }
    return NULL;
}

static void test_leaf_hooks_without_grad_mode(void **state) {
    (void)state;
    enum { NL = 32, LEAF_LEN = 4096 };
    int elsewhere = 0;
    for (int ex = 0; ex < 2; ex++) {
#ifndef AG_TEST_OPENMP
        if (ex == 1)
            break;
#endif
        ag_set_executor(ex ? AG_EXECUTOR_OPENMP : AG_EXECUTOR_WS);
        for (size_t ti = 0; ti < sizeof thread_counts / sizeof *thread_counts; ti++) {
            ag_ctx *g = ag_ctx_new();
            leaf_mode_log l = {.caller = pthread_self(), .waited = ex == 1 || thread_counts[ti] == 1};
            ag_tensor *s = NULL;
            for (int i = 0; i < NL; i++) {
                ag_tensor *x = leaf_full(g, LEAF_LEN, 1.0);
                assert_true(ag_register_hook(x, grad_mode_hook, &l) > 0);
                ag_tensor *b = ag_add(g, ag_tanh(g, ag_mul_scalar(g, x, 0.5)), ag_mul_scalar(g, x, 2.0));
                s = s ? ag_add(g, s, b) : b;
            }
            ag_backward_opts o = threads(thread_counts[ti]);
            assert_ok(ag_backward(ag_sum(g, s), NULL, &o));
            if (atomic_load(&l.on))
                print_error("executor %d, %d threads: %d leaf hooks ran with grad mode on\n", ex, thread_counts[ti],
                            atomic_load(&l.on));
            assert_int_equal(atomic_load(&l.on), 0);
            assert_true(ag_is_grad_enabled());
            elsewhere += atomic_load(&l.elsewhere);
            ag_ctx_free(g);
        }
    }
    (void)elsewhere; /* how many ran on the pool: a matter of scheduling, not asserted */
    ag_set_executor(AG_EXECUTOR_WS);
}

/* ---- Errors cancel the backward -------------------------------------------------------- */

static ag_tensor *bad_shape_hook(ag_tensor *grad, void *ud) {
    (void)grad;
    return ag_zeros(ud, AG_FLOAT32, 1, (int64_t[]){3});
}

static void test_error_in_hook_cancels(void **state) {
    ag_ctx *ctx = *state;
    for (size_t ti = 0; ti < sizeof thread_counts / sizeof *thread_counts; ti++) {
        ag_ctx *g = ag_ctx_new();
        ag_tensor *x = leaf_full(g, 8, 1.0);
        ag_tensor *h = ag_mul_scalar(g, x, 1.0);
        assert_true(ag_register_hook(h, bad_shape_hook, ctx) > 0);
        double expected;
        ag_tensor *root = fan_in(g, h, 200, &expected);
        ag_backward_opts o = threads(thread_counts[ti]);
        assert_int_equal(ag_backward(root, NULL, &o), AG_ESHAPE);
        assert_error(AG_ESHAPE, "hook 'hook' has changed the size of value");
        assert_null(ag_grad(x)); /* all or nothing */
        ag_ctx_free(g);
    }
}

static void test_error_in_node_cancels(void **state) {
    (void)state;
    for (size_t ti = 0; ti < sizeof thread_counts / sizeof *thread_counts; ti++) {
        ag_ctx *g = ag_ctx_new();
        ag_tensor *x = leaf_full(g, 8, 1.0);
        double expected;
        /* tanh saves its output; the second backward finds it freed */
        ag_tensor *root = fan_in(g, ag_tanh(g, x), 100, &expected);
        ag_backward_opts o = threads(thread_counts[ti]);
        assert_ok(ag_backward(root, NULL, &o));
        const ag_tensor *gx = ag_grad(x);
        float before[8];
        memcpy(before, ag_data_ptr(gx), sizeof before);
        assert_int_equal(ag_backward(root, NULL, &o), AG_ESTATE);
        assert_error(AG_ESTATE, "Trying to backward through the graph a second time");
        /* all or nothing: the nodes that ran before the error added nothing */
        assert_ptr_equal(ag_grad(x), gx);
        assert_memory_equal(ag_data_ptr(gx), before, sizeof before);
        ag_ctx_free(g);
    }
}

/* ---- Backward from inside a hook ----------------------------------------------------- */

typedef struct {
    ag_tensor *other_root, *other_leaf;
    atomic_int status;
} nested_arg;

static ag_tensor *nested_backward_hook(ag_tensor *grad, void *ud) {
    nested_arg *n = ud;
    (void)grad;
    ag_backward_opts o = threads(4);
    atomic_store(&n->status, ag_backward(n->other_root, NULL, &o));
    return NULL;
}

static void test_backward_from_hook(void **state) {
    (void)state;
    for (size_t ti = 0; ti < sizeof thread_counts / sizeof *thread_counts; ti++) {
        ag_ctx *g = ag_ctx_new();
        ag_tensor *x = leaf_full(g, 8, 1.0);
        ag_tensor *z = leaf_full(g, 8, 1.0);
        double ez, ex;
        nested_arg n = {.other_root = fan_in(g, z, 150, &ez), .other_leaf = z};
        ag_tensor *h = ag_mul_scalar(g, x, 1.0);
        assert_true(ag_register_hook(h, nested_backward_hook, &n) > 0);
        ag_tensor *root = fan_in(g, h, 150, &ex);
        ag_backward_opts o = threads(thread_counts[ti]);
        assert_ok(ag_backward(root, NULL, &o));
        assert_int_equal(atomic_load(&n.status), 0);
        assert_true(ag_get(ag_grad(x), 0) == ex);
        assert_true(ag_get(ag_grad(z), 0) == ez);
        ag_ctx_free(g);
    }
}

/* ---- Tiled matrix products ------------------------------------------------------------- */

/* Products big enough to be cut into tiles run on the pool: the forward
 * matches the naive sum, and gradients are bitwise the same at every thread
 * count (tiles depend on the shape only). m >= 128 cuts rows, else columns. */
static void big_matmul_case(int64_t m, int64_t k, int64_t n) {
    ag_ctx *p = ag_ctx_new();
    ag_manual_seed(42);
    ag_tensor *a = ag_randn(p, AG_FLOAT64, 2, (int64_t[]){m, k});
    ag_tensor *b = ag_randn(p, AG_FLOAT64, 2, (int64_t[]){k, n});
    assert_ok(ag_requires_grad_(a, true));
    assert_ok(ag_requires_grad_(b, true));
    const double *A = ag_data_ptr(a), *B = ag_data_ptr(b);
    double *ref_da = NULL, *ref_db = NULL;
    for (size_t ti = 0; ti < sizeof thread_counts / sizeof *thread_counts; ti++) {
        ag_set_num_threads(thread_counts[ti]);
        ag_ctx *g = ag_ctx_new();
        ag_tensor *c = ag_matmul(g, a, b);
        assert_nonnull_ag(c);
        const double *C = ag_data_ptr(c);
        for (int64_t i = 0; i < m; i += 37)
            for (int64_t j = 0; j < n; j += 11) {
                double acc = 0;
                for (int64_t q = 0; q < k; q++)
                    acc += A[i * k + q] * B[q * n + j];
                assert_true(fabs(C[i * n + j] - acc) <= 1e-10 * (1 + fabs(acc)));
            }
        ag_set_grad(a, NULL);
        ag_set_grad(b, NULL);
        ag_backward_opts o = threads(thread_counts[ti]);
        assert_ok(ag_backward(ag_sum(g, ag_tanh(g, c)), NULL, &o));
        const double *da = ag_data_ptr(ag_grad(a)), *db = ag_data_ptr(ag_grad(b));
        if (ti == 0) {
            ref_da = malloc((size_t)(m * k) * sizeof *ref_da);
            ref_db = malloc((size_t)(k * n) * sizeof *ref_db);
            memcpy(ref_da, da, (size_t)(m * k) * sizeof *ref_da);
            memcpy(ref_db, db, (size_t)(k * n) * sizeof *ref_db);
        } else {
            assert_memory_equal(da, ref_da, (size_t)(m * k) * sizeof *da);
            assert_memory_equal(db, ref_db, (size_t)(k * n) * sizeof *db);
        }
        ag_ctx_free(g);
    }
    ag_set_num_threads(0);
    free(ref_da);
    free(ref_db);
    ag_ctx_free(p);
}

static void test_big_matmul_tiles(void **state) {
    (void)state;
    big_matmul_case(200, 150, 160); /* rows */
    big_matmul_case(100, 300, 160); /* columns */
}

/* Big unary ops run in chunks on the pool: every element as the formula
 * says, at every thread count. */
static void test_big_unary_chunks(void **state) {
    (void)state;
    enum { N = 300001 };
    ag_ctx *p = ag_ctx_new();
    ag_manual_seed(5);
    ag_tensor *x = ag_randn(p, AG_FLOAT64, 1, (int64_t[]){N});
    assert_ok(ag_requires_grad_(x, true));
    const double *X = ag_data_ptr(x);
    for (size_t ti = 0; ti < sizeof thread_counts / sizeof *thread_counts; ti++) {
        ag_set_num_threads(thread_counts[ti]);
        ag_ctx *g = ag_ctx_new();
        ag_tensor *y = ag_tanh(g, x);
        const double *Y = ag_data_ptr(y);
        ag_set_grad(x, NULL);
        ag_backward_opts o = threads(thread_counts[ti]);
        assert_ok(ag_backward(ag_sum(g, ag_sigmoid(g, y)), NULL, &o));
        const double *D = ag_data_ptr(ag_grad(x));
        /* a big sum: the same bits at every thread count, close to the plain sum */
        double plain = 0;
        for (int64_t i = 0; i < N; i++)
            plain += X[i];
        double got = ag_get(ag_sum(g, x), 0);
        assert_true(fabs(got - plain) <= 1e-9);
        static double first_sum;
        if (ti == 0)
            first_sum = got;
        assert_memory_equal(&got, &first_sum, sizeof got);
        for (int64_t i = 0; i < N; i++) {
            double t = tanh(X[i]), sg = 1 / (1 + exp(-t));
            assert_true(fabs(Y[i] - t) <= 0x1p-51 * fabs(t)); /* vector math: within 2 ulp of libm */
            assert_true(fabs(D[i] - sg * (1 - sg) * (1 - t * t)) <= 1e-15);
        }
        ag_ctx_free(g);
    }
    ag_set_num_threads(0);
    ag_ctx_free(p);
}

/* ---- Memory: a warm repeated backward makes no heap calls --------------------------- */

static void test_warm_backward_no_heap_calls(void **state) {
    ag_ctx *ctx = *state;
    ag_tensor *x = leaf_full(ctx, 256, 1.0);
    ag_tensor *w = leaf_full(ctx, 256, 0.5);
    for (int det = 0; det < 2; det++) {
        ag_set_deterministic(det);
        for (size_t ti = 0; ti < sizeof thread_counts / sizeof *thread_counts; ti++) {
            ag_ctx *g = ag_ctx_new();
            uint64_t before = 0;
            for (int rep = 0; rep < 12; rep++) {
                if (rep == 8)
                    before = ag__heap_calls();
                ag_tensor *s = NULL;
                for (int k = 0; k < 64; k++) {
                    ag_tensor *b = ag_tanh(g, ag_mul(g, x, ag_mul_scalar(g, w, (double)k)));
                    s = s ? ag_add(g, s, b) : b;
                }
                ag_backward_opts o = threads(thread_counts[ti]);
                assert_ok(ag_backward(ag_sum(g, s), NULL, &o));
                ag_ctx_reset(g);
            }
            uint64_t calls = ag__heap_calls() - before;
            if (calls)
                print_error("%d threads, deterministic %d: %llu heap calls in 4 warm backwards\n", thread_counts[ti],
                            det, (unsigned long long)calls);
            assert_int_equal(calls, 0);
            ag_ctx_free(g);
        }
    }
    ag_set_deterministic(false);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_leaf_ten_thousand_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repetitions_random_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_leaves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_diamond_lattice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_dags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deterministic_bitwise, setup, teardown),
#ifdef AG_TEST_OPENMP
        cmocka_unit_test_setup_teardown(test_openmp_executor, setup, teardown),
#endif
        cmocka_unit_test_setup_teardown(test_trace_names_pool_tasks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_application_threads_shared_leaves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hooks_once_with_full_gradient, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leaf_hooks_without_grad_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_in_hook_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_in_node_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backward_from_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_matmul_tiles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_unary_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_warm_backward_no_heap_calls, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
