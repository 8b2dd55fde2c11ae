/* Dense layer: values against explicit loops, gradients, initialisation, bad arguments. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A dense layer with O outputs set up for the given input shape, with a random bias. */
static cfnet_layer *make_dense(int O, int ndim, const int64_t *shape, uint64_t seed, tu_rng *r)
{
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_dense_create(O, &l));
    CF_ASSERT_OK(cfnet_layer_setup(l, ndim, shape, seed));
    cfnet_tensor *b = cfnet_layer_param(l, 1);
    tu_fill_normal(cfnet_tensor_data(b), cfnet_tensor_numel(b), r);
    return l;
}

static void dense_matches_explicit_loops_forward_and_backward(void **state)
{
    (void)state;
    tu_rng r = {11};
    const int64_t s[] = {3, 5, 4}, N = 4, D = 60, O = 7;
    cfnet_layer *l = make_dense((int)O, 3, s, 5, &r);
    assert_string_equal(cfnet_layer_param_name(l, 0), "weight");
    assert_string_equal(cfnet_layer_param_name(l, 1), "bias");
    int nd;
    int64_t os[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, os));
    assert_int_equal(nd, 1);
    assert_int_equal(os[0], O);
    assert_int_equal(cfnet_tensor_dim(cfnet_layer_param(l, 0), 0), O);
    assert_int_equal(cfnet_tensor_dim(cfnet_layer_param(l, 0), 1), D);

    const int64_t xs[] = {N, 3, 5, 4};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *y = tu_output_for(l, N), *dy = tu_output_for(l, N);
    cfnet_tensor *dx = tu_tensor(4, xs, NULL);
    tu_fill_normal(cfnet_tensor_data(dy), N * O, &r);
    const float *X = cfnet_tensor_data(x), *W = cfnet_tensor_data(cfnet_layer_param(l, 0));
    const float *B = cfnet_tensor_data(cfnet_layer_param(l, 1)), *DY = cfnet_tensor_data(dy);

    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    float ref[4 * 7];
    for (int64_t i = 0; i < N; i++)
        for (int64_t o = 0; o < O; o++) {
            double acc = B[o];
            for (int64_t d = 0; d < D; d++) acc += (double)W[o * D + d] * X[i * D + d];
            ref[i * O + o] = (float)acc;
        }
    assert_true(tu_max_rel_diff(cfnet_tensor_data(y), ref, N * O) < 1e-5);

    /* Two backward passes accumulate twice the gradient; dx is overwritten, not accumulated. */
    CF_ASSERT_OK(cfnet_layer_zero_grad(l));
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
    float *rdw = calloc((size_t)(O * D), sizeof *rdw);
    float rdb[7], rdx[4 * 60];
    assert_non_null(rdw);
    for (int64_t o = 0; o < O; o++) {
        double acc = 0;
        for (int64_t i = 0; i < N; i++) acc += DY[i * O + o];
        rdb[o] = (float)(2 * acc);
        for (int64_t d = 0; d < D; d++) {
            double a = 0;
            for (int64_t i = 0; i < N; i++) a += (double)DY[i * O + o] * X[i * D + d];
            rdw[o * D + d] = (float)(2 * a);
        }
    }
    for (int64_t i = 0; i < N; i++)
        for (int64_t d = 0; d < D; d++) {
            double a = 0;
            for (int64_t o = 0; o < O; o++) a += (double)DY[i * O + o] * W[o * D + d];
            rdx[i * D + d] = (float)a;
        }
    assert_true(tu_max_rel_diff(cfnet_tensor_data(cfnet_layer_grad(l, 0)), rdw, O * D) < 1e-5);
    assert_true(tu_max_rel_diff(cfnet_tensor_data(cfnet_layer_grad(l, 1)), rdb, O) < 1e-5);
    assert_true(tu_max_rel_diff(cfnet_tensor_data(dx), rdx, N * D) < 1e-5);

    /* dx may be NULL: parameter gradients are still accumulated. */
    CF_ASSERT_OK(cfnet_layer_zero_grad(l));
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, NULL));
    for (int64_t o = 0; o < O; o++) rdb[o] *= 0.5f;
    assert_true(tu_max_rel_diff(cfnet_tensor_data(cfnet_layer_grad(l, 1)), rdb, O) < 1e-5);

    free(rdw);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_tensor_free(dy);
    cfnet_tensor_free(dx);
    cfnet_layer_free(l);
}

static void dense_gradient_matches_finite_differences(void **state)
{
    (void)state;
    tu_rng r = {12};
    const int64_t s[] = {2, 3, 3}, xs[] = {3, 2, 3, 3};
    cfnet_layer *l = make_dense(5, 3, s, 9, &r);
    cfnet_tensor *x = tu_tensor(4, xs, &r);
    /* The layer is linear in x, W and b: central differences with h = 1e-2 are exact up to
     * float rounding of the forward, so a relative tolerance of 1e-3 is generous. */
    double wp = 1;
    double e = tu_gradcheck(l, x, CFNET_MODE_TRAINING, 1e-2, 0, &wp);
    assert_true(e < 1e-3);
    assert_true(wp < 1e-3);
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
}

static void dense_he_init_has_variance_two_over_fan_in(void **state)
{
    (void)state;
    const int64_t s[] = {1000};
    cfnet_layer *a = NULL, *b = NULL, *c = NULL;
    CF_ASSERT_OK(cfnet_layer_dense_create(50, &a));
    CF_ASSERT_OK(cfnet_layer_dense_create(50, &b));
    CF_ASSERT_OK(cfnet_layer_dense_create(50, &c));
    CF_ASSERT_OK(cfnet_layer_setup(a, 1, s, 42));
    CF_ASSERT_OK(cfnet_layer_setup(b, 1, s, 42));
    CF_ASSERT_OK(cfnet_layer_setup(c, 1, s, 43));
    const float *wa = cfnet_tensor_data(cfnet_layer_param(a, 0));
    const float *wb = cfnet_tensor_data(cfnet_layer_param(b, 0));
    const float *wc = cfnet_tensor_data(cfnet_layer_param(c, 0));
    const int64_t n = 50 * 1000;
    double m = 0, v = 0;
    for (int64_t i = 0; i < n; i++) m += wa[i];
    m /= (double)n;
    for (int64_t i = 0; i < n; i++) v += (wa[i] - m) * (wa[i] - m);
    v /= (double)(n - 1);
    /* 50000 samples: the variance estimate has a relative standard deviation of 0.6 %. */
    assert_true(fabs(v / (2.0 / 1000) - 1) < 0.05);
    assert_true(fabs(m) < 5 * sqrt(2.0 / 1000 / (double)n));
    assert_memory_equal(wa, wb, (size_t)n * sizeof *wa); /* same seed, same weights */
    assert_true(memcmp(wa, wc, (size_t)n * sizeof *wa) != 0);
    const float *bias = cfnet_tensor_data(cfnet_layer_param(a, 1));
    for (int i = 0; i < 50; i++) assert_true(bias[i] == 0.0f);
    cfnet_layer_free(a);
    cfnet_layer_free(b);
    cfnet_layer_free(c);
}

static void dense_rejects_bad_arguments(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_STATUS(cfnet_layer_dense_create(4, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_dense_create(0, &l), CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "dense: out_features is 0"));
    assert_null(l);
    CF_ASSERT_STATUS(cfnet_layer_dense_create(-3, &l), CFNET_E_INVALID_ARGUMENT);
    assert_null(l);
    CF_ASSERT_OK(cfnet_layer_dense_create(4, &l));
    assert_int_equal(cfnet_layer_kind_of(l), CFNET_LAYER_DENSE);
    /* 2^32 inputs per sample do not fit BLAS int sizes; rejected before any allocation. */
    const int64_t big[] = {65536, 65536};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 2, big, 0), CFNET_E_LIMIT);
    assert_non_null(strstr(cfnet_last_error(), "65536x65536"));
    assert_int_equal(cfnet_layer_param_count(l), 0);
    cfnet_layer_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dense_matches_explicit_loops_forward_and_backward),
        cmocka_unit_test(dense_gradient_matches_finite_differences),
        cmocka_unit_test(dense_he_init_has_variance_two_over_fan_in),
        cmocka_unit_test(dense_rejects_bad_arguments),
    };
    return cmocka_run_group_tests_name("dense", tests, NULL, NULL);
}
