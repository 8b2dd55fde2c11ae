/* Stale and foreign handles (mistakes bindings make easily): every public entry point checks a
 * handle's kind and liveness. Freeing a layer a network owns is refused; a handle of the wrong
 * kind is refused; a double free and a use after free (while the memory is not reused) are
 * refused with CFNET_E_INVALID_ARGUMENT and a message. The last two read freed memory, which
 * AddressSanitizer and valgrind rightly report, so they run only in plain builds (what remains
 * undefined is listed in SECURITY.md). */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define MEMORY_CHECKER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define MEMORY_CHECKER 1
#endif
#endif
#ifndef MEMORY_CHECKER
#define MEMORY_CHECKER 0
#endif

static int reads_of_freed_memory_allowed(void)
{
    return !MEMORY_CHECKER && !getenv("CFNET_TEST_UNDER_VALGRIND");
}

static cfnet_network *small_net(void)
{
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 6, 6, 1, &net));
    CF_ASSERT_OK(cfnet_layer_conv2d_create(2, 3, 1, CFNET_PADDING_SAME, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dense_create(3, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    return net;
}

static void infer_ok(cfnet_network *net)
{
    int64_t xs[4] = {2, 1, 6, 6}, ys[2] = {2, 3};
    cfnet_tensor *x = tu_tensor(4, xs, NULL), *y = tu_tensor(2, ys, NULL);
    CF_ASSERT_OK(cfnet_network_infer(net, x, y));
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
}

static void freeing_an_owned_layer_is_refused(void **state)
{
    (void)state;
    cfnet_network *net = small_net();
    for (int i = 0; i < 2; i++) {
        cfnet_clear_error();
        cfnet_layer_free(cfnet_network_layer(net, i));
        if (!strstr(cfnet_last_error(), "belongs to a network"))
            fail_msg("no message: \"%s\"", cfnet_last_error());
    }
    infer_ok(net); /* the network is intact */
    assert_int_equal(cfnet_network_layer_count(net), 2);
    cfnet_network_free(net);
}

static void handles_of_the_wrong_kind_are_refused(void **state)
{
    (void)state;
    cfnet_network *net = small_net();
    int64_t xs[4] = {1, 1, 6, 6};
    cfnet_tensor *x = tu_tensor(4, xs, NULL);
    cfnet_layer *l = cfnet_network_layer(net, 0);
    cfnet_context *ctx = NULL;
    CF_ASSERT_OK(cfnet_context_create(&ctx));
    int64_t ys[2] = {1, 3};
    cfnet_tensor *y = tu_tensor(2, ys, NULL);
    /* A tensor, a layer, a context passed where a network is expected, and so on. */
    CF_ASSERT_STATUS(cfnet_network_infer((cfnet_network *)(void *)x, x, y),
                     CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "network handle"));
    CF_ASSERT_STATUS(cfnet_network_infer((cfnet_network *)(void *)l, x, y),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_infer(net, (cfnet_tensor *)(void *)l, y),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_infer(net, x, (cfnet_tensor *)(void *)net),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_append(net, (cfnet_layer *)(void *)ctx),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_context_set_limit((cfnet_context *)(void *)net,
                                             CFNET_LIMIT_HEADER_BYTES, 10),
                     CFNET_E_INVALID_ARGUMENT);
    /* the data-parallel entry points too */
    float g[1];
    CF_ASSERT_STATUS(cfnet_network_set_sum_hook((cfnet_network *)(void *)l, NULL, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_set_batch_position((cfnet_network *)(void *)l, 0, 0),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_gradients((cfnet_network *)(void *)l, g, 0),
                     CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "network handle"));
    assert_int_equal(cfnet_network_layer_count((cfnet_network *)(void *)x), 0);
    assert_true(cfnet_tensor_numel((cfnet_tensor *)(void *)net) == -1);
    assert_null(cfnet_tensor_data((cfnet_tensor *)(void *)l));
    assert_int_equal(cfnet_layer_kind_of((cfnet_layer *)(void *)x), 0);
    /* frees of the wrong kind do nothing */
    cfnet_network_free((cfnet_network *)(void *)x);
    cfnet_tensor_free((cfnet_tensor *)(void *)net);
    cfnet_layer_free((cfnet_layer *)(void *)ctx);
    cfnet_context_free((cfnet_context *)(void *)l);
    infer_ok(net);
    assert_int_equal(cfnet_tensor_ndim(x), 4);
    cfnet_context_free(ctx);
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_network_free(net);
}

static void double_free_and_use_after_free_are_refused(void **state)
{
    (void)state;
    if (!reads_of_freed_memory_allowed()) skip();
    cfnet_network *net = small_net();
    int64_t xs[4] = {1, 1, 6, 6}, ys[2] = {1, 3};
    cfnet_tensor *x = tu_tensor(4, xs, NULL), *y = tu_tensor(2, ys, NULL);
    cfnet_network_free(net);
    /* used after free */
    CF_ASSERT_STATUS(cfnet_network_infer(net, x, y), CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "freed already"));
    int32_t lab[1] = {0};
    CF_ASSERT_STATUS(cfnet_network_train_step(net, x, lab, 1, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_save(net, "never-written.safetensors", 0),
                     CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(cfnet_network_layer_count(net), 0);
    assert_null(cfnet_network_layer(net, 0));
    /* freed twice */
    cfnet_clear_error();
    cfnet_network_free(net);
    assert_non_null(strstr(cfnet_last_error(), "freed already"));

    cfnet_tensor_free(x);
    CF_ASSERT_STATUS(cfnet_tensor_fill(x, 1.0f), CFNET_E_INVALID_ARGUMENT);
    cfnet_clear_error();
    cfnet_tensor_free(x);
    assert_non_null(strstr(cfnet_last_error(), "freed already"));

    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_relu_create(&l));
    cfnet_layer_free(l);
    int64_t shape[1] = {3};
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 1, shape, 1), CFNET_E_INVALID_ARGUMENT);
    cfnet_layer_free(l);

    cfnet_context *ctx = NULL;
    CF_ASSERT_OK(cfnet_context_create(&ctx));
    cfnet_context_free(ctx);
    CF_ASSERT_STATUS(cfnet_context_set_limit(ctx, CFNET_LIMIT_HEADER_BYTES, 10),
                     CFNET_E_INVALID_ARGUMENT);
    cfnet_context_free(ctx);
    cfnet_tensor_free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(freeing_an_owned_layer_is_refused),
        cmocka_unit_test(handles_of_the_wrong_kind_are_refused),
        cmocka_unit_test(double_free_and_use_after_free_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
