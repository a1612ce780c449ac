"""Golden data for tests/ops/test_inplace.c: in-place ops with history as
PyTorch 1.13 records them (values, gradients, grad_fn names, errors, version
counters), float64. Run: python3 tests/ops/gen_inplace.py > tests/ops/golden_inplace.txt"""
import torch

torch.manual_seed(0)
X = torch.randn(2, 3, dtype=torch.float64)
W = torch.randn(2, 3, dtype=torch.float64)
C = torch.randn(2, 3, dtype=torch.float64)


def vals(t):
    return " ".join(repr(float(v)) for v in t.detach().reshape(-1))


def graph(fn):
    if fn is None:
        return "None"
    kids = ",".join(graph(f) for f, _ in fn.next_functions)
    return f"{type(fn).__name__}({kids})" if kids else type(fn).__name__


def leaves():
    x = X.clone().requires_grad_(True)
    w = W.clone().requires_grad_(True)
    return x, w


# name -> what is done to y = x.clone(), mirrored in test_inplace.c
CASES = {
    "add_": lambda y, w: y.add_(w),
    "add_alpha": lambda y, w: y.add_(w, alpha=-0.5),
    "sub_": lambda y, w: y.sub_(w),
    "mul_": lambda y, w: y.mul_(w),
    "add_scalar_": lambda y, w: y.add_(3.0),
    "mul_scalar_": lambda y, w: y.mul_(3.0),
    "relu_": lambda y, w: y.relu_(),
    "tanh_": lambda y, w: y.tanh_(),
    "sigmoid_": lambda y, w: y.sigmoid_(),
    "exp_": lambda y, w: y.exp_(),
    "clamp_": lambda y, w: y.clamp_(-0.5, 0.5),
    "fill_": lambda y, w: y.fill_(2.0),
    "zero_": lambda y, w: y.zero_(),
    "chain": lambda y, w: y.mul_(w).add_(w).mul_(3.0).add_(1.0).sigmoid_(),
    "other_only": None,  # y = w.detach() * 1 (no grad), y.mul_(w)
}

print("input x", vals(X))
print("input w", vals(W))
print("input c", vals(C))
for name, f in CASES.items():
    x, w = leaves()
    if f is None:
        y = W.clone()
        y.mul_(w)
    else:
        y = x.clone()
        f(y, w)
    print("node", name, graph(y.grad_fn))
    print("version", name, y._version)
    (y * C).sum().backward()
    print("value", name, vals(y))
    print("grad_x", name, vals(x.grad) if x.grad is not None else "none")
    print("grad_w", name, vals(w.grad) if w.grad is not None else "none")


# In-place ops on views of tensors with history (CopySlices), mirrored in
# test_inplace.c: each returns (y, v), v the view that was changed.
def view_mul(x, w):
    y = x.clone()
    v = y.narrow(1, 0, 2)
    v.mul_(w.narrow(1, 1, 2))
    return y, v


def view_exp(x, w):
    y = x.clone()
    v = y.select(0, 1)
    v.exp_()
    return y, v


def view_transposed(x, w):
    y = x.clone()
    v = y.transpose(0, 1).narrow(0, 1, 2)
    v.add_(w.transpose(0, 1).narrow(0, 0, 2))
    v.relu_()
    return y, v


def view_plain_base(x, w):
    y = torch.zeros(2, 3, dtype=torch.float64)
    v = y.narrow(0, 1, 1)
    v.add_(w.narrow(0, 0, 1))
    v.mul_(x.narrow(0, 1, 1))
    return y, v


def view_fill(x, w):
    y = x * w
    v = y.select(1, 2)
    v.fill_(0.5)
    return y, v


VIEW_CASES = {
    "view_mul": view_mul,
    "view_exp": view_exp,
    "view_transposed": view_transposed,
    "view_plain_base": view_plain_base,
    "view_fill": view_fill,
}

for name, f in VIEW_CASES.items():
    x, w = leaves()
    y, v = f(x, w)
    print("node", name, graph(y.grad_fn))
    print("vnode", name, graph(v.grad_fn))
    print("version", name, y._version)
    ((y * C).sum() + v.exp().sum()).backward()
    print("value", name, vals(y))
    print("grad_x", name, vals(x.grad) if x.grad is not None else "none")
    print("grad_w", name, vals(w.grad) if w.grad is not None else "none")


def error(name, f):
    try:
        f()
        print("error", name, "none")
    except RuntimeError as e:
        print("error", name, str(e))


def leaf_inplace():
    x, _ = leaves()
    x.add_(1)


def view_of_leaf():
    x, _ = leaves()
    x.narrow(1, 0, 2).mul_(2)


def no_grad_view():
    x, _ = leaves()
    with torch.no_grad():
        v = x.select(0, 1)
    v.add_(1)


def saved_result_modified():
    x, _ = leaves()
    y = x.clone()
    z = y.exp()
    z.add_(1)
    z.sum().backward()


def saved_input_modified():
    x, w = leaves()
    y = x.clone()
    z = y * w
    y.add_(1)
    z.sum().backward()


def inplace_result_modified():
    x, _ = leaves()
    y = x.clone()
    y.exp_()
    y.mul_(2)
    y.sum().backward()


def saved_twice_modified():
    x, w = leaves()
    y = x.clone()
    z = y.sigmoid()
    y.mul_(w)
    y.add_(1)
    (z * y).sum().backward()  # sigmoid saved its own result, mul_ the old y: fine


error("leaf", leaf_inplace)
error("view_of_leaf", view_of_leaf)
error("no_grad_view", no_grad_view)
error("saved_result", saved_result_modified)
error("saved_input", saved_input_modified)
error("inplace_result", inplace_result_modified)
error("saved_twice", saved_twice_modified)


# test_version_counter: views and detach share the counter; in-place ops bump it
x = torch.randn(1, 2, dtype=torch.float64)
x_saved = x.detach()
v = x.narrow(1, 0, 1)
x.add_(1)
v.mul_(2)
x_saved.zero_()
print("versions counter", x._version, x_saved._version, v._version)
