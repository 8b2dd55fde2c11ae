/* cfnet_network_prepare_image against a slow reference written here from docs/cli.md's
 * description (whole-image percentiles per channel by sorting, numpy's linear interpolation,
 * clipping; the scale in float32; centre crop at (H - S) / 2, centred zero pad), for odd and
 * even size differences, crops in one axis and pads in the other; padding refused and allowed;
 * malformed metadata named by key; the number format under a decimal-comma locale; nothing
 * written on an error. */
#define _POSIX_C_SOURCE 200809L
#include "testutil.h"

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cfnet_network *model(int C, int S, const char *norm, const char *pad)
{
    cfnet_network *net = NULL;
    char buf[32];
    CF_ASSERT_OK(cfnet_network_create_classifier(CFNET_FAMILY_CNN, C, S, 3, 2, 1, &net));
    snprintf(buf, sizeof buf, "%d", C);
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "channels", buf));
    snprintf(buf, sizeof buf, "%d", S);
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "input_size", buf));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "normalization", norm));
    if (pad) CF_ASSERT_OK(cfnet_network_set_metadata(net, "pad", pad));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "classes", "[\"a\",\"b\",\"c\"]"));
    return net;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* numpy.percentile(v, p) (linear) of n values, by sorting a copy. */
static double ref_percentile(const float *v, int64_t n, double p)
{
    float *s = malloc(sizeof(float) * (size_t)n);
    memcpy(s, v, sizeof(float) * (size_t)n);
    qsort(s, (size_t)n, sizeof(float), cmp_float);
    double pos = p / 100.0 * (double)(n - 1), k = floor(pos);
    int64_t i = (int64_t)k;
    double r = i >= n - 1 ? s[n - 1] : s[i] + (pos - k) * ((double)s[i + 1] - s[i]);
    free(s);
    return r;
}

/* The prepared C x S x S image: percentile (lo, hi) or scale, then crop or pad. */
static void ref_prepare(const float *img, int C, int H, int W, int S, int percentile, double a,
                        double b, float *out)
{
    float *x = malloc(sizeof(float) * (size_t)C * H * W);
    for (int c = 0; c < C; c++) {
        const float *p = img + (size_t)c * H * W;
        float *q = x + (size_t)c * H * W;
        double lo = percentile ? ref_percentile(p, (int64_t)H * W, a) : 0;
        double hi = percentile ? ref_percentile(p, (int64_t)H * W, b) : 0;
        for (int k = 0; k < H * W; k++) {
            if (!percentile) {
                q[k] = p[k] * (float)a;
            } else if (hi > lo) {
                double y = ((double)p[k] - lo) / (hi - lo);
                q[k] = (float)fmin(1.0, fmax(0.0, y));
            } else {
                q[k] = 0;
            }
        }
    }
    for (int c = 0; c < C; c++)
        for (int y = 0; y < S; y++)
            for (int z = 0; z < S; z++) {
                /* crop: source = target + (H - S) / 2; pad: target = source + (S - H) / 2 */
                int sy = H >= S ? y + (H - S) / 2 : y - (S - H) / 2;
                int sx = W >= S ? z + (W - S) / 2 : z - (S - W) / 2;
                out[((size_t)c * S + y) * S + z] =
                    sy >= 0 && sy < H && sx >= 0 && sx < W ? x[((size_t)c * H + sy) * W + sx] : 0;
            }
    free(x);
}

/* Random pixel values as a 16-bit microscope gives them, with ties (a background level). */
static float *image_values(int C, int H, int W, uint64_t seed)
{
    tu_rng r = {seed};
    float *v = malloc(sizeof(float) * (size_t)C * H * W);
    for (int64_t i = 0; i < (int64_t)C * H * W; i++) {
        double u = tu_uniform(&r);
        v[i] = u < 0.3 ? 100.0f : (float)floor(100 + 4000 * u * u);
    }
    return v;
}

/* Prepares img (C x H x W) into row `row` of a 3-row batch filled with 7 and compares with the
 * reference; the other rows must keep their 7s. */
static void check_one(cfnet_network *net, int C, int H, int W, int S, int percentile, double a,
                      double b, int flags, int row)
{
    float *img = image_values(C, H, W, (uint64_t)(H * 1000 + W));
    const size_t per = (size_t)C * S * S;
    float *bat = malloc(sizeof(float) * 3 * per), *want = malloc(sizeof(float) * per);
    for (size_t i = 0; i < 3 * per; i++) bat[i] = 7;
    float *keep = malloc(sizeof(float) * (size_t)C * H * W);
    memcpy(keep, img, sizeof(float) * (size_t)C * H * W);
    int64_t is[3] = {C, H, W}, bs[4] = {3, C, S, S};
    cfnet_tensor *ti = NULL, *tb = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap_const(img, 3, is, &ti));
    CF_ASSERT_OK(cfnet_tensor_wrap(bat, 4, bs, &tb));
    CF_ASSERT_OK(cfnet_network_prepare_image(net, ti, flags, tb, row));
    ref_prepare(img, C, H, W, S, percentile, a, b, want);
    for (size_t i = 0; i < per; i++)
        if (memcmp(&bat[row * per + i], &want[i], sizeof(float)) != 0)
            fail_msg("%dx%d -> %d: value %zu is %.9g, the reference %.9g", W, H, S, i,
                     (double)bat[row * per + i], (double)want[i]);
    for (int r = 0; r < 3; r++)
        if (r != row)
            for (size_t i = 0; i < per; i++) assert_true(bat[r * per + i] == 7);
    assert_memory_equal(img, keep, sizeof(float) * (size_t)C * H * W);
    cfnet_tensor_free(ti);
    cfnet_tensor_free(tb);
    free(img);
    free(keep);
    free(bat);
    free(want);
}

static void percentile_model_matches_the_reference_cropped_and_padded(void **state)
{
    (void)state;
    const int S = 16;
    cfnet_network *net = model(2, S, "percentile 1 99.8", "1");
    /* crops by odd and even differences, exactly S, pads by odd and even, mixed axes */
    static const int sizes[][2] = {{16, 16}, {21, 16}, {16, 22}, {40, 33}, {13, 16}, {10, 11},
                                   {9, 30}, {31, 12}, {1, 1}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        check_one(net, 2, sizes[i][0], sizes[i][1], S, 1, 1, 99.8, 0, (int)(i % 3));
    cfnet_network_free(net);
    /* other percentiles, three channels, an odd input size */
    net = model(3, 17, "percentile 0 100", "1");
    check_one(net, 3, 24, 20, 17, 1, 0, 100, 0, 2);
    check_one(net, 3, 5, 30, 17, 1, 0, 100, 0, 0);
    cfnet_network_free(net);
}

static void scale_model_matches_the_reference(void **state)
{
    (void)state;
    cfnet_network *net = model(1, 16, "scale 0.0001", NULL);
    check_one(net, 1, 20, 19, 16, 0, 0.0001, 0, 0, 1);
    check_one(net, 1, 16, 16, 16, 0, 0.0001, 0, 0, 0);
    check_one(net, 1, 12, 20, 16, 0, 0.0001, 0, CFNET_PREPARE_PAD, 2);
    cfnet_network_free(net);
}

/* A constant channel (equal percentiles) becomes 0, as cfnet_image_normalize makes it. */
static void constant_channel_becomes_zero(void **state)
{
    (void)state;
    cfnet_network *net = model(1, 16, "percentile 1 99.8", "0");
    float img[18 * 18], out[16 * 16];
    for (int i = 0; i < 18 * 18; i++) img[i] = 500;
    int64_t is[4] = {1, 1, 18, 18}, bs[4] = {1, 1, 16, 16};
    cfnet_tensor *ti = NULL, *tb = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap_const(img, 4, is, &ti)); /* 1 x C x H x W is taken too */
    CF_ASSERT_OK(cfnet_tensor_wrap(out, 4, bs, &tb));
    for (int i = 0; i < 256; i++) out[i] = 3;
    CF_ASSERT_OK(cfnet_network_prepare_image(net, ti, 0, tb, 0));
    for (int i = 0; i < 256; i++) assert_true(out[i] == 0);
    cfnet_tensor_free(ti);
    cfnet_tensor_free(tb);
    cfnet_network_free(net);
}

/* Runs prepare_image on a 1 x C x S x S batch and expects `status` with `msg` in the message
 * and the batch untouched. */
static void expect_error(cfnet_network *net, int C, int H, int W, int S, int flags,
                         cfnet_status status, const char *msg)
{
    float *img = image_values(C, H, W, 3), *bat = malloc(sizeof(float) * (size_t)C * S * S);
    for (int i = 0; i < C * S * S; i++) bat[i] = 7;
    int64_t is[3] = {C, H, W}, bs[4] = {1, C, S, S};
    cfnet_tensor *ti = NULL, *tb = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap_const(img, 3, is, &ti));
    CF_ASSERT_OK(cfnet_tensor_wrap(bat, 4, bs, &tb));
    CF_ASSERT_STATUS(cfnet_network_prepare_image(net, ti, flags, tb, 0), status);
    if (!strstr(cfnet_last_error(), msg))
        fail_msg("message \"%s\" does not say \"%s\"", cfnet_last_error(), msg);
    for (int i = 0; i < C * S * S; i++) assert_true(bat[i] == 7);
    cfnet_tensor_free(ti);
    cfnet_tensor_free(tb);
    free(img);
    free(bat);
}

static void small_images_need_pad_from_the_model_or_the_flag(void **state)
{
    (void)state;
    cfnet_network *net = model(1, 16, "percentile 1 99.8", "0");
    expect_error(net, 1, 15, 20, 16, 0, CFNET_E_SHAPE_MISMATCH,
                 "image is 20x15, smaller than the input size 16");
    expect_error(net, 1, 20, 15, 16, 0, CFNET_E_SHAPE_MISMATCH, "CFNET_PREPARE_PAD");
    check_one(net, 1, 15, 20, 16, 1, 1, 99.8, CFNET_PREPARE_PAD, 0);
    cfnet_network_free(net);
    net = model(1, 16, "percentile 1 99.8", NULL); /* no "pad": as 0 */
    expect_error(net, 1, 15, 15, 16, 0, CFNET_E_SHAPE_MISMATCH, "smaller than the input size");
    cfnet_network_free(net);
}

static void bad_metadata_is_named(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create_classifier(CFNET_FAMILY_CNN, 1, 16, 3, 2, 1, &net));
    expect_error(net, 1, 16, 16, 16, 0, CFNET_E_FORMAT, "not trained by the cfnet command");
    cfnet_network_free(net);
    static const struct {
        const char *key, *value, *msg;
    } bad[] = {
        {"channels", "2", "\"channels\" is \"2\", the network takes 1"},
        {"channels", "1x", "\"channels\""},
        {"input_size", "17", "\"input_size\" is \"17\""},
        {"input_size", "", "\"input_size\""},
        {"pad", "yes", "\"pad\" is \"yes\""},
        {"normalization", "percentile 50 10", "need 0 <= LOW < HIGH <= 100"},
        {"normalization", "percentile 1 99.8 extra", "\"normalization\""},
        {"normalization", "percentile 1,5 99", "\"normalization\""},
        {"normalization", "scale 0", "need a scale"},
        {"normalization", "scale 1e31", "need a scale"},
        {"normalization", "zscore", "need \"percentile LOW HIGH\" or \"scale X\""},
        {"normalization", NULL, "no \"normalization\""},
        {"input_size", NULL, "no \"input_size\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        net = model(1, 16, "percentile 1 99.8", "1");
        CF_ASSERT_OK(cfnet_network_set_metadata(net, bad[i].key, bad[i].value));
        expect_error(net, 1, 20, 20, 16, 0, CFNET_E_FORMAT, bad[i].msg);
        cfnet_network_free(net);
    }
}

static void bad_images_and_batches_are_refused(void **state)
{
    (void)state;
    cfnet_network *net = model(2, 16, "scale 1e20", "0");
    expect_error(net, 3, 16, 16, 16, 0, CFNET_E_SHAPE_MISMATCH,
                 "image has 3 channels, the model expects 2");
    expect_error(net, 2, 16, 16, 16, 4, CFNET_E_INVALID_ARGUMENT, "unknown flags");
    expect_error(net, 2, 16, 16, 16, -1, CFNET_E_INVALID_ARGUMENT, "unknown flags");
    float img[2 * 16 * 16], bat[2 * 2 * 16 * 16];
    for (int i = 0; i < 2 * 16 * 16; i++) img[i] = 1;
    for (int i = 0; i < 2 * 2 * 16 * 16; i++) bat[i] = 7;
    int64_t is[3] = {2, 16, 16}, bs[4] = {2, 2, 16, 16}, wrong[4] = {2, 2, 15, 16};
    int64_t two[4] = {2, 2, 8, 16};
    cfnet_tensor *ti = NULL, *tb = NULL, *tw = NULL, *t2 = NULL, *tc = NULL, *ta = NULL;
    CF_ASSERT_OK(cfnet_tensor_wrap(img, 3, is, &ti));
    CF_ASSERT_OK(cfnet_tensor_wrap(bat, 4, bs, &tb));
    CF_ASSERT_OK(cfnet_tensor_wrap(bat, 4, wrong, &tw));
    CF_ASSERT_OK(cfnet_tensor_wrap(img, 4, two, &t2));
    CF_ASSERT_OK(cfnet_tensor_wrap_const(bat, 4, bs, &tc));
    CF_ASSERT_OK(cfnet_tensor_wrap(bat + 2 * 16 * 16, 3, is, &ta)); /* row 1 of the batch */
    CF_ASSERT_STATUS(cfnet_network_prepare_image(net, ti, 0, tb, 2), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_prepare_image(net, ti, 0, tb, -1), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_prepare_image(net, ti, 0, tw, 0), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_network_prepare_image(net, t2, 0, tb, 0), CFNET_E_SHAPE_MISMATCH);
    CF_ASSERT_STATUS(cfnet_network_prepare_image(net, ti, 0, tc, 0), CFNET_E_INVALID_ARGUMENT);
    CF_ASSERT_STATUS(cfnet_network_prepare_image(net, ta, 0, tb, 1), CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "share memory"));
    CF_ASSERT_OK(cfnet_network_prepare_image(net, ta, 0, tb, 0)); /* other rows are fine */
    for (int i = 0; i < 16 * 16 * 2; i++) bat[i] = 7;
    img[2 * 16 * 16 - 1] = 1e19f; /* times 1e20: overflows float32, even outside the crop */
    CF_ASSERT_STATUS(cfnet_network_prepare_image(net, ti, 0, tb, 0), CFNET_E_NUMERIC);
    assert_non_null(strstr(cfnet_last_error(), "channel 2 at row 15, column 15 overflows"));
    img[2 * 16 * 16 - 1] = NAN;
    CF_ASSERT_STATUS(cfnet_network_prepare_image(net, ti, 0, tb, 0), CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "NaN"));
    for (int i = 0; i < 2 * 2 * 16 * 16; i++) assert_true(bat[i] == 7);
    cfnet_tensor_free(ti);
    cfnet_tensor_free(tb);
    cfnet_tensor_free(tw);
    cfnet_tensor_free(t2);
    cfnet_tensor_free(tc);
    cfnet_tensor_free(ta);
    cfnet_network_free(net);
}

/* A host that called setlocale(LC_ALL, "") under a decimal comma gets the same numbers: the
 * metadata's "99.8" is not read as 99. The locale comes from the system or is compiled with
 * localedef into the test output folder; without either the case is skipped. (setlocale, as a
 * host does: glibc's newlocale leaks its search path when LOCPATH is set.) */
static int comma_locale(const char *name)
{
    return setlocale(LC_NUMERIC, name) && !strcmp(localeconv()->decimal_point, ",");
}

static void metadata_numbers_do_not_depend_on_the_locale(void **state)
{
    (void)state;
    static const char *const names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "de_DE"};
    int comma = 0;
    for (size_t i = 0; i < sizeof names / sizeof *names && !comma; i++)
        comma = comma_locale(names[i]);
    if (!comma) { /* compiled for this test, as tests/test_host.sh does */
        char dir[1024], cmd[2200];
        snprintf(dir, sizeof dir, "%s/prepare-locale", tu_outdir());
        snprintf(cmd, sizeof cmd, "mkdir -p '%s' && localedef -i de_DE -f UTF-8 "
                 "'%s/de_DE.UTF-8' >/dev/null 2>&1", dir, dir);
        comma = system(cmd) == 0 && setenv("LOCPATH", dir, 1) == 0 && comma_locale("de_DE.UTF-8");
    }
    if (!comma) {
        setlocale(LC_NUMERIC, "C");
        TU_SKIP_MISSING("the decimal-comma locale case (no de_DE locale, and localedef could not "
                        "make one)", "locales");
    }
    double v = 0;
    sscanf("99.8", "%lf", &v);
    assert_true(v == 99); /* the trap the library avoids */
    cfnet_network *net = model(1, 16, "percentile 1 99.8", "1");
    check_one(net, 1, 21, 18, 16, 1, 1, 99.8, 0, 1);
    setlocale(LC_NUMERIC, "C");
    cfnet_network_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(percentile_model_matches_the_reference_cropped_and_padded),
        cmocka_unit_test(scale_model_matches_the_reference),
        cmocka_unit_test(constant_channel_becomes_zero),
        cmocka_unit_test(small_images_need_pad_from_the_model_or_the_flag),
        cmocka_unit_test(bad_metadata_is_named),
        cmocka_unit_test(bad_images_and_batches_are_refused),
        cmocka_unit_test(metadata_numbers_do_not_depend_on_the_locale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
