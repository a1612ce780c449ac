/* Private structures of the scheduler: the Chase-Lev deque, participants
 * (workers and outside slots), the eventcount they park on, and the pool.
 * Private names carry a double underscore (ws__). */
#ifndef WS_INTERNAL_H
#define WS_INTERNAL_H

#include "ws.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define WS__UNUSED(x) ((void)(x))
#define WS__LIKELY(x) __builtin_expect(!!(x), 1)
#define WS__UNLIKELY(x) __builtin_expect(!!(x), 0)
/* Two lines: the adjacent-line prefetcher pulls pairs of 64-byte lines, so
 * fields written by different threads sit 128 bytes apart. */
#define WS__LINE 128

/* ws_task.kind: how a task was started, so that running it does the right
 * bookkeeping. */
enum { WS__TASK_PLAIN, WS__TASK_GROUP, WS__TASK_FORK, WS__TASK_NODE };

#define WS__GROUP_MAGIC 0x77736770u /* "wsgp" */
#define WS__DAG_MAGIC 0x77736467u   /* "wsdg" */

/* ThreadSanitizer does not model atomic_thread_fence: it sees no
 * happens-before edge through a release fence followed by a relaxed store.
 * Under TSan the deque therefore publishes with a release store (the same
 * edge, expressed on the access); the seq_cst fences stay, for the hardware
 * ordering they give. */
#if defined(__SANITIZE_THREAD__)
#define WS__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WS__TSAN 1
#endif
#endif
#ifndef WS__TSAN
#define WS__TSAN 0
#endif

/* A full (seq_cst) fence. GCC refuses atomic_thread_fence under TSan
 * (-Wtsan) and TSan would not model it anyway. There, a seq_cst
 * read-modify-write of a thread-private word stands in: a locked
 * instruction, so a full barrier on the hardware, and private, so it adds
 * no happens-before edge that could hide a real race from TSan. */
#if WS__TSAN
static _Thread_local _Atomic int ws__fence_word __attribute__((unused));
#define WS__FENCE_SEQ_CST() ((void)atomic_fetch_add_explicit(&ws__fence_word, 0, memory_order_seq_cst))
#else
#define WS__FENCE_SEQ_CST() atomic_thread_fence(memory_order_seq_cst)
#endif

static inline void ws__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ---- The deque (deque.h has the operations and the protocol) ------------- */

typedef struct ws__array {
    int64_t mask;              /* capacity - 1; capacity is a power of two */
    struct ws__array *retired; /* older arrays of the same deque */
    _Atomic(ws_task *) slot[];
} ws__array;

typedef struct ws__deque {
    /* The owner's: no other thread reads or writes these. Tasks in
     * [split, bottom) are private, [top, split) are shared. */
    _Alignas(WS__LINE) int64_t bottom; /* where the next push goes */
    int64_t split;                     /* the owner's copy of split_pub */
    int64_t top_cache;                 /* a top seen earlier; top only grows */
    ws__array *array;                  /* the owner's copy of array_pub */
    /* Arrays replaced by growth: a thief may still be reading one, so they
     * are kept until the deque is destroyed (with the pool). */
    ws__array *retired;
    ws_pool *pool; /* signalled when tasks are shared; NULL: nobody */
    /* The owner found nothing shared left: its next push is shared at
     * once, as a deque that had nothing to steal has idle thieves. */
    bool shared_empty;
    /* Written by the owner when it shares or takes back tasks, read by
     * thieves. */
    _Alignas(WS__LINE) _Atomic int64_t split_pub;
    _Atomic(ws__array *) array_pub;
    _Atomic bool idle_hint; /* the owner had no task at all when it last looked */
    /* CASed by thieves, and by the owner taking back the last shared task. */
    _Alignas(WS__LINE) _Atomic int64_t top;
    /* Set by a thief that found nothing shared: asks the owner to share
     * half of its private tasks at its next push or take. */
    _Alignas(WS__LINE) _Atomic bool want;
    char pad_[WS__LINE - sizeof(bool)];
} ws__deque;

/* ---- Capped runs ------------------------------------------------------------ */

/* The threads that may work on what one ws_run_capped call starts: at most
 * cap seats, seat 0 for its caller. It lives on the caller's stack; the
 * caller waits for every worker to give its seat up before returning.
 * Tasks a thief took but may not run (a race with a victim that changed
 * teams) wait in `held` for a seated thread. */
#define WS__SEAT_WORDS 16 /* up to 1024 seats */
#define WS__MAX_SEATS (64 * WS__SEAT_WORDS)

typedef struct ws__team {
    _Atomic int cap;                        /* a thief may read a stale team's: a hint then */
    struct ws__part *caller;                /* the outside slot this team belongs to */
    _Atomic uint64_t seats[WS__SEAT_WORDS]; /* bit s: seat s is taken */
    pthread_mutex_t held_lock;              /* guards held_head, held_tail */
    ws_task *held_head, *held_tail;
    _Atomic int nheld; /* hint, read without the lock */
} ws__team;

/* ---- Participants ---------------------------------------------------------- */

typedef struct ws__trace_ev {
    uint64_t start, end; /* ns since the pool started */
    const char *name;
} ws__trace_ev;

/* An event of a thread that was not running a task of the pool
 * (ws_trace_event): thread numbers its row. */
typedef struct ws__loose_ev {
    ws__trace_ev ev;
    uint32_t thread;
} ws__loose_ev;

/* One per worker thread and one per outside slot. Everything but the deque,
 * `park` and the counters is touched by the thread that is the participant
 * (for an outside slot: the thread that holds it, handed over under the
 * pool's slot_lock). */
typedef struct ws__part {
    ws__deque dq;
    /* Eventcount waiter state: 0 awake, 1 about to sleep (re-checking),
     * 2 asleep in the futex. Set to 0 by whoever wakes it. */
    _Alignas(WS__LINE) _Atomic uint32_t park;
    /* Counters: written by the participant (plain load + store, no RMW),
     * read by ws_pool_stats from any thread. */
    _Alignas(WS__LINE) _Atomic uint64_t tasks_run;
    _Atomic uint64_t steals;
    _Atomic uint64_t failed_steals;
    _Atomic uint64_t parks;
    /* Capped runs (ws_run_capped): the team whose work this participant
     * does, NULL for uncapped work. A worker changes it only with an empty
     * deque, so every task on its deque belongs to it; thieves read it. */
    _Atomic(struct ws__team *) team;
    int seat;    /* its seat in team, -1 when team is NULL */
    int helping; /* nested waits (ws__help_until) on this thread's stack */

    /* The participant's own state. */
    ws_pool *pool;
    int index;  /* in pool->parts: creation order, workers and outside slots mixed */
    int number; /* worker number, or outside slot number */
    bool outside;
    uint64_t rng;
    ws_node *keep;  /* the successor this thread runs next */
    int node_depth; /* DAG nodes running on this thread's stack */
    /* The innermost wait on this thread's stack (a group, a DAG run, a
     * join) owns the deque above this index: a DAG node that finishes may
     * take the next node from the deque itself only above it. */
    int64_t floor;
    /* Nodes of done_dag this thread has finished but not yet subtracted
     * from its pending count (see ws__dag_flush). */
    ws_dag *done_dag;
    int64_t done_count;
    int bind_depth;             /* outside slot: nested entries of its thread */
    struct ws__part *prev_self; /* outside slot: its thread's previous binding */
    pthread_t thread;           /* worker */
    /* Trace buffer: appended by the participant, read by ws_trace_write
     * while the pool is quiescent. */
    ws__trace_ev *trace;
    uint32_t trace_len, trace_cap;
    uint32_t trace_gen; /* the pool's generation this buffer belongs to */
    /* An outside slot's own team, used while its thread is in
     * ws_run_capped (the slot's memory lives as long as the pool, so a
     * thief that read a stale team pointer reads valid memory). */
    _Alignas(WS__LINE) ws__team own_team;
} ws__part;

/* ---- The pool -------------------------------------------------------------- */

/* An idle participant of a pool no bigger than the machine spins for
 * WS__SPIN_NS, then yields, and sleeps once it has looked for work for
 * WS__IDLE_NS; in a bigger pool it only yields, for WS__IDLE_OVER_NS
 * (sched.c explains why). */
#define WS__SPIN_NS 2000u
#define WS__IDLE_NS 300000u
#define WS__IDLE_OVER_NS 20000u

struct ws_pool {
    /* read-only after creation */
    int max_outside;
    int cap_parts;     /* entries of parts: WS__MAX_THREADS + max_outside */
    size_t stack_size; /* of each worker; 0: the pthread default */
    /* Participants in creation order: the first workers, then outside
     * slots as threads first use them and workers as the pool grows. A
     * participant is published with a release store before nvictims
     * counts it; thieves load it with acquire. Never moved or freed before
     * the pool. */
    _Atomic(ws__part *) *parts;
    uint64_t t0_ns; /* CLOCK_MONOTONIC at creation: trace origin */
    /* How long an idle participant spins before it yields, and how long it
     * looks for work before it sleeps (set again when the pool grows). */
    _Atomic uint64_t spin_ns;
    _Atomic uint64_t idle_ns;
    _Atomic int nworkers; /* started workers; grows under grow_lock */
    pthread_mutex_t grow_lock;

    /* Thieves look at parts [0, nvictims): every participant created so
     * far. Grows under slot_lock, read relaxed (a thief that misses a new
     * slot sees it on its next round; wake-ups re-check all). */
    _Alignas(WS__LINE) _Atomic int nvictims;
    _Atomic bool shutdown;
    _Atomic bool tracing;
    _Atomic uint32_t trace_gen;
    /* Events of threads outside the pool's tasks (ws_trace_event); all
     * four fields guarded by trace_lock. */
    pthread_mutex_t trace_lock;
    ws__loose_ev *loose;
    uint32_t loose_len, loose_cap, loose_gen;

    /* Idle accounting. nspin: workers looking for work without sleeping;
     * a push wakes a sleeper only when nobody spins. nwait: participants
     * between prepare-wait and wake or cancel. */
    _Alignas(WS__LINE) _Atomic int nspin;
    _Alignas(WS__LINE) _Atomic int nwait;

    /* Submission queue for threads outside the pool. sub_lock guards
     * sub_head and sub_tail; sub_count is also written under it and read
     * without it as a hint. */
    _Alignas(WS__LINE) pthread_mutex_t sub_lock;
    ws_task *sub_head, *sub_tail;
    _Atomic int64_t sub_count;

    /* Outside slots. slot_lock guards in_use[], slot allocation and
     * nvictims growth; slot_cond signals a slot coming free. */
    pthread_mutex_t slot_lock;
    pthread_cond_t slot_cond;
    bool *in_use;        /* max_outside entries */
    ws__part **outside;  /* max_outside entries: slot -> participant, NULL until first used */
    int outside_created; /* entries of outside that are not NULL */
    int outside_count;   /* slots held now */
};

/* ---- Shared between the scheduler's files ---------------------------------------- */

/* The calling thread's participant (a worker, or an outside slot while its
 * thread is inside the pool), NULL for other threads. */
extern _Thread_local ws__part *ws__self __attribute__((tls_model("initial-exec")));

static inline ws__part *ws__part_at(ws_pool *p, int i) {
    return atomic_load_explicit(&p->parts[i], memory_order_acquire);
}

/* Counters: only the participant writes its own, so load + store is enough
 * and avoids a locked instruction. */
static inline void ws__add(_Atomic uint64_t *c, uint64_t k) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + k, memory_order_relaxed);
}
static inline void ws__count(_Atomic uint64_t *c) { ws__add(c, 1); }

uint64_t ws__now_ns(void);

/* How many pools are tracing (trace.c). The fast paths read this one word
 * and check their pool's own flag only when it is not zero. */
extern _Atomic int ws__tracing_pools;
static inline bool ws__tracing(ws_pool *p) {
    return WS__UNLIKELY(atomic_load_explicit(&ws__tracing_pools, memory_order_relaxed) != 0) &&
           atomic_load_explicit(&p->tracing, memory_order_relaxed);
}

/* pool.c: binding outside threads to slots. ws__enter returns the caller's
 * participant for pool (binding an outside slot if needed, waiting for one
 * if all are taken), NULL on error; ws__leave undoes one ws__enter. */
ws__part *ws__enter(ws_pool *pool);
void ws__leave(ws__part *self);
/* pool.c: at most WS__MAX_THREADS workers (and outside slots). */
#define WS__MAX_THREADS 4096

/* team.c: capped runs. ws__admit tells whether self may run t, taking a
 * seat in t's team for a worker without one; ws__hold gives a task self
 * may not run to a thread that may. ws__team_leave gives a worker's seat
 * up (its deque is empty). */
static inline ws__team *ws__team_of(ws__part *w) { return atomic_load_explicit(&w->team, memory_order_acquire); }
bool ws__may_steal_from(ws__part *self, ws__part *victim); /* a hint: ws__admit decides */
bool ws__admit(ws__part *self, ws_task *t);
void ws__wake_for(ws__part *self); /* after self pushed: wake one that may take it */
void ws__hold(ws_pool *p, ws_task *t);
ws_task *ws__team_take_held(ws__part *self);
void ws__team_leave(ws__part *self);

/* sched.c: running and finding work, waking and parking. */
void ws__barriers_init(void); /* once per process, before the first pool */
ws_task *ws__find_work(ws__part *self, bool *stole);
void ws__wake_one(ws_pool *p);
bool ws__wake_one_counted(ws_pool *p);
void ws__wake_part(ws__part *w);
void ws__wake_all(ws_pool *p);
void ws__submit_queue(ws_pool *p, ws_task *t);
/* Runs tasks until done(arg) holds: own deque above base first, then steals;
 * spins, yields, then parks until woken by work or by wake_part. */
void ws__help_until(ws__part *self, int64_t base, bool (*done)(void *), void *arg);
void ws__worker_loop(ws__part *self);
/* The parts of ws__run below that are not the common case: a DAG node, a
 * pending DAG count to flush, tracing. */
void ws__run_slow(ws__part *self, ws_task *t);
void ws__group_stolen_done(ws_group *g, ws__part *owner);
void ws__push_slow(ws__part *self, ws_task *t); /* deque.h: ws__push */
void ws__run_node(ws__part *self, ws_node *n);  /* dag.c */

/* Runs t on self and does its bookkeeping (its group's count). */
static inline void ws__run(ws__part *self, ws_task *t) {
    if (t->kind == WS__TASK_NODE && (!self->done_dag || self->done_dag == t->owner)) {
        ws__run_node(self, ws_node_of(t));
        return;
    }
    if (WS__UNLIKELY(t->kind != WS__TASK_GROUP || self->done_dag || ws__tracing(self->pool))) {
        ws__run_slow(self, t);
        return;
    }
    ws_group *g = (ws_group *)t->owner;
    t->fn(t); /* t may be gone after this; g is alive until counted */
    ws__count(&self->tasks_run);
    if (g->self == self)
        g->local_done++; /* our own group: nobody else reads local_done */
    else
        ws__group_stolen_done(g, g->self);
}

/* dag.c */
/* Publishes this thread's finished-node count. Called whenever the thread
 * turns from the DAG's nodes to anything else, so a count is only held
 * back while its holder is still running that DAG's nodes. */
void ws__dag_flush_slow(ws__part *self);
static inline void ws__dag_flush(ws__part *self) {
    if (self->done_dag)
        ws__dag_flush_slow(self);
}

/* trace.c */
/* cpus.c: the CPUs the cgroup named in cgroup_file (a /proc/self/cgroup) may
 * use by its quota, 0 when unlimited or unknown; the files are parameters so
 * that tests can hand in their own. */
int ws__cgroup_cpu_limit(const char *cgroup_file, const char *mountinfo_file);
void ws__trace_add(ws__part *self, uint64_t start, uint64_t end, const char *name);
void ws__trace_free(ws__part *self);

#endif /* WS_INTERNAL_H */
