/* Tuning thresholds, in one place: when work is split over threads, and in
 * what pieces. None changes a result: outside deterministic mode a sum's
 * order may change its last bits, and in deterministic mode pieces depend
 * on shapes only. Each was set by measurements on a 2-core machine; see
 * bench/README.md before changing one. (Cache blocking of the reference
 * kernels stays next to them.) */
#ifndef AG_TUNING_H
#define AG_TUNING_H

/* ---- Backward --------------------------------------------------------------- */

/* A graph runs on several threads only when some node feeds two interior
 * nodes and its nodes' outputs hold at least this many elements in all
 * (the AG_PAR_MIN_WORK environment variable overrides it); smaller graphs
 * run on the calling thread. */
#define AG__PAR_MIN_WORK (1 << 15)
/* Leaves (and commit entries) are finished in parallel once a
 * multithreaded backward has this many, in pieces of AG__LEAF_GRAIN. */
#define AG__PAR_LEAVES 8
#define AG__LEAF_GRAIN 4
/* Deterministic sums of a node's contributions: chunks of AG__SUM_CHUNK
 * elements, run in parallel when at least AG__PAR_SUM_MIN elements are
 * added in all. */
#define AG__SUM_CHUNK 4096
#define AG__PAR_SUM_MIN (1 << 16)

/* ---- Kernels on the pool ------------------------------------------------------ */

/* Elementwise ops and their backward: split from AG__PAR_ELEMS elements
 * on, in chunks of AG__ELEM_CHUNK (transcendental functions cost several
 * times a memory pass: they split from AG__PAR_ELEMS / AG__VM_COST). */
#define AG__PAR_ELEMS (1 << 17)
#define AG__ELEM_CHUNK (1 << 15)
#define AG__VM_COST 8
/* Elements per call of a vector math function inside a kernel (on the
 * stack, in L1). */
#define AG__VBLOCK 256
/* A sum along fewer than AG__FEW_ROWS long rows is cut into at most
 * AG__MAX_ROW_PARTS parts per row, whose sums wait on the stack. */
#define AG__FEW_ROWS 16
#define AG__MAX_ROW_PARTS 64
#define AG__MAX_PARTS (AG__FEW_ROWS * AG__MAX_ROW_PARTS)
/* Sums over all elements: split from AG__PAR_REDUCE_MIN elements on, into
 * at most AG__MAX_PARTIALS partial sums. */
#define AG__PAR_REDUCE_MIN (1 << 17)
#define AG__MAX_PARTIALS 1024
/* Matrix products: from AG__PAR_GEMM_MIN multiply-adds on, when they may
 * run on several threads, split over the pool into one piece of C per
 * thread, cut on multiples of AG__GEMM_ALIGN rows or columns (at least
 * two of those to cut); on one thread, one call. (BLIS's Skylake-X
 * micro-tiles are 32 by 12 floats and 16 by 14 doubles.) 2^21 is 128^3:
 * about 15 us at 150 GFLOP/s, several times the cost of handing a piece
 * to an awake participant; forcing BLIS's packed algorithm there costs
 * nothing at one thread (bench/README.md, "Products over the pool"). */
#ifndef AG__PAR_GEMM_MIN
#define AG__PAR_GEMM_MIN (1 << 21)
#endif
#define AG__GEMM_ALIGN 32
/* Optimizer steps: parameters cut into chunks of AG__OPTIM_CHUNK
 * elements, run over the pool when a step updates AG__PAR_OPTIM_MIN
 * elements or more in all. */
#define AG__OPTIM_CHUNK (1 << 14)
#define AG__PAR_OPTIM_MIN (1 << 16)

#endif /* AG_TUNING_H */
