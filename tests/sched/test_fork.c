/* Fork and join: fib at 0 to 8 workers and oversubscribed, joins out of
 * LIFO order, misuse, and a random tree of forks over many thieves in
 * which every forked task must run exactly once. */
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

/* Errors come back as a huge negative result, checked by the caller. */
static long fib(int n) {
    if (n < 2)
        return n;
    fib_frame f;
    ws_task_init(&f.task, fib_task, NULL);
    f.n = n - 1;
    if (ws_fork(&f.task) != 0)
        return -1000000000;
    long y = fib(n - 2);
    if (ws_join(&f.task) != 0)
        return -1000000000;
    return f.result + y;
}

static void fib_root_task(ws_task *t) {
    fib_root *r = t->arg;
    r->result = fib(r->n);
}

static void check_fib(int nworkers, int n, int reps) {
    ws_pool *p = test_pool(nworkers);
    test_run_fib(p, fib_root_task, n, reps);
    uint64_t run = test_tasks_run(p);
    /* One task per fork (fib(n+1) - 1 of them) plus the root, per rep. */
    long forks = fib_serial(n + 1) - 1;
    assert_int_equal(run, (uint64_t)reps * (uint64_t)(forks + 1));
    assert_int_equal(ws_pool_destroy(p), 0);
}

static void test_fib_0_to_8_workers(void **state) {
    (void)state;
    int n = WS_TEST_SCALE > 1 ? 18 : 24;
    for (int t = 0; t <= 8; t++)
        check_fib(t, n, 3);
}

static void test_fib_oversubscribed(void **state) {
    (void)state;
    int n = WS_TEST_SCALE > 1 ? 20 : 27;
    check_fib(16, n, 5);
    check_fib(32, n, 3);
}

/* ---- Out of order, and misuse ------------------------------------------------------ */

typedef struct mark_task {
    ws_task task;
    int *order; /* where to record the running order */
    int *next;
    int id;
} mark_task;

static void mark_fn(ws_task *t) {
    mark_task *m = (mark_task *)t;
    m->order[(*m->next)++] = m->id;
}

typedef struct order_case {
    int order[3], next;
    int rc[6];
} order_case;

/* Joining a before b and c: b and c, pushed after a and still on the
 * deque, run first (newest first), then a; joining them afterwards finds
 * them done. With no workers nothing can be stolen, so the order is fixed. */
static void order_fn(ws_task *t) {
    order_case *oc = t->arg;
    mark_task m[3];
    for (int i = 0; i < 3; i++) {
        m[i] = (mark_task){.order = oc->order, .next = &oc->next, .id = i};
        ws_task_init(&m[i].task, mark_fn, NULL);
        oc->rc[i] = ws_fork(&m[i].task);
    }
    oc->rc[3] = ws_join(&m[0].task);
    oc->rc[4] = ws_join(&m[1].task) | ws_join(&m[2].task);
    oc->rc[5] = ws_join(&m[0].task); /* joined already */
}

static void test_join_out_of_order(void **state) {
    (void)state;
    ws_pool *p = test_pool(0);
    order_case oc = {0};
    assert_int_equal(ws_run(p, order_fn, &oc), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(oc.rc[i], 0);
    assert_int_equal(oc.rc[5], WS_ESTATE);
    assert_int_equal(oc.next, 3);
    assert_int_equal(oc.order[0], 2);
    assert_int_equal(oc.order[1], 1);
    assert_int_equal(oc.order[2], 0);
    assert_int_equal(ws_pool_destroy(p), 0);
}

static void noop(ws_task *t) { (void)t; }

typedef struct misuse_case {
    ws_task *forked; /* by the pool thread, joined by another */
    int rc_other_thread;
    int rc[6];
} misuse_case;

static void *join_elsewhere(void *arg) {
    misuse_case *mc = arg;
    mc->rc_other_thread = ws_join(mc->forked);
    return NULL;
}

static void misuse_fn(ws_task *t) {
    misuse_case *mc = t->arg;
    ws_task a = WS_TASK_INIT(noop, NULL), never = WS_TASK_INIT(noop, NULL), nofn = WS_TASK_INIT(NULL, NULL);
    mc->rc[0] = ws_fork(NULL);
    mc->rc[1] = ws_fork(&nofn);
    mc->rc[2] = ws_join(NULL);
    mc->rc[3] = ws_join(&never); /* never forked */
    mc->rc[4] = ws_fork(&a);
    /* Another thread may not join our fork. */
    mc->forked = &a;
    pthread_t th;
    if (pthread_create(&th, NULL, join_elsewhere, mc) == 0)
        pthread_join(th, NULL);
    else
        mc->rc_other_thread = -100;
    mc->rc[5] = ws_join(&a);
}

static void test_misuse(void **state) {
    (void)state;
    ws_task t = WS_TASK_INIT(noop, NULL);
    assert_int_equal(ws_fork(&t), WS_ESTATE); /* not in a pool */
    assert_int_equal(ws_join(&t), WS_ESTATE);
    ws_pool *p = test_pool(1);
    misuse_case mc = {0};
    assert_int_equal(ws_run(p, misuse_fn, &mc), 0);
    assert_int_equal(mc.rc[0], WS_EINVAL);
    assert_int_equal(mc.rc[1], WS_EINVAL);
    assert_int_equal(mc.rc[2], WS_EINVAL);
    assert_int_equal(mc.rc[3], WS_ESTATE);
    assert_int_equal(mc.rc[4], 0);
    assert_int_equal(mc.rc_other_thread, WS_ESTATE);
    assert_int_equal(mc.rc[5], 0);
    assert_int_equal(ws_pool_destroy(p), 0);
}

/* ---- Every fork runs once, over many thieves ------------------------------------------ */

/* A random tree: each node forks 1 to 3 children until a random depth,
 * burns a little, joins them in a random order, and counts its own runs.
 * The ids come from a counter, so the tree is the same only in shape
 * statistics; what is checked is that ids 0..made-1 each ran once. */
typedef struct tree {
    _Atomic uint8_t *runs;
    _Atomic int64_t made;
    int64_t cap;
} tree;

typedef struct tnode {
    ws_task task;
    tree *tr;
    uint64_t seed;
    int depth;
    int64_t id;
} tnode;

static void tnode_fn(ws_task *t) {
    tnode *me = (tnode *)t;
    tree *tr = me->tr;
    if (me->id >= 0 && me->id < tr->cap)
        atomic_fetch_add_explicit(&tr->runs[me->id], 1, memory_order_relaxed);
    uint64_t seed = me->seed;
    int nkids = me->depth <= 0 ? 0 : 1 + (int)(test_rng(&seed) % 3);
    if (atomic_load_explicit(&tr->made, memory_order_relaxed) > tr->cap / 2)
        nkids = 0; /* big enough */
    tnode kids[3];
    for (int i = 0; i < nkids; i++) {
        int64_t id = atomic_fetch_add_explicit(&tr->made, 1, memory_order_relaxed);
        kids[i] =
            (tnode){.tr = tr, .seed = test_rng(&seed), .depth = me->depth - 1 - (test_rng(&seed) % 4 == 0), .id = id};
        ws_task_init(&kids[i].task, tnode_fn, NULL);
        ws_fork(&kids[i].task);
    }
    test_burn((int)(test_rng(&seed) % 200));
    /* Joins in LIFO order, or the oldest first (which runs the newer
     * ones on the way), at random. */
    if (test_rng(&seed) % 2) {
        for (int i = nkids - 1; i >= 0; i--)
            ws_join(&kids[i].task);
    } else {
        for (int i = 0; i < nkids; i++)
            ws_join(&kids[i].task);
    }
}

static void tree_root(ws_task *t) {
    tnode *root = t->arg;
    tnode_fn(&root->task);
}

static void test_each_fork_once(void **state) {
    (void)state;
    int reps = WS_SCALED(40, 5);
    tree tr;
    tr.cap = 1 << 21;
    tr.runs = calloc((size_t)tr.cap, sizeof(tr.runs[0]));
    assert_non_null(tr.runs);
    for (int rep = 0; rep < reps; rep++) {
        ws_pool *p = test_pool(1 + rep % 6);
        memset((void *)tr.runs, 0, (size_t)tr.cap * sizeof(tr.runs[0]));
        atomic_init(&tr.made, 1);
        tnode root = {.tr = &tr, .seed = 1000 + (uint64_t)rep, .depth = WS_TEST_SCALE > 1 ? 13 : 17, .id = 0};
        ws_task_init(&root.task, tnode_fn, NULL);
        assert_int_equal(ws_run(p, tree_root, &root), 0);
        assert_int_equal(ws_pool_destroy(p), 0);
        int64_t made = atomic_load(&tr.made);
        assert_true(made > 1 && made <= tr.cap);
        int64_t bad = 0;
        for (int64_t i = 0; i < made; i++)
            bad += atomic_load(&tr.runs[i]) != 1;
        assert_int_equal(bad, 0);
    }
    print_message("forked tasks: %lld in the last tree\n", (long long)atomic_load(&tr.made) - 1);
    free((void *)tr.runs);
}

int main(int argc, char **argv) {
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_fib_0_to_8_workers),
        cmocka_unit_test(test_join_out_of_order),
        cmocka_unit_test(test_misuse),
    };
    const struct CMUnitTest stress[] = {
        cmocka_unit_test(test_fib_oversubscribed),
        cmocka_unit_test(test_each_fork_once),
    };
    if (argc > 1 && strcmp(argv[1], "stress") == 0)
        return cmocka_run_group_tests(stress, NULL, NULL);
    return cmocka_run_group_tests(unit, NULL, NULL);
}
