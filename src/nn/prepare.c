/* cfnet_network_prepare_image: one image prepared as `cfnet predict` prepares it, from the
 * settings `cfnet train` stores in the network's metadata (docs/cli.md, "What the model file
 * holds"). `cfnet predict` and `cfnet eval` call it, so hosts and the command share this code. */
#include "network.h"
#include "kernels/image.h"

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* The scales `cfnet train --scale` takes and a model may store (src/tool: TOOL_SCALE_MIN/MAX). */
#define SCALE_MIN 1e-30
#define SCALE_MAX 1e30

typedef struct prep_settings {
    int64_t channels, size;
    bool pad, percentile;
    double low, high, scale;
} prep_settings;

/* `text` as the command's own reader takes it: sscanf's grammar, with the C locale's decimal
 * point whatever the thread's or process's locale (a host under de_DE would read "99.8" as 99). */
static int scan_c_locale(const char *text, const char *fmt, double *a, double *b)
{
    /* all categories: glibc then gives its static C locale, nothing allocated or read */
    locale_t c = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (!c) return -2;
    locale_t old = uselocale(c);
    char extra;
    int n = b ? sscanf(text, fmt, a, b, &extra) : sscanf(text, fmt, a, &extra);
    uselocale(old);
    freelocale(c);
    return n;
}

/* A whole decimal number in [lo, hi] ("64"; no sign, spaces or other text). */
static bool parse_count(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t v = 0;
    if (!s || !*s) return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > hi) return false;
        v = v * 10 + (*s - '0');
    }
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

static cfnet_status read_settings(const cfnet_network *net, prep_settings *ps)
{
    static const char what[] = "network_prepare_image";
    static const char *const keys[] = {"channels", "input_size", "normalization"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        CF_FAIL_IF(!cf_network_metadata_value(net, keys[i]), CFNET_E_FORMAT,
                   "%s: the network's metadata has no \"%s\": it was not trained by the cfnet "
                   "command (docs/cli.md, \"A network trained elsewhere\", says what to add)",
                   what, keys[i]);
    const char *ch = cf_network_metadata_value(net, "channels");
    const char *sz = cf_network_metadata_value(net, "input_size");
    const char *pad = cf_network_metadata_value(net, "pad");
    const char *norm = cf_network_metadata_value(net, "normalization");
    CF_FAIL_IF(!parse_count(ch, 1, 4096, &ps->channels) || ps->channels != net->in_shape[0],
               CFNET_E_FORMAT,
               "%s: metadata \"channels\" is \"%.40s\", the network takes %lld channels", what,
               ch, (long long)net->in_shape[0]);
    CF_FAIL_IF(!parse_count(sz, 1, 1 << 20, &ps->size) || ps->size != net->in_shape[1] ||
                   ps->size != net->in_shape[2],
               CFNET_E_FORMAT, "%s: metadata \"input_size\" is \"%.40s\", the network takes %lld x "
               "%lld images", what, sz, (long long)net->in_shape[1], (long long)net->in_shape[2]);
    CF_FAIL_IF(pad && strcmp(pad, "0") && strcmp(pad, "1"), CFNET_E_FORMAT,
               "%s: metadata \"pad\" is \"%.40s\", need 0 or 1", what, pad);
    ps->pad = pad && !strcmp(pad, "1");
    int n = scan_c_locale(norm, "percentile %lf %lf %c", &ps->low, &ps->high);
    if (n == 2) {
        ps->percentile = true;
        CF_FAIL_IF(!(ps->low >= 0 && ps->low < ps->high && ps->high <= 100), CFNET_E_FORMAT,
                   "%s: metadata \"normalization\" is \"%.80s\": need 0 <= LOW < HIGH <= 100",
                   what, norm);
        return CFNET_OK;
    }
    if (n != -2) n = scan_c_locale(norm, "scale %lf %c", &ps->scale, NULL);
    CF_FAIL_IF(n == -2, CFNET_E_OUT_OF_MEMORY, "%s: cannot create the C locale", what);
    CF_FAIL_IF(n != 1, CFNET_E_FORMAT,
               "%s: metadata \"normalization\" is \"%.80s\", need \"percentile LOW HIGH\" or "
               "\"scale X\"", what, norm);
    CF_FAIL_IF(!(ps->scale >= SCALE_MIN && ps->scale <= SCALE_MAX), CFNET_E_FORMAT,
               "%s: metadata \"normalization\" is \"%.80s\": need a scale in %g..%g", what, norm,
               SCALE_MIN, SCALE_MAX);
    ps->percentile = false;
    return CFNET_OK;
}

/* Source start, target start and length of the centre crop (n >= S) or centred pad (n < S). */
static void place(int64_t n, int64_t S, int64_t *src, int64_t *dst, int64_t *len)
{
    if (n >= S) {
        *src = (n - S) / 2;
        *dst = 0;
        *len = S;
    } else {
        *src = 0;
        *dst = (S - n) / 2;
        *len = n;
    }
}

CFNET_API cfnet_status cfnet_network_prepare_image(const cfnet_network *net,
                                                   const cfnet_tensor *image, int flags,
                                                   cfnet_tensor *batch, int64_t index)
{
    static const char what[] = "network_prepare_image";
    char b1[96], b2[96];
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_CHECK(cf_handle_check(image, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_CHECK(cf_handle_check(batch, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_FAIL_IF(!net || !image || !batch, CFNET_E_INVALID_ARGUMENT, "%s: NULL argument", what);
    CF_FAIL_IF(flags & ~CFNET_PREPARE_PAD, CFNET_E_INVALID_ARGUMENT,
               "%s: unknown flags 0x%x (only CFNET_PREPARE_PAD)", what, (unsigned)flags);
    CF_CHECK(cf_tensor_writable(what, "batch tensor", batch));
    CF_NET_GUARD(net, false, what);
    prep_settings ps;
    CF_CHECK(read_settings(net, &ps));
    const int64_t C = ps.channels, S = ps.size;

    const int64_t *is = image->shape;
    const bool lead = image->ndim == 4 && is[0] == 1;
    CF_FAIL_IF(image->ndim != 3 && !lead, CFNET_E_SHAPE_MISMATCH,
               "%s: the image is %s, need C x H x W (or 1 x C x H x W)", what,
               cf_shape_str(b1, sizeof b1, image->ndim, is));
    const int64_t IC = is[lead], H = is[lead + 1], W = is[lead + 2];
    CF_FAIL_IF(IC != C, CFNET_E_SHAPE_MISMATCH, "%s: the image has %lld channel%s, the model "
               "expects %lld", what, (long long)IC, IC == 1 ? "" : "s", (long long)C);
    CF_FAIL_IF(!ps.pad && !(flags & CFNET_PREPARE_PAD) && (H < S || W < S),
               CFNET_E_SHAPE_MISMATCH,
               "%s: image is %lldx%lld, smaller than the input size %lld (the model's \"pad\" is "
               "0: give CFNET_PREPARE_PAD to zero-pad small images)", what, (long long)W,
               (long long)H, (long long)S);
    const int64_t bshape[4] = {batch->shape[0], C, S, S};
    CF_FAIL_IF(batch->ndim != 4 || memcmp(batch->shape + 1, bshape + 1, sizeof(int64_t) * 3),
               CFNET_E_SHAPE_MISMATCH, "%s: the batch is %s, need N x %s", what,
               cf_shape_str(b1, sizeof b1, batch->ndim, batch->shape),
               cf_shape_str(b2, sizeof b2, 3, bshape + 1));
    CF_FAIL_IF(index < 0 || index >= batch->shape[0], CFNET_E_INVALID_ARGUMENT,
               "%s: index %lld, the batch has %lld rows", what, (long long)index,
               (long long)batch->shape[0]);

    const int64_t HW = H * W, n = C * HW, per = C * S * S;
    const float *x = image->data;
    float *dst = batch->data + index * per;
    const uintptr_t xa = (uintptr_t)x, da = (uintptr_t)dst;
    CF_FAIL_IF(xa < da + (uintptr_t)per * sizeof(float) && da < xa + (uintptr_t)n * sizeof(float),
               CFNET_E_INVALID_ARGUMENT, "%s: the image and row %lld of the batch share memory",
               what, (long long)index);
    /* Everything is checked before anything is written. */
    for (int64_t k = 0; k < n; k++)
        CF_FAIL_IF(!isfinite(x[k]), CFNET_E_INVALID_ARGUMENT,
                   "%s: channel %lld contains %s at row %lld, column %lld", what,
                   (long long)(k / HW + 1), isnan(x[k]) ? "NaN" : "an infinity",
                   (long long)(k % HW / W), (long long)(k % W));
    const float s = (float)ps.scale;
    if (!ps.percentile)
        for (int64_t k = 0; k < n; k++)
            /* a large value times a large scale: the network would get infinity (checked over
             * the whole image, not only the crop, as predict always did) */
            CF_FAIL_IF(!isfinite(x[k] * s), CFNET_E_NUMERIC,
                       "%s: value in channel %lld at row %lld, column %lld overflows float32 "
                       "when multiplied by the scale %.10g", what, (long long)(k / HW + 1),
                       (long long)(k % HW / W), (long long)(k % W), ps.scale);
    float *scratch = NULL;
    double *range = NULL; /* the two percentiles of each channel */
    if (ps.percentile) {
        scratch = cf_alloc(&net->alloc, (size_t)HW * sizeof(float));
        range = cf_alloc(&net->alloc, (size_t)C * 2 * sizeof(double));
        if (!scratch || !range) {
            cf_free(scratch);
            cf_free(range);
            return cf_error(CFNET_E_OUT_OF_MEMORY, "%s: cannot allocate %lld floats of scratch",
                            what, (long long)HW);
        }
        for (int64_t c = 0; c < C; c++)
            cf_plane_percentiles(x + c * HW, HW, ps.low, ps.high, scratch, &range[2 * c],
                                 &range[2 * c + 1]);
    }
    int64_t sy, ty, ny, sx, tx, nx;
    place(H, S, &sy, &ty, &ny);
    place(W, S, &sx, &tx, &nx);
    /* only the crop is normalised: each value as cfnet_image_normalize (or the scale) makes it */
    memset(dst, 0, sizeof(float) * (size_t)per);
    for (int64_t c = 0; c < C; c++)
        for (int64_t y = 0; y < ny; y++) {
            const float *a = x + c * HW + (sy + y) * W + sx;
            float *o = dst + (c * S + ty + y) * S + tx;
            if (range)
                for (int64_t i = 0; i < nx; i++)
                    o[i] = cf_stretch(a[i], range[2 * c], range[2 * c + 1]);
            else
                for (int64_t i = 0; i < nx; i++) o[i] = a[i] * s;
        }
    cf_free(scratch);
    cf_free(range);
    return CFNET_OK;
}
