/* agrad-bench's optimizer workload (`optim`): one Adam step with
 * torch.optim.Adam's defaults, timed alone (ag_optim_step), on the
 * parameters of the MLP 784-256-256-10 (six tensors, 269,322 floats) and
 * on one parameter of 1e6 floats, at each thread count; the median ms per
 * step. The same steps in PyTorch 1.13 in the same run
 * (bench/pytorch/autograd.py --optim): torch.optim.Adam as it comes (its
 * single-tensor loop in 1.13) and with foreach=True; and, with
 * --installed, the same steps through the installed library. The grads
 * stay as set at the start, so every step does the same work. */
#include "bench_autograd.h"

#include <agrad.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef AGRAD_SOURCE_ROOT
#define AGRAD_SOURCE_ROOT "."
#endif

/* A set of parameters: the MLP's (size = its hidden width) or one
 * parameter of size elements. */
typedef struct {
    const char *name, *what;
    int64_t size[3]; /* full, small, tiny */
} optim_set;

static const optim_set sets[] = {
    {"mlp", "the MLP 784-H-H-10's six parameters (H = size)", {256, 256, 32}},
    {"big", "one parameter of size floats", {1000000, 1000000, 20000}},
};
enum { NSETS = sizeof sets / sizeof sets[0], MAX_T = 16 };

static const char *const impls[] = {"agrad", "installed", "pytorch", "pytorch-foreach"};
enum { NIMPL = 4 };

typedef struct {
    double ms[NSETS][NIMPL][MAX_T]; /* median per step; 0: not measured */
    double ceiling[NIMPL];          /* measured right before each implementation's run */
} optim_results;

void bench_optim_list(void) {
    printf("%-11s sizes %lld/%lld/%lld and %lld/%lld/%lld  an Adam step alone: %s; %s\n", "optim",
           (long long)sets[0].size[0], (long long)sets[0].size[1], (long long)sets[0].size[2],
           (long long)sets[1].size[0], (long long)sets[1].size[1], (long long)sets[1].size[2], sets[0].what,
           sets[1].what);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int set_params(ag_ctx *ctx, int set, int64_t size, ag_tensor **ps) {
    int64_t shapes[6][2], ndims[6];
    int n = 0;
    if (set == 0) {
        const int64_t dims[4] = {784, size, size, 10};
        for (int l = 0; l < 3; l++) {
            shapes[n][0] = dims[l + 1], shapes[n][1] = dims[l], ndims[n++] = 2;
            shapes[n][0] = dims[l + 1], ndims[n++] = 1;
        }
    } else {
        shapes[n][0] = size, ndims[n++] = 1;
    }
    for (int i = 0; i < n; i++) {
        ps[i] = ag_randn(ctx, AG_FLOAT32, (int)ndims[i], shapes[i]);
        ag_tensor *g = ag_randn(ctx, AG_FLOAT32, (int)ndims[i], shapes[i]);
        if (!ps[i] || !g || ag_requires_grad_(ps[i], true) || ag_mul_scalar_(g, 1e-2) || ag_set_grad(ps[i], g))
            return -1;
    }
    return n;
}

/* Median ms of one Adam step on set `set` at each thread count. */
static int measure_agrad(const ab_options *o, int reps, int warmup, optim_results *r) {
    int failures = 0;
    for (int set = 0; set < NSETS; set++) {
        ag_ctx *ctx = ag_ctx_new();
        ag_tensor *ps[8];
        ag_manual_seed(1234);
        int n = ctx ? set_params(ctx, set, sets[set].size[o->scale], ps) : -1;
        ag_optim *opt = n > 0 ? ag_adam_new(ctx, ps, n, NULL) : NULL;
        double *t = calloc((size_t)reps, sizeof *t);
        if (!opt || !t) {
            fprintf(stderr, "agrad-bench: optim %s: setup failed: %s\n", sets[set].name, ag_last_error());
            failures++;
        }
        for (int k = 0; opt && t && k < o->nthreads && k < MAX_T; k++) {
            ag_set_num_threads(o->threads[k]);
            struct timespec settle = {o->settle_ms / 1000, (long)(o->settle_ms % 1000) * 1000000};
            nanosleep(&settle, NULL);
            bool ok = true;
            for (int i = 0; i < warmup + reps && ok; i++) {
                double t0 = now_ms();
                ok = ag_optim_step(opt) == 0;
                if (i >= warmup)
                    t[i - warmup] = now_ms() - t0;
            }
            /* a step that went wrong leaves a parameter that is not finite */
            ok = ok && isfinite(ag_get(ps[0], 0));
            if (!ok) {
                fprintf(stderr, "agrad-bench: optim %s at %d threads failed: %s\n", sets[set].name, o->threads[k],
                        ag_last_error());
                failures++;
                continue;
            }
            qsort(t, (size_t)reps, sizeof *t, cmp_double);
            r->ms[set][0][k] = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
        }
        free(t);
        ag_ctx_free(ctx);
    }
    ag_set_num_threads(0);
    return failures;
}

static int thread_index(const ab_options *o, int threads) {
    for (int k = 0; k < o->nthreads && k < MAX_T; k++)
        if (o->threads[k] == threads)
            return k;
    return -1;
}

/* Reads "optim SET IMPL THREADS MS" and "ceiling optim X" lines of a peer;
 * its IMPL "agrad" is filed as `as` (the installed copy). */
static void read_peer(FILE *p, const ab_options *o, const char *as, optim_results *r) {
    char line[256], a[32], b[32], c[32];
    while (fgets(line, sizeof line, p)) {
        int th;
        double x;
        if (sscanf(line, "optim %31s %31s %d %lf", a, b, &th, &x) == 4) {
            const char *impl = !strcmp(b, "agrad") ? as : b;
            int k = thread_index(o, th);
            for (int s = 0; s < NSETS; s++)
                for (int i = 0; i < NIMPL; i++)
                    if (k >= 0 && !strcmp(sets[s].name, a) && !strcmp(impls[i], impl))
                        r->ms[s][i][k] = x;
        } else if (sscanf(line, "ceiling %31s %lf", c, &x) == 2) {
            for (int i = 0; i < NIMPL; i++)
                if (!strcmp(impls[i], as))
                    r->ceiling[i] = x;
        } else {
            fputs(line, stderr); /* the peer's own message */
        }
    }
}

static void thread_list(const ab_options *o, char *buf, size_t cap) {
    buf[0] = '\0';
    for (int t = 0; t < o->nthreads; t++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%d", t ? "," : "", o->threads[t]);
}

static void run_pytorch(const ab_options *o, int reps, int warmup, optim_results *r) {
    char threads[128], self[1024] = "", cmd[2048];
    thread_list(o, threads, sizeof threads);
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    self[len > 0 ? len : 0] = '\0';
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/bench/pytorch/autograd.py --optim mlp=%lld,big=%lld --threads %s --reps %d "
             "--warmup %d%s%s%s",
             AGRAD_SOURCE_ROOT, (long long)sets[0].size[o->scale], (long long)sets[1].size[o->scale], threads, reps,
             warmup, self[0] ? " --ceiling-cmd '" : "", self, self[0] ? " --ceiling'" : "");
    FILE *p = popen(cmd, "r");
    if (!p)
        return;
    read_peer(p, o, "pytorch", r);
    pclose(p);
    /* both PyTorch variants ran after the one ceiling */
    r->ceiling[3] = r->ceiling[2];
}

static void run_installed(const ab_options *o, optim_results *r) {
    const char *bin = ab_installed_path();
    if (!bin)
        return;
    char threads[128], cmd[2048];
    thread_list(o, threads, sizeof threads);
    snprintf(cmd, sizeof cmd,
             "'%s' --only autograd --peer --workloads optim --threads %s --reps %d --warmup %d --settle %d%s", bin,
             threads, o->reps, o->warmup, o->settle_ms,
             o->scale == AB_SIZE_TINY    ? " --tiny"
             : o->scale == AB_SIZE_SMALL ? " --small"
                                         : "");
    FILE *p = popen(cmd, "r");
    if (!p)
        return;
    read_peer(p, o, "installed", r);
    pclose(p);
}

static void print_table(const ab_options *o, const optim_results *r) {
    printf("\nOptimizer step: one Adam step alone (torch.optim.Adam's defaults), median ms; ceiling = two plain "
           "threads' speedup measured right before each run\n");
    printf("%-5s %9s %7s %9s %10s %10s %16s %16s %9s\n", "set", "elements", "threads", "agrad", "installed", "PyTorch",
           "PyTorch foreach", "agrad / PyTorch", "ceiling");
    for (int s = 0; s < NSETS; s++) {
        int64_t h = sets[s].size[o->scale];
        int64_t elems = s == 0 ? 784 * h + h + h * h + h + h * 10 + 10 : h;
        for (int k = 0; k < o->nthreads && k < MAX_T; k++) {
            double v[NIMPL];
            for (int i = 0; i < NIMPL; i++)
                v[i] = r->ms[s][i][k];
            printf("%-5s %9lld %7d", sets[s].name, (long long)elems, o->threads[k]);
            for (int i = 0; i < NIMPL; i++) {
                int w = i == 0 ? 9 : i == 1 ? 10 : i == 2 ? 10 : 16;
                if (v[i] > 0)
                    printf(" %*.3f", w, v[i]);
                else
                    printf(" %*s", w, "-");
            }
            /* against PyTorch's faster variant at this thread count */
            double pt = v[2] > 0 && (v[3] <= 0 || v[2] < v[3]) ? v[2] : v[3];
            if (v[0] > 0 && pt > 0)
                printf(" %15.2fx", v[0] / pt);
            else
                printf(" %16s", "-");
            double c = r->ceiling[0];
            if (o->threads[k] > 1 && c > 0)
                printf(" %8.2fx%s\n", c, c < AB_CEILING_MIN ? "  (speedups not meaningful)" : "");
            else
                printf(" %9s\n", "-");
        }
    }
    printf("(agrad / PyTorch below 1: agrad's step is faster; target: at most 1.1x at every thread count)\n");
    if (r->ceiling[2] > 0)
        printf("ceiling before PyTorch's run: %.2fx%s\n", r->ceiling[2],
               r->ceiling[2] < AB_CEILING_MIN ? " (its speedups not meaningful)" : "");
    if (r->ceiling[1] > 0)
        printf("ceiling before the installed library's run: %.2fx\n", r->ceiling[1]);
}

static void write_csv(const ab_options *o, const optim_results *r) {
    char path[1024];
    snprintf(path, sizeof path, "%s/optim.csv", o->out_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fputs("set,impl,threads,size,step_ms,ceiling\n", f);
    for (int s = 0; s < NSETS; s++)
        for (int i = 0; i < NIMPL; i++)
            for (int k = 0; k < o->nthreads && k < MAX_T; k++)
                if (r->ms[s][i][k] > 0)
                    fprintf(f, "%s,%s,%d,%lld,%.6f,%.3f\n", sets[s].name, impls[i], o->threads[k],
                            (long long)sets[s].size[o->scale], r->ms[s][i][k], r->ceiling[i]);
    fclose(f);
}

int bench_optim_run(const ab_options *o) {
    /* a step is short (0.1 to 2 ms): more rounds than a backward gets */
    const int reps = o->reps * 5, warmup = o->warmup * 5 + 1;
    optim_results *r = calloc(1, sizeof *r);
    if (!r)
        return 1;
    r->ceiling[0] = ab_ceiling(9);
    if (o->peer)
        printf("ceiling optim %.4f\n", r->ceiling[0]);
    int failures = measure_agrad(o, reps, warmup, r);
    if (o->peer) {
        for (int s = 0; s < NSETS; s++)
            for (int k = 0; k < o->nthreads && k < MAX_T; k++)
                if (r->ms[s][0][k] > 0)
                    printf("optim %s agrad %d %.6f\n", sets[s].name, o->threads[k], r->ms[s][0][k]);
        fflush(stdout);
        free(r);
        return failures;
    }
    if (o->installed)
        run_installed(o, r);
    if (o->pytorch && (!o->impls || strstr(o->impls, "pytorch")) &&
        system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0)
        run_pytorch(o, reps, warmup, r);
    print_table(o, r);
    if (o->out_dir)
        write_csv(o, r);
    free(r);
    return failures;
}
