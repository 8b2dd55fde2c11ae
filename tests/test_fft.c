/* FFTW wrapper: forward transform against a direct DFT in double, unnormalised inverse, input
 * preserved, bad sizes. */
#include "testutil.h"

#include "kernels/fft.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* out = sum_{a,b} in[a,b] exp(sign 2 pi i (a a'/A + b b'/B)), in double. */
static void direct_dft(fftwf_complex *in, int A, int B, int sign, double *out_re,
                       double *out_im)
{
    for (int ap = 0; ap < A; ap++)
        for (int bp = 0; bp < B; bp++) {
            double re = 0, im = 0;
            for (int a = 0; a < A; a++)
                for (int b = 0; b < B; b++) {
                    /* Reduce the integer phase first so the angle stays exact and small. */
                    double ph = (double)((a * ap) % A) / A + (double)((b * bp) % B) / B;
                    double ang = sign * 6.283185307179586 * ph, c = cos(ang), s = sin(ang);
                    double xr = in[a * B + b][0], xi = in[a * B + b][1];
                    re += xr * c - xi * s;
                    im += xr * s + xi * c;
                }
            out_re[ap * B + bp] = re;
            out_im[ap * B + bp] = im;
        }
}

static const int shapes[][2] = {{5, 8}, {4, 4}, {3, 12}, {1, 7}, {6, 1}, {1, 1}, {7, 9}};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static void fft_matches_direct_dft_both_directions(void **state)
{
    (void)state;
    tu_rng rng = {11};
    for (int k = 0; k < NSHAPES; k++) {
        int A = shapes[k][0], B = shapes[k][1], n = A * B;
        cf_fft2d f;
        CF_ASSERT_OK(cf_fft2d_init(NULL, &f, A, B, "test"));
        fftwf_complex *in = malloc((size_t)n * sizeof *in), *out = malloc((size_t)n * sizeof *out),
                      *keep = malloc((size_t)n * sizeof *keep);
        double *re = malloc((size_t)n * sizeof *re), *im = malloc((size_t)n * sizeof *im);
        assert_true(in && out && keep && re && im);
        tu_fill_normal(&in[0][0], 2 * n, &rng);
        memcpy(keep, in, (size_t)n * sizeof *in);
        for (int dir = 0; dir < 2; dir++) {
            if (dir == 0) cf_fft2d_forward(&f, in, out);
            else cf_fft2d_backward(&f, in, out);
            /* Out-of-place complex transforms leave the input alone. */
            assert_memory_equal(in, keep, (size_t)n * sizeof *in);
            direct_dft(in, A, B, dir == 0 ? -1 : +1, re, im);
            double md = 0, mr = 0;
            for (int i = 0; i < n; i++) {
                md = fmax(md, hypot(out[i][0] - re[i], out[i][1] - im[i]));
                mr = fmax(mr, hypot(re[i], im[i]));
            }
            /* float transform vs double sum: relative to the largest coefficient */
            if (md > 1e-5 * mr) fail_msg("%dx%d dir %d: error %g of %g", A, B, dir, md, mr);
        }
        /* backward(forward(x)) = A B x: the backward transform is unnormalised. */
        fftwf_complex *back = malloc((size_t)n * sizeof *back);
        assert_non_null(back);
        cf_fft2d_forward(&f, in, out);
        cf_fft2d_backward(&f, out, back);
        for (int i = 0; i < n; i++) {
            assert_float_equal(back[i][0], n * in[i][0], 1e-5 * n * 4);
            assert_float_equal(back[i][1], n * in[i][1], 1e-5 * n * 4);
        }
        cf_fft2d_destroy(&f);
        assert_null(f.fwd);
        assert_null(f.bwd);
        cf_fft2d_destroy(&f); /* idempotent */
        free(in);
        free(out);
        free(keep);
        free(re);
        free(im);
        free(back);
    }
}

static void fft_rejects_empty_grid(void **state)
{
    (void)state;
    cf_fft2d f;
    CF_ASSERT_STATUS(cf_fft2d_init(NULL, &f, 0, 4, "test"), CFNET_E_INTERNAL);
    assert_null(f.fwd);
    assert_null(f.bwd);
    CF_ASSERT_STATUS(cf_fft2d_init(NULL, &f, 1 << 16, 1 << 16, "test"), CFNET_E_LIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fft_matches_direct_dft_both_directions),
        cmocka_unit_test(fft_rejects_empty_grid),
    };
    return cmocka_run_group_tests_name("fft", tests, NULL, NULL);
}
