/* Helpers shared by the scheduler's tests (which use ws.h alone, not agrad):
 * iteration scaling for sanitizer builds, a small PRNG, timing, a test pool,
 * fib's frames and task counts. cmocka is not thread-safe, so tests record
 * results from pool threads in plain memory and assert after joining. */
#ifndef WS_TEST_COMMON_H
#define WS_TEST_COMMON_H

#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "ws.h"

/* ThreadSanitizer runs this atomics-heavy code 5-20x slower; ASan about 2x. */
#if defined(__SANITIZE_THREAD__)
#define WS_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WS_TEST_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define WS_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WS_TEST_ASAN 1
#endif
#endif

#if defined(WS_TEST_TSAN)
#define WS_TEST_SCALE 8
#elif defined(WS_TEST_ASAN)
#define WS_TEST_SCALE 4
#else
#define WS_TEST_SCALE 1
#endif
/* n iterations in a normal build, fewer (at least lo) under sanitizers. */
#define WS_SCALED(n, lo) ((n) / WS_TEST_SCALE > (lo) ? (n) / WS_TEST_SCALE : (lo))

static inline uint64_t test_rng(uint64_t *s) {
    /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline double test_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void test_sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* A spin-wait hint. */
static inline void test_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Busy work the compiler cannot drop. */
static inline void test_burn(int n) {
    static _Thread_local volatile int sink; /* per thread: tasks burn in parallel */
    for (int i = 0; i < n; i++)
        sink = sink + i;
}

/* A pool with n workers that must be created; asserts on failure. */
static inline ws_pool *test_pool(int nworkers) {
    ws_pool_opts o = WS_POOL_OPTS_INIT;
    o.num_threads = nworkers;
    ws_pool *p = NULL;
    assert_int_equal(ws_pool_create(&p, &o), 0);
    assert_non_null(p);
    return p;
}

/* ---- fib, the fork-join workload the suites share ---------------------------------- */

/* A forked fib(n - 1): the task first, so the task pointer is the frame's. */
typedef struct fib_frame {
    ws_task task;
    int n;
    long result;
} fib_frame;

static inline long fib_serial(int n) { return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2); }

/* The argument of a run's root task: fib(n), by the suite's own fib. */
typedef struct fib_root {
    int n;
    long result;
} fib_root;

/* reps runs of root (a fib_root task) on p, each giving fib(n). */
static inline void test_run_fib(ws_pool *p, ws_task_fn root, int n, int reps) {
    long want = fib_serial(n);
    for (int rep = 0; rep < reps; rep++) {
        fib_root r = {n, 0};
        assert_int_equal(ws_run(p, root, &r), 0);
        assert_int_equal(r.result, want);
    }
}

/* Tasks the pool's participants have run, summed over all of them. */
static inline uint64_t test_tasks_run(ws_pool *p) {
    ws_stats st[64];
    int np = ws_pool_stats(p, st, 64);
    uint64_t run = 0;
    for (int i = 0; i < np && i < 64; i++)
        run += st[i].tasks_run;
    return run;
}

#endif /* WS_TEST_COMMON_H */
