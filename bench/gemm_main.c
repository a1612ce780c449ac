/* agrad-bench-gemm: GFLOP/s of ag_matmul (forward, float32, square n x n)
 * against the BLAS libraries called directly, in one run: agrad at 1 thread
 * and at 2 (where agrad splits the product over its pool), BLIS with the
 * kernels agrad gives it at 1 thread and at 2 of its own threads (Debian's
 * blis-pthread build), BLIS with the kernels it picks by itself, and
 * Debian's serial OpenBLAS. Each figure is the median over --reps samples
 * of about 2 ms, the columns' samples taking turns, and in brackets the
 * best sample (on a loaded machine, closer to what a quiet one gives).
 * usage: agrad-bench-gemm [--sizes 64,128,512,1024] [--reps N] [--no-openblas] */
#include "ops/ops.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef AG_HAVE_BLIS
#include <blis.h>
#endif

#ifndef AG_MULTIARCH
#define AG_MULTIARCH "x86_64-linux-gnu"
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    int64_t n;
    float *A, *B, *C;
    ag_ctx *ctx;
    ag_tensor *a, *b;
} problem;

typedef void (*gemm_fn)(problem *p);

/* One timed sample: GFLOP/s over `calls` calls. */
static double sample(gemm_fn fn, problem *p, int calls) {
    double flops = 2.0 * (double)p->n * (double)p->n * (double)p->n;
    double t0 = now();
    for (int c = 0; c < calls; c++)
        fn(p);
    return flops * calls / (now() - t0) * 1e-9;
}

/* Median and best GFLOP/s of each of the n functions over reps samples. The samples
 * of the functions take turns, so a change of load on the machine touches
 * every column alike; a sample times enough calls to last about 2 ms. */
static void measure(int n, gemm_fn *fns, problem *p, int reps, double *median, double *best) {
    int calls[8];
    double *g = malloc((size_t)(n * reps) * sizeof *g);
    for (int f = 0; f < n; f++) {
        fns[f](p); /* warm up: first touch, packing buffers, the pool's threads */
        double t = now();
        fns[f](p);
        t = now() - t;
        calls[f] = t > 0 ? (int)(2e-3 / t) + 1 : 1;
    }
    for (int r = 0; r < reps; r++)
        for (int f = 0; f < n; f++)
            g[f * reps + r] = sample(fns[f], p, calls[f]);
    for (int f = 0; f < n; f++) {
        qsort(g + f * reps, (size_t)reps, sizeof *g, cmp_double);
        median[f] = g[f * reps + reps / 2];
        best[f] = g[f * reps + reps - 1];
    }
    free(g);
}

/* ag_matmul as a user calls it: a new output in the context each time
 * (the context is reset between calls, outside nothing: that is its cost). */
static void run_agrad(problem *p) {
    ag_ctx_reset(p->ctx);
    if (!ag_matmul(p->ctx, p->a, p->b)) {
        fprintf(stderr, "ag_matmul: %s\n", ag_last_error());
        exit(1);
    }
}

static void run_agrad_1t(problem *p) {
    ag_set_num_threads(1);
    run_agrad(p);
}

static void run_agrad_2t(problem *p) {
    ag_set_num_threads(2);
    run_agrad(p);
}

#ifdef AG_HAVE_BLIS
static cntx_t *blis_cntx; /* NULL: BLIS's own choice */

static void run_blis(problem *p) {
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    float one = 1.0f, zero = 0.0f;
    bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, p->n, p->n, p->n, &one, p->A, p->n, 1, p->B, p->n, 1, &zero,
                 p->C, p->n, 1, blis_cntx, &rntm);
}

static void run_blis_agrad_kernels(problem *p) {
    blis_cntx = ag__blis_kernels();
    run_blis(p);
}

static void run_blis_own_kernels(problem *p) {
    blis_cntx = NULL;
    run_blis(p);
}

/* Debian's BLIS built with its own POSIX threads, loaded at run time (its
 * symbols bound to itself) and told to use 2 threads for every call, with
 * the kernels agrad picks: the library with its own threads. */
typedef void (*blis_sgemm_fn)(trans_t, trans_t, dim_t, dim_t, dim_t, float *, float *, inc_t, inc_t, float *, inc_t,
                              inc_t, float *, float *, inc_t, inc_t, cntx_t *, rntm_t *);
static blis_sgemm_fn blis_mt_sgemm;

static void run_blis_2t(problem *p) {
    float one = 1.0f, zero = 0.0f;
    blis_mt_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, p->n, p->n, p->n, &one, p->A, p->n, 1, p->B, p->n, 1, &zero,
                  p->C, p->n, 1, NULL, NULL);
}

static bool load_blis_threaded(void) {
    /* the kernels agrad gives its own copy, named to this copy the way a
     * user would (BLIS_ARCH_TYPE, read when it starts) */
    cntx_t *mine = ag__blis_kernels();
    char arch[16] = "";
    for (int a = 0; mine && a < BLIS_NUM_ARCHS; a++) {
        cntx_t **c = bli_gks_lookup_id((arch_t)a);
        if (c && c[BLIS_NAT] == mine)
            snprintf(arch, sizeof arch, "%d", a);
    }
    bool named = arch[0] && !getenv("BLIS_ARCH_TYPE");
    if (named)
        setenv("BLIS_ARCH_TYPE", arch, 1);
    void *h = dlopen("/usr/lib/" AG_MULTIARCH "/blis-openmp/libblis.so.4", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    void (*init)(void) = h ? (void (*)(void))dlsym(h, "bli_init") : NULL;
    void (*set_threads)(dim_t) = h ? (void (*)(dim_t))dlsym(h, "bli_thread_set_num_threads") : NULL;
    blis_mt_sgemm = h ? (blis_sgemm_fn)dlsym(h, "bli_sgemm_ex") : NULL;
    if (init && set_threads && blis_mt_sgemm) {
        init();
        set_threads(2);
    }
    if (named)
        unsetenv("BLIS_ARCH_TYPE");
    return init && set_threads && blis_mt_sgemm;
}
#endif

/* Debian's serial OpenBLAS, loaded at run time so its BLAS symbols never
 * meet BLIS's. */
typedef void (*cblas_sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                               float *, int);
static cblas_sgemm_fn openblas_sgemm;

static void run_openblas(problem *p) {
    enum { RowMajor = 101, NoTrans = 111 };
    openblas_sgemm(RowMajor, NoTrans, NoTrans, (int)p->n, (int)p->n, (int)p->n, 1.0f, p->A, (int)p->n, p->B, (int)p->n,
                   0.0f, p->C, (int)p->n);
}

static const char *load_openblas(void) {
    void *h = dlopen("/usr/lib/" AG_MULTIARCH "/openblas-serial/libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return NULL;
    openblas_sgemm = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
    char *(*corename)(void) = (char *(*)(void))dlsym(h, "openblas_get_corename");
    return openblas_sgemm ? (corename ? corename() : "?") : NULL;
}

int main(int argc, char **argv) {
    /* Debian's OpenBLAS 0.3.21 takes this CPU for an unknown one and runs
     * its Haswell kernels; name its AVX-512 ones, as a user tuning it would
     * (an explicit setting wins). It reads the variable from the
     * environment the process started with, hence the exec. */
    __builtin_cpu_init();
    if (!getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx512f")) {
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
        execv("/proc/self/exe", argv);
    }
    int64_t sizes[16] = {64, 128, 256, 512, 1024};
    int nsizes = 5, reps = 31;
    bool openblas = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            nsizes = 0;
            for (char *s = strtok(argv[++i], ","); s && nsizes < 16; s = strtok(NULL, ","))
                sizes[nsizes++] = atoll(s);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--no-openblas")) {
            openblas = false;
        } else {
            fprintf(stderr, "usage: %s [--sizes 64,128,512,1024] [--reps N] [--no-openblas]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1 || nsizes < 1) {
        fprintf(stderr, "reps and sizes must be positive\n");
        return 2;
    }
    const char *ob_core = openblas ? load_openblas() : NULL;
    printf("agrad's products: %s\n", ag__blas_name());
    if (openblas)
        printf("OpenBLAS (serial): %s\n", ob_core ? ob_core : "not found (libopenblas0-serial)");
#ifdef AG_HAVE_BLIS
    bli_init();
    const char *blis_own = bli_arch_string(bli_arch_query_id());
    printf("BLIS by itself: %s kernels\n", blis_own);
    bool blis_2t = load_blis_threaded();
    printf("BLIS with its own 2 threads: %s\n",
           blis_2t ? "blis-openmp (libblis4-openmp)" : "not found (libblis4-openmp)");
#endif
    printf("float32, n x n @ n x n, GFLOP/s: median of %d samples (best sample)\n\n", reps);
    printf(
        "| n | agrad 1T | agrad 2T | BLIS 1T, agrad's kernels | BLIS 2T, its threads | agrad 2T / BLIS 2T | BLIS 1T, "
        "its own choice | OpenBLAS serial 1T |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (int s = 0; s < nsizes; s++) {
        problem p = {.n = sizes[s]};
        int64_t n = p.n, shape[2] = {n, n};
        size_t bytes = (size_t)(n * n) * sizeof(float);
        p.A = malloc(bytes);
        p.B = malloc(bytes);
        p.C = malloc(bytes);
        p.ctx = ag_ctx_new();
        ag_ctx *in = ag_ctx_new();
        p.a = ag_randn(in, AG_FLOAT32, 2, shape);
        p.b = ag_randn(in, AG_FLOAT32, 2, shape);
        if (!p.A || !p.B || !p.C || !p.a || !p.b) {
            fprintf(stderr, "out of memory at n = %lld\n", (long long)n);
            return 1;
        }
        memcpy(p.A, ag_data_ptr(p.a), bytes);
        memcpy(p.B, ag_data_ptr(p.b), bytes);
        /* the columns, in the table's order */
        enum { AGRAD_1T, AGRAD_2T, BLIS_AGRAD, BLIS_2T, BLIS_OWN, OPENBLAS, NCOLS };
        gemm_fn col[NCOLS] = {run_agrad_1t, run_agrad_2t, NULL, NULL, NULL, ob_core ? run_openblas : NULL};
#ifdef AG_HAVE_BLIS
        col[BLIS_AGRAD] = run_blis_agrad_kernels;
        col[BLIS_2T] = blis_2t ? run_blis_2t : NULL;
        col[BLIS_OWN] = run_blis_own_kernels;
#endif
        gemm_fn fns[NCOLS];
        int which[NCOLS], nf = 0;
        for (int c = 0; c < NCOLS; c++)
            if (col[c]) {
                which[nf] = c;
                fns[nf++] = col[c];
            }
        double med[NCOLS], best[NCOLS];
        measure(nf, fns, &p, reps, med, best);
        char cell[NCOLS][32], ratio[32] = "-";
        double m2[NCOLS] = {0}, b2[NCOLS] = {0};
        for (int c = 0; c < NCOLS; c++)
            snprintf(cell[c], sizeof cell[c], "-");
        for (int f = 0; f < nf; f++) {
            snprintf(cell[which[f]], sizeof cell[which[f]], "%.1f (%.1f)", med[f], best[f]);
            m2[which[f]] = med[f];
            b2[which[f]] = best[f];
        }
        if (m2[BLIS_2T] > 0) /* medians (best against best) */
            snprintf(ratio, sizeof ratio, "%.2f (%.2f)", m2[AGRAD_2T] / m2[BLIS_2T], b2[AGRAD_2T] / b2[BLIS_2T]);
        ag_set_num_threads(1);
        printf("| %lld | %s | %s | %s | %s | %s | %s | %s |\n", (long long)n, cell[AGRAD_1T], cell[AGRAD_2T],
               cell[BLIS_AGRAD], cell[BLIS_2T], ratio, cell[BLIS_OWN], cell[OPENBLAS]);
        fflush(stdout);
        ag_ctx_free(in);
        ag_ctx_free(p.ctx);
        free(p.A);
        free(p.B);
        free(p.C);
    }
    return 0;
}
