/* ReLU layer and softmax cross-entropy: values, gradients, bad arguments. */
#include "testutil.h"

#include <math.h>
#include <string.h>

static void relu_clamps_negatives_and_gradient_checks(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_relu_create(&l));
    int64_t s[] = {3, 5, 4};
    CF_ASSERT_OK(cfnet_layer_setup(l, 3, s, 1));
    int64_t xs[] = {2, 3, 5, 4};
    tu_rng r = {7};
    cfnet_tensor *x = tu_tensor(4, xs, &r);
    float *xd = cfnet_tensor_data(x);
    for (int i = 0; i < 120; i++) /* keep away from the kink so differences are exact */
        if (fabsf(xd[i]) < 0.05f) xd[i] = xd[i] < 0 ? -0.1f : 0.1f;
    cfnet_tensor *y = tu_output_for(l, 2);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    for (int i = 0; i < 120; i++)
        assert_true(cfnet_tensor_data(y)[i] == (xd[i] > 0 ? xd[i] : 0.0f));
    double e = tu_gradcheck(l, x, CFNET_MODE_TRAINING, 1e-2, 0, NULL);
    assert_true(e < 1e-4);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
}

static void layer_rejects_wrong_shapes_and_state(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_relu_create(&l));
    int64_t xs[] = {2, 3};
    cfnet_tensor *x = tu_tensor(2, xs, NULL), *y = tu_tensor(2, xs, NULL);
    CF_ASSERT_STATUS(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE), CFNET_E_STATE);
    CF_ASSERT_STATUS(cfnet_layer_backward(l, x, y, y, x), CFNET_E_STATE);
    int64_t s[] = {4};
    CF_ASSERT_OK(cfnet_layer_setup(l, 1, s, 0));
    CF_ASSERT_STATUS(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE), CFNET_E_SHAPE_MISMATCH);
    assert_non_null(strstr(cfnet_last_error(), "relu: input is 2x3, expected N x 4"));
    CF_ASSERT_STATUS(cfnet_layer_forward(l, x, y, (cfnet_mode)7), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_forward(NULL, x, y, CFNET_MODE_INFERENCE),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 0, s, 0), CFNET_E_INVALID_ARGUMENT);
    int64_t five[] = {1, 1, 1, 1, 1};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 5, five, 0), CFNET_E_INVALID_ARGUMENT);
    /* A failed setup left the previous setup in place. */
    int nd;
    int64_t os[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, os));
    assert_int_equal(nd, 1);
    assert_int_equal(os[0], 4);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
    cfnet_layer_free(NULL);
}

static void cross_entropy_matches_direct_formula(void **state)
{
    (void)state;
    int64_t s[] = {3, 4};
    float z[12] = {1, 2, 3, 4, -1, 0, 1, 0, 1000, 0, -1000, 5};
    int32_t lab[3] = {3, 0, 0};
    cfnet_tensor *zt = tu_tensor(2, s, NULL), *g = tu_tensor(2, s, NULL);
    CF_ASSERT_OK(cfnet_tensor_copy_in(zt, z, 12));
    float loss;
    CF_ASSERT_OK(cfnet_softmax_cross_entropy(zt, lab, 3, &loss, g));
    double expect = 0;
    for (int i = 0; i < 3; i++) {
        double m = -INFINITY, s2 = 0;
        for (int j = 0; j < 4; j++) m = fmax(m, z[i * 4 + j]);
        for (int j = 0; j < 4; j++) s2 += exp(z[i * 4 + j] - m);
        expect += log(s2) + m - z[i * 4 + lab[i]];
    }
    expect /= 3;
    assert_true(isfinite(loss));
    assert_float_equal(loss, expect, 1e-5);
    /* Gradient rows sum to zero and equal (p - onehot) / N. */
    const float *gd = cfnet_tensor_data(g);
    for (int i = 0; i < 3; i++) {
        double sum = 0;
        for (int j = 0; j < 4; j++) sum += gd[i * 4 + j];
        assert_float_equal(sum, 0.0, 1e-6);
    }
    assert_float_equal(gd[8], 0.0, 1e-7); /* confident and right */
    int32_t bad[3] = {3, 4, 0};
    CF_ASSERT_STATUS(cfnet_softmax_cross_entropy(zt, bad, 3, &loss, g), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_softmax_cross_entropy(zt, lab, 2, &loss, g), CFNET_E_SHAPE_MISMATCH);
    z[5] = NAN;
    CF_ASSERT_OK(cfnet_tensor_copy_in(zt, z, 12));
    CF_ASSERT_STATUS(cfnet_softmax_cross_entropy(zt, lab, 3, &loss, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    cfnet_tensor_free(zt);
    cfnet_tensor_free(g);
}

/* Logits of +-1e4 (exp overflows float and double without the max shift): the loss is the
 * direct formula and finite, and the gradient matches central differences of the loss, taken
 * with steps large enough for float at that magnitude (the loss is nearly linear there). */
static void cross_entropy_of_extreme_logits_is_finite_and_its_gradient_checks(void **state)
{
    (void)state;
    enum { N = 3, C = 3 };
    int64_t s[] = {N, C};
    const float z[N * C] = {1e4f, -1e4f, 0.0f, 1e4f, 1e4f, -1e4f, -1e4f, 0.5f, -1e4f};
    int32_t lab[N] = {1, 2, 1};
    cfnet_tensor *zt = tu_tensor(2, s, NULL), *g = tu_tensor(2, s, NULL);
    CF_ASSERT_OK(cfnet_tensor_copy_in(zt, z, N * C));
    float loss;
    CF_ASSERT_OK(cfnet_softmax_cross_entropy(zt, lab, N, &loss, g));
    /* sample 0: 2e4; sample 1: 1e4 + ln 2 + 1e4; sample 2: 0 (up to exp(-1e4)) */
    double expect = (2e4 + 2e4 + log(2.0)) / N;
    assert_true(isfinite(loss));
    assert_float_equal(loss, expect, 1e-3);
    float gd[N * C];
    CF_ASSERT_OK(cfnet_tensor_copy_out(g, gd, N * C));
    for (int i = 0; i < N * C; i++) {
        assert_true(isfinite(gd[i]));
        const double h = 4.0;
        float w[N * C], lp, lm;
        memcpy(w, z, sizeof w);
        w[i] = (float)(z[i] + h);
        CF_ASSERT_OK(cfnet_tensor_copy_in(zt, w, N * C));
        CF_ASSERT_OK(cfnet_softmax_cross_entropy(zt, lab, N, &lp, NULL));
        w[i] = (float)(z[i] - h);
        CF_ASSERT_OK(cfnet_tensor_copy_in(zt, w, N * C));
        CF_ASSERT_OK(cfnet_softmax_cross_entropy(zt, lab, N, &lm, NULL));
        double fd = ((double)lp - (double)lm) / (2 * h);
        if (fabs(fd - gd[i]) > 1e-3)
            fail_msg("logit %d: gradient %.6g, central difference %.6g", i, gd[i], fd);
    }
    cfnet_tensor_free(zt);
    cfnet_tensor_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(relu_clamps_negatives_and_gradient_checks),
        cmocka_unit_test(layer_rejects_wrong_shapes_and_state),
        cmocka_unit_test(cross_entropy_matches_direct_formula),
        cmocka_unit_test(cross_entropy_of_extreme_logits_is_finite_and_its_gradient_checks),
    };
    return cmocka_run_group_tests_name("relu_loss", tests, NULL, NULL);
}
