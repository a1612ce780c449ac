#!/usr/bin/env python3
"""Lists every C function longer than LIMIT lines (body lines between its
braces, comments and strings left out) in the files given; exits 1 if any.
usage: fnlen.py LIMIT FILE..."""
import re
import sys


def long_functions(path, limit):
    src = open(path, encoding="utf-8").read()
    # Comments and literals may hold braces: blank them, keeping the lines.
    src = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), src, flags=re.S)
    src = re.sub(r"//[^\n]*", "", src)
    src = re.sub(r'"(\\.|[^"\\\n])*"', '""', src)
    src = re.sub(r"'(\\.|[^'\\\n])*'", "''", src)
    lines = src.split("\n")
    depth, start, head = 0, None, ""
    for i, line in enumerate(lines):
        for ch in line:
            if ch == "{":
                if depth == 0:
                    start, head = i, " ".join(lines[max(0, i - 2) : i + 1])
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0 and start is not None:
                    n = i - start - 1
                    # A function: a parameter list before the brace, not an initializer.
                    if n > limit and ")" in head and "=" not in head.split("(")[0]:
                        yield f"{path}:{start + 1}: {n} lines: {lines[start].strip()[:70]}"
                    start = None


def main():
    limit = int(sys.argv[1])
    found = [msg for path in sys.argv[2:] for msg in long_functions(path, limit)]
    for msg in found:
        print(msg)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
