#include "models.h"

#include "exutil.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[EX_MODEL_COUNT] = {"CFNet", "CNet",  "G-CNN",
                                                  "G-CNN+DFT", "CNN", "G-CNN-p4m"};

const char *ex_model_name(ex_model m)
{
    return (unsigned)m < EX_MODEL_COUNT ? names[m] : "?";
}

static int same_name(const char *a, const char *b)
{
    for (;; a++, b++) {
        while (*a == '-' || *a == '+' || *a == '_') a++;
        while (*b == '-' || *b == '+' || *b == '_') b++;
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
        if (!*a) return 1;
    }
}

int ex_model_parse(const char *name)
{
    for (int m = 0; m < EX_MODEL_COUNT; m++)
        if (same_name(name, names[m])) return m;
    return -1;
}

int ex_model_list(const char *prog, const char *list, int out[EX_MODEL_COUNT])
{
    /* a copy of any length for strtok (a fixed buffer cut a long list without a word) */
    char *copy = ex_malloc(strlen(list) + 1);
    memcpy(copy, list, strlen(list) + 1);
    int n = 0;
    for (char *t = strtok(copy, ","); t; t = strtok(NULL, ",")) {
        int m = ex_model_parse(t);
        if (m < 0)
            ex_bad_arg("%s: unknown model '%s' (cfnet, cnet, gcnn, gcnn-dft, cnn, gcnn-p4m)", prog,
                       t);
        /* each model once: a model named twice would train twice under one name (and the list
         * holds each of the EX_MODEL_COUNT models at most once) */
        for (int k = 0; k < n; k++)
            if (out[k] == m) ex_bad_arg("%s: --models names '%s' twice", prog, t);
        out[n++] = m;
    }
    free(copy);
    if (n == 0) ex_bad_arg("%s: --models '%s' names no model", prog, list);
    return n;
}

cfnet_network *ex_build(ex_model m, const ex_arch *a, int channels, int size, int classes,
                        uint64_t seed)
{
    cfnet_network *net = NULL;
    EX_CHECK(cfnet_network_create(channels, size, size, seed, &net));
    int p4 = m == EX_GCNN || m == EX_GCNN_DFT;
    for (int i = 0; i < a->layers; i++) {
        int w = a->width[i];
        switch (m) {
        case EX_CFNET:
        case EX_CNET:
            EX_APPEND(net, cfnet_layer_conic_conv_create(w, a->kernel, a->R[i] > 0 ? a->R[i] : 1,
                                                         a->padding, a->interp, &l_));
            break;
        case EX_GCNN:
        case EX_GCNN_DFT:
            if (i == 0) EX_APPEND(net, cfnet_layer_p4_lift_create(w, a->kernel, a->padding, &l_));
            else EX_APPEND(net, cfnet_layer_p4_conv_create(w, a->kernel, a->padding, &l_));
            break;
        case EX_GCNN_P4M:
            if (i == 0) EX_APPEND(net, cfnet_layer_p4m_lift_create(w, a->kernel, a->padding, &l_));
            else EX_APPEND(net, cfnet_layer_p4m_conv_create(w, a->kernel, a->padding, &l_));
            break;
        default:
            EX_APPEND(net, cfnet_layer_conv2d_create(w, a->kernel, 1, a->padding, &l_));
            break;
        }
        if (a->batch_norm) EX_APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
        EX_APPEND(net, cfnet_layer_relu_create(&l_));
        if (a->pool_after[i]) EX_APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
        if (a->dropout > 0) EX_APPEND(net, cfnet_layer_dropout_create(a->dropout, &l_));
    }
    if (m == EX_CFNET || m == EX_GCNN_DFT) {
        EX_APPEND(net, cfnet_layer_dft_projection_create(a->dft_filters, p4 ? 1 : a->dft_R,
                                                         a->dft_interp, &l_));
        if (a->batch_norm && !a->dft_head_original)
            EX_APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
        EX_APPEND(net, cfnet_layer_relu_create(&l_));
        EX_APPEND(net, cfnet_layer_dft_magnitude_create(&l_));
        /* The original divides |DFT| by nodes x rotations before its batch norm; a batch norm
         * makes that constant factor irrelevant, so it is left out. */
        if (a->batch_norm && a->dft_head_original)
            EX_APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    } else {
        if (m == EX_GCNN || m == EX_GCNN_P4M)
            EX_APPEND(net, cfnet_layer_group_pool_create(CFNET_POOL_MAX, &l_));
        if (a->final_pool > 1)
            EX_APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MEAN, a->final_pool, a->final_pool,
                                                   &l_));
    }
    EX_APPEND(net, cfnet_layer_dense_create(classes, &l_));
    if (a->softmax) EX_APPEND(net, cfnet_layer_softmax_create(&l_));
    return net;
}

cfnet_network *ex_preset(ex_model m, int channels, int size, int classes, int width,
                         uint64_t seed)
{
    /* ex_model and cfnet_family list the families in the same order */
    cfnet_network *net = NULL;
    EX_CHECK(cfnet_network_create_classifier((cfnet_family)(m + 1), channels, size, classes,
                                             width, seed, &net));
    return net;
}

void ex_init_normal(cfnet_network *net, double sd, uint64_t seed)
{
    EX_CHECK(cfnet_network_init_normal(net, sd, seed));
}

void ex_set_recipe(cfnet_network *net, double lr, double weight_decay, int decay_steps,
                   int jitter, int threads)
{
    EX_CHECK(cfnet_network_set_option(net, CFNET_OPTION_OPTIMIZER, CFNET_OPTIMIZER_ADAM));
    EX_CHECK(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, lr));
    EX_CHECK(cfnet_network_set_option(net, CFNET_OPTION_WEIGHT_DECAY, weight_decay));
    EX_CHECK(cfnet_network_set_option(net, CFNET_OPTION_LR_DECAY_RATE, 0.95));
    EX_CHECK(cfnet_network_set_option(net, CFNET_OPTION_LR_DECAY_STEPS, decay_steps));
    EX_CHECK(cfnet_network_set_option(net, CFNET_OPTION_AUG_ROTATION, CFNET_AUG_ROTATION_ANY));
    EX_CHECK(cfnet_network_set_option(net, CFNET_OPTION_AUG_JITTER, jitter));
    EX_CHECK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, threads));
}
