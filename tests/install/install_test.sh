#!/bin/sh
# usage: install_test.sh BUILD_DIR outside.c
# meson install --destdir into a temporary root, then compile and run a
# program with `pkg-config --cflags --libs agrad` against what was installed.
set -eu
build=$1
prog_src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

meson install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log"; echo "install_test: meson install failed"; exit 1; }

pc=$(find "$tmp/root" -name agrad.pc | head -n 1)
[ -n "$pc" ] || { echo "install_test: agrad.pc was not installed"; exit 1; }
hdr=$(find "$tmp/root" -name agrad.h | head -n 1)
[ -n "$hdr" ] || { echo "install_test: agrad.h was not installed"; exit 1; }

PKG_CONFIG_PATH=$(dirname "$pc")
PKG_CONFIG_SYSROOT_DIR="$tmp/root"
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
cflags=$(pkg-config --cflags agrad)
libs=$(pkg-config --libs agrad)
echo "pkg-config: $cflags $libs"
# shellcheck disable=SC2086
${CC:-cc} -std=c11 -Wall -Wextra -Werror $cflags "$prog_src" -o "$tmp/outside" $libs -ldl
libdir=$(dirname "$(find "$tmp/root" -name 'libagrad.so' | head -n 1)")
LD_LIBRARY_PATH="$libdir" "$tmp/outside"

# Only the public API leaves the shared library.
leaked=$(nm -D --defined-only "$libdir/libagrad.so" | awk '{print $3}' | grep -v -E '^(ag_|ws_)' | grep -v -E '^_(init|fini)$' || true)
if [ -n "$leaked" ]; then
    echo "install_test: symbols exported beyond ag_/ws_:"; echo "$leaked"; exit 1
fi
echo "install_test: ok"
