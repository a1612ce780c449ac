/* What the hostile-input tests (sizes near INT64_MAX, empty tensors with
 * huge sizes, NULLs after an earlier failure, limits and failed
 * allocations) share beyond tests/common: sizes near the limits and empty
 * leaves. */
#ifndef AG_TESTS_HOSTILE_H
#define AG_TESTS_HOSTILE_H

#include "../common/check.h"

#define P62 ((int64_t)1 << 62)
#define P61 ((int64_t)1 << 61)
#define P60 ((int64_t)1 << 60)
#define P32 ((int64_t)1 << 32)

/* An empty leaf that requires grad. */
static inline ag_tensor *empty_leaf(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape) {
    ag_tensor *t = ag_zeros(ctx, dt, ndim, shape);
    if (t && ag_requires_grad_(t, true) != 0)
        return NULL;
    return t;
}

#endif
