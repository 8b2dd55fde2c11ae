#!/bin/sh
# ONNX export checked by a real runtime: tests/onnx/check_export.py exports every layer kind and
# the paper's architectures, validates each file with onnx.checker (Debian's python3-onnx) and
# compares ONNX Runtime's output (npm onnxruntime-node, installed into build/onnxruntime by
# scripts/install-ort) with cfnet_network_infer, including invariance to quarter turns.
# tests/onnx/check_zoo.py builds docs/deploy.md's BioImage Model Zoo package and checks it.
# Skips, saying why, only when a tool is missing and cannot be installed here
# (scripts/install-deps --extra installs them all).
# Environment (set by `make check`): CFNET_LIBDIR, CFNET_SANITIZE, CFNET_BUILD, CC.
set -eu
cd "$(dirname "$0")/.."

. tests/skip_lib.sh

py=/usr/bin/python3
[ -x "$py" ] || { skip_missing test_onnx "every check" "Debian's python3 (/usr/bin/python3)"; exit 0; }
"$py" -c 'import numpy' 2>/dev/null || { skip_missing test_onnx "every check" python3-numpy; exit 0; }
"$py" -c 'import onnx.checker' 2>/dev/null || { skip_missing test_onnx "every check" python3-onnx; exit 0; }
command -v node >/dev/null 2>&1 || { skip_missing test_onnx "every check" "node (nodejs)"; exit 0; }
ort=$(scripts/install-ort 2>"${TMPDIR:-/tmp}/cfnet-install-ort.$$.log") || {
    cat "${TMPDIR:-/tmp}/cfnet-install-ort.$$.log" >&2; rm -f "${TMPDIR:-/tmp}/cfnet-install-ort.$$.log"
    skip_missing test_onnx "every check" "ONNX Runtime (npm onnxruntime-node, scripts/install-ort)"; exit 0; }
rm -f "${TMPDIR:-/tmp}/cfnet-install-ort.$$.log"

libdir=${CFNET_LIBDIR:-$(pwd)/lib}
CFNET_LIBRARY=$libdir/libcfnet.so
export CFNET_LIBRARY
. tests/sanitizer_env.sh
case "$SAN_KIND" in
asan)
    LD_PRELOAD=$SAN_PRELOAD
    ASAN_OPTIONS=detect_leaks=0
    export LD_PRELOAD ASAN_OPTIONS
    ;;
tsan) skip_env test_onnx "every check" "the interpreter is not instrumented for ThreadSanitizer"; exit 0 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-onnx.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$(pwd)/python "$py" tests/onnx/check_export.py "$ort" "$work"
# docs/deploy.md's BioImage Model Zoo package, as a user builds it.
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$(pwd)/python "$py" tests/onnx/check_zoo.py "$ort" "$work/zoo"
