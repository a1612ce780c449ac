#!/usr/bin/env bash
# Installs the Debian packages agrad's build, tests and benchmarks need, when
# any is missing. Usage: .ci/deps.sh [build|bench]  (bench adds PyTorch,
# gnuplot, and the serial OpenBLAS and threaded BLIS that the GEMM benchmark
# calls directly for comparison).
set -euo pipefail
pkgs=(meson ninja-build pkg-config gcc g++ clang clang-format python3 libclang-rt-14-dev libc6-dev libcmocka-dev libjemalloc-dev libomp-14-dev zlib1g-dev libblis-serial-dev)
if [ "${1:-build}" = bench ]; then
    pkgs+=(python3 python3-torch libopenblas0-openmp libopenblas0-serial libblis4-pthread gnuplot-nox)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps.sh: missing packages and not root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
