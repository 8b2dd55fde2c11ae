#!/bin/sh
# The header's "Since X.Y." notes, the version nodes of src/cfnet.map, the ABI baseline, the
# built library's symbol versions and the library version (cfnet_version_string) tell one story
# (tests/version_nodes.py). The checker is first shown to reject broken copies: a function of a
# later node without its note, a new function left to the CFNET_0.1 wildcard, and a header whose
# version is older than the newest node (the state before 0.2 was declared).
set -eu
cd "$(dirname "$0")/.."
py=/usr/bin/python3
[ -x "$py" ] || py=python3
header=include/cfnet/cfnet.h
map=src/cfnet.map
abi=abi/libcfnet.so.0.abi
so=${CFNET_LIBDIR:-$(pwd)/lib}/libcfnet.so
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-nodes.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

rejects() { # what header map
    if "$py" tests/version_nodes.py "$2" "$3" "$abi" >"$tmp/out" 2>&1; then
        echo "test_version_nodes: FAIL: the checker accepted $1"
        exit 1
    fi
    grep -q "version_nodes: " "$tmp/out" || { cat "$tmp/out"; exit 1; }
}
# a CFNET_0.2 function without its note
sed 's/\(output C x 8\.\) Since 0\.2\./\1/' "$header" >"$tmp/h1"
cmp -s "$header" "$tmp/h1" && { echo "test_version_nodes: FAIL: no note removed"; exit 1; }
rejects "a missing Since note" "$tmp/h1" "$map"
# a new function in no node (the wildcard would export it as CFNET_0.1)
sed 's/\(cfnet_tensor_wrap_const\)\(;\)/cfnet_tensor_wrap_conzt\2/' "$map" >"$tmp/m2"
rejects "a function left to the wildcard" "$header" "$tmp/m2"
# a version older than the newest node
sed 's/^#define CFNET_VERSION_MINOR .*/#define CFNET_VERSION_MINOR 1/' "$header" >"$tmp/h3"
rejects "version 0.1 with a CFNET_0.2 node" "$tmp/h3" "$map"

. tests/skip_lib.sh
if [ -f "$so" ] && command -v readelf >/dev/null 2>&1; then
    "$py" tests/version_nodes.py "$header" "$map" "$abi" "$so"
else
    if [ -f "$so" ]; then
        skip_missing test_version_nodes "the built library's symbol versions" "binutils (readelf)"
    else
        skip_env test_version_nodes "the built library's symbol versions" "$so is not built"
    fi
    "$py" tests/version_nodes.py "$header" "$map" "$abi"
fi
