/* agrad-bench's workload table. A workload is one program (fib, a DAG
 * shape, a parallel-for) in one implementation (serial, ws, openmp); each
 * file of workloads exports a list, and main.c's table of lists is the one
 * place that names them. To add workloads, write bench_<area>.c with a
 * bench_<area>_list() and add one line to that table. */
#ifndef AGRAD_BENCH_H
#define AGRAD_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "ws.h"

typedef struct bench_params {
    int threads;   /* threads doing the work, the calling thread included */
    int64_t size;  /* the workload's size (fib n, nodes, iterations) */
    int64_t work;  /* busy iterations per task, where a workload has them */
    int64_t grain; /* parallel-for grain */
    /* For ws implementations: threads - 1 workers; the calling thread
     * joins in through ws_run, ws_dag_run or ws_parallel_for. */
    ws_pool *pool;
} bench_params;

typedef struct bench_workload {
    const char *name; /* "fib"; implementations of one program share it */
    const char *impl; /* "serial", "ws", "openmp", ... */
    const char *what; /* one line for --list */
    int64_t size, quick_size;
    /* Builds what a run needs (outside the timing); NULL on failure. */
    void *(*setup)(const bench_params *bp);
    /* One timed run; returns 0 when the result checks out. */
    int (*run)(void *state, const bench_params *bp);
    void (*teardown)(void *state);
    /* Tasks (or nodes, or chunks) in one run of this size. */
    double (*tasks)(const bench_params *bp);
    /* Optional, before each run, untimed: clears outputs so a run is checked
     * on its own. */
    void (*reset)(void *state);
    /* Serial implementations run at one thread only. */
    int serial;
} bench_workload;

/* Each workload file: the list and its length. */
const bench_workload *bench_sched_list(size_t *count);

#endif /* AGRAD_BENCH_H */
