/* agrad: tensors with PyTorch's autograd semantics for C programs.
 *
 * Every public name starts with ag_ / AG_. Functions that return a tensor
 * return NULL on error; functions that return int return 0 (or a handle) on
 * success and a negative AG_E... code on error. ag_last_error() tells why. */
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

/* Error codes. AG_ERRNO_MAP pairs each with its text for ag_strerror(). */
enum {
    AG_OK = 0,
    AG_EINVAL = -1,       /* bad argument */
    AG_ESHAPE = -2,       /* shapes do not fit */
    AG_EDTYPE = -3,       /* dtypes do not fit */
    AG_ENOMEM = -4,       /* out of memory */
    AG_ESTATE = -5,       /* graph freed, version mismatch, wrong use of a leaf ... */
    AG_EUNSUPPORTED = -6, /* not supported (yet) */
    AG_ERRNO_COUNT = 7
};

#define AG_ERRNO_MAP(X)                                                                                                \
    X(AG_EINVAL, "invalid argument")                                                                                   \
    X(AG_ESHAPE, "shapes do not fit")                                                                                  \
    X(AG_EDTYPE, "dtypes do not fit")                                                                                  \
    X(AG_ENOMEM, "out of memory")                                                                                      \
    X(AG_ESTATE, "wrong state (graph freed, version mismatch, leaf misuse)")                                           \
    X(AG_EUNSUPPORTED, "not supported")

typedef enum { AG_FLOAT32, AG_FLOAT64, AG_DTYPE_COUNT } ag_dtype;

typedef struct ag_ctx ag_ctx;
typedef struct ag_tensor ag_tensor;
typedef struct ag_node ag_node;

/* ---- Errors ------------------------------------------------------------ */

AG_EXPORT const char *ag_last_error(void); /* thread-local; "" when none */
AG_EXPORT int ag_last_status(void);        /* code of the last error, or AG_OK */
AG_EXPORT void ag_clear_error(void);
AG_EXPORT const char *ag_strerror(int code); /* static text for a code */

/* ---- Contexts (arenas) --------------------------------------------------- */

AG_EXPORT ag_ctx *ag_ctx_new(void);
AG_EXPORT void ag_ctx_reset(ag_ctx *ctx); /* frees every tensor created in ctx at once */
AG_EXPORT void ag_ctx_free(ag_ctx *ctx);
AG_EXPORT size_t ag_ctx_bytes(const ag_ctx *ctx); /* bytes handed out since the last reset */

/* ---- Creating and reading tensors ---------------------------------------- */

AG_EXPORT ag_tensor *ag_tensor_from(ag_ctx *, ag_dtype, int ndim, const int64_t *shape, const void *data); /* copies */
AG_EXPORT ag_tensor *ag_zeros(ag_ctx *, ag_dtype, int ndim, const int64_t *shape);
AG_EXPORT ag_tensor *ag_ones(ag_ctx *, ag_dtype, int ndim, const int64_t *shape);
AG_EXPORT ag_tensor *ag_full(ag_ctx *, ag_dtype, int ndim, const int64_t *shape, double value);
AG_EXPORT ag_tensor *ag_rand(ag_ctx *, ag_dtype, int ndim, const int64_t *shape);  /* U[0,1) */
AG_EXPORT ag_tensor *ag_randn(ag_ctx *, ag_dtype, int ndim, const int64_t *shape); /* N(0,1) */
AG_EXPORT ag_tensor *ag_scalar(ag_ctx *, ag_dtype, double value);                  /* 0-dim */
AG_EXPORT void ag_manual_seed(uint64_t seed);                                      /* seeds this thread's generator */

AG_EXPORT int ag_ndim(const ag_tensor *);
AG_EXPORT int64_t ag_size(const ag_tensor *, int dim); /* negative dim counts from the end */
AG_EXPORT int64_t ag_numel(const ag_tensor *);
AG_EXPORT ag_dtype ag_tensor_dtype(const ag_tensor *);
AG_EXPORT double ag_item(const ag_tensor *); /* one-element tensors only; NAN + error otherwise */
AG_EXPORT double ag_get(const ag_tensor *, int64_t flat_index);
AG_EXPORT const void *ag_data_ptr(const ag_tensor *);                       /* contiguous, row-major */
AG_EXPORT void *ag_mutable_data_ptr(ag_tensor *);                           /* counts as an in-place change */
AG_EXPORT int ag_copy_to(const ag_tensor *, void *out, ag_dtype out_dtype); /* numel elements */

/* ---- Printing, as PyTorch prints ----------------------------------------- */

AG_EXPORT int ag_print(const ag_tensor *); /* like print(t), with newline */
AG_EXPORT int ag_fprint(FILE *, const ag_tensor *);
AG_EXPORT char *ag_to_string(const ag_tensor *); /* malloc'd; caller frees */

/* ---- Autograd state of a tensor ------------------------------------------ */

AG_EXPORT bool ag_requires_grad(const ag_tensor *);
AG_EXPORT int ag_requires_grad_(ag_tensor *, bool); /* leaves only may be set to false */
AG_EXPORT bool ag_is_leaf(const ag_tensor *);
AG_EXPORT ag_tensor *ag_grad(const ag_tensor *); /* NULL when there is none */
AG_EXPORT int ag_zero_grad(ag_tensor *);         /* t.grad.zero_(); no-op without grad */
AG_EXPORT int ag_set_grad(ag_tensor *, ag_tensor *grad_or_null);
AG_EXPORT int ag_retain_grad(ag_tensor *);        /* keep a non-leaf's grad */
AG_EXPORT ag_tensor *ag_detach(ag_tensor *);      /* a view: shares storage and version, no history */
AG_EXPORT uint32_t ag_version(const ag_tensor *); /* t._version */

AG_EXPORT const ag_node *ag_grad_fn(const ag_tensor *); /* NULL for leaves */
AG_EXPORT const char *ag_node_name(const ag_node *);    /* "MulBackward0", "AccumulateGrad" ... */
AG_EXPORT int ag_node_num_next(const ag_node *);
AG_EXPORT const ag_node *ag_node_next(const ag_node *, int i); /* NULL where that input needs no grad */
AG_EXPORT const ag_tensor *ag_node_variable(const ag_node *);  /* AccumulateGrad: its leaf */

/* Writes the backward graph that ends in root as Graphviz DOT: one node per
 * backward node with its name and output shape, leaves (AccumulateGrad)
 * marked, edges from each node to the producers of its inputs. */
AG_EXPORT int ag_graph_dot(const ag_tensor *root, FILE *out);

/* ---- Grad mode (torch.no_grad) ------------------------------------------- */

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
 * The result belongs to ctx; inputs may come from any context.
 *
 * Views and copies: agrad tensors are contiguous, so only ag_reshape and
 * ag_detach return views (sharing storage and version counter with their
 * input, as in PyTorch). ag_transpose, ag_narrow and ag_expand return
 * copies where PyTorch returns views: writing to the result does not
 * change the input nor bump its version, and the result takes memory of
 * its own. Each declaration below says which it is. */

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
AG_EXPORT ag_tensor *ag_reshape(ag_ctx *, ag_tensor *a, int ndim, const int64_t *shape); /* a view */
AG_EXPORT ag_tensor *ag_transpose(ag_ctx *, ag_tensor *a, int dim0, int dim1);           /* a copy; PyTorch: a view */
AG_EXPORT ag_tensor *ag_clone(ag_ctx *, ag_tensor *a);                                   /* a copy, as in PyTorch */
/* a.to(dtype): a itself when it already has that dtype, else a converted
 * copy in ctx (ToCopyBackward0: the gradient is converted back to a's
 * dtype). Errors: AG_EINVAL for NULL a or ctx (a NULL a keeps the first
 * error) or a dtype that is not an ag_dtype; AG_ENOMEM. */
AG_EXPORT ag_tensor *ag_to(ag_ctx *, ag_tensor *a, ag_dtype dtype);

/* Neural-network ops. Index and target arrays are the caller's (copied
 * where backward needs them); class targets are in [0, C). */
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
/* A copy; PyTorch: a view. */
AG_EXPORT ag_tensor *ag_narrow(ag_ctx *, ag_tensor *a, int dim, int64_t start, int64_t length);
/* -1 keeps a size. A copy, the expanded size in memory; PyTorch: a view with stride 0. */
AG_EXPORT ag_tensor *ag_expand(ag_ctx *, ag_tensor *a, int ndim, const int64_t *shape);

/* In-place: bump the version counter. Refused on a leaf that requires grad
 * while grad mode is on, as in PyTorch; on a tensor with history while grad
 * mode is on they are not supported (AG_EUNSUPPORTED). other broadcasts to
 * t's shape. */
AG_EXPORT int ag_zero_(ag_tensor *t);
AG_EXPORT int ag_fill_(ag_tensor *t, double value);
AG_EXPORT int ag_add_(ag_tensor *t, const ag_tensor *other, double alpha); /* t += alpha * other */
AG_EXPORT int ag_sub_(ag_tensor *t, const ag_tensor *other);
AG_EXPORT int ag_mul_(ag_tensor *t, const ag_tensor *other);
AG_EXPORT int ag_add_scalar_(ag_tensor *t, double s);
AG_EXPORT int ag_mul_scalar_(ag_tensor *t, double s);

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

AG_EXPORT int ag_backward(ag_tensor *root, const ag_tensor *grad, const ag_backward_opts *opts);

/* ---- Hooks ------------------------------------------------------------------ */

typedef ag_tensor *(*ag_hook_fn)(ag_tensor *grad, void *user_data);
AG_EXPORT int ag_register_hook(ag_tensor *, ag_hook_fn, void *user_data); /* handle > 0 */
AG_EXPORT int ag_remove_hook(ag_tensor *, int handle);

/* ---- Optimizers ----------------------------------------------------------------
 * Update parameters in place with grad mode off, as torch.optim does (the
 * same arithmetic, in the parameters' dtype). State lives in the context
 * given at creation. Parameters without a .grad are skipped. */

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

AG_EXPORT ag_optim *ag_sgd_new(ag_ctx *ctx, ag_tensor *const *params, int n, const ag_sgd_opts *opts);
AG_EXPORT ag_optim *ag_adam_new(ag_ctx *ctx, ag_tensor *const *params, int n, const ag_adam_opts *opts);
AG_EXPORT int ag_optim_step(ag_optim *opt);
AG_EXPORT int ag_optim_zero_grad(ag_optim *opt); /* zeroes every parameter's .grad */
AG_EXPORT int ag_zero_grads(ag_tensor *const *params, int n);

/* ---- Trace ------------------------------------------------------------------------
 * Records every backward node that runs (name, thread, start, end) until
 * stopped, and writes it as Chrome trace JSON, viewable in Perfetto or
 * chrome://tracing. Setting AG_TRACE=path in the environment traces the
 * whole process and writes the file at exit. */
AG_EXPORT int ag_trace_start(void);
AG_EXPORT int ag_trace_stop(const char *path); /* writes the JSON; NULL: discard */

/* ---- Threads and determinism ------------------------------------------------ */

AG_EXPORT int ag_set_num_threads(int n); /* 0: AG_NUM_THREADS, else the CPUs this process may use */
AG_EXPORT int ag_get_num_threads(void);
AG_EXPORT void ag_set_deterministic(bool on);
AG_EXPORT bool ag_is_deterministic(void);

/* What runs the nodes of a multithreaded backward. AG_EXECUTOR_WS (the
 * default) is agrad's work-stealing pool; AG_EXECUTOR_OPENMP runs the same
 * graph as OpenMP tasks with depend clauses, for comparison. The initial
 * value comes from the AG_EXECUTOR environment variable ("ws" or "openmp").
 * ag_set_executor returns AG_EUNSUPPORTED for OpenMP in a build without
 * OpenMP. */
typedef enum ag_executor { AG_EXECUTOR_WS = 0, AG_EXECUTOR_OPENMP = 1 } ag_executor;
AG_EXPORT int ag_set_executor(ag_executor e);
AG_EXPORT ag_executor ag_get_executor(void);

/* ---- Limits ------------------------------------------------------------------
 * The most bytes of data one tensor may have. A tensor over it is refused
 * with AG_ENOMEM before anything is allocated. The default is what the
 * address space allows (PTRDIFF_MAX, or the process's RLIMIT_AS when it has
 * one), unless AG_MAX_TENSOR_BYTES is set in the environment (bytes, or with
 * a k, M, G or T suffix). ag_set_max_tensor_bytes(0) goes back to that
 * default; it returns the previous limit. */
AG_EXPORT size_t ag_set_max_tensor_bytes(size_t bytes);
AG_EXPORT size_t ag_get_max_tensor_bytes(void);

#ifdef __cplusplus
}
#endif

#endif /* AGRAD_H */
