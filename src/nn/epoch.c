/* One training epoch for host programs: shuffling from the network's generator (or the host's
 * order), batches with a smaller last one, a progress callback that may cancel. */
#include "network.h"

#include <stdio.h>
#include <string.h>

void cf_network_draw_order(cfnet_network *net, int64_t n, int64_t *order)
{
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)cf_rng_below(&net->rng, (uint64_t)i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

#define WHAT "network_train_epoch"

/* Everything a caller can get wrong, checked before the first step changes anything. */
static cfnet_status check_epoch(const cfnet_network *net, const cfnet_tensor *images,
                                const int32_t *labels, int64_t batch, const int64_t *order,
                                int64_t count, int64_t *k_out)
{
    CF_FAIL_IF(!images || !labels, CFNET_E_INVALID_ARGUMENT, WHAT ": NULL argument");
    CF_FAIL_IF(batch < 1, CFNET_E_INVALID_ARGUMENT, WHAT ": batch %lld, must be positive",
               (long long)batch);
    int upto = cf_network_logits_end(net);
    CF_FAIL_IF(upto < 1, CFNET_E_STATE, WHAT ": the network has no layers to train");
    int64_t n = 0;
    CF_CHECK(cf_check_batch(WHAT, "image batch", images, 3, net->in_shape, &n));
    int64_t k = net->layers[upto - 1]->out_size;
    for (int64_t i = 0; i < n; i++)
        CF_FAIL_IF(labels[i] < 0 || labels[i] >= k, CFNET_E_INVALID_ARGUMENT,
                   WHAT ": label %lld is %d, must be in [0, %lld)", (long long)i, (int)labels[i],
                   (long long)k);
    if (order) {
        CF_FAIL_IF(count < 1, CFNET_E_INVALID_ARGUMENT,
                   WHAT ": count %lld, must be positive with an order", (long long)count);
        for (int64_t i = 0; i < count; i++)
            CF_FAIL_IF(order[i] < 0 || order[i] >= n, CFNET_E_INVALID_ARGUMENT,
                       WHAT ": order[%lld] is %lld, must be in [0, %lld)", (long long)i,
                       (long long)order[i], (long long)n);
    }
    CF_CHECK(cf_check_finite_images(WHAT, images->data, n, net->in_size));
    *k_out = k;
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_train_epoch(cfnet_network *net, const cfnet_tensor *images,
                                                 const int32_t *labels, int64_t batch,
                                                 const int64_t *order, int64_t count,
                                                 cfnet_progress_fn progress, void *user,
                                                 double *mean_loss, double *accuracy)
{
    CF_NET_ENTER(net, true, WHAT, images, NULL);
    int64_t k = 0;
    CF_CHECK(check_epoch(net, images, labels, batch, order, count, &k));
    if (!order) count = images->shape[0];
    int64_t bmax = batch < count ? batch : count, steps = count / batch + (count % batch != 0);

    int64_t *idx = cf_alloc(&net->alloc, (size_t)count * sizeof *idx);
    int32_t *lab = cf_alloc(&net->alloc, (size_t)bmax * sizeof *lab);
    cfnet_status st = CFNET_OK;
    if (!idx || !lab) st = cf_error(CFNET_E_OUT_OF_MEMORY, WHAT ": out of memory");
    if (st == CFNET_OK) st = cf_network_ensure_train_buffers(net, bmax);
    if (st == CFNET_OK) st = cf_network_ensure_slots(net);
    if (st != CFNET_OK) {
        cf_free(idx);
        cf_free(lab);
        return st;
    }
    if (order) memcpy(idx, order, (size_t)count * sizeof *idx);
    else cf_network_draw_order(net, count, idx);

    double sum_loss = 0;
    int64_t correct = 0, seen = 0, step = 0;
    bool cancelled = false;
    size_t sample_bytes = (size_t)net->in_size * sizeof(float);
    for (int64_t s0 = 0; s0 < count && st == CFNET_OK && !cancelled; s0 += batch) {
        int64_t nb = count - s0 < batch ? count - s0 : batch;
        for (int64_t i = 0; i < nb; i++) {
            int64_t j = idx[s0 + i];
            memcpy(net->input + i * net->in_size, images->data + j * net->in_size, sample_bytes);
            lab[i] = labels[j];
        }
        float l = 0;
        int64_t c = 0;
        st = cf_network_train_input(net, lab, nb, k, &l, &c);
        if (st != CFNET_OK) { /* the host learns which step failed and what is kept */
            char msg[512];
            snprintf(msg, sizeof msg, "%s", cfnet_last_error());
            cf_error(st, WHAT ": step %lld of %lld failed (%lld earlier step%s kept): %s",
                     (long long)(step + 1), (long long)steps, (long long)step,
                     step == 1 ? " is" : "s are", msg);
            break;
        }
        step++;
        seen += nb;
        correct += c;
        sum_loss += (double)l * (double)nb;
        if (progress &&
            progress(user, step, steps, (double)l, (double)correct / (double)seen) != 0)
            cancelled = true;
    }
    cf_free(idx);
    cf_free(lab);
    if (st == CFNET_OK && seen > 0) {
        if (mean_loss) *mean_loss = sum_loss / (double)seen;
        if (accuracy) *accuracy = (double)correct / (double)seen;
    }
    CF_CHECK(st);
    if (cancelled)
        return cf_error(CFNET_E_CANCELLED,
                        WHAT ": cancelled by the progress callback after step %lld of %lld",
                        (long long)step, (long long)steps);
    return CFNET_OK;
}
