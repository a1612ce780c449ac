/* Scheduler workloads for agrad-bench: fib through spawn and wait, a
 * binary-tree DAG, a linear chain, a random layered DAG and a parallel-for.
 * Each has a serial version (the baseline that per-task overhead is measured
 * against), a ws version and, when built with OpenMP, an OpenMP-task version
 * (depend clauses for the DAGs), plus a "ceiling" of independent threads
 * that shows how much parallel speed the machine itself gives. */
#include "bench.h"

#include <pthread.h>
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

static long fib_ws(int n);

static void fib_ws_task(ws_task *t) {
    fib_frame *f = (fib_frame *)t;
    f->result = fib_ws(f->n);
}

static long fib_ws(int n) {
    if (n < 2)
        return n;
    ws_group g;
    ws_group_init(&g, NULL);
    fib_frame f;
    ws_task_init(&f.task, fib_ws_task, NULL);
    f.n = n - 1;
    ws_spawn(&g, &f.task);
    long y = fib_ws(n - 2);
    ws_group_wait(&g);
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

enum { DAG_TREE, DAG_CHAIN, DAG_RANDOM };
enum { DAG_MAX_PRED = 3, DAG_RANDOM_WIDTH = 100 };

typedef struct dag_state dag_state;

typedef struct dnode {
    ws_node node;
    dag_state *s;
    int64_t id;
} dnode;

struct dag_state {
    int64_t n, work;
    int64_t *pred_off; /* n + 1 */
    int64_t *pred;
    uint64_t *val, *want;
    /* ws */
    ws_dag dag;
    dnode *nodes;
    ws_node **succ; /* CSR by the same offsets as the successor counts */
    ws_node **roots;
    int nroots;
};

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
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        s->pred_off[i] = m;
        if (shape == DAG_TREE && i > 0) {
            s->pred[m++] = (i - 1) / 2;
        } else if (shape == DAG_CHAIN && i > 0) {
            s->pred[m++] = i - 1;
        } else if (shape == DAG_RANDOM && i >= DAG_RANDOM_WIDTH) {
            /* 1 to 3 distinct predecessors in the previous layer. */
            int64_t layer0 = (i / DAG_RANDOM_WIDTH - 1) * DAG_RANDOM_WIDTH;
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            int k = 1 + (int)(rng % DAG_MAX_PRED);
            int64_t start = m;
            for (int j = 0; j < k; j++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                int64_t p = layer0 + (int64_t)(rng % DAG_RANDOM_WIDTH);
                bool dup = false;
                for (int64_t q = start; q < m; q++)
                    dup |= s->pred[q] == p;
                if (!dup)
                    s->pred[m++] = p;
            }
        }
    }
    s->pred_off[n] = m;
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

static int dag_serial_run(void *state, const bench_params *bp) {
    (void)bp;
    dag_state *s = state;
    for (int64_t i = 0; i < s->n; i++)
        dag_compute(s, i);
    return dag_check(s);
}

/* ws: one ws_node per node, successors from the predecessor lists. */

static void dag_ws_node(ws_task *t) {
    dnode *d = (dnode *)ws_node_of(t);
    dag_compute(d->s, d->id);
}

static void *dag_ws_wrap(dag_state *s, const bench_params *bp) {
    if (!s)
        return NULL;
    int64_t n = s->n;
    s->nodes = calloc((size_t)n, sizeof(dnode));
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
        dnode *d = &s->nodes[i];
        d->s = s;
        d->id = i;
        int npred = (int)(s->pred_off[i + 1] - s->pred_off[i]);
        ws_node_init(&s->dag, &d->node, dag_ws_node, NULL, npred);
        d->node.succ = &s->succ[nsucc[i]];
        if (npred == 0)
            s->roots[s->nroots++] = &d->node;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = s->pred_off[i]; k < s->pred_off[i + 1]; k++) {
            dnode *p = &s->nodes[s->pred[k]];
            p->node.succ[p->node.nsucc++] = &s->nodes[i].node;
        }
    free(nsucc);
    return s;
}

static void *tree_ws_setup(const bench_params *bp) { return dag_ws_wrap(dag_build(DAG_TREE, bp, 0), bp); }
static void *chain_ws_setup(const bench_params *bp) { return dag_ws_wrap(dag_build(DAG_CHAIN, bp, 0), bp); }
static void *random_ws_setup(const bench_params *bp) { return dag_ws_wrap(dag_build(DAG_RANDOM, bp, 100), bp); }

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
    {"fib", "ws", "fib(n), spawn fib(n-1) and wait, no cutoff", 32, 18, fib_setup, fib_ws_run, free, fib_tasks, NULL,
     0},
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
    {"pfor", "serial", "n-element polynomial loop", 1 << 22, 1 << 16, pfor_setup, pfor_serial_run, pfor_free,
     pfor_tasks, pfor_reset, 1},
    {"pfor", "ws", "ws_parallel_for with --grain (default 4096)", 1 << 22, 1 << 16, pfor_setup, pfor_ws_run, pfor_free,
     pfor_tasks, pfor_reset, 0},
#ifdef _OPENMP
    {"pfor", "openmp", "omp taskloop over chunks of --grain", 1 << 22, 1 << 16, pfor_setup, pfor_omp_run, pfor_free,
     pfor_tasks, pfor_reset, 0},
#endif
    {"ceiling", "pthreads", "8 x serial fib(n) on plain threads: the machine's own speedup", 30, 16, ceil_setup,
     ceil_run, free, ceil_tasks, NULL, 0},
};

const bench_workload *bench_sched_list(size_t *count) {
    *count = sizeof(workloads) / sizeof(workloads[0]);
    return workloads;
}
