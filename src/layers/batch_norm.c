/* Batch normalisation, statistics per channel c (axis 0 of the per-sample shape) pooled over the
 * batch and every other axis (space, rotations, projections):
 *   y = gamma[c] * (x - mu[c]) / sqrt(var[c] + eps) + beta[c].
 * Training: mu, var are the batch mean and biased variance over the m = N * (size / C) values of
 * channel c; running = (1 - momentum) * running + momentum * batch, with the unbiased variance
 * var * m / (m - 1). Inference: mu, var are the running statistics.
 * The forward leaves its mode, mu and 1 / sqrt(var + eps) in the workspace for the backward.
 * Synchronised (inside a data-parallel train step with a sum hook, see cfnet.h): the sums behind
 * mu, var and the backward's per-channel means are added over the processes by the hook, and m
 * counts the samples of the global batch, so every process normalises with the statistics of
 * the whole global batch. The parameter gradients stay local (the network sums them later). */
#include "core/pool.h"
#include "kernels/simd.h"
#include "layers/fused.h"
#include "nn/layer.h"

#include <math.h>

enum { FCFG_MOMENTUM, FCFG_EPS };
enum { P_GAMMA, P_BETA };
enum { S_MEAN, S_VAR };

typedef struct bn_ws {
    int training; /* mode of the preceding forward */
} bn_ws;

/* Workspace: header, then mean[C], invstd[C] and 2C doubles for the sums of a synchronised
 * backward. */
static size_t bn_workspace(const cfnet_layer *l, int64_t n)
{
    (void)n;
    return cf_align64(sizeof(bn_ws)) + (size_t)(4 * l->in_shape[0]) * sizeof(double);
}

/* The hook that adds sums over processes, or NULL outside a synchronised train step. */
static const cf_batch_ctx *bn_sync(const cfnet_layer *l)
{
    return l->batch && l->batch->sum ? l->batch : NULL;
}

static cfnet_status bn_sum(const cf_batch_ctx *sync, double *v, int64_t count, const char *what)
{
    cfnet_status st = sync->sum(sync->sum_user, CFNET_SUM_STATISTICS, v, count);
    CF_FAIL_IF(st != CFNET_OK, st < 0 ? st : CFNET_E_STATE,
               "batch_norm: the sum hook failed on the %s (%s)", what, cfnet_status_string(st));
    return CFNET_OK;
}

static double *bn_stats(void *ws) { return (double *)((char *)ws + cf_align64(sizeof(bn_ws))); }

static cfnet_status bn_setup(cfnet_layer *l, uint64_t seed)
{
    (void)seed;
    const int64_t cs[1] = {l->in_shape[0]};
    cfnet_tensor *gamma = NULL, *var = NULL;
    CF_CHECK(cf_layer_add_param(l, "gamma", 1, cs, &gamma));
    CF_CHECK(cf_layer_add_param(l, "beta", 1, cs, NULL));
    CF_CHECK(cf_layer_add_state(l, "running_mean", 1, cs, NULL));
    CF_CHECK(cf_layer_add_state(l, "running_var", 1, cs, &var));
    for (int64_t c = 0; c < cs[0]; c++) gamma->data[c] = var->data[c] = 1.0f;
    cf_layer_set_out_shape(l, l->in_ndim, l->in_shape);
    return CFNET_OK;
}

/* The loops over channels, split over the layer's threads by channel (each channel's sums are
 * its own, in the same order whatever the split: the same bits). */
typedef struct bn_job {
    const float *x, *dy;
    float *out;
    int64_t n, C, M;
    double *a, *b; /* per-channel results (pass-dependent) */
    const double *mean, *invstd;
    const float *gamma, *beta;
    float *dgamma, *dbeta;
    bool relu, training;
    int64_t count;
} bn_job;

static void bn_sum_channels(void *v, int64_t c0, int64_t c1)
{
    const bn_job *j = v;
    const cf_simd_ops *k = cf_simd();
    for (int64_t c = c0; c < c1; c++) j->a[c] = k->sum(j->x + c * j->M, j->C * j->M, j->n, j->M);
}

/* a[c] holds the mean on entry; b[c] gets the sum of squared deviations */
static void bn_sq_channels(void *v, int64_t c0, int64_t c1)
{
    const bn_job *j = v;
    const cf_simd_ops *k = cf_simd();
    for (int64_t c = c0; c < c1; c++) /* second pass: no cancellation when |mu| >> std */
        j->b[c] = k->sum_sq_dev(j->x + c * j->M, j->C * j->M, j->n, j->M, j->a[c]);
}

static void bn_affine_channels(void *v, int64_t c0, int64_t c1)
{
    const bn_job *j = v;
    const cf_simd_ops *k = cf_simd();
    for (int64_t c = c0; c < c1; c++) {
        const float mu = (float)j->mean[c], scale = (float)(j->gamma[c] * j->invstd[c]),
                    shift = j->beta[c];
        for (int64_t b = 0; b < j->n; b++)
            k->affine(j->x + (b * j->C + c) * j->M, j->out + (b * j->C + c) * j->M, j->M, mu,
                      scale, shift, j->relu);
    }
}

/* The batch statistics of channel c from the sums (a[c] the sum of x on entry, b[c] the sum of
 * squared deviations): mean[c], the running statistics, invstd[c]. */
static void bn_channel_stats(cfnet_layer *l, int64_t c, int64_t count, double *mean,
                             double *invstd)
{
    const double eps = l->fcfg[FCFG_EPS], mom = l->fcfg[FCFG_MOMENTUM];
    const double mu = mean[c], var = invstd[c] / (double)count;
    const double unbiased = count > 1 ? var * (double)count / (double)(count - 1) : var;
    float *rm = l->state[S_MEAN]->data, *rv = l->state[S_VAR]->data;
    rm[c] = (float)((1.0 - mom) * rm[c] + mom * mu);
    rv[c] = (float)((1.0 - mom) * rv[c] + mom * unbiased);
    invstd[c] = 1.0 / sqrt(var + eps);
}

/* A training forward without a sum hook, channel by channel: the sum, the squared deviations
 * and the affine pass of one channel one after the other, while its values are still in cache
 * (the same operations on the same values as the three passes over all channels). */
typedef struct bn_train_job {
    bn_job j;
    cfnet_layer *l;
} bn_train_job;

static void bn_train_channels(void *v, int64_t c0, int64_t c1)
{
    const bn_train_job *t = v;
    for (int64_t c = c0; c < c1; c++) {
        bn_sum_channels((void *)&t->j, c, c + 1);
        t->j.a[c] /= (double)t->j.count;
        bn_sq_channels((void *)&t->j, c, c + 1);
        bn_channel_stats(t->l, c, t->j.count, t->j.a, t->j.b);
        bn_affine_channels((void *)&t->j, c, c + 1);
    }
}

/* The forward; with relu, y = max(0, BN(x)) in the same pass (fused.h). */
static cfnet_status bn_forward_impl(cfnet_layer *l, const float *x, float *y, int64_t n,
                                    bool training, void *ws, bool relu)
{
    const int64_t C = l->in_shape[0], M = l->in_size / C;
    const float *gamma = l->param[P_GAMMA]->data, *beta = l->param[P_BETA]->data;
    const double eps = l->fcfg[FCFG_EPS];
    double *mean = bn_stats(ws), *invstd = mean + C;
    const cf_batch_ctx *sync = training ? bn_sync(l) : NULL;
    const int64_t count = (sync ? sync->global_n : n) * M;
    ((bn_ws *)ws)->training = training;

    bn_job j = {.x = x, .out = y, .n = n, .C = C, .M = M, .a = mean, .b = invstd,
                .mean = mean, .invstd = invstd, .gamma = gamma, .beta = beta, .relu = relu,
                .count = count};
    const int64_t grain = cf_par_min_items(n * M);
    if (training && !sync) {
        bn_train_job t = {.j = j, .l = l};
        cf_parallel_for(l->threads, C, grain, bn_train_channels, &t);
        return CFNET_OK;
    }
    if (training) {
        cf_parallel_for(l->threads, C, grain, bn_sum_channels, &j);
        if (sync) CF_CHECK(bn_sum(sync, mean, C, "sums of x"));
        for (int64_t c = 0; c < C; c++) mean[c] /= (double)count;
        cf_parallel_for(l->threads, C, grain, bn_sq_channels, &j);
        if (sync) CF_CHECK(bn_sum(sync, invstd, C, "sums of squares"));
        for (int64_t c = 0; c < C; c++) bn_channel_stats(l, c, count, mean, invstd);
    } else {
        for (int64_t c = 0; c < C; c++) {
            mean[c] = l->state[S_MEAN]->data[c];
            invstd[c] = 1.0 / sqrt((double)l->state[S_VAR]->data[c] + eps);
        }
    }
    cf_parallel_for(l->threads, C, grain, bn_affine_channels, &j);
    return CFNET_OK;
}

static cfnet_status bn_forward(cfnet_layer *l, const float *x, float *y, int64_t n,
                               bool training, void *ws)
{
    return bn_forward_impl(l, x, y, n, training, ws, false);
}

cfnet_status cf_batch_norm_forward_relu(cfnet_layer *l, const float *x, float *y, int64_t n,
                                        bool training, void *ws)
{
    return bn_forward_impl(l, x, y, n, training, ws, true);
}

/* a = sum dy, b = sum dy * xh per channel; dbeta += a, dgamma += b */
static void bn_grad_sums_channels(void *v, int64_t c0, int64_t c1)
{
    const bn_job *j = v;
    const cf_simd_ops *ks = cf_simd();
    for (int64_t c = c0; c < c1; c++) {
        double a = 0, bsum = 0;
        ks->sum_dy_dyx(j->x + c * j->M, j->dy + c * j->M, j->C * j->M, j->n, j->M, j->mean[c],
                       &a, &bsum);
        j->a[c] = a;
        j->b[c] = bsum * j->invstd[c]; /* sum dy * xh */
        j->dbeta[c] += (float)j->a[c];
        j->dgamma[c] += (float)j->b[c];
    }
}

static void bn_dx_channels(void *v, int64_t c0, int64_t c1)
{
    const bn_job *j = v;
    const cf_simd_ops *ks = cf_simd();
    const int64_t M = j->M;
    for (int64_t c = c0; c < c1; c++) {
        const double mu = j->mean[c], is = j->invstd[c];
        const float k = (float)(j->gamma[c] * is);
        if (j->training) {
            const float a = (float)(j->a[c] / (double)j->count), mf = (float)mu,
                        bcoef = (float)(j->b[c] / (double)j->count * is);
            /* dx = k * (dy - a - (x - mu) * invstd * mean(dy * xh)) */
            for (int64_t b = 0; b < j->n; b++)
                ks->bn_dx(j->x + (b * j->C + c) * M, j->dy + (b * j->C + c) * M,
                          j->out + (b * j->C + c) * M, M, k, a, mf, bcoef);
        } else {
            for (int64_t b = 0; b < j->n; b++) {
                const float *dyc = j->dy + (b * j->C + c) * M;
                float *dxc = j->out + (b * j->C + c) * M;
                for (int64_t i = 0; i < M; i++) dxc[i] = k * dyc[i];
            }
        }
    }
}

/* Without a sum hook, both passes of one channel one after the other, while its x and dy are
 * still in cache (the same operations as the two passes over all channels). */
static void bn_backward_channels(void *v, int64_t c0, int64_t c1)
{
    for (int64_t c = c0; c < c1; c++) {
        bn_grad_sums_channels(v, c, c + 1);
        bn_dx_channels(v, c, c + 1);
    }
}

/* With xh = (x - mu) * invstd: dbeta += sum dy, dgamma += sum dy * xh. Training (mu, var depend
 * on x): dx = gamma * invstd * (dy - mean(dy) - xh * mean(dy * xh)); inference:
 * dx = gamma * invstd * dy. */
static cfnet_status bn_backward(cfnet_layer *l, const float *x, const float *y, const float *dy,
                                float *dx, int64_t n, void *ws)
{
    (void)y;
    const int64_t C = l->in_shape[0], M = l->in_size / C;
    const float *gamma = l->param[P_GAMMA]->data;
    float *dgamma = l->grad[P_GAMMA]->data, *dbeta = l->grad[P_BETA]->data;
    const bool training = ((const bn_ws *)ws)->training != 0;
    const double *mean = bn_stats(ws), *invstd = mean + C;
    double *sdy = bn_stats(ws) + 2 * C, *sdyx = sdy + C;
    const cf_batch_ctx *sync = training ? bn_sync(l) : NULL;
    const int64_t count = (sync ? sync->global_n : n) * M;
    bn_job j = {.x = x, .dy = dy, .out = dx, .n = n, .C = C, .M = M, .a = sdy, .b = sdyx,
                .mean = mean, .invstd = invstd, .gamma = gamma, .dgamma = dgamma,
                .dbeta = dbeta, .training = training, .count = count};
    const int64_t grain = cf_par_min_items(n * M);
    if (dx && !sync) {
        cf_parallel_for(l->threads, C, grain, bn_backward_channels, &j);
        return CFNET_OK;
    }
    cf_parallel_for(l->threads, C, grain, bn_grad_sums_channels, &j);
    if (!dx) return CFNET_OK;
    if (sync) CF_CHECK(bn_sum(sync, sdy, 2 * C, "backward sums"));
    cf_parallel_for(l->threads, C, grain, bn_dx_channels, &j);
    return CFNET_OK;
}

static cfnet_status bn_check(int *ic, float *fc)
{
    (void)ic;
    float momentum = fc[FCFG_MOMENTUM], eps = fc[FCFG_EPS];
    CF_FAIL_IF(!(momentum > 0.0f && momentum <= 1.0f), CFNET_E_INVALID_ARGUMENT,
               "batch_norm: momentum is %g, must be in (0, 1]", (double)momentum);
    CF_FAIL_IF(!(eps > 0.0f) || !isfinite(eps), CFNET_E_INVALID_ARGUMENT,
               "batch_norm: eps is %g, must be positive and finite", (double)eps);
    return CFNET_OK;
}

const cf_layer_ops cf_batch_norm_ops = {
    .name = "batch_norm",
    .per_sample = true,
    .icfg_names = {NULL},
    .fcfg_names = {"momentum", "eps", NULL},
    .check = bn_check,
    .setup = bn_setup,
    .workspace = bn_workspace,
    .forward = bn_forward,
    .forward_relu = cf_batch_norm_forward_relu,
    .backward = bn_backward,
};

CFNET_API cfnet_status cfnet_layer_batch_norm_create(float momentum, float eps, cfnet_layer **out)
{
    const float cfg[] = {momentum, eps};
    return cf_layer_create(CFNET_LAYER_BATCH_NORM, NULL, cfg, NULL, out);
}
