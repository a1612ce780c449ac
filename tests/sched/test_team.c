/* Growing a pool, capped runs (ws_run_capped, ws_seat_index) and the CPU
 * count: a capped run never has more threads on its work than its cap,
 * each seat is held by one thread at a time, several outside threads with
 * different caps share one pool, and the cgroup quota is read as the
 * kernel writes it. With the argument "stress", the concurrent cases run
 * many more rounds. */
#include "../common/ws_check.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ws__cgroup_cpu_limit(const char *cgroup_file, const char *mountinfo_file);

static bool stress;

/* Busy work the compiler cannot drop (unsigned: it may wrap). */
static void burn(int n) {
    static _Thread_local volatile unsigned sink;
    for (int i = 0; i < n; i++)
        sink = sink + (unsigned)i;
}

/* ---- Growing ------------------------------------------------------------------- */

static void count_fn(ws_task *t) { atomic_fetch_add((_Atomic int *)t->arg, 1); }

static void test_grow(void **state) {
    (void)state;
    ws_pool *p = test_pool(1);
    assert_int_equal(ws_pool_grow(NULL, 2), WS_EINVAL);
    assert_int_equal(ws_pool_grow(p, -1), WS_EINVAL);
    assert_int_equal(ws_pool_grow(p, 0), 0); /* never shrinks */
    assert_int_equal(ws_pool_num_threads(p), 1);
    _Atomic int ran = 0;
    assert_int_equal(ws_run(p, count_fn, (void *)&ran), 0); /* an outside slot after the worker */
    assert_int_equal(ws_pool_grow(p, 5), 0);
    assert_int_equal(ws_pool_num_threads(p), 5);
    assert_true(ws_pool_max_participants(p) >= 5 + 1);
    /* the new workers take work: a parallel-for sees more than one thread */
    ws_stats st[80];
    int n = ws_pool_stats(p, st, 80);
    assert_int_equal(n, 6); /* 1 worker, 1 outside slot, 4 new workers */
    assert_int_equal(ws_pool_grow(p, 3), 0);
    assert_int_equal(ws_pool_num_threads(p), 5);
    assert_int_equal(ws_pool_destroy(p), 0);
    assert_int_equal(atomic_load(&ran), 1);
}

/* ---- Capped runs ------------------------------------------------------------------ */

enum { MAX_SEATS = 16 };

typedef struct cap_log {
    int cap;
    _Atomic int inside, max_inside;
    _Atomic int seat_holder[MAX_SEATS]; /* 1 while a task runs on that seat */
    _Atomic int bad_seat, shared_seat, tasks;
} cap_log;

/* One unit of work inside a capped run: checks its seat and the count of
 * tasks running at once. */
static void cap_work(cap_log *l, int work) {
    int seat = ws_seat_index();
    if (seat < 0 || seat >= l->cap || seat >= MAX_SEATS) {
        atomic_fetch_add(&l->bad_seat, 1);
        return;
    }
    int now = atomic_fetch_add(&l->inside, 1) + 1;
    int m = atomic_load(&l->max_inside);
    while (now > m && !atomic_compare_exchange_weak(&l->max_inside, &m, now))
        ;
    /* A seat is one thread's at a time; nested work on the same thread
     * (a parallel-for inside a node) runs on the same seat, so count the
     * nesting per seat rather than flag it. */
    static _Thread_local int depth;
    if (depth++ == 0 && atomic_exchange(&l->seat_holder[seat], 1) != 0)
        atomic_fetch_add(&l->shared_seat, 1);
    burn(work);
    if (--depth == 0)
        atomic_store(&l->seat_holder[seat], 0);
    atomic_fetch_sub(&l->inside, 1);
    atomic_fetch_add(&l->tasks, 1);
}

static void pfor_body(void *arg, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++)
        cap_work(arg, 2000);
}

typedef struct dag_run {
    cap_log *log;
    ws_node nodes[64];
    ws_node *succ[64][2];
} dag_run;

static void dag_node_fn(ws_task *t) {
    dag_run *d = t->arg;
    cap_work(d->log, 3000);
    if (ws_node_of(t) == &d->nodes[5]) /* a node that splits its kernel */
        ws_parallel_for(NULL, 0, 64, 4, pfor_body, d->log);
}

/* Fork/join over [lo, hi): fork the lower half, do the upper one here,
 * join; one unit of work per leaf. */
typedef struct fork_frame {
    ws_task task;
    cap_log *log;
    int lo, hi;
} fork_frame;

static void fork_tree(cap_log *l, int lo, int hi);

static void fork_fn(ws_task *t) {
    fork_frame *f = (fork_frame *)t;
    fork_tree(f->log, f->lo, f->hi);
}

static void fork_tree(cap_log *l, int lo, int hi) {
    if (hi - lo == 1) {
        cap_work(l, 2000);
        return;
    }
    int mid = lo + (hi - lo) / 2;
    fork_frame f = {.log = l, .lo = lo, .hi = mid};
    ws_task_init(&f.task, fork_fn, NULL);
    if (ws_fork(&f.task) != 0) {
        atomic_fetch_add(&l->bad_seat, 1);
        return;
    }
    fork_tree(l, mid, hi);
    if (ws_join(&f.task) != 0)
        atomic_fetch_add(&l->bad_seat, 1);
}

/* Inside the capped run: a DAG (a binary fan-out then a fan-in), then a
 * parallel-for, then fork/join. */
static void capped_body(ws_task *t) {
    dag_run *d = t->arg;
    ws_pool *p = ws_current_pool();
    ws_dag dag;
    ws_dag_init(&dag, p);
    /* nodes 0..30: a tree; node i feeds 2i+1, 2i+2 */
    for (int i = 0; i < 31; i++)
        ws_node_init(&dag, &d->nodes[i], dag_node_fn, d, i == 0 ? 0 : 1);
    for (int i = 0; i < 15; i++) {
        d->succ[i][0] = &d->nodes[2 * i + 1];
        d->succ[i][1] = &d->nodes[2 * i + 2];
        d->nodes[i].succ = d->succ[i];
        d->nodes[i].nsucc = 2;
    }
    ws_node *root = &d->nodes[0];
    ws_dag_run(&dag, &root, 1);
    ws_parallel_for(NULL, 0, 200, 2, pfor_body, d->log);
    fork_tree(d->log, 0, 64);
}

static void run_capped_case(ws_pool *p, int cap, cap_log *l) {
    memset(l, 0, sizeof *l);
    l->cap = cap;
    dag_run d = {.log = l};
    assert_int_equal(ws_run_capped(p, cap, capped_body, &d), 0);
}

static void check_log(const cap_log *l, int expect_tasks) {
    if (l->bad_seat || l->shared_seat || l->max_inside > l->cap)
        print_error("cap %d: bad seats %d, shared seats %d, at most %d at once\n", l->cap, l->bad_seat, l->shared_seat,
                    l->max_inside);
    assert_int_equal(l->bad_seat, 0);
    assert_int_equal(l->shared_seat, 0);
    assert_true(l->max_inside <= l->cap);
    assert_int_equal(l->tasks, expect_tasks);
}

enum { TASKS_PER_RUN = 31 + 64 + 200 + 64 };

static void test_capped_run(void **state) {
    (void)state;
    ws_pool *p = test_pool(7);
    assert_int_equal(ws_run_capped(NULL, 1, count_fn, NULL), WS_EINVAL);
    assert_int_equal(ws_run_capped(p, 0, count_fn, NULL), WS_EINVAL);
    assert_int_equal(ws_run_capped(p, 2, NULL, NULL), WS_EINVAL);
    assert_int_equal(ws_seat_index(), -1);
    cap_log l;
    for (int cap = 1; cap <= 9; cap++) {
        for (int rep = 0; rep < (stress ? 50 : 3); rep++) {
            run_capped_case(p, cap, &l);
            check_log(&l, TASKS_PER_RUN);
        }
    }
    assert_int_equal(ws_seat_index(), -1);
    assert_int_equal(ws_pool_destroy(p), 0);
}

/* Several outside threads at once, each with its own cap, on one pool that
 * grows while they run. */
typedef struct user {
    ws_pool *p;
    int cap, rounds, failures;
    cap_log log;
    char why[160];
} user;

static void *user_main(void *arg) {
    user *u = arg;
    for (int r = 0; r < u->rounds; r++) {
        run_capped_case(u->p, u->cap, &u->log);
        const cap_log *l = &u->log;
        if (l->bad_seat || l->shared_seat || l->max_inside > l->cap || l->tasks != TASKS_PER_RUN) {
            if (!u->failures++)
                snprintf(u->why, sizeof u->why, "cap %d: bad %d shared %d max %d tasks %d", l->cap, l->bad_seat,
                         l->shared_seat, l->max_inside, l->tasks);
        }
        if (r == 1)
            ws_pool_grow(u->p, 6);
    }
    return NULL;
}

static void test_concurrent_caps(void **state) {
    (void)state;
    ws_pool *p = test_pool(2);
    enum { NU = 4 };
    user us[NU];
    pthread_t th[NU];
    for (int i = 0; i < NU; i++) {
        us[i] = (user){.p = p, .cap = 1 + i % 3, .rounds = stress ? WS_SCALED(200, 20) : 6};
        assert_int_equal(pthread_create(&th[i], NULL, user_main, &us[i]), 0);
    }
    for (int i = 0; i < NU; i++) {
        pthread_join(th[i], NULL);
        if (us[i].failures)
            print_error("user %d: %d failures: %s\n", i, us[i].failures, us[i].why);
        assert_int_equal(us[i].failures, 0);
    }
    assert_int_equal(ws_pool_num_threads(p), 6);
    assert_int_equal(ws_pool_destroy(p), 0);
}

/* From a thread already in the pool the cap is that of the seats it has. */
typedef struct nested {
    ws_pool *p;
    int inner_seat, inner_rc;
} nested;

static void inner_fn(ws_task *t) { ((nested *)t->arg)->inner_seat = ws_seat_index(); }

static void outer_fn(ws_task *t) {
    nested *n = t->arg;
    n->inner_rc = ws_run_capped(n->p, 5, inner_fn, n);
}

static void test_nested_capped(void **state) {
    (void)state;
    ws_pool *p = test_pool(2);
    nested n = {.p = p, .inner_seat = -2};
    assert_int_equal(ws_run_capped(p, 3, outer_fn, &n), 0);
    assert_int_equal(n.inner_rc, 0);
    assert_int_equal(n.inner_seat, 0); /* still the caller's seat */
    assert_int_equal(ws_pool_destroy(p), 0);
}

/* ---- CPUs --------------------------------------------------------------------- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_cgroup_quota(void **state) {
    (void)state;
    char root[] = "/tmp/ws-cgroup-XXXXXX";
    assert_non_null(mkdtemp(root));
    char path[512], mi[512], cg[512], text[2048];
    /* v2: a quota of 2.5 CPUs at the parent, none at the process's own */
    snprintf(path, sizeof path, "%s/v2", root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/v2/app", root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/v2/app/job", root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/v2/app/job/cgroup.procs", root);
    write_file(path, "1\n");
    snprintf(path, sizeof path, "%s/v2/app/job/cpu.max", root);
    write_file(path, "max 100000\n");
    snprintf(path, sizeof path, "%s/v2/app/cpu.max", root);
    write_file(path, "250000 100000\n");
    snprintf(mi, sizeof mi, "%s/mountinfo", root);
    snprintf(text, sizeof text,
             "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
             "30 22 0:26 / %s/v2 rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n",
             root);
    write_file(mi, text);
    snprintf(cg, sizeof cg, "%s/cgroup", root);
    write_file(cg, "0::/app/job\n");
    assert_int_equal(ws__cgroup_cpu_limit(cg, mi), 3);
    write_file(cg, "0::/\n"); /* the root has no cpu.max: no limit */
    assert_int_equal(ws__cgroup_cpu_limit(cg, mi), 0);

    /* v1: cpu,cpuacct mounted together, a quota of 1.5 CPUs */
    snprintf(path, sizeof path, "%s/v1", root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/v1/cpu.cfs_quota_us", root);
    write_file(path, "150000\n");
    snprintf(path, sizeof path, "%s/v1/cpu.cfs_period_us", root);
    write_file(path, "100000\n");
    snprintf(path, sizeof path, "%s/v1/tasks", root);
    write_file(path, "1\n");
    snprintf(text, sizeof text,
             "31 22 0:27 / %s/v1 rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
             "32 22 0:28 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n",
             root);
    write_file(mi, text);
    /* a path that is not under the mount (a cgroup namespace): the mount */
    write_file(cg, "5:cpuset:/x\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/\n");
    assert_int_equal(ws__cgroup_cpu_limit(cg, mi), 2);
    snprintf(path, sizeof path, "%s/v1/cpu.cfs_quota_us", root);
    write_file(path, "-1\n");
    assert_int_equal(ws__cgroup_cpu_limit(cg, mi), 0);
    /* no files at all */
    assert_int_equal(ws__cgroup_cpu_limit("/nonexistent/cgroup", mi), 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    assert_int_equal(system(cmd), 0);
}

static void test_cpu_count_and_env(void **state) {
    (void)state;
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    int cpus = ws_cpu_count();
    assert_true(cpus >= 1 && cpus <= CPU_COUNT(&set));
    const char *old = getenv("WS_NUM_THREADS");
    char *saved = old ? strdup(old) : NULL;
    setenv("WS_NUM_THREADS", "3", 1);
    assert_int_equal(ws_default_num_threads(), 3);
    setenv("AG_NUM_THREADS", "5", 1); /* not the scheduler's */
    assert_int_equal(ws_default_num_threads(), 3);
    unsetenv("AG_NUM_THREADS");
    setenv("WS_NUM_THREADS", "x", 1);
    assert_int_equal(ws_default_num_threads(), cpus);
    if (saved) {
        setenv("WS_NUM_THREADS", saved, 1);
        free(saved);
    } else {
        unsetenv("WS_NUM_THREADS");
    }
}

int main(int argc, char **argv) {
    stress = argc > 1 && strcmp(argv[1], "stress") == 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grow),
        cmocka_unit_test(test_capped_run),
        cmocka_unit_test(test_concurrent_caps),
        cmocka_unit_test(test_nested_capped),
        cmocka_unit_test(test_cgroup_quota),
        cmocka_unit_test(test_cpu_count_and_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
