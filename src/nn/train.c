/* Training: augmentation, the optimisation step, evaluation, invariance check. */
#include "network.h"

#include "kernels/rotate.h"

#include <float.h>
#include <math.h>
#include <string.h>

CFNET_API int64_t cfnet_network_step_count(const cfnet_network *net)
{
    if (!cf_handle_ok(net, CF_MAGIC_NETWORK, "network", __func__)) net = NULL;
    return net ? net->step : 0;
}

/* A tensor header over existing memory, for calling the public helpers without allocating. */
static cfnet_tensor view(float *data, int ndim, const int64_t *shape)
{
    cfnet_tensor t;
    memset(&t, 0, sizeof t);
    t.magic = CF_MAGIC_TENSOR;
    t.data = data;
    t.ndim = ndim;
    t.numel = 1;
    for (int i = 0; i < ndim; i++) {
        t.shape[i] = shape[i];
        t.numel *= shape[i];
    }
    return t;
}

/* Mirrors `planes` rows-of-W planes in place, u -> -u (column j <-> W-1-j): the reflection F of
 * docs/conventions.md, used by the flip augmentation and the reflection invariance check. */
static void mirror_rows(float *x, int64_t rows, int64_t W)
{
    for (int64_t p = 0; p < rows; p++) {
        float *row = x + p * W;
        for (int64_t j = 0; j < W / 2; j++) {
            float t = row[j];
            row[j] = row[W - 1 - j];
            row[W - 1 - j] = t;
        }
    }
}

/* ---- augmentation of one sample (C x H x W) in place, using tmp of the same size ---- */

static cfnet_status augment_sample(cfnet_network *net, float *x, float *tmp, cf_rng *rng)
{
    const cf_options *o = &net->opt;
    int64_t C = net->in_shape[0], H = net->in_shape[1], W = net->in_shape[2];
    size_t bytes = (size_t)(C * H * W) * sizeof(float);
    cfnet_tensor tx = view(x, 3, net->in_shape), tt = view(tmp, 3, net->in_shape);
    if (o->aug_rotation != CFNET_AUG_ROTATION_NONE) {
        double deg = o->aug_rotation == CFNET_AUG_ROTATION_QUARTER
                         ? 90.0 * (double)cf_rng_below(rng, 4)
                         : 360.0 * cf_rng_uniform(rng);
        CF_CHECK(cf_image_rotate(&net->alloc, &tx, &tt, deg));
        memcpy(x, tmp, bytes);
    }
    if (o->aug_jitter > 0) {
        uint64_t span = 2 * (uint64_t)o->aug_jitter + 1;
        int dy = (int)cf_rng_below(rng, span) - o->aug_jitter;
        int dx = (int)cf_rng_below(rng, span) - o->aug_jitter;
        CF_CHECK(cfnet_image_shift(&tx, &tt, dy, dx));
        memcpy(x, tmp, bytes);
    }
    if (o->aug_flip && cf_rng_below(rng, 2)) mirror_rows(x, C * H, W);
    return CFNET_OK;
}

/* ---- the optimisation step ----
 *
 * A step is transactional: the parameters, the optimiser moments, the step count, the batch-norm
 * running statistics and every random generator change only if the whole step succeeds. The
 * generators and running statistics (which the training forward moves) are copied before the
 * forward and put back on failure; the update is computed twice, first only to check that every
 * gradient and every new parameter and moment is finite, then to write it. */

typedef struct opt_coef {
    bool adam;
    float step, rb2, eps, b1, b2, mu;
    float omb1, omb2; /* 1 - b1, 1 - b2 */
} opt_coef;

static opt_coef optimizer_coef(const cfnet_network *net)
{
    const cf_options *o = &net->opt;
    double lr = o->lr * pow(o->decay_rate, (double)(net->step / o->decay_steps));
    double t = (double)(net->step + 1);
    double bc1 = 1.0 - pow(o->beta1, t), bc2 = 1.0 - pow(o->beta2, t);
    opt_coef c;
    c.adam = o->optimizer == CFNET_OPTIMIZER_ADAM;
    c.step = c.adam ? (float)(lr / bc1) : (float)lr;
    c.rb2 = (float)(1.0 / bc2);
    /* The update runs in float: an epsilon below float's range (the option accepts any
     * positive double) counts as the smallest positive float rather than as 0, which would
     * turn the update of a parameter that never had a gradient (m = v = 0) into 0/0. */
    c.eps = (float)o->eps > 0.0f ? (float)o->eps : FLT_TRUE_MIN;
    c.b1 = (float)o->beta1;
    c.b2 = (float)o->beta2;
    /* A beta within 3e-8 of 1 rounds to 1.0f, and 1.0f - beta would be 0: the moment would
     * never move (beta1: Adam never updates; beta2: v stays 0 and the steps blow up). Then
     * 1 - beta is taken from the double; otherwise the float difference, as always. */
    c.omb1 = c.b1 < 1.0f ? 1.0f - c.b1 : (float)(1.0 - o->beta1);
    c.omb2 = c.b2 < 1.0f ? 1.0f - c.b2 : (float)(1.0 - o->beta2);
    c.mu = (float)o->momentum;
    return c;
}

/* The update of one value: new weight *w, moments *m, *v from gradient g (weight decay wd). */
static inline void update_one(const opt_coef *c, float wd, float g, float *w, float *m, float *v)
{
    float gj = g + wd * *w;
    if (c->adam) {
        *m = c->b1 * *m + c->omb1 * gj;
        *v = c->b2 * *v + c->omb2 * gj * gj;
        *w -= c->step * *m / (sqrtf(*v * c->rb2) + c->eps);
    } else {
        *m = c->mu * *m + gj;
        *w -= c->step * *m;
    }
}

/* Checks (write = false) or applies (write = true) the update of every parameter. */
static cfnet_status optimizer_pass(cfnet_network *net, const opt_coef *c, bool write)
{
    for (int i = 0; i < net->nlayers; i++) {
        cfnet_layer *l = net->layers[i];
        for (int p = 0; p < l->nparam; p++) {
            float *w = l->param[p]->data;
            const float *g = l->grad[p]->data;
            cf_opt_slot *s = &net->slots[i * CF_MAX_PARAMS + p];
            int64_t n = l->param[p]->numel;
            float wd = strcmp(l->param_name[p], "weight") == 0 ? (float)net->opt.weight_decay
                                                               : 0.0f;
            if (write) {
                float dummy = 0.0f;
                for (int64_t j = 0; j < n; j++)
                    update_one(c, wd, g[j], &w[j], &s->m[j], c->adam ? &s->v[j] : &dummy);
                continue;
            }
            for (int64_t j = 0; j < n; j++) {
                float wj = w[j], mj = s->m[j], vj = c->adam ? s->v[j] : 0.0f;
                CF_FAIL_IF(!isfinite(g[j]), CFNET_E_NUMERIC,
                           "network_train_step: the gradient of layer %d (%s) %s is not finite; "
                           "nothing was updated",
                           i, l->ops->name, l->param_name[p]);
                update_one(c, wd, g[j], &wj, &mj, &vj);
                CF_FAIL_IF(!isfinite(wj) || !isfinite(mj) || !isfinite(vj), CFNET_E_NUMERIC,
                           "network_train_step: the update would make layer %d (%s) %s "
                           "non-finite (learning rate %g too large?); nothing was updated",
                           i, l->ops->name, l->param_name[p], net->opt.lr);
            }
        }
    }
    return CFNET_OK;
}

/* The snapshot of a training forward (network.h). */
cfnet_status cf_net_snapshot_take(cfnet_network *net, cf_net_snapshot *sn, const char *what)
{
    memset(sn, 0, sizeof *sn);
    sn->net_rng = net->rng;
    size_t floats = 0;
    for (int i = 0; i < net->nlayers; i++)
        for (int s = 0; s < net->layers[i]->nstate; s++)
            floats += (size_t)net->layers[i]->state[s]->numel;
    sn->layer_rng = cf_alloc_zero(&net->alloc, (size_t)(net->nlayers ? net->nlayers : 1), sizeof *sn->layer_rng);
    sn->state = floats ? cf_alloc(&net->alloc, floats * sizeof(float)) : NULL;
    if (!sn->layer_rng || (floats && !sn->state)) {
        cf_free(sn->layer_rng);
        cf_free(sn->state);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "%s: out of memory", what);
    }
    float *at = sn->state;
    for (int i = 0; i < net->nlayers; i++) {
        cfnet_layer *l = net->layers[i];
        cf_rng *r = l->ops->rng ? l->ops->rng(l) : NULL;
        if (r) sn->layer_rng[i] = *r;
        for (int s = 0; s < l->nstate; s++) {
            size_t k = (size_t)l->state[s]->numel;
            memcpy(at, l->state[s]->data, k * sizeof(float));
            at += k;
        }
    }
    return CFNET_OK;
}

void cf_net_snapshot_restore(cfnet_network *net, const cf_net_snapshot *sn)
{
    net->rng = sn->net_rng;
    const float *at = sn->state;
    for (int i = 0; i < net->nlayers; i++) {
        cfnet_layer *l = net->layers[i];
        cf_rng *r = l->ops->rng ? l->ops->rng(l) : NULL;
        if (r) *r = sn->layer_rng[i];
        for (int s = 0; s < l->nstate; s++) {
            size_t k = (size_t)l->state[s]->numel;
            memcpy(l->state[s]->data, at, k * sizeof(float));
            at += k;
        }
    }
}

void cf_net_snapshot_free(cf_net_snapshot *sn)
{
    cf_free(sn->layer_rng);
    cf_free(sn->state);
    memset(sn, 0, sizeof *sn);
}

static bool all_finite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

/* Non-finite logits: names the first layer whose training output is not finite. */
static cfnet_status nonfinite_forward(const cfnet_network *net, int upto, int64_t n)
{
    for (int i = 0; i < upto; i++) {
        const cfnet_layer *l = net->layers[i];
        if (!all_finite(net->act[i], l->out_size * n))
            return cf_error(CFNET_E_NUMERIC,
                            "network_train_step: layer %d (%s) produced non-finite values from "
                            "finite inputs (diverged parameters?); nothing was updated",
                            i, l->ops->name);
    }
    return cf_error(CFNET_E_NUMERIC, "network_train_step: the loss is not finite; nothing was "
                                     "updated");
}

/* The running statistics the training forward moved: a step whose batch statistics overflow
 * float (activations of order 1e19 and more, or a diverging network) would leave a non-finite
 * running variance that inference uses and save refuses. */
cfnet_status cf_network_nonfinite_state(const cfnet_network *net, const char *what)
{
    for (int i = 0; i < net->nlayers; i++) {
        const cfnet_layer *l = net->layers[i];
        for (int s = 0; s < l->nstate; s++)
            CF_FAIL_IF(!all_finite(l->state[s]->data, l->state[s]->numel), CFNET_E_NUMERIC,
                       "%s: layer %d (%s) %s would become non-finite "
                       "(activations too large: diverged parameters or inputs?); nothing was "
                       "updated",
                       what, i, l->ops->name, l->state_name[s]);
    }
    return CFNET_OK;
}

/* Index one past the layer that produces the logits (a final softmax is skipped). */
int cf_network_logits_end(const cfnet_network *net)
{
    int L = net->nlayers;
    return (L > 0 && net->layers[L - 1]->kind == CFNET_LAYER_SOFTMAX) ? L - 1 : L;
}

static cfnet_status check_batch_labels(const cfnet_network *net, const char *what,
                                       const cfnet_tensor *images, const int32_t *labels,
                                       int64_t n, int64_t *k_out)
{
    CF_FAIL_IF(!images || !labels, CFNET_E_INVALID_ARGUMENT, "%s: NULL argument", what);
    CF_FAIL_IF(cf_network_logits_end(net) < 1, CFNET_E_STATE,
               "%s: the network has no layers to train", what);
    int64_t batch = 0;
    CF_CHECK(cf_check_batch(what, "image batch", images, 3, net->in_shape, &batch));
    CF_FAIL_IF(n != images->shape[0] || n < 1, CFNET_E_SHAPE_MISMATCH,
               "%s: %lld labels for %lld images", what, (long long)n,
               (long long)images->shape[0]);
    CF_CHECK(cf_check_finite_images(what, images->data, n, net->in_size));
    int64_t k = net->layers[cf_network_logits_end(net) - 1]->out_size;
    for (int64_t i = 0; i < n; i++)
        CF_FAIL_IF(labels[i] < 0 || labels[i] >= k, CFNET_E_INVALID_ARGUMENT,
                   "%s: label %lld is %d, must be in [0, %lld)", what, (long long)i,
                   (int)labels[i], (long long)k);
    *k_out = k;
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_train_step(cfnet_network *net, const cfnet_tensor *images,
                                                const int32_t *labels, int64_t n, float *loss)
{
    CF_NET_ENTER(net, true, "network_train_step", images, NULL);
    int64_t k;
    CF_CHECK(check_batch_labels(net, "network_train_step", images, labels, n, &k));
    int64_t total = n * net->in_size;
    CF_CHECK(cf_network_ensure_train_buffers(net, n));
    CF_CHECK(cf_network_ensure_slots(net));
    memcpy(net->input, images->data, (size_t)total * sizeof(float));
    return cf_network_train_input(net, labels, n, k, loss, NULL);
}

/* The step on net->input; bctx says where the batch sits in a global batch (parallel.c). */
static cfnet_status train_input_run(cfnet_network *net, const int32_t *labels, int64_t n,
                                    int64_t k, const cf_batch_ctx *bctx, float *loss,
                                    int64_t *correct)
{
    CF_FAIL_IF(net->step >= CF_MAX_STEP, CFNET_E_LIMIT,
               "network_train_step: the step count is at its limit (2^53 steps)");
    cf_net_snapshot sn;
    cfnet_status st = cf_net_snapshot_take(net, &sn, "network_train_step");
    if (st != CFNET_OK) {
        if (net->slots_fresh) cf_network_reset_optimizer(net);
        return st;
    }
    const cf_options *o = &net->opt;
    if (o->aug_rotation || o->aug_jitter || o->aug_flip) {
        float *tmp = cf_alloc(&net->alloc, (size_t)net->in_size * sizeof(float));
        if (!tmp) st = cf_error(CFNET_E_OUT_OF_MEMORY, "network_train_step: out of memory");
        for (int64_t i = 0; i < n && st == CFNET_OK; i++) {
            cf_rng keyed, *rng = &net->rng;
            if (bctx->keyed) {
                cf_rng_seed(&keyed, cf_parallel_aug_seed(net, bctx, i));
                rng = &keyed;
            }
            st = augment_sample(net, net->input + i * net->in_size, tmp, rng);
        }
        cf_free(tmp);
    }
    int upto = cf_network_logits_end(net);
    net->fwd_n = 0;
    if (st == CFNET_OK) st = cf_network_train_forward(net, upto, n);
    int64_t lshape[2] = {n, k};
    float l = 0.0f;
    /* With a sum hook every process must reach the gradient sum: a non-finite forward here is
     * carried into the sum (NaN there fails every process alike) and reported afterwards. */
    bool deferred = false;
    if (st == CFNET_OK && !all_finite(net->act[upto - 1], n * k)) {
        if (bctx->sum) deferred = true;
        else st = nonfinite_forward(net, upto, n);
    }
    if (st == CFNET_OK && deferred) { /* no loss of non-finite logits: NaN, to be summed */
        l = NAN;
        for (int64_t i = 0; i < n * k; i++) net->grad_a[i] = NAN;
    } else if (st == CFNET_OK) {
        cfnet_tensor logits = view(net->act[upto - 1], 2, lshape);
        cfnet_tensor grad = view(net->grad_a, 2, lshape);
        st = cfnet_softmax_cross_entropy(&logits, labels, n, &l, &grad);
    }
    if (st == CFNET_OK && !isfinite(l)) {
        if (bctx->sum) deferred = true;
        else st = nonfinite_forward(net, upto, n);
    }
    if (st == CFNET_OK && bctx->global_n != n) { /* this process's share of the global mean */
        const float share = (float)((double)n / (double)bctx->global_n);
        for (int64_t i = 0; i < n * k; i++) net->grad_a[i] *= share;
        l = (float)((double)l * (double)n / (double)bctx->global_n);
    }
    int64_t hits = 0;
    if (st == CFNET_OK && correct) {
        const float *z = net->act[upto - 1];
        for (int64_t i = 0; i < n; i++, z += k) hits += cf_argmax(z, k) == labels[i];
    }
    if (st == CFNET_OK) {
        for (int i = 0; i < net->nlayers; i++) cfnet_layer_zero_grad(net->layers[i]);
        st = cf_network_train_backward(net, upto, net->grad_a, n);
    }
    if (st == CFNET_OK && bctx->sum) st = cf_parallel_sum_gradients(net, &l);
    opt_coef c = optimizer_coef(net);
    if (st == CFNET_OK) st = optimizer_pass(net, &c, false);
    if (st == CFNET_OK) st = cf_network_nonfinite_state(net, "network_train_step");
    if (st == CFNET_E_NUMERIC && deferred) st = nonfinite_forward(net, upto, n);
    net->fwd_n = 0; /* the activations are stale after the update (or the failure) */
    if (st != CFNET_OK) {
        cf_net_snapshot_restore(net, &sn);
        cf_net_snapshot_free(&sn);
        /* optimiser state this step created (zeroed) goes again: a saved state shows none */
        if (net->slots_fresh) cf_network_reset_optimizer(net);
        return st;
    }
    cf_net_snapshot_free(&sn);
    optimizer_pass(net, &c, true);
    net->slots_fresh = false;
    net->step++;
    if (loss) *loss = l;
    if (correct) *correct = hits;
    return CFNET_OK;
}

cfnet_status cf_network_train_input(cfnet_network *net, const int32_t *labels, int64_t n,
                                    int64_t k, float *loss, int64_t *correct)
{
    cf_batch_ctx bctx;
    CF_CHECK(cf_parallel_begin(net, n, &bctx));
    cfnet_status st = train_input_run(net, labels, n, k, &bctx, loss, correct);
    cf_parallel_end(net);
    return st;
}

CFNET_API cfnet_status cfnet_network_evaluate(const cfnet_network *net,
                                              const cfnet_tensor *images, const int32_t *labels,
                                              int64_t n, int64_t batch, float *loss,
                                              float *accuracy)
{
    CF_NET_ENTER(net, false, "network_evaluate", images, NULL);
    CF_FAIL_IF(batch < 0, CFNET_E_INVALID_ARGUMENT, "network_evaluate: batch %lld is negative",
               (long long)batch);
    int64_t k;
    CF_CHECK(check_batch_labels(net, "network_evaluate", images, labels, n, &k));
    if (batch == 0) batch = 100;
    if (batch > n) batch = n;
    int upto = cf_network_logits_end(net);
    cf_interrupt ir = cf_interrupt_begin(net, "network_evaluate", (n + batch - 1) / batch, upto);
    float *logits = cf_alloc(&net->alloc, (size_t)(batch * k) * sizeof(float));
    CF_FAIL_IF(!logits, CFNET_E_OUT_OF_MEMORY, "network_evaluate: out of memory");
    double sum_loss = 0;
    int64_t correct = 0;
    cfnet_status st = CFNET_OK;
    for (int64_t s0 = 0; s0 < n && st == CFNET_OK; s0 += batch) {
        int64_t nb = n - s0 < batch ? n - s0 : batch;
        st = cf_network_infer_into(net, upto, images->data + s0 * net->in_size, nb, logits, &ir);
        if (st != CFNET_OK) break;
        /* Named here with the image's index in the whole set (the loss would count within
         * the batch). */
        for (int64_t i = 0; i < nb * k; i++)
            if (!isfinite(logits[i])) {
                st = cf_error(CFNET_E_INVALID_ARGUMENT,
                              "network_evaluate: the output for image %lld is not finite (NaN "
                              "or Inf in the image or in the network)",
                              (long long)(s0 + i / k));
                break;
            }
        if (st != CFNET_OK) break;
        int64_t lshape[2] = {nb, k};
        cfnet_tensor lt = view(logits, 2, lshape);
        float l;
        st = cfnet_softmax_cross_entropy(&lt, labels + s0, nb, &l, NULL);
        sum_loss += (double)l * (double)nb;
        for (int64_t i = 0; i < nb; i++) correct += cf_argmax(logits + i * k, k) == labels[s0 + i];
    }
    cf_free(logits);
    CF_CHECK(st);
    if (loss) *loss = (float)(sum_loss / (double)n);
    if (accuracy) *accuracy = (float)((double)correct / (double)n);
    return CFNET_OK;
}

/* ---- invariance check ---- */

/* The transformed inputs are rot_a(x) for each angle a, and with CFNET_INVARIANCE_REFLECT also
 * F x and rot_a(F x): with the quarter turns, all 7 non-identity elements of D4. */
static cfnet_status invariance(const cfnet_network *net, const cfnet_tensor *x,
                               const double *angles, int n_angles, unsigned flags,
                               double *max_rel_change)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_NET_GUARD(net, false, "network_invariance");
    CF_CHECK(cf_handle_check(x, CF_MAGIC_TENSOR, "tensor", __func__));
    static const double quarter[3] = {90.0, 180.0, 270.0};
    CF_FAIL_IF(!net || !x || !max_rel_change, CFNET_E_INVALID_ARGUMENT,
               "network_invariance: NULL argument");
    CF_FAIL_IF(flags & ~(unsigned)CFNET_INVARIANCE_REFLECT, CFNET_E_INVALID_ARGUMENT,
               "network_invariance: unknown flags 0x%x (CFNET_INVARIANCE_REFLECT = 0x%x)",
               flags & ~(unsigned)CFNET_INVARIANCE_REFLECT, (unsigned)CFNET_INVARIANCE_REFLECT);
    CF_NET_SCOPE(net);
    if (!angles) {
        angles = quarter;
        n_angles = 3;
    }
    CF_FAIL_IF(n_angles < 1, CFNET_E_INVALID_ARGUMENT,
               "network_invariance: n_angles is %d, must be >= 1", n_angles);
    CF_FAIL_IF(x->ndim != 4 || x->shape[1] != net->in_shape[0] ||
                   x->shape[2] != net->in_shape[1] || x->shape[3] != net->in_shape[2],
               CFNET_E_SHAPE_MISMATCH, "network_invariance: input does not match the network");
    CF_FAIL_IF(net->in_shape[1] != net->in_shape[2], CFNET_E_SHAPE_MISMATCH,
               "network_invariance: inputs are %lldx%lld, rotations need square maps",
               (long long)net->in_shape[1], (long long)net->in_shape[2]);
    CF_CHECK(cf_check_finite_images("network_invariance", x->data, x->shape[0], net->in_size));
    int64_t n = x->shape[0], osz = net->nlayers ? net->layers[net->nlayers - 1]->out_size
                                                 : net->in_size;
    float *ref = cf_alloc(&net->alloc, (size_t)(n * osz) * sizeof(float));
    float *got = cf_alloc(&net->alloc, (size_t)(n * osz) * sizeof(float));
    float *xr = cf_alloc(&net->alloc, (size_t)(n * net->in_size) * sizeof(float));
    const bool reflect = (flags & CFNET_INVARIANCE_REFLECT) != 0;
    float *xm = reflect ? cf_alloc(&net->alloc, (size_t)(n * net->in_size) * sizeof(float)) : NULL;
    cfnet_status st = CFNET_OK;
    if (!ref || !got || !xr || (reflect && !xm))
        st = cf_error(CFNET_E_OUT_OF_MEMORY, "network_invariance: out of memory");
    cf_interrupt ir = cf_interrupt_begin(net, "network_invariance",
                                         (1 + (int64_t)n_angles) * (reflect ? 2 : 1),
                                         net->nlayers);
    if (st == CFNET_OK) st = cf_network_infer_into(net, net->nlayers, x->data, n, ref, &ir);
    double scale = 0, worst = 0;
    if (st == CFNET_OK)
        for (int64_t i = 0; i < n * osz; i++) scale = fmax(scale, fabs((double)ref[i]));
    cfnet_tensor tm = view(xm, 4, x->shape);
    if (reflect && st == CFNET_OK) {
        memcpy(xm, x->data, (size_t)(n * net->in_size) * sizeof(float));
        mirror_rows(xm, n * net->in_shape[0] * net->in_shape[1], net->in_shape[2]);
    }
    /* case -1: the mirrored input itself; 0 .. n_angles-1: rotations of x (or of F x) */
    for (int m = 0; m < (reflect ? 2 : 1) && st == CFNET_OK; m++) {
        for (int a = m ? -1 : 0; a < n_angles && st == CFNET_OK; a++) {
            const float *in = xm;
            if (a >= 0) {
                cfnet_tensor tr = view(xr, 4, x->shape);
                st = cfnet_image_rotate(m ? &tm : x, &tr, angles[a]);
                in = xr;
            }
            if (st == CFNET_OK) st = cf_network_infer_into(net, net->nlayers, in, n, got, &ir);
            if (st != CFNET_OK) break;
            for (int64_t i = 0; i < n * osz; i++) {
                double d = fabs((double)got[i] - (double)ref[i]);
                if (!(d <= worst)) worst = d; /* NaN propagates */
            }
        }
    }
    cf_free(ref);
    cf_free(got);
    cf_free(xr);
    cf_free(xm);
    CF_CHECK(st);
    *max_rel_change = scale > 0 ? worst / scale : worst;
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_invariance(const cfnet_network *net, const cfnet_tensor *x,
                                                const double *angles, int n_angles,
                                                double *max_rel_change)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_CHECK(cf_handle_check(x, CF_MAGIC_TENSOR, "tensor", __func__));
    return invariance(net, x, angles, n_angles, 0, max_rel_change);
}

CFNET_API cfnet_status cfnet_network_invariance_ex(const cfnet_network *net,
                                                   const cfnet_tensor *x, const double *angles,
                                                   int n_angles, unsigned flags,
                                                   double *max_rel_change)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_CHECK(cf_handle_check(x, CF_MAGIC_TENSOR, "tensor", __func__));
    return invariance(net, x, angles, n_angles, flags, max_rel_change);
}
