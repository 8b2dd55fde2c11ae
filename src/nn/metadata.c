/* User metadata of a network: bounded UTF-8 key/value strings, kept sorted by key, saved in the
 * model file's "__metadata__" (src/io/schema.c). */
#include "network.h"

#include <jansson.h>
#include <string.h>

void cf_network_free_metadata(cfnet_network *net)
{
    for (int i = 0; i < net->nmeta; i++) {
        cf_free(net->meta[i].key);
        cf_free(net->meta[i].value);
    }
    cf_free(net->meta);
    net->meta = NULL;
    net->nmeta = net->meta_cap = 0;
    net->meta_bytes = 0;
}

/* Valid UTF-8 (no overlong forms, surrogates or code points above U+10FFFF), as jansson checks
 * every string it is given. */
static bool valid_utf8(const char *s, size_t len)
{
    json_t *t = json_stringn(s, len);
    if (!t) return false;
    json_decref(t);
    return true;
}

const char *cf_metadata_key_problem(const char *key, size_t len)
{
    if (len == 0) return "the key is empty";
    if (len > CFNET_METADATA_MAX_KEY) return "the key is longer than CFNET_METADATA_MAX_KEY bytes";
    const unsigned char *u = (const unsigned char *)key;
    for (size_t i = 0; i < len; i++) {
        if (u[i] < 0x20 || u[i] == 0x7f) return "the key contains a control character";
        if (u[i] == 0xc2 && i + 1 < len && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f)
            return "the key contains a control character";
    }
    if (!valid_utf8(key, len)) return "the key is not valid UTF-8";
    return NULL;
}

const char *cf_metadata_value_problem(const char *value, size_t len)
{
    if (len > CFNET_METADATA_MAX_VALUE)
        return "the value is longer than CFNET_METADATA_MAX_VALUE bytes";
    if (memchr(value, '\0', len)) return "the value contains a NUL character";
    if (!valid_utf8(value, len)) return "the value is not valid UTF-8";
    return NULL;
}

/* Index of key, or -(insertion point) - 1. */
static int find(const cfnet_network *net, const char *key)
{
    int lo = 0, hi = net->nmeta;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(net->meta[mid].key, key);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -lo - 1;
}

const char *cf_network_metadata_value(const cfnet_network *net, const char *key)
{
    int at = find(net, key);
    return at >= 0 ? net->meta[at].value : NULL;
}

static char *dup_str(const cf_allocator *a, const char *s, size_t len)
{
    char *d = cf_alloc(a, len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

cfnet_status cf_network_put_metadata(cfnet_network *net, const char *what, const char *key,
                                     const char *value)
{
    size_t klen = strlen(key);
    int at = find(net, key);
    if (!value) {
        if (at < 0) return CFNET_OK;
        net->meta_bytes -= klen + strlen(net->meta[at].value);
        cf_free(net->meta[at].key);
        cf_free(net->meta[at].value);
        memmove(net->meta + at, net->meta + at + 1,
                (size_t)(net->nmeta - at - 1) * sizeof *net->meta);
        net->nmeta--;
        return CFNET_OK;
    }
    size_t vlen = strlen(value);
    size_t old = at >= 0 ? klen + strlen(net->meta[at].value) : 0;
    CF_FAIL_IF(at < 0 && net->nmeta >= CFNET_METADATA_MAX_COUNT, CFNET_E_LIMIT,
               "%s: the network already has %d metadata entries (CFNET_METADATA_MAX_COUNT)",
               what, CFNET_METADATA_MAX_COUNT);
    CF_FAIL_IF(net->meta_bytes - old + klen + vlen > CFNET_METADATA_MAX_TOTAL, CFNET_E_LIMIT,
               "%s: the metadata would exceed CFNET_METADATA_MAX_TOTAL (%d bytes of keys and "
               "values)",
               what, CFNET_METADATA_MAX_TOTAL);
    char *v = dup_str(&net->alloc, value, vlen);
    CF_FAIL_IF(!v, CFNET_E_OUT_OF_MEMORY, "%s: out of memory", what);
    if (at >= 0) {
        cf_free(net->meta[at].value);
        net->meta[at].value = v;
        net->meta_bytes = net->meta_bytes - old + klen + vlen;
        return CFNET_OK;
    }
    char *k = dup_str(&net->alloc, key, klen);
    if (k && net->nmeta == net->meta_cap) {
        int cap = net->meta_cap ? 2 * net->meta_cap : 8;
        cf_meta_entry *grown = cf_alloc(&net->alloc, (size_t)cap * sizeof *grown);
        if (grown) {
            if (net->nmeta) memcpy(grown, net->meta, (size_t)net->nmeta * sizeof *grown);
            cf_free(net->meta);
            net->meta = grown;
            net->meta_cap = cap;
        } else {
            cf_free(k);
            k = NULL;
        }
    }
    if (!k) {
        cf_free(v);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "%s: out of memory", what);
    }
    at = -at - 1;
    memmove(net->meta + at + 1, net->meta + at, (size_t)(net->nmeta - at) * sizeof *net->meta);
    net->meta[at].key = k;
    net->meta[at].value = v;
    net->nmeta++;
    net->meta_bytes += klen + vlen;
    return CFNET_OK;
}

#define SET "network_set_metadata"

CFNET_API cfnet_status cfnet_network_set_metadata(cfnet_network *net, const char *key,
                                                  const char *value)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_FAIL_IF(!net || !key, CFNET_E_INVALID_ARGUMENT, SET ": NULL argument");
    CF_NET_GUARD(net, true, SET);
    CF_NET_SCOPE(net);
    /* lengths are bounded before anything scans further than the limits */
    size_t klen = strnlen(key, CFNET_METADATA_MAX_KEY + 1);
    const char *why = cf_metadata_key_problem(key, klen);
    CF_FAIL_IF(why, klen > CFNET_METADATA_MAX_KEY ? CFNET_E_LIMIT : CFNET_E_INVALID_ARGUMENT,
               SET ": %s", why);
    if (value) {
        size_t vlen = strnlen(value, CFNET_METADATA_MAX_VALUE + 1);
        why = cf_metadata_value_problem(value, vlen);
        CF_FAIL_IF(why, vlen > CFNET_METADATA_MAX_VALUE ? CFNET_E_LIMIT
                                                        : CFNET_E_INVALID_ARGUMENT,
                   SET ": key \"%.64s\": %s", key, why);
    }
    return cf_network_put_metadata(net, SET, key, value);
}

CFNET_API cfnet_status cfnet_network_get_metadata(const cfnet_network *net, const char *key,
                                                  const char **value)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_FAIL_IF(!net || !key || !value, CFNET_E_INVALID_ARGUMENT,
               "network_get_metadata: NULL argument");
    CF_NET_GUARD(net, false, "network_get_metadata");
    int at = find(net, key);
    *value = at >= 0 ? net->meta[at].value : NULL;
    return CFNET_OK;
}

CFNET_API int cfnet_network_metadata_count(const cfnet_network *net)
{
    if (!cf_handle_ok(net, CF_MAGIC_NETWORK, "network", __func__)) net = NULL;
    return net ? net->nmeta : -1;
}

CFNET_API cfnet_status cfnet_network_metadata_at(const cfnet_network *net, int i,
                                                 const char **key, const char **value)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_FAIL_IF(!net || !key || !value, CFNET_E_INVALID_ARGUMENT,
               "network_metadata_at: NULL argument");
    CF_NET_GUARD(net, false, "network_metadata_at");
    CF_FAIL_IF(i < 0 || i >= net->nmeta, CFNET_E_INVALID_ARGUMENT,
               "network_metadata_at: index %d, the network has %d entries", i, net->nmeta);
    *key = net->meta[i].key;
    *value = net->meta[i].value;
    return CFNET_OK;
}
