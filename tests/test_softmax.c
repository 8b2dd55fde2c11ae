/* Softmax layer: values against exp / sum, stability, gradients, bad arguments. */
#include "testutil.h"

#include <math.h>
#include <string.h>

static void softmax_sums_to_one_and_matches_exp_over_sum(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_softmax_create(&l));
    const int64_t s[] = {2, 3, 4}, xs[] = {3, 2, 3, 4}, K = 24, N = 3;
    CF_ASSERT_OK(cfnet_layer_setup(l, 3, s, 0));
    assert_int_equal(cfnet_layer_kind_of(l), CFNET_LAYER_SOFTMAX);
    assert_int_equal(cfnet_layer_param_count(l), 0);
    int nd;
    int64_t os[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, os));
    assert_int_equal(nd, 3);
    assert_memory_equal(os, s, sizeof s);
    tu_rng r = {61};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *y = tu_output_for(l, N);
    cfnet_tensor *dy = tu_tensor(4, xs, &r), *dx = tu_tensor(4, xs, NULL);
    float *X = cfnet_tensor_data(x);
    for (int64_t i = 0; i < N * K; i++) X[i] *= 3.0f;
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
    const float *Y = cfnet_tensor_data(y), *DY = cfnet_tensor_data(dy);
    float ref[72], refdx[72];
    for (int64_t b = 0; b < N; b++) {
        double sum = 0, total = 0, dot = 0;
        for (int64_t i = 0; i < K; i++) sum += exp((double)X[b * K + i]);
        for (int64_t i = 0; i < K; i++) {
            ref[b * K + i] = (float)(exp((double)X[b * K + i]) / sum);
            total += Y[b * K + i];
            dot += ref[b * K + i] * (double)DY[b * K + i];
        }
        assert_true(fabs(total - 1.0) < 1e-6);
        for (int64_t i = 0; i < K; i++)
            refdx[b * K + i] = (float)(ref[b * K + i] * (DY[b * K + i] - dot));
    }
    assert_true(tu_max_rel_diff(Y, ref, N * K) < 1e-6);
    assert_true(tu_max_rel_diff(cfnet_tensor_data(dx), refdx, N * K) < 1e-5);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_tensor_free(dy);
    cfnet_tensor_free(dx);
    cfnet_layer_free(l);
}

static void softmax_is_stable_and_shift_invariant_for_large_inputs(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_softmax_create(&l));
    const int64_t s[] = {4}, xs[] = {2, 4};
    CF_ASSERT_OK(cfnet_layer_setup(l, 1, s, 0));
    /* Row 1 is row 0 shifted by 1000: exp(1000) overflows float, the result must not. */
    const float xv[8] = {1, 0, -1, 0.5f, 1001, 1000, 999, 1000.5f};
    cfnet_tensor *x = tu_tensor(2, xs, NULL), *y = tu_output_for(l, 2);
    CF_ASSERT_OK(cfnet_tensor_copy_in(x, xv, 8));
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    const float *Y = cfnet_tensor_data(y);
    double sum = exp(1.0) + 1 + exp(-1.0) + exp(0.5);
    const float ref[4] = {(float)(exp(1.0) / sum), (float)(1 / sum), (float)(exp(-1.0) / sum),
                          (float)(exp(0.5) / sum)};
    for (int i = 0; i < 8; i++) assert_true(isfinite(Y[i]));
    assert_true(tu_max_rel_diff(Y, ref, 4) < 1e-6);
    assert_true(tu_max_rel_diff(Y + 4, ref, 4) < 1e-6);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
}

static void softmax_gradient_matches_finite_differences(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_softmax_create(&l));
    const int64_t s[] = {3, 5}, xs[] = {4, 3, 5};
    CF_ASSERT_OK(cfnet_layer_setup(l, 2, s, 0));
    tu_rng r = {62};
    cfnet_tensor *x = tu_tensor(3, xs, &r);
    /* Central differences, h = 1e-2, float forward, every coordinate: relative tolerance 1e-2
     * (truncation O(h^2) ~ 1e-5; float rounding of the outputs divided by 2h ~ 1e-4 relative
     * on the smallest gradients, which a smaller h would make worse). */
    assert_true(tu_gradcheck(l, x, CFNET_MODE_INFERENCE, 1e-2, 0, NULL) < 1e-2);
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
}

static void softmax_rejects_bad_arguments(void **state)
{
    (void)state;
    CF_ASSERT_STATUS(cfnet_layer_softmax_create(NULL), CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "softmax"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(softmax_sums_to_one_and_matches_exp_over_sum),
        cmocka_unit_test(softmax_is_stable_and_shift_invariant_for_large_inputs),
        cmocka_unit_test(softmax_gradient_matches_finite_differences),
        cmocka_unit_test(softmax_rejects_bad_arguments),
    };
    return cmocka_run_group_tests_name("softmax", tests, NULL, NULL);
}
