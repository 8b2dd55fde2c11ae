#!/bin/sh
# bench/report.py: a case measured by several passes (BENCH_PASSES) counts with its best value
# in each column, libcfnet and PyTorch alike, and the targets table judges those values; a
# missing, empty, truncated or foreign results file is an error with a message, not a table
# with rows silently missing.
set -eu
cd "$(dirname "$0")/.."
out=${CFNET_TEST_OUTDIR:-build/default/test-output}/bench-report
mkdir -p "$out"
T=$(printf '\t')
# pass 1: libcfnet slow (a slow spell), PyTorch fast; pass 2 the other way round
cat > "$out/a.tsv" <<EOF2
sgemm${T}2048${T}1${T}200.0${T}80.0
layer${T}conv2d${T}28x28x15${T}1${T}engine${T}4.00${T}12.00${T}10.0${T}40.0
net${T}rotmnist_cfnet${T}1${T}engine${T}30.0${T}1666${T}5.0${T}10000
EOF2
cat > "$out/a.p2.tsv" <<EOF2
layer${T}conv2d${T}28x28x15${T}1${T}engine${T}2.00${T}16.00${T}20.0${T}30.0
net${T}rotmnist_cfnet${T}1${T}engine${T}15.0${T}3333${T}6.0${T}8333
EOF2
cat > "$out/t.tsv" <<EOF2
layer${T}conv2d${T}28x28x15${T}1${T}torch${T}3.00${T}10.00${T}1.0${T}1.0
net${T}rotmnist_cfnet${T}1${T}torch${T}70.0${T}714${T}4.0${T}12500
EOF2
cat > "$out/t.p2.tsv" <<EOF2
layer${T}conv2d${T}28x28x15${T}1${T}torch${T}2.50${T}20.00${T}1.0${T}1.0
net${T}rotmnist_cfnet${T}1${T}torch${T}60.0${T}833${T}3.0${T}16666
EOF2
/usr/bin/python3 bench/report.py "$out"/a.tsv "$out"/a.p2.tsv "$out"/t.tsv "$out"/t.p2.tsv \
    > "$out/report.txt"
fail() { echo "test_bench_report: $1" >&2; cat "$out/report.txt" >&2; exit 1; }
# conv2d: fwd min(4, 2) = 2.00, fwd+bwd min(12, 16) = 12.00, rate max(40, 30) = 40.0 = 50 % of
# 80; PyTorch fwd+bwd min(10, 20) = 10.00: ratio 1.20
grep -q '^| conv2d | 28x28x15 | 2.00 | 12.00 | 40.0 | 50 % | - | 10.00 | 1.20 |$' \
    "$out/report.txt" || fail "layer row: not the fastest of the passes"
# fwd 2.00 / PyTorch min(3.0, 2.5) = 0.80: met; fwd+bwd 1.20: missed
grep -q '^| conv2d 28x28x15 inference (fwd) / PyTorch | 1 | <= 1.00 | 0.80 | met |$' \
    "$out/report.txt" || fail "inference target"
grep -q '^| conv2d 28x28x15 fwd+bwd / PyTorch | 1 | <= 0.90 | 1.20 | missed |$' \
    "$out/report.txt" || fail "fwd+bwd target"
# training step min(30, 15) = 15 against PyTorch min(70, 60) = 60: 0.25, met
grep -q '^| rotmnist_cfnet training step / PyTorch | 1 | <= 0.25 | 0.25 | met |$' \
    "$out/report.txt" || fail "network target"

# Bad input: status 1 (2 without arguments), a message naming the file, no table, no traceback.
bad() { # want-status what file...
    want=$1 what=$2
    shift 2
    st=0
    /usr/bin/python3 bench/report.py "$@" > "$out/bad.out" 2> "$out/bad.err" || st=$?
    [ "$st" = "$want" ] || { cat "$out/bad.err" >&2; fail "$what: status $st (want $want)"; }
    [ ! -s "$out/bad.out" ] || { cat "$out/bad.out" >&2; fail "$what: printed a table"; }
    grep -q '^report.py: \|^usage: ' "$out/bad.err" || { cat "$out/bad.err" >&2; fail "$what: no message"; }
    if grep -q Traceback "$out/bad.err"; then cat "$out/bad.err" >&2; fail "$what: traceback"; fi
}
bad 2 "no arguments"
bad 1 "missing file" "$out/a.tsv" "$out/missing.tsv"
: > "$out/empty.tsv"
bad 1 "empty file" "$out/a.tsv" "$out/empty.tsv"
grep -q 'empty.tsv is empty' "$out/bad.err" || fail "empty file: message does not name it"
# cut in the middle of the last number (no newline at the end)
head -c -4 "$out/a.tsv" > "$out/cut.tsv"
bad 1 "file cut in a number" "$out/cut.tsv"
grep -q 'cut.tsv:3: the file ends in the middle of a line' "$out/bad.err" || fail "cut: message"
# cut after a field (a line with too few fields)
printf 'layer\tconv2d\t28x28x15\t1\tengine\t4.00\n' > "$out/short.tsv"
bad 1 "short line" "$out/a.tsv" "$out/short.tsv"
grep -q "short.tsv:1: 'layer' line with 5 fields, 8 expected" "$out/bad.err" || fail "short: message"
printf 'net\trotmnist_cfnet\t1\tengine\t30.0\t\t5.0\t10000\n' > "$out/hole.tsv"
bad 1 "empty field" "$out/hole.tsv"
printf '# blas: OpenBLAS\n# cfnet kernels: avx2 | CFNET_CPU=avx2\n' > "$out/comments.tsv"
bad 1 "no results" "$out/comments.tsv"
bad 1 "not a results file" "$out/a.tsv" "$out/report.txt"
echo "test_bench_report: ok"
