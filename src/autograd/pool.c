/* The process's one work-stealing pool, shared by every backward and every
 * kernel that splits its work: made on first use, grown to the largest
 * thread count asked for, never shrunk, so changing thread counts never
 * starts more threads than the largest count. A backward or kernel on n
 * threads uses at most n of its participants, the caller included
 * (ws_run_capped). Also the CPU count behind the default thread count. */
#include "autograd/engine.h"

#ifdef AG_HAVE_OPENMP
#include <omp.h>
#endif

static ws_pool *_Atomic ag__the_pool;
static pthread_mutex_t ag__pool_lock = PTHREAD_MUTEX_INITIALIZER;

int ag__cpu_count(void) { return ws_cpu_count(); }

ws_pool *ag__pool_get(int nthreads, int *ws_rc) {
    ws_pool *p = atomic_load_explicit(&ag__the_pool, memory_order_acquire);
    if (AG__LIKELY(p && ws_pool_num_threads(p) >= nthreads - 1))
        return p;
    int rc = 0;
    pthread_mutex_lock(&ag__pool_lock);
    p = atomic_load_explicit(&ag__the_pool, memory_order_relaxed);
    if (!p) {
        ws_pool_opts o = WS_POOL_OPTS_INIT;
        o.num_threads = nthreads - 1;
        if ((rc = ws_pool_create(&p, &o)) == 0)
            atomic_store_explicit(&ag__the_pool, p, memory_order_release);
    } else {
        rc = ws_pool_grow(p, nthreads - 1);
    }
    pthread_mutex_unlock(&ag__pool_lock);
    if (rc) {
        *ws_rc = rc;
        return NULL;
    }
    return p;
}

int ag__ws_error(int ws_rc, const char *what) {
    int code = ws_rc == WS_ENOMEM || ws_rc == WS_EAGAIN ? AG_ENOMEM : AG_ESTATE;
    return ag__error(code, "%s: %s", what, ws_strerror(ws_rc));
}

_Thread_local int ag__backward_threads; /* set by ag_backward while it runs */

int ag__kernel_threads(void) { return ag__backward_threads > 0 ? ag__backward_threads : ag_get_num_threads(); }

typedef struct {
    int64_t n, grain;
    ag__range_fn fn;
    void *arg;
} ag__pfor_job;

static void ag__pfor_task(ws_task *wt) {
    ag__pfor_job *j = wt->arg;
    if (ws_parallel_for(NULL, 0, j->n, j->grain, j->fn, j->arg) != 0)
        j->fn(j->arg, 0, j->n);
}

void ag__parallel_for(int64_t n, int64_t grain, ag__range_fn fn, void *arg) {
    if (n <= grain || n <= 1) {
        fn(arg, 0, n);
        return;
    }
#ifdef AG_HAVE_OPENMP
    if (omp_in_parallel()) { /* inside the OpenMP executor: no second team */
        fn(arg, 0, n);
        return;
    }
#endif
    if (ws_current_pool()) { /* a node on the pool: within its seats */
        if (ws_parallel_for(NULL, 0, n, grain, fn, arg) != 0)
            fn(arg, 0, n);
        return;
    }
    int nt = ag__kernel_threads(), wrc;
    ws_pool *pool = nt > 1 ? ag__pool_get(nt, &wrc) : NULL;
    ag__pfor_job job = {n, grain, fn, arg};
    if (!pool || ws_run_capped(pool, nt, ag__pfor_task, &job) != 0)
        fn(arg, 0, n); /* no threads to be had: the work runs here */
}

void ag__wake_workers(int nthreads) {
    int wrc;
    ws_pool *p = nthreads > 1 ? ag__pool_get(nthreads, &wrc) : NULL;
    if (p)
        ws_pool_wake(p, nthreads - 1);
}

bool ag__in_worker(void) {
#ifdef AG_HAVE_OPENMP
    if (omp_in_parallel())
        return true;
#endif
    return ws_current_pool() != NULL;
}
