/* Batch normalisation: normalised statistics and running averages against a reference, both
 * gradients, rot90 equivariance on planar and p4 maps, bad arguments. */
#include "testutil.h"

#include "nn/layer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static cfnet_layer *make_bn(float momentum, float eps, int ndim, const int64_t *shape)
{
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_batch_norm_create(momentum, eps, &l));
    CF_ASSERT_OK(cfnet_layer_setup(l, ndim, shape, 0));
    return l;
}

/* N x <shape> tensor whose channel c has mean 3c - 2 and standard deviation 0.5 + c. */
static cfnet_tensor *channel_data(int64_t N, int ndim, const int64_t *shape, tu_rng *r)
{
    int64_t xs[5] = {N};
    memcpy(xs + 1, shape, (size_t)ndim * sizeof *xs);
    cfnet_tensor *x = tu_tensor(ndim + 1, xs, r);
    const int64_t C = shape[0], M = cfnet_tensor_numel(x) / (N * C);
    float *d = cfnet_tensor_data(x);
    for (int64_t b = 0; b < N; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < M; j++) {
                float *v = &d[(b * C + c) * M + j];
                *v = (float)(3.0 * (double)c - 2.0 + (0.5 + (double)c) * *v);
            }
    return x;
}

/* Per-channel mean and biased variance over batch and all non-channel axes (double). */
static void channel_stats(const float *x, int64_t N, int64_t C, int64_t M, double *mean,
                          double *var)
{
    for (int64_t c = 0; c < C; c++) {
        double s = 0, ss = 0;
        for (int64_t b = 0; b < N; b++)
            for (int64_t j = 0; j < M; j++) s += x[(b * C + c) * M + j];
        mean[c] = s / (double)(N * M);
        for (int64_t b = 0; b < N; b++)
            for (int64_t j = 0; j < M; j++) {
                double d = x[(b * C + c) * M + j] - mean[c];
                ss += d * d;
            }
        var[c] = ss / (double)(N * M);
    }
}

static void check_training_statistics(int ndim, const int64_t *shape, int64_t N)
{
    const float mom = 0.1f, eps = 1e-5f;
    cfnet_layer *l = make_bn(mom, eps, ndim, shape);
    assert_int_equal(cfnet_layer_param_count(l), 2);
    assert_string_equal(cfnet_layer_param_name(l, 0), "gamma");
    assert_string_equal(cfnet_layer_param_name(l, 1), "beta");
    assert_int_equal(cfnet_layer_state_count(l), 2);
    assert_string_equal(cfnet_layer_state_name(l, 0), "running_mean");
    assert_string_equal(cfnet_layer_state_name(l, 1), "running_var");
    const int64_t C = shape[0];
    for (int64_t c = 0; c < C; c++) {
        assert_true(cfnet_tensor_data(cfnet_layer_param(l, 0))[c] == 1.0f);
        assert_true(cfnet_tensor_data(cfnet_layer_param(l, 1))[c] == 0.0f);
        assert_true(cfnet_tensor_data(cfnet_layer_state(l, 0))[c] == 0.0f);
        assert_true(cfnet_tensor_data(cfnet_layer_state(l, 1))[c] == 1.0f);
    }
    tu_rng r = {(uint64_t)(31 + ndim)};
    cfnet_tensor *x = channel_data(N, ndim, shape, &r), *y = tu_output_for(l, N);
    const int64_t M = cfnet_tensor_numel(x) / (N * C);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));

    double xm[8], xv[8], ym[8], yv[8];
    assert_true(C <= 8);
    channel_stats(cfnet_tensor_data(x), N, C, M, xm, xv);
    channel_stats(cfnet_tensor_data(y), N, C, M, ym, yv);
    for (int64_t c = 0; c < C; c++) {
        /* gamma = 1, beta = 0: mean 0 and variance var / (var + eps) ~ 1 per channel. */
        assert_true(fabs(ym[c]) < 1e-5);
        assert_true(fabs(yv[c] - xv[c] / (xv[c] + eps)) < 1e-5);
        assert_true(fabs(yv[c] - 1.0) < 1e-4);
        /* One step from (0, 1): momentum times the batch mean and the unbiased variance. */
        const double m = (double)(N * M);
        const double rm = mom * xm[c], rv = (1.0 - mom) + mom * xv[c] * m / (m - 1);
        const float *run_mean = cfnet_tensor_data(cfnet_layer_state(l, 0));
        const float *run_var = cfnet_tensor_data(cfnet_layer_state(l, 1));
        assert_float_equal(run_mean[c], rm, 1e-5 * fabs(rm) + 1e-7);
        assert_float_equal(run_var[c], rv, 1e-5 * rv);
    }
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
}

static void batch_norm_training_normalises_each_channel_and_updates_running_stats(void **state)
{
    (void)state;
    const int64_t planar[] = {3, 5, 4}, p4[] = {2, 4, 3, 3}, proj[] = {4, 8}, vec[] = {5};
    check_training_statistics(3, planar, 4);
    check_training_statistics(4, p4, 3);  /* statistics shared over the 4 rotations */
    check_training_statistics(2, proj, 6); /* C x G: shared over G */
    check_training_statistics(1, vec, 7);  /* features: over the batch only */
}

static void batch_norm_single_value_per_channel_uses_biased_variance(void **state)
{
    (void)state;
    /* N = 1, shape {2}: one value per channel; the variance is 0 and the running variance
     * update uses it (no division by m - 1 = 0). */
    const int64_t s[] = {2}, xs[] = {1, 2};
    cfnet_layer *l = make_bn(0.5f, 1e-3f, 1, s);
    cfnet_tensor *x = tu_tensor(2, xs, NULL), *y = tu_output_for(l, 1);
    const float xv[2] = {4.0f, -2.0f};
    CF_ASSERT_OK(cfnet_tensor_copy_in(x, xv, 2));
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    const float *rm = cfnet_tensor_data(cfnet_layer_state(l, 0));
    const float *rv = cfnet_tensor_data(cfnet_layer_state(l, 1));
    assert_true(rm[0] == 2.0f && rm[1] == -1.0f);
    assert_true(rv[0] == 0.5f && rv[1] == 0.5f);
    assert_true(cfnet_tensor_data(y)[0] == 0.0f && cfnet_tensor_data(y)[1] == 0.0f);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
}

/* Sets gamma, beta, running mean and running variance of channel c to distinct values. */
static void randomise_bn(cfnet_layer *l, tu_rng *r)
{
    const int64_t C = cfnet_tensor_numel(cfnet_layer_param(l, 0));
    for (int64_t c = 0; c < C; c++) {
        cfnet_tensor_data(cfnet_layer_param(l, 0))[c] = (float)(0.5 + tu_uniform(r));
        cfnet_tensor_data(cfnet_layer_param(l, 1))[c] = (float)tu_normal(r);
        cfnet_tensor_data(cfnet_layer_state(l, 0))[c] = (float)tu_normal(r);
        cfnet_tensor_data(cfnet_layer_state(l, 1))[c] = (float)(0.2 + tu_uniform(r));
    }
}

static void batch_norm_inference_uses_running_statistics_and_leaves_layer_alone(void **state)
{
    (void)state;
    const int64_t s[] = {3, 4, 5, 5}, N = 2;
    const float eps = 1e-3f;
    cfnet_layer *l = make_bn(0.3f, eps, 4, s);
    tu_rng r = {41};
    randomise_bn(l, &r);
    float keep[4][3];
    for (int i = 0; i < 2; i++) {
        memcpy(keep[i], cfnet_tensor_data(cfnet_layer_param(l, i)), sizeof keep[i]);
        memcpy(keep[2 + i], cfnet_tensor_data(cfnet_layer_state(l, i)), sizeof keep[i]);
    }
    cfnet_tensor *x = channel_data(N, 4, s, &r), *y = tu_output_for(l, N);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    const int64_t M = 100;
    const float *X = cfnet_tensor_data(x), *Y = cfnet_tensor_data(y);
    float *ref = malloc((size_t)(N * 3 * M) * sizeof *ref);
    assert_non_null(ref);
    for (int64_t b = 0; b < N; b++)
        for (int64_t c = 0; c < 3; c++)
            for (int64_t j = 0; j < M; j++) {
                const int64_t i = (b * 3 + c) * M + j;
                ref[i] = (float)((double)keep[0][c] * (X[i] - (double)keep[2][c]) /
                                     sqrt((double)keep[3][c] + eps) +
                                 keep[1][c]);
            }
    assert_true(tu_max_rel_diff(Y, ref, N * 3 * M) < 1e-5);
    for (int i = 0; i < 2; i++) {
        assert_memory_equal(cfnet_tensor_data(cfnet_layer_param(l, i)), keep[i], sizeof keep[i]);
        assert_memory_equal(cfnet_tensor_data(cfnet_layer_state(l, i)), keep[2 + i],
                            sizeof keep[i]);
    }
    free(ref);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
}

/* Gradient check in the given mode; returns the worst error over x, gamma and beta. */
static double bn_gradcheck(cfnet_mode mode, double h, int ndim, const int64_t *shape, int64_t N,
                           uint64_t seed)
{
    cfnet_layer *l = make_bn(0.1f, 1e-3f, ndim, shape);
    tu_rng r = {seed};
    randomise_bn(l, &r);
    cfnet_tensor *x = channel_data(N, ndim, shape, &r);
    double wp = 1;
    double e = tu_gradcheck(l, x, mode, h, 0, &wp);
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
    return fmax(e, wp);
}

static void batch_norm_training_gradient_matches_finite_differences(void **state)
{
    (void)state;
    /* The full gradient through the batch mean and variance. Central differences, h = 1e-2,
     * float forward, every coordinate: the O(h^2) truncation error and rounding stay well
     * below the relative tolerance 1e-2. */
    const int64_t odd[] = {3, 5, 5}, even[] = {2, 6, 6}, p4[] = {2, 4, 3, 3}, proj[] = {3, 8};
    assert_true(bn_gradcheck(CFNET_MODE_TRAINING, 1e-2, 3, odd, 2, 1) < 1e-2);
    assert_true(bn_gradcheck(CFNET_MODE_TRAINING, 1e-2, 3, even, 3, 2) < 1e-2);
    assert_true(bn_gradcheck(CFNET_MODE_TRAINING, 1e-2, 4, p4, 2, 3) < 1e-2);
    assert_true(bn_gradcheck(CFNET_MODE_TRAINING, 1e-2, 2, proj, 4, 4) < 1e-2);
}

static void batch_norm_inference_gradient_matches_finite_differences(void **state)
{
    (void)state;
    /* Inference is affine in x, gamma and beta, so central differences have no truncation
     * error and a large step h = 1e-1 keeps float rounding of the forward small: relative
     * tolerance 1e-3. */
    const int64_t odd[] = {3, 5, 5}, p4[] = {2, 4, 4, 4};
    assert_true(bn_gradcheck(CFNET_MODE_INFERENCE, 1e-1, 3, odd, 2, 5) < 1e-3);
    assert_true(bn_gradcheck(CFNET_MODE_INFERENCE, 1e-1, 4, p4, 2, 6) < 1e-3);
}

/* rel. difference between BN(rot x) and rot BN(x), N x C x [4 x] S x S maps. */
static double bn_rot_error(cfnet_mode mode, bool p4, int64_t C, int64_t S, int q)
{
    const int64_t N = 3;
    int64_t shape[4] = {C, S, S};
    if (p4) {
        shape[1] = 4;
        shape[2] = shape[3] = S;
    }
    const int nd = p4 ? 4 : 3;
    cfnet_layer *l = make_bn(0.1f, 1e-3f, nd, shape);
    tu_rng r = {(uint64_t)(7 * S + q)};
    randomise_bn(l, &r);
    cfnet_tensor *x = channel_data(N, nd, shape, &r);
    double e = tu_rot90_error(l, x, p4, p4, q, mode);
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
    return e;
}

static void batch_norm_on_p4_maps_commutes_with_rot90(void **state)
{
    (void)state;
    for (int q = 1; q < 4; q++)
        for (int m = 0; m < 2; m++) {
            cfnet_mode mode = m ? CFNET_MODE_TRAINING : CFNET_MODE_INFERENCE;
            assert_true(bn_rot_error(mode, true, 3, 5, q) <= 1e-5);
            assert_true(bn_rot_error(mode, true, 2, 6, q) <= 1e-5);
        }
}

static void batch_norm_on_planar_maps_commutes_with_rot90(void **state)
{
    (void)state;
    for (int q = 1; q < 4; q++)
        for (int m = 0; m < 2; m++) {
            cfnet_mode mode = m ? CFNET_MODE_TRAINING : CFNET_MODE_INFERENCE;
            assert_true(bn_rot_error(mode, false, 3, 7, q) <= 1e-5);
            assert_true(bn_rot_error(mode, false, 4, 8, q) <= 1e-5);
        }
}

static void batch_norm_rejects_bad_arguments(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_STATUS(cfnet_layer_batch_norm_create(0.1f, 1e-5f, NULL), CFNET_E_INVALID_ARGUMENT);
    const float bad_momentum[] = {0.0f, -0.1f, 1.5f, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_momentum / sizeof *bad_momentum; i++) {
        CF_ASSERT_STATUS(cfnet_layer_batch_norm_create(bad_momentum[i], 1e-5f, &l),
                         CFNET_E_INVALID_ARGUMENT);
        assert_non_null(strstr(cfnet_last_error(), "batch_norm: momentum is"));
    }
    const float bad_eps[] = {0.0f, -1e-5f, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_eps / sizeof *bad_eps; i++) {
        CF_ASSERT_STATUS(cfnet_layer_batch_norm_create(0.1f, bad_eps[i], &l),
                         CFNET_E_INVALID_ARGUMENT);
        assert_non_null(strstr(cfnet_last_error(), "batch_norm: eps is"));
    }
    assert_null(l);
    CF_ASSERT_OK(cfnet_layer_batch_norm_create(1.0f, 1e-5f, &l)); /* momentum 1 is allowed */
    assert_int_equal(cfnet_layer_kind_of(l), CFNET_LAYER_BATCH_NORM);
    assert_true(l->fcfg[0] == 1.0f && l->fcfg[1] == 1e-5f);
    /* Backward before any forward is a state error, not a crash. */
    const int64_t s[] = {2, 3}, xs[] = {1, 2, 3};
    CF_ASSERT_OK(cfnet_layer_setup(l, 2, s, 0));
    cfnet_tensor *x = tu_tensor(3, xs, NULL);
    CF_ASSERT_STATUS(cfnet_layer_backward(l, x, x, x, NULL), CFNET_E_STATE);
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
}

/* The running statistics of a batch-norm layer, both tensors concatenated (C each). */
static void running_stats(const cfnet_layer *l, float *out, int64_t C)
{
    memcpy(out, cfnet_tensor_data(cfnet_layer_state(l, 0)), (size_t)C * sizeof(float));
    memcpy(out + C, cfnet_tensor_data(cfnet_layer_state(l, 1)), (size_t)C * sizeof(float));
}

static bool all_finite(const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return false;
    return true;
}

/* A training forward that would leave a NaN or an infinity in a running statistic (an input
 * holding one, or finite inputs so large that the variance overflows float) is refused with
 * CFNET_E_NUMERIC naming the statistic, and the statistics stay bit for bit as they were: a
 * host that then switches to inference gets finite outputs. */
static void batch_norm_training_forward_never_leaves_non_finite_running_stats(void **state)
{
    (void)state;
    enum { C = 3, N = 4 };
    const int64_t shape[] = {C, 5, 5};
    tu_rng r = {41};
    cfnet_layer *l = make_bn(0.3f, 1e-5f, 3, shape);
    cfnet_tensor *x = channel_data(N, 3, shape, &r);
    int64_t ys[] = {N, C, 5, 5};
    cfnet_tensor *y = tu_tensor(4, ys, NULL);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    float before[2 * C], after[2 * C];
    running_stats(l, before, C);
    float *d = cfnet_tensor_data(x);
    const int64_t numel = cfnet_tensor_numel(x);
    const float good = d[7];
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        d[7] = bad[k];
        CF_ASSERT_STATUS(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING), CFNET_E_NUMERIC);
        if (!strstr(cfnet_last_error(), "batch_norm: running_mean would become non-finite"))
            fail_msg("message: %s", cfnet_last_error());
        running_stats(l, after, C);
        assert_memory_equal(before, after, sizeof before);
    }
    d[7] = good;
    float *keep = malloc((size_t)numel * sizeof(float));
    assert_non_null(keep);
    memcpy(keep, d, (size_t)numel * sizeof(float));
    for (int64_t i = 0; i < numel; i++) d[i] = (d[i] + 9.0f) * 1e30f; /* finite, var overflows */
    CF_ASSERT_STATUS(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING), CFNET_E_NUMERIC);
    if (!strstr(cfnet_last_error(), "batch_norm: running_var would become non-finite"))
        fail_msg("message: %s", cfnet_last_error());
    running_stats(l, after, C);
    assert_memory_equal(before, after, sizeof before);
    /* still usable: inference is finite, and a good training forward moves the statistics */
    memcpy(d, keep, (size_t)numel * sizeof(float));
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    assert_true(all_finite(cfnet_tensor_data(y), cfnet_tensor_numel(y)));
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    running_stats(l, after, C);
    assert_true(all_finite(after, 2 * C));
    assert_memory_not_equal(before, after, sizeof before);
    free(keep);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
}

/* The same in a network: cfnet_network_forward in training mode refuses NaN and Inf images
 * (CFNET_E_INVALID_ARGUMENT) and finite images whose batch-norm variance overflows
 * (CFNET_E_NUMERIC naming the layer and statistic, as cfnet_network_train_step does); every
 * running statistic stays bit for bit as it was, inference stays finite, the network still
 * trains and saves without CFNET_SAVE_ALLOW_NONFINITE. */
static void network_training_forward_never_leaves_non_finite_running_stats(void **state)
{
    (void)state;
    enum { N = 4, S = 6, K = 3 };
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S, S, 5, &net));
    CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.5f, 1e-5f, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_conv2d_create(2, 3, 1, CFNET_PADDING_SAME, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.5f, 1e-5f, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_relu_create(&l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dense_create(K, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    int64_t xs[] = {N, 1, S, S}, os[] = {N, K};
    tu_rng r = {43};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *out = tu_tensor(2, os, NULL);
    CF_ASSERT_OK(cfnet_network_forward(net, x, out, CFNET_MODE_TRAINING));
    float before[6], after[6];
    running_stats(cfnet_network_layer(net, 0), before, 1);
    running_stats(cfnet_network_layer(net, 2), before + 2, 2);
    float *d = cfnet_tensor_data(x);
    const int64_t numel = cfnet_tensor_numel(x);
    const float good = d[3];
    const float bad[] = {NAN, INFINITY};
    for (int k = 0; k < 2; k++) {
        d[3] = bad[k];
        CF_ASSERT_STATUS(cfnet_network_forward(net, x, out, CFNET_MODE_TRAINING),
                         CFNET_E_INVALID_ARGUMENT);
        running_stats(cfnet_network_layer(net, 0), after, 1);
        running_stats(cfnet_network_layer(net, 2), after + 2, 2);
        assert_memory_equal(before, after, sizeof before);
    }
    d[3] = good;
    float *keep = malloc((size_t)numel * sizeof(float));
    assert_non_null(keep);
    memcpy(keep, d, (size_t)numel * sizeof(float));
    /* layer 0 normalises these to finite values, but its running variance would overflow */
    for (int64_t i = 0; i < numel; i++) d[i] = (d[i] + 2.0f) * 1e30f;
    CF_ASSERT_STATUS(cfnet_network_forward(net, x, out, CFNET_MODE_TRAINING), CFNET_E_NUMERIC);
    if (!strstr(cfnet_last_error(), "network_forward: layer 0 (batch_norm) running_var"))
        fail_msg("message: %s", cfnet_last_error());
    running_stats(cfnet_network_layer(net, 0), after, 1);
    running_stats(cfnet_network_layer(net, 2), after + 2, 2);
    assert_memory_equal(before, after, sizeof before);
    CF_ASSERT_STATUS(cfnet_network_backward(net, out), CFNET_E_STATE);
    memcpy(d, keep, (size_t)numel * sizeof(float));
    CF_ASSERT_OK(cfnet_network_forward(net, x, out, CFNET_MODE_INFERENCE));
    assert_true(all_finite(cfnet_tensor_data(out), N * K));
    int32_t labels[N] = {0, 1, 2, 0};
    CF_ASSERT_OK(cfnet_network_train_step(net, x, labels, N, NULL));
    void *buf = NULL;
    size_t size = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(net, 0, &buf, &size));
    cfnet_free(buf);
    free(keep);
    cfnet_tensor_free(x);
    cfnet_tensor_free(out);
    cfnet_network_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batch_norm_training_normalises_each_channel_and_updates_running_stats),
        cmocka_unit_test(batch_norm_single_value_per_channel_uses_biased_variance),
        cmocka_unit_test(batch_norm_inference_uses_running_statistics_and_leaves_layer_alone),
        cmocka_unit_test(batch_norm_training_gradient_matches_finite_differences),
        cmocka_unit_test(batch_norm_inference_gradient_matches_finite_differences),
        cmocka_unit_test(batch_norm_on_p4_maps_commutes_with_rot90),
        cmocka_unit_test(batch_norm_on_planar_maps_commutes_with_rot90),
        cmocka_unit_test(batch_norm_rejects_bad_arguments),
        cmocka_unit_test(batch_norm_training_forward_never_leaves_non_finite_running_stats),
        cmocka_unit_test(network_training_forward_never_leaves_non_finite_running_stats),
    };
    return cmocka_run_group_tests_name("batch_norm", tests, NULL, NULL);
}
