/* Matrix products large enough to be cut into tiles over the pool, from
 * several application threads at once while pool threads run tiles too:
 * every product, forward and backward, must come out exactly as on one
 * thread. A BLAS that is not reentrant (Debian's serial OpenBLAS) fails
 * here now and then; BLIS and the C kernel must never. And a product run
 * with pool threads starts no thread of its own, whatever BLIS_NUM_THREADS
 * and OMP_NUM_THREADS say.
 *
 * Only the public API, so tests/install builds this file against the
 * installed library too. cmocka is not thread-safe: the application
 * threads count mismatches and the main thread asserts after joining. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <agrad.h>
#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rounds of forward and backward per application thread and thread count
 * (meson passes fewer for the slow builds). */
#ifndef PRODUCT_REPS
#define PRODUCT_REPS 60
#endif
#define APP_THREADS 4

/* a (M,K) @ b (K,N) is 2^22 multiply-adds, twice the smallest product
 * agrad splits over its pool (along the rows of C, one piece per thread);
 * the backward products g @ b^T and a^T @ g are as large. */
enum { M = 256, K = 128, N = 128 };

/* The graph: two branches, so a parallel backward runs them on different
 * threads: loss = sum((a1 @ b1) * w) + sum((a2 @ b2) * w). */
enum { A1, B1, A2, B2, NLEAVES };
static const int64_t leaf_shape[NLEAVES][2] = {{M, K}, {K, N}, {M, K}, {K, N}};

/* What is compared: the two products and the four leaves' gradients. */
enum { H1, H2, GA1, GB1, GA2, GB2, NOUT };

typedef struct {
    ag_dtype dt;
    double *leaf[NLEAVES], *w; /* the inputs, shared by every thread (read only) */
    double *ref[NOUT];         /* the results on one thread */
    int64_t numel[NOUT];
} problem;

typedef struct {
    ag_ctx *params, *step;
    ag_tensor *leaf[NLEAVES], *w;
} model;

/* Fixed inputs in [-1, 1): a linear congruential generator, so every
 * thread and every build starts from the same numbers. */
static void fill(double *v, int64_t n, uint64_t seed) {
    uint64_t x = seed * 6364136223846793005u + 1442695040888963407u;
    for (int64_t i = 0; i < n; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        v[i] = (double)(x >> 11) / (double)(1ull << 52) - 1.0;
    }
}

static int model_init(model *md, const problem *p) {
    md->params = ag_ctx_new();
    md->step = ag_ctx_new();
    if (!md->params || !md->step)
        return -1;
    for (int i = 0; i < NLEAVES; i++) {
        int64_t n = leaf_shape[i][0] * leaf_shape[i][1];
        ag_tensor *t = ag_zeros(md->params, p->dt, 2, leaf_shape[i]);
        if (!t)
            return -1;
        void *d = ag_mutable_data_ptr(t);
        for (int64_t j = 0; j < n; j++) {
            if (p->dt == AG_FLOAT32)
                ((float *)d)[j] = (float)p->leaf[i][j];
            else
                ((double *)d)[j] = p->leaf[i][j];
        }
        if (ag_requires_grad_(t, true))
            return -1;
        md->leaf[i] = t;
    }
    md->w = ag_zeros(md->params, p->dt, 2, (int64_t[]){M, N});
    if (!md->w)
        return -1;
    void *d = ag_mutable_data_ptr(md->w);
    for (int64_t j = 0; j < M * N; j++) {
        if (p->dt == AG_FLOAT32)
            ((float *)d)[j] = (float)p->w[j];
        else
            ((double *)d)[j] = p->w[j];
    }
    return 0;
}

static void model_free(model *md) {
    ag_ctx_free(md->step);
    ag_ctx_free(md->params);
}

/* One round: forward, backward on nthreads, results in out[] (NULL on
 * error, with the message in ag_last_error()). */
static int model_round(model *md, int nthreads, const ag_tensor *out[NOUT]) {
    for (int i = 0; i < NLEAVES; i++) /* .grad = 0 + the gradient: the same value */
        if (ag_zero_grad(md->leaf[i]))
            return -1;
    ag_ctx_reset(md->step);
    ag_ctx *c = md->step;
    ag_tensor *h1 = ag_matmul(c, md->leaf[A1], md->leaf[B1]);
    ag_tensor *h2 = ag_matmul(c, md->leaf[A2], md->leaf[B2]);
    ag_tensor *loss = ag_add(c, ag_sum(c, ag_mul(c, h1, md->w)), ag_sum(c, ag_mul(c, h2, md->w)));
    if (!loss || ag_backward(loss, NULL, &(ag_backward_opts){.num_threads = nthreads}))
        return -1;
    out[H1] = h1;
    out[H2] = h2;
    out[GA1] = ag_grad(md->leaf[A1]);
    out[GB1] = ag_grad(md->leaf[B1]);
    out[GA2] = ag_grad(md->leaf[A2]);
    out[GB2] = ag_grad(md->leaf[B2]);
    for (int i = 0; i < NOUT; i++)
        if (!out[i])
            return -1;
    return 0;
}

/* Elements of t that differ from ref (compared with ==, so exactly, with
 * -0 equal to +0); the largest difference in *maxdiff. */
static int64_t mismatches(const ag_tensor *t, const double *ref, int64_t n, double *maxdiff) {
    const void *d = ag_data_ptr(t);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = ag_tensor_dtype(t) == AG_FLOAT32 ? (double)((const float *)d)[i] : ((const double *)d)[i];
        if (!(v == ref[i])) {
            bad++;
            double diff = fabs(v - ref[i]);
            if (!(diff <= *maxdiff))
                *maxdiff = diff;
        }
    }
    return bad;
}

static void problem_init(problem *p, ag_dtype dt) {
    memset(p, 0, sizeof *p);
    p->dt = dt;
    for (int i = 0; i < NLEAVES; i++) {
        int64_t n = leaf_shape[i][0] * leaf_shape[i][1];
        assert_non_null(p->leaf[i] = malloc((size_t)n * sizeof(double)));
        fill(p->leaf[i], n, (uint64_t)i + 1);
    }
    assert_non_null(p->w = malloc((size_t)(M * N) * sizeof(double)));
    fill(p->w, M * N, 99);

    /* The reference: the same rounds on the calling thread alone. */
    ag_set_num_threads(1);
    model md;
    assert_int_equal(model_init(&md, p), 0);
    const ag_tensor *out[NOUT];
    if (model_round(&md, 1, out))
        fail_msg("reference round: %s", ag_last_error());
    for (int i = 0; i < NOUT; i++) {
        p->numel[i] = ag_numel(out[i]);
        assert_non_null(p->ref[i] = malloc((size_t)p->numel[i] * sizeof(double)));
        assert_int_equal(ag_copy_to(out[i], p->ref[i], AG_FLOAT64), 0);
    }
    model_free(&md);
}

static void problem_free(problem *p) {
    for (int i = 0; i < NLEAVES; i++)
        free(p->leaf[i]);
    for (int i = 0; i < NOUT; i++)
        free(p->ref[i]);
    free(p->w);
}

typedef struct {
    const problem *p;
    int nthreads;
    int rounds_wrong;  /* rounds with any element off */
    int64_t elems_off; /* elements off, over all rounds */
    double maxdiff;
    char error[256]; /* the first error, if a round failed */
} app_thread;

static void *app_thread_run(void *arg) {
    app_thread *a = arg;
    model md;
    if (model_init(&md, a->p)) {
        snprintf(a->error, sizeof a->error, "init: %s", ag_last_error());
        return NULL;
    }
    for (int r = 0; r < PRODUCT_REPS; r++) {
        const ag_tensor *out[NOUT];
        if (model_round(&md, a->nthreads, out)) {
            snprintf(a->error, sizeof a->error, "round %d: %s", r, ag_last_error());
            break;
        }
        int64_t off = 0;
        for (int i = 0; i < NOUT; i++)
            off += mismatches(out[i], a->p->ref[i], a->p->numel[i], &a->maxdiff);
        a->rounds_wrong += off > 0;
        a->elems_off += off;
    }
    model_free(&md);
    return NULL;
}

/* APP_THREADS threads at once, each running PRODUCT_REPS rounds, with the
 * pool at 2, 3 and 4 threads: each result equal to the one-thread one. */
static void check_exact_from_many_threads(ag_dtype dt) {
    problem p;
    problem_init(&p, dt);
    const int counts[] = {2, 3, 4};
    int wrong = 0;
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        ag_set_num_threads(counts[c]); /* the forward's tiles */
        pthread_t th[APP_THREADS];
        app_thread args[APP_THREADS];
        for (int i = 0; i < APP_THREADS; i++) {
            args[i] = (app_thread){.p = &p, .nthreads = counts[c]};
            assert_int_equal(pthread_create(&th[i], NULL, app_thread_run, &args[i]), 0);
        }
        for (int i = 0; i < APP_THREADS; i++)
            pthread_join(th[i], NULL);
        for (int i = 0; i < APP_THREADS; i++) {
            if (args[i].error[0])
                fail_msg("%s, %d pool threads, application thread %d: %s", dt == AG_FLOAT32 ? "float32" : "float64",
                         counts[c], i, args[i].error);
            if (args[i].rounds_wrong) {
                print_error("%s, %d pool threads, application thread %d: %d of %d rounds wrong, %lld elements off, "
                            "by up to %g\n",
                            dt == AG_FLOAT32 ? "float32" : "float64", counts[c], i, args[i].rounds_wrong, PRODUCT_REPS,
                            (long long)args[i].elems_off, args[i].maxdiff);
                wrong += args[i].rounds_wrong;
            }
        }
    }
    ag_set_num_threads(0);
    problem_free(&p);
    assert_int_equal(wrong, 0);
}

static void test_float32_products_exact_from_many_threads(void **state) {
    (void)state;
    check_exact_from_many_threads(AG_FLOAT32);
}

static void test_float64_products_exact_from_many_threads(void **state) {
    (void)state;
    check_exact_from_many_threads(AG_FLOAT64);
}

/* ---- Split products: every shape of cut ---------------------------------- */

/* Products split over the pool are cut along the rows of C or, when C is
 * wider than tall, along its columns, on multiples of 32, into one piece
 * per thread: uneven last pieces, transposed operands (linear's weight,
 * the backward's a^T and b^T), batches split by matrix. Each graph's products and
 * gradients at 2, 3 and 4 threads must be bitwise those of 1 thread. */
enum { SPLIT_GRAPHS = 4, SPLIT_LEAVES = 3, SPLIT_OUTS = 4 };

typedef struct {
    ag_ctx *params;
    ag_tensor *leaf[SPLIT_GRAPHS][SPLIT_LEAVES]; /* NULL where a graph has fewer */
} split_model;

static ag_tensor *split_leaf(ag_ctx *c, ag_dtype dt, int ndim, const int64_t *shape) {
    ag_tensor *t = ag_randn(c, dt, ndim, shape);
    return t && !ag_requires_grad_(t, true) ? t : NULL;
}

/* matmul (97,200) @ (200,333): columns, uneven pieces; linear of x (200,300)
 * with w (130,300): rows forward, columns for both gradients; bmm of
 * (3,100,150) @ (3,150,170): columns, per matrix; bmm of (8,64,96) @
 * (1,96,64): matrices too small to split, split by matrix, the broadcast
 * one's gradient summed over the batch. */
static void split_model_init(split_model *sm, ag_dtype dt) {
    ag_manual_seed(7);
    assert_non_null(sm->params = ag_ctx_new());
    ag_ctx *c = sm->params;
    memset(sm->leaf, 0, sizeof sm->leaf);
    assert_non_null(sm->leaf[0][0] = split_leaf(c, dt, 2, (int64_t[]){97, 200}));
    assert_non_null(sm->leaf[0][1] = split_leaf(c, dt, 2, (int64_t[]){200, 333}));
    assert_non_null(sm->leaf[1][0] = split_leaf(c, dt, 2, (int64_t[]){200, 300}));
    assert_non_null(sm->leaf[1][1] = split_leaf(c, dt, 2, (int64_t[]){130, 300}));
    assert_non_null(sm->leaf[1][2] = split_leaf(c, dt, 1, (int64_t[]){130}));
    assert_non_null(sm->leaf[2][0] = split_leaf(c, dt, 3, (int64_t[]){3, 100, 150}));
    assert_non_null(sm->leaf[2][1] = split_leaf(c, dt, 3, (int64_t[]){3, 150, 170}));
    assert_non_null(sm->leaf[3][0] = split_leaf(c, dt, 3, (int64_t[]){8, 64, 96}));
    assert_non_null(sm->leaf[3][1] = split_leaf(c, dt, 3, (int64_t[]){1, 96, 64}));
}

/* Graph g forward and backward on nthreads; the output and the leaves'
 * gradients copied to out[] as doubles (allocated here), numel in n[]. */
static void split_round(split_model *sm, int g, int nthreads, double *out[SPLIT_OUTS], int64_t n[SPLIT_OUTS]) {
    ag_tensor **l = sm->leaf[g];
    for (int i = 0; i < SPLIT_LEAVES; i++)
        if (l[i])
            assert_int_equal(ag_zero_grad(l[i]), 0);
    ag_set_num_threads(nthreads);
    ag_ctx *c = ag_ctx_new();
    assert_non_null(c);
    ag_tensor *y = g == 0 ? ag_matmul(c, l[0], l[1]) : g == 1 ? ag_linear(c, l[0], l[1], l[2]) : ag_bmm(c, l[0], l[1]);
    ag_tensor *loss = ag_sum(c, ag_mul(c, y, ag_sin(c, y))); /* a gradient that differs per element */
    if (!loss || ag_backward(loss, NULL, &(ag_backward_opts){.num_threads = nthreads}))
        fail_msg("graph %d, %d threads: %s", g, nthreads, ag_last_error());
    const ag_tensor *t[SPLIT_OUTS] = {y, ag_grad(l[0]), ag_grad(l[1]), l[2] ? ag_grad(l[2]) : NULL};
    for (int i = 0; i < SPLIT_OUTS; i++) {
        n[i] = t[i] ? ag_numel(t[i]) : 0;
        assert_non_null(out[i] = malloc((size_t)(n[i] + 1) * sizeof(double)));
        if (t[i])
            assert_int_equal(ag_copy_to(t[i], out[i], AG_FLOAT64), 0);
    }
    ag_ctx_free(c);
}

static void check_split_exact(ag_dtype dt) {
    split_model sm;
    split_model_init(&sm, dt);
    int reps = PRODUCT_REPS < 10 ? PRODUCT_REPS : 10, wrong = 0;
    for (int g = 0; g < SPLIT_GRAPHS; g++) {
        double *ref[SPLIT_OUTS], *got[SPLIT_OUTS];
        int64_t n[SPLIT_OUTS], m[SPLIT_OUTS];
        split_round(&sm, g, 1, ref, n);
        for (int nt = 2; nt <= 4; nt++)
            for (int r = 0; r < reps; r++) {
                split_round(&sm, g, nt, got, m);
                for (int i = 0; i < SPLIT_OUTS; i++) {
                    assert_int_equal(m[i], n[i]);
                    for (int64_t e = 0; e < n[i]; e++)
                        wrong += !(got[i][e] == ref[i][e]);
                    free(got[i]);
                }
            }
        for (int i = 0; i < SPLIT_OUTS; i++)
            free(ref[i]);
    }
    ag_set_num_threads(0);
    ag_ctx_free(sm.params);
    assert_int_equal(wrong, 0);
}

static void test_float32_split_products_exact(void **state) {
    (void)state;
    check_split_exact(AG_FLOAT32);
}

static void test_float64_split_products_exact(void **state) {
    (void)state;
    check_split_exact(AG_FLOAT64);
}

/* ---- No thread of its own ---------------------------------------------- */

static int count_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* A BLAS that starts threads and joins them before it returns leaves the
 * count in /proc unchanged, so outside the sanitizers (whose runtimes own
 * pthread_create) every thread created is counted on its way out too. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define COUNT_CREATES 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define COUNT_CREATES 0
#endif
#endif
#ifndef COUNT_CREATES
#define COUNT_CREATES 1
#endif

#if COUNT_CREATES
static _Atomic int threads_created;

int pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
    static int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "pthread_create");
    threads_created++;
    return real(th, attr, fn, arg);
}
#endif

static void test_products_start_no_threads(void **state) {
    (void)state;
    /* What a threaded BLIS or OpenMP would obey, had agrad left it the choice. */
    setenv("BLIS_NUM_THREADS", "4", 0);
    setenv("OMP_NUM_THREADS", "4", 0);
    problem p;
    problem_init(&p, AG_FLOAT32);
    model md;
    assert_int_equal(model_init(&md, &p), 0);
    ag_set_num_threads(2);
    const ag_tensor *out[NOUT];
    if (model_round(&md, 2, out)) /* the first round makes the pool's worker */
        fail_msg("%s", ag_last_error());
    int before = count_threads();
#if COUNT_CREATES
    threads_created = 0;
#endif
    for (int r = 0; r < (PRODUCT_REPS < 20 ? PRODUCT_REPS : 20); r++)
        if (model_round(&md, 2, out))
            fail_msg("%s", ag_last_error());
    int after = count_threads();
    double maxdiff = 0;
    for (int i = 0; i < NOUT; i++)
        assert_int_equal(mismatches(out[i], p.ref[i], p.numel[i], &maxdiff), 0);
    assert_true(before > 1); /* the pool's worker is there */
    assert_int_equal(after, before);
#if COUNT_CREATES
    assert_int_equal(threads_created, 0);
#endif
    ag_set_num_threads(0);
    model_free(&md);
    problem_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_products_start_no_threads),
        cmocka_unit_test(test_float32_products_exact_from_many_threads),
        cmocka_unit_test(test_float64_products_exact_from_many_threads),
        cmocka_unit_test(test_float32_split_products_exact),
        cmocka_unit_test(test_float64_split_products_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
