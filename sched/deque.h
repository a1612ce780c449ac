/* The work-stealing deque: Chase-Lev (a growable circular array, signed
 * indices that only grow, thieves CAS on top) with the C11 memory orders of
 * Lê, Pop, Cohen and Zappa Nardelli, "Correct and efficient work-stealing
 * for weak memory models" (PPoPP 2013), split as in Lace (van Dijk and van
 * de Pol, "Lace: non-blocking split deque for work-stealing", 2014) so that
 * the owner's push and take need no fence and no atomic read-modify-write.
 *
 * Tasks in [split, bottom) are private: only the owner sees them. Tasks in
 * [top, split) are shared: thieves take the oldest by a CAS on top. The
 * owner shares tasks by raising split (a release store): its first push
 * after it found nothing shared (so an idle thief gets work at once), and
 * half of its private tasks when a thief asks (the `want` flag), at its
 * next push or take. Taking back a shared task lowers split, and that is
 * the one place the owner needs a fence: the store-load pair of Chase-Lev's
 * take, with split in the role of bottom. A caller may also share all its
 * private tasks (before it waits, or before a DAG node that may run long).
 *
 * Unlike Lace, top and split are separate words: a thief reads top, then
 * split, with a seq_cst fence between them (as Chase-Lev's steal reads top,
 * then bottom), and 64-bit indices never wrap, so a delayed CAS cannot be
 * fooled by a recycled value. */
#ifndef WS_DEQUE_H
#define WS_DEQUE_H

#include "ws_internal.h"

#define WS__STEAL_ABORT ((ws_task *)(uintptr_t)1) /* lost a race: try again */

int ws__deque_init(ws__deque *q, int64_t capacity, ws_pool *pool); /* 0 or WS_ENOMEM; pool may be NULL */
void ws__deque_destroy(ws__deque *q);                              /* frees retired arrays too */

/* Out of line: the rare paths. */
ws__array *ws__deque_make_room(ws__deque *q, int64_t b); /* NULL: full and cannot grow */
int ws__deque_share_on_push(ws__deque *q);
ws_task *ws__deque_take_slow(ws__deque *q);
/* Tells the pool that tasks were shared (sched.c: wakes a sleeper if nobody
 * is looking for work). */
void ws__deque_signal(ws__deque *q);

/* Owner only: the push itself, when the array has room as far as the owner
 * knows; false (and nothing pushed) when it may be full. */
static inline bool ws__deque_try_push(ws__deque *q, ws_task *x) {
    int64_t b = q->bottom;
    ws__array *a = q->array;
    if (WS__UNLIKELY(b - q->top_cache > a->mask))
        return false;
    /* relaxed: a thief reads the slot only after it has loaded, with
     * acquire, a split above b, which the owner stores with release after
     * this store. */
    atomic_store_explicit(&a->slot[b & a->mask], x, memory_order_relaxed);
    q->bottom = b + 1;
    return true;
}

/* Owner only: after a push, whether to share (nothing is shared, or a thief
 * asked). relaxed: want is a hint; a request seen late is served later. */
static inline bool ws__deque_should_share(ws__deque *q) {
    return q->shared_empty | atomic_load_explicit(&q->want, memory_order_relaxed);
}

/* Owner only. Returns 0 when x went on the private part, 1 when it (or more)
 * was shared (the pool has been signalled), -1 when the deque is full and
 * cannot grow (x was not pushed). */
static inline int ws__deque_push(ws__deque *q, ws_task *x) {
    if (WS__UNLIKELY(!ws__deque_try_push(q, x))) {
        if (!ws__deque_make_room(q, q->bottom))
            return -1;
        ws__deque_try_push(q, x);
    }
    if (WS__UNLIKELY(ws__deque_should_share(q)))
        return ws__deque_share_on_push(q);
    return 0;
}

/* Owner only: the newest task, or NULL when the deque is empty. */
static inline ws_task *ws__deque_take(ws__deque *q) {
    int64_t b = q->bottom - 1;
    /* relaxed on want: a hint (a request seen late is served later). */
    if (WS__LIKELY(b >= q->split && !atomic_load_explicit(&q->want, memory_order_relaxed))) {
        /* Private: no thief may take index b (it would need a split above
         * b, and split only rises by the owner's own store). The slot is
         * the owner's own store: relaxed. */
        q->bottom = b;
        return atomic_load_explicit(&q->array->slot[b & q->array->mask], memory_order_relaxed);
    }
    return ws__deque_take_slow(q);
}

/* Owner only: take, but only among tasks pushed at index >= base (those of
 * a group or DAG run started when bottom was base). */
static inline ws_task *ws__deque_take_above(ws__deque *q, int64_t base) {
    if (q->bottom <= base)
        return NULL;
    return ws__deque_take(q);
}

/* Owner only: shares every private task. Returns true if there were any
 * (the pool has been signalled). */
static inline bool ws__deque_share_all(ws__deque *q) {
    if (q->bottom == q->split)
        return false;
    q->split = q->bottom;
    q->shared_empty = false;
    /* release: the slots below the new split (and the tasks they point to)
     * are visible to a thief that loads it with acquire. */
    atomic_store_explicit(&q->split_pub, q->split, memory_order_release);
    /* relaxed: want and idle_hint are hints (checked before written, so
     * the lines thieves poll are written only when they change). */
    if (atomic_load_explicit(&q->want, memory_order_relaxed))
        atomic_store_explicit(&q->want, false, memory_order_relaxed);
    if (atomic_load_explicit(&q->idle_hint, memory_order_relaxed))
        atomic_store_explicit(&q->idle_hint, false, memory_order_relaxed);
    ws__deque_signal(q);
    return true;
}

/* Any thread: the oldest shared task, NULL when there is none (then, if the
 * owner may have private tasks, asks it to share), WS__STEAL_ABORT on a lost
 * race. *more: shared tasks were left after this one. */
static inline ws_task *ws__deque_steal(ws__deque *q, bool *more) {
    /* acquire: the CAS that raised top to t (seq_cst, so a release) happens
     * before our fence below; the owner's fence-separated load of top in
     * take_slow relies on that edge to see at least t. */
    int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);
    /* seq_cst: orders the load of top before the load of split, against the
     * owner's store of split, fence, load of top when it takes tasks back:
     * either the owner sees our top, or we see its lowered split. */
    WS__FENCE_SEQ_CST();
    /* acquire: pairs with the release store that shared slot t. */
    int64_t s = atomic_load_explicit(&q->split_pub, memory_order_acquire);
    if (t >= s) {
        /* relaxed: hints both ways. Test before setting, so that idle
         * thieves read the line instead of taking it from the owner. */
        if (!atomic_load_explicit(&q->idle_hint, memory_order_relaxed) &&
            !atomic_load_explicit(&q->want, memory_order_relaxed))
            atomic_store_explicit(&q->want, true, memory_order_relaxed);
        return NULL;
    }
    /* acquire (Lê et al.'s consume): pairs with the release store of a
     * grown array, which the owner made before it shared slot t. */
    ws__array *a = atomic_load_explicit(&q->array_pub, memory_order_acquire);
    /* relaxed: read before the CAS, as the owner may reuse the slot once
     * top has moved past it; the CAS decides whether the value is ours. */
    ws_task *x = atomic_load_explicit(&a->slot[t & a->mask], memory_order_relaxed);
    /* seq_cst: every change of top is a seq_cst RMW, which the owner's
     * reasoning in take_slow depends on. */
    if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1, memory_order_seq_cst, memory_order_relaxed))
        return WS__STEAL_ABORT;
    if (more)
        *more = t + 1 < s;
    return x;
}

/* Any thread: a hint only (may be stale). Shared tasks only. */
static inline int64_t ws__deque_shared_hint(ws__deque *q) {
    return atomic_load_explicit(&q->split_pub, memory_order_relaxed) -
           atomic_load_explicit(&q->top, memory_order_relaxed);
}

/* A participant pushes t on its own deque (the deque tells the pool if it
 * shared it). The rare cases (the array is full: grow it, or run t at once
 * if it cannot grow) are out of line, so that the common one keeps no
 * register across a call. */
static inline void ws__push(ws__part *self, ws_task *t) {
    ws__deque *q = &self->dq;
    if (WS__UNLIKELY(!ws__deque_try_push(q, t))) {
        ws__push_slow(self, t);
        return;
    }
    if (WS__UNLIKELY(ws__deque_should_share(q)))
        ws__deque_share_on_push(q);
}

#endif /* WS_DEQUE_H */
