#!/bin/sh
# Runs every benchmark of `make bench` and prints the report (bench/report.py).
#
#   bench/run.sh            (from the repository root; `make bench` builds first)
#
# BENCH_OUT=dir keeps the raw tab-separated results there (default: $CFNET_BUILD/bench-results).
# The OpenBLAS kernel is chosen by OpenBLAS for this CPU: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
# are removed from the benchmarks' environment, and each program prints the kernel that ran
# ("# blas: ... core NAME"). BENCH_KEEP_BLAS_ENV=1 keeps them as they are.
# BENCH_SHAPE=28|50|64 runs the layers at that shape only (libcfnet and PyTorch), for a shorter
# run; BENCH_REPS=n fixes the repetitions, BENCH_LAT_CALLS=n the latency calls.
# BENCH_PASSES=n (default 1) measures the layers and networks of libcfnet and of PyTorch n times,
# one after the other in turn (libcfnet, PyTorch, libcfnet, ...); the report keeps each case's
# fastest pass on both sides, so that a slow spell of a shared machine during one side's turn
# does not decide a ratio. Latency and memory are measured once.
# BENCH_CLOCK=cpu|wall (default wall) is the programs' clock. A value outside these is an error
# (status 2) before anything runs; a benchmark program that fails stops the run (status 1).
set -eu
BUILD=${CFNET_BUILD:-build/default}
BIN=$BUILD/bench
OUT=${BENCH_OUT:-$BUILD/bench-results}
PY=/usr/bin/python3

usage_error() { echo "bench/run.sh: $*" >&2; exit 2; }
positive() { # NAME VALUE [MAX]: VALUE must be a positive integer, at most MAX when given
    case $2 in
    '' | *[!0-9]* | 0*) usage_error "$1=$2: must be a positive integer" ;;
    esac
    # the length first: the shell's arithmetic overflows on very long numbers
    if [ -n "${3:-}" ] && { [ ${#2} -gt ${#3} ] || [ "$2" -gt "$3" ]; }; then
        usage_error "$1=$2: must be at most $3"
    fi
}
case ${BENCH_SHAPE:-} in
'' | 28 | 50 | 64) ;;
*) usage_error "BENCH_SHAPE=$BENCH_SHAPE: must be 28, 50 or 64" ;;
esac
positive BENCH_PASSES "${BENCH_PASSES:-1}"
# the limits of the benchmark programs (bench_check_env in bench/bench_util.h)
[ -z "${BENCH_REPS+x}" ] || positive BENCH_REPS "$BENCH_REPS" 2147483647
[ -z "${BENCH_LAT_CALLS+x}" ] || positive BENCH_LAT_CALLS "$BENCH_LAT_CALLS" 1000000
case ${BENCH_KEEP_BLAS_ENV:-0} in
0 | 1) ;;
*) usage_error "BENCH_KEEP_BLAS_ENV=$BENCH_KEEP_BLAS_ENV: must be 0 or 1" ;;
esac
case ${BENCH_CLOCK:-wall} in
cpu | wall) ;;
*) usage_error "BENCH_CLOCK=$BENCH_CLOCK: must be cpu or wall" ;;
esac
for b in bench_sgemm bench_layers bench_nets; do
    [ -x "$BIN/$b" ] || { echo "bench/run.sh: $BIN/$b is missing: make bench-bins (or make bench)" >&2
                          exit 1; }
done
mkdir -p "$OUT"
rm -f "$OUT"/*.tsv "$OUT/report.txt" # an earlier run's results (which may have had more passes)
SHAPE=${BENCH_SHAPE:+--shape $BENCH_SHAPE}

# run_to FILE COMMAND...: the command's output on the terminal and in FILE; a failing command
# stops the run (in a plain pipe its status would be lost behind tee's).
run_to() {
    f=$1
    shift
    { st=0; "$@" || st=$?; echo "$st" > "$OUT/.status"; } | tee "$f"
    st=$(cat "$OUT/.status")
    rm -f "$OUT/.status"
    if [ "$st" != 0 ]; then
        echo "bench/run.sh: failed (exit status $st): $*; no report (results so far in $OUT)" >&2
        exit 1
    fi
}

if [ "${BENCH_KEEP_BLAS_ENV:-0}" = 1 ]; then
    RUN="env"
else
    echo "# environment had OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}" \
         "OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-(unset)}; both unset for the benchmarks"
    RUN="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
fi

echo "# machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== sgemm ceiling"
run_to "$OUT/sgemm.tsv" $RUN "$BIN/bench_sgemm" 2048
PASSES=${BENCH_PASSES:-1}
pass=1
while [ "$pass" -le "$PASSES" ]; do
# pass 1 writes NAME.tsv, pass p > 1 NAME.pP.tsv
S=; [ "$pass" -gt 1 ] && S=.p$pass
[ "$PASSES" -gt 1 ] && echo "== pass $pass of $PASSES"
echo "== layers, 1 thread"
run_to "$OUT/layers-1$S.tsv" $RUN "$BIN/bench_layers" --threads 1 $SHAPE
echo "== layers, 2 threads (engine)"
run_to "$OUT/layers-2$S.tsv" $RUN "$BIN/bench_layers" --threads 2 $SHAPE
echo "== layers, 2 threads (OpenBLAS)"
run_to "$OUT/layers-2b$S.tsv" $RUN "$BIN/bench_layers" --threads 2 --mode blas $SHAPE
echo "== networks, 1 thread"
run_to "$OUT/nets-1$S.tsv" $RUN "$BIN/bench_nets" --threads 1
echo "== networks, 2 threads (engine)"
run_to "$OUT/nets-2$S.tsv" $RUN "$BIN/bench_nets" --threads 2
echo "== networks, 2 threads (OpenBLAS)"
run_to "$OUT/nets-2b$S.tsv" $RUN "$BIN/bench_nets" --threads 2 --mode blas
if [ "$pass" -lt "$PASSES" ]; then
    echo "== PyTorch peer (pass $pass)"
    if $PY -c 'import torch' 2>/dev/null; then
        run_to "$OUT/torch$S.tsv" $RUN $PY bench/torch_peer.py --threads 1,2 $SHAPE
    fi
fi
pass=$((pass + 1))
done
S=; [ "$PASSES" -gt 1 ] && S=.p$PASSES
echo "== batch-1 inference latency"
run_to "$OUT/lat-1.tsv" $RUN "$BIN/bench_nets" --latency --threads 1
run_to "$OUT/lat-2.tsv" $RUN "$BIN/bench_nets" --latency --threads 2
echo "== peak memory of training"
run_to "$OUT/rss-1.tsv" $RUN "$BIN/bench_nets" --rss --threads 1
run_to "$OUT/rss-2.tsv" $RUN "$BIN/bench_nets" --rss --threads 2
echo "== PyTorch peer"
if $PY -c 'import torch' 2>/dev/null; then
    run_to "$OUT/torch$S.tsv" $RUN $PY bench/torch_peer.py --threads 1,2 $SHAPE
else
    echo "# PyTorch missing: apt-get install -y python3-torch (peer skipped)" | tee "$OUT/torch$S.tsv"
fi
# The ceiling again at the end: the report takes the faster of the two measurements, so that
# a slow moment of a shared machine at the start does not inflate every "of sgemm" rate.
echo "== sgemm ceiling again"
run_to "$OUT/sgemm-end.tsv" $RUN "$BIN/bench_sgemm" 2048
echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== report"
run_to "$OUT/report.txt" $PY bench/report.py "$OUT"/*.tsv
