/* Image files through libtiff and libpng: decoding from memory (so that the fuzzer and the
 * command share one path) and writing (for `cfnet synth`). */
#define _GNU_SOURCE
#include "tool.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>

/* Largest number of channels (pages x samples) accepted in one image. */
#define MAX_CHANNELS 1024

static void set_err(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errsize, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
}

void image_free(tool_image *img)
{
    if (!img) return;
    free(img->data);
    img->data = NULL;
    img->channels = img->height = img->width = 0;
}

/* ---- TIFF ------------------------------------------------------------------------------------ */

typedef struct mem_stream {
    const unsigned char *data;
    size_t size;
    uint64_t pos;
    char *err;     /* first libtiff error message */
    size_t errsize;
    int has_err;
    int short_read; /* libtiff asked for bytes past the end of the file */
    int err_short;  /* libtiff's first error came after such a read */
    int fd;         /* >= 0: the file is read from this descriptor (pread), not from data */
    int bad_data;   /* libtiff decoded a strip or tile from data that does not fill it */
} mem_stream;

static tmsize_t ms_read(thandle_t h, void *buf, tmsize_t n)
{
    mem_stream *m = h;
    if (n < 0) return -1;
    if (m->pos >= m->size) {
        if (n > 0) m->short_read = 1;
        return 0;
    }
    uint64_t left = m->size - m->pos;
    if ((uint64_t)n > left) {
        m->short_read = 1;
        n = (tmsize_t)left;
    }
    if (m->fd >= 0) {
        size_t got = 0;
        while (got < (size_t)n) {
            ssize_t r = pread(m->fd, (char *)buf + got, (size_t)n - got, (off_t)(m->pos + got));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
        if (got < (size_t)n) m->short_read = 1;
        m->pos += got;
        return (tmsize_t)got;
    }
    memcpy(buf, m->data + m->pos, (size_t)n);
    m->pos += (uint64_t)n;
    return n;
}

static tmsize_t ms_write(thandle_t h, void *buf, tmsize_t n)
{
    (void)h;
    (void)buf;
    (void)n;
    return -1;
}

static toff_t ms_seek(thandle_t h, toff_t off, int whence)
{
    mem_stream *m = h;
    uint64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->size;
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) return (toff_t)-1;
    if (off > UINT64_MAX - base) return (toff_t)-1;
    m->pos = base + off;
    return m->pos;
}

static int ms_close(thandle_t h)
{
    (void)h;
    return 0;
}

static toff_t ms_size(thandle_t h)
{
    return ((mem_stream *)h)->size;
}

static int ms_map(thandle_t h, void **base, toff_t *size)
{
    mem_stream *m = h;
    if (m->fd >= 0) return 0; /* read through ms_read */
    *base = (void *)m->data;
    *size = m->size;
    return 1;
}

static void ms_unmap(thandle_t h, void *base, toff_t size)
{
    (void)h;
    (void)base;
    (void)size;
}

static int tiff_error_handler(TIFF *tif, void *user, const char *module, const char *fmt,
                              va_list ap)
{
    (void)tif;
    mem_stream *m = user;
    if (m && !m->has_err) {
        char msg[256];
        vsnprintf(msg, sizeof msg, fmt, ap);
        snprintf(m->err, m->errsize, "invalid TIFF (%s%s%s)", module ? module : "",
                 module ? ": " : "", msg);
        m->has_err = 1;
        m->err_short = m->short_read;
    }
    return 1; /* handled: nothing is printed */
}

/* Warnings (unknown tags and the like) are not reported, but one is an error here: libtiff only
 * warns when a strip's or tile's JPEG data is narrower or shorter than the strip or tile, and
 * then decodes it into part of the caller's buffer, leaving the rest of each row as it was
 * (heap contents, different from one read to the next). Such a file is damaged. */
static int tiff_warning_handler(TIFF *tif, void *user, const char *module, const char *fmt,
                                va_list ap)
{
    (void)tif;
    mem_stream *m = user;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (m && strstr(msg, "Improper JPEG strip/tile size")) {
        m->bad_data = 1;
        if (!m->has_err) {
            snprintf(m->err, m->errsize, "invalid TIFF (%s%s%s: the JPEG data does not fill its "
                     "strip or tile, whose rest it leaves undefined; a damaged file)",
                     module ? module : "", module ? ": " : "", msg);
            m->has_err = 1;
            m->err_short = m->short_read;
        }
    }
    return 1;
}

/* Converts `n` samples of the given type at byte offset `src` with stride `step` samples. */
static void convert_samples(const unsigned char *src, int bps, int stride, int64_t n, float *dst)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t k = i * stride;
        if (bps == 8) {
            dst[i] = (float)src[k];
        } else if (bps == 16) {
            uint16_t v;
            memcpy(&v, src + 2 * k, 2);
            dst[i] = (float)v;
        } else {
            float v;
            memcpy(&v, src + 4 * k, 4);
            dst[i] = v;
        }
    }
}

/* Where tiff_read_page puts the samples: floats (an image) or, for a label mask, unsigned 32-bit
 * labels (a float cannot hold every label above 2^24 exactly). A signed mask's first negative
 * value is noted (and stored as 0): the caller refuses the mask. */
typedef struct sample_sink {
    float *f;       /* an image's values, or NULL */
    uint32_t *u;    /* a mask's labels, or NULL */
    int is_signed;  /* the mask's samples are signed integers */
    int64_t neg_at; /* the first negative label's index, -1 if none */
    int64_t neg_val;
} sample_sink;

static void convert_into(const unsigned char *src, int bps, int stride, int64_t n,
                         sample_sink *s, int64_t at)
{
    if (s->f) {
        convert_samples(src, bps, stride, n, s->f + at);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t k = i * stride, v;
        if (bps == 8) {
            v = s->is_signed ? (int64_t)(int8_t)src[k] : (int64_t)src[k];
        } else if (bps == 16) {
            uint16_t w;
            memcpy(&w, src + 2 * k, 2);
            v = s->is_signed ? (int64_t)(int16_t)w : (int64_t)w;
        } else {
            uint32_t w;
            memcpy(&w, src + 4 * k, 4);
            v = s->is_signed ? (int64_t)(int32_t)w : (int64_t)w;
        }
        if (v < 0) {
            if (s->neg_at < 0) {
                s->neg_at = at + i;
                s->neg_val = v;
            }
            v = 0;
        }
        s->u[at + i] = (uint32_t)v;
    }
}

/* The largest tile side accepted for an image side of n: the side rounded up to TIFF's tile
 * granularity of 16, or 1024. Writers often keep one tile size (256, 512, 1024) for every
 * image and pyramid level, small ones included; a tile of 1024 x 1024 costs the decoder at most
 * 16 MiB. Larger tiles on a smaller image would make it allocate far more than the image it
 * reads (a fuzzed file asked for 8 GiB). */
static uint64_t tile_side_limit(uint32_t n)
{
    uint64_t r = ((uint64_t)n + 15) / 16 * 16;
    return r > 1024 ? r : 1024;
}

/* a * b, or UINT64_MAX when the product does not fit in 64 bits: the sizes of a file's header
 * (32-bit sides, tile sides and sample counts, multiplied together) are compared with limits
 * this way, never wrapped into a small one that passes them. */
static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    uint64_t p;
    return __builtin_mul_overflow(a, b, &p) ? UINT64_MAX : p;
}

/* The name of a colour model whose samples are not intensities of grey or RGB channels, NULL
 * for the accepted ones (grey either way round, RGB, and the linear camera data of DNG files,
 * read as stored; JPEG-compressed YCbCr is decoded to RGB before this is asked). A colour
 * filter array is a mosaic of red, green and blue pixels: read as grey it would be a different
 * image. */
static const char *unsupported_photometric(uint16_t photo)
{
    switch (photo) {
    case PHOTOMETRIC_PALETTE: return "palette";
    case PHOTOMETRIC_MASK: return "transparency mask";
    case PHOTOMETRIC_SEPARATED: return "CMYK";
    case PHOTOMETRIC_YCBCR: return "YCbCr";
    case PHOTOMETRIC_CIELAB: return "CIE Lab";
    case PHOTOMETRIC_ICCLAB: return "ICC Lab";
    case PHOTOMETRIC_ITULAB: return "ITU Lab";
    case PHOTOMETRIC_CFA: return "colour filter array";
    case PHOTOMETRIC_LOGL: return "LogL";
    case PHOTOMETRIC_LOGLUV: return "LogLuv";
    default: return NULL;
    }
}

/* Reads one directory's samples into planes (spp x H x W floats at dst). */
static int tiff_read_page(TIFF *tif, mem_stream *m, int page, uint32_t W, uint32_t H, int spp,
                          int bps, int planar, int64_t max_values, sample_sink *dst, int64_t base,
                          char *err, size_t errsize)
{
    const int64_t plane = (int64_t)W * H;
    const int bytes = bps / 8;
    if (TIFFIsTiled(tif)) {
        uint32_t tw = 0, th = 0;
        TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
        TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
        tmsize_t ts = TIFFTileSize(tif);
        if (tw == 0 || th == 0 || ts <= 0) {
            if (!m->has_err) set_err(err, errsize, "invalid TIFF tile size on page %d", page + 1);
            return -1;
        }
        int per_tile = planar == PLANARCONFIG_SEPARATE ? 1 : spp;
        if (tw > tile_side_limit(W) || th > tile_side_limit(H) ||
            mul_sat(mul_sat(tw, th), (uint64_t)per_tile) > (uint64_t)max_values) {
            set_err(err, errsize, "invalid TIFF: %ux%u tiles for a %ux%u image on page %d", tw,
                    th, W, H, page + 1);
            return -1;
        }
        if (mul_sat(mul_sat(mul_sat(tw, th), (uint64_t)per_tile), (uint64_t)bytes) > (uint64_t)ts) {
            set_err(err, errsize, "invalid TIFF: tile size inconsistent on page %d", page + 1);
            return -1;
        }
        unsigned char *buf = malloc((size_t)ts);
        if (!buf) {
            set_err(err, errsize, "out of memory (TIFF tile of %lld bytes)", (long long)ts);
            return -1;
        }
        int planes = planar == PLANARCONFIG_SEPARATE ? spp : 1;
        for (int s = 0; s < planes; s++)
            for (uint32_t y = 0; y < H; y += th)
                for (uint32_t x = 0; x < W; x += tw) {
                    /* zeroed: what a decoder leaves unwritten is never heap contents */
                    memset(buf, 0, (size_t)ts);
                    if (TIFFReadTile(tif, buf, x, y, 0, (uint16_t)s) < 0 || m->bad_data) {
                        if (!m->has_err)
                            set_err(err, errsize, "TIFF tile read failed on page %d", page + 1);
                        free(buf);
                        return -1;
                    }
                    uint32_t rows = y + th > H ? H - y : th, cols = x + tw > W ? W - x : tw;
                    for (uint32_t r = 0; r < rows; r++) {
                        const unsigned char *row = buf + (size_t)r * tw * per_tile * bytes;
                        if (planar == PLANARCONFIG_SEPARATE) {
                            convert_into(row, bps, 1, cols, dst, base + s * plane + (int64_t)(y + r) * W + x);
                        } else {
                            for (int c = 0; c < spp; c++)
                                convert_into(row + (size_t)c * bytes, bps, spp, cols, dst,
                                             base + c * plane + (int64_t)(y + r) * W + x);
                        }
                    }
                }
        free(buf);
        return 0;
    }
    tmsize_t ls = TIFFScanlineSize(tif);
    int per_line = planar == PLANARCONFIG_SEPARATE ? 1 : spp;
    if (ls <= 0 || (int64_t)W * per_line * bytes > ls) {
        if (!m->has_err) set_err(err, errsize, "invalid TIFF scanline size on page %d", page + 1);
        return -1;
    }
    unsigned char *buf = malloc((size_t)ls);
    if (!buf) {
        set_err(err, errsize, "out of memory (TIFF scanline)");
        return -1;
    }
    int planes = planar == PLANARCONFIG_SEPARATE ? spp : 1;
    for (int s = 0; s < planes; s++)
        for (uint32_t y = 0; y < H; y++) {
            memset(buf, 0, (size_t)ls);
            if (TIFFReadScanline(tif, buf, y, (uint16_t)s) < 0 || m->bad_data) {
                if (!m->has_err)
                    set_err(err, errsize, "TIFF read failed on page %d, row %u", page + 1, y);
                free(buf);
                return -1;
            }
            if (planar == PLANARCONFIG_SEPARATE)
                convert_into(buf, bps, 1, W, dst, base + s * plane + (int64_t)y * W);
            else
                for (int c = 0; c < spp; c++)
                    convert_into(buf + (size_t)c * bytes, bps, spp, W, dst,
                                 base + c * plane + (int64_t)y * W);
        }
    free(buf);
    return 0;
}

/* Whether the directory at `off` lies wholly inside the file, up to and including
 * its link to the next directory (4 bytes, 8 in BigTIFF, after the entries). */
static int tiff_directory_complete(TIFF *tif, uint64_t off, const mem_stream *m)
{
    const int big = TIFFIsBigTIFF(tif), be = TIFFIsBigEndian(tif);
    const uint64_t count_bytes = big ? 8 : 2, entry_bytes = big ? 20 : 12, link_bytes = big ? 8 : 4;
    const size_t size = m->size;
    if (off > size || size - off < count_bytes) return 0;
    unsigned char cb[8];
    if (m->fd >= 0) {
        if (pread(m->fd, cb, (size_t)count_bytes, (off_t)off) != (ssize_t)count_bytes) return 0;
    } else {
        memcpy(cb, m->data + off, (size_t)count_bytes);
    }
    uint64_t n = 0;
    for (uint64_t i = 0; i < count_bytes; i++) {
        uint64_t b = cb[be ? i : count_bytes - 1 - i];
        n = n << 8 | b;
    }
    if (n > (size - off - count_bytes) / entry_bytes) return 0;
    return size - off - count_bytes - n * entry_bytes >= link_bytes;
}

/* A file cut short (an interrupted copy or download, a share that went away mid-write) makes
 * libtiff fail with messages such as "Read error at scanline 4294967295" or "Can not read TIFF
 * directory count" that do not say so: when libtiff failed (an error of its own, or no file
 * opened) after a read past the end of the file, the message says the file is truncated, and
 * keeps libtiff's words after it (libtiff may fail later than that read: a JPEG page whose
 * tables were cut off decodes to "Quantization table 0x00 was not defined"). A read past the end
 * that libtiff only warned about (a tag's value at a bad offset, ignored) does not make the
 * reader's own refusal of a whole file (1-bit samples, too large) a truncation. */
static void tiff_say_truncated(mem_stream *m, int opened)
{
    if (m->has_err ? !m->err_short : opened || !m->short_read) return;
    char was[256];
    snprintf(was, sizeof was, "%s", m->err);
    if (strstr(was, "truncated")) return;
    const char *why = was;
    size_t n = strlen(was);
    if (strncmp(was, "invalid TIFF (", 14) == 0 && n > 14 && was[n - 1] == ')') {
        was[n - 1] = 0;
        why = was + 14;
    }
    set_err(m->err, m->errsize, "truncated TIFF: the file ends at byte %zu, before the data it "
            "points to (an incomplete copy?; %s)", m->size, why);
}

/* An image into out (*bits: the widest sample type of its pages, 8 or 16 for unsigned integers,
 * 32 for float), or with lab not NULL a label mask into lab (one channel of 8-, 16- or 32-bit
 * integers, unsigned or signed and then not negative). */
/* The full-resolution pages of a TIFF as decode_tiff found them, for reading them row by row
 * (tool_rows): the directory of each and how its samples are stored. */
typedef struct tiff_page_plan {
    int dir, page, spp, bps, is_signed, planar, jpeg_rgb;
} tiff_page_plan;
typedef struct tiff_plan {
    tiff_page_plan *pages;
    int n, channels, width, height;
} tiff_plan;

/* An H x W x C numpy array (channels last, C of 1, 2 or more than 4) that tifffile saved page
 * by page: H pages of W x C, all of one sample (pages of them read, channels the channels they
 * gave). Read as it is stored it would be H channels of a C-pixel-wide image, which the size
 * messages would then tell to crop or pad (and crop would say that the mask is not the
 * field's size), or, past MAX_CHANNELS rows, too many channels. */
static int looks_channels_last(int channels, int pages, uint32_t W0, uint32_t H0)
{
    return channels == pages && channels >= 16 && W0 <= 8 && H0 >= 16;
}

static void channels_last_err(char *err, size_t errsize, int pages, const char *more,
                              uint32_t W0, uint32_t H0)
{
    set_err(err, errsize, "%d%s pages of %ux%u pixels: this looks like an array of height x "
            "width x channels (channels last, here %u) that tifffile saved as a page per row, "
            "which reads as %d%s channels; save it with the channels first, a page per channel "
            "(tifffile.imwrite(path, np.moveaxis(x, -1, 0)))", pages, more, W0, H0, W0, pages,
            more);
}

/* With plan not NULL the pages are checked as for reading but not read: they go into plan, and
 * max_values caps one row's values (channels x width) instead of the image's. */
static int decode_tiff_at(const unsigned char *data, size_t size, int fd, int64_t max_values,
                          tool_image *out, tool_labels *lab, int *bits, tiff_plan *plan,
                          char *err, size_t errsize)
{
    mem_stream m = {data, size, 0, err, errsize, 0, 0, 0, fd, 0};
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (!opts) {
        set_err(err, errsize, "out of memory");
        return -1;
    }
    TIFFOpenOptionsSetErrorHandlerExtR(opts, tiff_error_handler, &m);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, tiff_warning_handler, &m);
    /* No single allocation inside libtiff larger than the image cap allows. */
    tmsize_t cap = (tmsize_t)(max_values * 4 > ((int64_t)1 << 20) ? max_values * 4 : ((int64_t)1 << 20));
    TIFFOpenOptionsSetMaxSingleMemAlloc(opts, cap);
    /* 'm' disables memory mapping, 'c'-less: strips are read through the procs. */
    TIFF *tif = TIFFClientOpenExt("image", "rm", &m, ms_read, ms_write, ms_seek, ms_close,
                                  ms_size, ms_map, ms_unmap, opts);
    TIFFOpenOptionsFree(opts);
    if (!tif) {
        if (!m.has_err) set_err(err, errsize, "invalid TIFF header");
        tiff_say_truncated(&m, 0);
        return -1;
    }
    uint32_t W0 = 0, H0 = 0;
    int channels = 0, page = 0, rc = -1, widest = 0;
    float *buf = NULL;
    uint32_t *lbuf = NULL;
    uint64_t last_dir = 0;
    do {
        last_dir = TIFFCurrentDirOffset(tif);
        uint32_t subtype = 0;
        if (TIFFGetField(tif, TIFFTAG_SUBFILETYPE, &subtype) && (subtype & FILETYPE_REDUCEDIMAGE)) {
            page++;
            continue; /* thumbnails and pyramid levels are not channels */
        }
        uint32_t W = 0, H = 0;
        uint16_t spp = 1, bps = 1, fmt = SAMPLEFORMAT_UINT, planar = PLANARCONFIG_CONTIG,
                 photo = PHOTOMETRIC_MINISBLACK;
        if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &W) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &H)) {
            set_err(err, errsize, "invalid TIFF: page %d has no image size", page + 1);
            goto done;
        }
        TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
        TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bps);
        TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &fmt);
        TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
        TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photo);
        if (W == 0 || H == 0) {
            set_err(err, errsize, "invalid TIFF: page %d is empty (%ux%u)", page + 1, W, H);
            goto done;
        }
        if (fmt == SAMPLEFORMAT_VOID) fmt = SAMPLEFORMAT_UINT;
        if (lab) {
            if (!((fmt == SAMPLEFORMAT_UINT || fmt == SAMPLEFORMAT_INT) &&
                  (bps == 8 || bps == 16 || bps == 32))) {
                set_err(err, errsize, "not a label mask: %u-bit %s samples (a mask holds integer "
                        "labels, 0 for background: 8-, 16- or 32-bit, unsigned or signed)", bps,
                        fmt == SAMPLEFORMAT_IEEEFP ? "float" : fmt == SAMPLEFORMAT_UINT ? "unsigned"
                        : fmt == SAMPLEFORMAT_INT ? "signed" : "other");
                goto done;
            }
            if (channels + spp > 1) {
                set_err(err, errsize, "not a label mask: %d or more channels (pages or samples); "
                        "a mask has one", channels + spp);
                goto done;
            }
        }
        int ok = lab || (fmt == SAMPLEFORMAT_UINT && (bps == 8 || bps == 16)) ||
                 (fmt == SAMPLEFORMAT_IEEEFP && bps == 32);
        if (!ok) {
            set_err(err, errsize,
                    "unsupported TIFF samples on page %d: %u-bit %s (supported: 8- or 16-bit "
                    "unsigned, 32-bit float)",
                    page + 1, bps,
                    fmt == SAMPLEFORMAT_INT ? "signed" : fmt == SAMPLEFORMAT_IEEEFP ? "float"
                    : fmt == SAMPLEFORMAT_UINT ? "unsigned" : "other");
            goto done;
        }
        int jpeg_rgb = 0;
        uint16_t compression = COMPRESSION_NONE;
        TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &compression);
        if (photo == PHOTOMETRIC_YCBCR && compression == COMPRESSION_JPEG && bps == 8 &&
            spp == 3 && planar == PLANARCONFIG_CONTIG) {
            /* JPEG-compressed YCbCr (slide scanners, microscope exporters): libjpeg converts
             * to RGB and upsamples the chroma itself, so the page reads as interleaved 8-bit
             * RGB. The pseudo-tag is reset with every directory. Planar YCbCr would still
             * give Y, Cb and Cr planes and stays refused with other YCbCr below. */
            if (!TIFFSetField(tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB)) {
                if (!m.has_err)
                    set_err(err, errsize, "invalid TIFF: JPEG YCbCr page %d cannot be decoded "
                            "as RGB", page + 1);
                goto done;
            }
            photo = PHOTOMETRIC_RGB;
            jpeg_rgb = 1;
        }
        /* Fiji/ImageJ writes label masks with a colour map (palette, LUT): for a mask the
         * colours are only display, the stored indices are the labels. */
        if (lab && photo == PHOTOMETRIC_PALETTE && spp == 1 && (bps == 8 || bps == 16))
            photo = PHOTOMETRIC_MINISBLACK;
        const char *model = unsupported_photometric(photo);
        if (model) {
            set_err(err, errsize, "unsupported TIFF colour model (%s, photometric %u) on page %d "
                    "(supported: grey, RGB, YCbCr as 8-bit interleaved JPEG)", model, photo,
                    page + 1);
            goto done;
        }
        if (planar != PLANARCONFIG_CONTIG && planar != PLANARCONFIG_SEPARATE) {
            set_err(err, errsize, "invalid TIFF planar configuration on page %d", page + 1);
            goto done;
        }
        if (spp < 1) {
            set_err(err, errsize, "invalid TIFF: page %d has no samples", page + 1);
            goto done;
        }
        if (channels == 0) {
            W0 = W;
            H0 = H;
        } else if (W != W0 || H != H0) {
            set_err(err, errsize, "TIFF page %d is %ux%u but page 1 is %ux%u (pages are channels "
                    "and must have one size)", page + 1, W, H, W0, H0);
            goto done;
        }
        if (channels + spp > MAX_CHANNELS) {
            if (!lab && spp == 1 && looks_channels_last(channels, page, W0, H0)) {
                /* a field of more rows than MAX_CHANNELS saved so */
                channels_last_err(err, errsize, channels, " or more", W0, H0);
                goto done;
            }
            set_err(err, errsize, "too many channels: %d or more on page %d (at most %d; every "
                    "page and every sample of a TIFF is a channel)", channels + spp, page + 1,
                    MAX_CHANNELS);
            goto done;
        }
        if (plan) {
            if (mul_sat((uint64_t)(channels + spp), W) > (uint64_t)max_values || H > INT32_MAX ||
                W > INT32_MAX) {
                set_err(err, errsize, "image too large: %ux%u with %d+ channels (limit %lld "
                        "values in a row)", W, H, channels + spp, (long long)max_values);
                goto done;
            }
            tiff_page_plan *np = realloc(plan->pages, sizeof *np * (size_t)(plan->n + 1));
            if (!np) {
                set_err(err, errsize, "out of memory");
                goto done;
            }
            plan->pages = np;
            np[plan->n++] = (tiff_page_plan){(int)TIFFCurrentDirectory(tif), page, spp, bps,
                                             fmt == SAMPLEFORMAT_INT, planar, jpeg_rgb};
            int b = fmt == SAMPLEFORMAT_IEEEFP ? 32 : bps;
            if (b > widest) widest = b;
            channels += spp;
            page++;
            continue;
        }
        if (mul_sat(mul_sat((uint64_t)(channels + spp), W), H) > (uint64_t)max_values) {
            set_err(err, errsize, "image too large: %ux%u with %d+ channels (limit %lld values)",
                    W, H, channels + spp, (long long)max_values);
            goto done;
        }
        sample_sink sink = {NULL, NULL, fmt == SAMPLEFORMAT_INT, -1, 0};
        if (lab) {
            lbuf = malloc(sizeof(uint32_t) * (size_t)W * H);
            if (!lbuf) {
                set_err(err, errsize, "out of memory decoding %ux%u mask", W, H);
                goto done;
            }
            sink.u = lbuf;
        } else {
            float *nb = realloc(buf, sizeof(float) * (size_t)(channels + spp) * W * H);
            if (!nb) {
                set_err(err, errsize, "out of memory decoding %ux%u image", W, H);
                goto done;
            }
            buf = nb;
            sink.f = buf;
        }
        if (tiff_read_page(tif, &m, page, W, H, spp, bps, planar, max_values, &sink,
                           (int64_t)channels * W * H, err, errsize) != 0)
            goto done;
        if (sink.neg_at >= 0) {
            set_err(err, errsize, "not a label mask: negative label %lld at row %lld, column %lld "
                    "(labels are 0 for background and positive for cells)",
                    (long long)sink.neg_val, (long long)(sink.neg_at / W),
                    (long long)(sink.neg_at % W));
            goto done;
        }
        int b = fmt == SAMPLEFORMAT_IEEEFP ? 32 : bps;
        if (b > widest) widest = b;
        channels += spp;
        page++;
    } while (TIFFReadDirectory(tif));
    if (m.has_err) goto done; /* a broken directory chain is an error, not a shorter stack */
    if (!tiff_directory_complete(tif, last_dir, &m)) {
        /* libtiff takes a link to the next page that the end of the file cuts off for the
         * end of the chain: a truncated stack would read as fewer channels. */
        set_err(err, errsize, "invalid TIFF: file truncated after page %d (its link to the "
                "next page is cut off)", page);
        goto done;
    }
    if (channels == 0) {
        set_err(err, errsize, "invalid TIFF: no full-resolution page");
        goto done;
    }
    if (!lab && looks_channels_last(channels, page, W0, H0)) {
        channels_last_err(err, errsize, channels, "", W0, H0);
        goto done;
    }
    if (plan) {
        plan->channels = channels;
        plan->width = (int)W0;
        plan->height = (int)H0;
    } else if (lab) {
        lab->height = (int)H0;
        lab->width = (int)W0;
        lab->data = lbuf;
        lbuf = NULL;
    } else {
        out->channels = channels;
        out->height = (int)H0;
        out->width = (int)W0;
        out->data = buf;
        buf = NULL;
    }
    if (bits) *bits = widest;
    rc = 0;
done:
    if (rc != 0) tiff_say_truncated(&m, 1);
    free(buf);
    free(lbuf);
    TIFFClose(tif);
    return rc;
}

static int decode_tiff(const unsigned char *data, size_t size, int64_t max_values, tool_image *out,
                       tool_labels *lab, int *bits, char *err, size_t errsize)
{
    return decode_tiff_at(data, size, -1, max_values, out, lab, bits, NULL, err, errsize);
}

/* ---- PNG ------------------------------------------------------------------------------------- */

/* The longest side read: libpng allocates row buffers of that width before the image's values
 * are counted against the cap. */
#define PNG_MAX_SIDE (1u << 20)

typedef struct png_src {
    const unsigned char *data;
    size_t size, pos;
    char msg[200];
    int over_limit; /* libpng warned that a side exceeds PNG_MAX_SIDE */
    int fd;         /* >= 0: read from this descriptor (pread at pos), not from data */
} png_src;

static void png_mem_read(png_structp png, png_bytep out, size_t n)
{
    png_src *s = png_get_io_ptr(png);
    if (n > s->size - s->pos) png_error(png, "file truncated");
    if (s->fd >= 0) {
        size_t got = 0;
        while (got < n) {
            ssize_t r = pread(s->fd, out + got, n - got, (off_t)(s->pos + got));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) png_error(png, "file truncated");
            got += (size_t)r;
        }
        s->pos += n;
        return;
    }
    memcpy(out, s->data + s->pos, n);
    s->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    if (s) snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    if (s && strstr(msg, "exceeds user limit")) s->over_limit = 1;
}

/* indices: a palette image reads as its stored indices (one channel), not its colours (masks). */
static int decode_png(const unsigned char *data, size_t size, int64_t max_values, tool_image *out,
                      int *bits, int indices, char *err, size_t errsize)
{
    png_src src = {data, size, 0, "unknown error", 0, -1};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error,
                                             png_on_warning);
    if (!png) {
        set_err(err, errsize, "out of memory");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    /* volatile: modified between setjmp and a possible longjmp. */
    unsigned char *volatile pix = NULL;
    png_bytep *volatile rows = NULL;
    float *volatile fdata = NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        if (src.over_limit)
            set_err(err, errsize, "PNG too large: sides of more than %u pixels are not read",
                    PNG_MAX_SIDE);
        else
            set_err(err, errsize, "invalid PNG (%s)", info ? src.msg : "out of memory");
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        free(pix);
        free(rows);
        free(fdata);
        return -1;
    }
    png_set_read_fn(png, &src, png_mem_read);
    png_set_user_limits(png, PNG_MAX_SIDE, PNG_MAX_SIDE);
    png_set_chunk_malloc_max(png, (png_alloc_size_t)8 << 20);
    png_read_info(png, info);
    png_uint_32 W = png_get_image_width(png, info), H = png_get_image_height(png, info);
    int ctype = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (ctype == PNG_COLOR_TYPE_PALETTE && indices) {
        if (depth < 8) png_set_packing(png); /* 1, 2 or 4-bit indices: one byte each */
    } else if (ctype == PNG_COLOR_TYPE_PALETTE) {
        png_set_palette_to_rgb(png);
    }
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int C = png_get_channels(png, info), bd = png_get_bit_depth(png, info);
    if (C < 1 || C > 4 || (bd != 8 && bd != 16)) {
        set_err(err, errsize, "unsupported PNG (%d channels, %d bits)", C, bd);
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    /* The channels kept: all that are stored. A palette image is its colours (RGB); libpng adds
     * an alpha channel when it has a transparency (tRNS) chunk, which is dropped. */
    int K = ctype == PNG_COLOR_TYPE_PALETTE && C > 3 ? 3 : C;
    if ((int64_t)W * H * K > max_values) {
        set_err(err, errsize, "image too large: %ux%u with %d channel%s (limit %lld values)", W,
                H, K, K == 1 ? "" : "s", (long long)max_values);
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    size_t rowbytes = png_get_rowbytes(png, info);
    if (rowbytes < (size_t)W * C * (bd / 8)) png_error(png, "row size inconsistent");
    pix = malloc(rowbytes * H);
    rows = malloc(sizeof(png_bytep) * H);
    fdata = malloc(sizeof(float) * (size_t)W * H * K);
    if (!pix || !rows || !fdata) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < H; y++) rows[y] = pix + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    const int64_t plane = (int64_t)W * H;
    for (png_uint_32 y = 0; y < H; y++) {
        const unsigned char *r = rows[y];
        for (png_uint_32 x = 0; x < W; x++)
            for (int c = 0; c < K; c++) {
                size_t k = (size_t)x * C + c;
                float v = bd == 8 ? (float)r[k] : (float)((r[2 * k] << 8) | r[2 * k + 1]);
                fdata[c * plane + (int64_t)y * W + x] = v;
            }
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(pix);
    free(rows);
    out->channels = K;
    out->height = (int)H;
    out->width = (int)W;
    out->data = fdata;
    if (bits) *bits = bd;
    return 0;
}

void image_where(const tool_image *img, int64_t i, char *buf, size_t size)
{
    int64_t plane = (int64_t)img->height * img->width;
    snprintf(buf, size, "channel %lld at row %lld, column %lld", (long long)(i / plane + 1),
             (long long)(i % plane / img->width), (long long)(i % img->width));
}

/* What a file that is neither TIFF nor PNG is, from its first bytes, for the formats a lab's
 * folder holds beside its TIFFs (or under a .tif name): other images, microscope vendors' own
 * formats and containers. NULL when it is none of them (text, a damaged file). */
static const char *other_format(const unsigned char *d, size_t n)
{
    static const struct {
        size_t at, len;
        const char *magic, *what;
    } sigs[] = {
        {0, 3, "\xFF\xD8\xFF", "a JPEG image"},
        {0, 6, "GIF87a", "a GIF image"},
        {0, 6, "GIF89a", "a GIF image"},
        {0, 12, "\0\0\0\x0CjP  \r\n\x87\n", "a JPEG 2000 image"},
        {0, 4, "\xFF\x4F\xFF\x51", "a JPEG 2000 image"},
        {0, 10, "ZISRAWFILE", "a Zeiss CZI file"},
        {0, 4, "\xDA\xCE\xBE\x0A", "a Nikon ND2 file"},
        {0, 8, "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1",
         "an OLE2 compound file (Olympus OIB, Zeiss ZVI)"},
        {0, 8, "\x89HDF\r\n\x1A\n", "an HDF5 file (Imaris IMS, BigDataViewer)"},
        {128, 4, "DICM", "a DICOM file"},
        {0, 6, "\x93NUMPY", "a NumPy array (.npy)"},
        {0, 4, "PK\x03\x04", "a ZIP archive"},
        {0, 4, "8BPS", "a Photoshop document"},
    };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (n >= sigs[i].at + sigs[i].len && !memcmp(d + sigs[i].at, sigs[i].magic, sigs[i].len))
            return sigs[i].what;
    /* Leica LIF: a 0x70 tag, a length, then the 0x2A of its XML block */
    if (n >= 9 && d[0] == 0x70 && !d[1] && !d[2] && !d[3] && d[8] == 0x2A) return "a Leica LIF file";
    if (n >= 14 && d[0] == 'B' && d[1] == 'M' && !d[6] && !d[7] && !d[8] && !d[9])
        return "a BMP image";
    return NULL;
}

static int decode_any(const unsigned char *data, size_t size, int64_t max_values, tool_image *out,
                      int *bits, char *err, size_t errsize)
{
    memset(out, 0, sizeof *out);
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    int rc;
    if (size >= 8 && memcmp(data, png_sig, 8) == 0) {
        rc = decode_png(data, size, max_values, out, bits, 0, err, errsize);
    } else if (size >= 4 && ((data[0] == 'I' && data[1] == 'I') || (data[0] == 'M' && data[1] == 'M'))) {
        rc = decode_tiff(data, size, max_values, out, NULL, bits, err, errsize);
    } else {
        const char *what = size == 0 ? NULL : other_format(data, size);
        if (what)
            set_err(err, errsize, "not a TIFF or PNG file (it is %s; convert it to TIFF or PNG, "
                    "e.g. in Fiji, which opens microscope formats with Bio-Formats)", what);
        else
            set_err(err, errsize, size == 0 ? "empty file" : "not a TIFF or PNG file");
        return -1;
    }
    if (rc != 0) return -1;
    /* Float images from processing pipelines may mark masked pixels (background) as NaN: the
     * network cannot take them and no normalisation makes them mean something, so the file is
     * refused (a bad file: --skip-bad leaves it out) with the counts and the first one's place. */
    int64_t n = (int64_t)out->channels * out->height * out->width, first = -1, nans = 0, infs = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(out->data[i])) {
            if (first < 0) first = i;
            if (isnan(out->data[i])) nans++;
            else infs++;
        }
    if (first >= 0) {
        char where[96];
        image_where(out, first, where, sizeof where);
        set_err(err, errsize,
                "non-finite values: %lld NaN and %lld infinite of %lld (the first in %s); "
                "replace them with numbers (masked background: 0) or leave the file out",
                (long long)nans, (long long)infs, (long long)n, where);
        image_free(out);
        return -1;
    }
    return 0;
}

int image_decode(const unsigned char *data, size_t size, int64_t max_values, tool_image *out,
                 char *err, size_t errsize)
{
    return decode_any(data, size, max_values, out, NULL, err, errsize);
}

int image_read_bits(const char *path, tool_image *out, int *bits, char *err, size_t errsize)
{
    unsigned char *data;
    size_t size;
    memset(out, 0, sizeof *out);
    if (bits) *bits = 0;
    if (read_file(path, TOOL_IMAGE_MAX_FILE, &data, &size, err, errsize) != 0) return -1;
    int rc = decode_any(data, size, TOOL_IMAGE_MAX_VALUES, out, bits, err, errsize);
    free(data);
    return rc;
}

int image_read(const char *path, tool_image *out, char *err, size_t errsize)
{
    return image_read_bits(path, out, NULL, err, errsize);
}

void labels_free(tool_labels *lab)
{
    if (!lab) return;
    free(lab->data);
    lab->data = NULL;
    lab->height = lab->width = 0;
}

int labels_decode(const unsigned char *data, size_t size, int64_t max_values, tool_labels *out,
                  char *err, size_t errsize)
{
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memset(out, 0, sizeof *out);
    if (size >= 4 && ((data[0] == 'I' && data[1] == 'I') || (data[0] == 'M' && data[1] == 'M')))
        return decode_tiff(data, size, max_values, NULL, out, NULL, err, errsize);
    if (!(size >= 8 && memcmp(data, png_sig, 8) == 0)) {
        /* cellpose's _seg.npy (a pickled dict of masks, outlines, flows) is the file a user
         * most often gives here: say which files are the masks. */
        const char *what = size == 0 ? NULL : other_format(data, size);
        if (what && !strcmp(what, "a NumPy array (.npy)"))
            set_err(err, errsize, "not a TIFF or PNG file (it is %s; a label mask is a TIFF or "
                    "PNG: cellpose writes them with --save_tif or --save_png, *_cp_masks.tif or "
                    ".png, not its _seg.npy; from numpy, tifffile.imwrite(path, masks))", what);
        else if (what)
            set_err(err, errsize, "not a TIFF or PNG file (it is %s; save the label mask as a "
                    "TIFF or PNG)", what);
        else
            set_err(err, errsize, size == 0 ? "empty file" : "not a TIFF or PNG file");
        return -1;
    }
    /* A PNG holds at most 16-bit samples, which a float keeps exactly: read as an image, then
     * one grey channel only. A palette PNG reads as its stored indices: for a mask the colours
     * are only display. */
    tool_image img;
    if (decode_png(data, size, max_values, &img, NULL, 1, err, errsize) != 0) return -1;
    if (img.channels != 1) {
        set_err(err, errsize, "not a label mask: a PNG with %d channels (colour or alpha); a "
                "mask is one grey (or palette) channel of integer labels", img.channels);
        image_free(&img);
        return -1;
    }
    int64_t n = (int64_t)img.height * img.width;
    out->data = malloc(sizeof(uint32_t) * (size_t)(n > 0 ? n : 1));
    if (!out->data) {
        set_err(err, errsize, "out of memory decoding %dx%d mask", img.width, img.height);
        image_free(&img);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) out->data[i] = (uint32_t)img.data[i];
    out->height = img.height;
    out->width = img.width;
    image_free(&img);
    return 0;
}

int labels_read(const char *path, tool_labels *out, char *err, size_t errsize)
{
    unsigned char *data;
    size_t size;
    memset(out, 0, sizeof *out);
    if (read_file(path, TOOL_IMAGE_MAX_FILE, &data, &size, err, errsize) != 0) return -1;
    int rc = labels_decode(data, size, TOOL_IMAGE_MAX_VALUES, out, err, errsize);
    free(data);
    return rc;
}

/* ---- writing ---------------------------------------------------------------------------------- */

/* An unsigned integer sample of 8 or 16 bits: x rounded, clamped to the range. */
static unsigned to_sample(float x, int bits)
{
    double mx = bits == 8 ? 255.0 : 65535.0;
    return (unsigned)(x < 0 ? 0 : x > mx ? mx : floor((double)x + 0.5));
}

static void to_bytes(const float *v, int64_t n, int stride, int bits, unsigned char *dst)
{
    for (int64_t i = 0; i < n; i++) {
        float x = v[i];
        if (bits == 32) {
            memcpy(dst + 4 * i * stride, &x, 4);
            continue;
        }
        if (bits == 8) {
            dst[i * stride] = (unsigned char)to_sample(x, bits);
        } else {
            uint16_t u = (uint16_t)to_sample(x, bits);
            memcpy(dst + 2 * i * stride, &u, 2);
        }
    }
}

/* The first error libtiff reports while writing, and errno then (the failed write's). */
typedef struct {
    char msg[200];
    int err, failed;
} tiff_write_error;

static int tiff_write_error_handler(TIFF *tif, void *user, const char *module, const char *fmt,
                                    va_list ap)
{
    (void)tif;
    tiff_write_error *we = user;
    if (we && !we->failed) {
        we->err = errno;
        char msg[160];
        vsnprintf(msg, sizeof msg, fmt, ap);
        snprintf(we->msg, sizeof we->msg, "%s%s%s", module ? module : "", module ? ": " : "", msg);
        we->failed = 1;
    }
    return 1; /* handled: nothing is printed */
}

int image_write_tiff(const char *path, const tool_image *img, int bits, tiff_layout layout,
                     char *err, size_t errsize)
{
    if (bits != 8 && bits != 16 && bits != 32) {
        set_err(err, errsize, "TIFF bits must be 8, 16 or 32");
        return -1;
    }
    /* libtiff's errors (a write that failed: a full disk, a file size limit) are kept for the
     * message, not printed by libtiff's own handler */
    tiff_write_error we = {"", 0, 0};
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (!opts) {
        set_err(err, errsize, "cannot create %s: out of memory", path);
        return -1;
    }
    TIFFOpenOptionsSetErrorHandlerExtR(opts, tiff_write_error_handler, &we);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, tiff_warning_handler, NULL);
    errno = 0;
    TIFF *tif = TIFFOpenExt(path, "w", opts);
    TIFFOpenOptionsFree(opts);
    if (!tif) {
        set_err(err, errsize, "cannot create %s: %s", path, errno ? strerror(errno) : we.msg);
        return -1;
    }
    const int C = img->channels, W = img->width, H = img->height, B = bits / 8;
    const int64_t plane = (int64_t)W * H;
    int pages = layout == TIFF_PAGES ? C : 1, spp = layout == TIFF_PAGES ? 1 : C;
    unsigned char *line = xmalloc((size_t)W * spp * B);
    int rc = 0;
    for (int p = 0; p < pages && rc == 0; p++) {
        TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, (uint32_t)W);
        TIFFSetField(tif, TIFFTAG_IMAGELENGTH, (uint32_t)H);
        TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)spp);
        TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, (uint16_t)bits);
        TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT,
                     (uint16_t)(bits == 32 ? SAMPLEFORMAT_IEEEFP : SAMPLEFORMAT_UINT));
        TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, (uint16_t)PHOTOMETRIC_MINISBLACK);
        TIFFSetField(tif, TIFFTAG_PLANARCONFIG,
                     (uint16_t)(layout == TIFF_PLANAR ? PLANARCONFIG_SEPARATE : PLANARCONFIG_CONTIG));
        TIFFSetField(tif, TIFFTAG_COMPRESSION, (uint16_t)COMPRESSION_NONE);
        if (layout != TIFF_TILED)
            TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, TIFFDefaultStripSize(tif, 0));
        if (spp > 1) {
            uint16_t extra[MAX_CHANNELS];
            for (int i = 0; i < spp - 1; i++) extra[i] = EXTRASAMPLE_UNSPECIFIED;
            TIFFSetField(tif, TIFFTAG_EXTRASAMPLES, (uint16_t)(spp - 1), extra);
        }
        if (pages > 1) {
            TIFFSetField(tif, TIFFTAG_SUBFILETYPE, (uint32_t)FILETYPE_PAGE);
            TIFFSetField(tif, TIFFTAG_PAGENUMBER, (uint16_t)p, (uint16_t)pages);
        }
        if (layout == TIFF_TILED) {
            TIFFSetField(tif, TIFFTAG_TILEWIDTH, (uint32_t)16);
            TIFFSetField(tif, TIFFTAG_TILELENGTH, (uint32_t)16);
            tmsize_t ts = TIFFTileSize(tif);
            unsigned char *tile = xcalloc((size_t)(ts > 0 ? ts : 1), 1);
            for (int y0 = 0; y0 < H && rc == 0; y0 += 16)
                for (int x0 = 0; x0 < W && rc == 0; x0 += 16) {
                    memset(tile, 0, (size_t)ts);
                    for (int y = y0; y < y0 + 16 && y < H; y++)
                        for (int c = 0; c < C; c++) {
                            int n = W - x0 < 16 ? W - x0 : 16;
                            to_bytes(img->data + c * plane + (int64_t)y * W + x0, n, C, bits,
                                     tile + ((size_t)(y - y0) * 16 * C + c) * B);
                        }
                    if (TIFFWriteTile(tif, tile, (uint32_t)x0, (uint32_t)y0, 0, 0) < 0) rc = -1;
                }
            free(tile);
        } else if (layout == TIFF_PLANAR) {
            for (int c = 0; c < C && rc == 0; c++)
                for (int y = 0; y < H && rc == 0; y++) {
                    to_bytes(img->data + c * plane + (int64_t)y * W, W, 1, bits, line);
                    if (TIFFWriteScanline(tif, line, (uint32_t)y, (uint16_t)c) < 0) rc = -1;
                }
        } else {
            for (int y = 0; y < H && rc == 0; y++) {
                for (int c = 0; c < spp; c++) {
                    int ch = layout == TIFF_PAGES ? p : c;
                    to_bytes(img->data + ch * plane + (int64_t)y * W, W, spp, bits,
                             line + (size_t)c * B);
                }
                if (TIFFWriteScanline(tif, line, (uint32_t)y, 0) < 0) rc = -1;
            }
        }
        if (rc == 0 && pages > 1 && !TIFFWriteDirectory(tif)) rc = -1;
    }
    /* One page: its data (a strip smaller than the default strip size is held in memory) and its
     * directory are written here, not by TIFFClose, which cannot say that it failed (a full disk
     * left a cut-off file and "wrote 8 images") */
    if (rc == 0 && pages == 1 && !TIFFFlush(tif)) rc = -1;
    free(line);
    TIFFClose(tif);
    if (rc != 0 || we.failed) {
        rc = -1;
        if (we.failed && we.err)
            set_err(err, errsize, "writing %s failed: %s (%s)", path, we.msg, strerror(we.err));
        else if (we.failed)
            set_err(err, errsize, "writing %s failed: %s", path, we.msg);
        else
            set_err(err, errsize, "writing %s failed", path);
    }
    return rc;
}

int image_write_png(const char *path, const tool_image *img, int bits, char *err, size_t errsize)
{
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                 PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    if ((bits != 8 && bits != 16) || img->channels < 1 || img->channels > 4) {
        set_err(err, errsize, "PNG holds 1 to 4 channels of 8 or 16 bits");
        return -1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        set_err(err, errsize, "cannot create %s", path);
        return -1;
    }
    png_src src = {NULL, 0, 0, "unknown error", 0, -1};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error,
                                              png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    const int C = img->channels, W = img->width, H = img->height, B = bits / 8;
    unsigned char *volatile row = NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        set_err(err, errsize, "writing %s failed (%s)", path, src.msg);
        png_destroy_write_struct(&png, &info);
        free(row);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, bits, types[C], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    row = xmalloc((size_t)W * C * B);
    const int64_t plane = (int64_t)W * H;
    for (int y = 0; y < H; y++) {
        for (int x = 0; x < W; x++)
            for (int c = 0; c < C; c++) {
                unsigned u = to_sample(img->data[c * plane + (int64_t)y * W + x], bits);
                size_t k = (size_t)x * C + c;
                if (bits == 8) {
                    row[k] = (unsigned char)u;
                } else {
                    row[2 * k] = (unsigned char)(u >> 8);
                    row[2 * k + 1] = (unsigned char)(u & 0xff);
                }
            }
        png_write_row(png, row);
    }
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(row);
    if (fclose(f) != 0) {
        set_err(err, errsize, "writing %s failed", path);
        return -1;
    }
    return 0;
}

/* ---- reading row by row (crop) ----------------------------------------------------------------- */

/* One TIFF handle of a tool_rows: a page (interleaved samples) or one plane of a page (planar
 * samples), each with its own position in the file, so that every strip is decoded once. */
typedef struct rows_src {
    mem_stream m;
    char err[512];
    TIFF *tif;
    int sample, per, ch0, bps, is_signed, page, tiled;
    int raw;      /* uncompressed strips or tiles, read a row at a time at libtiff's offsets */
    tmsize_t ls;  /* raw: bytes of one row (of a strip), of one tile's row (tiled) */
    uint32_t rps; /* raw: rows per strip */
    uint32_t tw, th;
    unsigned char *line; /* one row, or (tiled) a row of tiles: th rows of the image's width */
    unsigned char *tile;
    int64_t band0; /* tiled: the first row held in line, -1 for none */
} rows_src;

struct tool_rows {
    int fd, labels, channels, height, width, bits, next, kind; /* kind: 0 TIFF, 1 PNG, 2 whole */
    size_t size;
    int nsrc;
    rows_src *src;
    png_structp png;
    png_infop info;
    png_src ps;
    unsigned char *prow;
    int pC, pK, pbd;
    tool_image img;
    tool_labels lab;
};

void rows_close(tool_rows *r)
{
    if (!r) return;
    for (int i = 0; i < r->nsrc; i++) {
        if (r->src[i].tif) TIFFClose(r->src[i].tif);
        free(r->src[i].line);
        free(r->src[i].tile);
    }
    free(r->src);
    if (r->png) png_destroy_read_struct(&r->png, r->info ? &r->info : NULL, NULL);
    free(r->prow);
    image_free(&r->img);
    labels_free(&r->lab);
    if (r->fd >= 0) close(r->fd);
    free(r);
}

/* The whole file decoded at once, served row by row: files that cannot be read in rows
 * (interlaced PNG) and the files refused anyway (other formats, empty), whose messages stay
 * those of image_read_bits and labels_read. */
static int rows_open_whole(const char *path, tool_rows *r, char *err, size_t errsize)
{
    r->kind = 2;
    if (r->labels) {
        if (labels_read(path, &r->lab, err, errsize) != 0) return -1;
        r->channels = 1;
        r->height = r->lab.height;
        r->width = r->lab.width;
    } else {
        if (image_read_bits(path, &r->img, &r->bits, err, errsize) != 0) return -1;
        r->channels = r->img.channels;
        r->height = r->img.height;
        r->width = r->img.width;
    }
    return 0;
}

static int rows_open_tiff(tool_rows *r, char *err, size_t errsize)
{
    tiff_plan plan = {NULL, 0, 0, 0, 0};
    tool_image dummy;
    tool_labels dlab;
    if (decode_tiff_at(NULL, r->size, r->fd, TOOL_IMAGE_MAX_VALUES, r->labels ? NULL : &dummy,
                       r->labels ? &dlab : NULL, &r->bits, &plan, err, errsize) != 0) {
        free(plan.pages);
        return -1;
    }
    r->channels = plan.channels;
    r->width = plan.width;
    r->height = plan.height;
    int n = 0;
    for (int p = 0; p < plan.n; p++)
        n += plan.pages[p].planar == PLANARCONFIG_SEPARATE ? plan.pages[p].spp : 1;
    r->src = calloc((size_t)n, sizeof *r->src);
    if (!r->src) {
        free(plan.pages);
        set_err(err, errsize, "out of memory");
        return -1;
    }
    const uint32_t W = (uint32_t)r->width, H = (uint32_t)r->height;
    int ch = 0, rc = -1;
    for (int p = 0; p < plan.n; p++) {
        const tiff_page_plan *pg = &plan.pages[p];
        int sep = pg->planar == PLANARCONFIG_SEPARATE;
        for (int s = 0; s < (sep ? pg->spp : 1); s++) {
            rows_src *q = &r->src[r->nsrc++];
            q->m = (mem_stream){NULL, r->size, 0, q->err, sizeof q->err, 0, 0, 0, r->fd, 0};
            q->sample = sep ? s : 0;
            q->per = sep ? 1 : pg->spp;
            q->ch0 = ch;
            ch += q->per;
            q->bps = pg->bps;
            q->is_signed = pg->is_signed;
            q->page = pg->page;
            q->band0 = -1;
            TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
            if (!opts) {
                set_err(err, errsize, "out of memory");
                goto out;
            }
            TIFFOpenOptionsSetErrorHandlerExtR(opts, tiff_error_handler, &q->m);
            TIFFOpenOptionsSetWarningHandlerExtR(opts, tiff_warning_handler, &q->m);
            TIFFOpenOptionsSetMaxSingleMemAlloc(opts, (tmsize_t)TOOL_IMAGE_MAX_VALUES * 4);
            q->tif = TIFFClientOpenExt("image", "rm", &q->m, ms_read, ms_write, ms_seek, ms_close,
                                       ms_size, ms_map, ms_unmap, opts);
            TIFFOpenOptionsFree(opts);
            if (!q->tif || !TIFFSetDirectory(q->tif, (tdir_t)pg->dir) ||
                (pg->jpeg_rgb && !TIFFSetField(q->tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB))) {
                if (!q->m.has_err)
                    set_err(q->err, sizeof q->err, "invalid TIFF: page %d cannot be read again",
                            pg->page + 1);
                snprintf(err, errsize, "%s", q->err);
                goto out;
            }
            const int bytes = pg->bps / 8;
            if (TIFFIsTiled(q->tif)) {
                q->tiled = 1;
                TIFFGetField(q->tif, TIFFTAG_TILEWIDTH, &q->tw);
                TIFFGetField(q->tif, TIFFTAG_TILELENGTH, &q->th);
                tmsize_t ts = TIFFTileSize(q->tif);
                if (q->tw == 0 || q->th == 0 || ts <= 0 || q->tw > tile_side_limit(W) ||
                    q->th > tile_side_limit(H) ||
                    mul_sat(mul_sat(mul_sat(q->tw, q->th), (uint64_t)q->per), (uint64_t)bytes) >
                        (uint64_t)ts) {
                    set_err(err, errsize, "invalid TIFF: %ux%u tiles for a %ux%u image on page %d",
                            q->tw, q->th, W, H, pg->page + 1);
                    goto out;
                }
                /* libtiff decodes a whole tile before its first row, and crop holds a row of
                 * tiles: tiles as tall as the image held the whole field. Rows of uncompressed
                 * tiles are read from the file directly, a tile row at a time at the tile's
                 * offset from libtiff, when every tile lies whole in the file (libtiff wants
                 * whole tiles, the edge ones too) and is stored most significant bit first.
                 * Compressed tiles are decoded whole by libtiff, a row of them held at once. */
                uint16_t comp = COMPRESSION_NONE, fill = FILLORDER_MSB2LSB;
                TIFFGetFieldDefaulted(q->tif, TIFFTAG_COMPRESSION, &comp);
                TIFFGetFieldDefaulted(q->tif, TIFFTAG_FILLORDER, &fill);
                tmsize_t trs = TIFFTileRowSize(q->tif);
                q->raw = comp == COMPRESSION_NONE && fill == FILLORDER_MSB2LSB && trs > 0 &&
                         mul_sat(mul_sat(q->tw, (uint64_t)q->per), (uint64_t)bytes) <=
                             (uint64_t)trs &&
                         mul_sat((uint64_t)trs, q->th) <= (uint64_t)ts;
                for (uint32_t t = 0; q->raw && t < TIFFNumberOfTiles(q->tif); t++) {
                    uint64_t off = TIFFGetStrileOffset(q->tif, t),
                             cnt = TIFFGetStrileByteCount(q->tif, t);
                    q->raw = off > 0 && off <= r->size && cnt <= r->size - off &&
                             cnt >= (uint64_t)ts;
                }
                q->ls = trs;
                /* a row (W x per values: at most TOOL_IMAGE_MAX_VALUES, checked in the plan) */
                const uint64_t row_bytes = mul_sat(mul_sat(W, (uint64_t)q->per), (uint64_t)bytes);
                if (q->raw) {
                    q->line = malloc((size_t)row_bytes);
                } else {
                    /* Compressed: a tile decoded whole, and a row of them held (of the image's
                     * rows, th at most). A header's tile height (up to the image's, 2^31 rows)
                     * times its width would ask for terabytes, or, multiplied unchecked, wrap
                     * into a small buffer that the rows then overrun: both held within the
                     * bytes that image_read holds for its limit of values (as floats), the
                     * largest allocation libtiff is allowed here. In bytes, not values: a row
                     * of 1024-row tiles of an 8-bit RGB image 90000 wide (276 M values, 276 MB)
                     * is read, as before the limit. */
                    const uint64_t band = q->th < H ? q->th : H,
                                   limit = (uint64_t)TOOL_IMAGE_MAX_VALUES * 4,
                                   band_bytes = mul_sat(
                                       mul_sat(mul_sat(band, W), (uint64_t)q->per), (uint64_t)bytes);
                    if (band_bytes > limit || (uint64_t)ts > limit) {
                        set_err(err, errsize, "compressed TIFF tiles too large on page %d: %ux%u "
                                "tiles of %d sample%s for a %ux%u image, a row of them %llu "
                                "bytes decoded at once (limit %llu); save the image with "
                                "smaller tiles (such as 512x512), in strips, or uncompressed",
                                pg->page + 1, q->tw, q->th, q->per, q->per == 1 ? "" : "s", W, H,
                                (unsigned long long)(band_bytes > (uint64_t)ts ? band_bytes
                                                                               : (uint64_t)ts),
                                (unsigned long long)limit);
                        goto out;
                    }
                    q->tile = malloc((size_t)ts);
                    q->line = malloc((size_t)band_bytes);
                }
            } else {
                tmsize_t ls = TIFFScanlineSize(q->tif);
                if (ls <= 0 || (int64_t)W * q->per * bytes > ls) {
                    set_err(err, errsize, "invalid TIFF scanline size on page %d", pg->page + 1);
                    goto out;
                }
                q->line = malloc((size_t)ls);
                /* libtiff reads a whole strip into memory before its first row (an image of
                 * one strip per plane, as tifffile writes it, was held whole): rows of
                 * uncompressed strips are read from the file directly, at the strip's offset
                 * from libtiff, when every strip lies whole in the file */
                uint16_t comp = COMPRESSION_NONE;
                TIFFGetFieldDefaulted(q->tif, TIFFTAG_COMPRESSION, &comp);
                uint32_t rps = 0;
                TIFFGetFieldDefaulted(q->tif, TIFFTAG_ROWSPERSTRIP, &rps);
                if (rps > H) rps = H;
                /* libtiff reverses the bits of every byte of a strip stored least significant
                 * bit first (FillOrder 2), at any sample depth: such strips go through it */
                uint16_t fill = FILLORDER_MSB2LSB;
                TIFFGetFieldDefaulted(q->tif, TIFFTAG_FILLORDER, &fill);
                q->raw = comp == COMPRESSION_NONE && rps > 0 && fill == FILLORDER_MSB2LSB;
                /* each strip holds rps rows of its plane, the last one of a plane the rest */
                const uint32_t per_plane = rps ? (H - 1) / rps + 1 : 0;
                for (uint32_t st = 0; q->raw && st < TIFFNumberOfStrips(q->tif); st++) {
                    uint64_t off = TIFFGetStrileOffset(q->tif, st),
                             cnt = TIFFGetStrileByteCount(q->tif, st),
                             row0 = (uint64_t)(st % per_plane) * rps,
                             rows = H - row0 < rps ? H - row0 : rps;
                    q->raw = off > 0 && off <= r->size && cnt <= r->size - off &&
                             cnt >= rows * (uint64_t)ls;
                }
                q->ls = ls;
                q->rps = rps;
            }
            if (!q->line || (q->tiled && !q->raw && !q->tile)) {
                set_err(err, errsize, "out of memory (TIFF rows of page %d)", pg->page + 1);
                goto out;
            }
        }
    }
    rc = 0;
out:
    free(plan.pages);
    return rc;
}

static int rows_open_png(tool_rows *r, const char *path, char *err, size_t errsize)
{
    r->kind = 1;
    r->ps = (png_src){NULL, r->size, 0, "unknown error", 0, r->fd};
    r->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r->ps, png_on_error, png_on_warning);
    if (!r->png) {
        set_err(err, errsize, "out of memory");
        return -1;
    }
    r->info = png_create_info_struct(r->png);
    if (!r->info || setjmp(png_jmpbuf(r->png))) {
        if (r->ps.over_limit)
            set_err(err, errsize, "PNG too large: sides of more than %u pixels are not read",
                    PNG_MAX_SIDE);
        else
            set_err(err, errsize, "invalid PNG (%s)", r->info ? r->ps.msg : "out of memory");
        return -1;
    }
    png_set_read_fn(r->png, &r->ps, png_mem_read);
    png_set_user_limits(r->png, PNG_MAX_SIDE, PNG_MAX_SIDE);
    png_set_chunk_malloc_max(r->png, (png_alloc_size_t)8 << 20);
    png_read_info(r->png, r->info);
    if (png_get_interlace_type(r->png, r->info) != PNG_INTERLACE_NONE) {
        /* Interlaced (Adam7) rows come in seven passes over the whole image, each pass adding
         * pixels to rows the earlier ones began: libpng (png_read_row and its progressive
         * reader alike) gives a finished row only after the last pass, so the image is decoded
         * whole, within image_read's limit, said here with what to do about it. */
        png_uint_32 W = png_get_image_width(r->png, r->info),
                    H = png_get_image_height(r->png, r->info);
        int K = png_get_color_type(r->png, r->info) == PNG_COLOR_TYPE_PALETTE && !r->labels
                    ? 3 : png_get_channels(r->png, r->info);
        if ((int64_t)W * H * K > TOOL_IMAGE_MAX_VALUES) {
            set_err(err, errsize, "interlaced PNG too large: %ux%u with %d channel%s (limit %lld "
                    "values; an interlaced PNG is read whole, its rows coming in seven passes "
                    "over the image): save it without interlacing (or as a TIFF), which is read "
                    "a row at a time", W, H, K, K == 1 ? "" : "s",
                    (long long)TOOL_IMAGE_MAX_VALUES);
            return -1;
        }
        png_destroy_read_struct(&r->png, &r->info, NULL);
        r->png = NULL;
        r->info = NULL;
        return rows_open_whole(path, r, err, errsize);
    }
    png_uint_32 W = png_get_image_width(r->png, r->info), H = png_get_image_height(r->png, r->info);
    int ctype = png_get_color_type(r->png, r->info), depth = png_get_bit_depth(r->png, r->info);
    if (ctype == PNG_COLOR_TYPE_PALETTE && r->labels) {
        if (depth < 8) png_set_packing(r->png);
    } else if (ctype == PNG_COLOR_TYPE_PALETTE) {
        png_set_palette_to_rgb(r->png);
    }
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(r->png);
    png_read_update_info(r->png, r->info);
    int C = png_get_channels(r->png, r->info), bd = png_get_bit_depth(r->png, r->info);
    if (C < 1 || C > 4 || (bd != 8 && bd != 16)) {
        set_err(err, errsize, "unsupported PNG (%d channels, %d bits)", C, bd);
        return -1;
    }
    int K = ctype == PNG_COLOR_TYPE_PALETTE && C > 3 ? 3 : C;
    if ((int64_t)W * K > TOOL_IMAGE_MAX_VALUES) {
        set_err(err, errsize, "image too large: %ux%u with %d channel%s (limit %lld values in a "
                "row)", W, H, K, K == 1 ? "" : "s", (long long)TOOL_IMAGE_MAX_VALUES);
        return -1;
    }
    if (r->labels && K != 1) {
        set_err(err, errsize, "not a label mask: a PNG with %d channels (colour or alpha); a "
                "mask is one grey (or palette) channel of integer labels", K);
        return -1;
    }
    size_t rowbytes = png_get_rowbytes(r->png, r->info);
    if (rowbytes < (size_t)W * C * (bd / 8)) png_error(r->png, "row size inconsistent");
    r->prow = malloc(rowbytes);
    if (!r->prow) png_error(r->png, "out of memory");
    r->pC = C;
    r->pK = K;
    r->pbd = bd;
    r->channels = K;
    r->width = (int)W;
    r->height = (int)H;
    r->bits = bd;
    return 0;
}

int rows_open(const char *path, int labels, tool_rows **out, char *err, size_t errsize)
{
    *out = NULL;
    tool_rows *r = calloc(1, sizeof *r);
    if (!r) {
        set_err(err, errsize, "out of memory");
        return -1;
    }
    r->labels = labels;
    /* (a FIFO given as FIELD or MASK is not waited on: refused as not a regular file) */
    struct stat st;
    r->fd = open_nowait(path, &st);
    unsigned char head[8];
    int rc;
    if (r->fd < 0 || !S_ISREG(st.st_mode) ||
        pread(r->fd, head, 8, 0) != 8) {
        rc = rows_open_whole(path, r, err, errsize); /* its own message for what is wrong */
    } else {
        static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        r->size = (size_t)st.st_size;
        if (memcmp(head, png_sig, 8) == 0)
            rc = rows_open_png(r, path, err, errsize);
        else if ((head[0] == 'I' && head[1] == 'I') || (head[0] == 'M' && head[1] == 'M'))
            rc = rows_open_tiff(r, err, errsize);
        else
            rc = rows_open_whole(path, r, err, errsize);
    }
    if (rc != 0) {
        rows_close(r);
        return -1;
    }
    *out = r;
    return 0;
}

int rows_info(const tool_rows *r, int *channels, int *height, int *width, int *bits)
{
    if (channels) *channels = r->channels;
    if (height) *height = r->height;
    if (width) *width = r->width;
    if (bits) *bits = r->bits;
    return 0;
}

static int rows_png_row(tool_rows *r, float *f, uint32_t *u, char *err, size_t errsize)
{
    const int W = r->width;
    if (setjmp(png_jmpbuf(r->png))) {
        set_err(err, errsize, "invalid PNG (%s)", r->ps.msg);
        return -1;
    }
    png_read_row(r->png, r->prow, NULL);
    if (r->next == r->height - 1) png_read_end(r->png, NULL);
    const int C = r->pC, bd = r->pbd;
    const unsigned char *row = r->prow;
    for (int x = 0; x < W; x++)
        for (int c = 0; c < r->pK; c++) {
            size_t k = (size_t)x * C + c;
            unsigned v = bd == 8 ? row[k] : (unsigned)((row[2 * k] << 8) | row[2 * k + 1]);
            if (u) u[x] = v;
            else f[(int64_t)c * W + x] = (float)v;
        }
    return 0;
}

/* n bytes of the file at off, for a row of uncompressed strips or tiles */
static int raw_read(int fd, unsigned char *dst, size_t n, uint64_t off, int page, int y,
                    char *err, size_t errsize)
{
    size_t got = 0;
    errno = 0;
    while (got < n) {
        ssize_t k = pread(fd, dst + got, n - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    if (got < n) {
        set_err(err, errsize, "TIFF read failed on page %d, row %d (%s)", page + 1, y,
                errno ? strerror(errno) : "the file is shorter than it was");
        return -1;
    }
    return 0;
}

/* A row read directly, in the byte order of the machine (libtiff swaps the samples it reads) */
static void raw_swab(rows_src *q, int W)
{
    if (!TIFFIsByteSwapped(q->tif)) return;
    if (q->bps == 16) TIFFSwabArrayOfShort((uint16_t *)(void *)q->line, (tmsize_t)W * q->per);
    else if (q->bps == 32) TIFFSwabArrayOfLong((uint32_t *)(void *)q->line, (tmsize_t)W * q->per);
}

int rows_next(tool_rows *r, float *f, uint32_t *u, char *err, size_t errsize)
{
    const int W = r->width, y = r->next;
    if (y >= r->height) {
        set_err(err, errsize, "no more rows");
        return -1;
    }
    if (r->kind == 2) {
        if (r->labels) {
            memcpy(u, r->lab.data + (int64_t)y * W, sizeof *u * (size_t)W);
        } else {
            const int64_t plane = (int64_t)r->height * W;
            for (int c = 0; c < r->channels; c++)
                memcpy(f + (int64_t)c * W, r->img.data + c * plane + (int64_t)y * W,
                       sizeof *f * (size_t)W);
        }
    } else if (r->kind == 1) {
        if (rows_png_row(r, f, u, err, errsize) != 0) return -1;
    } else {
        for (int i = 0; i < r->nsrc; i++) {
            rows_src *q = &r->src[i];
            const int bytes = q->bps / 8;
            const unsigned char *row;
            if (q->tiled && q->raw) {
                const size_t px = (size_t)q->per * bytes;
                for (uint32_t x = 0; x < (uint32_t)W; x += q->tw) {
                    uint32_t t = TIFFComputeTile(q->tif, x, (uint32_t)y, 0, (uint16_t)q->sample);
                    uint32_t cols = x + q->tw > (uint32_t)W ? (uint32_t)W - x : q->tw;
                    uint64_t off = TIFFGetStrileOffset(q->tif, t) +
                                   (uint64_t)((uint32_t)y % q->th) * (uint64_t)q->ls;
                    if (raw_read(r->fd, q->line + x * px, cols * px, off, q->page, y, err,
                                 errsize) != 0)
                        return -1;
                }
                raw_swab(q, W);
                row = q->line;
            } else if (q->tiled) {
                if (q->band0 < 0 || y >= q->band0 + q->th) {
                    q->band0 = (int64_t)y / q->th * q->th;
                    uint32_t rows = q->band0 + q->th > (uint32_t)r->height
                                        ? (uint32_t)(r->height - q->band0) : q->th;
                    for (uint32_t x = 0; x < (uint32_t)W; x += q->tw) {
                        memset(q->tile, 0, (size_t)TIFFTileSize(q->tif));
                        if (TIFFReadTile(q->tif, q->tile, x, (uint32_t)q->band0, 0,
                                         (uint16_t)q->sample) < 0 || q->m.bad_data) {
                            if (!q->m.has_err)
                                set_err(q->err, sizeof q->err, "TIFF tile read failed on page %d",
                                        q->page + 1);
                            tiff_say_truncated(&q->m, 1);
                            snprintf(err, errsize, "%s", q->err);
                            q->band0 = -1;
                            return -1;
                        }
                        uint32_t cols = x + q->tw > (uint32_t)W ? (uint32_t)W - x : q->tw;
                        for (uint32_t k = 0; k < rows; k++)
                            memcpy(q->line + ((size_t)k * W + x) * q->per * bytes,
                                   q->tile + (size_t)k * q->tw * q->per * bytes,
                                   (size_t)cols * q->per * bytes);
                    }
                }
                row = q->line + (size_t)(y - q->band0) * W * q->per * bytes;
            } else if (q->raw) {
                uint32_t st = TIFFComputeStrip(q->tif, (uint32_t)y, (uint16_t)q->sample);
                uint64_t off = TIFFGetStrileOffset(q->tif, st) +
                               (uint64_t)((uint32_t)y % q->rps) * (uint64_t)q->ls;
                if (raw_read(r->fd, q->line, (size_t)q->ls, off, q->page, y, err, errsize) != 0)
                    return -1;
                raw_swab(q, W);
                row = q->line;
            } else {
                memset(q->line, 0, (size_t)q->ls);
                if (TIFFReadScanline(q->tif, q->line, (uint32_t)y, (uint16_t)q->sample) < 0 ||
                    q->m.bad_data) {
                    if (!q->m.has_err)
                        set_err(q->err, sizeof q->err, "TIFF read failed on page %d, row %d",
                                q->page + 1, y);
                    tiff_say_truncated(&q->m, 1);
                    snprintf(err, errsize, "%s", q->err);
                    return -1;
                }
                row = q->line;
            }
            sample_sink sink = {f, u, q->is_signed, -1, 0};
            for (int c = 0; c < q->per; c++)
                convert_into(row + (size_t)c * bytes, q->bps, q->per, W, &sink,
                             (int64_t)(q->ch0 + c) * W);
            if (sink.neg_at >= 0) {
                set_err(err, errsize, "not a label mask: negative label %lld at row %d, column %lld "
                        "(labels are 0 for background and positive for cells)",
                        (long long)sink.neg_val, y, (long long)sink.neg_at);
                return -1;
            }
        }
    }
    r->next++;
    return 0;
}
