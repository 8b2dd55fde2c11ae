/* Saving and loading networks: bit-exact round trips through files and buffers, resuming
 * training from a save with the optimiser state, the safetensors layout as read by an
 * independent parser, rejection of malformed input, and atomic file replacement. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <jansson.h>

#include "nn/layer.h"          /* cf_layer_ops_of */
#include "platform/platform.h" /* cf_platform_temp_keep */

#define APPEND(net, expr)                              \
    do {                                               \
        cfnet_layer *l_ = NULL;                        \
        CF_ASSERT_OK(expr);                            \
        CF_ASSERT_OK(cfnet_network_append((net), l_)); \
    } while (0)

#define S_CF 8 /* image size of the CFNet-like network */
#define S_G 7  /* image size of the G-CNN-like network */

/* conic_conv, batch_norm, relu, equivariant pool, conic_conv, dft_projection, batch_norm, relu,
 * dft_magnitude, dense. */
static cfnet_network *make_cfnet_like(uint64_t seed)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S_CF, S_CF, seed, &net));
    APPEND(net, cfnet_layer_conic_conv_create(4, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST,
                                              &l_));
    APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
    APPEND(net, cfnet_layer_conic_conv_create(5, 3, 1, CFNET_PADDING_SAME, CFNET_INTERP_BILINEAR,
                                              &l_));
    APPEND(net, cfnet_layer_dft_projection_create(6, 2, CFNET_INTERP_BILINEAR, &l_));
    APPEND(net, cfnet_layer_batch_norm_create(0.25f, 1e-3f, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_dft_magnitude_create(&l_));
    APPEND(net, cfnet_layer_dense_create(3, &l_));
    return net;
}

/* p4_lift, batch_norm, p4_conv, group_pool, conv2d, dense, dropout, softmax. */
static cfnet_network *make_gcnn_like(uint64_t seed)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S_G, S_G, seed, &net));
    APPEND(net, cfnet_layer_p4_lift_create(3, 3, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    APPEND(net, cfnet_layer_p4_conv_create(4, 3, CFNET_PADDING_VALID, &l_));
    APPEND(net, cfnet_layer_group_pool_create(CFNET_POOL_MEAN, &l_));
    APPEND(net, cfnet_layer_conv2d_create(5, 3, 2, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_dense_create(6, &l_));
    APPEND(net, cfnet_layer_dropout_create(0.3f, &l_));
    APPEND(net, cfnet_layer_softmax_create(&l_));
    return net;
}

/* p4m_lift, batch_norm, relu, p4m_conv, group_pool ... and p4m_conv to 1 x 1, p4m_dft_magnitude,
 * dense: every p4m kind. */
static cfnet_network *make_p4m_like(uint64_t seed)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S_G, S_G, seed, &net));
    APPEND(net, cfnet_layer_p4m_lift_create(3, 3, CFNET_PADDING_SAME, &l_));
    APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_p4m_conv_create(4, 3, CFNET_PADDING_VALID, &l_));
    APPEND(net, cfnet_layer_p4m_conv_create(5, 5, CFNET_PADDING_VALID, &l_));
    APPEND(net, cfnet_layer_p4m_dft_magnitude_create(&l_));
    APPEND(net, cfnet_layer_dense_create(3, &l_));
    return net;
}

/* A small network for the exhaustive malformed-input tests. */
static cfnet_network *make_tiny(uint64_t seed)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 6, 6, seed, &net));
    APPEND(net, cfnet_layer_conic_conv_create(2, 3, 1, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST,
                                              &l_));
    APPEND(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
    APPEND(net, cfnet_layer_dense_create(3, &l_));
    return net;
}

static cfnet_tensor *make_batch(int n, int S, uint64_t seed, int32_t *labels)
{
    int64_t shape[4] = {n, 1, S, S};
    tu_rng r = {seed};
    for (int i = 0; i < n; i++) labels[i] = i % 3;
    return tu_tensor(4, shape, &r);
}

static int image_size(const cfnet_network *net)
{
    int nd;
    int64_t s[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_network_input_shape(net, &nd, s));
    return (int)s[1];
}

/* Trains `steps` steps on batches derived from seed0 + t; losses may be NULL. */
static void train(cfnet_network *net, int steps, uint64_t seed0, float *losses)
{
    int S = image_size(net);
    for (int t = 0; t < steps; t++) {
        int32_t labels[6];
        cfnet_tensor *x = make_batch(6, S, seed0 + (uint64_t)t, labels);
        float loss;
        CF_ASSERT_OK(cfnet_network_train_step(net, x, labels, 6, &loss));
        if (losses) losses[t] = loss;
        cfnet_tensor_free(x);
    }
}

static void assert_same_summary(const cfnet_network *a, const cfnet_network *b)
{
    char sa[4096], sb[4096];
    CF_ASSERT_OK(cfnet_network_summary(a, sa, sizeof sa, NULL));
    CF_ASSERT_OK(cfnet_network_summary(b, sb, sizeof sb, NULL));
    assert_string_equal(sa, sb);
}

static void assert_same_tensor(const cfnet_tensor *a, const cfnet_tensor *b)
{
    int na, nb;
    int64_t sa[CFNET_MAX_DIMS], sb[CFNET_MAX_DIMS];
    CF_ASSERT_OK(cfnet_tensor_shape(a, &na, sa));
    CF_ASSERT_OK(cfnet_tensor_shape(b, &nb, sb));
    assert_int_equal(na, nb);
    assert_memory_equal(sa, sb, (size_t)na * sizeof *sa);
    assert_memory_equal(cfnet_tensor_data(a), cfnet_tensor_data(b),
                        (size_t)cfnet_tensor_numel(a) * sizeof(float));
}

/* Same layers, kinds, parameters and state, bit for bit. */
static void assert_same_weights(const cfnet_network *a, const cfnet_network *b)
{
    assert_int_equal(cfnet_network_layer_count(a), cfnet_network_layer_count(b));
    for (int i = 0; i < cfnet_network_layer_count(a); i++) {
        const cfnet_layer *la = cfnet_network_layer(a, i), *lb = cfnet_network_layer(b, i);
        assert_int_equal(cfnet_layer_kind_of(la), cfnet_layer_kind_of(lb));
        assert_int_equal(cfnet_layer_param_count(la), cfnet_layer_param_count(lb));
        assert_int_equal(cfnet_layer_state_count(la), cfnet_layer_state_count(lb));
        for (int p = 0; p < cfnet_layer_param_count(la); p++)
            assert_same_tensor(cfnet_layer_param(la, p), cfnet_layer_param(lb, p));
        for (int s = 0; s < cfnet_layer_state_count(la); s++)
            assert_same_tensor(cfnet_layer_state(la, s), cfnet_layer_state(lb, s));
    }
}

static void assert_same_inference(const cfnet_network *a, const cfnet_network *b)
{
    int32_t labels[5];
    cfnet_tensor *x = make_batch(5, image_size(a), 777, labels);
    int nd;
    int64_t s[CFNET_MAX_DIMS + 1];
    CF_ASSERT_OK(cfnet_network_output_shape(a, &nd, s + 1));
    s[0] = 5;
    cfnet_tensor *ya = tu_tensor(nd + 1, s, NULL), *yb = tu_tensor(nd + 1, s, NULL);
    CF_ASSERT_OK(cfnet_network_infer(a, x, ya));
    CF_ASSERT_OK(cfnet_network_infer(b, x, yb));
    assert_memory_equal(cfnet_tensor_data(ya), cfnet_tensor_data(yb),
                        (size_t)cfnet_tensor_numel(ya) * sizeof(float));
    cfnet_tensor_free(x);
    cfnet_tensor_free(ya);
    cfnet_tensor_free(yb);
}

static void assert_same_options(const cfnet_network *a, const cfnet_network *b)
{
    for (int o = CFNET_OPTION_OPTIMIZER; o <= CFNET_OPTION_AUG_FLIP; o++) {
        double va, vb;
        CF_ASSERT_OK(cfnet_network_get_option(a, (cfnet_option)o, &va));
        CF_ASSERT_OK(cfnet_network_get_option(b, (cfnet_option)o, &vb));
        if (va != vb) fail_msg("option %d: %.17g saved, %.17g loaded", o, va, vb);
    }
}

static char *out_path(const char *name)
{
    const char *dir = tu_outdir();
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void write_file(const char *path, const void *buf, size_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

/* Number of entries of the test output directory whose name contains ".tmp.". */
static int count_temp_files(void)
{
    DIR *d = opendir(tu_outdir());
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static void round_trip(cfnet_network *net, const char *file)
{
    train(net, 4, 100, NULL); /* non-trivial batch-norm statistics and moments */
    char *path = out_path(file);
    CF_ASSERT_OK(cfnet_network_save(net, path, 0));
    cfnet_network *from_file = NULL, *from_buf = NULL;
    CF_ASSERT_OK(cfnet_network_load(path, &from_file));
    void *buf = NULL;
    size_t size = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(net, 0, &buf, &size));
    CF_ASSERT_OK(cfnet_network_load_buffer(buf, size, &from_buf));

    /* The file holds exactly the bytes of the buffer. */
    size_t fsize;
    unsigned char *fbytes = read_file(path, &fsize);
    assert_int_equal(fsize, size);
    assert_memory_equal(fbytes, buf, size);

    cfnet_network *loaded[2] = {from_file, from_buf};
    for (int k = 0; k < 2; k++) {
        assert_same_summary(net, loaded[k]);
        assert_same_weights(net, loaded[k]);
        assert_same_inference(net, loaded[k]);
        assert_same_options(net, loaded[k]);
        assert_int_equal(cfnet_network_step_count(loaded[k]), 0); /* no CFNET_SAVE_OPTIMIZER */
    }
    free(fbytes);
    cfnet_free(buf);
    free(path);
    cfnet_network_free(from_file);
    cfnet_network_free(from_buf);
    cfnet_network_free(net);
}

static void cfnet_like_network_round_trips_bit_exactly(void **state)
{
    (void)state;
    round_trip(make_cfnet_like(11), "roundtrip.safetensors");
}

/* The steerable resampling (interp 2) is a hyper-parameter like the others. */
static void steerable_network_round_trips_bit_exactly(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S_CF, S_CF, 13, &net));
    APPEND(net, cfnet_layer_conic_conv_create(3, 5, 2, CFNET_PADDING_SAME, CFNET_INTERP_STEERABLE,
                                              &l_));
    APPEND(net, cfnet_layer_relu_create(&l_));
    APPEND(net, cfnet_layer_dft_projection_create(4, 2, CFNET_INTERP_STEERABLE, &l_));
    APPEND(net, cfnet_layer_dft_magnitude_create(&l_));
    APPEND(net, cfnet_layer_dense_create(3, &l_));
    round_trip(net, "roundtrip_steerable.safetensors");
}

static void gcnn_like_network_round_trips_bit_exactly(void **state)
{
    (void)state;
    cfnet_network *net = make_gcnn_like(12);
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_OPTIMIZER, CFNET_OPTIMIZER_SGD));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, 0.0123456789));
    round_trip(net, "roundtrip_gcnn.safetensors");
}

static void p4m_network_round_trips_bit_exactly(void **state)
{
    (void)state;
    round_trip(make_p4m_like(13), "roundtrip_p4m.safetensors");
    /* and group pooling over the 8 copies of a p4m map */
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S_G, S_G, 14, &net));
    APPEND(net, cfnet_layer_p4m_lift_create(2, 3, CFNET_PADDING_VALID, &l_));
    APPEND(net, cfnet_layer_group_pool_create(CFNET_POOL_MAX, &l_));
    APPEND(net, cfnet_layer_dense_create(3, &l_));
    round_trip(net, "roundtrip_p4m_pool.safetensors");
    /* and the DFT projection from a p4m map */
    CF_ASSERT_OK(cfnet_network_create(1, S_G, S_G, 15, &net));
    APPEND(net, cfnet_layer_p4m_lift_create(2, 3, CFNET_PADDING_VALID, &l_));
    APPEND(net, cfnet_layer_dft_projection_create(3, 1, CFNET_INTERP_BILINEAR, &l_));
    APPEND(net, cfnet_layer_p4m_dft_magnitude_create(&l_));
    APPEND(net, cfnet_layer_dense_create(3, &l_));
    round_trip(net, "roundtrip_p4m_projection.safetensors");
    /* and conic convolution with reflection, planar and 2-copy input */
    CF_ASSERT_OK(cfnet_network_create(1, S_G, S_G, 16, &net));
    APPEND(net, cfnet_layer_conic_conv_mirror_create(2, 3, 2, CFNET_PADDING_SAME,
                                                     CFNET_INTERP_BILINEAR, &l_));
    APPEND(net, cfnet_layer_conic_conv_mirror_create(2, 3, 1, CFNET_PADDING_VALID,
                                                     CFNET_INTERP_NEAREST, &l_));
    APPEND(net, cfnet_layer_group_pool_create(CFNET_POOL_MEAN, &l_));
    APPEND(net, cfnet_layer_dense_create(3, &l_));
    round_trip(net, "roundtrip_conic_mirror.safetensors");
}

static void empty_network_round_trips(void **state)
{
    (void)state;
    cfnet_network *net = NULL, *back = NULL;
    CF_ASSERT_OK(cfnet_network_create(2, 3, 5, UINT64_MAX, &net));
    void *buf = NULL;
    size_t size = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(net, CFNET_SAVE_OPTIMIZER, &buf, &size));
    CF_ASSERT_OK(cfnet_network_load_buffer(buf, size, &back));
    assert_same_summary(net, back);
    cfnet_free(buf);
    cfnet_network_free(net);
    cfnet_network_free(back);
}

/* Saved with CFNET_SAVE_OPTIMIZER, the copy continues training exactly like the original. */
static void resume(cfnet_network *net, int trained_steps)
{
    train(net, trained_steps, 200, NULL);
    void *buf = NULL;
    size_t size = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(net, CFNET_SAVE_OPTIMIZER, &buf, &size));
    cfnet_network *copy = NULL;
    CF_ASSERT_OK(cfnet_network_load_buffer(buf, size, &copy));
    cfnet_free(buf);
    assert_int_equal(cfnet_network_step_count(copy), trained_steps);
    assert_same_options(net, copy);
    float la[3], lb[3];
    train(net, 3, 300, la);
    train(copy, 3, 300, lb);
    for (int t = 0; t < 3; t++)
        if (la[t] != lb[t]) fail_msg("step %d: loss %.9g original, %.9g copy", t, la[t], lb[t]);
    assert_int_equal(cfnet_network_step_count(copy), trained_steps + 3);
    assert_same_weights(net, copy);
    cfnet_network_free(copy);
    cfnet_network_free(net);
}

static void adam_training_resumes_identically_with_augmentation(void **state)
{
    (void)state;
    cfnet_network *net = make_cfnet_like(21);
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_AUG_ROTATION,
                                          CFNET_AUG_ROTATION_QUARTER));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_AUG_JITTER, 1));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_AUG_FLIP, 1));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_WEIGHT_DECAY, 1e-3));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LR_DECAY_RATE, 0.5));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LR_DECAY_STEPS, 2));
    resume(net, 3);
}

static void sgd_training_with_dropout_resumes_identically(void **state)
{
    (void)state;
    cfnet_network *net = make_gcnn_like(22);
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_OPTIMIZER, CFNET_OPTIMIZER_SGD));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_MOMENTUM, 0.8));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, 0.05));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_AUG_ROTATION,
                                          CFNET_AUG_ROTATION_ANY));
    resume(net, 2);
}

static void untrained_network_resumes_identically(void **state)
{
    (void)state;
    resume(make_gcnn_like(23), 0);
}

static void without_the_flag_step_is_zero_and_no_moments_are_stored(void **state)
{
    (void)state;
    cfnet_network *net = make_cfnet_like(24), *copy = NULL;
    train(net, 2, 400, NULL);
    void *buf = NULL;
    size_t size = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(net, 0, &buf, &size));
    CF_ASSERT_OK(cfnet_network_load_buffer(buf, size, &copy));
    assert_int_equal(cfnet_network_step_count(net), 2);
    assert_int_equal(cfnet_network_step_count(copy), 0);
    assert_same_options(net, copy);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | ((unsigned char *)buf)[i];
    json_t *root = json_loadb((char *)buf + 8, (size_t)hlen, 0, NULL);
    assert_non_null(root);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) assert_null(strstr(key, "optimizer"));
    const char *arch =
        json_string_value(json_object_get(json_object_get(root, "__metadata__"), "architecture"));
    assert_non_null(arch);
    assert_null(strstr(arch, "\"training\""));
    assert_non_null(strstr(arch, "\"options\""));
    json_decref(root);
    cfnet_free(buf);
    cfnet_network_free(net);
    cfnet_network_free(copy);
}

/* An independent reader (8-byte length, jansson) finds the weights where the header says. */
static void file_is_readable_as_safetensors(void **state)
{
    (void)state;
    cfnet_network *net = make_cfnet_like(31);
    train(net, 2, 500, NULL);
    char *path = out_path("safetensors_layout.safetensors");
    CF_ASSERT_OK(cfnet_network_save(net, path, CFNET_SAVE_OPTIMIZER));
    size_t size;
    unsigned char *b = read_file(path, &size);
    assert_true(size >= 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
    assert_true(8 + hlen <= size);
    assert_int_equal((8 + hlen) % 8, 0);
    assert_int_equal(b[8], '{');
    json_error_t err;
    json_t *root = json_loadb((const char *)b + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &err);
    if (!root) fail_msg("header: %s", err.text);
    json_t *meta = json_object_get(root, "__metadata__");
    assert_string_equal(json_string_value(json_object_get(meta, "format")), "cfnet");
    assert_string_equal(json_string_value(json_object_get(meta, "format_version")), "1");
    assert_string_equal(json_string_value(json_object_get(meta, "library_version")),
                        CFNET_VERSION_STRING);
    json_t *arch = json_loads(json_string_value(json_object_get(meta, "architecture")), 0, NULL);
    assert_non_null(arch);
    assert_int_equal(json_array_size(json_object_get(arch, "layers")), 10);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(arch, "layers"), 4),
                                          "kind")),
        "conic_conv");
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(arch, "layers"), 4), "out_channels")),
                     5);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(arch, "training"),
                                                        "step")),
                     2);

    /* Every parameter and state tensor of every layer, and the Adam moments. */
    const unsigned char *data = b + 8 + hlen;
    size_t checked = 0;
    for (int i = 0; i < cfnet_network_layer_count(net); i++) {
        const cfnet_layer *l = cfnet_network_layer(net, i);
        for (int k = 0; k < cfnet_layer_param_count(l) + cfnet_layer_state_count(l); k++) {
            bool is_param = k < cfnet_layer_param_count(l);
            const cfnet_tensor *t = is_param ? cfnet_layer_param(l, k)
                                             : cfnet_layer_state(l, k - cfnet_layer_param_count(l));
            char name[128];
            snprintf(name, sizeof name, "%d.%s.%s", i,
                     cfnet_layer_kind_name(cfnet_layer_kind_of(l)),
                     is_param ? cfnet_layer_param_name(l, k)
                              : cfnet_layer_state_name(l, k - cfnet_layer_param_count(l)));
            json_t *e = json_object_get(root, name);
            if (!e) fail_msg("no tensor %s", name);
            assert_string_equal(json_string_value(json_object_get(e, "dtype")), "F32");
            int nd;
            int64_t shape[CFNET_MAX_DIMS];
            CF_ASSERT_OK(cfnet_tensor_shape(t, &nd, shape));
            json_t *js = json_object_get(e, "shape");
            assert_int_equal(json_array_size(js), nd);
            for (int d = 0; d < nd; d++)
                assert_int_equal(json_integer_value(json_array_get(js, (size_t)d)), shape[d]);
            json_t *off = json_object_get(e, "data_offsets");
            json_int_t begin = json_integer_value(json_array_get(off, 0));
            json_int_t end = json_integer_value(json_array_get(off, 1));
            assert_int_equal(end - begin, 4 * cfnet_tensor_numel(t));
            const float *want = cfnet_tensor_data(t);
            for (int64_t j = 0; j < cfnet_tensor_numel(t); j++) {
                const unsigned char *p = data + begin + 4 * j;
                uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24;
                float f;
                memcpy(&f, &u, 4);
                assert_memory_equal(&f, &want[j], 4);
            }
            checked++;
        }
    }
    assert_true(checked > 10);
    assert_non_null(json_object_get(root, "optimizer.0.conic_conv.weight.m"));
    assert_non_null(json_object_get(root, "optimizer.0.conic_conv.weight.v"));
    assert_non_null(json_object_get(root, "optimizer.9.dense.bias.v"));
    json_decref(arch);
    json_decref(root);
    free(b);
    free(path);
    cfnet_network_free(net);
}

/* ---- malformed input ---- */

typedef struct parts {
    json_t *root; /* the header */
    unsigned char *data;
    size_t dsize;
} parts;

static parts split(const unsigned char *buf, size_t size)
{
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    parts p;
    p.root = json_loadb((const char *)buf + 8, (size_t)hlen, 0, NULL);
    assert_non_null(p.root);
    p.dsize = size - 8 - (size_t)hlen;
    p.data = malloc(p.dsize + 64);
    assert_non_null(p.data);
    memcpy(p.data, buf + 8 + hlen, p.dsize);
    return p;
}

static void parts_free(parts *p)
{
    json_decref(p->root);
    free(p->data);
}

/* 8-byte length, header text padded to a multiple of 8, data. */
static unsigned char *assemble(const char *header, size_t hlen, const unsigned char *data,
                               size_t dsize, size_t *size)
{
    size_t padded = (hlen + 7) & ~(size_t)7;
    *size = 8 + padded + dsize;
    unsigned char *b = malloc(*size);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(b + 8, header, hlen);
    memset(b + 8 + hlen, ' ', padded - hlen);
    memcpy(b + 8 + padded, data, dsize);
    return b;
}

static unsigned char *rebuild(const parts *p, size_t *size)
{
    char *h = json_dumps(p->root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_non_null(h);
    unsigned char *b = assemble(h, strlen(h), p->data, p->dsize, size);
    free(h);
    return b;
}

/* The architecture object (a new reference) and a setter. */
static json_t *get_arch(const parts *p)
{
    json_t *meta = json_object_get(p->root, "__metadata__");
    json_t *a = json_loads(json_string_value(json_object_get(meta, "architecture")), 0, NULL);
    assert_non_null(a);
    return a;
}

static void set_arch(parts *p, json_t *arch)
{
    char *text = json_dumps(arch, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_non_null(text);
    json_object_set_new(json_object_get(p->root, "__metadata__"), "architecture",
                        json_string(text));
    free(text);
    json_decref(arch);
}

static json_int_t offset_of(json_t *entry, size_t which)
{
    return json_integer_value(json_array_get(json_object_get(entry, "data_offsets"), which));
}

static void set_offsets(json_t *entry, json_int_t begin, json_int_t end)
{
    json_t *o = json_object_get(entry, "data_offsets");
    json_array_set_new(o, 0, json_integer(begin));
    json_array_set_new(o, 1, json_integer(end));
}

/* Lays the data out again, contiguously, in the order of the current offsets (after tensors were
 * removed or added with the offsets of existing bytes). */
static void relayout(parts *p)
{
    size_t n = json_object_size(p->root), k = 0;
    const char **names = calloc(n, sizeof *names);
    assert_non_null(names);
    const char *key;
    json_t *v;
    json_object_foreach(p->root, key, v)
        if (strcmp(key, "__metadata__") != 0) names[k++] = key;
    for (size_t i = 1; i < k; i++) /* insertion sort by begin */
        for (size_t j = i; j > 0 && offset_of(json_object_get(p->root, names[j - 1]), 0) >
                                        offset_of(json_object_get(p->root, names[j]), 0);
             j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    size_t total = 0;
    for (size_t i = 0; i < k; i++) {
        json_t *e = json_object_get(p->root, names[i]);
        total += (size_t)(offset_of(e, 1) - offset_of(e, 0));
    }
    unsigned char *nd = malloc(total + 64);
    assert_non_null(nd);
    size_t at = 0;
    for (size_t i = 0; i < k; i++) {
        json_t *e = json_object_get(p->root, names[i]);
        size_t len = (size_t)(offset_of(e, 1) - offset_of(e, 0));
        memcpy(nd + at, p->data + offset_of(e, 0), len);
        set_offsets(e, (json_int_t)at, (json_int_t)(at + len));
        at += len;
    }
    free(names);
    free(p->data);
    p->data = nd;
    p->dsize = total;
}

static void expect_load_error(const unsigned char *b, size_t size, cfnet_status want,
                              const char *needle)
{
    static char sentinel_target;
    cfnet_network *const sentinel = (cfnet_network *)(void *)&sentinel_target;
    cfnet_network *out = sentinel;
    CF_ASSERT_STATUS(cfnet_network_load_buffer(b, size, &out), want);
    assert_ptr_equal(out, sentinel);
    const char *msg = cfnet_last_error();
    assert_null(strchr(msg, '\n'));
    if (needle && !strstr(msg, needle))
        fail_msg("message \"%s\" does not mention \"%s\"", msg, needle);
}

/* Rebuilds the buffer from p, expects the error and frees p. */
static void expect_parts_error(parts *p, cfnet_status want, const char *needle)
{
    size_t size;
    unsigned char *b = rebuild(p, &size);
    expect_load_error(b, size, want, needle);
    free(b);
    parts_free(p);
}

typedef struct tiny_file {
    unsigned char *buf;
    size_t size;
} tiny_file;

static tiny_file tiny_saved(unsigned flags)
{
    cfnet_network *net = make_tiny(41);
    train(net, 2, 600, NULL);
    void *buf = NULL;
    tiny_file f;
    CF_ASSERT_OK(cfnet_network_save_buffer(net, flags, &buf, &f.size));
    f.buf = malloc(f.size);
    assert_non_null(f.buf);
    memcpy(f.buf, buf, f.size);
    cfnet_free(buf);
    cfnet_network_free(net);
    /* It loads as it is. */
    cfnet_network *back = NULL;
    CF_ASSERT_OK(cfnet_network_load_buffer(f.buf, f.size, &back));
    cfnet_network_free(back);
    return f;
}

static void every_truncation_is_a_format_error(void **state)
{
    (void)state;
    tiny_file f = tiny_saved(CFNET_SAVE_OPTIMIZER);
    for (size_t n = 0; n < f.size; n++) {
        /* A fresh copy of exactly n bytes, so that ASan sees any read past the end. */
        unsigned char *cut = malloc(n ? n : 1);
        assert_non_null(cut);
        memcpy(cut, f.buf, n);
        expect_load_error(cut, n, CFNET_E_FORMAT, NULL);
        free(cut);
    }
    free(f.buf);
}

static void header_length_errors(void **state)
{
    (void)state;
    tiny_file f = tiny_saved(0);
    unsigned char *b = malloc(f.size);
    assert_non_null(b);
    /* Huge: beyond the header cap. */
    memcpy(b, f.buf, f.size);
    b[5] = 1; /* 2^40 + ... */
    expect_load_error(b, f.size, CFNET_E_LIMIT, "header length");
    /* Past the end of the buffer (but under the cap). */
    memcpy(b, f.buf, f.size);
    uint64_t h = f.size - 8 + 1;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(h >> (8 * i));
    expect_load_error(b, f.size, CFNET_E_FORMAT, "past the end");
    /* Zero: an empty header is not JSON. */
    memset(b, 0, 8);
    expect_load_error(b, f.size, CFNET_E_FORMAT, "JSON");
    free(b);
    free(f.buf);
}

static void header_text_errors(void **state)
{
    (void)state;
    tiny_file f = tiny_saved(0);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f.buf[i];
    unsigned char *b = malloc(f.size);
    assert_non_null(b);
    unsigned char *h = b + 8;

    /* Invalid UTF-8 inside a string. */
    memcpy(b, f.buf, f.size);
    unsigned char *at = (unsigned char *)strstr((char *)h, "\"cfnet\"");
    assert_non_null(at);
    at[2] = 0xff;
    expect_load_error(b, f.size, CFNET_E_FORMAT, "JSON");

    /* Not JSON. */
    memcpy(b, f.buf, f.size);
    at = memchr(h, ':', (size_t)hlen);
    assert_non_null(at);
    *at = ';';
    expect_load_error(b, f.size, CFNET_E_FORMAT, "JSON");

    /* A NUL byte in the header. */
    memcpy(b, f.buf, f.size);
    h[hlen - 1] = '\0';
    expect_load_error(b, f.size, CFNET_E_FORMAT, "JSON");

    /* JSON, but not an object. */
    parts p = split(f.buf, f.size);
    size_t size;
    unsigned char *arr = assemble("[1,2]", 5, p.data, p.dsize, &size);
    expect_load_error(arr, size, CFNET_E_FORMAT, "not a JSON object");
    free(arr);

    /* A duplicate key. */
    char *text = json_dumps(p.root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_non_null(text);
    size_t tl = strlen(text);
    char *dup = malloc(tl + 64);
    assert_non_null(dup);
    int w = snprintf(dup, tl + 64, "{\"__metadata__\":{},%s", text + 1);
    assert_true(w > 0);
    unsigned char *d = assemble(dup, (size_t)w, p.data, p.dsize, &size);
    expect_load_error(d, size, CFNET_E_FORMAT, "duplicate");
    free(d);
    free(dup);
    free(text);
    parts_free(&p);
    free(b);
    free(f.buf);
}

static void metadata_errors(void **state)
{
    (void)state;
    tiny_file f = tiny_saved(0);
    parts p;

    p = split(f.buf, f.size);
    json_object_del(p.root, "__metadata__");
    expect_parts_error(&p, CFNET_E_FORMAT, "__metadata__");

    p = split(f.buf, f.size);
    json_object_set_new(p.root, "__metadata__", json_array());
    expect_parts_error(&p, CFNET_E_FORMAT, "__metadata__");

    p = split(f.buf, f.size);
    json_object_set_new(json_object_get(p.root, "__metadata__"), "note", json_integer(3));
    expect_parts_error(&p, CFNET_E_FORMAT, "not a string");

    p = split(f.buf, f.size);
    json_object_set_new(json_object_get(p.root, "__metadata__"), "format", json_string("gguf"));
    expect_parts_error(&p, CFNET_E_FORMAT, "gguf");

    p = split(f.buf, f.size);
    json_object_set_new(json_object_get(p.root, "__metadata__"), "format_version",
                        json_string("2"));
    json_object_set_new(json_object_get(p.root, "__metadata__"), "library_version",
                        json_string("9.8.7"));
    /* The message names the release that wrote the file and this one. */
    expect_parts_error(&p, CFNET_E_FORMAT,
                       "format_version is \"2\" (written by libcfnet 9.8.7), but libcfnet "
                       CFNET_VERSION_STRING " reads format_version \"1\" only");

    p = split(f.buf, f.size);
    json_object_set_new(json_object_get(p.root, "__metadata__"), "format_version",
                        json_string("2"));
    json_object_del(json_object_get(p.root, "__metadata__"), "library_version");
    expect_parts_error(&p, CFNET_E_FORMAT, "format_version is \"2\", but libcfnet");

    p = split(f.buf, f.size);
    json_object_del(json_object_get(p.root, "__metadata__"), "architecture");
    expect_parts_error(&p, CFNET_E_FORMAT, "architecture");

    p = split(f.buf, f.size);
    json_object_set_new(json_object_get(p.root, "__metadata__"), "architecture",
                        json_string("{\"input\": [1, 6, 6], "));
    expect_parts_error(&p, CFNET_E_FORMAT, "architecture is not valid JSON");

    /* Extra string metadata is allowed (safetensors writers add their own). */
    p = split(f.buf, f.size);
    json_object_set_new(json_object_get(p.root, "__metadata__"), "note",
                        json_string("trained on yeast"));
    size_t size;
    unsigned char *b = rebuild(&p, &size);
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_load_buffer(b, size, &net));
    cfnet_network_free(net);
    free(b);
    parts_free(&p);
    free(f.buf);
}

static void architecture_errors(void **state)
{
    (void)state;
    tiny_file f = tiny_saved(0);
    parts p;
    json_t *a;

    /* Unknown kind. */
    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_array_get(json_object_get(a, "layers"), 2), "kind",
                        json_string("swish"));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "unknown kind \"swish\"");

    /* kernel 4 is rejected by cfnet_layer_conic_conv_create. */
    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_array_get(json_object_get(a, "layers"), 0), "kernel",
                        json_integer(4));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "kernel is 4");

    /* interp 3 is not a resampling (0, 1, 2 are). */
    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_array_get(json_object_get(a, "layers"), 0), "interp",
                        json_integer(3));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "unknown interpolation 3");

    /* Layers that do not fit their input: a non-square image for conic convolution. */
    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_array_set_new(json_object_get(a, "input"), 2, json_integer(7));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "does not fit");

    /* ... and a p4 layer on a planar map. */
    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_t *gp = json_pack("{s:s, s:i}", "kind", "group_pool", "mode", 0);
    json_array_insert_new(json_object_get(a, "layers"), 1, gp);
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "layer 1 (group_pool)");

    /* A configuration value that is not an integer, or out of the int range. */
    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_array_get(json_object_get(a, "layers"), 0), "kernel",
                        json_real(3.0));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "\"kernel\" is not an integer");

    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_array_get(json_object_get(a, "layers"), 4), "out_features",
                        json_integer((json_int_t)INT_MAX + 1));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "out_features");

    /* A float configuration value outside the float range, a missing and an unknown field. */
    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_array_get(json_object_get(a, "layers"), 1), "eps", json_real(1e300));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "float range");

    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_del(json_array_get(json_object_get(a, "layers"), 3), "window");
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "lacks \"window\"");

    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_array_get(json_object_get(a, "layers"), 2), "slope",
                        json_real(0.1));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "unknown field \"slope\"");

    /* Seed and input shape. */
    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(a, "seed", json_string("18446744073709551616")); /* 2^64 */
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "seed");

    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(a, "seed", json_integer(41));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "seed");

    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_array_set_new(json_object_get(a, "input"), 0, json_integer(0));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "input");

    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_del(a, "layers");
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "layers");

    /* Options: unknown, wrong type, rejected by cfnet_network_set_option. */
    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_object_get(a, "options"), "nesterov", json_true());
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "nesterov");

    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_object_get(a, "options"), "optimizer", json_string("rmsprop"));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "optimizer");

    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_object_get(a, "options"), "lr", json_real(-1.0));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "learning rate");

    /* Unknown top-level field. */
    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(a, "loss", json_string("hinge"));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "unknown field \"loss\"");
    free(f.buf);
}

static void tensor_table_errors(void **state)
{
    (void)state;
    tiny_file f = tiny_saved(0);
    parts p;
    json_t *e;

    p = split(f.buf, f.size);
    json_object_set_new(json_object_get(p.root, "0.conic_conv.weight"), "dtype",
                        json_string("F16"));
    expect_parts_error(&p, CFNET_E_FORMAT, "F16");

    p = split(f.buf, f.size);
    json_array_set_new(json_object_get(json_object_get(p.root, "0.conic_conv.bias"), "shape"), 0,
                       json_integer(-2));
    expect_parts_error(&p, CFNET_E_FORMAT, "non-negative");

    p = split(f.buf, f.size);
    json_object_set_new(json_object_get(p.root, "0.conic_conv.bias"), "shape",
                        json_pack("[I,I,I]", (json_int_t)1 << 40, (json_int_t)1 << 40,
                                  (json_int_t)1 << 40));
    expect_parts_error(&p, CFNET_E_FORMAT, "overflows");

    /* end != begin + 4 * count. */
    p = split(f.buf, f.size);
    json_array_set_new(json_object_get(json_object_get(p.root, "4.dense.bias"), "shape"), 0,
                       json_integer(4));
    expect_parts_error(&p, CFNET_E_FORMAT, "needs 16");

    p = split(f.buf, f.size);
    e = json_object_get(p.root, "1.batch_norm.beta");
    set_offsets(e, offset_of(e, 1), offset_of(e, 0));
    expect_parts_error(&p, CFNET_E_FORMAT, "begin <= end");

    p = split(f.buf, f.size);
    json_object_set_new(json_object_get(p.root, "1.batch_norm.beta"), "data_offsets",
                        json_pack("[i,s]", 0, "8"));
    expect_parts_error(&p, CFNET_E_FORMAT, "data_offsets");

    /* Overlap: move a tensor 4 bytes back onto its predecessor. */
    p = split(f.buf, f.size);
    e = json_object_get(p.root, "0.conic_conv.bias");
    set_offsets(e, offset_of(e, 0) - 4, offset_of(e, 1) - 4);
    expect_parts_error(&p, CFNET_E_FORMAT, "overlap");

    /* Gap: move the last tensor 4 bytes on (the data grows by 4 bytes). */
    p = split(f.buf, f.size);
    e = json_object_get(p.root, "4.dense.bias");
    assert_int_equal(offset_of(e, 1), (json_int_t)p.dsize);
    set_offsets(e, offset_of(e, 0) + 4, offset_of(e, 1) + 4);
    memmove(p.data + offset_of(e, 0), p.data + offset_of(e, 0) - 4, 12);
    p.dsize += 4;
    expect_parts_error(&p, CFNET_E_FORMAT, "gap of 4 bytes");

    /* Trailing bytes. */
    p = split(f.buf, f.size);
    memset(p.data + p.dsize, 0, 8);
    p.dsize += 8;
    expect_parts_error(&p, CFNET_E_FORMAT, "8 trailing bytes");

    /* Past the end of the data. */
    p = split(f.buf, f.size);
    p.dsize -= 4;
    expect_parts_error(&p, CFNET_E_FORMAT, "past the end");

    /* Missing tensor. */
    p = split(f.buf, f.size);
    json_object_del(p.root, "1.batch_norm.running_var");
    relayout(&p);
    expect_parts_error(&p, CFNET_E_FORMAT, "'1.batch_norm.running_var' is missing");

    /* Extra tensor (with its own copy of existing bytes). */
    p = split(f.buf, f.size);
    json_object_set_new(p.root, "9.dense.bias",
                        json_deep_copy(json_object_get(p.root, "4.dense.bias")));
    relayout(&p);
    expect_parts_error(&p, CFNET_E_FORMAT, "unexpected tensor '9.dense.bias'");

    /* Right size, wrong shape. */
    p = split(f.buf, f.size);
    json_object_set_new(json_object_get(p.root, "4.dense.weight"), "shape",
                        json_pack("[i,i]", 18, 3));
    expect_parts_error(&p, CFNET_E_FORMAT, "has shape 18x3, the layer needs 3x18");

    /* Entry of the wrong JSON type, unknown entry field. */
    p = split(f.buf, f.size);
    json_object_set_new(p.root, "4.dense.bias", json_string("zeros"));
    expect_parts_error(&p, CFNET_E_FORMAT, "not a JSON object");

    p = split(f.buf, f.size);
    json_object_set_new(json_object_get(p.root, "4.dense.bias"), "scale", json_real(2.0));
    expect_parts_error(&p, CFNET_E_FORMAT, "unknown field 'scale'");
    free(f.buf);
}

static void optimizer_state_errors(void **state)
{
    (void)state;
    tiny_file f = tiny_saved(CFNET_SAVE_OPTIMIZER);
    parts p;
    json_t *a;

    /* Adam needs m and v for every parameter. */
    p = split(f.buf, f.size);
    json_object_del(p.root, "optimizer.4.dense.weight.v");
    relayout(&p);
    expect_parts_error(&p, CFNET_E_FORMAT, "'optimizer.4.dense.weight.v' is missing");

    /* SGD keeps m only: v tensors are then extra. */
    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_object_get(a, "options"), "optimizer", json_string("sgd"));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, ".v'");

    /* Moments without the training section. */
    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_del(a, "training");
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "training");

    /* All moments absent is fine (a network that has not trained since). */
    p = split(f.buf, f.size);
    {
        void *it = json_object_iter(p.root);
        while (it) {
            const char *key = json_object_iter_key(it);
            it = json_object_iter_next(p.root, it);
            if (strncmp(key, "optimizer.", 10) == 0) json_object_del(p.root, key);
        }
    }
    relayout(&p);
    size_t size;
    unsigned char *b = rebuild(&p, &size);
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_load_buffer(b, size, &net));
    assert_int_equal(cfnet_network_step_count(net), 2);
    cfnet_network_free(net);
    free(b);
    parts_free(&p);

    /* The training section. */
    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_object_get(a, "training"), "step", json_integer(-1));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "step");

    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_object_get(a, "training"), "rng",
                        json_pack("[s,s,s,s]", "0", "0", "0", "0"));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "all zero");

    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_object_get(a, "training"), "rng",
                        json_pack("[s,s,s]", "1", "2", "3"));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "rng");

    p = split(f.buf, f.size);
    a = get_arch(&p);
    json_object_set_new(json_object_get(json_object_get(a, "training"), "layer_rng"), "2",
                        json_pack("[s,s,s,s]", "1", "2", "3", "4"));
    set_arch(&p, a);
    expect_parts_error(&p, CFNET_E_FORMAT, "layer_rng");
    free(f.buf);
}

/* Seeded random byte flips, mostly in the header: each load either succeeds or reports an
 * error; never a crash (the sanitizer build checks memory errors and leaks). */
static void random_byte_flips_never_crash(void **state)
{
    (void)state;
    tiny_file f = tiny_saved(CFNET_SAVE_OPTIMIZER);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f.buf[i];
    unsigned char *b = malloc(f.size);
    assert_non_null(b);
    tu_rng r = {2024};
    int loaded = 0, rejected = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(b, f.buf, f.size);
        int flips = 1 + (int)(tu_uniform(&r) * 3);
        for (int k = 0; k < flips; k++) {
            size_t span = tu_uniform(&r) < 0.8 ? (size_t)(8 + hlen) : f.size;
            size_t at = (size_t)(tu_uniform(&r) * (double)span);
            b[at] ^= (unsigned char)(1 + (int)(tu_uniform(&r) * 255));
        }
        cfnet_network *net = NULL;
        cfnet_clear_error();
        cfnet_status st = cfnet_network_load_buffer(b, f.size, &net);
        if (st == CFNET_OK) {
            assert_non_null(net);
            cfnet_network_free(net);
            loaded++;
        } else {
            assert_null(net);
            if (st != CFNET_E_FORMAT && st != CFNET_E_LIMIT)
                fail_msg("trial %d: %s: %s", trial, cfnet_status_string(st), cfnet_last_error());
            assert_true(cfnet_last_error()[0] != '\0');
            rejected++;
        }
    }
    assert_true(rejected > 1000);
    assert_true(loaded > 10);
    free(b);
    free(f.buf);
}

/* ---- files ---- */

static void saving_into_a_missing_directory_is_an_io_error(void **state)
{
    (void)state;
    cfnet_network *net = make_tiny(51);
    char *path = out_path("no-such-directory/model.safetensors");
    CF_ASSERT_STATUS(cfnet_network_save(net, path, 0), CFNET_E_IO);
    assert_non_null(strstr(cfnet_last_error(), "no-such-directory"));
    free(path);
    cfnet_network *out = NULL;
    path = out_path("no-such-file.safetensors");
    CF_ASSERT_STATUS(cfnet_network_load(path, &out), CFNET_E_IO);
    assert_null(out);
    free(path);
    CF_ASSERT_STATUS(cfnet_network_load(tu_outdir(), &out), CFNET_E_IO); /* a directory */
    assert_null(out);
    cfnet_network_free(net);
}

static void a_failed_save_leaves_the_previous_file_intact(void **state)
{
    (void)state;
    cfnet_network *a = make_tiny(61), *b = make_tiny(62);
    assert_int_equal(count_temp_files(), 0);

    /* The target is a directory: the rename fails, the directory stays, no temporary file. */
    char *dir = out_path("target_is_a_directory.safetensors");
    assert_true(mkdir(dir, 0755) == 0 || errno == EEXIST);
    CF_ASSERT_STATUS(cfnet_network_save(a, dir, 0), CFNET_E_IO);
    struct stat sb;
    assert_int_equal(stat(dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(count_temp_files(), 0);
    free(dir);

    /* A saved model whose name leaves no room for the temporary suffix (NAME_MAX): the
     * temporary name is shortened, so saving over it works, and it loads (item 8 of the
     * reliability round; this used to fail with CFNET_E_IO). Every length up to NAME_MAX is
     * covered by test_reliability. */
    long name_max = pathconf(tu_outdir(), _PC_NAME_MAX);
    if (name_max > 20 && name_max < 1024) {
        size_t len = (size_t)name_max - 4; /* + ".tmp.XXXXXX" exceeds NAME_MAX */
        char *name = malloc(len + 1);
        assert_non_null(name);
        memset(name, 'm', len);
        memcpy(name + len - 12, ".safetensors", 12);
        name[len] = '\0';
        char *path = out_path(name);
        void *buf = NULL;
        size_t size = 0;
        CF_ASSERT_OK(cfnet_network_save_buffer(a, 0, &buf, &size));
        write_file(path, buf, size);
        CF_ASSERT_OK(cfnet_network_save(b, path, 0));
        size_t now_size;
        unsigned char *now = read_file(path, &now_size);
        assert_int_equal(now_size, size);
        assert_true(memcmp(now, buf, size) != 0); /* b replaced a */
        cfnet_network *back = NULL;
        CF_ASSERT_OK(cfnet_network_load(path, &back));
        assert_same_weights(b, back);
        assert_int_equal(count_temp_files(), 0);
        cfnet_network_free(back);
        free(now);
        cfnet_free(buf);
        unlink(path);
        free(path);
        free(name);
    }
    cfnet_network_free(a);
    cfnet_network_free(b);
}

/* A save that fails midway: the file-size limit (RLIMIT_FSIZE) makes the write of the
 * temporary file fail with EFBIG after part of it is on disk. The previous model must be
 * byte-identical and load, and no temporary file may remain. */
static void a_save_failing_midway_leaves_the_previous_file_intact(void **state)
{
    (void)state;
    cfnet_network *small = make_tiny(71), *big = make_cfnet_like(72);
    char *path = out_path("midway.safetensors");
    CF_ASSERT_OK(cfnet_network_save(small, path, 0));
    size_t old_size;
    unsigned char *old = read_file(path, &old_size);
    void *bigbuf = NULL;
    size_t big_size = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(big, 0, &bigbuf, &big_size));
    assert_true(big_size > 2 * old_size);

    struct rlimit keep, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &keep), 0);
    lim = keep;
    lim.rlim_cur = (rlim_t)(big_size / 2);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    cfnet_status st = cfnet_network_save(big, path, 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &keep), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(st, CFNET_E_IO);
    assert_non_null(strstr(cfnet_last_error(), "network_save"));

    size_t now_size;
    unsigned char *now = read_file(path, &now_size);
    assert_int_equal(now_size, old_size);
    assert_memory_equal(now, old, old_size);
    cfnet_network *back = NULL;
    CF_ASSERT_OK(cfnet_network_load(path, &back));
    assert_same_weights(small, back);
    assert_int_equal(count_temp_files(), 0);
    /* Without the limit the same save succeeds. */
    CF_ASSERT_OK(cfnet_network_save(big, path, 0));
    cfnet_network_free(back);
    free(now);
    free(old);
    cfnet_free(bigbuf);
    free(path);
    cfnet_network_free(small);
    cfnet_network_free(big);
}

static void saving_replaces_an_existing_file_with_the_usual_mode(void **state)
{
    (void)state;
    cfnet_network *a = make_tiny(71), *b = make_tiny(72), *back = NULL;
    char *path = out_path("replaced.safetensors");
    unlink(path);
    mode_t old = umask(022);
    CF_ASSERT_OK(cfnet_network_save(a, path, 0));
    umask(old);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    assert_int_equal(chmod(path, 0640), 0);
    CF_ASSERT_OK(cfnet_network_save(b, path, CFNET_SAVE_OPTIMIZER));
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0640); /* the replaced file's mode is kept */
    CF_ASSERT_OK(cfnet_network_load(path, &back));
    assert_same_weights(b, back);
    assert_int_equal(count_temp_files(), 0);
    cfnet_network_free(back);
    free(path);
    cfnet_network_free(a);
    cfnet_network_free(b);
}

static void every_kind_has_an_ops_table_named_like_the_kind(void **state)
{
    (void)state;
    for (int k = CFNET_LAYER_CONV2D; k <= CFNET_LAYER_CONIC_CONV_MIRROR; k++) {
        const cf_layer_ops *ops = cf_layer_ops_of(k);
        assert_non_null(ops);
        assert_string_equal(ops->name, cfnet_layer_kind_name(k));
    }
    assert_null(cf_layer_ops_of(0));
    assert_null(cf_layer_ops_of(CFNET_LAYER_CONIC_CONV_MIRROR + 1));
    assert_null(cf_layer_ops_of(-1));
}

static void null_arguments_are_rejected(void **state)
{
    (void)state;
    cfnet_network *net = make_tiny(81), *out = NULL;
    void *buf = NULL;
    size_t size = 0;
    char *path = out_path("null_args.safetensors");
    CF_ASSERT_STATUS(cfnet_network_save(NULL, path, 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_save(net, NULL, 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_save(net, "", 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_save(net, path, 0x8u), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_save_buffer(NULL, 0, &buf, &size), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_save_buffer(net, 0, NULL, &size), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_save_buffer(net, 0, &buf, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_save_buffer(net, 4u, &buf, &size), CFNET_E_INVALID_ARGUMENT);
    assert_null(buf);
    assert_int_equal(size, 0);
    CF_ASSERT_STATUS(cfnet_network_load(NULL, &out), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_load(path, NULL), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_load_buffer(NULL, 16, &out), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_load_buffer("12345678", 8, NULL), CFNET_E_INVALID_ARGUMENT);
    assert_null(out);
    cfnet_free(NULL);
    free(path);
    cfnet_network_free(net);
}

/* "<path>.tmp.<this process id>.<this host>", the name under which the library writes path's
 * temporary file (heap string). */
static char *own_temp_name(const char *path)
{
    char host[256];
    assert_int_equal(gethostname(host, sizeof host), 0);
    host[255] = '\0';
    size_t n = strlen(path) + strlen(host) + 32;
    char *tmp = malloc(n);
    assert_non_null(tmp);
    snprintf(tmp, n, "%s.tmp.%ld.%s", path, (long)getpid(), host);
    return tmp;
}

/* Saves a network to path with the file size limited to half of it: the write fails
 * (CFNET_E_IO), and the message names the temporary file. */
static void save_failing_midway(const char *path, uint64_t seed)
{
    cfnet_network *big = make_cfnet_like(seed);
    void *buf = NULL;
    size_t size = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(big, 0, &buf, &size));
    struct rlimit keep, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &keep), 0);
    lim = keep;
    lim.rlim_cur = (rlim_t)(size / 2);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    cfnet_status st = cfnet_network_save(big, path, 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &keep), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(st, CFNET_E_IO);
    cfnet_free(buf);
    cfnet_network_free(big);
}

/* The temporary file is "<name>.tmp.<pid>.<host>", so that a process killed while it saves
 * leaves a file that a later program can tell to be stale and remove (cfnet train does): the
 * failing write names it. It used to be "<name>.tmp.XXXXXX", which nobody could ever clean. */
static void the_temporary_file_names_the_process_and_the_host(void **state)
{
    (void)state;
    char *path = out_path("named_tmp.safetensors"), *tmp = own_temp_name(path);
    save_failing_midway(path, 73);
    const char *slash = strrchr(tmp, '/');
    if (!strstr(cfnet_last_error(), slash ? slash + 1 : tmp))
        fail_msg("the temporary file is not %s: %s", tmp, cfnet_last_error());
    assert_int_equal(count_temp_files(), 0);
    unlink(path);
    free(tmp);
    free(path);
}

/* A file of the temporary file's name already there is one that an earlier process of the same
 * id on this host left (ids are reused): replaced, and gone after the save. One that a live
 * writer holds locked (another thread saving the same path, a process of the same id on a
 * machine of the same name sharing the folder) is left alone, and the save still succeeds. */
static void an_own_named_temporary_file_is_replaced_unless_locked(void **state)
{
    (void)state;
    cfnet_network *net = make_tiny(74);
    char *path = out_path("own_tmp.safetensors"), *tmp = own_temp_name(path);
    write_file(tmp, "stale", 5);
    CF_ASSERT_OK(cfnet_network_save(net, path, 0));
    struct stat sb;
    assert_int_not_equal(lstat(tmp, &sb), 0);
    assert_int_equal(count_temp_files(), 0);

    write_file(tmp, "live", 4);
    int fd = open(tmp, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
    CF_ASSERT_OK(cfnet_network_save(net, path, 0));
    size_t n;
    unsigned char *held = read_file(tmp, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(held, "live", 4);
    assert_int_equal(count_temp_files(), 1); /* only the locked one */
    cfnet_network *back = NULL;
    CF_ASSERT_OK(cfnet_network_load(path, &back));
    assert_same_weights(net, back);
    close(fd);
    unlink(tmp);
    unlink(path);
    free(held);
    free(tmp);
    free(path);
    cfnet_network_free(back);
    cfnet_network_free(net);
}

/* A process id that no longer exists: a child that has exited and been waited for. */
static long dead_pid(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    return (long)pid;
}

/* A fresh folder under the test output directory (heap string). */
static char *fresh_dir(const char *name)
{
    char *dir = out_path(name);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(mkdir(dir, 0777), 0);
    return dir;
}

static void touch(const char *dir, const char *name, const char *text)
{
    char p[16384];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    write_file(p, text, strlen(text));
}

static bool exists_in(const char *dir, const char *name)
{
    char p[16384];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return lstat(p, &sb) == 0;
}

static void this_host(char *host, size_t size)
{
    assert_int_equal(gethostname(host, size), 0);
    host[size - 1] = '\0';
}

/* cfnet_remove_stale_temporaries removes "<name>.tmp.<pid>.<host>" of a dead process on this
 * host, and nothing else: not a live process's (nor this process's), not one locked by a live
 * writer, not another host's, not "<name>.tmp.foo", another file's, a link, or the command's
 * probe name; *removed counts. */
static void stale_temporary_files_of_dead_saves_are_removed(void **state)
{
    (void)state;
    char *dir = fresh_dir("stale"), host[256], name[512], locked[512];
    this_host(host, sizeof host);
    long dead = dead_pid(), dead2 = dead_pid();
    const char *keep[16];
    int nkeep = 0;
    char kept[8][512];
    snprintf(name, sizeof name, "m.safetensors.tmp.%ld.%s", dead, host);
    touch(dir, name, "stale");
    snprintf(kept[0], 512, "m.safetensors.tmp.%ld.%s", (long)getppid(), host);  /* live */
    snprintf(kept[1], 512, "m.safetensors.tmp.%ld.%s", (long)getpid(), host);   /* own */
    snprintf(kept[2], 512, "m.safetensors.tmp.%ld.otherhost-%s", dead, host); /* other host */
    snprintf(kept[3], 512, "m.safetensors.tmp.foo");
    snprintf(kept[4], 512, "n.safetensors.tmp.%ld.%s", dead, host); /* another file's */
    snprintf(kept[5], 512, "m.safetensors.tmp.%ld.0", dead);           /* cfnet's probe */
    snprintf(kept[6], 512, "m.safetensors.tmp.0%ld.%s", dead, host);   /* not a process id */
    for (int i = 0; i < 7; i++) {
        if (i == 5) touch(dir, kept[i], "");
        else touch(dir, kept[i], "x");
        keep[nkeep++] = kept[i];
    }
    char link[512];
    snprintf(link, sizeof link, "%s/m.safetensors.tmp.%ld.%s", dir, dead2, host);
    assert_int_equal(symlink("elsewhere", link), 0);
    keep[nkeep++] = strrchr(link, '/') + 1;
    /* a dead process's name, but a live writer holds its lock (a process of that id elsewhere
     * sharing the folder): kept */
    snprintf(locked, sizeof locked, "%s/m.safetensors.tmp.%ld.%s", dir, dead_pid(), host);
    write_file(locked, "held", 4);
    int fd = open(locked, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
    keep[nkeep++] = strrchr(locked, '/') + 1;

    char path[4096];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    size_t removed = 99;
    CF_ASSERT_OK(cfnet_remove_stale_temporaries(path, &removed));
    assert_int_equal(removed, 1);
    assert_false(exists_in(dir, name));
    for (int i = 0; i < nkeep; i++)
        if (!exists_in(dir, keep[i])) fail_msg("%s was removed", keep[i]);
    CF_ASSERT_OK(cfnet_remove_stale_temporaries(path, &removed));
    assert_int_equal(removed, 0);
    close(fd); /* the writer is gone: now it is stale */
    CF_ASSERT_OK(cfnet_remove_stale_temporaries(path, NULL));
    assert_false(exists_in(dir, strrchr(locked, '/') + 1));
    /* a relative path: the current folder */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    touch(".", name, "stale");
    touch(".", name + 1, "x"); /* "<name>" not a prefix of this one's */
    CF_ASSERT_OK(cfnet_remove_stale_temporaries("m.safetensors", &removed));
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(removed, 1);
    assert_false(exists_in(dir, name));
    assert_true(exists_in(dir, name + 1));
    free(dir);
}

/* With the files `gone` in gdir and `kept` in kdir made, cleaning `path` removes exactly gone. */
static void removes_one(const char *path, const char *gdir, const char *gone, const char *kdir,
                        const char *kept)
{
    touch(gdir, gone, "stale");
    touch(kdir, kept, "x");
    size_t removed = 0;
    CF_ASSERT_OK(cfnet_remove_stale_temporaries(path, &removed));
    assert_int_equal(removed, 1);
    if (exists_in(gdir, gone)) fail_msg("%s/%s was kept", gdir, gone);
    if (!exists_in(kdir, kept)) fail_msg("%s/%s was removed", kdir, kept);
}

/* A file name too long to take the suffix is shortened by the save so that the temporary name
 * has the folder's longest length: such a dead save's file is removed too, one of another
 * length is not. */
static void shortened_stale_temporary_names_are_removed(void **state)
{
    (void)state;
    char *dir = fresh_dir("stale_long"), host[256];
    this_host(host, sizeof host);
    long name_max = pathconf(dir, _PC_NAME_MAX);
    assert_true(name_max > 100 && name_max < 4000);
    char base[4096], sfx[512], tmp[8192], wrong[8192], path[8192];
    memset(base, 'b', (size_t)name_max - 5);
    base[name_max - 5] = '\0';
    snprintf(path, sizeof path, "%s/%s", dir, base);
    snprintf(sfx, sizeof sfx, ".tmp.%ld.%s", dead_pid(), host);
    int keep = (int)(name_max - (long)strlen(sfx));
    snprintf(tmp, sizeof tmp, "%.*s%s", keep, base, sfx);
    snprintf(wrong, sizeof wrong, "%.*s%s", keep - 1, base, sfx);
    assert_int_equal(strlen(tmp), (size_t)name_max);
    removes_one(path, dir, tmp, dir, wrong);
    /* the save's own temporary name is that length too: a save of this path leaves none */
    cfnet_network *net = make_tiny(75);
    CF_ASSERT_OK(cfnet_network_save(net, path, 0));
    cfnet_network_free(net);
    free(dir);
}

/* A long name of 2-byte UTF-8 characters whose shortening would fall inside a character is cut
 * before it: the save's temporary name (named by a failing write) and the cleaner agree on that
 * name, and the cleaner also removes the name cut inside the character that earlier versions
 * wrote. */
static void shortened_temporary_names_keep_utf8_characters_whole(void **state)
{
    (void)state;
    char *dir = fresh_dir("stale_utf8"), host[256], sfx[512], base[4096], path[8192];
    this_host(host, sizeof host);
    long name_max = pathconf(dir, _PC_NAME_MAX);
    assert_true(name_max > 100 && name_max < 4000);
    snprintf(sfx, sizeof sfx, ".tmp.%ld.%s", (long)getpid(), host);
    size_t cut = (size_t)name_max - strlen(sfx), len = 0; /* the byte limit's cut */
    if (cut % 2 == 0) base[len++] = 'a'; /* so that the cut falls inside a character */
    while (len + 2 <= (size_t)name_max) {
        base[len++] = (char)0xc3; /* U+00E9 */
        base[len++] = (char)0xa9;
    }
    base[len] = '\0';
    assert_int_equal((unsigned char)base[cut], 0xa9); /* inside a character */
    assert_int_equal(cf_platform_temp_keep(base, len, strlen(sfx), (size_t)name_max), cut - 1);
    assert_int_equal(cf_platform_temp_keep(base, 5, strlen(sfx), (size_t)name_max), 5);
    assert_int_equal(cf_platform_temp_keep("\x80\x80\x80\x80\x80", 5, 3, 6), 3); /* not UTF-8 */
    snprintf(path, sizeof path, "%s/%s", dir, base);

    /* the save: a write that fails names the temporary file */
    save_failing_midway(path, 76);
    char tmp[8192];
    snprintf(tmp, sizeof tmp, "%.*s%s'", (int)cut - 1, base, sfx);
    if (!strstr(cfnet_last_error(), tmp))
        fail_msg("the temporary name is not cut before the character: %s", cfnet_last_error());

    /* the cleaner: a dead save's name cut before the character, and one cut inside it */
    snprintf(sfx, sizeof sfx, ".tmp.%ld.%s", dead_pid(), host);
    cut = (size_t)name_max - strlen(sfx);
    char whole[8192], split[8192], other[8192];
    size_t k = cf_platform_temp_keep(base, len, strlen(sfx), (size_t)name_max);
    snprintf(whole, sizeof whole, "%.*s%s", (int)k, base, sfx);
    snprintf(split, sizeof split, "%.*s%s", (int)cut, base, sfx);
    snprintf(other, sizeof other, "%.*s%s", (int)k - 2, base, sfx); /* neither: kept */
    assert_int_not_equal(cut, k);
    removes_one(path, dir, whole, dir, other);
    removes_one(path, dir, split, dir, other);
    free(dir);
}

/* A symbolic link at the path is replaced by a save, which writes beside the link: that folder
 * is the one cleaned, not the target's. */
static void stale_temporaries_of_a_link_are_beside_the_link(void **state)
{
    (void)state;
    char *dir = fresh_dir("stale_link"), host[256], sub[4096], lpath[4096], name[512];
    this_host(host, sizeof host);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    assert_int_equal(mkdir(sub, 0777), 0);
    snprintf(lpath, sizeof lpath, "%s/link.safetensors", dir);
    assert_int_equal(symlink("sub/target.safetensors", lpath), 0);
    long dead = dead_pid();
    snprintf(name, sizeof name, "link.safetensors.tmp.%ld.%s", dead, host);
    char other[512];
    snprintf(other, sizeof other, "target.safetensors.tmp.%ld.%s", dead, host);
    removes_one(lpath, dir, name, sub, other);
    free(dir);
}

/* A folder that is missing, or not a folder: CFNET_E_IO naming it, *removed untouched; a NULL,
 * empty or folder path: CFNET_E_INVALID_ARGUMENT. */
static void removing_stale_temporaries_reports_bad_paths(void **state)
{
    (void)state;
    char *dir = fresh_dir("stale_bad"), p[4096];
    size_t removed = 42;
    snprintf(p, sizeof p, "%s/missing/m.safetensors", dir);
    CF_ASSERT_STATUS(cfnet_remove_stale_temporaries(p, &removed), CFNET_E_IO);
    assert_non_null(strstr(cfnet_last_error(), "missing"));
    touch(dir, "file", "x");
    snprintf(p, sizeof p, "%s/file/m.safetensors", dir);
    CF_ASSERT_STATUS(cfnet_remove_stale_temporaries(p, &removed), CFNET_E_IO);
    if (geteuid() != 0) { /* root reads any folder */
        snprintf(p, sizeof p, "%s/closed", dir);
        assert_int_equal(mkdir(p, 0300), 0);
        snprintf(p, sizeof p, "%s/closed/m.safetensors", dir);
        CF_ASSERT_STATUS(cfnet_remove_stale_temporaries(p, &removed), CFNET_E_IO);
    }
    CF_ASSERT_STATUS(cfnet_remove_stale_temporaries(NULL, &removed), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_remove_stale_temporaries("", &removed), CFNET_E_INVALID_ARGUMENT);
    snprintf(p, sizeof p, "%s/", dir);
    CF_ASSERT_STATUS(cfnet_remove_stale_temporaries(p, &removed), CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(removed, 42);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cfnet_like_network_round_trips_bit_exactly),
        cmocka_unit_test(steerable_network_round_trips_bit_exactly),
        cmocka_unit_test(gcnn_like_network_round_trips_bit_exactly),
        cmocka_unit_test(p4m_network_round_trips_bit_exactly),
        cmocka_unit_test(empty_network_round_trips),
        cmocka_unit_test(adam_training_resumes_identically_with_augmentation),
        cmocka_unit_test(sgd_training_with_dropout_resumes_identically),
        cmocka_unit_test(untrained_network_resumes_identically),
        cmocka_unit_test(without_the_flag_step_is_zero_and_no_moments_are_stored),
        cmocka_unit_test(file_is_readable_as_safetensors),
        cmocka_unit_test(every_truncation_is_a_format_error),
        cmocka_unit_test(header_length_errors),
        cmocka_unit_test(header_text_errors),
        cmocka_unit_test(metadata_errors),
        cmocka_unit_test(architecture_errors),
        cmocka_unit_test(tensor_table_errors),
        cmocka_unit_test(optimizer_state_errors),
        cmocka_unit_test(random_byte_flips_never_crash),
        cmocka_unit_test(saving_into_a_missing_directory_is_an_io_error),
        cmocka_unit_test(a_failed_save_leaves_the_previous_file_intact),
        cmocka_unit_test(a_save_failing_midway_leaves_the_previous_file_intact),
        cmocka_unit_test(saving_replaces_an_existing_file_with_the_usual_mode),
        cmocka_unit_test(the_temporary_file_names_the_process_and_the_host),
        cmocka_unit_test(an_own_named_temporary_file_is_replaced_unless_locked),
        cmocka_unit_test(stale_temporary_files_of_dead_saves_are_removed),
        cmocka_unit_test(shortened_stale_temporary_names_are_removed),
        cmocka_unit_test(stale_temporaries_of_a_link_are_beside_the_link),
        cmocka_unit_test(shortened_temporary_names_keep_utf8_characters_whole),
        cmocka_unit_test(removing_stale_temporaries_reports_bad_paths),
        cmocka_unit_test(every_kind_has_an_ops_table_named_like_the_kind),
        cmocka_unit_test(null_arguments_are_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
