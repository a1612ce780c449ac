/* The split deque on its own: order of take and steal, growth, what is
 * private and what is shared (the first push onto an empty deque, a thief's
 * request, sharing everything), taking shared tasks back, the bounded take
 * of groups, and one owner racing many thieves over a million items, each
 * of which must be taken exactly once. */
#include "../common/ws_check.h"

#include "deque.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static ws_task *item(uint64_t *base, int64_t i) {
    return (ws_task *)(void *)&base[i]; /* never dereferenced: identity only */
}

static ws_task *steal(ws__deque *q) { return ws__deque_steal(q, NULL); }

static void test_order_and_growth(void **state) {
    (void)state;
    ws__deque q;
    assert_int_equal(ws__deque_init(&q, 2, NULL), 0);
    uint64_t base[100];
    /* The first push onto an empty deque is shared, the rest private. */
    assert_int_equal(ws__deque_push(&q, item(base, 0)), 1);
    for (int i = 1; i < 100; i++)
        assert_int_equal(ws__deque_push(&q, item(base, i)), 0);
    /* Owner: last in, first out, across several growths. */
    for (int i = 99; i >= 50; i--)
        assert_ptr_equal(ws__deque_take(&q), item(base, i));
    assert_true(ws__deque_share_all(&q));
    assert_false(ws__deque_share_all(&q)); /* nothing private left */
    /* Thieves: first in, first out. */
    for (int i = 0; i < 50; i++)
        assert_ptr_equal(steal(&q), item(base, i));
    assert_null(steal(&q));
    assert_null(ws__deque_take(&q));
    assert_int_equal(ws__deque_shared_hint(&q), 0);
    ws__deque_destroy(&q);
    assert_int_equal(ws__deque_init(&q, 3, NULL), WS_EINVAL); /* not a power of two */
}

static void test_private_until_asked(void **state) {
    (void)state;
    ws__deque q;
    assert_int_equal(ws__deque_init(&q, 4, NULL), 0);
    uint64_t base[8];
    for (int i = 0; i < 3; i++)
        ws__deque_push(&q, item(base, i));
    /* Only item 0 went out; 1 and 2 are private. */
    assert_ptr_equal(steal(&q), item(base, 0));
    assert_null(steal(&q)); /* ... and this asks the owner to share */
    assert_true(atomic_load(&q.want));
    /* The next push answers: the older half of [1, 4), rounded up. */
    assert_int_equal(ws__deque_push(&q, item(base, 3)), 1);
    assert_false(atomic_load(&q.want));
    assert_ptr_equal(steal(&q), item(base, 1));
    assert_ptr_equal(steal(&q), item(base, 2));
    /* A take answers too, but keeps the task it takes: with one private
     * task there is nothing to share. */
    assert_null(steal(&q));
    assert_ptr_equal(ws__deque_take(&q), item(base, 3));
    assert_false(atomic_load(&q.want));
    /* Empty, and the owner knows it: thieves stop asking, and the next
     * push is shared at once. */
    assert_null(ws__deque_take(&q));
    assert_true(atomic_load(&q.idle_hint));
    assert_null(steal(&q));
    assert_false(atomic_load(&q.want));
    assert_int_equal(ws__deque_push(&q, item(base, 4)), 1);
    assert_ptr_equal(steal(&q), item(base, 4));
    /* Taken by a thief, so the owner does not know it has nothing shared:
     * the next pushes stay private until a thief asks; then a take shares
     * the older of two and takes the newer. */
    assert_int_equal(ws__deque_push(&q, item(base, 5)), 0);
    assert_int_equal(ws__deque_push(&q, item(base, 6)), 0);
    assert_null(steal(&q));
    assert_ptr_equal(ws__deque_take(&q), item(base, 6));
    assert_ptr_equal(steal(&q), item(base, 5));
    assert_null(ws__deque_take(&q));
    ws__deque_destroy(&q);
}

static void test_take_back_shared(void **state) {
    (void)state;
    ws__deque q;
    assert_int_equal(ws__deque_init(&q, 8, NULL), 0);
    uint64_t base[16];
    for (int i = 0; i < 16; i++)
        ws__deque_push(&q, item(base, i));
    assert_true(ws__deque_share_all(&q));
    /* The owner takes back half of the shared tasks with one lowering of
     * split: after the first take, [8, 15) is private again. */
    assert_ptr_equal(ws__deque_take(&q), item(base, 15));
    assert_int_equal(q.split, 8);
    assert_int_equal(atomic_load(&q.split_pub), 8);
    for (int i = 14; i >= 8; i--)
        assert_ptr_equal(ws__deque_take(&q), item(base, i));
    assert_ptr_equal(steal(&q), item(base, 0));
    assert_ptr_equal(steal(&q), item(base, 1));
    /* [2, 8) shared: the next take lowers split to 5. */
    assert_ptr_equal(ws__deque_take(&q), item(base, 7));
    assert_ptr_equal(steal(&q), item(base, 2));
    assert_ptr_equal(steal(&q), item(base, 3));
    assert_ptr_equal(steal(&q), item(base, 4));
    assert_null(steal(&q));
    assert_ptr_equal(ws__deque_take(&q), item(base, 6));
    assert_ptr_equal(ws__deque_take(&q), item(base, 5));
    assert_null(ws__deque_take(&q));
    assert_null(steal(&q));
    ws__deque_destroy(&q);
}

static void test_take_above(void **state) {
    (void)state;
    ws__deque q;
    assert_int_equal(ws__deque_init(&q, 4, NULL), 0);
    uint64_t base[8];
    for (int i = 0; i < 3; i++)
        ws__deque_push(&q, item(base, i));
    int64_t mark = q.bottom;
    for (int i = 3; i < 6; i++)
        ws__deque_push(&q, item(base, i));
    ws__deque_share_all(&q);
    /* A group started at mark sees only its own three tasks. */
    assert_ptr_equal(ws__deque_take_above(&q, mark), item(base, 5));
    assert_ptr_equal(steal(&q), item(base, 0));
    assert_ptr_equal(ws__deque_take_above(&q, mark), item(base, 4));
    assert_ptr_equal(ws__deque_take_above(&q, mark), item(base, 3));
    assert_null(ws__deque_take_above(&q, mark));
    assert_ptr_equal(ws__deque_take(&q), item(base, 2));
    ws__deque_destroy(&q);
}

/* ---- One owner, many thieves --------------------------------------------------- */

enum { NTHIEVES = 4 };

/* How the owner shares: only when asked (and its first push onto an empty
 * deque), everything every few pushes, or everything before each take, so
 * that takes race thieves on shared tasks. */
enum { SHARE_ASKED, SHARE_OFTEN, SHARE_BEFORE_TAKE };

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
        bool more = false;
        ws_task *t = ws__deque_steal(&r->q, &more);
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

static void owner_and_thieves(int64_t capacity, int share) {
    race r;
    r.n = WS_SCALED(1000000, 50000);
    r.base = calloc((size_t)r.n, sizeof(uint64_t));
    r.taken = calloc((size_t)r.n, sizeof(r.taken[0]));
    assert_non_null(r.base);
    assert_non_null(r.taken);
    atomic_init(&r.owner_done, false);
    assert_int_equal(ws__deque_init(&r.q, capacity, NULL), 0);
    thief th[NTHIEVES];
    for (int i = 0; i < NTHIEVES; i++) {
        th[i] = (thief){.r = &r};
        assert_int_equal(pthread_create(&th[i].th, NULL, thief_main, &th[i]), 0);
    }
    /* Owner: bursts of pushes with takes in between, so the race between
     * take and steal for the last shared task happens often. */
    uint64_t seed = 42;
    int64_t owner_got = 0;
    for (int64_t i = 0; i < r.n; i++) {
        if (ws__deque_push(&r.q, item(r.base, i)) < 0)
            fail_msg("push failed at %lld", (long long)i);
        if (share == SHARE_OFTEN && i % 7 == 0)
            ws__deque_share_all(&r.q);
        if (test_rng(&seed) % 4 == 0) {
            if (share == SHARE_BEFORE_TAKE)
                ws__deque_share_all(&r.q);
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
    for (int share = SHARE_ASKED; share <= SHARE_BEFORE_TAKE; share++) {
        /* Tiny: the array grows many times while thieves read the old ones. */
        owner_and_thieves(2, share);
        /* Large: the deque stays short and the owner often races thieves
         * for the last shared task. */
        owner_and_thieves(1 << 20, share);
    }
}

int main(int argc, char **argv) {
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_order_and_growth),
        cmocka_unit_test(test_private_until_asked),
        cmocka_unit_test(test_take_back_shared),
        cmocka_unit_test(test_take_above),
    };
    const struct CMUnitTest stress[] = {
        cmocka_unit_test(test_owner_and_thieves),
    };
    if (argc > 1 && strcmp(argv[1], "stress") == 0)
        return cmocka_run_group_tests(stress, NULL, NULL);
    return cmocka_run_group_tests(unit, NULL, NULL);
}
