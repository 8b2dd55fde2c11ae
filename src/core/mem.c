/* Allocation and overflow-checked size arithmetic.
 *
 * Every library allocation goes through cf_alloc(allocator, size) / cf_free. The caller names
 * the allocator (the one stored in the network, layer or tensor the memory belongs to); hooks
 * are per context, never process-global. A block is CF_ALIGN-aligned: the hooks are asked for
 * a little more, and the header just before the aligned block holds the free hook, its opaque
 * pointer, the address the hook returned and the metering information, so the block always goes
 * back to the hooks that made it. */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>


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

static _Thread_local cf_alloc_meter *cf_meters; /* innermost first */
static _Thread_local unsigned cf_meter_serial;
static _Thread_local int cf_exempt;

/* Block header info: the size (bits 0..39; 0 when larger, such a block
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

static bool counts(const cf_alloc_meter *m) { return !(m->tables_only && cf_exempt > 0); }

typedef struct block_header {
    cfnet_free_fn free;
    void *opaque;
    void *raw;     /* what the alloc hook returned */
    uint64_t info; /* size and meter serials, see above */
} block_header;

void *cf_alloc(const cf_allocator *a, size_t size)
{
    if (!a) a = &cf_default_allocator;
    const size_t extra = sizeof(block_header) + CF_ALIGN - 1;
    if (size > SIZE_MAX - extra) return NULL;
    for (cf_alloc_meter *m = cf_meters; m; m = m->outer) {
        if (!counts(m)) continue;
        if ((uint64_t)size > m->limit || m->live > m->limit - (uint64_t)size) {
            m->exceeded = true;
            return NULL;
        }
    }
    char *raw = a->alloc(a->opaque, size + extra);
    if (!raw) return NULL;
    uint64_t info = (uint64_t)size < ((uint64_t)1 << SIZE_BITS) ? (uint64_t)size : 0;
    int tagged = 0;
    for (cf_alloc_meter *m = cf_meters; m; m = m->outer) {
        if (!counts(m)) continue;
        m->live += (uint64_t)size;
        if (m->live > m->peak) m->peak = m->live;
        if (tagged < 2) info |= (uint64_t)m->serial << (SIZE_BITS + 12 * tagged++);
    }
    uintptr_t at = ((uintptr_t)raw + sizeof(block_header) + CF_ALIGN - 1) &
                   ~(uintptr_t)(CF_ALIGN - 1);
    char *p = raw + (at - (uintptr_t)raw);
    block_header h = {a->free, a->opaque, raw, info};
    memcpy(p - sizeof h, &h, sizeof h);
    return p;
}

void *cf_alloc_zero(const cf_allocator *a, size_t count, size_t size)
{
    size_t total;
    if (!cf_mul_size(count, size, &total)) return NULL;
    void *p = cf_alloc(a, total);
    if (p) memset(p, 0, total);
    return p;
}

void cf_free(void *p)
{
    if (!p) return;
    block_header h;
    memcpy(&h, (char *)p - sizeof h, sizeof h);
    if (cf_meters) {
        uint64_t size = h.info & (((uint64_t)1 << SIZE_BITS) - 1);
        unsigned s0 = (unsigned)(h.info >> SIZE_BITS) & SERIAL_MASK,
                 s1 = (unsigned)(h.info >> (SIZE_BITS + 12)) & SERIAL_MASK;
        for (cf_alloc_meter *m = cf_meters; m; m = m->outer)
            if (m->serial == s0 || m->serial == s1) m->live -= size < m->live ? size : m->live;
    }
    h.free(h.opaque, h.raw);
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
