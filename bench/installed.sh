#!/bin/sh
# usage: installed.sh BUILD_DIR SOURCE_DIR OUT_DIR
# Builds agrad-bench the way a user of an installed agrad builds a program:
# `meson install` of BUILD_DIR into OUT_DIR/root, then the benchmark's
# sources compiled and linked with `pkg-config --cflags --libs agrad` (the
# shared library, which is what that links) into
# OUT_DIR/agrad-bench-installed. Its run path names the installed library's
# folder, as the loader's own path would after a real install. agrad-bench
# --installed runs it (CC: the compiler to use, default cc).
set -eu
build=$1
src=$2
out=$3
mkdir -p "$out"
rm -rf "$out/root" "$out/pc"
meson install -C "$build" --no-rebuild --destdir "$out/root" >"$out/install.log" 2>&1 || {
    cat "$out/install.log"; echo "installed.sh: meson install failed"; exit 1; }

pc=$(find "$out/root" -name agrad.pc | head -n 1)
lib=$(find "$out/root" -name 'libagrad.so' | head -n 1)
[ -n "$pc" ] && [ -n "$lib" ] || { echo "installed.sh: agrad.pc or libagrad.so was not installed"; exit 1; }
libdir=$(dirname "$lib")

# agrad.pc as installed, its prefix moved under the temporary root
mkdir "$out/pc"
prefix=$(sed -n 's/^prefix=//p' "$pc")
sed "s|^prefix=.*|prefix=$out/root$prefix|" "$pc" >"$out/pc/agrad.pc"
PKG_CONFIG_PATH="$out/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export PKG_CONFIG_PATH
cflags=$(pkg-config --cflags agrad)
libs=$(pkg-config --libs agrad)
echo "installed.sh: pkg-config --libs agrad: $libs"

cc=${CC:-cc}
# shellcheck disable=SC2086
$cc -std=c11 -O2 -D_GNU_SOURCE -fopenmp $cflags \
    -DAGRAD_SOURCE_ROOT="\"$src\"" -DAGRAD_BUILD_ROOT="\"$build\"" \
    "$src/bench/main.c" "$src/bench/bench_sched.c" "$src/bench/bench_autograd.c" \
    "$src/bench/bench_optim.c" "$src/bench/bench_machine.c" \
    -o "$out/agrad-bench-installed" $libs -lm -lpthread -Wl,-rpath,"$libdir"
if ldd "$out/agrad-bench-installed" | grep -q 'not found'; then
    ldd "$out/agrad-bench-installed"; echo "installed.sh: the program does not find its libraries"; exit 1
fi
ldd "$out/agrad-bench-installed" | grep libagrad
