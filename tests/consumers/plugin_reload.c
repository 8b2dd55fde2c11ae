/* A viewer-like host (tests/test_host.sh): it uses FFTW itself and loads libcfnet with dlopen,
 * as a plugin's dependency would be loaded, then unloads it again, several times.
 *
 *   plugin_reload LIBRARY ROUNDS THREADS free|keep
 *
 * Each round: dlopen, a network with a DFT transition (so libcfnet plans FFTs) on THREADS
 * threads, one inference, the network freed ("free") or left alive ("keep": a plugin that forgot
 * to free it, with its worker threads still polling), dlclose; then the host plans and runs an
 * FFT of its own. Prints "round N ok" per round and exits 0. */
#include <cfnet/cfnet.h>

#include <dlfcn.h>
#include <fftw3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct api {
    void *h;
    cfnet_status (*net_create)(int, int, int, uint64_t, cfnet_network **);
    cfnet_status (*conic)(int, int, int, cfnet_padding, cfnet_interp, cfnet_layer **);
    cfnet_status (*proj)(int, int, cfnet_interp, cfnet_layer **);
    cfnet_status (*mag)(cfnet_layer **);
    cfnet_status (*append)(cfnet_network *, cfnet_layer *);
    cfnet_status (*set_option)(cfnet_network *, cfnet_option, double);
    cfnet_status (*tensor_create)(int, const int64_t *, cfnet_tensor **);
    cfnet_status (*infer)(const cfnet_network *, const cfnet_tensor *, cfnet_tensor *);
    void (*tensor_free)(cfnet_tensor *);
    void (*net_free)(cfnet_network *);
    const char *(*last_error)(void);
} api;

static void *sym(void *h, const char *name)
{
    void *p = dlsym(h, name);
    if (!p) {
        fprintf(stderr, "plugin_reload: no %s\n", name);
        exit(2);
    }
    return p;
}

#define LOAD(field, name) memcpy(&a->field, &(void *){sym(a->h, name)}, sizeof a->field)

static void load(api *a, const char *path)
{
    a->h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!a->h) {
        fprintf(stderr, "plugin_reload: %s\n", dlerror());
        exit(2);
    }
    LOAD(net_create, "cfnet_network_create");
    LOAD(conic, "cfnet_layer_conic_conv_create");
    LOAD(proj, "cfnet_layer_dft_projection_create");
    LOAD(mag, "cfnet_layer_dft_magnitude_create");
    LOAD(append, "cfnet_network_append");
    LOAD(set_option, "cfnet_network_set_option");
    LOAD(tensor_create, "cfnet_tensor_create");
    LOAD(infer, "cfnet_network_infer");
    LOAD(tensor_free, "cfnet_tensor_free");
    LOAD(net_free, "cfnet_network_free");
    LOAD(last_error, "cfnet_last_error");
}

#define OK(call)                                                                   \
    do {                                                                           \
        if ((call) != CFNET_OK) {                                                  \
            fprintf(stderr, "plugin_reload: %s: %s\n", #call, a.last_error());    \
            return 1;                                                              \
        }                                                                          \
    } while (0)

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: plugin_reload LIBRARY ROUNDS THREADS free|keep\n");
        return 2;
    }
    int rounds = atoi(argv[2]), threads = atoi(argv[3]), keep = !strcmp(argv[4], "keep");
    for (int r = 0; r < rounds; r++) {
        api a;
        load(&a, argv[1]);
        cfnet_network *net = NULL;
        cfnet_layer *l = NULL;
        OK(a.net_create(1, 9, 9, 1, &net));
        OK(a.conic(2, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST, &l));
        OK(a.append(net, l));
        OK(a.proj(3, 2, CFNET_INTERP_NEAREST, &l));
        OK(a.append(net, l));
        OK(a.mag(&l));
        OK(a.append(net, l));
        OK(a.set_option(net, CFNET_OPTION_THREADS, threads));
        const int64_t xs[4] = {4, 1, 9, 9}, ys[3] = {4, 3, 8};
        cfnet_tensor *x = NULL, *y = NULL;
        OK(a.tensor_create(4, xs, &x));
        OK(a.tensor_create(3, ys, &y));
        OK(a.infer(net, x, y));
        a.tensor_free(x);
        a.tensor_free(y);
        if (!keep) a.net_free(net);
        if (dlclose(a.h)) {
            fprintf(stderr, "plugin_reload: dlclose: %s\n", dlerror());
            return 1;
        }
        /* The host's own FFT, after the plugin's library went away. */
        fftwf_complex *buf = fftwf_alloc_complex(64);
        fftwf_plan p = fftwf_plan_dft_2d(8, 8, buf, buf, FFTW_FORWARD, FFTW_ESTIMATE);
        if (!p) return 1;
        memset(buf, 0, 64 * sizeof *buf);
        fftwf_execute(p);
        fftwf_destroy_plan(p);
        fftwf_free(buf);
        printf("round %d ok\n", r);
        fflush(stdout);
    }
    return 0;
}
