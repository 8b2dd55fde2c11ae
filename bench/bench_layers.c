/* Per-layer benchmark: forward and forward+backward time and GFLOP/s of each rotation layer and
 * of a standard convolution, batch 50, at the paper's shapes (28x28x15, 50x50x32, 64x64x32).
 *
 *   bench_layers [--threads T] [--mode engine|blas] [--shape 28|50|64] [--only NAME]
 *
 * Rows: conv2d, conic_R1/2/4, p4_lift, p4_group, p4m_lift, p4m_group, dft_projection,
 * dft_magnitude.
 *
 * Output: comment lines start with '#'; each result is one tab-separated line
 *   layer <name> <SxSxC> <threads> <mode> <fwd ms> <fwd+bwd ms> <fwd GFLOP/s> <fwd+bwd GFLOP/s>
 * GFLOP/s counts the multiply-adds a dense implementation of the layer needs (2 per MAC; conic
 * convolution is counted as one standard convolution, since each output pixel needs only its
 * cone's filter), backward = 2x forward for the GEMM layers; DFT magnitude counts 5 G log2 G
 * per FFT of G points. */
#include "bench_util.h"
#include "core/pool.h"
#include "nn/layer.h"

#include <math.h>

#define BATCH 50

typedef struct bcase {
    cfnet_layer *l;
    cfnet_tensor *x, *y, *dy, *dx;
} bcase;

static void run_fwd(void *arg)
{
    bcase *c = arg;
    if (cfnet_layer_forward(c->l, c->x, c->y, CFNET_MODE_TRAINING) != CFNET_OK) {
        fprintf(stderr, "forward: %s\n", cfnet_last_error());
        exit(1);
    }
}

static void run_fb(void *arg)
{
    bcase *c = arg;
    run_fwd(c);
    if (cfnet_layer_backward(c->l, c->x, c->y, c->dy, c->dx) != CFNET_OK) {
        fprintf(stderr, "backward: %s\n", cfnet_last_error());
        exit(1);
    }
}

static cfnet_tensor *batch_tensor(int ndim, const int64_t *shape, unsigned seed)
{
    int64_t s[CFNET_MAX_DIMS];
    s[0] = BATCH;
    memcpy(s + 1, shape, (size_t)ndim * sizeof *shape);
    cfnet_tensor *t;
    if (cfnet_tensor_create(ndim + 1, s, &t) != CFNET_OK) {
        fprintf(stderr, "tensor: %s\n", cfnet_last_error());
        exit(1);
    }
    bench_fill(cfnet_tensor_data(t), (size_t)cfnet_tensor_numel(t), seed);
    return t;
}

/* Sets the layer up for `in` (per sample), times it and prints one result line. */
static void bench_layer(const char *name, cfnet_layer *l, int ndim, const int64_t *in,
                        double fwd_flops, double bwd_factor, const char *shape_name, int threads,
                        const char *mode, int engine_threads)
{
    if (!l || cfnet_layer_setup(l, ndim, in, 1) != CFNET_OK) {
        fprintf(stderr, "%s: setup: %s\n", name, cfnet_last_error());
        exit(1);
    }
    l->threads = engine_threads; /* what a network with this thread count sets */
    int ond;
    int64_t out[CFNET_MAX_DIMS];
    cfnet_layer_output_shape(l, &ond, out);
    bcase c = {l, batch_tensor(ndim, in, 1), batch_tensor(ond, out, 2), batch_tensor(ond, out, 3),
               batch_tensor(ndim, in, 4)};
    double tf = bench_time(run_fwd, &c, BENCH_MIN_SECONDS);
    double tb = bench_time(run_fb, &c, BENCH_MIN_SECONDS);
    printf("layer\t%s\t%s\t%d\t%s\t%.3f\t%.3f\t%.2f\t%.2f\n", name, shape_name, threads, mode,
           1e3 * tf, 1e3 * tb, fwd_flops / tf * 1e-9, fwd_flops * (1.0 + bwd_factor) / tb * 1e-9);
    fflush(stdout);
    cfnet_tensor_free(c.x);
    cfnet_tensor_free(c.y);
    cfnet_tensor_free(c.dy);
    cfnet_tensor_free(c.dx);
    cfnet_layer_free(l);
}

static bool wanted(const char *only, const char *name)
{
    return !only || strcmp(only, name) == 0 || strncmp(name, only, strlen(only)) == 0;
}

static const char *const LAYERS[] = {"conv2d",   "conic_R1", "conic_R2", "conic_R4",
                                     "p4_lift",  "p4_group", "p4m_lift", "p4m_group",
                                     "dft_projection", "dft_magnitude"};

int main(int argc, char **argv)
{
    int threads = 1, shape_only = 0;
    const char *mode = "engine", *only = NULL;
    bench_check_env(argv[0]);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = bench_int_arg(argv[0], "--threads", argv[++i], 1, CFNET_MAX_THREADS);
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc)
            mode = bench_mode_arg(argv[0], argv[++i]);
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            shape_only = bench_int_arg(argv[0], "--shape", argv[++i], 28, 64);
            if (shape_only != 28 && shape_only != 50 && shape_only != 64) {
                fprintf(stderr, "%s: --shape %d: must be 28, 50 or 64\n", argv[0], shape_only);
                return 2;
            }
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--threads T] [--mode engine|blas] [--shape 28|50|64] "
                            "[--only NAME]\n", argv[0]);
            return 2;
        }
    }
    if (only) { /* a name or the start of names (conic: the three conic rows) */
        bool any = false;
        for (size_t i = 0; i < sizeof LAYERS / sizeof LAYERS[0]; i++)
            any |= wanted(only, LAYERS[i]);
        if (!any) {
            fprintf(stderr, "%s: --only %s: no such layer (conv2d, conic_R1, conic_R2, conic_R4, "
                            "p4_lift, p4_group, p4m_lift, p4m_group, dft_projection, "
                            "dft_magnitude, or the start of these names)\n", argv[0], only);
            return 2;
        }
    }
    bool blas_mode = strcmp(mode, "blas") == 0;
    int engine_threads = blas_mode ? 1 : threads;
    bench_blas_threads(blas_mode ? threads : 1);
    /* The engine's shares run on persistent workers, as in a network with this thread count
     * (which owns such a pool; without one, a standalone layer starts threads on every call). */
    cf_pool *pool = NULL;
    if (engine_threads > 1 && cf_pool_create(NULL, engine_threads, &pool) != CFNET_OK) {
        fprintf(stderr, "pool: %s\n", cfnet_last_error());
        return 1;
    }
    cf_pool *prev = cf_pool_scope_enter(pool);
    bench_print_blas(stdout);
    bench_print_kernels(stdout);
    printf("# batch %d, kernel 3, same padding; threads %d, mode %s (engine %d, BLAS %d)\n",
           BATCH, threads, mode, engine_threads, blas_mode ? threads : 1);
    static const struct { int S, C; } shapes[] = {{28, 15}, {50, 32}, {64, 32}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int S = shapes[si].S, C = shapes[si].C, O = C, k = 3;
        if (shape_only && shape_only != S) continue;
        char sn[32];
        snprintf(sn, sizeof sn, "%dx%dx%d", S, S, C);
        int64_t planar[3] = {C, S, S}, group[4] = {C, 4, S, S}, group8[4] = {C, 8, S, S},
                proj[2] = {C, 4};
        double conv = 2.0 * BATCH * O * C * k * k * (double)S * S;
        cfnet_layer *l = NULL;
        if (wanted(only, "conv2d")) {
            cfnet_layer_conv2d_create(O, k, 1, CFNET_PADDING_SAME, &l);
            bench_layer("conv2d", l, 3, planar, conv, 2.0, sn, threads, mode, engine_threads);
        }
        static const int Rs[] = {1, 2, 4};
        for (int ri = 0; ri < 3; ri++) {
            char name[32];
            snprintf(name, sizeof name, "conic_R%d", Rs[ri]);
            if (!wanted(only, name)) continue;
            cfnet_layer_conic_conv_create(O, k, Rs[ri], CFNET_PADDING_SAME, CFNET_INTERP_NEAREST,
                                          &l);
            bench_layer(name, l, 3, planar, conv, 2.0, sn, threads, mode, engine_threads);
        }
        if (wanted(only, "p4_lift")) {
            cfnet_layer_p4_lift_create(O, k, CFNET_PADDING_SAME, &l);
            bench_layer("p4_lift", l, 3, planar, 4.0 * conv, 2.0, sn, threads, mode,
                        engine_threads);
        }
        if (wanted(only, "p4_group")) {
            cfnet_layer_p4_conv_create(O, k, CFNET_PADDING_SAME, &l);
            bench_layer("p4_group", l, 4, group, 16.0 * conv, 2.0, sn, threads, mode,
                        engine_threads);
        }
        /* p4m (rotations and reflections): 8 copies, 2x p4's lifting and 4x its group layer
         * for the same number of filters */
        if (wanted(only, "p4m_lift")) {
            cfnet_layer_p4m_lift_create(O, k, CFNET_PADDING_SAME, &l);
            bench_layer("p4m_lift", l, 3, planar, 8.0 * conv, 2.0, sn, threads, mode,
                        engine_threads);
        }
        if (wanted(only, "p4m_group")) {
            cfnet_layer_p4m_conv_create(O, k, CFNET_PADDING_SAME, &l);
            bench_layer("p4m_group", l, 4, group8, 64.0 * conv, 2.0, sn, threads, mode,
                        engine_threads);
        }
        if (wanted(only, "dft_projection")) {
            cfnet_layer_dft_projection_create(C, 1, CFNET_INTERP_NEAREST, &l);
            bench_layer("dft_projection", l, 3, planar, 2.0 * BATCH * (4.0 * C) * C * S * S, 2.0,
                        sn, threads, mode, engine_threads);
        }
        if (wanted(only, "dft_magnitude")) {
            double g = 4.0 * C;
            cfnet_layer_dft_magnitude_create(&l);
            bench_layer("dft_magnitude", l, 2, proj, 5.0 * BATCH * g * log2(g), 1.0, sn, threads,
                        mode, engine_threads);
        }
    }
    cf_pool_scope_leave(&prev);
    cf_pool_destroy(pool);
    return 0;
}
