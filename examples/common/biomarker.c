#include "biomarker.h"

#include <math.h>
#include <string.h>

#define BM_PI 3.14159265358979323846

/* splitmix64: small, fast and identical everywhere. */
typedef struct bm_rng {
    uint64_t s;
} bm_rng;

static uint64_t next_u64(bm_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform(bm_rng *r) /* [0, 1) */
{
    return (double)(next_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

static double uniform_in(bm_rng *r, double lo, double hi)
{
    return lo + (hi - lo) * uniform(r);
}

static double normal(bm_rng *r)
{
    double u1 = 1.0 - uniform(r), u2 = uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * BM_PI * u2);
}

static double exponential(bm_rng *r, double mean)
{
    return -mean * log(1.0 - uniform(r));
}

/* Poisson by inversion for small means, normal approximation above 60. */
static int64_t poisson(bm_rng *r, double mean)
{
    if (mean > 60) {
        double x = floor(mean + sqrt(mean) * normal(r) + 0.5);
        return x < 0 ? 0 : (int64_t)x;
    }
    double L = exp(-mean), p = 1.0;
    int64_t k = 0;
    do {
        k++;
        p *= uniform(r);
    } while (p > L);
    return k - 1;
}

static uint64_t mix(uint64_t a, uint64_t b)
{
    bm_rng r = {a ^ (b * 0xD1B54A32D192ED03ull)};
    return next_u64(&r);
}

void bm_class_pattern(int cls, uint64_t pattern_seed, bm_class *out)
{
    bm_rng r = {mix(pattern_seed, 0x1000u + (uint64_t)cls)};
    memset(out, 0, sizeof *out);
    out->components = 2 + (int)(next_u64(&r) % (BM_MAX_COMPONENTS - 1));
    double wsum = 0;
    for (int k = 0; k < out->components; k++) {
        /* Means within 13 px of the centre, so that rotated, jittered patterns stay inside. */
        double rad = 13.0 * sqrt(uniform(&r)), ang = 2 * BM_PI * uniform(&r);
        out->mean[k][0] = rad * cos(ang);
        out->mean[k][1] = rad * sin(ang);
        /* Covariance R(theta) diag(s1^2, s2^2) R(theta)^T, s in [1, 4.5] px. */
        double s1 = uniform_in(&r, 1.0, 4.5), s2 = uniform_in(&r, 1.0, 4.5);
        double th = BM_PI * uniform(&r), c = cos(th), s = sin(th);
        double a = c * c * s1 * s1 + s * s * s2 * s2, b = c * s * (s1 * s1 - s2 * s2),
               d = s * s * s1 * s1 + c * c * s2 * s2;
        double l11 = sqrt(a), l21 = b / l11, l22 = sqrt(d - l21 * l21);
        out->chol[k][0] = l11;
        out->chol[k][1] = l21;
        out->chol[k][2] = l22;
        out->weight[k] = uniform_in(&r, 0.3, 1.0);
        wsum += out->weight[k];
    }
    for (int k = 0; k < out->components; k++) out->weight[k] /= wsum;
    out->points = uniform_in(&r, 120.0, 300.0);
    out->spot = uniform_in(&r, 0.6, 1.0);
}

void bm_render(const bm_class *c, int cls, bm_split split, int64_t index, uint64_t data_seed,
               float *out)
{
    enum { S = BM_SIZE };
    bm_rng r = {mix(mix(data_seed, (uint64_t)split * 0x10000u + (uint64_t)cls), (uint64_t)index)};
    /* the image in double precision before its scaling: 20,000 bytes, a thread's own buffer
     * rather than the stack (cfnet synth's functions keep their frames under 16 KiB, as the
     * library's do; see the Makefile's STACK_WARN) */
    static _Thread_local double img[S * S];
    memset(img, 0, sizeof img);
    const double ctr = (S - 1) / 2.0;
    /* Per-image nuisance: rotation, jitter, overall brightness, point count. */
    double alpha = 2 * BM_PI * uniform(&r), ca = cos(alpha), sa = sin(alpha);
    int jx = (int)(next_u64(&r) % 7) - 3, jy = (int)(next_u64(&r) % 7) - 3;
    double gain = uniform_in(&r, 0.7, 1.3);
    int64_t npts = poisson(&r, c->points);
    /* Spot kernel: a Gaussian of width c->spot, truncated at 2 px. */
    double ker[5];
    for (int t = -2; t <= 2; t++) ker[t + 2] = exp(-0.5 * t * t / (c->spot * c->spot));
    for (int64_t p = 0; p < npts; p++) {
        double u = uniform(&r), acc = 0;
        int k = 0;
        for (; k < c->components - 1; k++) {
            acc += c->weight[k];
            if (u < acc) break;
        }
        double z1 = normal(&r), z2 = normal(&r);
        double x = c->mean[k][0] + c->chol[k][0] * z1;
        double y = c->mean[k][1] + c->chol[k][1] * z1 + c->chol[k][2] * z2;
        double xr = ca * x - sa * y + jx, yr = sa * x + ca * y + jy;
        /* Intensity fluctuation per point: gain x lognormal(0, 0.4). */
        double b = gain * exp(0.4 * normal(&r));
        /* (u, v) -> (row, column), nearest pixel, then the spot. */
        int col = (int)floor(xr + ctr + 0.5), row = (int)floor(ctr - yr + 0.5);
        for (int di = -2; di <= 2; di++)
            for (int dj = -2; dj <= 2; dj++) {
                int i = row + di, j = col + dj;
                if (i >= 0 && i < S && j >= 0 && j < S) img[i * S + j] += b * ker[di + 2] * ker[dj + 2];
            }
    }
    /* Exponential background noise with a per-image level, then scaling to [0, 1]. */
    double level = uniform_in(&r, 0.1, 0.3), mx = 0;
    for (int q = 0; q < S * S; q++) {
        img[q] += exponential(&r, level);
        if (img[q] > mx) mx = img[q];
    }
    for (int q = 0; q < S * S; q++) out[q] = (float)(mx > 0 ? img[q] / mx : 0);
}

void bm_generate(int classes, int64_t per_class, bm_split split, uint64_t pattern_seed,
                 uint64_t data_seed, float *images, int32_t *labels)
{
    bm_class pat[BM_CLASSES];
    if (classes > BM_CLASSES) classes = BM_CLASSES;
    for (int k = 0; k < classes; k++) bm_class_pattern(k, pattern_seed, &pat[k]);
    for (int64_t i = 0; i < (int64_t)classes * per_class; i++) {
        int k = (int)(i % classes);
        bm_render(&pat[k], k, split, i / classes, data_seed, images + i * BM_SIZE * BM_SIZE);
        labels[i] = k;
    }
}
