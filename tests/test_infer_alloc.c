/* Inference allocates nothing after its first call: a network created in a context whose
 * allocator counts calls runs cfnet_network_infer / probabilities / predict / evaluate many times
 * (1 and 2 engine threads, batch 1 and smaller batches) and the count stays where the first call
 * left it; a larger batch allocates once more; the cached buffers are freed with the network
 * (every allocation is matched by a free) and show up in cfnet_network_memory_usage, which
 * counts every block the network holds (tables, tensors, buffers, caches). */
#include "testutil.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct counter {
    atomic_long allocs, frees;
} counter;

static void *count_alloc(void *opaque, size_t size)
{
    counter *c = opaque;
    atomic_fetch_add(&c->allocs, 1);
    return malloc(size ? size : 1);
}

static void count_free(void *opaque, void *p)
{
    counter *c = opaque;
    atomic_fetch_add(&c->frees, 1);
    free(p);
}

enum { S = 16, K = 5 };

#define APPEND(net, expr)                              \
    do {                                               \
        cfnet_layer *l_ = NULL;                        \
        CF_ASSERT_OK(expr);                            \
        CF_ASSERT_OK(cfnet_network_append((net), l_)); \
    } while (0)

/* Every layer kind that inference runs in the preset classifiers: conic, p4 and planar
 * convolutions, batch norm, ReLU, pooling, group pooling, the DFT transition, dropout, dense,
 * softmax. */
static cfnet_network *make_net(cfnet_context *ctx)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create_in(ctx, 2, S, S, 11, &net));
    APPEND(net, cfnet_layer_conic_conv_create(6, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l_));
    APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 2, 2, &l_));
    APPEND(net, cfnet_layer_conv2d_create(6, 3, 1, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_p4_lift_create(3, 3, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_p4_conv_create(3, 3, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_group_pool_create(CFNET_POOL_MEAN, &l_));
    APPEND(net, cfnet_layer_dft_projection_create(5, 1, CFNET_INTERP_BILINEAR, &l_));
    APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_dft_magnitude_create(&l_));
    APPEND(net, cfnet_layer_dropout_create(0.2f, &l_));
    APPEND(net, cfnet_layer_dense_create(K, &l_));
    APPEND(net, cfnet_layer_softmax_create(&l_));
    return net;
}

static void run_all(cfnet_network *net, cfnet_tensor *x, cfnet_tensor *o, int32_t *labels,
                    int64_t n)
{
    CF_ASSERT_OK(cfnet_network_infer(net, x, o));
    CF_ASSERT_OK(cfnet_network_probabilities(net, x, o));
    CF_ASSERT_OK(cfnet_network_predict(net, x, labels, n));
    CF_ASSERT_OK(cfnet_network_forward(net, x, o, CFNET_MODE_INFERENCE));
}

static void check_threads(int threads)
{
    counter c;
    atomic_init(&c.allocs, 0);
    atomic_init(&c.frees, 0);
    cfnet_context *ctx = NULL;
    CF_ASSERT_OK(cfnet_context_create(&ctx));
    CF_ASSERT_OK(cfnet_context_set_allocator(ctx, count_alloc, count_free, &c));
    cfnet_network *net = make_net(ctx);
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, threads));
    int64_t xs[] = {4, 2, S, S}, os[] = {4, K};
    tu_rng r = {3};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *o = tu_tensor(2, os, NULL);
    int64_t x1s[] = {1, 2, S, S}, o1s[] = {1, K};
    cfnet_tensor *x1 = tu_tensor(4, x1s, &r), *o1 = tu_tensor(2, o1s, NULL);
    int32_t labels[4];
    size_t before = cfnet_network_memory_usage(net);

    run_all(net, x, o, labels, 4); /* first call: allocates the buffers */
    long first = atomic_load(&c.allocs);
    assert_true(cfnet_network_memory_usage(net) > before); /* the cache is accounted */
    for (int rep = 0; rep < 25; rep++) {
        run_all(net, x, o, labels, 4);
        run_all(net, x1, o1, labels, 1); /* a smaller batch fits the same buffers */
    }
    assert_int_equal(atomic_load(&c.allocs), first);

    /* A larger batch replaces the buffers once, then stays put again. */
    int64_t x8s[] = {8, 2, S, S}, o8s[] = {8, K};
    cfnet_tensor *x8 = tu_tensor(4, x8s, &r), *o8 = tu_tensor(2, o8s, NULL);
    int32_t labels8[8];
    run_all(net, x8, o8, labels8, 8);
    long second = atomic_load(&c.allocs);
    assert_true(second > first);
    for (int rep = 0; rep < 10; rep++) {
        run_all(net, x8, o8, labels8, 8);
        run_all(net, x1, o1, labels, 1);
    }
    assert_int_equal(atomic_load(&c.allocs), second);

    /* Results do not depend on the reuse: a fresh network gives the same outputs. */
    cfnet_network *fresh = make_net(ctx);
    CF_ASSERT_OK(cfnet_network_set_option(fresh, CFNET_OPTION_THREADS, threads));
    cfnet_tensor *o8b = tu_tensor(2, o8s, NULL);
    CF_ASSERT_OK(cfnet_network_infer(fresh, x8, o8b));
    CF_ASSERT_OK(cfnet_network_infer(net, x8, o8));
    assert_memory_equal(cfnet_tensor_data(o8), cfnet_tensor_data(o8b), 8 * K * sizeof(float));

    cfnet_network_free(fresh);
    cfnet_network_free(net);
    assert_int_equal(atomic_load(&c.allocs), atomic_load(&c.frees));
    cfnet_context_free(ctx);
    cfnet_tensor_free(x);
    cfnet_tensor_free(o);
    cfnet_tensor_free(x1);
    cfnet_tensor_free(o1);
    cfnet_tensor_free(x8);
    cfnet_tensor_free(o8);
    cfnet_tensor_free(o8b);
}

static void no_allocation_after_first_call_1_thread(void **state)
{
    (void)state;
    check_threads(1);
}

static void no_allocation_after_first_call_2_threads(void **state)
{
    (void)state;
    check_threads(2);
}

/* What the first inference allocates shows up in cfnet_network_memory_usage: the buffers kept
 * for reuse and every layer's inference cache (conic, p4, p4m, DFT projection, mirrored conic:
 * copies of the weights and the banks packed for the engine). The hooks see each block with the
 * library's header and alignment slack (under 128 bytes a block), which the usage does not
 * count. */
static void memory_usage_counts_inference_caches(void **state)
{
    (void)state;
    for (int family = 0; family < 3; family++) {
        tu_live_bytes c;
        atomic_init(&c.live, 0);
        atomic_init(&c.blocks, 0);
        cfnet_context *ctx = NULL;
        CF_ASSERT_OK(cfnet_context_create(&ctx));
        CF_ASSERT_OK(cfnet_context_set_allocator(ctx, tu_live_alloc, tu_live_free, &c));
        cfnet_network *net = NULL;
        CF_ASSERT_OK(cfnet_network_create_in(ctx, 4, 20, 20, 13, &net));
        if (family == 0) {
            APPEND(net, cfnet_layer_conic_conv_create(24, 5, 2, CFNET_PADDING_SAME,
                                                      CFNET_INTERP_NEAREST, &l_));
            APPEND(net, cfnet_layer_relu_create(&l_));
            APPEND(net, cfnet_layer_p4_lift_create(12, 5, CFNET_PADDING_SAME, &l_));
            APPEND(net, cfnet_layer_p4_conv_create(12, 5, CFNET_PADDING_SAME, &l_));
            APPEND(net, cfnet_layer_group_pool_create(CFNET_POOL_MEAN, &l_));
            APPEND(net, cfnet_layer_dft_projection_create(48, 1, CFNET_INTERP_BILINEAR, &l_));
        } else if (family == 1) {
            APPEND(net, cfnet_layer_p4m_lift_create(8, 5, CFNET_PADDING_SAME, &l_));
            APPEND(net, cfnet_layer_p4m_conv_create(8, 5, CFNET_PADDING_SAME, &l_));
            APPEND(net, cfnet_layer_group_pool_create(CFNET_POOL_MAX, &l_));
        } else {
            APPEND(net, cfnet_layer_conic_conv_mirror_create(12, 5, 2, CFNET_PADDING_SAME,
                                                             CFNET_INTERP_NEAREST, &l_));
        }
        APPEND(net, cfnet_layer_dense_create(K, &l_));
        int64_t xs[] = {2, 4, 20, 20}, os[] = {2, K};
        tu_rng r = {7};
        cfnet_tensor *x = tu_tensor(4, xs, &r), *o = tu_tensor(2, os, NULL);
        size_t used0 = cfnet_network_memory_usage(net);
        long live0 = atomic_load(&c.live), blocks0 = atomic_load(&c.blocks);
        CF_ASSERT_OK(cfnet_network_infer(net, x, o));
        size_t used1 = cfnet_network_memory_usage(net);
        long live1 = atomic_load(&c.live), blocks1 = atomic_load(&c.blocks);
        size_t grew = (size_t)(live1 - live0), counted = used1 - used0,
               slack = (size_t)(blocks1 - blocks0) * 128;
        if (counted > grew || grew - counted > slack)
            fail_msg("family %d: the first inference allocated %zu bytes in %ld blocks, "
                     "the usage grew by %zu", family, grew, blocks1 - blocks0, counted);
        cfnet_tensor_free(x);
        cfnet_tensor_free(o);
        cfnet_network_free(net);
        assert_int_equal(atomic_load(&c.live), 0);
        cfnet_context_free(ctx);
    }
}

/* Usage against what the hooks hold for the network (live bytes since before it was loaded):
 * equal but for the library's header and alignment slack, the same number of bytes (under 128)
 * for every block, so held - used is exactly blocks times it: a block left out, however small,
 * shows. *per_block is that number, found by the first call (-1 before). */
static void check_held(cfnet_network *net, const tu_live_bytes *c, long live0, long blocks0,
                       long *per_block, int family, const char *when)
{
    size_t used = cfnet_network_memory_usage(net);
    long held = atomic_load(&c->live) - live0, blocks = atomic_load(&c->blocks) - blocks0;
    long extra = held - (long)used;
    if (*per_block < 0 && blocks > 0 && extra >= 0 && extra % blocks == 0 && extra < blocks * 128)
        *per_block = extra / blocks;
    if (*per_block < 0 || extra != blocks * *per_block)
        fail_msg("family %d, %s: the network holds %ld bytes in %ld blocks, the usage is %zu "
                 "(the library's own bytes a block, from the first check: %ld)",
                 family, when, held, blocks, used, *per_block);
}

/* Everything a network holds between calls is in cfnet_network_memory_usage: its layers' tables
 * (rotation maps, convolution plans and the index tables they keep per output pixel), the
 * parameter tensors, the buffers and caches of the first inference and of a training step.
 * The network is loaded in the context (so that every block, layer objects too, goes through
 * its hooks) and the usage compared with the live bytes after the load, after a first
 * inference, after a training step, after another inference, after a forward call of its
 * first layer alone (whose workspace the layer keeps) and with metadata. Every kind with
 * tables or caches: conv2d (stride 1 and 2), pooling, conic (R = 1, 2, 4), mirrored conic, p4,
 * p4m, group pooling, DFT projection on planar, p4 and p4m maps, DFT magnitude, dense. */
static void memory_usage_counts_what_the_network_holds(void **state)
{
    (void)state;
    enum { C = 2, H = 16, N = 3 };
    long per_block = -1; /* the library's bytes on top of every block, see check_held */
    for (int family = 0; family < 6; family++) {
        cfnet_network *net = NULL;
        CF_ASSERT_OK(cfnet_network_create(C, H, H, 5, &net));
        switch (family) {
        case 0:
            APPEND(net, cfnet_layer_conv2d_create(6, 3, 1, CFNET_PADDING_SAME, &l_));
            APPEND(net, cfnet_layer_relu_create(&l_));
            APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 2, 2, &l_));
            APPEND(net, cfnet_layer_conv2d_create(4, 3, 2, CFNET_PADDING_VALID, &l_));
            break;
        case 1:
            APPEND(net, cfnet_layer_conic_conv_create(6, 3, 1, CFNET_PADDING_SAME,
                                                      CFNET_INTERP_NEAREST, &l_));
            APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MEAN, 2, 2, &l_));
            APPEND(net, cfnet_layer_conic_conv_create(4, 5, 4, CFNET_PADDING_VALID,
                                                      CFNET_INTERP_BILINEAR, &l_));
            break;
        case 2:
            APPEND(net, cfnet_layer_conic_conv_create(6, 5, 2, CFNET_PADDING_SAME,
                                                      CFNET_INTERP_NEAREST, &l_));
            APPEND(net, cfnet_layer_relu_create(&l_));
            APPEND(net, cfnet_layer_dft_projection_create(5, 2, CFNET_INTERP_BILINEAR, &l_));
            APPEND(net, cfnet_layer_dft_magnitude_create(&l_));
            break;
        case 3:
            APPEND(net, cfnet_layer_conic_conv_mirror_create(4, 3, 2, CFNET_PADDING_SAME,
                                                             CFNET_INTERP_NEAREST, &l_));
            APPEND(net, cfnet_layer_conic_conv_mirror_create(4, 3, 1, CFNET_PADDING_VALID,
                                                             CFNET_INTERP_NEAREST, &l_));
            break;
        case 4:
            APPEND(net, cfnet_layer_p4_lift_create(4, 3, CFNET_PADDING_SAME, &l_));
            APPEND(net, cfnet_layer_p4_conv_create(4, 3, CFNET_PADDING_SAME, &l_));
            APPEND(net, cfnet_layer_dft_projection_create(5, 1, CFNET_INTERP_NEAREST, &l_));
            APPEND(net, cfnet_layer_dft_magnitude_create(&l_));
            break;
        default:
            APPEND(net, cfnet_layer_p4m_lift_create(3, 3, CFNET_PADDING_SAME, &l_));
            APPEND(net, cfnet_layer_p4m_conv_create(3, 3, CFNET_PADDING_VALID, &l_));
            APPEND(net, cfnet_layer_group_pool_create(CFNET_POOL_MAX, &l_));
            APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 2, 2, &l_));
            APPEND(net, cfnet_layer_p4m_lift_create(2, 3, CFNET_PADDING_SAME, &l_));
            APPEND(net, cfnet_layer_dft_projection_create(4, 1, CFNET_INTERP_NEAREST, &l_));
            break;
        }
        APPEND(net, cfnet_layer_dense_create(K, &l_));
        void *buf = NULL;
        size_t size = 0;
        CF_ASSERT_OK(cfnet_network_save_buffer(net, 0, &buf, &size));
        cfnet_network_free(net);

        tu_live_bytes c;
        atomic_init(&c.live, 0);
        atomic_init(&c.blocks, 0);
        cfnet_context *ctx = NULL;
        CF_ASSERT_OK(cfnet_context_create(&ctx));
        CF_ASSERT_OK(cfnet_context_set_allocator(ctx, tu_live_alloc, tu_live_free, &c));
        long live0 = atomic_load(&c.live), blocks0 = atomic_load(&c.blocks);
        CF_ASSERT_OK(cfnet_network_load_buffer_in(ctx, buf, size, &net));
        cfnet_free(buf);
        check_held(net, &c, live0, blocks0, &per_block, family, "loaded");
        int64_t xs[] = {N, C, H, H}, os[] = {N, K};
        tu_rng r = {11};
        cfnet_tensor *x = tu_tensor(4, xs, &r), *o = tu_tensor(2, os, NULL);
        CF_ASSERT_OK(cfnet_network_infer(net, x, o));
        check_held(net, &c, live0, blocks0, &per_block, family, "after the first inference");
        int32_t labels[N] = {0, 1, 2};
        float loss = 0.0f;
        CF_ASSERT_OK(cfnet_network_train_step(net, x, labels, N, &loss));
        check_held(net, &c, live0, blocks0, &per_block, family, "after a training step");
        CF_ASSERT_OK(cfnet_network_infer(net, x, o));
        check_held(net, &c, live0, blocks0, &per_block, family, "after another inference");
        /* A layer of the network run on its own keeps a workspace, the network's to count. */
        int od = 0;
        int64_t ys[CFNET_MAX_DIMS] = {N};
        cfnet_layer *first = cfnet_network_layer(net, 0);
        CF_ASSERT_OK(cfnet_layer_output_shape(first, &od, ys + 1));
        cfnet_tensor *y = tu_tensor(od + 1, ys, NULL);
        CF_ASSERT_OK(cfnet_layer_forward(first, x, y, CFNET_MODE_INFERENCE));
        cfnet_tensor_free(y);
        check_held(net, &c, live0, blocks0, &per_block, family,
                   "after cfnet_layer_forward on its first layer");
        /* Metadata: entries added, one replaced by a longer value, one removed. */
        char key[16];
        for (int k = 0; k < 10; k++) {
            snprintf(key, sizeof key, "key%d", k);
            CF_ASSERT_OK(cfnet_network_set_metadata(net, key, "a value"));
        }
        CF_ASSERT_OK(cfnet_network_set_metadata(net, "key3", "a longer value than before"));
        CF_ASSERT_OK(cfnet_network_set_metadata(net, "key5", NULL));
        check_held(net, &c, live0, blocks0, &per_block, family, "with metadata");
        cfnet_network_free(net);
        assert_int_equal(atomic_load(&c.live), live0);
        cfnet_tensor_free(x);
        cfnet_tensor_free(o);
        cfnet_context_free(ctx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_allocation_after_first_call_1_thread),
        cmocka_unit_test(no_allocation_after_first_call_2_threads),
        cmocka_unit_test(memory_usage_counts_inference_caches),
        cmocka_unit_test(memory_usage_counts_what_the_network_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
