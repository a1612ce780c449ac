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
 * __atomic builtins, with the orders given at each use. */
#include "deque.h"

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
    if (!d || d->magic != WS__DAG_MAGIC || !n || !fn || npred < 0)
        return WS_EINVAL;
    /* relaxed: init is only allowed between runs; this catches misuse by
     * the thread that runs the DAG, not a race. */
    if (__atomic_load_n(&d->running, __ATOMIC_RELAXED))
        return WS_ESTATE;
    ws_task_init(&n->task, fn, arg);
    n->task.dag = d;
    n->succ = NULL;
    n->nsucc = 0;
    n->npred = npred;
    /* relaxed: ws_dag_run publishes the nodes to other threads (its pushes
     * are release stores). */
    __atomic_store_n(&n->join, npred, __ATOMIC_RELAXED);
    d->nnodes++;
    return 0;
}

/* n is ready: keep it if the calling thread is running a node and keeps
 * nothing yet, else push it (or queue it, from outside the pool). */
static void ws__ready(ws_node *n) {
    ws__part *self = ws__self;
    ws_pool *p = n->task.dag->pool;
    if (self && self->pool == p) {
        if (self->node_depth > 0 && !self->keep)
            self->keep = n;
        else
            ws__push(self, &n->task);
    } else {
        ws__submit_queue(p, &n->task);
    }
}

static int ws__release(ws_node *n) {
    /* acquire: a count of 1 means every other predecessor has released
     * (each does so once), and this load synchronises with their releases;
     * the last one needs no read-modify-write at all. */
    int32_t j = __atomic_load_n(&n->join, __ATOMIC_ACQUIRE);
    if (j == 1) {
        /* relaxed: nobody else touches the counter until n has run. */
        __atomic_store_n(&n->join, 0, __ATOMIC_RELAXED);
    } else {
        if (j <= 0)
            return WS_ESTATE;
        /* acq_rel: release our writes (the successor's inputs) to whoever
         * reaches zero; acquire everyone else's if it is us. */
        j = __atomic_fetch_sub(&n->join, 1, __ATOMIC_ACQ_REL);
        if (j != 1)
            return j > 1 ? 0 : WS_ESTATE;
    }
    ws__ready(n);
    return 1;
}

int ws_node_release(ws_node *n) {
    if (!n || !n->task.dag || n->task.dag->magic != WS__DAG_MAGIC)
        return WS_EINVAL;
    return ws__release(n);
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

void ws__run_node(ws__part *self, ws_node *n) {
    ws_node *saved = self->keep; /* a node kept by an outer node on this stack */
    self->node_depth++;
    ws_dag *d = n->task.dag;
    int64_t done = 0;
    while (n) {
        self->keep = NULL;
        /* Every predecessor has released n, so nothing else touches the
         * counter in this run: reset it for the next one. */
        __atomic_store_n(&n->join, n->npred, __ATOMIC_RELAXED);
        if (WS__UNLIKELY(atomic_load_explicit(&self->pool->tracing, memory_order_relaxed))) {
            uint64_t start = ws__now_ns();
            n->task.fn(&n->task);
            ws__trace_add(self, start, ws__now_ns(), n->task.name);
        } else {
            n->task.fn(&n->task);
        }
        ws__count(&self->tasks_run);
        for (int i = 0; i < n->nsucc; i++)
            ws__release(n->succ[i]);
        done++;
        ws_node *next = self->keep;
        if (next && next->task.dag != d) {
            ws__dag_done(self, d, done);
            done = 0;
            d = next->task.dag;
        }
        n = next;
    }
    self->keep = saved;
    self->node_depth--;
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
        if (!roots[i] || roots[i]->task.dag != d || roots[i]->npred != 0)
            return WS_EINVAL;
    if (d->nnodes == 0)
        return 0;
    if (nroots == 0)
        return WS_EINVAL;
    int32_t expected = 0;
    /* acquire: a run that follows another on a different thread sees the
     * counters the last one reset (its release store at the end). */
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
    int64_t base = atomic_load_explicit(&self->dq.bottom, memory_order_relaxed);
    for (int i = 1; i < nroots; i++)
        ws__push(self, &roots[i]->task);
    ws__run_node(self, roots[0]);
    ws_task *t;
    while ((t = ws__deque_take_above(&self->dq, base)))
        ws__run(self, t);
    ws__dag_flush(self);
    if (!ws__dag_finished(d))
        ws__help_until(self, base, ws__dag_finished, d);
    /* release: the counters reset during the run are visible to the next
     * run's acquire CAS above. */
    __atomic_store_n(&d->running, 0, __ATOMIC_RELEASE);
    ws__leave(self);
    return 0;
}
