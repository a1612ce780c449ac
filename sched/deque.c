/* The deque's rare paths (deque.h holds the fast ones and the protocol):
 * the first array and growth, sharing tasks when the owner pushes, and the
 * owner taking back shared tasks, the one place it needs a fence. */
#include "deque.h"
#include "fault.h"

#include <stdlib.h>

static ws__array *ws__array_new(int64_t capacity) {
    ws__array *a = ws__malloc(sizeof(*a) + (size_t)capacity * sizeof(a->slot[0]));
    if (!a)
        return NULL;
    a->mask = capacity - 1;
    a->retired = NULL;
    for (int64_t i = 0; i < capacity; i++)
        atomic_init(&a->slot[i], NULL);
    return a;
}

int ws__deque_init(ws__deque *q, int64_t capacity, ws_pool *pool) {
    if (capacity < 2 || (capacity & (capacity - 1)) != 0)
        return WS_EINVAL;
    ws__array *a = ws__array_new(capacity);
    if (!a)
        return WS_ENOMEM;
    q->bottom = 0;
    q->split = 0;
    q->top_cache = 0;
    q->array = a;
    q->retired = NULL;
    q->pool = pool;
    q->shared_empty = true; /* the first push is shared at once */
    atomic_init(&q->split_pub, 0);
    atomic_init(&q->array_pub, a);
    atomic_init(&q->idle_hint, true);
    atomic_init(&q->top, 0);
    atomic_init(&q->want, false);
    return 0;
}

void ws__deque_destroy(ws__deque *q) {
    free(q->array);
    for (ws__array *r = q->retired; r;) {
        ws__array *next = r->retired;
        free(r);
        r = next;
    }
    q->retired = NULL;
    q->array = NULL;
    atomic_store_explicit(&q->array_pub, NULL, memory_order_relaxed);
}

/* The array looked full for a push at b. Reload top; if it really is full,
 * replace the array by one twice as large and retire the old one. */
ws__array *ws__deque_make_room(ws__deque *q, int64_t b) {
    ws__array *a = q->array;
    /* acquire: a thief read the slot we are about to reuse before its CAS
     * on top; this makes that read happen before our overwrite. */
    int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);
    q->top_cache = t;
    if (b - t <= a->mask)
        return a;
    ws__array *n = ws__array_new(2 * (a->mask + 1));
    if (!n)
        return NULL;
    /* Same indices in the new array: a thief holding the old one still
     * finds the same task at top, and the CAS on top decides who has it. */
    for (int64_t i = t; i < b; i++)
        atomic_store_explicit(&n->slot[i & n->mask], atomic_load_explicit(&a->slot[i & a->mask], memory_order_relaxed),
                              memory_order_relaxed);
    a->retired = q->retired;
    q->retired = a;
    q->array = n;
    /* release: a thief that loads the new array (acquire) sees its mask and
     * the copied slots. Every later share (release on split) comes after
     * this store, so a thief that sees such a split sees this array. */
    atomic_store_explicit(&q->array_pub, n, memory_order_release);
    return n;
}

/* Raises split to ns > q->split and tells the pool. */
static void ws__deque_share_to(ws__deque *q, int64_t ns) {
    q->split = ns;
    q->shared_empty = false;
    /* release: publishes the slots below ns (and what they point to). */
    atomic_store_explicit(&q->split_pub, ns, memory_order_release);
    if (atomic_load_explicit(&q->idle_hint, memory_order_relaxed))
        atomic_store_explicit(&q->idle_hint, false, memory_order_relaxed);
    ws__deque_signal(q);
}

/* A push found nothing shared, or a thief's request. Nothing shared: share
 * everything (after the owner found the shared part empty, the private part
 * holds only what was pushed since). A request: share the older half of the
 * private tasks, rounding up, so one private task is shared too. */
int ws__deque_share_on_push(ws__deque *q) {
    if (atomic_load_explicit(&q->want, memory_order_relaxed))
        atomic_store_explicit(&q->want, false, memory_order_relaxed);
    int64_t s = q->split, b = q->bottom;
    ws__deque_share_to(q, q->shared_empty ? b : s + (b - s + 1) / 2);
    return 1;
}

/* The owner ran out of shared tasks: the deque is empty. */
static void ws__deque_now_empty(ws__deque *q, int64_t s) {
    q->split = s;
    q->bottom = s;
    q->top_cache = s;
    q->shared_empty = true;
    /* release: split goes back up to s over slots thieves have all taken
     * (top is s), so it shares nothing; release keeps every store of split
     * a release, which is simpler to reason about. */
    atomic_store_explicit(&q->split_pub, s, memory_order_release);
    if (!atomic_load_explicit(&q->idle_hint, memory_order_relaxed))
        atomic_store_explicit(&q->idle_hint, true, memory_order_relaxed);
}

/* Takes back the newest shared task, index s - 1, where s = split = bottom.
 * Chase-Lev's take with split in the place of bottom: lower split, fence,
 * read top. A thief that read the old split has read top before its fence,
 * and that fence came before ours in the total order (else it would have
 * seen the new split), so it read a top no later than the one we read now:
 * thieves still in flight target index t at most. As in Lace, the owner
 * takes back half of the shared tasks with the one fence (split goes to the
 * middle of [t, s)), so the next takes are private again. */
static ws_task *ws__deque_take_shared(ws__deque *q) {
    int64_t s = q->split;
    ws__array *a = q->array;
    /* relaxed: a first guess, to pick the new split; top only grows, and
     * t >= s means every shared task is taken for good. */
    int64_t t = atomic_load_explicit(&q->top, memory_order_relaxed);
    if (t >= s) {
        ws__deque_now_empty(q, s);
        return NULL;
    }
    int64_t ns = t + (s - t) / 2; /* t <= ns <= s - 1 */
    /* release: see ws__deque_now_empty; lowering split publishes nothing. */
    atomic_store_explicit(&q->split_pub, ns, memory_order_release);
    /* seq_cst: the store to split must be visible before we read top (the
     * store-load pair against the thief's load top, fence, load split). */
    WS__FENCE_SEQ_CST();
    /* relaxed: the fence before it is what orders it (every change of top
     * is a seq_cst RMW, so this sees at least what any thief that missed
     * the new split had read). */
    t = atomic_load_explicit(&q->top, memory_order_relaxed);
    q->top_cache = t;
    if (t < ns) {
        /* In-flight thieves target t < ns, new ones stay below ns: [ns, s)
         * is private now. */
        q->split = ns;
        q->bottom = s - 1;
        return atomic_load_explicit(&a->slot[(s - 1) & a->mask], memory_order_relaxed);
    }
    if (t < s - 1) {
        /* Thieves took up to t, and one may still take t. Everything above
         * t is ours; give the lower half back to them. */
        int64_t ns2 = t + (s - t) / 2; /* t < ns2 <= s - 1 */
        q->split = ns2;
        /* release: shares [t, ns2) again, slots written before. */
        atomic_store_explicit(&q->split_pub, ns2, memory_order_release);
        q->bottom = s - 1;
        return atomic_load_explicit(&a->slot[(s - 1) & a->mask], memory_order_relaxed);
    }
    ws_task *x = NULL;
    if (t == s - 1) {
        /* The last shared task: race the thieves for it on top. Either way
         * top ends at s. */
        x = atomic_load_explicit(&a->slot[t & a->mask], memory_order_relaxed);
        /* seq_cst: as every change of top (see ws__deque_steal). */
        if (!atomic_compare_exchange_strong_explicit(&q->top, &t, s, memory_order_seq_cst, memory_order_relaxed))
            x = NULL;
    }
    ws__deque_now_empty(q, s);
    return x;
}

/* The private part is empty, or a thief asked for tasks. */
ws_task *ws__deque_take_slow(ws__deque *q) {
    int64_t b = q->bottom, s = q->split;
    if (atomic_load_explicit(&q->want, memory_order_relaxed)) {
        atomic_store_explicit(&q->want, false, memory_order_relaxed);
        /* Share the older half; the newer one, which we take next, stays. */
        int64_t ns = s + (b - s) / 2;
        if (ns > s) {
            ws__deque_share_to(q, ns);
            s = ns;
        }
    }
    if (b - 1 >= s) {
        q->bottom = b - 1;
        return atomic_load_explicit(&q->array->slot[(b - 1) & q->array->mask], memory_order_relaxed);
    }
    return ws__deque_take_shared(q);
}
