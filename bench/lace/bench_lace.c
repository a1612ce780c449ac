/* The scheduler workloads of agrad-bench (bench/bench_sched.c) on Lace
 * (github.com/trolando/lace), for a side-by-side comparison. Lace is not
 * part of agrad and is not built by meson: build it outside the tree, then
 * this file against it, with the flags the release build uses:
 *
 *     git clone https://github.com/trolando/lace /work/ext/lace
 *     cmake -S /work/ext/lace -B /work/ext/lace/build -DCMAKE_BUILD_TYPE=Release
 *     cc -O3 -std=gnu11 -I/work/ext/lace/src -I/work/ext/lace/build \
 *        bench/lace/bench_lace.c /work/ext/lace/src/lace.c -lpthread -lm -o bench-lace
 *     ./bench-lace -w 1      # then -w 2; one worker count per process (Lace's workers are global)
 *
 * Workloads, same sizes and graph as agrad-bench --only sched:
 *   fib       fib(32) by SPAWN/CALL/SYNC, no cutoff
 *   layer64   the 64-wide layered DAG (bench_graph.h) with no busy work: each
 *             node computes its value from its predecessors' as agrad-bench's
 *             nodes do (then the result is checked), run with join counters
 *             as ws_dag runs it: the thread that makes a node ready keeps one
 *             successor and SPAWNs the others, then SYNCs them
 *   dagbuild  join counters and successor pointers of that graph (Lace has
 *             no DAG type; this is what a DAG on Lace has to build), on the
 *             main thread with the workers suspended
 *   roundtrip RUN of an empty task from the main thread (not a worker), 2000
 *             times back to back
 * Lace's workers are its only threads: -w N means N threads doing work, the
 * main thread waits in RUN. Medians of --reps runs (default 11) after 2
 * warm-up runs; ns per task as agrad-bench prints them. */
#include "../bench_graph.h"
#include "lace.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- fib ---- */

TASK_1(long, pfib, int, n) {
    if (n < 2)
        return n;
    SPAWN(pfib, n - 1);
    long k = CALL(pfib, n - 2);
    long m = SYNC(pfib);
    return m + k;
}

__attribute__((noinline)) static long fib_serial(int n) { return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2); }

/* ---- the layered DAG ---- */

typedef struct lnode {
    _Atomic int32_t join;
    int32_t npred, nsucc;
    struct lnode **succ;
} lnode;

typedef struct lgraph {
    int64_t n;
    int64_t *pred_off, *pred, *succ_off, *succ;
    lnode *nodes;
    lnode **succp;
    uint64_t *val, *want;
    int64_t *roots;
    int64_t nroots;
    _Atomic int64_t ran;
} lgraph;

/* Node i is ready; run it and every successor it makes ready that it keeps,
 * spawning the others; sync them at the end. The join counter resets as
 * the node runs, as in ws_dag, so the same graph runs again. */
/* What agrad-bench's nodes compute (bench_sched.c, dag_compute, with no
 * busy work): a value from the node's index and its predecessors' values. */
static inline void lnode_compute(lgraph *g, int64_t i) {
    uint64_t v = (uint64_t)i + 1;
    for (int64_t k = g->pred_off[i]; k < g->pred_off[i + 1]; k++)
        v = v * 31 + g->val[g->pred[k]];
    g->val[i] = v;
}

VOID_TASK_2(lnode_run, lgraph *, g, lnode *, x) {
    int spawned = 0;
    int64_t ran = 0;
    while (x) {
        atomic_store_explicit(&x->join, x->npred, memory_order_relaxed);
        lnode_compute(g, x - g->nodes);
        ran++;
        lnode *keep = NULL;
        for (int k = 0; k < x->nsucc; k++) {
            lnode *s = x->succ[k];
            if (atomic_fetch_sub_explicit(&s->join, 1, memory_order_acq_rel) != 1)
                continue;
            if (!keep) {
                keep = s;
            } else {
                SPAWN(lnode_run, g, s);
                spawned++;
            }
        }
        x = keep;
    }
    while (spawned-- > 0)
        SYNC(lnode_run);
    atomic_fetch_add_explicit(&g->ran, ran, memory_order_relaxed);
}

VOID_TASK_1(lgraph_run, lgraph *, g) {
    for (int64_t r = 1; r < g->nroots; r++)
        SPAWN(lnode_run, g, &g->nodes[g->roots[r]]);
    CALL(lnode_run, g, &g->nodes[g->roots[0]]);
    for (int64_t r = 1; r < g->nroots; r++)
        SYNC(lnode_run);
}

static void lgraph_build(lgraph *g) {
    for (int64_t i = 0; i < g->n; i++) {
        lnode *p = &g->nodes[i];
        p->npred = (int32_t)(g->pred_off[i + 1] - g->pred_off[i]);
        atomic_store_explicit(&p->join, p->npred, memory_order_relaxed);
        p->succ = &g->succp[g->succ_off[i]];
        p->nsucc = (int32_t)(g->succ_off[i + 1] - g->succ_off[i]);
        for (int64_t k = g->succ_off[i]; k < g->succ_off[i + 1]; k++)
            g->succp[k] = &g->nodes[g->succ[k]];
    }
}

static int lgraph_init(lgraph *g, int64_t n) {
    memset(g, 0, sizeof(*g));
    g->n = n;
    g->pred_off = calloc((size_t)n + 1, sizeof(int64_t));
    g->pred = calloc((size_t)n * BENCH_GRAPH_MAX_PRED + 1, sizeof(int64_t));
    g->succ_off = calloc((size_t)n + 1, sizeof(int64_t));
    g->succ = calloc((size_t)n * BENCH_GRAPH_MAX_PRED + 1, sizeof(int64_t));
    g->nodes = calloc((size_t)n, sizeof(lnode));
    g->succp = calloc((size_t)n * BENCH_GRAPH_MAX_PRED + 1, sizeof(lnode *));
    g->roots = calloc((size_t)n, sizeof(int64_t));
    g->val = calloc((size_t)n, sizeof(uint64_t));
    g->want = calloc((size_t)n, sizeof(uint64_t));
    if (!g->pred_off || !g->pred || !g->succ_off || !g->succ || !g->nodes || !g->succp || !g->roots || !g->val ||
        !g->want)
        return -1;
    bench_graph_layered(n, 64, g->pred_off, g->pred);
    bench_graph_successors(n, g->pred_off, g->pred, g->succ_off, g->succ);
    for (int64_t i = 0; i < n; i++)
        lnode_compute(g, i);
    memcpy(g->want, g->val, (size_t)n * sizeof(uint64_t));
    for (int64_t i = 0; i < n; i++)
        if (g->pred_off[i + 1] == g->pred_off[i])
            g->roots[g->nroots++] = i;
    return 0;
}

/* ---- round trip ---- */

VOID_TASK_1(trip, int64_t *, count) { (*count)++; }

/* ---- driver ---- */

static int reps = 11, warmup = 2;

/* Runs body `warmup + reps` times, returns the median in ns; reset runs
 * before each, untimed. */
#define MEASURE_RESET(out_ns, reset, body)                                                                             \
    do {                                                                                                               \
        double *t_ = calloc((size_t)reps, sizeof(double));                                                             \
        for (int r_ = 0; r_ < warmup + reps; r_++) {                                                                   \
            reset;                                                                                                     \
            double t0_ = now_ns();                                                                                     \
            body;                                                                                                      \
            double dt_ = now_ns() - t0_;                                                                               \
            if (r_ >= warmup)                                                                                          \
                t_[r_ - warmup] = dt_;                                                                                 \
        }                                                                                                              \
        qsort(t_, (size_t)reps, sizeof(double), cmp_double);                                                           \
        (out_ns) = t_[reps / 2];                                                                                       \
        free(t_);                                                                                                      \
    } while (0)
#define MEASURE(out_ns, body) MEASURE_RESET(out_ns, (void)0, body)

static void report(const char *name, const char *impl, int workers, int64_t size, double ns, double tasks) {
    printf("%-9s %-8s %7d %11lld %11.3f %12.2f\n", name, impl, workers, (long long)size, ns / 1e6, ns / tasks);
}

int main(int argc, char **argv) {
    int workers = 1;
    int fib_n = 32;
    int64_t layer_n = 64 << 12, trips = 2000;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-w") && i + 1 < argc)
            workers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
            warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--fib") && i + 1 < argc)
            fib_n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--layer") && i + 1 < argc)
            layer_n = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--trips") && i + 1 < argc)
            trips = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [-w workers] [--reps N] [--warmup N] [--fib N] [--layer NODES] [--trips N] "
                    "[--only fib|layer64|dagbuild|roundtrip]\n",
                    argv[0]);
            return 2;
        }
    }
    if (workers < 1 || reps < 1 || warmup < 0)
        return 2;
    lace_set_stacksize(64u << 20);
    lace_start((unsigned)workers, (size_t)1 << 20);
    printf("bench-lace: Lace %d workers, reps %d (median), warm-up %d\n", workers, reps, warmup);
    printf("%-9s %-8s %7s %11s %11s %12s\n", "workload", "impl", "threads", "size", "median ms", "ns/task");
    int fail = 0;
    double ns;

    if (!only || !strcmp(only, "fib")) {
        long want = fib_serial(fib_n), got = 0;
        double tasks = 0;
        for (long a = 0, b = 1, i = 0; i <= fib_n; i++) { /* calls with n >= 2: fib(n + 1) - 1 */
            long c = a + b;
            a = b;
            b = c;
            tasks = (double)a - 1;
        }
        volatile int vn = fib_n; /* or the call is hoisted out of the loop */
        MEASURE(ns, got = fib_serial(vn));
        report("fib", "serial", 1, fib_n, ns, tasks);
        MEASURE(ns, got = RUN(pfib, fib_n));
        report("fib", "lace", workers, fib_n, ns, tasks);
        fail |= got != want;
    }

    lgraph g;
    if (lgraph_init(&g, layer_n) != 0) {
        fprintf(stderr, "bench-lace: out of memory\n");
        return 1;
    }
    lgraph_build(&g);
    if (!only || !strcmp(only, "layer64")) {
        /* As in agrad-bench: the values are cleared before a run (untimed),
         * and checked after it (timed). */
        MEASURE_RESET(ns, memset(g.val, 0, (size_t)g.n * sizeof(uint64_t)), {
            atomic_store(&g.ran, 0);
            RUN(lgraph_run, &g);
            fail |= atomic_load(&g.ran) != g.n || memcmp(g.val, g.want, (size_t)g.n * sizeof(uint64_t)) != 0;
        });
        report("layer64", "lace", workers, g.n, ns, (double)g.n);
    }
    if (!only || !strcmp(only, "dagbuild")) {
        /* On the main thread with the workers suspended: resumed, they spin
         * looking for work and would take the CPU from the build. */
        lace_suspend();
        MEASURE(ns, lgraph_build(&g));
        lace_resume();
        report("dagbuild", "lace", workers, g.n, ns, (double)g.n);
    }
    if (!only || !strcmp(only, "roundtrip")) {
        int64_t count = 0;
        MEASURE(ns, {
            for (int64_t i = 0; i < trips; i++)
                RUN(trip, &count);
        });
        report("roundtrip", "lace", workers, trips, ns, (double)trips);
        fail |= count != (warmup + reps) * trips;
    }
    lace_stop();
    if (fail)
        fprintf(stderr, "bench-lace: wrong result\n");
    return fail ? 1 : 0;
}
