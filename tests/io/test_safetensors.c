/* ag_save / ag_load: round trips of every shape agrad has, the writer's
 * refusals and its atomic replace, and the reader against malformed,
 * truncated and hostile files: each must give its error and message, leave
 * every output NULL, allocate nothing in the context and nothing bigger
 * than the file. Run under ASan with an allocation cap (see meson.build). */
#include "io_check.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>

#include "core/safetensors.h"

static char scratch[4096];

static int setup(void **state) {
    (void)state;
    make_scratch(scratch, sizeof scratch);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove_scratch(scratch);
    return 0;
}

static const char *path_in(const char *name) {
    static char p[4096 + 64];
    snprintf(p, sizeof p, "%s/%s", scratch, name);
    return p;
}

/* numel values of dtype dt from a seeded LCG, with special values mixed in. */
static ag_tensor *filled(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape, uint64_t seed) {
    ag_tensor *t = ag_zeros(ctx, dt, ndim, shape);
    assert_non_null(t);
    static const double special[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, 1e-310, 1e300, -1.0 / 3};
    uint64_t s = seed * 6364136223846793005u + 1442695040888963407u;
    void *p = ag_mutable_data_ptr(t);
    for (int64_t i = 0; i < ag_numel(t); i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        double v = i % 5 == 3 ? special[(s >> 33) % 8] : ((double)(s >> 11) / 9007199254740992.0 - 0.5) * 1e3;
        if (dt == AG_FLOAT32)
            ((float *)p)[i] = (float)v;
        else
            ((double *)p)[i] = v;
    }
    return t;
}

/* ---- Round trips ----------------------------------------------------------------- */

static void test_roundtrip_every_shape(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new(), *ctx2 = ag_ctx_new();
    enum { N = 10 };
    const char *names[N] = {"w32",     "w64",     "scalar32", "scalar64", "empty32",
                            "empty64", "eight32", "eight64",  "row",      "big"};
    ag_tensor *ts[N] = {
        filled(ctx, AG_FLOAT32, 2, (int64_t[]){3, 5}, 1),
        filled(ctx, AG_FLOAT64, 2, (int64_t[]){5, 3}, 2),
        ag_scalar(ctx, AG_FLOAT32, -2.5),
        ag_scalar(ctx, AG_FLOAT64, 1e-300),
        ag_zeros(ctx, AG_FLOAT32, 2, (int64_t[]){0, 4}),
        ag_zeros(ctx, AG_FLOAT64, 3, (int64_t[]){2, 0, 1000000}),
        filled(ctx, AG_FLOAT32, 8, (int64_t[]){1, 2, 1, 3, 1, 2, 2, 1}, 3),
        filled(ctx, AG_FLOAT64, 8, (int64_t[]){2, 1, 2, 1, 2, 1, 2, 3}, 4),
        filled(ctx, AG_FLOAT32, 1, (int64_t[]){7}, 5),
        filled(ctx, AG_FLOAT64, 1, (int64_t[]){100003}, 6),
    };
    assert_ok(ag_requires_grad_(ts[0], true)); /* history and flags are not saved */
    assert_ok(ag_save(path_in("all.safetensors"), names, ts, N));

    /* Everything, in another order than saved, into another context. */
    int order[N] = {9, 3, 0, 7, 5, 1, 8, 2, 6, 4};
    const char *want[N];
    ag_tensor *out[N];
    for (int i = 0; i < N; i++)
        want[i] = names[order[i]];
    assert_ok(ag_load(ctx2, path_in("all.safetensors"), want, out, N));
    for (int i = 0; i < N; i++) {
        assert_same_tensor(out[i], ts[order[i]]);
        assert_false(ag_requires_grad(out[i]));
        assert_true(ag_is_leaf(out[i]));
        assert_null(ag_grad_fn(out[i]));
    }
    assert_true(ag_item(out[1]) == 1e-300);
    assert_true(ag_item(out[7]) == -2.5);
    assert_int_equal(ag_size(out[4], 2), 1000000);

    /* A subset, one name twice. */
    ag_tensor *two[3];
    assert_ok(ag_load(ctx2, path_in("all.safetensors"), (const char *[]){"row", "scalar32", "row"}, two, 3));
    assert_same_tensor(two[0], ts[8]);
    assert_same_tensor(two[2], ts[8]);
    assert_true(two[0] != two[2]);
    assert_true(ag_item(two[1]) == -2.5);

    /* n = 0 only checks the file. */
    assert_ok(ag_load(ctx2, path_in("all.safetensors"), NULL, NULL, 0));
    ag_ctx_free(ctx);
    ag_ctx_free(ctx2);
}

static void test_roundtrip_names(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    const char *names[] = {"",
                           "layer.0/weight",
                           "caf\xc3\xa9 \xf0\x9f\x98\x80",
                           "quote\"back\\slash",
                           "ctl\x01\x1f\t\n\r\b\f",
                           "\x7f",
                           "__metadata",
                           "a b"};
    enum { N = sizeof names / sizeof names[0] };
    ag_tensor *ts[N], *out[N];
    for (int i = 0; i < N; i++)
        ts[i] = filled(ctx, i % 2 ? AG_FLOAT64 : AG_FLOAT32, 1, (int64_t[]){i + 1}, (uint64_t)i);
    assert_ok(ag_save(path_in("names.safetensors"), names, ts, N));
    assert_ok(ag_load(ctx, path_in("names.safetensors"), names, out, N));
    for (int i = 0; i < N; i++)
        assert_same_tensor(out[i], ts[i]);
    ag_ctx_free(ctx);
}

/* The same tensors give the same bytes, whatever order they are given in;
 * the header is padded to 8 bytes so every tensor's data is aligned. */
static void test_save_is_deterministic(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *a = filled(ctx, AG_FLOAT32, 1, (int64_t[]){3}, 1), *b = filled(ctx, AG_FLOAT64, 2, (int64_t[]){2, 2}, 2),
              *c = filled(ctx, AG_FLOAT32, 0, NULL, 3);
    assert_ok(ag_save(path_in("x.safetensors"), (const char *[]){"a", "b", "c"}, (ag_tensor *[]){a, b, c}, 3));
    assert_ok(ag_save(path_in("y.safetensors"), (const char *[]){"c", "a", "b"}, (ag_tensor *[]){c, a, b}, 3));
    size_t nx, ny;
    unsigned char *x = read_bytes(path_in("x.safetensors"), &nx), *y = read_bytes(path_in("y.safetensors"), &ny);
    assert_non_null(x);
    assert_non_null(y);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx);
    uint64_t hlen = 0;
    for (int k = 7; k >= 0; k--)
        hlen = hlen << 8 | x[k];
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(nx, 8 + hlen + 4 * 3 + 8 * 4 + 4);
    /* b (F64) first, then a and c (F32) by name. */
    const char *h = (const char *)x + 8;
    const char *pb = memmem(h, hlen, "\"b\":", 4), *pa = memmem(h, hlen, "\"a\":", 4),
               *pc = memmem(h, hlen, "\"c\":", 4);
    assert_true(pb && pa && pc && pb < pa && pa < pc);
    free(x);
    free(y);

    /* No tensors: the reference writer's "{}" and six spaces. */
    assert_ok(ag_save(path_in("none.safetensors"), NULL, NULL, 0));
    x = read_bytes(path_in("none.safetensors"), &nx);
    assert_int_equal(nx, 16);
    assert_memory_equal(x, "\x08\0\0\0\0\0\0\0{}      ", 16);
    free(x);
    assert_ok(ag_load(ctx, path_in("none.safetensors"), NULL, NULL, 0));
    ag_ctx_free(ctx);
}

/* ---- The writer's refusals ------------------------------------------------------- */

static void test_save_refuses(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *a = filled(ctx, AG_FLOAT32, 1, (int64_t[]){3}, 1);
    const char *p = path_in("refused.safetensors");
    int before = count_entries(scratch);

    assert_error_rc(ag_save(NULL, (const char *[]){"a"}, &a, 1), AG_EINVAL, "path is NULL");
    assert_error_rc(ag_save(p, (const char *[]){"a"}, &a, -1), AG_EINVAL, "n is -1");
    assert_error_rc(ag_save(p, NULL, &a, 1), AG_EINVAL, "names is NULL");
    assert_error_rc(ag_save(p, (const char *[]){"a"}, NULL, 1), AG_EINVAL, "tensors is NULL");
    assert_error_rc(ag_save(p, (const char *[]){NULL}, &a, 1), AG_EINVAL, "names[0] is NULL");
    assert_error_rc(ag_save(p, (const char *[]){"a", "b", "a"}, (ag_tensor *[]){a, a, a}, 3), AG_EINVAL,
                    "the name 'a' is given twice");
    assert_error_rc(ag_save(p, (const char *[]){"__metadata__"}, &a, 1), AG_EINVAL, "reserved");
    assert_error_rc(ag_save(p, (const char *[]){"bad\xff"}, &a, 1), AG_EINVAL, "not valid UTF-8");
    assert_error_rc(ag_save(p, (const char *[]){"surrogate\xed\xa0\x80"}, &a, 1), AG_EINVAL, "not valid UTF-8");

    /* A NULL tensor: its own message, or the error of the op that failed. */
    ag_clear_error();
    assert_error_rc(ag_save(p, (const char *[]){"a", "b"}, (ag_tensor *[]){a, NULL}, 2), AG_EINVAL,
                    "tensors[1] ('b') is NULL");
    ag_tensor *bad = ag_add(ctx, a, ag_zeros(ctx, AG_FLOAT32, 1, (int64_t[]){4}));
    assert_null(bad);
    assert_error_rc(ag_save(p, (const char *[]){"bad"}, &bad, 1), AG_ESHAPE, "The size of tensor a (3)");

    /* Nothing was written. */
    assert_int_equal(count_entries(scratch), before);

    /* Places that cannot be written: the message has the system's reason. */
    assert_error_rc(ag_save("/nonexistent-dir/x.safetensors", (const char *[]){"a"}, &a, 1), AG_EINVAL,
                    "No such file or directory");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/adir", scratch);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_error_rc(ag_save(dir, (const char *[]){"a"}, &a, 1), AG_EINVAL, "cannot replace");
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(rmdir(dir), 0);
    assert_int_equal(count_entries(scratch), before); /* no temporary file left */
    ag_ctx_free(ctx);
}

/* A save that fails while writing (here: past the file size limit) leaves
 * the earlier file as it was and no temporary file behind. */
static void test_save_is_atomic(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    const char *p = path_in("atomic.safetensors");
    ag_tensor *small = filled(ctx, AG_FLOAT32, 1, (int64_t[]){4}, 1);
    assert_ok(ag_save(p, (const char *[]){"w"}, &small, 1));
    size_t n0;
    unsigned char *before = read_bytes(p, &n0);
    int entries = count_entries(scratch);

    ag_tensor *big = filled(ctx, AG_FLOAT64, 1, (int64_t[]){1 << 16}, 2);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 64 << 10;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = ag_save(p, (const char *[]){"w"}, &big, 1);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    assert_error_rc(rc, AG_EINVAL, "File too large");

    size_t n1;
    unsigned char *after = read_bytes(p, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    assert_int_equal(count_entries(scratch), entries);
    ag_tensor *out;
    assert_ok(ag_load(ctx, p, (const char *[]){"w"}, &out, 1));
    assert_same_tensor(out, small);

    /* And a save that succeeds replaces it whole. */
    assert_ok(ag_save(p, (const char *[]){"w"}, &big, 1));
    assert_ok(ag_load(ctx, p, (const char *[]){"w"}, &out, 1));
    assert_same_tensor(out, big);
    assert_int_equal(count_entries(scratch), entries);
    free(before);
    free(after);
    ag_ctx_free(ctx);
}

/* ---- The reader's arguments and requests ------------------------------------------ */

static ag_tensor *const SENTINEL = (ag_tensor *)(uintptr_t)0x10;

static void test_load_arguments(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *a = filled(ctx, AG_FLOAT32, 1, (int64_t[]){3}, 1);
    const char *p = path_in("args.safetensors");
    assert_ok(ag_save(p, (const char *[]){"a"}, &a, 1));
    ag_tensor *out[3] = {SENTINEL, SENTINEL, SENTINEL};
    assert_error_rc(ag_load(NULL, p, (const char *[]){"a"}, out, 1), AG_EINVAL, "context is NULL");
    assert_null(out[0]);
    assert_error_rc(ag_load(ctx, NULL, (const char *[]){"a"}, out, 1), AG_EINVAL, "path is NULL");
    assert_error_rc(ag_load(ctx, p, NULL, out, 1), AG_EINVAL, "names is NULL");
    assert_error_rc(ag_load(ctx, p, (const char *[]){"a"}, NULL, 1), AG_EINVAL, "out is NULL");
    assert_error_rc(ag_load(ctx, p, (const char *[]){"a"}, out, -2), AG_EINVAL, "n is -2");
    out[0] = out[1] = SENTINEL;
    assert_error_rc(ag_load(ctx, p, (const char *[]){"a", NULL}, out, 2), AG_EINVAL, "names[1] is NULL");
    assert_true(!out[0] && !out[1]);

    out[0] = out[1] = SENTINEL;
    assert_error_rc(ag_load(ctx, p, (const char *[]){"a", "b"}, out, 2), AG_EINVAL, "file does not contain tensor 'b'");
    assert_true(!out[0] && !out[1]);
    /* The first name in the caller's order is the one named. */
    assert_error_rc(ag_load(ctx, p, (const char *[]){"zz", "a", "b"}, out, 3), AG_EINVAL, "tensor 'zz'");
    assert_error_rc(ag_load(ctx, path_in("missing.safetensors"), (const char *[]){"a"}, out, 1), AG_EINVAL,
                    "No such file or directory");
    assert_error_rc(ag_load(ctx, scratch, (const char *[]){"a"}, out, 1), AG_EINVAL, "not a regular file");
    const char *fifo = path_in("fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0); /* must not block */
    assert_error_rc(ag_load(ctx, fifo, (const char *[]){"a"}, out, 1), AG_EINVAL, "not a regular file");
    unlink(fifo);
    assert_error_rc(ag_load(ctx, "/dev/zero", (const char *[]){"a"}, out, 1), AG_EINVAL, "not a regular file");
    ag_ctx_free(ctx);
}

/* ---- Hostile files ------------------------------------------------------------------ */

typedef struct hostile {
    const char *what;
    const char *header; /* the JSON text (header_len bytes, or strlen) */
    size_t header_len;
    bool declare; /* write `declared` as the header length instead of the real one */
    uint64_t declared;
    size_t data; /* bytes after the header */
    int code;
    const char *msg;
} hostile;

#define A8 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"
#define T(name, dtype, shape, s, e)                                                                                    \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" s "," e "]}"

static const hostile hostiles[] = {
    {"7-byte file", NULL, 0, true, 0, 0, AG_EINVAL, "too short"},
    {"huge header length", "{}", 0, true, UINT64_MAX, 0, AG_EINVAL, "more than the format's limit"},
    {"header length over 100 MB", "{}", 0, true, 100000001, 0, AG_EINVAL, "more than the format's limit"},
    {"header length past the file", "{}", 0, true, 1000, 16, AG_EINVAL, "past the end of the file"},
    {"header length 0", "{}", 0, true, 0, 0, AG_EINVAL, "header is empty"},
    {"leading space", " {}", 0, false, 0, 0, AG_EINVAL, "must start with '{'"},
    {"array header", "[]", 0, false, 0, 0, AG_EINVAL, "must start with '{'"},
    {"trailing data", "{}", 0, false, 0, 4, AG_EINVAL, "trailing bytes"},
    {"data past the last tensor", A8, 0, false, 0, 9, AG_EINVAL, "trailing bytes"},
    {"unterminated object", "{", 0, false, 0, 0, AG_EINVAL, "at the end of the header"},
    {"trailing junk in the header", "{}x", 0, false, 0, 0, AG_EINVAL, "trailing characters"},
    {"two objects", "{}{}", 0, false, 0, 0, AG_EINVAL, "trailing characters"},
    {"NUL after the object", "{}\0", 3, false, 0, 0, AG_EINVAL, "trailing characters"},
    {"NUL in a key", "{\"a\0\":{}}", 9, false, 0, 0, AG_EINVAL, "control character"},
    {"invalid UTF-8", "{\"a\xff\":{}}", 0, false, 0, 0, AG_EINVAL, "not UTF-8 at byte 3"},
    {"overlong UTF-8", "{\"\xc0\xaf\":{}}", 0, false, 0, 0, AG_EINVAL, "not UTF-8"},
    {"UTF-8 surrogate", "{\"\xed\xa0\x80\":{}}", 0, false, 0, 0, AG_EINVAL, "not UTF-8"},
    {"UTF-8 above U+10FFFF", "{\"\xf4\x90\x80\x80\":{}}", 0, false, 0, 0, AG_EINVAL, "not UTF-8"},
    {"truncated UTF-8", "{}\xe2\x82", 0, false, 0, 0, AG_EINVAL, "not UTF-8"},
    {"trailing comma", "{" T("a", "F32", "[2]", "0", "8") ",}", 0, false, 0, 8, AG_EINVAL, "expected a string"},
    {"single quotes", "{'a':{}}", 0, false, 0, 0, AG_EINVAL, "expected a string"},
    {"comment", "{/* x */}", 0, false, 0, 0, AG_EINVAL, "expected a string"},
    {"missing colon", "{\"a\" {}}", 0, false, 0, 0, AG_EINVAL, "expected ':'"},
    {"missing comma", "{" T("a", "F32", "[1]", "0", "4") " " T("b", "F32", "[1]", "4", "8") "}", 0, false, 0, 8,
     AG_EINVAL, "expected ',' or '}'"},
    {"unterminated string", "{\"a", 0, false, 0, 0, AG_EINVAL, "unterminated string"},
    {"raw control character", "{\"a\x01\":{}}", 0, false, 0, 0, AG_EINVAL, "control character"},
    {"unknown escape", "{\"\\x\":{}}", 0, false, 0, 0, AG_EINVAL, "unknown escape"},
    {"short \\u escape", "{\"\\u12\":{}}", 0, false, 0, 0, AG_EINVAL, "bad hex digit"},
    {"\\u escape at the end", "{\"\\u1", 0, false, 0, 0, AG_EINVAL, "truncated \\u escape"},
    {"lone high surrogate", "{\"\\ud800\":{}}", 0, false, 0, 0, AG_EINVAL, "lone high surrogate"},
    {"lone low surrogate", "{\"\\udc00\":{}}", 0, false, 0, 0, AG_EINVAL, "lone low surrogate"},
    {"bad surrogate pair", "{\"\\ud800\\u0041\":{}}", 0, false, 0, 0, AG_EINVAL, "not followed by a low one"},
    {"tensor not an object", "{\"a\":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}", 0, false, 0, 0, AG_EINVAL,
     "expected an object for a tensor"},
    {"missing dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 0, false, 0, 8, AG_EINVAL, "lacks \"dtype\""},
    {"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 0, false, 0, 8, AG_EINVAL,
     "lacks \"shape\""},
    {"missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 0, false, 0, 8, AG_EINVAL,
     "lacks \"data_offsets\""},
    {"duplicate field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, false,
     0, 8, AG_EINVAL, "duplicate field \"dtype\""},
    {"duplicate tensor", "{" T("a", "F32", "[1]", "0", "4") "," T("a", "F32", "[1]", "4", "8") "}", 0, false, 0, 8,
     AG_EINVAL, "tensor 'a' appears twice"},
    {"duplicate through an escape", "{" T("a", "F32", "[1]", "0", "4") "," T("\\u0061", "F32", "[1]", "4", "8") "}", 0,
     false, 0, 8, AG_EINVAL, "tensor 'a' appears twice"},
    {"duplicate __metadata__", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, false, 0, 0, AG_EINVAL,
     "duplicate key \"__metadata__\""},
    {"__metadata__ number", "{\"__metadata__\":{\"k\":1}}", 0, false, 0, 0, AG_EINVAL, "values must be strings"},
    {"__metadata__ nested", "{\"__metadata__\":{\"k\":{}}}", 0, false, 0, 0, AG_EINVAL, "values must be strings"},
    {"__metadata__ array", "{\"__metadata__\":[]}", 0, false, 0, 0, AG_EINVAL, "expected an object for \"__meta"},
    {"unknown dtype", "{" T("a", "F128", "[1]", "0", "16") "}", 0, false, 0, 16, AG_EINVAL,
     "tensor 'a' has unknown dtype \"F128\""},
    {"dtype in lower case", "{" T("a", "f32", "[1]", "0", "4") "}", 0, false, 0, 4, AG_EINVAL, "unknown dtype"},
    {"dtype not a string", "{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 0, false, 0, 4, AG_EINVAL,
     "expected a string"},
    {"shape not an array", "{" T("a", "F32", "2", "0", "8") "}", 0, false, 0, 8, AG_EINVAL,
     "expected an array for \"shape\""},
    {"negative size", "{" T("a", "F32", "[-2]", "0", "8") "}", 0, false, 0, 8, AG_EINVAL, "negative number"},
    {"fractional size", "{" T("a", "F32", "[2.0]", "0", "8") "}", 0, false, 0, 8, AG_EINVAL, "fraction or exponent"},
    {"size with exponent", "{" T("a", "F32", "[2e0]", "0", "8") "}", 0, false, 0, 8, AG_EINVAL, "fraction or exponent"},
    {"size with a leading zero", "{" T("a", "F32", "[02]", "0", "8") "}", 0, false, 0, 8, AG_EINVAL, "leading zero"},
    {"size past INT64_MAX", "{" T("a", "F32", "[9223372036854775808]", "0", "8") "}", 0, false, 0, 8, AG_ESHAPE,
     "more than INT64_MAX"},
    {"size past UINT64_MAX", "{" T("a", "F32", "[18446744073709551616]", "0", "8") "}", 0, false, 0, 8, AG_EINVAL,
     "does not fit in 64 bits"},
    {"shape at INT64_MAX", "{" T("a", "F32", "[9223372036854775807]", "0", "8") "}", 0, false, 0, 8, AG_ESHAPE,
     "overflows"},
    {"elements overflow", "{" T("a", "F32", "[4294967296,4294967296,0]", "0", "0") "}", 0, false, 0, 0, AG_ESHAPE,
     "overflows"},
    {"bytes overflow", "{" T("a", "F64", "[3037000500,3037000500]", "0", "8") "}", 0, false, 0, 8, AG_ESHAPE,
     "overflows"},
    {"shape larger than the data", "{" T("a", "F32", "[2,3]", "0", "8") "}", 0, false, 0, 8, AG_ESHAPE,
     "6 elements of F32 take 24 bytes, but data_offsets [0, 8] hold 8"},
    {"huge shape, small data", "{" T("a", "U8", "[1152921504606846976]", "0", "8") "}", 0, false, 0, 8, AG_ESHAPE,
     "take 1152921504606846976 bytes"},
    {"F4 odd count", "{" T("a", "F4", "[3]", "0", "2") "}", 0, false, 0, 2, AG_ESHAPE, "do not fill whole bytes"},
    {"offsets reversed", "{" T("a", "F32", "[0]", "8", "0") "}", 0, false, 0, 8, AG_EINVAL, "end before they start"},
    {"offsets past the data", "{" T("a", "F32", "[4]", "0", "16") "}", 0, false, 0, 8, AG_EINVAL,
     "past the end of the data (8 bytes)"},
    {"offset near UINT64_MAX", "{" T("a", "F32", "[0]", "18446744073709551615", "18446744073709551615") "}", 0, false,
     0, 0, AG_EINVAL, "past the end of the data"},
    {"overlapping data", "{" T("a", "F32", "[2]", "0", "8") "," T("b", "F32", "[2]", "4", "12") "}", 0, false, 0, 12,
     AG_EINVAL, "overlapping"},
    {"the same data twice", "{" T("a", "F32", "[2]", "0", "8") "," T("b", "F32", "[2]", "0", "8") "}", 0, false, 0, 8,
     AG_EINVAL, "overlapping"},
    {"gap between tensors", "{" T("a", "F32", "[1]", "0", "4") "," T("b", "F32", "[1]", "8", "12") "}", 0, false, 0, 12,
     AG_EINVAL, "gaps"},
    {"data not from 0", "{" T("a", "F32", "[2]", "4", "12") "}", 0, false, 0, 12, AG_EINVAL, "gaps"},
    {"three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 0, false, 0, 8, AG_EINVAL,
     "exactly two data_offsets"},
    {"one offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0]}}", 0, false, 0, 0, AG_EINVAL,
     "expected two data_offsets"},
    {"NaN in an unknown field", "{\"a\":{\"x\":NaN,\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, false,
     0, 0, AG_EINVAL, "invalid number"},
    {"bad literal", "{\"a\":{\"x\":tru,\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, false, 0, 0,
     AG_EINVAL, "invalid literal"},
    {"bad number", "{\"a\":{\"x\":1.,\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, false, 0, 0,
     AG_EINVAL, "invalid number"},
    {"trailing comma in an array", "{\"a\":{\"x\":[1,],\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0,
     false, 0, 0, AG_EINVAL, "invalid number"},
};

/* The bytes of a case: length field, header text, then h->data bytes. */
static unsigned char *build(const hostile *h, size_t *n) {
    size_t hl = h->header ? (h->header_len ? h->header_len : strlen(h->header)) : 0;
    size_t total = h->header ? 8 + hl + h->data : 7;
    unsigned char *b = malloc(total);
    assert_non_null(b);
    uint64_t len = h->declare ? h->declared : hl;
    for (int k = 0; k < 8 && (size_t)k < total; k++)
        b[k] = (unsigned char)(len >> (8 * k));
    if (h->header) {
        memcpy(b + 8, h->header, hl);
        memset(b + 8 + hl, 0x11, h->data);
    }
    *n = total;
    return b;
}

/* The file fails as a whole with its code and message, through the file
 * and the memory reader alike, whatever is asked for (or nothing); out[] is
 * NULL, the context has not grown, no allocation was bigger than the file. */
static void expect_rejected(const unsigned char *bytes, size_t n, int code, const char *msg, const char *what) {
    ag_ctx *ctx = ag_ctx_new();
    const char *p = path_in("hostile.safetensors");
    write_bytes(p, bytes, n);
    const char *names[] = {"a", "b"};
    for (int k = 0; k <= 2; k++) {
        ag_tensor *out[2] = {SENTINEL, SENTINEL};
        ag__safetensors_peak_alloc();
        int rc = ag_load(ctx, p, names, out, k);
        if (rc != code || !strstr(ag_last_error(), msg))
            print_error("case \"%s\", asking for %d tensors\n", what, k);
        assert_error_rc(rc, code, msg);
        assert_true(ag__safetensors_peak_alloc() <= n);
        for (int i = 0; i < k; i++)
            assert_null(out[i]);
        assert_int_equal(ag_ctx_bytes(ctx), 0);
        out[0] = out[1] = SENTINEL;
        rc = ag__load_mem(ctx, bytes, n, "mem", names, out, k);
        assert_error_rc(rc, code, msg);
        assert_true(ag__safetensors_peak_alloc() <= n);
        for (int i = 0; i < k; i++)
            assert_null(out[i]);
        assert_int_equal(ag_ctx_bytes(ctx), 0);
    }
    ag_ctx_free(ctx);
}

static void test_hostile_files(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof hostiles / sizeof hostiles[0]; i++) {
        size_t n;
        unsigned char *b = build(&hostiles[i], &n);
        expect_rejected(b, n, hostiles[i].code, hostiles[i].msg, hostiles[i].what);
        free(b);
    }
    /* Each prefix of a valid file is truncated somewhere. */
    static const char two[] = "{" T("a", "F32", "[2]", "0", "8") "," T("b", "F64", "[1]", "8", "16") "}";
    hostile whole = {"whole", two, 0, false, 0, 16, 0, ""};
    size_t n;
    unsigned char *b = build(&whole, &n);
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *out[2];
    assert_ok(ag__load_mem(ctx, b, n, "whole", (const char *[]){"a", "b"}, out, 2));
    ag_ctx_free(ctx);
    for (size_t len = 0; len < n; len++)
        expect_rejected(b, len, AG_EINVAL, "", "truncated");
    free(b);
}

/* Nested values in a field the reader skips: 64 levels are fine, deeper is
 * an error, and a very deep one does not exhaust the stack. */
static void test_deep_json(void **state) {
    (void)state;
    for (int depth = 60; depth <= 200000; depth = depth < 70 ? depth + 2 : depth * 10) {
        size_t cap = 2 * (size_t)depth + 256, len = 0;
        char *h = malloc(cap);
        len += (size_t)snprintf(h, cap, "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0],\"x\":");
        for (int i = 0; i < depth; i++)
            h[len++] = '[';
        for (int i = 0; i < depth; i++)
            h[len++] = ']';
        len += (size_t)snprintf(h + len, cap - len, "}}");
        hostile c = {"deep", h, len, false, 0, 0, 0, ""};
        size_t n;
        unsigned char *b = build(&c, &n);
        if (depth <= 64) {
            ag_ctx *ctx = ag_ctx_new();
            ag_tensor *out;
            assert_ok(ag__load_mem(ctx, b, n, "deep", (const char *[]){"a"}, &out, 1));
            assert_int_equal(ag_numel(out), 0);
            ag_ctx_free(ctx);
        } else {
            expect_rejected(b, n, AG_EINVAL, "nested more than 64 deep", "deep");
        }
        free(b);
        free(h);
    }
}

/* Valid files that are unusual: whitespace around everything and padding
 * of every JSON kind, metadata anywhere, unknown fields, zero-size tensors
 * at any offset, tensors listed out of data order, sub-byte dtypes. */
static void test_unusual_valid_files(void **state) {
    (void)state;
    static const char *headers[] = {
        "{ \"__metadata__\" : {\"format\":\"pt\", \"\": \"\"} , \"a\" : { \"shape\" : [ 2 ] , \"dtype\" : \"F32\" ,"
        " \"data_offsets\" : [ 0 , 8 ] } }\t\r\n ",
        "{" T("z", "F32", "[0]", "8", "8") "," T("a", "F32", "[2]", "0", "8") "," T("e", "F64", "[0,5]", "0", "0") "}",
        "{" T("f4", "F4", "[4,0]", "8", "8") "," T("a", "F32", "[1,2]", "0", "8") ",\"__metadata__\":{}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":{\"k\":[1,-2.5e-3,true,false,null,"
        "\"\\u00e9\\n\\\"\"]}}}",
        "{" T("\\u0062", "BF16", "[2]", "8", "12") "," T("a", "F32", "[2]", "0", "8") "}",
    };
    static const size_t data[] = {8, 8, 8, 8, 12};
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        hostile c = {"valid", headers[i], 0, false, 0, data[i], 0, ""};
        size_t n;
        unsigned char *b = build(&c, &n);
        for (size_t k = 0; k < 8; k++)
            b[8 + strlen(headers[i]) + k] = (unsigned char)(k < 4 ? 0 : "\x00\x00\x80\x3f"[k - 4]);
        ag_ctx *ctx = ag_ctx_new();
        ag_tensor *out = SENTINEL;
        int rc = ag__load_mem(ctx, b, n, "valid", (const char *[]){"a"}, &out, 1);
        if (rc)
            print_error("header %zu: %s\n", i, ag_last_error());
        assert_ok(rc);
        assert_int_equal(ag_numel(out), 2);
        assert_true(ag_get(out, 0) == 0.0 && ag_get(out, 1) == 1.0);
        ag_ctx_free(ctx);
        free(b);
    }
}

/* Files that are valid but hold what agrad cannot take: asking for such a
 * tensor fails as a whole; the others in the same file load. */
static void test_requests_agrad_cannot_take(void **state) {
    (void)state;
    static const char h[] = "{" T("a", "F32", "[2]", "0", "8") "," T("i", "I64", "[1]", "8", "16") "," T(
        "nine", "F32", "[1,1,1,1,1,1,1,1,1]", "16", "20") "," T("lo", "F32", "[0,9223372036854775807]", "20",
                                                                "20") "," T("hi", "F32", "[9223372036854775807,0]",
                                                                            "20", "20") "," T("bf", "BF16", "[3]", "20",
                                                                                              "26") "}";
    hostile c = {"agrad cannot take", h, 0, false, 0, 26, 0, ""};
    size_t n;
    unsigned char *b = build(&c, &n);
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *out[2] = {SENTINEL, SENTINEL};
    assert_error_rc(ag__load_mem(ctx, b, n, "f", (const char *[]){"a", "i"}, out, 2), AG_EDTYPE,
                    "tensor 'i' has dtype I64; agrad reads F32 and F64");
    assert_true(!out[0] && !out[1]);
    assert_error_rc(ag__load_mem(ctx, b, n, "f", (const char *[]){"bf"}, out, 1), AG_EDTYPE, "dtype BF16");
    assert_error_rc(ag__load_mem(ctx, b, n, "f", (const char *[]){"nine", "a"}, out, 2), AG_ESHAPE,
                    "tensor 'nine' has 9 dimensions");
    assert_true(!out[0] && !out[1]);
    assert_int_equal(ag_ctx_bytes(ctx), 0);
    /* An empty tensor with a size of INT64_MAX: a valid file; agrad makes
     * it when its shape check allows (sizes before the 0 must not overflow
     * its numel bound), else refuses it with an error, never a crash. */
    assert_ok(ag__load_mem(ctx, b, n, "f", (const char *[]){"lo", "a"}, out, 2));
    assert_int_equal(ag_numel(out[0]), 0);
    assert_int_equal(ag_size(out[0], 1), INT64_MAX);
    int rc = ag__load_mem(ctx, b, n, "f", (const char *[]){"hi"}, out, 1);
    if (rc) {
        assert_true(rc < 0 && out[0] == NULL);
    } else {
        assert_int_equal(ag_numel(out[0]), 0);
    }
    assert_ok(ag__load_mem(ctx, b, n, "f", (const char *[]){"a"}, out, 1));
    ag_ctx_free(ctx);
    free(b);
}

/* A 64 GiB file (sparse) whose header describes a 64 GiB tensor: loading
 * only the small tensor next to it reads a few bytes and allocates little;
 * the header is checked against the real size. */
static void test_huge_sparse_file(void **state) {
    (void)state;
    const uint64_t big = (uint64_t)1 << 36;
    char h[256];
    int hl = snprintf(h, sizeof h,
                      "{" T("small", "F32", "[2]", "0", "8") ",\"big\":{\"dtype\":\"F32\",\"shape\":[%" PRIu64
                                                             "],\"data_offsets\":[8,%" PRIu64 "]}}",
                      big / 4, 8 + big);
    const char *p = path_in("sparse.safetensors");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    unsigned char len[8];
    for (int k = 0; k < 8; k++)
        len[k] = (unsigned char)((uint64_t)hl >> (8 * k));
    float two[2] = {1.5f, -2.0f};
    assert_int_equal(write(fd, len, 8), 8);
    assert_int_equal(write(fd, h, (size_t)hl), hl);
    assert_int_equal(write(fd, two, 8), 8);
    if (ftruncate(fd, (off_t)(8 + (uint64_t)hl + 8 + big)) != 0) {
        close(fd);
        unlink(p);
        skip(); /* a file system without sparse files of that size */
    }
    close(fd);
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *out;
    ag__safetensors_peak_alloc();
    assert_ok(ag_load(ctx, p, (const char *[]){"small"}, &out, 1));
    assert_true(ag__safetensors_peak_alloc() < 4096);
    assert_true(ag_get(out, 0) == 1.5 && ag_get(out, 1) == -2.0);
    assert_true(ag_ctx_bytes(ctx) < 4096);
    /* One byte short: the header no longer tiles the file. */
    assert_int_equal(truncate(p, (off_t)(8 + (uint64_t)hl + 8 + big - 1)), 0);
    assert_error_rc(ag_load(ctx, p, (const char *[]){"small"}, &out, 1), AG_EINVAL, "past the end of the data");
    unlink(p);
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_shape), cmocka_unit_test(test_roundtrip_names),
        cmocka_unit_test(test_save_is_deterministic), cmocka_unit_test(test_save_refuses),
        cmocka_unit_test(test_save_is_atomic),        cmocka_unit_test(test_load_arguments),
        cmocka_unit_test(test_hostile_files),         cmocka_unit_test(test_deep_json),
        cmocka_unit_test(test_unusual_valid_files),   cmocka_unit_test(test_requests_agrad_cannot_take),
        cmocka_unit_test(test_huge_sparse_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
