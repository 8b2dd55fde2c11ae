/* Group pooling over the 4 rotations of a p4 map: values against explicit loops, gradients,
 * rot90 equivariance (p4 in, planar out), bad arguments. */
#include "testutil.h"

#include "nn/layer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static cfnet_layer *make_group_pool(cfnet_pool_mode mode, int64_t C, int64_t H, int64_t W)
{
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_group_pool_create(mode, &l));
    const int64_t s[] = {C, 4, H, W};
    CF_ASSERT_OK(cfnet_layer_setup(l, 4, s, 0));
    return l;
}

static void group_pool_matches_explicit_loops(void **state)
{
    (void)state;
    const int64_t N = 2, C = 3, H = 5, W = 6, P = H * W;
    const int64_t xs[] = {N, C, 4, H, W};
    for (int m = 0; m < 2; m++) {
        cfnet_pool_mode mode = m ? CFNET_POOL_MEAN : CFNET_POOL_MAX;
        cfnet_layer *l = make_group_pool(mode, C, H, W);
        assert_int_equal(cfnet_layer_kind_of(l), CFNET_LAYER_GROUP_POOL);
        assert_int_equal(l->icfg[0], (int)mode);
        int nd;
        int64_t os[CFNET_MAX_DIMS];
        CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, os));
        assert_int_equal(nd, 3);
        assert_true(os[0] == C && os[1] == H && os[2] == W);
        tu_rng r = {(uint64_t)(71 + m)};
        cfnet_tensor *x = tu_tensor(5, xs, &r), *y = tu_output_for(l, N);
        CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
        const float *X = cfnet_tensor_data(x);
        float ref[2 * 3 * 30];
        for (int64_t b = 0; b < N; b++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t i = 0; i < H; i++)
                    for (int64_t j = 0; j < W; j++) {
                        double acc = m ? 0.0 : -INFINITY;
                        for (int64_t g = 0; g < 4; g++) {
                            double v = X[(((b * C + c) * 4 + g) * H + i) * W + j];
                            acc = m ? acc + v / 4 : fmax(acc, v);
                        }
                        ref[((b * C + c) * H + i) * W + j] = (float)acc;
                    }
        double e = tu_max_rel_diff(cfnet_tensor_data(y), ref, N * C * P);
        if (m) assert_true(e < 1e-6);
        else assert_true(e == 0.0);
        cfnet_tensor_free(x);
        cfnet_tensor_free(y);
        cfnet_layer_free(l);
    }
}

static void group_pool_max_backward_routes_to_first_maximum_on_ties(void **state)
{
    (void)state;
    cfnet_layer *l = make_group_pool(CFNET_POOL_MAX, 1, 1, 3);
    const int64_t xs[] = {1, 1, 4, 1, 3};
    /* Pixel 0: all equal -> r = 0. Pixel 1: max 2 at r = 1 and 3 -> r = 1. Pixel 2: r = 3. */
    const float xv[12] = {1, 0, 0, /* r=0 */ 1, 2, 0, /* r=1 */ 1, 1, 0, /* r=2 */ 1, 2, 5};
    cfnet_tensor *x = tu_tensor(5, xs, NULL), *dx = tu_tensor(5, xs, NULL);
    cfnet_tensor *y = tu_output_for(l, 1), *dy = tu_output_for(l, 1);
    CF_ASSERT_OK(cfnet_tensor_copy_in(x, xv, 12));
    const float dyv[3] = {3, 7, 11};
    CF_ASSERT_OK(cfnet_tensor_copy_in(dy, dyv, 3));
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    const float yv[3] = {1, 2, 5};
    assert_memory_equal(cfnet_tensor_data(y), yv, sizeof yv);
    CF_ASSERT_OK(cfnet_tensor_fill(dx, 99.0f)); /* dx is overwritten */
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
    const float expect[12] = {3, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 11};
    assert_memory_equal(cfnet_tensor_data(dx), expect, sizeof expect);
    cfnet_tensor_free(x);
    cfnet_tensor_free(dx);
    cfnet_tensor_free(y);
    cfnet_tensor_free(dy);
    cfnet_layer_free(l);
}

static void group_pool_gradient_matches_finite_differences_odd_and_even(void **state)
{
    (void)state;
    /* Central differences, h = 1e-2, every input coordinate. Max is piecewise linear with the
     * values separated by > 2h, mean is linear: relative tolerance 1e-3. */
    const int64_t sizes[] = {5, 4};
    for (int m = 0; m < 2; m++)
        for (int k = 0; k < 2; k++) {
            cfnet_pool_mode mode = m ? CFNET_POOL_MEAN : CFNET_POOL_MAX;
            const int64_t S = sizes[k], xs[] = {2, 3, 4, S, S};
            cfnet_layer *l = make_group_pool(mode, 3, S, S);
            tu_rng r = {(uint64_t)(80 + 2 * m + k)};
            cfnet_tensor *x = tu_tensor(5, xs, &r);
            if (!m) tu_fill_separated(cfnet_tensor_data(x), cfnet_tensor_numel(x), &r);
            assert_true(tu_gradcheck(l, x, CFNET_MODE_TRAINING, 1e-2, 0, NULL) < 1e-3);
            cfnet_tensor_free(x);
            cfnet_layer_free(l);
        }
}

/* rel. difference between gpool(rot_p4^q x) and rot^q gpool(x). */
static double group_pool_rot_error(cfnet_pool_mode mode, int64_t C, int64_t S, int q)
{
    const int64_t N = 2, xs[] = {N, C, 4, S, S};
    cfnet_layer *l = make_group_pool(mode, C, S, S);
    tu_rng r = {(uint64_t)(90 + S * 4 + q)};
    cfnet_tensor *x = tu_tensor(5, xs, &r);
    double e = tu_rot90_error(l, x, 1, 0, q, CFNET_MODE_INFERENCE);
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
    return e;
}

static void group_pool_commutes_with_rot90_odd_and_even_size(void **state)
{
    (void)state;
    for (int m = 0; m < 2; m++)
        for (int q = 1; q < 4; q++) {
            cfnet_pool_mode mode = m ? CFNET_POOL_MEAN : CFNET_POOL_MAX;
            assert_true(group_pool_rot_error(mode, 3, 7, q) <= 1e-5);
            assert_true(group_pool_rot_error(mode, 2, 6, q) <= 1e-5);
        }
}

static void group_pool_rejects_bad_arguments(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_STATUS(cfnet_layer_group_pool_create(CFNET_POOL_MAX, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_group_pool_create((cfnet_pool_mode)5, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "group_pool: mode is 5"));
    CF_ASSERT_STATUS(cfnet_layer_group_pool_create((cfnet_pool_mode)-1, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_null(l);
    CF_ASSERT_OK(cfnet_layer_group_pool_create(CFNET_POOL_MEAN, &l));
    const int64_t planar[] = {3, 5, 5}, wrong_g[] = {2, 3, 5, 5}, flat[] = {4, 4};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, planar, 0), CFNET_E_SHAPE_MISMATCH);
    assert_string_equal(cfnet_last_error(), "group_pool: input is 3x5x5, needs C x 4 x H x W "
                                            "(p4), C x 8 x H x W (p4m) or C x 2 x H x W "
                                            "(conic_conv_mirror)");
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, wrong_g, 0), CFNET_E_SHAPE_MISMATCH);
    assert_non_null(strstr(cfnet_last_error(), "2x3x5x5"));
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 2, flat, 0), CFNET_E_SHAPE_MISMATCH);
    assert_non_null(strstr(cfnet_last_error(), "4x4"));
    cfnet_layer_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(group_pool_matches_explicit_loops),
        cmocka_unit_test(group_pool_max_backward_routes_to_first_maximum_on_ties),
        cmocka_unit_test(group_pool_gradient_matches_finite_differences_odd_and_even),
        cmocka_unit_test(group_pool_commutes_with_rot90_odd_and_even_size),
        cmocka_unit_test(group_pool_rejects_bad_arguments),
    };
    return cmocka_run_group_tests_name("group_pool", tests, NULL, NULL);
}
