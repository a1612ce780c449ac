/* The work-stealing executor: the graph's interior nodes become a DAG of
 * dependency-counted nodes on the process's pool (sched/), run by at most
 * num_threads threads (ws_run_capped), the caller included; each thread
 * runs nodes on the slot of its seat. Leaves are finished when the graph
 * is done, in parallel when there are many, then the commit. */
#include "autograd/engine.h"

static void ag__ws_node_fn(ws_task *wt) {
    ag__task *t = wt->arg;
    if (atomic_load_explicit(&t->err, memory_order_relaxed))
        return; /* the backward failed: the rest only drains */
    int32_t idx = (int32_t)(ws_node_of(wt) - t->wsn);
    int seat = ws_seat_index();
    if (AG__UNLIKELY(seat < 0 || seat >= t->nparts)) { /* the capped run guarantees a seat */
        ag__fail(t, ag__error(AG_ESTATE, "backward: a node ran on a thread without a seat in its run"));
        return;
    }
    bool prev = ag_set_grad_enabled(false);
    int rc = ag__run_node(t, idx, t->slots[seat]); /* the pool's trace records the task, by its node's name */
    if (rc)
        ag__fail(t, rc);
    ag_set_grad_enabled(prev);
}

static void ag__commit_chunks(void *task, int64_t lo, int64_t hi) { ag__commit_range(task, lo, hi); }

/* Inside the capped run, on the calling thread (seat 0). */
static void ag__ws_backward(ws_task *wt) {
    ag__task *t = wt->arg;
    ws_node *root = &t->wsn[0];
    int rc = ws_dag_run(&t->dag, &root, 1);
    if (rc) {
        ag__fail(t, ag__ws_error(rc, "backward could not run on the thread pool"));
        return;
    }
    if (atomic_load_explicit(&t->err, memory_order_relaxed))
        return;
    if (t->nleaves >= AG__PAR_LEAVES)
        ws_parallel_for(NULL, 0, (int64_t)t->nleaves, AG__LEAF_GRAIN, ag__finish_leaves, t);
    else
        ag__finish_leaves(t, 0, (int64_t)t->nleaves);
    if (atomic_load_explicit(&t->err, memory_order_relaxed))
        return;
    if ((rc = ag__commit_prepare(t))) {
        ag__fail(t, rc);
        return;
    }
    int64_t n = atomic_load_explicit(&t->ncommit, memory_order_relaxed);
    if (n >= AG__PAR_LEAVES)
        ws_parallel_for(NULL, 0, n, AG__LEAF_GRAIN, ag__commit_chunks, t);
    else
        ag__commit_range(t, 0, n);
}

int ag__exec_ws(ag__task *t, int nthreads) {
    int wrc = 0;
    ws_pool *pool = ag__pool_get(nthreads, &wrc);
    if (!pool)
        return ag__ws_error(wrc, "cannot start the worker threads of a backward");
    int rc;
    ws_dag_init(&t->dag, pool);
    for (size_t i = 0; i < t->n; i++) {
        if (t->leafidx[i] >= 0 || (i > 0 && t->deps[i] == 0)) /* a leaf, or cut off by pruning */
            continue;
        ag_node *node = t->nodes[i];
        ws_node *w = &t->wsn[i];
        ws_node_init(&t->dag, w, ag__ws_node_fn, t, t->deps[i]);
        w->task.name = node->kind->name;
        /* Successors latest created first: the thread that finishes this
         * node keeps the first that is ready and pushes the others, so it
         * goes down a branch as PyTorch's order would, and what it leaves
         * for thieves is the rest of the graph, not hundreds of branches'
         * gradients at once (memory stays near the one-thread run's). */
        ws_node **succ = t->succ + t->edge_off[i];
        const int32_t *tgt = t->edges + t->edge_off[i];
        int ns = 0;
        for (int k = 0; k < node->num_next; k++) {
            int32_t j = tgt[k];
            if (j < 0 || t->leafidx[j] >= 0)
                continue;
            int at = ns++;
            while (at > 0 && t->nodes[succ[at - 1] - t->wsn]->seq < t->nodes[j]->seq) {
                succ[at] = succ[at - 1];
                at--;
            }
            succ[at] = &t->wsn[j];
        }
        w->succ = succ;
        w->nsucc = ns;
    }
    if ((rc = ws_run_capped(pool, nthreads, ag__ws_backward, t)))
        return ag__ws_error(rc, "backward could not enter the thread pool");
    return atomic_load_explicit(&t->err, memory_order_relaxed);
}
