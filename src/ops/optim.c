/* Optimizers: SGD (momentum, dampening, Nesterov, weight decay) and Adam
 * (with AMSGrad), updating parameters in place with torch.optim's
 * arithmetic (optim_kernels.inc). A step cuts its parameters into chunks of
 * a fixed size and runs them over the pool when there are enough elements;
 * no element's update reads another's, so the result is the same at every
 * thread count. */
#include "core/internal.h"
#include "core/tuning.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

/* ==== The kernels ===========================================================
 * One parameter's scalars for a step, in double: a kernel converts them to
 * its dtype, as PyTorch converts a Python number. */

typedef struct ag__sgd_k {
    double weight_decay, momentum, one_minus_dampening, neg_lr;
    bool nesterov, first; /* first: the step that makes the momentum buffer */
} ag__sgd_k;

typedef struct ag__adam_k {
    double beta1, beta2, one_minus_beta1, one_minus_beta2, weight_decay, eps;
    double bias_correction2_sqrt, neg_step_size;
} ag__adam_k;

#define AG__OPT_CAT_(a, b) a##b
#define AG__OPT_CAT(a, b) AG__OPT_CAT_(a, b)

/* The build's own instruction set. Without hardware FMA (x86-64 before
 * AVX2) fma() is libm's, exact and slow: the AVX2 copies below run instead
 * wherever the CPU has them. */
#define TARGET
#define T float
#define K(name) AG__OPT_CAT(name, _f32)
#define FMA fmaf
#define SQRT sqrtf
#include "ops/optim_kernels.inc"
#undef T
#undef K
#undef FMA
#undef SQRT
#define T double
#define K(name) AG__OPT_CAT(name, _f64)
#define FMA fma
#define SQRT sqrt
#include "ops/optim_kernels.inc"
#undef T
#undef K
#undef FMA
#undef SQRT
#undef TARGET

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define AG__OPTIM_AVX2 1
#define TARGET __attribute__((target("avx2,fma")))
#define T float
#define K(name) AG__OPT_CAT(name, _f32_avx2)
#define FMA fmaf
#define SQRT sqrtf
#include "ops/optim_kernels.inc"
#undef T
#undef K
#undef FMA
#undef SQRT
#define T double
#define K(name) AG__OPT_CAT(name, _f64_avx2)
#define FMA fma
#define SQRT sqrt
#include "ops/optim_kernels.inc"
#undef T
#undef K
#undef FMA
#undef SQRT
#undef TARGET
#endif

/* The kernels of one instruction set. */
typedef struct ag__optim_kernels {
    void (*sgd_f32)(const ag__sgd_k *k, float *p, const float *g, float *buf, int64_t lo, int64_t hi);
    void (*sgd_f64)(const ag__sgd_k *k, double *p, const double *g, double *buf, int64_t lo, int64_t hi);
    void (*adam_f32)(const ag__adam_k *k, float *p, const float *g, float *m, float *v, float *vmax, int64_t lo,
                     int64_t hi);
    void (*adam_f64)(const ag__adam_k *k, double *p, const double *g, double *m, double *v, double *vmax, int64_t lo,
                     int64_t hi);
} ag__optim_kernels;

static const ag__optim_kernels ag__optim_base = {ag__sgd_f32, ag__sgd_f64, ag__adam_f32, ag__adam_f64};
#ifdef AG__OPTIM_AVX2
static const ag__optim_kernels ag__optim_avx2 = {ag__sgd_f32_avx2, ag__sgd_f64_avx2, ag__adam_f32_avx2,
                                                 ag__adam_f64_avx2};
#endif

/* Both sets give the same bits (fma is exact in both): the choice is speed
 * only, made once per process. */
static const ag__optim_kernels *_Atomic ag__optim_chosen;
static _Atomic bool ag__optim_base_only;

static const ag__optim_kernels *ag__optim_kernels_get(void) {
    if (atomic_load_explicit(&ag__optim_base_only, memory_order_relaxed))
        return &ag__optim_base;
    const ag__optim_kernels *k = atomic_load_explicit(&ag__optim_chosen, memory_order_relaxed);
    if (AG__LIKELY(k))
        return k;
    k = &ag__optim_base;
#ifdef AG__OPTIM_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        k = &ag__optim_avx2;
#endif
    atomic_store_explicit(&ag__optim_chosen, k, memory_order_relaxed);
    return k;
}

/* For tests: the build's own kernels even where the AVX2 ones would run. */
void ag__optim_use_base_kernels(bool on);
void ag__optim_use_base_kernels(bool on) { atomic_store_explicit(&ag__optim_base_only, on, memory_order_relaxed); }

/* ==== Optimizers ============================================================ */

typedef enum { AG__SGD, AG__ADAM } ag__optim_kind;

/* Elements [lo, hi) of parameter `param`. */
typedef struct ag__optim_chunk {
    int param;
    int64_t lo, hi;
} ag__optim_chunk;

struct ag_optim {
    ag__optim_kind kind;
    int n;
    ag_tensor **params;
    ag_tensor **buf1; /* SGD with momentum: momentum_buffer; Adam: exp_avg */
    ag_tensor **buf2; /* Adam: exp_avg_sq */
    ag_tensor **buf3; /* Adam with AMSGrad: max_exp_avg_sq */
    int64_t *steps;   /* per parameter: the steps it took with a .grad */
    /* A tensor given twice has one state, kept by its first entry and
     * stepped by each, as torch.optim keys state by tensor: buffers and
     * the step count of entry i are those of entry state_of[i]. */
    int *state_of;
    ag_sgd_opts sgd;
    ag_adam_opts adam;
    /* A step's work, sized at creation so that a step allocates nothing:
     * per parameter its scalars, and the chunks of all parameters. */
    ag__sgd_k *sgd_k;
    ag__adam_k *adam_k;
    ag__optim_chunk *chunks;
    /* The parameters' storages, sorted; shared: two parameters share one
     * (then steps run in order on one thread, as torch.optim's loop). */
    const ag__storage **stores;
    bool shared;
};

static int ag__cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t) * (const void *const *)a, y = (uintptr_t) * (const void *const *)b;
    return (x > y) - (x < y);
}

/* Whether some .grad shares its storage with another parameter than its
 * own: a chunk of one would then read what a chunk of the other writes. */
static bool ag__optim_grads_alias(const ag_optim *o) {
    for (int i = 0; i < o->n; i++) {
        const ag_tensor *p = o->params[i];
        if (!p->grad || p->grad->storage == p->storage)
            continue;
        const void *key = p->grad->storage;
        if (bsearch(&key, o->stores, (size_t)o->n, sizeof *o->stores, ag__cmp_ptr))
            return true;
    }
    return false;
}

/* Parameter i's state: its own buffers, or those of an earlier entry of
 * the same tensor (a parameter listed twice has one state). */
static bool ag__optim_param_state(ag_optim *o, ag_ctx *ctx, ag_tensor *const *params, int i) {
    ag_tensor *p = params[i];
    o->params[i] = p;
    o->steps[i] = 0;
    o->state_of[i] = i;
    for (int j = 0; o->shared && j < i && o->state_of[i] == i; j++)
        if (params[j] == p)
            o->state_of[i] = j;
    if (o->state_of[i] != i) {
        o->buf1[i] = o->buf1[o->state_of[i]];
        o->buf2[i] = o->buf2[o->state_of[i]];
        o->buf3[i] = o->buf3[o->state_of[i]];
        return true;
    }
    o->buf1[i] = o->buf2[i] = o->buf3[i] = NULL;
    if (o->kind == AG__SGD)
        return o->sgd.momentum == 0 || (o->buf1[i] = ag__tensor_like(ctx, p));
    if (!(o->buf1[i] = ag_zeros(ctx, p->dtype, p->ndim, p->shape)) ||
        !(o->buf2[i] = ag_zeros(ctx, p->dtype, p->ndim, p->shape)))
        return false;
    return !o->adam.amsgrad || (o->buf3[i] = ag_zeros(ctx, p->dtype, p->ndim, p->shape));
}

/* State is made here, not on a parameter's first step as torch.optim does
 * (same values: zeros, or a momentum buffer the first step writes whole),
 * so that a step cannot fail half-way for want of memory. */
static ag_optim *ag__optim_new(ag_ctx *ctx, ag_tensor *const *params, int n, ag__optim_kind kind,
                               const ag_sgd_opts *sgd, const ag_adam_opts *adam) {
    if (!ctx)
        return ag__error_null(AG_EINVAL, "optimizer: context is NULL");
    if (!params || n <= 0)
        return ag__error_null(AG_EINVAL, "optimizer got an empty parameter list");
    int64_t nchunks = 0;
    for (int i = 0; i < n; i++) {
        if (!params[i])
            return ag__null_arg("optimizer");
        if (params[i]->grad_fn)
            return ag__error_null(AG_EINVAL, "can't optimize a non-leaf Tensor");
        if (!params[i]->contiguous || params[i]->storage->ctx != params[i]->ctx) /* the steps run flat */
            return ag__error_null(AG_EUNSUPPORTED,
                                  "optimizer: parameter %d is a non-contiguous view or a view of "
                                  "another context's tensor: optimize its base",
                                  i);
        nchunks += (params[i]->numel + AG__OPTIM_CHUNK - 1) / AG__OPTIM_CHUNK;
    }
    ag_optim *o = ag__ctx_alloc(ctx, sizeof *o);
    if (!o)
        return NULL;
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->n = n;
    if (sgd)
        o->sgd = *sgd;
    if (adam)
        o->adam = *adam;
    size_t ptrs = (size_t)n * sizeof(ag_tensor *);
    o->params = ag__ctx_alloc(ctx, ptrs);
    o->buf1 = ag__ctx_alloc(ctx, ptrs);
    o->buf2 = ag__ctx_alloc(ctx, ptrs);
    o->buf3 = ag__ctx_alloc(ctx, ptrs);
    o->steps = ag__ctx_alloc(ctx, (size_t)n * sizeof(int64_t));
    if (kind == AG__SGD)
        o->sgd_k = ag__ctx_alloc(ctx, (size_t)n * sizeof *o->sgd_k);
    else
        o->adam_k = ag__ctx_alloc(ctx, (size_t)n * sizeof *o->adam_k);
    o->chunks = ag__ctx_alloc(ctx, (size_t)(nchunks > 0 ? nchunks : 1) * sizeof *o->chunks);
    o->stores = ag__ctx_alloc(ctx, (size_t)n * sizeof *o->stores);
    o->state_of = ag__ctx_alloc(ctx, (size_t)n * sizeof *o->state_of);
    if (!o->params || !o->buf1 || !o->buf2 || !o->buf3 || !o->steps || (!o->sgd_k && !o->adam_k) || !o->chunks ||
        !o->stores || !o->state_of)
        return NULL;
    for (int i = 0; i < n; i++)
        o->stores[i] = params[i]->storage;
    qsort(o->stores, (size_t)n, sizeof *o->stores, ag__cmp_ptr);
    for (int i = 1; i < n; i++)
        o->shared |= o->stores[i] == o->stores[i - 1];
    for (int i = 0; i < n; i++)
        if (!ag__optim_param_state(o, ctx, params, i))
            return NULL;
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
    return ag__optim_new(ctx, params, n, AG__SGD, opts, NULL);
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
    return ag__optim_new(ctx, params, n, AG__ADAM, NULL, &a);
}

/* The scalars of parameter i's next step (its step count already
 * advanced), computed as torch.optim computes them in Python (double). */
static void ag__optim_scalars(ag_optim *o, int i) {
    if (o->kind == AG__SGD) {
        const ag_sgd_opts *s = &o->sgd;
        o->sgd_k[i] = (ag__sgd_k){.weight_decay = s->weight_decay,
                                  .momentum = s->momentum,
                                  .one_minus_dampening = 1 - s->dampening,
                                  .neg_lr = -s->lr,
                                  .nesterov = s->nesterov,
                                  .first = o->steps[o->state_of[i]] == 1};
        return;
    }
    const ag_adam_opts *a = &o->adam;
    const double step = (double)o->steps[o->state_of[i]];
    const double bias_correction1 = 1 - pow(a->beta1, step); /* 1 - beta1 ** step */
    const double bias_correction2 = 1 - pow(a->beta2, step);
    o->adam_k[i] = (ag__adam_k){.beta1 = a->beta1,
                                .beta2 = a->beta2,
                                .one_minus_beta1 = 1 - a->beta1,
                                .one_minus_beta2 = 1 - a->beta2,
                                .weight_decay = a->weight_decay,
                                .eps = a->eps,
                                .bias_correction2_sqrt = sqrt(bias_correction2),
                                .neg_step_size = -(a->lr / bias_correction1)};
}

typedef struct ag__optim_job {
    const ag_optim *o;
    const ag__optim_kernels *kern;
} ag__optim_job;

/* Chunks [lo, hi) of a step (an ag__range_fn). */
static void ag__optim_run_chunks(void *arg, int64_t lo, int64_t hi) {
    const ag__optim_job *j = arg;
    const ag_optim *o = j->o;
    for (int64_t c = lo; c < hi; c++) {
        const ag__optim_chunk ch = o->chunks[c];
        const int i = ch.param;
        ag_tensor *p = o->params[i];
        void *g = p->grad->data, *b1 = o->buf1[i] ? o->buf1[i]->data : NULL;
        if (o->kind == AG__SGD) {
            if (p->dtype == AG_FLOAT32)
                j->kern->sgd_f32(&o->sgd_k[i], p->data, g, b1, ch.lo, ch.hi);
            else
                j->kern->sgd_f64(&o->sgd_k[i], p->data, g, b1, ch.lo, ch.hi);
        } else {
            void *b2 = o->buf2[i]->data, *b3 = o->buf3[i] ? o->buf3[i]->data : NULL;
            if (p->dtype == AG_FLOAT32)
                j->kern->adam_f32(&o->adam_k[i], p->data, g, b1, b2, b3, ch.lo, ch.hi);
            else
                j->kern->adam_f64(&o->adam_k[i], p->data, g, b1, b2, b3, ch.lo, ch.hi);
        }
    }
}

int ag_optim_step(ag_optim *o) {
    if (!o) /* most often its creation failed: keep that error */
        return ag__null_object("ag_optim_step", "optimizer");
    int64_t nchunks = 0, elems = 0;
    for (int i = 0; i < o->n; i++) {
        const ag_tensor *p = o->params[i];
        if (!p->grad)
            continue;
        o->steps[o->state_of[i]]++;
        ag__optim_scalars(o, i);
        for (int64_t lo = 0; lo < p->numel; lo += AG__OPTIM_CHUNK)
            o->chunks[nchunks++] =
                (ag__optim_chunk){i, lo, p->numel - lo < AG__OPTIM_CHUNK ? p->numel : lo + AG__OPTIM_CHUNK};
        elems += p->numel;
    }
    ag__optim_job job = {o, ag__optim_kernels_get()};
    if (elems >= AG__PAR_OPTIM_MIN && !o->shared && !ag__optim_grads_alias(o))
        ag__parallel_for(nchunks, 1, ag__optim_run_chunks, &job);
    else
        ag__optim_run_chunks(&job, 0, nchunks);
    for (int i = 0; i < o->n; i++)
        if (o->params[i]->grad)
            ag__bump_version(o->params[i]); /* an in-place change, as param.add_ is */
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
