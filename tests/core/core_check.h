/* Assertions on tensors for the core tests; they report the caller's line. */
#ifndef CORE_CHECK_H
#define CORE_CHECK_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "agrad.h"

/* t holds exactly the n values vals (any dtype; compared as double). */
static inline void check_values(const ag_tensor *t, const double *vals, int64_t n, double tol, const char *file,
                                int line) {
    if (!t)
        _fail(file, line);
    if (ag_numel(t) != n) {
        print_error("numel %lld, expected %lld\n", (long long)ag_numel(t), (long long)n);
        _fail(file, line);
    }
    for (int64_t i = 0; i < n; i++) {
        double got = ag_get(t, i);
        if (!(fabs(got - vals[i]) <= tol)) {
            print_error("element %lld: got %.17g, expected %.17g\n", (long long)i, got, vals[i]);
            _fail(file, line);
        }
    }
}
#define assert_values(t, tol, ...)                                                                                     \
    do {                                                                                                               \
        const double v_[] = {__VA_ARGS__};                                                                             \
        check_values((t), v_, (int64_t)(sizeof v_ / sizeof v_[0]), (tol), __FILE__, __LINE__);                         \
    } while (0)

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

/* The last error has code `code` and its message starts with `prefix`. */
#define assert_error(code, prefix)                                                                                     \
    do {                                                                                                               \
        assert_int_equal(ag_last_status(), (code));                                                                    \
        if (strncmp(ag_last_error(), (prefix), strlen(prefix)) != 0)                                                   \
            print_error("message: \"%s\"\nexpected prefix: \"%s\"\n", ag_last_error(), (prefix));                      \
        assert_true(strncmp(ag_last_error(), (prefix), strlen(prefix)) == 0);                                          \
    } while (0)

/* A tensor of the given shape from double values, converted to dt. */
static inline ag_tensor *mk(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape, const double *v) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    if (dt == AG_FLOAT64)
        return ag_tensor_from(ctx, dt, ndim, shape, v);
    float f[n > 0 ? n : 1];
    for (int64_t i = 0; i < n; i++)
        f[i] = (float)v[i];
    return ag_tensor_from(ctx, dt, ndim, shape, f);
}
#define VEC(ctx, dt, ...)                                                                                              \
    mk((ctx), (dt), 1, (const int64_t[]){sizeof((const double[]){__VA_ARGS__}) / sizeof(double)},                      \
       (const double[]){__VA_ARGS__})

#endif
