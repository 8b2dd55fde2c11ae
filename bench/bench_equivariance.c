/* Prints the single-layer equivariance error of each filter resampling (docs/results.md,
 * "Filter resampling"): bench/equivariance.h defines the protocol.
 *
 *   build/default/bench/bench_equivariance            (about a second) */
#include "equivariance.h"

#include <stdio.h>

static const char *const interp_names[3] = {"nearest", "bilinear", "steerable"};

int main(void)
{
    static const int ks[3] = {3, 5, 7};
    static const double angles[3] = {22.5, 30.0, 45.0};
    static const int filter_R[3] = {4, 3, 2}; /* angle = 90 / R degrees */
    printf("# relative equivariance error inside a disc (bench/equivariance.h); lower is better\n");
    printf("measure\tR\tk\tinterp\t22.5\t30\t45\n");
    for (int ki = 0; ki < 3; ki++) {
        int k = ks[ki];
        printf("unrotated filter\t-\t%d\t-", k);
        for (int a = 0; a < 3; a++)
            printf("\t%.3f", eqv_error(k, -1, 1, angles[a], CFNET_INTERP_NEAREST, 100 + k));
        printf("\n");
        for (int in = 0; in < 3; in++) {
            printf("resampled filter\t-\t%d\t%s", k, interp_names[in]);
            for (int a = 0; a < 3; a++)
                printf("\t%.3f", eqv_error(k, 0, filter_R[a], angles[a], (cfnet_interp)in,
                                           100 + k));
            printf("\n");
        }
    }
    static const int Rs[2] = {2, 4};
    for (int ri = 0; ri < 2; ri++)
        for (int ki = 0; ki < 3; ki++)
            for (int in = 0; in < 3; in++) {
                int k = ks[ki];
                printf("conic\t%d\t%d\t%s", Rs[ri], k, interp_names[in]);
                for (int a = 0; a < 3; a++)
                    printf("\t%.3f", eqv_error(k, Rs[ri], 1, angles[a], (cfnet_interp)in,
                                               100 + k));
                printf("\n");
            }
    return 0;
}
