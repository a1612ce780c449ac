"""PyTorch's side of agrad-bench-hvp: a Hessian-vector product of the mlp
workload (batch 128, 784-512-512-10, ReLU, cross-entropy, float32) by
double backward, median time of one product (forward included) per
thread count.
    /usr/bin/python3 bench/pytorch/hvp.py [--threads 1,2] [--reps N]"""
import argparse
import math
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    torch.manual_seed(7)
    dims = [784, 512, 512, 10]
    x = torch.rand(128, 784) * 2 - 1
    targets = torch.tensor([(i * 7919) % 10 for i in range(128)])
    p, v = [], []
    for l in range(3):
        for shape in ((dims[l + 1], dims[l]), (dims[l + 1],)):
            p.append(((torch.rand(shape) - 0.5) * 2 / 28).requires_grad_())
            v.append(torch.rand(shape) * 2 - 1)
    print(f"hvp mlp (batch 128, 784-512-512-10, float32), median of {a.reps}, torch {torch.__version__}")
    for nt in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(nt)
        times = []
        for r in range(a.reps + 2):
            t0 = time.perf_counter()
            h = torch.relu(torch.nn.functional.linear(x, p[0], p[1]))
            h = torch.relu(torch.nn.functional.linear(h, p[2], p[3]))
            loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(h, p[4], p[5]), targets)
            g = torch.autograd.grad(loss, p, create_graph=True)
            dot = sum((gi * vi).sum() for gi, vi in zip(g, v))
            torch.autograd.grad(dot, p)
            if r >= 2:
                times.append(time.perf_counter() - t0)
        times.sort()
        print(f"threads {nt}: {1e3 * times[len(times) // 2]:.3f} ms")


if __name__ == "__main__":
    main()
