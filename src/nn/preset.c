/* Preset classifiers: the paper's five families built for an S x S input, and the nominal
 * multiply-add count of a network. Only the public API is used to build the networks. */
#include "nn/network.h"

#include <ctype.h>
#include <string.h>

#define PRESET_MIN_SIZE 16
#define PRESET_MAX_SIZE 512
#define PRESET_HEAD_MAP 8     /* pool while the map is larger than this */
#define PRESET_MIN_CONV 3     /* at least this many convolution layers */
#define PRESET_R2_MAP 16      /* conic layers on maps at least this large use R = 2 (8 cones) */
#define PRESET_DEFAULT_WIDTH 16
#define PRESET_MAX_WIDTH 1024
#define PRESET_MAX_CHANNELS 4096
#define PRESET_MAX_CLASSES 1000000

static const char *const family_names[] = {NULL,       "cfnet", "cnet",    "gcnn",
                                           "gcnn-dft", "cnn",   "gcnn-p4m"};
#define FAMILY_COUNT 6

CFNET_API const char *cfnet_family_name(int family)
{
    return family >= 1 && family <= FAMILY_COUNT ? family_names[family] : NULL;
}

static bool same_name(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

CFNET_API cfnet_status cfnet_family_parse(const char *name, cfnet_family *out)
{
    CF_FAIL_IF(!name || !out, CFNET_E_INVALID_ARGUMENT, "family_parse: NULL argument");
    for (int f = 1; f <= FAMILY_COUNT; f++)
        if (same_name(name, family_names[f])) {
            *out = (cfnet_family)f;
            return CFNET_OK;
        }
    return cf_error(CFNET_E_INVALID_ARGUMENT,
                    "family_parse: unknown family \"%.64s\"; the families are cfnet, cnet, "
                    "gcnn, gcnn-dft, cnn and gcnn-p4m",
                    name);
}

/* Appends a layer created by `expr` (which sets l_), freeing the network on failure. */
#define PRESET_APPEND(expr)                                         \
    do {                                                            \
        cfnet_layer *l_ = NULL;                                     \
        cfnet_status s_ = (expr);                                   \
        if (s_ == CFNET_OK) s_ = cfnet_network_append(net, l_);     \
        if (s_ != CFNET_OK) {                                       \
            cfnet_network_free(net);                                \
            return s_;                                              \
        }                                                           \
    } while (0)

/* Size after the equivariant pooling (window 2 on even maps, 3 on odd, stride 2). */
static int pooled(int s) { return s % 2 == 0 ? s / 2 : (s - 1) / 2; }

CFNET_API cfnet_status cfnet_network_create_classifier(cfnet_family family, int channels,
                                                       int size, int classes, int width,
                                                       uint64_t seed, cfnet_network **out)
{
    const char *what = "network_create_classifier";
    CF_FAIL_IF(!out, CFNET_E_INVALID_ARGUMENT, "%s: out is NULL", what);
    CF_FAIL_IF(!cfnet_family_name((int)family), CFNET_E_INVALID_ARGUMENT,
               "%s: unknown family %d (CFNET_FAMILY_CFNET = 1 ... CFNET_FAMILY_GCNN_P4M = 6)", what,
               (int)family);
    CF_FAIL_IF(channels < 1 || channels > PRESET_MAX_CHANNELS, CFNET_E_INVALID_ARGUMENT,
               "%s: %d channels, must be 1 to %d", what, channels, PRESET_MAX_CHANNELS);
    CF_FAIL_IF(size < PRESET_MIN_SIZE || size > PRESET_MAX_SIZE, CFNET_E_INVALID_ARGUMENT,
               "%s: input size %d x %d is not supported: the presets take square inputs of %d "
               "to %d pixels (any size in between, odd or even); crop, pad or resize to one",
               what, size, size, PRESET_MIN_SIZE, PRESET_MAX_SIZE);
    CF_FAIL_IF(classes < 2 || classes > PRESET_MAX_CLASSES, CFNET_E_INVALID_ARGUMENT,
               "%s: %d classes, must be 2 to %d", what, classes, PRESET_MAX_CLASSES);
    CF_FAIL_IF(width < 0 || width > PRESET_MAX_WIDTH, CFNET_E_INVALID_ARGUMENT,
               "%s: width %d, must be 0 (the default, %d) to %d", what, width,
               PRESET_DEFAULT_WIDTH, PRESET_MAX_WIDTH);
    if (width == 0) width = PRESET_DEFAULT_WIDTH;

    bool p4 = family == CFNET_FAMILY_GCNN || family == CFNET_FAMILY_GCNN_DFT;
    bool p4m = family == CFNET_FAMILY_GCNN_P4M;
    bool conic = family == CFNET_FAMILY_CFNET || family == CFNET_FAMILY_CNET;
    bool dft = family == CFNET_FAMILY_CFNET || family == CFNET_FAMILY_GCNN_DFT;
    /* p4 layers hold 4 orientations per filter: half the filters gives about the same number
     * of convolution weights as the planar families. */
    /* p4m layers hold 8 transformations per filter: a third of the filters gives about 8/9 of
     * the weights. */
    int filters = p4 ? (width + 1) / 2 : p4m ? (width + 2) / 3 : width;

    int pools = 0;
    for (int s = size; s > PRESET_HEAD_MAP; s = pooled(s)) pools++;
    int layers = pools + 1 < PRESET_MIN_CONV ? PRESET_MIN_CONV : pools + 1;

    cfnet_network *net = NULL;
    CF_CHECK(cfnet_network_create(channels, size, size, seed, &net));
    int map = size;
    for (int i = 0; i < layers; i++) {
        if (conic)
            PRESET_APPEND(cfnet_layer_conic_conv_create(filters, 3, map >= PRESET_R2_MAP ? 2 : 1,
                                                        CFNET_PADDING_SAME,
                                                        family == CFNET_FAMILY_CFNET
                                                            ? CFNET_INTERP_STEERABLE
                                                            : CFNET_INTERP_NEAREST,
                                                        &l_));
        else if (p4m && i == 0)
            PRESET_APPEND(cfnet_layer_p4m_lift_create(filters, 3, CFNET_PADDING_SAME, &l_));
        else if (p4m)
            PRESET_APPEND(cfnet_layer_p4m_conv_create(filters, 3, CFNET_PADDING_SAME, &l_));
        else if (p4 && i == 0)
            PRESET_APPEND(cfnet_layer_p4_lift_create(filters, 3, CFNET_PADDING_SAME, &l_));
        else if (p4)
            PRESET_APPEND(cfnet_layer_p4_conv_create(filters, 3, CFNET_PADDING_SAME, &l_));
        else
            PRESET_APPEND(cfnet_layer_conv2d_create(filters, 3, 1, CFNET_PADDING_SAME, &l_));
        PRESET_APPEND(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
        PRESET_APPEND(cfnet_layer_relu_create(&l_));
        if (i < pools) {
            PRESET_APPEND(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l_));
            map = pooled(map);
        }
    }
    if (dft) {
        PRESET_APPEND(cfnet_layer_dft_projection_create(filters, 1, CFNET_INTERP_BILINEAR, &l_));
        PRESET_APPEND(cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l_));
        PRESET_APPEND(cfnet_layer_relu_create(&l_));
        PRESET_APPEND(cfnet_layer_dft_magnitude_create(&l_));
    } else {
        if (p4 || p4m) PRESET_APPEND(cfnet_layer_group_pool_create(CFNET_POOL_MAX, &l_));
        /* the final map is 4 to 8 pixels: one more equivariant mean pooling before the dense
         * layer (6 x 6 -> 3 x 3 on the 50 x 50 biomarker images) */
        int window = map % 2 == 0 ? 2 : 3;
        PRESET_APPEND(cfnet_layer_pool_create(CFNET_POOL_MEAN, window, 2, &l_));
    }
    PRESET_APPEND(cfnet_layer_dense_create(classes, &l_));
    if (family == CFNET_FAMILY_CFNET) {
        cfnet_status s = cfnet_network_init_normal(net, 0.1, seed);
        if (s != CFNET_OK) {
            cfnet_network_free(net);
            return s;
        }
    }
    *out = net;
    return CFNET_OK;
}

/* Nominal multiply-adds of one sample's forward pass: every layer with a "weight" parameter
 * applies each weight once per output position, i.e. weight count x (output elements / output
 * channels). Conic layers count one filter per pixel (the boundary rays' and centre's extra
 * filters are ignored); pooling, batch norm, ReLU and the DFT are not counted. */
CFNET_API int64_t cfnet_network_multiply_adds(const cfnet_network *net)
{
    if (!cf_handle_ok(net, CF_MAGIC_NETWORK, "network", __func__)) net = NULL;
    if (!net) return -1;
    int64_t total = 0;
    for (int i = 0; i < cfnet_network_layer_count(net); i++) {
        const cfnet_layer *l = cfnet_network_layer(net, i);
        for (int p = 0; p < cfnet_layer_param_count(l); p++) {
            if (strcmp(cfnet_layer_param_name(l, p), "weight") != 0) continue;
            int nd;
            int64_t shape[CFNET_MAX_DIMS], numel = 1;
            if (cfnet_layer_output_shape(l, &nd, shape) != CFNET_OK) return -1;
            for (int d = 1; d < nd; d++) numel *= shape[d];
            total += cfnet_tensor_numel(cfnet_layer_param(l, p)) * numel;
        }
    }
    return total;
}
