// A downstream C++17 program built only with `pkg-config --cflags --libs cfnet` (see
// tests/test_pkgconfig.sh): the C header used from C++ with RAII handles. Prints the library
// version, builds a tiny CFNet, runs a forward pass and checks the output shape. Then the rule for
// callbacks (cfnet.h: no C++ exception may unwind through libcfnet): a progress callback, a sum
// hook and an allocation hook whose host code throws catch inside, return their "stop" value,
// and the host rethrows after the call: CFNET_E_CANCELLED with the steps done kept, the sum
// hook's status with the network unchanged, CFNET_E_OUT_OF_MEMORY; the network stays usable.
#include <cfnet/cfnet.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
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

// Host code that throws: the user pressed Cancel, a reduction failed, memory ran out.
struct Cancelled : std::runtime_error {
    Cancelled() : std::runtime_error("cancel pressed") {}
};

struct Progress {
    int64_t cancel_at = 0, calls = 0;
    std::exception_ptr error;  // rethrown by the host after libcfnet returned
};

void on_step(Progress &p, int64_t step)
{
    p.calls++;
    if (step == p.cancel_at) throw Cancelled();
}

extern "C" int progress_cb(void *user, int64_t step, int64_t, double, double)
{
    auto *p = static_cast<Progress *>(user);
    try {
        on_step(*p, step);
        return 0;
    } catch (...) {
        p->error = std::current_exception();
        return 1;  // stop the epoch
    }
}

extern "C" cfnet_status failing_sum(void *user, cfnet_sum_kind, void *, int64_t)
{
    auto *error = static_cast<std::exception_ptr *>(user);
    try {
        throw std::runtime_error("reduction failed");
    } catch (...) {
        *error = std::current_exception();
        return CFNET_E_IO;  // fails the step; nothing changes
    }
}

struct Pool {
    bool armed = false;
    long live = 0;
};

void *take(Pool &p, size_t size)
{
    if (p.armed) throw std::bad_alloc();
    void *m = std::malloc(size);
    if (!m) throw std::bad_alloc();
    p.live++;
    return m;
}

extern "C" void *alloc_cb(void *opaque, size_t size)
{
    try {
        return take(*static_cast<Pool *>(opaque), size);
    } catch (const std::bad_alloc &) {
        return nullptr;  // the call fails with CFNET_E_OUT_OF_MEMORY
    }
}

extern "C" void free_cb(void *opaque, void *m)
{
    static_cast<Pool *>(opaque)->live--;
    std::free(m);
}

std::vector<unsigned char> saved(const cfnet_network *net)
{
    void *buf = nullptr;
    size_t n = 0;
    check(cfnet_network_save_buffer(net, CFNET_SAVE_OPTIMIZER, &buf, &n), "save_buffer");
    std::vector<unsigned char> v(static_cast<unsigned char *>(buf),
                                 static_cast<unsigned char *>(buf) + n);
    cfnet_free(buf);
    return v;
}

void callbacks(cfnet_network *net, cfnet_tensor *x)
{
    const int64_t n = cfnet_tensor_dim(x, 0);
    std::vector<int32_t> labels(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) labels[static_cast<size_t>(i)] = static_cast<int32_t>(i % 3);
    // 1. progress: cancelled after step 2 of 4, the two steps kept
    Progress p;
    p.cancel_at = 2;
    const int64_t step0 = cfnet_network_step_count(net);
    const std::array<int64_t, 4> order{0, 1, 0, 1};
    cfnet_status st = cfnet_network_train_epoch(net, x, labels.data(), 1, order.data(),
                                                static_cast<int64_t>(order.size()), progress_cb,
                                                &p, nullptr, nullptr);
    if (st != CFNET_E_CANCELLED || p.calls != 2 || !p.error ||
        cfnet_network_step_count(net) != step0 + 2)
        throw std::runtime_error("a throwing progress callback that catches did not cancel");
    try {
        std::rethrow_exception(p.error);
    } catch (const Cancelled &) {
    }
    // 2. sum hook: the step fails with the hook's status and changes nothing
    std::exception_ptr sum_error;
    check(cfnet_network_set_sum_hook(net, failing_sum, &sum_error), "set_sum_hook");
    const auto before = saved(net);
    float loss = 0;
    st = cfnet_network_train_step(net, x, labels.data(), n, &loss);
    check(cfnet_network_set_sum_hook(net, nullptr, nullptr), "remove sum hook");
    if (st != CFNET_E_IO || !sum_error || saved(net) != before)
        throw std::runtime_error("a throwing sum hook that catches changed the network");
    // 3. the network is not left "in use": modifying calls and inference work
    check(cfnet_network_train_step(net, x, labels.data(), n, &loss), "train_step after");
    if (cfnet_network_step_count(net) != step0 + 3) throw std::runtime_error("step count");
    // 4. allocation hook: std::bad_alloc caught inside gives CFNET_E_OUT_OF_MEMORY
    Pool pool;
    cfnet_context *ctx = nullptr;
    check(cfnet_context_create(&ctx), "context_create");
    check(cfnet_context_set_allocator(ctx, alloc_cb, free_cb, &pool), "set_allocator");
    cfnet_network *other = nullptr;
    pool.armed = true;
    st = cfnet_network_create_in(ctx, 1, 12, 12, 1, &other);
    pool.armed = false;
    if (st != CFNET_E_OUT_OF_MEMORY || other)
        throw std::runtime_error("a throwing allocation hook that catches did not fail cleanly");
    check(cfnet_network_create_in(ctx, 1, 12, 12, 1, &other), "network_create_in");
    cfnet_network_free(other);
    cfnet_context_free(ctx);
    if (pool.live != 0) throw std::runtime_error("allocation hook: blocks leaked");
    std::puts("callbacks ok: cancelled (2 steps kept), sum hook failed the step unchanged, "
              "allocation failed cleanly");
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
        callbacks(net.get(), x.get());
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s\n", e.what());
        std::puts("consumer FAILED");
        return 1;
    }
    std::puts("consumer ok");
    return 0;
}
