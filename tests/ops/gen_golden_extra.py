"""Writes golden_extra.txt: PyTorch 1.13's values, gradients and node names
for dtype promotion, ag_to and the selection, joining and normalisation
ops (min, max/min over a dim, where, gather, stack, norm, layer_norm,
dropout, matmul's 1-D cases, mse_loss with broadcasting), for
test_golden_extra.c (which needs no PyTorch).
Run with Debian's python3-torch:  /usr/bin/python3 tests/ops/gen_golden_extra.py

Each case:
  case NAME OP NARGS ARGS...      the op and its number arguments
  in DTYPE NDIM SHAPE... VALUES   an operand that requires grad
  arg DTYPE NDIM SHAPE... VALUES  an operand that does not (a condition,
                                  an index given as values)
  out DTYPE NDIM SHAPE... VALUES  the result
  idx NDIM SHAPE... VALUES        the indices max/min over a dim return
  w DTYPE ...                     the loss weight: gradients of (out * w).sum()
  grad DTYPE ...                  one line per `in`, in order
  node NAME NUM_NEXT NEXT...      grad_fn's name and its next_functions
  end
Operands are listed in the op's argument order. Values are float.hex, so
C reads them exactly."""
import os
import warnings

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
F32, F64 = torch.float32, torch.float64
NAME = {F32: "f32", F64: "f64"}
INF, NAN = float("inf"), float("nan")
warnings.filterwarnings("ignore")


def fmt(t, tag):
    t = t.detach()
    head = [tag] + ([NAME[t.dtype]] if tag != "idx" else [])
    head += [str(t.dim())] + [str(s) for s in t.shape]
    vals = [float(v).hex() if tag != "idx" else str(int(v)) for v in t.reshape(-1).tolist()]
    return " ".join(head + vals) + "\n"


def randn(dtype, *shape):
    return torch.randn(shape, dtype=F64).to(dtype)


def node_line(fn):
    nxt = [n.name().replace("torch::autograd::", "") if n is not None else "None" for n, _ in fn.next_functions]
    return "node %s %d %s\n" % (fn.name(), len(nxt), " ".join(nxt))


def case(name, op, args, operands, fn):
    """operands: list of (tensor, requires_grad); fn(*tensors) -> out or (out, indices)."""
    ts = []
    lines = ["case %s %s %d %s\n" % (name, op, len(args), " ".join(repr(float(a)) for a in args))]
    for t, rg in operands:
        t = t.detach().clone().requires_grad_(rg)
        ts.append(t)
        lines.append(fmt(t, "in" if rg else "arg"))
    res = fn(*ts)
    idx = None
    if isinstance(res, tuple):
        res, idx = res
    lines.append(fmt(res, "out"))
    if idx is not None:
        lines.append(fmt(idx, "idx"))
    w = torch.randn(res.shape, dtype=F64).to(res.dtype)
    lines.append(fmt(w, "w"))
    (res * w).sum().backward()
    for t, (_, rg) in zip(ts, operands):
        if rg:
            lines.append(fmt(t.grad if t.grad is not None else torch.zeros_like(t), "grad"))
    lines.append(node_line(res.grad_fn))
    lines.append("end\n")
    return lines


def promotion_cases():
    out = []
    binary = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
              "maximum": torch.maximum}
    shapes = [((2, 3), (2, 3)), ((2, 3), (3,)), ((3,), ()), ((), (2, 2)), ((), ())]
    for op, f in binary.items():
        for i, (sa, sb) in enumerate(shapes):
            for da, db in ((F32, F64), (F64, F32)):
                out += case("%s_%s_%s_%d" % (op, NAME[da], NAME[db], i), op, [],
                            [(randn(da, *sa), True), (randn(db, *sb), True)], f)
    pos = lambda dt, *s: (torch.rand(s, dtype=F64) + 0.5).to(dt)  # noqa: E731
    out += case("pow_f32_f64", "pow", [], [(pos(F32, 2, 3), True), (randn(F64, 3), True)], torch.pow)
    out += case("pow_f64_0d_f32", "pow", [], [(pos(F64), True), (randn(F32, 4), True)], torch.pow)
    # mse_loss of mixed dtypes: 1.13's backward fails ("Found dtype Double
    # but expected Float"); agrad's works (README, Differences).
    out += case("mse_bcast", "mse_loss", [], [(randn(F64, 3), True), (randn(F64, 2, 3), True)], F.mse_loss)
    out += case("mse_bcast_both", "mse_loss", [], [(randn(F64, 2, 1), True), (randn(F64, 1, 3), True)],
                F.mse_loss)
    out += case("mse_bcast_f32", "mse_loss", [], [(randn(F32, 4, 1, 2), True), (randn(F32, 3, 1), True)],
                F.mse_loss)
    out += case("mse_bcast_target", "mse_loss", [], [(randn(F64, 2, 3), True), (randn(F64, 3), False)],
                F.mse_loss)
    out += case("cat_mixed", "cat", [0], [(randn(F32, 2, 3), True), (randn(F64, 1, 3), True)],
                lambda a, b: torch.cat([a, b], 0))
    out += case("to_f64", "to_f64", [], [(randn(F32, 2, 3), True)], lambda a: a.to(F64))
    out += case("to_f32", "to_f32", [], [(randn(F64, 4), True)], lambda a: a.to(F32))
    out += case("to_f32_0d", "to_f32", [], [(randn(F64), True)], lambda a: a.to(F32))
    return out


def select_cases():
    out = []
    ties = lambda dt: torch.tensor([[1., 3., 3.], [NAN, 2., NAN], [-1., -1., -5.]], dtype=dt)  # noqa: E731
    for dt in (F64, F32):
        n = NAME[dt]
        out += case("min_" + n, "min", [], [(randn(dt, 3, 4), True)], torch.min)
        out += case("min_ties_" + n, "min", [], [(torch.tensor([2., -1., 5., -1.], dtype=dt), True)], torch.min)
        out += case("min_nan_" + n, "min", [], [(torch.tensor([2., NAN, -5., NAN], dtype=dt), True)], torch.min)
        out += case("min_0d_" + n, "min", [], [(randn(dt), True)], torch.min)
        for op, f in (("max_dim", torch.max), ("min_dim", torch.min)):
            for dim, keep in ((0, 0), (1, 1), (-1, 0), (2, 1)):
                out += case("%s_%d_%d_%s" % (op, dim, keep, n), op, [dim, keep], [(randn(dt, 2, 3, 4), True)],
                            lambda a, d=dim, k=keep, f=f: tuple(f(a, d, keepdim=bool(k))))
            out += case("%s_ties_%s" % (op, n), op, [1, 0], [(ties(dt), True)],
                        lambda a, f=f: tuple(f(a, 1)))
            out += case("%s_0d_%s" % (op, n), op, [0, 0], [(randn(dt), True)],
                        lambda a, f=f: tuple(f(a, 0)))
            out += case("%s_empty_%s" % (op, n), op, [1, 1], [(randn(dt, 0, 3), True)],
                        lambda a, f=f: tuple(f(a, 1, keepdim=True)))
        cond = lambda *s: (torch.rand(s) > 0.5).double()  # noqa: E731
        out += case("where_" + n, "where", [], [(cond(2, 3), False), (randn(dt, 2, 3), True), (randn(dt, 2, 3), True)],
                    lambda c, a, b: torch.where(c != 0, a, b))
        out += case("where_bcast_" + n, "where", [],
                    [(cond(3, 1), False), (randn(dt, 4), True), (randn(dt, 2, 1, 1), True)],
                    lambda c, a, b: torch.where(c != 0, a, b))
        out += case("where_0d_" + n, "where", [], [(cond(2, 2), False), (randn(dt), True), (randn(dt, 2), True)],
                    lambda c, a, b: torch.where(c != 0, a, b))
        out += case("where_nan_cond_" + n, "where", [],
                    [(torch.tensor([NAN, 0., -0., 2.], dtype=F32), False), (randn(dt, 4), True), (randn(dt, 4), True)],
                    lambda c, a, b: torch.where(c != 0, a, b))
        idx = lambda hi, *s: torch.randint(0, hi, s).double()  # noqa: E731
        for name, shape, dim, ishape in (("rows", (3, 4), 1, (3, 2)), ("cols", (3, 4), 0, (5, 4)),
                                         ("small", (3, 4), 1, (2, 3)), ("3d", (2, 3, 4), 1, (2, 5, 3)),
                                         ("neg_dim", (2, 3, 4), -1, (1, 2, 6)), ("1d", (5,), 0, (7,)),
                                         ("0d", (), 0, ())):
            size = shape[dim] if shape else 1
            out += case("gather_%s_%s" % (name, n), "gather", [dim], [(randn(dt, *shape), True), (idx(size, *ishape), False)],
                        lambda a, i, d=dim: torch.gather(a, d, i.long()))
    out += case("where_mixed", "where", [], [(torch.tensor([1., 0., 1.]), False), (randn(F32, 3), True), (randn(F64, 3), True)],
                lambda c, a, b: torch.where(c != 0, a, b))
    return out


def stack_cases():
    out = []
    for dt in (F64, F32):
        n = NAME[dt]
        for name, shape, dim, k in (("d0", (2, 3), 0, 3), ("d1", (2, 3), 1, 2), ("last", (2, 3), -1, 2),
                                    ("first_neg", (4,), -2, 3), ("0d", (), 0, 4), ("one", (3, 2), 1, 1),
                                    ("empty", (0, 3), 1, 2)):
            out += case("stack_%s_%s" % (name, n), "stack", [dim], [(randn(dt, *shape), True) for _ in range(k)],
                        lambda *ts, d=dim: torch.stack(ts, d))
    out += case("stack_mixed", "stack", [0], [(randn(F32, 3), True), (randn(F64, 3), True), (randn(F32, 3), True)],
                lambda *ts: torch.stack(ts, 0))
    out += case("stack_some_grad", "stack", [1], [(randn(F64, 2), True), (randn(F64, 2), False)],
                lambda *ts: torch.stack(ts, 1))
    return out


def matmul_cases():
    out = []
    for dt in (F64, F32):
        n = NAME[dt]
        for name, sa, sb in (("dot", (5,), (5,)), ("mv", (3, 4), (4,)), ("vm", (4,), (4, 3)),
                             ("dot_empty", (0,), (0,)), ("mv_empty", (0, 4), (4,)), ("vm_one", (1,), (1, 2))):
            out += case("matmul_%s_%s" % (name, n), "matmul", [], [(randn(dt, *sa), True), (randn(dt, *sb), True)],
                        torch.matmul)
    out += case("matmul_mv_const_vec", "matmul", [], [(randn(F64, 2, 3), True), (randn(F64, 3), False)],
                torch.matmul)
    return out


def norm_cases():
    out = []
    for dt in (F64, F32):
        n = NAME[dt]
        for p in (1, 2, INF, 3, 0.5):
            pn = "inf" if p == INF else str(p).replace(".", "_")
            out += case("norm_%s_%s" % (pn, n), "norm", [p], [(randn(dt, 3, 4), True)], lambda a, p=p: a.norm(p))
            out += case("norm_zero_%s_%s" % (pn, n), "norm", [p], [(torch.zeros(3, dtype=dt), True)],
                        lambda a, p=p: a.norm(p))
            out += case("norm_0d_%s_%s" % (pn, n), "norm", [p], [(randn(dt), True)], lambda a, p=p: a.norm(p))
        out += case("norm_inf_ties_" + n, "norm", [INF], [(torch.tensor([1., -3., 3., 0.], dtype=dt), True)],
                    lambda a: a.norm(INF))
        out += case("norm_1_zeros_" + n, "norm", [1], [(torch.tensor([1., -3., 0., -0.], dtype=dt), True)],
                    lambda a: a.norm(1))
        out += case("dropout_p1_" + n, "dropout", [1], [(randn(dt, 2, 3), True)], lambda a: F.dropout(a, 1.0))
        out += case("norm_2_empty_" + n, "norm", [2], [(randn(dt, 0, 3), True)], lambda a: a.norm(2))
    return out


def main():
    torch.manual_seed(1513)
    lines = promotion_cases() + select_cases() + stack_cases() + matmul_cases() + norm_cases()
    with open(os.path.join(HERE, "golden_extra.txt"), "w") as f:
        f.write("# generated by gen_golden_extra.py with torch %s\n" % torch.__version__)
        f.writelines(lines)


if __name__ == "__main__":
    main()
