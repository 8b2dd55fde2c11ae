/* Shared im2col + GEMM convolution engine (private).
 *
 * Computes, for each sample, y[o, p] = sum_{c, t} W_{g(p)}[o, c*k*k + t] * x[c, in(p, t)] + b[o]
 * where the output pixels p are partitioned into groups g and every group has its own weight
 * matrix W_g (O x C*k*k, row-major). A standard convolution is one group; conic convolution
 * uses one group per cone (plus the rays between cones and the centre), so the cost stays that
 * of one convolution: every output pixel is computed exactly once.
 *
 * Columns are built per chunk of samples, group-major: the GEMM of group g covers the columns
 * of all samples of the chunk at once. */
#ifndef CFNET_CONVCORE_H
#define CFNET_CONVCORE_H

#include "kernels/simd.h"
#include "nn/layer.h"

/* A run of columns (dst: first column relative to the start of its group; src: offset of its
 * input in the zero-padded plane Hp x Wp; len). The kernels that move runs are in simd.h. */
typedef cf_run cf_conv_run;

typedef struct cf_conv_plan {
    int C, H, W;       /* input planes and size */
    int k, stride, pad;
    int Hp, Wp;        /* input size with the zero padding */
    int OH, OW;
    int64_t P;         /* OH * OW */
    int64_t CK;        /* C * k * k */
    int ngroups;
    int64_t *goff;     /* ngroups + 1 offsets into the grouped column order */
    int32_t *perm;     /* grouped column j -> output pixel; NULL when the order is natural */
    /* The columns of tap t in group g as runs: consecutive grouped columns whose offsets in the
     * padded input are consecutive, so im2col and col2im move whole runs. */
    cf_conv_run *runs;
    int64_t *run_off;  /* k*k * ngroups + 1 offsets into runs, index t * ngroups + g */
    /* With perm: runs of grouped columns (dst = grouped index j) that are consecutive output
     * pixels (src = perm[j]); group g's are pruns[prun_off[g] .. prun_off[g + 1]). */
    cf_conv_run *pruns;
    int64_t *prun_off;
    int64_t chunk;     /* samples per column block */
} cf_conv_plan;

/* Checks the hyper-parameters every convolution layer shares: 1 <= out_channels
 * <= max_out, kernel odd in 1..63, padding VALID or SAME. Messages start with `name`. */
cfnet_status cf_check_conv_args(const char *name, int out_channels, int max_out, int kernel,
                                cfnet_padding padding);

/* Output size of a convolution, or 0 if the kernel does not fit. */
int cf_conv_out_size(int S, int k, int stride, cfnet_padding padding);

/* Builds the plan. group_of[p] (p in natural output order) gives each output pixel's group in
 * [0, ngroups); NULL means one group. Empty groups are allowed. */
cfnet_status cf_conv_plan_init(const cf_allocator *a, cf_conv_plan *p, int C, int H, int W,
                               int k, int stride,
                               cfnet_padding padding, const int32_t *group_of, int ngroups);
void cf_conv_plan_free(cf_conv_plan *p);

/* Workspace bytes for O output channels, a batch of n and `threads` threads (the batch is
 * split into one contiguous share per thread; backward reduces the threads' weight gradients
 * in thread order, so results depend on the thread count but not on timing). */
size_t cf_conv_workspace(const cf_conv_plan *p, int O, int64_t n, int threads);
/* The part of it, at its start, that must stay untouched from a training forward to the
 * backward that follows (the rest is scratch during one call; see cf_layer_ops.workspace_kept):
 * a small header, plus the forward's columns when every thread's share of the batch fits one
 * column block (the backward then uses them instead of building them again). */
size_t cf_conv_workspace_kept(const cf_conv_plan *p, int O, int64_t n, int threads);

/* y (n x O x P) = conv(x (n x C x H x W)); Wg[g] is group g's O x CK matrix; bias (O) may be
 * NULL. ws is the workspace; scratch, when not NULL, replaces its scratch part (the bytes after
 * cf_conv_workspace_kept), which is then not touched. */
void cf_conv_forward(const cf_conv_plan *p, int O, const float *const *Wg, const float *bias,
                     const float *x, float *y, int64_t n, void *ws, void *scratch, int threads);

/* dWg[g] += dY_g col_g^T (dWg[g] may repeat a pointer: contributions add), dbias += sums (may
 * be NULL), dx = conv^T (dy) if dx is not NULL. The kept part of ws must be that of the forward
 * of the same x, untouched since: when the batch fitted in one column block per thread, the
 * forward's columns are used again. scratch as for cf_conv_forward. */
void cf_conv_backward(const cf_conv_plan *p, int O, const float *const *Wg, float *const *dWg,
                      float *dbias, const float *x, const float *dy, float *dx, int64_t n,
                      void *ws, void *scratch, int threads);

#endif
