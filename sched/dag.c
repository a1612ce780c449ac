/* Dependency-counted DAGs. A node's join counter holds its predecessors not
 * yet done; the thread that brings it to zero keeps the node and runs it as
 * soon as the current one returns (keep-one-successor), pushing any other
 * ready node on its deque. A chain therefore runs on one thread with no
 * deque traffic. A thread counts the nodes it finishes and subtracts them
 * from the run's pending count in one go when it turns to other work, so
 * the shared counter is touched about once per steal, not once per node. */
#include "deque.h"

int ws_dag_init(ws_dag *d, ws_pool *p) {
    if (!d || !p)
        return WS_EINVAL;
    d->magic = WS__DAG_MAGIC;
    d->pool = p;
    d->nnodes = 0;
    d->waiter = NULL;
    atomic_init(&d->pending, 0);
    atomic_init(&d->running, 0);
    return 0;
}

int ws_node_init(ws_dag *d, ws_node *n, ws_task_fn fn, void *arg, int npred) {
    if (!d || d->magic != WS__DAG_MAGIC || !n || !fn || npred < 0)
        return WS_EINVAL;
    if (atomic_load_explicit(&d->running, memory_order_relaxed))
        return WS_ESTATE;
    ws_task_init(&n->task, fn, arg);
    n->task.dag = d;
    n->succ = NULL;
    n->nsucc = 0;
    n->npred = npred;
    atomic_store_explicit(&n->join, npred, memory_order_relaxed);
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
    int32_t j = atomic_load_explicit(&n->join, memory_order_acquire);
    if (j == 1) {
        atomic_store_explicit(&n->join, 0, memory_order_relaxed);
    } else {
        if (j <= 0)
            return WS_ESTATE;
        /* acq_rel: release our writes (the successor's inputs) to whoever
         * reaches zero; acquire everyone else's if it is us. */
        j = atomic_fetch_sub_explicit(&n->join, 1, memory_order_acq_rel);
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
    if (atomic_fetch_sub_explicit(&d->pending, k, memory_order_acq_rel) == k)
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
        atomic_store_explicit(&n->join, n->npred, memory_order_relaxed);
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
    return atomic_load_explicit(&d->pending, memory_order_acquire) == 0;
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
    int expected = 0;
    if (!atomic_compare_exchange_strong_explicit(&d->running, &expected, 1, memory_order_acquire, memory_order_relaxed))
        return WS_ESTATE;
    ws__part *self = ws__enter(d->pool);
    if (!self) {
        atomic_store_explicit(&d->running, 0, memory_order_release);
        return WS_ENOMEM;
    }
    /* Published to the nodes' threads by the pushes (release) below. */
    d->waiter = self;
    atomic_store_explicit(&d->pending, d->nnodes, memory_order_relaxed);
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
    atomic_store_explicit(&d->running, 0, memory_order_release);
    ws__leave(self);
    return 0;
}
