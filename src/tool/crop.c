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
#include <math.h>
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

/* The cells of a mask as its rows come: an open-addressed table on the label value, so that
 * memory follows the number of cells, not the largest label (a mask of three cells labelled up
 * to 4000000000 stays small). Past CROP_MAX_CELLS labels `over` is set and rows are no longer
 * counted (the caller reads the rest of the mask for its errors, then refuses it). */
typedef struct cell_table {
    crop_cell *t;
    int64_t cap, used;
    int over;
} cell_table;

static int cells_init(cell_table *ct, char *err, size_t errsize)
{
    ct->cap = 1024;
    ct->used = 0;
    ct->over = 0;
    ct->t = calloc((size_t)ct->cap, sizeof *ct->t);
    if (!ct->t) snprintf(err, errsize, "out of memory");
    return ct->t ? 0 : -1;
}

static const char too_many_labels[] = "more than %lld distinct labels (is it a label mask? an "
                                      "intensity image has one label per value)";

/* Row y of the mask (W labels). 0, or -1 with err (out of memory; the table is freed). */
static int cells_add_row(cell_table *ct, const uint32_t *row, int W, int64_t y, char *err,
                         size_t errsize)
{
    if (ct->over) return 0;
    uint32_t last = 0;
    crop_cell *hit = NULL, *t = ct->t;
    int64_t cap = ct->cap, used = ct->used;
    for (int64_t x = 0; x < W; x++) {
        uint32_t v = row[x];
        if (v == 0) continue;
        if (!hit || v != last) { /* runs of one label along a row skip the lookup */
            if (2 * (used + 1) > cap) {
                int64_t ncap = cap * 2;
                crop_cell *nt = calloc((size_t)ncap, sizeof *nt);
                if (!nt) {
                    free(t);
                    ct->t = NULL;
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
                    ct->over = 1;
                    break;
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
    ct->t = t;
    ct->cap = cap;
    ct->used = used;
    return 0;
}

/* The table's cells sorted by label, into *cells (the table's memory) and *n. */
static void cells_finish(cell_table *ct, crop_cell **cells, int64_t *n)
{
    int64_t k = 0;
    for (int64_t j = 0; j < ct->cap; j++)
        if (ct->t[j].label) ct->t[k++] = ct->t[j];
    qsort(ct->t, (size_t)k, sizeof *ct->t, cmp_cell);
    *cells = ct->t;
    *n = k;
    ct->t = NULL;
}

int crop_find_cells(const tool_labels *lab, crop_cell **cells, int64_t *n, char *err,
                    size_t errsize)
{
    *cells = NULL;
    *n = 0;
    cell_table ct;
    if (cells_init(&ct, err, errsize) != 0) return -1;
    for (int64_t y = 0; y < lab->height; y++) {
        if (cells_add_row(&ct, lab->data + y * lab->width, lab->width, y, err, errsize) != 0)
            return -1;
        if (ct.over) {
            free(ct.t);
            snprintf(err, errsize, too_many_labels, (long long)CROP_MAX_CELLS);
            return -1;
        }
    }
    cells_finish(&ct, cells, n);
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

/* The window at (top, left) of an image of C channels, H x W, of which row fy is at
 * (fy % ring) * row_step, channel c of it c * chan_step further on (the whole field: ring = H;
 * a band of the last `ring` rows read: ring = S), with its mask rows (fy % ring) * W. */
static int extract_rows(const float *data, int64_t row_step, int64_t chan_step,
                        const uint32_t *mask, int ring, int C, int H, int W, uint32_t label,
                        int64_t top, int64_t left, int size, int isolate, float *dst)
{
    const int64_t S2 = (int64_t)size * size;
    int outside = 0;
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            int64_t fy = top + y, fx = left + x;
            int in = fy >= 0 && fy < H && fx >= 0 && fx < W;
            if (!in) outside = 1;
            int64_t r = in ? fy % ring : 0;
            int keep = in && (!isolate || mask[r * W + fx] == label);
            for (int c = 0; c < C; c++)
                dst[c * S2 + (int64_t)y * size + x] =
                    keep ? data[r * row_step + c * chan_step + fx] : 0.0f;
        }
    return outside;
}

int crop_extract(const tool_image *field, const tool_labels *lab, uint32_t label, int64_t top,
                 int64_t left, int size, int isolate, float *dst)
{
    const int H = field->height, W = field->width;
    return extract_rows(field->data, W, (int64_t)H * W, lab ? lab->data : NULL, H,
                        field->channels, H, W, label, top, left, size, isolate, dst);
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

/* Whether any pixel of the S x S window at (top, left) is the cell's, in the band of the last
 * S mask rows (row fy at (fy % S) * W). */
static int window_has_cell(const uint32_t *mband, int H, int W, uint32_t label, int64_t top,
                           int64_t left, int size)
{
    for (int64_t y = top < 0 ? 0 : top; y < top + size && y < H; y++)
        for (int64_t x = left < 0 ? 0 : left; x < left + size && x < W; x++)
            if (mband[(y % size) * W + x] == label) return 1;
    return 0;
}

/* A kept cell's index and the last field row its window needs. */
typedef struct cell_due {
    int64_t i, end;
} cell_due;

static int cmp_due(const void *a, const void *b)
{
    const cell_due *x = a, *y = b;
    return x->end != y->end ? (x->end > y->end) - (x->end < y->end) : (x->i > y->i) - (x->i < y->i);
}

enum { CELL_WRITTEN = 1, CELL_OUTSIDE = 2, CELL_EMPTY = 4 };

/* Whether FIELD and MASK look given the other way round, told only when it is clear: the mask
 * was refused as no label mask (err, or too many labels) yet reads as an image, and the field
 * reads as a label mask whose values look like labels: a background of 0, two or more labels
 * (at most CROP_MAX_CELLS; one alone is a binary image as well) and, where two neighbours
 * along a row are both labelled, nearly always the same label (a cell is a patch of one value;
 * an intensity image varies from pixel to pixel). Anything else (a field that is no label mask, or noisy) is not guessed at. On a yes,
 * *labels is the field's number of labels. */
static int looks_swapped(const char *field_path, const char *mask_path, const char *mask_err,
                         int64_t *labels)
{
    if (mask_err && strncmp(mask_err, "not a label mask", 16) != 0) return 0;
    char err[512];
    tool_rows *r = NULL;
    if (rows_open(mask_path, 0, &r, err, sizeof err) != 0) return 0; /* not even an image */
    rows_close(r);
    r = NULL;
    if (rows_open(field_path, 1, &r, err, sizeof err) != 0) return 0;
    int H = 0, W = 0;
    rows_info(r, NULL, &H, &W, NULL);
    uint32_t *row = malloc(sizeof *row * (size_t)(W > 0 ? W : 1));
    cell_table ct = {NULL, 0, 0, 0};
    int ok = row && cells_init(&ct, err, sizeof err) == 0;
    int64_t zeros = 0, pairs = 0, same = 0;
    for (int y = 0; ok && y < H; y++) {
        if (rows_next(r, NULL, row, err, sizeof err) != 0 ||
            cells_add_row(&ct, row, W, y, err, sizeof err) != 0 || ct.over) {
            ok = 0;
            break;
        }
        for (int x = 0; x < W; x++) {
            zeros += row[x] == 0;
            if (x && row[x] && row[x - 1]) {
                pairs++;
                same += row[x] == row[x - 1];
            }
        }
    }
    rows_close(r);
    free(row);
    int64_t used = ct.t ? ct.used : 0;
    free(ct.t);
    *labels = used;
    /* one label on 0 is as much a thresholded (binary) image as a mask: not clear, not asked */
    return ok && zeros > 0 && used > 1 && pairs > 0 && same * 10 >= pairs * 9;
}

/* The hint added to a refused mask when looks_swapped (allocated), else "". */
static char *swap_hint(const char *field_path, const char *mask_path, const char *mask_err)
{
    int64_t labels = 0;
    if (!looks_swapped(field_path, mask_path, mask_err, &labels)) return xstrdup("");
    return xasprintf("; did you swap FIELD and MASK? %s reads as a label mask (%lld label%s on a "
                     "background of 0) and %s as an image: give the field first, then its mask",
                     field_path, (long long)labels, labels == 1 ? "" : "s", mask_path);
}

/* One FIELD MASK pair into the staging folder; its rows into csv. 0 or -1 (message printed).
 * Two passes over the files, row by row: the mask's cells (areas, centroids), then the field,
 * of which the last S rows are held (and, with --isolate, the mask's), each cell's crop written
 * when the row at the bottom of its window has been read. Memory follows the crop size and the
 * field's width, not its area. */
static int crop_pair(const char *field_path, const char *mask_path, const char *stage,
                     const crop_opts *o, FILE *csv, crop_counts *cnt, tool_progress *pr)
{
    char err[512];
    tool_rows *mr = NULL, *fr = NULL;
    int rc = -1, C = 0, H = 0, W = 0, MH = 0, MW = 0, bits = 0;
    const int S = o->size;
    crop_cell *cells = NULL;
    int64_t n = 0, nkeep = 0;
    float *band = NULL, *buf = NULL;
    uint32_t *lrow = NULL, *mband = NULL;
    unsigned char *state = NULL;
    cell_due *due = NULL;
    cell_table ct = {NULL, 0, 0, 0};
    char *stem = field_stem(field_path), *qf = csv_quote(field_path), *qm = csv_quote(mask_path);
    /* pass 1: the mask's cells */
    if (rows_open(mask_path, 1, &mr, err, sizeof err) != 0) {
        char *hint = swap_hint(field_path, mask_path, err);
        tool_error("%s: %s%s", mask_path, err, hint);
        free(hint);
        goto out;
    }
    rows_info(mr, NULL, &MH, &MW, NULL);
    lrow = malloc(sizeof *lrow * (size_t)MW);
    if (!lrow || cells_init(&ct, err, sizeof err) != 0) {
        tool_error("%s: out of memory", mask_path);
        goto out;
    }
    for (int y = 0; y < MH; y++) {
        if (tool_interrupted) goto out;
        if (rows_next(mr, NULL, lrow, err, sizeof err) != 0 ||
            cells_add_row(&ct, lrow, MW, y, err, sizeof err) != 0) {
            rows_close(mr);
            mr = NULL;
            char *hint = swap_hint(field_path, mask_path, err);
            tool_error("%s: %s%s", mask_path, err, hint);
            free(hint);
            goto out;
        }
    }
    rows_close(mr);
    mr = NULL;
    if (rows_open(field_path, 0, &fr, err, sizeof err) != 0) {
        tool_error("%s: %s", field_path, err);
        goto out;
    }
    rows_info(fr, &C, &H, &W, &bits);
    if (H != MH || W != MW) {
        tool_error("%s is %dx%d but its mask %s is %dx%d (width x height); a mask must be the "
                   "segmentation of its field, pixel for pixel", field_path, W, H, mask_path, MW,
                   MH);
        goto out;
    }
    if (ct.over) {
        rows_close(fr);
        fr = NULL;
        char *hint = swap_hint(field_path, mask_path, NULL);
        tool_error("%s: more than %lld distinct labels (is it a label mask? an intensity image "
                   "has one label per value)%s", mask_path, (long long)CROP_MAX_CELLS, hint);
        free(hint);
        goto out;
    }
    cells_finish(&ct, &cells, &n);
    if (n == 0) {
        tool_error("%s: no cells (every label is 0, background)", mask_path);
        goto out;
    }
    /* A binary (foreground) mask, as a threshold or a pixel classifier writes it, is one label
     * over all the cells: it would give one crop at the centroid of them all, silently. */
    if (n == 1 && cells[0].area > (int64_t)S * S) {
        progress_erase(pr);
        tool_warn("%s: one label only (%u), of %lld pixels, more than a %dx%d crop holds: if "
                  "this is a binary (foreground) mask, give each cell its own label first "
                  "(scipy.ndimage.label; Fiji: Analyze Particles, Show: Count Masks)", mask_path,
                  cells[0].label, (long long)cells[0].area, S, S);
    }
    /* the cells kept, by the row that completes their window; the labels in the names
     * zero-padded to the digits of the field's largest kept one, so that the crops of a field
     * sort by label (f_02 before f_10) */
    state = calloc((size_t)n, 1);
    due = malloc(sizeof *due * (size_t)n);
    if (!state || !due) {
        tool_error("%s: out of memory (%lld cells)", mask_path, (long long)n);
        goto out;
    }
    uint32_t largest = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t top, left;
        crop_window(&cells[i], S, &top, &left);
        int outside = top < 0 || left < 0 || top + S > H || left + S > W;
        if (cells[i].area < o->min_area) {
            cnt->small++;
        } else if (outside && !o->pad) {
            cnt->edge++;
        } else {
            largest = cells[i].label;
            int64_t end = top + S - 1 < H ? top + S - 1 : H - 1;
            due[nkeep++] = (cell_due){i, end < 0 ? 0 : end};
        }
    }
    qsort(due, (size_t)nkeep, sizeof *due, cmp_due);
    int digits = snprintf(NULL, 0, "%u", largest);
    /* the last S rows of the field (and of the mask, for --isolate): row y at y % S */
    const int64_t rowvals = (int64_t)C * W;
    if (rowvals * S > ((int64_t)1 << 33) ||
        !(band = malloc(sizeof(float) * (size_t)(rowvals * S))) ||
        !(buf = malloc(sizeof(float) * (size_t)C * S * S)) ||
        (o->isolate && !(mband = malloc(sizeof *mband * (size_t)W * S)))) {
        tool_error("%s: out of memory for %d rows of %d pixels in %d channel%s (--size %d)",
                   field_path, S, W, C, C == 1 ? "" : "s", S);
        goto out;
    }
    if (o->isolate && rows_open(mask_path, 1, &mr, err, sizeof err) != 0) {
        tool_error("%s: %s", mask_path, err);
        goto out;
    }
    if (mr) { /* read a second time: another program may have replaced it meanwhile */
        int h2 = 0, w2 = 0;
        rows_info(mr, NULL, &h2, &w2, NULL);
        if (h2 != MH || w2 != MW) {
            tool_error("%s: changed while crop read it (%dx%d, then %dx%d)", mask_path, MW, MH,
                       w2, h2);
            goto out;
        }
    }
    tool_image crop = {C, S, S, buf};
    /* float fields marking masked pixels as NaN are refused whole, as image_read refuses
     * them: the rest is read to count them */
    int64_t nans = 0, infs = 0, first_row = -1, first_col = 0, first_ch = 0;
    int64_t k = 0;
    for (int y = 0; y < H; y++) {
        if (tool_interrupted) goto out;
        float *row = band + (int64_t)(y % S) * rowvals;
        if (rows_next(fr, row, NULL, err, sizeof err) != 0) {
            tool_error("%s: %s", field_path, err);
            goto out;
        }
        if (mr && rows_next(mr, NULL, mband + (int64_t)(y % S) * W, err, sizeof err) != 0) {
            tool_error("%s: %s", mask_path, err);
            goto out;
        }
        if (bits == 32)
            for (int64_t v = 0; v < rowvals; v++)
                if (!isfinite(row[v])) {
                    /* the first in channel order, as image_read counts them */
                    if (first_row < 0 || v / W < first_ch) {
                        first_row = y;
                        first_ch = v / W;
                        first_col = v % W;
                    }
                    if (isnan(row[v])) nans++;
                    else infs++;
                }
        if (first_row >= 0) continue;
        for (; k < nkeep && due[k].end == y; k++) {
            const crop_cell *c = &cells[due[k].i];
            int64_t top, left;
            crop_window(c, S, &top, &left);
            int outside = extract_rows(band, rowvals, W, mband, S, C, H, W, c->label, top, left,
                                       S, o->isolate, buf);
            state[due[k].i] = CELL_WRITTEN | (outside ? CELL_OUTSIDE : 0);
            if (o->isolate && !window_has_cell(mband, H, W, c->label, top, left, S))
                state[due[k].i] |= CELL_EMPTY;
            char name[64];
            snprintf(name, sizeof name, "_%0*u.tif", digits, c->label);
            char *file = xasprintf("%s%s", stem, name);
            char *path = path_join(stage, file);
            int w = image_write_tiff(path, &crop, bits, TIFF_PAGES, err, sizeof err);
            free(path);
            free(file);
            if (w != 0) {
                tool_error("%s (writing the crop of cell %u of %s)", err, c->label, field_path);
                goto out;
            }
            cnt->written++;
            cnt->padded += outside;
            progress_tick(pr, "crop: %lld cells", (long long)cnt->written);
        }
    }
    if (first_row >= 0) {
        tool_error("%s: non-finite values: %lld NaN and %lld infinite of %lld (the first in "
                   "channel %lld at row %lld, column %lld); replace them with numbers (masked "
                   "background: 0) or leave the file out", field_path, (long long)nans,
                   (long long)infs, (long long)(rowvals * H), (long long)(first_ch + 1),
                   (long long)first_row, (long long)first_col);
        goto out;
    }
    /* the table in label order; --isolate: cells in pieces far apart, their centroid between
     * them, whose crop holds none of their pixels (all zeros): counted, one warning */
    int64_t empty = 0;
    uint32_t first_empty = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!(state[i] & CELL_WRITTEN)) continue;
        const crop_cell *c = &cells[i];
        if ((state[i] & CELL_EMPTY) && empty++ == 0) first_empty = c->label;
        int64_t top, left;
        crop_window(c, S, &top, &left);
        char name[64];
        snprintf(name, sizeof name, "_%0*u.tif", digits, c->label);
        char *file = xasprintf("%s%s", stem, name);
        char *qfile = csv_quote(file);
        fprintf(csv, "%s,%s,%s,%u,%.3f,%.3f,%lld,%lld,%lld,%d\n", qfile, qf, qm, c->label,
                (double)c->sum_x / (double)c->area, (double)c->sum_y / (double)c->area,
                (long long)c->area, (long long)left, (long long)top,
                (state[i] & CELL_OUTSIDE) ? 1 : 0);
        free(qfile);
        free(file);
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
    rows_close(mr);
    rows_close(fr);
    free(ct.t);
    free(lrow);
    free(band);
    free(mband);
    free(buf);
    free(state);
    free(due);
    free(cells);
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
    /* DIR: a new or empty folder, written whole or not at all through a staging folder; its
     * refusals are usage errors of crop that name --output, as crop's other refusals of it */
    static const tool_stage_how how = {"crop", "--output: ", "crop writes into", "crop", 0};
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
