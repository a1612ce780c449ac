/* The backward engine's private state and its parts:
 *   engine.c       ag_backward: root checks, discovery, the plan, commit
 *   runner.c       the one node runner, gradient buffers, leaves, commit
 *   exec_serial.c  the calling thread alone, in PyTorch's order
 *   exec_ws.c      the work-stealing pool, at most num_threads seats
 *   exec_omp.c     OpenMP tasks with depend clauses (AG_EXECUTOR=openmp)
 *   pool.c         the process-wide pool, and ag__parallel_for for kernels
 *
 * Every backward runs every node through ag__run_node, whatever executor
 * and thread count; an executor only decides when and on which
 * participant. A participant is the calling thread or a thread of the
 * pool holding a seat of this backward (ws_seat_index), numbered from 0;
 * each has a slot, touched by one thread at a time.
 *
 * A task is one backward in progress. Each application thread keeps one
 * task per nesting depth (backward called from a hook nests), and a task
 * keeps its arrays, slots and scratch memory between calls, so a repeated
 * backward of a same-shaped graph makes no heap calls once warm. */
#ifndef AG_ENGINE_H
#define AG_ENGINE_H

#include "core/internal.h"
#include "core/tuning.h"
#include "ws.h"

#include <pthread.h>

/* Given-back gradient blocks, one size per bin; a block of a size with no
 * bin (all taken) waits for the end of the backward. */
#define AG__NBINS 16

/* Per-node flags of a backward (ag__task.nflags). */
enum {
    AG__NF_CAPTURE = 1, /* grad(): its gradient is an output; backward(inputs=): retained into .grad */
    AG__NF_REACH = 2,   /* leads to an input of grad() / backward(inputs=) (while planning) */
    AG__NF_TARGET = 4,  /* an input of grad() / backward(inputs=) */
};

/* What one participant owns for the duration of a backward. */
typedef struct ag__slot {
    struct {
        size_t bytes;
        void *head; /* singly linked through each block's first word */
    } bins[AG__NBINS];
    ag_tensor **leafbuf; /* nleaves entries, its share of each leaf's gradient */
    ag_tensor **dinp;    /* max_next entries: a node's input-gradient buffers */
    bool *fresh;         /* max_next entries: which of them hold nothing yet */
    ag_ctx *tmp;         /* temporaries of backward functions; reset when used */
    /* The special runner (runner.c): two arrays of max_next gradients and
     * max_next flags, carved when the backward may need them. */
    ag_tensor **sp_a, **sp_b;
    bool *sp_need;
    /* create_graph: what this participant records in the gradients'
     * context is allocated here (ag__ctx_redirect), then handed to that
     * context as a whole when the backward ends (ag__ctx_adopt). */
    ag_ctx *gctx;
} ag__slot;

/* Scratch memory of a backward: one reservation, carved with an atomic
 * bump by every participant, recycled through the slots' bins. A
 * backward that may run on several participants reserves up front what it
 * could take without any recycling (ag__plan), so no schedule makes a warm
 * backward go back to the heap; the calling thread alone needs what it
 * needed last time for the same graph. Past the reservation, chunks come
 * from the heap under a lock, and the next backward reserves the sum. */
typedef struct ag__scratch {
    char *base;
    size_t cap;
    _Atomic size_t used;
    pthread_mutex_t lock; /* guards the overflow chunks below */
    struct ag__overflow *over;
    size_t over_bytes; /* carved from overflow chunks */
    size_t peak;       /* bytes carved by the last backward: what it touched */
} ag__scratch;

typedef struct ag__task {
    /* ---- discovery (engine.c); per node, indexed by discovery order ---- */
    ag_node **nodes;
    int32_t *deps;     /* incoming edges from reachable nodes */
    ag_tensor **bufs;  /* the node's gradient: its input buffer, then what it committed */
    int32_t *edge_off; /* node i's edges are edges[edge_off[i] ...], num_next of them */
    int32_t *leafidx;  /* leaf number of an AccumulateGrad node, else -1 */
    int32_t *heap;     /* discovery stack, then the serial executor's ready heap */
    size_t n, cap;
    int32_t *edges; /* target index of each edge, -1 where no gradient flows */
    size_t nedges, ecap;
    ag_node **hkeys; /* node -> index, open addressing; hcap is a power of two */
    int32_t *hvals;
    size_t hcap;
    int32_t *leaves; /* leaf number -> node */
    size_t nleaves;
    int max_next; /* most edges of one node */
    size_t heap_n;

    /* ---- executors on several participants; per node or per edge ---- */
    size_t pcap, pecap;
    ws_node *wsn;        /* the pool's DAG: one node per interior node */
    ws_node **succ;      /* per edge: the DAG node it releases */
    atomic_flag *locks;  /* guards bufs[j] of a node with several producers */
    ag_tensor **contrib; /* deterministic mode: each edge's contribution */
    int32_t *in_off;     /* n + 1: node j's incoming edges are in_edges[in_off[j] ...] */
    int32_t *in_edges;   /* in edge order */
    int32_t *in_src;     /* the node each incoming edge comes from */
    int32_t *topo;       /* OpenMP: interior nodes, producers first */

    /* ---- what this backward computes (engine.c) ---- */
    uint8_t *nflags;     /* per node: AG__NF_* */
    int32_t *aux;        /* per node: planning */
    bool special;        /* some node needs the special runner (below) */
    bool graph;          /* create_graph: gradients are recorded ops in gctx */
    bool anomaly;        /* anomaly mode: NaN checks, forward stacks in errors */
    bool accumulate;     /* into .grad (backward), or into captures (grad) */
    bool groot;          /* node 0 is a graph root made for several roots or inputs */
    ag_ctx *gctx;        /* create_graph: where gradients with history live */
    ag_node *groot_node; /* the graph root: heap memory kept between backwards */
    size_t groot_bytes;
    ag_tensor **gseeds; /* its seeds, n of them after the node in the same block */

    /* ---- the run ---- */
    ag__slot **slots; /* nslots of them, kept between backwards */
    int nslots, nparts;
    bool inited; /* the task's lock exists (its first backward began) */
    bool det, keep_graph;
    bool shared;             /* nparts > 1: buffers are handed over under locks */
    bool was_parallel;       /* the last backward at this depth ran on the pool */
    int32_t *commit;         /* nodes whose bufs[] go into their tensor's .grad */
    _Atomic int32_t ncommit; /* entries of commit */
    ag_tensor **fresh;       /* per commit entry: a .grad made up front, or NULL */
    _Atomic int err;         /* first error of this backward; later nodes skip */
    char errmsg[AG__ERRMSG_MAX];
    ag__scratch scratch;
    ws_dag dag;
} ag__task;

static inline bool ag__is_accumulate(const ag_node *n) { return n->kind == &ag__accumulate_grad_kind; }

/* ---- engine.c -------------------------------------------------------------- */

void *ag__grow(void *old, size_t old_bytes, size_t new_bytes); /* heap calls, counted */

/* ---- runner.c -------------------------------------------------------------- */

/* The special runner: nodes that make their own gradients (custom
 * functions, the graph root), nodes with node hooks, captured nodes, every
 * node under anomaly mode (NaN checks, per-input buffers) and, in
 * create_graph, every node (gradients made by backward_graph). */
int ag__run_node_special(ag__task *t, int32_t idx, ag__slot *sl);
/* The graph root's kind, and the node of the graph root. */
extern const ag__node_kind ag__graph_root_kind;

/* Runs node idx on slot sl: gathers its gradient, runs its tensor hooks
 * (keeping a retained grad for the commit), gives each input's producer a
 * buffer, calls the node's backward, hands the buffers on and gives back
 * what no one reads any more. Returns 0 or an error code (message set).
 * Does not release successors: that is the executor's business. */
int ag__run_node(ag__task *t, int32_t idx, ag__slot *sl);
/* Leaf l's gradient: its participants' shares (or, deterministic, its
 * contributions in edge order) summed, its hooks run on the sum; kept in
 * bufs[] for the commit. */
int ag__finish_leaf(ag__task *t, int32_t l, ag__slot *sl);
/* Every leaf, in pieces: fn of ag__parallel_for / ws_parallel_for. */
void ag__finish_leaves(void *task, int64_t lo, int64_t hi);
/* Makes every .grad the commit will need (nothing is written): 0 or
 * AG_ENOMEM. Then ag__commit_range adds the gradients in, which cannot
 * fail, over commit entries [lo, hi). */
int ag__commit_prepare(ag__task *t);
void ag__commit_range(void *task, int64_t lo, int64_t hi);
/* The first error of the backward wins; later nodes see err and skip. */
void ag__fail(ag__task *t, int rc);
/* Runs the node with tracing when on; rc recorded with ag__fail. */
void ag__run_node_traced(ag__task *t, int32_t idx, ag__slot *sl);
int ag__run_hooks(ag_tensor *owner, ag_tensor **grad, ag_tensor **retained);
void ag__add_range(ag_tensor *dst, const ag_tensor *src, int64_t lo, int64_t hi); /* elements [lo, hi) */
/* A gradient buffer shaped like `like`, from sl's bins or the scratch:
 * zeroed, or with whatever the block held (NaN while ag__poison_fresh is
 * set: tests set it so a backward that leaves part of a fresh buffer
 * unwritten shows). */
ag_tensor *ag__grad_buffer(ag__task *t, ag__slot *sl, const ag_tensor *like, bool zero);
extern _Atomic bool ag__poison_fresh;
void *ag__scratch_carve(ag__scratch *s, size_t bytes);
/* Scratch between backwards: every block back at once; heap calls only
 * to fold overflow chunks into one reservation. */
void ag__scratch_reset(ag__scratch *s);
int ag__scratch_reserve(ag__scratch *s, size_t bytes);
void ag__scratch_free(ag__scratch *s);
/* Slots 0 .. n - 1 exist (with their arrays) for a run on n participants. */
int ag__slots_prepare(ag__task *t, int n);

/* ---- executors ------------------------------------------------------------- */

/* Each runs the planned graph whose root buffer is seeded, finishes the
 * leaves and commits; returns 0 or the first error (message set), with
 * no .grad changed on error. */
int ag__exec_serial(ag__task *t);
int ag__exec_ws(ag__task *t, int nthreads);
int ag__exec_omp(ag__task *t, int nthreads);
/* Incoming edges of every node, in edge order (deterministic mode, OpenMP). */
void ag__build_in_edges(ag__task *t);
/* Per-node and per-edge arrays of the executors on several participants. */
int ag__reserve_shared(ag__task *t);

/* ---- pool.c ---------------------------------------------------------------- */

/* The process's pool, grown to nthreads - 1 workers (so with its caller,
 * nthreads threads), or NULL with *ws_rc set; sets no error. */
ws_pool *ag__pool_get(int nthreads, int *ws_rc);
/* agrad's code for a scheduler error, with the message set. */
int ag__ws_error(int ws_rc, const char *what);
/* Wakes up to nthreads - 1 sleeping workers, so that their wake-up
 * overlaps the caller's discovery and set-up. */
void ag__wake_workers(int nthreads);
/* True when the calling thread runs tasks of a pool or OpenMP team. */
bool ag__in_worker(void);
extern _Thread_local int ag__backward_threads; /* num_threads of this thread's running backward */
/* The AG_PAR_MIN_WORK threshold (tests lower it to 0). */
extern _Atomic int64_t ag__par_min_work;
int64_t ag__min_work(void);
/* Scratch bytes the last backward of this thread touched (at this
 * thread's current nesting depth): for memory measurements. */
size_t ag__backward_scratch_peak(void);

#endif /* AG_ENGINE_H */
