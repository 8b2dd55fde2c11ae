/* libFuzzer target: any bytes given to the command's image readers (libtiff and libpng behind
 * src/tool/imageio.c), as an image and as a label mask (`cfnet crop`), give an image or an
 * error message, nothing else. */
#include <stddef.h>
#include <stdint.h>

#include "tool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tool_image img;
    char err[256];
    /* A small cap keeps the fuzzer's memory bounded; the command uses TOOL_IMAGE_MAX_VALUES. */
    if (image_decode(data, size, (int64_t)1 << 20, &img, err, sizeof err) == 0) {
        volatile float sink = 0;
        int64_t n = (int64_t)img.channels * img.height * img.width;
        for (int64_t i = 0; i < n; i += 97) sink += img.data[i];
        (void)sink;
        image_free(&img);
    }
    tool_labels lab;
    if (labels_decode(data, size, (int64_t)1 << 20, &lab, err, sizeof err) == 0) {
        volatile uint32_t sink = 0;
        int64_t n = (int64_t)lab.height * lab.width;
        for (int64_t i = 0; i < n; i += 97) sink += lab.data[i];
        (void)sink;
        labels_free(&lab);
    }
    return 0;
}
