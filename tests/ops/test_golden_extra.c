/* dtype promotion, ag_to and the selection, joining and normalisation ops
 * against PyTorch 1.13's numbers recorded by gen_golden_extra.py in
 * golden_extra.txt: forward values (and indices), the gradients of
 * (out * w).sum() for each operand that requires grad, in its own dtype,
 * and the node's name and edges. The file is found through
 * AGRAD_SOURCE_ROOT. */
#include "../common/check.h"

#include <stdlib.h>

#define MAX_VALS 4096
#define MAX_OPS 4
#define MAX_ARGS 8

typedef struct {
    char name[64], op[32];
    int nargs;
    double args[MAX_ARGS];
    int nops;
    ag_tensor *ops[MAX_OPS];
    bool grad[MAX_OPS];
    int64_t idx[MAX_VALS]; /* an `idx` line */
    int64_t nidx;
} golden_case;

static FILE *open_golden(const char *name) {
    const char *root = getenv("AGRAD_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/ops/%s", root ? root : ".", name);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s (is AGRAD_SOURCE_ROOT set?)", path);
    char line[256];
    assert_non_null(fgets(line, sizeof line, f)); /* the header comment */
    return f;
}

/* Reads `tag DTYPE NDIM SHAPE... VALUES...` (the tag already read) into a
 * tensor in ctx; an `idx` line (no dtype, integers) into c->idx. */
static ag_tensor *read_values(FILE *f, const char *tag, ag_ctx *ctx, golden_case *c) {
    char dt[8] = "f64";
    int ndim = -1;
    bool is_idx = strcmp(tag, "idx") == 0;
    if ((!is_idx && fscanf(f, "%7s", dt) != 1) || fscanf(f, "%d", &ndim) != 1)
        fail_msg("%s: bad '%s' line", c->name, tag);
    assert_true(ndim >= 0 && ndim <= AG_MAX_DIMS);
    int64_t shape[AG_MAX_DIMS], n = 1;
    for (int d = 0; d < ndim; d++) {
        long long s;
        assert_int_equal(fscanf(f, "%lld", &s), 1);
        shape[d] = s;
        n *= s;
    }
    static double vals[MAX_VALS];
    static float fvals[MAX_VALS];
    assert_true(n <= MAX_VALS);
    for (int64_t i = 0; i < n; i++) {
        char num[64];
        assert_int_equal(fscanf(f, "%63s", num), 1);
        vals[i] = strtod(num, NULL); /* hex floats, inf and nan: exact */
        fvals[i] = (float)vals[i];
        if (is_idx)
            c->idx[i] = (int64_t)vals[i];
    }
    if (is_idx) {
        c->nidx = n;
        return NULL;
    }
    ag_dtype t = strcmp(dt, "f64") == 0 ? AG_FLOAT64 : AG_FLOAT32;
    ag_tensor *r = ag_tensor_from(ctx, t, ndim, shape, t == AG_FLOAT64 ? (void *)vals : (void *)fvals);
    assert_non_null(r);
    return r;
}

/* An `arg` operand holding indices as values: the caller's int64 array. */
static const int64_t *as_index(const ag_tensor *t, int64_t *buf) {
    for (int64_t i = 0; i < ag_numel(t); i++)
        buf[i] = (int64_t)ag_get(t, i);
    return buf;
}

/* The op of case c on its operands; *indices receives max/min's indices. */
static ag_tensor *run_extra(ag_ctx *ctx, const golden_case *c, int64_t *indices) {
    ag_tensor *const *t = c->ops;
    const char *op = c->op;
    if (!strcmp(op, "add"))
        return ag_add(ctx, t[0], t[1]);
    if (!strcmp(op, "sub"))
        return ag_sub(ctx, t[0], t[1]);
    if (!strcmp(op, "mul"))
        return ag_mul(ctx, t[0], t[1]);
    if (!strcmp(op, "div"))
        return ag_div(ctx, t[0], t[1]);
    if (!strcmp(op, "pow"))
        return ag_pow(ctx, t[0], t[1]);
    if (!strcmp(op, "maximum"))
        return ag_maximum(ctx, t[0], t[1]);
    if (!strcmp(op, "mse_loss"))
        return ag_mse_loss(ctx, t[0], t[1]);
    if (!strcmp(op, "dropout"))
        return ag_dropout(ctx, t[0], c->args[0], true);
    if (!strcmp(op, "norm"))
        return ag_norm(ctx, t[0], c->args[0]);
    if (!strcmp(op, "matmul"))
        return ag_matmul(ctx, t[0], t[1]);
    if (!strcmp(op, "stack"))
        return ag_stack(ctx, t, c->nops, (int)c->args[0]);
    if (!strcmp(op, "cat"))
        return ag_cat(ctx, t, c->nops, (int)c->args[0]);
    if (!strcmp(op, "to_f64"))
        return ag_to(ctx, t[0], AG_FLOAT64);
    if (!strcmp(op, "to_f32"))
        return ag_to(ctx, t[0], AG_FLOAT32);
    int dim = c->nargs > 0 ? (int)c->args[0] : 0;
    bool keep = c->nargs > 1 && c->args[1] != 0;
    if (!strcmp(op, "min"))
        return ag_min(ctx, t[0]);
    if (!strcmp(op, "max_dim"))
        return ag_max_dim(ctx, t[0], dim, keep, indices);
    if (!strcmp(op, "min_dim"))
        return ag_min_dim(ctx, t[0], dim, keep, indices);
    if (!strcmp(op, "where"))
        return ag_where(ctx, t[0], t[1], t[2]);
    static int64_t index[MAX_VALS];
    int64_t shape[AG_MAX_DIMS];
    for (int d = 0; d < ag_ndim(t[c->nops - 1]); d++)
        shape[d] = ag_size(t[c->nops - 1], d);
    if (!strcmp(op, "gather"))
        return ag_gather(ctx, t[0], dim, ag_ndim(t[1]), shape, as_index(t[1], index));
    fail_msg("unknown op %s", op);
    return NULL;
}

static int num_edges(const golden_case *c) { return strcmp(c->op, "where") == 0 ? 2 : c->nops; }

/* The node's edge i against PyTorch's: where agrad converted operand i
 * (promotion) the edge is a ToCopyBackward0 whose own edge is PyTorch's. */
static void check_edge(const golden_case *c, const ag_tensor *out, const ag_node *fn, int i, const char *want) {
    const ag_node *nx = ag_node_next(fn, i);
    int k = i + (c->nops > 0 && !c->grad[0] && c->nops > num_edges(c)); /* where: cond is no edge */
    if (nx && k < c->nops && ag_tensor_dtype(c->ops[k]) != ag_tensor_dtype(out) &&
        !strcmp(ag_node_name(nx), "ToCopyBackward0") && strcmp(want, "ToCopyBackward0") != 0)
        nx = ag_node_next(nx, 0);
    const char *got = nx ? ag_node_name(nx) : "None";
    if (strcmp(got, want) != 0)
        fail_msg("%s: edge %d goes to %s, PyTorch's to %s", c->name, i, got, want);
}

/* A `node` line: out's node and its edges are PyTorch's. */
static void check_node(FILE *f, const golden_case *c, const ag_tensor *out) {
    char node[64];
    int num_next;
    assert_int_equal(fscanf(f, " node %63s %d", node, &num_next), 2);
    const ag_node *fn = ag_grad_fn(out);
    assert_non_null(fn);
    if (strcmp(ag_node_name(fn), node) != 0)
        fail_msg("%s: node %s, PyTorch has %s", c->name, ag_node_name(fn), node);
    assert_int_equal(ag_node_num_next(fn), num_next);
    for (int i = 0; i < num_next; i++) {
        char next[64];
        assert_int_equal(fscanf(f, "%63s", next), 1);
        check_edge(c, out, fn, i, next);
    }
}

static void check_case(FILE *f, golden_case *c) {
    ag_ctx *ctx = ag_ctx_new();
    char tag[16], what[160];
    c->nops = 0;
    c->nidx = -1;
    while (fscanf(f, "%15s", tag) == 1 && (!strcmp(tag, "in") || !strcmp(tag, "arg"))) {
        assert_true(c->nops < MAX_OPS);
        c->grad[c->nops] = !strcmp(tag, "in");
        c->ops[c->nops] = read_values(f, tag, ctx, c);
        if (c->grad[c->nops])
            assert_int_equal(ag_requires_grad_(c->ops[c->nops], true), 0);
        c->nops++;
    }
    assert_string_equal(tag, "out");
    ag_tensor *want = read_values(f, "out", ctx, c);
    static int64_t indices[MAX_VALS];
    memset(indices, 0xff, sizeof indices);
    ag_tensor *out = run_extra(ctx, c, indices);
    /* float32 anywhere: PyTorch's backward formulas read the saved float32
     * operands (pow's log(a) in float32), agrad's the promoted copies */
    bool f64 = ag_tensor_dtype(want) == AG_FLOAT64;
    for (int i = 0; i < c->nops; i++)
        f64 = f64 && ag_tensor_dtype(c->ops[i]) == AG_FLOAT64;
    double rtol = f64 ? 1e-13 : 1e-6, atol = f64 ? 1e-14 : 1e-7;
    snprintf(what, sizeof what, "%s forward", c->name);
    assert_tensor_close_msg(out, want, rtol, atol, what);
    assert_int_equal(fscanf(f, "%15s", tag), 1);
    if (!strcmp(tag, "idx")) {
        read_values(f, "idx", ctx, c);
        for (int64_t i = 0; i < c->nidx; i++)
            if (indices[i] != c->idx[i])
                fail_msg("%s: index %lld is %lld, PyTorch's %lld", c->name, (long long)i, (long long)indices[i],
                         (long long)c->idx[i]);
        assert_int_equal(fscanf(f, "%15s", tag), 1);
    }
    assert_string_equal(tag, "w");
    ag_tensor *w = read_values(f, "w", ctx, c);
    if (ag_backward(ag_sum(ctx, ag_mul(ctx, out, w)), NULL, NULL) != 0)
        fail_msg("%s: backward: %s", c->name, ag_last_error());
    for (int i = 0; i < c->nops; i++) {
        if (!c->grad[i])
            continue;
        assert_int_equal(fscanf(f, "%15s", tag), 1);
        ag_tensor *g = read_values(f, "grad", ctx, c);
        snprintf(what, sizeof what, "%s grad of operand %d", c->name, i);
        assert_tensor_close_msg(ag_grad(c->ops[i]), g, rtol * 4, atol * 4, what);
    }
    check_node(f, c, out);
    assert_int_equal(fscanf(f, " %15s", tag), 1);
    assert_string_equal(tag, "end");
    ag_ctx_free(ctx);
}

static void test_extra_ops_match_pytorch(void **state) {
    (void)state;
    FILE *f = open_golden("golden_extra.txt");
    golden_case c;
    int cases = 0;
    while (fscanf(f, " case %63s %31s %d", c.name, c.op, &c.nargs) == 3) {
        assert_true(c.nargs >= 0 && c.nargs <= MAX_ARGS);
        for (int i = 0; i < c.nargs; i++)
            assert_int_equal(fscanf(f, "%lf", &c.args[i]), 1);
        check_case(f, &c);
        cases++;
    }
    assert_true(feof(f)); /* stopped at the end, not at a line it could not read */
    fclose(f);
    assert_true(cases >= 60);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extra_ops_match_pytorch),
    };
    return cmocka_run_group_tests(tests, poison_fresh_gradients, NULL);
}
