/* 2D convolution (correlation): y[o, x] = sum_{c, z} w[o, c, z] f[c, x + z] + b[o].
 * Shapes: x N x C x H x W, w O x C x k x k, y N x O x H' x W'. The engine: kernels/convcore.h. */
#include "kernels/convcore.h"
#include "kernels/simd.h"

enum { CFG_OUT, CFG_K, CFG_STRIDE, CFG_PAD };

/* The layer's plans. `plan` takes the backward, and the forward too unless `split`: a plain
 * convolution that cf_conv_plain_over_channels plans as one group (its weight gradient on the
 * columns, its input gradient over output channels) takes its forward on the plain plan `fwd`
 * where the active variant's direct products fill their vectors (cf_conv_row_fills_lanes:
 * AVX2 at 50 x 50). Either plan gives the same bits. */
typedef struct conv2d_priv {
    cf_conv_plan plan;
    cf_conv_plan fwd;
    bool split;
    /* The input gradient as a forward (dx_fwd): dx = dy, zero-padded as the forward pads x,
     * correlated with the banks transposed (O <-> C) and turned by 180 degrees (`wt`, C x O x
     * k x k, filled every backward) on the plan `dxp` (O planes of OH x OW). */
    cf_conv_plan dxp;
    float *wt;
    bool dx_fwd;
} conv2d_priv;

/* Whether the input gradient goes as a forward: stride 1, "same" padding (odd k, so the
 * transposed correlation pads by the same (k - 1) / 2), plain plans that take the input
 * gradient through the columns (not cf_conv_plain_over_channels), where the forward of C
 * channels on the output gradient runs every tile directly over pixels. It skips the columns'
 * gradient, its col2im into padded planes and their copy out (64 x 64 x 32 fwd+bwd, AVX-512:
 * 77.2 -> 70.5 ms on 1 thread, 40.1 -> 36.1 ms on 2; docs/performance.md round 26). Its sums
 * run over (o, tap) in one chain rather than over o per tap added tap by tap: other bits than
 * the column path, the same on any thread count, batch and CPU variant (the forward's rule). */
static bool dx_as_forward(const conv2d_priv *pv, int C, int stride, cfnet_padding pad,
                          bool over_channels)
{
    return stride == 1 && pad == CFNET_PADDING_SAME && !over_channels &&
           cf_conv_forward_all_direct(&pv->dxp, C);
}

static cfnet_status conv2d_setup(cfnet_layer *l, uint64_t seed)
{
    char s[96];
    CF_FAIL_IF(l->in_ndim != 3, CFNET_E_SHAPE_MISMATCH,
               "conv2d: input is %s, needs C x H x W",
               cf_shape_str(s, sizeof s, l->in_ndim, l->in_shape));
    int O = l->icfg[CFG_OUT], k = l->icfg[CFG_K];
    CF_FAIL_IF(l->in_shape[0] > INT32_MAX / (k * k) || l->in_shape[1] > 1 << 20 ||
                   l->in_shape[2] > 1 << 20 || l->in_shape[1] * l->in_shape[2] > INT32_MAX,
               CFNET_E_LIMIT, "conv2d: input %s is too large",
               cf_shape_str(s, sizeof s, l->in_ndim, l->in_shape));
    conv2d_priv *pv = cf_alloc_zero(&l->alloc, 1, sizeof *pv);
    CF_FAIL_IF(!pv, CFNET_E_OUT_OF_MEMORY, "conv2d: out of memory");
    l->priv = pv;
    int C = (int)l->in_shape[0], H = (int)l->in_shape[1], W = (int)l->in_shape[2];
    int stride = l->icfg[CFG_STRIDE];
    cfnet_padding pad = (cfnet_padding)l->icfg[CFG_PAD];
    /* one group over output channels where the direct products over pixels fill 16-float
     * vectors poorly (convcore.h) */
    int32_t *one_group = NULL;
    bool over_channels = cf_conv_plain_over_channels(C, H, W, k, stride, pad, O);
    if (over_channels) {
        int64_t P = (int64_t)cf_conv_out_size(H, k, stride, pad) * cf_conv_out_size(W, k, stride, pad);
        one_group = cf_alloc_zero(&l->alloc, (size_t)P, sizeof *one_group);
        CF_FAIL_IF(!one_group, CFNET_E_OUT_OF_MEMORY, "conv2d: out of memory");
    }
    cfnet_status st = cf_conv_plan_init(&l->alloc, &pv->plan, C, H, W, k, stride, pad, one_group, 1);
    cf_free(one_group);
    pv->plan.bwd_columns = over_channels; /* the plain plan's gradients, bit for bit */
    if (st == CFNET_OK && over_channels && cf_conv_row_fills_lanes(pv->plan.OW, cf_simd()->lanes)) {
        st = cf_conv_plan_init(&l->alloc, &pv->fwd, C, H, W, k, stride, pad, NULL, 1);
        pv->split = st == CFNET_OK;
    }
    if (st == CFNET_OK && stride == 1 && pad == CFNET_PADDING_SAME && !over_channels) {
        st = cf_conv_plan_init(&l->alloc, &pv->dxp, O, pv->plan.OH, pv->plan.OW, k, 1, pad,
                               NULL, 1);
        if (st == CFNET_OK && dx_as_forward(pv, C, stride, pad, over_channels)) {
            pv->wt = cf_alloc(&l->alloc, (size_t)O * (size_t)pv->plan.CK * sizeof(float));
            if (!pv->wt) st = CFNET_E_OUT_OF_MEMORY;
            pv->dx_fwd = pv->wt != NULL;
        }
        if (!pv->dx_fwd) cf_conv_plan_free(&pv->dxp);
    }
    if (st != CFNET_OK)
        return cf_error(st, "conv2d: input is %s: %s",
                        cf_shape_str(s, sizeof s, l->in_ndim, l->in_shape), cfnet_last_error());
    int64_t wshape[4] = {O, C, k, k};
    CF_CHECK(cf_layer_add_weight_bias(l, 4, wshape, pv->plan.CK, seed));
    cf_layer_set_out_shape(l, 3, (const int64_t[]){O, pv->plan.OH, pv->plan.OW});
    return CFNET_OK;
}

static const cf_conv_plan *fwd_plan(const cfnet_layer *l)
{
    const conv2d_priv *pv = l->priv;
    return pv->split ? &pv->fwd : &pv->plan;
}

static size_t conv2d_workspace(const cfnet_layer *l, int64_t n)
{
    const conv2d_priv *pv = l->priv;
    int O = l->icfg[CFG_OUT];
    size_t b = cf_conv_workspace(&pv->plan, O, n, l->threads),
           f = pv->split ? cf_conv_workspace(&pv->fwd, O, n, l->threads) : 0,
           d = pv->dx_fwd ? cf_conv_workspace(&pv->dxp, pv->plan.C, n, l->threads) : 0;
    b = b > f ? b : f;
    return b > d ? b : d;
}

static size_t conv2d_workspace_kept(const cfnet_layer *l, int64_t n)
{
    const conv2d_priv *pv = l->priv;
    int O = l->icfg[CFG_OUT];
    size_t b = cf_conv_workspace_kept(&pv->plan, O, n, l->threads),
           f = pv->split ? cf_conv_workspace_kept(&pv->fwd, O, n, l->threads) : 0;
    return b > f ? b : f;
}

static void conv2d_run(cfnet_layer *l, const float *x, float *y, int64_t n, void *ws, bool relu)
{
    const float *w = l->param[0]->data;
    cf_conv_forward(fwd_plan(l), l->icfg[CFG_OUT], &w, l->param[1]->data, x, y, n, ws,
                    l->scratch, l->threads, relu);
}

static cfnet_status conv2d_forward(cfnet_layer *l, const float *x, float *y, int64_t n,
                                   bool training, void *ws)
{
    (void)training;
    conv2d_run(l, x, y, n, ws, false);
    return CFNET_OK;
}

static cfnet_status conv2d_forward_relu(cfnet_layer *l, const float *x, float *y, int64_t n,
                                        bool training, void *ws)
{
    (void)training;
    conv2d_run(l, x, y, n, ws, true);
    return CFNET_OK;
}

static cfnet_status conv2d_backward(cfnet_layer *l, const float *x, const float *y,
                                    const float *dy, float *dx, int64_t n, void *ws)
{
    (void)y;
    const float *w = l->param[0]->data;
    float *dw = l->grad[0]->data;
    conv2d_priv *pv = l->priv;
    int O = l->icfg[CFG_OUT], C = pv->plan.C, kk = pv->plan.k * pv->plan.k;
    cf_conv_backward(&pv->plan, O, &w, &dw, l->grad[1]->data, x, dy, pv->dx_fwd ? NULL : dx, n,
                     ws, l->scratch, l->threads);
    if (!pv->dx_fwd || !dx) return CFNET_OK;
    /* wt[c, o, t] = w[o, c, kk - 1 - t] */
    for (int c = 0; c < C; c++)
        for (int o = 0; o < O; o++) {
            const float *src = w + ((size_t)o * C + c) * kk;
            float *dst = pv->wt + ((size_t)c * O + o) * kk;
            for (int t = 0; t < kk; t++) dst[t] = src[kk - 1 - t];
        }
    const float *wt = pv->wt;
    cf_conv_forward(&pv->dxp, C, &wt, NULL, dy, dx, n, ws, l->scratch, l->threads, false);
    return CFNET_OK;
}

static void conv2d_destroy(cfnet_layer *l)
{
    conv2d_priv *pv = l->priv;
    cf_conv_plan_free(&pv->plan);
    cf_conv_plan_free(&pv->fwd);
    cf_conv_plan_free(&pv->dxp);
    cf_free(pv->wt);
    cf_free(pv);
}

static cfnet_status conv2d_check(int *ic, float *fc)
{
    (void)fc;
    CF_CHECK(cf_check_conv_args("conv2d", ic[CFG_OUT], INT32_MAX, ic[CFG_K],
                                (cfnet_padding)ic[CFG_PAD]));
    CF_FAIL_IF(ic[CFG_STRIDE] != 1 && ic[CFG_STRIDE] != 2, CFNET_E_INVALID_ARGUMENT,
               "conv2d: stride is %d, must be 1 or 2", ic[CFG_STRIDE]);
    return CFNET_OK;
}

const cf_layer_ops cf_conv2d_ops = {
    .name = "conv2d",
    .per_sample = true,
    .icfg_names = {"out_channels", "kernel", "stride", "padding", NULL},
    .check = conv2d_check,
    .setup = conv2d_setup,
    .workspace = conv2d_workspace,
    .workspace_kept = conv2d_workspace_kept,
    .forward = conv2d_forward,
    .forward_relu = conv2d_forward_relu,
    .backward = conv2d_backward,
    .destroy_priv = conv2d_destroy,
};

CFNET_API cfnet_status cfnet_layer_conv2d_create(int out_channels, int kernel, int stride,
                                                 cfnet_padding padding, cfnet_layer **out)
{
    const int cfg[] = {out_channels, kernel, stride, (int)padding};
    return cf_layer_create(CFNET_LAYER_CONV2D, cfg, NULL, NULL, out);
}
