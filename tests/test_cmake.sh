#!/bin/sh
# The CMake package: `make install DESTDIR=... PREFIX=/usr/local` stages an installation; a C++17
# project (tests/consumers/cmake) finds it with find_package(cfnet CONFIG) through
# CMAKE_PREFIX_PATH and is built twice, against cfnet::cfnet (must need libcfnet.so.N) and
# against cfnet::cfnet_static (must not); both must run and print the right output. A request
# for a newer major version must be refused, and a version range honoured at both ends.
# Environment (set by `make check`): CFNET_SANITIZE, CFNET_BUILD, CC (see tests/sanitizer_env.sh).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. tests/skip_lib.sh
command -v cmake >/dev/null 2>&1 || { skip_missing test_cmake "every check" cmake; exit 0; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-cmake.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "test_cmake: FAIL: $*" >&2; exit 1; }

. tests/sanitizer_env.sh
makevars="SANITIZE=${CFNET_SANITIZE:-} CC=$SAN_CC"
unset MAKEFLAGS MFLAGS MAKELEVEL || true
stage=$tmp/stage
# shellcheck disable=SC2086
make --no-print-directory -s install DESTDIR="$stage" PREFIX=/usr/local $makevars \
    >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "make install"; }
root=$stage/usr/local
[ -f "$root/lib/cmake/cfnet/cfnetConfig.cmake" ] || fail "no lib/cmake/cfnet/cfnetConfig.cmake"
[ -f "$root/lib/cmake/cfnet/cfnetConfigVersion.cmake" ] || fail "no cfnetConfigVersion.cmake"
version=$(sed -n 's/^#define CFNET_VERSION_MAJOR \([0-9]*\).*/\1/p' include/cfnet/cfnet.h).$(
    sed -n 's/^#define CFNET_VERSION_MINOR \([0-9]*\).*/\1/p' include/cfnet/cfnet.h).$(
    sed -n 's/^#define CFNET_VERSION_PATCH \([0-9]*\).*/\1/p' include/cfnet/cfnet.h)
major=${version%%.*}

for target in cfnet::cfnet cfnet::cfnet_static; do
    name=$(echo "$target" | sed 's/.*:://')
    bdir=$tmp/build-$name
    cmake -S tests/consumers/cmake -B "$bdir" -DCMAKE_PREFIX_PATH="$root" \
        -DCFNET_TARGET="$target" -DCMAKE_C_COMPILER="$SAN_CC" -DCMAKE_CXX_COMPILER="$SAN_CXX" \
        -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror $SAN_CFLAGS" \
        -DCMAKE_EXE_LINKER_FLAGS="$SAN_CFLAGS" >"$tmp/$name-configure.log" 2>&1 ||
        { cat "$tmp/$name-configure.log"; fail "$target: cmake configure"; }
    grep -q "cfnet $version from $root/lib/cmake/cfnet" "$tmp/$name-configure.log" ||
        { cat "$tmp/$name-configure.log"; fail "$target: found another cfnet"; }
    cmake --build "$bdir" >"$tmp/$name-build.log" 2>&1 ||
        { cat "$tmp/$name-build.log"; fail "$target: build"; }
    needed=$(readelf -d "$bdir/consumer" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    case "$target:$needed" in
    cfnet::cfnet_static:*libcfnet*) fail "$target: the program needs a shared libcfnet: $needed" ;;
    cfnet::cfnet:*"libcfnet.so.$major"*) ;;
    cfnet::cfnet:*) fail "$target: the program does not need libcfnet.so.$major: $needed" ;;
    esac
    output=$(env -u LD_LIBRARY_PATH LD_LIBRARY_PATH="$root/lib" "$bdir/consumer") ||
        fail "$target: run: $output"
    echo "$output" | sed "s/^/  $name: /"
    echo "$output" | grep -qx "libcfnet $version (header $version)" || fail "$target: version line"
    echo "$output" | grep -qx "consumer ok" || fail "$target: not ok"
done

# docs/deploy.md's CMake lines, as written, with both of the targets it names, around the C++
# consumer above.
awk '/^\*\*CMake\*\*/ { a = 1 } a && /^```cmake/ { b = 1; next } b && /^```/ { exit } b' \
    docs/deploy.md >"$tmp/deploy.cmake"
grep -q "target_link_libraries(app PRIVATE cfnet::cfnet)" "$tmp/deploy.cmake" ||
    fail "no CMake block linking cfnet::cfnet under docs/deploy.md's **CMake**"
for target in cfnet::cfnet cfnet::cfnet_static; do
    d=$tmp/deploy-$(echo "$target" | sed 's/.*:://')
    mkdir -p "$d"
    cp tests/consumers/consumer.cpp "$d/app.cpp"
    { printf 'cmake_minimum_required(VERSION 3.13)\nproject(app LANGUAGES C CXX)\nset(CMAKE_CXX_STANDARD 17)\n'
      sed "s/PRIVATE cfnet::cfnet)/PRIVATE $target)/" "$tmp/deploy.cmake"; } >"$d/CMakeLists.txt"
    { cmake -S "$d" -B "$d/build" -DCMAKE_PREFIX_PATH="$root" -DCMAKE_C_COMPILER="$SAN_CC" \
        -DCMAKE_CXX_COMPILER="$SAN_CXX" -DCMAKE_CXX_FLAGS="$SAN_CFLAGS" \
        -DCMAKE_EXE_LINKER_FLAGS="$SAN_CFLAGS" && cmake --build "$d/build"; } >"$d.log" 2>&1 ||
        { cat "$d.log"; fail "docs/deploy.md's CMake lines with $target: configure or build"; }
    env -u LD_LIBRARY_PATH LD_LIBRARY_PATH="$root/lib" "$d/build/app" | grep -qx "consumer ok" ||
        fail "docs/deploy.md's CMake lines with $target: the program did not run"
done
echo "test_cmake: docs/deploy.md's CMake lines, with cfnet::cfnet and cfnet::cfnet_static: ok"

# A newer major version than installed is not found.
mkdir -p "$tmp/newer"
cat > "$tmp/newer/CMakeLists.txt" <<EOC
cmake_minimum_required(VERSION 3.13)
project(newer LANGUAGES C)
find_package(cfnet $((major + 1)) CONFIG REQUIRED)
EOC
if cmake -S "$tmp/newer" -B "$tmp/newer/build" -DCMAKE_PREFIX_PATH="$root" >"$tmp/newer.log" 2>&1; then
    fail "find_package(cfnet $((major + 1))) accepted version $version"
fi
# A version range (CMake 3.19 and newer) is honoured at both ends: a range that ends below the
# installed version (inclusive or not), or just before it, is refused; one that contains it is
# accepted.
cmake_mm=$(cmake --version | sed -n 's/^cmake version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
if [ "${cmake_mm% *}" -gt 3 ] || { [ "${cmake_mm% *}" -eq 3 ] && [ "${cmake_mm#* }" -ge 19 ]; }; then
    n=0
    # an inclusive upper end below the installed version (when there is one of the same major)
    below=""
    [ "$version" = "$major.0.0" ] || below="$major...$major.0:no"
    for want in "$major...<$version:no" "$major...$version:yes" "$version...<$((major + 1)):yes" \
        "$major...<$((major + 1)):yes" $below; do
        range=${want%:*} n=$((n + 1))
        mkdir -p "$tmp/range$n"
        printf 'cmake_minimum_required(VERSION 3.19)\nproject(range LANGUAGES C)\nfind_package(cfnet %s CONFIG REQUIRED)\n' \
            "$range" >"$tmp/range$n/CMakeLists.txt"
        if cmake -S "$tmp/range$n" -B "$tmp/range$n/build" -DCMAKE_PREFIX_PATH="$root" \
            >"$tmp/range$n.log" 2>&1; then got=yes; else got=no; fi
        [ "$got" = "${want##*:}" ] || { cat "$tmp/range$n.log"; fail "find_package(cfnet $range) with $version installed: found: $got"; }
    done
    echo "test_cmake: version ranges: ok"
else
    skip_env test_cmake "the version ranges" "cmake older than 3.19"
fi
echo "test_cmake: find_package(cfnet CONFIG) from a DESTDIR install, C++ consumer shared and static: ok"
