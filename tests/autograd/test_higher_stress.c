/* create_graph backwards on the pool: Hessian-vector products of a small
 * network with several branches, a custom function and a node hook, run
 * many times on 1 and 4 threads and from two application threads at
 * once. Deterministic mode: every result bitwise the same as on one
 * thread; otherwise the same within rounding. Nothing depends on timing. */
#include "autograd_check.h"

#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>

#define ROUNDS 20

static ag_tensor *cube_forward(ag_function_ctx *fc, ag_ctx *c, ag_tensor *const *in, int n, void *u) {
    (void)n, (void)u;
    if (ag_function_save(fc, in, 1))
        return NULL;
    return ag_mul(c, ag_mul(c, in[0], in[0]), in[0]);
}

static int cube_backward(ag_function_ctx *fc, ag_ctx *c, const ag_tensor *g, ag_tensor **gi, void *u) {
    (void)u;
    ag_tensor *x = (ag_tensor *)ag_function_saved(fc, 0);
    gi[0] = x ? ag_mul(c, (ag_tensor *)g, ag_mul_scalar(c, ag_mul(c, x, x), 3)) : NULL;
    return gi[0] ? 0 : ag_last_status();
}

static const ag_function cube = {"CubeBackward", cube_forward, cube_backward};

static atomic_int hook_calls;

static int count_hook(const ag_node *node, ag_tensor **gi, int ni, ag_tensor *const *go, int no, void *u) {
    (void)node, (void)gi, (void)ni, (void)go, (void)no, (void)u;
    atomic_fetch_add(&hook_calls, 1);
    return 0;
}

typedef struct {
    double w1[6 * 16], w2[16 * 2], v1[6 * 16], v2[16 * 2], x[8 * 6];
} net_data;

static void fill(double *d, int n, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        d[i] = (double)(seed >> 11) / 9007199254740992.0 - 0.5;
    }
}

/* Hessian-vector product of the loss with respect to (W1, W2), into hv. */
static void hvp(const net_data *nd, int threads, double *hv) {
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *W1 = vec64(ctx, 2, (int64_t[]){6, 16}, nd->w1, true);
    ag_tensor *W2 = vec64(ctx, 2, (int64_t[]){16, 2}, nd->w2, true);
    ag_tensor *x = vec64(ctx, 2, (int64_t[]){8, 6}, nd->x, false);
    ag_tensor *h = ag_matmul(ctx, x, W1);
    ag_tensor *a = ag_tanh(ctx, h), *b = ag_sigmoid(ctx, h); /* two branches of one node */
    ag_tensor *c = ag_function_apply(ctx, &cube, &a, 1, NULL);
    assert_true(ag_node_register_hook(ag_grad_fn(b), count_hook, NULL) > 0);
    ag_tensor *m = ag_add(ctx, ag_mul(ctx, c, b), ag_sin(ctx, h));
    ag_tensor *loss = ag_mean(ctx, ag_pow_scalar(ctx, ag_matmul(ctx, m, W2), 2));
    ag_tensor *p[2] = {W1, W2}, *g[2] = {NULL, NULL}, *hvs[2] = {NULL, NULL};
    assert_ok(
        ag_autograd_grad(ctx, &loss, NULL, 1, p, 2, g, &(ag_grad_opts){.create_graph = true, .num_threads = threads}));
    ag_tensor *v1 = vec64(ctx, 2, (int64_t[]){6, 16}, nd->v1, false);
    ag_tensor *v2 = vec64(ctx, 2, (int64_t[]){16, 2}, nd->v2, false);
    ag_tensor *gv = ag_add(ctx, ag_sum(ctx, ag_mul(ctx, g[0], v1)), ag_sum(ctx, ag_mul(ctx, g[1], v2)));
    assert_ok(ag_autograd_grad(ctx, &gv, NULL, 1, p, 2, hvs, &(ag_grad_opts){.num_threads = threads}));
    memcpy(hv, ag_data_ptr(hvs[0]), sizeof nd->w1);
    memcpy(hv + 6 * 16, ag_data_ptr(hvs[1]), sizeof nd->w2);
    ag_ctx_free(ctx);
}

static net_data data;
enum { NHV = 6 * 16 + 16 * 2 };

static void setup_data(void) {
    fill(data.w1, 6 * 16, 1);
    fill(data.w2, 16 * 2, 2);
    fill(data.v1, 6 * 16, 3);
    fill(data.v2, 16 * 2, 4);
    fill(data.x, 8 * 6, 5);
}

static void test_deterministic_bitwise(void **state) {
    (void)state;
    setup_data();
    ag_set_deterministic(true);
    double ref[NHV], got[NHV];
    hvp(&data, 1, ref);
    for (int r = 0; r < ROUNDS; r++) {
        hvp(&data, r % 2 ? 4 : 2, got);
        assert_memory_equal(ref, got, sizeof ref);
    }
    ag_set_deterministic(false);
}

static void test_any_schedule_close(void **state) {
    (void)state;
    setup_data();
    double ref[NHV], got[NHV];
    hvp(&data, 1, ref);
    for (int r = 0; r < ROUNDS; r++) {
        hvp(&data, 4, got);
        for (int i = 0; i < NHV; i++)
            if (!(fabs(got[i] - ref[i]) <= 1e-12 + 1e-10 * fabs(ref[i])))
                fail_msg("round %d element %d: %.17g, on one thread %.17g", r, i, got[i], ref[i]);
    }
}

static double ref_all[NHV];

static void *app_thread(void *arg) {
    (void)arg;
    double got[NHV];
    for (int r = 0; r < ROUNDS / 2; r++) {
        hvp(&data, 2, got);
        if (memcmp(got, ref_all, sizeof got) != 0)
            return (void *)1;
    }
    return NULL;
}

/* Two application threads, each with its own contexts, on the one pool. */
static void test_two_app_threads(void **state) {
    (void)state;
    setup_data();
    ag_set_deterministic(true);
    hvp(&data, 1, ref_all);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, app_thread, NULL), 0);
    for (int i = 0; i < 2; i++) {
        void *bad = NULL;
        assert_int_equal(pthread_join(th[i], &bad), 0);
        assert_null(bad);
    }
    ag_set_deterministic(false);
    assert_true(atomic_load(&hook_calls) > 0);
}

int main(void) {
    setenv("AG_PAR_MIN_WORK", "0", 1); /* every graph on the pool, however small */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_bitwise),
        cmocka_unit_test(test_any_schedule_close),
        cmocka_unit_test(test_two_app_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
