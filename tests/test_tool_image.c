/* The `cfnet` command's image readers (src/tool/imageio.c), label masks and the cells of
 * `cfnet crop` (src/tool/crop.c), and preprocessing (image_prepare):
 * every supported TIFF and PNG layout reads back exactly what was written, unsupported and
 * broken files give a message (never a crash), crop/pad/normalisation place pixels as
 * documented. */
#define _GNU_SOURCE
#include "testutil.h"

#include "tool.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

static char *out_path(const char *name)
{
    return path_join(tu_outdir(), name);
}

/* An image with distinct integer values in [0, maxv]. */
static tool_image make_image(int c, int h, int w, double maxv, uint64_t seed)
{
    tool_image img = {c, h, w, xmalloc(sizeof(float) * (size_t)(c * h * w))};
    for (int i = 0; i < c * h * w; i++) img.data[i] = (float)floor(tool_uniform(&seed) * (maxv + 1));
    return img;
}

static void assert_same(const tool_image *a, const tool_image *b)
{
    assert_int_equal(a->channels, b->channels);
    assert_int_equal(a->height, b->height);
    assert_int_equal(a->width, b->width);
    for (int i = 0; i < a->channels * a->height * a->width; i++)
        if (a->data[i] != b->data[i]) fail_msg("value %d: %g != %g", i, a->data[i], b->data[i]);
}

static void tiff_roundtrip(int bits, tiff_layout layout, int c, int h, int w)
{
    char name[64], err[256];
    snprintf(name, sizeof name, "imageio_%d_%d_%d.tif", bits, (int)layout, w);
    char *p = out_path(name);
    tool_image img = make_image(c, h, w, bits == 8 ? 255 : 65535, (uint64_t)(bits * 10 + layout));
    if (bits == 32)
        for (int i = 0; i < c * h * w; i++) img.data[i] = img.data[i] / 977.0f - 3.5f;
    if (image_write_tiff(p, &img, bits, layout, err, sizeof err) != 0) fail_msg("%s", err);
    tool_image back;
    if (image_read(p, &back, err, sizeof err) != 0) fail_msg("%s: %s", p, err);
    assert_same(&img, &back);
    image_free(&img);
    image_free(&back);
    free(p);
}

static void tiff_every_layout_and_depth_reads_back_exactly(void **state)
{
    (void)state;
    int bits[3] = {8, 16, 32};
    for (int b = 0; b < 3; b++)
        for (int l = 0; l <= TIFF_TILED; l++) {
            tiff_roundtrip(bits[b], (tiff_layout)l, 3, 21, 37); /* partial strips and tiles */
            tiff_roundtrip(bits[b], (tiff_layout)l, 1, 16, 16);
        }
}

static void tiff_big_endian_reads_back_exactly(void **state)
{
    (void)state;
    char *p = out_path("imageio_be.tif"), err[256];
    TIFF *t = TIFFOpen(p, "wb"); /* 'b': big-endian byte order */
    assert_non_null(t);
    uint16_t row[5];
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 5u);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, 2u);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 16);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_LZW);
    for (uint32_t y = 0; y < 2; y++) {
        for (int x = 0; x < 5; x++) row[x] = (uint16_t)(1000 * y + 300 * x + 7);
        assert_true(TIFFWriteScanline(t, row, y, 0) >= 0);
    }
    TIFFClose(t);
    tool_image img;
    if (image_read(p, &img, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(img.channels, 1);
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 5; x++) assert_true(img.data[y * 5 + x] == 1000 * y + 300 * x + 7);
    image_free(&img);
    free(p);
}

/* A smooth 8-bit RGB test pattern (interleaved): gradients and slow waves in each channel,
 * the content JPEG keeps well, so a reading error shows above the compression error. */
static uint8_t smooth_rgb(int x, int y, int c)
{
    double v = c == 0   ? 40 + 3.0 * x + 60 * sin(y / 6.0)
               : c == 1 ? 200 - 2.5 * y + 40 * cos(x / 7.0)
                        : 128 + 90 * sin((x + y) / 9.0);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lround(v));
}

/* Writes an RGB image as a JPEG-compressed YCbCr TIFF with 4:2:0 subsampling, the way slide
 * scanners do: libtiff converts the RGB it is given (JPEGCOLORMODE_RGB). `pages` colour
 * functions of (x, y, c) become pages; tiles of 16 x 16 or strips of 16 rows. */
typedef uint8_t (*rgb_fn)(int x, int y, int c);
static void write_jpeg_ycbcr(const char *path, int w, int h, int tiled, const rgb_fn *fn,
                             int pages)
{
    TIFF *t = TIFFOpen(path, "w");
    assert_non_null(t);
    for (int p = 0; p < pages; p++) {
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)h);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
        TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
        TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_JPEG);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_YCBCR);
        TIFFSetField(t, TIFFTAG_YCBCRSUBSAMPLING, 2, 2);
        TIFFSetField(t, TIFFTAG_JPEGQUALITY, 90);
        TIFFSetField(t, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
        if (pages > 1) TIFFSetField(t, TIFFTAG_SUBFILETYPE, (uint32_t)FILETYPE_PAGE);
        if (tiled) {
            TIFFSetField(t, TIFFTAG_TILEWIDTH, 16u);
            TIFFSetField(t, TIFFTAG_TILELENGTH, 16u);
            uint8_t tile[16 * 16 * 3];
            for (int y0 = 0; y0 < h; y0 += 16)
                for (int x0 = 0; x0 < w; x0 += 16) {
                    for (int y = 0; y < 16; y++)
                        for (int x = 0; x < 16; x++)
                            for (int c = 0; c < 3; c++)
                                tile[(y * 16 + x) * 3 + c] = fn[p](x0 + x, y0 + y, c);
                    assert_true(TIFFWriteTile(t, tile, (uint32_t)x0, (uint32_t)y0, 0, 0) > 0);
                }
        } else {
            TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 16u); /* a multiple of the 16-row MCU */
            uint8_t *row = xmalloc((size_t)w * 3);
            for (int y = 0; y < h; y++) {
                for (int x = 0; x < w; x++)
                    for (int c = 0; c < 3; c++) row[x * 3 + c] = fn[p](x, y, c);
                assert_true(TIFFWriteScanline(t, row, (uint32_t)y, 0) >= 0);
            }
            free(row);
        }
        assert_true(TIFFWriteDirectory(t));
    }
    TIFFClose(t);
}

static uint8_t pure_red(int x, int y, int c) { (void)x; (void)y; return c == 0 ? 255 : 0; }
static uint8_t pure_green(int x, int y, int c) { (void)x; (void)y; return c == 1 ? 255 : 0; }
static uint8_t pure_blue(int x, int y, int c) { (void)x; (void)y; return c == 2 ? 255 : 0; }

static void tiff_jpeg_ycbcr_reads_as_rgb(void **state)
{
    (void)state;
    char err[256];
    /* 37 x 41: partial MCUs, strips and tiles at the right and bottom edges */
    const int w = 37, h = 41;
    for (int tiled = 0; tiled < 2; tiled++) {
        char *p = out_path(tiled ? "imageio_jpeg_ycbcr_tiles.tif" : "imageio_jpeg_ycbcr_strips.tif");
        const rgb_fn smooth[1] = {smooth_rgb};
        write_jpeg_ycbcr(p, w, h, tiled, smooth, 1);
        tool_image img;
        if (image_read(p, &img, err, sizeof err) != 0) fail_msg("%s: %s", p, err);
        assert_int_equal(img.channels, 3);
        assert_int_equal(img.height, h);
        assert_int_equal(img.width, w);
        double maxd = 0, sumd = 0;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    double d = fabs(img.data[(c * h + y) * w + x] - smooth_rgb(x, y, c));
                    sumd += d;
                    if (d > maxd) maxd = d;
                }
        double mean = sumd / (3.0 * w * h);
        if (getenv("CFNET_TEST_VERBOSE"))
            fprintf(stderr, "jpeg ycbcr %s: max %.0f mean %.3f\n", tiled ? "tiles" : "strips",
                    maxd, mean);
        /* Against the source, JPEG's loss: measured with libjpeg-turbo 2.1.5, max 17 and
         * mean 1.6 (strips) / 1.7 (tiles) at quality 90 and 4:2:0; max 8-10 at quality 100
         * (chroma subsampling), max 3 at quality 100 without subsampling (rounding). The
         * bounds leave room for another libjpeg's rounding; Y, Cb, Cr read as channels or
         * channels out of order would be off by tens on average. */
        if (maxd > 24 || mean > 3) fail_msg("max %g mean %g", maxd, mean);
        /* and exactly the pixels of libtiff's own RGBA reader */
        TIFF *t = TIFFOpen(p, "r");
        assert_non_null(t);
        uint32_t *rgba = xmalloc(sizeof(uint32_t) * (size_t)(w * h));
        assert_true(TIFFReadRGBAImageOriented(t, (uint32_t)w, (uint32_t)h, rgba,
                                              ORIENTATION_TOPLEFT, 0));
        TIFFClose(t);
        for (int i = 0; i < w * h; i++) {
            uint32_t v = rgba[i];
            float want[3] = {(float)TIFFGetR(v), (float)TIFFGetG(v), (float)TIFFGetB(v)};
            for (int c = 0; c < 3; c++)
                if (img.data[c * w * h + i] != want[c])
                    fail_msg("pixel %d channel %d: %g, libtiff's RGBA reader %g", i, c,
                             img.data[c * w * h + i], want[c]);
        }
        free(rgba);
        image_free(&img);
        free(p);
    }
    /* pages of pure red, green and blue: channels in R, G, B order on every page (the colour
     * mode is set again for each directory) */
    for (int tiled = 0; tiled < 2; tiled++) {
        char *p = out_path("imageio_jpeg_ycbcr_rgb_pages.tif");
        const rgb_fn fn[3] = {pure_red, pure_green, pure_blue};
        write_jpeg_ycbcr(p, w, h, tiled, fn, 3);
        tool_image img;
        if (image_read(p, &img, err, sizeof err) != 0) fail_msg("%s: %s", p, err);
        assert_int_equal(img.channels, 9);
        for (int ch = 0; ch < 9; ch++) {
            float lo = 255, hi = 0;
            for (int i = 0; i < w * h; i++) {
                float v = img.data[ch * w * h + i];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
            /* measured: 254 or 255 where the colour is on, 0 or 1 where it is off */
            int on = ch % 3 == ch / 3; /* page p is pure colour p */
            if (on ? lo < 250 : hi > 5)
                fail_msg("%s channel %d spans [%g, %g]", tiled ? "tiles" : "strips", ch, lo, hi);
        }
        image_free(&img);
        free(p);
    }
}

/* Sets a SHORT or LONG tag of the first directory of a little-endian classic TIFF in place:
 * the damage a flipped byte in a header does. */
static void patch_first_ifd_tag(const char *path, uint16_t tag, uint32_t value)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    unsigned char b[12];
    assert_int_equal(fread(b, 1, 8, f), 8);
    assert_true(b[0] == 'I' && b[1] == 'I' && b[2] == 42);
    long ifd = (long)(b[4] | b[5] << 8 | b[6] << 16 | (uint32_t)b[7] << 24);
    assert_int_equal(fseek(f, ifd, SEEK_SET), 0);
    assert_int_equal(fread(b, 1, 2, f), 2);
    int n = b[0] | b[1] << 8, done = 0;
    for (int i = 0; i < n && !done; i++) {
        long at = ifd + 2 + 12L * i;
        assert_int_equal(fseek(f, at, SEEK_SET), 0);
        assert_int_equal(fread(b, 1, 12, f), 12);
        if ((b[0] | b[1] << 8) != tag) continue;
        int type = b[2] | b[3] << 8;
        assert_true(type == 3 || type == 4);
        unsigned char v[4] = {(unsigned char)value, (unsigned char)(value >> 8),
                              (unsigned char)(value >> 16), (unsigned char)(value >> 24)};
        assert_int_equal(fseek(f, at + 8, SEEK_SET), 0);
        assert_int_equal(fwrite(v, 1, type == 3 ? 2 : 4, f), type == 3 ? 2 : 4);
        done = 1;
    }
    assert_true(done);
    assert_int_equal(fclose(f), 0);
}

/* A JPEG strip or tile narrower than the page says (a damaged width or tile width): libtiff
 * only warns, and decodes into part of each row, the rest left as the buffer held (heap
 * contents: a fuzzed file gave different values read whole and row by row). The file is
 * refused whole and row by row, with a message that says why. */
static void tiff_jpeg_data_smaller_than_its_strip_is_refused(void **state)
{
    (void)state;
    char err[256];
    const rgb_fn smooth[1] = {smooth_rgb};
    for (int tiled = 0; tiled < 2; tiled++) {
        char *p = out_path(tiled ? "imageio_jpeg_narrow_tiles.tif" : "imageio_jpeg_narrow_strips.tif");
        write_jpeg_ycbcr(p, 37, 41, tiled, smooth, 1);
        tool_image img;
        if (image_read(p, &img, err, sizeof err) != 0) fail_msg("%s: %s", p, err);
        image_free(&img);
        /* strips: the page 64 wide, its JPEG strips 37; tiles: 32 wide, the JPEG tiles 16 */
        patch_first_ifd_tag(p, tiled ? TIFFTAG_TILEWIDTH : TIFFTAG_IMAGEWIDTH, tiled ? 32 : 64);
        if (image_read(p, &img, err, sizeof err) == 0)
            fail_msg("%s: read as a %dx%d image", p, img.width, img.height);
        if (!strstr(err, "JPEG data does not fill"))
            fail_msg("%s: '%s'", p, err);
        tool_rows *r;
        if (rows_open(p, 0, &r, err, sizeof err) == 0) {
            int C, H, W, failed = 0;
            rows_info(r, &C, &H, &W, NULL);
            float *row = xmalloc(sizeof *row * (size_t)C * W);
            for (int y = 0; y < H && !failed; y++)
                failed = rows_next(r, row, NULL, err, sizeof err) != 0;
            free(row);
            rows_close(r);
            if (!failed) fail_msg("%s: every row read", p);
        }
        if (!strstr(err, "JPEG data does not fill"))
            fail_msg("%s row by row: '%s'", p, err);
        free(p);
    }
}

static void png_every_channel_count_and_depth_reads_back_exactly(void **state)
{
    (void)state;
    for (int c = 1; c <= 4; c++)
        for (int bits = 8; bits <= 16; bits += 8) {
            char name[64], err[256];
            snprintf(name, sizeof name, "imageio_%d_%d.png", c, bits);
            char *p = out_path(name);
            tool_image img = make_image(c, 9, 13, bits == 8 ? 255 : 65535, (uint64_t)(c * bits));
            if (image_write_png(p, &img, bits, err, sizeof err) != 0) fail_msg("%s", err);
            tool_image back;
            if (image_read(p, &back, err, sizeof err) != 0) fail_msg("%s: %s", p, err);
            assert_same(&img, &back);
            image_free(&img);
            image_free(&back);
            free(p);
        }
}

/* Writes a PNG with libpng directly (palette, with transparency when `alpha`, or 1-bit grey). */
static void write_png_raw(const char *path, int w, int h, int depth, int ctype,
                          const unsigned char *rows, size_t rowbytes, const png_color *pal, int npal,
                          const unsigned char *alpha)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng failed writing %s", path);
    png_init_io(png, f);
    png_set_user_limits(png, 0x7fffffffu, 0x7fffffffu); /* libpng's default is 10^6 */
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    if (alpha) png_set_tRNS(png, info, alpha, npal, NULL);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, rows + (size_t)y * rowbytes);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

static void expect_error(const char *path, const char *what);

static void png_palette_and_low_bit_grey_are_expanded(void **state)
{
    (void)state;
    char *p = out_path("imageio_palette.png"), err[256];
    png_color pal[2] = {{10, 20, 30}, {200, 150, 100}};
    unsigned char rows[2 * 3] = {0, 1, 0, 1, 1, 0};
    /* with a transparency chunk too (which libpng turns into an alpha channel): still RGB, so
     * that palette images of one dataset have one channel count */
    static const unsigned char alpha[2] = {0, 200};
    for (int t = 0; t < 2; t++) {
        write_png_raw(p, 3, 2, 8, PNG_COLOR_TYPE_PALETTE, rows, 3, pal, 2, t ? alpha : NULL);
        tool_image img;
        if (image_read(p, &img, err, sizeof err) != 0) fail_msg("%s", err);
        assert_int_equal(img.channels, 3);
        for (int i = 0; i < 6; i++) {
            const png_color *c = &pal[rows[i]];
            assert_true(img.data[i] == c->red && img.data[6 + i] == c->green &&
                        img.data[12 + i] == c->blue);
        }
        image_free(&img);
    }
    free(p);
    tool_image img;
    /* A side over 2^20 pixels (a 1048577 x 1 line, far below the cap on values) is refused by
     * that limit, said as such, not as a broken file. */
    p = out_path("imageio_wide.png");
    unsigned char *wide = calloc((size_t)1 << 20 | 1, 1);
    assert_non_null(wide);
    write_png_raw(p, (1 << 20) + 1, 1, 8, PNG_COLOR_TYPE_GRAY, wide, ((size_t)1 << 20) + 1, NULL,
                  0, NULL);
    free(wide);
    expect_error(p, "PNG too large: sides of more than 1048576 pixels are not read");
    free(p);
    /* over the cap on values: said in words ("1 channel", not "1 channels") */
    p = out_path("imageio_cap.png");
    unsigned char grey[4 * 4] = {0};
    write_png_raw(p, 4, 4, 8, PNG_COLOR_TYPE_GRAY, grey, 4, NULL, 0, NULL);
    {
        FILE *f = fopen(p, "rb");
        assert_non_null(f);
        unsigned char bytes[4096];
        size_t n = fread(bytes, 1, sizeof bytes, f);
        fclose(f);
        err[0] = 0;
        assert_int_not_equal(image_decode(bytes, n, 10, &img, err, sizeof err), 0);
        if (!strstr(err, "image too large: 4x4 with 1 channel (limit 10 values)"))
            fail_msg("message '%s'", err);
    }
    free(p);
    p = out_path("imageio_1bit.png");
    unsigned char bitrow[2] = {0xA0, 0x40}; /* row 0: 1 0 1, row 1: 0 1 0 */
    write_png_raw(p, 3, 2, 1, PNG_COLOR_TYPE_GRAY, bitrow, 1, NULL, 0, NULL);
    if (image_read(p, &img, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(img.channels, 1);
    static const float want[6] = {255, 0, 255, 0, 255, 0};
    for (int i = 0; i < 6; i++) assert_true(img.data[i] == want[i]);
    image_free(&img);
    free(p);
}

/* Reads `path` and expects an error containing `what`. */
static void expect_error(const char *path, const char *what)
{
    tool_image img;
    char err[256] = "";
    if (image_read(path, &img, err, sizeof err) == 0) fail_msg("%s was accepted", path);
    if (!strstr(err, what)) fail_msg("%s: message '%s' lacks '%s'", path, err, what);
    assert_null(img.data);
}

static void unsupported_tiffs_are_refused_with_a_reason(void **state)
{
    (void)state;
    /* A stack of more pages than the channel limit: the message names that limit, not the
     * limit on values (1025 pages of 2x2 are 4100 values). */
    tool_image stack = make_image(1025, 2, 2, 255, 7);
    char *s = out_path("imageio_1025_pages.tif"), serr[256];
    if (image_write_tiff(s, &stack, 8, TIFF_PAGES, serr, sizeof serr) != 0) fail_msg("%s", serr);
    expect_error(s, "too many channels: 1025 or more on page 1025 (at most 1024");
    image_free(&stack);
    free(s);

    char *p = out_path("imageio_signed.tif");
    TIFF *t = TIFFOpen(p, "w");
    int16_t row[4] = {-1, 2, -3, 4};
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 4u);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, 1u);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 16);
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_INT);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFWriteScanline(t, row, 0, 0);
    TIFFClose(t);
    expect_error(p, "16-bit signed");
    free(p);

    p = out_path("imageio_sizes.tif"); /* two pages of different sizes */
    t = TIFFOpen(p, "w");
    for (int page = 0; page < 2; page++) {
        uint8_t r[8] = {0};
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)(4 + 4 * page));
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, 2u);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
        for (uint32_t y = 0; y < 2; y++) TIFFWriteScanline(t, r, y, 0);
        TIFFWriteDirectory(t);
    }
    TIFFClose(t);
    expect_error(p, "page 2 is 8x2 but page 1 is 4x2");
    free(p);

    p = out_path("imageio_nan.tif");
    tool_image img = make_image(1, 3, 3, 10, 1);
    img.data[4] = NAN;
    img.data[5] = NAN;
    img.data[7] = -INFINITY;
    char err[256];
    assert_int_equal(image_write_tiff(p, &img, 32, TIFF_PAGES, err, sizeof err), 0);
    image_free(&img);
    expect_error(p, "non-finite values: 2 NaN and 1 infinite of 9 (the first in channel 1 at "
                    "row 1, column 1)");
    free(p);

    p = out_path("imageio_palette.tif");
    t = TIFFOpen(p, "w");
    uint16_t cmap[256] = {0};
    uint8_t r8[4] = {0, 1, 2, 3};
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 4u);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, 1u);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_PALETTE);
    TIFFSetField(t, TIFFTAG_COLORMAP, cmap, cmap, cmap);
    TIFFWriteScanline(t, r8, 0, 0);
    TIFFClose(t);
    expect_error(p, "colour model (palette, photometric 3)");
    free(p);

    /* samples that are not grey or RGB intensities: Lab of every kind, a colour filter array
     * (a raw Bayer mosaic, which read as grey would be another image), a transparency mask */
    static const struct {
        uint16_t photo, spp;
        const char *what;
    } models[] = {{PHOTOMETRIC_ICCLAB, 3, "ICC Lab"}, {PHOTOMETRIC_ITULAB, 3, "ITU Lab"},
                  {PHOTOMETRIC_CIELAB, 3, "CIE Lab"}, {PHOTOMETRIC_CFA, 1, "colour filter array"},
                  {PHOTOMETRIC_MASK, 1, "transparency mask"}};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        p = out_path("imageio_photometric.tif");
        t = TIFFOpen(p, "w");
        uint8_t px[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 4u);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, 1u);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, models[i].spp);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, models[i].photo);
        TIFFWriteScanline(t, px, 0, 0);
        TIFFClose(t);
        expect_error(p, models[i].what);
        free(p);
    }

    /* YCbCr is read only when libjpeg decodes it to RGB: uncompressed (or LZW) YCbCr, and
     * JPEG YCbCr in planes (which libtiff gives as Y, Cb and Cr planes), are refused */
    for (int planar = 0; planar < 2; planar++) {
        p = out_path("imageio_ycbcr.tif");
        t = TIFFOpen(p, "w");
        uint8_t px[16 * 16 * 3];
        memset(px, 128, sizeof px);
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 16u);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, 16u);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
        TIFFSetField(t, TIFFTAG_PLANARCONFIG, planar ? PLANARCONFIG_SEPARATE : PLANARCONFIG_CONTIG);
        TIFFSetField(t, TIFFTAG_COMPRESSION, planar ? COMPRESSION_JPEG : COMPRESSION_LZW);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_YCBCR);
        TIFFSetField(t, TIFFTAG_YCBCRSUBSAMPLING, 1, 1);
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 16u);
        for (int plane = 0; plane < (planar ? 3 : 1); plane++)
            for (uint32_t y = 0; y < 16; y++)
                assert_true(TIFFWriteScanline(t, px, y, (uint16_t)plane) >= 0);
        TIFFClose(t);
        expect_error(p, "colour model (YCbCr, photometric 6) on page 1 (supported: grey, RGB, "
                        "YCbCr as 8-bit interleaved JPEG)");
        free(p);
    }

    /* tiles far larger than the image (a fuzzed file asked for an 8 GiB tile buffer) are
     * refused before anything is allocated; the tile sizes writers keep for small images and
     * pyramid levels (256 to 1024) are read */
    static const uint32_t sides[] = {256u, 512u, 1024u, 2048u};
    for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
        uint32_t side = sides[i];
        int big = side > 1024u;
        char name[64];
        snprintf(name, sizeof name, "imageio_tiles_%u.tif", (unsigned)side);
        p = out_path(name);
        t = TIFFOpen(p, "w");
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 5u);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, 3u);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
        TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_ADOBE_DEFLATE);
        TIFFSetField(t, TIFFTAG_TILEWIDTH, side);
        TIFFSetField(t, TIFFTAG_TILELENGTH, side);
        uint8_t *tile = calloc((size_t)side * side, 1);
        assert_non_null(tile);
        for (uint32_t y = 0; y < 3; y++)
            for (uint32_t x = 0; x < 5; x++) tile[y * side + x] = (uint8_t)(10 * y + x);
        assert_true(TIFFWriteTile(t, tile, 0, 0, 0, 0) > 0);
        TIFFClose(t);
        free(tile);
        if (big) {
            expect_error(p, "2048x2048 tiles for a 5x3 image");
        } else {
            tool_image got;
            assert_int_equal(image_read(p, &got, err, sizeof err), 0);
            assert_int_equal(got.width, 5);
            assert_int_equal(got.height, 3);
            for (int y = 0; y < 3; y++)
                for (int x = 0; x < 5; x++)
                    assert_true(got.data[y * 5 + x] == (float)(10 * y + x));
            image_free(&got);
        }
        free(p);
    }
}

/* A file that is neither TIFF nor PNG is named by what it is when that is a format a lab's folder
 * holds (other images, microscope vendors' files), so that the message says to convert it; a
 * file that is none of them (text, a damaged file) keeps the plain message. */
static void other_formats_are_named(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t n;
        const char *what;
    } files[] = {
        {"\xFF\xD8\xFF\xE0\0\x10JFIF\0", 11, "(it is a JPEG image; convert it to TIFF or PNG"},
        {"GIF89a\x01\0\x01\0", 10, "(it is a GIF image;"},
        {"ZISRAWFILE\0\0\0\0", 14, "(it is a Zeiss CZI file;"},
        {"\xDA\xCE\xBE\x0A\0\0\0\0", 8, "(it is a Nikon ND2 file;"},
        {"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", 8, "(it is an OLE2 compound file (Olympus OIB"},
        {"\x89HDF\r\n\x1A\n", 8, "(it is an HDF5 file"},
        {"\x93NUMPY\x01\0", 8, "(it is a NumPy array"},
        {"\x70\0\0\0\x10\0\0\0\x2A", 9, "(it is a Leica LIF file;"},
        {"BM\x46\0\0\0\0\0\0\0\x36\0\0\0", 14, "(it is a BMP image;"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        tool_image img;
        char err[256] = "";
        if (image_decode((const unsigned char *)files[i].bytes, files[i].n, 1 << 20, &img, err,
                         sizeof err) == 0)
            fail_msg("file %zu was accepted", i);
        if (strncmp(err, "not a TIFF or PNG file ", 23) != 0 || !strstr(err, files[i].what))
            fail_msg("file %zu: '%s' lacks '%s'", i, err, files[i].what);
    }
    tool_image img;
    char err[256] = "";
    const char *text = "path,label\nBMP is a format\n";
    assert_int_not_equal(image_decode((const unsigned char *)text, strlen(text), 1 << 20, &img,
                                      err, sizeof err), 0);
    assert_string_equal(err, "not a TIFF or PNG file");
}

/* A whole TIFF whose page libtiff reads but the reader refuses (1-bit samples), with a tag
 * whose value lies past the end of the file (a writer's bad offset, which libtiff ignores with
 * a warning): refused for its samples, not called truncated (the read past the end had nothing
 * to do with the failure). */
static void a_whole_tiff_refused_for_another_reason_is_not_called_truncated(void **state)
{
    (void)state;
    /* little-endian, one IFD at 8 of 7 entries, the 1-byte strip at 98 */
    unsigned char t[99] = {'I', 'I', 42, 0, 8, 0, 0, 0, 7, 0};
    static const unsigned short e[7][4] = {
        {256, 3, 1, 1},     /* width 1 */
        {257, 3, 1, 1},     /* height 1 */
        {258, 3, 1, 1},     /* 1 bit per sample */
        {262, 3, 1, 1},     /* min-is-black */
        {270, 2, 200, 4000}, /* ImageDescription: 200 bytes at 4000, past the end */
        {273, 4, 1, 98},    /* strip offset */
        {279, 4, 1, 1},     /* strip byte count */
    };
    for (int i = 0; i < 7; i++) {
        unsigned char *q = t + 10 + 12 * i;
        q[0] = (unsigned char)(e[i][0] & 255), q[1] = (unsigned char)(e[i][0] >> 8);
        q[2] = (unsigned char)e[i][1];
        q[4] = (unsigned char)(e[i][2] & 255);
        q[8] = (unsigned char)(e[i][3] & 255), q[9] = (unsigned char)(e[i][3] >> 8);
    }
    /* next IFD offset 0 at 94..97, the strip byte at 98 */
    tool_image img;
    char err[256] = "";
    assert_int_not_equal(image_decode(t, sizeof t, 1 << 20, &img, err, sizeof err), 0);
    if (strstr(err, "truncated") || !strstr(err, "1-bit"))
        fail_msg("'%s' is not the samples' reason", err);
}

/* Every prefix of valid files (truncation at any byte) is an error that says the file is
 * truncated or, when the missing part is not needed, the same image: never a crash, never garbage dimensions, never a stack with
 * fewer pages (a prefix that ends inside a page's link to the next page). */
static void truncated_files_never_crash(void **state)
{
    (void)state;
    /* the JPEG page: libtiff fails later than the read past the end (tables cut off) */
    const char *names[4] = {"imageio_16_2_37.tif", "imageio_2_16.png", "imageio_8_0_37.tif",
                            "imageio_trunc_jpeg.tif"};
    tiff_roundtrip(16, TIFF_PLANAR, 3, 21, 37);
    tiff_roundtrip(8, TIFF_PAGES, 3, 21, 37);
    char *jp = out_path(names[3]);
    const rgb_fn smooth[1] = {smooth_rgb};
    write_jpeg_ycbcr(jp, 37, 41, 0, smooth, 1);
    free(jp);
    for (int f = 0; f < 4; f++) {
        char *p = out_path(names[f]), err[256];
        unsigned char *data;
        size_t size;
        if (read_file(p, 1 << 20, &data, &size, err, sizeof err) != 0) fail_msg("%s", err);
        tool_image full;
        assert_int_equal(image_decode(data, size, 1 << 20, &full, err, sizeof err), 0);
        int errors = 0;
        for (size_t n = 0; n < size; n++) {
            tool_image img;
            if (image_decode(data, n, 1 << 20, &img, err, sizeof err) != 0) {
                assert_true(err[0] != 0);
                /* a file cut short says so, not only libtiff's "Read error at scanline
                 * 4294967295" or "Can not read TIFF directory count" */
                if (n >= 8 && !strstr(err, "truncated"))
                    fail_msg("%s cut at %zu bytes: '%s' does not say truncated", names[f], n, err);
                errors++;
                continue;
            }
            assert_same(&full, &img);
            image_free(&img);
        }
        assert_true(errors > (int)size / 2);
        image_free(&full);
        free(data);
        free(p);
    }
}

/* cfnet train prepares its images with image_prepare (the settings of its command line),
 * predict and eval with cfnet_network_prepare_image (image_prepare_model, the model's
 * metadata): two implementations of the crop, pad and scale, which must give the same bits, or
 * a model would be validated on other numbers than it is later given. */
static void train_and_predict_prepare_the_same_bits(void **state)
{
    (void)state;
    static const struct {
        const char *norm;
        tool_norm n;
    } norms[] = {{"percentile 1 99.8", {1, 1, 99.8, 0}},
                 {"percentile 0 100", {1, 0, 100, 0}},
                 {"scale 0.000244140625", {0, 0, 0, 0.000244140625}},
                 {"scale 0.3", {0, 0, 0, 0.3}}};
    static const int sizes[][2] = {{16, 16}, {21, 16}, {16, 22}, {40, 33}, {13, 16},
                                   {10, 11}, {9, 30}, {31, 12}, {1, 1}, {17, 18}};
    const int C = 2, S = 16;
    tu_rng r = {7};
    for (size_t k = 0; k < sizeof norms / sizeof *norms; k++) {
        cfnet_network *net = NULL;
        CF_ASSERT_OK(cfnet_network_create_classifier(CFNET_FAMILY_CNN, C, S, 3, 2, 1, &net));
        CF_ASSERT_OK(cfnet_network_set_metadata(net, "channels", "2"));
        CF_ASSERT_OK(cfnet_network_set_metadata(net, "input_size", "16"));
        CF_ASSERT_OK(cfnet_network_set_metadata(net, "normalization", norms[k].norm));
        CF_ASSERT_OK(cfnet_network_set_metadata(net, "pad", "1"));
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            const int H = sizes[i][0], W = sizes[i][1];
            tool_image img = {C, H, W, xmalloc(sizeof(float) * (size_t)(C * H * W))};
            for (int j = 0; j < C * H * W; j++) {
                double u = tu_uniform(&r);
                img.data[j] = u < 0.3 ? 100.0f : (float)floor(100 + 4000 * u * u);
            }
            float a[2 * 16 * 16], b[2 * 16 * 16];
            char err[512];
            assert_int_equal(image_prepare_model(net, &img, S, 1, b, err, sizeof err), 0);
            assert_int_equal(image_prepare(&img, &norms[k].n, S, 1, a, err, sizeof err), 0);
            if (memcmp(a, b, sizeof a) != 0)
                fail_msg("%s, %dx%d: train's and predict's prepared images differ",
                         norms[k].norm, W, H);
            image_free(&img);
        }
        cfnet_network_free(net);
    }
}

static void prepare_crops_pads_and_normalises_as_documented(void **state)
{
    (void)state;
    /* 1 channel 4x6 (H x W) with values = index; crop to 2: rows 1..2, columns 2..3. */
    tool_image img = {1, 4, 6, xmalloc(sizeof(float) * 24)};
    for (int i = 0; i < 24; i++) img.data[i] = (float)i;
    tool_norm scale = {0, 0, 0, 0.5};
    float out[64];
    char err[256];
    assert_int_equal(image_prepare(&img, &scale, 2, 0, out, err, sizeof err), 0);
    static const float want[4] = {4, 4.5f, 7, 7.5f}; /* (8, 9, 14, 15) x 0.5 */
    for (int i = 0; i < 4; i++) assert_true(out[i] == want[i]);
    /* Larger than the image without --pad: an error naming both sizes. */
    for (int i = 0; i < 24; i++) img.data[i] = (float)i;
    assert_int_equal(image_prepare(&img, &scale, 5, 0, out, err, sizeof err), -1);
    assert_non_null(strstr(err, "image is 6x4, smaller than the input size 5"));
    /* With padding to 8: the image sits at rows 2..5, columns 1..6, zeros around. */
    assert_int_equal(image_prepare(&img, &scale, 8, 1, out, err, sizeof err), 0);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
            float v = (y >= 2 && y < 6 && x >= 1 && x < 7) ? 0.5f * (float)((y - 2) * 6 + x - 1) : 0.0f;
            assert_true(out[y * 8 + x] == v);
        }
    /* A scale that takes a value past float32's range is an error naming the pixel, not an
     * infinity handed to the network. */
    tool_norm big = {0, 0, 0, 1e30};
    img.data[13] = 1e10f;
    assert_int_equal(image_prepare(&img, &big, 4, 0, out, err, sizeof err), -1);
    assert_non_null(strstr(err, "channel 1 at row 2, column 1 overflows float32"));
    /* Percentiles 0 and 100: the minimum maps to 0 and the maximum to 1. */
    for (int i = 0; i < 24; i++) img.data[i] = 100.0f + 2.0f * (float)i;
    tool_norm pct = {1, 0, 100, 0};
    assert_int_equal(image_prepare(&img, &pct, 4, 0, out, err, sizeof err), 0);
    assert_true(fabsf(out[0] - 1.0f / 23.0f) < 1e-6f); /* value index 1 of 0..23 */
    image_free(&img);
    /* The normalisation string round trip stored in models. */
    tool_norm n;
    char buf[128];
    norm_format(&pct, buf, sizeof buf);
    assert_string_equal(buf, "percentile 0 100");
    assert_int_equal(norm_parse("percentile 1 99.8", &n), 0);
    assert_true(n.percentile && n.low == 1 && n.high == 99.8);
    assert_int_equal(norm_parse("percentile 5 1", &n), -1);
    assert_int_equal(norm_parse("scale 0.5 x", &n), -1);
    /* A stored scale within what train --scale takes: one that float32 cannot hold (or holds
     * as 0, or a negative one) is refused when the model is read, not blamed on a pixel. */
    assert_int_equal(norm_parse("scale 1e30", &n), 0);
    assert_true(n.scale == 1e30);
    assert_int_equal(norm_parse("scale 1e-30", &n), 0);
    assert_int_equal(norm_parse("scale 1e300", &n), -1);
    assert_int_equal(norm_parse("scale 1e-300", &n), -1);
    assert_int_equal(norm_parse("scale 0", &n), -1);
    assert_int_equal(norm_parse("scale -2", &n), -1);
    assert_int_equal(norm_parse("scale inf", &n), -1);
    assert_int_equal(norm_parse("scale nan", &n), -1);
}

/* A one-page, one-sample integer TIFF of w x h values (bits 8, 16 or 32; signed or not). */
static char *write_int_tiff(const char *name, int w, int h, int bits, int is_signed,
                            const int64_t *v)
{
    char *p = out_path(name);
    TIFF *t = TIFFOpen(p, "w");
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)h);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, bits);
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, is_signed ? SAMPLEFORMAT_INT : SAMPLEFORMAT_UINT);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    unsigned char *row = xmalloc((size_t)w * 4);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            int64_t a = v[(int64_t)y * w + x];
            if (bits == 8) row[x] = (unsigned char)a;
            else if (bits == 16) { uint16_t u = (uint16_t)a; memcpy(row + 2 * x, &u, 2); }
            else { uint32_t u = (uint32_t)a; memcpy(row + 4 * x, &u, 4); }
        }
        TIFFWriteScanline(t, row, (uint32_t)y, 0);
    }
    free(row);
    TIFFClose(t);
    return p;
}

/* Label masks: 32-bit labels kept exactly (a float would round 4000000001), signed ones read
 * when not negative, negative, float and multi-channel masks refused; images still refuse
 * 32-bit integers. */
static void label_masks_read_exactly_and_refuse_what_is_not_one(void **state)
{
    (void)state;
    int64_t v[6] = {0, 4000000001, 4000000000, 0, 7, 4294967295};
    char err[256];
    tool_labels lab;
    char *p = write_int_tiff("labels_u32.tif", 3, 2, 32, 0, v);
    if (labels_read(p, &lab, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(lab.width, 3);
    assert_int_equal(lab.height, 2);
    for (int i = 0; i < 6; i++) assert_true(lab.data[i] == (uint32_t)v[i]);
    labels_free(&lab);
    tool_image img;
    assert_int_equal(image_read(p, &img, err, sizeof err), -1);
    assert_non_null(strstr(err, "32-bit unsigned"));
    free(p);
    int64_t s[6] = {0, 5, 2147483647, 0, 1, 0};
    for (int bits = 8; bits <= 32; bits *= 2) {
        if (bits == 8) s[2] = 127;
        else if (bits == 16) s[2] = 32767;
        else s[2] = 2147483647;
        p = write_int_tiff("labels_signed.tif", 3, 2, bits, 1, s);
        if (labels_read(p, &lab, err, sizeof err) != 0) fail_msg("%d bits: %s", bits, err);
        for (int i = 0; i < 6; i++) assert_true(lab.data[i] == (uint32_t)s[i]);
        labels_free(&lab);
        free(p);
    }
    int64_t neg[6] = {0, 5, 0, 0, -2, 0};
    p = write_int_tiff("labels_negative.tif", 3, 2, 32, 1, neg);
    assert_int_equal(labels_read(p, &lab, err, sizeof err), -1);
    assert_non_null(strstr(err, "negative label -2 at row 1, column 1"));
    assert_null(lab.data);
    free(p);
    tool_image f = make_image(1, 2, 3, 10, 3);
    p = out_path("labels_float.tif");
    if (image_write_tiff(p, &f, 32, TIFF_PAGES, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(labels_read(p, &lab, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a label mask: 32-bit float"));
    free(p);
    image_free(&f);
    f = make_image(2, 2, 3, 10, 3);
    for (int layout = 0; layout < 2; layout++) {
        p = out_path("labels_2ch.tif");
        if (image_write_tiff(p, &f, 16, (tiff_layout)layout, err, sizeof err) != 0) fail_msg("%s", err);
        assert_int_equal(labels_read(p, &lab, err, sizeof err), -1);
        assert_non_null(strstr(err, "not a label mask: 2 or more channels"));
        free(p);
    }
    p = out_path("labels_2ch.png");
    if (image_write_png(p, &f, 8, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(labels_read(p, &lab, err, sizeof err), -1);
    assert_non_null(strstr(err, "a PNG with 2 channels"));
    free(p);
    image_free(&f);
    f = make_image(1, 2, 3, 65535, 4);
    p = out_path("labels_grey.png");
    if (image_write_png(p, &f, 16, err, sizeof err) != 0) fail_msg("%s", err);
    if (labels_read(p, &lab, err, sizeof err) != 0) fail_msg("%s", err);
    for (int i = 0; i < 6; i++) assert_true(lab.data[i] == (uint32_t)f.data[i]);
    labels_free(&lab);
    free(p);
    image_free(&f);
    /* the sample type of a field: the widest page */
    int bits = 0;
    f = make_image(1, 2, 3, 255, 5);
    p = out_path("labels_field8.tif");
    if (image_write_tiff(p, &f, 8, TIFF_PAGES, err, sizeof err) != 0) fail_msg("%s", err);
    if (image_read_bits(p, &img, &bits, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(bits, 8);
    image_free(&img);
    free(p);
    image_free(&f);
}

/* The centroid of known shapes, the window's rounding (ties to the larger index), sparse labels
 * up to 2^32 - 1 without a table per label value, and the crop's padding and --isolate. */
static void crop_cells_centroids_windows_and_isolate(void **state)
{
    (void)state;
    enum { H = 9, W = 10 };
    uint32_t m[H * W] = {0};
    for (int y = 2; y <= 4; y++)
        for (int x = 3; x <= 5; x++) m[y * W + x] = 4294967295u; /* centroid (4, 3) */
    for (int y = 6; y <= 7; y++)
        for (int x = 0; x <= 1; x++) m[y * W + x] = 5; /* centroid (0.5, 6.5) */
    m[8 * W + 9] = 3000000000u;                       /* one pixel in the corner */
    m[3 * W + 6] = 5;                                 /* label 5 again, elsewhere */
    tool_labels lab = {H, W, m};
    crop_cell *cells;
    int64_t n;
    char err[128];
    assert_int_equal(crop_find_cells(&lab, &cells, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    assert_true(cells[0].label == 5 && cells[0].area == 5);
    assert_true(cells[0].sum_x == 0 + 1 + 0 + 1 + 6 && cells[0].sum_y == 6 + 6 + 7 + 7 + 3);
    assert_true(cells[1].label == 3000000000u && cells[1].area == 1);
    assert_true(cells[2].label == 4294967295u && cells[2].area == 9);
    assert_true(cells[2].sum_x == 9 * 4 && cells[2].sum_y == 9 * 3);
    int64_t top, left;
    crop_window(&cells[2], 3, &top, &left); /* odd size: the centroid pixel in the middle */
    assert_true(top == 2 && left == 3);
    crop_window(&cells[2], 4, &top, &left); /* even: centre 3.5 or 2.5 from 3, tie -> 3.5 */
    assert_true(top == 2 && left == 3);
    crop_cell half = {1, 2, 2 * 0 + 1, 2 * 6 + 1}; /* (0.5, 6.5) */
    crop_window(&half, 3, &top, &left);             /* 0.5 rounds up to 1 */
    assert_true(top == 6 && left == 0);
    crop_window(&half, 4, &top, &left); /* centre first + 1.5 = 0.5 exactly */
    assert_true(top == 5 && left == -1);
    crop_cell neg = {1, 3, 1, 1}; /* (1/3, 1/3), size 8: first = floor(1/3 - 3.5 + .5) = -3 */
    crop_window(&neg, 8, &top, &left);
    assert_true(top == -3 && left == -3);
    /* the crop: two channels, value 100c + index; outside 0; isolate keeps label 5 only */
    tool_image f = {2, H, W, xmalloc(sizeof(float) * 2 * H * W)};
    for (int i = 0; i < 2 * H * W; i++) f.data[i] = (float)(i + 1);
    float dst[2 * 4 * 4];
    assert_int_equal(crop_extract(&f, &lab, 5, 5, -1, 4, 0, dst), 1);
    for (int c = 0; c < 2; c++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) {
                int fy = 5 + y, fx = -1 + x;
                float want = fy < H && fx >= 0 ? f.data[(c * H + fy) * W + fx] : 0.0f;
                assert_true(dst[(c * 4 + y) * 4 + x] == want);
            }
    assert_int_equal(crop_extract(&f, &lab, 5, 5, -1, 4, 1, dst), 1);
    for (int c = 0; c < 2; c++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) {
                int fy = 5 + y, fx = -1 + x;
                int in = fy < H && fx >= 0 && m[fy * W + fx] == 5;
                assert_true(dst[(c * 4 + y) * 4 + x] == (in ? f.data[(c * H + fy) * W + fx] : 0.0f));
            }
    assert_int_equal(crop_extract(&f, &lab, 4294967295u, 2, 3, 3, 0, dst), 0);
    free(f.data);
    free(cells);
    /* many sparse labels (the table grows), then more than 2^20: refused, not allocated */
    enum { B = 1025 };
    uint32_t *big = xmalloc(sizeof(uint32_t) * B * B);
    for (int i = 0; i < B * B; i++) big[i] = (uint32_t)((uint64_t)(i % 3000) * 1431655 + 7);
    tool_labels bl = {B, B, big};
    assert_int_equal(crop_find_cells(&bl, &cells, &n, err, sizeof err), 0);
    assert_int_equal(n, 3000);
    for (int64_t i = 0; i < n; i++) {
        assert_true(cells[i].label == (uint32_t)((uint64_t)i * 1431655 + 7));
        assert_true(cells[i].area == B * B / 3000 + (i < B * B % 3000));
    }
    free(cells);
    for (int i = 0; i < B * B; i++) big[i] = (uint32_t)i + 1;
    assert_int_equal(crop_find_cells(&bl, &cells, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "more than 1048576 distinct labels"));
    assert_null(cells);
    free(big);
    /* an empty mask: no cells, no error */
    uint32_t z[4] = {0};
    tool_labels zl = {2, 2, z};
    assert_int_equal(crop_find_cells(&zl, &cells, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    free(cells);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tiff_every_layout_and_depth_reads_back_exactly),
        cmocka_unit_test(tiff_big_endian_reads_back_exactly),
        cmocka_unit_test(tiff_jpeg_ycbcr_reads_as_rgb),
        cmocka_unit_test(tiff_jpeg_data_smaller_than_its_strip_is_refused),
        cmocka_unit_test(png_every_channel_count_and_depth_reads_back_exactly),
        cmocka_unit_test(png_palette_and_low_bit_grey_are_expanded),
        cmocka_unit_test(unsupported_tiffs_are_refused_with_a_reason),
        cmocka_unit_test(truncated_files_never_crash),
        cmocka_unit_test(a_whole_tiff_refused_for_another_reason_is_not_called_truncated),
        cmocka_unit_test(other_formats_are_named),
        cmocka_unit_test(prepare_crops_pads_and_normalises_as_documented),
        cmocka_unit_test(train_and_predict_prepare_the_same_bits),
        cmocka_unit_test(label_masks_read_exactly_and_refuse_what_is_not_one),
        cmocka_unit_test(crop_cells_centroids_windows_and_isolate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
