/* The optional task trace: each participant appends (start, end, name) to
 * its own buffer, with no sharing while tasks run; ws_trace_write turns the
 * buffers into Chrome trace JSON once the pool is quiescent. */
#include "fault.h"
#include "ws_internal.h"

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

int ws_trace_write(ws_pool *p, const char *path) {
    if (!p || !path)
        return WS_EINVAL;
    FILE *f = fopen(path, "w");
    if (!f)
        return WS_EINVAL;
    uint32_t gen = atomic_load_explicit(&p->trace_gen, memory_order_relaxed);
    int n = atomic_load_explicit(&p->nvictims, memory_order_acquire);
    fputs("{\"traceEvents\":[", f);
    bool first = true;
    for (int i = 0; i < n; i++) {
        ws__part *w = ws__part_at(p, i);
        if (!w)
            continue;
        /* Name the timeline rows. */
        fprintf(f, "%s\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%d,\"args\":{\"name\":\"%s %d\"}}",
                first ? "" : ",", i, w->outside ? "outside" : "worker", w->number);
        first = false;
        if (w->trace_gen != gen)
            continue;
        for (uint32_t k = 0; k < w->trace_len; k++) {
            const ws__trace_ev *e = &w->trace[k];
            fputs(",\n{\"name\":", f);
            ws__json_string(f, e->name ? e->name : "task");
            fprintf(f, ",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":1,\"tid\":%d}", (double)e->start / 1e3,
                    (double)(e->end - e->start) / 1e3, i);
        }
    }
    fputs("\n]}\n", f);
    int rc = ferror(f) ? WS_EINVAL : 0;
    if (fclose(f) != 0)
        rc = WS_EINVAL;
    return rc;
}
