/* Parking and waking. Each test blocks a thread on work that only a parked
 * participant can do, many times, with delays that catch the sleeper in
 * every phase (spinning, yielding, re-checking, asleep). A lost wake-up
 * hangs the test, and meson's timeout fails it. */
#include "../common/ws_check.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>

static long pick_delay_us(uint64_t *seed) {
    switch (test_rng(seed) % 6) {
    case 0:
        return 0;
    case 1:
        return 1;
    case 2:
        return 10;
    case 3:
        return 40;
    case 4:
        return 150;
    default:
        return (long)(test_rng(seed) % 3000); /* long enough to be asleep */
    }
}

static void spin_us(long us) {
    double end = test_now() + (double)us * 1e-6;
    while (test_now() < end)
        ;
}

/* ---- Outside submission wakes a worker ---------------------------------------------- */

static void post_fn(ws_task *t) { sem_post(t->arg); }

static uint64_t all_parks(ws_pool *p) {
    ws_stats st[2] = {{0}};
    ws_pool_stats(p, st, 2);
    return st[0].parks + st[1].parks;
}

static void test_submit_wakes_worker(void **state) {
    (void)state;
    ws_pool *p = test_pool(2);
    sem_t done;
    sem_init(&done, 0, 0);
    uint64_t seed = 1;
    int iters = WS_SCALED(3000, 300);
    for (int i = 0; i < iters; i++) {
        test_sleep_us(pick_delay_us(&seed));
        uint64_t parks = all_parks(p);
        ws_task t = WS_TASK_INIT(post_fn, &done);
        assert_int_equal(ws_submit(p, &t), 0);
        sem_wait(&done); /* passive: only a worker can run t */
        /* Every hundredth, wait until a worker has gone to sleep since t
         * was submitted (up to seconds, however loaded the machine), so
         * that the next submission surely wakes a sleeper. */
        for (double end = test_now() + 5.0; i % 100 == 0 && all_parks(p) == parks && test_now() < end;)
            test_sleep_us(100);
    }
    ws_stats st[2];
    ws_pool_stats(p, st, 2);
    assert_true(st[0].parks + st[1].parks > 0); /* the sleeping path ran */
    sem_destroy(&done);
    assert_int_equal(ws_pool_destroy(p), 0);
}

/* ---- A worker's push wakes another worker --------------------------------------------- */

typedef struct pair {
    ws_task parent, child;
    sem_t child_done, parent_done;
    long delay_us;
} pair;

static void child_fn(ws_task *t) {
    pair *pr = t->arg;
    sem_post(&pr->child_done);
}

static void parent_fn(ws_task *t) {
    pair *pr = t->arg;
    spin_us(pr->delay_us); /* let the other worker drift towards sleep */
    ws_task_init(&pr->child, child_fn, pr);
    ws_submit(ws_current_pool(), &pr->child); /* onto this worker's deque */
    /* Block this worker: only the other one can run the child, and it
     * must be woken by the push (the membarrier/fence pairing). */
    sem_wait(&pr->child_done);
    sem_post(&pr->parent_done);
}

static void test_push_wakes_worker(void **state) {
    (void)state;
    ws_pool *p = test_pool(2);
    pair pr;
    sem_init(&pr.child_done, 0, 0);
    sem_init(&pr.parent_done, 0, 0);
    uint64_t seed = 2;
    int iters = WS_SCALED(2000, 200);
    for (int i = 0; i < iters; i++) {
        pr.delay_us = pick_delay_us(&seed);
        ws_task_init(&pr.parent, parent_fn, &pr);
        assert_int_equal(ws_submit(p, &pr.parent), 0);
        sem_wait(&pr.parent_done);
    }
    sem_destroy(&pr.child_done);
    sem_destroy(&pr.parent_done);
    assert_int_equal(ws_pool_destroy(p), 0);
}

/* ---- A finished stolen task wakes its parked group owner ------------------------------------ */

typedef struct slow {
    ws_task task;
    long us;
    ws_pool *p;
    uint64_t owner_parks; /* > 0: a thief runs until the owner's park count reaches it */
    int ran;              /* plain: read by the owner after the wait */
} slow;

static uint64_t parks_of(ws_pool *p, int i) {
    ws_stats st[2] = {{0}};
    ws_pool_stats(p, st, 2);
    return st[i].parks;
}

static void slow_fn(ws_task *t) {
    slow *s = (slow *)t;
    spin_us(s->us);
    /* On a loaded machine (or under a sanitizer) the owner may take longer
     * than any fixed delay to spin and yield its way to sleep: wait for
     * it, up to seconds, so that the wake-up of a sleeping owner surely
     * runs. */
    bool thief = ws_participant_index() != 1; /* the owner is the outside slot after the worker */
    for (double end = test_now() + 5.0;
         thief && s->owner_parks && parks_of(s->p, 1) < s->owner_parks && test_now() < end;)
        test_sleep_us(100);
    s->ran = 1;
}

static uint64_t steals_of(ws_pool *p, int i) {
    ws_stats st[2] = {{0}};
    ws_pool_stats(p, st, 2);
    return st[i].steals;
}

static void test_completion_wakes_owner(void **state) {
    (void)state;
    ws_pool *p = test_pool(1);
    uint64_t seed = 3;
    int iters = WS_SCALED(600, 60);
    for (int i = 0; i < iters; i++) {
        /* Long enough, often, for the waiting owner to give up spinning;
         * every tenth until it has (spinning is slow under sanitizers and
         * on a loaded machine). */
        slow s = {.us = i % 10 == 0 ? 20000 : pick_delay_us(&seed) % 1500 + 1, .p = p};
        if (i % 10 == 0)
            s.owner_parks = parks_of(p, 1) + 1;
        ws_task_init(&s.task, slow_fn, NULL);
        uint64_t before = steals_of(p, 0);
        ws_group g;
        assert_int_equal(ws_group_init(&g, p), 0);
        assert_int_equal(ws_spawn(&g, &s.task), 0);
        /* Let the worker steal it, so this thread has to wait for a thief.
         * The first push on an empty deque is shared at once and signals
         * the pool, and only the worker can take it: no time limit (a
         * lost wake-up hangs here, and the timeout fails the test). */
        while (steals_of(p, 0) == before)
            ;
        assert_int_equal(ws_group_wait(&g), 0);
        assert_int_equal(s.ran, 1);
    }
    ws_stats st[2] = {{0}};
    assert_int_equal(ws_pool_stats(p, st, 2), 2);
    assert_true(st[1].parks > 0); /* the owner slept and the thief woke it */
    assert_int_equal(ws_pool_destroy(p), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_submit_wakes_worker),
        cmocka_unit_test(test_push_wakes_worker),
        cmocka_unit_test(test_completion_wakes_owner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
