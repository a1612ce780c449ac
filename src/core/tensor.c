/* Tensors: creation in a context's arena, element access, and the autograd
 * state a tensor carries (requires_grad, .grad, hooks, retain_grad, detach).
 * A tensor, its storage record and its data are one arena allocation. */
#include "core/internal.h"

#include "core/checked.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

/* One arena block holds a tensor header, its storage record and (pad
 * bytes of alignment later) its data: sets the storage record up and
 * returns the header, which the caller fills in. */
static ag_tensor *ag__carve(char *mem, ag_ctx *ctx, size_t nbytes, size_t pad) {
    ag__storage *st = (ag__storage *)(mem + sizeof(ag_tensor));
    uintptr_t data = (uintptr_t)(mem + AG__STRUCTS_SIZE);
    if (pad)
        data = (data + AG__ALIGN - 1) & ~(uintptr_t)(AG__ALIGN - 1);
    st->data = (void *)data;
    st->nbytes = nbytes;
    st->ctx = ctx;
    atomic_init(&st->own_version, 0);
    st->version = &st->own_version;
    return (ag_tensor *)mem;
}

void ag__contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        stride[d] = s;
        /* the product only matters while it fits: an empty tensor's
         * trailing products may not (core/checked.h), and then no
         * element is ever addressed */
        if (!ag__mul_ok(s, shape[d] > 0 ? shape[d] : 1, &s))
            s = 0;
    }
}

bool ag__is_contiguous(const ag_tensor *t) {
    if (t->numel <= 1)
        return true;
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] == 1)
            continue;
        if (t->stride[d] != s)
            return false;
        s *= t->shape[d];
    }
    return true;
}

/* ---- Limits -------------------------------------------------------------------
 * The largest tensor data agrad allocates, in bytes. 0: not known yet (read
 * from AG_MAX_TENSOR_BYTES on first use, else the default). */
static _Atomic size_t ag__max_tensor_bytes;

/* What the address space allows: the largest object C can index
 * (PTRDIFF_MAX), or the process's address-space limit when it has one. */
static size_t ag__default_max_tensor_bytes(void) {
    size_t cap = PTRDIFF_MAX;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < cap)
        cap = (size_t)rl.rlim_cur;
    return cap;
}

/* "1048576", "64k", "256M", "2G": bytes, or 0 when the text is not a size. */
static size_t ag__parse_bytes(const char *s) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return 0;
    unsigned shift = 0;
    if (*end) {
        switch (*end) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        case 't':
        case 'T':
            shift = 40;
            break;
        default:
            return 0;
        }
        if (end[1] != '\0')
            return 0;
    }
    if (v > (unsigned long long)(PTRDIFF_MAX >> shift))
        return PTRDIFF_MAX;
    return (size_t)(v << shift);
}

static size_t ag__env_max_tensor_bytes(void) {
    const char *env = getenv("AG_MAX_TENSOR_BYTES");
    size_t v = env && *env ? ag__parse_bytes(env) : 0;
    return v ? v : ag__default_max_tensor_bytes();
}

size_t ag_get_max_tensor_bytes(void) {
    size_t cap = atomic_load_explicit(&ag__max_tensor_bytes, memory_order_relaxed);
    if (AG__LIKELY(cap))
        return cap;
    size_t expected = 0;
    atomic_compare_exchange_strong_explicit(&ag__max_tensor_bytes, &expected, ag__env_max_tensor_bytes(),
                                            memory_order_relaxed, memory_order_relaxed);
    return atomic_load_explicit(&ag__max_tensor_bytes, memory_order_relaxed);
}

size_t ag_set_max_tensor_bytes(size_t bytes) {
    size_t prev = ag_get_max_tensor_bytes();
    if (bytes > PTRDIFF_MAX) /* a tensor's arena block must stay indexable */
        bytes = PTRDIFF_MAX;
    atomic_store_explicit(&ag__max_tensor_bytes, bytes ? bytes : ag__env_max_tensor_bytes(), memory_order_relaxed);
    return prev;
}

int ag__check_shape(ag_dtype dt, int ndim, const int64_t *shape, int64_t *numel_out, size_t *nbytes_out) {
    if (ndim < 0 || ndim > AG_MAX_DIMS)
        return ag__error(AG_EINVAL, "ndim %d is out of range (0 to %d)", ndim, AG_MAX_DIMS);
    if (ndim > 0 && !shape)
        return ag__error(AG_EINVAL, "shape is NULL for a %d-dimensional tensor", ndim);
    char s[AG_MAX_DIMS * 22 + 3];
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) {
            ag__shape_str(s, sizeof s, ndim, shape);
            return ag__error(AG_EINVAL, "Trying to create tensor with negative dimension %" PRId64 ": %s", shape[d], s);
        }
    }
    int64_t numel;
    size_t nbytes;
    if (!ag__numel_ok(ndim, shape, &numel) || !ag__size_mul_ok((size_t)numel, ag__dtype_size(dt), &nbytes) ||
        nbytes > PTRDIFF_MAX) {
        ag__shape_str(s, sizeof s, ndim, shape);
        return ag__error(AG_ENOMEM, "Storage size calculation overflowed with sizes=%s", s);
    }
    size_t cap = ag_get_max_tensor_bytes();
    if (nbytes > cap)
        return ag__error(AG_ENOMEM,
                         "can't allocate memory: you tried to allocate %zu bytes, over the limit of %zu bytes for "
                         "one tensor (ag_set_max_tensor_bytes, AG_MAX_TENSOR_BYTES)",
                         nbytes, cap);
    *numel_out = numel;
    *nbytes_out = nbytes;
    return 0;
}

static int ag__check_dtype(ag_dtype dt) {
    if ((unsigned)dt >= AG_DTYPE_COUNT)
        return ag__error(AG_EDTYPE, "unsupported dtype %d (agrad has AG_FLOAT32 and AG_FLOAT64)", (int)dt);
    return 0;
}

/* Everything a new tensor's arguments must satisfy, checked before any
 * allocation: a refused tensor leaves its context as it was. */
static int ag__check_new(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape, int64_t *numel, size_t *nbytes) {
    if (!ctx)
        return ag__error(AG_EINVAL, "context is NULL");
    if (ag__check_dtype(dt))
        return AG_EDTYPE;
    return ag__check_shape(dt, ndim, shape, numel, nbytes);
}

static ag_tensor *ag__tensor_alloc(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape, bool shared) {
    int64_t numel;
    size_t nbytes;
    if (ag__check_new(ctx, dt, ndim, shape, &numel, &nbytes))
        return NULL;
    size_t pad = nbytes < AG__SMALL_DATA ? 0 : AG__ALIGN - AG__MIN_ALIGN;
    /* nbytes <= PTRDIFF_MAX (the cap), so the header and pad cannot wrap */
    size_t block = AG__STRUCTS_SIZE + pad + nbytes;
    char *mem = shared ? ag__ctx_alloc_shared(ctx, block) : ag__ctx_alloc(ctx, block);
    if (!mem)
        return NULL;
    ag_tensor *t = ag__carve(mem, ctx, nbytes, pad);
    memset(t, 0, sizeof *t);
    ag__storage *st = (ag__storage *)(mem + sizeof(ag_tensor));
    t->ctx = ctx;
    t->storage = st;
    t->data = st->data;
    t->ndim = ndim;
    t->dtype = dt;
    t->numel = numel;
    t->contiguous = true;
    for (int d = 0; d < ndim; d++)
        t->shape[d] = shape[d];
    ag__contiguous_strides(ndim, shape, t->stride);
    return t;
}

ag_tensor *ag__tensor_new(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape) {
    return ag__tensor_alloc(ctx, dt, ndim, shape, false);
}

ag_tensor *ag__tensor_new_shared(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape) {
    return ag__tensor_alloc(ctx, dt, ndim, shape, true);
}

ag_tensor *ag__tensor_like(ag_ctx *ctx, const ag_tensor *t) {
    return ag__tensor_alloc(ctx, t->dtype, t->ndim, t->shape, false);
}

ag_tensor *ag__tensor_view(ag_ctx *ctx, const ag_tensor *base, int ndim, const int64_t *shape, const int64_t *stride,
                           int64_t offset) {
    int64_t numel;
    if (!ag__numel_ok(ndim, shape, &numel)) /* a transpose of an empty tensor can have such sizes */
        return ag__error_null(AG_ENOMEM, "numel: integer multiplication overflow");
    ag_tensor *t = ag__ctx_alloc(ctx, sizeof *t);
    if (!t)
        return NULL;
    const ag_tensor *root = base->base ? base->base : base;
    *t = (ag_tensor){.ctx = ctx,
                     .storage = base->storage,
                     .data = (char *)base->storage->data + (size_t)offset * ag__dtype_size(base->dtype),
                     .offset = offset,
                     .numel = numel,
                     .ndim = ndim,
                     .dtype = base->dtype,
                     .base = (ag_tensor *)root};
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    memcpy(t->stride, stride, (size_t)ndim * sizeof *stride);
    t->contiguous = ag__is_contiguous(t);
    t->view_no_grad = !ag__grad_enabled();
    return t;
}

ag_tensor *ag__tensor_alias(ag_ctx *ctx, const ag_tensor *base, int ndim, const int64_t *shape) {
    int64_t stride[AG_MAX_DIMS];
    ag__contiguous_strides(ndim, shape, stride);
    return ag__tensor_view(ctx, base, ndim, shape, stride, base->offset);
}

/* The engine's gradient buffers: like an existing (so valid) tensor, with
 * none of the argument checks and only the header fields set. Always
 * contiguous, whatever like's layout. */
ag_tensor *ag__tensor_in_block(void *block, ag_ctx *ctx, const ag_tensor *like) {
    size_t nbytes = (size_t)like->numel * ag__dtype_size(like->dtype);
    size_t pad = nbytes < AG__SMALL_DATA ? 0 : AG__ALIGN - AG__MIN_ALIGN;
    ag_tensor *t = ag__carve(block, ctx, nbytes, pad);
    ag__storage *st = (ag__storage *)((char *)block + sizeof(ag_tensor));
    *t = (ag_tensor){.ctx = ctx,
                     .storage = st,
                     .data = st->data,
                     .numel = like->numel,
                     .ndim = like->ndim,
                     .dtype = like->dtype,
                     .contiguous = true};
    memcpy(t->shape, like->shape, sizeof t->shape);
    ag__contiguous_strides(t->ndim, t->shape, t->stride);
    return t;
}

ag_tensor *ag__tensor_zeros_in_block(void *block, ag_ctx *ctx, const ag_tensor *like) {
    ag_tensor *t = ag__tensor_in_block(block, ctx, like);
    memset(t->data, 0, t->storage->nbytes);
    return t;
}

bool ag__same_shape(const ag_tensor *a, const ag_tensor *b) {
    if (a->ndim != b->ndim)
        return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

void ag__shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t off = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && off < n; d++)
        off += (size_t)snprintf(buf + off, n - off, d ? ", %" PRId64 : "%" PRId64, shape[d]);
    if (off < n)
        snprintf(buf + off, n - off, "]");
}

int ag__normalize_dim(int dim, int ndim, int *out) {
    int lo = ndim > 0 ? -ndim : -1, hi = ndim > 0 ? ndim - 1 : 0;
    if (dim < lo || dim > hi)
        return ag__error(AG_EINVAL, "Dimension out of range (expected to be in range of [%d, %d], but got %d)", lo, hi,
                         dim);
    *out = dim < 0 ? dim + (ndim > 0 ? ndim : 1) : dim;
    return 0;
}

/* ---- Creation ---------------------------------------------------------------- */

ag_tensor *ag_tensor_from(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape, const void *data) {
    int64_t numel;
    size_t nbytes;
    if (ag__check_new(ctx, dt, ndim, shape, &numel, &nbytes))
        return NULL;
    if (!data && numel > 0)
        return ag__error_null(AG_EINVAL, "ag_tensor_from: data is NULL");
    ag_tensor *t = ag__tensor_new(ctx, dt, ndim, shape);
    if (!t)
        return NULL;
    if (t->numel > 0)
        memcpy(t->data, data, t->storage->nbytes);
    return t;
}

ag_tensor *ag_full(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape, double value) {
    ag_tensor *t = ag__tensor_new(ctx, dt, ndim, shape);
    if (!t)
        return NULL;
    if (dt == AG_FLOAT32) {
        float v = (float)value, *p = t->data;
        for (int64_t i = 0; i < t->numel; i++)
            p[i] = v;
    } else {
        double *p = t->data;
        for (int64_t i = 0; i < t->numel; i++)
            p[i] = value;
    }
    return t;
}

ag_tensor *ag_zeros(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape) {
    ag_tensor *t = ag__tensor_new(ctx, dt, ndim, shape);
    if (t)
        memset(t->data, 0, t->storage->nbytes);
    return t;
}

ag_tensor *ag_ones(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape) {
    return ag_full(ctx, dt, ndim, shape, 1.0);
}

ag_tensor *ag_scalar(ag_ctx *ctx, ag_dtype dt, double value) { return ag_full(ctx, dt, 0, NULL, value); }

/* ---- Views across contexts ---------------------------------------------------
 * A view whose header is in another context than its storage is linked
 * here until one of the two contexts is reset or freed: the storage's
 * context going first detaches the view (it gets the dead storage record
 * below, so it points at nothing freed), the view's context going first
 * just drops the link. The link record lives in the view's context; the
 * list is global and short (views across contexts that are alive), under
 * one lock that only contexts with such views ever take. */
typedef struct ag__link {
    ag_tensor *view;
    struct ag__link *prev, *next;
} ag__link;

static pthread_mutex_t ag__links_lock = PTHREAD_MUTEX_INITIALIZER;
static ag__link *ag__links;
static _Atomic int64_t ag__nlinks;
/* data NULL, ctx NULL: what a detached view points at */
static ag__storage ag__dead_storage = {.version = &ag__dead_storage.own_version};

int ag__view_link(ag_tensor *view) {
    if (view->ctx == view->storage->ctx)
        return 0;
    ag__link *l = ag__ctx_alloc(view->ctx, sizeof *l);
    if (!l)
        return AG_ENOMEM;
    pthread_mutex_lock(&ag__links_lock);
    *l = (ag__link){.view = view, .next = ag__links};
    if (ag__links)
        ag__links->prev = l;
    ag__links = l;
    atomic_fetch_add_explicit(&ag__nlinks, 1, memory_order_relaxed);
    pthread_mutex_unlock(&ag__links_lock);
    return 0;
}

void ag__views_release(ag_ctx *ctx) {
    if (AG__LIKELY(atomic_load_explicit(&ag__nlinks, memory_order_relaxed) == 0))
        return;
    pthread_mutex_lock(&ag__links_lock);
    for (ag__link *l = ag__links, *next; l; l = next) {
        next = l->next;
        ag_tensor *v = l->view;
        if (v->storage->ctx != ctx && v->ctx != ctx)
            continue;
        if (v->ctx != ctx) { /* the storage goes, the view stays: detach it */
            v->storage = &ag__dead_storage;
            v->data = NULL;
        }
        if (l->prev)
            l->prev->next = l->next;
        else
            ag__links = l->next;
        if (l->next)
            l->next->prev = l->prev;
        atomic_fetch_sub_explicit(&ag__nlinks, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&ag__links_lock);
}

int ag__check_alive(const ag_tensor *t, const char *fn) {
    if (AG__LIKELY(t->storage != &ag__dead_storage))
        return 0;
    return ag__error(AG_ESTATE,
                     "%s: the tensor is a view whose base's memory was freed (the context of its base was reset "
                     "or freed before the view's)",
                     fn);
}

/* ---- Reading ------------------------------------------------------------------ */

int ag_ndim(const ag_tensor *t) {
    if (!t)
        return ag__null_code("ag_ndim");
    return t->ndim;
}

int64_t ag_size(const ag_tensor *t, int dim) {
    if (!t)
        return ag__null_code("ag_size");
    int d = 0;
    if (ag__normalize_dim(dim, t->ndim, &d))
        return AG_EINVAL;
    return t->ndim == 0 ? 1 : t->shape[d];
}

int64_t ag_numel(const ag_tensor *t) {
    if (!t)
        return ag__null_code("ag_numel");
    return t->numel;
}

ag_dtype ag_tensor_dtype(const ag_tensor *t) {
    if (!t) {
        ag__null_code("ag_tensor_dtype");
        return AG_DTYPE_COUNT;
    }
    return t->dtype;
}

double ag_item(const ag_tensor *t) {
    if (!t) {
        ag__null_arg("ag_item");
        return NAN;
    }
    if (t->numel != 1) {
        ag__error(AG_EINVAL, "a Tensor with %" PRId64 " elements cannot be converted to Scalar", t->numel);
        return NAN;
    }
    if (ag__check_alive(t, "ag_item"))
        return NAN;
    return ag__load(t, 0);
}

double ag_get(const ag_tensor *t, int64_t i) {
    if (!t) {
        ag__null_arg("ag_get");
        return NAN;
    }
    if (i < 0 || i >= t->numel) {
        ag__error(AG_EINVAL, "index %" PRId64 " is out of bounds for a tensor with %" PRId64 " elements", i, t->numel);
        return NAN;
    }
    if (ag__check_alive(t, "ag_get"))
        return NAN;
    return ag__load(t, i);
}

const void *ag_data_ptr(const ag_tensor *t) {
    if (!t)
        return ag__null_arg("ag_data_ptr");
    if (ag__check_alive(t, "ag_data_ptr"))
        return NULL;
    if (!t->contiguous)
        return ag__error_null(AG_EINVAL, "ag_data_ptr: the tensor is a non-contiguous view; use ag_contiguous() for a "
                                         "contiguous copy, or ag_copy_to()");
    return t->data;
}

void *ag_mutable_data_ptr(ag_tensor *t) {
    if (!t)
        return ag__null_arg("ag_mutable_data_ptr");
    if (ag__check_alive(t, "ag_mutable_data_ptr"))
        return NULL;
    if (!t->contiguous)
        return ag__error_null(AG_EINVAL, "ag_mutable_data_ptr: the tensor is a non-contiguous view; write through "
                                         "in-place ops, or into ag_contiguous() of it");
    ag__bump_version(t);
    return t->data;
}

/* The innermost row of a gather: n elements stepping by st in src. */
static void ag__gather_row(const char *src, int64_t n, int64_t st, ag_dtype from, char *dst, ag_dtype to) {
    if (from == AG_FLOAT32 && to == AG_FLOAT32) {
        const float *s = (const float *)src;
        for (int64_t i = 0; i < n; i++)
            ((float *)dst)[i] = s[i * st];
    } else if (from == AG_FLOAT64 && to == AG_FLOAT64) {
        const double *s = (const double *)src;
        for (int64_t i = 0; i < n; i++)
            ((double *)dst)[i] = s[i * st];
    } else if (from == AG_FLOAT32) {
        const float *s = (const float *)src;
        for (int64_t i = 0; i < n; i++)
            ((double *)dst)[i] = s[i * st];
    } else {
        const double *s = (const double *)src;
        for (int64_t i = 0; i < n; i++)
            ((float *)dst)[i] = (float)s[i * st];
    }
}

/* Dimension d of a walk over t's elements in row-major order, written one
 * after another from *dst on. */
static void ag__gather_dim(const ag_tensor *t, int d, const char *src, char **dst, ag_dtype dt) {
    size_t es = ag__dtype_size(t->dtype);
    int64_t n = t->shape[d], st = t->stride[d];
    if (d == t->ndim - 1) {
        ag__gather_row(src, n, st, t->dtype, *dst, dt);
        *dst += (size_t)n * ag__dtype_size(dt);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        ag__gather_dim(t, d + 1, src + (size_t)(i * st) * es, dst, dt);
}

void ag__gather(const ag_tensor *t, void *dst, ag_dtype dt) {
    if (t->numel == 0)
        return;
    if (t->contiguous && dt == t->dtype) {
        memcpy(dst, t->data, (size_t)t->numel * ag__dtype_size(dt));
        return;
    }
    char *p = dst;
    if (t->ndim == 0 || t->contiguous)
        ag__gather_row(t->data, t->numel, 1, t->dtype, p, dt);
    else
        ag__gather_dim(t, 0, t->data, &p, dt);
}

int ag_copy_to(const ag_tensor *t, void *out, ag_dtype out_dtype) {
    if (!t)
        return ag__null_code("ag_copy_to");
    if (!out)
        return ag__error(AG_EINVAL, "ag_copy_to: out is NULL");
    if (ag__check_dtype(out_dtype))
        return AG_EDTYPE;
    if (ag__check_alive(t, "ag_copy_to"))
        return AG_ESTATE;
    ag__gather(t, out, out_dtype);
    return 0;
}

bool ag_is_contiguous(const ag_tensor *t) {
    if (!t) {
        ag__null_arg("ag_is_contiguous");
        return false;
    }
    return t->contiguous;
}

int64_t ag_stride(const ag_tensor *t, int dim) {
    if (!t)
        return ag__null_code("ag_stride");
    int d = 0;
    if (ag__normalize_dim(dim, t->ndim, &d))
        return AG_EINVAL;
    return t->ndim == 0 ? 1 : t->stride[d];
}

uint32_t ag_version(const ag_tensor *t) {
    if (!t) {
        ag__null_arg("ag_version");
        return 0;
    }
    return ag__version_of(t);
}

/* ---- Autograd state ------------------------------------------------------------- */

bool ag_requires_grad(const ag_tensor *t) { return t && t->requires_grad; }
bool ag_is_leaf(const ag_tensor *t) { return t && t->grad_fn == NULL; }

int ag_requires_grad_(ag_tensor *t, bool on) {
    if (!t)
        return ag__null_code("ag_requires_grad_");
    if (t->grad_fn) {
        if (!on)
            return ag__error(AG_ESTATE, "you can only change requires_grad flags of leaf variables. If you want to "
                                        "use a computed variable in a subgraph that doesn't require differentiation "
                                        "use var_no_grad = var.detach().");
        return 0;
    }
    if (on && !t->grad_accumulator) {
        /* Created here, on the thread that owns t's context, so that graphs
         * built on other threads only ever read it. */
        t->requires_grad = true;
        if (!ag__grad_accumulator(t)) {
            t->requires_grad = false;
            return ag_last_status();
        }
    }
    t->requires_grad = on;
    return 0;
}

ag_tensor *ag_grad(const ag_tensor *t) {
    if (!t)
        return ag__null_arg("ag_grad");
    return t->grad;
}

int ag_set_grad(ag_tensor *t, ag_tensor *g) {
    if (!t)
        return ag__null_code("ag_set_grad");
    if (g == t)
        return ag__error(AG_EINVAL, "can't assign Variable as its own grad");
    if (g) {
        if (g->dtype != t->dtype)
            return ag__error(AG_EDTYPE, "assigned grad has data of a different type");
        if (!ag__same_shape(g, t))
            return ag__error(AG_ESHAPE, "assigned grad has data of a different size");
        if (!g->contiguous) /* backward adds into .grad element for element */
            return ag__error(AG_EUNSUPPORTED,
                             "assigned grad is a non-contiguous view: assign ag_contiguous() of it instead");
    }
    t->grad = g;
    return 0;
}

int ag_zero_grad(ag_tensor *t) {
    if (!t)
        return ag__null_code("ag_zero_grad");
    if (t->grad) {
        memset(t->grad->data, 0, (size_t)t->grad->numel * ag__dtype_size(t->grad->dtype));
        ag__bump_version(t->grad);
    }
    return 0;
}

int ag_retain_grad(ag_tensor *t) {
    if (!t)
        return ag__null_code("ag_retain_grad");
    if (!t->requires_grad)
        return ag__error(AG_ESTATE, "can't retain_grad on Tensor that has requires_grad=False");
    if (t->grad_fn && !t->retains_grad) { /* a leaf keeps its grad anyway */
        t->retains_grad = true;
        t->retain_mark = t->next_hook_handle; /* retained before later hooks, as in PyTorch 1.13 */
    }
    return 0;
}

ag_tensor *ag_detach(ag_tensor *t) {
    if (!t)
        return ag__null_arg("ag_detach");
    if (ag__check_alive(t, "ag_detach"))
        return NULL;
    /* shared data and version counter, as in PyTorch */
    ag_tensor *v = ag__tensor_view(t->ctx, t, t->ndim, t->shape, t->stride, t->offset);
    if (!v || ag__view_link(v))
        return NULL;
    v->base = NULL; /* not a differentiable view: in-place changes of it record on it alone */
    return v;
}

/* ---- Hooks --------------------------------------------------------------------- */

int ag_register_hook(ag_tensor *t, ag_hook_fn fn, void *user_data) {
    if (!t)
        return ag__null_code("ag_register_hook");
    if (!fn)
        return ag__error(AG_EINVAL, "ag_register_hook: hook function is NULL");
    if (!t->requires_grad)
        return ag__error(AG_ESTATE, "cannot register a hook on a tensor that doesn't require gradient");
    ag__hook *h = ag__ctx_alloc(t->ctx, sizeof *h);
    if (!h)
        return AG_ENOMEM;
    h->fn = fn;
    h->user_data = user_data;
    h->handle = ++t->next_hook_handle;
    h->next = NULL;
    ag__hook **tail = &t->hooks;
    while (*tail)
        tail = &(*tail)->next;
    *tail = h;
    return h->handle;
}

int ag_remove_hook(ag_tensor *t, int handle) {
    if (!t)
        return ag__null_code("ag_remove_hook");
    for (ag__hook **p = &t->hooks; *p; p = &(*p)->next) {
        if ((*p)->handle == handle) {
            *p = (*p)->next;
            return 0;
        }
    }
    return ag__error(AG_EINVAL, "ag_remove_hook: no hook with handle %d on this tensor", handle);
}

/* ---- Graph introspection -------------------------------------------------------- */

const ag_node *ag_grad_fn(const ag_tensor *t) {
    if (!t)
        return ag__null_arg("ag_grad_fn");
    return t->grad_fn;
}

const char *ag_node_name(const ag_node *n) {
    if (!n)
        return ag__null_arg("ag_node_name");
    return n->kind->name;
}

int ag_node_num_next(const ag_node *n) {
    if (!n)
        return ag__null_object("ag_node_num_next", "node");
    return n->num_next;
}

const ag_node *ag_node_next(const ag_node *n, int i) {
    if (!n)
        return ag__null_arg("ag_node_next");
    if (i < 0 || i >= n->num_next)
        return ag__error_null(AG_EINVAL, "index %d is out of range for a node with %d next functions", i, n->num_next);
    return n->next[i];
}

const ag_tensor *ag_node_variable(const ag_node *n) {
    if (!n)
        return ag__null_arg("ag_node_variable");
    if (n->kind != &ag__accumulate_grad_kind)
        return ag__error_null(AG_EINVAL, "%s has no variable: only AccumulateGrad has one", n->kind->name);
    return n->out;
}
