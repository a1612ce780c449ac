/* agrad-bench: the autograd suite (bench_autograd.c: graphs timed forward
 * and backward against PyTorch, with plots), then the scheduler's own
 * workloads (fib, DAGs, parallel-for, ws against OpenMP tasks) at several
 * thread counts, printing medians, per-task overhead against the serial
 * version, speedups and ws/OpenMP ratios. --out DIR writes JSON, CSV and
 * PNG plots there. usage: agrad-bench --help */
#include "bench.h"
#include "bench_autograd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

/* The table of workload files: add a line for a new bench_<area>.c. */
static const bench_workload *(*const lists[])(size_t *count) = {
    bench_sched_list,
};

enum { MAX_WORKLOADS = 256, MAX_THREADS = 16, MAX_SIZES = 32 };

typedef struct result {
    const bench_workload *w;
    int threads;
    int64_t size;
    double median_ms, min_ms, tasks;
    bool ok;
} result;

typedef struct options {
    bool quick, list, small, tiny, no_pytorch, no_plots;
    bool installed, peer, ceiling;
    const char *only, *out, *autograd_impls;
    const char *workloads, *impls, *json;
    int threads[MAX_THREADS], nthreads;
    int reps, warmup, settle_ms;
    int autograd_reps, autograd_warmup;
    int64_t work, grain;
    struct {
        char name[32];
        int64_t size;
    } sizes[MAX_SIZES];
    int nsizes;
} options;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* "a,b,c" contains name? NULL means everything. */
bool ab_in_list(const char *list, const char *name) {
    if (!list)
        return true;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        if (!end)
            break;
        p = end + 1;
    }
    return false;
}

static bool parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static void usage(FILE *f) {
    fputs("usage: agrad-bench [options]\n"
          "  --small              the autograd suite at small sizes and the scheduler's at quick\n"
          "                       ones: README's main command, a couple of minutes on 2 cores\n"
          "  --tiny, --quick      tiny sizes, 3 repetitions, threads 1,2: a few seconds\n"
          "  --only NAME          only the autograd suite (autograd) or the scheduler's (sched)\n"
          "  --installed          the autograd suite also through the installed library: meson install\n"
          "                       into the build tree, agrad-bench built there with pkg-config agrad\n"
          "                       (bench/installed.sh), its results as implementation \"installed\"\n"
          "  --ceiling            print two plain threads' speedup on a compute-bound loop and exit\n"
          "  --out DIR            write autograd.json/.csv, sched.json/.csv and PNG plots to DIR\n"
          "  --no-pytorch         skip the PyTorch peers\n"
          "  --no-plots           write the plots' data and gnuplot script, but do not run gnuplot\n"
          "  --list               list the workloads and exit\n"
          "  --workloads a,b      only these workloads (autograd: chain1,wide,fanin,deep,mlp,attention;\n"
          "                       sched: fib,tree,chain,random,layer64,dagbuild,pfor,roundtrip,ceiling)\n"
          "  --impl a,b           only these implementations (autograd: agrad,agrad-det,agrad-omp,pytorch;\n"
          "                       sched: serial,ws,ws-group,openmp,pthreads)\n"
          "  --threads 1,2,8      thread counts, the calling thread included (default 1 to the cores,\n"
          "                       and 8 for oversubscription)\n"
          "  --reps N             timed repetitions per measurement, median reported (default:\n"
          "                       autograd 21, scheduler 11; --small 7, --tiny 3)\n"
          "  --warmup N           untimed runs first (default: autograd 5, scheduler 2)\n"
          "  --settle MS          pause before each run, so the threads of the one before\n"
          "                       (libgomp's spin after a parallel region) are asleep (default 20)\n"
          "  --size NAME=N        size of a workload (repeatable), e.g. --size fib=30\n"
          "  --work N             busy iterations per DAG node (default: tree/chain 0, random 100)\n"
          "  --grain N            parallel-for grain (default 4096)\n"
          "  --json FILE          write one JSON record per measurement\n",
          f);
}

static int parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof(*o));
    o->reps = -1;
    o->warmup = -1;
    o->settle_ms = -1;
    o->work = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        if (!strcmp(a, "--quick") || !strcmp(a, "--tiny")) {
            o->quick = o->tiny = true;
        } else if (!strcmp(a, "--small")) {
            o->small = true;
        } else if (!strcmp(a, "--no-pytorch")) {
            o->no_pytorch = true;
        } else if (!strcmp(a, "--no-plots")) {
            o->no_plots = true;
        } else if (!strcmp(a, "--list")) {
            o->list = true;
        } else if (!strcmp(a, "--installed")) {
            o->installed = true;
        } else if (!strcmp(a, "--peer")) { /* lines for another agrad-bench (ab_options.peer) */
            o->peer = true;
        } else if (!strcmp(a, "--ceiling")) {
            o->ceiling = true;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!v) {
            fprintf(stderr, "agrad-bench: %s needs a value\n", a);
            return -1;
        } else if (!strcmp(a, "--only")) {
            o->only = argv[++i];
            if (strcmp(o->only, "autograd") != 0 && strcmp(o->only, "sched") != 0) {
                fprintf(stderr, "agrad-bench: --only takes autograd or sched\n");
                return -1;
            }
        } else if (!strcmp(a, "--out")) {
            o->out = argv[++i];
        } else if (!strcmp(a, "--workloads")) {
            o->workloads = argv[++i];
        } else if (!strcmp(a, "--impl")) {
            o->impls = argv[++i];
        } else if (!strcmp(a, "--json")) {
            o->json = argv[++i];
        } else if (!strcmp(a, "--reps") && parse_int(v, 1, 100000, &x)) {
            o->reps = (int)x, i++;
        } else if (!strcmp(a, "--warmup") && parse_int(v, 0, 100000, &x)) {
            o->warmup = (int)x, i++;
        } else if (!strcmp(a, "--settle") && parse_int(v, 0, 10000, &x)) {
            o->settle_ms = (int)x, i++;
        } else if (!strcmp(a, "--work") && parse_int(v, 0, INT64_MAX, &x)) {
            o->work = x, i++;
        } else if (!strcmp(a, "--grain") && parse_int(v, 1, INT64_MAX, &x)) {
            o->grain = x, i++;
        } else if (!strcmp(a, "--threads")) {
            char buf[256];
            snprintf(buf, sizeof(buf), "%s", argv[++i]);
            o->nthreads = 0;
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                if (o->nthreads == MAX_THREADS || !parse_int(tok, 1, 1024, &x)) {
                    fprintf(stderr, "agrad-bench: bad --threads %s\n", argv[i]);
                    return -1;
                }
                o->threads[o->nthreads++] = (int)x;
            }
        } else if (!strcmp(a, "--size")) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || (size_t)(eq - v) >= sizeof(o->sizes[0].name) || o->nsizes == MAX_SIZES ||
                !parse_int(eq + 1, 0, INT64_MAX, &x)) {
                fprintf(stderr, "agrad-bench: bad --size %s (NAME=N)\n", v);
                return -1;
            }
            memcpy(o->sizes[o->nsizes].name, v, (size_t)(eq - v));
            o->sizes[o->nsizes].name[eq - v] = '\0';
            o->sizes[o->nsizes++].size = x;
            i++;
        } else {
            fprintf(stderr, "agrad-bench: bad option or value: %s %s\n", a, v);
            usage(stderr);
            return -1;
        }
    }
    if (o->nthreads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        if (o->quick) {
            o->threads[o->nthreads++] = 1;
            o->threads[o->nthreads++] = 2;
        } else {
            for (long t = 1; t <= cores && o->nthreads < MAX_THREADS - 1; t++)
                o->threads[o->nthreads++] = (int)t;
            if (cores < 8)
                o->threads[o->nthreads++] = 8;
        }
    }
    if (o->small)
        o->quick = true; /* the scheduler's workloads at their quick sizes */
    /* Full sizes: the autograd suite's rounds are short, so it takes 21
     * after 5 warm-up rounds; the scheduler's take seconds each (OpenMP's
     * fib), so 11 after 2. */
    o->autograd_reps = o->reps >= 0 ? o->reps : o->tiny ? 3 : o->small ? 7 : 21;
    o->autograd_warmup = o->warmup >= 0 ? o->warmup : o->tiny ? 1 : o->small ? 2 : 5;
    if (o->reps < 0)
        o->reps = o->tiny ? 3 : o->small ? 7 : 11;
    if (o->warmup < 0)
        o->warmup = o->tiny ? 1 : 2;
    if (o->settle_ms < 0)
        o->settle_ms = o->tiny ? 1 : o->small ? 10 : 20;
    return 0;
}

static int64_t size_of(const options *o, const bench_workload *w) {
    for (int i = 0; i < o->nsizes; i++)
        if (!strcmp(o->sizes[i].name, w->name))
            return o->sizes[i].size;
    return o->quick ? w->quick_size : w->size;
}

/* One configuration being measured: a workload at a thread count. */
typedef struct config {
    const bench_workload *w;
    bench_params bp;
    void *state;
    double *t; /* per timed round */
    bool ok;
} config;

/* Measures configs together: each round runs every one of them once, in an
 * order rotated per round, so load from elsewhere on a shared machine falls
 * on all of them alike instead of on whichever ran at a bad moment. */
static void measure_together(const options *o, config *c, int nc, result *out) {
    for (int k = 0; k < nc; k++) {
        c[k].t = calloc((size_t)o->reps, sizeof(double));
        c[k].state = c[k].w->setup(&c[k].bp);
        c[k].ok = c[k].t && c[k].state;
        if (!c[k].state)
            fprintf(stderr, "agrad-bench: %s/%s: setup failed (size %lld)\n", c[k].w->name, c[k].w->impl,
                    (long long)c[k].bp.size);
    }
    for (int round = 0; round < o->warmup + o->reps; round++) {
        for (int j = 0; j < nc; j++) {
            config *x = &c[(j + round) % nc];
            if (!x->ok)
                continue;
            if (x->w->reset)
                x->w->reset(x->state);
            struct timespec settle = {o->settle_ms / 1000, (long)(o->settle_ms % 1000) * 1000000};
            nanosleep(&settle, NULL);
            double t0 = now_ms();
            int rc = x->w->run(x->state, &x->bp);
            double dt = now_ms() - t0;
            if (rc != 0) {
                fprintf(stderr, "agrad-bench: %s/%s at %d threads: wrong result\n", x->w->name, x->w->impl,
                        x->bp.threads);
                x->ok = false;
            } else if (round >= o->warmup) {
                x->t[round - o->warmup] = dt;
            }
        }
    }
    for (int k = 0; k < nc; k++) {
        result *r = &out[k];
        *r = (result){.w = c[k].w, .threads = c[k].bp.threads, .size = c[k].bp.size, .ok = c[k].ok};
        r->tasks = c[k].w->tasks(&c[k].bp);
        if (c[k].state)
            c[k].w->teardown(c[k].state);
        if (c[k].ok) {
            qsort(c[k].t, (size_t)o->reps, sizeof(double), cmp_double);
            r->median_ms = o->reps % 2 ? c[k].t[o->reps / 2] : 0.5 * (c[k].t[o->reps / 2 - 1] + c[k].t[o->reps / 2]);
            r->min_ms = c[k].t[0];
        }
        free(c[k].t);
    }
}

static const result *find(const result *rs, int n, const char *name, const char *impl, int threads) {
    for (int i = 0; i < n; i++)
        if (rs[i].ok && !strcmp(rs[i].w->name, name) && !strcmp(rs[i].w->impl, impl) &&
            (threads < 0 || rs[i].threads == threads))
            return &rs[i];
    return NULL;
}

/* (time - serial time) / tasks, from the same run; < -1e300 when unknown. */
static double overhead_ns(const result *rs, int n, const result *r) {
    const result *s = find(rs, n, r->w->name, "serial", -1);
    if (!s || r->w->serial || r->tasks <= 0)
        return -1e308;
    return (r->median_ms - s->median_ms) * 1e6 / r->tasks;
}

static void write_json(const char *path, const result *rs, int n, const options *o) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "agrad-bench: cannot write %s\n", path);
        return;
    }
    fputs("[\n", f);
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        double ov = overhead_ns(rs, n, r);
        fprintf(f,
                "  {\"workload\": \"%s\", \"impl\": \"%s\", \"threads\": %d, \"size\": %lld, \"reps\": %d, "
                "\"ok\": %s, \"median_ms\": %.6f, \"min_ms\": %.6f, \"tasks\": %.0f, \"ns_per_task\": %.3f, "
                "\"overhead_ns_per_task\": ",
                r->w->name, r->w->impl, r->threads, (long long)r->size, o->reps, r->ok ? "true" : "false", r->median_ms,
                r->min_ms, r->tasks, r->tasks > 0 ? r->median_ms * 1e6 / r->tasks : 0.0);
        if (ov > -1e300)
            fprintf(f, "%.3f}", ov);
        else
            fputs("null}", f);
        fputs(i + 1 < n ? ",\n" : "\n", f);
    }
    fputs("]\n", f);
    fclose(f);
}

static void write_csv(const char *path, const result *rs, int n) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "agrad-bench: cannot write %s\n", path);
        return;
    }
    fputs("workload,impl,threads,size,ok,median_ms,min_ms,tasks,ns_per_task,overhead_ns_per_task\n", f);
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        double ov = overhead_ns(rs, n, r);
        fprintf(f, "%s,%s,%d,%lld,%d,%.6f,%.6f,%.0f,%.3f,", r->w->name, r->w->impl, r->threads, (long long)r->size,
                r->ok, r->median_ms, r->min_ms, r->tasks, r->tasks > 0 ? r->median_ms * 1e6 / r->tasks : 0.0);
        if (ov > -1e300)
            fprintf(f, "%.3f\n", ov);
        else
            fputs("\n", f);
    }
    fclose(f);
}

static void print_tables(const result *rs, int n, const options *o) {
    /* Per-task cost at one thread, against the serial version. */
    printf("\nPer-task cost at 1 thread (ns per task; overhead = (time - serial time) / tasks)\n");
    printf("%-8s %-8s %12s %12s %12s\n", "workload", "impl", "tasks", "ns/task", "overhead");
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        if (!r->ok || r->threads != 1 || r->tasks <= 0)
            continue;
        if (!find(rs, n, r->w->name, "serial", -1))
            continue; /* no baseline (the ceiling) */
        double ov = overhead_ns(rs, n, r);
        printf("%-8s %-8s %12.0f %12.2f ", r->w->name, r->w->impl, r->tasks, r->median_ms * 1e6 / r->tasks);
        if (ov > -1e300)
            printf("%12.2f\n", ov);
        else
            printf("%12s\n", "-");
    }

    /* Speedup over the same implementation at the first thread count. */
    int base = o->threads[0];
    printf("\nSpeedup over the same implementation at %d thread%s (median times)\n", base, base == 1 ? "" : "s");
    printf("%-8s %-8s", "workload", "impl");
    for (int t = 0; t < o->nthreads; t++)
        printf(" %7dT", o->threads[t]);
    printf("\n");
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        if (!r->ok || r->w->serial || r->threads != base)
            continue;
        printf("%-8s %-8s", r->w->name, r->w->impl);
        for (int t = 0; t < o->nthreads; t++) {
            const result *x = find(rs, n, r->w->name, r->w->impl, o->threads[t]);
            if (x)
                printf(" %7.2fx", r->median_ms / x->median_ms);
            else
                printf(" %8s", "-");
        }
        printf("\n");
    }

    /* OpenMP against ws, same thread count, same run. */
    bool any = false;
    for (int i = 0; i < n && !any; i++)
        any = rs[i].ok && !strcmp(rs[i].w->impl, "openmp");
    if (any) {
        printf("\nOpenMP time / ws time (above 1: ws is faster)\n%-8s %-8s", "workload", "");
        for (int t = 0; t < o->nthreads; t++)
            printf(" %7dT", o->threads[t]);
        printf("\n");
        for (int i = 0; i < n; i++) {
            const result *r = &rs[i];
            if (!r->ok || strcmp(r->w->impl, "ws") != 0 || r->threads != base)
                continue;
            printf("%-8s %-8s", r->w->name, "");
            for (int t = 0; t < o->nthreads; t++) {
                const result *w = find(rs, n, r->w->name, "ws", o->threads[t]);
                const result *m = find(rs, n, r->w->name, "openmp", o->threads[t]);
                if (w && m)
                    printf(" %7.2fx", m->median_ms / w->median_ms);
                else
                    printf(" %8s", "-");
            }
            printf("\n");
        }
    }
}

int main(int argc, char **argv) {
    options o;
    if (parse_args(argc, argv, &o) != 0)
        return 2;
    const bench_workload *all[MAX_WORKLOADS];
    int nall = 0;
    for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
        size_t count;
        const bench_workload *ws = lists[l](&count);
        for (size_t i = 0; i < count && nall < MAX_WORKLOADS; i++)
            all[nall++] = &ws[i];
    }
    if (o.list) {
        printf("autograd suite:\n");
        bench_autograd_list();
        printf("\nscheduler:\n");
        for (int i = 0; i < nall; i++)
            printf("%-8s %-8s size %-9lld quick %-7lld %s\n", all[i]->name, all[i]->impl, (long long)all[i]->size,
                   (long long)all[i]->quick_size, all[i]->what);
        return 0;
    }

    if (o.ceiling) {
        printf("%.4f\n", ab_ceiling(9));
        return 0;
    }
    if (o.out && mkdir(o.out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "agrad-bench: cannot create %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    int failures = 0;
    if (!o.only || !strcmp(o.only, "autograd") || o.peer) {
        if (!o.peer)
            printf("agrad-bench, autograd suite: %ld cores online, compiler %s, reps %d (median), warm-up %d, %s "
                   "sizes\n",
                   sysconf(_SC_NPROCESSORS_ONLN), __VERSION__, o.autograd_reps, o.autograd_warmup,
                   o.tiny    ? "tiny"
                   : o.small ? "small"
                             : "full");
        ab_options ao = {.scale = o.tiny    ? AB_SIZE_TINY
                                  : o.small ? AB_SIZE_SMALL
                                            : AB_SIZE_FULL,
                         .threads = o.threads,
                         .nthreads = o.nthreads,
                         .reps = o.autograd_reps,
                         .warmup = o.autograd_warmup,
                         .settle_ms = o.settle_ms,
                         .workloads = o.workloads,
                         .impls = o.impls,
                         .pytorch = !o.no_pytorch,
                         .out_dir = o.peer ? NULL : o.out,
                         .plots = !o.no_plots,
                         .installed = o.installed && !o.peer,
                         .peer = o.peer};
        int rc = bench_autograd_run(&ao);
        if (rc < 0)
            return 1;
        failures += rc;
        if (o.only || o.peer)
            return failures ? 1 : 0;
        printf("\n");
    }

    printf("agrad-bench, scheduler: %ld cores online, compiler %s, reps %d (median), warm-up %d, settle %d ms%s\n",
           sysconf(_SC_NPROCESSORS_ONLN), __VERSION__, o.reps, o.warmup, o.settle_ms, o.quick ? ", quick" : "");
    printf("threads = threads doing work; ws uses threads-1 workers plus the calling thread\n\n");
    printf("%-8s %-8s %7s %11s %11s %11s %12s\n", "workload", "impl", "threads", "size", "median ms", "min ms",
           "ns/task");

    /* One pool per thread count, all alive at once; idle ones sleep. */
    ws_pool *pools[MAX_THREADS] = {0};
    for (int t = 0; t < o.nthreads; t++) {
        ws_pool_opts po = WS_POOL_OPTS_INIT;
        po.num_threads = o.threads[t] - 1;
        int rc = ws_pool_create(&pools[t], &po);
        if (rc != 0) {
            fprintf(stderr, "agrad-bench: pool of %d workers: %s\n", po.num_threads, ws_strerror(rc));
            return 1;
        }
    }
    size_t ncfg = (size_t)(nall > 0 ? nall : 1) * MAX_THREADS;
    result *rs = calloc(ncfg, sizeof(result));
    config *cs = calloc(ncfg, sizeof(config));
    if (!rs || !cs)
        return 1;
    int nr = 0;
    /* Workloads in order of first appearance; each measured on its own,
     * with all its implementations and thread counts together. */
    for (int i = 0; i < nall; i++) {
        bool seen = false;
        for (int j = 0; j < i; j++)
            seen |= !strcmp(all[j]->name, all[i]->name);
        if (seen || (o.workloads && !ab_in_list(o.workloads, all[i]->name)))
            continue;
        int nc = 0;
        for (int j = i; j < nall; j++) {
            const bench_workload *w = all[j];
            if (strcmp(w->name, all[i]->name) != 0 || !ab_in_list(o.impls, w->impl))
                continue;
            for (int t = 0; t < (w->serial ? 1 : o.nthreads); t++)
                cs[nc++] = (config){.w = w,
                                    .bp = {.threads = w->serial ? 1 : o.threads[t],
                                           .size = size_of(&o, w),
                                           .work = o.work,
                                           .grain = o.grain,
                                           .pool = pools[t]}};
        }
        measure_together(&o, cs, nc, &rs[nr]);
        for (int k = 0; k < nc; k++) {
            const result *r = &rs[nr + k];
            if (!r->ok) {
                failures++;
                continue;
            }
            printf("%-8s %-8s %7d %11lld %11.3f %11.3f %12.2f\n", r->w->name, r->w->impl, r->threads,
                   (long long)r->size, r->median_ms, r->min_ms, r->tasks > 0 ? r->median_ms * 1e6 / r->tasks : 0.0);
        }
        fflush(stdout);
        nr += nc;
    }
    for (int t = 0; t < o.nthreads; t++)
        ws_pool_destroy(pools[t]);
    free(cs);
    print_tables(rs, nr, &o);
    if (o.json)
        write_json(o.json, rs, nr, &o);
    if (o.out) {
        char path[1024];
        snprintf(path, sizeof path, "%s/sched.json", o.out);
        write_json(path, rs, nr, &o);
        snprintf(path, sizeof path, "%s/sched.csv", o.out);
        write_csv(path, rs, nr);
        printf("\nwritten to %s/: autograd.json autograd.csv sched.json sched.csv%s\n", o.out,
               o.no_plots ? "" : " speedup.png vs_pytorch.png");
    }
    free(rs);
    if (failures)
        fprintf(stderr, "agrad-bench: %d measurement(s) failed\n", failures);
    return failures ? 1 : 0;
}
