/* The backward engine's private state, shared by engine.c (discovery, the
 * serial executor, ag_backward) and engine_par.c (the multithreaded
 * executors on the work-stealing pool and on OpenMP tasks).
 *
 * A task is one backward in progress. Each application thread keeps one task
 * per nesting depth (backward called from a hook nests), and a task keeps its
 * arrays, its scratch contexts and its slots between calls, so a repeated
 * backward of a same-shaped graph makes no heap calls once warm. */
#ifndef AG_ENGINE_H
#define AG_ENGINE_H

#include "core/internal.h"
#include "ws.h"

/* Recycled gradient blocks of one size each; a block of another size waits
 * for the end of the backward when every bin is taken. */
#define AG__NBINS 16

/* What one participant (a thread running nodes of this backward) owns for
 * the duration of the backward: scratch memory for gradients and
 * temporaries, the blocks given back to it, and its own gradient buffer for
 * each leaf. Only that participant touches it until the graph is done. */
typedef struct ag__slot {
    ag_ctx *scratch;
    struct {
        size_t bytes;
        void *head; /* singly linked through each block's first word */
    } bins[AG__NBINS];
    ag_tensor **leafbuf; /* nleaves entries (NULL until first used), in scratch */
} ag__slot;

typedef struct ag__task {
    /* ---- discovery (engine.c); per node, indexed by discovery order ---- */
    ag_node **nodes;
    int32_t *deps;     /* incoming edges from reachable nodes (serial: not yet delivered) */
    ag_tensor **bufs;  /* input buffer: the node's accumulated output gradient */
    int32_t *edge_off; /* node i's edges are edges[edge_off[i] ...], num_next of them */
    size_t n, cap;
    int32_t *edges; /* target index of each edge, -1 where no gradient flows */
    size_t nedges, ecap;
    ag_node **hkeys; /* node -> index, open addressing; hcap is a power of two */
    int32_t *hvals;
    size_t hcap;
    int32_t *heap; /* serial executor: ready nodes, a max-heap on seq */
    size_t heap_n;
    ag_ctx *scratch; /* the seed, and the serial executor's gradients */

    /* ---- parallel executors (engine_par.c) ---- */
    size_t pcap, pecap; /* capacity of the per-node and per-edge arrays below */
    int32_t *leafidx;   /* node -> leaf number, -1 for other nodes */
    int32_t *leaves;    /* leaf number -> node */
    size_t nleaves;
    ws_node *wsn;        /* one DAG node per graph node (leaves unused) */
    ws_node **succ;      /* per edge: the DAG node it releases */
    atomic_flag *locks;  /* guards bufs[j] for a node with several producers */
    ag_tensor **contrib; /* deterministic mode: each edge's contribution */
    int32_t *in_off;     /* n + 1: node j's incoming edges are in_edges[in_off[j] ...] */
    int32_t *in_edges;   /* in edge order */
    int32_t *in_src;     /* the node each incoming edge comes from */
    int32_t *topo;       /* OpenMP executor: interior nodes, producers first */
    int *slotmap;        /* participant index -> slot, -1 when none yet */
    ag__slot **slots;    /* kept between backwards */
    size_t nparts_cap;
    _Atomic int nslots;
    bool det, keep_graph;
    bool was_parallel; /* the last backward at this depth ran on the pool */
    _Atomic int err;   /* first error of this backward; later nodes skip */
    char errmsg[512];
    ws_dag dag;
} ag__task;

static inline bool ag__is_accumulate(const ag_node *n) { return n->kind == &ag__accumulate_grad_kind; }

/* engine.c */
void ag__heap_push(ag__task *t, int32_t i); /* ready nodes, latest created first */
int32_t ag__heap_pop(ag__task *t);
void *ag__grow(void *old, size_t old_bytes, size_t new_bytes);
void ag__add_into(ag_tensor *dst, const ag_tensor *src);
void ag__add_range(ag_tensor *dst, const ag_tensor *src, int64_t lo, int64_t hi); /* elements [lo, hi) */
int ag__accumulate(ag_tensor *owner, const ag_tensor *grad);                      /* into owner->grad, locked */
int ag__run_hooks(ag_tensor *owner, ag_tensor **grad);

/* engine_par.c */
/* True when some node hands gradients to two different non-leaf nodes (the
 * graph has parallelism among its interior nodes) and the graph is big
 * enough to gain from threads: its nodes' outputs hold at least
 * ag__par_min_work elements in all. Small graphs run on the calling thread,
 * in PyTorch's order. Tests lower the threshold to 0. */
extern _Atomic int64_t ag__par_min_work;
bool ag__graph_worth_parallel(const ag__task *t);
extern _Thread_local int ag__backward_threads; /* num_threads of this thread's running backward */
/* Wakes the sleeping workers of the pool for nthreads threads, so that
 * their wake-up overlaps the caller's discovery and set-up. */
void ag__wake_workers(int nthreads);
/* True when the calling thread is running nodes of a pool or OpenMP team. */
bool ag__in_worker(void);
/* Runs a discovered graph whose root buffer is seeded, on nthreads threads
 * (the caller included), with ex an ag_executor or AG__EXECUTOR_SERIAL: the
 * calling thread alone, in PyTorch's order, with the parallel executors'
 * gradient flow (deterministic mode uses it for graphs too small to split,
 * so that results do not depend on which path ran). Returns 0 or the first
 * error (message set). */
#define AG__EXECUTOR_SERIAL (-1)
int ag__par_backward(ag__task *t, int nthreads, int ex);

#endif /* AG_ENGINE_H */
