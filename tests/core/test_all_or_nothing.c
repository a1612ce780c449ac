/* All or nothing under stress: random graphs big enough to run in
 * parallel fail at a random point (a saved tensor changed in place, an
 * interior hook or a leaf hook that returns the wrong shape), at 1, 2, 4
 * and 8 threads, on both executors, with and without determinism; every
 * leaf's .grad and every retained grad must come out bitwise as it was,
 * and the same graph without the failure must then run and change them. */
#include "../common/check.h"

#include <stdatomic.h>
#include <stdlib.h>

extern _Atomic int64_t ag__par_min_work;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define ROUNDS 2
#else
#define ROUNDS 8
#endif

enum { NLEAVES = 8, NOPS = 220, MAXT = NLEAVES + 2 * NOPS, LEN = 96 };

typedef enum { FAIL_SAVED, FAIL_HOOK, FAIL_LEAF_HOOK, FAIL_NONE } fail_kind;

typedef struct {
    ag_tensor *t[MAXT];
    int n;
    ag_tensor *retained[8];
    int nretained;
} graph;

static ag_tensor *wrong_shape(ag_tensor *grad, void *ud) {
    (void)grad;
    return ag_zeros(ud, AG_FLOAT64, 1, (int64_t[]){LEN + 1});
}

static unsigned next(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* Random ops over earlier tensors, each bounded by tanh; every tensor
 * feeds the root, so every node runs. Returns the root. */
static ag_tensor *build(ag_ctx *g, ag_tensor *const *leaves, unsigned seed, graph *gr) {
    gr->n = 0;
    gr->nretained = 0;
    for (int i = 0; i < NLEAVES; i++)
        gr->t[gr->n++] = leaves[i];
    for (int k = 0; k < NOPS; k++) {
        ag_tensor *a = gr->t[next(&seed) % (unsigned)gr->n];
        ag_tensor *b = gr->t[gr->n - 1 - (int)(next(&seed) % (unsigned)(gr->n < 10 ? gr->n : 10))];
        ag_tensor *r;
        switch (next(&seed) % 4) {
        case 0:
            r = ag_add(g, a, b);
            break;
        case 1:
            r = ag_mul(g, a, b);
            break;
        case 2:
            r = ag_sub(g, a, ag_mul_scalar(g, b, 0.5));
            break;
        default:
            r = ag_sigmoid(g, ag_add(g, a, b));
            break;
        }
        gr->t[gr->n++] = ag_tanh(g, r);
        if (k % 40 == 17 && gr->nretained < 8) {
            assert_ok(ag_retain_grad(gr->t[gr->n - 1]));
            gr->retained[gr->nretained++] = gr->t[gr->n - 1];
        }
    }
    ag_tensor *s = NULL;
    for (int i = 0; i < gr->n; i++) {
        ag_tensor *term = ag_sum(g, gr->t[i]);
        s = s ? ag_add(g, s, term) : term;
    }
    return s;
}

typedef struct {
    const ag_tensor *ptr;
    double v[LEN];
} snap;

static void take(snap *s, ag_tensor *t) {
    s->ptr = ag_grad(t);
    if (s->ptr)
        memcpy(s->v, ag_data_ptr(s->ptr), sizeof s->v);
}

static bool same(const snap *s, ag_tensor *t) {
    return ag_grad(t) == s->ptr && (!s->ptr || memcmp(s->v, ag_data_ptr(s->ptr), sizeof s->v) == 0);
}

static void run_case(int nthreads, int ex, bool det, fail_kind kind, unsigned seed) {
    ag_ctx *params = ag_ctx_new(), *g = ag_ctx_new();
    ag_manual_seed(seed);
    ag_tensor *leaves[NLEAVES];
    for (int i = 0; i < NLEAVES; i++) {
        leaves[i] = ag_randn(params, AG_FLOAT64, 1, (int64_t[]){LEN});
        assert_ok(ag_requires_grad_(leaves[i], true));
        if ((seed >> i) & 1) /* some leaves have a .grad already */
            assert_ok(ag_set_grad(leaves[i], ag_randn(params, AG_FLOAT64, 1, (int64_t[]){LEN})));
    }
    graph gr;
    ag_tensor *root = build(g, leaves, seed, &gr);
    assert_nonnull_ag(root);
    unsigned pick = seed * 2654435761u;
    int want = AG_ESHAPE;
    switch (kind) {
    case FAIL_SAVED: /* a tanh output: its node finds it changed */
        ag_mutable_data_ptr(gr.t[NLEAVES + (int)(pick % NOPS)]);
        want = AG_ESTATE;
        break;
    case FAIL_HOOK:
        assert_true(ag_register_hook(gr.t[NLEAVES + (int)(pick % NOPS)], wrong_shape, g) > 0);
        break;
    case FAIL_LEAF_HOOK:
        assert_true(ag_register_hook(leaves[pick % NLEAVES], wrong_shape, g) > 0);
        break;
    case FAIL_NONE:
        break;
    }
    snap s[NLEAVES + 8];
    for (int i = 0; i < NLEAVES; i++)
        take(&s[i], leaves[i]);
    for (int i = 0; i < gr.nretained; i++)
        take(&s[NLEAVES + i], gr.retained[i]);
    ag_set_executor(ex ? AG_EXECUTOR_OPENMP : AG_EXECUTOR_WS);
    ag_set_deterministic(det);
    int rc = ag_backward(root, NULL, &(ag_backward_opts){.num_threads = nthreads});
    bool ok = true;
    for (int i = 0; i < NLEAVES; i++)
        ok &= kind == FAIL_NONE ? !same(&s[i], leaves[i]) : same(&s[i], leaves[i]);
    for (int i = 0; i < gr.nretained; i++)
        ok &= kind == FAIL_NONE ? !same(&s[NLEAVES + i], gr.retained[i]) : same(&s[NLEAVES + i], gr.retained[i]);
    if (rc != (kind == FAIL_NONE ? 0 : want) || !ok)
        print_error("seed %u, %d threads, executor %d, det %d, failure %d: rc %d (%s), grads as expected %d\n", seed,
                    nthreads, ex, det, kind, rc, ag_last_error(), ok);
    assert_int_equal(rc, kind == FAIL_NONE ? 0 : want);
    assert_true(ok);
    ag_ctx_free(g);
    ag_ctx_free(params);
}

static void test_failures_change_nothing(void **state) {
    (void)state;
    static const int counts[] = {1, 2, 4, 8};
    atomic_store(&ag__par_min_work, 0);
    unsigned seed = 1;
    for (int round = 0; round < ROUNDS; round++)
        for (int ex = 0; ex < 2; ex++) {
#ifndef AG_TEST_OPENMP
            if (ex == 1)
                continue;
#endif
            for (int det = 0; det < 2; det++)
                for (size_t c = 0; c < sizeof counts / sizeof *counts; c++)
                    for (int kind = 0; kind <= FAIL_NONE; kind++)
                        run_case(counts[c], ex, det, (fail_kind)kind, seed++);
        }
    ag_set_executor(AG_EXECUTOR_WS);
    ag_set_deterministic(false);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failures_change_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
