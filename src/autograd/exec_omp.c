/* The OpenMP executor, for comparison with the pool: one OpenMP task per
 * interior node, depending on a token per node (its own, out) and on its
 * producers' tokens (in), in a team of num_threads threads; each runs
 * nodes on the slot of its OpenMP thread number. Leaves and the commit
 * follow on the calling thread. */
#include "autograd/engine.h"

#ifdef AG_HAVE_OPENMP
#include <omp.h>

/* Interior nodes in an order where every producer comes before its
 * consumers (Kahn's algorithm over the dependency counts). */
static size_t ag__topo_order(ag__task *t) {
    int32_t *left = t->heap; /* free after discovery; cap >= n */
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < t->n; i++)
        left[i] = t->deps[i];
    t->topo[tail++] = 0;
    while (head < tail) {
        int32_t i = t->topo[head++];
        const int32_t *tgt = t->edges + t->edge_off[i];
        for (int k = 0; k < t->nodes[i]->num_next; k++) {
            int32_t j = tgt[k];
            if (j >= 0 && t->leafidx[j] < 0 && --left[j] == 0)
                t->topo[tail++] = j;
        }
    }
    return tail;
}

static void ag__omp_node(ag__task *t, int32_t i) {
    if (atomic_load_explicit(&t->err, memory_order_relaxed))
        return;
    bool prev = ag_set_grad_enabled(false);
    ag__run_node_traced(t, i, t->slots[omp_get_thread_num()]);
    ag_set_grad_enabled(prev);
}

int ag__exec_omp(ag__task *t, int nthreads) {
    int rc;
    size_t ntopo = ag__topo_order(t);
    int32_t *tok = t->deps; /* any distinct address per node will do */
    (void)tok;
#pragma omp parallel num_threads(nthreads)
#pragma omp single
    for (size_t k = 0; k < ntopo; k++) {
        int32_t i = t->topo[k];
        const int32_t *src = t->in_src + t->in_off[i];
        int32_t npred = t->in_off[i + 1] - t->in_off[i];
        (void)src;
        (void)npred;
#pragma omp task firstprivate(i) depend(iterator(m = 0 : npred), in : tok[src[m]]) depend(out : tok[i])
        ag__omp_node(t, i);
    }
    if (!atomic_load_explicit(&t->err, memory_order_relaxed))
        ag__finish_leaves(t, 0, (int64_t)t->nleaves);
    if (!atomic_load_explicit(&t->err, memory_order_relaxed)) {
        if ((rc = ag__commit_prepare(t)))
            ag__fail(t, rc);
        else
            ag__commit_range(t, 0, atomic_load_explicit(&t->ncommit, memory_order_relaxed));
    }
    return atomic_load_explicit(&t->err, memory_order_relaxed);
}
#else
int ag__exec_omp(ag__task *t, int nthreads) { return ag__exec_ws(t, nthreads); }
#endif
