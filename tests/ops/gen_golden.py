"""Writes golden_ops.txt: PyTorch 1.13's forward values, gradients, node
names, edges and second-backward behaviour for every agrad op, in float64
and float32, for test_golden.c (which needs no PyTorch).
Run with Debian's python3-torch:  /usr/bin/python3 tests/ops/gen_golden.py

Each case:
  case NAME OP DTYPE NIN SHARED A0 A1
      A0, A1: the op's scalar/int arguments; SHARED 1: a binary op applied
      to one tensor twice, op(x, x), with NIN 1
  in ...            NIN lines, the inputs (all require grad)
  out ...           the op's result
  w ...             the loss weight: the gradients are those of (out * w).sum()
  grad ...          NIN lines, each input's .grad
  node NAME NUM_NEXT NEXT... AGAIN
      grad_fn's name, len(next_functions) and each one's name (None for a
      missing edge); AGAIN 1 when out.backward(w) may run once more after
      that backward (the node saved no tensors), 0 when PyTorch refuses.
A tensor line is `TAG NDIM SHAPE... VALUES...` with values as float.hex,
so C reads them exactly. Inputs are drawn in float64 and rounded to the
case's dtype."""
import os
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
NAN = float("nan")


def randn(*shape):
    return lambda: torch.randn(shape, dtype=torch.float64)


def positive(*shape):
    return lambda: torch.rand(shape, dtype=torch.float64) + 0.5


def away_from_zero(*shape):
    def make():
        x = torch.randn(shape, dtype=torch.float64)
        return x + 0.2 * torch.sign(x)
    return make


def ints(*shape):
    return lambda: torch.randint(-3, 4, shape).double()


def const(values):
    return lambda: torch.tensor(values, dtype=torch.float64)


def dim_op(method):
    return lambda a, d, k: getattr(a, method)(int(d), keepdim=bool(k))


def view(a, r, c):
    # agrad's reshape is a view whose node API.md names ViewBackward0: in
    # 1.13 torch.reshape records ReshapeAliasBackward0 for the same thing,
    # so the reference is view() (same values, gradients and saved state).
    return a.view(int(r), int(c))


def transpose(a, d0, d1):
    return a.transpose(int(d0), int(d1))


def pow_(a, s, _):
    return a ** s


BINARY = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}

# name, op, input makers, (a0, a1), torch function; SHARED cases have one
# maker and a binary op.
CASES = [
    ("add_same", "add", [randn(3, 4), randn(3, 4)], (0, 0)),
    ("add_bcast_col_row", "add", [randn(3, 1), randn(1, 4)], (0, 0)),
    ("add_bcast_rank", "add", [randn(2, 3, 4), randn(4)], (0, 0)),
    ("add_0d_tensor", "add", [randn(), randn(2, 3)], (0, 0)),
    ("add_tensor_0d", "add", [randn(2, 3), randn()], (0, 0)),
    ("add_0d_0d", "add", [randn(), randn()], (0, 0)),
    ("add_shared", "add", [randn(2, 3)], (0, 0)),
    ("sub_bcast", "sub", [randn(4), randn(2, 1, 4)], (0, 0)),
    ("sub_same", "sub", [randn(5), randn(5)], (0, 0)),
    ("sub_tensor_0d", "sub", [randn(2, 3), randn()], (0, 0)),
    ("sub_shared", "sub", [randn(3)], (0, 0)),
    ("mul_same", "mul", [randn(2, 3), randn(2, 3)], (0, 0)),
    ("mul_bcast", "mul", [randn(2, 3, 4), randn(3, 1)], (0, 0)),
    ("mul_bcast_both", "mul", [randn(4, 1, 3), randn(2, 1)], (0, 0)),
    ("mul_ties", "mul", [ints(4, 1), ints(1, 3)], (0, 0)),
    ("mul_0d_tensor", "mul", [randn(), randn(3, 2)], (0, 0)),
    ("mul_shared", "mul", [randn(3, 3)], (0, 0)),
    ("div_same", "div", [randn(3, 3), away_from_zero(3, 3)], (0, 0)),
    ("div_bcast", "div", [randn(2, 1, 3), away_from_zero(4, 1)], (0, 0)),
    ("div_tensor_0d", "div", [randn(2, 3), away_from_zero()], (0, 0)),
    ("div_0d_tensor", "div", [randn(), away_from_zero(2, 2)], (0, 0)),
    ("div_shared", "div", [away_from_zero(4)], (0, 0)),
    ("add_scalar", "add_scalar", [randn(2, 3)], (2.5, 0)),
    ("add_scalar_0d", "add_scalar", [randn()], (-0.1, 0)),
    ("mul_scalar", "mul_scalar", [randn(2, 3)], (-1.5, 0)),
    ("mul_scalar_third", "mul_scalar", [randn(5)], (1 / 3, 0)),
    ("pow2", "pow_scalar", [randn(6)], (2, 0)),
    ("pow3", "pow_scalar", [randn(2, 2)], (3, 0)),
    ("pow1", "pow_scalar", [randn(3)], (1, 0)),
    ("pow0", "pow_scalar", [randn(4)], (0, 0)),
    ("pow_half", "pow_scalar", [positive(5)], (0.5, 0)),
    ("pow_neg_half", "pow_scalar", [positive(5)], (-0.5, 0)),
    ("pow_neg1", "pow_scalar", [away_from_zero(5)], (-1, 0)),
    ("pow_neg2", "pow_scalar", [away_from_zero(5)], (-2, 0)),
    ("pow_neg_1_5", "pow_scalar", [positive(5)], (-1.5, 0)),
    ("pow_2_5", "pow_scalar", [positive(2, 3)], (2.5, 0)),
    ("neg", "neg", [randn(3, 2)], (0, 0)),
    ("sqrt", "sqrt", [positive(3, 2)], (0, 0)),
    ("exp", "exp", [randn(7)], (0, 0)),
    ("log", "log", [positive(2, 4)], (0, 0)),
    ("tanh", "tanh", [randn(2, 5)], (0, 0)),
    ("sigmoid", "sigmoid", [randn(2, 5)], (0, 0)),
    ("relu", "relu", [away_from_zero(3, 4)], (0, 0)),
    ("relu_edges", "relu", [const([0.0, -0.0, NAN, 1.5, -2.0, 1e-300])], (0, 0)),
    ("sum", "sum", [randn(3, 4)], (0, 0)),
    ("sum_0d", "sum", [randn()], (0, 0)),
    ("sum_empty", "sum", [randn(0, 3)], (0, 0)),
    ("sum_dim0", "sum_dim", [randn(3, 4)], (0, 0)),
    ("sum_dim1_keep", "sum_dim", [randn(3, 4)], (1, 1)),
    ("sum_dim_neg", "sum_dim", [randn(2, 3, 4)], (-2, 0)),
    ("sum_dim_last_keep", "sum_dim", [randn(2, 3, 4)], (2, 1)),
    ("sum_dim_0d", "sum_dim", [randn()], (-1, 0)),
    ("sum_dim_empty", "sum_dim", [randn(0, 3)], (0, 0)),
    ("mean", "mean", [randn(4, 5)], (0, 0)),
    ("mean_third", "mean", [randn(3)], (0, 0)),
    ("mean_empty", "mean", [randn(0)], (0, 0)),
    ("mean_dim", "mean_dim", [randn(2, 3, 4)], (2, 0)),
    ("mean_dim_keep", "mean_dim", [randn(2, 3, 4)], (0, 1)),
    ("mean_dim_neg_keep", "mean_dim", [randn(3, 4)], (-1, 1)),
    ("mean_dim_mid", "mean_dim", [randn(2, 3, 4)], (1, 0)),
    ("mean_dim_empty", "mean_dim", [randn(0, 3)], (0, 0)),
    ("max", "max", [randn(3, 4)], (0, 0)),
    ("max_ties", "max", [const([1.0, 3.0, -2.0, 3.0, 3.0])], (0, 0)),
    ("max_nan", "max", [const([1.0, NAN, 3.0, NAN])], (0, 0)),
    ("max_0d", "max", [randn()], (0, 0)),
    ("matmul", "matmul", [randn(3, 5), randn(5, 2)], (0, 0)),
    ("matmul_inner", "matmul", [randn(1, 7), randn(7, 1)], (0, 0)),
    ("matmul_outer", "matmul", [randn(5, 1), randn(1, 4)], (0, 0)),
    ("matmul_wide", "matmul", [randn(2, 37), randn(37, 3)], (0, 0)),
    ("matmul_shared", "matmul", [randn(4, 4)], (0, 0)),
    ("reshape", "reshape", [randn(2, 6)], (3, 4)),
    ("reshape_infer", "reshape", [randn(2, 3, 2)], (-1, 3)),
    ("reshape_infer_cols", "reshape", [randn(6)], (2, -1)),
    ("transpose", "transpose", [randn(3, 4)], (0, 1)),
    ("transpose_3d", "transpose", [randn(2, 3, 4)], (0, -1)),
    ("transpose_3d_last", "transpose", [randn(2, 3, 4)], (-1, 1)),
    ("transpose_3d_first", "transpose", [randn(2, 3, 4)], (1, 0)),
    ("transpose_same", "transpose", [randn(2, 3)], (1, 1)),
    ("clone", "clone", [randn(2, 2)], (0, 0)),
    ("clone_0d", "clone", [randn()], (0, 0)),
]

FUNCS = {
    "add_scalar": lambda a, s, _: a + s,
    "mul_scalar": lambda a, s, _: a * s,
    "pow_scalar": pow_,
    "neg": lambda a, *_: -a,
    "sqrt": lambda a, *_: a.sqrt(),
    "exp": lambda a, *_: a.exp(),
    "log": lambda a, *_: a.log(),
    "tanh": lambda a, *_: a.tanh(),
    "sigmoid": lambda a, *_: a.sigmoid(),
    "relu": lambda a, *_: a.relu(),
    "sum": lambda a, *_: a.sum(),
    "sum_dim": dim_op("sum"),
    "mean": lambda a, *_: a.mean(),
    "mean_dim": dim_op("mean"),
    "max": lambda a, *_: a.max(),
    "reshape": view,
    "transpose": transpose,
    "clone": lambda a, *_: a.clone(),
}


def tline(tag, t):
    t = t.detach()
    vals = " ".join(float(v).hex() for v in t.flatten().tolist())
    return "%s %d %s %s\n" % (tag, t.dim(), " ".join(str(s) for s in t.shape), vals)


def next_name(nf):
    return "None" if nf[0] is None else type(nf[0]).__name__


def run_case(name, op, makers, a0, a1, dtype):
    binary = op in BINARY or op == "matmul"
    shared = binary and len(makers) == 1
    ins = [m().to(dtype).requires_grad_(True) for m in makers]
    if op == "matmul":
        out = torch.mm(ins[0], ins[-1])
    elif binary:
        out = BINARY[op](ins[0], ins[-1])
    else:
        out = FUNCS[op](ins[0], a0, a1)
    w = torch.randn(out.shape, dtype=torch.float64).to(dtype)
    (out * w).sum().backward()
    node = out.grad_fn
    nexts = [next_name(nf) for nf in node.next_functions]
    try:
        out.backward(w)
        again = 1
    except RuntimeError as e:
        assert "second time" in str(e), str(e)
        again = 0
    lines = ["case %s %s %s %d %d %r %r\n" % (name, op, "f64" if dtype == torch.float64 else "f32", len(ins),
                                               int(shared), float(a0), float(a1))]
    lines += [tline("in", t) for t in ins]
    lines.append(tline("out", out))
    lines.append(tline("w", w))
    # the grads of the first backward: the second one (when allowed) added
    # to them again, so recompute from scratch
    for t in ins:
        t.grad = None
    out2 = torch.mm(ins[0], ins[-1]) if op == "matmul" else (
        BINARY[op](ins[0], ins[-1]) if binary else FUNCS[op](ins[0], a0, a1))
    (out2 * w).sum().backward()
    lines += [tline("grad", t.grad) for t in ins]
    lines.append("node %s %d %s %d\n" % (type(node).__name__, len(nexts), " ".join(nexts), again))
    return lines


def main():
    torch.manual_seed(1234)
    lines = []
    for dtype in (torch.float64, torch.float32):
        for name, op, makers, (a0, a1) in CASES:
            lines += run_case(name, op, makers, a0, a1, dtype)
    with open(os.path.join(HERE, "golden_ops.txt"), "w") as f:
        f.write("# generated by gen_golden.py with torch %s\n" % torch.__version__)
        f.writelines(lines)


if __name__ == "__main__":
    main()
