/* Parallel-for: every index in [begin, end) exactly once, for many grains
 * and offsets, from outside threads and nested inside tasks; bad ranges
 * are error codes. */
#include "../common/ws_check.h"

#include <stdlib.h>
#include <string.h>

typedef struct cover {
    _Atomic uint32_t *hits; /* indexed by i - begin */
    int64_t begin, end;
    _Atomic int64_t bad_ranges; /* empty, inverted or out of bounds */
    _Atomic int64_t calls;
} cover;

static void cover_fn(void *arg, int64_t lo, int64_t hi) {
    cover *c = arg;
    atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
    if (lo >= hi || lo < c->begin || hi > c->end) {
        atomic_fetch_add_explicit(&c->bad_ranges, 1, memory_order_relaxed);
        return;
    }
    for (int64_t i = lo; i < hi; i++)
        atomic_fetch_add_explicit(&c->hits[i - c->begin], 1, memory_order_relaxed);
}

static void check_cover(ws_pool *p, int64_t begin, int64_t end, int64_t grain) {
    cover c = {.begin = begin, .end = end};
    int64_t n = end - begin;
    c.hits = calloc((size_t)(n > 0 ? n : 1), sizeof(c.hits[0]));
    assert_non_null(c.hits);
    assert_int_equal(ws_parallel_for(p, begin, end, grain, cover_fn, &c), 0);
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; i++)
        wrong += atomic_load(&c.hits[i]) != 1;
    assert_int_equal(wrong, 0);
    assert_int_equal(atomic_load(&c.bad_ranges), 0);
    if (grain > 0 && n > 0) {
        /* Halving stops at the grain: no piece is under (grain+1)/2. */
        int64_t min_piece = (grain + 1) / 2 < n ? (grain + 1) / 2 : n;
        assert_true(atomic_load(&c.calls) <= n / min_piece);
    }
    free(c.hits);
}

static void test_cover_grains(void **state) {
    (void)state;
    ws_pool *p = test_pool(3);
    const int64_t n = WS_SCALED(100003, 10007);
    const int64_t grains[] = {0, 1, 7, 64, 1000, n, n + 5};
    for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++) {
        check_cover(p, 0, n, grains[g]);
        check_cover(p, -777, n - 777, grains[g]);
    }
    check_cover(p, 5, 6, 0);
    check_cover(p, 5, 5, 3); /* empty: no call */
    assert_int_equal(ws_pool_destroy(p), 0);
}

/* A parallel-for inside each iteration of another, the way a kernel inside
 * a DAG node splits on the same pool. */
typedef struct outer {
    cover inner[16];
} outer;

static void outer_fn(void *arg, int64_t lo, int64_t hi) {
    outer *o = arg;
    for (int64_t i = lo; i < hi; i++)
        ws_parallel_for(NULL, o->inner[i].begin, o->inner[i].end, 16, cover_fn, &o->inner[i]);
}

static void test_nested(void **state) {
    (void)state;
    ws_pool *p = test_pool(2);
    outer o;
    memset(&o, 0, sizeof(o));
    for (int i = 0; i < 16; i++) {
        o.inner[i].begin = i * 100;
        o.inner[i].end = i * 100 + 1000 + i;
        o.inner[i].hits = calloc(1000 + (size_t)i, sizeof(o.inner[i].hits[0]));
    }
    assert_int_equal(ws_parallel_for(p, 0, 16, 1, outer_fn, &o), 0);
    for (int i = 0; i < 16; i++) {
        int64_t wrong = 0;
        for (int64_t k = 0; k < 1000 + i; k++)
            wrong += atomic_load(&o.inner[i].hits[k]) != 1;
        assert_int_equal(wrong, 0);
        assert_int_equal(atomic_load(&o.inner[i].bad_ranges), 0);
        free(o.inner[i].hits);
    }
    assert_int_equal(ws_pool_destroy(p), 0);
}

static void nop_range(void *arg, int64_t lo, int64_t hi) {
    (void)arg;
    (void)lo;
    (void)hi;
}

static void test_bad_args(void **state) {
    (void)state;
    ws_pool *p = test_pool(1);
    assert_int_equal(ws_parallel_for(p, 0, 10, 1, NULL, NULL), WS_EINVAL);
    assert_int_equal(ws_parallel_for(p, 10, 0, 1, nop_range, NULL), WS_EINVAL);
    assert_int_equal(ws_parallel_for(p, 0, 10, -1, nop_range, NULL), WS_EINVAL);
    assert_int_equal(ws_parallel_for(p, INT64_MIN, INT64_MAX, 1, nop_range, NULL), WS_EINVAL);
    assert_int_equal(ws_parallel_for(NULL, 0, 10, 1, nop_range, NULL), WS_ESTATE);
    assert_int_equal(ws_pool_destroy(p), 0);
}

static void test_no_workers(void **state) {
    (void)state;
    ws_pool *p = test_pool(0);
    check_cover(p, 0, 10000, 10);
    assert_int_equal(ws_pool_destroy(p), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cover_grains),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_no_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
