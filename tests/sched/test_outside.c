/* Many outside threads on one pool at once: each runs fib through groups,
 * parallel-fors, DAGs and fire-and-forget submissions, with fewer outside
 * slots than threads so some wait for a slot. Results are checked after
 * the threads are joined. */
#include "../common/ws_check.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static long fib(int n);

static void fib_task(ws_task *t) {
    fib_frame *f = (fib_frame *)t;
    f->result = fib(f->n);
}

static long fib(int n) {
    if (n < 2)
        return n;
    ws_group g;
    ws_group_init(&g, NULL);
    fib_frame f;
    ws_task_init(&f.task, fib_task, NULL);
    f.n = n - 1;
    ws_spawn(&g, &f.task);
    long y = fib(n - 2);
    ws_group_wait(&g);
    return f.result + y;
}

static void fib_root_task(ws_task *t) {
    fib_frame *f = t->arg;
    f->result = fib(f->n);
}

static void sum_range(void *arg, int64_t lo, int64_t hi) {
    _Atomic int64_t *sum = arg;
    int64_t s = 0;
    for (int64_t i = lo; i < hi; i++)
        s += i;
    atomic_fetch_add_explicit(sum, s, memory_order_relaxed);
}

typedef struct chain_node {
    ws_node node;
    uint64_t *acc; /* plain: the chain orders the writes */
    uint64_t i;
} chain_node;

static void chain_fn(ws_task *t) {
    chain_node *c = (chain_node *)ws_node_of(t);
    *c->acc = *c->acc * 3 + c->i;
}

typedef struct sub {
    ws_task task;
    _Atomic int *done;
} sub;

static void sub_fn(ws_task *t) {
    sub *s = (sub *)t;
    atomic_fetch_add_explicit(s->done, 1, memory_order_release);
}

typedef struct user {
    ws_pool *p;
    int id, iters;
    bool submit; /* fire-and-forget needs a worker to serve the queue */
    pthread_t th;
    int errors; /* checked after join */
} user;

static void *user_main(void *arg) {
    user *u = arg;
    const int n = WS_TEST_SCALE > 1 ? 14 : 20;
    long want = 6765; /* fib(20) */
    if (n == 14)
        want = 377;
    enum { CHAIN = 200, SUBS = 50 };
    chain_node *chain = calloc(CHAIN, sizeof(*chain));
    ws_node **succ = calloc(CHAIN, sizeof(*succ));
    for (int it = 0; it < u->iters; it++) {
        fib_frame f = {.n = n};
        if (ws_run(u->p, fib_root_task, &f) != 0 || f.result != want)
            u->errors++;

        _Atomic int64_t sum = 0;
        int64_t m = 10000 + u->id;
        if (ws_parallel_for(u->p, 0, m, 0, sum_range, &sum) != 0 || atomic_load(&sum) != m * (m - 1) / 2)
            u->errors++;

        ws_dag d;
        uint64_t acc = 0, expect = 0; /* wraps: unsigned */
        ws_dag_init(&d, u->p);
        for (int i = 0; i < CHAIN; i++) {
            chain[i].acc = &acc;
            chain[i].i = (uint64_t)(i + u->id);
            ws_node_init(&d, &chain[i].node, chain_fn, NULL, i ? 1 : 0);
            expect = expect * 3 + (uint64_t)(i + u->id);
        }
        for (int i = 0; i + 1 < CHAIN; i++) {
            succ[i] = &chain[i + 1].node;
            chain[i].node.succ = &succ[i];
            chain[i].node.nsucc = 1;
        }
        ws_node *root = &chain[0].node;
        if (ws_dag_run(&d, &root, 1) != 0 || acc != expect)
            u->errors++;

        if (!u->submit)
            continue;
        sub subs[SUBS];
        _Atomic int done = 0;
        for (int i = 0; i < SUBS; i++) {
            subs[i].done = &done;
            ws_task_init(&subs[i].task, sub_fn, NULL);
            if (ws_submit(u->p, &subs[i].task) != 0)
                u->errors++;
        }
        while (atomic_load_explicit(&done, memory_order_acquire) < SUBS)
            test_sleep_us(20);
    }
    free(chain);
    free(succ);
    return NULL;
}

static void run_users(int nworkers, int max_outside, int nusers, int iters) {
    ws_pool_opts o = WS_POOL_OPTS_INIT;
    o.num_threads = nworkers;
    o.max_outside = max_outside;
    ws_pool *p = NULL;
    assert_int_equal(ws_pool_create(&p, &o), 0);
    user *us = calloc((size_t)nusers, sizeof(*us));
    for (int i = 0; i < nusers; i++) {
        us[i] = (user){.p = p, .id = i, .iters = iters, .submit = nworkers > 0};
        assert_int_equal(pthread_create(&us[i].th, NULL, user_main, &us[i]), 0);
    }
    for (int i = 0; i < nusers; i++) {
        pthread_join(us[i].th, NULL);
        assert_int_equal(us[i].errors, 0);
    }
    ws_stats st[128];
    int np = ws_pool_stats(p, st, 128);
    assert_true(np <= nworkers + max_outside);
    free(us);
    assert_int_equal(ws_pool_destroy(p), 0);
}

static void test_many_outside_threads(void **state) {
    (void)state;
    run_users(2, 64, 8, WS_SCALED(100, 8));
}

static void test_fewer_slots_than_threads(void **state) {
    (void)state;
    run_users(1, 2, 8, WS_SCALED(50, 5));
}

static void test_no_workers_many_threads(void **state) {
    (void)state;
    /* Only the callers run tasks, including each other's submissions. */
    run_users(0, 4, 4, WS_SCALED(20, 3));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_outside_threads),
        cmocka_unit_test(test_fewer_slots_than_threads),
        cmocka_unit_test(test_no_workers_many_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
