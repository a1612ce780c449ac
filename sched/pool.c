/* The pool: creating, growing and joining the workers, lending outside
 * slots to threads that are not workers, fire-and-forget submission,
 * counters and error strings. */
#include "deque.h"
#include "fault.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    WS__DEFAULT_OUTSIDE = 64,
    WS__DEQUE_CAPACITY = 256, /* grows on demand */
};

/* The texts, indexed by -code, from the one table in ws.h. */
static const char *const ws__errstr[] = {"success",
#define WS__ERRNO_STR(name, code, msg) msg,
                                         WS_ERRNO_MAP(WS__ERRNO_STR)
#undef WS__ERRNO_STR
};
_Static_assert(sizeof(ws__errstr) / sizeof(ws__errstr[0]) == WS_ERRNO_COUNT,
               "WS_ERRNO_COUNT must count WS_OK and every code of WS_ERRNO_MAP");
/* The index of each code in the table above is its position: the codes
 * must be -1, -2, ... in table order. */
enum {
    WS__ERRNO_POS_OK,
#define WS__ERRNO_POS(name, code, msg) WS__ERRNO_POS_##name,
    WS_ERRNO_MAP(WS__ERRNO_POS)
#undef WS__ERRNO_POS
};
#define WS__ERRNO_CHECK(name, code, msg)                                                                               \
    _Static_assert(WS_##name == -WS__ERRNO_POS_##name, "WS_" #name " must be minus its position in WS_ERRNO_MAP");
WS_ERRNO_MAP(WS__ERRNO_CHECK)
#undef WS__ERRNO_CHECK

const char *ws_strerror(int code) {
    if (code > 0 || code <= -WS_ERRNO_COUNT)
        return "unknown error";
    return ws__errstr[-code];
}

/* ---- Participants -------------------------------------------------------------- */

static ws__part *ws__part_new(ws_pool *p, int index, int number, bool outside) {
    ws__part *w = ws__aligned_alloc(WS__LINE, sizeof(*w));
    if (!w)
        return NULL;
    memset(w, 0, sizeof(*w));
    if (ws__deque_init(&w->dq, WS__DEQUE_CAPACITY, p) != 0) {
        free(w);
        return NULL;
    }
    atomic_init(&w->park, 0);
    atomic_init(&w->tasks_run, 0);
    atomic_init(&w->steals, 0);
    atomic_init(&w->failed_steals, 0);
    atomic_init(&w->parks, 0);
    atomic_init(&w->team, NULL);
    w->seat = -1;
    w->pool = p;
    w->floor = INT64_MIN;
    w->index = index;
    w->number = number;
    w->outside = outside;
    w->own_team.caller = w;
    pthread_mutex_init(&w->own_team.held_lock, NULL);
    /* splitmix64 of the index: distinct, non-zero xorshift seeds. */
    uint64_t z = (uint64_t)index * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    w->rng = (z ^ (z >> 31)) | 1;
    return w;
}

static void ws__part_free(ws__part *w) {
    if (!w)
        return;
    ws__deque_destroy(&w->dq);
    ws__trace_free(w);
    pthread_mutex_destroy(&w->own_team.held_lock);
    free(w);
}

static void *ws__worker_main(void *arg) {
    ws__part *self = arg;
    ws__self = self;
    char name[16];
    snprintf(name, sizeof(name), "ws-worker-%d", self->index);
    pthread_setname_np(pthread_self(), name);
    ws__worker_loop(self);
    ws__self = NULL;
    return NULL;
}

/* ---- Creation and destruction ------------------------------------------------------- */

static void ws__pool_free(ws_pool *p) {
    ws_trace_enable(p, false); /* keeps the count of tracing pools right */
    if (p->parts) {
        int n = atomic_load_explicit(&p->nvictims, memory_order_relaxed);
        for (int i = 0; i < n; i++)
            ws__part_free(atomic_load_explicit(&p->parts[i], memory_order_relaxed));
        free(p->parts);
    }
    free(p->in_use);
    free(p->outside);
    pthread_mutex_destroy(&p->sub_lock);
    pthread_mutex_destroy(&p->slot_lock);
    pthread_mutex_destroy(&p->grow_lock);
    pthread_mutex_destroy(&p->trace_lock);
    free(p->loose);
    pthread_cond_destroy(&p->slot_cond);
    free(p);
}

/* Joins every started worker; the pool is going away. */
static void ws__join_workers(ws_pool *p) {
    atomic_store_explicit(&p->shutdown, true, memory_order_release);
    ws__wake_all(p);
    int n = atomic_load_explicit(&p->nvictims, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        ws__part *w = ws__part_at(p, i);
        if (w && !w->outside && w->thread)
            pthread_join(w->thread, NULL);
    }
}

/* An idle participant spins, then yields, then sleeps (sched.c), unless
 * threads outnumber the CPUs: then it does not spin and yields only
 * briefly, as an idle worker would take the CPU from a busy one. Set again
 * when the pool grows. relaxed: idle tuning, read as a hint. */
static void ws__set_idle(ws_pool *p, int nworkers) {
    bool fits = nworkers + 1 <= ws_cpu_count();
    atomic_store_explicit(&p->spin_ns, fits ? WS__SPIN_NS : 0, memory_order_relaxed);
    atomic_store_explicit(&p->idle_ns, fits ? WS__IDLE_NS : WS__IDLE_OVER_NS, memory_order_relaxed);
}

/* Appends a participant: under slot_lock (or before the pool is shared). */
static void ws__publish(ws_pool *p, ws__part *w) {
    /* release: thieves that load the pointer see an initialised deque. */
    atomic_store_explicit(&p->parts[w->index], w, memory_order_release);
    atomic_store_explicit(&p->nvictims, w->index + 1, memory_order_release);
}

/* Creates and starts workers until there are n, under grow_lock. Workers
 * start with every signal blocked, so the application's signal handlers
 * run on its own threads, not in the middle of a task. */
static int ws__add_workers(ws_pool *p, int n) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (p->stack_size && pthread_attr_setstacksize(&attr, p->stack_size) != 0) {
        pthread_attr_destroy(&attr);
        return WS_EINVAL;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    for (int have = atomic_load_explicit(&p->nworkers, memory_order_relaxed); have < n; have++) {
        pthread_mutex_lock(&p->slot_lock);
        int index = atomic_load_explicit(&p->nvictims, memory_order_relaxed);
        ws__part *w = index < p->cap_parts ? ws__part_new(p, index, have, false) : NULL;
        if (w)
            ws__publish(p, w);
        pthread_mutex_unlock(&p->slot_lock);
        if (!w) {
            rc = WS_ENOMEM;
            break;
        }
        /* Published before it runs: a worker that cannot start stays in
         * the pool as a participant without a thread, an empty deque that
         * nobody pushes to. */
        if (ws__thread_create(&w->thread, &attr, ws__worker_main, w) != 0) {
            w->thread = 0;
            rc = WS_EAGAIN;
            break;
        }
        atomic_store_explicit(&p->nworkers, have + 1, memory_order_release);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    ws__set_idle(p, atomic_load_explicit(&p->nworkers, memory_order_relaxed));
    return rc;
}

int ws_pool_create(ws_pool **out, const ws_pool_opts *opts) {
    if (!out)
        return WS_EINVAL;
    *out = NULL;
    ws_pool_opts o = WS_POOL_OPTS_INIT;
    if (opts)
        o = *opts;
    int n = o.num_threads == WS_THREADS_DEFAULT ? ws_default_num_threads() : o.num_threads;
    int max_outside = o.max_outside == 0 ? WS__DEFAULT_OUTSIDE : o.max_outside;
    if (n < 0 || n > WS__MAX_THREADS || max_outside < 1 || max_outside > WS__MAX_THREADS)
        return WS_EINVAL;

    ws__barriers_init();
    size_t size = (sizeof(ws_pool) + WS__LINE - 1) / WS__LINE * WS__LINE;
    ws_pool *p = ws__aligned_alloc(WS__LINE, size);
    if (!p)
        return WS_ENOMEM;
    memset(p, 0, sizeof(*p));
    p->max_outside = max_outside;
    p->cap_parts = WS__MAX_THREADS + max_outside;
    p->stack_size = o.stack_size;
    atomic_init(&p->nworkers, 0);
    atomic_init(&p->spin_ns, 0);
    atomic_init(&p->idle_ns, 0);
    atomic_init(&p->nvictims, 0);
    atomic_init(&p->shutdown, false);
    atomic_init(&p->tracing, false);
    atomic_init(&p->trace_gen, 0);
    atomic_init(&p->nspin, 0);
    atomic_init(&p->nwait, 0);
    atomic_init(&p->sub_count, 0);
    pthread_mutex_init(&p->sub_lock, NULL);
    pthread_mutex_init(&p->slot_lock, NULL);
    pthread_mutex_init(&p->grow_lock, NULL);
    pthread_mutex_init(&p->trace_lock, NULL);
    pthread_cond_init(&p->slot_cond, NULL);
    p->t0_ns = ws__now_ns();
    p->parts = ws__calloc((size_t)p->cap_parts, sizeof(p->parts[0]));
    p->in_use = ws__calloc((size_t)max_outside, sizeof(bool));
    p->outside = ws__calloc((size_t)max_outside, sizeof(ws__part *));
    if (!p->parts || !p->in_use || !p->outside) {
        ws__pool_free(p);
        return WS_ENOMEM;
    }
    for (int i = 0; i < p->cap_parts; i++)
        atomic_init(&p->parts[i], NULL);
    int rc = ws__add_workers(p, n);
    if (rc != 0) {
        ws__join_workers(p);
        ws__pool_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int ws_pool_grow(ws_pool *p, int num_threads) {
    if (!p || num_threads < 0 || num_threads > WS__MAX_THREADS)
        return WS_EINVAL;
    if (atomic_load_explicit(&p->nworkers, memory_order_acquire) >= num_threads)
        return 0;
    pthread_mutex_lock(&p->grow_lock);
    int rc = ws__add_workers(p, num_threads);
    pthread_mutex_unlock(&p->grow_lock);
    return rc;
}

int ws_pool_destroy(ws_pool *p) {
    if (!p)
        return WS_EINVAL;
    if (ws__self && ws__self->pool == p)
        return WS_ESTATE;
    pthread_mutex_lock(&p->slot_lock);
    int busy = p->outside_count;
    pthread_mutex_unlock(&p->slot_lock);
    if (busy)
        return WS_EBUSY;
    /* Workers drain what is queued before they see shutdown and an empty
     * round. With no workers, run the queue here. */
    if (atomic_load_explicit(&p->nworkers, memory_order_relaxed) == 0 &&
        atomic_load_explicit(&p->sub_count, memory_order_relaxed) > 0) {
        ws__part *self = ws__enter(p);
        if (self) {
            ws_task *t;
            while ((t = ws__find_work(self, NULL)))
                ws__run(self, t);
            ws__dag_flush(self);
            ws__leave(self);
        }
    }
    ws__join_workers(p);
    ws__pool_free(p);
    return 0;
}

int ws_pool_num_threads(const ws_pool *p) {
    return p ? atomic_load_explicit(&((ws_pool *)p)->nworkers, memory_order_relaxed) : WS_EINVAL;
}

int ws_pool_wake(ws_pool *p, int n) {
    if (!p || n < 0)
        return WS_EINVAL;
    int woke = 0;
    int nworkers = atomic_load_explicit(&p->nworkers, memory_order_relaxed);
    while (woke < n && woke < nworkers && ws__wake_one_counted(p))
        woke++;
    return woke;
}

int ws_pool_max_participants(const ws_pool *p) {
    if (!p)
        return WS_EINVAL;
    ws_pool *q = (ws_pool *)p;
    pthread_mutex_lock(&q->slot_lock);
    int n = atomic_load_explicit(&q->nvictims, memory_order_relaxed) + (q->max_outside - q->outside_created);
    pthread_mutex_unlock(&q->slot_lock);
    return n;
}

int ws_participant_index(void) { return ws__self ? ws__self->index : -1; }

ws_pool *ws_current_pool(void) { return ws__self ? ws__self->pool : NULL; }

/* ---- Outside threads ------------------------------------------------------------------- */

ws__part *ws__enter(ws_pool *p) {
    ws__part *self = ws__self;
    if (self && self->pool == p) {
        if (self->outside)
            self->bind_depth++;
        return self;
    }
    pthread_mutex_lock(&p->slot_lock);
    /* All slots taken: wait for one. Their holders are waiting for work
     * they can finish themselves, so one comes free. */
    while (p->outside_count == p->max_outside)
        pthread_cond_wait(&p->slot_cond, &p->slot_lock);
    int i = 0;
    while (p->in_use[i])
        i++;
    ws__part *w = p->outside[i];
    if (!w) {
        int index = atomic_load_explicit(&p->nvictims, memory_order_relaxed);
        if (index >= p->cap_parts || !(w = ws__part_new(p, index, i, true))) {
            pthread_mutex_unlock(&p->slot_lock);
            return NULL;
        }
        p->outside[i] = w;
        p->outside_created++;
        ws__publish(p, w);
    }
    p->in_use[i] = true;
    p->outside_count++;
    pthread_mutex_unlock(&p->slot_lock);
    w->prev_self = self;
    w->bind_depth = 1;
    ws__self = w;
    return w;
}

void ws__leave(ws__part *self) {
    if (!self->outside)
        return;
    if (self->bind_depth == 1) {
        /* Leave an empty deque behind: run what this thread pushed and
         * nobody stole (tasks it submitted, DAG nodes it made ready). */
        ws_task *t;
        while ((t = ws__deque_take(&self->dq)))
            ws__run(self, t);
        ws__dag_flush(self);
    }
    if (--self->bind_depth > 0)
        return;
    ws_pool *p = self->pool;
    ws__self = self->prev_self;
    self->prev_self = NULL;
    pthread_mutex_lock(&p->slot_lock);
    p->in_use[self->number] = false;
    p->outside_count--;
    pthread_cond_signal(&p->slot_cond);
    pthread_mutex_unlock(&p->slot_lock);
}

/* ---- Submitting and running -------------------------------------------------------------- */

int ws_submit(ws_pool *p, ws_task *t) {
    if (!p || !t || !t->fn)
        return WS_EINVAL;
    t->owner = NULL;
    t->kind = WS__TASK_PLAIN;
    t->next = NULL;
    ws__part *self = ws__self;
    if (self && self->pool == p) {
        /* Shared at once: nobody waits for a submitted task, so it must
         * not sit on the private part while this thread runs (or blocks
         * in) something long. */
        ws__push(self, t);
        ws__deque_share_all(&self->dq);
    } else {
        ws__submit_queue(p, t);
    }
    return 0;
}

int ws_run(ws_pool *p, ws_task_fn fn, void *arg) {
    if (!p || !fn)
        return WS_EINVAL;
    ws__part *self = ws__enter(p);
    if (!self)
        return WS_ENOMEM;
    ws_task t = WS_TASK_INIT(fn, arg);
    ws__run(self, &t);
    ws__leave(self);
    return 0;
}

/* ---- Counters ------------------------------------------------------------------------------ */

int ws_pool_stats(ws_pool *p, ws_stats *out, int cap) {
    if (!p || cap < 0 || (cap > 0 && !out))
        return WS_EINVAL;
    int n = atomic_load_explicit(&p->nvictims, memory_order_acquire);
    for (int i = 0; i < n && i < cap; i++) {
        ws__part *w = ws__part_at(p, i);
        if (!w) {
            memset(&out[i], 0, sizeof(out[i]));
            continue;
        }
        out[i].tasks_run = atomic_load_explicit(&w->tasks_run, memory_order_relaxed);
        out[i].steals = atomic_load_explicit(&w->steals, memory_order_relaxed);
        out[i].failed_steals = atomic_load_explicit(&w->failed_steals, memory_order_relaxed);
        out[i].parks = atomic_load_explicit(&w->parks, memory_order_relaxed);
    }
    return n;
}
