"""agrad-bench's autograd workloads in PyTorch, built the same way as
bench/bench_autograd.c builds them with agrad. For each workload and thread
count (torch.set_num_threads) prints one line:

    workload threads forward_ms backward_ms step_ms

with medians over the timed rounds (step_ms: the optimizer step of the
training-step workloads, else 0); per workload also "ceiling workload X"
(what --ceiling-cmd printed right before it: two plain threads' speedup)
and "peak workload MB BASE_MB" (the most memory resident while it ran, and
what was before its setup). With --optim, one torch.optim.Adam step alone
instead, as it comes (single-tensor in 1.13) and with foreach=True:

    optim set impl threads step_ms

agrad-bench runs this script and reads those lines; run it by hand with
/usr/bin/python3 (Debian's python3-torch).
"""
import argparse
import ctypes
import math
import statistics
import subprocess
import time

import torch


def chain1(size):
    x = torch.tensor([0.5])
    w = torch.tensor([1.0001], requires_grad=True)
    b = torch.tensor([0.0001], requires_grad=True)

    def forward():
        y = x
        for _ in range(size):
            y = y * w + b
        return y.sum()

    return forward


def wide(size, layers=8, dim=64):
    x = torch.randn(dim, dim, requires_grad=True)
    ws = [(torch.randn(dim, dim) * 0.125).requires_grad_() for _ in range(size * layers)]

    def forward():
        s = None
        for b in range(size):
            h = x
            for l in range(layers):
                h = torch.tanh(h @ ws[b * layers + l])
            s = h if s is None else s + h
        return s.sum()

    return forward


def fanin(size, dim=128):
    x = torch.randn(dim, dim, requires_grad=True)
    cs = [torch.randn(dim, dim) * 0.09 for _ in range(size)]

    def forward():
        s = None
        for c in cs:
            h = torch.tanh(x @ c)
            s = h if s is None else s + h
        return s.sum()

    return forward


def deep(size, dim=64):
    x = torch.randn(dim, dim, requires_grad=True)
    ws = [(torch.randn(dim, dim) * 0.125).requires_grad_() for _ in range(size // 2)]

    def forward():
        h = x
        for w in ws:
            h = torch.tanh(h @ w)
        return h.sum()

    return forward


def mlp(size):
    dims = [784, 512, 512, 10]
    x = torch.randn(size, 784)
    targets = torch.tensor([(i * 7919) % 10 for i in range(size)])
    layers = []
    for l in range(3):
        s = 1.0 / math.sqrt(dims[l])
        layers.append(((torch.randn(dims[l + 1], dims[l]) * s).requires_grad_(),
                       (torch.randn(dims[l + 1]) * s).requires_grad_()))

    def forward():
        h = torch.relu(torch.nn.functional.linear(x, *layers[0]))
        h = torch.relu(torch.nn.functional.linear(h, *layers[1]))
        return torch.nn.functional.cross_entropy(torch.nn.functional.linear(h, *layers[2]), targets)

    return forward


def wide_dim(dim):
    def make(size):
        x = torch.randn(dim, dim, requires_grad=True)
        ws = [(torch.randn(dim, dim) / math.sqrt(dim)).requires_grad_() for _ in range(size)]

        def forward():
            s = None
            for w in ws:
                h = torch.tanh(x @ w)
                s = h if s is None else s + h
            return s.sum()

        return forward

    return make


class TrainingStep:
    """The MLP 784-256-256-10 on a batch of size: forward() gives the loss;
    step() is torch.optim.Adam's step with its defaults."""

    def __init__(self, size):
        dims = [784, 256, 256, 10]
        self.x = torch.randn(size, 784)
        self.targets = torch.tensor([(i * 7919) % 10 for i in range(size)])
        self.layers = []
        for l in range(3):
            s = 1.0 / math.sqrt(dims[l])
            self.layers.append(((torch.randn(dims[l + 1], dims[l]) * s).requires_grad_(),
                                (torch.randn(dims[l + 1]) * s).requires_grad_()))
        self.opt = torch.optim.Adam([t for layer in self.layers for t in layer])

    def __call__(self):
        h = torch.relu(torch.nn.functional.linear(self.x, *self.layers[0]))
        h = torch.relu(torch.nn.functional.linear(h, *self.layers[1]))
        return torch.nn.functional.cross_entropy(torch.nn.functional.linear(h, *self.layers[2]), self.targets)


def attention(size, heads=8, dim=64):
    x = torch.randn(heads * size, dim, requires_grad=True)
    wq, wk, wv = [(torch.randn(dim, dim) * 0.125).requires_grad_() for _ in range(3)]

    def forward():
        q = (x @ wq).reshape(heads, size, dim)
        k = (x @ wk).reshape(heads, size, dim)
        v = (x @ wv).reshape(heads, size, dim)
        scores = torch.bmm(q, k.transpose(1, 2)) * (1.0 / math.sqrt(dim))
        o = torch.bmm(torch.softmax(scores, 2), v)
        return (o * o).mean()

    return forward


def elementwise(size, rows=1000):
    x = (torch.randn(rows, size // rows) * 0.5).requires_grad_()
    w = (torch.randn(rows, size // rows) * 0.5).requires_grad_()
    b = (torch.randn(size // rows) * 0.5).requires_grad_()
    c = torch.tensor(1.5, requires_grad=True)

    def forward():
        h2 = x * w + b
        h3 = torch.tanh(h2)
        h7 = torch.exp(h3 * 0.5) * torch.sigmoid(x)
        h10 = torch.relu((h7 - w) / c)
        h14 = torch.sin(h10 + h3) * torch.cos(h2)
        h16 = h14 ** 2 + 1
        return (-(torch.log(h16) - torch.sqrt(h16))).sum()

    return forward


WORKLOADS = {"chain1": chain1, "wide": wide, "fanin": fanin, "deep": deep, "mlp": mlp,
             "wide128": wide_dim(128), "wide256": wide_dim(256), "wide512": wide_dim(512),
             "mlp128": TrainingStep, "mlp1024": TrainingStep, "attention": attention,
             "elementwise": elementwise}
FULL = {"chain1": 1000, "wide": 16, "fanin": 256, "deep": 400, "mlp": 128, "wide128": 64, "wide256": 64,
        "wide512": 64, "mlp128": 128, "mlp1024": 1024, "attention": 128,
        "elementwise": 1000000}


def ceiling(cmd, name):
    """Runs agrad-bench --ceiling right before a workload."""
    if cmd:
        out = subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
        if out:
            print(f"ceiling {name} {out}", flush=True)


def peak_reset():
    """Linux 4.0 on: the peak resident memory starts again from now, after
    glibc gave back what the workload before freed."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def median_ms(times):
    return statistics.median(times) * 1e3


def optim_bench(args):
    sets = dict(item.split("=") for item in args.optim.split(","))
    ceiling(args.ceiling_cmd, "optim")
    for name, size in sets.items():
        size = int(size)
        if name == "mlp":
            dims = [784, size, size, 10]
            shapes = [s for l in range(3) for s in ((dims[l + 1], dims[l]), (dims[l + 1],))]
        else:
            shapes = [(size,)]
        for impl, foreach in (("pytorch", None), ("pytorch-foreach", True)):
            torch.manual_seed(1234)
            params = [torch.randn(*shape, requires_grad=True) for shape in shapes]
            for p in params:
                p.grad = torch.randn(*p.shape) * 1e-2
            opt = torch.optim.Adam(params, foreach=foreach)
            for threads in [int(t) for t in args.threads.split(",")]:
                torch.set_num_threads(threads)
                times = []
                for rep in range(args.warmup + args.reps):
                    t0 = time.perf_counter()
                    opt.step()
                    t1 = time.perf_counter()
                    if rep >= args.warmup:
                        times.append(t1 - t0)
                print(f"optim {name} {impl} {threads} {median_ms(times):.6f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--sizes", default="", help="name=N,... (default: the full sizes of agrad-bench)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--ceiling-cmd", default="", help="prints two plain threads' speedup (agrad-bench --ceiling)")
    ap.add_argument("--optim", default="", help="set=N,...: Adam steps alone (mlp=hidden width, big=elements)")
    args = ap.parse_args()
    if args.optim:
        optim_bench(args)
        return
    full = dict(FULL)
    for item in filter(None, args.sizes.split(",")):
        name, n = item.split("=")
        full[name] = int(n)
    for name in args.workloads.split(","):
        ceiling(args.ceiling_cmd, name)
        peak_ok = peak_reset()
        base = status_mb("VmRSS")
        torch.manual_seed(1234)
        forward = WORKLOADS[name](full[name])
        opt = getattr(forward, "opt", None)
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            fwd, bwd, step = [], [], []
            for rep in range(args.warmup + args.reps):
                if opt is not None:
                    opt.zero_grad()  # untimed, as agrad-bench's ag_zero_grads
                t0 = time.perf_counter()
                loss = forward()
                t1 = time.perf_counter()
                loss.backward()
                t2 = time.perf_counter()
                if opt is not None:
                    opt.step()
                t3 = time.perf_counter()
                if rep >= args.warmup:
                    fwd.append(t1 - t0)
                    bwd.append(t2 - t1)
                    step.append(t3 - t2)
            print(f"{name} {threads} {median_ms(fwd):.6f} {median_ms(bwd):.6f} "
                  f"{median_ms(step) if opt is not None else 0:.6f}", flush=True)
        if peak_ok:
            print(f"peak {name} {status_mb('VmHWM'):.3f} {base:.3f}", flush=True)


if __name__ == "__main__":
    main()
