/* libcfnet_mpi: the sum hook of data-parallel training on MPI_Allreduce, the same network on
 * every rank, batch shares and metric sums (include/cfnet/cfnet_mpi.h). Uses only libcfnet's
 * public API; built with mpicc into its own library, never into libcfnet. */
#include "cfnet/cfnet_mpi.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cfnet_mpi {
    MPI_Comm comm;
    int rank, size;
    int64_t calls, bytes;
    double seconds;
};

static _Thread_local char last_error[512];

const char *cfnet_mpi_last_error(void) { return last_error; }

static cfnet_status fail(cfnet_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return st;
}

/* A libcfnet call failed: its message becomes ours. */
static cfnet_status fail_lib(cfnet_status st, const char *what)
{
    return fail(st, "%s: %s", what, cfnet_last_error());
}

static cfnet_status fail_mpi(int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    return fail(CFNET_E_IO, "cfnet_mpi: %s failed: %s", what, msg);
}

/* MPI counts are int: long buffers go in chunks. */
#define CHUNK ((int64_t)1 << 30)

cfnet_status cfnet_mpi_create(MPI_Comm comm, cfnet_mpi **out)
{
    if (!out) return fail(CFNET_E_INVALID_ARGUMENT, "cfnet_mpi_create: out is NULL");
    /* MPI_Comm_dup would raise MPI_ERR_COMM on MPI_COMM_WORLD's handler: a fatal error. Only
     * this rank can know: it has no communicator to tell the others through (cfnet_mpi.h). */
    if (comm == MPI_COMM_NULL)
        return fail(CFNET_E_INVALID_ARGUMENT,
                    "cfnet_mpi_create: the communicator is MPI_COMM_NULL on this rank; if other "
                    "ranks passed a communicator that includes this process, they wait for it "
                    "in MPI_Comm_dup and cannot be told: end the job (MPI_Abort)");
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) return fail(CFNET_E_STATE, "cfnet_mpi_create: MPI is not initialised");
    /* An intercommunicator's all-reduce gives each group the other group's sum: the gradients
     * would be summed wrongly (and the agreement below would not see this rank's own lack of
     * memory). Every rank of it is told alike, before any collective. */
    int inter = 0;
    if (MPI_Comm_test_inter(comm, &inter) == MPI_SUCCESS && inter)
        return fail(CFNET_E_INVALID_ARGUMENT,
                    "cfnet_mpi_create: the communicator is an intercommunicator; give an "
                    "intracommunicator (MPI_Intercomm_merge makes one)");
    /* The collective first, then this rank's allocation, then one all-reduce of which rank
     * failed: a rank without memory for the group no longer leaves the others waiting in
     * MPI_Comm_dup, and every rank returns the same status and message. */
    MPI_Comm dup = MPI_COMM_NULL;
    int rc = MPI_Comm_dup(comm, &dup);
    if (rc != MPI_SUCCESS) return fail_mpi(rc, "MPI_Comm_dup");
    cfnet_mpi *m = calloc(1, sizeof *m);
    int rank = 0, size = 0;
    MPI_Comm_rank(dup, &rank);
    MPI_Comm_size(dup, &size);
    /* one all-reduce (MPI_MIN): the lowest rank without memory and minus the highest
     * (INT_MAX: none); they differ when more than one rank had none */
    int in[2] = {m ? INT_MAX : rank, m ? INT_MAX : -rank}, outv[2] = {INT_MAX, INT_MAX};
    rc = MPI_Allreduce(in, outv, 2, MPI_INT, MPI_MIN, dup);
    if (rc != MPI_SUCCESS || outv[0] != INT_MAX) {
        free(m);
        MPI_Comm_free(&dup);
        if (rc != MPI_SUCCESS) return fail_mpi(rc, "MPI_Allreduce");
        return fail(CFNET_E_OUT_OF_MEMORY,
                    "cfnet_mpi_create: rank %d of %d%s is out of memory for the group",
                    outv[0], size, outv[0] != -outv[1] ? " (and other ranks)" : "");
    }
    m->comm = dup;
    m->rank = rank;
    m->size = size;
    *out = m;
    return CFNET_OK;
}

void cfnet_mpi_free(cfnet_mpi *m)
{
    if (!m) return;
    MPI_Comm_free(&m->comm);
    free(m);
}

int cfnet_mpi_rank(const cfnet_mpi *m) { return m ? m->rank : -1; }

int cfnet_mpi_size(const cfnet_mpi *m) { return m ? m->size : 0; }

/* ---- the sum hook ---- */

/* In-place sum over the ranks; `hook`: counted in the sum hook's traffic (cfnet_mpi_traffic). */
static cfnet_status allreduce(cfnet_mpi *m, void *data, int64_t count, MPI_Datatype type,
                              size_t elem, int hook)
{
    double t0 = MPI_Wtime();
    for (int64_t done = 0; done < count; done += CHUNK) {
        int64_t n = count - done < CHUNK ? count - done : CHUNK;
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)data + (size_t)done * elem, (int)n, type,
                               MPI_SUM, m->comm);
        if (rc != MPI_SUCCESS) return fail_mpi(rc, "MPI_Allreduce");
    }
    if (hook) {
        m->seconds += MPI_Wtime() - t0;
        m->calls++;
        m->bytes += count * (int64_t)elem;
    }
    return CFNET_OK;
}

static cfnet_status mpi_sum_hook(void *user, cfnet_sum_kind kind, void *data, int64_t count)
{
    cfnet_mpi *m = user;
    if (kind == CFNET_SUM_GRADIENTS)
        return allreduce(m, data, count, MPI_FLOAT, sizeof(float), 1);
    return allreduce(m, data, count, MPI_DOUBLE, sizeof(double), 1);
}

cfnet_status cfnet_mpi_sum(cfnet_mpi *m, double *v, int64_t count)
{
    if (!m) return fail(CFNET_E_INVALID_ARGUMENT, "cfnet_mpi_sum: group is NULL");
    /* Every rank first states its count (-1: bad arguments), so that a rank with bad
     * arguments or another count neither leaves the others waiting nor meets another rank's
     * next collective: every rank returns the same status. */
    int64_t mine = (!v && count > 0) || count < 0 ? -1 : count;
    int64_t range[2] = {mine, -mine}; /* the largest count and minus the smallest */
    int rc = MPI_Allreduce(MPI_IN_PLACE, range, 2, MPI_INT64_T, MPI_MAX, m->comm);
    if (rc != MPI_SUCCESS) return fail_mpi(rc, "MPI_Allreduce");
    if (-range[1] < 0)
        return fail(CFNET_E_INVALID_ARGUMENT,
                    "cfnet_mpi_sum: a rank passed a NULL buffer or a negative count");
    if (-range[1] != range[0])
        return fail(CFNET_E_INVALID_ARGUMENT,
                    "cfnet_mpi_sum: the ranks passed different counts (%lld to %lld); every "
                    "rank must sum the same number of values",
                    (long long)-range[1], (long long)range[0]);
    return allreduce(m, v, count, MPI_DOUBLE, sizeof(double), 0);
}

void cfnet_mpi_traffic(const cfnet_mpi *m, int64_t *calls, int64_t *bytes, double *seconds)
{
    if (calls) *calls = m ? m->calls : 0;
    if (bytes) *bytes = m ? m->bytes : 0;
    if (seconds) *seconds = m ? m->seconds : 0;
}

/* ---- the same network everywhere ---- */

/* FNV-1a, 64 bits. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Hash of the model file's header (architecture, seed, options), the step count and the
 * parameter count. 0 with *st set if the network could not be serialised. */
static uint64_t network_hash(const cfnet_network *net, cfnet_status *st)
{
    void *buf = NULL;
    size_t size = 0;
    *st = cfnet_network_save_buffer(net, 0, &buf, &size);
    if (*st != CFNET_OK) return 0;
    uint64_t hlen = 0; /* safetensors: 8-byte little-endian header length, then the JSON */
    for (int i = 7; i >= 0 && size >= 8; i--) hlen = hlen << 8 | ((unsigned char *)buf)[i];
    if (size < 8 || hlen > size - 8) hlen = size >= 8 ? size - 8 : 0;
    uint64_t h = fnv1a(0xcbf29ce484222325ull, (unsigned char *)buf + 8, (size_t)hlen);
    cfnet_free(buf);
    int64_t extra[2] = {cfnet_network_step_count(net), cfnet_network_param_count(net)};
    h = fnv1a(h, extra, sizeof extra);
    return h ? h : 1;
}

cfnet_status cfnet_mpi_check(cfnet_mpi *m, const cfnet_network *net)
{
    if (!m) return fail(CFNET_E_INVALID_ARGUMENT, "cfnet_mpi_check: group is NULL");
    /* A NULL network still takes part in the collectives, so the other ranks do not wait. */
    cfnet_status st = CFNET_OK;
    char local[256] = "";
    uint64_t h = 0;
    if (!net) {
        snprintf(local, sizeof local, "no network");
    } else {
        h = network_hash(net, &st);
        if (st != CFNET_OK) snprintf(local, sizeof local, "%s", cfnet_last_error());
    }
    uint64_t h0 = h;
    int rc = MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, m->comm);
    if (rc != MPI_SUCCESS) return fail_mpi(rc, "MPI_Bcast");
    int differs = h == 0 || h0 == 0 || h != h0;
    /* how many differ, the first that differs, the first without a description */
    int in[3] = {differs, differs ? m->rank : INT_MAX, h == 0 ? m->rank : INT_MAX}, outv[3];
    rc = MPI_Allreduce(in, outv, 1, MPI_INT, MPI_SUM, m->comm);
    if (rc == MPI_SUCCESS) rc = MPI_Allreduce(in + 1, outv + 1, 2, MPI_INT, MPI_MIN, m->comm);
    if (rc != MPI_SUCCESS) return fail_mpi(rc, "MPI_Allreduce");
    if (outv[0] == 0) return CFNET_OK;
    if (outv[2] != INT_MAX) {
        /* that rank's reason, broadcast from it: the same message on every rank, rank 0's
         * included (it had that rank's number without its reason) */
        char reason[sizeof local];
        memcpy(reason, local, sizeof reason);
        reason[sizeof reason - 1] = '\0';
        rc = MPI_Bcast(reason, (int)sizeof reason, MPI_CHAR, outv[2], m->comm);
        if (rc != MPI_SUCCESS) return fail_mpi(rc, "MPI_Bcast");
        reason[sizeof reason - 1] = '\0';
        return fail(CFNET_E_STATE,
                    "cfnet_mpi: rank %d has no network or cannot describe it%s%s%s; every rank "
                    "must build or load the same network",
                    outv[2], reason[0] ? " (" : "", reason, reason[0] ? ")" : "");
    }
    return fail(CFNET_E_STATE,
                "cfnet_mpi: the network on rank %d%s differs from rank 0's in architecture, "
                "options, seed or step; every rank must build or load the same network with "
                "the same options",
                outv[1],
                outv[0] > 1 ? " (and on other ranks)" : "");
}

/* Broadcasts `count` floats from rank 0. */
static cfnet_status bcast_floats(cfnet_mpi *m, float *p, int64_t count)
{
    for (int64_t done = 0; done < count; done += CHUNK) {
        int64_t n = count - done < CHUNK ? count - done : CHUNK;
        int rc = MPI_Bcast(p + done, (int)n, MPI_FLOAT, 0, m->comm);
        if (rc != MPI_SUCCESS) return fail_mpi(rc, "MPI_Bcast");
    }
    return CFNET_OK;
}

cfnet_status cfnet_mpi_attach(cfnet_mpi *m, cfnet_network *net)
{
    if (!m) return fail(CFNET_E_INVALID_ARGUMENT, "cfnet_mpi_attach: group is NULL");
    cfnet_status st = cfnet_mpi_check(m, net);
    if (st != CFNET_OK) return st;
    /* Same architecture everywhere, so the same tensors in the same order. */
    for (int i = 0; i < cfnet_network_layer_count(net); i++) {
        cfnet_layer *l = cfnet_network_layer(net, i);
        for (int p = 0; p < cfnet_layer_param_count(l); p++) {
            cfnet_tensor *t = cfnet_layer_param(l, p);
            st = bcast_floats(m, cfnet_tensor_data(t), cfnet_tensor_numel(t));
            if (st != CFNET_OK) return st;
        }
        for (int s = 0; s < cfnet_layer_state_count(l); s++) {
            cfnet_tensor *t = cfnet_layer_state(l, s);
            st = bcast_floats(m, cfnet_tensor_data(t), cfnet_tensor_numel(t));
            if (st != CFNET_OK) return st;
        }
    }
    st = cfnet_network_set_sum_hook(net, mpi_sum_hook, m);
    if (st != CFNET_OK) return fail_lib(st, "cfnet_mpi_attach");
    return CFNET_OK;
}

cfnet_status cfnet_mpi_detach(cfnet_mpi *m, cfnet_network *net)
{
    (void)m;
    cfnet_status st = cfnet_network_set_sum_hook(net, NULL, NULL);
    if (st == CFNET_OK) st = cfnet_network_set_batch_position(net, 0, 0);
    if (st != CFNET_OK) return fail_lib(st, "cfnet_mpi_detach");
    return CFNET_OK;
}

cfnet_status cfnet_mpi_share(const cfnet_mpi *m, int64_t global_n, int64_t *offset,
                             int64_t *count)
{
    if (!m || !offset || !count)
        return fail(CFNET_E_INVALID_ARGUMENT, "cfnet_mpi_share: NULL argument");
    if (global_n < m->size)
        return fail(CFNET_E_INVALID_ARGUMENT,
                    "cfnet_mpi_share: a global batch of %lld cannot give each of %d ranks a "
                    "sample",
                    (long long)global_n, m->size);
    int64_t base = global_n / m->size, extra = global_n % m->size, r = m->rank;
    *offset = r * base + (r < extra ? r : extra);
    *count = base + (r < extra ? 1 : 0);
    return CFNET_OK;
}

cfnet_status cfnet_mpi_set_batch(cfnet_mpi *m, cfnet_network *net, int64_t global_n,
                                 int64_t *offset, int64_t *count)
{
    int64_t off = 0, cnt = 0;
    cfnet_status st = cfnet_mpi_share(m, global_n, &off, &cnt);
    if (st != CFNET_OK) return st;
    st = cfnet_network_set_batch_position(net, off, global_n);
    if (st != CFNET_OK) return fail_lib(st, "cfnet_mpi_set_batch");
    if (offset) *offset = off;
    if (count) *count = cnt;
    return CFNET_OK;
}
