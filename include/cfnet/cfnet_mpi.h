/*
 * libcfnet_mpi — data-parallel training of libcfnet networks over MPI (optional component).
 *
 * libcfnet itself links no MPI: it exposes a sum hook (cfnet_network_set_sum_hook) and a batch
 * position (cfnet_network_set_batch_position), see "Data-parallel training" in cfnet.h. This
 * small library, built with mpicc (`make mpi`, lib/libcfnet_mpi.a), implements the hook with
 * MPI_Allreduce and adds what every MPI host needs around it: the same network on every rank
 * (checked, then broadcast from rank 0), each rank's share of a global batch, and sums of
 * metrics. docs/distributed.md describes the design and its costs.
 *
 * All functions marked "collective" must be called by every rank of the communicator, in the
 * same order, or the job hangs (as with any MPI collective). Errors are returned as cfnet_status
 * with a message from cfnet_mpi_last_error(); a collective function returns the same status on
 * every rank. MPI itself is initialised and finalised by the host. Communication errors follow
 * the communicator's MPI error handler: with Open MPI's default (MPI_ERRORS_ARE_FATAL) a failed
 * or dead rank ends the whole job, which is what makes a fault end every rank instead of
 * leaving them waiting. The same is the host's duty for errors of its own: a rank whose
 * cfnet_network_train_step fails before its first sum (a bad batch: wrong shape, NaN in the
 * images, a file it cannot read) is not in the all-reduce the others wait in, so the host
 * reports the file and the rank and calls MPI_Abort. Non-finite values that arise inside a
 * step need nothing: every rank fails that step alike (see cfnet.h).
 */
#ifndef CFNET_CFNET_MPI_H
#define CFNET_CFNET_MPI_H

#include <mpi.h>

#include "cfnet/cfnet.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A data-parallel group (opaque): a duplicate of the host's communicator plus traffic
 *  counters. */
typedef struct cfnet_mpi cfnet_mpi;

/** Creates a group over `comm` (duplicated with MPI_Comm_dup; collective). The caller owns
 *  *out (cfnet_mpi_free). The duplicate is made first, then the group's memory, then one
 *  all-reduce of which rank had none: a rank without memory makes every rank return
 *  CFNET_E_OUT_OF_MEMORY with the same message naming it (the lowest such rank), and no rank
 *  waits for it in MPI_Comm_dup. An intercommunicator gives CFNET_E_INVALID_ARGUMENT on every
 *  rank (its all-reduce sums the other group's values). MPI_COMM_NULL gives
 *  CFNET_E_INVALID_ARGUMENT at once on the rank that passes it, whose message says to end the
 *  job. That is all that can be done: a rank
 *  holding MPI_COMM_NULL has no communicator to tell the others through, and it cannot know
 *  whether it belongs to theirs. Ranks left out of a communicator (MPI_Comm_split with
 *  MPI_UNDEFINED) get MPI_COMM_NULL rightly, and the others' group works without them. But if
 *  a rank passes MPI_COMM_NULL while the others pass a communicator that includes it, they wait
 *  for it in MPI_Comm_dup for ever; the host must then call MPI_Abort on that rank, as for any
 *  error that keeps a rank out of a collective (a timeout would make a slow rank an error). */
cfnet_status cfnet_mpi_create(MPI_Comm comm, cfnet_mpi **out);

/** Frees the group (MPI_Comm_free; collective). Accepts NULL. Networks attached to it must be
 *  detached first. */
void cfnet_mpi_free(cfnet_mpi *m);

/** Rank of this process in the group (-1 for NULL). */
int cfnet_mpi_rank(const cfnet_mpi *m);

/** Number of processes in the group (0 for NULL). */
int cfnet_mpi_size(const cfnet_mpi *m);

/** Collective: checks that every rank holds a network with the same architecture, options
 *  (thread count included), seed and step count — a hash of the model file's header, compared
 *  with rank 0's. On a mismatch every rank returns CFNET_E_STATE with the same message naming
 *  the first rank that differs, or the first that has no network (`net` may be NULL) or
 *  cannot describe it, with that rank's reason (broadcast from it, so rank 0 can say it). */
cfnet_status cfnet_mpi_check(cfnet_mpi *m, const cfnet_network *net);

/** Collective: cfnet_mpi_check, then broadcasts rank 0's parameters and batch-norm state to
 *  every rank, then installs the group's sum hook on `net` (MPI_Allreduce, MPI_SUM, in place).
 *  The optimiser state is not broadcast: it is zero before the first step, and when resuming
 *  every rank loads the same checkpoint (the check compares the step counts). Each rank then
 *  calls cfnet_mpi_set_batch and cfnet_network_train_step for every step. */
cfnet_status cfnet_mpi_attach(cfnet_mpi *m, cfnet_network *net);

/** Removes the hook and the batch position: the network trains alone again. Not collective. */
cfnet_status cfnet_mpi_detach(cfnet_mpi *m, cfnet_network *net);

/** This rank's share of a global batch of `global_n` samples: samples [*offset, *offset +
 *  *count), contiguous blocks in rank order, the first global_n % size ranks one sample more.
 *  global_n must be at least the group size (every rank needs a sample). Not collective. */
cfnet_status cfnet_mpi_share(const cfnet_mpi *m, int64_t global_n, int64_t *offset,
                             int64_t *count);

/** cfnet_mpi_share, then cfnet_network_set_batch_position(net, *offset, global_n). */
cfnet_status cfnet_mpi_set_batch(cfnet_mpi *m, cfnet_network *net, int64_t global_n,
                                 int64_t *offset, int64_t *count);

/** Collective: replaces v[0..count-1] by its sum over the ranks (validation loss and accuracy
 *  counts, for instance). A NULL `v` with a positive count, a negative count or counts that
 *  differ between the ranks make every rank return CFNET_E_INVALID_ARGUMENT (a small
 *  all-reduce compares the counts first), leaving every `v` as it was. */
cfnet_status cfnet_mpi_sum(cfnet_mpi *m, double *v, int64_t count);

/** Traffic of the group's sum hook since creation: number of all-reduce calls, bytes reduced
 *  (payload per rank) and seconds spent in them. Any output may be NULL. */
void cfnet_mpi_traffic(const cfnet_mpi *m, int64_t *calls, int64_t *bytes, double *seconds);

/** The detail message of the last error of a cfnet_mpi_* call in this thread ("" if none). A
 *  failing libcfnet call inside a cfnet_mpi_* function is reported here with its own message. */
const char *cfnet_mpi_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* CFNET_CFNET_MPI_H */
