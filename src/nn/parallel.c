/* Data-parallel training: the batch position, the sum hook, and what a train step does with
 * them (the contract is in the public header, section "Data-parallel training"). */
#include "network.h"

#include <string.h>

/* Key tags: augmentation and each layer's per-sample draws use distinct keys. */
#define AUG_KEY_TAG 0x6175676d656e7431ull   /* "augment1" */
#define LAYER_KEY_TAG 0x6c617965726b6579ull /* "layerkey" */

CFNET_API cfnet_status cfnet_network_set_sum_hook(cfnet_network *net, cfnet_sum_fn fn,
                                                  void *user)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_FAIL_IF(!net, CFNET_E_INVALID_ARGUMENT, "network_set_sum_hook: network is NULL");
    CF_NET_GUARD(net, true, "network_set_sum_hook");
    net->sum_fn = fn;
    net->sum_user = fn ? user : NULL;
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_set_batch_position(cfnet_network *net, int64_t offset,
                                                        int64_t global_n)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_FAIL_IF(!net, CFNET_E_INVALID_ARGUMENT, "network_set_batch_position: network is NULL");
    CF_NET_GUARD(net, true, "network_set_batch_position");
    CF_FAIL_IF(offset < 0 || global_n < 0, CFNET_E_INVALID_ARGUMENT,
               "network_set_batch_position: offset %lld and global batch %lld must not be "
               "negative",
               (long long)offset, (long long)global_n);
    CF_FAIL_IF(global_n == 0 && offset != 0, CFNET_E_INVALID_ARGUMENT,
               "network_set_batch_position: offset %lld without a global batch",
               (long long)offset);
    CF_FAIL_IF(global_n > 0 && offset >= global_n, CFNET_E_INVALID_ARGUMENT,
               "network_set_batch_position: offset %lld is outside a global batch of %lld",
               (long long)offset, (long long)global_n);
    net->batch_offset = offset;
    net->batch_global = global_n;
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_gradients(const cfnet_network *net, float *out,
                                               int64_t count)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_FAIL_IF(!net || !out, CFNET_E_INVALID_ARGUMENT, "network_gradients: NULL argument");
    CF_NET_GUARD(net, false, "network_gradients");
    int64_t total = cfnet_network_param_count(net);
    CF_FAIL_IF(count != total, CFNET_E_SHAPE_MISMATCH,
               "network_gradients: count is %lld, the network has %lld parameters",
               (long long)count, (long long)total);
    for (int i = 0; i < net->nlayers; i++) {
        const cfnet_layer *l = net->layers[i];
        for (int p = 0; p < l->nparam; p++) {
            memcpy(out, l->grad[p]->data, (size_t)l->grad[p]->numel * sizeof(float));
            out += l->grad[p]->numel;
        }
    }
    return CFNET_OK;
}

uint64_t cf_parallel_aug_seed(const cfnet_network *net, const cf_batch_ctx *ctx, int64_t i)
{
    return cf_sample_seed(net->seed ^ AUG_KEY_TAG, ctx->step, ctx->offset + i);
}

cfnet_status cf_parallel_begin(cfnet_network *net, int64_t n, cf_batch_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    if (net->batch_global > 0) {
        CF_FAIL_IF(net->batch_offset + n > net->batch_global, CFNET_E_INVALID_ARGUMENT,
                   "network_train_step: %lld samples from offset %lld do not fit in the "
                   "global batch of %lld",
                   (long long)n, (long long)net->batch_offset, (long long)net->batch_global);
        CF_FAIL_IF(n < net->batch_global && !net->sum_fn, CFNET_E_STATE,
                   "network_train_step: the batch is samples [%lld, %lld) of a global batch of "
                   "%lld, but no sum hook is set",
                   (long long)net->batch_offset, (long long)(net->batch_offset + n),
                   (long long)net->batch_global);
    }
    ctx->keyed = net->batch_global > 0;
    ctx->step = net->step;
    ctx->offset = net->batch_offset;
    ctx->global_n = ctx->keyed ? net->batch_global : n;
    ctx->sum = net->sum_fn;
    ctx->sum_user = net->sum_user;
    if (net->sum_fn) {
        int64_t want = cfnet_network_param_count(net) + 1;
        if (net->sum_buf_n != want) {
            float *b = cf_alloc(&net->alloc, (size_t)want * sizeof(float));
            CF_FAIL_IF(!b, CFNET_E_OUT_OF_MEMORY, "network_train_step: out of memory");
            cf_free(net->sum_buf);
            net->sum_buf = b;
            net->sum_buf_n = want;
        }
    }
    for (int i = 0; i < net->nlayers; i++) {
        net->layers[i]->batch = ctx;
        net->layers[i]->batch_key = cf_network_layer_seed(net, i) ^ LAYER_KEY_TAG;
    }
    return CFNET_OK;
}

void cf_parallel_end(cfnet_network *net)
{
    for (int i = 0; i < net->nlayers; i++) net->layers[i]->batch = NULL;
}

cfnet_status cf_parallel_sum_gradients(cfnet_network *net, float *loss_share)
{
    float *b = net->sum_buf;
    for (int i = 0; i < net->nlayers; i++) {
        const cfnet_layer *l = net->layers[i];
        for (int p = 0; p < l->nparam; p++) {
            memcpy(b, l->grad[p]->data, (size_t)l->grad[p]->numel * sizeof(float));
            b += l->grad[p]->numel;
        }
    }
    *b = *loss_share;
    cfnet_status st = net->sum_fn(net->sum_user, CFNET_SUM_GRADIENTS, net->sum_buf,
                                  net->sum_buf_n);
    CF_FAIL_IF(st != CFNET_OK, st < 0 ? st : CFNET_E_STATE,
               "network_train_step: the sum hook failed on the gradients (%s); nothing was "
               "updated",
               cfnet_status_string(st));
    b = net->sum_buf;
    for (int i = 0; i < net->nlayers; i++) {
        cfnet_layer *l = net->layers[i];
        for (int p = 0; p < l->nparam; p++) {
            memcpy(l->grad[p]->data, b, (size_t)l->grad[p]->numel * sizeof(float));
            b += l->grad[p]->numel;
        }
    }
    *loss_share = *b;
    return CFNET_OK;
}
