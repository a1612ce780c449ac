/* Helpers the op families share: broadcasting shapes (NumPy rules, PyTorch's
 * error message) and argument checks. */
#include "ops/ops.h"

#include <inttypes.h>

int ag__broadcast_shape(const ag_tensor *a, const ag_tensor *b, int *ndim, int64_t *shape) {
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = n - 1; i >= 0; i--) {
        int off = n - 1 - i;
        int da = a->ndim - 1 - off, db = b->ndim - 1 - off;
        int64_t sa = da >= 0 ? a->shape[da] : 1;
        int64_t sb = db >= 0 ? b->shape[db] : 1;
        if (sa != sb && sa != 1 && sb != 1)
            return ag__error(AG_ESHAPE,
                             "The size of tensor a (%" PRId64 ") must match the size of tensor b (%" PRId64
                             ") at non-singleton dimension %d",
                             sa, sb, i);
        shape[i] = sa == 1 ? sb : sa;
    }
    *ndim = n;
    return 0;
}

/* The checks every op makes first: NULL inputs, a NULL context. */
static int ag__op_args(ag__op *op, const char *name, ag_ctx *ctx, int n, ag_tensor *const *in) {
    *op = (ag__op){.name = name, .ctx = ctx, .in = in, .n_in = n};
    for (int i = 0; i < n; i++)
        if (!in[i]) {
            ag__null_arg(name);
            return ag_last_status() ? ag_last_status() : AG_EINVAL;
        }
    if (!ctx)
        return ag__error(AG_EINVAL, "%s: context is NULL", name);
    for (int i = 0; i < n; i++)
        if (ag__check_alive(in[i], name))
            return AG_ESTATE;
    return 0;
}

int ag__op_begin(ag__op *op, const char *name, ag_ctx *ctx, int n, ag_tensor *const *in) {
    int rc = ag__op_args(op, name, ctx, n, in);
    if (rc)
        return rc;
    for (int i = 1; i < n; i++) {
        ag_dtype want = in[0]->dtype, got = in[i]->dtype;
        if (got == want)
            continue;
        if (n == 2)
            return ag__error(AG_EDTYPE, "%s: expected scalar type %s but found %s", name, ag__dtype_scalar_name(want),
                             ag__dtype_scalar_name(got));
        return ag__error(AG_EDTYPE, "%s: expected all tensors to have dtype %s, got %s at position %d", name,
                         ag__dtype_scalar_name(want), ag__dtype_scalar_name(got), i);
    }
    ag__ctx_mark(ctx, &op->pos);
    return 0;
}

ag_tensor *ag__standin(ag_ctx *ctx, ag_tensor *a) {
    if (a->contiguous)
        return a;
    ag_tensor *c = ag__tensor_new(ctx, a->dtype, a->ndim, a->shape);
    if (!c)
        return NULL;
    ag__gather(a, c->data, a->dtype);
    c->storage->version = a->storage->version;
    c->requires_grad = a->requires_grad;
    c->grad_fn = a->grad_fn;
    c->grad_accumulator = a->grad_accumulator;
    return c;
}

ag_tensor *const *ag__op_standins(ag__op *op, int n, ag_tensor *const *ts) {
    int k = 0;
    while (k < n && ts[k]->contiguous)
        k++;
    if (k == n || op->failed)
        return op->failed ? NULL : ts;
    ag_tensor **cs = ag__ctx_alloc(op->ctx, (size_t)n * sizeof *cs);
    for (int i = 0; cs && i < n; i++)
        if (!(cs[i] = ag__standin(op->ctx, ts[i])))
            cs = NULL;
    op->failed = !cs;
    return cs;
}

int ag__op_begin_mixed(ag__op *op, const char *name, ag_ctx *ctx, int n, ag_tensor *const *in) {
    int rc = ag__op_args(op, name, ctx, n, in);
    if (!rc)
        ag__ctx_mark(ctx, &op->pos);
    return rc;
}

ag_dtype ag__result_type(int n, ag_tensor *const *in) {
    ag_dtype dims = AG_FLOAT32, zero_dim = AG_FLOAT32;
    bool any_dims = false;
    for (int i = 0; i < n; i++) {
        ag_dtype *wide = in[i]->ndim > 0 ? &dims : &zero_dim;
        any_dims = any_dims || in[i]->ndim > 0;
        if (in[i]->dtype > *wide)
            *wide = in[i]->dtype;
    }
    return any_dims ? dims : zero_dim;
}

int ag__op_promote(ag__op *op) {
    ag_dtype dt = ag__result_type(op->n_in, op->in);
    bool same = true;
    for (int i = 0; i < op->n_in; i++)
        same = same && op->in[i]->dtype == dt;
    if (same)
        return 0;
    ag_tensor **conv = op->conv;
    if (op->n_in > AG__OP_CONV && !(conv = ag__ctx_alloc(op->ctx, (size_t)op->n_in * sizeof *conv)))
        return ag_last_status();
    for (int i = 0; i < op->n_in; i++) {
        conv[i] = op->in[i]->dtype == dt ? op->in[i] : ag_to(op->ctx, op->in[i], dt);
        if (!conv[i]) {
            int rc = ag_last_status();
            ag__ctx_rollback(op->ctx, &op->pos);
            return rc;
        }
    }
    op->in = conv;
    return 0;
}

/* op->in with every input contiguous, in an array of the op's own */
static void ag__op_make_contiguous(ag__op *op) {
    int k = 0;
    while (k < op->n_in && op->in[k]->contiguous)
        k++;
    if (k == op->n_in)
        return;
    ag_tensor **own = op->conv;
    if (op->in != op->conv && op->n_in > AG__OP_CONV &&
        !(own = ag__ctx_alloc(op->ctx, (size_t)op->n_in * sizeof *own))) {
        op->failed = true;
        return;
    }
    for (int i = 0; i < op->n_in && !op->failed; i++)
        if (!(own[i] = ag__standin(op->ctx, op->in[i])))
            op->failed = true;
    op->in = own;
}

ag_tensor *ag__op_output(ag__op *op, int ndim, const int64_t *shape) {
    if (!op->failed && !op->strided)
        ag__op_make_contiguous(op);
    op->out = op->failed ? NULL : ag__tensor_new(op->ctx, op->in[0]->dtype, ndim, shape);
    op->failed = !op->out;
    return op->out;
}

ag_tensor *ag__op_view_strided(ag__op *op, const ag_tensor *base, int ndim, const int64_t *shape, const int64_t *stride,
                               int64_t offset) {
    op->out = ag__tensor_view(op->ctx, base, ndim, shape, stride, offset);
    op->failed = !op->out;
    op->view = true;
    return op->out;
}

ag_tensor *ag__op_view(ag__op *op, const ag_tensor *base, int ndim, const int64_t *shape) {
    int64_t stride[AG_MAX_DIMS];
    ag__contiguous_strides(ndim, shape, stride);
    return ag__op_view_strided(op, base, ndim, shape, stride, base->offset);
}

ag_node *ag__op_record_edges(ag__op *op, const ag__node_kind *kind, int n, ag_tensor *const *edges, size_t extra) {
    if (op->failed || !ag__needs_grad(n, edges))
        return NULL;
    op->node = ag__record_extra(op->ctx, kind, op->out, n, edges, extra);
    op->failed = !op->node;
    return op->node;
}

ag_node *ag__op_record(ag__op *op, const ag__node_kind *kind) {
    return ag__op_record_edges(op, kind, op->n_in, op->in, 0);
}

ag_tensor *ag__op_end(ag__op *op) {
    if (!op->failed && op->out && (!op->view || !ag__view_link(op->out)))
        return op->out;
    ag__ctx_rollback(op->ctx, &op->pos); /* the failed step set the error */
    return NULL;
}

/* Kept until every family runs on the skeleton above. */
int ag__check_unary(ag_ctx *ctx, const ag_tensor *a, const char *op) {
    ag__op o;
    return ag__op_begin(&o, op, ctx, 1, (ag_tensor *[]){(ag_tensor *)a});
}

int ag__check_binary(ag_ctx *ctx, const ag_tensor *a, const ag_tensor *b, const char *op) {
    ag__op o;
    return ag__op_begin(&o, op, ctx, 2, (ag_tensor *[]){(ag_tensor *)a, (ag_tensor *)b});
}

/* Drop size-1 dimensions; merge dimension d into the kept one before it
 * when every operand steps through that one as a continuation of d.
 * st holds each operand's full strides over shape. */
static void ag__iter_compress(ag__iter *it, int ndim, const int64_t *shape, int64_t st[][AG_MAX_DIMS]) {
    int nops = it->nops;
    int n = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1)
            continue;
        if (n > 0) {
            bool merge = true;
            for (int k = 0; k < nops; k++)
                if (it->stride[k][n - 1] != st[k][d] * shape[d])
                    merge = false;
            if (merge) {
                it->shape[n - 1] *= shape[d];
                for (int k = 0; k < nops; k++)
                    it->stride[k][n - 1] = st[k][d];
                continue;
            }
        }
        it->shape[n] = shape[d];
        for (int k = 0; k < nops; k++)
            it->stride[k][n] = st[k][d];
        n++;
    }
    if (n == 0) {
        it->shape[0] = 1;
        for (int k = 0; k < nops; k++)
            it->stride[k][0] = 0;
        n = 1;
    }
    it->ndim = n;
}

void ag__iter_init(ag__iter *it, int ndim, const int64_t *shape, int nops, const ag_tensor *const *ops) {
    it->nops = nops;
    /* Every operand full-size or a single element (same shapes, a scalar
     * against a tensor): one row, strides 1 or 0, no per-dimension work.
     * An empty shape walks one row of nothing: its strides, products of
     * trailing sizes, may not fit in int64. */
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++)
        if (!ag__mul_ok(numel, shape[d], &numel) || numel == 0) {
            numel = 0;
            break;
        }
    bool flat = true;
    for (int k = 0; k < nops; k++)
        flat = flat && ((ops[k]->numel == numel && ops[k]->contiguous) || ops[k]->numel == 1);
    if (flat || numel == 0) {
        it->ndim = 1;
        it->shape[0] = numel;
        for (int k = 0; k < nops; k++)
            it->stride[k][0] = ops[k]->numel == numel ? 1 : 0;
        return;
    }
    /* Each operand's strides, aligned to the right as broadcasting aligns
     * (0 where it is broadcast). */
    int64_t st[AG__ITER_OPS][AG_MAX_DIMS];
    for (int k = 0; k < nops; k++) {
        const ag_tensor *t = ops[k];
        for (int d = ndim - 1; d >= 0; d--) {
            int td = t->ndim - (ndim - d);
            st[k][d] = td >= 0 && t->shape[td] != 1 ? t->stride[td] : 0;
        }
    }
    ag__iter_compress(it, ndim, shape, st);
}

#define AG__KERNELS "ops/common_kernels.inc"
#include "ops/kernel_template.h"

void ag__reduce_into(ag_tensor *dst, const ag_tensor *src, double scale, bool acc) {
    if (dst->numel == 0)
        return;
    if (src->numel == 0 || (!acc && dst->numel < src->numel)) {
        /* nothing to add (dst broadcast to an empty shape), or sums over
         * src's extra elements: they start from 0 */
        if (!acc)
            memset(dst->data, 0, dst->storage->nbytes);
        if (src->numel == 0)
            return;
        acc = true;
    }
    /* Walk the larger of the two shapes; the smaller broadcasts into it. */
    const ag_tensor *big = dst->numel >= src->numel ? dst : src;
    const ag_tensor *ops[2] = {dst, src};
    ag__iter it;
    ag__iter_init(&it, big->ndim, big->shape, 2, ops);
    if (dst->dtype == AG_FLOAT32)
        ag__reduce_walk_f32(&it, dst->data, src->data, (float)scale, acc);
    else
        ag__reduce_walk_f64(&it, dst->data, src->data, scale, acc);
}

void ag__add_reduced(ag_tensor *dst, const ag_tensor *src, double scale) { ag__reduce_into(dst, src, scale, true); }

void ag__copy_flat(ag_tensor *dst, const ag_tensor *src, bool acc) {
    if (dst->dtype == AG_FLOAT32)
        ag__copy_flat_f32(dst->data, src->data, dst->numel, acc);
    else
        ag__copy_flat_f64(dst->data, src->data, dst->numel, acc);
}
