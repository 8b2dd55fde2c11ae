/* Writing pictures by hand: grayscale PGM, heat-map PPM, image grids, and a PNG copy through
 * ImageMagick's `convert` or netpbm's `pnmtopng` when one is installed. */
#ifndef CFNET_EXAMPLES_PNM_H
#define CFNET_EXAMPLES_PNM_H

/* A grid of `rows` x `cols` tiles, each th x tw, with a `gap` pixel border; pixel values are
 * RGB floats in [0, 1]. */
typedef struct ex_canvas {
    int width, height, tile_h, tile_w, gap, rows, cols;
    float *rgb; /* height x width x 3 */
} ex_canvas;

/* Creates a white canvas (exits on failure); free with ex_canvas_free. */
void ex_canvas_init(ex_canvas *c, int rows, int cols, int tile_h, int tile_w, int gap);
void ex_canvas_free(ex_canvas *c);

/* Draws an h x w map (row-major) into tile (row, col), resampled (nearest) to the tile size,
 * mapping [lo, hi] through the colour map (heat = 1: black-red-yellow-white;
 * 0: grayscale); lo == hi maps the map's own min and max. */
void ex_canvas_map(ex_canvas *c, int row, int col, const float *map, int h, int w, float lo,
                   float hi, int heat);

/* Writes the canvas as binary PPM (P6). Returns 0 on success. */
int ex_canvas_write_ppm(const ex_canvas *c, const char *path);

/* Converts a PPM/PGM file to PNG with netpbm's `pnmtopng` or else ImageMagick's `convert`, the
 * first found on PATH; returns 0 on success. Otherwise prints a warning to stderr, prefixed with
 * `prog`, that names the converter that failed (or that none is on PATH) and the PPM/PGM file
 * that was written, leaves no partial PNG, and returns -1. */
int ex_pnm_to_png(const char *prog, const char *pnm_path, const char *png_path);

#endif
