/* The scheduling core: running a task, finding work (own deque, submission
 * queue, random-victim steals), the eventcount idle participants park on,
 * and the loops of workers and of threads waiting for a group or a DAG.
 *
 * Parking protocol (an eventcount with one futex word per participant):
 *   waiter:   park = 1; nwait++          (prepare-wait)
 *             heavy barrier; re-check every deque, the queue, its condition
 *             found something: park 1 -> 0 (cancel), else park 1 -> 2 and
 *             futex-wait while park == 2 (commit-wait)
 *   notifier: publish the work; barrier; if nwait > 0, set some park != 0
 *             to 0 and futex-wake it if it was 2.
 * The barriers make it a Dekker pair: either the waiter's re-check sees the
 * work, or the notifier sees the waiter. "Work" is what thieves can see:
 * the shared part of the deques (a push onto the private part notifies
 * nobody; only sharing does, see deque.h) and the submission queue. Sharing
 * is frequent, so the notifier's side is only a compiler barrier, and the
 * waiter's side is membarrier(PRIVATE_EXPEDITED), which runs a full barrier
 * on every running thread of the process (the asymmetric Dekker of liburcu
 * and folly). Where membarrier is unavailable both sides use seq_cst
 * fences. A participant never sleeps on private tasks: it runs them itself,
 * and it shares them all before it waits for anything (ws__help_until). */
#include "deque.h"

#include <errno.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

_Thread_local ws__part *ws__self __attribute__((tls_model("initial-exec"))) = NULL;

/* Idle tuning. A participant without work looks for it in rounds over all
 * victims: first with a short pause between rounds for WS__SPIN_NS (work
 * often comes back within microseconds: a thief's request answered, the
 * next task of a caller), then with sched_yield between rounds, so that a
 * thread sharing its CPU (a submitter waiting for the task it just handed
 * over, the busy thread of an oversubscribed pool) runs at once, until it
 * has looked for the pool's idle_ns in all; then it parks. Waking a parked
 * worker costs more than 100 us on some virtual machines, so a worker that
 * goes idle between the parallel parts of a training step (a few hundred
 * microseconds apart) stays awake for the next; an idle pool still sleeps
 * after WS__IDLE_NS. A pool with more threads than cores does not spin at
 * all and yields only briefly (pool.c): there an idle worker would take the
 * core from a busy one. */
enum { WS__PAUSES = 16 };

/* ---- Time -------------------------------------------------------------------- */

uint64_t ws_now_ns(void) { return ws__now_ns(); }

uint64_t ws__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- Futex and barriers --------------------------------------------------------- */

static void ws__futex_wait(_Atomic uint32_t *addr, uint32_t val) {
    /* EINTR and EAGAIN are fine: the caller re-reads the word. */
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void ws__futex_wake(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Set once under pthread_once; cleared if membarrier ever fails. Read on
 * every push, relaxed: a plain load. */
static _Atomic bool ws__membarrier_ok;
static pthread_once_t ws__membarrier_once = PTHREAD_ONCE_INIT;

static void ws__membarrier_register(void) {
#if WS__TSAN
    /* TSan cannot see through membarrier; use fences (which it executes). */
    atomic_store_explicit(&ws__membarrier_ok, false, memory_order_relaxed);
#else
    long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    bool ok = q > 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
              syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    atomic_store_explicit(&ws__membarrier_ok, ok, memory_order_relaxed);
#endif
}

void ws__barriers_init(void) { pthread_once(&ws__membarrier_once, ws__membarrier_register); }

/* The pusher's side: free when membarrier does the waiter's side. */
static inline void ws__light_barrier(void) {
    if (WS__LIKELY(atomic_load_explicit(&ws__membarrier_ok, memory_order_relaxed)))
        atomic_signal_fence(memory_order_seq_cst);
    else
        WS__FENCE_SEQ_CST();
}

/* The waiter's side, before its re-check. */
static void ws__heavy_barrier(void) {
    WS__FENCE_SEQ_CST();
    if (atomic_load_explicit(&ws__membarrier_ok, memory_order_relaxed) &&
        syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
        /* Cannot happen once registered; if it does, stop relying on it.
         * A push that read the old flag skipped its fence; the waiter that
         * missed it still has its own full fence, and that push's owner
         * runs the task itself if nobody else does. */
        atomic_store_explicit(&ws__membarrier_ok, false, memory_order_relaxed);
    }
}

/* ---- Eventcount ----------------------------------------------------------------- */

static void ws__prepare_wait(ws__part *self) {
    atomic_store_explicit(&self->park, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&self->pool->nwait, 1, memory_order_relaxed);
}

/* Whoever moves park from non-zero to 0 (the waiter cancelling, or a
 * notifier) owns the nwait decrement, so the count stays exact. */
static void ws__cancel_wait(ws__part *self) {
    uint32_t s = atomic_load_explicit(&self->park, memory_order_relaxed);
    while (s != 0) {
        if (atomic_compare_exchange_weak_explicit(&self->park, &s, 0, memory_order_acq_rel, memory_order_relaxed)) {
            atomic_fetch_sub_explicit(&self->pool->nwait, 1, memory_order_relaxed);
            return;
        }
    }
}

static void ws__commit_wait(ws__part *self) {
    uint32_t s = 1;
    if (!atomic_compare_exchange_strong_explicit(&self->park, &s, 2, memory_order_acq_rel, memory_order_acquire))
        return; /* already woken during the re-check */
    ws__count(&self->parks);
    /* acquire: pairs with the notifier's CAS, so what it published before
     * waking us is visible (the edge TSan needs, as it cannot see futexes). */
    while (atomic_load_explicit(&self->park, memory_order_acquire) == 2)
        ws__futex_wait(&self->park, 2);
}

/* Wakes w if it is preparing to sleep or asleep. The caller has made its
 * news visible and executed a full fence. */
static bool ws__wake_if_waiting(ws__part *w) {
    uint32_t s = atomic_load_explicit(&w->park, memory_order_relaxed);
    while (s != 0) {
        if (atomic_compare_exchange_weak_explicit(&w->park, &s, 0, memory_order_acq_rel, memory_order_relaxed)) {
            atomic_fetch_sub_explicit(&w->pool->nwait, 1, memory_order_relaxed);
            if (s == 2)
                ws__futex_wake(&w->park);
            return true;
        }
    }
    return false;
}

void ws__wake_part(ws__part *w) {
    WS__FENCE_SEQ_CST();
    ws__wake_if_waiting(w);
}

/* Wakes at most one sleeper: workers first (a thread parked in a wait
 * would rather return to its caller than take unrelated work). */
void ws__wake_one(ws_pool *p) { ws__wake_one_counted(p); }

/* The same; true when it woke someone. Participants are in creation
 * order, workers and outside slots mixed (pool.c). */
bool ws__wake_one_counted(ws_pool *p) {
    WS__FENCE_SEQ_CST();
    if (atomic_load_explicit(&p->nwait, memory_order_relaxed) <= 0)
        return false;
    int n = atomic_load_explicit(&p->nvictims, memory_order_acquire);
    ws__part *self = ws__self;
    int start = self && n ? (int)((self->rng >> 33) % (uint64_t)n) : 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            int v = start + i < n ? start + i : start + i - n;
            ws__part *w = ws__part_at(p, v);
            if (w && w->outside == (pass == 1) && ws__wake_if_waiting(w))
                return true;
        }
    }
    return false;
}

void ws__wake_all(ws_pool *p) {
    WS__FENCE_SEQ_CST();
    int n = atomic_load_explicit(&p->nvictims, memory_order_relaxed);
    for (int v = 0; v < n; v++) {
        ws__part *w = ws__part_at(p, v);
        if (w)
            ws__wake_if_waiting(w);
    }
}

/* After tasks were shared: wake a sleeper that may take them if nobody is
 * spinning (a spinner will find them). acquire on nspin: a spinner that
 * went to park incremented nwait before it decremented nspin (release). */
static inline void ws__signal_work(ws__part *self) {
    ws_pool *p = self->pool;
    ws__light_barrier();
    if (atomic_load_explicit(&p->nspin, memory_order_acquire) == 0 &&
        atomic_load_explicit(&p->nwait, memory_order_relaxed) > 0)
        ws__wake_for(self); /* a sleeper that may take it (team.c) */
}

/* Only the owner shares, so the calling thread is the participant that
 * holds q (a deque outside a participant, as in the deque's own tests, has
 * no pool and signals nobody). */
void ws__deque_signal(ws__deque *q) {
    if (q->pool)
        ws__signal_work((ws__part *)(void *)((char *)q - offsetof(ws__part, dq)));
}

/* ---- Pushing and the submission queue --------------------------------------------- */

void ws__push_slow(ws__part *self, ws_task *t) {
    if (ws__deque_push(&self->dq, t) >= 0)
        return;
    /* The deque cannot grow (out of memory): run the task now. Same result,
     * less parallelism, no failure to report. */
    ws__run(self, t);
    ws__dag_flush(self); /* back to the caller's code */
}

void ws__submit_queue(ws_pool *p, ws_task *t) {
    t->next = NULL;
    pthread_mutex_lock(&p->sub_lock);
    if (p->sub_tail)
        p->sub_tail->next = t;
    else
        p->sub_head = t;
    p->sub_tail = t;
    atomic_store_explicit(&p->sub_count, atomic_load_explicit(&p->sub_count, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    pthread_mutex_unlock(&p->sub_lock);
    ws__wake_one(p); /* full fence inside: this side of the Dekker pair */
}

static ws_task *ws__sub_pop(ws_pool *p) {
    if (atomic_load_explicit(&p->sub_count, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&p->sub_lock);
    ws_task *t = p->sub_head;
    if (t) {
        p->sub_head = t->next;
        if (!p->sub_head)
            p->sub_tail = NULL;
        atomic_store_explicit(&p->sub_count, atomic_load_explicit(&p->sub_count, memory_order_relaxed) - 1,
                              memory_order_relaxed);
    }
    pthread_mutex_unlock(&p->sub_lock);
    return t;
}

/* ---- Running ------------------------------------------------------------------------- */

void ws__group_stolen_done(ws_group *g, ws__part *owner) {
    /* release: the task's effects are visible to the owner that reads the
     * count with acquire. After this the group may be gone: only owner,
     * read before, is used. */
    __atomic_fetch_add(&g->stolen_done, 1, __ATOMIC_RELEASE);
    ws__wake_part(owner); /* full fence, then wake it if it parked */
}

void ws__run_slow(ws__part *self, ws_task *t) {
    ws_dag *dag = t->kind == WS__TASK_NODE ? (ws_dag *)t->owner : NULL;
    if (self->done_dag && dag != self->done_dag)
        ws__dag_flush_slow(self);
    if (dag) {
        ws__run_node(self, ws_node_of(t));
        return;
    }
    /* The task may free itself: read what we need first. */
    uint32_t kind = t->kind;
    void *owner = t->owner;
    if (WS__UNLIKELY(ws__tracing(self->pool))) {
        const char *name = t->name;
        uint64_t start = ws__now_ns();
        t->fn(t);
        ws__trace_add(self, start, ws__now_ns(), name);
    } else {
        t->fn(t);
    }
    ws__count(&self->tasks_run);
    if (kind == WS__TASK_GROUP) {
        ws_group *g = owner;
        if (g->self == self)
            g->local_done++;
        else
            ws__group_stolen_done(g, g->self);
    } else if (kind == WS__TASK_FORK) {
        /* Run by a thief, or by its own thread while that waited for
         * something else (ws_join runs its tasks itself otherwise).
         * release: the forking thread, which reads count with acquire in
         * ws_join, sees what the task wrote. After this store t may be
         * gone. */
        __atomic_store_n(&t->count, 1, __ATOMIC_RELEASE);
        if (owner != self)
            ws__wake_part(owner); /* full fence, then wake it if it parked */
    }
}

/* ---- Finding work ------------------------------------------------------------------- */

static inline uint64_t ws__rand(ws__part *self) {
    /* xorshift64*: cheap, per participant, good enough to pick victims. */
    uint64_t x = self->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    self->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* One round: the submission queue, then every other participant once,
 * starting at a random victim. *more is set when the victim still had
 * shared work after our steal (so a spinner can hand the spinning role on). */
static ws_task *ws__steal_round(ws__part *self, bool *more) {
    ws_pool *p = self->pool;
    /* A seated thread first takes what its team holds for it; the
     * submission queue is for threads of no team (team.c). */
    ws_task *t = ws__team_take_held(self);
    if (!t && !atomic_load_explicit(&self->team, memory_order_relaxed) && (t = ws__sub_pop(p)) && !ws__admit(self, t)) {
        ws__hold(p, t);
        t = NULL;
    }
    if (t) {
        ws__count(&self->steals);
        if (more)
            *more = atomic_load_explicit(&p->sub_count, memory_order_relaxed) > 0;
        return t;
    }
    int n = atomic_load_explicit(&p->nvictims, memory_order_relaxed);
    if (n <= 1)
        return NULL;
    int start = (int)((ws__rand(self) >> 32) % (uint64_t)n);
    for (int i = 0; i < n; i++) {
        int v = start + i < n ? start + i : start + i - n;
        ws__part *victim = ws__part_at(p, v);
        if (!victim || victim == self || !ws__may_steal_from(self, victim))
            continue;
        for (int tries = 0; tries < 2; tries++) {
            t = ws__deque_steal(&victim->dq, more);
            if (t != WS__STEAL_ABORT)
                break;
            ws__count(&self->failed_steals);
        }
        if (t && t != WS__STEAL_ABORT && !ws__admit(self, t)) {
            ws__hold(p, t); /* the victim changed teams since we looked */
            continue;
        }
        if (t && t != WS__STEAL_ABORT) {
            ws__count(&self->steals);
            return t;
        }
        if (!t)
            ws__count(&self->failed_steals);
    }
    return NULL;
}

ws_task *ws__find_work(ws__part *self, bool *more) {
    ws_task *t = ws__deque_take(&self->dq);
    if (t) {
        if (more)
            *more = false;
        return t;
    }
    return ws__steal_round(self, more);
}

static void ws__pause(void) {
    for (int i = 0; i < WS__PAUSES; i++)
        ws__cpu_relax();
}

/* The idle phases (see WS__SPIN_NS): spin, yield, then park. *since is the
 * time the participant started looking, 0 before the first call. Returns
 * false when it is time to park. */
static bool ws__idle_step(ws_pool *p, uint64_t *since) {
    uint64_t now = ws__now_ns();
    if (!*since)
        *since = now;
    uint64_t idle = now - *since;
    /* relaxed: tuning, set again when the pool grows; a stale value only
     * moves the phase boundaries of this one wait. */
    if (idle < atomic_load_explicit(&p->spin_ns, memory_order_relaxed)) {
        ws__pause();
        return true;
    }
    if (idle < atomic_load_explicit(&p->idle_ns, memory_order_relaxed)) {
        sched_yield();
        return true;
    }
    return false;
}

/* ---- Workers ------------------------------------------------------------------------- */

/* Looks for work with the worker counted as spinning; parks when there is
 * none. Returns a task, or NULL at shutdown. */
static ws_task *ws__idle(ws__part *self) {
    ws_pool *p = self->pool;
    atomic_fetch_add_explicit(&p->nspin, 1, memory_order_relaxed);
    for (;;) {
        uint64_t since = 0;
        for (;;) {
            bool more = false;
            ws_task *t = ws__steal_round(self, &more);
            if (t) {
                /* The last spinner to find work wakes a sleeper if work is
                 * left, so there is again someone looking for it. */
                if (atomic_fetch_sub_explicit(&p->nspin, 1, memory_order_acq_rel) == 1 && more)
                    ws__wake_one(p);
                return t;
            }
            /* Nothing for the team this worker has a seat in: the seat goes
             * to whoever finds the team's next work (team.c). */
            ws__team_leave(self);
            if (atomic_load_explicit(&p->shutdown, memory_order_acquire)) {
                atomic_fetch_sub_explicit(&p->nspin, 1, memory_order_relaxed);
                return NULL;
            }
            if (!ws__idle_step(p, &since))
                break;
        }
        ws__prepare_wait(self);
        /* release: a sharer that sees nspin drop (acquire) also sees nwait. */
        atomic_fetch_sub_explicit(&p->nspin, 1, memory_order_release);
        ws__heavy_barrier();
        bool more = false;
        ws_task *t = ws__steal_round(self, &more);
        if (t || atomic_load_explicit(&p->shutdown, memory_order_acquire)) {
            ws__cancel_wait(self);
            if (t && more)
                ws__wake_one(p);
            return t;
        }
        ws__commit_wait(self);
        atomic_fetch_add_explicit(&p->nspin, 1, memory_order_relaxed);
    }
}

void ws__worker_loop(ws__part *self) {
    for (;;) {
        ws_task *t = ws__deque_take(&self->dq);
        if (!t) {
            ws__dag_flush(self);
            t = ws__idle(self);
        }
        if (!t)
            return;
        ws__run(self, t);
    }
}

/* ---- Waiting threads ------------------------------------------------------------------ */

void ws__help_until(ws__part *self, int64_t base, bool (*done)(void *), void *arg) {
    self->helping++;
    ws__dag_flush(self);
    int64_t floor = self->floor;
    self->floor = base;
    uint64_t since = 0;
    while (!done(arg)) {
        ws_task *t = ws__deque_take_above(&self->dq, base);
        if (!t) {
            ws__dag_flush(self);
            /* Whatever this thread still holds privately (tasks of outer
             * frames, below base) must be stealable while it waits: another
             * thread may need them to finish what we wait for. */
            ws__deque_share_all(&self->dq);
            t = ws__steal_round(self, NULL);
        }
        if (t) {
            ws__run(self, t);
            since = 0;
            continue;
        }
        if (ws__idle_step(self->pool, &since))
            continue;
        /* Park until the condition holds (the thread that makes it true
         * wakes this participant) or new work appears. */
        ws__prepare_wait(self);
        ws__heavy_barrier();
        if (done(arg)) {
            ws__cancel_wait(self);
            break;
        }
        t = ws__steal_round(self, NULL);
        if (t) {
            ws__cancel_wait(self);
            ws__run(self, t);
        } else {
            ws__commit_wait(self);
        }
        since = 0;
    }
    self->floor = floor;
    ws__dag_flush(self); /* back to the caller's code */
    self->helping--;
}
