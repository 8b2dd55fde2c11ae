/* The header and the library agree on the version; status names are stable. */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

static void version_number_matches_header(void **state)
{
    (void)state;
    assert_int_equal(cfnet_version_number(), CFNET_VERSION_NUMBER);
    assert_int_equal(CFNET_VERSION_NUMBER,
                     CFNET_VERSION_MAJOR * 10000 + CFNET_VERSION_MINOR * 100 + CFNET_VERSION_PATCH);
}

static void version_string_matches_header(void **state)
{
    (void)state;
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", CFNET_VERSION_MAJOR, CFNET_VERSION_MINOR,
             CFNET_VERSION_PATCH);
    assert_string_equal(cfnet_version_string(), expect);
    assert_string_equal(CFNET_VERSION_STRING, expect);
}

static void status_codes_are_pinned_and_named(void **state)
{
    (void)state;
    assert_int_equal(CFNET_OK, 0);
    assert_int_equal(CFNET_E_INVALID_ARGUMENT, -1);
    assert_int_equal(CFNET_E_OUT_OF_MEMORY, -2);
    assert_int_equal(CFNET_E_SHAPE_MISMATCH, -3);
    assert_int_equal(CFNET_E_IO, -4);
    assert_int_equal(CFNET_E_FORMAT, -5);
    assert_int_equal(CFNET_E_UNSUPPORTED, -6);
    assert_int_equal(CFNET_E_INTERNAL, -7);
    assert_int_equal(CFNET_E_STATE, -8);
    assert_int_equal(CFNET_E_LIMIT, -9);
    assert_int_equal(CFNET_E_NUMERIC, -10);
    assert_int_equal(CFNET_E_CANCELLED, -11);
    assert_string_equal(cfnet_status_string(CFNET_OK), "ok");
    assert_string_equal(cfnet_status_string(CFNET_E_NUMERIC), "non-finite numbers");
    assert_string_equal(cfnet_status_string(CFNET_E_CANCELLED), "cancelled");
    assert_string_equal(cfnet_status_string(CFNET_E_SHAPE_MISMATCH), "shape mismatch");
    assert_string_equal(cfnet_status_string((cfnet_status)-1000), "unknown status");
    for (int s = CFNET_E_CANCELLED; s <= CFNET_OK; s++)
        assert_string_not_equal(cfnet_status_string((cfnet_status)s), "unknown status");
}

static void layer_kind_names_are_pinned(void **state)
{
    (void)state;
    assert_string_equal(cfnet_layer_kind_name(CFNET_LAYER_CONIC_CONV), "conic_conv");
    assert_string_equal(cfnet_layer_kind_name(CFNET_LAYER_DFT_MAGNITUDE), "dft_magnitude");
    assert_string_equal(cfnet_layer_kind_name(CFNET_LAYER_SOFTMAX), "softmax");
    assert_string_equal(cfnet_layer_kind_name(0), "unknown");
    assert_string_equal(cfnet_layer_kind_name(999), "unknown");
}

int main(void)
{
    printf("libcfnet %s (header %s)\n", cfnet_version_string(), CFNET_VERSION_STRING);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_number_matches_header),
        cmocka_unit_test(version_string_matches_header),
        cmocka_unit_test(status_codes_are_pinned_and_named),
        cmocka_unit_test(layer_kind_names_are_pinned),
    };
    return cmocka_run_group_tests_name("version", tests, NULL, NULL);
}
