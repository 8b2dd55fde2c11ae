/* p4m (the dihedral group D4): lifting and group convolution against slow references built
 * from the definition, exact equivariance under all 8 elements on odd and even sizes, the p4
 * layers as the rotation subgroup, gradients, group pooling and batch norm on p4m maps, the
 * invariant DFT head, and bad arguments. */
#include "testutil.h"

#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the test's own filter transform: (T_g phi)(z) = phi(g^-1 z) in (u, v) coordinates,
 * u = j - c, v = c - i, with g's 2 x 2 matrix (rho^r F^m). ---- */
static void d4_apply_point(int g, int u, int v, int *uo, int *vo)
{
    /* F: (u, v) -> (-u, v), then r quarter turns (u, v) -> (-v, u). */
    if (g >= 4) u = -u;
    for (int q = 0; q < (g & 3); q++) {
        int t = u;
        u = -v;
        v = t;
    }
    *uo = u;
    *vo = v;
}

static void transform_filter(const float *in, float *out, int k, int g)
{
    int c = (k - 1) / 2, gi = tu_d4_inv(g);
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            int u, v;
            d4_apply_point(gi, j - c, c - i, &u, &v);
            out[i * k + j] = in[(c - v) * k + (u + c)];
        }
}

static int out_size(int S, int k, cfnet_padding pad)
{
    return pad == CFNET_PADDING_SAME ? S : S - k + 1;
}

/* y[n, o, g, i, j] = b[o] + sum_{c, h, a, d} x[n, c, h, i - p + a, j - p + d]
 *                                             (T_g w[o, c, g^-1 h])[a, d];
 * lifting (G = 1): h and g^-1 h are 0. */
static void slow_p4m(const float *x, const float *w, const float *b, float *y, int n, int C,
                     int G, int S, int O, int k, int p, int OS)
{
    int kk = k * k;
    float *tw = malloc((size_t)(8 * O * C * G * kk) * sizeof *tw); /* [g][o][c][h] */
    assert_non_null(tw);
    for (int g = 0; g < 8; g++)
        for (int o = 0; o < O; o++)
            for (int c = 0; c < C; c++)
                for (int h = 0; h < G; h++) {
                    int src = G == 1 ? 0 : tu_d4_mul(tu_d4_inv(g), h);
                    transform_filter(w + ((o * C + c) * G + src) * kk,
                                     tw + (((g * O + o) * C + c) * G + h) * kk, k, g);
                }
    for (int s = 0; s < n; s++)
        for (int o = 0; o < O; o++)
            for (int g = 0; g < 8; g++)
                for (int i = 0; i < OS; i++)
                    for (int j = 0; j < OS; j++) {
                        double acc = b[o];
                        for (int c = 0; c < C; c++)
                            for (int h = 0; h < G; h++) {
                                const float *f = tw + (((g * O + o) * C + c) * G + h) * kk;
                                for (int a = 0; a < k; a++)
                                    for (int d = 0; d < k; d++) {
                                        int ii = i - p + a, jj = j - p + d;
                                        if (ii < 0 || ii >= S || jj < 0 || jj >= S) continue;
                                        acc += (double)x[(((s * C + c) * G + h) * S + ii) * S +
                                                         jj] *
                                               f[a * k + d];
                                    }
                            }
                        y[(((s * O + o) * 8 + g) * OS + i) * OS + j] = (float)acc;
                    }
    free(tw);
}

/* A set-up layer with random (non-zero) biases. group = 0: lifting, 1: group convolution. */
static cfnet_layer *make_layer(int group, int C, int S, int O, int k, cfnet_padding pad,
                               uint64_t seed)
{
    cfnet_layer *l = NULL;
    if (group) {
        CF_ASSERT_OK(cfnet_layer_p4m_conv_create(O, k, pad, &l));
        int64_t in[] = {C, 8, S, S};
        CF_ASSERT_OK(cfnet_layer_setup(l, 4, in, seed));
    } else {
        CF_ASSERT_OK(cfnet_layer_p4m_lift_create(O, k, pad, &l));
        int64_t in[] = {C, S, S};
        CF_ASSERT_OK(cfnet_layer_setup(l, 3, in, seed));
    }
    tu_rng r = {seed + 100};
    tu_fill_normal(cfnet_tensor_data(cfnet_layer_param(l, 1)), O, &r);
    return l;
}

static cfnet_tensor *make_input(int group, int64_t n, int C, int S, tu_rng *r)
{
    if (group) {
        int64_t xs[] = {n, C, 8, S, S};
        return tu_tensor(5, xs, r);
    }
    int64_t xs[] = {n, C, S, S};
    return tu_tensor(4, xs, r);
}

static void check_slow(int group, int C, int S, int O, int k, cfnet_padding pad)
{
    cfnet_layer *l = make_layer(group, C, S, O, k, pad, 7);
    tu_rng g = {17};
    cfnet_tensor *x = make_input(group, 2, C, S, &g), *y = tu_output_for(l, 2);
    int OS = out_size(S, k, pad), p = pad == CFNET_PADDING_SAME ? (k - 1) / 2 : 0;
    assert_int_equal(cfnet_tensor_numel(y), 2 * O * 8 * OS * OS);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    float *ref = malloc((size_t)cfnet_tensor_numel(y) * sizeof *ref);
    assert_non_null(ref);
    slow_p4m(cfnet_tensor_data(x), cfnet_tensor_data(cfnet_layer_param(l, 0)),
             cfnet_tensor_data(cfnet_layer_param(l, 1)), ref, 2, C, group ? 8 : 1, S, O, k, p,
             OS);
    double e = tu_max_rel_diff(cfnet_tensor_data(y), ref, cfnet_tensor_numel(y));
    if (e > 1e-5)
        fail_msg("%s vs slow reference C=%d S=%d O=%d k=%d pad=%d: %g",
                 group ? "p4m_conv" : "p4m_lift", C, S, O, k, pad, e);
    free(ref);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
}

static void p4m_group_table_is_d4(void **state)
{
    (void)state;
    /* F rho = rho^-1 F, F^2 = rho^4 = 1: the defining relations of D4 in this indexing. */
    assert_int_equal(tu_d4_mul(4, 1), tu_d4_mul(3, 4));
    assert_int_equal(tu_d4_mul(4, 4), 0);
    assert_int_equal(tu_d4_mul(1, tu_d4_mul(1, tu_d4_mul(1, 1))), 0);
    assert_int_equal(tu_d4_mul(1, 4), 5); /* rho F is element 4 m + r = 5 */
}

static void p4m_lift_matches_slow_reference(void **state)
{
    (void)state;
    const int ks[] = {1, 3, 5};
    for (int ki = 0; ki < 3; ki++)
        for (int S = 6; S <= 7; S++) {
            check_slow(0, 2, S, 2, ks[ki], CFNET_PADDING_VALID);
            check_slow(0, 2, S, 2, ks[ki], CFNET_PADDING_SAME);
        }
}

static void p4m_conv_matches_slow_reference(void **state)
{
    (void)state;
    const int ks[] = {1, 3, 5};
    for (int ki = 0; ki < 3; ki++)
        for (int S = 6; S <= 7; S++) {
            check_slow(1, 2, S, 2, ks[ki], CFNET_PADDING_VALID);
            check_slow(1, 2, S, 2, ks[ki], CFNET_PADDING_SAME);
        }
}

/* layer(T_g x) == T_g layer(x) for all 8 elements g: the output is transformed spatially and its
 * copies permuted, h -> g h. Exact up to float rounding (the GEMM sums the same products in
 * another order): 1e-5 relative. */
static void check_equivariance(int group, int C, int S, int O, int k, cfnet_padding pad)
{
    cfnet_layer *l = make_layer(group, C, S, O, k, pad, 3);
    tu_rng r = {29};
    cfnet_tensor *x = make_input(group, 2, C, S, &r);
    for (int g = 1; g < 8; g++) {
        double e = tu_d4_error(l, x, group, 1, g, CFNET_MODE_INFERENCE);
        if (e > 1e-5)
            fail_msg("%s equivariance C=%d S=%d k=%d pad=%d g=%d: %g",
                     group ? "p4m_conv" : "p4m_lift", C, S, k, pad, g, e);
    }
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
}

static void p4m_lift_is_equivariant_under_all_of_d4(void **state)
{
    (void)state;
    const int ks[] = {1, 3, 5};
    for (int ki = 0; ki < 3; ki++)
        for (int pad = 0; pad < 2; pad++)
            for (int S = 10; S <= 11; S++)
                check_equivariance(0, 2, S, 3, ks[ki], (cfnet_padding)pad);
}

static void p4m_conv_is_equivariant_under_all_of_d4(void **state)
{
    (void)state;
    const int ks[] = {1, 3, 5};
    for (int ki = 0; ki < 3; ki++)
        for (int pad = 0; pad < 2; pad++)
            for (int S = 10; S <= 11; S++)
                check_equivariance(1, 2, S, 2, ks[ki], (cfnet_padding)pad);
}

/* The rotations are the subgroup p4: with the same weights, copies 0..3 of p4m_lift are
 * p4_lift's output, and p4m_conv on a map whose mirrored copies 4..7 are zero, with its
 * mirrored filter copies zero, gives p4_conv's output in copies 0..3. */
static void p4m_restricted_to_rotations_is_p4(void **state)
{
    (void)state;
    for (int group = 0; group < 2; group++) {
        const int C = 2, S = 7, O = 2, k = 3, G = group ? 8 : 1;
        cfnet_layer *lm = make_layer(group, C, S, O, k, CFNET_PADDING_SAME, 5), *l4 = NULL;
        int64_t in4[] = {C, 4, S, S}, in1[] = {C, S, S};
        if (group) {
            CF_ASSERT_OK(cfnet_layer_p4_conv_create(O, k, CFNET_PADDING_SAME, &l4));
            CF_ASSERT_OK(cfnet_layer_setup(l4, 4, in4, 5));
        } else {
            CF_ASSERT_OK(cfnet_layer_p4_lift_create(O, k, CFNET_PADDING_SAME, &l4));
            CF_ASSERT_OK(cfnet_layer_setup(l4, 3, in1, 5));
        }
        float *wm = cfnet_tensor_data(cfnet_layer_param(lm, 0));
        float *w4 = cfnet_tensor_data(cfnet_layer_param(l4, 0));
        for (int oc = 0; oc < O * C; oc++)
            for (int h = 0; h < G; h++)
                for (int t = 0; t < k * k; t++) {
                    if (h >= 4) wm[(oc * G + h) * k * k + t] = 0.0f;
                    else w4[(oc * (group ? 4 : 1) + h) * k * k + t] = wm[(oc * G + h) * k * k + t];
                }
        CF_ASSERT_OK(cfnet_tensor_copy_in(cfnet_layer_param(l4, 1),
                                          cfnet_tensor_data(cfnet_layer_param(lm, 1)), O));
        tu_rng r = {3};
        cfnet_tensor *xm = make_input(group, 2, C, S, &r), *x4;
        if (group) {
            int64_t xs[] = {2, C, 4, S, S};
            x4 = tu_tensor(5, xs, NULL);
            float *a = cfnet_tensor_data(xm), *b = cfnet_tensor_data(x4);
            for (int bc = 0; bc < 2 * C; bc++)
                for (int h = 0; h < 8; h++)
                    for (int t = 0; t < S * S; t++) {
                        if (h >= 4) a[(bc * 8 + h) * S * S + t] = 0.0f;
                        else b[(bc * 4 + h) * S * S + t] = a[(bc * 8 + h) * S * S + t];
                    }
        } else {
            x4 = xm;
        }
        cfnet_tensor *ym = tu_output_for(lm, 2), *y4 = tu_output_for(l4, 2);
        CF_ASSERT_OK(cfnet_layer_forward(lm, xm, ym, CFNET_MODE_INFERENCE));
        CF_ASSERT_OK(cfnet_layer_forward(l4, x4, y4, CFNET_MODE_INFERENCE));
        const float *a = cfnet_tensor_data(ym), *b = cfnet_tensor_data(y4);
        for (int bo = 0; bo < 2 * O; bo++)
            for (int g = 0; g < 4; g++)
                for (int t = 0; t < S * S; t++) {
                    float u = a[(bo * 8 + g) * S * S + t], v = b[(bo * 4 + g) * S * S + t];
                    if (fabsf(u - v) > 1e-5f * (1.0f + fabsf(v)))
                        fail_msg("group %d: p4m copy %d differs from p4: %g vs %g", group, g,
                                 (double)u, (double)v);
                }
        if (x4 != xm) cfnet_tensor_free(x4);
        cfnet_tensor_free(xm);
        cfnet_tensor_free(ym);
        cfnet_tensor_free(y4);
        cfnet_layer_free(lm);
        cfnet_layer_free(l4);
    }
}

/* Linear layers: central differences (h = 1e-2) agree to rounding (see test_p4_conv.c). */
static void check_grad(int group, int C, int S, int O, int k, cfnet_padding pad)
{
    cfnet_layer *l = make_layer(group, C, S, O, k, pad, 13);
    CF_ASSERT_OK(cfnet_tensor_zero(cfnet_layer_param(l, 1)));
    tu_rng g = {37};
    cfnet_tensor *x = make_input(group, 2, C, S, &g);
    float *xd = cfnet_tensor_data(x);
    for (int64_t i = 0; i < cfnet_tensor_numel(x); i++) xd[i] *= 0.25f;
    double wp = 0, wx = tu_gradcheck(l, x, CFNET_MODE_TRAINING, 1e-2, 300, &wp);
    if (wx > 2e-3 || wp > 2e-3)
        fail_msg("%s gradcheck C=%d S=%d k=%d pad=%d: input %g params %g",
                 group ? "p4m_conv" : "p4m_lift", C, S, k, pad, wx, wp);
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
}

static void p4m_lift_gradients_match_finite_differences(void **state)
{
    (void)state;
    check_grad(0, 2, 7, 2, 3, CFNET_PADDING_SAME);
    check_grad(0, 2, 6, 2, 3, CFNET_PADDING_VALID);
    check_grad(0, 1, 6, 2, 5, CFNET_PADDING_SAME);
}

static void p4m_conv_gradients_match_finite_differences(void **state)
{
    (void)state;
    check_grad(1, 2, 7, 2, 3, CFNET_PADDING_SAME);
    check_grad(1, 1, 6, 2, 3, CFNET_PADDING_VALID);
    check_grad(1, 1, 5, 2, 1, CFNET_PADDING_VALID);
}

/* ---- group pooling over the 8 copies ---- */

static void group_pool_over_d4_is_invariant_pooling(void **state)
{
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        cfnet_layer *l = NULL;
        CF_ASSERT_OK(cfnet_layer_group_pool_create((cfnet_pool_mode)mode, &l));
        for (int S = 4; S <= 5; S++) {
            int64_t in[] = {3, 8, S, S}, xs[] = {2, 3, 8, S, S};
            CF_ASSERT_OK(cfnet_layer_setup(l, 4, in, 1));
            int nd;
            int64_t os[CFNET_MAX_DIMS];
            CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, os));
            assert_int_equal(nd, 3);
            assert_int_equal(os[0], 3);
            assert_int_equal(os[1], S);
            tu_rng r = {41};
            cfnet_tensor *x = tu_tensor(5, xs, NULL);
            tu_fill_separated(cfnet_tensor_data(x), cfnet_tensor_numel(x), &r);
            /* value check: max / mean over the 8 copies */
            cfnet_tensor *y = tu_output_for(l, 2);
            CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
            const float *xd = cfnet_tensor_data(x), *yd = cfnet_tensor_data(y);
            for (int bc = 0; bc < 6; bc++)
                for (int t = 0; t < S * S; t++) {
                    double m = mode ? 0 : -INFINITY;
                    for (int g = 0; g < 8; g++) {
                        double v = xd[(bc * 8 + g) * S * S + t];
                        m = mode ? m + v / 8 : fmax(m, v);
                    }
                    assert_true(fabs(yd[bc * S * S + t] - m) <= 1e-6 * (1 + fabs(m)));
                }
            for (int g = 1; g < 8; g++) {
                double e = tu_d4_error(l, x, 1, 0, g, CFNET_MODE_INFERENCE);
                if (e > 1e-6) fail_msg("group_pool mode %d S=%d g=%d: %g", mode, S, g, e);
            }
            /* max: separated values, so a step never changes the maximum; mean: N(0, 1) */
            if (mode) tu_fill_normal(cfnet_tensor_data(x), cfnet_tensor_numel(x), &r);
            double wx = tu_gradcheck(l, x, CFNET_MODE_TRAINING, 1e-2, 0, NULL);
            if (wx > 1e-3) fail_msg("group_pool p4m gradcheck mode %d: %g", mode, wx);
            cfnet_tensor_free(x);
            cfnet_tensor_free(y);
        }
        cfnet_layer_free(l);
    }
}

/* batch_norm on C x 8 x S x S shares its statistics over the 8 copies (axis 0 is the channel),
 * so it commutes with every element of D4 in training and in inference mode. */
static void batch_norm_on_p4m_maps_is_equivariant(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l));
    int64_t in[] = {2, 8, 5, 5}, xs[] = {3, 2, 8, 5, 5};
    CF_ASSERT_OK(cfnet_layer_setup(l, 4, in, 1));
    tu_rng r = {43};
    cfnet_tensor *x = tu_tensor(5, xs, &r);
    float *xd = cfnet_tensor_data(x);
    /* give each copy g its own offset: statistics per (c, g) would remove it and break the
     * check below, shared statistics keep it */
    for (int64_t i = 0; i < cfnet_tensor_numel(x); i++) xd[i] += (float)((i / 25) % 8);
    assert_int_equal(cfnet_tensor_numel(cfnet_layer_param(l, 0)), 2);
    for (int g = 1; g < 8; g++) {
        double e = tu_d4_error(l, x, 1, 1, g, CFNET_MODE_TRAINING);
        if (e > 1e-5) fail_msg("batch_norm p4m training g=%d: %g", g, e);
        e = tu_d4_error(l, x, 1, 1, g, CFNET_MODE_INFERENCE);
        if (e > 1e-5) fail_msg("batch_norm p4m inference g=%d: %g", g, e);
    }
    /* the copies keep their distinct means: the output mean of copy 7 exceeds copy 0's */
    cfnet_tensor *y = tu_output_for(l, 3);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    double m0 = 0, m7 = 0;
    for (int b = 0; b < 6; b++)
        for (int t = 0; t < 25; t++) {
            m0 += cfnet_tensor_data(y)[(b * 8 + 0) * 25 + t];
            m7 += cfnet_tensor_data(y)[(b * 8 + 7) * 25 + t];
        }
    assert_true(m7 > m0 + 100.0);
    cfnet_tensor_free(y);
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
}

/* ---- the invariant head ---- */

static cfnet_layer *make_head(int64_t C, int four_d)
{
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_p4m_dft_magnitude_create(&l));
    int64_t in4[] = {C, 8, 1, 1}, in2[] = {C, 8};
    CF_ASSERT_OK(cfnet_layer_setup(l, four_d ? 4 : 2, four_d ? in4 : in2, 1));
    return l;
}

/* |sum_{m, r} Psi(m, r) exp(-2 pi i (a m / 2 + b r / 4))| from the definition. */
static void p4m_head_matches_the_definition(void **state)
{
    (void)state;
    cfnet_layer *l = make_head(3, 1);
    int64_t xs[] = {2, 3, 8, 1, 1};
    tu_rng r = {47};
    cfnet_tensor *x = tu_tensor(5, xs, &r), *y = tu_output_for(l, 2);
    assert_int_equal(cfnet_tensor_ndim(y), 3);
    assert_int_equal(cfnet_tensor_dim(y, 2), 8);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    const float *xd = cfnet_tensor_data(x), *yd = cfnet_tensor_data(y);
    for (int bn = 0; bn < 6; bn++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 4; b++) {
                double complex s = 0;
                for (int m = 0; m < 2; m++)
                    for (int q = 0; q < 4; q++)
                        s += xd[bn * 8 + m * 4 + q] *
                             cexp(-2.0 * 3.14159265358979323846 * I * (a * m / 2.0 + b * q / 4.0));
                double got = yd[bn * 8 + a * 4 + b];
                if (fabs(got - cabs(s)) > 1e-5 * (1 + cabs(s)))
                    fail_msg("head (%d, %d, %d): %g vs %g", bn, a, b, got, cabs(s));
            }
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
}

/* The head sees Psi(n, g); transforming the network input by a permutes it,
 * Psi'(n, g) = Psi(n, a^-1 g). The output must not change, for every a. */
static void p4m_head_is_invariant_under_all_of_d4(void **state)
{
    (void)state;
    for (int four_d = 0; four_d < 2; four_d++) {
        const int C = 4;
        cfnet_layer *l = make_head(C, four_d);
        int64_t xs4[] = {2, C, 8, 1, 1}, xs2[] = {2, C, 8};
        tu_rng r = {53};
        cfnet_tensor *x = tu_tensor(four_d ? 5 : 3, four_d ? xs4 : xs2, &r);
        cfnet_tensor *xa = tu_tensor(four_d ? 5 : 3, four_d ? xs4 : xs2, NULL);
        cfnet_tensor *y = tu_output_for(l, 2), *ya = tu_output_for(l, 2);
        CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
        for (int a = 1; a < 8; a++) {
            const float *xd = cfnet_tensor_data(x);
            float *xad = cfnet_tensor_data(xa);
            for (int bn = 0; bn < 2 * C; bn++)
                for (int g = 0; g < 8; g++) xad[bn * 8 + tu_d4_mul(a, g)] = xd[bn * 8 + g];
            CF_ASSERT_OK(cfnet_layer_forward(l, xa, ya, CFNET_MODE_INFERENCE));
            double e = tu_max_rel_diff(cfnet_tensor_data(ya), cfnet_tensor_data(y), 16 * C);
            if (e > 1e-6) fail_msg("p4m head under a=%d (rank %d): %g", a, four_d ? 4 : 2, e);
        }
        /* the plain 2D DFT over the flattened n x 8 grid is not: a mirror changes it */
        cfnet_layer *plain = NULL;
        CF_ASSERT_OK(cfnet_layer_dft_magnitude_create(&plain));
        int64_t pin[] = {C, 8};
        CF_ASSERT_OK(cfnet_layer_setup(plain, 2, pin, 1));
        int64_t ps[] = {2, C, 8};
        cfnet_tensor *px = tu_tensor(3, ps, NULL), *pxa = tu_tensor(3, ps, NULL);
        CF_ASSERT_OK(cfnet_tensor_copy_in(px, cfnet_tensor_data(x), 16 * C));
        for (int bn = 0; bn < 2 * C; bn++)
            for (int g = 0; g < 8; g++)
                cfnet_tensor_data(pxa)[bn * 8 + tu_d4_mul(4, g)] = cfnet_tensor_data(x)[bn * 8 + g];
        cfnet_tensor *py = tu_output_for(plain, 2), *pya = tu_output_for(plain, 2);
        CF_ASSERT_OK(cfnet_layer_forward(plain, px, py, CFNET_MODE_INFERENCE));
        CF_ASSERT_OK(cfnet_layer_forward(plain, pxa, pya, CFNET_MODE_INFERENCE));
        assert_true(tu_max_rel_diff(cfnet_tensor_data(pya), cfnet_tensor_data(py), 16 * C) > 1e-2);
        cfnet_tensor_free(px);
        cfnet_tensor_free(pxa);
        cfnet_tensor_free(py);
        cfnet_tensor_free(pya);
        cfnet_layer_free(plain);
        cfnet_tensor_free(x);
        cfnet_tensor_free(xa);
        cfnet_tensor_free(y);
        cfnet_tensor_free(ya);
        cfnet_layer_free(l);
    }
}

static void p4m_head_gradients_match_finite_differences(void **state)
{
    (void)state;
    cfnet_layer *l = make_head(3, 0);
    int64_t xs[] = {2, 3, 8};
    tu_rng r = {59};
    cfnet_tensor *x = tu_tensor(3, xs, &r);
    double wx = tu_gradcheck(l, x, CFNET_MODE_TRAINING, 1e-3, 0, NULL);
    if (wx > 2e-2) fail_msg("p4m_dft_magnitude gradcheck: %g", wx);
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
}

#define APPEND(net, expr)                          \
    do {                                           \
        cfnet_layer *l_ = NULL;                    \
        CF_ASSERT_OK(expr);                        \
        CF_ASSERT_OK(cfnet_network_append(net, l_)); \
    } while (0)

/* ---- the DFT projection from a p4m map ---- */

/* Psi(n, g) = b_n + sum_{c,h,z} f[c, h, z] (T_g phi_n)[c, g^-1 h, z]: the p4m group convolution
 * at the centre, so the slow reference is slow_p4m with a kernel as large as the (odd) map,
 * valid padding and a 1 x 1 output. Transforming the input by a permutes Psi: Psi(n, a g). */
static void dft_projection_from_p4m_maps(void **state)
{
    (void)state;
    for (int M = 3; M <= 4; M++) {
        const int K = 2, N = 3, B = 2;
        cfnet_layer *l = NULL;
        CF_ASSERT_OK(cfnet_layer_dft_projection_create(N, 1, CFNET_INTERP_NEAREST, &l));
        int64_t in[] = {K, 8, M, M}, xs[] = {B, K, 8, M, M};
        CF_ASSERT_OK(cfnet_layer_setup(l, 4, in, 3));
        int nd;
        int64_t os[CFNET_MAX_DIMS];
        CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, os));
        assert_int_equal(nd, 2);
        assert_int_equal(os[0], N);
        assert_int_equal(os[1], 8);
        assert_int_equal(cfnet_tensor_dim(cfnet_layer_param(l, 0), 2), 8);
        tu_rng r = {79};
        tu_fill_normal(cfnet_tensor_data(cfnet_layer_param(l, 1)), N, &r);
        cfnet_tensor *x = tu_tensor(5, xs, &r), *y = tu_output_for(l, B);
        CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
        if (M % 2) { /* odd maps: the centre is a pixel, slow_p4m with k = M applies */
            float ref[2 * 3 * 8];
            slow_p4m(cfnet_tensor_data(x), cfnet_tensor_data(cfnet_layer_param(l, 0)),
                     cfnet_tensor_data(cfnet_layer_param(l, 1)), ref, B, K, 8, M, N, M, 0, 1);
            double e = tu_max_rel_diff(cfnet_tensor_data(y), ref, B * N * 8);
            if (e > 1e-5) fail_msg("p4m projection vs slow reference, M = %d: %g", M, e);
        }
        /* Psi(T_a f)(n, a g) = Psi(f)(n, g), odd and even M */
        cfnet_tensor *xa = tu_tensor(5, xs, NULL), *ya = tu_output_for(l, B);
        for (int a = 1; a < 8; a++) {
            tu_d4_p4m(cfnet_tensor_data(x), cfnet_tensor_data(xa), B, K, M, a);
            CF_ASSERT_OK(cfnet_layer_forward(l, xa, ya, CFNET_MODE_INFERENCE));
            const float *y0 = cfnet_tensor_data(y), *y1 = cfnet_tensor_data(ya);
            for (int bn = 0; bn < B * N; bn++)
                for (int g = 0; g < 8; g++) {
                    float u = y1[bn * 8 + tu_d4_mul(a, g)], v = y0[bn * 8 + g];
                    if (fabsf(u - v) > 1e-5f * (1.0f + fabsf(v)))
                        fail_msg("p4m projection M = %d, a = %d, g = %d: %g vs %g", M, a, g,
                                 (double)u, (double)v);
                }
        }
        /* linear: differences agree to rounding; small inputs, zero bias (see check_grad) */
        CF_ASSERT_OK(cfnet_tensor_zero(cfnet_layer_param(l, 1)));
        for (int64_t i = 0; i < cfnet_tensor_numel(x); i++) cfnet_tensor_data(x)[i] *= 0.25f;
        double wp = 0, wx = tu_gradcheck(l, x, CFNET_MODE_TRAINING, 1e-2, 0, &wp);
        if (wx > 2e-3 || wp > 2e-3) fail_msg("p4m projection gradcheck: %g %g", wx, wp);
        cfnet_tensor_free(x);
        cfnet_tensor_free(xa);
        cfnet_tensor_free(y);
        cfnet_tensor_free(ya);
        int64_t bad[] = {K, 8, M, M};
        cfnet_layer *l2 = NULL;
        CF_ASSERT_OK(cfnet_layer_dft_projection_create(N, 2, CFNET_INTERP_NEAREST, &l2));
        CF_ASSERT_STATUS(cfnet_layer_setup(l2, 4, bad, 1), CFNET_E_SHAPE_MISMATCH);
        cfnet_layer_free(l2);
        cfnet_layer_free(l);
    }
}

/* An even final map (6 x 6): projection, batch norm, ReLU, the p4m head: invariant to all of D4. */
static void p4m_network_with_projection_head_is_invariant(void **state)
{
    (void)state;
    const int S = 12;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S, S, 3, &net));
    APPEND(net, cfnet_layer_p4m_lift_create(3, 3, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
    APPEND(net, cfnet_layer_p4m_conv_create(3, 3, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_dft_projection_create(4, 1, CFNET_INTERP_NEAREST, &l_));
    APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_p4m_dft_magnitude_create(&l_));
    APPEND(net, cfnet_layer_dense_create(3, &l_));
    int64_t xs[] = {3, 1, S, S};
    tu_rng r = {83};
    cfnet_tensor *x = tu_tensor(4, xs, &r);
    int32_t labels[3] = {0, 1, 2};
    CF_ASSERT_OK(cfnet_network_train_step(net, x, labels, 3, NULL));
    double e = -1;
    CF_ASSERT_OK(cfnet_network_invariance_ex(net, x, NULL, 0, CFNET_INVARIANCE_REFLECT, &e));
    if (!(e <= 1e-5)) fail_msg("p4m network with projection head: D4 change %g", e);
    cfnet_tensor_free(x);
    cfnet_network_free(net);
}

/* The summary keeps its columns when a kind name is longer than the usual column
 * (p4m_dft_magnitude has 17 characters): every layer line ends at the same place. */
static void summary_columns_stay_aligned_with_p4m_kinds(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 5, 5, 3, &net));
    APPEND(net, cfnet_layer_p4m_lift_create(2, 3, CFNET_PADDING_VALID, &l_));
    APPEND(net, cfnet_layer_p4m_conv_create(2, 3, CFNET_PADDING_VALID, &l_));
    APPEND(net, cfnet_layer_p4m_dft_magnitude_create(&l_));
    APPEND(net, cfnet_layer_dense_create(3, &l_));
    char buf[1024];
    CF_ASSERT_OK(cfnet_network_summary(net, buf, sizeof buf, NULL));
    assert_non_null(strstr(buf, "p4m_dft_magnitude "));
    /* lines 1 .. 4 are the layers (line 0 the input, line 5 the total) */
    const char *p = buf;
    size_t len0 = 0;
    for (int line = 0; *p; line++) {
        const char *e = strchr(p, '\n');
        assert_non_null(e);
        size_t len = (size_t)(e - p);
        if (line == 1) len0 = len;
        if (line >= 1 && line <= 4 && len != len0)
            fail_msg("summary line %d has %zu characters, line 1 has %zu:\n%s", line, len, len0,
                     buf);
        p = e + 1;
    }
    cfnet_network_free(net);
}

/* ---- shapes, names and bad arguments ---- */

static void p4m_shapes_names_and_bad_arguments(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_STATUS(cfnet_layer_p4m_lift_create(0, 3, CFNET_PADDING_SAME, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4m_conv_create(2, 4, CFNET_PADDING_SAME, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4m_conv_create(2, 3, (cfnet_padding)7, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4m_conv_create(2, 3, CFNET_PADDING_SAME, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4m_lift_create(INT32_MAX / 8 + 1, 3, CFNET_PADDING_SAME, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4m_dft_magnitude_create(NULL), CFNET_E_INVALID_ARGUMENT);

    CF_ASSERT_OK(cfnet_layer_p4m_conv_create(5, 3, CFNET_PADDING_VALID, &l));
    assert_int_equal(cfnet_layer_kind_of(l), CFNET_LAYER_P4M_CONV);
    assert_string_equal(cfnet_layer_kind_name(CFNET_LAYER_P4M_CONV), "p4m_conv");
    int64_t p4[] = {2, 4, 7, 7}, rect[] = {2, 8, 7, 6}, ok[] = {2, 8, 7, 7};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, p4, 1), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, rect, 1), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_OK(cfnet_layer_setup(l, 4, ok, 1));
    int nd;
    int64_t s[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, s));
    assert_int_equal(nd, 4);
    assert_int_equal(s[0], 5);
    assert_int_equal(s[1], 8);
    assert_int_equal(s[2], 5);
    cfnet_tensor *w = cfnet_layer_param(l, 0);
    assert_int_equal(cfnet_tensor_ndim(w), 5);
    assert_int_equal(cfnet_tensor_dim(w, 2), 8);
    cfnet_layer_free(l);

    CF_ASSERT_OK(cfnet_layer_p4m_lift_create(5, 3, CFNET_PADDING_SAME, &l));
    assert_int_equal(cfnet_layer_kind_of(l), CFNET_LAYER_P4M_LIFT);
    assert_string_equal(cfnet_layer_kind_name(CFNET_LAYER_P4M_LIFT), "p4m_lift");
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, ok, 1), CFNET_E_SHAPE_MISMATCH);
    int64_t planar[] = {2, 6, 6};
    CF_ASSERT_OK(cfnet_layer_setup(l, 3, planar, 1));
    CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, s));
    assert_int_equal(s[1], 8);
    assert_int_equal(s[2], 6);
    assert_int_equal(cfnet_tensor_ndim(cfnet_layer_param(l, 0)), 4);
    cfnet_layer_free(l);

    CF_ASSERT_OK(cfnet_layer_p4m_dft_magnitude_create(&l));
    assert_string_equal(cfnet_layer_kind_name(CFNET_LAYER_P4M_DFT_MAGNITUDE), "p4m_dft_magnitude");
    int64_t bad1[] = {3, 4}, bad2[] = {3, 8, 2, 2};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 2, bad1, 1), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, bad2, 1), CFNET_E_SHAPE_MISMATCH);
    cfnet_layer_free(l);

    CF_ASSERT_OK(cfnet_layer_group_pool_create(CFNET_POOL_MAX, &l));
    int64_t six[] = {2, 3, 4, 4};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, six, 1), CFNET_E_SHAPE_MISMATCH);
    cfnet_layer_free(l);
}

/* ---- whole networks: the invariance check with reflections ---- */


/* lift -> bn -> relu -> equivariant pool -> p4m_conv -> relu -> head -> dense, on S x S. The
 * head is p4m_conv down to 1 x 1 then p4m_dft_magnitude (dft = 1), or group pooling over D4
 * followed by a mean over the whole map (dft = 0). */
static cfnet_network *p4m_network(int S, int dft, uint64_t seed)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(2, S, S, seed, &net));
    APPEND(net, cfnet_layer_p4m_lift_create(4, 3, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
    int M = S % 2 ? (S - 3) / 2 + 1 : S / 2;
    APPEND(net, cfnet_layer_p4m_conv_create(3, 3, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    if (dft) {
        if (M % 2 == 0) { /* an odd map for the valid convolution to 1 x 1 */
            APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MEAN, 2, 1, &l_));
            M -= 1;
        }
        APPEND(net, cfnet_layer_p4m_conv_create(5, M, CFNET_PADDING_VALID, &l_));
        APPEND(net, cfnet_layer_p4m_dft_magnitude_create(&l_));
    } else {
        APPEND(net, cfnet_layer_group_pool_create(CFNET_POOL_MAX, &l_));
        APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MEAN, M, 1, &l_));
    }
    APPEND(net, cfnet_layer_dense_create(3, &l_));
    return net;
}

static void p4m_networks_are_invariant_to_rotations_and_reflections(void **state)
{
    (void)state;
    for (int S = 14; S <= 15; S++)
        for (int dft = 0; dft < 2; dft++) {
            cfnet_network *net = p4m_network(S, dft, 11);
            int64_t xs[] = {3, 2, S, S};
            tu_rng r = {71};
            cfnet_tensor *x = tu_tensor(4, xs, &r);
            /* a few training steps so that batch norm has non-trivial running statistics */
            int32_t labels[3] = {0, 1, 2};
            for (int i = 0; i < 3; i++)
                CF_ASSERT_OK(cfnet_network_train_step(net, x, labels, 3, NULL));
            double e = -1;
            CF_ASSERT_OK(cfnet_network_invariance_ex(net, x, NULL, 0, CFNET_INVARIANCE_REFLECT,
                                                     &e));
            if (!(e <= 1e-5)) fail_msg("p4m network S=%d dft=%d: D4 change %g", S, dft, e);
            double e0 = -1, e1 = -1;
            CF_ASSERT_OK(cfnet_network_invariance_ex(net, x, NULL, 0, 0, &e0));
            CF_ASSERT_OK(cfnet_network_invariance(net, x, NULL, 0, &e1));
            assert_true(e0 == e1);
            assert_true(e0 <= 1e-5);
            cfnet_tensor_free(x);
            cfnet_network_free(net);
        }
}

/* The check is not vacuous: a p4 network with the same structure is invariant to quarter turns
 * but not to the mirror, and the mirror alone (angles = {0}) is what it detects. */
static void reflection_check_detects_p4_networks(void **state)
{
    (void)state;
    const int S = 12;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S, S, 5, &net));
    APPEND(net, cfnet_layer_p4_lift_create(4, 3, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_p4_conv_create(4, 3, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_group_pool_create(CFNET_POOL_MAX, &l_));
    APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MEAN, S, 1, &l_));
    APPEND(net, cfnet_layer_dense_create(3, &l_));
    int64_t xs[] = {2, 1, S, S};
    tu_rng r = {73};
    cfnet_tensor *x = tu_tensor(4, xs, &r);
    double e = -1, zero = 0;
    CF_ASSERT_OK(cfnet_network_invariance(net, x, NULL, 0, &e));
    assert_true(e <= 1e-5);
    CF_ASSERT_OK(cfnet_network_invariance_ex(net, x, NULL, 0, CFNET_INVARIANCE_REFLECT, &e));
    if (!(e > 1e-3)) fail_msg("p4 network looks mirror-invariant: %g", e);
    CF_ASSERT_OK(cfnet_network_invariance_ex(net, x, &zero, 1, CFNET_INVARIANCE_REFLECT, &e));
    assert_true(e > 1e-3);
    CF_ASSERT_OK(cfnet_network_invariance_ex(net, x, &zero, 1, 0, &e));
    assert_true(e == 0.0);
    cfnet_tensor_free(x);
    cfnet_network_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(p4m_group_table_is_d4),
        cmocka_unit_test(p4m_lift_matches_slow_reference),
        cmocka_unit_test(p4m_conv_matches_slow_reference),
        cmocka_unit_test(p4m_lift_is_equivariant_under_all_of_d4),
        cmocka_unit_test(p4m_conv_is_equivariant_under_all_of_d4),
        cmocka_unit_test(p4m_restricted_to_rotations_is_p4),
        cmocka_unit_test(p4m_lift_gradients_match_finite_differences),
        cmocka_unit_test(p4m_conv_gradients_match_finite_differences),
        cmocka_unit_test(group_pool_over_d4_is_invariant_pooling),
        cmocka_unit_test(batch_norm_on_p4m_maps_is_equivariant),
        cmocka_unit_test(p4m_head_matches_the_definition),
        cmocka_unit_test(p4m_head_is_invariant_under_all_of_d4),
        cmocka_unit_test(p4m_head_gradients_match_finite_differences),
        cmocka_unit_test(dft_projection_from_p4m_maps),
        cmocka_unit_test(p4m_network_with_projection_head_is_invariant),
        cmocka_unit_test(summary_columns_stay_aligned_with_p4m_kinds),
        cmocka_unit_test(p4m_shapes_names_and_bad_arguments),
        cmocka_unit_test(p4m_networks_are_invariant_to_rotations_and_reflections),
        cmocka_unit_test(reflection_check_detects_p4_networks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
