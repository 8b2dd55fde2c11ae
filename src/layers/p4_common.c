/* p4 and p4m lifting and group convolution: filter-bank expansion around the shared convolution
 * engine. See p4_common.h for the formula and the layout of the expanded bank. */
#include "p4_common.h"
#include "layers/banks.h"
#include "platform/platform.h"

#include <string.h>

typedef struct p4_priv {
    cf_conv_plan plan; /* C*G input planes, one group */
    int order;         /* group elements: 4 (p4) or 8 (p4m) */
    int G;             /* input copies: 1 (lifting) or order (group convolution) */
    cf_rotmap rot[8];  /* the exact permutations T_g, g = 0..order-1 */
    /* Inference cache (allocated by the first inference): copies of the base filter and the
     * bias it was built from, the expanded bias, then the expanded bank packed as the engine's
     * forward reads it (cf_conv_pack_forward). An inference whose filter and bias equal the
     * copies bit for bit copies the packed bank and the expanded bias instead of expanding and
     * packing again; lock guards it (concurrent inference is allowed, so each call copies them
     * into its own workspace). */
    float *cache;
    bool cached, lock_ready;
    cf_mutex lock;
} p4_priv;

static cfnet_status p4_check(const char *name, const int *ic, int order)
{
    /* order x out_channels output planes */
    return cf_check_conv_args(name, ic[CF_P4_CFG_OUT], INT32_MAX / order, ic[CF_P4_CFG_K],
                              (cfnet_padding)ic[CF_P4_CFG_PAD]);
}

/* The ops->check of the kind `name` for a group of `order` elements. */
#define P4_CHECK(fn, name, order)                                                              \
    cfnet_status fn(int *icfg, float *fcfg)                                                    \
    {                                                                                          \
        (void)fcfg;                                                                            \
        return p4_check(name, icfg, order);                                                    \
    }

P4_CHECK(cf_p4_check_lift, "p4_lift", 4)
P4_CHECK(cf_p4_check_conv, "p4_conv", 4)
P4_CHECK(cf_p4m_check_lift, "p4m_lift", 8)
P4_CHECK(cf_p4m_check_conv, "p4m_conv", 8)

void cf_p4_destroy(cfnet_layer *l)
{
    p4_priv *p = l->priv;
    cf_conv_plan_free(&p->plan);
    for (int g = 0; g < 8; g++) cf_rotmap_free(&p->rot[g]);
    cf_free(p->cache);
    if (p->lock_ready) cf_mutex_destroy(&p->lock);
    cf_free(p);
}

cfnet_status cf_p4_setup(cfnet_layer *l, uint64_t seed, int order, int G)
{
    const char *name = l->ops->name;
    char s[96];
    cf_shape_str(s, sizeof s, l->in_ndim, l->in_shape);
    if (G == 1)
        CF_FAIL_IF(l->in_ndim != 3, CFNET_E_SHAPE_MISMATCH, "%s: input is %s, needs C x S x S",
                   name, s);
    else
        CF_FAIL_IF(l->in_ndim != 4 || l->in_shape[1] != G, CFNET_E_SHAPE_MISMATCH,
                   "%s: input is %s, needs C x %d x S x S", name, s, G);
    int64_t H = l->in_shape[l->in_ndim - 2], W = l->in_shape[l->in_ndim - 1];
    CF_FAIL_IF(H != W, CFNET_E_SHAPE_MISMATCH,
               "%s: input is %lldx%lld, rotation layers need square maps", name, (long long)H,
               (long long)W);
    int O = l->icfg[CF_P4_CFG_OUT], k = l->icfg[CF_P4_CFG_K], kk = k * k;
    cfnet_padding pad = (cfnet_padding)l->icfg[CF_P4_CFG_PAD];
    CF_FAIL_IF(l->in_shape[0] > INT32_MAX / (G * kk) || H > 1 << 14, CFNET_E_LIMIT,
               "%s: input %s is too large", name, s);
    int C = (int)l->in_shape[0], S = (int)H;
    int OS = cf_conv_out_size(S, k, 1, pad);
    CF_FAIL_IF(OS < 1, CFNET_E_SHAPE_MISMATCH,
               "%s: kernel %d does not fit input %s with valid padding", name, k, s);
    /* The expanded bank and its gradient, plus the expanded bias, its gradient and the flag of
     * the bank (bank_valid), must fit in one workspace size. */
    size_t bank, bytes, nb = (size_t)order * (size_t)O;
    bool fits = cf_mul_size(nb, (size_t)C * (size_t)G * (size_t)kk, &bank) &&
                bank <= SIZE_MAX / 2 - 2 * nb - 1 &&
                cf_mul_size(2 * bank + 2 * nb + 1, sizeof(float), &bytes) &&
                bytes <= SIZE_MAX - 64;
    CF_FAIL_IF(!fits, CFNET_E_LIMIT, "%s: expanded filter bank for %d outputs and input %s is "
               "too large", name, O, s);

    p4_priv *p = cf_alloc_zero(&l->alloc, 1, sizeof *p);
    CF_FAIL_IF(!p, CFNET_E_OUT_OF_MEMORY, "%s: out of memory", name);
    l->priv = p;
    cf_mutex_init(&p->lock);
    p->lock_ready = true;
    p->order = order;
    p->G = G;
    for (int g = 0; g < order; g++) { /* T_g = rot90^r F^m, g = 4 m + r */
        CF_CHECK(cf_rotmap_build(&l->alloc, k, 1, g & 3, CFNET_INTERP_NEAREST, &p->rot[g]));
        if (g >= 4) cf_rotmap_mirror_source(k, &p->rot[g]);
    }
    cfnet_status st = cf_conv_plan_init(&l->alloc, &p->plan, C * G, S, S, k, 1, pad, NULL, 1);
    if (st != CFNET_OK)
        return cf_error(st, "%s: input is %s: %s", name, s, cfnet_last_error());

    int64_t wshape[5] = {O, C, G, k, k};
    if (G == 1) wshape[2] = k; /* O x C x k x k */
    /* fan-in C * G * k * k */
    CF_CHECK(cf_layer_add_weight_bias(l, G == 1 ? 4 : 5, wshape, p->plan.CK, seed));
    cf_layer_set_out_shape(l, 4, (const int64_t[]){O, order, OS, OS});
    return CFNET_OK;
}

/* Workspace: expanded bank (nO x CK, n = order), its gradient, expanded bias (nO), its
 * gradient, a flag (bank_valid), then the engine's own space for nO output planes. All of it up
 * to the engine's space is kept from a training forward to its backward, which uses the
 * forward's expanded bank. An inference from the cache copies the packed bank over the bank and
 * its gradient (the packing pads the nO rows to a multiple of 4 or 8, never more than twice
 * them since nO >= 4; bank_span takes the larger anyway) and the expanded bias into its place. */
static size_t maps_out(const cfnet_layer *l)
{
    const p4_priv *p = l->priv;
    return (size_t)p->order * (size_t)l->icfg[CF_P4_CFG_OUT];
}

static size_t bank_floats(const cfnet_layer *l)
{
    const p4_priv *p = l->priv;
    return maps_out(l) * (size_t)p->plan.CK;
}

/* Floats of the bank and its gradient, or of the packed bank if that is larger. */
static size_t bank_span(const cfnet_layer *l)
{
    const p4_priv *p = l->priv;
    size_t two = 2 * bank_floats(l),
           packed = cf_conv_packed_forward_floats(&p->plan, (int)maps_out(l));
    return two > packed ? two : packed;
}

static size_t own_bytes(const cfnet_layer *l)
{
    return cf_align64((bank_span(l) + 2 * maps_out(l) + 1) * sizeof(float));
}

size_t cf_p4_workspace(const cfnet_layer *l, int64_t n)
{
    const p4_priv *p = l->priv;
    return own_bytes(l) + cf_conv_workspace(&p->plan, (int)maps_out(l), n, l->threads);
}

size_t cf_p4_workspace_kept(const cfnet_layer *l, int64_t n)
{
    const p4_priv *p = l->priv;
    return own_bytes(l) + cf_conv_workspace_kept(&p->plan, (int)maps_out(l), n, l->threads);
}

typedef struct p4_ws {
    float *w, *dw, *b, *db;
    /* Whether w holds the expanded bank of the current weights: set by a forward that expands
     * it there, cleared by an inference from the cache (then a backward expands it itself). */
    int32_t *bank_valid;
    void *engine;
} p4_ws;

static p4_ws carve(const cfnet_layer *l, void *ws)
{
    size_t bank = bank_floats(l), nb = maps_out(l);
    p4_ws w;
    w.w = ws;
    w.dw = w.w + bank;
    w.b = w.w + bank_span(l);
    w.db = w.b + nb;
    w.bank_valid = (int32_t *)(w.db + nb);
    w.engine = (char *)ws + own_bytes(l);
    return w;
}

/* Input copy of the base filter that lands in column block h of expanded row g: g^-1 h (0 for
 * lifting). */
static inline int src_copy(int h, int g, int G)
{
    return G == 1 ? 0 : cf_d4_mul(cf_d4_inv(g), h);
}

/* Fills the expanded bank (nO x CK, n = order) and bias (nO). */
static void expand(const cfnet_layer *l, float *wexp, float *bexp)
{
    const p4_priv *p = l->priv;
    int O = l->icfg[CF_P4_CFG_OUT], k = l->icfg[CF_P4_CFG_K], kk = k * k, G = p->G,
        n_g = p->order;
    int C = p->plan.C / G;
    size_t CK = (size_t)p->plan.CK;
    const float *base = l->param[0]->data, *bias = l->param[1]->data;
    for (int o = 0; o < O; o++) {
        for (int g = 0; g < n_g; g++) {
            float *row = wexp + ((size_t)o * n_g + (size_t)g) * CK;
            for (int c = 0; c < C; c++)
                for (int h = 0; h < G; h++) {
                    const float *src =
                        base + (((size_t)o * C + (size_t)c) * G + (size_t)src_copy(h, g, G)) * kk;
                    cf_rotmap_apply(&p->rot[g], src, row + ((size_t)c * G + h) * kk);
                }
            bexp[o * n_g + g] = bias[o];
        }
    }
}

/* Floats of the inference cache: copies of the base filter (wn) and the bias (O), the
 * expanded bias (nO), then the packed bank (see cached_packed for the layout). */
static size_t cache_floats(const cfnet_layer *l)
{
    const p4_priv *p = l->priv;
    size_t nb = maps_out(l);
    return (size_t)l->param[0]->numel + (size_t)l->icfg[CF_P4_CFG_OUT] + nb +
           cf_conv_packed_forward_floats(&p->plan, (int)nb);
}

/* Bytes of the cache cached_packed allocates (0 before the first inference). */
size_t cf_p4_cache_bytes(const cfnet_layer *l)
{
    p4_priv *p = l->priv;
    if (!p || !p->lock_ready) return 0;
    cf_mutex_lock(&p->lock);
    size_t bytes = p->cache ? cache_floats(l) * sizeof(float) : 0;
    cf_mutex_unlock(&p->lock);
    return bytes;
}

/* Inference: the packed bank and the expanded bias from the cache when the base filter and the
 * bias have not changed since they were built (checked bit for bit), else expanded (in the
 * workspace), packed and cached; copied to the workspace's bank and bias. False without a cache
 * (its allocation failed): the caller expands in the workspace as in training. */
static bool cached_packed(cfnet_layer *l, p4_ws *w)
{
    p4_priv *p = l->priv;
    size_t nb = maps_out(l), O = (size_t)l->icfg[CF_P4_CFG_OUT],
           wn = (size_t)l->param[0]->numel,
           packed = cf_conv_packed_forward_floats(&p->plan, (int)nb);
    const float *base = l->param[0]->data, *bias = l->param[1]->data;
    cf_mutex_lock(&p->lock);
    if (!p->cache) p->cache = cf_alloc_zero(&l->alloc, cache_floats(l), sizeof(float));
    if (!p->cache) {
        cf_mutex_unlock(&p->lock);
        return false;
    }
    float *cw = p->cache, *cb = cw + wn, *cbexp = cb + O, *cpacked = cbexp + nb;
    if (!p->cached || memcmp(cw, base, wn * sizeof(float)) != 0 ||
        memcmp(cb, bias, O * sizeof(float)) != 0) {
        expand(l, w->w, cbexp);
        const float *wg = w->w;
        cf_conv_pack_forward(&p->plan, (int)nb, &wg, cpacked);
        memcpy(cw, base, wn * sizeof(float));
        memcpy(cb, bias, O * sizeof(float));
        p->cached = true;
    }
    memcpy(w->w, cpacked, packed * sizeof(float));
    memcpy(w->b, cbexp, nb * sizeof(float));
    cf_mutex_unlock(&p->lock);
    *w->bank_valid = 0;
    return true;
}

static void p4_run(cfnet_layer *l, const float *x, float *y, int64_t n, bool training, void *ws,
                   bool relu)
{
    const p4_priv *p = l->priv;
    p4_ws w = carve(l, ws);
    if (!training && cached_packed(l, &w)) {
        cf_conv_forward_packed(&p->plan, (int)maps_out(l), w.w, w.b, x, y, n, w.engine,
                               l->scratch, l->threads, relu);
        return;
    }
    expand(l, w.w, w.b);
    *w.bank_valid = 1;
    const float *wg = w.w;
    cf_conv_forward(&p->plan, (int)maps_out(l), &wg, w.b, x, y, n, w.engine, l->scratch,
                    l->threads, relu);
}

cfnet_status cf_p4_forward(cfnet_layer *l, const float *x, float *y, int64_t n, bool training,
                           void *ws)
{
    p4_run(l, x, y, n, training, ws, false);
    return CFNET_OK;
}

cfnet_status cf_p4_forward_relu(cfnet_layer *l, const float *x, float *y, int64_t n,
                                bool training, void *ws)
{
    p4_run(l, x, y, n, training, ws, true);
    return CFNET_OK;
}

/* Uses the expanded bank the preceding forward left in the workspace (expands it again after
 * an inference from the cache, which left the packed bank there). */
cfnet_status cf_p4_backward(cfnet_layer *l, const float *x, const float *y, const float *dy,
                            float *dx, int64_t n, void *ws)
{
    (void)y;
    const p4_priv *p = l->priv;
    int O = l->icfg[CF_P4_CFG_OUT], k = l->icfg[CF_P4_CFG_K], kk = k * k, G = p->G,
        n_g = p->order;
    int C = p->plan.C / G;
    size_t CK = (size_t)p->plan.CK, bank = bank_floats(l);
    p4_ws w = carve(l, ws);
    if (!*w.bank_valid) {
        expand(l, w.w, w.b);
        *w.bank_valid = 1;
    }
    memset(w.dw, 0, bank * sizeof(float));
    memset(w.db, 0, maps_out(l) * sizeof(float));
    const float *wg = w.w;
    float *dwg = w.dw;
    cf_conv_backward(&p->plan, n_g * O, &wg, &dwg, w.db, x, dy, dx, n, w.engine,
                     l->scratch, l->threads);
    float *gbase = l->grad[0]->data, *gbias = l->grad[1]->data;
    for (int o = 0; o < O; o++) {
        float db = 0.0f;
        for (int g = 0; g < n_g; g++) {
            const float *row = w.dw + ((size_t)o * n_g + (size_t)g) * CK;
            for (int c = 0; c < C; c++)
                for (int h = 0; h < G; h++) {
                    float *dst =
                        gbase + (((size_t)o * C + (size_t)c) * G + (size_t)src_copy(h, g, G)) * kk;
                    cf_rotmap_apply_transpose(&p->rot[g], row + ((size_t)c * G + h) * kk, dst);
                }
            db += w.db[o * n_g + g];
        }
        gbias[o] += db; /* one bias per output channel, shared by the group's copies */
    }
    return CFNET_OK;
}

cfnet_status cf_p4_expanded_bank(const cfnet_layer *l, float **bank, float **bias)
{
    float *w = cf_alloc(&l->alloc, bank_floats(l) * sizeof *w);
    float *b = cf_alloc(&l->alloc, maps_out(l) * sizeof *b);
    if (!w || !b) {
        cf_free(w);
        cf_free(b);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "%s: out of memory", l->ops->name);
    }
    expand(l, w, b);
    *bank = w;
    *bias = b;
    return CFNET_OK;
}
