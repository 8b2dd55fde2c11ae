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
