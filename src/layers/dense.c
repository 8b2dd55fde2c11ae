/* Dense (fully connected): y = W x + b, x the per-sample input flattened to D values,
 * W: [O, D], b: [O]. Batched as one GEMM: Y [N, O] = X [N, D] · Wᵀ + 1 bᵀ. */
#include "core/pool.h"
#include "nn/layer.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

/* CBLAS takes int sizes; batches larger than this are processed in slices. */
#define DENSE_MAX_ROWS ((int64_t)INT_MAX)

static cfnet_status dense_setup(cfnet_layer *l, uint64_t seed)
{
    char sb[96];
    const int64_t O = l->icfg[0], D = l->in_size;
    CF_FAIL_IF(D > (int64_t)INT_MAX, CFNET_E_LIMIT,
               "dense: input %s has %lld values per sample, at most %d (BLAS int sizes)",
               cf_shape_str(sb, sizeof sb, l->in_ndim, l->in_shape), (long long)D, INT_MAX);
    int64_t wn;
    CF_FAIL_IF(!cf_mul_i64(O, D, &wn), CFNET_E_LIMIT, "dense: weight %lldx%lld is too large",
               (long long)O, (long long)D);

    const int64_t wshape[2] = {O, D};
    CF_CHECK(cf_layer_add_weight_bias(l, 2, wshape, D, seed));

    cf_layer_set_out_shape(l, 1, (const int64_t[]){O});
    return CFNET_OK;
}

static cfnet_status dense_forward(cfnet_layer *l, const float *x, float *y, int64_t n,
                                  bool training, void *ws)
{
    (void)training;
    (void)ws;
    const int O = (int)l->out_shape[0], D = (int)l->in_size;
    const float *W = l->param[0]->data, *b = l->param[1]->data;
    for (int64_t i = 0; i < n; i++) memcpy(y + i * O, b, (size_t)O * sizeof *y);
    cf_blas_single_enter(); /* OpenBLAS on one thread, as in the engine (core/pool.h) */
    for (int64_t r0 = 0; r0 < n; r0 += DENSE_MAX_ROWS) {
        int rows = (int)(n - r0 < DENSE_MAX_ROWS ? n - r0 : DENSE_MAX_ROWS);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, O, D, 1.0f, x + r0 * D, D, W,
                    D, 1.0f, y + r0 * O, O);
    }
    cf_blas_single_leave();
    return CFNET_OK;
}

/* dW += dYᵀ X, db += column sums of dY, dX = dY W. */
static cfnet_status dense_backward(cfnet_layer *l, const float *x, const float *y,
                                   const float *dy, float *dx, int64_t n, void *ws)
{
    (void)y;
    (void)ws;
    const int O = (int)l->out_shape[0], D = (int)l->in_size;
    const float *W = l->param[0]->data;
    float *dW = l->grad[0]->data, *db = l->grad[1]->data;
    for (int64_t i = 0; i < n; i++) {
        const float *row = dy + i * O;
        for (int o = 0; o < O; o++) db[o] += row[o];
    }
    cf_blas_single_enter();
    for (int64_t r0 = 0; r0 < n; r0 += DENSE_MAX_ROWS) {
        int rows = (int)(n - r0 < DENSE_MAX_ROWS ? n - r0 : DENSE_MAX_ROWS);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, D, rows, 1.0f, dy + r0 * O, O,
                    x + r0 * D, D, 1.0f, dW, D);
        if (dx)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, O, 1.0f, dy + r0 * O,
                        O, W, D, 0.0f, dx + r0 * D, D);
    }
    cf_blas_single_leave();
    return CFNET_OK;
}

static cfnet_status dense_check(int *ic, float *fc)
{
    (void)fc;
    CF_FAIL_IF(ic[0] < 1, CFNET_E_INVALID_ARGUMENT, "dense: out_features is %d, must be >= 1",
               ic[0]);
    return CFNET_OK;
}

const cf_layer_ops cf_dense_ops = {
    .name = "dense",
    .icfg_names = {"out_features", NULL},
    .fcfg_names = {NULL},
    .check = dense_check,
    .setup = dense_setup,
    .forward = dense_forward,
    .backward = dense_backward,
};

CFNET_API cfnet_status cfnet_layer_dense_create(int out_features, cfnet_layer **out)
{
    const int cfg[] = {out_features};
    return cf_layer_create(CFNET_LAYER_DENSE, cfg, NULL, NULL, out);
}
