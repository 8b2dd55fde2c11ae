/* The layer-kind registry: one entry per value of the public cfnet_layer_kind enum, giving the
 * kind's ops table (name, hyper-parameter names, config check, vtable). The kind names
 * (cfnet_layer_kind_name), the model loader (kind by name, create from the file's fields) and
 * every public cfnet_layer_*_create function derive from this table. Adding a kind: see
 * docs/contributing.md. */
#include "nn/layer.h"

#include <string.h>

/* Per-kind operation tables, defined in src/layers/ (one per layer file). */
extern const cf_layer_ops cf_conv2d_ops, cf_conic_conv_ops, cf_p4_lift_ops, cf_p4_conv_ops,
    cf_group_pool_ops, cf_dft_projection_ops, cf_dft_magnitude_ops, cf_dense_ops, cf_relu_ops,
    cf_pool_ops, cf_batch_norm_ops, cf_dropout_ops, cf_softmax_ops, cf_p4m_lift_ops,
    cf_p4m_conv_ops, cf_p4m_dft_magnitude_ops, cf_conic_conv_mirror_ops;

/* The last value of cfnet_layer_kind (kinds are 1..CF_LAST_KIND, append-only: they are part
 * of the file format). tests/test_bindings_tables.sh checks it against the header. */
#define CF_LAST_KIND CFNET_LAYER_CONIC_CONV_MIRROR
#define CF_KIND_COUNT (CF_LAST_KIND + 1)

static const cf_layer_ops *const registry[] = {
    [CFNET_LAYER_CONV2D] = &cf_conv2d_ops,
    [CFNET_LAYER_CONIC_CONV] = &cf_conic_conv_ops,
    [CFNET_LAYER_P4_LIFT] = &cf_p4_lift_ops,
    [CFNET_LAYER_P4_CONV] = &cf_p4_conv_ops,
    [CFNET_LAYER_GROUP_POOL] = &cf_group_pool_ops,
    [CFNET_LAYER_DFT_PROJECTION] = &cf_dft_projection_ops,
    [CFNET_LAYER_DFT_MAGNITUDE] = &cf_dft_magnitude_ops,
    [CFNET_LAYER_DENSE] = &cf_dense_ops,
    [CFNET_LAYER_RELU] = &cf_relu_ops,
    [CFNET_LAYER_POOL] = &cf_pool_ops,
    [CFNET_LAYER_BATCH_NORM] = &cf_batch_norm_ops,
    [CFNET_LAYER_DROPOUT] = &cf_dropout_ops,
    [CFNET_LAYER_SOFTMAX] = &cf_softmax_ops,
    [CFNET_LAYER_P4M_LIFT] = &cf_p4m_lift_ops,
    [CFNET_LAYER_P4M_CONV] = &cf_p4m_conv_ops,
    [CFNET_LAYER_P4M_DFT_MAGNITUDE] = &cf_p4m_dft_magnitude_ops,
    [CFNET_LAYER_CONIC_CONV_MIRROR] = &cf_conic_conv_mirror_ops,
};

/* No entry past the last kind (0 is not a kind). An index given twice is an error under
 * -Woverride-init (in -Wextra, WERROR=1); an entry left out, or a kind added to the header's
 * enum without moving CF_LAST_KIND, is found by tests/test_registry.c (every kind 1..count has
 * an entry) and tests/test_bindings_tables.sh (the count and names against the header). */
_Static_assert(sizeof registry / sizeof registry[0] == CF_KIND_COUNT,
               "the layer registry must end at the last cfnet_layer_kind");
_Static_assert(CFNET_LAYER_CONV2D == 1, "layer kinds start at 1");

const cf_layer_ops *cf_layer_ops_of(int kind)
{
    return kind > 0 && kind < CF_KIND_COUNT ? registry[kind] : NULL;
}

int cf_layer_kind_of_name(const char *name)
{
    for (int k = 1; name && k < CF_KIND_COUNT; k++)
        if (registry[k] && strcmp(registry[k]->name, name) == 0) return k;
    return 0;
}

int cf_count_names(const char *const *names, int max)
{
    int n = 0;
    while (n < max && names[n]) n++;
    return n;
}

cfnet_status cf_layer_create(int kind, const int *icfg, const float *fcfg, const cf_allocator *a,
                             cfnet_layer **out)
{
    const cf_layer_ops *ops = cf_layer_ops_of(kind);
    CF_FAIL_IF(!ops, CFNET_E_INTERNAL, "no layer kind %d", kind);
    CF_FAIL_IF(!out, CFNET_E_INVALID_ARGUMENT, "%s: out is NULL", ops->name);
    int ic[CF_MAX_ICFG] = {0};
    float fc[CF_MAX_FCFG] = {0};
    int ni = cf_count_names(ops->icfg_names, CF_MAX_ICFG);
    int nf = cf_count_names(ops->fcfg_names, CF_MAX_FCFG);
    if (ni) memcpy(ic, icfg, (size_t)ni * sizeof *ic);
    if (nf) memcpy(fc, fcfg, (size_t)nf * sizeof *fc);
    if (ops->check) CF_CHECK(ops->check(ic, fc));
    cfnet_layer *l = NULL;
    CF_CHECK(cf_layer_alloc(kind, ops, a, &l));
    memcpy(l->icfg, ic, sizeof ic);
    memcpy(l->fcfg, fc, sizeof fc);
    *out = l;
    return CFNET_OK;
}

CFNET_API const char *cfnet_layer_kind_name(int kind)
{
    const cf_layer_ops *ops = cf_layer_ops_of(kind);
    return ops ? ops->name : "unknown";
}

CFNET_API int cfnet_layer_kind_count(void) { return CF_KIND_COUNT - 1; }
