/* Several application threads at once: graphs built and run in their own
 * contexts over shared leaves must sum exactly into .grad; grad mode and the
 * error state are per thread. cmocka is not thread-safe, so workers record
 * results and the main thread asserts after joining. */
#include "../common/check.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef NTHREADS
#define NTHREADS 8
#endif
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define ITERS 60
#else
#define ITERS 400
#endif

typedef struct {
    ag_tensor *w, *v; /* shared leaves */
    int id;
    int failures;
    char why[256];
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    ag_ctx *ctx = ag_ctx_new();
    for (int it = 0; it < ITERS; it++) {
        /* loss = sum(w * k) + sum(v * v * 0.5) * 2  ->  dw = k, dv = 2 v */
        double k = (double)(a->id + 1);
        ag_tensor *l1 = ag_sum(ctx, ag_mul_scalar(ctx, a->w, k));
        ag_tensor *l2 = ag_mul_scalar(ctx, ag_sum(ctx, ag_mul_scalar(ctx, ag_mul(ctx, a->v, a->v), 0.5)), 2);
        ag_tensor *loss = ag_add(ctx, l1, l2);
        int rc = loss ? ag_backward(loss, NULL, NULL) : -1;
        if (rc) {
            a->failures++;
            snprintf(a->why, sizeof a->why, "%s", ag_last_error());
        }
        ag_ctx_reset(ctx);
    }
    ag_ctx_free(ctx);
    return NULL;
}

static void test_shared_leaves_exact_sums(void **state) {
    (void)state;
    ag_ctx *params = ag_ctx_new();
    ag_tensor *w = ag_zeros(params, AG_FLOAT32, 2, (int64_t[]){4, 8});
    ag_tensor *v = ag_ones(params, AG_FLOAT32, 1, (int64_t[]){16});
    assert_ok(ag_requires_grad_(w, true));
    assert_ok(ag_requires_grad_(v, true));
    pthread_t th[NTHREADS];
    worker_arg args[NTHREADS];
    assert_int_equal(ag_trace_start(), 0); /* the trace is shared by every thread too */
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (worker_arg){.w = w, .v = v, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    char path[] = "/tmp/agrad_threads_trace_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(ag_trace_stop(path), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    long events = 0, rows = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) { /* one record a line */
        bool node = strstr(line, "Backward") || strstr(line, "\"AccumulateGrad\"");
        events += node && strstr(line, "\"ph\":\"X\"");
        rows += strstr(line, "\"name\":\"thread_name\"") != NULL;
    }
    fclose(f);
    assert_true(rows >= NTHREADS); /* each application thread has its own row */
    unlink(path);
    /* per backward: Add, Sum, MulScalar(w), AccumulateGrad(w), MulScalar, Sum,
     * MulScalar, Mul, AccumulateGrad(v) = 9 nodes */
    assert_int_equal(events, 9L * NTHREADS * ITERS);
    for (int i = 0; i < NTHREADS; i++) {
        if (args[i].failures)
            print_error("thread %d: %d failures: %s\n", i, args[i].failures, args[i].why);
        assert_int_equal(args[i].failures, 0);
    }
    /* integers well inside float's exact range: any lost update shows */
    double dw = 0;
    for (int i = 0; i < NTHREADS; i++)
        dw += (double)(i + 1) * ITERS;
    for (int64_t i = 0; i < 32; i++)
        assert_true(ag_get(ag_grad(w), i) == dw);
    for (int64_t i = 0; i < 16; i++)
        assert_true(ag_get(ag_grad(v), i) == 2.0 * NTHREADS * ITERS);
    ag_ctx_free(params);
}

typedef struct {
    bool recorded;
    int status;
    char msg[128];
} mode_result;

static void *no_grad_thread(void *p) {
    mode_result *r = p;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){2});
    ag_requires_grad_(x, true);
    ag_set_grad_enabled(false);
    r->recorded = ag_requires_grad(ag_exp(ctx, x));
    /* an error here must not show on the main thread */
    ag_add(ctx, x, ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){3}));
    r->status = ag_last_status();
    snprintf(r->msg, sizeof r->msg, "%s", ag_last_error());
    ag_ctx_free(ctx);
    return NULL;
}

static void test_grad_mode_and_errors_are_per_thread(void **state) {
    (void)state;
    ag_clear_error();
    mode_result r = {0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, no_grad_thread, &r), 0);
    pthread_join(th, NULL);
    assert_false(r.recorded);
    assert_int_equal(r.status, AG_ESHAPE);
    assert_true(ag_is_grad_enabled());
    assert_int_equal(ag_last_status(), AG_OK);
    assert_string_equal(ag_last_error(), "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_leaves_exact_sums),
        cmocka_unit_test(test_grad_mode_and_errors_are_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
