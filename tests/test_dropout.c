/* Dropout: exact mask gradient, identity in inference, drop rate, reproducibility, bad
 * arguments. */
#include "testutil.h"

#include "nn/layer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static cfnet_layer *make_dropout(float drop, int ndim, const int64_t *shape, uint64_t seed)
{
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_dropout_create(drop, &l));
    CF_ASSERT_OK(cfnet_layer_setup(l, ndim, shape, seed));
    return l;
}

static void dropout_inference_is_identity(void **state)
{
    (void)state;
    const int64_t s[] = {3, 4, 5}, xs[] = {2, 3, 4, 5};
    cfnet_layer *l = make_dropout(0.5f, 3, s, 1);
    assert_int_equal(cfnet_layer_param_count(l), 0);
    tu_rng r = {51};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *y = tu_output_for(l, 2);
    cfnet_tensor *dy = tu_tensor(4, xs, &r), *dx = tu_tensor(4, xs, NULL);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    assert_memory_equal(cfnet_tensor_data(y), cfnet_tensor_data(x), 120 * sizeof(float));
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
    assert_memory_equal(cfnet_tensor_data(dx), cfnet_tensor_data(dy), 120 * sizeof(float));
    /* The inference function is the identity: central differences (h = 1e-2) are exact up to
     * float rounding of x +- h, relative tolerance 1e-4. */
    assert_true(tu_gradcheck(l, x, CFNET_MODE_INFERENCE, 1e-2, 0, NULL) < 1e-4);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_tensor_free(dy);
    cfnet_tensor_free(dx);
    cfnet_layer_free(l);
}

static void dropout_training_gradient_is_mask_times_scale_times_dy_exactly(void **state)
{
    (void)state;
    const float drop = 0.3f, scale = 1.0f / (1.0f - drop);
    const int64_t s[] = {2, 6, 7}, xs[] = {3, 2, 6, 7}, total = 3 * 84;
    cfnet_layer *l = make_dropout(drop, 3, s, 2);
    tu_rng r = {52};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *y = tu_output_for(l, 3);
    cfnet_tensor *dy = tu_tensor(4, xs, &r), *dx = tu_tensor(4, xs, NULL);
    const float *X = cfnet_tensor_data(x), *Y = cfnet_tensor_data(y), *DY = cfnet_tensor_data(dy);
    for (int64_t i = 0; i < total; i++) assert_true(X[i] != 0.0f);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    /* Two backward passes of the same forward see the same mask. */
    for (int pass = 0; pass < 2; pass++) {
        CF_ASSERT_OK(cfnet_tensor_fill(dx, 42.0f));
        CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
        const float *DX = cfnet_tensor_data(dx);
        int64_t kept = 0;
        for (int64_t i = 0; i < total; i++) {
            if (Y[i] == 0.0f) {
                assert_true(DX[i] == 0.0f);
            } else {
                kept++;
                assert_true(Y[i] == X[i] * scale);
                assert_true(DX[i] == DY[i] * scale);
            }
        }
        assert_true(kept > 0 && kept < total);
    }
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_tensor_free(dy);
    cfnet_tensor_free(dx);
    cfnet_layer_free(l);
}

/* Fraction of zeros in y after a training forward of ones. */
static double drop_fraction(cfnet_layer *l, cfnet_tensor *x, cfnet_tensor *y)
{
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    const int64_t n = cfnet_tensor_numel(y);
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; i++) zeros += cfnet_tensor_data(y)[i] == 0.0f;
    return (double)zeros / (double)n;
}

static void dropout_rate_is_within_five_standard_deviations(void **state)
{
    (void)state;
    const float drops[] = {0.1f, 0.25f, 0.6f, 0.95f};
    const int64_t s[] = {50000}, xs[] = {4, 50000}, n = 200000;
    for (size_t k = 0; k < sizeof drops / sizeof *drops; k++) {
        cfnet_layer *l = make_dropout(drops[k], 1, s, 100 + k);
        cfnet_tensor *x = tu_tensor(2, xs, NULL), *y = tu_output_for(l, 4);
        CF_ASSERT_OK(cfnet_tensor_fill(x, 1.0f));
        const double p = drops[k], sd = sqrt(p * (1 - p) / (double)n);
        for (int rep = 0; rep < 3; rep++) assert_true(fabs(drop_fraction(l, x, y) - p) < 5 * sd);
        cfnet_tensor_free(x);
        cfnet_tensor_free(y);
        cfnet_layer_free(l);
    }
}

static void dropout_with_zero_rate_is_identity_in_training(void **state)
{
    (void)state;
    const int64_t s[] = {10}, xs[] = {3, 10};
    cfnet_layer *l = make_dropout(0.0f, 1, s, 3);
    tu_rng r = {53};
    cfnet_tensor *x = tu_tensor(2, xs, &r), *y = tu_output_for(l, 3);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    assert_memory_equal(cfnet_tensor_data(y), cfnet_tensor_data(x), 30 * sizeof(float));
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
}

static void dropout_is_reproducible_for_the_same_seed(void **state)
{
    (void)state;
    const int64_t s[] = {4, 8}, xs[] = {2, 4, 8}, total = 64;
    cfnet_layer *a = make_dropout(0.5f, 2, s, 7), *b = make_dropout(0.5f, 2, s, 7);
    cfnet_layer *c = make_dropout(0.5f, 2, s, 8);
    tu_rng r = {54};
    cfnet_tensor *x = tu_tensor(3, xs, &r);
    cfnet_tensor *ya1 = tu_output_for(a, 2), *ya2 = tu_output_for(a, 2), *ya3 = tu_output_for(a, 2);
    cfnet_tensor *yb1 = tu_output_for(b, 2), *yb2 = tu_output_for(b, 2), *yc = tu_output_for(c, 2);
    const size_t bytes = (size_t)total * sizeof(float);
    CF_ASSERT_OK(cfnet_layer_forward(a, x, ya1, CFNET_MODE_TRAINING));
    CF_ASSERT_OK(cfnet_layer_forward(a, x, ya2, CFNET_MODE_TRAINING));
    CF_ASSERT_OK(cfnet_layer_forward(b, x, yb1, CFNET_MODE_TRAINING));
    CF_ASSERT_OK(cfnet_layer_forward(b, x, yb2, CFNET_MODE_TRAINING));
    CF_ASSERT_OK(cfnet_layer_forward(c, x, yc, CFNET_MODE_TRAINING));
    assert_memory_equal(cfnet_tensor_data(ya1), cfnet_tensor_data(yb1), bytes);
    assert_memory_equal(cfnet_tensor_data(ya2), cfnet_tensor_data(yb2), bytes);
    /* Each training forward draws a new mask; another seed gives another mask (the chance of
     * a collision over 64 units is 2^-64). */
    assert_true(memcmp(cfnet_tensor_data(ya1), cfnet_tensor_data(ya2), bytes) != 0);
    assert_true(memcmp(cfnet_tensor_data(ya1), cfnet_tensor_data(yc), bytes) != 0);
    /* An inference forward does not advance the generator; setup re-seeds it. */
    CF_ASSERT_OK(cfnet_layer_forward(b, x, yb1, CFNET_MODE_INFERENCE));
    CF_ASSERT_OK(cfnet_layer_setup(a, 2, s, 7));
    CF_ASSERT_OK(cfnet_layer_forward(a, x, ya3, CFNET_MODE_TRAINING));
    assert_memory_equal(cfnet_tensor_data(ya3), cfnet_tensor_data(ya1), bytes);
    CF_ASSERT_OK(cfnet_layer_forward(a, x, ya3, CFNET_MODE_TRAINING));
    assert_memory_equal(cfnet_tensor_data(ya3), cfnet_tensor_data(ya2), bytes);
    CF_ASSERT_OK(cfnet_layer_forward(a, x, ya3, CFNET_MODE_TRAINING)); /* third mask of a */
    CF_ASSERT_OK(cfnet_layer_forward(b, x, yb1, CFNET_MODE_TRAINING)); /* third mask of b */
    assert_memory_equal(cfnet_tensor_data(ya3), cfnet_tensor_data(yb1), bytes);
    cfnet_tensor_free(x);
    cfnet_tensor_free(ya1);
    cfnet_tensor_free(ya2);
    cfnet_tensor_free(ya3);
    cfnet_tensor_free(yb1);
    cfnet_tensor_free(yb2);
    cfnet_tensor_free(yc);
    cfnet_layer_free(a);
    cfnet_layer_free(b);
    cfnet_layer_free(c);
}

static void dropout_rejects_bad_arguments(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_STATUS(cfnet_layer_dropout_create(0.5f, NULL), CFNET_E_INVALID_ARGUMENT);
    const float bad[] = {-0.1f, 1.0f, 1.5f, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CF_ASSERT_STATUS(cfnet_layer_dropout_create(bad[i], &l), CFNET_E_INVALID_ARGUMENT);
        assert_non_null(strstr(cfnet_last_error(), "dropout: drop is"));
    }
    assert_null(l);
    CF_ASSERT_OK(cfnet_layer_dropout_create(0.2f, &l));
    assert_int_equal(cfnet_layer_kind_of(l), CFNET_LAYER_DROPOUT);
    assert_true(l->fcfg[0] == 0.2f);
    cfnet_layer_free(l); /* freed before setup: no generator yet */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dropout_inference_is_identity),
        cmocka_unit_test(dropout_training_gradient_is_mask_times_scale_times_dy_exactly),
        cmocka_unit_test(dropout_rate_is_within_five_standard_deviations),
        cmocka_unit_test(dropout_with_zero_rate_is_identity_in_training),
        cmocka_unit_test(dropout_is_reproducible_for_the_same_seed),
        cmocka_unit_test(dropout_rejects_bad_arguments),
    };
    return cmocka_run_group_tests_name("dropout", tests, NULL, NULL);
}
