/* The smallest libcfnet host program: build a small CFNet, train it on in-memory data, predict,
 * save, load, predict again and check that the predictions match.
 *
 *   build/default/examples/minimal [MODEL_PATH]     (default build/minimal.cfnet) */
#include <cfnet/cfnet.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S 16       /* image size */
#define N 60       /* training images */
#define CLASSES 3

/* On error: print the library's message and exit non-zero. */
#define CHECK(call)                                                                        \
    do {                                                                                   \
        cfnet_status st_ = (call);                                                         \
        if (st_ != CFNET_OK) {                                                             \
            fprintf(stderr, "minimal: %s: %s\n", cfnet_status_string(st_), cfnet_last_error()); \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)
#define ADD(net, create)              \
    do {                              \
        cfnet_layer *l = NULL;        \
        CHECK(create);                \
        CHECK(cfnet_network_append(net, l)); \
    } while (0)

/* Class 0: a ring, class 1: a bar through the centre, class 2: an off-centre blob; random
 * orientation. */
static void make_images(float *x, int32_t *y)
{
    unsigned seed = 1;
    for (int s = 0; s < N; s++) {
        double th = 6.2831853 * (seed = seed * 1103515245u + 12345u) / 4294967296.0, c = (S - 1) / 2.0;
        y[s] = s % CLASSES;
        for (int i = 0; i < S; i++)
            for (int j = 0; j < S; j++) {
                double u = j - c, v = c - i, ru = u * cos(th) + v * sin(th), rv = v * cos(th) - u * sin(th);
                double val = y[s] == 0   ? exp(-pow(sqrt(u * u + v * v) - 4, 2))
                             : y[s] == 1 ? exp(-rv * rv) * (fabs(ru) < 5)
                                         : exp(-((ru - 3.5) * (ru - 3.5) + rv * rv) / 3);
                x[(s * S + i) * S + j] = (float)val;
            }
    }
}

int main(int argc, char **argv)
{
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) { /* an option is not a file name */
        int help = argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"));
        fprintf(help ? stdout : stderr,
                "usage: minimal [MODEL_PATH]   (default build/minimal.cfnet)\n");
        return help ? 0 : 2;
    }
    const char *path = argc > 1 ? argv[1] : "build/minimal.cfnet";
    static float images[N * S * S];
    int32_t labels[N], before[N], after[N];
    make_images(images, labels);
    int64_t shape[4] = {N, 1, S, S};
    cfnet_tensor *x = NULL;
    CHECK(cfnet_tensor_wrap(images, 4, shape, &x));

    /* CFNet: conic convolutions, equivariant pooling, DFT transition, dense output. */
    cfnet_network *net = NULL;
    CHECK(cfnet_network_create(1, S, S, 42, &net));
    ADD(net, cfnet_layer_conic_conv_create(6, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l));
    ADD(net, cfnet_layer_relu_create(&l));
    ADD(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l));
    ADD(net, cfnet_layer_conic_conv_create(8, 3, 1, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l));
    ADD(net, cfnet_layer_relu_create(&l));
    ADD(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l));
    ADD(net, cfnet_layer_dft_projection_create(8, 1, CFNET_INTERP_NEAREST, &l));
    ADD(net, cfnet_layer_relu_create(&l));
    ADD(net, cfnet_layer_dft_magnitude_create(&l));
    ADD(net, cfnet_layer_dense_create(CLASSES, &l));
    CHECK(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, 5e-3));
    CHECK(cfnet_network_set_option(net, CFNET_OPTION_AUG_ROTATION, CFNET_AUG_ROTATION_ANY));

    float loss = 0, acc = 0;
    for (int step = 0; step < 40; step++) CHECK(cfnet_network_train_step(net, x, labels, N, &loss));
    CHECK(cfnet_network_evaluate(net, x, labels, N, 0, NULL, &acc));
    CHECK(cfnet_network_predict(net, x, before, N));
    printf("trained 40 steps: loss %.3f, training accuracy %.0f%%, %lld parameters\n", loss,
           100.0 * acc, (long long)cfnet_network_param_count(net));

    CHECK(cfnet_network_save(net, path, 0));
    cfnet_network *loaded = NULL;
    CHECK(cfnet_network_load(path, &loaded));
    CHECK(cfnet_network_predict(loaded, x, after, N));
    /* The loaded network must compute exactly the same probabilities, not just the same labels. */
    int64_t pshape[2] = {N, CLASSES};
    cfnet_tensor *p0 = NULL, *p1 = NULL;
    CHECK(cfnet_tensor_create(2, pshape, &p0));
    CHECK(cfnet_tensor_create(2, pshape, &p1));
    CHECK(cfnet_network_probabilities(net, x, p0));
    CHECK(cfnet_network_probabilities(loaded, x, p1));
    int same = memcmp(before, after, sizeof before) == 0 &&
               memcmp(cfnet_tensor_data(p0), cfnet_tensor_data(p1), sizeof(float) * N * CLASSES) == 0;
    printf("saved to %s and loaded: predictions %s\n", path, same ? "match" : "DIFFER");
    cfnet_tensor_free(p0);
    cfnet_tensor_free(p1);

    cfnet_network_free(loaded);
    cfnet_network_free(net);
    cfnet_tensor_free(x);
    return same ? 0 : 1;
}
