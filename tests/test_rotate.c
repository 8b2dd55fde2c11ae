/* Filter rotation maps: quarter turns exact, nearest 45 degrees on 3x3 shifts the ring,
 * T_{r+R} = rot90 T_r for every R (including R = 3, where rounding ties occur). */
#include "testutil.h"

#include "kernels/rotate.h"

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
    cf_rotmap_entry *m = malloc((size_t)(k * k) * sizeof *m);
    cf_rotmap_build(k, R, r, interp, m);
    cf_rotmap_apply(m, k * k, in, out);
    free(m);
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
            for (int interp = 0; interp < 2; interp++)
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quarter_turns_are_exact_permutations),
        cmocka_unit_test(nearest_45_degrees_shifts_the_3x3_ring),
        cmocka_unit_test(rotation_by_r_plus_R_is_rot90_of_rotation_by_r),
        cmocka_unit_test(nearest_rounding_is_odd_symmetric),
    };
    return cmocka_run_group_tests_name("rotate", tests, NULL, NULL);
}
