#!/bin/sh
# Regenerates examples/expected/*.txt with Debian's PyTorch 1.13.
set -eu
cd "$(dirname "$0")"
for py in tutorial*.py; do
    /usr/bin/python3 "$py" > "../expected/${py%.py}.txt" 2>/dev/null
done
