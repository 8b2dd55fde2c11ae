/* Layer workspaces in a network: the part each layer keeps from a training forward to its
 * backward is its own, the scratch part is one region shared by all layers (src/nn/network.c,
 * cf_layer_ops.workspace_kept). A network of convolution layers (small and large maps) must
 * train bit-identically to the same layers run standalone, each with a whole workspace of its
 * own, and must need less memory than the sum of its layers' workspaces. */
#include "testutil.h"

#include "nn/layer.h"

#include <stdlib.h>
#include <string.h>

/* conv2d 32 -> 32 at 30 x 30: several column tiles per sample, samples split over 2 threads
 * (kept small: the engine's fused multiply-adds are emulated slowly under valgrind). Every kind
 * with a fused ReLU (cf_layer_ops.forward_relu) is followed by a ReLU once; the mirrored conic
 * layer, which has none, too. */
#define N 3
#define NLAYERS 17

static const int64_t IN_SHAPE[3] = {4, 30, 30};

/* The ReLU layers that write over the layer before them (a pair run as one): their outputs
 * take no memory of their own in training. */
static const bool SHARES_OUTPUT[NLAYERS] = {[1] = true,  [3] = true,  [6] = true,
                                            [8] = true,  [10] = true, [12] = true};

static cfnet_layer *make_layer(int i)
{
    cfnet_layer *l = NULL;
    const cfnet_padding S = CFNET_PADDING_SAME, V = CFNET_PADDING_VALID;
    switch (i) {
    case 0: CF_ASSERT_OK(cfnet_layer_conv2d_create(32, 3, 1, S, &l)); break;
    case 2: CF_ASSERT_OK(cfnet_layer_conv2d_create(32, 3, 1, S, &l)); break;
    case 4: CF_ASSERT_OK(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l)); break;
    case 5:
        CF_ASSERT_OK(cfnet_layer_conic_conv_create(8, 3, 2, S, CFNET_INTERP_NEAREST, &l));
        break;
    case 7: CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l)); break;
    case 9: CF_ASSERT_OK(cfnet_layer_p4_lift_create(4, 3, V, &l)); break;
    case 11: CF_ASSERT_OK(cfnet_layer_p4_conv_create(4, 3, V, &l)); break;
    case 13: CF_ASSERT_OK(cfnet_layer_group_pool_create(CFNET_POOL_MAX, &l)); break;
    case 14:
        CF_ASSERT_OK(cfnet_layer_conic_conv_mirror_create(4, 3, 1, S, CFNET_INTERP_NEAREST, &l));
        break;
    case 1: case 3: case 6: case 8: case 10: case 12: case 15:
        CF_ASSERT_OK(cfnet_layer_relu_create(&l));
        break;
    default: CF_ASSERT_OK(cfnet_layer_dense_create(3, &l)); break;
    }
    return l;
}

static cfnet_network *make_network(int threads)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create((int)IN_SHAPE[0], (int)IN_SHAPE[1], (int)IN_SHAPE[2], 3,
                                      &net));
    for (int i = 0; i < NLAYERS; i++) CF_ASSERT_OK(cfnet_network_append(net, make_layer(i)));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, threads));
    return net;
}

static void network_training_matches_standalone_layers(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        cfnet_network *net = make_network(threads);
        tu_rng r = {11};
        const int64_t xs[4] = {N, IN_SHAPE[0], IN_SHAPE[1], IN_SHAPE[2]}, os[2] = {N, 3};
        cfnet_tensor *x = tu_tensor(4, xs, &r), *out = tu_tensor(2, os, NULL),
                     *dout = tu_tensor(2, os, &r);
        /* Two rounds: the second forward finds the shared scratch dirty from the first
         * backward. */
        for (int round = 0; round < 2; round++) {
            CF_ASSERT_OK(cfnet_network_forward(net, x, out, CFNET_MODE_TRAINING));
            CF_ASSERT_OK(cfnet_network_backward(net, dout));
        }
        /* The same layers standalone, each with its own whole workspace. */
        cfnet_layer *ls[NLAYERS];
        cfnet_tensor *act[NLAYERS + 1], *grad[NLAYERS + 1];
        act[0] = x;
        for (int i = 0; i < NLAYERS; i++) {
            const cfnet_layer *nl = cfnet_network_layer(net, i);
            ls[i] = make_layer(i);
            CF_ASSERT_OK(cfnet_layer_setup(ls[i], nl->in_ndim, nl->in_shape, 0));
            ls[i]->threads = threads;
            for (int p = 0; p < nl->nparam; p++)
                memcpy(ls[i]->param[p]->data, nl->param[p]->data,
                       (size_t)nl->param[p]->numel * sizeof(float));
            act[i + 1] = tu_output_for(ls[i], N);
            int nd;
            int64_t shp[CFNET_MAX_DIMS + 1];
            CF_ASSERT_OK(cfnet_tensor_shape(act[i], &nd, shp));
            grad[i] = tu_tensor(nd, shp, NULL);
            /* The network left no scratch pointer behind. */
            assert_null(nl->scratch);
        }
        for (int round = 0; round < 2; round++) {
            for (int i = 0; i < NLAYERS; i++)
                CF_ASSERT_OK(cfnet_layer_forward(ls[i], act[i], act[i + 1], CFNET_MODE_TRAINING));
            const cfnet_tensor *d = dout;
            for (int i = NLAYERS - 1; i >= 0; i--) {
                CF_ASSERT_OK(cfnet_layer_backward(ls[i], act[i], act[i + 1], d,
                                                  i ? grad[i] : NULL));
                d = grad[i];
            }
        }
        assert_memory_equal(cfnet_tensor_data(out), cfnet_tensor_data(act[NLAYERS]),
                            (size_t)cfnet_tensor_numel(out) * sizeof(float));
        for (int i = 0; i < NLAYERS; i++) {
            const cfnet_layer *nl = cfnet_network_layer(net, i);
            for (int p = 0; p < nl->nparam; p++)
                assert_memory_equal(nl->grad[p]->data, ls[i]->grad[p]->data,
                                    (size_t)nl->grad[p]->numel * sizeof(float));
        }
        /* Inference (the pairs again in one call each, batch norm with its running
         * statistics): the standalone layers' bits. */
        CF_ASSERT_OK(cfnet_network_infer(net, x, out));
        for (int i = 0; i < NLAYERS; i++)
            CF_ASSERT_OK(cfnet_layer_forward(ls[i], act[i], act[i + 1], CFNET_MODE_INFERENCE));
        assert_memory_equal(cfnet_tensor_data(out), cfnet_tensor_data(act[NLAYERS]),
                            (size_t)cfnet_tensor_numel(out) * sizeof(float));
        for (int i = 0; i < NLAYERS; i++) {
            cfnet_layer_free(ls[i]);
            cfnet_tensor_free(act[i + 1]);
            cfnet_tensor_free(grad[i]);
        }
        cfnet_tensor_free(x);
        cfnet_tensor_free(out);
        cfnet_tensor_free(dout);
        cfnet_network_free(net);
    }
}

static void network_shares_scratch_between_layers(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        cfnet_network *net = make_network(threads);
        size_t base = cfnet_network_memory_usage(net);
        /* What the training buffers took when every layer owned its whole workspace. */
        size_t sum_ws = 0, sum_scratch = 0, max_scratch = 0, acts = 0;
        int64_t maxsz = IN_SHAPE[0] * IN_SHAPE[1] * IN_SHAPE[2];
        for (int i = 0; i < NLAYERS; i++) {
            const cfnet_layer *l = cfnet_network_layer(net, i);
            size_t w = l->ops->workspace ? l->ops->workspace(l, N) : 0;
            size_t kept = l->ops->workspace_kept ? l->ops->workspace_kept(l, N) : w;
            assert_true(kept <= w);
            sum_ws += w;
            sum_scratch += w - kept;
            if (w - kept > max_scratch) max_scratch = w - kept;
            if (!SHARES_OUTPUT[i]) acts += (size_t)(l->out_size * N) * sizeof(float);
            if (l->out_size > maxsz) maxsz = l->out_size;
        }
        size_t fixed = acts + (size_t)(IN_SHAPE[0] * IN_SHAPE[1] * IN_SHAPE[2] * N) *
                                  sizeof(float) +
                       2 * (size_t)(maxsz * N) * sizeof(float) +
                       (size_t)NLAYERS * 2 * sizeof(void *); /* outputs and kept parts: where */
        /* Several convolution layers have scratch: sharing it must save something. */
        assert_true(sum_scratch - max_scratch > ((size_t)1 << 20));
        tu_rng r = {5};
        const int64_t xs[4] = {N, IN_SHAPE[0], IN_SHAPE[1], IN_SHAPE[2]}, os[2] = {N, 3};
        cfnet_tensor *x = tu_tensor(4, xs, &r), *out = tu_tensor(2, os, NULL),
                     *dout = tu_tensor(2, os, &r);
        CF_ASSERT_OK(cfnet_network_forward(net, x, out, CFNET_MODE_TRAINING));
        CF_ASSERT_OK(cfnet_network_backward(net, dout));
        size_t used = cfnet_network_memory_usage(net);
        assert_true(used < base + fixed + sum_ws);
        assert_int_equal(used, base + fixed + (sum_ws - sum_scratch) + max_scratch);
        cfnet_tensor_free(x);
        cfnet_tensor_free(out);
        cfnet_tensor_free(dout);
        cfnet_network_free(net);
    }
}

/* A conic layer keeps nothing from a training forward to its backward (its filter banks are
 * scratch, built again by the backward): wiping its whole standalone workspace in between
 * leaves the gradients bit for bit as they are without the wipe. Over output channels (15) and
 * through the columns (40 channels, more than the engine's limit for that path). */
static void conic_backward_needs_nothing_kept(void **state)
{
    (void)state;
    const int outs[2] = {15, 40};
    for (int c = 0; c < 2; c++)
        for (int threads = 1; threads <= 2; threads++) {
            const int64_t in[3] = {6, 14, 14};
            cfnet_layer *l[2];
            for (int k = 0; k < 2; k++) {
                CF_ASSERT_OK(cfnet_layer_conic_conv_create(outs[c], 3, 2, CFNET_PADDING_SAME,
                                                           CFNET_INTERP_NEAREST, &l[k]));
                CF_ASSERT_OK(cfnet_layer_setup(l[k], 3, in, 3));
                l[k]->threads = threads;
                assert_int_equal(l[k]->ops->workspace_kept(l[k], 4), 0);
            }
            tu_rng r = {21};
            const int64_t xs[4] = {4, in[0], in[1], in[2]};
            cfnet_tensor *x = tu_tensor(4, xs, &r), *y = tu_output_for(l[0], 4),
                         *dy = tu_output_for(l[0], 4), *dx[2];
            tu_fill_normal(cfnet_tensor_data(dy), cfnet_tensor_numel(dy), &r);
            for (int k = 0; k < 2; k++) {
                dx[k] = tu_tensor(4, xs, NULL);
                CF_ASSERT_OK(cfnet_layer_forward(l[k], x, y, CFNET_MODE_TRAINING));
                if (k == 1) memset(l[k]->ws, 0xff, l[k]->ws_size); /* NaNs everywhere */
                CF_ASSERT_OK(cfnet_layer_backward(l[k], x, y, dy, dx[k]));
            }
            assert_memory_equal(cfnet_tensor_data(dx[0]), cfnet_tensor_data(dx[1]),
                                (size_t)cfnet_tensor_numel(x) * sizeof(float));
            for (int p = 0; p < l[0]->nparam; p++)
                assert_memory_equal(l[0]->grad[p]->data, l[1]->grad[p]->data,
                                    (size_t)l[0]->grad[p]->numel * sizeof(float));
            for (int k = 0; k < 2; k++) {
                cfnet_layer_free(l[k]);
                cfnet_tensor_free(dx[k]);
            }
            cfnet_tensor_free(x);
            cfnet_tensor_free(y);
            cfnet_tensor_free(dy);
        }
}

/* Training memory of the rotated-MNIST CFNet of the benchmarks (batch 50): beyond its
 * activations (one buffer per conic layer and its ReLU), the input copy and the two gradient
 * buffers, the network needs its parameters
 * (value and gradient), a little for the DFT layers and one shared scratch region. Its conic
 * layers go over output channels, take one sample at a time and keep nothing, so that region
 * stays under 1 MiB on one thread (+ 0.5 MiB per further thread). It was 2.3 MiB (1 thread)
 * and 3.5 MiB (2 threads) when the layers kept their banks and the engine sized its buffers for
 * blocks of samples. */
static void cfnet_training_memory_overhead(void **state)
{
    (void)state;
    static const int R[6] = {2, 2, 2, 1, 1, 1};
    const int64_t n = 50;
    for (int threads = 1; threads <= 2; threads++) {
        cfnet_network *net = NULL;
        cfnet_layer *l = NULL;
        CF_ASSERT_OK(cfnet_network_create(1, 28, 28, 7, &net));
        for (int i = 0; i < 6; i++) {
            CF_ASSERT_OK(cfnet_layer_conic_conv_create(15, 3, R[i], CFNET_PADDING_VALID,
                                                       CFNET_INTERP_NEAREST, &l));
            CF_ASSERT_OK(cfnet_network_append(net, l));
            CF_ASSERT_OK(cfnet_layer_relu_create(&l));
            CF_ASSERT_OK(cfnet_network_append(net, l));
            if (i == 1) {
                CF_ASSERT_OK(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l));
                CF_ASSERT_OK(cfnet_network_append(net, l));
            }
        }
        CF_ASSERT_OK(cfnet_layer_dft_projection_create(15, 1, CFNET_INTERP_NEAREST, &l));
        CF_ASSERT_OK(cfnet_network_append(net, l));
        CF_ASSERT_OK(cfnet_layer_dft_magnitude_create(&l));
        CF_ASSERT_OK(cfnet_network_append(net, l));
        CF_ASSERT_OK(cfnet_layer_dense_create(10, &l));
        CF_ASSERT_OK(cfnet_network_append(net, l));
        CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, threads));
        size_t fixed = (size_t)(28 * 28 * n) * sizeof(float), params = 0;
        int64_t maxsz = 28 * 28;
        for (int i = 0; i < cfnet_network_layer_count(net); i++) {
            const cfnet_layer *li = cfnet_network_layer(net, i);
            /* each ReLU writes over the conic layer's output before it */
            if (li->kind != CFNET_LAYER_RELU) fixed += (size_t)(li->out_size * n) * sizeof(float);
            if (li->out_size > maxsz) maxsz = li->out_size;
            for (int p = 0; p < li->nparam; p++)
                params += 2 * (size_t)li->param[p]->numel * sizeof(float);
        }
        fixed += 2 * (size_t)(maxsz * n) * sizeof(float);
        tu_rng r = {3};
        const int64_t xs[4] = {n, 1, 28, 28};
        cfnet_tensor *x = tu_tensor(4, xs, &r);
        int32_t labels[50];
        for (int i = 0; i < 50; i++) labels[i] = i % 10;
        CF_ASSERT_OK(cfnet_network_train_step(net, x, labels, n, NULL));
        size_t used = cfnet_network_memory_usage(net), bound = ((size_t)1 << 20) +
                                                              (size_t)(threads - 1) * (1 << 19);
        assert_true(used > fixed + params);
        size_t over = used - fixed - params;
        if (over > bound)
            fail_msg("%d thread(s): %zu bytes beyond activations, gradients and parameters, "
                     "more than %zu", threads, over, bound);
        cfnet_tensor_free(x);
        cfnet_network_free(net);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(network_training_matches_standalone_layers),
        cmocka_unit_test(network_shares_scratch_between_layers),
        cmocka_unit_test(conic_backward_needs_nothing_kept),
        cmocka_unit_test(cfnet_training_memory_overhead),
    };
    return cmocka_run_group_tests_name("workspace", tests, NULL, NULL);
}
