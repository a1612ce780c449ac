/* Matrix multiply of 2-D tensors: out (m,n) = a (m,k) @ b (k,n), with its
 * backward da += g @ b^T, db += a^T @ g. Products go to BLIS, one thread
 * per call; without BLIS, to a cache-blocked C kernel whose inner loop runs
 * along rows so it vectorizes, with the naive triple loop beside it as the
 * reference the tests compare with. */
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

/* C (m,n) += op(A) @ op(B), op(X) = X or X^T as the flags say; lda/ldb/ldc
 * are row lengths of the stored matrices. */
#define AG__GEMM(T)                                                                                                    \
    static void ag__gemm_c_##T(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T *A, int64_t lda, const T *B, \
                               int64_t ldb, T *C, int64_t ldc) {                                                       \
        if (!tb) {                                                                                                     \
            /* C[i, j0:j1] += A(i, p) * B[p, j0:j1], blocked over p and j */                                           \
            for (int64_t j0 = 0; j0 < n; j0 += AG__MM_BLOCK_N) {                                                       \
                int64_t j1 = j0 + AG__MM_BLOCK_N < n ? j0 + AG__MM_BLOCK_N : n;                                        \
                for (int64_t p0 = 0; p0 < k; p0 += AG__MM_BLOCK_K) {                                                   \
                    int64_t p1 = p0 + AG__MM_BLOCK_K < k ? p0 + AG__MM_BLOCK_K : k;                                    \
                    for (int64_t i = 0; i < m; i++) {                                                                  \
                        T *c = C + i * ldc;                                                                            \
                        for (int64_t p = p0; p < p1; p++) {                                                            \
                            const T aip = ta ? A[p * lda + i] : A[i * lda + p];                                        \
                            const T *b = B + p * ldb;                                                                  \
                            _Pragma("omp simd") for (int64_t j = j0; j < j1; j++) c[j] += aip * b[j];                  \
                        }                                                                                              \
                    }                                                                                                  \
                }                                                                                                      \
            }                                                                                                          \
        } else if (!ta) {                                                                                              \
            /* C[i, j] += dot(A[i, p0:p1], B[j, p0:p1]): a panel of B's rows stays in cache while                      \
             * every row of A passes over it */                                                                        \
            for (int64_t j0 = 0; j0 < n; j0 += AG__MM_PANEL_ROWS) {                                                    \
                int64_t j1 = j0 + AG__MM_PANEL_ROWS < n ? j0 + AG__MM_PANEL_ROWS : n;                                  \
                for (int64_t p0 = 0; p0 < k; p0 += AG__MM_PANEL_K) {                                                   \
                    int64_t p1 = p0 + AG__MM_PANEL_K < k ? p0 + AG__MM_PANEL_K : k;                                    \
                    for (int64_t i = 0; i < m; i++) {                                                                  \
                        const T *a = A + i * lda;                                                                      \
                        for (int64_t j = j0; j < j1; j++) {                                                            \
                            const T *b = B + j * ldb;                                                                  \
                            T acc = 0;                                                                                 \
                            _Pragma("omp simd reduction(+ : acc)") for (int64_t p = p0; p < p1; p++) acc +=            \
                                a[p] * b[p];                                                                           \
                            C[i * ldc + j] += acc;                                                                     \
                        }                                                                                              \
                    }                                                                                                  \
                }                                                                                                      \
            }                                                                                                          \
        } else {                                                                                                       \
            /* both transposed (no op needs it yet): C[i, j] += sum_p A[p, i] B[j, p] */                               \
            for (int64_t i = 0; i < m; i++)                                                                            \
                for (int64_t j = 0; j < n; j++) {                                                                      \
                    const T *b = B + j * ldb;                                                                          \
                    T acc = 0;                                                                                         \
                    for (int64_t p = 0; p < k; p++)                                                                    \
                        acc += A[p * lda + i] * b[p];                                                                  \
                    C[i * ldc + j] += acc;                                                                             \
                }                                                                                                      \
        }                                                                                                              \
    }                                                                                                                  \
    /* The reference: C += A @ B, no transposes, no blocking. */                                                       \
    void ag__gemm_ref_##T(int64_t m, int64_t n, int64_t k, const T *A, const T *B, T *C) {                             \
        for (int64_t i = 0; i < m; i++)                                                                                \
            for (int64_t j = 0; j < n; j++) {                                                                          \
                T acc = 0;                                                                                             \
                for (int64_t p = 0; p < k; p++)                                                                        \
                    acc += A[i * k + p] * B[p * n + j];                                                                \
                C[i * n + j] += acc;                                                                                   \
            }                                                                                                          \
    }
AG__GEMM(float)
AG__GEMM(double)

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
static void ag__blis_one_thread(rntm_t *rntm) {
    pthread_once(&ag__blis_once, ag__blis_init);
    *rntm = (rntm_t)BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, rntm);
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

/* C += op(A) @ op(B): the BLAS for products big enough to pay for the call,
 * the C kernel otherwise (and always when built without one). */
static void ag__gemm_one_float(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                               const float *B, int64_t ldb, float *C, int64_t ldc) {
#if defined(AG_HAVE_BLIS)
    if (m * n * k >= AG__BLAS_MIN_WORK) {
        rntm_t rntm;
        ag__blis_one_thread(&rntm);
        float one = 1.0f;
        bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &one,
                     (float *)A, lda, 1, (float *)B, ldb, 1, &one, C, ldc, 1, ag__blis_cntx, &rntm);
        return;
    }
#elif defined(AG_HAVE_OPENBLAS)
    if (m * n * k >= AG__BLAS_MIN_WORK && m < INT32_MAX && n < INT32_MAX && k < INT32_MAX) {
        pthread_once(&ag__blas_once, ag__blas_init);
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                    (int)k, 1.0f, A, (int)lda, B, (int)ldb, 1.0f, C, (int)ldc);
        return;
    }
#endif
    ag__gemm_c_float(ta, tb, m, n, k, A, lda, B, ldb, C, ldc);
}

static void ag__gemm_one_double(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double *A, int64_t lda,
                                const double *B, int64_t ldb, double *C, int64_t ldc) {
#if defined(AG_HAVE_BLIS)
    if (m * n * k >= AG__BLAS_MIN_WORK) {
        rntm_t rntm;
        ag__blis_one_thread(&rntm);
        double one = 1.0;
        bli_dgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &one,
                     (double *)A, lda, 1, (double *)B, ldb, 1, &one, C, ldc, 1, ag__blis_cntx, &rntm);
        return;
    }
#elif defined(AG_HAVE_OPENBLAS)
    if (m * n * k >= AG__BLAS_MIN_WORK && m < INT32_MAX && n < INT32_MAX && k < INT32_MAX) {
        pthread_once(&ag__blas_once, ag__blas_init);
        cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                    (int)k, 1.0, A, (int)lda, B, (int)ldb, 1.0, C, (int)ldc);
        return;
    }
#endif
    ag__gemm_c_double(ta, tb, m, n, k, A, lda, B, ldb, C, ldc);
}

/* Large products are cut into tiles of C, fixed by the shape alone (never
 * by the thread count, so results do not depend on it), and the tiles run
 * as a parallel-for on the pool the caller works for: rows of C in blocks
 * of AG__TILE_M when there are enough rows, else columns in blocks of
 * AG__TILE_N. Each tile is one single-threaded BLAS (or C kernel) call. */

typedef struct {
    bool dbl, ta, tb, by_rows;
    int64_t m, n, k, lda, ldb, ldc;
    const void *A, *B;
    void *C;
} ag__gemm_job;

static void ag__gemm_tiles(void *arg, int64_t lo, int64_t hi) {
    const ag__gemm_job *g = arg;
    size_t es = g->dbl ? sizeof(double) : sizeof(float);
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
        if (g->dbl)
            ag__gemm_one_double(g->ta, g->tb, m, n, g->k, (const double *)A, g->lda, (const double *)B, g->ldb,
                                (double *)C, g->ldc);
        else
            ag__gemm_one_float(g->ta, g->tb, m, n, g->k, (const float *)A, g->lda, (const float *)B, g->ldb, (float *)C,
                               g->ldc);
    }
}

static bool ag__gemm_tiled(bool dbl, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
                           const void *B, int64_t ldb, void *C, int64_t ldc) {
    if (m * n * k < AG__PAR_GEMM_MIN)
        return false;
    ag__gemm_job g = {dbl, ta, tb, m >= 2 * AG__TILE_M, m, n, k, lda, ldb, ldc, A, B, C};
    int64_t tiles = g.by_rows ? (m + AG__TILE_M - 1) / AG__TILE_M : (n + AG__TILE_N - 1) / AG__TILE_N;
    if (tiles < 2)
        return false;
    ag__parallel_for(tiles, 1, ag__gemm_tiles, &g);
    return true;
}

void ag__gemm_float(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float *C, int64_t ldc) {
    if (!ag__gemm_tiled(false, ta, tb, m, n, k, A, lda, B, ldb, C, ldc))
        ag__gemm_one_float(ta, tb, m, n, k, A, lda, B, ldb, C, ldc);
}

void ag__gemm_double(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double *A, int64_t lda, const double *B,
                     int64_t ldb, double *C, int64_t ldc) {
    if (!ag__gemm_tiled(true, ta, tb, m, n, k, A, lda, B, ldb, C, ldc))
        ag__gemm_one_double(ta, tb, m, n, k, A, lda, B, ldb, C, ldc);
}

/* out = a @ b:  da (m,k) += g (m,n) @ b^T (n,k);  db (k,n) += a^T (k,m) @ g (m,n) */
static int ag__mm_backward(ag_node *node, const ag_tensor *dout, ag_tensor **dinp, ag_ctx *scratch) {
    AG__UNUSED(scratch);
    int64_t m = dout->shape[0], n = dout->shape[1], k = node->iarg[0];
    if (dinp[0]) {
        ag_tensor *b = ag__saved_get(node, 1);
        if (!b)
            return ag_last_status();
        ag__gemm_any(dout->dtype, false, true, m, k, n, dout->data, n, b->data, n, dinp[0]->data, k);
    }
    if (dinp[1]) {
        ag_tensor *a = ag__saved_get(node, 0);
        if (!a)
            return ag_last_status();
        ag__gemm_any(dout->dtype, true, false, k, n, m, a->data, k, dout->data, n, dinp[1]->data, n);
    }
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

static const ag__node_kind ag__mm_kind = {"MmBackward0", ag__mm_backward, ag__mm_backward_graph};

ag_tensor *ag_matmul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    if (ag__check_binary(ctx, a, b, "ag_matmul"))
        return NULL;
    if (a->ndim != 2 || b->ndim != 2)
        return ag__error_null(AG_ESHAPE, "ag_matmul: both arguments must be 2-D, but got %d-D and %d-D", a->ndim,
                              b->ndim);
    if (a->shape[1] != b->shape[0])
        return ag__error_null(AG_ESHAPE,
                              "mat1 and mat2 shapes cannot be multiplied (%" PRId64 "x%" PRId64 " and %" PRId64
                              "x%" PRId64 ")",
                              a->shape[0], a->shape[1], b->shape[0], b->shape[1]);
    int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
    ag_tensor *out = ag__tensor_new(ctx, a->dtype, 2, (int64_t[]){m, n});
    if (!out)
        return NULL;
    memset(out->data, 0, out->storage->nbytes);
    ag__gemm_any(a->dtype, false, false, m, n, k, a->data, k, b->data, n, out->data, n);
    ag_tensor *ins[2] = {a, b};
    if (ag__needs_grad(2, ins)) {
        ag_node *node = ag__record(ctx, &ag__mm_kind, out, 2, ins);
        if (!node)
            return NULL;
        node->iarg[0] = k;
        if (b->requires_grad)
            ag__save(node, 0, a, false);
        if (a->requires_grad)
            ag__save(node, 1, b, false);
    }
    return out;
}
