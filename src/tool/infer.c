/* `cfnet predict`, `cfnet eval` and `cfnet info`: applying a trained model. */
#define _GNU_SOURCE
#include "tool.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Images decoded and classified at a time: at most 512, and at most 256 MiB of decoded images
 * (memory stays bounded for any number and size of inputs). */
#define CHUNK_MAX 512
#define CHUNK_BYTES ((int64_t)256 << 20)

typedef struct run_opts {
    int threads, tta, pad, skip_bad;
    long batch;
    FILE *warn_to; /* --skip-bad's warnings (load_spec.warn_to); NULL: printed */
} run_opts;

/* Classifies every sample of ds (in order) chunk by chunk; calls emit(i, probs) for each good
 * sample. Returns 0, or -1 (message printed). */
typedef int (*emit_fn)(void *user, const tool_sample *s, const float *probs, int k);

/* `cmd` names the command on the progress line that a terminal gets after every chunk (nothing
 * elsewhere, and nothing with NULL or --quiet); the line is erased at the end. */
static int run_model(cfnet_network *net, const tool_model_info *info, tool_dataset *ds,
                     const run_opts *o, emit_fn emit, void *user, int64_t *bad, const char *cmd)
{
    const int k = info->n_classes, S = info->size, C = info->channels;
    const int64_t per = (int64_t)C * S * S;
    int64_t chunk = CHUNK_BYTES / (per * (int64_t)sizeof(float));
    if (chunk > CHUNK_MAX) chunk = CHUNK_MAX;
    if (chunk < 1) chunk = 1;
    /* whole inference batches per chunk: every batch starts at a multiple of o->batch, so that
     * ranks given whole batches (cfnet predict under mpirun) compute the same numbers */
    if (chunk >= o->batch) chunk = chunk / o->batch * o->batch;
    load_spec spec = {C, S, info->pad || o->pad, info->norm, o->threads, o->skip_bad, 0, 0, NULL,
                      NULL, NULL, 0, 0, o->warn_to};
    char what[64];
    /* (named by the message of a rank of several out of memory for them) */
    static char oom_what[96];
    snprintf(oom_what, sizeof oom_what, "classifying %lld images of %d x %d x %d at a time",
             (long long)chunk, C, S, S);
    const char *oom_was = tool_oom_for(oom_what);
    float *x = xmalloc(sizeof(float) * (size_t)(chunk * per));
    float *p = xmalloc(sizeof(float) * (size_t)(chunk * k));
    int64_t *idx = xmalloc(sizeof(int64_t) * chunk);
    tool_oom_for(oom_was);
    /* under a ulimit -v or -d, OpenBLAS's buffer is taken now or the run refused, as in train:
     * a failed allocation in the first product would spin forever */
    int rc = tool_blas_room("") != 0 ? -1 : 0;
    tool_progress pr;
    progress_init(&pr, stderr);
    if (!cmd) pr.tty = 0;
    if (pr.tty) {
        /* while a chunk is decoded, the same line counts the images decoded so far (at most
         * ten redraws a second, as train's decoding line) */
        snprintf(what, sizeof what, "%s:", cmd);
        spec.progress = &pr;
        spec.progress_what = what;
        spec.progress_total = ds->n;
    }
    for (int64_t c0 = 0; c0 < ds->n && rc == 0; c0 += chunk) {
        int64_t n = ds->n - c0 < chunk ? ds->n - c0 : chunk;
        for (int64_t i = 0; i < n; i++) idx[i] = c0 + i;
        spec.progress_base = c0;
        if (dataset_load_model(ds, idx, n, &spec, net, x, bad) != 0) {
            rc = -1;
            break;
        }
        if (model_probabilities(net, x, n, C, S, k, o->tta, o->batch, p) != 0) {
            rc = -1;
            break;
        }
        for (int64_t i = 0; i < n && rc == 0; i++)
            if (!ds->s[c0 + i].bad) rc = emit(user, &ds->s[c0 + i], p + i * k, k);
        if (pr.tty)
            progress_line(&pr, 0, "%s: %lld of %lld images  %.0f s", cmd, (long long)(c0 + n),
                          (long long)ds->n, tool_now() - pr.t0);
    }
    progress_erase(&pr);
    free(x);
    free(p);
    free(idx);
    return rc;
}

static int argmax(const float *p, int k)
{
    int b = 0;
    for (int j = 1; j < k; j++)
        if (p[j] > p[b]) b = j;
    return b;
}

/* The end of a predictions row: the k class probabilities. */
static void write_probabilities(FILE *f, const float *p, int k)
{
    for (int j = 0; j < k; j++) fprintf(f, ",%.6g", (double)p[j]);
    fputc('\n', f);
}

/* ---- predict -------------------------------------------------------------------------------- */

static const char predict_help[] =
    "Usage: cfnet predict MODEL INPUTS... [-o predictions.csv] [options]\n"
    "Classifies images and writes one CSV row per image: path, predicted class, then the\n"
    "probability of every class (columns named by class, in the model's class order).\n"
    "INPUTS are image files (.tif, .tiff, .png), folders (searched recursively) or CSV\n"
    "manifests (path[,label[,split]], paths relative to the manifest). Each image gets exactly\n"
    "the crop/pad and normalisation the model was trained with (stored in MODEL).\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE    predictions CSV (default: standard output)\n"
    "  --tta                average the probabilities over the four quarter turns of each\n"
    "                       image; changes nothing for the invariant families (cfnet,\n"
    "                       gcnn-dft), useful only for cnet, gcnn and cnn models\n"
    "  --pad                zero-pad images smaller than the model's input size (else an error)\n"
    "  --skip-bad           warn about unreadable or unsuitable images and leave them out\n"
    "                       (else the first one is an error)\n"
    "  --batch N            images per forward pass (default 64)\n"
    "  --threads N          decoding and inference threads, 1..64 (default: all processors,\n"
    "                       at most 64)\n"
    "  -q, --quiet          no progress or summary line\n"
    "  -h, --help           this help\n";

typedef struct predict_ctx {
    FILE *out;
    char **classes;
    int k;
    int64_t rows;
    int header; /* written: the header goes out with the first row, so that a run failing
                 * before any row prints nothing to standard output */
    const char *name; /* the CSV, for the message of a failed write; NULL: a memory stream */
} predict_ctx;

/* fputs keeping in *err the errno of the first write that failed (-1: none set): the message
 * names the failing write's own reason, not what a later call (a free(), another write) left
 * in errno. */
static void put_text(FILE *f, const char *text, int *err)
{
    if (fputs(text, f) == EOF && !*err) *err = errno ? errno : -1;
}

/* The header once; 0, or put_text's error of its write that failed. */
static int predict_header(predict_ctx *c)
{
    int err = 0;
    if (c->header) return 0;
    put_text(c->out, "path,predicted", &err);
    for (int j = 0; j < c->k; j++) {
        char *q = csv_quote(c->classes[j]);
        put_text(c->out, ",", &err);
        put_text(c->out, q, &err);
        free(q);
    }
    put_text(c->out, "\n", &err);
    c->header = 1;
    return err;
}

static int emit_prediction(void *user, const tool_sample *s, const float *p, int k)
{
    predict_ctx *c = user;
    int err = predict_header(c);
    char *q = csv_quote(s->path), *cl = csv_quote(c->classes[argmax(p, k)]);
    char num[32];
    put_text(c->out, q, &err);
    put_text(c->out, ",", &err);
    put_text(c->out, cl, &err);
    free(q);
    free(cl);
    for (int j = 0; j < k; j++) {
        snprintf(num, sizeof num, ",%.6g", (double)p[j]);
        put_text(c->out, num, &err);
    }
    put_text(c->out, "\n", &err);
    c->rows++;
    if (!err && !ferror(c->out)) return 0;
    /* run_model's callers print nothing more: said here (a full disk, a file size limit) */
    if (c->name)
        tool_error("%s: write failed%s%s%s", c->name, err > 0 ? ": " : "",
                   err > 0 ? strerror(err) : "",
                   c->out == stdout ? "" : " (the file is unchanged)");
    else
        tool_error("rank %d of %d could not keep its rows in memory", tool_mpi_rank(),
                   tool_mpi_size());
    return -1;
}

/* An output file must not be a folder, the model or one of the inputs (an image, a manifest, a
 * file given on the command line): the command refuses before reading anything, a usage error
 * of cmd (as in train). opt: the option that names the file (predict's -o) or its folder
 * (eval's --out). Returns 0, or EXIT_USAGE with a message printed. */
static int check_output(const char *cmd, const char *opt, const char *out, const char *model,
                        const char *const *inputs, int n_inputs, const tool_dataset *ds)
{
    if (path_is_dir(out) == 1) {
        if (!strcmp(cmd, "eval")) /* a report file's name in the folder --out */
            return tool_usage_error(cmd, "%s: %s is a folder, where eval writes a file of that "
                                    "name; give %s another folder", opt, out, opt);
        return tool_usage_error(cmd, "%s: %s is a folder; give a file name", opt, out);
    }
    /* "-o: F is the model", as "-o: F is a folder" */
    if (same_file(out, model))
        return tool_usage_error(cmd, "%s: %s is the model; refusing to overwrite it (choose "
                                "another output)", opt, out);
    for (int i = 0; i < n_inputs; i++)
        if (same_file(out, inputs[i]))
            return tool_usage_error(cmd, "%s: %s is one of the inputs; refusing to overwrite it "
                                    "(choose another output)", opt, out);
    int64_t i = dataset_holds(ds, out);
    if (i < 0) return 0;
    const int other = strcmp(out, ds->s[i].path) != 0; /* the image named otherwise */
    return tool_usage_error(cmd, "%s: %s is %s%s; refusing to overwrite it (choose another "
                            "output)", opt, out, other ? "the input image " : "one of the input "
                            "images", other ? ds->s[i].path : "");
}

static int common_opt(int c, const char *cmd, run_opts *o, char **argv)
{
    switch (c) {
    case 'T': return opt_int(cmd, "--threads", optarg, 1, CFNET_MAX_THREADS, NULL, &o->threads);
    case 'B': return opt_long(cmd, "--batch", optarg, 1, 100000, NULL, &o->batch);
    case 't': o->tta = 1; return 0;
    case 'P': o->pad = 1; return 0;
    case 'S': o->skip_bad = 1; return 0;
    case 'q': tool_quiet = 1; return 0;
    default: return opt_error(cmd, c, argv);
    }
}

#define COMMON_LONGOPTS                                                                        \
    {"threads", required_argument, 0, 'T'}, {"batch", required_argument, 0, 'B'},             \
        {"tta", no_argument, 0, 't'}, {"pad", no_argument, 0, 'P'},                            \
        {"skip-bad", no_argument, 0, 'S'}, {"quiet", no_argument, 0, 'q'},                     \
        {"help", no_argument, 0, 'h'}

/* Under mpirun: this rank's share of ds, a contiguous block of whole inference batches (the
 * batches of one process, so the same numbers), in rank order (so rank 0 can put the ranks'
 * results in input order). Empty on a rank past the last batch. */
static tool_dataset rank_share(const tool_dataset *ds, long batch)
{
    const int rank = tool_mpi_rank(), size = tool_mpi_size();
    tool_dataset part = *ds;
    const int64_t units = (ds->n + batch - 1) / batch; /* whole inference batches */
    const int64_t lo = units * rank / size * batch, hi = units * (rank + 1) / size * batch;
    part.s = ds->s + (lo < ds->n ? lo : ds->n);
    part.n = (hi < ds->n ? hi : ds->n) - (lo < ds->n ? lo : ds->n);
    return part;
}

/* FNV-1a of the model's input settings, classes and every parameter and state value: the
 * same on ranks that loaded the same model file. (Ranks with another model, such as a
 * node-local copy of another run's, would mix its numbers into the report silently.) */
static int64_t model_hash(const cfnet_network *net, const tool_model_info *info)
{
    uint64_t h = (uint64_t)model_hash_values(net, 0);
#define MIX(p, len)                                                                       \
    for (size_t b_ = 0; b_ < (size_t)(len); b_++)                                          \
        h = (h ^ ((const unsigned char *)(p))[b_]) * 0x100000001b3ull;
    const int32_t v[] = {info->n_classes, info->channels, info->size, info->pad,
                         info->norm.percentile, cfnet_network_layer_count(net)};
    const double nv[] = {info->norm.low, info->norm.high, info->norm.scale};
    MIX(v, sizeof v);
    MIX(nv, sizeof nv);
    for (int i = 0; i < info->n_classes; i++) MIX(info->classes[i], strlen(info->classes[i]) + 1);
#undef MIX
    return (int64_t)h;
}

/* Under mpirun, after tool_mpi_started (collective): -1 when every rank has the settings that
 * decide its share and what is done with it (the model, the inputs, --batch, --skip-bad,
 * --tta, --pad, and `extra`: whether eval writes --out), else that setting's index, said once
 * by rank 0 and the failure marked as every rank's. Another --batch or other inputs would
 * leave images out or count them twice; another --skip-bad would leave one rank waiting in a
 * gather of warnings that the others do not make; another model, --tta or --pad would mix
 * other numbers in silently (--pad: or fail on some ranks only). --threads may differ: each
 * image's numbers do not depend on it (tests/test_mpi.sh). */
static int ranks_disagree(const cfnet_network *net, const tool_model_info *info,
                          const run_opts *o, const tool_dataset *ds, int64_t extra,
                          const char *extra_name)
{
    if (tool_mpi_size() == 1) return -1;
    const int64_t same[] = {model_hash(net, info), o->batch, ds->n,
                            tool_mpi_hash_samples(ds, NULL, ds->n, 0), o->skip_bad, o->tta,
                            o->pad, extra};
    static const char *const what[] = {"MODEL (its contents)", "--batch", "the number of inputs",
                                       "the inputs", "--skip-bad", "--tta", "--pad"};
    enum { N_WHAT = sizeof what / sizeof *what };
    const int d = tool_mpi_agree(same, extra_name ? N_WHAT + 1 : N_WHAT);
    if (d >= 0) {
        if (tool_mpi_rank() == 0)
            tool_error("the MPI ranks disagree on %s; every rank needs the same arguments%s",
                       d < N_WHAT ? what[d] : extra_name,
                       d == 0 ? " and the same model file (a copy local to each node may "
                                "differ)" : "");
        tool_mpi_fail_together();
    }
    return d;
}

static void apply_threads(cfnet_network *net, run_opts *o)
{
    if (o->threads < 1) o->threads = tool_default_threads();
    tool_blas_single_thread();
    cfnet_network_set_option(net, CFNET_OPTION_THREADS, o->threads);
}

int cmd_predict(int argc, char **argv)
{
    static const struct option longopts[] = {{"output", required_argument, 0, 'o'}, COMMON_LONGOPTS,
                                             {0, 0, 0, 0}};
    run_opts o = {0, 0, 0, 0, 64, NULL};
    const char *output = "-";
    int c;
    while ((c = opt_next(argc, argv, ":o:qh", longopts, predict_help)) >= 0) {
        if (c == 'o') {
            if (opt_path("predict", "-o", optarg, &output)) return EXIT_USAGE;
            continue;
        }
        int u = common_opt(c, "predict", &o, argv);
        if (u) return u;
    }
    if (c == OPT_HELP) return EXIT_OK;
    if (argc - optind < 1) return tool_usage_error("predict", "missing MODEL and INPUTS");
    if (model_arg("predict", "MODEL", argv[optind])) return EXIT_USAGE;
    if (argc - optind < 2) {
        /* one argument: the images without the model is the likelier slip when it is a folder,
         * an image or a text file (a manifest); only a folder or a regular file is looked into,
         * as the descriptor it is read from says (a FIFO, even one put in its place after a
         * check, is not waited on) */
        const char *what = model_not_a_model(argv[optind], CFNET_E_FORMAT);
        if (what && (!strcmp(what, "a folder") || !strcmp(what, "a TIFF image") ||
                     !strcmp(what, "a PNG image") || !strcmp(what, "a text file")))
            return tool_usage_error("predict", "missing MODEL: %s is %s, not a model file; give "
                                    "the model first: cfnet predict MODEL INPUTS...",
                                    argv[optind], what);
        return tool_usage_error("predict", "missing INPUTS");
    }
    cfnet_network *net;
    tool_model_info info;
    if (model_open(argv[optind], &net, &info) != 0) return EXIT_RUNTIME;
    apply_threads(net, &o);
    tool_dataset ds;
    int rc = EXIT_RUNTIME;
    /* no progress line beside rows going to the same terminal, nor from ranks other than 0 */
    const int rows_on_tty = !strcmp(output, "-") && isatty(STDOUT_FILENO);
    const char *progress_cmd = tool_mpi_rank() || rows_on_tty ? NULL : "predict";
    /* on a terminal, a line while the folders are searched (as eval's and train's) */
    tool_progress lp;
    progress_init(&lp, stderr);
    if (dataset_open_inputs(argv + optind + 1, argc - optind - 1, &ds, progress_cmd ? &lp : NULL,
                            progress_cmd) != 0)
        goto out_model;
    progress_erase(&lp);
    /* Under mpirun the inputs are sharded in contiguous blocks of whole inference batches (the
     * same batches as one process, so the same numbers); ranks other than 0 keep their rows in
     * memory, and rank 0 writes them after its own, so the CSV is in input order. */
    const int rank = tool_mpi_rank(), size = tool_mpi_size();
    tool_dataset part = rank_share(&ds, o.batch);
    if (rank == 0 && strcmp(output, "-")) {
        const char *const *inputs = (const char *const *)(argv + optind + 1);
        int refused = check_output("predict", "-o", output, argv[optind], inputs,
                                   argc - optind - 1, &ds);
        /* as train's outputs: a folder that does not exist or cannot be written is found from
         * the arguments, before any image is read (a usage error, like an output that is a
         * folder; a full disk: an error, status 1) */
        if (!refused) refused = check_writable("predict", "-o: ", output);
        if (refused) {
            rc = refused;
            goto out_ds;
        }
    }
    /* The CSV is written whole or not at all: a failure leaves an existing file as it was. */
    char *mem = NULL;
    size_t memlen = 0;
    tool_out res;
    memset(&res, 0, sizeof res);
    FILE *f = NULL;
    if (rank) {
        f = open_memstream(&mem, &memlen);
        if (!f) tool_error("memory stream: %s", strerror(errno));
    } else {
        const int opened = out_open(&res, output, NULL, "-o: ");
        if (opened == 0) f = res.f;
        else if (opened == 130) rc = 130; /* a signal ended the wait for a FIFO's reader */
    }
    if (!f) goto out_ds;
    /* Under mpirun: a failure on any rank so far (rank 0 alone checks and opens the CSV) stops
     * every rank here, said once; then the shards, cut from the input list and --batch, must
     * be the same everywhere, or rows would be left out or written twice. */
    int started = tool_mpi_started(), d = -1;
    if (started == 0) d = ranks_disagree(net, &info, &o, &ds, 0, NULL);
    if (started != 0 || d >= 0) {
        if (rank) fclose(f);
        else out_discard(&res);
        free(mem);
        rc = started ? started : EXIT_RUNTIME;
        goto out_ds;
    }
    predict_ctx ctx = {f, info.classes, info.n_classes, 0, rank != 0,
                       rank ? NULL : strcmp(output, "-") ? output : "standard output"};
    int64_t bad = 0;
    double t0 = tool_now();
    /* several ranks: --skip-bad's warnings are kept and said by rank 0, in input order, once
     * (not as each rank meets them, interleaved) */
    char *warned = NULL;
    size_t warned_len = 0;
    tool_held held;
    tool_hold_begin(&held, NULL);
    int r = size > 1 && !held.f ? -1 : 0;
    if (r == 0 && size > 1 && o.skip_bad) {
        o.warn_to = open_memstream(&warned, &warned_len);
        if (!o.warn_to) {
            tool_error("rank %d of %d: a memory stream for the --skip-bad warnings: %s", rank,
                       size, strerror(errno));
            r = -1;
        }
    }
    if (r == 0) {
        r = run_model(net, &info, &part, &o, emit_prediction, &ctx, &bad, progress_cmd);
        if (r != 0 && size > 1)
            tool_error("rank %d of %d could not classify its share of the inputs", rank, size);
    }
    if (o.warn_to && (ferror(o.warn_to) | fclose(o.warn_to)) != 0 && r == 0) {
        tool_error("rank %d of %d could not keep its --skip-bad warnings in memory", rank, size);
        r = -1;
    }
    o.warn_to = NULL;
    if (tool_hold_end(&held, r != 0) != 0) r = -1;
    if (r != 0) { /* a bad file: said (under mpirun by rank 0 once), every rank ends alike */
        free(warned);
        if (rank) fclose(f);
        else out_discard(&res);
        free(mem);
        goto out_ds;
    }
    if (rank == 0) (void)predict_header(&ctx); /* also when this rank had no rows (a failed
                                                  * write: out_commit says it) */
    if (size > 1) {
        /* Every rank enters the gather and the sum, failed or not (a rank that skipped a
         * collective would leave the others waiting); the sum tells every rank. */
        int failed = 0;
        if (rank && fclose(f) != 0) {
            tool_error("rank %d of %d could not keep its rows in memory", rank, size);
            failed = 1;
        }
        if (rank) f = NULL;
        if (tool_mpi_gather_text(failed ? NULL : mem, rank && !failed ? memlen : 0, f) != 0)
            failed = 1;
        free(mem);
        if (o.skip_bad && dataset_say_skipped(warned ? warned : "", warned ? warned_len : 0) != 0)
            failed = 1;
        free(warned);
        if (tool_mpi_sum(failed) != 0) { /* every rank knows: it ends them all, no abort */
            r = -1;
            tool_mpi_fail_together();
        }
        ctx.rows = tool_mpi_sum(ctx.rows);
        bad = tool_mpi_sum(bad);
        if (r == 0 && ctx.rows == 0 && bad > 0) r = -2; /* said by rank 0 below */
        if (rank) {
            dataset_free(&ds);
            model_close(net, &info);
            return r == 0 ? EXIT_OK : EXIT_RUNTIME;
        }
    }
    if (r == 0 && ctx.rows == 0 && bad > 0) r = -2;
    if (r == -2) /* every image skipped: a failure, as eval's, an existing FILE kept */
        tool_error("none of the %lld input image%s could be predicted (%s skipped: see the "
                   "warnings above)%s%s%s", (long long)bad, bad == 1 ? "" : "s",
                   bad == 1 ? "it was" : "each was", strcmp(output, "-") ? "; " : "",
                   strcmp(output, "-") ? output : "", strcmp(output, "-") ? " is left as it was" : "");
    if (r != 0) out_discard(&res);
    else if (out_commit(&res) == 0) {
        rc = EXIT_OK;
        tool_info("predicted %lld image%s in %.1f s%s%s", (long long)ctx.rows,
                  ctx.rows == 1 ? "" : "s", tool_now() - t0, strcmp(output, "-") ? " -> " : "",
                  strcmp(output, "-") ? output : "");
        if (bad) tool_warn("skipped %lld unreadable or unsuitable image%s", (long long)bad,
                           bad == 1 ? "" : "s");
    }
out_ds:
    dataset_free(&ds);
out_model:
    model_close(net, &info);
    return rc;
}

/* ---- eval ------------------------------------------------------------------------------------ */

static const char eval_help[] =
    "Usage: cfnet eval MODEL DATA [options]\n"
    "Classifies labelled images and reports accuracy, balanced accuracy (mean recall over the\n"
    "classes present), macro F1, per-class precision, recall, F1 and support, and the\n"
    "confusion matrix. DATA is a folder with one sub-folder per class or a CSV manifest\n"
    "(path,label[,split]); with a split column only the test rows are used (see --split).\n"
    "Every label must be one of the model's classes.\n"
    "\n"
    "Options:\n"
    "  --out DIR            also write DIR/metrics.json, DIR/confusion.csv,\n"
    "                       DIR/confusion.svg (heat map with class names), DIR/predictions.csv\n"
    "  --json               print the JSON summary instead of the text report\n"
    "  --split S            manifest rows to use: test (default when the manifest has a split\n"
    "                       column), val, train or all\n"
    "  --tta                average over the four quarter turns (see cfnet predict --help)\n"
    "  --pad                zero-pad images smaller than the model's input size\n"
    "  --skip-bad           warn about unreadable images and leave them out\n"
    "  --batch N            images per forward pass (default 64)\n"
    "  --threads N          decoding and inference threads, 1..64 (default: all processors,\n"
    "                       at most 64)\n"
    "  -q, --quiet          no progress messages\n"
    "  -h, --help           this help\n";

typedef struct eval_ctx {
    tool_metrics m;
    double loss;
    FILE *pred;
    FILE *terms; /* a rank other than 0 of several: each image's loss term, for rank 0 */
    char **classes;
} eval_ctx;

/* The files of eval --out: all four are written to temporary files (predictions.csv as the
 * images are classified) and replace earlier ones only once every one is written. */
static const char *const EVAL_FILES[] = {"metrics.json", "confusion.csv", "confusion.svg",
                                         "predictions.csv"};

static int emit_eval(void *user, const tool_sample *s, const float *p, int k)
{
    eval_ctx *c = user;
    int pr = argmax(p, k);
    metrics_add(&c->m, s->cls, pr);
    double q = p[s->cls], t = -log(q > 1e-12 ? q : 1e-12);
    c->loss += t;
    if (c->terms && fwrite(&t, sizeof t, 1, c->terms) != 1) return -1;
    if (c->pred) {
        char *a = csv_quote(s->path), *b = csv_quote(s->label), *d = csv_quote(c->classes[pr]);
        fprintf(c->pred, "%s,%s,%s", a, b, d);
        free(a);
        free(b);
        free(d);
        write_probabilities(c->pred, p, k);
    }
    return 0;
}

/* What eval --out made, removed if the run fails: the files that its commit created (names
 * that held nothing before it), while each is still the file it wrote (its device and inode),
 * then the folders it made. Also when the run ends on a failure it cannot return from (out of
 * memory, on this rank or another: tool_fail_cleanup, after the files' temporaries and the
 * commit's undoing, which puts back every earlier file it had replaced: see out_commit_all),
 * part-way through the commit too: an existing folder keeps the earlier report and what else it
 * held. */
typedef struct {
    const char *outdir;
    char *const *new_dir;
    char *const *paths; /* the 4 files (EVAL_FILES) */
    int created[4];     /* set just before the commit: no file at that name */
    dev_t dev[4];
    ino_t ino[4];
} eval_made;

static void remove_eval_made(void *arg)
{
    const eval_made *m = arg;
    for (int i = 0; i < 4; i++) {
        struct stat st;
        if (m->created[i] && lstat(m->paths[i], &st) == 0 && st.st_dev == m->dev[i] &&
            st.st_ino == m->ino[i])
            (void)unlink(m->paths[i]);
    }
    if (*m->new_dir) remove_new_dirs(m->outdir, *m->new_dir);
}

int cmd_eval(int argc, char **argv)
{
    static const struct option longopts[] = {{"out", required_argument, 0, 'O'},
                                             {"json", no_argument, 0, 'J'},
                                             {"split", required_argument, 0, 'X'},
                                             COMMON_LONGOPTS,
                                             {0, 0, 0, 0}};
    run_opts o = {0, 0, 0, 0, 64, NULL};
    const char *outdir = NULL, *split_name = NULL;
    int json = 0;
    int c;
    while ((c = opt_next(argc, argv, ":qh", longopts, eval_help)) >= 0) {
        if (c == 'O') {
            if (opt_path("eval", "--out", optarg, &outdir)) return EXIT_USAGE;
        } else if (c == 'J') {
            json = 1;
        } else if (c == 'X') {
            split_name = optarg;
            if (strcmp(optarg, "test") && strcmp(optarg, "val") && strcmp(optarg, "train") &&
                strcmp(optarg, "all"))
                return tool_usage_error("eval", "--split: expected test, val, train or all, got '%s'", optarg);
        } else {
            int u = common_opt(c, "eval", &o, argv);
            if (u) return u;
        }
    }
    if (c == OPT_HELP) return EXIT_OK;
    if (argc - optind != 2)
        return tool_usage_error("eval", argc - optind < 2 ? "expected MODEL and DATA" : "too many arguments");
    const char *model = argv[optind], *data = argv[optind + 1];
    if (model_arg("eval", "MODEL", model)) return EXIT_USAGE;
    /* Under mpirun every rank reads the list of images and classifies its share of them
     * (rank_share); rank 0 alone checks and writes the outputs and prints the report, from
     * the confusion matrices summed over the ranks and the other ranks' predictions.csv rows
     * and loss terms, added after its own in rank order: the report of one process. */
    const int rank = tool_mpi_rank(), size = tool_mpi_size();
    cfnet_network *net;
    tool_model_info info;
    if (model_open(model, &net, &info) != 0) return EXIT_RUNTIME;
    apply_threads(net, &o);
    int rc = EXIT_RUNTIME;
    tool_dataset ds;
    eval_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    tool_out outs[4]; /* the files of --out, in EVAL_FILES' order */
    memset(outs, 0, sizeof outs);
    char *paths[4] = {0}, *new_dir = NULL;
    eval_made made = {outdir, &new_dir, paths, {0}, {0}, {0}};
    /* the other ranks' predictions.csv rows and loss terms (their memory streams), and the
     * --skip-bad warnings of a rank of several */
    char *rows = NULL, *terms = NULL, *warned = NULL;
    size_t rows_len = 0, terms_len = 0, warned_len = 0;
    FILE *terms_f = NULL;
    if (rank == 0 && outdir && path_is_dir(outdir) == 0) {
        model_close(net, &info);
        return tool_usage_error("eval", "--out: %s is a file, not a folder (--out names the "
                                "folder of the report files)", outdir);
    }
    if (outdir && path_is_dir(data) == 1 && path_inside(outdir, data)) {
        /* a report folder in a folder of class folders is read as a class by the next run on
         * DATA (a class folder without images, an error that says to remove it) */
        model_close(net, &info);
        return tool_usage_error("eval", "--out: %s is in DATA %s, a folder of class folders, "
                                "where the next run on DATA would take a report folder for a "
                                "class; give --out a folder outside DATA", outdir, data);
    }
    if (split_name && strcmp(split_name, "all") && path_is_dir(data) == 1) {
        /* known from the arguments alone, as a usage error should be, before any image is read */
        model_close(net, &info);
        return tool_usage_error("eval", "--split %s: DATA %s is a folder of class folders, which "
                                "has no splits (--split picks rows of a .csv manifest by its "
                                "split column); give the folder to evaluate as DATA without "
                                "--split", split_name, data);
    }
    /* on a terminal, a line while the class folders are searched, as train's (rank 0's) */
    tool_progress lp;
    progress_init(&lp, stderr);
    /* (named by the start vote's message when a rank of several has no memory for it) */
    const char *oom_was = tool_oom_for("the list of images in DATA");
    const int ds_rc = dataset_open_labelled(data, &ds, rank ? NULL : &lp, "eval");
    tool_oom_for(oom_was);
    if (ds_rc != 0) goto out_model;
    progress_erase(&lp);
    if (ds.has_split) { /* keep the requested rows only */
        int want = !split_name || !strcmp(split_name, "test") ? SPLIT_TEST
                   : !strcmp(split_name, "val") ? SPLIT_VAL
                   : !strcmp(split_name, "train") ? SPLIT_TRAIN : -1;
        int64_t w = 0;
        for (int64_t i = 0; i < ds.n; i++) {
            if (want < 0 || ds.s[i].split == want) ds.s[w++] = ds.s[i];
            else {
                free(ds.s[i].path);
                free(ds.s[i].label);
                free(ds.s[i].source);
            }
        }
        ds.n = w;
        if (w == 0) {
            tool_error("%s: no rows with split '%s'", data, split_name ? split_name : "test");
            goto out_ds;
        }
    } else if (split_name && strcmp(split_name, "all")) {
        tool_error("%s: --split %s needs a manifest with a split column (path,label,split); "
                   "this one has none: without --split every row is evaluated", data, split_name);
        goto out_ds;
    }
    if (dataset_assign_classes(&ds, info.classes, info.n_classes) != 0) goto out_ds;
    metrics_init(&ctx.m, info.n_classes);
    ctx.classes = info.classes;
    if (outdir && rank == 0) {
        /* a folder made here is removed again if the run fails. A folder that cannot be made
         * (a file on the way, no permission) or written into is found here, before any image is
         * read: a usage error, as predict -o's and train's outputs (a full disk or a read-only
         * file system: an error, status 1) */
        new_dir = first_missing_dir(outdir);
        tool_on_failure(remove_eval_made, &made);
        /* ... and by a signal that ends the run before its report is committed, while empty */
        out_new_folder(outdir, new_dir);
        int refused = make_dirs(outdir, "eval", "--out: ");
        for (int i = 0; i < 4; i++) paths[i] = path_join(outdir, EVAL_FILES[i]);
        if (!refused) out_note_kept(outdir, EVAL_FILES, 4);
        for (int i = 0; i < 4 && !refused; i++)
            refused = check_output("eval", "--out", paths[i], model, &data, 1, &ds);
        for (int i = 0; i < 4 && !refused; i++)
            refused = out_open(&outs[i], paths[i], "eval", "--out: ");
        if (refused) { /* a usage error (2), or a full disk: an error (1) */
            rc = refused;
            goto out_ds;
        }
        ctx.pred = outs[3].f;
        fprintf(ctx.pred, "path,label,predicted");
        csv_write_names(ctx.pred, info.classes, info.n_classes);
        fputc('\n', ctx.pred);
    } else if (outdir) {
        ctx.pred = open_memstream(&rows, &rows_len);
        if (!ctx.pred) {
            tool_error("memory stream: %s", strerror(errno));
            goto out_ds;
        }
    }
    if (rank) {
        ctx.terms = terms_f = open_memstream(&terms, &terms_len);
        if (!terms_f) {
            tool_error("memory stream: %s", strerror(errno));
            goto out_ds;
        }
    }
    /* Under mpirun: a failure on any rank so far (rank 0 alone checks and opens --out's files)
     * stops every rank here, said once; then the ranks must agree on what decides the shares
     * and what is gathered */
    int started = tool_mpi_started();
    if (started != 0) {
        rc = started;
        goto out_ds;
    }
    if (ranks_disagree(net, &info, &o, &ds, outdir != NULL, "--out") >= 0) goto out_ds;
    tool_held held;
    tool_hold_begin(&held, NULL);
    if (size > 1 && o.skip_bad && held.f) { /* said by rank 0, once and in input order */
        o.warn_to = open_memstream(&warned, &warned_len);
        if (!o.warn_to)
            tool_error("rank %d of %d: a memory stream for the --skip-bad warnings: %s", rank,
                       size, strerror(errno));
    }
    tool_dataset part = rank_share(&ds, o.batch);
    int64_t bad = 0;
    /* (a stream not made: said above, the true cause) */
    const int unready = size > 1 && (!held.f || (o.skip_bad && !o.warn_to));
    int r = unready ? -1
            : run_model(net, &info, &part, &o, emit_eval, &ctx, &bad, rank ? NULL : "eval");
    if (r != 0 && !unready && size > 1)
        tool_error("rank %d of %d could not classify its share of the images", rank, size);
    if (o.warn_to && (ferror(o.warn_to) | fclose(o.warn_to)) != 0 && r == 0) {
        tool_error("rank %d of %d could not keep its --skip-bad warnings in memory", rank, size);
        r = -1;
    }
    o.warn_to = NULL;
    if (size > 1) {
        /* A rank that failed (a bad image) does not end the job: every rank learns of it and
         * ends with status 1, rank 0 saying the failed ranks' messages, in rank order, and
         * removing its --out files and the folder it made. Then every rank takes part in every
         * gather. */
        if (rank) {
            int kept = !ctx.pred || fclose(ctx.pred) == 0;
            kept = fclose(terms_f) == 0 && kept;
            ctx.pred = ctx.terms = terms_f = NULL;
            if (!kept && r == 0) {
                tool_error("rank %d of %d could not keep its results in memory", rank, size);
                r = -1;
            }
        }
        r = tool_hold_end(&held, r != 0) != 0 ? -1 : 0;
        if (r != 0) goto out_ds;
        int failed = 0;
        if (outdir && tool_mpi_gather_text(rows, rank ? rows_len : 0, ctx.pred) != 0) failed = 1;
        /* the loss: rank 0's own sum, then the other ranks' terms one by one in input order,
         * the additions of one process */
        FILE *all = NULL;
        char *allbuf = NULL;
        size_t all_len = 0;
        if (rank == 0 && (all = open_memstream(&allbuf, &all_len)) == NULL) {
            tool_error("memory stream: %s", strerror(errno));
            failed = 1;
        }
        if (tool_mpi_gather_text(terms, rank ? terms_len : 0, all) != 0) failed = 1;
        if (all && fclose(all) != 0) failed = 1;
        for (size_t i = 0; !failed && i + sizeof(double) <= all_len; i += sizeof(double)) {
            double t;
            memcpy(&t, allbuf + i, sizeof t);
            ctx.loss += t;
        }
        free(allbuf);
        if (o.skip_bad && dataset_say_skipped(warned ? warned : "", warned ? warned_len : 0) != 0)
            failed = 1;
        if (tool_mpi_sum_counts(ctx.m.confusion, (int64_t)info.n_classes * info.n_classes) != 0)
            failed = 1;
        bad = tool_mpi_sum(bad);
        if (tool_mpi_sum(failed) != 0) {
            /* (a gather refused as too big is said already, once) */
            if (rank == 0 && !tool_mpi_gather_refused())
                tool_error("the MPI ranks could not gather their results");
            tool_mpi_fail_together();
            goto out_ds;
        }
    } else if (r != 0) {
        goto out_ds;
    }
    metrics_finish(&ctx.m);
    if (ctx.m.total == 0) { /* the same on every rank: said once, ended together */
        if (rank == 0) tool_error("%s: no image could be evaluated", data);
        tool_mpi_fail_together();
        goto out_ds;
    }
    if (rank) {
        rc = EXIT_OK;
        goto out_ds;
    }
    ctx.m.loss = ctx.loss / (double)ctx.m.total;
    if (json) {
        if (metrics_write_json(&ctx.m, info.classes, stdout, model, data) != 0) goto out_ds;
    } else {
        fputs("model ", stdout); /* paths as typed: a control character shows as U+FFFD */
        tool_put_visible(stdout, model, strlen(model));
        fputs(", data ", stdout);
        tool_put_visible(stdout, data, strlen(data));
        putchar('\n');
        metrics_print(&ctx.m, info.classes, stdout);
    }
    if (outdir) {
        if (metrics_write_json(&ctx.m, info.classes, outs[0].f, model, data) ||
            metrics_write_confusion_csv(&ctx.m, info.classes, outs[1].f) ||
            metrics_write_confusion_svg(&ctx.m, info.classes, outs[2].f)) {
            tool_error("%s: write failed (earlier files are unchanged)", outdir);
            goto out_ds;
        }
        ctx.pred = NULL;
        /* the report on standard output before the commit: one that did not reach it (a full
         * disk, /dev/full) fails the run, which must then leave the earlier files as they were
         * (said at the exit, after the commit, it left the new report in place) */
        errno = 0;
        if (fflush(stdout) != 0 || ferror(stdout)) {
            const int err = errno;
            tool_error("standard output: write failed%s%s (the files of %s are unchanged)",
                       err ? ": " : "", err ? strerror(err) : "", outdir);
            goto out_ds;
        }
        /* which names the commit creates, and the files it renames there (their temporaries) */
        struct stat tmp[4];
        int have[4];
        for (int i = 0; i < 4; i++) {
            struct stat was;
            have[i] = outs[i].tmp && fstat(fileno(outs[i].f), &tmp[i]) == 0;
            made.created[i] = have[i] && lstat(paths[i], &was) != 0 && errno == ENOENT;
            if (made.created[i]) {
                made.dev[i] = tmp[i].st_dev;
                made.ino[i] = tmp[i].st_ino;
            }
        }
        const char *was_for = tool_oom_for("writing the files of --out");
        /* under mpirun the commit stays open until the final check-in (tool_mpi_finish): a
         * failure that another rank reports there, or a signal before it, puts the earlier
         * report back, so that a run of status 1 leaves none of its own */
        const int committed = size > 1 ? out_commit_held(outs, 4) : out_commit_all(outs, 4);
        if (committed == 0 && size > 1 && new_dir) out_held_folder(outdir, new_dir);
        tool_oom_for(was_for);
        if (committed != 0) goto out_ds;
        tool_info("wrote %s/{metrics.json,confusion.csv,confusion.svg,predictions.csv}", outdir);
    }
    if (bad) tool_warn("skipped %lld unreadable or unsuitable image%s", (long long)bad,
                           bad == 1 ? "" : "s");
    rc = EXIT_OK;
out_ds:
    tool_on_failure(NULL, NULL);
    /* (a signal from now on: the report committed, the folder stays. Under mpirun a commit
     * held until the final check-in keeps them: a signal before it puts the earlier files back,
     * and the folder goes too. The run failed: the folders stay in the signal's list until
     * remove_eval_made below has removed them, so that a signal at any point finds either the
     * list or nothing of the run's left) */
    if (rc == EXIT_OK && size == 1) out_new_folder(NULL, NULL);
    if (rank && ctx.pred) fclose(ctx.pred);
    if (terms_f) fclose(terms_f);
    if (o.warn_to) fclose(o.warn_to);
    free(rows);
    free(terms);
    free(warned);
    for (int i = 0; i < 4; i++) out_discard(&outs[i]);
    if (rc != EXIT_OK) {
        remove_eval_made(&made);
        out_new_folder(NULL, NULL);
    }
    for (int i = 0; i < 4; i++) free(paths[i]);
    free(new_dir);
    metrics_free(&ctx.m);
    dataset_free(&ds);
out_model:
    model_close(net, &info);
    return rc;
}

/* ---- info ------------------------------------------------------------------------------------ */

static const char info_help[] =
    "Usage: cfnet info MODEL\n"
    "Prints the architecture (one line per layer), parameters, input, classes, normalisation,\n"
    "training state and every metadata entry of a model file.\n"
    "  -h, --help   this help\n";

/* Whether a class name, in info's space-separated list, must be quoted to be told apart from its
 * neighbours: empty, or holding a space of any kind (ASCII, no-break U+00A0, U+1680, U+2000 to
 * U+200B, U+202F, U+205F, U+3000, U+FEFF), a double quote or a backslash. */
static int name_needs_quotes(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    if (!*p) return 1;
    for (; *p; p++) {
        if (*p == ' ' || *p == '"' || *p == '\\') return 1;
        if (p[0] == 0xC2 && p[1] == 0xA0) return 1;
        if (p[0] == 0xE1 && p[1] == 0x9A && p[2] == 0x80) return 1;
        if (p[0] == 0xE2 && p[1] == 0x80 && ((p[2] >= 0x80 && p[2] <= 0x8B) || p[2] == 0xAF))
            return 1;
        if (p[0] == 0xE2 && p[1] == 0x81 && p[2] == 0x9F) return 1;
        if (p[0] == 0xE3 && p[1] == 0x80 && p[2] == 0x80) return 1;
        if (p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) return 1;
    }
    return 0;
}

/* A class name as info lists it: as it is, or in double quotes with \" and \\ for a quote and
 * a backslash when it needs them (name_needs_quotes); control characters as U+FFFD either way. */
static void put_class_name(FILE *out, const char *name)
{
    if (!name_needs_quotes(name)) {
        tool_put_visible(out, name, strlen(name));
        return;
    }
    size_t n = strlen(name);
    char *q = xmalloc(2 * n + 3), *w = q;
    *w++ = '"';
    for (const char *p = name; *p; p++) {
        if (*p == '"' || *p == '\\') *w++ = '\\';
        *w++ = *p;
    }
    *w++ = '"';
    tool_put_visible(out, q, (size_t)(w - q));
    free(q);
}

int cmd_info(int argc, char **argv)
{
    static const struct option longopts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c = opt_next(argc, argv, ":h", longopts, info_help);
    if (c == OPT_HELP) return EXIT_OK;
    if (c != -1) return opt_error("info", c, argv);
    if (argc - optind != 1) return tool_usage_error("info", argc == optind ? "missing MODEL" : "one MODEL expected");
    const char *path = argv[optind];
    if (model_arg("info", "MODEL", path)) return EXIT_USAGE;
    cfnet_network *net;
    if (model_load(path, &net) != 0) return EXIT_RUNTIME;
    tool_model_info info;
    int have = 0;
    const char *probe = NULL;
    if (cfnet_network_get_metadata(net, "classes", &probe) == CFNET_OK && probe)
        have = model_load_info(net, path, &info) == 0;
    int64_t in[3];
    int nd;
    cfnet_network_input_shape(net, &nd, in);
    fputs("model          ", stdout); /* as typed: a control character shows as U+FFFD */
    tool_put_visible(stdout, path, strlen(path));
    const char *arch = have ? info.arch : "(not a 'cfnet train' model)";
    fputs("\narchitecture   ", stdout);
    tool_put_visible(stdout, arch, strlen(arch));
    putchar('\n');
    printf("input          %lld channel%s x %lld x %lld\n", (long long)in[0], in[0] == 1 ? "" : "s",
           (long long)in[1], (long long)in[2]);
    printf("parameters     %lld\n", (long long)cfnet_network_param_count(net));
    if (have) {
        char norm[128];
        norm_format(&info.norm, norm, sizeof norm);
        printf("normalisation  %s%s\n", norm, info.pad ? ", small images zero-padded" : "");
        printf("classes        %d:", info.n_classes);
        for (int k = 0; k < info.n_classes; k++) { /* the metadata below has them exactly */
            putchar(' ');
            put_class_name(stdout, info.classes[k]);
        }
        putchar('\n');
    }
    const char *state = NULL;
    int64_t steps = cfnet_network_step_count(net);
    cfnet_network_get_metadata(net, "train.state", &state);
    if (steps == 0 && state)
        printf("training steps 0 in this file (saved without the optimiser state, as the best "
               "model is; the run's checkpoint has it)\n");
    else
        printf("training steps %lld\n", (long long)steps);
    printf("\nlayers\n");
    size_t need = 0;
    cfnet_network_summary(net, NULL, 0, &need);
    char *buf = xmalloc(need + 1);
    if (cfnet_network_summary(net, buf, need + 1, NULL) == CFNET_OK) fputs(buf, stdout);
    free(buf);
    int nm = cfnet_network_metadata_count(net);
    printf("\nmetadata (%d entries)\n", nm);
    for (int i = 0; i < nm; i++) {
        const char *k = NULL, *v = NULL;
        if (cfnet_network_metadata_at(net, i, &k, &v) == CFNET_OK)
            printf("  %s = %s\n", k, v);
    }
    if (have) model_info_free(&info);
    cfnet_network_free(net);
    return EXIT_OK;
}
