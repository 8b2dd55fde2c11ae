/* cfnet_network_train_epoch: the same as train steps on the shuffled batches, host orders,
 * partial last batch, the progress callback's values, cancel, resume, misuse. */
#include "testutil.h"

#include "nn/network.h" /* cf_network_draw_order: the epoch's shuffle, to redo it by hand */

#include <math.h>
#include <stdio.h>
#include <string.h>

#define S 16
#define N 10
#define K 3

static cfnet_network *make_net(int augment)
{
    cfnet_network *net = NULL;
    CF_ASSERT_OK(cfnet_network_create_classifier(CFNET_FAMILY_CFNET, 1, S, K, 4, 11, &net));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, 5e-3));
    if (augment) {
        CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_AUG_ROTATION,
                                              CFNET_AUG_ROTATION_ANY));
        CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_AUG_JITTER, 2));
        CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_AUG_FLIP, 1));
    }
    return net;
}

static cfnet_tensor *make_images(void)
{
    tu_rng r = {5};
    int64_t shape[4] = {N, 1, S, S};
    return tu_tensor(4, shape, &r);
}

static const int32_t labels[N] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0};

/* The whole state (architecture, weights, statistics, options, optimiser, step, generators). */
static void assert_same_state(const cfnet_network *a, const cfnet_network *b)
{
    void *ba = NULL, *bb = NULL;
    size_t na = 0, nb = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(a, CFNET_SAVE_OPTIMIZER, &ba, &na));
    CF_ASSERT_OK(cfnet_network_save_buffer(b, CFNET_SAVE_OPTIMIZER, &bb, &nb));
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, na);
    cfnet_free(ba);
    cfnet_free(bb);
}

/* train_step on the samples idx[0..n-1], gathered into a batch. */
static float step_on(cfnet_network *net, const cfnet_tensor *x, const int64_t *idx, int64_t n,
                     int count_correct, int64_t *correct)
{
    int64_t shape[4] = {n, 1, S, S}, oshape[2] = {n, K};
    cfnet_tensor *b = tu_tensor(4, shape, NULL);
    int32_t lab[N];
    for (int64_t i = 0; i < n; i++) {
        memcpy(cfnet_tensor_data(b) + i * S * S, cfnet_tensor_data(x) + idx[i] * S * S,
               S * S * sizeof(float));
        lab[i] = labels[idx[i]];
    }
    if (count_correct) { /* training-mode output before the update (no augmentation here) */
        cfnet_tensor *out = tu_tensor(2, oshape, NULL);
        CF_ASSERT_OK(cfnet_network_forward(net, b, out, CFNET_MODE_TRAINING));
        const float *z = cfnet_tensor_data(out);
        for (int64_t i = 0; i < n; i++) {
            int best = 0;
            for (int j = 1; j < K; j++)
                if (z[i * K + j] > z[i * K + best]) best = j;
            *correct += best == lab[i];
        }
        cfnet_tensor_free(out);
    }
    float loss;
    CF_ASSERT_OK(cfnet_network_train_step(net, b, lab, n, &loss));
    cfnet_tensor_free(b);
    return loss;
}

static void epoch_equals_train_steps_on_the_shuffled_batches(void **state)
{
    (void)state;
    cfnet_tensor *x = make_images();
    cfnet_network *a = make_net(1), *b = make_net(1);
    for (int epoch = 0; epoch < 2; epoch++) {
        double mean = -1, acc = -1;
        CF_ASSERT_OK(cfnet_network_train_epoch(a, x, labels, 4, NULL, 0, NULL, NULL, &mean,
                                               &acc));
        int64_t perm[N];
        cf_network_draw_order(b, N, perm);
        double sum = 0;
        for (int64_t s0 = 0; s0 < N; s0 += 4) {
            int64_t nb = N - s0 < 4 ? N - s0 : 4; /* 4, 4, 2 */
            sum += (double)step_on(b, x, perm + s0, nb, 0, NULL) * (double)nb;
        }
        assert_true(mean == sum / N);
        assert_true(acc >= 0 && acc <= 1);
        assert_int_equal(cfnet_network_step_count(a), 3 * (epoch + 1));
        assert_same_state(a, b);
    }
    /* the permutation is one: every sample once */
    int64_t perm[N];
    int seen[N] = {0};
    cf_network_draw_order(a, N, perm);
    for (int i = 0; i < N; i++) seen[perm[i]]++;
    for (int i = 0; i < N; i++) assert_int_equal(seen[i], 1);
    cfnet_network_free(a);
    cfnet_network_free(b);
    cfnet_tensor_free(x);
}

static void host_order_with_repetitions_and_a_partial_last_batch(void **state)
{
    (void)state;
    cfnet_tensor *x = make_images();
    cfnet_network *a = make_net(1), *b = make_net(1);
    static const int64_t order[7] = {3, 3, 9, 0, 7, 7, 1};
    double mean = -1;
    CF_ASSERT_OK(cfnet_network_train_epoch(a, x, labels, 3, order, 7, NULL, NULL, &mean, NULL));
    double sum = 0;
    sum += 3.0 * step_on(b, x, order, 3, 0, NULL);
    sum += 3.0 * step_on(b, x, order + 3, 3, 0, NULL);
    sum += 1.0 * step_on(b, x, order + 6, 1, 0, NULL);
    assert_true(mean == sum / 7);
    assert_int_equal(cfnet_network_step_count(a), 3);
    assert_same_state(a, b); /* the host order draws nothing from the generator */
    /* batch larger than the data: one step */
    CF_ASSERT_OK(cfnet_network_train_epoch(a, x, labels, 100, NULL, 0, NULL, NULL, NULL, NULL));
    assert_int_equal(cfnet_network_step_count(a), 4);
    CF_ASSERT_OK(cfnet_network_train_epoch(a, x, labels, INT64_MAX, NULL, 0, NULL, NULL, NULL,
                                           NULL));
    assert_int_equal(cfnet_network_step_count(a), 5);
    cfnet_network_free(a);
    cfnet_network_free(b);
    cfnet_tensor_free(x);
}

typedef struct record {
    int calls, cancel_at;
    int64_t step[8], steps[8];
    double loss[8], acc[8];
} record;

static int on_progress(void *user, int64_t step, int64_t steps, double loss, double accuracy)
{
    record *r = user;
    if (r->calls < 8) {
        r->step[r->calls] = step;
        r->steps[r->calls] = steps;
        r->loss[r->calls] = loss;
        r->acc[r->calls] = accuracy;
    }
    r->calls++;
    return r->cancel_at > 0 && step == r->cancel_at;
}

static void progress_reports_step_loss_and_running_accuracy(void **state)
{
    (void)state;
    cfnet_tensor *x = make_images();
    cfnet_network *a = make_net(0), *b = make_net(0);
    record rec = {0};
    double mean = -1, acc = -1;
    CF_ASSERT_OK(cfnet_network_train_epoch(a, x, labels, 3, NULL, 0, on_progress, &rec, &mean,
                                           &acc));
    assert_int_equal(rec.calls, 4); /* 3, 3, 3, 1 */
    int64_t perm[N], correct = 0, seen = 0;
    cf_network_draw_order(b, N, perm);
    for (int s = 0; s < 4; s++) {
        int64_t nb = s < 3 ? 3 : 1;
        float loss = step_on(b, x, perm + 3 * s, nb, 1, &correct);
        seen += nb;
        assert_int_equal(rec.step[s], s + 1);
        assert_int_equal(rec.steps[s], 4);
        assert_true(rec.loss[s] == (double)loss);
        assert_true(rec.acc[s] == (double)correct / (double)seen);
    }
    assert_true(acc == rec.acc[3]);
    cfnet_network_free(a);
    cfnet_network_free(b);
    cfnet_tensor_free(x);
}

static void cancel_keeps_the_steps_done_and_a_saveable_network(void **state)
{
    (void)state;
    cfnet_tensor *x = make_images();
    cfnet_network *a = make_net(1), *b = make_net(1);
    record rec = {0};
    rec.cancel_at = 2;
    double mean = -1, acc = -1;
    CF_ASSERT_STATUS(cfnet_network_train_epoch(a, x, labels, 3, NULL, 0, on_progress, &rec,
                                               &mean, &acc),
                     CFNET_E_CANCELLED);
    assert_non_null(strstr(cfnet_last_error(), "step 2 of 4"));
    assert_int_equal(rec.calls, 2);
    assert_int_equal(cfnet_network_step_count(a), 2);
    assert_true(mean >= 0 && acc >= 0 && acc <= 1);
    /* the same as two train steps on the shuffled batches */
    int64_t perm[N];
    cf_network_draw_order(b, N, perm);
    step_on(b, x, perm, 3, 0, NULL);
    step_on(b, x, perm + 3, 3, 0, NULL);
    assert_same_state(a, b);
    /* saved and loaded (with the training state), it continues exactly as the original */
    char path[512];
    snprintf(path, sizeof path, "%s/epoch_cancelled.cfnet", tu_outdir());
    CF_ASSERT_OK(cfnet_network_save(a, path, CFNET_SAVE_OPTIMIZER));
    cfnet_network *c = NULL;
    CF_ASSERT_OK(cfnet_network_load(path, &c));
    assert_int_equal(cfnet_network_step_count(c), 2);
    CF_ASSERT_OK(cfnet_network_train_epoch(a, x, labels, 3, NULL, 0, NULL, NULL, NULL, NULL));
    CF_ASSERT_OK(cfnet_network_train_epoch(c, x, labels, 3, NULL, 0, NULL, NULL, NULL, NULL));
    assert_int_equal(cfnet_network_step_count(c), 6);
    assert_same_state(a, c);
    remove(path);
    cfnet_network_free(a);
    cfnet_network_free(b);
    cfnet_network_free(c);
    cfnet_tensor_free(x);
}

static void resume_from_a_saved_buffer_is_bit_identical(void **state)
{
    (void)state;
    cfnet_tensor *x = make_images();
    cfnet_network *a = make_net(1), *b = NULL;
    CF_ASSERT_OK(cfnet_network_train_epoch(a, x, labels, 4, NULL, 0, NULL, NULL, NULL, NULL));
    void *buf = NULL;
    size_t size = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(a, CFNET_SAVE_OPTIMIZER, &buf, &size));
    CF_ASSERT_OK(cfnet_network_load_buffer(buf, size, &b));
    cfnet_free(buf);
    for (int e = 0; e < 2; e++) {
        CF_ASSERT_OK(cfnet_network_train_epoch(a, x, labels, 4, NULL, 0, NULL, NULL, NULL, NULL));
        CF_ASSERT_OK(cfnet_network_train_epoch(b, x, labels, 4, NULL, 0, NULL, NULL, NULL, NULL));
    }
    assert_same_state(a, b);
    cfnet_network_free(a);
    cfnet_network_free(b);
    cfnet_tensor_free(x);
}

/* A step that fails on numbers mid-epoch (image 9 scaled to 1e30 overflows the batch-norm
 * statistics in step 3): CFNET_E_NUMERIC, a message naming the step and saying what is kept,
 * and the network exactly as after the two steps before it (saveable, no NaN). */
static void a_step_failing_mid_epoch_keeps_the_steps_before_it(void **state)
{
    (void)state;
    cfnet_tensor *x = make_images();
    float *d = cfnet_tensor_data(x);
    for (int j = 0; j < S * S; j++) d[9 * S * S + j] = (d[9 * S * S + j] + 2.0f) * 1e30f;
    cfnet_network *a = make_net(0), *ref = make_net(0);
    const int64_t order[6] = {0, 1, 2, 3, 9, 4};
    record rec = {0};
    double mean = 42, acc = 42;
    CF_ASSERT_STATUS(
        cfnet_network_train_epoch(a, x, labels, 2, order, 6, on_progress, &rec, &mean, &acc),
        CFNET_E_NUMERIC);
    const char *msg = cfnet_last_error();
    if (!strstr(msg, "network_train_epoch: step 3 of 3 failed (2 earlier steps are kept)") ||
        !strstr(msg, "batch_norm"))
        fail_msg("message: %s", msg);
    assert_int_equal(rec.calls, 2);
    assert_int_equal(cfnet_network_step_count(a), 2);
    int64_t correct = 0;
    step_on(ref, x, order, 2, 0, &correct);
    step_on(ref, x, order + 2, 2, 0, &correct);
    assert_same_state(a, ref);
    cfnet_network_free(a);
    cfnet_network_free(ref);
    cfnet_tensor_free(x);
}

static void misuse_is_rejected_before_anything_changes(void **state)
{
    (void)state;
    cfnet_tensor *x = make_images();
    cfnet_network *a = make_net(1), *ref = make_net(1);
    double mean = 42, acc = 42;
    int32_t bad[N];
    memcpy(bad, labels, sizeof bad);
    int64_t order[3] = {0, 1, 2};
    record rec = {0};
#define REJECT(call, status)                                                        \
    do {                                                                            \
        CF_ASSERT_STATUS(call, status);                                             \
        assert_same_state(a, ref);                                                  \
        assert_true(mean == 42 && acc == 42);                                       \
        assert_int_equal(rec.calls, 0);                                             \
    } while (0)
    REJECT(cfnet_network_train_epoch(NULL, x, labels, 2, NULL, 0, on_progress, &rec, &mean, &acc),
           CFNET_E_INVALID_ARGUMENT);
    REJECT(cfnet_network_train_epoch(a, NULL, labels, 2, NULL, 0, on_progress, &rec, &mean, &acc),
           CFNET_E_INVALID_ARGUMENT);
    REJECT(cfnet_network_train_epoch(a, x, NULL, 2, NULL, 0, on_progress, &rec, &mean, &acc),
           CFNET_E_INVALID_ARGUMENT);
    REJECT(cfnet_network_train_epoch(a, x, labels, 0, NULL, 0, on_progress, &rec, &mean, &acc),
           CFNET_E_INVALID_ARGUMENT);
    REJECT(cfnet_network_train_epoch(a, x, labels, -3, NULL, 0, on_progress, &rec, &mean, &acc),
           CFNET_E_INVALID_ARGUMENT);
    bad[7] = K;
    REJECT(cfnet_network_train_epoch(a, x, bad, 2, NULL, 0, on_progress, &rec, &mean, &acc),
           CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "label 7"));
    bad[7] = -1;
    REJECT(cfnet_network_train_epoch(a, x, bad, 2, NULL, 0, on_progress, &rec, &mean, &acc),
           CFNET_E_INVALID_ARGUMENT);
    order[2] = N;
    REJECT(cfnet_network_train_epoch(a, x, labels, 2, order, 3, on_progress, &rec, &mean, &acc),
           CFNET_E_INVALID_ARGUMENT);
    assert_non_null(strstr(cfnet_last_error(), "order[2]"));
    order[2] = -1;
    REJECT(cfnet_network_train_epoch(a, x, labels, 2, order, 3, on_progress, &rec, &mean, &acc),
           CFNET_E_INVALID_ARGUMENT);
    order[2] = 2;
    REJECT(cfnet_network_train_epoch(a, x, labels, 2, order, 0, on_progress, &rec, &mean, &acc),
           CFNET_E_INVALID_ARGUMENT);
    float keep = cfnet_tensor_data(x)[N * S * S - 1];
    cfnet_tensor_data(x)[N * S * S - 1] = NAN;
    REJECT(cfnet_network_train_epoch(a, x, labels, 2, NULL, 0, on_progress, &rec, &mean, &acc),
           CFNET_E_INVALID_ARGUMENT);
    cfnet_tensor_data(x)[N * S * S - 1] = keep;
    int64_t wrong[4] = {N, 1, S, S - 1};
    cfnet_tensor *y = tu_tensor(4, wrong, NULL);
    REJECT(cfnet_network_train_epoch(a, y, labels, 2, NULL, 0, on_progress, &rec, &mean, &acc),
           CFNET_E_SHAPE_MISMATCH);
    cfnet_tensor_free(y);
    cfnet_network *empty = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S, S, 1, &empty));
    CF_ASSERT_STATUS(cfnet_network_train_epoch(empty, x, labels, 2, NULL, 0, NULL, NULL, NULL,
                                               NULL),
                     CFNET_E_STATE);
    cfnet_network_free(empty);
#undef REJECT
    cfnet_network_free(a);
    cfnet_network_free(ref);
    cfnet_tensor_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(epoch_equals_train_steps_on_the_shuffled_batches),
        cmocka_unit_test(host_order_with_repetitions_and_a_partial_last_batch),
        cmocka_unit_test(progress_reports_step_loss_and_running_accuracy),
        cmocka_unit_test(cancel_keeps_the_steps_done_and_a_saveable_network),
        cmocka_unit_test(resume_from_a_saved_buffer_is_bit_identical),
        cmocka_unit_test(a_step_failing_mid_epoch_keeps_the_steps_before_it),
        cmocka_unit_test(misuse_is_rejected_before_anything_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
