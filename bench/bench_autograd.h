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
} ab_options;

/* Runs the suite, prints its tables, writes autograd.json / autograd.csv
 * (and the plots' data) under out_dir. Returns the number of failed
 * measurements (wrong or failing backward), or -1 on a setup error. */
int bench_autograd_run(const ab_options *o);

/* Prints the workloads (for --list). */
void bench_autograd_list(void);

#endif /* AGRAD_BENCH_AUTOGRAD_H */
