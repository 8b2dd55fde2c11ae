/* Image helpers: rotation (exact quarter turns, bilinear otherwise), shift, percentile stretch,
 * and their argument checks. */
#include "testutil.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846

static float *copy_of(const cfnet_tensor *t)
{
    size_t bytes = (size_t)cfnet_tensor_numel(t) * sizeof(float);
    float *c = malloc(bytes);
    assert_non_null(c);
    memcpy(c, cfnet_tensor_data(t), bytes);
    return c;
}

/* ------------------------------------------------------------------------------------------ */
/* Rotation                                                                                   */

static void rotate_quarter_turns_equal_rot90_exactly(void **state)
{
    (void)state;
    static const struct {
        double deg;
        int q;
    } cases[] = {{90, 1}, {180, 2}, {270, 3}, {-90, 3}, {450, 1}, {-180, 2}, {-630, 1},
                 {720, 0}, {360, 0}, {-360, 0}};
    tu_rng g = {7};
    for (int64_t S = 4; S <= 7; S++) { /* even and odd sizes */
        int64_t shape[] = {2, 3, S, S};
        cfnet_tensor *in = tu_tensor(4, shape, &g), *out = tu_tensor(4, shape, NULL);
        float *ref = malloc((size_t)(6 * S * S) * sizeof(float));
        assert_non_null(ref);
        /* Non-finite values are moved, never mixed: resampling would smear them (inf * 1e-17). */
        float *x = cfnet_tensor_data(in);
        x[1] = INFINITY;
        x[S * S + 2] = -INFINITY;
        x[3 * S * S + S + 1] = NAN;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            CF_ASSERT_OK(cfnet_image_rotate(in, out, cases[c].deg));
            tu_rot90_planes(cfnet_tensor_data(in), ref, 6, S, cases[c].q);
            assert_memory_equal(cfnet_tensor_data(out), ref, (size_t)(6 * S * S) * sizeof(float));
        }
        free(ref);
        cfnet_tensor_free(in);
        cfnet_tensor_free(out);
    }
}

static void rotate_by_zero_is_identity(void **state)
{
    (void)state;
    tu_rng g = {8};
    int64_t shape[] = {3, 9, 9};
    cfnet_tensor *in = tu_tensor(3, shape, &g), *out = tu_tensor(3, shape, NULL);
    CF_ASSERT_OK(cfnet_image_rotate(in, out, 0.0));
    assert_memory_equal(cfnet_tensor_data(out), cfnet_tensor_data(in), 243 * sizeof(float));
    CF_ASSERT_OK(cfnet_tensor_fill(out, 5.0f));
    CF_ASSERT_OK(cfnet_image_rotate(in, out, -0.0));
    assert_memory_equal(cfnet_tensor_data(out), cfnet_tensor_data(in), 243 * sizeof(float));
    cfnet_tensor_free(in);
    cfnet_tensor_free(out);
}

/* A smooth test pattern in centred coordinates. */
static double smooth(double u, double v) { return sin(0.3 * u + 0.2 * v) + cos(0.25 * v - 0.1 * u); }

static void rotate_30_then_minus_30_recovers_central_disc(void **state)
{
    (void)state;
    const int64_t S = 21;
    const double c = (S - 1) / 2.0;
    int64_t shape[] = {2, S, S};
    cfnet_tensor *a = tu_tensor(3, shape, NULL), *b = tu_tensor(3, shape, NULL),
                 *r = tu_tensor(3, shape, NULL);
    float *x = cfnet_tensor_data(a);
    for (int64_t p = 0; p < 2; p++)
        for (int64_t i = 0; i < S; i++)
            for (int64_t j = 0; j < S; j++)
                x[(p * S + i) * S + j] = (float)((p ? -1.0 : 1.0) * smooth(j - c, c - i));
    CF_ASSERT_OK(cfnet_image_rotate(a, b, 30.0));
    CF_ASSERT_OK(cfnet_image_rotate(b, r, -30.0));
    const float *y = cfnet_tensor_data(b), *z = cfnet_tensor_data(r);
    /* Inside the disc of radius c - 1 every sample of both passes lies in the image. Bilinear
     * interpolation errs by at most (|f_xx| + |f_yy|) / 8 per pass; for this pattern that is
     * about 0.025, so two passes stay below 0.05 (observed 0.039; values span [-2, 2]). */
    double worst = 0, moved = 0;
    for (int64_t p = 0; p < 2; p++) {
        for (int64_t i = 0; i < S; i++) {
            for (int64_t j = 0; j < S; j++) {
                if (hypot(j - c, c - i) > c - 1) continue;
                int64_t k = (p * S + i) * S + j;
                worst = fmax(worst, fabs((double)z[k] - x[k]));
                moved = fmax(moved, fabs((double)y[k] - x[k]));
            }
        }
    }
    assert_true(worst < 0.05);
    assert_true(moved > 0.5); /* the intermediate really is rotated */
    cfnet_tensor_free(a);
    cfnet_tensor_free(b);
    cfnet_tensor_free(r);
}

/* Rotates a single unit pixel at (u0, v0) of a 9 x 9 image by `deg`; returns the intensity-
 * weighted centroid in (u, v) and the total mass. */
static void rotated_point(double u0, double v0, double deg, double *cu, double *cv, double *mass)
{
    const int64_t S = 9;
    const double c = (S - 1) / 2.0;
    int64_t shape[] = {S, S};
    cfnet_tensor *in = tu_tensor(2, shape, NULL), *out = tu_tensor(2, shape, NULL);
    cfnet_tensor_data(in)[(int64_t)(c - v0) * S + (int64_t)(u0 + c)] = 1.0f;
    CF_ASSERT_OK(cfnet_image_rotate(in, out, deg));
    const float *y = cfnet_tensor_data(out);
    double m = 0, su = 0, sv = 0;
    for (int64_t i = 0; i < S; i++) {
        for (int64_t j = 0; j < S; j++) {
            double w = y[i * S + j];
            assert_true(w >= 0.0);
            m += w;
            su += w * (j - c);
            sv += w * (c - i);
        }
    }
    *cu = su / m;
    *cv = sv / m;
    *mass = m;
    cfnet_tensor_free(in);
    cfnet_tensor_free(out);
}

static void rotate_45_moves_bright_pixel_counter_clockwise(void **state)
{
    (void)state;
    double cu, cv, m, h = sqrt(2.0);
    /* (2, 0) -> (sqrt 2, sqrt 2). Bilinear resampling of a single pixel does not conserve its
     * mass exactly: the four outputs around (sqrt 2, sqrt 2) get sqrt 2 - 1, 3 - 2 sqrt 2 and
     * twice 3 (1 - 1/sqrt 2)^2, in total 11 - 7 sqrt 2 = 1.1005. */
    rotated_point(2, 0, 45, &cu, &cv, &m);
    assert_true(fabs(cu - h) < 0.1 && fabs(cv - h) < 0.1);
    assert_float_equal(m, 11.0 - 7.0 * h, 1e-6);
    rotated_point(2, 0, -45, &cu, &cv, &m); /* clockwise: below the u axis */
    assert_true(fabs(cu - h) < 0.1 && fabs(cv + h) < 0.1);
    assert_float_equal(m, 11.0 - 7.0 * h, 1e-6);
    rotated_point(0, 3, 60, &cu, &cv, &m); /* (0, 3) -> (-3 sin 60, 3 cos 60) */
    assert_true(fabs(cu + 3 * sin(PI / 3)) < 0.1 && fabs(cv - 1.5) < 0.1);
    assert_true(fabs(m - 1.0) < 0.1);
}

static void rotate_preserves_mass_of_smooth_interior_blob(void **state)
{
    (void)state;
    /* A Gaussian of sigma 1.5 at (u, v) = (3, -2) in a 25 x 25 image stays inside the image
     * after any rotation; bilinear resampling of such a smooth blob keeps its sum to 1 %. */
    const int64_t S = 25;
    const double c = (S - 1) / 2.0;
    int64_t shape[] = {S, S};
    cfnet_tensor *in = tu_tensor(2, shape, NULL), *out = tu_tensor(2, shape, NULL);
    float *x = cfnet_tensor_data(in);
    double m0 = 0;
    for (int64_t i = 0; i < S; i++) {
        for (int64_t j = 0; j < S; j++) {
            double du = (j - c) - 3.0, dv = (c - i) + 2.0;
            x[i * S + j] = (float)exp(-(du * du + dv * dv) / (2 * 1.5 * 1.5));
            m0 += x[i * S + j];
        }
    }
    static const double angles[] = {37.0, 45.0, 113.0, -71.0};
    for (size_t k = 0; k < sizeof angles / sizeof angles[0]; k++) {
        CF_ASSERT_OK(cfnet_image_rotate(in, out, angles[k]));
        double m = 0, su = 0, sv = 0, th = angles[k] * PI / 180.0;
        const float *y = cfnet_tensor_data(out);
        for (int64_t i = 0; i < S; i++) {
            for (int64_t j = 0; j < S; j++) {
                m += y[i * S + j];
                su += y[i * S + j] * (j - c);
                sv += y[i * S + j] * (c - i);
            }
        }
        assert_true(fabs(m / m0 - 1.0) < 0.01);
        /* and its centre turns with it: (3, -2) rotated counter-clockwise by th */
        assert_true(fabs(su / m - (3 * cos(th) + 2 * sin(th))) < 0.05);
        assert_true(fabs(sv / m - (3 * sin(th) - 2 * cos(th))) < 0.05);
    }
    cfnet_tensor_free(in);
    cfnet_tensor_free(out);
}

static void rotate_ignores_pixels_with_zero_weight(void **state)
{
    (void)state;
    /* At 30 degrees no output samples near the corner pixel (u, v) = (-4, 4) of a 9 x 9 image
     * (it turns to (-5.46, 1.46), outside), so an infinity there must not reach any output,
     * not even as 0 * inf = NaN. */
    int64_t shape[] = {9, 9};
    tu_rng g = {13};
    cfnet_tensor *in = tu_tensor(2, shape, &g), *out = tu_tensor(2, shape, NULL),
                 *ref = tu_tensor(2, shape, NULL);
    cfnet_tensor_data(in)[0] = 0.0f;
    CF_ASSERT_OK(cfnet_image_rotate(in, ref, 30.0));
    cfnet_tensor_data(in)[0] = INFINITY;
    CF_ASSERT_OK(cfnet_image_rotate(in, out, 30.0));
    assert_memory_equal(cfnet_tensor_data(out), cfnet_tensor_data(ref), 81 * sizeof(float));
    cfnet_tensor_free(in);
    cfnet_tensor_free(out);
    cfnet_tensor_free(ref);
}

/* Slow reference: the source point by polar coordinates, then bilinear interpolation written as
 * a sum of tent weights over every input pixel (zero outside the image). */
static void ref_rotate(const float *in, float *out, int64_t planes, int64_t S, double deg)
{
    double c = (S - 1) / 2.0, th = deg * PI / 180.0;
    for (int64_t p = 0; p < planes; p++) {
        for (int64_t i = 0; i < S; i++) {
            for (int64_t j = 0; j < S; j++) {
                double u = j - c, v = c - i, r = hypot(u, v), phi = atan2(v, u) - th;
                double us = r * cos(phi), vs = r * sin(phi);
                double acc = 0;
                for (int64_t a = 0; a < S; a++) {
                    for (int64_t b = 0; b < S; b++) {
                        double wu = 1.0 - fabs((b - c) - us), wv = 1.0 - fabs((c - a) - vs);
                        if (wu > 0 && wv > 0) acc += wu * wv * in[(p * S + a) * S + b];
                    }
                }
                out[(p * S + i) * S + j] = (float)acc;
            }
        }
    }
}

static void rotate_matches_slow_bilinear_reference(void **state)
{
    (void)state;
    static const double angles[] = {37.0, -12.5, 200.25, 1e-3, 89.9, 3600.0 + 45.0};
    tu_rng g = {9};
    for (int64_t S = 10; S <= 11; S++) {
        int64_t shape[] = {1, 3, S, S};
        cfnet_tensor *in = tu_tensor(4, shape, &g), *out = tu_tensor(4, shape, NULL);
        float *ref = malloc((size_t)(3 * S * S) * sizeof(float));
        assert_non_null(ref);
        for (size_t k = 0; k < sizeof angles / sizeof angles[0]; k++) {
            CF_ASSERT_OK(cfnet_image_rotate(in, out, angles[k]));
            ref_rotate(cfnet_tensor_data(in), ref, 3, S, angles[k]);
            const float *y = cfnet_tensor_data(out);
            double worst = 0;
            for (int64_t t = 0; t < 3 * S * S; t++)
                worst = fmax(worst, fabs((double)y[t] - ref[t]));
            if (worst > 1e-6) fail_msg("S = %lld, %g degrees: max |diff| %g", (long long)S,
                                       angles[k], worst);
        }
        free(ref);
        cfnet_tensor_free(in);
        cfnet_tensor_free(out);
    }
}

static void rotate_rejects_bad_arguments(void **state)
{
    (void)state;
    int64_t sq[] = {2, 5, 5}, rect[] = {2, 5, 6}, other[] = {2, 6, 6}, flat[] = {25},
            four[] = {1, 2, 5, 5};
    cfnet_tensor *a = tu_tensor(3, sq, NULL), *b = tu_tensor(3, sq, NULL);
    cfnet_tensor *r1 = tu_tensor(3, rect, NULL), *r2 = tu_tensor(3, rect, NULL);
    cfnet_tensor *o = tu_tensor(3, other, NULL), *f1 = tu_tensor(1, flat, NULL),
                 *f2 = tu_tensor(1, flat, NULL), *q = tu_tensor(4, four, NULL);
    CF_ASSERT_STATUS(cfnet_image_rotate(NULL, b, 30), CFNET_E_INVALID_ARGUMENT);
    assert_string_equal(cfnet_last_error(), "image_rotate: input is NULL");
    CF_ASSERT_STATUS(cfnet_image_rotate(a, NULL, 30), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_rotate(r1, r2, 30), CFNET_E_SHAPE_MISMATCH);
    assert_non_null(strstr(cfnet_last_error(), "2x5x6"));
    CF_ASSERT_STATUS(cfnet_image_rotate(r1, r2, 90), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_image_rotate(a, o, 30), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_image_rotate(a, q, 30), CFNET_E_SHAPE_MISMATCH); /* same numel */
    CF_ASSERT_STATUS(cfnet_image_rotate(f1, f2, 30), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_image_rotate(a, a, 30), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_rotate(a, a, 90), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_rotate(a, b, NAN), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_rotate(a, b, INFINITY), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_rotate(a, b, -INFINITY), CFNET_E_INVALID_ARGUMENT);
    /* Two handles on overlapping parts of one buffer. */
    float buf[51] = {0};
    cfnet_tensor *w1 = NULL, *w2 = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap(buf, 3, sq, &w1));
    CF_ASSERT_OK(cfnet_tensor_wrap(buf + 1, 3, sq, &w2));
    CF_ASSERT_STATUS(cfnet_image_rotate(w1, w2, 30), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_rotate(w2, w1, 180), CFNET_E_INVALID_ARGUMENT);
    cfnet_tensor *all[] = {a, b, r1, r2, o, f1, f2, q, w1, w2};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) cfnet_tensor_free(all[k]);
}

/* ------------------------------------------------------------------------------------------ */
/* Shift                                                                                      */

static void shift_matches_direct_loop(void **state)
{
    (void)state;
    static const int cases[][2] = {{0, 0},   {2, 1},   {-1, 3},  {-3, -2}, {1, -6},
                                   {4, 0},   {0, 7},   {-5, 0},  {0, -7},  {4, 6},
                                   {-4, -6}, {5, 100}, {-99999, 2}, {INT_MAX, INT_MIN},
                                   {INT_MIN, INT_MAX}, {INT_MIN, 0}, {0, INT_MAX}};
    const int64_t H = 5, W = 7, P = 6;
    int64_t shape[] = {2, 3, H, W};
    tu_rng g = {10};
    cfnet_tensor *in = tu_tensor(4, shape, &g), *out = tu_tensor(4, shape, NULL);
    const float *x = cfnet_tensor_data(in);
    float ref[2 * 3 * 5 * 7];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int dy = cases[c][0], dx = cases[c][1];
        for (int64_t p = 0; p < P; p++) {
            for (int64_t i = 0; i < H; i++) {
                for (int64_t j = 0; j < W; j++) {
                    int64_t si = i - (int64_t)dy, sj = j - (int64_t)dx;
                    ref[(p * H + i) * W + j] = (si >= 0 && si < H && sj >= 0 && sj < W)
                                                   ? x[(p * H + si) * W + sj]
                                                   : 0.0f;
                }
            }
        }
        CF_ASSERT_OK(cfnet_tensor_fill(out, NAN)); /* every element must be written */
        CF_ASSERT_OK(cfnet_image_shift(in, out, dy, dx));
        if (memcmp(cfnet_tensor_data(out), ref, sizeof ref) != 0)
            fail_msg("shift (%d, %d) differs from the direct loop", dy, dx);
    }
    /* A spot check that does not go through the reference: one row down, two columns right. */
    CF_ASSERT_OK(cfnet_image_shift(in, out, 1, 2));
    assert_true(cfnet_tensor_data(out)[1 * W + 2] == x[0]);
    assert_true(cfnet_tensor_data(out)[0] == 0.0f);
    cfnet_tensor_free(in);
    cfnet_tensor_free(out);
}

static void shift_rejects_bad_arguments(void **state)
{
    (void)state;
    int64_t s1[] = {2, 4, 5}, s2[] = {2, 5, 4}, flat[] = {20};
    cfnet_tensor *a = tu_tensor(3, s1, NULL), *b = tu_tensor(3, s1, NULL),
                 *c = tu_tensor(3, s2, NULL), *f1 = tu_tensor(1, flat, NULL),
                 *f2 = tu_tensor(1, flat, NULL);
    CF_ASSERT_STATUS(cfnet_image_shift(NULL, b, 1, 1), CFNET_E_INVALID_ARGUMENT);
    assert_string_equal(cfnet_last_error(), "image_shift: input is NULL");
    CF_ASSERT_STATUS(cfnet_image_shift(a, NULL, 1, 1), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_shift(a, c, 1, 1), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_image_shift(f1, f2, 1, 1), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_image_shift(a, a, 0, 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_OK(cfnet_image_shift(a, b, 0, 0)); /* rectangular planes are fine */
    cfnet_tensor *all[] = {a, b, c, f1, f2};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) cfnet_tensor_free(all[k]);
}

/* ------------------------------------------------------------------------------------------ */
/* Percentile stretch                                                                         */

static int cmp_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* numpy.percentile (linear): sorted[k] + f (sorted[k+1] - sorted[k]) at k + f = p/100 (n-1). */
static double ref_percentile(const double *sorted, int64_t n, double p)
{
    double pos = p / 100.0 * (double)(n - 1);
    int64_t k = (int64_t)pos;
    if (k >= n - 1) return sorted[n - 1];
    return sorted[k] + (pos - (double)k) * (sorted[k + 1] - sorted[k]);
}

static void ref_normalize(float *x, int64_t planes, int64_t n, double lo_p, double hi_p)
{
    double *s = malloc((size_t)n * sizeof *s);
    assert_non_null(s);
    for (int64_t p = 0; p < planes; p++) {
        float *y = x + p * n;
        for (int64_t k = 0; k < n; k++) s[k] = y[k];
        qsort(s, (size_t)n, sizeof *s, cmp_double);
        double lo = ref_percentile(s, n, lo_p), hi = ref_percentile(s, n, hi_p);
        for (int64_t k = 0; k < n; k++) {
            double v = hi > lo ? (y[k] - lo) / (hi - lo) : 0.0;
            y[k] = (float)fmin(1.0, fmax(0.0, v));
        }
    }
    free(s);
}

static void normalize_matches_percentile_reference(void **state)
{
    (void)state;
    static const double ps[][2] = {{1, 99}, {0, 100}, {2.5, 97.5}, {50, 60}};
    const int64_t N = 2, C = 3, H = 7, W = 9, n = H * W;
    int64_t shape[] = {N, C, H, W};
    tu_rng g = {11};
    cfnet_tensor *t = tu_tensor(4, shape, &g);
    float *x = cfnet_tensor_data(t);
    for (int64_t k = 0; k < N * C * n; k++) x[k] = (float)(3.0 * x[k] + (double)(k / n));
    for (int64_t k = 0; k < 10; k++) x[n + k] = 0.5f; /* ties */
    float *orig = copy_of(t), *ref = malloc(sizeof(float) * (size_t)(N * C * n));
    assert_non_null(ref);
    for (size_t c = 0; c < sizeof ps / sizeof ps[0]; c++) {
        memcpy(x, orig, sizeof(float) * (size_t)(N * C * n));
        memcpy(ref, orig, sizeof(float) * (size_t)(N * C * n));
        CF_ASSERT_OK(cfnet_image_normalize(t, ps[c][0], ps[c][1]));
        ref_normalize(ref, N * C, n, ps[c][0], ps[c][1]);
        int at_zero = 0, at_one = 0;
        for (int64_t k = 0; k < N * C * n; k++) {
            if (fabs((double)x[k] - ref[k]) > 1e-6)
                fail_msg("percentiles %g/%g: element %lld is %g, reference %g", ps[c][0],
                         ps[c][1], (long long)k, x[k], ref[k]);
            assert_true(x[k] >= 0.0f && x[k] <= 1.0f);
            at_zero += x[k] == 0.0f;
            at_one += x[k] == 1.0f;
        }
        /* Every plane reaches both ends (its minimum and maximum are clipped or mapped). */
        assert_true(at_zero >= N * C && at_one >= N * C);
    }
    free(orig);
    free(ref);
    cfnet_tensor_free(t);
}

/* Large planes of few distinct values (8-bit-like data, constant runs, a single outlier): the
 * percentiles found by selection equal those of the sorted plane. */
static void normalize_matches_reference_on_quantised_planes(void **state)
{
    (void)state;
    const int64_t N = 3, C = 1, H = 64, W = 48, n = H * W;
    int64_t shape[] = {N, C, H, W};
    cfnet_tensor *t = NULL;
    CF_ASSERT_OK(cfnet_tensor_create(4, shape, &t));
    float *x = cfnet_tensor_data(t), *ref = malloc(sizeof(float) * (size_t)(N * n));
    assert_non_null(ref);
    tu_rng g = {5};
    for (int64_t k = 0; k < n; k++) {
        x[k] = (float)floor(16 * tu_uniform(&g));   /* 16 levels */
        x[n + k] = k < n - 1 ? 7.0f : 1000.0f;      /* constant but one outlier */
        x[2 * n + k] = (float)((k * 7919) % 5);     /* periodic */
    }
    static const double ps[][2] = {{1, 99.8}, {0, 100}, {33.3, 66.7}, {99.9, 100}};
    float *orig = copy_of(t);
    for (size_t c = 0; c < sizeof ps / sizeof ps[0]; c++) {
        memcpy(x, orig, sizeof(float) * (size_t)(N * n));
        memcpy(ref, orig, sizeof(float) * (size_t)(N * n));
        CF_ASSERT_OK(cfnet_image_normalize(t, ps[c][0], ps[c][1]));
        ref_normalize(ref, N * C, n, ps[c][0], ps[c][1]);
        for (int64_t k = 0; k < N * n; k++)
            if (fabs((double)x[k] - ref[k]) > 1e-6)
                fail_msg("percentiles %g/%g: element %lld is %g, reference %g", ps[c][0],
                         ps[c][1], (long long)k, x[k], ref[k]);
    }
    free(orig);
    free(ref);
    cfnet_tensor_free(t);
}

static void normalize_gives_known_values(void **state)
{
    (void)state;
    /* Plane 1..10: numpy.percentile(.., 10) = 1.9, (.., 90) = 9.1. */
    int64_t shape[] = {1, 1, 2, 5};
    cfnet_tensor *t = tu_tensor(4, shape, NULL);
    float *x = cfnet_tensor_data(t);
    for (int k = 0; k < 10; k++) x[k] = (float)(10 - k);
    CF_ASSERT_OK(cfnet_image_normalize(t, 10, 90));
    assert_float_equal(x[0], 1.0, 0);              /* 10 > 9.1 is clipped */
    assert_float_equal(x[5], (5 - 1.9) / 7.2, 1e-6); /* 5 */
    assert_float_equal(x[8], (2 - 1.9) / 7.2, 1e-6); /* 2 */
    assert_float_equal(x[9], 0.0, 0);              /* 1 < 1.9 is clipped */
    cfnet_tensor_free(t);
}

static void normalize_constant_or_degenerate_plane_becomes_zero(void **state)
{
    (void)state;
    int64_t shape[] = {1, 3, 4, 4};
    cfnet_tensor *t = tu_tensor(4, shape, NULL);
    float *x = cfnet_tensor_data(t);
    for (int k = 0; k < 16; k++) {
        x[k] = 3.25f;                        /* constant */
        x[16 + k] = k == 5 ? 100.0f : -2.0f; /* one outlier: the 1st and 90th percentiles agree */
        x[32 + k] = (float)k;                /* ordinary */
    }
    CF_ASSERT_OK(cfnet_image_normalize(t, 1, 90));
    for (int k = 0; k < 32; k++) assert_true(x[k] == 0.0f);
    assert_true(x[32] == 0.0f && x[47] == 1.0f);
    assert_float_equal(x[40], (8 - 0.15) / (13.5 - 0.15), 1e-6);
    cfnet_tensor_free(t);
}

static void normalize_rejects_nan_and_leaves_tensor_unchanged(void **state)
{
    (void)state;
    int64_t shape[] = {2, 3, 4, 4};
    tu_rng g = {12};
    cfnet_tensor *t = tu_tensor(4, shape, &g);
    float *x = cfnet_tensor_data(t);
    x[(1 * 3 + 2) * 16 + 7] = NAN; /* the last plane: earlier ones would be written first */
    float *before = copy_of(t);
    CF_ASSERT_STATUS(cfnet_image_normalize(t, 1, 99), CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "image 1, channel 2"));
    assert_memory_equal(x, before, 96 * sizeof(float));
    x[(1 * 3 + 2) * 16 + 7] = 0.0f;
    x[(0 * 3 + 1) * 16 + 3] = -INFINITY;
    memcpy(before, x, 96 * sizeof(float));
    CF_ASSERT_STATUS(cfnet_image_normalize(t, 0, 100), CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "image 0, channel 1"));
    assert_memory_equal(x, before, 96 * sizeof(float));
    free(before);
    cfnet_tensor_free(t);
}

static void normalize_rejects_bad_arguments(void **state)
{
    (void)state;
    int64_t s4[] = {1, 1, 3, 3}, s3[] = {1, 3, 3};
    cfnet_tensor *t = tu_tensor(4, s4, NULL), *t3 = tu_tensor(3, s3, NULL);
    CF_ASSERT_STATUS(cfnet_image_normalize(NULL, 1, 99), CFNET_E_INVALID_ARGUMENT);
    assert_string_equal(cfnet_last_error(), "image_normalize: images is NULL");
    CF_ASSERT_STATUS(cfnet_image_normalize(t3, 1, 99), CFNET_E_SHAPE_MISMATCH);
    assert_non_null(strstr(cfnet_last_error(), "1x3x3"));
    CF_ASSERT_STATUS(cfnet_image_normalize(t, 50, 50), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_normalize(t, 60, 40), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_normalize(t, -1, 99), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_normalize(t, 1, 100.5), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_normalize(t, NAN, 99), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_normalize(t, 1, NAN), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_normalize(t, -INFINITY, 99), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_OK(cfnet_image_normalize(t, 0, 100));
    cfnet_tensor_free(t);
    cfnet_tensor_free(t3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rotate_quarter_turns_equal_rot90_exactly),
        cmocka_unit_test(rotate_by_zero_is_identity),
        cmocka_unit_test(rotate_30_then_minus_30_recovers_central_disc),
        cmocka_unit_test(rotate_45_moves_bright_pixel_counter_clockwise),
        cmocka_unit_test(rotate_preserves_mass_of_smooth_interior_blob),
        cmocka_unit_test(rotate_matches_slow_bilinear_reference),
        cmocka_unit_test(rotate_ignores_pixels_with_zero_weight),
        cmocka_unit_test(rotate_rejects_bad_arguments),
        cmocka_unit_test(shift_matches_direct_loop),
        cmocka_unit_test(shift_rejects_bad_arguments),
        cmocka_unit_test(normalize_matches_percentile_reference),
        cmocka_unit_test(normalize_matches_reference_on_quantised_planes),
        cmocka_unit_test(normalize_gives_known_values),
        cmocka_unit_test(normalize_constant_or_degenerate_plane_becomes_zero),
        cmocka_unit_test(normalize_rejects_nan_and_leaves_tensor_unchanged),
        cmocka_unit_test(normalize_rejects_bad_arguments),
    };
    return cmocka_run_group_tests_name("image", tests, NULL, NULL);
}
