/* agrad-bench-chain: the one-element chain, agrad against PyTorch in the
 * same run. Prints forward ns per op and backward ns per node (medians),
 * and PyTorch's figures beside them when bench/pytorch/chain.py can run.
 * usage: agrad-bench-chain [--length N] [--reps N] [--no-pytorch] [--json FILE] */
#include "bench_chain.h"

#include <agrad.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef AGRAD_SOURCE_ROOT
#define AGRAD_SOURCE_ROOT "."
#endif

static int pytorch_chain(int length, int reps, double *fwd, double *bwd) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/pytorch/chain.py --length %d --reps %d 2>/dev/null",
             AGRAD_SOURCE_ROOT, length, reps);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[1024] = {0};
    char *got = fgets(line, sizeof line, p);
    int status = pclose(p);
    if (!got || status != 0)
        return -1;
    char *f = strstr(line, "\"fwd_ns_per_op\": "), *b = strstr(line, "\"bwd_ns_per_node\": ");
    if (!f || !b)
        return -1;
    *fwd = strtod(f + strlen("\"fwd_ns_per_op\": "), NULL);
    *bwd = strtod(b + strlen("\"bwd_ns_per_node\": "), NULL);
    return 0;
}

int main(int argc, char **argv) {
    int length = 1000, reps = 31;
    bool torch = true;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--length") && i + 1 < argc)
            length = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-pytorch"))
            torch = false;
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--length N] [--reps N] [--no-pytorch] [--json FILE]\n", argv[0]);
            return 2;
        }
    }
    if (length < 1 || reps < 1) {
        fprintf(stderr, "length and reps must be positive\n");
        return 2;
    }
    ag_set_num_threads(1);
    chain_result r;
    if (bench_chain_run(length, reps, &r))
        return 1;
    double tf = 0, tb = 0;
    bool have_torch = torch && pytorch_chain(length, reps, &tf, &tb) == 0;
    printf("one-element chain: y = (y * w) + b, %d links, %d nodes, median of %d runs, 1 thread\n", length, r.nodes,
           reps);
    printf("%-10s %16s %18s\n", "impl", "forward ns/op", "backward ns/node");
    printf("%-10s %16.1f %18.1f\n", "agrad", r.fwd_ns_per_op, r.bwd_ns_per_node);
    if (have_torch) {
        printf("%-10s %16.1f %18.1f\n", "pytorch", tf, tb);
        printf("%-10s %15.1fx %17.1fx\n", "ratio", tf / r.fwd_ns_per_op, tb / r.bwd_ns_per_node);
    } else {
        printf("pytorch: skipped (%s)\n", torch ? "python3-torch not available" : "--no-pytorch");
    }
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            perror(json);
            return 1;
        }
        fprintf(f,
                "[{\"workload\": \"chain1\", \"impl\": \"agrad\", \"threads\": 1, \"length\": %d, "
                "\"fwd_ns_per_op\": %.2f, \"bwd_ns_per_node\": %.2f}",
                length, r.fwd_ns_per_op, r.bwd_ns_per_node);
        if (have_torch)
            fprintf(f,
                    ",\n {\"workload\": \"chain1\", \"impl\": \"pytorch\", \"threads\": 1, \"length\": %d, "
                    "\"fwd_ns_per_op\": %.2f, \"bwd_ns_per_node\": %.2f}",
                    length, tf, tb);
        fprintf(f, "]\n");
        fclose(f);
    }
    return 0;
}
