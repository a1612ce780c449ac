/* Process- and thread-wide settings: grad mode (thread-local, as
 * torch.no_grad), the default number of threads and determinism. */
#include "internal.h"

#include <stdlib.h>
#include <unistd.h>

static _Thread_local bool ag__no_grad; /* false: grad mode on, the default */
static _Atomic int ag__num_threads;    /* 0: not set, use the default */
static _Atomic bool ag__deterministic;

bool ag__grad_enabled(void) { return !ag__no_grad; }
bool ag_is_grad_enabled(void) { return !ag__no_grad; }

bool ag_set_grad_enabled(bool enabled) {
    bool prev = !ag__no_grad;
    ag__no_grad = !enabled;
    return prev;
}

static int ag__default_threads(void) {
    const char *env = getenv("AG_NUM_THREADS");
    if (env && *env) {
        char *end;
        long n = strtol(env, &end, 10);
        if (*end == '\0' && n > 0 && n <= 1024)
            return (int)n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int ag_set_num_threads(int n) {
    if (n < 0 || n > 1024)
        return ag__error(AG_EINVAL, "ag_set_num_threads: %d threads is out of range (0 to 1024; 0 means the default)",
                         n);
    atomic_store_explicit(&ag__num_threads, n, memory_order_relaxed);
    return 0;
}

int ag_get_num_threads(void) {
    int n = atomic_load_explicit(&ag__num_threads, memory_order_relaxed);
    return n > 0 ? n : ag__default_threads();
}

void ag_set_deterministic(bool on) { atomic_store_explicit(&ag__deterministic, on, memory_order_relaxed); }
bool ag_is_deterministic(void) { return atomic_load_explicit(&ag__deterministic, memory_order_relaxed); }
