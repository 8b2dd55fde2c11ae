/* `cfnet train DATA -o MODEL`: splits, loading, the epoch loop with progress, validation, best
 * model and checkpoint, resume, early stopping, log and learning curves. */
#define _GNU_SOURCE
#include "tool.h"
#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char train_help[] =
    "Usage: cfnet train DATA -o MODEL [options]\n"
    "Trains a classifier. DATA is a folder with one sub-folder of images per class (the folder\n"
    "names are the class names) or a CSV manifest with lines path,label[,split] (paths relative\n"
    "to the manifest; split: train, val or test). The model with the best validation balanced\n"
    "accuracy is written to MODEL (atomically, replacing it only when it improves); the state\n"
    "after the last epoch, with the optimiser, goes to the checkpoint MODEL-without-.safetensors\n"
    "+ .last.safetensors, which --resume continues from.\n"
    "\n"
    "Model:\n"
    "  -o, --output MODEL      model file to write (required)\n"
    "  --arch A                cfnet (default), cnet, gcnn, gcnn-dft, cnn or gcnn-p4m; cfnet and\n"
    "                          gcnn-dft are invariant to quarter turns of the input; gcnn-p4m\n"
    "                          is equivariant to rotations and reflections\n"
    "  --width N               filters per layer (default 0: the library's default, 16)\n"
    "  --size S                input size: centre-crop every image to SxS (default: the images'\n"
    "                          size, which must then be the same square size for all)\n"
    "  --pad                   zero-pad images smaller than S (else they are an error)\n"
    "  --percentile LOW,HIGH   per image and channel, map these intensity percentiles to 0 and\n"
    "                          1 and clip (default 1,99.8)\n"
    "  --scale X               instead: multiply raw intensities by X (e.g. 1/65535)\n"
    "Training:\n"
    "  --epochs N              total epochs (default 30; with --resume, up to this many in all)\n"
    "  --batch N               images per step (default 50)\n"
    "  --optimizer O           adam (default) or sgd (momentum 0.9)\n"
    "  --lr X                  learning rate (default 5e-3)\n"
    "  --lr-decay X            multiply the learning rate by X after every epoch (default 0.95)\n"
    "  --weight-decay X        L2 weight decay (default 5e-4)\n"
    "  --rotate R              augmentation: any (default; any angle), quarter or none\n"
    "  --jitter N              augmentation: random shifts of up to N pixels (default 0)\n"
    "  --flip                  augmentation: random horizontal flips\n"
    "  --balance               class-balanced sampling (each step draws classes uniformly)\n"
    "  --val F                 validation fraction, stratified by class (default 0.1; 0: none,\n"
    "                          MODEL is then the last epoch); a manifest's split column wins\n"
    "  --patience N            stop when validation balanced accuracy has not improved for N\n"
    "                          epochs (default 0: never)\n"
    "  --seed N                seed of the weights, split, order and augmentation (default 1)\n"
    "  --resume CHECKPOINT     continue a run from its checkpoint (same DATA; the run's stored\n"
    "                          settings are used): the result is bit-identical to an\n"
    "                          uninterrupted run with the same thread count; auto: MODEL's\n"
    "                          checkpoint if there is one, else a new run (for jobs that a\n"
    "                          cluster requeues; a finished run then exits 0)\n"
    "Data and output:\n"
    "  --threads N             decoding and training threads, 1..64 (default: all processors,\n"
    "                          at most 64)\n"
    "  --max-memory BYTES      cap on decoded images held in memory, e.g. 2G (default: a\n"
    "                          quarter of RAM, or of a lower cgroup or ulimit -v/-d limit);\n"
    "                          beyond it images are re-read from disk each epoch (0: every\n"
    "                          image, none is kept)\n"
    "  --skip-bad              warn about unreadable or unsuitable images and leave them out\n"
    "  --log FILE.csv          per-epoch train loss and accuracy, validation loss, accuracy and\n"
    "                          balanced accuracy, learning rate, seconds (- for standard\n"
    "                          output)\n"
    "  --plot FILE.svg         learning curves (also FILE.png when rsvg-convert or ImageMagick's\n"
    "                          convert is installed)\n"
    "  -q, --quiet             no progress output\n"
    "  -h, --help              this help\n";

typedef struct train_cfg {
    const char *data, *output, *resume, *log, *plot;
    int resume_auto; /* --resume auto: MODEL's checkpoint when it exists, else a new run */
    int size_exact;  /* no --size: every image was size x size (stored in the checkpoint) */
    char arch[32];
    int width, size, pad, epochs, batch, jitter, flip, balance, patience, threads, skip_bad;
    int rotate; /* CFNET_AUG_ROTATION_* */
    int sgd;    /* --optimizer sgd (else Adam) */
    double lr, lr_decay, weight_decay, val;
    long seed;
    uint64_t max_memory;
    int max_memory_given; /* --max-memory, 0 included (nothing kept: every chunk streamed) */
    tool_norm norm;
    unsigned char given[128]; /* the options on the command line, by getopt code */
} train_cfg;

/* The options whose values a resumed run takes from its checkpoint, by getopt code. */
static const struct {
    char code;
    const char *flag;
} stored_opts[] = {{'a', "--arch"},     {'w', "--width"},    {'s', "--size"},
                   {'P', "--pad"},      {'N', "--percentile"}, {'x', "--scale"},
                   {'b', "--batch"},    {'O', "--optimizer"}, {'l', "--lr"},
                   {'L', "--lr-decay"}, {'W', "--weight-decay"}, {'r', "--rotate"},
                   {'j', "--jitter"},   {'f', "--flip"},     {'B', "--balance"},
                   {'v', "--val"},      {'S', "--seed"}};

/* --resume with options the checkpoint decides: one warning naming them, so that a changed
 * setting is not believed to be in effect. */
/* With --resume auto the command line is the one of the run's first job, so only the options
 * whose values differ from the checkpoint's are named (cmd: the command line's values). */
static int same_as_stored(const train_cfg *c, const train_cfg *cmd, char code)
{
    switch (code) {
    case 'a': return !strcmp(c->arch, cmd->arch);
    case 'w': return c->width == cmd->width;
    case 's': return c->size == cmd->size;
    case 'P': return c->pad == cmd->pad;
    case 'N':
    case 'x': return c->norm.percentile == cmd->norm.percentile &&
                     (c->norm.percentile ? c->norm.low == cmd->norm.low && c->norm.high == cmd->norm.high
                                         : c->norm.scale == cmd->norm.scale);
    case 'b': return c->batch == cmd->batch;
    case 'O': return c->sgd == cmd->sgd;
    case 'l': return c->lr == cmd->lr;
    case 'L': return c->lr_decay == cmd->lr_decay;
    case 'W': return c->weight_decay == cmd->weight_decay;
    case 'r': return c->rotate == cmd->rotate;
    case 'j': return c->jitter == cmd->jitter;
    case 'f': return c->flip == cmd->flip;
    case 'B': return c->balance == cmd->balance;
    case 'v': return c->val == cmd->val;
    case 'S': return c->seed == cmd->seed;
    default: return 0;
    }
}

static void warn_ignored_on_resume(const train_cfg *c, const train_cfg *cmd)
{
    char list[256] = "";
    size_t used = 0;
    int n = 0;
    for (size_t i = 0; i < sizeof stored_opts / sizeof *stored_opts; i++) {
        if (!c->given[(unsigned char)stored_opts[i].code]) continue;
        if (c->resume_auto && same_as_stored(c, cmd, stored_opts[i].code)) continue;
        int w = snprintf(list + used, sizeof list - used, "%s%s", n ? ", " : "", stored_opts[i].flag);
        if (w > 0 && (size_t)w < sizeof list - used) used += (size_t)w;
        n++;
    }
    if (n)
        tool_warn("%s: the run's settings come from the checkpoint; %s %s ignored", c->resume,
                  list, n == 1 ? "is" : "are");
}

typedef struct epoch_rec {
    int epoch;
    double train_loss, train_acc, val_loss, val_acc, val_bacc, lr, seconds;
} epoch_rec;

/* ---- settings stored in the checkpoint ------------------------------------------------------- */

/* The settings besides arch and optimizer, by key; config_json writes and config_from_json reads
 * them with this one table. */
typedef enum cfg_type { CFG_INT, CFG_LONG, CFG_REAL, CFG_BOOL } cfg_type;
static const struct cfg_field {
    const char *key;
    cfg_type type;
    size_t offset;
} cfg_fields[] = {
    {"width", CFG_INT, offsetof(train_cfg, width)},
    {"batch", CFG_INT, offsetof(train_cfg, batch)},
    {"seed", CFG_LONG, offsetof(train_cfg, seed)},
    {"val", CFG_REAL, offsetof(train_cfg, val)},
    {"balance", CFG_BOOL, offsetof(train_cfg, balance)},
    {"lr", CFG_REAL, offsetof(train_cfg, lr)},
    {"lr_decay", CFG_REAL, offsetof(train_cfg, lr_decay)},
    {"weight_decay", CFG_REAL, offsetof(train_cfg, weight_decay)},
    {"rotate", CFG_INT, offsetof(train_cfg, rotate)},
    {"jitter", CFG_INT, offsetof(train_cfg, jitter)},
    {"flip", CFG_BOOL, offsetof(train_cfg, flip)},
};
#define N_CFG_FIELDS (sizeof cfg_fields / sizeof *cfg_fields)

static char *config_json(const train_cfg *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "arch", json_string(c->arch));
    for (size_t i = 0; i < N_CFG_FIELDS; i++) {
        const struct cfg_field *f = &cfg_fields[i];
        const char *p = (const char *)c + f->offset;
        json_t *v = f->type == CFG_INT    ? json_integer(*(const int *)p)
                    : f->type == CFG_LONG ? json_integer(*(const long *)p)
                    : f->type == CFG_REAL ? json_real(*(const double *)p)
                                          : json_boolean(*(const int *)p);
        json_object_set_new(o, f->key, v);
    }
    if (c->sgd) json_object_set_new(o, "optimizer", json_string("sgd")); /* absent: Adam */
    /* the run took the images' own size (no --size): a resumed run must find that size */
    if (c->size_exact) json_object_set_new(o, "size_from_images", json_true());
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

static int config_from_json(const char *s, train_cfg *c)
{
    json_error_t je;
    json_t *o = json_loads(s, 0, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return -1;
    }
    const char *arch = json_string_value(json_object_get(o, "arch"));
    if (arch) snprintf(c->arch, sizeof c->arch, "%s", arch);
    for (size_t i = 0; i < N_CFG_FIELDS; i++) {
        const struct cfg_field *f = &cfg_fields[i];
        json_t *v = json_object_get(o, f->key);
        char *p = (char *)c + f->offset;
        switch (f->type) {
        case CFG_INT: *(int *)p = (int)json_integer_value(v); break;
        case CFG_LONG: *(long *)p = (long)json_integer_value(v); break;
        case CFG_REAL: *(double *)p = json_number_value(v); break;
        case CFG_BOOL: *(int *)p = json_is_true(v); break;
        }
    }
    const char *opt = json_string_value(json_object_get(o, "optimizer"));
    c->sgd = opt && !strcmp(opt, "sgd");
    c->size_exact = json_is_true(json_object_get(o, "size_from_images")); /* absent: older */
    json_decref(o);
    return (arch && c->batch > 0) ? 0 : -1;
}

/* Training state: epochs done, best so far and the history (no timings: the checkpoint of a
 * resumed run must equal the uninterrupted one byte for byte). */
static char *state_json(int epoch, int best_epoch, double best, const epoch_rec *h, int nh,
                        int64_t ntr, int64_t nva)
{
    json_t *o = json_object(), *a = json_array();
    json_object_set_new(o, "epoch", json_integer(epoch));
    /* the split's sizes, so that --resume notices other DATA with the same classes */
    json_object_set_new(o, "train_images", json_integer(ntr));
    json_object_set_new(o, "val_images", json_integer(nva));
    json_object_set_new(o, "best_epoch", json_integer(best_epoch));
    json_object_set_new(o, "best_val_balanced_accuracy", json_real(best));
    for (int i = 0; i < nh; i++) {
        json_t *r = json_array();
        json_array_append_new(r, json_integer(h[i].epoch));
        json_array_append_new(r, json_real(h[i].train_loss));
        json_array_append_new(r, json_real(h[i].train_acc));
        json_array_append_new(r, json_real(h[i].val_loss));
        json_array_append_new(r, json_real(h[i].val_acc));
        json_array_append_new(r, json_real(h[i].val_bacc));
        json_array_append_new(r, json_real(h[i].lr));
        json_array_append_new(a, r);
    }
    json_object_set_new(o, "history", a);
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

static int state_from_json(const char *s, int *epoch, int *best_epoch, double *best, epoch_rec **h,
                           int *nh, int64_t *ntr, int64_t *nva)
{
    json_error_t je;
    json_t *o = json_loads(s, 0, &je);
    json_t *a = json_object_get(o, "history");
    if (!json_is_object(o) || !json_is_array(a)) {
        json_decref(o);
        return -1;
    }
    *epoch = (int)json_integer_value(json_object_get(o, "epoch"));
    json_t *t = json_object_get(o, "train_images"), *v = json_object_get(o, "val_images");
    *ntr = json_is_integer(t) ? (int64_t)json_integer_value(t) : -1; /* absent: an older file */
    *nva = json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
    *best_epoch = (int)json_integer_value(json_object_get(o, "best_epoch"));
    *best = json_number_value(json_object_get(o, "best_val_balanced_accuracy"));
    *nh = (int)json_array_size(a);
    *h = xcalloc((size_t)*nh + 1, sizeof **h);
    for (int i = 0; i < *nh; i++) {
        json_t *r = json_array_get(a, (size_t)i);
        epoch_rec *e = &(*h)[i];
        e->epoch = (int)json_integer_value(json_array_get(r, 0));
        e->train_loss = json_number_value(json_array_get(r, 1));
        e->train_acc = json_number_value(json_array_get(r, 2));
        e->val_loss = json_number_value(json_array_get(r, 3));
        e->val_acc = json_number_value(json_array_get(r, 4));
        e->val_bacc = json_number_value(json_array_get(r, 5));
        e->lr = json_number_value(json_array_get(r, 6));
    }
    json_decref(o);
    return 0;
}

/* ---- learning curves --------------------------------------------------------------------------- */

static void svg_polyline(FILE *f, const epoch_rec *h, int n, size_t off, double lo, double hi,
                         int x0, int y0, int w, int ht, int maxe, const char *color, int dashed)
{
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", color,
            dashed ? " stroke-dasharray=\"6 3\"" : "");
    for (int i = 0; i < n; i++) {
        double v = *(const double *)((const char *)&h[i] + off);
        if (isnan(v)) continue;
        double x = x0 + (double)w * (h[i].epoch - (maxe > 1 ? 1 : 0)) / (maxe > 1 ? maxe - 1 : 1);
        double y = y0 + ht - (double)ht * (v - lo) / (hi - lo);
        fprintf(f, "%.1f,%.1f ", x, y);
    }
    fprintf(f, "\"/>\n");
}

static int write_plot(const char *path, const epoch_rec *h, int n, int has_val)
{
    tool_out o;
    const int u = out_open(&o, path, NULL, "--plot: ");
    if (u != 0) return u == 130 ? 130 : -1; /* (130: a signal ended the wait for a FIFO's reader) */
    FILE *f = o.f;
    int maxe = n ? h[n - 1].epoch : 1;
    double lmax = 0;
    for (int i = 0; i < n; i++) {
        if (h[i].train_loss > lmax) lmax = h[i].train_loss;
        if (has_val && h[i].val_loss > lmax) lmax = h[i].val_loss;
    }
    if (!(lmax > 0)) lmax = 1;
    const int W = 820, H = 340, pw = 330, ph = 240, ty = 40;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" "
            "fill=\"white\"/>\n", W, H);
    for (int p = 0; p < 2; p++) {
        int x0 = 60 + p * 400;
        double hi = p == 0 ? lmax : 1.0;
        fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"14\">%s</text>\n", x0,
                p == 0 ? "loss (cross-entropy)" : "accuracy");
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                "stroke=\"#888\"/>\n", x0, ty, pw, ph);
        for (int t = 0; t <= 4; t++) {
            double v = hi * t / 4;
            int y = ty + ph - ph * t / 4;
            fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"#eee\"/>"
                    "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.*f</text>\n", x0, x0 + pw, y, y,
                    x0 - 4, y + 4, p == 0 ? 2 : 2, v);
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">epoch (1 to %d)</text>\n",
                x0 + pw / 2, ty + ph + 20, maxe);
        if (p == 0) {
            svg_polyline(f, h, n, offsetof(epoch_rec, train_loss), 0, hi, x0, ty, pw, ph, maxe, "#1f77b4", 0);
            if (has_val)
                svg_polyline(f, h, n, offsetof(epoch_rec, val_loss), 0, hi, x0, ty, pw, ph, maxe, "#d62728", 0);
        } else {
            svg_polyline(f, h, n, offsetof(epoch_rec, train_acc), 0, 1, x0, ty, pw, ph, maxe, "#1f77b4", 0);
            if (has_val) {
                svg_polyline(f, h, n, offsetof(epoch_rec, val_acc), 0, 1, x0, ty, pw, ph, maxe, "#d62728", 0);
                svg_polyline(f, h, n, offsetof(epoch_rec, val_bacc), 0, 1, x0, ty, pw, ph, maxe, "#2ca02c", 1);
            }
        }
    }
    fprintf(f, "<text x=\"60\" y=\"%d\" fill=\"#1f77b4\">training (augmented, running)</text>\n"
            "<text x=\"300\" y=\"%d\" fill=\"#d62728\">validation</text>\n"
            "<text x=\"420\" y=\"%d\" fill=\"#2ca02c\">validation balanced accuracy (dashed)</text>\n"
            "</svg>\n", H - 12, H - 12, H - 12);
    return out_commit(&o);
}

static int have_program(const char *name)
{
    const char *path = getenv("PATH");
    if (!path) return 0;
    char *p = xstrdup(path), *save = NULL;
    int found = 0;
    for (char *d = strtok_r(p, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char *f = path_join(*d ? d : ".", name);
        found = access(f, X_OK) == 0;
        free(f);
    }
    free(p);
    return found;
}

/* The PNG beside a plot: FILE.svg -> FILE.png, other names + ".png" (a heap string). */
static char *plot_png_path(const char *svg)
{
    size_t n = strlen(svg);
    return n > 4 && !strcasecmp(svg + n - 4, ".svg") ? xasprintf("%.*s.png", (int)(n - 4), svg)
                                                     : xasprintf("%s.png", svg);
}

/* FILE.svg -> FILE.png with librsvg's rsvg-convert or ImageMagick's convert, whichever is
 * present (no shell involved). The program writes to its standard output, the locked
 * temporary file of out_open beside FILE.png ("FILE.png.tmp.PID.HOST", which a later run
 * removes if this one is killed), renamed over FILE.png (the file a link names) only when the
 * program succeeds: a failed conversion leaves an earlier FILE.png as it was and no partial
 * file. */
static void plot_png(const char *svg)
{
    int rsvg = have_program("rsvg-convert");
    if (!rsvg && !have_program("convert")) return;
    char *png = plot_png_path(svg);
    struct stat st;
    int earlier = stat(png, &st) == 0;
    tool_out o;
    if (out_open(&o, png, NULL, NULL) != 0) {
        free(png);
        return;
    }
    /* the program's messages: the first line goes into the warning of a failure, which
     * otherwise could not say why (an ImageMagick without an SVG delegate, or whose security
     * policy refuses SVG, says so there) */
    int ep[2] = {-1, -1};
    if (pipe2(ep, O_CLOEXEC) != 0) ep[0] = ep[1] = -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fileno(o.f), 1);
        int errfd = ep[1] >= 0 ? ep[1] : open("/dev/null", O_WRONLY);
        if (errfd >= 0) dup2(errfd, 2);
        const char *prog = rsvg ? "rsvg-convert" : "convert";
        if (rsvg)
            execlp("rsvg-convert", "rsvg-convert", svg, (char *)NULL);
        else
            execlp("convert", "convert", svg, "png:-", (char *)NULL);
        dprintf(2, "cannot run %s: %s\n", prog, strerror(errno));
        _exit(127);
    }
    char said[1024];
    size_t nsaid = 0;
    if (ep[1] >= 0) close(ep[1]);
    if (ep[0] >= 0) {
        if (pid > 0) /* read to the end, so that the program never waits on a full pipe */
            for (;;) {
                char chunk[512];
                ssize_t r = read(ep[0], chunk, sizeof chunk);
                if (r < 0 && errno == EINTR) continue;
                if (r <= 0) break;
                for (ssize_t i = 0; i < r && nsaid < sizeof said - 1; i++) said[nsaid++] = chunk[i];
            }
        close(ep[0]);
    }
    said[nsaid] = 0;
    /* the first line, after ImageMagick 7's notice that its 'convert' is deprecated (which
     * comes first and says nothing of the failure) */
    char *line = said;
    while (strstr(line, "deprecated in IMv7") && line[strcspn(line, "\r\n")]) {
        line += strcspn(line, "\r\n");
        line += strspn(line, "\r\n");
    }
    line[strcspn(line, "\r\n")] = 0;
    /* a coloured line without its colours: an escape sequence (ESC [ parameters, then its final
     * byte) is left out whole; every other control character shows as U+FFFD in the warning
     * (tool_warn), as ESC did, leaving "[1;31m" in the text */
    char *w = line;
    for (const char *r = line; *r;) {
        if (r[0] == '\033' && r[1] == '[') {
            for (r += 2; *r && !(*r >= 0x40 && *r <= 0x7E); r++) {}
            if (*r) r++;
            continue;
        }
        *w++ = *r++;
    }
    *w = 0;
    int status = 0;
    if (pid > 0) waitpid(pid, &status, 0);
    if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        out_discard(&o);
        tool_warn("%s: could not convert the plot to PNG with %s (%s)%s%s%s", png,
                  rsvg ? "rsvg-convert" : "convert",
                  earlier ? "the earlier PNG is kept" : "no PNG written", *line ? ": " : "",
                  line, rsvg ? "" : "; rsvg-convert (Debian: librsvg2-bin) is used instead "
                                    "when it is installed");
    } else {
        (void)out_commit(&o); /* a failure is reported */
    }
    free(png);
}

/* ---- data preparation ------------------------------------------------------------------------ */

/* Classes from the training rows of a manifest with a split column; other rows' labels must be
 * among them. */
static int classes_from_train_rows(tool_dataset *ds)
{
    for (int k = 0; k < ds->n_classes; k++) free(ds->classes[k]);
    free(ds->classes);
    ds->classes = NULL;
    ds->n_classes = 0;
    char **v = xmalloc(sizeof *v * (size_t)ds->n);
    int64_t n = 0;
    for (int64_t i = 0; i < ds->n; i++)
        if (ds->s[i].split == SPLIT_TRAIN) v[n++] = ds->s[i].label;
    if (n == 0) {
        free(v);
        tool_error("%s: the manifest has a split column but no 'train' rows", ds->s[0].source);
        return -1;
    }
    for (int64_t i = 1; i < n; i++) /* insertion sort is fine: names only */
        for (int64_t j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
            char *t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    ds->classes = xmalloc(sizeof(char *) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        if (i == 0 || strcmp(v[i], v[i - 1])) ds->classes[ds->n_classes++] = xstrdup(v[i]);
    free(v);
    return 0;
}

/* ---- the progress callback ------------------------------------------------------------------- */

typedef struct prog_ctx {
    tool_progress pr;
    int epoch, epochs;
    int64_t step_offset, steps_epoch, plain_every;
    double run_t0;
    int64_t steps_done_run, steps_left_run;
    /* The epoch's loss summed over samples, step by step in the same order whether the images
     * are resident or streamed in chunks, so both give the same numbers to the last bit. */
    int64_t chunk_n, batch;
    double loss_sum;
    /* The samples of the epoch's earlier chunks (streamed) and how many of them were right: the
     * library's running accuracy covers the current chunk's call only. */
    int64_t seen_before;
    double correct_before;
} prog_ctx;

static void fmt_time(double s, char *buf, size_t n)
{
    if (s < 0 || !isfinite(s)) snprintf(buf, n, "?");
    else if (s < 100) snprintf(buf, n, "%.0fs", s);
    else if (s < 6000) snprintf(buf, n, "%.0fm%02.0fs", floor(s / 60), fmod(s, 60));
    else snprintf(buf, n, "%.0fh%02.0fm", floor(s / 3600), floor(fmod(s, 3600) / 60));
}

static int on_step(void *user, int64_t step, int64_t steps, double loss, double accuracy)
{
    prog_ctx *p = user;
    (void)steps;
    int64_t left = p->chunk_n - (step - 1) * p->batch;
    p->loss_sum += loss * (double)(left < p->batch ? left : p->batch);
    if (p->seen_before > 0 && !isnan(accuracy)) { /* the epoch's, not the chunk's */
        int64_t in_chunk = step * p->batch < p->chunk_n ? step * p->batch : p->chunk_n;
        accuracy = (p->correct_before + floor(accuracy * (double)in_chunk + 0.5)) /
                   (double)(p->seen_before + in_chunk);
    }
    int64_t s = p->step_offset + step;
    int64_t done = p->steps_done_run + s;
    double el = tool_now() - p->run_t0;
    double eta = done > 0 ? el / (double)done * (double)(p->steps_left_run - done) : -1;
    char e1[32], e2[32];
    fmt_time(el, e1, sizeof e1);
    fmt_time(eta, e2, sizeof e2);
    int force = s == p->steps_epoch || (p->plain_every > 0 && s % p->plain_every == 0);
    if (s != p->steps_epoch || p->pr.tty)
    {
        char acc[32] = "";
        if (!isnan(accuracy)) snprintf(acc, sizeof acc, "  acc %.1f %%", 100 * accuracy);
        progress_line(&p->pr, force && !p->pr.tty, "epoch %d/%d  step %lld/%lld  loss %.4f%s  "
                      "elapsed %s  ETA %s", p->epoch, p->epochs, (long long)s,
                      (long long)p->steps_epoch, loss, acc, e1, e2);
    }
    return tool_interrupted ? 1 : 0;
}

/* ---- validation ------------------------------------------------------------------------------- */

/* A step refused for non-finite numbers: the last saved state is the last good one. */
static void say_diverged(int e, int start_epoch, const char *ckpt, const char *resume)
{
    if (e > start_epoch + 1)
        tool_error("training diverged in epoch %d (try a smaller --lr); %s holds epoch %d", e,
                   ckpt, e - 1);
    else if (start_epoch > 0)
        tool_error("training diverged in epoch %d (try a smaller --lr); %s holds epoch %d", e,
                   resume, e - 1);
    else
        tool_error("training diverged in epoch %d (try a smaller --lr); this run saved nothing",
                   e);
}

static int validate(cfnet_network *net, tool_dataset *ds, const int64_t *va, int64_t nva,
                    const float *mem, int64_t chunk, float *scratch, int64_t scratch_n,
                    const load_spec *spec, int k, int64_t batch, tool_metrics *m, int64_t *bad,
                    int epoch)
{
    const int64_t per = (int64_t)spec->channels * spec->size * spec->size;
    if (chunk > nva) chunk = nva > 0 ? nva : 1;
    float *probs = malloc(sizeof(float) * (size_t)(chunk * k));
    /* streamed: the training chunk's buffer when it holds a validation chunk (it is free
     * between epochs), so that --max-memory bounds the images held, validation included */
    const int need_own = !mem && !(scratch && chunk <= scratch_n);
    float *own = need_own ? malloc(sizeof(float) * (size_t)(chunk * per)) : NULL;
    float *buf = mem ? NULL : own ? own : scratch;
    double loss = 0;
    int rc = 0;
    /* under mpirun a rank without memory for the metrics says so in the hold below */
    const int no_metrics = tool_mpi_size() > 1 ? metrics_init_try(m, k) != 0
                                               : (metrics_init(m, k), 0);
    /* distributed: each rank's messages are held while it classifies its share, then rank 0
     * says those of every rank that failed, in rank order, and all end together (a rank that
     * failed alone ended the job by MPI_Abort, its lines shuffled with the others') */
    const int nranks = tool_mpi_size(), rank = tool_mpi_rank();
    tool_held hold;
    char when[64];
    snprintf(when, sizeof when, " (validation in epoch %d)", epoch);
    if (nranks > 1) {
        tool_hold_begin(&hold, when);
        if (hold.unheld[0]) rc = -1;
    }
    /* without memory for its buffers a rank says so in the hold, and every rank ends after
     * it (xmalloc's bare "out of memory" and exit, without MPI_Finalize, before) */
    if (rc == 0 && (!probs || (need_own && !own))) {
        if (nranks > 1)
            tool_error("rank %d of %d: out of memory for validating %lld images at a time "
                       "(epoch %d)", rank, nranks, (long long)chunk, epoch);
        else
            tool_error("out of memory for validating %lld images at a time (epoch %d)",
                       (long long)chunk, epoch);
        rc = -2; /* said: no "could not classify" after it */
    }
    if (rc == 0 && no_metrics) {
        tool_error("rank %d of %d: out of memory for the validation metrics of %d classes "
                   "(epoch %d)", rank, nranks, k, epoch);
        rc = -2;
    }
    for (int64_t c0 = 0; c0 < nva && rc == 0; c0 += chunk) {
        int64_t n = nva - c0 < chunk ? nva - c0 : chunk;
        const float *x = mem ? mem + c0 * per : buf;
        if (!mem && dataset_load(ds, va + c0, n, spec, buf, bad) != 0) {
            rc = -1;
            break;
        }
        if (model_probabilities(net, x, n, spec->channels, spec->size, k, 0, batch, probs) != 0) {
            rc = -1;
            break;
        }
        for (int64_t i = 0; i < n; i++) {
            const tool_sample *s = &ds->s[va[c0 + i]];
            if (s->bad) continue;
            const float *p = probs + i * k;
            int b = 0;
            for (int j = 1; j < k; j++)
                if (p[j] > p[b]) b = j;
            metrics_add(m, s->cls, b);
            double q = p[s->cls];
            loss += -log(q > 1e-12 ? q : 1e-12);
        }
    }
    if (nranks > 1) {
        if (rc == -1 && !hold.unheld[0]) /* after the file's own message: which rank, which phase */
            tool_error("rank %d of %d: could not classify its share of the validation images in "
                       "epoch %d", rank, nranks, epoch);
        if (tool_hold_end(&hold, rc != 0) != 0) rc = -1;
    }
    if (rc == 0 && nranks > 1) {
        /* distributed: each rank classified its share; add the confusion matrices and losses */
        /* in place: no buffer that one rank could fail to allocate before the sums */
        if (tool_mpi_sum_counts(m->confusion, (int64_t)k * k) != 0 ||
            tool_mpi_sum_doubles(&loss, 1) != 0) {
            tool_error("rank %d: the sum of the validation metrics failed", tool_mpi_rank());
            rc = -1;
        }
    }
    if (!no_metrics) {
        metrics_finish(m);
        m->loss = m->total ? loss / (double)m->total : NAN;
    }
    free(probs);
    free(own);
    return rc;
}

/* ---- the command ------------------------------------------------------------------------------- */

/* Images per inference batch in validation. */
#define VAL_BATCH 64

static char *checkpoint_path(const char *model)
{
    size_t n = strlen(model);
    const char *ext = ".safetensors";
    size_t e = strlen(ext);
    if (n > e && !strcmp(model + n - e, ext))
        return xasprintf("%.*s.last.safetensors", (int)(n - e), model);
    return xasprintf("%s.last.safetensors", model);
}

/* An output of train's that must be a file (opt: the option, what: its argument's name):
 * '-' is refused as standard output, which train writes only for --log */
static int opt_file_path(const char *opt, const char *what, const char *arg, const char **dst)
{
    if (!strcmp(arg, "-"))
        return tool_usage_error("train", "%s: %s must be a file: '-' (standard output) is not "
                                "written; give the file's name (./- for a file named '-')", opt,
                                what);
    return opt_path("train", opt, arg, dst);
}

static int parse_args(int argc, char **argv, train_cfg *c)
{
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'},     {"arch", required_argument, 0, 'a'},
        {"width", required_argument, 0, 'w'},      {"size", required_argument, 0, 's'},
        {"pad", no_argument, 0, 'P'},              {"percentile", required_argument, 0, 'N'},
        {"scale", required_argument, 0, 'x'},      {"epochs", required_argument, 0, 'e'},
        {"batch", required_argument, 0, 'b'},      {"lr", required_argument, 0, 'l'},
        {"lr-decay", required_argument, 0, 'L'},   {"weight-decay", required_argument, 0, 'W'},
        {"rotate", required_argument, 0, 'r'},     {"jitter", required_argument, 0, 'j'},
        {"flip", no_argument, 0, 'f'},             {"balance", no_argument, 0, 'B'},
        {"val", required_argument, 0, 'v'},        {"patience", required_argument, 0, 'p'},
        {"seed", required_argument, 0, 'S'},       {"resume", required_argument, 0, 'R'},
        {"threads", required_argument, 0, 'T'},    {"max-memory", required_argument, 0, 'M'},
        {"skip-bad", no_argument, 0, 'K'},         {"log", required_argument, 0, 'g'},
        {"plot", required_argument, 0, 'G'},       {"quiet", no_argument, 0, 'q'},
        {"optimizer", required_argument, 0, 'O'},  {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int ch, percentile_given = 0, scale_given = 0;
    while ((ch = opt_next(argc, argv, ":o:qh", longopts, train_help)) >= 0) {
        int u = 0;
        if (ch > 0 && ch < 128) c->given[ch] = 1;
        switch (ch) {
        case 'o':
            /* the model is saved by renaming a new file over the old one (and beside it, its
             * checkpoint): "-" is not standard output here, as it is for --log */
            u = opt_file_path("-o", "MODEL", optarg, &c->output);
            break;
        case 'a': {
            cfnet_family fam;
            if (cfnet_family_parse(optarg, &fam) != CFNET_OK)
                return tool_usage_error("train", "--arch: expected cfnet, cnet, gcnn, gcnn-dft, cnn or gcnn-p4m, got '%s'", optarg);
            snprintf(c->arch, sizeof c->arch, "%s", cfnet_family_name(fam));
            break;
        }
        case 'w': u = opt_int("train", "--width", optarg, 0, 1024, NULL, &c->width); break;
        case 's': u = opt_int("train", "--size", optarg, 16, 512, NULL, &c->size); break;
        case 'P': c->pad = 1; break;
        case 'N': {
            char *comma = strchr(optarg, ',');
            double lo, hi;
            if (!comma) return tool_usage_error("train", "--percentile: expected LOW,HIGH (e.g. 1,99.8), got '%s'", optarg);
            *comma = 0;
            int bad = parse_double(optarg, 0, 100, &lo) || parse_double(comma + 1, 0, 100, &hi) || lo >= hi;
            *comma = ',';
            if (bad) return tool_usage_error("train", "--percentile: expected 0 <= LOW < HIGH <= 100, got '%s'", optarg);
            c->norm.percentile = 1;
            c->norm.low = lo;
            c->norm.high = hi;
            percentile_given = 1;
            break;
        }
        case 'x':
            u = opt_double("train", "--scale", optarg, TOOL_SCALE_MIN, TOOL_SCALE_MAX, "a positive number", &c->norm.scale);
            if (u == 0) c->norm.percentile = 0;
            scale_given = 1;
            break;
        case 'e': u = opt_int("train", "--epochs", optarg, 1, 1000000, NULL, &c->epochs); break;
        case 'b': u = opt_int("train", "--batch", optarg, 1, 100000, NULL, &c->batch); break;
        case 'l': u = opt_double("train", "--lr", optarg, 1e-12, 10, "a number in (0, 10]", &c->lr); break;
        case 'L': u = opt_double("train", "--lr-decay", optarg, 1e-6, 1, "a number in (0, 1]", &c->lr_decay); break;
        case 'W': u = opt_double("train", "--weight-decay", optarg, 0, 1, "0..1", &c->weight_decay); break;
        case 'r':
            if (!strcmp(optarg, "any")) c->rotate = CFNET_AUG_ROTATION_ANY;
            else if (!strcmp(optarg, "quarter")) c->rotate = CFNET_AUG_ROTATION_QUARTER;
            else if (!strcmp(optarg, "none")) c->rotate = CFNET_AUG_ROTATION_NONE;
            else return tool_usage_error("train", "--rotate: expected any, quarter or none, got '%s'", optarg);
            break;
        case 'j': u = opt_int("train", "--jitter", optarg, 0, 64, NULL, &c->jitter); break;
        case 'f': c->flip = 1; break;
        case 'B': c->balance = 1; break;
        case 'O':
            if (!strcmp(optarg, "adam") || !strcmp(optarg, "sgd")) c->sgd = optarg[0] == 's';
            else return tool_usage_error("train", "--optimizer: expected adam or sgd, got '%s'", optarg);
            break;
        case 'v': u = opt_double("train", "--val", optarg, 0, 0.9, "a fraction in [0, 0.9]", &c->val); break;
        case 'p': u = opt_int("train", "--patience", optarg, 0, 1000000, "0 or more", &c->patience); break;
        case 'S': u = opt_long("train", "--seed", optarg, 0, 0x7fffffffL, "a non-negative integer", &c->seed); break;
        case 'R':
            c->resume_auto = !strcmp(optarg, "auto"); /* a file named auto: --resume ./auto */
            c->resume = NULL;
            if (!c->resume_auto) u = opt_path("train", "--resume", optarg, &c->resume);
            if (!u && c->resume) u = model_arg("train", "--resume: the checkpoint", c->resume);
            break;
        case 'T': u = opt_int("train", "--threads", optarg, 1, CFNET_MAX_THREADS, NULL, &c->threads); break;
        case 'M':
            if (parse_bytes(optarg, &c->max_memory)) return tool_usage_error("train", "--max-memory: expected bytes with an optional K, M, G or T suffix, got '%s'", optarg);
            c->max_memory_given = 1;
            break;
        case 'K': c->skip_bad = 1; break;
        case 'g': u = opt_path("train", "--log", optarg, &c->log); break;
        case 'G':
            /* redrawn after every epoch and converted to FILE.png beside it: a file */
            u = opt_file_path("--plot", "FILE.svg", optarg, &c->plot);
            break;
        case 'q': tool_quiet = 1; break;
        default: return opt_error("train", ch, argv);
        }
        if (u) return u;
    }
    if (ch == OPT_HELP) return -1;
    if (percentile_given && scale_given)
        return tool_usage_error("train", "--percentile and --scale are two normalisations; give one");
    if (argc - optind != 1)
        return tool_usage_error("train", argc == optind ? "missing DATA" : "one DATA expected");
    if (!c->output) return tool_usage_error("train", "missing -o MODEL");
    c->data = argv[optind];
    return 0;
}

/* The files a run writes (the model, its checkpoint, --log, --plot and the plot's PNG) must
 * differ from each other and from its inputs (DATA, its images, the checkpoint resumed from,
 * which only the new checkpoint may replace), and their folders must be writable: checked
 * before any image is read. 0, or the exit status after saying why: its refusals are usage
 * errors ("cfnet train: ..." and the pointer to --help), as the other argument errors are; a
 * folder that cannot be written for the machine's sake (a full disk, a read-only file system)
 * is an error, status 1 (check_writable). */
static int check_outputs(const train_cfg *c, const char *ckpt, const tool_dataset *ds)
{
    char *png = c->plot ? plot_png_path(c->plot) : NULL;
    /* (--log -: standard output, no file) */
    const char *log = c->log && strcmp(c->log, "-") ? c->log : NULL;
    const char *path[5] = {c->output, ckpt, log, c->plot, png};
    static const char *const what[5] = {"-o MODEL", "the checkpoint", "--log", "--plot",
                                        "the plot's PNG"};
    int rc = 0;
    for (int i = 0; i < 5 && rc == 0; i++) {
        if (!path[i]) continue;
        for (int j = 0; j < i && rc == 0; j++)
            if (path[j] && same_file(path[i], path[j]))
                rc = tool_usage_error("train", "%s (%s) and %s (%s) name the same file; give them "
                                      "different names", what[j], path[j], what[i], path[i]);
        if (rc) break;
        struct stat st;
        if (path_is_dir(path[i]) == 1) {
            rc = tool_usage_error("train", "%s (%s) is a folder; give a file name", what[i],
                                  path[i]);
        } else if ((i < 2 || i == 4) && stat(path[i], &st) == 0 && !S_ISREG(st.st_mode)) {
            /* the model, the checkpoint and the plot's PNG are saved by renaming a new file
             * over the old one, which would put a file in place of a device or pipe (/dev/null,
             * as root; through a link, the device it names) */
            rc = tool_usage_error("train", "%s (%s) is not a regular file (a device or a pipe); "
                                  "it is saved by writing a new file in its place: give a file "
                                  "name", what[i], path[i]);
        } else if (same_file(path[i], c->data)) {
            rc = tool_usage_error("train", "%s (%s) is DATA; refusing to overwrite it", what[i],
                                  path[i]);
        } else if (i != 1 && c->resume && same_file(path[i], c->resume)) {
            rc = tool_usage_error("train", "%s (%s) is the checkpoint given to --resume; "
                                  "refusing to overwrite it", what[i], path[i]);
        } else {
            int64_t k = dataset_holds(ds, path[i]);
            if (k >= 0)
                rc = tool_usage_error("train", "%s (%s) is the training image %s; refusing to "
                                      "overwrite it", what[i], path[i], ds->s[k].path);
        }
    }
    /* the plot's PNG in a folder of class folders: an image of that class (or, in DATA itself,
     * an image outside any class, an error) for the next run on DATA */
    if (rc == 0 && png && path_is_dir(c->data) == 1 && path_inside(png, c->data))
        rc = tool_usage_error("train", "--plot: the plot's PNG %s is in DATA %s, a folder of "
                              "class folders, where the next run on DATA would take it for an "
                              "image; give --plot a file outside DATA", png, c->data);
    /* the outputs written by this command itself: a folder that does not exist or cannot be
     * written fails now, not after the images are read or the first epoch is trained */
    for (int i = 0; i < 4 && rc == 0; i++) {
        if (!path[i]) continue;
        char *label = xasprintf("%s: ", what[i]); /* "--log: ": named as the refusals above */
        rc = check_writable("train", label, path[i]);
        free(label);
    }
    free(png);
    return rc;
}

/* --log is held with an advisory lock (flock) from the start of a run to its end, so that a
 * second `cfnet train` given the same log while this one runs stops before it reads an image,
 * rather than interleave its lines with this run's (or truncate them). Runs one after the other
 * go on as before: a new run starts the log afresh at its first saved epoch, --resume appends.
 * Only a regular file (or a new one) is locked: a device or a pipe (/dev/null, a FIFO) is
 * opened at the first epoch, as it is. The file is opened without truncating it, so an earlier
 * log stays as it was until the first epoch is saved. *fd: the open file or -1; *created: the
 * file the run made (a heap string, NULL if it existed), removed again if the run ends before
 * writing to it: the file itself, so a link to a file not there yet (a dangling link) is left
 * as it was, as a missing log is. 0, or -1 with a message printed. */
static int lock_log(const char *path, int append, int *fd, char **created)
{
    struct stat st;
    int exists = stat(path, &st) == 0;
    if (exists && !S_ISREG(st.st_mode)) return 0;
    *fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : 0), 0666);
    if (*fd < 0) {
        tool_error("%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (!exists) *created = realpath(path, NULL);
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0) return 0;
    if (errno != EWOULDBLOCK) return 0; /* a file system without locks: written unlocked */
    close(*fd);
    *fd = -1;
    tool_error("%s: another 'cfnet train' is writing this log; give each run its own --log (or "
               "wait for the other run to end)", path);
    return -1;
}

/* The log that lock_log made, while it is still empty (the run ended before its first epoch
 * was logged): removed, the file itself (not one put at its name since). At the end of a run
 * that failed, and by tool_fail_cleanup when it cannot return (out of memory, on this rank or
 * another: rank 0's log is then not left behind). */
typedef struct {
    const int *fd;
    char *const *created;
} new_log;

static void remove_new_log(void *arg)
{
    const new_log *l = arg;
    struct stat lst, made;
    if (*l->fd >= 0 && *l->created && fstat(*l->fd, &lst) == 0 && lst.st_size == 0 &&
        stat(*l->created, &made) == 0 && made.st_dev == lst.st_dev && made.st_ino == lst.st_ino)
        unlink(*l->created);
}

/* --skip-bad: reads every training and validation image once before the split and marks the
 * unreadable or unsuitable ones bad, so that the split (and the check that every class has
 * training images) counts only images that will be used. The geometry is the one training
 * takes (the first readable image's channels, --size or its size); when the first image does
 * not give one (not square, out of range), nothing is marked here and training reports it.
 * On several MPI ranks (after tool_mpi_ready: every rank is here) rank 0 reads the first images
 * for the geometry, each rank checks a contiguous block of the others, and the verdicts are
 * summed, so every rank leaves out the same images as one process would; rank 0 names them, in
 * input order. 0; -1 with a message printed (no readable image at all: by rank 0, on every
 * rank alike); or the status of a rank that failed before (tool_mpi_ready, said). */
static int screen_bad(tool_dataset *ds, const train_cfg *c, int channels, tool_progress *pr)
{
    const int nranks = tool_mpi_size(), rank = tool_mpi_rank();
    /* the lists, made before the vote: a rank without memory for them fails its set-up there
     * (tool_mpi_report_oom, at the start vote; in the collectives that follow it would end
     * every rank too, at the check-in of the next one) */
    const char *was = tool_oom_for("the --skip-bad check's lists of images");
    int64_t *idx = xmalloc(sizeof(int64_t) * (size_t)(ds->n ? ds->n : 1)), n = 0;
    double *bad = nranks > 1 ? xcalloc((size_t)(ds->n ? ds->n : 1), sizeof(double)) : NULL;
    tool_oom_for(was);
    if (nranks > 1) {
        int v = tool_mpi_ready();
        if (v) {
            free(idx);
            free(bad);
            return v;
        }
    }
    for (int64_t i = 0; i < ds->n; i++)
        if (ds->s[i].split != SPLIT_TEST) idx[n++] = i;
    int ch = 0, h = 0, w = 0;
    int64_t first = 0;
    int rc = 0;
    if (nranks > 1) {
        /* rank 0 reads up to the first readable image (naming those it leaves out) and tells
         * the others: its position (n: none), channels and size */
        double g[4] = {0, 0, 0, 0};
        if (rank == 0) {
            rc = dataset_probe(ds, idx, n, 1, &ch, &h, &w, &first);
            int64_t pos = 0;
            while (rc == 0 && pos < n && idx[pos] != first) pos++;
            g[0] = rc == 0 ? (double)pos : (double)n;
            g[1] = ch;
            g[2] = h;
            g[3] = w;
        }
        if (tool_mpi_sum_doubles(g, 4) != 0) g[0] = (double)n;
        const int64_t pos = (int64_t)g[0];
        for (int64_t i = 0; i < pos && i < n; i++) ds->s[idx[i]].bad = 1;
        rc = pos < n ? 0 : -1;
        if (rc == 0) {
            first = idx[pos];
            ch = (int)g[1];
            h = (int)g[2];
            w = (int)g[3];
        }
    } else {
        rc = dataset_probe(ds, idx, n, 1, &ch, &h, &w, &first);
    }
    int size = c->size ? c->size : h;
    if (rc == 0 && (c->size || (h == w && h >= 16 && h <= 512))) {
        load_spec spec = {channels ? channels : ch, size, c->pad, c->norm, c->threads, 1, !c->size,
                          !channels, ds->s[first].path, pr, "train: checking", 0, 0, NULL};
        enum { BLOCK = 64 };
        const size_t bufsz = sizeof(float) * (size_t)BLOCK * (size_t)spec.channels * (size_t)size *
                             (size_t)size;
        /* under mpirun a rank without memory for it says so and fails, still taking part in
         * the sums below (the others wait in them): every rank ends at the start vote */
        float *buf = nranks > 1 ? malloc(bufsz) : xmalloc(bufsz);
        if (!buf) {
            tool_error("rank %d of %d: out of memory for the --skip-bad check of %d images of "
                       "%d x %d x %d at a time", rank, nranks, (int)BLOCK, spec.channels, size,
                       size);
            rc = -1;
        }
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++) /* those the probe found bad are out already */
            if (!ds->s[idx[i]].bad) idx[m++] = idx[i];
        /* this rank's block (all of them on one process); the warnings kept for rank 0 */
        const int64_t lo = m * rank / nranks, hi = m * (rank + 1) / nranks;
        char *warned = NULL;
        size_t warned_len = 0;
        if (nranks > 1) spec.warn_to = open_memstream(&warned, &warned_len);
        spec.progress_total = hi - lo;
        pr->t0 = tool_now(); /* the line's seconds count this pass */
        for (int64_t b = lo; b < hi && rc == 0; b += BLOCK) {
            spec.progress_base = b - lo;
            rc = dataset_load(ds, idx + b, hi - b < BLOCK ? hi - b : BLOCK, &spec, buf, NULL);
        }
        free(buf);
        if (nranks > 1) {
            /* with skip_bad, dataset_load does not fail: every rank gets here */
            if (spec.warn_to && (ferror(spec.warn_to) | fclose(spec.warn_to)) != 0) {
                /* warnings lost: said, and the run fails (not a status 0 without them) */
                tool_error("rank %d of %d: its --skip-bad warnings could not be kept in memory",
                           rank, nranks);
                rc = -1;
            }
            for (int64_t i = lo; i < hi; i++) bad[i] = ds->s[idx[i]].bad;
            if (tool_mpi_sum_doubles(bad, m) != 0) {
                tool_error("rank %d of %d: the sum of the images found bad failed", rank, nranks);
                rc = -1;
            }
            for (int64_t i = 0; i < m; i++) ds->s[idx[i]].bad = bad[i] > 0;
            if (dataset_say_skipped(warned ? warned : "", warned ? warned_len : 0) != 0) rc = -1;
            free(warned);
        }
    }
    free(bad);
    free(idx);
    return rc;
}

/* The file this run last saved at a path (the model, the checkpoint): another program that
 * replaces it meanwhile, such as a second `cfnet train` writing the same model, is found before
 * the next save, and the run stops rather than leave a model of one run beside the checkpoint
 * of another. */
static int still_ours(const tool_saved *f, const char *path, const char *model)
{
    if (tool_saved_unchanged(f, path)) return 1;
    tool_error("%s was replaced by another program during training (another 'cfnet train -o "
               "%s' at the same time?); stopping so that the model and its checkpoint stay "
               "from one run", path, model);
    return 0;
}

/* The model and the checkpoint are saved with cfnet_network_save: a temporary file beside the
 * target, "<name>.tmp.<pid>.<host>", locked until it is synced and renamed over the target
 * (which keeps its permissions; a link at the target is replaced); the --plot SVG and its PNG
 * likewise by out_open. A run killed while it saves (kill -9, a cluster's time limit or
 * preemption) leaves that file, which says which process on which host wrote it, so that the
 * next run can remove it: see remove_stale_tmps. */

static int save_net(const cfnet_network *net, const char *path, unsigned flags, tool_saved *f)
{
    cfnet_status st = cfnet_network_save(net, path, flags);
    if (st != CFNET_OK) {
        tool_error("%s: cannot save: %s: %s", path, cfnet_status_string(st), cfnet_last_error());
        return -1;
    }
    tool_saved_note(f, path);
    return 0;
}

/* Removes the temporary files of path that a process no longer alive on this host left (a run
 * killed while it saved: kill -9, a cluster's time limit or preemption), so that a job
 * requeued again and again does not pile up files of the model's size: the library's rule
 * (cfnet_remove_stale_temporaries), also for check_writable's empty probe of the folder, and
 * with the process id alone deciding where a file cannot be locked. `scan` is the file whose
 * folder holds them (the file a link names, for out_open's outputs); `shown` names it. */
static void remove_stale_tmps(const char *scan, const char *shown)
{
    const char *slash = strrchr(scan, '/');
    char *dir = path_dir(scan), first[256];
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOCTTY | O_CLOEXEC);
    size_t removed = 0;
    if (fd >= 0 &&
        cf_platform_remove_stale_temps(fd, slash ? slash + 1 : scan,
                                       CF_STALE_PROBES | CF_STALE_LENIENT, &removed, first,
                                       sizeof first) == 0 &&
        removed) {
        char *full = path_join(dir, first);
        tool_info("removed %zu temporary file%s of %s that a run killed while saving left (%s%s)",
                  removed, removed == 1 ? "" : "s", shown, full, removed > 1 ? ", ..." : "");
        free(full);
    }
    if (fd >= 0) close(fd);
    free(dir);
}

/* remove_stale_tmps for every file a run replaces: the model and its checkpoint (beside the
 * name given, as cfnet_network_save replaces a link there), the --plot SVG and its PNG (beside
 * the file a link names, which out_open replaces). */
static void remove_stale_outputs(const train_cfg *c, const char *ckpt)
{
    remove_stale_tmps(c->output, c->output);
    remove_stale_tmps(ckpt, ckpt);
    if (c->plot && strcmp(c->plot, "-") != 0) {
        char *png = plot_png_path(c->plot);
        const char *files[2] = {c->plot, png};
        for (int i = 0; i < 2; i++) {
            char *target = realpath(files[i], NULL);
            remove_stale_tmps(target ? target : files[i], files[i]);
            free(target);
        }
        free(png);
    }
}

int cmd_train(int argc, char **argv)
{
    train_cfg c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "cfnet");
    c.epochs = 30;
    c.batch = 50;
    c.lr = 5e-3;
    c.lr_decay = 0.95;
    c.weight_decay = 5e-4;
    c.rotate = CFNET_AUG_ROTATION_ANY;
    c.val = 0.1;
    c.seed = 1;
    c.norm.percentile = 1;
    c.norm.low = 1;
    c.norm.high = 99.8;
    int u = parse_args(argc, argv, &c);
    if (u == -1) return EXIT_OK; /* --help */
    if (u) return u;
    if (c.threads < 1) c.threads = tool_default_threads();
    /* Under mpirun (any rank count): every rank decodes only its share of each global batch
     * and of the validation set; rank 0 alone writes files (docs/distributed.md). */
    const int dist = tool_mpi_active(), nranks = tool_mpi_size(), rank = tool_mpi_rank();
    if (dist && rank != 0) tool_quiet = 1;
    /* the default --max-memory: a quarter of what the process may use, named in the messages
     * about it (a batch job's or container's limit below the physical memory says so) */
    char *mm_default = NULL;
    if (!c.max_memory_given) {
        const char *what;
        uint64_t lim = tool_memory_limit(&what);
        c.max_memory = lim ? lim / 4 : ((uint64_t)1 << 30);
        mm_default = lim >= ((uint64_t)1 << 30)
                         ? xasprintf("the default: a quarter of %s (%.1f GiB)", what,
                                     lim / 1073741824.0)
                     : lim ? xasprintf("the default: a quarter of %s (%.0f MiB)", what,
                                       lim / 1048576.0)
                         : xstrdup("the default: 1 GiB, the physical memory being unknown");
        if (lim && strcmp(what, "the physical memory") != 0)
            tool_info("--max-memory %.0f MiB, %s", c.max_memory / 1048576.0, mm_default);
    }
    tool_blas_single_thread();

    int rc = EXIT_RUNTIME;
    int64_t ckpt_ntr = -1, ckpt_nva = -1; /* the checkpoint's split, when it records one */
    tool_saved saved[2];
    memset(saved, 0, sizeof saved);
    cfnet_network *net = NULL;
    tool_dataset ds;
    memset(&ds, 0, sizeof ds);
    epoch_rec *hist = NULL;
    int nhist = 0, start_epoch = 0, best_epoch = 0;
    double best = -1;
    char *ckpt = checkpoint_path(c.output);
    int64_t *tr = NULL, *va = NULL, *order = NULL, *chunk_idx = NULL, *local = NULL;
    float *trmem = NULL, *vamem = NULL, *chunkbuf = NULL;
    int32_t *trlab = NULL, *chunklab = NULL;
    FILE *logf = NULL;
    int logfd = -1; /* --log, open and locked from the start (lock_log) */
    /* --log -: the lines on standard output (the progress and messages go to standard error) */
    const int log_stdout = c.log && !strcmp(c.log, "-");
    const char *logname = log_stdout ? "standard output" : c.log;
    char *log_created = NULL; /* the file that lock_log made, if it made one */
    new_log made_log = {&logfd, &log_created};
    tool_model_info minfo;
    memset(&minfo, 0, sizeof minfo);

    /* --resume auto: a job that a cluster requeues runs the same command line again, so the
     * first run starts afresh and every later one continues from MODEL's checkpoint. */
    if (c.resume_auto) {
        struct stat cst;
        if (stat(ckpt, &cst) == 0 || errno != ENOENT)
            c.resume = ckpt; /* also one that cannot be read: its error, not a new run */
    }
    /* Resume: the checkpoint's stored settings replace the command line's. */
    train_cfg cmdline = c; /* the command line's values, for the warning below */
    /* how an error names the checkpoint: with --resume auto a path the user did not give,
     * said to be the one derived from -o */
    char *named = NULL;
    if (c.resume_auto && c.resume)
        named = xasprintf("--resume auto: %s (the checkpoint path derived from -o %s)", c.resume,
                          c.output);
    else if (c.resume)
        named = xstrdup(c.resume);
    /* what to do about a file there that is not a checkpoint, under --resume auto */
    static const char auto_fix[] = "move it away to start a new run, or give -o another file";
    if (c.resume) {
        cfnet_status st = cfnet_network_load(c.resume, &net);
        const char *not_model = st != CFNET_OK ? model_not_a_model(c.resume, st) : NULL;
        if (not_model) {
            /* a folder, an empty file, an image (arguments in the wrong place): said so, as
             * eval and predict say it of MODEL, not the loader's "not a regular file" or "too
             * short for the 8-byte header" */
            tool_error("%s: not a checkpoint file (it is %s); %s", named, not_model,
                       c.resume_auto ? auto_fix
                                     : "--resume takes the MODEL.last.safetensors file that "
                                       "'cfnet train' writes beside MODEL");
            free(named);
            goto out;
        }
        if (st != CFNET_OK) {
            /* a job script that resumes on every run: name the option that does what it meant */
            int missing = !c.resume_auto && access(c.resume, F_OK) != 0 && errno == ENOENT;
            char why[PATH_MAX * 2 + 64];
            const char *hint = missing ? " (to start a new run when there is no checkpoint yet "
                                         "and continue from MODEL's otherwise, as a requeued job "
                                         "needs, give --resume auto)"
                                       : "";
            if (link_in_way(c.resume, why, sizeof why)) /* (a link to nothing or a loop: named) */
                tool_error("%s: cannot load the checkpoint: %s%s", named, why, hint);
            else
                tool_error("%s: cannot load the checkpoint: %s: %s%s", named,
                           cfnet_status_string(st), cfnet_last_error(), hint);
            free(named);
            goto out;
        }
        const char *cfg = NULL, *state = NULL;
        cfnet_network_get_metadata(net, "train.config", &cfg);
        cfnet_network_get_metadata(net, "train.state", &state);
        if (!cfg || !state || config_from_json(cfg, &c) != 0 ||
            state_from_json(state, &start_epoch, &best_epoch, &best, &hist, &nhist, &ckpt_ntr,
                            &ckpt_nva) != 0) {
            tool_error("%s: not a checkpoint of 'cfnet train' (no training state in its "
                       "metadata)%s%s", named, c.resume_auto ? "; " : "",
                       c.resume_auto ? auto_fix : "");
            free(named);
            goto out;
        }
        size_t rlen = strlen(c.resume), slen = strlen(".last.safetensors");
        int is_ckpt_name = rlen > slen && !strcmp(c.resume + rlen - slen, ".last.safetensors");
        if (cfnet_network_step_count(net) == 0 && (c.resume_auto || is_ckpt_name)) {
            /* named as a checkpoint: its own checkpoint path (MODEL.last.last.safetensors) is
             * no help */
            tool_error("%s: a model without its training state (a copy of the best model that "
                       "-o writes?), not a checkpoint%s%s", named, c.resume_auto ? "; " : "",
                       c.resume_auto ? auto_fix : "");
            free(named);
            goto out;
        }
        if (cfnet_network_step_count(net) == 0) {
            /* the best model (-o) carries the run's settings but not its optimiser state */
            char *cp = checkpoint_path(c.resume);
            tool_error("%s: a model without its training state (the best model that -o writes?), "
                       "not a checkpoint; continue from the checkpoint, e.g. --resume %s", c.resume,
                       cp);
            free(cp);
            free(named);
            goto out;
        }
        free(named);
        if (model_load_info(net, c.resume, &minfo) != 0) goto out;
        c.size = minfo.size;
        c.pad = minfo.pad;
        c.norm = minfo.norm;
    }
    /* On several ranks each rank has looked for and loaded the checkpoint itself, which is
     * right only when they read the same file. With --resume auto, a rank that found none
     * (MODEL's folder local to its node) would start a new run beside ranks that continue,
     * and one that finds the run complete would end while the others wait for it; so the
     * ranks compare what they found (whether, its epochs and steps) and what decides whether
     * the run is over, and unless all agree they stop together, said once by rank 0. */
    if (nranks > 1) {
        int v = tool_mpi_ready(); /* a rank that could not load its checkpoint: said, stop */
        if (v != 0) {
            rc = v;
            goto out;
        }
        /* and what the checkpoint holds: a stale copy of MODEL's folder on one node, or
         * another run's, may have the same epochs and steps */
        int64_t held = 0;
        if (net) { /* all of it, as saved: weights, optimiser state, metadata */
            void *buf = NULL;
            size_t len = 0;
            uint64_t h = 0xcbf29ce484222325ull;
            cfnet_status hs = cfnet_network_save_buffer(
                net, CFNET_SAVE_OPTIMIZER | CFNET_SAVE_ALLOW_NONFINITE, &buf, &len);
            for (size_t i = 0; hs == CFNET_OK && i < len; i++)
                h = (h ^ ((const unsigned char *)buf)[i]) * 0x100000001b3ull;
            if (hs == CFNET_E_OUT_OF_MEMORY) { /* said once, every rank ends (check-in) */
                tool_oom_for("comparing the checkpoint's contents with the other ranks'");
                tool_out_of_memory();
            }
            if (hs != CFNET_OK) { /* this rank's own cause, then the refusal */
                tool_error("rank %d of %d: the checkpoint's contents cannot be compared: %s: %s",
                           rank, nranks, cfnet_status_string(hs), cfnet_last_error());
                h = (uint64_t)rank + 1;
            }
            cfnet_free(buf);
            held = (int64_t)h;
        }
        const int64_t seen[] = {c.resume_auto, c.resume != NULL, start_epoch,
                                net ? cfnet_network_step_count(net) : 0, c.epochs, c.patience,
                                held, c.skip_bad};
        /* (--skip-bad too: only the ranks given it take part in screen_bad's collectives, so
         * a rank without it met the others in different ones, an MPI error or a hang) */
        int d = tool_mpi_agree(seen, (int)(sizeof seen / sizeof *seen));
        if (d >= 0) {
            char found[64] = "none";
            if (c.resume)
                snprintf(found, sizeof found, "one with %d epoch%s done", start_epoch,
                         start_epoch == 1 ? "" : "s");
            const int contents = d == 6; /* the same epochs and steps, other contents */
            if (rank == 0 && c.resume_auto && ((d >= 1 && d <= 3) || contents))
                tool_error("--resume auto: the MPI ranks do not see the same checkpoint %s (rank "
                           "0 finds %s%s); MODEL's folder must be on a file system that every "
                           "rank shares", ckpt, found,
                           contents ? "; another rank finds one of the same epochs and "
                                      "steps, with other contents" : "");
            else if (rank == 0 && ((d >= 2 && d <= 3) || contents))
                tool_error("the MPI ranks resume from different checkpoints (rank 0's: %s, %d "
                           "epoch%s done%s); every rank needs the same --resume", c.resume,
                           start_epoch, start_epoch == 1 ? "" : "s",
                           contents ? "; another rank's has the same epochs, other contents"
                                    : "");
            else if (rank == 0)
                tool_error("the MPI ranks disagree on %s; every rank needs the same arguments "
                           "and the same DATA", d <= 1 ? "--resume" : d == 4 ? "--epochs"
                                                                           : d == 7 ? "--skip-bad"
                                                                                    : "--patience");
            tool_mpi_fail_together();
            goto out;
        }
    }
    if (c.resume_auto && !c.resume && rank == 0)
        tool_info("--resume auto: no checkpoint %s yet; starting a new run", ckpt);
    if (c.resume) {
        if (rank == 0) warn_ignored_on_resume(&c, &cmdline);
        /* a run that is over: --epochs reached, or stopped early by --patience (the epochs
         * since the best, as the loop counts them) */
        int since = 0;
        for (int i = nhist - 1; i >= 0 && hist[i].epoch > best_epoch; i--) since++;
        /* (--patience is not stored: only a requeued job's command line is the run's own) */
        int early = c.resume_auto && c.patience > 0 && since >= c.patience &&
                    start_epoch < c.epochs;
        if (start_epoch >= c.epochs || early) {
            char why[128];
            if (early)
                snprintf(why, sizeof why, "stopped early at epoch %d, no improvement for %d "
                         "epoch%s", start_epoch, since, since == 1 ? "" : "s");
            else
                snprintf(why, sizeof why, "already trained for %d epoch%s", start_epoch,
                         start_epoch == 1 ? "" : "s");
            if (c.resume_auto) { /* a requeued job that had finished: nothing to do */
                if (rank == 0) remove_stale_outputs(&c, ckpt);
                if (rank == 0)
                    tool_info("%s: the run is complete (%s); nothing to do (give %s to "
                              "continue)", c.resume, why,
                              early ? "a larger --patience" : "a larger --epochs");
                rc = EXIT_OK;
            } else {
                tool_error("%s: %s; give %s to continue", c.resume, why,
                           early ? "a larger --patience" : "--epochs above that");
            }
            goto out;
        }
        if (c.resume_auto && rank == 0)
            tool_info("--resume auto: continuing from %s (%d epoch%s done)", c.resume,
                      start_epoch, start_epoch == 1 ? "" : "s");
    }

    /* on a terminal, a line for the folder search and the decoding before the first epoch (for
     * tens of thousands of images they take seconds to minutes) */
    tool_progress lp;
    progress_init(&lp, stderr);
    /* (the label restored before the result is looked at: after a failure too) */
    const char *oom_was = tool_oom_for("the list of images in DATA");
    const int ds_rc = dataset_open_labelled(c.data, &ds, &lp, "train");
    tool_oom_for(oom_was);
    if (ds_rc != 0) goto out;
    progress_erase(&lp);
    /* rank 0 alone writes, so it alone checks the outputs (the others learn of a failure at
     * the start vote below) */
    if (rank == 0) {
        const int refused = check_outputs(&c, ckpt, &ds);
        if (refused) { /* a usage error (2), or a full disk: an error (1) */
            rc = refused;
            goto out;
        }
    }
    if (rank == 0) remove_stale_outputs(&c, ckpt);
    if (rank == 0 && c.log && !log_stdout &&
        lock_log(c.log, c.resume != NULL, &logfd, &log_created) != 0)
        goto out;
    tool_on_failure(remove_new_log, &made_log);
    if (ds.has_split) {
        oom_was = tool_oom_for("the class names");
        const int cl_rc = classes_from_train_rows(&ds);
        tool_oom_for(oom_was);
        if (cl_rc != 0) goto out;
        for (int64_t i = 0; i < ds.n; i++) {
            if (ds.s[i].split == SPLIT_TEST) continue;
            if (dataset_assign_classes(&(tool_dataset){.s = &ds.s[i], .n = 1}, ds.classes,
                                       ds.n_classes) != 0)
                goto out;
        }
    } else {
        if (dataset_assign_classes(&ds, ds.classes, ds.n_classes) != 0) goto out;
    }
    if (ds.n_classes < 2) {
        tool_error("%s: found %d class%s; a classifier needs at least 2", c.data, ds.n_classes,
                   ds.n_classes == 1 ? "" : "es");
        goto out;
    }
    for (int k = 0; k < ds.n_classes; k++) {
        /* the model stores its classes as a JSON array, which holds UTF-8 text only: a folder
         * name in another encoding (Latin-1 or Shift-JIS names unzipped from an archive made
         * on another system) would otherwise be dropped from the list */
        int valid;
        char *shown = utf8_repair(ds.classes[k], 1, &valid);
        if (!valid)
            tool_error("%s: class '%s' is not valid UTF-8 (bytes that are not UTF-8 are shown as "
                       "\\xNN); the model stores class names as UTF-8: rename the %s", c.data,
                       shown, ds.manifest ? "label in the manifest" : "class folder");
        free(shown);
        if (!valid) goto out;
    }
    if (c.resume) { /* the data's classes must be the checkpoint's */
        int same = minfo.n_classes == ds.n_classes;
        for (int k = 0; same && k < ds.n_classes; k++) same = !strcmp(minfo.classes[k], ds.classes[k]);
        if (!same) {
            tool_error("%s: the classes of %s differ from the checkpoint's", c.resume, c.data);
            goto out;
        }
    }
    if (c.skip_bad) {
        int sr = screen_bad(&ds, &c, c.resume ? minfo.channels : 0, &lp);
        if (sr != 0) {
            if (sr > 0) rc = sr;
            goto out;
        }
    }
    progress_erase(&lp);
    oom_was = tool_oom_for("the split's lists of images");
    if (!ds.has_split) split_stratified(&ds, c.val, (uint64_t)c.seed);
    int64_t ntr = 0, nva = 0;
    tr = xmalloc(sizeof(int64_t) * (size_t)ds.n);
    va = xmalloc(sizeof(int64_t) * (size_t)ds.n);
    tool_oom_for(oom_was);
    for (int64_t i = 0; i < ds.n; i++) {
        if (ds.s[i].bad) continue;
        if (ds.s[i].split == SPLIT_TRAIN) tr[ntr++] = i;
        else if (ds.s[i].split == SPLIT_VAL) va[nva++] = i;
    }
    const int64_t split_ntr = ntr, split_nva = nva;
    if (c.resume && rank == 0 && ckpt_ntr >= 0 && (ckpt_ntr != ntr || ckpt_nva != nva))
        tool_warn("%s has %lld training and %lld validation images, the run of %s had %lld and "
                  "%lld: not the same DATA, so the run goes on with another split and order "
                  "than an uninterrupted one", c.data, (long long)ntr, (long long)nva, c.resume,
                  (long long)ckpt_ntr, (long long)ckpt_nva);
    /* on several ranks with --skip-bad every rank finds the data's faults below alike after
     * the shared check: said once, by rank 0, after the images it named as left out */
    const int say_data = !c.skip_bad || nranks == 1 || rank == 0;
    for (int k = 0; k < ds.n_classes; k++) {
        int64_t n = 0;
        for (int64_t i = 0; i < ntr; i++) n += ds.s[tr[i]].cls == k;
        if (n == 0) {
            if (say_data)
                tool_error("%s: class '%s' has no %straining images", c.data, ds.classes[k],
                           c.skip_bad ? "readable " : "");
            goto out;
        }
    }

    /* Input geometry from the first image (channels; size unless given). */
    int ch = 0, h0 = 0, w0 = 0, exact = 0;
    int64_t first = 0; /* the sample probed: the first readable one */
    if (dataset_probe(&ds, tr, ntr, c.skip_bad, &ch, &h0, &w0, &first) != 0) goto out;
    if (c.resume) {
        if (ch != minfo.channels) {
            if (say_data)
                tool_error("%s: images have %d channel%s, the checkpoint %d", c.data, ch,
                           ch == 1 ? "" : "s", minfo.channels);
            goto out;
        }
        if (c.size_exact && (h0 != c.size || w0 != c.size)) {
            /* cropping them to the checkpoint's size would train on other data without a word */
            tool_error("%s: images are %dx%d (%s), the checkpoint's run took %dx%d images as "
                       "they were (no --size): not the same DATA", c.data, w0, h0,
                       ds.s[first].path, c.size, c.size);
            goto out;
        }
        exact = c.size_exact;
    } else if (c.size == 0) {
        if (h0 != w0) {
            if (say_data)
                tool_error("%s: images are %dx%d (not square); give --size S to centre-crop "
                           "them to SxS", ds.s[first].path, w0, h0);
            goto out;
        }
        if (h0 < 16 || h0 > 512) {
            if (say_data)
                tool_error("%s: images are %dx%d; the models take 16 to 512 pixels: give "
                           "--size (and --pad for small images)", ds.s[first].path, w0, h0);
            goto out;
        }
        c.size = h0;
        exact = c.size_exact = 1;
    }
    /* under mpirun the images were checked (screen_bad): one that cannot be read now (a file
     * removed meanwhile) ends the job, as without --skip-bad, rather than leave a rank's share
     * of a global batch short */
    load_spec spec = {ch, c.size, c.pad, c.norm, c.threads, dist && c.skip_bad ? -1 : c.skip_bad,
                      exact, !c.resume, ds.s[first].path, NULL, NULL, 0, 0, NULL};
    const int K = ds.n_classes;
    const int64_t per = (int64_t)ch * c.size * c.size;

    if (!c.resume) {
        cfnet_family fam;
        cfnet_family_parse(c.arch, &fam);
        cfnet_status st = cfnet_network_create_classifier(fam, ch, c.size, K, c.width,
                                                          (uint64_t)c.seed, &net);
        if (st != CFNET_OK) {
            tool_lib_error("creating the network", st);
            goto out;
        }
        minfo.classes = ds.classes;
        minfo.n_classes = K;
        minfo.channels = ch;
        minfo.size = c.size;
        minfo.pad = c.pad;
        minfo.norm = c.norm;
        snprintf(minfo.arch, sizeof minfo.arch, "%s", c.arch);
        int r = model_store_info(net, &minfo);
        minfo.classes = NULL;
        minfo.n_classes = 0;
        if (r != 0) goto out;
        char *cfg = config_json(&c);
        cfnet_status s2 = cfnet_network_set_metadata(net, "train.config", cfg);
        free(cfg);
        if (s2 != CFNET_OK) {
            tool_lib_error("storing metadata", s2);
            goto out;
        }
    }
    int64_t steps_epoch = (ntr + c.batch - 1) / c.batch;
    struct {
        cfnet_option o;
        double v;
        const char *flag; /* the command's option that gave the value */
    } opts[] = {{CFNET_OPTION_OPTIMIZER, c.sgd ? CFNET_OPTIMIZER_SGD : CFNET_OPTIMIZER_ADAM,
                 "--optimizer"},
                {CFNET_OPTION_LEARNING_RATE, c.lr, "--lr"},
                {CFNET_OPTION_WEIGHT_DECAY, c.weight_decay, "--weight-decay"},
                {CFNET_OPTION_LR_DECAY_RATE, c.lr_decay, "--lr-decay"},
                {CFNET_OPTION_LR_DECAY_STEPS, (double)steps_epoch, "--batch"},
                {CFNET_OPTION_AUG_ROTATION, c.rotate, "--rotate"},
                {CFNET_OPTION_AUG_JITTER, c.jitter, "--jitter"},
                {CFNET_OPTION_AUG_FLIP, c.flip, "--flip"},
                {CFNET_OPTION_THREADS, c.threads, "--threads"}};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        cfnet_status st = cfnet_network_set_option(net, opts[i].o, opts[i].v);
        if (st != CFNET_OK) {
            tool_error("%s%s: %s", opts[i].flag, c.resume ? " (from the checkpoint)" : "",
                       cfnet_last_error());
            goto out;
        }
    }
    /* Under mpirun every rank has now set up alone; a failure before this point, on any rank,
     * stops every rank here with the failed rank's message and status, said once. */
    int started = tool_mpi_started();
    if (started != 0) {
        rc = started;
        goto out;
    }
    if (dist) {
        /* Every rank must run the same loop over the same images: with another --epochs,
         * --patience or --batch one rank would wait forever in a sum the others never reach
         * (--batch also before: the check of the batch against the rank count below), with
         * other data the ranks would silently train on different batches. (The network's settings
         * are compared by tool_mpi_attach.) */
        int64_t h = tool_mpi_hash_samples(&ds, tr, ntr, 0);
        const int64_t same[] = {c.epochs, c.patience, c.batch, ntr, nva,
                                tool_mpi_hash_samples(&ds, va, nva, h)};
        static const char *const what[] = {"--epochs", "--patience", "--batch",
                                           "the number of training images",
                                           "the number of validation images",
                                           "the training and validation images"};
        int d = tool_mpi_agree(same, (int)(sizeof same / sizeof *same));
        if (d >= 0) {
            if (rank == 0)
                tool_error("the MPI ranks disagree on %s; every rank needs the same arguments "
                           "and the same DATA", what[d]);
            tool_mpi_fail_together();
            goto out;
        }
        /* every global batch, the last one too, must give each rank at least one sample */
        int64_t last = ntr % c.batch;
        if (c.batch < nranks || (last && last < nranks)) {
            /* the most ranks that work; on --resume the batch is the checkpoint's */
            int64_t most = last && last < c.batch ? last : c.batch;
            if (rank == 0) /* the same on every rank: said once */
                tool_error("%d MPI ranks need at least %d images in every batch: --batch %d over "
                           "%lld training images leaves %lld in the last one; run on at most "
                           "%lld rank%s%s", nranks, nranks, c.batch, (long long)ntr,
                           (long long)(last ? last : c.batch), (long long)most,
                           most == 1 ? "" : "s",
                           c.resume ? " (--batch is the checkpoint's)" : " or change --batch");
            tool_mpi_fail_together();
            goto out;
        }
        if (tool_mpi_attach(net) != 0) goto out;
    }

    /* Memory: everything resident when it fits under the cap, else chunks streamed from disk
     * (chunks are whole batches, so the steps are the same either way). */
    uint64_t need = (uint64_t)(ntr + nva) * (uint64_t)per * sizeof(float);
    int resident = !dist && need <= c.max_memory;
    int64_t chunk = ntr;
    if (dist) {
        chunk = c.batch;
    } else if (!resident) {
        int64_t fit = (int64_t)(c.max_memory / ((uint64_t)per * sizeof(float)));
        chunk = fit / c.batch * c.batch;
        if (chunk < c.batch) chunk = c.batch;
        tool_info("%lld images need %.0f MiB as float32, above --max-memory %.0f MiB%s%s%s: "
                  "streaming them from disk in chunks of %lld", (long long)(ntr + nva),
                  need / 1048576.0, c.max_memory / 1048576.0, mm_default ? " (" : "",
                  mm_default ? mm_default : "", mm_default ? ")" : "", (long long)chunk);
    }
    double t_load = tool_now();
    int64_t bad = 0;
    /* the labels, the epoch's order and the history: with the chunk's buffers below under
     * mpirun, where one rank without memory for them is said by rank 0 and every rank ends
     * (it exited at once without MPI_Finalize, xmalloc's bare "out of memory") */
    trlab = malloc(sizeof(int32_t) * (size_t)(ntr ? ntr : 1));
    order = malloc(sizeof(int64_t) * (size_t)(ntr ? ntr : 1));
    epoch_rec *more = realloc(hist, sizeof *hist * (size_t)(nhist + (c.epochs - start_epoch) + 1));
    if (more) hist = more;
    const int no_order = !trlab || !order || !more;
    if (no_order && !dist) {
        tool_error("out of memory for the order of %lld training images", (long long)ntr);
        goto out;
    }
    for (int64_t i = 0; i < ntr && trlab; i++) trlab[i] = ds.s[tr[i]].cls;
    if (resident) {
        /* a limit below the physical memory (ulimit -v, a batch job's) may refuse what fits
         * under the default --max-memory: said with the numbers and the way out, before any
         * decoding, rather than as a bare "out of memory" */
        trmem = malloc(sizeof(float) * (size_t)(ntr * per));
        vamem = nva ? malloc(sizeof(float) * (size_t)(nva * per)) : NULL;
        if (!trmem || (nva && !vamem)) {
            tool_error("out of memory for the %lld decoded images (%.0f MiB as float32, under "
                       "--max-memory %.0f MiB%s%s): give a smaller --max-memory to stream them "
                       "from disk", (long long)(ntr + nva), need / 1048576.0,
                       c.max_memory / 1048576.0, mm_default ? ", " : "",
                       mm_default ? mm_default : "");
            goto out;
        }
        if (tool_blas_room(", or give a smaller --max-memory") != 0) goto out;
        load_spec shown = spec;
        shown.progress = &lp;
        shown.progress_what = "train: decoding";
        shown.progress_total = ntr + nva;
        lp.t0 = t_load;
        if (dataset_load(&ds, tr, ntr, &shown, trmem, &bad) != 0) goto out;
        shown.progress_base = ntr;
        if (nva && dataset_load(&ds, va, nva, &shown, vamem, &bad) != 0) goto out;
        progress_erase(&lp);
        double dt = tool_now() - t_load;
        tool_info("decoded %lld images (%dx%dx%d) in %.2f s: %.0f images/s with %d thread%s",
                  (long long)(ntr + nva), ch, c.size, c.size, dt, (ntr + nva) / (dt > 0 ? dt : 1e-9),
                  c.threads, c.threads == 1 ? "" : "s");
    } else {
        /* under mpirun a limit may be one node's: the refusal (or the chunk's buffers not
         * allocated: a chunk is one batch, tens of MB for large images) is held and said by
         * rank 0, and every rank ends here (not the refusing rank's MPI_Abort, or its exit
         * without MPI_Finalize, while the others wait) */
        tool_held hold;
        tool_hold_begin(&hold, NULL);
        chunkbuf = malloc(sizeof(float) * (size_t)(chunk * per));
        chunklab = malloc(sizeof(int32_t) * (size_t)chunk);
        chunk_idx = malloc(sizeof(int64_t) * (size_t)chunk);
        local = malloc(sizeof(int64_t) * (size_t)chunk);
        int refused = hold.unheld[0] != '\0';
        if (!refused && no_order) {
            if (nranks > 1)
                tool_error("rank %d of %d: out of memory for the order of %lld training images",
                           rank, nranks, (long long)ntr);
            else
                tool_error("out of memory for the order of %lld training images",
                           (long long)ntr);
            refused = 1;
        }
        if (!refused && (!chunkbuf || !chunklab || !chunk_idx || !local)) {
            if (nranks > 1)
                tool_error("rank %d of %d: out of memory for a chunk of %lld images (%.1f MiB "
                           "as float32)", rank, nranks, (long long)chunk,
                           (double)chunk * (double)per * sizeof(float) / 1048576.0);
            else
                tool_error("out of memory for a chunk of %lld images (%.1f MiB as float32)",
                           (long long)chunk,
                           (double)chunk * (double)per * sizeof(float) / 1048576.0);
            refused = 1;
        }
        refused = refused || tool_blas_room(", or give a smaller --max-memory") != 0;
        if (tool_hold_end(&hold, refused) != 0) goto out;
    }
    if (c.skip_bad && resident) {
        /* leave bad images out of the training order */
        int64_t w = 0;
        for (int64_t i = 0; i < ntr; i++)
            if (!ds.s[tr[i]].bad) {
                if (w != i) memcpy(trmem + w * per, trmem + i * per, sizeof(float) * (size_t)per);
                tr[w] = tr[i];
                trlab[w++] = trlab[i];
            }
        ntr = w;
        for (int k = 0; k < K; k++) {
            int64_t n = 0;
            for (int64_t i = 0; i < ntr; i++) n += trlab[i] == k;
            if (n == 0) {
                tool_error("%s: class '%s' has no readable training images", c.data, ds.classes[k]);
                goto out;
            }
        }
        steps_epoch = (ntr + c.batch - 1) / c.batch;
        cfnet_network_set_option(net, CFNET_OPTION_LR_DECAY_STEPS, (double)steps_epoch);
    }
    tool_info("training %s on %lld images of %d classes (%lld for validation), %dx%d, %d "
              "channel%s, epochs %d to %d", c.arch, (long long)ntr, K, (long long)nva, c.size,
              c.size, ch, ch == 1 ? "" : "s", start_epoch + 1, c.epochs);
    if (dist)
        tool_info("MPI: %d rank%s share every batch of %d images", nranks, nranks == 1 ? "" : "s",
                  c.batch);
    /* distributed validation: rank r classifies a contiguous block of whole inference batches */
    int64_t va_off = 0, va_n = nva;
    if (dist) {
        int64_t nb = (nva + VAL_BATCH - 1) / VAL_BATCH;
        int64_t b0 = nb * rank / nranks, b1 = nb * (rank + 1) / nranks;
        va_off = b0 * VAL_BATCH < nva ? b0 * VAL_BATCH : nva;
        va_n = (b1 * VAL_BATCH < nva ? b1 * VAL_BATCH : nva) - va_off;
    }

    tool_install_signals();
    prog_ctx pc;
    memset(&pc, 0, sizeof pc);
    progress_init(&pc.pr, stderr);
    pc.epochs = c.epochs;
    pc.run_t0 = tool_now();
    pc.steps_left_run = steps_epoch * (c.epochs - start_epoch);
    pc.steps_epoch = steps_epoch;
    pc.plain_every = steps_epoch >= 8 ? (steps_epoch + 3) / 4 : 0;
    int since_best = 0;
    for (int i = nhist - 1; i >= 0 && hist[i].epoch > best_epoch; i--) since_best++;
    for (int e = start_epoch + 1; e <= c.epochs; e++) {
        double te = tool_now();
        pc.epoch = e;
        pc.step_offset = 0;
        pc.steps_done_run = steps_epoch * (e - 1 - start_epoch);
        epoch_order(&ds, tr, ntr, (uint64_t)c.seed, c.balance, e, order);
        double correct = 0;
        int64_t seen = 0;
        pc.loss_sum = 0;
        pc.seen_before = 0;
        pc.correct_before = 0;
        pc.batch = c.batch;
        cfnet_status st = CFNET_OK;
        /* distributed: global batches of the global order, step by step; this rank decodes and
         * trains only its share, the hook sums gradients and batch-norm statistics */
        for (int64_t s0 = 0; dist && s0 < ntr && st == CFNET_OK; s0 += c.batch) {
            int64_t nb = ntr - s0 < c.batch ? ntr - s0 : c.batch, off = 0, cnt = 0;
            /* the share's messages are held, then said by rank 0 for every rank that failed,
             * in rank order, and every rank ends together (not each rank's lines shuffled
             * together on stderr and an abort) */
            char when[64];
            snprintf(when, sizeof when, " (step %lld of epoch %d)", (long long)(s0 / c.batch + 1),
                     e);
            /* A library error in the step on this rank alone (out of memory, say) is said the
             * same way: the rank takes part in the sum the others wait in
             * (tool_mpi_step_failed), so that their step ends too, and every rank stops after
             * this step (a step that fails on every rank alike, non-finite numbers in the
             * sums, is said once by rank 0). */
            tool_held hold;
            tool_hold_begin(&hold, when);
            const int nostream = hold.unheld[0] != '\0';
            /* (a share refused, its message held, is this rank's own failure of the step too:
             * it ended the job by MPI_Abort while the others waited in the step's first sum) */
            const int unshared = tool_mpi_set_batch(net, nb, &off, &cnt) != 0;
            for (int64_t i = 0; i < cnt; i++) {
                chunk_idx[i] = tr[order[s0 + off + i]];
                chunklab[i] = trlab[order[s0 + off + i]];
            }
            const int lost = nostream || unshared ||
                             dataset_load(&ds, chunk_idx, cnt, &spec, chunkbuf, &bad) != 0;
            if (lost && !nostream && !unshared)
                tool_error("rank %d of %d: could not load its share of step %lld of epoch %d", rank,
                           nranks, (long long)(s0 / c.batch + 1), e);
            int64_t shape[4] = {cnt, ch, c.size, c.size};
            cfnet_tensor *t = NULL;
            float l = 0;
            if (!lost) st = cfnet_tensor_wrap(chunkbuf, 4, shape, &t);
            if (!lost && st == CFNET_OK) st = cfnet_network_train_step(net, t, chunklab, cnt, &l);
            cfnet_tensor_free(t);
            const int left = tool_mpi_step_left(); /* another rank's failure ended it */
            const int own = lost || (st != CFNET_OK && !left);
            const int joined = own && tool_mpi_step_failed();
            /* non-finite numbers found after every sum: on every rank alike */
            const int alike = st == CFNET_E_NUMERIC && !left && !joined;
            if (own && !lost) {
                if (!alike)
                    tool_error("rank %d of %d: training (step %lld of epoch %d): %s: %s", rank,
                               nranks, (long long)(s0 / c.batch + 1), e,
                               cfnet_status_string(st), cfnet_last_error());
                else if (rank == 0)
                    tool_lib_error("training", st);
            }
            if (tool_hold_end(&hold, own || st != CFNET_OK)) {
                progress_done(&pc.pr);
                if (alike && rank == 0) say_diverged(e, start_epoch, ckpt, c.resume);
                goto out;
            }
            pc.chunk_n = ntr;
            seen += nb;
            /* an interrupt on any rank stops every rank after the same step */
            if (tool_mpi_any(on_step(&pc, s0 / c.batch + 1, steps_epoch, (double)l, NAN) > 0))
                st = CFNET_E_CANCELLED;
        }
        for (int64_t c0 = 0; !dist && c0 < ntr && st == CFNET_OK; c0 += chunk) {
            int64_t n = ntr - c0 < chunk ? ntr - c0 : chunk, nuse = n;
            const cfnet_tensor *imgs;
            cfnet_tensor *t = NULL;
            const int32_t *labs;
            const int64_t *ord;
            int64_t shape[4] = {resident ? ntr : n, ch, c.size, c.size};
            if (resident) {
                st = cfnet_tensor_wrap(trmem, 4, shape, &t);
                labs = trlab;
                ord = order + c0;
            } else {
                for (int64_t i = 0; i < n; i++) {
                    chunk_idx[i] = tr[order[c0 + i]];
                    chunklab[i] = trlab[order[c0 + i]];
                    local[i] = i;
                }
                if (dataset_load(&ds, chunk_idx, n, &spec, chunkbuf, &bad) != 0) goto out;
                /* --skip-bad: images found bad are left out of the chunk's order (never
                 * trained on as zeros) */
                nuse = 0;
                for (int64_t i = 0; i < n; i++)
                    if (!ds.s[chunk_idx[i]].bad) local[nuse++] = i;
                if (nuse == 0) continue;
                st = cfnet_tensor_wrap(chunkbuf, 4, shape, &t);
                labs = chunklab;
                ord = local;
            }
            imgs = t;
            double ml = 0, acc = 0;
            pc.chunk_n = nuse;
            pc.seen_before = seen;
            pc.correct_before = correct;
            if (st == CFNET_OK)
                st = cfnet_network_train_epoch(net, imgs, labs, c.batch, ord, nuse, on_step, &pc,
                                               &ml, &acc);
            cfnet_tensor_free(t);
            correct += floor(acc * (double)nuse + 0.5); /* a count */
            seen += nuse;
            pc.step_offset += (nuse + c.batch - 1) / c.batch;
        }
        /* under mpirun only the summed flag counts (a rank's own flag is seen at the next
         * step's sum): every rank cancels the same step, rank 0 says so once and all end
         * together */
        if (st == CFNET_E_CANCELLED || (!dist && tool_interrupted)) {
            progress_done(&pc.pr);
            if (dist) tool_mpi_fail_together();
            if (rank == 0)
                tool_error("interrupted during epoch %d; %s holds epoch %d (continue with "
                           "--resume)", e, ckpt, e - 1);
            rc = 130;
            goto out;
        }
        if (st != CFNET_OK) {
            progress_done(&pc.pr);
            if (dist && st == CFNET_E_NUMERIC) {
                /* non-finite numbers inside a step reach every rank through the sums, so
                 * every rank fails this step alike: rank 0 says so once, all end together */
                tool_mpi_fail_together();
                if (rank == 0) tool_lib_error("training", st);
            } else if (nranks > 1) { /* this rank alone: the others wait, to be aborted */
                tool_error("rank %d of %d: training: %s: %s", rank, nranks,
                           cfnet_status_string(st), cfnet_last_error());
            } else {
                tool_lib_error("training", st);
            }
            if (st == CFNET_E_NUMERIC && rank == 0) say_diverged(e, start_epoch, ckpt, c.resume);
            goto out;
        }
        epoch_rec *r = &hist[nhist++];
        memset(r, 0, sizeof *r);
        r->epoch = e;
        r->train_loss = seen ? pc.loss_sum / (double)seen : NAN;
        r->train_acc = seen && !dist ? correct / (double)seen : NAN; /* not summed over ranks */
        r->val_loss = r->val_acc = r->val_bacc = NAN;
        r->lr = c.lr * pow(c.lr_decay, (double)(cfnet_network_step_count(net) / steps_epoch));
        int improved = 0;
        if (nva) {
            tool_metrics m;
            /* streamed: chunks of whole inference batches, so that every image is classified
             * in the same batch as when resident (results equal to the last bit) */
            int64_t vchunk = resident ? nva : chunk >= VAL_BATCH ? chunk / VAL_BATCH * VAL_BATCH
                                                                 : VAL_BATCH;
            if (dist) vchunk = 4 * VAL_BATCH;
            int vr = validate(net, &ds, va + va_off, va_n, vamem, vchunk, chunkbuf,
                              chunkbuf ? chunk : 0, &spec, K, VAL_BATCH, &m, &bad, e);
            r->val_loss = m.loss;
            r->val_acc = m.accuracy;
            r->val_bacc = m.balanced_accuracy;
            metrics_free(&m);
            if (vr != 0) goto out; /* (under mpirun: said, every rank ends here) */
            if (r->val_bacc > best) {
                best = r->val_bacc;
                best_epoch = e;
                improved = 1;
            }
        } else {
            best_epoch = e;
            improved = 1;
        }
        since_best = improved ? 0 : since_best + 1;
        r->seconds = tool_now() - te;

        /* The end of the epoch: every rank stores the state, rank 0 alone checks and saves the
         * model and the checkpoint, writes the log and the plot. Under mpirun the messages are
         * held and every rank meets at the end (tool_hold_end: one sum when nothing failed):
         * a failure of any rank, rank 0's save above all, ends every rank here with its
         * message said once by rank 0 (not rank 0's MPI_Abort while the others wait in the
         * next step; the checkpoint keeps the last epoch saved whole). */
        char when[64];
        snprintf(when, sizeof when, " (end of epoch %d)", e);
        tool_held hold;
        tool_hold_begin(&hold, when);
        int end_failed = hold.unheld[0] != '\0';
        int waited_out = 0; /* the failure: a signal ended the wait for the log's or plot's reader */
        char *state = end_failed ? NULL
                                 : state_json(e, best_epoch, best, hist, nhist, split_ntr,
                                              split_nva);
        cfnet_status s2 = end_failed ? CFNET_OK
                                     : cfnet_network_set_metadata(net, "train.state", state);
        free(state);
        if (s2 != CFNET_OK) {
            if (nranks > 1)
                tool_error("rank %d of %d: storing the training state: %s: %s", rank, nranks,
                           cfnet_status_string(s2), cfnet_last_error());
            else
                tool_lib_error("storing the training state", s2);
            end_failed = 1;
        }
        if (!end_failed && rank == 0 &&
            (!still_ours(&saved[0], c.output, c.output) || !still_ours(&saved[1], ckpt, c.output) ||
             (improved && save_net(net, c.output, 0, &saved[0]) != 0) ||
             save_net(net, ckpt, CFNET_SAVE_OPTIMIZER, &saved[1]) != 0))
            end_failed = 1;

        char e1[32], tacc[32] = "";
        fmt_time(tool_now() - pc.run_t0, e1, sizeof e1);
        if (!isnan(r->train_acc)) snprintf(tacc, sizeof tacc, " acc %.1f %%", 100 * r->train_acc);
        /* on a terminal the epoch line replaces the step line */
        if (end_failed)
            ;
        else if (nva)
            progress_line(&pc.pr, 1, "epoch %d/%d  train loss %.4f%s  val loss %.4f acc "
                          "%.1f %% balanced %.1f %%%s  %.1f s (total %s)", e, c.epochs, r->train_loss,
                          tacc, r->val_loss, 100 * r->val_acc, 100 * r->val_bacc,
                          improved ? "  best" : "", r->seconds, e1);
        else
            progress_line(&pc.pr, 1, "epoch %d/%d  train loss %.4f%s  %.1f s (total %s)", e,
                          c.epochs, r->train_loss, tacc, r->seconds, e1);
        progress_done(&pc.pr);
        if (c.log && rank == 0 && !logf && !end_failed) {
            /* opened once the first epoch is saved: a run that fails or is interrupted before
             * leaves an earlier run's log beside that run's model and checkpoint */
            struct stat lst;
            int empty = 1;
            if (logfd >= 0) { /* the file locked at the start */
                if (!c.resume && ftruncate(logfd, 0) != 0) {
                    tool_error("%s: cannot truncate: %s", c.log, strerror(errno));
                    end_failed = 1;
                } else {
                    empty = fstat(logfd, &lst) != 0 || lst.st_size == 0;
                    logf = fdopen(logfd, c.resume ? "a" : "w");
                    if (logf) logfd = -1;
                }
            } else if (log_stdout) {
                logf = stdout;
                empty = !c.resume; /* (the header on a new run; --resume appends) */
            } else {
                /* (a FIFO: waited on until a process reads it, or a signal ends the run) */
                int fd = open_write_wait(c.log, O_CREAT | (c.resume ? O_APPEND : O_TRUNC), 0666);
                logf = fd >= 0 ? fdopen(fd, c.resume ? "a" : "w") : NULL;
                if (!logf && fd >= 0) {
                    int oe = errno;
                    close(fd);
                    errno = oe;
                }
                empty = logf && ftell(logf) == 0;
            }
            if (!logf && !end_failed) {
                if (errno == EINTR && tool_interrupted) {
                    tool_error("%s: interrupted while waiting for a process to read this FIFO",
                               logname);
                    waited_out = 1;
                } else {
                    tool_error("%s: cannot open: %s", logname, strerror(errno));
                }
                end_failed = 1;
            }
            if (logf && (!c.resume || empty))
                fprintf(logf, "epoch,train_loss,train_accuracy,val_loss,val_accuracy,"
                              "val_balanced_accuracy,learning_rate,seconds\n");
        }
        if (logf && !end_failed) {
            fprintf(logf, "%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6g,%.3f\n", e, r->train_loss, r->train_acc,
                    r->val_loss, r->val_acc, r->val_bacc, r->lr, r->seconds);
            /* a full disk is found now, not after the last epoch (or never: a failed flush
             * leaves nothing for fclose to report) */
            if (fflush(logf) != 0 || ferror(logf)) {
                tool_error("%s: cannot write epoch %d: %s; %s holds epoch %d (continue with "
                           "--resume)", logname, e, strerror(errno), ckpt, e);
                end_failed = 1;
            }
        }
        if (c.plot && rank == 0 && !end_failed) {
            const int pu = write_plot(c.plot, hist, nhist, nva > 0);
            end_failed = pu != 0;
            waited_out = pu == 130;
        }
        /* a signal while the log or the plot waited for a reader (a FIFO): the end of an
         * interrupted run, epoch e saved, status 130. A save, the log or the plot that failed
         * otherwise while a signal came (a full disk) is that failure, status 1, the signal
         * said after it. */
        const int stopped = waited_out && rank == 0;
        if (stopped)
            tool_error("interrupted after epoch %d; %s holds epoch %d (continue with --resume)", e,
                       ckpt, e);
        else if (end_failed && tool_interrupted && rank == 0)
            tool_error("interrupted after epoch %d too; the run ends for the error above", e);
        if (tool_hold_end(&hold, end_failed) != 0) {
            /* (every rank ends here alike: all with rank 0's 130, not rank 0 alone) */
            if (tool_mpi_any(stopped)) rc = 130;
            goto out;
        }
        if (c.patience > 0 && nva && since_best >= c.patience) {
            tool_info("early stop: validation balanced accuracy has not improved for %d epoch%s",
                      c.patience, c.patience == 1 ? "" : "s");
            break;
        }
    }
    /* The log closed by rank 0 with every rank still here (a close can report a write the
     * flush after each epoch did not: NFS reports them there): a failure ends every rank with
     * rank 0's message and status 1 (found at the very end, it was rank 0's alone and ended
     * the job by MPI_Abort); one sum per run. The log holds every epoch flushed before. */
    {
        tool_held hold;
        tool_hold_begin(&hold, " (closing the log)");
        int close_failed = hold.unheld[0] != '\0';
        if (logf && (logf == stdout ? fflush(logf) != 0 || ferror(logf) : fclose(logf) != 0)) {
            tool_error("%s: write failed: %s; %s holds the last epoch", logname, strerror(errno),
                       ckpt);
            close_failed = 1;
        }
        logf = NULL;
        if (tool_hold_end(&hold, close_failed) != 0) goto out;
    }
    if (c.plot && rank == 0) plot_png(c.plot);
    if (dist) {
        int64_t calls = 0, bytes = 0;
        double secs = 0;
        tool_mpi_traffic(&calls, &bytes, &secs);
        tool_info("MPI: %lld all-reduce calls of %.1f KiB on average, %.2f s in them on rank 0",
                  (long long)calls, calls ? bytes / 1024.0 / (double)calls : 0.0, secs);
    }
    if (nva)
        tool_info("best validation balanced accuracy %.2f %% at epoch %d -> %s (last state: %s)",
                  100 * best, best_epoch, c.output, ckpt);
    else
        tool_info("no validation set: %s is the last epoch (also in %s)", c.output, ckpt);
    bad = 0; /* streamed images are re-read (and found bad) every epoch: count them once */
    for (int64_t i = 0; i < ds.n; i++) bad += ds.s[i].bad;
    if (bad && rank == 0) tool_warn("skipped %lld unreadable or unsuitable image%s", (long long)bad,
                           bad == 1 ? "" : "s");
    /* A signal after the last step (while the last epoch was saved, logged or plotted): every
     * file is written whole by now, and the run says so, but still ends as an interrupted run
     * (130), so that `cfnet train ... && next` stops where the user asked it to (it was status
     * 0, the signal unsaid). Under mpirun the ranks agree first (a check-in): a signal that
     * reached some ranks only ends every rank alike, status 130, rank 0 saying so once (the
     * ranks it reached ended 130 alone, silent, and the job's status depended on which). */
    if (tool_mpi_any(tool_interrupted)) {
        if (dist) tool_mpi_fail_together();
        if (rank == 0)
            tool_error("interrupted after the last epoch (%d) was saved: the run is complete, %s "
                       "and %s are whole (nothing to resume)",
                       nhist ? hist[nhist - 1].epoch : start_epoch, c.output, ckpt);
        rc = 130;
        goto out;
    }
    rc = EXIT_OK;
out:
    tool_on_failure(NULL, NULL);
    if (logfd >= 0) { /* the run ended before its first epoch was logged */
        remove_new_log(&made_log);
        close(logfd);
    }
    free(log_created);
    if (logf && (logf == stdout ? fflush(logf) != 0 || ferror(logf) : fclose(logf) != 0) &&
        rc == EXIT_OK) {
        tool_error("%s: write failed: %s", logname, strerror(errno));
        rc = EXIT_RUNTIME;
    }
    if (dist) tool_mpi_detach(net);
    cfnet_network_free(net);
    dataset_free(&ds);
    model_info_free(&minfo);
    free(hist);
    free(mm_default);
    free(ckpt);
    free(tr);
    free(va);
    free(order);
    free(chunk_idx);
    free(local);
    free(trmem);
    free(vamem);
    free(chunkbuf);
    free(trlab);
    free(chunklab);
    return rc;
}
