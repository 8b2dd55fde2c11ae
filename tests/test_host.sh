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
#   the library (the workers must not lose their code);
# - docs/deploy.md's recipe for a model trained by `cfnet train` ("A model trained with the
#   `cfnet` command, in a host program"): a C++ host (tests/consumers/predict_host.cpp, with the
#   doc's C block, cfnet_network_prepare_image, as its preparation) built against an installed copy with pkg-config and with
#   CMake, and the doc's Python block given uint16, big-endian, Fortran-ordered and strided
#   arrays, print exactly `cfnet predict`'s CSV for images cropped and padded, with batches of
#   64 and 1, under a decimal-comma locale, and from four threads sharing the network, each
#   preparing its own images (bit-identical to one); with other percentiles in the model the
#   comparison fails.
# Environment (set by `make check`): CFNET_LIBDIR, CFNET_SANITIZE, CFNET_BUILD, CC.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
libdir=${CFNET_LIBDIR:-$top/lib}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-host.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "test_host: FAIL: $*" >&2; exit 1; }
. tests/sanitizer_env.sh
. tests/skip_lib.sh

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

# docs/deploy.md: a host that reads the images itself and prepares them as the doc says gives
# exactly `cfnet predict`'s probabilities.
build=${CFNET_BUILD:-build/default}
cfnet=${CFNET_TOOL:-}
if [ -z "$cfnet" ]; then
    if [ "$build" = build/default ]; then cfnet=bin/cfnet; else cfnet=$build/bin/cfnet; fi
fi
pkg-config --exists libtiff-4 2>/dev/null ||
    { skip_missing test_host "the predict host" "libtiff-dev (libtiff-4.pc)"; exit 0; }
doc_block() { # tag: the code block after <!-- tested: tag in docs/deploy.md
    awk -v tag="<!-- tested: $1 " 'index($0, tag) == 1 { want = 1; next }
         want == 1 && /^```/ { want = 2; next }
         want == 2 && /^```/ { exit }
         want == 2 { print }' docs/deploy.md
}
mkdir -p "$tmp/doc"
doc_block c-prepare > "$tmp/doc/prepare_image.h"
doc_block python-host > "$tmp/doc/host.py"
[ -s "$tmp/doc/prepare_image.h" ] && [ -s "$tmp/doc/host.py" ] ||
    fail "docs/deploy.md has no tested c-prepare or python-host block"
# The C block is C too (a plugin written in C).
"$SAN_CC" -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Wpedantic -Werror -Wno-unused-function \
    -Iinclude -x c -c "$tmp/doc/prepare_image.h" -o "$tmp/doc/prepare.o" ||
    fail "docs/deploy.md's C block does not compile as C11"

makevars="SANITIZE=${CFNET_SANITIZE:-} CC=$SAN_CC"
unset MAKEFLAGS MFLAGS MAKELEVEL || true
prefix=$tmp/prefix
# shellcheck disable=SC2086
make --no-print-directory -s install PREFIX="$prefix" $makevars >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "make install PREFIX=$prefix"; }
build_host() { # output file, then the compiler's extra flags (the doc's block or a variant)
    out=$1; shift
    # shellcheck disable=SC2046
    "$SAN_CXX" -std=c++17 -Wall -Wextra -Werror $SAN_CFLAGS "$@" tests/consumers/predict_host.cpp \
        -o "$out" $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs cfnet) \
        $(pkg-config --cflags --libs libtiff-4) -Wl,-rpath,"$prefix/lib" -pthread ||
        fail "predict_host: build with pkg-config"
}
build_host "$tmp/host" -I"$tmp/doc"
hosts=$tmp/host
if command -v cmake >/dev/null 2>&1; then
    cmake -S tests/consumers/host -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
        -DPREPARE_DIR="$tmp/doc" -DCMAKE_CXX_COMPILER="$SAN_CXX" \
        -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror $SAN_CFLAGS" \
        -DCMAKE_EXE_LINKER_FLAGS="$SAN_CFLAGS" >"$tmp/cmake.log" 2>&1 &&
        cmake --build "$tmp/cmake" >>"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log"; fail "predict_host: CMake build"; }
    hosts="$hosts $tmp/cmake/predict_host"
else
    skip_missing test_host "the CMake build of the predict host" cmake
fi

# A model trained by the command; test images larger (cropped) and smaller (padded) than it.
"$cfnet" synth "$tmp/data" --classes 3 --per-class 8 --test-per-class 3 --size 40 -q || fail "cfnet synth"
"$cfnet" synth "$tmp/small" --classes 3 --per-class 1 --test-per-class 0 --size 27 --seed 5 -q ||
    fail "cfnet synth --size 27"
"$cfnet" train "$tmp/data/train" -o "$tmp/model.safetensors" --size 32 --pad --epochs 2 --width 6 \
    --threads 2 -q || fail "cfnet train"
# shellcheck disable=SC2046
set -- $(find "$tmp/data/test" "$tmp/small" -name '*.tif' | LC_ALL=C sort)
[ $# = 12 ] || fail "expected 12 test images, found $#"
"$cfnet" predict -q "$tmp/model.safetensors" "$@" -o "$tmp/pred.csv" || fail "cfnet predict"
"$cfnet" predict -q --batch 1 "$tmp/model.safetensors" "$@" -o "$tmp/pred1.csv" || fail "cfnet predict --batch 1"
# a comma locale for the host's setlocale(LC_ALL, ""): installed, or compiled into LOCPATH
comma=""
for l in de_DE.UTF-8 de_DE.utf8 fr_FR.UTF-8; do
    [ "$(LC_ALL=$l locale decimal_point 2>/dev/null)" = "," ] && { comma="LC_ALL=$l"; break; }
done
if [ -z "$comma" ] && localedef -i de_DE -f UTF-8 "$tmp/de_DE.UTF-8" >/dev/null 2>&1; then
    comma="LOCPATH=$tmp LC_ALL=de_DE.UTF-8"
fi
for h in $hosts; do
    "$h" "$tmp/model.safetensors" "$@" > "$tmp/h.csv" || fail "$h"
    cmp -s "$tmp/h.csv" "$tmp/pred.csv" ||
        { diff "$tmp/h.csv" "$tmp/pred.csv" | head; fail "$h: the probabilities differ from cfnet predict's"; }
    "$h" --batch 1 "$tmp/model.safetensors" "$@" > "$tmp/h1.csv" || fail "$h --batch 1"
    cmp -s "$tmp/h1.csv" "$tmp/pred1.csv" ||
        { diff "$tmp/h1.csv" "$tmp/pred1.csv" | head; fail "$h --batch 1: differs from cfnet predict --batch 1"; }
    if [ -n "$comma" ]; then
        env $comma "$h" --locale "$tmp/model.safetensors" "$@" > "$tmp/hl.csv" || fail "$h --locale"
        cmp -s "$tmp/hl.csv" "$tmp/pred.csv" ||
            { diff "$tmp/hl.csv" "$tmp/pred.csv" | head; fail "$h under $comma: differs from cfnet predict"; }
    fi
done
[ -n "$comma" ] || skip_missing test_host "the predict host's decimal-comma locale case (no such locale, and localedef could not make de_DE)" locales
# four host threads on one network (with two workers of its own), batches of 2: bit-identical
"$tmp/host" --exact --dump --batch 2 "$tmp/model.safetensors" "$@" > "$tmp/serial.hex" ||
    fail "host --exact"
"$tmp/host" --exact --batch 2 --threads 4 --workers 2 "$tmp/model.safetensors" "$@" "$@" "$@" \
    > "$tmp/threads.hex" || fail "host --threads 4"
sed 1d "$tmp/serial.hex" > "$tmp/serial3.hex"
sed 1d "$tmp/serial.hex" >> "$tmp/serial3.hex"
sed 1d "$tmp/serial.hex" >> "$tmp/serial3.hex"
sed 1d "$tmp/threads.hex" | cmp -s - "$tmp/serial3.hex" ||
    fail "four threads sharing the network: not bit-identical to one thread"
# the comparison can tell: the model with other percentiles gives another CSV
"$tmp/host" --normalization "percentile 2 99.8" "$tmp/model.safetensors" "$@" > "$tmp/h2.csv" ||
    fail "host with other percentiles"
cmp -s "$tmp/h2.csv" "$tmp/pred.csv" && fail "percentile 2 99.8 gives predict's CSV too: the test cannot tell"
echo "test_host: predict host (pkg-config$( [ "$hosts" = "$tmp/host" ] || echo ', CMake')): cfnet predict's CSV for $# images, batches of 64 and 1${comma:+, comma locale}, 4 threads bit-identical; other percentiles differ: ok"

# The doc's Python block, on the same images as numpy arrays of every layout.
py=/usr/bin/python3
if ! "$py" -c 'import numpy' 2>/dev/null; then
    skip_missing test_host "the Python host" python3-numpy; exit 0
fi
[ "$SAN_KIND" = tsan ] && { skip_env test_host "the Python host" "the interpreter is not instrumented for ThreadSanitizer"; exit 0; }
pyrun() {
    if [ "$SAN_KIND" = asan ]; then
        LD_PRELOAD=$SAN_PRELOAD ASAN_OPTIONS=detect_leaks=0 PYTHONPATH=python \
            CFNET_LIBRARY=$libdir/libcfnet.so "$py" "$@"
    else
        PYTHONPATH=python CFNET_LIBRARY=$libdir/libcfnet.so "$py" "$@"
    fi
}
pyrun - "$tmp" "$@" <<'EOF_PY' || fail "docs/deploy.md's Python host differs from cfnet predict"
import sys, csv, warnings, numpy as np, cfnet
d, paths = sys.argv[1], sys.argv[2:]
block = open(d + "/doc/host.py").read()
# The images as the script's own reader would give them (C x H x W uint16): the pixels the C
# host read with libtiff (predict_host --dump).
def image(p):
    with open(p + ".u16", "rb") as f:
        C, H, W = np.frombuffer(f.read(12), "<i4")
        return np.frombuffer(f.read(), "<u2").reshape(C, H, W)
raw = [image(p) for p in paths]
layouts = {
    "uint16": lambda a: a.copy(),
    "big-endian": lambda a: a.astype(">u2"),
    "Fortran": lambda a: np.asfortranarray(a),
    "strided": lambda a: np.repeat(a, 2, axis=2)[:, :, ::2],
    "float64": lambda a: a.astype(np.float64),
}
def as_csv(probs, classes):
    rows = [["path", "predicted"] + classes]
    for p, q in zip(paths, probs):
        rows.append([p, classes[int(np.argmax(q))]] + ["%.6g" % v for v in q])
    return rows
want = list(csv.reader(open(d + "/pred.csv")))
for name, f in layouts.items():
    images = [f(a) for a in raw]
    ns = {"images": images}
    src = block.replace('"model.safetensors"', repr(d + "/model.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # nothing of the recipe copies with a warning
        exec(src, ns)
    got = as_csv(ns["probs"], ns["classes"])
    assert got == want, (name, [(g, w) for g, w in zip(got, want) if g != w][:2])
    ns["net"].close()
# no images (an empty list, an empty array): probs is 0 x K, not numpy's "need at least one
# array to concatenate"
for none in ([], np.zeros((0,) + raw[0].shape, np.uint16)):
    ns = {"images": none}
    exec(block.replace('"model.safetensors"', repr(d + "/model.safetensors")), ns)
    assert ns["probs"].shape == (0, len(ns["classes"])), ns["probs"].shape
    ns["net"].close()
# and it can tell: other percentiles than the model's
ns = {"images": raw}
other = block.replace('"model.safetensors"', repr(d + "/model.safetensors")).replace(
    "probs =", 'net.metadata["normalization"] = "percentile 2 99.8"\nprobs =', 1)
assert other != block
exec(other, ns)
assert as_csv(ns["probs"], ns["classes"]) != want, "other percentiles give predict's CSV too"
print("test_host: docs/deploy.md's Python host = cfnet predict's CSV for %d images as %s arrays; "
      "no images give 0 x K; other percentiles differ: ok" % (len(paths), ", ".join(layouts)))
EOF_PY
