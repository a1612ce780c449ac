/* An idle pool burns no CPU: once its workers have parked, a second of
 * doing nothing costs the process under 5% of a core. */
#include "../common/ws_check.h"

#include <sys/resource.h>

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

static void sum_range(void *arg, int64_t lo, int64_t hi) {
    _Atomic int64_t *sum = arg;
    atomic_fetch_add_explicit(sum, hi - lo, memory_order_relaxed);
}

static void test_idle_pool_sleeps(void **state) {
    (void)state;
    ws_pool *p = NULL;
    assert_int_equal(ws_pool_create(&p, NULL), 0); /* all cores */
    int n = ws_pool_num_threads(p);
    /* Some work first, so the workers have been awake and must park again. */
    _Atomic int64_t sum = 0;
    assert_int_equal(ws_parallel_for(p, 0, 1000000, 1000, sum_range, &sum), 0);
    assert_int_equal(atomic_load(&sum), 1000000);
    test_sleep_us(200000); /* spinning and yielding last well under this */
    double c0 = cpu_seconds(), t0 = test_now();
    test_sleep_us(1000000);
    double c1 = cpu_seconds(), t1 = test_now();
    double share = (c1 - c0) / (t1 - t0);
    print_message("idle pool of %d workers: %.3f%% of a core\n", n, 100.0 * share);
    assert_true(share < 0.05);
    ws_stats st[256];
    int np = ws_pool_stats(p, st, 256);
    for (int i = 0; i < n && i < np; i++)
        assert_true(st[i].parks > 0);
    assert_int_equal(ws_pool_destroy(p), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_pool_sleeps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
