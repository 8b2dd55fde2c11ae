/* Property test: random valid architectures of every layer kind, with random hyper-parameters
 * within the documented limits, on random input sizes. For each network that the library
 * accepts (append returned CFNET_OK):
 *   - save (with and without the training state, before and after a training step) succeeds:
 *     an accepted network is always savable,
 *   - load with the default limits accepts what save wrote (save never writes what load
 *     refuses), saving the loaded copy gives the same bytes, and its inference output is
 *     bitwise identical,
 *   - the loaded copy keeps training exactly like the original (same loss, same bytes after).
 * The generator and the case count are fixed, so a failure names a reproducible case. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CASES = 400, MAX_LAYERS = 6, NB = 2, LAST_KIND = CFNET_LAYER_CONIC_CONV_MIRROR };

static int pick(tu_rng *r, int n) { return (int)(tu_uniform(r) * n); }

static int pick_of(tu_rng *r, const int *v, int n) { return v[pick(r, n)]; }

/* A layer of `kind` with random, valid hyper-parameters; describes it in desc. */
static cfnet_layer *random_layer(tu_rng *r, int kind, char *desc, size_t dsize)
{
    static const int kernels[] = {1, 3, 5, 7}, conic_R[] = {1, 2, 3, 4, 7, 64},
                     proj_R[] = {1, 2, 3, 8, 64};
    cfnet_layer *l = NULL;
    cfnet_status st = CFNET_E_INTERNAL;
    int a = 0, b = 0, c = 0, d = 0, e = 0;
    float f = 0, g = 0;
    switch (kind) {
    case CFNET_LAYER_CONV2D:
        a = 1 + pick(r, 8), b = pick_of(r, kernels, 4), c = 1 + pick(r, 2), d = pick(r, 2);
        st = cfnet_layer_conv2d_create(a, b, c, (cfnet_padding)d, &l);
        break;
    case CFNET_LAYER_CONIC_CONV:
        a = 1 + pick(r, 6), b = pick_of(r, kernels, 3), c = pick_of(r, conic_R, 6),
        d = pick(r, 2), e = pick(r, 2);
        st = cfnet_layer_conic_conv_create(a, b, c, (cfnet_padding)d, (cfnet_interp)e, &l);
        break;
    case CFNET_LAYER_P4_LIFT:
        a = 1 + pick(r, 4), b = pick_of(r, kernels, 3), d = pick(r, 2);
        st = cfnet_layer_p4_lift_create(a, b, (cfnet_padding)d, &l);
        break;
    case CFNET_LAYER_P4_CONV:
        a = 1 + pick(r, 4), b = pick_of(r, kernels, 3), d = pick(r, 2);
        st = cfnet_layer_p4_conv_create(a, b, (cfnet_padding)d, &l);
        break;
    case CFNET_LAYER_GROUP_POOL:
        a = pick(r, 2);
        st = cfnet_layer_group_pool_create((cfnet_pool_mode)a, &l);
        break;
    case CFNET_LAYER_DFT_PROJECTION:
        a = 1 + pick(r, 6), c = pick_of(r, proj_R, 5), e = pick(r, 2);
        st = cfnet_layer_dft_projection_create(a, c, (cfnet_interp)e, &l);
        break;
    case CFNET_LAYER_DFT_MAGNITUDE: st = cfnet_layer_dft_magnitude_create(&l); break;
    case CFNET_LAYER_DENSE:
        a = 1 + pick(r, 10);
        st = cfnet_layer_dense_create(a, &l);
        break;
    case CFNET_LAYER_RELU: st = cfnet_layer_relu_create(&l); break;
    case CFNET_LAYER_POOL:
        a = pick(r, 2);
        if (pick(r, 2)) b = 0, c = pick(r, 2) ? 0 : 2;
        else b = 1 + pick(r, 3), c = 1 + pick(r, 3);
        st = cfnet_layer_pool_create((cfnet_pool_mode)a, b, c, &l);
        break;
    case CFNET_LAYER_BATCH_NORM:
        f = (float)(0.01 + 0.99 * tu_uniform(r)), g = (float)pow(10.0, -1 - 5 * tu_uniform(r));
        st = cfnet_layer_batch_norm_create(f, g, &l);
        break;
    case CFNET_LAYER_DROPOUT:
        f = (float)(0.9 * tu_uniform(r));
        st = cfnet_layer_dropout_create(f, &l);
        break;
    case CFNET_LAYER_SOFTMAX: st = cfnet_layer_softmax_create(&l); break;
    case CFNET_LAYER_P4M_LIFT:
        a = 1 + pick(r, 3), b = pick_of(r, kernels, 3), d = pick(r, 2);
        st = cfnet_layer_p4m_lift_create(a, b, (cfnet_padding)d, &l);
        break;
    case CFNET_LAYER_P4M_CONV:
        a = 1 + pick(r, 3), b = pick_of(r, kernels, 3), d = pick(r, 2);
        st = cfnet_layer_p4m_conv_create(a, b, (cfnet_padding)d, &l);
        break;
    case CFNET_LAYER_P4M_DFT_MAGNITUDE: st = cfnet_layer_p4m_dft_magnitude_create(&l); break;
    case CFNET_LAYER_CONIC_CONV_MIRROR:
        a = 1 + pick(r, 3), b = pick_of(r, kernels, 3), c = 1 + pick(r, 2), d = pick(r, 2);
        st = cfnet_layer_conic_conv_mirror_create(a, b, c, (cfnet_padding)d,
                                                  (cfnet_interp)pick(r, 2), &l);
        break;
    default: break;
    }
    snprintf(desc, dsize, "kind %d (%d %d %d %d %d %g %g)", kind, a, b, c, d, e, (double)f,
             (double)g);
    if (st != CFNET_OK) fail_msg("creating %s: %s", desc, cfnet_last_error());
    return l;
}

static void infer_equal(cfnet_network *a, cfnet_network *b, const cfnet_tensor *x, int cs)
{
    int nd;
    int64_t shape[CFNET_MAX_DIMS + 1];
    CF_ASSERT_OK(cfnet_network_output_shape(a, &nd, shape + 1));
    shape[0] = NB;
    cfnet_tensor *ya = tu_tensor(nd + 1, shape, NULL), *yb = tu_tensor(nd + 1, shape, NULL);
    CF_ASSERT_OK(cfnet_network_infer(a, x, ya));
    CF_ASSERT_OK(cfnet_network_infer(b, x, yb));
    if (memcmp(cfnet_tensor_data(ya), cfnet_tensor_data(yb),
               (size_t)cfnet_tensor_numel(ya) * sizeof(float)) != 0)
        fail_msg("case %d: the loaded network computes something else", cs);
    cfnet_tensor_free(ya);
    cfnet_tensor_free(yb);
}

/* save -> load -> save again: same bytes; returns the loaded copy. */
static cfnet_network *round_trip(cfnet_network *net, unsigned flags, int cs, const char *arch)
{
    void *buf = NULL, *buf2 = NULL;
    size_t size = 0, size2 = 0;
    cfnet_status st = cfnet_network_save_buffer(net, flags, &buf, &size);
    if (st != CFNET_OK)
        fail_msg("case %d [%s]: an accepted network cannot be saved: %s", cs, arch,
                 cfnet_last_error());
    cfnet_network *copy = NULL;
    st = cfnet_network_load_buffer(buf, size, &copy);
    if (st != CFNET_OK)
        fail_msg("case %d [%s]: save wrote %zu bytes that load refuses: %s", cs, arch, size,
                 cfnet_last_error());
    CF_ASSERT_OK(cfnet_network_save_buffer(copy, flags, &buf2, &size2));
    if (size2 != size || memcmp(buf, buf2, size) != 0)
        fail_msg("case %d [%s]: saving the loaded copy gives other bytes", cs, arch);
    cfnet_free(buf);
    cfnet_free(buf2);
    return copy;
}

static void random_architectures_save_and_load(void **state)
{
    (void)state;
    int kinds_seen[LAST_KIND + 1] = {0};
    int accepted_layers = 0, trained = 0;
    for (int cs = 0; cs < CASES; cs++) {
        tu_rng r = {0x5eed0000u + (uint64_t)cs};
        int C = 1 + pick(&r, 3), H = 1 + pick(&r, 16), W = pick(&r, 7) ? H : 1 + pick(&r, 16);
        cfnet_network *net = NULL;
        CF_ASSERT_OK(cfnet_network_create(C, H, W, (uint64_t)cs, &net));
        char arch[1024] = "", desc[96];
        int want = 1 + pick(&r, MAX_LAYERS);
        for (int tries = 0; tries < 24 && cfnet_network_layer_count(net) < want; tries++) {
            int kind = 1 + pick(&r, LAST_KIND);
            cfnet_layer *l = random_layer(&r, kind, desc, sizeof desc);
            cfnet_status st = cfnet_network_append(net, l); /* frees l on failure */
            if (st == CFNET_OK) {
                kinds_seen[kind]++;
                accepted_layers++;
                size_t used = strlen(arch);
                snprintf(arch + used, sizeof arch - used, "%s%s", used ? ", " : "", desc);
            } else if (st != CFNET_E_SHAPE_MISMATCH && st != CFNET_E_LIMIT) {
                fail_msg("case %d: append of %s: %s (%s)", cs, desc, cfnet_status_string(st),
                         cfnet_last_error());
            }
        }
        int64_t xs[4] = {NB, C, H, W};
        cfnet_tensor *x = tu_tensor(4, xs, &r);
        cfnet_network *copy = round_trip(net, 0, cs, arch);
        infer_equal(net, copy, x, cs);
        cfnet_network_free(copy);

        /* Train one step (where there are logits), then the training state round-trips and
         * both copies continue identically. */
        int nd;
        int64_t os[CFNET_MAX_DIMS];
        CF_ASSERT_OK(cfnet_network_output_shape(net, &nd, os));
        int32_t labels[NB] = {0, 0};
        float l0, l1, l2;
        cfnet_status st = cfnet_network_train_step(net, x, labels, NB, &l0);
        if (st == CFNET_OK) {
            trained++;
            copy = round_trip(net, CFNET_SAVE_OPTIMIZER, cs, arch);
            CF_ASSERT_OK(cfnet_network_train_step(net, x, labels, NB, &l1));
            CF_ASSERT_OK(cfnet_network_train_step(copy, x, labels, NB, &l2));
            if (memcmp(&l1, &l2, sizeof l1) != 0)
                fail_msg("case %d [%s]: the loaded copy trains differently (%g vs %g)", cs, arch,
                         (double)l1, (double)l2);
            cfnet_network_free(round_trip(copy, CFNET_SAVE_OPTIMIZER, cs, arch));
            cfnet_network_free(copy);
        } else if (st != CFNET_E_STATE && st != (cfnet_status)-10) {
            /* No layers to train (empty, or only a softmax) is a state error; a random
             * architecture may also diverge (non-finite), which is refused, not trained. */
            fail_msg("case %d [%s]: train_step: %s (%s)", cs, arch, cfnet_status_string(st),
                     cfnet_last_error());
        }
        cfnet_tensor_free(x);
        cfnet_network_free(net);
    }
    for (int k = 1; k <= LAST_KIND; k++)
        if (kinds_seen[k] == 0) fail_msg("layer kind %d never made it into a network", k);
    print_message("%d cases, %d layers accepted, %d networks trained and reloaded\n", CASES,
                  accepted_layers, trained);
}

/* The case an adversarial run found: saved in 1,208 bytes, refused by load. Either the
 * architecture is refused when it is built, or it saves and loads. */
static void huge_dft_grid_is_refused_at_construction_or_round_trips(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, 1, 1, 1, &net));
    CF_ASSERT_OK(cfnet_layer_dft_projection_create(64, 65536, CFNET_INTERP_NEAREST, &l));
    cfnet_status st = cfnet_network_append(net, l);
    if (st == CFNET_OK) {
        CF_ASSERT_OK(cfnet_layer_dft_magnitude_create(&l));
        st = cfnet_network_append(net, l);
    }
    if (st == CFNET_OK) {
        cfnet_network_free(round_trip(net, 0, -1, "dft_projection(64, R=65536), dft_magnitude"));
    } else {
        assert_int_equal(st, CFNET_E_LIMIT);
        assert_non_null(strstr(cfnet_last_error(), "limit"));
    }
    cfnet_network_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(random_architectures_save_and_load),
        cmocka_unit_test(huge_dft_grid_is_refused_at_construction_or_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
