/* FFTW wrapper: planning under a process-wide lock, execution with the new-array functions. */
#include "fft.h"

#include <limits.h>
#include "platform/platform.h"

/* Guards every FFTW planner call (plan creation and destruction) that libcfnet makes. */
static cf_mutex cf_fft_planner_lock = CF_MUTEX_INIT;

/* FFTW's planner is one per process and shared with the host and any other library that uses
 * FFTW. libcfnet's own mutex cannot protect it from their calls, so before its first plan
 * libcfnet asks FFTW to lock its planner itself (fftwf_make_planner_thread_safe, FFTW >= 3.3.5):
 * from then on every fftwf_plan_* and fftwf_destroy_plan in the process, whoever calls it, runs
 * under FFTW's own lock. */
/* The lock functions FFTW then calls live in libfftw3f_threads, which only libcfnet may have
 * loaded: if a host that uses FFTW itself unloaded libcfnet (dlclose of a plugin), FFTW's
 * planner would call into unloaded code at the host's next plan. So the object holding them
 * stays loaded for the rest of the process. */
static cf_once cf_fft_once = CF_ONCE_INIT;
static void make_planner_thread_safe(void)
{
    fftwf_make_planner_thread_safe();
    cf_platform_keep_loaded(fftwf_make_planner_thread_safe);
}

cfnet_status cf_fft2d_init(const cf_allocator *a, cf_fft2d *f, int rows, int cols,
                           const char *who)
{
    return cf_fft2d_init_many(a, f, rows, cols, 1, who);
}

cfnet_status cf_fft2d_init_many(const cf_allocator *a, cf_fft2d *f, int rows, int cols,
                                int howmany, const char *who)
{
    f->rows = rows;
    f->cols = cols;
    f->fwd = f->bwd = f->fwd_many = f->bwd_many = NULL;
    f->howmany = howmany > 1 ? howmany : 1;
    CF_FAIL_IF(rows < 1 || cols < 1, CFNET_E_INTERNAL, "%s: FFT of a %dx%d grid", who, rows, cols);
    CF_FAIL_IF((int64_t)rows * cols > INT_MAX, CFNET_E_LIMIT,
               "%s: FFT grid %dx%d has more than %d points", who, rows, cols, INT_MAX);
    /* The planner needs arrays to tell in-place from out-of-place; with FFTW_ESTIMATE it does
     * not touch their contents, and FFTW_UNALIGNED removes any alignment assumption. */
    size_t n = (size_t)rows * (size_t)cols, bytes;
    CF_FAIL_IF((int64_t)n * f->howmany > INT_MAX, CFNET_E_LIMIT,
               "%s: batched FFT of %d grids of %dx%d is too large", who, f->howmany, rows, cols);
    size_t nb = n * (size_t)f->howmany;
    CF_FAIL_IF(!cf_mul_size(nb, 2 * sizeof(fftwf_complex), &bytes), CFNET_E_LIMIT,
               "%s: FFT buffers for %dx%d overflow", who, rows, cols);
    fftwf_complex *tmp = cf_alloc(a, bytes);
    CF_FAIL_IF(!tmp, CFNET_E_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes for FFT planning",
               who, bytes);
    const unsigned flags = FFTW_ESTIMATE | FFTW_UNALIGNED;
    cf_once_run(&cf_fft_once, make_planner_thread_safe);
    cf_mutex_lock(&cf_fft_planner_lock);
    f->fwd = fftwf_plan_dft_2d(rows, cols, tmp, tmp + nb, FFTW_FORWARD, flags);
    f->bwd = fftwf_plan_dft_2d(rows, cols, tmp, tmp + nb, FFTW_BACKWARD, flags);
    if (f->howmany > 1) {
        const int dims[2] = {rows, cols}, dist = (int)n;
        f->fwd_many = fftwf_plan_many_dft(2, dims, f->howmany, tmp, NULL, 1, dist, tmp + nb,
                                          NULL, 1, dist, FFTW_FORWARD, flags);
        f->bwd_many = fftwf_plan_many_dft(2, dims, f->howmany, tmp, NULL, 1, dist, tmp + nb,
                                          NULL, 1, dist, FFTW_BACKWARD, flags);
    }
    cf_mutex_unlock(&cf_fft_planner_lock);
    cf_free(tmp);
    if (!f->fwd || !f->bwd || (f->howmany > 1 && (!f->fwd_many || !f->bwd_many))) {
        cf_fft2d_destroy(f);
        return cf_error(CFNET_E_INTERNAL, "%s: FFTW could not plan a %dx%d transform", who, rows,
                        cols);
    }
    return CFNET_OK;
}

void cf_fft2d_destroy(cf_fft2d *f)
{
    if (f->fwd || f->bwd || f->fwd_many || f->bwd_many) {
        cf_mutex_lock(&cf_fft_planner_lock);
        if (f->fwd) fftwf_destroy_plan(f->fwd);
        if (f->bwd) fftwf_destroy_plan(f->bwd);
        if (f->fwd_many) fftwf_destroy_plan(f->fwd_many);
        if (f->bwd_many) fftwf_destroy_plan(f->bwd_many);
        cf_mutex_unlock(&cf_fft_planner_lock);
    }
    f->fwd = f->bwd = f->fwd_many = f->bwd_many = NULL;
}

void cf_fft2d_forward(const cf_fft2d *f, fftwf_complex *in, fftwf_complex *out)
{
    fftwf_execute_dft(f->fwd, in, out);
}

void cf_fft2d_backward(const cf_fft2d *f, fftwf_complex *in, fftwf_complex *out)
{
    fftwf_execute_dft(f->bwd, in, out);
}

static void batch(const cf_fft2d *f, fftwf_plan one, fftwf_plan many, fftwf_complex *in,
                  fftwf_complex *out, int64_t count)
{
    int64_t g = (int64_t)f->rows * f->cols, s = 0;
    if (many)
        for (; s + f->howmany <= count; s += f->howmany)
            fftwf_execute_dft(many, in + s * g, out + s * g);
    for (; s < count; s++) fftwf_execute_dft(one, in + s * g, out + s * g);
}

void cf_fft2d_forward_batch(const cf_fft2d *f, fftwf_complex *in, fftwf_complex *out,
                            int64_t count)
{
    batch(f, f->fwd, f->fwd_many, in, out, count);
}

void cf_fft2d_backward_batch(const cf_fft2d *f, fftwf_complex *in, fftwf_complex *out,
                             int64_t count)
{
    batch(f, f->bwd, f->bwd_many, in, out, count);
}
