/* Spatial pooling: values against explicit window loops, gradients, rot90 equivariance of the
 * equivariant mode on planar and p4 maps, bad arguments. */
#include "testutil.h"

#include "nn/layer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t numel_of(int ndim, const int64_t *s)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= s[i];
    return n;
}

/* Reference pooling, written independently: explicit window loops, double accumulation. */
static void ref_pool(const float *x, float *y, int64_t planes, int64_t H, int64_t W, int k,
                     int s, cfnet_pool_mode mode)
{
    int64_t Ho = (H - k) / s + 1, Wo = (W - k) / s + 1;
    for (int64_t p = 0; p < planes; p++)
        for (int64_t oi = 0; oi < Ho; oi++)
            for (int64_t oj = 0; oj < Wo; oj++) {
                double acc = mode == CFNET_POOL_MAX ? -INFINITY : 0.0;
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < k; b++) {
                        double v = x[(p * H + oi * s + a) * W + oj * s + b];
                        acc = mode == CFNET_POOL_MAX ? fmax(acc, v) : acc + v;
                    }
                if (mode == CFNET_POOL_MEAN) acc /= (double)(k * k);
                y[(p * Ho + oi) * Wo + oj] = (float)acc;
            }
}

typedef struct pool_case {
    cfnet_pool_mode mode;
    int window, stride; /* as passed to create */
    int k, s;           /* effective */
    int ndim;           /* per sample */
    int64_t shape[4];
} pool_case;

static void pool_matches_explicit_window_loops(void **state)
{
    (void)state;
    const pool_case cases[] = {
        {CFNET_POOL_MAX, 3, 2, 3, 2, 3, {2, 7, 9}},     /* overlapping windows, H != W */
        {CFNET_POOL_MEAN, 3, 2, 3, 2, 3, {2, 7, 9}},
        {CFNET_POOL_MAX, 2, 1, 2, 1, 3, {3, 5, 6}},     /* stride 1 */
        {CFNET_POOL_MEAN, 2, 3, 2, 3, 3, {2, 8, 7}},    /* gaps between windows */
        {CFNET_POOL_MAX, 0, 0, 3, 2, 4, {2, 4, 7, 7}},  /* equivariant mode, p4, odd */
        {CFNET_POOL_MEAN, 0, 2, 2, 2, 3, {3, 6, 6}},    /* equivariant mode, even */
        {CFNET_POOL_MAX, 2, 2, 2, 2, 2, {5, 4}},        /* a single plane */
    };
    tu_rng r = {21};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const pool_case *pc = &cases[c];
        cfnet_layer *l = NULL;
        CF_ASSERT_OK(cfnet_layer_pool_create(pc->mode, pc->window, pc->stride, &l));
        CF_ASSERT_OK(cfnet_layer_setup(l, pc->ndim, pc->shape, 0));
        assert_int_equal(cfnet_layer_param_count(l), 0);
        const int nd = pc->ndim;
        const int64_t H = pc->shape[nd - 2], W = pc->shape[nd - 1];
        const int64_t Ho = (H - pc->k) / pc->s + 1, Wo = (W - pc->k) / pc->s + 1;
        int ond;
        int64_t os[CFNET_MAX_DIMS];
        CF_ASSERT_OK(cfnet_layer_output_shape(l, &ond, os));
        assert_int_equal(ond, nd);
        for (int i = 0; i < nd - 2; i++) assert_int_equal(os[i], pc->shape[i]);
        assert_int_equal(os[nd - 2], Ho);
        assert_int_equal(os[nd - 1], Wo);

        const int64_t N = 2, planes = N * numel_of(nd - 2, pc->shape);
        int64_t xs[5] = {N};
        memcpy(xs + 1, pc->shape, (size_t)nd * sizeof *xs);
        cfnet_tensor *x = tu_tensor(nd + 1, xs, &r), *y = tu_output_for(l, N);
        CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
        float *ref = malloc((size_t)(planes * Ho * Wo) * sizeof *ref);
        assert_non_null(ref);
        ref_pool(cfnet_tensor_data(x), ref, planes, H, W, pc->k, pc->s, pc->mode);
        double e = tu_max_rel_diff(cfnet_tensor_data(y), ref, planes * Ho * Wo);
        if (pc->mode == CFNET_POOL_MAX) assert_true(e == 0.0); /* max copies a value */
        else assert_true(e < 1e-6);
        free(ref);
        cfnet_tensor_free(x);
        cfnet_tensor_free(y);
        cfnet_layer_free(l);
    }
}

static void pool_max_backward_routes_to_first_maximum_on_ties(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_pool_create(CFNET_POOL_MAX, 2, 2, &l));
    const int64_t s[] = {1, 2, 4}, xs[] = {1, 1, 2, 4};
    CF_ASSERT_OK(cfnet_layer_setup(l, 3, s, 0));
    /* Window 0: all equal -> top-left. Window 1: max 5 at (0,3) and (1,2) -> (0,3) first. */
    const float xv[8] = {1, 1, 2, 5, 1, 1, 5, 0};
    cfnet_tensor *x = tu_tensor(4, xs, NULL), *dx = tu_tensor(4, xs, NULL);
    cfnet_tensor *y = tu_output_for(l, 1), *dy = tu_output_for(l, 1);
    CF_ASSERT_OK(cfnet_tensor_copy_in(x, xv, 8));
    const float dyv[2] = {3, 7};
    CF_ASSERT_OK(cfnet_tensor_copy_in(dy, dyv, 2));
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    assert_true(cfnet_tensor_data(y)[0] == 1.0f && cfnet_tensor_data(y)[1] == 5.0f);
    CF_ASSERT_OK(cfnet_tensor_fill(dx, 99.0f)); /* dx is overwritten */
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
    const float expect[8] = {3, 0, 0, 7, 0, 0, 0, 0};
    assert_memory_equal(cfnet_tensor_data(dx), expect, sizeof expect);
    /* The first maximum in value too: -0 before +0 stays -0; a NaN first stays, a NaN later
     * never wins (the 2 x 2 windows have their own loop, which must agree). */
    const float zv[8] = {-0.0f, 0.0f, 1, NAN, 0.0f, -0.0f, 3, 2};
    CF_ASSERT_OK(cfnet_tensor_copy_in(x, zv, 8));
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    assert_true(signbit(cfnet_tensor_data(y)[0]) && cfnet_tensor_data(y)[0] == 0.0f);
    assert_true(cfnet_tensor_data(y)[1] == 3.0f);
    const float nv[8] = {NAN, 1, 2, 3, 4, 5, 6, 7};
    CF_ASSERT_OK(cfnet_tensor_copy_in(x, nv, 8));
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    assert_true(isnan(cfnet_tensor_data(y)[0]) && cfnet_tensor_data(y)[1] == 7.0f);
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
    const float expect2[8] = {3, 0, 0, 0, 0, 0, 0, 7};
    assert_memory_equal(cfnet_tensor_data(dx), expect2, sizeof expect2);
    cfnet_tensor_free(x);
    cfnet_tensor_free(dx);
    cfnet_tensor_free(y);
    cfnet_tensor_free(dy);
    cfnet_layer_free(l);
}

/* The 2 x 2 windows (their own loops) against explicit loops, bit for bit. Max: dy at each
 * window's first maximum as 0 + dy (a -0 gradient lands as +0), exact zeros elsewhere. Mean:
 * the general loop's float sum ((0 + a) + b + c) + d times 1/4 forward, 0 + dy/4 to each
 * element backward. Both: zeros in the row and column no window covers at odd sizes. Values
 * from a few levels, so that ties are common. */
static void pool_2x2_windows_match_explicit_loops(void **state)
{
    (void)state;
    static const int64_t shapes[][3] = {{3, 6, 8}, {2, 7, 5}, {1, 2, 2}, {4, 5, 6}};
    tu_rng r = {37};
    for (int mode = CFNET_POOL_MAX; mode <= CFNET_POOL_MEAN; mode++)
        for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
            const int64_t C = shapes[c][0], H = shapes[c][1], W = shapes[c][2], N = 2;
            const int64_t Ho = H / 2, Wo = W / 2, xs[4] = {N, C, H, W};
            cfnet_layer *l = NULL;
            CF_ASSERT_OK(cfnet_layer_pool_create((cfnet_pool_mode)mode, 2, 2, &l));
            CF_ASSERT_OK(cfnet_layer_setup(l, 3, shapes[c], 0));
            cfnet_tensor *x = tu_tensor(4, xs, NULL), *dx = tu_tensor(4, xs, NULL);
            cfnet_tensor *y = tu_output_for(l, N),
                         *dy = tu_tensor(4, (int64_t[]){N, C, Ho, Wo}, &r);
            float *xv = cfnet_tensor_data(x), *dyv = cfnet_tensor_data(dy);
            const int64_t n = N * C * H * W, m = N * C * Ho * Wo;
            for (int64_t i = 0; i < n; i++) /* levels for max (ties), any value for mean */
                xv[i] = mode == CFNET_POOL_MAX ? (float)(int)(tu_uniform(&r) * 3.0) - 0.5f
                                               : (float)(tu_uniform(&r) * 3.0 - 1.0);
            dyv[0] = -0.0f;
            CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
            CF_ASSERT_OK(cfnet_tensor_fill(dx, 99.0f));
            CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
            float *expect = calloc((size_t)n, sizeof *expect),
                  *yexp = malloc((size_t)m * sizeof *yexp);
            assert_non_null(expect), assert_non_null(yexp);
            for (int64_t pl = 0; pl < N * C; pl++)
                for (int64_t i = 0; i < Ho; i++)
                    for (int64_t j = 0; j < Wo; j++) {
                        int64_t o = (pl * Ho + i) * Wo + j, best = pl * H * W + 2 * i * W + 2 * j;
                        float sum = 0.0f;
                        for (int a = 0; a < 2; a++)
                            for (int b = 0; b < 2; b++) {
                                int64_t at = pl * H * W + (2 * i + a) * W + 2 * j + b;
                                if (xv[at] > xv[best]) best = at;
                                sum += xv[at];
                                if (mode == CFNET_POOL_MEAN) expect[at] += dyv[o] * 0.25f;
                            }
                        if (mode == CFNET_POOL_MAX) expect[best] += dyv[o];
                        yexp[o] = mode == CFNET_POOL_MAX ? xv[best] : sum * 0.25f;
                    }
            assert_memory_equal(cfnet_tensor_data(y), yexp, (size_t)m * sizeof *yexp);
            assert_memory_equal(cfnet_tensor_data(dx), expect, (size_t)n * sizeof *expect);
            free(expect), free(yexp);
            cfnet_tensor_free(x);
            cfnet_tensor_free(dx);
            cfnet_tensor_free(y);
            cfnet_tensor_free(dy);
            cfnet_layer_free(l);
        }
}

/* Gradient check on one configuration; returns the worst relative error. */
static double pool_gradcheck(cfnet_pool_mode mode, int window, int stride, int ndim,
                             const int64_t *shape, uint64_t seed)
{
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_pool_create(mode, window, stride, &l));
    CF_ASSERT_OK(cfnet_layer_setup(l, ndim, shape, 0));
    int64_t xs[5] = {2};
    memcpy(xs + 1, shape, (size_t)ndim * sizeof *xs);
    tu_rng r = {seed};
    cfnet_tensor *x = tu_tensor(ndim + 1, xs, &r);
    if (mode == CFNET_POOL_MAX) tu_fill_separated(cfnet_tensor_data(x), cfnet_tensor_numel(x), &r);
    double e = tu_gradcheck(l, x, CFNET_MODE_TRAINING, 1e-2, 0, NULL);
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
    return e;
}

static void pool_gradient_matches_finite_differences_odd_and_even(void **state)
{
    (void)state;
    /* Central differences, h = 1e-2, every input coordinate. Max pooling is piecewise linear
     * and the inputs are separated by > 2h, mean pooling is linear: the only error is float
     * rounding of the forward, so the relative tolerance is 1e-3. */
    const int64_t odd[] = {3, 7, 7}, even[] = {2, 8, 8}, p4odd[] = {2, 4, 5, 5},
                  p4even[] = {2, 4, 6, 6}, rect[] = {2, 7, 6};
    for (int m = 0; m < 2; m++) {
        cfnet_pool_mode mode = m ? CFNET_POOL_MEAN : CFNET_POOL_MAX;
        assert_true(pool_gradcheck(mode, 0, 0, 3, odd, 1) < 1e-3);
        assert_true(pool_gradcheck(mode, 0, 2, 3, even, 2) < 1e-3);
        assert_true(pool_gradcheck(mode, 0, 0, 4, p4odd, 3) < 1e-3);
        assert_true(pool_gradcheck(mode, 0, 0, 4, p4even, 4) < 1e-3);
        assert_true(pool_gradcheck(mode, 3, 1, 3, rect, 5) < 1e-3); /* heavy overlap */
        assert_true(pool_gradcheck(mode, 2, 3, 3, rect, 6) < 1e-3); /* gaps */
    }
}

/* rel. difference between pool(rot^q x) and rot^q pool(x) for a planar (p4 = false) or p4 map
 * batch of 2 x C x [4 x] S x S. */
static double pool_rot_error(cfnet_pool_mode mode, int window, int stride, bool p4, int64_t C,
                             int64_t S, int q)
{
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_pool_create(mode, window, stride, &l));
    const int64_t N = 2;
    int64_t shape[4] = {C, S, S}, xs[5] = {N, C, S, S};
    if (p4) {
        shape[1] = 4;
        shape[2] = shape[3] = S;
        xs[2] = 4;
        xs[3] = xs[4] = S;
    }
    const int nd = p4 ? 4 : 3;
    CF_ASSERT_OK(cfnet_layer_setup(l, nd, shape, 0));
    int ond;
    int64_t os[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_layer_output_shape(l, &ond, os));
    assert_int_equal(os[ond - 2], os[ond - 1]);
    tu_rng r = {(uint64_t)(S * 100 + q)};
    cfnet_tensor *x = tu_tensor(nd + 1, xs, &r);
    double e = tu_rot90_error(l, x, p4, p4, q, CFNET_MODE_INFERENCE);
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
    return e;
}

static void pool_equivariant_mode_commutes_with_rot90_odd_size(void **state)
{
    (void)state;
    for (int m = 0; m < 2; m++)
        for (int q = 1; q < 4; q++) {
            cfnet_pool_mode mode = m ? CFNET_POOL_MEAN : CFNET_POOL_MAX;
            assert_true(pool_rot_error(mode, 0, 0, false, 3, 7, q) <= 1e-5);
            assert_true(pool_rot_error(mode, 0, 2, false, 2, 9, q) <= 1e-5);
            assert_true(pool_rot_error(mode, 0, 0, false, 2, 3, q) <= 1e-5); /* 3 -> 1 */
        }
}

static void pool_equivariant_mode_commutes_with_rot90_even_size(void **state)
{
    (void)state;
    for (int m = 0; m < 2; m++)
        for (int q = 1; q < 4; q++) {
            cfnet_pool_mode mode = m ? CFNET_POOL_MEAN : CFNET_POOL_MAX;
            assert_true(pool_rot_error(mode, 0, 0, false, 3, 8, q) <= 1e-5);
            assert_true(pool_rot_error(mode, 0, 0, false, 2, 6, q) <= 1e-5);
            assert_true(pool_rot_error(mode, 0, 0, false, 2, 2, q) <= 1e-5); /* 2 -> 1 */
        }
}

static void pool_equivariant_mode_commutes_with_rot90_on_p4_maps(void **state)
{
    (void)state;
    for (int m = 0; m < 2; m++)
        for (int q = 1; q < 4; q++) {
            cfnet_pool_mode mode = m ? CFNET_POOL_MEAN : CFNET_POOL_MAX;
            assert_true(pool_rot_error(mode, 0, 0, true, 2, 7, q) <= 1e-5);
            assert_true(pool_rot_error(mode, 0, 0, true, 3, 6, q) <= 1e-5);
        }
}

static void pool_asymmetric_window_breaks_rot90(void **state)
{
    (void)state;
    /* Window 2 on an odd map drops the last row and column: not equivariant. This shows the
     * equivariance check above can fail. */
    assert_true(pool_rot_error(CFNET_POOL_MAX, 2, 2, false, 3, 7, 1) > 1e-2);
    assert_true(pool_rot_error(CFNET_POOL_MEAN, 2, 2, true, 2, 7, 1) > 1e-2);
}

static void pool_stores_configuration(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_pool_create(CFNET_POOL_MEAN, 3, 2, &l));
    assert_int_equal(cfnet_layer_kind_of(l), CFNET_LAYER_POOL);
    assert_int_equal(l->icfg[0], CFNET_POOL_MEAN);
    assert_int_equal(l->icfg[1], 3);
    assert_int_equal(l->icfg[2], 2);
    cfnet_layer_free(l);
    CF_ASSERT_OK(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l));
    assert_int_equal(l->icfg[0], CFNET_POOL_MAX);
    assert_int_equal(l->icfg[1], 0);
    assert_int_equal(l->icfg[2], 2); /* the effective stride */
    cfnet_layer_free(l);
}

static void pool_rejects_bad_arguments(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_STATUS(cfnet_layer_pool_create(CFNET_POOL_MAX, 2, 2, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_pool_create((cfnet_pool_mode)2, 2, 2, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "pool: mode is 2"));
    CF_ASSERT_STATUS(cfnet_layer_pool_create(CFNET_POOL_MAX, -1, 2, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_string_equal(cfnet_last_error(), "pool: window is -1, must be >= 0");
    CF_ASSERT_STATUS(cfnet_layer_pool_create(CFNET_POOL_MAX, 2, 0, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "pool: stride is 0"));
    CF_ASSERT_STATUS(cfnet_layer_pool_create(CFNET_POOL_MEAN, 3, -2, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 1, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "pool: stride is 1"));
    CF_ASSERT_STATUS(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 3, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_null(l);

    CF_ASSERT_OK(cfnet_layer_pool_create(CFNET_POOL_MAX, 3, 2, &l));
    const int64_t one[] = {9};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 1, one, 0), CFNET_E_SHAPE_MISMATCH);
    assert_non_null(strstr(cfnet_last_error(), "pool: input is 9,"));
    const int64_t narrow[] = {2, 8, 2};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, narrow, 0), CFNET_E_SHAPE_MISMATCH);
    assert_non_null(strstr(cfnet_last_error(), "2x8x2"));
    int nd;
    int64_t os[CFNET_MAX_DIMS];
    /* Failed setups left the layer not set up. */
    assert_int_equal(cfnet_layer_output_shape(l, &nd, os), CFNET_E_STATE);
    cfnet_layer_free(l);

    CF_ASSERT_OK(cfnet_layer_pool_create(CFNET_POOL_MEAN, 0, 0, &l));
    const int64_t rect[] = {3, 5, 6};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, rect, 0), CFNET_E_SHAPE_MISMATCH);
    assert_non_null(strstr(cfnet_last_error(), "3x5x6"));
    const int64_t tiny[] = {3, 4, 1, 1}; /* odd size 1 needs window 3 */
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, tiny, 0), CFNET_E_SHAPE_MISMATCH);
    assert_non_null(strstr(cfnet_last_error(), "3x4x1x1"));
    cfnet_layer_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pool_matches_explicit_window_loops),
        cmocka_unit_test(pool_max_backward_routes_to_first_maximum_on_ties),
        cmocka_unit_test(pool_2x2_windows_match_explicit_loops),
        cmocka_unit_test(pool_gradient_matches_finite_differences_odd_and_even),
        cmocka_unit_test(pool_equivariant_mode_commutes_with_rot90_odd_size),
        cmocka_unit_test(pool_equivariant_mode_commutes_with_rot90_even_size),
        cmocka_unit_test(pool_equivariant_mode_commutes_with_rot90_on_p4_maps),
        cmocka_unit_test(pool_asymmetric_window_breaks_rot90),
        cmocka_unit_test(pool_stores_configuration),
        cmocka_unit_test(pool_rejects_bad_arguments),
    };
    return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
