/* Allocation wrappers and overflow-checked size arithmetic. */
#include "../internal.h"

#include <stdlib.h>

void *cf_malloc(size_t size) { return malloc(size ? size : 1); }

void *cf_calloc(size_t count, size_t size)
{
    if (count == 0 || size == 0) return calloc(1, 1);
    return calloc(count, size);
}

void cf_free(void *p) { free(p); }

bool cf_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

bool cf_mul_i64(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0) return false;
    if (a != 0 && b > INT64_MAX / a) return false;
    *out = a * b;
    return true;
}
