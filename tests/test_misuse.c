/* Every public function given NULL handles, NULL pointers, zero or negative sizes, wrong shapes
 * or non-finite values returns a status with a message (or a documented neutral value) and
 * never crashes. tests/test_api_coverage.sh checks that every function in the header is named
 * here. */
#include "testutil.h"

#include <math.h>
#include <string.h>

static void version_and_error_functions_never_fail(void **state)
{
    (void)state;
    assert_non_null(cfnet_version_string());
    assert_true(cfnet_version_number() > 0);
    assert_non_null(cfnet_status_string((cfnet_status)12345));
    cfnet_clear_error();
    assert_string_equal(cfnet_last_error(), "");
    cfnet_free(NULL);
}

static void tensor_functions_reject_null_and_bad_sizes(void **state)
{
    (void)state;
    cfnet_tensor *t = NULL;
    int64_t neg[] = {-1}, zero[] = {0}, ok[] = {2, 2};
    float buf[4];
    int nd;
    int64_t s[CFNET_MAX_DIMS];
    CF_ASSERT_STATUS(cfnet_tensor_create(1, neg, &t), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_create(1, zero, &t), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_create(-3, ok, &t), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_wrap(buf, 2, ok, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_wrap(buf, 1, neg, &t), CFNET_E_INVALID_ARGUMENT);
    assert_null(t);
    cfnet_tensor_free(NULL);
    assert_int_equal(cfnet_tensor_ndim(NULL), 0);
    assert_int_equal(cfnet_tensor_dim(NULL, 0), -1);
    assert_int_equal(cfnet_tensor_numel(NULL), -1);
    assert_null(cfnet_tensor_data(NULL));
    CF_ASSERT_STATUS(cfnet_tensor_shape(NULL, &nd, s), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_copy_in(NULL, buf, 4), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_copy_out(NULL, buf, 4), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_fill(NULL, 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_zero(NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_reshape(NULL, 2, ok), CFNET_E_INVALID_ARGUMENT);
    t = tu_tensor(2, ok, NULL);
    CF_ASSERT_STATUS(cfnet_tensor_copy_in(t, buf, -4), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_tensor_reshape(t, 1, neg), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_shape(t, NULL, s), CFNET_E_INVALID_ARGUMENT);
    cfnet_tensor_free(t);
}

/* A read-only tensor (cfnet_tensor_wrap_const) is an input everywhere and an output nowhere:
 * every function that writes a tensor's values refuses it with CFNET_E_INVALID_ARGUMENT and a
 * message naming cfnet_tensor_wrap_const, and writes nothing; readers accept it. */
static void read_only_tensors_are_refused_by_every_writer(void **state)
{
    (void)state;
    cfnet_tensor *t = NULL;
    int64_t neg[] = {-1}, ok[] = {2, 2};
    static const float zeros[4] = {0};
    CF_ASSERT_STATUS(cfnet_tensor_wrap_const(NULL, 2, ok, &t), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_wrap_const(zeros, 2, ok, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_tensor_wrap_const(zeros, 1, neg, &t), CFNET_E_INVALID_ARGUMENT);
    assert_null(t);

    enum { N = 2, S = 6, K = 3 };
    float img[N * S * S], snap[N * S * S], buf[N * S * S];
    for (int i = 0; i < N * S * S; i++) img[i] = (float)((i * 7) % 13) / 13.0f;
    memcpy(snap, img, sizeof img);
    int64_t xs[4] = {N, 1, S, S}, os[2] = {N, K};
    cfnet_tensor *ro = NULL, *out = NULL, *img_rw = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap_const(img, 4, xs, &ro));
    CF_ASSERT_OK(cfnet_tensor_create(2, os, &out));
    CF_ASSERT_OK(cfnet_tensor_create(4, xs, &img_rw));
#define REFUSED(call)                                                        \
    do {                                                                     \
        CF_ASSERT_STATUS(call, CFNET_E_INVALID_ARGUMENT);                    \
        assert_non_null(strstr(cfnet_last_error(), "read-only"));           \
        assert_memory_equal(img, snap, sizeof img);                          \
    } while (0)
    /* the tensor functions that write */
    REFUSED(cfnet_tensor_copy_in(ro, buf, N * S * S));
    REFUSED(cfnet_tensor_fill(ro, 1.0f));
    REFUSED(cfnet_tensor_zero(ro));
    REFUSED(cfnet_image_normalize(ro, 1.0, 99.0));
    REFUSED(cfnet_image_rotate(img_rw, ro, 90.0));
    REFUSED(cfnet_image_shift(img_rw, ro, 1, 0));
    /* readers and the shape take it */
    CF_ASSERT_OK(cfnet_tensor_copy_out(ro, buf, N * S * S));
    assert_memory_equal(buf, img, sizeof img);
    CF_ASSERT_OK(cfnet_image_rotate(ro, img_rw, 90.0));
    CF_ASSERT_OK(cfnet_image_shift(ro, img_rw, 1, 0));
    int64_t flat[2] = {N, S * S};
    CF_ASSERT_OK(cfnet_tensor_reshape(ro, 2, flat));
    CF_ASSERT_OK(cfnet_tensor_reshape(ro, 4, xs));
    assert_true(cfnet_tensor_data(ro) == img);

    /* a network: input yes, output no */
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S, S, 1, &net));
    CF_ASSERT_OK(cfnet_layer_conv2d_create(2, 3, 1, CFNET_PADDING_SAME, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dense_create(K, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    float o[N * K] = {0}; /* read as logits below: defined values */
    cfnet_tensor *ro_out = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap_const(o, 2, os, &ro_out));
    REFUSED(cfnet_network_infer(net, img_rw, ro_out));
    REFUSED(cfnet_network_probabilities(net, img_rw, ro_out));
    REFUSED(cfnet_network_forward(net, img_rw, ro_out, CFNET_MODE_INFERENCE));
    REFUSED(cfnet_network_forward(net, img_rw, ro_out, CFNET_MODE_TRAINING));
    CF_ASSERT_OK(cfnet_network_infer(net, ro, out));
    CF_ASSERT_OK(cfnet_network_forward(net, ro, out, CFNET_MODE_TRAINING));
    int32_t labels[N] = {0, 1};
    float loss;
    CF_ASSERT_OK(cfnet_network_train_step(net, ro, labels, N, &loss));
    REFUSED(cfnet_softmax_cross_entropy(out, labels, N, &loss, ro_out));
    CF_ASSERT_OK(cfnet_softmax_cross_entropy(ro_out, labels, N, &loss, NULL));
    /* a layer: output and input gradient no */
    cfnet_layer *conv = cfnet_network_layer(net, 0);
    int64_t ys[4] = {N, 2, S, S};
    cfnet_tensor *y = NULL, *ro_dx = NULL;
    CF_ASSERT_OK(cfnet_tensor_create(4, ys, &y));
    CF_ASSERT_OK(cfnet_tensor_wrap_const(img, 4, xs, &ro_dx));
    static float ybuf[N * 2 * S * S];
    cfnet_tensor *ro_y = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap_const(ybuf, 4, ys, &ro_y));
    REFUSED(cfnet_layer_forward(conv, img_rw, ro_y, CFNET_MODE_TRAINING));
    cfnet_tensor_free(ro_y);
    CF_ASSERT_OK(cfnet_layer_forward(conv, ro, y, CFNET_MODE_TRAINING));
    REFUSED(cfnet_layer_backward(conv, ro, y, y, ro_dx));
    CF_ASSERT_OK(cfnet_layer_backward(conv, ro, y, y, NULL));
#undef REFUSED
    cfnet_tensor_free(ro_dx);
    cfnet_tensor_free(y);
    cfnet_tensor_free(ro_out);
    cfnet_network_free(net);
    cfnet_tensor_free(img_rw);
    cfnet_tensor_free(out);
    cfnet_tensor_free(ro);
    assert_memory_equal(img, snap, sizeof img);
}

static void layer_creators_reject_null_out_and_bad_values(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_STATUS(cfnet_layer_conv2d_create(1, 3, 1, CFNET_PADDING_SAME, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_conv2d_create(-1, 3, 1, CFNET_PADDING_SAME, &l), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_conic_conv_create(1, 2, 1, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_conic_conv_create(1, 3, -2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4_lift_create(1, 0, CFNET_PADDING_SAME, &l), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4_conv_create(0, 3, CFNET_PADDING_SAME, &l), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_group_pool_create((cfnet_pool_mode)7, &l), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4m_lift_create(1, 0, CFNET_PADDING_SAME, &l), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4m_conv_create(0, 3, CFNET_PADDING_SAME, &l), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_p4m_dft_magnitude_create(NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_conic_conv_mirror_create(1, 3, 0, CFNET_PADDING_SAME,
                                                          CFNET_INTERP_NEAREST, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_dft_projection_create(0, 1, CFNET_INTERP_NEAREST, &l),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_dft_magnitude_create(NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_dense_create(0, &l), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_relu_create(NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_pool_create(CFNET_POOL_MAX, -2, 1, &l), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_batch_norm_create(NAN, 1e-5f, &l), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_batch_norm_create(0.1f, -1.0f, &l), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_dropout_create(1.0f, &l), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_dropout_create(NAN, &l), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_softmax_create(NULL), CFNET_E_INVALID_ARGUMENT);
    assert_null(l);
}

static void layer_methods_reject_null_and_unset_layers(void **state)
{
    (void)state;
    int nd;
    int64_t s[CFNET_MAX_DIMS], shape[] = {2, 3};
    cfnet_tensor *x = tu_tensor(2, shape, NULL);
    cfnet_layer_free(NULL);
    assert_int_equal(cfnet_layer_kind_of(NULL), 0);
    assert_string_equal(cfnet_layer_kind_name(-5), "unknown");
    CF_ASSERT_STATUS(cfnet_layer_setup(NULL, 1, shape, 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_input_shape(NULL, &nd, s), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_output_shape(NULL, &nd, s), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_forward(NULL, x, x, CFNET_MODE_INFERENCE), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_backward(NULL, x, x, x, x), CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(cfnet_layer_param_count(NULL), 0);
    assert_null(cfnet_layer_param(NULL, 0));
    assert_null(cfnet_layer_grad(NULL, 0));
    assert_null(cfnet_layer_param_name(NULL, 0));
    assert_int_equal(cfnet_layer_state_count(NULL), 0);
    assert_null(cfnet_layer_state(NULL, 0));
    assert_null(cfnet_layer_state_name(NULL, 0));
    CF_ASSERT_STATUS(cfnet_layer_zero_grad(NULL), CFNET_E_INVALID_ARGUMENT);

    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_dense_create(2, &l));
    CF_ASSERT_STATUS(cfnet_layer_input_shape(l, &nd, s), CFNET_E_STATE);
    CF_ASSERT_STATUS(cfnet_layer_output_shape(l, &nd, s), CFNET_E_STATE);
    CF_ASSERT_STATUS(cfnet_layer_forward(l, x, x, CFNET_MODE_INFERENCE), CFNET_E_STATE);
    int64_t sample[] = {3};
    CF_ASSERT_OK(cfnet_layer_setup(l, 1, sample, 0));
    assert_null(cfnet_layer_param(l, 2));
    assert_null(cfnet_layer_param(l, -1));
    assert_null(cfnet_layer_grad(l, 7));
    assert_null(cfnet_layer_state(l, 0));
    CF_ASSERT_STATUS(cfnet_layer_forward(l, x, NULL, CFNET_MODE_INFERENCE), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_layer_forward(l, NULL, x, CFNET_MODE_INFERENCE), CFNET_E_INVALID_ARGUMENT);
    /* Input and output sharing memory would corrupt the result. */
    int64_t sq[] = {2, 2};
    cfnet_layer *d2 = NULL;
    CF_ASSERT_OK(cfnet_layer_relu_create(&d2));
    int64_t two[] = {2};
    CF_ASSERT_OK(cfnet_layer_setup(d2, 1, two, 0));
    cfnet_tensor *q = tu_tensor(2, sq, NULL);
    CF_ASSERT_STATUS(cfnet_layer_forward(d2, q, q, CFNET_MODE_INFERENCE), CFNET_E_INVALID_ARGUMENT);
    cfnet_tensor_free(q);
    cfnet_layer_free(d2);
    cfnet_layer_free(l);
    cfnet_tensor_free(x);
}

/* Rotation layers need square maps and odd kernels; the message names the shape. */
/* A layer's parameter, gradient and state tensors are borrowed: cfnet_tensor_free leaves them
 * to the layer (with a message) and cfnet_tensor_reshape refuses to change their shape, which
 * the layer, the saver and the loader rely on. */
static void layer_tensors_cannot_be_freed_or_reshaped(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 6, 6, 1, &net));
    CF_ASSERT_OK(cfnet_layer_conic_conv_create(2, 3, 1, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dense_create(3, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    cfnet_layer *alone = NULL;
    int64_t sample[] = {4};
    CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &alone));
    CF_ASSERT_OK(cfnet_layer_setup(alone, 1, sample, 0));
    int checked = 0;
    for (int i = 0; i <= cfnet_network_layer_count(net); i++) {
        cfnet_layer *layer = i < cfnet_network_layer_count(net) ? cfnet_network_layer(net, i) : alone;
        cfnet_tensor *ts[8];
        int n = 0;
        for (int p = 0; p < cfnet_layer_param_count(layer); p++) {
            ts[n++] = cfnet_layer_param(layer, p);
            ts[n++] = cfnet_layer_grad(layer, p);
        }
        for (int s = 0; s < cfnet_layer_state_count(layer); s++) ts[n++] = cfnet_layer_state(layer, s);
        for (int k = 0; k < n; k++) {
            int64_t numel = cfnet_tensor_numel(ts[k]), flat[] = {numel}, shape[CFNET_MAX_DIMS];
            int nd = 0;
            CF_ASSERT_OK(cfnet_tensor_shape(ts[k], &nd, shape));
            cfnet_clear_error();
            cfnet_tensor_free(ts[k]);
            assert_non_null(strstr(cfnet_last_error(), "belongs to a layer"));
            CF_ASSERT_STATUS(cfnet_tensor_reshape(ts[k], 1, flat), CFNET_E_STATE);
            CF_ASSERT_STATUS(cfnet_tensor_reshape(ts[k], nd, shape), CFNET_E_STATE);
            assert_int_equal(cfnet_tensor_numel(ts[k]), numel);
            CF_ASSERT_OK(cfnet_tensor_fill(ts[k], 0.5f)); /* the values stay writable */
            checked++;
        }
    }
    assert_int_equal(checked, 4 * 2 + 2 * 2 + 2 + 2 * 2 + 2);
    /* The network still saves, loads and frees as before. */
    void *buf = NULL;
    size_t size = 0;
    cfnet_network *copy = NULL;
    CF_ASSERT_OK(cfnet_network_save_buffer(net, 0, &buf, &size));
    CF_ASSERT_OK(cfnet_network_load_buffer(buf, size, &copy));
    cfnet_free(buf);
    cfnet_network_free(copy);
    cfnet_network_free(net);
    cfnet_layer_free(alone);
}

static void rotation_layers_reject_non_square_maps(void **state)
{
    (void)state;
    int64_t rect[] = {2, 9, 8}, p4rect[] = {2, 4, 9, 8};
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_conic_conv_create(2, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l));
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, rect, 0), CFNET_E_SHAPE_MISMATCH);
    assert_non_null(strstr(cfnet_last_error(), "9x8"));
    cfnet_layer_free(l);
    CF_ASSERT_OK(cfnet_layer_p4_lift_create(2, 3, CFNET_PADDING_SAME, &l));
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, rect, 0), CFNET_E_SHAPE_MISMATCH);
    cfnet_layer_free(l);
    CF_ASSERT_OK(cfnet_layer_p4_conv_create(2, 3, CFNET_PADDING_SAME, &l));
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 4, p4rect, 0), CFNET_E_SHAPE_MISMATCH);
    cfnet_layer_free(l);
    CF_ASSERT_OK(cfnet_layer_dft_projection_create(3, 2, CFNET_INTERP_NEAREST, &l));
    CF_ASSERT_STATUS(cfnet_layer_setup(l, 3, rect, 0), CFNET_E_SHAPE_MISMATCH);
    cfnet_layer_free(l);
}

static void network_functions_reject_null(void **state)
{
    (void)state;
    int nd;
    int64_t s[CFNET_MAX_DIMS], shape[] = {1, 1, 4, 4};
    cfnet_tensor *x = tu_tensor(4, shape, NULL);
    int32_t lab[1] = {0};
    float f;
    double d;
    size_t need;
    char buf[8];
    cfnet_network *net = NULL;
    CF_ASSERT_STATUS(cfnet_network_create(1, 4, 4, 0, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_create(1, -4, 4, 0, &net), CFNET_E_INVALID_ARGUMENT);
    assert_null(net);
    cfnet_network_free(NULL);
    CF_ASSERT_STATUS(cfnet_network_append(NULL, NULL), CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(cfnet_network_layer_count(NULL), 0);
    assert_null(cfnet_network_layer(NULL, 0));
    CF_ASSERT_STATUS(cfnet_network_input_shape(NULL, &nd, s), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_output_shape(NULL, &nd, s), CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(cfnet_network_param_count(NULL), 0);
    assert_int_equal(cfnet_network_memory_usage(NULL), 0);
    CF_ASSERT_STATUS(cfnet_network_summary(NULL, buf, sizeof buf, &need), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_forward(NULL, x, x, CFNET_MODE_INFERENCE), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_backward(NULL, x), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_zero_grad(NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_infer(NULL, x, x), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_probabilities(NULL, x, x), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_predict(NULL, x, lab, 1), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_set_option(NULL, CFNET_OPTION_THREADS, 1), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_get_option(NULL, CFNET_OPTION_THREADS, &d), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_train_step(NULL, x, lab, 1, &f), CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(cfnet_network_step_count(NULL), 0);
    CF_ASSERT_STATUS(cfnet_network_evaluate(NULL, x, lab, 1, 0, &f, &f), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_invariance(NULL, x, NULL, 0, &d), CFNET_E_INVALID_ARGUMENT);

    /* An empty network: predicting or training has nothing to run. */
    CF_ASSERT_OK(cfnet_network_create(1, 4, 4, 0, &net));
    CF_ASSERT_STATUS(cfnet_network_predict(net, x, lab, 1), CFNET_E_STATE);
    CF_ASSERT_STATUS(cfnet_network_train_step(net, x, lab, 1, &f), CFNET_E_STATE);
    CF_ASSERT_STATUS(cfnet_network_get_option(net, CFNET_OPTION_THREADS, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_summary(net, NULL, 8, &need), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_invariance(net, x, NULL, 0, NULL), CFNET_E_INVALID_ARGUMENT);
    double angle = 90;
    CF_ASSERT_STATUS(cfnet_network_invariance(net, x, &angle, 0, &d), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_invariance_ex(NULL, x, NULL, 0, CFNET_INVARIANCE_REFLECT, &d),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_invariance_ex(net, x, NULL, 0, CFNET_INVARIANCE_REFLECT, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_invariance_ex(net, x, NULL, 0, 6u, &d),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_invariance_ex(net, x, &angle, -1, CFNET_INVARIANCE_REFLECT, &d),
                     CFNET_E_INVALID_ARGUMENT);

    /* Data-parallel training: NULL handles, impossible batch positions, wrong gradient counts. */
    CF_ASSERT_STATUS(cfnet_network_set_sum_hook(NULL, NULL, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_OK(cfnet_network_set_sum_hook(net, NULL, NULL));
    /* Interrupt callback: NULL network; NULL callback (none) is valid. */
    CF_ASSERT_STATUS(cfnet_network_set_interrupt(NULL, NULL, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_OK(cfnet_network_set_interrupt(net, NULL, &f));
    CF_ASSERT_STATUS(cfnet_network_set_batch_position(NULL, 0, 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_set_batch_position(net, -1, 4), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_set_batch_position(net, 0, -4), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_set_batch_position(net, 4, 4), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_set_batch_position(net, 1, 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_gradients(NULL, &f, 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_gradients(net, NULL, 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_gradients(net, &f, 1), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_OK(cfnet_network_gradients(net, &f, 0));
    cfnet_network_free(net);
    cfnet_tensor_free(x);
}

/* Non-finite values: training and the loss reject them; inference propagates them. */
static void non_finite_inputs_follow_the_policy(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 4, 4, 0, &net));
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_dense_create(2, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    int64_t xs[] = {1, 1, 4, 4}, os[] = {1, 2};
    cfnet_tensor *x = tu_tensor(4, xs, NULL), *o = tu_tensor(2, os, NULL);
    cfnet_tensor_data(x)[3] = INFINITY;
    int32_t lab = 1;
    CF_ASSERT_STATUS(cfnet_network_train_step(net, x, &lab, 1, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_infer(net, x, o), CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "network_infer: image 0 contains NaN or Inf"));
    for (int i = 0; i < 2; i++) cfnet_tensor_data(o)[i] = INFINITY; /* a non-finite logit */
    CF_ASSERT_STATUS(cfnet_softmax_cross_entropy(o, &lab, 1, NULL, NULL), CFNET_E_INVALID_ARGUMENT);
    float loss;
    CF_ASSERT_STATUS(cfnet_softmax_cross_entropy(o, &lab, 1, &loss, NULL), CFNET_E_INVALID_ARGUMENT);
    /* Evaluation names the image by its index in the whole set, not within its batch. */
    int64_t x3s[] = {3, 1, 4, 4};
    cfnet_tensor *x3 = tu_tensor(4, x3s, NULL);
    cfnet_tensor_data(x3)[2 * 16 + 5] = NAN;
    int32_t lab3[3] = {0, 1, 0};
    CF_ASSERT_STATUS(cfnet_network_evaluate(net, x3, lab3, 3, 2, &loss, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "image 2 "));
    cfnet_tensor_free(x3);
    CF_ASSERT_STATUS(cfnet_image_rotate(x, o, 30.0), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_image_rotate(NULL, o, 30.0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_shift(NULL, NULL, 1, 1), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_normalize(NULL, 1, 99), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_image_normalize(x, 1, 99), CFNET_E_INVALID_ARGUMENT);
    cfnet_tensor_free(x);
    cfnet_tensor_free(o);
    cfnet_network_free(net);
}

/* Inference refuses images holding NaN or Inf, naming the first, even where the network would
 * hide them: ReLU maps NaN to 0, so conv -> ReLU -> dense gives a finite, meaningless output. */
static void inference_refuses_non_finite_images(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 8, 8, 1, &net));
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_conv2d_create(2, 3, 1, CFNET_PADDING_SAME, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_relu_create(&l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dense_create(2, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    int64_t xs[] = {3, 1, 8, 8}, os[] = {3, 2};
    cfnet_tensor *x = tu_tensor(4, xs, NULL), *o = tu_tensor(2, os, NULL);
    for (int i = 0; i < 3 * 64; i++) cfnet_tensor_data(x)[i] = (float)(i % 7) * 0.1f;
    CF_ASSERT_OK(cfnet_network_infer(net, x, o));
    const float nonfinite[] = {NAN, INFINITY, -INFINITY};
    for (int v = 0; v < 3; v++) {
        cfnet_tensor_data(x)[64 + 9] = nonfinite[v]; /* image 1 */
        float before[6];
        memcpy(before, cfnet_tensor_data(o), sizeof before);
        CF_ASSERT_STATUS(cfnet_network_infer(net, x, o), CFNET_E_INVALID_ARGUMENT);
        assert_non_null(strstr(cfnet_last_error(), "network_infer: image 1 contains NaN or Inf"));
        assert_memory_equal(before, cfnet_tensor_data(o), sizeof before); /* untouched */
        CF_ASSERT_STATUS(cfnet_network_probabilities(net, x, o), CFNET_E_INVALID_ARGUMENT);
        assert_non_null(strstr(cfnet_last_error(), "image 1 "));
        int32_t labels[3] = {-1, -1, -1};
        CF_ASSERT_STATUS(cfnet_network_predict(net, x, labels, 3), CFNET_E_INVALID_ARGUMENT);
        assert_int_equal(labels[0], -1);
        CF_ASSERT_STATUS(cfnet_network_forward(net, x, o, CFNET_MODE_INFERENCE),
                         CFNET_E_INVALID_ARGUMENT);
        CF_ASSERT_STATUS(cfnet_network_forward(net, x, o, CFNET_MODE_TRAINING),
                         CFNET_E_INVALID_ARGUMENT);
        float loss = -1, acc = -1;
        const int32_t y[3] = {0, 1, 0};
        CF_ASSERT_STATUS(cfnet_network_evaluate(net, x, y, 3, 2, &loss, &acc),
                         CFNET_E_INVALID_ARGUMENT);
        assert_non_null(strstr(cfnet_last_error(), "network_evaluate: image 1 contains NaN"));
        assert_true(loss == -1 && acc == -1);
        double change = -1;
        CF_ASSERT_STATUS(cfnet_network_invariance(net, x, NULL, 0, &change),
                         CFNET_E_INVALID_ARGUMENT);
        assert_non_null(strstr(cfnet_last_error(), "network_invariance: image 1 contains"));
        assert_true(change == -1);
    }
    cfnet_tensor_free(x);
    cfnet_tensor_free(o);
    cfnet_network_free(net);
}

static void persistence_and_context_functions_reject_null(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    void *buf = NULL;
    size_t size = 0;
    uint64_t v;
    unsigned char junk[16] = {0};
    CF_ASSERT_STATUS(cfnet_network_save(NULL, "x", 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_remove_stale_temporaries(NULL, &size), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_remove_stale_temporaries("", &size), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_remove_stale_temporaries("folder/", NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_remove_stale_temporaries("no/such/folder/x", &size), CFNET_E_IO);
    assert_int_equal(size, 0); /* untouched on error */
    CF_ASSERT_STATUS(cfnet_network_save_buffer(NULL, 0, &buf, &size), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_export_onnx(NULL, "x", 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_export_onnx_buffer(NULL, 0, &buf, &size),
                     CFNET_E_INVALID_ARGUMENT);
    {
        cfnet_network *n1 = NULL;
        cfnet_layer *relu = NULL;
        CF_ASSERT_OK(cfnet_network_create(1, 4, 4, 0, &n1));
        CF_ASSERT_OK(cfnet_layer_relu_create(&relu));
        CF_ASSERT_OK(cfnet_network_append(n1, relu));
        CF_ASSERT_STATUS(cfnet_network_export_onnx(n1, NULL, 0), CFNET_E_INVALID_ARGUMENT);
        CF_ASSERT_STATUS(cfnet_network_export_onnx_buffer(n1, 0, NULL, &size),
                         CFNET_E_INVALID_ARGUMENT);
        CF_ASSERT_STATUS(cfnet_network_export_onnx_buffer(n1, 0, &buf, NULL),
                         CFNET_E_INVALID_ARGUMENT);
        CF_ASSERT_STATUS(cfnet_network_export_onnx_buffer(n1, ~0u, &buf, &size),
                         CFNET_E_INVALID_ARGUMENT);
        assert_null(buf);
        cfnet_network_free(n1);
    }
    CF_ASSERT_STATUS(cfnet_network_load(NULL, &net), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_load("x", NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_load_buffer(NULL, 16, &net), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_load_buffer(junk, 0, &net), CFNET_E_FORMAT);
    CF_ASSERT_STATUS(cfnet_network_load_in(NULL, NULL, &net), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_load_buffer_in(NULL, junk, sizeof junk, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_create_in(NULL, 1, 1, 1, 0, NULL), CFNET_E_INVALID_ARGUMENT);
    assert_null(net);
    CF_ASSERT_STATUS(cfnet_context_create(NULL), CFNET_E_INVALID_ARGUMENT);
    cfnet_context_free(NULL);
    CF_ASSERT_STATUS(cfnet_context_set_allocator(NULL, NULL, NULL, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_context_set_limit(NULL, CFNET_LIMIT_HEADER_BYTES, 1), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_context_get_limit(NULL, CFNET_LIMIT_HEADER_BYTES, &v), CFNET_E_INVALID_ARGUMENT);
}

static void preset_functions_reject_bad_arguments(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    cfnet_family f = CFNET_FAMILY_CNN;
    assert_null(cfnet_family_name(0));
    assert_null(cfnet_family_name(99));
    CF_ASSERT_STATUS(cfnet_family_parse(NULL, &f), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_family_parse("cfnet", NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_family_parse("nope", &f), CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(f, CFNET_FAMILY_CNN);
    CF_ASSERT_STATUS(cfnet_network_create_classifier(CFNET_FAMILY_CFNET, 1, 32, 3, 0, 1, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_create_classifier((cfnet_family)-1, 1, 32, 3, 0, 1, &net),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_create_classifier(CFNET_FAMILY_CFNET, -1, 32, 3, 0, 1, &net),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_create_classifier(CFNET_FAMILY_CFNET, 1, 15, 3, 0, 1, &net),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_create_classifier(CFNET_FAMILY_CFNET, 1, 32, 0, 0, 1, &net),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_create_classifier(CFNET_FAMILY_CFNET, 1, 32, 3, -2, 1, &net),
                     CFNET_E_INVALID_ARGUMENT);
    assert_null(net);
    assert_int_equal(cfnet_network_multiply_adds(NULL), -1);
    CF_ASSERT_STATUS(cfnet_network_init_normal(NULL, 0.1, 1), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_OK(cfnet_network_create(1, 8, 8, 0, &net));
    CF_ASSERT_STATUS(cfnet_network_init_normal(net, -1.0, 1), CFNET_E_INVALID_ARGUMENT);
    cfnet_network_free(net);
}

static void metadata_functions_reject_null_and_bad_strings(void **state)
{
    (void)state;
    const char *k = NULL, *v = NULL;
    cfnet_network *net = NULL;
    CF_ASSERT_STATUS(cfnet_network_set_metadata(NULL, "k", "v"), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_get_metadata(NULL, "k", &v), CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(cfnet_network_metadata_count(NULL), -1);
    CF_ASSERT_STATUS(cfnet_network_metadata_at(NULL, 0, &k, &v), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_OK(cfnet_network_create(1, 4, 4, 0, &net));
    CF_ASSERT_STATUS(cfnet_network_set_metadata(net, NULL, "v"), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_set_metadata(net, "", "v"), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_set_metadata(net, "k", "\xff"), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_get_metadata(net, NULL, &v), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_get_metadata(net, "k", NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_metadata_at(net, 0, &k, &v), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_metadata_at(net, 0, NULL, &v), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_metadata_at(net, 0, &k, NULL), CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(cfnet_network_metadata_count(net), 0);
    cfnet_network_free(net);
}

static void prepare_image_rejects_null_and_wrong_handles(void **state)
{
    (void)state;
    int64_t is[3] = {1, 16, 16}, bs[4] = {1, 1, 16, 16};
    cfnet_tensor *img = tu_tensor(3, is, NULL), *bat = tu_tensor(4, bs, NULL);
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create_classifier(CFNET_FAMILY_CNN, 1, 16, 2, 2, 1, &net));
    CF_ASSERT_STATUS(cfnet_network_prepare_image(NULL, img, 0, bat, 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_prepare_image(net, NULL, 0, bat, 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_prepare_image(net, img, 0, NULL, 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_prepare_image((const cfnet_network *)img, img, 0, bat, 0),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_prepare_image(net, (const cfnet_tensor *)net, 0, bat, 0),
                     CFNET_E_INVALID_ARGUMENT);
    /* a network without the metadata of the cfnet command */
    CF_ASSERT_STATUS(cfnet_network_prepare_image(net, img, 0, bat, 0), CFNET_E_FORMAT);
    CF_ASSERT_STATUS(cfnet_network_prepare_image(net, img, 8, bat, 0), CFNET_E_INVALID_ARGUMENT);
    cfnet_tensor_free(img);
    cfnet_tensor_free(bat);
    cfnet_network_free(net);
}

static void train_epoch_rejects_null_and_bad_sizes(void **state)
{
    (void)state;
    int64_t shape[] = {2, 1, 16, 16};
    cfnet_tensor *x = tu_tensor(4, shape, NULL);
    int32_t lab[2] = {0, 1};
    int64_t order[2] = {0, 5};
    double d;
    cfnet_network *net = NULL;
    CF_ASSERT_STATUS(cfnet_network_train_epoch(NULL, x, lab, 1, NULL, 0, NULL, NULL, &d, &d),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_OK(cfnet_network_create_classifier(CFNET_FAMILY_CNN, 1, 16, 2, 2, 1, &net));
    CF_ASSERT_STATUS(cfnet_network_train_epoch(net, NULL, lab, 1, NULL, 0, NULL, NULL, &d, &d),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_train_epoch(net, x, NULL, 1, NULL, 0, NULL, NULL, &d, &d),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_train_epoch(net, x, lab, 0, NULL, 0, NULL, NULL, &d, &d),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_train_epoch(net, x, lab, 1, order, 2, NULL, NULL, &d, &d),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_train_epoch(net, x, lab, 1, order, -1, NULL, NULL, &d, &d),
                     CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(cfnet_network_step_count(net), 0);
    cfnet_network_free(net);
    cfnet_tensor_free(x);
}

static void introspection_functions_never_fail(void **state)
{
    (void)state;
    assert_int_equal(cfnet_layer_kind_count(), CFNET_LAYER_CONIC_CONV_MIRROR);
    double a = 0, b = 0;
    assert_null(cfnet_option_name(-1));
    CF_ASSERT_STATUS(cfnet_option_bounds(CFNET_OPTION_THREADS, NULL, &b), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_option_bounds(CFNET_OPTION_THREADS, &a, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_option_bounds(1000, &a, &b), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_option_default(CFNET_OPTION_THREADS, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_option_default(0, &a), CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(cfnet_option_is_integer(0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_and_error_functions_never_fail),
        cmocka_unit_test(tensor_functions_reject_null_and_bad_sizes),
        cmocka_unit_test(read_only_tensors_are_refused_by_every_writer),
        cmocka_unit_test(layer_creators_reject_null_out_and_bad_values),
        cmocka_unit_test(layer_methods_reject_null_and_unset_layers),
        cmocka_unit_test(layer_tensors_cannot_be_freed_or_reshaped),
        cmocka_unit_test(rotation_layers_reject_non_square_maps),
        cmocka_unit_test(network_functions_reject_null),
        cmocka_unit_test(non_finite_inputs_follow_the_policy),
        cmocka_unit_test(inference_refuses_non_finite_images),
        cmocka_unit_test(persistence_and_context_functions_reject_null),
        cmocka_unit_test(preset_functions_reject_bad_arguments),
        cmocka_unit_test(train_epoch_rejects_null_and_bad_sizes),
        cmocka_unit_test(metadata_functions_reject_null_and_bad_strings),
        cmocka_unit_test(prepare_image_rejects_null_and_wrong_handles),
        cmocka_unit_test(introspection_functions_never_fail),
    };
    return cmocka_run_group_tests_name("misuse", tests, NULL, NULL);
}
