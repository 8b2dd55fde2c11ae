#!/usr/bin/python3
"""Data-parallel training from Python with mpi4py (Debian: python3-mpi4py) — no MPI code in
libcfnet or its binding: the network's sum hook calls mpi4py's Allreduce.

    export CFNET_LIBRARY=$PWD/lib/libcfnet.so
    mpirun -x CFNET_LIBRARY -np 2 /usr/bin/python3 examples/python/mpi_train.py [OUT.npy]

from the repository root after `make` (`-x` passes CFNET_LIBRARY on to every rank).

Every rank builds the same network (same seed), rank 0's weights are broadcast, then every step
each rank trains on its share of the global batch of 50. With OUT.npy, rank 0 saves every
parameter and batch-norm statistic after 5 steps: the file is the same (to 1e-5) for any
number of ranks (tests/test_mpi.sh checks 1 against 2).
"""
import argparse
import os
import sys

import numpy as np
from mpi4py import MPI

# In a checkout (examples/python/ beside python/cfnet/) the script uses the checkout's package:
# its python/ goes on the module path before the standard library and so before an installed
# cfnet (site-packages, ~/.local, maybe an older version), which would be imported before it
# otherwise; a cfnet in a folder that PYTHONPATH names still comes first, as asked. A copy of
# the script outside a checkout imports the installed package.
CHECKOUT_PYTHON = os.path.normpath(os.path.join(os.path.dirname(os.path.realpath(__file__)),
                                                os.pardir, os.pardir, "python"))
if os.path.isfile(os.path.join(CHECKOUT_PYTHON, "cfnet", "__init__.py")):
    STDLIB = os.path.dirname(os.__file__)  # after the script's folder and PYTHONPATH's
    sys.path.insert(sys.path.index(STDLIB) if STDLIB in sys.path else 0, CHECKOUT_PYTHON)
import cfnet  # noqa: E402

parser = argparse.ArgumentParser(
    description="Data-parallel training through mpi4py: every rank trains on its share of "
    "each global batch of 50, for 5 steps (run under mpirun).")
parser.add_argument("out", nargs="?", metavar="OUT.npy",
                    help="rank 0 saves every parameter and batch-norm statistic here")
args = parser.parse_args()

GLOBAL, STEPS = 50, 5
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()


def abort_job(kind, value, tb):
    """An exception on one rank ends every rank: without this, the rank's interpreter would
    wait in MPI_Finalize and the others forever in their next Allreduce
    (`python3 -m mpi4py script.py` does the same)."""
    sys.__excepthook__(kind, value, tb)
    sys.stderr.flush()
    comm.Abort(1)


sys.excepthook = abort_job

net = cfnet.Network(2, 24, 24, seed=11)
net.extend([cfnet.conic_conv(8, 3, R=2), cfnet.batch_norm(0.1, 1e-3), cfnet.relu(),
            cfnet.dropout(0.2), cfnet.pool(),
            cfnet.conic_conv(8, 3, R=1), cfnet.batch_norm(0.1, 1e-3), cfnet.relu(),
            cfnet.dft_projection(8), cfnet.dft_magnitude(), cfnet.dense(6)])
net.configure(optimizer="sgd", learning_rate=0.01, aug_rotation="any", aug_jitter=3, aug_flip=1)

# The same starting point everywhere: rank 0's parameters and statistics.
tensors = [t for layer in net for t in list(layer.params.values()) + list(layer.state.values())]
for t in tensors:
    comm.Bcast(t, root=0)
net.set_sum_hook(lambda kind, a: comm.Allreduce(MPI.IN_PLACE, a, op=MPI.SUM))

# This rank's contiguous share of every global batch.
base, extra = divmod(GLOBAL, size)
offset, count = rank * base + min(rank, extra), base + (rank < extra)
net.set_batch_position(offset, GLOBAL)

data = np.random.default_rng(5).standard_normal((STEPS * GLOBAL, 2, 24, 24)).astype(np.float32)
labels = (np.arange(STEPS * GLOBAL) % 6).astype(np.int32)
for s in range(STEPS):
    first = s * GLOBAL + offset
    loss = net.train_step(data[first:first + count], labels[first:first + count])
    if rank == 0:
        print(f"step {s + 1}: loss {loss:.5f} (mean over the global batch, {size} rank(s))")

if rank == 0 and args.out:
    np.save(args.out, np.concatenate([np.asarray(t).ravel() for t in tensors]))
