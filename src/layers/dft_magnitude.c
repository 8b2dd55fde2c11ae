/* DFT transition, part (b): m = |DFT2(x)| of each sample's A x B grid (paper eq. 14), and its
 * p4m form, the magnitude of the DFT over Z2 x Z4 of each channel's 8 group copies.
 *
 * Input A x B, or C x G x 1 x 1 (a 1 x 1 p4 map, treated as A = C, B = G); output A x B. The
 * full spectrum is kept, including the half that is redundant for real input, so the output has
 * the input's shape and the DFT is applied exactly as in eq. 14.
 *
 * Forward copies the grids into a complex buffer and transforms them with batched FFTW plans
 * (fftwf_plan_many_dft over CF_DFTM_BATCH grids, made at setup; the rest of the batch one grid at
 * a time) through the new-array execute function; the spectrum Y stays in the workspace for
 * backward.
 * Backward: with m = |y|, y = F x and x real, dL/dx = Re(F^H (dL/dm * y / |y|)), where F^H is
 * FFTW's unnormalised backward transform. The gradient at |y| = 0, where |.| is not
 * differentiable, is taken as 0 (the factor y / |y| is set to 0 when |y| == 0 exactly). */
#include "kernels/fft.h"
#include "nn/layer.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* Grids per batched FFTW plan. */
#define CF_DFTM_BATCH 16

typedef struct dft_magnitude_priv {
    int A, B;
    cf_fft2d fft;
} dft_magnitude_priv;

static void dft_magnitude_destroy_priv(cfnet_layer *l)
{
    dft_magnitude_priv *p = l->priv;
    if (!p) return;
    cf_fft2d_destroy(&p->fft);
    cf_free(p);
    l->priv = NULL;
}

/* Allocates l->priv for grids of A x B with its FFT plans; the output is A x B per grid,
 * out_shape per sample. */
static cfnet_status dft_magnitude_init(cfnet_layer *l, int A, int B, int out_ndim,
                                       const int64_t *out_shape)
{
    dft_magnitude_priv *p = cf_alloc_zero(&l->alloc, 1, sizeof *p);
    CF_FAIL_IF(!p, CFNET_E_OUT_OF_MEMORY, "%s: out of memory", l->ops->name);
    l->priv = p; /* freed by destroy_priv if anything below fails */
    p->A = A;
    p->B = B;
    CF_CHECK(cf_fft2d_init_many(&l->alloc, &p->fft, A, B, CF_DFTM_BATCH, l->ops->name));
    cf_layer_set_out_shape(l, out_ndim, out_shape);
    return CFNET_OK;
}

static cfnet_status dft_magnitude_setup(cfnet_layer *l, uint64_t seed)
{
    (void)seed;
    char buf[96];
    int64_t A, B;
    if (l->in_ndim == 2) {
        A = l->in_shape[0];
        B = l->in_shape[1];
    } else if (l->in_ndim == 4 && l->in_shape[2] == 1 && l->in_shape[3] == 1) {
        A = l->in_shape[0];
        B = l->in_shape[1];
    } else {
        return cf_error(CFNET_E_SHAPE_MISMATCH,
                        "dft_magnitude: input is %s, expected A x B or C x G x 1 x 1",
                        cf_shape_str(buf, sizeof buf, l->in_ndim, l->in_shape));
    }
    CF_FAIL_IF(l->in_size > INT_MAX, CFNET_E_LIMIT,
               "dft_magnitude: input is %s, the DFT grid is limited to %d points",
               cf_shape_str(buf, sizeof buf, l->in_ndim, l->in_shape), INT_MAX);
    return dft_magnitude_init(l, (int)A, (int)B, 2, (const int64_t[]){A, B});
}

/* Both kinds transform grids of A x B consecutive values: one per sample (dft_magnitude,
 * A x B = the sample) or one per channel (p4m_dft_magnitude, A x B = 2 x 4). */
static int64_t grids_of(const cfnet_layer *l, int64_t n)
{
    const dft_magnitude_priv *p = l->priv;
    return n * (l->in_size / ((int64_t)p->A * p->B));
}

/* Workspace: X (n samples, complex input / backward factor), Y (n spectra), T (CF_DFTM_BATCH
 * samples' worth, at least CF_DFTM_BATCH grids). */
static size_t dft_magnitude_workspace(const cfnet_layer *l, int64_t n)
{
    size_t grid = (size_t)l->in_size * sizeof(fftwf_complex), batch;
    if (!cf_mul_size(grid, (size_t)n, &batch) || batch > SIZE_MAX / 4) return SIZE_MAX;
    return 2 * cf_align64(batch) + cf_align64(grid * CF_DFTM_BATCH);
}

static void carve(const cfnet_layer *l, int64_t n, void *ws, fftwf_complex **X,
                  fftwf_complex **Y, fftwf_complex **T)
{
    size_t batch = cf_align64((size_t)n * (size_t)l->in_size * sizeof(fftwf_complex));
    char *w = ws;
    *X = (fftwf_complex *)w;
    *Y = (fftwf_complex *)(w + batch);
    *T = (fftwf_complex *)(w + 2 * batch);
}

static cfnet_status dft_magnitude_forward(cfnet_layer *l, const float *x, float *y, int64_t n,
                                          bool training, void *ws)
{
    (void)training;
    const dft_magnitude_priv *p = l->priv;
    const int64_t g = (int64_t)p->A * p->B;
    fftwf_complex *X, *Y, *T;
    carve(l, n, ws, &X, &Y, &T);
    const int64_t G = grids_of(l, n), total = G * g;
    for (int64_t i = 0; i < total; i++) {
        X[i][0] = x[i];
        X[i][1] = 0.0f;
    }
    cf_fft2d_forward_batch(&p->fft, X, Y, G);
    for (int64_t i = 0; i < total; i++) y[i] = hypotf(Y[i][0], Y[i][1]);
    return CFNET_OK;
}

static cfnet_status dft_magnitude_backward(cfnet_layer *l, const float *x, const float *y,
                                           const float *dy, float *dx, int64_t n, void *ws)
{
    (void)x;
    (void)y;
    const dft_magnitude_priv *p = l->priv;
    const int64_t g = (int64_t)p->A * p->B;
    fftwf_complex *X, *Y, *T;
    carve(l, n, ws, &X, &Y, &T);
    const int64_t G = grids_of(l, n), total = G * g;
    for (int64_t i = 0; i < total; i++) {
        float mag = hypotf(Y[i][0], Y[i][1]);
        /* Gradient at |y| = 0 taken as 0. */
        float f = mag > 0.0f ? dy[i] / mag : 0.0f;
        X[i][0] = f * Y[i][0];
        X[i][1] = f * Y[i][1];
    }
    for (int64_t s0 = 0; s0 < G; s0 += CF_DFTM_BATCH) {
        int64_t nb = G - s0 < CF_DFTM_BATCH ? G - s0 : CF_DFTM_BATCH;
        cf_fft2d_backward_batch(&p->fft, X + s0 * g, T, nb);
        float *dxs = dx + s0 * g;
        for (int64_t i = 0; i < nb * g; i++) dxs[i] = T[i][0];
    }
    return CFNET_OK;
}

/* The operations both kinds share: they differ in setup only. */
#define DFT_MAGNITUDE_OPS                                                                         \
    .workspace = dft_magnitude_workspace, .forward = dft_magnitude_forward,                       \
    .backward = dft_magnitude_backward, .destroy_priv = dft_magnitude_destroy_priv

const cf_layer_ops cf_dft_magnitude_ops = {
    .name = "dft_magnitude",
    .setup = dft_magnitude_setup,
    DFT_MAGNITUDE_OPS,
};

CFNET_API cfnet_status cfnet_layer_dft_magnitude_create(cfnet_layer **out)
{
    return cf_layer_create(CFNET_LAYER_DFT_MAGNITUDE, NULL, NULL, NULL, out);
}

/* p4m head. A p4m map reduced to 1 x 1, Psi(n, g) with g = 4 m + r for rho^r F^m, is read as a
 * 2 x 4 grid (m, r) per channel n. A quarter turn of the input shifts r by one in both rows,
 * Psi'(m, r) = Psi(m, r - 1); the mirror F swaps the rows and reverses r,
 * Psi'(m, r) = Psi(m + 1, -r). With Y = DFT over Z2 x Z4, a shift multiplies Y by a phase and the
 * reversal gives Y'(a, b) = (-1)^a Y(a, -b) = (-1)^a conj(Y(-a, b)) = (-1)^a conj(Y(a, b)) (x real,
 * -a = a in Z2), so |Y| is invariant to all of D4. */
static cfnet_status p4m_dft_magnitude_setup(cfnet_layer *l, uint64_t seed)
{
    (void)seed;
    char buf[96];
    bool ok = (l->in_ndim == 2 && l->in_shape[1] == 8) ||
              (l->in_ndim == 4 && l->in_shape[1] == 8 && l->in_shape[2] == 1 &&
               l->in_shape[3] == 1);
    CF_FAIL_IF(!ok, CFNET_E_SHAPE_MISMATCH,
               "p4m_dft_magnitude: input is %s, expected C x 8 or C x 8 x 1 x 1 (a p4m map)",
               cf_shape_str(buf, sizeof buf, l->in_ndim, l->in_shape));
    return dft_magnitude_init(l, 2, 4, 2, (const int64_t[]){l->in_shape[0], 8});
}

const cf_layer_ops cf_p4m_dft_magnitude_ops = {
    .name = "p4m_dft_magnitude",
    .setup = p4m_dft_magnitude_setup,
    DFT_MAGNITUDE_OPS,
};

CFNET_API cfnet_status cfnet_layer_p4m_dft_magnitude_create(cfnet_layer **out)
{
    return cf_layer_create(CFNET_LAYER_P4M_DFT_MAGNITUDE, NULL, NULL, NULL, out);
}
