/* Contexts: an allocator and the loader's limits. */
#include "context.h"

#include <string.h>

CFNET_API cfnet_status cfnet_context_create(cfnet_context **out)
{
    CF_FAIL_IF(!out, CFNET_E_INVALID_ARGUMENT, "context_create: out is NULL");
    cfnet_context *ctx = cf_alloc_zero(NULL, 1, sizeof *ctx);
    CF_FAIL_IF(!ctx, CFNET_E_OUT_OF_MEMORY, "context_create: out of memory");
    ctx->magic = CF_MAGIC_CONTEXT;
    ctx->alloc = cf_default_allocator;
    ctx->max_header_bytes = CF_DEFAULT_MAX_HEADER_BYTES;
    ctx->max_tensor_bytes = CF_DEFAULT_MAX_TENSOR_BYTES;
    *out = ctx;
    return CFNET_OK;
}

CFNET_API void cfnet_context_free(cfnet_context *ctx)
{
    if (!ctx || !cf_handle_ok(ctx, CF_MAGIC_CONTEXT, "context", __func__)) return;
    ctx->magic = CF_MAGIC_FREED;
    cf_free(ctx);
}

CFNET_API cfnet_status cfnet_context_set_allocator(cfnet_context *ctx, cfnet_alloc_fn alloc,
                                                   cfnet_free_fn free_fn, void *opaque)
{
    CF_CHECK(cf_handle_check(ctx, CF_MAGIC_CONTEXT, "context", __func__));
    CF_FAIL_IF(!ctx, CFNET_E_INVALID_ARGUMENT, "context_set_allocator: context is NULL");
    CF_FAIL_IF(!alloc != !free_fn, CFNET_E_INVALID_ARGUMENT,
               "context_set_allocator: give both hooks or neither");
    if (!alloc) {
        ctx->alloc = cf_default_allocator;
    } else {
        ctx->alloc.alloc = alloc;
        ctx->alloc.free = free_fn;
        ctx->alloc.opaque = opaque;
    }
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_context_set_limit(cfnet_context *ctx, cfnet_limit limit,
                                               uint64_t value)
{
    CF_CHECK(cf_handle_check(ctx, CF_MAGIC_CONTEXT, "context", __func__));
    CF_FAIL_IF(!ctx, CFNET_E_INVALID_ARGUMENT, "context_set_limit: context is NULL");
    CF_FAIL_IF(value < 1, CFNET_E_INVALID_ARGUMENT, "context_set_limit: limit must be >= 1");
    switch (limit) {
    case CFNET_LIMIT_HEADER_BYTES: ctx->max_header_bytes = value; return CFNET_OK;
    case CFNET_LIMIT_TENSOR_BYTES: ctx->max_tensor_bytes = value; return CFNET_OK;
    }
    return cf_error(CFNET_E_INVALID_ARGUMENT, "context_set_limit: unknown limit %d", (int)limit);
}

CFNET_API cfnet_status cfnet_context_get_limit(const cfnet_context *ctx, cfnet_limit limit,
                                               uint64_t *value)
{
    CF_CHECK(cf_handle_check(ctx, CF_MAGIC_CONTEXT, "context", __func__));
    CF_FAIL_IF(!ctx || !value, CFNET_E_INVALID_ARGUMENT, "context_get_limit: NULL argument");
    switch (limit) {
    case CFNET_LIMIT_HEADER_BYTES: *value = ctx->max_header_bytes; return CFNET_OK;
    case CFNET_LIMIT_TENSOR_BYTES: *value = ctx->max_tensor_bytes; return CFNET_OK;
    }
    return cf_error(CFNET_E_INVALID_ARGUMENT, "context_get_limit: unknown limit %d", (int)limit);
}

const cf_allocator *cf_context_allocator(const cfnet_context *ctx)
{
    return ctx ? &ctx->alloc : &cf_default_allocator;
}
