/* The command under mpirun (built with mpicc, CFNET_TOOL_MPI): MPI starts only when a launcher
 * started the process, so a plain `cfnet ...` never touches MPI. Without CFNET_TOOL_MPI every
 * function is the single-process answer. */
#define _GNU_SOURCE
#include "tool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifdef CFNET_TOOL_MPI
#include <mpi.h>

#include "cfnet/cfnet_mpi.h"

static int mpi_on, mpi_rank, mpi_size = 1;
static cfnet_mpi *group; /* libcfnet_mpi's group of a distributed `cfnet train` */
static int failing_together; /* every rank fails at the same point: no abort needed */

/* The start vote (tool_mpi_started): until every rank has set up its command, each rank's
 * stderr goes to a memory buffer, so that a failure met by every rank alike (a usage error, a
 * missing DATA folder) is printed once instead of once per rank. The vote has a communicator
 * of its own: every rank takes part exactly once, at the command's start point or, if it
 * failed or finished before, in tool_mpi_finish, so it always matches. */
static MPI_Comm start_comm = MPI_COMM_NULL;
static int voted, agreed_rc;
static FILE *real_stderr;
static char *early;
static size_t early_len;
/* the train step's sums (step_hook, below) */
static MPI_Comm step_comm = MPI_COMM_NULL;
static int step_grads, step_left;
static int64_t hook_calls, hook_bytes;
static double hook_seconds;
/* The votes' own buffers, made once by tool_mpi_init so that a vote or a gather cannot fail
 * for lack of memory: the start vote's (two int64_t per rank) and rank 0's counts and offsets
 * of gather_text (an int per rank each). NULL when tool_mpi_init had no memory for them (the
 * first thing the process asks for after MPI_Init): then they are allocated at each use. */
static int64_t *vote_all;
static int *gather_ints;
/* A tentative vote passed (tool_mpi_ready): until tool_mpi_met the ranks meet in other
 * collectives (on MPI_COMM_WORLD) before the start vote, so a rank out of memory there cannot
 * join the start vote instead (the others would wait in theirs): see tool_mpi_oom_vote. */
static int in_meeting;
/* the message of a rank out of memory before the start vote, said by that vote (no memory
 * needed to hold it) */
static char oom_note[200];

void tool_mpi_init(int *argc, char ***argv)
{
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK") && !getenv("PMI_SIZE")) return;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return;
    mpi_on = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
    if (mpi_size > 1) {
        vote_all = malloc(sizeof(int64_t) * 2 * (size_t)mpi_size);
        gather_ints = malloc(sizeof(int) * 2 * (size_t)mpi_size);
    }
    if (mpi_size > 1 && MPI_Comm_dup(MPI_COMM_WORLD, &start_comm) == MPI_SUCCESS) {
        FILE *f = open_memstream(&early, &early_len);
        if (f) {
            real_stderr = stderr;
            stderr = f;
        }
    }
}

/* stderr back to the real one; *text, *len: what was held back (a heap string or NULL, 0) */
static void take_early(char **text, size_t *len)
{
    if (!real_stderr) return;
    fclose(stderr);
    stderr = real_stderr;
    real_stderr = NULL;
    *text = early;
    *len = early_len;
    early = NULL;
}

/* Every rank states its status (0: ready to go on); the status of the lowest failed rank, or
 * 0, is returned on every rank. A failed rank prints its buffered messages unless a lower
 * failed rank printed the same. tentative (tool_mpi_ready, status 0): when no rank failed,
 * stderr stays held back and the vote is still to come; when one did, this is the vote. A rank
 * that failed before takes part once, through tool_mpi_finish, in whichever vote the others
 * are in: both are the same Allgather on start_comm. */
static int start_vote(int rc, int tentative)
{
    if (start_comm == MPI_COMM_NULL) {
        if (!tentative) voted = 1;
        return rc;
    }
    char *text = NULL;
    size_t len = 0;
    uint64_t h = 0xcbf29ce484222325ull;
    if (!tentative) {
        take_early(&text, &len);
        for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)text[i]) * 0x100000001b3ull;
        for (const char *p = oom_note; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    }
    int64_t mine[2] = {rc, (int64_t)h};
    int64_t *all = vote_all ? vote_all : xmalloc(sizeof(int64_t) * 2 * (size_t)mpi_size);
    MPI_Allgather(mine, 2, MPI_INT64_T, all, 2, MPI_INT64_T, start_comm);
    int first = -1, said = 0;
    for (int r = 0; r < mpi_size; r++) {
        if (all[2 * r] == 0) continue;
        if (first < 0) first = r;
        if (r < mpi_rank && all[2 * r + 1] == mine[1]) said = 1;
    }
    const int64_t first_rc = first < 0 ? 0 : all[2 * first];
    if (all != vote_all) free(all);
    if (tentative && first < 0) {
        in_meeting = 1; /* the caller's collectives follow, until tool_mpi_met */
        return 0;
    }
    voted = 1;
    agreed_rc = (int)first_rc;
    if (tentative) take_early(&text, &len); /* rc is 0 here: said as in a vote */
    if ((len || oom_note[0]) && (rc == 0 || !said)) {
        if (len) fwrite(text, 1, len, stderr);
        fputs(oom_note, stderr);
        /* (not after the out-of-memory message alone: it names the rank) */
        if (rc != 0 && mpi_rank > 0 && (len || !oom_note[0]))
            fprintf(stderr, "cfnet: (the message above is rank %d's of %d)\n", mpi_rank,
                    mpi_size);
    }
    free(text);
    if (agreed_rc != 0) failing_together = 1; /* every rank stops here: nobody waits */
    return agreed_rc;
}

int tool_mpi_started(void)
{
    return mpi_size > 1 && !voted ? start_vote(0, 0) : 0;
}

int tool_mpi_ready(void)
{
    return mpi_size > 1 && !voted ? start_vote(0, 1) : 0;
}

int tool_mpi_finish(int rc)
{
    if (!mpi_on) return rc;
    if (mpi_size > 1 && !voted) {
        /* failed (or done) before the start point: the vote tells every rank */
        int agreed = start_vote(rc, 0);
        if (rc != EXIT_OK) rc = agreed;
    }
    /* A rank that failed may have left the others waiting in a collective: end them all. Not
     * when every rank failed at the same check: an abort by one rank could then end rank 0
     * before its message is out, and the others are not waiting for anything. */
    if (rc != EXIT_OK && mpi_size > 1 && !failing_together) MPI_Abort(MPI_COMM_WORLD, rc);
    cfnet_mpi_free(group);
    group = NULL;
    if (step_comm != MPI_COMM_NULL) MPI_Comm_free(&step_comm);
    if (start_comm != MPI_COMM_NULL) MPI_Comm_free(&start_comm);
    free(vote_all);
    free(gather_ints);
    vote_all = NULL;
    gather_ints = NULL;
    MPI_Finalize();
    return rc;
}

void tool_mpi_fail_together(void) { failing_together = 1; }

void tool_mpi_met(void) { in_meeting = 0; }

int tool_mpi_oom_vote(const char *what)
{
    static int once; /* (the vote itself out of memory: the bare message and exit) */
    if (!mpi_on || mpi_size < 2 || voted || in_meeting || start_comm == MPI_COMM_NULL || once)
        return -1;
    once = 1;
    snprintf(oom_note, sizeof oom_note, "cfnet: error: rank %d of %d: out of memory%s%s\n",
             mpi_rank, mpi_size, what ? " for " : " (setting up the command)", what ? what : "");
    return tool_mpi_finish(EXIT_RUNTIME);
}

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
    /* on the stack for the few values the command compares: no allocation that could fail */
    int64_t small[32];
    int64_t *lo = n <= 16 ? small : xmalloc(sizeof(int64_t) * 2 * (size_t)n), *hi = lo + n;
    MPI_Allreduce(v, lo, n, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(v, hi, n, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    int first = -1;
    for (int i = 0; i < n && first < 0; i++)
        if (lo[i] != hi[i]) first = i;
    if (lo != small) free(lo);
    return first;
}

int tool_mpi_sum_counts(int64_t *v, int64_t n)
{
    if (mpi_size == 1 || n == 0) return 0;
    if (n > 0x7fffffff) return -1;
    return MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD) ==
                   MPI_SUCCESS ? 0 : -1;
}

int tool_mpi_sum_doubles(double *v, int64_t n)
{
    if (mpi_size == 1 || n == 0) return 0;
    if (n > 0x7fffffff) return -1;
    return MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) ==
                   MPI_SUCCESS ? 0 : -1;
}

/* The train step's sum hook (installed by tool_mpi_attach in place of libcfnet_mpi's): each
 * call is one MPI_Allreduce of a flag on step_comm, then the sum itself. A rank whose step
 * failed on its own (a library error before or between the sums: out of memory, its share's
 * images not loaded) joins the flag of the call the others wait in with 1 (tool_mpi_step_failed),
 * and their hook returns at once: every rank leaves the same step, and none waits forever or
 * has to be ended by MPI_Abort. Per step (tool_mpi_set_batch resets them): step_grads, the
 * gradients' sum, the step's last, was made (a rank failing after it leaves nobody waiting);
 * step_left, this rank left the step through the flag. The flag's cost: one all-reduce of an
 * int per sum, microseconds against a step's milliseconds (docs/distributed.md). */

static cfnet_status step_hook(void *user, cfnet_sum_kind kind, void *data, int64_t count)
{
    (void)user;
    const double t0 = MPI_Wtime();
    int mine = 0, any = 0;
    if (MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, step_comm) != MPI_SUCCESS)
        return CFNET_E_IO;
    if (any) {
        step_left = 1;
        return CFNET_E_CANCELLED;
    }
    const int grads = kind == CFNET_SUM_GRADIENTS;
    const size_t elem = grads ? sizeof(float) : sizeof(double);
    const int64_t chunk = 1 << 28;
    for (int64_t done = 0; done < count; done += chunk) {
        int64_t n = count - done < chunk ? count - done : chunk;
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)data + (size_t)done * elem, (int)n,
                          grads ? MPI_FLOAT : MPI_DOUBLE, MPI_SUM, step_comm) != MPI_SUCCESS)
            return CFNET_E_IO;
    }
    hook_seconds += MPI_Wtime() - t0;
    hook_calls++;
    hook_bytes += count * (int64_t)elem;
    if (grads) step_grads = 1;
    return CFNET_OK;
}

int tool_mpi_step_failed(void)
{
    if (step_comm == MPI_COMM_NULL || step_grads || step_left) return 0;
    int mine = 1, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, step_comm);
    step_left = 1;
    return 1;
}

int tool_mpi_step_left(void) { return step_left; }

/* CFNET_TEST_SET_BATCH_RANK, a test hook (tests/test_mpi.sh): that rank's batch shares are
 * asked for a global batch of -1, which libcfnet_mpi refuses: a failed tool_mpi_set_batch.
 * Only a rank number written in digits counts (atoi made any other text, "yes" say, rank 0). */
static int test_bad_share;

int tool_mpi_attach(cfnet_network *net)
{
    const char *t = getenv("CFNET_TEST_SET_BATCH_RANK");
    char *end = NULL;
    const long tr = t && *t >= '0' && *t <= '9' ? strtol(t, &end, 10) : -1;
    test_bad_share = end && *end == '\0' && tr == mpi_rank;
    /* cfnet_mpi_create makes its MPI_Comm_dup first, then the group's memory, then agrees on
     * which rank had none: it fails alike on every rank, with the same message naming that
     * rank, so rank 0 says it once and every rank ends normally (the rank without memory
     * failed before the MPI_Comm_dup the others waited in, and the job ended by MPI_Abort).
     * MPI_Comm_dup's and the all-reduce's own errors are fatal to the job
     * (MPI_ERRORS_ARE_FATAL). */
    cfnet_status st = group ? CFNET_OK : cfnet_mpi_create(MPI_COMM_WORLD, &group);
    if (st != CFNET_OK) {
        group = NULL;
        if (mpi_rank == 0)
            tool_error("%s: %s", cfnet_status_string(st), cfnet_mpi_last_error());
        failing_together = 1;
        return -1;
    }
    /* A network that differs from rank 0's fails the check on every rank alike: rank 0 says
     * so once, and every rank ends normally (an abort could cut rank 0's message off). */
    if (cfnet_mpi_check(group, net) != CFNET_OK) {
        if (mpi_rank == 0)
            tool_error("%s (start every rank with the same arguments, --threads included)",
                       cfnet_mpi_last_error());
        failing_together = 1;
        return -1;
    }
    /* From here every rank makes the same collectives (the attach's check and broadcasts, the
     * duplication of step_comm) whatever failed before on it, then one sum (tool_hold_end): a
     * failure on any rank is said by rank 0 and every rank ends with status 1 (each rank said
     * its own and ended the job by MPI_Abort). cfnet_mpi_attach checks the network again: after
     * the check above it fails only there, alike on every rank (a rank that cannot describe
     * its network again, out of memory), so rank 0 alone says it; its broadcasts' MPI errors
     * are fatal to the job. */
    tool_held hold;
    tool_hold_begin(&hold, " (attaching the MPI sums)");
    int failed = hold.unheld[0] != '\0';
    st = cfnet_mpi_attach(group, net);
    if (st != CFNET_OK) {
        if (mpi_rank == 0) tool_error("%s", cfnet_mpi_last_error());
        failed = 1;
    }
    if (step_comm == MPI_COMM_NULL && MPI_Comm_dup(MPI_COMM_WORLD, &step_comm) != MPI_SUCCESS) {
        step_comm = MPI_COMM_NULL;
        tool_error("rank %d of %d: MPI_Comm_dup failed", mpi_rank, mpi_size);
        failed = 1;
    }
    if (!failed) {
        st = cfnet_network_set_sum_hook(net, step_hook, NULL);
        if (st != CFNET_OK) {
            tool_error("rank %d of %d: %s: %s", mpi_rank, mpi_size, cfnet_status_string(st),
                       cfnet_last_error());
            failed = 1;
        }
    }
    return tool_hold_end(&hold, failed) != 0 ? -1 : 0;
}

int tool_mpi_set_batch(cfnet_network *net, int64_t global_n, int64_t *offset, int64_t *count)
{
    step_grads = step_left = 0;
    *offset = *count = 0;
    cfnet_status st = group ? cfnet_mpi_set_batch(group, net, test_bad_share ? -1 : global_n,
                                                  offset, count)
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
    if (calls) *calls = hook_calls;
    if (bytes) *bytes = hook_bytes;
    if (seconds) *seconds = hook_seconds;
}

/* A gather refused as too big (the same on every rank: rank 0's verdict is broadcast): the
 * later gathers of the run are refused too, at once and without another message */
static int gather_refused;

/* tool_mpi_gather_text without the limit of CFNET_TEST_GATHER_MAX when !limited; keep (rank
 * 0, not NULL): every rank's bytes, rank 0's too, are handed over in *keep (a heap buffer),
 * *keep_len, instead of written to out */
static int gather_text(const char *buf, size_t len, FILE *out, int limited, char **keep,
                       size_t *keep_len);

int tool_mpi_gather_text(const char *buf, size_t len, FILE *out)
{
    return gather_text(buf, len, out, 1, NULL, NULL);
}

int tool_mpi_gather_all(const char *buf, size_t len, char **all, size_t *all_len)
{
    *all = NULL;
    *all_len = 0;
    int rc = gather_text(buf, len, NULL, 0, mpi_rank == 0 ? all : NULL, all_len);
    return tool_mpi_sum(rc != 0) != 0 ? -1 : 0;
}

int tool_mpi_gather_refused(void) { return gather_refused; }

int tool_mpi_say_failures(int failed, const char *held, size_t len)
{
    if (mpi_size == 1 || tool_mpi_sum(failed != 0) == 0) {
        if (len) tool_say_held(held, len);
        return mpi_size == 1 ? failed != 0 : 0;
    }
    /* rank 0 writes its own messages, then every other rank's in rank order (the shares are
     * contiguous in input order, so that is input order too); nothing from the others */
    if (mpi_rank == 0) tool_say_held(held, len);
    if (gather_text(held, mpi_rank ? len : 0, mpi_rank ? NULL : stderr, 0, NULL, NULL) != 0 &&
        mpi_rank == 0)
        fputs("cfnet: error: the other MPI ranks' messages could not be gathered\n", stderr);
    failing_together = 1;
    return 1;
}

static int gather_text(const char *buf, size_t len, FILE *out, int limited, char **keep,
                       size_t *keep_len)
{
    if (mpi_size == 1) return 0;
    if (gather_refused && limited) return -1;
    int rc = 0, n = (int)len, *counts = NULL, *displs = NULL;
    if (len > (size_t)0x7fffffff) { /* still takes part in the collectives, with nothing */
        tool_error("rank %d: %zu bytes of output are too many to gather", mpi_rank, len);
        rc = -1;
        n = 0;
    }
    char *all = NULL;
    if (mpi_rank == 0)
        counts = gather_ints ? gather_ints : xcalloc((size_t)mpi_size, sizeof(int));
    MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    /* MPI_Gatherv places each rank's part at an int offset: more than INT_MAX bytes in all
     * (say 2 GB of predict rows over 8 ranks) would overflow rank 0's offsets, so rank 0 says
     * whether they fit and every rank skips the gather alike when they do not.
     * CFNET_TEST_GATHER_MAX lowers the limit for tests/test_mpi.sh. */
    size_t total = 0;
    int fits = 1;
    if (mpi_rank == 0) {
        size_t max = 0x7fffffff;
        const char *t = getenv("CFNET_TEST_GATHER_MAX");
        if (limited && t && *t) max = (size_t)strtoull(t, NULL, 10);
        for (int r = 0; r < mpi_size; r++) total += (size_t)counts[r];
        if (total > max) {
            tool_error("the ranks' output, %zu bytes, is too much to gather on rank 0 (at most "
                       "%zu bytes); write it in parts (fewer inputs per run)", total, max);
            fits = 0;
        }
        total = 0;
    }
    MPI_Bcast(&fits, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (!fits) {
        if (counts != gather_ints) free(counts);
        gather_refused = 1;
        return -1;
    }
    if (mpi_rank == 0) {
        displs = gather_ints ? gather_ints + mpi_size : xcalloc((size_t)mpi_size, sizeof(int));
        for (int r = 0; r < mpi_size; r++) {
            displs[r] = (int)total;
            total += (size_t)counts[r];
        }
        all = xmalloc(total ? total : 1);
    }
    MPI_Gatherv(buf, n, MPI_CHAR, all, counts, displs, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (mpi_rank == 0 && keep) {
        *keep = all;
        *keep_len = total;
        all = NULL;
    } else if (mpi_rank == 0) {
        /* rank 0's own rows are already in `out`; the others follow in rank order */
        size_t own = (size_t)counts[0];
        if (total > own && !out) { /* rank 0's stream could not be made (out of memory) */
            tool_error("the other ranks' output: no stream to write it to");
            rc = -1;
        } else if (total > own && fwrite(all + own, 1, total - own, out) != total - own) {
            tool_error("writing the other ranks' rows: %s", strerror(errno));
            rc = -1;
        }
    }
    if (counts != gather_ints) free(counts);
    if (!gather_ints) free(displs);
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
int tool_mpi_started(void) { return 0; }
int tool_mpi_ready(void) { return 0; }
void tool_mpi_fail_together(void) {}
void tool_mpi_met(void) {}
int tool_mpi_oom_vote(const char *what)
{
    (void)what;
    return -1;
}
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
int tool_mpi_sum_counts(int64_t *v, int64_t n)
{
    (void)v;
    (void)n;
    return 0;
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
int tool_mpi_step_failed(void) { return 0; }
int tool_mpi_step_left(void) { return 0; }
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
int tool_mpi_say_failures(int failed, const char *held, size_t len)
{
    if (len) tool_say_held(held, len);
    return failed != 0;
}
int tool_mpi_gather_refused(void) { return 0; }
int tool_mpi_gather_all(const char *buf, size_t len, char **all, size_t *all_len)
{
    *all = len ? xmalloc(len) : NULL;
    if (len) memcpy(*all, buf, len);
    *all_len = len;
    return 0;
}
#endif

void tool_hold_begin(tool_held *h, const char *when)
{
    const int rank = tool_mpi_rank(), size = tool_mpi_size();
    h->f = NULL;
    h->text = NULL;
    h->len = 0;
    h->unheld[0] = '\0';
    if (size > 1) h->f = open_memstream(&h->text, &h->len);
    if (size > 1 && !h->f)
        snprintf(h->unheld, sizeof h->unheld,
                 "cfnet: error: rank %d of %d: a memory stream for its messages%s: %s\n", rank,
                 size, when ? when : "", strerror(errno));
    tool_hold_messages(h->f);
}

int tool_hold_end(tool_held *h, int failed)
{
    tool_hold_messages(NULL);
    const char *text = h->unheld;
    size_t len = strlen(h->unheld);
    char *joined = NULL, note[240];
    if (h->f && fclose(h->f) != 0) {
        /* the stream could not take its last messages (out of memory): what it kept, then the
         * loss said, and this rank counts as failed (never an exit 0 with a message dropped) */
        int n = snprintf(note, sizeof note,
                         "cfnet: error: rank %d of %d: its messages could not all be held (%s); "
                         "some are lost\n", tool_mpi_rank(), tool_mpi_size(), strerror(errno));
        size_t kept = h->text ? h->len : 0, nl = n > 0 ? strlen(note) : 0;
        joined = malloc(kept + nl + 1);
        text = joined ? joined : note;
        len = joined ? kept + nl : nl;
        if (joined) {
            if (kept) memcpy(joined, h->text, kept);
            memcpy(joined + kept, note, nl);
        }
        failed = 1;
    } else if (h->f) {
        text = h->text ? h->text : "";
        len = h->text ? h->len : 0;
    }
    int rc = tool_mpi_say_failures(failed, text, len);
    h->f = NULL;
    free(joined);
    free(h->text);
    h->text = NULL;
    return rc;
}

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
