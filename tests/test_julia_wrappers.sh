#!/bin/sh
# The Julia bindings cannot drift silently from the C API: every ccall in
# bindings/julia/src/CFNet.jl must name a function of include/cfnet/cfnet.h with the same number and
# types of arguments, as the body of the raw wrapper of that name passing its own arguments in
# order; the module's constants, callbacks and exports and the option names of example.jl and
# README.md are checked too (Julia itself is not installed here; see bindings/julia/README.md).
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

must_reject "a constant that differs from the header" 's/^const PADDING_SAME = 1$/const PADDING_SAME = 2/'
must_reject "a flag constant that differs from the header" \
    's/^const INVARIANCE_REFLECT = 0x00000001$/const INVARIANCE_REFLECT = 0x00000002/'
must_reject "a constant the header does not have" 's/^const POOL_MEAN = 1$/&\nconst POOL_MEDIAN = 2/'
must_reject "an enum mirrored in part" '/^const INTERP_STEERABLE = 2$/d'
must_reject "a raw wrapper named after another function" \
    's/^cfnet_tensor_zero(t) = ccall((:cfnet_tensor_zero,/cfnet_tensor_clear(t) = ccall((:cfnet_tensor_zero,/'
must_reject "arguments passed in another order" \
    's/(Handle, Handle, Cint, Cint), inp, out, dy, dx)/(Handle, Handle, Cint, Cint), inp, out, dx, dy)/'
must_reject "a callback of the wrong signature" \
    's/Cint, (Ptr{Cvoid}, Int64, Int64, Cdouble, Cdouble))/Cint, (Ptr{Cvoid}, Int64, Int64, Cfloat, Cdouble))/'
must_reject "a callback that lets exceptions through" 's/^    catch e$/    finally/'
must_reject "an export without a definition" \
    's/^export option_bounds, option_default$/export option_bounds, option_default, option_names/'
must_reject "predict of no images reaching the library" '/_empty_batch(net, x, "network_predict")/d'
must_reject "evaluate of no images reaching the library" 's/_refuse_no_images(x, "network_evaluate",/(x, "network_evaluate",/'
must_reject "a conversion to Float32 without the range check" \
    's/^Tensor(a::AbstractArray{<:Real}) = Tensor(to_float32(a))$/Tensor(a::AbstractArray{<:Real}) = Tensor(Array{Float32}(a))/'
must_reject "a range error that does not name the function" 's/CFNetError(-1, "$(fn): the value/CFNetError(-1, "the value/'
must_reject "a call whose range error names another function" \
    's/with_tensors("network_predict", x) do tx/with_tensors("network_infer", x) do tx/'
must_reject "a call whose range error names no function" \
    's/with_tensors("network_evaluate", x) do tx/with_tensors(x) do tx/'
must_reject "a scan of element types Float32 holds all of" '/_fits_float32(T) \&\& return out/d'
# an option symbol in the documentation that the OPTIONS table does not have
sed 's/:learning_rate/:learning_rat/' bindings/julia/example.jl >"$tmp/example.jl"
if "$py" tests/julia_wrappers.py "$header" "$jl" "$tmp/example.jl" >"$tmp/out" 2>&1 ||
    ! grep -q "FAIL.*learning_rat" "$tmp/out"; then
    cat "$tmp/out"
    echo "test_julia_wrappers: the checker accepted an unknown option in example.jl" >&2
    exit 1
fi

"$py" tests/julia_wrappers.py "$header" "$jl" bindings/julia/example.jl bindings/julia/README.md

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
