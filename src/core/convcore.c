/* im2col + GEMM convolution with per-group weights; see convcore.h. */
#include "convcore.h"

#include <cblas.h>
#include <string.h>

/* Column blocks are sized to about this many bytes (trading GEMM width against cache). */
#define CF_CONV_BLOCK_BYTES ((size_t)16 << 20)

int cf_conv_out_size(int S, int k, int stride, cfnet_padding padding)
{
    int pad = padding == CFNET_PADDING_SAME ? (k - 1) / 2 : 0;
    int span = S + 2 * pad - k;
    if (span < 0 || stride < 1) return 0;
    return span / stride + 1;
}

void cf_conv_plan_free(cf_conv_plan *p)
{
    cf_free(p->goff);
    cf_free(p->perm);
    cf_free(p->idx);
    memset(p, 0, sizeof *p);
}

cfnet_status cf_conv_plan_init(cf_conv_plan *p, int C, int H, int W, int k, int stride,
                               cfnet_padding padding, const int32_t *group_of, int ngroups)
{
    memset(p, 0, sizeof *p);
    int OH = cf_conv_out_size(H, k, stride, padding), OW = cf_conv_out_size(W, k, stride, padding);
    CF_FAIL_IF(OH < 1 || OW < 1, CFNET_E_SHAPE_MISMATCH,
               "convolution: kernel %d does not fit a %dx%d map", k, H, W);
    p->C = C;
    p->H = H;
    p->W = W;
    p->k = k;
    p->stride = stride;
    p->pad = padding == CFNET_PADDING_SAME ? (k - 1) / 2 : 0;
    p->OH = OH;
    p->OW = OW;
    p->P = (int64_t)OH * OW;
    p->CK = (int64_t)C * k * k;
    p->ngroups = group_of ? ngroups : 1;
    int64_t kk = (int64_t)k * k;
    size_t idx_n;
    if (!cf_mul_size((size_t)kk, (size_t)p->P, &idx_n)) idx_n = SIZE_MAX / 8;
    p->goff = cf_calloc((size_t)p->ngroups + 1, sizeof *p->goff);
    p->idx = cf_malloc(idx_n * sizeof *p->idx);
    if (group_of) p->perm = cf_malloc((size_t)p->P * sizeof *p->perm);
    if (!p->goff || !p->idx || (group_of && !p->perm)) {
        cf_conv_plan_free(p);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "convolution: cannot allocate index tables");
    }
    if (group_of) {
        /* Counting sort of the output pixels by group, stable in natural order. */
        for (int64_t q = 0; q < p->P; q++) p->goff[group_of[q] + 1]++;
        for (int g = 0; g < p->ngroups; g++) p->goff[g + 1] += p->goff[g];
        int64_t *fill = cf_malloc((size_t)p->ngroups * sizeof *fill);
        if (!fill) {
            cf_conv_plan_free(p);
            return cf_error(CFNET_E_OUT_OF_MEMORY, "convolution: cannot allocate index tables");
        }
        memcpy(fill, p->goff, (size_t)p->ngroups * sizeof *fill);
        for (int64_t q = 0; q < p->P; q++) p->perm[fill[group_of[q]]++] = (int32_t)q;
        cf_free(fill);
    } else {
        p->goff[1] = p->P;
    }
    for (int64_t j = 0; j < p->P; j++) {
        int64_t q = p->perm ? p->perm[j] : j;
        int oi = (int)(q / OW), oj = (int)(q % OW);
        for (int t = 0; t < kk; t++) {
            int ii = oi * stride - p->pad + t / k, jj = oj * stride - p->pad + t % k;
            p->idx[t * p->P + j] = (ii >= 0 && ii < H && jj >= 0 && jj < W) ? ii * W + jj : -1;
        }
    }
    size_t per_sample = (size_t)p->CK * (size_t)p->P * sizeof(float);
    p->chunk = (int64_t)(CF_CONV_BLOCK_BYTES / (per_sample ? per_sample : 1));
    if (p->chunk < 1) p->chunk = 1;
    return CFNET_OK;
}

size_t cf_conv_workspace(const cf_conv_plan *p, int O, int64_t n)
{
    int64_t b = n < p->chunk ? n : p->chunk;
    /* columns (CK x bP, reused for their gradient) + outputs (O x bP) */
    return cf_align64((size_t)p->CK * (size_t)(b * p->P) * sizeof(float)) +
           cf_align64((size_t)O * (size_t)(b * p->P) * sizeof(float));
}

/* Position of sample b's column j (grouped order, j in group g) inside a block of nb samples. */
static inline int64_t colpos(const cf_conv_plan *p, int g, int64_t nb, int64_t b, int64_t j)
{
    int64_t g0 = p->goff[g], pg = p->goff[g + 1] - g0;
    return nb * g0 + b * pg + (j - g0);
}

static void im2col(const cf_conv_plan *p, const float *x, int64_t nb, float *col)
{
    int64_t kk = (int64_t)p->k * p->k, HW = (int64_t)p->H * p->W, BP = nb * p->P;
    for (int c = 0; c < p->C; c++) {
        for (int64_t t = 0; t < kk; t++) {
            float *row = col + (c * kk + t) * BP;
            const int32_t *ix = p->idx + t * p->P;
            for (int g = 0; g < p->ngroups; g++) {
                int64_t j0 = p->goff[g], j1 = p->goff[g + 1];
                for (int64_t b = 0; b < nb; b++) {
                    const float *xb = x + (b * p->C + c) * HW;
                    for (int64_t j = j0; j < j1; j++) *row++ = ix[j] >= 0 ? xb[ix[j]] : 0.0f;
                }
            }
        }
    }
}

static void col2im(const cf_conv_plan *p, const float *col, int64_t nb, float *dx)
{
    int64_t kk = (int64_t)p->k * p->k, HW = (int64_t)p->H * p->W, BP = nb * p->P;
    for (int c = 0; c < p->C; c++) {
        for (int64_t t = 0; t < kk; t++) {
            const float *row = col + (c * kk + t) * BP;
            const int32_t *ix = p->idx + t * p->P;
            for (int g = 0; g < p->ngroups; g++) {
                int64_t j0 = p->goff[g], j1 = p->goff[g + 1];
                for (int64_t b = 0; b < nb; b++) {
                    float *db = dx + (b * p->C + c) * HW;
                    for (int64_t j = j0; j < j1; j++, row++)
                        if (ix[j] >= 0) db[ix[j]] += *row;
                }
            }
        }
    }
}

void cf_conv_forward(const cf_conv_plan *p, int O, const float *const *Wg, const float *bias,
                     const float *x, float *y, int64_t n, void *ws)
{
    int64_t chunk = p->chunk, P = p->P, CK = p->CK, in_size = (int64_t)p->C * p->H * p->W;
    float *col = ws;
    float *out = (float *)((char *)ws + cf_align64((size_t)CK * (size_t)((n < chunk ? n : chunk) * P) * sizeof(float)));
    for (int64_t s0 = 0; s0 < n; s0 += chunk) {
        int64_t nb = n - s0 < chunk ? n - s0 : chunk, BP = nb * P;
        im2col(p, x + s0 * in_size, nb, col);
        for (int g = 0; g < p->ngroups; g++) {
            int64_t g0 = p->goff[g], pg = p->goff[g + 1] - g0;
            if (pg == 0) continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, (int)(nb * pg), (int)CK,
                        1.0f, Wg[g], (int)CK, col + nb * g0, (int)BP, 0.0f, out + nb * g0,
                        (int)BP);
        }
        for (int64_t b = 0; b < nb; b++) {
            float *yb = y + (s0 + b) * O * P;
            for (int o = 0; o < O; o++) {
                float bo = bias ? bias[o] : 0.0f;
                const float *src = out + o * BP;
                float *dst = yb + o * P;
                for (int g = 0; g < p->ngroups; g++) {
                    int64_t j0 = p->goff[g], j1 = p->goff[g + 1];
                    const float *s = src + colpos(p, g, nb, b, j0);
                    if (p->perm)
                        for (int64_t j = j0; j < j1; j++) dst[p->perm[j]] = *s++ + bo;
                    else
                        for (int64_t j = j0; j < j1; j++) dst[j] = *s++ + bo;
                }
            }
        }
    }
}

void cf_conv_backward(const cf_conv_plan *p, int O, const float *const *Wg, float *const *dWg,
                      float *dbias, const float *x, const float *dy, float *dx, int64_t n,
                      void *ws)
{
    int64_t chunk = p->chunk, P = p->P, CK = p->CK, in_size = (int64_t)p->C * p->H * p->W;
    float *col = ws;
    float *dout = (float *)((char *)ws + cf_align64((size_t)CK * (size_t)((n < chunk ? n : chunk) * P) * sizeof(float)));
    if (dx) memset(dx, 0, (size_t)(n * in_size) * sizeof(float));
    for (int64_t s0 = 0; s0 < n; s0 += chunk) {
        int64_t nb = n - s0 < chunk ? n - s0 : chunk, BP = nb * P;
        /* Gather dy into grouped column order. */
        for (int64_t b = 0; b < nb; b++) {
            const float *dyb = dy + (s0 + b) * O * P;
            for (int o = 0; o < O; o++) {
                const float *src = dyb + o * P;
                float *dst = dout + o * BP;
                double sum = 0;
                for (int g = 0; g < p->ngroups; g++) {
                    int64_t j0 = p->goff[g], j1 = p->goff[g + 1];
                    float *d = dst + colpos(p, g, nb, b, j0);
                    if (p->perm)
                        for (int64_t j = j0; j < j1; j++) *d++ = src[p->perm[j]];
                    else
                        for (int64_t j = j0; j < j1; j++) *d++ = src[j];
                }
                if (dbias) {
                    for (int64_t j = 0; j < P; j++) sum += src[j];
                    dbias[o] += (float)sum;
                }
            }
        }
        im2col(p, x + s0 * in_size, nb, col);
        for (int g = 0; g < p->ngroups; g++) {
            int64_t g0 = p->goff[g], pg = p->goff[g + 1] - g0;
            if (pg == 0) continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, (int)CK, (int)(nb * pg),
                        1.0f, dout + nb * g0, (int)BP, col + nb * g0, (int)BP, 1.0f, dWg[g],
                        (int)CK);
        }
        if (!dx) continue;
        /* The columns are no longer needed: their gradient overwrites them. */
        for (int g = 0; g < p->ngroups; g++) {
            int64_t g0 = p->goff[g], pg = p->goff[g + 1] - g0;
            if (pg == 0) continue;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)CK, (int)(nb * pg), O,
                        1.0f, Wg[g], (int)CK, dout + nb * g0, (int)BP, 0.0f, col + nb * g0,
                        (int)BP);
        }
        col2im(p, col, nb, dx + s0 * in_size);
    }
}
