/* Dependency-counted DAGs. A node's join counter holds its predecessors not
 * yet done; the thread that brings it to zero keeps the node and runs it as
 * soon as the current one returns (keep-one-successor), pushing any other
 * ready node on its deque. A chain therefore runs on one thread with no
 * deque traffic. A thread counts the nodes it finishes and subtracts them
 * from the run's pending count in one go when it turns to other work, so
 * the shared counter is touched about once per steal, not once per node.
 *
 * The counters live in public structs (ws_dag, ws_node) as plain integers,
 * so that ws.h compiles as C++; they are only ever accessed with the
 * __atomic builtins, with the orders given at each use.
 *
 * Ready nodes pushed while a node runs stay private to the thread (deque.h)
 * until the node returns; then, if any other thread could take them, they
 * are all shared at once (one release store), so that siblings of a long
 * node do not wait for it. A pool nobody else can steal from keeps them
 * private, and the takes that follow need no fence. */
#include "deque.h"

static inline ws_dag *ws__node_dag(const ws_node *n) { return (ws_dag *)n->task.owner; }

int ws_dag_init(ws_dag *d, ws_pool *p) {
    if (!d || !p)
        return WS_EINVAL;
    d->magic = WS__DAG_MAGIC;
    d->pool = p;
    d->nnodes = 0;
    d->waiter = NULL;
    __atomic_store_n(&d->pending, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&d->running, 0, __ATOMIC_RELAXED);
    return 0;
}

int ws_node_init(ws_dag *d, ws_node *n, ws_task_fn fn, void *arg, int npred) {
    if (WS__UNLIKELY(!d || d->magic != WS__DAG_MAGIC || !n || !fn || npred < 0))
        return WS_EINVAL;
    /* relaxed: init is only allowed between runs; this catches misuse by
     * the thread that runs the DAG, not a race. */
    if (WS__UNLIKELY(__atomic_load_n(&d->running, __ATOMIC_RELAXED)))
        return WS_ESTATE;
    n->task.fn = fn;
    n->task.arg = arg;
    n->task.name = NULL;
    n->task.owner = d;
    n->task.kind = WS__TASK_NODE;
    n->task.next = NULL;
    n->succ = NULL;
    n->nsucc = 0;
    n->npred = npred;
    /* relaxed: ws_dag_run publishes the nodes to other threads (its pushes
     * are release stores). */
    __atomic_store_n(&n->task.count, npred, __ATOMIC_RELAXED);
    d->nnodes++;
    return 0;
}

/* Whether another thread may take tasks from this pool now: workers, or
 * another outside thread that has entered it. */
static inline bool ws__pool_shared(ws_pool *p) {
    /* relaxed: a hint; a pool that just grew is seen shared soon after,
     * and until then the nodes stay private and run here. */
    return atomic_load_explicit(&p->nworkers, memory_order_relaxed) > 0 ||
           atomic_load_explicit(&p->nvictims, memory_order_relaxed) > 1;
}

/* n is ready: keep it if the calling thread is running a node and keeps
 * nothing yet, else push it (or queue it, from outside the pool). */
static void ws__ready(ws_node *n) {
    ws__part *self = ws__self;
    ws_pool *p = ws__node_dag(n)->pool;
    if (self && self->pool == p) {
        if (self->node_depth > 0 && !self->keep)
            self->keep = n;
        else
            ws__push(self, &n->task);
    } else {
        ws__submit_queue(p, &n->task);
    }
}

/* One predecessor of n is done: 1 if that made n ready, 0 if it still
 * waits, WS_ESTATE if it had no pending predecessor. */
static inline int ws__count_down(ws_node *n) {
    /* acquire: a count of 1 means every other predecessor has released
     * (each does so once), and this load synchronises with their releases;
     * the last one needs no read-modify-write at all. */
    int32_t j = __atomic_load_n(&n->task.count, __ATOMIC_ACQUIRE);
    if (j == 1) {
        /* relaxed: nobody else touches the counter until n has run. */
        __atomic_store_n(&n->task.count, 0, __ATOMIC_RELAXED);
        return 1;
    }
    if (WS__UNLIKELY(j <= 0))
        return WS_ESTATE;
    /* acq_rel: release our writes (the successor's inputs) to whoever
     * reaches zero; acquire everyone else's if it is us. */
    j = __atomic_fetch_sub(&n->task.count, 1, __ATOMIC_ACQ_REL);
    return j == 1 ? 1 : j > 1 ? 0 : WS_ESTATE;
}

static int ws__release(ws_node *n) {
    int rc = ws__count_down(n);
    if (rc == 1)
        ws__ready(n);
    return rc;
}

int ws_node_release(ws_node *n) {
    if (!n || n->task.kind != WS__TASK_NODE || !n->task.owner || ws__node_dag(n)->magic != WS__DAG_MAGIC)
        return WS_EINVAL;
    int rc = ws__release(n);
    /* Released from inside a node's function, to start the successor
     * early: share it now, not when the function returns. */
    ws__part *self = ws__self;
    if (rc == 1 && self && self->pool == ws__node_dag(n)->pool && ws__pool_shared(self->pool))
        ws__deque_share_all(&self->dq);
    return rc;
}

void ws__dag_flush_slow(ws__part *self) {
    ws_dag *d = self->done_dag;
    int64_t k = self->done_count;
    self->done_dag = NULL;
    self->done_count = 0;
    /* Read before the decrement: once pending hits zero the caller of
     * ws_dag_run may return and d may be gone. */
    ws__part *waiter = d->waiter;
    /* acq_rel: the waiter's final acquire load sees every node's effects. */
    if (__atomic_fetch_sub(&d->pending, k, __ATOMIC_ACQ_REL) == k)
        ws__wake_part(waiter);
}

/* k more nodes of d are done on this thread. */
static void ws__dag_done(ws__part *self, ws_dag *d, int64_t k) {
    if (self->done_dag != d) {
        ws__dag_flush(self);
        self->done_dag = d;
    }
    self->done_count += k;
}

/* When a chain of kept nodes ends: the newest task on this thread's deque,
 * if it is a private node of d above the floor (so no other thread can
 * take it, and it is this context's to run), taken off to run next
 * without a return to the caller's loop. NULL otherwise. */
static inline ws_node *ws__next_private_node(ws__part *self, ws_dag *d) {
    ws__deque *q = &self->dq;
    int64_t b = q->bottom - 1;
    /* relaxed: want is a hint, the slot this thread's own store. */
    if (b < q->split || b < self->floor || atomic_load_explicit(&q->want, memory_order_relaxed))
        return NULL;
    ws_task *x = atomic_load_explicit(&q->array->slot[b & q->array->mask], memory_order_relaxed);
    if (x->kind != WS__TASK_NODE || x->owner != d)
        return NULL;
    q->bottom = b;
    return ws_node_of(x);
}

/* Runs n, then the successors this thread keeps, one after the other. */
void ws__run_node(ws__part *self, ws_node *n) {
    ws_node *saved = self->keep; /* a node kept by an outer node on this stack */
    self->node_depth++;
    ws_dag *d = ws__node_dag(n);
    ws_pool *p = self->pool;
    bool shared = ws__pool_shared(p);
    bool tracing = ws__tracing(p);
    int64_t done = 0;
    while (n) {
        self->keep = NULL;
        /* Every predecessor has released n, so nothing else touches the
         * counter in this run: reset it for the next one (relaxed: the next
         * run starts after this one has ended, an acquire on pending). */
        __atomic_store_n(&n->task.count, n->npred, __ATOMIC_RELAXED);
        /* The successors' counters are about to be counted down: fetch
         * their lines while the node runs. */
        for (int i = 0; i < n->nsucc; i++)
            __builtin_prefetch(&n->succ[i]->task.count, 1, 3);
        if (WS__UNLIKELY(tracing)) {
            uint64_t start = ws__now_ns();
            n->task.fn(&n->task);
            ws__trace_add(self, start, ws__now_ns(), n->task.name);
        } else {
            n->task.fn(&n->task);
        }
        done++;
        /* The node may have released some successors itself already. */
        ws_node *keep = self->keep;
        for (int i = 0; i < n->nsucc; i++) {
            ws_node *s = n->succ[i];
            if (ws__count_down(s) != 1)
                continue;
            if (WS__UNLIKELY(ws__node_dag(s)->pool != p))
                ws__submit_queue(ws__node_dag(s)->pool, &s->task);
            else if (!keep)
                keep = s;
            else
                ws__push(self, &s->task);
        }
        if (shared)
            ws__deque_share_all(&self->dq);
        if (!keep)
            keep = ws__next_private_node(self, d);
        if (keep && ws__node_dag(keep) != d) {
            ws__dag_done(self, d, done);
            done = 0;
            d = ws__node_dag(keep);
        }
        n = keep;
    }
    self->keep = saved;
    self->node_depth--;
    ws__add(&self->tasks_run, (uint64_t)done);
    ws__dag_done(self, d, done);
}

static bool ws__dag_finished(void *arg) {
    ws_dag *d = arg;
    /* acquire: pairs with the acq_rel subtractions of ws__dag_flush_slow. */
    return __atomic_load_n(&d->pending, __ATOMIC_ACQUIRE) == 0;
}

int ws_dag_run(ws_dag *d, ws_node *const *roots, int nroots) {
    if (!d || d->magic != WS__DAG_MAGIC || nroots < 0 || (nroots > 0 && !roots))
        return WS_EINVAL;
    for (int i = 0; i < nroots; i++)
        if (!roots[i] || ws__node_dag(roots[i]) != d || roots[i]->npred != 0)
            return WS_EINVAL;
    if (d->nnodes == 0)
        return 0;
    if (nroots == 0)
        return WS_EINVAL;
    int32_t expected = 0;
    /* acquire: a run that follows another on a different thread sees the
     * counters the last one reset (its release store below). */
    if (!__atomic_compare_exchange_n(&d->running, &expected, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return WS_ESTATE;
    ws__part *self = ws__enter(d->pool);
    if (!self) {
        __atomic_store_n(&d->running, 0, __ATOMIC_RELEASE);
        return WS_ENOMEM;
    }
    /* Published to the nodes' threads by the pushes (release) below. */
    d->waiter = self;
    __atomic_store_n(&d->pending, d->nnodes, __ATOMIC_RELAXED);
    int64_t base = self->dq.bottom;
    int64_t floor = self->floor;
    self->floor = base;
    for (int i = 1; i < nroots; i++)
        ws__push(self, &roots[i]->task);
    if (ws__pool_shared(d->pool))
        ws__deque_share_all(&self->dq);
    ws__run_node(self, roots[0]);
    ws_task *t;
    while ((t = ws__deque_take_above(&self->dq, base)))
        ws__run(self, t);
    ws__dag_flush(self);
    if (!ws__dag_finished(d))
        ws__help_until(self, base, ws__dag_finished, d);
    self->floor = floor;
    /* release: the counters reset during the run are visible to the next
     * run's acquire CAS above. */
    __atomic_store_n(&d->running, 0, __ATOMIC_RELEASE);
    ws__leave(self);
    return 0;
}
