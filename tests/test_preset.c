/* Preset classifiers: names, every family at sizes 16..512, the size limits, quarter-turn
 * invariance of the DFT families, the biomarker demo's networks, and the table in
 * docs/guide.md (compared with the networks built here, so the document cannot drift). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cfnet_family families[6] = {CFNET_FAMILY_CFNET, CFNET_FAMILY_CNET,
                                         CFNET_FAMILY_GCNN, CFNET_FAMILY_GCNN_DFT,
                                         CFNET_FAMILY_CNN,  CFNET_FAMILY_GCNN_P4M};

static void family_names_round_trip(void **state)
{
    (void)state;
    static const char *const names[6] = {"cfnet", "cnet", "gcnn", "gcnn-dft", "cnn", "gcnn-p4m"};
    for (int i = 0; i < 6; i++) {
        assert_string_equal(cfnet_family_name(families[i]), names[i]);
        cfnet_family f = (cfnet_family)0;
        CF_ASSERT_OK(cfnet_family_parse(names[i], &f));
        assert_int_equal(f, families[i]);
    }
    cfnet_family f = (cfnet_family)0;
    CF_ASSERT_OK(cfnet_family_parse("GCNN-DFT", &f));
    assert_int_equal(f, CFNET_FAMILY_GCNN_DFT);
    CF_ASSERT_OK(cfnet_family_parse("CFNet", &f));
    assert_int_equal(f, CFNET_FAMILY_CFNET);
    assert_null(cfnet_family_name(0));
    CF_ASSERT_OK(cfnet_family_parse("GCNN-P4M", &f));
    assert_int_equal(f, CFNET_FAMILY_GCNN_P4M);
    assert_null(cfnet_family_name(7));
    assert_null(cfnet_family_name(-1));
    f = CFNET_FAMILY_CNN;
    CF_ASSERT_STATUS(cfnet_family_parse("resnet", &f), CFNET_E_INVALID_ARGUMENT);
    assert_int_equal(f, CFNET_FAMILY_CNN); /* unchanged */
    const char *msg = cfnet_last_error();
    for (int i = 0; i < 5; i++) assert_non_null(strstr(msg, names[i]));
    CF_ASSERT_STATUS(cfnet_family_parse("cfnet ", &f), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_family_parse("", &f), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_family_parse(NULL, &f), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_family_parse("cnn", NULL), CFNET_E_INVALID_ARGUMENT);
}

/* Spatial size of the map each convolution layer works at, and the final map. */
static int conv_maps(const cfnet_network *net, int *maps, int max)
{
    int n = 0;
    for (int i = 0; i < cfnet_network_layer_count(net); i++) {
        const cfnet_layer *l = cfnet_network_layer(net, i);
        int k = cfnet_layer_kind_of(l);
        if (k != CFNET_LAYER_CONV2D && k != CFNET_LAYER_CONIC_CONV && k != CFNET_LAYER_P4_LIFT &&
            k != CFNET_LAYER_P4_CONV && k != CFNET_LAYER_P4M_LIFT && k != CFNET_LAYER_P4M_CONV)
            continue;
        int nd;
        int64_t shape[CFNET_MAX_DIMS];
        CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, shape));
        if (n < max) maps[n] = (int)shape[nd - 1];
        n++;
    }
    return n;
}

static void every_family_builds_from_16_to_512(void **state)
{
    (void)state;
    static const int sizes[] = {16, 17, 28, 31, 50, 64, 65, 100, 127, 255, 256, 511, 512};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int f = 0; f < 6; f++) {
            int S = sizes[s];
            cfnet_network *net = NULL;
            CF_ASSERT_OK(cfnet_network_create_classifier(families[f], 2, S, 7, 0, 1, &net));
            int nd;
            int64_t shape[CFNET_MAX_DIMS];
            CF_ASSERT_OK(cfnet_network_input_shape(net, &nd, shape));
            assert_int_equal(shape[0], 2);
            assert_int_equal(shape[1], S);
            assert_int_equal(shape[2], S);
            CF_ASSERT_OK(cfnet_network_output_shape(net, &nd, shape));
            assert_int_equal(nd, 1);
            assert_int_equal(shape[0], 7);
            /* the map before the head is 4 to 8 pixels, every pooling is symmetric */
            int maps[16];
            int n = conv_maps(net, maps, 16);
            assert_true(n >= 3 && n <= 16);
            assert_int_equal(maps[0], S);
            assert_true(maps[n - 1] >= 4 && maps[n - 1] <= 8);
            for (int i = 0; i < cfnet_network_layer_count(net); i++) {
                const cfnet_layer *l = cfnet_network_layer(net, i);
                if (cfnet_layer_kind_of(l) != CFNET_LAYER_POOL) continue;
                int64_t in[CFNET_MAX_DIMS], out[CFNET_MAX_DIMS];
                int ni, no;
                CF_ASSERT_OK(cfnet_layer_input_shape(l, &ni, in));
                CF_ASSERT_OK(cfnet_layer_output_shape(l, &no, out));
                int64_t window = in[ni - 1] - 2 * (out[no - 1] - 1); /* stride 2 */
                assert_true(window == 2 || window == 3);
                assert_int_equal(window, in[ni - 1] % 2 == 0 ? 2 : 3);
            }
            assert_true(cfnet_network_param_count(net) > 0);
            assert_true(cfnet_network_multiply_adds(net) > cfnet_network_param_count(net));
            cfnet_network_free(net);
        }
}

static void sizes_outside_16_to_512_fail_with_a_message(void **state)
{
    (void)state;
    static const int bad[] = {15, 513, 0, -16, 4096};
    for (size_t s = 0; s < sizeof bad / sizeof bad[0]; s++) {
        cfnet_network *net = (cfnet_network *)&net; /* must stay untouched */
        CF_ASSERT_STATUS(
            cfnet_network_create_classifier(CFNET_FAMILY_CFNET, 1, bad[s], 3, 0, 1, &net),
            CFNET_E_INVALID_ARGUMENT);
        assert_ptr_equal(net, (cfnet_network *)&net);
        assert_non_null(strstr(cfnet_last_error(), "16 to 512"));
    }
}

static void bad_arguments_are_rejected(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    CF_ASSERT_STATUS(cfnet_network_create_classifier((cfnet_family)0, 1, 32, 3, 0, 1, &net),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_create_classifier((cfnet_family)7, 1, 32, 3, 0, 1, &net),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_create_classifier(CFNET_FAMILY_CNN, 0, 32, 3, 0, 1, &net),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_create_classifier(CFNET_FAMILY_CNN, 1, 32, 1, 0, 1, &net),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_create_classifier(CFNET_FAMILY_CNN, 1, 32, 3, -1, 1, &net),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_create_classifier(CFNET_FAMILY_CNN, 1, 32, 3, 1025, 1, &net),
                     CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_create_classifier(CFNET_FAMILY_CNN, 1, 32, 3, 0, 1, NULL),
                     CFNET_E_INVALID_ARGUMENT);
    assert_null(net);
    assert_int_equal(cfnet_network_multiply_adds(NULL), -1);
}

static void default_width_is_16_and_p4_families_use_half(void **state)
{
    (void)state;
    for (int f = 0; f < 6; f++) {
        cfnet_network *a = NULL, *b = NULL;
        CF_ASSERT_OK(cfnet_network_create_classifier(families[f], 1, 32, 4, 0, 9, &a));
        CF_ASSERT_OK(cfnet_network_create_classifier(families[f], 1, 32, 4, 16, 9, &b));
        assert_int_equal(cfnet_network_param_count(a), cfnet_network_param_count(b));
        int nd;
        int64_t shape[CFNET_MAX_DIMS];
        CF_ASSERT_OK(cfnet_layer_output_shape(cfnet_network_layer(a, 0), &nd, shape));
        int p4 = families[f] == CFNET_FAMILY_GCNN || families[f] == CFNET_FAMILY_GCNN_DFT;
        int p4m = families[f] == CFNET_FAMILY_GCNN_P4M;
        assert_int_equal(shape[0], p4 ? 8 : p4m ? 6 : 16);
        if (p4) assert_int_equal(shape[1], 4);
        if (p4m) assert_int_equal(shape[1], 8);
        /* same seed, same weights */
        for (int i = 0; i < cfnet_network_layer_count(a); i++) {
            const cfnet_layer *la = cfnet_network_layer(a, i), *lb = cfnet_network_layer(b, i);
            for (int p = 0; p < cfnet_layer_param_count(la); p++) {
                const cfnet_tensor *ta = cfnet_layer_param(la, p), *tb = cfnet_layer_param(lb, p);
                assert_memory_equal(cfnet_tensor_data(ta), cfnet_tensor_data(tb),
                                    (size_t)cfnet_tensor_numel(ta) * sizeof(float));
            }
        }
        cfnet_network_free(a);
        cfnet_network_free(b);
    }
}

/* CFNet and G-CNN+DFT: the output does not change under quarter turns (inference mode, with
 * batch-norm statistics made non-trivial by a few training steps). */
static void dft_families_are_invariant_to_quarter_turns(void **state)
{
    (void)state;
    static const int sizes[] = {16, 29, 50};
    static const cfnet_family inv[2] = {CFNET_FAMILY_CFNET, CFNET_FAMILY_GCNN_DFT};
    tu_rng r = {7};
    for (int s = 0; s < 3; s++)
        for (int f = 0; f < 2; f++) {
            int S = sizes[s];
            cfnet_network *net = NULL;
            CF_ASSERT_OK(cfnet_network_create_classifier(inv[f], 2, S, 3, 6, 3, &net));
            int64_t shape[4] = {4, 2, S, S};
            cfnet_tensor *x = tu_tensor(4, shape, &r);
            int32_t labels[4] = {0, 1, 2, 1};
            CF_ASSERT_OK(cfnet_network_train_step(net, x, labels, 4, NULL));
            double change = 1;
            CF_ASSERT_OK(cfnet_network_invariance(net, x, NULL, 0, &change));
            if (!(change <= 1e-5))
                fail_msg("%s at %d x %d: relative change %g under quarter turns",
                         cfnet_family_name(inv[f]), S, S, change);
            cfnet_tensor_free(x);
            cfnet_network_free(net);
        }
}

/* The presets at 50 x 50, width 12, 10 classes are the demo's networks: README's parameter
 * counts. */
static void biomarker_preset_matches_the_demo(void **state)
{
    (void)state;
    static const int64_t params[5] = {9850, 5230, 4564, 9466, 5230};
    for (int f = 0; f < 5; f++) {
        cfnet_network *net = NULL;
        CF_ASSERT_OK(cfnet_network_create_classifier(families[f], 1, 50, 10, 12, 1, &net));
        assert_int_equal(cfnet_network_param_count(net), params[f]);
        int maps[8];
        assert_int_equal(conv_maps(net, maps, 8), 4);
        assert_int_equal(maps[0], 50);
        assert_int_equal(maps[1], 25);
        assert_int_equal(maps[2], 12);
        assert_int_equal(maps[3], 6);
        cfnet_network_free(net);
    }
}

/* The biomarker network of the demo's results (docs/results.md), built layer by layer as
 * examples/common/models.c built it before the presets existed: four 3x3 same-padding layers
 * with batch norm and ReLU, max pooling (window 0) after the first three, R = 2, 2, 1, 1; the
 * DFT head with width projection filters (p4: half) at 4 rotations, bilinear; the other heads
 * 2x2 mean pooling; dense. Since 0.2 the CFNet's conic layers resample steerably and its
 * weights are drawn from N(0, 0.1^2) (the ablation study's choice, docs/results.md); CNet
 * keeps nearest resampling and He initialisation. */
static cfnet_network *hand_biomarker(cfnet_family fam, int width, int classes, uint64_t seed)
{
    static const int R[4] = {2, 2, 1, 1};
    int p4 = fam == CFNET_FAMILY_GCNN || fam == CFNET_FAMILY_GCNN_DFT;
    int w = p4 ? (width + 1) / 2 : width;
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 50, 50, seed, &net));
#define ADD(expr) do { CF_ASSERT_OK(expr); CF_ASSERT_OK(cfnet_network_append(net, l)); } while (0)
    for (int i = 0; i < 4; i++) {
        if (fam == CFNET_FAMILY_CFNET || fam == CFNET_FAMILY_CNET)
            ADD(cfnet_layer_conic_conv_create(w, 3, R[i], CFNET_PADDING_SAME,
                                              fam == CFNET_FAMILY_CFNET ? CFNET_INTERP_STEERABLE
                                                                        : CFNET_INTERP_NEAREST,
                                              &l));
        else if (p4 && i == 0) ADD(cfnet_layer_p4_lift_create(w, 3, CFNET_PADDING_SAME, &l));
        else if (p4) ADD(cfnet_layer_p4_conv_create(w, 3, CFNET_PADDING_SAME, &l));
        else ADD(cfnet_layer_conv2d_create(w, 3, 1, CFNET_PADDING_SAME, &l));
        ADD(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l));
        ADD(cfnet_layer_relu_create(&l));
        if (i < 3) ADD(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l));
    }
    if (fam == CFNET_FAMILY_CFNET || fam == CFNET_FAMILY_GCNN_DFT) {
        ADD(cfnet_layer_dft_projection_create(w, 1, CFNET_INTERP_BILINEAR, &l));
        ADD(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l));
        ADD(cfnet_layer_relu_create(&l));
        ADD(cfnet_layer_dft_magnitude_create(&l));
    } else {
        if (p4) ADD(cfnet_layer_group_pool_create(CFNET_POOL_MAX, &l));
        ADD(cfnet_layer_pool_create(CFNET_POOL_MEAN, 2, 2, &l));
    }
    ADD(cfnet_layer_dense_create(classes, &l));
#undef ADD
    if (fam == CFNET_FAMILY_CFNET) CF_ASSERT_OK(cfnet_network_init_normal(net, 0.1, seed));
    return net;
}

/* The presets at 50 x 50 save exactly the model files (architecture, weights, options) of the
 * hand-built biomarker networks, so the demo's published results still apply. */
static void biomarker_preset_is_the_hand_built_network_bit_for_bit(void **state)
{
    (void)state;
    for (int f = 0; f < 5; f++) {
        cfnet_network *a = NULL, *b = hand_biomarker(families[f], 12, 10, 3000010u + (unsigned)f);
        CF_ASSERT_OK(cfnet_network_create_classifier(families[f], 1, 50, 10, 12,
                                                     3000010u + (unsigned)f, &a));
        void *ba = NULL, *bb = NULL;
        size_t na = 0, nb = 0;
        CF_ASSERT_OK(cfnet_network_save_buffer(a, 0, &ba, &na));
        CF_ASSERT_OK(cfnet_network_save_buffer(b, 0, &bb, &nb));
        assert_int_equal(na, nb);
        assert_memory_equal(ba, bb, na);
        cfnet_free(ba);
        cfnet_free(bb);
        cfnet_network_free(a);
        cfnet_network_free(b);
    }
}

/* Multiply-adds: a hand count of a tiny network. */
static void multiply_adds_count_weights_per_output_position(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(2, 10, 10, 1, &net));
    CF_ASSERT_OK(cfnet_layer_conv2d_create(4, 3, 1, CFNET_PADDING_SAME, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_p4_lift_create(3, 3, CFNET_PADDING_VALID, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_relu_create(&l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_p4_conv_create(2, 3, CFNET_PADDING_VALID, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dft_projection_create(5, 1, CFNET_INTERP_NEAREST, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dense_create(3, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    int64_t expect = 4 * 2 * 9 * 100          /* conv2d 2 -> 4 at 10 x 10 */
                     + 3 * 4 * 9 * 4 * 64     /* lift 4 -> 3 x 4 at 8 x 8 */
                     + 2 * 3 * 4 * 9 * 4 * 36 /* p4 3 x 4 -> 2 x 4 at 6 x 6 */
                     + 5 * 2 * 4 * 36 * 4     /* projection: 5 filters of 2 x 4 x 6 x 6, 4 r */
                     + 3 * 20;                /* dense 20 -> 3 */
    assert_int_equal(cfnet_network_multiply_adds(net), expect);
    cfnet_network_free(net);
}

/* ---- the table in docs/guide.md ---- */

static const int table_sizes[] = {16, 28, 32, 50, 64, 65, 96, 100, 128, 200, 256, 512};

/* Writes the Markdown table rows (one per size) for 1 channel, 10 classes, default width. */
static char *preset_table(void)
{
    size_t cap = 16384, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    buf[0] = '\0';
    len += (size_t)snprintf(buf + len, cap - len,
                            "| S | conv layers | maps | R (conic) | parameters cfnet / cnet / "
                            "gcnn / gcnn-dft / cnn / gcnn-p4m | GFLOP/image cfnet / cnet / gcnn "
                            "/ gcnn-dft / cnn / gcnn-p4m |\n|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < sizeof table_sizes / sizeof table_sizes[0]; s++) {
        int S = table_sizes[s];
        char maps_s[128] = "", r_s[64] = "", params_s[128] = "", flops_s[128] = "";
        int layers = 0;
        for (int f = 0; f < 6; f++) {
            cfnet_network *net = NULL;
            CF_ASSERT_OK(cfnet_network_create_classifier(families[f], 1, S, 10, 0, 1, &net));
            if (f == 0) {
                int maps[16];
                layers = conv_maps(net, maps, 16);
                for (int i = 0; i < layers; i++)
                    snprintf(maps_s + strlen(maps_s), sizeof maps_s - strlen(maps_s), "%s%d",
                             i ? " → " : "", maps[i]);
                /* R = 2 on maps of 16 pixels or more (checked by
                 * conic_r_rule_matches_a_hand_built_network) */
                for (int i = 0; i < layers; i++)
                    snprintf(r_s + strlen(r_s), sizeof r_s - strlen(r_s), "%s%d", i ? "," : "",
                             maps[i] >= 16 ? 2 : 1);
            }
            long long p = (long long)cfnet_network_param_count(net);
            double gflop = 2.0 * (double)cfnet_network_multiply_adds(net) / 1e9;
            char num[32];
            if (p >= 1000000) snprintf(num, sizeof num, "%lld,%03lld,%03lld", p / 1000000,
                                       p / 1000 % 1000, p % 1000);
            else if (p >= 1000) snprintf(num, sizeof num, "%lld,%03lld", p / 1000, p % 1000);
            else snprintf(num, sizeof num, "%lld", p);
            snprintf(params_s + strlen(params_s), sizeof params_s - strlen(params_s), "%s%s",
                     f ? " / " : "", num);
            snprintf(flops_s + strlen(flops_s), sizeof flops_s - strlen(flops_s), "%s%.3g",
                     f ? " / " : "", gflop);
            cfnet_network_free(net);
        }
        len += (size_t)snprintf(buf + len, cap - len, "| %d | %d | %s | %s | %s | %s |\n", S,
                                layers, maps_s, r_s, params_s, flops_s);
        assert_true(len < cap);
    }
    return buf;
}

/* The conic layers' R follows the documented rule (maps of 16 pixels or more: R = 2): the
 * preset for 33 x 33 computes the same as a network built by hand (maps 33, 16, 8). */
static void conic_r_rule_matches_a_hand_built_network(void **state)
{
    (void)state;
    cfnet_network *preset = NULL, *hand = NULL;
    CF_ASSERT_OK(cfnet_network_create_classifier(CFNET_FAMILY_CNET, 1, 33, 5, 8, 4, &preset));
    CF_ASSERT_OK(cfnet_network_create(1, 33, 33, 4, &hand));
    static const int R[3] = {2, 2, 1}; /* maps 33, 16, 8 */
    for (int i = 0; i < 3; i++) {
        cfnet_layer *l = NULL;
        CF_ASSERT_OK(cfnet_layer_conic_conv_create(8, 3, R[i], CFNET_PADDING_SAME,
                                                   CFNET_INTERP_NEAREST, &l));
        CF_ASSERT_OK(cfnet_network_append(hand, l));
        CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l));
        CF_ASSERT_OK(cfnet_network_append(hand, l));
        CF_ASSERT_OK(cfnet_layer_relu_create(&l));
        CF_ASSERT_OK(cfnet_network_append(hand, l));
        if (i < 2) {
            CF_ASSERT_OK(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l));
            CF_ASSERT_OK(cfnet_network_append(hand, l));
        }
    }
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_pool_create(CFNET_POOL_MEAN, 2, 2, &l));
    CF_ASSERT_OK(cfnet_network_append(hand, l));
    CF_ASSERT_OK(cfnet_layer_dense_create(5, &l));
    CF_ASSERT_OK(cfnet_network_append(hand, l));
    /* identical summaries (kinds, shapes, parameters) and identical outputs */
    char a[4096], b[4096];
    CF_ASSERT_OK(cfnet_network_summary(preset, a, sizeof a, NULL));
    CF_ASSERT_OK(cfnet_network_summary(hand, b, sizeof b, NULL));
    assert_string_equal(a, b);
    tu_rng r = {3};
    int64_t shape[4] = {2, 1, 33, 33}, oshape[2] = {2, 5};
    cfnet_tensor *x = tu_tensor(4, shape, &r), *ya = tu_tensor(2, oshape, NULL),
                 *yb = tu_tensor(2, oshape, NULL);
    CF_ASSERT_OK(cfnet_network_infer(preset, x, ya));
    CF_ASSERT_OK(cfnet_network_infer(hand, x, yb));
    assert_memory_equal(cfnet_tensor_data(ya), cfnet_tensor_data(yb), 10 * sizeof(float));
    cfnet_tensor_free(x);
    cfnet_tensor_free(ya);
    cfnet_tensor_free(yb);
    cfnet_network_free(preset);
    cfnet_network_free(hand);
}

/* gcnn-p4m: p4m lifting and group layers, then group max pooling over the 8 copies. Up to that
 * pooling the network commutes with every rotation and reflection, so the last layer's input
 * (a mean pooling of the pooled map) transforms with the image: checked by running the trunk
 * without the dense layer on an image and on its mirror image. */
static void p4m_preset_is_equivariant_up_to_its_head(void **state)
{
    (void)state;
    for (int S = 16; S <= 17; S++) {
        cfnet_network *net = NULL;
        CF_ASSERT_OK(cfnet_network_create_classifier(CFNET_FAMILY_GCNN_P4M, 1, S, 3, 6, 2, &net));
        int n = cfnet_network_layer_count(net), kinds[4] = {0, 0, 0, 0};
        for (int i = 0; i < n; i++) {
            int k = cfnet_layer_kind_of(cfnet_network_layer(net, i));
            kinds[0] += k == CFNET_LAYER_P4M_LIFT;
            kinds[1] += k == CFNET_LAYER_P4M_CONV;
            kinds[2] += k == CFNET_LAYER_GROUP_POOL;
            kinds[3] += k == CFNET_LAYER_P4_LIFT || k == CFNET_LAYER_P4_CONV;
        }
        assert_int_equal(kinds[0], 1);
        assert_true(kinds[1] >= 2);
        assert_int_equal(kinds[2], 1);
        assert_int_equal(kinds[3], 0);
        /* the same network without the dense layer: a network from the same layers */
        cfnet_network *trunk = NULL;
        CF_ASSERT_OK(cfnet_network_create(1, S, S, 2, &trunk));
        for (int i = 0; i < n - 1; i++) {
            const cfnet_layer *l = cfnet_network_layer(net, i);
            int k = cfnet_layer_kind_of(l);
            cfnet_layer *c = NULL;
            int nd;
            int64_t sh[CFNET_MAX_DIMS];
            CF_ASSERT_OK(cfnet_layer_output_shape(l, &nd, sh));
            if (k == CFNET_LAYER_P4M_LIFT || k == CFNET_LAYER_P4M_CONV) {
                if (k == CFNET_LAYER_P4M_LIFT)
                    CF_ASSERT_OK(cfnet_layer_p4m_lift_create((int)sh[0], 3, CFNET_PADDING_SAME, &c));
                else
                    CF_ASSERT_OK(cfnet_layer_p4m_conv_create((int)sh[0], 3, CFNET_PADDING_SAME, &c));
            } else if (k == CFNET_LAYER_BATCH_NORM) {
                CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &c));
            } else if (k == CFNET_LAYER_RELU) {
                CF_ASSERT_OK(cfnet_layer_relu_create(&c));
            } else if (k == CFNET_LAYER_GROUP_POOL) {
                CF_ASSERT_OK(cfnet_layer_group_pool_create(CFNET_POOL_MAX, &c));
            } else {
                assert_int_equal(k, CFNET_LAYER_POOL);
                int64_t in[CFNET_MAX_DIMS];
                int ni;
                CF_ASSERT_OK(cfnet_layer_input_shape(l, &ni, in));
                int w = (int)(in[ni - 1] - 2 * (sh[nd - 1] - 1));
                CF_ASSERT_OK(cfnet_layer_pool_create(i + 2 < n ? CFNET_POOL_MAX : CFNET_POOL_MEAN,
                                                     i + 2 < n ? 0 : w, i + 2 < n ? 0 : 2, &c));
            }
            CF_ASSERT_OK(cfnet_network_append(trunk, c));
        }
        /* its output map is C x s x s, and mirroring / rotating the image mirrors / rotates
         * it: compare trunk(g x) with g trunk(x) for the mirror and a quarter turn */
        int nd;
        int64_t os[CFNET_MAX_DIMS];
        CF_ASSERT_OK(cfnet_network_output_shape(trunk, &nd, os));
        assert_int_equal(nd, 3);
        tu_rng r = {5};
        int64_t xs[4] = {2, 1, S, S}, ys[4] = {2, os[0], os[1], os[2]};
        cfnet_tensor *x = tu_tensor(4, xs, &r), *gx = tu_tensor(4, xs, NULL);
        cfnet_tensor *y = tu_tensor(4, ys, NULL), *gy = tu_tensor(4, ys, NULL),
                     *yg = tu_tensor(4, ys, NULL);
        CF_ASSERT_OK(cfnet_network_infer(trunk, x, y));
        for (int g = 1; g < 8; g += 3) { /* rho, rho F ... a rotation and two reflections */
            tu_d4_planes(cfnet_tensor_data(x), cfnet_tensor_data(gx), 2, S, g);
            CF_ASSERT_OK(cfnet_network_infer(trunk, gx, yg));
            tu_d4_planes(cfnet_tensor_data(y), cfnet_tensor_data(gy), 2 * os[0], os[1], g);
            double e = tu_max_rel_diff(cfnet_tensor_data(yg), cfnet_tensor_data(gy),
                                       cfnet_tensor_numel(y));
            if (e > 1e-5) fail_msg("gcnn-p4m trunk at %d: element %d changes it by %g", S, g, e);
        }
        cfnet_tensor_free(x);
        cfnet_tensor_free(gx);
        cfnet_tensor_free(y);
        cfnet_tensor_free(gy);
        cfnet_tensor_free(yg);
        cfnet_network_free(trunk);
        cfnet_network_free(net);
    }
}

static void guide_table_matches_the_presets(void **state)
{
    (void)state;
    char *want = preset_table();
    char path[512];
    snprintf(path, sizeof path, "%s/preset-table.md", tu_outdir());
    FILE *out = fopen(path, "w");
    if (out) {
        fputs(want, out);
        fclose(out);
    }
    FILE *f = fopen("docs/guide.md", "r");
    if (!f) fail_msg("docs/guide.md not found (run from the source tree)");
    static char doc[1 << 17];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    const char *begin = strstr(doc, "<!-- preset-table: begin");
    const char *end = begin ? strstr(begin, "<!-- preset-table: end -->") : NULL;
    if (!begin || !end) fail_msg("docs/guide.md lacks the preset-table markers");
    begin = strchr(begin, '\n') + 1;
    if ((size_t)(end - begin) != strlen(want) || memcmp(begin, want, strlen(want)) != 0)
        fail_msg("the preset table in docs/guide.md is out of date; the current table is in %s",
                 path);
    free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(family_names_round_trip),
        cmocka_unit_test(every_family_builds_from_16_to_512),
        cmocka_unit_test(sizes_outside_16_to_512_fail_with_a_message),
        cmocka_unit_test(bad_arguments_are_rejected),
        cmocka_unit_test(default_width_is_16_and_p4_families_use_half),
        cmocka_unit_test(dft_families_are_invariant_to_quarter_turns),
        cmocka_unit_test(biomarker_preset_matches_the_demo),
        cmocka_unit_test(biomarker_preset_is_the_hand_built_network_bit_for_bit),
        cmocka_unit_test(multiply_adds_count_weights_per_output_position),
        cmocka_unit_test(conic_r_rule_matches_a_hand_built_network),
        cmocka_unit_test(guide_table_matches_the_presets),
        cmocka_unit_test(p4m_preset_is_equivariant_up_to_its_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
