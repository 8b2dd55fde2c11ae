/* Image helpers: rotation and shift of square planes, per-channel percentile stretch.
 *
 * Coordinates follow docs/conventions.md: pixel (i, j) of an S x S plane sits at (u, v) =
 * (j - c, c - i), c = (S - 1) / 2; rotations are counter-clockwise; out(z) = in(g^{-1} z). */
#include "kernels/image.h"
#include "kernels/rotate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* True when the element ranges of a and b share memory. Compared as integers: the two buffers
 * are usually distinct objects, where relational pointer comparison is undefined. */
static bool ranges_overlap(const float *a, const float *b, int64_t n)
{
    uintptr_t pa = (uintptr_t)a, pb = (uintptr_t)b, bytes = (uintptr_t)n * sizeof(float);
    return pa < pb + bytes && pb < pa + bytes;
}

/* Shared checks of (in, out) for the plane-wise functions: non-NULL, ndim >= 2, equal shapes,
 * disjoint data. */
static cfnet_status check_pair(const char *what, const cfnet_tensor *in, const cfnet_tensor *out)
{
    char a[96], b[96];
    CF_FAIL_IF(!in, CFNET_E_INVALID_ARGUMENT, "%s: input is NULL", what);
    CF_FAIL_IF(!out, CFNET_E_INVALID_ARGUMENT, "%s: output is NULL", what);
    CF_CHECK(cf_tensor_writable(what, "output tensor", out));
    CF_FAIL_IF(in->ndim < 2, CFNET_E_SHAPE_MISMATCH,
               "%s: input has shape %s, needs at least 2 dimensions (..., H, W)", what,
               cf_shape_str(a, sizeof a, in->ndim, in->shape));
    bool same = in->ndim == out->ndim;
    for (int d = 0; same && d < in->ndim; d++) same = in->shape[d] == out->shape[d];
    CF_FAIL_IF(!same, CFNET_E_SHAPE_MISMATCH, "%s: input is %s but output is %s", what,
               cf_shape_str(a, sizeof a, in->ndim, in->shape),
               cf_shape_str(b, sizeof b, out->ndim, out->shape));
    CF_FAIL_IF(ranges_overlap(in->data, out->data, in->numel), CFNET_E_INVALID_ARGUMENT,
               "%s: input and output share memory", what);
    return CFNET_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Rotation                                                                                   */

/* One output pixel of a bilinear rotation: out = sum_{t < n} w[t] * in[src[t]]. Only taps
 * inside the image with a non-zero weight are listed, so an infinite input pixel reaches no
 * output through a zero weight (0 * inf would be NaN). */
typedef struct rot_tap {
    int64_t src[4];
    double w[4];
    int n;
} rot_tap;

static void rotate_quarter(const float *in, float *out, int64_t planes, int64_t S, int q)
{
    int64_t SS = S * S;
    if (q == 0) {
        memcpy(out, in, (size_t)(planes * SS) * sizeof(float));
        return;
    }
    for (int64_t p = 0; p < planes; p++) {
        const float *a = in + p * SS;
        float *b = out + p * SS;
        for (int64_t i = 0; i < S; i++) {
            for (int64_t j = 0; j < S; j++) {
                /* A counter-clockwise quarter turn moves (i, j) to (S-1-j, i). */
                int64_t ti, tj;
                switch (q) {
                case 1: ti = S - 1 - j; tj = i; break;
                case 2: ti = S - 1 - i; tj = S - 1 - j; break;
                default: ti = j; tj = S - 1 - i; break;
                }
                b[ti * S + tj] = a[i * S + j];
            }
        }
    }
}

static void build_taps(int64_t S, double radians, rot_tap *taps)
{
    double cs = cos(radians), sn = sin(radians);
    for (int64_t i = 0; i < S; i++)
        for (int64_t j = 0; j < S; j++) {
            rot_tap *t = &taps[i * S + j];
            t->n = cf_bilinear_taps(S, i, j, cs, sn, false, t->src, t->w);
        }
}

cfnet_status cf_image_rotate(const cf_allocator *alloc, const cfnet_tensor *in, cfnet_tensor *out,
                             double degrees)
{
    CF_CHECK(cf_handle_check(in, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_CHECK(cf_handle_check(out, CF_MAGIC_TENSOR, "tensor", __func__));
    static const char what[] = "image_rotate";
    char buf[96];
    CF_CHECK(check_pair(what, in, out));
    int64_t S = in->shape[in->ndim - 1];
    CF_FAIL_IF(in->shape[in->ndim - 2] != S, CFNET_E_SHAPE_MISMATCH,
               "%s: planes must be square, input is %s", what,
               cf_shape_str(buf, sizeof buf, in->ndim, in->shape));
    CF_FAIL_IF(!isfinite(degrees), CFNET_E_INVALID_ARGUMENT, "%s: degrees is not finite", what);
    int64_t SS = S * S, planes = in->numel / SS;

    double d = fmod(degrees, 360.0); /* exact */
    if (d < 0) d += 360.0;
    if (d >= 360.0) d = 0.0; /* a tiny negative angle rounds up to 360 */
    if (fmod(d, 90.0) == 0.0) {
        rotate_quarter(in->data, out->data, planes, S, (int)(d / 90.0));
        return CFNET_OK;
    }

    size_t bytes;
    CF_FAIL_IF(!cf_mul_size((size_t)SS, sizeof(rot_tap), &bytes), CFNET_E_LIMIT,
               "%s: %lld x %lld plane is too large", what, (long long)S, (long long)S);
    rot_tap *taps = cf_alloc(alloc, bytes);
    CF_FAIL_IF(!taps, CFNET_E_OUT_OF_MEMORY, "%s: cannot allocate the %lld x %lld sampling table",
               what, (long long)S, (long long)S);
    build_taps(S, d * (3.14159265358979323846 / 180.0), taps);
    for (int64_t p = 0; p < planes; p++) {
        const float *a = in->data + p * SS;
        float *b = out->data + p * SS;
        for (int64_t k = 0; k < SS; k++) {
            const rot_tap *t = &taps[k];
            double acc = 0.0;
            for (int n = 0; n < t->n; n++) acc += t->w[n] * a[t->src[n]];
            b[k] = (float)acc;
        }
    }
    cf_free(taps);
    return CFNET_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Shift                                                                                      */

CFNET_API cfnet_status cfnet_image_rotate(const cfnet_tensor *in, cfnet_tensor *out,
                                          double degrees)
{
    return cf_image_rotate(NULL, in, out, degrees);
}

CFNET_API cfnet_status cfnet_image_shift(const cfnet_tensor *in, cfnet_tensor *out, int dy,
                                         int dx)
{
    CF_CHECK(cf_handle_check(in, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_CHECK(cf_handle_check(out, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_CHECK(check_pair("image_shift", in, out));
    int64_t H = in->shape[in->ndim - 2], W = in->shape[in->ndim - 1], HW = H * W;
    int64_t planes = in->numel / HW;
    /* Columns j with 0 <= j - dx < W, clamped to [0, W]; int64 arithmetic cannot overflow. */
    int64_t j_lo = dx > 0 ? dx : 0, j_hi = W + (int64_t)dx < W ? W + (int64_t)dx : W;
    if (j_lo > W) j_lo = W;
    if (j_hi < j_lo) j_hi = j_lo;
    for (int64_t p = 0; p < planes; p++) {
        const float *a = in->data + p * HW;
        float *b = out->data + p * HW;
        for (int64_t i = 0; i < H; i++) {
            float *row = b + i * W;
            int64_t si = i - (int64_t)dy;
            if (si < 0 || si >= H || j_lo == j_hi) {
                memset(row, 0, (size_t)W * sizeof(float));
                continue;
            }
            memset(row, 0, (size_t)j_lo * sizeof(float));
            memcpy(row + j_lo, a + si * W + (j_lo - dx), (size_t)(j_hi - j_lo) * sizeof(float));
            memset(row + j_hi, 0, (size_t)(W - j_hi) * sizeof(float));
        }
    }
    return CFNET_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Percentile stretch                                                                         */

/* The k-th smallest (0-based) of a[0..n-1], which it partially reorders so that a[k] sits at
 * its sorted place with no larger value before it and no smaller one after it (Hoare's
 * selection, median-of-three pivot; equal values split between both sides, so a constant
 * plane stays linear). Expected O(n), against O(n log n) for sorting the plane. */
static float select_kth(float *a, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        float x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi];
        float pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break; /* j < k < i: a[k] equals the pivot and is in place */
    }
    return a[k];
}

/* p-th percentile (0..100) of a[0..n-1] (reordered), linear between order statistics at
 * position p / 100 * (n - 1), as numpy.percentile's default: the same value as from the
 * sorted plane. */
static double percentile_select(float *a, int64_t n, double p)
{
    double pos = p / 100.0 * (double)(n - 1);
    double k = floor(pos);
    int64_t i = (int64_t)k;
    if (i >= n - 1) return select_kth(a, n, n - 1);
    double lo = select_kth(a, n, i);
    float next = a[i + 1]; /* the (i+1)-th order statistic: the smallest value after a[i] */
    for (int64_t m = i + 2; m < n; m++)
        if (a[m] < next) next = a[m];
    double f = pos - k, b = next;
    return lo + f * (b - lo);
}

void cf_plane_percentiles(const float *x, int64_t n, double low, double high, float *scratch,
                          double *lo, double *hi)
{
    memcpy(scratch, x, (size_t)n * sizeof(float));
    *lo = percentile_select(scratch, n, low);
    *hi = percentile_select(scratch, n, high);
}

CFNET_API cfnet_status cfnet_image_normalize(cfnet_tensor *images, double low_percentile,
                                             double high_percentile)
{
    CF_CHECK(cf_handle_check(images, CF_MAGIC_TENSOR, "tensor", __func__));
    static const char what[] = "image_normalize";
    char buf[96];
    CF_FAIL_IF(!images, CFNET_E_INVALID_ARGUMENT, "%s: images is NULL", what);
    CF_CHECK(cf_tensor_writable(what, "images tensor", images));
    CF_FAIL_IF(images->ndim != 4, CFNET_E_SHAPE_MISMATCH, "%s: images are %s, need N x C x H x W",
               what, cf_shape_str(buf, sizeof buf, images->ndim, images->shape));
    CF_FAIL_IF(!isfinite(low_percentile) || !isfinite(high_percentile) || low_percentile < 0 ||
                   high_percentile > 100 || !(low_percentile < high_percentile),
               CFNET_E_INVALID_ARGUMENT,
               "%s: percentiles are %g and %g, need 0 <= low < high <= 100", what,
               low_percentile, high_percentile);
    int64_t C = images->shape[1], HW = images->shape[2] * images->shape[3];
    int64_t planes = images->numel / HW;

    /* Validate every plane before writing anything. */
    for (int64_t p = 0; p < planes; p++) {
        const float *x = images->data + p * HW;
        for (int64_t k = 0; k < HW; k++) {
            CF_FAIL_IF(!isfinite(x[k]), CFNET_E_INVALID_ARGUMENT,
                       "%s: image %lld, channel %lld contains %s", what, (long long)(p / C),
                       (long long)(p % C), isnan(x[k]) ? "NaN" : "an infinity");
        }
    }

    float *sorted = cf_alloc(NULL, (size_t)HW * sizeof(float));
    CF_FAIL_IF(!sorted, CFNET_E_OUT_OF_MEMORY, "%s: cannot allocate %lld floats of scratch", what,
               (long long)HW);
    for (int64_t p = 0; p < planes; p++) {
        float *x = images->data + p * HW;
        double lo, hi;
        cf_plane_percentiles(x, HW, low_percentile, high_percentile, sorted, &lo, &hi);
        for (int64_t k = 0; k < HW; k++) x[k] = cf_stretch(x[k], lo, hi);
    }
    cf_free(sorted);
    return CFNET_OK;
}
