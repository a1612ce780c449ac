"""Checks examples/fashion_mnist on data it makes itself: a tiny, learnable
IDX data set in a temporary folder (training must print its epoch lines and
beat chance, and save its weights); weights saved after a short run and
evaluated again with --load give the same test accuracy, image for image;
and the clear errors for a missing folder, a truncated file, a bad magic
number and weights that are missing, malformed or of another model (exit
code 1, a message, no crash).
usage: fashion_test.py PROGRAM"""
import gzip
import json
import os
import random
import re
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


def run(prog, *args, cwd=None):
    return subprocess.run([prog, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def accuracy(pattern, out):
    """(percent, correct, total) from the line matching pattern, or None."""
    m = re.search(pattern + r"test accuracy ([0-9.]+)% \((\d+) of (\d+)\)", out)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def safetensors(path, tensors):
    """A safetensors file of float32 tensors: {name: (shape, values)}."""
    header, data = {}, b""
    for name, (shape, values) in tensors.items():
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + 4 * len(values)]}
        data += struct.pack("<%df" % len(values), *values)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def check_save_load(prog, d, failures):
    """A short run (short enough not to reach 100%) saves its weights;
    --load gives the same accuracy, image for image."""
    w = os.path.join(d, "short.safetensors")
    r = run(prog, "--data", d, "--epochs", "1", "--batch", "16", "--lr", "0.001", "--limit", "40", "--quiet",
            "--save", w)
    trained = accuracy("final ", r.stdout)
    if r.returncode != 0 or not trained or not os.path.exists(w):
        failures.append("short run with --save: exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
        return
    r = run(prog, "--data", d, "--limit", "40", "--load", w)
    loaded = accuracy("weights from .*: ", r.stdout)
    if r.returncode != 0 or loaded != trained:
        failures.append("--load: exit %d, accuracy %r after training, %r loaded\n%s%s"
                        % (r.returncode, trained, loaded, r.stdout, r.stderr))
    if "epoch" in r.stdout:
        failures.append("--load trained: " + r.stdout)

    bad = [("missing", os.path.join(d, "none.safetensors"), "cannot open"),
           ("truncated", os.path.join(d, "cut.safetensors"), "past the end"),
           ("another model", os.path.join(d, "other.safetensors"), "is not a float32 tensor of shape (256, 784)"),
           ("other names", os.path.join(d, "names.safetensors"), "file does not contain tensor '0.weight'")]
    with open(w, "rb") as f:
        whole = f.read()
    with open(bad[1][1], "wb") as f:
        f.write(whole[:len(whole) // 2])
    safetensors(bad[2][1], {"0.weight": ([2, 2], [1, 2, 3, 4]), "0.bias": ([256], [0] * 256),
                            "2.weight": ([10, 256], [0] * 2560), "2.bias": ([10], [0] * 10)})
    safetensors(bad[3][1], {"fc1.weight": ([1], [1])})
    for what, path, msg in bad:
        r = run(prog, "--data", d, "--limit", "10", "--load", path)
        if r.returncode != 1 or msg not in r.stderr:
            failures.append("--load of %s weights: exit %d, stderr %r" % (what, r.returncode, r.stderr))


def main():
    prog = os.path.abspath(sys.argv[1])
    failures = []
    rng = random.Random(3)
    with tempfile.TemporaryDirectory() as d:
        write_idx(d, "train", *make_set(600, rng))
        write_idx(d, "t10k", *make_set(200, rng))
        r = run(prog, "--data", d, "--epochs", "2", "--batch", "32", "--lr", "0.01", "--quiet", cwd=d)
        if r.returncode != 0:
            failures.append("training on a tiny set failed: %s" % r.stderr)
        else:
            lines = [l for l in r.stdout.splitlines() if l.startswith("epoch ")]
            acc = float(lines[-1].split("accuracy")[1].split("%")[0]) if lines else 0
            if len(lines) != 2 or acc < 90:
                failures.append("expected 2 epoch lines and > 90%% accuracy, got:\n" + r.stdout)
            if not os.path.exists(os.path.join(d, "fashion_mnist.safetensors")):
                failures.append("no weights saved at the default path:\n" + r.stdout)
        check_save_load(prog, d, failures)

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
    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
