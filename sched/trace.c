/* The optional task trace, and the one trace of the process: each
 * participant appends (start, end, name) to its own buffer, with no sharing
 * while tasks run; threads outside the pool's tasks add theirs
 * (ws_trace_event: agrad's backward on the calling thread, OpenMP's
 * threads) to one list under a lock. ws_trace_write turns both into Chrome
 * trace JSON once the pool is quiescent. */
#include "fault.h"
#include "ws_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

enum { WS__TRACE_MAX = 1u << 22 }; /* events per participant; later ones are dropped */

void ws__trace_add(ws__part *self, uint64_t start, uint64_t end, const char *name) {
    ws_pool *p = self->pool;
    /* A new generation (ws_trace_enable) empties the buffer; its owner does
     * it, so no other thread writes to the buffer. */
    uint32_t gen = atomic_load_explicit(&p->trace_gen, memory_order_relaxed);
    if (self->trace_gen != gen) {
        self->trace_gen = gen;
        self->trace_len = 0;
    }
    if (self->trace_len == self->trace_cap) {
        if (self->trace_cap >= WS__TRACE_MAX)
            return;
        uint32_t cap = self->trace_cap ? 2 * self->trace_cap : 4096;
        ws__trace_ev *ev = ws__realloc(self->trace, cap * sizeof(*ev));
        if (!ev)
            return;
        self->trace = ev;
        self->trace_cap = cap;
    }
    self->trace[self->trace_len++] = (ws__trace_ev){start - p->t0_ns, end - p->t0_ns, name};
}

void ws__trace_free(ws__part *self) {
    free(self->trace);
    self->trace = NULL;
    self->trace_len = self->trace_cap = 0;
}

_Atomic int ws__tracing_pools;

int ws_trace_enable(ws_pool *p, bool on) {
    if (!p)
        return WS_EINVAL;
    if (on)
        atomic_fetch_add_explicit(&p->trace_gen, 1, memory_order_relaxed);
    /* relaxed: tracing is best effort; a task that starts just after the
     * switch may or may not be recorded. */
    bool was = atomic_exchange_explicit(&p->tracing, on, memory_order_relaxed);
    if (on != was)
        atomic_fetch_add_explicit(&ws__tracing_pools, on ? 1 : -1, memory_order_relaxed);
    return 0;
}

/* Numbers the rows of threads outside the pools' tasks, from 1. */
static _Atomic uint32_t ws__next_thread;
static _Thread_local uint32_t ws__thread_no;

static void ws__trace_add_loose(ws_pool *p, uint64_t start, uint64_t end, const char *name) {
    if (!ws__thread_no)
        ws__thread_no = atomic_fetch_add_explicit(&ws__next_thread, 1, memory_order_relaxed) + 1;
    uint32_t gen = atomic_load_explicit(&p->trace_gen, memory_order_relaxed);
    pthread_mutex_lock(&p->trace_lock);
    if (p->loose_gen != gen) {
        p->loose_gen = gen;
        p->loose_len = 0;
    }
    if (p->loose_len == p->loose_cap && p->loose_cap < WS__TRACE_MAX) {
        uint32_t cap = p->loose_cap ? 2 * p->loose_cap : 4096;
        ws__loose_ev *ev = ws__realloc(p->loose, cap * sizeof(*ev));
        if (ev) {
            p->loose = ev;
            p->loose_cap = cap;
        }
    }
    if (p->loose_len < p->loose_cap)
        p->loose[p->loose_len++] = (ws__loose_ev){{start - p->t0_ns, end - p->t0_ns, name}, ws__thread_no};
    pthread_mutex_unlock(&p->trace_lock);
}

int ws_trace_event(ws_pool *p, const char *name, uint64_t start_ns, uint64_t end_ns) {
    if (!p || !name)
        return WS_EINVAL;
    if (!ws__tracing(p))
        return 0;
    if (start_ns < p->t0_ns)
        start_ns = p->t0_ns;
    if (end_ns < start_ns)
        end_ns = start_ns;
    ws__part *self = ws__self;
    if (self && self->pool == p)
        ws__trace_add(self, start_ns, end_ns, name);
    else
        ws__trace_add_loose(p, start_ns, end_ns, name);
    return 0;
}

static void ws__json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* One complete event ("ph":"X") on row tid. */
static void ws__json_event(FILE *f, const ws__trace_ev *e, long tid) {
    fputs(",\n{\"name\":", f);
    ws__json_string(f, e->name ? e->name : "task");
    fprintf(f, ",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":1,\"tid\":%ld}", (double)e->start / 1e3,
            (double)(e->end - e->start) / 1e3, tid);
}

/* Rows of threads outside the pool's tasks come after every participant's. */
enum { WS__LOOSE_ROW = 100000 };

static void ws__write_loose(FILE *f, ws_pool *p, uint32_t gen) {
    pthread_mutex_lock(&p->trace_lock);
    uint32_t n = p->loose_gen == gen ? p->loose_len : 0;
    uint32_t named = 0; /* rows named so far: threads are numbered densely, so a bound suffices */
    for (uint32_t k = 0; k < n; k++) {
        const ws__loose_ev *e = &p->loose[k];
        if (e->thread > named) {
            for (uint32_t t = named + 1; t <= e->thread; t++)
                fprintf(f,
                        ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%ld,\"args\":{\"name\":"
                        "\"thread %u\"}}",
                        (long)WS__LOOSE_ROW + t, t);
            named = e->thread;
        }
        ws__json_event(f, &e->ev, (long)WS__LOOSE_ROW + e->thread);
    }
    pthread_mutex_unlock(&p->trace_lock);
}

int ws_trace_write(ws_pool *p, const char *path) {
    if (!p || !path)
        return WS_EINVAL;
    FILE *f = fopen(path, "w");
    if (!f)
        return WS_EINVAL;
    uint32_t gen = atomic_load_explicit(&p->trace_gen, memory_order_relaxed);
    int n = atomic_load_explicit(&p->nvictims, memory_order_acquire);
    /* A first metadata record, so that every later one starts with a comma. */
    fputs("{\"traceEvents\":[\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{\"name\":\"ws\"}}", f);
    for (int i = 0; i < n; i++) {
        ws__part *w = ws__part_at(p, i);
        if (!w)
            continue;
        /* Name the timeline rows. */
        fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%d,\"args\":{\"name\":\"%s %d\"}}", i,
                w->outside ? "outside" : "worker", w->number);
        if (w->trace_gen != gen)
            continue;
        for (uint32_t k = 0; k < w->trace_len; k++)
            ws__json_event(f, &w->trace[k], i);
    }
    ws__write_loose(f, p, gen);
    fputs("\n]}\n", f);
    int rc = ferror(f) ? WS_EINVAL : 0;
    if (fclose(f) != 0)
        rc = WS_EINVAL;
    return rc;
}
