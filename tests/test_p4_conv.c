/* p4 lifting and group convolution: independent slow references, exact equivariance to quarter
 * turns, gradients, batch blocking, a lift -> group conv -> rotation-mean composition, shapes
 * and initialisation, bad arguments. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the test's own rotations: one counter-clockwise quarter turn moves (i, j) to
 * (k-1-j, i). ---- */
static void rot90_filter(const float *in, float *out, int k)
{
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) out[(k - 1 - j) * k + i] = in[i * k + j];
}

static void rotate_filter(const float *in, float *out, int k, int quarter)
{
    float a[81], b[81];
    memcpy(a, in, (size_t)(k * k) * sizeof(float));
    for (int q = 0; q < quarter; q++) {
        rot90_filter(a, b, k);
        memcpy(a, b, (size_t)(k * k) * sizeof(float));
    }
    memcpy(out, a, (size_t)(k * k) * sizeof(float));
}

static int out_size(int S, int k, cfnet_padding pad)
{
    return pad == CFNET_PADDING_SAME ? S : S - k + 1;
}

/* Lifting, straight from the definition:
 * y[n, o, r, i, j] = b[o] + sum_{c, a, d} x[n, c, i - p + a, j - p + d] (rot90^r w[o, c])[a, d]. */
static void slow_lift(const float *x, const float *w, const float *b, float *y, int n, int C,
                      int S, int O, int k, int p, int OS)
{
    int kk = k * k;
    float *rw = malloc((size_t)(4 * O * C * kk) * sizeof *rw); /* [r][o][c] */
    assert_non_null(rw);
    for (int r = 0; r < 4; r++)
        for (int o = 0; o < O; o++)
            for (int c = 0; c < C; c++)
                rotate_filter(w + (o * C + c) * kk, rw + ((r * O + o) * C + c) * kk, k, r);
    for (int s = 0; s < n; s++)
        for (int o = 0; o < O; o++)
            for (int r = 0; r < 4; r++)
                for (int i = 0; i < OS; i++)
                    for (int j = 0; j < OS; j++) {
                        double acc = b[o];
                        for (int c = 0; c < C; c++) {
                            const float *f = rw + ((r * O + o) * C + c) * kk;
                            for (int a = 0; a < k; a++)
                                for (int d = 0; d < k; d++) {
                                    int ii = i - p + a, jj = j - p + d;
                                    if (ii < 0 || ii >= S || jj < 0 || jj >= S) continue;
                                    acc += (double)x[((s * C + c) * S + ii) * S + jj] *
                                           f[a * k + d];
                                }
                        }
                        y[(((s * O + o) * 4 + r) * OS + i) * OS + j] = (float)acc;
                    }
    free(rw);
}

/* Group convolution, straight from the definition:
 * y[n, o, r, i, j] = b[o] + sum_{c, g, a, d} x[n, c, g, i - p + a, j - p + d]
 *                                            (rot90^r w[o, c, (g - r) mod 4])[a, d]. */
static void slow_group(const float *x, const float *w, const float *b, float *y, int n, int C,
                       int S, int O, int k, int p, int OS)
{
    int kk = k * k;
    float *rw = malloc((size_t)(16 * O * C * kk) * sizeof *rw); /* [r][o][c][g] */
    assert_non_null(rw);
    for (int r = 0; r < 4; r++)
        for (int o = 0; o < O; o++)
            for (int c = 0; c < C; c++)
                for (int g = 0; g < 4; g++)
                    rotate_filter(w + ((o * C + c) * 4 + (g - r + 4) % 4) * kk,
                                  rw + (((r * O + o) * C + c) * 4 + g) * kk, k, r);
    for (int s = 0; s < n; s++)
        for (int o = 0; o < O; o++)
            for (int r = 0; r < 4; r++)
                for (int i = 0; i < OS; i++)
                    for (int j = 0; j < OS; j++) {
                        double acc = b[o];
                        for (int c = 0; c < C; c++)
                            for (int g = 0; g < 4; g++) {
                                const float *f = rw + (((r * O + o) * C + c) * 4 + g) * kk;
                                for (int a = 0; a < k; a++)
                                    for (int d = 0; d < k; d++) {
                                        int ii = i - p + a, jj = j - p + d;
                                        if (ii < 0 || ii >= S || jj < 0 || jj >= S) continue;
                                        acc += (double)x[(((s * C + c) * 4 + g) * S + ii) * S +
                                                         jj] *
                                               f[a * k + d];
                                    }
                            }
                        y[(((s * O + o) * 4 + r) * OS + i) * OS + j] = (float)acc;
                    }
    free(rw);
}

/* A set-up layer with random (non-zero) biases. group = 0: lifting, 1: group convolution. */
static cfnet_layer *make_layer(int group, int C, int S, int O, int k, cfnet_padding pad,
                               uint64_t seed)
{
    cfnet_layer *l = NULL;
    if (group) {
        CF_ASSERT_OK(cfnet_layer_p4_conv_create(O, k, pad, &l));
        int64_t in[] = {C, 4, S, S};
        CF_ASSERT_OK(cfnet_layer_setup(l, 4, in, seed));
    } else {
        CF_ASSERT_OK(cfnet_layer_p4_lift_create(O, k, pad, &l));
        int64_t in[] = {C, S, S};
        CF_ASSERT_OK(cfnet_layer_setup(l, 3, in, seed));
    }
    tu_rng r = {seed + 100};
    tu_fill_normal(cfnet_tensor_data(cfnet_layer_param(l, 1)), O, &r);
    return l;
}

/* Random input batch for a layer made by make_layer. */
static cfnet_tensor *make_input(int group, int64_t n, int C, int S, tu_rng *r)
{
    if (group) {
        int64_t xs[] = {n, C, 4, S, S};
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
    assert_int_equal(cfnet_tensor_numel(y), 2 * O * 4 * OS * OS);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
    float *ref = malloc((size_t)cfnet_tensor_numel(y) * sizeof *ref);
    assert_non_null(ref);
    (group ? slow_group : slow_lift)(cfnet_tensor_data(x),
                                     cfnet_tensor_data(cfnet_layer_param(l, 0)),
                                     cfnet_tensor_data(cfnet_layer_param(l, 1)), ref, 2, C, S, O,
                                     k, p, OS);
    double e = tu_max_rel_diff(cfnet_tensor_data(y), ref, cfnet_tensor_numel(y));
    if (e > 1e-5)
        fail_msg("%s vs slow reference C=%d S=%d O=%d k=%d pad=%d: %g",
                 group ? "p4_conv" : "p4_lift", C, S, O, k, pad, e);
    free(ref);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
}

static void p4_lift_matches_slow_reference(void **state)
{
    (void)state;
    const int ks[] = {1, 3, 5};
    for (int ki = 0; ki < 3; ki++)
        for (int S = 6; S <= 7; S++) {
            check_slow(0, 3, S, 2, ks[ki], CFNET_PADDING_VALID);
            check_slow(0, 3, S, 2, ks[ki], CFNET_PADDING_SAME);
        }
    check_slow(0, 1, 9, 5, 3, CFNET_PADDING_SAME);
}

static void p4_conv_matches_slow_reference(void **state)
{
    (void)state;
    const int ks[] = {1, 3, 5};
    for (int ki = 0; ki < 3; ki++)
        for (int S = 6; S <= 7; S++) {
            check_slow(1, 2, S, 3, ks[ki], CFNET_PADDING_VALID);
            check_slow(1, 2, S, 3, ks[ki], CFNET_PADDING_SAME);
        }
    check_slow(1, 1, 8, 1, 3, CFNET_PADDING_SAME);
}

/* Lifting: layer(rot^q x) == rot^q of the output, rotation axis shifted by +q.
 * Group conv: the same with the p4 rotation of the input. Exact up to float rounding (the
 * GEMM sums the same products in a different order): 1e-5 relative. */
static void check_equivariance(int group, int C, int S, int O, int k, cfnet_padding pad)
{
    cfnet_layer *l = make_layer(group, C, S, O, k, pad, 3);
    tu_rng g = {29};
    cfnet_tensor *x = make_input(group, 2, C, S, &g), *y = tu_output_for(l, 2);
    assert_int_equal(cfnet_tensor_dim(y, 3), out_size(S, k, pad));
    for (int q = 1; q < 4; q++) {
        double e = tu_rot90_error(l, x, group, 1, q, CFNET_MODE_INFERENCE);
        if (e > 1e-5)
            fail_msg("%s equivariance C=%d S=%d k=%d pad=%d q=%d: %g",
                     group ? "p4_conv" : "p4_lift", C, S, k, pad, q, e);
    }
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(l);
}

static void p4_lift_output_rotates_and_shifts_with_rotated_input(void **state)
{
    (void)state;
    const int ks[] = {1, 3, 5};
    for (int ki = 0; ki < 3; ki++)
        for (int pad = 0; pad < 2; pad++)
            for (int S = 10; S <= 11; S++) check_equivariance(0, 2, S, 3, ks[ki], (cfnet_padding)pad);
}

static void p4_conv_commutes_with_p4_rotation(void **state)
{
    (void)state;
    const int ks[] = {1, 3, 5};
    for (int ki = 0; ki < 3; ki++)
        for (int pad = 0; pad < 2; pad++)
            for (int S = 10; S <= 11; S++) check_equivariance(1, 2, S, 3, ks[ki], (cfnet_padding)pad);
}

/* Both layers are linear in x and in their parameters, so central differences (h = 1e-2) have
 * no truncation error and agree to rounding: tolerance 2e-3 relative, for input, weight and
 * bias. What remains is the float rounding of the outputs a perturbation touches (about 1e-7 of
 * |y| each, divided by 2h), so inputs are drawn with standard deviation 1/4 and the biases keep
 * their initial zero (the bias gradient does not depend on the bias): that keeps |y| small
 * against the input gradient, whose entries are O(|w|). The adjoint test below checks the same
 * gradients to 1e-5 without differences. */
static void check_grad(int group, int C, int S, int O, int k, cfnet_padding pad)
{
    cfnet_layer *l = make_layer(group, C, S, O, k, pad, 13);
    CF_ASSERT_OK(cfnet_tensor_zero(cfnet_layer_param(l, 1)));
    tu_rng g = {37};
    cfnet_tensor *x = make_input(group, 2, C, S, &g);
    float *xd = cfnet_tensor_data(x);
    for (int64_t i = 0; i < cfnet_tensor_numel(x); i++) xd[i] *= 0.25f;
    double wp = 0, wx = tu_gradcheck(l, x, CFNET_MODE_TRAINING, 1e-2, 0, &wp);
    if (wx > 2e-3 || wp > 2e-3)
        fail_msg("%s gradcheck C=%d S=%d k=%d pad=%d: input %g params %g",
                 group ? "p4_conv" : "p4_lift", C, S, k, pad, wx, wp);
    cfnet_tensor_free(x);
    cfnet_layer_free(l);
}

static double dot(const float *a, const float *b, int64_t n, double *abs_sum)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)a[i] * b[i];
        if (abs_sum) *abs_sum += fabs((double)a[i] * b[i]);
    }
    return s;
}

/* y = A(w) x + b is linear in (x, b) and in (w, b), so for any dy
 *   <dy, y> = <dx, x> + <db, b> = <dw, w> + <db, b>
 * with dx, dw, db from backward: an exact identity, checked to 1e-5 of sum |dy y|. */
static void check_adjoint(int group, int C, int S, int O, int k, cfnet_padding pad)
{
    cfnet_layer *l = make_layer(group, C, S, O, k, pad, 61);
    tu_rng g = {67};
    cfnet_tensor *x = make_input(group, 3, C, S, &g), *dx = make_input(group, 3, C, S, NULL);
    cfnet_tensor *y = tu_output_for(l, 3), *dy = tu_output_for(l, 3);
    tu_fill_normal(cfnet_tensor_data(dy), cfnet_tensor_numel(dy), &g);
    CF_ASSERT_OK(cfnet_layer_zero_grad(l));
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
    cfnet_tensor *w = cfnet_layer_param(l, 0), *b = cfnet_layer_param(l, 1);
    double mag = 0;
    double lhs = dot(cfnet_tensor_data(dy), cfnet_tensor_data(y), cfnet_tensor_numel(y), &mag);
    double bterm = dot(cfnet_tensor_data(cfnet_layer_grad(l, 1)), cfnet_tensor_data(b), O, NULL);
    double via_x = dot(cfnet_tensor_data(dx), cfnet_tensor_data(x), cfnet_tensor_numel(x), NULL);
    double via_w = dot(cfnet_tensor_data(cfnet_layer_grad(l, 0)), cfnet_tensor_data(w),
                       cfnet_tensor_numel(w), NULL);
    double ex = fabs(lhs - via_x - bterm) / mag, ew = fabs(lhs - via_w - bterm) / mag;
    if (ex > 1e-5 || ew > 1e-5)
        fail_msg("%s adjoint C=%d S=%d k=%d pad=%d: via dx %g via dw %g",
                 group ? "p4_conv" : "p4_lift", C, S, k, pad, ex, ew);
    cfnet_tensor_free(x);
    cfnet_tensor_free(dx);
    cfnet_tensor_free(y);
    cfnet_tensor_free(dy);
    cfnet_layer_free(l);
}

static void p4_backward_is_the_adjoint_of_forward(void **state)
{
    (void)state;
    const int ks[] = {1, 3, 5};
    for (int group = 0; group < 2; group++)
        for (int ki = 0; ki < 3; ki++)
            for (int pad = 0; pad < 2; pad++)
                for (int S = 8; S <= 9; S++)
                    check_adjoint(group, 3, S, 2, ks[ki], (cfnet_padding)pad);
}

static void p4_lift_gradients_match_finite_differences(void **state)
{
    (void)state;
    check_grad(0, 2, 7, 2, 3, CFNET_PADDING_SAME);
    check_grad(0, 2, 6, 2, 3, CFNET_PADDING_VALID);
    check_grad(0, 2, 7, 2, 3, CFNET_PADDING_VALID);
    check_grad(0, 2, 6, 2, 3, CFNET_PADDING_SAME);
    check_grad(0, 1, 8, 2, 5, CFNET_PADDING_SAME);
    check_grad(0, 3, 5, 2, 1, CFNET_PADDING_VALID);
}

static void p4_conv_gradients_match_finite_differences(void **state)
{
    (void)state;
    check_grad(1, 2, 7, 2, 3, CFNET_PADDING_SAME);
    check_grad(1, 2, 6, 2, 3, CFNET_PADDING_VALID);
    check_grad(1, 2, 7, 2, 3, CFNET_PADDING_VALID);
    check_grad(1, 2, 6, 2, 3, CFNET_PADDING_SAME);
    check_grad(1, 1, 7, 2, 5, CFNET_PADDING_SAME);
    check_grad(1, 2, 5, 2, 1, CFNET_PADDING_VALID);
}

/* Mean over the rotation axis of an n x C x 4 x S x S map. */
static void rotation_mean(const float *in, float *out, int64_t nc, int64_t S)
{
    for (int64_t b = 0; b < nc; b++)
        for (int64_t t = 0; t < S * S; t++) {
            double s = 0;
            for (int r = 0; r < 4; r++) s += in[(b * 4 + r) * S * S + t];
            out[b * S * S + t] = (float)(s / 4);
        }
}

/* x -> mean_r p4_conv(p4_lift(x)): a planar map that rotates with a rotated planar input. */
static void check_composition(int S, cfnet_padding lift_pad, cfnet_padding conv_pad)
{
    int C = 2, O1 = 3, O2 = 2, n = 2;
    cfnet_layer *lift = make_layer(0, C, S, O1, 3, lift_pad, 41);
    int S1 = out_size(S, 3, lift_pad);
    cfnet_layer *conv = make_layer(1, O1, S1, O2, 3, conv_pad, 43);
    int64_t S2 = out_size(S1, 3, conv_pad);
    tu_rng g = {47};
    cfnet_tensor *x = make_input(0, n, C, S, &g), *xr = make_input(0, n, C, S, NULL);
    cfnet_tensor *h = tu_output_for(lift, n), *y = tu_output_for(conv, n);
    int64_t planar = n * O2 * S2 * S2;
    float *m = malloc((size_t)planar * sizeof *m), *mr = malloc((size_t)planar * sizeof *mr),
          *rm = malloc((size_t)planar * sizeof *rm);
    assert_true(m && mr && rm);
    CF_ASSERT_OK(cfnet_layer_forward(lift, x, h, CFNET_MODE_INFERENCE));
    CF_ASSERT_OK(cfnet_layer_forward(conv, h, y, CFNET_MODE_INFERENCE));
    rotation_mean(cfnet_tensor_data(y), m, n * O2, S2);
    for (int q = 1; q < 4; q++) {
        tu_rot90_planes(cfnet_tensor_data(x), cfnet_tensor_data(xr), n * C, S, q);
        CF_ASSERT_OK(cfnet_layer_forward(lift, xr, h, CFNET_MODE_INFERENCE));
        CF_ASSERT_OK(cfnet_layer_forward(conv, h, y, CFNET_MODE_INFERENCE));
        rotation_mean(cfnet_tensor_data(y), mr, n * O2, S2);
        tu_rot90_planes(m, rm, n * O2, S2, q);
        double e = tu_max_rel_diff(mr, rm, planar);
        if (e > 1e-5)
            fail_msg("lift -> p4_conv -> mean S=%d pads %d/%d q=%d: %g", S, lift_pad, conv_pad,
                     q, e);
    }
    free(m);
    free(mr);
    free(rm);
    cfnet_tensor_free(x);
    cfnet_tensor_free(xr);
    cfnet_tensor_free(h);
    cfnet_tensor_free(y);
    cfnet_layer_free(lift);
    cfnet_layer_free(conv);
}

static void p4_lift_then_conv_then_rotation_mean_commutes_with_rot90(void **state)
{
    (void)state;
    check_composition(9, CFNET_PADDING_VALID, CFNET_PADDING_SAME);
    check_composition(10, CFNET_PADDING_SAME, CFNET_PADDING_VALID);
    check_composition(11, CFNET_PADDING_VALID, CFNET_PADDING_VALID);
    check_composition(8, CFNET_PADDING_SAME, CFNET_PADDING_SAME);
}

/* 16 samples of 32 planes 32x32 with k = 3 span more than one of the engine's column blocks
 * (about 16 MiB): forward, dx and the accumulated parameter gradients of the batch must equal
 * those of the samples run one at a time. Tolerance 1e-5 relative for outputs and dx (the same
 * sums, possibly in another order), 1e-4 for parameter gradients (sums over 16 samples). */
static void p4_conv_batch_blocks_agree_with_single_samples(void **state)
{
    (void)state;
    const int n = 16, C = 8, S = 32, O = 2;
    cfnet_layer *l = make_layer(1, C, S, O, 3, CFNET_PADDING_SAME, 5);
    tu_rng g = {53};
    cfnet_tensor *x = make_input(1, n, C, S, &g), *x1 = make_input(1, 1, C, S, NULL);
    cfnet_tensor *y = tu_output_for(l, n), *y1 = tu_output_for(l, 1);
    cfnet_tensor *dy = tu_output_for(l, n), *dy1 = tu_output_for(l, 1);
    cfnet_tensor *dx = make_input(1, n, C, S, NULL), *dx1 = make_input(1, 1, C, S, NULL);
    tu_fill_normal(cfnet_tensor_data(dy), cfnet_tensor_numel(dy), &g);
    int64_t in1 = cfnet_tensor_numel(x1), out1 = cfnet_tensor_numel(y1);
    int64_t nw = cfnet_tensor_numel(cfnet_layer_param(l, 0));
    float *gw = calloc((size_t)nw, sizeof *gw), *gb = calloc((size_t)O, sizeof *gb);
    float *yref = malloc((size_t)(n * out1) * sizeof *yref);
    float *dxref = malloc((size_t)(n * in1) * sizeof *dxref);
    assert_true(gw && gb && yref && dxref);

    CF_ASSERT_OK(cfnet_layer_zero_grad(l));
    for (int s = 0; s < n; s++) {
        memcpy(cfnet_tensor_data(x1), cfnet_tensor_data(x) + s * in1, (size_t)in1 * sizeof(float));
        memcpy(cfnet_tensor_data(dy1), cfnet_tensor_data(dy) + s * out1,
               (size_t)out1 * sizeof(float));
        CF_ASSERT_OK(cfnet_layer_forward(l, x1, y1, CFNET_MODE_TRAINING));
        CF_ASSERT_OK(cfnet_layer_backward(l, x1, y1, dy1, dx1));
        memcpy(yref + s * out1, cfnet_tensor_data(y1), (size_t)out1 * sizeof(float));
        memcpy(dxref + s * in1, cfnet_tensor_data(dx1), (size_t)in1 * sizeof(float));
    }
    memcpy(gw, cfnet_tensor_data(cfnet_layer_grad(l, 0)), (size_t)nw * sizeof(float));
    memcpy(gb, cfnet_tensor_data(cfnet_layer_grad(l, 1)), (size_t)O * sizeof(float));

    CF_ASSERT_OK(cfnet_layer_zero_grad(l));
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
    CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx));
    double ey = tu_max_rel_diff(cfnet_tensor_data(y), yref, n * out1);
    double ex = tu_max_rel_diff(cfnet_tensor_data(dx), dxref, n * in1);
    double ew = tu_max_rel_diff(cfnet_tensor_data(cfnet_layer_grad(l, 0)), gw, nw);
    double eb = tu_max_rel_diff(cfnet_tensor_data(cfnet_layer_grad(l, 1)), gb, O);
    if (ey > 1e-5 || ex > 1e-5 || ew > 1e-4 || eb > 1e-4)
        fail_msg("batch vs single samples: y %g dx %g dw %g db %g", ey, ex, ew, eb);

    free(gw);
    free(gb);
    free(yref);
    free(dxref);
    cfnet_tensor_free(x);
    cfnet_tensor_free(x1);
    cfnet_tensor_free(y);
    cfnet_tensor_free(y1);
    cfnet_tensor_free(dy);
    cfnet_tensor_free(dy1);
    cfnet_tensor_free(dx);
    cfnet_tensor_free(dx1);
    cfnet_layer_free(l);
}

/* Backward adds to the parameter gradients: two identical backward passes give twice one. */
static void p4_parameter_gradients_accumulate(void **state)
{
    (void)state;
    for (int group = 0; group < 2; group++) {
        cfnet_layer *l = make_layer(group, 2, 7, 3, 3, CFNET_PADDING_SAME, 9);
        tu_rng g = {59};
        cfnet_tensor *x = make_input(group, 2, 2, 7, &g), *y = tu_output_for(l, 2),
                     *dy = tu_output_for(l, 2);
        tu_fill_normal(cfnet_tensor_data(dy), cfnet_tensor_numel(dy), &g);
        float once[2][3 * 2 * 4 * 9];
        CF_ASSERT_OK(cfnet_layer_zero_grad(l));
        CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_TRAINING));
        CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, NULL));
        for (int p = 0; p < 2; p++) {
            cfnet_tensor *gt = cfnet_layer_grad(l, p);
            memcpy(once[p], cfnet_tensor_data(gt), (size_t)cfnet_tensor_numel(gt) * sizeof(float));
        }
        CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, NULL));
        for (int p = 0; p < 2; p++) {
            cfnet_tensor *gt = cfnet_layer_grad(l, p);
            const float *d = cfnet_tensor_data(gt);
            double worst = 0, big = 0;
            for (int64_t i = 0; i < cfnet_tensor_numel(gt); i++) {
                worst = fmax(worst, fabs(d[i] - 2.0 * once[p][i]));
                big = fmax(big, fabs(once[p][i]));
            }
            assert_true(big > 0);
            if (worst > 1e-6 * big) fail_msg("%s param %d: not accumulated (%g)",
                                             group ? "p4_conv" : "p4_lift", p, worst / big);
        }
        cfnet_tensor_free(x);
        cfnet_tensor_free(y);
        cfnet_tensor_free(dy);
        cfnet_layer_free(l);
    }
}

static void assert_shape(const cfnet_tensor *t, int ndim, const int64_t *shape)
{
    int nd;
    int64_t s[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_tensor_shape(t, &nd, s));
    assert_int_equal(nd, ndim);
    for (int i = 0; i < ndim; i++) assert_int_equal(s[i], shape[i]);
}

/* Sample standard deviation of the weights against He's sqrt(2 / fan_in); with thousands of
 * samples it is within 5 % (a wrong fan-in, e.g. C k k instead of 4 C k k, is off by 41 %). */
static void assert_he(const cfnet_tensor *w, double fan_in)
{
    const float *d = cfnet_tensor_data(w);
    int64_t n = cfnet_tensor_numel(w);
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)d[i] * d[i];
    double sd = sqrt(ss / (double)n), want = sqrt(2.0 / fan_in);
    if (fabs(sd / want - 1) > 0.05) fail_msg("weight sd %g, He wants %g", sd, want);
}

static void p4_layers_have_documented_shapes_and_init(void **state)
{
    (void)state;
    const int C = 6, S = 9, O = 40, k = 3;
    int nd;
    int64_t os[CFNET_MAX_DIMS];
    cfnet_layer *l = NULL;

    CF_ASSERT_OK(cfnet_layer_p4_lift_create(O, k, CFNET_PADDING_VALID, &l));
    assert_int_equal(cfnet_layer_kind_of(l), CFNET_LAYER_P4_LIFT);
    assert_string_equal(cfnet_layer_kind_name(cfnet_layer_kind_of(l)), "p4_lift");
    int64_t in3[] = {C, S, S};
    CF_ASSERT_OK(cfnet_layer_setup(l, 3, in3, 11));
    CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, os));
    int64_t want_out[] = {O, 4, S - k + 1, S - k + 1};
    assert_int_equal(nd, 4);
    for (int i = 0; i < 4; i++) assert_int_equal(os[i], want_out[i]);
    assert_int_equal(cfnet_layer_param_count(l), 2);
    assert_string_equal(cfnet_layer_param_name(l, 0), "weight");
    assert_string_equal(cfnet_layer_param_name(l, 1), "bias");
    int64_t lw[] = {O, C, k, k}, bs[] = {O};
    assert_shape(cfnet_layer_param(l, 0), 4, lw);
    assert_shape(cfnet_layer_param(l, 1), 1, bs);
    assert_he(cfnet_layer_param(l, 0), C * k * k);
    for (int o = 0; o < O; o++)
        assert_true(cfnet_tensor_data(cfnet_layer_param(l, 1))[o] == 0.0f);
    cfnet_layer_free(l);

    l = NULL;
    CF_ASSERT_OK(cfnet_layer_p4_conv_create(O, k, CFNET_PADDING_SAME, &l));
    assert_int_equal(cfnet_layer_kind_of(l), CFNET_LAYER_P4_CONV);
    assert_string_equal(cfnet_layer_kind_name(cfnet_layer_kind_of(l)), "p4_conv");
    int64_t in4[] = {C, 4, S, S};
    CF_ASSERT_OK(cfnet_layer_setup(l, 4, in4, 11));
    CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, os));
    int64_t want_out2[] = {O, 4, S, S};
    assert_int_equal(nd, 4);
    for (int i = 0; i < 4; i++) assert_int_equal(os[i], want_out2[i]);
    int64_t gw[] = {O, C, 4, k, k};
    assert_shape(cfnet_layer_param(l, 0), 5, gw);
    assert_shape(cfnet_layer_param(l, 1), 1, bs);
    assert_he(cfnet_layer_param(l, 0), 4 * C * k * k);
    for (int o = 0; o < O; o++)
        assert_true(cfnet_tensor_data(cfnet_layer_param(l, 1))[o] == 0.0f);
    cfnet_layer_free(l);
}

static void p4_layers_reject_bad_configurations(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_STATUS(cfnet_layer_p4_lift_create(4, 3, CFNET_PADDING_SAME, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4_conv_create(4, 3, CFNET_PADDING_SAME, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4_lift_create(4, 4, CFNET_PADDING_SAME, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_string_equal(cfnet_last_error(), "p4_lift: kernel is 4, must be odd and in 1..63");
    CF_ASSERT_STATUS(cfnet_layer_p4_conv_create(4, 2, CFNET_PADDING_VALID, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4_conv_create(4, 65, CFNET_PADDING_VALID, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4_lift_create(4, -1, CFNET_PADDING_VALID, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4_lift_create(0, 3, CFNET_PADDING_SAME, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4_conv_create(0, 3, CFNET_PADDING_SAME, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_string_equal(cfnet_last_error(), "p4_conv: out_channels is 0, must be in 1..536870911");
    CF_ASSERT_STATUS(cfnet_layer_p4_lift_create(4, 3, (cfnet_padding)7, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4_conv_create(4, 3, (cfnet_padding)-1, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_null(l);

    /* Lifting: square planar maps only; the kernel must fit with valid padding. */
    CF_ASSERT_OK(cfnet_layer_p4_lift_create(4, 5, CFNET_PADDING_VALID, &l));
    int64_t rect[] = {3, 31, 30}, tiny[] = {3, 4, 4}, p4in[] = {3, 4, 9, 9};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, rect, 0), CFNET_E_SHAPE_MISMATCH);
    assert_string_equal(cfnet_last_error(),
                        "p4_lift: input is 31x30, rotation layers need square maps");
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, tiny, 0), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, p4in, 0), CFNET_E_SHAPE_MISMATCH);
    int nd;
    int64_t os[CFNET_MAX_DIMS];
    CF_ASSERT_STATUS(cfnet_layer_output_shape(l, &nd, os), CFNET_E_STATE); /* still not set up */
    cfnet_layer_free(l);

    /* Group conv: C x 4 x S x S only. */
    l = NULL;
    CF_ASSERT_OK(cfnet_layer_p4_conv_create(4, 5, CFNET_PADDING_VALID, &l));
    int64_t planar[] = {3, 9, 9}, not4[] = {3, 3, 9, 9}, rect4[] = {3, 4, 9, 8},
            tiny4[] = {3, 4, 4, 4};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, planar, 0), CFNET_E_SHAPE_MISMATCH);
    assert_string_equal(cfnet_last_error(), "p4_conv: input is 3x9x9, needs C x 4 x S x S");
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, not4, 0), CFNET_E_SHAPE_MISMATCH);
    assert_string_equal(cfnet_last_error(), "p4_conv: input is 3x3x9x9, needs C x 4 x S x S");
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, rect4, 0), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, tiny4, 0), CFNET_E_SHAPE_MISMATCH);
    /* A C x 4 x S x S input that the kernel fits is accepted. */
    CF_ASSERT_OK(cfnet_layer_setup(l, 4, p4in, 0));
    cfnet_layer_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(p4_lift_matches_slow_reference),
        cmocka_unit_test(p4_conv_matches_slow_reference),
        cmocka_unit_test(p4_lift_output_rotates_and_shifts_with_rotated_input),
        cmocka_unit_test(p4_conv_commutes_with_p4_rotation),
        cmocka_unit_test(p4_lift_gradients_match_finite_differences),
        cmocka_unit_test(p4_conv_gradients_match_finite_differences),
        cmocka_unit_test(p4_backward_is_the_adjoint_of_forward),
        cmocka_unit_test(p4_lift_then_conv_then_rotation_mean_commutes_with_rot90),
        cmocka_unit_test(p4_conv_batch_blocks_agree_with_single_samples),
        cmocka_unit_test(p4_parameter_gradients_accumulate),
        cmocka_unit_test(p4_layers_have_documented_shapes_and_init),
        cmocka_unit_test(p4_layers_reject_bad_configurations),
    };
    return cmocka_run_group_tests_name("p4_conv", tests, NULL, NULL);
}
