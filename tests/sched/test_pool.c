/* Pools: creation with every kind of thread count, bad arguments and
 * thread-creation failure as error codes, the default count, destruction
 * rules, fire-and-forget submission from outside, counters and the trace. */
#include "../common/ws_check.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_create_destroy(void **state) {
    (void)state;
    const int counts[] = {0, 1, 2, 5, 16};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        ws_pool *p = test_pool(counts[i]);
        assert_int_equal(ws_pool_num_threads(p), counts[i]);
        assert_int_equal(ws_pool_max_participants(p), counts[i] + 64);
        assert_int_equal(ws_pool_destroy(p), 0);
    }
    ws_pool *p = NULL;
    assert_int_equal(ws_pool_create(&p, NULL), 0); /* defaults */
    assert_int_equal(ws_pool_num_threads(p), ws_default_num_threads());
    assert_int_equal(ws_pool_destroy(p), 0);
}

static void test_bad_args(void **state) {
    (void)state;
    ws_pool *p = (ws_pool *)&p;
    ws_pool_opts o = WS_POOL_OPTS_INIT;
    assert_int_equal(ws_pool_create(NULL, NULL), WS_EINVAL);
    o.num_threads = -5;
    assert_int_equal(ws_pool_create(&p, &o), WS_EINVAL);
    assert_null(p);
    o.num_threads = 100000;
    assert_int_equal(ws_pool_create(&p, &o), WS_EINVAL);
    o.num_threads = 1;
    o.max_outside = -1;
    assert_int_equal(ws_pool_create(&p, &o), WS_EINVAL);
    assert_int_equal(ws_pool_destroy(NULL), WS_EINVAL);
    assert_int_equal(ws_pool_num_threads(NULL), WS_EINVAL);
    assert_int_equal(ws_submit(NULL, NULL), WS_EINVAL);
    assert_int_equal(ws_pool_stats(NULL, NULL, 0), WS_EINVAL);
    assert_int_equal(ws_trace_enable(NULL, true), WS_EINVAL);
    assert_int_equal(ws_trace_write(NULL, "x"), WS_EINVAL);
    assert_string_equal(ws_strerror(WS_EAGAIN), "cannot create a thread");
    assert_string_equal(ws_strerror(WS_OK), "success");
    assert_string_equal(ws_strerror(12345), "unknown error");
    assert_string_equal(ws_strerror(-WS_ERRNO_COUNT), "unknown error");
    assert_string_equal(ws_strerror(INT32_MIN), "unknown error");
    /* Every code of the table has its own text. */
#define CHECK_TEXT(name, code, msg) assert_string_equal(ws_strerror(WS_##name), msg);
    WS_ERRNO_MAP(CHECK_TEXT)
#undef CHECK_TEXT
}

static void test_thread_creation_failure(void **state) {
    (void)state;
    /* A stack no mmap can provide: pthread_create fails for the first
     * worker, and the pool reports it instead of crashing. */
    ws_pool_opts o = WS_POOL_OPTS_INIT;
    o.num_threads = 3;
    o.stack_size = (size_t)1 << 46;
    ws_pool *p = (ws_pool *)&p;
    int rc = ws_pool_create(&p, &o);
    assert_true(rc == WS_EAGAIN || rc == WS_EINVAL);
    assert_null(p);
    /* And a pool still works afterwards. */
    o.stack_size = 1 << 20;
    assert_int_equal(ws_pool_create(&p, &o), 0);
    assert_int_equal(ws_pool_destroy(p), 0);
}

static void test_default_threads_env(void **state) {
    (void)state;
    const char *old = getenv("WS_NUM_THREADS");
    char *saved = old ? strdup(old) : NULL;
    setenv("WS_NUM_THREADS", "3", 1);
    assert_int_equal(ws_default_num_threads(), 3);
    ws_pool *p = NULL;
    assert_int_equal(ws_pool_create(&p, NULL), 0);
    assert_int_equal(ws_pool_num_threads(p), 3);
    assert_int_equal(ws_pool_destroy(p), 0);
    setenv("WS_NUM_THREADS", "banana", 1); /* ignored: all cores */
    int cores = ws_default_num_threads();
    assert_true(cores >= 1);
    setenv("WS_NUM_THREADS", "0", 1);
    assert_int_equal(ws_default_num_threads(), cores);
    if (saved) {
        setenv("WS_NUM_THREADS", saved, 1);
        free(saved);
    } else {
        unsetenv("WS_NUM_THREADS");
    }
}

/* ---- Destruction rules ----------------------------------------------------------- */

typedef struct destroy_from_task {
    ws_pool *p;
    int rc;
} destroy_from_task;

static void destroy_fn(ws_task *t) {
    destroy_from_task *d = t->arg;
    d->rc = ws_pool_destroy(d->p);
}

typedef struct holder {
    ws_pool *p;
    sem_t inside, release;
    int rc;
} holder;

static void hold_fn(ws_task *t) {
    holder *h = t->arg;
    sem_post(&h->inside);
    sem_wait(&h->release);
}

static void *holder_main(void *arg) {
    holder *h = arg;
    h->rc = ws_run(h->p, hold_fn, h);
    return NULL;
}

/* ws_pool_wake wakes sleeping workers (at most n, at most the workers),
 * and they go back to sleep when there is nothing to do. */
static void test_wake(void **state) {
    (void)state;
    ws_pool *p;
    ws_pool_opts o = WS_POOL_OPTS_INIT;
    o.num_threads = 3;
    assert_int_equal(ws_pool_create(&p, &o), 0);
    assert_int_equal(ws_pool_wake(NULL, 1), WS_EINVAL);
    assert_int_equal(ws_pool_wake(p, -1), WS_EINVAL);
    assert_int_equal(ws_pool_wake(p, 0), 0);
    ws_stats st[8];
    for (int round = 0; round < 3; round++) {
        /* wait until every worker has parked */
        for (int tries = 0; tries < 2000; tries++) {
            int n = ws_pool_stats(p, st, 8);
            uint64_t parked = 0;
            for (int i = 0; i < 3 && i < n; i++)
                parked += st[i].parks > (uint64_t)round;
            if (parked == 3)
                break;
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
        int woke = ws_pool_wake(p, 8);
        assert_true(woke >= 0 && woke <= 3);
    }
    assert_int_equal(ws_pool_destroy(p), 0);
}

static void test_destroy_rules(void **state) {
    (void)state;
    ws_pool *p = test_pool(2);
    destroy_from_task d = {p, 0};
    assert_int_equal(ws_run(p, destroy_fn, &d), 0);
    assert_int_equal(d.rc, WS_ESTATE);
    /* An outside thread inside the pool: destroy refuses and leaves it. */
    holder h = {.p = p};
    sem_init(&h.inside, 0, 0);
    sem_init(&h.release, 0, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, holder_main, &h), 0);
    sem_wait(&h.inside);
    assert_int_equal(ws_pool_destroy(p), WS_EBUSY);
    sem_post(&h.release);
    pthread_join(th, NULL);
    assert_int_equal(h.rc, 0);
    assert_int_equal(ws_pool_destroy(p), 0);
    sem_destroy(&h.inside);
    sem_destroy(&h.release);
}

/* ---- Submission from outside ------------------------------------------------------ */

typedef struct sub_task {
    ws_task task;
    _Atomic int64_t *done;
    int64_t *slot; /* plain: written by the task, read after the count */
} sub_task;

static void sub_fn(ws_task *t) {
    sub_task *s = (sub_task *)t;
    *s->slot += 1;
    atomic_fetch_add_explicit(s->done, 1, memory_order_release);
}

static void test_submit_from_outside(void **state) {
    (void)state;
    enum { N = 5000 };
    const int counts[] = {1, 4};
    for (size_t c = 0; c < 2; c++) {
        ws_pool *p = test_pool(counts[c]);
        sub_task *ts = calloc(N, sizeof(*ts));
        int64_t *slots = calloc(N, sizeof(int64_t));
        _Atomic int64_t done = 0;
        for (int i = 0; i < N; i++) {
            ts[i] = (sub_task){.done = &done, .slot = &slots[i]};
            ws_task_init(&ts[i].task, sub_fn, NULL);
            assert_int_equal(ws_submit(p, &ts[i].task), 0);
        }
        while (atomic_load_explicit(&done, memory_order_acquire) < N)
            test_sleep_us(100);
        for (int i = 0; i < N; i++)
            assert_int_equal(slots[i], 1);
        /* A worker counts a task after its function returns, so the last
         * counts may trail `done`: wait for them, not for a time. */
        uint64_t run = 0, steals = 0;
        while (run < N || steals < N) {
            ws_stats st[8];
            int np = ws_pool_stats(p, st, 8);
            run = steals = 0;
            for (int i = 0; i < np; i++) {
                run += st[i].tasks_run;
                steals += st[i].steals;
            }
            if (run < N || steals < N)
                test_sleep_us(100);
        }
        assert_int_equal(run, N);
        assert_int_equal(steals, N); /* each came from the submission queue */
        assert_int_equal(ws_pool_destroy(p), 0);
        free(ts);
        free(slots);
    }
}

static void test_destroy_runs_queued(void **state) {
    (void)state;
    /* With no workers nothing runs the queue but destroy itself. */
    ws_pool *p = test_pool(0);
    enum { N = 100 };
    sub_task ts[N];
    int64_t slots[N] = {0};
    _Atomic int64_t done = 0;
    for (int i = 0; i < N; i++) {
        ts[i] = (sub_task){.done = &done, .slot = &slots[i]};
        ws_task_init(&ts[i].task, sub_fn, NULL);
        assert_int_equal(ws_submit(p, &ts[i].task), 0);
    }
    assert_int_equal(ws_pool_destroy(p), 0);
    assert_int_equal(atomic_load(&done), N);
}

/* ---- Trace ------------------------------------------------------------------------- */

static void named_fn(ws_task *t) {
    test_burn(1000);
    (void)t;
}

/* p's trace as ws_trace_write writes it, NUL-terminated in buf. */
static void read_trace(ws_pool *p, char *buf, size_t cap) {
    char path[] = "/tmp/ws-trace-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(ws_trace_write(p, path), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t len = fread(buf, 1, cap - 1, f);
    buf[len] = '\0';
    fclose(f);
    unlink(path);
}

static void test_trace(void **state) {
    (void)state;
    ws_pool *p = test_pool(2);
    enum { N = 200 };
    ws_task ts[N];
    assert_int_equal(ws_trace_enable(p, true), 0);
    ws_group g;
    assert_int_equal(ws_group_init(&g, p), 0);
    for (int i = 0; i < N; i++) {
        ws_task_init(&ts[i], named_fn, NULL);
        ts[i].name = i % 2 ? "odd \"task\"" : "even";
        ws_spawn(&g, &ts[i]);
    }
    assert_int_equal(ws_group_wait(&g), 0);
    assert_int_equal(ws_trace_enable(p, false), 0);
    static char buf[1 << 20];
    read_trace(p, buf, sizeof buf);
    assert_true(strncmp(buf, "{\"traceEvents\":[", 16) == 0);
    int events = 0, odd = 0, braces = 0;
    for (char *s = buf; (s = strstr(s, "\"ph\":\"X\"")); s++)
        events++;
    for (char *s = buf; (s = strstr(s, "odd \\\"task\\\"")); s++)
        odd++;
    for (char *s = buf; *s; s++)
        braces += *s == '{' ? 1 : *s == '}' ? -1 : 0;
    assert_int_equal(events, N);
    assert_int_equal(odd, N / 2);
    assert_int_equal(braces, 0);
    assert_non_null(strstr(buf, "\"tid\":2")); /* the outside slot after 2 workers */
    assert_non_null(strstr(buf, "\"name\":\"outside 0\""));
    /* A new trace starts empty. */
    assert_int_equal(ws_trace_enable(p, true), 0);
    assert_int_equal(ws_trace_enable(p, false), 0);
    read_trace(p, buf, sizeof buf);
    assert_null(strstr(buf, "\"ph\":\"X\""));
    assert_int_equal(ws_pool_destroy(p), 0);
}

/* ws_trace_event: from a thread outside the pool's tasks, an event on a row
 * of its own; from a task, on its participant's row; nothing while off. */
static void event_fn(ws_task *t) {
    uint64_t now = ws_now_ns();
    ws_trace_event(ws_current_pool(), (const char *)t->arg, now, now + 1000);
}

static void test_trace_event(void **state) {
    (void)state;
    ws_pool *p = test_pool(1);
    assert_int_equal(ws_trace_event(NULL, "x", 0, 0), WS_EINVAL);
    assert_int_equal(ws_trace_event(p, NULL, 0, 0), WS_EINVAL);
    uint64_t t0 = ws_now_ns();
    assert_int_equal(ws_trace_event(p, "before", t0, t0 + 10), 0); /* off: not recorded */
    assert_int_equal(ws_trace_enable(p, true), 0);
    assert_int_equal(ws_trace_event(p, "loose \"one\"", t0, ws_now_ns()), 0);
    assert_int_equal(ws_run(p, event_fn, (void *)"in a task"), 0);
    assert_int_equal(ws_trace_enable(p, false), 0);
    static char buf[1 << 16];
    read_trace(p, buf, sizeof buf);
    assert_null(strstr(buf, "before"));
    const char *loose = strstr(buf, "{\"name\":\"loose \\\"one\\\"\",\"ph\":\"X\"");
    assert_non_null(loose);
    assert_non_null(strstr(loose, "\"tid\":1000")); /* a thread's row, after every participant's */
    assert_non_null(strstr(buf, "\"args\":{\"name\":\"thread "));
    const char *task = strstr(buf, "{\"name\":\"in a task\",\"ph\":\"X\"");
    assert_non_null(task);
    const char *end = strchr(task, '}'); /* a participant's row: the worker (0) or the caller's slot (1) */
    assert_true(end && (strncmp(end - 8, ",\"tid\":0", 8) == 0 || strncmp(end - 8, ",\"tid\":1", 8) == 0));
    assert_int_equal(ws_pool_destroy(p), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_destroy),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_thread_creation_failure),
        cmocka_unit_test(test_default_threads_env),
        cmocka_unit_test(test_destroy_rules),
        cmocka_unit_test(test_submit_from_outside),
        cmocka_unit_test(test_destroy_runs_queued),
        cmocka_unit_test(test_trace),
        cmocka_unit_test(test_trace_event),
        cmocka_unit_test(test_wake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
