/* The random layered DAG of the scheduler's workloads, in one place so the
 * Lace peer program (bench/lace/) runs exactly the same graph: node i of
 * layer L > 0 has 1 to 3 distinct predecessors in layer L - 1, drawn by a
 * fixed xorshift sequence; layer 0 is the roots. Header-only: the peer
 * program is built outside meson. */
#ifndef AGRAD_BENCH_GRAPH_H
#define AGRAD_BENCH_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

enum { BENCH_GRAPH_MAX_PRED = 3 };

/* Fills the predecessor lists of an n-node layered DAG of the given width
 * in CSR form: node i's predecessors are pred[pred_off[i] .. pred_off[i+1]).
 * pred_off has n + 1 entries, pred room for n * BENCH_GRAPH_MAX_PRED. */
static inline void bench_graph_layered(int64_t n, int64_t width, int64_t *pred_off, int64_t *pred) {
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        pred_off[i] = m;
        if (i < width)
            continue;
        int64_t layer0 = (i / width - 1) * width;
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        int k = 1 + (int)(rng % BENCH_GRAPH_MAX_PRED);
        int64_t start = m;
        for (int j = 0; j < k; j++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            int64_t p = layer0 + (int64_t)(rng % (uint64_t)width);
            bool dup = false;
            for (int64_t q = start; q < m; q++)
                dup |= pred[q] == p;
            if (!dup)
                pred[m++] = p;
        }
    }
    pred_off[n] = m;
}

/* Successor lists from predecessor lists: succ_off (n + 1 entries) and succ
 * (pred_off[n] entries), each node's successors in increasing order. */
static inline void bench_graph_successors(int64_t n, const int64_t *pred_off, const int64_t *pred, int64_t *succ_off,
                                          int64_t *succ) {
    for (int64_t i = 0; i <= n; i++)
        succ_off[i] = 0;
    for (int64_t k = 0; k < pred_off[n]; k++)
        succ_off[pred[k] + 1]++;
    for (int64_t i = 0; i < n; i++)
        succ_off[i + 1] += succ_off[i];
    /* succ_off[i] is used as a cursor, then moved back by one slot. */
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = pred_off[i]; k < pred_off[i + 1]; k++)
            succ[succ_off[pred[k]]++] = i;
    for (int64_t i = n; i > 0; i--)
        succ_off[i] = succ_off[i - 1];
    succ_off[0] = 0;
}

#endif /* AGRAD_BENCH_GRAPH_H */
