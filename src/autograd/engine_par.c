/* The multithreaded backward: the discovered graph runs as a DAG of
 * dependency-counted nodes on the work-stealing pool (sched/), or as OpenMP
 * tasks with depend clauses (AG_EXECUTOR=openmp), for comparison.
 *
 * Gradients flow as follows. A node's input buffer is complete when its
 * last producer has run (the DAG's join counter orders the producers'
 * writes before the node's reads). A producer adds into fresh zeroed
 * buffers of its own, then hands each one over:
 *   - to a node with one producer: the buffer becomes its input buffer;
 *   - to a node with several: the first to arrive installs its buffer, the
 *     others add into it under that node's lock and give theirs back;
 *   - to a leaf: the producer adds straight into its participant's own
 *     buffer for that leaf (no sharing at all); when the graph is done the
 *     participants' buffers are summed, the leaf's hooks run on the sum and
 *     it is added into .grad (in parallel over leaves).
 * In deterministic mode every edge's contribution is kept apart and a
 * node (or leaf) sums its contributions in edge order, an order fixed by
 * the graph alone, so no sum depends on the schedule or the thread count.
 *
 * Memory: each participant has a slot with its own scratch context; the
 * gradient a node consumed, and a contribution that has been added
 * elsewhere, go back to the slot's bins at once and are reused for the next
 * gradient of the same size. Everything is released in one go at the end. */
#include "autograd/engine.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef AG_HAVE_OPENMP
#include <omp.h>
#endif

/* ---- Pools: one per thread count, created on first use, kept ---------------- */

#define AG__MAX_POOL_THREADS 1024

static ws_pool *_Atomic ag__pools[AG__MAX_POOL_THREADS + 1];
static pthread_mutex_t ag__pools_lock = PTHREAD_MUTEX_INITIALIZER;

/* The pool that runs a backward on nthreads threads: nthreads - 1 workers,
 * plus the calling thread, which works while it waits. */
ws_pool *ag__pool(int nthreads) {
    if (nthreads > AG__MAX_POOL_THREADS)
        nthreads = AG__MAX_POOL_THREADS;
    ws_pool *p = atomic_load_explicit(&ag__pools[nthreads], memory_order_acquire);
    if (AG__LIKELY(p))
        return p;
    pthread_mutex_lock(&ag__pools_lock);
    p = atomic_load_explicit(&ag__pools[nthreads], memory_order_relaxed);
    if (!p) {
        ws_pool_opts o = WS_POOL_OPTS_INIT;
        o.num_threads = nthreads - 1;
        int rc = ws_pool_create(&p, &o);
        if (rc) {
            pthread_mutex_unlock(&ag__pools_lock);
            return ag__error_null(rc == WS_ENOMEM ? AG_ENOMEM : AG_ESTATE,
                                  "cannot start the %d worker threads of a backward: %s", nthreads - 1,
                                  ws_strerror(rc));
        }
        atomic_store_explicit(&ag__pools[nthreads], p, memory_order_release);
    }
    pthread_mutex_unlock(&ag__pools_lock);
    return p;
}

_Thread_local int ag__backward_threads; /* set by ag_backward while it runs */

int ag__kernel_threads(void) { return ag__backward_threads > 0 ? ag__backward_threads : ag_get_num_threads(); }

void ag__parallel_for(int64_t n, int64_t grain, ag__range_fn fn, void *arg) {
    if (n <= grain || n <= 1) {
        fn(arg, 0, n);
        return;
    }
#ifdef AG_HAVE_OPENMP
    if (omp_in_parallel()) {
        fn(arg, 0, n);
        return;
    }
#endif
    ws_pool *pool = ws_current_pool();
    if (!pool) {
        int nt = ag__kernel_threads();
        if (nt < 2) {
            fn(arg, 0, n);
            return;
        }
        if (!(pool = ag__pool(nt))) {
            ag_clear_error(); /* no threads to be had: the work runs here */
            fn(arg, 0, n);
            return;
        }
    }
    if (ws_parallel_for(pool, 0, n, grain, fn, arg) != 0)
        fn(arg, 0, n);
}

void ag__wake_workers(int nthreads) {
    ws_pool *p = nthreads > 1 ? ag__pool(nthreads) : NULL;
    if (p)
        ws_pool_wake(p, nthreads - 1);
    else
        ag_clear_error();
}

bool ag__in_worker(void) {
#ifdef AG_HAVE_OPENMP
    if (omp_in_parallel())
        return true;
#endif
    return ws_current_pool() != NULL;
}

/* -1: not read yet from AG_PAR_MIN_WORK (default 32768 elements). */
_Atomic int64_t ag__par_min_work = -1;

static int64_t ag__min_work(void) {
    int64_t w = atomic_load_explicit(&ag__par_min_work, memory_order_relaxed);
    if (AG__LIKELY(w >= 0))
        return w;
    w = 1 << 15;
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

bool ag__graph_worth_parallel(const ag__task *t) {
    bool forks = false;
    int64_t work = 0;
    for (size_t i = 0; i < t->n; i++) {
        const int32_t *tgt = t->edges + t->edge_off[i];
        int32_t first = -1;
        work += t->nodes[i]->out->numel;
        for (int k = 0; k < t->nodes[i]->num_next && !forks; k++) {
            int32_t j = tgt[k];
            if (j < 0 || ag__is_accumulate(t->nodes[j]))
                continue;
            if (first < 0)
                first = j;
            else if (j != first)
                forks = true;
        }
    }
    return forks && work >= ag__min_work();
}

/* ---- Arrays ---------------------------------------------------------------------- */

typedef struct {
    void **arr;
    size_t elem;
} ag__arr;

/* Grows every array of the set to hold `need` elements (same capacity). */
static int ag__grow_set(size_t *cap, size_t need, ag__arr *set, int nset) {
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
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

static int ag__par_reserve(ag__task *t, size_t nparts) {
    ag__arr per_node[] = {
        {(void **)&t->leafidx, sizeof *t->leafidx}, {(void **)&t->leaves, sizeof *t->leaves},
        {(void **)&t->wsn, sizeof *t->wsn},         {(void **)&t->locks, sizeof *t->locks},
        {(void **)&t->in_off, sizeof *t->in_off},   {(void **)&t->topo, sizeof *t->topo},
    };
    ag__arr per_edge[] = {
        {(void **)&t->succ, sizeof *t->succ},
        {(void **)&t->contrib, sizeof *t->contrib},
        {(void **)&t->in_edges, sizeof *t->in_edges},
        {(void **)&t->in_src, sizeof *t->in_src},
    };
    if (ag__grow_set(&t->pcap, t->n + 1, per_node, 6) || ag__grow_set(&t->pecap, t->nedges + 1, per_edge, 4))
        return AG_ENOMEM;
    if (nparts > t->nparts_cap) {
        int *map = ag__chunk_alloc(nparts * sizeof *map);
        ag__slot **slots = ag__chunk_alloc(nparts * sizeof *slots);
        if (!map || !slots) {
            ag__chunk_free(map, nparts * sizeof *map);
            ag__chunk_free(slots, nparts * sizeof *slots);
            return ag__error(AG_ENOMEM, "out of memory in backward");
        }
        memset(slots, 0, nparts * sizeof *slots);
        if (t->slots)
            memcpy(slots, t->slots, t->nparts_cap * sizeof *slots);
        ag__chunk_free(t->slotmap, t->nparts_cap * sizeof *t->slotmap);
        ag__chunk_free(t->slots, t->nparts_cap * sizeof *t->slots);
        t->slotmap = map;
        t->slots = slots;
        t->nparts_cap = nparts;
    }
    return 0;
}

/* ---- Slots ------------------------------------------------------------------------- */

/* The slot of participant `part` in this backward, claimed on first use. Only
 * that participant reads or writes slotmap[part] during the run. */
static ag__slot *ag__slot_get(ag__task *t, int part) {
    int s = t->slotmap[part];
    if (AG__LIKELY(s >= 0))
        return t->slots[s];
    s = atomic_fetch_add_explicit(&t->nslots, 1, memory_order_relaxed);
    if (AG__UNLIKELY((size_t)s >= t->nparts_cap)) { /* only after failures to set slots up */
        atomic_fetch_sub_explicit(&t->nslots, 1, memory_order_relaxed);
        return ag__error_null(AG_ENOMEM, "out of memory in backward");
    }
    ag__slot *sl = t->slots[s];
    if (!sl) {
        if (!(sl = ag__chunk_alloc(sizeof *sl)))
            return ag__error_null(AG_ENOMEM, "out of memory in backward");
        memset(sl, 0, sizeof *sl);
        t->slots[s] = sl;
    }
    if (!sl->scratch && !(sl->scratch = ag_ctx_new()))
        return NULL;
    t->slotmap[part] = s;
    return sl;
}

/* A zeroed gradient shaped like `like`: a given-back block if one fits. */
static ag_tensor *ag__grad_zeros(ag__slot *sl, const ag_tensor *like) {
    size_t bytes = ag__tensor_block_bytes(like);
    for (int b = 0; b < AG__NBINS; b++) {
        void *blk = sl->bins[b].head;
        if (blk && sl->bins[b].bytes == bytes) {
            sl->bins[b].head = *(void **)blk;
            return ag__tensor_zeros_in_block(blk, sl->scratch, like);
        }
    }
    void *blk = ag__ctx_alloc(sl->scratch, bytes);
    return blk ? ag__tensor_zeros_in_block(blk, sl->scratch, like) : NULL;
}

/* g (an engine-made gradient no one reads any more) goes back to sl. */
static void ag__grad_give_back(ag__slot *sl, ag_tensor *g) {
    size_t bytes = ag__tensor_block_bytes(g);
    int empty = -1;
    for (int b = 0; b < AG__NBINS; b++) {
        if (sl->bins[b].bytes == bytes) {
            *(void **)g = sl->bins[b].head;
            sl->bins[b].head = g;
            return;
        }
        if (!sl->bins[b].head && empty < 0)
            empty = b;
    }
    if (empty >= 0) {
        sl->bins[empty].bytes = bytes;
        *(void **)g = NULL;
        sl->bins[empty].head = g;
    }
}

/* This participant's buffer for leaf l, zeroed on first use. */
static ag_tensor *ag__leaf_buf(ag__task *t, ag__slot *sl, int32_t l) {
    if (!sl->leafbuf) {
        if (!(sl->leafbuf = ag__ctx_alloc(sl->scratch, t->nleaves * sizeof *sl->leafbuf)))
            return NULL;
        memset(sl->leafbuf, 0, t->nleaves * sizeof *sl->leafbuf);
    }
    if (!sl->leafbuf[l])
        sl->leafbuf[l] = ag__grad_zeros(sl, t->nodes[t->leaves[l]]->out);
    return sl->leafbuf[l];
}

/* ---- Running a node ------------------------------------------------------------------- */

static void ag__spin_lock(atomic_flag *f) {
    int spins = 0;
    while (atomic_flag_test_and_set_explicit(f, memory_order_acquire)) {
        if (++spins >= 64) {
            sched_yield(); /* the holder may be descheduled (more threads than cores) */
            spins = 0;
        }
    }
}

static void ag__spin_unlock(atomic_flag *f) { atomic_flag_clear_explicit(f, memory_order_release); }

/* Deterministic sums are cut into chunks of elements, fixed in size, and
 * big ones run as a parallel-for: each element still gets its
 * contributions added in edge order. */
#define AG__SUM_CHUNK 4096
#define AG__PAR_SUM_MIN (1 << 16) /* elements added in all */

typedef struct {
    const ag__task *t;
    int32_t j;
    ag_tensor *acc;
} ag__sum_job;

static void ag__sum_chunks(void *arg, int64_t lo, int64_t hi) {
    const ag__sum_job *job = arg;
    const ag__task *t = job->t;
    int64_t e0 = lo * AG__SUM_CHUNK, e1 = hi * AG__SUM_CHUNK;
    if (e1 > job->acc->numel)
        e1 = job->acc->numel;
    for (int32_t k = t->in_off[job->j]; k < t->in_off[job->j + 1]; k++) {
        const ag_tensor *c = t->contrib[t->in_edges[k]];
        if (c && c != job->acc)
            ag__add_range(job->acc, c, e0, e1);
    }
}

/* Deterministic mode: node j's gradient, its contributions summed in edge
 * order (the first one is the accumulator). sl NULL: nothing given back. */
static ag_tensor *ag__gather_in_order(ag__task *t, int32_t j, ag__slot *sl) {
    ag_tensor *acc = NULL;
    int64_t count = 0;
    for (int32_t k = t->in_off[j]; k < t->in_off[j + 1]; k++) {
        ag_tensor *c = t->contrib[t->in_edges[k]];
        if (c && !acc)
            acc = c;
        count += c != NULL;
    }
    if (!acc)
        return t->bufs[j]; /* the root's seed */
    if (count > 1) {
        ag__sum_job job = {t, j, acc};
        int64_t chunks = (acc->numel + AG__SUM_CHUNK - 1) / AG__SUM_CHUNK;
        if (acc->numel * (count - 1) >= AG__PAR_SUM_MIN && chunks > 1)
            ag__parallel_for(chunks, 1, ag__sum_chunks, &job);
        else
            ag__sum_chunks(&job, 0, chunks);
        if (sl)
            for (int32_t k = t->in_off[j]; k < t->in_off[j + 1]; k++) {
                ag_tensor *c = t->contrib[t->in_edges[k]];
                if (c && c != acc)
                    ag__grad_give_back(sl, c);
            }
    }
    return acc;
}

/* Hands p, node j's share from one producer, over to j's input buffer. */
static void ag__hand_over(ag__task *t, int32_t j, ag_tensor *p, ag__slot *sl) {
    if (t->deps[j] == 1) { /* the only producer: the join counter orders it */
        t->bufs[j] = p;
        return;
    }
    ag__spin_lock(&t->locks[j]);
    ag_tensor *b = t->bufs[j];
    if (!b)
        t->bufs[j] = p;
    else
        ag__add_into(b, p);
    ag__spin_unlock(&t->locks[j]);
    if (b)
        ag__grad_give_back(sl, p);
}

/* A leaf fed by a single edge and without hooks gets its gradient from that
 * one producer: the producer adds it into .grad at once, while it is in
 * cache, instead of leaving it for the end of the graph. (Any sum order is
 * the same for one contribution, so deterministic mode does it too.) */
static inline bool ag__leaf_early(const ag__task *t, int32_t j) { return t->deps[j] == 1 && !t->nodes[j]->out->hooks; }

static int ag__accumulate_now(ag__task *t, int32_t j, const ag_tensor *g) {
    if (AG__UNLIKELY(atomic_load_explicit(&ag__tracing, memory_order_relaxed))) {
        uint64_t t0 = ag__now_ns();
        int rc = ag__accumulate(t->nodes[j]->out, g);
        ag__trace_record(ag__accumulate_grad_kind.name, t0, ag__now_ns());
        return rc;
    }
    return ag__accumulate(t->nodes[j]->out, g);
}

static int ag__par_node(ag__task *t, int32_t idx, ag__slot *sl) {
    ag_node *node = t->nodes[idx];
    ag_tensor *owner = node->out;
    ag_tensor *grad = t->det ? ag__gather_in_order(t, idx, sl) : t->bufs[idx];
    bool give_back = true; /* false once a hook has seen it: it lives until the end */
    int rc;

    if ((rc = ag__node_check_released(node)))
        return rc;
    if (owner->hooks) {
        if ((rc = ag__run_hooks(owner, &grad)))
            return rc;
        give_back = false;
    }
    if (owner->retains_grad && (rc = ag__accumulate(owner, grad)))
        return rc;

    ag_tensor *dinp_small[4];
    ag_tensor **dinp = dinp_small;
    const int32_t *tgt = t->edges + t->edge_off[idx];
    int nn = node->num_next;
    if (nn > 4 && !(dinp = ag__ctx_alloc(sl->scratch, (size_t)nn * sizeof *dinp)))
        return ag_last_status();
    for (int i = 0; i < nn; i++) {
        int32_t j = tgt[i];
        dinp[i] = NULL;
        if (j < 0)
            continue;
        int k = 0;
        while (k < i && tgt[k] != j)
            k++;
        if (k < i) { /* the same producer feeds two inputs: one buffer */
            dinp[i] = dinp[k];
            continue;
        }
        if (!t->det && t->leafidx[j] >= 0 && !ag__leaf_early(t, j))
            dinp[i] = ag__leaf_buf(t, sl, t->leafidx[j]);
        else
            dinp[i] = ag__grad_zeros(sl, t->nodes[j]->out);
        if (!dinp[i])
            return ag_last_status() ? ag_last_status() : AG_ENOMEM;
    }
    rc = node->kind->backward(node, grad, dinp, sl->scratch);
    if (rc)
        return rc < 0 ? rc : AG_EINVAL;
    if (!t->keep_graph)
        ag__node_release(node);
    if (give_back && grad)
        ag__grad_give_back(sl, grad);
    for (int i = 0; i < nn; i++) {
        int32_t j = tgt[i];
        if (j < 0)
            continue;
        int k = 0;
        while (k < i && tgt[k] != j)
            k++;
        if (k < i)
            continue; /* handed over with the first edge to j */
        if (t->leafidx[j] >= 0 && ag__leaf_early(t, j)) {
            if ((rc = ag__accumulate_now(t, j, dinp[i])))
                return rc;
            ag__grad_give_back(sl, dinp[i]);
        } else if (t->det) {
            t->contrib[t->edge_off[idx] + i] = dinp[i];
        } else if (t->leafidx[j] < 0) {
            ag__hand_over(t, j, dinp[i], sl);
        }
        /* else a leaf's share stays in this participant's buffer */
    }
    return 0;
}

static void ag__par_fail(ag__task *t, int rc) {
    int expected = 0;
    if (atomic_compare_exchange_strong_explicit(&t->err, &expected, rc, memory_order_relaxed, memory_order_relaxed))
        snprintf(t->errmsg, sizeof t->errmsg, "%s", ag_last_error());
}

/* Runs node idx on participant `part`, unless the backward has failed. */
static void ag__par_exec(ag__task *t, int32_t idx, int part) {
    if (atomic_load_explicit(&t->err, memory_order_relaxed))
        return;
    ag__slot *sl = ag__slot_get(t, part);
    if (!sl) {
        ag__par_fail(t, ag_last_status() ? ag_last_status() : AG_ENOMEM);
        return;
    }
    bool prev_grad_mode = ag_set_grad_enabled(false);
    int rc;
    if (AG__UNLIKELY(atomic_load_explicit(&ag__tracing, memory_order_relaxed))) {
        uint64_t t0 = ag__now_ns();
        rc = ag__par_node(t, idx, sl);
        ag__trace_record(t->nodes[idx]->kind->name, t0, ag__now_ns());
    } else {
        rc = ag__par_node(t, idx, sl);
    }
    ag_set_grad_enabled(prev_grad_mode);
    if (rc)
        ag__par_fail(t, rc);
}

static void ag__ws_node_fn(ws_task *wt) {
    ag__task *t = wt->arg;
    ag__par_exec(t, (int32_t)(ws_node_of(wt) - t->wsn), ws_participant_index());
}

/* ---- Leaves ------------------------------------------------------------------------------ */

/* Sums leaf l's buffers (or, deterministic, its contributions in edge
 * order), runs its hooks on the sum and adds it into .grad. */
static int ag__leaf_finish(ag__task *t, int32_t l) {
    int32_t j = t->leaves[l];
    ag_tensor *owner = t->nodes[j]->out;
    ag_tensor *g = NULL;
    if (t->det) {
        g = ag__gather_in_order(t, j, NULL);
    } else {
        int ns = atomic_load_explicit(&t->nslots, memory_order_relaxed);
        for (int s = 0; s < ns; s++) {
            ag_tensor *b = t->slots[s]->leafbuf ? t->slots[s]->leafbuf[l] : NULL;
            if (!b)
                continue;
            if (!g)
                g = b;
            else
                ag__add_into(g, b);
        }
    }
    if (!g)
        return 0; /* no share left: fed by one edge, added at once */
    uint64_t t0 = AG__UNLIKELY(atomic_load_explicit(&ag__tracing, memory_order_relaxed)) ? ag__now_ns() : 0;
    int rc;
    if (owner->hooks && (rc = ag__run_hooks(owner, &g)))
        return rc;
    rc = ag__accumulate(owner, g);
    if (t0)
        ag__trace_record(ag__accumulate_grad_kind.name, t0, ag__now_ns());
    return rc;
}

static void ag__leaves_range(void *arg, int64_t lo, int64_t hi) {
    ag__task *t = arg;
    for (int64_t l = lo; l < hi; l++) {
        if (atomic_load_explicit(&t->err, memory_order_relaxed))
            return;
        int rc = ag__leaf_finish(t, (int32_t)l);
        if (rc)
            ag__par_fail(t, rc);
    }
}

/* ---- Executors ---------------------------------------------------------------------------- */

static int ag__run_ws(ag__task *t, ws_pool *pool) {
    ws_dag_init(&t->dag, pool);
    for (size_t i = 0; i < t->n; i++) {
        ag_node *node = t->nodes[i];
        if (t->leafidx[i] >= 0)
            continue;
        ws_node *w = &t->wsn[i];
        ws_node_init(&t->dag, w, ag__ws_node_fn, t, t->deps[i]);
        w->task.name = node->kind->name;
        ws_node **succ = t->succ + t->edge_off[i];
        const int32_t *tgt = t->edges + t->edge_off[i];
        int ns = 0;
        for (int k = 0; k < node->num_next; k++)
            if (tgt[k] >= 0 && t->leafidx[tgt[k]] < 0)
                succ[ns++] = &t->wsn[tgt[k]];
        w->succ = succ;
        w->nsucc = ns;
    }
    ws_node *root = &t->wsn[0];
    int rc = ws_dag_run(&t->dag, &root, 1);
    if (rc)
        return ag__error(AG_ESTATE, "backward could not run on the thread pool: %s", ws_strerror(rc));
    return 0;
}

#ifdef AG_HAVE_OPENMP
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

/* The same graph as OpenMP tasks: one task per node, depending on a token
 * per node (its own, out) and on its producers' tokens (in). */
static void ag__run_openmp(ag__task *t, int nthreads) {
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
        ag__par_exec(t, i, omp_get_thread_num());
    }
}
#endif

/* Incoming edges of every node, in edge order (deterministic mode, OpenMP). */
static void ag__build_in_edges(ag__task *t) {
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

/* The calling thread runs every node, ready ones latest created first and
 * a leaf as soon as its last producer has run, as the serial engine does. */
static void ag__run_serial(ag__task *t) {
    int32_t *left = t->topo; /* producers not yet run */
    for (size_t i = 0; i < t->n; i++)
        left[i] = t->deps[i];
    ag__heap_push(t, 0);
    while (t->heap_n > 0 && !atomic_load_explicit(&t->err, memory_order_relaxed)) {
        int32_t i = ag__heap_pop(t);
        if (t->leafidx[i] >= 0) {
            ag__leaves_range(t, t->leafidx[i], t->leafidx[i] + 1);
            continue;
        }
        ag__par_exec(t, i, 0);
        const int32_t *tgt = t->edges + t->edge_off[i];
        for (int k = 0; k < t->nodes[i]->num_next; k++)
            if (tgt[k] >= 0 && --left[tgt[k]] == 0)
                ag__heap_push(t, tgt[k]);
    }
    t->heap_n = 0;
}

int ag__par_backward(ag__task *t, int nthreads, int ex) {
    ws_pool *pool = NULL;
    size_t nparts = (size_t)nthreads;
#ifndef AG_HAVE_OPENMP
    if (ex == AG_EXECUTOR_OPENMP)
        ex = AG_EXECUTOR_WS;
#endif
    if (ex == AG_EXECUTOR_WS) {
        if (!(pool = ag__pool(nthreads)))
            return ag_last_status();
        nparts = (size_t)ws_pool_max_participants(pool);
    }
    int rc = ag__par_reserve(t, nparts);
    if (rc)
        return rc;

    t->nleaves = 0;
    for (size_t i = 0; i < t->n; i++) {
        t->leafidx[i] = ag__is_accumulate(t->nodes[i]) ? (int32_t)t->nleaves++ : -1;
        if (t->leafidx[i] >= 0)
            t->leaves[t->leafidx[i]] = (int32_t)i;
        atomic_flag_clear_explicit(&t->locks[i], memory_order_relaxed);
    }
    for (size_t p = 0; p < nparts; p++)
        t->slotmap[p] = -1;
    atomic_store_explicit(&t->nslots, 0, memory_order_relaxed);
    atomic_store_explicit(&t->err, 0, memory_order_relaxed);
    if (t->det || ex == AG_EXECUTOR_OPENMP)
        ag__build_in_edges(t); /* before the serial executor takes topo[] */
    if (t->det)
        memset(t->contrib, 0, t->nedges * sizeof *t->contrib);

    /* The graph, then the leaves (the pool's threads help with many). */
    if (ex == AG__EXECUTOR_SERIAL) {
        ag__run_serial(t);
    } else
#ifdef AG_HAVE_OPENMP
        if (ex == AG_EXECUTOR_OPENMP) {
        ag__run_openmp(t, nthreads);
        if (!atomic_load_explicit(&t->err, memory_order_relaxed))
            ag__leaves_range(t, 0, (int64_t)t->nleaves);
    } else
#endif
    {
        if ((rc = ag__run_ws(t, pool)) == 0 && !atomic_load_explicit(&t->err, memory_order_relaxed)) {
            if (t->nleaves >= 8 && nthreads > 1)
                ws_parallel_for(pool, 0, (int64_t)t->nleaves, 4, ag__leaves_range, t);
            else
                ag__leaves_range(t, 0, (int64_t)t->nleaves);
        }
    }

    /* Everything this backward took goes back at once. */
    int ns = atomic_load_explicit(&t->nslots, memory_order_relaxed);
    for (int s = 0; s < ns; s++) {
        ag__slot *sl = t->slots[s];
        if (!sl)
            continue;
        memset(sl->bins, 0, sizeof sl->bins);
        sl->leafbuf = NULL;
        ag_ctx_reset(sl->scratch);
    }
    int err = atomic_load_explicit(&t->err, memory_order_relaxed);
    if (!rc && err)
        rc = ag__error(err, "%s", t->errmsg);
    return rc;
}
