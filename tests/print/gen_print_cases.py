"""Writes print_cases.txt: what PyTorch 1.13's print(t) shows for a broad
set of float tensors, for test_print.c (CI does not need PyTorch).
Run with Debian's python3-torch: /usr/bin/python3 tests/print/gen_print_cases.py

A case is three lines: `case NAME DTYPE NDIM SHAPE... FLAGS GRADFN`, the values
as float.hex, the expected string with newlines written as \\n.

`gen_print_cases.py --fuzz N PATH [SEED]` writes N random cases to PATH
instead; run test_print with AGRAD_PRINT_CASES=PATH to compare against them
(a local check, too large to commit)."""
import os
import random
import sys

import torch

torch.manual_seed(5)
HERE = os.path.dirname(os.path.abspath(__file__))
nan, inf = float("nan"), float("inf")

CASES = [
    ("api_2x2", torch.tensor([[1., 2.], [3., 4.]])),
    ("api_grads", torch.tensor([10.24, 1024., 0.1024])),
    ("scalar_int", torch.tensor(10.)),
    ("scalar_frac", torch.tensor(8.6379)),
    ("scalar_neg", torch.tensor(-0.5)),
    ("scalar_big", torch.tensor(123456789.0)),
    ("scalar_tiny", torch.tensor(1e-7)),
    ("vec_mixed", torch.tensor([-1.5981, -0.8342, 1.3817])),
    ("vec_int", torch.tensor([3., 3., 3., 3.])),
    ("vec_int_neg", torch.tensor([-3., 10., 200.])),
    ("vec_int_sci", torch.tensor([1., 2000.])),
    ("vec_int_huge", torch.tensor([1e9, 1.])),
    ("vec_sci_small", torch.tensor([1e-5, 1.0])),
    ("vec_sci_range", torch.tensor([0.001, 2.0, 3000.0])),
    ("vec_zeros", torch.zeros(5)),
    ("vec_nan_inf", torch.tensor([nan, inf, -inf, 1.5])),
    ("vec_nan_int", torch.tensor([nan, 2., -inf])),
    ("vec_neg_zero", torch.tensor([-0.0, 1.5])),
    ("vec_neg_zero_int", torch.tensor([-0.0, 2.0])),
    ("vec_all_nan", torch.tensor([nan, nan])),
    ("vec_round", torch.tensor([0.00005, 0.99995, 2.5, 1e-4])),
    ("vec_long", torch.randn(40)),
    ("vec_long_int", torch.arange(30.)),
    ("mat_randn", torch.randn(3, 4)),
    ("mat_wide", torch.randn(2, 25)),
    ("mat_sci", torch.tensor([[1e-8, 2.0], [3.0, 4e6]])),
    ("t3d", torch.randn(2, 3, 4)),
    ("t4d", torch.randn(2, 2, 2, 2)),
    ("t3d_int", torch.arange(24.).reshape(2, 3, 4)),
    ("big_1000", torch.randn(1000)),
    ("big_1001", torch.randn(1001)),
    ("big_mat", torch.randn(40, 40)),
    ("big_3d", torch.randn(10, 11, 12)),
    ("big_sci", torch.cat([torch.randn(1500), torch.tensor([1e6])])),
    ("empty_1d", torch.zeros(0)),
    ("empty_2d", torch.zeros(0, 3)),
    ("empty_3d", torch.zeros(2, 0, 3)),
    ("one_elem_2d", torch.tensor([[7.25]])),
]



def extra_cases():
    """Cases added later, made in float64 from their literals (each also
    emitted in float32); built after reseeding so the cases above stay put."""
    d = torch.float64
    return [
        # fixed mode with values on or next to a tie at the 4th decimal
        ("round_half", torch.tensor([0.00015, 0.00025, 0.12345, 0.09995, 0.00035, 0.0625], dtype=d)),
        ("round_carry", torch.tensor([9.99995, 99.99995, 0.5, 399.99995, 2.5, 1.00005], dtype=d)),
        ("sci_round", torch.tensor([9.99995e-5, 1.23455e7, 0.5], dtype=d)),
        ("sci_neg", torch.tensor([-1e-7, 3.0, -2.5e5], dtype=d)),
        ("sci_exp3", torch.tensor([1e-300, 1.0, -1e300], dtype=d)),
        ("subnormal", torch.tensor([5e-324, 1.0], dtype=d)),
        ("subnormal_f32", torch.tensor([1e-45, 1.0])),
        ("int_sci_huge", torch.tensor([1., 1e10, -3.], dtype=d)),
        ("int_big_fixed", torch.tensor([99999999., -100000000.], dtype=d)),
        ("int_neg_zero_mix", torch.tensor([-0., 0., 5., nan], dtype=d)),
        ("ratio_edge_in", torch.tensor([1., 1000.], dtype=d)),
        ("ratio_edge_in_frac", torch.tensor([0.5, 500.], dtype=d)),
        ("ratio_edge_out", torch.tensor([0.5, 500.25], dtype=d)),
        ("min_edge", torch.tensor([1e-4, 0.05], dtype=d)),
        ("min_edge_below", torch.tensor([9.9e-5, 0.05], dtype=d)),
        ("max_edge", torch.tensor([1e8 + 0.5, 1e6], dtype=d)),
        ("all_zero_neg", torch.tensor([-0., -0.], dtype=d)),
        ("inf_only", torch.tensor([inf, -inf, nan, 0.], dtype=d)),
        ("scalar_nan", torch.tensor(nan, dtype=d)),
        ("scalar_neg_inf", torch.tensor(-inf, dtype=d)),
        ("scalar_neg_zero", torch.tensor(-0., dtype=d)),
        ("scalar_sci_neg", torch.tensor(-1.5e-9, dtype=d)),
        ("t5d", torch.randn(2, 1, 2, 1, 3, dtype=d)),
        ("t8d_ones", torch.ones(1, 1, 1, 1, 1, 1, 1, 2, dtype=d)),
        ("t8d", torch.randn(2, 1, 2, 1, 2, 1, 2, 2, dtype=d)),
        ("wide_sci", torch.randn(3, 14, dtype=d) * torch.logspace(-6, 6, 14, dtype=d)),
        ("wide_3d", torch.randn(2, 2, 13, dtype=d)),
        ("wide_int", torch.arange(-40., 40., dtype=d).reshape(2, 40)),
        ("col_1001", torch.randn(1001, 1, dtype=d)),
        ("sum_hidden_huge", torch.cat([torch.randn(3, dtype=d), torch.full((1000,), 1e9, dtype=d),
                                       torch.randn(3, dtype=d)])),
        ("sum_hidden_nan", torch.cat([torch.arange(3., dtype=d), torch.full((1000,), nan, dtype=d),
                                      torch.arange(3., dtype=d)])),
        ("sum_rows_short", torch.randn(300, 4, dtype=d)),
        ("sum_4d", torch.randn(7, 2, 8, 10, dtype=d)),
        ("sum_7_rows", torch.randn(7, 150, dtype=d)),
        ("sum_all_inf", torch.full((1200,), inf, dtype=d)),
        ("empty_0x0", torch.zeros(0, 0, dtype=d)),
        ("empty_tail", torch.zeros(3, 1, 0, dtype=d)),
        ("empty_8d", torch.zeros(1, 2, 1, 2, 1, 2, 1, 0, dtype=d)),
    ]


def _identity_fn(name):
    """An autograd Function whose grad_fn PyTorch names `name + 'Backward'`."""
    return type(name, (torch.autograd.Function,), {
        "forward": staticmethod(lambda ctx, x: x.clone()),
        "backward": staticmethod(lambda ctx, g: g),
    })


OPS = {
    "SumBackward0": lambda x: x.sum(),
    "MeanBackward0": lambda x: x.mean(),
    "MulBackward0": lambda x: x * 1,
    "AddBackward0": lambda x: x + 0,
    "CloneBackward0": lambda x: x.clone(),
    "ViewBackward0": lambda x: x.view(x.shape),
}


def grad_fn_op(name):
    if name in OPS:
        return OPS[name]
    assert name.endswith("Backward")
    return _identity_fn(name[: -len("Backward")]).apply


def emit(f, name, t, rg=False, grad_fn=None):
    """Records str(t): with requires_grad=True when rg, or as the output of
    an op whose grad_fn is named grad_fn (the values recorded are that
    output's)."""
    if grad_fn is not None:
        out = grad_fn_op(grad_fn)(t.clone().requires_grad_(True))
        assert type(out.grad_fn).__name__ == grad_fn
        s = str(out)
        t = out.detach()
    else:
        s = str(t.clone().requires_grad_(True) if rg else t)
    dt = "f64" if t.dtype == torch.float64 else "f32"
    f.write("case %s %s %d %s %d %s\n" % (name, dt, t.dim(), " ".join(str(x) for x in t.shape),
                                          1 if rg else 0, grad_fn or "-"))
    f.write(" ".join(float(v).hex() for v in t.flatten().tolist()) + "\n")
    f.write(s.replace("\\", "\\\\").replace("\n", "\\n") + "\n")


def random_case(rng, big=True):
    """A tensor of random shape and dtype whose values mix the things the
    formatter branches on: integers, fractions, wide ranges, tiny and huge
    magnitudes, zeros of both signs, nan and infinities."""
    if big and rng.random() < 0.1:
        shape = rng.choice([(1001,), (1, 1500), (40, 30), (7, 150), (3, 7, 50), (1100, 1), (2, 8, 70)])
    else:
        ndim = rng.choice([0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 8])
        shape = tuple(rng.choice([0, 1, 1, 2, 2, 3, 4, 5, 7, 9, 12, 20]) if rng.random() < 0.97 else 0
                      for _ in range(ndim))
        while ndim > 0 and torch.Size(shape).numel() > (3000 if big else 120):
            shape = tuple(max(1, d // 2) for d in shape)
    n = torch.Size(shape).numel()
    dtype = rng.choice([torch.float32, torch.float64])
    kind = rng.choice(["randn", "int", "halves", "wide", "tiny", "huge", "round", "same", "mix"])
    scale = 10.0 ** rng.uniform(-12, 12)
    if kind == "randn":
        v = torch.randn(n, dtype=torch.float64) * (scale if rng.random() < 0.5 else 1)
    elif kind == "int":
        v = torch.randint(-10 ** rng.randint(0, 11), 10 ** rng.randint(0, 11), (n,)).double()
    elif kind == "halves":
        v = torch.randint(-2000, 2000, (n,)).double() / 2 ** rng.randint(1, 14)
    elif kind == "wide":
        v = torch.randn(n, dtype=torch.float64) * 10.0 ** torch.empty(n, dtype=torch.float64).uniform_(-9, 9)
    elif kind == "tiny":
        v = torch.randn(n, dtype=torch.float64) * 10.0 ** rng.uniform(-320, -30)
    elif kind == "huge":
        v = torch.randn(n, dtype=torch.float64) * 10.0 ** rng.uniform(30, 307)
    elif kind == "round":
        # k + 0.5e-4 style values sit on (or next to) a rounding tie at 4 decimals
        v = (torch.randint(-99999, 99999, (n,)).double() + 0.5) * 10.0 ** -rng.randint(1, 6)
    elif kind == "same":
        v = torch.full((n,), rng.choice([0.0, -0.0, 1.0, -7.0, 0.1, 1e-5, 3e9, nan, inf]), dtype=torch.float64)
    else:
        v = torch.randn(n, dtype=torch.float64) * 100
        v = torch.where(torch.rand(n) < 0.5, v.round(), v)
    if n and rng.random() < 0.3:
        specials = [nan, inf, -inf, 0.0, -0.0, 1e-4, 1000.0, 1e8, 9.99995, -0.00005]
        for _ in range(rng.randint(1, 3)):
            v[rng.randrange(n)] = rng.choice(specials)
    t = v.to(dtype).reshape(shape)
    r = rng.random()
    if r < 0.15:
        gf = rng.choice(list(OPS) + ["AVeryLongCustomOperationNameThatKeepsGoingBackward", "XBackward"])
        if gf in ("SumBackward0", "MeanBackward0") and n == 0:
            gf = "MulBackward0"
        return t, False, gf
    return t, r < 0.3, None


def fuzz(count, path, seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    with open(path, "w") as f:
        for i in range(count):
            t, rg, gf = random_case(rng)
            emit(f, "fuzz%d" % i, t, rg=rg, grad_fn=gf)


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "--fuzz":
        fuzz(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 1)
        return
    with open(os.path.join(HERE, "print_cases.txt"), "w") as f:
        for name, t in CASES:
            emit(f, name, t)
            emit(f, name + "_f64", t.double())
        emit(f, "rg_2x2", torch.tensor([[1., 2.], [3., 4.]]), rg=True)
        emit(f, "rg_vec_f64", torch.randn(3).double(), rg=True)
        emit(f, "rg_wide", torch.randn(2, 9), rg=True)
        emit(f, "gf_sum", torch.tensor([[1., 2.], [3., 4.]]), grad_fn="SumBackward0")
        emit(f, "gf_mean", torch.tensor([27., 27.]), grad_fn="MeanBackward0")
        emit(f, "gf_mul_wrap", torch.randn(2, 8), grad_fn="MulBackward0")
        emit(f, "gf_mul_wrap_f64", torch.randn(2, 8).double(), grad_fn="MulBackward0")
        emit(f, "gf_add_long", torch.randn(7), grad_fn="AddBackward0")
        emit(f, "gf_add_long_f64", torch.randn(7).double(), grad_fn="AddBackward0")
        # Later additions draw from their own seed so the cases above stay put.
        torch.manual_seed(13)
        for name, t in extra_cases():
            if t.dtype == torch.float64:
                emit(f, name, t.float())
                if t.numel() <= 1000:  # summarising does not depend on the dtype
                    emit(f, name + "_f64", t)
            else:
                emit(f, name, t)
        emit(f, "rg_empty_2d", torch.zeros(0, 3), rg=True)
        emit(f, "rg_empty_f64", torch.zeros(0).double(), rg=True)
        huge = (0,) + (2 ** 63 - 1,) * 7  # the size suffix alone passes the line width
        emit(f, "empty_huge_dims", torch.empty(huge))
        emit(f, "rg_empty_huge_dims_f64", torch.empty(huge, dtype=torch.float64), rg=True)
        emit(f, "rg_scalar_f64", torch.tensor(2.5).double(), rg=True)
        emit(f, "rg_wrap_both_f64", torch.randn(2, 7).double(), rg=True)
        emit(f, "rg_big", torch.randn(1200), rg=True)
        emit(f, "gf_clone_empty", torch.zeros(2, 0), grad_fn="CloneBackward0")
        emit(f, "gf_view_3d", torch.randn(2, 2, 3), grad_fn="ViewBackward0")
        emit(f, "gf_custom_long", torch.randn(2, 5), grad_fn="AVeryLongCustomOperationNameThatKeepsGoingBackward")
        emit(f, "gf_custom_long_f64", torch.randn(2, 5).double(),
             grad_fn="AVeryLongCustomOperationNameThatKeepsGoingBackward")
        emit(f, "gf_custom_long_scalar", torch.tensor(1.5), grad_fn="AVeryLongCustomOperationNameThatKeepsGoingBackward")
        rng = random.Random(7)
        torch.manual_seed(7)
        for i in range(60):
            t, rg, gf = random_case(rng, big=False)
            emit(f, "rand%d" % i, t, rg=rg, grad_fn=gf)


if __name__ == "__main__":
    main()
