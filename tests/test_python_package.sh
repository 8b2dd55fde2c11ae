#!/bin/sh
# The Python package as a user installs it: libcfnet installed into a temporary prefix
# (`make install`), `pip install` of python/ (a copy of python/ and the header, as a release
# tarball has them) into a fresh `python3 -m venv --system-site-packages` with Debian's
# setuptools and no network (--no-build-isolation --no-index), then, from a directory outside
# the source tree, the venv's interpreter imports that installed copy, finds libcfnet through
# pkg-config, checks the version against the header, trains a small network, saves, loads and
# exports it. Then `make install-python DESTDIR=...` must install an importable package of the
# same version and `make uninstall-python` remove all of it.
# Environment (set by `make check`): CFNET_SANITIZE, CFNET_BUILD, CC (see tests/sanitizer_env.sh).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. tests/skip_lib.sh
fail() { echo "test_python_package: FAIL: $*" >&2; exit 1; }

py=/usr/bin/python3
[ -x "$py" ] || { skip_missing test_python_package "every check" "Debian's python3 (/usr/bin/python3)"; exit 0; }
"$py" -c 'import numpy' 2>/dev/null || { skip_missing test_python_package "every check" python3-numpy; exit 0; }
"$py" -c 'import ensurepip' 2>/dev/null || { skip_missing test_python_package "every check" python3-venv; exit 0; }
"$py" -c 'import setuptools' 2>/dev/null || { skip_missing test_python_package "every check" python3-setuptools; exit 0; }
"$py" -c 'import pip' 2>/dev/null || { skip_missing test_python_package "every check" python3-pip; exit 0; }

. tests/sanitizer_env.sh
[ "$SAN_KIND" = tsan ] && { skip_env test_python_package "every check" "the interpreter is not instrumented for ThreadSanitizer"; exit 0; }
makevars="SANITIZE=${CFNET_SANITIZE:-} CC=$SAN_CC"
unset MAKEFLAGS MFLAGS MAKELEVEL CFNET_LIBRARY PYTHONPATH || true

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-pypkg.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
version=$(sed -n 's/^#define CFNET_VERSION_MAJOR \([0-9]*\).*/\1/p' include/cfnet/cfnet.h).$(
    sed -n 's/^#define CFNET_VERSION_MINOR \([0-9]*\).*/\1/p' include/cfnet/cfnet.h).$(
    sed -n 's/^#define CFNET_VERSION_PATCH \([0-9]*\).*/\1/p' include/cfnet/cfnet.h)

# shellcheck disable=SC2086
make --no-print-directory -s install PREFIX="$tmp/prefix" $makevars >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "make install"; }
mkdir -p "$tmp/src/include/cfnet"
cp -r python "$tmp/src/python"
rm -rf "$tmp/src/python/build" "$tmp/src/python/tests"
cp include/cfnet/cfnet.h "$tmp/src/include/cfnet/"

"$py" -m venv --system-site-packages "$tmp/venv" || fail "python3 -m venv"
"$tmp/venv/bin/python" -m pip install --no-build-isolation --no-index "$tmp/src/python" \
    >"$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log"; fail "pip install ./python"; }
grep -q "Successfully installed cfnet-$version" "$tmp/pip.log" ||
    { cat "$tmp/pip.log"; fail "pip did not install cfnet $version"; }

cat > "$tmp/user.py" <<'EOF_PY'
import os, sys
import numpy as np
import cfnet

venv, prefix, version = sys.argv[1:4]
assert os.path.realpath(cfnet.__file__).startswith(os.path.realpath(venv)), cfnet.__file__
assert cfnet.__version__ == version, (cfnet.__version__, version)
assert cfnet.version() == version, cfnet.version()
assert os.path.realpath(cfnet.library_path()) == os.path.realpath(
    os.path.join(prefix, "lib", "libcfnet.so")), cfnet.library_path()

rng = np.random.default_rng(0)
n, S = 48, 12
labels = (np.arange(n) % 2).astype(np.int32)
images = rng.normal(0, 0.3, (n, 1, S, S)).astype(np.float32)
images[labels == 1, 0, 4:8, 4:8] += 1.5          # class 1: a bright centre
net = cfnet.Network(1, S, S, seed=3)
net.extend([cfnet.conic_conv(4, 3, R=2), cfnet.relu(), cfnet.pool(),
            cfnet.dft_projection(4), cfnet.dft_magnitude(), cfnet.dense(2)])
net.configure(learning_rate=1e-2)
first = net.train_step(images, labels)
for _ in range(30):
    last = net.train_step(images, labels)
acc = float(np.mean(net.predict(images) == labels))
assert last < first and acc >= 0.9, (first, last, acc)
net.save("model.safetensors")
assert np.array_equal(cfnet.Network.load("model.safetensors").predict(images), net.predict(images))
net.export_onnx("model.onnx")
assert os.path.getsize("model.onnx") > 1000
print("test_python_package: venv cfnet %s from %s, libcfnet %s; trained: loss %.3f -> %.3f, "
      "accuracy %.2f" % (cfnet.__version__, os.path.dirname(cfnet.__file__),
                         cfnet.library_path(), first, last, acc))
EOF_PY
mkdir -p "$tmp/work"
(
    cd "$tmp/work"
    PKG_CONFIG_PATH=$tmp/prefix/lib/pkgconfig
    export PKG_CONFIG_PATH
    if [ "$SAN_KIND" = asan ]; then
        LD_PRELOAD=$SAN_PRELOAD ASAN_OPTIONS=detect_leaks=0
        export LD_PRELOAD ASAN_OPTIONS
    fi
    "$tmp/venv/bin/python" "$tmp/user.py" "$tmp/venv" "$tmp/prefix" "$version"
) || fail "the installed package does not work"

# make install-python into the prefix of `make install`: the package finds that prefix's library
# without PKG_CONFIG_PATH or CFNET_LIBRARY (pkg-config made to find nothing).
# shellcheck disable=SC2086
make --no-print-directory -s install-python PREFIX="$tmp/prefix" PYTHON="$py" \
    $makevars >"$tmp/install-python-prefix.log" 2>&1 ||
    { cat "$tmp/install-python-prefix.log"; fail "make install-python PREFIX"; }
psite=$(find "$tmp/prefix" -type d -name cfnet -path '*-packages/cfnet')
[ -n "$psite" ] || fail "make install-python PREFIX installed no cfnet package"
mkdir -p "$tmp/no-pc"
got=$(cd "$tmp/work" &&
    if [ "$SAN_KIND" = asan ]; then
        LD_PRELOAD=$SAN_PRELOAD ASAN_OPTIONS=detect_leaks=0
        export LD_PRELOAD ASAN_OPTIONS
    fi &&
    env -u PKG_CONFIG_PATH PKG_CONFIG_LIBDIR="$tmp/no-pc" \
    PYTHONPATH="$(dirname "$psite")" "$py" -c 'import cfnet; print(cfnet.library_path())' 2>&1) ||
    fail "the package installed into the prefix does not find its library: $got"
[ "$got" = "$(cd "$tmp/prefix/lib" && pwd -P)/libcfnet.so.$version" ] ||
    fail "the package installed into the prefix loads $got"
# shellcheck disable=SC2086
make --no-print-directory -s uninstall-python PREFIX="$tmp/prefix" PYTHON="$py" $makevars \
    >/dev/null 2>&1 || fail "make uninstall-python PREFIX"

# make install-python with DESTDIR, then make uninstall-python.
# shellcheck disable=SC2086
make --no-print-directory -s install-python DESTDIR="$tmp/stage" PREFIX=/usr/local PYTHON="$py" \
    $makevars >"$tmp/install-python.log" 2>&1 || { cat "$tmp/install-python.log"; fail "make install-python"; }
site=$(find "$tmp/stage" -type d -name cfnet -path '*-packages/cfnet')
[ -n "$site" ] || fail "make install-python installed no cfnet package"
got=$(cd "$tmp/work" && PYTHONPATH=$(dirname "$site") "$py" -c 'import cfnet; print(cfnet.__version__, cfnet.__file__)')
case "$got" in "$version $site/__init__.py") ;; *) fail "installed package: $got" ;; esac
# shellcheck disable=SC2086
make --no-print-directory -s uninstall-python DESTDIR="$tmp/stage" PREFIX=/usr/local PYTHON="$py" \
    $makevars >"$tmp/uninstall-python.log" 2>&1 || { cat "$tmp/uninstall-python.log"; fail "make uninstall-python"; }
left=$(find "$tmp/stage" -mindepth 1)
[ -z "$left" ] || fail "make uninstall-python left: $left"
# it names itself in what it says (it said "make uninstall: removed ...")
grep -q "^make uninstall-python: removed $tmp/stage/usr/local/lib/python" "$tmp/uninstall-python.log" ||
    fail "make uninstall-python's messages: $(cat "$tmp/uninstall-python.log")"
echo "test_python_package: make install-python (DESTDIR) and uninstall-python: ok"
