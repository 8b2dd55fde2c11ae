/* DFT projection layer: values against explicitly rotated filters, the p4 group convolution at
 * the centre, the circular shift by R under a quarter turn, invariance of projection -> magnitude,
 * gradients, parameter shapes and bad arguments. */
#include "testutil.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One counter-clockwise quarter turn applied q times to an M x M plane: the value at (i, j)
 * moves to (M-1-j, i). Written independently of the library's rotation code. */
static void rot_plane(const float *in, float *out, int M, int q)
{
    q = ((q % 4) + 4) % 4;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < M; j++) {
            int a = i, b = j;
            for (int k = 0; k < q; k++) {
                int na = M - 1 - b, nb = a;
                a = na;
                b = nb;
            }
            out[a * M + b] = in[i * M + j];
        }
}

typedef struct proj {
    cfnet_layer *l;
    int N, R, K, M;
    bool p4;
    int D; /* per-sample input size */
} proj;

/* Creates and sets up a projection layer; gives the bias random values so it is exercised. */
static proj make_proj(int N, int R, cfnet_interp interp, int K, int M, bool p4, uint64_t seed)
{
    proj p = {NULL, N, R, K, M, p4, K * (p4 ? 4 : 1) * M * M};
    CF_ASSERT_OK(cfnet_layer_dft_projection_create(N, R, interp, &p.l));
    int64_t s3[3] = {K, M, M}, s4[4] = {K, 4, M, M};
    CF_ASSERT_OK(p4 ? cfnet_layer_setup(p.l, 4, s4, seed) : cfnet_layer_setup(p.l, 3, s3, seed));
    assert_int_equal(cfnet_layer_param_count(p.l), 2);
    tu_rng r = {seed + 1000};
    tu_fill_normal(cfnet_tensor_data(cfnet_layer_param(p.l, 1)), N, &r);
    return p;
}

static cfnet_tensor *proj_input(const proj *p, int batch, tu_rng *r)
{
    int64_t s3[4] = {batch, p->K, p->M, p->M}, s4[5] = {batch, p->K, 4, p->M, p->M};
    return p->p4 ? tu_tensor(5, s4, r) : tu_tensor(4, s3, r);
}

/* Rotates an input batch by q quarter turns (spatially, and along the rotation axis for p4). */
static void rotate_input(const proj *p, const cfnet_tensor *x, cfnet_tensor *out, int q)
{
    int64_t b = cfnet_tensor_dim(x, 0);
    if (p->p4)
        tu_rot90_p4(cfnet_tensor_data(x), cfnet_tensor_data(out), b, p->K, p->M, q);
    else
        tu_rot90_planes(cfnet_tensor_data(x), cfnet_tensor_data(out), b * p->K, p->M, q);
}

static cfnet_tensor *run(const proj *p, cfnet_tensor *x)
{
    cfnet_tensor *y = tu_output_for(p->l, cfnet_tensor_dim(x, 0));
    CF_ASSERT_OK(cfnet_layer_forward(p->l, x, y, CFNET_MODE_INFERENCE));
    return y;
}

/* Fails unless max |y - ref| <= tol * max |ref| over the entries where ref is not NaN. */
static void expect_close(const float *y, const double *ref, int count, double tol,
                         const char *what)
{
    double md = 0, mr = 0;
    for (int i = 0; i < count; i++) {
        if (isnan(ref[i])) continue; /* not compared */
        md = fmax(md, fabs(y[i] - ref[i]));
        mr = fmax(mr, fabs(ref[i]));
    }
    if (!(md <= tol * mr)) fail_msg("%s: max error %g of %g", what, md, mr);
}

static void planar_projection_matches_explicitly_rotated_filters(void **state)
{
    (void)state;
    static const struct { int M, R; cfnet_interp interp; } cases[] = {
        {3, 1, CFNET_INTERP_NEAREST}, {4, 2, CFNET_INTERP_BILINEAR}, {5, 3, CFNET_INTERP_NEAREST},
        {4, 3, CFNET_INTERP_NEAREST}, {2, 2, CFNET_INTERP_BILINEAR}, {1, 2, CFNET_INTERP_NEAREST},
    };
    const int N = 3, K = 2, B = 2;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int M = cases[c].M, R = cases[c].R, MM = M * M, G = 4 * R;
        proj p = make_proj(N, R, cases[c].interp, K, M, false, 40 + c);
        int nd;
        int64_t os[CFNET_MAX_DIMS];
        CF_ASSERT_OK(cfnet_layer_output_shape(p.l, &nd, os));
        assert_int_equal(nd, 2);
        assert_int_equal(os[0], N);
        assert_int_equal(os[1], G);
        tu_rng r = {c + 1};
        cfnet_tensor *x = proj_input(&p, B, &r), *y = run(&p, x);
        const float *W = cfnet_tensor_data(cfnet_layer_param(p.l, 0)),
                    *b = cfnet_tensor_data(cfnet_layer_param(p.l, 1)), *xd = cfnet_tensor_data(x);
        double *ref = malloc((size_t)(B * N * G) * sizeof *ref);
        float *rot = malloc((size_t)MM * sizeof *rot);
        assert_true(ref && rot);
        for (int s = 0; s < B; s++)
            for (int n = 0; n < N; n++)
                for (int g = 0; g < G; g++) {
                    double v = NAN; /* only r = q R, the quarter turns, have an exact reference */
                    if (g % R == 0) {
                        v = b[n];
                        for (int k = 0; k < K; k++) {
                            rot_plane(W + (n * K + k) * MM, rot, M, g / R);
                            for (int t = 0; t < MM; t++)
                                v += (double)rot[t] * xd[(s * K + k) * MM + t];
                        }
                    }
                    ref[(s * N + n) * G + g] = v;
                }
        char what[64];
        snprintf(what, sizeof what, "M=%d R=%d", M, R);
        expect_close(cfnet_tensor_data(y), ref, B * N * G, 1e-5, what);
        free(ref);
        free(rot);
        cfnet_tensor_free(x);
        cfnet_tensor_free(y);
        cfnet_layer_free(p.l);
    }
}

/* The 45-degree outputs (rotation g = 1 of R = 2) of an M x M projection with K input channels
 * against the filter whose tap t is tap src[t] of phi (0 where src[t] < 0), in double; the other
 * rotations are not checked. */
static void check_45_degree_taps(int M, int K, const int *src, uint64_t seed, const char *what)
{
    const int N = 2, R = 2, B = 2, MM = M * M;
    proj p = make_proj(N, R, CFNET_INTERP_NEAREST, K, M, false, seed);
    tu_rng r = {seed};
    cfnet_tensor *x = proj_input(&p, B, &r), *y = run(&p, x);
    const float *W = cfnet_tensor_data(cfnet_layer_param(p.l, 0)),
                *b = cfnet_tensor_data(cfnet_layer_param(p.l, 1)), *xd = cfnet_tensor_data(x);
    double ref[2 * 2 * 8];
    for (int s = 0; s < B; s++)
        for (int n = 0; n < N; n++)
            for (int g = 0; g < 8; g++) {
                double v = NAN;
                if (g == 1) { /* 45 degrees */
                    v = b[n];
                    for (int k = 0; k < K; k++)
                        for (int t = 0; t < MM; t++)
                            if (src[t] >= 0)
                                v += (double)W[(n * K + k) * MM + src[t]] * xd[(s * K + k) * MM + t];
                }
                ref[(s * N + n) * 8 + g] = v;
            }
    expect_close(cfnet_tensor_data(y), ref, B * N * 8, 1e-5, what);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_layer_free(p.l);
}

/* docs/conventions.md: for k = 3 and 45 degrees, nearest-neighbour rotation shifts the 8-pixel ring
 * by one position counter-clockwise (the centre stays). */
static void nearest_45_degree_projection_shifts_3x3_ring_by_one(void **state)
{
    (void)state;
    /* Ring in counter-clockwise order starting at the right-middle pixel. */
    static const int ring[8] = {5, 2, 1, 0, 3, 6, 7, 8};
    int src[9];
    src[4] = 4;
    for (int a = 0; a < 8; a++) src[ring[(a + 1) % 8]] = ring[a];
    check_45_degree_taps(3, 3, src, 9, "3x3 at 45 degrees");
}

/* docs/conventions.md: on the half-integer offsets of an even map, nearest-neighbour rotation by
 * 45 degrees leaves the four central taps in place (a coordinate that snaps to 0 keeps its sign);
 * the outer ring is resampled and its corners left empty. The table follows from the definition
 * there (computed independently of the library). */
static void nearest_45_degree_projection_on_4x4_keeps_central_taps(void **state)
{
    (void)state;
    /* src[t]: the tap of phi that lands on tap t of the 45-degree filter, -1 for none. */
    static const int src[16] = {-1, 2, 7, -1, 1, 5, 6, 11, 4, 9, 10, 14, -1, 8, 13, -1};
    check_45_degree_taps(4, 2, src, 19, "4x4 at 45 degrees");
}

static void p4_projection_is_group_convolution_at_centre(void **state)
{
    (void)state;
    const int N = 3, K = 2, B = 2;
    for (int M = 1; M <= 4; M++) {
        int MM = M * M;
        proj p = make_proj(N, 1, CFNET_INTERP_BILINEAR, K, M, true, 70 + M);
        int nd;
        int64_t os[CFNET_MAX_DIMS];
        CF_ASSERT_OK(cfnet_layer_output_shape(p.l, &nd, os));
        assert_int_equal(nd, 2);
        assert_int_equal(os[0], N);
        assert_int_equal(os[1], 4);
        tu_rng r = {M};
        cfnet_tensor *x = proj_input(&p, B, &r), *y = run(&p, x);
        const float *W = cfnet_tensor_data(cfnet_layer_param(p.l, 0)),
                    *b = cfnet_tensor_data(cfnet_layer_param(p.l, 1)), *xd = cfnet_tensor_data(x);
        double ref[2 * 3 * 4];
        float *rot = malloc((size_t)MM * sizeof *rot);
        assert_non_null(rot);
        /* Psi(n, r) = sum_{c,s,z} f[c, s, z] (rot90^r phi_n)[c, (s - r) mod 4, z] + b_n */
        for (int s = 0; s < B; s++)
            for (int n = 0; n < N; n++)
                for (int g = 0; g < 4; g++) {
                    double v = b[n];
                    for (int c = 0; c < K; c++)
                        for (int t4 = 0; t4 < 4; t4++) {
                            rot_plane(W + ((n * K + c) * 4 + (t4 - g + 4) % 4) * MM, rot, M, g);
                            for (int t = 0; t < MM; t++)
                                v += (double)rot[t] * xd[((s * K + c) * 4 + t4) * MM + t];
                        }
                    ref[(s * N + n) * 4 + g] = v;
                }
        char what[32];
        snprintf(what, sizeof what, "p4 M=%d", M);
        expect_close(cfnet_tensor_data(y), ref, B * N * 4, 1e-5, what);
        free(rot);
        cfnet_tensor_free(x);
        cfnet_tensor_free(y);
        cfnet_layer_free(p.l);
    }
}

/* The configurations the rotation tests run through: planar M odd and even, R = 1, 2, 3, both
 * interpolations, and p4 input. */
static const struct { int M, R; cfnet_interp interp; bool p4; } rot_cases[] = {
    {3, 1, CFNET_INTERP_NEAREST, false},  {4, 1, CFNET_INTERP_BILINEAR, false},
    {3, 2, CFNET_INTERP_NEAREST, false},  {4, 2, CFNET_INTERP_NEAREST, false},
    {5, 2, CFNET_INTERP_BILINEAR, false}, {4, 2, CFNET_INTERP_BILINEAR, false},
    {5, 3, CFNET_INTERP_NEAREST, false},  {6, 3, CFNET_INTERP_BILINEAR, false},
    {5, 2, CFNET_INTERP_STEERABLE, false}, {4, 2, CFNET_INTERP_STEERABLE, false},
    {3, 1, CFNET_INTERP_STEERABLE, false}, {6, 3, CFNET_INTERP_STEERABLE, false},
    {3, 1, CFNET_INTERP_NEAREST, true},   {4, 1, CFNET_INTERP_NEAREST, true},
};
#define N_ROT_CASES ((int)(sizeof rot_cases / sizeof rot_cases[0]))

/* Psi(rot90^q f)(n, r) = Psi(f)(n, r - q R mod 4R): the property behind the invariance. */
static void quarter_turn_of_input_shifts_projection_by_R(void **state)
{
    (void)state;
    const int N = 3, K = 2, B = 2;
    for (int c = 0; c < N_ROT_CASES; c++) {
        int R = rot_cases[c].R, G = 4 * R;
        proj p = make_proj(N, R, rot_cases[c].interp, K, rot_cases[c].M, rot_cases[c].p4, c);
        tu_rng r = {200 + c};
        cfnet_tensor *x = proj_input(&p, B, &r), *xr = proj_input(&p, B, NULL);
        cfnet_tensor *y = run(&p, x);
        const float *yd = cfnet_tensor_data(y);
        float *shifted = malloc((size_t)(B * N * G) * sizeof *shifted);
        assert_non_null(shifted);
        for (int q = 1; q < 4; q++) {
            rotate_input(&p, x, xr, q);
            cfnet_tensor *yr = run(&p, xr);
            for (int sn = 0; sn < B * N; sn++)
                for (int g = 0; g < G; g++) shifted[sn * G + (g + q * R) % G] = yd[sn * G + g];
            double e = tu_max_rel_diff(cfnet_tensor_data(yr), shifted, B * N * G);
            if (!(e <= 1e-5))
                fail_msg("case %d (M=%d R=%d p4=%d) q=%d: %g", c, rot_cases[c].M, R,
                         rot_cases[c].p4, q, e);
            cfnet_tensor_free(yr);
        }
        free(shifted);
        cfnet_tensor_free(x);
        cfnet_tensor_free(xr);
        cfnet_tensor_free(y);
        cfnet_layer_free(p.l);
    }
}

/* |DFT2(Psi)| does not change when the input turns by a multiple of 90 degrees. */
static void projection_then_magnitude_is_invariant_to_quarter_turns(void **state)
{
    (void)state;
    const int N = 4, K = 3, B = 2;
    for (int c = 0; c < N_ROT_CASES; c++) {
        int R = rot_cases[c].R, G = 4 * R;
        proj p = make_proj(N, R, rot_cases[c].interp, K, rot_cases[c].M, rot_cases[c].p4, 5 + c);
        cfnet_layer *mag = NULL;
        CF_ASSERT_OK(cfnet_layer_dft_magnitude_create(&mag));
        int64_t ms[2] = {N, G};
        CF_ASSERT_OK(cfnet_layer_setup(mag, 2, ms, 0));
        tu_rng r = {300 + c};
        cfnet_tensor *x = proj_input(&p, B, &r), *xr = proj_input(&p, B, NULL);
        cfnet_tensor *psi = run(&p, x), *m = tu_output_for(mag, B), *mr = tu_output_for(mag, B);
        CF_ASSERT_OK(cfnet_layer_forward(mag, psi, m, CFNET_MODE_INFERENCE));
        for (int q = 1; q < 4; q++) {
            rotate_input(&p, x, xr, q);
            cfnet_tensor *psir = run(&p, xr);
            CF_ASSERT_OK(cfnet_layer_forward(mag, psir, mr, CFNET_MODE_INFERENCE));
            double e = tu_max_rel_diff(cfnet_tensor_data(mr), cfnet_tensor_data(m), B * N * G);
            if (!(e <= 1e-5))
                fail_msg("case %d (M=%d R=%d p4=%d) q=%d: %g", c, rot_cases[c].M, R,
                         rot_cases[c].p4, q, e);
            /* and the projection itself did change (the invariance is not trivial) */
            assert_true(tu_max_rel_diff(cfnet_tensor_data(psir), cfnet_tensor_data(psi),
                                        B * N * G) > 1e-3);
            cfnet_tensor_free(psir);
        }
        cfnet_tensor_free(x);
        cfnet_tensor_free(xr);
        cfnet_tensor_free(psi);
        cfnet_tensor_free(m);
        cfnet_tensor_free(mr);
        cfnet_layer_free(mag);
        cfnet_layer_free(p.l);
    }
}

static void projection_gradients_match_finite_differences(void **state)
{
    (void)state;
    const int N = 2, K = 2, B = 2;
    int runs = 0;
    for (int pass = 0; pass < 2; pass++) {
        bool p4 = pass == 1;
        for (int M = p4 ? 2 : 3; M <= (p4 ? 3 : 5); M++)
            for (int R = 1; R <= (p4 ? 1 : 3); R++)
                for (int ip = 0; ip < 3; ip++) {
                    proj p = make_proj(N, R, (cfnet_interp)ip, K, M, p4, 500 + runs);
                    tu_rng r = {600 + runs};
                    cfnet_tensor *x = proj_input(&p, B, &r);
                    /* Tolerance: the layer is linear in each input and parameter coordinate, so
                     * central differences have no truncation error and a large step h = 0.5
                     * keeps float rounding of the forward (~1e-6 relative) small against 2h;
                     * the loss and the differences are accumulated in double. Components far
                     * below the largest are compared against 1e-2 of it (tu_gradcheck), which
                     * lifts the relative error to at most ~6e-5 observed. */
                    double wp = 0, e = tu_gradcheck(p.l, x, CFNET_MODE_TRAINING, 0.5, 0, &wp);
                    if (!(e < 5e-4 && wp < 5e-4))
                        fail_msg("M=%d R=%d interp=%d p4=%d: dx %g, params %g", M, R, ip, p4, e,
                                 wp);
                    cfnet_tensor_free(x);
                    cfnet_layer_free(p.l);
                    runs++;
                }
    }
    assert_int_equal(runs, 3 * 3 * 3 + 2 * 3);
}

/* The gradient check above starts from zeroed gradients; this checks that parameter gradients
 * accumulate and that the bias gradient is the sum of dPsi over the batch and the rotations. */
static void projection_parameter_gradients_accumulate(void **state)
{
    (void)state;
    const int N = 2, R = 2, G = 8, B = 3;
    proj p = make_proj(N, R, CFNET_INTERP_NEAREST, 2, 3, false, 3);
    tu_rng r = {4};
    cfnet_tensor *x = proj_input(&p, B, &r), *y = run(&p, x), *dy = tu_output_for(p.l, B);
    tu_fill_normal(cfnet_tensor_data(dy), B * N * G, &r);
    CF_ASSERT_OK(cfnet_layer_zero_grad(p.l));
    CF_ASSERT_OK(cfnet_layer_forward(p.l, x, y, CFNET_MODE_TRAINING));
    CF_ASSERT_OK(cfnet_layer_backward(p.l, x, y, dy, NULL));
    cfnet_tensor *gw = cfnet_layer_grad(p.l, 0), *gb = cfnet_layer_grad(p.l, 1);
    int64_t nw = cfnet_tensor_numel(gw);
    float *once = malloc((size_t)nw * sizeof *once);
    assert_non_null(once);
    memcpy(once, cfnet_tensor_data(gw), (size_t)nw * sizeof *once);
    const float *dyd = cfnet_tensor_data(dy);
    for (int n = 0; n < N; n++) {
        double s = 0;
        for (int b = 0; b < B; b++)
            for (int g = 0; g < G; g++) s += dyd[(b * N + n) * G + g];
        assert_float_equal(cfnet_tensor_data(gb)[n], s, 1e-5);
    }
    CF_ASSERT_OK(cfnet_layer_backward(p.l, x, y, dy, NULL));
    for (int64_t i = 0; i < nw; i++)
        assert_float_equal(cfnet_tensor_data(gw)[i], 2.0f * once[i], 1e-5f * (1 + fabsf(once[i])));
    for (int n = 0; n < N; n++) {
        double s = 0;
        for (int b = 0; b < B; b++)
            for (int g = 0; g < G; g++) s += dyd[(b * N + n) * G + g];
        assert_float_equal(cfnet_tensor_data(gb)[n], 2.0 * s, 1e-5);
    }
    free(once);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_tensor_free(dy);
    cfnet_layer_free(p.l);
}

/* cfnet_layer_backward follows the most recent forward in either mode: after an inference
 * forward (its rotated bank is the layer's cache, not the workspace) and after the weights
 * changed since an earlier training forward, dx and the gradients are those of a training
 * forward with the current weights, bit for bit. */
static void backward_after_inference_forward_uses_current_weights(void **state)
{
    (void)state;
    const int N = 2, K = 2, B = 3;
    const struct { int M, R, G; } cases[] = {{4, 2, 1}, {5, 3, 1}, {3, 1, 4}, {3, 1, 8}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int M = cases[c].M, R = cases[c].R, G = cases[c].G;
        int64_t s3[3] = {K, M, M}, s4[4] = {K, G, M, M};
        cfnet_layer *l[2];
        for (int i = 0; i < 2; i++) {
            CF_ASSERT_OK(cfnet_layer_dft_projection_create(N, R, CFNET_INTERP_BILINEAR, &l[i]));
            CF_ASSERT_OK(G == 1 ? cfnet_layer_setup(l[i], 3, s3, 7) : cfnet_layer_setup(l[i], 4, s4, 7));
        }
        tu_rng r = {70 + c};
        int64_t xs[5] = {B, K, G, M, M}, x3[4] = {B, K, M, M};
        cfnet_tensor *x = G == 1 ? tu_tensor(4, x3, &r) : tu_tensor(5, xs, &r);
        cfnet_tensor *y0 = tu_output_for(l[0], B), *y1 = tu_output_for(l[1], B);
        cfnet_tensor *dy = tu_output_for(l[0], B);
        tu_fill_normal(cfnet_tensor_data(dy), cfnet_tensor_numel(dy), &r);
        cfnet_tensor *dx0 = tu_tensor(G == 1 ? 4 : 5, G == 1 ? x3 : xs, &r);
        cfnet_tensor *dx1 = tu_tensor(G == 1 ? 4 : 5, G == 1 ? x3 : xs, &r);
        /* Layer 0: a training forward and backward with the initial weights, then new weights
         * and an inference forward. Layer 1: the new weights, a training forward. */
        CF_ASSERT_OK(cfnet_layer_forward(l[0], x, y0, CFNET_MODE_TRAINING));
        CF_ASSERT_OK(cfnet_layer_backward(l[0], x, y0, dy, dx0));
        cfnet_tensor *w0 = cfnet_layer_param(l[0], 0), *w1 = cfnet_layer_param(l[1], 0);
        tu_fill_normal(cfnet_tensor_data(w0), cfnet_tensor_numel(w0), &r);
        memcpy(cfnet_tensor_data(w1), cfnet_tensor_data(w0),
               (size_t)cfnet_tensor_numel(w0) * sizeof(float));
        CF_ASSERT_OK(cfnet_layer_zero_grad(l[0]));
        CF_ASSERT_OK(cfnet_layer_forward(l[0], x, y0, CFNET_MODE_INFERENCE));
        CF_ASSERT_OK(cfnet_layer_backward(l[0], x, y0, dy, dx0));
        CF_ASSERT_OK(cfnet_layer_forward(l[1], x, y1, CFNET_MODE_TRAINING));
        CF_ASSERT_OK(cfnet_layer_backward(l[1], x, y1, dy, dx1));
        assert_memory_equal(cfnet_tensor_data(y0), cfnet_tensor_data(y1),
                            (size_t)cfnet_tensor_numel(y0) * sizeof(float));
        assert_memory_equal(cfnet_tensor_data(dx0), cfnet_tensor_data(dx1),
                            (size_t)cfnet_tensor_numel(dx0) * sizeof(float));
        for (int i = 0; i < 2; i++)
            assert_memory_equal(cfnet_tensor_data(cfnet_layer_grad(l[0], i)),
                                cfnet_tensor_data(cfnet_layer_grad(l[1], i)),
                                (size_t)cfnet_tensor_numel(cfnet_layer_grad(l[0], i)) *
                                    sizeof(float));
        /* A fresh layer whose only forward was an inference one. */
        cfnet_layer *f;
        CF_ASSERT_OK(cfnet_layer_dft_projection_create(N, R, CFNET_INTERP_BILINEAR, &f));
        CF_ASSERT_OK(G == 1 ? cfnet_layer_setup(f, 3, s3, 7) : cfnet_layer_setup(f, 4, s4, 7));
        memcpy(cfnet_tensor_data(cfnet_layer_param(f, 0)), cfnet_tensor_data(w0),
               (size_t)cfnet_tensor_numel(w0) * sizeof(float));
        CF_ASSERT_OK(cfnet_layer_forward(f, x, y0, CFNET_MODE_INFERENCE));
        CF_ASSERT_OK(cfnet_layer_backward(f, x, y0, dy, dx0));
        assert_memory_equal(cfnet_tensor_data(dx0), cfnet_tensor_data(dx1),
                            (size_t)cfnet_tensor_numel(dx0) * sizeof(float));
        assert_memory_equal(cfnet_tensor_data(cfnet_layer_grad(f, 0)),
                            cfnet_tensor_data(cfnet_layer_grad(l[1], 0)),
                            (size_t)cfnet_tensor_numel(w0) * sizeof(float));
        cfnet_layer_free(f);
        cfnet_tensor_free(x);
        cfnet_tensor_free(y0);
        cfnet_tensor_free(y1);
        cfnet_tensor_free(dy);
        cfnet_tensor_free(dx0);
        cfnet_tensor_free(dx1);
        for (int i = 0; i < 2; i++) cfnet_layer_free(l[i]);
    }
}

static void projection_parameters_have_documented_shapes_and_init(void **state)
{
    (void)state;
    const int N = 16, K = 4, M = 8;
    for (int pass = 0; pass < 2; pass++) {
        bool p4 = pass == 1;
        proj p = {NULL, N, 1, K, M, p4, 0};
        CF_ASSERT_OK(cfnet_layer_dft_projection_create(N, 1, CFNET_INTERP_NEAREST, &p.l));
        assert_int_equal(cfnet_layer_kind_of(p.l), CFNET_LAYER_DFT_PROJECTION);
        int64_t s3[3] = {K, M, M}, s4[4] = {K, 4, M, M};
        CF_ASSERT_OK(p4 ? cfnet_layer_setup(p.l, 4, s4, 1) : cfnet_layer_setup(p.l, 3, s3, 1));
        assert_string_equal(cfnet_layer_param_name(p.l, 0), "weight");
        assert_string_equal(cfnet_layer_param_name(p.l, 1), "bias");
        cfnet_tensor *w = cfnet_layer_param(p.l, 0), *b = cfnet_layer_param(p.l, 1);
        int nd;
        int64_t ws[CFNET_MAX_DIMS];
        CF_ASSERT_OK(cfnet_tensor_shape(w, &nd, ws));
        int64_t expect4[4] = {N, K, M, M}, expect5[5] = {N, K, 4, M, M};
        assert_int_equal(nd, p4 ? 5 : 4);
        assert_memory_equal(ws, p4 ? expect5 : expect4, (size_t)nd * sizeof *ws);
        assert_int_equal(cfnet_tensor_ndim(b), 1);
        assert_int_equal(cfnet_tensor_dim(b, 0), N);
        for (int i = 0; i < N; i++) assert_true(cfnet_tensor_data(b)[i] == 0.0f);
        /* He initialisation: standard deviation sqrt(2 / fan_in), fan_in = K M M (x 4 for p4). */
        double fan = (double)K * M * M * (p4 ? 4 : 1), ss = 0;
        int64_t nw = cfnet_tensor_numel(w);
        const float *wd = cfnet_tensor_data(w);
        for (int64_t i = 0; i < nw; i++) ss += (double)wd[i] * wd[i];
        double sd = sqrt(ss / (double)nw), want = sqrt(2.0 / fan);
        if (fabs(sd / want - 1.0) > 0.05)
            fail_msg("p4=%d: weight sd %g, expected %g", p4, sd, want);
        cfnet_layer_free(p.l);
    }
}

static void projection_rejects_bad_arguments_and_shapes(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_STATUS(cfnet_layer_dft_projection_create(4, 1, CFNET_INTERP_NEAREST, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_dft_projection_create(0, 1, CFNET_INTERP_NEAREST, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "dft_projection: filters is 0"));
    CF_ASSERT_STATUS(cfnet_layer_dft_projection_create(-3, 1, CFNET_INTERP_NEAREST, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_dft_projection_create(4, 0, CFNET_INTERP_NEAREST, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "dft_projection: R is 0"));
    CF_ASSERT_STATUS(cfnet_layer_dft_projection_create(4, 1, (cfnet_interp)3, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "dft_projection: interp is 3"));
    CF_ASSERT_STATUS(cfnet_layer_dft_projection_create(4, 1, (cfnet_interp)-1, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_dft_projection_create(1 << 20, 1 << 20, CFNET_INTERP_NEAREST, &l),
                     CFNET_E_LIMIT);
    assert_null(l);

    CF_ASSERT_OK(cfnet_layer_dft_projection_create(4, 2, CFNET_INTERP_BILINEAR, &l));
    int64_t nonsq[3] = {4, 5, 6};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, nonsq, 0), CFNET_E_SHAPE_MISMATCH);
    assert_non_null(strstr(cfnet_last_error(),
                           "dft_projection: input is 4x5x6, rotation layers need square maps"));
    int64_t p4[4] = {2, 4, 3, 3};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, p4, 0), CFNET_E_SHAPE_MISMATCH); /* R = 2 */
    assert_non_null(strstr(cfnet_last_error(), "R must be 1"));
    int64_t rank2[2] = {3, 3}, rank1[1] = {9};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 2, rank2, 0), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 1, rank1, 0), CFNET_E_SHAPE_MISMATCH);
    cfnet_layer_free(l);

    /* Steerable maps are dense: maps larger than 21 x 21 are refused at setup (R >= 2). */
    CF_ASSERT_OK(cfnet_layer_dft_projection_create(2, 2, CFNET_INTERP_STEERABLE, &l));
    int64_t big[3] = {1, 22, 22}, ok[3] = {1, 12, 12};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, big, 0), CFNET_E_LIMIT);
    assert_non_null(strstr(cfnet_last_error(), "up to 21x21"));
    CF_ASSERT_OK(cfnet_layer_setup(l, 3, ok, 0));
    cfnet_layer_free(l);

    CF_ASSERT_OK(cfnet_layer_dft_projection_create(4, 1, CFNET_INTERP_NEAREST, &l));
    int64_t g3[4] = {2, 3, 3, 3}, p4ns[4] = {2, 4, 3, 4};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, g3, 0), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, p4ns, 0), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_OK(cfnet_layer_setup(l, 4, p4, 0)); /* R = 1 takes p4 input */
    cfnet_layer_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(planar_projection_matches_explicitly_rotated_filters),
        cmocka_unit_test(nearest_45_degree_projection_shifts_3x3_ring_by_one),
        cmocka_unit_test(nearest_45_degree_projection_on_4x4_keeps_central_taps),
        cmocka_unit_test(p4_projection_is_group_convolution_at_centre),
        cmocka_unit_test(quarter_turn_of_input_shifts_projection_by_R),
        cmocka_unit_test(projection_then_magnitude_is_invariant_to_quarter_turns),
        cmocka_unit_test(projection_gradients_match_finite_differences),
        cmocka_unit_test(projection_parameter_gradients_accumulate),
        cmocka_unit_test(backward_after_inference_forward_uses_current_weights),
        cmocka_unit_test(projection_parameters_have_documented_shapes_and_init),
        cmocka_unit_test(projection_rejects_bad_arguments_and_shapes),
    };
    return cmocka_run_group_tests_name("dft_projection", tests, NULL, NULL);
}
