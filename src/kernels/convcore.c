/* im2col + GEMM convolution with per-group weights; see convcore.h. */
#include "convcore.h"

#include "core/pool.h"

#include <cblas.h>
#include <string.h>

/* Column blocks are sized to about this many bytes (trading GEMM width against cache). */
#ifndef CF_CONV_BLOCK_BYTES
#define CF_CONV_BLOCK_BYTES ((size_t)16 << 20)
#endif

cfnet_status cf_check_conv_args(const char *name, int out_channels, int max_out, int kernel,
                                cfnet_padding padding)
{
    CF_FAIL_IF(out_channels < 1 || out_channels > max_out, CFNET_E_INVALID_ARGUMENT,
               "%s: out_channels is %d, must be in 1..%d", name, out_channels, max_out);
    CF_FAIL_IF(kernel < 1 || kernel % 2 == 0 || kernel > 63, CFNET_E_INVALID_ARGUMENT,
               "%s: kernel is %d, must be odd and in 1..63", name, kernel);
    CF_FAIL_IF(padding != CFNET_PADDING_VALID && padding != CFNET_PADDING_SAME,
               CFNET_E_INVALID_ARGUMENT, "%s: unknown padding %d", name, (int)padding);
    return CFNET_OK;
}

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
    cf_free(p->runs);
    cf_free(p->pruns);
    cf_free(p->prun_off);
    cf_free(p->run_off);
    memset(p, 0, sizeof *p);
}

cfnet_status cf_conv_plan_init(const cf_allocator *a, cf_conv_plan *p, int C, int H, int W,
                               int k, int stride,
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
    p->Hp = H + 2 * p->pad;
    p->Wp = W + 2 * p->pad;
    p->OH = OH;
    p->OW = OW;
    p->P = (int64_t)OH * OW;
    p->CK = (int64_t)C * k * k;
    p->ngroups = group_of ? ngroups : 1;
    int64_t kk = (int64_t)k * k;
    size_t idx_n;
    if (!cf_mul_size((size_t)kk, (size_t)p->P, &idx_n)) idx_n = SIZE_MAX / 8;
    p->goff = cf_alloc_zero(a, (size_t)p->ngroups + 1, sizeof *p->goff);
    p->run_off = cf_alloc_zero(a, (size_t)(kk * p->ngroups) + 1, sizeof *p->run_off);
    if (group_of) p->perm = cf_alloc(a, (size_t)p->P * sizeof *p->perm);
    if (!p->goff || !p->run_off || (group_of && !p->perm)) {
        cf_conv_plan_free(p);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "convolution: cannot allocate index tables");
    }
    if (group_of) {
        /* Counting sort of the output pixels by group, stable in natural order. */
        for (int64_t q = 0; q < p->P; q++) p->goff[group_of[q] + 1]++;
        for (int g = 0; g < p->ngroups; g++) p->goff[g + 1] += p->goff[g];
        int64_t *fill = cf_alloc(a, (size_t)p->ngroups * sizeof *fill);
        if (!fill) {
            cf_conv_plan_free(p);
            return cf_error(CFNET_E_OUT_OF_MEMORY, "convolution: cannot allocate index tables");
        }
        memcpy(fill, p->goff, (size_t)p->ngroups * sizeof *fill);
        for (int64_t q = 0; q < p->P; q++) p->perm[fill[group_of[q]]++] = (int32_t)q;
        cf_free(fill);
        /* Runs of grouped columns that are consecutive output pixels, for the scatter of the
         * outputs and the gather of their gradient. */
        p->prun_off = cf_alloc_zero(a, (size_t)p->ngroups + 1, sizeof *p->prun_off);
        p->pruns = cf_alloc(a, (size_t)p->P * sizeof *p->pruns);
        if (!p->prun_off || !p->pruns) {
            cf_conv_plan_free(p);
            return cf_error(CFNET_E_OUT_OF_MEMORY, "convolution: cannot allocate index tables");
        }
        int64_t nr = 0;
        for (int g = 0; g < p->ngroups; g++) {
            p->prun_off[g] = nr;
            for (int64_t jj = p->goff[g]; jj < p->goff[g + 1];) {
                int64_t e = jj + 1;
                while (e < p->goff[g + 1] && p->perm[e] == p->perm[e - 1] + 1) e++;
                p->pruns[nr].dst = (int32_t)jj;
                p->pruns[nr].src = p->perm[jj];
                p->pruns[nr].len = (int32_t)(e - jj);
                nr++;
                jj = e;
            }
        }
        p->prun_off[p->ngroups] = nr;
    } else {
        p->goff[1] = p->P;
    }
    /* Offset in the padded input of every (tap, column), then the runs: two passes, count then
     * fill. */
    int32_t *idx = cf_alloc(a, idx_n * sizeof *idx);
    if (!idx) {
        cf_conv_plan_free(p);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "convolution: cannot allocate index tables");
    }
    for (int64_t j = 0; j < p->P; j++) {
        int64_t q = p->perm ? p->perm[j] : j;
        int oi = (int)(q / OW), oj = (int)(q % OW);
        for (int t = 0; t < kk; t++)
            idx[t * p->P + j] = (oi * stride + t / k) * p->Wp + oj * stride + t % k;
    }
    for (int pass = 0; pass < 2; pass++) {
        int64_t nr = 0;
        for (int64_t t = 0; t < kk; t++) {
            const int32_t *ix = idx + t * p->P;
            for (int g = 0; g < p->ngroups; g++) {
                int64_t j0 = p->goff[g], j1 = p->goff[g + 1];
                if (pass == 0) p->run_off[t * p->ngroups + g] = nr;
                for (int64_t j = j0; j < j1;) {
                    int64_t e = j + 1;
                    while (e < j1 && ix[e] == ix[e - 1] + 1) e++;
                    if (pass == 1) {
                        p->runs[nr].dst = (int32_t)(j - j0);
                        p->runs[nr].src = ix[j];
                        p->runs[nr].len = (int32_t)(e - j);
                    }
                    nr++;
                    j = e;
                }
            }
        }
        if (pass == 0) {
            p->run_off[kk * p->ngroups] = nr;
            p->runs = cf_alloc(a, (size_t)(nr ? nr : 1) * sizeof *p->runs);
            if (!p->runs) {
                cf_free(idx);
                cf_conv_plan_free(p);
                return cf_error(CFNET_E_OUT_OF_MEMORY,
                                "convolution: cannot allocate index tables");
            }
        }
    }
    cf_free(idx);
    size_t per_sample = (size_t)p->CK * (size_t)p->P * sizeof(float);
    p->chunk = (int64_t)(CF_CONV_BLOCK_BYTES / (per_sample ? per_sample : 1));
    if (p->chunk < 1) p->chunk = 1;
    return CFNET_OK;
}

/* Threads actually used for a batch of n. */
static int eff_threads(int threads, int64_t n)
{
    if (threads < 1) threads = 1;
    if (threads > CFNET_MAX_THREADS) threads = CFNET_MAX_THREADS; /* the option refuses more */
    return n < threads ? (int)(n > 0 ? n : 1) : threads;
}

/* Samples per block for one thread's share of a batch of n. */
static int64_t block_of(const cf_conv_plan *p, int64_t n, int T)
{
    int64_t share = (n + T - 1) / T;
    return share < p->chunk ? share : p->chunk;
}

/* Floats of slack after the column block and the padded input: run copies move whole blocks of
 * RUN_BLOCK floats and may run past the end of a run by up to RUN_BLOCK - 1. */
#define RUN_BLOCK CF_RUN_BLOCK

static size_t col_bytes(const cf_conv_plan *p, int64_t nb)
{
    return cf_align64(((size_t)p->CK * (size_t)(nb * p->P) + RUN_BLOCK) * sizeof(float));
}

static size_t pad_bytes(const cf_conv_plan *p, int64_t nb)
{
    return cf_align64(((size_t)(nb * p->C) * (size_t)p->Hp * (size_t)p->Wp + RUN_BLOCK) *
                      sizeof(float));
}

static size_t thread_bytes(const cf_conv_plan *p, int O, int64_t nb)
{
    /* columns (CK x nb P, reused for their gradient) + outputs (O x nb P) + the zero-padded
     * input (nb C planes, reused for the padded input gradient) */
    return col_bytes(p, nb) + cf_align64((size_t)O * (size_t)(nb * p->P) * sizeof(float)) +
           pad_bytes(p, nb);
}

/* Per extra thread in backward: private weight-gradient banks (one per group) and bias, and
 * the table of pointers to those banks. */
static size_t reduce_bytes(const cf_conv_plan *p, int O)
{
    return cf_align64(((size_t)p->ngroups * (size_t)O * (size_t)p->CK + (size_t)O) *
                      sizeof(float)) +
           cf_align64((size_t)p->ngroups * sizeof(float *));
}

/* Start of the workspace: what the column blocks hold. When every thread's share of the batch
 * fits in one block, a forward leaves the columns of its whole batch in the workspace, and the
 * backward that follows (same x, n and threads; the kept part of the workspace is untouched in
 * between, see cf_layer_ops.workspace_kept) uses them instead of building them again. The
 * backward's input gradient overwrites the columns, so it marks them stale. The header, and the
 * column blocks when they are reused, are the kept part; everything else (job descriptors,
 * outputs, padded input, columns that are rebuilt anyway, the threads' gradient banks) is
 * scratch for one call. */
typedef struct ws_header {
    const float *x;
    int64_t n;
    int threads;
    int valid;
} ws_header;

#define HEADER_BYTES cf_align64(sizeof(ws_header))

/* The per-thread job descriptors (conv_thread, defined below) also live in the workspace, so
 * that run_split's frame stays small whatever the thread count (hosts call libcfnet on threads
 * with small stacks). */
static size_t jobs_bytes(int T);

/* Whether every thread's share of a batch of n fits one column block (then the forward's
 * columns are kept for the backward). */
static bool one_block(const cf_conv_plan *p, int64_t n, int T)
{
    return (n + T - 1) / T <= block_of(p, n, T);
}

size_t cf_conv_workspace_kept(const cf_conv_plan *p, int O, int64_t n, int threads)
{
    (void)O;
    int T = eff_threads(threads, n);
    return HEADER_BYTES +
           (one_block(p, n, T) ? (size_t)T * col_bytes(p, block_of(p, n, T)) : 0);
}

size_t cf_conv_workspace(const cf_conv_plan *p, int O, int64_t n, int threads)
{
    int T = eff_threads(threads, n);
    return HEADER_BYTES + jobs_bytes(T) + (size_t)T * thread_bytes(p, O, block_of(p, n, T)) +
           (size_t)(T - 1) * reduce_bytes(p, O);
}

/* Position of sample b's column j (grouped order, j in group g) inside a block of nb samples. */
static inline int64_t colpos(const cf_conv_plan *p, int g, int64_t nb, int64_t b, int64_t j)
{
    int64_t g0 = p->goff[g], pg = p->goff[g + 1] - g0;
    return nb * g0 + b * pg + (j - g0);
}

/* Copies the nb samples' planes into xpad with a zero border of p->pad, plus zeroed slack. */
static void pad_input(const cf_conv_plan *p, const float *x, int64_t nb, float *xpad)
{
    int64_t planes = nb * p->C, HW = (int64_t)p->H * p->W, HWp = (int64_t)p->Hp * p->Wp;
    int pad = p->pad;
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *src = x + pl * HW;
        float *dst = xpad + pl * HWp;
        if (pad == 0) {
            memcpy(dst, src, (size_t)HW * sizeof(float));
            continue;
        }
        memset(dst, 0, (size_t)(pad * p->Wp + pad) * sizeof(float));
        dst += pad * p->Wp + pad;
        for (int i = 0; i < p->H; i++, dst += p->Wp, src += p->W) {
            memcpy(dst, src, (size_t)p->W * sizeof(float));
            memset(dst + p->W, 0, (size_t)(2 * pad) * sizeof(float)); /* right, next left */
        }
        memset(dst - pad, 0, (size_t)(pad * p->Wp) * sizeof(float));
    }
    memset(xpad + planes * HWp, 0, RUN_BLOCK * sizeof(float));
}

/* Columns of a block of nb samples from their padded planes. Every (c, t) row holds, group by
 * group and within a group sample by sample, segments that follow each other in memory; each
 * segment is covered by its runs in increasing order. Conic groups cut image rows into short
 * runs (about 8 floats at R = 2), where a memcpy call would cost more than the copy, so runs are
 * copied in whole blocks of RUN_BLOCK floats: the overshoot lands on columns written next (or in
 * the slack after the block) and reads stay inside the padded planes and their slack. */
static void im2col(const cf_conv_plan *p, const float *xpad, int64_t nb, float *col)
{
    int64_t kk = (int64_t)p->k * p->k, HWp = (int64_t)p->Hp * p->Wp, BP = nb * p->P;
    int G = p->ngroups;
    const cf_simd_ops *k = cf_simd();
    for (int c = 0; c < p->C; c++) {
        for (int64_t t = 0; t < kk; t++) {
            float *row = col + (c * kk + t) * BP;
            for (int g = 0; g < G; g++) {
                int64_t g0 = p->goff[g], pg = p->goff[g + 1] - g0;
                const cf_conv_run *r0 = p->runs + p->run_off[t * G + g],
                                  *r1 = p->runs + p->run_off[t * G + g + 1];
                for (int64_t b = 0; b < nb; b++) {
                    const float *xb = xpad + (b * p->C + c) * HWp;
                    k->copy_runs(row + nb * g0 + b * pg, xb, r0, r1);
                }
            }
        }
    }
}

/* dx (nb samples, overwritten) = col2im(col), accumulated in the padded planes dxpad. */
static void col2im(const cf_conv_plan *p, const float *col, int64_t nb, float *dx, float *dxpad)
{
    int64_t kk = (int64_t)p->k * p->k, HW = (int64_t)p->H * p->W,
            HWp = (int64_t)p->Hp * p->Wp, BP = nb * p->P;
    int G = p->ngroups;
    const cf_simd_ops *k = cf_simd();
    memset(dxpad, 0, (size_t)(nb * p->C * HWp) * sizeof(float));
    for (int c = 0; c < p->C; c++) {
        for (int64_t t = 0; t < kk; t++) {
            const float *row = col + (c * kk + t) * BP;
            for (int g = 0; g < G; g++) {
                int64_t g0 = p->goff[g], pg = p->goff[g + 1] - g0;
                const cf_conv_run *r0 = p->runs + p->run_off[t * G + g],
                                  *r1 = p->runs + p->run_off[t * G + g + 1];
                for (int64_t b = 0; b < nb; b++) {
                    float *db = dxpad + (b * p->C + c) * HWp;
                    const float *src = row + nb * g0 + b * pg;
                    k->add_runs(db, src, r0, r1);
                }
            }
        }
    }
    for (int64_t pl = 0; pl < nb * p->C; pl++) {
        const float *src = dxpad + pl * HWp + p->pad * p->Wp + p->pad;
        float *dst = dx + pl * HW;
        for (int i = 0; i < p->H; i++, src += p->Wp, dst += p->W)
            memcpy(dst, src, (size_t)p->W * sizeof(float));
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
    float *col, *out, *xpad;
    bool cols_ready; /* backward: col already holds this share's columns (one block) */
} conv_job;

static void forward_range(const conv_job *j)
{
    const cf_conv_plan *p = j->p;
    int O = j->O;
    int64_t P = p->P, CK = p->CK, in_size = (int64_t)p->C * p->H * p->W;
    for (int64_t s0 = j->s_begin; s0 < j->s_end; s0 += j->nbmax) {
        int64_t nb = j->s_end - s0 < j->nbmax ? j->s_end - s0 : j->nbmax, BP = nb * P;
        pad_input(p, j->x + s0 * in_size, nb, j->xpad);
        im2col(p, j->xpad, nb, j->col);
        for (int g = 0; g < p->ngroups; g++) {
            int64_t g0 = p->goff[g], pg = p->goff[g + 1] - g0;
            if (pg == 0) continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, (int)(nb * pg), (int)CK,
                        1.0f, j->Wg[g], (int)CK, j->col + nb * g0, (int)BP, 0.0f,
                        j->out + nb * g0, (int)BP);
        }
        const cf_simd_ops *k = cf_simd();
        for (int64_t b = 0; b < nb; b++) {
            float *yb = j->y + (s0 + b) * O * P;
            for (int o = 0; o < O; o++) {
                float bo = j->bias ? j->bias[o] : 0.0f;
                const float *src = j->out + o * BP;
                float *dst = yb + o * P;
                if (!p->perm) {
                    k->add_scalar(dst, src + b * P, P, bo);
                    continue;
                }
                for (int g = 0; g < p->ngroups; g++) {
                    int64_t j0 = p->goff[g];
                    const float *sv = src + colpos(p, g, nb, b, j0) - j0;
                    k->scatter_runs(dst, sv, p->pruns + p->prun_off[g],
                                    p->pruns + p->prun_off[g + 1], bo);
                }
            }
        }
    }
}

/* Sum in double with 8 independent partial sums (a fixed order: deterministic). */
static double sum_floats(const float *v, int64_t n)
{
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int u = 0; u < 8; u++) acc[u] += v[i + u];
    for (; i < n; i++) acc[0] += v[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static void backward_range(const conv_job *j)
{
    const cf_conv_plan *p = j->p;
    int O = j->O;
    int64_t P = p->P, CK = p->CK, in_size = (int64_t)p->C * p->H * p->W;
    for (int64_t s0 = j->s_begin; s0 < j->s_end; s0 += j->nbmax) {
        int64_t nb = j->s_end - s0 < j->nbmax ? j->s_end - s0 : j->nbmax, BP = nb * P;
        float *dout = j->out;
        const cf_simd_ops *k = cf_simd();
        /* Gather dy into grouped column order. */
        for (int64_t b = 0; b < nb; b++) {
            const float *dyb = j->dy + (s0 + b) * O * P;
            for (int o = 0; o < O; o++) {
                const float *src = dyb + o * P;
                float *dst = dout + o * BP;
                if (!p->perm) {
                    memcpy(dst + b * P, src, (size_t)P * sizeof(float));
                } else {
                    for (int g = 0; g < p->ngroups; g++) {
                        int64_t j0 = p->goff[g];
                        float *dv = dst + colpos(p, g, nb, b, j0) - j0;
                        k->gather_runs(dv, src, p->pruns + p->prun_off[g],
                                       p->pruns + p->prun_off[g + 1]);
                    }
                }
                if (j->dbias) j->dbias[o] += (float)sum_floats(src, P);
            }
        }
        if (!j->cols_ready) {
            pad_input(p, j->x + s0 * in_size, nb, j->xpad);
            im2col(p, j->xpad, nb, j->col);
        }
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
        col2im(p, j->col, nb, j->dx + s0 * in_size, j->xpad);
    }
}

typedef struct conv_thread {
    conv_job job;
    bool backward;
} conv_thread;

static size_t jobs_bytes(int T) { return cf_align64((size_t)T * sizeof(conv_thread)); }

static void share_main(void *arg, int i)
{
    conv_thread *t = (conv_thread *)arg + i;
    if (t->backward) backward_range(&t->job);
    else forward_range(&t->job);
}

/* Splits the batch over T shares run at once by cf_parallel_run (the calling thread's pool, see
 * core/pool.h; the caller does share 0); each share uses its own slice of the workspace. */
static void run_split(const conv_job *base, bool backward, int64_t n, int threads, void *ws,
                      void *scratch, float *const *dWg_shared, float *dbias_shared)
{
    const cf_conv_plan *p = base->p;
    int T = eff_threads(threads, n);
    int64_t nb = block_of(p, n, T);
    ws_header *hdr = ws;
    bool keep = one_block(p, n, T);
    bool reuse = backward && keep && hdr->valid && hdr->x == base->x && hdr->n == n &&
                 hdr->threads == T;
    /* Kept: the header, then (keep) the threads' column blocks. Scratch (by default right after
     * the kept part): the job descriptors, then per thread (its column block unless kept) its
     * outputs and padded input, then the gradient banks of threads 1..T-1. */
    if (!scratch) scratch = (char *)ws + cf_conv_workspace_kept(p, base->O, n, threads);
    conv_thread *th = (conv_thread *)scratch;
    char *sp = (char *)scratch + jobs_bytes(T);
    size_t colb = col_bytes(p, nb), outb = cf_align64((size_t)base->O * (size_t)(nb * p->P) *
                                                     sizeof(float));
    size_t tb = thread_bytes(p, base->O, nb) - (keep ? colb : 0);
    size_t bank = (size_t)base->O * (size_t)p->CK;
    size_t rfloats = cf_align64(((size_t)p->ngroups * bank + (size_t)base->O) * sizeof(float));
    char *reduce = sp + (size_t)T * tb;
    for (int t = 0; t < T; t++) {
        conv_job *j = &th[t].job;
        char *mine = sp + (size_t)t * tb;
        *j = *base;
        j->s_begin = n * t / T;
        j->s_end = n * (t + 1) / T;
        j->nbmax = nb;
        j->col = keep ? (float *)((char *)ws + HEADER_BYTES + (size_t)t * colb) : (float *)mine;
        j->out = (float *)(mine + (keep ? 0 : colb));
        j->xpad = (float *)((char *)j->out + outb);
        j->cols_ready = reuse;
        th[t].backward = backward;
        if (backward && t > 0) {
            /* Private gradient banks of threads t > 0 and their pointer table, carved from
             * the end of the workspace. */
            char *rb = reduce + (size_t)(t - 1) * reduce_bytes(p, base->O);
            float *r = (float *)rb, **ptrs = (float **)(rb + rfloats);
            memset(r, 0, ((size_t)p->ngroups * bank + (size_t)base->O) * sizeof(float));
            for (int g = 0; g < p->ngroups; g++) ptrs[g] = r + (size_t)g * bank;
            j->dWg = ptrs;
            j->dbias = dbias_shared ? r + (size_t)p->ngroups * bank : NULL;
        } else if (backward) {
            j->dWg = dWg_shared;
            j->dbias = dbias_shared;
        }
    }
    cf_parallel_run(T, share_main, th);
    if (!backward) {
        hdr->x = base->x;
        hdr->n = n;
        hdr->threads = T;
        hdr->valid = keep;
        return;
    }
    if (base->dx) hdr->valid = 0;
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
                     const float *x, float *y, int64_t n, void *ws, void *scratch, int threads)
{
    conv_job j = {.p = p, .O = O, .Wg = Wg, .bias = bias, .x = x, .y = y};
    run_split(&j, false, n, threads, ws, scratch, NULL, NULL);
}

void cf_conv_backward(const cf_conv_plan *p, int O, const float *const *Wg, float *const *dWg,
                      float *dbias, const float *x, const float *dy, float *dx, int64_t n,
                      void *ws, void *scratch, int threads)
{
    conv_job j = {.p = p, .O = O, .Wg = Wg, .x = x, .dy = dy, .dx = dx};
    run_split(&j, true, n, threads, ws, scratch, dWg, dbias);
}
