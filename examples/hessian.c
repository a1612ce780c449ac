/* Second derivatives of a small MLP's loss with ag_autograd_grad and
 * create_graph: a Hessian-vector product (the gradient of g . v, g the
 * gradient recorded with its history) and the full Hessian (one such
 * product per parameter, reusing the recorded gradient). Both are checked
 * against central differences of gradients and, given the file PyTorch's
 * numbers were written to (examples/pytorch/hessian.py), against
 * PyTorch's torch.autograd.functional.hvp and hessian.
 *
 *     hessian [examples/expected/hessian.txt]
 *
 * The network: out = tanh(X W1 + b1) W2, loss = mean((out - Y)^2), its 25
 * parameters in one vector p (W1 3 x 5, b1 5, W2 5 x 1), the data in
 * closed form. Exits 1 on any disagreement. */
#include <agrad.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 4, I = 3, H = 5, P = I * H + H + H };

static void *must(void *p) {
    if (!p) {
        fprintf(stderr, "agrad: %s\n", ag_last_error());
        exit(1);
    }
    return p;
}

static void ok(int rc) {
    if (rc < 0) {
        fprintf(stderr, "agrad: %s\n", ag_last_error());
        exit(1);
    }
}

/* The loss at p, recorded in ctx. */
static ag_tensor *loss_of(ag_ctx *ctx, ag_tensor *p) {
    double x[N * I], y[N];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < I; j++)
            x[i * I + j] = cos(0.9 * i + 1.3 * j);
        y[i] = 0.5 * sin(i);
    }
    ag_tensor *X = must(ag_tensor_from(ctx, AG_FLOAT64, 2, (int64_t[]){N, I}, x));
    ag_tensor *Y = must(ag_tensor_from(ctx, AG_FLOAT64, 2, (int64_t[]){N, 1}, y));
    ag_tensor *w1 = ag_reshape(ctx, ag_narrow(ctx, p, 0, 0, I * H), 2, (int64_t[]){I, H});
    ag_tensor *b1 = ag_narrow(ctx, p, 0, I * H, H);
    ag_tensor *w2 = ag_reshape(ctx, ag_narrow(ctx, p, 0, I * H + H, H), 2, (int64_t[]){H, 1});
    ag_tensor *out = ag_matmul(ctx, ag_tanh(ctx, ag_add(ctx, ag_matmul(ctx, X, w1), b1)), w2);
    return must(ag_mean(ctx, ag_pow_scalar(ctx, ag_sub(ctx, out, Y), 2)));
}

static ag_tensor *params(ag_ctx *ctx, const double *at) {
    ag_tensor *p = must(ag_tensor_from(ctx, AG_FLOAT64, 1, (int64_t[]){P}, at));
    ok(ag_requires_grad_(p, true));
    return p;
}

/* The gradient at `at`, plain (for the differences). */
static void gradient(const double *at, double *g) {
    ag_ctx *ctx = must(ag_ctx_new());
    ag_tensor *p = params(ctx, at), *l = loss_of(ctx, p), *gp = NULL;
    ok(ag_autograd_grad(ctx, &l, NULL, 1, &p, 1, &gp, NULL));
    memcpy(g, ag_data_ptr(gp), sizeof(double) * P);
    ag_ctx_free(ctx);
}

static int bad;

static void check(const char *what, int i, double got, double want, double tol) {
    if (!(fabs(got - want) <= tol * (1 + fabs(want)))) {
        printf("%s %d: %.17g, expected %.17g\n", what, i, got, want);
        bad = 1;
    }
}

/* Reads `tag v...` (n values as hex floats) from f; 0 when absent. */
static int read_line(FILE *f, const char *tag, double *v, int n) {
    char word[16];
    if (fscanf(f, " %15s", word) != 1 || strcmp(word, tag) != 0)
        return 0;
    for (int i = 0; i < n; i++) {
        char num[64];
        if (fscanf(f, "%63s", num) != 1)
            return 0;
        v[i] = strtod(num, NULL);
    }
    return 1;
}

int main(int argc, char **argv) {
    double p0[P], v[P];
    for (int j = 0; j < P; j++) {
        p0[j] = 0.3 * sin(1.7 * j + 0.5);
        v[j] = cos(0.7 * j);
    }
    ag_ctx *ctx = must(ag_ctx_new());
    ag_tensor *p = params(ctx, p0), *loss = loss_of(ctx, p);

    /* g with its history, then the gradient of g . v: H v */
    ag_tensor *g = NULL, *hv = NULL;
    ok(ag_autograd_grad(ctx, &loss, NULL, 1, &p, 1, &g, &(ag_grad_opts){.create_graph = true}));
    ag_tensor *V = must(ag_tensor_from(ctx, AG_FLOAT64, 1, (int64_t[]){P}, v));
    ag_tensor *gv = must(ag_sum(ctx, ag_mul(ctx, g, V)));
    ok(ag_autograd_grad(ctx, &gv, NULL, 1, &p, 1, &hv, &(ag_grad_opts){.retain_graph = true}));

    /* the full Hessian: row j is the gradient of g[j], the recorded
     * gradient kept for every row (retain_graph) */
    static double hess[P * P];
    for (int j = 0; j < P; j++) {
        ag_tensor *gj = must(ag_narrow(ctx, g, 0, j, 1)), *row = NULL;
        ok(ag_autograd_grad(ctx, &gj, NULL, 1, &p, 1, &row, &(ag_grad_opts){.retain_graph = true}));
        memcpy(hess + j * P, ag_data_ptr(row), sizeof(double) * P);
    }
    printf("loss %.12f\n", ag_item(loss));
    printf("H v[0:4] = %.9f %.9f %.9f %.9f\n", ag_get(hv, 0), ag_get(hv, 1), ag_get(hv, 2), ag_get(hv, 3));

    /* against central differences of gradients, column by column */
    const double eps = 1e-6;
    for (int j = 0; j < P; j++) {
        double plus[P], minus[P], gp[P], gm[P];
        memcpy(plus, p0, sizeof plus);
        memcpy(minus, p0, sizeof minus);
        plus[j] += eps;
        minus[j] -= eps;
        gradient(plus, gp);
        gradient(minus, gm);
        for (int i = 0; i < P; i++)
            check("hessian vs differences", i * P + j, hess[i * P + j], (gp[i] - gm[i]) / (2 * eps), 1e-6);
    }
    for (int i = 0; i < P; i++) {
        double s = 0;
        for (int j = 0; j < P; j++)
            s += hess[i * P + j] * v[j];
        check("hvp vs hessian rows", i, ag_get(hv, i), s, 1e-12);
    }

    /* against PyTorch */
    if (argc > 1) {
        FILE *f = fopen(argv[1], "r");
        double want_loss, want_hv[P];
        static double want_h[P * P];
        char line[256];
        if (!f || !fgets(line, sizeof line, f) || !read_line(f, "loss", &want_loss, 1) ||
            !read_line(f, "hvp", want_hv, P) || !read_line(f, "hessian", want_h, P * P)) {
            printf("cannot read PyTorch's numbers from %s\n", argv[1]);
            return 1;
        }
        fclose(f);
        check("loss vs PyTorch", 0, ag_item(loss), want_loss, 1e-13);
        for (int i = 0; i < P; i++)
            check("hvp vs PyTorch", i, ag_get(hv, i), want_hv[i], 1e-11);
        for (int i = 0; i < P * P; i++)
            check("hessian vs PyTorch", i, hess[i], want_h[i], 1e-11);
        printf("PyTorch's hvp and hessian: %s\n", bad ? "differ" : "agree");
    }
    printf("finite differences: %s\n", bad ? "disagree" : "agree");
    ag_ctx_free(ctx);
    return bad;
}
