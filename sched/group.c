/* Task groups (spawn, then wait while helping) and parallel-for, which is
 * recursive halving over groups. A group's tasks sit on its owner's deque
 * above the bottom index the group started at; the owner takes back most of
 * them itself and only waits for the ones thieves took. */
#include "deque.h"

int ws_group_init(ws_group *g, ws_pool *p) {
    if (!g)
        return WS_EINVAL;
    ws__part *self = ws__self;
    g->entered = 0;
    if (WS__UNLIKELY(p ? !self || self->pool != p : !self)) {
        if (!p) {
            g->magic = 0;
            return WS_ESTATE;
        }
        /* A thread outside the pool: bind it for the group's lifetime. */
        self = ws__enter(p);
        if (!self) {
            g->magic = 0;
            return WS_ENOMEM;
        }
        g->entered = 1;
    }
    g->self = self;
    g->base = self->dq.bottom;
    g->spawned = 0;
    g->local_done = 0;
    /* relaxed: thieves only see the group through tasks spawned later,
     * which the deque publishes with release. */
    __atomic_store_n(&g->stolen_done, 0, __ATOMIC_RELAXED);
    g->magic = WS__GROUP_MAGIC;
    return 0;
}

int ws_spawn(ws_group *g, ws_task *t) {
    if (WS__UNLIKELY(!g || !t || !t->fn || g->magic != WS__GROUP_MAGIC))
        return WS_EINVAL;
    ws__part *self = g->self;
    if (WS__UNLIKELY(self != ws__self))
        return WS_ESTATE;
    t->owner = g;
    t->kind = WS__TASK_GROUP;
    g->spawned++;
    ws__push(self, t);
    return 0;
}

static bool ws__group_done(void *arg) {
    ws_group *g = arg;
    /* acquire: pairs with each thief's release increment, so what the
     * stolen tasks wrote is visible when the wait returns. */
    return g->local_done + __atomic_load_n(&g->stolen_done, __ATOMIC_ACQUIRE) == g->spawned;
}

int ws_group_wait(ws_group *g) {
    if (WS__UNLIKELY(!g || g->magic != WS__GROUP_MAGIC))
        return WS_EINVAL;
    ws__part *self = g->self;
    if (WS__UNLIKELY(self != ws__self))
        return WS_ESTATE;
    /* Fast path: take back our own tasks, newest first. Those nobody stole
     * are still private, so this is plain loads and stores. */
    int64_t floor = self->floor;
    self->floor = g->base;
    ws_task *t;
    while ((t = ws__deque_take_above(&self->dq, g->base)))
        ws__run(self, t);
    ws__dag_flush(self); /* nodes run here are counted before we go on */
    if (WS__UNLIKELY(!ws__group_done(g)))
        ws__help_until(self, g->base, ws__group_done, g);
    self->floor = floor;
    g->magic = 0;
    if (g->entered)
        ws__leave(self);
    return 0;
}

/* ---- Fork and join ------------------------------------------------------------------- */

int ws_fork(ws_task *t) {
    ws__part *self = ws__self;
    if (WS__UNLIKELY(!t || !t->fn || !self))
        return t && t->fn ? WS_ESTATE : WS_EINVAL;
    t->owner = self;
    t->kind = WS__TASK_FORK;
    /* relaxed: a thief sees it through the deque's release store. */
    __atomic_store_n(&t->count, 0, __ATOMIC_RELAXED);
    ws__push(self, t);
    return 0;
}

static bool ws__fork_done(void *arg) {
    ws_task *t = arg;
    /* acquire: pairs with the thief's release store after running t. */
    return __atomic_load_n(&t->count, __ATOMIC_ACQUIRE) != 0;
}

/* t is not the newest private task: run what was pushed after it and is
 * still here, then t; or, if a thief took t, help until it has run. */
__attribute__((noinline)) static int ws__join_slow(ws__part *self, ws_task *t) {
    if (ws__fork_done(t)) {
        /* Already run, by a thief or by this thread while it waited for
         * something else. */
        t->kind = WS__TASK_PLAIN;
        return 0;
    }
    /* What runs here must not take t, or anything below it, off the deque
     * on its own (DAG nodes do, above the floor). */
    int64_t floor = self->floor;
    self->floor = self->dq.bottom;
    ws_task *x;
    while ((x = ws__deque_take(&self->dq)) && x != t)
        ws__run(self, x);
    self->floor = floor;
    if (x == t) {
        t->kind = WS__TASK_PLAIN; /* joined: a second join is an error */
        ws__run(self, t);
        return 0;
    }
    /* Not on the deque, so a thief has it; everything below it went first
     * (thieves take the oldest), so the deque is empty. */
    ws__dag_flush(self);
    if (!ws__fork_done(t))
        ws__help_until(self, self->dq.bottom, ws__fork_done, t);
    t->kind = WS__TASK_PLAIN;
    return 0;
}

int ws_join(ws_task *t) {
    ws__part *self = ws__self;
    if (WS__UNLIKELY(!t))
        return WS_EINVAL;
    if (WS__UNLIKELY(!self || t->owner != self || t->kind != WS__TASK_FORK))
        return WS_ESTATE;
    /* Fast path: t is the newest task and still private, as it is unless a
     * thief came by. The bookkeeping comes before the call, so nothing is
     * kept across it. */
    ws__deque *q = &self->dq;
    int64_t b = q->bottom - 1;
    ws__array *a = q->array;
    /* relaxed: want is a hint; the slot is this thread's own store. */
    if (WS__UNLIKELY(b < q->split || atomic_load_explicit(&q->want, memory_order_relaxed) ||
                     atomic_load_explicit(&a->slot[b & a->mask], memory_order_relaxed) != t || self->done_dag ||
                     ws__tracing(self->pool)))
        return ws__join_slow(self, t);
    q->bottom = b;
    t->kind = WS__TASK_PLAIN; /* joined: a second join is an error */
    ws__count(&self->tasks_run);
    t->fn(t);
    return 0;
}

/* ---- Parallel-for ------------------------------------------------------------------- */

typedef struct ws__pfor {
    ws_range_fn fn;
    void *arg;
    int64_t grain;
} ws__pfor;

typedef struct ws__pfor_task {
    ws_task task;
    const ws__pfor *pf;
    int64_t lo, hi;
} ws__pfor_task;

static void ws__pfor_split(const ws__pfor *pf, int64_t lo, int64_t hi);

static void ws__pfor_run(ws_task *t) {
    ws__pfor_task *pt = (ws__pfor_task *)t;
    ws__pfor_split(pt->pf, pt->lo, pt->hi);
}

/* Spawns the upper half until the rest is one grain, runs that, then waits:
 * the largest halves are spawned first, so thieves take big pieces. */
static void ws__pfor_split(const ws__pfor *pf, int64_t lo, int64_t hi) {
    if (hi - lo <= pf->grain) {
        pf->fn(pf->arg, lo, hi);
        return;
    }
    ws__pfor_task tasks[64]; /* one per halving of a 64-bit range */
    ws_group g;
    ws_group_init(&g, NULL); /* cannot fail: we run on a participant */
    int k = 0;
    while (hi - lo > pf->grain) {
        int64_t mid = lo + (hi - lo) / 2;
        ws__pfor_task *pt = &tasks[k++];
        ws_task_init(&pt->task, ws__pfor_run, NULL);
        pt->pf = pf;
        pt->lo = mid;
        pt->hi = hi;
        ws_spawn(&g, &pt->task);
        hi = mid;
    }
    pf->fn(pf->arg, lo, hi);
    ws_group_wait(&g);
}

int ws_parallel_for(ws_pool *p, int64_t begin, int64_t end, int64_t grain, ws_range_fn fn, void *arg) {
    if (!fn || end < begin || grain < 0)
        return WS_EINVAL;
    /* end - begin must not overflow. */
    if ((uint64_t)end - (uint64_t)begin > (uint64_t)INT64_MAX)
        return WS_EINVAL;
    if (!p) {
        if (!ws__self)
            return WS_ESTATE;
        p = ws__self->pool;
    }
    if (begin == end)
        return 0;
    ws__part *self = ws__enter(p);
    if (!self)
        return WS_ENOMEM;
    if (grain == 0) {
        /* about 8 chunks per thread that may run them */
        ws__team *tm = ws__team_of(self);
        int nthreads = atomic_load_explicit(&p->nworkers, memory_order_relaxed) + 1;
        if (tm && atomic_load_explicit(&tm->cap, memory_order_relaxed) < nthreads)
            nthreads = atomic_load_explicit(&tm->cap, memory_order_relaxed);
        int64_t chunks = 8 * (int64_t)nthreads;
        grain = (end - begin) / chunks;
        if (grain < 1)
            grain = 1;
    }
    ws__pfor pf = {fn, arg, grain};
    ws__pfor_split(&pf, begin, end);
    ws__leave(self);
    return 0;
}
