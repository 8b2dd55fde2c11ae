/* Numeric helpers shared by layers, the loss and the network: one softmax (one precision
 * everywhere) and one argmax. */
#include "core/core.h"

#include <math.h>

double cf_softmax(const float *z, float *p, int64_t k)
{
    float m = z[0];
    for (int64_t j = 1; j < k; j++) m = z[j] > m ? z[j] : m;
    double s = 0;
    for (int64_t j = 0; j < k; j++) s += exp((double)(z[j] - m));
    if (p)
        for (int64_t j = 0; j < k; j++) p[j] = (float)(exp((double)(z[j] - m)) / s);
    return log(s) + m;
}

int64_t cf_argmax(const float *z, int64_t k)
{
    int64_t best = 0;
    for (int64_t j = 1; j < k; j++)
        if (z[j] > z[best]) best = j;
    return best;
}
