/* Matrix products: ag__gemm in each transpose mode, writing and adding,
 * against the naive triple loop with sizes that cross the C kernel's
 * blocks; ag_matmul's forward and gradients against the reference; and
 * products large enough to be cut into tiles giving the same bits at 1,
 * 2 and 3 threads, deterministic or not (one call on one thread, tiles on
 * several: linalg.c says why they agree). */
#include "../common/check.h"

#include "ops/ops.h" /* ag__gemm and the reference kernels */

#include <stdlib.h>

static void fill(double *p, float *pf, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        pf[i] = (float)(p[i] = (double)rand() / RAND_MAX - 0.5);
}

static void transpose_into(double *dst, const double *src, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            dst[c * rows + r] = src[r * cols + c];
}

/* C = op(A) @ op(B) in the three transpose modes, written over NaN (C is
 * never read) and added onto ones, against R = A @ B. */
static void check_modes(int64_t m, int64_t n, int64_t k, const double *A, const double *At, const double *B,
                        const double *Bt, const double *R, double *C) {
    size_t nc = (size_t)(m * n);
    for (int mode = 0; mode < 3; mode++) { /* A @ B, A @ (B^T)^T, (A^T)^T @ B */
        bool ta = mode == 2, tb = mode == 1;
        for (int acc = 0; acc < 2; acc++) {
            for (size_t i = 0; i < nc; i++)
                C[i] = acc ? 1 : NAN;
            ag__gemm(AG_FLOAT64, ta, tb, m, n, k, ta ? At : A, ta ? m : k, tb ? Bt : B, tb ? k : n, C, n, acc);
            for (size_t i = 0; i < nc; i++)
                if (!(fabs(C[i] - acc - R[i]) <= 1e-12 * (1 + (double)k)))
                    fail_msg("gemm %lldx%lldx%lld mode %d acc %d: C[%zu] = %.17g, reference %.17g", (long long)m,
                             (long long)n, (long long)k, mode, acc, i, C[i] - acc, R[i]);
        }
    }
}

/* ag_matmul: out = A @ B, dA = W @ B^T, dB = A^T @ W */
static void check_matmul(int64_t m, int64_t n, int64_t k, const double *A, const double *At, const double *B,
                         const double *Bt, const double *R) {
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *a = ag_tensor_from(ctx, AG_FLOAT64, 2, (int64_t[]){m, k}, A);
    ag_tensor *b = ag_tensor_from(ctx, AG_FLOAT64, 2, (int64_t[]){k, n}, B);
    ag_requires_grad_(a, true);
    ag_requires_grad_(b, true);
    ag_tensor *w = ag_randn(ctx, AG_FLOAT64, 2, (int64_t[]){m, n});
    ag_tensor *out = ag_matmul(ctx, a, b);
    assert_tensor_close(out, ag_tensor_from(ctx, AG_FLOAT64, 2, (int64_t[]){m, n}, R), 1e-12, 1e-12);
    assert_int_equal(ag_backward(ag_sum(ctx, ag_mul(ctx, out, w)), NULL, NULL), 0);
    double *da = calloc((size_t)(m * k) + 1, 8), *db = calloc((size_t)(k * n) + 1, 8);
    const double *W = ag_data_ptr(w);
    ag__gemm_ref_f64(m, k, n, W, Bt, da);
    ag__gemm_ref_f64(k, n, m, At, W, db);
    assert_tensor_close(ag_grad(a), ag_tensor_from(ctx, AG_FLOAT64, 2, (int64_t[]){m, k}, da), 1e-12, 1e-12);
    assert_tensor_close(ag_grad(b), ag_tensor_from(ctx, AG_FLOAT64, 2, (int64_t[]){k, n}, db), 1e-12, 1e-12);
    free(da);
    free(db);
    ag_ctx_free(ctx);
}

static void test_gemm_matches_reference(void **state) {
    (void)state;
    srand(11);
    const int64_t sizes[][3] = {{1, 1, 1}, {3, 5, 2}, {67, 300, 130}, {129, 257, 1}, {2, 1, 513}, {0, 4, 3}, {4, 3, 0}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
        size_t na = (size_t)(m * k), nb = (size_t)(k * n), nc = (size_t)(m * n);
        double *A = malloc((na + 1) * 8), *B = malloc((nb + 1) * 8), *At = malloc((na + 1) * 8);
        double *Bt = malloc((nb + 1) * 8), *C = calloc(nc + 1, 8), *R = calloc(nc + 1, 8);
        float *Af = malloc((na + 1) * 4), *Bf = malloc((nb + 1) * 4), *Cf = calloc(nc + 1, 4);
        float *Rf = calloc(nc + 1, 4);
        fill(A, Af, (int64_t)na);
        fill(B, Bf, (int64_t)nb);
        transpose_into(At, A, m, k);
        transpose_into(Bt, B, k, n);
        ag__gemm_ref_f64(m, n, k, A, B, R);
        ag__gemm_ref_f32(m, n, k, Af, Bf, Rf);
        check_modes(m, n, k, A, At, B, Bt, R, C);
        ag__gemm(AG_FLOAT32, false, false, m, n, k, Af, k, Bf, n, Cf, n, false);
        for (size_t i = 0; i < nc; i++)
            assert_true(fabsf(Cf[i] - Rf[i]) <= 1e-5f * (1 + (float)k));
        if (m * n * k > 0 && m * n * k < 100000)
            check_matmul(m, n, k, A, At, B, Bt, R);
        double *dbl[] = {A, B, At, Bt, C, R};
        float *flt[] = {Af, Bf, Cf, Rf};
        for (size_t i = 0; i < 6; i++)
            free(dbl[i]);
        for (size_t i = 0; i < 4; i++)
            free(flt[i]);
    }
}

/* out = a @ b, its sum weighted by w, and both gradients, as float64
 * arrays: forward and backward run on nthreads. */
typedef struct {
    double *out, *da, *db;
} product_run;

static product_run run_product(ag_dtype dt, int64_t m, int64_t n, int64_t k, int nthreads) {
    ag_set_num_threads(nthreads);
    ag_ctx *ctx = ag_ctx_new();
    ag_manual_seed(5);
    ag_tensor *a = ag_randn(ctx, dt, 2, (int64_t[]){m, k}), *b = ag_randn(ctx, dt, 2, (int64_t[]){k, n});
    ag_tensor *w = ag_randn(ctx, dt, 2, (int64_t[]){m, n});
    ag_requires_grad_(a, true);
    ag_requires_grad_(b, true);
    ag_tensor *out = ag_matmul(ctx, a, b);
    assert_int_equal(ag_backward(ag_sum(ctx, ag_mul(ctx, out, w)), NULL, &(ag_backward_opts){.num_threads = nthreads}),
                     0);
    product_run r = {malloc((size_t)(m * n) * 8), malloc((size_t)(m * k) * 8), malloc((size_t)(k * n) * 8)};
    assert_int_equal(ag_copy_to(out, r.out, AG_FLOAT64), 0);
    assert_int_equal(ag_copy_to(ag_grad(a), r.da, AG_FLOAT64), 0);
    assert_int_equal(ag_copy_to(ag_grad(b), r.db, AG_FLOAT64), 0);
    ag_ctx_free(ctx);
    ag_set_num_threads(0);
    return r;
}

/* Shapes past the tiling threshold (2^22 multiply-adds): tiled by rows,
 * by columns (fewer than 128 rows), and with backward products of either
 * kind. Each result at 2 and 3 threads, in both modes, equals the one-thread
 * result bit for bit. */
static void test_products_same_bits_at_any_thread_count(void **state) {
    (void)state;
    const int64_t shapes[][3] = {{256, 128, 128}, {64, 512, 256}, {300, 70, 200}, {130, 260, 129}};
    for (int dt = 0; dt < 2; dt++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            product_run ref = run_product((ag_dtype)dt, m, n, k, 1);
            for (int det = 0; det < 2; det++)
                for (int nt = 2; nt <= 3; nt++) {
                    ag_set_deterministic(det);
                    product_run r = run_product((ag_dtype)dt, m, n, k, nt);
                    ag_set_deterministic(false);
                    if (memcmp(r.out, ref.out, (size_t)(m * n) * 8) || memcmp(r.da, ref.da, (size_t)(m * k) * 8) ||
                        memcmp(r.db, ref.db, (size_t)(k * n) * 8))
                        fail_msg("%s %lldx%lldx%lld at %d threads (deterministic %d) differs from 1 thread",
                                 dt ? "float64" : "float32", (long long)m, (long long)n, (long long)k, nt, det);
                    free(r.out);
                    free(r.da);
                    free(r.db);
                }
            free(ref.out);
            free(ref.da);
            free(ref.db);
        }
}

/* With the argument "haswell": every product on BLIS's Haswell kernels
 * (BLIS_ARCH_TYPE 3 in BLIS 0.9), whose small-matrix path sums in another
 * order than its packed one, so the test shows that tiles and one call
 * take the same path; skipped where the CPU lacks AVX2 and FMA. */
int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "haswell")) {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
            return 77;
        setenv("BLIS_ARCH_TYPE", "3", 1);
#else
        return 77;
#endif
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_matches_reference),
        cmocka_unit_test(test_products_same_bits_at_any_thread_count),
    };
    return cmocka_run_group_tests(tests, poison_fresh_gradients, NULL);
}
