/* conv2d: agreement with a direct loop, gradients, bad arguments. */
#include "testutil.h"
#include "kernels/convcore.h"
#include "kernels/simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Direct correlation with zero padding, written independently of the library. */
static void ref_conv(const float *x, const float *w, const float *b, float *y, int n, int C,
                     int H, int W, int O, int k, int stride, int pad, int OH, int OW)
{
    for (int s = 0; s < n; s++)
        for (int o = 0; o < O; o++)
            for (int i = 0; i < OH; i++)
                for (int j = 0; j < OW; j++) {
                    double acc = b[o];
                    for (int c = 0; c < C; c++)
                        for (int a = 0; a < k; a++)
                            for (int d = 0; d < k; d++) {
                                int ii = i * stride - pad + a, jj = j * stride - pad + d;
                                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                                acc += (double)x[((s * C + c) * H + ii) * W + jj] *
                                       w[((o * C + c) * k + a) * k + d];
                            }
                    y[((s * O + o) * OH + i) * OW + j] = (float)acc;
                }
}

static void check_against_reference(int C, int H, int W, int O, int k, int stride,
                                    cfnet_padding pad)
{
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_conv2d_create(O, k, stride, pad, &l));
    int64_t in[] = {C, H, W};
    CF_ASSERT_OK(cfnet_layer_setup(l, 3, in, 42));
    int nd;
    int64_t os[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, os));
    int p = pad == CFNET_PADDING_SAME ? (k - 1) / 2 : 0;
    int OH = (H + 2 * p - k) / stride + 1, OW = (W + 2 * p - k) / stride + 1;
    assert_int_equal(os[1], OH);
    assert_int_equal(os[2], OW);
    tu_rng r = {3};
    tu_fill_normal(cfnet_tensor_data(cfnet_layer_param(l, 1)), O, &r);
    int64_t xs[] = {3, C, H, W};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *y = tu_output_for(l, 3);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    float *ref = malloc((size_t)cfnet_tensor_numel(y) * sizeof *ref);
    ref_conv(cfnet_tensor_data(x), cfnet_tensor_data(cfnet_layer_param(l, 0)),
             cfnet_tensor_data(cfnet_layer_param(l, 1)), ref, 3, C, H, W, O, k, stride, p, OH,
             OW);
    assert_true(tu_max_rel_diff(cfnet_tensor_data(y), ref, cfnet_tensor_numel(y)) < 1e-5);
    free(ref);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
}

static void conv2d_matches_direct_loop(void **state)
{
    (void)state;
    check_against_reference(3, 7, 7, 4, 3, 1, CFNET_PADDING_VALID);
    check_against_reference(3, 8, 8, 4, 3, 1, CFNET_PADDING_SAME);
    check_against_reference(2, 9, 6, 5, 5, 1, CFNET_PADDING_SAME);
    check_against_reference(2, 9, 8, 3, 3, 2, CFNET_PADDING_SAME);
    check_against_reference(2, 10, 10, 3, 3, 2, CFNET_PADDING_VALID);
    check_against_reference(4, 5, 5, 2, 1, 1, CFNET_PADDING_VALID);
    /* the padded copy's row paths: blocks of 8 with an overlapping last block (widths 13 and
     * 17, borders 4 and 1), and row by row where the border is wider than 4 (k = 11) */
    check_against_reference(2, 13, 13, 3, 9, 1, CFNET_PADDING_SAME);
    check_against_reference(3, 11, 17, 4, 3, 1, CFNET_PADDING_SAME);
    check_against_reference(2, 12, 12, 3, 11, 1, CFNET_PADDING_SAME);
}

/* Large batches are processed in blocks of samples and tiles of columns; a sample's output is
 * the same, bit for bit, alone or in a batch (kernels/convcore.h). */
static void conv2d_batch_blocks_agree_with_single_samples(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_conv2d_create(8, 3, 1, CFNET_PADDING_SAME, &l));
    int64_t in[] = {64, 40, 40};
    CF_ASSERT_OK(cfnet_layer_setup(l, 3, in, 1));
    tu_rng r = {5};
    int64_t xs[] = {5, 64, 40, 40}, x1s[] = {1, 64, 40, 40};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *y = tu_output_for(l, 5);
    cfnet_tensor *y1 = tu_output_for(l, 1);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    for (int s = 0; s < 5; s++) {
        cfnet_tensor *xv = NULL;
        CF_ASSERT_OK(cfnet_tensor_wrap(cfnet_tensor_data(x) + s * 64 * 1600, 4, x1s, &xv));
        CF_ASSERT_OK(cfnet_layer_forward(l, xv, y1, CFNET_MODE_INFERENCE));
        assert_memory_equal(cfnet_tensor_data(y1), cfnet_tensor_data(y) + s * 8 * 1600,
                            8 * 1600 * sizeof(float));
        cfnet_tensor_free(xv);
    }
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_tensor_free(y1);
    cfnet_layer_free(l);
}

/* Central differences with h = 1e-2 on a float forward; the layer is linear in x and in the
 * parameters, so the only error is float rounding: tolerance 2e-3 relative. */
static void gradcheck_one(int C, int S, int O, int k, int stride, cfnet_padding pad)
{
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_conv2d_create(O, k, stride, pad, &l));
    int64_t in[] = {C, S, S};
    CF_ASSERT_OK(cfnet_layer_setup(l, 3, in, 9));
    tu_rng r = {11};
    int64_t xs[] = {2, C, S, S};
    cfnet_tensor *x = tu_tensor(4, xs, &r);
    double wp = 0, wx = tu_gradcheck(l, x, CFNET_MODE_TRAINING, 1e-2, 0, &wp);
    if (wx > 2e-3 || wp > 2e-3) fail_msg("conv2d gradcheck: input %g, params %g", wx, wp);
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
}

static void conv2d_gradients_match_finite_differences(void **state)
{
    (void)state;
    gradcheck_one(2, 5, 3, 3, 1, CFNET_PADDING_VALID);
    gradcheck_one(2, 6, 3, 3, 1, CFNET_PADDING_SAME);
    gradcheck_one(3, 7, 2, 3, 2, CFNET_PADDING_SAME);
    gradcheck_one(1, 6, 2, 1, 1, CFNET_PADDING_VALID);
}

/* Rows of 32 pixels or more that would leave 16-float vectors a fifth empty (34 -> 48 lanes,
 * 50 -> 64) are planned as one group over output channels (kernels/convcore.h); those layers
 * agree with the reference loop and their gradients with finite differences. */
static void conv2d_wide_rows_go_over_output_channels(void **state)
{
    (void)state;
    assert_true(cf_conv_plain_over_channels(32, 50, 50, 3, 1, CFNET_PADDING_SAME, 32));
    assert_true(cf_conv_plain_over_channels(4, 34, 34, 3, 1, CFNET_PADDING_SAME, 8));
    assert_true(cf_conv_plain_over_channels(2, 34, 36, 3, 1, CFNET_PADDING_VALID, 3));
    /* rows that fill the vectors, too narrow, strided, too many channels, or all outputs of a
     * pixel in one L1 set (64 x 64 planes) keep the plain plan */
    assert_false(cf_conv_plain_over_channels(15, 28, 28, 3, 1, CFNET_PADDING_SAME, 15));
    assert_false(cf_conv_plain_over_channels(32, 48, 48, 3, 1, CFNET_PADDING_SAME, 32));
    assert_false(cf_conv_plain_over_channels(4, 7, 7, 3, 1, CFNET_PADDING_SAME, 8));
    assert_false(cf_conv_plain_over_channels(4, 34, 34, 3, 2, CFNET_PADDING_SAME, 8));
    assert_false(cf_conv_plain_over_channels(4, 34, 34, 3, 1, CFNET_PADDING_SAME, 33));
    assert_false(cf_conv_plain_over_channels(32, 64, 64, 3, 1, CFNET_PADDING_SAME, 32));
    check_against_reference(4, 34, 34, 8, 3, 1, CFNET_PADDING_SAME);
    check_against_reference(3, 36, 50, 5, 3, 1, CFNET_PADDING_SAME);
    check_against_reference(2, 34, 36, 3, 3, 1, CFNET_PADDING_VALID);
    gradcheck_one(2, 34, 3, 3, 1, CFNET_PADDING_SAME);
}

/* Such layers take their forward on the plain plan where the active variant's direct
 * products fill their vectors (pieces of 3 vectors, the last in whole vectors): 8-float
 * vectors at 50 columns (24 + 24 + 8 lanes), not 16-float ones (48 + 16). The layers above ran
 * it under whichever variant is active (tests/test_cpu_variants.sh runs every one). */
static void conv2d_forward_rows_fill_the_active_lanes(void **state)
{
    (void)state;
    assert_true(cf_conv_row_fills_lanes(50, 8));
    assert_false(cf_conv_row_fills_lanes(50, 16));
    assert_true(cf_conv_row_fills_lanes(34, 8));   /* 40 lanes */
    assert_false(cf_conv_row_fills_lanes(34, 16)); /* 48 */
    assert_true(cf_conv_row_fills_lanes(48, 16));
    assert_true(cf_conv_row_fills_lanes(64, 16));
    assert_false(cf_conv_row_fills_lanes(17, 8)); /* 24 */
    assert_false(cf_conv_row_fills_lanes(25, 8)); /* 32: 0.78 */
    assert_true(cf_conv_row_fills_lanes(26, 8));  /* 0.81 */
    assert_false(cf_conv_row_fills_lanes(50, 4));
    assert_false(cf_conv_row_fills_lanes(0, 8));
    /* the rule over output channels counts 16-float vectors whatever the variant */
    assert_true(cf_conv_plain_over_channels(32, 50, 50, 3, 1, CFNET_PADDING_SAME, 32) ==
                !cf_conv_row_fills_lanes(50, 16));
}

/* Stride-1 "same" layers whose input gradient would go through the columns take it as a
 * forward of the output gradient with the banks transposed and turned by 180 degrees
 * (layers/conv2d.c) where that forward is direct on every tile: 64- and 48-column rows fill
 * 8- and 16-float vectors. Both gradients against float64 sums, on 1 and 2 threads (the input
 * gradient the same bits on both), k = 3 and 5, channel counts that are not multiples of the
 * tiles' rows. */
/* The float64 gradients of a stride-1 "same" convolution (k odd) of n images of C x H x W into
 * O planes, from its output gradient dy: with x, the weights' gradient added into rdw; with w
 * (O x C x k x k), the input gradient added into rdx. */
static void reference_same_gradients(int n, int C, int H, int W, int O, int k, const float *dy,
                                     const float *x, double *rdw, const float *w, double *rdx)
{
    const int p = (k - 1) / 2;
    for (int s = 0; s < n; s++)
        for (int o = 0; o < O; o++)
            for (int i = 0; i < H; i++)
                for (int j = 0; j < W; j++) {
                    double g = dy[((s * O + o) * H + i) * W + j];
                    for (int c = 0; c < C; c++)
                        for (int a = 0; a < k; a++)
                            for (int d = 0; d < k; d++) {
                                int ii = i - p + a, jj = j - p + d;
                                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                                size_t xi = (((size_t)s * C + c) * H + ii) * W + jj,
                                       wi = (((size_t)o * C + c) * k + a) * k + d;
                                if (x) rdw[wi] += g * x[xi];
                                if (w) rdx[xi] += g * w[wi];
                            }
                }
}

static void input_gradient_against_reference(int C, int H, int W, int O, int k)
{
    int n = 3, kk = k * k;
    /* the plan the input gradient's forward takes (O planes in, C out) is direct throughout */
    cf_conv_plan dxp;
    assert_int_equal(cf_conv_plan_init(&cf_default_allocator, &dxp, O, H, W, k, 1, CFNET_PADDING_SAME, NULL, 1),
                     CFNET_OK);
    assert_true(cf_conv_forward_all_direct(&dxp, C));
    cf_conv_plan_free(&dxp);
    assert_false(cf_conv_plain_over_channels(C, H, W, k, 1, CFNET_PADDING_SAME, O));
    tu_rng r = {17};
    int64_t xs[] = {n, C, H, W}, ys[] = {n, O, H, W};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *dy = tu_tensor(4, ys, &r);
    const float *xd = cfnet_tensor_data(x), *dyd = cfnet_tensor_data(dy);
    size_t nx = (size_t)n * C * H * W, nw = (size_t)O * C * kk;
    double *rdx = calloc(nx, sizeof *rdx), *rdw = calloc(nw, sizeof *rdw);
    reference_same_gradients(n, C, H, W, O, k, dyd, xd, rdw, NULL, NULL);
    float *fdx = malloc(nx * sizeof *fdx), *fdw = malloc(nw * sizeof *fdw), *dx1 = NULL;
    for (int t = 1; t <= 2; t++) {
        cfnet_layer *l = NULL;
        CF_ASSERT_OK(cfnet_layer_conv2d_create(O, k, 1, CFNET_PADDING_SAME, &l));
        int64_t in[] = {C, H, W};
        CF_ASSERT_OK(cfnet_layer_setup(l, 3, in, 23));
        l->threads = t;
        const float *w = cfnet_tensor_data(cfnet_layer_param(l, 0));
        if (t == 1) {
            reference_same_gradients(n, C, H, W, O, k, dyd, NULL, NULL, w, rdx);
            for (size_t i = 0; i < nx; i++) fdx[i] = (float)rdx[i];
            for (size_t i = 0; i < nw; i++) fdw[i] = (float)rdw[i];
        }
        cfnet_tensor *y = tu_output_for(l, n), *dx = tu_output_for(l, n);
        cfnet_tensor_free(dx);
        CF_ASSERT_OK(cfnet_tensor_create(4, xs, &dx));
        CF_ASSERT_OK(cfnet_layer_zero_grad(l));
        CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
        CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
        double ex = tu_max_rel_diff(cfnet_tensor_data(dx), fdx, (int64_t)nx),
               ew = tu_max_rel_diff(cfnet_tensor_data(cfnet_layer_grad(l, 0)), fdw, (int64_t)nw);
        if (ex > 1e-5 || ew > 1e-5)
            fail_msg("conv2d %dx%dx%d -> %d, k %d, %d threads: input gradient %g, weights %g",
                     C, H, W, O, k, t, ex, ew);
        if (t == 1) {
            dx1 = malloc(nx * sizeof *dx1);
            memcpy(dx1, cfnet_tensor_data(dx), nx * sizeof *dx1);
        } else {
            assert_memory_equal(dx1, cfnet_tensor_data(dx), nx * sizeof *dx1);
        }
        cfnet_tensor_free(y);
        cfnet_tensor_free(dx);
        cfnet_layer_free(l);
    }
    free(dx1);
    free(fdx);
    free(fdw);
    free(rdx);
    free(rdw);
    cfnet_tensor_free(x);
    cfnet_tensor_free(dy);
}

static void conv2d_input_gradient_as_a_forward(void **state)
{
    (void)state;
    input_gradient_against_reference(3, 64, 64, 5, 3);
    input_gradient_against_reference(4, 20, 48, 3, 5);
    input_gradient_against_reference(9, 16, 64, 11, 3);
}

/* The input gradient's path is chosen by the shape alone, never by the active CPU variant
 * (the variants give the same bits: include/cfnet/cfnet.h). A 20-pixel row fills AVX2's
 * 8-float vectors (16 + 8 lanes for 20 columns) but not AVX-512's 16 (32 lanes): the forward
 * on the output gradient is direct there on avx2 and generic only, so the layer keeps the
 * columns on every variant; 40 and 64 columns fill both widths and take the forward on every
 * variant. Run under each variant by tests/test_cpu_variants.sh. */
static void conv2d_input_gradient_path_is_the_same_on_every_variant(void **state)
{
    (void)state;
    static const struct { int C, S, O; bool direct; } cases[] = {
        {4, 20, 8, false}, {4, 24, 8, false}, {8, 40, 8, true}, {32, 64, 32, true}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cf_conv_plan dxp;
        assert_int_equal(cf_conv_plan_init(&cf_default_allocator, &dxp, cases[i].O, cases[i].S,
                                           cases[i].S, 3, 1, CFNET_PADDING_SAME, NULL, 1),
                         CFNET_OK);
        bool direct = cf_conv_forward_all_direct(&dxp, cases[i].C);
        cf_conv_plan_free(&dxp);
        if (direct != cases[i].direct)
            fail_msg("conv2d %d x %d x %d -> %d: input gradient as a forward %s on %d lanes",
                     cases[i].C, cases[i].S, cases[i].S, cases[i].O, direct ? "yes" : "no",
                     cf_simd()->lanes);
    }
}

static void conv2d_rejects_bad_configurations(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_STATUS(cfnet_layer_conv2d_create(0, 3, 1, CFNET_PADDING_SAME, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_conv2d_create(4, 2, 1, CFNET_PADDING_SAME, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "kernel is 2"));
    CF_ASSERT_STATUS(cfnet_layer_conv2d_create(4, 3, 3, CFNET_PADDING_SAME, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_conv2d_create(4, 3, 1, (cfnet_padding)5, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_conv2d_create(4, 3, 1, CFNET_PADDING_SAME, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    assert_null(l);
    CF_ASSERT_OK(cfnet_layer_conv2d_create(4, 5, 1, CFNET_PADDING_VALID, &l));
    int64_t small[] = {2, 3, 3}, flat[] = {2, 9};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, small, 0), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 2, flat, 0), CFNET_E_SHAPE_MISMATCH);
    assert_int_equal(cfnet_layer_param_count(l), 0);
    cfnet_layer_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conv2d_matches_direct_loop),
        cmocka_unit_test(conv2d_batch_blocks_agree_with_single_samples),
        cmocka_unit_test(conv2d_gradients_match_finite_differences),
        cmocka_unit_test(conv2d_wide_rows_go_over_output_channels),
        cmocka_unit_test(conv2d_forward_rows_fill_the_active_lanes),
        cmocka_unit_test(conv2d_input_gradient_as_a_forward),
        cmocka_unit_test(conv2d_input_gradient_path_is_the_same_on_every_variant),
        cmocka_unit_test(conv2d_rejects_bad_configurations),
    };
    return cmocka_run_group_tests_name("conv2d", tests, NULL, NULL);
}
