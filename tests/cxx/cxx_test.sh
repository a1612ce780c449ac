#!/bin/sh
# usage: cxx_test.sh PROGRAM.cpp "CFLAGS" "LIBS" [LIBDIR]
# Builds PROGRAM.cpp with every C++ compiler found (g++, clang++, and $CXX)
# at -std=c++11, c++14, c++17 and c++20 with -Wall -Wextra -Werror, then runs each
# build (with LIBDIR on the library path). CFLAGS and LIBS say where the
# headers and the library are: the build tree, or pkg-config's answer for
# an installed agrad. Exits 77 (skipped) when there is no C++ compiler.
set -eu
src=$1
cflags=$2
libs=$3
libdir=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

compilers=""
for c in ${CXX:-} g++ clang++; do
    if command -v "$c" >/dev/null 2>&1; then
        case " $compilers " in *" $c "*) ;; *) compilers="$compilers $c" ;; esac
    fi
done
if [ -z "$compilers" ]; then
    echo "cxx_test: no C++ compiler found, skipped"
    exit 77
fi

for c in $compilers; do
    for std in c++11 c++14 c++17 c++20; do
        exe="$tmp/headers-$(basename "$c")-$std"
        # shellcheck disable=SC2086
        "$c" -std=$std -Wall -Wextra -Werror $cflags "$src" -o "$exe" $libs
        if [ -n "$libdir" ]; then
            LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$exe"
        else
            "$exe"
        fi
        echo "cxx_test: $c -std=$std ok"
    done
done
