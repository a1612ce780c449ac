"""Writes higher_golden.txt: PyTorch 1.13's first to fourth
derivatives of agrad's ops with a differentiable backward, and the graph
each create_graph backward records, for test_higher_golden.c (which needs
no PyTorch). Run with Debian's python3-torch:
    /usr/bin/python3 tests/autograd/gen_higher.py

Each case, in float64:
  case NAME OP WRAP NIN A0
      OP applied to the NIN inputs (A0: its scalar argument); WRAP raw:
      L0 = (OP(x) * w).sum(), sq: L0 = (OP(x) ** 2 * w).sum() (so that a
      linear op's backward runs on gradients with history); a WRAP
      ending in '-' marks an op whose recorded backward is written with
      other nodes than PyTorch's (values only)
  in ...            NIN lines, the inputs (all require grad)
  w ...             the weight of L0
  order K           then NIN lines: `g ...` (the K-th gradient of input i),
                    or `none` when it does not exist (allow_unused);
                    then NIN lines `fn NAMES` with the gradient's grad_fn
                    and its next functions, two levels deep
                    (`MulBackward0(None,AccumulateGrad)`), or `fn -`
  v ...             NIN lines after orders 1 to 3: the weights of the
                    next level, L_K = sum_i (g_i * v_i).sum()
A tensor line is `TAG NDIM SHAPE... VALUES...` with values as float.hex."""
import os
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(1313)
TARGETS = torch.tensor([2, 0, 3])  # test_higher_golden.c's targets[]
INDEX = torch.tensor([2, 0, 2, 1])  # and its sel_index[]


def tensor_line(tag, t):
    t = t.detach().to(torch.float64).clone().contiguous()
    vals = " ".join(float(v).hex() for v in t.reshape(-1).tolist())
    return f"{tag} {t.dim()} " + " ".join(str(s) for s in t.shape) + (" " if t.dim() else "") + vals


def fn_name(n):
    if n is None:
        return "None"
    name = n.name()
    return "AccumulateGrad" if name.endswith("AccumulateGrad") else name


def graph(n, depth):
    if n is None or depth == 0:
        return fn_name(n)
    nexts = [graph(m, depth - 1) for m, _ in n.next_functions]
    return fn_name(n) + ("(" + ",".join(nexts) + ")" if nexts else "")


def randn(*s):
    return torch.randn(s, dtype=torch.float64)


def positive(*s):
    return torch.rand(s, dtype=torch.float64) + 0.5


def away(*s):
    x = torch.randn(s, dtype=torch.float64)
    return x + 0.3 * torch.sign(x)


OPS = {
    "add": lambda x, a: x[0] + x[1],
    "sub": lambda x, a: x[0] - x[1],
    "mul": lambda x, a: x[0] * x[1],
    "mul_self": lambda x, a: x[0] * x[0],
    "div": lambda x, a: x[0] / x[1],
    "neg": lambda x, a: -x[0],
    "exp": lambda x, a: torch.exp(x[0]),
    "tanh": lambda x, a: torch.tanh(x[0]),
    "sigmoid": lambda x, a: torch.sigmoid(x[0]),
    "sqrt": lambda x, a: torch.sqrt(x[0]),
    "log": lambda x, a: torch.log(x[0]),
    "sum": lambda x, a: x[0].sum(),
    "mean": lambda x, a: x[0].mean(),
    "matmul": lambda x, a: x[0] @ x[1],
    "pow_scalar": lambda x, a: x[0] ** a,
    "add_scalar": lambda x, a: x[0] + a,
    "mul_scalar": lambda x, a: x[0] * a,
    "mlp": lambda x, a: torch.tanh(x[0] @ x[1] + x[2]),
    "matmul_t": lambda x, a: x[0].transpose(0, 1) @ x[1],
    "mlp_sigmoid": lambda x, a: torch.sigmoid(x[0] @ x[1] + x[2]),
    "pow": lambda x, a: x[0] ** x[1],
    "log1p": lambda x, a: torch.log1p(x[0]),
    "sin": lambda x, a: torch.sin(x[0]),
    "cos": lambda x, a: torch.cos(x[0]),
    "relu": lambda x, a: torch.relu(x[0]),
    "abs": lambda x, a: torch.abs(x[0]),
    "clamp": lambda x, a: torch.clamp(x[0], -a, a),
    "maximum": lambda x, a: torch.maximum(x[0], x[1]),
    "sum_dim": lambda x, a: x[0].sum(1),
    "sum_keepdim": lambda x, a: x[0].sum(0, keepdim=True),
    "mean_dim": lambda x, a: x[0].mean(-1),
    "max": lambda x, a: x[0].max(),
    "reshape": lambda x, a: x[0].reshape(-1),
    "transpose": lambda x, a: x[0].transpose(0, 1),
    "clone": lambda x, a: x[0].clone(),
    "softmax": lambda x, a: torch.softmax(x[0], 1),
    "log_softmax": lambda x, a: torch.log_softmax(x[0], 0),
    "nll_loss": lambda x, a: F.nll_loss(torch.log_softmax(x[0], 1), TARGETS),
    "cross_entropy": lambda x, a: F.cross_entropy(x[0], TARGETS),
    "mse_loss": lambda x, a: F.mse_loss(x[0], x[1]),
    "linear": lambda x, a: F.linear(x[0], x[1], x[2]),
    "linear_nobias": lambda x, a: F.linear(x[0], x[1]),
    "bmm": lambda x, a: torch.bmm(x[0], x[1]),
    "index_select": lambda x, a: x[0].index_select(1, INDEX),
    "embedding": lambda x, a: F.embedding(INDEX, x[0]),
    "cat": lambda x, a: torch.cat([x[0], x[1]], 1),
    "narrow": lambda x, a: x[0].narrow(1, 1, 2),
    "expand": lambda x, a: x[0].expand(2, 3, 4),
}

CASES = [
    ("add_bcast", "add", "sq", [randn(2, 3), randn(3)], 0.0),
    ("add_bcast_keep", "add", "sq", [randn(2, 3), randn(1, 3)], 0.0),
    ("add_0dim", "add", "sq", [randn(2, 3), randn()], 0.0),
    ("sub_bcast", "sub", "sq", [randn(4, 1), randn(2, 4, 3)], 0.0),
    ("mul", "mul", "raw", [randn(2, 3), randn(2, 3)], 0.0),
    ("mul_bcast", "mul", "raw", [randn(2, 3), randn(3)], 0.0),
    ("mul_self", "mul_self", "raw", [randn(3)], 0.0),
    ("div", "div", "raw", [randn(2, 3), away(2, 3)], 0.0),
    ("div_bcast", "div", "raw", [randn(2, 3), away(2, 1)], 0.0),
    ("neg", "neg", "sq", [randn(3, 2)], 0.0),
    ("exp", "exp", "raw", [randn(2, 3)], 0.0),
    ("tanh", "tanh", "raw", [randn(2, 3)], 0.0),
    ("sigmoid", "sigmoid", "raw", [randn(2, 3)], 0.0),
    ("sqrt", "sqrt", "raw", [positive(4)], 0.0),
    ("log", "log", "raw", [positive(4)], 0.0),
    ("sum", "sum", "sq", [randn(2, 3)], 0.0),
    ("mean", "mean", "sq", [randn(2, 3)], 0.0),
    ("matmul", "matmul", "raw", [randn(2, 3), randn(3, 4)], 0.0),
    ("matmul_sq", "matmul", "sq", [randn(3, 2), randn(2, 2)], 0.0),
    ("pow3", "pow_scalar", "raw", [randn(5)], 3.0),
    ("pow2", "pow_scalar", "raw", [randn(5)], 2.0),
    ("pow_half", "pow_scalar", "raw", [positive(5)], 0.5),
    ("pow_m2", "pow_scalar", "raw", [away(5)], -2.0),
    ("pow0", "pow_scalar", "raw", [randn(5)], 0.0),
    ("add_scalar", "add_scalar", "sq", [randn(4)], 1.5),
    ("mul_scalar", "mul_scalar", "sq", [randn(4)], -2.5),
    ("mlp", "mlp", "raw", [randn(4, 3), randn(3, 2), randn(2)], 0.0),
    ("matmul_t", "matmul_t", "sq", [randn(3, 2), randn(3, 4)], 0.0),
    ("mlp_sigmoid", "mlp_sigmoid", "raw", [randn(4, 3), randn(3, 2), randn(2)], 0.0),
    ("pow", "pow", "raw", [positive(2, 3), randn(3)], 0.0),
    ("log1p", "log1p", "raw", [positive(4)], 0.0),
    ("sin", "sin", "raw", [randn(2, 3)], 0.0),
    ("cos", "cos", "raw", [randn(2, 3)], 0.0),
    ("relu", "relu", "sq", [away(2, 3)], 0.0),
    ("abs", "abs", "sq-", [away(2, 3)], 0.0),
    ("clamp", "clamp", "sq", [away(2, 3)], 0.8),
    ("maximum", "maximum", "sq-", [randn(2, 3), randn(3)], 0.0),
    ("sum_dim", "sum_dim", "sq", [randn(2, 3)], 0.0),
    ("sum_keepdim", "sum_keepdim", "sq", [randn(2, 3)], 0.0),
    ("mean_dim", "mean_dim", "sq", [randn(2, 3)], 0.0),
    ("max", "max", "sq", [randn(2, 3)], 0.0),
    ("reshape", "reshape", "sq", [randn(2, 3)], 0.0),
    ("transpose", "transpose", "sq", [randn(2, 3)], 0.0),
    ("clone", "clone", "sq", [randn(2, 3)], 0.0),
    ("softmax", "softmax", "raw-", [randn(3, 4)], 0.0),
    ("log_softmax", "log_softmax", "raw-", [randn(3, 4)], 0.0),
    ("nll_loss", "nll_loss", "raw-", [randn(3, 4)], 0.0),
    ("cross_entropy", "cross_entropy", "raw-", [randn(3, 4)], 0.0),
    ("mse_loss", "mse_loss", "raw-", [randn(3, 4), randn(3, 4)], 0.0),
    ("linear", "linear", "sq", [randn(3, 4), randn(2, 4), randn(2)], 0.0),
    ("linear_nobias", "linear_nobias", "sq", [randn(3, 4), randn(2, 4)], 0.0),
    ("linear_3d", "linear", "sq-", [randn(2, 3, 4), randn(2, 4), randn(2)], 0.0),
    ("bmm", "bmm", "sq", [randn(2, 3, 4), randn(2, 4, 2)], 0.0),
    ("index_select", "index_select", "sq", [randn(3, 4)], 0.0),
    ("embedding", "embedding", "sq", [randn(3, 4)], 0.0),
    ("cat", "cat", "sq", [randn(3, 2), randn(3, 4)], 0.0),
    ("narrow", "narrow", "sq", [randn(3, 4)], 0.0),
    ("expand", "expand", "sq", [randn(3, 1)], 0.0),
]


def main():
    lines = [f"# generated by gen_higher.py with torch {torch.__version__}"]
    for name, op, wrap, inputs, a0 in CASES:
        xs = [t.clone().requires_grad_(True) for t in inputs]
        out = OPS[op](xs, a0)
        if wrap.startswith("sq"):
            out = out ** 2
        w = torch.randn(out.shape, dtype=torch.float64)
        lines.append(f"case {name} {op} {wrap} {len(xs)} {float(a0).hex()}")
        lines += [tensor_line("in", x) for x in xs]
        lines.append(tensor_line("w", w))
        loss = (out * w).sum()
        for order in (1, 2, 3, 4):
            if loss is None or not loss.requires_grad:
                gs = [None] * len(xs)
            else:
                gs = torch.autograd.grad(loss, xs, create_graph=True, allow_unused=True)
            lines.append(f"order {order}")
            for g in gs:
                lines.append("none" if g is None else tensor_line("g", g))
            for g in gs:
                lines.append("fn " + ("-" if g is None or g.grad_fn is None else graph(g.grad_fn, 2)))
            if order < 4:
                vs = [torch.randn(x.shape, dtype=torch.float64) for x in xs]
                lines += [tensor_line("v", v) for v in vs]
                terms = [(g * v).sum() for g, v in zip(gs, vs) if g is not None]
                loss = sum(terms) if terms else None
    with open(os.path.join(HERE, "higher_golden.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
