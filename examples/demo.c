/* The main example (`make demo`): CFNet against CNet, G-CNN, G-CNN+DFT and a standard CNN on
 * synthetic biomarker images (paper section 3.2, Fig. 3), with the paper's training recipe.
 *
 *   build/default/examples/demo              quick run (about a minute on 2 cores)
 *   build/default/examples/demo --full       the paper's protocol: 50 classes, N = 50 and 100
 *                                            training images per class, 3 seeds per model,
 *                                            learning curves as CSV and SVG (hours)
 *   build/default/examples/demo --help       every option
 *
 * See docs/biomarker.md for the images and docs/results.md for the numbers. */
#include "biomarker.h"
#include "exutil.h"
#include "models.h"
#include "pnm.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BATCH = 50 }; /* training batch of every step */

typedef struct options {
    int classes, test_per_class, steps, eval_every, width, threads, seeds, full, samples;
    int n_train[2], n_sizes;
    int decay_steps;
    int models[EX_MODEL_COUNT], n_models;
    const char *out;
} options;

/* Prints the usage: on stdout and exit status 0 for --help, on stderr and 2 for a usage error. */
static void usage(int status)
{
    fprintf(status ? stderr : stdout,
            "usage: demo [--full] [--classes K] [--train N[,N2]] [--test M] [--steps S]\n"
            "            [--eval-every E] [--width W] [--seeds R] [--threads T]\n"
            "            [--models cfnet,cnet,gcnn,gcnn-dft,cnn,gcnn-p4m] [--out DIR]\n"
            "            [--samples]\n"
            "       demo --plot CSV\n"
            "  default    10 classes, N = 50 training and 100 test images per class, 300 steps,\n"
            "             width 12, 1 seed\n"
            "  --classes K  number of classes, 2 to 50\n"
            "  --test M   test images per class\n"
            "  --full     50 classes, N = 50 and 100, 200 test images per class, 3000 steps,\n"
            "             evaluation every 100 steps, 3 seeds, width 16; writes\n"
            "             DIR/biomarker-curves.csv and DIR/biomarker-curves.svg\n"
            "  --train N[,N2]  training images per class (a second N: a second run of every\n"
            "             model); classes x N must be at least one batch of 50\n"
            "  --steps S  training steps (batch 50) per model; learning rate x0.95 every\n"
            "             S/30 steps\n"
            "  --eval-every E  test accuracy every E steps, E from 1 to S (0: none, the\n"
            "             default without --full): DIR/biomarker-curves.csv and .svg\n"
            "  --width W  filters per layer of the planar networks (p4 networks: (W+1)/2,\n"
            "             gcnn-p4m: (W+2)/3)\n"
            "  --models L the models to train, in this order (default\n"
            "             cfnet,cnet,gcnn,gcnn-dft,cnn)\n"
            "  --threads T  libcfnet threads per network (default 2)\n"
            "  --samples  also write DIR/biomarker-samples.ppm (and .png) as in Fig. 3a,b\n"
            "  --seeds R  train every model R times (seeds 1..R); the table shows mean +- sample\n"
            "             standard deviation and min-max, DIR/demo-runs.csv every run\n"
            "  --out DIR  output directory (default build/results)\n"
            "  --plot CSV only redraw the SVG next to a learning-curve CSV written earlier\n");
    exit(status);
}

typedef struct result {
    int model, n_train, seed;
    int64_t params;
    double acc, secs;
    double *curve; /* test accuracy at eval points */
} result;

/* Trains one model; fills r (curve has n_eval points at steps eval_every, 2*eval_every, ...). */
static void run_one(const options *o, ex_model m, int n_train, int seed, const cfnet_tensor *xtr,
                    const int32_t *ytr, int64_t ntr, const cfnet_tensor *xte, const int32_t *yte,
                    int64_t nte, result *r)
{
    const int64_t B = BATCH, per = BM_SIZE * BM_SIZE;
    cfnet_network *net = ex_preset(m, 1, BM_SIZE, o->classes, o->width,
                                   (uint64_t)seed * 1000003u + (uint64_t)m);
    ex_set_recipe(net, 5e-3, 5e-4, o->decay_steps, 3, o->threads);
    r->model = m;
    r->n_train = n_train;
    r->seed = seed;
    r->params = cfnet_network_param_count(net);
    int n_eval = o->eval_every > 0 ? o->steps / o->eval_every : 0;
    r->curve = ex_calloc((size_t)(n_eval > 0 ? n_eval : 1), sizeof *r->curve);

    cfnet_tensor *xb = ex_tensor4(B, 1, BM_SIZE, BM_SIZE);
    int32_t yb[BATCH], pred[BATCH];
    int64_t *order = ex_malloc((size_t)ntr * sizeof *order);
    for (int64_t i = 0; i < ntr; i++) order[i] = i;
    uint64_t ss = (uint64_t)seed * 7919u + (uint64_t)m;
    int64_t pos = ntr;
    char label[64];
    snprintf(label, sizeof label, "%s N=%d s%d", ex_model_name(m), n_train, seed);
    ex_progress pr;
    ex_progress_start(&pr, stdout, label, o->steps);
    double loss_avg = 0, acc_avg = 0, eval_secs = 0;
    int have = 0;
    for (int s = 1; s <= o->steps; s++) {
        if (pos + B > ntr) {
            ex_shuffle(order, ntr, &ss);
            pos = 0;
        }
        ex_gather(cfnet_tensor_data(xtr), ytr, per, order + pos, B, cfnet_tensor_data(xb), yb);
        pos += B;
        /* Running accuracy: every 5th batch is classified before the step (un-augmented). */
        if (s % 5 == 1) {
            EX_CHECK(cfnet_network_predict(net, xb, pred, B));
            int ok = 0;
            for (int i = 0; i < B; i++) ok += pred[i] == yb[i];
            acc_avg = have ? 0.8 * acc_avg + 0.2 * ok / (double)B : ok / (double)B;
        }
        float loss;
        EX_CHECK(cfnet_network_train_step(net, xb, yb, B, &loss));
        loss_avg = have ? 0.95 * loss_avg + 0.05 * loss : loss;
        have = 1;
        ex_progress_update(&pr, s, loss_avg, acc_avg);
        if (o->eval_every > 0 && s % o->eval_every == 0) {
            double t0 = ex_now();
            float acc;
            EX_CHECK(cfnet_network_evaluate(net, xte, yte, nte, 100, NULL, &acc));
            r->curve[s / o->eval_every - 1] = acc;
            eval_secs += ex_now() - t0;
        }
    }
    r->secs = ex_progress_end(&pr) - eval_secs;
    float acc;
    EX_CHECK(cfnet_network_evaluate(net, xte, yte, nte, 100, NULL, &acc));
    r->acc = acc;
    printf("  %-10s N=%-3d seed %d: %lld parameters, test accuracy %.2f%%, train %.1f s\n",
           ex_model_name(m), n_train, seed, (long long)r->params, 100.0 * acc, r->secs);
    fflush(stdout);
    free(order);
    cfnet_tensor_free(xb);
    cfnet_network_free(net);
}

static const char *const colours[EX_MODEL_COUNT] = {"#d62728", "#9467bd", "#1f77b4", "#ff7f0e",
                                                    "#2ca02c", "#8c564b"};

/* Learning curves like the paper's Fig. 3c,d: one panel per N, per model the mean over seeds
 * (line) and the spread between the point-wise minimum and maximum (shaded). */
static void write_svg(const options *o, const result *res, int nres, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) ex_die("demo: cannot write %s", path);
    const int pw = 420, ph = 300, ml = 55, mt = 30, gap = 40;
    int W = ml + o->n_sizes * (pw + gap) + 150, H = mt + ph + 50;
    int n_eval = o->steps / o->eval_every;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" "
            "fill=\"white\"/>\n",
            W, H);
    for (int p = 0; p < o->n_sizes; p++) {
        int x0 = ml + p * (pw + gap), y0 = mt;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"14\">N = %d "
                   "training images per class</text>\n",
                x0 + pw / 2, y0 - 10, o->n_train[p]);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                   "stroke=\"black\"/>\n",
                x0, y0, pw, ph);
        for (int t = 0; t <= 10; t++) {
            double yy = y0 + ph - ph * t / 10.0;
            fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0,
                    x0 + pw, yy, yy);
            fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n", x0 - 4,
                    yy + 4, t / 10.0);
        }
        for (int t = 0; t <= 5; t++) {
            double xx = x0 + pw * t / 5.0;
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", xx,
                    y0 + ph + 16, o->steps * t / 5);
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">training step</text>\n",
                x0 + pw / 2, y0 + ph + 34);
        if (p == 0)
            fprintf(f, "<text x=\"14\" y=\"%d\" transform=\"rotate(-90 14 %d)\" "
                       "text-anchor=\"middle\">test accuracy</text>\n",
                    y0 + ph / 2, y0 + ph / 2);
        for (int mi = 0; mi < o->n_models; mi++) {
            int m = o->models[mi];
            double *lo = ex_malloc((size_t)n_eval * sizeof *lo),
                   *hi = ex_malloc((size_t)n_eval * sizeof *hi),
                   *mean = ex_calloc((size_t)n_eval, sizeof *mean);
            int cnt = 0;
            for (int e = 0; e < n_eval; e++) lo[e] = 2, hi[e] = -1;
            for (int i = 0; i < nres; i++) {
                if (res[i].model != m || res[i].n_train != o->n_train[p]) continue;
                cnt++;
                for (int e = 0; e < n_eval; e++) {
                    double v = res[i].curve[e];
                    mean[e] += v;
                    if (v < lo[e]) lo[e] = v;
                    if (v > hi[e]) hi[e] = v;
                }
            }
            if (cnt) {
                fprintf(f, "<path fill=\"%s\" fill-opacity=\"0.18\" stroke=\"none\" d=\"",
                        colours[m]);
                for (int e = 0; e < n_eval; e++)
                    fprintf(f, "%s%.1f %.1f ", e ? "L" : "M",
                            x0 + pw * (e + 1.0) * o->eval_every / o->steps, y0 + ph - ph * hi[e]);
                for (int e = n_eval - 1; e >= 0; e--)
                    fprintf(f, "L%.1f %.1f ", x0 + pw * (e + 1.0) * o->eval_every / o->steps,
                            y0 + ph - ph * lo[e]);
                fprintf(f, "Z\"/>\n<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
                           "points=\"",
                        colours[m]);
                for (int e = 0; e < n_eval; e++)
                    fprintf(f, "%.1f,%.1f ", x0 + pw * (e + 1.0) * o->eval_every / o->steps,
                            y0 + ph - ph * mean[e] / cnt);
                fprintf(f, "\"/>\n");
            }
            free(lo);
            free(hi);
            free(mean);
        }
    }
    int lx = ml + o->n_sizes * (pw + gap) - 10;
    for (int mi = 0; mi < o->n_models; mi++) {
        int m = o->models[mi], ly = mt + 20 + 22 * mi;
        fprintf(f,
                "<rect x=\"%d\" y=\"%d\" width=\"18\" height=\"4\" fill=\"%s\"/>\n<text x=\"%d\" "
                "y=\"%d\">%s</text>\n",
                lx, ly - 4, colours[m], lx + 24, ly, ex_model_name((ex_model)m));
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"10\">line: mean over seeds</text>\n", lx,
            mt + 30 + 22 * o->n_models);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"10\">shade: min-max over seeds</text>\n",
            lx, mt + 44 + 22 * o->n_models);
    fprintf(f, "</svg>\n");
    fclose(f);
}

/* --plot CSV: rebuilds the learning-curve SVG from a CSV written by --full (or --eval-every). */
static int plot_csv(const char *csv_path)
{
    FILE *f = fopen(csv_path, "r");
    if (!f) ex_die("demo: cannot read %s: %s", csv_path, strerror(errno));
    options o;
    memset(&o, 0, sizeof o);
    int cap = 64, nres = 0;
    result *res = ex_calloc((size_t)cap, sizeof *res);
    char line[512], name[64];
    int n_train, seed, step;
    double acc;
    errno = 0;
    if (!fgets(line, sizeof line, f)) {
        if (ferror(f)) ex_die("demo: cannot read %s: %s", csv_path, strerror(errno));
        ex_die("demo: %s is empty", csv_path);
    }
    /* The header names the file: demo-runs.csv (one row per run) has no curves to draw. */
    line[strcspn(line, "\r\n")] = '\0';
    if (strcmp(line, "model,n_train,seed,step,test_accuracy") != 0)
        ex_die("demo: %s is not a learning-curve CSV (its first line is not "
               "model,n_train,seed,step,test_accuracy): give the biomarker-curves.csv that "
               "--full or --eval-every wrote, not demo-runs.csv",
               csv_path);
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%63[^,],%d,%d,%d,%lf", name, &n_train, &seed, &step, &acc) != 5 || step < 1)
            ex_die("demo: %s: malformed line: %s", csv_path, line);
        int m = ex_model_parse(name);
        if (m < 0) ex_die("demo: %s: unknown model %s", csv_path, name);
        if (o.eval_every == 0 || step < o.eval_every) o.eval_every = step;
        if (step > o.steps) o.steps = step;
        int i = 0;
        while (i < nres && !(res[i].model == m && res[i].n_train == n_train && res[i].seed == seed)) i++;
        if (i == nres) {
            if (nres == cap) ex_die("demo: %s: too many runs", csv_path);
            res[nres].model = m;
            res[nres].n_train = n_train;
            res[nres].seed = seed;
            nres++;
            int known = 0;
            for (int k = 0; k < o.n_models; k++) known |= o.models[k] == m;
            if (!known) o.models[o.n_models++] = m;
            known = 0;
            for (int k = 0; k < o.n_sizes; k++) known |= o.n_train[k] == n_train;
            if (!known) {
                if (o.n_sizes == 2) ex_die("demo: %s: more than two values of N", csv_path);
                o.n_train[o.n_sizes++] = n_train;
            }
        }
        /* While reading, curve is indexed by step - 1 and secs holds the largest step. */
        int e = step;
        result *r = &res[i];
        if (r->secs < e) {
            r->curve = realloc(r->curve, (size_t)e * sizeof *r->curve);
            if (!r->curve) ex_die("demo: out of memory");
            for (int k = (int)r->secs; k < e; k++) r->curve[k] = 0;
            r->secs = e;
        }
        r->curve[e - 1] = acc;
    }
    fclose(f);
    if (nres == 0) ex_die("demo: %s has no runs (only a header)", csv_path);
    /* Re-index the curves from steps to evaluation points. */
    for (int i = 0; i < nres; i++) {
        int n_eval = o.steps / o.eval_every;
        double *c = ex_calloc((size_t)n_eval, sizeof *c);
        for (int e = 0; e < n_eval; e++) {
            int st = (e + 1) * o.eval_every;
            if (st <= (int)res[i].secs) c[e] = res[i].curve[st - 1];
        }
        free(res[i].curve);
        res[i].curve = c;
    }
    char svg[4096];
    snprintf(svg, sizeof svg, "%.*s.svg",
             (int)(strlen(csv_path) > 4 && !strcmp(csv_path + strlen(csv_path) - 4, ".csv")
                       ? strlen(csv_path) - 4
                       : strlen(csv_path)),
             csv_path);
    write_svg(&o, res, nres, svg);
    printf("wrote %s (%d runs, %d models, steps %d..%d)\n", svg, nres, o.n_models, o.eval_every,
           o.steps);
    for (int i = 0; i < nres; i++) free(res[i].curve);
    free(res);
    return 0;
}

static void write_samples(const options *o, const char *dir)
{
    int cols = o->classes < 10 ? o->classes : 10, rows = 5;
    ex_canvas c;
    ex_canvas_init(&c, rows, cols, 100, 100, 2);
    float img[BM_SIZE * BM_SIZE];
    for (int k = 0; k < cols; k++) {
        bm_class pat;
        bm_class_pattern(k, BM_PATTERN_SEED, &pat);
        for (int i = 0; i < rows; i++) {
            bm_render(&pat, k, BM_TRAIN, i, 1, img);
            ex_canvas_map(&c, i, k, img, BM_SIZE, BM_SIZE, 0, 1, 1);
        }
    }
    char ppm[4096], png[4096];
    snprintf(ppm, sizeof ppm, "%s/biomarker-samples.ppm", dir);
    snprintf(png, sizeof png, "%s/biomarker-samples.png", dir);
    if (ex_canvas_write_ppm(&c, ppm)) ex_die("demo: cannot write %s", ppm);
    printf("wrote %s%s (columns: classes 0-%d, rows: training images 0-%d)\n", ppm,
           ex_pnm_to_png("demo", ppm, png) ? "" : " and .png", cols - 1, rows - 1);
    ex_canvas_free(&c);
}

int main(int argc, char **argv)
{
    options o;
    memset(&o, 0, sizeof o);
    o.classes = 10;
    o.test_per_class = 100;
    o.steps = 300;
    o.width = 12;
    o.threads = 2;
    o.seeds = 1;
    o.n_train[0] = 50;
    o.n_sizes = 1;
    o.out = "build/results";
    const char *models = "cfnet,cnet,gcnn,gcnn-dft,cnn";
    int eval_given = 0; /* --eval-every given, not only set by --full */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--plot")) return plot_csv(argv[i + 1]);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--full")) {
            o.full = 1;
            o.classes = BM_CLASSES;
            o.test_per_class = 200;
            o.steps = 3000;
            o.eval_every = 100;
            o.width = 16;
            o.seeds = 3;
            o.n_train[0] = 50;
            o.n_train[1] = 100;
            o.n_sizes = 2;
        }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--full")) continue;
        if (!strcmp(a, "--samples")) {
            o.samples = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) usage(0);
        if (i + 1 >= argc) usage(2);
        const char *v = argv[++i];
        if (!strcmp(a, "--classes")) o.classes = ex_arg_int("demo", a, v);
        else if (!strcmp(a, "--train")) {
            /* one or two different numbers and nothing after them */
            o.n_sizes = ex_arg_int_list("demo", a, v, 1, 2, 1, 1000000,
                                        "one or two whole numbers N[,N2] from 1 to 1000000",
                                        o.n_train);
            if (o.n_sizes == 2 && o.n_train[1] == o.n_train[0])
                ex_bad_arg("demo: --train %d,%d names one size twice; give N alone, or two "
                           "different sizes", o.n_train[0], o.n_train[1]);
        }
        else if (!strcmp(a, "--test")) o.test_per_class = ex_arg_int("demo", a, v);
        else if (!strcmp(a, "--steps")) o.steps = ex_arg_int("demo", a, v);
        else if (!strcmp(a, "--eval-every")) {
            o.eval_every = ex_arg_int("demo", a, v);
            eval_given = 1;
        }
        else if (!strcmp(a, "--width")) o.width = ex_arg_int("demo", a, v);
        else if (!strcmp(a, "--seeds")) o.seeds = ex_arg_int("demo", a, v);
        else if (!strcmp(a, "--threads")) o.threads = ex_arg_int("demo", a, v);
        else if (!strcmp(a, "--models")) models = v;
        else if (!strcmp(a, "--out")) o.out = v;
        else usage(2);
    }
    /* a number out of range: said with the option and its range, not the usage alone */
    if (o.classes < 2 || o.classes > BM_CLASSES)
        ex_bad_arg("demo: --classes must be from 2 to %d, not %d", BM_CLASSES, o.classes);
    if (o.test_per_class < 1)
        ex_bad_arg("demo: --test must be at least 1, not %d", o.test_per_class);
    if (o.steps < 1) ex_bad_arg("demo: --steps must be at least 1, not %d", o.steps);
    if (o.eval_every < 0)
        ex_bad_arg("demo: --eval-every must be 0 (no learning curves) or more, not %d",
                   o.eval_every);
    if (o.width < 2) ex_bad_arg("demo: --width must be at least 2, not %d", o.width);
    if (o.seeds < 1 || o.seeds > 64)
        ex_bad_arg("demo: --seeds must be from 1 to 64, not %d", o.seeds);
    if (o.threads < 1) ex_bad_arg("demo: --threads must be at least 1, not %d", o.threads);
    for (int p = 0; p < o.n_sizes; p++)
        if ((int64_t)o.classes * o.n_train[p] < BATCH) {
            /* every step draws a batch of BATCH different training images */
            fprintf(stderr,
                    "demo: %d classes x %d training images per class = %lld, fewer than one "
                    "batch of %d; raise --classes or --train\n",
                    o.classes, o.n_train[p], (long long)o.classes * o.n_train[p], BATCH);
            exit(2);
        }
    /* the curve's points are at E, 2E, ... up to S: with E > S there would be none, and no
     * curve file, without a word */
    if (o.eval_every > o.steps)
        ex_bad_arg("demo: --eval-every %d is more than --steps %d: the run would never be "
                   "evaluated%s; give an E from 1 to %d (or 0: no learning curves)", o.eval_every,
                   o.steps, eval_given ? "" : " (--full evaluates every 100 steps)", o.steps);
    o.decay_steps = o.steps / 30 > 0 ? o.steps / 30 : 1;
    o.n_models = ex_model_list("demo", models, o.models);
    ex_blas_single_thread();
    ex_make_dirs(o.out);

    printf("libcfnet %s demo: synthetic biomarker images (paper section 3.2)%s\n",
           cfnet_version_string(), o.full ? ", full protocol" : "");
    printf("  %d classes of %dx%d images; N =", o.classes, BM_SIZE, BM_SIZE);
    for (int p = 0; p < o.n_sizes; p++) printf(" %d", o.n_train[p]);
    printf(" training and %d test images per class; %d steps of batch 50 per model;\n",
           o.test_per_class, o.steps);
    printf("  Adam, lr 5e-3 x0.95 every %d steps, weight decay 5e-4, rotation + 3 px jitter "
           "augmentation;\n  width %d (p4 networks %d), %d seed(s), %d threads%s\n",
           o.decay_steps, o.width, (o.width + 1) / 2, o.seeds, o.threads,
           o.full ? "" : "  (quick run; --full for the paper's protocol)");
    if (o.samples || o.full) write_samples(&o, o.out);

    int maxn = o.n_train[0] > o.n_train[o.n_sizes - 1] ? o.n_train[0] : o.n_train[o.n_sizes - 1];
    int64_t ntr_max = (int64_t)o.classes * maxn, nte = (int64_t)o.classes * o.test_per_class;
    float *trimg = ex_malloc((size_t)ntr_max * BM_SIZE * BM_SIZE * sizeof *trimg);
    int32_t *trlab = ex_malloc((size_t)ntr_max * sizeof *trlab), *telab;
    cfnet_tensor *xte = ex_tensor4(nte, 1, BM_SIZE, BM_SIZE);
    telab = ex_malloc((size_t)nte * sizeof *telab);
    double t0 = ex_now();
    bm_generate(o.classes, maxn, BM_TRAIN, BM_PATTERN_SEED, 1, trimg, trlab);
    bm_generate(o.classes, o.test_per_class, BM_TEST, BM_PATTERN_SEED, 1, cfnet_tensor_data(xte),
                telab);
    printf("  generated %lld training and %lld test images in %.1f s\n", (long long)ntr_max,
           (long long)nte, ex_now() - t0);

    int nres_max = o.n_models * o.n_sizes * o.seeds, nres = 0;
    result *res = ex_calloc((size_t)nres_max, sizeof *res);
    double total0 = ex_now();
    for (int p = 0; p < o.n_sizes; p++) {
        /* Images are interleaved by class, so the first classes * N are N per class. */
        int64_t ntr = (int64_t)o.classes * o.n_train[p];
        int64_t shape[4] = {ntr, 1, BM_SIZE, BM_SIZE};
        cfnet_tensor *xtr = NULL;
        EX_CHECK(cfnet_tensor_wrap(trimg, 4, shape, &xtr));
        for (int seed = 1; seed <= o.seeds; seed++)
            for (int mi = 0; mi < o.n_models; mi++)
                run_one(&o, (ex_model)o.models[mi], o.n_train[p], seed, xtr, trlab, ntr, xte,
                        telab, nte, &res[nres++]);
        cfnet_tensor_free(xtr);
    }

    printf("\nTest accuracy on %lld held-out images (%d classes, chance %.1f%%), %d steps%s:\n",
           (long long)nte, o.classes, 100.0 / o.classes, o.steps,
           o.seeds > 1 ? "; mean +- sample sd (min-max) over seeds" : "");
    printf("%-10s %5s %10s %30s %10s\n", "model", "N", "parameters", "test accuracy",
           "train time");
    for (int p = 0; p < o.n_sizes; p++)
        for (int mi = 0; mi < o.n_models; mi++) {
            double sum = 0, lo = 2, hi = -1, secs = 0, accs[64];
            int64_t params = 0;
            int cnt = 0;
            for (int i = 0; i < nres; i++) {
                if (res[i].model != o.models[mi] || res[i].n_train != o.n_train[p]) continue;
                sum += res[i].acc;
                if (cnt < 64) accs[cnt] = res[i].acc;
                secs += res[i].secs;
                params = res[i].params;
                if (res[i].acc < lo) lo = res[i].acc;
                if (res[i].acc > hi) hi = res[i].acc;
                cnt++;
            }
            char acc[64];
            double mean, sd;
            ex_mean_sd(accs, cnt < 64 ? cnt : 64, &mean, &sd);
            if (cnt > 1)
                snprintf(acc, sizeof acc, "%.2f +- %.2f%% (%.1f-%.1f)", 100 * mean, 100 * sd,
                         100 * lo, 100 * hi);
            else snprintf(acc, sizeof acc, "%.2f%%", 100 * sum / cnt);
            printf("%-10s %5d %10lld %30s %9.1fs\n", ex_model_name((ex_model)o.models[mi]),
                   o.n_train[p], (long long)params, acc, secs / cnt);
        }
    printf("total training and evaluation time %.1f s\n", ex_now() - total0);
    {
        char path[4096];
        snprintf(path, sizeof path, "%s/demo-runs.csv", o.out);
        FILE *f = fopen(path, "w");
        if (!f) ex_die("demo: cannot write %s", path);
        fprintf(f, "model,n_train,seed,parameters,test_accuracy,train_seconds\n");
        for (int i = 0; i < nres; i++)
            fprintf(f, "%s,%d,%d,%lld,%.5f,%.1f\n", ex_model_name((ex_model)res[i].model),
                    res[i].n_train, res[i].seed, (long long)res[i].params, res[i].acc,
                    res[i].secs);
        fclose(f);
        printf("wrote %s (one row per model, N and seed)\n", path);
    }

    if (o.eval_every > 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/biomarker-curves.csv", o.out);
        FILE *f = fopen(path, "w");
        if (!f) ex_die("demo: cannot write %s", path);
        fprintf(f, "model,n_train,seed,step,test_accuracy\n");
        for (int i = 0; i < nres; i++)
            for (int e = 0; e < o.steps / o.eval_every; e++)
                fprintf(f, "%s,%d,%d,%d,%.5f\n", ex_model_name((ex_model)res[i].model),
                        res[i].n_train, res[i].seed, (e + 1) * o.eval_every, res[i].curve[e]);
        fclose(f);
        printf("wrote %s\n", path);
        snprintf(path, sizeof path, "%s/biomarker-curves.svg", o.out);
        write_svg(&o, res, nres, path);
        printf("wrote %s\n", path);
    }
    for (int i = 0; i < nres; i++) free(res[i].curve);
    free(res);
    free(trimg);
    free(trlab);
    free(telab);
    cfnet_tensor_free(xte);
    return 0;
}
