/* Host programs: libcfnet inside a process that does other things — forks worker processes
 * (Python's multiprocessing, a server's pre-fork model), sets its own locale. The library must
 * keep working in a forked child, and write and read model files the same under a locale whose
 * decimal separator is a comma. (Loading and unloading the shared library with dlopen and
 * dlclose, and the header in every language standard, are tests/test_host.sh.) */
#include "testutil.h"

#include "core/pool.h"
#include "nn/network.h"

#include <locale.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

enum { S = 12, K = 3, NB = 6 };

static cfnet_network *small_net(void)
{
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S, S, 7, &net));
    CF_ASSERT_OK(cfnet_layer_conic_conv_create(4, 3, 2, CFNET_PADDING_SAME, CFNET_INTERP_NEAREST,
                                               &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_relu_create(&l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dense_create(K, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    return net;
}

/* The child's part of forked_child_uses_a_network_with_threads; returns 0 when all went well,
 * else the number of the check that failed. */
static int child_checks(cfnet_network *net, const cfnet_tensor *x, const float *parent_out)
{
    int64_t os[] = {NB, K};
    cfnet_tensor *o = NULL;
    if (cfnet_tensor_create(2, os, &o) != CFNET_OK) return 1;
    /* The pool's workers stayed in the parent: the call runs on threads of its own, with the
     * parent's bits. */
    if (cfnet_network_infer(net, x, o) != CFNET_OK) return 2;
    if (cf_parallel_last_path() == 1) return 3;
    if (memcmp(cfnet_tensor_data(o), parent_out, sizeof(float) * NB * K)) return 4;
    int32_t labels[NB] = {0, 1, 2, 0, 1, 2};
    float loss;
    if (cfnet_network_train_step(net, x, labels, NB, &loss) != CFNET_OK) return 5;
    /* A new thread count starts a pool of the child's own, which runs the calls. */
    if (cfnet_network_set_option(net, CFNET_OPTION_THREADS, 3) != CFNET_OK) return 6;
    if (cfnet_network_infer(net, x, o) != CFNET_OK) return 7;
    if (cf_parallel_last_path() != 1) return 8;
    cfnet_tensor_free(o);
    return 0;
}

static void forked_child_uses_a_network_with_threads(void **state)
{
    (void)state;
    if (UNDER_TSAN) skip(); /* ThreadSanitizer does not support threads after a fork */
    cfnet_network *net = small_net();
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, 2));
    int64_t xs[] = {NB, 1, S, S}, os[] = {NB, K};
    tu_rng r = {5};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *o = tu_tensor(2, os, NULL);
    CF_ASSERT_OK(cfnet_network_infer(net, x, o));
    assert_int_equal(cf_parallel_last_path(), 1); /* the workers are running */
    float ref[NB * K];
    memcpy(ref, cfnet_tensor_data(o), sizeof ref);

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        alarm(20); /* a child stuck waiting for the parent's workers dies instead */
        int failed = child_checks(net, x, ref);
        cfnet_network_free(net); /* must not wait for the parent's workers either */
        cfnet_tensor_free(x);
        cfnet_tensor_free(o);
        char c = (char)('0' + failed);
        if (write(fds[1], &c, 1) != 1) _exit(2);
        _exit(0);
    }
    close(fds[1]);
    char c = 'x';
    ssize_t got = read(fds[0], &c, 1);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (got != 1) fprintf(stderr, "child reported nothing (killed by a signal: %d)\n",
                          WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    assert_int_equal(got, 1);
    if (c != '0') fprintf(stderr, "child failed check %c\n", c);
    assert_int_equal(c, '0');
    /* The parent's pool is unaffected. */
    CF_ASSERT_OK(cfnet_network_infer(net, x, o));
    assert_int_equal(cf_parallel_last_path(), 1);
    assert_memory_equal(cfnet_tensor_data(o), ref, sizeof ref);
    cfnet_network_free(net);
    cfnet_tensor_free(x);
    cfnet_tensor_free(o);
}

/* A claim of the network (cf_net_guard) taken by a thread that then ends without releasing it:
 * in the parent, a call still running; in a forked child, a claim no thread will release. */
typedef struct holder {
    cfnet_network *net;
    bool write;
    cf_net_guard g;
} holder;

static void *hold_claim(void *arg)
{
    holder *h = arg;
    h->g = cf_net_guard_enter(h->net, h->write);
    return NULL;
}

static void hold_in_thread(holder *h)
{
    pthread_t t;
    if (pthread_create(&t, NULL, hold_claim, h) != 0) abort();
    pthread_join(t, NULL);
}

/* 0, or the number of the check that failed: `st` is CFNET_E_STATE with a message that names
 * the fork (fork = true) or another thread (fork = false). */
static int refused(cfnet_status st, bool fork, int check)
{
    const char *m = cfnet_last_error();
    if (st != CFNET_E_STATE) return check;
    if (fork != (strstr(m, "this process was forked while a thread of its parent") != NULL))
        return check + 1;
    if (fork == (strstr(m, "in use by another thread") != NULL)) return check + 2;
    return 0;
}

/* The child's part of forked_child_is_told_a_claim_came_through_fork. */
static int claim_child_checks(cfnet_network *wnet, cfnet_network *rnet, cfnet_network *used,
                              const cfnet_tensor *x, cfnet_tensor *o)
{
    int f;
    /* held by a writer at the fork: every call refused, worded for the fork */
    if ((f = refused(cfnet_network_infer(wnet, x, o), true, 1))) return f;
    if ((f = refused(cfnet_network_set_option(wnet, CFNET_OPTION_THREADS, 1), true, 4))) return f;
    if (!strstr(cfnet_last_error(), "every call that modifies it")) return 7;
    /* held by a reader at the fork: reads run, modifications are refused */
    if (cfnet_network_infer(rnet, x, o) != CFNET_OK) return 8;
    if ((f = refused(cfnet_network_set_option(rnet, CFNET_OPTION_THREADS, 1), true, 9))) return f;
    /* a network used in the parent, free at the fork, held by a thread of the child: the
     * thread wording, as for a network created here */
    holder h = {used, true, {0}};
    hold_in_thread(&h);
    if (!h.g.held) return 12;
    if ((f = refused(cfnet_network_infer(used, x, o), false, 13))) return f;
    cf_net_guard_leave(&h.g);
    if (cfnet_network_infer(used, x, o) != CFNET_OK) return 16;
    return 0;
}

/* docs/deploy.md: a network another thread of the parent was using at the fork stays in use in
 * the child; its calls say so in those words, not as if a thread of the child were using it. */
static void forked_child_is_told_a_claim_came_through_fork(void **state)
{
    (void)state;
    if (UNDER_TSAN) skip(); /* ThreadSanitizer does not support threads after a fork */
    cfnet_network *wnet = small_net(), *rnet = small_net(), *used = small_net();
    int64_t xs[] = {NB, 1, S, S}, os[] = {NB, K};
    tu_rng r = {9};
    cfnet_tensor *x = tu_tensor(4, xs, &r), *o = tu_tensor(2, os, NULL);
    CF_ASSERT_OK(cfnet_network_infer(used, x, o));
    holder hw = {wnet, true, {0}}, hr = {rnet, false, {0}};
    hold_in_thread(&hw);
    hold_in_thread(&hr);
    assert_true(hw.g.held && hr.g.held);
    /* in the parent, the same claims are another thread's */
    assert_int_equal(refused(cfnet_network_infer(wnet, x, o), false, 1), 0);
    assert_int_equal(refused(cfnet_network_set_option(rnet, CFNET_OPTION_THREADS, 1), false, 1), 0);

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        alarm(20);
        int failed = claim_child_checks(wnet, rnet, used, x, o);
        char c = (char)('A' + failed);
        if (write(fds[1], &c, 1) != 1) _exit(2);
        _exit(0);
    }
    close(fds[1]);
    char c = 'x';
    ssize_t got = read(fds[0], &c, 1);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(got, 1);
    if (c != 'A') fprintf(stderr, "child failed check %d\n", c - 'A');
    assert_int_equal(c, 'A');
    /* the parent's claims end as calls do */
    cf_net_guard_leave(&hw.g);
    cf_net_guard_leave(&hr.g);
    CF_ASSERT_OK(cfnet_network_infer(wnet, x, o));
    CF_ASSERT_OK(cfnet_network_set_option(rnet, CFNET_OPTION_THREADS, 1));
    cfnet_network_free(wnet);
    cfnet_network_free(rnet);
    cfnet_network_free(used);
    cfnet_tensor_free(x);
    cfnet_tensor_free(o);
}

/* forked_child_of_a_callback_is_told_of_the_fork: the progress callback forks once; the child
 * (the callback's own thread, its training call never to return there) tries to modify the
 * network and reports through the pipe. */
typedef struct fork_in_callback {
    cfnet_network *net;
    int fd;     /* the pipe's write end */
    pid_t pid;  /* the child, in the parent */
} fork_in_callback;

static int fork_from_progress(void *user, int64_t step, int64_t steps, double loss,
                              double accuracy)
{
    (void)steps, (void)loss, (void)accuracy;
    fork_in_callback *f = user;
    if (step != 1) return 0;
    fflush(NULL);
    f->pid = fork();
    if (f->pid == 0) {
        alarm(20);
        int failed = refused(cfnet_network_set_option(f->net, CFNET_OPTION_THREADS, 1), true, 1);
        if (!failed && strstr(cfnet_last_error(), "from inside a call")) failed = 4;
        char c = (char)('A' + failed);
        if (write(f->fd, &c, 1) != 1) _exit(2);
        _exit(0);
    }
    return 0;
}

/* A child forked from inside a training call's progress callback holds a copy of the network
 * the training call claimed, in the same thread: its modifying calls are refused with the
 * fork's words (load the model again), not as if the callback could return and end the call. */
static void forked_child_of_a_callback_is_told_of_the_fork(void **state)
{
    (void)state;
    if (UNDER_TSAN) skip(); /* ThreadSanitizer does not support threads after a fork */
    cfnet_network *net = small_net();
    int64_t xs[] = {NB, 1, S, S};
    tu_rng r = {11};
    cfnet_tensor *x = tu_tensor(4, xs, &r);
    int32_t labels[NB] = {0, 1, 2, 0, 1, 2};
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fork_in_callback f = {net, fds[1], -1};
    double mean, acc;
    CF_ASSERT_OK(cfnet_network_train_epoch(net, x, labels, 2, NULL, 0, fork_from_progress, &f,
                                           &mean, &acc));
    close(fds[1]);
    assert_true(f.pid > 0);
    char c = 'x';
    ssize_t got = read(fds[0], &c, 1);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(f.pid, &status, 0), f.pid);
    assert_int_equal(got, 1);
    if (c != 'A') fprintf(stderr, "child failed check %d: %s\n", c - 'A', "see fork_from_progress");
    assert_int_equal(c, 'A');
    /* in the parent the call has ended: the network is free */
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_THREADS, 1));
    cfnet_network_free(net);
    cfnet_tensor_free(x);
}

/* Sets LC_ALL to a locale whose decimal separator is a comma: an installed one, else one
 * compiled with localedef into a temporary LOCPATH. False if neither works. */
static bool comma_locale(char *dir, size_t size)
{
    static const char *const names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8"};
    dir[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (setlocale(LC_ALL, names[i])) return true;
    snprintf(dir, size, "%s/cfnet-locale.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) return dir[0] = '\0', false;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 '%s/de_DE.UTF-8' >/dev/null 2>&1", dir);
    if (system(cmd) == 0 && setenv("LOCPATH", dir, 1) == 0 && setlocale(LC_ALL, "de_DE.UTF-8"))
        return true;
    return false;
}

static void model_files_do_not_depend_on_the_locale(void **state)
{
    (void)state;
    cfnet_network *net = NULL;
    cfnet_layer *l = NULL;
    CF_ASSERT_OK(cfnet_network_create(1, S, S, 3, &net));
    CF_ASSERT_OK(cfnet_layer_conv2d_create(3, 3, 1, CFNET_PADDING_SAME, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_batch_norm_create(0.125f, 2.5e-5f, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dropout_create(0.375f, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_layer_dense_create(K, &l));
    CF_ASSERT_OK(cfnet_network_append(net, l));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LEARNING_RATE, 0.00125));
    CF_ASSERT_OK(cfnet_network_set_option(net, CFNET_OPTION_LR_DECAY_RATE, 0.5));
    CF_ASSERT_OK(cfnet_network_set_metadata(net, "normalization", "percentile 1 99.8"));
    void *model_c = NULL, *onnx_c = NULL;
    size_t model_c_n = 0, onnx_c_n = 0;
    char summary_c[2048], summary[2048];
    CF_ASSERT_OK(cfnet_network_save_buffer(net, CFNET_SAVE_OPTIMIZER, &model_c, &model_c_n));
    CF_ASSERT_OK(cfnet_network_export_onnx_buffer(net, 0, &onnx_c, &onnx_c_n));
    CF_ASSERT_OK(cfnet_network_summary(net, summary_c, sizeof summary_c, NULL));

    char dir[256];
    if (!comma_locale(dir, sizeof dir)) {
        setlocale(LC_ALL, "C");
        cfnet_free(model_c);
        cfnet_free(onnx_c);
        cfnet_network_free(net);
        TU_SKIP_MISSING("the decimal-comma locale case (no locale with a decimal comma, and "
                        "localedef could not make de_DE)", "locales");
    }
    char probe[16];
    snprintf(probe, sizeof probe, "%.1f", 1.5);
    assert_string_equal(probe, "1,5");
    /* Written under the host's locale: the same bytes. */
    void *model = NULL, *onnx = NULL;
    size_t model_n = 0, onnx_n = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(net, CFNET_SAVE_OPTIMIZER, &model, &model_n));
    assert_int_equal(model_n, model_c_n);
    assert_memory_equal(model, model_c, model_n);
    CF_ASSERT_OK(cfnet_network_export_onnx_buffer(net, 0, &onnx, &onnx_n));
    assert_int_equal(onnx_n, onnx_c_n);
    assert_memory_equal(onnx, onnx_c, onnx_n);
    CF_ASSERT_OK(cfnet_network_summary(net, summary, sizeof summary, NULL));
    assert_string_equal(summary, summary_c);
    /* Read under it: the same numbers (and the same bytes when written again). */
    cfnet_network *back = NULL;
    CF_ASSERT_OK(cfnet_network_load_buffer(model_c, model_c_n, &back));
    double v;
    CF_ASSERT_OK(cfnet_network_get_option(back, CFNET_OPTION_LEARNING_RATE, &v));
    assert_true(v == 0.00125);
    CF_ASSERT_OK(cfnet_network_get_option(back, CFNET_OPTION_LR_DECAY_RATE, &v));
    assert_true(v == 0.5);
    void *again = NULL;
    size_t again_n = 0;
    CF_ASSERT_OK(cfnet_network_save_buffer(back, CFNET_SAVE_OPTIMIZER, &again, &again_n));
    assert_int_equal(again_n, model_c_n);
    assert_memory_equal(again, model_c, again_n);
    setlocale(LC_ALL, "C");
    if (dir[0]) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
    }
    cfnet_free(model_c);
    cfnet_free(onnx_c);
    cfnet_free(model);
    cfnet_free(onnx);
    cfnet_free(again);
    cfnet_network_free(back);
    cfnet_network_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forked_child_uses_a_network_with_threads),
        cmocka_unit_test(forked_child_is_told_a_claim_came_through_fork),
        cmocka_unit_test(forked_child_of_a_callback_is_told_of_the_fork),
        cmocka_unit_test(model_files_do_not_depend_on_the_locale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
