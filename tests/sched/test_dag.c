/* The DAG primitive: random DAGs where every node checks that all its
 * predecessors ran before it (with plain memory, so ThreadSanitizer checks
 * the happens-before edges too), reuse of a DAG, chains, successors
 * released by hand, several DAGs run at once by outside threads, misuse. */
#include "../common/ws_check.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>

typedef struct rdag rdag;

typedef struct rnode {
    ws_node node;
    rdag *g;
    int id;
    int npred;
    int *pred; /* ids */
    int nsucc;
    ws_node **succ;
    int manual; /* release successors from the function, not after it */
} rnode;

struct rdag {
    ws_dag dag;
    rnode *nodes;
    int n;
    int *ran;       /* plain: written by the node, read by successors */
    int64_t *stamp; /* run number the node last ran in */
    int64_t run;    /* current run number; read-only while running */
    _Atomic int64_t order_errors;
    _Atomic int64_t count;
    int work; /* busy iterations per node */
};

static void rnode_fn(ws_task *t) {
    rnode *r = (rnode *)ws_node_of(t);
    rdag *g = r->g;
    for (int i = 0; i < r->npred; i++) {
        int p = r->pred[i];
        if (!g->ran[p] || g->stamp[p] != g->run)
            atomic_fetch_add_explicit(&g->order_errors, 1, memory_order_relaxed);
    }
    if (g->stamp[r->id] == g->run) /* ran twice in one run */
        atomic_fetch_add_explicit(&g->order_errors, 1, memory_order_relaxed);
    test_burn(g->work);
    g->ran[r->id] = 1;
    g->stamp[r->id] = g->run;
    atomic_fetch_add_explicit(&g->count, 1, memory_order_relaxed);
    if (r->manual) {
        for (int i = 0; i < r->nsucc; i++)
            if (ws_node_release(r->succ[i]) < 0)
                atomic_fetch_add_explicit(&g->order_errors, 1, memory_order_relaxed);
    }
}

/* n nodes; node i has up to maxpred predecessors among the `window` nodes
 * before it (a window of 1 gives a chain). */
static rdag *rdag_new(ws_pool *p, int n, int maxpred, int window, uint64_t seed) {
    rdag *g = calloc(1, sizeof(*g));
    g->n = n;
    g->nodes = calloc((size_t)n, sizeof(rnode));
    g->ran = calloc((size_t)n, sizeof(int));
    g->stamp = calloc((size_t)n, sizeof(int64_t));
    for (int i = 0; i < n; i++)
        g->stamp[i] = -1;
    assert_int_equal(ws_dag_init(&g->dag, p), 0);
    int *cnt = calloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++) {
        rnode *r = &g->nodes[i];
        r->g = g;
        r->id = i;
        r->pred = calloc((size_t)maxpred + 1, sizeof(int));
        int k = i == 0 ? 0 : 1 + (int)(test_rng(&seed) % (uint64_t)maxpred);
        for (int j = 0; j < k; j++) {
            int lo = i - window < 0 ? 0 : i - window;
            int pidx = lo + (int)(test_rng(&seed) % (uint64_t)(i - lo));
            bool dup = false;
            for (int q = 0; q < r->npred; q++)
                dup |= r->pred[q] == pidx;
            if (!dup) {
                r->pred[r->npred++] = pidx;
                cnt[pidx]++;
            }
        }
        /* A few nodes become extra roots. */
        if (i > 0 && test_rng(&seed) % 50 == 0)
            r->npred = 0;
    }
    for (int i = 0; i < n; i++)
        g->nodes[i].succ = calloc((size_t)cnt[i] + 1, sizeof(ws_node *));
    for (int i = 0; i < n; i++) {
        rnode *r = &g->nodes[i];
        for (int q = 0; q < r->npred; q++) {
            rnode *pr = &g->nodes[r->pred[q]];
            pr->succ[pr->nsucc++] = &r->node;
        }
    }
    for (int i = 0; i < n; i++) {
        rnode *r = &g->nodes[i];
        assert_int_equal(ws_node_init(&g->dag, &r->node, rnode_fn, NULL, r->npred), 0);
        r->manual = (int)(test_rng(&seed) % 3 == 0);
        if (!r->manual) {
            r->node.succ = r->succ;
            r->node.nsucc = r->nsucc;
        }
    }
    free(cnt);
    return g;
}

static void rdag_free(rdag *g) {
    for (int i = 0; i < g->n; i++) {
        free(g->nodes[i].pred);
        free(g->nodes[i].succ);
    }
    free(g->nodes);
    free(g->ran);
    free(g->stamp);
    free(g);
}

/* Runs g once from this thread; returns the number of order errors. */
static int64_t rdag_run(rdag *g) {
    int nroots = 0;
    ws_node **roots = calloc((size_t)g->n, sizeof(ws_node *));
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].npred == 0)
            roots[nroots++] = &g->nodes[i].node;
    memset(g->ran, 0, (size_t)g->n * sizeof(int));
    g->run++;
    atomic_store(&g->count, 0);
    int rc = ws_dag_run(&g->dag, roots, nroots);
    free(roots);
    if (rc != 0)
        return 1000000 + rc;
    int64_t errors = atomic_load(&g->order_errors);
    if (atomic_load(&g->count) != g->n)
        errors += 1000;
    for (int i = 0; i < g->n; i++)
        if (!g->ran[i] || g->stamp[i] != g->run)
            errors++;
    return errors;
}

static void test_random_dag(void **state) {
    (void)state;
    for (int workers = 0; workers <= 4; workers += 2) {
        ws_pool *p = test_pool(workers);
        rdag *g = rdag_new(p, WS_SCALED(20000, 3000), 4, 64, 7 + (uint64_t)workers);
        g->work = 50;
        /* The same DAG three times: counters reset themselves. */
        for (int rep = 0; rep < 3; rep++)
            assert_int_equal(rdag_run(g), 0);
        rdag_free(g);
        assert_int_equal(ws_pool_destroy(p), 0);
    }
}

static void test_chain_keeps_one_thread(void **state) {
    (void)state;
    ws_pool *p = test_pool(2);
    int n = WS_SCALED(100000, 10000);
    rdag *g = rdag_new(p, n, 1, 1, 1);
    /* rdag_new may turn some nodes into roots; make it one chain. */
    for (int i = 1; i < n; i++) {
        rnode *r = &g->nodes[i];
        r->npred = 1;
        r->pred[0] = i - 1;
    }
    ws_stats before[8] = {{0}}, after[8] = {{0}}; /* the outside slot appears during the run */
    int np = ws_pool_stats(p, before, 8);
    /* Rebuild the DAG as a pure chain. */
    assert_int_equal(ws_dag_init(&g->dag, p), 0);
    for (int i = 0; i < n; i++) {
        rnode *r = &g->nodes[i];
        assert_int_equal(ws_node_init(&g->dag, &r->node, rnode_fn, NULL, i == 0 ? 0 : 1), 0);
        r->nsucc = i + 1 < n ? 1 : 0;
        r->succ[0] = i + 1 < n ? &g->nodes[i + 1].node : NULL;
        r->manual = i % 2;
        if (!r->manual) {
            r->node.succ = r->succ;
            r->node.nsucc = r->nsucc;
        }
    }
    assert_int_equal(rdag_run(g), 0);
    np = ws_pool_stats(p, after, 8);
    /* Keep-one-successor: the whole chain ran on the calling thread, and
     * nothing was stolen from it. */
    assert_int_equal(np, 3);
    assert_int_equal(after[2].tasks_run - before[2].tasks_run, (uint64_t)n);
    for (int i = 0; i < 2; i++)
        assert_int_equal(after[i].steals - before[i].steals, 0);
    rdag_free(g);
    assert_int_equal(ws_pool_destroy(p), 0);
}

typedef struct runner {
    rdag *g;
    int reps;
    int64_t errors;
    pthread_t th;
} runner;

static void *runner_main(void *arg) {
    runner *r = arg;
    for (int i = 0; i < r->reps; i++)
        r->errors += rdag_run(r->g);
    return NULL;
}

static void test_concurrent_dags(void **state) {
    (void)state;
    enum { NR = 6 };
    ws_pool *p = test_pool(2);
    runner rs[NR];
    for (int i = 0; i < NR; i++) {
        rs[i] = (runner){.g = rdag_new(p, WS_SCALED(5000, 800), 3, 32 + i, 100 + (uint64_t)i), .reps = 5};
        rs[i].g->work = 20;
        assert_int_equal(pthread_create(&rs[i].th, NULL, runner_main, &rs[i]), 0);
    }
    for (int i = 0; i < NR; i++) {
        pthread_join(rs[i].th, NULL);
        assert_int_equal(rs[i].errors, 0);
        rdag_free(rs[i].g);
    }
    assert_int_equal(ws_pool_destroy(p), 0);
}

static void test_big_random_dag_stress(void **state) {
    (void)state;
    ws_pool *p = test_pool(7);
    rdag *g = rdag_new(p, WS_SCALED(200000, 20000), 6, 1000, 99);
    for (int rep = 0; rep < 5; rep++)
        assert_int_equal(rdag_run(g), 0);
    rdag_free(g);
    assert_int_equal(ws_pool_destroy(p), 0);
}

static void noop(ws_task *t) { (void)t; }

/* ---- A successor released early runs while its releaser still runs --------------------- */

typedef struct early {
    ws_node a, b, c, d;
    sem_t c_ran;
} early;

static void early_c(ws_task *t) {
    early *e = t->arg;
    sem_post(&e->c_ran);
}

/* a releases b (which this thread keeps to run next), c and d, then waits
 * for c and d to have run: only another thread can run them, so both must
 * have been made stealable (and someone woken) at the release, not when a
 * returns. (The first push onto an empty deque is shared anyway; the
 * second is the one this checks.) A lost task hangs the test (meson's
 * timeout). */
static void early_a(ws_task *t) {
    early *e = t->arg;
    ws_node_release(&e->b);
    ws_node_release(&e->c);
    ws_node_release(&e->d);
    sem_wait(&e->c_ran); /* passive: only the worker can run c and d */
    sem_wait(&e->c_ran);
}

static void test_early_release_runs_elsewhere(void **state) {
    (void)state;
    ws_pool *p = test_pool(1);
    early e;
    sem_init(&e.c_ran, 0, 0);
    ws_dag d;
    assert_int_equal(ws_dag_init(&d, p), 0);
    /* b, c and d are released by a's function, not through a.succ. */
    assert_int_equal(ws_node_init(&d, &e.a, early_a, &e, 0), 0);
    assert_int_equal(ws_node_init(&d, &e.b, noop, &e, 1), 0);
    assert_int_equal(ws_node_init(&d, &e.c, early_c, &e, 1), 0);
    assert_int_equal(ws_node_init(&d, &e.d, early_c, &e, 1), 0);
    ws_node *roots[] = {&e.a};
    int reps = WS_SCALED(500, 50);
    for (int i = 0; i < reps; i++) {
        if (i % 50 == 49)
            test_sleep_us(2000); /* sometimes the worker is asleep */
        assert_int_equal(ws_dag_run(&d, roots, 1), 0);
    }
    int left = -1;
    sem_getvalue(&e.c_ran, &left);
    assert_int_equal(left, 0); /* c and d ran once per run, a saw each */
    sem_destroy(&e.c_ran);
    assert_int_equal(ws_pool_destroy(p), 0);
}

static void test_misuse(void **state) {
    (void)state;
    ws_pool *p = test_pool(1);
    ws_dag d;
    ws_node a, b;
    assert_int_equal(ws_dag_init(NULL, p), WS_EINVAL);
    assert_int_equal(ws_dag_init(&d, NULL), WS_EINVAL);
    assert_int_equal(ws_dag_init(&d, p), 0);
    assert_int_equal(ws_dag_run(&d, NULL, 0), 0); /* empty DAG */
    assert_int_equal(ws_node_init(&d, &a, NULL, NULL, 0), WS_EINVAL);
    assert_int_equal(ws_node_init(&d, &a, noop, NULL, -1), WS_EINVAL);
    assert_int_equal(ws_node_init(&d, &a, noop, NULL, 0), 0);
    assert_int_equal(ws_node_init(&d, &b, noop, NULL, 1), 0);
    ws_node *succ_a[] = {&b};
    a.succ = succ_a;
    a.nsucc = 1;
    ws_node *bad_roots[] = {&b};
    assert_int_equal(ws_dag_run(&d, bad_roots, 1), WS_EINVAL); /* b has a predecessor */
    assert_int_equal(ws_dag_run(&d, NULL, 1), WS_EINVAL);
    assert_int_equal(ws_dag_run(&d, bad_roots, 0), WS_EINVAL); /* nodes but no root */
    ws_node *roots[] = {&a};
    assert_int_equal(ws_dag_run(&d, roots, 1), 0);
    assert_int_equal(ws_dag_run(&d, roots, 1), 0); /* again, as it is */
    assert_int_equal(ws_node_release(NULL), WS_EINVAL);
    assert_int_equal(ws_node_release(&a), WS_ESTATE); /* a has no predecessors */
    assert_int_equal(ws_pool_destroy(p), 0);
}

int main(int argc, char **argv) {
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_random_dag),      cmocka_unit_test(test_chain_keeps_one_thread),
        cmocka_unit_test(test_concurrent_dags), cmocka_unit_test(test_early_release_runs_elsewhere),
        cmocka_unit_test(test_misuse),
    };
    const struct CMUnitTest stress[] = {
        cmocka_unit_test(test_big_random_dag_stress),
    };
    if (argc > 1 && strcmp(argv[1], "stress") == 0)
        return cmocka_run_group_tests(stress, NULL, NULL);
    return cmocka_run_group_tests(unit, NULL, NULL);
}
