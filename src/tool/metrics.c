/* Classification metrics and their reports: text, CSV, SVG heat map, JSON (jansson). */
#define _GNU_SOURCE
#include "tool.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The metrics' tables from `alloc` (xcalloc, which ends the command on failure, or calloc):
 * 0, or -1 with nothing held when one of them could not be had. */
static int metrics_alloc(tool_metrics *m, int k, void *(*alloc)(size_t, size_t))
{
    memset(m, 0, sizeof *m);
    m->k = k;
    m->confusion = alloc((size_t)k * k, sizeof *m->confusion);
    m->precision = alloc((size_t)k, sizeof(double));
    m->recall = alloc((size_t)k, sizeof(double));
    m->f1 = alloc((size_t)k, sizeof(double));
    m->support = alloc((size_t)k, sizeof(int64_t));
    m->loss = NAN;
    if (m->confusion && m->precision && m->recall && m->f1 && m->support) return 0;
    metrics_free(m);
    m->loss = NAN;
    return -1;
}

void metrics_init(tool_metrics *m, int k)
{
    (void)metrics_alloc(m, k, xcalloc);
}

int metrics_init_try(tool_metrics *m, int k)
{
    return metrics_alloc(m, k, calloc);
}

void metrics_add(tool_metrics *m, int truth, int predicted)
{
    m->confusion[(int64_t)truth * m->k + predicted]++;
}

/* Precision of a class nobody predicted and recall of a class with no support are 0 (and such
 * classes are left out of the balanced accuracy, which averages recall over present classes). */
void metrics_finish(tool_metrics *m)
{
    const int k = m->k;
    m->total = m->correct = 0;
    double rsum = 0, fsum = 0;
    int present = 0;
    for (int i = 0; i < k; i++) {
        int64_t row = 0, col = 0;
        for (int j = 0; j < k; j++) {
            row += m->confusion[(int64_t)i * k + j];
            col += m->confusion[(int64_t)j * k + i];
        }
        int64_t tp = m->confusion[(int64_t)i * k + i];
        m->support[i] = row;
        m->total += row;
        m->correct += tp;
        m->precision[i] = col ? (double)tp / (double)col : 0.0;
        m->recall[i] = row ? (double)tp / (double)row : 0.0;
        double p = m->precision[i], r = m->recall[i];
        m->f1[i] = p + r > 0 ? 2 * p * r / (p + r) : 0.0;
        if (row) {
            present++;
            rsum += m->recall[i];
            fsum += m->f1[i];
        }
    }
    m->accuracy = m->total ? (double)m->correct / (double)m->total : 0.0;
    m->balanced_accuracy = present ? rsum / present : 0.0;
    m->macro_f1 = present ? fsum / present : 0.0;
}

int64_t metrics_predicted(const tool_metrics *m, int cls)
{
    int64_t col = 0;
    for (int j = 0; j < m->k; j++) col += m->confusion[(int64_t)j * m->k + cls];
    return col;
}

void metrics_free(tool_metrics *m)
{
    free(m->confusion);
    free(m->precision);
    free(m->recall);
    free(m->f1);
    free(m->support);
    memset(m, 0, sizeof *m);
}

/* Display width of a UTF-8 string, counted in code points (the bytes that do not continue a
 * character), so that "ring shaped ü" takes 13 columns, not 14. Combining marks (0 columns) and
 * wide East Asian characters (2 columns) are counted as one: right for the Latin, Greek and
 * Cyrillic names a class usually has, without a wcwidth table (or a locale) for the rest. Bytes
 * that are not UTF-8 count as they come. */
static int text_width(const char *s)
{
    int w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) w += (*p & 0xC0) != 0x80;
    return w;
}

/* The widest of names[0..k) (text_width), at least lo and at most hi. */
static int names_width(char **names, int k, int lo, int hi)
{
    int w = lo;
    for (int i = 0; i < k; i++) {
        int l = text_width(names[i]);
        if (l > w) w = l;
    }
    return w > hi ? hi : w;
}

/* Prints name in exactly w columns (text_width): padded with spaces, or, when longer, cut after
 * w - 1 code points (never inside a multi-byte character) and ended with "…", as confusion.svg
 * does, so that a cut name does not pass for a whole one. (printf's "%-*.*s" counts bytes.) A
 * control character (a tab or a newline in a manifest's label, a C1 control) is printed as
 * U+FFFD, one column, as in confusion.svg: written as it is, it would break the table's lines
 * and columns. */
static void print_name(FILE *out, const char *name, int w)
{
    const unsigned char *p = (const unsigned char *)name;
    const int cut = text_width(name) > w;
    const int keep = cut ? w - 1 : w;
    int cols = 0;
    size_t bytes = 0;
    while (p[bytes]) {
        if ((p[bytes] & 0xC0) != 0x80 && cols++ == keep) break; /* character keep + 1 */
        bytes++;
    }
    if (cols > keep) cols = keep;
    tool_put_visible(out, name, bytes);
    if (cut) fputs("\xE2\x80\xA6", out); /* … */
    fprintf(out, "%*s", w - cols - cut, "");
}

void metrics_print(const tool_metrics *m, char **classes, FILE *out)
{
    const int k = m->k;
    const int w = names_width(classes, k, 5, 40);
    fprintf(out, "images            %lld\n", (long long)m->total);
    fprintf(out, "accuracy          %.2f %%\n", 100 * m->accuracy);
    fprintf(out, "balanced accuracy %.2f %%\n", 100 * m->balanced_accuracy);
    fprintf(out, "macro F1          %.4f\n", m->macro_f1);
    if (!isnan(m->loss)) fprintf(out, "mean loss         %.4f\n", m->loss);
    fprintf(out, "\n%-*s  precision  recall      F1  support\n", w, "class");
    for (int i = 0; i < k; i++) {
        print_name(out, classes[i], w);
        /* A class without examples in the data has no recall and no F1, and no precision unless
         * it was predicted: "–" (U+2013, 3 bytes in 1 column), not a 0 that reads as a failure. */
        const int none = m->support[i] == 0, unpredicted = none && metrics_predicted(m, i) == 0;
        if (unpredicted) fprintf(out, "  %11s", "\xE2\x80\x93");
        else fprintf(out, "  %9.4f", m->precision[i]);
        if (none) fprintf(out, "  %8s  %8s", "\xE2\x80\x93", "\xE2\x80\x93");
        else fprintf(out, "  %6.4f  %.4f", m->recall[i], m->f1[i]);
        fprintf(out, "  %7lld\n", (long long)m->support[i]);
    }
    fprintf(out, "\nconfusion matrix (rows: true class, columns: predicted, in class order)\n");
    int cw = 4;
    for (int i = 0; i < k * k; i++) {
        char b[32];
        int l = snprintf(b, sizeof b, "%lld", (long long)m->confusion[i]);
        if (l + 1 > cw) cw = l + 1;
    }
    fprintf(out, "%-*s", w, "");
    for (int j = 0; j < k; j++) fprintf(out, " %*d", cw, j);
    fputc('\n', out);
    for (int i = 0; i < k; i++) {
        print_name(out, classes[i], w);
        for (int j = 0; j < k; j++) fprintf(out, " %*lld", cw, (long long)m->confusion[(int64_t)i * k + j]);
        fprintf(out, "   (%d)\n", i);
    }
}

int metrics_write_confusion_csv(const tool_metrics *m, char **classes, FILE *f)
{
    fprintf(f, "true\\predicted");
    csv_write_names(f, classes, m->k);
    fputc('\n', f);
    for (int i = 0; i < m->k; i++) {
        char *q = csv_quote(classes[i]);
        fprintf(f, "%s", q);
        free(q);
        for (int j = 0; j < m->k; j++) fprintf(f, ",%lld", (long long)m->confusion[(int64_t)i * m->k + j]);
        fputc('\n', f);
    }
    return ferror(f) ? -1 : 0;
}

/* Text for an XML 1.0 element or attribute. A control character other than tab, newline and
 * carriage return cannot appear in XML 1.0 at all, not even as a character reference, so it
 * is written as U+FFFD (a manifest label may hold one; the file must stay readable); so is a C1
 * control (U+0080 to U+009F), which XML 1.0 allows but discourages and a viewer draws as
 * nothing or a box, as in the terminal's tables (tool_put_visible). */
static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (tool_is_c1((const unsigned char *)s, 2)) { /* s[1] is read only when s[0] is C2 */
            fputs("\xEF\xBF\xBD", f);
            s++;
            continue;
        }
        switch (c) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\t': case '\n': case '\r': fputc(c, f); break;
        default:
            if (c < 0x20) fputs("\xEF\xBF\xBD", f);
            else fputc(c, f);
        }
    }
}

/* xml_text of a class name as an axis label of at most w characters (code points, as
 * text_width counts them): a longer name is cut after w - 1 and ends in "…". The margins are
 * made for w characters, so a longer label would run off the picture's edge from its start,
 * the part that tells classes apart; the cells' tooltips keep the whole name. */
static void xml_label(FILE *f, const char *s, int w)
{
    if (text_width(s) <= w) {
        xml_text(f, s);
        return;
    }
    size_t bytes = 0;
    int cols = 0;
    for (const unsigned char *p = (const unsigned char *)s; p[bytes]; bytes++)
        if ((p[bytes] & 0xC0) != 0x80 && cols++ == w - 1) break; /* the start of character w */
    char *cut = xmalloc(bytes + 1);
    memcpy(cut, s, bytes);
    cut[bytes] = 0;
    xml_text(f, cut);
    fputs("\xE2\x80\xA6", f); /* … */
    free(cut);
}

/* Heat map of the row-normalised confusion matrix (recall per true class), counts in cells. */
int metrics_write_confusion_svg(const tool_metrics *m, char **classes, FILE *f)
{
    const int k = m->k;
    const int maxlen = names_width(classes, k, 4, 32);
    int cell = k <= 10 ? 40 : k <= 25 ? 24 : 14, font = cell >= 40 ? 12 : cell >= 24 ? 9 : 7;
    /* column labels are rotated by -60 degrees above the matrix: about 6 px of height per
     * character; the title line needs about 480 px */
    int left = 20 + maxlen * 7, top = 56 + maxlen * 6, W = left + k * cell + 40,
        H = top + k * cell + 50;
    if (W < 480) W = 480;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H);
    fprintf(f, "<text x=\"%d\" y=\"20\" font-size=\"14\">Confusion matrix: accuracy %.1f %%, "
            "balanced accuracy %.1f %% (n = %lld)</text>\n", 10, 100 * m->accuracy,
            100 * m->balanced_accuracy, (long long)m->total);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">predicted</text>\n",
            left + k * cell / 2, 40);
    fprintf(f, "<text x=\"12\" y=\"%d\" font-size=\"12\" transform=\"rotate(-90 12 %d)\" "
            "text-anchor=\"middle\">true</text>\n", top + k * cell / 2, top + k * cell / 2);
    for (int i = 0; i < k; i++) {
        int64_t row = m->support[i];
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"%d\" text-anchor=\"end\">", left - 4,
                top + i * cell + cell / 2 + font / 3, font);
        xml_label(f, classes[i], maxlen);
        fprintf(f, "</text>\n");
        int cx = left + i * cell + cell / 2, cy = top - 4;
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"%d\" transform=\"rotate(-60 %d %d)\">", cx,
                cy, font, cx, cy);
        xml_label(f, classes[i], maxlen);
        fprintf(f, "</text>\n");
        for (int j = 0; j < k; j++) {
            int64_t c = m->confusion[(int64_t)i * k + j];
            double v = row ? (double)c / (double)row : 0.0;
            /* white -> dark blue */
            int r = (int)(255 - 225 * v), g = (int)(255 - 185 * v), b = (int)(255 - 95 * v);
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,%d)\" "
                    "stroke=\"#ccc\"><title>", left + j * cell, top + i * cell, cell, cell, r, g, b);
            xml_text(f, classes[i]);
            fputs(" -> ", f);
            xml_text(f, classes[j]);
            fprintf(f, ": %lld (%.1f %%)</title></rect>\n", (long long)c, 100 * v);
            if (c && cell >= 14)
                fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"%d\" text-anchor=\"middle\" "
                        "fill=\"%s\">%lld</text>\n", left + j * cell + cell / 2,
                        top + i * cell + cell / 2 + font / 3, font, v > 0.5 ? "white" : "black",
                        (long long)c);
        }
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"10\">cells: count, shade: fraction of the "
            "true class (row)</text>\n</svg>\n", left, top + k * cell + 20);
    return ferror(f) ? -1 : 0;
}

int metrics_write_json(const tool_metrics *m, char **classes, FILE *f, const char *model,
                       const char *data)
{
    json_t *o = json_object(), *pc = json_array(), *cm = json_array(), *names = json_array();
    /* paths are bytes, JSON strings UTF-8: a byte that is not UTF-8 becomes U+FFFD (without
     * the repair jansson would leave the key out) */
    char *model_u = utf8_repair(model, 0, NULL), *data_u = utf8_repair(data, 0, NULL);
    json_object_set_new(o, "model", json_string(model_u));
    json_object_set_new(o, "data", json_string(data_u));
    free(model_u);
    free(data_u);
    json_object_set_new(o, "images", json_integer(m->total));
    json_object_set_new(o, "accuracy", json_real(m->accuracy));
    json_object_set_new(o, "balanced_accuracy", json_real(m->balanced_accuracy));
    json_object_set_new(o, "macro_f1", json_real(m->macro_f1));
    if (!isnan(m->loss)) json_object_set_new(o, "mean_loss", json_real(m->loss));
    for (int i = 0; i < m->k; i++) {
        json_array_append_new(names, json_string(classes[i]));
        json_t *c = json_object(), *row = json_array();
        json_object_set_new(c, "class", json_string(classes[i]));
        /* null where the text report prints "–": a class without examples has no recall
         * and no F1, and no precision unless it was predicted */
        const int none = m->support[i] == 0, unpredicted = none && metrics_predicted(m, i) == 0;
        json_object_set_new(c, "precision", unpredicted ? json_null() : json_real(m->precision[i]));
        json_object_set_new(c, "recall", none ? json_null() : json_real(m->recall[i]));
        json_object_set_new(c, "f1", none ? json_null() : json_real(m->f1[i]));
        json_object_set_new(c, "support", json_integer(m->support[i]));
        json_array_append_new(pc, c);
        for (int j = 0; j < m->k; j++)
            json_array_append_new(row, json_integer(m->confusion[(int64_t)i * m->k + j]));
        json_array_append_new(cm, row);
    }
    json_object_set_new(o, "classes", names);
    json_object_set_new(o, "per_class", pc);
    json_object_set_new(o, "confusion", cm);
    int rc = json_dumpf(o, f, JSON_INDENT(2)) == 0 ? 0 : -1;
    fputc('\n', f);
    json_decref(o);
    return rc == 0 && !ferror(f) ? 0 : -1;
}
