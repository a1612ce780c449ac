/* libFuzzer target: the input is a program of agrad API calls, run by a
 * small interpreter over a table of tensors in three contexts. Every public
 * function of agrad.h is reachable, with both dtypes, 0 to 8 dimensions
 * (and 9), sizes from 0 to INT64_MAX (and negative), NaN and Inf data,
 * NULL tensors, contexts and arrays, bad dimensions, hooks that return
 * the wrong shape or dtype or run a backward of their own, in-place ops,
 * optimizers, backward with random options on 1 to 3 threads, context
 * resets, printing and DOT, and allocations (agrad's and the scheduler's)
 * and thread starts made to fail from any point on.
 *
 * Besides what ASan and UBSan catch, each call is held to agrad's
 * contract: a failure returns NULL or a negative code with that code and a
 * message in ag_last_error(); a tensor returned is well formed. A broken
 * rule aborts, so libFuzzer saves the input.
 *
 * The interpreter keeps to the API's lifetime rules, so that what it finds
 * is agrad's: each slot remembers the contexts its tensor depends on (its
 * own, and those of everything its graph reaches), and a context reset
 * empties the slots that depend on it. The same input runs the same calls.
 *
 * Input: a sequence of instructions, each an opcode byte (FUZZ_OPS below,
 * modulo their count) followed by the argument bytes that op reads; the
 * input running out reads as zeros and ends the program after the op. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agrad.h"

/* Private knobs of the static library: the size under which backward stays
 * on the calling thread, and failure injection (every allocation of agrad
 * and of its scheduler, and every thread start, asks the hook first). */
extern _Atomic int64_t ag__par_min_work;
void ag__fault_inject(int64_t n, bool persistent);
bool ag__fault_should_fail(int what);
typedef bool (*ws__fault_fn)(int what);
extern _Atomic(ws__fault_fn) ws__fault_hook;

#define NSLOT 16 /* tensor slots */
#define NCTX 3   /* contexts 0..2 */
#define NOPT 2   /* optimizer slots */

/* ---- Reading the input ---------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n;
} reader;

static uint8_t u8(reader *r) {
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static uint64_t u64(reader *r) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | u8(r);
    return v;
}

/* Sizes: mostly small, sometimes the ones that break arithmetic. */
static const int64_t special_sizes[] = {
    0,
    1,
    -1,
    -2,
    16,
    64,
    100,
    255,
    (int64_t)1 << 31,
    (int64_t)1 << 32,
    (int64_t)1 << 60,
    (int64_t)1 << 62,
    INT64_MAX,
    INT64_MIN,
    274177,
    67280421310721,
    INT64_MAX / 8,
    (int64_t)1 << 20,
};
static int64_t size_arg(reader *r) {
    uint8_t b = u8(r);
    if (b < 224)
        return b % 9; /* 0..8 */
    return special_sizes[b % (sizeof special_sizes / sizeof special_sizes[0])];
}

/* Dimensions and other small ints: -10..9. */
static int dim_arg(reader *r) { return (int)(u8(r) % 20) - 10; }

static const double special_doubles[] = {
    0.0, 1.0, -1.0, 0.5, 2.0, 3.0, -2.5, 1e-8, 1e8, NAN, INFINITY, -INFINITY, -0.0, 1e300, 1e-300, 0.1, 0.9, 1e-3,
};
static double double_arg(reader *r) {
    uint8_t b = u8(r);
    if (b == 255) {
        uint64_t bits = u64(r);
        double d;
        memcpy(&d, &bits, sizeof d);
        return d;
    }
    return special_doubles[b % (sizeof special_doubles / sizeof special_doubles[0])];
}

/* ---- The contract, checked after every call ------------------------------------------ */

static void broken(const char *what, const char *call) {
    fprintf(stderr, "fuzz_api: %s: %s (status %d, \"%s\")\n", call, what, ag_last_status(), ag_last_error());
    abort();
}

/* A failure comes with its code and a message. */
static void check_failure(int64_t rc, const char *call) {
    int st = ag_last_status();
    if (st >= 0 || st < -(AG_ERRNO_COUNT - 1))
        broken("failed without an error code", call);
    if (!ag_last_error()[0])
        broken("failed without a message", call);
    if (rc < 0 && rc != st)
        broken("returned a code other than ag_last_status()", call);
}

static void check_tensor(const ag_tensor *t, const char *call) {
    int nd = ag_ndim(t);
    if (nd < 0 || nd > AG_MAX_DIMS)
        broken("ndim out of range", call);
    int64_t n = 1;
    for (int d = 0; d < nd; d++) {
        int64_t s = ag_size(t, d);
        if (s < 0 || __builtin_mul_overflow(n, s, &n))
            broken("a size is negative or the sizes overflow", call);
    }
    if (ag_numel(t) != n)
        broken("numel is not the product of the sizes", call);
    if (ag_tensor_dtype(t) != AG_FLOAT32 && ag_tensor_dtype(t) != AG_FLOAT64)
        broken("bad dtype", call);
}

#define CHECK_T(call_expr) checked_tensor((call_expr), #call_expr)
#define CHECK_RC(call_expr) checked_rc((call_expr), #call_expr)

static ag_tensor *checked_tensor(ag_tensor *t, const char *call) {
    if (t)
        check_tensor(t, call);
    else
        check_failure(0, call);
    return t;
}

static int64_t checked_rc(int64_t rc, const char *call) {
    if (rc < 0)
        check_failure(rc, call);
    return rc;
}

/* ---- The interpreter's state --------------------------------------------------------------- */

typedef struct {
    ag_tensor *t;
    unsigned deps; /* bit c: lives only as long as context c */
} slot;

static ag_ctx *ctxs[NCTX];
static slot slots[NSLOT];
static ag_optim *opts[NOPT];
static unsigned opt_deps[NOPT];
static FILE *devnull;

/* Hooks make their tensors here (reset after each backward), under a lock:
 * in a parallel backward they run on several threads at once. */
static ag_ctx *hook_ctx;
static pthread_mutex_t hook_lock = PTHREAD_MUTEX_INITIALIZER;

/* A backward with create_graph may keep what hooks made (its recorded
 * nodes save the gradients they multiply): from then on hook_ctx lives
 * until the input ends. */
static bool hook_ctx_kept;
static void reset_hook_ctx(bool create_graph) {
    hook_ctx_kept |= create_graph;
    if (!hook_ctx_kept)
        ag_ctx_reset(hook_ctx);
}

static int slot_arg(reader *r) { return u8(r) % (NSLOT + 2); } /* NSLOT, NSLOT+1: NULL */
static ag_tensor *tensor_at(int i) { return i < NSLOT ? slots[i].t : NULL; }
static unsigned deps_at(int i) { return i < NSLOT ? slots[i].deps : 0; }
static int ctx_arg(reader *r) { return u8(r) % (NCTX + 1); } /* NCTX: NULL */
static ag_ctx *ctx_at(int c) { return c < NCTX ? ctxs[c] : NULL; }
static unsigned ctx_bit(int c) { return c < NCTX ? 1u << c : 0; }

static void store(int i, ag_tensor *t, unsigned deps) {
    if (i < NSLOT && t) {
        slots[i].t = t;
        slots[i].deps = deps;
    }
}

static ag_dtype dtype_arg(reader *r) {
    uint8_t b = u8(r);
    return b == 255 ? (ag_dtype)7 : (ag_dtype)(b & 1);
}

static int shape_arg(reader *r, int64_t *shape) {
    int nd = u8(r) % 10; /* 9: one too many */
    for (int d = 0; d < nd && d < AG_MAX_DIMS; d++)
        shape[d] = size_arg(r);
    return nd;
}

/* ---- Hooks ------------------------------------------------------------------------------------ */

static ag_tensor *hook_fn(ag_tensor *grad, void *ud) {
    int mode = (int)(uintptr_t)ud;
    if (mode == 0)
        return NULL;
    if (mode == 1)
        return grad;
    ag_tensor *r = NULL;
    pthread_mutex_lock(&hook_lock);
    int nd = ag_ndim(grad);
    int64_t shape[AG_MAX_DIMS];
    for (int d = 0; d < nd; d++)
        shape[d] = ag_size(grad, d);
    ag_dtype dt = ag_tensor_dtype(grad);
    switch (mode) {
    case 2: { /* a new gradient, the same shape (without history: hook_ctx is reset) */
        bool was = ag_set_grad_enabled(false);
        r = ag_mul_scalar(hook_ctx, grad, 0.5);
        ag_set_grad_enabled(was);
        break;
    }
    case 3: /* the wrong shape */
        r = ag_zeros(hook_ctx, dt, 1, (int64_t[]){ag_numel(grad) + 1});
        break;
    case 4: /* the wrong dtype */
        r = ag_zeros(hook_ctx, dt == AG_FLOAT32 ? AG_FLOAT64 : AG_FLOAT32, nd, shape);
        break;
    case 5: /* a 0-dim tensor */
        r = ag_scalar(hook_ctx, dt, 1);
        break;
    case 6: { /* a backward of its own, nested (backward runs hooks with grad mode off) */
        bool was = ag_set_grad_enabled(true);
        ag_tensor *x = ag_full(hook_ctx, dt, 1, (int64_t[]){3}, 2.0);
        if (x && ag_requires_grad_(x, true) == 0)
            ag_backward(ag_sum(hook_ctx, ag_mul(hook_ctx, x, x)), NULL, NULL);
        ag_set_grad_enabled(was);
        break;
    }
    default: { /* read it */
        char *s = ag_to_string(grad);
        free(s);
        break;
    }
    }
    pthread_mutex_unlock(&hook_lock);
    return r;
}

/* ---- The ops ---------------------------------------------------------------------------------- */

#define FUZZ_OPS(X)                                                                                                    \
    X(ZEROS)                                                                                                           \
    X(ONES)                                                                                                            \
    X(FULL)                                                                                                            \
    X(RAND)                                                                                                            \
    X(RANDN)                                                                                                           \
    X(SCALAR)                                                                                                          \
    X(FROM)                                                                                                            \
    X(READ)                                                                                                            \
    X(WRITE)                                                                                                           \
    X(COPY_TO)                                                                                                         \
    X(PRINT)                                                                                                           \
    X(REQUIRES_GRAD)                                                                                                   \
    X(GRAD)                                                                                                            \
    X(ZERO_GRAD)                                                                                                       \
    X(SET_GRAD)                                                                                                        \
    X(RETAIN_GRAD)                                                                                                     \
    X(DETACH)                                                                                                          \
    X(GRAPH)                                                                                                           \
    X(GRAD_MODE)                                                                                                       \
    X(BINARY)                                                                                                          \
    X(SCALAR_OP)                                                                                                       \
    X(UNARY)                                                                                                           \
    X(REDUCE)                                                                                                          \
    X(RESHAPE)                                                                                                         \
    X(TRANSPOSE)                                                                                                       \
    X(SOFTMAX)                                                                                                         \
    X(LOSS)                                                                                                            \
    X(LINEAR)                                                                                                          \
    X(BMM)                                                                                                             \
    X(INDEX)                                                                                                           \
    X(CAT)                                                                                                             \
    X(NARROW)                                                                                                          \
    X(EXPAND)                                                                                                          \
    X(INPLACE)                                                                                                         \
    X(BACKWARD)                                                                                                        \
    X(HOOK)                                                                                                            \
    X(OPTIM_NEW)                                                                                                       \
    X(OPTIM_STEP)                                                                                                      \
    X(SETTINGS)                                                                                                        \
    X(ERRORS)                                                                                                          \
    X(CTX_RESET)                                                                                                       \
    X(TRACE)                                                                                                           \
    X(FAIL_ALLOC)                                                                                                      \
    X(AUTOGRAD_GRAD)                                                                                                   \
    X(AUTOGRAD_BACKWARD)                                                                                               \
    X(FUNCTION)                                                                                                        \
    X(GRADCHECK)                                                                                                       \
    X(NODE_HOOK)                                                                                                       \
    X(ANOMALY)

enum {
#define FUZZ_ENUM(name) OP_##name,
    FUZZ_OPS(FUZZ_ENUM)
#undef FUZZ_ENUM
        NOPS
};

/* The result of an op on slots a (and b) into slot dst, in context c. */
#define RESULT(dst, c, deps, expr) store((dst), CHECK_T(expr), ctx_bit(c) | (deps))

static void op_create(reader *r, int op) {
    int dst = slot_arg(r), c = ctx_arg(r);
    ag_dtype dt = dtype_arg(r);
    int64_t shape[AG_MAX_DIMS] = {0};
    int nd = shape_arg(r, shape);
    const int64_t *sh = u8(r) == 255 ? NULL : shape;
    ag_ctx *ctx = ctx_at(c);
    ag_tensor *t = NULL;
    switch (op) {
    case OP_ZEROS:
        t = CHECK_T(ag_zeros(ctx, dt, nd, sh));
        break;
    case OP_ONES:
        t = CHECK_T(ag_ones(ctx, dt, nd, sh));
        break;
    case OP_FULL:
        t = CHECK_T(ag_full(ctx, dt, nd, sh, double_arg(r)));
        break;
    case OP_RAND:
        t = CHECK_T(ag_rand(ctx, dt, nd, sh));
        break;
    case OP_RANDN:
        t = CHECK_T(ag_randn(ctx, dt, nd, sh));
        break;
    case OP_SCALAR:
        t = CHECK_T(ag_scalar(ctx, dt, double_arg(r)));
        break;
    default: { /* FROM: data from the input, cycled, or NULL */
        int64_t n = 1;
        for (int d = 0; d < nd && d < AG_MAX_DIMS && n >= 0; d++)
            if (shape[d] < 0 || __builtin_mul_overflow(n, shape[d], &n) || n > (1 << 16))
                n = -1;
        bool null_data = u8(r) == 255;
        if (n < 0) { /* not a tensor we could give data for: the error path only */
            t = CHECK_T(ag_tensor_from(ctx, dt, nd, sh, NULL));
            break;
        }
        size_t es = dt == AG_FLOAT64 ? 8 : 4;
        unsigned char *data = malloc((size_t)n * es + 1);
        for (int64_t i = 0; i < n; i++) {
            double v = double_arg(r);
            if (dt == AG_FLOAT64)
                memcpy(data + i * 8, &v, 8);
            else {
                float f = (float)v;
                memcpy(data + i * 4, &f, 4);
            }
        }
        t = CHECK_T(ag_tensor_from(ctx, dt, nd, sh, null_data ? NULL : data));
        free(data);
        break;
    }
    }
    store(dst, t, ctx_bit(c));
}

static void op_read(reader *r) {
    ag_tensor *t = tensor_at(slot_arg(r));
    int dim = dim_arg(r);
    int64_t idx = size_arg(r);
    CHECK_RC(ag_ndim(t));
    CHECK_RC(ag_size(t, dim));
    CHECK_RC(ag_numel(t));
    if (ag_tensor_dtype(t) == AG_DTYPE_COUNT)
        check_failure(0, "ag_tensor_dtype");
    double v = ag_item(t);
    if (isnan(v) && (!t || ag_numel(t) != 1))
        check_failure(0, "ag_item");
    v = ag_get(t, idx);
    if (!t || idx < 0 || idx >= ag_numel(t))
        check_failure(0, "ag_get");
    (void)v;
    if (!ag_data_ptr(t) && !t)
        check_failure(0, "ag_data_ptr");
    ag_version(t);
    ag_requires_grad(t);
    ag_is_leaf(t);
    ag_clear_error();
}

static void op_write(reader *r) {
    ag_tensor *t = tensor_at(slot_arg(r));
    double v = double_arg(r);
    void *p = ag_mutable_data_ptr(t);
    if (!p) {
        if (!t)
            check_failure(0, "ag_mutable_data_ptr");
        return;
    }
    int64_t n = ag_numel(t), k = n < 4 ? n : 4;
    for (int64_t i = 0; i < k; i++) {
        if (ag_tensor_dtype(t) == AG_FLOAT64)
            ((double *)p)[i] = v;
        else
            ((float *)p)[i] = (float)v;
    }
}

static void op_copy_to(reader *r) {
    ag_tensor *t = tensor_at(slot_arg(r));
    ag_dtype dt = dtype_arg(r);
    bool null_out = u8(r) == 255;
    int64_t n = t ? ag_numel(t) : 0;
    void *out = malloc((size_t)n * 8 + 8);
    CHECK_RC(ag_copy_to(t, null_out ? NULL : out, dt));
    free(out);
}

static void op_print(reader *r) {
    ag_tensor *t = tensor_at(slot_arg(r));
    uint8_t how = u8(r);
    /* Past 1000 elements a print is summarised, but a tensor whose sizes
     * are all 6 or less still prints whole: enough of those (65536
     * elements at most here) make an input slow, and show nothing new. */
    if (t && ag_numel(t) > 4096)
        return;
    switch (how % 4) {
    case 0: {
        char *s = ag_to_string(t);
        if (!s)
            check_failure(0, "ag_to_string");
        free(s);
        break;
    }
    case 1:
        CHECK_RC(ag_fprint(devnull, t));
        break;
    case 2: /* a NULL FILE, or stdout for a NULL tensor only (its error path) */
        CHECK_RC(ag_fprint(NULL, t));
        break;
    default:
        if (!t)
            CHECK_RC(ag_print(t));
        break;
    }
}

static void op_requires_grad(reader *r) {
    ag_tensor *t = tensor_at(slot_arg(r));
    CHECK_RC(ag_requires_grad_(t, u8(r) & 1));
}

static void op_grad(reader *r) {
    int src = slot_arg(r), dst = slot_arg(r);
    ag_tensor *t = tensor_at(src);
    ag_tensor *g = ag_grad(t);
    if (!t)
        check_failure(0, "ag_grad");
    if (g) {
        check_tensor(g, "ag_grad");
        /* a leaf's .grad lives in the leaf's context, or (made by a
         * create_graph backward) in the root's, its history anywhere */
        store(dst, g, deps_at(src) | ((1u << NCTX) - 1));
    }
}

static void op_set_grad(reader *r) {
    int a = slot_arg(r), b = slot_arg(r);
    ag_tensor *t = tensor_at(a), *g = tensor_at(b);
    /* g must live as long as t: only from the contexts t depends on */
    if (g && (deps_at(b) & ~deps_at(a)))
        return;
    CHECK_RC(ag_set_grad(t, g));
}

static void op_graph(reader *r) {
    ag_tensor *t = tensor_at(slot_arg(r));
    int path = u8(r);
    const ag_node *n = ag_grad_fn(t);
    if (!t)
        check_failure(0, "ag_grad_fn");
    for (int depth = 0; n && depth < 8; depth++) {
        if (!ag_node_name(n))
            broken("a node without a name", "ag_node_name");
        int k = (int)CHECK_RC(ag_node_num_next(n));
        const ag_node *next = ag_node_next(n, k ? (path >> (depth % 8)) % (k + 1) : 0);
        if (ag_node_variable(n))
            check_tensor(ag_node_variable(n), "ag_node_variable");
        ag_clear_error();
        n = next;
    }
    CHECK_RC(ag_graph_dot(t, (path & 1) ? devnull : NULL));
    ag_clear_error();
}

static void op_binary(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r), a = slot_arg(r), b = slot_arg(r), which = u8(r) % 8;
    ag_ctx *ctx = ctx_at(c);
    ag_tensor *x = tensor_at(a), *y = tensor_at(b);
    unsigned deps = deps_at(a) | deps_at(b);
    switch (which) {
    case 6:
        RESULT(dst, c, deps, ag_where(ctx, y, x, y));
        break;
    case 7:
        RESULT(dst, c, deps_at(a), ag_to(ctx, x, (ag_dtype)(b & 1)));
        break;
    case 0:
        RESULT(dst, c, deps, ag_add(ctx, x, y));
        break;
    case 1:
        RESULT(dst, c, deps, ag_sub(ctx, x, y));
        break;
    case 2:
        RESULT(dst, c, deps, ag_mul(ctx, x, y));
        break;
    case 3:
        RESULT(dst, c, deps, ag_div(ctx, x, y));
        break;
    case 4:
        RESULT(dst, c, deps, ag_maximum(ctx, x, y));
        break;
    default:
        RESULT(dst, c, deps, ag_matmul(ctx, x, y));
        break;
    }
}

static void op_scalar_op(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r), a = slot_arg(r), which = u8(r) % 4;
    double s = double_arg(r), s2 = double_arg(r);
    ag_ctx *ctx = ctx_at(c);
    ag_tensor *x = tensor_at(a);
    switch (which) {
    case 0:
        RESULT(dst, c, deps_at(a), ag_add_scalar(ctx, x, s));
        break;
    case 1:
        RESULT(dst, c, deps_at(a), ag_mul_scalar(ctx, x, s));
        break;
    case 2:
        RESULT(dst, c, deps_at(a), ag_pow_scalar(ctx, x, s));
        break;
    default:
        RESULT(dst, c, deps_at(a), ag_clamp(ctx, x, s, s2));
        break;
    }
}

static void op_unary(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r), a = slot_arg(r), which = u8(r) % 9;
    static ag_tensor *(*const fns[])(ag_ctx *, ag_tensor *) = {ag_neg,     ag_sqrt, ag_exp, ag_log,  ag_tanh,
                                                               ag_sigmoid, ag_relu, ag_abs, ag_clone};
    RESULT(dst, c, deps_at(a), fns[which](ctx_at(c), tensor_at(a)));
}

static void op_reduce(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r), a = slot_arg(r), which = u8(r) % 9, dim = dim_arg(r);
    bool keep = u8(r) & 1;
    ag_ctx *ctx = ctx_at(c);
    ag_tensor *x = tensor_at(a);
    /* indices of max/min over a dim: at most one per element of x */
    int64_t idx[256];
    int64_t *want = x && ag_numel(x) <= 256 && !keep ? idx : NULL;
    switch (which) {
    case 5:
        RESULT(dst, c, deps_at(a), ag_min(ctx, x));
        CHECK_RC(ag_argmax(x));
        break;
    case 6:
        RESULT(dst, c, deps_at(a), ag_max_dim(ctx, x, dim, keep, want));
        CHECK_RC(want ? ag_argmax_dim(x, dim, want) : 0);
        break;
    case 7:
        RESULT(dst, c, deps_at(a), ag_min_dim(ctx, x, dim, keep, want));
        break;
    case 8: /* p from the dim: 0 and negative ones are refused */
        RESULT(dst, c, deps_at(a), ag_norm(ctx, x, keep ? INFINITY : (double)dim));
        break;
    case 0:
        RESULT(dst, c, deps_at(a), ag_sum(ctx, x));
        break;
    case 1:
        RESULT(dst, c, deps_at(a), ag_mean(ctx, x));
        break;
    case 2:
        RESULT(dst, c, deps_at(a), ag_max(ctx, x));
        break;
    case 3:
        RESULT(dst, c, deps_at(a), ag_sum_dim(ctx, x, dim, keep));
        break;
    default:
        RESULT(dst, c, deps_at(a), ag_mean_dim(ctx, x, dim, keep));
        break;
    }
}

static void op_reshape(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r), a = slot_arg(r);
    int64_t shape[AG_MAX_DIMS] = {0};
    int nd = shape_arg(r, shape);
    /* -1 somewhere, sometimes */
    uint8_t m = u8(r);
    if (nd > 0 && nd <= AG_MAX_DIMS && m >= 128)
        shape[m % nd] = -1;
    RESULT(dst, c, deps_at(a), ag_reshape(ctx_at(c), tensor_at(a), nd, m == 127 ? NULL : shape));
}

static void op_transpose(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r), a = slot_arg(r), d0 = dim_arg(r), d1 = dim_arg(r);
    RESULT(dst, c, deps_at(a), ag_transpose(ctx_at(c), tensor_at(a), d0, d1));
}

static void op_softmax(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r), a = slot_arg(r), dim = dim_arg(r);
    if (u8(r) & 1)
        RESULT(dst, c, deps_at(a), ag_log_softmax(ctx_at(c), tensor_at(a), dim));
    else
        RESULT(dst, c, deps_at(a), ag_softmax(ctx_at(c), tensor_at(a), dim));
}

/* Class targets for the rows of an (N, C) tensor: N entries, as the API
 * asks, mostly in range. */
static int64_t *targets_for(reader *r, const ag_tensor *x) {
    int64_t rows = x && ag_ndim(x) >= 1 ? ag_size(x, 0) : 0;
    if (rows < 0 || rows > (1 << 20)) /* more rows than that only with 0 classes: one is read */
        rows = 1;
    int64_t *t = malloc((size_t)rows * sizeof *t + sizeof *t);
    for (int64_t i = 0; i < rows; i++) {
        uint8_t b = u8(r);
        t[i] = b < 240 ? b % 4 : special_sizes[b % (sizeof special_sizes / sizeof special_sizes[0])];
    }
    return t;
}

static void op_loss(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r), a = slot_arg(r), b = slot_arg(r), which = u8(r) % 3;
    ag_ctx *ctx = ctx_at(c);
    ag_tensor *x = tensor_at(a);
    if (which == 2) {
        RESULT(dst, c, deps_at(a) | deps_at(b), ag_mse_loss(ctx, x, tensor_at(b)));
        return;
    }
    bool null_targets = u8(r) == 255;
    int64_t *t = targets_for(r, x);
    if (which == 0)
        RESULT(dst, c, deps_at(a), ag_nll_loss(ctx, x, null_targets ? NULL : t));
    else
        RESULT(dst, c, deps_at(a), ag_cross_entropy(ctx, x, null_targets ? NULL : t));
    free(t);
}

static void op_linear(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r), x = slot_arg(r), w = slot_arg(r), b = slot_arg(r);
    RESULT(dst, c, deps_at(x) | deps_at(w) | deps_at(b),
           ag_linear(ctx_at(c), tensor_at(x), tensor_at(w), tensor_at(b)));
}

static void op_bmm(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r), a = slot_arg(r), b = slot_arg(r);
    RESULT(dst, c, deps_at(a) | deps_at(b), ag_bmm(ctx_at(c), tensor_at(a), tensor_at(b)));
}

static void op_index(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r), a = slot_arg(r), dim = dim_arg(r);
    bool embed = u8(r) & 1;
    int k = u8(r) % 6;
    int64_t idx[6];
    for (int i = 0; i < k; i++) {
        uint8_t b = u8(r);
        idx[i] = b < 240 ? b % 5 : special_sizes[b % (sizeof special_sizes / sizeof special_sizes[0])];
    }
    const int64_t *ip = u8(r) == 255 ? NULL : idx;
    ag_tensor *x = tensor_at(a);
    if (k == 5 && x && ag_numel(x) <= 64) {
        /* gather with an index of x's shape (or a smaller one), entries from idx */
        int64_t gidx[64], shape[AG_MAX_DIMS];
        for (int i = 0; i < 64; i++)
            gidx[i] = idx[i % 5];
        for (int d = 0; d < ag_ndim(x); d++)
            shape[d] = ag_size(x, d) - (embed && d == 0 && ag_size(x, d) > 0);
        RESULT(dst, c, deps_at(a), ag_gather(ctx_at(c), x, dim, ag_ndim(x), shape, ip ? gidx : NULL));
    } else if (embed)
        RESULT(dst, c, deps_at(a), ag_embedding(ctx_at(c), tensor_at(a), ip, k));
    else
        RESULT(dst, c, deps_at(a), ag_index_select(ctx_at(c), tensor_at(a), dim, ip, k));
}

static void op_cat(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r), n = u8(r) % 5, dim = dim_arg(r);
    ag_tensor *ts[4];
    unsigned deps = 0;
    for (int i = 0; i < n && i < 4; i++) {
        int s = slot_arg(r);
        ts[i] = tensor_at(s);
        deps |= deps_at(s);
    }
    uint8_t m = u8(r);
    if (m & 1)
        RESULT(dst, c, deps, ag_stack(ctx_at(c), n == 4 && m == 255 ? NULL : ts, n == 4 ? 0 : n, dim));
    else
        RESULT(dst, c, deps, ag_cat(ctx_at(c), n == 4 && m == 254 ? NULL : ts, n == 4 ? 0 : n, dim));
}

static void op_narrow(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r), a = slot_arg(r), dim = dim_arg(r);
    int64_t start = size_arg(r), len = size_arg(r);
    if ((u8(r) & 1) && start != INT64_MIN)
        start = -start;
    RESULT(dst, c, deps_at(a), ag_narrow(ctx_at(c), tensor_at(a), dim, start, len));
}

static void op_expand(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r), a = slot_arg(r);
    int64_t shape[AG_MAX_DIMS] = {0};
    int nd = shape_arg(r, shape);
    uint8_t m = u8(r);
    if (nd > 0 && nd <= AG_MAX_DIMS && m >= 128)
        shape[m % nd] = -1;
    RESULT(dst, c, deps_at(a), ag_expand(ctx_at(c), tensor_at(a), nd, m == 127 ? NULL : shape));
}

static void op_inplace(reader *r) {
    ag_tensor *t = tensor_at(slot_arg(r)), *o = tensor_at(slot_arg(r));
    double s = double_arg(r);
    switch (u8(r) % 9) {
    case 0:
        CHECK_RC(ag_zero_(t));
        break;
    case 1:
        CHECK_RC(ag_fill_(t, s));
        break;
    case 2:
        CHECK_RC(ag_add_(t, o, s));
        break;
    case 3:
        CHECK_RC(ag_sub_(t, o));
        break;
    case 4:
        CHECK_RC(ag_mul_(t, o));
        break;
    case 5:
        CHECK_RC(ag_add_scalar_(t, s));
        break;
    case 6:
        CHECK_RC(ag_mul_scalar_(t, s));
        break;
    case 7:
        CHECK_RC(ag_zero_grad(t));
        break;
    default:
        CHECK_RC(ag_retain_grad(t));
        break;
    }
}

/* ---- Functional gradients, custom functions, gradcheck, node hooks ------------------------- */

/* Up to 4 tensors from slots (n from -1 to 4), their deps, or a NULL array. */
static int slots_arg(reader *r, ag_tensor **ts, unsigned *deps, bool *null_array) {
    int n = (int)(u8(r) % 6) - 1;
    *null_array = n == 4;
    if (n == 4)
        n = 1 + u8(r) % 3;
    for (int i = 0; i < n && i < 4; i++) {
        int s = slot_arg(r);
        ts[i] = tensor_at(s);
        *deps |= deps_at(s);
    }
    return n;
}

/* 0..4 threads, sometimes -1. */
static int threads_arg(uint8_t b) { return b == 255 ? -1 : b % 5; }

static void op_autograd_grad(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r);
    ag_tensor *outs[4] = {0}, *gouts[4] = {0}, *ins[4] = {0}, *grads[4] = {0};
    unsigned deps = ctx_bit(c);
    bool null_outs, null_gouts, null_ins;
    int no = slots_arg(r, outs, &deps, &null_outs);
    int ng = slots_arg(r, gouts, &deps, &null_gouts);
    int ni = slots_arg(r, ins, &deps, &null_ins);
    (void)ng;
    uint8_t o = u8(r), t = u8(r);
    ag_grad_opts go = {
        .retain_graph = o & 1, .create_graph = o & 2, .allow_unused = o & 4, .num_threads = threads_arg(t)};
    bool null_grads = (o & 0x18) == 0x18;
    int64_t rc = CHECK_RC(ag_autograd_grad(ctx_at(c), null_outs ? NULL : outs, (o & 0x20) || null_gouts ? NULL : gouts,
                                           no, null_ins ? NULL : ins, ni, null_grads ? NULL : grads,
                                           (o & 0xc0) == 0xc0 ? NULL : &go));
    reset_hook_ctx(go.create_graph);
    for (int i = 0; i < ni && i < 4; i++) {
        if (rc < 0 && grads[i])
            broken("a failed call left a gradient", "ag_autograd_grad");
        if (grads[i]) {
            check_tensor(grads[i], "ag_autograd_grad");
            /* with history, a gradient reaches every context of the graph */
            store((dst + i) % NSLOT, grads[i], deps);
        }
    }
}

static void op_autograd_backward(reader *r) {
    ag_tensor *roots[4] = {0}, *grads[4] = {0}, *ins[4] = {0};
    unsigned deps = 0;
    bool null_roots, null_grads, null_ins;
    int nr = slots_arg(r, roots, &deps, &null_roots);
    slots_arg(r, grads, &deps, &null_grads);
    int ni = slots_arg(r, ins, &deps, &null_ins);
    uint8_t o = u8(r), t = u8(r);
    ag_backward_opts bo = {.retain_graph = o & 1, .create_graph = o & 2, .num_threads = threads_arg(t)};
    CHECK_RC(ag_autograd_backward(null_roots ? NULL : roots, (o & 4) || null_grads ? NULL : grads, nr,
                                  (o & 8) || null_ins ? NULL : ins, ni, (o & 0x30) == 0x30 ? NULL : &bo));
    reset_hook_ctx(bo.create_graph);
}

/* Custom functions: user_data is mode | n << 8, n the input count. */
enum { FN_FWD_MUL, FN_FWD_SELF, FN_FWD_NULL, FN_FWD_ADD };
enum { FN_BWD_OK, FN_BWD_NONE, FN_BWD_SHAPE, FN_BWD_DTYPE, FN_BWD_COUNT, FN_BWD_ERROR, FN_BWD_SAVED_BAD, FN_BWD_NAN };

static ag_tensor *fn_forward(ag_function_ctx *fc, ag_ctx *ctx, ag_tensor *const *in, int n, void *ud) {
    int fwd = (int)((uintptr_t)ud & 3), save = (int)((uintptr_t)ud >> 2 & 3);
    ag_tensor *y = NULL;
    if (n < 1 || !in)
        return ag_mul(ctx, NULL, NULL);
    switch (fwd) {
    case FN_FWD_MUL:
        y = ag_mul_scalar(ctx, in[0], 2.0);
        break;
    case FN_FWD_SELF:
        y = in[0];
        break;
    case FN_FWD_NULL:
        return save ? ag_tanh(ctx, NULL) : NULL; /* NULL with an error, or without */
    default:
        y = in[0];
        for (int i = 1; i < n; i++)
            y = ag_add(ctx, y, in[i]);
        break;
    }
    switch (save) {
    case 0:
        ag_function_save(fc, in, n);
        break;
    case 1: {
        ag_tensor *ts[2] = {y, NULL};
        ag_function_save(fc, ts, 2);
        break;
    }
    case 2:
        ag_function_save(fc, NULL, n ? -n : 1);
        break;
    default:
        ag_function_save(fc, in, n);
        ag_function_save(fc, in, 1);
        break;
    }
    ag_clear_error();
    return y;
}

static int fn_backward(ag_function_ctx *fc, ag_ctx *ctx, const ag_tensor *go, ag_tensor **gi, void *ud) {
    int bwd = (int)((uintptr_t)ud >> 4 & 7), n = (int)((uintptr_t)ud >> 8);
    ag_tensor *g = (ag_tensor *)go;
    for (int i = 0; i < n; i++) {
        const ag_tensor *s = ag_function_saved(fc, i);
        switch (bwd) {
        case FN_BWD_OK:
            gi[i] = s ? ag_mul(ctx, g, (ag_tensor *)s) : ag_mul_scalar(ctx, g, 2.0);
            break;
        case FN_BWD_NONE:
            gi[i] = NULL;
            break;
        case FN_BWD_SHAPE:
            gi[i] = ag_ones(ctx, ag_tensor_dtype(g), 1, (int64_t[]){ag_numel(g) + i + 1});
            break;
        case FN_BWD_DTYPE: {
            int64_t shape[AG_MAX_DIMS];
            for (int d = 0; d < ag_ndim(g); d++)
                shape[d] = ag_size(g, d);
            gi[i] = ag_zeros(ctx, ag_tensor_dtype(g) == AG_FLOAT32 ? AG_FLOAT64 : AG_FLOAT32, ag_ndim(g), shape);
            break;
        }
        case FN_BWD_COUNT:
            return n + 1;
        case FN_BWD_ERROR:
            return AG_EINVAL;
        case FN_BWD_SAVED_BAD:
            ag_function_saved(fc, -1 - i);
            ag_function_saved(fc, 1000);
            gi[i] = ag_sum(ctx, g);
            break;
        default:
            gi[i] = ag_log(ctx, ag_neg(ctx, ag_abs(ctx, g)));
            break;
        }
    }
    return bwd == FN_BWD_COUNT ? n : 0;
}

static const ag_function fuzz_fns[2] = {
    {"FuzzBackward", fn_forward, fn_backward}, {"", fn_forward, NULL}, /* no backward */
};

static void op_function(reader *r) {
    int dst = slot_arg(r), c = ctx_arg(r);
    ag_tensor *ins[4] = {0};
    unsigned deps = ctx_bit(c);
    bool null_ins;
    int n = slots_arg(r, ins, &deps, &null_ins);
    uint8_t m = u8(r);
    int which = m == 255 ? 2 : (m >> 7) & 1; /* 2: a NULL function */
    uintptr_t ud = (uintptr_t)(m & 0x7f) | (uintptr_t)(n > 0 ? n : 0) << 8;
    RESULT(dst, c, deps,
           ag_function_apply(ctx_at(c), which == 2 ? NULL : &fuzz_fns[which], null_ins ? NULL : ins, n, (void *)ud));
}

/* gradcheck's functions: mode from user_data. */
static ag_tensor *check_fn(ag_ctx *ctx, ag_tensor *const *in, int n, void *ud) {
    int mode = (int)(uintptr_t)ud;
    ag_tensor *a = n > 0 ? in[0] : NULL, *b = n > 1 ? in[1] : a;
    switch (mode % 8) {
    case 0:
        return ag_sum(ctx, ag_mul(ctx, a, b));
    case 1:
        return ag_tanh(ctx, a);
    case 2:
        return ag_div(ctx, a, b);
    case 3:
        return ag_function_apply(ctx, &fuzz_fns[0], in, n,
                                 (void *)(uintptr_t)(FN_FWD_ADD | (mode >> 3 & 0x7c) | n << 8));
    case 4:
        return ag_log_softmax(ctx, ag_matmul(ctx, a, b), -1);
    case 5:
        return a; /* not made in ctx */
    case 6:
        return NULL; /* no error set */
    default:
        return ag_pow_scalar(ctx, ag_relu(ctx, a), 1.5);
    }
}

static void op_gradcheck(reader *r) {
    ag_tensor *ins[4] = {0};
    unsigned deps = 0;
    bool null_ins;
    int n = slots_arg(r, ins, &deps, &null_ins);
    uint8_t m = u8(r), o = u8(r);
    /* numerical Jacobians cost a function call per element: small inputs only */
    for (int i = 0; i < n && i < 4; i++)
        if (ins[i] && ag_numel(ins[i]) > 16)
            return;
    ag_gradcheck_opts gco = {double_arg(r), double_arg(r), double_arg(r)};
    const ag_gradcheck_opts *op = o & 1 ? NULL : &gco;
    if (o & 2)
        CHECK_RC(ag_gradgradcheck(o & 4 ? NULL : check_fn, null_ins ? NULL : ins, n, (void *)(uintptr_t)m, op));
    else
        CHECK_RC(ag_gradcheck(o & 4 ? NULL : check_fn, null_ins ? NULL : ins, n, (void *)(uintptr_t)m, op));
}

/* Node hooks: user_data is the mode. Replacements are made without history
 * (they must not outlive hook_ctx through a recorded backward). */
static ag_tensor *hook_replacement(const ag_tensor *g, int mode) {
    if (!g)
        return mode & 1 ? ag_ones(hook_ctx, AG_FLOAT32, 1, (int64_t[]){2}) : NULL;
    int nd = ag_ndim(g);
    int64_t shape[AG_MAX_DIMS];
    for (int d = 0; d < nd; d++)
        shape[d] = ag_size(g, d);
    ag_dtype dt = ag_tensor_dtype(g);
    bool was = ag_set_grad_enabled(false);
    ag_tensor *t;
    switch (mode) {
    case 2: /* the same shape */
        t = ag_full(hook_ctx, dt, nd, shape, 0.5);
        break;
    case 3: /* the wrong shape */
        t = ag_zeros(hook_ctx, dt, 1, (int64_t[]){ag_numel(g) + 1});
        break;
    case 4: /* the wrong dtype */
        t = ag_zeros(hook_ctx, dt == AG_FLOAT32 ? AG_FLOAT64 : AG_FLOAT32, nd, shape);
        break;
    case 5: /* NaN */
        t = ag_full(hook_ctx, dt, nd, shape, NAN);
        break;
    default:
        t = NULL;
        break;
    }
    ag_set_grad_enabled(was);
    return t;
}

static int node_prehook(const ag_node *node, ag_tensor **go, int n, void *ud) {
    int mode = (int)(uintptr_t)ud;
    if (!ag_node_name(node))
        return AG_EINVAL;
    if (mode == 0)
        return 0;
    if (mode == 1)
        return AG_ESTATE;
    pthread_mutex_lock(&hook_lock);
    for (int i = 0; i < n; i++)
        go[i] = hook_replacement(go[i], mode);
    pthread_mutex_unlock(&hook_lock);
    return 0;
}

static int node_hook(const ag_node *node, ag_tensor **gi, int ni, ag_tensor *const *go, int no, void *ud) {
    int mode = (int)(uintptr_t)ud;
    if (!ag_node_name(node))
        return AG_EINVAL;
    if (mode == 0) {
        for (int i = 0; i < no; i++)
            if (go[i])
                check_tensor(go[i], "a node hook's grad_outputs");
        return 0;
    }
    if (mode == 1)
        return AG_ENOMEM;
    pthread_mutex_lock(&hook_lock);
    for (int i = 0; i < ni; i++)
        gi[i] = hook_replacement(gi[i], mode);
    pthread_mutex_unlock(&hook_lock);
    return 0;
}

static int node_handles[NSLOT];

static void op_node_hook(reader *r) {
    int s = slot_arg(r);
    uint8_t path = u8(r), b = u8(r);
    const ag_node *node = ag_grad_fn(tensor_at(s));
    if (path & 0x80) /* the node behind it: an AccumulateGrad, or NULL */
        node = ag_node_next(node, path & 3);
    ag_clear_error();
    int h;
    switch (b % 4) {
    case 0:
        h = (int)CHECK_RC(
            ag_node_register_prehook(node, b & 0x80 ? NULL : node_prehook, (void *)(uintptr_t)(b >> 2 & 7)));
        break;
    case 1:
        h = (int)CHECK_RC(ag_node_register_hook(node, b & 0x80 ? NULL : node_hook, (void *)(uintptr_t)(b >> 2 & 7)));
        break;
    case 2: /* the last handle, maybe again */
        CHECK_RC(ag_node_remove_hook(node, s < NSLOT ? node_handles[s] : 0));
        return;
    default:
        CHECK_RC(ag_node_remove_hook(node, (int)(b >> 2) - 8));
        return;
    }
    if (h > 0 && s < NSLOT)
        node_handles[s] = h;
}

static void op_anomaly(reader *r) {
    bool on = u8(r) & 1;
    ag_set_detect_anomaly(on);
    if (ag_is_anomaly_enabled() != on)
        broken("the setting did not hold", "ag_set_detect_anomaly");
}

static void op_backward(reader *r) {
    ag_tensor *root = tensor_at(slot_arg(r));
    ag_tensor *grad = tensor_at(slot_arg(r));
    uint8_t o = u8(r);
    ag_backward_opts bo = {.retain_graph = o & 1, .create_graph = (o & 0x30) == 0x30, .num_threads = (o >> 1) % 4};
    if ((o & 0xc0) == 0xc0)
        bo.num_threads = -1;
    int64_t rc = CHECK_RC(ag_backward(root, (o & 8) ? grad : NULL, (o & 0x40) && !(o & 0x80) ? NULL : &bo));
    reset_hook_ctx(bo.create_graph);
    /* every .grad there is has its tensor's shape and dtype */
    for (int i = 0; rc == 0 && i < NSLOT; i++) {
        ag_tensor *t = slots[i].t, *g = t ? ag_grad(t) : NULL;
        if (!g)
            continue;
        check_tensor(g, "ag_grad after ag_backward");
        bool same = ag_ndim(g) == ag_ndim(t) && ag_tensor_dtype(g) == ag_tensor_dtype(t);
        for (int d = 0; same && d < ag_ndim(t); d++)
            same = ag_size(g, d) == ag_size(t, d);
        if (!same)
            broken("a .grad whose shape or dtype is not its tensor's", "ag_backward");
    }
}

static void op_hook(reader *r) {
    int s = slot_arg(r);
    ag_tensor *t = tensor_at(s);
    uint8_t b = u8(r);
    if (b >= 248) {
        CHECK_RC(ag_remove_hook(t, b - 247));
        return;
    }
    CHECK_RC(ag_register_hook(t, b == 247 ? NULL : hook_fn, (void *)(uintptr_t)(b % 8)));
}

static void op_optim_new(reader *r) {
    int o = u8(r) % NOPT, c = ctx_arg(r), n = u8(r) % 4;
    bool adam = u8(r) & 1;
    ag_tensor *ps[3];
    unsigned deps = ctx_bit(c);
    for (int i = 0; i < n && i < 3; i++) {
        int s = slot_arg(r);
        ps[i] = tensor_at(s);
        deps |= deps_at(s);
    }
    /* read in order (an initializer list's order of evaluation is not fixed) */
    double v[5];
    for (int i = 0; i < (adam ? 5 : 4); i++)
        v[i] = double_arg(r);
    bool flag = u8(r) & 1, null_opts = u8(r) == 255;
    ag_optim *opt;
    if (adam) {
        ag_adam_opts a = {.lr = v[0], .beta1 = v[1], .beta2 = v[2], .eps = v[3], .weight_decay = v[4], .amsgrad = flag};
        opt = ag_adam_new(ctx_at(c), n == 3 ? NULL : ps, n, null_opts ? NULL : &a);
    } else {
        ag_sgd_opts sg = {.lr = v[0], .momentum = v[1], .dampening = v[2], .weight_decay = v[3], .nesterov = flag};
        opt = ag_sgd_new(ctx_at(c), n == 3 ? NULL : ps, n, null_opts ? NULL : &sg);
    }
    if (!opt)
        check_failure(0, "ag_*_new");
    else {
        opts[o] = opt;
        opt_deps[o] = deps;
    }
}

static void op_optim_step(reader *r) {
    uint8_t b = u8(r);
    ag_optim *o = (b >> 2) % 3 == 2 ? NULL : opts[(b >> 2) % NOPT];
    if (b & 1)
        CHECK_RC(ag_optim_zero_grad(o));
    else
        CHECK_RC(ag_optim_step(o));
    if (b & 2) {
        ag_tensor *ts[2];
        ts[0] = tensor_at(slot_arg(r));
        ts[1] = tensor_at(slot_arg(r));
        CHECK_RC(ag_zero_grads(b == 255 ? NULL : ts, 2));
    }
}

static void op_settings(reader *r) {
    uint8_t b = u8(r), v = u8(r);
    switch (b % 8) {
    case 0: /* 1..3 threads; sometimes out of range */
        CHECK_RC(ag_set_num_threads(v == 255 ? -1 : v == 254 ? 2000 : 1 + v % 3));
        if (ag_get_num_threads() < 1)
            broken("fewer than one thread", "ag_get_num_threads");
        break;
    case 1:
        ag_set_deterministic(v & 1);
        if (ag_is_deterministic() != (bool)(v & 1))
            broken("the setting did not hold", "ag_set_deterministic");
        break;
    case 2:
        CHECK_RC(ag_set_executor((ag_executor)(v % 3)));
        ag_get_executor();
        break;
    case 3:
        ag_set_grad_enabled(v & 1);
        if (ag_is_grad_enabled() != (bool)(v & 1))
            broken("the setting did not hold", "ag_set_grad_enabled");
        break;
    case 4:
        ag_manual_seed(v);
        break;
    case 5: { /* the tensor size limit, never above 256 KB here */
        static const size_t caps[] = {1 << 18, 1 << 16, 1024, 64, 8, 1};
        ag_set_max_tensor_bytes(caps[v % 6]);
        break;
    }
    case 6:
        atomic_store(&ag__par_min_work, v & 1 ? 0 : 32768);
        break;
    default:
        ag_ctx_bytes(ctx_at(v % (NCTX + 1)));
        break;
    }
}

static void op_errors(reader *r) {
    uint8_t b = u8(r);
    ag_strerror(-(int)(b % 9));
    ag_last_error();
    ag_last_status();
    if (b & 1)
        ag_clear_error();
}

static void op_ctx_reset(reader *r) {
    int c = u8(r) % NCTX;
    unsigned bit = 1u << c;
    for (int i = 0; i < NSLOT; i++)
        if (slots[i].deps & bit)
            slots[i] = (slot){0};
    for (int i = 0; i < NOPT; i++)
        if (opt_deps[i] & bit) {
            opts[i] = NULL;
            opt_deps[i] = 0;
        }
    ag_ctx_reset(ctxs[c]);
}

static void op_trace(reader *r) {
    if (u8(r) & 1)
        CHECK_RC(ag_trace_start());
    else
        CHECK_RC(ag_trace_stop(NULL));
}

static const char *const op_names[] = {
#define FUZZ_NAME(name) #name,
    FUZZ_OPS(FUZZ_NAME)
#undef FUZZ_NAME
};

/* FUZZ_API_TRACE=1: each op and the error state after it, on stderr (to
 * read what an input does: `FUZZ_API_TRACE=1 fuzz_api crash-...`). */
static int trace_ops = -1;

/* From here on, the n-th allocation (or thread start) fails, alone or with
 * every one after it, until the next FAIL_ALLOC or the input's end. */
static void op_fail_alloc(reader *r) {
    uint8_t b = u8(r);
    ag__fault_inject(b == 255 ? -1 : 1 + (b >> 1) % 64, b & 1);
}

static void step(reader *r) {
    int op = u8(r) % NOPS;
    if (trace_ops < 0)
        trace_ops = getenv("FUZZ_API_TRACE") != NULL;
    if (trace_ops)
        fprintf(stderr, "%-14s", op_names[op]);
    switch (op) {
    case OP_ZEROS:
    case OP_ONES:
    case OP_FULL:
    case OP_RAND:
    case OP_RANDN:
    case OP_SCALAR:
    case OP_FROM:
        op_create(r, op);
        break;
    case OP_READ:
        op_read(r);
        break;
    case OP_WRITE:
        op_write(r);
        break;
    case OP_COPY_TO:
        op_copy_to(r);
        break;
    case OP_PRINT:
        op_print(r);
        break;
    case OP_REQUIRES_GRAD:
        op_requires_grad(r);
        break;
    case OP_GRAD:
        op_grad(r);
        break;
    case OP_ZERO_GRAD:
        CHECK_RC(ag_zero_grad(tensor_at(slot_arg(r))));
        break;
    case OP_SET_GRAD:
        op_set_grad(r);
        break;
    case OP_RETAIN_GRAD:
        CHECK_RC(ag_retain_grad(tensor_at(slot_arg(r))));
        break;
    case OP_DETACH: {
        int dst = slot_arg(r), a = slot_arg(r);
        store(dst, CHECK_T(ag_detach(tensor_at(a))), deps_at(a));
        break;
    }
    case OP_GRAPH:
        op_graph(r);
        break;
    case OP_GRAD_MODE:
        ag_set_grad_enabled(u8(r) & 1);
        break;
    case OP_BINARY:
        op_binary(r);
        break;
    case OP_SCALAR_OP:
        op_scalar_op(r);
        break;
    case OP_UNARY:
        op_unary(r);
        break;
    case OP_REDUCE:
        op_reduce(r);
        break;
    case OP_RESHAPE:
        op_reshape(r);
        break;
    case OP_TRANSPOSE:
        op_transpose(r);
        break;
    case OP_SOFTMAX:
        op_softmax(r);
        break;
    case OP_LOSS:
        op_loss(r);
        break;
    case OP_LINEAR:
        op_linear(r);
        break;
    case OP_BMM:
        op_bmm(r);
        break;
    case OP_INDEX:
        op_index(r);
        break;
    case OP_CAT:
        op_cat(r);
        break;
    case OP_NARROW:
        op_narrow(r);
        break;
    case OP_EXPAND:
        op_expand(r);
        break;
    case OP_INPLACE:
        op_inplace(r);
        break;
    case OP_BACKWARD:
        op_backward(r);
        break;
    case OP_HOOK:
        op_hook(r);
        break;
    case OP_OPTIM_NEW:
        op_optim_new(r);
        break;
    case OP_OPTIM_STEP:
        op_optim_step(r);
        break;
    case OP_SETTINGS:
        op_settings(r);
        break;
    case OP_ERRORS:
        op_errors(r);
        break;
    case OP_CTX_RESET:
        op_ctx_reset(r);
        break;
    case OP_TRACE:
        op_trace(r);
        break;
    case OP_FAIL_ALLOC:
        op_fail_alloc(r);
        break;
    case OP_AUTOGRAD_GRAD:
        op_autograd_grad(r);
        break;
    case OP_AUTOGRAD_BACKWARD:
        op_autograd_backward(r);
        break;
    case OP_FUNCTION:
        op_function(r);
        break;
    case OP_GRADCHECK:
        op_gradcheck(r);
        break;
    case OP_NODE_HOOK:
        op_node_hook(r);
        break;
    default:
        op_anomaly(r);
        break;
    }
    if (trace_ops)
        fprintf(stderr, " -> %d %s\n", ag_last_status(), ag_last_error());
}

/* UBSan's findings stop the run, as ASan's do, so libFuzzer keeps the input. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "halt_on_error=1:print_stacktrace=1"; }

/* ---- One input ------------------------------------------------------------------------------------ */

/* Everything an input may change, back to where every input starts. */
static void reset_state(void) {
    ag__fault_inject(-1, false);
    atomic_store(&ws__fault_hook, ag__fault_should_fail);
    ag_trace_stop(NULL);
    ag_set_grad_enabled(true);
    ag_set_detect_anomaly(false);
    ag_set_num_threads(1);
    ag_set_deterministic(false);
    ag_set_executor(AG_EXECUTOR_WS);
    ag_set_max_tensor_bytes(1 << 18); /* fast runs: 64K floats at most */
    atomic_store(&ag__par_min_work, 0);
    ag_manual_seed(0);
    ag_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    reset_state();
    for (int c = 0; c < NCTX; c++)
        ctxs[c] = ag_ctx_new();
    hook_ctx = ag_ctx_new();
    memset(slots, 0, sizeof slots);
    memset(opts, 0, sizeof opts);
    memset(opt_deps, 0, sizeof opt_deps);
    memset(node_handles, 0, sizeof node_handles);
    hook_ctx_kept = false;

    reader r = {data, size};
    while (r.n > 0)
        step(&r);

    for (int c = 0; c < NCTX; c++)
        ag_ctx_free(ctxs[c]);
    ag_ctx_free(hook_ctx);
    reset_state();
    return 0;
}
