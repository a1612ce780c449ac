"""agrad-bench's autograd workloads in PyTorch, built the same way as
bench/bench_autograd.c builds them with agrad. For each workload and thread
count (torch.set_num_threads) prints one line:

    workload threads forward_ms backward_ms

with medians over the timed rounds. agrad-bench runs this script and reads
those lines; run it by hand with /usr/bin/python3 (Debian's python3-torch).
"""
import argparse
import math
import statistics
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


WORKLOADS = {"chain1": chain1, "wide": wide, "fanin": fanin, "deep": deep, "mlp": mlp, "attention": attention,
             "elementwise": elementwise}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--sizes", default="", help="name=N,... (default: the full sizes of agrad-bench)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    full = {"chain1": 1000, "wide": 16, "fanin": 256, "deep": 400, "mlp": 128, "attention": 128,
            "elementwise": 1000000}
    for item in filter(None, args.sizes.split(",")):
        name, n = item.split("=")
        full[name] = int(n)
    for name in args.workloads.split(","):
        torch.manual_seed(1234)
        forward = WORKLOADS[name](full[name])
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            fwd, bwd = [], []
            for rep in range(args.warmup + args.reps):
                t0 = time.perf_counter()
                loss = forward()
                t1 = time.perf_counter()
                loss.backward()
                t2 = time.perf_counter()
                if rep >= args.warmup:
                    fwd.append((t1 - t0) * 1e3)
                    bwd.append((t2 - t1) * 1e3)
            print(f"{name} {threads} {statistics.median(fwd):.6f} {statistics.median(bwd):.6f}", flush=True)


if __name__ == "__main__":
    main()
