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

# The same for a plain CNN whose second conv2d layer works on 20 x 20 maps: rows that fill
# AVX2's vectors but not AVX-512's, where conv2d's choice of input gradient path (columns, or
# a forward of the output gradient) must not follow the active variant.
"$tool" synth "$out/data40" --classes 3 --per-class 6 --test-per-class 0 --channels 1 --size 40 -q
for v in $variants; do
    CFNET_CPU=$v "$tool" train "$out/data40/train" -o "$out/cnn-$v.safetensors" --epochs 1 \
        --batch 4 --width 4 --threads 1 --arch cnn -q ||
        { echo "test_cpu_variants: cfnet train --arch cnn fails with CFNET_CPU=$v" >&2; exit 1; }
    cmp -s "$out/cnn-$v.safetensors" "$out/cnn-generic.safetensors" || {
        echo "test_cpu_variants: cnn-$v.safetensors differs from cnn-generic.safetensors:" \
            "conv2d training is not bit-identical across CPU variants" >&2
        exit 1
    }
done
echo "test_cpu_variants: a 40 x 40 CNN trains the same file under: $(echo $variants)"
