/* Conic convolution with reflection: two copies per filter, exactly equivariant to the four
 * quarter turns and to the mirror F (u -> -u), i.e. to all of D4 (docs/layers.md).
 *
 *   y[o, 0] = Phi(f)[o],   y[o, 1] = F Phi(F~ f)[o]
 *
 * Phi is the conic convolution of conic_conv.c (weight O x (C G) x k x k) over the C G input
 * planes; F~ mirrors every plane and, for a 2-copy input (C x 2 x S x S), swaps the copies. Input
 * C x S x S (G = 1) or C x 2 x S x S (G = 2), output O x 2 x S' x S'. Transforming the input by
 * rho^r F^m (spatially, copy h -> h xor m) transforms the output the same way, since Phi commutes
 * with quarter turns and F rho = rho^-1 F; nothing depends on how the cones' filters are
 * resampled.
 *
 * The layer is conic_conv's vtable on a batch of 2n: the first n samples are f, the next n are
 * F~ f, so both halves run in the conic GEMMs together and the backward accumulates the weight
 * gradient of both; the workspace holds that batch, its output and their gradients. */
#include "nn/layer.h"

#include <string.h>

extern const cf_layer_ops cf_conic_conv_ops;

static cfnet_status mirror_check(int *ic, float *fc)
{
    cfnet_status st = cf_conic_conv_ops.check(ic, fc);
    if (st != CFNET_OK) return cf_error(st, "conic_conv_mirror: %s", cfnet_last_error());
    CF_FAIL_IF(ic[0] > INT32_MAX / 2, CFNET_E_INVALID_ARGUMENT,
               "conic_conv_mirror: out_channels %d: 2 x out_channels maps must fit an int", ic[0]);
    return CFNET_OK;
}

/* Input copies: 1 (planar input) or 2. */
static int copies(const cfnet_layer *l) { return l->in_ndim == 4 ? 2 : 1; }

static cfnet_status mirror_setup(cfnet_layer *l, uint64_t seed)
{
    char s[96];
    cf_shape_str(s, sizeof s, l->in_ndim, l->in_shape);
    CF_FAIL_IF(!(l->in_ndim == 3 || (l->in_ndim == 4 && l->in_shape[1] == 2)),
               CFNET_E_SHAPE_MISMATCH,
               "conic_conv_mirror: input is %s, needs C x S x S or C x 2 x S x S", s);
    int nd = l->in_ndim;
    int64_t shape[CFNET_MAX_DIMS];
    memcpy(shape, l->in_shape, sizeof shape);
    if (nd == 4) { /* C x 2 x S x S as 2C planes, plane c * 2 + h */
        CF_FAIL_IF(shape[0] > INT32_MAX / 2, CFNET_E_LIMIT, "conic_conv_mirror: input %s is too "
                   "large", s);
        l->in_ndim = 3;
        l->in_shape[0] = 2 * shape[0];
        l->in_shape[1] = shape[2];
        l->in_shape[2] = shape[3];
    }
    cfnet_status st = cf_conic_conv_ops.setup(l, seed);
    l->in_ndim = nd;
    memcpy(l->in_shape, shape, sizeof shape);
    if (st != CFNET_OK)
        return cf_error(st, "conic_conv_mirror: input is %s: %s", s, cfnet_last_error());
    int64_t O = l->out_shape[0], OS = l->out_shape[1];
    cf_layer_set_out_shape(l, 4, (const int64_t[]){O, 2, OS, OS});
    return CFNET_OK;
}

typedef struct mirror_ws {
    float *x2, *y2, *dy2, *dx2; /* 2n inputs, outputs (O x S' x S' each) and their gradients */
    void *conic;
} mirror_ws;

static mirror_ws carve(const cfnet_layer *l, int64_t n, void *ws)
{
    size_t xs = cf_align64((size_t)(2 * n * l->in_size) * sizeof(float));
    size_t ys = cf_align64((size_t)(n * l->out_size) * sizeof(float)); /* 2n x out_size / 2 */
    mirror_ws w;
    w.x2 = ws;
    w.dx2 = (float *)((char *)ws + xs);
    w.y2 = (float *)((char *)ws + 2 * xs);
    w.dy2 = (float *)((char *)ws + 2 * xs + ys);
    w.conic = (char *)ws + 2 * xs + 2 * ys;
    return w;
}

static size_t mirror_workspace(const cfnet_layer *l, int64_t n)
{
    size_t xs = cf_align64((size_t)(2 * n * l->in_size) * sizeof(float));
    size_t ys = cf_align64((size_t)(n * l->out_size) * sizeof(float));
    return 2 * xs + 2 * ys + cf_conic_conv_ops.workspace(l, 2 * n);
}

/* The doubled batch, its outputs and gradients, and what the conic layer keeps. */
static size_t mirror_workspace_kept(const cfnet_layer *l, int64_t n)
{
    size_t xs = cf_align64((size_t)(2 * n * l->in_size) * sizeof(float));
    size_t ys = cf_align64((size_t)(n * l->out_size) * sizeof(float));
    return 2 * xs + 2 * ys + cf_conic_conv_ops.workspace_kept(l, 2 * n);
}

/* out = F~ in for one sample of G x planes x ... : every S x S plane mirrored (column j <->
 * S-1-j); with G = 2 the copies of each channel exchanged. */
static void mirror_sample(const float *in, float *out, int64_t channels, int G, int64_t S)
{
    for (int64_t c = 0; c < channels; c++)
        for (int h = 0; h < G; h++) {
            const float *a = in + (c * G + (G == 2 ? 1 - h : h)) * S * S;
            float *b = out + (c * G + h) * S * S;
            for (int64_t i = 0; i < S; i++)
                for (int64_t j = 0; j < S; j++) b[i * S + j] = a[i * S + S - 1 - j];
        }
}

static cfnet_status mirror_forward(cfnet_layer *l, const float *x, float *y, int64_t n,
                                   bool training, void *ws)
{
    const int G = copies(l);
    const int64_t C = l->in_shape[0], S = l->in_shape[l->in_ndim - 1];
    const int64_t O = l->out_shape[0], OS = l->out_shape[2], half = O * OS * OS;
    mirror_ws w = carve(l, n, ws);
    memcpy(w.x2, x, (size_t)(n * l->in_size) * sizeof(float));
    for (int64_t s = 0; s < n; s++)
        mirror_sample(x + s * l->in_size, w.x2 + (n + s) * l->in_size, C, G, S);
    CF_CHECK(cf_conic_conv_ops.forward(l, w.x2, w.y2, 2 * n, training, w.conic));
    for (int64_t s = 0; s < n; s++)
        for (int64_t o = 0; o < O; o++) {
            float *ys = y + (s * O + o) * 2 * OS * OS;
            memcpy(ys, w.y2 + s * half + o * OS * OS, (size_t)(OS * OS) * sizeof(float));
            mirror_sample(w.y2 + (n + s) * half + o * OS * OS, ys + OS * OS, 1, 1, OS);
        }
    return CFNET_OK;
}

/* With Y2 = Phi([x; F~ x]) and y = [Y2 top, F Y2 bottom]: dY2 = [dy0; F dy1], then
 * dx = dX2 top + F~ dX2 bottom (F and F~ are their own inverses and transposes). */
static cfnet_status mirror_backward(cfnet_layer *l, const float *x, const float *y,
                                    const float *dy, float *dx, int64_t n, void *ws)
{
    (void)x;
    (void)y;
    const int G = copies(l);
    const int64_t C = l->in_shape[0], S = l->in_shape[l->in_ndim - 1];
    const int64_t O = l->out_shape[0], OS = l->out_shape[2], half = O * OS * OS;
    mirror_ws w = carve(l, n, ws);
    for (int64_t s = 0; s < n; s++)
        for (int64_t o = 0; o < O; o++) {
            const float *dys = dy + (s * O + o) * 2 * OS * OS;
            memcpy(w.dy2 + s * half + o * OS * OS, dys, (size_t)(OS * OS) * sizeof(float));
            mirror_sample(dys + OS * OS, w.dy2 + (n + s) * half + o * OS * OS, 1, 1, OS);
        }
    CF_CHECK(cf_conic_conv_ops.backward(l, w.x2, w.y2, w.dy2, dx ? w.dx2 : NULL, 2 * n,
                                        w.conic));
    if (!dx) return CFNET_OK;
    for (int64_t s = 0; s < n; s++) {
        float *d = dx + s * l->in_size;
        mirror_sample(w.dx2 + (n + s) * l->in_size, d, C, G, S);
        const float *top = w.dx2 + s * l->in_size;
        for (int64_t i = 0; i < l->in_size; i++) d[i] += top[i];
    }
    return CFNET_OK;
}

static void mirror_destroy(cfnet_layer *l)
{
    if (cf_conic_conv_ops.destroy_priv) cf_conic_conv_ops.destroy_priv(l);
}

/* The conic layer's inference cache, which its forward (run on [x; F~ x]) allocates. */
static size_t mirror_cache_bytes(const cfnet_layer *l)
{
    return cf_conic_conv_ops.cache_bytes(l);
}

const cf_layer_ops cf_conic_conv_mirror_ops = {
    .name = "conic_conv_mirror",
    .per_sample = true,
    .icfg_names = {"out_channels", "kernel", "R", "padding", "interp", NULL},
    .check = mirror_check,
    .setup = mirror_setup,
    .workspace = mirror_workspace,
    .workspace_kept = mirror_workspace_kept,
    .forward = mirror_forward,
    .backward = mirror_backward,
    .destroy_priv = mirror_destroy,
    .cache_bytes = mirror_cache_bytes,
};

CFNET_API cfnet_status cfnet_layer_conic_conv_mirror_create(int out_channels, int kernel, int R,
                                                            cfnet_padding padding,
                                                            cfnet_interp interp,
                                                            cfnet_layer **out)
{
    const int cfg[] = {out_channels, kernel, R, (int)padding, (int)interp};
    return cf_layer_create(CFNET_LAYER_CONIC_CONV_MIRROR, cfg, NULL, NULL, out);
}
