/* Anomaly mode (torch.autograd.set_detect_anomaly): while on, each node
 * recorded keeps the return addresses of its forward op's call, taken with
 * backtrace() and stored in the node's context; they are symbolised only
 * when an error in backward needs them, so recording stays a few
 * microseconds an op. The engine (runner.c) checks every node's gradients
 * for NaN and appends the failing node's stack to the error. */
#include "autograd/nodeext.h"

#include <execinfo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

_Atomic bool ag__anomaly_on;

void ag_set_detect_anomaly(bool on) { atomic_store_explicit(&ag__anomaly_on, on, memory_order_relaxed); }
bool ag_is_anomaly_enabled(void) { return ag__anomaly_enabled(); }

/* Frames kept, after skipping this library's own: enough to reach the
 * program's call site through a few layers of its own functions. */
#define AG__STACK_MAX 16
#define AG__STACK_SKIP 2 /* ag__anomaly_capture, ag__record */

ag__node_ext *ag__ext_make(ag_ctx *ctx, ag_node *n) {
    ag__node_ext *e = ag__ctx_alloc(ctx, sizeof *e);
    if (!e)
        return NULL;
    memset(e, 0, sizeof *e);
    atomic_init(&e->pre, NULL);
    atomic_init(&e->post, NULL);
    atomic_store_explicit(&n->ext, e, memory_order_release);
    return e;
}

int ag__anomaly_capture(ag_ctx *ctx, ag_node *n) {
    void *frames[AG__STACK_MAX + AG__STACK_SKIP];
    int got = backtrace(frames, AG__STACK_MAX + AG__STACK_SKIP);
    int keep = got > AG__STACK_SKIP ? got - AG__STACK_SKIP : 0;
    ag__node_ext *e = ag__ext(n);
    if (!e && !(e = ag__ext_make(ctx, n)))
        return AG_ENOMEM;
    if (keep > 0) {
        if (!(e->stack = ag__ctx_alloc(ctx, (size_t)keep * sizeof *e->stack)))
            return AG_ENOMEM;
        memcpy(e->stack, frames + AG__STACK_SKIP, (size_t)keep * sizeof *e->stack);
    }
    e->nstack = keep;
    return 0;
}

void ag__anomaly_note(const ag_node *n) {
    ag__node_ext *e = ag__ext(n);
    if (!e || e->nstack <= 0)
        return;
    char msg[AG__ERRMSG_MAX];
    size_t off = (size_t)snprintf(
        msg, sizeof msg,
        "%s\n\nError detected in %s. Traceback of forward call that caused the error:", ag_last_error(), n->kind->name);
    char **names = backtrace_symbols(e->stack, e->nstack);
    for (int i = 0; i < e->nstack && off < sizeof msg; i++) {
        if (names)
            off += (size_t)snprintf(msg + off, sizeof msg - off, "\n  #%d %s", i, names[i]);
        else
            off += (size_t)snprintf(msg + off, sizeof msg - off, "\n  #%d %p", i, e->stack[i]);
    }
    free(names);
    ag__error(ag_last_status() ? ag_last_status() : AG_ESTATE, "%s", msg);
}

bool ag__has_nan(const ag_tensor *t) {
    if (t->dtype == AG_FLOAT32) {
        const float *p = t->data;
        for (int64_t i = 0; i < t->numel; i++)
            if (isnan(p[i]))
                return true;
    } else {
        const double *p = t->data;
        for (int64_t i = 0; i < t->numel; i++)
            if (isnan(p[i]))
                return true;
    }
    return false;
}
