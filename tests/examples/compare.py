"""Runs an example and compares what it prints with what PyTorch printed
(examples/expected/NAME.txt), object addresses aside. Prints a unified diff
on a mismatch. usage: compare.py PROGRAM EXPECTED"""
import difflib
import re
import subprocess
import sys

ADDR = re.compile(r"0x[0-9a-f]+")


def main():
    prog, expected = sys.argv[1], sys.argv[2]
    run = subprocess.run([prog], capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        print(run.stdout + run.stderr)
        print("%s exited with %d" % (prog, run.returncode))
        return 1
    got = ADDR.sub("0xADDR", run.stdout).splitlines(keepends=True)
    with open(expected) as f:
        want = ADDR.sub("0xADDR", f.read()).splitlines(keepends=True)
    if got != want:
        sys.stdout.writelines(difflib.unified_diff(want, got, "pytorch", "agrad"))
        return 1
    print("%d lines identical to PyTorch's" % len(got))
    return 0


if __name__ == "__main__":
    sys.exit(main())
