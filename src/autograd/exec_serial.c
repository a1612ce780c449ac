/* The serial executor: the calling thread is the one participant and runs
 * ready nodes in PyTorch's order, latest created first, with AccumulateGrad
 * (a leaf whose last producer has run) before anything else, so hooks run
 * in the order PyTorch runs them. */
#include "autograd/engine.h"

static inline bool ag__before(const ag__task *t, int32_t a, int32_t b) { return t->nodes[a]->seq > t->nodes[b]->seq; }

static void ag__heap_push(ag__task *t, int32_t i) {
    size_t k = t->heap_n++;
    while (k > 0) {
        size_t parent = (k - 1) / 2;
        if (!ag__before(t, i, t->heap[parent]))
            break;
        t->heap[k] = t->heap[parent];
        k = parent;
    }
    t->heap[k] = i;
}

static int32_t ag__heap_pop(ag__task *t) {
    int32_t top = t->heap[0];
    int32_t last = t->heap[--t->heap_n];
    size_t k = 0, n = t->heap_n;
    for (;;) {
        size_t c = 2 * k + 1;
        if (c >= n)
            break;
        if (c + 1 < n && ag__before(t, t->heap[c + 1], t->heap[c]))
            c++;
        if (!ag__before(t, t->heap[c], last))
            break;
        t->heap[k] = t->heap[c];
        k = c;
    }
    if (n > 0)
        t->heap[k] = last;
    return top;
}

int ag__exec_serial(ag__task *t) {
    int rc = 0;
    ag__slot *sl = t->slots[0];
    t->shared = false;
    ag__heap_push(t, 0);
    while (t->heap_n > 0) {
        int32_t i = ag__heap_pop(t);
        if (t->leafidx[i] >= 0) {
            if ((rc = ag__finish_leaf(t, t->leafidx[i], sl)))
                break;
            continue;
        }
        if (AG__UNLIKELY(atomic_load_explicit(&ag__tracing, memory_order_relaxed))) {
            uint64_t t0 = ag__now_ns();
            rc = ag__run_node(t, i, sl);
            ag__trace_record(t->nodes[i]->kind->name, t0, ag__now_ns());
        } else {
            rc = ag__run_node(t, i, sl);
        }
        if (rc)
            break;
        /* A target whose last producer just ran becomes ready. */
        const int32_t *tgt = t->edges + t->edge_off[i];
        for (int k = 0; k < t->nodes[i]->num_next; k++)
            if (tgt[k] >= 0 && --t->deps[tgt[k]] == 0)
                ag__heap_push(t, tgt[k]);
    }
    t->heap_n = 0;
    if (!rc && !(rc = ag__commit_prepare(t)))
        ag__commit_range(t, 0, atomic_load_explicit(&t->ncommit, memory_order_relaxed));
    if (rc)
        ag__fail(t, rc);
    return rc;
}
