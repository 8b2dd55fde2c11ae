#include "pnm.h"

#include "exutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ex_canvas_init(ex_canvas *c, int rows, int cols, int tile_h, int tile_w, int gap)
{
    c->rows = rows;
    c->cols = cols;
    c->tile_h = tile_h;
    c->tile_w = tile_w;
    c->gap = gap;
    c->width = cols * (tile_w + gap) + gap;
    c->height = rows * (tile_h + gap) + gap;
    size_t n = (size_t)c->width * (size_t)c->height * 3;
    c->rgb = ex_malloc(n * sizeof *c->rgb);
    for (size_t i = 0; i < n; i++) c->rgb[i] = 1.0f;
}

void ex_canvas_free(ex_canvas *c)
{
    free(c->rgb);
    c->rgb = NULL;
}

static void colour(float t, int heat, float *rgb)
{
    if (t < 0) t = 0;
    if (t > 1) t = 1;
    if (!heat) {
        rgb[0] = rgb[1] = rgb[2] = t;
        return;
    }
    /* black -> red -> yellow -> white */
    rgb[0] = t < 1.0f / 3 ? 3 * t : 1.0f;
    rgb[1] = t < 1.0f / 3 ? 0.0f : t < 2.0f / 3 ? 3 * t - 1 : 1.0f;
    rgb[2] = t < 2.0f / 3 ? 0.0f : 3 * t - 2;
}

void ex_canvas_map(ex_canvas *c, int row, int col, const float *map, int h, int w, float lo,
                   float hi, int heat)
{
    if (lo == hi) {
        lo = hi = map[0];
        for (int i = 1; i < h * w; i++) {
            if (map[i] < lo) lo = map[i];
            if (map[i] > hi) hi = map[i];
        }
    }
    float span = hi > lo ? hi - lo : 1.0f;
    int y0 = c->gap + row * (c->tile_h + c->gap), x0 = c->gap + col * (c->tile_w + c->gap);
    for (int y = 0; y < c->tile_h; y++)
        for (int x = 0; x < c->tile_w; x++) {
            int i = (int)((long)y * h / c->tile_h), j = (int)((long)x * w / c->tile_w);
            float *px = c->rgb + ((size_t)(y0 + y) * (size_t)c->width + (size_t)(x0 + x)) * 3;
            if (i >= h || j >= w) continue;
            colour((map[i * w + j] - lo) / span, heat, px);
        }
}

int ex_canvas_write_ppm(const ex_canvas *c, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fprintf(f, "P6\n%d %d\n255\n", c->width, c->height);
    size_t n = (size_t)c->width * (size_t)c->height * 3;
    for (size_t i = 0; i < n; i++) fputc((int)(c->rgb[i] * 255.0f + 0.5f), f);
    return fclose(f) == 0 ? 0 : -1;
}

/* 1 if an executable `name` is in a folder of PATH. */
static int on_path(const char *name)
{
    const char *path = getenv("PATH");
    if (!path) return 0;
    char buf[4096];
    size_t k = strlen(name);
    while (*path) {
        size_t n = strcspn(path, ":"), d = n ? n : 1; /* an empty entry is the current folder */
        if (d + k + 2 <= sizeof buf) {
            memcpy(buf, n ? path : ".", d);
            buf[d] = '/';
            memcpy(buf + d + 1, name, k + 1);
            if (access(buf, X_OK) == 0) return 1;
        }
        path += n;
        if (*path == ':') path++;
    }
    return 0;
}

int ex_pnm_to_png(const char *prog, const char *pnm_path, const char *png_path)
{
    static const char *const names[2] = {"pnmtopng", "convert"};
    int have[2] = {on_path(names[0]), on_path(names[1])};
    if (!have[0] && !have[1]) {
        fprintf(stderr,
                "%s: no PNG: neither pnmtopng (netpbm) nor convert (ImageMagick) is on PATH; "
                "the picture is %s\n",
                prog, pnm_path);
        return -1;
    }
    /* The converter writes a temporary file beside the PNG, renamed over it on success, so that
     * a failed conversion leaves no partial PNG and an earlier one whole. */
    char tmp[4096], cmd[16384];
    if (strchr(pnm_path, '\'') || strchr(png_path, '\'') ||
        snprintf(tmp, sizeof tmp, "%s.part", png_path) >= (int)sizeof tmp) {
        fprintf(stderr, "%s: no PNG: cannot pass the name %s to a converter; the picture is %s\n",
                prog, png_path, pnm_path);
        return -1;
    }
    const char *tried = NULL;
    for (int i = 0; i < 2; i++) {
        if (!have[i]) continue;
        if (i == 0)
            snprintf(cmd, sizeof cmd, "pnmtopng '%s' > '%s' 2>/dev/null", pnm_path, tmp);
        else
            snprintf(cmd, sizeof cmd, "convert '%s' 'PNG:%s' >/dev/null 2>&1", pnm_path, tmp);
        if (system(cmd) == 0 && rename(tmp, png_path) == 0) return 0;
        remove(tmp);
        tried = tried ? "pnmtopng and convert" : names[i];
    }
    fprintf(stderr, "%s: warning: could not convert %s to PNG with %s (%s); wrote only %s\n", prog,
            pnm_path, tried,
            access(png_path, F_OK) == 0 ? "an earlier PNG is kept, not this run's" : "no PNG written",
            pnm_path);
    return -1;
}
