/* Datasets of the `cfnet` command: class folders, CSV manifests, file lists; normalisation,
 * crop/pad and parallel decoding. */
#define _GNU_SOURCE
#include "tool.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- normalisation and crop/pad ---------------------------------------------------------------- */

void norm_format(const tool_norm *n, char *buf, size_t size)
{
    if (n->percentile)
        snprintf(buf, size, "percentile %.10g %.10g", n->low, n->high);
    else
        snprintf(buf, size, "scale %.10g", n->scale);
}

int norm_parse(const char *s, tool_norm *n)
{
    char extra;
    memset(n, 0, sizeof *n);
    if (sscanf(s, "percentile %lf %lf %c", &n->low, &n->high, &extra) == 2) {
        n->percentile = 1;
        return (n->low >= 0 && n->low < n->high && n->high <= 100) ? 0 : -1;
    }
    if (sscanf(s, "scale %lf %c", &n->scale, &extra) == 1)
        return n->scale >= TOOL_SCALE_MIN && n->scale <= TOOL_SCALE_MAX ? 0 : -1;
    return -1;
}

int image_prepare(tool_image *img, const tool_norm *norm, int size, int pad, float *dst,
                  char *err, size_t errsize)
{
    const int C = img->channels, H = img->height, W = img->width;
    if (!pad && (H < size || W < size)) {
        snprintf(err, errsize, "image is %dx%d, smaller than the input size %d (use --pad to "
                 "zero-pad small images)", W, H, size);
        return -1;
    }
    if (norm->percentile) {
        int64_t shape[4] = {1, C, H, W};
        cfnet_tensor *t = NULL;
        cfnet_status st = cfnet_tensor_wrap(img->data, 4, shape, &t);
        if (st == CFNET_OK) st = cfnet_image_normalize(t, norm->low, norm->high);
        cfnet_tensor_free(t);
        if (st != CFNET_OK) {
            snprintf(err, errsize, "normalisation failed: %s", cfnet_last_error());
            return -1;
        }
    } else {
        int64_t n = (int64_t)C * H * W;
        float s = (float)norm->scale;
        for (int64_t i = 0; i < n; i++) {
            img->data[i] *= s;
            if (!isfinite(img->data[i])) {
                /* A large float value times a large --scale: the network would get infinity. */
                char where[96];
                image_where(img, i, where, sizeof where);
                snprintf(err, errsize, "value in %s overflows float32 when multiplied by the "
                         "scale %.10g", where, norm->scale);
                return -1;
            }
        }
    }
    /* Centre crop (offset floor((H - S) / 2)) or centre pad (offset floor((S - H) / 2)). */
    memset(dst, 0, sizeof(float) * (size_t)C * size * size);
    int oy = (H - size) / 2, ox = (W - size) / 2; /* may be negative: padding */
    for (int c = 0; c < C; c++)
        for (int y = 0; y < size; y++) {
            int sy = y + oy;
            if (sy < 0 || sy >= H) continue;
            for (int x = 0; x < size; x++) {
                int sx = x + ox;
                if (sx < 0 || sx >= W) continue;
                dst[((int64_t)c * size + y) * size + x] = img->data[((int64_t)c * H + sy) * W + sx];
            }
        }
    return 0;
}

int image_prepare_model(const cfnet_network *net, const tool_image *img, int size, int pad,
                        float *dst, char *err, size_t errsize)
{
    const int C = img->channels, H = img->height, W = img->width;
    if (!pad && (H < size || W < size)) {
        /* before the library's own refusal, which names its flag rather than the option */
        snprintf(err, errsize, "image is %dx%d, smaller than the input size %d (use --pad to "
                 "zero-pad small images)", W, H, size);
        return -1;
    }
    int64_t is[3] = {C, H, W}, bs[4] = {1, C, size, size};
    cfnet_tensor *ti = NULL, *tb = NULL;
    cfnet_status st = cfnet_tensor_wrap_const(img->data, 3, is, &ti);
    if (st == CFNET_OK) st = cfnet_tensor_wrap(dst, 4, bs, &tb);
    if (st == CFNET_OK)
        st = cfnet_network_prepare_image(net, ti, pad ? CFNET_PREPARE_PAD : 0, tb, 0);
    cfnet_tensor_free(ti);
    cfnet_tensor_free(tb);
    if (st != CFNET_OK) {
        static const char prefix[] = "network_prepare_image: ";
        const char *m = cfnet_last_error();
        if (!strncmp(m, prefix, sizeof prefix - 1)) m += sizeof prefix - 1;
        snprintf(err, errsize, "%s", m);
        return -1;
    }
    return 0;
}

/* ---- dataset containers ------------------------------------------------------------------------ */

static void ds_add(tool_dataset *ds, char *path, char *label, int split, int line, const char *source)
{
    if (ds->n == ds->cap) {
        ds->cap = ds->cap ? 2 * ds->cap : 256;
        ds->s = xrealloc(ds->s, sizeof *ds->s * (size_t)ds->cap);
    }
    tool_sample *s = &ds->s[ds->n++];
    s->path = path;
    s->label = label;
    s->cls = -1;
    s->split = split;
    s->line = line;
    s->source = xstrdup(source);
    s->bad = 0;
}

void dataset_free(tool_dataset *ds)
{
    for (int64_t i = 0; i < ds->n; i++) {
        free(ds->s[i].path);
        free(ds->s[i].label);
        free(ds->s[i].source);
    }
    free(ds->s);
    for (int k = 0; k < ds->n_classes; k++) free(ds->classes[k]);
    free(ds->classes);
    memset(ds, 0, sizeof *ds);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Entries no dataset holds: hidden ones (".", "..", ".DS_Store", AppleDouble "._x.tif"), the
 * "__MACOSX" folder of resource forks that unzipping an archive made on a Mac leaves beside the
 * data, and the "@eaDir" folder of thumbnails and metadata that a Synology file server puts in
 * every folder of a share; taken as a class or searched, it would add a class or bogus images. */
static int skipped_entry(const char *name)
{
    return name[0] == '.' || !strcmp(name, "__MACOSX") || !strcmp(name, "@eaDir");
}

/* Sorted entries of a directory (hidden entries, __MACOSX and @eaDir skipped). */
static int list_dir(const char *dir, char ***names, int *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        tool_error("%s: cannot open directory: %s", dir, strerror(errno));
        return -1;
    }
    char **v = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (skipped_entry(e->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            v = xrealloc(v, sizeof *v * (size_t)cap);
        }
        v[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_str);
    *names = v;
    *count = n;
    return 0;
}

static void free_names(char **v, int n)
{
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static int class_index(char **classes, int n, const char *name)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(classes[mid], name);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* Collects the distinct labels of ds (sorted) into ds->classes. Only rows of the given split
 * (SPLIT_NONE: all rows except test rows). */
static void collect_classes(tool_dataset *ds)
{
    const char *was = tool_oom_for("the class names");
    char **v = xmalloc(sizeof *v * (size_t)(ds->n ? ds->n : 1));
    int64_t n = 0;
    for (int64_t i = 0; i < ds->n; i++)
        if (ds->s[i].label) v[n++] = ds->s[i].label;
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    ds->classes = xmalloc(sizeof *ds->classes * (size_t)(n ? n : 1));
    ds->n_classes = 0;
    for (int64_t i = 0; i < n; i++)
        if (i == 0 || strcmp(v[i], v[i - 1]) != 0) ds->classes[ds->n_classes++] = xstrdup(v[i]);
    free(v);
    tool_oom_for(was);
}

static int cmp_str_nocase(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    int c = strcasecmp(x, y);
    return c ? c : strcmp(x, y);
}

/* Class names that differ only in case ("RING" and "ring": two folders on a case-sensitive file
 * system, or a label typed two ways in a manifest) are most likely one class spelt twice. They
 * stay two classes (merging would guess, and a model trained so would not match the folders),
 * with one warning per pair. Letters are compared as ASCII (strcasecmp in the C locale, which the
 * command never changes): "Ü" and "ü" are not taken as a pair. */
static void warn_case_twins(const tool_dataset *ds, const char *data)
{
    const int k = ds->n_classes;
    if (k < 2 || tool_mpi_rank() != 0) return; /* every rank reads the same data: said once */
    char **v = xmalloc(sizeof *v * (size_t)k);
    memcpy(v, ds->classes, sizeof *v * (size_t)k);
    qsort(v, (size_t)k, sizeof *v, cmp_str_nocase);
    for (int i = 0; i < k;) {
        int j = i + 1;
        while (j < k && !strcasecmp(v[i], v[j])) j++;
        for (int a = i; a < j; a++)
            for (int b = a + 1; b < j; b++)
                tool_warn("%s: classes '%s' and '%s' differ only in case; they are kept as two "
                          "classes (rename one to merge them)", data, v[a], v[b]);
        i = j;
    }
    free(v);
}

/* A file named as an image of a format the command does not read (a JPEG, a BMP, a
 * microscope's own format): the refusal of a folder holding no .tif/.png but such files tells
 * to convert them; other files (notes.txt, Thumbs.db) are not images to convert. */
static int other_image_extension(const char *path)
{
    static const char *const ext[] = {
        ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".webp", ".jp2", ".j2k",
        ".jpx", ".jpf", ".jxl", ".heic", ".heif", ".avif", ".pgm", ".ppm", ".pbm", ".pnm",
        ".tga", ".psd", ".czi", ".nd2", ".lif", ".lsm", ".ims", ".oib", ".oir", ".vsi", ".dv",
        ".ics", ".btf", ".tf8", ".svs", ".ndpi", ".scn", ".dcm", ".dicom", ".zvi", ".stk", ".oif",
        ".mrxs"};
    const char *slash = strrchr(path, '/'), *dot = strrchr(slash ? slash : path, '.');
    if (!dot) return 0;
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
        if (!strcasecmp(dot, ext[i])) return 1;
    return 0;
}

/* The phrase for the n files not named as images that a folder holds instead of any image
 * (first: the first of them, or NULL), in the refusals that say so: how to convert them when
 * some (nimg) are named as images of other formats, else that they are not images (a heap
 * string) */
static char *other_files_phrase(long long n, long long nimg, const char *first)
{
    return xasprintf("%lld other file%s%s%s%s%s", n, n == 1 ? "" : "s",
                     first ? " (the first: " : "", first ? first : "", first ? ")" : "",
                     nimg ? "; convert images of other formats to TIFF or PNG (e.g. in Fiji)"
                          : n == 1 ? ", not an image" : ", none of them an image");
}


/* A dataset row's file or a class folder (device and inode), for finding two rows that name the
 * same file. */
typedef struct row_file {
    dev_t dev;
    ino_t ino;
    int64_t row;
} row_file;

static int check_duplicates(const tool_dataset *ds, const char *csv, int labels_required);

static int open_class_folders(const char *dir, tool_dataset *ds, tool_progress *pr,
                              const char *cmd)
{
    char **names;
    int n;
    if (list_dir(dir, &names, &n) != 0) return -1;
    int classes = 0, ignored = 0, subdirs = 0, rc = 0;
    char *first_ignored = NULL, *first_subdir = NULL; /* named in the messages that count them */
    /* the class folders read so far (device, inode, entry): a link to a class folder beside it
     * would be a second class of the same images */
    row_file *folders = xmalloc(sizeof *folders * (size_t)(n ? n : 1));
    for (int i = 0; i < n && rc == 0; i++) {
        char *sub = path_join(dir, names[i]);
        struct stat fst, lst;
        folders[classes].row = -1; /* a folder that cannot be stat'ed is not compared */
        const int e = stat(sub, &fst) != 0 ? errno : 0;
        if (e && lstat(sub, &lst) == 0 && S_ISLNK(lst.st_mode)) {
            /* most likely a class folder kept elsewhere (a share that is not mounted, a moved
             * folder): left out as "not an image", the class would be missing from the model
             * without a word */
            char target[1024];
            ssize_t len = readlink(sub, target, sizeof target - 1);
            target[len > 0 ? len : 0] = 0;
            tool_error("%s: a symbolic link in the dataset folder that cannot be followed (-> %s: "
                       "%s); if it is a class folder (on a share that is not mounted?), make its "
                       "target reachable, otherwise remove the link", sub, target,
                       e == ELOOP ? "a loop of links" : strerror(e));
            free(sub);
            rc = -1;
            break;
        }
        if (path_is_dir(sub) == 1 && stat(sub, &fst) == 0) {
            for (int f = 0; f < classes; f++)
                if (folders[f].row >= 0 && folders[f].dev == fst.st_dev &&
                    folders[f].ino == fst.st_ino) {
                    tool_error("%s: class folders '%s' and '%s' are the same folder (one is a "
                               "link to the other); every image belongs to one class: remove "
                               "the link", dir, names[folders[f].row], names[i]);
                    rc = -1;
                }
            if (rc != 0) {
                free(sub);
                break;
            }
            folders[classes].dev = fst.st_dev;
            folders[classes].ino = fst.st_ino;
            folders[classes].row = i;
        }
        if (path_is_dir(sub) != 1) {
            if (has_image_extension(sub)) {
                tool_error("%s: an image directly in the dataset folder; DATA must hold one "
                           "sub-folder per class (or be a CSV manifest)", sub);
                rc = -1;
            }
            free(sub);
            continue;
        }
        char **files;
        int nf;
        if (list_dir(sub, &files, &nf) != 0) {
            free(sub);
            rc = -1;
            break;
        }
        int64_t before = ds->n;
        int here_dirs = 0, here_ignored = 0, here_img = 0;
        char *here_first = NULL; /* this folder's first file not named as an image */
        for (int j = 0; j < nf; j++) {
            char *p = path_join(sub, files[j]);
            int isdir = path_is_dir(p) == 1;
            if (!isdir && !has_image_extension(p)) {
                here_img += other_image_extension(p);
                if (here_ignored++ == 0) here_first = xstrdup(p);
            }
            if (has_image_extension(p) && !isdir) {
                ds_add(ds, p, xstrdup(names[i]), SPLIT_NONE, 0, sub);
                if (pr)
                    progress_tick(pr, "%s: searching the class folders: %lld images", cmd,
                                  (long long)ds->n);
            } else if (isdir ? here_dirs++ + subdirs == 0 : ignored++ == 0) {
                if (isdir) first_subdir = p;
                else first_ignored = p;
            } else {
                free(p);
            }
        }
        subdirs += here_dirs;
        free_names(files, nf);
        if (ds->n == before && here_dirs) {
            /* the usual slip: the folder above the datasets (synth's DIR, with train/ and test/) */
            tool_error("%s: class folder '%s' holds folders, not images: DATA must be the folder "
                       "whose sub-folders hold the images, one per class (is %s a folder of "
                       "datasets? then give one of them, such as %s); the folders inside a class "
                       "folder (such as plate, well or site folders) are not searched: move their "
                       "images up into the class folder, or list them in a CSV manifest", sub,
                       names[i], dir, sub);
            rc = -1;
        } else if (ds->n == before && here_ignored) {
            /* a folder of JPEGs (or of another format): the files are there, so "no images"
             * alone would puzzle; the count of ignored files is not said when the run stops */
            char *only = other_files_phrase(here_ignored, here_img, here_first);
            tool_error("%s: class folder '%s' has no images (.tif, .tiff, .png), only %s%s", sub,
                       names[i], only,
                       here_img ? ", or remove the folder" : "; add images or remove the folder");
            free(only);
            rc = -1;
        } else if (ds->n == before) {
            tool_error("%s: class folder '%s' has no images (.tif, .tiff, .png); remove it or "
                       "add images", sub, names[i]);
            rc = -1;
        }
        free(here_first);
        classes++;
        free(sub);
    }
    free_names(names, n);
    free(folders);
    if (rc != 0) {
        free(first_ignored);
        free(first_subdir);
        return -1;
    }
    if (classes == 0) {
        tool_error("%s: no class sub-folders (DATA is a folder with one sub-folder of images per "
                   "class, or a CSV manifest)", dir);
        free(first_ignored);
        free(first_subdir);
        return -1;
    }
    if (ignored)
        tool_info("%s: ignored %d %s .tif/.tiff/.png file%s (the first: %s)", dir, ignored,
                  ignored == 1 ? "entry that is not a" : "entries that are not",
                  ignored == 1 ? "" : "s", first_ignored);
    /* unlike predict's search: a class is what its folder holds directly */
    if (subdirs && tool_mpi_rank() == 0)
        tool_warn("%s: ignored %d folder%s inside class folders: a class's images must sit "
                  "directly in its folder (sub-folders are not searched; the first: %s; move "
                  "their images up, or list them in a CSV manifest)", dir, subdirs,
                  subdirs == 1 ? "" : "s", first_subdir);
    free(first_ignored);
    free(first_subdir);
    /* the same file in two class folders (a link, or a hard link), or twice in one */
    if (check_duplicates(ds, dir, 1) != 0) return -1;
    collect_classes(ds);
    return 0;
}

/* ---- CSV --------------------------------------------------------------------------------------- */

/* Splits one CSV record starting at *pos (RFC 4180: quoted fields with "" escapes, a quoted
 * field may span lines). Returns the number of fields (fields[] heap strings), 0 at end of
 * input, -1 on a malformed record (message in err). *line is advanced by the newlines read;
 * *first_quoted says whether the first field was quoted. */
static int csv_record(const char *text, size_t len, size_t *pos, int *line, char **fields,
                      int max_fields, int *first_quoted, char *err, size_t errsize)
{
    size_t p = *pos;
    if (p >= len) return 0;
    int nf = 0;
    char *buf = xmalloc(len - p + 1);
    for (;;) {
        size_t b = 0;
        int quoted = 0;
        if (p < len && text[p] == '"') {
            quoted = 1;
            p++;
            for (;;) {
                if (p >= len) {
                    snprintf(err, errsize, "unterminated quoted field");
                    goto fail;
                }
                char c = text[p++];
                if (c == '"') {
                    if (p < len && text[p] == '"') {
                        buf[b++] = '"';
                        p++;
                    } else {
                        break;
                    }
                } else {
                    if (c == '\n') (*line)++;
                    buf[b++] = c;
                }
            }
            if (p < len && text[p] != ',' && text[p] != '\n' && text[p] != '\r') {
                snprintf(err, errsize, "characters after a closing quote");
                goto fail;
            }
        } else {
            while (p < len && text[p] != ',' && text[p] != '\n' && text[p] != '\r') {
                if (text[p] == '"') {
                    snprintf(err, errsize, "a quote inside an unquoted field");
                    goto fail;
                }
                buf[b++] = text[p++];
            }
        }
        buf[b] = 0;
        if (nf == 0) *first_quoted = quoted;
        if (nf == max_fields) {
            snprintf(err, errsize, "too many fields (expected path,label[,split])");
            goto fail;
        }
        fields[nf++] = xstrdup(buf);
        if (p < len && text[p] == ',') {
            p++;
            continue;
        }
        if (p < len && text[p] == '\r') p++;
        if (p < len && text[p] == '\n') p++;
        break;
    }
    free(buf);
    *pos = p;
    return nf;
fail:
    free(buf);
    for (int i = 0; i < nf; i++) free(fields[i]);
    /* skip to the end of the line so that the caller can report and stop */
    *pos = len;
    return -1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

static int cmp_row_file(const void *a, const void *b)
{
    const row_file *x = a, *y = b;
    if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino) return x->ino < y->ino ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* Rows of a manifest that name the same file: the same device and inode, so that "a.tif",
 * "./a.tif", "sub/../a.tif", an absolute path and a link all match. Under two labels the manifest
 * contradicts itself: an error for every command. Under the same label it is an error when labels
 * are required (train, eval): the image would weigh twice in training or in the metrics, or sit
 * in two splits; prediction classifies it once per row. Rows whose file cannot be found are left
 * to the loader, which names them. 0, or -1 with the first few pairs reported in line order. */
static int check_duplicates(const tool_dataset *ds, const char *csv, int labels_required)
{
    row_file *v = xmalloc(sizeof *v * (size_t)(ds->n ? ds->n : 1));
    int64_t n = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        struct stat st;
        if (stat(ds->s[i].path, &st) != 0) continue;
        v[n].dev = st.st_dev;
        v[n].ino = st.st_ino;
        v[n].row = i;
        n++;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_row_file);
    /* first[i]: the earliest row listing row i's file, -1 for that row itself and unique rows */
    int64_t *first = xmalloc(sizeof *first * (size_t)(ds->n ? ds->n : 1));
    for (int64_t i = 0; i < ds->n; i++) first[i] = -1;
    for (int64_t i = 1, g = 0; i < n; i++) {
        if (v[i].dev != v[g].dev || v[i].ino != v[g].ino) g = i;
        else first[v[i].row] = v[g].row;
    }
    free(v);
    int errors = 0;
    const int max_reported = 5;
    /* class folders: one file under two names in one class (hard links made by a tool that
     * merges identical files, such as hardlink or rdfind) is the same data as two copies, which
     * are used as they are: said, not refused */
    int64_t linked = 0, linked_a = -1, linked_b = -1;
    for (int64_t i = 0; i < ds->n; i++) {
        if (first[i] < 0) continue;
        const tool_sample *a = &ds->s[first[i]], *b = &ds->s[i];
        int relabelled = a->label && b->label && strcmp(a->label, b->label) != 0;
        if (!relabelled && a->line == 0) {
            if (linked++ == 0) {
                linked_a = first[i];
                linked_b = i;
            }
            continue;
        }
        if (!relabelled && !labels_required) continue;
        if (++errors > max_reported) continue;
        if (a->line == 0) { /* class folders: the same file twice, through a link */
            if (relabelled)
                tool_error("%s: %s and %s are the same file (a link), in classes '%s' and '%s'; "
                           "every image belongs to one class", csv, a->path, b->path, a->label,
                           b->label);
            continue;
        }
        char as[1100] = "";
        if (strcmp(a->path, b->path) != 0)
            snprintf(as, sizeof as, " (the second time as %s)", b->path);
        if (relabelled)
            tool_error("%s: %s is listed twice, lines %d and %d%s, under different labels ('%s' "
                       "and '%s')", csv, a->path, a->line, b->line, as, a->label, b->label);
        else
            tool_error("%s: %s is listed twice, lines %d and %d%s; list every image once", csv,
                       a->path, a->line, b->line, as);
    }
    free(first);
    if (linked && !errors)
        tool_warn("%s: %s and %s are the same file (a link) in class '%s'%s; each name counts as "
                  "one image, as a copy would", csv, ds->s[linked_a].path, ds->s[linked_b].path,
                  ds->s[linked_a].label, linked > 1 ? " (and more such names)" : "");
    if (errors > max_reported)
        tool_error("%s: %d more %s a file %s before", csv, errors - max_reported,
                   ds->manifest ? "rows list" : "images are", ds->manifest ? "listed" : "found");
    return errors ? -1 : 0;
}

/* Whether a manifest's first field is a header split by ';' or tabs ("path;label"): "path"
 * alone before the separator, not a file name that begins so ("pathology;2.tif"). */
static int header_split(const char *field)
{
    if (strncasecmp(field, "path", 4) != 0) return 0;
    field += 4;
    field += strspn(field, " ");
    return *field == ';' || *field == '\t';
}

/* Reads a manifest. labels: 1 required, 0 optional (prediction). */
static int open_manifest(const char *csv, tool_dataset *ds, int labels_required)
{
    unsigned char *data;
    size_t len;
    char err[256];
    if (read_file(csv, (size_t)1 << 30, &data, &len, err, sizeof err) != 0) {
        tool_error("%s: %s", csv, err);
        return -1;
    }
    const char *text = (const char *)data;
    if (memchr(text, 0, len)) {
        tool_error("%s: not a text file (contains NUL bytes)", csv);
        free(data);
        return -1;
    }
    size_t pos = 0;
    if (len >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF) pos = 3; /* UTF-8 BOM */
    char *base = path_dir(csv);
    int line = 1, rc = 0, rows = 0, first = 1, split_col = 0;
    ds->manifest = 1;
    while (rc == 0) {
        int start = line;
        char *f[4];
        int quoted = 0;
        const size_t record = pos;
        int nf = csv_record(text, len, &pos, &line, f, 3, &quoted, err, sizeof err);
        line++;
        if (nf == 0) break;
        if (nf < 0 && first && (!strncasecmp(text + record, "path,predicted,", 15) ||
                                !strncasecmp(text + record, "path,label,predicted,", 21))) {
            /* `cfnet predict out/...` (a shell pattern) with an earlier run's table among the
             * images */
            tool_error("%s: a table of predictions written by 'cfnet %s' (columns path,%s"
                       "predicted and one per class), not a manifest of images (path,label"
                       "[,split]): leave it out of the inputs", csv,
                       text[record + 5] == 'p' || text[record + 5] == 'P' ? "predict" : "eval",
                       text[record + 5] == 'p' || text[record + 5] == 'P' ? "" : "label,");
            rc = -1;
            break;
        }
        if (nf < 0) {
            tool_error("%s:%d: malformed CSV line: %s", csv, start, err);
            rc = -1;
            break;
        }
        char *path = trim(f[0]);
        int blank = nf == 1 && !*path;
        int comment = path[0] == '#' && !quoted; /* "#12.tif", quoted, is a file */
        if (first && !blank && !comment && !strcasecmp(path, "path")) { /* header */
            split_col = nf == 3;
            first = 0;
            for (int i = 0; i < nf; i++) free(f[i]);
            continue;
        }
        if (blank || comment) {
            for (int i = 0; i < nf; i++) free(f[i]);
            continue;
        }
        const int first_row = first;
        first = 0;
        char *label = nf >= 2 ? trim(f[1]) : NULL;
        int split = SPLIT_NONE;
        if (!*path) {
            tool_error("%s:%d: malformed CSV line: empty path", csv, start);
            rc = -1;
        } else if (nf == 1 && !quoted &&
                   (labels_required || (first_row && header_split(path))) &&
                   (strchr(path, ';') || strchr(path, '\t'))) {
            /* "path;label": a spreadsheet's CSV in a language whose decimal mark is a comma
             * (Excel, LibreOffice) separates fields with ';', and tab-separated text a tab */
            const char *sep = strchr(path, ';') ? "';'" : "tabs";
            tool_error("%s:%d: malformed CSV line: expected path,label[,split], got one field "
                       "with %s between its parts: the manifest's fields are separated by "
                       "commas; save it as comma-separated CSV (a spreadsheet in a language "
                       "with a decimal comma uses ';'), or replace the %s by commas", csv, start,
                       sep, sep);
            rc = -1;
        } else if (labels_required && (nf < 2 || !*label)) {
            tool_error("%s:%d: malformed CSV line: expected path,label[,split], got %s", csv,
                       start, nf < 2 ? "one field" : "an empty label");
            rc = -1;
        } else if (nf == 3) {
            char *sp = trim(f[2]);
            if (!strcasecmp(sp, "train")) split = SPLIT_TRAIN;
            else if (!strcasecmp(sp, "val") || !strcasecmp(sp, "valid") ||
                     !strcasecmp(sp, "validation")) split = SPLIT_VAL;
            else if (!strcasecmp(sp, "test")) split = SPLIT_TEST;
            else if (!*sp) split = SPLIT_NONE;
            else {
                tool_error("%s:%d: malformed CSV line: split '%s' is not train, val or test", csv,
                           start, sp);
                rc = -1;
            }
            if (split != SPLIT_NONE) split_col = 1;
        }
        if (rc == 0) {
            ds_add(ds, path_join(base, path), label && *label ? xstrdup(label) : NULL, split,
                   start, csv);
            rows++;
        }
        for (int i = 0; i < nf; i++) free(f[i]);
    }
    free(base);
    free(data);
    if (rc != 0) return -1;
    if (rows == 0) {
        tool_error("%s: the manifest lists no images", csv);
        return -1;
    }
    ds->has_split = split_col;
    if (split_col) /* a split column must be filled on every row */
        for (int64_t i = 0; i < ds->n; i++)
            if (ds->s[i].split == SPLIT_NONE) {
                tool_error("%s:%d: malformed CSV line: no split, but other rows have one", csv,
                           ds->s[i].line);
                return -1;
            }
    if (check_duplicates(ds, csv, labels_required) != 0) return -1;
    collect_classes(ds);
    return 0;
}

/* A manifest is a file whose name ends in .csv (any case), for every command: a file by any
 * other name is an image to predict and cannot be DATA. */
static int is_csv(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot && !strchr(dot, '/') && !strcasecmp(dot, ".csv");
}

/* The name a symbolic link `link` leads to, as readlink gives it (to, of size tsize), and the
 * name at the end of its chain that is not there (*end, allocated: NULL when that is `to`
 * itself, or when the chain cannot be read). 0, or -1 when link cannot be read. */
static int link_dead_end(const char *link, char *to, size_t tsize, char **end)
{
    *end = NULL;
    ssize_t n = readlink(link, to, tsize - 1);
    if (n < 0) return -1;
    to[n] = 0;
    /* (buf on the heap: inlined into say_unreachable, with its own buffers, the frame was
     * over the 16 KiB the library's functions keep to) */
    char *p = xstrdup(link), *buf = xmalloc(PATH_MAX);
    struct stat ls;
    int hop = 0;
    /* (40: the kernel's limit of links followed in one name) */
    for (; hop < 40 && lstat(p, &ls) == 0 && S_ISLNK(ls.st_mode) &&
           (n = readlink(p, buf, PATH_MAX - 1)) > 0;
         hop++) {
        buf[n] = 0;
        char *dir = path_dir(p);
        char *next = buf[0] == '/' || !strcmp(dir, ".") ? xstrdup(buf) : path_join(dir, buf);
        free(dir);
        free(p);
        p = next;
    }
    free(buf);
    if (hop > 1 && lstat(p, &ls) != 0 && errno == ENOENT) *end = p;
    else free(p);
    return 0;
}

/* The message for a DATA or INPUT path that stat cannot reach (err: its errno): a symbolic link
 * that loops, or one to nothing, is not "no such file or directory". */
static void say_unreachable(const char *path, int err)
{
    char why[PATH_MAX * 2 + 64];
    int on_way = link_trouble(err) ? dangling_on_way(path, why, sizeof why) : 0;
    char to[PATH_MAX], *end;
    if (on_way == 2 && err == ENOENT && link_dead_end(path, to, sizeof to, &end) == 0) {
        /* the name given is a link to nothing (a link into a share that is not mounted): the
         * link and its target named, as ls shows it (through a chain of links, the name at its
         * end that is missing) */
        if (end)
            tool_error("%s: a symbolic link to %s, which leads to %s, which does not exist", path,
                       to, end);
        else
            tool_error("%s: a symbolic link to %s, which does not exist", path, to);
        free(end);
    } else if (on_way == 1 || (on_way == 2 && (err == EACCES || err == ENOTDIR)))
        /* a link further up the path (a folder given through a loop of links or a link to
         * nothing), or one whose target is on a way the user may not search or through a file
         * (link -> file/sub): named, with its target */
        tool_error("%s: cannot be reached: %s", path, why);
    else if (err == ENOTDIR && file_on_way(path, to, sizeof to))
        /* a file on the way (file.tif/sub): that file named, not "no such file" */
        tool_error("%s: cannot be reached: %s is a file, not a folder", path, to);
    else if (err == ENOENT || err == ENOTDIR)
        tool_error("%s: no such file or directory", path);
    else if (err == ELOOP)
        tool_error("%s: a symbolic link that leads into a loop of links (a link to itself, or "
                   "links that point to each other)", path);
    else
        tool_error("%s: cannot be reached: %s", path, strerror(err));
}

int dataset_open_labelled(const char *path, tool_dataset *ds, struct tool_progress *pr,
                          const char *cmd)
{
    memset(ds, 0, sizeof *ds);
    int d = path_is_dir(path);
    if (d < 0) {
        say_unreachable(path, errno);
        return -1;
    }
    if (d == 0 && !is_csv(path)) {
        /* parsed as CSV, an image given by mistake would fail with a message about NUL bytes */
        tool_error("%s: DATA must be a folder with one sub-folder per class, or a .csv manifest",
                   path);
        return -1;
    }
    if (pr) progress_tick(pr, "%s: reading %s", cmd, d ? "the class folders" : "the manifest");
    int rc = d ? open_class_folders(path, ds, pr, cmd) : open_manifest(path, ds, 1);
    if (rc != 0) dataset_free(ds);
    else warn_case_twins(ds, path);
    return rc;
}

/* The folders a recursive search has entered, by device and inode (an open-addressing set), so
 * that a folder reached again through a symbolic link is not searched again: a link back up the
 * tree would otherwise recurse until the depth limit and stop the run, and a second path to a
 * folder would list its images twice. */
typedef struct seen_dir {
    dev_t dev;
    ino_t ino;
    int used;
} seen_dir;

/* What a symbolic link named as an image leads to when stat fails on it. */
enum bad_link {
    BAD_LINK_MISSING, /* ENOENT, ENOTDIR: the target does not exist (a share not mounted) */
    BAD_LINK_LOOP,    /* ELOOP: a link to itself, two links to each other */
    BAD_LINK_OTHER,   /* anything else (a folder on the way that cannot be searched, a name
                       * too long): said with the system's reason */
    BAD_LINK_KINDS
};

static int bad_link_kind(int err)
{
    return err == ENOENT || err == ENOTDIR ? BAD_LINK_MISSING
           : err == ELOOP                  ? BAD_LINK_LOOP
                                           : BAD_LINK_OTHER;
}

/* "N symbolic links named as images whose target does not exist", and so on, with "(the
 * first: link -> target)" when first is not NULL. */
static char *bad_link_phrase(int kind, int64_t n, const char *first)
{
    const char *why = kind == BAD_LINK_MISSING ? "whose target does not exist"
                      : kind == BAD_LINK_LOOP  ? (n == 1 ? "that leads into a loop of links"
                                                         : "that lead into a loop of links")
                                               : "whose target cannot be reached";
    return xasprintf("%lld symbolic link%s named as %s %s%s%s%s", (long long)n, n == 1 ? "" : "s",
                     n == 1 ? "an image" : "images", why, first ? " (the first: " : "",
                     first ? first : "", first ? ")" : "");
}

typedef struct walk_state {
    seen_dir *tab;
    size_t cap, n;        /* cap: a power of two, kept at least twice n */
    int64_t skipped;      /* folders reached again, over every INPUT */
    char *first_skipped;  /* the first of them, for the one message */
    int64_t ignored;      /* files found that are not named as images, over every INPUT */
    int64_t ignored_img;  /* of them, files named as images of other formats (a JPEG) */
    char *first_ignored;  /* the first of them */
    /* symbolic links named as images that lead to no file, by why (enum bad_link): how many,
     * and the first of each kind as "link -> target" */
    int64_t bad[BAD_LINK_KINDS];
    char *first_bad[BAD_LINK_KINDS];
    /* symbolic links not named as images that lead nowhere: maybe folders of images (a plate on
     * a share that is not mounted), so not counted with the files that are not images */
    int64_t dead;
    char *first_dead; /* "link -> target: reason" */
    tool_progress *pr; /* a terminal's line counting the images found (NULL: none) */
    const char *cmd;
} walk_state;

static size_t seen_slot(const seen_dir *tab, size_t cap, dev_t dev, ino_t ino)
{
    size_t h = (size_t)tool_mix((uint64_t)dev, (uint64_t)ino) & (cap - 1);
    while (tab[h].used && (tab[h].dev != dev || tab[h].ino != ino)) h = (h + 1) & (cap - 1);
    return h;
}

/* Adds a folder: 0 if it is new, 1 if it was entered before. */
static int walk_enter(walk_state *w, dev_t dev, ino_t ino)
{
    if (2 * (w->n + 1) > w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        seen_dir *t = xcalloc(cap, sizeof *t);
        for (size_t i = 0; i < w->cap; i++)
            if (w->tab[i].used) t[seen_slot(t, cap, w->tab[i].dev, w->tab[i].ino)] = w->tab[i];
        free(w->tab);
        w->tab = t;
        w->cap = cap;
    }
    size_t h = seen_slot(w->tab, w->cap, dev, ino);
    if (w->tab[h].used) return 1;
    w->tab[h].dev = dev;
    w->tab[h].ino = ino;
    w->tab[h].used = 1;
    w->n++;
    return 0;
}

static int walk(const char *dir, tool_dataset *ds, int depth, walk_state *w)
{
    if (depth > 32) {
        tool_error("%s: folders nested too deeply", dir);
        return -1;
    }
    char **names;
    int n;
    if (list_dir(dir, &names, &n) != 0) return -1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char *p = path_join(dir, names[i]);
        struct stat st;
        if (stat(p, &st) != 0) {
            /* a link whose target is gone (a share that is not mounted, a moved folder) or that
             * loops: said when it is named as an image, since predict would otherwise classify
             * fewer images than the folder shows without a word; a file gone meanwhile is not
             * counted */
            const int err = errno, kind = bad_link_kind(err);
            struct stat lst;
            if (lstat(p, &lst) != 0) {
                const int e = errno;
                if (e != ENOENT) {
                    /* listed, but not reachable by its path: a path longer than the system
                     * takes (folders nested deeper than PATH_MAX bytes), a folder without search
                     * permission. Left out silently, its images would be missing from the table
                     * without a word */
                    if (e == ENAMETOOLONG)
                        tool_error("%s: cannot read: %s (the path is %zu bytes, the system takes "
                                   "at most %d: move the folder up or shorten its folders' names)",
                                   p, strerror(e), strlen(p), PATH_MAX - 1);
                    else
                        tool_error("%s: cannot read: %s", p, strerror(e));
                    rc = -1;
                }
                free(p);
            } else if (S_ISLNK(lst.st_mode) && has_image_extension(p)) {
                if (w->bad[kind]++ == 0) {
                    char target[1024];
                    ssize_t len = readlink(p, target, sizeof target - 1);
                    target[len > 0 ? len : 0] = 0;
                    w->first_bad[kind] = kind == BAD_LINK_OTHER
                                             ? xasprintf("%s -> %s: %s", p, target, strerror(err))
                                             : xasprintf("%s -> %s", p, target);
                }
                free(p);
            } else if (S_ISLNK(lst.st_mode)) {
                if (w->dead++ == 0) {
                    char target[1024];
                    ssize_t len = readlink(p, target, sizeof target - 1);
                    target[len > 0 ? len : 0] = 0;
                    w->first_dead = xasprintf("%s -> %s: %s", p, target,
                                              err == ELOOP ? "a loop of links" : strerror(err));
                }
                free(p);
            } else {
                w->ignored_img += other_image_extension(p);
                if (w->ignored++ == 0) w->first_ignored = p;
                else free(p);
            }
        } else if (S_ISDIR(st.st_mode)) {
            if (walk_enter(w, st.st_dev, st.st_ino)) {
                if (w->skipped++ == 0) w->first_skipped = p;
                else free(p);
                continue;
            }
            rc = walk(p, ds, depth + 1, w);
            free(p);
        } else if (has_image_extension(p)) {
            ds_add(ds, p, NULL, SPLIT_NONE, 0, dir);
            if (w->pr)
                progress_tick(w->pr, "%s: searching the folders: %lld images", w->cmd,
                              (long long)ds->n);
        } else {
            w->ignored_img += other_image_extension(p);
            if (w->ignored++ == 0) w->first_ignored = p;
            else free(p);
        }
    }
    free_names(names, n);
    return rc;
}

/* The image reader's message for a file that is neither TIFF nor PNG (imageio.c). Given to
 * predict under a name without an image extension, such a file is most likely a list of images
 * named otherwise than .csv, which the message then says. */
#define NOT_IMAGE_ERROR "not a TIFF or PNG file"

/* Whether path is a macOS AppleDouble file: the resource fork that copying from a Mac to a share
 * or a disk that is not the Mac's own format leaves as "._NAME" beside every file, "._x.tif"
 * beside "x.tif" (4 KiB, starting 00 05 16 07). A folder search skips it as hidden; a manifest
 * made with `find` or a list of files names it. */
static int is_appledouble(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    if (!strncmp(b, "._", 2)) return 1;
    unsigned char m[4];
    struct stat st;
    int fd = open_nowait(path, &st); /* (a FIFO put in its place meanwhile is not waited on) */
    int r = fd >= 0 && S_ISREG(st.st_mode) && pread(fd, m, 4, 0) == 4 && m[0] == 0 && m[1] == 5 &&
            m[2] == 0x16 && m[3] == 7;
    if (fd >= 0) close(fd);
    return r;
}

/* Says what to do about an image image_read refused (err, its message): an AppleDouble file is
 * named as such; without --skip-bad (skip_bad 0), that --skip-bad leaves such images out. */
static void explain_bad(const tool_sample *s, int skip_bad, char *err, size_t size)
{
    size_t l = strlen(err);
    if (!strncmp(err, NOT_IMAGE_ERROR, strlen(NOT_IMAGE_ERROR)) && is_appledouble(s->path))
        l += (size_t)snprintf(err + l, size - l, " (a macOS AppleDouble file, the resource fork "
                              "that copying from a Mac leaves as ._NAME beside each file, not "
                              "an image: delete these files, with dot_clean on the Mac or find "
                              "DIR -name '._*' -delete, or leave them out%s)",
                              s->line > 0 ? " of the manifest" : "");
    if (!skip_bad && l < size)
        snprintf(err + l, size - l, "; give --skip-bad to leave out the images that cannot be "
                 "used");
}

int dataset_open_inputs(char **paths, int n, tool_dataset *ds, struct tool_progress *pr,
                        const char *cmd)
{
    memset(ds, 0, sizeof *ds);
    walk_state w;
    memset(&w, 0, sizeof w);
    w.pr = pr;
    w.cmd = cmd;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        int d = path_is_dir(paths[i]);
        if (d < 0) {
            say_unreachable(paths[i], errno);
            rc = -1;
        } else if (d == 1) {
            /* every folder given is searched whole, even one inside another given before */
            free(w.tab);
            w.tab = NULL;
            w.cap = w.n = 0;
            struct stat st;
            if (stat(paths[i], &st) == 0) walk_enter(&w, st.st_dev, st.st_ino);
            int64_t before = ds->n, bad_before[BAD_LINK_KINDS], nbad = 0, dead_before = w.dead;
            const int64_t ignored_before = w.ignored, img_before = w.ignored_img;
            memcpy(bad_before, w.bad, sizeof bad_before);
            rc = walk(paths[i], ds, 0, &w);
            for (int k = 0; k < BAD_LINK_KINDS; k++) nbad += w.bad[k] - bad_before[k];
            const int64_t ndead = w.dead - dead_before, nign = w.ignored - ignored_before;
            /* the files of other formats, the first named when it is in this folder */
            char *others = nign > 0 ? other_files_phrase(nign, w.ignored_img - img_before,
                                                         ignored_before ? NULL : w.first_ignored)
                                    : NULL;
            if (rc == 0 && ds->n == before && nbad + ndead > 0) {
                /* only links into a share that is not mounted (or links that loop): say so, not
                 * just "no images"; the first of a kind is named when it is in this folder (the
                 * warning about links not named as images is not said when the run stops) */
                char *only = NULL;
                if (ndead > 0)
                    only = xasprintf("%lld symbolic link%s that cannot be followed (a folder of "
                                     "images on a share that is not mounted?%s%s)",
                                     (long long)ndead, ndead == 1 ? "" : "s",
                                     dead_before ? "" : " The first: ",
                                     dead_before ? "" : w.first_dead);
                for (int k = 0; k < BAD_LINK_KINDS; k++) {
                    int64_t nk = w.bad[k] - bad_before[k];
                    if (nk == 0) continue;
                    char *ph = bad_link_phrase(k, nk, bad_before[k] ? NULL : w.first_bad[k]);
                    char *t = only ? xasprintf("%s and %s", only, ph) : xstrdup(ph);
                    free(ph);
                    free(only);
                    only = t;
                }
                if (nign > 0) {
                    /* files of other formats beside the links: "only" the links would be
                     * untrue */
                    char *t = xasprintf("%s and %s", only, others);
                    free(only);
                    only = t;
                }
                tool_error("%s: no .tif/.tiff/.png images in this folder, only %s", paths[i], only);
                free(only);
                rc = -1;
            } else if (rc == 0 && ds->n == before && nign > 0) {
                /* only files of other formats (JPEGs): the count of ignored files is not said
                 * when the run stops, so the refusal says it; the first is named when it is in
                 * this folder */
                tool_error("%s: no .tif/.tiff/.png images in this folder, only %s", paths[i],
                           others);
                rc = -1;
            } else if (rc == 0 && ds->n == before) {
                tool_error("%s: no .tif/.tiff/.png images in this folder", paths[i]);
                rc = -1;
            }
            free(others);
        } else if (is_csv(paths[i])) {
            tool_dataset m;
            memset(&m, 0, sizeof m);
            rc = open_manifest(paths[i], &m, 0);
            for (int64_t j = 0; rc == 0 && j < m.n; j++) {
                ds_add(ds, m.s[j].path, m.s[j].label, m.s[j].split, m.s[j].line, m.s[j].source);
                free(m.s[j].source);
                m.s[j].path = m.s[j].label = m.s[j].source = NULL;
            }
            if (rc == 0) m.n = 0;
            dataset_free(&m);
            ds->manifest = 1;
        } else {
            ds_add(ds, xstrdup(paths[i]), NULL, SPLIT_NONE, 0, paths[i]);
        }
    }
    /* every rank of mpirun searches the same folders: said once, by rank 0 */
    const int say = rc == 0 && tool_mpi_rank() == 0;
    if (say && w.skipped)
        tool_info("skipped %lld folder%s reached again through a symbolic link and already "
                  "searched (the first: %s)", (long long)w.skipped, w.skipped == 1 ? "" : "s",
                  w.first_skipped);
    /* said, as train says it of class folders: images saved as .jpg or without a name ending
     * beside the TIFFs would otherwise be left out of the table without a word */
    if (say && w.ignored)
        tool_info("ignored %lld file%s in the folders searched that %s not named .tif, .tiff or "
                  ".png (the first: %s)", (long long)w.ignored, w.ignored == 1 ? "" : "s",
                  w.ignored == 1 ? "is" : "are", w.first_ignored);
    if (say && w.dead)
        tool_warn("skipped %lld symbolic link%s that cannot be followed (the first: %s); a folder "
                  "of images on a share that is not mounted would be missing from the table: "
                  "make it reachable, or remove the link", (long long)w.dead,
                  w.dead == 1 ? "" : "s", w.first_dead);
    free(w.first_dead);
    for (int k = 0; k < BAD_LINK_KINDS; k++) {
        if (say && w.bad[k]) {
            char *ph = bad_link_phrase(k, w.bad[k], w.first_bad[k]);
            tool_warn("skipped %s", ph);
            free(ph);
        }
        free(w.first_bad[k]);
    }
    free(w.tab);
    free(w.first_skipped);
    free(w.first_ignored);
    if (rc != 0) dataset_free(ds);
    return rc;
}

/* "file" or "manifest.csv:12: file" for messages. */
static void where(const tool_sample *s, char *buf, size_t size)
{
    if (s->line > 0)
        snprintf(buf, size, "%s:%d: %s", s->source, s->line, s->path);
    else
        snprintf(buf, size, "%s", s->path);
}

/* Whether s holds a combining accent (U+0300 to U+036F, UTF-8 CC 80 to CD AF): "é" written as
 * "e" and U+0301, the decomposed form (NFD) in which macOS stores file names. Such a name looks
 * like its composed form (NFC, one code point U+00E9) but is other bytes. */
static int has_combining_accent(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((p[0] == 0xCC && p[1] >= 0x80 && p[1] <= 0xBF) ||
            (p[0] == 0xCD && p[1] >= 0x80 && p[1] <= 0xAF))
            return 1;
    return 0;
}

/* The next code point of s at *p that is not a combining accent (0 at the end); bytes that are
 * not UTF-8 count as one code point each. */
static unsigned next_base(const unsigned char **p)
{
    for (;;) {
        const unsigned char *q = *p;
        unsigned c = q[0];
        int n = c < 0x80 ? 1 : c >= 0xC0 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3
                : c >= 0xF0 && c < 0xF8 ? 4 : 1;
        for (int i = 1; i < n; i++)
            if ((q[i] & 0xC0) != 0x80) n = 1;
        if (c == 0) return 0;
        unsigned cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
        for (int i = 1; i < n; i++) cp = cp << 6 | (q[i] & 0x3F);
        *p = q + n;
        if (cp >= 0x300 && cp <= 0x36F) continue;
        return cp;
    }
}

/* Whether a decomposed name (combining accents) and another could be one name in two Unicode
 * forms: after the accents are dropped, they have as many characters, and where they differ one
 * of the two is not ASCII (the composed letter "é" against the "e" that carried the accent). */
static int looks_alike(const char *a, const char *b)
{
    const unsigned char *p = (const unsigned char *)a, *q = (const unsigned char *)b;
    for (;;) {
        unsigned x = next_base(&p), y = next_base(&q);
        if (!x || !y) return !x && !y;
        if (x != y && x < 0x80 && y < 0x80) return 0;
    }
}

int dataset_assign_classes(tool_dataset *ds, char **classes, int n_classes)
{
    for (int64_t i = 0; i < ds->n; i++) {
        tool_sample *s = &ds->s[i];
        s->cls = -1;
        if (!s->label) continue;
        /* classes may be in any order (the model's); linear search is fine for few classes */
        for (int k = 0; k < n_classes; k++)
            if (!strcmp(classes[k], s->label)) {
                s->cls = k;
                break;
            }
        if (s->cls < 0) {
            char w[1200];
            where(s, w, sizeof w);
            char known[512];
            size_t o = 0;
            known[0] = 0;
            for (int k = 0; k < n_classes && o + 1 < sizeof known; k++)
                o += (size_t)snprintf(known + o, sizeof known - o, "%s%s", k ? ", " : "", classes[k]);
            if (o >= sizeof known) strcpy(known + sizeof known - 5, "...");
            /* a folder copied from a Mac against one typed or made elsewhere: the names look
             * alike, so the message says why they differ */
            int alike = -1;
            for (int k = 0; alike < 0 && k < n_classes; k++)
                if (has_combining_accent(s->label) != has_combining_accent(classes[k]) &&
                    looks_alike(s->label, classes[k]))
                    alike = k;
            char hint[1400] = "";
            if (alike >= 0) {
                int label_nfd = has_combining_accent(s->label);
                char cls[600];
                snprintf(cls, sizeof cls, "the class '%s'", classes[alike]);
                snprintf(hint, sizeof hint, "; %s is in decomposed Unicode (NFD: a letter and a "
                         "combining accent, as macOS stores file names), %s is composed (NFC): "
                         "they look the same but are other bytes; rename the folder or the label",
                         label_nfd ? "the label" : cls, label_nfd ? cls : "the label");
            }
            tool_error("%s: label '%s' was not seen in training (the classes are: %s)%s", w,
                       s->label, known, hint);
            return -1;
        }
    }
    (void)class_index;
    return 0;
}

/* ---- parallel loading -------------------------------------------------------------------------- */

typedef struct load_job {
    tool_dataset *ds;
    const int64_t *idx;
    int64_t n;
    const load_spec *spec;
    const cfnet_network *net; /* NULL: spec's norm */
    float *dst;
    pthread_mutex_t lock;
    int64_t next;
    int64_t done; /* images finished, for the progress line */
    int64_t bad;
    int failed;
    int64_t first_fail; /* position of the first failure (reported in order) */
    char fail_msg[2048];
    char **skipped; /* --skip-bad: each position's warning, said in order after the threads */
    int oom;        /* a warning not kept for lack of memory */
} load_job;

static void *load_worker(void *arg)
{
    load_job *j = arg;
    const int64_t per = (int64_t)j->spec->channels * j->spec->size * j->spec->size;
    for (;;) {
        pthread_mutex_lock(&j->lock);
        int64_t i = j->next++;
        int stop = j->failed && j->spec->skip_bad <= 0;
        pthread_mutex_unlock(&j->lock);
        if (i >= j->n || stop) break;
        tool_sample *s = &j->ds->s[j->idx[i]];
        float *dst = j->dst + i * per;
        char err[1024];
        tool_image img;
        int rc = image_read(s->path, &img, err, sizeof err);
        int unreadable = rc != 0; /* or of other channels: --skip-bad helps (not for sizes) */
        /* the image the others are compared with, when there is one */
        const char *first = j->spec->first ? j->spec->first : "";
        const char *fl = j->spec->first ? " (" : "", *fr = j->spec->first ? ")" : "";
        if (rc == 0 && img.channels != j->spec->channels) {
            if (j->spec->channels_from_data)
                snprintf(err, sizeof err, "image has %d channel%s, the first image read%s%s%s has "
                         "%d; every image needs the same channels", img.channels,
                         img.channels == 1 ? "" : "s", fl, first, fr, j->spec->channels);
            else
                snprintf(err, sizeof err, "image has %d channel%s, the model expects %d",
                         img.channels, img.channels == 1 ? "" : "s", j->spec->channels);
            rc = -1;
            unreadable = 1;
        }
        if (rc == 0 && j->spec->exact && (img.height != j->spec->size || img.width != j->spec->size)) {
            snprintf(err, sizeof err, "image is %dx%d but the first image%s%s%s is %dx%d; give "
                     "--size S to centre-crop (and --pad to zero-pad) every image to SxS",
                     img.width, img.height, fl, first, fr, j->spec->size, j->spec->size);
            rc = -1;
        }
        if (rc == 0 && j->net)
            rc = image_prepare_model(j->net, &img, j->spec->size, j->spec->pad, dst, err,
                                     sizeof err);
        else if (rc == 0)
            rc = image_prepare(&img, &j->spec->norm, j->spec->size, j->spec->pad, dst, err,
                               sizeof err);
        image_free(&img);
        if (rc != 0 && s->line == 0 && !has_image_extension(s->path) &&
            !strcmp(err, NOT_IMAGE_ERROR)) {
            /* only a file named on the command line can lack an image extension here */
            size_t l = strlen(err);
            snprintf(err + l, sizeof err - l, " (a manifest's name must end in .csv)");
        }
        if (unreadable) explain_bad(s, j->spec->skip_bad, err, sizeof err);
        if (rc != 0) {
            memset(dst, 0, sizeof(float) * (size_t)per);
            char w[1200];
            where(s, w, sizeof w);
            pthread_mutex_lock(&j->lock);
            if (j->spec->skip_bad > 0) {
                /* (not xasprintf: out of memory is said by the main thread, after the others) */
                if (!s->bad) {
                    int len = snprintf(NULL, 0, "%s: %s", w, err);
                    char *m = len >= 0 ? malloc((size_t)len + 1) : NULL;
                    if (m) snprintf(m, (size_t)len + 1, "%s: %s", w, err);
                    else j->oom = 1;
                    j->skipped[i] = m;
                }
                s->bad = 1;
                j->bad++;
            } else if (!j->failed || i < j->first_fail) {
                snprintf(j->fail_msg, sizeof j->fail_msg, "%s: %s", w, err);
                j->first_fail = i;
                j->failed = 1;
            }
            pthread_mutex_unlock(&j->lock);
        }
        if (j->spec->progress) {
            pthread_mutex_lock(&j->lock);
            j->done++;
            progress_tick(j->spec->progress, "%s %lld of %lld images  %.0f s",
                          j->spec->progress_what, (long long)(j->spec->progress_base + j->done),
                          (long long)j->spec->progress_total,
                          tool_now() - j->spec->progress->t0);
            pthread_mutex_unlock(&j->lock);
        }
    }
    return NULL;
}

int dataset_load(tool_dataset *ds, const int64_t *idx, int64_t n, const load_spec *spec,
                 float *dst, int64_t *bad_count)
{
    return dataset_load_model(ds, idx, n, spec, NULL, dst, bad_count);
}

int dataset_load_model(tool_dataset *ds, const int64_t *idx, int64_t n, const load_spec *spec,
                       const cfnet_network *net, float *dst, int64_t *bad_count)
{
    load_job j;
    memset(&j, 0, sizeof j);
    j.ds = ds;
    j.idx = idx;
    j.n = n;
    j.spec = spec;
    j.net = net;
    j.dst = dst;
    pthread_mutex_init(&j.lock, NULL);
    if (spec->skip_bad > 0) {
        const char *was = tool_oom_for("the list of --skip-bad warnings");
        j.skipped = xcalloc((size_t)(n ? n : 1), sizeof(char *));
        tool_oom_for(was);
    }
    int T = spec->threads < 1 ? 1 : spec->threads;
    if (T > n) T = n > 0 ? (int)n : 1;
    pthread_t th[256];
    if (T > 256) T = 256;
    int started = 0;
    for (int t = 1; t < T; t++) {
        if (pthread_create(&th[started], NULL, load_worker, &j) != 0) break;
        started++;
    }
    load_worker(&j);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    pthread_mutex_destroy(&j.lock);
    if (j.oom) { /* here, not in a thread: under mpirun it meets the other ranks */
        tool_oom_for("a --skip-bad warning");
        tool_out_of_memory();
    }
    for (int64_t i = 0; j.skipped && i < n; i++) { /* in input order, whichever thread */
        if (!j.skipped[i]) continue;
        if (spec->warn_to) fwrite(j.skipped[i], 1, strlen(j.skipped[i]) + 1, spec->warn_to);
        else tool_warn("%s (skipped)", j.skipped[i]);
        free(j.skipped[i]);
    }
    free(j.skipped);
    if (bad_count) *bad_count += j.bad;
    if (j.failed) {
        tool_error("%s", j.fail_msg);
        return -1;
    }
    return 0;
}

int dataset_say_skipped(const char *text, size_t len)
{
    char *all = NULL;
    size_t n = 0;
    int rc = 0;
    if (tool_mpi_size() > 1) {
        /* rank 0's own text first, the others' after it in rank order, gathered into one
         * buffer: no memory stream that could fail to be made or written (with one, rank 0
         * printed nothing and the command ended with status 0). A part that cannot be gathered
         * (said by the gather) fails the command on every rank; rank 0 still prints its own. */
        if (tool_mpi_gather_all(text, len, &all, &n) != 0) rc = -1;
        if (tool_mpi_rank() != 0) {
            free(all);
            return rc;
        }
        if (all) {
            text = all;
            len = n;
        } else if (rc == 0) {
            len = 0; /* nothing from any rank */
        } /* (else rank 0's own) */
    }
    for (size_t o = 0; o < len;) {
        const char *m = text + o;
        size_t l = strnlen(m, len - o);
        tool_warn("%.*s (skipped)", (int)l, m);
        o += l + 1;
    }
    free(all);
    if (rc != 0 && tool_mpi_rank() == 0)
        tool_error("the other MPI ranks' --skip-bad warnings could not be gathered");
    return rc;
}

int dataset_probe(tool_dataset *ds, const int64_t *idx, int64_t n, int skip_bad, int *channels,
                  int *height, int *width, int64_t *first)
{
    for (int64_t i = 0; i < n; i++) {
        tool_sample *s = &ds->s[idx ? idx[i] : i];
        tool_image img;
        char err[1024], w[1200];
        if (image_read(s->path, &img, err, sizeof err) == 0) {
            *channels = img.channels;
            *height = img.height;
            *width = img.width;
            if (first) *first = idx ? idx[i] : i;
            image_free(&img);
            return 0;
        }
        where(s, w, sizeof w);
        explain_bad(s, skip_bad, err, sizeof err);
        if (!skip_bad) {
            tool_error("%s: %s", w, err);
            return -1;
        }
        tool_warn("%s: %s (skipped)", w, err);
        s->bad = 1;
    }
    tool_error("no readable image");
    return -1;
}
