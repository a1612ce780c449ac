/* Assertions shared by the hostile-input tests (sizes near INT64_MAX, empty
 * tensors with huge sizes, NULLs after an earlier failure, limits and
 * failed allocations). Each reports the caller's line. */
#ifndef AG_TESTS_HOSTILE_H
#define AG_TESTS_HOSTILE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "agrad.h"

#define P62 ((int64_t)1 << 62)
#define P61 ((int64_t)1 << 61)
#define P60 ((int64_t)1 << 60)
#define P32 ((int64_t)1 << 32)

/* t is NULL and the error is `code` with a message that starts with prefix. */
static inline void check_error(const void *t, int code, const char *prefix, const char *file, int line) {
    if (t) {
        print_error("expected an error \"%s\", got a result\n", prefix);
        _fail(file, line);
    }
    if (ag_last_status() != code || strncmp(ag_last_error(), prefix, strlen(prefix)) != 0) {
        print_error("error %d \"%s\", expected %d \"%s...\"\n", ag_last_status(), ag_last_error(), code, prefix);
        _fail(file, line);
    }
    ag_clear_error();
}
#define expect_error(t, code, prefix) check_error((t), (code), (prefix), __FILE__, __LINE__)

/* rc is `code` and the message starts with prefix. */
static inline void check_rc(int64_t rc, int code, const char *prefix, const char *file, int line) {
    if (rc != code || ag_last_status() != code || strncmp(ag_last_error(), prefix, strlen(prefix)) != 0) {
        print_error("returned %lld, error %d \"%s\", expected %d \"%s...\"\n", (long long)rc, ag_last_status(),
                    ag_last_error(), code, prefix);
        _fail(file, line);
    }
    ag_clear_error();
}
#define expect_rc(rc, code, prefix) check_rc((rc), (code), (prefix), __FILE__, __LINE__)

/* t is a tensor (not NULL) of the given shape. */
static inline void check_shape(const ag_tensor *t, int ndim, const int64_t *shape, const char *file, int line) {
    if (!t) {
        print_error("NULL tensor: %s\n", ag_last_error());
        _fail(file, line);
    }
    if (ag_ndim(t) != ndim) {
        print_error("ndim %d, expected %d\n", ag_ndim(t), ndim);
        _fail(file, line);
    }
    for (int d = 0; d < ndim; d++)
        if (ag_size(t, d) != shape[d]) {
            print_error("size %lld at dim %d, expected %lld\n", (long long)ag_size(t, d), d, (long long)shape[d]);
            _fail(file, line);
        }
}
#define SHAPE(...) (sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), ((const int64_t[]){__VA_ARGS__})
#define expect_shape(t, ...) check_shape((t), SHAPE(__VA_ARGS__), __FILE__, __LINE__)

#define assert_ok(rc)                                                                                                  \
    do {                                                                                                               \
        int rc_ = (rc);                                                                                                \
        if (rc_ != 0)                                                                                                  \
            print_error("%s -> %d: %s\n", #rc, rc_, ag_last_error());                                                  \
        assert_int_equal(rc_, 0);                                                                                      \
    } while (0)

#define assert_nonnull_ag(p)                                                                                           \
    do {                                                                                                               \
        if (!(p))                                                                                                      \
            print_error("%s is NULL: %s\n", #p, ag_last_error());                                                      \
        assert_non_null(p);                                                                                            \
    } while (0)

/* An empty leaf that requires grad. */
static inline ag_tensor *empty_leaf(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape) {
    ag_tensor *t = ag_zeros(ctx, dt, ndim, shape);
    if (t && ag_requires_grad_(t, true) != 0)
        return NULL;
    return t;
}

#endif
