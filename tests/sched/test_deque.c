/* The Chase-Lev deque on its own: order of take and steal, growth, the
 * bounded take of groups, and one owner racing many thieves over a million
 * items, each of which must be taken exactly once. */
#include "common.h"

#include "deque.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static ws_task *item(uint64_t *base, int64_t i) {
    return (ws_task *)(void *)&base[i]; /* never dereferenced: identity only */
}

static void test_order_and_growth(void **state) {
    (void)state;
    ws__deque q;
    assert_int_equal(ws__deque_init(&q, 2), 0);
    uint64_t base[100];
    /* Owner: last in, first out, across several growths. */
    for (int i = 0; i < 100; i++)
        assert_true(ws__deque_push(&q, item(base, i)));
    for (int i = 99; i >= 50; i--)
        assert_ptr_equal(ws__deque_take(&q), item(base, i));
    /* Thieves: first in, first out. */
    for (int i = 0; i < 50; i++)
        assert_ptr_equal(ws__deque_steal(&q), item(base, i));
    assert_null(ws__deque_steal(&q));
    assert_null(ws__deque_take(&q));
    assert_int_equal(ws__deque_size_hint(&q), 0);
    ws__deque_destroy(&q);
    assert_int_equal(ws__deque_init(&q, 3), WS_EINVAL); /* not a power of two */
}

static void test_take_above(void **state) {
    (void)state;
    ws__deque q;
    assert_int_equal(ws__deque_init(&q, 4), 0);
    uint64_t base[8];
    for (int i = 0; i < 3; i++)
        assert_true(ws__deque_push(&q, item(base, i)));
    int64_t mark = atomic_load(&q.bottom);
    for (int i = 3; i < 6; i++)
        assert_true(ws__deque_push(&q, item(base, i)));
    /* A group started at mark sees only its own three tasks. */
    assert_ptr_equal(ws__deque_take_above(&q, mark), item(base, 5));
    assert_ptr_equal(ws__deque_steal(&q), item(base, 0));
    assert_ptr_equal(ws__deque_take_above(&q, mark), item(base, 4));
    assert_ptr_equal(ws__deque_take_above(&q, mark), item(base, 3));
    assert_null(ws__deque_take_above(&q, mark));
    assert_ptr_equal(ws__deque_take(&q), item(base, 2));
    ws__deque_destroy(&q);
}

/* ---- One owner, many thieves --------------------------------------------------- */

enum { NTHIEVES = 4 };

typedef struct race {
    ws__deque q;
    uint64_t *base;
    _Atomic uint8_t *taken; /* per item: how many times it came out */
    int64_t n;
    _Atomic bool owner_done;
} race;

typedef struct thief {
    race *r;
    pthread_t th;
    int64_t got; /* read after join */
    int64_t aborts;
} thief;

static void mark(race *r, ws_task *t) {
    int64_t i = (int64_t)((uint64_t *)(void *)t - r->base);
    if (i >= 0 && i < r->n)
        atomic_fetch_add_explicit(&r->taken[i], 1, memory_order_relaxed);
}

static void *thief_main(void *arg) {
    thief *me = arg;
    race *r = me->r;
    for (;;) {
        bool finished = atomic_load_explicit(&r->owner_done, memory_order_acquire);
        ws_task *t = ws__deque_steal(&r->q);
        if (t == WS__STEAL_ABORT) {
            me->aborts++;
            continue;
        }
        if (t) {
            mark(r, t);
            me->got++;
        } else if (finished) {
            /* Empty after the owner stopped pushing: nothing more will come. */
            return NULL;
        }
    }
}

static void owner_and_thieves(int64_t capacity) {
    race r;
    r.n = WS_SCALED(1000000, 50000);
    r.base = calloc((size_t)r.n, sizeof(uint64_t));
    r.taken = calloc((size_t)r.n, sizeof(r.taken[0]));
    assert_non_null(r.base);
    assert_non_null(r.taken);
    atomic_init(&r.owner_done, false);
    assert_int_equal(ws__deque_init(&r.q, capacity), 0);
    thief th[NTHIEVES];
    for (int i = 0; i < NTHIEVES; i++) {
        th[i] = (thief){.r = &r};
        assert_int_equal(pthread_create(&th[i].th, NULL, thief_main, &th[i]), 0);
    }
    /* Owner: bursts of pushes with takes in between, so the last-element
     * race between take and steal happens often. */
    uint64_t seed = 42;
    int64_t owner_got = 0;
    for (int64_t i = 0; i < r.n; i++) {
        if (!ws__deque_push(&r.q, item(r.base, i)))
            fail_msg("push failed at %lld", (long long)i);
        if (test_rng(&seed) % 4 == 0) {
            ws_task *t = ws__deque_take(&r.q);
            if (t) {
                mark(&r, t);
                owner_got++;
            }
        }
    }
    ws_task *t;
    while ((t = ws__deque_take(&r.q))) {
        mark(&r, t);
        owner_got++;
    }
    atomic_store_explicit(&r.owner_done, true, memory_order_release);
    int64_t total = owner_got;
    for (int i = 0; i < NTHIEVES; i++) {
        pthread_join(th[i].th, NULL);
        total += th[i].got;
    }
    int64_t bad = 0, first_bad = -1;
    for (int64_t i = 0; i < r.n; i++)
        if (atomic_load(&r.taken[i]) != 1 && bad++ == 0)
            first_bad = i;
    assert_int_equal(bad, 0);
    assert_int_equal(first_bad, -1);
    assert_int_equal(total, r.n);
    ws__deque_destroy(&r.q);
    free(r.base);
    free(r.taken);
}

static void test_owner_and_thieves(void **state) {
    (void)state;
    /* Tiny: the array grows many times while thieves read the old ones. */
    owner_and_thieves(2);
    /* Large: the deque stays short and the owner often races thieves for
     * the last task. */
    owner_and_thieves(1 << 20);
}

int main(int argc, char **argv) {
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_order_and_growth),
        cmocka_unit_test(test_take_above),
    };
    const struct CMUnitTest stress[] = {
        cmocka_unit_test(test_owner_and_thieves),
    };
    if (argc > 1 && strcmp(argv[1], "stress") == 0)
        return cmocka_run_group_tests(stress, NULL, NULL);
    return cmocka_run_group_tests(unit, NULL, NULL);
}
