/* Node hooks (grad_fn.register_prehook / register_hook). Registration and
 * removal take one process-wide lock; the engine reads the hook lists
 * without it (see nodeext.h): records are appended with a release store
 * and never unlinked, removal only marks them. So a thread may register or
 * remove hooks on a node while other threads run backwards through it. */
#include "autograd/nodeext.h"

static pthread_mutex_t ag__hooks_lock = PTHREAD_MUTEX_INITIALIZER;

/* The node's ext, made in its context when it has none (the lock held). */
static ag__node_ext *ag__ext_for_hooks(ag_node *n) {
    ag__node_ext *e = ag__ext(n);
    if (e)
        return e;
    e = ag__ctx_alloc_shared(n->out->ctx, sizeof *e);
    if (!e)
        return NULL;
    memset(e, 0, sizeof *e);
    atomic_init(&e->pre, NULL);
    atomic_init(&e->post, NULL);
    atomic_store_explicit(&n->ext, e, memory_order_release);
    return e;
}

static int ag__register(const ag_node *node, ag_node_prehook_fn pre, ag_node_hook_fn post, void *user_data,
                        const char *fn) {
    if (!node)
        return ag__null_object(fn, "node");
    if (!pre && !post)
        return ag__error(AG_EINVAL, "%s: hook function is NULL", fn);
    ag_node *n = (ag_node *)node;
    if (!n->out || !n->out->ctx)
        return ag__error(AG_EINVAL, "%s: %s takes no hooks", fn, n->kind->name);
    pthread_mutex_lock(&ag__hooks_lock);
    ag__node_ext *e = ag__ext_for_hooks(n);
    ag__nhook *h = e ? ag__ctx_alloc_shared(n->out->ctx, sizeof *h) : NULL;
    if (!h) {
        pthread_mutex_unlock(&ag__hooks_lock);
        return AG_ENOMEM;
    }
    memset(h, 0, sizeof *h);
    atomic_init(&h->next, NULL);
    atomic_init(&h->removed, false);
    h->pre = pre;
    h->post = post;
    h->user_data = user_data;
    h->handle = ++e->next_handle;
    /* its place among the output tensor's hooks and retain_grad */
    h->tensor_hooks_before = n->out->next_hook_handle;
    h->retain_before = n->out->retains_grad;
    ag__nhook *_Atomic *tail = pre ? &e->pre : &e->post;
    for (ag__nhook *p; (p = atomic_load_explicit(tail, memory_order_relaxed));)
        tail = &p->next;
    atomic_store_explicit(tail, h, memory_order_release);
    pthread_mutex_unlock(&ag__hooks_lock);
    return h->handle;
}

int ag_node_register_prehook(const ag_node *node, ag_node_prehook_fn fn, void *user_data) {
    return ag__register(node, fn, NULL, user_data, "ag_node_register_prehook");
}

int ag_node_register_hook(const ag_node *node, ag_node_hook_fn fn, void *user_data) {
    return ag__register(node, NULL, fn, user_data, "ag_node_register_hook");
}

int ag_node_remove_hook(const ag_node *node, int handle) {
    if (!node)
        return ag__null_object("ag_node_remove_hook", "node");
    int rc = AG_EINVAL;
    pthread_mutex_lock(&ag__hooks_lock);
    ag__node_ext *e = ag__ext(node);
    for (int list = 0; e && list < 2 && rc; list++) {
        for (ag__nhook *h = atomic_load_explicit(list ? &e->post : &e->pre, memory_order_relaxed); h;
             h = atomic_load_explicit(&h->next, memory_order_relaxed)) {
            if (h->handle == handle && !atomic_load_explicit(&h->removed, memory_order_relaxed)) {
                atomic_store_explicit(&h->removed, true, memory_order_relaxed);
                rc = 0;
                break;
            }
        }
    }
    pthread_mutex_unlock(&ag__hooks_lock);
    if (rc)
        return ag__error(AG_EINVAL, "ag_node_remove_hook: no hook with handle %d on this node", handle);
    return 0;
}
