/* libFuzzer target: any bytes given to the command's image readers (libtiff and libpng behind
 * src/tool/imageio.c), as an image and as a label mask (`cfnet crop`), give an image or an
 * error message, nothing else; and an image or mask read whole is read row by row (tool_rows,
 * as crop reads fields and masks, uncompressed TIFF strips straight from the file) with the
 * same values. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* data in a temporary file, for tool_rows (which reads a path); NULL if it cannot be written */
static char *to_file(const uint8_t *data, size_t size)
{
    const char *dir = getenv("TMPDIR");
    char *path = malloc(4096);
    if (!path) return NULL;
    snprintf(path, 4096, "%s/cfnet-fuzz-image-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        free(path);
        return NULL;
    }
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) break;
        done += (size_t)n;
    }
    close(fd);
    if (done < size) {
        unlink(path);
        free(path);
        return NULL;
    }
    return path;
}

/* the rows of path equal img (labels: lab), or abort */
static void rows_agree(const char *path, const tool_image *img, const tool_labels *lab)
{
    char err[256];
    tool_rows *r;
    if (rows_open(path, lab != NULL, &r, err, sizeof err) != 0) abort();
    int C, H, W;
    rows_info(r, &C, &H, &W, NULL);
    int wantC = lab ? 1 : img->channels, wantH = lab ? lab->height : img->height,
        wantW = lab ? lab->width : img->width;
    if (C != wantC || H != wantH || W != wantW) abort();
    float *f = lab ? NULL : malloc(sizeof *f * (size_t)C * W);
    uint32_t *u = lab ? malloc(sizeof *u * (size_t)W) : NULL;
    if (!f && !u) abort();
    for (int y = 0; y < H; y++) {
        if (rows_next(r, f, u, err, sizeof err) != 0) abort();
        if (lab) {
            if (memcmp(u, lab->data + (int64_t)y * W, sizeof *u * (size_t)W) != 0) abort();
        } else {
            for (int c = 0; c < C; c++)
                if (memcmp(f + (int64_t)c * W,
                           img->data + ((int64_t)c * H + y) * W, sizeof *f * (size_t)W) != 0)
                    abort();
        }
    }
    free(f);
    free(u);
    rows_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tool_image img;
    char err[256];
    char *path = NULL;
    /* A small cap keeps the fuzzer's memory bounded; the command uses TOOL_IMAGE_MAX_VALUES. */
    if (image_decode(data, size, (int64_t)1 << 20, &img, err, sizeof err) == 0) {
        volatile float sink = 0;
        int64_t n = (int64_t)img.channels * img.height * img.width;
        for (int64_t i = 0; i < n; i += 97) sink += img.data[i];
        (void)sink;
        if ((path = to_file(data, size))) rows_agree(path, &img, NULL);
        image_free(&img);
    }
    tool_labels lab;
    if (labels_decode(data, size, (int64_t)1 << 20, &lab, err, sizeof err) == 0) {
        volatile uint32_t sink = 0;
        int64_t n = (int64_t)lab.height * lab.width;
        for (int64_t i = 0; i < n; i += 97) sink += lab.data[i];
        (void)sink;
        if (path || (path = to_file(data, size))) rows_agree(path, NULL, &lab);
        labels_free(&lab);
    }
    if (path) {
        unlink(path);
        free(path);
    }
    return 0;
}
