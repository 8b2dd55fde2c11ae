/* Allocation wrappers and overflow-checked size arithmetic.
 *
 * Every library allocation goes through cf_malloc / cf_calloc / cf_free. A block carries a
 * 16-byte header naming the allocator that made it, so it is always returned to that allocator,
 * whichever scope frees it. The allocator in force is the calling thread's current scope: a
 * network's entry points enter the scope of the context it was created in (CF_ALLOC_SCOPE), so
 * hooks are per context, never process-global. */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

#define CF_HEADER 16

static void *default_alloc(void *opaque, size_t size)
{
    (void)opaque;
    return malloc(size);
}

static void default_free(void *opaque, void *p)
{
    (void)opaque;
    free(p);
}

const cf_allocator cf_default_allocator = {default_alloc, default_free, NULL};

static _Thread_local const cf_allocator *cf_scope;
static _Thread_local struct {
    bool active, exceeded;
    uint64_t left;
} cf_budget;

void cf_alloc_budget_begin(uint64_t bytes)
{
    cf_budget.active = true;
    cf_budget.exceeded = false;
    cf_budget.left = bytes;
}

bool cf_alloc_budget_end(void)
{
    cf_budget.active = false;
    return cf_budget.exceeded;
}

const cf_allocator *cf_alloc_scope_enter(const cf_allocator *a)
{
    const cf_allocator *prev = cf_scope;
    cf_scope = a;
    return prev;
}

void cf_alloc_scope_leave(const cf_allocator **prev) { cf_scope = *prev; }

void *cf_malloc(size_t size)
{
    const cf_allocator *a = cf_scope ? cf_scope : &cf_default_allocator;
    if (size > SIZE_MAX - CF_HEADER) return NULL;
    if (cf_budget.active) {
        if (size > cf_budget.left) {
            cf_budget.exceeded = true;
            return NULL;
        }
        cf_budget.left -= size;
    }
    char *p = a->alloc(a->opaque, size + CF_HEADER);
    if (!p) return NULL;
    memcpy(p, &a, sizeof a);
    return p + CF_HEADER;
}

void *cf_calloc(size_t count, size_t size)
{
    size_t total;
    if (!cf_mul_size(count, size, &total)) return NULL;
    void *p = cf_malloc(total);
    if (p) memset(p, 0, total);
    return p;
}

void cf_free(void *p)
{
    if (!p) return;
    char *base = (char *)p - CF_HEADER;
    const cf_allocator *a;
    memcpy(&a, base, sizeof a);
    a->free(a->opaque, base);
}

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
