/* Optimizers against torch.optim: trajectories of SGD (momentum, dampening,
 * Nesterov, weight decay) and Adam (weight decay, AMSGrad) recorded by
 * gen_optim.py, in float32 and float64, bit for bit with both kernel sets;
 * large parameters in chunks on several threads against a plain loop; and
 * the argument checks. */
#include "../common/check.h"

#include <stdlib.h>

/* Private (optim.c): the build's own kernels even where AVX2 ones exist. */
void ag__optim_use_base_kernels(bool on);

#define N 37

/* The kernels do PyTorch's roundings (optim_kernels.inc), so every value
 * must come out bit for bit as torch.optim's on the CPU that recorded them
 * (x86-64 with AVX2, where PyTorch's add_ with alpha and addcmul_ use FMA). */
static void against_torch(bool base_kernels) {
    ag__optim_use_base_kernels(base_kernels);
    FILE *f = golden_open("tests/core/optim_golden.txt");
    int cases = 0;
    char kind[8], dt[8];
    double lr, mom, damp, wd, b1, b2, eps;
    int nesterov, ams;
    while (fscanf(f, " case %7s %7s %lf %lf %lf %lf %d %lf %lf %lf %d", kind, dt, &lr, &mom, &damp, &wd, &nesterov, &b1,
                  &b2, &eps, &ams) == 11) {
        ag_ctx *ctx = ag_ctx_new();
        ag_dtype dtype = strcmp(dt, "f32") == 0 ? AG_FLOAT32 : AG_FLOAT64;
        double v[N];
        assert_int_equal(golden_read_values(f, "init", v, N), 0);
        ag_tensor *p = mk(ctx, dtype, 1, (int64_t[]){N}, v);
        assert_ok(ag_requires_grad_(p, true));
        ag_optim *opt;
        if (strcmp(kind, "sgd") == 0)
            opt = ag_sgd_new(
                ctx, &p, 1,
                &(ag_sgd_opts){.lr = lr, .momentum = mom, .dampening = damp, .weight_decay = wd, .nesterov = nesterov});
        else
            opt = ag_adam_new(
                ctx, &p, 1,
                &(ag_adam_opts){.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd, .amsgrad = ams});
        assert_nonnull_ag(opt);
        for (int s = 0; s < 5; s++) {
            double g[N], want[N];
            assert_int_equal(golden_read_values(f, "grad", g, N), 0);
            assert_int_equal(golden_read_values(f, "after", want, N), 0);
            assert_ok(ag_set_grad(p, mk(ctx, dtype, 1, (int64_t[]){N}, g)));
            uint32_t version = ag_version(p);
            assert_ok(ag_optim_step(opt));
            assert_int_equal(ag_version(p), version + 1);
            for (int i = 0; i < N; i++) {
                double got = ag_get(p, i);
                if (got != want[i])
                    print_error("%s %s lr=%g step %d elem %d: got %a want %a\n", kind, dt, lr, s, i, got, want[i]);
                assert_true(got == want[i]);
            }
        }
        assert_ok(ag_optim_zero_grad(opt));
        assert_true(ag_get(ag_grad(p), 0) == 0.0);
        ag_ctx_free(ctx);
        cases++;
    }
    fclose(f);
    assert_int_equal(cases, 14);
    ag__optim_use_base_kernels(false);
}

static void test_against_torch(void **state) {
    (void)state;
    against_torch(false);
}

static void test_against_torch_base_kernels(void **state) {
    (void)state;
    against_torch(true);
}

/* ---- Large parameters -------------------------------------------------------------
 * Plain loops over doubles with torch.optim's formulas (fma where PyTorch
 * fuses), converting each scalar and each result to the dtype: the
 * reference for parameters cut in chunks and spread over threads. */

typedef struct {
    bool adam;
    double lr, momentum, dampening, weight_decay, beta1, beta2, eps;
    bool nesterov, amsgrad;
} ref_opts;

static double rnd(double x, bool f32) { return f32 ? (double)(float)x : x; }
static double rfma(double a, double b, double c, bool f32) {
    return f32 ? (double)fmaf((float)a, (float)b, (float)c) : fma(a, b, c);
}

/* One step of one parameter; st holds 3 n values of state (buf / m, v, vmax). */
static void ref_step(const ref_opts *o, bool f32, int64_t step, double *p, const double *g, double *st, int64_t n) {
    double *b1 = st, *b2 = st + n, *b3 = st + 2 * n;
    for (int64_t i = 0; i < n; i++) {
        double d = g[i];
        if (o->weight_decay != 0)
            d = rfma(p[i], rnd(o->weight_decay, f32), d, f32);
        if (!o->adam) {
            if (o->momentum != 0) {
                b1[i] =
                    step == 1 ? d : rfma(d, rnd(1 - o->dampening, f32), rnd(b1[i] * rnd(o->momentum, f32), f32), f32);
                d = o->nesterov ? rfma(b1[i], rnd(o->momentum, f32), d, f32) : b1[i];
            }
            p[i] = rfma(d, rnd(-o->lr, f32), p[i], f32);
            continue;
        }
        b1[i] = rfma(d, rnd(1 - o->beta1, f32), rnd(b1[i] * rnd(o->beta1, f32), f32), f32);
        b2[i] = rfma(rnd(rnd(1 - o->beta2, f32) * d, f32), d, rnd(b2[i] * rnd(o->beta2, f32), f32), f32);
        double v = b2[i];
        if (o->amsgrad)
            v = b3[i] = b3[i] >= v ? b3[i] : v;
        double bc1 = 1 - pow(o->beta1, (double)step), bc2 = 1 - pow(o->beta2, (double)step);
        double denom = rnd(rnd(rnd(sqrt(v), f32) / rnd(sqrt(bc2), f32), f32) + rnd(o->eps, f32), f32);
        p[i] = rnd(p[i] + rnd(rnd(rnd(-(o->lr / bc1), f32) * b1[i], f32) / denom, f32), f32);
    }
}

static ag_optim *make_opt(ag_ctx *ctx, ag_tensor **ps, int n, const ref_opts *o) {
    if (o->adam)
        return ag_adam_new(ctx, ps, n,
                           &(ag_adam_opts){.lr = o->lr,
                                           .beta1 = o->beta1,
                                           .beta2 = o->beta2,
                                           .eps = o->eps,
                                           .weight_decay = o->weight_decay,
                                           .amsgrad = o->amsgrad});
    return ag_sgd_new(ctx, ps, n,
                      &(ag_sgd_opts){.lr = o->lr,
                                     .momentum = o->momentum,
                                     .dampening = o->dampening,
                                     .weight_decay = o->weight_decay,
                                     .nesterov = o->nesterov});
}

/* Parameters of several sizes (more than one chunk, a chunk and a bit, a
 * few elements, none) and both dtypes, four steps at 1, 2 and 3 threads:
 * every run bit for bit as the plain loops. */
static void test_large_params_threads(void **state) {
    (void)state;
    enum { NP = 5, STEPS = 4 };
    const int64_t sizes[NP] = {100003, 16385, 7, 0, 40000};
    const ag_dtype dts[NP] = {AG_FLOAT32, AG_FLOAT64, AG_FLOAT32, AG_FLOAT32, AG_FLOAT64};
    const ref_opts cases[] = {
        {.adam = true, .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8},
        {.adam = true, .lr = 3e-3, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.05, .amsgrad = true},
        {.lr = 0.05, .momentum = 0.9, .dampening = 0.3, .weight_decay = 0.01},
        {.lr = 0.02, .momentum = 0.8, .nesterov = true, .weight_decay = 0.1},
        {.lr = 0.1},
    };
    int64_t total = 0;
    for (int i = 0; i < NP; i++)
        total += sizes[i];
    double *p0 = malloc((size_t)total * sizeof *p0), *g = malloc((size_t)STEPS * (size_t)total * sizeof *g);
    double *want = malloc((size_t)total * sizeof *want), *st = calloc(3 * (size_t)total, sizeof *st);
    assert_non_null(p0);
    assert_non_null(g);
    assert_non_null(want);
    assert_non_null(st);
    uint64_t x = 88172645463325252ull;
    for (int64_t i = 0; i < total * (STEPS + 1); i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double u = (double)(x >> 11) * 0x1p-53 * 2 - 1;
        if (i < total)
            p0[i] = u;
        else
            g[i - total] = u * 0.1;
    }
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        /* the reference, in the dtype of each parameter */
        int64_t off = 0;
        for (int i = 0; i < NP; i++) {
            bool f32 = dts[i] == AG_FLOAT32;
            for (int64_t k = 0; k < sizes[i]; k++)
                want[off + k] = rnd(p0[off + k], f32);
            memset(st, 0, 3 * (size_t)total * sizeof *st);
            for (int s = 0; s < STEPS; s++) {
                double gs[sizes[i] > 0 ? sizes[i] : 1];
                for (int64_t k = 0; k < sizes[i]; k++)
                    gs[k] = rnd(g[(int64_t)s * total + off + k], f32);
                ref_step(&cases[c], f32, s + 1, want + off, gs, st, sizes[i]);
            }
            off += sizes[i];
        }
        for (int threads = 1; threads <= 3; threads++) {
            ag_set_num_threads(threads);
            ag_ctx *ctx = ag_ctx_new();
            ag_tensor *ps[NP];
            off = 0;
            for (int i = 0; i < NP; i++) {
                ps[i] = mk(ctx, dts[i], 1, &sizes[i], p0 + off);
                assert_nonnull_ag(ps[i]);
                assert_ok(ag_requires_grad_(ps[i], true));
                off += sizes[i];
            }
            ag_optim *opt = make_opt(ctx, ps, NP, &cases[c]);
            assert_nonnull_ag(opt);
            for (int s = 0; s < STEPS; s++) {
                off = 0;
                for (int i = 0; i < NP; i++) {
                    assert_ok(ag_set_grad(ps[i], mk(ctx, dts[i], 1, &sizes[i], g + (int64_t)s * total + off)));
                    off += sizes[i];
                }
                assert_ok(ag_optim_step(opt));
            }
            off = 0;
            for (int i = 0; i < NP; i++) {
                for (int64_t k = 0; k < sizes[i]; k++) {
                    double got = ag_get(ps[i], k);
                    if (got != want[off + k])
                        print_error("case %zu, %d threads, param %d elem %lld: got %a want %a\n", c, threads, i,
                                    (long long)k, got, want[off + k]);
                    assert_true(got == want[off + k]);
                }
                off += sizes[i];
            }
            ag_ctx_free(ctx);
        }
    }
    ag_set_num_threads(0);
    free(p0);
    free(g);
    free(want);
    free(st);
}

/* The same tensor twice in the list is updated twice, one after the other,
 * with one state stepped by both, as torch.optim does (it warns of it), at
 * any thread count. */
static void test_repeated_param(void **state) {
    (void)state;
    const int64_t n = 70000;
    double *p0 = malloc((size_t)n * sizeof *p0), *g = malloc((size_t)n * sizeof *g);
    double *want = malloc((size_t)n * sizeof *want), *st = calloc(3 * (size_t)n, sizeof *st);
    assert_true(p0 && g && want && st);
    for (int64_t i = 0; i < n; i++) {
        p0[i] = sin((double)i);
        g[i] = cos((double)i * 0.37) * 0.1;
        want[i] = (float)p0[i];
        g[i] = (float)g[i];
    }
    const ref_opts o = {.adam = true, .lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    for (int s = 1; s <= 4; s++)
        ref_step(&o, true, s, want, g, st, n);
    ag_set_num_threads(2);
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *p = mk(ctx, AG_FLOAT32, 1, &n, p0);
    assert_nonnull_ag(p);
    assert_ok(ag_requires_grad_(p, true));
    assert_ok(ag_set_grad(p, mk(ctx, AG_FLOAT32, 1, &n, g)));
    ag_optim *opt = make_opt(ctx, (ag_tensor *[]){p, p}, 2, &o);
    assert_nonnull_ag(opt);
    assert_ok(ag_optim_step(opt));
    assert_ok(ag_optim_step(opt));
    for (int64_t i = 0; i < n; i++)
        assert_true(ag_get(p, i) == want[i]);
    ag_ctx_free(ctx);
    ag_set_num_threads(0);
    free(p0);
    free(g);
    free(want);
    free(st);
}

static void test_bad_options(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *p = ag_zeros(ctx, AG_FLOAT32, 1, (int64_t[]){3});
    assert_null(ag_sgd_new(ctx, &p, 1, &(ag_sgd_opts){.lr = -1}));
    assert_error(AG_EINVAL, "Invalid learning rate: -1");
    assert_null(ag_sgd_new(ctx, &p, 1, &(ag_sgd_opts){.lr = 0.1, .nesterov = true}));
    assert_int_equal(ag_last_status(), AG_EINVAL);
    assert_null(ag_sgd_new(ctx, &p, 1, NULL));
    assert_null(ag_sgd_new(ctx, NULL, 1, &(ag_sgd_opts){.lr = 0.1}));
    assert_null(ag_adam_new(ctx, &p, 1, &(ag_adam_opts){.beta1 = 1.5, .beta2 = 0.9}));
    assert_error(AG_EINVAL, "Invalid beta parameter at index 0: 1.5");
    assert_int_equal(ag_optim_step(NULL), AG_EINVAL);
    /* a parameter without .grad is left alone */
    ag_optim *o = ag_adam_new(ctx, &p, 1, NULL);
    assert_nonnull_ag(o);
    assert_ok(ag_optim_step(o));
    assert_true(ag_get(p, 0) == 0.0);
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_torch),        cmocka_unit_test(test_against_torch_base_kernels),
        cmocka_unit_test(test_large_params_threads), cmocka_unit_test(test_repeated_param),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
