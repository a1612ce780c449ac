/* One pool for the process: application threads run backwards with
 * different num_threads at once, and
 *   - the process never has more threads than the application's plus the
 *     largest count asked for minus one (the pool's workers; each caller
 *     works too), counted in /proc/self/task;
 *   - a backward never has more threads in its nodes at once than its
 *     num_threads (interior hooks count who is inside);
 *   - every gradient is exact (small integers).
 * A program of its own, so that the pool starts empty. */
#include "../common/check.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

extern _Atomic int64_t ag__par_min_work;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define ITERS 12
#else
#define ITERS 60
#endif

enum { NAPP = 4 };
static const int app_threads[NAPP] = {1, 2, 3, 5};
#define MAX_THREADS 5

static int os_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static atomic_int max_os_threads;
/* Threads of the process before agrad starts any: the main thread, and
 * any the runtime keeps (ThreadSanitizer has one, started with the
 * first other thread). */
static int base_threads;

static void *nothing(void *arg) { return arg; }

static void note_os_threads(void) {
    int n = os_threads(), m = atomic_load(&max_os_threads);
    while (n > m && !atomic_compare_exchange_weak(&max_os_threads, &m, n))
        ;
}

typedef struct {
    atomic_int inside, max_inside;
} concurrency;

static ag_tensor *count_hook(ag_tensor *grad, void *ud) {
    concurrency *c = ud;
    int now = atomic_fetch_add(&c->inside, 1) + 1, m = atomic_load(&c->max_inside);
    while (now > m && !atomic_compare_exchange_weak(&c->max_inside, &m, now))
        ;
    /* stay a moment, so that threads running at once overlap here */
    double x = 0;
    for (int i = 0; i < 2000; i++)
        x += ag_get(grad, i % ag_numel(grad));
    if (x < 0) /* never: the gradient is positive; keeps the loop */
        atomic_fetch_add(&c->max_inside, 1000);
    atomic_fetch_sub(&c->inside, 1);
    return NULL;
}

typedef struct {
    ag_tensor *w; /* shared leaf */
    int nthreads, failures, max_inside;
    char why[200];
} app;

static void *app_main(void *arg) {
    app *a = arg;
    ag_ctx *g = ag_ctx_new();
    for (int it = 0; it < ITERS; it++) {
        concurrency c = {0};
        /* 16 branches of 4 links each over the shared leaf; dw = sum of k */
        ag_tensor *s = NULL;
        for (int k = 1; k <= 16; k++) {
            ag_tensor *h = ag_mul_scalar(g, a->w, (double)k);
            for (int l = 0; l < 4; l++) {
                h = ag_add_scalar(g, h, 1.0);
                if (l == 2)
                    ag_register_hook(h, count_hook, &c);
            }
            s = s ? ag_add(g, s, h) : h;
        }
        int rc = s ? ag_backward(ag_sum(g, s), NULL, &(ag_backward_opts){.num_threads = a->nthreads}) : -1;
        if (rc && !a->failures++)
            snprintf(a->why, sizeof a->why, "%s", ag_last_error());
        if (atomic_load(&c.max_inside) > a->max_inside)
            a->max_inside = atomic_load(&c.max_inside);
        note_os_threads();
        ag_ctx_reset(g);
    }
    ag_ctx_free(g);
    return NULL;
}

static void test_one_pool_for_all(void **state) {
    (void)state;
    atomic_store(&ag__par_min_work, 0);
    ag_set_executor(AG_EXECUTOR_WS);
    int before = base_threads;
    assert_true(before >= 1);
    ag_ctx *params = ag_ctx_new();
    ag_tensor *w = ag_zeros(params, AG_FLOAT32, 1, (int64_t[]){256});
    assert_ok(ag_requires_grad_(w, true));
    pthread_t th[NAPP];
    app apps[NAPP];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < NAPP; i++) {
            apps[i] = (app){.w = w, .nthreads = app_threads[(i + round) % NAPP]};
            assert_int_equal(pthread_create(&th[i], NULL, app_main, &apps[i]), 0);
        }
        for (int i = 0; i < NAPP; i++)
            pthread_join(th[i], NULL);
        for (int i = 0; i < NAPP; i++) {
            if (apps[i].failures)
                print_error("app %d: %d failures: %s\n", i, apps[i].failures, apps[i].why);
            assert_int_equal(apps[i].failures, 0);
            if (apps[i].max_inside > apps[i].nthreads)
                print_error("app %d: %d threads in a backward of %d\n", i, apps[i].max_inside, apps[i].nthreads);
            assert_true(apps[i].max_inside <= apps[i].nthreads);
        }
    }
    /* the application's threads, and the pool's workers: at most the
     * largest count minus one */
    int most = atomic_load(&max_os_threads);
    if (most > before + NAPP + MAX_THREADS - 1)
        print_error("%d threads at most, %d before, %d application threads, largest count %d\n", most, before, NAPP,
                    MAX_THREADS);
    assert_true(most <= before + NAPP + MAX_THREADS - 1);
    assert_true(os_threads() <= before + MAX_THREADS - 1);
    /* each backward adds 1 + 2 + ... + 16 = 136 */
    for (int64_t e = 0; e < 256; e++)
        assert_true(ag_get(ag_grad(w), e) == 3.0 * NAPP * ITERS * 136.0);
    ag_ctx_free(params);
}

/* Changing the thread count back and forth starts no thread beyond the
 * largest count asked for. */
static void test_changing_counts(void **state) {
    (void)state;
    ag_ctx *params = ag_ctx_new(), *g = ag_ctx_new();
    ag_tensor *w = ag_ones(params, AG_FLOAT32, 1, (int64_t[]){64});
    assert_ok(ag_requires_grad_(w, true));
    static const int counts[] = {2, 7, 1, 3, 7, 2, 6, 4};
    int largest = 0;
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        ag_tensor *s = NULL;
        for (int k = 0; k < 12; k++) {
            ag_tensor *h = ag_tanh(g, ag_mul_scalar(g, w, 0.1 * k));
            s = s ? ag_add(g, s, h) : h;
        }
        assert_ok(ag_backward(ag_sum(g, s), NULL, &(ag_backward_opts){.num_threads = counts[i]}));
        if (counts[i] > largest)
            largest = counts[i];
        int now = os_threads();
        /* and the workers: the largest count so far (the test before grew
         * the pool to MAX_THREADS) minus one */
        int cap = largest > MAX_THREADS ? largest : MAX_THREADS;
        if (now > base_threads + cap - 1)
            print_error("%d threads after a backward on %d, largest count %d\n", now, counts[i], cap);
        assert_true(now <= base_threads + cap - 1);
        ag_ctx_reset(g);
    }
    ag_ctx_free(g);
    ag_ctx_free(params);
}

int main(void) {
    pthread_t th;
    if (pthread_create(&th, NULL, nothing, NULL) == 0)
        pthread_join(th, NULL);
    base_threads = os_threads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_pool_for_all),
        cmocka_unit_test(test_changing_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
