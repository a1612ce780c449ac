"""Writes golden_nn.txt: PyTorch 1.13's values and gradients for agrad's
neural-network ops (test_nn.c), in float64 and float32.
Run with Debian's python3-torch:  /usr/bin/python3 tests/ops/gen_golden_nn.py
Same line format as gen_golden.py; a case names its builder in test_nn.c,
which applies the same arguments (index arrays, dims) written out here."""
import itertools
import os
import torch
import torch.nn.functional as F

torch.manual_seed(99)
HERE = os.path.dirname(os.path.abspath(__file__))


def away(*s):
    x = torch.randn(*s, dtype=torch.float64)
    return x + 0.2 * torch.sign(x)


def ints(*s):
    return torch.randint(-2, 3, s).double()


def clamp_safe(n):  # keep away from the bounds -0.5 and 1.0
    x = torch.randn(n, dtype=torch.float64) * 2
    x[(x + 0.5).abs() < 0.05] += 0.2
    x[(x - 1.0).abs() < 0.05] += 0.2
    return x


# name, inputs, function, check the node name
CASES = [
    ("abs", [lambda: away(3, 4)], lambda a: a.abs(), True),
    ("clamp", [lambda: clamp_safe(12)], lambda a: a.clamp(-0.5, 1.0), True),
    ("clamp_min", [lambda: clamp_safe(12)], lambda a: a.clamp(min=-0.5), False),
    ("maximum", [lambda: torch.randn(3, 1), lambda: torch.randn(1, 4)], torch.maximum, True),
    ("maximum_ties", [lambda: ints(4, 3), lambda: ints(4, 3)], torch.maximum, True),
    ("softmax_d1", [lambda: torch.randn(3, 5)], lambda a: F.softmax(a, 1), True),
    ("softmax_d0", [lambda: torch.randn(4, 3)], lambda a: F.softmax(a, 0), True),
    ("softmax_3d", [lambda: torch.randn(2, 3, 4)], lambda a: F.softmax(a, -1), True),
    ("log_softmax_d1", [lambda: torch.randn(3, 5)], lambda a: F.log_softmax(a, 1), True),
    ("log_softmax_3d", [lambda: torch.randn(2, 3, 4)], lambda a: F.log_softmax(a, 0), True),
    ("cross_entropy", [lambda: torch.randn(4, 5)], lambda a: F.cross_entropy(a, torch.tensor([1, 0, 4, 2])), True),
    ("nll_loss", [lambda: torch.randn(4, 3)], lambda a: F.nll_loss(a, torch.tensor([2, 0, 1, 1])), True),
    ("mse_loss", [lambda: torch.randn(3, 4), lambda: torch.randn(3, 4)], F.mse_loss, True),
    ("linear", [lambda: torch.randn(5, 3), lambda: torch.randn(4, 3), lambda: torch.randn(4)], F.linear, True),
    ("linear_3d_nobias", [lambda: torch.randn(2, 2, 3), lambda: torch.randn(4, 3)], F.linear, True),
    ("bmm", [lambda: torch.randn(2, 3, 4), lambda: torch.randn(2, 4, 5)], torch.bmm, True),
    ("bmm_bcast", [lambda: torch.randn(1, 3, 4), lambda: torch.randn(2, 4, 2)], torch.matmul, False),
    ("bmm_2d_3d", [lambda: torch.randn(3, 4), lambda: torch.randn(2, 4, 2)], torch.matmul, False),
    ("index_select_d0", [lambda: torch.randn(5, 3)], lambda a: a.index_select(0, torch.tensor([4, 0, 4, 2])), True),
    ("index_select_d1", [lambda: torch.randn(2, 5)], lambda a: a.index_select(1, torch.tensor([1, 3])), True),
    ("embedding", [lambda: torch.randn(6, 3)], lambda w: F.embedding(torch.tensor([5, 1, 1, 0]), w), True),
    ("cat_d0", [lambda: torch.randn(2, 3), lambda: torch.randn(4, 3)], lambda a, b: torch.cat([a, b], 0), True),
    ("cat_d1", [lambda: torch.randn(2, 1), lambda: torch.randn(2, 3)], lambda a, b: torch.cat([a, b], 1), True),
    ("narrow_d0", [lambda: torch.randn(5, 4)], lambda a: a.narrow(0, 1, 3), True),
    ("narrow_d1", [lambda: torch.randn(3, 6)], lambda a: a.narrow(1, 2, 2), True),
    ("expand", [lambda: torch.randn(3, 1)], lambda a: a.expand(2, 3, 4), True),
    ("expand_keep", [lambda: torch.randn(1, 4)], lambda a: a.expand(3, -1), True),
]

# F.linear records a different graph for each input rank (test_graph.c
# walks it); the values and gradients of each. Drawn after every case above
# in both dtypes, so adding these left the earlier numbers as they were.
LINEAR_CASES = [
    ("linear_nobias", [lambda: torch.randn(5, 3), lambda: torch.randn(4, 3)], F.linear, True),
    ("linear_1d", [lambda: torch.randn(3), lambda: torch.randn(4, 3), lambda: torch.randn(4)], F.linear, True),
    ("linear_1d_nobias", [lambda: torch.randn(3), lambda: torch.randn(4, 3)], F.linear, True),
    ("linear_3d", [lambda: torch.randn(2, 2, 3), lambda: torch.randn(4, 3), lambda: torch.randn(4)], F.linear, True),
    ("linear_4d", [lambda: torch.randn(2, 1, 2, 3), lambda: torch.randn(4, 3), lambda: torch.randn(4)], F.linear,
     True),
    ("linear_4d_nobias", [lambda: torch.randn(2, 1, 2, 3), lambda: torch.randn(4, 3)], F.linear, True),
]


def tline(tag, t):
    t = t.detach()
    vals = " ".join(float(v).hex() for v in t.flatten().tolist())
    return "%s %d %s %s\n" % (tag, t.dim(), " ".join(str(s) for s in t.shape), vals)


def main():
    lines = []
    for cases, dtype in itertools.product((CASES, LINEAR_CASES), (torch.float64, torch.float32)):
        for name, makers, fn, check_name in cases:
            ins = [m().to(dtype).requires_grad_(True) for m in makers]
            out = fn(*ins)
            w = torch.randn(out.shape, dtype=torch.float64).to(dtype)
            (out * w).sum().backward()
            lines.append("case %s %s %d\n" % (name, "f64" if dtype == torch.float64 else "f32", len(ins)))
            lines += [tline("in", t) for t in ins]
            lines.append(tline("out", out))
            lines.append(tline("w", w))
            lines += [tline("grad", t.grad) for t in ins]
            lines.append("node %s %d\n" % (type(out.grad_fn).__name__ if check_name else "-",
                                           len(out.grad_fn.next_functions)))
    with open(os.path.join(HERE, "golden_nn.txt"), "w") as f:
        f.write("# generated by gen_golden_nn.py with torch %s\n" % torch.__version__)
        f.writelines(lines)


if __name__ == "__main__":
    main()
