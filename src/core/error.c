/* Status names and the per-thread error message. */
#include "core/core.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char cf_last_error_buf[512];

CFNET_API const char *cfnet_status_string(cfnet_status status)
{
    switch (status) {
    case CFNET_OK: return "ok";
    case CFNET_E_INVALID_ARGUMENT: return "invalid argument";
    case CFNET_E_OUT_OF_MEMORY: return "out of memory";
    case CFNET_E_SHAPE_MISMATCH: return "shape mismatch";
    case CFNET_E_IO: return "input/output error";
    case CFNET_E_FORMAT: return "format error";
    case CFNET_E_UNSUPPORTED: return "unsupported";
    case CFNET_E_INTERNAL: return "internal error";
    case CFNET_E_STATE: return "invalid state";
    case CFNET_E_LIMIT: return "limit exceeded";
    case CFNET_E_NUMERIC: return "non-finite numbers";
    case CFNET_E_CANCELLED: return "cancelled";
    }
    return "unknown status";
}

bool cf_handle_ok(const void *h, uint32_t magic, const char *kind, const char *fn)
{
    if (!h) return true;
    uint32_t m;
    memcpy(&m, h, sizeof m);
    if (m == magic) return true;
    if (m == CF_MAGIC_FREED)
        cf_error(CFNET_E_INVALID_ARGUMENT, "%s: the %s handle was freed already", fn, kind);
    else
        cf_error(CFNET_E_INVALID_ARGUMENT,
                 "%s: the %s handle is not a live %s (freed and reused, or another kind)", fn,
                 kind, kind);
    return false;
}

cfnet_status cf_handle_check(const void *h, uint32_t magic, const char *kind, const char *fn)
{
    return cf_handle_ok(h, magic, kind, fn) ? CFNET_OK : CFNET_E_INVALID_ARGUMENT;
}

CFNET_API const char *cfnet_last_error(void) { return cf_last_error_buf; }

CFNET_API void cfnet_clear_error(void) { cf_last_error_buf[0] = '\0'; }

cfnet_status cf_error(cfnet_status status, const char *fmt, ...)
{
    /* Format into a local buffer first: the arguments may include cfnet_last_error() itself. */
    char tmp[sizeof cf_last_error_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(cf_last_error_buf, tmp, sizeof tmp);
    return status;
}
