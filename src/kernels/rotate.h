/* Filter rotations as sparse linear maps (private). */
#ifndef CFNET_ROTATE_H
#define CFNET_ROTATE_H

#include "core/core.h"

/* Largest filter the steerable resampling accepts: its maps are dense, (k*k)^2 weights each. */
#define CF_ROT_STEERABLE_MAX_K 21

/* A linear map of one k x k plane: rotated[t] = sum_a w[t*taps + a] * base[src[t*taps + a]]
 * over the entries a with src >= 0 (listed first). taps: 1 (nearest, quarter turns), 4
 * (bilinear), k*k (steerable). */
typedef struct cf_rotmap {
    int kk, taps;
    int32_t *src;
    float *w;
} cf_rotmap;

/* Builds the map rotating a k x k filter (k >= 1, odd or even) by r * pi / (2R)
 * counter-clockwise, r in [0, 4R): r = qR + s is the rotation by s * pi / (2R) with `interp`,
 * then q exact quarter turns, so T_{r+R} = rot90 T_r exactly. For CFNET_INTERP_STEERABLE and
 * R > 1 the map includes the projection onto the circular-harmonic basis (also at s = 0); see
 * rotate.c.
 * On error (out of memory, k too large for the steerable basis) *map is left empty. Free with
 * cf_rotmap_free. */
cfnet_status cf_rotmap_build(const cf_allocator *a, int k, int R, int r, cfnet_interp interp,
                             cf_rotmap *map);

/* The bilinear taps of pixel (i, j) (row down, column right) of an S x S grid rotated
 * counter-clockwise by theta, (cs, sn) = (cos theta, sin theta), about its centre: the point of
 * the unrotated grid it comes from, as up to 4 (source index, weight > 0) pairs inside the grid;
 * returns their count. With `snap` the source coordinates are rounded to 1e-9 first, so that
 * rotations landing on grid points stay exact (filter maps). Used by the filter maps and by
 * cfnet_image_rotate. */
int cf_bilinear_taps(int64_t S, int64_t i, int64_t j, double cs, double sn, bool snap,
                     int64_t src[4], double w[4]);

/* cfnet_image_rotate with the sampling table allocated from `alloc` (NULL: the default). */
cfnet_status cf_image_rotate(const cf_allocator *alloc, const cfnet_tensor *in, cfnet_tensor *out,
                             double degrees);

/* Frees the map's arrays (a zeroed or freed map is fine) and zeroes it. */
void cf_rotmap_free(cf_rotmap *map);

/* Composes a map of a k x k plane with a reflection of its source: afterwards it computes
 * T (F base), where F mirrors the filter across its vertical axis, (F phi)(u, v) = phi(-u, v),
 * i.e. column j <-> k-1-j (docs/conventions.md). */
void cf_rotmap_mirror_source(int k, cf_rotmap *map);

/* out = S base for one k*k plane. */
void cf_rotmap_apply(const cf_rotmap *map, const float *base, float *out);

/* grad_base += S^T grad_out for one k*k plane. */
void cf_rotmap_apply_transpose(const cf_rotmap *map, const float *grad_out, float *grad_base);

#endif
