/* What the machine gives, measured inside agrad-bench's own run: the
 * ceiling (how much faster two plain threads finish a compute-bound loop
 * than one thread does) and the peak resident memory of a stretch of the
 * run. On a shared or throttled machine two cores are often not twice one,
 * and then no speedup measured at that moment means much. */
#include "bench_autograd.h"

#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- Ceiling ---------------------------------------------------------------------
 * A piece of work is a dependent multiply-add chain: registers only, no
 * memory, so nothing but the CPU time each thread gets sets its speed.
 * One thread does two pieces; right after, two threads (the calling one
 * and one started for the round, released together by a barrier) do one
 * each. ceiling = the median over rounds of the first time / the second:
 * the two halves of a round see about the same load from elsewhere, which
 * medians of each half taken apart do not (a round where the single
 * thread was preempted would count for nothing). */

static uint64_t burn(uint64_t x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        x = x * 6364136223846793005ull + 1442695040888963407ull;
    return x;
}

typedef struct {
    int64_t n;
    uint64_t out;
    pthread_barrier_t *go;
} piece;

static void *piece_main(void *arg) {
    piece *p = arg;
    pthread_barrier_wait(p->go);
    p->out = burn(p->out, p->n);
    return NULL;
}

/* Iterations for a piece of about 5 ms on this machine, measured once:
 * long enough to span several of the kernel's time slices. */
static int64_t piece_iterations(void) {
    static int64_t n;
    if (n)
        return n;
    int64_t probe = 1 << 18;
    double best = 1e9;
    for (int k = 0; k < 5; k++) {
        double t0 = now_ms();
        volatile uint64_t sink = burn((uint64_t)k, probe);
        (void)sink;
        double dt = now_ms() - t0;
        best = dt < best ? dt : best;
    }
    double per_ms = (double)probe / (best > 1e-3 ? best : 1e-3);
    n = (int64_t)(per_ms * 5.0);
    if (n < probe)
        n = probe;
    return n;
}

double ab_ceiling(int reps) {
    enum { MAX_REPS = 64 };
    reps = reps < 1 ? 1 : reps > MAX_REPS ? MAX_REPS : reps;
    double ratio[MAX_REPS];
    const int64_t n = piece_iterations();
    uint64_t sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_ms();
        sink += burn(sink + 1, n);
        sink += burn(sink + 2, n);
        const double one = now_ms() - t0;

        pthread_barrier_t go;
        pthread_t th;
        piece other = {n, sink + 3, &go};
        if (pthread_barrier_init(&go, NULL, 2) != 0)
            return 0;
        if (pthread_create(&th, NULL, piece_main, &other) != 0) {
            pthread_barrier_destroy(&go);
            return 0;
        }
        pthread_barrier_wait(&go);
        t0 = now_ms();
        sink += burn(sink + 4, n);
        pthread_join(th, NULL);
        ratio[r] = one / (now_ms() - t0);
        sink += other.out;
        pthread_barrier_destroy(&go);
    }
    volatile uint64_t keep = sink;
    (void)keep;
    return median(ratio, reps);
}

/* ---- Peak memory --------------------------------------------------------------------
 * Linux keeps the most resident memory a process has had (VmHWM); writing
 * 5 to /proc/self/clear_refs (Linux 4.0 on) sets it back to what is
 * resident now, so the peak of one workload can be told from the one
 * before. Memory the workload before freed would still count as resident
 * while the allocators keep it: first they give it back (glibc's
 * malloc_trim; jemalloc, which agrad's contexts use, through mallctl when
 * the process has it loaded). */

static void release_free_memory(void) {
    malloc_trim(0);
    int (*ctl)(const char *, void *, size_t *, void *, size_t) = NULL;
    void *sym = dlsym(RTLD_DEFAULT, "mallctl");
    memcpy(&ctl, &sym, sizeof ctl);
    if (ctl) {
        ctl("thread.tcache.flush", NULL, NULL, NULL, 0);
        ctl("arena.4096.purge", NULL, NULL, NULL, 0); /* 4096: MALLCTL_ARENAS_ALL, every arena */
    }
}

static double status_mb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    double mb = -1;
    size_t len = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, len) && line[len] == ':')
            mb = strtod(line + len + 1, NULL) / 1024.0; /* kB */
    fclose(f);
    return mb;
}

bool ab_peak_reset(void) {
    release_free_memory();
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

double ab_peak_mb(void) { return status_mb("VmHWM"); }

double ab_resident_mb(void) { return status_mb("VmRSS"); }
