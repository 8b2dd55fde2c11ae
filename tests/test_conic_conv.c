/* Conic convolution: an independent slow reference, exact quarter-turn equivariance, agreement
 * with standard convolution for rotation-symmetric filters, gradients, bad arguments. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double PI = 3.14159265358979323846;

static cfnet_layer *make_conic(int C, int S, int O, int k, int R, cfnet_padding pad,
                               cfnet_interp interp, uint64_t seed)
{
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_conic_conv_create(O, k, R, pad, interp, &l));
    int64_t in[] = {C, S, S};
    CF_ASSERT_OK(cfnet_layer_setup(l, 3, in, seed));
    tu_rng r = {seed + 100};
    tu_fill_normal(cfnet_tensor_data(cfnet_layer_param(l, 1)), O, &r);
    return l;
}

/* ---- the test's own geometry: cone weights straight from the definition (eq. 10). ---- */
static void cone_weights(int OS, int R, int i, int j, double *w /* 4R */)
{
    int nrot = 4 * R;
    double c = (OS - 1) / 2.0, u = j - c, v = c - i, D = PI / (2 * R);
    for (int r = 0; r < nrot; r++) w[r] = 0;
    if (u == 0 && v == 0) {
        for (int r = 0; r < nrot; r++) w[r] = 1.0 / nrot;
        return;
    }
    double th = atan2(v, u);
    if (th < 0) th += 2 * PI;
    double q = th / D;
    double rq = round(q);
    if (fabs(q - rq) < 1e-9) { /* on the ray between cones rq-1 and rq */
        int r0 = ((int)rq) % nrot;
        w[r0] += 0.5;
        w[(r0 + nrot - 1) % nrot] += 0.5;
    } else {
        w[(int)floor(q) % nrot] = 1.0;
    }
}

/* The test's own filter rotations: quarter turns by index permutation; 45 degrees on 3x3
 * (nearest) as a one-step shift of the 8-pixel ring. */
static void rot90_filter(const float *in, float *out, int k)
{
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) out[(k - 1 - j) * k + i] = in[i * k + j];
}

static void ring45(const float *in, float *out)
{
    const int ring[8] = {5, 2, 1, 0, 3, 6, 7, 8};
    out[4] = in[4];
    for (int m = 0; m < 8; m++) out[ring[m]] = in[ring[(m + 7) % 8]];
}

/* Rotated filter r of 4R for R = 1 (any k) or R = 2 (k = 3): plane by plane. */
static void ref_rotate_bank(const float *base, float *out, int planes, int k, int R, int r)
{
    int kk = k * k;
    float a[81], b[81];
    for (int p = 0; p < planes; p++) {
        memcpy(a, base + p * kk, (size_t)kk * sizeof(float));
        if (R == 2 && r % 2 == 1 && k == 3) { /* a 1x1 filter is unchanged */
            ring45(a, b);
            memcpy(a, b, sizeof a);
        }
        for (int q = 0; q < r / R; q++) {
            rot90_filter(a, b, k);
            memcpy(a, b, sizeof a);
        }
        memcpy(out + p * kk, a, (size_t)kk * sizeof(float));
    }
}

static void slow_conic(const float *x, const float *w, const float *bias, float *y, int n, int C,
                       int S, int O, int k, int R, int pad, int OS)
{
    int nrot = 4 * R, kk = k * k;
    float *banks = malloc((size_t)(nrot * O * C * kk) * sizeof *banks);
    for (int r = 0; r < nrot; r++)
        ref_rotate_bank(w, banks + r * O * C * kk, O * C, k, R, r);
    double wt[32];
    for (int s = 0; s < n; s++)
        for (int i = 0; i < OS; i++)
            for (int j = 0; j < OS; j++) {
                cone_weights(OS, R, i, j, wt);
                for (int o = 0; o < O; o++) {
                    double acc = bias[o];
                    for (int r = 0; r < nrot; r++) {
                        if (wt[r] == 0) continue;
                        const float *f = banks + (r * O + o) * C * kk;
                        double cor = 0;
                        for (int c = 0; c < C; c++)
                            for (int a = 0; a < k; a++)
                                for (int d = 0; d < k; d++) {
                                    int ii = i - pad + a, jj = j - pad + d;
                                    if (ii < 0 || ii >= S || jj < 0 || jj >= S) continue;
                                    cor += (double)x[((s * C + c) * S + ii) * S + jj] *
                                           f[(c * k + a) * k + d];
                                }
                        acc += wt[r] * cor;
                    }
                    y[((s * O + o) * OS + i) * OS + j] = (float)acc;
                }
            }
    free(banks);
}

static void check_slow(int C, int S, int O, int k, int R, cfnet_padding pad)
{
    cfnet_layer *l = make_conic(C, S, O, k, R, pad, CFNET_INTERP_NEAREST, 7);
    tu_rng g = {17};
    int64_t xs[] = {2, C, S, S};
    cfnet_tensor *x = tu_tensor(4, xs, &g), *y = tu_output_for(l, 2);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    int p = pad == CFNET_PADDING_SAME ? (k - 1) / 2 : 0, OS = S + 2 * p - k + 1;
    float *ref = malloc((size_t)cfnet_tensor_numel(y) * sizeof *ref);
    slow_conic(cfnet_tensor_data(x), cfnet_tensor_data(cfnet_layer_param(l, 0)),
               cfnet_tensor_data(cfnet_layer_param(l, 1)), ref, 2, C, S, O, k, R, p, OS);
    double e = tu_max_rel_diff(cfnet_tensor_data(y), ref, cfnet_tensor_numel(y));
    if (e > 1e-5) fail_msg("conic vs slow reference C=%d S=%d k=%d R=%d pad=%d: %g", C, S, k, R, pad, e);
    free(ref);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
}

/* Every pixel: inside a cone (its rotated filter), on a ray (mean of two), at the centre (mean
 * of all) — compared with the definition evaluated independently. */
static void conic_conv_matches_slow_reference(void **state)
{
    (void)state;
    for (int S = 6; S <= 9; S++) {
        check_slow(2, S, 3, 3, 1, CFNET_PADDING_SAME);
        check_slow(2, S, 3, 3, 1, CFNET_PADDING_VALID);
        check_slow(2, S, 3, 3, 2, CFNET_PADDING_SAME);
        check_slow(2, S, 3, 3, 2, CFNET_PADDING_VALID);
    }
    check_slow(3, 11, 2, 5, 1, CFNET_PADDING_SAME);
    check_slow(3, 10, 2, 5, 1, CFNET_PADDING_VALID);
    check_slow(1, 7, 2, 1, 1, CFNET_PADDING_VALID);
    check_slow(1, 8, 2, 1, 2, CFNET_PADDING_SAME);
}

/* Phi(rot90 x) == rot90 Phi(x) for every quarter turn, to float rounding (1e-5 relative). */
static void check_equivariance(int C, int S, int O, int k, int R, cfnet_padding pad,
                               cfnet_interp interp)
{
    cfnet_layer *l = make_conic(C, S, O, k, R, pad, interp, 3);
    tu_rng g = {29};
    int64_t xs[] = {2, C, S, S};
    cfnet_tensor *x = tu_tensor(4, xs, &g);
    for (int q = 1; q < 4; q++) {
        double e = tu_rot90_error(l, x, 0, 0, q, CFNET_MODE_INFERENCE);
        if (e > 1e-5)
            fail_msg("equivariance C=%d S=%d k=%d R=%d pad=%d interp=%d q=%d: %g", C, S, k, R,
                     pad, interp, q, e);
    }
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
}

static void conic_conv_commutes_with_rot90(void **state)
{
    (void)state;
    const int ks[] = {1, 3, 5};
    for (int R = 1; R <= 3; R++)
        for (int ki = 0; ki < 3; ki++)
            for (int pad = 0; pad < 2; pad++)
                for (int S = 10; S <= 11; S++)
                    check_equivariance(2, S, 3, ks[ki], R, (cfnet_padding)pad,
                                       CFNET_INTERP_NEAREST);
    check_equivariance(2, 12, 3, 5, 3, CFNET_PADDING_SAME, CFNET_INTERP_BILINEAR);
    check_equivariance(2, 9, 3, 3, 4, CFNET_PADDING_VALID, CFNET_INTERP_BILINEAR);
    check_equivariance(1, 7, 2, 7, 6, CFNET_PADDING_VALID, CFNET_INTERP_NEAREST);
    /* Steerable: the projection at r = 0 and the resampled rotations keep quarter turns exact. */
    for (int R = 1; R <= 4; R++)
        for (int pad = 0; pad < 2; pad++) {
            check_equivariance(2, 11, 3, 3, R, (cfnet_padding)pad, CFNET_INTERP_STEERABLE);
            check_equivariance(2, 12, 2, 5, R, (cfnet_padding)pad, CFNET_INTERP_STEERABLE);
        }
    check_equivariance(1, 9, 2, 7, 2, CFNET_PADDING_VALID, CFNET_INTERP_STEERABLE);
}

/* With filters that every rotation leaves unchanged, all cones use the same filter, so conic
 * convolution is a standard convolution. R = 1: four-fold symmetric filters (any k);
 * R = 2, nearest, k = 3: a constant ring around any centre. */
static void check_symmetric_equals_conv(int S, int k, int R, cfnet_padding pad)
{
    int C = 2, O = 3, kk = k * k;
    cfnet_layer *l = make_conic(C, S, O, k, R, pad, CFNET_INTERP_NEAREST, 5);
    cfnet_layer *cv = NULL;
    CF_ASSERT_OK(cfnet_layer_conv2d_create(O, k, 1, pad, &cv));
    int64_t in[] = {C, S, S};
    CF_ASSERT_OK(cfnet_layer_setup(cv, 3, in, 1));
    float *w = cfnet_tensor_data(cfnet_layer_param(l, 0));
    tu_rng g = {31};
    for (int p = 0; p < O * C; p++) {
        float *f = w + p * kk;
        if (R == 1) { /* average over the four quarter turns */
            float a[81], b[81], acc[81] = {0};
            tu_fill_normal(a, kk, &g);
            for (int q = 0; q < 4; q++) {
                for (int t = 0; t < kk; t++) acc[t] += a[t] / 4;
                rot90_filter(a, b, k);
                memcpy(a, b, sizeof a);
            }
            memcpy(f, acc, (size_t)kk * sizeof(float));
        } else {
            float ring = (float)tu_normal(&g);
            for (int t = 0; t < 9; t++) f[t] = ring;
            f[4] = (float)tu_normal(&g);
        }
    }
    CF_ASSERT_OK(cfnet_tensor_copy_in(cfnet_layer_param(cv, 0), w, O * C * kk));
    CF_ASSERT_OK(cfnet_tensor_copy_in(cfnet_layer_param(cv, 1),
                                      cfnet_tensor_data(cfnet_layer_param(l, 1)), O));
    int64_t xs[] = {2, C, S, S};
    cfnet_tensor *x = tu_tensor(4, xs, &g), *y1 = tu_output_for(l, 2), *y2 = tu_output_for(cv, 2);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y1, CFNET_MODE_INFERENCE));
    CF_ASSERT_OK(cfnet_layer_forward(cv, x, y2, CFNET_MODE_INFERENCE));
    double e = tu_max_rel_diff(cfnet_tensor_data(y1), cfnet_tensor_data(y2), cfnet_tensor_numel(y1));
    if (e > 1e-5) fail_msg("symmetric filters S=%d k=%d R=%d: %g", S, k, R, e);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y1);
    cfnet_tensor_free(y2);
    cfnet_layer_free(l);
    cfnet_layer_free(cv);
}

static void conic_conv_with_symmetric_filters_is_standard_conv(void **state)
{
    (void)state;
    check_symmetric_equals_conv(9, 3, 1, CFNET_PADDING_SAME);
    check_symmetric_equals_conv(10, 5, 1, CFNET_PADDING_VALID);
    check_symmetric_equals_conv(11, 3, 2, CFNET_PADDING_SAME);
    check_symmetric_equals_conv(8, 3, 2, CFNET_PADDING_VALID);
}

/* The layer is linear in x and in its parameters: central differences (h = 1e-2, float
 * forward) agree to rounding; tolerance 2e-3 relative. */
static void check_grad(int C, int S, int O, int k, int R, cfnet_padding pad, cfnet_interp interp)
{
    cfnet_layer *l = make_conic(C, S, O, k, R, pad, interp, 13);
    tu_rng g = {37};
    int64_t xs[] = {2, C, S, S};
    cfnet_tensor *x = tu_tensor(4, xs, &g);
    double wp = 0, wx = tu_gradcheck(l, x, CFNET_MODE_TRAINING, 1e-2, 0, &wp);
    if (wx > 2e-3 || wp > 2e-3)
        fail_msg("conic gradcheck S=%d k=%d R=%d pad=%d interp=%d: input %g params %g", S, k, R,
                 pad, interp, wx, wp);
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
}

static void conic_conv_gradients_match_finite_differences(void **state)
{
    (void)state;
    check_grad(2, 7, 2, 3, 1, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST);
    check_grad(2, 6, 2, 3, 1, CFNET_PADDING_VALID, CFNET_INTERP_NEAREST);
    check_grad(2, 7, 2, 3, 2, CFNET_PADDING_VALID, CFNET_INTERP_NEAREST);
    check_grad(2, 8, 2, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_BILINEAR);
    check_grad(1, 9, 2, 5, 3, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST);
    check_grad(2, 5, 2, 1, 2, CFNET_PADDING_VALID, CFNET_INTERP_NEAREST);
    check_grad(2, 7, 2, 3, 1, CFNET_PADDING_SAME, CFNET_INTERP_STEERABLE);
    check_grad(2, 8, 2, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_STEERABLE);
    check_grad(1, 9, 2, 5, 4, CFNET_PADDING_VALID, CFNET_INTERP_STEERABLE);
}

static void conic_conv_rejects_bad_configurations(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_STATUS(cfnet_layer_conic_conv_create(4, 4, 1, CFNET_PADDING_SAME,
                                                   CFNET_INTERP_NEAREST, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_conic_conv_create(4, 3, 0, CFNET_PADDING_SAME,
                                                   CFNET_INTERP_NEAREST, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_conic_conv_create(-1, 3, 1, CFNET_PADDING_SAME,
                                                   CFNET_INTERP_NEAREST, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_conic_conv_create(4, 3, 1, CFNET_PADDING_SAME,
                                                   (cfnet_interp)9, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_conic_conv_create(4, 23, 2, CFNET_PADDING_SAME,
                                                   CFNET_INTERP_STEERABLE, &l),
                     CFNET_E_LIMIT);
    /* R = 1 resamples nothing, so the steerable limit does not apply. */
    CF_ASSERT_OK(cfnet_layer_conic_conv_create(4, 23, 1, CFNET_PADDING_SAME,
                                               CFNET_INTERP_STEERABLE, &l));
    cfnet_layer_free(l);
    l = NULL;
    CF_ASSERT_STATUS(cfnet_layer_conic_conv_create(4, 3, 1, CFNET_PADDING_SAME,
                                                   CFNET_INTERP_NEAREST, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    assert_null(l);
    CF_ASSERT_OK(cfnet_layer_conic_conv_create(4, 3, 2, CFNET_PADDING_VALID,
                                               CFNET_INTERP_NEAREST, &l));
    int64_t rect[] = {3, 31, 30}, tiny[] = {3, 2, 2};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, rect, 0), CFNET_E_SHAPE_MISMATCH);
    assert_string_equal(cfnet_last_error(),
                        "conic_conv: input is 31x30, rotation layers need square maps");
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, tiny, 0), CFNET_E_SHAPE_MISMATCH);
    cfnet_layer_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conic_conv_matches_slow_reference),
        cmocka_unit_test(conic_conv_commutes_with_rot90),
        cmocka_unit_test(conic_conv_with_symmetric_filters_is_standard_conv),
        cmocka_unit_test(conic_conv_gradients_match_finite_differences),
        cmocka_unit_test(conic_conv_rejects_bad_configurations),
    };
    return cmocka_run_group_tests_name("conic_conv", tests, NULL, NULL);
}
