/* ag_load against files written outside agrad by gen_safetensors.py from
 * PyTorch tensors, and ag_save against the reference writer's layout: every
 * F32/F64 tensor is read bit for bit, tensors of PyTorch's other dtypes are
 * skipped (and refused when asked for), and agrad writes the same bytes as
 * the reference writer for the same tensors. */
#include "io_check.h"

#include <errno.h>
#include <inttypes.h>

#define MAX_TENSORS 64

typedef struct golden {
    char name[256];
    ag_dtype dtype;
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    int64_t numel;
    unsigned char *bits; /* numel elements, native byte order */
} golden;

static golden tensors[MAX_TENSORS];
static int n_tensors;
static char others[MAX_TENSORS][64], other_dtypes[MAX_TENSORS][16];
static int n_others;
static char dir[4096], scratch[4096];

static const char *in_dir(const char *file) {
    static char p[4096 + 64];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return p;
}

/* golden_values.txt: `HEXNAME DTYPE NDIM SHAPE... BITS...` per tensor and
 * `other NAME DTYPE` per tensor of another dtype. */
static int setup(void **state) {
    (void)state;
    const char *root = getenv("AGRAD_SOURCE_ROOT");
    snprintf(dir, sizeof dir, "%s/tests/io", root ? root : ".");
    FILE *f = fopen(in_dir("golden_values.txt"), "r");
    if (!f) {
        fprintf(stderr, "cannot open %s: %s\n", in_dir("golden_values.txt"), strerror(errno));
        return -1;
    }
    char tok[256];
    while (fscanf(f, "%255s", tok) == 1) {
        if (tok[0] == '#') {
            int c;
            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
            continue;
        }
        if (!strcmp(tok, "other")) {
            if (fscanf(f, "%63s %15s", others[n_others], other_dtypes[n_others]) != 2)
                return -1;
            n_others++;
            continue;
        }
        golden *g = &tensors[n_tensors++];
        size_t hl = strcmp(tok, "-") ? strlen(tok) / 2 : 0;
        for (size_t i = 0; i < hl; i++) {
            unsigned byte;
            sscanf(tok + 2 * i, "%2x", &byte);
            g->name[i] = (char)byte;
        }
        g->name[hl] = '\0';
        char dt[8];
        if (fscanf(f, "%7s %d", dt, &g->ndim) != 2)
            return -1;
        g->dtype = strcmp(dt, "F64") ? AG_FLOAT32 : AG_FLOAT64;
        g->numel = 1;
        for (int d = 0; d < g->ndim; d++) {
            if (fscanf(f, "%" SCNd64, &g->shape[d]) != 1)
                return -1;
            g->numel *= g->shape[d];
        }
        size_t es = g->dtype == AG_FLOAT64 ? 8 : 4;
        g->bits = malloc((size_t)g->numel * es + 1);
        for (int64_t i = 0; i < g->numel; i++) {
            uint64_t v;
            if (fscanf(f, "%" SCNx64, &v) != 1)
                return -1;
            if (es == 8)
                memcpy(g->bits + i * 8, &v, 8);
            else {
                uint32_t w = (uint32_t)v;
                memcpy(g->bits + i * 4, &w, 4);
            }
        }
    }
    fclose(f);
    make_scratch(scratch, sizeof scratch);
    return n_tensors > 0 && n_others > 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < n_tensors; i++)
        free(tensors[i].bits);
    remove_scratch(scratch);
    return 0;
}

static void check_golden(const ag_tensor *t, const golden *g) {
    assert_non_null(t);
    assert_int_equal(ag_tensor_dtype(t), g->dtype);
    assert_int_equal(ag_ndim(t), g->ndim);
    for (int d = 0; d < g->ndim; d++)
        assert_int_equal(ag_size(t, d), g->shape[d]);
    size_t n = (size_t)g->numel * (g->dtype == AG_FLOAT64 ? 8 : 4);
    unsigned char *got = malloc(n + 1);
    assert_int_equal(ag_copy_to(t, got, g->dtype), 0);
    if (memcmp(got, g->bits, n) != 0)
        print_error("tensor '%s' differs from the golden bits\n", g->name);
    assert_memory_equal(got, g->bits, n);
    assert_false(ag_requires_grad(t));
    free(got);
}

/* Every F32/F64 tensor, at once, from a file. */
static void load_all(const char *file) {
    ag_ctx *ctx = ag_ctx_new();
    const char *names[MAX_TENSORS];
    ag_tensor *out[MAX_TENSORS];
    for (int i = 0; i < n_tensors; i++)
        names[i] = tensors[i].name;
    int rc = ag_load(ctx, in_dir(file), names, out, n_tensors);
    if (rc)
        print_error("%s: %s\n", file, ag_last_error());
    assert_int_equal(rc, 0);
    for (int i = 0; i < n_tensors; i++)
        check_golden(out[i], &tensors[i]);
    ag_ctx_free(ctx);
}

static void test_read_pytorch_file(void **state) {
    (void)state;
    load_all("golden_torch.safetensors");
}

static void test_read_reference_layout(void **state) {
    (void)state;
    load_all("golden_layout.safetensors");
}

static void test_read_unusual_header(void **state) {
    (void)state;
    load_all("golden_messy.safetensors");
}

/* The other dtypes are in the file; each one asked for is AG_EDTYPE naming
 * it, and the whole request fails. */
static void test_other_dtypes_refused(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    for (int i = 0; i < n_others; i++) {
        ag_tensor *out[2] = {(ag_tensor *)&out, (ag_tensor *)&out};
        const char *names[2] = {tensors[0].name, others[i]};
        int rc = ag_load(ctx, in_dir("golden_torch.safetensors"), names, out, 2);
        char want[128];
        snprintf(want, sizeof want, "tensor '%s' has dtype %s; agrad reads F32 and F64", others[i], other_dtypes[i]);
        assert_error_rc(rc, AG_EDTYPE, want);
        assert_true(!out[0] && !out[1]);
    }
    ag_ctx_free(ctx);
}

/* ag_save of the golden tensors (given in file order reversed) writes
 * exactly the bytes of the reference writer. */
static void test_save_matches_reference_layout(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_new();
    const char *names[MAX_TENSORS];
    ag_tensor *ts[MAX_TENSORS];
    for (int i = 0; i < n_tensors; i++) {
        const golden *g = &tensors[n_tensors - 1 - i];
        names[i] = g->name;
        ts[i] = ag_tensor_from(ctx, g->dtype, g->ndim, g->shape, g->bits);
        assert_non_null(ts[i]);
    }
    char p[4200];
    snprintf(p, sizeof p, "%s/saved.safetensors", scratch);
    assert_ok(ag_save(p, names, ts, n_tensors));
    size_t n_got, n_want;
    unsigned char *got = read_bytes(p, &n_got), *want = read_bytes(in_dir("golden_layout.safetensors"), &n_want);
    assert_non_null(got);
    assert_non_null(want);
    assert_int_equal(n_got, n_want);
    assert_memory_equal(got, want, n_want);
    free(got);
    free(want);
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_pytorch_file),
        cmocka_unit_test(test_read_reference_layout),
        cmocka_unit_test(test_read_unusual_header),
        cmocka_unit_test(test_other_dtypes_refused),
        cmocka_unit_test(test_save_matches_reference_layout),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
