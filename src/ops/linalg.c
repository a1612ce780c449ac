/* Matrix products, for every op that multiplies matrices (ag__gemm), and
 * matmul of 2-D tensors: out (m,n) = a (m,k) @ b (k,n), with its backward
 * da = g @ b^T, db = a^T @ g. Products go to BLIS, one thread per call;
 * without BLIS, to a cache-blocked C kernel whose inner loop runs along
 * rows so it vectorizes, with the naive triple loop beside it as the
 * reference the tests compare with (ops/linalg_kernels.inc). */
#include "ops/grad_ops.h"
#include "ops/ops.h"

#include <inttypes.h>

#if defined(AG_HAVE_BLIS)
#include <blis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#elif defined(AG_HAVE_OPENBLAS)
#include <cblas.h>
#include <pthread.h>

/* Debian's serial OpenBLAS returns wrong products when several threads call
 * it at once; it is only here to show that the stress suite catches it.
 * Any other OpenBLAS build found at run time is told to use one thread. */
void openblas_set_num_threads(int);
static pthread_once_t ag__blas_once = PTHREAD_ONCE_INIT;
static void ag__blas_init(void) { openblas_set_num_threads(1); }
#endif

/* Below this many multiply-adds the call overhead of a BLAS is not worth it. */
#define AG__BLAS_MIN_WORK (32 * 32 * 32)

#define AG__MM_BLOCK_K 128
#define AG__MM_BLOCK_N 256
#define AG__MM_PANEL_ROWS 64 /* B^T kernel: 64 rows x 256 of B, 128 KB of doubles */
#define AG__MM_PANEL_K 256

#if defined(AG_HAVE_BLIS)
/* BLIS picks its kernels from the CPU it finds. A CPU newer than the BLIS
 * release (a Zen 5 under Debian's BLIS 0.9) gets its portable C kernels,
 * about 8x slower than its AVX-512 ones (21 against 170 GFLOP/s at 512 on
 * one thread here). So when BLIS is agrad's private copy, found nothing
 * better than those and was not told what to use (BLIS_ARCH_TYPE), every
 * product runs with the kernels of the newest architecture whose
 * instructions the CPU has: Skylake-X's with AVX-512, Haswell's with AVX2
 * and FMA. NULL: BLIS's own choice. */
static cntx_t *ag__blis_cntx;
static char ag__blis_name[96]; /* for ag__blas_name */
static pthread_once_t ag__blis_once = PTHREAD_ONCE_INIT;

static void ag__blis_init(void) {
    bli_init();
    arch_t id = bli_arch_query_id();
#if defined(AG_BLIS_PRIVATE) && defined(__x86_64__)
    if (id == BLIS_ARCH_GENERIC && !getenv("BLIS_ARCH_TYPE")) {
        __builtin_cpu_init();
        arch_t pick = BLIS_NUM_ARCHS;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
            pick = BLIS_ARCH_SKX;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            pick = BLIS_ARCH_HASWELL;
        cntx_t **c = pick != BLIS_NUM_ARCHS ? bli_gks_lookup_id(pick) : NULL;
        if (c && c[BLIS_NAT]) {
            ag__blis_cntx = c[BLIS_NAT];
            id = pick;
        }
    }
#endif
    snprintf(ag__blis_name, sizeof ag__blis_name, "BLIS %s, %s kernels%s", bli_info_get_version_str(),
             bli_arch_string(id), ag__blis_cntx ? " (chosen by agrad)" : "");
}

/* Every call gets its own runtime object asking for one thread: BLIS then
 * ignores BLIS_NUM_THREADS and OMP_NUM_THREADS, and a threaded BLIS build
 * (where agrad links a shared libblis) starts no threads either. BLIS keeps
 * no per-call state outside its locked memory pools, so any number of
 * threads may be in here at once. */
static void ag__blis_rntm(rntm_t *rntm, bool packed) {
    pthread_once(&ag__blis_once, ag__blis_init);
    *rntm = (rntm_t)BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, rntm);
    if (packed)
        bli_rntm_disable_l3_sup(rntm);
}
#endif

void *ag__blis_kernels(void) {
#if defined(AG_HAVE_BLIS)
    pthread_once(&ag__blis_once, ag__blis_init);
    return ag__blis_cntx;
#else
    return NULL;
#endif
}

const char *ag__blas_name(void) {
#if defined(AG_HAVE_BLIS)
    pthread_once(&ag__blis_once, ag__blis_init);
    return ag__blis_name;
#elif defined(AG_HAVE_OPENBLAS)
    return "OpenBLAS (serial)";
#else
    return "the C kernel";
#endif
}

/* The multiply-adds of a product, saturating (sizes of tensors that exist:
 * each of m*k, k*n and m*n fits, their product may not). */
static int64_t ag__gemm_work(int64_t m, int64_t n, int64_t k) {
    int64_t w;
    return __builtin_mul_overflow(m, n, &w) || __builtin_mul_overflow(w, k, &w) ? INT64_MAX : w;
}

#define AG__KERNELS "ops/linalg_kernels.inc"
#include "ops/kernel_template.h"

/* ---- Products over the pool -------------------------------------------------------
 * A product of at least AG__PAR_GEMM_MIN multiply-adds, with at least
 * 2 * AG__GEMM_ALIGN rows (or columns) of C to cut, is split over the
 * pool when it may run on several threads (ag__kernel_threads() > 1):
 * into one piece per thread, along the rows of C when C has at least as
 * many rows as columns (each piece then packs all of op(B), the smaller
 * operand), else along its columns, the cuts on multiples of
 * AG__GEMM_ALIGN. Each piece is one single-threaded BLAS (or C kernel)
 * call, so each packs the duplicated operand once, not once per small
 * tile. Inside a parallel backward the pieces are a parallel-for of the
 * node's own pool: a participant that is idle takes the second piece, a
 * busy one never sees it, and no thread is added. On one thread the
 * product is one call.
 *
 * Either way the bits are the same. A product that may ever be split runs
 * on BLIS's packed algorithm, whose sum for one element of C depends on k
 * alone (blocks of k, then one register per element), never on where the
 * rows or columns of C were cut; BLIS's small-matrix path, which picks
 * its kernels (and so its sum order) from m and n, is kept for products
 * too small to split. The C kernel sums over k in one order whatever the
 * cut. So every product's result depends only on its shapes and operands
 * (and on the BLIS build and the CPU's kernels), never on the thread
 * count, the schedule or deterministic mode. */

typedef struct {
    ag_dtype dt;
    bool ta, tb, by_rows, acc;
    int64_t m, n, k, lda, ldb, ldc;
    int64_t piece; /* rows (or columns) of C per piece */
    const void *A, *B;
    void *C;
} ag__gemm_job;

static void ag__gemm_one(const ag__gemm_job *g, int64_t m, int64_t n, const void *A, const void *B, void *C,
                         bool packed) {
    if (g->dt == AG_FLOAT32)
        ag__gemm_one_f32(g->ta, g->tb, m, n, g->k, A, g->lda, B, g->ldb, C, g->ldc, g->acc, packed);
    else
        ag__gemm_one_f64(g->ta, g->tb, m, n, g->k, A, g->lda, B, g->ldb, C, g->ldc, g->acc, packed);
}

static void ag__gemm_pieces(void *arg, int64_t lo, int64_t hi) {
    const ag__gemm_job *g = arg;
    size_t es = ag__dtype_size(g->dt);
    for (int64_t piece = lo; piece < hi; piece++) {
        const char *A = g->A, *B = g->B;
        char *C = g->C;
        int64_t m = g->m, n = g->n, i0 = piece * g->piece;
        if (g->by_rows) { /* rows i0.. of op(A) and of C */
            m = g->m - i0 < g->piece ? g->m - i0 : g->piece;
            A += (size_t)(g->ta ? i0 : i0 * g->lda) * es;
            C += (size_t)(i0 * g->ldc) * es;
        } else { /* columns i0.. of op(B) and of C */
            n = g->n - i0 < g->piece ? g->n - i0 : g->piece;
            B += (size_t)(g->tb ? i0 * g->ldb : i0) * es;
            C += (size_t)i0 * es;
        }
        ag__gemm_one(g, m, n, A, B, C, true);
    }
}

/* Pieces of g for nt threads: g->piece rows or columns each, on multiples
 * of AG__GEMM_ALIGN; the number of pieces. */
static int64_t ag__gemm_split(ag__gemm_job *g, int nt) {
    int64_t span = g->by_rows ? g->m : g->n, units = (span + AG__GEMM_ALIGN - 1) / AG__GEMM_ALIGN;
    int64_t parts = nt < units ? nt : units;
    int64_t per = (units + parts - 1) / parts; /* units per piece */
    g->piece = per * AG__GEMM_ALIGN;
    return (span + g->piece - 1) / g->piece;
}

void ag__gemm(ag_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda, const void *B,
              int64_t ldb, void *C, int64_t ldc, bool acc) {
    /* An empty C: nothing to do (the loops over the other sizes, 2^62 of
     * them for an empty operand, never start). k == 0: C is a sum of
     * nothing. */
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        if (!acc)
            for (int64_t i = 0; i < m; i++)
                memset((char *)C + (size_t)(i * ldc) * ag__dtype_size(dt), 0, (size_t)n * ag__dtype_size(dt));
        return;
    }
    ag__gemm_job g = {dt, ta, tb, m >= n, acc, m, n, k, lda, ldb, ldc, 0, A, B, C};
    int64_t span = g.by_rows ? m : n;
    bool splittable = ag__gemm_work(m, n, k) >= AG__PAR_GEMM_MIN && span >= 2 * AG__GEMM_ALIGN;
    int nt = splittable ? ag__kernel_threads() : 1;
    int64_t pieces = nt > 1 ? ag__gemm_split(&g, nt) : 1;
    if (pieces > 1)
        ag__parallel_for(pieces, 1, ag__gemm_pieces, &g);
    else
        ag__gemm_one(&g, m, n, A, B, C, splittable);
}

/* ==== matmul ======================================================================
 * out (m,n) = a (m,k) @ b (k,n). */

typedef struct {
    int64_t k; /* the inner size */
} ag__mm_attr;
static ag__mm_attr *ag__mm_attr_of(ag_node *node) { return ag__node_attr(node); }

/* out = a @ b:  da (m,k) = g (m,n) @ b^T (n,k);  db (k,n) = a^T (k,m) @ g (m,n) */
static int ag__mm_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, const bool *fresh, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    int64_t m = dout->shape[0], n = dout->shape[1], k = ag__mm_attr_of(node)->k;
    ag_tensor *a = dinp[1] ? ag__saved_get(node, 0) : NULL, *b = dinp[0] ? ag__saved_get(node, 1) : NULL;
    if ((dinp[1] && !a) || (dinp[0] && !b))
        return ag_last_status();
    if (dinp[0])
        ag__gemm(dout->dtype, false, true, m, k, n, dout->data, n, b->data, n, dinp[0]->data, k, !fresh[0]);
    if (dinp[1])
        ag__gemm(dout->dtype, true, false, k, n, m, a->data, k, dout->data, n, dinp[1]->data, n, !fresh[1]);
    return 0;
}

/* Whether PyTorch would see input i as column-major (strides (1, rows)):
 * a transposed view (agrad's transposes are copies, but PyTorch's t() and
 * transpose() are views), or a 1 x 1 matrix. PyTorch's formula then takes
 * another form, with other nodes. */
static bool ag__mm_colmajor(const ag_node *node, int i) {
    const ag_tensor *in = node->next[i]->out;
    const char *k = node->next[i]->kind->name;
    return (in->shape[0] == 1 && in->shape[1] == 1) || !strcmp(k, "TBackward0") || !strcmp(k, "TransposeBackward0");
}

/* The same for create_graph (PyTorch's mm_mat1_backward / mm_mat2_backward):
 *   da = g.mm(b.t())          MmBackward0, TBackward0
 *        (a column-major: b.mm(g.t()).t())
 *   db = a.t().mm(g)
 *        (b column-major: g.t().mm(a).t()) */
static int ag__mm_backward_graph(ag_node *node, ag_tensor *g, const bool *need, ag_tensor **dinp, ag_ctx *ctx) {
    /* the second input first, as PyTorch's generated backwards (node order) */
    if (need[1]) {
        ag_tensor *a = ag__saved_get(node, 0);
        if (!a)
            return ag_last_status();
        dinp[1] =
            ag__mm_colmajor(node, 1) ? ag__t(ctx, ag_matmul(ctx, ag__t(ctx, g), a)) : ag_matmul(ctx, ag__t(ctx, a), g);
        if (!dinp[1])
            return ag__graph_result(NULL);
    }
    if (need[0]) {
        ag_tensor *b = ag__saved_get(node, 1);
        if (!b)
            return ag_last_status();
        dinp[0] =
            ag__mm_colmajor(node, 0) ? ag__t(ctx, ag_matmul(ctx, b, ag__t(ctx, g))) : ag_matmul(ctx, g, ag__t(ctx, b));
        if (!dinp[0])
            return ag__graph_result(NULL);
    }
    return 0;
}

static const ag__node_kind ag__mm_kind = {.name = "MmBackward0",
                                          .backward = ag__mm_backward,
                                          .backward_graph = ag__mm_backward_graph,
                                          .attr_size = sizeof(ag__mm_attr),
                                          .writes_fresh = true};

static int ag__mm_check(const ag_tensor *a, const ag_tensor *b) {
    if (a->ndim != 2 || b->ndim != 2)
        return ag__error(AG_ESHAPE, "ag_matmul: both arguments must be 2-D, but got %d-D and %d-D", a->ndim, b->ndim);
    if (a->shape[1] != b->shape[0])
        return ag__error(AG_ESHAPE,
                         "mat1 and mat2 shapes cannot be multiplied (%" PRId64 "x%" PRId64 " and %" PRId64 "x%" PRId64
                         ")",
                         a->shape[0], a->shape[1], b->shape[0], b->shape[1]);
    return 0;
}

ag_tensor *ag_matmul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    if (a && b && ctx && (a->ndim < 2 || b->ndim < 2))
        return ag__matmul_1d(ctx, a, b);
    ag_tensor *in[2] = {a, b};
    ag__op op;
    if (ag__op_begin(&op, "ag_matmul", ctx, 2, in) || ag__mm_check(a, b))
        return NULL;
    int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
    ag_tensor *out = ag__op_output(&op, 2, (int64_t[]){m, n});
    if (!out)
        return NULL;
    a = op.in[0], b = op.in[1]; /* contiguous */
    ag__gemm(a->dtype, false, false, m, n, k, a->data, k, b->data, n, out->data, n, false);
    ag_node *node = ag__op_record(&op, &ag__mm_kind);
    if (node) {
        ag__mm_attr_of(node)->k = k;
        if (b->requires_grad) /* as PyTorch: each factor saved only for the other's gradient */
            ag__save(node, 0, a, false);
        if (a->requires_grad)
            ag__save(node, 1, b, false);
    }
    return ag__op_end(&op);
}
