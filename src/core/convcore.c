/* im2col + GEMM convolution with per-group weights; see convcore.h. */
#include "convcore.h"

#include <cblas.h>
#include <pthread.h>
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

/* Threads actually used for a batch of n. */
static int eff_threads(int threads, int64_t n)
{
    if (threads < 1) threads = 1;
    return n < threads ? (int)(n > 0 ? n : 1) : threads;
}

/* Samples per block for one thread's share of a batch of n. */
static int64_t block_of(const cf_conv_plan *p, int64_t n, int T)
{
    int64_t share = (n + T - 1) / T;
    return share < p->chunk ? share : p->chunk;
}

static size_t thread_bytes(const cf_conv_plan *p, int O, int64_t nb)
{
    /* columns (CK x nb P, reused for their gradient) + outputs (O x nb P) */
    return cf_align64((size_t)p->CK * (size_t)(nb * p->P) * sizeof(float)) +
           cf_align64((size_t)O * (size_t)(nb * p->P) * sizeof(float));
}

/* Per extra thread in backward: private weight-gradient banks (one per group) and bias. */
static size_t reduce_bytes(const cf_conv_plan *p, int O)
{
    return cf_align64(((size_t)p->ngroups * (size_t)O * (size_t)p->CK + (size_t)O) *
                      sizeof(float));
}

size_t cf_conv_workspace(const cf_conv_plan *p, int O, int64_t n, int threads)
{
    int T = eff_threads(threads, n);
    return (size_t)T * thread_bytes(p, O, block_of(p, n, T)) +
           (size_t)(T - 1) * reduce_bytes(p, O);
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

/* One thread's share: samples [s_begin, s_end), blocks of at most nbmax, its own buffers. */
typedef struct conv_job {
    const cf_conv_plan *p;
    int O;
    const float *const *Wg;
    float *const *dWg; /* backward: where this thread accumulates (private for t > 0) */
    const float *bias;
    float *dbias;
    const float *x, *dy;
    float *y, *dx;
    int64_t s_begin, s_end, nbmax;
    float *col, *out;
} conv_job;

static void forward_range(const conv_job *j)
{
    const cf_conv_plan *p = j->p;
    int O = j->O;
    int64_t P = p->P, CK = p->CK, in_size = (int64_t)p->C * p->H * p->W;
    for (int64_t s0 = j->s_begin; s0 < j->s_end; s0 += j->nbmax) {
        int64_t nb = j->s_end - s0 < j->nbmax ? j->s_end - s0 : j->nbmax, BP = nb * P;
        im2col(p, j->x + s0 * in_size, nb, j->col);
        for (int g = 0; g < p->ngroups; g++) {
            int64_t g0 = p->goff[g], pg = p->goff[g + 1] - g0;
            if (pg == 0) continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, (int)(nb * pg), (int)CK,
                        1.0f, j->Wg[g], (int)CK, j->col + nb * g0, (int)BP, 0.0f,
                        j->out + nb * g0, (int)BP);
        }
        for (int64_t b = 0; b < nb; b++) {
            float *yb = j->y + (s0 + b) * O * P;
            for (int o = 0; o < O; o++) {
                float bo = j->bias ? j->bias[o] : 0.0f;
                const float *src = j->out + o * BP;
                float *dst = yb + o * P;
                for (int g = 0; g < p->ngroups; g++) {
                    int64_t j0 = p->goff[g], j1 = p->goff[g + 1];
                    const float *sv = src + colpos(p, g, nb, b, j0);
                    if (p->perm)
                        for (int64_t q = j0; q < j1; q++) dst[p->perm[q]] = *sv++ + bo;
                    else
                        for (int64_t q = j0; q < j1; q++) dst[q] = *sv++ + bo;
                }
            }
        }
    }
}

static void backward_range(const conv_job *j)
{
    const cf_conv_plan *p = j->p;
    int O = j->O;
    int64_t P = p->P, CK = p->CK, in_size = (int64_t)p->C * p->H * p->W;
    if (j->dx)
        memset(j->dx + j->s_begin * in_size, 0,
               (size_t)((j->s_end - j->s_begin) * in_size) * sizeof(float));
    for (int64_t s0 = j->s_begin; s0 < j->s_end; s0 += j->nbmax) {
        int64_t nb = j->s_end - s0 < j->nbmax ? j->s_end - s0 : j->nbmax, BP = nb * P;
        float *dout = j->out;
        /* Gather dy into grouped column order. */
        for (int64_t b = 0; b < nb; b++) {
            const float *dyb = j->dy + (s0 + b) * O * P;
            for (int o = 0; o < O; o++) {
                const float *src = dyb + o * P;
                float *dst = dout + o * BP;
                for (int g = 0; g < p->ngroups; g++) {
                    int64_t j0 = p->goff[g], j1 = p->goff[g + 1];
                    float *d = dst + colpos(p, g, nb, b, j0);
                    if (p->perm)
                        for (int64_t q = j0; q < j1; q++) *d++ = src[p->perm[q]];
                    else
                        for (int64_t q = j0; q < j1; q++) *d++ = src[q];
                }
                if (j->dbias) {
                    double sum = 0;
                    for (int64_t q = 0; q < P; q++) sum += src[q];
                    j->dbias[o] += (float)sum;
                }
            }
        }
        im2col(p, j->x + s0 * in_size, nb, j->col);
        for (int g = 0; g < p->ngroups; g++) {
            int64_t g0 = p->goff[g], pg = p->goff[g + 1] - g0;
            if (pg == 0) continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, (int)CK, (int)(nb * pg),
                        1.0f, dout + nb * g0, (int)BP, j->col + nb * g0, (int)BP, 1.0f,
                        j->dWg[g], (int)CK);
        }
        if (!j->dx) continue;
        /* The columns are no longer needed: their gradient overwrites them. */
        for (int g = 0; g < p->ngroups; g++) {
            int64_t g0 = p->goff[g], pg = p->goff[g + 1] - g0;
            if (pg == 0) continue;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)CK, (int)(nb * pg), O,
                        1.0f, j->Wg[g], (int)CK, dout + nb * g0, (int)BP, 0.0f,
                        j->col + nb * g0, (int)BP);
        }
        col2im(p, j->col, nb, j->dx + s0 * in_size);
    }
}

typedef struct conv_thread {
    conv_job job;
    bool backward;
    pthread_t tid;
    bool started;
} conv_thread;

static void *thread_main(void *arg)
{
    conv_thread *t = arg;
    if (t->backward) backward_range(&t->job);
    else forward_range(&t->job);
    return NULL;
}

/* Splits the batch over T threads (the caller's thread does share 0); each share uses its own
 * slice of the workspace. If a thread cannot be started, its share runs in the caller. */
static void run_split(const conv_job *base, bool backward, int64_t n, int threads, void *ws,
                      float *const *dWg_shared, float *dbias_shared)
{
    const cf_conv_plan *p = base->p;
    int T = eff_threads(threads, n);
    int64_t nb = block_of(p, n, T);
    size_t tb = thread_bytes(p, base->O, nb);
    size_t colb = cf_align64((size_t)p->CK * (size_t)(nb * p->P) * sizeof(float));
    size_t bank = (size_t)base->O * (size_t)p->CK;
    char *reduce = (char *)ws + (size_t)T * tb;
    enum { MAXT = 64, MAXG = 8 * 64 + 1 };
    conv_thread th[MAXT];
    if (T > MAXT) T = MAXT;
    /* Private gradient banks of threads t > 0, carved from the end of the workspace. */
    float *dw_ptrs[MAXT > 1 ? MAXT - 1 : 1][MAXG];
    for (int t = 0; t < T; t++) {
        conv_job *j = &th[t].job;
        *j = *base;
        j->s_begin = n * t / T;
        j->s_end = n * (t + 1) / T;
        j->nbmax = nb;
        j->col = (float *)((char *)ws + (size_t)t * tb);
        j->out = (float *)((char *)ws + (size_t)t * tb + colb);
        th[t].backward = backward;
        th[t].started = false;
        if (backward && t > 0) {
            float *r = (float *)(reduce + (size_t)(t - 1) * reduce_bytes(p, base->O));
            memset(r, 0, ((size_t)p->ngroups * bank + (size_t)base->O) * sizeof(float));
            for (int g = 0; g < p->ngroups && g < MAXG; g++)
                dw_ptrs[t - 1][g] = r + (size_t)g * bank;
            j->dWg = dw_ptrs[t - 1];
            j->dbias = dbias_shared ? r + (size_t)p->ngroups * bank : NULL;
        } else if (backward) {
            j->dWg = dWg_shared;
            j->dbias = dbias_shared;
        }
    }
    for (int t = 1; t < T; t++)
        th[t].started = pthread_create(&th[t].tid, NULL, thread_main, &th[t]) == 0;
    thread_main(&th[0]);
    for (int t = 1; t < T; t++) {
        if (th[t].started) pthread_join(th[t].tid, NULL);
        else thread_main(&th[t]);
    }
    if (!backward) return;
    /* Deterministic reduction in thread order. */
    for (int t = 1; t < T; t++) {
        for (int g = 0; g < p->ngroups; g++) {
            const float *src = th[t].job.dWg[g];
            float *dst = dWg_shared[g];
            for (size_t i = 0; i < bank; i++) dst[i] += src[i];
        }
        if (dbias_shared)
            for (int o = 0; o < base->O; o++) dbias_shared[o] += th[t].job.dbias[o];
    }
}

void cf_conv_forward(const cf_conv_plan *p, int O, const float *const *Wg, const float *bias,
                     const float *x, float *y, int64_t n, void *ws, int threads)
{
    conv_job j;
    memset(&j, 0, sizeof j);
    j.p = p;
    j.O = O;
    j.Wg = Wg;
    j.bias = bias;
    j.x = x;
    j.y = y;
    run_split(&j, false, n, threads, ws, NULL, NULL);
}

void cf_conv_backward(const cf_conv_plan *p, int O, const float *const *Wg, float *const *dWg,
                      float *dbias, const float *x, const float *dy, float *dx, int64_t n,
                      void *ws, int threads)
{
    conv_job j;
    memset(&j, 0, sizeof j);
    j.p = p;
    j.O = O;
    j.Wg = Wg;
    j.x = x;
    j.dy = dy;
    j.dx = dx;
    run_split(&j, true, n, threads, ws, dWg, dbias);
}
