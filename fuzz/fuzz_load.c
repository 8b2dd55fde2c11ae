/* libFuzzer target: any bytes given to the loader give a network or an error, nothing else. */
#include <stddef.h>
#include <stdint.h>

#include "cfnet/cfnet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cfnet_context *ctx;
    if (!ctx) { /* keep the fuzzer's memory bounded: small models only */
        if (cfnet_context_create(&ctx) != CFNET_OK) return 0;
        cfnet_context_set_limit(ctx, CFNET_LIMIT_HEADER_BYTES, 1 << 16);
        cfnet_context_set_limit(ctx, CFNET_LIMIT_TENSOR_BYTES, 1 << 22);
    }
    cfnet_network *net = NULL;
    if (cfnet_network_load_buffer_in(ctx, data, size, &net) == CFNET_OK) {
        char buf[256];
        size_t need;
        cfnet_network_summary(net, buf, sizeof buf, &need);
        cfnet_network_free(net);
    }
    return 0;
}
