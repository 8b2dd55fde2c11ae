/* The option table (src/nn/options.c): every option has a name, bounds and a default; the
 * bounds are exactly what cfnet_network_set_option accepts; a new network holds the defaults. */
#include "testutil.h"

#include <math.h>
#include <string.h>

/* Options are 1..n: named up to the first NULL. */
static int option_count(void)
{
    int n = 0;
    while (cfnet_option_name(n + 1)) n++;
    return n;
}

static void every_option_has_a_name_bounds_and_a_default(void **state)
{
    (void)state;
    int n = option_count();
    assert_int_equal(n, CFNET_OPTION_AUG_FLIP);
    assert_null(cfnet_option_name(0));
    assert_null(cfnet_option_name(n + 1));
    assert_string_equal(cfnet_option_name(CFNET_OPTION_LEARNING_RATE), "learning_rate");
    assert_string_equal(cfnet_option_name(CFNET_OPTION_LR_DECAY_STEPS), "lr_decay_steps");
    for (int k = 1; k <= n; k++) {
        double lo = NAN, hi = NAN, def = NAN;
        CF_ASSERT_OK(cfnet_option_bounds(k, &lo, &hi));
        CF_ASSERT_OK(cfnet_option_default(k, &def));
        assert_true(lo <= def && def <= hi);
        int integer = cfnet_option_is_integer(k);
        assert_true(integer == 0 || integer == 1);
        if (integer) assert_true(lo == floor(lo) && hi == floor(hi));
    }
    double threads_lo, threads_hi;
    CF_ASSERT_OK(cfnet_option_bounds(CFNET_OPTION_THREADS, &threads_lo, &threads_hi));
    assert_true(threads_lo == 1);
    double beta_lo, beta_hi;
    CF_ASSERT_OK(cfnet_option_bounds(CFNET_OPTION_BETA1, &beta_lo, &beta_hi));
    assert_true(beta_lo == 0 && beta_hi < 1 && nextafter(beta_hi, 2) == 1);
    assert_int_equal(cfnet_option_is_integer(CFNET_OPTION_LEARNING_RATE), 0);
    assert_int_equal(cfnet_option_is_integer(CFNET_OPTION_OPTIMIZER), 1);
}

static void a_new_network_holds_the_defaults(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 8, 8, 1, &net));
    for (int k = 1; k <= option_count(); k++) {
        double def, v;
        CF_ASSERT_OK(cfnet_option_default(k, &def));
        CF_ASSERT_OK(cfnet_network_get_option(net, (cfnet_option)k, &v));
        assert_true(v == def);
    }
    cfnet_network_free(net);
}

/* The bounds are accepted, the nearest values outside them (and non-integers for integer
 * options) are refused with the option unchanged. */
static void the_bounds_are_exactly_what_set_option_accepts(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 8, 8, 1, &net));
    for (int k = 1; k <= option_count(); k++) {
        cfnet_option o = (cfnet_option)k;
        double lo, hi, before, after;
        CF_ASSERT_OK(cfnet_option_bounds(k, &lo, &hi));
        if (o == CFNET_OPTION_AUG_JITTER) hi = 7; /* also below the 8 x 8 input size */
        CF_ASSERT_OK(cfnet_network_set_option(net, o, lo));
        CF_ASSERT_OK(cfnet_network_set_option(net, o, hi));
        CF_ASSERT_OK(cfnet_network_get_option(net, o, &before));
        assert_true(before == hi);
        double below = cfnet_option_is_integer(k) ? lo - 1 : nextafter(lo, -INFINITY);
        double above = cfnet_option_is_integer(k) ? hi + 1 : nextafter(hi, INFINITY);
        if (isfinite(below))
            CF_ASSERT_STATUS(cfnet_network_set_option(net, o, below), CFNET_E_INVALID_ARGUMENT);
        if (isfinite(above))
            CF_ASSERT_STATUS(cfnet_network_set_option(net, o, above), CFNET_E_INVALID_ARGUMENT);
        if (cfnet_option_is_integer(k))
            CF_ASSERT_STATUS(cfnet_network_set_option(net, o, lo + 0.5), CFNET_E_INVALID_ARGUMENT);
        CF_ASSERT_STATUS(cfnet_network_set_option(net, o, NAN), CFNET_E_INVALID_ARGUMENT);
        CF_ASSERT_OK(cfnet_network_get_option(net, o, &after));
        assert_true(after == before);
    }
    cfnet_network_free(net);
}

static void unknown_options_are_refused(void **state)
{
    (void)state;
    double a, b;
    CF_ASSERT_STATUS(cfnet_option_bounds(0, &a, &b), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_option_bounds(option_count() + 1, &a, &b), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_option_default(-3, &a), CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(cfnet_option_is_integer(99), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_option_has_a_name_bounds_and_a_default),
        cmocka_unit_test(a_new_network_holds_the_defaults),
        cmocka_unit_test(the_bounds_are_exactly_what_set_option_accepts),
        cmocka_unit_test(unknown_options_are_refused),
    };
    return cmocka_run_group_tests_name("options", tests, NULL, NULL);
}
