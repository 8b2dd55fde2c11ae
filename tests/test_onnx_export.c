/* cfnet_network_export_onnx and _buffer: the same bytes to a file and to a buffer, run after run;
 * bad arguments, an empty network, an unwritable path and a layer kind without an ONNX form
 * give their documented statuses and change nothing; failing any allocation gives
 * CFNET_E_OUT_OF_MEMORY and leaks nothing. What the model computes is checked against ONNX
 * Runtime by tests/test_onnx.sh. */
#include "testutil.h"

#include "nn/layer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct counting {
    long calls, fail_at, live;
} counting;

static void *count_alloc(void *opaque, size_t size)
{
    counting *c = opaque;
    if (++c->calls == c->fail_at) return NULL;
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

/* A small CFNet: every layer kind with a non-trivial export path on the way. */
static cfnet_network *cfnet_small(cfnet_context *ctx)
{
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create_in(ctx, 1, 10, 10, 7, &net));
#define ADD(create)              \
    do {                         \
        CF_ASSERT_OK(create);    \
        CF_ASSERT_OK(cfnet_network_append(net, l)); \
    } while (0)
    ADD(cfnet_layer_conic_conv_create(3, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l));
    ADD(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l));
    ADD(cfnet_layer_relu_create(&l));
    ADD(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l));
    ADD(cfnet_layer_dft_projection_create(4, 2, CFNET_INTERP_NEAREST, &l));
    ADD(cfnet_layer_dft_magnitude_create(&l));
    ADD(cfnet_layer_dropout_create(0.5f, &l));
    ADD(cfnet_layer_dense_create(3, &l));
#undef ADD
    return net;
}

static int contains(const void *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (!memcmp((const char *)hay + i, needle, m)) return 1;
    return 0;
}

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void export_writes_the_same_bytes_to_file_and_buffer_every_time(void **state)
{
    (void)state;
    cfnet_network *net = cfnet_small(NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/onnx_export.onnx", tu_outdir());
    for (unsigned flags = 0; flags <= CFNET_ONNX_PROBABILITIES; flags++) {
        void *a = NULL, *b = NULL;
        size_t na = 0, nb = 0, nf = 0;
        CF_ASSERT_OK(cfnet_network_export_onnx_buffer(net, flags, &a, &na));
        CF_ASSERT_OK(cfnet_network_export_onnx_buffer(net, flags, &b, &nb));
        CF_ASSERT_OK(cfnet_network_export_onnx(net, path, flags));
        unsigned char *f = read_file(path, &nf);
        assert_true(na > 1000);
        assert_int_equal(na, nb);
        assert_int_equal(na, nf);
        assert_memory_equal(a, b, na);
        assert_memory_equal(a, f, na);
        /* The producer name is in the message as plain bytes. */
        assert_true(contains(a, na, "libcfnet"));
        cfnet_free(a);
        cfnet_free(b);
        free(f);
    }
    cfnet_network_free(net);
}

static void export_failures_report_and_change_nothing(void **state)
{
    (void)state;
    cfnet_network *net = cfnet_small(NULL), *empty = NULL;
    void *buf = (void *)&buf;
    size_t size = 123;
    CF_ASSERT_STATUS(cfnet_network_export_onnx_buffer(net, 2u, &buf, &size),
                     CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "flags"));
    assert_ptr_equal(buf, (void *)&buf);
    assert_int_equal(size, 123);

    CF_ASSERT_OK(cfnet_network_create(1, 8, 8, 1, &empty));
    CF_ASSERT_STATUS(cfnet_network_export_onnx_buffer(empty, 0, &buf, &size), CFNET_E_STATE);
    cfnet_network_free(empty);

    /* An empty path is a bad argument, as for cfnet_network_save: no temporary file is tried
     * in the current directory. */
    CF_ASSERT_STATUS(cfnet_network_export_onnx(net, "", 0), CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "path is empty"));

    char path[512];
    snprintf(path, sizeof path, "%s/no-such-dir/model.onnx", tu_outdir());
    CF_ASSERT_STATUS(cfnet_network_export_onnx(net, path, 0), CFNET_E_IO);
    assert_non_null(strstr(cfnet_last_error(), "no-such-dir"));

    /* An existing file survives a failed export. */
    snprintf(path, sizeof path, "%s/onnx_keep.onnx", tu_outdir());
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("keep", f);
    fclose(f);
    CF_ASSERT_STATUS(cfnet_network_export_onnx(net, path, 4u), CFNET_E_INVALID_ARGUMENT);
    size_t n = 0;
    unsigned char *kept = read_file(path, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(kept, "keep", 4);
    free(kept);
    cfnet_network_free(net);
}

/* Conic convolution with reflection exports too (its values are checked in ONNX Runtime by
 * tests/test_onnx.sh); its name appears in the model's layer list. */
static void conic_conv_mirror_exports(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 8, 8, 1, &net));
    CF_ASSERT_OK(cfnet_layer_conic_conv_mirror_create(2, 3, 1, CFNET_PADDING_SAME,
                                                      CFNET_INTERP_NEAREST, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    void *buf = NULL;
    size_t size = 0;
    CF_ASSERT_OK(cfnet_network_export_onnx_buffer(net, 0, &buf, &size));
    assert_true(contains(buf, size, "conic_conv_mirror"));
    cfnet_free(buf);
    cfnet_network_free(net);
}

static void a_layer_kind_without_onnx_form_is_unsupported(void **state)
{
    (void)state;
    cfnet_network *net = cfnet_small(NULL);
    cfnet_layer *l = cfnet_network_layer(net, 2);
    int kind = l->kind;
    l->kind = 999; /* a kind this exporter does not know */
    void *buf = NULL;
    size_t size = 0;
    CF_ASSERT_STATUS(cfnet_network_export_onnx_buffer(net, 0, &buf, &size), CFNET_E_UNSUPPORTED);
    assert_non_null(strstr(cfnet_last_error(), "layer 2"));
    assert_non_null(strstr(cfnet_last_error(), "no ONNX form"));
    assert_null(buf);
    l->kind = kind;
    CF_ASSERT_OK(cfnet_network_export_onnx_buffer(net, 0, &buf, &size));
    cfnet_free(buf);
    cfnet_network_free(net);
}

static void failing_any_allocation_is_reported_and_leaks_nothing(void **state)
{
    (void)state;
    cfnet_context *ctx = NULL;
    CF_ASSERT_OK(cfnet_context_create(&ctx));
    counting c = {0, 0, 0};
    CF_ASSERT_OK(cfnet_context_set_allocator(ctx, count_alloc, count_free, &c));
    cfnet_network *net = cfnet_small(ctx);
    void *ref = NULL, *buf = NULL;
    size_t nref = 0, size = 0;
    long before = c.calls;
    CF_ASSERT_OK(cfnet_network_export_onnx_buffer(net, 0, &ref, &nref));
    long needed = c.calls - before, live = c.live;
    assert_true(needed > 10);
    int failures = 0;
    for (long k = 1; k <= needed; k++) {
        c.calls = 0;
        c.fail_at = k;
        buf = NULL;
        cfnet_status st = cfnet_network_export_onnx_buffer(net, 0, &buf, &size);
        c.fail_at = 0;
        if (st == CFNET_OK) {
            assert_int_equal(size, nref);
            assert_memory_equal(buf, ref, nref);
            cfnet_free(buf);
            continue;
        }
        if (st != CFNET_E_OUT_OF_MEMORY)
            fail_msg("k=%ld: %s (%s)", k, cfnet_status_string(st), cfnet_last_error());
        assert_null(buf);
        if (c.live != live) fail_msg("k=%ld: %ld blocks leaked", k, c.live - live);
        failures++;
    }
    assert_true(failures > 0);
    cfnet_free(ref);
    cfnet_network_free(net);
    assert_int_equal(c.live, 0);
    cfnet_context_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(export_writes_the_same_bytes_to_file_and_buffer_every_time),
        cmocka_unit_test(export_failures_report_and_change_nothing),
        cmocka_unit_test(a_layer_kind_without_onnx_form_is_unsupported),
        cmocka_unit_test(conic_conv_mirror_exports),
        cmocka_unit_test(failing_any_allocation_is_reported_and_leaks_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
