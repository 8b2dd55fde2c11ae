#!/bin/sh
# scripts/ablation-table: mean +- sample standard deviation per row and model of a
# `rotmnist --summary` file, in the order the rows first appear; a file without the header,
# empty, missing or truncated is an error with a message (status 1), not a traceback.
set -eu
cd "$(dirname "$0")/.."
out=${CFNET_TEST_OUTDIR:-build/default/test-output}/ablation-table
mkdir -p "$out"
cat > "$out/summary.csv" <<'CSV'
label,model,seed,parameters,epoch,val_error,test_error,seconds
base,CFNet,1,14785,27,0.02800,0.03000,480.0
base,CFNet,2,14785,25,0.03000,0.04000,500.0
base,CFNet,3,14785,30,0.02600,0.05000,490.0
gcnn,G-CNN,1,19880,29,0.02100,0.02050,960.0
CSV
scripts/ablation-table "$out/summary.csv" > "$out/table.md"
fail() { echo "test_ablation_table: $1" >&2; cat "$out/table.md" >&2; exit 1; }
# test errors 3, 4, 5 %: mean 4.00, sample sd 1.00; validation 2.8, 3.0, 2.6: mean 2.80, sd 0.20
grep -q '^| base | CFNet | 3 | 14785 | 4.00 ± 1.00 % | 2.80 ± 0.20 % | 3.00, 4.00, 5.00 | 490 |$' \
    "$out/table.md" || fail "base row wrong"
# one seed: the errors alone, not a spread of 0.00 that was never measured
grep -q '^| gcnn | G-CNN | 1 | 19880 | 2.05 % | 2.10 % | 2.05 | 960 |$' \
    "$out/table.md" || fail "single-seed row wrong"
[ "$(sed -n 3p "$out/table.md" | cut -d'|' -f2)" = " base " ] || fail "row order"
if scripts/ablation-table > /dev/null 2>&1; then fail "no argument accepted"; fi
bad() { # what file: status 1, one message, no table, no traceback
    st=0
    scripts/ablation-table "$2" > "$out/bad.out" 2> "$out/bad.err" || st=$?
    [ "$st" = 1 ] || { cat "$out/bad.err" >&2; fail "$1: status $st (want 1)"; }
    [ ! -s "$out/bad.out" ] || fail "$1: printed a table"
    grep -q '^ablation-table: ' "$out/bad.err" || { cat "$out/bad.err" >&2; fail "$1: no message"; }
    if grep -q Traceback "$out/bad.err"; then cat "$out/bad.err" >&2; fail "$1: traceback"; fi
}
tail -n +2 "$out/summary.csv" > "$out/noheader.csv"
bad "no header" "$out/noheader.csv"
grep -q 'missing column' "$out/bad.err" || fail "no header: message"
bad "missing file" "$out/missing.csv"
: > "$out/empty.csv"
bad "empty file" "$out/empty.csv"
head -n 1 "$out/summary.csv" > "$out/headeronly.csv"
bad "header only" "$out/headeronly.csv"
head -c -3 "$out/summary.csv" > "$out/cut.csv"
bad "cut in a number" "$out/cut.csv"
{ head -n 1 "$out/summary.csv"; sed -n 2,3p "$out/summary.csv" | cut -d, -f1-6; } > "$out/short.csv"
bad "short row" "$out/short.csv"
grep -q 'short.csv:2: 6 fields, 8 expected' "$out/bad.err" || fail "short row: message"
# The committed summaries of docs/results are such files.
for f in docs/results/ablation/summary.csv docs/results/rotmnist_reflect_summary.csv; do
    scripts/ablation-table "$f" > /dev/null || fail "$f"
done
echo "test_ablation_table: ok"
