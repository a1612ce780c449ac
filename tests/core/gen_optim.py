"""Writes optim_golden.txt: torch.optim.SGD / Adam trajectories for the C
optimizer test. Run with Debian's python3-torch: /usr/bin/python3 gen_optim.py
Each case: a name, dtype, options, the initial parameter, then per step the
gradient given and the parameter after the step (values as float.hex)."""
import torch

torch.manual_seed(7)
CASES = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.05, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("sgd", dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("adam", dict(lr=0.01)),
    ("adam", dict(lr=0.003, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
    ("adam", dict(lr=0.01, amsgrad=True)),
]
N, STEPS = 37, 5  # 37: PyTorch's vector loop (16 floats, 8 doubles a turn) and its scalar tail


def fmt(t):
    return " ".join(float(v).hex() for v in t.flatten().tolist())


with open("optim_golden.txt", "w") as f:
    f.write("# kind dtype lr momentum dampening weight_decay nesterov beta1 beta2 eps amsgrad\n")
    for dtype in (torch.float32, torch.float64):
        for kind, kw in CASES:
            p = torch.randn(N, dtype=dtype, requires_grad=True)
            opt = (torch.optim.SGD if kind == "sgd" else torch.optim.Adam)([p], **kw)
            betas = kw.get("betas", (0.9, 0.999))
            f.write("case %s %s %r %r %r %r %d %r %r %r %d\n" % (
                kind, "f32" if dtype == torch.float32 else "f64", kw["lr"], kw.get("momentum", 0.0),
                kw.get("dampening", 0.0), kw.get("weight_decay", 0.0), int(kw.get("nesterov", False)),
                betas[0], betas[1], kw.get("eps", 1e-8), int(kw.get("amsgrad", False))))
            f.write("init %s\n" % fmt(p.detach()))
            for s in range(STEPS):
                g = torch.randn(N, dtype=dtype)
                p.grad = g.clone()
                opt.step()
                f.write("grad %s\n" % fmt(g))
                f.write("after %s\n" % fmt(p.detach()))
