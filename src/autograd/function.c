/* Custom functions (torch.autograd.Function): a user's forward and backward
 * as one node of the graph, named as the user says. The node's state (the
 * function, its user data, the saved tensors with their versions) lives in
 * the context the function was applied in. Its backward runs through the
 * engine's special runner (it has an ext): it makes its own gradients,
 * which are checked and summed down, cast or refused as PyTorch's
 * validate_outputs does, and it may give none for an input. */
#include "autograd/engine.h"
#include "autograd/nodeext.h"
#include "ops/grad_ops.h"
#include "ops/ops.h"

#include <stdio.h>

struct ag_function_ctx {
    const ag_function *fn;
    void *user_data;
    ag_ctx *ctx;
    ag_node *node; /* NULL when nothing was recorded */
    bool in_forward;
    /* save_for_backward: pointers while forward runs, then with versions */
    ag_tensor **to_save;
    ag__saved *saved;
    int nsaved;
};

int ag_function_save(ag_function_ctx *fc, ag_tensor *const *tensors, int n) {
    if (!fc)
        return ag__null_object("ag_function_save", "the function context");
    if (!fc->in_forward)
        return ag__error(AG_ESTATE, "ag_function_save: only forward may save tensors for backward");
    if (n < 0 || (n > 0 && !tensors))
        return ag__error(AG_EINVAL, "ag_function_save: %s", n < 0 ? "n is negative" : "tensors is NULL");
    ag_tensor **keep = ag__ctx_alloc(fc->ctx, (size_t)(n > 0 ? n : 1) * sizeof *keep);
    if (!keep)
        return AG_ENOMEM;
    for (int i = 0; i < n; i++)
        keep[i] = tensors[i];
    fc->to_save = keep;
    fc->nsaved = n;
    return 0;
}

const ag_tensor *ag_function_saved(ag_function_ctx *fc, int i) {
    if (!fc) {
        ag__null_object("ag_function_saved", "the function context");
        return NULL;
    }
    if (i < 0 || i >= fc->nsaved)
        return ag__error_null(AG_EINVAL, "ag_function_saved: index %d is out of range (%d saved)", i, fc->nsaved);
    if (fc->in_forward || !fc->node)
        return fc->to_save[i];
    if (atomic_load_explicit(&fc->node->released, memory_order_relaxed)) {
        ag__retain_error();
        return NULL;
    }
    const ag__saved *s = &fc->saved[i];
    return s->t ? ag__saved_check(fc->node, s) : NULL;
}

/* The backward's result: 0, or PyTorch's error. */
static int ag__function_rc(const ag_node *node, int rc) {
    if (rc < 0) {
        if (ag_last_status() != rc) /* the backward set no error of its own */
            ag__error(rc, "the backward of %s failed: %s", node->kind->name, ag_strerror(rc));
        return rc;
    }
    if (rc > 0 && rc != node->num_next)
        return ag__error(AG_EINVAL, "function %s returned an incorrect number of gradients (expected %d, got %d)",
                         node->kind->name, node->num_next, rc);
    return 0;
}

static int ag__function_call(ag_node *node, ag_ctx *ctx, const ag_tensor *dout, ag_tensor ***gi) {
    ag_function_ctx *fc = node->attr;
    int n = node->num_next;
    if (!(*gi = ag__ctx_alloc(ctx, (size_t)(n > 0 ? n : 1) * sizeof **gi)))
        return AG_ENOMEM;
    memset(*gi, 0, (size_t)(n > 0 ? n : 1) * sizeof **gi);
    ag_clear_error();
    return ag__function_rc(node, fc->fn->backward(fc, ctx, dout, *gi, fc->user_data));
}

/* Without create_graph: grad mode off, the gradients made in the engine's
 * temporaries and added into the buffers (dinp[i] cleared where the
 * function gave none). */
static int ag__function_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                                 ag_ctx *scratch) {
    AG__UNUSED(fresh); /* not a kind that writes fresh buffers: they come zeroed */
    ag_tensor **gi;
    int rc = ag__function_call(node, scratch, dout, &gi);
    if (rc)
        return rc;
    for (int i = 0; i < node->num_next; i++) {
        ag_tensor *d = dinp[i], *g = gi[i];
        if (!d)
            continue;
        if (!g) {
            dinp[i] = NULL;
            continue;
        }
        if (!ag__same_shape(g, d) && !ag__expandable(d, g))
            return ag__invalid_gradient(node->kind->name, i, g, d);
        if (g->dtype != d->dtype) { /* cast, as PyTorch does */
            ag_tensor *c = ag__tensor_new(scratch, d->dtype, g->ndim, g->shape);
            if (!c)
                return AG_ENOMEM;
            for (int64_t e = 0; e < g->numel; e++)
                ag__store(c, e, ag__load(g, e));
            g = c;
        }
        if (ag__same_shape(g, d))
            ag__add_range(d, g, 0, d->numel);
        else if (d->numel > 0)
            ag__add_reduced(d, g, 1.0); /* summed over the dimensions d was broadcast along */
    }
    return 0;
}

/* create_graph: grad mode on, the gradients made in the recorded
 * backward's context; the engine conforms them (ag__conform). */
static int ag__function_backward_graph(ag_node *node, ag_tensor *dout, const bool *need, ag_tensor **dinp,
                                       ag_ctx *ctx) {
    ag_tensor **gi;
    int rc = ag__function_call(node, ctx, dout, &gi);
    if (rc)
        return rc;
    for (int i = 0; i < node->num_next; i++)
        dinp[i] = need[i] ? gi[i] : NULL;
    return 0;
}

/* A new tensor in ctx sharing t's storage (PyTorch's view_as), for an
 * output that is an input, has history or lives elsewhere. */
static ag_tensor *ag__alias(ag_ctx *ctx, const ag_tensor *t) {
    ag_tensor *a = ag__ctx_alloc(ctx, sizeof *a);
    if (!a)
        return NULL;
    memset(a, 0, sizeof *a);
    a->ctx = ctx;
    a->storage = t->storage;
    a->data = t->data;
    a->ndim = t->ndim;
    a->dtype = t->dtype;
    a->numel = t->numel;
    memcpy(a->shape, t->shape, sizeof a->shape);
    return a;
}

ag_tensor *ag_function_apply(ag_ctx *ctx, const ag_function *fn, ag_tensor *const *inputs, int n, void *user_data) {
    if (!ctx)
        return ag__error_null(AG_EINVAL, "ag_function_apply: ctx is NULL");
    if (!fn || !fn->name || !fn->forward || !fn->backward)
        return ag__error_null(AG_EINVAL, "ag_function_apply: the function needs a name, a forward and a backward");
    if (n < 0 || (n > 0 && !inputs))
        return ag__error_null(AG_EINVAL, "ag_function_apply: %s", n < 0 ? "n is negative" : "inputs is NULL");
    for (int i = 0; i < n; i++)
        if (!inputs[i])
            return ag__null_arg("ag_function_apply");
    ag_function_ctx *fc = ag__ctx_alloc(ctx, sizeof *fc);
    if (!fc)
        return NULL;
    memset(fc, 0, sizeof *fc);
    fc->fn = fn;
    fc->user_data = user_data;
    fc->ctx = ctx;
    bool record = ag__needs_grad(n, inputs);

    fc->in_forward = true;
    bool prev = ag_set_grad_enabled(false);
    ag_clear_error();
    ag_tensor *out = fn->forward(fc, ctx, inputs, n, user_data);
    ag_set_grad_enabled(prev);
    fc->in_forward = false;
    if (!out) {
        if (!ag_last_status())
            ag__error(AG_EINVAL, "%s: forward returned NULL", fn->name);
        return NULL;
    }
    if (!record)
        return out;

    bool alias = out->requires_grad || out->ctx != ctx;
    for (int i = 0; i < n && !alias; i++)
        alias = inputs[i] == out;
    ag_tensor *res = alias ? ag__alias(ctx, out) : out;
    ag__node_kind *kind = ag__ctx_alloc(ctx, sizeof *kind);
    size_t len = strlen(fn->name) + 1;
    char *name = ag__ctx_alloc(ctx, len);
    if (!res || !kind || !name)
        return NULL;
    memcpy(name, fn->name, len);
    *kind =
        (ag__node_kind){.name = name, .backward = ag__function_backward, .backward_graph = ag__function_backward_graph};
    ag_node *node = ag__record(ctx, kind, res, n, inputs);
    if (!node)
        return NULL;
    ag__node_ext *ext = ag__ext(node);
    if (!ext && !(ext = ag__ext_make(ctx, node)))
        return NULL;
    if (fc->nsaved > 0 && !(fc->saved = ag__ctx_alloc(ctx, (size_t)fc->nsaved * sizeof *fc->saved)))
        return NULL;
    for (int i = 0; i < fc->nsaved; i++) { /* versions as forward left them, as PyTorch's SavedVariables */
        ag_tensor *t = fc->to_save[i];
        fc->saved[i] = (ag__saved){.t = t, .version = t ? ag__version_of(t) : 0, .is_output = t == out || t == res};
    }
    node->attr = fc;
    fc->node = node;
    ext->fn = fc;
    return res;
}
