/* Views across contexts from several threads at once: each thread makes
 * views of a shared parameter tensor in a step context of its own and of
 * a tensor in a base context of its own, and resets the contexts in both
 * orders, so the global list of cross-context views is changed from every
 * thread at once. Results are collected per thread and asserted after the
 * join (cmocka is not thread-safe). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <pthread.h>

#include "agrad.h"

#define THREADS 4
#define ROUNDS 300

static ag_tensor *params; /* 4 x 8, values 0..31, read by every thread */

typedef struct {
    int id;
    int bad; /* rounds whose results were wrong */
} job;

static int one_round(int id, int r, ag_ctx *base, ag_ctx *step) {
    int bad = 0;
    /* views of the shared parameters: must read the right elements */
    ag_tensor *col = ag_select(step, ag_transpose(step, params, 0, 1), 0, (r + id) % 8);
    bad += ag_get(col, 3) != 24.0 + (double)((r + id) % 8);
    /* views of a tensor in this thread's base context */
    ag_tensor *x = ag_full(base, AG_FLOAT64, 2, (int64_t[]){3, 3}, (double)r);
    ag_tensor *v = ag_narrow(step, x, 1, 1, 2);
    ag_tensor *e = ag_expand(step, ag_select(step, v, 0, 2), 2, (int64_t[]){5, 2});
    bad += ag_get(e, 9) != (double)r;
    if (r % 2) { /* the base goes first: the views are detached */
        ag_ctx_reset(base);
        bad += !isnan(ag_get(v, 0)) || ag_last_status() != AG_ESTATE;
        ag_clear_error();
        ag_ctx_reset(step);
    } else {
        ag_ctx_reset(step);
        ag_ctx_reset(base);
    }
    return bad;
}

static void *worker(void *arg) {
    job *j = arg;
    ag_ctx *base = ag_ctx_new(), *step = ag_ctx_new();
    for (int r = 0; r < ROUNDS; r++)
        j->bad += one_round(j->id, r, base, step);
    ag_ctx_free(step);
    ag_ctx_free(base);
    return NULL;
}

static void test_views_across_contexts_from_threads(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    params = ag_zeros(ctx, AG_FLOAT64, 2, (int64_t[]){4, 8});
    double *p = ag_mutable_data_ptr(params);
    for (int i = 0; i < 32; i++)
        p[i] = i;
    pthread_t th[THREADS];
    job jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (job){.id = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &jobs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(jobs[i].bad, 0);
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_views_across_contexts_from_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
