/* Optimizers against torch.optim: trajectories of SGD (momentum, dampening,
 * Nesterov, weight decay) and Adam (weight decay, AMSGrad) recorded by
 * gen_optim.py, in float32 and float64; and their argument checks. */
#include "core_check.h"

#include <stdlib.h>

#define N 6

static int read_vals(FILE *f, const char *tag, double *v) {
    char word[16];
    if (fscanf(f, "%15s", word) != 1 || strcmp(word, tag) != 0)
        return -1;
    for (int i = 0; i < N; i++) {
        char num[64];
        if (fscanf(f, "%63s", num) != 1)
            return -1;
        v[i] = strtod(num, NULL); /* hex floats, exactly */
    }
    return 0;
}

static void test_against_torch(void **state) {
    (void)state;
    const char *root = getenv("AGRAD_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/core/optim_golden.txt", root ? root : ".");
    FILE *f = fopen(path, "r");
    if (!f)
        print_error("cannot open %s\n", path);
    assert_non_null(f);
    char line[512];
    assert_non_null(fgets(line, sizeof line, f)); /* header */
    int cases = 0;
    char kind[8], dt[8];
    double lr, mom, damp, wd, b1, b2, eps;
    int nesterov, ams;
    while (fscanf(f, " case %7s %7s %lf %lf %lf %lf %d %lf %lf %lf %d", kind, dt, &lr, &mom, &damp, &wd, &nesterov, &b1,
                  &b2, &eps, &ams) == 11) {
        ag_ctx *ctx = ag_ctx_new();
        ag_dtype dtype = strcmp(dt, "f32") == 0 ? AG_FLOAT32 : AG_FLOAT64;
        double v[N];
        assert_int_equal(read_vals(f, "init", v), 0);
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
            assert_int_equal(read_vals(f, "grad", g), 0);
            assert_int_equal(read_vals(f, "after", want), 0);
            assert_ok(ag_set_grad(p, mk(ctx, dtype, 1, (int64_t[]){N}, g)));
            uint32_t version = ag_version(p);
            assert_ok(ag_optim_step(opt));
            assert_int_equal(ag_version(p), version + 1);
            double tol = dtype == AG_FLOAT32 ? 2e-6 : 1e-13;
            for (int i = 0; i < N; i++) {
                double got = ag_get(p, i);
                if (fabs(got - want[i]) > tol * (1 + fabs(want[i])))
                    print_error("%s %s lr=%g step %d elem %d: got %.9g want %.9g\n", kind, dt, lr, s, i, got, want[i]);
                assert_true(fabs(got - want[i]) <= tol * (1 + fabs(want[i])));
            }
        }
        assert_ok(ag_optim_zero_grad(opt));
        assert_true(ag_get(ag_grad(p), 0) == 0.0);
        ag_ctx_free(ctx);
        cases++;
    }
    fclose(f);
    assert_int_equal(cases, 14);
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
        cmocka_unit_test(test_against_torch),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
