#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_api (tests/fuzz/corpus/api/): small
programs in the target's input language, one per theme, so that fuzzing
starts from inputs that reach deep into agrad (graphs that run backward on
the pool, hooks, optimizers, empty tensors with huge sizes, overflowing
shapes, NaN data, NULL chains, context resets).

The opcode numbers and the tables of special sizes and doubles are read
from fuzz_api.c, so the seeds follow the target when it changes. Each op's
argument bytes are spelled out below in the order the op reads them.

    python3 tests/fuzz/gen_corpus.py      # rewrites corpus/api/seed-*
"""
import pathlib
import re

HERE = pathlib.Path(__file__).resolve().parent
SRC = (HERE / "fuzz_api.c").read_text()

OPS = {name: i for i, name in enumerate(re.findall(r"^\s*X\((\w+)\)", SRC, re.M))}


def c_array(name):
    body = re.search(name + r"\[\] = \{(.*?)\};", SRC, re.S).group(1)
    return [t.strip() for t in body.split(",") if t.strip()]


SPECIAL_SIZES = c_array("special_sizes")
SPECIAL_DOUBLES = c_array("special_doubles")
NSLOT, NCTX = 16, 3
NULL_SLOT, NULL_CTX = NSLOT, NCTX


def op(name, *args):
    return bytes([OPS[name]] + [a & 0xFF for a in args])


def size(v):
    """A size_arg byte: 0..8 directly, else the special value spelled v."""
    if isinstance(v, int) and 0 <= v <= 8:
        return v
    i = SPECIAL_SIZES.index(str(v))
    n = len(SPECIAL_SIZES)
    return 224 + (i - 224 % n) % n


def dbl(v):
    """A double_arg byte for the special value spelled v."""
    return SPECIAL_DOUBLES.index(v)


def dim(d):
    return d + 10


def shape(*sizes):
    """ndim, then the sizes the target reads (at most 8, even for ndim 9)."""
    return [len(sizes)] + [size(s) for s in sizes[:8]]


F32, F64 = 0, 1


def create(kind, dst, ctx, dt, *sizes, value=None):
    args = [dst, ctx, dt] + shape(*sizes) + [0]
    if kind in ("FULL", "SCALAR"):
        args.append(dbl(value if value is not None else "1.0"))
    return op(kind, *args)


def leaf(dst, ctx, dt, *sizes):
    return create("RANDN", dst, ctx, dt, *sizes) + op("REQUIRES_GRAD", dst, 1)


def binary(dst, ctx, a, b, which):  # add sub mul div maximum matmul
    return op("BINARY", dst, ctx, a, b, ["add", "sub", "mul", "div", "maximum", "matmul"].index(which))


def unary(dst, ctx, a, which):
    names = ["neg", "sqrt", "exp", "log", "tanh", "sigmoid", "relu", "abs", "clone"]
    return op("UNARY", dst, ctx, a, names.index(which))


def reduce(dst, ctx, a, which, d=0, keep=0):
    return op("REDUCE", dst, ctx, a, ["sum", "mean", "max", "sum_dim", "mean_dim"].index(which), dim(d), keep)


def backward(root, threads=1, retain=False, grad=None):
    o = (1 if retain else 0) | (threads % 4) << 1 | (8 if grad is not None else 0)
    return op("BACKWARD", root, grad if grad is not None else NULL_SLOT, o)


def settings(which, v):
    return op("SETTINGS", which, v)


def threads(n):
    return settings(0, n - 1)


def print_(s, how=0):
    return op("PRINT", s, how)


SEEDS = {}

# A small network on one thread: leaves in context 0, the step in 1.
SEEDS["basic"] = b"".join([
    leaf(0, 0, F32, 3, 4), leaf(1, 0, F32, 3), create("RAND", 2, 0, F32, 5, 4),
    op("LINEAR", 3, 1, 2, 0, 1), unary(4, 1, 3, "tanh"), reduce(5, 1, 4, "mean"),
    backward(5), op("GRAD", 0, 6), print_(6), print_(5, 1), op("GRAPH", 5, 0xFF),
    op("READ", 6, dim(1), 2), op("COPY_TO", 6, F64, 0),
])

# A forking graph on the pool, then deterministic, on 2 and 3 threads.
SEEDS["parallel"] = b"".join([
    settings(6, 1), threads(3), leaf(0, 0, F64, 8, 8), leaf(1, 0, F64, 8, 8),
    binary(2, 1, 0, 1, "matmul"), unary(3, 1, 0, "sigmoid"), binary(4, 1, 2, 3, "mul"),
    unary(5, 1, 1, "exp"), binary(6, 1, 4, 5, "add"), reduce(7, 1, 6, "sum"),
    backward(7, threads=2, retain=True), settings(1, 1), backward(7, threads=3, retain=True),
    backward(7, threads=0), op("GRAD", 1, 8), print_(8),
])

# Hooks of every kind, on leaves and on a retained non-leaf.
SEEDS["hooks"] = b"".join([
    leaf(0, 0, F32, 2, 3), unary(1, 1, 0, "tanh"), op("RETAIN_GRAD", 1), reduce(2, 1, 1, "sum"),
    op("HOOK", 0, 2), op("HOOK", 1, 1), backward(2, retain=True),
    op("HOOK", 0, 3), backward(2, retain=True), op("HOOK", 0, 249),
    op("HOOK", 1, 4), backward(2, retain=True), op("HOOK", 1, 249),
    op("HOOK", 0, 6), op("HOOK", 0, 7), op("HOOK", 1, 5), backward(2, retain=True), op("HOOK", 1, 250),
    op("HOOK", 1, 247), backward(2, threads=2), op("GRAD", 0, 3), print_(3),
])

# SGD with momentum, then Adam with AMSGrad, a few steps each.
SEEDS["optim"] = b"".join([
    leaf(0, 0, F32, 4, 2), leaf(1, 0, F32, 4), create("RANDN", 2, 0, F32, 3, 2),
    op("OPTIM_NEW", 0, 0, 2, 0, 0, 1, dbl("0.1"), dbl("0.9"), dbl("0.0"), dbl("0.0"), 1, 0),
    op("OPTIM_NEW", 1, 0, 2, 1, 0, 1, dbl("1e-3"), dbl("0.0"), dbl("0.0"), dbl("0.0"), dbl("0.1"), 1, 0),
    op("LINEAR", 3, 1, 2, 0, 1), reduce(4, 1, 3, "sum"), backward(4),
    op("OPTIM_STEP", 0), op("OPTIM_STEP", 1), op("CTX_RESET", 1),
    op("LINEAR", 3, 1, 2, 0, 1), reduce(4, 1, 3, "sum"), backward(4),
    op("OPTIM_STEP", 4), op("OPTIM_STEP", 5), op("OPTIM_STEP", 3, 0, 1), print_(0),
])

# Empty tensors with huge sizes through the ops that loop over rows.
SEEDS["empty_huge"] = b"".join([
    create("ZEROS", 0, 0, F32, 0, "(int64_t)1 << 32", "(int64_t)1 << 32"), op("REQUIRES_GRAD", 0, 1),
    op("TRANSPOSE", 1, 1, 0, dim(1), dim(2)), op("TRANSPOSE", 2, 1, 0, dim(0), dim(1)),
    reduce(3, 1, 0, "sum_dim", 1, 1), op("SOFTMAX", 4, 1, 0, dim(0), 0),
    create("ZEROS", 5, 0, F64, "(int64_t)1 << 60", 3, 0), op("REQUIRES_GRAD", 5, 1),
    op("NARROW", 6, 1, 5, dim(1), 1, 2, 0), op("CAT", 7, 1, 2, dim(1), 5, 5),
    op("INDEX", 8, 1, 5, dim(1), 0, 3, 0, 2, 2, 0), reduce(9, 1, 6, "sum"), backward(9),
    create("ZEROS", 10, 0, F32, 3, 0), create("ZEROS", 11, 0, F32, 2, 0), create("ONES", 12, 0, F32, 2),
    op("LINEAR", 13, 1, 10, 11, 12), print_(13), print_(0), print_(2, 1),
    create("ZEROS", 14, 0, F64, 0, "(int64_t)1 << 62"), op("REQUIRES_GRAD", 14, 1),
    op("TRANSPOSE", 15, 1, 14, dim(0), dim(1)), binary(9, 1, 14, 15, "matmul"), reduce(9, 1, 9, "sum"),
    backward(9),
])

# Sizes whose products and sums overflow.
SEEDS["overflow"] = b"".join([
    create("ONES", 0, 0, F32, 1), op("RESHAPE", 1, 1, 0, 2, size("274177"), size("67280421310721"), 0),
    create("ONES", 2, 0, F64, 5), op("NARROW", 3, 1, 2, dim(0), 1, size("INT64_MAX"), 0),
    create("ZEROS", 4, 0, F32, 0, "(int64_t)1 << 62"), op("CAT", 5, 1, 3, dim(1), 4, 4, 4),
    op("EXPAND", 6, 1, 0, 2, size("(int64_t)1 << 62"), size("(int64_t)1 << 62"), 0),
    create("ZEROS", 7, 0, F32, "(int64_t)1 << 62", "(int64_t)1 << 62"),
    create("ZEROS", 8, 0, F32, "INT64_MIN"), create("ZEROS", 9, 0, F32, *([2] * 9)),
])

# NaN and Inf data through reductions, softmax, losses and printing.
SEEDS["nan_inf"] = b"".join([
    create("FULL", 0, 0, F32, 2, 3, value="NAN"), create("FULL", 1, 0, F64, 4, value="INFINITY"),
    op("FROM", 2, 0, F32, 2, 2, 2, 0, 0, dbl("NAN"), dbl("INFINITY"), dbl("-INFINITY"), dbl("-0.0")),
    op("REQUIRES_GRAD", 2, 1), op("SOFTMAX", 3, 1, 2, dim(1), 1), reduce(4, 1, 2, "max"),
    op("LOSS", 5, 1, 2, 2, 1, 0, 1, 0), binary(6, 1, 3, 5, "add"), reduce(7, 1, 6, "sum"), backward(7),
    print_(0), print_(1), print_(2), op("SCALAR_OP", 8, 1, 2, 2, dbl("0.5"), 0), print_(8),
])

# A chain through NULL: every call keeps the first error.
SEEDS["null_chain"] = b"".join([
    create("ONES", 0, 0, F32, 2), create("ONES", 1, 0, F32, 3), binary(2, 1, 0, 1, "add"),
    unary(3, 1, NULL_SLOT, "exp"), op("INPLACE", NULL_SLOT, 0, 0, 0), op("COPY_TO", NULL_SLOT, 0, 0),
    op("GRAPH", NULL_SLOT, 1), print_(NULL_SLOT, 3), op("OPTIM_STEP", 8), backward(NULL_SLOT),
    op("ERRORS", 0), binary(4, NULL_CTX, 0, 0, "mul"), create("ZEROS", 5, NULL_CTX, F32, 1),
])

# Saved tensors changed in place, a second backward, a leaf in place.
SEEDS["versions"] = b"".join([
    leaf(0, 0, F32, 3), create("ONES", 1, 0, F32, 3), binary(2, 1, 0, 1, "mul"), reduce(3, 1, 2, "sum"),
    op("INPLACE", 1, 0, dbl("2.0"), 6), backward(3), op("INPLACE", 0, 0, dbl("1.0"), 5),
    op("GRAD_MODE", 0), op("INPLACE", 0, 1, dbl("1.0"), 2), op("GRAD_MODE", 1),
    unary(4, 1, 0, "exp"), reduce(5, 1, 4, "sum"), backward(5), backward(5), op("WRITE", 0, dbl("3.0")),
])

# Contexts reset under a graph, tracing, limits, settings.
SEEDS["contexts"] = b"".join([
    op("TRACE", 1), leaf(0, 0, F32, 4, 4), unary(1, 1, 0, "relu"), binary(2, 2, 1, 0, "mul"),
    op("CTX_RESET", 1), reduce(3, 2, 2, "sum"), leaf(4, 1, F64, 2), op("DETACH", 5, 4),
    settings(5, 3), create("ZEROS", 6, 0, F32, 100), settings(5, 0), create("ZEROS", 6, 0, F32, 100),
    settings(2, 1), settings(4, 7), op("TRACE", 0), op("CTX_RESET", 0), op("CTX_RESET", 2),
])

# Batched matmul with broadcast batches, losses, embedding, cat backward.
SEEDS["nn"] = b"".join([
    leaf(0, 0, F32, 2, 1, 3, 4), leaf(1, 0, F32, 3, 4, 2), op("BMM", 2, 1, 0, 1),
    leaf(3, 0, F64, 5, 3), op("INDEX", 4, 1, 3, dim(0), 1, 4, 0, 4, 1, 1, 0),
    op("LOSS", 5, 1, 4, 4, 1, 0, 0, 1, 2, 1), op("CAT", 6, 1, 2, dim(0), 4, 4),
    op("LOSS", 7, 1, 6, 6, 2), op("EXPAND", 8, 1, 3, 3, 2, 5, 3, 0), reduce(9, 1, 8, "sum"),
    reduce(10, 1, 2, "sum"), backward(10, threads=2), backward(9), backward(5), backward(7),
])


# Allocations failing from some point on (alone, or all later ones) in a
# parallel backward and an optimizer step.
SEEDS["fail_alloc"] = b"".join([
    op("FAIL_ALLOC", 2 * 12 + 1), SEEDS["parallel"], op("FAIL_ALLOC", 2 * 30), SEEDS["optim"],
    op("FAIL_ALLOC", 2 * 3), SEEDS["hooks"], op("FAIL_ALLOC", 255), SEEDS["basic"],
])


def tensors(*slots):
    """A list of slots as the target reads it: count + 1, then the slots."""
    return [len(slots) + 1] + list(slots)


def agrad(dst, ctx, outs, gouts, ins, create=False, retain=False, unused=False, threads=1):
    o = (1 if retain else 0) | (2 if create else 0) | (4 if unused else 0) | (0x20 if gouts is None else 0)
    return op("AUTOGRAD_GRAD", dst, ctx, *tensors(*outs), *tensors(*(gouts or [])), *tensors(*ins), o, threads)


def abackward(roots, ins=(), create=False, retain=False, threads=1):
    o = (1 if retain else 0) | (2 if create else 0) | 4 | (8 if not ins else 0)
    return op("AUTOGRAD_BACKWARD", *tensors(*roots), *tensors(), *tensors(*ins), o, threads)


def function(dst, ctx, ins, fwd=0, save=0, bwd=0, no_backward=False):
    return op("FUNCTION", dst, ctx, *tensors(*ins), fwd | save << 2 | bwd << 4 | (0x80 if no_backward else 0))


def node_hook(s, kind, mode=0, next_=None):
    path = 0 if next_ is None else 0x80 | next_
    return op("NODE_HOOK", s, path, kind | mode << 2)


# Gradients of gradients: grad with create_graph, then the gradient of
# that, then a backward through it (a third order), on 1 to 4 threads.
SEEDS["higher_order"] = b"".join([
    leaf(0, 0, F64, 3), unary(1, 1, 0, "tanh"), binary(2, 1, 1, 0, "mul"), reduce(3, 1, 2, "sum"),
    agrad(4, 1, [3], None, [0], create=True, threads=2), reduce(5, 1, 4, "sum"),
    agrad(6, 1, [5], None, [0], create=True, threads=3), reduce(7, 1, 6, "sum"),
    backward(7, threads=0, retain=True), op("GRAD", 0, 8), print_(8),
    abackward([7, 5], ins=[0], create=True, threads=4), op("GRAPH", 6, 0x55),
    agrad(9, 2, [3], [4], [0, 1], unused=True), agrad(9, 2, [3], None, [], threads=255),
    op("CTX_RESET", 1), agrad(10, 1, [NULL_SLOT], None, [0]),
])

# Custom functions: a good one, one whose backward fails in each way.
SEEDS["function"] = b"".join([
    leaf(0, 0, F64, 2, 3), leaf(1, 0, F64, 3), function(2, 1, [0, 1], fwd=3, save=0, bwd=0),
    reduce(3, 1, 2, "sum"), backward(3, retain=True), agrad(4, 1, [3], None, [0, 1], create=True),
    function(5, 1, [0], fwd=0, save=1, bwd=2), reduce(6, 1, 5, "sum"), backward(6, retain=True),
    function(7, 1, [0], fwd=1, bwd=3), reduce(8, 1, 7, "sum"), backward(8),
    function(9, 1, [0, 1], fwd=3, bwd=4), reduce(10, 1, 9, "sum"), backward(10),
    function(11, 1, [0], fwd=0, save=3, bwd=5), reduce(12, 1, 11, "sum"), backward(12),
    function(13, 1, [0], fwd=2, save=1), function(13, 1, [0], no_backward=True),
    function(14, 1, [0], bwd=6), reduce(15, 1, 14, "sum"), backward(15),
    op("GRADCHECK", *tensors(0, 1), 0, 0, 0, 0, 0), op("GRADCHECK", *tensors(0), 3, 2, 0, 0, 0),
    op("GRADCHECK", *tensors(0, 1), 2 | 0x80, 1, 0, 0, 0),
])

# Node hooks that replace, break and fail, removed twice; anomaly mode
# with a NaN-producing backward.
SEEDS["node_hooks"] = b"".join([
    leaf(0, 0, F32, 2, 2), unary(1, 1, 0, "exp"), unary(2, 1, 1, "sqrt"), reduce(3, 1, 2, "sum"),
    node_hook(2, 0, 2), node_hook(1, 1, 0), backward(3, retain=True, threads=2),
    node_hook(2, 2), node_hook(2, 2), node_hook(1, 1, 3), backward(3, retain=True),
    node_hook(1, 2), node_hook(1, 0, 4, next_=0), backward(3, retain=True, threads=3),
    node_hook(1, 2), node_hook(2, 1, 1), backward(3, retain=True), node_hook(2, 2),
    op("ANOMALY", 1), node_hook(2, 0, 5), backward(3, retain=True), node_hook(2, 2),
    create("FULL", 4, 0, F32, 2, 2, value="0.0"), binary(5, 1, 0, 4, "div"), reduce(6, 1, 5, "sum"),
    backward(6, retain=True), agrad(7, 1, [6], None, [0], create=True), op("ANOMALY", 0),
])


def main():
    out = HERE / "corpus" / "api"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("seed-*"):
        old.unlink()
    for name, data in SEEDS.items():
        (out / f"seed-{name}").write_bytes(data)
    print(f"{len(SEEDS)} seeds in {out}")


if __name__ == "__main__":
    main()
