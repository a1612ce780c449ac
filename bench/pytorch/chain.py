"""The one-element chain in PyTorch: y = (y * w) + b repeated, then
backward. Prints one JSON object with forward ns per op and backward ns per
node (medians over repetitions), the same measure as agrad-bench's chain."""
import argparse
import json
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--length", type=int, default=1000, help="links; each is 2 ops (mul, add)")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    w = torch.tensor([1.0001], requires_grad=True)
    b = torch.tensor([0.0001], requires_grad=True)
    x = torch.tensor([0.5], requires_grad=True)
    fwd, bwd = [], []
    for rep in range(args.reps + 2):
        t0 = time.perf_counter_ns()
        y = x
        for _ in range(args.length):
            y = y * w
            y = y + b
        t1 = time.perf_counter_ns()
        y.backward()
        t2 = time.perf_counter_ns()
        if rep >= 2:  # warm-up
            fwd.append((t1 - t0) / (2 * args.length))
            # nodes: 2 per link, plus the three AccumulateGrad nodes
            bwd.append((t2 - t1) / (2 * args.length + 3))
        w.grad = b.grad = x.grad = None
    print(json.dumps({
        "workload": "chain1", "impl": "pytorch", "threads": args.threads,
        "length": args.length, "fwd_ns_per_op": statistics.median(fwd),
        "bwd_ns_per_node": statistics.median(bwd),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
