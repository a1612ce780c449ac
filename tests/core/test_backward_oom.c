/* A backward that runs out of memory, or cannot start a thread, fails
 * with AG_ENOMEM and changes no .grad. The program is linked with
 * -Wl,--wrap for the allocators agrad and its scheduler call
 * (aligned_alloc; mallocx with jemalloc) and for pthread_create, so a
 * test can make the Nth allocation of its own thread fail, or the
 * allocation of a participant entering the pool, or the next thread. */
#include "../common/check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "ws_internal.h" /* sizeof(ws__part): what entering the pool allocates */

extern _Atomic int64_t ag__par_min_work;

/* ---- The wrapped allocators ------------------------------------------------------ */

static _Thread_local long fail_countdown; /* > 0: the allocation that brings it to 0 fails */
static _Thread_local bool fail_part;      /* fail what entering the pool allocates */
static _Atomic bool fail_threads;

static bool should_fail(size_t size) {
    if (fail_part && size == sizeof(ws__part))
        return true;
    return fail_countdown > 0 && --fail_countdown == 0;
}

void *__real_aligned_alloc(size_t align, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size) {
    return should_fail(size) ? NULL : __real_aligned_alloc(align, size);
}

#ifdef AG_TEST_JEMALLOC
void *__real_mallocx(size_t size, int flags);
void *__wrap_mallocx(size_t size, int flags);
void *__wrap_mallocx(size_t size, int flags) { return should_fail(size) ? NULL : __real_mallocx(size, flags); }
#endif

int __real_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
    if (atomic_load(&fail_threads))
        return 11; /* EAGAIN */
    return __real_pthread_create(th, attr, fn, arg);
}

/* ---- Graphs ------------------------------------------------------------------------ */

enum { NLEAVES = 6, LEN = 64 };

/* Leaves 0, 2, 4 have a .grad already (of 0.5 each), the others none. */
static void make_leaves(ag_ctx *ctx, ag_tensor **x) {
    for (int i = 0; i < NLEAVES; i++) {
        x[i] = ag_full(ctx, AG_FLOAT32, 1, (int64_t[]){LEN}, 1.0 + i);
        assert_nonnull_ag(x[i]);
        assert_ok(ag_requires_grad_(x[i], true));
        if (i % 2 == 0)
            assert_ok(ag_set_grad(x[i], ag_full(ctx, AG_FLOAT32, 1, (int64_t[]){LEN}, 0.5)));
    }
}

/* Branches that fork (so it may run on several threads): sum over k of
 * tanh(x[k % n] * c_k) * x[(k + 1) % n]; a retained grad in the middle. */
static ag_tensor *forked(ag_ctx *g, ag_tensor **x, ag_tensor **retained) {
    ag_tensor *s = NULL;
    for (int k = 0; k < 24; k++) {
        ag_tensor *b = ag_mul(g, ag_tanh(g, ag_mul_scalar(g, x[k % NLEAVES], 0.1 * (k + 1))), x[(k + 1) % NLEAVES]);
        if (k == 7) {
            ag_retain_grad(b);
            *retained = b;
        }
        s = s ? ag_add(g, s, b) : b;
    }
    return ag_sum(g, s);
}

typedef struct {
    const ag_tensor *ptr;
    float v[LEN];
} snap;

static void take(snap *s, ag_tensor *const *x, int n) {
    for (int i = 0; i < n; i++) {
        s[i].ptr = ag_grad(x[i]);
        if (s[i].ptr)
            memcpy(s[i].v, ag_data_ptr(s[i].ptr), sizeof s[i].v);
    }
}

static bool unchanged(const snap *s, ag_tensor *const *x, int n) {
    for (int i = 0; i < n; i++) {
        if (ag_grad(x[i]) != s[i].ptr)
            return false;
        if (s[i].ptr && memcmp(s[i].v, ag_data_ptr(s[i].ptr), sizeof s[i].v) != 0)
            return false;
    }
    return true;
}

/* ---- Out of memory at each allocation -------------------------------------------- */

typedef struct {
    long fail_at;
    int nthreads;
    bool det;
    int rc;
    bool same; /* .grad unchanged after a failure */
    double grad0;
    char msg[160];
} oom_case;

/* On a fresh thread (so the backward starts cold and allocates its
 * arrays), in fresh contexts. */
static void *oom_thread(void *arg) {
    oom_case *c = arg;
    ag_ctx *params = ag_ctx_new(), *g = ag_ctx_new();
    ag_tensor *x[NLEAVES], *r = NULL;
    make_leaves(params, x);
    ag_tensor *root = forked(g, x, &r);
    snap s[NLEAVES + 1];
    ag_tensor *all[NLEAVES + 1];
    memcpy(all, x, sizeof x);
    all[NLEAVES] = r;
    take(s, all, NLEAVES + 1);
    ag_clear_error();
    fail_countdown = c->fail_at;
    c->rc = ag_backward(root, NULL, &(ag_backward_opts){.num_threads = c->nthreads});
    fail_countdown = 0;
    snprintf(c->msg, sizeof c->msg, "%s", ag_last_error());
    c->same = unchanged(s, all, NLEAVES + 1);
    c->grad0 = ag_grad(x[1]) ? ag_get(ag_grad(x[1]), 0) : -1;
    ag_ctx_free(g);
    ag_ctx_free(params);
    return NULL;
}

static void test_out_of_memory_everywhere(void **state) {
    (void)state;
    atomic_store(&ag__par_min_work, 0);
    for (int det = 0; det < 2; det++) {
        ag_set_deterministic(det);
        for (int nt = 1; nt <= 2; nt++) {
            double want = -2;
            long n;
            for (n = 1; n < 100000; n++) {
                oom_case c = {.fail_at = n, .nthreads = nt, .det = det};
                pthread_t th;
                assert_int_equal(__real_pthread_create(&th, NULL, oom_thread, &c), 0);
                pthread_join(th, NULL);
                if (c.rc == 0) {
                    want = c.grad0;
                    break;
                }
                if (c.rc != AG_ENOMEM || !c.same || !c.msg[0])
                    print_error("det %d, %d threads, allocation %ld: rc %d, unchanged %d: %s\n", det, nt, n, c.rc,
                                c.same, c.msg);
                assert_int_equal(c.rc, AG_ENOMEM);
                assert_true(c.same);
                assert_true(c.msg[0] != '\0');
            }
            assert_true(n > 1); /* the backward does allocate, and each failure was clean */
            /* and with no failure the gradient is the one a clean run gives */
            oom_case c = {.fail_at = 0, .nthreads = nt, .det = det};
            pthread_t th;
            assert_int_equal(__real_pthread_create(&th, NULL, oom_thread, &c), 0);
            pthread_join(th, NULL);
            assert_int_equal(c.rc, 0);
            /* bitwise in deterministic mode; else the order of the sums
             * (so the last bits) may differ between runs on two threads */
            if (det)
                assert_true(c.grad0 == want);
            else
                assert_true(fabs(c.grad0 - want) <= 1e-5 * (1.0 + fabs(want)));
        }
    }
    ag_set_deterministic(false);
}

/* ---- A thread that cannot get into the pool ---------------------------------------- */

typedef struct {
    atomic_int stage; /* 1: B warm, 2: A inside the pool, 3: B tried */
    ag_tensor *x[NLEAVES];
    int rc;
    bool same;
    char msg[160];
    int rc_after;
} enter_case;

static void wait_stage(enter_case *e, int stage) {
    for (int i = 0; i < 200000 && atomic_load(&e->stage) < stage; i++)
        sched_yield();
}

static void *thread_b(void *arg) {
    enter_case *e = arg;
    ag_ctx *g = ag_ctx_new();
    ag_tensor *r;
    ag_backward_opts o = {.num_threads = 2};
    ag_backward(forked(g, e->x, &r), NULL, &o); /* warm: this thread's arrays exist */
    ag_ctx_reset(g);
    atomic_store(&e->stage, 1);
    wait_stage(e, 2);
    ag_tensor *root = forked(g, e->x, &r);
    snap s[NLEAVES];
    take(s, e->x, NLEAVES);
    fail_part = true;
    e->rc = ag_backward(root, NULL, &o);
    fail_part = false;
    snprintf(e->msg, sizeof e->msg, "%s", ag_last_error());
    e->same = unchanged(s, e->x, NLEAVES);
    atomic_store(&e->stage, 3);
    ag_ctx_reset(g);
    e->rc_after = ag_backward(forked(g, e->x, &r), NULL, &o);
    ag_ctx_free(g);
    return NULL;
}

static ag_tensor *hold_hook(ag_tensor *grad, void *ud) {
    enter_case *e = ud;
    (void)grad;
    atomic_store(&e->stage, 2);
    wait_stage(e, 3);
    return NULL;
}

/* Thread A is inside the pool (its backward waits in a hook), so thread
 * B needs an outside slot of its own, whose allocation fails. */
static void test_entering_the_pool_out_of_memory(void **state) {
    (void)state;
    atomic_store(&ag__par_min_work, 0);
    ag_set_deterministic(false);
    ag_ctx *params = ag_ctx_new(), *g = ag_ctx_new();
    enter_case e = {0};
    make_leaves(params, e.x);
    ag_tensor *y[NLEAVES];
    make_leaves(params, y);
    pthread_t th;
    assert_int_equal(__real_pthread_create(&th, NULL, thread_b, &e), 0);
    wait_stage(&e, 1);
    ag_tensor *r;
    ag_tensor *root = forked(g, y, &r);
    assert_true(ag_register_hook(r, hold_hook, &e) > 0);
    assert_ok(ag_backward(root, NULL, &(ag_backward_opts){.num_threads = 2}));
    pthread_join(th, NULL);
    if (e.rc != AG_ENOMEM)
        print_error("rc %d: %s\n", e.rc, e.msg);
    assert_int_equal(e.rc, AG_ENOMEM);
    assert_string_equal(e.msg, "backward could not enter the thread pool: out of memory");
    assert_true(e.same);
    assert_int_equal(e.rc_after, 0);
    ag_ctx_free(g);
    ag_ctx_free(params);
}

/* ---- A pool that cannot grow --------------------------------------------------------- */

static void test_thread_creation_fails(void **state) {
    (void)state;
    atomic_store(&ag__par_min_work, 0);
    ag_ctx *params = ag_ctx_new(), *g = ag_ctx_new();
    ag_tensor *x[NLEAVES], *r;
    make_leaves(params, x);
    ag_tensor *root = forked(g, x, &r);
    snap s[NLEAVES];
    take(s, x, NLEAVES);
    atomic_store(&fail_threads, true);
    ag_backward_opts o = {.num_threads = 40, .retain_graph = true}; /* more than the pool has */
    assert_int_equal(ag_backward(root, NULL, &o), AG_ENOMEM);
    atomic_store(&fail_threads, false);
    assert_error(AG_ENOMEM, "cannot start the worker threads of a backward");
    assert_true(unchanged(s, x, NLEAVES));
    assert_ok(ag_backward(root, NULL, &o)); /* the threads come when they can */
    assert_false(unchanged(s, x, NLEAVES));
    ag_ctx_free(g);
    ag_ctx_free(params);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_of_memory_everywhere),
        cmocka_unit_test(test_entering_the_pool_out_of_memory),
        cmocka_unit_test(test_thread_creation_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
