/* A downstream C program built only with `pkg-config --cflags --libs cfnet` (see
 * tests/test_pkgconfig.sh): prints the library version, builds a tiny CFNet, runs a forward
 * pass and checks the output shape. Prints "consumer ok" and exits 0 on success. */
#include <cfnet/cfnet.h>

#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                                 \
    do {                                                                            \
        cfnet_status st_ = (call);                                                  \
        if (st_ != CFNET_OK) {                                                      \
            fprintf(stderr, "%s failed: %s: %s\n", #call, cfnet_status_string(st_), \
                    cfnet_last_error());                                            \
            goto done;                                                              \
        }                                                                           \
    } while (0)

/* Creates a layer into `l`, then appends it (the network owns it from then on). */
#define APPEND(create)                         \
    do {                                       \
        l = NULL;                              \
        CHECK(create);                         \
        CHECK(cfnet_network_append(net, l));   \
    } while (0)

int main(void)
{
    int ok = 0;
    cfnet_network *net = NULL;
    cfnet_tensor *x = NULL, *y = NULL;
    cfnet_layer *l = NULL;

    printf("libcfnet %s (header %s)\n", cfnet_version_string(), CFNET_VERSION_STRING);
    if (cfnet_version_number() != CFNET_VERSION_NUMBER) {
        fprintf(stderr, "header and library versions differ\n");
        return 1;
    }

    CHECK(cfnet_network_create(1, 12, 12, 42, &net));
    APPEND(cfnet_layer_conic_conv_create(4, 3, 2, CFNET_PADDING_SAME,
                                          CFNET_INTERP_NEAREST, &l));
    APPEND(cfnet_layer_relu_create(&l));
    APPEND(cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l));
    APPEND(cfnet_layer_dft_projection_create(5, 1, CFNET_INTERP_NEAREST, &l));
    APPEND(cfnet_layer_dft_magnitude_create(&l));
    APPEND(cfnet_layer_dense_create(3, &l));

    int64_t xs[4] = {2, 1, 12, 12}, ys[2] = {2, 3};
    CHECK(cfnet_tensor_create(4, xs, &x));
    CHECK(cfnet_tensor_create(2, ys, &y));
    float *xd = cfnet_tensor_data(x);
    for (int64_t i = 0; i < cfnet_tensor_numel(x); i++) xd[i] = (float)((i * 7919) % 13) / 13.0f;
    CHECK(cfnet_network_infer(net, x, y));

    int nd = 0;
    int64_t os[CFNET_MAX_DIMS];
    CHECK(cfnet_network_output_shape(net, &nd, os));
    printf("output %lld x %lld, network output shape (%lld), %lld parameters\n",
           (long long)cfnet_tensor_dim(y, 0), (long long)cfnet_tensor_dim(y, 1),
           (long long)os[0], (long long)cfnet_network_param_count(net));
    ok = nd == 1 && os[0] == 3 && cfnet_tensor_dim(y, 0) == 2 && cfnet_tensor_dim(y, 1) == 3;
    double change = 1;
    CHECK(cfnet_network_invariance(net, x, NULL, 0, &change));
    ok = ok && change < 1e-4;

done:
    cfnet_tensor_free(x);
    cfnet_tensor_free(y);
    cfnet_network_free(net);
    puts(ok ? "consumer ok" : "consumer FAILED");
    return ok ? 0 : 1;
}
