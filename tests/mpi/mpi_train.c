/* Multi-process driver for the MPI tests and benchmark (tests/test_mpi.sh, tests/mpi/bench.sh).
 *
 *   mpi_train equiv OUT [adam]   5 steps of global batch 50 on a small CFNet with synchronised
 *                                batch norm, dropout and augmentation; rank 0 writes every
 *                                parameter and state value (float32) to OUT
 *   mpi_train compare A B TOL    (no MPI) max |a - b| / max |b| <= TOL over the two files
 *   mpi_train mismatch           rank 1 sets another learning rate: cfnet_mpi_attach must fail
 *                                on every rank with one message (printed by rank 0)
 *   mpi_train fault CKPT         rank 0 checkpoints after steps 1..3 (atomic save), then rank 1
 *                                kills itself during step 4; the job must end, not hang
 *   mpi_train verify CKPT STEP   (no MPI) the checkpoint loads, is at STEP and trains on
 *   mpi_train nullcomm           MPI_COMM_NULL on some ranks: rank 0 on a communicator of its
 *                                own (MPI_Comm_split, MPI_UNDEFINED elsewhere), every other rank
 *                                MPI_COMM_NULL: they get CFNET_E_INVALID_ARGUMENT, rank 0 a group
 *   mpi_train nullcomm-abort     rank 1 passes MPI_COMM_NULL while rank 0 passes MPI_COMM_WORLD:
 *                                rank 1 follows the message (MPI_Abort), which ends the job
 *   mpi_train api                the rest of cfnet_mpi.h on any number of ranks: rank and size,
 *                                cfnet_mpi_sum, cfnet_mpi_share, cfnet_mpi_traffic (the hook's
 *                                traffic only), a missing network on one rank, detach, and
 *                                bad arguments
 *   mpi_train bench STEPS THREADS  the yeast-size CFNet (2x64x64, batch 50): images/s and the
 *                                all-reduce traffic per step, printed by rank 0
 * Exit status 0 on success; every failure prints one line naming the rank. */
#include <cfnet/cfnet_mpi.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GLOBAL 50

static int rank_ = -1;

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "mpi_train (rank %d): %s: %s\n", rank_, what, msg);
    if (rank_ >= 0) MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static void check(cfnet_status st, const char *what)
{
    if (st != CFNET_OK) die(what, cfnet_last_error());
}

static void check_mpi(cfnet_status st, const char *what)
{
    if (st != CFNET_OK) die(what, cfnet_mpi_last_error());
}

#define ADD(call)                                    \
    do {                                             \
        cfnet_layer *l_ = NULL;                      \
        check(call, #call);                          \
        check(cfnet_network_append(net, l_), "append"); \
    } while (0)

/* Small CFNet with everything whose randomness or statistics a split could change. */
static cfnet_network *small_net(int adam)
{
    cfnet_network *net = NULL;
    check(cfnet_network_create(2, 24, 24, 11, &net), "network");
    ADD(cfnet_layer_conic_conv_create(8, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l_));
    ADD(cfnet_layer_batch_norm_create(0.1f, 1e-3f, &l_));
    ADD(cfnet_layer_relu_create(&l_));
    ADD(cfnet_layer_dropout_create(0.2f, &l_));
    ADD(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
    ADD(cfnet_layer_conic_conv_create(8, 3, 1, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l_));
    ADD(cfnet_layer_batch_norm_create(0.1f, 1e-3f, &l_));
    ADD(cfnet_layer_relu_create(&l_));
    ADD(cfnet_layer_dft_projection_create(8, 1, CFNET_INTERP_NEAREST, &l_));
    ADD(cfnet_layer_batch_norm_create(0.1f, 1e-3f, &l_));
    ADD(cfnet_layer_relu_create(&l_));
    ADD(cfnet_layer_dft_magnitude_create(&l_));
    ADD(cfnet_layer_dropout_create(0.2f, &l_));
    ADD(cfnet_layer_dense_create(6, &l_));
    check(cfnet_network_set_option(net, CFNET_OPTION_OPTIMIZER,
                                   adam ? CFNET_OPTIMIZER_ADAM : CFNET_OPTIMIZER_SGD),
          "optimizer");
    check(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, adam ? 5e-3 : 0.05), "lr");
    check(cfnet_network_set_option(net, CFNET_OPTION_WEIGHT_DECAY, 5e-4), "decay");
    check(cfnet_network_set_option(net, CFNET_OPTION_AUG_ROTATION, CFNET_AUG_ROTATION_ANY),
          "rotation");
    check(cfnet_network_set_option(net, CFNET_OPTION_AUG_JITTER, 3), "jitter");
    check(cfnet_network_set_option(net, CFNET_OPTION_AUG_FLIP, 1), "flip");
    return net;
}

/* The yeast CFNet of the paper's original code (as bench/bench_nets.c builds it). */
static cfnet_network *yeast_net(void)
{
    static const int R[7] = {2, 2, 2, 1, 1, 1, 1};
    cfnet_network *net = NULL;
    check(cfnet_network_create(2, 64, 64, 7, &net), "network");
    for (int i = 0; i < 7; i++) {
        ADD(cfnet_layer_conic_conv_create(32, 3, R[i], CFNET_PADDING_SAME, CFNET_INTERP_NEAREST,
                                          &l_));
        ADD(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
        ADD(cfnet_layer_relu_create(&l_));
        if (i == 1 || i == 3) ADD(cfnet_layer_pool_create(CFNET_POOL_MEAN, 2, 2, &l_));
    }
    ADD(cfnet_layer_dft_projection_create(32, 1, CFNET_INTERP_NEAREST, &l_));
    ADD(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    ADD(cfnet_layer_relu_create(&l_));
    ADD(cfnet_layer_dft_magnitude_create(&l_));
    ADD(cfnet_layer_dropout_create(0.2f, &l_));
    ADD(cfnet_layer_dense_create(22, &l_));
    check(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, 1e-4), "lr");
    return net;
}

/* Deterministic data: sample i of the data set, the same on every rank. */
static void sample(int64_t i, int64_t size, int classes, float *x, int32_t *y)
{
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
    for (int64_t j = 0; j < size; j++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[j] = (float)((double)(s >> 11) * 0x1p-53 - 0.5);
    }
    *y = (int32_t)(i % classes);
}

/* One training step on sample 0 alone (a 2 x 24 x 24 image), outside any data-parallel split. */
static cfnet_status one_sample_step(cfnet_network *net)
{
    float x[2 * 24 * 24];
    int32_t y;
    sample(0, 2 * 24 * 24, 6, x, &y);
    const int64_t xs[4] = {1, 2, 24, 24};
    cfnet_tensor *t = NULL;
    cfnet_status st = cfnet_tensor_wrap(x, 4, xs, &t);
    if (st == CFNET_OK) st = cfnet_network_train_step(net, t, &y, 1, NULL);
    cfnet_tensor_free(t);
    return st;
}

/* Trains `steps` steps of the global batch; global batch s is data set samples
 * [s * GLOBAL, (s + 1) * GLOBAL). This rank loads only its share. */
static void train(cfnet_mpi *m, cfnet_network *net, int first_step, int steps, int classes,
                  const char *ckpt, int die_rank, int die_step)
{
    int64_t nd, shape[CFNET_MAX_DIMS];
    int ndim;
    check(cfnet_network_input_shape(net, &ndim, shape), "input shape");
    nd = shape[0] * shape[1] * shape[2];
    for (int s = first_step; s < first_step + steps; s++) {
        int64_t off, cnt;
        check_mpi(cfnet_mpi_set_batch(m, net, GLOBAL, &off, &cnt), "set batch");
        float *x = malloc((size_t)(cnt * nd) * sizeof(float));
        int32_t *y = malloc((size_t)cnt * sizeof(int32_t));
        for (int64_t i = 0; i < cnt; i++)
            sample((int64_t)s * GLOBAL + off + i, nd, classes, x + i * nd, y + i);
        const int64_t xs[4] = {cnt, shape[0], shape[1], shape[2]};
        cfnet_tensor *t = NULL;
        check(cfnet_tensor_wrap(x, 4, xs, &t), "wrap");
        if (s == die_step && rank_ == die_rank) raise(SIGKILL);
        float loss;
        check(cfnet_network_train_step(net, t, y, cnt, &loss), "train step");
        cfnet_tensor_free(t);
        free(x);
        free(y);
        if (ckpt) { /* the checkpoint of step s + 1 is complete before any rank goes on */
            if (rank_ == 0) check(cfnet_network_save(net, ckpt, CFNET_SAVE_OPTIMIZER), "save");
            MPI_Barrier(MPI_COMM_WORLD);
        }
    }
}

static int64_t dump(const cfnet_network *net, float *out)
{
    int64_t n = 0;
    for (int i = 0; i < cfnet_network_layer_count(net); i++) {
        cfnet_layer *l = cfnet_network_layer(net, i);
        for (int k = 0; k < cfnet_layer_param_count(l) + cfnet_layer_state_count(l); k++) {
            int np = cfnet_layer_param_count(l);
            cfnet_tensor *t = k < np ? cfnet_layer_param(l, k) : cfnet_layer_state(l, k - np);
            if (out) memcpy(out + n, cfnet_tensor_data(t), (size_t)cfnet_tensor_numel(t) * 4);
            n += cfnet_tensor_numel(t);
        }
    }
    return n;
}

static float *read_floats(const char *path, long *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) die(path, "cannot open");
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *v = malloc((size_t)bytes + 4);
    if (fread(v, 1, (size_t)bytes, f) != (size_t)bytes) die(path, "short read");
    fclose(f);
    *n = bytes / 4;
    return v;
}

static int compare(const char *a, const char *b, double tol)
{
    long na, nb;
    float *x = read_floats(a, &na), *y = read_floats(b, &nb);
    if (na != nb || na == 0) die("compare", "files differ in length");
    double scale = 0, worst = 0;
    for (long i = 0; i < na; i++) {
        scale = fmax(scale, fabs((double)y[i]));
        double d = fabs((double)x[i] - (double)y[i]);
        if (!(d <= worst)) worst = d;
    }
    double rel = worst / scale;
    printf("compare: %ld values, max |a - b| / max |b| = %.3g (tolerance %.3g)\n", na, rel, tol);
    free(x);
    free(y);
    return rel <= tol ? 0 : 1;
}

/* Two model files (e.g. from `cfnet train` on different rank counts): every parameter and
 * batch-norm statistic, max |a - b| / max |b| against tol. */
static int compare_models(const char *a, const char *b, double tol)
{
    cfnet_network *na = NULL, *nb = NULL;
    check(cfnet_network_load(a, &na), a);
    check(cfnet_network_load(b, &nb), b);
    int64_t n = dump(na, NULL);
    if (n != dump(nb, NULL) || n == 0) die("compare-models", "the models differ in size");
    float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
    dump(na, x);
    dump(nb, y);
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs((double)y[i]));
        double d = fabs((double)x[i] - (double)y[i]);
        if (!(d <= worst)) worst = d;
    }
    double rel = worst / scale;
    printf("compare-models: %lld values, max |a - b| / max |b| = %.3g (tolerance %.3g)\n",
           (long long)n, rel, tol);
    free(x);
    free(y);
    cfnet_network_free(na);
    cfnet_network_free(nb);
    return rel <= tol ? 0 : 1;
}

#define EXPECT(cond)                                                                   \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "api (rank %d): line %d: %s\n", rank_, __LINE__, #cond);      \
            failed = 1;                                                                \
        }                                                                              \
    } while (0)

/* MPI_COMM_NULL on some ranks only (cfnet_mpi_create's documentation). */
static int null_comm(void)
{
    int failed = 0;
    MPI_Comm sub = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, rank_ == 0 ? 0 : MPI_UNDEFINED, 0, &sub);
    cfnet_mpi *g = NULL;
    cfnet_status st = cfnet_mpi_create(sub, &g);
    if (rank_ == 0) {
        double v = 2;
        EXPECT(st == CFNET_OK && cfnet_mpi_size(g) == 1 && cfnet_mpi_rank(g) == 0);
        EXPECT(cfnet_mpi_sum(g, &v, 1) == CFNET_OK && v == 2);
        cfnet_mpi_free(g);
        MPI_Comm_free(&sub);
    } else {
        EXPECT(st == CFNET_E_INVALID_ARGUMENT && !g);
        EXPECT(strstr(cfnet_mpi_last_error(), "MPI_COMM_NULL on this rank") != NULL);
        EXPECT(strstr(cfnet_mpi_last_error(), "MPI_Abort") != NULL);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (!failed) printf("nullcomm: rank %d: %s\n", rank_, st == CFNET_OK ? "a group of 1" :
                                                        cfnet_mpi_last_error());
    return failed;
}

static int api(cfnet_mpi *m)
{
    int failed = 0, size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    EXPECT(cfnet_mpi_rank(m) == rank_ && cfnet_mpi_size(m) == size);
    EXPECT(cfnet_mpi_rank(NULL) == -1 && cfnet_mpi_size(NULL) == 0);
    /* sums (collective) */
    double v[2] = {rank_ + 1, 0.5};
    EXPECT(cfnet_mpi_sum(m, v, 2) == CFNET_OK);
    EXPECT(v[0] == size * (size + 1) / 2.0 && v[1] == 0.5 * size);
    EXPECT(cfnet_mpi_sum(m, NULL, 0) == CFNET_OK);
    EXPECT(cfnet_mpi_sum(m, NULL, 1) == CFNET_E_INVALID_ARGUMENT);
    EXPECT(cfnet_mpi_sum(m, v, -1) == CFNET_E_INVALID_ARGUMENT);
    EXPECT(cfnet_mpi_sum(NULL, v, 1) == CFNET_E_INVALID_ARGUMENT);
    /* bad arguments on one rank, or counts that differ: every rank returns the error, and the
     * next sum still pairs with the others' (no rank waits, no MPI_ERR_TRUNCATE abort) */
    if (size > 1) {
        double w[3] = {1, 2, 3};
        EXPECT(cfnet_mpi_sum(m, rank_ == 1 ? NULL : w, 3) == CFNET_E_INVALID_ARGUMENT);
        EXPECT(strstr(cfnet_mpi_last_error(), "NULL buffer") != NULL);
        EXPECT(cfnet_mpi_sum(m, w, rank_ == size - 1 ? 2 : 3) == CFNET_E_INVALID_ARGUMENT);
        EXPECT(strstr(cfnet_mpi_last_error(), "different counts (2 to 3)") != NULL);
        EXPECT(cfnet_mpi_sum(m, w, rank_ == 0 ? -1 : 3) == CFNET_E_INVALID_ARGUMENT);
        EXPECT(w[0] == 1 && w[1] == 2 && w[2] == 3);
        EXPECT(cfnet_mpi_sum(m, w, 1) == CFNET_OK && w[0] == size);
    }
    /* MPI_COMM_NULL: a status, not MPI_ERR_COMM on MPI_COMM_WORLD's fatal handler */
    cfnet_mpi *none = NULL;
    EXPECT(cfnet_mpi_create(MPI_COMM_NULL, &none) == CFNET_E_INVALID_ARGUMENT && !none);
    EXPECT(strstr(cfnet_mpi_last_error(), "MPI_COMM_NULL") != NULL);
    EXPECT(cfnet_mpi_create(MPI_COMM_WORLD, NULL) == CFNET_E_INVALID_ARGUMENT);
    /* an intercommunicator (each group's all-reduce is the other's sum): refused on every rank
     * (a group was made, and a rank without memory for it would not have been seen) */
    if (size > 1) {
        MPI_Comm half = MPI_COMM_NULL, inter = MPI_COMM_NULL;
        EXPECT(MPI_Comm_split(MPI_COMM_WORLD, rank_ % 2, rank_, &half) == MPI_SUCCESS);
        EXPECT(MPI_Intercomm_create(half, 0, MPI_COMM_WORLD, rank_ % 2 ? 0 : 1, 7, &inter) ==
               MPI_SUCCESS);
        cfnet_mpi *g = NULL;
        EXPECT(cfnet_mpi_create(inter, &g) == CFNET_E_INVALID_ARGUMENT && !g);
        EXPECT(strstr(cfnet_mpi_last_error(), "intercommunicator") != NULL);
        cfnet_mpi_free(g);
        MPI_Comm_free(&inter);
        MPI_Comm_free(&half);
    }
    /* the traffic counters are the sum hook's: cfnet_mpi_sum is not in them */
    int64_t calls = -1, bytes = -1;
    double secs = -1;
    cfnet_mpi_traffic(m, &calls, &bytes, &secs);
    EXPECT(calls == 0 && bytes == 0 && secs == 0);
    cfnet_mpi_traffic(NULL, &calls, NULL, NULL);
    EXPECT(calls == 0);
    /* shares: contiguous blocks in rank order, the first G mod N ranks one more */
    int64_t off = -1, cnt = -1;
    EXPECT(cfnet_mpi_share(m, 7 + size, &off, &cnt) == CFNET_OK);
    int64_t base = (7 + size) / size, extra = (7 + size) % size;
    EXPECT(cnt == base + (rank_ < extra) && off == rank_ * base + (rank_ < extra ? rank_ : extra));
    double total[2] = {(double)cnt, (double)(off + cnt == 7 + size)};
    EXPECT(cfnet_mpi_sum(m, total, 2) == CFNET_OK);
    EXPECT(total[0] == 7 + size && total[1] == 1); /* all covered, one rank ends the batch */
    EXPECT(cfnet_mpi_share(m, size - 1, &off, &cnt) == CFNET_E_INVALID_ARGUMENT);
    EXPECT(cfnet_mpi_share(m, 5, NULL, &cnt) == CFNET_E_INVALID_ARGUMENT);
    /* a rank without a network: every rank fails the check, no one waits */
    cfnet_network *net = small_net(0);
    EXPECT(cfnet_mpi_check(m, rank_ == size - 1 && size > 1 ? NULL : net) ==
           (size > 1 ? CFNET_E_STATE : CFNET_OK));
    if (size > 1) { /* every rank names the rank without a network (not "differs") and
                      * gives its reason (only that rank did) */
        char want[96];
        snprintf(want, sizeof want, "rank %d has no network or cannot describe it (no network)",
                 size - 1);
        EXPECT(strstr(cfnet_mpi_last_error(), want) != NULL);
    }
    EXPECT(cfnet_mpi_attach(NULL, net) == CFNET_E_INVALID_ARGUMENT);
    /* attach, one step, detach: the network then trains alone, batch position cleared */
    EXPECT(cfnet_mpi_attach(m, net) == CFNET_OK);
    train(m, net, 0, 1, 6, NULL, -1, -1);
    cfnet_mpi_traffic(m, &calls, &bytes, NULL);
    EXPECT(calls == 10 && bytes > 0); /* 3 batch norms x 3 sums + the gradients */
    EXPECT(cfnet_mpi_detach(m, net) == CFNET_OK);
    EXPECT(one_sample_step(net) == CFNET_OK);
    cfnet_mpi_traffic(m, &calls, NULL, NULL);
    EXPECT(calls == 10); /* detached: no more sums */
    cfnet_network_free(net);
    int any = failed;
    MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (!any && rank_ == 0) printf("api: %d rank(s): every check passed\n", size);
    return any;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && !strcmp(argv[1], "compare")) return compare(argv[2], argv[3], atof(argv[4]));
    if (argc >= 5 && !strcmp(argv[1], "compare-models"))
        return compare_models(argv[2], argv[3], atof(argv[4]));
    if (argc >= 4 && !strcmp(argv[1], "verify")) {
        cfnet_network *net = NULL;
        check(cfnet_network_load(argv[2], &net), "load checkpoint");
        if (cfnet_network_step_count(net) != atoll(argv[3])) die("verify", "wrong step count");
        /* resumable: one more step alone (one process) */
        check(one_sample_step(net), "train after resume");
        printf("verify: checkpoint at step %s loads and trains\n", argv[3]);
        cfnet_network_free(net);
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: see the comment at the top of tests/mpi/mpi_train.c\n");
        return 2;
    }
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    cfnet_mpi *m = NULL;
    check_mpi(cfnet_mpi_create(MPI_COMM_WORLD, &m), "create");
    int rc = 0;
    if (!strcmp(argv[1], "equiv") && argc >= 3) {
        cfnet_network *net = small_net(argc >= 4 && !strcmp(argv[3], "adam"));
        check_mpi(cfnet_mpi_attach(m, net), "attach");
        train(m, net, 0, 5, 6, NULL, -1, -1);
        if (rank_ == 0) {
            int64_t n = dump(net, NULL);
            float *v = malloc((size_t)n * sizeof(float));
            dump(net, v);
            FILE *f = fopen(argv[2], "wb");
            if (!f || fwrite(v, sizeof(float), (size_t)n, f) != (size_t)n || fclose(f) != 0)
                die(argv[2], "cannot write");
            free(v);
            printf("equiv: %d rank(s), %lld values written\n", cfnet_mpi_size(m), (long long)n);
        }
        cfnet_network_free(net);
    } else if (!strcmp(argv[1], "mismatch")) {
        cfnet_network *net = small_net(0);
        if (rank_ == 1) check(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, 0.5), "lr");
        cfnet_status st = cfnet_mpi_attach(m, net);
        if (st != CFNET_E_STATE) {
            fprintf(stderr, "mismatch (rank %d): attach returned %d\n", rank_, (int)st);
            rc = 1;
        } else if (rank_ == 0) {
            printf("mismatch: %s\n", cfnet_mpi_last_error());
        }
        cfnet_network_free(net);
    } else if (!strcmp(argv[1], "fault") && argc >= 3) {
        cfnet_network *net = small_net(0);
        check_mpi(cfnet_mpi_attach(m, net), "attach");
        train(m, net, 0, 6, 6, argv[2], 1, 3);
        cfnet_network_free(net);
        fprintf(stderr, "fault (rank %d): training went on after a rank died\n", rank_);
        rc = 1;
    } else if (!strcmp(argv[1], "api")) {
        rc = api(m);
    } else if (!strcmp(argv[1], "nullcomm")) {
        rc = null_comm();
    } else if (!strcmp(argv[1], "nullcomm-abort")) {
        /* rank 0 waits in MPI_Comm_dup for rank 1, which cannot tell it; rank 1 does what the
         * message says, and the job ends instead of hanging */
        cfnet_mpi *g = NULL;
        cfnet_status st = cfnet_mpi_create(rank_ == 1 ? MPI_COMM_NULL : MPI_COMM_WORLD, &g);
        if (st != CFNET_OK) {
            fprintf(stderr, "mpi_train: rank %d: %s\n", rank_, cfnet_mpi_last_error());
            MPI_Abort(MPI_COMM_WORLD, 3);
        }
        cfnet_mpi_free(g);
        rc = rank_ == 1; /* not reached on 2 ranks */
    } else if (!strcmp(argv[1], "bench") && argc >= 4) {
        int steps = atoi(argv[2]), threads = atoi(argv[3]);
        cfnet_network *net = yeast_net();
        check(cfnet_network_set_option(net, CFNET_OPTION_THREADS, threads), "threads");
        check_mpi(cfnet_mpi_attach(m, net), "attach");
        train(m, net, 0, 1, 22, NULL, -1, -1); /* warm-up: buffers, FFTW plans */
        int64_t c0, b0;
        double s0;
        cfnet_mpi_traffic(m, &c0, &b0, &s0);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        train(m, net, 1, steps, 22, NULL, -1, -1);
        MPI_Barrier(MPI_COMM_WORLD);
        double dt = MPI_Wtime() - t0;
        int64_t c1, b1;
        double s1;
        cfnet_mpi_traffic(m, &c1, &b1, &s1);
        double comm = (s1 - s0) / steps, comm_max = 0;
        MPI_Reduce(&comm, &comm_max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        /* The all-reduce alone, every rank ready (no waiting for a slower rank). */
        int64_t P = cfnet_network_param_count(net) + 1;
        float *g = calloc((size_t)P, sizeof(float));
        double pure = 0;
        for (int r = 0; r < 10; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double a = MPI_Wtime();
            MPI_Allreduce(MPI_IN_PLACE, g, (int)P, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            pure += MPI_Wtime() - a;
        }
        free(g);
        if (rank_ == 0)
            printf("bench\tranks %d\tgradient all-reduce alone: %lld bytes in %.3f ms\n",
                   cfnet_mpi_size(m), (long long)(4 * P), 1e3 * pure / 10);
        if (rank_ == 0)
            printf("bench\tranks %d\tthreads %d\tparams %lld\timages/s %.1f\tstep ms %.1f\t"
                   "allreduce calls/step %.0f\tbytes/step %.0f\tin allreduce (incl. waiting) ms/step %.2f\n",
                   cfnet_mpi_size(m), threads, (long long)cfnet_network_param_count(net),
                   GLOBAL * steps / dt, 1e3 * dt / steps, (double)(c1 - c0) / steps,
                   (double)(b1 - b0) / steps, 1e3 * comm_max);
        cfnet_network_free(net);
    } else {
        fprintf(stderr, "mpi_train: unknown mode %s\n", argv[1]);
        rc = 2;
    }
    cfnet_mpi_free(m);
    MPI_Finalize();
    return rc;
}
