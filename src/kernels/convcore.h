/* Shared convolution engine: tiled im2col and the engine's own products (private).
 *
 * Computes, for each sample, y[o, p] = sum_{c, t} W_{g(p)}[o, c*k*k + t] * x[c, in(p, t)] + b[o]
 * where the output pixels p are partitioned into groups g and every group has its own weight
 * matrix W_g (O x C*k*k, row-major). A standard convolution is one group; conic convolution
 * uses one group per cone (plus the rays between cones and the centre), so the cost stays that
 * of one convolution: every output pixel is computed exactly once.
 *
 * The columns are never built whole. Samples are taken in blocks of `spb`; each group's
 * columns for a block are cut into tiles of at most `wmax` columns per sample, and a tile's
 * columns are built and used in chunks of `rows` of their C*k*k rows (a cache-sized piece),
 * with the engine's own products (kernels/gemm.h). Every output element is one chain of fused
 * multiply-adds over c*k*k + t in order, plus the bias, so the forward result depends neither
 * on the tiling nor on the thread count, the batch or the CPU variant. The input gradient adds
 * the tiles' contributions tile by tile: for a given plan it does not depend on the threads or
 * the batch either. The weight gradient sums tile by tile too, in an order fixed by the plan and
 * the threads' shares of the batch.
 *
 * Grouped (conic) plans with few output channels (see use_pix and use_pix_bwd in convcore.c:
 * up to 32, weights up to 40 KiB, planes that do not alias in L1) take no columns: the forward
 * vectorises over output channels (the same chains, so the same bits), the weight gradient is
 * one chain per weight over the group's pixels in order, and the input gradient adds, tile by
 * tile and tap by tap, each column's chain over the output channels to its input pixel in a
 * pixel-major buffer: the column path's sums in its order, so the same bits (kernels/gemm.h,
 * conv_bwd_w_pix and conv_bwd_x_pix). Neither depends on the batch; the input gradient not on
 * the threads either. */
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
    /* The columns of every tile as runs: consecutive columns whose offsets in the padded input
     * (of tap 0; tap t adds a constant) are consecutive, so im2col and col2im move whole runs;
     * tile i's are runs[run_off[i] .. run_off[i + 1]). rowoff[r] is column row r's offset
     * (r = c k k + t: plane c, tap t) from tap 0 in the padded planes. */
    cf_conv_run *runs;
    int64_t *run_off;
    int32_t *rowoff;
    /* With perm: runs of grouped columns (dst = grouped index j) that are consecutive output
     * pixels (src = perm[j]); group g's are pruns[prun_off[g] .. prun_off[g + 1]). */
    cf_conv_run *pruns;
    int64_t *prun_off;
    /* Tiles: ntiles consecutive ranges [tj0[i], tj0[i + 1]) of the grouped column order, each
     * inside one group (tgroup); runs and pruns are per tile, their dst relative to the tile's
     * first column. */
    int ntiles;
    int32_t *tgroup;
    int64_t *tj0;
    /* The direct forward (stride 1 only; kernels/gemm.h conv_fwd_runs): tiles with
     * tdirect[i] set are computed by products that read the padded input in place, no columns
     * built, with the same bits. rq[r] is the output pixel of run r's first column. NULL for
     * other strides. */
    uint8_t *tdirect;
    bool direct_auto; /* tdirect or pix chosen by the rule (which also looks at O) */
    int32_t *rq;
    /* ... and tiles with tdirect[i] == 2 as one flat run (kernels/gemm.h conv_fwd_flat): tap 0
     * of the tile's first output pixel at fsrc[i] in the padded planes, flen[i] positions to its
     * last, the halo columns between the rows computed and dropped (plain plans, stride 1;
     * NULL otherwise). flat_mode: which direct tiles take it (cf_conv_plan_set_flat). */
    int32_t *fsrc, *flen;
    int flat_mode;
    int direct_mode;
    /* Conic plans (with perm): the forward over output channels (kernels/gemm.h
     * conv_fwd_pix) reads every column's inputs in place, at csrc[j] (grouped column j's tap 0
     * in the padded planes), and writes its output pixel; same bits as the columns. Their
     * backward (stride 1) reads csrc too. */
    bool pix;
    /* The weight gradient through the columns even where the forward goes over output
     * channels (the input gradient then goes over output channels, which gives the columns'
     * bits): set for plain convolutions planned as one group (cf_conv_plain_over_channels), so
     * that their gradients keep the plain plan's bits. */
    bool bwd_columns;
    /* Every run of every tile starts and ends on a multiple of 8 columns (rows of 8 k pixels
     * in natural order): the weight gradient can read the columns in place (gemm_nt_runs),
     * without im2col, with the same bits. */
    bool runs_fit;
    /* It does (runs_fit, and the runs are long enough on average to gain from it:
     * CF_CONV_NT_RUNS_MIN_LEN in convcore.c). Tests may set it on any plan with runs_fit. */
    bool nt_runs;
    /* The input gradient's column path adds its columns (col2im) straight into the caller's
     * dx, zeroed first, instead of into padded planes copied out after (the workspace then has
     * no padded input-gradient planes): set where the padded planes are the planes (no border:
     * valid padding, or k = 1). The kernels add a run shorter than 8 columns as a block of 8
     * (simd.h, col2im_runs), which near the end of a sample's planes would pass it (into the
     * next sample, maybe another thread's, or past dx): from column row dx_exact_row on (the
     * first row where some run's block would; CK when none), col2im adds every run of those
     * rows at its exact length instead, in the same order, so the same bits. Tests may clear
     * dx_in_place (before sizing the workspace). */
    bool dx_in_place;
    int64_t dx_exact_row;
    int32_t *csrc;
    int64_t spb;       /* samples per block */
    int64_t wmax;      /* most columns of a tile per sample */
    int64_t rows;      /* column rows built at once (a multiple of 4) */
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
/* The same with the tile size given (columns per tile and bytes of a column chunk; the
 * defaults are CF_CONV_TILE_COLS and CF_CONV_TILE_BYTES in convcore.c): for tests, which check
 * that the tiling does not change results. */
cfnet_status cf_conv_plan_init_tiled(const cf_allocator *a, cf_conv_plan *p, int C, int H,
                                     int W, int k, int stride, cfnet_padding padding,
                                     const int32_t *group_of, int ngroups, int64_t tile_cols,
                                     size_t tile_bytes);
void cf_conv_plan_free(cf_conv_plan *p);
/* Whether a plain convolution (one group) of O output channels is better planned as one group
 * over output channels (group_of all zero, then bwd_columns set): the forward takes the conic
 * layers' products over output channels, the weight gradient stays on the columns and the
 * input gradient goes over output channels in col2im's order, so every result has the plain
 * plan's bits. Stride 1, rows of 32 pixels or more that fill under
 * CF_CONV_DIRECT_FILL of the lanes of 16-float vectors (50 x 50 maps), and what the products
 * over output channels take (at most 32 channels, 40 KiB of weights, outputs spread over the
 * L1 sets). Measured at 50 x 50 x 32: forward 14.4 -> 12.1 ms (AVX-512, 1 thread), and the
 * input gradient over output channels forward+backward 45 -> 42-44 ms. It does not depend on
 * the CPU variant (conv2d may still take its forward on the plain plan: cf_conv_row_fills_lanes
 * below). */
bool cf_conv_plain_over_channels(int C, int H, int W, int k, int stride, cfnet_padding padding,
                                 int O);
/* Whether the direct forward over pixels fills at least CF_CONV_DIRECT_FILL of the lanes of
 * vw-float vectors (8 or 16; false otherwise) on output rows of OW columns: 50 columns fill 56
 * of 56 AVX2 lanes (pieces of 24) but 50 of 64 AVX-512 lanes (pieces of 48). conv2d layers
 * that cf_conv_plain_over_channels plans as one group still take their forward on the plain
 * plan where the active variant's vectors (cf_simd()->lanes) are filled: at 50 x 50 x 32 on
 * AVX2 that forward is faster than the one over output channels (the same bits either way). */
bool cf_conv_row_fills_lanes(int OW, int vw);
/* Whether a forward of O output channels on plan p takes every tile directly over pixels (the
 * padded input read in place, no columns): conv2d's input gradient as a forward (conv2d.c).
 * With AUTO the same answer on every CPU variant: the tiles must fill 8- and 16-float vectors
 * both (at 20 x 20 they fill AVX2's but not AVX-512's, and the answer is no). */
bool cf_conv_forward_all_direct(const cf_conv_plan *p, int O);
/* Which tiles the forward computes directly: NEVER (all through columns), ALWAYS, or AUTO (the
 * tiles whose vectors the direct products fill well; what cf_conv_plan_init chooses). Grouped
 * (conic) plans go direct over output channels (pix) with ALWAYS and AUTO, whatever the
 * stride. The result is the same bits whichever is chosen (tests compare them). Returns
 * false, changing nothing, for a direct mode on a one-group plan with stride other than 1. */
typedef enum cf_conv_direct {
    CF_CONV_DIRECT_NEVER = 0,
    CF_CONV_DIRECT_ALWAYS = 1,
    CF_CONV_DIRECT_AUTO = 2
} cf_conv_direct;
bool cf_conv_plan_set_direct(cf_conv_plan *p, cf_conv_direct mode);

/* Which of the direct tiles of a plain plan (stride 1, kernel > 1) go as one flat run over
 * their output rows: NEVER (each output row a run), ALWAYS, or AUTO (with 16-lane vectors, where
 * the flat run takes fewer vector lanes than the rows: narrow rows whose last vector is part
 * empty; what cf_conv_plan_init chooses). Same bits either way. Returns false, changing nothing, for a
 * mode other than NEVER on a plan without flat runs. */
bool cf_conv_plan_set_flat(cf_conv_plan *p, cf_conv_direct mode);

/* Workspace bytes for O output channels, a batch of n and `threads` threads (the batch is
 * split into one contiguous share per thread; backward reduces the threads' weight gradients
 * in thread order, so results depend on the thread count but not on timing). */
size_t cf_conv_workspace(const cf_conv_plan *p, int O, int64_t n, int threads);
/* The part of it, at its start, that must stay untouched from a training forward to the
 * backward that follows (see cf_layer_ops.workspace_kept): none, the engine keeps nothing
 * between calls (0). */
size_t cf_conv_workspace_kept(const cf_conv_plan *p, int O, int64_t n, int threads);

/* y (n x O x P) = conv(x (n x C x H x W)); Wg[g] is group g's O x CK matrix; bias (O) may be
 * NULL. ws is the workspace; scratch, when not NULL, replaces its scratch part (the bytes after
 * cf_conv_workspace_kept), which is then not touched. With relu, y = max(0, conv(x)): each
 * thread applies it to a block of samples (or, when the threads share a sample's tiles, to a
 * tile's pixels) as soon as that is written, while it is in cache; the bits are those of the
 * convolution followed by the ReLU kernel. */
void cf_conv_forward(const cf_conv_plan *p, int O, const float *const *Wg, const float *bias,
                     const float *x, float *y, int64_t n, void *ws, void *scratch, int threads,
                     bool relu);

/* The forward's weights packed once, for a caller that applies the same weights many times
 * (the inference caches of the rotation layers): cf_conv_pack_forward writes every group's
 * bank Wg[g] (O x CK) in the layout the forward reads into `packed`, which holds
 * cf_conv_packed_forward_floats(p, O) floats (the layout depends only on the plan and O, not on
 * the batch, the threads or the CPU kernels); cf_conv_forward_packed is cf_conv_forward with
 * that instead of Wg, the same bits. cf_conv_pack_count: packings so far, process-wide (for
 * tests). */
size_t cf_conv_packed_forward_floats(const cf_conv_plan *p, int O);
void cf_conv_pack_forward(const cf_conv_plan *p, int O, const float *const *Wg, float *packed);
void cf_conv_forward_packed(const cf_conv_plan *p, int O, const float *packed, const float *bias,
                            const float *x, float *y, int64_t n, void *ws, void *scratch,
                            int threads, bool relu);
uint64_t cf_conv_pack_count(void);

/* dWg[g] += dY_g col_g^T (dWg[g] may repeat a pointer: contributions add), dbias += sums (may
 * be NULL), dx = conv^T (dy) if dx is not NULL. scratch as for cf_conv_forward. */
void cf_conv_backward(const cf_conv_plan *p, int O, const float *const *Wg, float *const *dWg,
                      float *dbias, const float *x, const float *dy, float *dx, int64_t n,
                      void *ws, void *scratch, int threads);

#endif
