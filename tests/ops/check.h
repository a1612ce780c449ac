/* Shared by the op tests: running an op by name (so one table of cases
 * drives the gradient check, the golden test and the error test) and
 * tensor comparison that reports the caller's line. */
#ifndef AG_TESTS_OPS_CHECK_H
#define AG_TESTS_OPS_CHECK_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "agrad.h"

/* The op `op` applied to in[0..] with its scalar/int arguments a0, a1
 * (scalar, dim and keepdim, reshape rows and columns, transpose dims). */
static inline ag_tensor *run_op(ag_ctx *ctx, const char *op, ag_tensor **in, double a0, double a1) {
    if (!strcmp(op, "add"))
        return ag_add(ctx, in[0], in[1]);
    if (!strcmp(op, "sub"))
        return ag_sub(ctx, in[0], in[1]);
    if (!strcmp(op, "mul"))
        return ag_mul(ctx, in[0], in[1]);
    if (!strcmp(op, "div"))
        return ag_div(ctx, in[0], in[1]);
    if (!strcmp(op, "add_scalar"))
        return ag_add_scalar(ctx, in[0], a0);
    if (!strcmp(op, "mul_scalar"))
        return ag_mul_scalar(ctx, in[0], a0);
    if (!strcmp(op, "pow_scalar"))
        return ag_pow_scalar(ctx, in[0], a0);
    if (!strcmp(op, "neg"))
        return ag_neg(ctx, in[0]);
    if (!strcmp(op, "sqrt"))
        return ag_sqrt(ctx, in[0]);
    if (!strcmp(op, "exp"))
        return ag_exp(ctx, in[0]);
    if (!strcmp(op, "log"))
        return ag_log(ctx, in[0]);
    if (!strcmp(op, "tanh"))
        return ag_tanh(ctx, in[0]);
    if (!strcmp(op, "sigmoid"))
        return ag_sigmoid(ctx, in[0]);
    if (!strcmp(op, "relu"))
        return ag_relu(ctx, in[0]);
    if (!strcmp(op, "sin"))
        return ag_sin(ctx, in[0]);
    if (!strcmp(op, "cos"))
        return ag_cos(ctx, in[0]);
    if (!strcmp(op, "log1p"))
        return ag_log1p(ctx, in[0]);
    if (!strcmp(op, "pow"))
        return ag_pow(ctx, in[0], in[1]);
    if (!strcmp(op, "sum"))
        return ag_sum(ctx, in[0]);
    if (!strcmp(op, "sum_dim"))
        return ag_sum_dim(ctx, in[0], (int)a0, a1 != 0);
    if (!strcmp(op, "mean"))
        return ag_mean(ctx, in[0]);
    if (!strcmp(op, "mean_dim"))
        return ag_mean_dim(ctx, in[0], (int)a0, a1 != 0);
    if (!strcmp(op, "max"))
        return ag_max(ctx, in[0]);
    if (!strcmp(op, "matmul"))
        return ag_matmul(ctx, in[0], in[1]);
    if (!strcmp(op, "reshape"))
        return ag_reshape(ctx, in[0], 2, (int64_t[]){(int64_t)a0, (int64_t)a1});
    if (!strcmp(op, "transpose"))
        return ag_transpose(ctx, in[0], (int)a0, (int)a1);
    if (!strcmp(op, "clone"))
        return ag_clone(ctx, in[0]);
    fail_msg("unknown op %s", op);
    return NULL;
}

/* a and b have the same dtype and shape and |a - b| <= atol + rtol |b|
 * everywhere (equal infinities and nan matching nan pass); what names the
 * comparison in the failure message. */
static inline void check_tensor_close(const ag_tensor *a, const ag_tensor *b, double rtol, double atol,
                                      const char *what, const char *file, int line) {
    if (!a || !b) {
        print_error("%s: %s is NULL (%s)\n", what, a ? "expected" : "result", ag_last_error());
        _fail(file, line);
    }
    if (ag_tensor_dtype(a) != ag_tensor_dtype(b)) {
        print_error("%s: dtype differs\n", what);
        _fail(file, line);
    }
    if (ag_ndim(a) != ag_ndim(b) || ag_numel(a) != ag_numel(b)) {
        print_error("%s: shape differs (ndim %d vs %d, numel %lld vs %lld)\n", what, ag_ndim(a), ag_ndim(b),
                    (long long)ag_numel(a), (long long)ag_numel(b));
        _fail(file, line);
    }
    for (int d = 0; d < ag_ndim(a); d++)
        if (ag_size(a, d) != ag_size(b, d)) {
            print_error("%s: size of dim %d differs\n", what, d);
            _fail(file, line);
        }
    for (int64_t i = 0; i < ag_numel(a); i++) {
        double x = ag_get(a, i), y = ag_get(b, i);
        if (!(x == y || fabs(x - y) <= atol + rtol * fabs(y)) && !(isnan(x) && isnan(y))) {
            print_error("%s: element %lld: got %.17g, expected %.17g\n", what, (long long)i, x, y);
            _fail(file, line);
        }
    }
}
#define assert_tensor_close_msg(a, b, rtol, atol, what)                                                                \
    check_tensor_close((a), (b), (rtol), (atol), (what), __FILE__, __LINE__)
#define assert_tensor_close(a, b, rtol, atol) check_tensor_close((a), (b), (rtol), (atol), #a, __FILE__, __LINE__)

/* A group setup for the op tests: every gradient buffer a backward is
 * given to write (not add into) starts as NaN (autograd/runner.c), so a
 * backward that leaves part of one unwritten fails the comparisons. */
extern _Atomic bool ag__poison_fresh;
static inline int poison_fresh_gradients(void **state) {
    (void)state;
    atomic_store(&ag__poison_fresh, true);
    return 0;
}

#endif /* AG_TESTS_OPS_CHECK_H */
