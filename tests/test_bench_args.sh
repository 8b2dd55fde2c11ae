#!/bin/sh
# The benchmark programs refuse arguments outside their documented values (status 2, a message,
# no output rows) instead of measuring something else or nothing with status 0, and name the
# kernel variant that ran: the one CFNET_CPU forces when this machine supports it, otherwise
# (unknown or unsupported) the best supported, as when CFNET_CPU is unset.
set -eu
cd "$(dirname "$0")/.."
build=${CFNET_BUILD:-build/default}
B=$build/bench
for p in bench_sgemm bench_layers bench_nets; do
    [ -x "$B/$p" ] || { echo "test_bench_args: $B/$p missing (make bench-bins)" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-bench-args.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "test_bench_args: FAIL: $*" >&2; exit 1; }

bad() { # program args...: status 2, a message, nothing on stdout
    st=0
    "$B/$@" > "$tmp/out" 2> "$tmp/err" || st=$?
    [ "$st" = 2 ] || { cat "$tmp/err" >&2; fail "$*: status $st (want 2)"; }
    [ ! -s "$tmp/out" ] || { cat "$tmp/out" >&2; fail "$*: printed results"; }
    [ -s "$tmp/err" ] || fail "$*: no message"
}
bad bench_layers --threads 0
bad bench_layers --threads abc
bad bench_layers --threads 65
bad bench_layers --mode threads
bad bench_layers --shape 32
bad bench_layers --shape 28x
bad bench_layers --only conv3d
bad bench_layers --bogus
bad bench_nets --threads 0
bad bench_nets --mode engines
bad bench_nets --only rotmnist
bad bench_nets --latency --only rotmnist_cfnet
bad bench_nets --rss --only preset64_cfnet
bad bench_sgemm abc
bad bench_sgemm 8
bad bench_sgemm 64 2
# The BENCH_* variables the programs read: a value outside its range is a usage error too (not
# silently the default, as bench/run.sh and torch_peer.py refuse it).
badenv() { # VAR=value program args...
    setting=$1
    shift
    st=0
    env "$setting" "$B/$@" > "$tmp/out" 2> "$tmp/err" || st=$?
    [ "$st" = 2 ] || { cat "$tmp/err" >&2; fail "$setting $*: status $st (want 2)"; }
    [ ! -s "$tmp/out" ] || { cat "$tmp/out" >&2; fail "$setting $*: printed results"; }
    grep -q "${setting%%=*}=" "$tmp/err" || { cat "$tmp/err" >&2; fail "$setting $*: message"; }
}
badenv BENCH_REPS=abc bench_layers --shape 28 --only dft_magnitude
badenv BENCH_REPS=0 bench_layers --shape 28 --only dft_magnitude
badenv BENCH_REPS= bench_sgemm 16
badenv BENCH_LAT_CALLS=many bench_nets --latency --only yeast_cfnet
badenv BENCH_LAT_CALLS=-5 bench_nets --latency --only yeast_cfnet
badenv BENCH_LAT_CALLS=99999999999 bench_nets --latency --only yeast_cfnet
badenv BENCH_CLOCK=process bench_sgemm 16

# A small run: one row of the layer asked for, in the format bench/report.py reads.
BENCH_REPS=1 "$B/bench_layers" --threads 2 --mode blas --shape 28 --only dft_mag > "$tmp/out"
[ "$(grep -c '^layer' "$tmp/out")" = 1 ] || { cat "$tmp/out"; fail "small run: rows"; }
grep -q "^layer$(printf '\t')dft_magnitude$(printf '\t')28x28x15$(printf '\t')2$(printf '\t')blas" \
    "$tmp/out" || { cat "$tmp/out"; fail "small run: row"; }

# The kernel variant that runs, as the programs print it.
kernels() { # CFNET_CPU value ('-' for unset): the name bench_layers prints
    if [ "$1" = - ]; then
        env -u CFNET_CPU BENCH_REPS=1 "$B/bench_layers" --shape 28 --only dft_magnitude
    else
        env CFNET_CPU="$1" BENCH_REPS=1 "$B/bench_layers" --shape 28 --only dft_magnitude
    fi | sed -n 's/^# cfnet kernels: \([a-z0-9]*\) | CFNET_CPU=.*/\1/p'
}
supported=$("$build/tests/test_simd" --list)
best=$(echo $supported | tr ' ' '\n' | tail -n 1)
[ "$(kernels -)" = "$best" ] || fail "unset CFNET_CPU: $(kernels -), not the best ($best)"
for v in generic avx2 avx512; do
    case " $(echo $supported) " in
    *" $v "*) want=$v ;;
    *) want=$best ;;
    esac
    [ "$(kernels $v)" = "$want" ] || fail "CFNET_CPU=$v: $(kernels $v) (want $want)"
done
[ "$(kernels bogus)" = "$best" ] || fail "CFNET_CPU=bogus: $(kernels bogus) (want $best)"
CFNET_CPU=generic BENCH_REPS=1 BENCH_LAT_CALLS=10 "$B/bench_nets" --latency --only preset64_cfnet > "$tmp/out"
grep -q '^# cfnet kernels: generic | CFNET_CPU=generic$' "$tmp/out" || fail "bench_nets kernels"
grep -q '^# batch 1;' "$tmp/out" || fail "bench_nets --latency: batch line"
# The PyTorch peer (when this Python has PyTorch): the same refusals.
py=/usr/bin/python3
. tests/skip_lib.sh
if [ -x "$py" ] && "$py" -c 'import torch' > /dev/null 2>&1; then
    badpy() { # what command...: status 2, a message, nothing on stdout, no traceback
        what=$1
        shift
        st=0
        "$@" > "$tmp/out" 2> "$tmp/err" || st=$?
        [ "$st" = 2 ] || { cat "$tmp/err" >&2; fail "torch_peer $what: status $st (want 2)"; }
        [ ! -s "$tmp/out" ] || fail "torch_peer $what: printed results"
        grep -q 'torch_peer.py' "$tmp/err" || { cat "$tmp/err" >&2; fail "torch_peer $what: message"; }
        if grep -q Traceback "$tmp/err"; then cat "$tmp/err" >&2; fail "torch_peer $what: traceback"; fi
    }
    badpy "--threads 1,x" "$py" bench/torch_peer.py --threads 1,x
    badpy "--threads 0" "$py" bench/torch_peer.py --threads 0
    badpy "--shape 32" "$py" bench/torch_peer.py --shape 32
    badpy "--only conv3d" "$py" bench/torch_peer.py --only conv3d
    badpy "BENCH_LAT_CALLS=many" env BENCH_LAT_CALLS=many "$py" bench/torch_peer.py --latency
    badpy "BENCH_REPS=0" env BENCH_REPS=0 "$py" bench/torch_peer.py
    BENCH_REPS=1 "$py" bench/torch_peer.py --threads 1 --layers-only --shape 28 \
        --only dft_magnitude > "$tmp/out"
    [ "$(grep -c '^layer' "$tmp/out")" = 1 ] || { cat "$tmp/out"; fail "torch_peer small run"; }
else
    skip_missing test_bench_args "the PyTorch peer's argument checks" python3-torch
fi
echo "test_bench_args: ok (kernel variants here: $(echo $supported); best $best)"
