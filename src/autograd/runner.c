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
#include "autograd/nodeext.h"
#include "ops/grad_ops.h"

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

/* A hook's replacement for `was` must look like it: PyTorch's checks. */
static int ag__check_replacement(const ag_tensor *r, const ag_tensor *was) {
    if (r->dtype != was->dtype)
        return ag__error(AG_EDTYPE, "hook 'hook' has changed the type of value (was %s got %s)",
                         ag__dtype_torch_name(was->dtype), ag__dtype_torch_name(r->dtype));
    if (!ag__same_shape(r, was)) /* PyTorch 1.13 names no sizes here */
        return ag__error(AG_ESHAPE, "hook 'hook' has changed the size of value");
    if (!r->contiguous) /* the engine reads gradients flat; a copy would need a context of its own */
        return ag__error(AG_EINVAL, "hook 'hook' returned a non-contiguous tensor: return ag_contiguous() of it");
    return 0;
}

/* The tensor's hooks in registration order; a hook's result replaces the
 * gradient. */
static int ag__tensor_hooks(ag_tensor *owner, ag_tensor **grad) {
    for (ag__hook *h = owner->hooks; h; h = h->next) {
        ag_tensor *r = h->fn(*grad, h->user_data);
        int rc;
        if (r && (rc = ag__check_replacement(r, *grad)))
            return rc;
        if (r)
            *grad = r;
    }
    return 0;
}

/* The tensor's hooks, and its retained grad (*retained) where PyTorch 1.13
 * takes it: its retain_grad is a hook placed where it was called, and the
 * tensor's own hooks are one group placed where the first was registered,
 * so retain_grad called before any hook sees the gradient before them all,
 * and after one, after them all. */
int ag__run_hooks(ag_tensor *owner, ag_tensor **grad, ag_tensor **retained) {
    bool want = retained && owner->retains_grad;
    if (want && owner->retain_mark == 0) {
        *retained = *grad;
        want = false;
    }
    int rc = ag__tensor_hooks(owner, grad);
    if (!rc && want)
        *retained = *grad;
    return rc;
}

/* A node hook's result: 0, or its negative code with a message. */
static int ag__node_hook_rc(int rc, const ag_node *node, const char *what) {
    if (rc >= 0)
        return 0;
    if (ag_last_status() != rc) /* the hook set no error of its own */
        ag__error(rc, "a %s of %s failed: %s", what, node->kind->name, ag_strerror(rc));
    return rc;
}

/* Everything that runs before a node's backward, in PyTorch 1.13's order:
 * the output tensor's hooks (one group, placed where the first was
 * registered), its retain_grad (where it was called; *retained) and the
 * node's pre-hooks (each where it was registered). retain_now retains
 * after all of them (backward(inputs=) on a tensor that did not retain).
 * A pre-hook may clear the gradient (*grad NULL): the node then gets none. */
static int ag__pre_chain(ag_node *node, ag_tensor **grad, ag_tensor **retained, bool retain_now) {
    ag_tensor *owner = node->out;
    ag__node_ext *ext = ag__ext(node);
    ag__nhook *p = ext ? atomic_load_explicit(&ext->pre, memory_order_acquire) : NULL;
    if (!p) {
        int rc = ag__run_hooks(owner, grad, retained);
        if (!rc && retain_now && retained)
            *retained = *grad;
        return rc;
    }
    bool d_left = owner->hooks != NULL, r_left = retained && owner->retains_grad;
    bool d_first = owner->retain_mark >= 1; /* the hooks' group came before retain_grad */
    int rc;
    for (; p && *grad; p = atomic_load_explicit(&p->next, memory_order_acquire)) {
        if (atomic_load_explicit(&p->removed, memory_order_relaxed))
            continue;
        /* what was registered before this pre-hook runs first, in its order */
        bool d_due = d_left && p->tensor_hooks_before >= 1, r_due = r_left && p->retain_before;
        if (d_due && (d_first || !r_due)) {
            if ((rc = ag__tensor_hooks(owner, grad)))
                return rc;
            d_left = d_due = false;
        }
        if (r_due) {
            *retained = *grad;
            r_left = false;
        }
        if (d_due) {
            if ((rc = ag__tensor_hooks(owner, grad)))
                return rc;
            d_left = false;
        }
        ag_tensor *was = *grad;
        ag_clear_error();
        if ((rc = ag__node_hook_rc(p->pre(node, grad, 1, p->user_data), node, "pre-hook")))
            return rc;
        if (*grad && *grad != was && (rc = ag__check_replacement(*grad, was)))
            return rc;
    }
    if (!*grad)
        return 0;
    if (d_left && (d_first || !r_left)) {
        if ((rc = ag__tensor_hooks(owner, grad)))
            return rc;
        d_left = false;
    }
    if (r_left)
        *retained = *grad;
    if (d_left && (rc = ag__tensor_hooks(owner, grad)))
        return rc;
    if (retain_now && retained)
        *retained = *grad;
    return 0;
}

/* The node's hooks after its backward: gi[0..n) its input gradients (each
 * may be replaced or cleared), ref[i] the tensor input i's gradient must
 * look like (NULL where no gradient is wanted: whatever a hook puts there
 * is dropped). */
static int ag__post_hooks(ag_node *node, ag__node_ext *ext, ag_tensor **gi, const ag_tensor *const *ref, int n,
                          ag_tensor *grad) {
    ag_tensor *outs[1] = {grad};
    for (ag__nhook *h = atomic_load_explicit(&ext->post, memory_order_acquire); h;
         h = atomic_load_explicit(&h->next, memory_order_acquire)) {
        if (atomic_load_explicit(&h->removed, memory_order_relaxed))
            continue;
        ag_clear_error();
        int rc = ag__node_hook_rc(h->post(node, gi, n, outs, 1, h->user_data), node, "hook");
        if (rc)
            return rc;
        for (int i = 0; i < n; i++) {
            if (!ref[i])
                gi[i] = NULL;
            else if (gi[i] && (rc = ag__check_replacement(gi[i], ref[i])))
                return rc;
        }
    }
    return 0;
}

/* Anomaly mode: PyTorch's check of every gradient a node gives. */
static int ag__check_nan(const ag_node *node, ag_tensor *const *gi, int n) {
    for (int i = 0; i < n; i++)
        if (gi[i] && ag__has_nan(gi[i]))
            return ag__error(AG_ESTATE, "Function '%s' returned nan values in its %dth output.", node->kind->name, i);
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
    if (AG__UNLIKELY(t->special) || AG__UNLIKELY(atomic_load_explicit(&node->ext, memory_order_relaxed) != NULL))
        return ag__run_node_special(t, idx, sl);
    ag_tensor *owner = node->out;
    ag_tensor *grad = t->det ? ag__gather_in_order(t, idx, sl) : t->bufs[idx];
    bool ours = grad != NULL; /* an engine block no one else holds: not once a hook saw it or it is retained */
    int rc;

    if (AG__UNLIKELY(!grad)) /* its producers gave none (custom functions, node hooks) */
        return 0;
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

/* ---- The special runner ------------------------------------------------------------------ */

/* Leaf l's share on this participant becomes (or takes) c, an engine
 * block of this participant's. */
static int ag__leaf_take(ag__task *t, ag__slot *sl, int32_t l, ag_tensor *c) {
    if (!sl->leafbuf) {
        if (!(sl->leafbuf = ag__scratch_carve(&t->scratch, t->nleaves * sizeof *sl->leafbuf)))
            return AG_ENOMEM;
        memset(sl->leafbuf, 0, t->nleaves * sizeof *sl->leafbuf);
    }
    if (!sl->leafbuf[l]) {
        sl->leafbuf[l] = c;
    } else {
        ag__add_into(sl->leafbuf[l], c);
        ag__give_back(sl, c);
    }
    return 0;
}

/* c, node idx's gradient for its input i (an engine block of sl's), goes
 * to that input's producer j. */
static int ag__give_to(ag__task *t, int32_t idx, int i, int32_t j, ag_tensor *c, ag__slot *sl) {
    if (t->det) {
        t->contrib[t->edge_off[idx] + i] = c;
        return 0;
    }
    if (t->leafidx[j] >= 0)
        return ag__leaf_take(t, sl, t->leafidx[j], c);
    if (!t->shared) {
        if (!t->bufs[j]) {
            t->bufs[j] = c;
        } else {
            ag__add_into(t->bufs[j], c);
            ag__give_back(sl, c);
        }
        return 0;
    }
    ag__hand_over(t, j, c, sl);
    return 0;
}

/* The tensor input i's gradient must look like: its producer's output. */
static void ag__refs(const ag__task *t, int32_t idx, const ag_tensor **ref) {
    const int32_t *tgt = t->edges + t->edge_off[idx];
    for (int i = 0; i < t->nodes[idx]->num_next; i++)
        ref[i] = tgt[i] >= 0 ? t->nodes[tgt[i]]->out : NULL;
}

/* Runs node idx's backward into zeroed buffers (sl->sp_a, copied to
 * sl->sp_b where hooks may replace them), then its post hooks and the
 * anomaly check. */
static int ag__special_run(ag__task *t, int32_t idx, ag__slot *sl, ag_tensor *grad, bool root, bool *posted_out) {
    ag_node *node = t->nodes[idx];
    ag__node_ext *ext = ag__ext(node);
    int rc;
    int nn = node->num_next;
    const int32_t *tgt = t->edges + t->edge_off[idx];
    ag_tensor **orig = sl->sp_a, **gi = sl->sp_b;
    for (int i = 0; i < nn; i++) {
        orig[i] = tgt[i] >= 0 ? ag__grad_buffer(t, sl, t->nodes[tgt[i]]->out, true) : NULL;
        if (tgt[i] >= 0 && !orig[i])
            return ag_last_status() ? ag_last_status() : AG_ENOMEM;
        gi[i] = orig[i];
    }
    bool *fresh = sl->sp_need; /* all false: the buffers are zeroed */
    memset(fresh, 0, (size_t)(nn > 0 ? nn : 1) * sizeof *fresh);
    if ((rc = node->kind->backward(node, grad, gi, fresh, sl->tmp)))
        return rc < 0 ? rc : AG_EINVAL;
    if (!t->keep_graph && !root)
        ag__node_release(node);
    bool posted = *posted_out = ext && atomic_load_explicit(&ext->post, memory_order_acquire);
    if (posted && (rc = ag__post_hooks(node, ext, gi, (const ag_tensor *const *)orig, nn, grad)))
        return rc;
    if (t->anomaly && (rc = ag__check_nan(node, gi, nn)))
        return rc;
    return 0;
}

/* Hands node idx's input gradients on; an entry a hook cleared or a
 * custom function left empty goes back to the slot. */
static int ag__special_hand_on(ag__task *t, int32_t idx, ag__slot *sl, int nn, bool posted) {
    const int32_t *tgt = t->edges + t->edge_off[idx];
    ag_tensor **orig = sl->sp_a, **gi = sl->sp_b;
    int rc;
    for (int i = 0; i < nn; i++) {
        ag_tensor *c = orig[i];
        if (!c)
            continue;
        if (!gi[i]) { /* none for this input */
            if (!posted)
                ag__give_back(sl, c);
            continue;
        }
        if (gi[i] != c) { /* a hook's tensor: into an engine block of ours */
            if (!(c = ag__grad_buffer(t, sl, c, true)))
                return ag_last_status() ? ag_last_status() : AG_ENOMEM;
            ag__add_into(c, gi[i]);
        }
        if ((rc = ag__give_to(t, idx, i, tgt[i], c, sl)))
            return rc;
    }
    return 0;
}

/* Without create_graph: the node's backward adds into a zeroed buffer per
 * input (never shared between inputs), so that hooks see each input's own
 * gradient, a custom function may give none (it clears its entry), and
 * anomaly mode checks what this node gave. */
static int ag__special_plain(ag__task *t, int32_t idx, ag__slot *sl) {
    ag_node *node = t->nodes[idx];
    bool root = idx == 0 && t->groot;
    uint8_t fl = t->nflags[idx];
    ag_tensor *grad = t->det ? ag__gather_in_order(t, idx, sl) : t->bufs[idx];
    bool give_back = !root;
    int rc;
    if ((fl & AG__NF_CAPTURE) && !t->accumulate) {
        t->bufs[idx] = grad; /* an output of grad(), taken before its hooks */
        give_back = false;
    }
    if (!grad && !root)
        return 0;
    ag__node_ext *ext = ag__ext(node);
    if (!root) {
        if ((rc = ag__node_check_released(node)))
            return rc;
        bool retain_now = (fl & AG__NF_CAPTURE) && t->accumulate;
        if (node->out->hooks || node->out->retains_grad || retain_now || (ext && ext->pre))
            give_back = false; /* a hook may hold it; a retained grad is committed */
        ag_tensor *retained = NULL;
        if ((rc = ag__pre_chain(node, &grad, &retained, retain_now)))
            return rc;
        if (retained)
            ag__to_commit(t, idx, retained);
        if (!grad)
            return 0;
    }
    int nn = node->num_next;
    bool posted = false;
    if ((rc = ag__special_run(t, idx, sl, grad, root, &posted)) || (rc = ag__special_hand_on(t, idx, sl, nn, posted)))
        return rc;
    if (give_back && grad)
        ag__give_back(sl, grad);
    return 0;
}

/* create_graph: node j's gradient, its contributions summed by recorded
 * adds in edge order (deterministic mode). */
static int ag__gather_graph(ag__task *t, int32_t j, ag_tensor **out) {
    ag_tensor *acc = NULL;
    for (int32_t k = t->in_off[j]; k < t->in_off[j + 1]; k++) {
        ag_tensor *c = t->contrib[t->in_edges[k]];
        if (!c)
            continue;
        if (acc && !(c = ag_add(t->gctx, acc, c)))
            return ag_last_status() ? ag_last_status() : AG_ENOMEM;
        acc = c;
    }
    *out = acc ? acc : t->bufs[j];
    return 0;
}

/* create_graph: c, node idx's gradient for input i, joins producer j's
 * gradient as PyTorch's input buffer does: old + new, recorded. On several
 * participants a producer takes the gradient there is, adds outside the
 * lock, and tries again until it finds none to add to. */
static int ag__give_graph(ag__task *t, int32_t idx, int i, int32_t j, ag_tensor *c) {
    if (t->det) {
        t->contrib[t->edge_off[idx] + i] = c;
        return 0;
    }
    if (!t->shared || t->deps[j] == 1) {
        if (t->bufs[j] && !(c = ag_add(t->gctx, t->bufs[j], c)))
            return ag_last_status() ? ag_last_status() : AG_ENOMEM;
        t->bufs[j] = c;
        return 0;
    }
    for (;;) {
        ag__spin_lock(&t->locks[j]);
        ag_tensor *b = t->bufs[j];
        t->bufs[j] = b ? NULL : c;
        ag__spin_unlock(&t->locks[j]);
        if (!b)
            return 0;
        if (!(c = ag_add(t->gctx, b, c)))
            return ag_last_status() ? ag_last_status() : AG_ENOMEM;
    }
}

/* A gradient a backward_graph gave for input i, made to look like ref:
 * cast to its dtype and summed down to its shape when ref's shape
 * broadcasts to it (PyTorch's validate_outputs), else PyTorch's error. */
static int ag__conform(ag__task *t, const ag_node *node, int i, ag_tensor **g, const ag_tensor *ref) {
    ag_tensor *c = *g;
    if (c->dtype != ref->dtype && !(c = ag__cast_copy(t->gctx, c, ref->dtype)))
        return ag_last_status() ? ag_last_status() : AG_ENOMEM;
    if (!ag__same_shape(c, ref)) {
        if (!ag__expandable(ref, c))
            return ag__invalid_gradient(node->kind->name, i, c, ref);
        if (!(c = ag__sum_to(t->gctx, c, ref->ndim, ref->shape)))
            return ag_last_status() ? ag_last_status() : AG_ENOMEM;
    }
    *g = c;
    return 0;
}

static int ag__graph_node(ag__task *t, int32_t idx, ag__slot *sl) {
    ag_node *node = t->nodes[idx];
    bool root = idx == 0 && t->groot;
    uint8_t fl = t->nflags[idx];
    ag_tensor *grad;
    int rc;
    if (!t->det)
        grad = t->bufs[idx];
    else if ((rc = ag__gather_graph(t, idx, &grad)))
        return rc;
    if ((fl & AG__NF_CAPTURE) && !t->accumulate)
        t->bufs[idx] = grad;
    if (!grad && !root)
        return 0;
    if (!root) {
        if ((rc = ag__node_check_released(node)))
            return rc;
        ag_tensor *retained = NULL;
        if ((rc = ag__pre_chain(node, &grad, &retained, (fl & AG__NF_CAPTURE) && t->accumulate)))
            return rc;
        if (retained)
            ag__to_commit(t, idx, retained);
        if (!grad)
            return 0;
    }
    if (!node->kind->backward_graph)
        return ag__error(AG_EUNSUPPORTED,
                         "create_graph: %s cannot record its backward yet, so gradients through it cannot be "
                         "differentiated again",
                         node->kind->name);
    int nn = node->num_next;
    const int32_t *tgt = t->edges + t->edge_off[idx];
    ag_tensor **gi = sl->sp_b;
    const ag_tensor **ref = (const ag_tensor **)sl->sp_a;
    bool *need = sl->sp_need;
    ag__refs(t, idx, ref);
    for (int i = 0; i < nn; i++) {
        need[i] = tgt[i] >= 0;
        gi[i] = NULL;
    }
    if ((rc = node->kind->backward_graph(node, grad, need, gi, t->gctx)))
        return rc < 0 ? rc : AG_EINVAL;
    for (int i = 0; i < nn; i++) {
        if (!need[i])
            gi[i] = NULL;
        else if (gi[i] && (rc = ag__conform(t, node, i, &gi[i], ref[i])))
            return rc;
    }
    if (!t->keep_graph && !root)
        ag__node_release(node);
    ag__node_ext *ext = ag__ext(node);
    if (ext && atomic_load_explicit(&ext->post, memory_order_acquire) &&
        (rc = ag__post_hooks(node, ext, gi, ref, nn, grad)))
        return rc;
    if (t->anomaly && (rc = ag__check_nan(node, gi, nn)))
        return rc;
    for (int i = 0; i < nn; i++)
        if (gi[i] && (rc = ag__give_graph(t, idx, i, tgt[i], gi[i])))
            return rc;
    return 0;
}

/* create_graph: what this participant records goes to its own context,
 * with grad mode on. */
static int ag__special_graph(ag__task *t, int32_t idx, ag__slot *sl) {
    ag__redirect saved;
    ag__ctx_redirect(t->gctx, sl->gctx, &saved);
    bool prev = ag_set_grad_enabled(true);
    int rc = ag__graph_node(t, idx, sl);
    ag_set_grad_enabled(prev);
    ag__ctx_redirect_restore(&saved);
    return rc;
}

/* The special runner's arrays of sl: carved up front when the whole
 * backward needs them, else by the first node with hooks. */
static int ag__special_arrays(ag__task *t, ag__slot *sl) {
    size_t m = (size_t)(t->max_next > 0 ? t->max_next : 1);
    if (!(sl->sp_a = ag__scratch_carve(&t->scratch, m * sizeof(ag_tensor *))) ||
        !(sl->sp_b = ag__scratch_carve(&t->scratch, m * sizeof(ag_tensor *))) ||
        !(sl->sp_need = ag__scratch_carve(&t->scratch, m * sizeof(bool))))
        return AG_ENOMEM;
    return 0;
}

int ag__run_node_special(ag__task *t, int32_t idx, ag__slot *sl) {
    if (AG__UNLIKELY(!sl->sp_need) && ag__special_arrays(t, sl))
        return AG_ENOMEM;
    int rc = t->graph ? ag__special_graph(t, idx, sl) : ag__special_plain(t, idx, sl);
    if (rc && t->anomaly)
        ag__anomaly_note(t->nodes[idx]);
    return rc;
}

/* ---- The graph root ------------------------------------------------------------------------
 * Node 0 of a backward with several roots or inputs: edge i goes to root
 * i, attr holds the seeds (NULL: ones), one per root. */

static int ag__graph_root_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                   ag_ctx *scratch) {
    AG__UNUSED(dout);
    AG__UNUSED(fresh); /* the special runner gives zeroed buffers */
    AG__UNUSED(scratch);
    ag_tensor *const *seeds = node->attr;
    for (int i = 0; i < node->num_next; i++) {
        ag_tensor *d = dinp[i];
        if (!d)
            continue;
        if (!seeds[i])
            for (int64_t e = 0; e < d->numel; e++)
                ag__store(d, e, ag__load(d, e) + 1.0);
        else if (seeds[i]->dtype == d->dtype)
            ag__add_into(d, seeds[i]);
        else
            for (int64_t e = 0; e < d->numel; e++)
                ag__store(d, e, ag__load(d, e) + ag__load(seeds[i], e));
    }
    return 0;
}

/* create_graph: the seeds themselves (they may have history), ones where
 * none was given (without history, as PyTorch's ones_like). */
static int ag__graph_root_backward_graph(ag_node *node, ag_tensor *dout, const bool *need, ag_tensor **dinp,
                                         ag_ctx *ctx) {
    AG__UNUSED(dout);
    ag_tensor *const *seeds = node->attr;
    for (int i = 0; i < node->num_next; i++) {
        if (!need[i])
            continue;
        const ag_tensor *root = node->next[i]->out;
        dinp[i] = seeds[i] ? seeds[i] : ag_ones(ctx, root->dtype, root->ndim, root->shape);
        if (!dinp[i])
            return ag_last_status() ? ag_last_status() : AG_ENOMEM;
    }
    return 0;
}

const ag__node_kind ag__graph_root_kind = {
    .name = "GraphRoot", .backward = ag__graph_root_backward, .backward_graph = ag__graph_root_backward_graph};

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

/* A leaf's gradient with the hooks of its AccumulateGrad node: the
 * pre-chain (the leaf's hooks and the node's pre-hooks), then the node's
 * hooks, which see it as grad_outputs with no grad_inputs. */
static int ag__leaf_hooks(ag_node *node, ag__node_ext *ext, ag_tensor **g) {
    int rc;
    if ((rc = ag__pre_chain(node, g, NULL, false)) || !*g)
        return rc;
    if (atomic_load_explicit(&ext->post, memory_order_acquire))
        return ag__post_hooks(node, ext, NULL, NULL, 0, *g);
    return 0;
}

/* create_graph: the leaf's (or sink's) gradient is a recorded tensor. */
static int ag__finish_leaf_graph(ag__task *t, int32_t j, ag__slot *sl) {
    ag__redirect saved;
    ag__ctx_redirect(t->gctx, sl->gctx, &saved);
    bool prev = ag_set_grad_enabled(true);
    ag_node *node = t->nodes[j];
    ag_tensor *g;
    int rc = t->det ? ag__gather_graph(t, j, &g) : (g = t->bufs[j], 0);
    if (!rc && !t->accumulate) {
        t->bufs[j] = g;
    } else if (!rc && g) {
        ag__node_ext *ext = ag__ext(node);
        rc = ext ? ag__leaf_hooks(node, ext, &g) : node->out->hooks ? ag__run_hooks(node->out, &g, NULL) : 0;
        if (!rc && g)
            ag__to_commit(t, j, g);
    }
    ag_set_grad_enabled(prev);
    ag__ctx_redirect_restore(&saved);
    return rc;
}

int ag__finish_leaf(ag__task *t, int32_t l, ag__slot *sl) {
    int32_t j = t->leaves[l];
    ag_node *node = t->nodes[j];
    ag_tensor *owner = node->out;
    uint64_t t0 = AG__UNLIKELY(atomic_load_explicit(&ag__tracing, memory_order_relaxed)) ? ag__now_ns() : 0;
    if (AG__UNLIKELY(t->graph)) {
        int rc = ag__finish_leaf_graph(t, j, sl);
        if (t0)
            ag__trace_record(ag__accumulate_grad_kind.name, t0, ag__now_ns());
        return rc;
    }
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
    ag__node_ext *ext = ag__ext(node);
    if (AG__UNLIKELY(!t->accumulate)) /* grad(): an output, taken before any hook */
        t->bufs[j] = g;
    else if (g && AG__UNLIKELY(ext != NULL))
        rc = ag__leaf_hooks(node, ext, &g);
    else if (g && owner->hooks)
        rc = ag__run_hooks(owner, &g, NULL);
    if (!rc && g && t->accumulate)
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

pthread_mutex_t *ag__grad_lock(const ag_tensor *t) {
    uint64_t x = (uint64_t)(uintptr_t)t;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return &ag__grad_locks[x & (AG__GRAD_LOCKS - 1)];
}

static inline int ag__stripe(const ag_tensor *t) { return (int)(ag__grad_lock(t) - ag__grad_locks); }

/* create_graph: each .grad becomes a recorded tensor in gctx, as PyTorch's
 * AccumulateGrad and retain_grad make it under grad mode: a copy (leaves,
 * CopyBackwards; retained grads, CloneBackward0) or old + new. Every new
 * .grad and its ownership record is made first with the .grad locks of all
 * of them held (taken in one order, so no two backwards deadlock), then
 * the fields change at once: a failure changes none, and a backward on
 * another thread adding into the same leaf meanwhile is not lost. */
static int ag__commit_graph(ag__task *t) {
    int32_t n = atomic_load_explicit(&t->ncommit, memory_order_relaxed);
    uint64_t mask = 0;
    for (int32_t k = 0; k < n; k++)
        mask |= UINT64_C(1) << ag__stripe(t->nodes[t->commit[k]]->out);
    for (int b = 0; b < AG__GRAD_LOCKS; b++)
        if (mask >> b & 1)
            pthread_mutex_lock(&ag__grad_locks[b]);
    int rc = 0;
    ag__grad_link **links = ag__scratch_carve(&t->scratch, (size_t)(n > 0 ? n : 1) * sizeof *links);
    if (!links)
        rc = AG_ENOMEM;
    for (int32_t k = 0; k < n && !rc; k++) {
        ag_tensor *owner = t->nodes[t->commit[k]]->out, *g = t->bufs[t->commit[k]];
        ag_tensor *old = owner->grad;
        t->fresh[k] = old ? ag_add(t->gctx, old, g) : owner->grad_fn ? ag_clone(t->gctx, g) : ag__copy_grad(t->gctx, g);
        links[k] = NULL;
        if (!t->fresh[k] || (owner->ctx != t->gctx && !(links[k] = ag__grad_link_new(t->gctx))))
            rc = ag_last_status() ? ag_last_status() : AG_ENOMEM;
    }
    if (!rc)
        for (int32_t k = 0; k < n; k++)
            t->nodes[t->commit[k]]->out->grad = t->fresh[k];
    for (int b = AG__GRAD_LOCKS; b-- > 0;)
        if (mask >> b & 1)
            pthread_mutex_unlock(&ag__grad_locks[b]);
    if (!rc)
        for (int32_t k = 0; k < n; k++)
            if (links[k])
                ag__grad_link_add(links[k], t->nodes[t->commit[k]]->out, t->fresh[k]);
    return rc;
}

int ag__commit_prepare(ag__task *t) {
    if (AG__UNLIKELY(t->graph))
        return ag__commit_graph(t);
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
    if (t->graph) /* done by ag__commit_graph */
        return;
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
