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
 * missing DATA folder) is printed once instead of once per rank.
 *
 * The check-in (check_in): every meeting of the ranks, the start vote and the tentative one,
 * each of the command's collectives (tool_mpi_sum, the gathers and the others below), each sum
 * of a training step (step_hook) and the end (tool_mpi_finish), begins with one all-reduce of
 * five ints on a communicator of its own, start_comm: which ranks failed (the lowest and the
 * highest), whether a training step failed on some rank, whether it is some rank's final
 * check-in (end_here), and tool_mpi_any's flag (a check-in that is the whole collective: a
 * step's flags, so that a step makes no more all-reduces than before the check-ins). A rank
 * out of memory anywhere in the command's own code (xmalloc and the others) reports it by a
 * check-in of its own as a failed rank (tool_mpi_report_oom), which meets the others' next
 * check-in, and ends there, and so does every other rank, at its own next check-in: since
 * no rank passes a check-in without the others, and no rank allocates between a check-in and
 * the collectives it guards, the others are then in that check-in, never in a collective the
 * failed rank left. A check-in allocates nothing: after its all-reduce, the
 * lowest failed rank broadcasts its status and a hash of its messages (an all-gather of every
 * rank's needed a buffer of one per rank). */
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
/* rank 0's counts and offsets of gather_text (an int per rank each), made once by
 * tool_mpi_init (NULL when it had no memory for them: then allocated at each gather, before
 * its check-in) */
static int *gather_ints;
/* the message of a rank out of memory, said by the check-in it ends at (no memory needed to
 * hold it) */
static char oom_note[200];

void tool_mpi_init(int *argc, char ***argv)
{
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK") && !getenv("PMI_SIZE")) return;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return;
    mpi_on = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
    if (mpi_size > 1) gather_ints = malloc(sizeof(int) * 2 * (size_t)mpi_size);
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

/* The check-in (see start_comm). rc: this rank's status (0: it goes on; a failure only at a
 * vote or out of memory); step: this rank's training step failed (tool_mpi_step_failed);
 * *step_any: some rank's did. vote: 0 for a collective's check-in, 1 a tentative vote
 * (tool_mpi_ready), 2 the start vote. No rank failed: 0 (at the start vote each rank says what
 * it held back, and the vote is over; at a tentative one stderr stays held). One or more did:
 * the lowest failed rank's status, on every rank; it says its held messages and its
 * out-of-memory note, and so does a failed rank whose messages differ from every lower
 * failed rank's, unless it ran out of memory itself (one message for ranks out of memory at
 * once: the lowest's); a rank that did not fail says what it held. Then it is the start vote, and every
 * rank ends (failing_together). */
static int check_in_as(int rc, int step, int *step_any, int vote, int final);
static int last_final; /* some rank's last check-in was its final one (see end_here) */
/* tool_mpi_any's flag, carried by its check-in (0 in every other), and whether some rank's was
 * set at the last check-in */
static int check_flag, flag_any;

static int check_in(int rc, int step, int *step_any, int vote)
{
    return check_in_as(rc, step, step_any, vote, 0);
}

static int check_in_as(int rc, int step, int *step_any, int vote, int final)
{
    int mine[5] = {rc ? mpi_size - mpi_rank : 0, rc ? mpi_rank + 1 : 0, step, final, check_flag},
        all[5];
    /* (no communicator of its own, made by tool_mpi_init: a step's flag on the step's) */
    MPI_Comm comm = start_comm != MPI_COMM_NULL ? start_comm : step_comm;
    MPI_Allreduce(mine, all, 5, MPI_INT, MPI_MAX, comm);
    if (step_any) *step_any = all[2];
    last_final = all[3];
    flag_any = all[4];
    char *text = NULL;
    size_t len = 0;
    if (!all[0]) {
        if (vote == 2) {
            voted = 1;
            take_early(&text, &len);
            if (len) fwrite(text, 1, len, stderr);
            free(text);
        }
        return 0;
    }
    const int first = mpi_size - all[0];
    take_early(&text, &len);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)text[i]) * 0x100000001b3ull;
    for (const char *p = oom_note; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    int64_t said[2] = {rc, (int64_t)h};
    MPI_Bcast(said, 2, MPI_INT64_T, first, comm);
    /* a failed rank says its messages unless a lower failed rank says the same: the lowest
     * says its own; then, while failed ranks with other messages remain (the highest failed
     * rank, all[1] - 1, is above the lowest), each round the lowest of them broadcasts its
     * hash and the ranks above it with the same one are quiet (on the failure path alone, a
     * round per other message, nothing allocated) */
    int said_lower = mpi_rank != first && said[1] == (int64_t)h;
    const int oom_quiet = oom_note[0] && mpi_rank != first;
    for (int settled = rc == 0 || mpi_rank == first || said_lower || oom_quiet;
         all[1] - 1 > first;) {
        int cand = settled ? mpi_size : mpi_rank, low = mpi_size;
        MPI_Allreduce(&cand, &low, 1, MPI_INT, MPI_MIN, comm);
        if (low >= mpi_size) break;
        int64_t theirs = (int64_t)h;
        MPI_Bcast(&theirs, 1, MPI_INT64_T, low, comm);
        if (mpi_rank == low) settled = 1;
        else if (!settled && theirs == (int64_t)h) settled = said_lower = 1;
    }
    const int quiet = rc != 0 && (said_lower || oom_quiet);
    if ((len || oom_note[0]) && !quiet) {
        if (len) fwrite(text, 1, len, stderr);
        fputs(oom_note, stderr);
        /* (not after the out-of-memory message alone: it names the rank) */
        if (rc != 0 && mpi_rank > 0 && (len || !oom_note[0]))
            fprintf(stderr, "cfnet: (the message above is rank %d's of %d)\n", mpi_rank,
                    mpi_size);
    }
    free(text);
    voted = 1;
    agreed_rc = (int)said[0];
    failing_together = 1; /* every rank stops here: nobody waits */
    return agreed_rc;
}

/* Ends this rank at a check-in of a collective that another rank's failure (out of memory)
 * ended: what the run made is removed (tool_fail_cleanup), MPI ends normally, and the process
 * exits with the failed rank's status. */
/* Every rank that ends normally makes one final check-in (tool_mpi_finish's, or this one's), so
 * that a rank out of memory while the others clean up meets them there: a rank that ends here
 * makes it too, unless the check-in it ends at was the others' final one (it ran out of memory
 * after their command had ended theirs). */
static void end_here(int rc) __attribute__((noreturn));
static int ending; /* (out of memory in the cleanup: no other check-in) */
static void end_here(int rc)
{
    const int final_made = last_final;
    ending = 1;
    tool_fail_cleanup();
    fflush(stdout);
    if (!final_made) (void)check_in_as(0, 0, NULL, 0, 1);
    MPI_Finalize();
    exit(rc);
}

/* A collective's check-in: returns when no rank is out of memory, else ends this rank */
static void meet(void)
{
    if (start_comm == MPI_COMM_NULL) return;
    const int rc = check_in(0, 0, NULL, 0);
    if (rc != 0) end_here(rc);
}

static int start_vote(int rc, int tentative)
{
    if (start_comm == MPI_COMM_NULL) {
        if (!tentative) voted = 1;
        return rc;
    }
    return check_in(rc, 0, NULL, tentative ? 1 : 2);
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
    if (!mpi_on) {
        out_settle(rc == EXIT_OK);
        return rc;
    }
    if (mpi_size > 1 && !voted) {
        /* failed (or done) before the start point: the vote tells every rank */
        int agreed = start_vote(rc, 0);
        if (rc != EXIT_OK) rc = agreed;
    }
    if (mpi_size > 1 && start_comm != MPI_COMM_NULL && (rc == EXIT_OK || failing_together)) {
        /* the last check-in, made by every rank that ends normally (every rank, or none: a
         * rank that fails alone ends the job below): a rank out of memory after its command's
         * last collective, or while it cleans up, ends here with the others (they ended MPI
         * without it, and mpirun ended it) */
        int agreed = check_in_as(0, 0, NULL, 0, 1);
        if (agreed != 0) rc = agreed;
    }
    /* rank 0's commit of eval --out held until here (out_commit_held): kept when every rank
     * ended well, else undone (the earlier report back), before the abort below ends the
     * others; a rank that fails alone before this check-in ends rank 0 by a signal, whose
     * handler undoes it as well */
    out_settle(rc == EXIT_OK);
    /* A rank that failed may have left the others waiting in a collective: end them all. Not
     * when every rank failed at the same check: an abort by one rank could then end rank 0
     * before its message is out, and the others are not waiting for anything. */
    if (rc != EXIT_OK && mpi_size > 1 && !failing_together) MPI_Abort(MPI_COMM_WORLD, rc);
    cfnet_mpi_free(group);
    group = NULL;
    if (step_comm != MPI_COMM_NULL) MPI_Comm_free(&step_comm);
    if (start_comm != MPI_COMM_NULL) MPI_Comm_free(&start_comm);
    free(gather_ints);
    gather_ints = NULL;
    MPI_Finalize();
    return rc;
}

void tool_mpi_fail_together(void) { failing_together = 1; }

int tool_mpi_report_oom(const char *what)
{
    static int once; /* (out of memory again while ending: the bare message and exit) */
    if (!mpi_on || mpi_size < 2 || start_comm == MPI_COMM_NULL || once || ending) return -1;
    once = 1;
    snprintf(oom_note, sizeof oom_note, "cfnet: error: rank %d of %d: out of memory%s%s\n",
             mpi_rank, mpi_size, what ? " for " : voted ? "" : " (setting up the command)",
             what ? what : "");
    /* (as the start vote's check-in: before the start vote the messages it held are said) */
    end_here(check_in(EXIT_RUNTIME, 0, NULL, 2));
}

int tool_mpi_active(void) { return mpi_on; }
int tool_mpi_rank(void) { return mpi_rank; }
int tool_mpi_size(void) { return mpi_size; }

int64_t tool_mpi_sum(int64_t v)
{
    if (mpi_size == 1) return v;
    int64_t s = 0;
    meet();
    MPI_Allreduce(&v, &s, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    return s;
}

int tool_mpi_any(int flag)
{
    if (mpi_size == 1) return flag != 0;
    if (start_comm == MPI_COMM_NULL) return tool_mpi_sum(flag != 0) != 0;
    /* the check-in is the collective: a training step's flags (its messages' and the
     * interrupt's) cost no all-reduce of their own */
    check_flag = flag != 0;
    const int rc = check_in(0, 0, NULL, 0);
    check_flag = 0;
    if (rc != 0) end_here(rc);
    return flag_any;
}

int tool_mpi_agree(const int64_t *v, int n)
{
    if (mpi_size == 1 || n <= 0) return -1;
    /* on the stack for the few values the command compares: no allocation that could fail */
    int64_t small[32];
    int64_t *lo = n <= 16 ? small : xmalloc(sizeof(int64_t) * 2 * (size_t)n), *hi = lo + n;
    meet();
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
    meet();
    return MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD) ==
                   MPI_SUCCESS ? 0 : -1;
}

int tool_mpi_sum_doubles(double *v, int64_t n)
{
    if (mpi_size == 1 || n == 0) return 0;
    if (n > 0x7fffffff) return -1;
    meet();
    return MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) ==
                   MPI_SUCCESS ? 0 : -1;
}

/* The train step's sum hook (installed by tool_mpi_attach in place of libcfnet_mpi's): each
 * call is one check-in (its flag of a failed step; see start_comm), then the sum itself on
 * step_comm. A rank whose step
 * failed on its own (a library error before or between the sums: out of memory, its share's
 * images not loaded) joins the flag of the call the others wait in with 1 (tool_mpi_step_failed),
 * and their hook returns at once: every rank leaves the same step, and none waits forever or
 * has to be ended by MPI_Abort. Per step (tool_mpi_set_batch resets them): step_grads, the
 * gradients' sum, the step's last, was made (a rank failing after it leaves nobody waiting);
 * step_left, this rank left the step through the flag. The flag's cost: one all-reduce of
 * five ints per sum, microseconds against a step's milliseconds (docs/distributed.md). */

static cfnet_status step_hook(void *user, cfnet_sum_kind kind, void *data, int64_t count)
{
    (void)user;
    const double t0 = MPI_Wtime();
    int any = 0;
    const int rc = check_in(0, 0, &any, 0);
    if (rc != 0) end_here(rc); /* another rank out of memory */
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
    int any = 0;
    const int rc = check_in(0, 1, &any, 0);
    if (rc != 0) end_here(rc); /* another rank out of memory */
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
    if (mpi_size == 1 || !tool_mpi_any(failed != 0)) {
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
    /* (rank 0's counts and offsets before the check-in: nothing is allocated between it and
     * the collectives, so that a rank out of memory meets the others there) */
    if (mpi_rank == 0) {
        counts = gather_ints ? gather_ints : xcalloc((size_t)mpi_size, sizeof(int));
        displs = gather_ints ? gather_ints + mpi_size : xcalloc((size_t)mpi_size, sizeof(int));
    }
    meet();
    MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    /* MPI_Gatherv places each rank's part at an int offset: more than INT_MAX bytes in all
     * (say 2 GB of predict rows over 8 ranks) would overflow rank 0's offsets, so rank 0 says
     * whether they fit and every rank skips the gather alike when they do not, or when rank 0
     * has no memory for them. CFNET_TEST_GATHER_MAX lowers the limit for tests/test_mpi.sh. */
    size_t total = 0;
    int fits = 1;
    if (mpi_rank == 0) {
        size_t max = 0x7fffffff;
        const char *t = getenv("CFNET_TEST_GATHER_MAX");
        if (limited && t && *t) max = (size_t)strtoull(t, NULL, 10);
        for (int r = 0; r < mpi_size; r++) {
            displs[r] = (int)total;
            total += (size_t)counts[r];
        }
        if (total > max) {
            tool_error("the ranks' output, %zu bytes, is too much to gather on rank 0 (at most "
                       "%zu bytes); write it in parts (fewer inputs per run)", total, max);
            fits = 0;
        } else if ((all = malloc(total ? total : 1)) == NULL) {
            tool_error("rank 0 of %d: out of memory for the ranks' output, %zu bytes", mpi_size,
                       total);
            fits = 0;
        }
    }
    MPI_Bcast(&fits, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (!fits) {
        if (counts != gather_ints) free(counts);
        if (!gather_ints) free(displs);
        gather_refused = 1;
        return -1;
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
int tool_mpi_finish(int rc)
{
    out_settle(rc == EXIT_OK);
    return rc;
}
int tool_mpi_started(void) { return 0; }
int tool_mpi_ready(void) { return 0; }
void tool_mpi_fail_together(void) {}
int tool_mpi_report_oom(const char *what)
{
    (void)what;
    return -1;
}
int tool_mpi_active(void) { return 0; }
int tool_mpi_rank(void) { return 0; }
int tool_mpi_size(void) { return 1; }
int64_t tool_mpi_sum(int64_t v) { return v; }
int tool_mpi_any(int flag) { return flag != 0; }
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
