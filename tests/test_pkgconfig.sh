#!/bin/sh
# Downstream builds: `make install` into a temporary prefix, then a C and a C++17 consumer
# (tests/consumers/) built with nothing but `pkg-config --cflags --libs cfnet`, each linked once
# against the shared library and once statically against libcfnet.a (`pkg-config --static`);
# all four must run and print the right output. Finally `make uninstall` must remove every
# installed file.
# Environment (set by `make check`): CFNET_SANITIZE, CFNET_BUILD, CC (see tests/sanitizer_env.sh).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-pkgconfig.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
prefix=$tmp/prefix
out=$tmp/build
mkdir -p "$out"

fail() { echo "test_pkgconfig: FAIL: $*" >&2; exit 1; }

# The same build variant (sanitizer, compiler) as the libraries under test.
. tests/sanitizer_env.sh
makevars="SANITIZE=${CFNET_SANITIZE:-} CC=$SAN_CC"
extra=$SAN_CFLAGS

# Run make afresh, not as a child of the `make check` that runs this script.
unset MAKEFLAGS MFLAGS MAKELEVEL || true
# shellcheck disable=SC2086
make --no-print-directory -s install PREFIX="$prefix" $makevars >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "make install"; }

version=$(sed -n 's/^#define CFNET_VERSION_MAJOR \([0-9]*\).*/\1/p' include/cfnet/cfnet.h).$(
    sed -n 's/^#define CFNET_VERSION_MINOR \([0-9]*\).*/\1/p' include/cfnet/cfnet.h).$(
    sed -n 's/^#define CFNET_VERSION_PATCH \([0-9]*\).*/\1/p' include/cfnet/cfnet.h)
for f in include/cfnet/cfnet.h lib/libcfnet.so "lib/libcfnet.so.$version" lib/libcfnet.a \
         lib/pkgconfig/cfnet.pc; do
    [ -e "$prefix/$f" ] || fail "make install did not install $f"
done

PKG_CONFIG_PATH=$prefix/lib/pkgconfig
export PKG_CONFIG_PATH
pc_version=$(pkg-config --modversion cfnet) || fail "pkg-config does not find cfnet"
[ "$pc_version" = "$version" ] || fail "cfnet.pc says $pc_version, the header $version"
cflags=$(pkg-config --cflags cfnet)
libs=$(pkg-config --libs cfnet)
static_libs=$(pkg-config --static --libs cfnet)
echo "test_pkgconfig: cfnet $pc_version: cflags [$cflags] libs [$libs] static [$static_libs]"
# Static: libcfnet.a instead of the .so, its private dependencies as pkg-config lists them.
static_libs=$(echo " $static_libs " | sed 's/ -lcfnet / -Wl,-Bstatic -lcfnet -Wl,-Bdynamic /')

warn="-Wall -Wextra -Wpedantic -Werror"
status=0
build_and_run() { # name compiler std source link-flags
    name=$1 cc=$2 std=$3 src=$4 link=$5
    # shellcheck disable=SC2086
    $cc $std $warn $extra $cflags "tests/consumers/$src" -o "$out/$name" $link ||
        fail "$name: build"
    needed=$(readelf -d "$out/$name" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    case $name in
    *static*)
        case "$needed" in *libcfnet*) fail "$name needs a shared libcfnet: $needed" ;; esac
        output=$(env -u LD_LIBRARY_PATH "$out/$name") || fail "$name: run: $output"
        ;;
    *)
        case "$needed" in *"libcfnet.so.${version%%.*}"*) ;; *) fail "$name does not need libcfnet.so: $needed" ;; esac
        resolved=$(LD_LIBRARY_PATH=$prefix/lib ldd "$out/$name" | sed -n 's/.*libcfnet[^ ]* => \([^ ]*\).*/\1/p')
        [ "$resolved" = "$prefix/lib/libcfnet.so.${version%%.*}" ] ||
            fail "$name resolves libcfnet to '$resolved', not the installed copy"
        output=$(LD_LIBRARY_PATH=$prefix/lib "$out/$name") || fail "$name: run: $output"
        ;;
    esac
    echo "$output" | sed "s/^/  $name: /"
    echo "$output" | grep -qx "libcfnet $version (header $version)" || fail "$name: version line"
    echo "$output" | grep -q "^output 2 x 3, network output shape (3)" || fail "$name: shape"
    echo "$output" | grep -qx "consumer ok" || fail "$name: not ok"
}

build_and_run c-shared "$SAN_CC" -std=c11 consumer.c "$libs"
build_and_run c-static "$SAN_CC" -std=c11 consumer.c "$static_libs"
build_and_run cxx-shared "$SAN_CXX" -std=c++17 consumer.cpp "$libs"
build_and_run cxx-static "$SAN_CXX" -std=c++17 consumer.cpp "$static_libs"

# shellcheck disable=SC2086
make --no-print-directory -s uninstall PREFIX="$prefix" $makevars >"$tmp/uninstall.log" 2>&1 ||
    { cat "$tmp/uninstall.log"; fail "make uninstall"; }
left=$(find "$prefix" ! -type d)
[ -z "$left" ] || fail "make uninstall left: $left"
[ ! -d "$prefix/include/cfnet" ] || fail "make uninstall left include/cfnet/"
echo "test_pkgconfig: install, 4 consumers (C/C++17, shared/static), uninstall: ok"
