/* Filter rotation maps: quarter turns exact, nearest 45 degrees on 3x3 shifts the ring,
 * T_{r+R} = rot90 T_r for every R (including R = 3, where rounding ties occur) and every
 * resampling; the steerable maps are projections followed by exact rotations in their basis. */
#include "testutil.h"

#include "kernels/rotate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Independent quarter turn of a k x k filter: value at (i, j) moves to (k-1-j, i). */
static void ref_rot90(const float *in, float *out, int k)
{
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) out[(k - 1 - j) * k + i] = in[i * k + j];
}

static void rotate(int k, int R, int r, cfnet_interp interp, const float *in, float *out)
{
    cf_rotmap m;
    CF_ASSERT_OK(cf_rotmap_build(NULL, k, R, r, interp, &m));
    cf_rotmap_apply(&m, in, out);
    cf_rotmap_free(&m);
}

static void quarter_turns_are_exact_permutations(void **state)
{
    (void)state;
    tu_rng g = {1};
    for (int k = 1; k <= 6; k++) {
        float base[36], a[36], b[36], c[36];
        tu_fill_normal(base, k * k, &g);
        memcpy(b, base, sizeof base);
        for (int q = 0; q < 4; q++) {
            rotate(k, 1, q, CFNET_INTERP_NEAREST, base, a);
            assert_memory_equal(a, b, (size_t)(k * k) * sizeof(float));
            rotate(k, 3, 3 * q, CFNET_INTERP_BILINEAR, base, a);
            assert_memory_equal(a, b, (size_t)(k * k) * sizeof(float));
            ref_rot90(b, c, k);
            memcpy(b, c, sizeof c);
        }
    }
}

static void nearest_45_degrees_shifts_the_3x3_ring(void **state)
{
    (void)state;
    float base[9], out[9];
    for (int i = 0; i < 9; i++) base[i] = (float)(i + 1);
    rotate(3, 2, 1, CFNET_INTERP_NEAREST, base, out);
    /* Ring counter-clockwise from (u, v) = (1, 0): indices 5, 2, 1, 0, 3, 6, 7, 8. */
    const int ring[8] = {5, 2, 1, 0, 3, 6, 7, 8};
    for (int m = 0; m < 8; m++) assert_true(out[ring[m]] == base[ring[(m + 7) % 8]]);
    assert_true(out[4] == base[4]);
}

static void rotation_by_r_plus_R_is_rot90_of_rotation_by_r(void **state)
{
    (void)state;
    tu_rng g = {2};
    const int Rs[] = {2, 3, 4, 6};
    for (int ri = 0; ri < 4; ri++) {
        int R = Rs[ri];
        for (int k = 2; k <= 7; k++) {
            float base[49], a[49], b[49], c[49];
            tu_fill_normal(base, k * k, &g);
            for (int interp = 0; interp < 3; interp++)
                for (int r = 0; r < 3 * R; r++) {
                    rotate(k, R, r, (cfnet_interp)interp, base, a);
                    rotate(k, R, r + R, (cfnet_interp)interp, base, b);
                    ref_rot90(a, c, k);
                    assert_memory_equal(b, c, (size_t)(k * k) * sizeof(float));
                }
        }
    }
}

/* Nearest neighbour at 30 degrees on a 5x5 filter: the position (u, v) = (1, 2) maps back to
 * (u cos 30 + v sin 30, ...) = (1.866, 1.232) -> (2, 1); ties such as u sin 30 = 1 exactly
 * round away from zero, symmetric under negation. */
static void nearest_rounding_is_odd_symmetric(void **state)
{
    (void)state;
    float base[25], out[25];
    for (int i = 0; i < 25; i++) base[i] = (float)(i + 1); /* 0 in out means "outside" */
    rotate(5, 3, 1, CFNET_INTERP_NEAREST, base, out);
    /* (u, v) = (1, 2) is index (c - v, u + c) = (0, 3); source (2, 1) is index (1, 4). */
    assert_true(out[0 * 5 + 3] == base[1 * 5 + 4]);
    /* Point symmetry: if out(z) = base(s) then out(-z) = base(-s); index t <-> 24 - t. */
    for (int t = 0; t < 25; t++) {
        int s = (int)out[t] - 1, sm = (int)out[24 - t] - 1;
        assert_int_equal(s < 0, sm < 0);
        if (s >= 0) assert_int_equal(sm, 24 - s);
    }
}

/* Steerable: T_0 = P is an orthogonal projection (P P = P, P symmetric), every T_s = T_s P
 * (rotation acts within the basis), and rotations compose exactly within the basis:
 * T_{g(a)} T_{g(b)} = T_{g(a+b)}, here 22.5 + 22.5 = 45 and 45 + 45 = 90 degrees (a quarter
 * turn of the projected filter). */
static void steerable_maps_rotate_exactly_within_the_basis(void **state)
{
    (void)state;
    tu_rng g = {5};
    for (int k = 1; k <= 9; k++) {
        int kk = k * k;
        cf_rotmap P, T22, T45, T45b;
        CF_ASSERT_OK(cf_rotmap_build(NULL, k, 4, 0, CFNET_INTERP_STEERABLE, &P));
        CF_ASSERT_OK(cf_rotmap_build(NULL, k, 4, 1, CFNET_INTERP_STEERABLE, &T22));
        CF_ASSERT_OK(cf_rotmap_build(NULL, k, 4, 2, CFNET_INTERP_STEERABLE, &T45));
        CF_ASSERT_OK(cf_rotmap_build(NULL, k, 2, 1, CFNET_INTERP_STEERABLE, &T45b));
        float base[81], p[81], pp[81], a[81], b[81], c[81], d[81];
        tu_fill_normal(base, kk, &g);
        cf_rotmap_apply(&P, base, p);
        cf_rotmap_apply(&P, p, pp);
        double scale = 0.0;
        for (int t = 0; t < kk; t++) scale = fmax(scale, fabs(p[t]));
        for (int t = 0; t < kk; t++) assert_true(fabs(pp[t] - p[t]) <= 1e-4 * scale);
        /* Symmetry: <P e_s, e_t> == <e_s, P e_t>. */
        float e[81], col[81][81];
        for (int s = 0; s < kk; s++) {
            memset(e, 0, sizeof e);
            e[s] = 1.0f;
            cf_rotmap_apply(&P, e, col[s]);
        }
        for (int s = 0; s < kk; s++)
            for (int t = 0; t < kk; t++) assert_true(fabs(col[s][t] - col[t][s]) <= 1e-5);
        /* 22.5 twice is 45; 45 twice is a quarter turn of P base. */
        cf_rotmap_apply(&T22, base, a);
        cf_rotmap_apply(&T22, a, b);
        cf_rotmap_apply(&T45, base, c);
        for (int t = 0; t < kk; t++) assert_true(fabs(b[t] - c[t]) <= 1e-4 * scale);
        cf_rotmap_apply(&T45b, c, d);
        ref_rot90(p, a, k);
        for (int t = 0; t < kk; t++) assert_true(fabs(d[t] - a[t]) <= 1e-4 * scale);
        cf_rotmap_free(&P);
        cf_rotmap_free(&T22);
        cf_rotmap_free(&T45);
        cf_rotmap_free(&T45b);
    }
}

/* With R = 1 every rotation is a quarter turn: the steerable option resamples nothing, and the
 * maps are the exact permutations of the nearest ones (no projection). */
static void steerable_with_R1_is_exact_quarter_turns(void **state)
{
    (void)state;
    tu_rng g = {9};
    for (int k = 1; k <= 7; k++) {
        float base[49], a[49], b[49];
        tu_fill_normal(base, k * k, &g);
        for (int q = 0; q < 4; q++) {
            rotate(k, 1, q, CFNET_INTERP_STEERABLE, base, a);
            rotate(k, 1, q, CFNET_INTERP_NEAREST, base, b);
            assert_memory_equal(a, b, (size_t)(k * k) * sizeof(float));
        }
    }
}

/* The steerable basis is well conditioned for every supported size, and larger filters are
 * refused with a status (the maps are dense). */
static void steerable_maps_build_up_to_the_limit(void **state)
{
    (void)state;
    /* Every size up to 12, then spot checks up to the limit (the build costs O(k^6)). */
    static const int ks[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16, CF_ROT_STEERABLE_MAX_K};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        int k = ks[i];
        cf_rotmap m;
        CF_ASSERT_OK(cf_rotmap_build(NULL, k, 2, 1, CFNET_INTERP_STEERABLE, &m));
        assert_int_equal(m.kk, k * k);
        cf_rotmap_free(&m);
    }
    cf_rotmap m;
    CF_ASSERT_STATUS(cf_rotmap_build(NULL, CF_ROT_STEERABLE_MAX_K + 1, 2, 1, CFNET_INTERP_STEERABLE, &m),
                     CFNET_E_LIMIT);
    assert_null(m.src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quarter_turns_are_exact_permutations),
        cmocka_unit_test(nearest_45_degrees_shifts_the_3x3_ring),
        cmocka_unit_test(rotation_by_r_plus_R_is_rot90_of_rotation_by_r),
        cmocka_unit_test(nearest_rounding_is_odd_symmetric),
        cmocka_unit_test(steerable_maps_rotate_exactly_within_the_basis),
        cmocka_unit_test(steerable_maps_build_up_to_the_limit),
        cmocka_unit_test(steerable_with_R1_is_exact_quarter_turns),
    };
    return cmocka_run_group_tests_name("rotate", tests, NULL, NULL);
}
