/* Optimizers: SGD (momentum, dampening, Nesterov, weight decay) and Adam
 * (with AMSGrad), updating parameters in place exactly as torch.optim's
 * single-tensor paths do, element by element in the parameter's dtype. */
#include "core/internal.h"

#include <math.h>

typedef enum { AG__SGD, AG__ADAM } ag__optim_kind;

struct ag_optim {
    ag__optim_kind kind;
    int n;
    ag_tensor **params;
    ag_tensor **buf1; /* SGD: momentum buffer; Adam: exp_avg */
    ag_tensor **buf2; /* Adam: exp_avg_sq */
    ag_tensor **buf3; /* Adam with AMSGrad: max_exp_avg_sq */
    int64_t *steps;   /* Adam: per-parameter step count */
    ag_sgd_opts sgd;
    ag_adam_opts adam;
};

static ag_optim *ag__optim_new(ag_ctx *ctx, ag_tensor *const *params, int n, ag__optim_kind kind) {
    if (!ctx)
        return ag__error_null(AG_EINVAL, "optimizer: context is NULL");
    if (!params || n <= 0)
        return ag__error_null(AG_EINVAL, "optimizer got an empty parameter list");
    for (int i = 0; i < n; i++) {
        if (!params[i])
            return ag__null_arg("optimizer");
        if (params[i]->grad_fn)
            return ag__error_null(AG_EINVAL, "can't optimize a non-leaf Tensor");
    }
    ag_optim *o = ag__ctx_alloc(ctx, sizeof *o);
    if (!o)
        return NULL;
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->n = n;
    size_t ptrs = (size_t)n * sizeof(ag_tensor *);
    o->params = ag__ctx_alloc(ctx, ptrs);
    o->buf1 = ag__ctx_alloc(ctx, ptrs);
    o->buf2 = ag__ctx_alloc(ctx, ptrs);
    o->buf3 = ag__ctx_alloc(ctx, ptrs);
    o->steps = ag__ctx_alloc(ctx, (size_t)n * sizeof(int64_t));
    if (!o->params || !o->buf1 || !o->buf2 || !o->buf3 || !o->steps)
        return NULL;
    for (int i = 0; i < n; i++) {
        o->params[i] = params[i];
        o->buf1[i] = o->buf2[i] = o->buf3[i] = NULL;
        o->steps[i] = 0;
        if (kind == AG__ADAM) {
            if (!(o->buf1[i] = ag_zeros(ctx, params[i]->dtype, params[i]->ndim, params[i]->shape)) ||
                !(o->buf2[i] = ag_zeros(ctx, params[i]->dtype, params[i]->ndim, params[i]->shape)))
                return NULL;
        }
    }
    return o;
}

ag_optim *ag_sgd_new(ag_ctx *ctx, ag_tensor *const *params, int n, const ag_sgd_opts *opts) {
    if (!opts)
        return ag__error_null(AG_EINVAL, "ag_sgd_new: options are NULL (lr is required)");
    if (!(opts->lr >= 0))
        return ag__error_null(AG_EINVAL, "Invalid learning rate: %g", opts->lr);
    if (!(opts->momentum >= 0))
        return ag__error_null(AG_EINVAL, "Invalid momentum value: %g", opts->momentum);
    if (!(opts->weight_decay >= 0))
        return ag__error_null(AG_EINVAL, "Invalid weight_decay value: %g", opts->weight_decay);
    if (opts->nesterov && (opts->momentum <= 0 || opts->dampening != 0))
        return ag__error_null(AG_EINVAL, "Nesterov momentum requires a momentum and zero dampening");
    ag_optim *o = ag__optim_new(ctx, params, n, AG__SGD);
    if (o)
        o->sgd = *opts;
    return o;
}

ag_optim *ag_adam_new(ag_ctx *ctx, ag_tensor *const *params, int n, const ag_adam_opts *opts) {
    ag_adam_opts a = opts ? *opts : (ag_adam_opts){0};
    if (a.lr == 0)
        a.lr = 1e-3;
    if (a.beta1 == 0 && a.beta2 == 0) {
        a.beta1 = 0.9;
        a.beta2 = 0.999;
    }
    if (a.eps == 0)
        a.eps = 1e-8;
    if (!(a.lr > 0))
        return ag__error_null(AG_EINVAL, "Invalid learning rate: %g", a.lr);
    if (!(a.eps >= 0))
        return ag__error_null(AG_EINVAL, "Invalid epsilon value: %g", a.eps);
    if (!(a.beta1 >= 0 && a.beta1 < 1))
        return ag__error_null(AG_EINVAL, "Invalid beta parameter at index 0: %g", a.beta1);
    if (!(a.beta2 >= 0 && a.beta2 < 1))
        return ag__error_null(AG_EINVAL, "Invalid beta parameter at index 1: %g", a.beta2);
    if (!(a.weight_decay >= 0))
        return ag__error_null(AG_EINVAL, "Invalid weight_decay value: %g", a.weight_decay);
    ag_optim *o = ag__optim_new(ctx, params, n, AG__ADAM);
    if (o)
        o->adam = a;
    return o;
}

/* The same arithmetic for float and double: T is the element type. Each line
 * quotes the torch.optim line it does. */
#define AG__SGD_STEP(T)                                                                                                \
    static void ag__sgd_step_##T(const ag_sgd_opts *s, T *p, const T *g, T *buf, bool first, int64_t n) {              \
        const T wd = (T)s->weight_decay, mom = (T)s->momentum, damp1 = (T)(1 - s->dampening);                          \
        const T neg_lr = (T)-s->lr;                                                                                    \
        for (int64_t i = 0; i < n; i++) {                                                                              \
            T d = g[i];                                                                                                \
            if (wd != 0)                                                                                               \
                d = d + p[i] * wd; /* d_p = d_p.add(param, alpha=weight_decay) */                                      \
            if (buf) {                                                                                                 \
                if (first)                                                                                             \
                    buf[i] = d; /* buf = torch.clone(d_p) */                                                           \
                else                                                                                                   \
                    buf[i] = buf[i] * mom + d * damp1; /* buf.mul_(momentum).add_(d_p, 1 - damp) */                    \
                d = s->nesterov ? d + buf[i] * mom : buf[i];                                                           \
            }                                                                                                          \
            p[i] = p[i] + d * neg_lr; /* param.add_(d_p, alpha=-lr) */                                                 \
        }                                                                                                              \
    }
AG__SGD_STEP(float)
AG__SGD_STEP(double)

/* One element of Adam; WD and AMS are constants at each use, so the loops
 * below carry no per-element branch on the options. */
#define AG__ADAM_ELEM(T, SQRT, WD, AMS)                                                                                \
    do {                                                                                                               \
        T gi = g[i];                                                                                                   \
        if (WD)                                                                                                        \
            gi = gi + p[i] * wd;             /* grad = grad.add(param, alpha=wd) */                                    \
        m[i] = m[i] * b1 + gi * one_b1;      /* exp_avg.mul_(beta1).add_(grad, 1-b1) */                                \
        v[i] = v[i] * b2 + gi * gi * one_b2; /* exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2) */                            \
        T vv = v[i];                                                                                                   \
        if (AMS) {                                                                                                     \
            vmax[i] = vmax[i] > vv ? vmax[i] : vv; /* torch.maximum(max_exp_avg_sq, ...) */                            \
            vv = vmax[i];                                                                                              \
        }                                                                                                              \
        T denom = SQRT(vv) / bc2_sqrt + eps;          /* (v.sqrt() / bc2_sqrt).add_(eps) */                            \
        p[i] = p[i] + neg_step_size * (m[i] / denom); /* param.addcdiv_(m, denom, -step_size) */                       \
    } while (0)

#define AG__ADAM_STEP(T, SQRT)                                                                                         \
    static void ag__adam_step_##T(const ag_adam_opts *a, int64_t step, T *restrict p, const T *restrict g,             \
                                  T *restrict m, T *restrict v, T *restrict vmax, int64_t n) {                         \
        const T b1 = (T)a->beta1, b2 = (T)a->beta2, wd = (T)a->weight_decay, eps = (T)a->eps;                          \
        const T one_b1 = (T)(1 - a->beta1), one_b2 = (T)(1 - a->beta2);                                                \
        double bc1 = 1 - pow(a->beta1, (double)step), bc2 = 1 - pow(a->beta2, (double)step);                           \
        const T neg_step_size = (T)(-(a->lr / bc1));                                                                   \
        const T bc2_sqrt = (T)sqrt(bc2);                                                                               \
        if (vmax) {                                                                                                    \
            for (int64_t i = 0; i < n; i++)                                                                            \
                AG__ADAM_ELEM(T, SQRT, wd != 0, 1);                                                                    \
        } else if (wd != 0) {                                                                                          \
            for (int64_t i = 0; i < n; i++)                                                                            \
                AG__ADAM_ELEM(T, SQRT, 1, 0);                                                                          \
        } else {                                                                                                       \
            for (int64_t i = 0; i < n; i++)                                                                            \
                AG__ADAM_ELEM(T, SQRT, 0, 0);                                                                          \
        }                                                                                                              \
    }
AG__ADAM_STEP(float, sqrtf)
AG__ADAM_STEP(double, sqrt)

int ag_optim_step(ag_optim *o) {
    if (!o) /* most often its creation failed: keep that error */
        return ag__null_object("ag_optim_step", "optimizer");
    for (int i = 0; i < o->n; i++) {
        ag_tensor *p = o->params[i], *g = p->grad;
        if (!g)
            continue;
        bool f32 = p->dtype == AG_FLOAT32;
        if (o->kind == AG__SGD) {
            bool first = false;
            if (o->sgd.momentum != 0 && !o->buf1[i]) {
                if (!(o->buf1[i] = ag__tensor_like(p->ctx, p)))
                    return AG_ENOMEM;
                first = true;
            }
            if (f32)
                ag__sgd_step_float(&o->sgd, p->data, g->data, o->buf1[i] ? o->buf1[i]->data : NULL, first, p->numel);
            else
                ag__sgd_step_double(&o->sgd, p->data, g->data, o->buf1[i] ? o->buf1[i]->data : NULL, first, p->numel);
        } else {
            if (o->adam.amsgrad && !o->buf3[i] && !(o->buf3[i] = ag_zeros(p->ctx, p->dtype, p->ndim, p->shape)))
                return AG_ENOMEM;
            int64_t step = ++o->steps[i];
            void *vmax = o->buf3[i] ? o->buf3[i]->data : NULL;
            if (f32)
                ag__adam_step_float(&o->adam, step, p->data, g->data, o->buf1[i]->data, o->buf2[i]->data, vmax,
                                    p->numel);
            else
                ag__adam_step_double(&o->adam, step, p->data, g->data, o->buf1[i]->data, o->buf2[i]->data, vmax,
                                     p->numel);
        }
        ag__bump_version(p); /* an in-place change, as param.add_ is */
    }
    return 0;
}

int ag_zero_grads(ag_tensor *const *params, int n) {
    if (!params || n < 0)
        return ag__error(AG_EINVAL, "ag_zero_grads: bad parameter list");
    for (int i = 0; i < n; i++) {
        int rc = ag_zero_grad(params[i]);
        if (rc)
            return rc;
    }
    return 0;
}

int ag_optim_zero_grad(ag_optim *o) {
    if (!o)
        return ag__null_object("ag_optim_zero_grad", "optimizer");
    return ag_zero_grads(o->params, o->n);
}
