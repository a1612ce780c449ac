/* agrad-bench's autograd suite: graphs built with agrad's public API, timed
 * forward and backward at each thread count, for each way of running the
 * backward (the work-stealing pool, deterministic mode, OpenMP tasks), next
 * to the same graphs in PyTorch when it is installed. */
#ifndef AGRAD_BENCH_AUTOGRAD_H
#define AGRAD_BENCH_AUTOGRAD_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { AB_SIZE_FULL, AB_SIZE_SMALL, AB_SIZE_TINY } ab_scale;

typedef struct ab_options {
    ab_scale scale;
    const int *threads; /* thread counts, the calling thread included */
    int nthreads;
    int reps, warmup;
    int settle_ms;         /* pause before each timed round: OpenMP's threads spin after a region */
    const char *workloads; /* "a,b" or NULL for all */
    const char *impls;     /* "agrad,agrad-det,agrad-omp,pytorch" or NULL for all */
    bool pytorch;          /* run the PyTorch peers when torch imports */
    const char *out_dir;   /* JSON, CSV and plots go here; NULL: none */
    bool plots;
    /* Also run agrad as users link it: the same suite built by
     * bench/installed.sh against the library `meson install` installs
     * (pkg-config agrad), its results as implementation "installed". */
    bool installed;
    /* Print results as lines for another agrad-bench to read (the
     * installed copy does), instead of tables: "WORKLOAD THREADS FWD_MS
     * BWD_MS STEP_MS", "ceiling WORKLOAD X", "peak WORKLOAD MB BASE_MB",
     * "optim SET IMPL THREADS MS". */
    bool peer;
} ab_options;

/* Runs the suite, prints its tables, writes autograd.json / autograd.csv
 * (and the plots' data) under out_dir. Returns the number of failed
 * measurements (wrong or failing backward), or -1 on a setup error. */
int bench_autograd_run(const ab_options *o);

/* Prints the workloads (for --list). */
void bench_autograd_list(void);

/* The optimizer workload (bench_optim.c): an Adam step on the MLP's
 * parameters and on one large parameter, against torch.optim. Returns the
 * number of failed measurements. */
int bench_optim_run(const ab_options *o);
void bench_optim_list(void);

/* Whether the comma-separated list holds name; a NULL list holds every
 * name (main.c). */
bool ab_in_list(const char *list, const char *name);

/* agrad-bench built against the installed library (bench_autograd.c), or
 * NULL when it cannot be built. */
const char *ab_installed_path(void);

/* The machine (bench_machine.c). ab_ceiling: how much faster two plain
 * threads finish a compute-bound loop than one (median of reps rounds of
 * about 15 ms); under 1.8 the second core was not there to be had, and
 * speedups measured then are not meaningful. Peak memory: ab_peak_reset
 * starts a stretch of the run (false where Linux cannot), ab_peak_mb is
 * the most memory resident since, ab_resident_mb what is resident now
 * (MB; -1 when unknown). */
#define AB_CEILING_MIN 1.8
double ab_ceiling(int reps);
bool ab_peak_reset(void);
double ab_peak_mb(void);
double ab_resident_mb(void);

#endif /* AGRAD_BENCH_AUTOGRAD_H */
