/* libFuzzer target: whatever loads must save and load again to the same bytes and the same
 * outputs. A file may hold NaN or infinite values (saved with CFNET_SAVE_ALLOW_NONFINITE): a
 * plain save refuses those with CFNET_E_NUMERIC and nothing else, and the round trip is made
 * with the flag. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cfnet/cfnet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok) abort(); /* a fuzzing harness reports a violated property by crashing */
}

/* Runs a fixed input through the network (if its input is small) into out; returns numel. */
static int64_t run(cfnet_network *net, float *out, int64_t room)
{
    int nd;
    int64_t in[CFNET_MAX_DIMS], os[CFNET_MAX_DIMS];
    if (cfnet_network_input_shape(net, &nd, in) != CFNET_OK) return -1;
    if (in[0] * in[1] * in[2] > 4096) return -1;
    if (cfnet_network_output_shape(net, &nd, os + 1) != CFNET_OK) return -1;
    os[0] = 1;
    int64_t n = 1;
    for (int i = 1; i <= nd; i++) n *= os[i];
    if (n > room) return -1;
    int64_t xs[4] = {1, in[0], in[1], in[2]};
    cfnet_tensor *x = NULL, *y = NULL;
    int64_t got = -1;
    if (cfnet_tensor_create(4, xs, &x) == CFNET_OK && cfnet_tensor_create(nd + 1, os, &y) == CFNET_OK) {
        float *xd = cfnet_tensor_data(x);
        for (int64_t i = 0; i < cfnet_tensor_numel(x); i++) xd[i] = (float)((i * 37) % 11) - 5.0f;
        if (cfnet_network_infer(net, x, y) == CFNET_OK) {
            memcpy(out, cfnet_tensor_data(y), (size_t)n * sizeof(float));
            got = n;
        }
    }
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cfnet_context *ctx;
    if (!ctx) {
        if (cfnet_context_create(&ctx) != CFNET_OK) return 0;
        cfnet_context_set_limit(ctx, CFNET_LIMIT_HEADER_BYTES, 1 << 16);
        cfnet_context_set_limit(ctx, CFNET_LIMIT_TENSOR_BYTES, 1 << 22);
    }
    cfnet_network *a = NULL, *b = NULL;
    if (cfnet_network_load_buffer_in(ctx, data, size, &a) != CFNET_OK) return 0;
    void *s0 = NULL, *s1 = NULL, *s2 = NULL;
    size_t n0 = 0, n1 = 0, n2 = 0;
    const unsigned flags = CFNET_SAVE_OPTIMIZER | CFNET_SAVE_ALLOW_NONFINITE;
    cfnet_status plain = cfnet_network_save_buffer(a, CFNET_SAVE_OPTIMIZER, &s0, &n0);
    check(plain == CFNET_OK || plain == CFNET_E_NUMERIC);
    check(cfnet_network_save_buffer(a, flags, &s1, &n1) == CFNET_OK);
    if (plain == CFNET_OK) check(n0 == n1 && memcmp(s0, s1, n0) == 0);
    cfnet_free(s0);
    check(cfnet_network_load_buffer_in(ctx, s1, n1, &b) == CFNET_OK);
    check(cfnet_network_save_buffer(b, flags, &s2, &n2) == CFNET_OK);
    check(n1 == n2 && memcmp(s1, s2, n1) == 0);
    static float ya[1 << 14], yb[1 << 14];
    int64_t na = run(a, ya, 1 << 14), nb = run(b, yb, 1 << 14);
    check(na == nb);
    if (na > 0) check(memcmp(ya, yb, (size_t)na * sizeof(float)) == 0);
    cfnet_free(s1);
    cfnet_free(s2);
    cfnet_network_free(a);
    cfnet_network_free(b);
    return 0;
}
