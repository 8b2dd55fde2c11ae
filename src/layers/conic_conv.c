/* Conic convolution (paper eq. 6-12):
 *   y(x) = sum_r w_r(x) [(T_{g_R(r)} phi) * f](x) + b,   r = 0 .. 4R-1,
 * w_r = 1 inside cone r (r*D < theta < (r+1)*D, D = pi/(2R)), 1/2 on the ray between two cones,
 * 1/(4R) at the centre of an odd map. Shapes: x N x C x S x S, phi O x C x k x k,
 * y N x O x S' x S'.
 *
 * Every output pixel is computed once: pixels are grouped by cone (interior cones, rays, centre)
 * and each group runs one GEMM with its own filter: T_r phi inside cone r, the mean of the two
 * neighbouring rotations on a ray, the mean of all rotations at the centre. The filter bank is
 * rotated once per pass; the base filter's gradient is sum_r S_r^T (gradient of T_r phi). */
#include "kernels/convcore.h"
#include "kernels/rotate.h"
#include "layers/banks.h"
#include "platform/platform.h"

#include <math.h>
#include <string.h>

enum { CFG_OUT, CFG_K, CFG_R, CFG_PAD, CFG_INTERP };

/* Cone groups of the largest R: 4R cones, 4R rays between them, the centre. */
#define CF_CONIC_MAX_GROUPS (8 * CFNET_CONIC_MAX_R + 1)

typedef struct conic_priv {
    cf_conv_plan plan;
    int R, nrot, ngroups; /* nrot = 4R; groups: cones [0, 4R), rays [4R, 8R), centre 8R */
    cf_rotmap *rot;       /* nrot maps */
    bool *nonempty;       /* per group */
    /* Inference cache of the filter banks (allocated by the first inference): a copy of the
     * base filter they were built from, then every group's bank packed as the engine's forward
     * reads it (cf_conv_pack_forward). An inference whose base filter equals the copy bit for
     * bit copies the packed banks instead of rotating and packing again; lock guards it
     * (concurrent inference is allowed, so each call copies them into its own workspace). */
    float *cache;
    bool cached, lock_ready;
    cf_mutex lock;
} conic_priv;

/* Group of output pixel (i, j) in an S x S map: see the header comment. Exact: the position is
 * taken in doubled integer coordinates and turned into the first quadrant by quarter turns, so
 * rotating the pixel by 90 degrees adds exactly R to its cone. A lattice point lies on a ray
 * r*pi/(2R) only if that angle is a multiple of 45 degrees (the tangent of any other such
 * angle is irrational), so rays are tested on the axes and diagonals only. */
static int pixel_group(int S, int R, int i, int j)
{
    int a = 2 * j - (S - 1), b = (S - 1) - 2 * i; /* 2u, 2v */
    if (a == 0 && b == 0) return 8 * R;
    int q = 0;
    while (!(a > 0 && b >= 0)) { /* clockwise quarter turn: (a, b) -> (b, -a) */
        int t = a;
        a = b;
        b = -t;
        q++;
    }
    int nrot = 4 * R;
    if (b == 0) return 4 * R + (q * R) % nrot;                  /* ray at q * 90 degrees */
    if (a == b && R % 2 == 0) return 4 * R + (q * R + R / 2) % nrot; /* ray at 45 degrees */
    double phi = atan2((double)b, (double)a); /* in (0, pi/2), never on a ray here */
    int cone = (int)floor(phi / (3.14159265358979323846 / (2.0 * R)));
    if (cone >= R) cone = R - 1;
    return (cone + q * R) % nrot;
}

static void conic_destroy(cfnet_layer *l)
{
    conic_priv *p = l->priv;
    cf_conv_plan_free(&p->plan);
    if (p->rot)
        for (int r = 0; r < p->nrot; r++) cf_rotmap_free(&p->rot[r]);
    cf_free(p->rot);
    cf_free(p->nonempty);
    cf_free(p->cache);
    if (p->lock_ready) cf_mutex_destroy(&p->lock);
    cf_free(p);
}

static cfnet_status conic_setup(cfnet_layer *l, uint64_t seed)
{
    char s[96];
    cf_shape_str(s, sizeof s, l->in_ndim, l->in_shape);
    CF_FAIL_IF(l->in_ndim != 3, CFNET_E_SHAPE_MISMATCH, "conic_conv: input is %s, needs C x S x S",
               s);
    CF_FAIL_IF(l->in_shape[1] != l->in_shape[2], CFNET_E_SHAPE_MISMATCH,
               "conic_conv: input is %lldx%lld, rotation layers need square maps",
               (long long)l->in_shape[1], (long long)l->in_shape[2]);
    int O = l->icfg[CFG_OUT], k = l->icfg[CFG_K], R = l->icfg[CFG_R];
    CF_FAIL_IF(l->in_shape[0] > INT32_MAX / (k * k) || l->in_shape[1] > 1 << 14, CFNET_E_LIMIT,
               "conic_conv: input %s is too large", s);
    int C = (int)l->in_shape[0], S = (int)l->in_shape[1];
    cfnet_padding pad = (cfnet_padding)l->icfg[CFG_PAD];
    int OS = cf_conv_out_size(S, k, 1, pad);
    CF_FAIL_IF(OS < 1, CFNET_E_SHAPE_MISMATCH,
               "conic_conv: kernel %d does not fit input %s with valid padding", k, s);

    conic_priv *p = cf_alloc_zero(&l->alloc, 1, sizeof *p);
    CF_FAIL_IF(!p, CFNET_E_OUT_OF_MEMORY, "conic_conv: out of memory");
    l->priv = p;
    cf_mutex_init(&p->lock);
    p->lock_ready = true;
    p->R = R;
    p->nrot = 4 * R;
    p->ngroups = 8 * R + 1;
    p->rot = cf_alloc_zero(&l->alloc, (size_t)p->nrot, sizeof *p->rot);
    p->nonempty = cf_alloc_zero(&l->alloc, (size_t)p->ngroups, sizeof *p->nonempty);
    int32_t *group_of = cf_alloc(&l->alloc, (size_t)OS * (size_t)OS * sizeof *group_of);
    if (!p->rot || !p->nonempty || !group_of) {
        cf_free(group_of);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "conic_conv: out of memory");
    }
    for (int r = 0; r < p->nrot; r++) {
        cfnet_status st = cf_rotmap_build(&l->alloc, k, R, r, (cfnet_interp)l->icfg[CFG_INTERP], &p->rot[r]);
        if (st != CFNET_OK) {
            cf_free(group_of);
            return cf_error(st, "conic_conv: %s", cfnet_last_error());
        }
    }
    for (int i = 0; i < OS; i++) {
        for (int j = 0; j < OS; j++) {
            int g = pixel_group(OS, R, i, j);
            group_of[i * OS + j] = g;
            p->nonempty[g] = true;
        }
    }
    cfnet_status st = cf_conv_plan_init(&l->alloc, &p->plan, C, S, S, k, 1, pad, group_of, p->ngroups);
    cf_free(group_of);
    CF_CHECK(st);

    int64_t wshape[4] = {O, C, k, k};
    CF_CHECK(cf_layer_add_weight_bias(l, 4, wshape, p->plan.CK, seed));
    cf_layer_set_out_shape(l, 3, (const int64_t[]){O, OS, OS});
    return CFNET_OK;
}

/* Workspace: the engine's kept part (none, see cf_conv_workspace_kept), then scratch: the
 * rotated filters (nrot banks), the filters of the rays and the centre (nrot + 1 banks), their
 * gradients (as many), then the engine's scratch. Nothing of the layer's own is kept from a
 * training forward to its backward: the backward builds the banks again from the base filter
 * (the same bits: the parameters do not change in between), so in a network the banks live in
 * the scratch region all layers share instead of a kept region per layer. */
static size_t bank_floats(const cfnet_layer *l)
{
    const conic_priv *p = l->priv;
    return (size_t)l->icfg[CFG_OUT] * (size_t)p->plan.CK;
}

/* The banks and their gradients; an inference uses the same bytes for its copy of the packed
 * banks (cached_packed). */
static size_t banks_bytes(const cfnet_layer *l)
{
    const conic_priv *p = l->priv;
    size_t banks = (size_t)(2 * p->nrot + 1) * 2 * bank_floats(l),
           packed = cf_conv_packed_forward_floats(&p->plan, l->icfg[CFG_OUT]);
    return cf_align64((banks > packed ? banks : packed) * sizeof(float));
}

static size_t conic_workspace(const cfnet_layer *l, int64_t n)
{
    const conic_priv *p = l->priv;
    return banks_bytes(l) + cf_conv_workspace(&p->plan, l->icfg[CFG_OUT], n, l->threads);
}

static size_t conic_workspace_kept(const cfnet_layer *l, int64_t n)
{
    const conic_priv *p = l->priv;
    return cf_conv_workspace_kept(&p->plan, l->icfg[CFG_OUT], n, l->threads);
}

typedef struct conic_ws {
    float *rot, *grp, *drot, *dgrp; /* nrot, nrot+1, nrot, nrot+1 banks */
    void *engine, *engine_scratch;  /* the engine's workspace (its kept part) and scratch */
} conic_ws;

/* The scratch is the network's shared region while a network trains (l->scratch), else the
 * bytes after the kept part. */
static conic_ws carve(const cfnet_layer *l, int64_t n, void *ws)
{
    const conic_priv *p = l->priv;
    size_t bank = bank_floats(l);
    char *scratch = l->scratch ? (char *)l->scratch : (char *)ws + conic_workspace_kept(l, n);
    conic_ws w;
    w.rot = (float *)scratch;
    w.grp = w.rot + (size_t)p->nrot * bank;
    w.drot = w.grp + (size_t)(p->nrot + 1) * bank;
    w.dgrp = w.drot + (size_t)p->nrot * bank;
    w.engine = ws;
    w.engine_scratch = scratch + banks_bytes(l);
    return w;
}

/* Filter of group g and (for backward) where its gradient goes. */
static void group_banks(const cfnet_layer *l, conic_ws *w, const float **Wg, float **dWg)
{
    const conic_priv *p = l->priv;
    size_t bank = bank_floats(l);
    for (int g = 0; g < p->ngroups; g++) {
        if (g < p->nrot) {
            Wg[g] = w->rot + (size_t)g * bank;
            dWg[g] = w->drot + (size_t)g * bank;
        } else {
            Wg[g] = w->grp + (size_t)(g - p->nrot) * bank;
            dWg[g] = w->dgrp + (size_t)(g - p->nrot) * bank;
        }
    }
}

/* Fills the rotated filters (nrot banks) and the filters of the rays and the centre (nrot + 1
 * banks, only those whose group has a pixel). */
static void fill_banks(const cfnet_layer *l, float *rot, float *grp)
{
    const conic_priv *p = l->priv;
    int k = l->icfg[CFG_K], kk = k * k;
    size_t bank = bank_floats(l), planes = bank / (size_t)kk;
    const float *base = l->param[0]->data;
    for (int r = 0; r < p->nrot; r++) {
        float *dst = rot + (size_t)r * bank;
        for (size_t pl = 0; pl < planes; pl++)
            cf_rotmap_apply(&p->rot[r], base + pl * kk, dst + pl * kk);
    }
    for (int rho = 0; rho < p->nrot; rho++) { /* ray rho lies between cones rho-1 and rho */
        if (!p->nonempty[p->nrot + rho]) continue;
        const float *a = rot + (size_t)((rho + p->nrot - 1) % p->nrot) * bank,
                    *b = rot + (size_t)rho * bank;
        float *dst = grp + (size_t)rho * bank;
        for (size_t i = 0; i < bank; i++) dst[i] = 0.5f * (a[i] + b[i]);
    }
    if (p->nonempty[2 * p->nrot]) {
        float *dst = grp + (size_t)p->nrot * bank;
        for (size_t i = 0; i < bank; i++) {
            float s = 0.0f;
            for (int r = 0; r < p->nrot; r++) s += rot[(size_t)r * bank + i];
            dst[i] = s / (float)p->nrot;
        }
    }
}

/* Floats of the inference cache: the copy of the base filter, then the packed banks. */
static size_t cache_floats(const cfnet_layer *l)
{
    const conic_priv *p = l->priv;
    return bank_floats(l) + cf_conv_packed_forward_floats(&p->plan, l->icfg[CFG_OUT]);
}

/* Inference: the packed banks from the cache when the base filter has not changed since they
 * were built (checked bit for bit), else built (through the caller's tables Wg and dWg, which
 * keeps one pair of them on the stack), packed and cached; copied to the start of the
 * workspace's banks, which is returned. NULL without a cache (its allocation failed): the
 * caller builds the banks in the workspace as in training. */
static const float *cached_packed(cfnet_layer *l, conic_ws *w, const float **Wg, float **dWg)
{
    conic_priv *p = l->priv;
    int O = l->icfg[CFG_OUT];
    size_t bank = bank_floats(l), packed = cf_conv_packed_forward_floats(&p->plan, O);
    const float *base = l->param[0]->data;
    cf_mutex_lock(&p->lock);
    if (!p->cache) p->cache = cf_alloc_zero(&l->alloc, cache_floats(l), sizeof(float));
    if (!p->cache) {
        cf_mutex_unlock(&p->lock);
        return NULL;
    }
    if (!p->cached || memcmp(p->cache, base, bank * sizeof(float)) != 0) {
        fill_banks(l, w->rot, w->grp);
        group_banks(l, w, Wg, dWg);
        cf_conv_pack_forward(&p->plan, O, Wg, p->cache + bank);
        memcpy(p->cache, base, bank * sizeof(float));
        p->cached = true;
    }
    memcpy(w->rot, p->cache + bank, packed * sizeof(float));
    cf_mutex_unlock(&p->lock);
    return w->rot;
}

static cfnet_status conic_run(cfnet_layer *l, const float *x, float *y, int64_t n,
                              bool training, void *ws, bool relu)
{
    const conic_priv *p = l->priv;
    conic_ws w = carve(l, n, ws);
    const float *Wg[CF_CONIC_MAX_GROUPS];
    float *dWg[CF_CONIC_MAX_GROUPS];
    const float *packed = training ? NULL : cached_packed(l, &w, Wg, dWg);
    if (packed) {
        cf_conv_forward_packed(&p->plan, l->icfg[CFG_OUT], packed, l->param[1]->data, x, y, n,
                               w.engine, w.engine_scratch, l->threads, relu);
        return CFNET_OK;
    }
    fill_banks(l, w.rot, w.grp);
    group_banks(l, &w, Wg, dWg);
    cf_conv_forward(&p->plan, l->icfg[CFG_OUT], Wg, l->param[1]->data, x, y, n, w.engine,
                    w.engine_scratch, l->threads, relu);
    return CFNET_OK;
}

static cfnet_status conic_forward(cfnet_layer *l, const float *x, float *y, int64_t n,
                                  bool training, void *ws)
{
    return conic_run(l, x, y, n, training, ws, false);
}

static cfnet_status conic_forward_relu(cfnet_layer *l, const float *x, float *y, int64_t n,
                                       bool training, void *ws)
{
    return conic_run(l, x, y, n, training, ws, true);
}

static cfnet_status conic_backward(cfnet_layer *l, const float *x, const float *y,
                                   const float *dy, float *dx, int64_t n, void *ws)
{
    (void)y;
    const conic_priv *p = l->priv;
    int k = l->icfg[CFG_K], kk = k * k;
    size_t bank = bank_floats(l), planes = bank / (size_t)kk;
    conic_ws w = carve(l, n, ws);
    fill_banks(l, w.rot, w.grp); /* the forward's, which the scratch did not keep */
    memset(w.drot, 0, (size_t)(2 * p->nrot + 1) * bank * sizeof(float));
    const float *Wg[CF_CONIC_MAX_GROUPS];
    float *dWg[CF_CONIC_MAX_GROUPS];
    group_banks(l, &w, Wg, dWg);
    cf_conv_backward(&p->plan, l->icfg[CFG_OUT], Wg, dWg, l->grad[1]->data, x, dy, dx, n,
                     w.engine, w.engine_scratch, l->threads);
    /* Rays and centre hand their gradient to the rotations they average. */
    for (int rho = 0; rho < p->nrot; rho++) {
        if (!p->nonempty[p->nrot + rho]) continue;
        const float *src = w.dgrp + (size_t)rho * bank;
        float *a = w.drot + (size_t)((rho + p->nrot - 1) % p->nrot) * bank,
              *b = w.drot + (size_t)rho * bank;
        for (size_t i = 0; i < bank; i++) {
            a[i] += 0.5f * src[i];
            b[i] += 0.5f * src[i];
        }
    }
    if (p->nonempty[2 * p->nrot]) {
        const float *src = w.dgrp + (size_t)p->nrot * bank;
        float s = 1.0f / (float)p->nrot;
        for (int r = 0; r < p->nrot; r++) {
            float *d = w.drot + (size_t)r * bank;
            for (size_t i = 0; i < bank; i++) d[i] += s * src[i];
        }
    }
    float *gbase = l->grad[0]->data;
    for (int r = 0; r < p->nrot; r++) {
        const float *src = w.drot + (size_t)r * bank;
        for (size_t pl = 0; pl < planes; pl++)
            cf_rotmap_apply_transpose(&p->rot[r], src + pl * kk, gbase + pl * kk);
    }
    return CFNET_OK;
}

static cfnet_status conic_check(int *ic, float *fc)
{
    (void)fc;
    CF_CHECK(cf_check_conv_args("conic_conv", ic[CFG_OUT], INT32_MAX, ic[CFG_K],
                                (cfnet_padding)ic[CFG_PAD]));
    CF_FAIL_IF(ic[CFG_R] < 1 || ic[CFG_R] > CFNET_CONIC_MAX_R, CFNET_E_INVALID_ARGUMENT,
               "conic_conv: R is %d, must be in 1..%d (CFNET_CONIC_MAX_R)", ic[CFG_R],
               CFNET_CONIC_MAX_R);
    CF_FAIL_IF(ic[CFG_INTERP] != CFNET_INTERP_NEAREST && ic[CFG_INTERP] != CFNET_INTERP_BILINEAR &&
                   ic[CFG_INTERP] != CFNET_INTERP_STEERABLE,
               CFNET_E_INVALID_ARGUMENT, "conic_conv: unknown interpolation %d", ic[CFG_INTERP]);
    CF_FAIL_IF(ic[CFG_INTERP] == CFNET_INTERP_STEERABLE && ic[CFG_R] > 1 &&
                   ic[CFG_K] > CF_ROT_STEERABLE_MAX_K,
               CFNET_E_LIMIT, "conic_conv: steerable resampling supports kernels up to %d, got %d",
               CF_ROT_STEERABLE_MAX_K, ic[CFG_K]);
    return CFNET_OK;
}

static size_t conic_cache_bytes(const cfnet_layer *l)
{
    conic_priv *p = l->priv;
    if (!p || !p->lock_ready) return 0;
    cf_mutex_lock(&p->lock);
    size_t bytes = p->cache ? cache_floats(l) * sizeof(float) : 0;
    cf_mutex_unlock(&p->lock);
    return bytes;
}

const cf_layer_ops cf_conic_conv_ops = {
    .name = "conic_conv",
    .per_sample = true,
    .icfg_names = {"out_channels", "kernel", "R", "padding", "interp", NULL},
    .check = conic_check,
    .setup = conic_setup,
    .workspace = conic_workspace,
    .workspace_kept = conic_workspace_kept,
    .forward = conic_forward,
    .forward_relu = conic_forward_relu,
    .backward = conic_backward,
    .destroy_priv = conic_destroy,
    .cache_bytes = conic_cache_bytes,
};

CFNET_API cfnet_status cfnet_layer_conic_conv_create(int out_channels, int kernel, int R,
                                                     cfnet_padding padding, cfnet_interp interp,
                                                     cfnet_layer **out)
{
    const int cfg[] = {out_channels, kernel, R, (int)padding, (int)interp};
    return cf_layer_create(CFNET_LAYER_CONIC_CONV, cfg, NULL, NULL, out);
}

cfnet_status cf_conic_conv_group_banks(const cfnet_layer *l, float **bank, int *ngroups,
                                       int32_t **group_of)
{
    const conic_priv *p = l->priv;
    size_t nb = bank_floats(l), banks = (size_t)(2 * p->nrot + 1);
    int S = p->plan.OH; /* also for conic_conv_mirror, whose output has a copy axis */
    float *all = cf_alloc(&l->alloc, banks * nb * sizeof *all);
    float *out = cf_alloc(&l->alloc, banks * nb * sizeof *out);
    int32_t *of = cf_alloc(&l->alloc, (size_t)S * (size_t)S * sizeof *of);
    int index[CF_CONIC_MAX_GROUPS];
    if (!all || !out || !of) {
        cf_free(all);
        cf_free(out);
        cf_free(of);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "conic_conv: out of memory");
    }
    fill_banks(l, all, all + (size_t)p->nrot * nb);
    int used = 0;
    for (int g = 0; g < p->ngroups; g++) {
        index[g] = -1;
        if (!p->nonempty[g]) continue;
        memcpy(out + (size_t)used * nb, all + (size_t)g * nb, nb * sizeof *out);
        index[g] = used++;
    }
    for (int i = 0; i < S; i++)
        for (int j = 0; j < S; j++) of[i * S + j] = index[pixel_group(S, p->R, i, j)];
    cf_free(all);
    *bank = out;
    *ngroups = used;
    *group_of = of;
    return CFNET_OK;
}
