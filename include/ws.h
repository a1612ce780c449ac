/* ws: agrad's work-stealing scheduler. A persistent pool of worker threads,
 * one Chase-Lev deque each, task groups (spawn, then wait while helping),
 * parallel-for, and dependency-counted DAGs. Knows nothing of tensors.
 *
 * Every public name starts with ws_ / WS_. Functions that return int return
 * 0 (or a count) on success and a negative WS_E... code on error; no function
 * aborts on a bad argument.
 *
 * Threads. A pool has N worker threads. Any other thread ("outside" thread)
 * may use the pool too: when it calls ws_run, ws_group_init, ws_parallel_for
 * or ws_dag_run it borrows one of the pool's outside slots, which carries its
 * own deque, and for as long as it waits it is a participant like a worker:
 * it runs its own tasks, thieves steal from its deque, and it steals from
 * theirs. So the calling thread always works while it waits, and N workers
 * plus one waiting caller means N+1 threads run tasks (create N-1 workers to
 * have N in all). ws_submit from an outside thread that is not waiting goes
 * through a separate submission queue that the workers serve. */
#ifndef WS_H
#define WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define WS_EXPORT
#elif defined(WS_BUILDING) || defined(AGRAD_BUILDING)
#define WS_EXPORT __attribute__((visibility("default")))
#else
#define WS_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes: one table drives the enum and ws_strerror(). */
#define WS_ERRNO_MAP(X)                                                                                                \
    X(EINVAL, -1, "invalid argument")                                                                                  \
    X(ENOMEM, -2, "out of memory")                                                                                     \
    X(EAGAIN, -3, "cannot create a thread")                                                                            \
    X(ESTATE, -4, "wrong thread or state for this call")                                                               \
    X(EBUSY, -5, "pool still in use by an outside thread")

enum {
    WS_OK = 0,
#define WS__ERRNO_ENUM(name, code, msg) WS_##name = (code),
    WS_ERRNO_MAP(WS__ERRNO_ENUM)
#undef WS__ERRNO_ENUM
        WS_ERRNO_COUNT = 6
};

WS_EXPORT const char *ws_strerror(int code); /* static text; "unknown error" */

typedef struct ws_pool ws_pool;
typedef struct ws_task ws_task;
typedef struct ws_group ws_group;
typedef struct ws_dag ws_dag;
typedef struct ws_node ws_node;

/* ---- Pools ------------------------------------------------------------------ */

#define WS_THREADS_DEFAULT (-1)

typedef struct ws_pool_opts {
    /* Worker threads. WS_THREADS_DEFAULT: AG_NUM_THREADS if set to a
     * positive number, else one per core this process may run on. 0 is
     * allowed: then only threads waiting in the pool run tasks. */
    int num_threads;
    int max_outside;   /* outside threads inside the pool at once; 0: 64 */
    size_t stack_size; /* of each worker; 0: the pthread default */
} ws_pool_opts;

#define WS_POOL_OPTS_INIT                                                                                              \
    { WS_THREADS_DEFAULT, 0, 0 }

/* The default worker count: AG_NUM_THREADS, else the cores we may run on. */
WS_EXPORT int ws_default_num_threads(void);

/* Starts the workers. opts may be NULL (defaults). On failure *out is NULL
 * and every thread already started has been joined: WS_EAGAIN when a thread
 * cannot be created, WS_ENOMEM, WS_EINVAL. */
WS_EXPORT int ws_pool_create(ws_pool **out, const ws_pool_opts *opts);

/* Runs what is still queued, then joins every worker and frees the pool.
 * WS_ESTATE from one of the pool's own tasks, WS_EBUSY while an outside
 * thread is inside the pool (the pool is then left intact). */
WS_EXPORT int ws_pool_destroy(ws_pool *pool);

WS_EXPORT int ws_pool_num_threads(const ws_pool *pool); /* workers */
/* Wakes up to n sleeping workers, which look for work for a few tens of
 * microseconds before they sleep again. A caller about to hand the pool a
 * burst of work calls it first, so that waking (slow on some virtual
 * machines) overlaps its own preparation. Returns how many it woke. */
WS_EXPORT int ws_pool_wake(ws_pool *pool, int n);
/* Upper bound of ws_participant_index() + 1: workers plus outside slots.
 * Size per-participant arrays (scratch buffers, partial sums) with it. */
WS_EXPORT int ws_pool_max_participants(const ws_pool *pool);

/* The calling thread's participant index in the pool it is working for
 * (workers first, then outside slots), or -1 when it is in none. Stable for
 * the duration of a task. */
WS_EXPORT int ws_participant_index(void);
/* The pool the calling thread is working for, or NULL. */
WS_EXPORT ws_pool *ws_current_pool(void);

/* ---- Tasks ------------------------------------------------------------------- */

typedef void (*ws_task_fn)(ws_task *task);

/* A task lives in storage its spawner provides (a stack frame, a node, an
 * array) and must stay valid until it has run; the scheduler never
 * allocates per task. fn may reuse or free its task. */
struct ws_task {
    /* public */
    ws_task_fn fn;
    void *arg;
    const char *name; /* shown in the trace; NULL: "task" */
    /* private */
    ws_group *group; /* the group that counts this task, or NULL */
    ws_dag *dag;     /* set when the task is a ws_node */
    ws_task *next;   /* link in the submission queue */
};

#define WS_TASK_INIT(fn_, arg_)                                                                                        \
    { (fn_), (arg_), NULL, NULL, NULL, NULL }

static inline void ws_task_init(ws_task *t, ws_task_fn fn, void *arg) {
    t->fn = fn;
    t->arg = arg;
    t->name = NULL;
    t->group = NULL;
    t->dag = NULL;
    t->next = NULL;
}

/* Fire and forget: from a worker (or a thread waiting in the pool) the task
 * goes on the caller's deque; from any other thread it goes through the
 * submission queue and wakes a sleeping worker. With no workers, queued
 * tasks run only when some thread waits in the pool. Completion is the
 * task's own business (a counter, a semaphore). */
WS_EXPORT int ws_submit(ws_pool *pool, ws_task *task);

/* Runs fn on the calling thread as a task of pool, and returns when it has
 * returned. From an outside thread this makes the thread a participant for
 * the call, so the groups, parallel-fors and DAGs fn starts help with the
 * pool's work. */
WS_EXPORT int ws_run(ws_pool *pool, ws_task_fn fn, void *arg);

/* ---- Task groups: spawn, then wait ------------------------------------------
 * A group belongs to the thread that initialises it; only that thread may
 * spawn into it and wait on it, and every init must be paired with a wait.
 * The waiting thread runs the group's tasks that are still on its deque
 * (most of them, without any atomic read-modify-write), then steals other
 * work until the stolen ones are done; it sleeps only when there is nothing
 * to run. Groups nest: a task may init, spawn and wait on its own group.
 *
 *     ws_group g;
 *     ws_group_init(&g, pool);          // pool may be NULL inside a task
 *     ws_spawn(&g, &t1);
 *     ws_spawn(&g, &t2);
 *     ... other work on this thread ...
 *     ws_group_wait(&g);                // t1 and t2 have run */
struct ws_group {
    /* private: owner thread only, except stolen_done */
    uint32_t magic;
    struct ws__part *self; /* the participant that owns the group */
    int64_t base;          /* owner's deque bottom at init */
    int64_t spawned;
    int64_t local_done;  /* run by the owner itself */
    int64_t stolen_done; /* run by thieves: an atomic add (release) by each */
};

/* pool NULL: the pool the calling thread is working for (WS_ESTATE if none). */
WS_EXPORT int ws_group_init(ws_group *g, ws_pool *pool);
/* Never fails for lack of memory: if the deque cannot grow, the task runs
 * at once on the caller. WS_ESTATE from a thread that does not own g. */
WS_EXPORT int ws_spawn(ws_group *g, ws_task *task);
WS_EXPORT int ws_group_wait(ws_group *g);

/* ---- Parallel-for ---------------------------------------------------------------
 * fn(arg, lo, hi) over disjoint [lo, hi) covering [begin, end) once each,
 * split in halves down to `grain` iterations (0: about 8 chunks per
 * participant). Runs on the pool the caller is working for, or pool; the
 * caller works too and returns when every chunk is done. Nests inside tasks. */
typedef void (*ws_range_fn)(void *arg, int64_t lo, int64_t hi);
WS_EXPORT int ws_parallel_for(ws_pool *pool, int64_t begin, int64_t end, int64_t grain, ws_range_fn fn, void *arg);

/* ---- Dependency-counted DAGs ------------------------------------------------------
 * Each node has a join counter of its predecessors. When a node's function
 * has returned, its successors in succ[] are released; a function may also
 * release successors itself, as soon as it has produced their input
 * (ws_node_release). The thread that brings a counter to zero keeps the
 * first such node and runs it next, with no deque traffic; it pushes the
 * others on its deque for thieves. Counters reset themselves as nodes run,
 * so a DAG can be run again as it is.
 *
 *     ws_dag d;
 *     ws_dag_init(&d, pool);
 *     ws_node_init(&d, &a, fa, NULL, 0);     // a root
 *     ws_node_init(&d, &b, fb, NULL, 1);     // one predecessor
 *     a.succ = (ws_node *[]){&b}; a.nsucc = 1;
 *     ws_dag_run(&d, (ws_node *[]){&a}, 1);  // the caller helps until b ran
 *
 * Every node must be reachable from the roots and the graph acyclic, or
 * ws_dag_run never returns. */
struct ws_dag {
    /* private */
    uint32_t magic;
    ws_pool *pool;
    int64_t nnodes;          /* set up by ws_node_init, before the run */
    struct ws__part *waiter; /* the thread in ws_dag_run */
    int64_t pending;         /* nodes not yet done in this run (atomic) */
    int32_t running;         /* one ws_dag_run at a time (atomic) */
};

struct ws_node {
    /* public */
    ws_task task;   /* fn, arg, name; fn receives &node->task (ws_node_of) */
    ws_node **succ; /* released after fn returns; may be NULL */
    int nsucc;
    /* private */
    int32_t npred;
    int32_t join; /* predecessors not yet done in this run (atomic) */
};

static inline ws_node *ws_node_of(ws_task *t) { return (ws_node *)(void *)((char *)t - offsetof(ws_node, task)); }

WS_EXPORT int ws_dag_init(ws_dag *d, ws_pool *pool);
/* Before ws_dag_run (or between runs). npred >= 0; clears succ/nsucc. */
WS_EXPORT int ws_node_init(ws_dag *d, ws_node *n, ws_task_fn fn, void *arg, int npred);
/* One predecessor of n is done. Returns 1 if that made n ready (it is then
 * kept or queued), 0 if n still waits, WS_ESTATE if n had no pending
 * predecessor. Call it for the edges not listed in a node's succ[]. */
WS_EXPORT int ws_node_release(ws_node *n);
/* Runs the DAG from its roots (nodes with npred 0) and returns when every
 * node has run; the caller runs nodes meanwhile (from any thread). */
WS_EXPORT int ws_dag_run(ws_dag *d, ws_node *const *roots, int nroots);

/* ---- Counters and trace ------------------------------------------------------------ */

typedef struct ws_stats {
    uint64_t tasks_run;     /* tasks and DAG nodes run by this participant */
    uint64_t steals;        /* tasks taken from another deque or the queue */
    uint64_t failed_steals; /* steal attempts that found nothing or lost a race */
    uint64_t parks;         /* times it went to sleep */
} ws_stats;

/* Fills out[i] for participant i < cap (workers, then outside slots used so
 * far) and returns how many participants there are. Approximate while the
 * pool is busy. */
WS_EXPORT int ws_pool_stats(ws_pool *pool, ws_stats *out, int cap);

/* Records every task (start, end, participant) while on. Turning it on
 * starts a new trace. */
WS_EXPORT int ws_trace_enable(ws_pool *pool, bool on);
/* Writes the recorded trace as Chrome trace JSON (chrome://tracing,
 * Perfetto): {"traceEvents":[{"name":..,"ph":"X","ts":..,"dur":..,"pid":1,
 * "tid":participant},..]}, times in microseconds. Call it while no task of
 * the pool is running. */
WS_EXPORT int ws_trace_write(ws_pool *pool, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* WS_H */
