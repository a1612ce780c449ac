"""The Fashion-MNIST training of examples/fashion_mnist.c in PyTorch: the
same MLP (784-256-10, ReLU, nn.Linear's initialisation), Adam lr 1e-3,
batch 128, shuffled each epoch; prints per-epoch loss, test accuracy and
time. usage: fashion_mnist.py [--epochs N] [--threads N] [--data DIR]"""
import argparse
import gzip
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F


def load(path_images, path_labels):
    with gzip.open(path_images, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 2051
        x = np.frombuffer(f.read(n * rows * cols), dtype=np.uint8).reshape(n, rows * cols)
    with gzip.open(path_labels, "rb") as f:
        magic, m = struct.unpack(">II", f.read(8))
        assert magic == 2049 and m == n
        y = np.frombuffer(f.read(n), dtype=np.uint8)
    return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    xtr, ytr = load(args.data + "/train-images-idx3-ubyte.gz", args.data + "/train-labels-idx1-ubyte.gz")
    xte, yte = load(args.data + "/t10k-images-idx3-ubyte.gz", args.data + "/t10k-labels-idx1-ubyte.gz")
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    print("PyTorch %s: %d training and %d test images, MLP 784-256-10, Adam lr 0.001, batch %d, %d threads"
          % (torch.__version__, len(xtr), len(xte), args.batch, args.threads))
    total = 0.0
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(len(xtr))
        t0 = time.perf_counter()
        loss_sum, steps = 0.0, 0
        for s in range(0, len(xtr), args.batch):
            idx = perm[s:s + args.batch]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            steps += 1
        dt = time.perf_counter() - t0
        total += dt
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print("epoch %d  loss %.4f  test accuracy %.2f%%  time %.2f s" % (epoch, loss_sum / steps, 100 * acc, dt),
              flush=True)
    print("mean epoch time %.2f s" % (total / args.epochs))


if __name__ == "__main__":
    main()
