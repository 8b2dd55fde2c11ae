/* Single-layer equivariance error of the filter resamplings (protocol in bench/equivariance.h,
 * table in docs/results.md). A property of the maths, not of timing: the steerable resampling
 * rotates the filter exactly within its basis, so a 45-degree rotation of a smooth input is
 * followed much more closely than with nearest or bilinear resampling. */
#include "testutil.h"

#include "../bench/equivariance.h"

static void steerable_beats_nearest_and_bilinear_at_45_degrees_k5(void **state)
{
    (void)state;
    for (int R = 2; R <= 2; R++) { /* R = 4 is in the table of docs/results.md */
        double e[3];
        for (int in = 0; in < 3; in++) {
            e[in] = eqv_error(5, R, 1, 45.0, (cfnet_interp)in, 105);
            assert_true(e[in] >= 0.0);
        }
        print_message("conic R=%d k=5 45 deg: nearest %.3f bilinear %.3f steerable %.3f\n", R,
                      e[0], e[1], e[2]);
        assert_true(e[CFNET_INTERP_STEERABLE] < e[CFNET_INTERP_NEAREST]);
        assert_true(e[CFNET_INTERP_STEERABLE] < e[CFNET_INTERP_BILINEAR]);
        assert_true(e[CFNET_INTERP_STEERABLE] <= 0.1); /* the target of issue 17 */
    }
    /* The resampling alone (a plain correlation with the 45-degree filter). */
    double f[3];
    for (int in = 0; in < 3; in++) f[in] = eqv_error(5, 0, 2, 45.0, (cfnet_interp)in, 105);
    assert_true(f[2] < f[0] && f[2] < f[1] && f[2] <= 0.1);
}

/* Quarter turns are in the cone group for every R: the measure is zero up to float rounding
 * (the input is rotated exactly, and T_{r+R} = rot90 T_r). */
static void quarter_turns_have_no_equivariance_error(void **state)
{
    (void)state;
    for (int in = 0; in < 3; in++)
        for (int R = 2; R <= 2; R++) {
            double e = eqv_error(5, R, 1, 90.0, (cfnet_interp)in, 7);
            if (!(e >= 0.0 && e < 1e-5)) fail_msg("interp %d R %d: %g", in, R, e);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(steerable_beats_nearest_and_bilinear_at_45_degrees_k5),
        cmocka_unit_test(quarter_turns_have_no_equivariance_error),
    };
    return cmocka_run_group_tests_name("equivariance", tests, NULL, NULL);
}
