/* `cfnet synth DIR`: the project's synthetic biomarker images (examples/common/biomarker.c,
 * docs/biomarker.md) as a class-folder dataset of image files. */
#define _GNU_SOURCE
#include "tool.h"

#include "biomarker.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char synth_help[] =
    "Usage: cfnet synth DIR [options]\n"
    "Writes the synthetic biomarker images (docs/biomarker.md) as a dataset with one folder per\n"
    "class: DIR/train/<class>/NNNN.tif and DIR/test/<class>/NNNN.tif. DIR must be new or\n"
    "empty; it is written whole or not at all.\n"
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
    "  --fields M           fields of view instead of single-cell images, for `cfnet crop`: M\n"
    "                       cells (1..64) per field, placed apart, as DIR/SPLIT/<class>/\n"
    "                       field_NNN.tif and their 16-bit label masks field_NNN_mask.tif\n"
    "                       (0 background; cell i of a field is label i and the field's image\n"
    "                       NNN x M + i - 1 without --fields, within a disc of radius 25; at 8\n"
    "                       bits its pixels of value 0 are 1, so that no cell pixel is 0)\n"
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

/* ---- --fields: cells placed apart in fields of view, with their label masks ------------------ */

#define FIELD_PITCH 58  /* slot side: a 50 x 50 cell and up to 5 px of jitter, 3 px apart */
#define FIELD_MARGIN 16 /* border: crop's default 64 x 64 window fits around every cell */
#define FIELD_RADIUS 25 /* a cell is its image within this radius of the image's centre */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Slots per side of a field of m cells: one more than a square of them needs, so that where
 * the cells lie varies. */
static int field_grid(int m)
{
    int g = 1;
    while (g * g < m) g++;
    return g + 1;
}

/* Cells first .. first + n - 1 of class k into one field and its mask (cell j: label j + 1),
 * in slots drawn from the seeds among the field's field_grid(M) squared (a last field of fewer
 * cells spreads them over the same field); tile: scratch of 2 x 50 x 50. */
static void render_field(const bm_class *pat, const bm_class *ref, int k, bm_split split,
                         int64_t first, int n, int64_t field_index, uint64_t seed, int channels,
                         int bits, float *tile, tool_image *field, tool_image *mask)
{
    const int W = field->width, g = (W - 2 * FIELD_MARGIN) / FIELD_PITCH, P = BM_SIZE * BM_SIZE;
    memset(field->data, 0, sizeof(float) * (size_t)channels * W * W);
    memset(mask->data, 0, sizeof(float) * (size_t)W * W);
    uint64_t st = seed ^ ((uint64_t)split << 56) ^ ((uint64_t)k << 40) ^ (uint64_t)field_index;
    splitmix(&st);
    int slot[128]; /* g <= 9 for m <= 64 */
    for (int i = 0; i < g * g; i++) slot[i] = i;
    for (int j = 0; j < n; j++) {
        int pick = j + (int)(splitmix(&st) % (uint64_t)(g * g - j)), t = slot[j];
        slot[j] = slot[pick];
        slot[pick] = t;
        const int top = FIELD_MARGIN + (slot[j] / g) * FIELD_PITCH + (int)(splitmix(&st) % 6);
        const int left = FIELD_MARGIN + (slot[j] % g) * FIELD_PITCH + (int)(splitmix(&st) % 6);
        render(pat, ref, k, split, first + j, seed, channels, bits, tile);
        const double ctr = (BM_SIZE - 1) / 2.0;
        for (int y = 0; y < BM_SIZE; y++)
            for (int x = 0; x < BM_SIZE; x++) {
                if ((y - ctr) * (y - ctr) + (x - ctr) * (x - ctr) > FIELD_RADIUS * FIELD_RADIUS)
                    continue;
                const int64_t q = (int64_t)(top + y) * W + left + x;
                mask->data[q] = (float)(j + 1);
                /* a cell's pixel is never 0, so that the field's nonzero pixels are exactly the
                 * mask's: at 8 bits the dim ones (255 x intensity below 1) would round to 0 and
                 * be background to anyone thresholding the field (16 bits: at least 100) */
                for (int c = 0; c < channels; c++) {
                    float v = tile[c * P + y * BM_SIZE + x];
                    field->data[(int64_t)c * W * W + q] = bits == 8 && v < 1.0f ? 1.0f : v;
                }
            }
    }
}

/* `im` as DIR/FILE at `bits` per sample: 0, or -1 after saying why. */
static int write_image(const char *dir, const char *file, const tool_image *im, int bits, int png,
                       tiff_layout layout)
{
    char err[256], *path = path_join(dir, file);
    int rc = png ? image_write_png(path, im, bits, err, sizeof err)
                 : image_write_tiff(path, im, bits, layout, err, sizeof err);
    free(path);
    if (rc != 0) tool_error("%s", err);
    return rc;
}

int cmd_synth(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"classes", required_argument, 0, 'k'},     {"per-class", required_argument, 0, 'n'},
        {"test-per-class", required_argument, 0, 't'}, {"channels", required_argument, 0, 'c'},
        {"format", required_argument, 0, 'f'},      {"bits", required_argument, 0, 'b'},
        {"layout", required_argument, 0, 'l'},      {"seed", required_argument, 0, 's'},
        {"pattern-seed", required_argument, 0, 'p'}, {"quiet", no_argument, 0, 'q'},
        {"size", required_argument, 0, 'S'},         {"fields", required_argument, 0, 'F'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    long classes = 10, per = 50, test = 50, channels = 2, bits = 16, seed = 1, pseed = BM_PATTERN_SEED;
    long size = BM_SIZE, fields = 0;
    int size_given = 0;
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
        case 'S': u = opt_long("synth", "--size", optarg, 8, 1024, NULL, &size); size_given = 1; break;
        case 'F': u = opt_long("synth", "--fields", optarg, 1, 64, NULL, &fields); break;
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
    if (fields && size_given)
        return tool_usage_error("synth", "--size is for single-cell images; with --fields the "
                                         "cells are 50x50 (crop's --size sets the crops' side)");
    const char *dir = argv[optind];
    if (!dir[0]) return tool_usage_error("synth", "DIR is empty");
    /* A new or empty folder only: class folders written into an existing dataset would become
     * classes of it, and files of an earlier run with other counts would stay behind. Written
     * whole or not at all: into a staging folder beside DIR, renamed into its place at the end
     * (a run that fails midway, a full disk, left a partial dataset that train reads). */
    /* its refusals: errors (status 1), as synth has always said them */
    static const tool_stage_how how = {"synth", "", "synth writes a dataset into", NULL, 2};
    tool_stage st;
    int u = stage_open(&st, &how, dir);
    if (u) return u;
    /* (the patterns on the heap: a table of all 50 took the frame over the 16 KiB that the
     * library's functions, and the command's, keep to) */
    bm_class *pat = xmalloc(sizeof *pat * (size_t)classes), ref;
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
    int64_t written = 0, nfields = 0;
    const int FW = fields ? FIELD_MARGIN * 2 + field_grid((int)fields) * FIELD_PITCH : 0;
    tool_image field = {(int)channels, FW, FW, fields ? xmalloc(sizeof(float) * 2 * (size_t)FW * FW) : NULL};
    tool_image mask = {1, FW, FW, fields ? xmalloc(sizeof(float) * (size_t)FW * FW) : NULL};
    int failed = 0;
    for (int s = 0; s < 2 && !failed; s++) {
        long count = s == 0 ? per : test;
        if (count == 0) continue;
        char *sdir = path_join(st.path, s == 0 ? "train" : "test");
        for (int k = 0; k < classes && !failed; k++) {
            char name[32];
            snprintf(name, sizeof name, "class%02d", k);
            char *cdir = path_join(sdir, name);
            failed = make_dirs(cdir, NULL, NULL) != 0;
            for (long i = 0; !failed && fields && i < count; i += fields) {
                if ((failed = tool_interrupted)) break;
                const int n = (int)(count - i < fields ? count - i : fields);
                render_field(&pat[k], &ref, k, s == 0 ? BM_TRAIN : BM_TEST, i, n, i / fields,
                             (uint64_t)seed, (int)channels, (int)bits, img.data, &field, &mask);
                char file[64];
                for (int w = 0; w < 2 && !failed; w++) {
                    snprintf(file, sizeof file, "field_%03ld%s.%s", i / fields, w ? "_mask" : "", ext);
                    failed = write_image(cdir, file, w ? &mask : &field, w ? 16 : (int)bits, png,
                                         w ? TIFF_PAGES : layout) != 0;
                }
                nfields += !failed;
                written += failed ? 0 : n;
            }
            for (long i = 0; !failed && !fields && i < count; i++) {
                if ((failed = tool_interrupted)) break;
                render(&pat[k], &ref, k, s == 0 ? BM_TRAIN : BM_TEST, i, (uint64_t)seed,
                       (int)channels, (int)bits, img.data);
                crop_or_pad(&img, &out);
                char file[64];
                snprintf(file, sizeof file, "%04ld.%s", i, ext);
                failed = write_image(cdir, file, &out, (int)bits, png, layout) != 0;
                written += !failed;
            }
            free(cdir);
        }
        free(sdir);
    }
    free(img.data);
    free(out.data);
    free(field.data);
    free(mask.data);
    free(pat);
    if (!failed && stage_commit(&st, dir, "the dataset") != 0) failed = 1;
    stage_close(&st);
    if (failed) {
        if (tool_interrupted) {
            tool_error("interrupted; nothing written to %s", dir);
            return 130;
        }
        tool_error("nothing written to %s", dir);
        return EXIT_RUNTIME;
    }
    if (fields) {
        tool_info("wrote %lld fields of view of up to %ld cells (%lld cells: %ld classes, %ld "
                  "training + %ld test per class, %dx%d %ld-bit %s, %ld channel%s, and their "
                  "16-bit label masks) to %s", (long long)nfields, fields, (long long)written,
                  classes, per, test, FW, FW, bits, png ? "PNG" : "TIFF", channels,
                  channels == 1 ? "" : "s", dir);
        return EXIT_OK;
    }
    tool_info("wrote %lld images (%ld classes, %ld training + %ld test per class, %ldx%d %ld-bit "
              "%s, %ld channel%s) to %s", (long long)written, classes, per, test, size,
              (int)size, bits, png ? "PNG" : "TIFF", channels, channels == 1 ? "" : "s", dir);
    return EXIT_OK;
}
