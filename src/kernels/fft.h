/* Small wrapper around FFTW (single precision) for 2D complex transforms (private).
 *
 * FFTW's planner is not thread-safe, only fftwf_execute* is: every planner call (and
 * fftwf_destroy_plan) here runs under one process-wide mutex, and before the first one libcfnet
 * calls fftwf_make_planner_thread_safe(), so that FFTW also locks its planner against the
 * host's (or another library's) own planner calls in the same process. Plans are made once per shape at
 * layer setup with FFTW_ESTIMATE | FFTW_UNALIGNED, so planning never reads or writes user data
 * and the new-array execute functions work on any buffers (out of place, in != out). The library
 * never calls fftwf_cleanup(): the host program may use FFTW itself. */
#ifndef CFNET_FFT_H
#define CFNET_FFT_H

#include "core/core.h"

#include <fftw3.h>

/* Forward (exp(-2 pi i ...)) and backward (exp(+2 pi i ...), unnormalised) transforms of a
 * rows x cols row-major complex grid. */
typedef struct cf_fft2d {
    int rows, cols;
    fftwf_plan fwd, bwd;
    /* Batched plans (fftwf_plan_many_dft) of `howmany` consecutive grids; NULL if howmany <= 1. */
    int howmany;
    fftwf_plan fwd_many, bwd_many;
} cf_fft2d;

/* Plans both directions. `who` names the caller in error messages. On error nothing is left
 * allocated and f's plans are NULL. */
cfnet_status cf_fft2d_init(const cf_allocator *a, cf_fft2d *f, int rows, int cols,
                           const char *who);

/* As cf_fft2d_init, plus batched plans for `howmany` grids stored one after the other (rows *
 * cols complex values apart). */
cfnet_status cf_fft2d_init_many(const cf_allocator *a, cf_fft2d *f, int rows, int cols,
                                int howmany, const char *who);

/* Transforms `count` consecutive grids from in to out (same rules as below): whole batches of
 * f->howmany through the batched plan, the rest one grid at a time. */
void cf_fft2d_forward_batch(const cf_fft2d *f, fftwf_complex *in, fftwf_complex *out,
                            int64_t count);
void cf_fft2d_backward_batch(const cf_fft2d *f, fftwf_complex *in, fftwf_complex *out,
                             int64_t count);

/* Destroys the plans (NULL plans are skipped) and sets them to NULL. */
void cf_fft2d_destroy(cf_fft2d *f);

/* out = DFT(in), rows*cols complex values each; in and out must not overlap. in is not
 * modified. Thread-safe: several threads may execute the same plan on their own buffers. */
void cf_fft2d_forward(const cf_fft2d *f, fftwf_complex *in, fftwf_complex *out);

/* out = sum exp(+2 pi i ...) in, without the 1 / (rows * cols) factor. Same rules. */
void cf_fft2d_backward(const cf_fft2d *f, fftwf_complex *in, fftwf_complex *out);

#endif
