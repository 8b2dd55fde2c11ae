/* `cfnet synth DIR`: the project's synthetic biomarker images (examples/common/biomarker.c,
 * docs/biomarker.md) as a class-folder dataset of image files. */
#define _GNU_SOURCE
#include "tool.h"

#include "biomarker.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char synth_help[] =
    "Usage: cfnet synth DIR [options]\n"
    "Writes the synthetic biomarker images (docs/biomarker.md) as a dataset with one folder per\n"
    "class: DIR/train/<class>/NNNN.tif and DIR/test/<class>/NNNN.tif. DIR must be new or\n"
    "empty.\n"
    "Channel 1 is the biomarker (the class's Gaussian-mixture pattern, randomly rotated and\n"
    "jittered); channel 2 is a class-independent reference stain (one round blob), so the\n"
    "class is in channel 1 only.\n"
    "\n"
    "Options:\n"
    "  --classes K          number of classes, 2..50 (default 10)\n"
    "  --per-class N        training images per class (default 50)\n"
    "  --test-per-class M   test images per class (default 50; 0: no test folder)\n"
    "  --channels C         1 (biomarker only) or 2 (default 2)\n"
    "  --size S             8..1024: centre-crop (S < 50) or zero-pad (S > 50) the 50x50\n"
    "                       images to SxS (default 50)\n"
    "  --format F           tiff (default) or png (2 channels: grey+alpha)\n"
    "  --bits B             16 (default; values 100 + 3900 x intensity, like a 12-bit camera),\n"
    "                       8 (255 x intensity) or, TIFF only, 32 (float, intensity in [0, 1])\n"
    "  --layout L           TIFF channels as: pages (one page per channel, default),\n"
    "                       interleaved (samples per pixel), planar (separate planes) or\n"
    "                       tiled (interleaved in 16x16 tiles)\n"
    "  --seed S             data seed (default 1; image i of class k is the same for a given\n"
    "                       seed whatever the counts)\n"
    "  --pattern-seed S     seed of the class patterns (default 2019, as the demo)\n"
    "  -q, --quiet          no summary line\n"
    "  -h, --help           this help\n";

static void render(const bm_class *pat, const bm_class *ref, int cls, bm_split split, int64_t i,
                   uint64_t seed, int channels, int bits, float *out)
{
    const int P = BM_SIZE * BM_SIZE;
    bm_render(pat, cls, split, i, seed, out);
    if (channels == 2) bm_render(ref, 0x8000 + cls, split, i, seed, out + P);
    for (int q = 0; q < channels * P; q++) {
        float v = out[q];
        out[q] = bits == 16 ? 100.0f + 3900.0f * v : bits == 8 ? 255.0f * v : v;
    }
}

/* Centre crop or zero pad (offsets as in training's crop/pad). */
static void crop_or_pad(const tool_image *in, tool_image *out)
{
    const int S = out->width, o = (BM_SIZE - S) / 2;
    for (int c = 0; c < in->channels; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int sy = y + o, sx = x + o;
                out->data[((int64_t)c * S + y) * S + x] =
                    sy >= 0 && sy < BM_SIZE && sx >= 0 && sx < BM_SIZE
                        ? in->data[((int64_t)c * BM_SIZE + sy) * BM_SIZE + sx] : 0.0f;
            }
}

int cmd_synth(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"classes", required_argument, 0, 'k'},     {"per-class", required_argument, 0, 'n'},
        {"test-per-class", required_argument, 0, 't'}, {"channels", required_argument, 0, 'c'},
        {"format", required_argument, 0, 'f'},      {"bits", required_argument, 0, 'b'},
        {"layout", required_argument, 0, 'l'},      {"seed", required_argument, 0, 's'},
        {"pattern-seed", required_argument, 0, 'p'}, {"quiet", no_argument, 0, 'q'},
        {"size", required_argument, 0, 'S'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    long classes = 10, per = 50, test = 50, channels = 2, bits = 16, seed = 1, pseed = BM_PATTERN_SEED;
    long size = BM_SIZE;
    int png = 0;
    tiff_layout layout = TIFF_PAGES;
    int layout_given = 0;
    int c;
    while ((c = opt_next(argc, argv, ":qh", longopts, synth_help)) >= 0) {
        int u = 0;
        switch (c) {
        case 'k': u = opt_long("synth", "--classes", optarg, 2, BM_CLASSES, NULL, &classes); break;
        case 'n': u = opt_long("synth", "--per-class", optarg, 1, 1000000, NULL, &per); break;
        case 't': u = opt_long("synth", "--test-per-class", optarg, 0, 1000000, NULL, &test); break;
        case 'c': u = opt_long("synth", "--channels", optarg, 1, 2, "1 or 2", &channels); break;
        case 'f':
            if (!strcmp(optarg, "png")) png = 1;
            else if (!strcmp(optarg, "tiff") || !strcmp(optarg, "tif")) png = 0;
            else return tool_usage_error("synth", "--format: expected tiff or png, got '%s'", optarg);
            break;
        case 'b':
            if (parse_int(optarg, 8, 32, &bits) || (bits != 8 && bits != 16 && bits != 32))
                return tool_usage_error("synth", "--bits: expected 8, 16 or 32, got '%s'", optarg);
            break;
        case 'l':
            layout_given = 1;
            if (!strcmp(optarg, "pages")) layout = TIFF_PAGES;
            else if (!strcmp(optarg, "interleaved")) layout = TIFF_INTERLEAVED;
            else if (!strcmp(optarg, "planar")) layout = TIFF_PLANAR;
            else if (!strcmp(optarg, "tiled")) layout = TIFF_TILED;
            else return tool_usage_error("synth", "--layout: expected pages, interleaved, planar or tiled, got '%s'", optarg);
            break;
        case 's': u = opt_long("synth", "--seed", optarg, 0, 0x7fffffffL, "a non-negative integer", &seed); break;
        case 'p': u = opt_long("synth", "--pattern-seed", optarg, 0, 0x7fffffffL, "a non-negative integer", &pseed); break;
        case 'S': u = opt_long("synth", "--size", optarg, 8, 1024, NULL, &size); break;
        case 'q': tool_quiet = 1; break;
        default: return opt_error("synth", c, argv);
        }
        if (u) return u;
    }
    if (c == OPT_HELP) return EXIT_OK;
    if (optind != argc - 1)
        return tool_usage_error("synth", optind >= argc ? "missing DIR" : "one DIR expected");
    if (png && bits == 32) return tool_usage_error("synth", "--bits 32 (float) is TIFF only");
    if (png && layout_given)
        return tool_usage_error("synth", "--layout is for TIFF files; a PNG holds its channels as "
                                         "samples of one image");
    const char *dir = argv[optind];
    if (!dir[0]) return tool_usage_error("synth", "DIR is empty");
    /* A new or empty folder only: class folders written into an existing dataset would become
     * classes of it, and files of an earlier run with other counts would stay behind. */
    if (path_is_dir(dir) == 1) {
        DIR *dp = opendir(dir);
        int used = 0;
        if (dp) {
            struct dirent *e;
            while (!used && (e = readdir(dp)))
                used = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
            closedir(dp);
        }
        if (!dp || used) {
            tool_error("%s: %s; synth writes a dataset into a new or empty folder (remove it or "
                       "give another DIR)", dir, dp ? "the folder is not empty" : strerror(errno));
            return EXIT_RUNTIME;
        }
    } else if (path_is_dir(dir) == 0) {
        tool_error("%s exists and is not a folder", dir);
        return EXIT_RUNTIME;
    }
    bm_class pat[BM_CLASSES], ref;
    for (int k = 0; k < classes; k++) bm_class_pattern(k, (uint64_t)pseed, &pat[k]);
    /* The reference stain: one round component at the centre, like a nucleus. */
    memset(&ref, 0, sizeof ref);
    ref.components = 1;
    ref.weight[0] = 1.0;
    ref.chol[0][0] = ref.chol[0][2] = 5.0;
    ref.points = 250.0;
    ref.spot = 1.0;
    tool_image img = {(int)channels, BM_SIZE, BM_SIZE, xmalloc(sizeof(float) * 2 * BM_SIZE * BM_SIZE)};
    tool_image out = {(int)channels, (int)size, (int)size, xmalloc(sizeof(float) * 2 * (size_t)(size * size))};
    const char *ext = png ? "png" : "tif";
    int64_t written = 0;
    for (int s = 0; s < 2; s++) {
        long count = s == 0 ? per : test;
        if (count == 0) continue;
        char *sdir = path_join(dir, s == 0 ? "train" : "test");
        for (int k = 0; k < classes; k++) {
            char name[32];
            snprintf(name, sizeof name, "class%02d", k);
            char *cdir = path_join(sdir, name);
            if (make_dirs(cdir) != 0) {
                free(cdir);
                free(sdir);
                free(img.data);
                free(out.data);
                return EXIT_RUNTIME;
            }
            for (long i = 0; i < count; i++) {
                render(&pat[k], &ref, k, s == 0 ? BM_TRAIN : BM_TEST, i, (uint64_t)seed,
                       (int)channels, (int)bits, img.data);
                crop_or_pad(&img, &out);
                char file[64], err[256];
                snprintf(file, sizeof file, "%04ld.%s", i, ext);
                char *path = path_join(cdir, file);
                int rc = png ? image_write_png(path, &out, (int)bits, err, sizeof err)
                             : image_write_tiff(path, &out, (int)bits, layout, err, sizeof err);
                free(path);
                if (rc != 0) {
                    tool_error("%s", err);
                    free(cdir);
                    free(sdir);
                    free(img.data);
                    free(out.data);
                    return EXIT_RUNTIME;
                }
                written++;
            }
            free(cdir);
        }
        free(sdir);
    }
    free(img.data);
    free(out.data);
    tool_info("wrote %lld images (%ld classes, %ld training + %ld test per class, %ldx%d %ld-bit "
              "%s, %ld channel%s) to %s", (long long)written, classes, per, test, size,
              (int)size, bits, png ? "PNG" : "TIFF", channels, channels == 1 ? "" : "s", dir);
    return EXIT_OK;
}
