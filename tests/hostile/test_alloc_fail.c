/* Failed allocations, SQLite's way: a representative program (a forward, a
 * backward on one thread and on the pool, optimizer steps, printing,
 * kernels and tasks on a pool) runs
 * once for every N with its N-th allocation made to fail (contexts,
 * tensors, nodes, the engine's arrays, pools and their deques, and thread
 * starts), once failing that allocation only and once failing every one
 * from it on. Each run must end in success or in AG_ENOMEM with a message
 * (a thread that cannot start may give another code, with a message),
 * without a crash, a hang or a leak (the ASan build checks), and a
 * backward that failed must leave every .grad as it was.
 *
 * Each run is a child process, so it starts from nothing (no pool, no
 * engine arrays kept from an earlier run) and its leaks are its own; the
 * parent starts no threads of agrad's. */
#include "hostile.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/internal.h"
#include "fault.h"
#include "ws.h"

extern _Atomic int64_t ag__par_min_work;

#define MAX_N 100000
#define R 64
#define C 80
#define IN 256

/* What a child run reports to the parent. */
typedef struct {
    int64_t calls, hits, thread_hits;
    int rc;
    char msg[256]; /* ag_last_error() of the run */
    char why[512]; /* the broken rule, if any */
} report;

static report *shared;

/* ---- Checks inside a child (no cmocka there) ------------------------------------ */

#define BROKEN(...)                                                                                                    \
    do {                                                                                                               \
        snprintf(shared->why, sizeof shared->why, __VA_ARGS__);                                                        \
        return 1000;                                                                                                   \
    } while (0)

/* Every result of an op is checked: NULL must come with an error. */
#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        if (!(x))                                                                                                      \
            return ag_last_status() < 0 ? ag_last_status() : 2000;                                                     \
    } while (0)
#define TRY_RC(x)                                                                                                      \
    do {                                                                                                               \
        int rc_ = (x);                                                                                                 \
        if (rc_ < 0)                                                                                                   \
            return rc_;                                                                                                \
    } while (0)

/* The .grad of each leaf, copied (with malloc: not counted) before a
 * backward, to compare when it fails. */
typedef struct {
    int n;
    ag_tensor *leaf[8];
    bool had[8];
    double *vals[8];
} grads_snapshot;

static void snapshot(grads_snapshot *s, ag_tensor *const *leaves, int n) {
    s->n = n;
    for (int i = 0; i < n; i++) {
        ag_tensor *g = ag_grad(leaves[i]);
        s->leaf[i] = leaves[i];
        s->had[i] = g != NULL;
        s->vals[i] = NULL;
        if (g) {
            s->vals[i] = malloc((size_t)ag_numel(g) * sizeof(double) + 1);
            ag_copy_to(g, s->vals[i], AG_FLOAT64);
        }
    }
}

/* 0 when every .grad is as snapshotted; frees the snapshot. */
static int unchanged(grads_snapshot *s) {
    int bad = 0;
    for (int i = 0; i < s->n; i++) {
        ag_tensor *g = ag_grad(s->leaf[i]);
        if ((g != NULL) != s->had[i]) {
            bad = 1;
        } else if (g) {
            double *now = malloc((size_t)ag_numel(g) * sizeof(double) + 1);
            ag_copy_to(g, now, AG_FLOAT64);
            bad |= memcmp(now, s->vals[i], (size_t)ag_numel(g) * sizeof(double)) != 0;
            free(now);
        }
        free(s->vals[i]);
    }
    return bad;
}

/* ag_backward, checking that a failure leaves every .grad as it was. */
static int backward_checked(ag_tensor *root, ag_tensor *const *leaves, int n, const ag_backward_opts *o) {
    grads_snapshot s;
    snapshot(&s, leaves, n);
    ag_clear_error();
    int rc = ag_backward(root, NULL, o);
    int changed = unchanged(&s);
    if (rc < 0 && changed)
        BROKEN("a backward that failed (%d: %s) changed a .grad", rc, ag_last_error());
    return rc;
}

/* ---- The programs ---------------------------------------------------------------- */

static ag_tensor *keep_hook(ag_tensor *g, void *ud) {
    (void)ud;
    (void)g;
    return NULL; /* keep the gradient; the hook's run is what is tested */
}

static int forward_ops(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *b, ag_tensor **out) {
    ag_tensor *h, *y, *z;
    TRY(h = ag_tanh(ctx, ag_linear(ctx, x, w, b)));
    TRY(y = ag_softmax(ctx, ag_mul(ctx, h, ag_sigmoid(ctx, h)), 1));
    TRY(z = ag_cat(ctx, (ag_tensor *[]){y, ag_relu(ctx, h)}, 2, 1));
    TRY(z = ag_narrow(ctx, ag_transpose(ctx, z, 0, 1), 0, 1, 5));
    TRY(z = ag_index_select(ctx, z, 1, (int64_t[]){3, 0, 3}, 3));
    TRY(z = ag_add(ctx, ag_sum_dim(ctx, z, 0, true), ag_mean(ctx, ag_exp(ctx, y))));
    ag_tensor *m;
    TRY(m = ag_bmm(ctx, ag_reshape(ctx, h, 3, (int64_t[]){2, R / 2, C}),
                   ag_reshape(ctx, y, 3, (int64_t[]){2, C, R / 2})));
    ag_tensor *b2;
    TRY(b2 = ag_expand(ctx, ag_narrow(ctx, b, 0, 0, R / 2), 3, (int64_t[]){2, R / 2, -1}));
    TRY(m = ag_maximum(ctx, ag_abs(ctx, m), ag_clamp(ctx, b2, 0, NAN)));
    TRY(*out = ag_add(ctx, ag_sum(ctx, z), ag_mse_loss(ctx, m, ag_neg(ctx, m))));
    return 0;
}

/* x (R, IN) an input, w (C, IN) and b (C) leaves: big enough that the
 * arenas grow during a backward, so failures land in the middle of one */
static int make_inputs(ag_ctx *ctx, ag_tensor **x, ag_tensor **w, ag_tensor **b) {
    ag_manual_seed(7);
    TRY(*x = ag_randn(ctx, AG_FLOAT32, 2, (int64_t[]){R, IN}));
    TRY(*w = ag_randn(ctx, AG_FLOAT32, 2, (int64_t[]){C, IN}));
    TRY(*b = ag_rand(ctx, AG_FLOAT32, 1, (int64_t[]){C}));
    TRY_RC(ag_requires_grad_(*w, true));
    TRY_RC(ag_requires_grad_(*b, true));
    return 0;
}

static int prog_forward(void) {
    ag_ctx *ctx = ag_ctx_new();
    TRY(ctx);
    ag_tensor *x, *w, *b, *loss;
    int rc = make_inputs(ctx, &x, &w, &b);
    if (!rc)
        rc = forward_ops(ctx, x, w, b, &loss);
    ag_ctx_free(ctx);
    return rc;
}

/* Two backwards into the same leaves (the second accumulates), on one
 * thread or on the pool, with a hook and a retained grad on the way. */
static int backward_prog(int threads, bool det) {
    ag_set_deterministic(det);
    ag_ctx *params = ag_ctx_new(), *step = ag_ctx_new();
    int rc = 0;
    if (!params || !step) {
        rc = ag_last_status();
        goto out;
    }
    ag_tensor *x, *w, *b, *loss;
    if ((rc = make_inputs(params, &x, &w, &b)))
        goto out;
    ag_tensor *leaves[] = {w, b};
    ag_backward_opts o = {.num_threads = threads, .retain_graph = true};
    for (int round = 0; round < 2 && !rc; round++) {
        if ((rc = forward_ops(step, x, w, b, &loss)))
            break;
        int hook = ag_register_hook(w, keep_hook, NULL);
        if ((rc = hook) < 0 || (rc = ag_retain_grad(loss)) < 0)
            break;
        if ((rc = backward_checked(loss, leaves, 2, &o)))
            break;
        ag_ctx_reset(step);
        if ((rc = ag_remove_hook(w, hook)))
            break;
    }
out:
    ag_ctx_free(step);
    ag_ctx_free(params);
    ag_set_deterministic(false);
    return rc;
}

static int prog_backward_serial(void) { return backward_prog(1, false); }
static int prog_backward_parallel(void) { return backward_prog(2, false); }
static int prog_backward_parallel_det(void) { return backward_prog(3, true); }

/* On one thread: the pool's part is the kernels' and the backward's. */
static int prog_optim(void) {
    ag_set_num_threads(1);
    ag_ctx *params = ag_ctx_new(), *step = ag_ctx_new();
    int rc = 0;
    if (!params || !step) {
        rc = ag_last_status();
        goto out;
    }
    ag_tensor *x, *w, *b, *loss;
    if ((rc = make_inputs(params, &x, &w, &b)))
        goto out;
    ag_tensor *ps[] = {w, b};
    ag_optim *sgd = ag_sgd_new(params, ps, 2, &(ag_sgd_opts){.lr = 0.1, .momentum = 0.9, .nesterov = true});
    ag_optim *adam = ag_adam_new(params, ps, 2, &(ag_adam_opts){.amsgrad = true, .weight_decay = 0.01});
    if (!sgd || !adam) {
        rc = ag_last_status();
        goto out;
    }
    for (int it = 0; it < 2 && !rc; it++) {
        ag_optim *o = it ? adam : sgd;
        if ((rc = ag_optim_zero_grad(o)) || (rc = forward_ops(step, x, w, b, &loss)) ||
            (rc = ag_backward(loss, NULL, NULL)) || (rc = ag_optim_step(o)))
            break;
        ag_ctx_reset(step);
    }
out:
    ag_ctx_free(step);
    ag_ctx_free(params);
    ag_set_num_threads(0);
    return rc;
}

/* Kernels big enough to split over a pool of 2 threads, started here:
 * when the pool cannot start (memory, a thread) or a thread cannot take
 * part, the kernel runs on the calling thread, with the same result. */
static int prog_kernels(void) {
    ag_set_num_threads(2);
    ag_ctx *ctx = ag_ctx_new();
    int rc = 0;
    if (!ctx) {
        rc = ag_last_status();
        goto out;
    }
    const int64_t n = (int64_t)1 << 18;
    ag_tensor *x, *y, *s;
    if (!(x = ag_full(ctx, AG_FLOAT64, 1, &n, 0.25)) || !(y = ag_tanh(ctx, x)) || !(s = ag_sum(ctx, y))) {
        rc = ag_last_status();
        goto out;
    }
    const double *yd = ag_data_ptr(y);
    for (int64_t i = 0; i < n; i++)
        if (yd[i] != tanh(0.25))
            BROKEN("tanh wrong at %lld after a failed allocation", (long long)i);
    if (fabs(ag_item(s) - (double)n * tanh(0.25)) > 1e-6 * (double)n)
        BROKEN("sum %.17g wrong after a failed allocation", ag_item(s));
out:
    ag_ctx_free(ctx);
    ag_set_num_threads(0);
    return rc;
}

static void pfor_count(void *arg, int64_t lo, int64_t hi) { atomic_fetch_add((_Atomic int64_t *)arg, hi - lo); }

/* 600 tasks spawned at once from a task: more than a deque's first
 * array holds, so it grows (or, when it cannot, runs them at once). */
#define SPAWNS 600
typedef struct {
    ws_task tasks[SPAWNS];
    _Atomic int64_t ran;
    int rc;
} spawn_job;

static void count_task(ws_task *t) { atomic_fetch_add(&((spawn_job *)t->arg)->ran, 1); }

static void spawn_many(ws_task *t) {
    spawn_job *j = t->arg;
    ws_group g;
    if ((j->rc = ws_group_init(&g, NULL)))
        return;
    for (int i = 0; i < SPAWNS; i++) {
        ws_task_init(&j->tasks[i], count_task, j);
        ws_spawn(&g, &j->tasks[i]);
    }
    j->rc = ws_group_wait(&g);
}

/* The scheduler alone: a pool starting, running, growing its deques. */
static int prog_pool(void) {
    ws_pool *pool;
    ws_pool_opts o = WS_POOL_OPTS_INIT;
    o.num_threads = 2;
    int rc = ws_pool_create(&pool, &o);
    if (rc)
        return ag__error(rc == WS_ENOMEM ? AG_ENOMEM : AG_ESTATE, "ws_pool_create: %s", ws_strerror(rc));
    _Atomic int64_t count = 0;
    for (int round = 0; round < 3 && !rc; round++) {
        atomic_store(&count, 0);
        rc = ws_parallel_for(pool, 0, 100000, 1, pfor_count, &count);
        if (rc)
            rc = ag__error(rc == WS_ENOMEM ? AG_ENOMEM : AG_ESTATE, "ws_parallel_for: %s", ws_strerror(rc));
        else if (atomic_load(&count) != 100000)
            BROKEN("parallel_for covered %lld of 100000", (long long)atomic_load(&count));
    }
    static spawn_job job;
    atomic_store(&job.ran, 0);
    if (!rc && (rc = ws_run(pool, spawn_many, &job)))
        rc = ag__error(rc == WS_ENOMEM ? AG_ENOMEM : AG_ESTATE, "ws_run: %s", ws_strerror(rc));
    else if (!rc && (job.rc || atomic_load(&job.ran) != SPAWNS))
        BROKEN("a group of %d tasks ran %lld (%s)", SPAWNS, (long long)atomic_load(&job.ran), ws_strerror(job.rc));
    int drc = ws_pool_destroy(pool);
    if (drc)
        BROKEN("ws_pool_destroy: %s", ws_strerror(drc));
    return rc;
}

static int prog_print(void) {
    ag_ctx *ctx = ag_ctx_new();
    TRY(ctx);
    int rc = 0;
    FILE *devnull = fopen("/dev/null", "w");
    ag_tensor *x, *w, *b, *loss;
    if ((rc = make_inputs(ctx, &x, &w, &b)) || (rc = forward_ops(ctx, x, w, b, &loss)))
        goto out;
    ag_tensor *big = ag_randn(ctx, AG_FLOAT64, 3, (int64_t[]){11, 12, 13});
    ag_tensor *all[] = {x, loss, big, ag_zeros(ctx, AG_FLOAT32, 2, (int64_t[]){0, 3})};
    for (size_t i = 0; i < sizeof all / sizeof all[0] && !rc; i++) {
        char *s = ag_to_string(all[i]);
        if (!s) {
            rc = ag_last_status();
            break;
        }
        free(s);
        rc = ag_fprint(devnull, all[i]);
    }
    if (!rc)
        rc = ag_graph_dot(loss, devnull);
out:
    fclose(devnull);
    ag_ctx_free(ctx);
    return rc;
}

/* ---- Running every N in a child ------------------------------------------------------ */

typedef int (*program)(void);

static void *run_in_thread(void *arg) {
    program p = (program)(uintptr_t)arg;
    shared->rc = p();
    ag__fault_inject(-1, false);
    snprintf(shared->msg, sizeof shared->msg, "%s", ag_last_error());
    return NULL;
}

/* The child: arm failure N (0: count only), run the program on a thread
 * of its own (whose engine arrays go when it ends), judge, exit. */
static void child(program p, int64_t n, bool persistent) {
    atomic_store(&ws__fault_hook, ag__fault_should_fail);
    atomic_store(&ag__par_min_work, 0);
    ag__fault_inject(n, persistent);
    pthread_t t;
    if (pthread_create(&t, NULL, run_in_thread, (void *)(uintptr_t)p) != 0)
        _exit(90);
    pthread_join(t, NULL);
    shared->calls = ag__fault_calls();
    shared->hits = ag__fault_hits();
    shared->thread_hits = ag__fault_thread_hits();
    int rc = shared->rc;
    if (rc == 1000)
        exit(1);
    if (rc > 0) {
        snprintf(shared->why, sizeof shared->why, "an op returned NULL and no error code (%s)", shared->msg);
        exit(1);
    }
    if (rc != 0 && !shared->msg[0]) {
        snprintf(shared->why, sizeof shared->why, "failed with %d and no message", rc);
        exit(1);
    }
    if (rc != 0 && shared->hits == 0) {
        snprintf(shared->why, sizeof shared->why, "failed with %d (%s) though no allocation failed", rc, shared->msg);
        exit(1);
    }
    if (rc != 0 && rc != AG_ENOMEM && !(shared->thread_hits > 0 && rc < 0) &&
        !strstr(shared->msg, "thread pool: out of memory")) {
        snprintf(shared->why, sizeof shared->why, "an allocation failed, and the error is %d: %s", rc, shared->msg);
        exit(1);
    }
    exit(0); /* LeakSanitizer looks at the child's heap here */
}

/* Runs p with failure N for every N until a run has no failure to inject;
 * returns the number of N that failed an allocation. */
static int64_t every_n(const char *name, program p, bool persistent) {
    int64_t points = 0;
    for (int64_t n = 1; n <= MAX_N; n++) {
        memset(shared, 0, sizeof *shared);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            child(p, n, persistent);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            print_error("%s, allocation %lld failing%s: %s %d; %s\n", name, (long long)n,
                        persistent ? " and every one after it" : "",
                        WIFSIGNALED(st) ? "killed by signal" : "exit status",
                        WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), shared->why);
            fail();
        }
        if (shared->hits == 0) /* past the last allocation: the run succeeded untouched */
            return points;
        points++;
    }
    fail_msg("%s: still allocating after %d runs", name, MAX_N);
    return points;
}

static void run_program(const char *name, program p) {
    int64_t once = every_n(name, p, false);
    int64_t from = every_n(name, p, true);
    print_message("%s: %lld allocation points, each failed alone and from it on\n", name, (long long)once);
    assert_true(once > 0 && from > 0);
}

static void test_forward(void **state) {
    (void)state;
    run_program("forward", prog_forward);
}

static void test_optimizer_steps(void **state) {
    (void)state;
    run_program("optimizer steps", prog_optim);
}

static void test_print(void **state) {
    (void)state;
    run_program("print and DOT", prog_print);
}

static void test_kernels_on_the_pool(void **state) {
    (void)state;
    run_program("kernels on a pool of 2", prog_kernels);
}

static void test_pool(void **state) {
    (void)state;
    run_program("a pool of the scheduler", prog_pool);
}

static void test_backward_serial(void **state) {
    (void)state;
    run_program("backward on one thread", prog_backward_serial);
}

static void test_backward_parallel(void **state) {
    (void)state;
    run_program("backward on 2 threads", prog_backward_parallel);
}

static void test_backward_parallel_deterministic(void **state) {
    (void)state;
    run_program("deterministic backward on 3 threads", prog_backward_parallel_det);
}

static int group_setup(void **state) {
    (void)state;
    shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return shared == MAP_FAILED ? -1 : 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward),
        cmocka_unit_test(test_print),
        cmocka_unit_test(test_optimizer_steps),
        cmocka_unit_test(test_kernels_on_the_pool),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_backward_serial),
        cmocka_unit_test(test_backward_parallel),
        cmocka_unit_test(test_backward_parallel_deterministic),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
