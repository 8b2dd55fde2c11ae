/* The tensor handle: creation, shape queries, copies, wrapping, reshape, bad arguments. */
#include "testutil.h"

#include <stdint.h>
#include <string.h>

static void create_gives_zeroed_tensor_with_shape(void **state)
{
    (void)state;
    int64_t shape[] = {2, 3, 4, 5, 6};
    cfnet_tensor *t = NULL;
    CF_ASSERT_OK(cfnet_tensor_create(5, shape, &t));
    assert_int_equal(cfnet_tensor_ndim(t), 5);
    assert_int_equal(cfnet_tensor_numel(t), 720);
    assert_int_equal(cfnet_tensor_dim(t, 0), 2);
    assert_int_equal(cfnet_tensor_dim(t, -1), 6);
    assert_int_equal(cfnet_tensor_dim(t, 5), -1);
    assert_int_equal(cfnet_tensor_dim(t, -6), -1);
    int nd;
    int64_t s[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_tensor_shape(t, &nd, s));
    assert_int_equal(nd, 5);
    assert_memory_equal(s, shape, sizeof shape);
    const float *d = cfnet_tensor_data(t);
    for (int i = 0; i < 720; i++) assert_true(d[i] == 0.0f);
    cfnet_tensor_free(t);
}

static void create_rejects_bad_shapes(void **state)
{
    (void)state;
    cfnet_tensor *t = NULL;
    int64_t zero[] = {3, 0}, neg[] = {-2, 4}, six[] = {1, 1, 1, 1, 1, 1};
    int64_t huge[] = {INT64_MAX / 2, 4};
    CF_ASSERT_STATUS(cfnet_tensor_create(2, zero, &t), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_create(2, neg, &t), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_create(6, six, &t), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_create(0, six, &t), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_create(2, huge, &t), CFNET_E_LIMIT);
    CF_ASSERT_STATUS(cfnet_tensor_create(2, NULL, &t), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_create(2, zero, NULL), CFNET_E_INVALID_ARGUMENT);
    assert_null(t);
    /* The message names what was wrong. */
    cfnet_tensor_create(2, neg, &t);
    assert_non_null(strstr(cfnet_last_error(), "dimension 0 is -2"));
}

static void copy_in_and_out_round_trip(void **state)
{
    (void)state;
    int64_t shape[] = {3, 4};
    float src[12], dst[12];
    for (int i = 0; i < 12; i++) src[i] = (float)i * 0.5f - 2.0f;
    cfnet_tensor *t = tu_tensor(2, shape, NULL);
    CF_ASSERT_OK(cfnet_tensor_copy_in(t, src, 12));
    CF_ASSERT_OK(cfnet_tensor_copy_out(t, dst, 12));
    assert_memory_equal(src, dst, sizeof src);
    CF_ASSERT_STATUS(cfnet_tensor_copy_in(t, src, 11), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_tensor_copy_out(t, dst, 13), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_tensor_copy_in(NULL, src, 12), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_copy_out(t, NULL, 12), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_OK(cfnet_tensor_fill(t, 2.5f));
    for (int i = 0; i < 12; i++) assert_true(cfnet_tensor_data(t)[i] == 2.5f);
    CF_ASSERT_OK(cfnet_tensor_zero(t));
    for (int i = 0; i < 12; i++) assert_true(cfnet_tensor_data(t)[i] == 0.0f);
    cfnet_tensor_free(t);
}

static void wrap_views_caller_buffer_without_copy(void **state)
{
    (void)state;
    float buf[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[] = {2, 3};
    cfnet_tensor *t = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap(buf, 2, shape, &t));
    assert_ptr_equal(cfnet_tensor_data(t), buf);
    CF_ASSERT_OK(cfnet_tensor_fill(t, 7.0f));
    assert_true(buf[5] == 7.0f);
    cfnet_tensor_free(t); /* must not free buf (ASan/valgrind would report it) */
    buf[0] = 1.0f;
    assert_true(buf[0] == 1.0f);
    CF_ASSERT_STATUS(cfnet_tensor_wrap(NULL, 2, shape, &t), CFNET_E_INVALID_ARGUMENT);
}

static void reshape_keeps_data_and_checks_count(void **state)
{
    (void)state;
    int64_t shape[] = {2, 6}, ok[] = {3, 2, 2}, bad[] = {5, 2};
    tu_rng r = {1};
    cfnet_tensor *t = tu_tensor(2, shape, &r);
    float before[12];
    CF_ASSERT_OK(cfnet_tensor_copy_out(t, before, 12));
    CF_ASSERT_OK(cfnet_tensor_reshape(t, 3, ok));
    assert_int_equal(cfnet_tensor_ndim(t), 3);
    assert_int_equal(cfnet_tensor_dim(t, 1), 2);
    assert_memory_equal(cfnet_tensor_data(t), before, sizeof before);
    CF_ASSERT_STATUS(cfnet_tensor_reshape(t, 2, bad), CFNET_E_SHAPE_MISMATCH);
    assert_int_equal(cfnet_tensor_ndim(t), 3); /* unchanged */
    cfnet_tensor_free(t);
}

static void null_handles_are_harmless(void **state)
{
    (void)state;
    cfnet_tensor_free(NULL);
    assert_int_equal(cfnet_tensor_ndim(NULL), 0);
    assert_int_equal(cfnet_tensor_numel(NULL), -1);
    assert_null(cfnet_tensor_data(NULL));
    int nd;
    int64_t s[CFNET_MAX_DIMS];
    CF_ASSERT_STATUS(cfnet_tensor_shape(NULL, &nd, s), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_fill(NULL, 1.0f), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_zero(NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_reshape(NULL, 1, s), CFNET_E_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_gives_zeroed_tensor_with_shape),
        cmocka_unit_test(create_rejects_bad_shapes),
        cmocka_unit_test(copy_in_and_out_round_trip),
        cmocka_unit_test(wrap_views_caller_buffer_without_copy),
        cmocka_unit_test(reshape_keeps_data_and_checks_count),
        cmocka_unit_test(null_handles_are_harmless),
    };
    return cmocka_run_group_tests_name("tensor", tests, NULL, NULL);
}
