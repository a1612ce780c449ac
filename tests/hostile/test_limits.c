/* The limit on one tensor's bytes: a tensor over it is refused with
 * AG_ENOMEM before anything is allocated (no arena bytes, no heap call);
 * AG_MAX_TENSOR_BYTES sets it from the environment; the default is what
 * the address space allows. */
#include "hostile.h"

#include <stdlib.h>
#include <sys/resource.h>

#include "core/internal.h"

static int setup(void **state) {
    *state = ag_ctx_new();
    ag_clear_error();
    return *state ? 0 : -1;
}

static int teardown(void **state) {
    ag_ctx_free(*state);
    unsetenv("AG_MAX_TENSOR_BYTES");
    ag_set_max_tensor_bytes(0);
    return 0;
}

static void test_over_the_limit_allocates_nothing(void **state) {
    ag_ctx *ctx = *state;
    ag_set_max_tensor_bytes(1024);
    assert_int_equal(ag_get_max_tensor_bytes(), 1024);
    assert_nonnull_ag(ag_zeros(ctx, AG_FLOAT32, 2, (int64_t[]){16, 16}));
    assert_nonnull_ag(ag_ones(ctx, AG_FLOAT64, 1, (int64_t[]){128}));
    size_t bytes = ag_ctx_bytes(ctx);
    expect_error(ag_zeros(ctx, AG_FLOAT32, 1, (int64_t[]){257}), AG_ENOMEM,
                 "can't allocate memory: you tried to allocate 1028 bytes, over the limit of 1024 bytes");
    expect_error(ag_randn(ctx, AG_FLOAT64, 2, (int64_t[]){129, 1}), AG_ENOMEM,
                 "can't allocate memory: you tried to allocate 1032 bytes");
    expect_error(ag_full(ctx, AG_FLOAT64, 3, (int64_t[]){1, 1, INT64_MAX / 8}, 1), AG_ENOMEM,
                 "can't allocate memory: you tried to allocate 9223372036854775800 bytes");
    assert_int_equal(ag_ctx_bytes(ctx), bytes);
    /* ops whose result is over it: refused the same way */
    ag_tensor *v = ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){1, 200});
    ag_tensor *vt = ag_transpose(ctx, v, 0, 1);
    assert_nonnull_ag(vt);
    bytes = ag_ctx_bytes(ctx);
    ag_tensor *ve = ag_expand(ctx, v, 2, (int64_t[]){2, 200}); /* a view: no elements of its own */
    assert_nonnull_ag(ve);
    bytes = ag_ctx_bytes(ctx);
    expect_error(ag_contiguous(ctx, ve), AG_ENOMEM, "can't allocate memory: you tried to allocate 1600 bytes");
    expect_error(ag_cat(ctx, (ag_tensor *[]){v, v}, 2, 1), AG_ENOMEM,
                 "can't allocate memory: you tried to allocate 1600 bytes");
    expect_error(ag_matmul(ctx, vt, v), AG_ENOMEM, "can't allocate memory: you tried to allocate 160000 bytes");
    assert_int_equal(ag_ctx_bytes(ctx), bytes);
    /* empty tensors have no bytes, whatever their sizes */
    assert_nonnull_ag(ag_zeros(ctx, AG_FLOAT64, 2, (int64_t[]){0, INT64_MAX}));
}

static void test_refused_before_any_heap_call(void **state) {
    ag_ctx *ctx = *state;
    ag_set_max_tensor_bytes(4096);
    assert_nonnull_ag(ag_zeros(ctx, AG_FLOAT32, 1, (int64_t[]){1}));
    size_t bytes = ag_ctx_bytes(ctx);
    uint64_t heap = ag__heap_calls();
    for (int64_t n = 1025; n < 1 << 20; n *= 3)
        expect_error(ag_zeros(ctx, AG_FLOAT32, 1, &n), AG_ENOMEM, "can't allocate memory");
    assert_int_equal(ag_ctx_bytes(ctx), bytes);
    assert_int_equal(ag__heap_calls(), heap);
}

static void test_limit_from_the_environment(void **state) {
    (void)state;
    const struct {
        const char *text;
        size_t bytes;
    } cases[] = {
        {"1048576", 1048576},    {"64k", 64 << 10},       {"3M", (size_t)3 << 20},
        {"2G", (size_t)2 << 30}, {"1T", (size_t)1 << 40},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("AG_MAX_TENSOR_BYTES", cases[i].text, 1);
        ag_set_max_tensor_bytes(0);
        assert_int_equal(ag_get_max_tensor_bytes(), cases[i].bytes);
    }
    /* not a size: the default */
    size_t dflt = (unsetenv("AG_MAX_TENSOR_BYTES"), ag_set_max_tensor_bytes(0), ag_get_max_tensor_bytes());
    const char *bad[] = {"", "-5", "12Q", "1kk", "k", "0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("AG_MAX_TENSOR_BYTES", bad[i], 1);
        ag_set_max_tensor_bytes(0);
        assert_int_equal(ag_get_max_tensor_bytes(), dflt);
    }
    /* more than a tensor can have: PTRDIFF_MAX */
    setenv("AG_MAX_TENSOR_BYTES", "99999999999T", 1);
    ag_set_max_tensor_bytes(0);
    assert_int_equal(ag_get_max_tensor_bytes(), PTRDIFF_MAX);
}

static void test_default_is_the_address_space(void **state) {
    (void)state;
    unsetenv("AG_MAX_TENSOR_BYTES");
    ag_set_max_tensor_bytes(0);
    size_t want = PTRDIFF_MAX;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
        want = (size_t)rl.rlim_cur;
    assert_int_equal(ag_get_max_tensor_bytes(), want);
    /* set returns the previous limit; more than PTRDIFF_MAX is PTRDIFF_MAX */
    assert_int_equal(ag_set_max_tensor_bytes(SIZE_MAX), want);
    assert_int_equal(ag_get_max_tensor_bytes(), PTRDIFF_MAX);
    assert_int_equal(ag_set_max_tensor_bytes(0), PTRDIFF_MAX);
    assert_int_equal(ag_get_max_tensor_bytes(), want);
}

/* The arena's own sizes (rounding, chunk headers) cannot wrap either. */
static void test_arena_sizes_that_wrap(void **state) {
    ag_ctx *ctx = *state;
    size_t huge[] = {SIZE_MAX, SIZE_MAX - 8, SIZE_MAX - 100, (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX - 10};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        ag_clear_error();
        assert_null(ag__ctx_alloc(ctx, huge[i]));
        assert_int_equal(ag_last_status(), AG_ENOMEM);
        assert_null(ag__ctx_alloc_shared(ctx, huge[i]));
        assert_int_equal(ag_last_status(), AG_ENOMEM);
    }
    assert_nonnull_ag(ag__ctx_alloc(ctx, 100));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_over_the_limit_allocates_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_before_any_heap_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_from_the_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_is_the_address_space, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arena_sizes_that_wrap, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
