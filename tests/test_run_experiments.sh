#!/bin/sh
# scripts/run-experiments with stand-in example programs (seconds instead of hours): an unknown
# experiment is a usage error before anything is built, and a program that fails stops the
# script with a non-zero status (also inside `tee` and the ablation study's workers) instead of
# going on to the next experiment and ending with status 0.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-run-experiments.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "test_run_experiments: FAIL: $*" >&2; exit 1; }

# A copy of the scripts in a tree of their own, with the data already there.
r=$tmp/repo
mkdir -p "$r/scripts" "$r/build/data/mnist" "$r/build/default/examples" "$tmp/bin"
cp scripts/run-experiments scripts/fetch-mnist scripts/ablation-table "$r/scripts/"
echo x > "$r/build/data/mnist/mnist-images-idx3-ubyte"
echo x > "$r/build/data/mnist/mnist-labels-idx1-ubyte"
# make: records that it ran
printf '#!/bin/sh\necho "make $*" >> "$RAN"\n' > "$tmp/bin/make"
# the examples: record their run; FAIL=NAME (or FAIL=rotmnist:LABEL) makes one exit 3
cat > "$tmp/stub" <<'SH'
#!/bin/sh
name=$(basename "$0") label= summary= csv=
while [ $# -gt 0 ]; do
    case $1 in --label) label=$2; shift ;; --summary) summary=$2; shift ;; --csv) csv=$2; shift ;; esac
    shift
done
echo "$name $label" >> "$RAN"
echo "$name: working"
if [ "${FAIL:-}" = "$name" ] || [ "${FAIL:-}" = "$name:$label" ]; then echo "$name: broken" >&2; exit 3; fi
if [ -n "$summary" ]; then
    [ -e "$summary" ] || echo "label,model,seed,parameters,epoch,val_error,test_error,seconds" > "$summary"
    for s in 1 2 3; do echo "$label,CFNet,$s,14785,1,0.0${s}000,0.0${s}000,1.0" >> "$summary"; done
fi
[ -z "$csv" ] || echo "model,seed,epoch,step,train_loss,val_error,test_error,seconds" > "$csv"
exit 0
SH
for p in rotmnist demo features; do cp "$tmp/stub" "$r/build/default/examples/$p"; done
chmod +x "$tmp/bin/make" "$r/build/default/examples/"*

run() { # expected-status name args...: runs the copy, leaves stdout/stderr in $tmp/NAME.*
    want=$1 name=$2
    shift 2
    st=0
    : > "$tmp/ran"
    env PATH="$tmp/bin:$PATH" RAN="$tmp/ran" "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" || st=$?
    [ "$st" = "$want" ] || { cat "$tmp/$name.err" >&2; fail "$name: status $st (want $want)"; }
}

# 1. An unknown experiment: usage, status 2, nothing built or run.
run 2 unknown "$r/scripts/run-experiments" mnistt
grep -q '^usage: ' "$tmp/unknown.err" || fail "unknown: no usage"
[ ! -s "$tmp/ran" ] || fail "unknown: ran $(cat "$tmp/ran")"

# 2. `all` with rotmnist failing: its status, a message, and no biomarker run after it.
run 3 all env FAIL=rotmnist "$r/scripts/run-experiments" all
grep -q 'run-experiments: failed (exit status 3).*rotmnist' "$tmp/all.err" || fail "all: message"
if grep -q '^demo' "$tmp/ran"; then fail "all: went on after rotmnist failed"; fi
grep -q 'rotmnist: working' "$r/build/results/rotmnist.log" || fail "all: no log"

# 3. features: runs, status 0.
run 0 features "$r/scripts/run-experiments" features
grep -q '^features' "$tmp/ran" || fail "features: not run"

# 4. The ablation study with one failing row: the other row is in the summary and its table,
# and the script ends with status 1.
run 1 ablation env FAIL=rotmnist:dropout ONLY=baseline,dropout ABLATION_DIR="$tmp/abl" \
    "$r/scripts/run-experiments" ablation
grep -q 'a row of the ablation study failed' "$tmp/ablation.err" || fail "ablation: message"
grep -q '^| baseline | CFNet | 3 |' "$tmp/abl/table.md" || fail "ablation: table"
[ ! -e "$tmp/abl/dropout.done" ] || fail "ablation: failed row marked done"
echo "test_run_experiments: ok"
