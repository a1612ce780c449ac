"""Checks examples/fashion_mnist on data it makes itself: a tiny, learnable
IDX data set in a temporary folder (training must print its epoch lines and
beat chance), and the clear errors for a missing folder, a truncated file
and a bad magic number (exit code 1, a message, no crash).
usage: fashion_test.py PROGRAM"""
import gzip
import os
import random
import struct
import subprocess
import sys
import tempfile


def write_idx(folder, prefix, images, labels):
    with gzip.open(os.path.join(folder, prefix + "-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(images), 28, 28))
        for img in images:
            f.write(bytes(img))
    with gzip.open(os.path.join(folder, prefix + "-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)))
        f.write(bytes(labels))


def make_set(n, rng):
    """Class c lights up rows 2c..2c+2: easy to learn, so accuracy must rise."""
    images, labels = [], []
    for _ in range(n):
        c = rng.randrange(10)
        img = [rng.randrange(30) for _ in range(784)]
        for r in range(2 * c, 2 * c + 3):
            for col in range(28):
                img[r * 28 + col] = 200 + rng.randrange(55)
        images.append(img)
        labels.append(c)
    return images, labels


def run(prog, *args):
    return subprocess.run([prog, *args], capture_output=True, text=True, timeout=120)


def main():
    prog = sys.argv[1]
    failures = []
    rng = random.Random(3)
    with tempfile.TemporaryDirectory() as d:
        write_idx(d, "train", *make_set(600, rng))
        write_idx(d, "t10k", *make_set(200, rng))
        r = run(prog, "--data", d, "--epochs", "2", "--batch", "32", "--lr", "0.01", "--quiet")
        if r.returncode != 0:
            failures.append("training on a tiny set failed: %s" % r.stderr)
        else:
            lines = [l for l in r.stdout.splitlines() if l.startswith("epoch ")]
            acc = float(lines[-1].split("accuracy")[1].split("%")[0]) if lines else 0
            if len(lines) != 2 or acc < 90:
                failures.append("expected 2 epoch lines and > 90%% accuracy, got:\n" + r.stdout)

        missing = run(prog, "--data", os.path.join(d, "nowhere"))
        if missing.returncode != 1 or "cannot open" not in missing.stderr:
            failures.append("missing folder: exit %d, stderr %r" % (missing.returncode, missing.stderr))

        with gzip.open(os.path.join(d, "train-images-idx3-ubyte.gz"), "wb") as f:
            f.write(struct.pack(">IIII", 2051, 600, 28, 28) + b"\0" * 100)  # truncated
        r = run(prog, "--data", d)
        if r.returncode != 1 or "but the file is" not in r.stderr:
            failures.append("truncated file: exit %d, stderr %r" % (r.returncode, r.stderr))

        with gzip.open(os.path.join(d, "train-images-idx3-ubyte.gz"), "wb") as f:
            f.write(struct.pack(">IIII", 1234, 600, 28, 28))
        r = run(prog, "--data", d)
        if r.returncode != 1 or "bad magic number" not in r.stderr:
            failures.append("bad magic: exit %d, stderr %r" % (r.returncode, r.stderr))

        r = run(prog, "--epochs", "0")
        if r.returncode != 2:
            failures.append("--epochs 0: exit %d" % r.returncode)
    for f in failures:
        print("FAIL:", f)
    print("%d passed, %d failed" % (5 - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
