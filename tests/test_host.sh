#!/bin/sh
# libcfnet in host programs, the part that needs the shared library or a compiler
# (tests/test_host.c has the rest):
# - the public header compiles without a warning as C89, C99, C11 and C17 and as C++98, 11, 17
#   and 20, with gcc and clang, -Wall -Wextra -Wpedantic -Werror, and defines no macro outside
#   the CFNET_ prefix;
# - a host that uses FFTW itself loads libcfnet with dlopen, plans FFTs through it, unloads it
#   with dlclose and plans FFTs of its own afterwards, several rounds (libcfnet had made FFTW's
#   planner call lock functions of libfftw3f_threads, which the dlclose unloaded);
# - the same with the network left alive and its worker threads polling when the host unloads
#   the library (the workers must not lose their code).
# Environment (set by `make check`): CFNET_LIBDIR, CFNET_SANITIZE, CFNET_BUILD, CC.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
libdir=${CFNET_LIBDIR:-$top/lib}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-host.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "test_host: FAIL: $*" >&2; exit 1; }
. tests/sanitizer_env.sh

# The header in every language standard a host may use.
printf '#include <cfnet/cfnet.h>\nint main(void) { return cfnet_version_number() == CFNET_VERSION_NUMBER ? 0 : 1; }\n' \
    > "$tmp/h.c"
cp "$tmp/h.c" "$tmp/h.cpp"
checked=0
for cc in gcc clang; do
    command -v $cc >/dev/null || continue
    cxx=g++; [ $cc = clang ] && cxx=clang++
    for std in c89 c99 c11 c17; do
        $cc -std=$std -Wall -Wextra -Wpedantic -Werror -Iinclude -c "$tmp/h.c" -o "$tmp/h.o" ||
            fail "the header does not compile cleanly with $cc -std=$std"
        checked=$((checked + 1))
    done
    for std in c++98 c++11 c++17 c++20; do
        $cxx -std=$std -Wall -Wextra -Wpedantic -Werror -Iinclude -c "$tmp/h.cpp" -o "$tmp/h.o" ||
            fail "the header does not compile cleanly with $cxx -std=$std"
        checked=$((checked + 1))
    done
done
[ $checked -ge 8 ] || fail "no compiler found for the header check"
gcc -E -dM -Iinclude -include stddef.h -include stdint.h -x c /dev/null | sort > "$tmp/base"
gcc -E -dM -Iinclude "$tmp/h.c" | sort > "$tmp/with"
extra=$(comm -13 "$tmp/base" "$tmp/with" | awk '{print $2}' | sed 's/(.*//' | grep -v '^CFNET_' || true)
[ -z "$extra" ] || fail "the header defines macros outside CFNET_: $extra"
echo "test_host: header: $checked language standards, no macros outside CFNET_"

# Load and unload the shared library; the host's FFTW keeps working.
"$SAN_CC" -std=c11 -Wall -Wextra -Wpedantic -Werror $SAN_CFLAGS -Iinclude \
    tests/consumers/plugin_reload.c -o "$tmp/plugin_reload" -lfftw3f -ldl ||
    fail "plugin_reload: build"
run() { # spin-us rounds threads free|keep
    rc=0
    # "keep" leaks its networks on purpose: LeakSanitizer must not count them.
    leaks=1
    [ "$4" = keep ] && leaks=0
    out=$(ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=$leaks CFNET_SPIN_US=$1 \
        "$tmp/plugin_reload" "$libdir/libcfnet.so" "$2" "$3" "$4" 2>&1) || rc=$?
    [ $rc = 0 ] || { echo "$out"; fail "plugin_reload $*: exit status $rc"; }
    [ "$(echo "$out" | grep -c '^round [0-9]* ok$')" = "$2" ] || { echo "$out"; fail "plugin_reload $*"; }
}
run 1000 3 1 free
run 1000 3 2 free
run 1000000 2 2 keep # the workers poll for 1 s after the inference, through the dlclose
echo "test_host: dlopen/dlclose with the host's FFTW, networks freed and left alive: ok"
