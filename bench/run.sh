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
set -eu
BUILD=${CFNET_BUILD:-build/default}
BIN=$BUILD/bench
OUT=${BENCH_OUT:-$BUILD/bench-results}
mkdir -p "$OUT"
rm -f "$OUT"/*.tsv # results of an earlier run (which may have had more passes)
PY=/usr/bin/python3
SHAPE=${BENCH_SHAPE:+--shape $BENCH_SHAPE}

if [ "${BENCH_KEEP_BLAS_ENV:-0}" = 1 ]; then
    RUN="env"
else
    echo "# environment had OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}" \
         "OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-(unset)}; both unset for the benchmarks"
    RUN="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
fi

echo "# machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== sgemm ceiling";                  $RUN "$BIN/bench_sgemm" 2048        | tee "$OUT/sgemm.tsv"
PASSES=${BENCH_PASSES:-1}
pass=1
while [ "$pass" -le "$PASSES" ]; do
# pass 1 writes NAME.tsv, pass p > 1 NAME.pP.tsv
S=; [ "$pass" -gt 1 ] && S=.p$pass
[ "$PASSES" -gt 1 ] && echo "== pass $pass of $PASSES"
echo "== layers, 1 thread";               $RUN "$BIN/bench_layers" --threads 1 $SHAPE | tee "$OUT/layers-1$S.tsv"
echo "== layers, 2 threads (engine)";     $RUN "$BIN/bench_layers" --threads 2 $SHAPE | tee "$OUT/layers-2$S.tsv"
echo "== layers, 2 threads (OpenBLAS)";   $RUN "$BIN/bench_layers" --threads 2 --mode blas $SHAPE \
                                                                             | tee "$OUT/layers-2b$S.tsv"
echo "== networks, 1 thread";             $RUN "$BIN/bench_nets" --threads 1   | tee "$OUT/nets-1$S.tsv"
echo "== networks, 2 threads (engine)";   $RUN "$BIN/bench_nets" --threads 2   | tee "$OUT/nets-2$S.tsv"
echo "== networks, 2 threads (OpenBLAS)"; $RUN "$BIN/bench_nets" --threads 2 --mode blas \
                                                                             | tee "$OUT/nets-2b$S.tsv"
if [ "$pass" -lt "$PASSES" ]; then
    echo "== PyTorch peer (pass $pass)"
    if $PY -c 'import torch' 2>/dev/null; then
        $RUN $PY bench/torch_peer.py --threads 1,2 $SHAPE | tee "$OUT/torch$S.tsv"
    fi
fi
pass=$((pass + 1))
done
S=; [ "$PASSES" -gt 1 ] && S=.p$PASSES
echo "== batch-1 inference latency";      $RUN "$BIN/bench_nets" --latency --threads 1 | tee "$OUT/lat-1.tsv"
$RUN "$BIN/bench_nets" --latency --threads 2 | tee "$OUT/lat-2.tsv"
echo "== peak memory of training";        $RUN "$BIN/bench_nets" --rss --threads 1 | tee "$OUT/rss-1.tsv"
$RUN "$BIN/bench_nets" --rss --threads 2 | tee "$OUT/rss-2.tsv"
echo "== PyTorch peer"
if $PY -c 'import torch' 2>/dev/null; then
    $RUN $PY bench/torch_peer.py --threads 1,2 $SHAPE | tee "$OUT/torch$S.tsv"
else
    echo "# PyTorch missing: apt-get install -y python3-torch (peer skipped)" | tee "$OUT/torch$S.tsv"
fi
# The ceiling again at the end: the report takes the faster of the two measurements, so that
# a slow moment of a shared machine at the start does not inflate every "of sgemm" rate.
echo "== sgemm ceiling again";            $RUN "$BIN/bench_sgemm" 2048        | tee "$OUT/sgemm-end.tsv"
echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== report"
$PY bench/report.py "$OUT"/*.tsv | tee "$OUT/report.txt"
