/* Small stacks: hosts run libcfnet on worker threads with small stacks (imaging applications,
 * language runtimes: 256 KiB and less are common). Inference, training, saving and loading of
 * networks of every convolution kind must run on a thread with a 128 KiB stack (more under
 * AddressSanitizer, whose redzones inflate every frame). The build also fails any function
 * whose frame exceeds 16 KiB (-Wstack-usage / -Wframe-larger-than, see the Makefile). */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define SMALL_STACK (512 * 1024)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SMALL_STACK (512 * 1024)
#endif
#endif
#ifndef SMALL_STACK
#define SMALL_STACK (128 * 1024)
#endif

#define APPEND(net, expr)                              \
    do {                                               \
        cfnet_layer *l_ = NULL;                        \
        if ((expr) != CFNET_OK) return NULL;           \
        if (cfnet_network_append((net), l_) != CFNET_OK) return NULL; \
    } while (0)

enum { S = 18, K = 3, NB = 6 };

static float x[NB * S * S];
static int32_t y[NB] = {0, 1, 2, 2, 1, 0};

/* Network kinds exercised; each one is built, trained and used on the small-stack thread. */
enum { NET_CONV2D, NET_CONIC, NET_P4, NET_MIXED, NET_KINDS };

static cfnet_network *build(int kind, cfnet_network *net)
{
    switch (kind) {
    case NET_CONV2D:
        APPEND(net, cfnet_layer_conv2d_create(16, 5, 1, CFNET_PADDING_SAME, &l_));
        APPEND(net, cfnet_layer_relu_create(&l_));
        APPEND(net, cfnet_layer_conv2d_create(8, 3, 2, CFNET_PADDING_VALID, &l_));
        break;
    case NET_CONIC:
        APPEND(net, cfnet_layer_conic_conv_create(8, 5, 8, CFNET_PADDING_SAME,
                                                  CFNET_INTERP_BILINEAR, &l_));
        APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
        APPEND(net, cfnet_layer_relu_create(&l_));
        APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
        APPEND(net, cfnet_layer_dft_projection_create(6, 4, CFNET_INTERP_NEAREST, &l_));
        APPEND(net, cfnet_layer_dft_magnitude_create(&l_));
        break;
    case NET_P4:
        APPEND(net, cfnet_layer_p4_lift_create(4, 3, CFNET_PADDING_SAME, &l_));
        APPEND(net, cfnet_layer_p4_conv_create(4, 3, CFNET_PADDING_SAME, &l_));
        APPEND(net, cfnet_layer_relu_create(&l_));
        APPEND(net, cfnet_layer_dft_projection_create(5, 1, CFNET_INTERP_NEAREST, &l_));
        APPEND(net, cfnet_layer_dft_magnitude_create(&l_));
        break;
    default:
        APPEND(net, cfnet_layer_conic_conv_create(4, 3, 2, CFNET_PADDING_VALID,
                                                  CFNET_INTERP_NEAREST, &l_));
        APPEND(net, cfnet_layer_p4_lift_create(3, 3, CFNET_PADDING_SAME, &l_));
        APPEND(net, cfnet_layer_group_pool_create(CFNET_POOL_MEAN, &l_));
        APPEND(net, cfnet_layer_dropout_create(0.25f, &l_));
        APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MEAN, 2, 2, &l_));
        break;
    }
    APPEND(net, cfnet_layer_dense_create(K, &l_));
    APPEND(net, cfnet_layer_softmax_create(&l_));
    return net;
}

typedef struct job {
    int kind, threads;
    cfnet_status st;
    char msg[256];
    float loss;
} job;

#define TRY(expr)                                                                  \
    do {                                                                           \
        cfnet_status s_ = (expr);                                                  \
        if (s_ != CFNET_OK) {                                                      \
            j->st = s_;                                                            \
            snprintf(j->msg, sizeof j->msg, "%s: %s", #expr, cfnet_last_error());  \
            goto done;                                                             \
        }                                                                          \
    } while (0)

/* Everything a host would do with a network, on the calling (small-stack) thread. */
static void *work(void *arg)
{
    job *j = arg;
    cfnet_network *net = NULL, *copy = NULL;
    cfnet_tensor *xt = NULL, *out = NULL;
    void *buf = NULL;
    size_t size = 0;
    j->st = CFNET_OK;
    TRY(cfnet_network_create(1, S, S, 7, &net));
    if (!build(j->kind, net)) {
        j->st = CFNET_E_INTERNAL;
        snprintf(j->msg, sizeof j->msg, "building kind %d: %s", j->kind, cfnet_last_error());
        goto done;
    }
    TRY(cfnet_network_set_option(net, CFNET_OPTION_THREADS, j->threads));
    TRY(cfnet_network_set_option(net, CFNET_OPTION_AUG_ROTATION, CFNET_AUG_ROTATION_ANY));
    int64_t xs[4] = {NB, 1, S, S}, os[2] = {NB, K};
    TRY(cfnet_tensor_wrap(x, 4, xs, &xt));
    TRY(cfnet_tensor_create(2, os, &out));
    TRY(cfnet_network_infer(net, xt, out));
    for (int s = 0; s < 2; s++) TRY(cfnet_network_train_step(net, xt, y, NB, &j->loss));
    TRY(cfnet_network_forward(net, xt, out, CFNET_MODE_TRAINING));
    TRY(cfnet_network_backward(net, out));
    TRY(cfnet_network_save_buffer(net, CFNET_SAVE_OPTIMIZER, &buf, &size));
    TRY(cfnet_network_load_buffer(buf, size, &copy));
    TRY(cfnet_network_infer(copy, xt, out));
    double inv;
    TRY(cfnet_network_invariance(copy, xt, NULL, 0, &inv));
done:
    cfnet_free(buf);
    cfnet_network_free(copy);
    cfnet_network_free(net);
    cfnet_tensor_free(xt);
    cfnet_tensor_free(out);
    return NULL;
}

static void run_on_small_stack(job *j)
{
    pthread_attr_t attr;
    pthread_t tid;
    assert_int_equal(pthread_attr_init(&attr), 0);
    assert_int_equal(pthread_attr_setstacksize(&attr, SMALL_STACK), 0);
    assert_int_equal(pthread_create(&tid, &attr, work, j), 0);
    assert_int_equal(pthread_join(tid, NULL), 0);
    pthread_attr_destroy(&attr);
    if (j->st != CFNET_OK) fail_msg("kind %d, %d threads: %s", j->kind, j->threads, j->msg);
}

static void every_network_kind_runs_on_a_small_stack(void **state)
{
    (void)state;
    tu_rng r = {11};
    tu_fill_normal(x, NB * S * S, &r);
    for (int kind = 0; kind < NET_KINDS; kind++) {
        for (int threads = 1; threads <= 3; threads += 2) {
            job j = {.kind = kind, .threads = threads};
            run_on_small_stack(&j);
        }
    }
}

/* One named limit each for the thread count and the conic R, enforced where they are set; the
 * largest allowed values run (on the small stack), one more is refused and changes nothing. */
static void thread_and_R_limits_are_the_named_constants(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 8, 8, 1, &net));
    CF_ASSERT_STATUS(cfnet_network_set_option(net, CFNET_OPTION_THREADS, CFNET_MAX_THREADS + 1),
                     CFNET_E_INVALID_ARGUMENT);
    double v = 0;
    CF_ASSERT_OK(cfnet_network_get_option(net, CFNET_OPTION_THREADS, &v));
    assert_true(v == 1);
    cfnet_layer *l = NULL;
    CF_ASSERT_STATUS(cfnet_layer_conic_conv_create(2, 3, CFNET_CONIC_MAX_R + 1, CFNET_PADDING_SAME,
                                                   CFNET_INTERP_NEAREST, &l),
                     CFNET_E_INVALID_ARGUMENT);
    assert_null(l);
    cfnet_network_free(net);

    /* The largest values, on a batch large enough to use every thread. */
    enum { N = CFNET_MAX_THREADS + 3 };
    static float xs[N * 8 * 8];
    static int32_t ys[N];
    tu_rng r = {5};
    tu_fill_normal(xs, N * 8 * 8, &r);
    CF_ASSERT_OK(cfnet_network_create(1, 8, 8, 1, &net));
    CF_ASSERT_OK(cfnet_layer_conic_conv_create(2, 3, CFNET_CONIC_MAX_R, CFNET_PADDING_SAME,
                                               CFNET_INTERP_BILINEAR, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dense_create(2, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, CFNET_MAX_THREADS));
    cfnet_tensor *xt = NULL;
    int64_t shape[4] = {N, 1, 8, 8};
    CF_ASSERT_OK(cfnet_tensor_wrap(xs, 4, shape, &xt));
    float loss;
    CF_ASSERT_OK(cfnet_network_train_step(net, xt, ys, N, &loss));
    assert_true(loss == loss);
    cfnet_tensor_free(xt);
    cfnet_network_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_network_kind_runs_on_a_small_stack),
        cmocka_unit_test(thread_and_R_limits_are_the_named_constants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
