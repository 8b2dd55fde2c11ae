/* The inference caches of the rotated filter banks (conic_conv, conic_conv_mirror through it,
 * and dft_projection): an inference gives the bits of a training-mode forward with the current
 * weights, also right after the weights were changed through their data pointer (the cache is
 * checked against a copy of the weights), after they were changed back, and on two threads at
 * once; the conic, p4 and p4m layers keep their banks packed for the engine, so an inference
 * with unchanged weights packs nothing. */
#include "testutil.h"

#include "kernels/convcore.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
    const cfnet_network *net;
    const cfnet_tensor *x;
    cfnet_tensor *y;
    cfnet_status st;
} job;

static void *run_infer(void *arg)
{
    job *j = arg;
    for (int i = 0; i < 10 && j->st == CFNET_OK; i++) j->st = cfnet_network_infer(j->net, j->x, j->y);
    return NULL;
}

/* y of a forward in mode into a fresh tensor (the caller frees it). */
static cfnet_tensor *forward(cfnet_layer *l, const cfnet_tensor *x, int64_t n, cfnet_mode mode)
{
    cfnet_tensor *y = tu_output_for(l, n);
    CF_ASSERT_OK(cfnet_layer_forward(l, x, y, mode));
    return y;
}

static void assert_same(const cfnet_tensor *a, const cfnet_tensor *b)
{
    assert_int_equal(cfnet_tensor_numel(a), cfnet_tensor_numel(b));
    assert_memory_equal(cfnet_tensor_data(a), cfnet_tensor_data(b),
                        (size_t)cfnet_tensor_numel(a) * sizeof(float));
}

/* Inferences at batch 1 to 3 through layer l (per-sample input shape in[0..ndim)) whose
 * weights have not changed since its last inference pack nothing and give a training
 * forward's bits. */
static void assert_repeats_pack_nothing(cfnet_layer *l, int ndim, const int64_t *in, tu_rng *r)
{
    for (int64_t n = 1; n <= 3; n++) {
        int64_t xs[5] = {n};
        memcpy(xs + 1, in, (size_t)ndim * sizeof *in);
        cfnet_tensor *xn = tu_tensor(ndim + 1, xs, r);
        uint64_t packs = cf_conv_pack_count();
        cfnet_tensor *b = forward(l, xn, n, CFNET_MODE_INFERENCE);
        assert_int_equal(cf_conv_pack_count(), packs);
        cfnet_tensor *t = forward(l, xn, n, CFNET_MODE_TRAINING);
        assert_same(b, t);
        cfnet_tensor_free(xn);
        cfnet_tensor_free(b);
        cfnet_tensor_free(t);
    }
}

static void check_layer(cfnet_layer *l, int ndim, const int64_t *in)
{
    CF_ASSERT_OK(cfnet_layer_setup(l, ndim, in, 3));
    tu_rng r = {21};
    int64_t xs[5] = {2};
    for (int d = 0; d < ndim; d++) xs[d + 1] = in[d];
    cfnet_tensor *x = tu_tensor(ndim + 1, xs, &r);
    float *w = cfnet_tensor_data(cfnet_layer_param(l, 0));
    int64_t wn = cfnet_tensor_numel(cfnet_layer_param(l, 0));

    cfnet_tensor *a = forward(l, x, 2, CFNET_MODE_INFERENCE); /* builds the cache */
    cfnet_tensor *t = forward(l, x, 2, CFNET_MODE_TRAINING);
    assert_same(a, t);
    cfnet_tensor *a2 = forward(l, x, 2, CFNET_MODE_INFERENCE); /* from the cache */
    assert_same(a2, t);

    /* Change one weight through the data pointer: the next inference sees it. */
    float keep = w[wn / 2];
    w[wn / 2] = keep + 0.5f;
    cfnet_tensor *b = forward(l, x, 2, CFNET_MODE_INFERENCE);
    cfnet_tensor *bt = forward(l, x, 2, CFNET_MODE_TRAINING);
    assert_same(b, bt);
    assert_true(memcmp(cfnet_tensor_data(a), cfnet_tensor_data(b),
                       (size_t)cfnet_tensor_numel(a) * sizeof(float)) != 0);

    /* Back to the first weights: the first result again. */
    w[wn / 2] = keep;
    cfnet_tensor *c = forward(l, x, 2, CFNET_MODE_INFERENCE);
    assert_same(c, a);

    cfnet_tensor *all[] = {x, a, t, a2, b, bt, c};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cfnet_tensor_free(all[i]);
    cfnet_layer_free(l);
}

static void conic_cache_follows_the_weights(void **state)
{
    (void)state;
    for (int interp = 0; interp < 3; interp++) {
        cfnet_layer *l = NULL;
        CF_ASSERT_OK(cfnet_layer_conic_conv_create(5, 3, 2, CFNET_PADDING_SAME,
                                                   (cfnet_interp)interp, &l));
        check_layer(l, 3, (const int64_t[]){3, 13, 13});
    }
    cfnet_layer *m = NULL;
    CF_ASSERT_OK(cfnet_layer_conic_conv_mirror_create(4, 3, 1, CFNET_PADDING_VALID,
                                                      CFNET_INTERP_NEAREST, &m));
    check_layer(m, 3, (const int64_t[]){2, 11, 11});
}

static void dft_projection_cache_follows_the_weights(void **state)
{
    (void)state;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_layer_dft_projection_create(6, 2, CFNET_INTERP_BILINEAR, &l));
    check_layer(l, 3, (const int64_t[]){4, 7, 7});
    CF_ASSERT_OK(cfnet_layer_dft_projection_create(3, 1, CFNET_INTERP_NEAREST, &l));
    check_layer(l, 4, (const int64_t[]){2, 4, 5, 5});
}

/* A CFNet (conic layers and a DFT projection) used by two threads at once, right after its
 * weights changed through their data pointers: both get the single-threaded result. */
static void network_inference_on_two_threads_after_a_change(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create_classifier(CFNET_FAMILY_CFNET, 1, 24, 3, 6, 5, &net));
    tu_rng r = {8};
    int64_t xs[] = {3, 1, 24, 24}, ys[] = {3, 3};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *ref = tu_tensor(2, ys, NULL);
    CF_ASSERT_OK(cfnet_network_infer(net, x, ref)); /* builds the caches */
    for (int li = 0; li < cfnet_network_layer_count(net); li++) {
        cfnet_layer *l = cfnet_network_layer(net, li);
        if (cfnet_layer_param_count(l) == 0) continue;
        float *w = cfnet_tensor_data(cfnet_layer_param(l, 0));
        w[0] += 0.125f;
    }
    CF_ASSERT_OK(cfnet_network_infer(net, x, ref)); /* one thread, after the change */
    CF_ASSERT_OK(cfnet_network_infer(net, x, ref));
    for (int li = 0; li < cfnet_network_layer_count(net); li++) {
        cfnet_layer *l = cfnet_network_layer(net, li);
        if (cfnet_layer_param_count(l) == 0) continue;
        cfnet_tensor_data(cfnet_layer_param(l, 0))[1] -= 0.25f;
    }
    /* The two threads are the first to run with the new weights: they race to rebuild. */
    job jobs[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        jobs[i] = (job){net, x, tu_tensor(2, ys, NULL), CFNET_OK};
        assert_int_equal(pthread_create(&th[i], NULL, run_infer, &jobs[i]), 0);
    }
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
    /* The expected result: built again on one thread (a detour through other weights makes
     * every cache rebuild). */
    float saved[64];
    int nl = cfnet_network_layer_count(net);
    assert_true(nl <= 64);
    for (int li = 0; li < nl; li++) {
        cfnet_layer *l = cfnet_network_layer(net, li);
        if (cfnet_layer_param_count(l) == 0) continue;
        float *w = cfnet_tensor_data(cfnet_layer_param(l, 0));
        saved[li] = w[2];
        w[2] += 1.0f;
    }
    CF_ASSERT_OK(cfnet_network_infer(net, x, ref));
    for (int li = 0; li < nl; li++) {
        cfnet_layer *l = cfnet_network_layer(net, li);
        if (cfnet_layer_param_count(l) == 0) continue;
        cfnet_tensor_data(cfnet_layer_param(l, 0))[2] = saved[li];
    }
    cfnet_tensor *expect = tu_tensor(2, ys, NULL);
    CF_ASSERT_OK(cfnet_network_infer(net, x, expect));
    for (int i = 0; i < 2; i++) {
        CF_ASSERT_OK(jobs[i].st);
        assert_memory_equal(cfnet_tensor_data(jobs[i].y), cfnet_tensor_data(expect),
                            9 * sizeof(float));
        cfnet_tensor_free(jobs[i].y);
    }
    cfnet_tensor_free(x);
    cfnet_tensor_free(ref);
    cfnet_tensor_free(expect);
    cfnet_network_free(net);
}

/* Inferences with unchanged weights pack no bank (the cache holds them packed), for the direct
 * layout (few output channels) and the GEMM's (more than CF_CONV_PIX_MAX_O), at any batch size;
 * a changed weight packs once, and every result has a training forward's bits. */
static void conic_inference_packs_only_after_a_change(void **state)
{
    (void)state;
    const int outs[] = {1, 6, 40};
    for (size_t oi = 0; oi < sizeof outs / sizeof *outs; oi++) {
        cfnet_layer *l = NULL;
        CF_ASSERT_OK(cfnet_layer_conic_conv_create(outs[oi], 3, 2, CFNET_PADDING_SAME,
                                                   CFNET_INTERP_BILINEAR, &l));
        CF_ASSERT_OK(cfnet_layer_setup(l, 3, (const int64_t[]){4, 12, 12}, 5));
        tu_rng r = {31};
        cfnet_tensor *x = tu_tensor(4, (const int64_t[]){3, 4, 12, 12}, &r);
        float *w = cfnet_tensor_data(cfnet_layer_param(l, 0));
        uint64_t packs = cf_conv_pack_count();
        cfnet_tensor *a = forward(l, x, 3, CFNET_MODE_INFERENCE);
        assert_int_equal(cf_conv_pack_count(), packs + 1);
        assert_repeats_pack_nothing(l, 3, (const int64_t[]){4, 12, 12}, &r);
        w[7] -= 0.25f;
        packs = cf_conv_pack_count();
        cfnet_tensor *c = forward(l, x, 3, CFNET_MODE_INFERENCE);
        assert_int_equal(cf_conv_pack_count(), packs + 1);
        cfnet_tensor *ct = forward(l, x, 3, CFNET_MODE_TRAINING);
        assert_same(c, ct);
        assert_true(memcmp(cfnet_tensor_data(a), cfnet_tensor_data(c),
                           (size_t)cfnet_tensor_numel(a) * sizeof(float)) != 0);
        cfnet_tensor *all[] = {x, a, c, ct};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) cfnet_tensor_free(all[i]);
        cfnet_layer_free(l);
    }
}

/* The p4 and p4m layers, lifting and group: their kind, constructor and an input shape. */
typedef struct p4_kind {
    const char *name;
    cfnet_status (*create)(int, int, cfnet_padding, cfnet_layer **);
    int ndim;
    int64_t in[4];
} p4_kind;

static const p4_kind P4_KINDS[] = {
    {"p4_lift", cfnet_layer_p4_lift_create, 3, {3, 9, 9}},
    {"p4_conv", cfnet_layer_p4_conv_create, 4, {2, 4, 9, 9}},
    {"p4m_lift", cfnet_layer_p4m_lift_create, 3, {3, 9, 9}},
    {"p4m_conv", cfnet_layer_p4m_conv_create, 4, {2, 8, 8, 8}},
};

static cfnet_layer *p4_layer(const p4_kind *k, int out, uint64_t seed)
{
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(k->create(out, 3, CFNET_PADDING_SAME, &l));
    CF_ASSERT_OK(cfnet_layer_setup(l, k->ndim, k->in, seed));
    return l;
}

static cfnet_tensor *p4_input(const p4_kind *k, int64_t n, tu_rng *r)
{
    int64_t xs[5] = {n};
    for (int d = 0; d < k->ndim; d++) xs[d + 1] = k->in[d];
    return tu_tensor(k->ndim + 1, xs, r);
}

/* An inference of a new layer of kind k with l's weight and bias (set through the tensors'
 * copy_in), which is checked to equal y bit for bit. */
static void assert_fresh_layer_gives(const p4_kind *k, int out, const cfnet_layer *l,
                                     const cfnet_tensor *x, int64_t n, const cfnet_tensor *y)
{
    cfnet_layer *f = p4_layer(k, out, 99);
    for (int i = 0; i < 2; i++) {
        cfnet_tensor *src = cfnet_layer_param(l, i);
        CF_ASSERT_OK(cfnet_tensor_copy_in(cfnet_layer_param(f, i), cfnet_tensor_data(src),
                                          cfnet_tensor_numel(src)));
    }
    cfnet_tensor *fy = forward(f, x, n, CFNET_MODE_INFERENCE);
    assert_same(y, fy);
    cfnet_tensor_free(fy);
    cfnet_layer_free(f);
}

/* Sets element i of parameter `which` of l to v through cfnet_tensor_copy_in. */
static void set_param(cfnet_layer *l, int which, int64_t i, float v)
{
    cfnet_tensor *t = cfnet_layer_param(l, which);
    int64_t numel = cfnet_tensor_numel(t);
    float *buf = malloc((size_t)numel * sizeof *buf);
    assert_non_null(buf);
    CF_ASSERT_OK(cfnet_tensor_copy_out(t, buf, numel));
    buf[i] = v;
    CF_ASSERT_OK(cfnet_tensor_copy_in(t, buf, numel));
    free(buf);
}

/* The p4 and p4m layers keep their expanded bank packed for the engine as well: inferences
 * with unchanged weights expand and pack nothing, at any batch size, with a training forward's
 * bits; a new weight or a new bias (set through copy_in) packs once, and the result is that of
 * a new layer given the same weight and bias. One output channel (the packed rows padded) and
 * five. */
static void p4_inference_packs_only_after_a_change(void **state)
{
    (void)state;
    const int outs[] = {1, 5};
    for (size_t ki = 0; ki < sizeof P4_KINDS / sizeof *P4_KINDS; ki++) {
        const p4_kind *k = &P4_KINDS[ki];
        for (size_t oi = 0; oi < sizeof outs / sizeof *outs; oi++) {
            print_message("%s, %d output channels\n", k->name, outs[oi]);
            cfnet_layer *l = p4_layer(k, outs[oi], 5);
            tu_rng r = {41};
            cfnet_tensor *x = p4_input(k, 3, &r);
            uint64_t packs = cf_conv_pack_count();
            cfnet_tensor *a = forward(l, x, 3, CFNET_MODE_INFERENCE);
            assert_int_equal(cf_conv_pack_count(), packs + 1);
            assert_repeats_pack_nothing(l, k->ndim, k->in, &r);
            /* A new weight. */
            int64_t wn = cfnet_tensor_numel(cfnet_layer_param(l, 0));
            set_param(l, 0, wn / 3, cfnet_tensor_data(cfnet_layer_param(l, 0))[wn / 3] - 0.25f);
            packs = cf_conv_pack_count();
            cfnet_tensor *c = forward(l, x, 3, CFNET_MODE_INFERENCE);
            assert_int_equal(cf_conv_pack_count(), packs + 1);
            assert_true(memcmp(cfnet_tensor_data(a), cfnet_tensor_data(c),
                               (size_t)cfnet_tensor_numel(a) * sizeof(float)) != 0);
            assert_fresh_layer_gives(k, outs[oi], l, x, 3, c);
            /* A new bias alone. */
            set_param(l, 1, 0, cfnet_tensor_data(cfnet_layer_param(l, 1))[0] + 0.5f);
            packs = cf_conv_pack_count();
            cfnet_tensor *d = forward(l, x, 3, CFNET_MODE_INFERENCE);
            assert_int_equal(cf_conv_pack_count(), packs + 1);
            assert_true(memcmp(cfnet_tensor_data(c), cfnet_tensor_data(d),
                               (size_t)cfnet_tensor_numel(c) * sizeof(float)) != 0);
            assert_fresh_layer_gives(k, outs[oi], l, x, 3, d);
            packs = cf_conv_pack_count();
            cfnet_tensor *e = forward(l, x, 3, CFNET_MODE_INFERENCE);
            assert_int_equal(cf_conv_pack_count(), packs);
            assert_same(d, e);
            cfnet_tensor *all[] = {x, a, c, d, e};
            for (size_t i = 0; i < sizeof all / sizeof *all; i++) cfnet_tensor_free(all[i]);
            cfnet_layer_free(l);
        }
    }
}

/* A backward after an inference from the cache (which leaves the packed bank in the workspace,
 * not the expanded one) gives the gradients of a backward after a training forward. */
static void p4_backward_after_a_cached_inference(void **state)
{
    (void)state;
    for (size_t ki = 0; ki < sizeof P4_KINDS / sizeof *P4_KINDS; ki++) {
        const p4_kind *k = &P4_KINDS[ki];
        print_message("%s\n", k->name);
        cfnet_layer *l = p4_layer(k, 5, 7);
        tu_rng r = {43};
        cfnet_tensor *x = p4_input(k, 2, &r), *dx[2], *dw[2];
        cfnet_tensor *y = forward(l, x, 2, CFNET_MODE_TRAINING);
        cfnet_tensor *dy = tu_output_for(l, 2);
        tu_fill_normal(cfnet_tensor_data(dy), cfnet_tensor_numel(dy), &r);
        cfnet_tensor *g = cfnet_layer_grad(l, 0);
        int64_t gn = cfnet_tensor_numel(g);
        for (int pass = 0; pass < 2; pass++) {
            memset(cfnet_tensor_data(g), 0, (size_t)gn * sizeof(float));
            if (pass == 1) { /* the first builds the cache, the second runs from it */
                cfnet_tensor *y1 = forward(l, x, 2, CFNET_MODE_INFERENCE);
                cfnet_tensor_free(y1);
                CF_ASSERT_OK(cfnet_layer_forward(l, x, y, CFNET_MODE_INFERENCE));
            }
            dx[pass] = p4_input(k, 2, NULL);
            CF_ASSERT_OK(cfnet_layer_backward(l, x, y, dy, dx[pass]));
            dw[pass] = tu_tensor(1, &gn, NULL);
            CF_ASSERT_OK(cfnet_tensor_copy_in(dw[pass], cfnet_tensor_data(g), gn));
        }
        assert_same(dx[0], dx[1]);
        assert_same(dw[0], dw[1]);
        cfnet_tensor *all[] = {x, y, dy, dx[0], dx[1], dw[0], dw[1]};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) cfnet_tensor_free(all[i]);
        cfnet_layer_free(l);
    }
}

/* The CFNet, G-CNN and p4m G-CNN presets (on two threads): a second inference packs nothing;
 * after a training step the next inference packs again and gives the bits of a network loaded
 * from the trained one's saved model, and the one after it packs nothing. */
static void preset_inference_packs_only_after_a_step(void **state)
{
    (void)state;
    const cfnet_family fams[] = {CFNET_FAMILY_CFNET, CFNET_FAMILY_GCNN, CFNET_FAMILY_GCNN_P4M};
    const int sizes[] = {32, 16, 16};
    for (size_t fi = 0; fi < sizeof fams / sizeof *fams; fi++) {
        cfnet_network *net = NULL;
        CF_ASSERT_OK(cfnet_network_create_classifier(fams[fi], 2, sizes[fi], 3, 6, 5, &net));
        CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, 2));
        tu_rng r = {13};
        int64_t xs[] = {2, 2, sizes[fi], sizes[fi]}, ys[] = {2, 3};
        cfnet_tensor *x = tu_tensor(4, xs, &r), *y = tu_tensor(2, ys, NULL),
                     *y2 = tu_tensor(2, ys, NULL), *yl = tu_tensor(2, ys, NULL);
        uint64_t packs = cf_conv_pack_count();
        CF_ASSERT_OK(cfnet_network_infer(net, x, y));
        assert_true(cf_conv_pack_count() > packs);
        packs = cf_conv_pack_count();
        CF_ASSERT_OK(cfnet_network_infer(net, x, y2));
        assert_int_equal(cf_conv_pack_count(), packs);
        assert_same(y, y2);
        const int32_t labels[] = {0, 2};
        CF_ASSERT_OK(cfnet_network_train_step(net, x, labels, 2, NULL));
        packs = cf_conv_pack_count();
        CF_ASSERT_OK(cfnet_network_infer(net, x, y));
        assert_true(cf_conv_pack_count() > packs);
        assert_true(memcmp(cfnet_tensor_data(y), cfnet_tensor_data(y2), 6 * sizeof(float)) != 0);
        void *buf = NULL;
        size_t size = 0;
        cfnet_network *loaded = NULL;
        CF_ASSERT_OK(cfnet_network_save_buffer(net, 0, &buf, &size));
        CF_ASSERT_OK(cfnet_network_load_buffer(buf, size, &loaded));
        cfnet_free(buf);
        CF_ASSERT_OK(cfnet_network_infer(loaded, x, yl));
        assert_same(y, yl);
        packs = cf_conv_pack_count();
        CF_ASSERT_OK(cfnet_network_infer(net, x, y2));
        assert_int_equal(cf_conv_pack_count(), packs);
        assert_same(y, y2);
        cfnet_tensor *all[] = {x, y, y2, yl};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) cfnet_tensor_free(all[i]);
        cfnet_network_free(loaded);
        cfnet_network_free(net);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conic_cache_follows_the_weights),
        cmocka_unit_test(dft_projection_cache_follows_the_weights),
        cmocka_unit_test(network_inference_on_two_threads_after_a_change),
        cmocka_unit_test(conic_inference_packs_only_after_a_change),
        cmocka_unit_test(p4_inference_packs_only_after_a_change),
        cmocka_unit_test(p4_backward_after_a_cached_inference),
        cmocka_unit_test(preset_inference_packs_only_after_a_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
