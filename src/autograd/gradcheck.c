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

static int ag__check_run(const ag__checked *c, ag_tensor *const *X, int nx, const ag__tols *tol, const char *what) {
    int rc = 0, nout = 0, cap = c->second ? c->nreq : 1;
    ag_ctx *ctx = ag_ctx_new(), *gctx = ag_ctx_new();
    ag_tensor **outs = calloc((size_t)cap + 1, sizeof *outs);
    ag__block *blk = NULL;
    double *plus = NULL;
    int64_t total_out = 0;
    if (!ctx || !gctx || !outs) {
        rc = ag__error(AG_ENOMEM, "%s: out of memory", what);
        goto done;
    }
    /* the shapes of the outputs */
    nout = cap;
    if ((rc = ag__check_eval(c, ctx, X, false, outs, &nout)))
        goto done;
    int64_t *out_numel = calloc((size_t)nout + 1, sizeof *out_numel);
    if (!out_numel) {
        rc = ag__error(AG_ENOMEM, "%s: out of memory", what);
        goto done;
    }
    for (int k = 0; k < nout; k++)
        total_out += out_numel[k] = outs[k]->numel;
    ag_ctx_reset(ctx);
    blk = calloc((size_t)(nout * nx) + 1, sizeof *blk);
    plus = calloc((size_t)total_out + 1, sizeof *plus);
    if (!blk || !plus) {
        free(out_numel);
        rc = ag__error(AG_ENOMEM, "%s: out of memory", what);
        goto done;
    }
    for (int k = 0; k < nout; k++)
        for (int i = 0; i < nx; i++) {
            ag__block *b = &blk[k * nx + i];
            b->rows = out_numel[k];
            b->cols = X[i]->requires_grad ? X[i]->numel : 0;
            if (b->rows * b->cols > 0 && (!(b->num = calloc((size_t)(b->rows * b->cols), sizeof(double))) ||
                                          !(b->ana = calloc((size_t)(b->rows * b->cols), sizeof(double))))) {
                free(out_numel);
                rc = ag__error(AG_ENOMEM, "%s: out of memory", what);
                goto done;
            }
        }
    free(out_numel);

    /* numerical: column e of input i from f(x + eps) - f(x - eps) */
    for (int i = 0; i < nx; i++) {
        if (!X[i]->requires_grad)
            continue;
        double *x = X[i]->data;
        for (int64_t e = 0; e < X[i]->numel; e++) {
            double keep = x[e];
            for (int side = 0; side < 2; side++) {
                x[e] = keep + (side ? -tol->eps : tol->eps);
                int got = cap;
                rc = ag__check_eval(c, ctx, X, false, outs, &got);
                if (!rc && got != nout)
                    rc = ag__error(AG_ESTATE, "%s: the function gave %d outputs, then %d", what, nout, got);
                for (int k = 0, off = 0; !rc && k < nout; off += (int)outs[k]->numel, k++) {
                    ag__block *b = &blk[k * nx + i];
                    for (int64_t o = 0; o < b->rows; o++) {
                        double v = ag__load(outs[k], o);
                        if (!side)
                            plus[off + o] = v;
                        else
                            b->num[o * b->cols + e] = (plus[off + o] - v) / (2 * tol->eps);
                    }
                }
                ag_ctx_reset(ctx);
                if (rc)
                    break;
            }
            x[e] = keep;
            if (rc)
                goto done;
        }
    }

    /* analytical: row o of output k from a backward weighted by e_o */
    int got = cap;
    if ((rc = ag__check_eval(c, ctx, X, true, outs, &got)))
        goto done;
    ag_tensor **req = calloc((size_t)nx + 1, sizeof *req), **grads = calloc((size_t)nx + 1, sizeof *grads);
    int *req_at = calloc((size_t)nx + 1, sizeof *req_at), nreq = 0;
    if (!req || !grads || !req_at) {
        free(req), free(grads), free(req_at);
        rc = ag__error(AG_ENOMEM, "%s: out of memory", what);
        goto done;
    }
    for (int i = 0; i < nx; i++)
        if (X[i]->requires_grad) {
            req_at[nreq] = i;
            req[nreq++] = X[i];
        }
    for (int k = 0; k < nout && !rc; k++) {
        if (!outs[k]->requires_grad)
            continue; /* no history: its rows are zero */
        for (int64_t o = 0; o < outs[k]->numel && !rc; o++) {
            ag_tensor *w = ag_zeros(gctx, outs[k]->dtype, outs[k]->ndim, outs[k]->shape);
            if (!w) {
                rc = ag_last_status();
                break;
            }
            ag__store(w, o, 1.0);
            ag_grad_opts go = {.retain_graph = true, .allow_unused = true};
            if ((rc = ag_autograd_grad(gctx, &outs[k], &w, 1, req, nreq, grads, &go)))
                break;
            for (int r = 0; r < nreq; r++) {
                ag__block *b = &blk[k * nx + req_at[r]];
                for (int64_t e = 0; grads[r] && e < b->cols; e++)
                    b->ana[o * b->cols + e] = ag__load(grads[r], e);
            }
            ag_ctx_reset(gctx);
        }
    }
    free(req), free(grads), free(req_at);
    if (rc)
        goto done;

    /* the first disagreement, output by output, input by input */
    for (int k = 0; k < nout; k++)
        for (int i = 0; i < nx; i++) {
            ag__block *b = &blk[k * nx + i];
            for (int64_t o = 0; o < b->rows; o++)
                for (int64_t e = 0; e < b->cols; e++) {
                    double n = b->num[o * b->cols + e], a = b->ana[o * b->cols + e];
                    if (!(fabs(a - n) <= tol->atol + tol->rtol * fabs(n))) {
                        rc = ag__error(AG_ESTATE,
                                       "%sJacobian mismatch for output %d with respect to input %d, at element %" PRId64
                                       " of the output and %" PRId64 " of the input: numerical %.10g, analytical %.10g",
                                       c->second ? "gradgradcheck: " : "", k, i, o, e, n, a);
                        goto done;
                    }
                }
        }
done:
    for (int j = 0; blk && j < nout * nx; j++) {
        free(blk[j].num);
        free(blk[j].ana);
    }
    free(blk);
    free(plus);
    free(outs);
    ag_ctx_free(ctx);
    ag_ctx_free(gctx);
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
