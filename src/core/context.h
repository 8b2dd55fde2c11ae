/* The context object (private). */
#ifndef CFNET_CONTEXT_H
#define CFNET_CONTEXT_H

#include "core/core.h"

#define CF_DEFAULT_MAX_HEADER_BYTES ((uint64_t)16 << 20)
#define CF_DEFAULT_MAX_TENSOR_BYTES ((uint64_t)4 << 30)

struct cfnet_context {
    uint32_t magic; /* CF_MAGIC_CONTEXT */
    cf_allocator alloc;
    uint64_t max_header_bytes, max_tensor_bytes;
};

/* The allocator of a context (the default for NULL). */
const cf_allocator *cf_context_allocator(const cfnet_context *ctx);

#endif
