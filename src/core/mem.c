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
static _Thread_local cf_alloc_meter *cf_meters; /* innermost first */
static _Thread_local unsigned cf_meter_serial;
static _Thread_local int cf_exempt;

/* Block header: the allocator (8 bytes), then the size (bits 0..39; 0 when larger, such a block
 * is never credited) and the serials of up to two meters that counted it (12 bits each). */
#define SIZE_BITS 40
#define SERIAL_MASK 0xfffu

void cf_alloc_meter_begin(cf_alloc_meter *m, uint64_t limit, bool tables_only)
{
    memset(m, 0, sizeof *m);
    m->limit = limit;
    m->tables_only = tables_only;
    cf_meter_serial = cf_meter_serial % SERIAL_MASK + 1; /* 1 .. 4095 */
    m->serial = cf_meter_serial;
    m->outer = cf_meters;
    cf_meters = m;
}

void cf_alloc_meter_end(cf_alloc_meter *m)
{
    if (cf_meters == m) cf_meters = m->outer;
}

void cf_alloc_exempt(int delta) { cf_exempt += delta; }

const cf_allocator *cf_alloc_scope_enter(const cf_allocator *a)
{
    const cf_allocator *prev = cf_scope;
    cf_scope = a;
    return prev;
}

void cf_alloc_scope_leave(const cf_allocator **prev) { cf_scope = *prev; }

static bool counts(const cf_alloc_meter *m) { return !(m->tables_only && cf_exempt > 0); }

void *cf_malloc(size_t size)
{
    const cf_allocator *a = cf_scope ? cf_scope : &cf_default_allocator;
    if (size > SIZE_MAX - CF_HEADER) return NULL;
    for (cf_alloc_meter *m = cf_meters; m; m = m->outer) {
        if (!counts(m)) continue;
        if ((uint64_t)size > m->limit || m->live > m->limit - (uint64_t)size) {
            m->exceeded = true;
            return NULL;
        }
    }
    char *p = a->alloc(a->opaque, size + CF_HEADER);
    if (!p) return NULL;
    uint64_t info = (uint64_t)size < ((uint64_t)1 << SIZE_BITS) ? (uint64_t)size : 0;
    int tagged = 0;
    for (cf_alloc_meter *m = cf_meters; m; m = m->outer) {
        if (!counts(m)) continue;
        m->live += (uint64_t)size;
        if (m->live > m->peak) m->peak = m->live;
        if (tagged < 2) info |= (uint64_t)m->serial << (SIZE_BITS + 12 * tagged++);
    }
    memcpy(p, &a, sizeof a);
    memcpy(p + 8, &info, sizeof info);
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
    if (cf_meters) {
        uint64_t info;
        memcpy(&info, base + 8, sizeof info);
        uint64_t size = info & (((uint64_t)1 << SIZE_BITS) - 1);
        unsigned s0 = (unsigned)(info >> SIZE_BITS) & SERIAL_MASK,
                 s1 = (unsigned)(info >> (SIZE_BITS + 12)) & SERIAL_MASK;
        for (cf_alloc_meter *m = cf_meters; m; m = m->outer)
            if (m->serial == s0 || m->serial == s1) m->live -= size < m->live ? size : m->live;
    }
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
