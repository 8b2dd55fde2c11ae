// A downstream C++17 program built only with `pkg-config --cflags --libs cfnet` (see
// tests/test_pkgconfig.sh): the C header used from C++ with RAII handles. Prints the library
// version, builds a tiny CFNet, runs a forward pass and checks the output shape.
#include <cfnet/cfnet.h>

#include <array>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct NetworkFree {
    void operator()(cfnet_network *n) const noexcept { cfnet_network_free(n); }
};
struct TensorFree {
    void operator()(cfnet_tensor *t) const noexcept { cfnet_tensor_free(t); }
};
using Network = std::unique_ptr<cfnet_network, NetworkFree>;
using Tensor = std::unique_ptr<cfnet_tensor, TensorFree>;

void check(cfnet_status st, const char *what)
{
    if (st != CFNET_OK)
        throw std::runtime_error(std::string(what) + ": " + cfnet_status_string(st) + ": " +
                                 cfnet_last_error());
}

template <typename Create>
void append(cfnet_network *net, Create create, const char *what)
{
    cfnet_layer *layer = nullptr;
    check(create(&layer), what);
    check(cfnet_network_append(net, layer), what);  // the network owns the layer either way
}

Tensor tensor(std::vector<int64_t> shape)
{
    cfnet_tensor *t = nullptr;
    check(cfnet_tensor_create(static_cast<int>(shape.size()), shape.data(), &t), "tensor");
    return Tensor(t);
}

}  // namespace

int main()
{
    std::printf("libcfnet %s (header %s)\n", cfnet_version_string(), CFNET_VERSION_STRING);
    try {
        if (cfnet_version_number() != CFNET_VERSION_NUMBER)
            throw std::runtime_error("header and library versions differ");
        cfnet_network *raw = nullptr;
        check(cfnet_network_create(1, 12, 12, 42, &raw), "network_create");
        Network net(raw);
        append(net.get(), [](cfnet_layer **l) {
            return cfnet_layer_conic_conv_create(4, 3, 2, CFNET_PADDING_SAME,
                                                 CFNET_INTERP_NEAREST, l);
        }, "conic_conv");
        append(net.get(), cfnet_layer_relu_create, "relu");
        append(net.get(), [](cfnet_layer **l) {
            return cfnet_layer_pool_create(CFNET_POOL_MAX, 0, 0, l);
        }, "pool");
        append(net.get(), [](cfnet_layer **l) {
            return cfnet_layer_dft_projection_create(5, 1, CFNET_INTERP_NEAREST, l);
        }, "dft_projection");
        append(net.get(), cfnet_layer_dft_magnitude_create, "dft_magnitude");
        append(net.get(), [](cfnet_layer **l) { return cfnet_layer_dense_create(3, l); },
               "dense");

        Tensor x = tensor({2, 1, 12, 12}), y = tensor({2, 3});
        float *xd = cfnet_tensor_data(x.get());
        for (int64_t i = 0; i < cfnet_tensor_numel(x.get()); i++)
            xd[i] = static_cast<float>((i * 7919) % 13) / 13.0f;
        check(cfnet_network_infer(net.get(), x.get(), y.get()), "infer");

        int nd = 0;
        std::array<int64_t, CFNET_MAX_DIMS> os{};
        check(cfnet_network_output_shape(net.get(), &nd, os.data()), "output_shape");
        std::printf("output %lld x %lld, network output shape (%lld), %lld parameters\n",
                    static_cast<long long>(cfnet_tensor_dim(y.get(), 0)),
                    static_cast<long long>(cfnet_tensor_dim(y.get(), 1)),
                    static_cast<long long>(os[0]),
                    static_cast<long long>(cfnet_network_param_count(net.get())));
        double change = 1;
        check(cfnet_network_invariance(net.get(), x.get(), nullptr, 0, &change), "invariance");
        if (nd != 1 || os[0] != 3 || cfnet_tensor_dim(y.get(), 0) != 2 ||
            cfnet_tensor_dim(y.get(), 1) != 3 || !(change < 1e-4))
            throw std::runtime_error("unexpected output shape or invariance");
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s\n", e.what());
        std::puts("consumer FAILED");
        return 1;
    }
    std::puts("consumer ok");
    return 0;
}
