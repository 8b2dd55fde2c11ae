/* Conic convolution with reflection (conic_conv_mirror): the two copies against conic_conv,
 * exact equivariance under all 8 elements of D4 (every R, interpolation, padding, odd and even
 * sizes, planar and 2-copy input), gradients, a D4-invariant network, bad arguments. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define APPEND(net, expr)                            \
    do {                                             \
        cfnet_layer *l_ = NULL;                      \
        CF_ASSERT_OK(expr);                          \
        CF_ASSERT_OK(cfnet_network_append(net, l_)); \
    } while (0)

/* Mirror of S x S planes (column j <-> S-1-j). */
static void mirror_planes(const float *in, float *out, int64_t planes, int64_t S)
{
    for (int64_t p = 0; p < planes; p++)
        for (int64_t i = 0; i < S; i++)
            for (int64_t j = 0; j < S; j++)
                out[(p * S + i) * S + j] = in[(p * S + i) * S + S - 1 - j];
}

/* D4 element g = 4 m + r on a 2-copy map n x C x 2 x S x S: every plane transformed by T_g, copy
 * h moved to h xor m. G = 1 (planar input): planes only. */
static void d4_copies(const float *in, float *out, int64_t nc, int G, int64_t S, int g)
{
    for (int64_t b = 0; b < nc; b++)
        for (int h = 0; h < G; h++)
            tu_d4_planes(in + (b * G + h) * S * S, out + (b * G + (G == 2 ? h ^ (g >> 2) : h)) * S * S,
                         1, S, g);
}

static cfnet_layer *make_layer(int G, int C, int S, int O, int k, int R, cfnet_padding pad,
                               cfnet_interp interp, uint64_t seed)
{
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_conic_conv_mirror_create(O, k, R, pad, interp, &l));
    int64_t in4[] = {C, 2, S, S}, in3[] = {C, S, S};
    CF_ASSERT_OK(cfnet_layer_setup(l, G == 2 ? 4 : 3, G == 2 ? in4 : in3, seed));
    tu_rng r = {seed + 5};
    tu_fill_normal(cfnet_tensor_data(cfnet_layer_param(l, 1)), O, &r);
    return l;
}

static cfnet_tensor *make_input(int G, int64_t n, int C, int S, tu_rng *r)
{
    int64_t x4[] = {n, C, 2, S, S}, x3[] = {n, C, S, S};
    return G == 2 ? tu_tensor(5, x4, r) : tu_tensor(4, x3, r);
}

/* Copy 0 is conic_conv of the input (C G planes), copy 1 the mirror of conic_conv of the
 * mirrored input with its copies swapped; the same weights in a conic_conv layer. */
static void conic_conv_mirror_is_two_conic_convolutions(void **state)
{
    (void)state;
    for (int G = 1; G <= 2; G++)
        for (int S = 8; S <= 9; S++) {
            const int C = 2, O = 3, k = 3, R = 2, n = 2;
            cfnet_layer *l = make_layer(G, C, S, O, k, R, CFNET_PADDING_SAME,
                                        CFNET_INTERP_NEAREST, 3);
            cfnet_layer *c = NULL;
            CF_ASSERT_OK(cfnet_layer_conic_conv_create(O, k, R, CFNET_PADDING_SAME,
                                                       CFNET_INTERP_NEAREST, &c));
            int64_t cin[] = {C * G, S, S};
            CF_ASSERT_OK(cfnet_layer_setup(c, 3, cin, 9));
            for (int p = 0; p < 2; p++)
                CF_ASSERT_OK(cfnet_tensor_copy_in(cfnet_layer_param(c, p),
                                                  cfnet_tensor_data(cfnet_layer_param(l, p)),
                                                  cfnet_tensor_numel(cfnet_layer_param(l, p))));
            tu_rng r = {11};
            cfnet_tensor *x = make_input(G, n, C, S, &r), *y = tu_output_for(l, n);
            CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
            int64_t cs[] = {n, C * G, S, S};
            cfnet_tensor *xc = tu_tensor(4, cs, NULL), *yc = tu_output_for(c, n),
                         *ym = tu_output_for(c, n);
            CF_ASSERT_OK(cfnet_tensor_copy_in(xc, cfnet_tensor_data(x), cfnet_tensor_numel(x)));
            CF_ASSERT_OK(cfnet_layer_forward(c, xc, yc, CFNET_MODE_INFERENCE));
            /* F~ x: mirrored planes, copies swapped */
            float *xd = cfnet_tensor_data(x), *xm = cfnet_tensor_data(xc);
            for (int64_t b = 0; b < n * C; b++)
                for (int h = 0; h < G; h++)
                    mirror_planes(xd + (b * G + (G == 2 ? 1 - h : h)) * S * S,
                                  xm + (b * G + h) * S * S, 1, S);
            CF_ASSERT_OK(cfnet_layer_forward(c, xc, ym, CFNET_MODE_INFERENCE));
            float *fm = malloc((size_t)cfnet_tensor_numel(ym) * sizeof *fm);
            assert_non_null(fm);
            mirror_planes(cfnet_tensor_data(ym), fm, n * O, S);
            const float *yd = cfnet_tensor_data(y), *a = cfnet_tensor_data(yc);
            for (int64_t bo = 0; bo < n * O; bo++)
                for (int64_t t = 0; t < S * S; t++) {
                    float u0 = yd[(bo * 2) * S * S + t], u1 = yd[(bo * 2 + 1) * S * S + t];
                    float v0 = a[bo * S * S + t], v1 = fm[bo * S * S + t];
                    if (fabsf(u0 - v0) > 1e-5f * (1 + fabsf(v0)) ||
                        fabsf(u1 - v1) > 1e-5f * (1 + fabsf(v1)))
                        fail_msg("G=%d S=%d: (%g, %g) vs conic_conv (%g, %g)", G, S, (double)u0,
                                 (double)u1, (double)v0, (double)v1);
                }
            free(fm);
            cfnet_tensor_free(x);
            cfnet_tensor_free(y);
            cfnet_tensor_free(xc);
            cfnet_tensor_free(yc);
            cfnet_tensor_free(ym);
            cfnet_layer_free(c);
            cfnet_layer_free(l);
        }
}

/* layer(T_g x) == T_g layer(x) for all 8 elements, exactly up to float rounding. */
static void check_equivariance(int G, int S, int k, int R, cfnet_padding pad, cfnet_interp interp)
{
    const int C = 2, O = 2, n = 2;
    cfnet_layer *l = make_layer(G, C, S, O, k, R, pad, interp, 7);
    tu_rng r = {13};
    cfnet_tensor *x = make_input(G, n, C, S, &r), *xg = make_input(G, n, C, S, NULL);
    cfnet_tensor *y = tu_output_for(l, n), *yg = tu_output_for(l, n), *gy = tu_output_for(l, n);
    int64_t OS = cfnet_tensor_dim(y, -1);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    for (int g = 1; g < 8; g++) {
        d4_copies(cfnet_tensor_data(x), cfnet_tensor_data(xg), n * C, G, S, g);
        CF_ASSERT_OK(cfnet_layer_forward(l, xg, yg, CFNET_MODE_INFERENCE));
        d4_copies(cfnet_tensor_data(y), cfnet_tensor_data(gy), n * O, 2, OS, g);
        double e = tu_max_rel_diff(cfnet_tensor_data(yg), cfnet_tensor_data(gy),
                                   cfnet_tensor_numel(y));
        if (e > 1e-5)
            fail_msg("conic_conv_mirror G=%d S=%d k=%d R=%d pad=%d interp=%d g=%d: %g", G, S, k,
                     R, pad, interp, g, e);
    }
    cfnet_tensor_free(x);
    cfnet_tensor_free(xg);
    cfnet_tensor_free(y);
    cfnet_tensor_free(yg);
    cfnet_tensor_free(gy);
    cfnet_layer_free(l);
}

static void conic_conv_mirror_is_equivariant_under_all_of_d4(void **state)
{
    (void)state;
    for (int G = 1; G <= 2; G++)
        for (int S = 10; S <= 11; S++)
            for (int R = 1; R <= 3; R++)
                for (int pad = 0; pad < 2; pad++) {
                    check_equivariance(G, S, 3, R, (cfnet_padding)pad, CFNET_INTERP_NEAREST);
                    check_equivariance(G, S, 5, R, (cfnet_padding)pad, CFNET_INTERP_BILINEAR);
                }
}

/* Linear in x and in the parameters: differences agree to rounding (see test_p4_conv.c). */
static void conic_conv_mirror_gradients_match_finite_differences(void **state)
{
    (void)state;
    for (int G = 1; G <= 2; G++)
        for (int S = 6; S <= 7; S++) {
            cfnet_layer *l = make_layer(G, 2, S, 2, 3, 2, S == 6 ? CFNET_PADDING_SAME
                                                                  : CFNET_PADDING_VALID,
                                        CFNET_INTERP_NEAREST, 17);
            CF_ASSERT_OK(cfnet_tensor_zero(cfnet_layer_param(l, 1)));
            tu_rng r = {19};
            cfnet_tensor *x = make_input(G, 2, 2, S, &r);
            for (int64_t i = 0; i < cfnet_tensor_numel(x); i++) cfnet_tensor_data(x)[i] *= 0.25f;
            double wp = 0, wx = tu_gradcheck(l, x, CFNET_MODE_TRAINING, 1e-2, 0, &wp);
            if (wx > 2e-3 || wp > 2e-3)
                fail_msg("conic_conv_mirror gradcheck G=%d S=%d: input %g params %g", G, S, wx,
                         wp);
            cfnet_tensor_free(x);
            cfnet_layer_free(l);
        }
}

/* conic_conv_mirror -> ReLU -> equivariant pooling -> conic_conv_mirror on the 2-copy map ->
 * group pooling over the copies -> mean over the map -> dense: invariant to rotations by quarter
 * turns and to reflections, checked with cfnet_network_invariance_ex; a plain conic network is
 * not mirror-invariant. */
static void conic_mirror_network_is_invariant_to_d4(void **state)
{
    (void)state;
    for (int S = 14; S <= 15; S++) {
        int M = S % 2 ? (S - 3) / 2 + 1 : S / 2;
        for (int mirror = 0; mirror < 2; mirror++) {
            cfnet_network *net = NULL;
            CF_ASSERT_OK(cfnet_network_create(1, S, S, 5, &net));
            if (mirror) {
                APPEND(net, cfnet_layer_conic_conv_mirror_create(3, 3, 2, CFNET_PADDING_SAME,
                                                                 CFNET_INTERP_NEAREST, &l_));
                APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
                APPEND(net, cfnet_layer_relu_create(&l_));
                APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
                APPEND(net, cfnet_layer_conic_conv_mirror_create(4, 3, 1, CFNET_PADDING_SAME,
                                                                 CFNET_INTERP_NEAREST, &l_));
                APPEND(net, cfnet_layer_group_pool_create(CFNET_POOL_MAX, &l_));
            } else {
                APPEND(net, cfnet_layer_conic_conv_create(3, 3, 2, CFNET_PADDING_SAME,
                                                          CFNET_INTERP_NEAREST, &l_));
                APPEND(net, cfnet_layer_relu_create(&l_));
                APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
                APPEND(net, cfnet_layer_conic_conv_create(4, 3, 1, CFNET_PADDING_SAME,
                                                          CFNET_INTERP_NEAREST, &l_));
            }
            APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MEAN, M, 1, &l_));
            APPEND(net, cfnet_layer_dense_create(3, &l_));
            int64_t xs[] = {3, 1, S, S};
            tu_rng r = {23};
            cfnet_tensor *x = tu_tensor(4, xs, &r);
            int32_t labels[3] = {0, 1, 2};
            CF_ASSERT_OK(cfnet_network_train_step(net, x, labels, 3, NULL));
            double e = -1, q = -1;
            CF_ASSERT_OK(cfnet_network_invariance(net, x, NULL, 0, &q));
            assert_true(q <= 1e-5);
            CF_ASSERT_OK(cfnet_network_invariance_ex(net, x, NULL, 0, CFNET_INVARIANCE_REFLECT,
                                                     &e));
            if (mirror && !(e <= 1e-5)) fail_msg("conic mirror network S=%d: D4 change %g", S, e);
            if (!mirror && !(e > 1e-3)) fail_msg("plain conic network S=%d looks mirror-"
                                                 "invariant: %g", S, e);
            cfnet_tensor_free(x);
            cfnet_network_free(net);
        }
    }
}

static void conic_conv_mirror_bad_arguments(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_STATUS(cfnet_layer_conic_conv_mirror_create(0, 3, 1, CFNET_PADDING_SAME,
                                                          CFNET_INTERP_NEAREST, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "conic_conv_mirror"));
    CF_ASSERT_STATUS(cfnet_layer_conic_conv_mirror_create(2, 4, 1, CFNET_PADDING_SAME,
                                                          CFNET_INTERP_NEAREST, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_conic_conv_mirror_create(INT32_MAX / 2 + 1, 3, 1,
                                                          CFNET_PADDING_SAME,
                                                          CFNET_INTERP_NEAREST, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_conic_conv_mirror_create(2, 3, 1, CFNET_PADDING_SAME,
                                                          CFNET_INTERP_NEAREST, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_OK(cfnet_layer_conic_conv_mirror_create(2, 3, 1, CFNET_PADDING_VALID,
                                                      CFNET_INTERP_NEAREST, &l));
    assert_int_equal(cfnet_layer_kind_of(l), CFNET_LAYER_CONIC_CONV_MIRROR);
    assert_string_equal(cfnet_layer_kind_name(CFNET_LAYER_CONIC_CONV_MIRROR),
                        "conic_conv_mirror");
    int64_t four[] = {2, 4, 6, 6}, rect[] = {2, 6, 5}, ok[] = {3, 2, 6, 6};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, four, 1), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, rect, 1), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_OK(cfnet_layer_setup(l, 4, ok, 1));
    int nd;
    int64_t s[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, s));
    assert_int_equal(nd, 4);
    assert_int_equal(s[0], 2);
    assert_int_equal(s[1], 2);
    assert_int_equal(s[2], 4);
    assert_int_equal(cfnet_tensor_dim(cfnet_layer_param(l, 0), 1), 6); /* 2C input planes */
    cfnet_layer_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conic_conv_mirror_is_two_conic_convolutions),
        cmocka_unit_test(conic_conv_mirror_is_equivariant_under_all_of_d4),
        cmocka_unit_test(conic_conv_mirror_gradients_match_finite_differences),
        cmocka_unit_test(conic_mirror_network_is_invariant_to_d4),
        cmocka_unit_test(conic_conv_mirror_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
