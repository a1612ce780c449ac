/* Elementwise ops on tensors big enough to be cut into pieces and run on
 * the pool: every binary op forward and backward for each broadcast
 * pattern (same shapes, a row, a column, a scalar, both sides broadcast,
 * few long rows summed into a column, a mix the walk cannot merge), and the
 * unary ops, at 1, 2 and 3 threads. Results must be the same bits at every
 * thread count and close to plain loops in double precision. */
#include "../common/check.h"

#include <stdlib.h>

#include "ops/vmath.h"

static const int THREADS[] = {1, 2, 3};
#define NTHREADS (int)(sizeof THREADS / sizeof THREADS[0])

typedef struct {
    int nda, ndb;
    int64_t a[4], b[4];
} bcase;

static const bcase CASES[] = {
    {2, 2, {400, 350}, {400, 350}},       /* same shape */
    {2, 1, {400, 350}, {350}},            /* a row */
    {2, 2, {400, 350}, {400, 1}},         /* a column */
    {2, 0, {400, 350}, {0}},              /* a scalar */
    {0, 2, {0}, {400, 350}},              /* a scalar first */
    {2, 2, {400, 1}, {1, 350}},           /* both broadcast */
    {2, 2, {3, 50000}, {3, 1}},           /* few long rows summed into a column */
    {1, 1, {140001}, {1}},                /* one long row summed into one element */
    {4, 3, {2, 200, 1, 50}, {200, 7, 1}}, /* a mix */
};

static const char *const OPS[] = {"add", "sub", "mul", "div", "pow"};

static double binop(int op, double x, double y) {
    switch (op) {
    case 0:
        return x + y;
    case 1:
        return x - y;
    case 2:
        return x * y;
    case 3:
        return x / y;
    default:
        return pow(x, y);
    }
}

/* d out / d a and d out / d b at (x, y) */
static void grads(int op, double x, double y, double *ga, double *gb) {
    switch (op) {
    case 0:
        *ga = 1, *gb = 1;
        break;
    case 1:
        *ga = 1, *gb = -1;
        break;
    case 2:
        *ga = y, *gb = x;
        break;
    case 3:
        *ga = 1 / y, *gb = -x / (y * y);
        break;
    default:
        *ga = y * pow(x, y - 1), *gb = pow(x, y) * log(x);
        break;
    }
}

/* The element offset in t of the broadcast index idx of an ndim-shape. */
static int64_t offset_of(const ag_tensor *t, int ndim, const int64_t *idx) {
    int64_t off = 0;
    for (int d = 0; d < ag_ndim(t); d++) {
        int64_t size = ag_size(t, d), i = idx[ndim - ag_ndim(t) + d];
        off = off * size + (size == 1 ? 0 : i);
    }
    return off;
}

static ag_tensor *make(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape, double lo, double hi) {
    ag_tensor *t = ag_rand(ctx, dt, ndim, shape);
    assert_non_null(t);
    void *p = ag_mutable_data_ptr(t);
    for (int64_t i = 0; i < ag_numel(t); i++) {
        if (dt == AG_FLOAT64)
            ((double *)p)[i] = lo + (hi - lo) * ((double *)p)[i];
        else
            ((float *)p)[i] = (float)(lo + (hi - lo) * ((float *)p)[i]);
    }
    assert_int_equal(ag_requires_grad_(t, true), 0);
    return t;
}

static void check_close(const char *what, const ag_tensor *t, const double *want, const double *scale, double rtol) {
    for (int64_t i = 0; i < ag_numel(t); i++) {
        double got = ag_get(t, i);
        if (!(fabs(got - want[i]) <= rtol * scale[i]))
            fail_msg("%s: element %lld is %.9g, expected %.9g", what, (long long)i, got, want[i]);
    }
}

static void test_binary_ops_big(void **state) {
    (void)state;
    ag_manual_seed(99);
    for (int dti = 0; dti < 2; dti++) {
        ag_dtype dt = dti ? AG_FLOAT64 : AG_FLOAT32;
        const double rtol = dti ? 1e-12 : 1e-4;
        for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
            for (int op = 0; op < 5; op++) {
                ag_ctx *ctx = ag_ctx_new();
                const bcase *bc = &CASES[c];
                /* pow's base positive, div's divisor away from 0 */
                ag_tensor *a = make(ctx, dt, bc->nda, bc->a, op == 4 ? 0.5 : -2, 2);
                ag_tensor *b = make(ctx, dt, bc->ndb, bc->b, op == 3 ? 0.5 : -2, 2);
                ag_tensor *in[2] = {a, b};
                ag_tensor *out = run_op(ctx, OPS[op], in, 0, 0);
                assert_non_null(out);
                const int nd = ag_ndim(out);
                int64_t shape[AG_MAX_DIMS];
                for (int d = 0; d < nd; d++)
                    shape[d] = ag_size(out, d);
                ag_tensor *w = ag_randn(ctx, dt, nd, shape);
                const int64_t n = ag_numel(out), na = ag_numel(a), nb = ag_numel(b);
                double *want = calloc((size_t)n, sizeof *want), *da = calloc((size_t)na, sizeof *da);
                double *db = calloc((size_t)nb, sizeof *db), *ones = malloc((size_t)n * sizeof *ones);
                double *sa = calloc((size_t)na, sizeof *sa), *sb = calloc((size_t)nb, sizeof *sb);
                assert_true(want && da && db && ones && sa && sb);
                int64_t idx[AG_MAX_DIMS] = {0};
                for (int64_t i = 0; i < n; i++) {
                    int64_t r = i;
                    for (int d = nd - 1; d >= 0; d--) {
                        idx[d] = r % shape[d];
                        r /= shape[d];
                    }
                    int64_t ia = offset_of(a, nd, idx), ib = offset_of(b, nd, idx);
                    double x = ag_get(a, ia), y = ag_get(b, ib), g = ag_get(w, i), ga, gb;
                    want[i] = binop(op, x, y);
                    ones[i] = fabs(want[i]) + 1e-30;
                    grads(op, x, y, &ga, &gb);
                    da[ia] += g * ga;
                    db[ib] += g * gb;
                    sa[ia] += fabs(g * ga) + 1e-30;
                    sb[ib] += fabs(g * gb) + 1e-30;
                }
                char what[96];
                snprintf(what, sizeof what, "%s case %zu %s", OPS[op], c, dti ? "f64" : "f32");
                check_close(what, out, want, ones, rtol);
                void *first[3] = {NULL, NULL, NULL};
                for (int t = 0; t < NTHREADS; t++) {
                    ag_set_num_threads(THREADS[t]);
                    ag_tensor *o = run_op(ctx, OPS[op], in, 0, 0);
                    assert_int_equal(ag_zero_grad(a), 0);
                    assert_int_equal(ag_zero_grad(b), 0);
                    ag_backward_opts opts = {.num_threads = THREADS[t]};
                    assert_int_equal(ag_backward(o, w, &opts), 0);
                    const ag_tensor *got[3] = {o, ag_grad(a), ag_grad(b)};
                    if (t == 0) {
                        check_close(what, ag_grad(a), da, sa, rtol);
                        check_close(what, ag_grad(b), db, sb, rtol);
                    }
                    for (int k = 0; k < 3; k++) {
                        size_t bytes = (size_t)ag_numel(got[k]) * (dti ? 8 : 4);
                        if (t == 0) {
                            first[k] = malloc(bytes);
                            memcpy(first[k], ag_data_ptr(got[k]), bytes);
                        } else if (memcmp(first[k], ag_data_ptr(got[k]), bytes) != 0) {
                            fail_msg("%s: result %d differs at %d threads", what, k, THREADS[t]);
                        }
                    }
                }
                for (int k = 0; k < 3; k++)
                    free(first[k]);
                ag_set_num_threads(0);
                free(want);
                free(da);
                free(db);
                free(ones);
                free(sa);
                free(sb);
                ag_ctx_free(ctx);
            }
        }
    }
}

/* Unary ops on 140001 elements: the forward is the vector math level's
 * function on every element, the same bits at every thread count, and the
 * backward is close to the formula. */
static void test_unary_ops_big(void **state) {
    (void)state;
    enum { N = 140001 };
    static const char *const NAMES[] = {"exp",  "log", "log1p", "tanh",       "sigmoid",    "sin",       "cos",
                                        "sqrt", "neg", "relu",  "add_scalar", "mul_scalar", "pow_scalar"};
    static const int VM[] = {AG__VM_EXP,     AG__VM_LOG, AG__VM_LOG1P, AG__VM_TANH,
                             AG__VM_SIGMOID, AG__VM_SIN, AG__VM_COS,   AG__VM_SQRT};
    const ag__vmath *vm = ag__vmath_get();
    ag_manual_seed(7);
    for (int dti = 0; dti < 2; dti++) {
        ag_dtype dt = dti ? AG_FLOAT64 : AG_FLOAT32;
        const size_t es = dti ? 8 : 4;
        for (size_t k = 0; k < sizeof NAMES / sizeof NAMES[0]; k++) {
            ag_ctx *ctx = ag_ctx_new();
            bool positive = !strcmp(NAMES[k], "log") || !strcmp(NAMES[k], "sqrt") || !strcmp(NAMES[k], "log1p") ||
                            !strcmp(NAMES[k], "pow_scalar");
            ag_tensor *x = make(ctx, dt, 1, (int64_t[]){N}, positive ? 0.1 : -5, 5), *xin[2] = {x, NULL};
            ag_tensor *w = ag_randn(ctx, dt, 1, (int64_t[]){N});
            void *ref = malloc(N * es), *first_y = malloc(N * es), *first_g = malloc(N * es);
            assert_true(ref && first_y && first_g);
            if (k < sizeof VM / sizeof VM[0]) {
                if (dti)
                    vm->f64[VM[k]](ref, ag_data_ptr(x), N);
                else
                    vm->f32[VM[k]](ref, ag_data_ptr(x), N);
            }
            for (int t = 0; t < NTHREADS; t++) {
                ag_set_num_threads(THREADS[t]);
                ag_tensor *y = run_op(ctx, NAMES[k], xin, 2.5, 0);
                assert_non_null(y);
                assert_int_equal(ag_zero_grad(x), 0);
                ag_backward_opts opts = {.num_threads = THREADS[t]};
                assert_int_equal(ag_backward(y, w, &opts), 0);
                const void *g = ag_data_ptr(ag_grad(x));
                if (t == 0) {
                    if (k < sizeof VM / sizeof VM[0] && memcmp(ref, ag_data_ptr(y), N * es) != 0)
                        fail_msg("%s: the forward is not the vector math function", NAMES[k]);
                    memcpy(first_y, ag_data_ptr(y), N * es);
                    memcpy(first_g, g, N * es);
                    /* backward against a central difference of the forward in double */
                    for (int64_t i = 0; i < N; i += 997) {
                        double xi = ag_get(x, i), h = 1e-4 * (fabs(xi) + 1), f[2];
                        for (int s = 0; s < 2; s++) {
                            double v = s ? xi - h : xi + h;
                            ag_tensor *p[2] = {ag_tensor_from(ctx, AG_FLOAT64, 1, (int64_t[]){1}, &v), NULL};
                            f[s] = ag_item(run_op(ctx, NAMES[k], p, 2.5, 0));
                        }
                        double want = ag_get(w, i) * (f[0] - f[1]) / (2 * h), got = ag_get(ag_grad(x), i);
                        if (!(fabs(got - want) <= 1e-3 * (fabs(want) + fabs(ag_get(w, i)))) &&
                            !(strcmp(NAMES[k], "relu") == 0 && fabs(xi) < h))
                            fail_msg("%s: gradient at %.9g is %.9g, expected %.9g", NAMES[k], xi, got, want);
                    }
                } else if (memcmp(first_y, ag_data_ptr(y), N * es) || memcmp(first_g, g, N * es)) {
                    fail_msg("%s: result differs at %d threads", NAMES[k], THREADS[t]);
                }
            }
            ag_set_num_threads(0);
            free(ref);
            free(first_y);
            free(first_g);
            ag_ctx_free(ctx);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_ops_big),
        cmocka_unit_test(test_unary_ops_big),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
