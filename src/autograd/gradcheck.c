/* ag_gradcheck and ag_gradgradcheck (torch.autograd.gradcheck's slow
 * mode): the Jacobian of a function of float64 tensors from backward,
 * row by row (one ag_autograd_grad per output element, one-hot weights),
 * against central differences, column by column (two evaluations per
 * input element). gradgradcheck checks the function (inputs, v) -> the
 * gradients of f weighted by v, whose backward is a create_graph backward
 * of f: second derivatives against differences of first ones. */
#include "core/internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* A function of the checked inputs X[0..nx) with up to nout outputs. */
typedef struct ag__checked {
    ag_fn f;
    void *user_data;
    int n;                 /* f's own inputs: X[0..n) */
    bool second;           /* gradgradcheck: X[n] is v, outputs are f's gradients */
    ag_tensor *const *req; /* gradgradcheck: f's inputs that require grad */
    int nreq;
} ag__checked;

/* Evaluates the function at X in ctx. analytic: the outputs must carry
 * history (grad mode on; gradgradcheck: create_graph). *nout on entry is
 * the room in outs. */
static int ag__check_eval(const ag__checked *c, ag_ctx *ctx, ag_tensor *const *X, bool analytic, ag_tensor **outs,
                          int *nout) {
    bool prev = ag_set_grad_enabled(analytic || c->second);
    ag_clear_error();
    ag_tensor *y = c->f(ctx, X, c->n, c->user_data);
    int rc = 0;
    if (!y) {
        rc = ag_last_status() ? ag_last_status() : AG_EINVAL;
        if (!ag_last_status())
            ag__error(rc, "gradcheck: the function returned NULL");
    } else if (!c->second) {
        outs[0] = y;
        *nout = 1;
    } else {
        /* f's gradients weighted by v; those that do not exist are left out */
        ag_tensor **g = ag__ctx_alloc(ctx, (size_t)c->nreq * sizeof *g);
        ag_grad_opts o = {.create_graph = analytic, .allow_unused = true};
        int k = 0;
        if (!g)
            rc = AG_ENOMEM;
        else if (!y->requires_grad)
            k = 0;
        else if (!(rc = ag_autograd_grad(ctx, &y, &X[c->n], 1, c->req, c->nreq, g, &o)))
            for (int i = 0; i < c->nreq; i++)
                if (g[i])
                    outs[k++] = g[i];
        *nout = k;
    }
    ag_set_grad_enabled(prev);
    return rc;
}

typedef struct {
    double eps, atol, rtol;
} ag__tols;

/* One (output, input) block of the Jacobian: rows = output elements. */
typedef struct {
    double *num, *ana;
    int64_t rows, cols;
} ag__block;

/* One run of a check: the function's outputs, the Jacobian blocks
 * (output k, input i at blk[k * nx + i]) and the scratch they need. */
typedef struct {
    const ag__checked *c;
    ag_tensor *const *X;
    int nx, cap, nout;
    const ag__tols *tol;
    const char *what;
    ag_ctx *ctx, *gctx; /* the function's evaluations; the backwards */
    ag_tensor **outs;
    ag__block *blk;
    double *plus; /* f(x + eps), all outputs one after another */
} ag__jac;

/* Evaluates the function once for the outputs' sizes, then allocates a
 * numerical and an analytical block per (output, input requiring grad). */
static int ag__jac_alloc(ag__jac *J) {
    int rc;
    J->nout = J->cap;
    if ((rc = ag__check_eval(J->c, J->ctx, J->X, false, J->outs, &J->nout)))
        return rc;
    int64_t total_out = 0;
    for (int k = 0; k < J->nout; k++)
        total_out += J->outs[k]->numel;
    J->blk = calloc((size_t)(J->nout * J->nx) + 1, sizeof *J->blk);
    J->plus = calloc((size_t)total_out + 1, sizeof *J->plus);
    if (!J->blk || !J->plus)
        return ag__error(AG_ENOMEM, "%s: out of memory", J->what);
    for (int k = 0; k < J->nout; k++)
        for (int i = 0; i < J->nx; i++) {
            ag__block *b = &J->blk[k * J->nx + i];
            b->rows = J->outs[k]->numel;
            b->cols = J->X[i]->requires_grad ? J->X[i]->numel : 0;
            if (b->rows * b->cols > 0 && (!(b->num = calloc((size_t)(b->rows * b->cols), sizeof(double))) ||
                                          !(b->ana = calloc((size_t)(b->rows * b->cols), sizeof(double)))))
                return ag__error(AG_ENOMEM, "%s: out of memory", J->what);
        }
    ag_ctx_reset(J->ctx);
    return 0;
}

/* f at x[e] moved by +eps (side 0, kept in plus) or -eps (side 1: column
 * e of input i's blocks becomes the central difference). */
static int ag__jac_side(ag__jac *J, int i, int64_t e, int side) {
    int got = J->cap;
    int rc = ag__check_eval(J->c, J->ctx, J->X, false, J->outs, &got);
    if (!rc && got != J->nout)
        rc = ag__error(AG_ESTATE, "%s: the function gave %d outputs, then %d", J->what, J->nout, got);
    for (int k = 0, off = 0; !rc && k < J->nout; off += (int)J->outs[k]->numel, k++) {
        ag__block *b = &J->blk[k * J->nx + i];
        for (int64_t o = 0; o < b->rows; o++) {
            double v = ag__load(J->outs[k], o);
            if (!side)
                J->plus[off + o] = v;
            else
                b->num[o * b->cols + e] = (J->plus[off + o] - v) / (2 * J->tol->eps);
        }
    }
    ag_ctx_reset(J->ctx);
    return rc;
}

/* numerical: column e of input i from f(x + eps) - f(x - eps) */
static int ag__jac_numerical(ag__jac *J) {
    for (int i = 0; i < J->nx; i++) {
        if (!J->X[i]->requires_grad)
            continue;
        double *x = J->X[i]->data;
        for (int64_t e = 0; e < J->X[i]->numel; e++) {
            double keep = x[e];
            int rc = 0;
            for (int side = 0; side < 2 && !rc; side++) {
                x[e] = keep + (side ? -J->tol->eps : J->tol->eps);
                rc = ag__jac_side(J, i, e, side);
            }
            x[e] = keep;
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Row o of output k's blocks: a backward weighted by e_o. */
static int ag__jac_row(ag__jac *J, int k, int64_t o, ag_tensor **req, const int *req_at, int nreq, ag_tensor **grads) {
    ag_tensor *out = J->outs[k];
    ag_tensor *w = ag_zeros(J->gctx, out->dtype, out->ndim, out->shape);
    if (!w)
        return ag_last_status();
    ag__store(w, o, 1.0);
    ag_grad_opts go = {.retain_graph = true, .allow_unused = true};
    int rc = ag_autograd_grad(J->gctx, &J->outs[k], &w, 1, req, nreq, grads, &go);
    for (int r = 0; !rc && r < nreq; r++) {
        ag__block *b = &J->blk[k * J->nx + req_at[r]];
        for (int64_t e = 0; grads[r] && e < b->cols; e++)
            b->ana[o * b->cols + e] = ag__load(grads[r], e);
    }
    ag_ctx_reset(J->gctx);
    return rc;
}

/* analytical: every row of every output with history */
static int ag__jac_analytical(ag__jac *J) {
    int got = J->cap, rc;
    if ((rc = ag__check_eval(J->c, J->ctx, J->X, true, J->outs, &got)))
        return rc;
    ag_tensor **req = calloc((size_t)J->nx + 1, sizeof *req), **grads = calloc((size_t)J->nx + 1, sizeof *grads);
    int *req_at = calloc((size_t)J->nx + 1, sizeof *req_at), nreq = 0;
    if (!req || !grads || !req_at)
        rc = ag__error(AG_ENOMEM, "%s: out of memory", J->what);
    for (int i = 0; !rc && i < J->nx; i++)
        if (J->X[i]->requires_grad) {
            req_at[nreq] = i;
            req[nreq++] = J->X[i];
        }
    for (int k = 0; !rc && k < J->nout; k++) {
        if (!J->outs[k]->requires_grad)
            continue; /* no history: its rows are zero */
        for (int64_t o = 0; o < J->outs[k]->numel && !rc; o++)
            rc = ag__jac_row(J, k, o, req, req_at, nreq, grads);
    }
    free(req), free(grads), free(req_at);
    return rc;
}

/* the first disagreement, output by output, input by input */
static int ag__jac_compare(const ag__jac *J) {
    for (int k = 0; k < J->nout; k++)
        for (int i = 0; i < J->nx; i++) {
            const ag__block *b = &J->blk[k * J->nx + i];
            for (int64_t o = 0; o < b->rows; o++)
                for (int64_t e = 0; e < b->cols; e++) {
                    double n = b->num[o * b->cols + e], a = b->ana[o * b->cols + e];
                    if (!(fabs(a - n) <= J->tol->atol + J->tol->rtol * fabs(n)))
                        return ag__error(
                            AG_ESTATE,
                            "%sJacobian mismatch for output %d with respect to input %d, at element %" PRId64
                            " of the output and %" PRId64 " of the input: numerical %.10g, analytical %.10g",
                            J->c->second ? "gradgradcheck: " : "", k, i, o, e, n, a);
                }
        }
    return 0;
}

static int ag__check_run(const ag__checked *c, ag_tensor *const *X, int nx, const ag__tols *tol, const char *what) {
    ag__jac J = {.c = c, .X = X, .nx = nx, .cap = c->second ? c->nreq : 1, .tol = tol, .what = what};
    J.ctx = ag_ctx_new();
    J.gctx = ag_ctx_new();
    J.outs = calloc((size_t)J.cap + 1, sizeof *J.outs);
    int rc = 0;
    if (!J.ctx || !J.gctx || !J.outs)
        rc = ag__error(AG_ENOMEM, "%s: out of memory", what);
    if (!rc)
        rc = ag__jac_alloc(&J);
    if (!rc)
        rc = ag__jac_numerical(&J);
    if (!rc)
        rc = ag__jac_analytical(&J);
    if (!rc)
        rc = ag__jac_compare(&J);
    for (int j = 0; J.blk && j < J.nout * nx; j++) {
        free(J.blk[j].num);
        free(J.blk[j].ana);
    }
    free(J.blk);
    free(J.plus);
    free(J.outs);
    ag_ctx_free(J.ctx);
    ag_ctx_free(J.gctx);
    return rc;
}

static int ag__check_args(ag_fn f, ag_tensor *const *inputs, int n, const ag_gradcheck_opts *opts, ag__tols *tol,
                          const char *what) {
    if (!f)
        return ag__error(AG_EINVAL, "%s: the function is NULL", what);
    if (n < 0 || (n > 0 && !inputs))
        return ag__error(AG_EINVAL, "%s: %s", what, n < 0 ? "n is negative" : "inputs is NULL");
    bool any = false;
    for (int i = 0; i < n; i++) {
        if (!inputs[i])
            return ag__null_code(what);
        if (!inputs[i]->requires_grad)
            continue;
        if (inputs[i]->dtype != AG_FLOAT64)
            return ag__error(AG_EDTYPE,
                             "%s: input #%d requires gradient and is not a double precision floating point tensor "
                             "(central differences need float64)",
                             what, i);
        any = true;
    }
    if (!any)
        return ag__error(AG_EINVAL, "gradcheck expects at least one input tensor to require gradient, but none of "
                                    "the them have requires_grad=True.");
    tol->eps = opts && opts->eps > 0 ? opts->eps : 1e-6;
    tol->atol = opts && opts->atol > 0 ? opts->atol : 1e-5;
    tol->rtol = opts && opts->rtol > 0 ? opts->rtol : 1e-3;
    return 0;
}

int ag_gradcheck(ag_fn f, ag_tensor *const *inputs, int n, void *user_data, const ag_gradcheck_opts *opts) {
    ag__tols tol;
    int rc = ag__check_args(f, inputs, n, opts, &tol, "ag_gradcheck");
    if (rc)
        return rc;
    ag__checked c = {.f = f, .user_data = user_data, .n = n};
    return ag__check_run(&c, inputs, n, &tol, "ag_gradcheck");
}

int ag_gradgradcheck(ag_fn f, ag_tensor *const *inputs, int n, void *user_data, const ag_gradcheck_opts *opts) {
    ag__tols tol;
    int rc = ag__check_args(f, inputs, n, opts, &tol, "ag_gradgradcheck");
    if (rc)
        return rc;
    ag_ctx *vctx = ag_ctx_new();
    ag_tensor **X = calloc((size_t)n + 2, sizeof *X), **req = calloc((size_t)n + 1, sizeof *req);
    if (!vctx || !X || !req) {
        ag_ctx_free(vctx);
        free(X), free(req);
        return ag__error(AG_ENOMEM, "ag_gradgradcheck: out of memory");
    }
    int nreq = 0;
    for (int i = 0; i < n; i++) {
        X[i] = inputs[i];
        if (inputs[i]->requires_grad)
            req[nreq++] = inputs[i];
    }
    /* v, the weights of f's output: fixed values in [-1, 1), as PyTorch's
     * random grad_outputs, from a generator of its own (the program's
     * stays untouched) */
    bool prev = ag_set_grad_enabled(false);
    ag_clear_error();
    ag_tensor *y = f(vctx, inputs, n, user_data);
    ag_set_grad_enabled(prev);
    ag_tensor *v = y ? ag_zeros(vctx, AG_FLOAT64, y->ndim, y->shape) : NULL;
    if (!y && !ag_last_status()) {
        rc = ag__error(AG_EINVAL, "gradgradcheck: the function returned NULL");
    } else if (!v) {
        rc = ag_last_status() ? ag_last_status() : AG_ENOMEM;
    } else {
        uint64_t s = 0x9e3779b97f4a7c15u;
        for (int64_t e = 0; e < v->numel; e++) {
            s = s * 6364136223846793005u + 1442695040888963407u;
            ag__store(v, e, (double)(s >> 11) / 4503599627370496.0 - 1.0);
        }
        ag_requires_grad_(v, true);
        X[n] = v;
        ag__checked c = {.f = f, .user_data = user_data, .n = n, .second = true, .req = req, .nreq = nreq};
        rc = ag__check_run(&c, X, n + 1, &tol, "ag_gradgradcheck");
    }
    ag_ctx_free(vctx);
    free(X), free(req);
    return rc;
}
