/* DFT transition, part (a): projection onto rotated filters as large as the map (paper eq. 13).
 *
 * Planar input f (K x M x M): Psi(n, r) = <T_{g_R(r)} phi_n, f> + b_n, r = 0 .. 4R-1, with
 * phi_n in R^{K x M x M} rotated plane by plane (quarter turns exact, other angles `interp`).
 * p4 input f (K x 4 x M x M, R = 1): the p4 group convolution evaluated at the centre,
 * Psi(n, r) = sum_{c,s,z} f[c, s, z] (rot90^r phi_n)[c, (s - r) mod 4, z] + b_n.
 * p4m input f (K x 8 x M x M, R = 1): the p4m group convolution at the centre,
 * Psi(n, g) = sum_{c,h,z} f[c, h, z] (T_g phi_n)[c, g^-1 h, z] + b_n, g = 4 m + r in D4
 * (p4_common.h), output N x 8, index n * 8 + g.
 * Output per sample: N x 4R, index n * 4R + r.
 *
 * Each pass expands the filter bank into Wrot, (N 4R) x D with D = per-sample input size, in the
 * workspace (a forward leaves it there for the backward), then one GEMM for the whole batch:
 * Psi = X Wrot^T + b. Backward: dX = dPsi Wrot, dWrot = dPsi^T X, and the gradient flows back
 * through the expansion, dW += sum_r S_r^T dWrot. */
#include "core/pool.h"
#include "kernels/rotate.h"
#include "layers/banks.h"
#include "layers/p4_common.h"
#include "nn/layer.h"

#include "platform/platform.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

enum { ICFG_FILTERS = 0, ICFG_R = 1, ICFG_INTERP = 2 };

typedef struct dft_projection_priv {
    int G;            /* input copies: 1 planar, 4 (p4: K x 4 x M x M) or 8 (p4m) */
    int K, M, MM;     /* channels, map size, M * M */
    int nrot;         /* 4R */
    int rows;         /* N * 4R: rows of Wrot, output values per sample */
    int D;            /* per-sample input size: K G M M */
    cf_rotmap *maps;  /* nrot maps */
    /* Inference cache (allocated by the first inference): a copy of the weights and the Wrot
     * built from them; an inference whose weights equal the copy bit for bit uses it instead of
     * rotating again. lock guards it and is held through the product that reads it
     * (concurrent inference is allowed). */
    float *cache, *cache_wrot;
    bool cached, lock_ready;
    cf_mutex lock;
} dft_projection_priv;

static void dft_projection_destroy_priv(cfnet_layer *l)
{
    dft_projection_priv *p = l->priv;
    if (!p) return;
    if (p->maps)
        for (int r = 0; r < p->nrot; r++) cf_rotmap_free(&p->maps[r]);
    cf_free(p->maps);
    cf_free(p->cache);
    cf_free(p->cache_wrot);
    if (p->lock_ready) cf_mutex_destroy(&p->lock);
    cf_free(p);
    l->priv = NULL;
}

static cfnet_status dft_projection_setup(cfnet_layer *l, uint64_t seed)
{
    const int N = l->icfg[ICFG_FILTERS], R = l->icfg[ICFG_R];
    const cfnet_interp interp = (cfnet_interp)l->icfg[ICFG_INTERP];
    char buf[96];
    const char *shape = cf_shape_str(buf, sizeof buf, l->in_ndim, l->in_shape);
    int G;
    int64_t K, M;
    if (l->in_ndim == 3) {
        G = 1;
        K = l->in_shape[0];
        M = l->in_shape[1];
        CF_FAIL_IF(l->in_shape[2] != M, CFNET_E_SHAPE_MISMATCH,
                   "dft_projection: input is %s, rotation layers need square maps", shape);
    } else if (l->in_ndim == 4) {
        K = l->in_shape[0];
        M = l->in_shape[2];
        CF_FAIL_IF(l->in_shape[1] != 4 && l->in_shape[1] != 8, CFNET_E_SHAPE_MISMATCH,
                   "dft_projection: input is %s, a p4 map needs 4 rotations on axis 1 "
                   "(K x 4 x M x M), a p4m map 8 (K x 8 x M x M)", shape);
        G = (int)l->in_shape[1];
        CF_FAIL_IF(l->in_shape[3] != M, CFNET_E_SHAPE_MISMATCH,
                   "dft_projection: input is %s, rotation layers need square maps", shape);
        CF_FAIL_IF(R != 1, CFNET_E_SHAPE_MISMATCH,
                   "dft_projection: %s input %s has %d copies, so R must be 1 (layer has R = %d)",
                   G == 4 ? "p4" : "p4m", shape, G, R);
        CF_FAIL_IF(G == 8 && N > INT_MAX / 8, CFNET_E_LIMIT,
                   "dft_projection: %d filters x 8 outputs exceed %d", N, INT_MAX);
    } else {
        return cf_error(CFNET_E_SHAPE_MISMATCH,
                        "dft_projection: input is %s, expected K x M x M, K x 4 x M x M or "
                        "K x 8 x M x M", shape);
    }
    /* GEMM dimensions are int, rotation maps index with int32. */
    CF_FAIL_IF(l->in_size > INT_MAX, CFNET_E_LIMIT,
               "dft_projection: input %s has more than %d values per sample", shape, INT_MAX);

    /* create() checked that N * 4R fits int; p4m: 8 outputs per filter, checked above */
    const int nrot = G == 8 ? 8 : 4 * R, rows = N * nrot;
    size_t bank, bank_bytes, nmaps, maps_bytes;
    CF_FAIL_IF(!cf_mul_size((size_t)rows, (size_t)l->in_size, &bank) ||
                   !cf_mul_size(bank, 2 * sizeof(float), &bank_bytes) ||
                   bank_bytes > SIZE_MAX / 2,
               CFNET_E_LIMIT, "dft_projection: filter bank %d x %lld is too large", rows,
               (long long)l->in_size);
    CF_FAIL_IF(!cf_mul_size((size_t)nrot, (size_t)(M * M), &nmaps) ||
                   !cf_mul_size(nmaps, sizeof(int32_t) + sizeof(float), &maps_bytes) ||
                   maps_bytes > SIZE_MAX / 4,
               CFNET_E_LIMIT, "dft_projection: rotation tables for %d rotations of %lldx%lld are "
               "too large", nrot, (long long)M, (long long)M);
    CF_FAIL_IF(interp == CFNET_INTERP_STEERABLE && R > 1 && M > CF_ROT_STEERABLE_MAX_K, CFNET_E_LIMIT,
               "dft_projection: input %s: steerable resampling supports maps up to %dx%d",
               shape, CF_ROT_STEERABLE_MAX_K, CF_ROT_STEERABLE_MAX_K);

    dft_projection_priv *p = cf_alloc_zero(&l->alloc, 1, sizeof *p);
    CF_FAIL_IF(!p, CFNET_E_OUT_OF_MEMORY, "dft_projection: out of memory");
    l->priv = p; /* freed by destroy_priv if anything below fails */
    cf_mutex_init(&p->lock);
    p->lock_ready = true;
    p->G = G;
    p->K = (int)K;
    p->M = (int)M;
    p->MM = (int)(M * M);
    p->nrot = nrot;
    p->rows = rows;
    p->D = (int)l->in_size;
    p->maps = cf_alloc_zero(&l->alloc, (size_t)nrot, sizeof *p->maps);
    CF_FAIL_IF(!p->maps, CFNET_E_OUT_OF_MEMORY, "dft_projection: out of memory");
    for (int r = 0; r < nrot; r++) { /* p4m: T_g = rot90^(g mod 4) F^(g / 4) */
        cfnet_status st =
            cf_rotmap_build(&l->alloc, p->M, R, G == 8 ? r & 3 : r, interp, &p->maps[r]);
        CF_FAIL_IF(st != CFNET_OK, st, "dft_projection: %s", cfnet_last_error());
        if (G == 8 && r >= 4) cf_rotmap_mirror_source(p->M, &p->maps[r]);
    }

    cfnet_tensor *w = NULL, *b = NULL;
    int64_t wshape[5] = {N, K, G, M, M};
    if (G > 1) {
        CF_CHECK(cf_layer_add_param(l, "weight", 5, wshape, &w));
    } else {
        wshape[2] = M; /* {N, K, M, M} */
        CF_CHECK(cf_layer_add_param(l, "weight", 4, wshape, &w));
    }
    int64_t bshape[1] = {N};
    CF_CHECK(cf_layer_add_param(l, "bias", 1, bshape, &b));
    cf_rng rng;
    cf_rng_seed(&rng, seed);
    cf_init_he(w, l->in_size, &rng); /* fan-in K M M, or K 4 M M */

    cf_layer_set_out_shape(l, 2, (const int64_t[]){N, nrot});
    return CFNET_OK;
}

/* Workspace: Wrot and dWrot, (N 4R) x D floats each, then a flag telling whether Wrot holds the
 * bank of the forward that last ran on this workspace; independent of the batch size. */
static size_t dft_projection_workspace(const cfnet_layer *l, int64_t n)
{
    (void)n;
    const dft_projection_priv *p = l->priv;
    size_t bank = (size_t)p->rows * (size_t)p->D * sizeof(float);
    return 2 * cf_align64(bank) + sizeof(int);
}

static float *bank_grad(const dft_projection_priv *p, void *ws)
{
    return (float *)((char *)ws + cf_align64((size_t)p->rows * (size_t)p->D * sizeof(float)));
}

/* An inference forward that uses the layer's cache leaves Wrot unwritten: it clears the flag,
 * and a backward after it expands the bank itself. */
static int *bank_valid(const dft_projection_priv *p, void *ws)
{
    return (int *)((char *)ws + 2 * cf_align64((size_t)p->rows * (size_t)p->D * sizeof(float)));
}

/* Row n * 4R + r of Wrot, column block of input plane (c, s), comes from weight plane `src` via
 * rotation map r. For planar input the planes are c = 0 .. K-1 and src = (n, c); for p4 input
 * plane (c, s) comes from (n, c, (s - r) mod 4); for p4m input plane (c, h) of row g from
 * (n, c, g^-1 h). */
static size_t src_plane(const dft_projection_priv *p, int n, int r, int plane)
{
    if (p->G == 1) return (size_t)n * (size_t)p->K + (size_t)plane;
    int c = plane / p->G, s = plane % p->G;
    int from = p->G == 4 ? (s - r + 4) % 4 : cf_d4_mul(cf_d4_inv(r), s);
    return ((size_t)n * (size_t)p->K + (size_t)c) * (size_t)p->G + (size_t)from;
}

/* Fills Wrot, (N 4R) x D: row n * 4R + r is T_{g_R(r)} phi_n plane by plane. */
static void expand(const cfnet_layer *l, float *Wrot)
{
    const dft_projection_priv *p = l->priv;
    const int N = l->icfg[ICFG_FILTERS], nrot = p->nrot, MM = p->MM, D = p->D;
    const int planes = D / MM;
    const float *W = l->param[0]->data;
    for (int f = 0; f < N; f++)
        for (int r = 0; r < nrot; r++) {
            const cf_rotmap *map = &p->maps[r];
            float *row = Wrot + ((size_t)f * (size_t)nrot + (size_t)r) * (size_t)D;
            for (int q = 0; q < planes; q++)
                cf_rotmap_apply(map, W + src_plane(p, f, r, q) * (size_t)MM,
                                row + (size_t)q * (size_t)MM);
        }
}

/* Floats of the inference cache: the copy of the weights (returned in *weights) and Wrot
 * (*wrot), two blocks; returns their sum. */
static size_t cache_floats(const cfnet_layer *l, size_t *weights, size_t *wrot)
{
    const dft_projection_priv *p = l->priv;
    *weights = (size_t)cfnet_tensor_numel(l->param[0]);
    *wrot = (size_t)p->rows * (size_t)p->D;
    return *weights + *wrot;
}

static cfnet_status dft_projection_forward(cfnet_layer *l, const float *x, float *y, int64_t n,
                                           bool training, void *ws)
{
    dft_projection_priv *p = l->priv;
    CF_FAIL_IF(n > INT_MAX, CFNET_E_LIMIT, "dft_projection: batch of %lld exceeds %d",
               (long long)n, INT_MAX);
    const int N = l->icfg[ICFG_FILTERS], nrot = p->nrot, D = p->D;
    const float *b = l->param[1]->data;
    float *Wrot = ws;
    bool locked = false;
    if (!training) {
        size_t wn, wrot;
        cache_floats(l, &wn, &wrot);
        cf_mutex_lock(&p->lock);
        locked = true;
        if (!p->cache) {
            p->cache = cf_alloc(&l->alloc, wn * sizeof(float));
            p->cache_wrot = cf_alloc(&l->alloc, wrot * sizeof(float));
            if (!p->cache || !p->cache_wrot) {
                cf_free(p->cache);
                cf_free(p->cache_wrot);
                p->cache = p->cache_wrot = NULL;
            }
        }
        if (p->cache) {
            if (!p->cached || memcmp(p->cache, l->param[0]->data, wn * sizeof(float)) != 0) {
                expand(l, p->cache_wrot);
                memcpy(p->cache, l->param[0]->data, wn * sizeof(float));
                p->cached = true;
            }
            Wrot = p->cache_wrot;
            *bank_valid(p, ws) = 0;
        } else {
            cf_mutex_unlock(&p->lock);
            locked = false;
            expand(l, Wrot);
            *bank_valid(p, ws) = 1;
        }
    } else {
        expand(l, Wrot);
        *bank_valid(p, ws) = 1;
    }
    /* Psi (n x rows) = X (n x D) Wrot^T. */
    cf_blas_single_enter(); /* OpenBLAS on one thread, as in the engine (core/pool.h) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, p->rows, D, 1.0f, x, D, Wrot,
                D, 0.0f, y, p->rows);
    cf_blas_single_leave();
    if (locked) cf_mutex_unlock(&p->lock);
    for (int64_t s = 0; s < n; s++) {
        float *ys = y + s * p->rows;
        for (int f = 0; f < N; f++)
            for (int r = 0; r < nrot; r++) ys[f * nrot + r] += b[f];
    }
    return CFNET_OK;
}

static cfnet_status dft_projection_backward(cfnet_layer *l, const float *x, const float *y,
                                            const float *dy, float *dx, int64_t n, void *ws)
{
    (void)y;
    const dft_projection_priv *p = l->priv;
    CF_FAIL_IF(n > INT_MAX, CFNET_E_LIMIT, "dft_projection: batch of %lld exceeds %d",
               (long long)n, INT_MAX);
    const int N = l->icfg[ICFG_FILTERS], nrot = p->nrot, MM = p->MM, D = p->D;
    const int planes = D / MM;
    float *Wrot = ws;
    if (dx && !*bank_valid(p, ws)) expand(l, Wrot);
    float *dWrot = bank_grad(p, ws), *dW = l->grad[0]->data, *db = l->grad[1]->data;

    cf_blas_single_enter(); /* OpenBLAS on one thread, as in the engine (core/pool.h) */
    /* dX (n x D) = dPsi (n x rows) Wrot (rows x D). */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, D, p->rows, 1.0f, dy,
                    p->rows, Wrot, D, 0.0f, dx, D);
    /* dWrot (rows x D) = dPsi^T X. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p->rows, D, (int)n, 1.0f, dy, p->rows,
                x, D, 0.0f, dWrot, D);
    cf_blas_single_leave();
    for (int f = 0; f < N; f++)
        for (int r = 0; r < nrot; r++) {
            const cf_rotmap *map = &p->maps[r];
            const float *row = dWrot + ((size_t)f * (size_t)nrot + (size_t)r) * (size_t)D;
            for (int q = 0; q < planes; q++)
                cf_rotmap_apply_transpose(map, row + (size_t)q * (size_t)MM,
                                          dW + src_plane(p, f, r, q) * (size_t)MM);
        }
    for (int f = 0; f < N; f++) {
        double acc = 0.0;
        for (int64_t s = 0; s < n; s++)
            for (int r = 0; r < nrot; r++) acc += dy[s * p->rows + f * nrot + r];
        db[f] += (float)acc;
    }
    return CFNET_OK;
}

static cfnet_status dft_projection_check(int *ic, float *fc)
{
    (void)fc;
    int filters = ic[ICFG_FILTERS], R = ic[ICFG_R], interp = ic[ICFG_INTERP];
    CF_FAIL_IF(filters < 1, CFNET_E_INVALID_ARGUMENT,
               "dft_projection: filters is %d, must be >= 1", filters);
    CF_FAIL_IF(R < 1, CFNET_E_INVALID_ARGUMENT, "dft_projection: R is %d, must be >= 1", R);
    CF_FAIL_IF(interp != CFNET_INTERP_NEAREST && interp != CFNET_INTERP_BILINEAR &&
                   interp != CFNET_INTERP_STEERABLE,
               CFNET_E_INVALID_ARGUMENT,
               "dft_projection: interp is %d, must be CFNET_INTERP_NEAREST (0), "
               "CFNET_INTERP_BILINEAR (1) or CFNET_INTERP_STEERABLE (2)", interp);
    CF_FAIL_IF((int64_t)filters * 4 * R > INT_MAX, CFNET_E_LIMIT,
               "dft_projection: filters x 4R = %d x %lld exceeds %d", filters, 4 * (long long)R,
               INT_MAX);
    return CFNET_OK;
}

static size_t dft_projection_cache_bytes(const cfnet_layer *l)
{
    dft_projection_priv *p = l->priv;
    if (!p || !p->lock_ready) return 0;
    size_t wn, wrot, floats = cache_floats(l, &wn, &wrot);
    cf_mutex_lock(&p->lock);
    size_t bytes = p->cache ? floats * sizeof(float) : 0;
    cf_mutex_unlock(&p->lock);
    return bytes;
}

const cf_layer_ops cf_dft_projection_ops = {
    .name = "dft_projection",
    .icfg_names = {"filters", "R", "interp", NULL},
    .check = dft_projection_check,
    .setup = dft_projection_setup,
    .workspace = dft_projection_workspace,
    .forward = dft_projection_forward,
    .backward = dft_projection_backward,
    .destroy_priv = dft_projection_destroy_priv,
    .cache_bytes = dft_projection_cache_bytes,
};

CFNET_API cfnet_status cfnet_layer_dft_projection_create(int filters, int R, cfnet_interp interp,
                                                         cfnet_layer **out)
{
    const int cfg[] = {filters, R, (int)interp};
    return cf_layer_create(CFNET_LAYER_DFT_PROJECTION, cfg, NULL, NULL, out);
}

cfnet_status cf_dft_projection_bank(const cfnet_layer *l, float **bank)
{
    const dft_projection_priv *p = l->priv;
    float *w = cf_alloc(&l->alloc, (size_t)p->rows * (size_t)p->D * sizeof *w);
    CF_FAIL_IF(!w, CFNET_E_OUT_OF_MEMORY, "dft_projection: out of memory");
    expand(l, w);
    *bank = w;
    return CFNET_OK;
}
