/* Softmax cross-entropy over integer labels. */
#include "nn/layer.h"

#include <math.h>

/* loss = mean_i [ logsumexp(z_i) - z_i[label_i] ];  d loss / d z_i = (softmax(z_i) - e_label) / N */
CFNET_API cfnet_status cfnet_softmax_cross_entropy(const cfnet_tensor *logits,
                                                   const int32_t *labels, int64_t n_labels,
                                                   float *loss, cfnet_tensor *grad)
{
    CF_CHECK(cf_handle_check(logits, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_CHECK(cf_handle_check(grad, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_FAIL_IF(!logits || !labels || !loss, CFNET_E_INVALID_ARGUMENT,
               "softmax_cross_entropy: NULL argument");
    CF_CHECK(cf_tensor_writable("softmax_cross_entropy", "grad tensor", grad));
    CF_FAIL_IF(logits->ndim < 2, CFNET_E_SHAPE_MISMATCH,
               "softmax_cross_entropy: logits need a batch axis and a class axis");
    int64_t n = logits->shape[0], k = logits->numel / n;
    CF_FAIL_IF(n_labels != n, CFNET_E_SHAPE_MISMATCH,
               "softmax_cross_entropy: %lld labels for a batch of %lld", (long long)n_labels,
               (long long)n);
    CF_FAIL_IF(grad && (grad->numel != logits->numel || grad->shape[0] != n),
               CFNET_E_SHAPE_MISMATCH, "softmax_cross_entropy: grad shape differs from logits");
    for (int64_t i = 0; i < n; i++) {
        CF_FAIL_IF(labels[i] < 0 || labels[i] >= k, CFNET_E_INVALID_ARGUMENT,
                   "softmax_cross_entropy: label %lld is %d, must be in [0, %lld)",
                   (long long)i, (int)labels[i], (long long)k);
        for (int64_t j = 0; j < k; j++)
            CF_FAIL_IF(!isfinite(logits->data[i * k + j]), CFNET_E_INVALID_ARGUMENT,
                       "softmax_cross_entropy: sample %lld has a non-finite logit",
                       (long long)i);
    }
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits->data + i * k;
        float *g = grad ? grad->data + i * k : NULL;
        total += cf_softmax(z, g, k) - z[labels[i]]; /* g = softmax(z) */
        if (g) {
            g[labels[i]] -= 1.0f;
            for (int64_t j = 0; j < k; j++) g[j] = (float)((double)g[j] / (double)n);
        }
    }
    *loss = (float)(total / (double)n);
    return CFNET_OK;
}
