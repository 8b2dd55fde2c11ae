/* cfnet_network_init_normal: the documented stream (an independent splitmix64 + Box-Muller
 * here), the distribution, what it leaves alone (biases, batch norm, other parameters), and
 * bad arguments changing nothing. */
#include "testutil.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The stream as docs and header describe it, written out again. */
static uint64_t ref_next(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double ref_uniform(uint64_t *x) { return (double)(ref_next(x) >> 11) / 9007199254740992.0; }

static cfnet_network *small_net(void)
{
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(2, 12, 12, 3, &net));
    CF_ASSERT_OK(cfnet_layer_conic_conv_create(4, 3, 2, CFNET_PADDING_SAME,
                                               CFNET_INTERP_STEERABLE, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_relu_create(&l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dft_projection_create(5, 1, CFNET_INTERP_BILINEAR, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dft_magnitude_create(&l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dense_create(3, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    return net;
}

/* Copies every parameter of the network into one malloc'd array. */
static float *all_params(cfnet_network *net, int64_t *n)
{
    int64_t total = cfnet_network_param_count(net), at = 0;
    float *out = malloc((size_t)total * sizeof *out);
    assert_non_null(out);
    for (int i = 0; i < cfnet_network_layer_count(net); i++) {
        cfnet_layer *l = cfnet_network_layer(net, i);
        for (int p = 0; p < cfnet_layer_param_count(l); p++) {
            cfnet_tensor *t = cfnet_layer_param(l, p);
            memcpy(out + at, cfnet_tensor_data(t), (size_t)cfnet_tensor_numel(t) * sizeof *out);
            at += cfnet_tensor_numel(t);
        }
    }
    assert_int_equal(at, total);
    *n = total;
    return out;
}

static void weights_follow_the_documented_stream(void **state)
{
    (void)state;
    cfnet_network *net = small_net();
    /* Non-zero biases and batch-norm parameters, to see that they stay. */
    for (int i = 0; i < cfnet_network_layer_count(net); i++) {
        cfnet_layer *l = cfnet_network_layer(net, i);
        for (int p = 0; p < cfnet_layer_param_count(l); p++) {
            cfnet_tensor *t = cfnet_layer_param(l, p);
            float *d = cfnet_tensor_data(t);
            for (int64_t j = 0; j < cfnet_tensor_numel(t); j++) d[j] = 0.25f + (float)j;
        }
    }
    int64_t n;
    float *before = all_params(net, &n);
    const uint64_t seed = 12345;
    CF_ASSERT_OK(cfnet_network_init_normal(net, 0.1, seed));
    float *after = all_params(net, &n);

    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    int64_t at = 0, weights = 0;
    for (int i = 0; i < cfnet_network_layer_count(net); i++) {
        cfnet_layer *l = cfnet_network_layer(net, i);
        for (int p = 0; p < cfnet_layer_param_count(l); p++) {
            int64_t m = cfnet_tensor_numel(cfnet_layer_param(l, p));
            bool weight = strcmp(cfnet_layer_param_name(l, p), "weight") == 0;
            for (int64_t j = 0; j < m; j++, at++) {
                if (!weight) {
                    assert_true(after[at] == before[at]); /* untouched */
                    continue;
                }
                double u1 = ref_uniform(&x), u2 = ref_uniform(&x);
                if (u1 < 1e-300) u1 = 1e-300;
                float want = (float)(0.1 * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
                assert_true(after[at] == want);
                weights++;
            }
        }
    }
    /* conic 4 x 2 x 3 x 3, DFT projection, dense: all three kinds were drawn. */
    assert_true(weights > 72 + 5 * 4 * 12 * 12);
    free(before);
    free(after);
    cfnet_network_free(net);
}

static void weights_are_normal_with_the_given_sd(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 100, 100, 1, &net));
    CF_ASSERT_OK(cfnet_layer_dense_create(10, &l)); /* 100,000 weights */
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_network_init_normal(net, 0.1, 7));
    cfnet_tensor *w = cfnet_layer_param(l, 0);
    assert_string_equal(cfnet_layer_param_name(l, 0), "weight");
    const float *d = cfnet_tensor_data(w);
    int64_t m = cfnet_tensor_numel(w), beyond2 = 0;
    double sum = 0, sq = 0;
    for (int64_t j = 0; j < m; j++) {
        sum += d[j];
        sq += (double)d[j] * d[j];
        beyond2 += fabs(d[j]) > 0.2;
    }
    double mean = sum / (double)m, sd = sqrt(sq / (double)m - mean * mean);
    /* standard errors: mean 3e-4, sd 2.2e-4; 4.55 % of a normal lies beyond 2 sd */
    assert_true(fabs(mean) < 0.0015);
    assert_true(fabs(sd - 0.1) < 0.0012);
    assert_true(fabs((double)beyond2 / (double)m - 0.0455) < 0.004);
    /* Another seed gives other numbers; the same seed the same. */
    float first = d[0];
    CF_ASSERT_OK(cfnet_network_init_normal(net, 0.1, 8));
    assert_true(d[0] != first);
    CF_ASSERT_OK(cfnet_network_init_normal(net, 0.1, 7));
    assert_true(d[0] == first);
    /* sd scales the draw exactly (float of sd * the same double). */
    CF_ASSERT_OK(cfnet_network_init_normal(net, 0.5, 7));
    assert_true(fabsf(d[0] - 5.0f * first) <= 1e-6f * fabsf(d[0]));
    cfnet_network_free(net);
}

static void bad_arguments_change_nothing(void **state)
{
    (void)state;
    cfnet_network *net = small_net();
    int64_t n;
    float *before = all_params(net, &n);
    const double bad[] = {0.0, -0.1, NAN, INFINITY, 1000.5};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CF_ASSERT_STATUS(cfnet_network_init_normal(net, bad[i], 1), CFNET_E_INVALID_ARGUMENT);
        assert_non_null(strstr(cfnet_last_error(), "sd"));
    }
    float *after = all_params(net, &n);
    assert_memory_equal(before, after, (size_t)n * sizeof *before);
    CF_ASSERT_STATUS(cfnet_network_init_normal(NULL, 0.1, 1), CFNET_E_INVALID_ARGUMENT);
    /* An empty network has nothing to draw. */
    cfnet_network *empty = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 8, 8, 1, &empty));
    CF_ASSERT_OK(cfnet_network_init_normal(empty, 0.1, 1));
    cfnet_network_free(empty);
    free(before);
    free(after);
    cfnet_network_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(weights_follow_the_documented_stream),
        cmocka_unit_test(weights_are_normal_with_the_given_sd),
        cmocka_unit_test(bad_arguments_change_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
