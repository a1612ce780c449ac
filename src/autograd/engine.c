/* The backward engine: discovery of the nodes reachable from the root with
 * dependency counts, then execution. A graph with parallelism among its
 * interior nodes, or any graph in deterministic mode, runs on several
 * threads (engine_par.c). Otherwise it runs here on the calling thread in
 * PyTorch's order (ready nodes latest created first, AccumulateGrad first of
 * all), with input buffers, tensor hooks, retain_grad, AccumulateGrad and
 * the release of saved tensors.
 *
 * Per-backward state lives in a task owned by the calling thread (engine.h);
 * nested backward calls (from a hook) get a task of their own. */
#include "autograd/engine.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>

#define AG__MAX_NESTING 8

static _Thread_local ag__task ag__tasks[AG__MAX_NESTING];
static _Thread_local int ag__depth;

/* A thread's tasks are freed when it exits: the key's destructor runs while
 * its thread-local storage is still there. */
static pthread_key_t ag__task_key;
static pthread_once_t ag__task_key_once = PTHREAD_ONCE_INIT;

#define AG__FREE_ARR(p, n)                                                                                             \
    do {                                                                                                               \
        ag__chunk_free((p), (n) * sizeof *(p));                                                                        \
        (p) = NULL;                                                                                                    \
    } while (0)

static void ag__task_free(ag__task *t) {
    AG__FREE_ARR(t->nodes, t->cap);
    AG__FREE_ARR(t->deps, t->cap);
    AG__FREE_ARR(t->bufs, t->cap);
    AG__FREE_ARR(t->heap, t->cap);
    AG__FREE_ARR(t->edge_off, t->cap);
    AG__FREE_ARR(t->edges, t->ecap);
    AG__FREE_ARR(t->hkeys, t->hcap);
    AG__FREE_ARR(t->hvals, t->hcap);
    AG__FREE_ARR(t->leafidx, t->pcap);
    AG__FREE_ARR(t->leaves, t->pcap);
    AG__FREE_ARR(t->wsn, t->pcap);
    AG__FREE_ARR(t->locks, t->pcap);
    AG__FREE_ARR(t->in_off, t->pcap);
    AG__FREE_ARR(t->topo, t->pcap);
    AG__FREE_ARR(t->succ, t->pecap);
    AG__FREE_ARR(t->contrib, t->pecap);
    AG__FREE_ARR(t->in_edges, t->pecap);
    AG__FREE_ARR(t->in_src, t->pecap);
    for (size_t s = 0; s < t->nparts_cap; s++) {
        if (t->slots[s]) {
            ag_ctx_free(t->slots[s]->scratch);
            ag__chunk_free(t->slots[s], sizeof *t->slots[s]);
        }
    }
    AG__FREE_ARR(t->slots, t->nparts_cap);
    AG__FREE_ARR(t->slotmap, t->nparts_cap);
    ag_ctx_free(t->scratch);
    memset(t, 0, sizeof *t);
}

static void ag__tasks_free(void *unused) {
    (void)unused;
    for (int d = 0; d < AG__MAX_NESTING; d++)
        ag__task_free(&ag__tasks[d]);
}

static void ag__task_key_init(void) { pthread_key_create(&ag__task_key, ag__tasks_free); }

/* ---- Growable arrays (counted heap calls) ------------------------------------ */

void *ag__grow(void *old, size_t old_bytes, size_t new_bytes) {
    void *p = ag__chunk_alloc(new_bytes);
    if (!p)
        return NULL;
    if (old) {
        memcpy(p, old, old_bytes);
        ag__chunk_free(old, old_bytes);
    }
    return p;
}

static int ag__task_reserve(ag__task *t, size_t need) {
    if (need <= t->cap)
        return 0;
    size_t cap = t->cap ? t->cap : 64;
    while (cap < need)
        cap *= 2;
    void *nodes = ag__grow(t->nodes, t->cap * sizeof *t->nodes, cap * sizeof *t->nodes);
    if (!nodes)
        return ag__error(AG_ENOMEM, "out of memory in backward");
    t->nodes = nodes;
    void *deps = ag__grow(t->deps, t->cap * sizeof *t->deps, cap * sizeof *t->deps);
    if (!deps)
        return ag__error(AG_ENOMEM, "out of memory in backward");
    t->deps = deps;
    void *bufs = ag__grow(t->bufs, t->cap * sizeof *t->bufs, cap * sizeof *t->bufs);
    if (!bufs)
        return ag__error(AG_ENOMEM, "out of memory in backward");
    t->bufs = bufs;
    void *heap = ag__grow(t->heap, t->cap * sizeof *t->heap, cap * sizeof *t->heap);
    if (!heap)
        return ag__error(AG_ENOMEM, "out of memory in backward");
    t->heap = heap;
    void *off = ag__grow(t->edge_off, t->cap * sizeof *t->edge_off, cap * sizeof *t->edge_off);
    if (!off)
        return ag__error(AG_ENOMEM, "out of memory in backward");
    t->edge_off = off;
    t->cap = cap;
    return 0;
}

static int ag__task_reserve_edges(ag__task *t, size_t need) {
    if (need <= t->ecap)
        return 0;
    size_t cap = t->ecap ? t->ecap : 128;
    while (cap < need)
        cap *= 2;
    void *e = ag__grow(t->edges, t->ecap * sizeof *t->edges, cap * sizeof *t->edges);
    if (!e)
        return ag__error(AG_ENOMEM, "out of memory in backward");
    t->edges = e;
    t->ecap = cap;
    return 0;
}

static inline size_t ag__hash_ptr(const void *p, size_t mask) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x & mask;
}

static int ag__hash_rebuild(ag__task *t, size_t hcap) {
    ag_node **keys = ag__chunk_alloc(hcap * sizeof *keys);
    int32_t *vals = ag__chunk_alloc(hcap * sizeof *vals);
    if (!keys || !vals) {
        ag__chunk_free(keys, hcap * sizeof *keys);
        ag__chunk_free(vals, hcap * sizeof *vals);
        return ag__error(AG_ENOMEM, "out of memory in backward");
    }
    ag__chunk_free(t->hkeys, t->hcap * sizeof *t->hkeys);
    ag__chunk_free(t->hvals, t->hcap * sizeof *t->hvals);
    memset(keys, 0, hcap * sizeof *keys);
    t->hkeys = keys;
    t->hvals = vals;
    t->hcap = hcap;
    size_t mask = hcap - 1;
    for (size_t i = 0; i < t->n; i++) {
        size_t h = ag__hash_ptr(t->nodes[i], mask);
        while (keys[h])
            h = (h + 1) & mask;
        keys[h] = t->nodes[i];
        vals[h] = (int32_t)i;
    }
    return 0;
}

/* Index of node, adding it (deps 0, no buffer) when new; *is_new tells. */
static int32_t ag__task_index(ag__task *t, ag_node *node, bool *is_new) {
    if (AG__UNLIKELY((t->n + 1) * 2 > t->hcap)) {
        if (ag__hash_rebuild(t, t->hcap ? t->hcap * 2 : 256))
            return -1;
    }
    size_t mask = t->hcap - 1, h = ag__hash_ptr(node, mask);
    while (t->hkeys[h]) {
        if (t->hkeys[h] == node) {
            *is_new = false;
            return t->hvals[h];
        }
        h = (h + 1) & mask;
    }
    if (ag__task_reserve(t, t->n + 1))
        return -1;
    int32_t i = (int32_t)t->n++;
    t->hkeys[h] = node;
    t->hvals[h] = i;
    t->nodes[i] = node;
    t->deps[i] = 0;
    t->bufs[i] = NULL;
    *is_new = true;
    return i;
}

static void ag__task_clear(ag__task *t) {
    /* Only the used slots of the hash need clearing. */
    if (t->hkeys) {
        size_t mask = t->hcap - 1;
        for (size_t i = 0; i < t->n; i++) {
            size_t h = ag__hash_ptr(t->nodes[i], mask);
            while (t->hkeys[h] != t->nodes[i])
                h = (h + 1) & mask;
            t->hkeys[h] = NULL;
        }
        /* Linear probing needs no tombstones when every key goes. */
    }
    t->n = 0;
    t->nedges = 0;
    t->heap_n = 0;
    if (t->scratch)
        ag_ctx_reset(t->scratch);
}

/* ---- Ready heap: latest-created first (PyTorch's ReadyQueue order) ------------ */

static inline bool ag__before(const ag__task *t, int32_t a, int32_t b) { return t->nodes[a]->seq > t->nodes[b]->seq; }

void ag__heap_push(ag__task *t, int32_t i) {
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

int32_t ag__heap_pop(ag__task *t) {
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

/* ---- Leaf accumulation ------------------------------------------------------------ */

/* Striped locks guard .grad of leaves that several backward calls (on
 * different application threads) may accumulate into at once. */
#define AG__GRAD_LOCKS 64
static pthread_mutex_t ag__grad_locks[AG__GRAD_LOCKS] = {
#define AG__L4                                                                                                         \
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER
#define AG__L16 AG__L4, AG__L4, AG__L4, AG__L4
    AG__L16, AG__L16, AG__L16, AG__L16
#undef AG__L16
#undef AG__L4
};

static pthread_mutex_t *ag__grad_lock(const ag_tensor *t) {
    return &ag__grad_locks[ag__hash_ptr(t, AG__GRAD_LOCKS - 1)];
}

void ag__add_range(ag_tensor *dst, const ag_tensor *src, int64_t lo, int64_t hi) {
    if (dst->dtype == AG_FLOAT32) {
        float *restrict d = dst->data;
        const float *restrict s = src->data;
#pragma omp simd
        for (int64_t i = lo; i < hi; i++)
            d[i] += s[i];
    } else {
        double *restrict d = dst->data;
        const double *restrict s = src->data;
#pragma omp simd
        for (int64_t i = lo; i < hi; i++)
            d[i] += s[i];
    }
}

void ag__add_into(ag_tensor *dst, const ag_tensor *src) { ag__add_range(dst, src, 0, dst->numel); }

/* grad (shape and dtype of `owner`) added into owner->grad, which is created
 * in owner's context when absent. */
int ag__accumulate(ag_tensor *owner, const ag_tensor *grad) {
    pthread_mutex_t *lock = ag__grad_lock(owner);
    pthread_mutex_lock(lock);
    int rc = 0;
    if (!owner->grad) {
        ag_tensor *g = ag__tensor_new_shared(owner->ctx, owner->dtype, owner->ndim, owner->shape);
        if (!g)
            rc = AG_ENOMEM;
        else {
            memcpy(g->data, grad->data, g->storage->nbytes);
            owner->grad = g;
        }
    } else {
        ag__add_into(owner->grad, grad);
        ag__bump_version(owner->grad);
    }
    pthread_mutex_unlock(lock);
    return rc;
}

/* ---- Running one node ----------------------------------------------------------------- */

static ag_tensor *ag__zeros_in(ag_ctx *scratch, const ag_tensor *like) {
    return ag__tensor_zeros_like_fast(scratch, like);
}

/* Tensor hooks in registration order; a hook's result replaces the gradient. */
int ag__run_hooks(ag_tensor *owner, ag_tensor **grad) {
    for (ag__hook *h = owner->hooks; h; h = h->next) {
        ag_tensor *r = h->fn(*grad, h->user_data);
        if (!r)
            continue;
        if (r->dtype != (*grad)->dtype)
            return ag__error(AG_EDTYPE, "hook 'hook' has changed the type of value (was %s got %s)",
                             ag__dtype_torch_name((*grad)->dtype), ag__dtype_torch_name(r->dtype));
        if (!ag__same_shape(r, *grad)) /* PyTorch 1.13 names no sizes here */
            return ag__error(AG_ESHAPE, "hook 'hook' has changed the size of value");
        *grad = r;
    }
    return 0;
}

static int ag__run_node(ag__task *t, int32_t idx, bool keep_graph) {
    ag_node *node = t->nodes[idx];
    ag_tensor *grad = t->bufs[idx];
    ag_tensor *owner = node->out;
    int rc;

    if ((rc = ag__node_check_released(node)))
        return rc;
    if (owner->hooks && (rc = ag__run_hooks(owner, &grad)))
        return rc;
    if (node->kind == &ag__accumulate_grad_kind)
        return ag__accumulate(owner, grad);
    if (owner->retains_grad && (rc = ag__accumulate(owner, grad)))
        return rc;

    /* Edges to their targets' input buffers, created zeroed on first use. */
    ag_tensor *dinp_small[4];
    ag_tensor **dinp = dinp_small;
    const int32_t *tgt = t->edges + t->edge_off[idx];
    if (node->num_next > 4 && !(dinp = ag__ctx_alloc(t->scratch, (size_t)node->num_next * sizeof *dinp)))
        return AG_ENOMEM;
    for (int i = 0; i < node->num_next; i++) {
        int32_t j = tgt[i];
        dinp[i] = NULL;
        if (j < 0)
            continue;
        if (!t->bufs[j] && !(t->bufs[j] = ag__zeros_in(t->scratch, t->nodes[j]->out)))
            return AG_ENOMEM;
        dinp[i] = t->bufs[j];
    }
    rc = node->kind->backward(node, grad, dinp, t->scratch);
    if (rc)
        return rc < 0 ? rc : AG_EINVAL;
    if (!keep_graph)
        ag__node_release(node);
    /* Deliver: a target whose last producer just ran becomes ready. */
    for (int i = 0; i < node->num_next; i++)
        if (tgt[i] >= 0 && --t->deps[tgt[i]] == 0)
            ag__heap_push(t, tgt[i]);
    return 0;
}

/* ---- Discovery ------------------------------------------------------------------------ */

/* Counts, for every node reachable from root, its incoming edges from
 * reachable nodes. Uses the heap array as the DFS stack (it is empty then). */
static int ag__discover(ag__task *t, ag_node *root) {
    bool is_new;
    if (ag__task_index(t, root, &is_new) < 0)
        return ag_last_status();
    size_t sp = 0;
    t->heap[sp++] = 0;
    while (sp > 0) {
        int32_t i_node = t->heap[--sp];
        ag_node *node = t->nodes[i_node];
        if (ag__task_reserve_edges(t, t->nedges + (size_t)node->num_next))
            return ag_last_status();
        t->edge_off[i_node] = (int32_t)t->nedges;
        int32_t *edges = t->edges + t->nedges;
        t->nedges += (size_t)node->num_next;
        for (int i = 0; i < node->num_next; i++) {
            ag_node *next = node->next[i];
            edges[i] = -1;
            if (!next)
                continue;
            int32_t j = ag__task_index(t, next, &is_new);
            if (j < 0)
                return ag_last_status();
            edges[i] = j;
            t->deps[j]++;
            if (is_new)
                t->heap[sp++] = j; /* heap has cap >= n, and sp <= n */
        }
    }
    return 0;
}

/* ---- ag_backward -------------------------------------------------------------------------- */

static int ag__seed(ag__task *t, ag_tensor *root, const ag_tensor *grad, ag_tensor **out) {
    ag_tensor *g = ag__tensor_new(t->scratch, root->dtype, root->ndim, root->shape);
    if (!g)
        return AG_ENOMEM;
    if (!grad) {
        for (int64_t i = 0; i < g->numel; i++)
            ag__store(g, i, 1.0);
    } else if (grad->dtype == g->dtype) {
        memcpy(g->data, grad->data, g->storage->nbytes);
    } else { /* PyTorch casts a gradient of another float dtype */
        for (int64_t i = 0; i < g->numel; i++)
            ag__store(g, i, ag__load(grad, i));
    }
    *out = g;
    return 0;
}

static int ag__check_root(ag_tensor *root, const ag_tensor *grad, const ag_backward_opts *opts) {
    if (opts && opts->create_graph)
        return ag__error(AG_EUNSUPPORTED, "create_graph=True is not supported yet");
    if (opts && opts->num_threads < 0)
        return ag__error(AG_EINVAL, "num_threads must be >= 0 (0: the default), got %d", opts->num_threads);
    if (!root->requires_grad)
        return ag__error(AG_ESTATE, "element 0 of tensors does not require grad and does not have a grad_fn");
    if (!grad) {
        if (root->numel != 1)
            return ag__error(AG_ESTATE, "grad can be implicitly created only for scalar outputs");
        return 0;
    }
    if (!ag__same_shape(grad, root)) {
        char gs[160], rs[160];
        ag__shape_str(gs, sizeof gs, grad->ndim, grad->shape);
        ag__shape_str(rs, sizeof rs, root->ndim, root->shape);
        return ag__error(AG_ESHAPE,
                         "Mismatch in shape: grad_output[0] has a shape of torch.Size(%s) and output[0] has "
                         "a shape of torch.Size(%s).",
                         gs, rs);
    }
    return 0;
}

int ag_backward(ag_tensor *root, const ag_tensor *grad, const ag_backward_opts *opts) {
    if (!root) {
        ag__null_arg("ag_backward");
        return ag_last_status() ? ag_last_status() : AG_EINVAL;
    }
    int rc = ag__check_root(root, grad, opts);
    if (rc)
        return rc;
    ag_node *root_node = root->grad_fn ? root->grad_fn : ag__grad_accumulator(root);
    if (!root_node)
        return AG_ENOMEM;
    if (ag__depth >= AG__MAX_NESTING)
        return ag__error(AG_ESTATE, "backward nested more than %d deep (backward called from hooks)", AG__MAX_NESTING);
    ag__task *t = &ag__tasks[ag__depth++];
    int nthreads = opts && opts->num_threads > 0 ? opts->num_threads : ag_get_num_threads();
    int prev_threads = ag__backward_threads;
    ag__backward_threads = nthreads;
    bool keep_graph = opts && opts->retain_graph;
    bool prev_grad_mode = ag_set_grad_enabled(false);

    if (!t->scratch) { /* this thread's first backward at this depth */
        pthread_once(&ag__task_key_once, ag__task_key_init);
        pthread_setspecific(ag__task_key, (void *)1);
    }
    if (!t->scratch && !(t->scratch = ag_ctx_new())) {
        rc = AG_ENOMEM;
        goto out;
    }
    /* A thread that runs the same graph again (a training loop) wakes the
     * workers now, so they are up when the first nodes are pushed. */
    bool woke = t->was_parallel && nthreads > 1 && !ag__in_worker();
    if (woke)
        ag__wake_workers(nthreads);
    t->was_parallel = false;
    /* Both arrays exist before discovery, also for a graph without edges (a
     * leaf as the root), so no offset is ever taken from NULL. */
    if ((rc = ag__task_reserve(t, 64)) || (rc = ag__task_reserve_edges(t, 1)) || (rc = ag__discover(t, root_node)))
        goto out;
    if ((rc = ag__seed(t, root, grad, &t->bufs[0])))
        goto out;
    t->det = ag_is_deterministic();
    t->keep_graph = keep_graph;
    /* Whether a graph is worth threads depends on the graph alone, so in
     * deterministic mode a graph takes the edge-ordered path at every
     * thread count (on this thread when there is one, or inside a worker),
     * and one not worth threads runs here in PyTorch's fixed order. */
    if ((nthreads > 1 || t->det) && !ag__is_accumulate(root_node) && ag__graph_worth_parallel(t)) {
        if (nthreads > 1 && !ag__in_worker()) {
            if (!woke)
                ag__wake_workers(nthreads);
            t->was_parallel = true;
            rc = ag__par_backward(t, nthreads, (int)ag_get_executor());
        } else if (t->det)
            rc = ag__par_backward(t, 1, AG__EXECUTOR_SERIAL);
        else
            goto serial;
        goto out;
    }
serial:
    ag__heap_push(t, 0);
    while (t->heap_n > 0) {
        int32_t idx = ag__heap_pop(t);
        if (AG__UNLIKELY(atomic_load_explicit(&ag__tracing, memory_order_relaxed))) {
            uint64_t t0 = ag__now_ns();
            rc = ag__run_node(t, idx, keep_graph);
            ag__trace_record(t->nodes[idx]->kind->name, t0, ag__now_ns());
        } else {
            rc = ag__run_node(t, idx, keep_graph);
        }
        if (rc)
            goto out;
    }
out:
    ag__task_clear(t);
    ag__depth--;
    ag__backward_threads = prev_threads;
    ag_set_grad_enabled(prev_grad_mode);
    return rc;
}
