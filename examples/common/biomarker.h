/* Synthetic biomarker images (paper section 3.2): every class is a Gaussian-mixture pattern;
 * an image is a cloud of points sampled from its class's mixture, rendered with intensity
 * fluctuation, exponential background noise, a random rotation and jitter. The generative
 * model, its parameters and seeds are in docs/biomarker.md. Deterministic: the same seeds give
 * the same images on every platform with IEEE double arithmetic and the same libm. */
#ifndef CFNET_EXAMPLES_BIOMARKER_H
#define CFNET_EXAMPLES_BIOMARKER_H

#include <stdint.h>

#define BM_SIZE 50           /* images are BM_SIZE x BM_SIZE, one channel */
#define BM_CLASSES 50        /* number of patterns */
#define BM_MAX_COMPONENTS 6  /* mixture components per class: 2 .. BM_MAX_COMPONENTS */
#define BM_PATTERN_SEED 2019 /* default seed of the 50 class patterns */

/* One class: a Gaussian mixture in the image plane, in pixels, centred on the image centre. */
typedef struct bm_class {
    int components;
    double weight[BM_MAX_COMPONENTS]; /* mixing weights, sum 1 */
    double mean[BM_MAX_COMPONENTS][2];  /* (u, v), u right, v up */
    double chol[BM_MAX_COMPONENTS][3];  /* Cholesky factor of the covariance: l11, l21, l22 */
    double points;                      /* mean number of points per image */
    double spot;                        /* width (sigma, px) of the spot rendered per point */
} bm_class;

/* Splits of the data set (the image seeds differ per split). */
typedef enum bm_split { BM_TRAIN = 0, BM_TEST = 1 } bm_split;

/* The pattern of class `cls` (0 .. BM_CLASSES-1) drawn from `pattern_seed`. */
void bm_class_pattern(int cls, uint64_t pattern_seed, bm_class *out);

/* Renders image `index` of class `cls` in `split` into out[BM_SIZE * BM_SIZE] (values in
 * [0, 1]). Image i of a split does not depend on how many images are generated, so the N = 50
 * training set is the first half of the N = 100 one. */
void bm_render(const bm_class *c, int cls, bm_split split, int64_t index, uint64_t data_seed,
               float *out);

/* Generates `per_class` images of each of the classes 0 .. classes-1, interleaved (image i has
 * class i % classes), into images[classes * per_class * BM_SIZE * BM_SIZE] and labels. */
void bm_generate(int classes, int64_t per_class, bm_split split, uint64_t pattern_seed,
                 uint64_t data_seed, float *images, int32_t *labels);

#endif
