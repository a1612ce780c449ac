/* Allocation and thread starts in sched/ go through these wrappers, so a
 * test can make them fail (SQLite-style failure injection) and check that
 * every such failure comes back as an error code, never a crash or a hang.
 * ws__fault_hook, when set, is asked first; NULL (the default) costs one
 * relaxed load. */
#ifndef WS_FAULT_H
#define WS_FAULT_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

enum { WS__FAULT_ALLOC = 0, WS__FAULT_THREAD = 1 };
typedef bool (*ws__fault_fn)(int what); /* true: make this call fail */
extern _Atomic(ws__fault_fn) ws__fault_hook;

static inline bool ws__fault(int what) {
    ws__fault_fn f = atomic_load_explicit(&ws__fault_hook, memory_order_relaxed);
    return f && f(what);
}

static inline void *ws__malloc(size_t n) { return ws__fault(WS__FAULT_ALLOC) ? NULL : malloc(n); }
static inline void *ws__calloc(size_t n, size_t size) { return ws__fault(WS__FAULT_ALLOC) ? NULL : calloc(n, size); }
static inline void *ws__realloc(void *p, size_t n) { return ws__fault(WS__FAULT_ALLOC) ? NULL : realloc(p, n); }
static inline void *ws__aligned_alloc(size_t align, size_t n) {
    return ws__fault(WS__FAULT_ALLOC) ? NULL : aligned_alloc(align, n);
}
static inline int ws__thread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
    return ws__fault(WS__FAULT_THREAD) ? EAGAIN : pthread_create(t, attr, fn, arg);
}

#endif /* WS_FAULT_H */
