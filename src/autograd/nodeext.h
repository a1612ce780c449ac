/* What a few nodes carry beyond struct ag_node: node hooks (hooks.c), the
 * forward's call stack under anomaly mode (anomaly.c) and a custom
 * function's state (function.c). A node has none of it until needed: its
 * ext pointer is NULL, one load on the engine's fast path.
 *
 * Publication: an ext is made either before its node is visible to anyone
 * (anomaly mode, custom functions: by the op that records the node) or
 * under ag__hooks_lock by ag_node_register_*, and published with a
 * release store; readers load it with acquire. Hook lists only grow (a
 * removed hook is marked, not unlinked), so a backward walking a list
 * while another thread registers or removes hooks reads records that stay
 * valid until the node's context is reset. */
#ifndef AG_NODEEXT_H
#define AG_NODEEXT_H

#include "core/internal.h"

#include <pthread.h>

typedef struct ag__nhook {
    struct ag__nhook *_Atomic next;
    ag_node_prehook_fn pre; /* a pre-hook, or */
    ag_node_hook_fn post;   /* a hook */
    void *user_data;
    int handle;
    /* A pre-hook's place among the output tensor's hooks and retain_grad,
     * which run in one chain with it (runner.c, ag__pre_chain). */
    int tensor_hooks_before; /* hooks registered on node->out before it */
    bool retain_before;      /* node->out retained its grad before it */
    _Atomic bool removed;
} ag__nhook;

struct ag_function_ctx;

typedef struct ag__node_ext {
    ag__nhook *_Atomic pre; /* registration order */
    ag__nhook *_Atomic post;
    int next_handle; /* under ag__hooks_lock */
    /* Anomaly mode: return addresses of the forward op's call, innermost
     * first (this library's own frames skipped). */
    void **stack;
    int nstack;
    /* A custom function's node: its state. Such a node makes its own
     * gradients and may give none for an input. */
    struct ag_function_ctx *fn;
} ag__node_ext;

static inline ag__node_ext *ag__ext(const ag_node *n) {
    return atomic_load_explicit(&((ag_node *)n)->ext, memory_order_acquire);
}

/* A new, empty ext in ctx (the owner's thread, before the node is seen),
 * published on n. NULL on ENOMEM. */
ag__node_ext *ag__ext_make(ag_ctx *ctx, ag_node *n);

/* ---- Anomaly mode (anomaly.c) ---- */
extern _Atomic bool ag__anomaly_on;
static inline bool ag__anomaly_enabled(void) { return atomic_load_explicit(&ag__anomaly_on, memory_order_relaxed); }
/* Records where the op that made n was called (ag__record calls it under
 * anomaly mode). 0 or AG_ENOMEM. */
int ag__anomaly_capture(ag_ctx *ctx, ag_node *n);
/* Appends n's forward call stack to this thread's last error, keeping its
 * code (nothing when n has none). */
void ag__anomaly_note(const ag_node *n);
/* NaN anywhere in t. */
bool ag__has_nan(const ag_tensor *t);

#endif /* AG_NODEEXT_H */
