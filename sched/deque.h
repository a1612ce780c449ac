/* The Chase-Lev work-stealing deque, with the C11 memory orders of Lê, Pop,
 * Cohen and Zappa Nardelli, "Correct and efficient work-stealing for weak
 * memory models" (PPoPP 2013), figure 1. The owner pushes and takes at the
 * bottom, thieves steal at the top. Indices are signed and only grow. */
#ifndef WS_DEQUE_H
#define WS_DEQUE_H

#include "ws_internal.h"

#define WS__STEAL_ABORT ((ws_task *)(uintptr_t)1) /* lost a race: try again */

int ws__deque_init(ws__deque *q, int64_t capacity); /* 0 or WS_ENOMEM */
void ws__deque_destroy(ws__deque *q);               /* frees retired arrays too */
/* Replaces a full array by one twice as large; the old one is retired, not
 * freed. Returns the new array, NULL on ENOMEM (the deque is unchanged). */
ws__array *ws__deque_grow(ws__deque *q, ws__array *a, int64_t t, int64_t b);

/* Owner only. Returns false when the deque is full and cannot grow. */
static inline bool ws__deque_push(ws__deque *q, ws_task *x) {
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed);
    ws__array *a = atomic_load_explicit(&q->array, memory_order_relaxed);
    /* Lê et al. load top (acquire) on every push. A top read earlier is a
     * lower bound (top only grows), so it can only under-estimate the free
     * room; reload only when the cached value says full. This keeps the
     * line that thieves CAS out of the owner's fast path. */
    if (WS__UNLIKELY(b - q->top_cache > a->mask)) {
        /* acquire: a thief read the slot we are about to reuse before its
         * CAS on top; this makes that read happen before our overwrite. */
        q->top_cache = atomic_load_explicit(&q->top, memory_order_acquire);
        if (b - q->top_cache > a->mask) {
            a = ws__deque_grow(q, a, q->top_cache, b);
            if (!a)
                return false;
        }
    }
    atomic_store_explicit(&a->slot[b & a->mask], x, memory_order_relaxed);
#if WS__TSAN
    atomic_store_explicit(&q->bottom, b + 1, memory_order_release);
#else
    /* release: the task (and what the spawner wrote into it) is visible to
     * a thief that reads the new bottom with acquire. */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
#endif
    return true;
}

/* Owner only: the newest task, or NULL when empty. */
static inline ws_task *ws__deque_take(ws__deque *q) {
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed) - 1;
    ws__array *a = atomic_load_explicit(&q->array, memory_order_relaxed);
    atomic_store_explicit(&q->bottom, b, memory_order_relaxed);
    /* seq_cst: the store to bottom must be visible before we read top, or
     * the owner and a thief could both take the last task (store-load
     * ordering, the one place the owner needs a full fence). */
    WS__FENCE_SEQ_CST();
    int64_t t = atomic_load_explicit(&q->top, memory_order_relaxed);
    q->top_cache = t;
    ws_task *x;
    if (t <= b) {
        x = atomic_load_explicit(&a->slot[b & a->mask], memory_order_relaxed);
        if (t == b) {
            /* The last task: race the thieves for it on top. Either way
             * top ends at b + 1 (the CAS overwrites t on failure). */
            if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1, memory_order_seq_cst,
                                                         memory_order_relaxed))
                x = NULL;
            q->top_cache = b + 1;
            atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
        }
    } else {
        x = NULL;
        atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
    }
    return x;
}

/* Owner only: take, but only among tasks pushed at index >= base (those of
 * a group or DAG run started when bottom was base). */
static inline ws_task *ws__deque_take_above(ws__deque *q, int64_t base) {
    if (atomic_load_explicit(&q->bottom, memory_order_relaxed) <= base)
        return NULL;
    return ws__deque_take(q);
}

/* Any thread: the oldest task, NULL when empty, WS__STEAL_ABORT on a lost
 * race. */
static inline ws_task *ws__deque_steal(ws__deque *q) {
    int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);
    /* seq_cst: orders this read of top before the read of bottom against
     * the owner's fence in take (so a thief and the owner cannot both see
     * the last task as theirs). */
    WS__FENCE_SEQ_CST();
    /* acquire: pairs with the release in push, so the task is complete. */
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_acquire);
    if (t >= b)
        return NULL;
    /* Lê et al. use consume; compilers promote it to acquire anyway. It
     * pairs with the release store of a grown array. */
    ws__array *a = atomic_load_explicit(&q->array, memory_order_acquire);
    ws_task *x = atomic_load_explicit(&a->slot[t & a->mask], memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1, memory_order_seq_cst, memory_order_relaxed))
        return WS__STEAL_ABORT;
    return x;
}

/* Any thread: a hint only (may be stale or briefly negative). */
static inline int64_t ws__deque_size_hint(ws__deque *q) {
    return atomic_load_explicit(&q->bottom, memory_order_relaxed) - atomic_load_explicit(&q->top, memory_order_relaxed);
}

#endif /* WS_DEQUE_H */
