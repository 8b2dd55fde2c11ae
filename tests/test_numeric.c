/* The shared numeric helpers (src/core/numeric.c, cf_check_batch, cf_bilinear_taps): one
 * softmax for the layer, the loss and cfnet_network_probabilities, so the two probability paths
 * agree bit for bit; one argmax; one batch-shape check; one bilinear tap builder. */
#include "testutil.h"

#include "kernels/rotate.h"

#include <math.h>
#include <string.h>

#define PI 3.14159265358979323846

static cfnet_network *small_net(bool with_softmax)
{
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(2, 9, 9, 11, &net));
    CF_ASSERT_OK(cfnet_layer_conv2d_create(4, 3, 1, CFNET_PADDING_SAME, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_relu_create(&l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dense_create(7, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    if (with_softmax) {
        CF_ASSERT_OK(cfnet_layer_softmax_create(&l));
        CF_ASSERT_OK(cfnet_network_append(net, l));
    }
    return net;
}

static void probabilities_agree_bit_for_bit_with_and_without_a_softmax_layer(void **state)
{
    (void)state;
    cfnet_network *plain = small_net(false), *soft = small_net(true);
    int64_t xs[] = {5, 2, 9, 9}, ps[] = {5, 7};
    cfnet_tensor *x = tu_tensor(4, xs, NULL), *pa = NULL, *pb = NULL;
    tu_rng r = {3};
    tu_fill_normal(cfnet_tensor_data(x), cfnet_tensor_numel(x), &r);
    /* scale the logits up so that the exponentials are far from 1 */
    for (int64_t i = 0; i < cfnet_tensor_numel(x); i++) cfnet_tensor_data(x)[i] *= 8.0f;
    CF_ASSERT_OK(cfnet_tensor_create(2, ps, &pa));
    CF_ASSERT_OK(cfnet_tensor_create(2, ps, &pb));
    CF_ASSERT_OK(cfnet_network_probabilities(plain, x, pa));
    CF_ASSERT_OK(cfnet_network_probabilities(soft, x, pb));
    assert_memory_equal(cfnet_tensor_data(pa), cfnet_tensor_data(pb), 5 * 7 * sizeof(float));
    double sum = 0;
    for (int j = 0; j < 7; j++) sum += cfnet_tensor_data(pa)[j];
    assert_true(fabs(sum - 1.0) < 1e-6);
    cfnet_tensor_free(pa);
    cfnet_tensor_free(pb);
    cfnet_tensor_free(x);
    cfnet_network_free(plain);
    cfnet_network_free(soft);
}

static void softmax_returns_log_sum_exp_and_argmax_takes_the_first_maximum(void **state)
{
    (void)state;
    const float z[4] = {1.0f, 3.0f, 3.0f, -2.0f};
    float p[4];
    double lse = cf_softmax(z, p, 4);
    double want = log(exp(1.0) + 2 * exp(3.0) + exp(-2.0));
    assert_true(fabs(lse - want) < 1e-12);
    for (int j = 0; j < 4; j++) assert_true(fabsf(p[j] - (float)exp(z[j] - want)) < 1e-7f);
    assert_int_equal(cf_argmax(z, 4), 1);
    assert_int_equal(cf_argmax(z, 1), 0);
    const float big[2] = {1000.0f, 999.0f}; /* no overflow */
    float q[2];
    cf_softmax(big, q, 2);
    assert_true(isfinite(q[0]) && q[0] > q[1]);
}

static void batch_check_names_who_what_and_the_expected_shape(void **state)
{
    (void)state;
    int64_t ts[] = {2, 3, 4}, want[] = {3, 5};
    cfnet_tensor *t = tu_tensor(3, ts, NULL);
    int64_t n = 0;
    CF_ASSERT_STATUS(cf_check_batch("who", "input", t, 2, want, &n), CFNET_E_SHAPE_MISMATCH);
    assert_string_equal(cfnet_last_error(), "who: input is 2x3x4, expected N x 3x5");
    want[1] = 4;
    CF_ASSERT_OK(cf_check_batch("who", "input", t, 2, want, &n));
    assert_int_equal(n, 2);
    n = 3;
    CF_ASSERT_STATUS(cf_check_batch("who", "output", t, 2, want, &n), CFNET_E_SHAPE_MISMATCH);
    assert_string_equal(cfnet_last_error(), "who: output is 2x3x4, expected 3x3x4");
    CF_ASSERT_STATUS(cf_check_batch("who", "input", NULL, 2, want, &n), CFNET_E_INVALID_ARGUMENT);
    cfnet_tensor_free(t);
}

static void bilinear_taps_are_a_partition_of_unity_inside_the_grid(void **state)
{
    (void)state;
    int64_t src[4];
    double w[4];
    /* identity: one tap of weight 1 */
    assert_int_equal(cf_bilinear_taps(5, 1, 3, 1.0, 0.0, false, src, w), 1);
    assert_int_equal(src[0], 1 * 5 + 3);
    assert_true(w[0] == 1.0);
    /* a quarter turn (snapped) maps grid points to grid points */
    assert_int_equal(cf_bilinear_taps(5, 0, 0, cos(PI / 2), sin(PI / 2), true, src, w), 1);
    /* 30 degrees at the centre region: weights sum to 1 */
    int n = cf_bilinear_taps(7, 3, 4, cos(PI / 6), sin(PI / 6), false, src, w);
    double s = 0;
    for (int a = 0; a < n; a++) {
        assert_true(w[a] > 0 && src[a] >= 0 && src[a] < 49);
        s += w[a];
    }
    assert_true(fabs(s - 1.0) < 1e-12);
}

/* Finite images whose outputs overflow (a dense layer with weights of 3e38, as a diverged or
 * edited model file can hold: the loader accepts finite values): probabilities and predicted
 * labels would be NaN and the argmax of NaN; both calls give CFNET_E_NUMERIC naming the image,
 * with or without a final softmax layer. */
static void probabilities_and_predict_refuse_non_finite_outputs(void **state)
{
    (void)state;
    for (int soft = 0; soft < 2; soft++) {
        cfnet_network *net = small_net(soft);
        int64_t xs[] = {3, 2, 9, 9}, ps[] = {3, 7};
        cfnet_tensor *x = tu_tensor(4, xs, NULL), *p = NULL;
        tu_rng r = {5};
        tu_fill_normal(cfnet_tensor_data(x), cfnet_tensor_numel(x), &r);
        CF_ASSERT_OK(cfnet_tensor_create(2, ps, &p));
        int32_t labels[3];
        CF_ASSERT_OK(cfnet_network_probabilities(net, x, p));
        CF_ASSERT_OK(cfnet_network_predict(net, x, labels, 3));
        cfnet_tensor *w = cfnet_layer_param(cfnet_network_layer(net, 2), 0);
        for (int64_t i = 0; i < cfnet_tensor_numel(w); i++) cfnet_tensor_data(w)[i] = 3e38f;
        CF_ASSERT_STATUS(cfnet_network_probabilities(net, x, p), CFNET_E_NUMERIC);
        if (!strstr(cfnet_last_error(), "network_probabilities: the output for image 0 is not "
                                        "finite"))
            fail_msg("message: %s", cfnet_last_error());
        CF_ASSERT_STATUS(cfnet_network_predict(net, x, labels, 3), CFNET_E_NUMERIC);
        if (!strstr(cfnet_last_error(), "network_predict: the output for image 0 is not finite"))
            fail_msg("message: %s", cfnet_last_error());
        cfnet_tensor_free(p);
        cfnet_tensor_free(x);
        cfnet_network_free(net);
    }
}

/* An output of -infinity among finite ones (one class's weights of -3e38: a diverged or edited
 * model) is a probability of 0, not a NaN: probabilities give them and predict gives the label
 * of their largest, with or without a final softmax layer, as probabilities and predict refuse
 * the same images (predict refused this one while probabilities accepted it). */
static void predict_and_probabilities_agree_on_an_output_of_minus_infinity(void **state)
{
    (void)state;
    for (int soft = 0; soft < 2; soft++) {
        cfnet_network *net = small_net(soft);
        int64_t xs[] = {3, 2, 9, 9}, ps[] = {3, 7};
        cfnet_tensor *x = tu_tensor(4, xs, NULL), *p = NULL, *o = NULL;
        tu_rng r = {5};
        tu_fill_normal(cfnet_tensor_data(x), cfnet_tensor_numel(x), &r);
        CF_ASSERT_OK(cfnet_tensor_create(2, ps, &p));
        CF_ASSERT_OK(cfnet_tensor_create(2, ps, &o));
        cfnet_layer *dense = cfnet_network_layer(net, 2);
        cfnet_tensor *w = cfnet_layer_param(dense, 0); /* 7 x D: row 0 is class 0's */
        const int64_t D = cfnet_tensor_numel(w) / 7;
        for (int64_t i = 0; i < D; i++) cfnet_tensor_data(w)[i] = -3e38f;
        /* the dense layer's output: class 0 is -infinity for every image, the others finite */
        CF_ASSERT_OK(cfnet_network_infer(net, x, o));
        for (int i = 0; i < 3 && !soft; i++) {
            assert_true(isinf(cfnet_tensor_data(o)[i * 7]) && cfnet_tensor_data(o)[i * 7] < 0);
            for (int j = 1; j < 7; j++) assert_true(isfinite(cfnet_tensor_data(o)[i * 7 + j]));
        }
        int32_t labels[3];
        CF_ASSERT_OK(cfnet_network_probabilities(net, x, p));
        CF_ASSERT_OK(cfnet_network_predict(net, x, labels, 3));
        for (int i = 0; i < 3; i++) {
            const float *q = cfnet_tensor_data(p) + i * 7;
            int best = 0;
            for (int j = 1; j < 7; j++)
                if (q[j] > q[best]) best = j;
            assert_true(q[0] == 0.0f);
            assert_int_equal(labels[i], best);
        }
        cfnet_tensor_free(o);
        cfnet_tensor_free(p);
        cfnet_tensor_free(x);
        cfnet_network_free(net);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(probabilities_agree_bit_for_bit_with_and_without_a_softmax_layer),
        cmocka_unit_test(softmax_returns_log_sum_exp_and_argmax_takes_the_first_maximum),
        cmocka_unit_test(batch_check_names_who_what_and_the_expected_shape),
        cmocka_unit_test(bilinear_taps_are_a_partition_of_unity_inside_the_grid),
        cmocka_unit_test(probabilities_and_predict_refuse_non_finite_outputs),
        cmocka_unit_test(predict_and_probabilities_agree_on_an_output_of_minus_infinity),
    };
    return cmocka_run_group_tests_name("numeric", tests, NULL, NULL);
}
