#!/bin/sh
# bench/run.sh with stand-in benchmark programs (seconds, not the real 15 minutes): BENCH_PASSES
# names the files of every pass, a missing PyTorch gives a report without the peer, a BENCH_*
# value outside its range is an error before anything runs, and a failing program stops the
# run with a message instead of a report with its rows missing.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-bench-run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "test_bench_run: FAIL: $*" >&2; exit 1; }

# Stand-ins: each appends its name to $tmp/ran and prints lines in the programs' formats;
# FAKE_FAIL=NAME makes that program exit 1 after its first line.
mkdir -p "$tmp/build/bench" "$tmp/notorch"
cat > "$tmp/build/bench/fake" <<'SH'
#!/bin/sh
name=$(basename "$0")
echo "$name $*" >> "$FAKE_RAN"
T=$(printf '\t')
echo "# cfnet kernels: avx2 | CFNET_CPU=(unset)"
[ "${FAKE_FAIL:-}" = "$name" ] && { echo "$name: failed" >&2; exit 1; }
threads=1 mode=engine
while [ $# -gt 0 ]; do
    case $1 in --threads) threads=$2; shift ;; --mode) mode=$2; shift ;; esac
    shift
done
case $name in
bench_sgemm) echo "sgemm${T}2048${T}1${T}100.0${T}160.0"; echo "sgemm${T}2048${T}2${T}50.0${T}320.0" ;;
bench_layers) echo "layer${T}conv2d${T}28x28x15${T}$threads${T}$mode${T}1.00${T}3.00${T}100.0${T}100.0" ;;
bench_nets)
    case " $FAKE_ARGS " in
    *--latency*) echo "lat${T}yeast_cfnet${T}$threads${T}$mode${T}2.0${T}2.5${T}10" ;;
    *--rss*) echo "rss${T}rotmnist_cfnet${T}$threads${T}$mode${T}17000${T}5000${T}10000000"
             echo "rss${T}rotmnist_gcnn${T}$threads${T}$mode${T}42000${T}5000${T}38000000" ;;
    *) echo "net${T}rotmnist_cfnet${T}$threads${T}$mode${T}6.00${T}8333.3${T}2.00${T}25000.0"
       echo "macs${T}rotmnist_cfnet${T}1710060" ;;
    esac ;;
esac
SH
# bench_nets needs its whole argument list: a wrapper passes it in FAKE_ARGS
cat > "$tmp/build/bench/bench_nets" <<'SH'
#!/bin/sh
FAKE_ARGS="$*" exec "$(dirname "$0")/bench_nets.sh" "$@"
SH
cp "$tmp/build/bench/fake" "$tmp/build/bench/bench_sgemm"
cp "$tmp/build/bench/fake" "$tmp/build/bench/bench_layers"
cp "$tmp/build/bench/fake" "$tmp/build/bench/bench_nets.sh"
sed -i 's/^name=.*/name=bench_nets/' "$tmp/build/bench/bench_nets.sh"
chmod +x "$tmp/build/bench/"*
# The Python of the benchmarks without PyTorch.
echo 'raise ImportError("no PyTorch in this test")' > "$tmp/notorch/torch.py"

run() { # status-file out-dir; runs bench/run.sh with the stand-ins
    st=0
    : > "$tmp/ran"
    env CFNET_BUILD="$tmp/build" BENCH_OUT="$2" FAKE_RAN="$tmp/ran" PYTHONPATH="$tmp/notorch" \
        bench/run.sh > "$2.out" 2> "$2.err" || st=$?
    echo "$st" > "$1"
}

# 1. Two passes, no PyTorch: every pass's files, a report, status 0.
BENCH_PASSES=2 BENCH_SHAPE=28 run "$tmp/st" "$tmp/r1"
[ "$(cat "$tmp/st")" = 0 ] || { cat "$tmp/r1.err" >&2; fail "two passes: status $(cat "$tmp/st")"; }
for f in sgemm layers-1 layers-2 layers-2b layers-1.p2 nets-2b.p2 lat-1 rss-2 torch.p2 sgemm-end; do
    [ -s "$tmp/r1/$f.tsv" ] || fail "two passes: no $f.tsv"
done
grep -q '^layer.*28x28x15.*blas' "$tmp/r1/layers-2b.p2.tsv" || fail "layers-2b.p2.tsv"
grep -q 'PyTorch missing' "$tmp/r1/torch.p2.tsv" || fail "no PyTorch: torch.p2.tsv"
grep -q 'bench_layers --threads 1 --shape 28' "$tmp/ran" || fail "BENCH_SHAPE not passed on"
grep -q '^| conv2d | 28x28x15 | 1.00 | 3.00 |' "$tmp/r1/report.txt" || fail "report: layer row"
grep -q '(no PyTorch results: no ratio table)' "$tmp/r1/report.txt" || fail "report: no PyTorch"

# 2. A failing program: status 1, a message naming it, no report.
FAKE_FAIL=bench_layers run "$tmp/st" "$tmp/r2"
[ "$(cat "$tmp/st")" = 1 ] || fail "failing bench_layers: status $(cat "$tmp/st") (want 1)"
grep -q 'bench/run.sh: failed (exit status 1):.*bench_layers' "$tmp/r2.err" ||
    { cat "$tmp/r2.err" >&2; fail "failing bench_layers: message"; }
[ ! -e "$tmp/r2/report.txt" ] || fail "failing bench_layers: a report was written"
if grep -q bench_nets "$tmp/ran"; then fail "failing bench_layers: the run went on"; fi

# 3. Values outside their range: status 2, a message, nothing run.
for setting in BENCH_SHAPE=32 BENCH_SHAPE=abc BENCH_PASSES=0 BENCH_PASSES=two BENCH_REPS=x \
               BENCH_REPS= BENCH_REPS=2147483648 BENCH_LAT_CALLS=-5 BENCH_LAT_CALLS=1000001 \
               BENCH_LAT_CALLS=123456789012345678901234 BENCH_KEEP_BLAS_ENV=yes BENCH_CLOCK=process; do
    env "$setting" sh -c 'true' # the setting is a valid assignment
    st=0
    env "$setting" CFNET_BUILD="$tmp/build" BENCH_OUT="$tmp/r3" FAKE_RAN="$tmp/ran3" PYTHONPATH="$tmp/notorch" \
        bench/run.sh > "$tmp/r3.out" 2> "$tmp/r3.err" || st=$?
    [ "$st" = 2 ] || { cat "$tmp/r3.err" >&2; fail "$setting: status $st (want 2)"; }
    grep -q "^bench/run.sh: ${setting%%=*}=" "$tmp/r3.err" || { cat "$tmp/r3.err" >&2; fail "$setting: message"; }
    [ ! -e "$tmp/ran3" ] || fail "$setting: programs ran"
done

# 4. Programs not built: a message that says how to build them.
st=0
CFNET_BUILD="$tmp/nobuild" BENCH_OUT="$tmp/r4" bench/run.sh > /dev/null 2> "$tmp/r4.err" || st=$?
[ "$st" = 1 ] && grep -q 'make bench-bins' "$tmp/r4.err" || fail "missing programs: status $st"
echo "test_bench_run: ok"
