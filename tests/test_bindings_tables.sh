#!/bin/sh
# The Python and Julia bindings' tables cannot drift from the header: Python's IntEnums and
# ctypes PROTOTYPES, every layer kind's create function and constructor in both bindings, the
# Julia option table, and the built library's kind registry (tests/bindings_tables.py). The
# checker is first shown to reject a few broken copies.
set -eu
cd "$(dirname "$0")/.."
py=""
for cand in /usr/bin/python3 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import numpy' >/dev/null 2>&1; then
        py=$cand
        break
    fi
done
[ -n "$py" ] || { echo "test_bindings_tables: no python3 with numpy found" >&2; exit 1; }

header=include/cfnet/cfnet.h
jl=bindings/julia/src/CFNet.jl
so=${CFNET_LIBDIR:-$(pwd)/lib}/libcfnet.so
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-tables.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

. tests/sanitizer_env.sh
libarg="--library $so"
# A sanitized library cannot be loaded into the plain interpreter without its runtime; the
# library part is checked in the default build.
[ -z "$SAN_KIND" ] || libarg=""

run() { # header python-package-dir julia-file
    "$py" tests/bindings_tables.py "$1" "$2" "$3" $libarg
}

# must_reject description file sed-expression: a mutated copy of `file` must fail the check.
must_reject() {
    rm -rf "$tmp/h" "$tmp/pkg"
    mkdir -p "$tmp/h" "$tmp/pkg"
    cp "$header" "$tmp/h/cfnet.h"
    cp -r python/cfnet "$tmp/pkg/cfnet"
    cp "$jl" "$tmp/CFNet.jl"
    case $2 in
    header) target=$tmp/h/cfnet.h ;;
    julia) target=$tmp/CFNet.jl ;;
    *) target=$tmp/pkg/cfnet/$2 ;;
    esac
    cp "$target" "$tmp/orig"
    sed "$3" "$tmp/orig" >"$target"
    cmp -s "$tmp/orig" "$target" && { echo "test_bindings_tables: mutation '$1' changed nothing" >&2; exit 1; }
    if run "$tmp/h/cfnet.h" "$tmp/pkg/cfnet" "$tmp/CFNet.jl" >"$tmp/out" 2>&1; then
        echo "test_bindings_tables: the checker accepted $1" >&2
        exit 1
    fi
    grep -q "FAIL" "$tmp/out" || { cat "$tmp/out"; exit 1; }
}
must_reject "a Python enum value differing from the header" _enums.py 's/    SOFTMAX = 13/    SOFTMAX = 14/'
must_reject "a Python enum lacking a member" _enums.py '/    AUG_FLIP = 13/d'
must_reject "a prototype with an argument too few" _lib.py \
    's/"cfnet_layer_dense_create": (_status, \[_int, _p_handle\])/"cfnet_layer_dense_create": (_status, [_p_handle])/'
must_reject "a prototype with a wrong argument type" _lib.py \
    's/"cfnet_network_set_option": (_status, \[_handle, _int, _dbl\])/"cfnet_network_set_option": (_status, [_handle, _int, _flt])/'
must_reject "a prototype with a wrong return type" _lib.py \
    's/"cfnet_tensor_numel": (_i64, \[_handle\])/"cfnet_tensor_numel": (_int, [_handle])/'
must_reject "a layer kind without a Julia constructor" julia 's/^relu() = /relu_layer() = /'
must_reject "a layer kind added to the header only" header \
    's/    CFNET_LAYER_SOFTMAX = 13/    CFNET_LAYER_SOFTMAX = 13,\n    CFNET_LAYER_NEW_KIND = 14/'
must_reject "a Julia option table lacking an option" julia 's/, :aug_flip => 13//'

run "$header" python/cfnet "$jl"
