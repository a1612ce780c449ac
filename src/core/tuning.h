/* Tuning thresholds, in one place: when work is split over threads, and in
 * what pieces. None changes a result (outside deterministic mode, a sum's
 * order may change its last bits; in deterministic mode pieces depend on
 * shapes only). Each was set by measurements on a 2-core machine; see
 * bench/README.md before changing one. */
#ifndef AG_TUNING_H
#define AG_TUNING_H

/* ---- Backward --------------------------------------------------------------- */

/* A graph runs on several threads only when some node feeds two interior
 * nodes and its nodes' outputs hold at least this many elements in all
 * (AG_PAR_MIN_WORK overrides it); smaller graphs run on the calling thread. */
#define AG_TUNE_PAR_MIN_WORK (1 << 15)
/* Leaves finished in parallel once a multithreaded backward has at least
 * this many, in pieces of this many leaves. */
#define AG_TUNE_PAR_LEAVES 8
#define AG_TUNE_LEAF_GRAIN 4
/* Deterministic sums of a node's contributions: fixed chunks of elements,
 * run in parallel when at least AG_TUNE_PAR_SUM_MIN elements are added. */
#define AG_TUNE_SUM_CHUNK 4096
#define AG_TUNE_PAR_SUM_MIN (1 << 16)

/* ---- Kernels on the pool ----------------------------------------------------- */

/* Unary ops (tanh, exp, ...) and their backward: split from this many
 * elements on, in chunks of AG_TUNE_ELEM_CHUNK. */
#define AG_TUNE_PAR_ELEMS (1 << 17)
#define AG_TUNE_ELEM_CHUNK (1 << 15)
/* Sums over all elements: split from this many elements on, into at most
 * this many partial sums. */
#define AG_TUNE_PAR_REDUCE_MIN (1 << 17)
#define AG_TUNE_MAX_PARTIALS 1024
/* Matrix products: tiled over the pool from this many multiply-adds on,
 * in tiles of C of TILE_M rows or TILE_N columns. */
#define AG_TUNE_PAR_GEMM_MIN (1 << 22)
#define AG_TUNE_TILE_M 64
#define AG_TUNE_TILE_N 128

#endif /* AG_TUNING_H */
