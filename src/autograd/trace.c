/* Tracing backward passes: while on, every node run records its name, the
 * thread that ran it and its start and end time; ag_trace_stop writes Chrome
 * trace JSON. Off, the engine pays one relaxed atomic load per node. */
#include "core/internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    const char *name; /* a node kind's static name */
    uint64_t start_ns, end_ns;
    uint32_t tid;
} ag__event;

_Atomic bool ag__tracing;
static pthread_mutex_t ag__trace_lock = PTHREAD_MUTEX_INITIALIZER;
/* guarded by ag__trace_lock */
static ag__event *ag__events;
static size_t ag__nevents, ag__cap_events;
static uint64_t ag__trace_t0;
static _Atomic uint32_t ag__next_tid;
static _Thread_local uint32_t ag__tid; /* 0: not numbered yet */

uint64_t ag__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void ag__trace_record(const char *name, uint64_t start_ns, uint64_t end_ns) {
    if (!ag__tid)
        ag__tid = atomic_fetch_add(&ag__next_tid, 1) + 1;
    pthread_mutex_lock(&ag__trace_lock);
    if (ag__nevents == ag__cap_events) {
        size_t cap = ag__cap_events ? 2 * ag__cap_events : 4096;
        ag__event *e = ag__realloc(ag__events, cap * sizeof *e);
        if (!e) { /* drop the event rather than fail the backward */
            pthread_mutex_unlock(&ag__trace_lock);
            return;
        }
        ag__events = e;
        ag__cap_events = cap;
    }
    ag__events[ag__nevents++] = (ag__event){name, start_ns, end_ns, ag__tid};
    pthread_mutex_unlock(&ag__trace_lock);
}

int ag_trace_start(void) {
    pthread_mutex_lock(&ag__trace_lock);
    ag__nevents = 0;
    ag__trace_t0 = ag__now_ns();
    pthread_mutex_unlock(&ag__trace_lock);
    atomic_store(&ag__tracing, true);
    return 0;
}

int ag_trace_stop(const char *path) {
    atomic_store(&ag__tracing, false);
    int rc = 0;
    pthread_mutex_lock(&ag__trace_lock);
    if (path) {
        FILE *f = fopen(path, "w");
        if (!f) {
            rc = ag__error(AG_EINVAL, "ag_trace_stop: cannot write %s", path);
        } else {
            fprintf(f, "{\"traceEvents\":[");
            for (size_t i = 0; i < ag__nevents; i++) {
                const ag__event *e = &ag__events[i];
                fprintf(f,
                        "%s\n{\"name\":\"%s\",\"cat\":\"backward\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":1,"
                        "\"tid\":%u}",
                        i ? "," : "", e->name, (double)(e->start_ns - ag__trace_t0) / 1e3,
                        (double)(e->end_ns - e->start_ns) / 1e3, e->tid);
            }
            fprintf(f, "\n],\"displayTimeUnit\":\"ns\"}\n");
            if (fclose(f) != 0)
                rc = ag__error(AG_EINVAL, "ag_trace_stop: error writing %s", path);
        }
    }
    free(ag__events);
    ag__events = NULL;
    ag__nevents = ag__cap_events = 0;
    pthread_mutex_unlock(&ag__trace_lock);
    return rc;
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
