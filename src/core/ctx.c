/* Contexts: arenas that hand out tensor memory with a bump pointer and free
 * it all at once on reset. Chunks come from a private jemalloc arena through
 * jemalloc's own API (mallocx/dallocx), so the application's malloc is never
 * replaced; without jemalloc they come from aligned_alloc. */
#include "core/checked.h"
#include "core/internal.h"

#include <pthread.h>
#include <stdlib.h>

#ifdef AG_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#define AG__CHUNK_MIN ((size_t)64 << 10) /* first chunk of a context */
#define AG__CHUNK_MAX ((size_t)8 << 20)  /* chunks stop doubling here */

typedef struct ag__chunk {
    struct ag__chunk *next;
    size_t size; /* bytes usable after the header */
    size_t used;
} ag__chunk;

#define AG__CHUNK_HDR (((sizeof(ag__chunk) + AG__ALIGN - 1) / AG__ALIGN) * AG__ALIGN)

/* One bump region: a list of chunks, newest first. Allocations larger than
 * a quarter of the next chunk size get a chunk of their own ("large"), so a
 * big tensor never wastes the tail of a regular chunk. */
typedef struct ag__region {
    ag__chunk *chunks; /* regular chunks; the head is the one being filled */
    ag__chunk *large;  /* single-allocation chunks, freed on reset */
    size_t next_size;  /* size of the next regular chunk */
    size_t handed_out; /* bytes handed out since the last reset */
} ag__region;

struct ag_ctx {
    ag__region main; /* owner thread only (API.md: one thread at a time) */
    /* shared: .grad buffers that a backward running on any thread creates for
     * leaves of this context. Guarded by shared_lock. */
    pthread_mutex_t shared_lock;
    ag__region shared;
    /* create_graph backwards recording into this context now: while above
     * 0, allocations look for this thread's redirect (ag__ctx_redirect). */
    _Atomic int redirects;
    /* .grad links (ag__grad_link), guarded by ag__links_lock: the .grad
     * tensors this context owns for tensors of others, and the tensors of
     * this context whose .grad another owns. nlinks counts both, so a
     * reset without any reads one atomic. */
    ag__grad_link *owned, *lent;
    _Atomic int nlinks;
};

struct ag__grad_link {
    ag_tensor *t, *grad;
    ag_ctx *owner, *tctx;
    ag__grad_link *onext, *oprev; /* owner->owned */
    ag__grad_link *tnext, *tprev; /* tctx->lent */
};

static pthread_mutex_t ag__links_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- Failure injection ------------------------------------------------------------
 * SQLite's way of testing what happens when memory runs out: every heap
 * allocation agrad makes (arena chunks, the engine's arrays, print and DOT
 * buffers) asks ag__fault_should_fail first, and a test can make the n-th
 * one from now fail. The scheduler's allocations and thread starts ask the
 * same function when a test wires it in (ws__fault_hook). Disarmed, it
 * costs one relaxed load. */
static _Atomic bool ag__fault_armed;
static _Atomic bool ag__fault_persist;
static _Atomic int64_t ag__fault_at;      /* the counted call that fails */
static _Atomic int64_t ag__fault_count;   /* calls counted since armed */
static _Atomic int64_t ag__fault_nhits;   /* calls failed since armed */
static _Atomic int64_t ag__fault_nthread; /* of them, thread starts */

void ag__fault_inject(int64_t n, bool persistent) {
    atomic_store(&ag__fault_armed, false);
    if (n < 0) /* disarmed: the counts stay for the test to read */
        return;
    atomic_store(&ag__fault_count, 0);
    atomic_store(&ag__fault_nhits, 0);
    atomic_store(&ag__fault_nthread, 0);
    atomic_store(&ag__fault_persist, persistent);
    atomic_store(&ag__fault_at, n > 0 ? n : INT64_MAX);
    atomic_store(&ag__fault_armed, true);
}

bool ag__fault_should_fail(int what) {
    if (AG__LIKELY(!atomic_load_explicit(&ag__fault_armed, memory_order_relaxed)))
        return false;
    int64_t k = atomic_fetch_add_explicit(&ag__fault_count, 1, memory_order_relaxed) + 1;
    int64_t at = atomic_load_explicit(&ag__fault_at, memory_order_relaxed);
    if (k < at || (k > at && !atomic_load_explicit(&ag__fault_persist, memory_order_relaxed)))
        return false;
    atomic_fetch_add_explicit(&ag__fault_nhits, 1, memory_order_relaxed);
    if (what == AG__FAULT_THREAD)
        atomic_fetch_add_explicit(&ag__fault_nthread, 1, memory_order_relaxed);
    return true;
}

int64_t ag__fault_calls(void) { return atomic_load(&ag__fault_count); }
int64_t ag__fault_hits(void) { return atomic_load(&ag__fault_nhits); }
int64_t ag__fault_thread_hits(void) { return atomic_load(&ag__fault_nthread); }

void *ag__realloc(void *p, size_t nbytes) {
    if (ag__fault_should_fail(AG__FAULT_ALLOC))
        return NULL;
    return realloc(p, nbytes);
}

/* ---- Chunk memory ------------------------------------------------------------ */

static _Atomic uint64_t ag__heap_call_count;

#ifdef AG_HAVE_JEMALLOC
static unsigned ag__je_arena;
static int ag__je_flags; /* 0 until the arena exists: then plain mallocx */
static pthread_once_t ag__je_once = PTHREAD_ONCE_INIT;

static void ag__je_init(void) {
    unsigned arena;
    size_t sz = sizeof arena;
    /* A private arena keeps tensor memory apart from whatever else the
     * process allocates through jemalloc. */
    if (mallctl("arenas.create", &arena, &sz, NULL, 0) == 0) {
        ag__je_arena = arena;
        ag__je_flags = (int)MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE;
    }
}
#endif

void *ag__chunk_alloc(size_t nbytes) {
    if (ag__fault_should_fail(AG__FAULT_ALLOC) || nbytes > PTRDIFF_MAX)
        return NULL;
    atomic_fetch_add_explicit(&ag__heap_call_count, 1, memory_order_relaxed);
#ifdef AG_HAVE_JEMALLOC
    pthread_once(&ag__je_once, ag__je_init);
    return mallocx(nbytes, ag__je_flags | MALLOCX_ALIGN(AG__ALIGN));
#else
    size_t rounded = (nbytes + AG__ALIGN - 1) / AG__ALIGN * AG__ALIGN; /* nbytes <= PTRDIFF_MAX: no wrap */
    return aligned_alloc(AG__ALIGN, rounded);
#endif
}

void ag__chunk_free(void *p, size_t nbytes) {
    if (!p)
        return;
    atomic_fetch_add_explicit(&ag__heap_call_count, 1, memory_order_relaxed);
    AG__UNUSED(nbytes);
#ifdef AG_HAVE_JEMALLOC
    dallocx(p, ag__je_flags);
#else
    free(p);
#endif
}

uint64_t ag__heap_calls(void) { return atomic_load_explicit(&ag__heap_call_count, memory_order_relaxed); }

/* ---- Regions ------------------------------------------------------------------- */

static ag__chunk *ag__chunk_new(size_t usable) {
    size_t total;
    ag__chunk *c = ag__size_add_ok(AG__CHUNK_HDR, usable, &total) ? ag__chunk_alloc(total) : NULL;
    if (!c)
        return NULL;
    c->next = NULL;
    c->size = usable;
    c->used = 0;
    return c;
}

static void ag__region_init(ag__region *r) {
    memset(r, 0, sizeof *r);
    r->next_size = AG__CHUNK_MIN;
}

static void *ag__region_alloc(ag__region *r, size_t nbytes) {
    size_t n;
    if (!ag__size_add_ok(nbytes, AG__MIN_ALIGN - 1, &n))
        return ag__error_null(AG_ENOMEM, "out of memory allocating %zu bytes", nbytes);
    n = n / AG__MIN_ALIGN * AG__MIN_ALIGN;
    ag__chunk *c = r->chunks;
    if (AG__LIKELY(c && c->size - c->used >= n)) {
        void *p = (char *)c + AG__CHUNK_HDR + c->used;
        c->used += n;
        r->handed_out += n;
        return p;
    }
    if (n > r->next_size / 4) {
        ag__chunk *big = ag__chunk_new(n);
        if (!big)
            return ag__error_null(AG_ENOMEM, "out of memory allocating %zu bytes", nbytes);
        big->used = n;
        big->next = r->large;
        r->large = big;
        r->handed_out += n;
        return (char *)big + AG__CHUNK_HDR;
    }
    ag__chunk *fresh = ag__chunk_new(r->next_size);
    if (!fresh)
        return ag__error_null(AG_ENOMEM, "out of memory allocating %zu bytes", nbytes);
    if (r->next_size < AG__CHUNK_MAX)
        r->next_size *= 2;
    fresh->next = r->chunks;
    r->chunks = fresh;
    fresh->used = n;
    r->handed_out += n;
    return (char *)fresh + AG__CHUNK_HDR;
}

static void ag__region_free_list(ag__chunk *c) {
    while (c) {
        ag__chunk *next = c->next;
        ag__chunk_free(c, AG__CHUNK_HDR + c->size);
        c = next;
    }
}

/* Reset keeps memory for the next round: a context reset every training step
 * settles on a single chunk as large as the step needed, so that after the
 * first steps a reset and the next step's allocations make no heap calls. */
static void ag__region_reset(ag__region *r) {
    /* Large allocations count too: folded into the merged chunk, the next
     * round of the same step fits without going back to the heap. */
    size_t large = 0;
    for (ag__chunk *k = r->large; k; k = k->next)
        large += k->size;
    ag__region_free_list(r->large);
    r->large = NULL;
    ag__chunk *c = r->chunks;
    if ((c && c->next) || large) {
        size_t total = large;
        for (ag__chunk *k = c; k; k = k->next)
            total += k->size;
        ag__region_free_list(c);
        r->chunks = ag__chunk_new(total);
        r->next_size = total < AG__CHUNK_MAX ? total : AG__CHUNK_MAX;
        if (r->next_size < AG__CHUNK_MIN)
            r->next_size = AG__CHUNK_MIN;
    } else if (c) {
        c->used = 0;
    }
    r->handed_out = 0;
}

static void ag__region_destroy(ag__region *r) {
    ag__region_free_list(r->large);
    ag__region_free_list(r->chunks);
    memset(r, 0, sizeof *r);
}

/* ---- create_graph: redirected allocations and adoption ---------------------------- */

static _Thread_local ag__redirect ag__redir;

void ag__ctx_redirect(ag_ctx *from, ag_ctx *to, ag__redirect *saved) {
    *saved = ag__redir;
    ag__redir.from = to ? from : NULL;
    ag__redir.to = to;
}

void ag__ctx_redirect_restore(const ag__redirect *saved) { ag__redir = *saved; }

void ag__ctx_redirects(ag_ctx *ctx, int delta) {
    atomic_fetch_add_explicit(&ctx->redirects, delta, memory_order_relaxed);
}

/* src's chunks join dst's single-allocation list: freed (and counted into
 * the merged chunk) when dst is reset. */
void ag__ctx_adopt(ag_ctx *dst, ag_ctx *src) {
    ag__region *s = &src->main, *d = &dst->main;
    ag__chunk *lists[2] = {s->chunks, s->large};
    for (int k = 0; k < 2; k++) {
        for (ag__chunk *c = lists[k], *next; c; c = next) {
            next = c->next;
            c->next = d->large;
            d->large = c;
        }
    }
    d->handed_out += s->handed_out;
    size_t next_size = s->next_size;
    ag__region_init(s);
    s->next_size = next_size; /* the next backward starts with chunks of the size this one grew to */
}

/* ---- .grad links ------------------------------------------------------------------------ */

ag__grad_link *ag__grad_link_new(ag_ctx *owner) {
    ag__grad_link *l = ag__ctx_alloc_shared(owner, sizeof *l);
    if (l)
        memset(l, 0, sizeof *l);
    return l;
}

void ag__grad_link_add(ag__grad_link *l, ag_tensor *t, ag_tensor *grad) {
    pthread_mutex_lock(&ag__links_lock);
    l->t = t;
    l->grad = grad;
    l->owner = grad->ctx;
    l->tctx = t->ctx;
    l->oprev = NULL;
    l->onext = l->owner->owned;
    if (l->onext)
        l->onext->oprev = l;
    l->owner->owned = l;
    l->tprev = NULL;
    l->tnext = l->tctx->lent;
    if (l->tnext)
        l->tnext->tprev = l;
    l->tctx->lent = l;
    atomic_fetch_add_explicit(&l->owner->nlinks, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->tctx->nlinks, 1, memory_order_relaxed);
    pthread_mutex_unlock(&ag__links_lock);
}

/* ctx is going (reset or freed): every .grad it owns is cleared where it
 * is still the tensor's .grad, and its tensors leave other contexts'
 * lists. */
static void ag__grad_links_drop(ag_ctx *ctx) {
    if (!atomic_load_explicit(&ctx->nlinks, memory_order_relaxed))
        return;
    pthread_mutex_lock(&ag__links_lock);
    for (ag__grad_link *l = ctx->owned; l; l = l->onext) {
        pthread_mutex_t *lock = ag__grad_lock(l->t);
        pthread_mutex_lock(lock);
        if (l->t->grad == l->grad)
            l->t->grad = NULL;
        pthread_mutex_unlock(lock);
        if (l->tprev)
            l->tprev->tnext = l->tnext;
        else
            l->tctx->lent = l->tnext;
        if (l->tnext)
            l->tnext->tprev = l->tprev;
        atomic_fetch_sub_explicit(&l->tctx->nlinks, 1, memory_order_relaxed);
    }
    for (ag__grad_link *l = ctx->lent; l; l = l->tnext) {
        if (l->oprev)
            l->oprev->onext = l->onext;
        else
            l->owner->owned = l->onext;
        if (l->onext)
            l->onext->oprev = l->oprev;
        atomic_fetch_sub_explicit(&l->owner->nlinks, 1, memory_order_relaxed);
    }
    ctx->owned = NULL;
    ctx->lent = NULL;
    atomic_store_explicit(&ctx->nlinks, 0, memory_order_relaxed);
    pthread_mutex_unlock(&ag__links_lock);
}

/* ---- Contexts -------------------------------------------------------------------- */

ag_ctx *ag_ctx_new(void) {
    ag_ctx *ctx = ag__chunk_alloc(sizeof *ctx);
    if (!ctx)
        return ag__error_null(AG_ENOMEM, "out of memory creating a context");
    ag__region_init(&ctx->main);
    ag__region_init(&ctx->shared);
    pthread_mutex_init(&ctx->shared_lock, NULL);
    atomic_init(&ctx->redirects, 0);
    ctx->owned = ctx->lent = NULL;
    atomic_init(&ctx->nlinks, 0);
    return ctx;
}

void ag_ctx_reset(ag_ctx *ctx) {
    if (!ctx)
        return;
    ag__grad_links_drop(ctx);
    ag__views_release(ctx);
    ag__region_reset(&ctx->main);
    pthread_mutex_lock(&ctx->shared_lock);
    ag__region_reset(&ctx->shared);
    pthread_mutex_unlock(&ctx->shared_lock);
}

void ag_ctx_free(ag_ctx *ctx) {
    if (!ctx)
        return;
    ag__grad_links_drop(ctx);
    ag__views_release(ctx);
    ag__region_destroy(&ctx->main);
    ag__region_destroy(&ctx->shared);
    pthread_mutex_destroy(&ctx->shared_lock);
    ag__chunk_free(ctx, sizeof *ctx);
}

size_t ag_ctx_bytes(const ag_ctx *ctx) { return ctx ? ctx->main.handed_out + ctx->shared.handed_out : 0; }

void *ag__ctx_alloc(ag_ctx *ctx, size_t nbytes) {
    if (AG__UNLIKELY(atomic_load_explicit(&ctx->redirects, memory_order_relaxed)) && ctx == ag__redir.from)
        ctx = ag__redir.to;
    return ag__region_alloc(&ctx->main, nbytes);
}

void ag__ctx_mark(ag_ctx *ctx, ag__ctx_pos *pos) {
    ag__region *r = &ctx->main;
    *pos = (ag__ctx_pos){
        .chunk = r->chunks, .large = r->large, .used = r->chunks ? r->chunks->used : 0, .handed_out = r->handed_out};
}

/* Chunks newer than the mark are at the heads of the lists: free them down
 * to the one that was the head then, and rewind that one. */
void ag__ctx_rollback(ag_ctx *ctx, const ag__ctx_pos *pos) {
    ag__region *r = &ctx->main;
    while (r->large && r->large != pos->large) {
        ag__chunk *next = r->large->next;
        ag__chunk_free(r->large, AG__CHUNK_HDR + r->large->size);
        r->large = next;
    }
    while (r->chunks && r->chunks != pos->chunk) {
        ag__chunk *next = r->chunks->next;
        ag__chunk_free(r->chunks, AG__CHUNK_HDR + r->chunks->size);
        r->chunks = next;
    }
    if (r->chunks)
        r->chunks->used = pos->used;
    r->handed_out = pos->handed_out;
}

void *ag__ctx_alloc_shared(ag_ctx *ctx, size_t nbytes) {
    pthread_mutex_lock(&ctx->shared_lock);
    void *p = ag__region_alloc(&ctx->shared, nbytes);
    pthread_mutex_unlock(&ctx->shared_lock);
    return p;
}
