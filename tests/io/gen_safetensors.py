"""Writes the safetensors files that test_safetensors_golden.c reads, with
nothing but struct and json (the safetensors package is not in Debian) and
tensors made by PyTorch, whose bytes are what safetensors.torch would
store:

  golden_torch.safetensors   F32 and F64 tensors (0-dim, empty, 8-dim,
                             special values, names that need escapes) next
                             to tensors of PyTorch's other dtypes (BF16, F16,
                             I64, I32, I16, I8, U8, BOOL) that agrad must
                             skip, with __metadata__, in the reference
                             writer's layout
  golden_layout.safetensors  only the F32 and F64 tensors, no metadata:
                             byte for byte what the reference writer
                             (safetensors.serialize) makes of them, which
                             ag_save must reproduce
  golden_messy.safetensors   the same tensors behind a valid but unusual
                             header: pretty-printed, keys and fields in
                             another order than the data, \\u escapes and
                             surrogate pairs, an unknown field
  golden_values.txt          for each F32/F64 tensor: its name (UTF-8 as
                             hex), dtype, shape and the raw bits of every
                             element in hex, so C compares them exactly

Each file is read back here with a plain reader and compared with the
PyTorch tensors it came from. Run with Debian's python3-torch:
    /usr/bin/python3 tests/io/gen_safetensors.py"""
import json
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))

# The reference's dtype order (the writer sorts on it, widest first).
ORDER = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16",
         "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64"]
NAMES = {torch.float32: "F32", torch.float64: "F64", torch.bfloat16: "BF16", torch.float16: "F16",
         torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
         torch.bool: "BOOL"}
SAME_SIZE_INT = {torch.float32: torch.int32, torch.float64: torch.int64, torch.bfloat16: torch.int16,
                 torch.float16: torch.int16}


def raw(t):
    """The tensor's bytes, little-endian, row-major (as safetensors.torch)."""
    t = t.contiguous()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if t.dtype in SAME_SIZE_INT:
        t = t.view(SAME_SIZE_INT[t.dtype])
    return t.numpy().tobytes()  # little-endian: checked in main()


def from_raw(b, dtype, shape):
    if dtype == torch.bool:
        return torch.frombuffer(bytearray(b), dtype=torch.uint8).to(torch.bool).reshape(shape)
    if not b:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(b), dtype=dtype).reshape(shape).clone()


def serialize(tensors, metadata=None):
    """safetensors.serialize: widest dtype first, then by name; compact JSON
    (non-ASCII as UTF-8); header padded with spaces to a multiple of 8."""
    items = sorted(tensors.items(), key=lambda kv: (-ORDER.index(NAMES[kv[1].dtype]), kv[0].encode()))
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in items:
        b = raw(t)
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def deserialize(buf):
    """A plain reader: every tensor of the file, checked to tile the data."""
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode())
    header.pop("__metadata__", None)
    data = buf[8 + n:]
    out, pos = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        s, e = info["data_offsets"]
        assert s == pos, name
        pos = e
        dtype = {v: k for k, v in NAMES.items()}[info["dtype"]]
        out[name] = from_raw(data[s:e], dtype, info["shape"])
    assert pos == len(data)
    return out


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and raw(a) == raw(b)


def float_tensors():
    g = torch.Generator().manual_seed(15)
    special32 = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-45, 3.4028234663852886e38,
                              1.1754943508222875e-38, -1.5, 1 / 3], dtype=torch.float32)
    special64 = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 5e-324, 1.7976931348623157e308,
                              -2.5, 1 / 3, 0.1], dtype=torch.float64)
    return {
        "fc1.weight": torch.randn(4, 3, generator=g, dtype=torch.float32),
        "fc1.bias": torch.randn(4, generator=g, dtype=torch.float32),
        "fc2.weight": torch.randn(2, 4, generator=g, dtype=torch.float64),
        "scalar": torch.tensor(2.75, dtype=torch.float32),
        "scalar64": torch.tensor(-1e-300, dtype=torch.float64),
        "empty": torch.zeros(0, 3, dtype=torch.float64),
        "empty32": torch.zeros(2, 0, dtype=torch.float32),
        "eight.dims": torch.randn(1, 2, 1, 2, 1, 2, 1, 3, generator=g, dtype=torch.float32),
        "special32": special32,
        "special64": special64,
        "caf\u00e9/\U0001d70e": torch.randn(3, generator=g, dtype=torch.float64),
        'quote"back\\slash\ttab\x01': torch.randn(2, 2, generator=g, dtype=torch.float32),
        "": torch.tensor([7.0], dtype=torch.float32),
    }


def other_tensors():
    g = torch.Generator().manual_seed(16)
    return {
        "bf16": torch.randn(3, 2, generator=g).to(torch.bfloat16),
        "f16": torch.randn(5, generator=g).to(torch.float16),
        "i64": torch.tensor([-(2 ** 63), 2 ** 63 - 1, 0], dtype=torch.int64),
        "i32": torch.tensor([[1, -2], [3, -4]], dtype=torch.int32),
        "i16": torch.tensor([-300, 300, 7], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 1], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 9, 10, 11], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True], dtype=torch.bool),
    }


def messy(tensors):
    """A valid header nobody's writer makes: indented, newlines and tabs,
    every key \\u-escaped where it can be, fields reordered, an extra field,
    entries listed in reverse of their data order."""
    items = sorted(tensors.items(), key=lambda kv: kv[0].encode())
    entries, blobs, offset = [], [], 0
    for name, t in items:
        b = raw(t)
        entries.append((name, t, offset, offset + len(b)))
        blobs.append(b)
        offset += len(b)
    parts = ['\t"__metadata__" : { "comment" : "written by hand \\ud83d\\ude00" }']
    for name, t, s, e in reversed(entries):
        key = json.dumps(name, ensure_ascii=True)
        parts.append('\r\n  %s :\n { "data_offsets" : [ %d , %d ],\n   "note": [1.5e3, {"deep": [true, null, -0.0]}],'
                     '  "shape": %s, "\\u0064type": "%s" }' % (key, s, e, json.dumps(list(t.shape)), NAMES[t.dtype]))
    text = ("{\n" + ",".join(parts) + "\n}\n \t").encode()
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def bits(t):
    if t.dtype == torch.float32:
        return ["%08x" % (v & 0xFFFFFFFF) for v in t.contiguous().view(torch.int32).reshape(-1).tolist()]
    return ["%016x" % (v & 0xFFFFFFFFFFFFFFFF) for v in t.contiguous().view(torch.int64).reshape(-1).tolist()]


def main():
    assert sys.byteorder == "little"
    floats, others = float_tensors(), other_tensors()
    both = dict(floats, **others)
    files = {
        "golden_torch.safetensors": (serialize(both, {"format": "pt", "source": "gen_safetensors.py"}), both),
        "golden_layout.safetensors": (serialize(floats), floats),
        "golden_messy.safetensors": (messy(floats), floats),
    }
    for fname, (buf, want) in files.items():
        got = deserialize(buf)
        assert got.keys() == want.keys(), fname
        for k in want:
            assert same(got[k], want[k]), (fname, k)
        with open(os.path.join(HERE, fname), "wb") as f:
            f.write(buf)
    with open(os.path.join(HERE, "golden_values.txt"), "w") as f:
        f.write("# name (UTF-8, hex; '-' for the empty name) dtype ndim shape... bits of each element (hex)\n")
        for name, t in sorted(floats.items(), key=lambda kv: kv[0].encode()):
            f.write(" ".join([name.encode().hex() or "-", NAMES[t.dtype], str(t.dim())]
                             + [str(d) for d in t.shape] + bits(t)) + "\n")
        f.write("# tensors of other dtypes in golden_torch.safetensors\n")
        for name, t in sorted(others.items()):
            f.write("other %s %s\n" % (name, NAMES[t.dtype]))


if __name__ == "__main__":
    main()
