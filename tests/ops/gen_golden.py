"""Writes golden_ops.txt: PyTorch 1.13's forward values, gradients and node
names for every agrad op, in float32 and float64, for test_golden.c.
Run with Debian's python3-torch:  /usr/bin/python3 tests/ops/gen_golden.py

Each case: `case NAME OP DTYPE NIN A0 A1` (A0, A1: the op's scalar/int
arguments), then NIN `in` lines, the `out` line, the loss weight `w` (the
gradients are those of (out * w).sum()), one `grad` line per input and
`node NAME NUM_NEXT`. A tensor line is `ndim shape... values...` with
values as float.hex, so C reads them exactly."""
import os
import torch

torch.manual_seed(1234)
HERE = os.path.dirname(os.path.abspath(__file__))


def positive(*shape):
    return torch.rand(*shape, dtype=torch.float64) + 0.5


def away_from_zero(*shape):
    x = torch.randn(*shape, dtype=torch.float64)
    return x + 0.2 * torch.sign(x)


def ints(*shape):
    return torch.randint(-3, 4, shape).double()


# name, op, input makers, (a0, a1), torch function
CASES = [
    ("add_same", "add", [lambda: torch.randn(3, 4), lambda: torch.randn(3, 4)], (0, 0), torch.add),
    ("add_bcast_col_row", "add", [lambda: torch.randn(3, 1), lambda: torch.randn(1, 4)], (0, 0), torch.add),
    ("add_bcast_rank", "add", [lambda: torch.randn(2, 3, 4), lambda: torch.randn(4)], (0, 0), torch.add),
    ("add_scalar_tensor", "add", [lambda: torch.randn(()), lambda: torch.randn(2, 3)], (0, 0), torch.add),
    ("sub_bcast", "sub", [lambda: torch.randn(4), lambda: torch.randn(2, 1, 4)], (0, 0), torch.sub),
    ("sub_same", "sub", [lambda: torch.randn(5), lambda: torch.randn(5)], (0, 0), torch.sub),
    ("mul_same", "mul", [lambda: torch.randn(2, 3), lambda: torch.randn(2, 3)], (0, 0), torch.mul),
    ("mul_bcast", "mul", [lambda: torch.randn(2, 3, 4), lambda: torch.randn(3, 1)], (0, 0), torch.mul),
    ("mul_ties", "mul", [lambda: ints(4, 1), lambda: ints(1, 3)], (0, 0), torch.mul),
    ("div_same", "div", [lambda: torch.randn(3, 3), lambda: away_from_zero(3, 3)], (0, 0), torch.div),
    ("div_bcast", "div", [lambda: torch.randn(2, 1, 3), lambda: away_from_zero(4, 1)], (0, 0), torch.div),
    ("add_scalar", "add_scalar", [lambda: torch.randn(2, 3)], (2.5, 0), lambda a, s, _: a + s),
    ("mul_scalar", "mul_scalar", [lambda: torch.randn(2, 3)], (-1.5, 0), lambda a, s, _: a * s),
    ("pow2", "pow_scalar", [lambda: torch.randn(6)], (2, 0), lambda a, s, _: a ** s),
    ("pow3", "pow_scalar", [lambda: torch.randn(2, 2)], (3, 0), lambda a, s, _: a ** s),
    ("pow_half", "pow_scalar", [lambda: positive(5)], (0.5, 0), lambda a, s, _: a ** s),
    ("pow_neg", "pow_scalar", [lambda: positive(5)], (-1.5, 0), lambda a, s, _: a ** s),
    ("pow0", "pow_scalar", [lambda: torch.randn(4)], (0, 0), lambda a, s, _: a ** s),
    ("neg", "neg", [lambda: torch.randn(3, 2)], (0, 0), lambda a, *_: -a),
    ("sqrt", "sqrt", [lambda: positive(3, 2)], (0, 0), lambda a, *_: a.sqrt()),
    ("exp", "exp", [lambda: torch.randn(7)], (0, 0), lambda a, *_: a.exp()),
    ("log", "log", [lambda: positive(2, 4)], (0, 0), lambda a, *_: a.log()),
    ("tanh", "tanh", [lambda: torch.randn(2, 5)], (0, 0), lambda a, *_: a.tanh()),
    ("sigmoid", "sigmoid", [lambda: torch.randn(2, 5)], (0, 0), lambda a, *_: a.sigmoid()),
    ("relu", "relu", [lambda: away_from_zero(3, 4)], (0, 0), lambda a, *_: a.relu()),
    ("sum", "sum", [lambda: torch.randn(3, 4)], (0, 0), lambda a, *_: a.sum()),
    ("sum_0d", "sum", [lambda: torch.randn(())], (0, 0), lambda a, *_: a.sum()),
    ("sum_dim0", "sum_dim", [lambda: torch.randn(3, 4)], (0, 0), lambda a, d, k: a.sum(int(d), keepdim=bool(k))),
    ("sum_dim1_keep", "sum_dim", [lambda: torch.randn(3, 4)], (1, 1), lambda a, d, k: a.sum(int(d), keepdim=bool(k))),
    ("sum_dim_neg", "sum_dim", [lambda: torch.randn(2, 3, 4)], (-2, 0), lambda a, d, k: a.sum(int(d), keepdim=bool(k))),
    ("mean", "mean", [lambda: torch.randn(4, 5)], (0, 0), lambda a, *_: a.mean()),
    ("mean_dim", "mean_dim", [lambda: torch.randn(2, 3, 4)], (2, 0), lambda a, d, k: a.mean(int(d), keepdim=bool(k))),
    ("mean_dim_keep", "mean_dim", [lambda: torch.randn(2, 3, 4)], (0, 1), lambda a, d, k: a.mean(int(d), keepdim=bool(k))),
    ("max", "max", [lambda: torch.randn(3, 4)], (0, 0), lambda a, *_: a.max()),
    ("max_ties", "max", [lambda: torch.tensor([1.0, 3.0, -2.0, 3.0, 3.0])], (0, 0), lambda a, *_: a.max()),
    ("matmul", "matmul", [lambda: torch.randn(3, 5), lambda: torch.randn(5, 2)], (0, 0), torch.mm),
    ("matmul_vecs", "matmul", [lambda: torch.randn(1, 7), lambda: torch.randn(7, 1)], (0, 0), torch.mm),
    # agrad's reshape is a view (API.md names its node ViewBackward0): compare with view()
    ("reshape", "reshape", [lambda: torch.randn(2, 6)], (3, 4), lambda a, r, c: a.view(int(r), int(c))),
    ("reshape_infer", "reshape", [lambda: torch.randn(2, 3, 2)], (-1, 3), lambda a, r, c: a.view(int(r), int(c))),
    ("transpose", "transpose", [lambda: torch.randn(3, 4)], (0, 1), lambda a, d0, d1: a.transpose(int(d0), int(d1))),
    ("transpose_3d", "transpose", [lambda: torch.randn(2, 3, 4)], (0, -1), lambda a, d0, d1: a.transpose(int(d0), int(d1))),
    ("clone", "clone", [lambda: torch.randn(2, 2)], (0, 0), lambda a, *_: a.clone()),
]


def tline(tag, t):
    t = t.detach()
    vals = " ".join(float(v).hex() for v in t.flatten().tolist())
    return "%s %d %s %s\n" % (tag, t.dim(), " ".join(str(s) for s in t.shape), vals)


def main():
    out_lines = []
    for dtype in (torch.float64, torch.float32):
        for name, op, makers, (a0, a1), fn in CASES:
            ins = [m().to(dtype).requires_grad_(True) for m in makers]
            if len(ins) == 2:
                out = fn(ins[0], ins[1])
            else:
                out = fn(ins[0], a0, a1)
            w = torch.randn(out.shape, dtype=torch.float64).to(dtype)
            (out * w).sum().backward()
            out_lines.append("case %s %s %s %d %r %r\n" % (name, op, "f64" if dtype == torch.float64 else "f32",
                                                          len(ins), float(a0), float(a1)))
            for t in ins:
                out_lines.append(tline("in", t))
            out_lines.append(tline("out", out))
            out_lines.append(tline("w", w))
            for t in ins:
                out_lines.append(tline("grad", t.grad))
            out_lines.append("node %s %d\n" % (type(out.grad_fn).__name__, len(out.grad_fn.next_functions)))
    with open(os.path.join(HERE, "golden_ops.txt"), "w") as f:
        f.write("# generated by gen_golden.py with torch %s\n" % torch.__version__)
        f.writelines(out_lines)


if __name__ == "__main__":
    main()
