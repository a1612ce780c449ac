/* ws: agrad's work-stealing scheduler. A persistent pool of worker threads,
 * one split Chase-Lev deque each (deque.h), fork/join in LIFO pairs, task
 * groups, parallel-for and dependency-counted DAGs. Knows nothing of
 * tensors; this header is its whole contract, and compiles as C and as C++
 * (C++11 and later).
 *
 * Conventions. Every public name starts with ws_ / WS_. Functions that
 * return int return 0 (or a count) on success and a negative WS_E... code
 * on error; no function aborts on a bad argument. Nothing here allocates
 * per task: a task, group, DAG or node lives in storage the caller owns (a
 * stack frame, an array) and must stay valid until the call that waits for
 * it returns. The only object the library allocates for the caller is the
 * pool (ws_pool_destroy frees it); returned strings are static.
 *
 * Threads. A pool has N worker threads (ws_pool_grow adds more). Any
 * other thread ("outside" thread) may use the pool too: when it calls
 * ws_run, ws_run_capped, ws_group_init with a pool, ws_parallel_for or
 * ws_dag_run it borrows one of the pool's outside slots, which carries
 * its own deque, and for as long as it waits it is a participant like a
 * worker: it runs its own tasks, thieves steal from its deque, and it
 * steals from theirs. So the calling thread always works while it waits,
 * and N workers plus one waiting caller means N+1 threads run tasks
 * (create N-1 workers to have N in all). ws_submit from an outside thread
 * that is not waiting goes through a separate submission queue that the
 * workers serve. "A participant" below means a thread
 * running a task of the pool (a worker, or an outside thread inside one of
 * those calls); ws_current_pool() says whether the calling thread is one.
 * ws_run_capped bounds how many participants work on one call's tasks at
 * once ("seats"), so that several callers can share one pool.
 *
 * Memory. Whatever a task wrote is visible to the thread that waited for
 * it once the wait (ws_join, ws_group_wait, ws_parallel_for, ws_dag_run)
 * returns, and a DAG node sees what its predecessors wrote. */
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

/* Error codes: one table drives the enum and ws_strerror(), and pool.c
 * checks at compile time that the codes are -1, -2, ... in table order and
 * that WS_ERRNO_COUNT counts them (with WS_OK). */
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

/* The text for a code ("success" for WS_OK, "unknown error" for a code not
 * in the table). Static storage: never free it. Any thread. */
WS_EXPORT const char *ws_strerror(int code);

typedef struct ws_pool ws_pool;
typedef struct ws_task ws_task;
typedef struct ws_group ws_group;
typedef struct ws_dag ws_dag;
typedef struct ws_node ws_node;

/* ---- Pools ------------------------------------------------------------------ */

#define WS_THREADS_DEFAULT (-1)

typedef struct ws_pool_opts {
    /* Worker threads. WS_THREADS_DEFAULT: ws_default_num_threads(). 0 is
     * allowed: then only threads waiting in the pool run tasks. */
    int num_threads;
    int max_outside;   /* outside threads inside the pool at once; 0: 64 */
    size_t stack_size; /* of each worker; 0: the pthread default */
} ws_pool_opts;

#define WS_POOL_OPTS_INIT                                                                                              \
    { WS_THREADS_DEFAULT, 0, 0 }

/* The default worker count: WS_NUM_THREADS if set to a positive number
 * (at most 4096), else ws_cpu_count(). Any thread; no errors. */
WS_EXPORT int ws_default_num_threads(void);
/* The CPUs this process may run on: its affinity mask, capped by the CPU
 * quota of its cgroup where one is set (cgroup v2 cpu.max, or v1
 * cpu.cfs_quota_us / cpu.cfs_period_us, rounded up), at least 1. Read
 * once, at the first call. Any thread; no errors. */
WS_EXPORT int ws_cpu_count(void);

/* Creates a pool and starts its workers; opts may be NULL (defaults). On
 * success *out is the pool, owned by the caller until ws_pool_destroy. On
 * failure *out is NULL and every thread already started has been joined:
 * WS_EINVAL (out NULL, a count out of range, a stack size pthreads
 * refuses), WS_ENOMEM, WS_EAGAIN (a thread could not be created). Any
 * thread. */
WS_EXPORT int ws_pool_create(ws_pool **out, const ws_pool_opts *opts);

/* Runs what is still queued, then joins every worker and frees the pool.
 * Any thread but the pool's own participants: WS_ESTATE from one of them,
 * WS_EBUSY while an outside thread is inside the pool, WS_EINVAL for NULL
 * (in those cases the pool is left intact). */
WS_EXPORT int ws_pool_destroy(ws_pool *pool);

/* The pool's worker threads (not counting outside slots); WS_EINVAL for
 * NULL. Any thread. */
WS_EXPORT int ws_pool_num_threads(const ws_pool *pool);

/* Starts workers until the pool has num_threads of them (never fewer than
 * it has: a smaller count is not an error and does nothing). On failure
 * the workers already started stay and keep working: WS_EAGAIN when a
 * thread cannot be created, WS_ENOMEM, WS_EINVAL (a NULL pool,
 * num_threads < 0 or above 4096, a stack size pthreads refuses). Any
 * thread, also while the pool runs tasks (concurrent calls are
 * serialised). */
WS_EXPORT int ws_pool_grow(ws_pool *pool, int num_threads);

/* Wakes up to n sleeping workers, which look for work for a few hundred
 * microseconds before they sleep again. A caller about to hand the pool a
 * burst of work calls it first, so that waking (slow on some virtual
 * machines) overlaps its own preparation. Returns how many it woke;
 * WS_EINVAL for a NULL pool or n < 0. Any thread. */
WS_EXPORT int ws_pool_wake(ws_pool *pool, int n);

/* Upper bound of ws_participant_index() + 1 until the pool grows: workers
 * plus outside slots. Size per-participant arrays (scratch buffers, partial
 * sums) with it, and size them again after ws_pool_grow. WS_EINVAL for
 * NULL. Any thread. */
WS_EXPORT int ws_pool_max_participants(const ws_pool *pool);

/* The calling thread's participant index in the pool it is working for
 * (in the order participants were created: the first workers, then
 * outside slots and added workers as they come), or -1 when it is in
 * none. Stable for the duration of a task. Any thread; no errors. */
WS_EXPORT int ws_participant_index(void);

/* The pool the calling thread is working for, or NULL (not owned by the
 * caller: do not destroy it from here). Any thread; no errors. */
WS_EXPORT ws_pool *ws_current_pool(void);

/* ---- Tasks ------------------------------------------------------------------- */

typedef void (*ws_task_fn)(ws_task *task);

/* A task: fn(task) runs once, on some participant; arg is the caller's.
 * It lives in storage its starter provides (a stack frame, a node, an
 * array) and must stay valid until it has run (for a forked task: until
 * ws_join returns); the scheduler never allocates per task. A submitted or
 * spawned task's fn may reuse or free its task; a forked one's must not.
 * Initialise with WS_TASK_INIT or ws_task_init before each start; the
 * private fields are the scheduler's. */
struct ws_task {
    /* public */
    ws_task_fn fn;
    void *arg;
    const char *name; /* shown in the trace; NULL: "task" */
    /* private */
    void *owner;   /* its ws_group, its ws_dag, or the participant that forked it */
    uint32_t kind; /* how it was started: submitted, spawned, forked, DAG node */
    int32_t count; /* DAG node: predecessors not yet done; forked: 1 once a thief ran it */
    ws_task *next; /* link in the submission queue */
};

#define WS_TASK_INIT(fn_, arg_)                                                                                        \
    { (fn_), (arg_), NULL, NULL, 0, 0, NULL }

/* Sets fn and arg and clears the rest. Any thread; no errors. */
static inline void ws_task_init(ws_task *t, ws_task_fn fn, void *arg) {
    t->fn = fn;
    t->arg = arg;
    t->name = NULL;
    t->owner = NULL;
    t->kind = 0;
    t->count = 0;
    t->next = NULL;
}

/* Fire and forget: from a participant of pool the task goes on the
 * caller's deque, where any idle participant may take it at once; from any
 * other thread it goes through the submission queue and wakes a sleeping
 * worker. With no workers, queued tasks run only when some thread waits in
 * the pool (or at ws_pool_destroy). Completion is the task's own business
 * (a counter, a semaphore). WS_EINVAL for a NULL pool, task or fn. Any
 * thread. */
WS_EXPORT int ws_submit(ws_pool *pool, ws_task *task);

/* Runs fn(task with arg) on the calling thread as a task of pool, and
 * returns when it has returned. From an outside thread this makes the
 * thread a participant for the call (waiting for an outside slot if all
 * are taken), so the fork/joins, groups, parallel-fors and DAGs fn starts
 * help with the pool's work. WS_EINVAL for a NULL pool or fn, WS_ENOMEM
 * when an outside slot cannot be allocated. Any thread. */
WS_EXPORT int ws_run(ws_pool *pool, ws_task_fn fn, void *arg);

/* ---- Fork and join: the cheapest way to start a task ------------------------
 * ws_fork puts a task on the calling participant's deque and returns at
 * once; ws_join(task) returns when it has run: on this thread, at the
 * join, if nobody took it (the common case: a private pop and a call,
 * no atomic operation), else on the thief that took it, while this thread
 * runs other tasks meanwhile. Joins pair with forks in LIFO order, as in
 * Cilk or Lace (SPAWN / SYNC):
 *
 *     long fib(int n) {                          // inside a task of a pool
 *         if (n < 2) return n;
 *         fib_frame f = {WS_TASK_INIT(fib_task, NULL), n - 1, 0};
 *         ws_fork(&f.task);                      // fib_task sets f.result
 *         long y = fib(n - 2);
 *         ws_join(&f.task);
 *         return f.result + y;
 *     }
 *
 * Joining out of order is allowed: ws_join(t) first runs the tasks forked
 * after t that are still on the deque. Both only from a participant (a
 * task, or ws_run's fn), and the task is the forking thread's to join. */

/* WS_EINVAL for a NULL task or fn, WS_ESTATE from a thread that is not a
 * participant. The task must stay valid until ws_join returns. */
WS_EXPORT int ws_fork(ws_task *task);
/* WS_EINVAL for NULL; WS_ESTATE when task was not forked by the calling
 * thread, or has been joined already. */
WS_EXPORT int ws_join(ws_task *task);

/* ---- Capped runs: at most N threads on one piece of work -------------------- */

/* ws_run with at most max_participants threads, the caller included,
 * working on what fn starts (its fork/joins, groups, parallel-fors, DAGs
 * and all they start in turn), however many workers the pool has and
 * whatever other threads run in it at the same time. The caller has seat
 * 0; a worker takes a free seat when it steals the run's first task and
 * gives it up when it finds no more of the run's work, so over a run
 * different workers may hold a seat, one at a time. Workers with a seat
 * run only the run's tasks; the caller helps only with them. From a thread
 * already working for pool (a worker, or a thread inside ws_run), fn runs
 * within the seats that thread has and max_participants is ignored.
 * Returns when fn has returned and every seat but the caller's is free.
 * WS_EINVAL for a NULL pool or fn, max_participants < 1 (at most 1024 are
 * used); WS_ENOMEM when an outside slot cannot be allocated. Any thread. */
WS_EXPORT int ws_run_capped(ws_pool *pool, int max_participants, ws_task_fn fn, void *arg);

/* The calling thread's seat in the capped run it works for, in
 * [0, max_participants), or -1 outside one. A seat is held by one thread
 * at a time, and seat changes are ordered (release, acquire), so state kept
 * per seat (scratch memory, partial sums) needs no lock. Any thread; no
 * errors. */
WS_EXPORT int ws_seat_index(void);

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
    int32_t entered;       /* init bound the thread to the pool; wait unbinds it */
    struct ws__part *self; /* the participant that owns the group */
    int64_t base;          /* owner's deque bottom at init */
    int64_t spawned;
    int64_t local_done;  /* run by the owner itself */
    int64_t stolen_done; /* run by thieves: an atomic add (release) by each */
};

/* Starts a group owned by the calling thread. pool NULL: the pool the
 * calling thread is working for. WS_EINVAL for a NULL g, WS_ESTATE when
 * pool is NULL and the thread is in no pool, WS_ENOMEM when an outside
 * slot cannot be allocated. Any thread (with a pool); a failed init
 * leaves g unusable (spawn and wait return WS_EINVAL). */
WS_EXPORT int ws_group_init(ws_group *g, ws_pool *pool);
/* Adds task to g: it goes on the owner's deque. Never fails for lack of
 * memory: if the deque cannot grow, the task runs at once on the caller.
 * WS_EINVAL for a NULL or unusable group (not initialised, or waited
 * already), a NULL task or fn; WS_ESTATE from a thread that does not own
 * g. The task must stay valid until it has run. */
WS_EXPORT int ws_spawn(ws_group *g, ws_task *task);
/* Returns when every task spawned into g has run, running them (and other
 * work) meanwhile; then g is finished (init it again to reuse it).
 * WS_EINVAL for a NULL or unusable group, WS_ESTATE from a thread that
 * does not own g. */
WS_EXPORT int ws_group_wait(ws_group *g);

/* ---- Parallel-for ---------------------------------------------------------------
 * fn(arg, lo, hi) over disjoint [lo, hi) covering [begin, end) once each,
 * split in halves down to `grain` iterations (0: about 8 chunks per
 * participant), and returns when every chunk is done; the caller runs
 * chunks too. pool NULL: the pool the calling thread is working for. Nests
 * inside tasks. WS_EINVAL for a NULL fn, end < begin, grain < 0 or a range
 * wider than INT64_MAX; WS_ESTATE when pool is NULL and the thread is in
 * no pool; WS_ENOMEM when an outside slot cannot be allocated. Any thread
 * (with a pool). */
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
    int32_t npred; /* the join counter is task.count */
};

/* The node whose task t is: a DAG node's fn receives &node->task. */
static inline ws_node *ws_node_of(ws_task *t) { return (ws_node *)(void *)((char *)t - offsetof(ws_node, task)); }

/* Starts an empty DAG to run on pool. WS_EINVAL for a NULL d or pool. Any
 * thread; d belongs to the caller. */
WS_EXPORT int ws_dag_init(ws_dag *d, ws_pool *pool);
/* Adds n to d with npred predecessors (its join counter), fn and arg, and
 * clears succ/nsucc (set them after this). Before ws_dag_run or between
 * runs: WS_ESTATE while d runs; WS_EINVAL for a NULL or uninitialised d, a
 * NULL n or fn, npred < 0. Any thread; n belongs to the caller and must
 * stay valid (and in place) while d is used. */
WS_EXPORT int ws_node_init(ws_dag *d, ws_node *n, ws_task_fn fn, void *arg, int npred);
/* One predecessor of n is done. Returns 1 if that made n ready (the calling
 * thread keeps it to run next if it runs a node and keeps none yet, else
 * it is queued where other threads can take it at once), 0 if n still
 * waits, WS_ESTATE if n had no pending predecessor, WS_EINVAL for NULL or
 * a node not initialised. For the edges not listed in a node's succ[]: a
 * node's fn calls it as soon as it has produced a successor's input. */
WS_EXPORT int ws_node_release(ws_node *n);
/* Runs the DAG from its roots (nodes with npred 0) and returns when every
 * node has run; the caller runs nodes meanwhile. Counters reset as nodes
 * run, so d can run again as it is. WS_EINVAL for a NULL or uninitialised
 * d, NULL roots, a root of another DAG or with predecessors, nroots < 0,
 * or nodes but no roots; WS_ESTATE while another ws_dag_run of d is under
 * way; WS_ENOMEM when an outside slot cannot be allocated. Any thread, one
 * run of a DAG at a time. */
WS_EXPORT int ws_dag_run(ws_dag *d, ws_node *const *roots, int nroots);

/* ---- Counters and trace ------------------------------------------------------------ */

typedef struct ws_stats {
    uint64_t tasks_run;     /* tasks and DAG nodes run by this participant */
    uint64_t steals;        /* tasks taken from another deque or the queue */
    uint64_t failed_steals; /* steal attempts that found nothing or lost a race */
    uint64_t parks;         /* times it went to sleep */
} ws_stats;

/* Fills out[i] for participant i < cap (ws_participant_index order:
 * participants in the order they were created, workers and outside slots
 * mixed) and returns how many participants there are (which may exceed
 * cap). Approximate while the pool is busy. WS_EINVAL for a NULL pool,
 * cap < 0, or out NULL with cap > 0. Any thread. */
WS_EXPORT int ws_pool_stats(ws_pool *pool, ws_stats *out, int cap);

/* Records every task (start, end, participant, name) while on; turning it
 * on starts a new trace. Best effort: a task that starts as it is switched
 * may or may not be recorded, and each participant keeps at most 4M
 * events. WS_EINVAL for NULL. Any thread. */
WS_EXPORT int ws_trace_enable(ws_pool *pool, bool on);
/* Adds an event to pool's trace while it is on (0, nothing recorded, while
 * it is off): name (static storage, or at least alive until the trace is
 * written), start and end in ws_now_ns() time. It goes on the row of the
 * calling thread's participant when that thread runs a task of pool,
 * else on a row of the thread's own. So work that is not a task of the
 * pool (a loop on the calling thread, another runtime's threads) shows in
 * the same timeline. Best effort: an event there is no memory for is
 * dropped. WS_EINVAL for NULL pool or name. Any thread. */
WS_EXPORT int ws_trace_event(ws_pool *pool, const char *name, uint64_t start_ns, uint64_t end_ns);
/* CLOCK_MONOTONIC in nanoseconds: the trace's clock. Any thread. */
WS_EXPORT uint64_t ws_now_ns(void);
/* Writes the recorded trace to path as Chrome trace JSON (chrome://tracing,
 * Perfetto): {"traceEvents":[{"name":..,"ph":"X","ts":..,"dur":..,"pid":1,
 * "tid":row},..]}, times in microseconds since the pool was made; a row is
 * a participant (named "worker N" or "outside N") or a thread that added
 * events with ws_trace_event outside the pool's tasks ("thread N"). WS_EINVAL
 * for NULL arguments or when the file cannot be written. Call it while no
 * task of the pool runs and no thread adds events. */
WS_EXPORT int ws_trace_write(ws_pool *pool, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* WS_H */
