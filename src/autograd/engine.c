/* ag_backward: checks the root, discovers the nodes reachable from it with
 * their dependency counts, picks an executor and the number of
 * participants, sizes what they may need, seeds the root and runs the
 * graph (the executor ends with the commit), then gives every buffer
 * back at once.
 *
 * A graph with parallelism among its interior nodes and enough work runs
 * on the pool (or OpenMP) with num_threads participants; any other graph
 * runs on the calling thread alone, in PyTorch's order. Both run every
 * node through the same runner (runner.c), so deterministic mode gives
 * the same bits either way. */
#include "autograd/engine.h"
#include "autograd/nodeext.h"

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
    AG__FREE_ARR(t->leafidx, t->cap);
    AG__FREE_ARR(t->leaves, t->cap);
    AG__FREE_ARR(t->commit, t->cap);
    AG__FREE_ARR(t->fresh, t->cap);
    AG__FREE_ARR(t->nflags, t->cap);
    AG__FREE_ARR(t->aux, t->cap);
    ag__chunk_free(t->groot_node, t->groot_bytes);
    AG__FREE_ARR(t->edges, t->ecap);
    AG__FREE_ARR(t->hkeys, t->hcap);
    AG__FREE_ARR(t->hvals, t->hcap);
    AG__FREE_ARR(t->wsn, t->pcap);
    AG__FREE_ARR(t->locks, t->pcap);
    AG__FREE_ARR(t->in_off, t->pcap);
    AG__FREE_ARR(t->topo, t->pcap);
    AG__FREE_ARR(t->succ, t->pecap);
    AG__FREE_ARR(t->contrib, t->pecap);
    AG__FREE_ARR(t->in_edges, t->pecap);
    AG__FREE_ARR(t->in_src, t->pecap);
    for (int s = 0; s < t->nslots; s++) {
        ag_ctx_free(t->slots[s]->tmp);
        ag_ctx_free(t->slots[s]->gctx);
        ag__chunk_free(t->slots[s], sizeof *t->slots[s]);
    }
    ag__chunk_free(t->slots, (size_t)t->nslots * sizeof *t->slots);
    ag__scratch_free(&t->scratch);
    pthread_mutex_destroy(&t->scratch.lock);
    memset(t, 0, sizeof *t);
}

static void ag__tasks_free(void *unused) {
    (void)unused;
    for (int d = 0; d < AG__MAX_NESTING; d++)
        if (ag__tasks[d].inited)
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

typedef struct {
    void **arr;
    size_t elem;
} ag__arr;

/* Grows every array of the set to hold `need` elements (same capacity). */
static int ag__grow_set(size_t *cap, size_t need, ag__arr *set, int nset, size_t first) {
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : first;
    while (c < need)
        c *= 2;
    for (int i = 0; i < nset; i++) {
        void *p = ag__grow(*set[i].arr, *cap * set[i].elem, c * set[i].elem);
        if (!p)
            return ag__error(AG_ENOMEM, "out of memory in backward");
        *set[i].arr = p;
    }
    *cap = c;
    return 0;
}

static int ag__task_reserve(ag__task *t, size_t need) {
    if (AG__LIKELY(need <= t->cap))
        return 0;
    ag__arr per_node[] = {
        {(void **)&t->nodes, sizeof *t->nodes},       {(void **)&t->deps, sizeof *t->deps},
        {(void **)&t->bufs, sizeof *t->bufs},         {(void **)&t->heap, sizeof *t->heap},
        {(void **)&t->edge_off, sizeof *t->edge_off}, {(void **)&t->leafidx, sizeof *t->leafidx},
        {(void **)&t->leaves, sizeof *t->leaves},     {(void **)&t->commit, sizeof *t->commit},
        {(void **)&t->fresh, sizeof *t->fresh},       {(void **)&t->nflags, sizeof *t->nflags},
        {(void **)&t->aux, sizeof *t->aux},
    };
    return ag__grow_set(&t->cap, need, per_node, (int)(sizeof per_node / sizeof *per_node), 64);
}

static int ag__task_reserve_edges(ag__task *t, size_t need) {
    if (AG__LIKELY(need <= t->ecap))
        return 0;
    ag__arr e[] = {{(void **)&t->edges, sizeof *t->edges}};
    return ag__grow_set(&t->ecap, need, e, 1, 128);
}

int ag__reserve_shared(ag__task *t) {
    ag__arr per_node[] = {
        {(void **)&t->wsn, sizeof *t->wsn},
        {(void **)&t->locks, sizeof *t->locks},
        {(void **)&t->in_off, sizeof *t->in_off},
        {(void **)&t->topo, sizeof *t->topo},
    };
    ag__arr per_edge[] = {
        {(void **)&t->succ, sizeof *t->succ},
        {(void **)&t->contrib, sizeof *t->contrib},
        {(void **)&t->in_edges, sizeof *t->in_edges},
        {(void **)&t->in_src, sizeof *t->in_src},
    };
    if (ag__grow_set(&t->pcap, t->n + 1, per_node, 4, 64) || ag__grow_set(&t->pecap, t->nedges + 1, per_edge, 4, 64))
        return AG_ENOMEM;
    return 0;
}

/* ---- Node index: open addressing on the node's address ------------------------- */

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
    t->leafidx[i] = -1;
    if (ag__is_accumulate(node)) {
        t->leafidx[i] = (int32_t)t->nleaves;
        t->leaves[t->nleaves++] = i;
    }
    *is_new = true;
    return i;
}

/* Index of node, or -1 when the backward does not reach it. */
static int32_t ag__task_find(const ag__task *t, const ag_node *node) {
    if (!t->hkeys)
        return -1;
    size_t mask = t->hcap - 1, h = ag__hash_ptr(node, mask);
    while (t->hkeys[h]) {
        if (t->hkeys[h] == node)
            return t->hvals[h];
        h = (h + 1) & mask;
    }
    return -1;
}

/* Counts, for every node reachable from root, its incoming edges from
 * reachable nodes, and numbers the leaves. Uses the heap array as the DFS
 * stack (it is empty then). */
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
        if (node->num_next > t->max_next)
            t->max_next = node->num_next;
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
    t->nleaves = 0;
    t->max_next = 0;
    t->heap_n = 0;
    t->special = t->graph = t->anomaly = t->groot = false;
    t->accumulate = true;
    t->gctx = NULL;
    atomic_store_explicit(&t->ncommit, 0, memory_order_relaxed);
    atomic_store_explicit(&t->err, 0, memory_order_relaxed);
    /* Everything this backward took goes back at once. */
    for (int s = 0; s < t->nparts; s++) {
        ag__slot *sl = t->slots[s];
        memset(sl->bins, 0, sizeof sl->bins);
        sl->leafbuf = NULL;
        sl->dinp = NULL;
        sl->sp_a = sl->sp_b = NULL;
        sl->sp_need = NULL;
        sl->fresh = NULL;
        if (ag_ctx_bytes(sl->tmp))
            ag_ctx_reset(sl->tmp);
    }
    t->nparts = 0;
    ag__scratch_reset(&t->scratch);
}

/* ---- The plan -------------------------------------------------------------------- */

/* -1: not read yet from AG_PAR_MIN_WORK. */
_Atomic int64_t ag__par_min_work = -1;

int64_t ag__min_work(void) {
    int64_t w = atomic_load_explicit(&ag__par_min_work, memory_order_relaxed);
    if (AG__LIKELY(w >= 0))
        return w;
    w = AG__PAR_MIN_WORK;
    const char *env = getenv("AG_PAR_MIN_WORK");
    if (env && *env) {
        char *end;
        long long v = strtoll(env, &end, 10);
        if (*end == '\0' && v >= 0)
            w = v;
    }
    int64_t expected = -1;
    atomic_compare_exchange_strong_explicit(&ag__par_min_work, &expected, w, memory_order_relaxed,
                                            memory_order_relaxed);
    return atomic_load_explicit(&ag__par_min_work, memory_order_relaxed);
}

/* True when some node hands gradients to two different interior nodes
 * (the graph has parallelism among its interior nodes) and its nodes'
 * outputs hold at least ag__min_work() elements in all. A property of the
 * graph alone. */
static bool ag__graph_worth_parallel(const ag__task *t) {
    bool forks = false;
    int64_t work = 0;
    for (size_t i = 0; i < t->n; i++) {
        const int32_t *tgt = t->edges + t->edge_off[i];
        int32_t first = -1;
        if (i > 0 && t->deps[i] == 0)
            continue; /* cut off by grad()'s or backward(inputs=)'s pruning */
        work += t->nodes[i]->out->numel;
        for (int k = 0; k < t->nodes[i]->num_next && !forks; k++) {
            int32_t j = tgt[k];
            if (j < 0 || t->leafidx[j] >= 0)
                continue;
            if (first < 0)
                first = j;
            else if (j != first)
                forks = true;
        }
    }
    return forks && work >= ag__min_work();
}

static inline size_t ag__block(const ag_tensor *like) { return (ag__tensor_block_bytes(like) + 63) & ~(size_t)63; }

/* What nparts participants could carve from the scratch in any schedule,
 * were nothing ever given back: a buffer per edge (per edge into a leaf
 * in deterministic mode; else one share per participant that can feed
 * it), each participant's arrays, and the seed. */
static size_t ag__scratch_bound(const ag__task *t, int nparts) {
    size_t b = ag__block(t->nodes[0]->out) + (size_t)nparts * 128;
    for (size_t i = 0; i < t->n; i++) {
        const int32_t *tgt = t->edges + t->edge_off[i];
        for (int k = 0; k < t->nodes[i]->num_next; k++)
            if (tgt[k] >= 0 && (t->det || t->leafidx[tgt[k]] < 0))
                b += ag__block(t->nodes[tgt[k]]->out);
    }
    if (!t->det)
        for (size_t l = 0; l < t->nleaves; l++) {
            int32_t j = t->leaves[l];
            size_t shares = (size_t)(t->deps[j] < nparts ? t->deps[j] : nparts);
            b += shares * ag__block(t->nodes[j]->out);
        }
    b += (size_t)nparts * (t->nleaves * sizeof(ag_tensor *) + (size_t)t->max_next * (sizeof(ag_tensor *) + 1) + 192);
    return b;
}

void ag__build_in_edges(ag__task *t) {
    int32_t *off = t->in_off;
    memset(off, 0, (t->n + 1) * sizeof *off);
    for (size_t e = 0; e < t->nedges; e++)
        if (t->edges[e] >= 0)
            off[t->edges[e] + 1]++;
    for (size_t i = 0; i < t->n; i++)
        off[i + 1] += off[i];
    int32_t *fill = t->topo; /* scratch until the OpenMP executor orders nodes */
    memcpy(fill, off, t->n * sizeof *fill);
    for (size_t i = 0; i < t->n; i++) {
        const int32_t *tgt = t->edges + t->edge_off[i];
        for (int k = 0; k < t->nodes[i]->num_next; k++) {
            int32_t j = tgt[k];
            if (j < 0)
                continue;
            int32_t at = fill[j]++;
            t->in_edges[at] = t->edge_off[i] + k;
            t->in_src[at] = (int32_t)i;
        }
    }
}

/* Arrays for nparts participants (and for deterministic sums), and scratch
 * enough for any schedule of them. */
static int ag__plan(ag__task *t, int nparts, int ex) {
    t->shared = nparts > 1;
    if (!t->shared && !t->det)
        return 0;
    if (ag__reserve_shared(t))
        return AG_ENOMEM;
    if (t->det || ex == AG_EXECUTOR_OPENMP)
        ag__build_in_edges(t);
    if (t->det)
        memset(t->contrib, 0, t->nedges * sizeof *t->contrib);
    for (size_t i = 0; t->shared && i < t->n; i++)
        atomic_flag_clear_explicit(&t->locks[i], memory_order_relaxed);
    if (t->shared)
        ag__scratch_reserve(&t->scratch, ag__scratch_bound(t, nparts)); /* short: overflow chunks */
    return 0;
}

/* ---- ag_backward -------------------------------------------------------------------------- */

/* The root's gradient: ones, or grad (cast to the root's dtype, as
 * PyTorch casts a gradient of another float dtype). */
static int ag__seed(ag__task *t, ag_tensor *root, const ag_tensor *grad) {
    void *blk = ag__scratch_carve(&t->scratch, ag__block(root));
    if (!blk)
        return AG_ENOMEM;
    ag_tensor *g = ag__tensor_zeros_in_block(blk, t->slots[0]->tmp, root);
    if (!grad) {
        for (int64_t i = 0; i < g->numel; i++)
            ag__store(g, i, 1.0);
    } else if (grad->dtype == g->dtype && grad->contiguous) {
        memcpy(g->data, grad->data, g->storage->nbytes);
    } else {
        for (int64_t i = 0; i < g->numel; i++)
            ag__store(g, i, ag__load(grad, i));
    }
    t->bufs[0] = g;
    return 0;
}

/* ---- Checks shared by the entry points --------------------------------------------------- */

static int ag__check_threads(int num_threads) {
    if (num_threads < 0 || num_threads > AG__MAX_THREADS)
        return ag__error(AG_EINVAL, "num_threads must be from 0 (the default) to %d, got %d", AG__MAX_THREADS,
                         num_threads);
    return 0;
}

/* PyTorch's _make_grads for output i: a given gradient must have the
 * output's shape; none is ones, for a one-element output only. */
static int ag__check_grad_output(int i, const ag_tensor *out, const ag_tensor *grad) {
    if (!grad) {
        if (out->requires_grad && out->numel != 1)
            return ag__error(AG_ESTATE, "grad can be implicitly created only for scalar outputs");
        return 0;
    }
    if (!ag__same_shape(grad, out)) {
        char gs[160], rs[160];
        ag__shape_str(gs, sizeof gs, grad->ndim, grad->shape);
        ag__shape_str(rs, sizeof rs, out->ndim, out->shape);
        return ag__error(AG_ESHAPE,
                         "Mismatch in shape: grad_output[%d] has a shape of torch.Size(%s) and output[%d] has "
                         "a shape of torch.Size(%s).",
                         i, gs, i, rs);
    }
    return 0;
}

/* Every root (and its gradient) as PyTorch checks them: all the shapes
 * first (_make_grads), then that each root requires grad (run_backward). */
static int ag__check_roots(ag_tensor *const *roots, ag_tensor *const *grads, int n, const char *fn) {
    int rc;
    if (n > 0 && !roots)
        return ag__error(AG_EINVAL, "%s: the array of outputs is NULL", fn);
    for (int i = 0; i < n; i++) {
        if (!roots[i])
            return ag__null_code(fn);
        if (grads && grads[i] && ag__check_alive(grads[i], fn))
            return AG_ESTATE;
        if ((rc = ag__check_grad_output(i, roots[i], grads ? grads[i] : NULL)))
            return rc;
    }
    for (int i = 0; i < n; i++)
        if (!roots[i]->requires_grad)
            return ag__error(AG_ESTATE, "element %d of tensors does not require grad and does not have a grad_fn", i);
    return 0;
}

/* ---- One backward on this thread: its task at the current depth --------------------------- */

static ag__task *ag__task_enter(void) {
    if (ag__depth >= AG__MAX_NESTING) {
        ag__error(AG_ESTATE, "backward nested more than %d deep (backward called from hooks)", AG__MAX_NESTING);
        return NULL;
    }
    ag__task *t = &ag__tasks[ag__depth++];
    if (!t->inited) { /* this thread's first backward at this depth */
        pthread_once(&ag__task_key_once, ag__task_key_init);
        pthread_setspecific(ag__task_key, (void *)1);
        pthread_mutex_init(&t->scratch.lock, NULL);
        t->inited = true;
        t->accumulate = true;
    }
    return t;
}

static void ag__task_leave(ag__task *t, int rc) {
    if (rc && atomic_load_explicit(&t->err, memory_order_relaxed))
        ag__error(rc, "%s", t->errmsg); /* the message of the thread that failed, on this one */
    ag__task_clear(t);
    ag__depth--;
}

/* ---- ag_backward: one root, every leaf ------------------------------------------------- */

static int ag__run(ag__task *t, ag_tensor *root, const ag_tensor *grad, ag_node *root_node, int nthreads) {
    int ex = (int)ag_get_executor();
    bool in_worker = ag__in_worker();
    /* A thread that runs the same graph again (a training loop) wakes the
     * workers now, so they are up when the first nodes are pushed. */
    bool woke = t->was_parallel && nthreads > 1 && !in_worker && ex == AG_EXECUTOR_WS;
    if (woke)
        ag__wake_workers(nthreads);
    t->was_parallel = false;
    t->special = t->anomaly = ag__anomaly_enabled();
    int rc;
    /* Both arrays exist before discovery, also for a graph without edges (a
     * leaf as the root), so no offset is ever taken from NULL. */
    if ((rc = ag__task_reserve(t, 64)) || (rc = ag__task_reserve_edges(t, 1)) || (rc = ag__discover(t, root_node)))
        return rc;
    if (t->special)
        memset(t->nflags, 0, t->n);
    t->det = ag_is_deterministic();
    /* Whether a graph is worth threads depends on the graph alone; inside a
     * worker (backward from a hook) it runs on that thread. */
    int nparts =
        nthreads > 1 && !in_worker && !ag__is_accumulate(root_node) && ag__graph_worth_parallel(t) ? nthreads : 1;
    if ((rc = ag__plan(t, nparts, ex)) || (rc = ag__slots_prepare(t, nparts)) || (rc = ag__seed(t, root, grad)))
        return rc;
    if (nparts == 1)
        return ag__exec_serial(t);
    if (!woke && ex == AG_EXECUTOR_WS)
        ag__wake_workers(nthreads);
    t->was_parallel = true;
    return ex == AG_EXECUTOR_OPENMP ? ag__exec_omp(t, nparts) : ag__exec_ws(t, nparts);
}

/* ---- Several roots, inputs, create_graph ----------------------------------------------------
 * These run from a graph root (node 0): a node of the engine's own whose
 * edges go to the roots and whose backward hands each its seed, as
 * PyTorch's GraphRoot. */

typedef struct ag__request {
    ag_tensor *const *roots;
    ag_tensor *const *grads; /* NULL, or n_roots entries (NULL: ones) */
    int nroots;
    ag_tensor *const *inputs; /* NULL: every leaf (backward only) */
    int ninputs;
    bool accumulate; /* backward: into .grad; grad: into out[] */
    bool create_graph, keep_graph, allow_unused;
    int nthreads;
    ag_ctx *gctx;    /* create_graph: the gradients' context; grad: the outputs' */
    ag_tensor **out; /* grad: ninputs gradients */
} ag__request;

/* The graph root's output: no elements, no hooks. */
static ag__storage ag__groot_storage;
static ag_tensor ag__groot_out = {.storage = &ag__groot_storage, .dtype = AG_FLOAT32};

static int ag__make_groot(ag__task *t, const ag__request *rq) {
    size_t n = (size_t)rq->nroots;
    size_t bytes = sizeof(ag_node) + n * (sizeof(ag_node *) + sizeof(ag_tensor *));
    if (bytes > t->groot_bytes) {
        ag__chunk_free(t->groot_node, t->groot_bytes);
        t->groot_bytes = 0;
        if (!(t->groot_node = ag__chunk_alloc(bytes)))
            return ag__error(AG_ENOMEM, "out of memory in backward");
        t->groot_bytes = bytes;
    }
    ag_node *g = t->groot_node;
    memset(g, 0, sizeof *g);
    g->kind = &ag__graph_root_kind;
    g->out = &ag__groot_out;
    g->seq = UINT64_MAX;
    g->num_next = rq->nroots;
    t->gseeds = (ag_tensor **)(void *)(g->next + n);
    for (int i = 0; i < rq->nroots; i++) {
        ag_tensor *r = rq->roots[i];
        if (!(g->next[i] = r->grad_fn ? r->grad_fn : ag__grad_accumulator(r)))
            return AG_ENOMEM;
        t->gseeds[i] = rq->grads ? rq->grads[i] : NULL;
    }
    g->attr = t->gseeds;
    return 0;
}

/* The node whose input gradient is input's gradient: its grad_fn, or a
 * leaf's AccumulateGrad. */
static ag_node *ag__input_node(ag_tensor *input) { return input->grad_fn ? input->grad_fn : input->grad_accumulator; }

/* grad() and backward(inputs=): only nodes that lead to an input run.
 * Walks the graph children first (the reverse of an order where every
 * node comes after its producers... of its consumers), marks the nodes
 * that lead to a target, and cuts every edge to a node that does not, so
 * that node never runs (its dependency count drops to 0). In grad(), a
 * target that leads to no other one does not run either: its gradient is
 * gathered like a leaf's and taken as it arrives. */
static void ag__prune(ag__task *t) {
    int32_t *left = t->aux, *order = t->heap;
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < t->n; i++)
        left[i] = t->deps[i];
    order[tail++] = 0;
    while (head < tail) {
        int32_t i = order[head++];
        const int32_t *tgt = t->edges + t->edge_off[i];
        for (int k = 0; k < t->nodes[i]->num_next; k++)
            if (tgt[k] >= 0 && --left[tgt[k]] == 0)
                order[tail++] = tgt[k];
    }
    for (size_t p = tail; p-- > 0;) {
        int32_t i = order[p];
        int32_t *tgt = t->edges + t->edge_off[i];
        bool runs = false;
        for (int k = 0; k < t->nodes[i]->num_next; k++) {
            if (tgt[k] < 0)
                continue;
            if (t->nflags[tgt[k]] & AG__NF_REACH)
                runs = true;
            else
                tgt[k] = -1;
        }
        bool target = t->nflags[i] & AG__NF_TARGET;
        if (runs || target)
            t->nflags[i] |= AG__NF_REACH;
        if (!t->accumulate && target && !runs && t->leafidx[i] < 0) {
            t->leafidx[i] = (int32_t)t->nleaves;
            t->leaves[t->nleaves++] = i;
        }
    }
    memset(t->deps, 0, t->n * sizeof *t->deps);
    for (size_t e = 0; e < t->nedges; e++)
        if (t->edges[e] >= 0)
            t->deps[t->edges[e]]++;
}

/* The slots' own contexts for what a create_graph backward records. */
static int ag__graph_slots(ag__task *t) {
    for (int s = 0; s < t->nparts; s++)
        if (!t->slots[s]->gctx && !(t->slots[s]->gctx = ag_ctx_new()))
            return AG_ENOMEM;
    return 0;
}

/* grad()'s outputs, all or none: copies of the captured gradients in gctx
 * (create_graph: the gradients themselves, already there). */
static int ag__outputs(ag__task *t, const ag__request *rq) {
    for (int k = 0; k < rq->ninputs; k++) {
        int32_t j = ag__task_find(t, ag__input_node(rq->inputs[k]));
        ag_tensor *g = j >= 0 && (t->nflags[j] & AG__NF_CAPTURE) ? t->bufs[j] : NULL;
        if (!g) {
            if (!rq->allow_unused)
                return ag__error(AG_ESTATE, "One of the differentiated Tensors appears to not have been used in the "
                                            "graph. Set allow_unused=True if this is the desired behavior.");
            rq->out[k] = NULL;
            continue;
        }
        if (!t->graph) {
            ag_tensor *c = ag__tensor_new(rq->gctx, g->dtype, g->ndim, g->shape);
            if (!c)
                return ag_last_status() ? ag_last_status() : AG_ENOMEM;
            memcpy(c->data, g->data, g->storage->nbytes);
            g = c;
        }
        rq->out[k] = g;
    }
    return 0;
}

/* inputs=: the nodes of the inputs become targets (the rest of the graph
 * is pruned to what reaches them) */
static void ag__mark_inputs(ag__task *t, const ag__request *rq) {
    if (rq->ninputs <= 0)
        return;
    for (int k = 0; k < rq->ninputs; k++) {
        ag_tensor *in = rq->inputs[k];
        int32_t j = ag__task_find(t, ag__input_node(in));
        if (j < 0)
            continue;
        t->nflags[j] |= AG__NF_TARGET;
        /* grad(): taken as output; backward(): a non-leaf that does
         * not retain its grad yet retains it now (after its hooks) */
        if (!rq->accumulate || (in->grad_fn && !in->retains_grad))
            t->nflags[j] |= AG__NF_CAPTURE;
    }
    ag__prune(t);
}

static int ag__run_request(ag__task *t, const ag__request *rq) {
    int ex = (int)ag_get_executor();
    bool in_worker = ag__in_worker();
    bool woke = t->was_parallel && rq->nthreads > 1 && !in_worker && ex == AG_EXECUTOR_WS;
    if (woke)
        ag__wake_workers(rq->nthreads);
    t->was_parallel = false;
    t->special = t->groot = true;
    t->graph = rq->create_graph;
    t->accumulate = rq->accumulate;
    t->anomaly = ag__anomaly_enabled();
    t->gctx = rq->gctx;
    int rc;
    if ((rc = ag__task_reserve(t, 64)) || (rc = ag__task_reserve_edges(t, 1)) || (rc = ag__make_groot(t, rq)) ||
        (rc = ag__discover(t, t->groot_node)))
        return rc;
    memset(t->nflags, 0, t->n);
    ag__mark_inputs(t, rq);
    t->det = ag_is_deterministic();
    int nparts = rq->nthreads > 1 && !in_worker && ag__graph_worth_parallel(t) ? rq->nthreads : 1;
    if ((rc = ag__plan(t, nparts, ex)) || (rc = ag__slots_prepare(t, nparts)))
        return rc;
    if (t->graph && (rc = ag__graph_slots(t)))
        return rc;
    /* create_graph: this thread records through slot 0's context, the
     * pool's threads through theirs (runner.c) */
    ag__redirect saved;
    if (t->graph) {
        ag__ctx_redirects(t->gctx, 1);
        ag__ctx_redirect(t->gctx, t->slots[0]->gctx, &saved);
    }
    if (nparts == 1) {
        rc = ag__exec_serial(t);
    } else {
        if (!woke && ex == AG_EXECUTOR_WS)
            ag__wake_workers(rq->nthreads);
        t->was_parallel = true;
        rc = ex == AG_EXECUTOR_OPENMP ? ag__exec_omp(t, nparts) : ag__exec_ws(t, nparts);
    }
    if (!rc && !rq->accumulate)
        rc = ag__outputs(t, rq);
    if (t->graph) {
        ag__ctx_redirect_restore(&saved);
        ag__ctx_redirects(t->gctx, -1);
        /* All of it stays with gctx, also after a failure: a hook may hold
         * a tensor it made there. */
        for (int s = 0; s < t->nparts; s++)
            ag__ctx_adopt(t->gctx, t->slots[s]->gctx);
    }
    return rc;
}

static int ag__engine_run(const ag__request *rq) {
    ag__task *t = ag__task_enter();
    if (!t)
        return AG_ESTATE;
    int nthreads = rq->nthreads;
    int prev_threads = ag__backward_threads;
    ag__backward_threads = nthreads;
    t->keep_graph = rq->keep_graph;
    bool prev_grad_mode = ag_set_grad_enabled(rq->create_graph);
    int rc = ag__run_request(t, rq);
    if (rc && rq->out)
        for (int k = 0; k < rq->ninputs; k++)
            rq->out[k] = NULL;
    ag__task_leave(t, rc);
    ag__backward_threads = prev_threads;
    ag_set_grad_enabled(prev_grad_mode);
    return rc;
}

/* ---- Entry points ---------------------------------------------------------------------------- */

static int ag__backward_plain(ag_tensor *root, const ag_tensor *grad, bool keep_graph, int num_threads) {
    ag_node *root_node = root->grad_fn ? root->grad_fn : ag__grad_accumulator(root);
    if (!root_node)
        return AG_ENOMEM;
    ag__task *t = ag__task_enter();
    if (!t)
        return AG_ESTATE;
    int nthreads = num_threads > 0 ? num_threads : ag_get_num_threads();
    int prev_threads = ag__backward_threads;
    ag__backward_threads = nthreads;
    t->keep_graph = keep_graph;
    bool prev_grad_mode = ag_set_grad_enabled(false);
    int rc = ag__run(t, root, grad, root_node, nthreads);
    ag__task_leave(t, rc);
    ag__backward_threads = prev_threads;
    ag_set_grad_enabled(prev_grad_mode);
    return rc;
}

int ag_backward(ag_tensor *root, const ag_tensor *grad, const ag_backward_opts *opts) {
    if (!root) {
        ag__null_arg("ag_backward");
        return ag_last_status() ? ag_last_status() : AG_EINVAL;
    }
    int rc;
    if ((opts && (rc = ag__check_threads(opts->num_threads))) ||
        (rc = ag__check_roots(&root, (ag_tensor *const *)&grad, 1, "ag_backward")))
        return rc;
    if (!opts || !opts->create_graph)
        return ag__backward_plain(root, grad, opts && opts->retain_graph, opts ? opts->num_threads : 0);
    ag_tensor *g = (ag_tensor *)grad;
    ag__request rq = {.roots = &root,
                      .grads = &g,
                      .nroots = 1,
                      .accumulate = true,
                      .create_graph = true,
                      .keep_graph = true,
                      .nthreads = opts->num_threads > 0 ? opts->num_threads : ag_get_num_threads(),
                      .gctx = root->ctx};
    return ag__engine_run(&rq);
}

int ag_autograd_backward(ag_tensor *const *roots, ag_tensor *const *grads, int n_roots, ag_tensor *const *inputs,
                         int n_inputs, const ag_backward_opts *opts) {
    int rc;
    if (n_roots < 0 || n_inputs < 0)
        return ag__error(AG_EINVAL, "ag_autograd_backward: counts must not be negative (got %d roots, %d inputs)",
                         n_roots, n_inputs);
    if (n_inputs > 0 && !inputs)
        return ag__error(AG_EINVAL, "ag_autograd_backward: the array of inputs is NULL");
    if ((opts && (rc = ag__check_threads(opts->num_threads))) ||
        (rc = ag__check_roots(roots, grads, n_roots, "ag_autograd_backward")))
        return rc;
    for (int k = 0; k < n_inputs; k++) {
        if (!inputs[k])
            return ag__null_code("ag_autograd_backward");
        if (!inputs[k]->requires_grad) /* PyTorch calls retain_grad() on each input first */
            return ag__error(AG_ESTATE, "can't retain_grad on Tensor that has requires_grad=False");
    }
    if (n_roots == 0)
        return 0;
    bool create = opts && opts->create_graph;
    if (n_roots == 1 && n_inputs == 0 && !create)
        return ag__backward_plain(roots[0], grads ? grads[0] : NULL, opts && opts->retain_graph,
                                  opts ? opts->num_threads : 0);
    ag__request rq = {.roots = roots,
                      .grads = grads,
                      .nroots = n_roots,
                      .inputs = n_inputs ? inputs : NULL,
                      .ninputs = n_inputs,
                      .accumulate = true,
                      .create_graph = create,
                      .keep_graph = create || (opts && opts->retain_graph),
                      .nthreads = opts && opts->num_threads > 0 ? opts->num_threads : ag_get_num_threads(),
                      .gctx = roots[0]->ctx};
    if ((rc = ag__engine_run(&rq)))
        return rc;
    for (int k = 0; k < n_inputs; k++) /* as PyTorch's retain_grad() on each input */
        if (inputs[k]->grad_fn)
            ag_retain_grad(inputs[k]);
    return 0;
}

int ag_autograd_grad(ag_ctx *ctx, ag_tensor *const *outputs, ag_tensor *const *grad_outputs, int n_outputs,
                     ag_tensor *const *inputs, int n_inputs, ag_tensor **grads, const ag_grad_opts *opts) {
    int rc;
    if (grads)
        for (int k = 0; k < n_inputs; k++)
            grads[k] = NULL;
    if (!ctx)
        return ag__error(AG_EINVAL, "ag_autograd_grad: ctx is NULL");
    if (n_outputs < 0 || n_inputs < 0)
        return ag__error(AG_EINVAL, "ag_autograd_grad: counts must not be negative (got %d outputs, %d inputs)",
                         n_outputs, n_inputs);
    if (n_inputs == 0)
        return ag__error(AG_EINVAL, "grad requires non-empty inputs.");
    if (!inputs || !grads)
        return ag__error(AG_EINVAL, "ag_autograd_grad: the array of %s is NULL", inputs ? "grads" : "inputs");
    if ((opts && (rc = ag__check_threads(opts->num_threads))) ||
        (rc = ag__check_roots(outputs, grad_outputs, n_outputs, "ag_autograd_grad")))
        return rc;
    for (int k = 0; k < n_inputs; k++) {
        if (!inputs[k])
            return ag__null_code("ag_autograd_grad");
        if (!inputs[k]->requires_grad)
            return ag__error(AG_ESTATE, "One of the differentiated Tensors does not require grad");
    }
    bool create = opts && opts->create_graph;
    ag__request rq = {.roots = outputs,
                      .grads = grad_outputs,
                      .nroots = n_outputs,
                      .inputs = inputs,
                      .ninputs = n_inputs,
                      .accumulate = false,
                      .create_graph = create,
                      .keep_graph = create || (opts && opts->retain_graph),
                      .allow_unused = opts && opts->allow_unused,
                      .nthreads = opts && opts->num_threads > 0 ? opts->num_threads : ag_get_num_threads(),
                      .gctx = ctx,
                      .out = grads};
    return ag__engine_run(&rq);
}

size_t ag__backward_scratch_peak(void) { return ag__tasks[ag__depth].scratch.peak; }
