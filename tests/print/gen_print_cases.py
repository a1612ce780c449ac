"""Writes print_cases.txt: what PyTorch 1.13's print(t) shows for a broad
set of float tensors, for test_print.c (CI does not need PyTorch).
Run with Debian's python3-torch: /usr/bin/python3 tests/print/gen_print_cases.py

A case is four lines: `case NAME DTYPE NDIM SHAPE... FLAGS GRADFN`, the values
as float.hex, the expected string with newlines written as \\n."""
import os
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


def emit(f, name, t, rg=False, grad_fn=None):
    shown = t
    if rg:
        shown = t.clone().requires_grad_(True)
    s = str(shown) if grad_fn is None else None
    if grad_fn is not None:
        src = t.clone().requires_grad_(True)
        out = {"SumBackward0": lambda x: x.sum(), "MulBackward0": lambda x: x * 1,
               "AddBackward0": lambda x: x + 0, "MeanBackward0": lambda x: x.mean()}[grad_fn](src)
        assert type(out.grad_fn).__name__ == grad_fn
        s = str(out)
        t = out.detach()
    dt = "f64" if t.dtype == torch.float64 else "f32"
    f.write("case %s %s %d %s %d %s\n" % (name, dt, t.dim(), " ".join(str(x) for x in t.shape),
                                          1 if rg else 0, grad_fn or "-"))
    f.write(" ".join(float(v).hex() for v in t.flatten().tolist()) + "\n")
    f.write(s.replace("\\", "\\\\").replace("\n", "\\n") + "\n")


def main():
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


if __name__ == "__main__":
    main()
