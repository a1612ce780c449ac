/* Allocation side of the Chase-Lev deque (deque.h holds the operations):
 * the first array, growth, and freeing every array the deque ever had once
 * no thief can be reading any of them. */
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

int ws__deque_init(ws__deque *q, int64_t capacity) {
    if (capacity < 2 || (capacity & (capacity - 1)) != 0)
        return WS_EINVAL;
    ws__array *a = ws__array_new(capacity);
    if (!a)
        return WS_ENOMEM;
    atomic_init(&q->top, 0);
    atomic_init(&q->bottom, 0);
    atomic_init(&q->array, a);
    q->top_cache = 0;
    q->retired = NULL;
    return 0;
}

void ws__deque_destroy(ws__deque *q) {
    free(atomic_load_explicit(&q->array, memory_order_relaxed));
    for (ws__array *r = q->retired; r;) {
        ws__array *next = r->retired;
        free(r);
        r = next;
    }
    q->retired = NULL;
    atomic_store_explicit(&q->array, NULL, memory_order_relaxed);
}

ws__array *ws__deque_grow(ws__deque *q, ws__array *a, int64_t t, int64_t b) {
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
    /* release: a thief that loads the new array (acquire) sees its mask and
     * the copied slots. */
    atomic_store_explicit(&q->array, n, memory_order_release);
    return n;
}
