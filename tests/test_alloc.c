/* Allocator hooks: a context's allocator receives every allocation of its networks; failing the
 * k-th allocation (only that one, or every one from it on) while building a network, training,
 * saving or loading gives CFNET_E_OUT_OF_MEMORY or success, never a crash or a leak, and the
 * network stays usable or can be freed. */
#include "testutil.h"

#include "nn/network.h" /* stored allocators, workspaces */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct counting {
    long calls;      /* allocations attempted */
    long fail_at;    /* 1-based index of the first failing allocation; 0: never */
    int fail_after;  /* also fail every allocation after fail_at */
    long live;       /* blocks outstanding */
} counting;

static void *count_alloc(void *opaque, size_t size)
{
    counting *c = opaque;
    c->calls++;
    if (c->fail_at && (c->calls == c->fail_at || (c->fail_after && c->calls > c->fail_at)))
        return NULL;
    void *p = malloc(size);
    if (p) c->live++;
    return p;
}

static void count_free(void *opaque, void *p)
{
    counting *c = opaque;
    c->live--;
    free(p);
}

#define TRY_BUILD(expr)                        \
    do {                                       \
        cfnet_status s_ = (expr);              \
        if (s_ != CFNET_OK) return s_;         \
    } while (0)

/* Takes the layer by address: the create call in the argument list must run first. */
static cfnet_status append(cfnet_network *net, cfnet_status st, cfnet_layer **l)
{
    if (st != CFNET_OK) return st;
    return cfnet_network_append(net, *l);
}

/* A network with every kind of layer that allocates tables or parameters. */
static cfnet_status build(cfnet_context *ctx, cfnet_network **out)
{
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    TRY_BUILD(cfnet_network_create_in(ctx, 1, 10, 10, 3, &net));
    cfnet_status st = CFNET_OK;
#define ADD(create) \
    if (st == CFNET_OK) st = append(net, create, &l)
    ADD(cfnet_layer_conic_conv_create(3, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l));
    ADD(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l));
    ADD(cfnet_layer_relu_create(&l));
    ADD(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l));
    ADD(cfnet_layer_p4_lift_create(2, 3, CFNET_PADDING_SAME, &l));
    ADD(cfnet_layer_p4_conv_create(2, 3, CFNET_PADDING_SAME, &l));
    ADD(cfnet_layer_group_pool_create(CFNET_POOL_MEAN, &l));
    ADD(cfnet_layer_conv2d_create(3, 3, 1, CFNET_PADDING_SAME, &l));
    ADD(cfnet_layer_dft_projection_create(4, 2, CFNET_INTERP_BILINEAR, &l));
    ADD(cfnet_layer_dft_magnitude_create(&l));
    ADD(cfnet_layer_dropout_create(0.2f, &l));
    ADD(cfnet_layer_dense_create(3, &l));
#undef ADD
    if (st != CFNET_OK) {
        cfnet_network_free(net);
        return st;
    }
    *out = net;
    return CFNET_OK;
}

static cfnet_status train(cfnet_network *net)
{
    float x[4 * 100];
    tu_rng r = {1};
    tu_fill_normal(x, 400, &r);
    int64_t xs[] = {4, 1, 10, 10};
    int32_t y[4] = {0, 1, 2, 1};
    cfnet_tensor *t = NULL;
    cfnet_status st = cfnet_tensor_wrap(x, 4, xs, &t);
    if (st == CFNET_OK) st = cfnet_network_set_option(net, CFNET_OPTION_AUG_ROTATION, CFNET_AUG_ROTATION_ANY);
    if (st == CFNET_OK) st = cfnet_network_train_step(net, t, y, 4, NULL);
    float acc;
    if (st == CFNET_OK) st = cfnet_network_evaluate(net, t, y, 4, 2, NULL, &acc);
    double e;
    if (st == CFNET_OK) st = cfnet_network_invariance(net, t, NULL, 0, &e);
    cfnet_tensor_free(t);
    return st;
}

static void hooks_see_every_allocation_and_nothing_leaks(void **state)
{
    (void)state;
    counting c = {0, 0, 0, 0};
    cfnet_context *ctx = NULL;
    CF_ASSERT_OK(cfnet_context_create(&ctx));
    CF_ASSERT_OK(cfnet_context_set_allocator(ctx, count_alloc, count_free, &c));
    cfnet_network *net = NULL;
    CF_ASSERT_OK(build(ctx, &net));
    long after_build = c.calls;
    assert_true(after_build > 20);
    CF_ASSERT_OK(train(net));
    assert_true(c.calls > after_build);
    assert_true(c.live > 0);
    cfnet_network_free(net);
    assert_int_equal(c.live, 0);
    cfnet_context_free(ctx);
}

/* For every k: fail allocation k only, then every allocation from k on. */
static void failing_any_allocation_is_reported_and_leaks_nothing(void **state)
{
    (void)state;
    counting probe = {0, 0, 0, 0};
    cfnet_context *ctx = NULL;
    CF_ASSERT_OK(cfnet_context_create(&ctx));
    CF_ASSERT_OK(cfnet_context_set_allocator(ctx, count_alloc, count_free, &probe));
    cfnet_network *net = NULL;
    CF_ASSERT_OK(build(ctx, &net));
    long n_build = probe.calls;
    CF_ASSERT_OK(train(net));
    long n_total = probe.calls;
    cfnet_network_free(net);

    int oom_build = 0, oom_train = 0;
    for (int mode = 0; mode < 2; mode++) {
        for (long k = 1; k <= n_total; k++) {
            counting c = {0, k, mode, 0};
            CF_ASSERT_OK(cfnet_context_set_allocator(ctx, count_alloc, count_free, &c));
            net = NULL;
            cfnet_status st = build(ctx, &net);
            if (st != CFNET_OK) {
                if (st != CFNET_E_OUT_OF_MEMORY)
                    fail_msg("k=%ld build: %s (%s)", k, cfnet_status_string(st), cfnet_last_error());
                assert_true(k <= n_build);
                oom_build++;
                assert_int_equal(c.live, 0);
                continue;
            }
            st = train(net);
            if (st != CFNET_OK) {
                if (st != CFNET_E_OUT_OF_MEMORY)
                    fail_msg("k=%ld train: %s (%s)", k, cfnet_status_string(st), cfnet_last_error());
                oom_train++;
                /* Still usable: with allocations working again, training succeeds. */
                c.fail_at = 0;
                CF_ASSERT_OK(train(net));
            }
            cfnet_network_free(net);
            if (c.live != 0) fail_msg("k=%ld mode=%d: %ld blocks leaked", k, mode, c.live);
        }
    }
    assert_true(oom_build > 0);
    assert_true(oom_train > 0);
    cfnet_context_free(ctx);
}

/* Save (to a buffer and a file) and load (from both) with the k-th allocation failing. */
static cfnet_status save_load(cfnet_context *ctx, cfnet_network *net, const char *path)
{
    void *buf = NULL;
    size_t size = 0;
    cfnet_network *a = NULL, *b = NULL;
    cfnet_status st = cfnet_network_save_buffer(net, CFNET_SAVE_OPTIMIZER, &buf, &size);
    if (st == CFNET_OK) st = cfnet_network_save(net, path, CFNET_SAVE_OPTIMIZER);
    if (st == CFNET_OK) st = cfnet_network_load_buffer_in(ctx, buf, size, &a);
    if (st == CFNET_OK) st = cfnet_network_load_in(ctx, path, &b);
    cfnet_free(buf);
    cfnet_network_free(a);
    cfnet_network_free(b);
    return st;
}

static void failing_allocations_in_save_and_load_leak_nothing(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/alloc.safetensors", tu_outdir());
    counting c = {0, 0, 0, 0};
    cfnet_context *ctx = NULL;
    CF_ASSERT_OK(cfnet_context_create(&ctx));
    CF_ASSERT_OK(cfnet_context_set_allocator(ctx, count_alloc, count_free, &c));
    cfnet_network *net = NULL;
    CF_ASSERT_OK(build(ctx, &net));
    CF_ASSERT_OK(train(net));
    long before = c.calls;
    CF_ASSERT_OK(save_load(ctx, net, path));
    long n = c.calls - before;
    assert_true(n > 20);
    long base_live = c.live;
    int ooms = 0;
    for (int mode = 0; mode < 2; mode++) {
        for (long k = 1; k <= n; k++) {
            c.calls = 0;
            c.fail_at = k;
            c.fail_after = mode;
            cfnet_status st = save_load(ctx, net, path);
            c.fail_at = 0;
            if (st != CFNET_OK && st != CFNET_E_OUT_OF_MEMORY)
                fail_msg("k=%ld: %s (%s)", k, cfnet_status_string(st), cfnet_last_error());
            ooms += st == CFNET_E_OUT_OF_MEMORY;
            if (c.live != base_live) fail_msg("k=%ld mode=%d: %ld blocks leaked", k, mode, c.live - base_live);
        }
    }
    assert_true(ooms > 0);
    /* The file from the last successful save is intact and loads. */
    CF_ASSERT_OK(save_load(ctx, net, path));
    cfnet_network_free(net);
    assert_int_equal(c.live, 0);
    cfnet_context_free(ctx);
}

static void context_limits_apply_to_loading(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(build(NULL, &net));
    void *buf = NULL;
    size_t size = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(net, 0, &buf, &size));
    cfnet_context *ctx = NULL;
    CF_ASSERT_OK(cfnet_context_create(&ctx));
    cfnet_network *out = NULL;
    CF_ASSERT_OK(cfnet_network_load_buffer_in(ctx, buf, size, &out));
    cfnet_network_free(out);
    out = NULL;
    CF_ASSERT_OK(cfnet_context_set_limit(ctx, CFNET_LIMIT_TENSOR_BYTES, 64));
    CF_ASSERT_STATUS(cfnet_network_load_buffer_in(ctx, buf, size, &out), CFNET_E_LIMIT);
    CF_ASSERT_OK(cfnet_context_set_limit(ctx, CFNET_LIMIT_TENSOR_BYTES, 1 << 30));
    CF_ASSERT_OK(cfnet_context_set_limit(ctx, CFNET_LIMIT_HEADER_BYTES, 100));
    CF_ASSERT_STATUS(cfnet_network_load_buffer_in(ctx, buf, size, &out), CFNET_E_LIMIT);
    assert_null(out);
    cfnet_free(buf);
    cfnet_network_free(net);
    cfnet_context_free(ctx);
}

static void context_arguments_are_checked(void **state)
{
    (void)state;
    cfnet_context *ctx = NULL;
    uint64_t v;
    CF_ASSERT_STATUS(cfnet_context_create(NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_OK(cfnet_context_create(&ctx));
    CF_ASSERT_STATUS(cfnet_context_set_allocator(ctx, count_alloc, NULL, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_context_set_allocator(NULL, NULL, NULL, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_OK(cfnet_context_set_allocator(ctx, NULL, NULL, NULL));
    CF_ASSERT_OK(cfnet_context_get_limit(ctx, CFNET_LIMIT_HEADER_BYTES, &v));
    assert_true(v == (uint64_t)16 << 20);
    CF_ASSERT_OK(cfnet_context_set_limit(ctx, CFNET_LIMIT_TENSOR_BYTES, 1000));
    CF_ASSERT_OK(cfnet_context_get_limit(ctx, CFNET_LIMIT_TENSOR_BYTES, &v));
    assert_true(v == 1000);
    CF_ASSERT_STATUS(cfnet_context_set_limit(ctx, CFNET_LIMIT_TENSOR_BYTES, 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_context_set_limit(ctx, (cfnet_limit)9, 5), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_context_set_limit(NULL, CFNET_LIMIT_TENSOR_BYTES, 5), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_context_get_limit(ctx, CFNET_LIMIT_TENSOR_BYTES, NULL), CFNET_E_INVALID_ARGUMENT);
    cfnet_network *net = NULL;
    CF_ASSERT_STATUS(cfnet_network_create_in(ctx, 0, 1, 1, 0, &net), CFNET_E_INVALID_ARGUMENT);
    cfnet_context_free(ctx);
    cfnet_context_free(NULL);
}

/* Hooks returning addresses 8 bytes past a 64-byte boundary (malloc's alignment is 16). */
typedef struct skewed {
    long live;
} skewed;

static void *skew_alloc(void *opaque, size_t size)
{
    skewed *k = opaque;
    void *base = NULL;
    if (posix_memalign(&base, 64, size + 8) != 0) return NULL;
    k->live++;
    return (char *)base + 8;
}

static void skew_free(void *opaque, void *p)
{
    skewed *k = opaque;
    k->live--;
    free((char *)p - 8);
}

static bool aligned64(const void *p) { return ((uintptr_t)p & 63u) == 0; }

/* Every block is 64-byte aligned whatever the hooks return: workspaces, activations and
 * parameters of a trained network, and blocks of every size. */
static void blocks_and_workspaces_are_64_byte_aligned(void **state)
{
    (void)state;
    skewed k = {0};
    cf_allocator a = {skew_alloc, skew_free, &k};
    for (size_t n = 0; n < 300; n += 7) {
        void *p = cf_alloc(&a, n);
        assert_non_null(p);
        assert_true(aligned64(p));
        cf_free(p);
    }
    assert_int_equal(k.live, 0);

    cfnet_context *ctx = NULL;
    CF_ASSERT_OK(cfnet_context_create(&ctx));
    CF_ASSERT_OK(cfnet_context_set_allocator(ctx, skew_alloc, skew_free, &k));
    cfnet_network *net = NULL;
    CF_ASSERT_OK(build(ctx, &net));
    CF_ASSERT_OK(train(net));
    assert_true(net->ws != NULL && net->act != NULL);
    for (int i = 0; i < net->nlayers; i++) {
        if (net->ws[i]) assert_true(aligned64(net->ws[i]));
        assert_true(aligned64(net->act[i]));
        const cfnet_layer *l = net->layers[i];
        for (int p = 0; p < l->nparam; p++) {
            assert_true(aligned64(l->param[p]->data));
            assert_true(aligned64(l->grad[p]->data));
        }
    }
    assert_true(aligned64(net->input));
    cfnet_network_free(net);
    assert_int_equal(k.live, 0);
    cfnet_context_free(ctx);
}

/* The allocator is stored in each object: a network, its layers (from append on, or from the
 * start when loaded) and their tensors carry the context's hooks; changing the context's
 * allocator later does not move existing networks. */
static void objects_carry_their_allocator(void **state)
{
    (void)state;
    counting c = {0, 0, 0, 0}, other = {0, 0, 0, 0};
    cfnet_context *ctx = NULL;
    CF_ASSERT_OK(cfnet_context_create(&ctx));
    CF_ASSERT_OK(cfnet_context_set_allocator(ctx, count_alloc, count_free, &c));
    cfnet_network *net = NULL, *loaded = NULL;
    CF_ASSERT_OK(build(ctx, &net));
    void *buf = NULL;
    size_t size = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(net, 0, &buf, &size));
    CF_ASSERT_OK(cfnet_network_load_buffer_in(ctx, buf, size, &loaded));
    CF_ASSERT_OK(cfnet_context_set_allocator(ctx, count_alloc, count_free, &other));
    const cfnet_network *nets[2] = {net, loaded};
    for (int n = 0; n < 2; n++) {
        assert_ptr_equal(nets[n]->alloc.opaque, &c);
        for (int i = 0; i < nets[n]->nlayers; i++) {
            const cfnet_layer *l = nets[n]->layers[i];
            assert_ptr_equal(l->alloc.opaque, &c);
            for (int p = 0; p < l->nparam; p++) assert_ptr_equal(l->param[p]->alloc.opaque, &c);
        }
    }
    CF_ASSERT_OK(train(loaded)); /* allocates, with the hooks the network was loaded with */
    assert_int_equal(other.calls, 0);
    cfnet_free(buf);
    cfnet_network_free(net);
    cfnet_network_free(loaded);
    assert_int_equal(c.live, 0);
    cfnet_context_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hooks_see_every_allocation_and_nothing_leaks),
        cmocka_unit_test(failing_any_allocation_is_reported_and_leaks_nothing),
        cmocka_unit_test(failing_allocations_in_save_and_load_leak_nothing),
        cmocka_unit_test(context_limits_apply_to_loading),
        cmocka_unit_test(context_arguments_are_checked),
        cmocka_unit_test(blocks_and_workspaces_are_64_byte_aligned),
        cmocka_unit_test(objects_carry_their_allocator),
    };
    return cmocka_run_group_tests_name("alloc", tests, NULL, NULL);
}
