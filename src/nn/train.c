/* Training: options, augmentation, the optimisation step, evaluation, invariance check. */
#include "network.h"

#include <math.h>
#include <string.h>

/* ---- options ---- */

CFNET_API cfnet_status cfnet_network_set_option(cfnet_network *net, cfnet_option option,
                                                double value)
{
    CF_FAIL_IF(!net, CFNET_E_INVALID_ARGUMENT, "network_set_option: network is NULL");
    CF_FAIL_IF(!isfinite(value), CFNET_E_INVALID_ARGUMENT,
               "network_set_option: option %d: value is not finite", (int)option);
    cf_options *o = &net->opt;
    bool integral = value == floor(value);
    switch (option) {
    case CFNET_OPTION_OPTIMIZER:
        CF_FAIL_IF(value != CFNET_OPTIMIZER_ADAM && value != CFNET_OPTIMIZER_SGD,
                   CFNET_E_INVALID_ARGUMENT, "network_set_option: unknown optimizer %g", value);
        if ((int)value != o->optimizer) cf_network_reset_optimizer(net);
        o->optimizer = (int)value;
        return CFNET_OK;
    case CFNET_OPTION_LEARNING_RATE:
        CF_FAIL_IF(value < 0, CFNET_E_INVALID_ARGUMENT,
                   "network_set_option: learning rate %g is negative", value);
        o->lr = value;
        return CFNET_OK;
    case CFNET_OPTION_BETA1:
    case CFNET_OPTION_BETA2:
        CF_FAIL_IF(value < 0 || value >= 1, CFNET_E_INVALID_ARGUMENT,
                   "network_set_option: beta %g must be in [0, 1)", value);
        if (option == CFNET_OPTION_BETA1) o->beta1 = value;
        else o->beta2 = value;
        return CFNET_OK;
    case CFNET_OPTION_EPSILON:
        CF_FAIL_IF(value <= 0, CFNET_E_INVALID_ARGUMENT,
                   "network_set_option: epsilon %g must be positive", value);
        o->eps = value;
        return CFNET_OK;
    case CFNET_OPTION_MOMENTUM:
        CF_FAIL_IF(value < 0 || value >= 1, CFNET_E_INVALID_ARGUMENT,
                   "network_set_option: momentum %g must be in [0, 1)", value);
        o->momentum = value;
        return CFNET_OK;
    case CFNET_OPTION_WEIGHT_DECAY:
        CF_FAIL_IF(value < 0, CFNET_E_INVALID_ARGUMENT,
                   "network_set_option: weight decay %g is negative", value);
        o->weight_decay = value;
        return CFNET_OK;
    case CFNET_OPTION_LR_DECAY_RATE:
        CF_FAIL_IF(value <= 0 || value > 1, CFNET_E_INVALID_ARGUMENT,
                   "network_set_option: decay rate %g must be in (0, 1]", value);
        o->decay_rate = value;
        return CFNET_OK;
    case CFNET_OPTION_LR_DECAY_STEPS:
        CF_FAIL_IF(!integral || value < 1 || value > 1e15, CFNET_E_INVALID_ARGUMENT,
                   "network_set_option: decay steps %g must be a positive integer", value);
        o->decay_steps = (int64_t)value;
        return CFNET_OK;
    case CFNET_OPTION_THREADS:
        CF_FAIL_IF(!integral || value < 1 || value > 256, CFNET_E_INVALID_ARGUMENT,
                   "network_set_option: threads %g must be an integer in 1..256", value);
        cf_network_set_threads(net, (int)value);
        return CFNET_OK;
    case CFNET_OPTION_AUG_ROTATION:
        CF_FAIL_IF(!integral || value < CFNET_AUG_ROTATION_NONE || value > CFNET_AUG_ROTATION_ANY,
                   CFNET_E_INVALID_ARGUMENT, "network_set_option: unknown rotation mode %g",
                   value);
        CF_FAIL_IF(value != CFNET_AUG_ROTATION_NONE && net->in_shape[1] != net->in_shape[2],
                   CFNET_E_SHAPE_MISMATCH,
                   "network_set_option: rotation augmentation needs square inputs, not %lldx%lld",
                   (long long)net->in_shape[1], (long long)net->in_shape[2]);
        o->aug_rotation = (int)value;
        return CFNET_OK;
    case CFNET_OPTION_AUG_JITTER:
        CF_FAIL_IF(!integral || value < 0 || value >= (double)net->in_shape[1] ||
                       value >= (double)net->in_shape[2],
                   CFNET_E_INVALID_ARGUMENT,
                   "network_set_option: jitter %g must be an integer in [0, image size)", value);
        o->aug_jitter = (int)value;
        return CFNET_OK;
    case CFNET_OPTION_AUG_FLIP:
        CF_FAIL_IF(value != 0 && value != 1, CFNET_E_INVALID_ARGUMENT,
                   "network_set_option: flip must be 0 or 1, not %g", value);
        o->aug_flip = (int)value;
        return CFNET_OK;
    }
    return cf_error(CFNET_E_INVALID_ARGUMENT, "network_set_option: unknown option %d",
                    (int)option);
}

CFNET_API cfnet_status cfnet_network_get_option(const cfnet_network *net, cfnet_option option,
                                                double *value)
{
    CF_FAIL_IF(!net || !value, CFNET_E_INVALID_ARGUMENT, "network_get_option: NULL argument");
    const cf_options *o = &net->opt;
    switch (option) {
    case CFNET_OPTION_OPTIMIZER: *value = o->optimizer; return CFNET_OK;
    case CFNET_OPTION_LEARNING_RATE: *value = o->lr; return CFNET_OK;
    case CFNET_OPTION_BETA1: *value = o->beta1; return CFNET_OK;
    case CFNET_OPTION_BETA2: *value = o->beta2; return CFNET_OK;
    case CFNET_OPTION_EPSILON: *value = o->eps; return CFNET_OK;
    case CFNET_OPTION_MOMENTUM: *value = o->momentum; return CFNET_OK;
    case CFNET_OPTION_WEIGHT_DECAY: *value = o->weight_decay; return CFNET_OK;
    case CFNET_OPTION_LR_DECAY_RATE: *value = o->decay_rate; return CFNET_OK;
    case CFNET_OPTION_LR_DECAY_STEPS: *value = (double)o->decay_steps; return CFNET_OK;
    case CFNET_OPTION_THREADS: *value = o->threads; return CFNET_OK;
    case CFNET_OPTION_AUG_ROTATION: *value = o->aug_rotation; return CFNET_OK;
    case CFNET_OPTION_AUG_JITTER: *value = o->aug_jitter; return CFNET_OK;
    case CFNET_OPTION_AUG_FLIP: *value = o->aug_flip; return CFNET_OK;
    }
    return cf_error(CFNET_E_INVALID_ARGUMENT, "network_get_option: unknown option %d",
                    (int)option);
}

CFNET_API int64_t cfnet_network_step_count(const cfnet_network *net)
{
    return net ? net->step : 0;
}

/* A tensor header over existing memory, for calling the public helpers without allocating. */
static cfnet_tensor view(float *data, int ndim, const int64_t *shape)
{
    cfnet_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.ndim = ndim;
    t.numel = 1;
    for (int i = 0; i < ndim; i++) {
        t.shape[i] = shape[i];
        t.numel *= shape[i];
    }
    return t;
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
        CF_CHECK(cfnet_image_rotate(&tx, &tt, deg));
        memcpy(x, tmp, bytes);
    }
    if (o->aug_jitter > 0) {
        uint64_t span = 2 * (uint64_t)o->aug_jitter + 1;
        int dy = (int)cf_rng_below(rng, span) - o->aug_jitter;
        int dx = (int)cf_rng_below(rng, span) - o->aug_jitter;
        CF_CHECK(cfnet_image_shift(&tx, &tt, dy, dx));
        memcpy(x, tmp, bytes);
    }
    if (o->aug_flip && cf_rng_below(rng, 2)) {
        for (int64_t p = 0; p < C * H; p++) {
            float *row = x + p * W;
            for (int64_t j = 0; j < W / 2; j++) {
                float t = row[j];
                row[j] = row[W - 1 - j];
                row[W - 1 - j] = t;
            }
        }
    }
    return CFNET_OK;
}

/* ---- the optimisation step ---- */

static void optimizer_update(cfnet_network *net)
{
    const cf_options *o = &net->opt;
    double lr = o->lr * pow(o->decay_rate, (double)(net->step / o->decay_steps));
    double t = (double)(net->step + 1);
    double bc1 = 1.0 - pow(o->beta1, t), bc2 = 1.0 - pow(o->beta2, t);
    float b1 = (float)o->beta1, b2 = (float)o->beta2, mu = (float)o->momentum;
    for (int i = 0; i < net->nlayers; i++) {
        cfnet_layer *l = net->layers[i];
        for (int p = 0; p < l->nparam; p++) {
            float *w = l->param[p]->data;
            const float *g = l->grad[p]->data;
            cf_opt_slot *s = &net->slots[i * CF_MAX_PARAMS + p];
            int64_t n = l->param[p]->numel;
            float wd = strcmp(l->param_name[p], "weight") == 0 ? (float)o->weight_decay : 0.0f;
            if (o->optimizer == CFNET_OPTIMIZER_ADAM) {
                float step = (float)(lr / bc1), rb2 = (float)(1.0 / bc2), eps = (float)o->eps;
                for (int64_t j = 0; j < n; j++) {
                    float gj = g[j] + wd * w[j];
                    s->m[j] = b1 * s->m[j] + (1.0f - b1) * gj;
                    s->v[j] = b2 * s->v[j] + (1.0f - b2) * gj * gj;
                    w[j] -= step * s->m[j] / (sqrtf(s->v[j] * rb2) + eps);
                }
            } else {
                float step = (float)lr;
                for (int64_t j = 0; j < n; j++) {
                    float gj = g[j] + wd * w[j];
                    s->m[j] = mu * s->m[j] + gj;
                    w[j] -= step * s->m[j];
                }
            }
        }
    }
    net->step++;
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
    char a[96], b[96];
    CF_FAIL_IF(!images || !labels, CFNET_E_INVALID_ARGUMENT, "%s: NULL argument", what);
    CF_FAIL_IF(cf_network_logits_end(net) < 1, CFNET_E_STATE,
               "%s: the network has no layers to train", what);
    bool ok = images->ndim == 4 && images->shape[1] == net->in_shape[0] &&
              images->shape[2] == net->in_shape[1] && images->shape[3] == net->in_shape[2];
    CF_FAIL_IF(!ok, CFNET_E_SHAPE_MISMATCH, "%s: images are %s, expected N x %s", what,
               cf_shape_str(a, sizeof a, images->ndim, images->shape),
               cf_shape_str(b, sizeof b, 3, net->in_shape));
    CF_FAIL_IF(n != images->shape[0] || n < 1, CFNET_E_SHAPE_MISMATCH,
               "%s: %lld labels for %lld images", what, (long long)n,
               (long long)images->shape[0]);
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
    CF_FAIL_IF(!net, CFNET_E_INVALID_ARGUMENT, "network_train_step: network is NULL");
    CF_NET_SCOPE(net);
    int64_t k;
    CF_CHECK(check_batch_labels(net, "network_train_step", images, labels, n, &k));
    int64_t total = n * net->in_size;
    for (int64_t i = 0; i < total; i++)
        CF_FAIL_IF(!isfinite(images->data[i]), CFNET_E_INVALID_ARGUMENT,
                   "network_train_step: image %lld contains NaN or Inf",
                   (long long)(i / net->in_size));
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
    const cf_options *o = &net->opt;
    if (o->aug_rotation || o->aug_jitter || o->aug_flip) {
        float *tmp = cf_malloc((size_t)net->in_size * sizeof(float));
        CF_FAIL_IF(!tmp, CFNET_E_OUT_OF_MEMORY, "network_train_step: out of memory");
        cfnet_status st = CFNET_OK;
        for (int64_t i = 0; i < n && st == CFNET_OK; i++) {
            cf_rng keyed, *rng = &net->rng;
            if (bctx->keyed) {
                cf_rng_seed(&keyed, cf_parallel_aug_seed(net, bctx, i));
                rng = &keyed;
            }
            st = augment_sample(net, net->input + i * net->in_size, tmp, rng);
        }
        cf_free(tmp);
        CF_CHECK(st);
    }
    int upto = cf_network_logits_end(net);
    net->fwd_n = 0;
    CF_CHECK(cf_network_train_forward(net, upto, n));
    int64_t lshape[2] = {n, k};
    cfnet_tensor logits = view(net->act[upto - 1], 2, lshape);
    cfnet_tensor grad = view(net->grad_a, 2, lshape);
    float l;
    CF_CHECK(cfnet_softmax_cross_entropy(&logits, labels, n, &l, &grad));
    if (bctx->global_n != n) { /* this process's share of the global mean */
        const float share = (float)((double)n / (double)bctx->global_n);
        for (int64_t i = 0; i < n * k; i++) net->grad_a[i] *= share;
        l = (float)((double)l * (double)n / (double)bctx->global_n);
    }
    if (correct) {
        const float *z = net->act[upto - 1];
        int64_t c = 0;
        for (int64_t i = 0; i < n; i++, z += k) {
            int64_t best = 0;
            for (int64_t j = 1; j < k; j++)
                if (z[j] > z[best]) best = j;
            c += best == labels[i];
        }
        *correct = c;
    }
    for (int i = 0; i < net->nlayers; i++) cfnet_layer_zero_grad(net->layers[i]);
    CF_CHECK(cf_network_train_backward(net, upto, net->grad_a, n));
    if (bctx->sum) CF_CHECK(cf_parallel_sum_gradients(net, &l));
    optimizer_update(net);
    net->fwd_n = 0; /* the activations are stale after the update */
    if (loss) *loss = l;
    return CFNET_OK;
}

cfnet_status cf_network_train_input(cfnet_network *net, const int32_t *labels, int64_t n,
                                    int64_t k, float *loss, int64_t *correct)
{
    cf_batch_ctx bctx;
    cf_parallel_undo undo;
    CF_CHECK(cf_parallel_begin(net, n, &bctx, &undo));
    cfnet_status st = train_input_run(net, labels, n, k, &bctx, loss, correct);
    cf_parallel_end(net, &undo, st != CFNET_OK);
    return st;
}

CFNET_API cfnet_status cfnet_network_evaluate(const cfnet_network *net,
                                              const cfnet_tensor *images, const int32_t *labels,
                                              int64_t n, int64_t batch, float *loss,
                                              float *accuracy)
{
    CF_FAIL_IF(!net, CFNET_E_INVALID_ARGUMENT, "network_evaluate: network is NULL");
    CF_NET_SCOPE(net);
    CF_FAIL_IF(batch < 0, CFNET_E_INVALID_ARGUMENT, "network_evaluate: batch %lld is negative",
               (long long)batch);
    int64_t k;
    CF_CHECK(check_batch_labels(net, "network_evaluate", images, labels, n, &k));
    if (batch == 0) batch = 100;
    if (batch > n) batch = n;
    int upto = cf_network_logits_end(net);
    float *logits = cf_malloc((size_t)(batch * k) * sizeof(float));
    CF_FAIL_IF(!logits, CFNET_E_OUT_OF_MEMORY, "network_evaluate: out of memory");
    double sum_loss = 0;
    int64_t correct = 0;
    cfnet_status st = CFNET_OK;
    for (int64_t s0 = 0; s0 < n && st == CFNET_OK; s0 += batch) {
        int64_t nb = n - s0 < batch ? n - s0 : batch;
        st = cf_network_infer_into(net, upto, images->data + s0 * net->in_size, nb, logits);
        if (st != CFNET_OK) break;
        int64_t lshape[2] = {nb, k};
        cfnet_tensor lt = view(logits, 2, lshape);
        float l;
        st = cfnet_softmax_cross_entropy(&lt, labels + s0, nb, &l, NULL);
        sum_loss += (double)l * (double)nb;
        for (int64_t i = 0; i < nb; i++) {
            const float *z = logits + i * k;
            int64_t best = 0;
            for (int64_t j = 1; j < k; j++)
                if (z[j] > z[best]) best = j;
            correct += best == labels[s0 + i];
        }
    }
    cf_free(logits);
    CF_CHECK(st);
    if (loss) *loss = (float)(sum_loss / (double)n);
    if (accuracy) *accuracy = (float)((double)correct / (double)n);
    return CFNET_OK;
}

/* ---- invariance check ---- */

CFNET_API cfnet_status cfnet_network_invariance(const cfnet_network *net, const cfnet_tensor *x,
                                                const double *angles, int n_angles,
                                                double *max_rel_change)
{
    static const double quarter[3] = {90.0, 180.0, 270.0};
    CF_FAIL_IF(!net || !x || !max_rel_change, CFNET_E_INVALID_ARGUMENT,
               "network_invariance: NULL argument");
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
    int64_t n = x->shape[0], osz = net->nlayers ? net->layers[net->nlayers - 1]->out_size
                                                 : net->in_size;
    float *ref = cf_malloc((size_t)(n * osz) * sizeof(float));
    float *got = cf_malloc((size_t)(n * osz) * sizeof(float));
    float *xr = cf_malloc((size_t)(n * net->in_size) * sizeof(float));
    cfnet_status st = CFNET_OK;
    if (!ref || !got || !xr)
        st = cf_error(CFNET_E_OUT_OF_MEMORY, "network_invariance: out of memory");
    if (st == CFNET_OK) st = cf_network_infer_into(net, net->nlayers, x->data, n, ref);
    double scale = 0, worst = 0;
    if (st == CFNET_OK)
        for (int64_t i = 0; i < n * osz; i++) scale = fmax(scale, fabs((double)ref[i]));
    for (int a = 0; a < n_angles && st == CFNET_OK; a++) {
        cfnet_tensor tr = view(xr, 4, x->shape);
        st = cfnet_image_rotate(x, &tr, angles[a]);
        if (st == CFNET_OK) st = cf_network_infer_into(net, net->nlayers, xr, n, got);
        if (st != CFNET_OK) break;
        for (int64_t i = 0; i < n * osz; i++) {
            double d = fabs((double)got[i] - (double)ref[i]);
            if (!(d <= worst)) worst = d; /* NaN propagates */
        }
    }
    cf_free(ref);
    cf_free(got);
    cf_free(xr);
    CF_CHECK(st);
    *max_rel_change = scale > 0 ? worst / scale : worst;
    return CFNET_OK;
}
