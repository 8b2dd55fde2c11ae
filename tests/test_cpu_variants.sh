#!/bin/sh
# Runs the layer test suites (values, gradients, equivariance) under every CPU variant of the
# dispatched kernels that this machine supports (CFNET_CPU=generic|avx2|avx512, see
# src/kernels/simd.h), so each variant passes the same tolerances and equivariance checks as the
# default one. The variants must also agree bit for bit (tests/test_simd.c).
set -eu
cd "$(dirname "$0")/.."
B=${CFNET_BUILD:-build/default}/tests
variants=$("$B/test_simd" --list)
[ -n "$variants" ] || { echo "test_cpu_variants: no variant listed" >&2; exit 1; }
suites="test_simd test_convcore test_conv2d test_conic_conv test_p4_conv test_batch_norm test_relu_loss
        test_pool test_group_pool test_equivariance test_dft_projection test_dft_magnitude
        test_network test_threads"
failed=0
for v in $variants; do
    for s in $suites; do
        [ -x "$B/$s" ] || { echo "test_cpu_variants: $B/$s missing" >&2; exit 1; }
        if ! CFNET_CPU=$v "$B/$s" > /dev/null 2>&1; then
            echo "test_cpu_variants: $s fails with CFNET_CPU=$v" >&2
            failed=$((failed + 1))
        fi
    done
    echo "test_cpu_variants: CFNET_CPU=$v: layer suites run"
done
[ $failed -eq 0 ]
echo "test_cpu_variants: all suites pass under: $(echo $variants)"

# The promise of include/cfnet/cfnet.h ("all give bit-identical results"), for whole training
# runs: every variant trains the same model and checkpoint files, byte for byte, on one thread
# and on two (augmentation, batch norm, dense and DFT layers included).
tool=${CFNET_TOOL:-bin/cfnet}
out=${CFNET_BUILD:-build/default}/test-output/cpu_variants
rm -rf "$out"
mkdir -p "$out"
"$tool" synth "$out/data" --classes 3 --per-class 6 --test-per-class 0 --channels 1 --size 16 -q
for t in 1 2; do
    for v in $variants; do
        CFNET_CPU=$v "$tool" train "$out/data/train" -o "$out/m-$t-$v.safetensors" --epochs 2 \
            --batch 4 --width 4 --threads "$t" --jitter 1 --flip -q ||
            { echo "test_cpu_variants: cfnet train fails with CFNET_CPU=$v" >&2; exit 1; }
        for f in m-$t-$v.safetensors m-$t-$v.last.safetensors; do
            g=$(echo "$f" | sed "s/-$v\./-generic./")
            cmp -s "$out/$f" "$out/$g" || {
                echo "test_cpu_variants: $f differs from $g: training is not bit-identical" \
                    "across CPU variants" >&2
                exit 1
            }
        done
    done
done
echo "test_cpu_variants: training gives the same files under: $(echo $variants)"
