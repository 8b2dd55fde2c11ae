/* The percentile stretch of cfnet_image_normalize, for other entry points that must give the
 * same bits (cfnet_network_prepare_image) (private). */
#ifndef CFNET_IMAGE_H
#define CFNET_IMAGE_H

#include "core/core.h"

/* The low and high percentiles (0..100) of the n values at x (numpy's default, linear
 * interpolation), selected in `scratch` (n floats, overwritten; x is only read). */
void cf_plane_percentiles(const float *x, int64_t n, double low, double high, float *scratch,
                          double *lo, double *hi);

/* One value of the stretch: (x - lo) / (hi - lo) clipped to [0, 1] in double, then float; 0
 * when the percentiles coincide (!(hi > lo)). */
static inline float cf_stretch(float x, double lo, double hi)
{
    if (!(hi > lo)) return 0.0f;
    double y = ((double)x - lo) / (hi - lo);
    return (float)(y < 0.0 ? 0.0 : y > 1.0 ? 1.0 : y);
}

#endif
