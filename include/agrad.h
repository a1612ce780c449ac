/* agrad: tensors with PyTorch's autograd semantics for C programs.
 *
 * Every public name starts with ag_ / AG_. Functions that return a tensor
 * return NULL on error; functions that return int return 0 (or a handle) on
 * success and a negative AG_E... code on error. ag_last_error() tells why.
 * Nothing aborts on bad input.
 *
 * The rules each declaration below relies on, unless it says otherwise:
 * - Ownership: a tensor lives in the context it was made in (the ctx
 *   argument, or for functions without one the context of the tensor they
 *   are given) until that context is reset or freed; never free a tensor.
 *   Arrays and strings passed in are only read during the call.
 * - Threads: a context, and the tensors made in it, are used by one thread
 *   at a time; any number of threads may work at once in their own
 *   contexts, reading tensors of other contexts (shared parameters, say)
 *   that no one writes meanwhile. Settings marked "process-wide" may be
 *   changed from any thread; "thread-local" ones affect the calling thread.
 * - Errors: a NULL tensor argument (the result of an earlier failed call)
 *   returns NULL or a negative code and keeps the first error, so a chain of
 *   calls is checked once at its end. AG_EINVAL: a bad argument (NULL ctx,
 *   dim out of range, ...); AG_ESHAPE, AG_EDTYPE: operands that do not fit;
 *   AG_ENOMEM: out of memory or over ag_get_max_tensor_bytes(). */
#ifndef AGRAD_H
#define AGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(_WIN32)
#define AG_EXPORT
#elif defined(AGRAD_BUILDING)
#define AG_EXPORT __attribute__((visibility("default")))
#else
#define AG_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define AG_MAX_DIMS 8

/* Error codes: one table drives the enum and ag_strerror(), and error.c
 * checks at compile time that the codes are -1, -2, ... in table order and
 * that AG_ERRNO_COUNT counts them (with AG_OK). X(name, code, text):
 * AG_EINVAL a bad argument; AG_ESHAPE shapes that do not fit; AG_EDTYPE
 * dtypes that do not fit; AG_ENOMEM out of memory (or over a limit);
 * AG_ESTATE graph freed, version mismatch, wrong use of a leaf ...;
 * AG_EUNSUPPORTED not supported (yet). */
#define AG_ERRNO_MAP(X)                                                                                                \
    X(EINVAL, -1, "invalid argument")                                                                                  \
    X(ESHAPE, -2, "shapes do not fit")                                                                                 \
    X(EDTYPE, -3, "dtypes do not fit")                                                                                 \
    X(ENOMEM, -4, "out of memory")                                                                                     \
    X(ESTATE, -5, "wrong state (graph freed, version mismatch, leaf misuse)")                                          \
    X(EUNSUPPORTED, -6, "not supported")

enum {
    AG_OK = 0,
#define AG__ERRNO_ENUM(name, code, msg) AG_##name = (code),
    AG_ERRNO_MAP(AG__ERRNO_ENUM)
#undef AG__ERRNO_ENUM
        AG_ERRNO_COUNT = 7
};

typedef enum { AG_FLOAT32, AG_FLOAT64, AG_DTYPE_COUNT } ag_dtype;

typedef struct ag_ctx ag_ctx;
typedef struct ag_tensor ag_tensor;
typedef struct ag_node ag_node;

/* ---- Errors ------------------------------------------------------------ */

/* The message of the calling thread's last error, in PyTorch's wording
 * where PyTorch has one; "" when none. Thread-local storage, valid until
 * the thread's next failing call: copy it to keep it. Never fails. */
AG_EXPORT const char *ag_last_error(void); /* thread-local; "" when none */
/* The code of the calling thread's last error, or AG_OK. Never fails. */
AG_EXPORT int ag_last_status(void); /* code of the last error, or AG_OK */
/* Forgets the calling thread's last error (a successful call does not). */
AG_EXPORT void ag_clear_error(void);
/* The text for a code ("success" for AG_OK, "unknown error" for a code not
 * in the table). Static storage: never free it. Any thread. */
AG_EXPORT const char *ag_strerror(int code); /* static text for a code */

/* ---- Contexts (arenas) --------------------------------------------------- */

/* A new, empty context: an arena that every tensor, node and optimizer
 * made in it lives in. The caller owns it: ag_ctx_free it. Any thread; then
 * one thread at a time uses it. NULL with AG_ENOMEM. */
AG_EXPORT ag_ctx *ag_ctx_new(void);
/* Frees everything made in ctx at once (its memory is kept for reuse):
 * every pointer to its tensors is dangling after. Not while a backward or
 * another call uses them. NULL: does nothing. */
AG_EXPORT void ag_ctx_reset(ag_ctx *ctx); /* frees every tensor created in ctx at once */
/* ag_ctx_reset, then gives the context's memory back. NULL: does nothing. */
AG_EXPORT void ag_ctx_free(ag_ctx *ctx);
/* Bytes handed out by ctx since it was made or last reset (0 for NULL). */
AG_EXPORT size_t ag_ctx_bytes(const ag_ctx *ctx); /* bytes handed out since the last reset */

/* ---- Creating and reading tensors ---------------------------------------- */

/* New tensors in ctx, not requiring grad, of ndim (0 to AG_MAX_DIMS) sizes
 * >= 0 (shape may be NULL when ndim is 0). ag_tensor_from copies numel
 * elements of the dtype from data (row-major; NULL only when empty);
 * ag_rand and ag_randn draw from the calling thread's generator
 * (ag_manual_seed). Errors: AG_EINVAL (NULL ctx, bad ndim or size, NULL
 * data), AG_EDTYPE, AG_ENOMEM (also "Storage size calculation overflowed"
 * and over ag_get_max_tensor_bytes()); nothing is allocated on error. */
AG_EXPORT ag_tensor *ag_tensor_from(ag_ctx *, ag_dtype, int ndim, const int64_t *shape, const void *data); /* copies */
AG_EXPORT ag_tensor *ag_zeros(ag_ctx *, ag_dtype, int ndim, const int64_t *shape);
AG_EXPORT ag_tensor *ag_ones(ag_ctx *, ag_dtype, int ndim, const int64_t *shape);
AG_EXPORT ag_tensor *ag_full(ag_ctx *, ag_dtype, int ndim, const int64_t *shape, double value);
AG_EXPORT ag_tensor *ag_rand(ag_ctx *, ag_dtype, int ndim, const int64_t *shape);  /* U[0,1) */
AG_EXPORT ag_tensor *ag_randn(ag_ctx *, ag_dtype, int ndim, const int64_t *shape); /* N(0,1) */
AG_EXPORT ag_tensor *ag_scalar(ag_ctx *, ag_dtype, double value);                  /* 0-dim */
AG_EXPORT void ag_manual_seed(uint64_t seed);                                      /* seeds this thread's generator */

/* Reading a tensor: any thread, as long as no one writes it meanwhile.
 * ag_ndim, ag_size and ag_numel of NULL: a negative code (the first
 * error's); ag_tensor_dtype of NULL: AG_DTYPE_COUNT; ag_size: AG_EINVAL for
 * a dim out of range ("Dimension out of range ..."). ag_item, ag_get: NAN
 * and AG_EINVAL when t has more than one element, or the index is out of
 * bounds. The
 * data pointers point into t's storage (owned by its context; NULL for
 * NULL t). ag_copy_to writes numel elements converted to out_dtype. */
AG_EXPORT int ag_ndim(const ag_tensor *);
AG_EXPORT int64_t ag_size(const ag_tensor *, int dim); /* negative dim counts from the end */
AG_EXPORT int64_t ag_numel(const ag_tensor *);
AG_EXPORT ag_dtype ag_tensor_dtype(const ag_tensor *);
AG_EXPORT double ag_item(const ag_tensor *); /* one-element tensors only; NAN + error otherwise */
AG_EXPORT double ag_get(const ag_tensor *, int64_t flat_index);
/* The elements in memory, row-major: for a contiguous tensor only (an
 * error naming ag_contiguous for a non-contiguous view). */
AG_EXPORT const void *ag_data_ptr(const ag_tensor *);
AG_EXPORT void *ag_mutable_data_ptr(ag_tensor *);                           /* counts as an in-place change */
AG_EXPORT int ag_copy_to(const ag_tensor *, void *out, ag_dtype out_dtype); /* numel elements, row-major, any layout */
AG_EXPORT bool ag_is_contiguous(const ag_tensor *);
AG_EXPORT int64_t ag_stride(const ag_tensor *, int dim); /* in elements; 0 along an expanded dim */

/* ---- Printing, as PyTorch prints ----------------------------------------- */

/* Writes t as PyTorch's print(t) does, newline included, to stdout or to a
 * FILE; 0, or AG_EINVAL (NULL FILE, a failed write) or AG_ENOMEM. Reads t
 * only: any thread. */
AG_EXPORT int ag_print(const ag_tensor *); /* like print(t), with newline */
AG_EXPORT int ag_fprint(FILE *, const ag_tensor *);
/* The same text without the newline, malloc'd: the caller frees it. NULL
 * with an error (NULL t, AG_ENOMEM). */
AG_EXPORT char *ag_to_string(const ag_tensor *); /* malloc'd; caller frees */

/* ---- Autograd state of a tensor ------------------------------------------ */

/* The getters (ag_requires_grad, ag_is_leaf, ag_grad, ag_version, the
 * node functions) only read: any thread, while no backward or setter runs
 * on that tensor. For NULL they return false, NULL, 0 or a negative code. The setters
 * change the tensor: the thread that uses its context, not during a
 * backward that reaches it. */
AG_EXPORT bool ag_requires_grad(const ag_tensor *);
/* AG_ESTATE "you can only change requires_grad flags of leaf variables..."
 * for false on a non-leaf; AG_ENOMEM (the leaf's AccumulateGrad node is
 * made here, in its context). */
AG_EXPORT int ag_requires_grad_(ag_tensor *, bool); /* leaves only may be set to false */
AG_EXPORT bool ag_is_leaf(const ag_tensor *);
/* t.grad: owned by t's context (PyTorch: .grad belongs to the leaf). */
AG_EXPORT ag_tensor *ag_grad(const ag_tensor *); /* NULL when there is none */
AG_EXPORT int ag_zero_grad(ag_tensor *);         /* t.grad.zero_(); no-op without grad */
/* t.grad = grad (not copied: it must live as long as t). AG_EINVAL for t
 * itself, AG_EDTYPE / AG_ESHAPE when it does not match t. */
AG_EXPORT int ag_set_grad(ag_tensor *, ag_tensor *grad_or_null);
/* AG_ESTATE when t does not require grad; a no-op on a leaf. */
AG_EXPORT int ag_retain_grad(ag_tensor *); /* keep a non-leaf's grad */
/* A new tensor in t's context (so: the thread that uses that context). */
AG_EXPORT ag_tensor *ag_detach(ag_tensor *);      /* a view: shares storage and version, no history */
AG_EXPORT uint32_t ag_version(const ag_tensor *); /* t._version */

/* Nodes belong to the context of the tensor whose grad_fn they are (an
 * AccumulateGrad to its leaf's); pointers stay valid until it is reset. */
AG_EXPORT const ag_node *ag_grad_fn(const ag_tensor *); /* NULL for leaves */
AG_EXPORT const char *ag_node_name(const ag_node *);    /* "MulBackward0", "AccumulateGrad" ... */
AG_EXPORT int ag_node_num_next(const ag_node *);
AG_EXPORT const ag_node *ag_node_next(const ag_node *, int i); /* NULL where that input needs no grad */
AG_EXPORT const ag_tensor *ag_node_variable(const ag_node *);  /* AccumulateGrad: its leaf */

/* Writes the backward graph that ends in root as Graphviz DOT: one node per
 * backward node with its name and output shape, leaves (AccumulateGrad)
 * marked, edges from each node to the producers of its inputs. Reads the
 * graph only (any thread, while no backward frees it). AG_EINVAL (NULL
 * FILE), AG_ENOMEM. */
AG_EXPORT int ag_graph_dot(const ag_tensor *root, FILE *out);

/* ---- Grad mode (torch.no_grad) ------------------------------------------- */

/* Off, ops record no graph (torch.no_grad). Starts on in every thread;
 * hooks and optimizer steps run with it off. Never fails. */
AG_EXPORT bool ag_set_grad_enabled(bool enabled); /* thread-local; returns the previous value */
AG_EXPORT bool ag_is_grad_enabled(void);

/* ---- Ops ------------------------------------------------------------------
 * Binary ops broadcast as NumPy does. Operands of different dtypes are
 * promoted as PyTorch 1.13 promotes them: float32 with float64 gives
 * float64, except that a 0-dim tensor does not widen a tensor with
 * dimensions (float32 [3] with a float64 0-dim tensor gives float32). The
 * operand converted is converted through ag_to, so its gradient comes back
 * in its own dtype (the graph shows a ToCopyBackward0 node there, where
 * PyTorch's converts inside the op's node). Products (ag_matmul, ag_bmm,
 * ag_linear) refuse mixed dtypes with PyTorch's "expected scalar type
 * Float but found Double" (AG_EDTYPE), as PyTorch does.
 * The result belongs to ctx; inputs may come from any context. An op runs
 * on the thread that uses ctx, reads its inputs and, when grad mode is on
 * and an input requires grad, records a node (in ctx) that saves what its
 * backward needs. Errors: NULL with AG_EINVAL (NULL ctx, a dim out of
 * range: "Dimension out of range ..."), AG_ESHAPE ("The size of tensor a
 * (3) must match the size of tensor b (4) at non-singleton dimension 0"),
 * AG_EDTYPE (mixed dtypes where PyTorch refuses them), AG_ENOMEM; a NULL input keeps
 * the first error. Large ops split their work over agrad's pool and wait
 * for it; callers see one call.
 *
 * Views: ag_narrow, ag_select, ag_transpose, ag_expand, ag_detach and
 * ag_reshape (where the layout allows; else a copy, as in PyTorch) return
 * views, as PyTorch does: they share their input's elements and version
 * counter, so a write through one is seen by the other. A view's header
 * belongs to ctx, its elements to the context of its base (the tensor
 * whose memory it shares). When the base's context is reset or freed
 * before the view's, the view is detached: every later use of it is an
 * error (AG_ESTATE), never a read of freed memory. Every op takes views
 * as inputs; the result of an op that is not a view is contiguous. Each
 * declaration below says which it is. */

/* a + b, a - b, a * b, a / b (AddBackward0, SubBackward0, MulBackward0,
 * DivBackward0); a + s, a * s, a ** s (AddBackward0, MulBackward0,
 * PowBackward0); then -a, sqrt, exp, log, tanh, sigmoid and relu
 * elementwise. Each result is a new tensor in ctx. */
AG_EXPORT ag_tensor *ag_add(ag_ctx *, ag_tensor *a, ag_tensor *b);
AG_EXPORT ag_tensor *ag_sub(ag_ctx *, ag_tensor *a, ag_tensor *b);
AG_EXPORT ag_tensor *ag_mul(ag_ctx *, ag_tensor *a, ag_tensor *b);
AG_EXPORT ag_tensor *ag_div(ag_ctx *, ag_tensor *a, ag_tensor *b);
AG_EXPORT ag_tensor *ag_add_scalar(ag_ctx *, ag_tensor *a, double s);
AG_EXPORT ag_tensor *ag_mul_scalar(ag_ctx *, ag_tensor *a, double s);
AG_EXPORT ag_tensor *ag_pow_scalar(ag_ctx *, ag_tensor *a, double s);
AG_EXPORT ag_tensor *ag_neg(ag_ctx *, ag_tensor *a);
AG_EXPORT ag_tensor *ag_sqrt(ag_ctx *, ag_tensor *a);
AG_EXPORT ag_tensor *ag_exp(ag_ctx *, ag_tensor *a);
AG_EXPORT ag_tensor *ag_log(ag_ctx *, ag_tensor *a);
AG_EXPORT ag_tensor *ag_tanh(ag_ctx *, ag_tensor *a);
AG_EXPORT ag_tensor *ag_sigmoid(ag_ctx *, ag_tensor *a);
AG_EXPORT ag_tensor *ag_relu(ag_ctx *, ag_tensor *a);
/* sin(a), cos(a) and log(1 + a), elementwise (SinBackward0, CosBackward0,
 * Log1PBackward0; each saves a). */
AG_EXPORT ag_tensor *ag_sin(ag_ctx *, ag_tensor *a);
AG_EXPORT ag_tensor *ag_cos(ag_ctx *, ag_tensor *a);
AG_EXPORT ag_tensor *ag_log1p(ag_ctx *, ag_tensor *a);
/* a ** b elementwise with a tensor exponent, broadcast as the binary ops
 * above (torch.pow(a, b), PowBackward1). Gradients as PyTorch's: for a,
 * 0 where b == 0, else b * a ** (b - 1); for b, 0 where a == 0 and b >= 0,
 * else a ** b * log(a) (nan for a negative a). */
AG_EXPORT ag_tensor *ag_pow(ag_ctx *, ag_tensor *a, ag_tensor *b);
/* Reductions, new tensors in ctx: the sum and mean of every element (0-dim;
 * SumBackward0, MeanBackward0) or along dim (SumBackward1, MeanBackward1;
 * keepdim keeps it with size 1), the largest element (MaxBackward1). Then
 * the 2-D matrix product (MmBackward0), reshape (a view; -1 for one size
 * worked out), transpose and clone. Node names are PyTorch's. */
AG_EXPORT ag_tensor *ag_sum(ag_ctx *, ag_tensor *a);
AG_EXPORT ag_tensor *ag_sum_dim(ag_ctx *, ag_tensor *a, int dim, bool keepdim);
AG_EXPORT ag_tensor *ag_mean(ag_ctx *, ag_tensor *a);
AG_EXPORT ag_tensor *ag_mean_dim(ag_ctx *, ag_tensor *a, int dim, bool keepdim);
AG_EXPORT ag_tensor *ag_max(ag_ctx *, ag_tensor *a); /* all elements, 0-dim */
/* torch.norm(a, p): the p-norm of all elements, 0-dim (NormBackward1),
 * for p = 1, 2, INFINITY or any other p > 0; 0 for an empty a, nan when an
 * element is nan. The gradient is PyTorch 1.13's subgradient: sgn(a) for
 * p = 1 (0 at 0), 0 everywhere when the norm is 0, for INFINITY split
 * evenly among the elements of largest magnitude. Saves a and the
 * result. AG_EUNSUPPORTED for p <= 0 or nan. */
AG_EXPORT ag_tensor *ag_norm(ag_ctx *, ag_tensor *a, double p);
/* F.dropout(a, p, training): a itself when !training, p == 0 or a is
 * empty; else a * mask with mask = bernoulli(1 - p) / (1 - p) drawn from
 * this thread's generator (ag_manual_seed makes it repeatable; the masks
 * are not PyTorch's), recorded as PyTorch's CPU dropout is (MulBackward0,
 * the mask an operand without gradient). AG_EINVAL for p outside [0, 1]
 * ("dropout probability has to be between 0 and 1, but got 1.5"). */
AG_EXPORT ag_tensor *ag_dropout(ag_ctx *, ag_tensor *a, double p, bool training);
/* min(a) over all elements, 0-dim (MinBackward1): nan if any element is
 * nan; ties share the gradient evenly, as ag_max. An empty a is PyTorch's
 * error (AG_EINVAL). */
AG_EXPORT ag_tensor *ag_min(ag_ctx *, ag_tensor *a);
/* torch.max(a, dim, keepdim) / torch.min: the values (MaxBackward0 /
 * MinBackward0, the gradient to the element picked) and, when indices is
 * not NULL, where they are, written to indices[0..numel(result)) (the
 * caller's array; nothing is kept of it). The first max (min) of each
 * slice; a nan wins, as in PyTorch. A 0-dim a: dim 0 or -1, the value
 * itself and index 0. Errors: AG_EINVAL for a dim out of range ("Dimension
 * out of range ...") or an empty reduced dim of a non-empty result
 * ("max(): Expected reduction dim 1 to have non-zero size."). */
AG_EXPORT ag_tensor *ag_max_dim(ag_ctx *, ag_tensor *a, int dim, bool keepdim, int64_t *indices);
AG_EXPORT ag_tensor *ag_min_dim(ag_ctx *, ag_tensor *a, int dim, bool keepdim, int64_t *indices);
/* torch.argmax(a): the flat index of the first largest element (a nan
 * wins), or a negative AG_E... code (an empty a: AG_EINVAL). No tensor,
 * no history. ag_argmax_dim writes torch.argmax(a, dim) to
 * indices[0..numel / size(dim)) and returns 0 or the code. Only read a;
 * threads may call them on the same tensor at once. */
AG_EXPORT int64_t ag_argmax(const ag_tensor *a);
AG_EXPORT int ag_argmax_dim(const ag_tensor *a, int dim, int64_t *indices);
/* cond != 0 ? a : b elementwise (WhereBackward0): cond, a and b broadcast
 * together; a and b promote as the binary ops do; cond, of either dtype,
 * takes no gradient (PyTorch wants a bool tensor: here nonzero is true,
 * nan too). Saves cond. */
AG_EXPORT ag_tensor *ag_where(ag_ctx *, ag_tensor *cond, ag_tensor *a, ag_tensor *b);
/* torch.gather(a, dim, index) (GatherBackward0): the result has index's
 * shape (ndim, shape) and out[p] = a[p with p[dim] = index[p]]; index is
 * the caller's row-major array of int64 (copied into the node when
 * recorded). index has a's number of dimensions (a 0-dim tensor counts
 * as one of size 1) and, unless it is empty, no size larger than a's
 * outside dim; every entry is in [0, size(dim)) (negative entries do not
 * wrap, as in PyTorch). Errors in PyTorch's words: AG_EINVAL (dim, an
 * entry out of bounds, ndim, NULL index with entries), AG_ESHAPE (sizes),
 * AG_ENOMEM (a shape whose element count overflows). */
AG_EXPORT ag_tensor *ag_gather(ag_ctx *, ag_tensor *a, int dim, int ndim, const int64_t *shape, const int64_t *index);
/* a @ b for 2-D x 2-D (MmBackward0) and PyTorch's 1-D cases: vector .
 * vector, 0-dim (DotBackward0); matrix @ vector (MvBackward0); vector @
 * matrix (SqueezeBackward3 of MmBackward0 of UnsqueezeBackward0). Mixed
 * dtypes are refused with PyTorch's messages (AG_EDTYPE); 3-D and more:
 * ag_bmm. */
AG_EXPORT ag_tensor *ag_matmul(ag_ctx *, ag_tensor *a, ag_tensor *b);
/* A view where a's strides allow it (ViewBackward0), else a copy
 * (UnsafeViewBackward0 of CloneBackward0), as in PyTorch. */
AG_EXPORT ag_tensor *ag_reshape(ag_ctx *, ag_tensor *a, int ndim, const int64_t *shape);
AG_EXPORT ag_tensor *ag_transpose(ag_ctx *, ag_tensor *a, int dim0, int dim1); /* a view */
AG_EXPORT ag_tensor *ag_clone(ag_ctx *, ag_tensor *a);                         /* a contiguous copy */
AG_EXPORT ag_tensor *ag_contiguous(ag_ctx *, ag_tensor *a); /* a itself when contiguous, else ag_clone(a) */
/* a.to(dtype): a itself when it already has that dtype, else a converted
 * copy in ctx (ToCopyBackward0: the gradient is converted back to a's
 * dtype). Errors: AG_EINVAL for NULL a or ctx (a NULL a keeps the first
 * error) or a dtype that is not an ag_dtype; AG_ENOMEM. */
AG_EXPORT ag_tensor *ag_to(ag_ctx *, ag_tensor *a, ag_dtype dtype);

/* Neural-network ops, each a new tensor in ctx with PyTorch's node name
 * (AbsBackward0, ClampBackward1, MaximumBackward0, SoftmaxBackward0,
 * LogSoftmaxBackward0, NllLossBackward0, MseLossBackward0, ...). Index and
 * target arrays are the caller's, only read during the call (copied where
 * backward needs them); class targets are in [0, C) and indices in range
 * (AG_EINVAL with PyTorch's "Target 5 is out of bounds." / "index out of
 * range in self" otherwise). */
AG_EXPORT ag_tensor *ag_abs(ag_ctx *, ag_tensor *a);
AG_EXPORT ag_tensor *ag_clamp(ag_ctx *, ag_tensor *a, double min, double max); /* NAN: no bound */
AG_EXPORT ag_tensor *ag_maximum(ag_ctx *, ag_tensor *a, ag_tensor *b);         /* broadcasts */
AG_EXPORT ag_tensor *ag_softmax(ag_ctx *, ag_tensor *a, int dim);
AG_EXPORT ag_tensor *ag_log_softmax(ag_ctx *, ag_tensor *a, int dim);
AG_EXPORT ag_tensor *ag_nll_loss(ag_ctx *, ag_tensor *logp, const int64_t *targets);        /* (N,C): mean */
AG_EXPORT ag_tensor *ag_cross_entropy(ag_ctx *, ag_tensor *logits, const int64_t *targets); /* (N,C): mean */
/* mean((a - b)^2) over the broadcast shape of a and b, as F.mse_loss
 * (each operand of another shape goes through ag_expand first). */
AG_EXPORT ag_tensor *ag_mse_loss(ag_ctx *, ag_tensor *a, ag_tensor *b);
/* x (..., in) @ w^T + b: w (out, in), b (out) or NULL. */
AG_EXPORT ag_tensor *ag_linear(ag_ctx *, ag_tensor *x, ag_tensor *w, ag_tensor *b);
/* (..., n, k) @ (..., k, m); the batch dimensions broadcast. */
AG_EXPORT ag_tensor *ag_bmm(ag_ctx *, ag_tensor *a, ag_tensor *b);
AG_EXPORT ag_tensor *ag_index_select(ag_ctx *, ag_tensor *a, int dim, const int64_t *index, int64_t n); /* a copy */
AG_EXPORT ag_tensor *ag_embedding(ag_ctx *, ag_tensor *weight, const int64_t *ids, int64_t n); /* (n, D), a copy */
AG_EXPORT ag_tensor *ag_cat(ag_ctx *, ag_tensor *const *ts, int n, int dim);                   /* a copy */
/* torch.stack(ts[0..n), dim) (StackBackward0): tensors of one shape
 * joined along a new dimension dim (in [-(ndim + 1), ndim]); a copy.
 * Mixed dtypes promote as the binary ops do. Errors: AG_EINVAL (n <= 0 or
 * ts NULL: "stack expects a non-empty TensorList", dim out of range, a
 * result of more than AG_MAX_DIMS dimensions), AG_ESHAPE (shapes differ),
 * a NULL entry keeps the first error. */
AG_EXPORT ag_tensor *ag_stack(ag_ctx *, ag_tensor *const *ts, int n, int dim);
AG_EXPORT ag_tensor *ag_narrow(ag_ctx *, ag_tensor *a, int dim, int64_t start, int64_t length); /* a view */
/* a[..., index, ...] along dim (negative index counts from the end): a view
 * with one dimension less. */
AG_EXPORT ag_tensor *ag_select(ag_ctx *, ag_tensor *a, int dim, int64_t index);
/* -1 keeps a size. A view with stride 0 along the stretched dimensions. */
AG_EXPORT ag_tensor *ag_expand(ag_ctx *, ag_tensor *a, int ndim, const int64_t *shape);

/* In-place ops: change t and bump its version counter. While grad mode is
 * on and t or other requires grad they are recorded as PyTorch records
 * them: t's grad_fn becomes the op's node (AddBackward0, ReluBackward0,
 * ..., FillBackward2, ZeroBackward0), made in t's context. PyTorch's
 * errors: a leaf that requires grad, a view of one, a view made in
 * no_grad mode of a tensor that requires grad; and a backward through a
 * node that saved a tensor changed since fails with both version numbers.
 * On a view of a tensor with history the base's grad_fn becomes
 * CopySlices and the view's AsStridedBackward0, as in PyTorch. other
 * broadcasts to t's shape. */
AG_EXPORT int ag_zero_(ag_tensor *t);
AG_EXPORT int ag_fill_(ag_tensor *t, double value);
AG_EXPORT int ag_add_(ag_tensor *t, const ag_tensor *other, double alpha); /* t += alpha * other */
AG_EXPORT int ag_sub_(ag_tensor *t, const ag_tensor *other);
AG_EXPORT int ag_mul_(ag_tensor *t, const ag_tensor *other);
AG_EXPORT int ag_add_scalar_(ag_tensor *t, double s);
AG_EXPORT int ag_mul_scalar_(ag_tensor *t, double s);
AG_EXPORT int ag_relu_(ag_tensor *t);
AG_EXPORT int ag_tanh_(ag_tensor *t);
AG_EXPORT int ag_sigmoid_(ag_tensor *t);
AG_EXPORT int ag_exp_(ag_tensor *t);
AG_EXPORT int ag_clamp_(ag_tensor *t, double min, double max); /* NAN: no bound */

/* ---- Weights in files (safetensors) ------------------------------------------
 * The safetensors format (8-byte little-endian header length, JSON header,
 * raw little-endian data), so weights move to and from PyTorch
 * (safetensors.torch) and other frameworks. agrad reads and writes F32 and
 * F64; a file may hold other dtypes as long as they are not asked for.
 *
 * ag_save writes tensors[i] under names[i] (UTF-8, distinct, not
 * "__metadata__"); it only reads its arguments and keeps nothing. Each
 * tensor is saved as its elements in row-major order (views too), without
 * history or requires_grad. The layout is the reference writer's (F64
 * before F32, then by name; header padded with spaces to 8 bytes): the same
 * tensors always give the same bytes. The file is written under a
 * temporary name next to path and renamed over it, so a failed save leaves
 * an earlier file whole and nothing partial behind. Errors: AG_EINVAL (NULL
 * or invalid argument, duplicate name, a file that cannot be written, with
 * the system's reason), AG_ENOMEM; a NULL tensor keeps the first error.
 *
 * ag_load reads the tensors named names[0..n) into out[0..n): new tensors
 * owned by ctx, not requiring grad. All or nothing: on error every out[i]
 * is NULL (tensors made before a late I/O error stay in ctx until reset).
 * The file is untrusted: the whole header is checked first, nothing is
 * allocated bigger than the file, and a malformed, truncated or hostile
 * file is an error with a message, never a crash. AG_EINVAL: bad JSON,
 * duplicate names, offsets out of range, overlapping or gapped data,
 * trailing bytes, a name the file lacks, a file that cannot be read;
 * AG_ESHAPE: a shape that does not match its data, overflows or has more
 * than AG_MAX_DIMS dimensions; AG_EDTYPE: a tensor asked for that is not
 * F32 or F64. n = 0 only checks the file.
 *
 * Threads: ag_load uses ctx as ops do (one thread at a time); ag_save only
 * reads its tensors and may run while other threads read them. */
AG_EXPORT int ag_save(const char *path, const char *const *names, ag_tensor *const *tensors, int n);
AG_EXPORT int ag_load(ag_ctx *ctx, const char *path, const char *const *names, ag_tensor **out, int n);

/* ---- Backward --------------------------------------------------------------- */

typedef struct ag_backward_opts {
    bool retain_graph; /* keep saved tensors for another backward */
    bool create_graph; /* record the backward itself (higher-order grads) */
    int num_threads;   /* 0: the library's default */
} ag_backward_opts;

/* Computes the gradient of root with respect to every leaf that requires
 * grad and adds it into each leaf's .grad (made in the leaf's context when
 * there is none), as root.backward(grad) does. grad: the gradient of root
 * (its shape and dtype), NULL only for a one-element root (ones); opts:
 * NULL for the defaults. Without retain_graph the saved tensors of the
 * nodes it ran are released. All or nothing: on error no .grad and no
 * retained grad changes (hooks that ran have run).
 *
 * create_graph records the backward itself: every node's gradient is made
 * by recorded ops, so the .grad fields it makes have history and can be
 * differentiated again (to any order). Those gradients and the recorded
 * backward live in root's context: a leaf's .grad made so belongs to that
 * context, and resetting or freeing it sets the .grad back to NULL. The
 * first such .grad is a copy (grad_fn CopyBackwards), later ones are the
 * sum old + new (AddBackward0), as in PyTorch. create_graph keeps the graph
 * (retain_graph is implied) and needs the calling thread to own root's
 * context. README's "Differences from PyTorch" lists the ops whose
 * recorded backward has other nodes than PyTorch's (the values are the
 * same).
 *
 * Threads: any thread, also several at once on graphs that share leaves
 * (their sums into a shared .grad come out exact), and from inside a hook
 * (at most 8 deep). The graph must not be changed, reset or backwarded by
 * another thread meanwhile. The nodes run on the calling thread and on up
 * to num_threads - 1 of agrad's pool (chains and small graphs on the
 * calling thread alone); the call returns when all have run.
 *
 * Errors: AG_EINVAL (NULL root); AG_ESTATE ("element 0 of tensors does not
 * require grad and does not have a grad_fn", "Trying to backward through
 * the graph a second time ...", "one of the variables needed for gradient
 * computation has been modified by an inplace operation ...", "grad can
 * be implicitly created only for scalar outputs", backward nested too deep
 * in hooks); AG_ESHAPE / AG_EDTYPE (a grad, or a hook's result, that does
 * not match); AG_ENOMEM; AG_ESTATE for a NaN under anomaly mode; a
 * hook's own negative code. */
AG_EXPORT int ag_backward(ag_tensor *root, const ag_tensor *grad, const ag_backward_opts *opts);

/* ---- Functional gradients and several roots -----------------------------------
 * torch.autograd.grad and torch.autograd.backward. */

typedef struct ag_grad_opts {
    bool retain_graph; /* false: the same as create_graph, as in PyTorch */
    bool create_graph; /* record the backward: the gradients have history */
    bool allow_unused; /* an input the outputs do not reach gets NULL, else an error */
    int num_threads;   /* 0: the library's default */
} ag_grad_opts;

/* torch.autograd.grad: the gradients of outputs[0..n_outputs) (weighted by
 * grad_outputs: NULL, or a NULL entry, means ones for a one-element output;
 * a gradient of another float dtype is cast) with respect to
 * inputs[0..n_inputs) (leaves or not), written to grads[0..n_inputs) as
 * new tensors in ctx. opts may be NULL.
 *
 * No leaf's .grad is touched and no AccumulateGrad node runs; only the
 * nodes between the outputs and the inputs run. As in PyTorch, a non-leaf
 * on the way that retains its grad (ag_retain_grad) still gets it, and the
 * hooks of nodes on the way run, but not those of the inputs themselves:
 * each input's gradient is taken as it arrives, before its hooks.
 *
 * With create_graph the grads have history (grad_fn, as PyTorch names it)
 * and the recorded backward lives in ctx; without it they are plain
 * tensors. The calling thread must own ctx.
 *
 * All or nothing: on error every grads[i] is NULL. Errors (PyTorch's
 * messages): AG_EINVAL for no inputs ("grad requires non-empty inputs."),
 * NULL arrays or counts below 0; AG_ESTATE for an output that does not
 * require grad ("element 1 of tensors does not require grad ..."), an
 * input that does not ("One of the differentiated Tensors does not
 * require grad"), an input the outputs do not reach without allow_unused
 * ("One of the differentiated Tensors appears to not have been used in
 * the graph. Set allow_unused=True if this is the desired behavior."), an
 * implicit gradient of a non-scalar output; AG_ESHAPE for a grad_output of
 * the wrong shape ("Mismatch in shape: grad_output[0] has a shape of ...");
 * and whatever a backward may fail with (see ag_backward). */
AG_EXPORT int ag_autograd_grad(ag_ctx *ctx, ag_tensor *const *outputs, ag_tensor *const *grad_outputs, int n_outputs,
                               ag_tensor *const *inputs, int n_inputs, ag_tensor **grads, const ag_grad_opts *opts);

/* torch.autograd.backward: roots[0..n_roots) in one pass, each weighted by
 * grads[i] (grads NULL, or a NULL entry: ones for a one-element root).
 * inputs NULL (n_inputs 0) accumulates into every leaf that requires
 * grad, as ag_backward; otherwise only into inputs[0..n_inputs), leaves or
 * not, and only the nodes that lead to them run. A non-leaf input
 * accumulates into its own .grad and retains its grad from then on (as
 * PyTorch's backward calls retain_grad() on it). create_graph as in
 * ag_backward: the gradients with history live in the context of roots[0].
 * Errors as ag_backward's, and PyTorch's "can't retain_grad on Tensor that
 * has requires_grad=False" for an input that does not require grad. */
AG_EXPORT int ag_autograd_backward(ag_tensor *const *roots, ag_tensor *const *grads, int n_roots,
                                   ag_tensor *const *inputs, int n_inputs, const ag_backward_opts *opts);

/* ---- Custom functions (torch.autograd.Function) --------------------------------
 * fn->forward runs with grad mode off and returns the output (made in ctx,
 * or one of its inputs: then the output is a new tensor sharing its
 * storage, as PyTorch's view_as). When grad mode is on and an input
 * requires grad, the output gets a node named fn->name exactly, with one
 * edge per input. fn->backward gets grad_output (the gradient w.r.t. the
 * output) and writes grad_inputs[0..n) (NULL: no gradient for that input,
 * PyTorch's None) as tensors made in ctx, a context that lives until the
 * backward ends; it returns 0 (or n, the count of gradients it gives) on
 * success and a negative code on error. A gradient whose shape input i
 * broadcasts to is summed down to it, one of another dtype is cast, as in
 * PyTorch; any other shape fails ("Function MyExpBackward returned an
 * invalid gradient at index 0 - got [3] but expected shape compatible
 * with [2]"), and so does a positive count other than n ("function
 * MyExpBackward returned an incorrect number of gradients (expected 2, got
 * 1)"). Under create_graph backward runs with grad mode on and ctx is the
 * context of the recorded backward, so when it uses agrad's ops its
 * gradients have history (double backward through custom functions);
 * otherwise it runs with grad mode off. backward may run on any thread of
 * the pool (one node at a time per node). One output for now. */

typedef struct ag_function_ctx ag_function_ctx;
typedef struct ag_function {
    const char *name; /* the node's name, e.g. "MyExpBackward" (copied) */
    ag_tensor *(*forward)(ag_function_ctx *fc, ag_ctx *ctx, ag_tensor *const *inputs, int n, void *user_data);
    int (*backward)(ag_function_ctx *fc, ag_ctx *ctx, const ag_tensor *grad_output, ag_tensor **grad_inputs,
                    void *user_data);
} ag_function;

/* Applies fn to inputs[0..n); fn and user_data must live as long as the
 * graph. NULL on error (a NULL input keeps the first error; forward
 * returning NULL keeps its error). */
AG_EXPORT ag_tensor *ag_function_apply(ag_ctx *ctx, const ag_function *fn, ag_tensor *const *inputs, int n,
                                       void *user_data);
/* ctx.save_for_backward, from forward: keeps tensors[0..n) (NULL entries
 * allowed) for backward, replacing what an earlier call kept. Their
 * versions are taken when forward returns. */
AG_EXPORT int ag_function_save(ag_function_ctx *fc, ag_tensor *const *tensors, int n);
/* ctx.saved_tensors[i], from backward: NULL with AG_ESTATE when the graph
 * was freed by an earlier backward without retain_graph (PyTorch's
 * "Trying to backward through the graph a second time ..."), or when the
 * tensor was changed in place since (PyTorch's "one of the variables
 * needed for gradient computation has been modified by an inplace
 * operation ..."); AG_EINVAL for i out of range. */
AG_EXPORT const ag_tensor *ag_function_saved(ag_function_ctx *fc, int i);

/* ---- Checking gradients --------------------------------------------------------
 * torch.autograd.gradcheck / gradgradcheck, in float64 with central
 * differences. f builds its result from inputs[0..n) in the context it is
 * given (private to the check, reset between calls); it must not keep
 * tensors between calls. Inputs that require grad must be float64
 * (AG_EDTYPE otherwise); inputs that do not require grad are held fixed.
 * The check perturbs the inputs' data in place (restored exactly, with no
 * version bump): no other thread may use them meanwhile.
 *
 * ag_gradcheck compares the Jacobian from backward with the numerical one,
 * element by element: |analytical - numerical| <= atol + rtol |numerical|.
 * ag_gradgradcheck does the same for the function (inputs, v) -> the
 * gradient of f weighted by v (fixed pseudo-random v), differentiated by a
 * create_graph backward: second derivatives against differences of first
 * ones. 0 when they agree; AG_ESTATE with the first disagreement in
 * ag_last_error() ("Jacobian mismatch for output 0 with respect to input
 * 1, at element 3 of the output and 2 of the input: numerical 0.5,
 * analytical 0.25"); f's own error, or AG_EINVAL ("gradcheck expects at
 * least one input tensor to require gradient ...") otherwise. opts may be
 * NULL; a 0 field means the default. */

typedef ag_tensor *(*ag_fn)(ag_ctx *ctx, ag_tensor *const *inputs, int n, void *user_data);
typedef struct ag_gradcheck_opts {
    double eps, atol, rtol; /* 0: 1e-6, 1e-5, 1e-3 */
} ag_gradcheck_opts;
AG_EXPORT int ag_gradcheck(ag_fn f, ag_tensor *const *inputs, int n, void *user_data, const ag_gradcheck_opts *opts);
AG_EXPORT int ag_gradgradcheck(ag_fn f, ag_tensor *const *inputs, int n, void *user_data,
                               const ag_gradcheck_opts *opts);

/* ---- Hooks on nodes, anomaly mode ------------------------------------------------
 * grad_fn.register_prehook / register_hook. A pre-hook sees the gradient
 * w.r.t. the node's output (grad_outputs, n = 1) before the node runs and
 * may replace it (same shape and dtype, or the backward fails with
 * PyTorch's "hook 'hook' has changed the size of value"); a hook sees the
 * node's input gradients (grad_inputs[i] NULL where input i needs none)
 * and grad_outputs after it ran, and may replace or clear (NULL: none)
 * entries of grad_inputs. Pre-hooks, the output tensor's hooks
 * (ag_register_hook) and its retain_grad run in PyTorch 1.13's order: in
 * the order they were registered, the tensor's hooks as one group at the
 * place of the first. A hook returns 0, or a negative code that fails the
 * backward (all or nothing: no .grad changes). A replacement may live in
 * any context that outlives the backward. Hooks run on whichever thread
 * runs the node, with grad mode on only under create_graph. On an
 * AccumulateGrad node (a leaf's, ag_node_next) a pre-hook sees the leaf's
 * gradient before its accumulation and may replace it; a hook sees it with
 * n_inputs 0 (agrad runs it before the .grad fields change, at the end of
 * the backward, where PyTorch runs it after).
 *
 * Threads: hooks may be registered and removed from any thread, also
 * while other threads run a backward through the node: a backward that
 * has not yet reached the node sees the change, one that has may or may
 * not. A hook's record lives in the node's context until it is reset. */

typedef int (*ag_node_prehook_fn)(const ag_node *node, ag_tensor **grad_outputs, int n, void *user_data);
typedef int (*ag_node_hook_fn)(const ag_node *node, ag_tensor **grad_inputs, int n_inputs,
                               ag_tensor *const *grad_outputs, int n_outputs, void *user_data);
AG_EXPORT int ag_node_register_prehook(const ag_node *node, ag_node_prehook_fn fn, void *user_data); /* handle > 0 */
AG_EXPORT int ag_node_register_hook(const ag_node *node, ag_node_hook_fn fn, void *user_data);       /* handle > 0 */
AG_EXPORT int ag_node_remove_hook(const ag_node *node, int handle);

/* torch.autograd.set_detect_anomaly, process-wide. While on, every node
 * recorded remembers where its forward op was called (return addresses,
 * symbolised only when an error needs them: link with -rdynamic to see the
 * program's own function names), and every backward checks each node's
 * input gradients for NaN: "Function 'DivBackward0' returned nan values in
 * its 1th output." (AG_ESTATE). Any error in such a backward ends with the
 * forward call stack of the node that failed ("Error detected in
 * DivBackward0. Traceback of forward call that caused the error: ...").
 * Slow: for debugging. */
AG_EXPORT void ag_set_detect_anomaly(bool on);
AG_EXPORT bool ag_is_anomaly_enabled(void);

/* ---- Hooks ------------------------------------------------------------------ */

/* A tensor hook (tensor.register_hook): called once per backward with the
 * fully accumulated gradient of that tensor, before it is used or added to
 * .grad. It returns NULL to keep the gradient or a tensor to use instead,
 * of the same shape and dtype (else the backward fails with AG_ESHAPE or
 * AG_EDTYPE, PyTorch's "hook 'hook' has changed the size of value").
 *
 * Threading rules: a hook runs on whichever thread runs that part of the
 * graph (a worker of agrad's pool, or the thread that called backward),
 * with grad mode off, in registration order for one tensor but in no fixed
 * order across tensors of a parallel graph; hooks of different tensors may
 * run at the same time, so the hook must synchronise what it shares. grad
 * lives until the backward ends (copy it to keep it, e.g. ag_clone into a
 * context of the hook's own: a context used by no other thread then); a
 * tensor it returns must live until then too. It may call ag_backward on
 * another graph (it runs on the hook's thread). It must not reset or free
 * a context the running backward uses. */
typedef ag_tensor *(*ag_hook_fn)(ag_tensor *grad, void *user_data);
/* Adds a hook to t (which must require grad: AG_ESTATE otherwise) and
 * returns its handle (> 0). The hook's record lives in t's context: the
 * thread that uses that context, not during a backward that reaches t.
 * AG_EINVAL (NULL fn), AG_ENOMEM. */
AG_EXPORT int ag_register_hook(ag_tensor *, ag_hook_fn, void *user_data); /* handle > 0 */
/* Removes a hook by its handle (AG_EINVAL when t has no such hook); the
 * same threads as ag_register_hook. */
AG_EXPORT int ag_remove_hook(ag_tensor *, int handle);

/* ---- Optimizers ----------------------------------------------------------------
 * Update parameters in place with grad mode off, as torch.optim does (the
 * same arithmetic, in the parameters' dtype). State lives in the context
 * given at creation. Parameters without a .grad are skipped.
 *
 * ag_sgd_new and ag_adam_new keep the list of n parameters (leaves; the
 * array itself is copied) and return an optimizer owned by ctx (freed when
 * it is reset; its parameters must outlive it). Errors: NULL with AG_EINVAL
 * (NULL ctx or opts, an empty list, a non-leaf: "can't optimize a non-leaf
 * Tensor", PyTorch's "Invalid learning rate: ..." and the like), AG_ENOMEM.
 * All state is made here, so a step never fails for want of memory.
 *
 * Threads: one thread at a time uses an optimizer; a step writes the
 * parameters and reads their .grad, so no backward that reaches them and no
 * op that reads them may run meanwhile. A step splits its work over agrad's
 * pool and returns when it is done, bumping the version of each parameter
 * it updated. ag_optim_step and ag_optim_zero_grad fail only for a NULL
 * optimizer (keeping the error of its failed creation). */

typedef struct ag_optim ag_optim;

typedef struct ag_sgd_opts {
    double lr;
    double momentum; /* 0: plain SGD */
    double dampening;
    double weight_decay; /* L2, added to the gradient */
    bool nesterov;
} ag_sgd_opts;

typedef struct ag_adam_opts {
    double lr;           /* 0 means PyTorch's default 1e-3 */
    double beta1, beta2; /* 0 means 0.9 and 0.999 */
    double eps;          /* 0 means 1e-8 */
    double weight_decay;
    bool amsgrad;
} ag_adam_opts;

/* torch.optim.SGD and torch.optim.Adam over params[0..n); see above. */
AG_EXPORT ag_optim *ag_sgd_new(ag_ctx *ctx, ag_tensor *const *params, int n, const ag_sgd_opts *opts);
AG_EXPORT ag_optim *ag_adam_new(ag_ctx *ctx, ag_tensor *const *params, int n, const ag_adam_opts *opts);
/* optimizer.step(): one update of every parameter that has a .grad. */
AG_EXPORT int ag_optim_step(ag_optim *opt);
AG_EXPORT int ag_optim_zero_grad(ag_optim *opt); /* zeroes every parameter's .grad */
/* Zeroes the .grad of each of params[0..n) that has one (AG_EINVAL for a
 * NULL list or entry, or n < 0). */
AG_EXPORT int ag_zero_grads(ag_tensor *const *params, int n);

/* ---- Trace ------------------------------------------------------------------------
 * Records every backward node that runs (name, thread, start, end) until
 * stopped, and writes it as Chrome trace JSON, viewable in Perfetto or
 * chrome://tracing. It is the trace of agrad's pool (ws.h's ws_trace_*):
 * nodes that run as the pool's tasks appear on their worker's row under
 * their node's name, next to the pool's other tasks (kernels split over
 * it); nodes run elsewhere (on the calling thread, by OpenMP's threads) on
 * a row per thread. Setting AG_TRACE=path in the environment traces the
 * whole process and writes the file at exit. Process-wide: the backwards
 * of every thread are recorded. Tracing never fails a backward (events it
 * has no memory for are dropped). ag_trace_start starts afresh: any
 * thread. ag_trace_stop writes what was recorded to path (NULL: nothing):
 * call it while no backward runs. Errors: AG_EINVAL when path cannot be
 * written, AG_ENOMEM when the pool cannot be started. */
AG_EXPORT int ag_trace_start(void);
AG_EXPORT int ag_trace_stop(const char *path); /* writes the JSON; NULL: discard */

/* ---- Threads and determinism ------------------------------------------------ */

/* Process-wide settings, any thread; a backward reads them when it
 * starts. ag_set_num_threads: threads a backward or a
 * split kernel uses, the caller included, 0 to 1024 (AG_EINVAL outside);
 * ag_get_num_threads: that number as it stands (the default resolved).
 * ag_set_deterministic(true) (or AG_DETERMINISTIC=1): every sum in an
 * order fixed by the graph, so gradients are bitwise the same at any
 * thread count. */
AG_EXPORT int ag_set_num_threads(int n); /* 0: AG_NUM_THREADS, else the CPUs this process may use */
AG_EXPORT int ag_get_num_threads(void);
AG_EXPORT void ag_set_deterministic(bool on);
AG_EXPORT bool ag_is_deterministic(void);

/* What runs the nodes of a multithreaded backward. AG_EXECUTOR_WS (the
 * default) is agrad's work-stealing pool; AG_EXECUTOR_OPENMP runs the same
 * graph as OpenMP tasks with depend clauses, for comparison. The initial
 * value comes from the AG_EXECUTOR environment variable ("ws" or "openmp").
 * ag_set_executor returns AG_EUNSUPPORTED for OpenMP in a build without
 * OpenMP, AG_EINVAL for an unknown value. Process-wide, any thread. */
typedef enum ag_executor { AG_EXECUTOR_WS = 0, AG_EXECUTOR_OPENMP = 1 } ag_executor;
/* Sets or reads the executor (see above). */
AG_EXPORT int ag_set_executor(ag_executor e);
AG_EXPORT ag_executor ag_get_executor(void);

/* ---- Limits ------------------------------------------------------------------
 * The most bytes of data one tensor may have. A tensor over it is refused
 * with AG_ENOMEM before anything is allocated. The default is what the
 * address space allows (PTRDIFF_MAX, or the process's RLIMIT_AS when it has
 * one), unless AG_MAX_TENSOR_BYTES is set in the environment (bytes, or with
 * a k, M, G or T suffix). ag_set_max_tensor_bytes(0) goes back to that
 * default; it returns the previous limit. Process-wide, any thread; never
 * fails. */
AG_EXPORT size_t ag_set_max_tensor_bytes(size_t bytes);
AG_EXPORT size_t ag_get_max_tensor_bytes(void);

#ifdef __cplusplus
}
#endif

#endif /* AGRAD_H */
