/* Filter rotations as sparse linear maps (private). */
#ifndef CFNET_ROTATE_H
#define CFNET_ROTATE_H

#include "core/core.h"

#define CF_ROT_TAPS 4

/* rotated[t] = sum_a w[a] * base[src[a]] over the taps with src[a] >= 0 (listed first). */
typedef struct cf_rotmap_entry {
    int32_t src[CF_ROT_TAPS];
    float w[CF_ROT_TAPS];
} cf_rotmap_entry;

/* Fills map[0 .. k*k-1] for rotating a k x k filter (k >= 1, odd or even) by r * pi / (2R)
 * counter-clockwise, r in [0, 4R). Quarter turns are exact permutations; other angles use
 * `interp`. */
void cf_rotmap_build(int k, int R, int r, cfnet_interp interp, cf_rotmap_entry *map);

/* Composes map (k x k, from cf_rotmap_build) with a reflection of its source: afterwards it
 * computes T (F base), where F mirrors the filter across its vertical axis, (F phi)(u, v) =
 * phi(-u, v), i.e. column j <-> k-1-j (docs/conventions.md). */
void cf_rotmap_mirror_source(int k, cf_rotmap_entry *map);

/* out = S base for one k*k plane. */
void cf_rotmap_apply(const cf_rotmap_entry *map, int kk, const float *base, float *out);

/* grad_base += S^T grad_out for one k*k plane. */
void cf_rotmap_apply_transpose(const cf_rotmap_entry *map, int kk, const float *grad_out,
                               float *grad_base);

#endif
