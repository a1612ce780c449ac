/* Which ops return views and which copies, as include/agrad.h says at each
 * declaration: a write through a view reaches its input and bumps the
 * shared version counter; a write to a copy does neither. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agrad.h"

enum { VIEW, COPY };

static void check_alias(ag_tensor *a, ag_tensor *r, int kind, const char *op) {
    if (!r)
        fail_msg("%s: %s", op, ag_last_error());
    double before = ag_get(a, 0);
    uint32_t version = ag_version(a);
    float *d = ag_mutable_data_ptr(r);
    assert_non_null(d);
    d[0] = 42.0f;
    if (kind == VIEW && (ag_get(a, 0) != 42.0 || ag_version(a) == version))
        fail_msg("%s should return a view: input %g, version %u -> %u", op, ag_get(a, 0), version, ag_version(a));
    if (kind == COPY && (ag_get(a, 0) != before || ag_version(a) != version))
        fail_msg("%s should return a copy: input %g (was %g), version %u -> %u", op, ag_get(a, 0), before, version,
                 ag_version(a));
}

static void test_views_and_copies_as_documented(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    int64_t s23[2] = {2, 3};
    ag_tensor *a = ag_randn(ctx, AG_FLOAT32, 2, s23);
    check_alias(a, ag_reshape(ctx, a, 1, (int64_t[]){6}), VIEW, "ag_reshape");
    check_alias(a, ag_detach(a), VIEW, "ag_detach");
    check_alias(a, ag_transpose(ctx, a, 0, 1), COPY, "ag_transpose");
    check_alias(a, ag_narrow(ctx, a, 0, 0, 1), COPY, "ag_narrow");
    ag_tensor *col = ag_randn(ctx, AG_FLOAT32, 2, (int64_t[]){2, 1});
    check_alias(col, ag_expand(ctx, col, 2, (int64_t[]){2, 4}), COPY, "ag_expand");
    check_alias(a, ag_clone(ctx, a), COPY, "ag_clone");
    check_alias(a, ag_index_select(ctx, a, 0, (const int64_t[]){0}, 1), COPY, "ag_index_select");
    check_alias(a, ag_cat(ctx, (ag_tensor *[]){a, a}, 2, 0), COPY, "ag_cat");
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_views_and_copies_as_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
