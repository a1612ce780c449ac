/* Private structures shared by the files of src/: tensors, storage, graph
 * nodes, the arena allocator and the error helpers. Nothing here is public;
 * private names carry a double underscore (ag__). */
#ifndef AG_INTERNAL_H
#define AG_INTERNAL_H

#include "agrad.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>

#define AG__UNUSED(x) ((void)(x))
#define AG__LIKELY(x) __builtin_expect(!!(x), 1)
#define AG__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define AG__ALIGN 64     /* alignment of tensor data of 256 bytes or more */
#define AG__MIN_ALIGN 16 /* alignment of every arena allocation */

/* ---- Errors (error.c) -------------------------------------------------------
 * ag__error sets this thread's code and message and returns the code, so a
 * failing path reads `return ag__error(AG_EINVAL, "...", ...);`.
 * ag__error_null is the same for functions returning a pointer. */
/* Room for one message: an error in backward under anomaly mode carries
 * the forward's call stack. */
#define AG__ERRMSG_MAX 4096
int ag__error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void *ag__error_null(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A NULL tensor argument: keep the first error if one is set, else report. */
void *ag__null_arg(const char *fn);
int ag__null_code(const char *fn); /* the same, returning the kept (or new) code */
/* The same for another object the library made (an optimizer, a node):
 * "fn: what is NULL" unless an earlier error is kept. */
int ag__null_object(const char *fn, const char *what);
const char *ag__dtype_torch_name(ag_dtype dt);  /* "torch.FloatTensor" */
const char *ag__dtype_scalar_name(ag_dtype dt); /* "Float" / "Double" */
size_t ag__dtype_size(ag_dtype dt);

/* ---- Arenas (ctx.c) ---------------------------------------------------------
 * A context is a bump allocator over chunks obtained from jemalloc's own API
 * on a private jemalloc arena (or from malloc when jemalloc is disabled).
 * ag__ctx_alloc is for the thread that owns ctx; ag__ctx_alloc_shared may be
 * called from any thread (leaf .grad buffers filled by backward) and takes
 * the context's lock. Both return AG__MIN_ALIGN-aligned memory, NULL on ENOMEM
 * (with the error set). */
void *ag__ctx_alloc(ag_ctx *ctx, size_t nbytes);
void *ag__ctx_alloc_shared(ag_ctx *ctx, size_t nbytes);
/* create_graph backwards record into the gradients' context from several
 * threads at once. Each participant thread allocates what it records in a
 * context of its own instead: ag__ctx_redirect(from, to, saved) makes this
 * thread's allocations in `from` go to `to` (to = NULL ends it; saved
 * receives the previous setting, restored with ag__ctx_redirect_restore);
 * the tensors still name `from` as their context. `from` must be marked
 * with ag__ctx_redirects(from, +1) meanwhile (the owner's thread, before
 * and after), so that other contexts pay one load. ag__ctx_adopt(dst, src)
 * then moves all of src's memory into dst: freed when dst is reset. */
typedef struct {
    ag_ctx *from, *to;
} ag__redirect;
void ag__ctx_redirect(ag_ctx *from, ag_ctx *to, ag__redirect *saved);
void ag__ctx_redirect_restore(const ag__redirect *saved);
void ag__ctx_redirects(ag_ctx *ctx, int delta);
void ag__ctx_adopt(ag_ctx *dst, ag_ctx *src);
/* A .grad that a create_graph backward made in context `owner` for a
 * tensor t of another context: when owner is reset or freed, t->grad is
 * set back to NULL if it is still that tensor; when t's context goes
 * first, the link is dropped. ag__grad_link_new allocates the record in
 * owner (any thread; NULL on ENOMEM, error set), ag__grad_link_add links
 * it (any thread). */
typedef struct ag__grad_link ag__grad_link;
ag__grad_link *ag__grad_link_new(ag_ctx *owner);
void ag__grad_link_add(ag__grad_link *l, ag_tensor *t, ag_tensor *grad);
/* The lock that guards t->grad against backwards on other threads. */
pthread_mutex_t *ag__grad_lock(const ag_tensor *t);
/* A point in the owner's allocations of a context, and a return to it:
 * everything ag__ctx_alloc handed out since the mark is taken back (chunks
 * obtained since are freed), so an op that fails after allocating leaves
 * its context as it found it. Marks nest (an op calling ops); a rollback
 * past a later mark invalidates that mark. The shared region (.grad
 * buffers, AccumulateGrad nodes) is never rolled back. */
typedef struct ag__ctx_pos {
    void *chunk, *large; /* the heads of the chunk lists */
    size_t used;         /* of the head chunk */
    size_t handed_out;
} ag__ctx_pos;
void ag__ctx_mark(ag_ctx *ctx, ag__ctx_pos *pos);
void ag__ctx_rollback(ag_ctx *ctx, const ag__ctx_pos *pos);
/* Raw chunk allocation used by the arenas and the engine's scratch memory. */
void *ag__chunk_alloc(size_t nbytes);
void ag__chunk_free(void *p, size_t nbytes);
/* Heap calls made by the library (chunk allocations), for memory tests. */
uint64_t ag__heap_calls(void);
/* realloc(p, nbytes) that failure injection can fail: for buffers that
 * the caller frees with free() (ag_to_string) and private growable ones. */
void *ag__realloc(void *p, size_t nbytes);
/* Failure injection for tests (ctx.c). Every allocation asks
 * ag__fault_should_fail(AG__FAULT_ALLOC) first, every thread start (in
 * sched/, through ws__fault_hook when a test sets it to this function)
 * ag__fault_should_fail(AG__FAULT_THREAD). ag__fault_inject(n, persistent)
 * counts from 0 and fails the n-th call (and every later one when
 * persistent); n = 0 counts without failing, n < 0 disarms (keeping the
 * counts). */
enum { AG__FAULT_ALLOC = 0, AG__FAULT_THREAD = 1 };
void ag__fault_inject(int64_t n, bool persistent);
bool ag__fault_should_fail(int what);
int64_t ag__fault_calls(void);       /* calls counted since armed */
int64_t ag__fault_hits(void);        /* of them, failed */
int64_t ag__fault_thread_hits(void); /* of the failed, thread starts */

/* ---- Tensors (tensor.c) ------------------------------------------------------ */

/* Storage, views and version counters.
 *
 * A storage record is the memory of a tensor's elements, made with the
 * tensor that first owned it, in that tensor's context (the storage's
 * `ctx`). Tensors are headers over a storage: shape, strides (in elements,
 * any sign-free layout: 0 along an expanded dimension) and `data`, the
 * address of element [0, ..., 0] (storage->data plus the storage offset).
 * A view (narrow, select, transpose, expand, detach, reshape where the
 * layout allows) is a new header over its base's storage: writes through
 * either are seen by both, and they share the version counter, which
 * lives in the storage and counts in-place changes to any of them. A
 * view's `base` is the tensor that owns the storage (a view of a view
 * names the first base), as PyTorch's ._base.
 *
 * `version` points at `own_version`, except in the contiguous stand-in
 * the op skeleton makes of a strided input (ops.h), which copies the
 * elements but counts the input's versions: a tensor saved for backward
 * through a stand-in still sees the in-place changes of the original.
 *
 * Lifetime: a header lives in the context it was made in; its elements in
 * the storage's context. A view made in another context than its storage's
 * is linked to that context: resetting or freeing the storage's context
 * first detaches such views (their storage becomes an empty, dead record
 * and every use of them is an error), so no header ever points into freed
 * memory (ag__view_link, tensor.c). */
typedef struct ag__storage {
    void *data;
    size_t nbytes;
    ag_ctx *ctx;               /* owns the memory; NULL for the dead record */
    _Atomic uint32_t *version; /* &own_version, or the counter a stand-in shares */
    _Atomic uint32_t own_version;
} ag__storage;

typedef struct ag__hook {
    ag_hook_fn fn;
    void *user_data;
    int handle;
    struct ag__hook *next;
} ag__hook;

struct ag_tensor {
    /* read-only after creation (except the in-place history below) */
    ag_ctx *ctx;
    ag__storage *storage;
    void *data; /* element [0, ...]: storage->data + offset elements */
    int64_t shape[AG_MAX_DIMS];
    int64_t stride[AG_MAX_DIMS]; /* in elements */
    int64_t offset;              /* storage offset, in elements */
    int64_t numel;
    int ndim;
    ag_dtype dtype;
    bool contiguous;   /* row-major without gaps: data[0, numel) are the elements */
    bool view_no_grad; /* a view made with grad mode off (in-place changes are refused) */
    ag_tensor *base;   /* a view: the tensor owning the storage; NULL otherwise */
    /* autograd */
    bool requires_grad;
    bool retains_grad;
    int retain_mark;           /* hooks with a larger handle run after the grad is retained */
    ag_node *grad_fn;          /* producer; NULL for leaves */
    ag_node *grad_accumulator; /* AccumulateGrad, for a leaf that requires grad */
    ag_tensor *grad;           /* .grad: in ctx (shared sub-allocation) */
    ag__hook *hooks;           /* in registration order */
    int next_hook_handle;
};

/* A tensor with uninitialised data (numel elements of dt), in ctx. */
ag_tensor *ag__tensor_new(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape);
ag_tensor *ag__tensor_new_shared(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape);
ag_tensor *ag__tensor_like(ag_ctx *ctx, const ag_tensor *t); /* same dtype/shape, uninitialised */
/* A header in ctx for base's storage (data and version counter shared)
 * with another shape of the same element count; no autograd state. base
 * is contiguous: the header is too. */
ag_tensor *ag__tensor_alias(ag_ctx *ctx, const ag_tensor *base, int ndim, const int64_t *shape);
/* A view of base in ctx: shape, strides and storage offset given (checked
 * by the caller to stay inside base's storage); no autograd state. */
ag_tensor *ag__tensor_view(ag_ctx *ctx, const ag_tensor *base, int ndim, const int64_t *shape, const int64_t *stride,
                           int64_t offset);
/* The row-major strides of shape; and whether t's strides are (size-1
 * dimensions may have any stride). */
void ag__contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);
bool ag__is_contiguous(const ag_tensor *t);
/* A view whose storage's context was reset or freed: AG_ESTATE with a
 * message naming fn; 0 when t is usable. */
int ag__check_alive(const ag_tensor *t, const char *fn);
/* Links a view made in another context than its storage's (nothing to do
 * otherwise); AG_ENOMEM on failure. ag__views_release(ctx), called by
 * ag_ctx_reset and ag_ctx_free before ctx's memory goes, detaches the
 * linked views of ctx's storage and drops the links of ctx's views. */
int ag__view_link(ag_tensor *view);
void ag__views_release(ag_ctx *ctx);
/* The elements of t (any layout) into dst, row-major, as dtype dt. */
void ag__gather(const ag_tensor *t, void *dst, ag_dtype dt);
/* The offset in elements from t->data of flat (row-major) index i. */
static inline int64_t ag__elem_offset(const ag_tensor *t, int64_t i) {
    if (t->contiguous)
        return i;
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0 && i > 0; d--) {
        off += (i % t->shape[d]) * t->stride[d];
        i /= t->shape[d];
    }
    return off;
}
/* A tensor, its storage record and its data are one arena block: the
 * structs, then the data. Small tensors keep their data right after the
 * structs (one-element chains stay compact); larger ones get
 * cache-line-aligned data for the kernels. */
#define AG__STRUCTS_SIZE ((sizeof(ag_tensor) + sizeof(ag__storage) + AG__MIN_ALIGN - 1) / AG__MIN_ALIGN * AG__MIN_ALIGN)
#define AG__SMALL_DATA 256
/* The block of a tensor shaped like `like`, and a tensor made in such a
 * block, its data as the block had it or zeroed (the engine recycles them). */
static inline size_t ag__tensor_block_bytes(const ag_tensor *like) {
    size_t nbytes = (size_t)like->numel * ag__dtype_size(like->dtype); /* like may be a view */
    return AG__STRUCTS_SIZE + (nbytes < AG__SMALL_DATA ? 0 : AG__ALIGN - AG__MIN_ALIGN) + nbytes;
}
ag_tensor *ag__tensor_in_block(void *block, ag_ctx *ctx, const ag_tensor *like);
ag_tensor *ag__tensor_zeros_in_block(void *block, ag_ctx *ctx, const ag_tensor *like);
/* Validates a shape for a new tensor of dt: its element count (PyTorch's
 * overflow rule, core/checked.h) and data bytes, which must be within
 * ag_get_max_tensor_bytes(). AG_EINVAL / AG_ENOMEM with PyTorch's message. */
int ag__check_shape(ag_dtype dt, int ndim, const int64_t *shape, int64_t *numel_out, size_t *nbytes_out);
int ag__normalize_dim(int dim, int ndim, int *out); /* PyTorch's "Dimension out of range" */
bool ag__same_shape(const ag_tensor *a, const ag_tensor *b);
void ag__shape_str(char *buf, size_t n, int ndim, const int64_t *shape); /* "[2, 3]" */
static inline void ag__bump_version(ag_tensor *t) {
    atomic_fetch_add_explicit(t->storage->version, 1, memory_order_relaxed);
}
static inline uint32_t ag__version_of(const ag_tensor *t) {
    return atomic_load_explicit(t->storage->version, memory_order_relaxed);
}
/* Element access regardless of dtype and layout, by flat row-major index
 * (slow path: printing, tests, golden). */
static inline double ag__load(const ag_tensor *t, int64_t i) {
    i = ag__elem_offset(t, i);
    return t->dtype == AG_FLOAT32 ? (double)((const float *)t->data)[i] : ((const double *)t->data)[i];
}
static inline void ag__store(ag_tensor *t, int64_t i, double v) {
    i = ag__elem_offset(t, i);
    if (t->dtype == AG_FLOAT32)
        ((float *)t->data)[i] = (float)v;
    else
        ((double *)t->data)[i] = v;
}

/* ---- Graph (graph.c) ----------------------------------------------------------
 * A node is the backward of one op. It has one output (the tensor `out` whose
 * grad_fn it is; for AccumulateGrad, the leaf) and one edge per input of the
 * op: next[i] is the producer of input i (its grad_fn, or the leaf's
 * AccumulateGrad), or NULL where input i needs no gradient. */

typedef struct ag__saved {
    ag_tensor *t;     /* NULL once released */
    uint32_t version; /* storage version when saved */
    bool is_output;   /* saved the node's own output (names it in the error) */
} ag__saved;

/* The backward of a node: the gradients of the op's inputs from dout, the
 * gradient w.r.t. node->out (same shape and dtype).
 *
 * For each i with node->next[i] != NULL, dinp[i] is the buffer of input i's
 * gradient (its shape and dtype), and fresh[i] says what it holds:
 *   fresh[i]   nothing yet, any bits: the backward WRITES (=) every element
 *              of it (a kernel that reaches only some elements, a scatter,
 *              clears the buffer first);
 *   !fresh[i]  earlier contributions: the backward ADDS (+=) into it.
 * dinp[i] is NULL where the runner needs nothing from this call: no
 * gradient is wanted, or the runner handed dout itself on as input i's
 * gradient (a pass-through input, see ag__node_kind.passes_grad). When the
 * same producer feeds two inputs, dinp[i] == dinp[j] and both are !fresh
 * (the runner clears the buffer), so add, never store, into such a pair.
 * dout is read-only, and stays valid until the backward returns; it may be
 * the buffer a pass-through input receives, so it is never written.
 * Temporaries come from `scratch` (reset when the backward ends). Returns 0
 * or a negative code with the error set (the backward then failed as a
 * whole: what the buffers hold does not matter). */
typedef int (*ag__backward_fn)(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh,
                               ag_ctx *scratch);

/* The same backward as a differentiable formula, for create_graph: dout is
 * the gradient w.r.t. node->out (it may have history); for each i with
 * need[i], dinp[i] is set to the gradient of input i, with the input's
 * shape and dtype, made with agrad's ops in ctx while grad mode is on, so
 * it records its own history; NULL means no gradient (PyTorch's
 * undefined). dout may be returned as is. Entries without need[i] are
 * left NULL. Returns 0 or a negative code with the error set. */
typedef int (*ag__backward_graph_fn)(ag_node *node, ag_tensor *dout, const bool *need, ag_tensor **dinp, ag_ctx *ctx);

/* What every node of one kind shares. Kinds are written with designated
 * initialisers, so a new member (0 where a kind leaves it out) changes no
 * existing kind. */
typedef struct ag__node_kind {
    const char *name; /* PyTorch's node name */
    ag__backward_fn backward;
    ag__backward_graph_fn backward_graph; /* NULL: create_graph is refused through this node */
    /* Bytes of this kind's attributes (its ag__<kind>_attr struct), carried
     * inline by each node after its edges: see ag__node_attr. */
    size_t attr_size;
    /* The backward honours fresh[] (writes fresh buffers). False: the runner
     * clears every fresh buffer first and passes fresh[] all false, so the
     * backward may only add (+=), as every backward did before fresh[]. */
    bool writes_fresh;
    /* Bit i: input i's gradient is dout itself, element for element (add,
     * the first input of sub, views, clone). Where input i has dout's dtype
     * and element count and nothing else holds dout, the runner hands the
     * dout buffer on as input i's gradient (with input i's shape) instead
     * of asking the backward for a copy: dinp[i] is then NULL. */
    uint32_t passes_grad;
    /* The op code that a backward shared by several kinds reads (the
     * elementwise ops: one backward, a kind per PyTorch name). */
    int op;
} ag__node_kind;

#define AG__MAX_SAVED 3

/* Where a node's attributes start: after its edges, at this alignment. */
#define AG__ATTR_ALIGN 16

struct ag_node {
    /* read-only after creation */
    const ag__node_kind *kind;
    ag_tensor *out; /* the output (same ctx as the node); for AccumulateGrad, the leaf */
    uint64_t seq;   /* creation order; UINT64_MAX for AccumulateGrad (PyTorch's priority) */
    int num_next;
    /* saved for backward */
    int num_saved;
    bool saved_scalar;     /* a wrapped scalar, index or target array counts as saved, as in PyTorch */
    _Atomic bool released; /* saved state freed by a backward without retain_graph */
    ag__saved saved[AG__MAX_SAVED];
    /* untyped op attributes, being replaced by the typed ones below */
    double scalar;
    int64_t iarg[4];
    void *attr;
    /* Hooks, the forward's call stack (anomaly mode) and custom functions'
     * state: NULL for most nodes (autograd/nodeext.h). */
    struct ag__node_ext *_Atomic ext;
    /* Last: num_next edges, then (from the next AG__ATTR_ALIGN boundary)
     * kind->attr_size bytes of attributes and any extra bytes the op asked
     * for (ag__record_extra): one allocation per node. */
    ag_node *next[];
};

/* The node's attributes: the op's ag__<kind>_attr struct, read and written
 * through a typed accessor next to the kind (ag__mm_attr_of(node)->k). */
static inline void *ag__node_attr(const ag_node *node) {
    uintptr_t p = (uintptr_t)(node->next + node->num_next);
    return (void *)((p + AG__ATTR_ALIGN - 1) & ~(uintptr_t)(AG__ATTR_ALIGN - 1));
}

extern const ag__node_kind ag__accumulate_grad_kind;

/* Records the node for an op whose result is `out`, when grad mode is on
 * and an input requires grad: sets out->grad_fn and out->requires_grad, and
 * returns the node (attributes zeroed) so the op can save tensors and
 * attributes. Returns NULL when nothing is recorded (not an error) and on
 * ENOMEM (error set: check ag_last_status() only when it matters, i.e.
 * when ag__needs_grad was true). ag__record_extra also gives the node
 * `extra` bytes after kind->attr_size, for an attribute struct ending in a
 * flexible array (indices, targets, sizes). */
bool ag__needs_grad(int n, ag_tensor *const *inputs);
ag_node *ag__record(ag_ctx *ctx, const ag__node_kind *kind, ag_tensor *out, int n, ag_tensor *const *inputs);
ag_node *ag__record_extra(ag_ctx *ctx, const ag__node_kind *kind, ag_tensor *out, int n, ag_tensor *const *inputs,
                          size_t extra);
/* Being replaced by attributes ending in a flexible array. */
int64_t *ag__node_keep_ints(ag_ctx *ctx, ag_node *node, const int64_t *v, int64_t n);
/* Saves t (with its current version) in slot i of node. */
void ag__save(ag_node *node, int i, ag_tensor *t, bool is_output);
/* The saved tensor in slot i, checking release and version (error + NULL). */
ag_tensor *ag__saved_get(ag_node *node, int i);
/* The version check of one saved tensor of node, with PyTorch's message. */
ag_tensor *ag__saved_check(const ag_node *node, const ag__saved *s);
/* AG_ESTATE with PyTorch's "Trying to backward through the graph a second
 * time ..." message. */
int ag__retain_error(void);
/* The AccumulateGrad node of a leaf that requires grad (created on demand). */
ag_node *ag__grad_accumulator(ag_tensor *leaf);
/* Releases saved tensors (backward without retain_graph). */
void ag__node_release(ag_node *node);
/* AG_ESTATE with PyTorch's retain_graph message when the node's saved state
 * was freed by an earlier backward. */
int ag__node_check_released(const ag_node *node);
bool ag__node_has_saved(const ag_node *node);

/* ---- Trace (trace.c) ----------------------------------------------------------- */
extern _Atomic bool ag__tracing;
uint64_t ag__now_ns(void);
void ag__trace_record(const char *name, uint64_t start_ns, uint64_t end_ns);

/* ---- Kernels on the pool (autograd/pool.c) --------------------------------------
 * fn(arg, lo, hi) over [0, n) in pieces of at least `grain`, on the pool the
 * calling thread works for (a backward node on a worker), or on the pool of
 * ag__kernel_threads() threads with the caller working too; serially on one
 * thread, inside OpenMP tasks, or when n <= grain. Never a second team of
 * threads inside a worker. Callers that must not depend on the thread count
 * cut their work into pieces fixed by the shape and iterate over pieces. */
typedef void (*ag__range_fn)(void *arg, int64_t lo, int64_t hi);
void ag__parallel_for(int64_t n, int64_t grain, ag__range_fn fn, void *arg);
/* Threads for kernels: the running backward's num_threads, else
 * ag_get_num_threads(). */
int ag__kernel_threads(void);

/* ---- Grad mode and settings (settings.c) ------------------------------------ */
bool ag__grad_enabled(void);
/* The CPUs this process may run on (autograd/pool.c asks the scheduler). */
int ag__cpu_count(void);
/* Largest thread count agrad accepts (ag_set_num_threads, AG_NUM_THREADS). */
#define AG__MAX_THREADS 1024

/* ---- Shapes and broadcasting (kernel helpers, ops/common.c) --------------- */
/* out shape of broadcasting a with b; AG_ESHAPE with PyTorch's message. */
int ag__broadcast_shape(const ag_tensor *a, const ag_tensor *b, int *ndim, int64_t *shape);

#endif /* AG_INTERNAL_H */
