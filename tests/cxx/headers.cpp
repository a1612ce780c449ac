// Both public headers from C++ (C++11 and later): a backward pass on two
// threads through agrad.h, and ws.h's pool (grown), capped run, fork/join,
// group, parallel-for and DAG used directly. Built by cxx_test.sh with every C++ compiler it
// finds, against the build tree (meson test) or an installed library.
#include <agrad.h>
#include <ws.h>

#include <cstdio>
#include <cstring>

namespace {

static_assert(AG_EUNSUPPORTED == -(AG_ERRNO_COUNT - 1), "the error table's codes are -1 .. -(AG_ERRNO_COUNT - 1)");

int failures = 0;

void check(bool ok, const char *what) {
    if (!ok) {
        std::fprintf(stderr, "headers.cpp: %s failed\n", what);
        failures++;
    }
}

struct fib_frame {
    ws_task task; // first: the task pointer is the frame pointer
    int n;
    long result;
};

long fib(int n);

void fib_task(ws_task *t) {
    fib_frame *f = reinterpret_cast<fib_frame *>(t);
    f->result = fib(f->n);
}

long fib(int n) {
    if (n < 2)
        return n;
    fib_frame f;
    ws_task_init(&f.task, fib_task, NULL);
    f.n = n - 1;
    if (ws_fork(&f.task) != 0)
        return -1;
    long y = fib(n - 2);
    if (ws_join(&f.task) != 0)
        return -1;
    return f.result + y;
}

void fib_root(ws_task *t) { *static_cast<long *>(t->arg) = fib(20); }

void add_one(ws_task *t) { __atomic_fetch_add(static_cast<int *>(t->arg), 1, __ATOMIC_RELAXED); }

void fill(void *arg, int64_t lo, int64_t hi) {
    int *v = static_cast<int *>(arg);
    for (int64_t i = lo; i < hi; i++)
        v[i] = static_cast<int>(i);
}

void group_root(ws_task *t) {
    int *count = static_cast<int *>(t->arg);
    ws_group g;
    ws_task tasks[8];
    if (ws_group_init(&g, NULL) != 0)
        return;
    for (int i = 0; i < 8; i++) {
        ws_task_init(&tasks[i], add_one, count);
        ws_spawn(&g, &tasks[i]);
    }
    ws_group_wait(&g);
}

void seat_root(ws_task *t) { *static_cast<int *>(t->arg) = ws_seat_index(); }

void test_ws() {
    ws_pool_opts o = WS_POOL_OPTS_INIT;
    o.num_threads = 1;
    ws_pool *pool = NULL;
    check(ws_pool_create(&pool, &o) == WS_OK, "ws_pool_create");
    if (!pool)
        return;
    long f = 0;
    check(ws_run(pool, fib_root, &f) == 0 && f == 6765, "fork/join fib(20)");

    int count = 0;
    check(ws_run(pool, group_root, &count) == 0 && count == 8, "group of 8");

    int v[1000];
    std::memset(v, 0xff, sizeof v);
    check(ws_parallel_for(pool, 0, 1000, 10, fill, v) == 0 && v[0] == 0 && v[999] == 999, "parallel_for");

    // a -> {b, c}: three nodes, run twice.
    int ran = 0;
    ws_dag d;
    ws_node a, b, c;
    check(ws_dag_init(&d, pool) == 0, "ws_dag_init");
    ws_node_init(&d, &a, add_one, &ran, 0);
    ws_node_init(&d, &b, add_one, &ran, 1);
    ws_node_init(&d, &c, add_one, &ran, 1);
    ws_node *succ[] = {&b, &c};
    a.succ = succ;
    a.nsucc = 2;
    ws_node *roots[] = {&a};
    check(ws_dag_run(&d, roots, 1) == 0 && ws_dag_run(&d, roots, 1) == 0 && ran == 6, "DAG run twice");

    check(ws_cpu_count() >= 1, "ws_cpu_count");
    check(ws_pool_grow(pool, 2) == 0 && ws_pool_num_threads(pool) == 2, "ws_pool_grow");
    int seat = -2;
    check(ws_run_capped(pool, 2, seat_root, &seat) == 0 && seat == 0 && ws_seat_index() == -1, "ws_run_capped");

    check(std::strcmp(ws_strerror(WS_EINVAL), "invalid argument") == 0, "ws_strerror");
    check(ws_fork(NULL) == WS_EINVAL, "ws_fork(NULL)");
    check(ws_pool_destroy(pool) == 0, "ws_pool_destroy");
}

void test_agrad() {
    ag_ctx *ctx = ag_ctx_new();
    check(ctx != NULL, "ag_ctx_new");
    if (!ctx)
        return;
    const float data[4] = {1, 2, 3, 4};
    const int64_t shape[2] = {2, 2};
    ag_tensor *x = ag_tensor_from(ctx, AG_FLOAT32, 2, shape, data);
    check(x != NULL && ag_requires_grad_(x, true) == 0, "leaf");
    ag_tensor *y = ag_sum(ctx, ag_mul(ctx, x, x)); // sum(x^2): grad 2x
    ag_backward_opts opts = ag_backward_opts();
    opts.num_threads = 2;
    check(y != NULL && ag_backward(y, NULL, &opts) == 0, "ag_backward");
    const ag_tensor *g = ag_grad(x);
    check(g != NULL && ag_get(g, 3) == 8.0, "gradient");
    check(std::strcmp(ag_strerror(AG_EINVAL), "invalid argument") == 0, "ag_strerror");
    check(std::strcmp(ag_strerror(AG_EUNSUPPORTED), "not supported") == 0, "ag_strerror, last code");
    check(std::strcmp(ag_strerror(-AG_ERRNO_COUNT), "unknown error") == 0, "ag_strerror, past the table");
    check(ag_tensor_from(ctx, AG_FLOAT32, 1, NULL, data) == NULL && ag_last_status() == AG_EINVAL,
          "an error, from C++");
    ag_ctx_free(ctx);
}

} // namespace

int main() {
    test_ws();
    test_agrad();
    if (failures == 0)
        std::printf("headers.cpp (C++ %ld): ok\n", static_cast<long>(__cplusplus));
    return failures == 0 ? 0 : 1;
}
