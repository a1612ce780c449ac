/* The one-element chain (micrograd-style): y = (y * w) + b repeated, then
 * backward. Measures the fixed cost of agrad's machinery: forward ns per op
 * (op checks, arena allocation, node recording) and backward ns per node
 * (discovery, ready queue, buffers, kernels), in a context reset each round
 * as a training loop would. */
#include "bench_chain.h"

#include <agrad.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int bench_chain_run(int length, int reps, chain_result *res) {
    ag_ctx *params = ag_ctx_new(), *step = ag_ctx_new();
    if (!params || !step)
        return -1;
    ag_tensor *w = ag_full(params, AG_FLOAT32, 1, (int64_t[]){1}, 1.0001);
    ag_tensor *b = ag_full(params, AG_FLOAT32, 1, (int64_t[]){1}, 0.0001);
    ag_tensor *x = ag_full(params, AG_FLOAT32, 1, (int64_t[]){1}, 0.5);
    if (ag_requires_grad_(w, true) || ag_requires_grad_(b, true) || ag_requires_grad_(x, true))
        return -1;
    double *fwd = malloc(sizeof(double) * (size_t)reps), *bwd = malloc(sizeof(double) * (size_t)reps);
    int rc = 0;
    for (int rep = -2; rep < reps && rc == 0; rep++) { /* two warm-up rounds */
        double t0 = now_ns();
        ag_tensor *y = x;
        for (int i = 0; i < length; i++)
            y = ag_add(step, ag_mul(step, y, w), b);
        double t1 = now_ns();
        rc = y ? ag_backward(y, NULL, NULL) : -1;
        double t2 = now_ns();
        if (rep >= 0) {
            fwd[rep] = (t1 - t0) / (2.0 * length);
            bwd[rep] = (t2 - t1) / (2.0 * length + 3); /* + 3 AccumulateGrad */
        }
        ag_zero_grad(w);
        ag_zero_grad(b);
        ag_zero_grad(x);
        ag_ctx_reset(step);
    }
    if (rc)
        fprintf(stderr, "chain: %s\n", ag_last_error());
    else {
        res->fwd_ns_per_op = median(fwd, reps);
        res->bwd_ns_per_node = median(bwd, reps);
        res->nodes = 2 * length + 3;
    }
    free(fwd);
    free(bwd);
    ag_ctx_free(step);
    ag_ctx_free(params);
    return rc;
}
