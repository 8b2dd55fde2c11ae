#!/bin/sh
# The Julia bindings cannot drift silently from the C API: every ccall in
# bindings/julia/src/CFNet.jl must name a function of include/cfnet/cfnet.h with the same number and
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
jl=bindings/julia/src/CFNet.jl
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

# The package layout: bindings/julia/Project.toml names the module of src/CFNet.jl, with the
# library's version.
proj=bindings/julia/Project.toml
version=$(sed -n 's/^#define CFNET_VERSION_MAJOR \([0-9]*\).*/\1/p' "$header").$(
    sed -n 's/^#define CFNET_VERSION_MINOR \([0-9]*\).*/\1/p' "$header").$(
    sed -n 's/^#define CFNET_VERSION_PATCH \([0-9]*\).*/\1/p' "$header")
grep -qx 'name = "CFNet"' "$proj" || { echo "test_julia_wrappers: $proj does not name CFNet" >&2; exit 1; }
grep -qx "version = \"$version\"" "$proj" ||
    { echo "test_julia_wrappers: $proj version is not the library's $version" >&2; exit 1; }
grep -Eqx 'uuid = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"' "$proj" ||
    { echo "test_julia_wrappers: $proj has no valid uuid" >&2; exit 1; }
grep -qx 'module CFNet' "$jl" || { echo "test_julia_wrappers: $jl does not define module CFNet" >&2; exit 1; }
echo "test_julia_wrappers: package layout ok (Project.toml CFNet $version, src/CFNet.jl)"
