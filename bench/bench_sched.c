/* Scheduler workloads for agrad-bench: fib through spawn and wait, a
 * binary-tree DAG, a linear chain, random layered DAGs (busy nodes, and
 * 64-wide empty ones), building a DAG, a parallel-for, and a task
 * submitted from outside the pool and waited for. Each has a serial version
 * where that means something (the baseline that per-task overhead is
 * measured against), a ws version and, when built with OpenMP, an
 * OpenMP-task version (depend clauses for the DAGs), plus a "ceiling" of
 * independent threads that shows how much parallel speed the machine itself
 * gives. bench/lace/ runs the same programs on Lace. */
#include "bench.h"
#include "bench_graph.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Busy work the compiler cannot drop: a dependent multiply-add chain. */
static inline uint64_t burn(uint64_t x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        x = x * 6364136223846793005ull + 1442695040888963407ull;
    return x;
}

/* ---- fib ----------------------------------------------------------------------------
 * Every call with n >= 2 spawns fib(n-1) and computes fib(n-2) itself, with
 * no cutoff, so the time is almost all spawn/wait overhead. */

typedef struct fib_state {
    int n;
    long want, got;
} fib_state;

__attribute__((noinline)) static long fib_serial(int n) { return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2); }

static long fib_value(int n) {
    long a = 0, b = 1;
    for (int i = 0; i < n; i++) {
        long c = a + b;
        a = b;
        b = c;
    }
    return a;
}

static void *fib_setup(const bench_params *bp) {
    if (bp->size < 0 || bp->size > 60)
        return NULL;
    fib_state *s = calloc(1, sizeof(*s));
    if (s) {
        s->n = (int)bp->size;
        s->want = fib_value(s->n);
    }
    return s;
}

static double fib_tasks(const bench_params *bp) {
    return (double)(fib_value((int)bp->size + 1) - 1); /* calls with n >= 2 */
}

static int fib_serial_run(void *state, const bench_params *bp) {
    (void)bp;
    fib_state *s = state;
    s->got = fib_serial(s->n);
    return s->got == s->want ? 0 : -1;
}

typedef struct fib_frame {
    ws_task task;
    int n;
    long result;
} fib_frame;

/* ws: fork fib(n-1), compute fib(n-2), join: Lace's SPAWN, CALL, SYNC. */
static long fib_ws(int n);

static void fib_ws_task(ws_task *t) {
    fib_frame *f = (fib_frame *)t;
    f->result = fib_ws(f->n);
}

static long fib_ws(int n) {
    if (n < 2)
        return n;
    fib_frame f;
    ws_task_init(&f.task, fib_ws_task, NULL);
    f.n = n - 1;
    ws_fork(&f.task);
    long y = fib_ws(n - 2);
    ws_join(&f.task);
    return f.result + y;
}

static void fib_ws_root(ws_task *t) {
    fib_state *s = t->arg;
    s->got = fib_ws(s->n);
}

static int fib_ws_run(void *state, const bench_params *bp) {
    fib_state *s = state;
    if (ws_run(bp->pool, fib_ws_root, s) != 0)
        return -1;
    return s->got == s->want ? 0 : -1;
}

/* ws-group: the same with a task group per call (init, spawn, wait). */
static long fib_group(int n);

static void fib_group_task(ws_task *t) {
    fib_frame *f = (fib_frame *)t;
    f->result = fib_group(f->n);
}

static long fib_group(int n) {
    if (n < 2)
        return n;
    ws_group g;
    ws_group_init(&g, NULL);
    fib_frame f;
    ws_task_init(&f.task, fib_group_task, NULL);
    f.n = n - 1;
    ws_spawn(&g, &f.task);
    long y = fib_group(n - 2);
    ws_group_wait(&g);
    return f.result + y;
}

static void fib_group_root(ws_task *t) {
    fib_state *s = t->arg;
    s->got = fib_group(s->n);
}

static int fib_group_run(void *state, const bench_params *bp) {
    fib_state *s = state;
    if (ws_run(bp->pool, fib_group_root, s) != 0)
        return -1;
    return s->got == s->want ? 0 : -1;
}

#ifdef _OPENMP
static long fib_omp(int n) {
    if (n < 2)
        return n;
    long x, y;
#pragma omp task shared(x) firstprivate(n)
    x = fib_omp(n - 1);
    y = fib_omp(n - 2);
#pragma omp taskwait
    return x + y;
}

static int fib_omp_run(void *state, const bench_params *bp) {
    fib_state *s = state;
    long r = 0;
#pragma omp parallel num_threads(bp->threads)
#pragma omp single
    r = fib_omp(s->n);
    s->got = r;
    return s->got == s->want ? 0 : -1;
}
#endif

/* ---- DAGs ------------------------------------------------------------------------------
 * One representation for the three shapes: predecessor lists in CSR form.
 * Node i computes val[i] from its id and its predecessors' values, then
 * burns `work` iterations; the result is compared with a serial run, and
 * val is cleared before each run, so a node that ran before a predecessor
 * shows up as a wrong value. */

enum { DAG_TREE, DAG_CHAIN, DAG_RANDOM, DAG_LAYER64 };
enum { DAG_MAX_PRED = BENCH_GRAPH_MAX_PRED, DAG_RANDOM_WIDTH = 100, DAG_LAYER_WIDTH = 64 };

typedef struct dag_state dag_state;

struct dag_state {
    int64_t n, work;
    int64_t *pred_off; /* n + 1 */
    int64_t *pred;
    uint64_t *val, *want;
    /* ws */
    ws_dag dag;
    ws_node *nodes; /* arg: the state; the id is the index */
    ws_node **succ; /* CSR by the same offsets as the successor counts */
    ws_node **roots;
    int nroots;
};

/* Nodes on whole cache lines: a 64-byte ws_node then never straddles two. */
static ws_node *nodes_alloc(int64_t n) {
    size_t size = ((size_t)n * sizeof(ws_node) + 63) / 64 * 64;
    ws_node *p = aligned_alloc(64, size);
    if (p)
        memset(p, 0, size);
    return p;
}

static inline void dag_compute(dag_state *s, int64_t i) {
    uint64_t v = (uint64_t)i + 1;
    for (int64_t k = s->pred_off[i]; k < s->pred_off[i + 1]; k++)
        v = v * 31 + s->val[s->pred[k]];
    s->val[i] = burn(v, s->work);
}

static void dag_free(void *state) {
    dag_state *s = state;
    if (!s)
        return;
    free(s->pred_off);
    free(s->pred);
    free(s->val);
    free(s->want);
    free(s->nodes);
    free(s->succ);
    free(s->roots);
    free(s);
}

static dag_state *dag_build(int shape, const bench_params *bp, int64_t default_work) {
    int64_t n = bp->size;
    if (n < 1 || n > (int64_t)1 << 28)
        return NULL;
    dag_state *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->n = n;
    s->work = bp->work >= 0 ? bp->work : default_work;
    s->pred_off = calloc((size_t)n + 1, sizeof(int64_t));
    s->pred = calloc((size_t)n * DAG_MAX_PRED + 1, sizeof(int64_t));
    s->val = calloc((size_t)n, sizeof(uint64_t));
    s->want = calloc((size_t)n, sizeof(uint64_t));
    if (!s->pred_off || !s->pred || !s->val || !s->want) {
        dag_free(s);
        return NULL;
    }
    if (shape == DAG_RANDOM || shape == DAG_LAYER64) {
        bench_graph_layered(n, shape == DAG_RANDOM ? DAG_RANDOM_WIDTH : DAG_LAYER_WIDTH, s->pred_off, s->pred);
    } else {
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++) {
            s->pred_off[i] = m;
            if (i > 0)
                s->pred[m++] = shape == DAG_TREE ? (i - 1) / 2 : i - 1;
        }
        s->pred_off[n] = m;
    }
    /* The expected values, from a serial run in index (topological) order. */
    for (int64_t i = 0; i < n; i++)
        dag_compute(s, i);
    memcpy(s->want, s->val, (size_t)n * sizeof(uint64_t));
    return s;
}

static void dag_reset(void *state) {
    dag_state *s = state;
    memset(s->val, 0, (size_t)s->n * sizeof(uint64_t));
}

static int dag_check(dag_state *s) { return memcmp(s->val, s->want, (size_t)s->n * sizeof(uint64_t)) == 0 ? 0 : -1; }

static double dag_tasks(const bench_params *bp) { return (double)bp->size; }

static void *tree_setup(const bench_params *bp) { return dag_build(DAG_TREE, bp, 0); }
static void *chain_setup(const bench_params *bp) { return dag_build(DAG_CHAIN, bp, 0); }
static void *random_setup(const bench_params *bp) { return dag_build(DAG_RANDOM, bp, 100); }
static void *layer_setup(const bench_params *bp) { return dag_build(DAG_LAYER64, bp, 0); }

static int dag_serial_run(void *state, const bench_params *bp) {
    (void)bp;
    dag_state *s = state;
    for (int64_t i = 0; i < s->n; i++)
        dag_compute(s, i);
    return dag_check(s);
}

/* ws: one ws_node per node, successors from the predecessor lists. */

static void dag_ws_node(ws_task *t) {
    dag_state *s = t->arg;
    dag_compute(s, ws_node_of(t) - s->nodes);
}

static void *dag_ws_wrap(dag_state *s, const bench_params *bp) {
    if (!s)
        return NULL;
    int64_t n = s->n;
    s->nodes = nodes_alloc(n);
    s->succ = calloc((size_t)s->pred_off[n] + 1, sizeof(ws_node *));
    s->roots = calloc((size_t)n, sizeof(ws_node *));
    int64_t *nsucc = calloc((size_t)n + 1, sizeof(int64_t));
    if (!s->nodes || !s->succ || !s->roots || !nsucc || ws_dag_init(&s->dag, bp->pool) != 0) {
        free(nsucc);
        dag_free(s);
        return NULL;
    }
    for (int64_t k = 0; k < s->pred_off[n]; k++)
        nsucc[s->pred[k] + 1]++;
    for (int64_t i = 0; i < n; i++)
        nsucc[i + 1] += nsucc[i]; /* now offsets into succ */
    for (int64_t i = 0; i < n; i++) {
        ws_node *d = &s->nodes[i];
        int npred = (int)(s->pred_off[i + 1] - s->pred_off[i]);
        ws_node_init(&s->dag, d, dag_ws_node, s, npred);
        d->succ = &s->succ[nsucc[i]];
        if (npred == 0)
            s->roots[s->nroots++] = d;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = s->pred_off[i]; k < s->pred_off[i + 1]; k++) {
            ws_node *p = &s->nodes[s->pred[k]];
            p->succ[p->nsucc++] = &s->nodes[i];
        }
    free(nsucc);
    return s;
}

static void *tree_ws_setup(const bench_params *bp) { return dag_ws_wrap(dag_build(DAG_TREE, bp, 0), bp); }
static void *chain_ws_setup(const bench_params *bp) { return dag_ws_wrap(dag_build(DAG_CHAIN, bp, 0), bp); }
static void *random_ws_setup(const bench_params *bp) { return dag_ws_wrap(dag_build(DAG_RANDOM, bp, 100), bp); }
static void *layer_ws_setup(const bench_params *bp) { return dag_ws_wrap(dag_build(DAG_LAYER64, bp, 0), bp); }

static int dag_ws_run(void *state, const bench_params *bp) {
    (void)bp;
    dag_state *s = state;
    /* The same DAG every repetition: join counters reset as nodes run. */
    if (ws_dag_run(&s->dag, s->roots, s->nroots) != 0)
        return -1;
    return dag_check(s);
}

#ifdef _OPENMP
/* One task per node, created in topological order by one thread, with a
 * depend(in:) per predecessor's value and depend(out:) on its own: the way
 * OpenMP expresses a DAG. */
static int dag_omp_run(void *state, const bench_params *bp) {
    dag_state *s = state;
#pragma omp parallel num_threads(bp->threads)
#pragma omp single
    for (int64_t i = 0; i < s->n; i++) {
        uint64_t *val = s->val; /* depend() wants a plain array name */
        (void)val;              /* gcc 12 does not count a use in depend() */
        const int64_t *p = &s->pred[s->pred_off[i]];
        switch (s->pred_off[i + 1] - s->pred_off[i]) {
        case 0:
#pragma omp task firstprivate(i) depend(out : val[i])
            dag_compute(s, i);
            break;
        case 1:
#pragma omp task firstprivate(i) depend(in : val[p[0]]) depend(out : val[i])
            dag_compute(s, i);
            break;
        case 2:
#pragma omp task firstprivate(i) depend(in : val[p[0]], val[p[1]]) depend(out : val[i])
            dag_compute(s, i);
            break;
        default:
#pragma omp task firstprivate(i) depend(in : val[p[0]], val[p[1]], val[p[2]]) depend(out : val[i])
            dag_compute(s, i);
            break;
        }
    }
    return dag_check(s);
}
#endif

/* ---- Building a DAG ----------------------------------------------------------------------
 * The 64-wide layered graph is given as successor lists (indices); a run
 * turns it into something that can run: a join counter and a list of
 * successor pointers per node. ws: ws_dag_init, ws_node_init per node and
 * the succ arrays, as a backward pass does for every graph. serial: the
 * same arrays into a plain struct, the floor any scheduler's DAG has to
 * pay (and what the Lace peer program does). Memory comes from setup. */

typedef struct plain_node {
    int32_t join, npred;
    int32_t nsucc;
    struct plain_node **succ;
} plain_node;

typedef struct build_state {
    int64_t n;
    int64_t *pred_off, *pred, *succ_off, *succ;
    ws_dag dag;
    ws_node *nodes;
    ws_node **succp;
    plain_node *plain;
    plain_node **plain_succp;
} build_state;

static void build_free(void *state) {
    build_state *s = state;
    if (!s)
        return;
    free(s->pred_off);
    free(s->pred);
    free(s->succ_off);
    free(s->succ);
    free(s->nodes);
    free(s->succp);
    free(s->plain);
    free(s->plain_succp);
    free(s);
}

static void build_node_fn(ws_task *t) { (void)t; }

static void *build_setup(const bench_params *bp) {
    int64_t n = bp->size;
    if (n < 1 || n > (int64_t)1 << 26)
        return NULL;
    build_state *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->n = n;
    s->pred_off = calloc((size_t)n + 1, sizeof(int64_t));
    s->pred = calloc((size_t)n * DAG_MAX_PRED + 1, sizeof(int64_t));
    s->succ_off = calloc((size_t)n + 1, sizeof(int64_t));
    s->succ = calloc((size_t)n * DAG_MAX_PRED + 1, sizeof(int64_t));
    s->nodes = nodes_alloc(n);
    s->succp = calloc((size_t)n * DAG_MAX_PRED + 1, sizeof(ws_node *));
    s->plain = calloc((size_t)n, sizeof(plain_node));
    s->plain_succp = calloc((size_t)n * DAG_MAX_PRED + 1, sizeof(plain_node *));
    if (!s->pred_off || !s->pred || !s->succ_off || !s->succ || !s->nodes || !s->succp || !s->plain ||
        !s->plain_succp) {
        build_free(s);
        return NULL;
    }
    bench_graph_layered(n, DAG_LAYER_WIDTH, s->pred_off, s->pred);
    bench_graph_successors(n, s->pred_off, s->pred, s->succ_off, s->succ);
    return s;
}

static double build_tasks(const bench_params *bp) { return (double)bp->size; }

/* The last node's successors point where the lists say: a cheap check that
 * the whole loop ran. */
static int build_serial_run(void *state, const bench_params *bp) {
    (void)bp;
    build_state *s = state;
    for (int64_t i = 0; i < s->n; i++) {
        plain_node *p = &s->plain[i];
        p->npred = p->join = (int32_t)(s->pred_off[i + 1] - s->pred_off[i]);
        p->succ = &s->plain_succp[s->succ_off[i]];
        p->nsucc = (int32_t)(s->succ_off[i + 1] - s->succ_off[i]);
        for (int64_t k = s->succ_off[i]; k < s->succ_off[i + 1]; k++)
            s->plain_succp[k] = &s->plain[s->succ[k]];
    }
    const plain_node *last = &s->plain[s->n - 1];
    return last->npred == (int32_t)(s->pred_off[s->n] - s->pred_off[s->n - 1]) ? 0 : -1;
}

static int build_ws_run(void *state, const bench_params *bp) {
    build_state *s = state;
    if (ws_dag_init(&s->dag, bp->pool) != 0)
        return -1;
    for (int64_t i = 0; i < s->n; i++) {
        ws_node *w = &s->nodes[i];
        if (ws_node_init(&s->dag, w, build_node_fn, s, (int)(s->pred_off[i + 1] - s->pred_off[i])) != 0)
            return -1;
        w->succ = &s->succp[s->succ_off[i]];
        w->nsucc = (int)(s->succ_off[i + 1] - s->succ_off[i]);
        for (int64_t k = s->succ_off[i]; k < s->succ_off[i + 1]; k++)
            s->succp[k] = &s->nodes[s->succ[k]];
    }
    int64_t first = s->succ_off[0] < s->succ_off[1] ? s->succ[s->succ_off[0]] : -1;
    return first < 0 || s->nodes[0].succ[0] == &s->nodes[first] ? 0 : -1;
}

/* ---- Round trip from outside --------------------------------------------------------------
 * A thread that is not in the pool submits an empty task with ws_submit
 * and waits for it on a semaphore the task posts, `size` times back to
 * back: the latency of handing work to a pool that has just gone idle.
 * The pool is the workload's own, with `threads` workers (the submitter
 * only waits). */

typedef struct trip_state {
    ws_pool *pool;
    sem_t done;
    int64_t count;
    ws_task task;
} trip_state;

static void trip_task(ws_task *t) {
    trip_state *s = t->arg;
    s->count++; /* ordered before the waiter's read by sem_post/sem_wait */
    sem_post(&s->done);
}

static void trip_free(void *state) {
    trip_state *s = state;
    if (!s)
        return;
    ws_pool_destroy(s->pool);
    sem_destroy(&s->done);
    free(s);
}

static void *trip_setup(const bench_params *bp) {
    if (bp->size < 1)
        return NULL;
    trip_state *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    ws_pool_opts o = WS_POOL_OPTS_INIT;
    o.num_threads = bp->threads < 1 ? 1 : bp->threads;
    if (sem_init(&s->done, 0, 0) != 0) {
        free(s);
        return NULL;
    }
    if (ws_pool_create(&s->pool, &o) != 0) {
        sem_destroy(&s->done);
        free(s);
        return NULL;
    }
    return s;
}

static double trip_tasks(const bench_params *bp) { return (double)bp->size; }

static int trip_ws_run(void *state, const bench_params *bp) {
    trip_state *s = state;
    s->count = 0;
    for (int64_t i = 0; i < bp->size; i++) {
        ws_task_init(&s->task, trip_task, s);
        if (ws_submit(s->pool, &s->task) != 0)
            return -1;
        while (sem_wait(&s->done) != 0)
            ;
    }
    return s->count == bp->size ? 0 : -1;
}

/* ---- parallel-for --------------------------------------------------------------------------
 * y[i] = a degree-8 polynomial of x[i]: enough arithmetic per element that
 * the loop is not bound by memory bandwidth. */

typedef struct pfor_state {
    int64_t n, grain;
    float *x, *y, *want;
} pfor_state;

static void pfor_body(void *arg, int64_t lo, int64_t hi) {
    pfor_state *s = arg;
    for (int64_t i = lo; i < hi; i++) {
        float v = s->x[i], r = 0.5f;
        for (int k = 0; k < 8; k++)
            r = r * v + 0.25f;
        s->y[i] = r;
    }
}

static void pfor_free(void *state) {
    pfor_state *s = state;
    if (!s)
        return;
    free(s->x);
    free(s->y);
    free(s->want);
    free(s);
}

static void *pfor_setup(const bench_params *bp) {
    if (bp->size < 1)
        return NULL;
    pfor_state *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->n = bp->size;
    s->grain = bp->grain > 0 ? bp->grain : 4096;
    s->x = malloc((size_t)s->n * sizeof(float));
    s->y = malloc((size_t)s->n * sizeof(float));
    s->want = malloc((size_t)s->n * sizeof(float));
    if (!s->x || !s->y || !s->want) {
        pfor_free(s);
        return NULL;
    }
    for (int64_t i = 0; i < s->n; i++)
        s->x[i] = (float)(i % 1000) * 1e-3f;
    pfor_body(s, 0, s->n);
    memcpy(s->want, s->y, (size_t)s->n * sizeof(float));
    return s;
}

static void pfor_reset(void *state) {
    pfor_state *s = state;
    memset(s->y, 0, (size_t)s->n * sizeof(float));
}

static int pfor_check(pfor_state *s) { return memcmp(s->y, s->want, (size_t)s->n * sizeof(float)) == 0 ? 0 : -1; }

static double pfor_tasks(const bench_params *bp) {
    int64_t g = bp->grain > 0 ? bp->grain : 4096;
    return (double)((bp->size + g - 1) / g); /* chunks */
}

static int pfor_serial_run(void *state, const bench_params *bp) {
    (void)bp;
    pfor_state *s = state;
    pfor_body(s, 0, s->n);
    return pfor_check(s);
}

static int pfor_ws_run(void *state, const bench_params *bp) {
    pfor_state *s = state;
    if (ws_parallel_for(bp->pool, 0, s->n, s->grain, pfor_body, s) != 0)
        return -1;
    return pfor_check(s);
}

#ifdef _OPENMP
static int pfor_omp_run(void *state, const bench_params *bp) {
    pfor_state *s = state;
    int64_t n = s->n, grain = s->grain;
    /* One taskloop iteration per chunk of `grain` elements, so the tasks are
     * the same pieces ws runs. Unsigned: clang warns about the signed
     * comparison inside its own taskloop expansion. */
    uint64_t nchunks = (uint64_t)((n + grain - 1) / grain);
#pragma omp parallel num_threads(bp->threads)
#pragma omp single
#pragma omp taskloop grainsize(1)
    for (uint64_t c = 0; c < nchunks; c++) {
        int64_t lo = (int64_t)c * grain;
        pfor_body(s, lo, lo + grain < n ? lo + grain : n);
    }
    return pfor_check(s);
}
#endif

/* ---- ceiling ----------------------------------------------------------------------------------
 * Eight equal pieces of serial work (fib), dealt round-robin to `threads`
 * plain threads with no scheduler at all. Its speedup is what the machine
 * gives: on a shared or throttled machine two cores are not twice one. */

enum { CEIL_PIECES = 8 };

typedef struct ceil_state {
    int n;
    long want;
} ceil_state;

typedef struct ceil_thread {
    ceil_state *s;
    int first, step;
    long got;
    pthread_t th;
} ceil_thread;

static void *ceil_main(void *arg) {
    ceil_thread *c = arg;
    for (int p = c->first; p < CEIL_PIECES; p += c->step)
        c->got += fib_serial(c->s->n);
    return NULL;
}

static void *ceil_setup(const bench_params *bp) {
    if (bp->size < 0 || bp->size > 60)
        return NULL;
    ceil_state *s = calloc(1, sizeof(*s));
    if (s) {
        s->n = (int)bp->size;
        s->want = CEIL_PIECES * fib_value(s->n);
    }
    return s;
}

static int ceil_run(void *state, const bench_params *bp) {
    ceil_state *s = state;
    int t = bp->threads < 1 ? 1 : bp->threads < CEIL_PIECES ? bp->threads : CEIL_PIECES;
    ceil_thread th[CEIL_PIECES];
    for (int i = 0; i < t; i++) {
        th[i] = (ceil_thread){.s = s, .first = i, .step = t};
        if (i > 0 && pthread_create(&th[i].th, NULL, ceil_main, &th[i]) != 0)
            return -1;
    }
    ceil_main(&th[0]);
    long got = th[0].got;
    for (int i = 1; i < t; i++) {
        pthread_join(th[i].th, NULL);
        got += th[i].got;
    }
    return got == s->want ? 0 : -1;
}

static double ceil_tasks(const bench_params *bp) {
    (void)bp;
    return CEIL_PIECES;
}

/* ---- The list ------------------------------------------------------------------------------------ */

static const bench_workload workloads[] = {
    {"fib", "serial", "fib(n), plain recursion", 32, 18, fib_setup, fib_serial_run, free, fib_tasks, NULL, 1},
    {"fib", "ws", "fib(n), ws_fork fib(n-1), ws_join, no cutoff", 32, 18, fib_setup, fib_ws_run, free, fib_tasks, NULL,
     0},
    {"fib", "ws-group", "fib(n), a ws_group per call: spawn fib(n-1), wait", 32, 18, fib_setup, fib_group_run, free,
     fib_tasks, NULL, 0},
#ifdef _OPENMP
    {"fib", "openmp", "fib(n), omp task + taskwait, no cutoff", 32, 18, fib_setup, fib_omp_run, free, fib_tasks, NULL,
     0},
#endif
    {"tree", "serial", "binary tree of n nodes, parent before children", 1 << 20, 4095, tree_setup, dag_serial_run,
     dag_free, dag_tasks, dag_reset, 1},
    {"tree", "ws", "binary-tree DAG, ws_dag", 1 << 20, 4095, tree_ws_setup, dag_ws_run, dag_free, dag_tasks, dag_reset,
     0},
#ifdef _OPENMP
    {"tree", "openmp", "binary-tree DAG, omp task depend", 1 << 20, 4095, tree_setup, dag_omp_run, dag_free, dag_tasks,
     dag_reset, 0},
#endif
    {"chain", "serial", "linear chain of n nodes", 1 << 20, 10000, chain_setup, dag_serial_run, dag_free, dag_tasks,
     dag_reset, 1},
    {"chain", "ws", "linear chain, ws_dag (keep-one-successor)", 1 << 20, 10000, chain_ws_setup, dag_ws_run, dag_free,
     dag_tasks, dag_reset, 0},
#ifdef _OPENMP
    {"chain", "openmp", "linear chain, omp task depend", 1 << 20, 10000, chain_setup, dag_omp_run, dag_free, dag_tasks,
     dag_reset, 0},
#endif
    {"random", "serial", "random layered DAG (width 100, 1-3 preds), n nodes", 200000, 5000, random_setup,
     dag_serial_run, dag_free, dag_tasks, dag_reset, 1},
    {"random", "ws", "random layered DAG, ws_dag", 200000, 5000, random_ws_setup, dag_ws_run, dag_free, dag_tasks,
     dag_reset, 0},
#ifdef _OPENMP
    {"random", "openmp", "random layered DAG, omp task depend", 200000, 5000, random_setup, dag_omp_run, dag_free,
     dag_tasks, dag_reset, 0},
#endif
    {"layer64", "serial", "layered DAG, width 64, 1-3 preds, no busy work", 64 << 12, 64 << 6, layer_setup,
     dag_serial_run, dag_free, dag_tasks, dag_reset, 1},
    {"layer64", "ws", "layered DAG, no busy work, ws_dag", 64 << 12, 64 << 6, layer_ws_setup, dag_ws_run, dag_free,
     dag_tasks, dag_reset, 0},
#ifdef _OPENMP
    {"layer64", "openmp", "layered DAG, no busy work, omp task depend", 64 << 12, 64 << 6, layer_setup, dag_omp_run,
     dag_free, dag_tasks, dag_reset, 0},
#endif
    {"dagbuild", "serial", "join counters and successor pointers of layer64's graph, plain struct", 64 << 12, 64 << 6,
     build_setup, build_serial_run, build_free, build_tasks, NULL, 1},
    {"dagbuild", "ws", "ws_dag_init + ws_node_init + succ of layer64's graph", 64 << 12, 64 << 6, build_setup,
     build_ws_run, build_free, build_tasks, NULL, 0},
    {"pfor", "serial", "n-element polynomial loop", 1 << 22, 1 << 16, pfor_setup, pfor_serial_run, pfor_free,
     pfor_tasks, pfor_reset, 1},
    {"pfor", "ws", "ws_parallel_for with --grain (default 4096)", 1 << 22, 1 << 16, pfor_setup, pfor_ws_run, pfor_free,
     pfor_tasks, pfor_reset, 0},
#ifdef _OPENMP
    {"pfor", "openmp", "omp taskloop over chunks of --grain", 1 << 22, 1 << 16, pfor_setup, pfor_omp_run, pfor_free,
     pfor_tasks, pfor_reset, 0},
#endif
    {"roundtrip", "ws", "ws_submit from outside, sem_wait, n times; `threads` workers", 2000, 100, trip_setup,
     trip_ws_run, trip_free, trip_tasks, NULL, 0},
    {"ceiling", "pthreads", "8 x serial fib(n) on plain threads: the machine's own speedup", 30, 16, ceil_setup,
     ceil_run, free, ceil_tasks, NULL, 0},
};

const bench_workload *bench_sched_list(size_t *count) {
    *count = sizeof(workloads) / sizeof(workloads[0]);
    return workloads;
}
