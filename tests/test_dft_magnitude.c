/* DFT magnitude layer: values against a direct DFT in double, the 1 x 1 p4 case, shift
 * invariance, gradients (finite differences, and the convention at |Y| = 0), concurrent use from
 * two threads, bad arguments. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define TWO_PI 6.283185307179586

/* mag[a', b'] = |sum_{a,b} x[a,b] exp(-2 pi i (a a'/A + b b'/B))| in double. */
static void direct_dft_mag(const float *x, int A, int B, double *mag)
{
    for (int ap = 0; ap < A; ap++)
        for (int bp = 0; bp < B; bp++) {
            double re = 0, im = 0;
            for (int a = 0; a < A; a++)
                for (int b = 0; b < B; b++) {
                    double ph = (double)((a * ap) % A) / A + (double)((b * bp) % B) / B;
                    re += x[a * B + b] * cos(TWO_PI * ph);
                    im -= x[a * B + b] * sin(TWO_PI * ph);
                }
            mag[ap * B + bp] = hypot(re, im);
        }
}

static cfnet_layer *magnitude_layer(int ndim, const int64_t *shape)
{
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_dft_magnitude_create(&l));
    CF_ASSERT_OK(cfnet_layer_setup(l, ndim, shape, 0));
    assert_int_equal(cfnet_layer_param_count(l), 0);
    return l;
}

/* Runs the layer on `batch` random samples and compares each with the direct DFT; the error is
 * relative to the sample's largest magnitude (float FFT against a double sum). */
static void check_against_direct_n(int ndim, const int64_t *shape, int A, int B, uint64_t seed,
                                   int batch)
{
    cfnet_layer *l = magnitude_layer(ndim, shape);
    int ond;
    int64_t os[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_layer_output_shape(l, &ond, os));
    assert_int_equal(ond, 2);
    assert_int_equal(os[0], A);
    assert_int_equal(os[1], B);
    int64_t xs[CFNET_MAX_DIMS + 1] = {batch};
    memcpy(xs + 1, shape, (size_t)ndim * sizeof *shape);
    tu_rng r = {seed};
    cfnet_tensor *x = tu_tensor(ndim + 1, xs, &r), *y = tu_output_for(l, batch);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    double *ref = malloc((size_t)(A * B) * sizeof *ref);
    assert_non_null(ref);
    for (int s = 0; s < batch; s++) {
        const float *xd = cfnet_tensor_data(x) + s * A * B, *yd = cfnet_tensor_data(y) + s * A * B;
        direct_dft_mag(xd, A, B, ref);
        double md = 0, mr = 0;
        for (int i = 0; i < A * B; i++) {
            md = fmax(md, fabs(yd[i] - ref[i]));
            mr = fmax(mr, ref[i]);
        }
        if (!(md <= 1e-5 * mr)) fail_msg("%dx%d sample %d: error %g of %g", A, B, s, md, mr);
    }
    free(ref);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
}

static void check_against_direct(int ndim, const int64_t *shape, int A, int B, uint64_t seed)
{
    check_against_direct_n(ndim, shape, A, B, seed, 3);
}

/* Batches run through the batched FFTW plans (16 grids each) and one grid at a time for the
 * rest: every sample of batches 16, 37 matches the direct DFT, and the backward of a batch of
 * 37 equals, sample by sample, the backward of that sample alone. */
static void batched_plans_match_direct_dft_and_single_samples(void **state)
{
    (void)state;
    int64_t s2[2] = {5, 8}, p4[4] = {15, 4, 1, 1};
    check_against_direct_n(2, s2, 5, 8, 31, 16);
    check_against_direct_n(2, s2, 5, 8, 32, 37);
    check_against_direct_n(4, p4, 15, 4, 33, 37);
    enum { NB = 37, A = 5, B = 8 };
    cfnet_layer *l = magnitude_layer(2, s2);
    int64_t xs[3] = {NB, A, B}, x1s[3] = {1, A, B};
    tu_rng r = {34};
    cfnet_tensor *x = tu_tensor(3, xs, &r), *y = tu_output_for(l, NB), *dy = tu_tensor(3, xs, &r),
                 *dx = tu_tensor(3, xs, NULL);
    cfnet_tensor *x1 = tu_tensor(3, x1s, NULL), *y1 = tu_output_for(l, 1),
                 *dy1 = tu_tensor(3, x1s, NULL), *dx1 = tu_tensor(3, x1s, NULL);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
    float dxall[NB * A * B];
    memcpy(dxall, cfnet_tensor_data(dx), sizeof dxall);
    for (int s = 0; s < NB; s++) {
        memcpy(cfnet_tensor_data(x1), cfnet_tensor_data(x) + s * A * B, A * B * sizeof(float));
        memcpy(cfnet_tensor_data(dy1), cfnet_tensor_data(dy) + s * A * B, A * B * sizeof(float));
        CF_ASSERT_OK(cfnet_layer_forward(l, x1, y1, CFNET_MODE_TRAINING));
        CF_ASSERT_OK(cfnet_layer_backward(l, x1, y1, dy1, dx1));
        double e = tu_max_rel_diff(dxall + s * A * B, cfnet_tensor_data(dx1), A * B);
        if (!(e < 1e-5)) fail_msg("sample %d of %d: backward differs by %g", s, NB, e);
    }
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_tensor_free(dy);
    cfnet_tensor_free(dx);
    cfnet_tensor_free(x1);
    cfnet_tensor_free(y1);
    cfnet_tensor_free(dy1);
    cfnet_tensor_free(dx1);
    cfnet_layer_free(l);
}

static void magnitude_matches_direct_dft_in_double(void **state)
{
    (void)state;
    static const int grids[][2] = {{5, 8}, {4, 4}, {3, 12}, {1, 7}, {6, 1}, {1, 1}, {15, 8}};
    for (size_t k = 0; k < sizeof grids / sizeof grids[0]; k++) {
        int64_t s[2] = {grids[k][0], grids[k][1]};
        check_against_direct(2, s, grids[k][0], grids[k][1], 100 + k);
    }
}

static void magnitude_of_1x1_p4_map_equals_dft_of_channel_by_rotation_grid(void **state)
{
    (void)state;
    int64_t p4[4] = {5, 4, 1, 1};
    check_against_direct(4, p4, 5, 4, 7);
    int64_t g8[4] = {3, 8, 1, 1}; /* any group size G on axis 1 */
    check_against_direct(4, g8, 3, 8, 8);
}

static void magnitude_is_invariant_to_circular_shifts(void **state)
{
    (void)state;
    const int A = 5, B = 8, da = 2, db = 3;
    int64_t s[2] = {A, B}, xs[3] = {1, A, B};
    cfnet_layer *l = magnitude_layer(2, s);
    tu_rng r = {3};
    cfnet_tensor *x = tu_tensor(3, xs, &r), *xr = tu_tensor(3, xs, NULL);
    cfnet_tensor *y = tu_output_for(l, 1), *yr = tu_output_for(l, 1);
    const float *a = cfnet_tensor_data(x);
    float *b = cfnet_tensor_data(xr);
    for (int i = 0; i < A; i++)
        for (int j = 0; j < B; j++) b[((i + da) % A) * B + (j + db) % B] = a[i * B + j];
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    CF_ASSERT_OK(cfnet_layer_forward(l, xr, yr, CFNET_MODE_INFERENCE));
    assert_true(tu_max_rel_diff(cfnet_tensor_data(yr), cfnet_tensor_data(y), A * B) <= 1e-5);
    cfnet_tensor_free(x);
    cfnet_tensor_free(xr);
    cfnet_tensor_free(y);
    cfnet_tensor_free(yr);
    cfnet_layer_free(l);
}

/* Fills x (batch samples of A x B) with normal values, redrawing each sample until every
 * spectral magnitude is at least `floor` (|.| is smooth there, so differences are meaningful). */
static void fill_away_from_zero_spectrum(float *x, int batch, int A, int B, double floor,
                                         tu_rng *r)
{
    double *mag = malloc((size_t)(A * B) * sizeof *mag);
    assert_non_null(mag);
    for (int s = 0; s < batch; s++) {
        float *xs = x + s * A * B;
        int tries = 0;
        for (;;) {
            tu_fill_normal(xs, A * B, r);
            direct_dft_mag(xs, A, B, mag);
            double m = INFINITY;
            for (int i = 0; i < A * B; i++) m = fmin(m, mag[i]);
            if (m >= floor) break;
            if (++tries > 1000) fail_msg("no %dx%d sample with |Y| >= %g", A, B, floor);
        }
    }
    free(mag);
}

static void magnitude_gradient_matches_finite_differences(void **state)
{
    (void)state;
    static const int grids[][2] = {{5, 8}, {4, 4}, {3, 12}, {1, 6}, {7, 1}};
    tu_rng r = {21};
    for (int k = 0; k < (int)(sizeof grids / sizeof grids[0]) + 1; k++) {
        bool p4 = k == (int)(sizeof grids / sizeof grids[0]);
        int A = p4 ? 3 : grids[k][0], B = p4 ? 4 : grids[k][1];
        int64_t s2[2] = {A, B}, s4[4] = {A, B, 1, 1};
        cfnet_layer *l = p4 ? magnitude_layer(4, s4) : magnitude_layer(2, s2);
        int64_t xs2[3] = {2, A, B}, xs4[5] = {2, A, B, 1, 1};
        cfnet_tensor *x = p4 ? tu_tensor(5, xs4, NULL) : tu_tensor(3, xs2, NULL);
        fill_away_from_zero_spectrum(cfnet_tensor_data(x), 2, A, B, 0.5, &r);
        /* Tolerance: the forward is float; the loss sum_i w_i y_i and the central differences
         * (h = 1e-2) are accumulated in double. Float rounding of y (~1e-6 absolute) gives
         * ~1e-5 in the loss, i.e. ~5e-4 after dividing by 2h; with every |Y| >= 0.5 the
         * truncation error O(h^2 / |Y|^2) is of the same order. Observed worst: 1.1e-3. */
        double e = tu_gradcheck(l, x, CFNET_MODE_TRAINING, 1e-2, 0, NULL);
        if (!(e < 5e-3)) fail_msg("%dx%d%s: gradient error %g", A, B, p4 ? "x1x1" : "", e);
        cfnet_tensor_free(x);
        cfnet_layer_free(l);
    }
}

/* Where |Y| = 0 the gradient of |Y| is taken as 0. Zero input: every bin is exactly zero, so dx
 * is exactly zero (not NaN). Constant input on a 4 x 4 grid: only the DC bin is non-zero (exact
 * in the radix-2 FFT), and y = |sum x| there, so dx = dM[0, 0] everywhere. */
static void magnitude_gradient_is_zero_where_spectrum_vanishes(void **state)
{
    (void)state;
    int64_t s[2] = {4, 4}, xs[3] = {2, 4, 4};
    cfnet_layer *l = magnitude_layer(2, s);
    cfnet_tensor *x = tu_tensor(3, xs, NULL), *y = tu_output_for(l, 2), *dy = tu_output_for(l, 2),
                 *dx = tu_tensor(3, xs, NULL);
    tu_rng r = {5};
    tu_fill_normal(cfnet_tensor_data(dy), 32, &r);
    float *xd = cfnet_tensor_data(x);
    for (int i = 16; i < 32; i++) xd[i] = 0.75f; /* sample 1 constant, sample 0 zero */
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    const float *yd = cfnet_tensor_data(y);
    for (int i = 0; i < 16; i++) assert_true(yd[i] == 0.0f);
    assert_float_equal(yd[16], 12.0f, 1e-5);
    for (int i = 17; i < 32; i++) assert_true(yd[i] == 0.0f);
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
    const float *g = cfnet_tensor_data(dx), *dyd = cfnet_tensor_data(dy);
    for (int i = 0; i < 16; i++) assert_true(g[i] == 0.0f);
    for (int i = 16; i < 32; i++) assert_float_equal(g[i], dyd[16], 1e-6);
    /* dx may be omitted. */
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, NULL));
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_tensor_free(dy);
    cfnet_tensor_free(dx);
    cfnet_layer_free(l);
}

/* ---- two threads, each with its own layers, planning and executing at the same time ---- */

#define THREAD_ITERS 60
#define THREAD_BATCH 2

typedef struct thread_job {
    int A, B;
    const float *x;      /* THREAD_BATCH x A x B */
    const float *dy;     /* same */
    const float *y_ref;  /* single-threaded results */
    const float *dx_ref;
    int failures;        /* status errors or mismatches seen by the thread */
    double worst;
} thread_job;

/* Creates, sets up (plans), runs forward and backward, frees; returns non-zero on any error. */
static int run_once(int A, int B, const float *x, const float *dy, float *y, float *dx)
{
    cfnet_layer *l = NULL;
    int64_t s[2] = {A, B}, xs[3] = {THREAD_BATCH, A, B};
    cfnet_tensor *xt = NULL, *yt = NULL, *dyt = NULL, *dxt = NULL;
    int bad = cfnet_layer_dft_magnitude_create(&l) != CFNET_OK ||
              cfnet_layer_setup(l, 2, s, 0) != CFNET_OK ||
              cfnet_tensor_wrap((float *)x, 3, xs, &xt) != CFNET_OK ||
              cfnet_tensor_wrap(y, 3, xs, &yt) != CFNET_OK ||
              cfnet_tensor_wrap((float *)dy, 3, xs, &dyt) != CFNET_OK ||
              cfnet_tensor_wrap(dx, 3, xs, &dxt) != CFNET_OK ||
              cfnet_layer_forward(l, xt, yt, CFNET_MODE_TRAINING) != CFNET_OK ||
              cfnet_layer_backward(l, xt, yt, dyt, dxt) != CFNET_OK;
    cfnet_tensor_free(xt);
    cfnet_tensor_free(yt);
    cfnet_tensor_free(dyt);
    cfnet_tensor_free(dxt);
    cfnet_layer_free(l);
    return bad;
}

static void *thread_main(void *arg)
{
    thread_job *j = arg;
    int n = THREAD_BATCH * j->A * j->B;
    float *y = malloc((size_t)n * sizeof *y), *dx = malloc((size_t)n * sizeof *dx);
    if (!y || !dx) {
        j->failures++;
    } else {
        for (int it = 0; it < THREAD_ITERS; it++) {
            if (run_once(j->A, j->B, j->x, j->dy, y, dx)) {
                j->failures++;
                continue;
            }
            double e = fmax(tu_max_rel_diff(y, j->y_ref, n), tu_max_rel_diff(dx, j->dx_ref, n));
            if (e > j->worst) j->worst = e;
            if (!(e <= 1e-6)) j->failures++;
        }
    }
    free(y);
    free(dx);
    return NULL;
}

static void two_threads_with_own_layers_match_single_threaded_results(void **state)
{
    (void)state;
    static const int grids[2][2] = {{5, 8}, {7, 6}};
    float *bufs[2][4];
    thread_job jobs[2];
    tu_rng r = {77};
    for (int t = 0; t < 2; t++) {
        int A = grids[t][0], B = grids[t][1], n = THREAD_BATCH * A * B;
        for (int k = 0; k < 4; k++) {
            bufs[t][k] = malloc((size_t)n * sizeof(float));
            assert_non_null(bufs[t][k]);
        }
        tu_fill_normal(bufs[t][0], n, &r);
        tu_fill_normal(bufs[t][1], n, &r);
        assert_int_equal(run_once(A, B, bufs[t][0], bufs[t][1], bufs[t][2], bufs[t][3]), 0);
        jobs[t] = (thread_job){A, B, bufs[t][0], bufs[t][1], bufs[t][2], bufs[t][3], 0, 0.0};
    }
    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        assert_int_equal(pthread_create(&th[t], NULL, thread_main, &jobs[t]), 0);
    for (int t = 0; t < 2; t++) assert_int_equal(pthread_join(th[t], NULL), 0);
    for (int t = 0; t < 2; t++) {
        if (jobs[t].failures)
            fail_msg("thread %d: %d failures, worst difference %g", t, jobs[t].failures,
                     jobs[t].worst);
        for (int k = 0; k < 4; k++) free(bufs[t][k]);
    }
}

static void magnitude_rejects_bad_arguments_and_shapes(void **state)
{
    (void)state;
    CF_ASSERT_STATUS(cfnet_layer_dft_magnitude_create(NULL), CFNET_E_INVALID_ARGUMENT);
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_dft_magnitude_create(&l));
    assert_int_equal(cfnet_layer_kind_of(l), CFNET_LAYER_DFT_MAGNITUDE);
    int64_t s1[1] = {8}, s3[3] = {2, 3, 4}, s4a[4] = {2, 4, 2, 2}, s4b[4] = {2, 4, 1, 2},
            s4c[4] = {2, 4, 2, 1};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 1, s1, 0), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, s3, 0), CFNET_E_SHAPE_MISMATCH);
    assert_non_null(strstr(cfnet_last_error(), "dft_magnitude: input is 2x3x4"));
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, s4a, 0), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, s4b, 0), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, s4c, 0), CFNET_E_SHAPE_MISMATCH);
    /* Still usable after failed setups. */
    int64_t ok[2] = {3, 4};
    CF_ASSERT_OK(cfnet_layer_setup(l, 2, ok, 0));
    cfnet_layer_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(magnitude_matches_direct_dft_in_double),
        cmocka_unit_test(batched_plans_match_direct_dft_and_single_samples),
        cmocka_unit_test(magnitude_of_1x1_p4_map_equals_dft_of_channel_by_rotation_grid),
        cmocka_unit_test(magnitude_is_invariant_to_circular_shifts),
        cmocka_unit_test(magnitude_gradient_matches_finite_differences),
        cmocka_unit_test(magnitude_gradient_is_zero_where_spectrum_vanishes),
        cmocka_unit_test(two_threads_with_own_layers_match_single_threaded_results),
        cmocka_unit_test(magnitude_rejects_bad_arguments_and_shapes),
    };
    return cmocka_run_group_tests_name("dft_magnitude", tests, NULL, NULL);
}
