/* Writes the seed corpus for the fuzz targets: small valid models of every layer kind, with and
 * without optimiser state, and a few malformed variants.  Usage: make_corpus DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfnet/cfnet.h"

static int fail(const char *what)
{
    fprintf(stderr, "make_corpus: %s: %s\n", what, cfnet_last_error());
    exit(1);
}

static void add(cfnet_network *net, cfnet_status st, cfnet_layer **l)
{
    if (st != CFNET_OK || cfnet_network_append(net, *l) != CFNET_OK) fail("append");
}

static void write_bytes(const char *dir, const char *name, const void *buf, size_t size)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, size, f) != size || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: cannot write %s\n", path);
        exit(1);
    }
}

static void save(const char *dir, const char *name, cfnet_network *net, unsigned flags)
{
    void *buf;
    size_t size;
    if (cfnet_network_save_buffer(net, flags, &buf, &size) != CFNET_OK) fail("save");
    write_bytes(dir, name, buf, size);
    cfnet_free(buf);
}

static void train(cfnet_network *net, int c, int s, int classes)
{
    enum { N = 4 };
    float *x = calloc((size_t)N * c * s * s, sizeof *x);
    int32_t y[N];
    for (int i = 0; i < N * c * s * s; i++) x[i] = (float)((i * 7919) % 13) / 6.0f - 1.0f;
    for (int i = 0; i < N; i++) y[i] = i % classes;
    int64_t xs[] = {N, c, s, s};
    cfnet_tensor *t;
    if (cfnet_tensor_wrap(x, 4, xs, &t) != CFNET_OK) fail("wrap");
    if (cfnet_network_train_step(net, t, y, N, NULL) != CFNET_OK) fail("train");
    cfnet_tensor_free(t);
    free(x);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    cfnet_network *net;
    cfnet_layer *l;

    if (cfnet_network_create(1, 9, 9, 1, &net) != CFNET_OK) fail("create");
    add(net, cfnet_layer_conic_conv_create(2, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l), &l);
    add(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l), &l);
    add(net, cfnet_layer_relu_create(&l), &l);
    add(net, cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, &l), &l);
    add(net, cfnet_layer_conic_conv_create(2, 3, 1, CFNET_PADDING_VALID, CFNET_INTERP_BILINEAR, &l), &l);
    add(net, cfnet_layer_dft_projection_create(3, 2, CFNET_INTERP_BILINEAR, &l), &l);
    add(net, cfnet_layer_dft_magnitude_create(&l), &l);
    add(net, cfnet_layer_dense_create(3, &l), &l);
    train(net, 1, 9, 3);
    save(dir, "cfnet", net, 0);
    save(dir, "cfnet_optimizer", net, CFNET_SAVE_OPTIMIZER);
    cfnet_network_free(net);

    if (cfnet_network_create(2, 6, 6, 2, &net) != CFNET_OK) fail("create");
    add(net, cfnet_layer_p4_lift_create(2, 3, CFNET_PADDING_SAME, &l), &l);
    add(net, cfnet_layer_batch_norm_create(0.2f, 1e-3f, &l), &l);
    add(net, cfnet_layer_p4_conv_create(1, 1, CFNET_PADDING_VALID, &l), &l);
    add(net, cfnet_layer_group_pool_create(CFNET_POOL_MEAN, &l), &l);
    add(net, cfnet_layer_conv2d_create(2, 3, 2, CFNET_PADDING_SAME, &l), &l);
    add(net, cfnet_layer_pool_create(CFNET_POOL_MEAN, 2, 1, &l), &l);
    add(net, cfnet_layer_dense_create(4, &l), &l);
    add(net, cfnet_layer_dropout_create(0.25f, &l), &l);
    add(net, cfnet_layer_softmax_create(&l), &l);
    if (cfnet_network_set_option(net, CFNET_OPTION_OPTIMIZER, CFNET_OPTIMIZER_SGD) != CFNET_OK) fail("opt");
    train(net, 2, 6, 4);
    save(dir, "gcnn_sgd_optimizer", net, CFNET_SAVE_OPTIMIZER);
    cfnet_network_free(net);

    if (cfnet_network_create(1, 4, 4, 3, &net) != CFNET_OK) fail("create");
    add(net, cfnet_layer_p4_lift_create(2, 3, CFNET_PADDING_VALID, &l), &l);
    add(net, cfnet_layer_relu_create(&l), &l);
    add(net, cfnet_layer_dft_projection_create(2, 1, CFNET_INTERP_NEAREST, &l), &l);
    add(net, cfnet_layer_dft_magnitude_create(&l), &l);
    add(net, cfnet_layer_dense_create(2, &l), &l);
    save(dir, "p4_projection", net, 0);
    cfnet_network_free(net);

    /* p4m: every D4 kind, and group pooling over 8 copies */
    if (cfnet_network_create(1, 5, 5, 6, &net) != CFNET_OK) fail("create");
    add(net, cfnet_layer_p4m_lift_create(2, 3, CFNET_PADDING_VALID, &l), &l);
    add(net, cfnet_layer_batch_norm_create(0.1f, 1e-5f, &l), &l);
    add(net, cfnet_layer_relu_create(&l), &l);
    add(net, cfnet_layer_p4m_conv_create(2, 3, CFNET_PADDING_VALID, &l), &l);
    add(net, cfnet_layer_p4m_dft_magnitude_create(&l), &l);
    add(net, cfnet_layer_dense_create(2, &l), &l);
    train(net, 1, 5, 2);
    save(dir, "p4m", net, CFNET_SAVE_OPTIMIZER);
    cfnet_network_free(net);
    if (cfnet_network_create(1, 4, 4, 7, &net) != CFNET_OK) fail("create");
    add(net, cfnet_layer_p4m_lift_create(1, 3, CFNET_PADDING_SAME, &l), &l);
    add(net, cfnet_layer_group_pool_create(CFNET_POOL_MAX, &l), &l);
    add(net, cfnet_layer_dense_create(2, &l), &l);
    save(dir, "p4m_group_pool", net, 0);
    cfnet_network_free(net);

    /* user metadata (stored as "user."-prefixed __metadata__ strings) */
    if (cfnet_network_create(1, 5, 5, 5, &net) != CFNET_OK) fail("create");
    add(net, cfnet_layer_conv2d_create(2, 3, 1, CFNET_PADDING_VALID, &l), &l);
    add(net, cfnet_layer_dense_create(2, &l), &l);
    if (cfnet_network_set_metadata(net, "class_names", "[\"ER\",\"Kern\"]") != CFNET_OK ||
        cfnet_network_set_metadata(net, "note", "zwei\nZeilen \xc3\xa4") != CFNET_OK ||
        cfnet_network_set_metadata(net, "format", "user key") != CFNET_OK)
        fail("metadata");
    save(dir, "metadata", net, 0);
    cfnet_network_free(net);

    if (cfnet_network_create(1, 2, 2, 4, &net) != CFNET_OK) fail("create");
    save(dir, "empty", net, 0);
    cfnet_network_free(net);

    static const unsigned char short_header[8] = {255, 255, 255, 255, 0, 0, 0, 0};
    write_bytes(dir, "huge_header_length", short_header, sizeof short_header);
    static const char tiny[] = "\x10\0\0\0\0\0\0\0{\"a\":1}         ";
    write_bytes(dir, "not_a_model", tiny, sizeof tiny - 1);
    return 0;
}
