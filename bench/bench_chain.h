/* The one-element chain benchmark (see bench_chain.c). */
#ifndef BENCH_CHAIN_H
#define BENCH_CHAIN_H

typedef struct {
    double fwd_ns_per_op;   /* median over repetitions */
    double bwd_ns_per_node; /* median over repetitions */
    int nodes;
} chain_result;

int bench_chain_run(int length, int reps, chain_result *res);

#endif
