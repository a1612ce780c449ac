/* Task groups: fib through spawn and wait at 1 to 8 threads, more threads
 * than cores, groups started by outside threads, nesting, and the error
 * codes for misuse. */
#include "../common/ws_check.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- fib ------------------------------------------------------------------------ */

static long fib(int n);

static void fib_task(ws_task *t) {
    fib_frame *f = (fib_frame *)t;
    f->result = fib(f->n);
}

static long fib(int n) {
    if (n < 2)
        return n;
    ws_group g;
    if (ws_group_init(&g, NULL) != 0)
        return -1000000;
    fib_frame f;
    ws_task_init(&f.task, fib_task, NULL);
    f.n = n - 1;
    if (ws_spawn(&g, &f.task) != 0)
        return -1000000;
    long y = fib(n - 2);
    if (ws_group_wait(&g) != 0)
        return -1000000;
    return f.result + y;
}

static void fib_root_task(ws_task *t) {
    fib_root *r = t->arg;
    r->result = fib(r->n);
}

static void check_fib(int nworkers, int n, int reps) {
    ws_pool *p = test_pool(nworkers);
    test_run_fib(p, fib_root_task, n, reps);
    assert_true(ws_pool_stats(p, NULL, 0) >= nworkers + 1); /* the workers and our outside slot */
    uint64_t run = test_tasks_run(p);
    /* One task per spawn (fib(n+1) - 1 of them) plus the root, per rep. */
    long spawns = fib_serial(n + 1) - 1;
    assert_int_equal(run, (uint64_t)reps * (uint64_t)(spawns + 1));
    assert_int_equal(ws_pool_destroy(p), 0);
}

static void test_fib_1_to_8_threads(void **state) {
    (void)state;
    int n = WS_TEST_SCALE > 1 ? 18 : 24;
    for (int t = 1; t <= 8; t++)
        check_fib(t, n, 3);
    check_fib(0, n, 2); /* no workers: the caller does it all */
}

static void test_fib_oversubscribed(void **state) {
    (void)state;
    /* 16 workers on however few cores: must complete, and spinning thieves
     * must yield to the threads holding the work. */
    int n = WS_TEST_SCALE > 1 ? 20 : 27;
    check_fib(16, n, 5);
    check_fib(32, n, 3);
}

/* ---- Spawning many, nesting ------------------------------------------------------------ */

typedef struct inc_task {
    ws_task task;
    _Atomic int64_t *counter;
    int depth;
} inc_task;

static void inc_fn(ws_task *t) {
    inc_task *it = (inc_task *)t;
    if (it->depth > 0) {
        /* A nested group inside a task, possibly on a thief. */
        inc_task kids[4];
        ws_group g;
        if (ws_group_init(&g, NULL) != 0)
            return;
        for (int i = 0; i < 4; i++) {
            kids[i] = (inc_task){.counter = it->counter, .depth = it->depth - 1};
            ws_task_init(&kids[i].task, inc_fn, NULL);
            ws_spawn(&g, &kids[i].task);
        }
        ws_group_wait(&g);
    }
    atomic_fetch_add_explicit(it->counter, 1, memory_order_relaxed);
}

static void test_nested_groups_from_outside(void **state) {
    (void)state;
    ws_pool *p = test_pool(3);
    _Atomic int64_t counter = 0;
    enum { N = 1000, DEPTH = 3 };
    inc_task *ts = calloc(N, sizeof(*ts));
    assert_non_null(ts);
    /* This thread is not a worker: init binds it to an outside slot and the
     * wait makes it run tasks until all are done. */
    ws_group g;
    assert_int_equal(ws_group_init(&g, p), 0);
    assert_int_equal(ws_participant_index(), 3);
    assert_ptr_equal(ws_current_pool(), p);
    for (int i = 0; i < N; i++) {
        ts[i] = (inc_task){.counter = &counter, .depth = i % 10 == 0 ? DEPTH : 0};
        ws_task_init(&ts[i].task, inc_fn, NULL);
        assert_int_equal(ws_spawn(&g, &ts[i].task), 0);
    }
    assert_int_equal(ws_group_wait(&g), 0);
    assert_int_equal(ws_participant_index(), -1);
    assert_null(ws_current_pool());
    /* 900 plain tasks, 100 trees of 1 + 4 + 16 + 64 tasks. */
    assert_int_equal(atomic_load(&counter), 900 + 100 * (1 + 4 + 16 + 64));
    ws_stats st[8];
    int np = ws_pool_stats(p, st, 8);
    assert_int_equal(np, 4);
    assert_true(st[3].tasks_run > 0); /* the outside thread helped */
    free(ts);
    assert_int_equal(ws_pool_destroy(p), 0);
}

/* ---- Misuse ------------------------------------------------------------------------------ */

static void noop(ws_task *t) { (void)t; }

typedef struct wrong_thread {
    ws_group *g;
    ws_task *task;
    int spawn_rc, wait_rc;
} wrong_thread;

static void *wrong_thread_main(void *arg) {
    wrong_thread *w = arg;
    w->spawn_rc = ws_spawn(w->g, w->task);
    w->wait_rc = ws_group_wait(w->g);
    return NULL;
}

static void test_misuse(void **state) {
    (void)state;
    ws_pool *p = test_pool(1);
    ws_task t = WS_TASK_INIT(noop, NULL);
    ws_task nofn = WS_TASK_INIT(NULL, NULL);
    assert_int_equal(ws_group_init(NULL, p), WS_EINVAL);
    ws_group g;
    assert_int_equal(ws_group_init(&g, NULL), WS_ESTATE); /* not in a pool */
    assert_int_equal(ws_spawn(&g, &t), WS_EINVAL);        /* failed init */
    assert_int_equal(ws_group_wait(&g), WS_EINVAL);
    assert_int_equal(ws_spawn(NULL, &t), WS_EINVAL);
    assert_int_equal(ws_group_init(&g, p), 0);
    assert_int_equal(ws_spawn(&g, NULL), WS_EINVAL);
    assert_int_equal(ws_spawn(&g, &nofn), WS_EINVAL);
    /* Another thread may not spawn into or wait on our group. */
    wrong_thread w = {&g, &t, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wrong_thread_main, &w), 0);
    pthread_join(th, NULL);
    assert_int_equal(w.spawn_rc, WS_ESTATE);
    assert_int_equal(w.wait_rc, WS_ESTATE);
    assert_int_equal(ws_spawn(&g, &t), 0);
    assert_int_equal(ws_group_wait(&g), 0);
    assert_int_equal(ws_group_wait(&g), WS_EINVAL); /* already waited */
    assert_int_equal(ws_run(NULL, noop, NULL), WS_EINVAL);
    assert_int_equal(ws_run(p, NULL, NULL), WS_EINVAL);
    assert_int_equal(ws_pool_destroy(p), 0);
}

int main(int argc, char **argv) {
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_fib_1_to_8_threads),
        cmocka_unit_test(test_nested_groups_from_outside),
        cmocka_unit_test(test_misuse),
    };
    const struct CMUnitTest stress[] = {
        cmocka_unit_test(test_fib_oversubscribed),
    };
    if (argc > 1 && strcmp(argv[1], "stress") == 0)
        return cmocka_run_group_tests(stress, NULL, NULL);
    return cmocka_run_group_tests(unit, NULL, NULL);
}
