#!/bin/sh
# Data-parallel training over MPI (libcfnet_mpi, tests/mpi/mpi_train.c):
#  - libcfnet itself links no MPI;
#  - equivalence: 2 ranks x batch 25 (and 3 ranks, uneven 17/17/16) train like 1 process x
#    batch 50 for 5 steps, with synchronised batch norm, dropout and augmentation on: every
#    weight and batch-norm statistic within 1e-5 relative;
#  - a rank with another option set makes every rank stop with one message (no hang);
#  - the rest of cfnet_mpi.h: sums, batch shares, the hook's traffic counters, detach;
#  - the same from Python with mpi4py (examples/python/mpi_train.py);
#  - a rank killed mid-training ends the job with an error within the timeout, and rank 0's
#    last checkpoint loads and trains on;
#  - the command: `mpirun -np N cfnet predict` writes the 1-process CSV, `mpirun -np N cfnet
#    eval` the 1-process report; `mpirun -np N cfnet train` gives the 1-process weights
#    (within 1e-5 relative), with validation summed over ranks, the log written once, and
#    --resume on another rank count.
# Skipped, with the reason, when mpirun or mpicc is absent (scripts/install-deps installs
# openmpi-bin and libopenmpi-dev).
set -eu
build=${CFNET_BUILD:-build/default}
libdir=${CFNET_LIBDIR:-lib}
prog="$build/mpi/mpi_train"
out="$build/test-output/mpi"
# shellcheck source=tests/skip_lib.sh
. "$(dirname "$0")/skip_lib.sh"
if ! command -v mpirun >/dev/null 2>&1; then
    skip_missing test_mpi "every check" "openmpi-bin (mpirun)"
    exit 0
fi
# mpirun without mpicc (openmpi-bin without libopenmpi-dev): make check built no MPI programs
if ! command -v "${MPICC:-mpicc}" >/dev/null 2>&1; then
    skip_missing test_mpi "every check (nothing was built with MPI)" "libopenmpi-dev (${MPICC:-mpicc})"
    exit 0
fi
if [ ! -x "$prog" ]; then
    echo "test_mpi: $prog was not built (make check builds it when mpicc exists)"
    exit 1
fi
mkdir -p "$out"

if ldd "$libdir/libcfnet.so" | grep -qi mpi; then
    echo "test_mpi: libcfnet.so links MPI:"; ldd "$libdir/libcfnet.so" | grep -i mpi
    exit 1
fi

# Shared memory only (containers and CI machines may have no usable network interface); root
# is allowed (CI runs as root); more ranks than cores is fine. Open MPI's own allocations are
# not ours to leak-check under AddressSanitizer.
export OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_plm_rsh_agent=false
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
run() { np=$1; shift; timeout 60 mpirun --allow-run-as-root --oversubscribe -np "$np" "$prog" "$@"; }
run_py() { np=$1; shift; timeout 60 mpirun --allow-run-as-root --oversubscribe -x CFNET_LIBRARY \
    -x PYTHONPATH -np "$np" /usr/bin/python3 "$@"; }

run 1 equiv "$out/one.bin"
run 2 equiv "$out/two.bin"
run 3 equiv "$out/three.bin"
"$prog" compare "$out/two.bin" "$out/one.bin" 1e-5
"$prog" compare "$out/three.bin" "$out/one.bin" 1e-5

# The same from Python through mpi4py (examples/python/mpi_train.py), when it is installed.
if [ -n "${CFNET_SANITIZE:-}" ]; then
    skip_env test_mpi "the mpi4py part" "a sanitizer build: the interpreter is not instrumented"
elif ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
    skip_missing test_mpi "the mpi4py part" python3-numpy
elif ! /usr/bin/python3 -c 'import mpi4py' 2>/dev/null; then
    skip_missing test_mpi "the mpi4py part" python3-mpi4py
else
    CFNET_LIBRARY="$libdir/libcfnet.so" PYTHONPATH=python \
        run_py 2 examples/python/mpi_train.py "$out/py2.npy" >/dev/null
    # One rank as README.md runs it, from the repository root without PYTHONPATH: the script
    # finds the package in python/ itself (as examples/python/train.py does).
    (unset PYTHONPATH; CFNET_LIBRARY="$libdir/libcfnet.so" timeout 60 mpirun --allow-run-as-root \
        --oversubscribe -x CFNET_LIBRARY -np 1 /usr/bin/python3 examples/python/mpi_train.py \
        "$out/py1.npy" >/dev/null) || { echo "test_mpi: FAIL: examples/python/mpi_train.py" \
        "without PYTHONPATH" >&2; exit 1; }
    # --help is the usage (status 0), not the name of a file to write (--help.npy); other
    # options are usage errors (status 2)
    rm -f -- --help.npy
    CFNET_LIBRARY="$libdir/libcfnet.so" PYTHONPATH=python \
        /usr/bin/python3 examples/python/mpi_train.py --help >"$out/pyhelp.txt" 2>&1 ||
        { cat "$out/pyhelp.txt"; echo "test_mpi: FAIL: mpi_train.py --help" >&2; exit 1; }
    if ! grep -q "^usage: mpi_train.py" "$out/pyhelp.txt" || [ -e --help.npy ]; then
        rm -f -- --help.npy
        cat "$out/pyhelp.txt"
        echo "test_mpi: FAIL: mpi_train.py --help trained and wrote --help.npy" >&2
        exit 1
    fi
    # an exception on one rank (here: rank 1's third train_step) ends every rank, instead of
    # leaving rank 0 waiting forever in its Allreduce (124: the timeout)
    set +e
    CFNET_LIBRARY="$libdir/libcfnet.so" PYTHONPATH=python run_py 2 -c '
import runpy, sys, cfnet
from mpi4py import MPI
step = cfnet.Network.train_step
calls = [0]
def failing(self, *a, **k):
    calls[0] += 1
    if MPI.COMM_WORLD.Get_rank() == 1 and calls[0] == 3:
        raise RuntimeError("rank 1 cannot read its share")
    return step(self, *a, **k)
cfnet.Network.train_step = failing
sys.argv = ["mpi_train.py"]
runpy.run_path("examples/python/mpi_train.py", run_name="__main__")' >"$out/pyfail.txt" 2>&1
    st=$?
    set -e
    if [ $st = 0 ] || [ $st = 124 ] || ! grep -q "rank 1 cannot read its share" "$out/pyfail.txt"; then
        cat "$out/pyfail.txt"
        echo "test_mpi: FAIL: an exception on rank 1 of mpi_train.py gave status $st (124: a hang)" >&2
        exit 1
    fi
    set +e
    CFNET_LIBRARY="$libdir/libcfnet.so" PYTHONPATH=python \
        /usr/bin/python3 examples/python/mpi_train.py --steps 3 >"$out/pybad.txt" 2>&1
    st=$?
    set -e
    [ $st = 2 ] || { cat "$out/pybad.txt"; echo "test_mpi: FAIL: mpi_train.py --steps 3: status $st, not 2" >&2; exit 1; }
    /usr/bin/python3 -c "
import sys, numpy as np
a, b = np.load('$out/py2.npy'), np.load('$out/py1.npy')
rel = float(np.abs(a - b).max() / np.abs(b).max())
print('test_mpi: mpi4py, 2 ranks against 1: %d values, max rel difference %.3g' % (a.size, rel))
sys.exit(0 if rel <= 1e-5 else 1)"
fi

# Mismatch: every rank returns the error (exit 0 of the driver), rank 0 prints it once.
msg=$(run 2 mismatch)
echo "$msg"
echo "$msg" | grep -q "the network on rank 1 differs from rank 0's" || {
    echo "test_mpi: the mismatch was not reported"; exit 1; }

# The rest of the C API (sums, shares, traffic, a rank without a network, detach) on 1-3 ranks.
for np in 1 2 3; do run $np api; done

# MPI_COMM_NULL on some ranks only. Left out by MPI_Comm_split (MPI_UNDEFINED): those ranks get
# CFNET_E_INVALID_ARGUMENT at once, the others a group without them. Passed by rank 1 while rank
# 0 passes MPI_COMM_WORLD: rank 0 waits in MPI_Comm_dup and cannot be told (cfnet_mpi.h); rank
# 1's message says to end the job, and doing so ends it (124 would mean a hang).
# Every run's lines are checked: rank 0's group of 1, the message on each of the other ranks.
for np in 2 3; do
    run $np nullcomm >"$out/nullcomm.log"
    msg="cfnet_mpi_create: the communicator is MPI_COMM_NULL on this rank"
    left=$(grep -c "^nullcomm: rank [1-9]: $msg" "$out/nullcomm.log" || true)
    if [ "$left" != $((np - 1)) ] || ! grep -q "^nullcomm: rank 0: a group of 1" "$out/nullcomm.log"; then
        cat "$out/nullcomm.log"; echo "test_mpi: nullcomm on $np ranks"; exit 1
    fi
done
set +e
run 2 nullcomm-abort >"$out/nullcomm-abort.log" 2>&1
rc=$?
set -e
if [ $rc -eq 0 ] || [ $rc -eq 124 ] ||
    ! grep -q "rank 1: .*end the job (MPI_Abort)" "$out/nullcomm-abort.log"; then
    cat "$out/nullcomm-abort.log"
    echo "test_mpi: MPI_COMM_NULL on rank 1 gave status $rc (0: went on, 124: hang)"; exit 1
fi
echo "test_mpi: MPI_COMM_NULL on some ranks: an error there, the job ended by its host ($rc)"

# Fault: rank 1 kills itself in step 4 while rank 0 waits in an all-reduce; mpirun must end
# the job with a failure before the 60 s timeout (124 would mean a hang).
rm -f "$out/fault.cfnet"
set +e
run 2 fault "$out/fault.cfnet" >"$out/fault.log" 2>&1
rc=$?
set -e
if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
    cat "$out/fault.log"; echo "test_mpi: a dead rank gave exit status $rc (0: went on, 124: hang)"
    exit 1
fi
echo "test_mpi: killed rank ended the job with status $rc"
"$prog" verify "$out/fault.cfnet" 3
# The command: `mpirun -np N cfnet predict` shards the inputs in whole inference batches and
# rank 0 writes one CSV in input order, identical to one process's; a bad file on one rank ends
# the job with a message naming it and the rank.
tool=${CFNET_TOOL:-bin/cfnet}
if [ -x "$tool" ] && ldd "$tool" | grep -qi mpi; then
    c="$out/cli"
    rm -rf "$c"
    "$tool" synth "$c/d" --classes 3 --per-class 8 --test-per-class 5 --size 32 -q
    "$tool" train "$c/d/train" -o "$c/m.cfnet" --epochs 1 --width 4 --threads 1 -q
    "$tool" predict "$c/m.cfnet" "$c/d/test" -o "$c/p1.csv" --threads 1 --batch 4 -q
    for np in 2 3; do
        timeout 60 mpirun --allow-run-as-root --oversubscribe -np $np "$tool" predict \
            "$c/m.cfnet" "$c/d/test" -o "$c/p$np.csv" --threads 1 --batch 4 -q
        cmp "$c/p1.csv" "$c/p$np.csv" || { echo "test_mpi: $np-rank CSV differs"; exit 1; }
    done
    echo "test_mpi: cfnet predict on 2 and 3 ranks wrote the 1-process CSV ($(wc -l <"$c/p1.csv") lines)"
    # docs/distributed.md's count of the sums (each after its one-int flag) in a step of the
    # default network: one step (24 training images, batch 32) on 32x32 and 50x50 images, the
    # closing line's count ("the 13 sums of the default network" it said, of 32x32 images only)
    "$tool" synth "$c/d50" --classes 3 --per-class 8 --test-per-class 0 -q
    sums() {
        timeout 60 mpirun --allow-run-as-root --oversubscribe -np 2 "$tool" train "$1" \
            -o "$c/ms.cfnet" --epochs 1 --batch 32 --val 0 --threads 1 >"$c/ms.log" 2>&1 &&
            sed -n 's/.*MPI: \([0-9]*\) all-reduce calls.*/\1/p' "$c/ms.log"
    }
    n32=$(sums "$c/d/train") && n50=$(sums "$c/d50/train") || {
        cat "$c/ms.log"; echo "test_mpi: a one-step train on 2 ranks failed"; exit 1; }
    said="the default network makes $n32 sums a step on 32x32 images and $n50 on 50x50"
    tr '\n' ' ' <docs/distributed.md | tr -s ' ' | grep -q "$said" || {
        echo "test_mpi: docs/distributed.md does not say: $said"; exit 1; }
    # A training step's collectives: each sum of the step is an all-reduce after its check-in,
    # and the step's own flags (its held messages', the interrupt's) ride on a check-in each,
    # with no all-reduce of their own (a check-in before each of those sums made a step two
    # all-reduces dearer). Counted by an MPI_Allreduce wrapper (PMPI) over 4 and 8 steps.
    if [ -z "${CFNET_SANITIZE:-}" ]; then
        cat >"$c/pmpi.c" <<'EOF_PMPI'
#include <mpi.h>
#include <stdio.h>
static long calls;
int MPI_Allreduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op o, MPI_Comm c)
{
    calls++;
    return PMPI_Allreduce(s, r, n, t, o, c);
}
int MPI_Finalize(void)
{
    int rank;
    PMPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) fprintf(stderr, "ALLREDUCE %ld\n", calls);
    return PMPI_Finalize();
}
EOF_PMPI
        "${MPICC:-mpicc}" -shared -fPIC -o "$c/pmpi.so" "$c/pmpi.c"
        steps() { # BATCH: "ALL-REDUCES HOOK-CALLS" of one epoch of 24 images
            LD_PRELOAD="$c/pmpi.so" timeout 60 mpirun --allow-run-as-root --oversubscribe \
                -x LD_PRELOAD -np 2 "$tool" train "$c/d/train" -o "$c/ms.cfnet" --epochs 1 \
                --batch "$1" --val 0 --threads 1 --width 4 >"$c/ms.log" 2>&1 &&
                echo "$(sed -n 's/^ALLREDUCE //p' "$c/ms.log")" \
                    "$(sed -n 's/.*MPI: \([0-9]*\) all-reduce calls.*/\1/p' "$c/ms.log")"
        }
        s4=$(steps 6) && s8=$(steps 3) || { cat "$c/ms.log"; echo "test_mpi: a train under the MPI_Allreduce counter failed"; exit 1; }
        a4=${s4% *} h4=${s4#* } a8=${s8% *} h8=${s8#* }
        # per step: 2 per sum of the hook, 2 for the step's flags
        if [ $((a8 - a4)) -ne $((2 * (h8 - h4) + 2 * 4)) ]; then
            echo "test_mpi: 4 more steps made $((a8 - a4)) more all-reduces, $((h8 - h4)) more" \
                "sums (expected $((2 * (h8 - h4) + 2 * 4)): a check-in each and 2 a step)"; exit 1
        fi
        echo "test_mpi: a training step makes $(((a8 - a4) / 4)) all-reduces ($(((h8 - h4) / 4))" \
            "sums, each after its check-in, and 2 check-ins of its own)"
    fi
    # the messages of the folder search (a file left out, a folder reached again) once per run
    mkdir -p "$c/msg/a"
    cp "$c"/d/test/class00/*.tif "$c/msg/a/"
    echo notes >"$c/msg/a/notes.txt"
    ln -s .. "$c/msg/a/up"
    timeout 60 mpirun --allow-run-as-root --oversubscribe -np 2 "$tool" predict "$c/m.cfnet" \
        "$c/msg" -o "$c/pm.csv" --threads 1 --batch 4 >"$c/msg.log" 2>&1
    if [ "$(grep -c "ignored 1 file in the folders searched" "$c/msg.log")" != 1 ] ||
        [ "$(grep -c "skipped 1 folder reached again" "$c/msg.log")" != 1 ]; then
        cat "$c/msg.log"; echo "test_mpi: the folder search's messages not once per run"; exit 1
    fi
    mkdir -p "$c/bad"
    cp "$c"/d/test/class00/*.tif "$c/bad/"
    echo junk >"$c/bad/zz_broken.tif"
    set +e
    timeout 60 mpirun --allow-run-as-root --oversubscribe -np 2 "$tool" predict "$c/m.cfnet" \
        "$c/bad" -o "$c/pb.csv" --threads 1 --batch 2 -q >"$c/bad.log" 2>&1
    rc=$?
    set -e
    if [ $rc -eq 0 ] || [ $rc -eq 124 ] || ! grep -q "zz_broken.tif" "$c/bad.log" ||
        ! grep -q "rank 1 of 2" "$c/bad.log"; then
        cat "$c/bad.log"; echo "test_mpi: a bad file on rank 1 gave status $rc"; exit 1
    fi
    if ls "$c"/pb.csv.tmp.* >/dev/null 2>&1 || [ -e "$c/pb.csv" ]; then
        ls -la "$c"; echo "test_mpi: the aborted predict left its output or a temporary file"; exit 1
    fi
    echo "test_mpi: a bad file on rank 1 ended the job (status $rc) naming the file and the rank"
    # `mpirun -np N cfnet train`: each rank decodes its share of every global batch of --batch
    # images (and of the validation set); N ranks compute what one process computes. SGD: Adam
    # divides by the root of each gradient's square, which turns rounding-level differences of
    # near-zero gradients into full-size steps (docs/distributed.md). Learning rate 0.01: at
    # 0.02 the default CFNet of this tiny width-4 network (steerable, N(0, 0.1^2) weights)
    # differs by 2.7e-7 after the first epoch, by 1.3e-3 after the second and by 2e-2 after
    # the third (a jump of that size within three steps points to a ReLU or pooling choice
    # flipping between the two summation orders; 1 against 2 threads stays at 1e-6) - a
    # property of training a piecewise-linear network, not of the distribution.
    mr() { np=$1; shift; timeout 60 mpirun --allow-run-as-root --oversubscribe -np "$np" "$tool" "$@"; }
    t="$c/t"
    "$tool" synth "$t/d" --classes 3 --per-class 30 --test-per-class 1 --size 32 -q
    a="$t/d/train --epochs 3 --width 4 --threads 1 -q --optimizer sgd --lr 0.01 --val 0.8"
    # 72 validation images: two inference batches, classified on two ranks and summed
    "$tool" train $a --batch 6 --rotate none -o "$t/plain.cfnet" --log "$t/plain.csv"
    mr 2 train $a --batch 6 --rotate none -o "$t/two.cfnet" --log "$t/two.csv"
    "$prog" compare-models "$t/two.cfnet.last.safetensors" "$t/plain.cfnet.last.safetensors" 1e-5
    cut -d, -f5,6 "$t/plain.csv" >"$t/plain.val"
    cut -d, -f5,6 "$t/two.csv" >"$t/two.val"
    cmp "$t/plain.val" "$t/two.val" || { echo "test_mpi: validation accuracy differs on 2 ranks"; exit 1; }
    [ "$(wc -l <"$t/two.csv")" -eq 4 ] || { cat "$t/two.csv"; echo "test_mpi: the log is not rank 0's alone"; exit 1; }
    # augmentation on (keyed per sample under mpirun), uneven shares (batch 7: 4+3, 3+2+2)
    mr 1 train $a --batch 7 --rotate any -o "$t/aug1.cfnet"
    mr 2 train $a --batch 7 --rotate any -o "$t/aug2.cfnet"
    "$prog" compare-models "$t/aug2.cfnet.last.safetensors" "$t/aug1.cfnet.last.safetensors" 1e-5
    # resume on another rank count: 1 epoch on 2 ranks, then epochs 2-3 on 3 ranks
    mr 2 train $a --batch 7 --rotate any --epochs 1 -o "$t/res.cfnet"
    mr 3 train "$t/d/train" --epochs 3 --threads 1 -q --resume "$t/res.cfnet.last.safetensors" \
        -o "$t/res.cfnet"
    "$prog" compare-models "$t/res.cfnet.last.safetensors" "$t/aug1.cfnet.last.safetensors" 1e-5
    "$prog" compare-models "$t/res.cfnet" "$t/aug1.cfnet" 1e-5
    # a plain run's checkpoint resumed under mpirun, whose checkpoint a plain run resumes: the
    # plain 3-epoch weights (no augmentation: plain and mpirun runs agree)
    "$tool" train $a --batch 6 --rotate none --epochs 1 -o "$t/mix.cfnet"
    mr 2 train "$t/d/train" --epochs 2 --threads 1 -q --resume "$t/mix.cfnet.last.safetensors" \
        -o "$t/mix.cfnet"
    "$tool" train "$t/d/train" --epochs 3 --threads 1 -q --resume "$t/mix.cfnet.last.safetensors" \
        -o "$t/mix.cfnet"
    "$prog" compare-models "$t/mix.cfnet.last.safetensors" "$t/plain.cfnet.last.safetensors" 1e-5
    echo "test_mpi: cfnet train on 2 and 3 ranks (and resumed from 2 on 3, from plain on 2 and" \
        "from 2 on plain) gave the 1-process weights"
    # a batch that cannot give every rank a sample is refused before training, by rank 0 once
    set +e
    mr 3 train $a --batch 2 -o "$t/small.cfnet" >"$t/small.log" 2>&1
    rc=$?
    set -e
    if [ $rc -eq 0 ] || [ $rc -eq 124 ] || ! grep -q "3 MPI ranks need at least 3 images" "$t/small.log" ||
        [ -e "$t/small.cfnet" ]; then
        cat "$t/small.log"; echo "test_mpi: batch 2 on 3 ranks gave status $rc"; exit 1
    fi
    # the same on --resume, where --batch is the checkpoint's: the message gives the most ranks
    # that work instead of asking for another --batch (18 training images in batches of 7
    # leave 4 in the last one)
    set +e
    mr 5 train "$t/d/train" --epochs 4 --threads 1 -q --resume "$t/res.cfnet.last.safetensors" \
        -o "$t/res5.cfnet" >"$t/res5.log" 2>&1
    rc=$?
    set -e
    if [ $rc -eq 0 ] || [ $rc -eq 124 ] ||
        ! grep -q "leaves 4 in the last one; run on at most 4 ranks (--batch is the checkpoint's)" "$t/res5.log"; then
        cat "$t/res5.log"; echo "test_mpi: resuming on 5 ranks gave status $rc"; exit 1
    fi
    # a command that runs on one process only: one message from rank 0, no abort that loses it
    set +e
    mr 2 info "$t/small.cfnet" >"$t/info2.log" 2>&1
    rc=$?
    set -e
    # (a usage error said as the others are: it was "cfnet: 'info' does not run ...", no pointer)
    if [ $rc -ne 2 ] || ! grep -q "^cfnet info: does not run on several MPI ranks" "$t/info2.log" ||
        ! grep -q "^(see 'cfnet info --help')$" "$t/info2.log" ||
        [ "$(grep -c "does not run on several" "$t/info2.log")" != 1 ]; then
        cat "$t/info2.log"; echo "test_mpi: info on 2 ranks gave status $rc"; exit 1
    fi
    # Failures of one rank, or of all alike: never a hang (124), one message, nothing written.
    # rank0.sh adds $EXTRA to rank 0's arguments only (an environment variable that one node
    # sets and another does not); pids.sh records each rank's pid, then runs the command.
    printf '#!/bin/sh\nif [ "$OMPI_COMM_WORLD_RANK" = 0 ]; then exec "$@" $EXTRA; fi\nexec "$@"\n' \
        >"$t/rank0.sh"
    printf '#!/bin/sh\necho $$ >"$PIDS.$OMPI_COMM_WORLD_RANK"\nexec "$@"\n' >"$t/pids.sh"
    chmod +x "$t/rank0.sh" "$t/pids.sh"
    # expect NAME STATUS TEXT COUNT: the last run ended with STATUS (not 124: a hang) and its
    # log $t/NAME.log holds TEXT on exactly COUNT lines
    expect() {
        n=$(grep -c -- "$3" "$t/$1.log" || true)
        if [ $rc -ne "$2" ] || [ "$n" -ne "$4" ]; then
            cat "$t/$1.log"
            echo "test_mpi: $1: status $rc (expected $2), '$3' on $n lines (expected $4)"; exit 1
        fi
    }
    b="$t/d/train --epochs 2 --width 4 --threads 1 -q --optimizer sgd --lr 0.01 --val 0.8 --batch 6"
    set +e
    # another --epochs (or --patience) on one rank: the ranks would leave the loop at different
    # epochs, one waiting forever for the other; every rank stops before training instead
    EXTRA="--epochs 3" timeout 60 mpirun --allow-run-as-root --oversubscribe -x EXTRA -np 2 \
        "$t/rank0.sh" "$tool" train $b -o "$t/ep.cfnet" >"$t/ep.log" 2>&1
    rc=$?
    expect ep 1 "the MPI ranks disagree on --epochs" 1
    [ ! -e "$t/ep.cfnet" ] || { echo "test_mpi: the refused run wrote a model"; exit 1; }
    # --skip-bad on rank 0 alone: refused once, before its check of the images (rank 0 went
    # into that check's collectives while rank 1 was in others: an MPI error, status 15, or a
    # hang)
    EXTRA="--skip-bad" timeout 60 mpirun --allow-run-as-root --oversubscribe -x EXTRA -np 2 \
        "$t/rank0.sh" "$tool" train $b -o "$t/trs.cfnet" >"$t/trs.log" 2>&1
    rc=$?
    expect trs 1 "the MPI ranks disagree on --skip-bad" 1
    expect trs 1 "cfnet:" 1
    [ ! -e "$t/trs.cfnet" ] || { echo "test_mpi: the refused run wrote a model"; exit 1; }
    # another --batch on one rank, one that fails the batch-against-ranks check there: every
    # rank stops at the agreement (not rank 0 alone, the other waiting in cfnet_mpi_attach)
    EXTRA="--batch 1" timeout 60 mpirun --allow-run-as-root --oversubscribe -x EXTRA -np 2 \
        "$t/rank0.sh" "$tool" train $b -o "$t/ba.cfnet" >"$t/ba.log" 2>&1
    rc=$?
    expect ba 1 "the MPI ranks disagree on --batch" 1
    # another network setting on one rank: cfnet_mpi_attach fails on every rank, said once
    EXTRA="--lr 0.1" timeout 60 mpirun --allow-run-as-root --oversubscribe -x EXTRA -np 2 \
        "$t/rank0.sh" "$tool" train $b -o "$t/lr.cfnet" >"$t/lr.log" 2>&1
    rc=$?
    expect lr 1 "differs from rank 0's" 1
    # another --batch on one rank of predict: the shards would overlap (rows written twice)
    EXTRA="--batch 2" timeout 60 mpirun --allow-run-as-root --oversubscribe -x EXTRA -np 2 \
        "$t/rank0.sh" "$tool" predict "$c/m.cfnet" "$c/d/test" -o "$c/pe.csv" --threads 1 -q \
        >"$t/pe.log" 2>&1
    rc=$?
    expect pe 1 "the MPI ranks disagree on --batch" 1
    [ ! -e "$c/pe.csv" ] || {
        echo "test_mpi: predict wrote a CSV from overlapping shards"; exit 1; }
    # an output folder that does not exist: rank 0's check stops every rank (status 2, no abort)
    mr 2 train $b -o "$t/missing/m.cfnet" >"$t/out.log" 2>&1
    rc=$?
    expect out 2 "missing/m.cfnet" 1
    expect out 2 "MPI_ABORT" 0
    mr 2 predict "$c/m.cfnet" "$c/d/test" -o "$c/d/test" --threads 1 -q >"$t/pout.log" 2>&1
    rc=$?
    expect pout 2 "is a folder; give a file name" 1
    expect pout 2 "MPI_ABORT" 0
    # failures before the ranks start (every rank's stderr is held until then): said once
    # when every rank meets them, by the rank that met them otherwise, and never an abort
    mr 3 train $b --bogus -o "$t/u.cfnet" >"$t/usage.log" 2>&1
    rc=$?
    expect usage 2 "unknown option '--bogus'" 1
    expect usage 2 "MPI_ABORT" 0
    mr 3 train "$t/nodata" -o "$t/u.cfnet" >"$t/nodata.log" 2>&1
    rc=$?
    expect nodata 1 "nodata: no such file or directory" 1
    mr 2 predict "$c/m.cfnet" "$c/d/test" -o "$c/missing/p.csv" -q >"$t/pmiss.log" 2>&1
    rc=$?
    expect pmiss 2 "missing/p.csv: cannot create" 1
    expect pmiss 2 "MPI_ABORT" 0
    # (rank 1 alone is given a DATA that does not exist)
    timeout 60 mpirun --allow-run-as-root --oversubscribe -np 3 sh -c \
        'd=$1; [ "$OMPI_COMM_WORLD_RANK" = 1 ] && d=$2; shift 2; exec "$@" "$d"' sh \
        "$t/d/train" "$t/nodata" "$tool" train --width 4 --threads 1 -q --batch 6 \
        -o "$t/u.cfnet" >"$t/nodata1.log" 2>&1
    rc=$?
    expect nodata1 1 "nodata: no such file or directory" 1
    expect nodata1 1 "the message above is rank 1's of 3" 1
    # rank 0 given one unknown option, ranks 1 to 3 another: each message said once, rank 0's
    # and rank 1's (ranks 2 and 3 said theirs again: a check against the lowest failed rank's
    # message alone); status 2
    timeout 60 mpirun --allow-run-as-root --oversubscribe -np 4 sh -c \
        'o=$1; [ "$OMPI_COMM_WORLD_RANK" = 0 ] && o=$2; shift 2; exec "$@" "$o"' sh --bogus \
        --bogus0 "$tool" train "$t/d/train" --threads 1 -q -o "$t/u.cfnet" >"$t/usage2.log" 2>&1
    rc=$?
    expect usage2 2 "unknown option '--bogus0'" 1
    expect usage2 2 "unknown option '--bogus'" 1
    expect usage2 2 "the message above is rank 1's of 4" 1
    expect usage2 2 "the message above is rank" 1
    [ ! -e "$t/u.cfnet" ] || { echo "test_mpi: a run that did not start wrote a model"; exit 1; }
    # --resume auto with MODEL's folder not shared (here: another -o on rank 1, whose folder
    # holds no checkpoint) and a checkpoint of 3 epochs on rank 0: every rank stops before
    # training with one message from rank 0, when the run is to go on to 5 epochs (rank 1
    # started afresh beside rank 0 and the ranks disagreed "on --batch") and when it is
    # complete (rank 0 ended as complete while rank 1 went on and waited for it: a hang); a
    # folder every rank shares: the complete run is said once, status 0
    mkdir -p "$t/ra" "$t/rb"
    cp "$t/res.cfnet.last.safetensors" "$t/ra/m.cfnet.last.safetensors"
    for ep in 5 3; do
        timeout 60 mpirun --allow-run-as-root --oversubscribe -np 2 sh -c \
            'o=$1; [ "$OMPI_COMM_WORLD_RANK" = 1 ] && o=$2; shift 2; exec "$@" -o "$o"' sh \
            "$t/ra/m.cfnet" "$t/rb/m.cfnet" "$tool" train "$t/d/train" --threads 1 -q \
            --resume auto --epochs $ep >"$t/ra$ep.log" 2>&1
        rc=$?
        expect ra$ep 1 "resume auto: the MPI ranks do not see the same checkpoint .*ra/m.cfnet.last.safetensors (rank 0 finds one with 3 epochs done)" 1
        expect ra$ep 1 "MPI_ABORT" 0
        cmp "$t/res.cfnet.last.safetensors" "$t/ra/m.cfnet.last.safetensors" ||
            { echo "test_mpi: the refused --resume auto changed the checkpoint"; exit 1; }
        [ -z "$(ls "$t/rb")" ] || { ls "$t/rb"; echo "test_mpi: the refused --resume auto wrote"; exit 1; }
    done
    # a node-local MODEL folder on each rank, each with a checkpoint of the same epochs, steps
    # and settings but other contents (a stale or damaged copy; here one byte of the last
    # optimiser moment): refused the same way (the ranks trained on, each from its own state)
    mkdir -p "$t/sa" "$t/sb"
    cp "$t/res.cfnet.last.safetensors" "$t/sa/m.cfnet.last.safetensors"
    cp "$t/res.cfnet.last.safetensors" "$t/sb/m.cfnet.last.safetensors"
    f="$t/sb/m.cfnet.last.safetensors"
    sz=$(stat -c %s "$f")
    byte=$(od -An -tu1 -j $((sz - 1)) -N 1 "$f" | tr -d ' ')
    printf "\\$(printf %o $(((byte + 1) % 256)))" | dd of="$f" bs=1 seek=$((sz - 1)) conv=notrunc 2>/dev/null
    ! cmp -s "$t/sa/m.cfnet.last.safetensors" "$f" || { echo "test_mpi: the copy was not changed"; exit 1; }
    timeout 60 mpirun --allow-run-as-root --oversubscribe -np 2 sh -c \
        'o=$1; [ "$OMPI_COMM_WORLD_RANK" = 1 ] && o=$2; shift 2; exec "$@" -o "$o"' sh \
        "$t/sa/m.cfnet" "$t/sb/m.cfnet" "$tool" train "$t/d/train" --threads 1 -q \
        --resume auto --epochs 5 >"$t/rsame.log" 2>&1
    rc=$?
    expect rsame 1 "resume auto: the MPI ranks do not see the same checkpoint .*sa/m.cfnet.last.safetensors (rank 0 finds one with 3 epochs done; another rank finds one of the same epochs and steps, with other contents)" 1
    cmp "$t/res.cfnet.last.safetensors" "$t/sa/m.cfnet.last.safetensors" ||
        { echo "test_mpi: the refused --resume auto changed the checkpoint"; exit 1; }
    mr 2 train "$t/d/train" --threads 1 --resume auto --epochs 3 -o "$t/ra/m.cfnet" >"$t/rauto.log" 2>&1
    rc=$?
    expect rauto 0 "the run is complete" 1
    # an unreadable training image, met by one rank: its message, the job ended, no model
    mkdir -p "$t/bad"
    cp -r "$t/d/train/class00" "$t/d/train/class01" "$t/d/train/class02" "$t/bad/"
    echo junk >"$t/bad/class01/zz_broken.tif"
    mr 2 train "$t/bad" --epochs 2 --width 4 --threads 1 -q --val 0 --batch 7 \
        -o "$t/bad.cfnet" >"$t/bad.log" 2>&1
    rc=$?
    expect bad 1 "zz_broken.tif: not a TIFF or PNG file" 1
    expect bad 1 "of 2: could not load its share of step" 1
    # (its message says that --skip-bad, which works on several ranks, leaves it out)
    expect bad 1 "zz_broken.tif: not a TIFF or PNG file; give --skip-bad to leave out" 1
    [ ! -e "$t/bad.cfnet" ] || { echo "test_mpi: a failed run wrote a model"; exit 1; }
    # bad images in both ranks' shares of a step (14 images, 10 bad after the first good ones,
    # one batch): one report from rank 0 (--tag-output names each line's rank), each rank's
    # file and its "could not load" in rank order, status 1, no abort, no model (the ranks'
    # lines were shuffled together and the job aborted)
    mkdir -p "$t/tb/class00" "$t/tb/class01"
    for k in 0 1; do
        cp "$t/d/train/class0$k/0000.tif" "$t/d/train/class0$k/0001.tif" "$t/tb/class0$k/"
        for i in 1 2 3 4 5; do echo junk >"$t/tb/class0$k/z$i.tif"; done
    done
    timeout 60 mpirun --allow-run-as-root --oversubscribe --tag-output -np 2 "$tool" train \
        "$t/tb" --epochs 1 --width 4 --threads 1 -q --val 0 --batch 14 -o "$t/tb.cfnet" \
        >"$t/tb.log" 2>&1
    rc=$?
    expect tb 1 "MPI_ABORT" 0
    expect tb 1 "cfnet:" 4
    expect tb 1 "^\[1,0\]<stderr>:cfnet: error: .*/tb/class0[01]/z[1-5].tif: not a TIFF or PNG file" 2
    grep "cfnet:" "$t/tb.log" | sed -n '2p;4p' >"$t/tb.got"
    printf '%s\n' "[1,0]<stderr>:cfnet: error: rank 0 of 2: could not load its share of step 1 of epoch 1" \
        "[1,0]<stderr>:cfnet: error: rank 1 of 2: could not load its share of step 1 of epoch 1" \
        >"$t/tb.want"
    cmp "$t/tb.want" "$t/tb.got" || { cat "$t/tb.log"; echo "test_mpi: train: bad images on two ranks not said once, by rank 0, in order"; exit 1; }
    [ ! -e "$t/tb.cfnet" ] || { echo "test_mpi: a failed run wrote a model"; exit 1; }
    # the same with --skip-bad and without -q: rank 0's messages and progress lines each come
    # out whole, one tag per line (stderr is unbuffered: each character was a write of its own,
    # which --tag-output tagged one by one, "[1,0]<stderr>:t[1,0]<stderr>:raining ...")
    timeout 60 mpirun --allow-run-as-root --oversubscribe --tag-output -np 2 "$tool" train \
        "$t/tb" --epochs 1 --width 4 --threads 1 --val 0 --batch 14 --skip-bad \
        -o "$t/tbs.cfnet" >"$t/tbs.log" 2>&1
    rc=$?
    expect tbs 0 "<stderr>:.*<stderr>:" 0
    expect tbs 0 "^\[1,0\]<stderr>:training cfnet on 4 images of 2 classes" 1
    expect tbs 0 "^\[1,0\]<stderr>:MPI: [0-9]* all-reduce calls of .* on rank 0$" 1
    expect tbs 0 "^\[1,0\]<stderr>:cfnet: warning: skipped 10 unreadable or unsuitable images$" 1
    expect tbs 0 "^\[1,0\]<stderr>:cfnet: warning: .*/tb/class01/z5.tif: not a TIFF or PNG file (skipped)$" 1
    # the same image in the validation set (of 73 images: 64 on rank 0, 9 on rank 1; it is in
    # rank 0's share): said by rank 0 alone (--tag-output names each line's rank), status 1,
    # no abort (rank 0's MPI_Abort ended rank 1, which waited in the sum of the metrics)
    timeout 60 mpirun --allow-run-as-root --oversubscribe --tag-output -np 2 "$tool" train \
        "$t/bad" --epochs 2 --width 4 --threads 1 -q --val 0.8 --batch 6 \
        -o "$t/badv.cfnet" >"$t/badv.log" 2>&1
    rc=$?
    expect badv 1 "^\[1,0\]<stderr>:cfnet: error: .*zz_broken.tif: not a TIFF or PNG file" 1
    expect badv 1 "^\[1,0\]<stderr>:cfnet: error: rank 0 of 2: could not classify its share of the validation images in epoch 1$" 1
    expect badv 1 "^\[1,1\]<stderr>:" 0
    expect badv 1 "MPI_ABORT" 0
    [ ! -e "$t/badv.cfnet" ] || { echo "test_mpi: a failed run wrote a model"; exit 1; }
    # a lower ulimit -v on one node (here rank 1's): its OpenBLAS buffer is refused after the
    # start vote, on that rank only; its message, naming the rank, is said by rank 0
    # (--tag-output names each line's rank) and every rank ends with status 1 (rank 1 said it
    # itself and its MPI_Abort ended the job; 124 would be a hang). Needs OpenBLAS and a plain
    # build (the sanitizers reserve more address space than the limit).
    case "${CFNET_SANITIZE:-}:$build" in :*san*) plain=0 ;; :*) plain=1 ;; *) plain=0 ;; esac
    if [ "$plain" = 1 ] && ldd "$tool" | grep -q openblas; then
        printf '#!/bin/sh\nif [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then ulimit -v 120000; fi\nexec "$@"\n' \
            >"$t/lim1.sh"
        chmod +x "$t/lim1.sh"
        lim="rank 1 of 2: the ulimit -v limit of 117 MiB leaves less than 160 MiB for OpenBLAS"
        timeout 60 mpirun --allow-run-as-root --oversubscribe --tag-output -np 2 "$t/lim1.sh" \
            "$tool" train $b -o "$t/lim.cfnet" >"$t/lim.log" 2>&1
        rc=$?
        expect lim 1 "^\[1,0\]<stderr>:cfnet: error: $lim" 1
        expect lim 1 "^\[1,1\]<stderr>:" 0
        expect lim 1 "MPI_ABORT" 0
        [ ! -e "$t/lim.cfnet" ] || { echo "test_mpi: a failed run wrote a model"; exit 1; }
        timeout 60 mpirun --allow-run-as-root --oversubscribe -np 2 "$t/lim1.sh" "$tool" predict \
            "$c/m.cfnet" "$c/d/test" -o "$c/plim.csv" --threads 1 --batch 4 -q >"$t/plim.log" 2>&1
        rc=$?
        expect plim 1 "$lim" 1
        [ ! -e "$c/plim.csv" ] || { echo "test_mpi: a failed predict wrote its CSV"; exit 1; }
        echo "test_mpi: a ulimit -v on rank 1 alone ended train and predict with rank 1's message"
    else
        skip_env test_mpi "the ulimit -v on one rank" "not OpenBLAS, or a sanitizer build"
    fi
    # a step that fails on every rank alike (non-finite numbers reach every rank through the
    # sums): rank 0 says so once and the ranks end together (not one message per rank and an
    # MPI_Abort from each). Raw intensities times 1e30 overflow inside the first step on these
    # images; the plain run shows that they do on this machine.
    "$tool" synth "$t/nan" --classes 3 --per-class 10 --test-per-class 1 --size 32 -q
    n="$t/nan/train --epochs 2 --width 4 --threads 1 -q --optimizer sgd --lr 10 --batch 6 --scale 1e30 --rotate none"
    "$tool" train $n -o "$t/nan1.cfnet" >"$t/nan1.log" 2>&1
    rc=$?
    if [ $rc -eq 1 ] && grep -q "training: non-finite numbers" "$t/nan1.log"; then
        mr 2 train $n -o "$t/nan2.cfnet" >"$t/nan2.log" 2>&1
        rc=$?
        expect nan2 1 "training: non-finite numbers" 1
        expect nan2 1 "MPI_ABORT" 0
        [ ! -e "$t/nan2.cfnet" ] || { echo "test_mpi: a failed run wrote a model"; exit 1; }
    else
        skip_env test_mpi "the non-finite step" "the plain run did not fail in its step on this machine: $(head -1 "$t/nan1.log")"
    fi
    # long_run NAME [ARGS]: starts `cfnet train $b ARGS --epochs 100000 -o $t/NAME.cfnet` on 2
    # ranks in the background (job: mpirun's pid; $t/pid.RANK: each rank's pid, its log
    # $t/NAME.log) and returns once its first checkpoint is saved (or after 50 s)
    long_run() {
        name=$1; shift
        rm -f "$t/pid".* "$t/$name.cfnet" "$t/$name.cfnet".*
        PIDS="$t/pid" timeout 60 mpirun --allow-run-as-root --oversubscribe -x PIDS -np 2 \
            "$t/pids.sh" "$tool" train $b "$@" --epochs 100000 -o "$t/$name.cfnet" \
            >"$t/$name.log" 2>&1 &
        job=$!
        i=0
        while [ ! -s "$t/$name.cfnet.last.safetensors" ] && [ $i -lt 500 ]; do
            sleep 0.1; i=$((i + 1))
        done
    }
    # an interrupt on one rank stops every rank after the same step: rank 0 says so once, the
    # checkpoint holds the last whole epoch
    long_run int
    [ -s "$t/pid.1" ] && kill -INT "$(cat "$t/pid.1")"
    wait $job
    rc=$?
    expect int 130 "interrupted during epoch" 1
    "$tool" info "$t/int.cfnet.last.safetensors" >/dev/null
    # rank 1 killed (kill -9) mid-training: the job ends with a non-zero status, not a hang
    # (timeout's 124), and rank 0's last checkpoint loads
    long_run kill
    [ -s "$t/pid.1" ] && kill -KILL "$(cat "$t/pid.1")"
    wait $job
    rc=$?
    if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
        cat "$t/kill.log"; echo "test_mpi: rank 1 killed during train: status $rc"; exit 1
    fi
    "$tool" info "$t/kill.cfnet.last.safetensors" >/dev/null ||
        { echo "test_mpi: the checkpoint of the killed run does not load"; exit 1; }
    # rank 0's failures at the end of an epoch (its checks and saves, the log, the plot) end
    # every rank there, with rank 0's message once and status 1 on every rank (rank 0 ended the
    # job by MPI_Abort while rank 1 waited in the next step: Open MPI's banner, or its
    # ORTE_ERROR_LOG lines when the abort cut the banner off), and the checkpoint loads.
    # together NAME TEXT [MODEL]: the last run, logged in $t/NAME.log, did so with TEXT and
    # $t/MODEL.cfnet's checkpoint (MODEL: NAME) loads; rcs.sh records each rank's status in
    # $RCS.RANK, and every rank must have recorded 1 (norc: the run used no rcs.sh). A rank
    # ended by an abort, or one that exits without MPI_Finalize, records none: Open MPI ends
    # the job then. Not when a rank exits with status 1 after MPI_Finalize: by default mpirun
    # then ends the others too (SIGTERM, which rcs.sh ignores, and SIGKILL a second later),
    # and under load a rank behind the first one was killed before it recorded its status, so
    # that a run in which every rank ended with 1 looked like one that lost a rank's status;
    # these runs give mpirun orte_abort_on_non_zero_status 0 ($keep), so that every rank ends
    # by itself and records its status.
    printf '#!/bin/sh\ntrap "" TERM\n"$@"\nr=$?\necho $r >"$RCS.$OMPI_COMM_WORLD_RANK"\nexit $r\n' >"$t/rcs.sh"
    chmod +x "$t/rcs.sh"
    keep="--mca orte_abort_on_non_zero_status 0"
    # rc_of_ranks: such a run's status. mpirun's own is 0 once every rank ended by itself,
    # whatever their statuses, so then it is the highest status a rank recorded (mpirun's
    # status when it ended the job itself: an abort, a rank ended by a signal or without
    # MPI_Finalize, or timeout's 124)
    rc_of_ranks() { [ "$rc" != 0 ] || rc=$(cat "$t"/rc.* 2>/dev/null | sort -n | tail -1); rc=${rc:-0}; }
    together() {
        [ "${4:-}" = norc ] || rc_of_ranks
        expect "$1" 1 "$2" 1
        expect "$1" 1 "cfnet:" 1
        expect "$1" 1 "MPI_ABORT\|ORTE_ERROR_LOG" 0
        if [ "${4:-}" != norc ] && [ "$(cat "$t/rc.0" "$t/rc.1" 2>&1)" != "$(printf '1\n1')" ]; then
            cat "$t/$1.log"; echo "test_mpi: $1: not every rank ended with status 1"; exit 1
        fi
        "$tool" info "$t/${3:-$1}.cfnet.last.safetensors" >/dev/null ||
            { echo "test_mpi: $1: the checkpoint of the stopped run does not load"; exit 1; }
    }
    # the model replaced by another program between epochs (a copy that lands while rank 0
    # renames its own new model into place goes to the file that rename removes, which no run
    # can see: epochs take about 10 ms here, so the copy is repeated until the run stops),
    long_run rep
    n=0
    while kill -0 $job 2>/dev/null && [ $n -lt 100 ]; do
        cp "$t/plain.cfnet" "$t/rep.cfnet"
        sleep 0.2
        n=$((n + 1))
    done
    wait $job
    rc=$?
    together rep "rep.cfnet was replaced by another program during training" rep norc
    # a log that cannot be written (a full disk: /dev/full),
    rm -f "$t/rc".* "$t/full.cfnet".*
    RCS="$t/rc" timeout 60 mpirun $keep --allow-run-as-root --oversubscribe -x RCS -np 2 "$t/rcs.sh" \
        "$tool" train $b -o "$t/full.cfnet" --log /dev/full >"$t/full.log" 2>&1
    rc=$?
    together full "/dev/full: cannot write epoch 1: No space left on device"
    # the checkpoint of epoch 2 and the plot of epoch 1 not saved (rename made to fail by a
    # preloaded shim at rank 0's 5th and 3rd call: the model, the checkpoint and the plot are
    # renamed into place each epoch); a plain build only (as for the shim below)
    if [ "$plain" = 1 ] && command -v "${CC:-cc}" >/dev/null 2>&1; then
        cat >"$t/rshim.c" <<'EOF_RSHIM'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* on rank SHIM_RANK: rename fails with ENOSPC at call SHIM_AT (a disk that fills up); fclose
 * of a file whose name ends with SHIM_FCLOSE closes it, then fails with EIO (a write error
 * that a network file system reports at close) */
static int armed(void)
{
    const char *r = getenv("SHIM_RANK"), *me = getenv("OMPI_COMM_WORLD_RANK");
    return r && me && !strcmp(r, me);
}
int rename(const char *from, const char *to)
{
    static int calls;
    int (*real)(const char *, const char *);
    *(void **)&real = dlsym(RTLD_NEXT, "rename");
    const char *at = getenv("SHIM_AT");
    if (armed() && at && ++calls == atoi(at)) {
        errno = ENOSPC;
        return -1;
    }
    return real(from, to);
}
int fclose(FILE *f)
{
    int (*real)(FILE *);
    *(void **)&real = dlsym(RTLD_NEXT, "fclose");
    const char *end = getenv("SHIM_FCLOSE");
    char link[64], name[4096];
    ssize_t n = -1;
    const int fd = f && end && armed() ? fileno(f) : -1;
    if (fd >= 0) {
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        n = readlink(link, name, sizeof name);
    }
    const size_t el = end ? strlen(end) : 0;
    const int fail = n >= 0 && (size_t)n >= el && !memcmp(name + n - el, end, el);
    const int rc = real(f);
    if (fail) {
        errno = EIO;
        return EOF;
    }
    return rc;
}
EOF_RSHIM
        "${CC:-cc}" -shared -fPIC -o "$t/rshim.so" "$t/rshim.c" -ldl
        for at in 5 3; do
            rm -f "$t/rc".* "$t/ren$at.cfnet".*
            RCS="$t/rc" SHIM_RANK=0 SHIM_AT=$at LD_PRELOAD="$t/rshim.so" timeout 60 mpirun $keep \
                --allow-run-as-root --oversubscribe -x RCS -x SHIM_RANK -x SHIM_AT -x LD_PRELOAD \
                -np 2 "$t/rcs.sh" "$tool" train $b --val 0 -o "$t/ren$at.cfnet" \
                --plot "$t/ren$at.svg" >"$t/ren$at.log" 2>&1
            rc=$?
            want="ren5.cfnet.last.safetensors: cannot save"
            [ $at = 3 ] && want="ren3.svg: write failed: No space left on device"
            together ren$at "$want"
            "$tool" info "$t/ren$at.cfnet.last.safetensors" | grep -q '"epoch":1,' ||
                { echo "test_mpi: ren$at: the checkpoint does not hold epoch 1"; exit 1; }
        done
        # SIGINT on one rank only while rank 0 saves (a preloaded shim: rank 0's first fsync of
        # a .safetensors file first sends it to rank SIG_TO, its pid from pids.sh): after the
        # last epoch, every rank ends with 130 and rank 0 says once that the run is complete,
        # as one process does (tests/test_cli_hostile.sh); the ranks it reached ended 130 alone
        # and silent, rank 1's by MPI_Abort, and the job's status depended on which rank got it.
        # With a --log FIFO that no process reads, rank 0's signal in epoch 1 of 2 ends its wait
        # for a reader: every rank ends with 130 (rank 1 ended with 1).
        cat >"$t/sshim.c" <<'EOF_SSHIM'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int fsync(int fd)
{
    static int sent;
    int (*real)(int);
    *(void **)&real = dlsym(RTLD_NEXT, "fsync");
    const char *me = getenv("OMPI_COMM_WORLD_RANK"), *to = getenv("SIG_TO");
    const char *pids = getenv("PIDS");
    char link[64], name[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, name, sizeof name - 1);
    name[n > 0 ? n : 0] = '\0';
    if (!sent && me && to && pids && !strcmp(me, "0") && strstr(name, ".safetensors")) {
        sent = 1;
        char path[4096];
        long pid = 0;
        snprintf(path, sizeof path, "%s.%s", pids, to);
        FILE *f = fopen(path, "r");
        if (f && fscanf(f, "%ld", &pid) != 1) pid = 0;
        if (f) fclose(f);
        if (pid > 0) kill((pid_t)pid, SIGINT);
    }
    return real(fd);
}
EOF_SSHIM
        "${CC:-cc}" -shared -fPIC -o "$t/sshim.so" "$t/sshim.c" -ldl
        rm -f "$t/sig.fifo"
        mkfifo "$t/sig.fifo"
        for to in 1 0 fifo; do
            rm -f "$t/rc".* "$t/pid".* "$t/sig$to.cfnet".*
            if [ $to = fifo ]; then
                r=0 more="--log $t/sig.fifo" want="interrupted after epoch 1; .*sigfifo.cfnet.last.safetensors holds epoch 1"
            else
                r=$to more="--epochs 1" want="interrupted after the last epoch (1) was saved: the run is complete"
            fi
            # shellcheck disable=SC2086 # ($more: options and their values)
            SIG_TO=$r PIDS="$t/pid" RCS="$t/rc" LD_PRELOAD="$t/sshim.so" timeout 60 mpirun $keep \
                --allow-run-as-root --oversubscribe -x SIG_TO -x PIDS -x RCS -x LD_PRELOAD -np 2 \
                "$t/rcs.sh" "$t/pids.sh" "$tool" train $b --val 0 -o "$t/sig$to.cfnet" $more \
                >"$t/sig$to.log" 2>&1
            rc=$?
            rc_of_ranks
            expect sig$to 130 "$want" 1
            expect sig$to 130 "MPI_ABORT\|ORTE_ERROR_LOG" 0
            if [ "$(cat "$t/rc.0" "$t/rc.1" 2>&1)" != "$(printf '130\n130')" ]; then
                cat "$t/sig$to.log"; echo "test_mpi: sig$to: not every rank ended with status 130"
                exit 1
            fi
            "$tool" info "$t/sig$to.cfnet.last.safetensors" | grep -q '"epoch":1,' ||
                { echo "test_mpi: sig$to: the checkpoint does not hold epoch 1"; exit 1; }
        done
        rm -f "$t/sig.fifo"
        echo "test_mpi: SIGINT on one rank while rank 0 saved: every rank ended with 130, one message"
        # a library error in a training step on one rank alone (here out of memory: malloc made
        # to fail by a preloaded shim for the block of the step's sum buffer, its parameters + 1
        # floats and the library's 95 bytes of block header and alignment, made at the first
        # step of a process): the others' step ends too, at the same step, and every rank ends
        # with status 1 and that rank's message once from rank 0 (the rank ended the job by
        # MPI_Abort, its message cut into pieces by the others' lines); resumed from a
        # checkpoint of epoch 1, which still loads
        cat >"$t/mshim.c" <<'EOF_MSHIM'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
static uintptr_t exe_lo, exe_hi; /* the program's own code and data (not a library's) */
static int exe_range(struct dl_phdr_info *i, size_t sz, void *d)
{
    (void)sz;
    (void)d;
    for (int k = 0; k < i->dlpi_phnum; k++) {
        if (i->dlpi_phdr[k].p_type != PT_LOAD) continue;
        uintptr_t a = i->dlpi_addr + i->dlpi_phdr[k].p_vaddr, b = a + i->dlpi_phdr[k].p_memsz;
        if (!exe_lo || a < exe_lo) exe_lo = a;
        if (b > exe_hi) exe_hi = b;
    }
    return 1; /* the first is the program itself */
}
__attribute__((constructor)) static void find_exe(void) { dl_iterate_phdr(exe_range, NULL); }
/* malloc fails with ENOMEM for block SHIM_NTH (unset: the first) of SHIM_SIZE bytes on rank
 * SHIM_RANK; with SHIM_OWN set (not empty), of those that cfnet's own code asks for; with SHIM_CALLOC set,
 * (not empty), calloc's blocks of that size, not malloc's */
static int fail_here(size_t n, uintptr_t from, int by_calloc)
{
    static int armed = -1, nth = 1, own, use_calloc;
    static size_t size;
    if (armed < 0) {
        const char *r = getenv("SHIM_RANK"), *me = getenv("OMPI_COMM_WORLD_RANK");
        const char *sz = getenv("SHIM_SIZE"), *k = getenv("SHIM_NTH");
        armed = r && me && sz && !strcmp(r, me);
        if (armed) size = (size_t)strtoull(sz, NULL, 10);
        if (k) nth = atoi(k);
        const char *o = getenv("SHIM_OWN");
        own = o && *o;
        const char *c = getenv("SHIM_CALLOC");
        use_calloc = c && *c;
    }
    if (armed == 1 && by_calloc == use_calloc && n == size &&
        (!own || (from >= exe_lo && from < exe_hi)) && --nth == 0) {
        armed = 2;
        errno = ENOMEM;
        return 1;
    }
    return 0;
}
void *malloc(size_t n)
{
    if (fail_here(n, (uintptr_t)__builtin_return_address(0), 0)) return NULL;
    return __libc_malloc(n);
}
/* On rank SHIM_RANK, once its SHIM_DUP-th MPI_Comm_dup has returned, calloc fails with ENOMEM
 * for the next block that cfnet's own code asks for (not a library it loads: MPI's blocks
 * are left alone): whatever its size, the block that follows that MPI_Comm_dup in cfnet */
static int calloc_armed;
void *calloc(size_t n, size_t each)
{
    const uintptr_t from = (uintptr_t)__builtin_return_address(0);
    if (calloc_armed == 1 && from >= exe_lo && from < exe_hi) {
        calloc_armed = 2;
        errno = ENOMEM;
        return NULL;
    }
    if (fail_here(n * each, from, 1)) return NULL;
    return __libc_calloc(n, each);
}
int MPI_Comm_dup(void *comm, void **out)
{
    static int (*real)(void *, void **);
    static int left = -1;
    if (!real) real = (int (*)(void *, void **))dlsym(RTLD_NEXT, "MPI_Comm_dup");
    if (left < 0) {
        const char *r = getenv("SHIM_RANK"), *me = getenv("OMPI_COMM_WORLD_RANK");
        const char *k = getenv("SHIM_DUP");
        left = r && me && k && !strcmp(r, me) ? atoi(k) : 0;
    }
    int rc = real(comm, out);
    if (left > 0 && --left == 0 && !calloc_armed) calloc_armed = 1;
    return rc;
}
EOF_MSHIM
        "${CC:-cc}" -shared -fPIC -o "$t/mshim.so" "$t/mshim.c"
        "$tool" train $b --val 0 --epochs 1 -o "$t/oom.cfnet"
        np=$("$tool" info "$t/oom.cfnet" | awk '$1 == "parameters" { print $2 }')
        msz=$(stat -c %s "$t/oom.cfnet") # the model's bytes (for the attach's check below)
        cp "$t/oom.cfnet.last.safetensors" "$t/oom.ckpt"
        for r in 1 0; do
            cp "$t/oom.ckpt" "$t/oom.cfnet.last.safetensors"
            rm -f "$t/rc".*
            RCS="$t/rc" SHIM_RANK=$r SHIM_SIZE=$(((np + 1) * 4 + 95)) LD_PRELOAD="$t/mshim.so" \
                timeout 60 mpirun $keep --allow-run-as-root --oversubscribe -x RCS -x SHIM_RANK \
                -x SHIM_SIZE -x LD_PRELOAD -np 2 "$t/rcs.sh" "$tool" train "$t/d/train" \
                --threads 1 -q --resume "$t/oom.cfnet.last.safetensors" --epochs 2 \
                -o "$t/oom.cfnet" >"$t/oom$r.log" 2>&1
            rc=$?
            together oom$r "rank $r of 2: training (step 1 of epoch 2): out of memory: network_train_step: out of memory" oom
            cmp "$t/oom.ckpt" "$t/oom.cfnet.last.safetensors" ||
                { echo "test_mpi: oom$r: the checkpoint changed"; exit 1; }
        done
        # rank 1 unable to describe its network again when the sums are attached (its
        # model's bytes, one block as large as the model file, refused the second time: the
        # first is the check before): cfnet_mpi_attach fails on every rank alike, said once by
        # rank 0, status 1 on every rank (each rank said it and ended the job by MPI_Abort);
        # the checkpoint unchanged
        cp "$t/oom.ckpt" "$t/oom.cfnet.last.safetensors"
        rm -f "$t/rc".*
        RCS="$t/rc" SHIM_RANK=1 SHIM_NTH=2 SHIM_SIZE=$((msz + 95)) \
            LD_PRELOAD="$t/mshim.so" timeout 60 mpirun $keep --allow-run-as-root --oversubscribe \
            -x RCS -x SHIM_RANK -x SHIM_NTH -x SHIM_SIZE -x LD_PRELOAD -np 2 "$t/rcs.sh" "$tool" \
            train "$t/d/train" --threads 1 -q --resume "$t/oom.cfnet.last.safetensors" \
            --epochs 2 -o "$t/oom.cfnet" >"$t/attach.log" 2>&1
        rc=$?
        together attach "rank 1 has no network or cannot describe it (network_save_buffer: cannot allocate $msz bytes)" oom
        cmp "$t/oom.ckpt" "$t/oom.cfnet.last.safetensors" ||
            { echo "test_mpi: attach: the checkpoint changed"; exit 1; }
        # rank 1 without memory for libcfnet_mpi's group (the calloc that follows the process's
        # 2nd MPI_Comm_dup, cfnet_mpi_create's: the 1st is the start vote's; whatever the
        # group's size): every rank's cfnet_mpi_create fails alike after its MPI_Comm_dup,
        # said once by rank 0, status 1 on every rank (rank 1 failed before the MPI_Comm_dup
        # the others waited in, and ended the job by MPI_Abort); the checkpoint unchanged.
        cp "$t/oom.ckpt" "$t/oom.cfnet.last.safetensors"
        rm -f "$t/rc".*
        RCS="$t/rc" SHIM_RANK=1 SHIM_DUP=2 \
            LD_PRELOAD="$t/mshim.so" timeout 60 mpirun $keep --allow-run-as-root --oversubscribe \
            -x RCS -x SHIM_RANK -x SHIM_DUP -x LD_PRELOAD -np 2 \
            "$t/rcs.sh" "$tool" train "$t/d/train" --threads 1 -q --resume \
            "$t/oom.cfnet.last.safetensors" --epochs 2 -o "$t/oom.cfnet" >"$t/group.log" 2>&1
        rc=$?
        together group "^cfnet: error: out of memory: cfnet_mpi_create: rank 1 of 2 is out of memory for the group$" oom
        cmp "$t/oom.ckpt" "$t/oom.cfnet.last.safetensors" ||
            { echo "test_mpi: group: the checkpoint changed"; exit 1; }
        # ranks 1 and 2 of 3 without it (shimall.sh arms the shim on every rank but 0): the
        # lowest named, "and other ranks" (cfnet_mpi_create's one all-reduce of the lowest and
        # the highest such rank), once
        printf '#!/bin/sh\nSHIM_RANK=$OMPI_COMM_WORLD_RANK\n[ "$SHIM_RANK" = 0 ] && SHIM_RANK=none\nexport SHIM_RANK\nexec "$@"\n' \
            >"$t/shimall.sh"
        chmod +x "$t/shimall.sh"
        SHIM_DUP=2 LD_PRELOAD="$t/mshim.so" timeout 60 mpirun --allow-run-as-root \
            --oversubscribe -x SHIM_DUP -x LD_PRELOAD -np 3 "$t/shimall.sh" "$tool" train \
            "$t/d/train" --threads 1 -q --resume "$t/oom.cfnet.last.safetensors" --epochs 2 \
            -o "$t/oom.cfnet" >"$t/group3.log" 2>&1
        rc=$?
        expect group3 1 "^cfnet: error: out of memory: cfnet_mpi_create: rank 1 of 3 (and other ranks) is out of memory for the group$" 1
        expect group3 1 "cfnet:" 1
        # rank 1 without memory for the epochs' order of the 18 training images (144 bytes, the
        # first block of that size that cfnet's own code asks for), then for its validation
        # buffer in epoch 2 (8 images of 2 x 32 x 32 floats): said once by rank 0, status 1 on
        # every rank (it said a bare "out of memory" and exited without MPI_Finalize); no model,
        # and in epoch 2 epoch 1's checkpoint loads
        for v in order:144:1:"out of memory for the order of 18 training images" \
            val:65536:2:"out of memory for validating 8 images at a time (epoch 2)"; do
            name=${v%%:*} rest=${v#*:}
            sz=${rest%%:*} rest=${rest#*:}
            nth=${rest%%:*} want=${rest#*:}
            rm -f "$t/rc".* "$t/$name.cfnet"*
            RCS="$t/rc" SHIM_RANK=1 SHIM_OWN=1 SHIM_SIZE=$sz SHIM_NTH=$nth \
                LD_PRELOAD="$t/mshim.so" timeout 60 mpirun $keep --allow-run-as-root --oversubscribe \
                -x RCS -x SHIM_RANK -x SHIM_OWN -x SHIM_SIZE -x SHIM_NTH -x LD_PRELOAD -np 2 \
                "$t/rcs.sh" "$tool" train $b -o "$t/$name.cfnet" >"$t/$name.log" 2>&1
            rc=$?
            rc_of_ranks
            expect $name 1 "^cfnet: error: rank 1 of 2: $want$" 1
            expect $name 1 "cfnet:" 1
            expect $name 1 "MPI_ABORT\|ORTE_ERROR_LOG" 0
            if [ "$(cat "$t/rc.0" "$t/rc.1" 2>&1)" != "$(printf '1\n1')" ]; then
                cat "$t/$name.log"; echo "test_mpi: $name: not every rank ended with status 1"; exit 1
            fi
            [ $name = val ] || [ ! -e "$t/$name.cfnet" ] ||
                { echo "test_mpi: $name: a failed run wrote a model"; exit 1; }
        done
        "$tool" info "$t/val.cfnet.last.safetensors" >/dev/null ||
            { echo "test_mpi: val: the checkpoint of epoch 1 does not load"; exit 1; }
        # rank 1 without memory before the start vote (blocks of the image list's size, 8 bytes
        # per image, that cfnet's own code asks for: xmalloc's), in the --skip-bad check (its
        # lists, made before its vote now; its block of 64 images of 2 x 32 x 32 floats, after
        # rank 0's probe) and for an epoch's metrics (calloc's 3 x 3 counts): a failure of its
        # set-up held and said by the start vote, or said in the meeting that follows; every
        # rank ends with status 1, the message once, no abort (it said a bare "out of memory"
        # straight to fd 2 and exited without MPI_Finalize, mpirun ending rank 0). Without
        # mpirun the message is the plain one.
        nimg=$(find "$t/d/train" -type f | wc -l)
        for v in list:$((nimg * 8)):1::"the list of images in DATA" \
            names:$((nimg * 8)):2::"the class names" \
            split:$((nimg * 8)):4::"the split's lists of images" \
            sblists:$((nimg * 8)):4:--skip-bad:"the --skip-bad check's lists of images" \
            sbbuf:$((64 * 2 * 32 * 32 * 4)):1:--skip-bad:"the --skip-bad check of 64 images of 2 x 32 x 32 at a time" \
            metrics:72:2:calloc:"the validation metrics of 3 classes (epoch 2)"; do
            name=${v%%:*} rest=${v#*:}
            sz=${rest%%:*} rest=${rest#*:}
            nth=${rest%%:*} rest=${rest#*:}
            opt=${rest%%:*} want=${rest#*:}
            rm -f "$t/rc".* "$t/early.cfnet"*
            cal=
            [ "$opt" = calloc ] && cal=1 opt=
            RCS="$t/rc" SHIM_RANK=1 SHIM_OWN=1 SHIM_SIZE=$sz SHIM_NTH=$nth SHIM_CALLOC=$cal \
                LD_PRELOAD="$t/mshim.so" timeout 60 mpirun $keep --allow-run-as-root --oversubscribe \
                -x RCS -x SHIM_RANK -x SHIM_OWN -x SHIM_SIZE -x SHIM_NTH -x SHIM_CALLOC \
                -x LD_PRELOAD -np 2 "$t/rcs.sh" "$tool" train $b $opt -o "$t/early.cfnet" \
                >"$t/early.log" 2>&1
            rc=$?
            rc_of_ranks
            expect early 1 "^cfnet: error: rank 1 of 2: out of memory for $want$" 1
            expect early 1 "cfnet: error:" 1
            expect early 1 "MPI_ABORT\|ORTE_ERROR_LOG" 0
            if [ "$(cat "$t/rc.0" "$t/rc.1" 2>&1)" != "$(printf '1\n1')" ]; then
                cat "$t/early.log"; echo "test_mpi: $name: not every rank ended with status 1"
                exit 1
            fi
            [ $name = metrics ] || [ ! -e "$t/early.cfnet" ] ||
                { echo "test_mpi: $name: a failed run wrote a model"; exit 1; }
        done
        # eval likewise (no collective before its start vote): rank 1 without memory for its
        # list of images (the first such block) fails its set-up, said once by the vote, named
        # (it said "(setting up the command)": eval did not name its list)
        rm -f "$t/rc".*
        RCS="$t/rc" SHIM_RANK=1 SHIM_OWN=1 SHIM_SIZE=$((nimg * 8)) LD_PRELOAD="$t/mshim.so" \
            timeout 60 mpirun $keep --allow-run-as-root --oversubscribe -x RCS -x SHIM_RANK -x SHIM_OWN \
            -x SHIM_SIZE -x LD_PRELOAD -np 2 "$t/rcs.sh" "$tool" eval "$t/oom.cfnet" "$t/d/train" \
            >"$t/evoom.log" 2>&1
        rc=$?
        rc_of_ranks
        expect evoom 1 "^cfnet: error: rank 1 of 2: out of memory for the list of images in DATA$" 1
        expect evoom 1 "cfnet: error:" 1
        expect evoom 1 "MPI_ABORT\|ORTE_ERROR_LOG" 0
        [ "$(cat "$t/rc.0" "$t/rc.1" 2>&1)" = "$(printf '1\n1')" ] ||
            { cat "$t/evoom.log"; echo "test_mpi: evoom: not every rank ended with status 1"; exit 1; }
        # oomrun NAME NP WRAPPER ARGS...: the last run, with the shim's variables, into NAME.log
        oomrun() {
            name=$1 np=$2 wrap=$3
            shift 3
            rm -f "$t/rc".*
            k=
            [ "$wrap" = "$t/rcs.sh" ] && k=$keep
            RCS="$t/rc" LD_PRELOAD="$t/mshim.so" timeout 60 mpirun $k --allow-run-as-root \
                --oversubscribe -x RCS -x SHIM_RANK -x SHIM_OWN -x SHIM_SIZE -x SHIM_NTH \
                -x SHIM_CALLOC -x LD_PRELOAD -np "$np" "$wrap" "$tool" "$@" >"$t/$name.log" 2>&1
            rc=$?
        }
        # agreed NAME NP TEXT: TEXT is the one error line, every rank ended with status 1, no abort
        agreed() {
            rc_of_ranks
            expect "$1" 1 "^cfnet: error: $3\$" 1
            expect "$1" 1 "cfnet: error:" 1
            expect "$1" 1 "MPI_ABORT\|ORTE_ERROR_LOG" 0
            want=1
            [ "$2" = 3 ] && want="1 1 1"
            [ "$2" = 2 ] && want="1 1"
            [ "$(cat "$t"/rc.* 2>&1 | tr '\n' ' ' | sed 's/ $//')" = "$want" ] ||
                { cat "$t/$1.log"; echo "test_mpi: $1: not every rank ended with status 1"; exit 1; }
        }
        export SHIM_RANK SHIM_OWN SHIM_SIZE SHIM_NTH SHIM_CALLOC
        # and inside the --skip-bad check's collectives (between its tentative vote and the
        # start vote): rank 1 without memory for the list of its block's warnings (calloc's,
        # 8 bytes for each image of its half) meets rank 0 at the check-in of the check's next
        # sum, and every rank ends there (it said a bare "out of memory" and exited without
        # MPI_Finalize, mpirun ending rank 0); rank 0's --log, made before, is removed again
        rm -f "$t/early.cfnet"* "$t/inmeet.csv"
        SHIM_RANK=1 SHIM_OWN=1 SHIM_SIZE=$(((nimg - nimg / 2) * 8)) SHIM_NTH=1 SHIM_CALLOC=1 \
            oomrun inmeet 2 "$t/rcs.sh" train $b --skip-bad -o "$t/early.cfnet" --log "$t/inmeet.csv"
        agreed inmeet 2 "rank 1 of 2: out of memory for the list of --skip-bad warnings"
        [ ! -e "$t/early.cfnet" ] || { echo "test_mpi: inmeet: a failed run wrote a model"; exit 1; }
        [ ! -e "$t/inmeet.csv" ] || { echo "test_mpi: inmeet: rank 0's log was left behind"; exit 1; }
        # rank 0 itself out of memory before the vote (the split's lists), after it made the
        # --log: said by the vote, and the log removed (it exited without its cleanup)
        rm -f "$t/early.cfnet"* "$t/early0.csv"
        SHIM_RANK=0 SHIM_OWN=1 SHIM_SIZE=$((nimg * 8)) SHIM_NTH=4 SHIM_CALLOC= \
            oomrun early0 2 "$t/rcs.sh" train $b -o "$t/early.cfnet" --log "$t/early0.csv"
        agreed early0 2 "rank 0 of 2: out of memory for the split's lists of images"
        [ ! -e "$t/early0.csv" ] || { echo "test_mpi: early0: rank 0's log was left behind"; exit 1; }
        # ranks 1 and 2 of 3 out of memory at once (the class names; shimall.sh arms every rank
        # but 0): one message, the lowest's (each said its own)
        rm -f "$t/early.cfnet"*
        SHIM_RANK= SHIM_OWN=1 SHIM_SIZE=$((nimg * 8)) SHIM_NTH=2 SHIM_CALLOC= \
            oomrun both 3 "$t/shimall.sh" train $b -o "$t/early.cfnet"
        expect both 1 "^cfnet: error: rank 1 of 3: out of memory for the class names$" 1
        expect both 1 "cfnet: error:" 1
        expect both 1 "MPI_ABORT\|ORTE_ERROR_LOG" 0
        # rank 1 without memory for the --resume comparison's copy of its checkpoint (a block
        # of the checkpoint's bytes and the library's 95 of header): one message, every rank
        # ends (it said its own cause and rank 0 that the ranks resume from different
        # checkpoints); the checkpoint unchanged
        csz=$(stat -c %s "$t/oom.ckpt")
        cp "$t/oom.ckpt" "$t/oom.cfnet.last.safetensors"
        SHIM_RANK=1 SHIM_OWN= SHIM_SIZE=$((csz + 95)) SHIM_NTH=2 SHIM_CALLOC= \
            oomrun resoom 2 "$t/rcs.sh" train "$t/d/train" --threads 1 -q --resume \
            "$t/oom.cfnet.last.safetensors" --epochs 2 -o "$t/oom.cfnet"
        agreed resoom 2 "rank 1 of 2: out of memory for comparing the checkpoint's contents with the other ranks'"
        cmp "$t/oom.ckpt" "$t/oom.cfnet.last.safetensors" ||
            { echo "test_mpi: resoom: the checkpoint changed"; exit 1; }
        # after the start vote: eval's buffers for its chunk of 512 images (2 x 32 x 32 floats
        # each), on rank 1, then on rank 0: the other rank meets it at its next collective's
        # check-in, every rank ends with status 1 and the message once, and rank 0's --out
        # folder is not left behind (a bare exit: mpirun ended rank 0, whose files stayed)
        for r in 1 0; do
            rm -rf "$t/evo"
            SHIM_RANK=$r SHIM_OWN=1 SHIM_SIZE=$((512 * 2 * 32 * 32 * 4)) SHIM_NTH=1 SHIM_CALLOC= \
                oomrun evo$r 2 "$t/rcs.sh" eval "$t/oom.cfnet" "$t/d/train" --threads 1 \
                --out "$t/evo/report"
            agreed evo$r 2 "rank $r of 2: out of memory for classifying 512 images of 2 x 32 x 32 at a time"
            [ ! -e "$t/evo" ] || { ls -R "$t/evo"; echo "test_mpi: evo$r: --out's folder was left behind"; exit 1; }
        done
        # rank 0 out of memory part-way through its commit of eval --out's files, once they
        # are renamed into place (the folder's name, which it takes after the renames to sync
        # the folder for each file: a block of that name's length, a length no other block of
        # cfnet's own code has here; the 15th: 13 before the commit, one of them the list of
        # the folders made for --out that a signal removes, 1 for the first file):
        # every rank ends with status 1 and the message once, and the files it put there go
        # with the folder it made (rmdir refused the folder that held them); into an existing
        # folder, which gets back its earlier report (the files the commit had replaced, kept
        # under a second name until it ends) and what else it held, and no more (there the
        # 8th: metrics.json and predictions.csv, which exist, go by their resolved name, not
        # this relative one, so that 6 come before the commit and 1 for confusion.csv)
        long=report-of-a-failed-commit-$(printf "%0144d" 0)
        # evc_as_was NAME: the existing folder $dir holds what the run found there
        evc_as_was() {
            if [ "$(ls -A "$dir" | tr '\n' ' ')" != "metrics.json notes.txt predictions.csv " ] ||
                [ "$(cat "$dir/notes.txt" "$dir/metrics.json" "$dir/predictions.csv" | tr '\n' ' ')" != "mine old old " ]; then
                ls -lA "$dir"; echo "test_mpi: $1: the existing --out folder changed"; exit 1
            fi
        }
        for pre in new old; do
            rm -rf "$t/evc"
            dir="$t/evc/$long"
            if [ $pre = old ]; then
                mkdir -p "$dir"
                echo mine >"$dir/notes.txt"
                echo old >"$dir/metrics.json"
                echo old >"$dir/predictions.csv"
            fi
            nth=15
            [ $pre = old ] && nth=8
            SHIM_RANK=0 SHIM_OWN=1 SHIM_SIZE=$((${#dir} + 1)) SHIM_NTH=$nth SHIM_CALLOC= \
                oomrun evc$pre 2 "$t/rcs.sh" eval "$t/oom.cfnet" "$t/d/train" --threads 1 \
                --out "$dir"
            agreed evc$pre 2 "rank 0 of 2: out of memory for writing the files of --out"
            if [ $pre = new ] && [ -e "$t/evc" ]; then
                ls -R "$t/evc"; echo "test_mpi: evcnew: --out's folder was left behind"; exit 1
            fi
            [ $pre = new ] || evc_as_was evcold
        done
        # rank 1 failing at the final check-in, after rank 0's commit of eval --out's files (a
        # PMPI shim makes rank 1's final check-in report a failure of status 1, as a rank out
        # of memory while it cleans up reports it): every rank ends with status 1, and the
        # commit, held open until that check-in, is undone: a folder made for the report is
        # removed, an existing folder holds its earlier report again and what else it held;
        # without the shim the run keeps the new report and no second name of an earlier file
        cat >"$t/final.c" <<'EOF_FINAL'
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* on rank FINAL_RANK: its final check-in (an all-reduce of 5 ints whose 4th, "final", is set)
 * says that this rank failed, and the broadcast of the failed rank's status that follows
 * gives status 1 */
static int failing;
int MPI_Allreduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op o, MPI_Comm c)
{
    const char *at = getenv("FINAL_RANK"), *me = getenv("OMPI_COMM_WORLD_RANK");
    if (at && me && !strcmp(at, me) && n == 5 && t == MPI_INT && s != MPI_IN_PLACE &&
        ((const int *)s)[3] == 1) {
        int mine[5], rank, size;
        memcpy(mine, s, sizeof mine);
        PMPI_Comm_rank(c, &rank);
        PMPI_Comm_size(c, &size);
        mine[0] = size - rank;
        mine[1] = rank + 1;
        failing = 1;
        return PMPI_Allreduce(mine, r, n, t, o, c);
    }
    return PMPI_Allreduce(s, r, n, t, o, c);
}
int MPI_Bcast(void *b, int n, MPI_Datatype t, int root, MPI_Comm c)
{
    if (failing == 1 && n == 2 && t == MPI_INT64_T) {
        failing = 2;
        ((int64_t *)b)[0] = 1;
    }
    return PMPI_Bcast(b, n, t, root, c);
}
EOF_FINAL
        "${MPICC:-mpicc}" -shared -fPIC -o "$t/final.so" "$t/final.c"
        for pre in new old ok; do
            rm -rf "$t/evc" "$t/rc".*
            dir="$t/evc/$long"
            if [ $pre != new ]; then
                mkdir -p "$dir"
                echo mine >"$dir/notes.txt"
                echo old >"$dir/metrics.json"
                echo old >"$dir/predictions.csv"
            fi
            at=1
            [ $pre = ok ] && at=
            RCS="$t/rc" FINAL_RANK=$at LD_PRELOAD="$t/final.so" timeout 60 mpirun $keep \
                --allow-run-as-root --oversubscribe -x RCS -x FINAL_RANK -x LD_PRELOAD -np 2 \
                "$t/rcs.sh" "$tool" eval "$t/oom.cfnet" "$t/d/train" --threads 1 -q \
                --out "$dir" >"$t/evfin$pre.log" 2>&1
            rc=$?
            rc_of_ranks
            want="1 1"
            [ $pre = ok ] && want="0 0"
            [ "$(cat "$t"/rc.* | tr '\n' ' ' | sed 's/ $//')" = "$want" ] ||
                { cat "$t/evfin$pre.log"; echo "test_mpi: evfin$pre: the ranks' status is not $want"; exit 1; }
            if [ $pre = new ] && [ -e "$t/evc" ]; then
                ls -R "$t/evc"; echo "test_mpi: evfinnew: --out's folder was left behind"; exit 1
            fi
            [ $pre != old ] || evc_as_was evfinold
            if [ $pre = ok ] && { [ "$(ls -A "$dir" | tr '\n' ' ')" != "confusion.csv confusion.svg metrics.json notes.txt predictions.csv " ] ||
                ! grep -q '"accuracy"' "$dir/metrics.json"; }; then
                ls -lA "$dir"; echo "test_mpi: evfinok: the folder does not hold the new report alone"; exit 1
            fi
        done
        unset SHIM_RANK SHIM_OWN SHIM_SIZE SHIM_NTH SHIM_CALLOC
        OMPI_COMM_WORLD_RANK=1 SHIM_RANK=1 SHIM_OWN=1 SHIM_SIZE=$((nimg * 8)) \
            LD_PRELOAD="$t/mshim.so" "$tool" train $b -o "$t/early1.cfnet" >"$t/early1.log" 2>&1
        rc=$?
        expect early1 1 "^cfnet: error: out of memory$" 1
        expect early1 1 "" 1
        # rank 1's share of a step refused (CFNET_TEST_SET_BATCH_RANK asks libcfnet_mpi for the
        # share of a global batch of -1): the others' step ends too, said once by rank 0,
        # status 1 on every rank (rank 1 said it and ended the job by MPI_Abort)
        cp "$t/oom.ckpt" "$t/oom.cfnet.last.safetensors"
        rm -f "$t/rc".*
        RCS="$t/rc" CFNET_TEST_SET_BATCH_RANK=1 timeout 60 mpirun $keep --allow-run-as-root \
            --oversubscribe -x RCS -x CFNET_TEST_SET_BATCH_RANK -np 2 "$t/rcs.sh" "$tool" train \
            "$t/d/train" --threads 1 -q --resume "$t/oom.cfnet.last.safetensors" --epochs 2 \
            -o "$t/oom.cfnet" >"$t/share.log" 2>&1
        rc=$?
        together share "rank 1 of 2: invalid argument: cfnet_mpi_share: a global batch of -1" oom
        cmp "$t/oom.ckpt" "$t/oom.cfnet.last.safetensors" ||
            { echo "test_mpi: share: the checkpoint changed"; exit 1; }
        # (a value that is not a rank number in digits arms nothing: atoi made it rank 0's)
        CFNET_TEST_SET_BATCH_RANK=x timeout 60 mpirun --allow-run-as-root --oversubscribe \
            -x CFNET_TEST_SET_BATCH_RANK -np 2 "$tool" train $b --val 0 -o "$t/sharex.cfnet" \
            >"$t/sharex.log" 2>&1
        rc=$?
        expect sharex 0 "cfnet:" 0
        # rank 0's log that fails when it is closed after the last epoch (fclose made to fail
        # by the rename shim): said once by rank 0, status 1 on every rank (rank 0 ended the
        # job by MPI_Abort), both epochs in the log and the checkpoint loads
        rm -f "$t/rc".* "$t/fc.cfnet".*
        RCS="$t/rc" SHIM_RANK=0 SHIM_FCLOSE=/fclose.csv LD_PRELOAD="$t/rshim.so" timeout 60 \
            mpirun $keep --allow-run-as-root --oversubscribe -x RCS -x SHIM_RANK -x SHIM_FCLOSE \
            -x LD_PRELOAD -np 2 "$t/rcs.sh" "$tool" train $b --val 0 -o "$t/fc.cfnet" \
            --log "$t/fclose.csv" >"$t/fc.log" 2>&1
        rc=$?
        together fc "fclose.csv: write failed: Input/output error"
        [ "$(cut -d, -f1 "$t/fclose.csv" | tr '\n' ' ')" = "epoch 1 2 " ] ||
            { cat "$t/fclose.csv"; echo "test_mpi: fc: the log lost an epoch"; exit 1; }
        # the training state not stored at the end of epoch 2 (out of memory for its copy: the
        # state of a run that did the same, plus the library's block header), on rank 1, then
        # on rank 0: said once by rank 0, status 1 on every rank; the checkpoint loads (rank 0
        # saved epoch 2 when rank 1 failed, kept epoch 1 when it failed itself)
        cp "$t/oom.ckpt" "$t/meta.cfnet.last.safetensors"
        mr 2 train "$t/d/train" --threads 1 -q --resume "$t/meta.cfnet.last.safetensors" \
            --epochs 2 -o "$t/meta.cfnet"
        slen=$("$tool" info "$t/meta.cfnet.last.safetensors" | sed -n 's/^  train.state = //p' |
            tr -d '\n' | wc -c)
        for r in 0 1; do
            cp "$t/oom.ckpt" "$t/oom.cfnet.last.safetensors"
            rm -f "$t/rc".*
            RCS="$t/rc" SHIM_RANK=$r SHIM_SIZE=$((slen + 1 + 95)) LD_PRELOAD="$t/mshim.so" \
                timeout 60 mpirun $keep --allow-run-as-root --oversubscribe -x RCS -x SHIM_RANK \
                -x SHIM_SIZE -x LD_PRELOAD -np 2 "$t/rcs.sh" "$tool" train "$t/d/train" \
                --threads 1 -q --resume "$t/oom.cfnet.last.safetensors" --epochs 2 \
                -o "$t/oom.cfnet" >"$t/meta$r.log" 2>&1
            rc=$?
            together meta$r "rank $r of 2: storing the training state: out of memory" oom
            [ $r = 1 ] || cmp "$t/oom.ckpt" "$t/oom.cfnet.last.safetensors" ||
                { echo "test_mpi: meta0: the checkpoint changed"; exit 1; }
        done
        # rank 1 without memory for its chunk's images (a batch of 6 images of 2 x 32 x 32
        # floats): said once by rank 0, status 1 on every rank (rank 1 said "out of memory"
        # and exited without MPI_Finalize, mpirun ending rank 0); the checkpoint unchanged
        cp "$t/oom.ckpt" "$t/oom.cfnet.last.safetensors"
        rm -f "$t/rc".*
        RCS="$t/rc" SHIM_RANK=1 SHIM_SIZE=$((6 * 2 * 32 * 32 * 4)) LD_PRELOAD="$t/mshim.so" \
            timeout 60 mpirun $keep --allow-run-as-root --oversubscribe -x RCS -x SHIM_RANK \
            -x SHIM_SIZE -x LD_PRELOAD -np 2 "$t/rcs.sh" "$tool" train "$t/d/train" \
            --threads 1 -q --resume "$t/oom.cfnet.last.safetensors" --epochs 2 \
            -o "$t/oom.cfnet" >"$t/chunk.log" 2>&1
        rc=$?
        together chunk "rank 1 of 2: out of memory for a chunk of 6 images" oom
        [ -e "$t/rc.0" ] || { cat "$t/chunk.log"; echo "test_mpi: chunk: rank 0 was ended"; exit 1; }
        cmp "$t/oom.ckpt" "$t/oom.cfnet.last.safetensors" ||
            { echo "test_mpi: chunk: the checkpoint changed"; exit 1; }
    fi
    set -e
    echo "test_mpi: settings that differ between ranks, a missing output folder, a bad image and" \
        "an interrupt on one rank each ended the job with one message; rank 1 killed ended it" \
        "with status $rc"
    set +e
    # --skip-bad on several ranks: rank 0 reads up to the first readable image, each rank checks
    # a contiguous block of the rest and the verdicts are summed, so every rank leaves out what
    # one process leaves out. The bad images: the first one (rank 0's probe), one in rank 0's
    # block, one of another size in the middle (rank 0's of 2, rank 1's of 3) and one at the
    # end (the last rank's). Weights within 1e-5 of the 1-rank run, the same validation
    # columns, and the warnings of the 1-rank run: each file once, in input order, and the
    # count once.
    sb="$t/skipbad"
    mkdir -p "$sb"
    cp -r "$t/d/train/class00" "$t/d/train/class01" "$t/d/train/class02" "$sb/"
    echo junk >"$sb/class00/00-first.tif"
    echo junk >"$sb/class00/0005_bad.tif"
    "$tool" synth "$t/s24" --classes 2 --per-class 1 --test-per-class 1 --size 24 -q
    cp "$t/s24/train/class01/0000.tif" "$sb/class01/0010_small.tif"
    echo junk >"$sb/class02/zz_bad.tif"
    k="$sb --epochs 2 --width 4 --threads 1 -q --optimizer sgd --lr 0.01 --val 0.8 --batch 7 --skip-bad"
    for np in 1 2 3; do
        mr $np train $k -o "$t/sb$np.cfnet" --log "$t/sb$np.csv" >"$t/sb$np.log" 2>&1
        rc=$?
        expect sb$np 0 "(skipped)" 4
        expect sb$np 0 "skipped 4 unreadable or unsuitable images" 1
        grep "warning:" "$t/sb$np.log" >"$t/sb$np.warn" || true
        cut -d, -f5,6 "$t/sb$np.csv" >"$t/sb$np.val"
    done
    for np in 2 3; do
        cmp "$t/sb1.warn" "$t/sb$np.warn" ||
            { cat "$t/sb$np.log"; echo "test_mpi: --skip-bad's warnings on $np ranks differ"; exit 1; }
        cmp "$t/sb1.val" "$t/sb$np.val" ||
            { echo "test_mpi: --skip-bad's validation on $np ranks differs"; exit 1; }
        "$prog" compare-models "$t/sb$np.cfnet.last.safetensors" "$t/sb1.cfnet.last.safetensors" 1e-5 ||
            exit 1
        "$prog" compare-models "$t/sb$np.cfnet" "$t/sb1.cfnet" 1e-5 || exit 1
    done
    grep -q "00-first.tif: not a TIFF.*0005_bad.tif.*0010_small.tif: image is 24x24.*zz_bad.tif" \
        "$t/sb1.warn" -z || { cat "$t/sb1.warn"; echo "test_mpi: --skip-bad's warnings not in input order"; exit 1; }
    # rank 1 out of memory for its warning of zz_bad.tif (in its block: the block of its text
    # and NUL that cfnet's own code asks for, in a loading thread): said by the main thread at
    # the check-in of the check's next sum, every rank ends with status 1, the message once
    # (xasprintf ended the process from the thread, without MPI_Finalize), no --log left
    if [ "$plain" = 1 ] && [ -e "$t/mshim.so" ]; then
        wtext=$(sed -n 's/^cfnet: warning: \(.*zz_bad\.tif.*\) (skipped)$/\1/p' "$t/sb1.log")
        wlen=$(printf '%s' "$wtext" | wc -c)
        rm -f "$t/rc".* "$t/sbw.cfnet"* "$t/sbw.csv"
        RCS="$t/rc" SHIM_RANK=1 SHIM_OWN=1 SHIM_SIZE=$((wlen + 1)) LD_PRELOAD="$t/mshim.so" \
            timeout 60 mpirun $keep --allow-run-as-root --oversubscribe -x RCS -x SHIM_RANK -x SHIM_OWN \
            -x SHIM_SIZE -x LD_PRELOAD -np 2 "$t/rcs.sh" "$tool" train $k -o "$t/sbw.cfnet" \
            --log "$t/sbw.csv" >"$t/sbw.log" 2>&1
        rc=$?
        rc_of_ranks
        expect sbw 1 "^cfnet: error: rank 1 of 2: out of memory for a --skip-bad warning$" 1
        expect sbw 1 "cfnet: error:" 1
        expect sbw 1 "MPI_ABORT\|ORTE_ERROR_LOG" 0
        [ "$(cat "$t/rc.0" "$t/rc.1" 2>&1)" = "$(printf '1\n1')" ] ||
            { cat "$t/sbw.log"; echo "test_mpi: sbw: not every rank ended with status 1"; exit 1; }
        [ ! -e "$t/sbw.csv" ] && [ ! -e "$t/sbw.cfnet" ] ||
            { echo "test_mpi: sbw: the failed run left its log or a model"; exit 1; }
    fi
    # a file read at the check and gone afterwards (removed mid-run) still ends the job
    # (not trained on as zeros): the run is started long, the file removed after epoch 1
    rm -rf "$t/gone" "$t/gone.cfnet".*
    cp -r "$t/d/train" "$t/gone"
    echo junk >"$t/gone/class00/zz_bad.tif"
    mr 2 train "$t/gone" --epochs 100000 --width 4 --threads 1 -q --val 0 --batch 6 --skip-bad \
        -o "$t/gone.cfnet" >"$t/gone.log" 2>&1 &
    job=$!
    i=0
    while [ ! -s "$t/gone.cfnet.last.safetensors" ] && [ $i -lt 500 ]; do
        sleep 0.1; i=$((i + 1))
    done
    rm -f "$t/gone/class01/0003.tif"
    wait $job
    rc=$?
    expect gone 1 "class01/0003.tif: cannot open" 1
    expect gone 1 "could not load its share of step" 1
    expect gone 1 "give --skip-bad" 0
    # every image of a class bad: the class's error once (after the warnings, once each), no
    # abort; every image bad: "no readable image" once
    mkdir -p "$t/cls/class02"
    cp -r "$t/d/train/class00" "$t/d/train/class01" "$t/cls/"
    echo junk >"$t/cls/class02/a.tif"
    echo junk >"$t/cls/class02/b.tif"
    for np in 2 3; do
        mr $np train "$t/cls" --epochs 1 --width 4 --threads 1 -q --batch 6 --skip-bad \
            -o "$t/cls.cfnet" >"$t/cls.log" 2>&1
        rc=$?
        expect cls 1 "class 'class02' has no readable training images" 1
        expect cls 1 "class02/b.tif: not a TIFF or PNG file (skipped)" 1
        expect cls 1 "MPI_ABORT" 0
    done
    mkdir -p "$t/allbad/a" "$t/allbad/b"
    echo junk >"$t/allbad/a/1.tif"
    echo junk >"$t/allbad/b/2.tif"
    echo junk >"$t/allbad/b/3.tif"
    mr 2 train "$t/allbad" --epochs 1 --width 4 --threads 1 -q --batch 6 --skip-bad \
        -o "$t/allbad.cfnet" >"$t/allbad.log" 2>&1
    rc=$?
    expect allbad 1 "no readable image" 1
    expect allbad 1 "(skipped)" 3
    expect allbad 1 "MPI_ABORT" 0
    # images the models do not take (600x600) after a bad first one: the size's error once
    "$tool" synth "$t/big" --classes 2 --per-class 2 --test-per-class 1 --size 600 -q
    echo junk >"$t/big/train/class00/00-first.tif"
    mr 2 train "$t/big/train" --epochs 1 --width 4 --threads 1 -q --batch 2 --skip-bad \
        -o "$t/big.cfnet" >"$t/big.log" 2>&1
    rc=$?
    expect big 1 "images are 600x600; the models take 16 to 512 pixels" 1
    expect big 1 "00-first.tif: not a TIFF or PNG file (skipped)" 1
    # rank 1 alone given a DATA that does not exist: it fails before the shared check, which
    # the others must not wait in (a hang, 124)
    timeout 60 mpirun --allow-run-as-root --oversubscribe -np 3 sh -c \
        'd=$1; [ "$OMPI_COMM_WORLD_RANK" = 1 ] && d=$2; shift 2; exec "$@" "$d"' sh \
        "$sb" "$t/nodata" "$tool" train --width 4 --threads 1 -q --batch 6 --skip-bad \
        -o "$t/u.cfnet" >"$t/nodatasb.log" 2>&1
    rc=$?
    expect nodatasb 1 "nodata: no such file or directory" 1
    expect nodatasb 1 "the message above is rank 1's of 3" 1
    expect nodatasb 1 "(skipped)" 0
    # predict --skip-bad: the 1-process CSV, the warnings of one process (once, in input
    # order, not interleaved), bad files in every shard; more ranks than images
    mkdir -p "$c/sk"
    cp "$c"/d/test/class00/*.tif "$c/sk/"
    for f in 0000_bad 0002_bad zz_bad; do echo junk >"$c/sk/$f.tif"; done
    "$tool" predict "$c/m.cfnet" "$c/sk" -o "$c/sk1.csv" --threads 1 --batch 2 --skip-bad \
        2>"$t/psk1.log"
    grep "warning:" "$t/psk1.log" >"$t/psk1.warn"
    for np in 2 3; do
        mr $np predict "$c/m.cfnet" "$c/sk" -o "$c/sk$np.csv" --threads 1 --batch 2 --skip-bad \
            >"$t/psk$np.log" 2>&1
        rc=$?
        expect psk$np 0 "skipped 3 unreadable" 1
        grep "warning:" "$t/psk$np.log" >"$t/psk$np.warn" || true
        cmp "$c/sk1.csv" "$c/sk$np.csv" || { echo "test_mpi: predict --skip-bad on $np ranks: CSV differs"; exit 1; }
        cmp "$t/psk1.warn" "$t/psk$np.warn" ||
            { cat "$t/psk$np.log"; echo "test_mpi: predict --skip-bad on $np ranks: warnings differ"; exit 1; }
    done
    mkdir -p "$c/two"
    cp "$c/d/test/class00/0000.tif" "$c/d/test/class01/0001.tif" "$c/two/"
    "$tool" predict "$c/m.cfnet" "$c/two" -o "$c/two1.csv" --threads 1 -q
    mr 3 predict "$c/m.cfnet" "$c/two" -o "$c/two3.csv" --threads 1 --batch 1 -q >"$t/two.log" 2>&1
    rc=$?
    expect two 0 "error" 0
    cmp "$c/two1.csv" "$c/two3.csv" || { echo "test_mpi: predict of 2 images on 3 ranks differs"; exit 1; }
    # `mpirun -np N cfnet eval`: every rank classifies its share (whole inference batches),
    # rank 0 prints the report of one process from the summed counts: the text report, --json
    # and the four --out files byte-identical on 1, 2 and 3 ranks, with --skip-bad (bad images
    # in every rank's share of 2 and of 3; the warnings of one process, once, in input order)
    # and with more ranks than images
    e="$c/ev"
    rm -rf "$e"
    mkdir -p "$e"
    cp -r "$c/d/test" "$e/data"
    for f in class00/0000_bad class01/0002_bad class02/zz_bad; do echo junk >"$e/data/$f.tif"; done
    ev="eval $c/m.cfnet $e/data --threads 1 --batch 2 --skip-bad"
    "$tool" $ev --out "$e/o1" >"$e/r1.txt" 2>"$t/ev1.log"
    "$tool" $ev --json >"$e/j1.txt" 2>/dev/null
    grep "warning:" "$t/ev1.log" >"$t/ev1.warn"
    [ "$(grep -c "(skipped)" "$t/ev1.warn")" = 3 ] || { cat "$t/ev1.log"; echo "test_mpi: eval --skip-bad"; exit 1; }
    for np in 2 3; do
        mr $np $ev --out "$e/o$np" >"$e/r$np.txt" 2>"$t/ev$np.log"
        rc=$?
        expect ev$np 0 "skipped 3 unreadable" 1
        grep "warning:" "$t/ev$np.log" >"$t/ev$np.warn" || true
        cmp "$t/ev1.warn" "$t/ev$np.warn" ||
            { cat "$t/ev$np.log"; echo "test_mpi: eval --skip-bad on $np ranks: warnings differ"; exit 1; }
        cmp "$e/r1.txt" "$e/r$np.txt" || { echo "test_mpi: eval's report on $np ranks differs"; exit 1; }
        for f in metrics.json confusion.csv confusion.svg predictions.csv; do
            cmp "$e/o1/$f" "$e/o$np/$f" || { echo "test_mpi: eval --out's $f on $np ranks differs"; exit 1; }
        done
        mr $np $ev --json >"$e/j$np.txt" 2>/dev/null
        cmp "$e/j1.txt" "$e/j$np.txt" || { echo "test_mpi: eval --json on $np ranks differs"; exit 1; }
    done
    # the mean loss is rank 0's sum and then every other rank's terms added one by one in
    # input order, the additions of one process: 90 images on 3 ranks, where adding each
    # rank's own sum instead changes metrics.json's mean_loss in its 16th digit
    "$tool" eval "$t/plain.cfnet" "$t/d/train" --threads 1 --batch 2 --json -q >"$e/l1.txt"
    for np in 2 3; do
        mr $np eval "$t/plain.cfnet" "$t/d/train" --threads 1 --batch 2 --json -q >"$e/l$np.txt"
        cmp "$e/l1.txt" "$e/l$np.txt" || { echo "test_mpi: eval's mean loss on $np ranks differs"; exit 1; }
    done
    mkdir -p "$e/two/a" "$e/two/b"
    cp "$c/d/test/class00/0000.tif" "$e/two/a/"
    cp "$c/d/test/class01/0001.tif" "$e/two/b/"
    "$tool" train "$e/two" -o "$e/two.cfnet" --epochs 1 --width 4 --threads 1 --val 0 -q
    "$tool" eval "$e/two.cfnet" "$e/two" --threads 1 --batch 1 --json >"$e/two1.txt"
    mr 3 eval "$e/two.cfnet" "$e/two" --threads 1 --batch 1 --json >"$e/two3.txt" 2>"$t/evtwo.log"
    rc=$?
    expect evtwo 0 "error" 0
    cmp "$e/two1.txt" "$e/two3.txt" || { echo "test_mpi: eval of 2 images on 3 ranks differs"; exit 1; }
    # a bad image without --skip-bad in rank 1's share: every rank ends with status 1 (no hang,
    # no abort), naming the file and the rank, and rank 0 leaves no --out folder
    cp -r "$c/d/test" "$e/bad1"
    echo junk >"$e/bad1/class02/zz_bad.tif"
    mr 2 eval "$c/m.cfnet" "$e/bad1" --threads 1 --batch 2 -q --out "$e/bad" >"$t/evbad.log" 2>&1
    rc=$?
    expect evbad 1 "zz_bad.tif: not a TIFF or PNG file" 1
    expect evbad 1 "rank 1 of 2 could not classify its share of the images" 1
    expect evbad 1 "MPI_ABORT" 0
    [ ! -e "$e/bad" ] || { echo "test_mpi: a failed eval left its --out folder"; exit 1; }
    # bad images in both ranks' shares, without --skip-bad: one report, every line from rank 0
    # (--tag-output names the rank of each line), each failed rank's messages in rank order,
    # not each rank's own lines interleaved; status 1, no abort
    cp -r "$c/d/test" "$e/bad2"
    echo junk >"$e/bad2/class00/0000_bad.tif"
    echo junk >"$e/bad2/class02/zz_bad.tif"
    for cmd in predict eval; do
        what=inputs
        [ $cmd = eval ] && what=images
        timeout 60 mpirun --allow-run-as-root --oversubscribe --tag-output -np 2 "$tool" $cmd \
            "$c/m.cfnet" "$e/bad2" --threads 1 --batch 2 -q >"$t/ev2.log" 2>&1
        rc=$?
        expect ev2 1 "MPI_ABORT" 0
        grep "cfnet:" "$t/ev2.log" >"$t/ev2.got"
        hint="not a TIFF or PNG file; give --skip-bad to leave out the images that cannot be used"
        printf '%s\n' "[1,0]<stderr>:cfnet: error: $e/bad2/class00/0000_bad.tif: $hint" \
            "[1,0]<stderr>:cfnet: error: rank 0 of 2 could not classify its share of the $what" \
            "[1,0]<stderr>:cfnet: error: $e/bad2/class02/zz_bad.tif: $hint" \
            "[1,0]<stderr>:cfnet: error: rank 1 of 2 could not classify its share of the $what" \
            >"$t/ev2.want"
        cmp "$t/ev2.want" "$t/ev2.got" || { diff "$t/ev2.want" "$t/ev2.got"
            echo "test_mpi: $cmd: bad images on two ranks not said once, by rank 0, in order"; exit 1; }
    done
    # settings given to rank 0 only: refused once by rank 0, before any image is read (another
    # --batch or --skip-bad would count images twice or leave a rank waiting in a gather)
    EXTRA="--batch 3" timeout 60 mpirun --allow-run-as-root --oversubscribe -x EXTRA -np 2 \
        "$t/rank0.sh" "$tool" $ev -q >"$t/evb.log" 2>&1
    rc=$?
    expect evb 1 "the MPI ranks disagree on --batch" 1
    EXTRA="--out $e/only0" timeout 60 mpirun --allow-run-as-root --oversubscribe -x EXTRA -np 2 \
        "$t/rank0.sh" "$tool" $ev -q >"$t/evo.log" 2>&1
    rc=$?
    expect evo 1 "the MPI ranks disagree on --out" 1
    [ ! -e "$e/only0" ] || { echo "test_mpi: a refused eval left its --out folder"; exit 1; }
    EXTRA="--skip-bad" timeout 60 mpirun --allow-run-as-root --oversubscribe -x EXTRA -np 2 \
        "$t/rank0.sh" "$tool" eval "$c/m.cfnet" "$e/data" --threads 1 --batch 2 -q >"$t/evs.log" 2>&1
    rc=$?
    expect evs 1 "the MPI ranks disagree on --skip-bad" 1
    # (predict too: with --skip-bad on rank 0 alone and the bad image in its share, rank 0
    # waited in the gather of the warnings, the others elsewhere: a hang)
    EXTRA="--skip-bad" timeout 60 mpirun --allow-run-as-root --oversubscribe -x EXTRA -np 2 \
        "$t/rank0.sh" "$tool" predict "$c/m.cfnet" "$e/data/class00" -o "$e/ps.csv" --threads 1 \
        --batch 2 -q >"$t/evps.log" 2>&1
    rc=$?
    expect evps 1 "the MPI ranks disagree on --skip-bad" 1
    # --pad on rank 0 alone: refused once, before any image is read (its images padded, the
    # others' refused or classified otherwise); another --threads is allowed: the same CSV
    for cmd in predict eval; do
        EXTRA="--pad" timeout 60 mpirun --allow-run-as-root --oversubscribe -x EXTRA -np 2 \
            "$t/rank0.sh" "$tool" $cmd "$c/m.cfnet" "$c/d/test" --threads 1 --batch 2 -q \
            >"$t/evpad.log" 2>&1
        rc=$?
        expect evpad 1 "the MPI ranks disagree on --pad" 1
    done
    EXTRA="--threads 3" timeout 60 mpirun --allow-run-as-root --oversubscribe -x EXTRA -np 2 \
        "$t/rank0.sh" "$tool" predict "$c/m.cfnet" "$c/d/test" -o "$c/pth.csv" --threads 1 \
        --batch 4 -q >"$t/pth.log" 2>&1
    rc=$?
    expect pth 0 "error" 0
    cmp "$c/p1.csv" "$c/pth.csv" || { echo "test_mpi: predict with another --threads on rank 0 differs"; exit 1; }
    # rank 1 alone given a DATA that does not exist: its message, once
    timeout 60 mpirun --allow-run-as-root --oversubscribe -np 3 sh -c \
        'd=$1; [ "$OMPI_COMM_WORLD_RANK" = 1 ] && d=$2; shift 2; exec "$@" "$d"' sh \
        "$e/data" "$t/nodata" "$tool" eval --threads 1 -q --skip-bad "$c/m.cfnet" >"$t/evnd.log" 2>&1
    rc=$?
    expect evnd 1 "nodata: no such file or directory" 1
    expect evnd 1 "the message above is rank 1's of 3" 1
    # rank 1 alone given another model of the same classes (a node-local copy of another run's
    # model): refused once by rank 0 (its numbers went into the report and the CSV silently)
    for cmd in eval predict; do
        data="$e/data"
        [ $cmd = predict ] && data="$e/data/class00"
        timeout 60 mpirun --allow-run-as-root --oversubscribe -np 2 sh -c \
            'm=$1; [ "$OMPI_COMM_WORLD_RANK" = 1 ] && m=$2; shift 2; exec "$@" "$m" "$0"' \
            "$data" "$c/m.cfnet" "$t/plain.cfnet" "$tool" $cmd --threads 1 --skip-bad -q >"$t/evm.log" 2>&1
        rc=$?
        expect evm 1 "the MPI ranks disagree on MODEL (its contents)" 1
    done
    # more output than rank 0 can gather at once (MPI_Gatherv's int offsets overflowed past
    # 2 GB in all; the limit lowered by CFNET_TEST_GATHER_MAX): every rank ends with status 1
    # and one message, no abort, and no output left
    for cmd in eval predict; do
        rm -rf "$e/g"
        # (eval: its CSV rows and its loss terms, 120 bytes, are both too much, and --skip-bad
        # gathers the warnings: the refusal is said once, not once per gather)
        oflag="--out" lim=100
        [ $cmd = predict ] && oflag="-o"
        CFNET_TEST_GATHER_MAX=$lim timeout 60 mpirun --allow-run-as-root --oversubscribe \
            -x CFNET_TEST_GATHER_MAX -np 2 "$tool" $cmd "$c/m.cfnet" "$c/d/test" $oflag "$e/g" \
            --threads 1 --skip-bad -q >"$t/evg.log" 2>&1
        rc=$?
        expect evg 1 "is too much to gather on rank 0" 1
        expect evg 1 "cfnet:" 1
        expect evg 1 "MPI_ABORT" 0
        [ ! -e "$e/g" ] || { echo "test_mpi: $cmd left its output after a gather too big"; exit 1; }
    done
    # rank 1 out of memory for its --skip-bad warnings' stream (open_memstream made to fail by
    # a preloaded shim, at rank 1's 4th call: the start vote's, the loss terms', the held
    # messages', the warnings'): that cause, said once by rank 0, not "could not classify its
    # share". A plain build only (the sanitizers' runtime must come first in the preload).
    if [ "$plain" = 1 ] && command -v "${CC:-cc}" >/dev/null 2>&1; then
        cat >"$t/shim.c" <<'EOF_SHIM'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* open_memstream fails with ENOMEM at call SHIM_AT of rank SHIM_RANK; with SHIM_CLOSE set, it
 * returns a stream that keeps what is written (as a memory stream does) but whose fclose fails
 * with ENOMEM */
typedef struct {
    char **p;
    size_t *n;
} mem;
static ssize_t mem_write(void *c, const char *b, size_t len)
{
    mem *m = c;
    char *q = realloc(*m->p, *m->n + len + 1);
    if (!q) return -1;
    memcpy(q + *m->n, b, len);
    *m->n += len;
    q[*m->n] = '\0';
    *m->p = q;
    return (ssize_t)len;
}
static int mem_close(void *c)
{
    free(c);
    errno = ENOMEM;
    return -1;
}
FILE *open_memstream(char **p, size_t *n)
{
    static int calls;
    FILE *(*real)(char **, size_t *);
    *(void **)&real = dlsym(RTLD_NEXT, "open_memstream");
    const char *r = getenv("SHIM_RANK"), *me = getenv("OMPI_COMM_WORLD_RANK");
    const char *at = getenv("SHIM_AT");
    if (r && me && at && !strcmp(r, me) && ++calls == atoi(at)) {
        if (getenv("SHIM_CLOSE")) {
            mem *m = malloc(sizeof *m);
            cookie_io_functions_t io = {NULL, mem_write, NULL, mem_close};
            m->p = p;
            m->n = n;
            *p = NULL;
            *n = 0;
            return fopencookie(m, "w", io);
        }
        errno = ENOMEM;
        return NULL;
    }
    return real(p, n);
}
EOF_SHIM
        "${CC:-cc}" -shared -fPIC -o "$t/shim.so" "$t/shim.c" -ldl
        SHIM_RANK=1 SHIM_AT=4 LD_PRELOAD="$t/shim.so" timeout 60 mpirun --allow-run-as-root \
            --oversubscribe -x LD_PRELOAD -x SHIM_RANK -x SHIM_AT -np 2 "$tool" eval \
            "$c/m.cfnet" "$e/bad2" --skip-bad --threads 1 --batch 2 -q >"$t/evmem.log" 2>&1
        rc=$?
        expect evmem 1 "rank 1 of 2: a memory stream for the --skip-bad warnings: Cannot allocate memory" 1
        expect evmem 1 "could not classify" 0
        expect evmem 1 "cfnet:" 1
        expect evmem 1 "MPI_ABORT" 0
        # rank 1 out of memory for the stream that holds its messages (its 3rd call, after the
        # start vote's and its rows' in predict, its loss terms' in eval): the cause said by
        # rank 0 with the rest (--tag-output names each line's rank), not by rank 1 on its own
        # while rank 0 writes (the two were shuffled together, even within a line)
        for cmd in predict eval; do
            oflag=""
            [ $cmd = predict ] && oflag="-o $e/hold.csv"
            # shellcheck disable=SC2086 # (oflag: an option and its value, or nothing)
            SHIM_RANK=1 SHIM_AT=3 LD_PRELOAD="$t/shim.so" timeout 60 mpirun \
                --allow-run-as-root --oversubscribe --tag-output -x LD_PRELOAD -x SHIM_RANK \
                -x SHIM_AT -np 2 "$tool" $cmd "$c/m.cfnet" "$e/bad2" $oflag --threads 1 \
                --batch 2 -q >"$t/hold.log" 2>&1
            rc=$?
            expect hold 1 "^\[1,0\]<stderr>:cfnet: error: rank 1 of 2: a memory stream for its messages: Cannot allocate memory$" 1
            expect hold 1 "^\[1,1\]<stderr>:" 0
            expect hold 1 "MPI_ABORT" 0
        done
        # rank 1's held messages, whose stream fails at fclose (its 3rd call, as above): what it
        # held, then the loss, said by rank 0, status 1 (the held messages were dropped: rank 0
        # said nothing of rank 1's bad file)
        SHIM_CLOSE=1 SHIM_RANK=1 SHIM_AT=3 LD_PRELOAD="$t/shim.so" timeout 60 mpirun \
            --allow-run-as-root --oversubscribe --tag-output -x LD_PRELOAD -x SHIM_RANK \
            -x SHIM_AT -x SHIM_CLOSE -np 2 "$tool" predict "$c/m.cfnet" "$e/bad2" \
            -o "$e/hclose.csv" --threads 1 --batch 2 -q >"$t/hclose.log" 2>&1
        rc=$?
        expect hclose 1 "^\[1,0\]<stderr>:cfnet: error: .*/bad2/class02/zz_bad.tif: not a TIFF" 1
        expect hclose 1 "^\[1,0\]<stderr>:cfnet: error: rank 1 of 2: its messages could not all be held (Cannot allocate memory); some are lost$" 1
        expect hclose 1 "^\[1,1\]<stderr>:" 0
        expect hclose 1 "MPI_ABORT" 0
        # rank 0 without a memory stream at its 4th call (the start vote's, the held
        # messages', the --skip-bad warnings', then the one that gathered every rank's
        # warnings): the warnings of one process all the same, status 0 (they were lost and
        # the run ended with status 0)
        SHIM_RANK=0 SHIM_AT=4 LD_PRELOAD="$t/shim.so" timeout 60 mpirun --allow-run-as-root \
            --oversubscribe -x LD_PRELOAD -x SHIM_RANK -x SHIM_AT -np 2 "$tool" predict \
            "$c/m.cfnet" "$c/sk" -o "$c/skm.csv" --threads 1 --batch 2 --skip-bad \
            >"$t/pskm.log" 2>&1
        rc=$?
        expect pskm 0 "skipped 3 unreadable" 1
        grep "warning:" "$t/pskm.log" >"$t/pskm.warn" || true
        cmp "$t/psk1.warn" "$t/pskm.warn" ||
            { cat "$t/pskm.log"; echo "test_mpi: predict --skip-bad without rank 0's stream: warnings lost"; exit 1; }
        cmp "$c/sk1.csv" "$c/skm.csv" || { echo "test_mpi: predict --skip-bad without rank 0's stream: CSV differs"; exit 1; }
        # the same in train, at its first step (rank 1's 4th call, after the start vote's, the
        # one held while the sums are attached and the one held while OpenBLAS's buffer is
        # taken), with bad images in both ranks' shares ($t/tb): rank 1 stops, its cause said
        # by rank 0 after rank 0's own messages (rank 1 said its files' errors on its own,
        # shuffled in)
        SHIM_RANK=1 SHIM_AT=4 LD_PRELOAD="$t/shim.so" timeout 60 mpirun --allow-run-as-root \
            --oversubscribe --tag-output -x LD_PRELOAD -x SHIM_RANK -x SHIM_AT -np 2 "$tool" \
            train "$t/tb" --epochs 1 --width 4 --threads 1 -q --val 0 --batch 14 \
            -o "$t/tbh.cfnet" >"$t/tbh.log" 2>&1
        rc=$?
        expect tbh 1 "^\[1,0\]<stderr>:cfnet: error: rank 1 of 2: a memory stream for its messages (step 1 of epoch 1): Cannot allocate memory$" 1
        expect tbh 1 "^\[1,1\]<stderr>:" 0
        expect tbh 1 "MPI_ABORT" 0
        [ ! -e "$t/tbh.cfnet" ] || { echo "test_mpi: a failed run wrote a model"; exit 1; }
        # (its 2nd call: the stream held while the sums are attached, said the same way)
        SHIM_RANK=1 SHIM_AT=2 LD_PRELOAD="$t/shim.so" timeout 60 mpirun --allow-run-as-root \
            --oversubscribe --tag-output -x LD_PRELOAD -x SHIM_RANK -x SHIM_AT -np 2 "$tool" \
            train "$t/tb" --epochs 1 --width 4 --threads 1 -q --val 0 --batch 14 \
            -o "$t/tbh.cfnet" >"$t/tba.log" 2>&1
        rc=$?
        expect tba 1 "^\[1,0\]<stderr>:cfnet: error: rank 1 of 2: a memory stream for its messages (attaching the MPI sums): Cannot allocate memory$" 1
        expect tba 1 "cfnet:" 1
        expect tba 1 "MPI_ABORT" 0
    else
        skip_env test_mpi "the out-of-memory streams on rank 1 (a preloaded shim)" "a sanitizer build, or no C compiler"
    fi
    echo "test_mpi: cfnet eval on 2 and 3 ranks printed and wrote the 1-process report" \
        "(--skip-bad, --json, --out, more ranks than images); a bad image and settings that" \
        "differ between ranks ended it with one message"
    set -e
    echo "test_mpi: --skip-bad on 2 and 3 ranks (train and predict) left out what one process" \
        "leaves out, with its warnings once, in input order"
else
    skip_env test_mpi "the cfnet command part" "$tool missing or built without mpicc"
fi
echo "test_mpi: all checks passed"
