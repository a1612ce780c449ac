/* Process- and thread-wide settings: grad mode (thread-local, as
 * torch.no_grad), the number of threads and determinism. AG_NUM_THREADS,
 * AG_DETERMINISTIC and AG_EXECUTOR are read here, once each. */
#include "core/internal.h"

#include <stdlib.h>

static _Thread_local bool ag__no_grad; /* false: grad mode on, the default */
static _Atomic int ag__num_threads;    /* 0: not set, use the default */

bool ag__grad_enabled(void) { return !ag__no_grad; }
bool ag_is_grad_enabled(void) { return !ag__no_grad; }

bool ag_set_grad_enabled(bool enabled) {
    bool prev = !ag__no_grad;
    ag__no_grad = !enabled;
    return prev;
}

/* The default: AG_NUM_THREADS when it is a number from 1 to
 * AG__MAX_THREADS, else the CPUs this process may run on (its affinity
 * mask and cgroup CPU quota). Read once; 0: not read yet. */
static _Atomic int ag__default_num_threads;

static int ag__default_threads(void) {
    int n = atomic_load_explicit(&ag__default_num_threads, memory_order_relaxed);
    if (AG__LIKELY(n > 0))
        return n;
    const char *env = getenv("AG_NUM_THREADS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v > 0 && v <= AG__MAX_THREADS)
            n = (int)v;
    }
    if (n <= 0)
        n = ag__cpu_count();
    if (n > AG__MAX_THREADS)
        n = AG__MAX_THREADS;
    atomic_store_explicit(&ag__default_num_threads, n, memory_order_relaxed);
    return n;
}

int ag_set_num_threads(int n) {
    if (n < 0 || n > AG__MAX_THREADS)
        return ag__error(AG_EINVAL, "ag_set_num_threads: %d threads is out of range (0 to %d; 0 means the default)", n,
                         AG__MAX_THREADS);
    atomic_store_explicit(&ag__num_threads, n, memory_order_relaxed);
    return 0;
}

int ag_get_num_threads(void) {
    int n = atomic_load_explicit(&ag__num_threads, memory_order_relaxed);
    return n > 0 ? n : ag__default_threads();
}

/* -1: not read yet from AG_DETERMINISTIC (1 turns it on). */
static _Atomic int ag__deterministic = -1;

void ag_set_deterministic(bool on) { atomic_store_explicit(&ag__deterministic, on, memory_order_relaxed); }

bool ag_is_deterministic(void) {
    int d = atomic_load_explicit(&ag__deterministic, memory_order_relaxed);
    if (AG__LIKELY(d >= 0))
        return d;
    const char *env = getenv("AG_DETERMINISTIC");
    int expected = -1;
    atomic_compare_exchange_strong_explicit(&ag__deterministic, &expected, env && strcmp(env, "1") == 0,
                                            memory_order_relaxed, memory_order_relaxed);
    return atomic_load_explicit(&ag__deterministic, memory_order_relaxed);
}

/* -1: not read yet from AG_EXECUTOR. */
static _Atomic int ag__executor = -1;

int ag_set_executor(ag_executor e) {
    if (e != AG_EXECUTOR_WS && e != AG_EXECUTOR_OPENMP)
        return ag__error(AG_EINVAL, "ag_set_executor: unknown executor %d", (int)e);
#ifndef _OPENMP
    if (e == AG_EXECUTOR_OPENMP)
        return ag__error(AG_EUNSUPPORTED, "ag_set_executor: this build of agrad has no OpenMP");
#endif
    atomic_store_explicit(&ag__executor, (int)e, memory_order_relaxed);
    return 0;
}

ag_executor ag_get_executor(void) {
    int e = atomic_load_explicit(&ag__executor, memory_order_relaxed);
    if (AG__LIKELY(e >= 0))
        return (ag_executor)e;
    const char *env = getenv("AG_EXECUTOR");
    e = AG_EXECUTOR_WS;
#ifdef _OPENMP
    if (env && strcmp(env, "openmp") == 0)
        e = AG_EXECUTOR_OPENMP;
#else
    (void)env;
#endif
    int expected = -1;
    atomic_compare_exchange_strong_explicit(&ag__executor, &expected, e, memory_order_relaxed, memory_order_relaxed);
    return (ag_executor)atomic_load_explicit(&ag__executor, memory_order_relaxed);
}
