#!/bin/sh
# usage: install_test.sh BUILD_DIR SOURCE_DIR
# meson install --destdir into a temporary root, then build two programs
# against what was installed, each linked the three ways users link:
#   shared:  cc prog.c $(pkg-config --cflags --libs agrad)
#   private: cc prog.c $(pkg-config --cflags --static --libs agrad)
#   static:  cc prog.c $(pkg-config --cflags agrad) -Wl,-Bstatic -lagrad -Wl,-Bdynamic <Libs.private>
# The programs: tests/install/outside.c (a backward, and the application's
# malloc left alone) and tests/stress/test_products.c (products from many
# threads exact against one thread, and no thread started by a product).
# Then tests/cxx/headers.cpp, C++ against the installed headers and library.
set -eu
unset LD_LIBRARY_PATH  # the installed library, not the build tree's
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

meson install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log"; echo "install_test: meson install failed"; exit 1; }

pc=$(find "$tmp/root" -name agrad.pc | head -n 1)
[ -n "$pc" ] || { echo "install_test: agrad.pc was not installed"; exit 1; }
hdr=$(find "$tmp/root" -name agrad.h | head -n 1)
[ -n "$hdr" ] || { echo "install_test: agrad.h was not installed"; exit 1; }
lib=$(find "$tmp/root" -name 'libagrad.so' | head -n 1)
[ -n "$lib" ] || { echo "install_test: libagrad.so was not installed"; exit 1; }
libdir=$(dirname "$lib")
[ -f "$libdir/libagrad.a" ] || { echo "install_test: libagrad.a was not installed"; exit 1; }

# agrad.pc as installed, with its prefix moved under the temporary root.
mkdir "$tmp/pc"
prefix=$(sed -n 's/^prefix=//p' "$pc")
sed "s|^prefix=.*|prefix=$tmp/root$prefix|" "$pc" >"$tmp/pc/agrad.pc"
PKG_CONFIG_PATH="$tmp/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export PKG_CONFIG_PATH
cflags=$(pkg-config --cflags agrad)
libs=$(pkg-config --libs agrad)
libs_static=$(pkg-config --static --libs agrad)
libs_private=$(echo " $libs_static " | sed 's/ -lagrad / /; s/ -L[^ ]* / /')
echo "pkg-config --libs agrad: $libs"
echo "pkg-config --static --libs agrad: $libs_static"

# Everything the shared library needs resolves without help: a BLAS found
# at build time outside the loader's folders must be reached by a run path
# that meson install kept.
if ldd "$lib" | grep -q 'not found'; then
    ldd "$lib"; echo "install_test: the installed libagrad.so does not find its libraries"; exit 1
fi

cmocka=$(pkg-config --cflags --libs cmocka)
cc=${CC:-cc}
build_prog() { # name source link...
    name=$1 source=$2
    shift 2
    # shellcheck disable=SC2086
    $cc -std=c11 -Wall -Wextra -Werror -DPRODUCT_REPS=20 $cflags "$source" -o "$tmp/$name" "$@" $cmocka -ldl
}
for prog in outside products; do
    case $prog in
    outside) source=$src/tests/install/outside.c ;;
    products) source=$src/tests/stress/test_products.c ;;
    esac
    # shellcheck disable=SC2086
    build_prog "$prog-shared" "$source" $libs
    # shellcheck disable=SC2086
    build_prog "$prog-private" "$source" $libs_static
    # shellcheck disable=SC2086
    build_prog "$prog-static" "$source" -L"$libdir" -Wl,-Bstatic -lagrad -Wl,-Bdynamic $libs_private
    if ldd "$tmp/$prog-static" | grep -q libagrad; then
        ldd "$tmp/$prog-static"; echo "install_test: the static link loads libagrad.so"; exit 1
    fi
    for link in shared private static; do
        echo "install_test: $prog, $link link"
        LD_LIBRARY_PATH="$libdir" BLIS_NUM_THREADS=4 OMP_NUM_THREADS=4 "$tmp/$prog-$link" >"$tmp/out.log" 2>&1 || {
            cat "$tmp/out.log"; echo "install_test: $prog ($link link) failed"; exit 1; }
    done
done
# Both public headers compile as C++ and work against the installed
# library (skipped, 77, without a C++ compiler).
sh "$src/tests/cxx/cxx_test.sh" "$src/tests/cxx/headers.cpp" "$cflags" "$libs -ldl" "$libdir" || [ $? -eq 77 ]

# Only the public API leaves the shared library (a BLAS linked into it
# stays private).
leaked=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v -E '^(ag_|ws_)' | grep -v -E '^_(init|fini)$' || true)
if [ -n "$leaked" ]; then
    echo "install_test: symbols exported beyond ag_/ws_:"; echo "$leaked" | head -n 20; exit 1
fi
echo "install_test: ok"
