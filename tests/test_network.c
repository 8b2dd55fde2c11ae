/* Networks: composition and shape errors, gradients end to end, optimisers, learning-rate
 * schedule, training on a small rotation-invariant problem, invariance check, determinism. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define APPEND(net, expr)                   \
    do {                                    \
        cfnet_layer *l_ = NULL;             \
        CF_ASSERT_OK(expr);                 \
        CF_ASSERT_OK(cfnet_network_append((net), l_)); \
    } while (0)

/* A small CFNet: conic layers with equivariant pooling, the DFT transition, a dense layer. */
static cfnet_network *make_cfnet(int S, int classes, uint64_t seed)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S, S, seed, &net));
    APPEND(net, cfnet_layer_conic_conv_create(6, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l_));
    APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
    APPEND(net, cfnet_layer_conic_conv_create(8, 3, 1, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
    APPEND(net, cfnet_layer_dft_projection_create(8, 1, CFNET_INTERP_NEAREST, &l_));
    APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_dft_magnitude_create(&l_));
    APPEND(net, cfnet_layer_dense_create(classes, &l_));
    return net;
}

/* G-CNN + DFT: p4 layers, group batch norm, the DFT projection from a p4 map. */
static cfnet_network *make_gcnn_dft(int S, int classes, uint64_t seed)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S, S, seed, &net));
    APPEND(net, cfnet_layer_p4_lift_create(3, 3, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
    APPEND(net, cfnet_layer_p4_conv_create(4, 3, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_dft_projection_create(6, 1, CFNET_INTERP_NEAREST, &l_));
    APPEND(net, cfnet_layer_dft_magnitude_create(&l_));
    APPEND(net, cfnet_layer_dense_create(classes, &l_));
    return net;
}

static cfnet_network *make_cnn(int S, int classes, uint64_t seed)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S, S, seed, &net));
    APPEND(net, cfnet_layer_conv2d_create(6, 3, 1, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 2, 2, &l_));
    APPEND(net, cfnet_layer_conv2d_create(8, 3, 1, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_dense_create(classes, &l_));
    return net;
}

/* A rotation-invariant problem: class 0 is a ring, class 1 a bar through the centre, class 2
 * an off-centre blob; every image has a random orientation, small shift and noise. */
static void make_dataset(int n, int S, tu_rng *r, float *x, int32_t *y)
{
    double c = (S - 1) / 2.0;
    for (int s = 0; s < n; s++) {
        int cls = s % 3;
        double th = 2 * 3.14159265358979 * tu_uniform(r);
        double dx = tu_uniform(r) * 2 - 1, dy = tu_uniform(r) * 2 - 1;
        for (int i = 0; i < S; i++)
            for (int j = 0; j < S; j++) {
                double u = j - c - dx, v = c - i - dy, val = 0;
                double ru = u * cos(th) + v * sin(th), rv = -u * sin(th) + v * cos(th);
                if (cls == 0) val = exp(-pow(sqrt(u * u + v * v) - 4.0, 2) / 1.5);
                if (cls == 1) val = exp(-rv * rv / 1.5) * (fabs(ru) < 5 ? 1 : 0);
                if (cls == 2) val = exp(-((ru - 3.5) * (ru - 3.5) + rv * rv) / 3.0);
                x[(size_t)s * S * S + i * S + j] = (float)(val + 0.1 * tu_normal(r));
            }
        y[s] = cls;
    }
}

static void append_reports_layer_index_kind_and_shapes(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 12, 12, 1, &net));
    APPEND(net, cfnet_layer_conv2d_create(4, 3, 1, CFNET_PADDING_VALID, &l_));
    APPEND(net, cfnet_layer_dense_create(5, &l_));
    cfnet_layer *bad = NULL;
    CF_ASSERT_OK(cfnet_layer_conic_conv_create(4, 3, 1, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST,
                                               &bad));
    CF_ASSERT_STATUS(cfnet_network_append(net, bad), CFNET_E_SHAPE_MISMATCH);
    const char *msg = cfnet_last_error();
    if (!strstr(msg, "layer 2 (conic_conv)") || !strstr(msg, "input 5"))
        fail_msg("message does not name the layer and shape: %s", msg);
    assert_int_equal(cfnet_network_layer_count(net), 2); /* unchanged */
    /* A layer that already belongs to a network is refused and not freed. */
    cfnet_layer *owned = cfnet_network_layer(net, 0);
    CF_ASSERT_STATUS(cfnet_network_append(net, owned), CFNET_E_STATE);
    assert_int_equal(cfnet_layer_kind_of(owned), CFNET_LAYER_CONV2D);
    /* ... and the network alone sets it up. */
    int64_t other[] = {2, 5, 5};
    CF_ASSERT_STATUS(cfnet_layer_setup(owned, 3, other, 0), CFNET_E_STATE);
    int nd;
    int64_t s[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_network_output_shape(net, &nd, s));
    assert_int_equal(nd, 1);
    assert_int_equal(s[0], 5);
    assert_int_equal(cfnet_network_param_count(net), 4 * 9 + 4 + 5 * 4 * 10 * 10 + 5);
    CF_ASSERT_STATUS(cfnet_network_append(NULL, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_create(0, 3, 3, 0, &net), CFNET_E_INVALID_ARGUMENT);
    cfnet_network_free(net);
    cfnet_network_free(NULL);
}

static void summary_lists_every_layer(void **state)
{
    (void)state;
    cfnet_network *net = make_cfnet(16, 3, 1);
    char buf[4096];
    size_t need = 0;
    CF_ASSERT_OK(cfnet_network_summary(net, buf, sizeof buf, &need));
    assert_int_equal(need, strlen(buf));
    int lines = 0;
    for (const char *p = buf; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, cfnet_network_layer_count(net) + 2);
    assert_non_null(strstr(buf, "conic_conv"));
    assert_non_null(strstr(buf, "dft_magnitude"));
    char total[64];
    snprintf(total, sizeof total, "total parameters %lld", (long long)cfnet_network_param_count(net));
    assert_non_null(strstr(buf, total));
    char small[16];
    CF_ASSERT_STATUS(cfnet_network_summary(net, small, sizeof small, &need), CFNET_E_LIMIT);
    assert_int_equal(strlen(small), sizeof small - 1);
    /* One byte: room for the NUL only, which is still written. */
    small[0] = 'x';
    CF_ASSERT_STATUS(cfnet_network_summary(net, small, 1, &need), CFNET_E_LIMIT);
    assert_int_equal(small[0], '\0');
    assert_true(cfnet_network_memory_usage(net) >
                (size_t)cfnet_network_param_count(net) * 2 * sizeof(float));
    cfnet_network_free(net);
}

/* d loss / d parameter through the whole network against central differences of the loss
 * (inference-free network: no batch norm or dropout). Tolerance 2e-2: ReLU and max pooling
 * kinks are crossed only rarely with h = 1e-3. */
static void network_backward_matches_finite_differences(void **state)
{
    (void)state;
    cfnet_network *net = make_cnn(8, 3, 5);
    tu_rng r = {3};
    int64_t xs[] = {4, 1, 8, 8}, os[] = {4, 3};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *out = tu_tensor(2, os, NULL), *d = tu_tensor(2, os, NULL);
    int32_t lab[4] = {0, 1, 2, 1};
    float loss;
    CF_ASSERT_OK(cfnet_network_zero_grad(net));
    CF_ASSERT_OK(cfnet_network_forward(net, x, out, CFNET_MODE_TRAINING));
    CF_ASSERT_OK(cfnet_softmax_cross_entropy(out, lab, 4, &loss, d));
    CF_ASSERT_OK(cfnet_network_backward(net, d));
    int bad = 0, checked = 0;
    for (int li = 0; li < cfnet_network_layer_count(net); li++) {
        cfnet_layer *l = cfnet_network_layer(net, li);
        for (int p = 0; p < cfnet_layer_param_count(l); p++) {
            float *w = cfnet_tensor_data(cfnet_layer_param(l, p));
            float *g = cfnet_tensor_data(cfnet_layer_grad(l, p));
            int64_t n = cfnet_tensor_numel(cfnet_layer_param(l, p));
            for (int t = 0; t < 6; t++) {
                int64_t i = (int64_t)(tu_uniform(&r) * (double)n);
                float keep = w[i];
                float lp, lm;
                w[i] = keep + 1e-3f;
                CF_ASSERT_OK(cfnet_network_infer(net, x, out));
                CF_ASSERT_OK(cfnet_softmax_cross_entropy(out, lab, 4, &lp, NULL));
                w[i] = keep - 1e-3f;
                CF_ASSERT_OK(cfnet_network_infer(net, x, out));
                CF_ASSERT_OK(cfnet_softmax_cross_entropy(out, lab, 4, &lm, NULL));
                w[i] = keep;
                double num = ((double)lp - lm) / 2e-3;
                double err = fabs(num - g[i]) / fmax(fmax(fabs(num), fabs(g[i])), 1e-3);
                /* The float losses carry rounding of a few ulp each, which the difference
                 * quotient divides by 2h: below that, a relative error means nothing. */
                double noise = 4 * FLT_EPSILON * fmax(fabs(lp), fabs(lm)) / 2e-3;
                bad += err > 2e-2 && fabs(num - g[i]) > noise;
                checked++;
            }
        }
    }
    assert_true(checked >= 24);
    assert_true(bad <= 1);
    cfnet_tensor_free(x);
    cfnet_tensor_free(out);
    cfnet_tensor_free(d);
    cfnet_network_free(net);
}

/* A one-layer network with known gradient: dense 2 -> 2 from zero weights. */
static cfnet_network *tiny_dense(void)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 1, 2, 9, &net));
    APPEND(net, cfnet_layer_dense_create(2, &l_));
    cfnet_layer *l = cfnet_network_layer(net, 0);
    CF_ASSERT_OK(cfnet_tensor_zero(cfnet_layer_param(l, 0)));
    CF_ASSERT_OK(cfnet_tensor_zero(cfnet_layer_param(l, 1)));
    return net;
}

/* With zero weights the logits are 0, softmax is (1/2, 1/2); for x = (1, 2), label 0 the
 * gradient of W is [[-1/2, -1], [1/2, 1]] and of b is (-1/2, 1/2). */
static void sgd_and_adam_steps_follow_their_formulas(void **state)
{
    (void)state;
    int64_t xs[] = {1, 1, 1, 2};
    cfnet_tensor *x = tu_tensor(4, xs, NULL);
    float xv[2] = {1, 2};
    CF_ASSERT_OK(cfnet_tensor_copy_in(x, xv, 2));
    int32_t lab = 0;
    const float gw[4] = {-0.5f, -1.0f, 0.5f, 1.0f};

    cfnet_network *net = tiny_dense();
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_OPTIMIZER, CFNET_OPTIMIZER_SGD));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, 0.1));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_MOMENTUM, 0.5));
    float loss;
    CF_ASSERT_OK(cfnet_network_train_step(net, x, &lab, 1, &loss));
    assert_float_equal(loss, log(2.0), 1e-6);
    const float *w = cfnet_tensor_data(cfnet_layer_param(cfnet_network_layer(net, 0), 0));
    for (int i = 0; i < 4; i++) assert_float_equal(w[i], -0.1 * gw[i], 1e-6);
    assert_int_equal(cfnet_network_step_count(net), 1);
    cfnet_network_free(net);

    /* Adam's first step moves every weight by lr * sign(g) (bias-corrected m / sqrt(v)). */
    net = tiny_dense();
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, 0.01));
    CF_ASSERT_OK(cfnet_network_train_step(net, x, &lab, 1, &loss));
    w = cfnet_tensor_data(cfnet_layer_param(cfnet_network_layer(net, 0), 0));
    for (int i = 0; i < 4; i++) assert_float_equal(w[i], gw[i] > 0 ? -0.01 : 0.01, 1e-6);
    cfnet_network_free(net);
    cfnet_tensor_free(x);
}

/* Adam's update in float, bit for bit, for ordinary settings (the defaults, and other betas and
 * epsilon): with a zero input the weights' gradient is weight decay alone, g = wd w, so the
 * update can be followed here with the float formula (weights as small as the steps, so that
 * a change of one bit in m or v shows in them), m = b1 m + (1 - b1) g,
 * v = b2 v + (1 - b2) g^2, w -= (lr / bc1) m / (sqrt(v / bc2) + eps). A change of the
 * library's arithmetic for such settings (only the limits of float may change it) fails here. */
static void adam_update_is_the_float_formula_bit_for_bit(void **state)
{
    (void)state;
    static const double cfg[2][4] = {{0.9, 0.999, 1e-8, 0.01}, {0.8, 0.99, 1e-6, 0.2}};
    for (int c = 0; c < 2; c++) {
        cfnet_network *net = tiny_dense();
        cfnet_layer *l = cfnet_network_layer(net, 0);
        float w[4] = {3e-3f, -7e-3f, 1.1e-2f, 2.5e-2f}, m[4] = {0}, v[4] = {0};
        CF_ASSERT_OK(cfnet_tensor_copy_in(cfnet_layer_param(l, 0), w, 4));
        const double lr = 0.01, wd = 0.05;
        if (c == 1) {
            CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_BETA1, cfg[c][0]));
            CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_BETA2, cfg[c][1]));
            CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_EPSILON, cfg[c][2]));
        }
        CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, lr));
        CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_WEIGHT_DECAY, wd));
        CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LR_DECAY_STEPS, 3));
        CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LR_DECAY_RATE, 0.5));
        int64_t xs[] = {1, 1, 1, 2};
        cfnet_tensor *x = tu_tensor(4, xs, NULL); /* zero input: no data gradient on W */
        int32_t lab = 1;
        const float b1 = (float)cfg[c][0], b2 = (float)cfg[c][1], eps = (float)cfg[c][2],
                    fwd = (float)wd;
        for (int t = 1; t <= 7; t++) {
            CF_ASSERT_OK(cfnet_network_train_step(net, x, &lab, 1, NULL));
            const double rate = lr * pow(0.5, (double)((t - 1) / 3));
            const float step = (float)(rate / (1.0 - pow(cfg[c][0], t))),
                        rb2 = (float)(1.0 / (1.0 - pow(cfg[c][1], t)));
            for (int i = 0; i < 4; i++) {
                float g = 0.0f + fwd * w[i];
                m[i] = b1 * m[i] + (1.0f - b1) * g;
                v[i] = b2 * v[i] + (1.0f - b2) * g * g;
                w[i] -= step * m[i] / (sqrtf(v[i] * rb2) + eps);
            }
            const float *got = cfnet_tensor_data(cfnet_layer_param(l, 0));
            if (memcmp(got, w, sizeof w) != 0)
                fail_msg("settings %d, step %d: weights %.9g %.9g %.9g %.9g, the float formula "
                         "gives %.9g %.9g %.9g %.9g", c, t, got[0], got[1], got[2], got[3], w[0],
                         w[1], w[2], w[3]);
        }
        cfnet_tensor_free(x);
        cfnet_network_free(net);
    }
}

/* SGD without momentum on a zero gradient with weight decay: w <- w (1 - lr wd) each step,
 * and the learning rate follows lr0 * rate^floor(step / k). */
static void weight_decay_and_learning_rate_schedule(void **state)
{
    (void)state;
    cfnet_network *net = tiny_dense();
    cfnet_layer *l = cfnet_network_layer(net, 0);
    CF_ASSERT_OK(cfnet_tensor_fill(cfnet_layer_param(l, 0), 1.0f));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_OPTIMIZER, CFNET_OPTIMIZER_SGD));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_MOMENTUM, 0.0));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, 0.1));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_WEIGHT_DECAY, 0.5));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LR_DECAY_RATE, 0.5));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LR_DECAY_STEPS, 2));
    int64_t xs[] = {1, 1, 1, 2};
    cfnet_tensor *x = tu_tensor(4, xs, NULL); /* zero input: no data gradient on W */
    int32_t lab = 0;
    double expect = 1.0;
    const double lrs[5] = {0.1, 0.1, 0.05, 0.05, 0.025};
    for (int t = 0; t < 5; t++) {
        CF_ASSERT_OK(cfnet_network_train_step(net, x, &lab, 1, NULL));
        expect *= 1.0 - lrs[t] * 0.5;
        assert_float_equal(cfnet_tensor_data(cfnet_layer_param(l, 0))[0], expect, 1e-6);
    }
    double v;
    CF_ASSERT_OK(cfnet_network_get_option(net, CFNET_OPTION_LR_DECAY_STEPS, &v));
    assert_true(v == 2.0);
    CF_ASSERT_STATUS(cfnet_network_set_option(net, CFNET_OPTION_BETA1, 1.0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, NAN),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_set_option(net, (cfnet_option)99, 1), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_set_option(net, CFNET_OPTION_AUG_JITTER, 5), /* image is 1x2 */
                     CFNET_E_INVALID_ARGUMENT);
    cfnet_tensor_free(x);
    cfnet_network_free(net);
}

/* The CFNet learns the 3-class rotation-invariant problem: the loss falls and held-out accuracy
 * reaches at least 90 % after 150 steps of batch 24 (it typically reaches 100 %). */
static void cfnet_learns_rotation_invariant_problem(void **state)
{
    (void)state;
    const int S = 16, ntr = 240, nte = 90;
    tu_rng r = {2024};
    float *xtr = malloc((size_t)ntr * S * S * sizeof(float)), *xte = malloc((size_t)nte * S * S * sizeof(float));
    int32_t ytr[240], yte[90];
    make_dataset(ntr, S, &r, xtr, ytr);
    make_dataset(nte, S, &r, xte, yte);
    cfnet_network *net = make_cfnet(S, 3, 7);
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, 5e-3));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_AUG_JITTER, 1));
    int64_t bs[] = {24, 1, S, S}, ts[] = {nte, 1, S, S};
    cfnet_tensor *batch = tu_tensor(4, bs, NULL), *test = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap(xte, 4, ts, &test));
    float first = 0, last = 0, l;
    double avg_first = 0, avg_last = 0;
    for (int step = 0; step < 150; step++) {
        int off = (step * 24) % ntr;
        CF_ASSERT_OK(cfnet_tensor_copy_in(batch, xtr + (size_t)off * S * S, 24 * S * S));
        CF_ASSERT_OK(cfnet_network_train_step(net, batch, ytr + off, 24, &l));
        if (step < 10) avg_first += l / 10;
        if (step >= 140) avg_last += l / 10;
        if (step == 0) first = l;
        last = l;
    }
    float acc = 0, tl = 0;
    CF_ASSERT_OK(cfnet_network_evaluate(net, test, yte, nte, 32, &tl, &acc));
    printf("    loss %.3f -> %.3f (first/last 10 steps %.3f -> %.3f), test loss %.3f acc %.3f\n",
           first, last, avg_first, avg_last, tl, acc);
    assert_true(avg_last < 0.5 * avg_first);
    assert_true(acc >= 0.9f);
    int32_t pred[90];
    CF_ASSERT_OK(cfnet_network_predict(net, test, pred, nte));
    int correct = 0;
    for (int i = 0; i < nte; i++) correct += pred[i] == yte[i];
    assert_float_equal((double)correct / nte, acc, 1e-6);
    cfnet_tensor_free(batch);
    cfnet_tensor_free(test);
    cfnet_network_free(net);
    free(xtr);
    free(xte);
}

static void invariance_check_separates_invariant_networks_from_cnn(void **state)
{
    (void)state;
    tu_rng r = {77};
    int64_t xs[] = {3, 1, 16, 16}, xo[] = {3, 1, 15, 15};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *xodd = tu_tensor(4, xo, &r);
    double e;
    cfnet_network *cf = make_cfnet(16, 3, 1);
    CF_ASSERT_OK(cfnet_network_invariance(cf, x, NULL, 0, &e));
    printf("    CFNet 16x16: %.2e\n", e);
    assert_true(e <= 1e-4);
    cfnet_network_free(cf);
    cf = make_cfnet(15, 3, 2);
    CF_ASSERT_OK(cfnet_network_invariance(cf, xodd, NULL, 0, &e));
    printf("    CFNet 15x15: %.2e\n", e);
    assert_true(e <= 1e-4);
    cfnet_network_free(cf);
    cfnet_network *g = make_gcnn_dft(16, 3, 3);
    CF_ASSERT_OK(cfnet_network_invariance(g, x, NULL, 0, &e));
    printf("    G-CNN+DFT 16x16: %.2e\n", e);
    assert_true(e <= 1e-4);
    cfnet_network_free(g);
    cfnet_network *c = make_cnn(16, 3, 4);
    CF_ASSERT_OK(cfnet_network_invariance(c, x, NULL, 0, &e));
    printf("    CNN 16x16: %.2e\n", e);
    assert_true(e > 1e-2);
    double angles[2] = {45.0, 90.0};
    CF_ASSERT_OK(cfnet_network_invariance(c, x, angles, 2, &e));
    assert_true(e > 1e-2);
    CF_ASSERT_STATUS(cfnet_network_invariance(c, xodd, NULL, 0, &e), CFNET_E_SHAPE_MISMATCH);
    cfnet_network_free(c);
    cfnet_tensor_free(x);
    cfnet_tensor_free(xodd);
}

/* Same seed, same calls: identical parameters after training with dropout and augmentation. */
static void same_seed_trains_identically(void **state)
{
    (void)state;
    const int S = 12;
    tu_rng r = {5};
    float xb[8 * 144];
    int32_t yb[8];
    make_dataset(8, S, &r, xb, yb);
    int64_t bs[] = {8, 1, S, S};
    cfnet_tensor *batch = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap(xb, 4, bs, &batch));
    cfnet_network *nets[3];
    float losses[3][5];
    for (int k = 0; k < 3; k++) {
        nets[k] = make_cnn(S, 3, k == 2 ? 99 : 42);
        cfnet_layer *dl = NULL;
        CF_ASSERT_OK(cfnet_layer_dropout_create(0.3f, &dl));
        CF_ASSERT_OK(cfnet_network_append(nets[k], dl));
        CF_ASSERT_OK(cfnet_network_set_option(nets[k], CFNET_OPTION_AUG_ROTATION, CFNET_AUG_ROTATION_ANY));
        CF_ASSERT_OK(cfnet_network_set_option(nets[k], CFNET_OPTION_AUG_JITTER, 2));
        CF_ASSERT_OK(cfnet_network_set_option(nets[k], CFNET_OPTION_AUG_FLIP, 1));
        for (int t = 0; t < 5; t++)
            CF_ASSERT_OK(cfnet_network_train_step(nets[k], batch, yb, 8, &losses[k][t]));
    }
    assert_memory_equal(losses[0], losses[1], sizeof losses[0]);
    assert_memory_not_equal(losses[0], losses[2], sizeof losses[0]);
    for (int li = 0; li < cfnet_network_layer_count(nets[0]); li++) {
        cfnet_layer *a = cfnet_network_layer(nets[0], li), *b = cfnet_network_layer(nets[1], li);
        for (int p = 0; p < cfnet_layer_param_count(a); p++)
            assert_memory_equal(cfnet_tensor_data(cfnet_layer_param(a, p)),
                                cfnet_tensor_data(cfnet_layer_param(b, p)),
                                (size_t)cfnet_tensor_numel(cfnet_layer_param(a, p)) * sizeof(float));
    }
    for (int k = 0; k < 3; k++) cfnet_network_free(nets[k]);
    cfnet_tensor_free(batch);
}

static void probabilities_and_predict_agree(void **state)
{
    (void)state;
    cfnet_network *net = make_cnn(10, 4, 8);
    tu_rng r = {4};
    int64_t xs[] = {5, 1, 10, 10}, ps[] = {5, 4};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *p = tu_tensor(2, ps, NULL), *o = tu_tensor(2, ps, NULL);
    CF_ASSERT_OK(cfnet_network_probabilities(net, x, p));
    CF_ASSERT_OK(cfnet_network_infer(net, x, o));
    int32_t lab[5];
    CF_ASSERT_OK(cfnet_network_predict(net, x, lab, 5));
    for (int i = 0; i < 5; i++) {
        const float *pi = cfnet_tensor_data(p) + i * 4, *oi = cfnet_tensor_data(o) + i * 4;
        double s = 0;
        int best = 0;
        for (int j = 0; j < 4; j++) {
            s += pi[j];
            if (pi[j] > pi[best]) best = j;
            assert_true(pi[j] > 0);
        }
        assert_float_equal(s, 1.0, 1e-5);
        assert_int_equal(best, lab[i]);
        /* softmax: ratios of probabilities are exp of logit differences */
        assert_float_equal(log(pi[1] / pi[0]), oi[1] - oi[0], 1e-4);
    }
    /* Training forward then inference give the same output for a network without BN/dropout. */
    cfnet_tensor *o2 = tu_tensor(2, ps, NULL);
    CF_ASSERT_OK(cfnet_network_forward(net, x, o2, CFNET_MODE_TRAINING));
    assert_true(tu_max_rel_diff(cfnet_tensor_data(o2), cfnet_tensor_data(o), 20) < 1e-6);
    cfnet_tensor_free(o2);
    cfnet_tensor_free(x);
    cfnet_tensor_free(p);
    cfnet_tensor_free(o);
    cfnet_network_free(net);
}

/* Convolutions address the padded input of a sample with 32-bit offsets: an input over 2^31
 * padded values is a size limit (CFNET_E_LIMIT, saying so), found before any table is built,
 * not an allocation failure. */
static void convolution_inputs_over_the_offset_limit_are_a_limit(void **state)
{
    (void)state;
    struct {
        int kind, C, S;
    } cases[] = {{0, 130, 4096}, {1, 1100, 1400}, {2, 200, 4096}, {0, 4096, 32768}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cfnet_network *net = NULL;
        cfnet_layer *l = NULL;
        CF_ASSERT_OK(cfnet_network_create(cases[i].C, cases[i].S, cases[i].S, 1, &net));
        if (cases[i].kind == 0)
            CF_ASSERT_OK(cfnet_layer_conv2d_create(2, 3, 1, CFNET_PADDING_SAME, &l));
        else if (cases[i].kind == 1)
            CF_ASSERT_OK(cfnet_layer_conic_conv_create(2, 3, 2, CFNET_PADDING_SAME,
                                                       CFNET_INTERP_NEAREST, &l));
        else
            CF_ASSERT_OK(cfnet_layer_p4_lift_create(2, 3, CFNET_PADDING_SAME, &l));
        CF_ASSERT_STATUS(cfnet_network_append(net, l), CFNET_E_LIMIT);
        assert_non_null(strstr(cfnet_last_error(), "values per sample, at most 2147483647"));
        assert_int_equal(cfnet_network_layer_count(net), 0);
        cfnet_network_free(net);
    }
}

static void bad_inputs_give_clear_errors(void **state)
{
    (void)state;
    cfnet_network *net = make_cnn(10, 4, 8);
    int64_t xs[] = {2, 1, 10, 10}, wrong[] = {2, 1, 9, 10}, os[] = {2, 4};
    cfnet_tensor *x = tu_tensor(4, xs, NULL), *xw = tu_tensor(4, wrong, NULL), *o = tu_tensor(2, os, NULL);
    int32_t lab[2] = {0, 4}, ok[2] = {0, 3};
    CF_ASSERT_STATUS(cfnet_network_train_step(net, x, lab, 2, NULL), CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "label 1 is 4, must be in [0, 4)"));
    CF_ASSERT_STATUS(cfnet_network_train_step(net, xw, ok, 2, NULL), CFNET_E_SHAPE_MISMATCH);
    assert_non_null(strstr(cfnet_last_error(), "2x1x9x10"));
    CF_ASSERT_STATUS(cfnet_network_train_step(net, x, ok, 3, NULL), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_network_train_step(net, x, NULL, 2, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_train_step(NULL, x, ok, 2, NULL), CFNET_E_INVALID_ARGUMENT);
    cfnet_tensor_data(x)[7] = NAN;
    CF_ASSERT_STATUS(cfnet_network_train_step(net, x, ok, 2, NULL), CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(cfnet_network_step_count(net), 0);
    CF_ASSERT_STATUS(cfnet_network_infer(net, xw, o), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_network_backward(net, o), CFNET_E_STATE);
    CF_ASSERT_STATUS(cfnet_network_predict(net, x, ok, 1), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_network_forward(net, x, o, (cfnet_mode)3), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_evaluate(net, x, ok, 2, -1, NULL, NULL), CFNET_E_INVALID_ARGUMENT);
    cfnet_tensor_free(x);
    cfnet_tensor_free(xw);
    cfnet_tensor_free(o);
    cfnet_network_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(append_reports_layer_index_kind_and_shapes),
        cmocka_unit_test(summary_lists_every_layer),
        cmocka_unit_test(network_backward_matches_finite_differences),
        cmocka_unit_test(sgd_and_adam_steps_follow_their_formulas),
        cmocka_unit_test(adam_update_is_the_float_formula_bit_for_bit),
        cmocka_unit_test(weight_decay_and_learning_rate_schedule),
        cmocka_unit_test(cfnet_learns_rotation_invariant_problem),
        cmocka_unit_test(invariance_check_separates_invariant_networks_from_cnn),
        cmocka_unit_test(same_seed_trains_identically),
        cmocka_unit_test(probabilities_and_predict_agree),
        cmocka_unit_test(convolution_inputs_over_the_offset_limit_are_a_limit),
        cmocka_unit_test(bad_inputs_give_clear_errors),
    };
    return cmocka_run_group_tests_name("network", tests, NULL, NULL);
}
