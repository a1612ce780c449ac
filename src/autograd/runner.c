/* The one node runner, used by every executor at every thread count, and
 * the gradient buffers it works with.
 *
 * Gradients flow as follows. A node's input buffer is complete when its
 * last producer has run (the executor orders the producers' writes before
 * the node's reads). A producer gives each input's producer a buffer to
 * add into, then hands it on:
 *   - on one participant, every producer of a node adds straight into the
 *     node's one buffer, zeroed when first needed;
 *   - on several, a producer adds into a fresh zeroed buffer of its own;
 *     a node with one producer takes that buffer as its input buffer, and
 *     for a node with several the first to arrive installs its buffer and
 *     the others add into it under the node's lock and give theirs back;
 *   - a leaf gets one buffer per participant that feeds it (no sharing at
 *     all); when the graph is done they are summed and the leaf's hooks
 *     run on the sum;
 *   - in deterministic mode every edge's contribution is kept apart and a
 *     node (or leaf) sums its contributions in edge order, an order fixed
 *     by the graph alone, so no sum depends on the schedule or the number
 *     of participants.
 * A gradient a node has consumed, and a contribution added elsewhere, go
 * back to the participant's bins at once and are reused for the next
 * gradient of the same size, so memory stays near what is live.
 *
 * All or nothing: leaves' gradients and retained grads go into .grad only
 * in the commit, after the whole graph has run. The commit first makes
 * every .grad that does not exist yet, and only then adds, which cannot
 * fail: a backward that fails changes no .grad. */
#include "autograd/engine.h"

#include <math.h>
#include <sched.h>
#include <stdio.h>

/* ---- Scratch memory ------------------------------------------------------------ */

#define AG__BLOCK_ALIGN 64
#define AG__OVER_MIN ((size_t)64 << 10)

typedef struct ag__overflow {
    struct ag__overflow *next;
    size_t size, used;
} ag__overflow;

#define AG__OVER_HDR (((sizeof(ag__overflow) + AG__BLOCK_ALIGN - 1) / AG__BLOCK_ALIGN) * AG__BLOCK_ALIGN)

static inline size_t ag__round_block(size_t bytes) {
    return (bytes + AG__BLOCK_ALIGN - 1) & ~(size_t)(AG__BLOCK_ALIGN - 1);
}

void *ag__scratch_carve(ag__scratch *s, size_t bytes) {
    bytes = ag__round_block(bytes);
    size_t off = atomic_fetch_add_explicit(&s->used, bytes, memory_order_relaxed);
    if (AG__LIKELY(off + bytes <= s->cap))
        return s->base + off;
    pthread_mutex_lock(&s->lock);
    ag__overflow *o = s->over;
    if (!o || o->size - o->used < bytes) {
        size_t size = bytes > AG__OVER_MIN ? bytes : AG__OVER_MIN;
        if (!(o = ag__chunk_alloc(AG__OVER_HDR + size))) {
            pthread_mutex_unlock(&s->lock);
            return ag__error_null(AG_ENOMEM, "out of memory in backward (%zu bytes of gradients)", bytes);
        }
        o->next = s->over;
        o->size = size;
        o->used = 0;
        s->over = o;
    }
    void *p = (char *)o + AG__OVER_HDR + o->used;
    o->used += bytes;
    s->over_bytes += bytes;
    pthread_mutex_unlock(&s->lock);
    return p;
}

static void ag__free_overflow(ag__scratch *s) {
    for (ag__overflow *o = s->over, *next; o; o = next) {
        next = o->next;
        ag__chunk_free(o, AG__OVER_HDR + o->size);
    }
    s->over = NULL;
}

int ag__scratch_reserve(ag__scratch *s, size_t bytes) {
    if (bytes <= s->cap)
        return 0;
    ag__chunk_free(s->base, s->cap);
    s->base = NULL;
    s->cap = 0;
    if (!(s->base = ag__chunk_alloc(bytes)))
        return AG_ENOMEM; /* the backward goes on with overflow chunks */
    s->cap = bytes;
    return 0;
}

void ag__scratch_reset(ag__scratch *s) {
    size_t used = atomic_load_explicit(&s->used, memory_order_relaxed);
    s->peak = (used < s->cap ? used : s->cap) + s->over_bytes;
    if (s->over) {
        /* Next time all of it fits in one reservation. */
        ag__free_overflow(s);
        size_t want = s->cap + s->over_bytes;
        ag__chunk_free(s->base, s->cap);
        s->base = NULL;
        s->cap = 0;
        if ((s->base = ag__chunk_alloc(want)))
            s->cap = want;
    }
    s->over_bytes = 0;
    atomic_store_explicit(&s->used, 0, memory_order_relaxed);
}

void ag__scratch_free(ag__scratch *s) {
    ag__free_overflow(s);
    ag__chunk_free(s->base, s->cap);
    s->base = NULL;
    s->cap = 0;
}

/* ---- Gradient blocks ------------------------------------------------------------- */

static inline size_t ag__block_of(const ag_tensor *like) { return ag__round_block(ag__tensor_block_bytes(like)); }

_Atomic bool ag__poison_fresh;

/* A fresh buffer's data: left as it is, or NaN in tests, so that a
 * backward that fails to write some element of it shows. */
static void ag__poison(ag_tensor *g) {
    if (AG__LIKELY(!atomic_load_explicit(&ag__poison_fresh, memory_order_relaxed)))
        return;
    for (int64_t i = 0; i < g->numel; i++)
        ag__store(g, i, NAN);
}

/* A given-back block made for a tensor of the same dtype and shape as
 * `like` (the common case: a graph's gradients come in a few shapes)
 * keeps its header: only its first word (the free-list link, over ctx)
 * needs setting. */
static ag_tensor *ag__reuse_block(void *blk, ag_ctx *ctx, const ag_tensor *like) {
    ag_tensor *g = blk;
    bool same = g->dtype == like->dtype && g->ndim == like->ndim && g->storage->nbytes == like->storage->nbytes;
    for (int d = 0; same && d < like->ndim; d++)
        same = g->shape[d] == like->shape[d];
    if (!same)
        return ag__tensor_in_block(blk, ctx, like);
    g->ctx = ctx;
    return g;
}

static void ag__clear(ag_tensor *g) {
    size_t nbytes = g->storage->nbytes;
    if (nbytes <= 16) { /* the block has room for 16 bytes of data */
        uint64_t *d = g->data;
        d[0] = 0;
        d[1] = 0;
    } else {
        memset(g->data, 0, nbytes);
    }
}

ag_tensor *ag__grad_buffer(ag__task *t, ag__slot *sl, const ag_tensor *like, bool zero) {
    size_t bytes = ag__block_of(like);
    ag_tensor *g = NULL;
    for (int b = 0; b < AG__NBINS && !g; b++) {
        void *blk = sl->bins[b].head;
        if (blk && sl->bins[b].bytes == bytes) {
            sl->bins[b].head = *(void **)blk;
            g = ag__reuse_block(blk, sl->tmp, like);
        }
    }
    if (!g) {
        void *blk = ag__scratch_carve(&t->scratch, bytes);
        if (!blk)
            return NULL;
        g = ag__tensor_in_block(blk, sl->tmp, like);
    }
    if (zero)
        ag__clear(g);
    else
        ag__poison(g);
    return g;
}

/* g (an engine-made gradient no one reads any more) goes back to sl. */
static void ag__give_back(ag__slot *sl, ag_tensor *g) {
    size_t bytes = ag__block_of(g);
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

/* This participant's shares of the leaves, none yet when first needed. */
static ag_tensor **ag__leaf_shares(ag__task *t, ag__slot *sl) {
    if (!sl->leafbuf) {
        if (!(sl->leafbuf = ag__scratch_carve(&t->scratch, t->nleaves * sizeof *sl->leafbuf)))
            return NULL;
        memset(sl->leafbuf, 0, t->nleaves * sizeof *sl->leafbuf);
    }
    return sl->leafbuf;
}

int ag__slots_prepare(ag__task *t, int n) {
    if (n > t->nslots) {
        ag__slot **slots = ag__grow(t->slots, (size_t)t->nslots * sizeof *slots, (size_t)n * sizeof *slots);
        if (!slots)
            return ag__error(AG_ENOMEM, "out of memory in backward");
        t->slots = slots;
        for (; t->nslots < n; t->nslots++) {
            ag__slot *sl = ag__chunk_alloc(sizeof *sl);
            if (!sl)
                return ag__error(AG_ENOMEM, "out of memory in backward");
            memset(sl, 0, sizeof *sl);
            if (!(sl->tmp = ag_ctx_new())) {
                ag__chunk_free(sl, sizeof *sl);
                return AG_ENOMEM;
            }
            t->slots[t->nslots] = sl;
        }
    }
    if (t->max_next > 4)
        for (int s = 0; s < n; s++) {
            ag__slot *sl = t->slots[s];
            if (!(sl->dinp = ag__scratch_carve(&t->scratch, (size_t)t->max_next * sizeof *sl->dinp)) ||
                !(sl->fresh = ag__scratch_carve(&t->scratch, (size_t)t->max_next * sizeof *sl->fresh)))
                return AG_ENOMEM;
        }
    t->nparts = n;
    return 0;
}

/* ---- Sums -------------------------------------------------------------------------- */

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

static void ag__add_into(ag_tensor *dst, const ag_tensor *src) { ag__add_range(dst, src, 0, dst->numel); }

typedef struct {
    const ag__task *t;
    int32_t j;
    ag_tensor *acc;
} ag__sum_job;

/* Each element gets node j's contributions added in edge order, whatever
 * the chunks and whoever runs them. */
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
 * order into the first one; the others go back to sl. */
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
        for (int32_t k = t->in_off[j]; k < t->in_off[j + 1]; k++) {
            ag_tensor *c = t->contrib[t->in_edges[k]];
            if (c && c != acc)
                ag__give_back(sl, c);
        }
    }
    return acc;
}

/* ---- Hand-over between participants ---------------------------------------------------- */

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
        ag__give_back(sl, p);
}

/* ---- Hooks and the commit list ---------------------------------------------------------- */

/* Tensor hooks in registration order; a hook's result replaces the
 * gradient. A tensor that retains its grad keeps it at the point where
 * ag_retain_grad was called among its hooks, as PyTorch 1.13 does (its
 * retain_grad is a hook): *retained is the gradient there. */
int ag__run_hooks(ag_tensor *owner, ag_tensor **grad, ag_tensor **retained) {
    bool want = retained && owner->retains_grad;
    for (ag__hook *h = owner->hooks; h; h = h->next) {
        if (want && h->handle > owner->retain_mark) {
            *retained = *grad;
            want = false;
        }
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
    if (want)
        *retained = *grad;
    return 0;
}

/* Node idx's tensor gets g in the commit. */
static void ag__to_commit(ag__task *t, int32_t idx, ag_tensor *g) {
    t->bufs[idx] = g;
    int32_t k = atomic_fetch_add_explicit(&t->ncommit, 1, memory_order_relaxed);
    t->commit[k] = idx;
}

void ag__fail(ag__task *t, int rc) {
    int expected = 0;
    if (atomic_compare_exchange_strong_explicit(&t->err, &expected, rc, memory_order_relaxed, memory_order_relaxed))
        snprintf(t->errmsg, sizeof t->errmsg, "%s", ag_last_error());
}

/* ---- The runner ------------------------------------------------------------------------- */

/* The index k <= i of the first edge of node idx into the same node as edge i. */
static int ag__first_edge(const int32_t *tgt, int i) {
    int k = 0;
    while (k < i && tgt[k] != tgt[i])
        k++;
    return k;
}

/* Whether a buffer node j gets from this participant now would hold
 * nothing yet: its own per-edge contribution (deterministic), a
 * participant's own buffer (several participants), or the first of j's
 * producers to run (one participant). */
static bool ag__gets_fresh(const ag__task *t, const ag__slot *sl, int32_t j) {
    if (t->det)
        return true;
    if (t->leafidx[j] >= 0)
        return !sl->leafbuf[t->leafidx[j]];
    return t->shared || !t->bufs[j];
}

/* The input of node idx that may receive grad itself (-1: none): one its
 * kind passes dout to, whose producer has grad's dtype and element count,
 * is fed by no other input of the node and would get a fresh buffer. */
static int ag__pass_through(const ag__task *t, const ag__slot *sl, int32_t idx, const ag_tensor *grad) {
    const ag_node *node = t->nodes[idx];
    const int32_t *tgt = t->edges + t->edge_off[idx];
    uint32_t pass = node->kind->passes_grad;
    for (int i = 0; i < node->num_next && i < 32 && pass; i++) {
        int32_t j = tgt[i];
        if (!(pass >> i & 1u) || j < 0)
            continue;
        const ag_tensor *like = t->nodes[j]->out;
        bool once = true;
        for (int k = 0; k < node->num_next; k++)
            once = once && (k == i || tgt[k] != j);
        if (once && like->dtype == grad->dtype && like->numel == grad->numel && ag__gets_fresh(t, sl, j))
            return i;
    }
    return -1;
}

/* The buffer node j gets from this participant: *fresh when it holds
 * nothing yet (then not zeroed). */
static ag_tensor *ag__input_buffer(ag__task *t, ag__slot *sl, int32_t j, bool *fresh) {
    const ag_tensor *like = t->nodes[j]->out;
    *fresh = ag__gets_fresh(t, sl, j);
    if (!*fresh)
        return t->leafidx[j] >= 0 ? sl->leafbuf[t->leafidx[j]] : t->bufs[j];
    ag_tensor *g = ag__grad_buffer(t, sl, like, false);
    if (g && !t->det && t->leafidx[j] >= 0)
        sl->leafbuf[t->leafidx[j]] = g;
    else if (g && !t->det && !t->shared)
        t->bufs[j] = g;
    return g;
}

/* Fills dinp[] and fresh[] for node idx (ag__backward_fn says what they
 * mean), except for input `taken`, which receives grad itself. The same
 * producer feeding two inputs gets one buffer for both, cleared. A kind
 * that does not write fresh buffers gets them cleared. */
static int ag__input_buffers(ag__task *t, int32_t idx, ag__slot *sl, int taken, ag_tensor **dinp, bool *fresh) {
    const ag_node *node = t->nodes[idx];
    const int32_t *tgt = t->edges + t->edge_off[idx];
    for (int i = 0; i < node->num_next; i++) {
        dinp[i] = NULL;
        fresh[i] = false;
        if (tgt[i] < 0 || i == taken)
            continue;
        int k = ag__first_edge(tgt, i);
        if (k < i) {
            if (fresh[k])
                ag__clear(dinp[k]);
            fresh[k] = false;
            dinp[i] = dinp[k];
            continue;
        }
        if (!(dinp[i] = ag__input_buffer(t, sl, tgt[i], &fresh[i])))
            return ag_last_status() ? ag_last_status() : AG_ENOMEM;
        if (fresh[i] && !node->kind->writes_fresh) {
            ag__clear(dinp[i]);
            fresh[i] = false;
        }
    }
    return 0;
}

/* After node idx ran: each input's buffer goes where its producer will
 * find it (taken: grad itself, under the input's shape). A buffer already
 * in place (one participant, a leaf share) stays there. */
static void ag__hand_on(ag__task *t, int32_t idx, ag__slot *sl, ag_tensor **dinp, int taken, ag_tensor *grad) {
    const ag_node *node = t->nodes[idx];
    const int32_t *tgt = t->edges + t->edge_off[idx];
    if (taken >= 0) {
        const ag_tensor *like = t->nodes[tgt[taken]]->out;
        grad->ndim = like->ndim;
        memcpy(grad->shape, like->shape, sizeof grad->shape);
        ag__contiguous_strides(grad->ndim, grad->shape, grad->stride);
        dinp[taken] = grad;
        if (!t->det && t->leafidx[tgt[taken]] >= 0)
            sl->leafbuf[t->leafidx[tgt[taken]]] = grad;
        else if (!t->det && !t->shared)
            t->bufs[tgt[taken]] = grad;
    }
    for (int i = 0; i < node->num_next; i++) {
        int32_t j = tgt[i];
        if (j < 0 || ag__first_edge(tgt, i) != i)
            continue;
        if (t->det)
            t->contrib[t->edge_off[idx] + i] = dinp[i];
        else if (t->shared && t->leafidx[j] < 0)
            ag__hand_over(t, j, dinp[i], sl);
    }
}

int ag__run_node(ag__task *t, int32_t idx, ag__slot *sl) {
    ag_node *node = t->nodes[idx];
    ag_tensor *owner = node->out;
    ag_tensor *grad = t->det ? ag__gather_in_order(t, idx, sl) : t->bufs[idx];
    bool ours = grad != NULL; /* an engine block no one else holds: not once a hook saw it or it is retained */
    int rc;

    if ((rc = ag__node_check_released(node)))
        return rc;
    if (AG__UNLIKELY(owner->hooks || owner->retains_grad)) {
        ag_tensor *retained = NULL;
        if ((rc = ag__run_hooks(owner, &grad, &retained)))
            return rc;
        if (retained)
            ag__to_commit(t, idx, retained);
        ours = false;
    }
    ag_tensor *dinp_small[4];
    bool fresh_small[4];
    ag_tensor **dinp = node->num_next > 4 ? sl->dinp : dinp_small;
    bool *fresh = node->num_next > 4 ? sl->fresh : fresh_small;
    if (!t->det && t->nleaves && !ag__leaf_shares(t, sl))
        return ag_last_status() ? ag_last_status() : AG_ENOMEM;
    int taken = ours && node->kind->passes_grad ? ag__pass_through(t, sl, idx, grad) : -1;
    if ((rc = ag__input_buffers(t, idx, sl, taken, dinp, fresh)))
        return rc;
    rc = node->kind->backward(node, grad, dinp, fresh, sl->tmp);
    if (rc)
        return rc < 0 ? rc : AG_EINVAL;
    if (!t->keep_graph)
        ag__node_release(node);
    if (ours && taken < 0)
        ag__give_back(sl, grad);
    ag__hand_on(t, idx, sl, dinp, taken, grad);
    return 0;
}

void ag__run_node_traced(ag__task *t, int32_t idx, ag__slot *sl) {
    int rc;
    if (AG__UNLIKELY(atomic_load_explicit(&ag__tracing, memory_order_relaxed))) {
        uint64_t t0 = ag__now_ns();
        rc = ag__run_node(t, idx, sl);
        ag__trace_record(t->nodes[idx]->kind->name, t0, ag__now_ns());
    } else {
        rc = ag__run_node(t, idx, sl);
    }
    if (rc)
        ag__fail(t, rc);
}

/* ---- Leaves -------------------------------------------------------------------------------- */

int ag__finish_leaf(ag__task *t, int32_t l, ag__slot *sl) {
    int32_t j = t->leaves[l];
    ag_tensor *owner = t->nodes[j]->out;
    uint64_t t0 = AG__UNLIKELY(atomic_load_explicit(&ag__tracing, memory_order_relaxed)) ? ag__now_ns() : 0;
    ag_tensor *g = NULL;
    if (t->det || j == 0) { /* j == 0: a leaf as the root, its gradient the seed */
        g = t->det ? ag__gather_in_order(t, j, sl) : t->bufs[j];
    } else {
        for (int s = 0; s < t->nparts; s++) {
            ag_tensor *b = t->slots[s]->leafbuf ? t->slots[s]->leafbuf[l] : NULL;
            if (!b)
                continue;
            if (!g)
                g = b;
            else
                ag__add_into(g, b);
        }
    }
    int rc = 0;
    if (g && (!owner->hooks || (rc = ag__run_hooks(owner, &g, NULL)) == 0))
        ag__to_commit(t, j, g);
    if (t0)
        ag__trace_record(ag__accumulate_grad_kind.name, t0, ag__now_ns());
    return rc;
}

static ag__slot *ag__my_slot(ag__task *t) {
    int seat = ws_seat_index();
    return t->slots[seat >= 0 && seat < t->nparts ? seat : 0];
}

void ag__finish_leaves(void *task, int64_t lo, int64_t hi) {
    ag__task *t = task;
    ag__slot *sl = ag__my_slot(t);
    bool prev = ag_set_grad_enabled(false); /* hooks run with grad mode off on every thread */
    for (int64_t l = lo; l < hi && !atomic_load_explicit(&t->err, memory_order_relaxed); l++) {
        int rc = ag__finish_leaf(t, (int32_t)l, sl);
        if (rc)
            ag__fail(t, rc);
    }
    ag_set_grad_enabled(prev);
}

/* ---- Commit ---------------------------------------------------------------------------------- */

/* Striped locks guard .grad of tensors that several backwards (on
 * different application threads) may add into at once. */
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
    uint64_t x = (uint64_t)(uintptr_t)t;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return &ag__grad_locks[x & (AG__GRAD_LOCKS - 1)];
}

int ag__commit_prepare(ag__task *t) {
    int32_t n = atomic_load_explicit(&t->ncommit, memory_order_relaxed);
    for (int32_t k = 0; k < n; k++) {
        ag_tensor *owner = t->nodes[t->commit[k]]->out;
        pthread_mutex_t *lock = ag__grad_lock(owner);
        pthread_mutex_lock(lock);
        bool has = owner->grad != NULL;
        pthread_mutex_unlock(lock);
        t->fresh[k] = NULL;
        if (!has && !(t->fresh[k] = ag__tensor_new_shared(owner->ctx, owner->dtype, owner->ndim, owner->shape)))
            return ag_last_status() ? ag_last_status() : AG_ENOMEM;
    }
    return 0;
}

void ag__commit_range(void *task, int64_t lo, int64_t hi) {
    ag__task *t = task;
    for (int64_t k = lo; k < hi; k++) {
        ag_tensor *owner = t->nodes[t->commit[k]]->out, *g = t->bufs[t->commit[k]];
        pthread_mutex_t *lock = ag__grad_lock(owner);
        pthread_mutex_lock(lock);
        if (owner->grad) {
            ag__add_into(owner->grad, g);
            ag__bump_version(owner->grad);
        } else {
            /* Made up front; only a concurrent ag_set_grad(NULL) on a tensor
             * whose .grad existed then (a race in the program) leaves none. */
            ag_tensor *dst = t->fresh[k];
            if (!dst)
                dst = ag__tensor_new_shared(owner->ctx, owner->dtype, owner->ndim, owner->shape);
            if (dst) {
                memcpy(dst->data, g->data, dst->storage->nbytes);
                owner->grad = dst;
            }
        }
        pthread_mutex_unlock(lock);
    }
}
