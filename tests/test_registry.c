/* The layer-kind registry (src/nn/registry.c): one complete entry per kind, and the public
 * create functions, the kind names and the model loader all going through it. That the kinds
 * match the header's enum (and the bindings' tables) is checked by test_bindings_tables.sh. */
#include "testutil.h"

#include "nn/layer.h"

#include <stdio.h>
#include <string.h>

static void registry_covers_every_kind(void **state)
{
    (void)state;
    int count = cfnet_layer_kind_count();
    assert_true(count >= CFNET_LAYER_SOFTMAX);
    for (int k = 1; k <= count; k++) {
        const cf_layer_ops *ops = cf_layer_ops_of(k);
        assert_non_null(ops);
        assert_non_null(ops->name);
        assert_non_null(ops->setup);
        assert_non_null(ops->forward);
        assert_non_null(ops->backward);
        assert_string_equal(cfnet_layer_kind_name(k), ops->name);
        assert_int_equal(cf_layer_kind_of_name(ops->name), k);
        /* A kind with hyper-parameters has a check for them. */
        int ni = cf_count_names(ops->icfg_names, CF_MAX_ICFG);
        int nf = cf_count_names(ops->fcfg_names, CF_MAX_FCFG);
        if (ni + nf > 0) assert_non_null(ops->check);
        for (int j = k + 1; j <= count; j++)
            assert_string_not_equal(ops->name, cf_layer_ops_of(j)->name);
    }
    assert_null(cf_layer_ops_of(0));
    assert_null(cf_layer_ops_of(count + 1));
    assert_null(cf_layer_ops_of(-1));
    assert_int_equal(cf_layer_kind_of_name("no_such_kind"), 0);
    assert_int_equal(cf_layer_kind_of_name(NULL), 0);
    assert_string_equal(cfnet_layer_kind_name(count + 1), "unknown");
}

/* What the model loader does: re-create a layer from its kind and stored hyper-parameters. */
static void create_from_config_matches_the_public_create_function(void **state)
{
    (void)state;
    cfnet_layer *a = NULL, *b = NULL;
    CF_ASSERT_OK(cfnet_layer_conic_conv_create(6, 5, 2, CFNET_PADDING_VALID,
                                               CFNET_INTERP_BILINEAR, &a));
    CF_ASSERT_OK(cf_layer_create(CFNET_LAYER_CONIC_CONV, a->icfg, a->fcfg, NULL, &b));
    assert_int_equal(cfnet_layer_kind_of(b), CFNET_LAYER_CONIC_CONV);
    assert_ptr_equal(a->ops, b->ops);
    assert_memory_equal(a->icfg, b->icfg, sizeof a->icfg);
    cfnet_layer_free(a);
    cfnet_layer_free(b);

    CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.25f, 1e-3f, &a));
    CF_ASSERT_OK(cf_layer_create(CFNET_LAYER_BATCH_NORM, NULL, a->fcfg, NULL, &b));
    assert_memory_equal(a->fcfg, b->fcfg, sizeof a->fcfg);
    cfnet_layer_free(a);
    cfnet_layer_free(b);
}

static void the_check_applies_to_both_paths_and_may_normalise(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    /* pool with window 0 stores stride 2 whether it was given 0 or 2 */
    const int cfg[] = {CFNET_POOL_MAX, 0, 0};
    CF_ASSERT_OK(cf_layer_create(CFNET_LAYER_POOL, cfg, NULL, NULL, &l));
    assert_int_equal(l->icfg[2], 2);
    cfnet_layer_free(l);
    const int bad[] = {CFNET_POOL_MAX, 0, 3};
    CF_ASSERT_STATUS(cf_layer_create(CFNET_LAYER_POOL, bad, NULL, NULL, &l), CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "pool: stride is 3"));
    CF_ASSERT_STATUS(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 3, &l), CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "pool: stride is 3"));
    /* NULL out: the kind's name in the message, for every kind */
    for (int k = 1; k <= cfnet_layer_kind_count(); k++) {
        int zeros[CF_MAX_ICFG] = {0};
        float fz[CF_MAX_FCFG] = {0};
        CF_ASSERT_STATUS(cf_layer_create(k, zeros, fz, NULL, NULL), CFNET_E_INVALID_ARGUMENT);
        char expect[64];
        snprintf(expect, sizeof expect, "%s: out is NULL", cfnet_layer_kind_name(k));
        assert_string_equal(cfnet_last_error(), expect);
    }
    CF_ASSERT_STATUS(cf_layer_create(0, NULL, NULL, NULL, &l), CFNET_E_INTERNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(registry_covers_every_kind),
        cmocka_unit_test(create_from_config_matches_the_public_create_function),
        cmocka_unit_test(the_check_applies_to_both_paths_and_may_normalise),
    };
    return cmocka_run_group_tests_name("registry", tests, NULL, NULL);
}
