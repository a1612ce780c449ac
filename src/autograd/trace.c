/* Tracing backward passes, on the scheduler's one tracer: while on, every
 * node run is an event (name, thread, start, end) in the trace of the
 * process's pool. Nodes that run as tasks of the pool are recorded by the
 * pool itself, under their node's name; the rest (a backward on the calling
 * thread, the OpenMP executor, leaves) through ws_trace_event. ag_trace_stop
 * writes the pool's Chrome trace JSON. Off, the engine pays one relaxed
 * atomic load per node. */
#include "autograd/engine.h"

#include <stdlib.h>

_Atomic bool ag__tracing;
static ws_pool *_Atomic ag__trace_pool; /* the process's pool, once a trace started */

uint64_t ag__now_ns(void) { return ws_now_ns(); }

void ag__trace_record(const char *name, uint64_t start_ns, uint64_t end_ns) {
    ws_pool *p = atomic_load_explicit(&ag__trace_pool, memory_order_acquire);
    if (p)
        ws_trace_event(p, name, start_ns, end_ns);
}

/* The pool whose trace is agrad's (made on first use, without workers if
 * no backward has asked for any). */
static ws_pool *ag__trace_pool_get(const char *fn) {
    int wrc = 0;
    ws_pool *p = ag__pool_get(1, &wrc);
    if (!p) {
        ag__ws_error(wrc, fn);
        return NULL;
    }
    atomic_store_explicit(&ag__trace_pool, p, memory_order_release);
    return p;
}

int ag_trace_start(void) {
    ws_pool *p = ag__trace_pool_get("ag_trace_start");
    if (!p)
        return ag_last_status();
    ws_trace_enable(p, true);
    atomic_store(&ag__tracing, true);
    return 0;
}

int ag_trace_stop(const char *path) {
    atomic_store(&ag__tracing, false);
    ws_pool *p = ag__trace_pool_get("ag_trace_stop");
    if (!p)
        return ag_last_status();
    ws_trace_enable(p, false);
    if (path && ws_trace_write(p, path) != 0)
        return ag__error(AG_EINVAL, "ag_trace_stop: cannot write %s", path);
    return 0;
}

/* AG_TRACE=path: trace the whole process, write at exit. */
static const char *ag__trace_env_path;
static void ag__trace_at_exit(void) { ag_trace_stop(ag__trace_env_path); }

__attribute__((constructor)) static void ag__trace_from_env(void) {
    const char *p = getenv("AG_TRACE");
    if (p && *p) {
        ag__trace_env_path = p;
        ag_trace_start();
        atexit(ag__trace_at_exit);
    }
}
