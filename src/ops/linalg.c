/* Matrix products, for every op that multiplies matrices (ag__gemm), and
 * matmul of 2-D tensors: out (m,n) = a (m,k) @ b (k,n), with its backward
 * da = g @ b^T, db = a^T @ g. Products go to BLIS, one thread per call;
 * without BLIS, to a cache-blocked C kernel whose inner loop runs along
 * rows so it vectorizes, with the naive triple loop beside it as the
 * reference the tests compare with (ops/linalg_kernels.inc). */
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
 * A product of at least AG__PAR_GEMM_MIN multiply-adds is cut into tiles of
 * C when it may run on several threads (ag__kernel_threads() > 1): rows
 * of C in blocks of AG__TILE_M when there are at least two such blocks,
 * else columns in blocks of AG__TILE_N, boundaries fixed by the shape
 * alone. The tiles run as a parallel-for, each one single-threaded BLAS
 * (or C kernel) call. On one thread the product is one call: no tile
 * repacks what the whole product packed once.
 *
 * Either way the bits are the same. A product that may ever be tiled runs
 * on BLIS's packed algorithm, whose sum for one element of C depends on k
 * alone (blocks of k, then one register per element), never on where the
 * rows or columns of C were cut; BLIS's small-matrix path, which picks
 * its kernels (and so its sum order) from m and n, is kept for products
 * too small to tile. The C kernel sums over k in one order whatever the
 * cut. So every product's result depends only on its shapes and operands
 * (and on the BLIS build and the CPU's kernels), never on the thread
 * count, the schedule or deterministic mode. */

typedef struct {
    ag_dtype dt;
    bool ta, tb, by_rows, acc;
    int64_t m, n, k, lda, ldb, ldc;
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

static void ag__gemm_tiles(void *arg, int64_t lo, int64_t hi) {
    const ag__gemm_job *g = arg;
    size_t es = ag__dtype_size(g->dt);
    for (int64_t tile = lo; tile < hi; tile++) {
        const char *A = g->A, *B = g->B;
        char *C = g->C;
        int64_t m = g->m, n = g->n;
        if (g->by_rows) { /* rows i0.. of op(A) and of C */
            int64_t i0 = tile * AG__TILE_M;
            m = g->m - i0 < AG__TILE_M ? g->m - i0 : AG__TILE_M;
            A += (size_t)(g->ta ? i0 : i0 * g->lda) * es;
            C += (size_t)(i0 * g->ldc) * es;
        } else { /* columns j0.. of op(B) and of C */
            int64_t j0 = tile * AG__TILE_N;
            n = g->n - j0 < AG__TILE_N ? g->n - j0 : AG__TILE_N;
            B += (size_t)(g->tb ? j0 * g->ldb : j0) * es;
            C += (size_t)j0 * es;
        }
        ag__gemm_one(g, m, n, A, B, C, true);
    }
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
    ag__gemm_job g = {dt, ta, tb, m >= 2 * AG__TILE_M, acc, m, n, k, lda, ldb, ldc, A, B, C};
    int64_t tiles = g.by_rows ? (m + AG__TILE_M - 1) / AG__TILE_M : (n + AG__TILE_N - 1) / AG__TILE_N;
    bool tileable = ag__gemm_work(m, n, k) >= AG__PAR_GEMM_MIN && tiles >= 2;
    if (tileable && ag__kernel_threads() > 1)
        ag__parallel_for(tiles, 1, ag__gemm_tiles, &g);
    else
        ag__gemm_one(&g, m, n, A, B, C, tileable);
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

static const ag__node_kind ag__mm_kind = {
    .name = "MmBackward0", .backward = ag__mm_backward, .attr_size = sizeof(ag__mm_attr), .writes_fresh = true};

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
