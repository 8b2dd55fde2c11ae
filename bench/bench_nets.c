/* Whole-network benchmark: a training step (augmentation off, Adam) and inference throughput at
 * batch 50 for the paper's networks, and the peak memory (RSS) of training each network.
 *
 *   bench_nets [--threads T] [--mode engine|blas] [--only NAME]   timings
 *   bench_nets --rss [--threads T] [--mode engine|blas]           peak RSS, one child per network
 *   bench_nets --latency [--threads T]                              batch-1 inference latency
 *
 * Networks (docs/performance.md): rotmnist_cfnet, rotmnist_gcnn, rotmnist_cnn (1x28x28, six 3x3
 * layers of 15 filters, valid padding, max pooling after the second, 10 classes) and
 * yeast_cfnet (2x64x64, seven conic layers of 32 filters with batch norm, mean pooling after
 * layers 2 and 4, DFT transition with 32 nodes, dropout, 22 classes).
 *
 * Latency (interactive use, one cell at a time): the yeast CFNet and the preset CFNet and G-CNN for
 * 2 x 64 x 64 inputs, 22 classes, default width (preset64_cfnet, preset64_gcnn,
 * cfnet_network_create_classifier), batch 1:
 * 20 warm-up calls of cfnet_network_infer, then BENCH_LAT_CALLS (default 1000) timed calls;
 * median and 99th percentile.
 *
 * Output lines (tab-separated):
 *   net <name> <threads> <mode> <train ms> <train images/s> <infer ms> <infer images/s>
 *   rss <name> <threads> <mode> <peak KiB> <baseline KiB> <network bytes>
 *   lat <name> <threads> <mode> <median ms> <p99 ms> <calls>
 *   macs <name> <multiply-adds per sample, cfnet_network_multiply_adds>   (printed with `net`)
 * where baseline is the child's VmHWM before the network is built (libraries and BLAS buffers
 * loaded) and network bytes is cfnet_network_memory_usage(). */
#include "bench_util.h"
#include "nn/layer.h"

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define BATCH 50

static void check(cfnet_status st, const char *what)
{
    if (st != CFNET_OK) {
        fprintf(stderr, "%s: %s\n", what, cfnet_last_error());
        exit(1);
    }
}

static void add(cfnet_network *net, cfnet_layer *l, cfnet_status st)
{
    check(st, "create layer");
    check(cfnet_network_append(net, l), "append");
}

#define ADD(call)                         \
    do {                                  \
        cfnet_layer *l_ = NULL;           \
        cfnet_status st_ = call;          \
        add(net, l_, st_);                \
    } while (0)

static cfnet_network *build(const char *name)
{
    cfnet_network *net = NULL;
    const cfnet_padding V = CFNET_PADDING_VALID, S = CFNET_PADDING_SAME;
    const cfnet_interp NN = CFNET_INTERP_NEAREST;
    if (!strcmp(name, "rotmnist_cfnet")) {
        static const int R[6] = {2, 2, 2, 1, 1, 1};
        check(cfnet_network_create(1, 28, 28, 7, &net), "network");
        for (int i = 0; i < 6; i++) {
            ADD(cfnet_layer_conic_conv_create(15, 3, R[i], V, NN, &l_));
            ADD(cfnet_layer_relu_create(&l_));
            if (i == 1) ADD(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
        }
        ADD(cfnet_layer_dft_projection_create(15, 1, NN, &l_));
        ADD(cfnet_layer_dft_magnitude_create(&l_));
        ADD(cfnet_layer_dense_create(10, &l_));
    } else if (!strcmp(name, "rotmnist_gcnn")) {
        check(cfnet_network_create(1, 28, 28, 7, &net), "network");
        for (int i = 0; i < 6; i++) {
            if (i == 0) ADD(cfnet_layer_p4_lift_create(15, 3, V, &l_));
            else ADD(cfnet_layer_p4_conv_create(15, 3, V, &l_));
            ADD(cfnet_layer_relu_create(&l_));
            if (i == 1) ADD(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
        }
        ADD(cfnet_layer_group_pool_create(CFNET_POOL_MAX, &l_));
        ADD(cfnet_layer_dense_create(10, &l_));
    } else if (!strcmp(name, "rotmnist_cnn")) {
        check(cfnet_network_create(1, 28, 28, 7, &net), "network");
        for (int i = 0; i < 6; i++) {
            ADD(cfnet_layer_conv2d_create(15, 3, 1, V, &l_));
            ADD(cfnet_layer_relu_create(&l_));
            if (i == 1) ADD(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
        }
        ADD(cfnet_layer_dense_create(10, &l_));
    } else if (!strcmp(name, "yeast_cfnet")) {
        static const int R[7] = {2, 2, 2, 1, 1, 1, 1};
        check(cfnet_network_create(2, 64, 64, 7, &net), "network");
        for (int i = 0; i < 7; i++) {
            ADD(cfnet_layer_conic_conv_create(32, 3, R[i], S, NN, &l_));
            ADD(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
            ADD(cfnet_layer_relu_create(&l_));
            if (i == 1 || i == 3) ADD(cfnet_layer_pool_create(CFNET_POOL_MEAN, 2, 2, &l_));
        }
        ADD(cfnet_layer_dft_projection_create(32, 1, NN, &l_));
        ADD(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
        ADD(cfnet_layer_relu_create(&l_));
        ADD(cfnet_layer_dft_magnitude_create(&l_));
        ADD(cfnet_layer_dropout_create(0.2f, &l_));
        ADD(cfnet_layer_dense_create(22, &l_));
    } else if (!strcmp(name, "preset64_cfnet")) {
        check(cfnet_network_create_classifier(CFNET_FAMILY_CFNET, 2, 64, 22, 0, 7, &net),
              "preset");
    } else if (!strcmp(name, "preset64_gcnn")) {
        check(cfnet_network_create_classifier(CFNET_FAMILY_GCNN, 2, 64, 22, 0, 7, &net),
              "preset");
    } else {
        fprintf(stderr, "unknown network %s\n", name);
        exit(2);
    }
    return net;
}

static const char *const NETS[] = {"rotmnist_cfnet", "rotmnist_gcnn", "rotmnist_cnn",
                                   "yeast_cfnet"};

typedef struct ncase {
    cfnet_network *net;
    cfnet_tensor *x, *out;
    int32_t labels[BATCH];
} ncase;

static void run_train(void *arg)
{
    ncase *c = arg;
    check(cfnet_network_train_step(c->net, c->x, c->labels, BATCH, NULL), "train_step");
}

static void run_infer(void *arg)
{
    ncase *c = arg;
    check(cfnet_network_infer(c->net, c->x, c->out), "infer");
}

static void setup_case_n(ncase *c, const char *name, int engine_threads, int64_t batch);

static void setup_case(ncase *c, const char *name, int engine_threads)
{
    setup_case_n(c, name, engine_threads, BATCH);
}

static void setup_case_n(ncase *c, const char *name, int engine_threads, int64_t batch)
{
    c->net = build(name);
    check(cfnet_network_set_option(c->net, CFNET_OPTION_THREADS, engine_threads), "threads");
    check(cfnet_network_set_option(c->net, CFNET_OPTION_LEARNING_RATE, 1e-4), "lr");
    int nd;
    int64_t in[CFNET_MAX_DIMS], out[CFNET_MAX_DIMS + 1];
    check(cfnet_network_input_shape(c->net, &nd, in), "shape");
    int64_t xs[4] = {batch, in[0], in[1], in[2]};
    check(cfnet_tensor_create(4, xs, &c->x), "tensor");
    bench_fill(cfnet_tensor_data(c->x), (size_t)cfnet_tensor_numel(c->x), 5);
    check(cfnet_network_output_shape(c->net, &nd, out + 1), "shape");
    out[0] = batch;
    check(cfnet_tensor_create(nd + 1, out, &c->out), "tensor");
    int64_t classes = cfnet_tensor_numel(c->out) / batch;
    for (int i = 0; i < batch; i++) c->labels[i] = (int32_t)(i % classes);
}

static void free_case(ncase *c)
{
    cfnet_tensor_free(c->x);
    cfnet_tensor_free(c->out);
    cfnet_network_free(c->net);
}

static long vm_hwm_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

/* Child: peak RSS of building the network and taking 3 training steps. */
static int rss_child(const char *name, int threads, const char *mode, int engine_threads)
{
    float a[64] = {0}, b[64] = {0}, cc[64];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 8, 8, 8, 1.0f, a, 8, b, 8, 0.0f, cc,
                8); /* start the BLAS (its buffers belong to the baseline) */
    long base = vm_hwm_kib();
    ncase c;
    setup_case(&c, name, engine_threads);
    for (int i = 0; i < 3; i++) run_train(&c);
    long peak = vm_hwm_kib();
    printf("rss\t%s\t%d\t%s\t%ld\t%ld\t%zu\n", name, threads, mode, peak, base,
           cfnet_network_memory_usage(c.net));
    free_case(&c);
    return 0;
}

/* Batch-1 inference latency: median and 99th percentile over `calls` calls. */
static void latency(const char *name, int threads, const char *mode, int engine_threads)
{
    int calls = getenv("BENCH_LAT_CALLS") ? atoi(getenv("BENCH_LAT_CALLS")) : 1000;
    if (calls < 10) calls = 10;
    ncase c;
    setup_case_n(&c, name, engine_threads, 1);
    for (int i = 0; i < 20; i++) run_infer(&c);
    double *t = malloc((size_t)calls * sizeof *t);
    if (!t) exit(1);
    for (int i = 0; i < calls; i++) {
        double t0 = bench_now();
        run_infer(&c);
        t[i] = bench_now() - t0;
    }
    qsort(t, (size_t)calls, sizeof t[0], bench_cmp_double);
    int p99 = (int)((calls - 1) * 0.99 + 0.5);
    printf("lat\t%s\t%d\t%s\t%.4f\t%.4f\t%d\n", name, threads, mode, 1e3 * t[calls / 2],
           1e3 * t[p99], calls);
    fflush(stdout);
    free(t);
    free_case(&c);
}

int main(int argc, char **argv)
{
    int threads = 1, rss = 0, lat = 0;
    const char *mode = "engine", *only = NULL, *child = NULL;
    bench_check_env(argv[0]);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = bench_int_arg(argv[0], "--threads", argv[++i], 1, CFNET_MAX_THREADS);
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc)
            mode = bench_mode_arg(argv[0], argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--rss")) rss = 1;
        else if (!strcmp(argv[i], "--latency")) lat = 1;
        else if (!strcmp(argv[i], "--rss-child") && i + 1 < argc) child = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--threads T] [--mode engine|blas] [--only NAME] "
                            "[--rss | --latency]\n", argv[0]);
            return 2;
        }
    }
    static const char *const LAT[] = {"yeast_cfnet", "preset64_cfnet", "preset64_gcnn"};
    const size_t nlat = sizeof LAT / sizeof LAT[0];
    if (only && !child) { /* the networks this mode measures */
        const char *const *names = lat ? LAT : NETS;
        size_t n = lat ? nlat : sizeof NETS / sizeof NETS[0];
        bool known = false;
        for (size_t i = 0; i < n; i++) known |= strcmp(only, names[i]) == 0;
        if (!known) {
            fprintf(stderr, "%s: --only %s: not one of the networks %s (%s)\n", argv[0], only,
                    lat ? "--latency measures" : "measured",
                    lat ? "yeast_cfnet, preset64_cfnet, preset64_gcnn"
                    : "rotmnist_cfnet, rotmnist_gcnn, rotmnist_cnn, yeast_cfnet");
            return 2;
        }
    }
    bool blas_mode = strcmp(mode, "blas") == 0;
    int engine_threads = blas_mode ? 1 : threads;
    bench_blas_threads(blas_mode ? threads : 1);
    if (child) return rss_child(child, threads, mode, engine_threads);
    bench_print_blas(stdout);
    bench_print_kernels(stdout);
    printf("# batch %d; threads %d, mode %s (engine %d, BLAS %d)\n", lat ? 1 : BATCH, threads,
           mode, engine_threads, blas_mode ? threads : 1);
    fflush(stdout);
    if (lat) {
        for (size_t i = 0; i < nlat; i++)
            if (!only || !strcmp(only, LAT[i])) latency(LAT[i], threads, mode, engine_threads);
        return 0;
    }
    for (size_t i = 0; i < sizeof NETS / sizeof NETS[0]; i++) {
        if (only && strcmp(only, NETS[i])) continue;
        if (rss) {
            char tbuf[16];
            snprintf(tbuf, sizeof tbuf, "%d", threads);
            pid_t pid = fork();
            if (pid == 0) {
                execl("/proc/self/exe", argv[0], "--rss-child", NETS[i], "--threads", tbuf,
                      "--mode", mode, (char *)NULL);
                _exit(127);
            }
            int status = 0;
            if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
                WEXITSTATUS(status) != 0) {
                fprintf(stderr, "rss child for %s failed\n", NETS[i]);
                return 1;
            }
            continue;
        }
        ncase c;
        setup_case(&c, NETS[i], engine_threads);
        double tt = bench_time(run_train, &c, 2.0 * BENCH_MIN_SECONDS);
        double ti = bench_time(run_infer, &c, BENCH_MIN_SECONDS);
        printf("net\t%s\t%d\t%s\t%.2f\t%.1f\t%.2f\t%.1f\n", NETS[i], threads, mode, 1e3 * tt,
               BATCH / tt, 1e3 * ti, BATCH / ti);
        printf("macs\t%s\t%lld\n", NETS[i], (long long)cfnet_network_multiply_adds(c.net));
        fflush(stdout);
        free_case(&c);
    }
    return 0;
}
