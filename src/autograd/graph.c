/* The recorded graph: nodes made by ops in grad mode, their edges to the
 * producers of their inputs, saved tensors with the versions they had, and
 * the AccumulateGrad node of each leaf that requires grad. */
#include "autograd/nodeext.h"

#include <stdio.h>

/* PyTorch numbers nodes per thread; the engine runs later nodes first. */
static _Thread_local uint64_t ag__seq_counter;

/* AccumulateGrad's work (adding into .grad) is done by the engine itself. */
const ag__node_kind ag__accumulate_grad_kind = {.name = "AccumulateGrad"};

bool ag__needs_grad(int n, ag_tensor *const *inputs) {
    if (!ag__grad_enabled())
        return false;
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad)
            return true;
    return false;
}

ag_node *ag__grad_accumulator(ag_tensor *leaf) {
    if (leaf->grad_accumulator)
        return leaf->grad_accumulator;
    /* Normally made by ag_requires_grad_ on the owner's thread; the shared
     * allocation keeps this fallback safe from any thread. */
    ag_node *n = ag__ctx_alloc_shared(leaf->ctx, sizeof *n);
    if (!n)
        return NULL;
    memset(n, 0, sizeof *n);
    n->kind = &ag__accumulate_grad_kind;
    n->out = leaf;
    n->seq = UINT64_MAX;
    leaf->grad_accumulator = n;
    return n;
}

/* Bytes of a node with n edges and `attr` bytes of attributes: the struct,
 * the edges, padding to AG__ATTR_ALIGN, the attributes (see ag__node_attr). */
static bool ag__node_bytes(int n, size_t attr, size_t *out) {
    size_t edges = sizeof(ag_node) + (size_t)n * sizeof(ag_node *);
    size_t head = (edges + AG__ATTR_ALIGN - 1) & ~(size_t)(AG__ATTR_ALIGN - 1);
    return !__builtin_add_overflow(head, attr, out);
}

ag_node *ag__record_extra(ag_ctx *ctx, const ag__node_kind *kind, ag_tensor *out, int n, ag_tensor *const *inputs,
                          size_t extra) {
    if (!ag__needs_grad(n, inputs))
        return NULL;
    size_t attr, bytes;
    if (__builtin_add_overflow(kind->attr_size, extra, &attr) || !ag__node_bytes(n, attr, &bytes))
        return ag__error_null(AG_ENOMEM, "%s: attributes of %zu bytes do not fit in memory", kind->name, extra);
    ag_node *node = ag__ctx_alloc(ctx, bytes);
    if (!node)
        return NULL;
    memset(node, 0, bytes);
    node->kind = kind;
    node->out = out;
    node->num_next = n;
    for (int i = 0; i < n; i++) {
        ag_tensor *in = inputs[i];
        ag_node *next = NULL;
        if (in && in->requires_grad) {
            next = in->grad_fn ? in->grad_fn : ag__grad_accumulator(in);
            if (!next)
                return NULL;
        }
        node->next[i] = next;
    }
    node->seq = ag__seq_counter++;
    if (AG__UNLIKELY(ag__anomaly_enabled()) && ag__anomaly_capture(ctx, node))
        return NULL;
    out->grad_fn = node;
    out->requires_grad = true;
    return node;
}

ag_node *ag__record(ag_ctx *ctx, const ag__node_kind *kind, ag_tensor *out, int n, ag_tensor *const *inputs) {
    return ag__record_extra(ctx, kind, out, n, inputs, 0);
}

int64_t *ag__node_keep_ints(ag_ctx *ctx, ag_node *node, const int64_t *v, int64_t n) {
    int64_t *copy = ag__ctx_alloc(ctx, (size_t)(n > 0 ? n : 1) * sizeof *copy);
    if (!copy)
        return NULL;
    if (n > 0)
        memcpy(copy, v, (size_t)n * sizeof *copy);
    node->attr = copy;
    node->saved_scalar = true; /* an index or target array counts as saved, as in PyTorch */
    return copy;
}

void ag__save(ag_node *node, int i, ag_tensor *t, bool is_output) {
    node->saved[i].t = t;
    node->saved[i].version = ag__version_of(t);
    node->saved[i].is_output = is_output;
    if (i >= node->num_saved)
        node->num_saved = i + 1;
}

static const char ag__retain_msg[] =
    "Trying to backward through the graph a second time (or directly access saved tensors after they "
    "have already been freed). Saved intermediate values of the graph are freed when you call "
    ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
    "graph a second time or if you need to access saved tensors after calling backward.";

int ag__node_check_released(const ag_node *node) {
    if (atomic_load_explicit(&node->released, memory_order_relaxed) && ag__node_has_saved(node))
        return ag__error(AG_ESTATE, "%s", ag__retain_msg);
    return 0;
}

int ag__retain_error(void) { return ag__error(AG_ESTATE, "%s", ag__retain_msg); }

ag_tensor *ag__saved_get(ag_node *node, int i) {
    if (ag__node_check_released(node))
        return NULL;
    return ag__saved_check(node, &node->saved[i]);
}

ag_tensor *ag__saved_check(const ag_node *node, const ag__saved *s) {
    ag_tensor *t = s->t;
    if (ag__check_alive(t, "backward"))
        return NULL;
    uint32_t now = ag__version_of(t);
    if (now != s->version) {
        char shape[160], which[96] = "";
        ag__shape_str(shape, sizeof shape, t->ndim, t->shape);
        const ag_node *producer = s->is_output ? node : t->grad_fn;
        if (producer)
            snprintf(which, sizeof which, ", which is output 0 of %s,", producer->kind->name);
        return ag__error_null(AG_ESTATE,
                              "one of the variables needed for gradient computation has been modified by "
                              "an inplace operation: [%s %s]%s is at version %u; expected version %u "
                              "instead. Hint: enable anomaly detection to find the operation that failed "
                              "to compute its gradient, with torch.autograd.set_detect_anomaly(True).",
                              ag__dtype_torch_name(t->dtype), shape, which, now, s->version);
    }
    return t;
}

bool ag__node_has_saved(const ag_node *node) { return node->num_saved > 0 || node->saved_scalar; }

void ag__node_release(ag_node *node) { atomic_store_explicit(&node->released, true, memory_order_relaxed); }
