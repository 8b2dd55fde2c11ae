#!/bin/sh
# The Julia bindings cannot drift silently from the C API: every ccall in
# bindings/julia/CFNet.jl must name a function of include/cfnet/cfnet.h with the same number and
# types of arguments (Julia itself is not installed here; see bindings/julia/README.md).
# The checker is first shown to reject a few broken copies of the bindings.
set -eu
cd "$(dirname "$0")/.."
py=""
for cand in /usr/bin/python3 python3; do
    if command -v "$cand" >/dev/null 2>&1; then
        py=$cand
        break
    fi
done
[ -n "$py" ] || { echo "test_julia_wrappers: no python3 found" >&2; exit 1; }

header=include/cfnet/cfnet.h
jl=bindings/julia/CFNet.jl
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-julia.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

must_reject() { # description sed-expression
    sed "$2" "$jl" >"$tmp/broken.jl"
    cmp -s "$jl" "$tmp/broken.jl" && { echo "test_julia_wrappers: mutation '$1' changed nothing" >&2; exit 1; }
    if "$py" tests/julia_wrappers.py "$header" "$tmp/broken.jl" >"$tmp/out" 2>&1; then
        echo "test_julia_wrappers: the checker accepted bindings with $1" >&2
        exit 1
    fi
    grep -q "FAIL" "$tmp/out" || { cat "$tmp/out"; exit 1; }
}
must_reject "an argument too few" \
    's/(Handle, Cint, Cdouble), net, option, value)/(Handle, Cint), net, option)/'
must_reject "a wrong argument type" \
    's/(Cint, Cint, Cint, UInt64, Ptr{Handle})/(Cint, Cint, Cint, Int32, Ptr{Handle})/'
must_reject "a wrong return type" 's/(:cfnet_tensor_numel, libcfnet), Int64/(:cfnet_tensor_numel, libcfnet), Cint/'
must_reject "an unknown function" 's/:cfnet_tensor_zero,/:cfnet_tensor_clear,/'
must_reject "values not matching the types" \
    's/(Handle, Handle), net, layer)/(Handle, Handle), net)/'

"$py" tests/julia_wrappers.py "$header" "$jl"

# For information: wrapped functions that the built library does not export (a wrapper for
# them would fail at call time).
so=${CFNET_LIBDIR:-lib}/libcfnet.so
if [ -e "$so" ] && command -v nm >/dev/null 2>&1; then
    nm -D --defined-only "$so" | awk '{print $3}' | sed 's/@.*//' | sort -u >"$tmp/exported"
    sed -n 's/.*ccall((:\(cfnet_[a-z0-9_]*\),.*/\1/p' "$jl" | sort -u >"$tmp/wrapped"
    absent=$(comm -23 "$tmp/wrapped" "$tmp/exported" | tr '\n' ' ')
    [ -z "$absent" ] || echo "test_julia_wrappers: note: declared in the header but not exported by $so: $absent"
fi
