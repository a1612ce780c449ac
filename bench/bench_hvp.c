/* agrad-bench-hvp: a Hessian-vector product of the mlp workload (batch
 * 128, 784-512-512-10, ReLU, cross-entropy, float32): the gradient of the
 * loss with respect to the six parameters recorded with create_graph,
 * then the gradient of sum_i g_i . v_i. Prints the median time of one
 * product (forward included) per thread count, as bench/pytorch/hvp.py
 * does for PyTorch's double backward.
 *
 *     agrad-bench-hvp [--threads 1,2] [--reps N] */
#include <agrad.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 128

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static ag_tensor *uniform(ag_ctx *ctx, int ndim, const int64_t *shape, double scale, bool param) {
    ag_tensor *t = ag_rand(ctx, AG_FLOAT32, ndim, shape);
    t = t ? ag_mul_scalar(ctx, ag_add_scalar(ctx, t, -0.5), 2 * scale) : NULL;
    if (t && param && ag_requires_grad_(t, true))
        return NULL;
    return t;
}

int main(int argc, char **argv) {
    const char *threads = "1,2";
    int reps = 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads 1,2] [--reps N]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1 || reps > 10000)
        reps = 20;
    ag_manual_seed(7);
    ag_ctx *pc = ag_ctx_new(), *g = ag_ctx_new();
    const int64_t dims[4] = {784, 512, 512, 10};
    ag_tensor *p[6], *v[6];
    ag_tensor *x = uniform(pc, 2, (int64_t[]){BATCH, 784}, 1.0, false);
    int64_t *targets = malloc(BATCH * sizeof *targets);
    for (int64_t i = 0; i < BATCH; i++)
        targets[i] = (i * 7919) % 10;
    for (int l = 0; l < 3; l++) {
        double s = 1.0 / 28.0;
        p[2 * l] = uniform(pc, 2, (int64_t[]){dims[l + 1], dims[l]}, s, true);
        p[2 * l + 1] = uniform(pc, 1, (int64_t[]){dims[l + 1]}, s, true);
        v[2 * l] = uniform(pc, 2, (int64_t[]){dims[l + 1], dims[l]}, 1.0, false);
        v[2 * l + 1] = uniform(pc, 1, (int64_t[]){dims[l + 1]}, 1.0, false);
    }
    for (int k = 0; k < 6; k++)
        if (!p[k] || !v[k] || !x) {
            fprintf(stderr, "agrad: %s\n", ag_last_error());
            return 1;
        }
    printf("hvp mlp (batch %d, 784-512-512-10, float32), median of %d\n", BATCH, reps);
    char *list = strdup(threads);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int nt = atoi(tok);
        double *t = malloc((size_t)(reps + 2) * sizeof *t);
        for (int r = 0; r < reps + 2; r++) { /* two warm-up runs */
            double t0 = now();
            ag_tensor *h = ag_relu(g, ag_linear(g, x, p[0], p[1]));
            h = ag_relu(g, ag_linear(g, h, p[2], p[3]));
            ag_tensor *loss = ag_cross_entropy(g, ag_linear(g, h, p[4], p[5]), targets);
            ag_tensor *gr[6], *hv[6];
            if (!loss || ag_autograd_grad(g, &loss, NULL, 1, p, 6, gr,
                                          &(ag_grad_opts){.create_graph = true, .num_threads = nt})) {
                fprintf(stderr, "agrad: %s\n", ag_last_error());
                return 1;
            }
            ag_tensor *dot = NULL;
            for (int k = 0; k < 6; k++) {
                ag_tensor *term = ag_sum(g, ag_mul(g, gr[k], v[k]));
                dot = dot ? ag_add(g, dot, term) : term;
            }
            if (!dot || ag_autograd_grad(g, &dot, NULL, 1, p, 6, hv, &(ag_grad_opts){.num_threads = nt})) {
                fprintf(stderr, "agrad: %s\n", ag_last_error());
                return 1;
            }
            double t1 = now();
            if (r >= 2)
                t[r - 2] = t1 - t0;
            ag_ctx_reset(g);
        }
        qsort(t, (size_t)reps, sizeof *t, cmp);
        printf("threads %d: %.3f ms\n", nt, 1e3 * t[reps / 2]);
        free(t);
    }
    free(list);
    free(targets);
    ag_ctx_free(g);
    ag_ctx_free(pc);
    return 0;
}
