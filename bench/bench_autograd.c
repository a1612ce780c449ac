/* agrad-bench's autograd suite. Each workload builds its parameters once,
 * then per round builds its graph in a context (forward, timed), runs
 * ag_backward (timed) and resets the context. Implementations:
 *   agrad      the work-stealing pool (the default executor)
 *   agrad-det  the same with ag_set_deterministic(true)
 *   agrad-omp  the same graph on OpenMP tasks (AG_EXECUTOR_OPENMP)
 *   pytorch    bench/pytorch/autograd.py, the same graphs in PyTorch 1.13
 * Each configuration (implementation, thread count) runs its rounds back to
 * back, as a training loop would, after a pause that lets the threads of
 * the one before (libgomp's spin after a parallel region) go to sleep.
 *
 * Graph statistics come from the recorded graph (grad_fn, next_functions):
 * nodes and edges of the backward graph, its work (nodes) and span (nodes on
 * the longest path from the root to a leaf), so parallelism = work / span
 * counted in nodes; "graph MB" is what the forward took from its context
 * (tensors, saved tensors and nodes). "scratch MB" is the most memory a
 * backward of the configuration touched for gradients (the engine's
 * scratch high-water mark, ag__backward_scratch_peak); the leaves' .grad
 * tensors, the same at every thread count, are not in it.
 *
 * Telling the truth about the machine: right before each workload (and
 * before each of PyTorch's) the run measures the ceiling, how much faster
 * two plain threads finish a compute-bound loop than one (bench_machine.c);
 * where it is under 1.8x the speedups of that workload are flagged as not
 * meaningful. Peak memory is per workload and implementation: the most
 * memory resident while it ran, above what was resident before its setup.
 * The training-step workloads (mlp128, mlp1024) time the Adam step after
 * the backward too ("step"); the `optim` workload (bench_optim.c) times
 * optimizer steps alone. */
#include "bench_autograd.h"

#include <agrad.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifndef AGRAD_SOURCE_ROOT
#define AGRAD_SOURCE_ROOT "."
#endif

/* Private to the library (the bench links it statically): bytes of
 * scratch the calling thread's last backward touched. Weak: a copy built
 * against the installed library (bench/installed.sh) cannot reach it. */
size_t ag__backward_scratch_peak(void) __attribute__((weak));

/* ---- Workloads ------------------------------------------------------------------ */

enum { MAX_PARAMS = 1024 };

typedef struct ab_state {
    ag_ctx *params;
    ag_tensor *p[MAX_PARAMS]; /* parameters: leaves that require grad */
    int np;
    ag_tensor *c[MAX_PARAMS]; /* constants (no grad) */
    int nc;
    ag_tensor *x;
    int64_t *targets;
    int64_t size;
    ag_optim *opt;  /* made by a training step's setup: stepped after each backward */
    double step_ms; /* the last step's time */
} ab_state;

typedef struct ab_workload {
    const char *name, *what;
    int64_t size[3]; /* full, small, tiny */
    int (*setup)(ab_state *s);
    ag_tensor *(*forward)(ab_state *s, ag_ctx *g); /* the scalar loss */
} ab_workload;

static ag_tensor *param(ab_state *s, int ndim, const int64_t *shape, double scale) {
    ag_tensor *t = ag_randn(s->params, AG_FLOAT32, ndim, shape);
    if (t && scale != 1.0)
        ag_mul_scalar_(t, scale);
    if (!t || ag_requires_grad_(t, true) || s->np == MAX_PARAMS)
        return NULL;
    return s->p[s->np++] = t;
}

static ag_tensor *constant(ab_state *s, int ndim, const int64_t *shape, double scale) {
    ag_tensor *t = ag_randn(s->params, AG_FLOAT32, ndim, shape);
    if (t && scale != 1.0)
        ag_mul_scalar_(t, scale);
    if (!t || s->nc == MAX_PARAMS)
        return NULL;
    return s->c[s->nc++] = t;
}

/* chain1: y = (y * w) + b, size links, one-element tensors. */
static int chain1_setup(ab_state *s) {
    int64_t one[1] = {1};
    s->x = ag_full(s->params, AG_FLOAT32, 1, one, 0.5);
    ag_tensor *w = param(s, 1, one, 0.0), *b = param(s, 1, one, 0.0);
    if (!s->x || !w || !b)
        return -1;
    bool prev = ag_set_grad_enabled(false); /* leaves that require grad: as torch.no_grad() */
    int rc = ag_fill_(w, 1.0001) || ag_fill_(b, 0.0001) ? -1 : 0;
    ag_set_grad_enabled(prev);
    return rc;
}
static ag_tensor *chain1_forward(ab_state *s, ag_ctx *g) {
    ag_tensor *y = s->x;
    for (int64_t i = 0; i < s->size && y; i++)
        y = ag_add(g, ag_mul(g, y, s->p[0]), s->p[1]);
    return y ? ag_sum(g, y) : NULL;
}

/* wide: size branches x 8 layers of h = tanh(h @ W), 64 x 64, summed. */
enum { WIDE_LAYERS = 8, WIDE_DIM = 64 };
static int wide_setup(ab_state *s) {
    int64_t sh[2] = {WIDE_DIM, WIDE_DIM};
    if (s->size * WIDE_LAYERS > MAX_PARAMS - 1 || !(s->x = param(s, 2, sh, 1.0)))
        return -1;
    for (int64_t i = 0; i < s->size * WIDE_LAYERS; i++)
        if (!param(s, 2, sh, 0.125))
            return -1;
    return 0;
}
static ag_tensor *wide_forward(ab_state *s, ag_ctx *g) {
    ag_tensor *sum = NULL;
    for (int64_t b = 0; b < s->size; b++) {
        ag_tensor *h = s->x;
        for (int l = 0; l < WIDE_LAYERS; l++)
            h = ag_tanh(g, ag_matmul(g, h, s->p[1 + b * WIDE_LAYERS + l]));
        sum = sum ? ag_add(g, sum, h) : h;
    }
    return ag_sum(g, sum);
}

/* fanin: one 128 x 128 leaf used by size branches tanh(x @ C_k). */
enum { FANIN_DIM = 128 };
static int fanin_setup(ab_state *s) {
    int64_t sh[2] = {FANIN_DIM, FANIN_DIM};
    if (s->size > MAX_PARAMS || !(s->x = param(s, 2, sh, 1.0)))
        return -1;
    for (int64_t i = 0; i < s->size; i++)
        if (!constant(s, 2, sh, 0.09))
            return -1;
    return 0;
}
static ag_tensor *fanin_forward(ab_state *s, ag_ctx *g) {
    ag_tensor *sum = NULL;
    for (int64_t b = 0; b < s->size; b++) {
        ag_tensor *h = ag_tanh(g, ag_matmul(g, s->x, s->c[b]));
        sum = sum ? ag_add(g, sum, h) : h;
    }
    return ag_sum(g, sum);
}

/* deep: a chain of size ops on 64 x 64, h = tanh(h @ W_i) (two ops a link). */
static int deep_setup(ab_state *s) {
    int64_t sh[2] = {WIDE_DIM, WIDE_DIM};
    if (s->size / 2 > MAX_PARAMS - 1 || !(s->x = param(s, 2, sh, 1.0)))
        return -1;
    for (int64_t i = 0; i < s->size / 2; i++)
        if (!param(s, 2, sh, 0.125))
            return -1;
    return 0;
}
static ag_tensor *deep_forward(ab_state *s, ag_ctx *g) {
    ag_tensor *h = s->x;
    for (int64_t i = 0; i < s->size / 2 && h; i++)
        h = ag_tanh(g, ag_matmul(g, h, s->p[1 + i]));
    return h ? ag_sum(g, h) : NULL;
}

/* mlp: one training step's graph, batch size, 784-512-512-10, ReLU,
 * cross-entropy (the optimizer step is not part of it). */
static int mlp_layers(ab_state *s, int64_t hidden) {
    const int64_t dims[4] = {784, hidden, hidden, 10};
    int64_t xs[2] = {s->size, 784};
    if (!(s->x = constant(s, 2, xs, 1.0)) || !(s->targets = malloc((size_t)s->size * sizeof *s->targets)))
        return -1;
    for (int64_t i = 0; i < s->size; i++)
        s->targets[i] = (i * 7919) % 10;
    for (int l = 0; l < 3; l++) {
        double scale = 1.0 / sqrt((double)dims[l]);
        if (!param(s, 2, (int64_t[]){dims[l + 1], dims[l]}, scale) || !param(s, 1, (int64_t[]){dims[l + 1]}, scale))
            return -1;
    }
    return 0;
}
static int mlp_setup(ab_state *s) { return mlp_layers(s, 512); }
static ag_tensor *mlp_forward(ab_state *s, ag_ctx *g) {
    ag_tensor *h = ag_relu(g, ag_linear(g, s->x, s->p[0], s->p[1]));
    h = ag_relu(g, ag_linear(g, h, s->p[2], s->p[3]));
    return ag_cross_entropy(g, ag_linear(g, h, s->p[4], s->p[5]), s->targets);
}

/* wide128, wide256, wide512: size branches tanh(x @ W_b) on d x d
 * matrices, summed; x and every W_b are parameters. Products at the sizes
 * users train at, with as much graph parallelism as branches. */
static int wide_dim_setup(ab_state *s, int64_t d) {
    int64_t sh[2] = {d, d};
    if (s->size > MAX_PARAMS - 1 || !(s->x = param(s, 2, sh, 1.0)))
        return -1;
    for (int64_t b = 0; b < s->size; b++)
        if (!param(s, 2, sh, 1.0 / sqrt((double)d)))
            return -1;
    return 0;
}
static int wide128_setup(ab_state *s) { return wide_dim_setup(s, 128); }
static int wide256_setup(ab_state *s) { return wide_dim_setup(s, 256); }
static int wide512_setup(ab_state *s) { return wide_dim_setup(s, 512); }
static ag_tensor *wide_dim_forward(ab_state *s, ag_ctx *g) {
    ag_tensor *sum = NULL;
    for (int64_t b = 0; b < s->size; b++) {
        ag_tensor *h = ag_tanh(g, ag_matmul(g, s->x, s->p[1 + b]));
        sum = sum ? ag_add(g, sum, h) : h;
    }
    return ag_sum(g, sum);
}

/* mlp128, mlp1024: a whole training step of the MLP 784-256-256-10 on a
 * batch of size: forward, backward, then Adam (torch.optim.Adam's
 * defaults) on its six parameters. */
static int mlp_step_setup(ab_state *s) {
    if (mlp_layers(s, 256) != 0)
        return -1;
    return (s->opt = ag_adam_new(s->params, s->p, s->np, NULL)) ? 0 : -1;
}

/* attention: 8 heads of softmax(q k^T / sqrt(64)) v over size positions,
 * q, k, v = x W_q, x W_k, x W_v with x (8 * size, 64). */
enum { ATT_HEADS = 8, ATT_DIM = 64 };
static int attention_setup(ab_state *s) {
    int64_t xs[2] = {ATT_HEADS * s->size, ATT_DIM}, ws[2] = {ATT_DIM, ATT_DIM};
    if (!(s->x = param(s, 2, xs, 1.0)))
        return -1;
    for (int i = 0; i < 3; i++)
        if (!param(s, 2, ws, 0.125))
            return -1;
    return 0;
}
static ag_tensor *attention_forward(ab_state *s, ag_ctx *g) {
    int64_t sh[3] = {ATT_HEADS, s->size, ATT_DIM};
    ag_tensor *q = ag_reshape(g, ag_matmul(g, s->x, s->p[1]), 3, sh);
    ag_tensor *k = ag_reshape(g, ag_matmul(g, s->x, s->p[2]), 3, sh);
    ag_tensor *v = ag_reshape(g, ag_matmul(g, s->x, s->p[3]), 3, sh);
    ag_tensor *scores = ag_mul_scalar(g, ag_bmm(g, q, ag_transpose(g, k, 1, 2)), 1.0 / sqrt((double)ATT_DIM));
    ag_tensor *o = ag_bmm(g, ag_softmax(g, scores, 2), v);
    return ag_mean(g, ag_mul(g, o, o));
}

/* elementwise: 20 elementwise ops on size elements, (1000, size / 1000):
 * transcendental (tanh, exp, sigmoid, sin, cos, log, sqrt), arithmetic and
 * binary ops with a full operand, a row (b) and a scalar (c). */
enum { ELEM_ROWS = 1000 };
static int elementwise_setup(ab_state *s) {
    int64_t sh[2] = {ELEM_ROWS, s->size / ELEM_ROWS}, row[1] = {s->size / ELEM_ROWS};
    if (!(s->x = param(s, 2, sh, 0.5)) || !param(s, 2, sh, 0.5) || !param(s, 1, row, 0.5))
        return -1;
    ag_tensor *c = ag_full(s->params, AG_FLOAT32, 0, row, 1.5);
    if (!c || ag_requires_grad_(c, true))
        return -1;
    s->p[s->np++] = c;
    return 0;
}
static ag_tensor *elementwise_forward(ab_state *s, ag_ctx *g) {
    ag_tensor *x = s->x, *w = s->p[1], *b = s->p[2], *c = s->p[3];
    ag_tensor *h2 = ag_add(g, ag_mul(g, x, w), b);                                     /* 1, 2 */
    ag_tensor *h3 = ag_tanh(g, h2);                                                    /* 3 */
    ag_tensor *h7 = ag_mul(g, ag_exp(g, ag_mul_scalar(g, h3, 0.5)), ag_sigmoid(g, x)); /* 4-7 */
    ag_tensor *h10 = ag_relu(g, ag_div(g, ag_sub(g, h7, w), c));                       /* 8-10 */
    ag_tensor *h14 = ag_mul(g, ag_sin(g, ag_add(g, h10, h3)), ag_cos(g, h2));          /* 11-14 */
    ag_tensor *h16 = ag_add_scalar(g, ag_pow_scalar(g, h14, 2), 1);                    /* 15, 16 */
    ag_tensor *h20 = ag_neg(g, ag_sub(g, ag_log(g, h16), ag_sqrt(g, h16)));            /* 17-20 */
    return ag_sum(g, h20);
}
/* Bytes the 20 ops must move at least, in tensors of size floats: each
 * full input read once and each output written once (a row or a scalar
 * counts as nothing). Forward: 6 binary ops with two full operands (3
 * tensors), 14 others (2). Backward: each full gradient written once from
 * the incoming gradient and what its formula reads (neg, sub, add,
 * add_scalar, mul_scalar, div by the scalar: 2; unary ops reading their
 * input or result: 3; full mul: 3 per input); the sums into the row and
 * the scalar read the gradient (and div's its numerator): 70 in all. */
#define ELEM_FWD_TENSORS 46.0
#define ELEM_BWD_TENSORS 70.0

static const ab_workload workloads[] = {
    {"chain1",
     "one-element chain y = y*w + b (size links): the fixed cost per node",
     {1000, 1000, 50},
     chain1_setup,
     chain1_forward},
    {"wide",
     "size branches x 8 layers of tanh(h @ W), 64x64: parallel branches",
     {16, 16, 2},
     wide_setup,
     wide_forward},
    {"fanin",
     "one 128x128 leaf used by size branches tanh(x @ C): many producers, one leaf",
     {256, 128, 4},
     fanin_setup,
     fanin_forward},
    {"deep", "a chain of size ops on 64x64, tanh(h @ W): no parallelism", {400, 400, 20}, deep_setup, deep_forward},
    {"mlp",
     "a training step, batch size, 784-512-512-10, cross-entropy: big products",
     {128, 128, 8},
     mlp_setup,
     mlp_forward},
    {"wide128",
     "size branches tanh(x @ W), 128x128, summed: products at training sizes",
     {64, 64, 2},
     wide128_setup,
     wide_dim_forward},
    {"wide256", "the same, 256x256", {64, 16, 2}, wide256_setup, wide_dim_forward},
    {"wide512", "the same, 512x512", {64, 4, 1}, wide512_setup, wide_dim_forward},
    {"mlp128",
     "a training step (forward, backward, Adam), MLP 784-256-256-10, batch size",
     {128, 128, 8},
     mlp_step_setup,
     mlp_forward},
    {"mlp1024", "the same, batch size", {1024, 1024, 16}, mlp_step_setup, mlp_forward},
    {"attention",
     "8 heads, softmax(q k^T / 8) v over size positions, d 64",
     {128, 64, 8},
     attention_setup,
     attention_forward},
    {"elementwise",
     "20 elementwise ops (tanh, exp, sigmoid, sin, mul, add, ...) on size floats: memory bandwidth",
     {1000000, 1000000, 10000},
     elementwise_setup,
     elementwise_forward},
};
enum { NWORKLOADS = sizeof workloads / sizeof workloads[0] };

static const char *const impls[] = {"agrad", "agrad-det", "agrad-omp"};
enum { NIMPLS = 3 };

void bench_autograd_list(void) {
    for (int i = 0; i < NWORKLOADS; i++)
        printf("%-10s sizes %lld/%lld/%lld (full/small/tiny)  %s\n", workloads[i].name, (long long)workloads[i].size[0],
               (long long)workloads[i].size[1], (long long)workloads[i].size[2], workloads[i].what);
    bench_optim_list();
    printf("implementations: agrad (work-stealing pool), agrad-det (deterministic), agrad-omp (OpenMP tasks), "
           "pytorch, installed (agrad as installed, with --installed)\n");
}

/* ---- Graph statistics ----------------------------------------------------------- */

typedef struct {
    const ag_node **keys;
    int64_t *span; /* longest path from this node to a leaf, in nodes */
    size_t cap;
    int64_t nodes, edges;
} ab_graph;

static size_t ab_slot(const ab_graph *g, const ag_node *n) {
    uint64_t h = (uint64_t)(uintptr_t)n * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 20) & (g->cap - 1);
    while (g->keys[i] && g->keys[i] != n)
        i = (i + 1) & (g->cap - 1);
    return i;
}

static int64_t ab_visit(ab_graph *g, const ag_node *n) {
    size_t i = ab_slot(g, n);
    if (g->keys[i])
        return g->span[i];
    g->keys[i] = n;
    g->nodes++;
    int64_t best = 0;
    for (int k = 0; k < ag_node_num_next(n); k++) {
        const ag_node *m = ag_node_next(n, k);
        if (!m)
            continue;
        g->edges++;
        int64_t s = ab_visit(g, m);
        if (s > best)
            best = s;
    }
    g->span[ab_slot(g, n)] = best + 1;
    return best + 1;
}

typedef struct {
    int64_t nodes, edges, span;
} ab_stats;

static ab_stats graph_stats(const ag_tensor *root) {
    ab_graph g = {.cap = 1 << 16};
    g.keys = calloc(g.cap, sizeof *g.keys);
    g.span = calloc(g.cap, sizeof *g.span);
    ab_stats st = {0};
    if (g.keys && g.span && ag_grad_fn(root)) {
        st.span = ab_visit(&g, ag_grad_fn(root));
        st.nodes = g.nodes;
        st.edges = g.edges;
    }
    free(g.keys);
    free(g.span);
    return st;
}

/* ---- Measuring ------------------------------------------------------------------- */

typedef struct ab_result {
    const char *workload, *impl;
    int threads;
    int64_t size;
    double fwd_ms, bwd_ms; /* medians */
    double scratch_mb;     /* the most scratch a backward touched; -1: not measured (PyTorch) */
    double step_ms;        /* training steps: the optimizer step's median */
    double ceiling;        /* the ceiling measured right before this workload's run; 0: none */
    bool ok;
} ab_result;

/* The peak memory of one workload in one process (agrad's own, PyTorch's,
 * the installed copy's): the most resident while it ran, and what was
 * resident before its setup. */
typedef struct ab_mem {
    const char *workload, *impl;
    double peak_mb, base_mb;
} ab_mem;

typedef struct ab_info {
    const char *workload;
    int64_t size;
    ab_stats st;
    double graph_mb;
} ab_info;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void set_impl(int impl) {
    ag_set_deterministic(impl == 1);
    ag_set_executor(impl == 2 ? AG_EXECUTOR_OPENMP : AG_EXECUTOR_WS);
}

static void progress(int done, int total, const char *what) {
    if (isatty(2))
        fprintf(stderr, "\r\033[K[%d/%d] %s", done, total, what);
    else if (done == total)
        fprintf(stderr, "[%d/%d] %s\n", done, total, what);
}

/* One round of configuration (impl, threads): forward and backward times. */
static int one_round(ab_state *s, const ab_workload *w, ag_ctx *g, int impl, int threads, double *fwd, double *bwd,
                     double *scratch_mb) {
    set_impl(impl);
    ag_set_num_threads(threads);
    ag_zero_grads(s->p, s->np);
    ag_ctx_reset(g);
    double t0 = now_ms();
    ag_tensor *root = w->forward(s, g);
    double t1 = now_ms();
    if (!root)
        return -1;
    ag_backward_opts opts = {.num_threads = threads};
    int rc = ag_backward(root, NULL, &opts);
    double t2 = now_ms();
    if (rc)
        return rc;
    /* a gradient that came out wrong shows as a non-finite or missing one */
    ag_tensor *gr = ag_grad(s->p[0]);
    if (!gr || !isfinite(ag_get(gr, 0)))
        return -1;
    if (s->opt) { /* a training step */
        double t3 = now_ms();
        rc = ag_optim_step(s->opt);
        s->step_ms = now_ms() - t3;
        if (rc)
            return rc;
    }
    *fwd = t1 - t0;
    *bwd = t2 - t1;
    double mb = ag__backward_scratch_peak ? (double)ag__backward_scratch_peak() / 1048576.0 : -1;
    if (mb > *scratch_mb || mb < 0)
        *scratch_mb = mb;
    return 0;
}

/* Reads a peer's lines (ab_options.peer has the format): results as
 * implementation `impl`, each with the ceiling its process measured right
 * before the workload, and peak memory records. Returns the results read. */
static int read_peer(FILE *p, const ab_options *o, const char *impl, ab_result *out, int cap, ab_mem *mem, int *nmem) {
    double ceiling[NWORKLOADS] = {0};
    int n = 0;
    char line[256], wname[64];
    while (fgets(line, sizeof line, p)) {
        int th, k;
        double f, b, st = 0, x, y;
        if (sscanf(line, "ceiling %63s %lf", wname, &x) == 2) {
            for (int i = 0; i < NWORKLOADS; i++)
                if (!strcmp(wname, workloads[i].name))
                    ceiling[i] = x;
        } else if (sscanf(line, "peak %63s %lf %lf", wname, &x, &y) == 3) {
            for (int i = 0; i < NWORKLOADS; i++)
                if (!strcmp(wname, workloads[i].name) && *nmem < NWORKLOADS * 3)
                    mem[(*nmem)++] = (ab_mem){workloads[i].name, impl, x, y};
        } else if ((k = sscanf(line, "%63s %d %lf %lf %lf", wname, &th, &f, &b, &st)) >= 4 && n < cap) {
            for (int i = 0; i < NWORKLOADS; i++)
                if (!strcmp(wname, workloads[i].name))
                    out[n++] = (ab_result){.workload = workloads[i].name,
                                           .impl = impl,
                                           .threads = th,
                                           .size = workloads[i].size[o->scale],
                                           .fwd_ms = f,
                                           .bwd_ms = b,
                                           .scratch_mb = -1,
                                           .step_ms = k == 5 ? st : 0,
                                           .ceiling = ceiling[i],
                                           .ok = true};
            progress(n, n, impl);
        } else {
            fputs(line, stderr); /* the peer's own message */
        }
    }
    return n;
}

/* The selected workloads of the suite ("a,b"), their sizes ("a=N,b=M")
 * and the thread counts ("1,2"), for a peer's command line. */
static void peer_args(const ab_options *o, char *names, size_t nn, char *sizes, size_t ns, char *threads, size_t nt) {
    names[0] = sizes[0] = threads[0] = '\0';
    for (int t = 0; t < o->nthreads; t++)
        snprintf(threads + strlen(threads), nt - strlen(threads), "%s%d", t ? "," : "", o->threads[t]);
    for (int i = 0; i < NWORKLOADS; i++) {
        if (!ab_in_list(o->workloads, workloads[i].name))
            continue;
        snprintf(names + strlen(names), nn - strlen(names), "%s%s", names[0] ? "," : "", workloads[i].name);
        snprintf(sizes + strlen(sizes), ns - strlen(sizes), "%s%s=%lld", sizes[0] ? "," : "", workloads[i].name,
                 (long long)workloads[i].size[o->scale]);
    }
}

/* PyTorch peers: bench/pytorch/autograd.py, which runs this program with
 * --ceiling before each workload. */
static int run_pytorch(const ab_options *o, ab_result *out, int cap, ab_mem *mem, int *nmem) {
    char threads[128], sizes[512], names[256], self[1024] = "";
    peer_args(o, names, sizeof names, sizes, sizeof sizes, threads, sizeof threads);
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    self[len > 0 ? len : 0] = '\0';
    char cmd[2560];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/bench/pytorch/autograd.py --workloads %s --sizes %s --threads %s --reps %d "
             "--warmup %d%s%s%s",
             AGRAD_SOURCE_ROOT, names, sizes, threads, o->reps, o->warmup, self[0] ? " --ceiling-cmd '" : "", self,
             self[0] ? " --ceiling'" : "");
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    int n = read_peer(p, o, "pytorch", out, cap, mem, nmem);
    pclose(p);
    return n;
}

#ifndef AGRAD_BUILD_ROOT
#define AGRAD_BUILD_ROOT "."
#endif
#ifndef AGRAD_CC
#define AGRAD_CC "cc"
#endif

/* agrad-bench built against the installed library by bench/installed.sh
 * (meson install into the build tree's bench-installed/, then a compiler
 * and pkg-config agrad, as users build), on the first call; NULL, with the
 * reason printed, when it cannot be. */
const char *ab_installed_path(void) {
    static char path[1200];
    static int state; /* 0: not tried, 1: built, -1: failed */
    if (state)
        return state > 0 ? path : NULL;
    state = -1;
    char dir[1100], cmd[4096];
    snprintf(dir, sizeof dir, "%s/bench-installed", AGRAD_BUILD_ROOT);
    snprintf(path, sizeof path, "%s/agrad-bench-installed", dir);
    snprintf(cmd, sizeof cmd, "CC='%s' sh '%s/bench/installed.sh' '%s' '%s' '%s' >'%s.log' 2>&1", AGRAD_CC,
             AGRAD_SOURCE_ROOT, AGRAD_BUILD_ROOT, AGRAD_SOURCE_ROOT, dir, dir);
    fprintf(stderr, "installed: building agrad-bench against the installed library (%s.log)\n", dir);
    if (system(cmd) != 0 || access(path, X_OK) != 0) {
        printf("installed: skipped: bench/installed.sh failed, see %s.log\n", dir);
        return NULL;
    }
    state = 1;
    return path;
}

/* The same suite, implementation agrad only, through the installed library. */
static int run_installed(const ab_options *o, ab_result *out, int cap, ab_mem *mem, int *nmem) {
    const char *bin = ab_installed_path();
    if (!bin)
        return 0;
    char threads[128], sizes[512], names[256], cmd[2048];
    peer_args(o, names, sizeof names, sizes, sizeof sizes, threads, sizeof threads);
    snprintf(cmd, sizeof cmd,
             "'%s' --only autograd --peer --impl agrad --workloads %s --threads %s --reps %d --warmup %d --settle "
             "%d%s",
             bin, names, threads, o->reps, o->warmup, o->settle_ms,
             o->scale == AB_SIZE_TINY    ? " --tiny"
             : o->scale == AB_SIZE_SMALL ? " --small"
                                         : "");
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    int n = read_peer(p, o, "installed", out, cap, mem, nmem);
    pclose(p);
    return n;
}

static bool torch_available(void) { return system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0; }

static const ab_result *find(const ab_result *r, int n, const char *w, const char *impl, int threads) {
    for (int i = 0; i < n; i++)
        if (r[i].ok && !strcmp(r[i].workload, w) && !strcmp(r[i].impl, impl) && r[i].threads == threads)
            return &r[i];
    return NULL;
}

/* The fastest backward of an implementation, over its thread counts. */
static const ab_result *best(const ab_result *r, int n, const char *w, const char *impl) {
    const ab_result *b = NULL;
    for (int i = 0; i < n; i++)
        if (r[i].ok && !strcmp(r[i].workload, w) && !strcmp(r[i].impl, impl) && (!b || r[i].bwd_ms < b->bwd_ms))
            b = &r[i];
    return b;
}

/* ---- Against PyTorch, memory, peers -------------------------------------------------- */

/* A result's forward (0), backward (1) or whole training step (2: forward,
 * backward and optimizer step; the backward where there is no step). */
static double metric(const ab_result *r, int m) {
    return m == 0 ? r->fwd_ms : m == 1 ? r->bwd_ms : r->fwd_ms + r->bwd_ms + r->step_ms;
}

/* The implementation's fastest thread count on that measure. */
static const ab_result *best_by(const ab_result *r, int n, const char *w, const char *impl, int m) {
    const ab_result *b = NULL;
    for (int i = 0; i < n; i++)
        if (r[i].ok && !strcmp(r[i].workload, w) && !strcmp(r[i].impl, impl) && (!b || metric(&r[i], m) < metric(b, m)))
            b = &r[i];
    return b;
}

/* Forward, backward and (for the training steps) the whole step, agrad
 * against PyTorch, each at its own best thread count; and the installed
 * library against the build tree's. */
static void print_vs_pytorch(const ab_result *r, int n) {
    bool any = false, inst = false;
    for (int i = 0; i < n; i++) {
        any |= r[i].ok && !strcmp(r[i].impl, "pytorch");
        inst |= r[i].ok && !strcmp(r[i].impl, "installed");
    }
    if (!any && !inst)
        return;
    printf("\nAgainst PyTorch: median ms at each one's best thread count (threads in brackets); PyTorch / agrad above "
           "1: agrad is faster. step = forward + backward + optimizer step\n");
    printf("%-10s %-8s %13s %13s %9s", "workload", "", "agrad", "PyTorch", "PT/agrad");
    if (inst)
        printf(" %13s %11s", "installed", "inst/agrad");
    printf("\n");
    static const char *const what[3] = {"forward", "backward", "step"};
    for (int w = 0; w < NWORKLOADS; w++) {
        for (int m = 0; m < 3; m++) {
            const ab_result *a1 = best_by(r, n, workloads[w].name, "agrad", 0);
            if (m == 2 && !(a1 && a1->step_ms > 0))
                continue;
            const ab_result *a = best_by(r, n, workloads[w].name, "agrad", m);
            const ab_result *p = best_by(r, n, workloads[w].name, "pytorch", m);
            const ab_result *q = best_by(r, n, workloads[w].name, "installed", m);
            if (!a)
                continue;
            printf("%-10s %-8s %9.3f [%d]", m == 0 ? workloads[w].name : "", what[m], metric(a, m), a->threads);
            if (p)
                printf(" %9.3f [%d] %8.2fx", metric(p, m), p->threads, metric(p, m) / metric(a, m));
            else
                printf(" %13s %9s", "-", "-");
            if (inst && q)
                printf(" %9.3f [%d] %10.2fx", metric(q, m), q->threads, metric(q, m) / metric(a, m));
            else if (inst)
                printf(" %13s %11s", "-", "-");
            printf("\n");
        }
    }
}

/* Peak memory per workload and process, above what was resident before
 * the workload's setup (a process's own baseline: PyTorch's holds the
 * torch library). */
static void print_memory(const ab_mem *m, int n) {
    if (n == 0) {
        printf("\npeak memory per workload: not measured (needs Linux's /proc/self/clear_refs)\n");
        return;
    }
    static const char *const impls_shown[3] = {"agrad", "installed", "pytorch"};
    printf("\nPeak resident memory per workload, MB above the process's memory before the workload (before: in "
           "brackets), over all its thread counts\n");
    printf("%-10s %18s %18s %18s\n", "workload", "agrad", "installed", "PyTorch");
    for (int w = 0; w < NWORKLOADS; w++) {
        bool any = false;
        for (int i = 0; i < n; i++)
            any |= !strcmp(m[i].workload, workloads[w].name);
        if (!any)
            continue;
        printf("%-10s", workloads[w].name);
        for (int k = 0; k < 3; k++) {
            const ab_mem *x = NULL;
            for (int i = 0; i < n; i++)
                if (!strcmp(m[i].workload, workloads[w].name) && !strcmp(m[i].impl, impls_shown[k]))
                    x = &m[i];
            if (x)
                printf(" %9.1f [%6.1f]", x->peak_mb - x->base_mb, x->base_mb);
            else
                printf(" %18s", "-");
        }
        printf("\n");
    }
}

static void write_memory(const ab_options *o, const ab_mem *m, int n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/memory.csv", o->out_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fputs("workload,impl,peak_mb,base_mb\n", f);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s,%s,%.3f,%.3f\n", m[i].workload, m[i].impl, m[i].peak_mb, m[i].base_mb);
    fclose(f);
}

/* A workload's results as a peer's lines (ab_options.peer). */
static void print_peer(const ab_options *o, const ab_result *r, int n, double ceiling, const ab_mem *mem) {
    (void)o;
    if (n > 0)
        printf("ceiling %s %.4f\n", r[0].workload, ceiling);
    for (int i = 0; i < n; i++)
        if (r[i].ok)
            printf("%s %d %.6f %.6f %.6f\n", r[i].workload, r[i].threads, r[i].fwd_ms, r[i].bwd_ms, r[i].step_ms);
    if (mem)
        printf("peak %s %.3f %.3f\n", mem->workload, mem->peak_mb, mem->base_mb);
    fflush(stdout);
}

static void write_outputs(const ab_options *o, const ab_result *r, int n, const ab_info *info, int ninfo) {
    char path[1024];
    snprintf(path, sizeof path, "%s/autograd.json", o->out_dir);
    FILE *j = fopen(path, "w");
    snprintf(path, sizeof path, "%s/autograd.csv", o->out_dir);
    FILE *c = fopen(path, "w");
    if (!j || !c) {
        fprintf(stderr, "agrad-bench: cannot write under %s\n", o->out_dir);
        if (j)
            fclose(j);
        if (c)
            fclose(c);
        return;
    }
    fputs("[\n", j);
    fputs("workload,impl,threads,size,nodes,edges,span,parallelism,graph_mb,forward_ms,backward_ms,speedup,"
          "scratch_mb,step_ms,ceiling\n",
          c);
    for (int i = 0; i < n; i++) {
        const ab_info *in = NULL;
        for (int k = 0; k < ninfo; k++)
            if (!strcmp(info[k].workload, r[i].workload))
                in = &info[k];
        const ab_result *one = find(r, n, r[i].workload, r[i].impl, 1);
        double speedup = one && r[i].ok ? one->bwd_ms / r[i].bwd_ms : 0;
        int64_t nodes = in ? in->st.nodes : 0, edges = in ? in->st.edges : 0, span = in ? in->st.span : 0;
        double par = span ? (double)nodes / (double)span : 0, mb = in ? in->graph_mb : 0;
        fprintf(j,
                "  {\"workload\": \"%s\", \"impl\": \"%s\", \"threads\": %d, \"size\": %lld, \"ok\": %s, "
                "\"nodes\": %lld, \"edges\": %lld, \"span\": %lld, \"parallelism\": %.2f, \"graph_mb\": %.3f, "
                "\"forward_ms\": %.6f, \"backward_ms\": %.6f, \"speedup\": %.4f, \"scratch_mb\": %.3f, "
                "\"step_ms\": %.6f, \"ceiling\": %.4f}%s\n",
                r[i].workload, r[i].impl, r[i].threads, (long long)r[i].size, r[i].ok ? "true" : "false",
                (long long)nodes, (long long)edges, (long long)span, par, mb, r[i].fwd_ms, r[i].bwd_ms, speedup,
                r[i].scratch_mb, r[i].step_ms, r[i].ceiling, i + 1 < n ? "," : "");
        fprintf(c, "%s,%s,%d,%lld,%lld,%lld,%lld,%.2f,%.3f,%.6f,%.6f,%.4f,%.3f,%.6f,%.4f\n", r[i].workload, r[i].impl,
                r[i].threads, (long long)r[i].size, (long long)nodes, (long long)edges, (long long)span, par, mb,
                r[i].fwd_ms, r[i].bwd_ms, speedup, r[i].scratch_mb, r[i].step_ms, r[i].ceiling);
    }
    fputs("]\n", j);
    fclose(j);
    fclose(c);
}

/* speedup.dat: one block per (workload, impl) of "threads speedup";
 * pytorch.dat: per workload, agrad's and PyTorch's backward at 1 thread and
 * at their best thread count. plot.gp draws both. */
static void write_plots(const ab_options *o, const ab_result *r, int n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/speedup.dat", o->out_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    int blocks = 0;
    char titles[64][48];
    for (int w = 0; w < NWORKLOADS; w++) {
        const ab_result *one = find(r, n, workloads[w].name, "agrad", 1);
        if (!one || blocks == 64)
            continue;
        fprintf(f, "# %s\n", workloads[w].name);
        for (int t = 0; t < o->nthreads; t++) {
            const ab_result *x = find(r, n, workloads[w].name, "agrad", o->threads[t]);
            if (x)
                fprintf(f, "%d %.4f\n", x->threads, one->bwd_ms / x->bwd_ms);
        }
        fprintf(f, "\n\n");
        snprintf(titles[blocks++], sizeof titles[0], "%s", workloads[w].name);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/pytorch.dat", o->out_dir);
    FILE *p = fopen(path, "w");
    if (!p)
        return;
    fprintf(p, "workload \"agrad 1 thread\" \"agrad best\" \"PyTorch 1 thread\" \"PyTorch best\"\n");
    int rows = 0;
    for (int w = 0; w < NWORKLOADS; w++) {
        const ab_result *a1 = find(r, n, workloads[w].name, "agrad", 1), *ab = best(r, n, workloads[w].name, "agrad");
        const ab_result *p1 = find(r, n, workloads[w].name, "pytorch", 1);
        const ab_result *pb = best(r, n, workloads[w].name, "pytorch");
        if (!a1 || !ab || !p1 || !pb)
            continue;
        fprintf(p, "%s %.6f %.6f %.6f %.6f\n", workloads[w].name, a1->bwd_ms, ab->bwd_ms, p1->bwd_ms, pb->bwd_ms);
        rows++;
    }
    fclose(p);
    int maxt = 1;
    for (int t = 0; t < o->nthreads; t++)
        maxt = o->threads[t] > maxt ? o->threads[t] : maxt;
    snprintf(path, sizeof path, "%s/plot.gp", o->out_dir);
    FILE *g = fopen(path, "w");
    if (!g)
        return;
    fprintf(g,
            "set terminal pngcairo size 960,640 font ',11'\n"
            "set output 'speedup.png'\n"
            "set title 'agrad backward: speedup over 1 thread (%ld cores; more threads = oversubscribed)'\n"
            "set xlabel 'threads'\nset ylabel 'speedup (1-thread backward time / backward time)'\n"
            "set key bottom right\nset grid\nset xrange [0.8:%d.2]\nset yrange [0:%ld]\nset xtics 1\nset samples 400\n"
            "cores = %ld\n"
            "plot (x < cores ? x : cores) title 'ideal: min(threads, cores)' with lines dashtype 2 linecolor 'gray'",
            sysconf(_SC_NPROCESSORS_ONLN), maxt, sysconf(_SC_NPROCESSORS_ONLN) + 1, sysconf(_SC_NPROCESSORS_ONLN));
    for (int b = 0; b < blocks; b++)
        fprintf(g, ", 'speedup.dat' index %d using 1:2 with linespoints title '%s'", b, titles[b]);
    fprintf(g, "\n");
    if (rows > 0) {
        fprintf(g, "set terminal pngcairo size 1280,640 font ',11'\n"
                   "set output 'vs_pytorch.png'\n"
                   "set title 'backward time per workload: agrad against PyTorch 1.13 (lower is better)'\n"
                   "set xlabel 'workload'\nset ylabel 'backward time (ms, log scale)'\nset logscale y\n"
                   "set yrange [*:*]\nset xrange [*:*]\nset xtics auto rotate by -30\nset key top left\n"
                   "set style data histograms\nset style histogram clustered gap 1\n"
                   "set style fill solid 0.8 border -1\n"
                   "plot 'pytorch.dat' using 2:xtic(1) title columnheader(2), '' using 3 title columnheader(3), "
                   "'' using 4 title columnheader(4), '' using 5 title columnheader(5)\n");
    }
    fclose(g);
    if (!o->plots)
        return;
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        printf("plots: skipped (gnuplot is not installed: apt-get install gnuplot-nox)\n");
        return;
    }
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot plot.gp", o->out_dir);
    if (system(cmd) != 0)
        printf("plots: gnuplot failed (see %s/plot.gp)\n", o->out_dir);
}

static void print_tables(const ab_options *o, const ab_result *r, int n, const ab_info *info, int ninfo) {
    printf("\nGraphs (backward: nodes, edges; work = nodes, span = nodes on the longest path; graph MB = what the "
           "forward allocated)\n");
    printf("%-10s %7s %8s %8s %7s %11s %9s\n", "workload", "size", "nodes", "edges", "span", "parallelism", "graph MB");
    for (int i = 0; i < ninfo; i++)
        printf("%-10s %7lld %8lld %8lld %7lld %11.1f %9.2f\n", info[i].workload, (long long)info[i].size,
               (long long)info[i].st.nodes, (long long)info[i].st.edges, (long long)info[i].st.span,
               info[i].st.span ? (double)info[i].st.nodes / (double)info[i].st.span : 0.0, info[i].graph_mb);

    printf("\nMedian times in ms (forward / backward / optimizer step of the training steps), backward speedup "
           "over 1 thread next to the ceiling (two plain threads' speedup, measured right before the workload), and "
           "the most scratch a backward touched (MB)\n");
    printf("%-10s %-10s %7s %11s %11s %9s %9s %9s %11s\n", "workload", "impl", "threads", "forward", "backward", "step",
           "speedup", "ceiling", "scratch MB");
    int flagged = 0;
    for (int i = 0; i < n; i++) {
        if (!r[i].ok) {
            printf("%-10s %-10s %7d %11s %11s %9s %9s %9s %11s\n", r[i].workload, r[i].impl, r[i].threads, "failed",
                   "-", "-", "-", "-", "-");
            continue;
        }
        const ab_result *one = find(r, n, r[i].workload, r[i].impl, 1);
        printf("%-10s %-10s %7d %11.3f %11.3f", r[i].workload, r[i].impl, r[i].threads, r[i].fwd_ms, r[i].bwd_ms);
        if (r[i].step_ms > 0)
            printf(" %9.3f", r[i].step_ms);
        else
            printf(" %9s", "-");
        if (one)
            printf(" %8.2fx", one->bwd_ms / r[i].bwd_ms);
        else
            printf(" %9s", "-");
        if (r[i].ceiling > 0)
            printf(" %8.2fx", r[i].ceiling);
        else
            printf(" %9s", "-");
        if (r[i].scratch_mb >= 0)
            printf(" %11.2f", r[i].scratch_mb);
        else
            printf(" %11s", "-");
        bool bad = r[i].threads > 1 && r[i].ceiling > 0 && r[i].ceiling < AB_CEILING_MIN;
        flagged += bad;
        printf("%s\n", bad ? "  not meaningful" : "");
    }
    if (flagged)
        printf("(not meaningful: the ceiling was under %.1fx, so the second core was not there to be had; %d "
               "rows)\n",
               AB_CEILING_MIN, flagged);

    printf("\nBackward, agrad against the others (same run; above 1: agrad is faster)\n");
    printf("%-10s %14s %14s %18s %16s\n", "workload", "det / default", "omp / ws", "PyTorch best / agrad",
           "agrad ns/node");
    for (int w = 0; w < NWORKLOADS; w++) {
        const char *name = workloads[w].name;
        const ab_result *ab = best(r, n, name, "agrad");
        if (!ab)
            continue;
        const ab_result *db = find(r, n, name, "agrad-det", ab->threads);
        const ab_result *ob = best(r, n, name, "agrad-omp");
        const ab_result *pb = best(r, n, name, "pytorch");
        int64_t nodes = 0;
        for (int k = 0; k < ninfo; k++)
            if (!strcmp(info[k].workload, name))
                nodes = info[k].st.nodes;
        printf("%-10s", name);
        if (db)
            printf(" %13.2fx", db->bwd_ms / ab->bwd_ms);
        else
            printf(" %14s", "-");
        if (ob)
            printf(" %13.2fx", ob->bwd_ms / ab->bwd_ms);
        else
            printf(" %14s", "-");
        if (pb)
            printf(" %17.2fx", pb->bwd_ms / ab->bwd_ms);
        else
            printf(" %18s", "-");
        printf(" %16.1f\n", nodes ? ab->bwd_ms * 1e6 / (double)nodes : 0.0);
    }
    printf("(ratios use each implementation's best thread count; det / default at agrad's best)\n");
    (void)o;
}

/* ---- Elementwise against memory bandwidth -------------------------------------------
 * STREAM's triad a = b + 1.5 c over arrays of n floats, cut in equal parts
 * over `threads` threads (the calling one and threads - 1 started once, in
 * step through barriers): the median of reps, in GB/s counting three
 * arrays as STREAM does. */

typedef struct {
    float *a, *b, *c;
    int64_t lo, hi;
    int reps;
    pthread_barrier_t *start, *end;
} triad_part;

static void triad_range(float *restrict a, const float *restrict b, const float *restrict c, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++)
        a[i] = b[i] + 1.5f * c[i];
}

static void *triad_worker(void *arg) {
    const triad_part *p = arg;
    for (int r = 0; r < p->reps; r++) {
        pthread_barrier_wait(p->start);
        triad_range(p->a, p->b, p->c, p->lo, p->hi);
        pthread_barrier_wait(p->end);
    }
    return NULL;
}

static double triad_gbs(int64_t n, int threads, int reps) {
    enum { MAX_T = 64 };
    threads = threads < 1 ? 1 : threads > MAX_T ? MAX_T : threads;
    float *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b), *c = malloc((size_t)n * sizeof *c);
    double *t = malloc((size_t)reps * sizeof *t);
    double gbs = 0;
    pthread_barrier_t start, end;
    if (a && b && c && t && !pthread_barrier_init(&start, NULL, (unsigned)threads) &&
        !pthread_barrier_init(&end, NULL, (unsigned)threads)) {
        for (int64_t i = 0; i < n; i++)
            a[i] = 0, b[i] = 1, c[i] = 2;
        triad_part parts[MAX_T];
        pthread_t tid[MAX_T];
        int started = 1;
        for (int k = 0; k < threads; k++)
            parts[k] = (triad_part){a, b, c, n * k / threads, n * (k + 1) / threads, reps, &start, &end};
        for (int k = 1; k < threads; k++)
            started += pthread_create(&tid[k], NULL, triad_worker, &parts[k]) == 0;
        if (started == threads) {
            for (int r = 0; r < reps; r++) {
                double t0 = now_ms();
                pthread_barrier_wait(&start);
                triad_range(a, b, c, parts[0].lo, parts[0].hi);
                pthread_barrier_wait(&end);
                t[r] = now_ms() - t0;
            }
            gbs = 3.0 * (double)n * sizeof(float) / (median(t, reps) * 1e6);
        }
        for (int k = 1; k < started; k++)
            pthread_join(tid[k], NULL);
        pthread_barrier_destroy(&start);
        pthread_barrier_destroy(&end);
    }
    free(a);
    free(b);
    free(c);
    free(t);
    return gbs;
}

/* The elementwise workload's forward and backward in GB/s (the bytes its
 * ops must move at least, over the median time) next to the triad at the
 * same thread count, on arrays the size of its tensors (in cache, as the
 * previous op's output is) and on arrays far larger than the cache. */
static void elementwise_report(const ab_options *o, const ab_result *r, int n) {
    const ab_result *any = NULL;
    for (int i = 0; i < n && !any; i++)
        if (r[i].ok && !strcmp(r[i].workload, "elementwise"))
            any = &r[i];
    if (!any)
        return;
    const double mb = (double)any->size * sizeof(float) / 1e6; /* one tensor, MB */
    const int64_t big = o->scale == AB_SIZE_TINY ? 0 : 16 << 20;
    printf("\nelementwise: GB/s of the %.0f + %.0f tensors of %.2f MB its forward and backward move at least, "
           "against STREAM's triad at the same thread count\n",
           ELEM_FWD_TENSORS, ELEM_BWD_TENSORS, mb);
    printf("%-10s %7s %9s %9s %13s %13s %10s %10s\n", "impl", "threads", "fwd GB/s", "bwd GB/s", "triad (size)",
           "triad (16M)", "fwd/triad", "bwd/triad");
    for (int t = 0; t < o->nthreads; t++) {
        const double tri = triad_gbs(any->size, o->threads[t], o->reps * 4 + 1);
        const double mem = big ? triad_gbs(big, o->threads[t], o->reps + 2) : 0;
        for (int i = 0; i < n; i++) {
            if (!r[i].ok || strcmp(r[i].workload, "elementwise") || r[i].threads != o->threads[t] ||
                !strcmp(r[i].impl, "agrad-det") || !strcmp(r[i].impl, "agrad-omp"))
                continue;
            const double fwd = ELEM_FWD_TENSORS * mb / r[i].fwd_ms, bwd = ELEM_BWD_TENSORS * mb / r[i].bwd_ms;
            printf("%-10s %7d %9.1f %9.1f %13.1f ", r[i].impl, r[i].threads, fwd, bwd, tri);
            if (mem > 0)
                printf("%13.1f", mem);
            else
                printf("%13s", "-");
            printf(" %10.2f %10.2f\n", tri > 0 ? fwd / tri : 0.0, tri > 0 ? bwd / tri : 0.0);
        }
    }
}

int bench_autograd_run(const ab_options *o) {
    int maxr = NWORKLOADS * (NIMPLS + 2) * o->nthreads;
    ab_result *res = calloc((size_t)maxr, sizeof *res);
    ab_info info[NWORKLOADS];
    ab_mem mem[NWORKLOADS * 3];
    int nres = 0, ninfo = 0, failures = 0, nmem = 0, selected = 0;
    double *tf = calloc((size_t)o->reps, sizeof *tf), *tb = calloc((size_t)o->reps, sizeof *tb);
    double *ts = calloc((size_t)o->reps, sizeof *ts);
    if (!res || !tf || !tb || !ts)
        return -1;
    bool have_omp = ag_set_executor(AG_EXECUTOR_OPENMP) == 0;
    ag_set_executor(AG_EXECUTOR_WS);

    int total = 0, done = 0;
    for (int w = 0; w < NWORKLOADS; w++)
        if (ab_in_list(o->workloads, workloads[w].name))
            for (int i = 0; i < NIMPLS; i++)
                total += ab_in_list(o->impls, impls[i]) && (i != 2 || have_omp) ? o->nthreads : 0;

    for (int w = 0; w < NWORKLOADS; w++) {
        const ab_workload *wl = &workloads[w];
        if (!ab_in_list(o->workloads, wl->name))
            continue;
        selected++;
        /* what the machine gives right now, and memory from here on */
        const double ceiling = ab_ceiling(9);
        const bool peak_ok = ab_peak_reset();
        const double base_mb = ab_resident_mb();
        ab_state s = {.params = ag_ctx_new(), .size = wl->size[o->scale]};
        ag_manual_seed(1234);
        if (!s.params || wl->setup(&s) != 0) {
            fprintf(stderr, "agrad-bench: %s: setup failed: %s\n", wl->name, ag_last_error());
            return -1;
        }
        ag_ctx *g = ag_ctx_new();
        /* graph statistics from one forward */
        ag_ctx_reset(g);
        ag_tensor *root = wl->forward(&s, g);
        info[ninfo++] =
            (ab_info){wl->name, s.size, root ? graph_stats(root) : (ab_stats){0}, (double)ag_ctx_bytes(g) / 1048576.0};
        /* configurations of this workload, each measured warm */
        int first = nres;
        for (int i = 0; i < NIMPLS; i++) {
            if (!ab_in_list(o->impls, impls[i]) || (i == 2 && !have_omp))
                continue;
            for (int t = 0; t < o->nthreads; t++)
                res[nres++] = (ab_result){.workload = wl->name,
                                          .impl = impls[i],
                                          .threads = o->threads[t],
                                          .size = s.size,
                                          .ceiling = ceiling,
                                          .ok = true};
        }
        int nconf = nres - first;
        double *times = calloc((size_t)(nconf * o->reps * 3), sizeof *times);
        if (!times)
            return -1;
        /* A first pass that warms caches, the arena and the CPU's clock, so
         * that the first configuration is not measured cold. */
        for (int r = 0; r < o->warmup; r++) {
            double f, b, mb = 0;
            one_round(&s, wl, g, 0, 1, &f, &b, &mb);
        }
        for (int k = 0; k < nconf; k++) {
            ab_result *c = &res[first + k];
            int impl = !strcmp(c->impl, "agrad") ? 0 : !strcmp(c->impl, "agrad-det") ? 1 : 2;
            struct timespec settle = {o->settle_ms / 1000, (long)(o->settle_ms % 1000) * 1000000};
            nanosleep(&settle, NULL);
            for (int round = 0; round < o->warmup + o->reps && c->ok; round++) {
                double f, b;
                if (one_round(&s, wl, g, impl, c->threads, &f, &b, &c->scratch_mb) != 0) {
                    fprintf(stderr, "\nagrad-bench: %s/%s at %d threads failed: %s\n", wl->name, c->impl, c->threads,
                            ag_last_error());
                    c->ok = false;
                    failures++;
                } else if (round >= o->warmup) {
                    times[(k * o->reps + round - o->warmup) * 3] = f;
                    times[(k * o->reps + round - o->warmup) * 3 + 1] = b;
                    times[(k * o->reps + round - o->warmup) * 3 + 2] = s.step_ms;
                }
            }
        }
        for (int k = 0; k < nconf; k++) {
            ab_result *c = &res[first + k];
            for (int q = 0; q < o->reps; q++) {
                tf[q] = times[(k * o->reps + q) * 3];
                tb[q] = times[(k * o->reps + q) * 3 + 1];
                ts[q] = times[(k * o->reps + q) * 3 + 2];
            }
            c->fwd_ms = median(tf, o->reps);
            c->bwd_ms = median(tb, o->reps);
            c->step_ms = median(ts, o->reps);
            char what[96];
            snprintf(what, sizeof what, "%s %s %dT: backward %.3f ms", wl->name, c->impl, c->threads, c->bwd_ms);
            progress(++done, total, what);
        }
        free(times);
        ag_ctx_free(g);
        free(s.targets);
        ag_ctx_free(s.params);
        if (peak_ok)
            mem[nmem++] = (ab_mem){wl->name, "agrad", ab_peak_mb(), base_mb};
        if (o->peer)
            print_peer(o, res + first, nconf, ceiling, peak_ok ? &mem[nmem - 1] : NULL);
    }
    set_impl(0);
    ag_set_num_threads(0);
    if (isatty(2))
        fputs("\r\033[K", stderr);
    if (o->peer) {
        int rc = ab_in_list(o->workloads, "optim") ? bench_optim_run(o) : 0;
        free(res);
        free(tf);
        free(tb);
        free(ts);
        return failures + rc;
    }

    if (selected && o->installed) {
        nres += run_installed(o, res + nres, maxr - nres, mem, &nmem);
        if (isatty(2))
            fputs("\r\033[K", stderr);
    }
    if (selected && o->pytorch && ab_in_list(o->impls, "pytorch")) {
        if (torch_available()) {
            fprintf(stderr, "pytorch: running bench/pytorch/autograd.py\n");
            nres += run_pytorch(o, res + nres, maxr - nres, mem, &nmem);
            if (isatty(2))
                fputs("\r\033[K", stderr);
        } else {
            printf("pytorch: skipped (python3-torch is not installed: apt-get install python3-torch)\n");
        }
    }
    if (selected) {
        print_tables(o, res, nres, info, ninfo);
        elementwise_report(o, res, nres);
        print_vs_pytorch(res, nres);
        print_memory(mem, nmem);
        if (o->out_dir) {
            write_outputs(o, res, nres, info, ninfo);
            write_memory(o, mem, nmem);
            write_plots(o, res, nres);
        }
    }
    if (ab_in_list(o->workloads, "optim"))
        failures += bench_optim_run(o);
    /* the per-workload stretches above reset the process's own peak */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double peak = (double)ru.ru_maxrss / 1024.0;
    for (int i = 0; i < nmem; i++)
        if (!strcmp(mem[i].impl, "agrad") && mem[i].peak_mb > peak)
            peak = mem[i].peak_mb;
    printf("peak resident memory of agrad-bench: %.1f MB\n", peak);
    free(res);
    free(tf);
    free(tb);
    free(ts);
    return failures;
}
