/* `cfnet crop FIELD MASK... -o DIR`: one image per cell from fields of view and their label masks
 * (a segmentation: 0 background, one positive label per cell), the crops `cfnet` trains on and
 * classifies, with a table that joins them back to the segmentation. */
#define _GNU_SOURCE
#include "tool.h"

#include "platform/platform.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char crop_help[] =
    "Usage: cfnet crop FIELD MASK [FIELD MASK...] -o DIR [options]\n"
    "Writes one SxS image per cell of each field of view: MASK is its segmentation (a label\n"
    "image of the field's size: 0 background, one positive label per cell; 8/16/32-bit integer\n"
    "TIFF, signed or not, or a grey PNG). The crop is centred on the cell's centroid, holds\n"
    "every channel of FIELD with its values and sample type, and is written as\n"
    "DIR/STEM_LABEL.tif (STEM: FIELD's name without its extension; LABEL zero-padded to the\n"
    "digits of the field's largest label written, so that names sort by label); DIR/cells.csv\n"
    "lists path,field,mask,label,x,y,area,left,top,padded for each crop. DIR must be new or\n"
    "empty; it is written whole or not at all.\n"
    "\n"
    "Options:\n"
    "  -o, --output DIR     the folder of crops (new or empty; its parents are made)\n"
    "  --size S             crop side, 4..4096 (default 64)\n"
    "  --pad                zero-pad the crops of cells near the border (default: leave those\n"
    "                       cells out and count them)\n"
    "  --isolate            set every pixel of the crop that is not the cell's (background,\n"
    "                       other cells) to 0\n"
    "  --min-area A         leave out cells of fewer than A pixels (default 1)\n"
    "  -q, --quiet          no summary line\n"
    "  -h, --help           this help\n";

/* Most distinct labels in one mask (a file each): more is an intensity image, not a mask. */
#define CROP_MAX_CELLS ((int64_t)1 << 20)

/* ---- the core (unit-tested in tests/test_tool_image.c) ---------------------------------------- */

static uint64_t label_hash(uint32_t v)
{
    uint64_t h = (uint64_t)v * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}

static int cmp_cell(const void *a, const void *b)
{
    uint32_t x = ((const crop_cell *)a)->label, y = ((const crop_cell *)b)->label;
    return x < y ? -1 : x > y;
}

int crop_find_cells(const tool_labels *lab, crop_cell **cells, int64_t *n, char *err,
                    size_t errsize)
{
    *cells = NULL;
    *n = 0;
    /* open addressing on the label value: memory follows the number of cells, not the
     * largest label (a mask of three cells labelled up to 4000000000 stays small) */
    int64_t cap = 1024, used = 0;
    crop_cell *t = calloc((size_t)cap, sizeof *t);
    if (!t) {
        snprintf(err, errsize, "out of memory");
        return -1;
    }
    const int W = lab->width;
    const int64_t N = (int64_t)lab->height * W;
    uint32_t last = 0;
    crop_cell *hit = NULL;
    for (int64_t i = 0; i < N; i++) {
        uint32_t v = lab->data[i];
        if (v == 0) continue;
        const int64_t y = i / W, x = i - y * W;
        if (!hit || v != last) { /* runs of one label along a row skip the lookup */
            if (2 * (used + 1) > cap) {
                int64_t ncap = cap * 2;
                crop_cell *nt = calloc((size_t)ncap, sizeof *nt);
                if (!nt) {
                    free(t);
                    snprintf(err, errsize, "out of memory (%lld labels)", (long long)used);
                    return -1;
                }
                for (int64_t k = 0; k < cap; k++) {
                    if (!t[k].label) continue;
                    uint64_t j = label_hash(t[k].label) & (uint64_t)(ncap - 1);
                    while (nt[j].label) j = (j + 1) & (uint64_t)(ncap - 1);
                    nt[j] = t[k];
                }
                free(t);
                t = nt;
                cap = ncap;
            }
            uint64_t j = label_hash(v) & (uint64_t)(cap - 1);
            while (t[j].label && t[j].label != v) j = (j + 1) & (uint64_t)(cap - 1);
            if (!t[j].label) {
                if (used == CROP_MAX_CELLS) {
                    free(t);
                    snprintf(err, errsize, "more than %lld distinct labels (is it a label mask? "
                             "an intensity image has one label per value)",
                             (long long)CROP_MAX_CELLS);
                    return -1;
                }
                t[j].label = v;
                used++;
            }
            hit = &t[j];
            last = v;
        }
        hit->area++;
        hit->sum_x += x;
        hit->sum_y += y;
    }
    int64_t k = 0;
    for (int64_t j = 0; j < cap; j++)
        if (t[j].label) t[k++] = t[j];
    qsort(t, (size_t)k, sizeof *t, cmp_cell);
    *cells = t;
    *n = k;
    return 0;
}

/* floor(a / b) for b > 0 */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return q * b > a ? q - 1 : q;
}

void crop_window(const crop_cell *c, int size, int64_t *top, int64_t *left)
{
    /* the window whose centre, first + (S - 1)/2, is nearest to the centroid sum/area, a tie
     * going to the larger index: first = floor(sum/area - (S - 1)/2 + 1/2), exactly */
    *top = floor_div(2 * c->sum_y + c->area * (2 - size), 2 * c->area);
    *left = floor_div(2 * c->sum_x + c->area * (2 - size), 2 * c->area);
}

int crop_extract(const tool_image *field, const tool_labels *lab, uint32_t label, int64_t top,
                 int64_t left, int size, int isolate, float *dst)
{
    const int H = field->height, W = field->width;
    const int64_t plane = (int64_t)H * W, S2 = (int64_t)size * size;
    int outside = 0;
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            int64_t fy = top + y, fx = left + x;
            int in = fy >= 0 && fy < H && fx >= 0 && fx < W;
            if (!in) outside = 1;
            int keep = in && (!isolate || lab->data[fy * W + fx] == label);
            for (int c = 0; c < field->channels; c++)
                dst[c * S2 + (int64_t)y * size + x] =
                    keep ? field->data[c * plane + fy * W + fx] : 0.0f;
        }
    return outside;
}

/* ---- the command ------------------------------------------------------------------------------ */

/* FIELD's name without its folder and extension. */
static char *field_stem(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    return xasprintf("%.*s", (int)n, base);
}

/* A field's stem and its pair's index, sorted by stem then index. */
typedef struct stem_at {
    char *stem;
    int i;
} stem_at;

static int cmp_stem_at(const void *a, const void *b)
{
    const stem_at *x = a, *y = b;
    int c = strcmp(x->stem, y->stem);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

typedef struct crop_opts {
    int size, pad, isolate;
    long min_area;
} crop_opts;

typedef struct crop_counts {
    int64_t written, edge, small, padded;
} crop_counts;

/* Whether any pixel of the S x S window at (top, left) is the cell's. */
static int window_has_cell(const tool_labels *lab, uint32_t label, int64_t top, int64_t left,
                           int size)
{
    for (int64_t y = top < 0 ? 0 : top; y < top + size && y < lab->height; y++)
        for (int64_t x = left < 0 ? 0 : left; x < left + size && x < lab->width; x++)
            if (lab->data[y * lab->width + x] == label) return 1;
    return 0;
}

/* One FIELD MASK pair into the staging folder; its rows into csv. 0 or -1 (message printed). */
static int crop_pair(const char *field_path, const char *mask_path, const char *stage,
                     const crop_opts *o, FILE *csv, crop_counts *cnt, tool_progress *pr)
{
    char err[512];
    tool_labels lab;
    tool_image img;
    int bits = 0, rc = -1;
    crop_cell *cells = NULL;
    int64_t n = 0;
    float *buf = NULL;
    char *stem = field_stem(field_path), *qf = csv_quote(field_path), *qm = csv_quote(mask_path);
    memset(&img, 0, sizeof img);
    if (labels_read(mask_path, &lab, err, sizeof err) != 0) {
        tool_error("%s: %s", mask_path, err);
        free(stem);
        free(qf);
        free(qm);
        return -1;
    }
    if (image_read_bits(field_path, &img, &bits, err, sizeof err) != 0) {
        tool_error("%s: %s", field_path, err);
        goto out;
    }
    if (img.height != lab.height || img.width != lab.width) {
        tool_error("%s is %dx%d but its mask %s is %dx%d (width x height); a mask must be the "
                   "segmentation of its field, pixel for pixel", field_path, img.width,
                   img.height, mask_path, lab.width, lab.height);
        goto out;
    }
    if (crop_find_cells(&lab, &cells, &n, err, sizeof err) != 0) {
        tool_error("%s: %s", mask_path, err);
        goto out;
    }
    if (n == 0) {
        tool_error("%s: no cells (every label is 0, background)", mask_path);
        goto out;
    }
    const int S = o->size;
    /* A binary (foreground) mask, as a threshold or a pixel classifier writes it, is one label
     * over all the cells: it would give one crop at the centroid of them all, silently. */
    if (n == 1 && cells[0].area > (int64_t)S * S) {
        progress_erase(pr);
        tool_warn("%s: one label only (%u), of %lld pixels, more than a %dx%d crop holds: if "
                  "this is a binary (foreground) mask, give each cell its own label first "
                  "(scipy.ndimage.label; Fiji: Analyze Particles, Show: Count Masks)", mask_path,
                  cells[0].label, (long long)cells[0].area, S, S);
    }
    buf = xmalloc(sizeof(float) * (size_t)img.channels * S * S);
    tool_image crop = {img.channels, S, S, buf};
    /* --isolate: cells in pieces far apart, their centroid between them, whose crop holds none
     * of their pixels (all zeros): counted, one warning for the field */
    int64_t empty = 0;
    uint32_t first_empty = 0;
    /* the labels in the names zero-padded to the digits of the field's largest kept one, so
     * that the crops of a field sort by label (f_02 before f_10) */
    uint32_t largest = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t top, left;
        crop_window(&cells[i], S, &top, &left);
        if (cells[i].area >= o->min_area &&
            (o->pad || (top >= 0 && left >= 0 && top + S <= img.height && left + S <= img.width)))
            largest = cells[i].label;
    }
    int digits = snprintf(NULL, 0, "%u", largest);
    for (int64_t i = 0; i < n; i++) {
        if (tool_interrupted) goto out;
        const crop_cell *c = &cells[i];
        if (c->area < o->min_area) {
            cnt->small++;
            continue;
        }
        int64_t top, left;
        crop_window(c, S, &top, &left);
        int outside = top < 0 || left < 0 || top + S > img.height || left + S > img.width;
        if (outside && !o->pad) {
            cnt->edge++;
            continue;
        }
        crop_extract(&img, &lab, c->label, top, left, S, o->isolate, buf);
        if (o->isolate && !window_has_cell(&lab, c->label, top, left, S) && empty++ == 0)
            first_empty = c->label;
        char name[64];
        snprintf(name, sizeof name, "_%0*u.tif", digits, c->label);
        char *file = xasprintf("%s%s", stem, name);
        char *path = path_join(stage, file);
        int w = image_write_tiff(path, &crop, bits, TIFF_PAGES, err, sizeof err);
        free(path);
        if (w != 0) {
            tool_error("%s (writing the crop of cell %u of %s)", err, c->label, field_path);
            free(file);
            goto out;
        }
        char *qfile = csv_quote(file);
        fprintf(csv, "%s,%s,%s,%u,%.3f,%.3f,%lld,%lld,%lld,%d\n", qfile, qf, qm, c->label,
                (double)c->sum_x / (double)c->area, (double)c->sum_y / (double)c->area,
                (long long)c->area, (long long)left, (long long)top, outside);
        free(qfile);
        free(file);
        cnt->written++;
        cnt->padded += outside;
        progress_tick(pr, "crop: %lld cells", (long long)cnt->written);
    }
    if (empty) {
        progress_erase(pr);
        tool_warn("%s: %lld cell%s (label %u%s) with none of %s pixels in %s crop (pieces of the "
                  "cell apart, the centroid between them): with --isolate %s all zeros",
                  field_path, (long long)empty, empty == 1 ? "" : "s", first_empty,
                  empty == 1 ? "" : " first", empty == 1 ? "its" : "their",
                  empty == 1 ? "its" : "their", empty == 1 ? "that crop is" : "those crops are");
    }
    rc = 0;
out:
    free(buf);
    free(cells);
    image_free(&img);
    labels_free(&lab);
    free(stem);
    free(qf);
    free(qm);
    return rc;
}

int cmd_crop(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'},   {"size", required_argument, 0, 'S'},
        {"pad", no_argument, 0, 'P'},            {"isolate", no_argument, 0, 'I'},
        {"min-area", required_argument, 0, 'm'}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    crop_opts o = {64, 0, 0, 1};
    const char *dir = NULL;
    int c;
    while ((c = opt_next(argc, argv, ":o:qh", longopts, crop_help)) >= 0) {
        int u = 0;
        switch (c) {
        case 'o': u = opt_path("crop", "--output", optarg, &dir); break;
        case 'S': u = opt_int("crop", "--size", optarg, 4, 4096, NULL, &o.size); break;
        case 'P': o.pad = 1; break;
        case 'I': o.isolate = 1; break;
        case 'm': u = opt_long("crop", "--min-area", optarg, 1, 0x7fffffffL, "a positive integer", &o.min_area); break;
        case 'q': tool_quiet = 1; break;
        default: return opt_error("crop", c, argv);
        }
        if (u) return u;
    }
    if (c == OPT_HELP) return EXIT_OK;
    int npaths = argc - optind;
    if (npaths == 0) return tool_usage_error("crop", "missing FIELD MASK");
    if (npaths % 2)
        return tool_usage_error("crop", "FIELD MASK pairs expected, got %d file%s (the mask of "
                                "'%s' is missing)", npaths, npaths == 1 ? "" : "s", argv[argc - 1]);
    if (!dir) return tool_usage_error("crop", "missing -o DIR");
    char **paths = argv + optind;
    int pairs = npaths / 2;
    /* crops of two fields named alike would overwrite each other: the first field whose name
     * an earlier one has, with that earlier one, found by sorting (thousands of fields of a
     * plate took seconds compared pair by pair) */
    {
        stem_at *st = xmalloc(sizeof *st * (size_t)pairs);
        for (int i = 0; i < pairs; i++) st[i] = (stem_at){field_stem(paths[2 * i]), i};
        qsort(st, (size_t)pairs, sizeof *st, cmp_stem_at);
        int first = -1, later = -1;
        const char *name = NULL;
        for (int k = 1, g = 0; k < pairs; k++) {
            if (strcmp(st[k].stem, st[g].stem) != 0) {
                g = k;
                continue;
            }
            if (later < 0 || st[k].i < later) {
                first = st[g].i;
                later = st[k].i;
                name = st[k].stem;
            }
        }
        int u = later < 0 ? 0
                          : tool_usage_error("crop", "fields '%s' and '%s' have the same name '%s' "
                                             "(their crops would be named alike); crop them into "
                                             "different folders", paths[2 * first],
                                             paths[2 * later], name);
        for (int i = 0; i < pairs; i++) free(st[i].stem);
        free(st);
        if (u) return u;
    }
    /* DIR: a new or empty folder, written whole or not at all through a staging folder */
    static const tool_stage_how how = {"crop", "--output: ", "crop writes into", EXIT_USAGE, 0};
    tool_stage st;
    int u = stage_open(&st, &how, dir);
    if (u) return u;
    const char *stage = st.path;
    int rc = EXIT_RUNTIME;
    crop_counts cnt = {0, 0, 0, 0};
    tool_progress pr;
    progress_init(&pr, stderr);
    char *csv_path = path_join(stage, "cells.csv");
    FILE *csv = fopen(csv_path, "w");
    if (!csv) {
        tool_error("%s: %s", csv_path, strerror(errno));
        goto done;
    }
    fputs("path,field,mask,label,x,y,area,left,top,padded\n", csv);
    for (int i = 0; i < pairs; i++) {
        if (tool_interrupted ||
            crop_pair(paths[2 * i], paths[2 * i + 1], stage, &o, csv, &cnt, &pr) != 0) {
            if (tool_interrupted) {
                progress_erase(&pr);
                tool_error("interrupted; nothing written to %s", dir);
                rc = 130;
            } else {
                tool_error("pair %d of %d failed; nothing written to %s", i + 1, pairs, dir);
            }
            goto done;
        }
    }
    progress_erase(&pr);
    if (cnt.written == 0) {
        tool_error("no crops: %lld cell%s too near the border (--pad keeps them), %lld smaller "
                   "than --min-area; nothing written", (long long)cnt.edge,
                   cnt.edge == 1 ? "" : "s", (long long)cnt.small);
        goto done;
    }
    if (fflush(csv) != 0 || ferror(csv)) {
        tool_error("%s: write failed: %s", csv_path, strerror(errno));
        goto done;
    }
    int cerr = fclose(csv);
    csv = NULL;
    if (cerr != 0) {
        tool_error("%s: write failed: %s", csv_path, strerror(errno));
        goto done;
    }
    if (stage_commit(&st, dir, "the crops") != 0) goto done;
    tool_info("wrote %lld crop%s (%dx%d) of %d field%s to %s; %lld cell%s too near the border %s",
              (long long)cnt.written, cnt.written == 1 ? "" : "s", o.size, o.size, pairs, pairs == 1 ? "" : "s", dir,
              (long long)(o.pad ? cnt.padded : cnt.edge), (o.pad ? cnt.padded : cnt.edge) == 1 ? "" : "s",
              o.pad ? "zero-padded" : "left out (--pad keeps them)");
    if (cnt.small)
        tool_info("%lld cell%s smaller than --min-area %ld left out", (long long)cnt.small,
                  cnt.small == 1 ? "" : "s", o.min_area);
    rc = EXIT_OK;
done:
    if (csv) fclose(csv);
    stage_close(&st);
    free(csv_path);
    return rc;
}
