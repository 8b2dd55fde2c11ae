/* The command under mpirun (built with mpicc, CFNET_TOOL_MPI): MPI starts only when a launcher
 * started the process, so a plain `cfnet ...` never touches MPI. Without CFNET_TOOL_MPI every
 * function is the single-process answer. */
#define _GNU_SOURCE
#include "tool.h"

#include <stdlib.h>
#include <string.h>

#ifdef CFNET_TOOL_MPI
#include <mpi.h>

#include "cfnet/cfnet_mpi.h"

static int mpi_on, mpi_rank, mpi_size = 1;
static cfnet_mpi *group; /* libcfnet_mpi's group of a distributed `cfnet train` */
static int failing_together; /* every rank fails at the same point: no abort needed */

void tool_mpi_init(int *argc, char ***argv)
{
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK") && !getenv("PMI_SIZE")) return;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return;
    mpi_on = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
}

int tool_mpi_finish(int rc)
{
    if (!mpi_on) return rc;
    cfnet_mpi_free(group);
    group = NULL;
    /* A rank that failed may have left the others waiting in a collective: end them all. Not
     * when every rank failed at the same check: an abort by one rank could then end rank 0
     * before its message is out, and the others are not waiting for anything. */
    if (rc != EXIT_OK && mpi_size > 1 && !failing_together) MPI_Abort(MPI_COMM_WORLD, rc);
    MPI_Finalize();
    return rc;
}

void tool_mpi_fail_together(void) { failing_together = 1; }

int tool_mpi_active(void) { return mpi_on; }
int tool_mpi_rank(void) { return mpi_rank; }
int tool_mpi_size(void) { return mpi_size; }

int64_t tool_mpi_sum(int64_t v)
{
    if (mpi_size == 1) return v;
    int64_t s = 0;
    MPI_Allreduce(&v, &s, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    return s;
}

int tool_mpi_agree(const int64_t *v, int n)
{
    if (mpi_size == 1 || n <= 0) return -1;
    int64_t *lo = xmalloc(sizeof(int64_t) * 2 * (size_t)n), *hi = lo + n;
    MPI_Allreduce(v, lo, n, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(v, hi, n, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    int first = -1;
    for (int i = 0; i < n && first < 0; i++)
        if (lo[i] != hi[i]) first = i;
    free(lo);
    return first;
}

int tool_mpi_sum_doubles(double *v, int64_t n)
{
    if (mpi_size == 1 || n == 0) return 0;
    if (n > 0x7fffffff) return -1;
    return MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) ==
                   MPI_SUCCESS ? 0 : -1;
}

int tool_mpi_attach(cfnet_network *net)
{
    cfnet_status st = group ? CFNET_OK : cfnet_mpi_create(MPI_COMM_WORLD, &group);
    /* A network that differs from rank 0's fails the check on every rank alike: rank 0 says
     * so once, and every rank ends normally (an abort could cut rank 0's message off). */
    if (st == CFNET_OK && cfnet_mpi_check(group, net) != CFNET_OK) {
        if (mpi_rank == 0)
            tool_error("%s (start every rank with the same arguments, --threads included)",
                       cfnet_mpi_last_error());
        failing_together = 1;
        return -1;
    }
    if (st == CFNET_OK) st = cfnet_mpi_attach(group, net);
    if (st != CFNET_OK) {
        tool_error("rank %d of %d: %s: %s", mpi_rank, mpi_size, cfnet_status_string(st),
                   cfnet_mpi_last_error());
        return -1;
    }
    return 0;
}

int tool_mpi_set_batch(cfnet_network *net, int64_t global_n, int64_t *offset, int64_t *count)
{
    cfnet_status st = group ? cfnet_mpi_set_batch(group, net, global_n, offset, count)
                            : CFNET_E_STATE;
    if (st != CFNET_OK) {
        tool_error("rank %d of %d: %s: %s", mpi_rank, mpi_size, cfnet_status_string(st),
                   group ? cfnet_mpi_last_error() : "not attached");
        return -1;
    }
    return 0;
}

void tool_mpi_detach(cfnet_network *net)
{
    if (group && net) cfnet_mpi_detach(group, net);
}

void tool_mpi_traffic(int64_t *calls, int64_t *bytes, double *seconds)
{
    cfnet_mpi_traffic(group, calls, bytes, seconds);
}

int tool_mpi_gather_text(const char *buf, size_t len, FILE *out)
{
    if (mpi_size == 1) return 0;
    if (len > (size_t)0x7fffffff) {
        tool_error("rank %d: %zu bytes of output are too many to gather", mpi_rank, len);
        return -1;
    }
    int n = (int)len, *counts = NULL, *displs = NULL;
    char *all = NULL;
    if (mpi_rank == 0) counts = xcalloc((size_t)mpi_size, sizeof(int));
    MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    size_t total = 0;
    if (mpi_rank == 0) {
        displs = xcalloc((size_t)mpi_size, sizeof(int));
        for (int r = 0; r < mpi_size; r++) {
            displs[r] = (int)total;
            total += (size_t)counts[r];
        }
        all = xmalloc(total ? total : 1);
    }
    MPI_Gatherv(buf, n, MPI_CHAR, all, counts, displs, MPI_CHAR, 0, MPI_COMM_WORLD);
    int rc = 0;
    if (mpi_rank == 0) {
        /* rank 0's own rows are already in `out`; the others follow in rank order */
        size_t own = (size_t)counts[0];
        if (total > own && fwrite(all + own, 1, total - own, out) != total - own) rc = -1;
    }
    free(counts);
    free(displs);
    free(all);
    return rc;
}
#else
void tool_mpi_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
}
int tool_mpi_finish(int rc) { return rc; }
void tool_mpi_fail_together(void) {}
int tool_mpi_active(void) { return 0; }
int tool_mpi_rank(void) { return 0; }
int tool_mpi_size(void) { return 1; }
int64_t tool_mpi_sum(int64_t v) { return v; }
int tool_mpi_agree(const int64_t *v, int n)
{
    (void)v;
    (void)n;
    return -1;
}
int tool_mpi_sum_doubles(double *v, int64_t n)
{
    (void)v;
    (void)n;
    return 0;
}
int tool_mpi_attach(cfnet_network *net)
{
    (void)net;
    tool_error("this cfnet was built without MPI");
    return -1;
}
int tool_mpi_set_batch(cfnet_network *net, int64_t global_n, int64_t *offset, int64_t *count)
{
    (void)net;
    *offset = 0;
    *count = global_n;
    return 0;
}
void tool_mpi_detach(cfnet_network *net) { (void)net; }
void tool_mpi_traffic(int64_t *calls, int64_t *bytes, double *seconds)
{
    if (calls) *calls = 0;
    if (bytes) *bytes = 0;
    if (seconds) *seconds = 0;
}
int tool_mpi_gather_text(const char *buf, size_t len, FILE *out)
{
    (void)buf;
    (void)len;
    (void)out;
    return 0;
}
#endif

int64_t tool_mpi_hash_samples(const tool_dataset *ds, const int64_t *idx, int64_t n, int64_t h)
{
    uint64_t x = h ? (uint64_t)h : 0xcbf29ce484222325ull;
    for (int64_t i = 0; i < n; i++) {
        const tool_sample *s = &ds->s[idx ? idx[i] : i];
        /* the path with its terminating NUL, then the class */
        for (const unsigned char *p = (const unsigned char *)s->path;; p++) {
            x = (x ^ *p) * 0x100000001b3ull;
            if (!*p) break;
        }
        x = (x ^ (uint64_t)(uint32_t)s->cls) * 0x100000001b3ull;
    }
    return (int64_t)x;
}
