#!/bin/sh
# make bench-mpi: training throughput of the yeast-size CFNet (2x64x64, global batch 50) with
# 1 rank x 2 threads against 2 ranks x 1 thread on this machine, and the all-reduce traffic per
# step (docs/distributed.md). OpenBLAS runs on one thread inside each rank (libcfnet's own
# threads do the parallel work), and OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are removed as in
# bench/run.sh.
#   tests/mpi/bench.sh BUILD_MPI_DIR [STEPS]
set -eu
bin=$1/mpi_train
steps=${2:-8}
export OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OPENBLAS_NUM_THREADS=1
run() {
    np=$1; shift
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE mpirun --allow-run-as-root --oversubscribe \
        --bind-to none -x OPENBLAS_NUM_THREADS -np "$np" "$bin" "$@"
}
echo "# machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
run 1 bench "$steps" 1
run 1 bench "$steps" 2
run 2 bench "$steps" 1
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
