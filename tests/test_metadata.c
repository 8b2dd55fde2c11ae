/* User metadata: set, get, enumerate in key order, validation and limits, round trips through
 * files and buffers (stored as "user."-prefixed "__metadata__" strings), validation on load. */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cfnet_network *small_net(void)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create_classifier(CFNET_FAMILY_CNN, 1, 16, 3, 2, 1, &net));
    return net;
}

static const char *get(const cfnet_network *net, const char *key)
{
    const char *v = (const char *)1;
    CF_ASSERT_OK(cfnet_network_get_metadata(net, key, &v));
    return v;
}

static void set_get_remove_and_key_order(void **state)
{
    (void)state;
    cfnet_network *net = small_net();
    assert_int_equal(cfnet_network_metadata_count(net), 0);
    assert_null(get(net, "classes"));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "size", "50"));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "classes", "nucleus,cytoplasm"));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "Zellkern → Kern", "ü\n\tvalue"));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "empty", ""));
    assert_int_equal(cfnet_network_metadata_count(net), 4);
    static const char *const order[4] = {"Zellkern → Kern", "classes", "empty", "size"};
    for (int i = 0; i < 4; i++) {
        const char *k, *v;
        CF_ASSERT_OK(cfnet_network_metadata_at(net, i, &k, &v));
        assert_string_equal(k, order[i]);
        assert_string_equal(v, get(net, order[i]));
    }
    assert_string_equal(get(net, "empty"), "");
    /* setting one key leaves the strings of the others where they were */
    const char *classes = get(net, "classes");
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "size", "64"));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "aaa", "first"));
    assert_ptr_equal(get(net, "classes"), classes);
    assert_string_equal(get(net, "size"), "64");
    assert_int_equal(cfnet_network_metadata_count(net), 5);
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "aaa", NULL));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "never-set", NULL));
    assert_null(get(net, "aaa"));
    assert_int_equal(cfnet_network_metadata_count(net), 4);
    const char *k, *v;
    CF_ASSERT_STATUS(cfnet_network_metadata_at(net, 4, &k, &v), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_metadata_at(net, -1, &k, &v), CFNET_E_INVALID_ARGUMENT);
    cfnet_network_free(net);
}

/* The failing call changes nothing. */
#define REJECT(net, key, value, status)                                      \
    do {                                                                     \
        int n_ = cfnet_network_metadata_count(net);                          \
        CF_ASSERT_STATUS(cfnet_network_set_metadata(net, key, value), status); \
        assert_int_equal(cfnet_network_metadata_count(net), n_);             \
    } while (0)

static void malformed_keys_and_values_are_rejected(void **state)
{
    (void)state;
    cfnet_network *net = small_net();
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "kept", "old"));
    REJECT(net, "", "x", CFNET_E_INVALID_ARGUMENT);
    REJECT(net, "a\nb", "x", CFNET_E_INVALID_ARGUMENT);
    REJECT(net, "tab\there", "x", CFNET_E_INVALID_ARGUMENT);
    REJECT(net, "del\x7f", "x", CFNET_E_INVALID_ARGUMENT);
    REJECT(net, "c1\xc2\x85", "x", CFNET_E_INVALID_ARGUMENT);   /* U+0085 */
    REJECT(net, "bad\xff", "x", CFNET_E_INVALID_ARGUMENT);      /* not UTF-8 */
    REJECT(net, "over\xc0\xaf", "x", CFNET_E_INVALID_ARGUMENT); /* overlong '/' */
    REJECT(net, "kept", "\xed\xa0\x80", CFNET_E_INVALID_ARGUMENT); /* a surrogate */
    REJECT(net, "kept", "cut\xe2\x82", CFNET_E_INVALID_ARGUMENT);  /* truncated sequence */
    assert_string_equal(get(net, "kept"), "old");
    CF_ASSERT_STATUS(cfnet_network_set_metadata(NULL, "k", "v"), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_set_metadata(net, NULL, "v"), CFNET_E_INVALID_ARGUMENT);
    const char *v;
    CF_ASSERT_STATUS(cfnet_network_get_metadata(net, NULL, &v), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_get_metadata(net, "kept", NULL), CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(cfnet_network_metadata_count(NULL), -1);
    /* a key with a non-ASCII letter and punctuation is fine */
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "cfnet.tool/version é", "1"));
    cfnet_network_free(net);
}

static void sizes_are_bounded(void **state)
{
    (void)state;
    cfnet_network *net = small_net();
    char *big = malloc(CFNET_METADATA_MAX_VALUE + 2);
    assert_non_null(big);
    memset(big, 'k', CFNET_METADATA_MAX_KEY + 1);
    big[CFNET_METADATA_MAX_KEY + 1] = '\0';
    REJECT(net, big, "x", CFNET_E_LIMIT);
    big[CFNET_METADATA_MAX_KEY] = '\0';
    CF_ASSERT_OK(cfnet_network_set_metadata(net, big, "longest key"));
    memset(big, 'v', CFNET_METADATA_MAX_VALUE + 1);
    big[CFNET_METADATA_MAX_VALUE + 1] = '\0';
    REJECT(net, "v", big, CFNET_E_LIMIT);
    big[CFNET_METADATA_MAX_VALUE] = '\0';
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "v", big));
    /* the total: 8 values of the largest size do not fit with their keys */
    char key[16];
    int set = 1;
    cfnet_status st = CFNET_OK;
    for (int i = 0; i < 8 && st == CFNET_OK; i++) {
        snprintf(key, sizeof key, "v%d", i);
        st = cfnet_network_set_metadata(net, key, big);
        if (st == CFNET_OK) set++;
    }
    assert_int_equal(st, CFNET_E_LIMIT);
    assert_int_equal(set, 7);
    assert_int_equal(cfnet_network_metadata_count(net), 2 + 6);
    /* replacing a value by a shorter one frees its share of the total */
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "v0", "short"));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "v6", big));
    cfnet_network_free(net);

    /* the count */
    net = small_net();
    for (int i = 0; i < CFNET_METADATA_MAX_COUNT; i++) {
        snprintf(key, sizeof key, "k%04d", i);
        CF_ASSERT_OK(cfnet_network_set_metadata(net, key, "x"));
    }
    REJECT(net, "one-more", "x", CFNET_E_LIMIT);
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "k0000", "replacing is fine"));
    assert_int_equal(cfnet_network_metadata_count(net), CFNET_METADATA_MAX_COUNT);
    cfnet_network_free(net);
    free(big);
}

static void assert_same_metadata(const cfnet_network *a, const cfnet_network *b)
{
    assert_int_equal(cfnet_network_metadata_count(a), cfnet_network_metadata_count(b));
    for (int i = 0; i < cfnet_network_metadata_count(a); i++) {
        const char *ka, *va, *kb, *vb;
        CF_ASSERT_OK(cfnet_network_metadata_at(a, i, &ka, &va));
        CF_ASSERT_OK(cfnet_network_metadata_at(b, i, &kb, &vb));
        assert_string_equal(ka, kb);
        assert_string_equal(va, vb);
    }
}

/* The JSON header of a saved buffer. */
static json_t *header_of(const void *buf, size_t size)
{
    assert_true(size >= 8);
    const unsigned char *b = buf;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    json_error_t err;
    json_t *h = json_loadb((const char *)b + 8, (size_t)n, 0, &err);
    assert_non_null(h);
    return h;
}

/* The buffer with its header replaced by `h` (data unchanged); free with free(). */
static unsigned char *with_header(const void *buf, size_t size, json_t *h, size_t *out_size)
{
    const unsigned char *b = buf;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    char *text = json_dumps(h, JSON_COMPACT);
    assert_non_null(text);
    size_t tn = strlen(text), dn = size - 8 - (size_t)n;
    unsigned char *out = malloc(8 + tn + dn);
    assert_non_null(out);
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)tn >> (8 * i));
    memcpy(out + 8, text, tn);
    memcpy(out + 8 + tn, b + 8 + n, dn);
    free(text);
    *out_size = 8 + tn + dn;
    return out;
}

static void metadata_survives_save_and_load(void **state)
{
    (void)state;
    cfnet_network *net = small_net();
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "class_names", "[\"ER\",\"Golgi\",\"Kern\"]"));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "format", "reserved names are fine"));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "architecture", "so is this"));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "note", "zwei\nZeilen — äöü"));
    for (unsigned flags = 0; flags <= CFNET_SAVE_OPTIMIZER; flags++) {
        void *buf = NULL;
        size_t size = 0;
        CF_ASSERT_OK(cfnet_network_save_buffer(net, flags, &buf, &size));
        cfnet_network *copy = NULL;
        CF_ASSERT_OK(cfnet_network_load_buffer(buf, size, &copy));
        assert_same_metadata(net, copy);
        /* stored as user.-prefixed strings beside the library's own keys */
        json_t *h = header_of(buf, size), *meta = json_object_get(h, "__metadata__");
        assert_string_equal(json_string_value(json_object_get(meta, "user.note")),
                            "zwei\nZeilen — äöü");
        assert_string_equal(json_string_value(json_object_get(meta, "format")), "cfnet");
        assert_string_equal(json_string_value(json_object_get(meta, "user.format")),
                            "reserved names are fine");
        assert_int_equal(json_object_size(meta), 4 + 4);
        json_decref(h);
        cfnet_network_free(copy);
        cfnet_free(buf);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/metadata.cfnet", tu_outdir());
    CF_ASSERT_OK(cfnet_network_save(net, path, 0));
    cfnet_network *copy = NULL;
    CF_ASSERT_OK(cfnet_network_load(path, &copy));
    assert_same_metadata(net, copy);
    /* and again after a round trip with the metadata changed */
    CF_ASSERT_OK(cfnet_network_set_metadata(copy, "note", NULL));
    CF_ASSERT_OK(cfnet_network_save(copy, path, CFNET_SAVE_OPTIMIZER));
    cfnet_network *again = NULL;
    CF_ASSERT_OK(cfnet_network_load(path, &again));
    assert_same_metadata(copy, again);
    assert_int_equal(cfnet_network_metadata_count(again), 3);
    remove(path);
    cfnet_network_free(again);
    cfnet_network_free(copy);
    cfnet_network_free(net);
}

/* Loads the saved network with "__metadata__" edited by `edit`; returns the status. */
static cfnet_status load_edited(void (*edit)(json_t *meta))
{
    cfnet_network *net = small_net();
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "ok", "fine"));
    void *buf = NULL;
    size_t size = 0, n2 = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(net, 0, &buf, &size));
    json_t *h = header_of(buf, size);
    edit(json_object_get(h, "__metadata__"));
    unsigned char *bad = with_header(buf, size, h, &n2);
    cfnet_network *copy = (cfnet_network *)&copy;
    cfnet_clear_error();
    cfnet_status st = cfnet_network_load_buffer(bad, n2, &copy);
    if (st != CFNET_OK) assert_ptr_equal(copy, (cfnet_network *)&copy);
    else cfnet_network_free(copy);
    free(bad);
    json_decref(h);
    cfnet_free(buf);
    cfnet_network_free(net);
    return st;
}

static void edit_control_key(json_t *m) { json_object_set_new(m, "user.a\x01", json_string("x")); }
static void edit_empty_key(json_t *m) { json_object_set_new(m, "user.", json_string("x")); }
static void edit_nul_value(json_t *m) { json_object_set_new(m, "user.v", json_stringn("a\0b", 3)); }
static void edit_nul_key(json_t *m) { json_object_setn_new(m, "user.a\0b", 8, json_string("x")); }
static void edit_long_key(json_t *m)
{
    char key[CFNET_METADATA_MAX_KEY + 16] = "user.";
    memset(key + 5, 'k', CFNET_METADATA_MAX_KEY + 1);
    key[5 + CFNET_METADATA_MAX_KEY + 1] = '\0';
    json_object_set_new(m, key, json_string("x"));
}
static void edit_many(json_t *m)
{
    for (int i = 0; i < CFNET_METADATA_MAX_COUNT + 1; i++) {
        char key[32];
        snprintf(key, sizeof key, "user.k%d", i);
        json_object_set_new(m, key, json_string("x"));
    }
}
static void edit_not_string(json_t *m) { json_object_set_new(m, "user.n", json_integer(3)); }
static void edit_other_key(json_t *m) { json_object_set_new(m, "tool.note", json_string("\x01")); }

static void malformed_metadata_in_a_file_is_a_format_error(void **state)
{
    (void)state;
    void (*const bad[])(json_t *) = {edit_control_key, edit_empty_key, edit_nul_value,
                                      edit_nul_key,     edit_long_key,  edit_many,
                                      edit_not_string};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfnet_status st = load_edited(bad[i]);
        if (st != CFNET_E_FORMAT)
            fail_msg("edit %zu: %s (%s)", i, cfnet_status_string(st), cfnet_last_error());
        /* NUL characters are already refused by the JSON parser of the container */
        const char *msg = cfnet_last_error();
        if (!strstr(msg, "metadata") && !strstr(msg, "\\u0000"))
            fail_msg("edit %zu: %s", i, msg);
    }
    /* keys outside "user." are not the library's business (tools may add notes) */
    CF_ASSERT_OK(load_edited(edit_other_key));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set_get_remove_and_key_order),
        cmocka_unit_test(malformed_keys_and_values_are_rejected),
        cmocka_unit_test(sizes_are_bounded),
        cmocka_unit_test(metadata_survives_save_and_load),
        cmocka_unit_test(malformed_metadata_in_a_file_is_a_format_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
