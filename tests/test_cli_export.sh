#!/bin/sh
# `cfnet export MODEL OUT.onnx`: writes exactly the bytes of cfnet_network_export_onnx (with and
# without --probabilities) for a model file that carries metadata, a file onnx.checker accepts
# with that metadata in metadata_props; --help, usage errors (exit 2) and a bad model or an
# unwritable output (exit 1, message) behave like the other commands.
# Environment (set by `make check`): CFNET_BUILD, CFNET_LIBDIR, CFNET_SANITIZE, CC.
set -eu
cd "$(dirname "$0")/.."
build=${CFNET_BUILD:-build/default}
cfnet=${CFNET_TOOL:-}
if [ -z "$cfnet" ]; then
    if [ "$build" = build/default ]; then cfnet=bin/cfnet; else cfnet=$build/bin/cfnet; fi
fi
py=/usr/bin/python3
"$py" -c 'import numpy' 2>/dev/null || { echo "test_cli_export: SKIPPED: python3-numpy is not installed"; exit 0; }
. tests/sanitizer_env.sh
case "$SAN_KIND" in
tsan) echo "test_cli_export: SKIPPED: the interpreter is not instrumented for ThreadSanitizer"; exit 0 ;;
esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-cli-export.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "test_cli_export: FAIL: $*" >&2; exit 1; }

# A model with metadata, and the library's own export of it, from Python.
pyrun() {
    if [ "$SAN_KIND" = asan ]; then
        LD_PRELOAD=$SAN_PRELOAD ASAN_OPTIONS=detect_leaks=0 PYTHONPATH=python \
            CFNET_LIBRARY=${CFNET_LIBDIR:-$(pwd)/lib}/libcfnet.so "$py" "$@"
    else
        PYTHONPATH=python CFNET_LIBRARY=${CFNET_LIBDIR:-$(pwd)/lib}/libcfnet.so "$py" "$@"
    fi
}
pyrun - "$tmp" <<'EOF_PY'
import sys, cfnet
d = sys.argv[1]
net = cfnet.classifier("cfnet", 1, 16, 3, width=4, seed=5)
net.metadata["classes"] = "a,b,c"
net.metadata["normalization"] = "percentile 1 99.8"
net.save(d + "/model.cfnet")
open(d + "/lib.onnx", "wb").write(net.to_onnx())
open(d + "/lib-probs.onnx", "wb").write(net.to_onnx(probabilities=True))
EOF_PY

"$cfnet" export "$tmp/model.cfnet" "$tmp/cli.onnx" > "$tmp/out.txt" || fail "cfnet export failed"
grep -q "^wrote $tmp/cli.onnx (ONNX opset 13): input N x 1 x 16 x 16, output N x 3 (network output)" "$tmp/out.txt" ||
    { cat "$tmp/out.txt"; fail "summary line"; }
cmp -s "$tmp/cli.onnx" "$tmp/lib.onnx" || fail "cfnet export differs from cfnet_network_export_onnx"
"$cfnet" export -q --probabilities "$tmp/model.cfnet" "$tmp/cli-probs.onnx" > "$tmp/out.txt" ||
    fail "cfnet export --probabilities failed"
[ ! -s "$tmp/out.txt" ] || fail "--quiet printed: $(cat "$tmp/out.txt")"
cmp -s "$tmp/cli-probs.onnx" "$tmp/lib-probs.onnx" || fail "--probabilities differs from the library's"
if "$py" -c 'import onnx.checker' 2>/dev/null; then
    "$py" - "$tmp/cli.onnx" <<'EOF_PY' || fail "onnx.checker or metadata"
import sys, onnx, onnx.checker
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
meta = {p.key: p.value for p in m.metadata_props}
assert meta["classes"] == "a,b,c" and meta["normalization"] == "percentile 1 99.8", meta
EOF_PY
else
    echo "test_cli_export: python3-onnx not installed, the file is not validated (scripts/install-deps --extra)"
fi

# Help, usage errors, runtime errors.
"$cfnet" export --help | grep -q "^Usage: cfnet export" || fail "--help"
"$cfnet" --help | grep -q "export MODEL OUT.onnx" || fail "cfnet --help does not list export"
set +e
"$cfnet" export "$tmp/model.cfnet" > "$tmp/err.txt" 2>&1; st=$?
[ $st = 2 ] && grep -q "MODEL and OUT.onnx expected" "$tmp/err.txt" || fail "missing OUT: exit $st: $(cat "$tmp/err.txt")"
"$cfnet" export --bogus a b > "$tmp/err.txt" 2>&1; st=$?
[ $st = 2 ] && grep -q "unknown option" "$tmp/err.txt" || fail "bad option: exit $st"
printf 'not a model' > "$tmp/bad.cfnet"
"$cfnet" export "$tmp/bad.cfnet" "$tmp/x.onnx" > "$tmp/err.txt" 2>&1; st=$?
[ $st = 1 ] && grep -q "bad.cfnet: not a model file (it is a text file)" "$tmp/err.txt" || fail "bad model: exit $st: $(cat "$tmp/err.txt")"
[ ! -e "$tmp/x.onnx" ] || fail "a failed export left a file"
"$cfnet" export "$tmp/model.cfnet" "$tmp/no/such/dir/x.onnx" > "$tmp/err.txt" 2>&1; st=$?
[ $st = 1 ] && grep -q "cannot export" "$tmp/err.txt" || fail "unwritable output: exit $st: $(cat "$tmp/err.txt")"
set -e
echo "test_cli_export: cfnet export writes the library's ONNX bytes; help and errors: ok"
