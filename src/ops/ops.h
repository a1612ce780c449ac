/* Private helpers shared by the op families (ops_*.c): argument checks,
 * broadcast strides and the strided walk over an output shape, the
 * broadcast-gradient reduction, and the matmul kernels (declared here so the
 * tests can hold the fast kernel against the naive one). */
#ifndef AG_OPS_H
#define AG_OPS_H

#include "core/checked.h"
#include "core/internal.h"
#include "core/tuning.h"

/* `omp simd` asks for vectorisation; where clang cannot give it (sanitizer
 * instrumentation in the loop) the loop still runs correctly, so that is
 * not a warning worth failing a -Werror build for. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

/* ---- The op skeleton (ops/common.c) ------------------------------------------
 * Every op runs the same steps and states only what is its own:
 *
 *     ag_tensor *in[2] = {a, b};
 *     ag__op op;
 *     if (ag__op_begin(&op, "ag_matmul", ctx, 2, in) || <the op's own checks>)
 *         return NULL;                                // nothing allocated
 *     ag_tensor *out = ag__op_output(&op, ndim, shape);
 *     if (!out)
 *         return NULL;
 *     <the forward kernel>
 *     ag_node *node = ag__op_record(&op, &kind);      // NULL: nothing recorded
 *     if (node)
 *         <attributes, saved tensors>
 *     return ag__op_end(&op);                         // out, or NULL and the context as it was
 *
 * Arguments are all checked before the first allocation, so a refused call
 * leaves its context untouched; a call that fails later (out of memory while
 * recording) gives back what it allocated (ag__ctx_rollback). */
#define AG__OP_CONV 4 /* inputs converted without an allocation for the array */
typedef struct ag__op {
    const char *name; /* "ag_matmul": the op in messages */
    ag_ctx *ctx;
    ag_tensor *const *in; /* the tensor inputs: the edges of the node */
    int n_in;
    ag_tensor *out;               /* the result, once made */
    ag_node *node;                /* the recorded node, if any */
    bool failed;                  /* a step after the checks failed (error set) */
    bool view;                    /* out is a view of an input (linked on success) */
    bool strided;                 /* set by an op whose kernels take strided inputs */
    ag__ctx_pos pos;              /* the context before the op */
    ag_tensor *conv[AG__OP_CONV]; /* in, promoted (ag__op_promote) or made contiguous */
} ag__op;

/* In this order: a NULL input (keeping an earlier error: "name: got a NULL
 * tensor" otherwise), a NULL context, an input that is a view whose base's
 * context is gone, inputs of different dtypes (two: PyTorch's "expected
 * scalar type Float but found Double", as its products say; more:
 * "expected all tensors to have dtype"). 0 when the op may go on, else the
 * error code. */
int ag__op_begin(ag__op *op, const char *name, ag_ctx *ctx, int n, ag_tensor *const *in);
/* Type promotion, in one place for every op that mixes dtypes as PyTorch
 * does (the binary ops, where, cat, stack ...):
 *
 *     if (ag__op_begin_mixed(&op, "ag_add", ctx, 2, in) || <the op's own checks> || ag__op_promote(&op))
 *         return NULL;
 *     a = op.in[0], b = op.in[1];                     // from here on, one dtype
 *
 * ag__op_begin_mixed is ag__op_begin without the dtype check. ag__op_promote
 * converts every input whose dtype is not the result type into it with
 * ag_to (a ToCopyBackward0 node, so each input's gradient comes back in its
 * own dtype) and points op->in at the converted inputs; it fails only when
 * out of memory, giving back what it allocated. */
int ag__op_begin_mixed(ag__op *op, const char *name, ag_ctx *ctx, int n, ag_tensor *const *in);
int ag__op_promote(ag__op *op);
/* PyTorch's result type of float tensors: the widest dtype among the
 * tensors with dimensions, or among all when every one is 0-dim (a 0-dim
 * tensor does not widen a tensor with dimensions: float32[3] with a
 * float64 0-dim tensor stays float32). */
ag_dtype ag__result_type(int n, ag_tensor *const *in);
/* The result: a new tensor of in[0]'s dtype (uninitialised). Strided
 * inputs are made contiguous here, the one place where that happens: each
 * op->in[i] that is not contiguous is replaced by a contiguous stand-in
 * (ag__standin) in an array of the op's own (never the caller's), so
 * kernels after this read their inputs from op->in[], never from the op's
 * parameters (unless the op set op->strided: its kernels take strides).
 * NULL on failure (error set). */
ag_tensor *ag__op_output(ag__op *op, int ndim, const int64_t *shape);
/* The result as a view of base's storage: with another shape of the same
 * element count (base contiguous), or with the strides and storage offset
 * given (checked by the caller). Inputs stay as they are. */
ag_tensor *ag__op_view(ag__op *op, const ag_tensor *base, int ndim, const int64_t *shape);
ag_tensor *ag__op_view_strided(ag__op *op, const ag_tensor *base, int ndim, const int64_t *shape, const int64_t *stride,
                               int64_t offset);
/* A contiguous copy of a in ctx that stands in for a in a kernel and in
 * the graph: same autograd identity (grad_fn, AccumulateGrad,
 * requires_grad) and a's version counter, so a node that saves it sees
 * in-place changes of a (and of its base). a itself when contiguous. */
ag_tensor *ag__standin(ag_ctx *ctx, ag_tensor *a);
/* Stand-ins for n tensors (an array in the op's context), or ts itself
 * when all are contiguous; NULL on failure (the op then fails). */
ag_tensor *const *ag__op_standins(ag__op *op, int n, ag_tensor *const *ts);
/* Records the op's node of `kind` with the inputs as edges (when grad mode
 * is on and one requires grad). _edges names other edges (a NULL edge
 * for a wrapped scalar, an optional bias) and asks for `extra` attribute
 * bytes. NULL when nothing is recorded or on failure (then ag__op_end
 * fails). */
ag_node *ag__op_record(ag__op *op, const ag__node_kind *kind);
ag_node *ag__op_record_edges(ag__op *op, const ag__node_kind *kind, int n, ag_tensor *const *edges, size_t extra);
/* The result, or NULL after a failure, with the context as it was before
 * ag__op_begin. */
ag_tensor *ag__op_end(ag__op *op);
/* ag__op_begin for one or two inputs, without an op in progress. */
int ag__check_unary(ag_ctx *ctx, const ag_tensor *a, const char *op);
int ag__check_binary(ag_ctx *ctx, const ag_tensor *a, const ag_tensor *b, const char *op);

/* A walk over an output shape with up to AG__ITER_OPS operands, each with
 * its own element strides (its own, as a view has them, and 0 along
 * broadcast dimensions). Dimensions of
 * size 1 are dropped and adjacent dimensions that are contiguous for every
 * operand are merged, so most walks are one flat loop; when every operand
 * has either all the elements or one, the walk is one row at once. */
#define AG__ITER_OPS 4
typedef struct ag__iter {
    int ndim; /* >= 1 after ag__iter_init; the innermost is ndim - 1 */
    int nops;
    int64_t shape[AG_MAX_DIMS];
    int64_t stride[AG__ITER_OPS][AG_MAX_DIMS];
} ag__iter;

/* ops[k] is an operand whose shape broadcasts to (ndim, shape). */
void ag__iter_init(ag__iter *it, int ndim, const int64_t *shape, int nops, const ag_tensor *const *ops);

/* The rows of a walk, one after another:
 *     for (ag__row r = ag__row_first(it); r.i < r.n; ag__row_next(it, &r))
 *         row_kernel(dst + r.off[0], src + r.off[1], ...);
 * with r.off[k] operand k's element offset where the row starts. */
typedef struct ag__row {
    int64_t i, n;              /* this row and the number of rows */
    int64_t off[AG__ITER_OPS]; /* each operand's offset */
    int64_t idx[AG_MAX_DIMS];  /* the row's index in each outer dimension */
} ag__row;

static inline ag__row ag__row_first(const ag__iter *it) {
    ag__row r = {.i = 0, .n = 1};
    for (int d = 0; d < it->ndim - 1; d++)
        r.n *= it->shape[d];
    return r;
}

static inline void ag__row_next(const ag__iter *it, ag__row *r) {
    r->i++;
    for (int d = it->ndim - 2; d >= 0; d--) {
        if (++r->idx[d] < it->shape[d]) {
            for (int k = 0; k < it->nops; k++)
                r->off[k] += it->stride[k][d];
            return;
        }
        for (int k = 0; k < it->nops; k++)
            r->off[k] -= it->stride[k][d] * (r->idx[d] - 1);
        r->idx[d] = 0;
    }
}

/* A kernel taking a flag that its callers pass as a constant: inlined at
 * each call, so the loops the flag guards are specialised. */
#define AG__ALWAYS_INLINE inline __attribute__((always_inline))

/* Gradient helpers (ops/common.c), same dtype throughout. acc: add into
 * dst (+=) instead of writing it (=).
 * ag__reduce_into: dst (=|+=) scale * src, where src's shape broadcasts
 * to dst's or dst's to src's: src summed over the dimensions dst was
 * broadcast along (the backward of broadcasting), or spread across the
 * dimensions src is broadcast along (the backward of a reduction).
 * ag__copy_flat: dst (=|+=) src element for element (same element
 * count, any shapes: a view's gradient).
 * ag__add_reduced: ag__reduce_into adding. */
void ag__reduce_into(ag_tensor *dst, const ag_tensor *src, double scale, bool acc);
void ag__copy_flat(ag_tensor *dst, const ag_tensor *src, bool acc);
void ag__add_reduced(ag_tensor *dst, const ag_tensor *src, double scale);

/* Shape kernels (ops/shape.c): a reshape's backward (dinp[0] += dout,
 * element for element), and dst op= src with dims d0 and d1 swapped. */
int ag__view_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh, ag_ctx *scratch);
void ag__transpose_into(ag_tensor *dst, const ag_tensor *src, int d0, int d1, bool add);

/* Matrix products (ops/linalg.c): C (m,n) = op(A) @ op(B), plus C when
 * acc, with op(X) = X or X^T as ta/tb say and lda/ldb/ldc the row lengths
 * of the stored matrices. Without acc C is written, never read. Any size
 * may be 0. Large products are split over the pool's threads; the result
 * does not depend on how (linalg.c says why). */
void ag__gemm(ag_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda, const void *B,
              int64_t ldb, void *C, int64_t ldc, bool acc);
/* What runs the products: "BLIS 0.9.0, skx kernels (chosen by agrad)", ...;
 * and the BLIS context (cntx_t *) agrad passes to every call, NULL where
 * BLIS picks its kernels itself (for the GEMM benchmark). */
const char *ag__blas_name(void);
void *ag__blis_kernels(void);
/* ag_matmul with a 1-D operand (ops/matvec.c): dot, mv, or a vector
 * times a matrix, as PyTorch dispatches them. a and b are not NULL, ctx
 * may be. */
ag_tensor *ag__matmul_1d(ag_ctx *ctx, ag_tensor *a, ag_tensor *b);
/* The reference kernels, for tests: C (m,n) += A (m,k) @ B (k,n). */
void ag__gemm_ref_f32(int64_t m, int64_t n, int64_t k, const float *A, const float *B, float *C);
void ag__gemm_ref_f64(int64_t m, int64_t n, int64_t k, const double *A, const double *B, double *C);

/* (outer, n, inner) split of a tensor around dimension dim. Only a tensor
 * with elements has well-defined products (core/checked.h): an empty one
 * splits as (0, n, 0), so loops over it do nothing and no trailing product
 * of huge sizes is ever formed. */
static inline void ag__split(const ag_tensor *a, int dim, int64_t *outer, int64_t *n, int64_t *inner) {
    *n = a->ndim ? a->shape[dim] : 1;
    if (a->numel == 0) {
        *outer = 0;
        *inner = 0;
        return;
    }
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < dim; d++)
        *outer *= a->shape[d];
    for (int d = dim + 1; d < a->ndim; d++)
        *inner *= a->shape[d];
}

#endif /* AG_OPS_H */
