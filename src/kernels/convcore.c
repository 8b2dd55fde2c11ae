/* Tiled im2col + GEMM convolution with per-group weights; see convcore.h. */
#include "convcore.h"

#include "core/pool.h"

#include <stdatomic.h>
#include <string.h>

/* Forward packings of a filter bank so far (cf_conv_pack_count, for tests). */
static _Atomic uint64_t cf_conv_pack_counter;

uint64_t cf_conv_pack_count(void) { return atomic_load_explicit(&cf_conv_pack_counter, memory_order_relaxed); }

/* A tile's columns per block aim at this many (a multiple of 24, the products' strip width),
 * and the rows built at once at this many bytes of columns (about half of a 512 KiB L2). */
#ifndef CF_CONV_TILE_COLS
#define CF_CONV_TILE_COLS 480
#endif
/* Multiply-adds per sample and output channel from which a forward with fewer samples than
 * threads splits the tiles over the threads (a 64 x 64 map with 32 input channels is 1.2 M). */
#ifndef CF_CONV_SPLIT_WORK
#define CF_CONV_SPLIT_WORK ((int64_t)1 << 19)
#endif
#ifndef CF_CONV_TILE_BYTES
#define CF_CONV_TILE_BYTES ((size_t)192 << 10)
#endif
/* Fewest columns a run has on average for the weight gradient to read the columns in place
 * (nt_runs): each run restarts the product's 12 row pointers, and the in-place reads cross
 * cache lines where im2col's rows are aligned. Weight gradient alone, 1 thread, batch 50, ms
 * (in place / im2col): conv2d 32 channels 16 x 16 1.83 / 1.75, 24 x 24 3.6 / 3.7, 32 x 32
 * 6.3 / 6.6, 64 x 64 23.4 / 25.3; p4 group 60 channels, 8 x 8 outputs 1.90 / 1.42, 24 x 24
 * 12.6 / 11.7, 32 x 32 20.4 / 20.5 (docs/performance.md, round 15). */
#ifndef CF_CONV_NT_RUNS_MIN_LEN
#define CF_CONV_NT_RUNS_MIN_LEN 32
#endif

cfnet_status cf_check_conv_args(const char *name, int out_channels, int max_out, int kernel,
                                cfnet_padding padding)
{
    CF_FAIL_IF(out_channels < 1 || out_channels > max_out, CFNET_E_INVALID_ARGUMENT,
               "%s: out_channels is %d, must be in 1..%d", name, out_channels, max_out);
    CF_FAIL_IF(kernel < 1 || kernel % 2 == 0 || kernel > 63, CFNET_E_INVALID_ARGUMENT,
               "%s: kernel is %d, must be odd and in 1..63", name, kernel);
    CF_FAIL_IF(padding != CFNET_PADDING_VALID && padding != CFNET_PADDING_SAME,
               CFNET_E_INVALID_ARGUMENT, "%s: unknown padding %d", name, (int)padding);
    return CFNET_OK;
}

int cf_conv_out_size(int S, int k, int stride, cfnet_padding padding)
{
    int pad = padding == CFNET_PADDING_SAME ? (k - 1) / 2 : 0;
    int span = S + 2 * pad - k;
    if (span < 0 || stride < 1) return 0;
    return span / stride + 1;
}

void cf_conv_plan_free(cf_conv_plan *p)
{
    cf_free(p->goff);
    cf_free(p->perm);
    cf_free(p->runs);
    cf_free(p->pruns);
    cf_free(p->prun_off);
    cf_free(p->run_off);
    cf_free(p->rowoff);
    cf_free(p->tgroup);
    cf_free(p->tj0);
    cf_free(p->rq);
    cf_free(p->tdirect);
    cf_free(p->csrc);
    cf_free(p->fsrc);
    cf_free(p->flen);
    memset(p, 0, sizeof *p);
}

/* Cuts every group into tiles (see convcore.h): spb samples per block so that a block of the
 * largest group has about CF_CONV_TILE_COLS columns, groups cut into pieces of at most wmax
 * columns per sample (multiples of 24 but the last). */
static cfnet_status plan_tiles(const cf_allocator *a, cf_conv_plan *p, int64_t tile_cols,
                               size_t tile_bytes)
{
    int64_t pgmax = 1;
    for (int g = 0; g < p->ngroups; g++)
        if (p->goff[g + 1] - p->goff[g] > pgmax) pgmax = p->goff[g + 1] - p->goff[g];
    if (tile_cols < 1) tile_cols = 1;
    p->spb = tile_cols / pgmax;
    if (p->spb < 1) p->spb = 1;
    p->wmax = tile_cols / p->spb;
    if (p->wmax < 1) p->wmax = 1;
    if (p->wmax > pgmax) p->wmax = pgmax;
    if (p->wmax > 24) p->wmax -= p->wmax % 24;
    int64_t tcols = p->spb * p->wmax;
    p->rows = (int64_t)(tile_bytes / sizeof(float)) / tcols;
    p->rows -= p->rows % 4;
    if (p->rows < 8) p->rows = 8;
    if (p->rows >= p->CK) p->rows = p->CK;
    int64_t nt = 0;
    for (int g = 0; g < p->ngroups; g++) {
        int64_t pg = p->goff[g + 1] - p->goff[g];
        nt += (pg + p->wmax - 1) / p->wmax;
    }
    CF_FAIL_IF(nt > INT32_MAX / 64, CFNET_E_LIMIT, "convolution: too many tiles (%lld)",
               (long long)nt);
    p->ntiles = (int)nt;
    size_t cnt = (size_t)(nt ? nt : 1);
    p->tgroup = cf_alloc(a, cnt * sizeof *p->tgroup);
    p->tj0 = cf_alloc(a, (cnt + 1) * sizeof *p->tj0);
    CF_FAIL_IF(!p->tgroup || !p->tj0, CFNET_E_OUT_OF_MEMORY,
               "convolution: cannot allocate index tables");
    int i = 0;
    for (int g = 0; g < p->ngroups; g++)
        for (int64_t j = p->goff[g]; j < p->goff[g + 1]; j += p->wmax, i++) {
            p->tgroup[i] = g;
            p->tj0[i] = j;
        }
    p->tj0[nt] = p->P; /* tiles follow each other: tile i ends where tile i + 1 starts */
    return CFNET_OK;
}

/* The direct forward pays off when its vectors are well filled: AUTO sends a tile of a plain
 * convolution (one group: runs are whole output rows) direct when at least this share of the
 * lanes of its pieces (runs cut into pieces of up to 3 vectors, each taking whole vectors of
 * the active variant's 8 or 16 lanes) hold columns. Grouped (conic) plans keep the columns:
 * their runs are pieces of rows, and measured at 28, 50 and 64 pixels the direct products
 * were no faster there (round 4 in docs/performance.md). */
#ifndef CF_CONV_DIRECT_FILL
#define CF_CONV_DIRECT_FILL 0.8
#endif
/* ... and when a piece's rows of input (CK rows of up to 24 floats) and the output channels
 * stay small: with more, the column path's products, which keep a strip of columns in L1
 * across all output rows, were faster (p4 layers: 60 to 128 output channels, CK up to 1152). */
#ifndef CF_CONV_DIRECT_MAX_CK
#define CF_CONV_DIRECT_MAX_CK 320
#endif
#ifndef CF_CONV_DIRECT_MAX_O
#define CF_CONV_DIRECT_MAX_O 32
#endif

/* The forward over output channels (conic plans) reads a group's packed weights once per few
 * columns and stores each column's O outputs one by one, a plane apart. AUTO takes it for at
 * most 32 output channels and packed weights (Mp x CK floats) of at most 40 KiB: measured
 * faster than the columns for the rotated-MNIST layers (16 x 135 floats, 8.6 KiB) and for
 * 32 channels on 50 x 50 maps (32 x 288 floats, 36 KiB: forward R = 2 36.8 -> 32.3 ms,
 * R = 4 40.4 -> 33.6 ms; round 6 in docs/performance.md). */
#ifndef CF_CONV_PIX_MAX_BYTES
#define CF_CONV_PIX_MAX_BYTES 40960
#endif
#ifndef CF_CONV_PIX_MAX_O
#define CF_CONV_PIX_MAX_O 32
#endif
/* ... and while a column's O outputs, P floats apart, fall in different sets of the L1 cache
 * (at most 4 of them in any of its 64 sets of 64-byte lines): planes of 1024 or 4096 floats
 * (32 x 32, 64 x 64 maps) put them all in one set, and measured slower (the yeast CFNet's
 * 64 x 64, 32 x 32 and 16 x 16 layers keep the columns for this reason). */
static bool stores_spread(int64_t P, int O)
{
    int lines[64] = {0};
    for (int o = 0; o < O; o++)
        if (++lines[((int64_t)o * P * (int64_t)sizeof(float) / 64) % 64] > 4) return false;
    return true;
}

static bool use_pix(const cf_conv_plan *p, int O)
{
    if (!p->pix) return false;
    if (!p->direct_auto) return true;
    return O <= CF_CONV_PIX_MAX_O &&
           cf_gemm_pix_floats(O, (int)p->CK) * sizeof(float) <= CF_CONV_PIX_MAX_BYTES &&
           stores_spread(p->P, O);
}

/* The backward over output channels too (stride 1 only), under the same rule: faster than the
 * columns at 50 x 50 x 32 (fwd+bwd R = 4 129 -> 106 ms, R = 2 148 -> 116 ms), slower at
 * 64 x 64 x 32 even though it stores pixel-major (R = 1 177 -> 202 ms; round 7 in
 * docs/performance.md). */
static bool use_pix_bwd(const cf_conv_plan *p, int O)
{
    return p->stride == 1 && !p->bwd_columns && use_pix(p, O);
}

static int pad8(int n) { return (n + 7) / 8 * 8; }

/* Plans whose weight gradient goes through the columns while the forward goes over output
 * channels (bwd_columns: plain convolutions planned as one group) take their input gradient
 * over output channels, tile by tile and tap by tap as the columns' col2im adds it: the same
 * sums in the same order, so the column path's bits, without the product into the columns'
 * gradient and its col2im. */
static bool dx_pix_only(const cf_conv_plan *p, int O)
{
    return p->stride == 1 && p->bwd_columns && use_pix(p, O);
}

/* Lanes the direct forward's vectors of vw floats take for a run of len columns: whole vectors,
 * len rounded up to a multiple of vw, however fr_piece_cols (gemm.c) cuts the run (pieces of 3
 * vectors here; with 16 lanes the kernels may cut a tail of 4 as 2 + 2, the same vectors). */
static int64_t run_lanes(int len, int vw)
{
    int64_t lanes = 0;
    for (int n0 = 0; n0 < len; n0 += 3 * vw)
        lanes += (len - n0 < 3 * vw ? len - n0 + vw - 1 : 3 * vw) / vw * vw;
    return lanes;
}

bool cf_conv_plain_over_channels(int C, int H, int W, int k, int stride, cfnet_padding padding,
                                 int O)
{
    int OH = cf_conv_out_size(H, k, stride, padding), OW = cf_conv_out_size(W, k, stride, padding);
    int64_t CK = (int64_t)C * k * k;
    if (stride != 1 || OH < 1 || OW < 32 || CK > CF_CONV_DIRECT_MAX_CK || O > CF_CONV_PIX_MAX_O ||
        cf_gemm_pix_floats(O, (int)CK) * sizeof(float) > CF_CONV_PIX_MAX_BYTES ||
        !stores_spread((int64_t)OH * OW, O))
        return false;
    /* a row's share of the lanes of 16-float vectors */
    return !cf_conv_row_fills_lanes(OW, 16);
}

bool cf_conv_row_fills_lanes(int OW, int vw)
{
    return OW > 0 && (vw == 8 || vw == 16) &&
           (double)OW >= CF_CONV_DIRECT_FILL * (double)run_lanes(OW, vw);
}

static bool tile_fills_vw(const cf_conv_plan *p, int i, int vw)
{
    int64_t cols = 0, lanes = 0;
    for (int64_t r = p->run_off[i]; r < p->run_off[i + 1]; r++) {
        cols += p->runs[r].len;
        lanes += run_lanes(p->runs[r].len, vw);
    }
    return lanes > 0 && (double)cols >= CF_CONV_DIRECT_FILL * (double)lanes;
}

static bool tile_fills_lanes(const cf_conv_plan *p, int i)
{
    return tile_fills_vw(p, i, cf_simd()->lanes);
}

/* AUTO asks the tiles to fill 8- and 16-float vectors both, whichever variant is active: a
 * caller that chooses its sums by this answer (conv2d's input gradient) then chooses the same
 * on every CPU variant, so its bits stay the same on all of them. */
bool cf_conv_forward_all_direct(const cf_conv_plan *p, int O)
{
    if (p->perm || !p->tdirect || (p->direct_auto && O > CF_CONV_DIRECT_MAX_O)) return false;
    for (int i = 0; i < p->ntiles; i++)
        if (!p->tdirect[i] ||
            (p->direct_auto && (!tile_fills_vw(p, i, 8) || !tile_fills_vw(p, i, 16))))
            return false;
    return true;
}

/* A direct tile as one flat run over its output rows (conv_fwd_flat) instead of one run per
 * row: with AUTO where that takes fewer lanes of the active variant's vectors, 16-lane
 * vectors only. At 28 x 28 (padded rows of 30) a row of 28 takes 32 lanes, the flat run about
 * 30 per row, and its pieces are all 3 vectors wide. With 8 lanes (avx2, and generic, which
 * counts as 8) the flat run has no 5- to 7-row tiles and its segment stores cost more than
 * the lanes saved: conv2d 28 x 28 x 15 forward 2.00 -> 2.22 ms (docs/performance.md, "The
 * padded input copy"). */
static bool tile_goes_flat(const cf_conv_plan *p, int i)
{
    if (p->flat_mode == CF_CONV_DIRECT_NEVER) return false;
    if (p->flat_mode == CF_CONV_DIRECT_ALWAYS) return true;
    int vw = cf_simd()->lanes;
    if (vw < 16) return false;
    int64_t lanes = 0;
    for (int64_t r = p->run_off[i]; r < p->run_off[i + 1]; r++)
        lanes += run_lanes(p->runs[r].len, vw);
    return run_lanes(p->flen[i], vw) < lanes;
}

bool cf_conv_plan_set_direct(cf_conv_plan *p, cf_conv_direct mode)
{
    if (p->perm) {
        /* Conic: every tile over output channels, or none (the runs are too short for
         * direct products over pixels; round 5 in docs/performance.md). AUTO asks for small
         * enough weights too (checked per call, where O is known). */
        p->pix = mode != CF_CONV_DIRECT_NEVER;
        p->direct_auto = mode == CF_CONV_DIRECT_AUTO;
        return true;
    }
    if (!p->tdirect) return mode == CF_CONV_DIRECT_NEVER;
    /* AUTO also needs a small product per piece (checked per call, where O is known). */
    p->direct_auto = mode == CF_CONV_DIRECT_AUTO;
    p->direct_mode = mode;
    for (int i = 0; i < p->ntiles; i++) {
        p->tdirect[i] = mode == CF_CONV_DIRECT_ALWAYS ||
                        (mode == CF_CONV_DIRECT_AUTO && !p->perm && p->CK <= CF_CONV_DIRECT_MAX_CK &&
                         tile_fills_lanes(p, i));
        if (p->tdirect[i] && p->fsrc && tile_goes_flat(p, i)) p->tdirect[i] = 2;
    }
    return true;
}

bool cf_conv_plan_set_flat(cf_conv_plan *p, cf_conv_direct mode)
{
    if (!p->fsrc) return mode == CF_CONV_DIRECT_NEVER;
    p->flat_mode = mode;
    return cf_conv_plan_set_direct(p, (cf_conv_direct)p->direct_mode);
}

cfnet_status cf_conv_plan_init(const cf_allocator *a, cf_conv_plan *p, int C, int H, int W,
                               int k, int stride,
                               cfnet_padding padding, const int32_t *group_of, int ngroups)
{
    return cf_conv_plan_init_tiled(a, p, C, H, W, k, stride, padding, group_of, ngroups,
                                   CF_CONV_TILE_COLS, CF_CONV_TILE_BYTES);
}

cfnet_status cf_conv_plan_init_tiled(const cf_allocator *a, cf_conv_plan *p, int C, int H,
                                     int W, int k, int stride, cfnet_padding padding,
                                     const int32_t *group_of, int ngroups, int64_t tile_cols,
                                     size_t tile_bytes)
{
    memset(p, 0, sizeof *p);
    int OH = cf_conv_out_size(H, k, stride, padding), OW = cf_conv_out_size(W, k, stride, padding);
    CF_FAIL_IF(OH < 1 || OW < 1, CFNET_E_SHAPE_MISMATCH,
               "convolution: kernel %d does not fit a %dx%d map", k, H, W);
    p->C = C;
    p->H = H;
    p->W = W;
    p->k = k;
    p->stride = stride;
    p->pad = padding == CFNET_PADDING_SAME ? (k - 1) / 2 : 0;
    p->Hp = H + 2 * p->pad;
    p->Wp = W + 2 * p->pad;
    /* Offsets into the padded input are 32-bit: a size limit, checked before any table. */
    int64_t hp = p->Hp, wp = p->Wp, padded = (int64_t)C * hp * wp;
    if (padded > INT32_MAX) {
        memset(p, 0, sizeof *p);
        return cf_error(CFNET_E_LIMIT,
                        "convolution: %d channels of %lldx%lld (padded) are %lld values per "
                        "sample, at most %d", C, (long long)hp, (long long)wp, (long long)padded,
                        INT32_MAX);
    }
    p->OH = OH;
    p->OW = OW;
    p->P = (int64_t)OH * OW;
    p->CK = (int64_t)C * k * k;
    p->ngroups = group_of ? ngroups : 1;
    int64_t kk = (int64_t)k * k;
    p->goff = cf_alloc_zero(a, (size_t)p->ngroups + 1, sizeof *p->goff);
    if (group_of) p->perm = cf_alloc(a, (size_t)p->P * sizeof *p->perm);
    if (!p->goff || (group_of && !p->perm)) {
        cf_conv_plan_free(p);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "convolution: cannot allocate index tables");
    }
    if (group_of) {
        /* Counting sort of the output pixels by group, stable in natural order. */
        for (int64_t q = 0; q < p->P; q++) p->goff[group_of[q] + 1]++;
        for (int g = 0; g < p->ngroups; g++) p->goff[g + 1] += p->goff[g];
        int64_t *fill = cf_alloc(a, (size_t)p->ngroups * sizeof *fill);
        if (!fill) {
            cf_conv_plan_free(p);
            return cf_error(CFNET_E_OUT_OF_MEMORY, "convolution: cannot allocate index tables");
        }
        memcpy(fill, p->goff, (size_t)p->ngroups * sizeof *fill);
        for (int64_t q = 0; q < p->P; q++) p->perm[fill[group_of[q]]++] = (int32_t)q;
        cf_free(fill);
    } else {
        p->goff[1] = p->P;
    }
    cfnet_status st = plan_tiles(a, p, tile_cols, tile_bytes);
    if (st != CFNET_OK) {
        cf_conv_plan_free(p);
        return st;
    }
    int nt = p->ntiles;
    p->run_off = cf_alloc_zero(a, (size_t)nt + 1, sizeof *p->run_off);
    p->rowoff = cf_alloc(a, (size_t)p->CK * sizeof *p->rowoff);
    if (!p->run_off || !p->rowoff) {
        cf_conv_plan_free(p);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "convolution: cannot allocate index tables");
    }
    if (group_of) {
        /* Runs of a tile's columns that are consecutive output pixels, for the scatter of the
         * outputs and the gather of their gradient. */
        p->prun_off = cf_alloc_zero(a, (size_t)nt + 1, sizeof *p->prun_off);
        p->pruns = cf_alloc(a, (size_t)p->P * sizeof *p->pruns);
        if (!p->prun_off || !p->pruns) {
            cf_conv_plan_free(p);
            return cf_error(CFNET_E_OUT_OF_MEMORY, "convolution: cannot allocate index tables");
        }
        int64_t nr = 0;
        for (int i = 0; i < nt; i++) {
            p->prun_off[i] = nr;
            for (int64_t jj = p->tj0[i]; jj < p->tj0[i + 1];) {
                int64_t e = jj + 1;
                while (e < p->tj0[i + 1] && p->perm[e] == p->perm[e - 1] + 1) e++;
                p->pruns[nr].dst = (int32_t)(jj - p->tj0[i]);
                p->pruns[nr].src = p->perm[jj];
                p->pruns[nr].len = (int32_t)(e - jj);
                nr++;
                jj = e;
            }
        }
        p->prun_off[nt] = nr;
    }
    int64_t HWp = (int64_t)p->Hp * p->Wp; /* C * HWp <= INT32_MAX: checked at the start */
    for (int64_t r = 0; r < p->CK; r++)
        p->rowoff[r] = (int32_t)(r / kk * HWp + (r % kk) / k * p->Wp + (r % kk) % k);
    /* Offset in the padded input of every column (tap 0), then the runs of every tile: two
     * passes, count then fill. */
    int32_t *idx = cf_alloc(a, (size_t)p->P * sizeof *idx);
    if (!idx) {
        cf_conv_plan_free(p);
        return cf_error(CFNET_E_OUT_OF_MEMORY, "convolution: cannot allocate index tables");
    }
    for (int64_t j = 0; j < p->P; j++) {
        int64_t q = p->perm ? p->perm[j] : j;
        int oi = (int)(q / OW), oj = (int)(q % OW);
        idx[j] = oi * stride * p->Wp + oj * stride;
    }
    for (int pass = 0; pass < 2; pass++) {
        int64_t nr = 0;
        for (int i = 0; i < nt; i++) {
            int64_t j0 = p->tj0[i], j1 = p->tj0[i + 1];
            if (pass == 0) p->run_off[i] = nr;
            for (int64_t j = j0; j < j1;) {
                int64_t e = j + 1;
                while (e < j1 && idx[e] == idx[e - 1] + 1) e++;
                if (pass == 1) {
                    p->runs[nr].dst = (int32_t)(j - j0);
                    p->runs[nr].src = idx[j];
                    p->runs[nr].len = (int32_t)(e - j);
                }
                nr++;
                j = e;
            }
        }
        if (pass == 0) {
            p->run_off[nt] = nr;
            p->runs = cf_alloc(a, (size_t)(nr ? nr : 1) * sizeof *p->runs);
            if (!p->runs) {
                cf_free(idx);
                cf_conv_plan_free(p);
                return cf_error(CFNET_E_OUT_OF_MEMORY,
                                "convolution: cannot allocate index tables");
            }
        }
    }
    p->runs_fit = p->run_off[nt] > 0;
    int64_t run_cols = 0;
    for (int64_t r = 0; r < p->run_off[nt]; r++) {
        if (p->runs[r].dst % 8 || p->runs[r].len % 8) p->runs_fit = false;
        run_cols += p->runs[r].len;
    }
    p->nt_runs = p->runs_fit && run_cols >= CF_CONV_NT_RUNS_MIN_LEN * p->run_off[nt];
    /* col2im into dx itself where there is no border. The kernels' adds (a block of 8 for a
     * run shorter than 8) stay inside a sample's planes up to the first column row where some
     * run's block would pass their end (rowoff grows with the row); from there on col2im adds
     * at exact lengths. */
    p->dx_in_place = p->pad == 0;
    p->dx_exact_row = p->CK;
    for (int64_t r = 0; r < p->run_off[nt] && p->dx_in_place; r++) {
        int64_t end = (int64_t)p->runs[r].src + (p->runs[r].len < 8 ? 8 : p->runs[r].len);
        while (p->dx_exact_row > 0 &&
               p->rowoff[p->dx_exact_row - 1] + end > (int64_t)C * H * W)
            p->dx_exact_row--;
    }
    if (p->perm) {
        p->csrc = idx; /* kept for the products over output channels */
        cf_conv_plan_set_direct(p, CF_CONV_DIRECT_AUTO);
    } else {
        cf_free(idx);
    }
    if (stride == 1) {
        /* The direct forward's tables: each run's first output pixel, and which tiles take
         * the direct path. */
        int64_t nr = p->run_off[nt];
        p->rq = cf_alloc(a, (size_t)(nr ? nr : 1) * sizeof *p->rq);
        p->tdirect = cf_alloc_zero(a, (size_t)(nt ? nt : 1), sizeof *p->tdirect);
        if (!p->rq || !p->tdirect) {
            cf_conv_plan_free(p);
            return cf_error(CFNET_E_OUT_OF_MEMORY, "convolution: cannot allocate index tables");
        }
        for (int i = 0; i < nt; i++)
            for (int64_t r = p->run_off[i]; r < p->run_off[i + 1]; r++) {
                int64_t j = p->tj0[i] + p->runs[r].dst;
                p->rq[r] = p->perm ? p->perm[j] : (int32_t)j;
            }
        if (!p->perm && k > 1) {
            /* each tile's flat run: from its first output pixel's tap 0 to its last's (the
             * natural order's tap 0 of pixel q is (q / OW) Wp + q % OW) */
            p->fsrc = cf_alloc(a, (size_t)(nt ? nt : 1) * sizeof *p->fsrc);
            p->flen = cf_alloc(a, (size_t)(nt ? nt : 1) * sizeof *p->flen);
            if (!p->fsrc || !p->flen) {
                cf_conv_plan_free(p);
                return cf_error(CFNET_E_OUT_OF_MEMORY,
                                "convolution: cannot allocate index tables");
            }
            for (int i = 0; i < nt; i++) {
                int64_t q0 = p->tj0[i], q1 = p->tj0[i + 1] - 1;
                int64_t f0 = q0 / OW * p->Wp + q0 % OW, f1 = q1 / OW * p->Wp + q1 % OW;
                p->fsrc[i] = (int32_t)f0;
                p->flen[i] = (int32_t)(f1 - f0 + 1);
            }
            p->flat_mode = CF_CONV_DIRECT_AUTO;
        }
        cf_conv_plan_set_direct(p, CF_CONV_DIRECT_AUTO);
    }
    return CFNET_OK;
}

/* Threads actually used for a batch of n: the batch is split into shares of samples; a
 * forward with fewer samples than threads (a single image, for latency) splits the tiles
 * instead (every output element is computed by exactly one thread either way, so the result
 * is the same). */
static int eff_threads(int threads, int64_t n)
{
    if (threads < 1) threads = 1;
    if (threads > CFNET_MAX_THREADS) threads = CFNET_MAX_THREADS; /* the option refuses more */
    return n < threads ? (int)(n > 0 ? n : 1) : threads;
}

static bool split_tiles(const cf_conv_plan *p, int64_t n, int threads)
{
    /* Waking the other threads costs tens of microseconds: worth it only for a large layer. */
    return n < threads && threads > 1 && p->ntiles > 1 && p->P * p->CK >= CF_CONV_SPLIT_WORK;
}

static int fwd_threads(const cf_conv_plan *p, int64_t n, int threads)
{
    if (!split_tiles(p, n, threads)) return eff_threads(threads, n);
    int T = eff_threads(threads, threads); /* clamped */
    return T < p->ntiles ? T : p->ntiles;
}

/* Floats of slack after the column chunk and the padded input: run copies move whole blocks
 * of RUN_BLOCK floats and may run past the end of a run by up to RUN_BLOCK - 1. */
#define RUN_BLOCK CF_RUN_BLOCK

static inline int64_t col_ld(int64_t tn);

/* Plans that go over output channels both ways (use_pix_bwd, which implies use_pix) build no
 * columns and no tile outputs in either direction, and take their samples one at a time (the
 * blocks only serve the columns): their threads need neither the column chunk nor the tile
 * outputs, and the padded input of one sample. The sums are per sample in sample order either
 * way, so the results are the same bits. */
static bool pix_both(const cf_conv_plan *p, int O) { return use_pix_bwd(p, O); }

static int64_t block_samples(const cf_conv_plan *p, int O) { return pix_both(p, O) ? 1 : p->spb; }

/* Per thread: a chunk of columns (rows x spb wmax, reused for their gradient), the outputs or
 * output gradients of a tile (O x spb wmax), the zero-padded input of a block (spb C planes)
 * and, in backward, the padded input gradient (as many; none where col2im adds into dx itself,
 * dx_in_place). */
static size_t col_bytes(const cf_conv_plan *p)
{
    return cf_align64((size_t)p->rows * (size_t)col_ld(p->spb * p->wmax) * sizeof(float));
}

static size_t out_bytes(const cf_conv_plan *p, int O)
{
    if (pix_both(p, O)) return 0;
    return cf_align64((size_t)O * (size_t)(p->spb * p->wmax) * sizeof(float));
}

static size_t pad_bytes(const cf_conv_plan *p, int O)
{
    /* the padded input gradient's planes only where col2im builds them outside dx */
    size_t planes = pix_both(p, O)                        ? (size_t)p->C
                    : dx_pix_only(p, O) || p->dx_in_place ? (size_t)(p->spb * p->C)
                                                          : (size_t)(2 * p->spb * p->C);
    return cf_align64((planes * (size_t)p->Hp * (size_t)p->Wp + RUN_BLOCK) * sizeof(float));
}

/* The backward over output channels, per thread: the output gradient transposed (P x Mp), the
 * weight gradients (ngroups banks of CK x Mp) and a sample's padded input gradient pixel by
 * pixel (Hp Wp x Cp). */
static size_t pix_bwd_bytes(const cf_conv_plan *p, int O)
{
    size_t Mp = (size_t)pad8(O), Cp = (size_t)pad8(p->C);
    return cf_align64((size_t)p->P * Mp * sizeof(float)) +
           cf_align64((size_t)p->ngroups * (size_t)p->CK * Mp * sizeof(float)) +
           cf_align64((size_t)p->Hp * (size_t)p->Wp * Cp * sizeof(float));
}

/* A sample's padded input gradient pixel by pixel (Hp Wp x Cp). */
static size_t dxT_bytes(const cf_conv_plan *p)
{
    return cf_align64((size_t)p->Hp * (size_t)p->Wp * (size_t)pad8(p->C) * sizeof(float));
}

/* The column chunk's place, which the backward over output channels uses for its buffers
 * (and after it, a plan with dx_pix_only keeps its input gradient pixel by pixel). */
static size_t col_region(const cf_conv_plan *p, int O)
{
    if (pix_both(p, O)) return pix_bwd_bytes(p, O);
    return col_bytes(p) + (dx_pix_only(p, O) ? dxT_bytes(p) : 0);
}

static size_t thread_bytes(const cf_conv_plan *p, int O)
{
    return col_region(p, O) + out_bytes(p, O) + pad_bytes(p, O);
}

/* Shared by the threads: the packed weights of every group, O x CK for the forward and CK x O
 * (transposed) for the input gradient. */
static size_t packed_floats(const cf_conv_plan *p, int O, bool transposed)
{
    if (transposed)
        return use_pix_bwd(p, O) || dx_pix_only(p, O) ? cf_gemm_dx_floats(p->C, O, p->k)
                                                       : cf_gemm_packed_floats((int)p->CK, O);
    return use_pix(p, O) ? cf_gemm_pix_floats(O, (int)p->CK) : cf_gemm_packed_floats(O, (int)p->CK);
}

static size_t packed_bytes(const cf_conv_plan *p, int O)
{
    size_t f = cf_gemm_packed_floats(O, (int)p->CK), t = cf_gemm_packed_floats((int)p->CK, O);
    f = f > t ? f : t;
    if (!p->perm && !dx_pix_only(p, O)) return cf_align64((size_t)p->ngroups * f * sizeof(float));
    /* grouped: the layouts over output channels too */
    size_t x = cf_gemm_pix_floats(O, (int)p->CK), d = cf_gemm_dx_floats(p->C, O, p->k);
    f = f > x ? f : x;
    return cf_align64((size_t)p->ngroups * (f > d ? f : d) * sizeof(float));
}

/* Per extra thread in backward: private weight-gradient banks (one per group) and bias, and
 * the table of pointers to those banks. */
static size_t reduce_bytes(const cf_conv_plan *p, int O)
{
    return cf_align64(((size_t)p->ngroups * (size_t)O * (size_t)p->CK + (size_t)O) *
                      sizeof(float)) +
           cf_align64((size_t)p->ngroups * sizeof(float *));
}

/* The per-thread job descriptors (conv_thread, defined below) live in the workspace too, so
 * that run_split's frame stays small whatever the thread count (hosts call libcfnet on threads
 * with small stacks). */
static size_t jobs_bytes(int T);

size_t cf_conv_workspace_kept(const cf_conv_plan *p, int O, int64_t n, int threads)
{
    (void)p, (void)O, (void)n, (void)threads;
    return 0;
}

size_t cf_conv_workspace(const cf_conv_plan *p, int O, int64_t n, int threads)
{
    int T = eff_threads(threads, n), F = fwd_threads(p, n, threads);
    size_t bwd = jobs_bytes(T) + packed_bytes(p, O) + (size_t)T * thread_bytes(p, O) +
                 (size_t)(T - 1) * reduce_bytes(p, O),
           fwd = jobs_bytes(F) + packed_bytes(p, O) + (size_t)F * thread_bytes(p, O);
    return bwd > fwd ? bwd : fwd;
}

/* 8 floats, unaligned (GCC/Clang vector extension: portable C, 2 or 1 moves) */
typedef float cf_v8 __attribute__((vector_size(32), aligned(4)));

/* Copies the nb samples' planes into xpad with a zero border of p->pad, plus zeroed slack. */
static void pad_input(const cf_conv_plan *p, const float *x, int64_t nb, float *xpad)
{
    int64_t planes = nb * p->C, HW = (int64_t)p->H * p->W, HWp = (int64_t)p->Hp * p->Wp;
    int pad = p->pad;
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *src = x + pl * HW;
        float *dst = xpad + pl * HWp;
        if (pad == 0) {
            memcpy(dst, src, (size_t)HW * sizeof(float));
            continue;
        }
        memset(dst, 0, (size_t)(pad * p->Wp + pad) * sizeof(float));
        dst += pad * p->Wp + pad;
        /* Rows are short (conic maps: 10-60 floats), where memcpy and memset calls cost more
         * than the copies: blocks of 8, the last one ending at the row's end, and the pads
         * (right, next row's left) as one block of 8 zeros, whose overshoot lands on the next
         * row (written after) or the bottom pad (cleared after). */
        bool blocks = p->W >= 8 && 2 * pad <= 8 && (int64_t)pad * (p->Wp + 1) >= 8;
        for (int i = 0; i < p->H; i++, dst += p->Wp, src += p->W) {
            if (!blocks) {
                memcpy(dst, src, (size_t)p->W * sizeof(float));
                memset(dst + p->W, 0, (size_t)(2 * pad) * sizeof(float));
                continue;
            }
            int q = 0;
            for (; q + 8 <= p->W; q += 8) *(cf_v8 *)(dst + q) = *(const cf_v8 *)(src + q);
            if (q < p->W) *(cf_v8 *)(dst + p->W - 8) = *(const cf_v8 *)(src + p->W - 8);
            *(cf_v8 *)(dst + p->W) = (cf_v8){0};
        }
        memset(dst - pad, 0, (size_t)(pad * p->Wp) * sizeof(float));
    }
    memset(xpad + planes * HWp, 0, RUN_BLOCK * sizeof(float));
}

/* Rows [r0, r1) of tile i's columns for a block of nb samples (row stride ld, sample by sample
 * within a row) from their padded planes. Runs are copied in whole blocks of RUN_BLOCK floats
 * (conic tiles cut image rows into short runs, where a memcpy call would cost more than the
 * copy): the overshoot lands on columns written later or in the row's slack (ld leaves
 * RUN_BLOCK floats after the last column), and reads stay inside the padded planes and their
 * slack. */
static void im2col(const cf_conv_plan *p, int i, const float *xpad, int64_t nb, int64_t r0,
                   int64_t r1, float *col, int64_t ld)
{
    int64_t w = p->tj0[i + 1] - p->tj0[i], plane = (int64_t)p->C * p->Hp * p->Wp;
    const cf_simd_ops *k = cf_simd();
    for (int64_t b = 0; b < nb; b++)
        k->im2col_runs(col + b * w, ld, xpad + b * plane, p->rowoff, r0, r1,
                       p->runs + p->run_off[i], p->runs + p->run_off[i + 1]);
}

/* dxpad += col2im of rows [r0, r1) of tile i's column gradients. Into dx itself (in_place),
 * rows from p->dx_exact_row on add every run at its exact length (plain adds, one per element
 * as in the kernels, so the same bits in every variant), none past the sample's planes; each
 * element still takes its adds in the order of the rows. */
static void col2im(const cf_conv_plan *p, int i, const float *col, int64_t ld, int64_t nb,
                   int64_t r0, int64_t r1, float *dxpad, bool in_place)
{
    int64_t w = p->tj0[i + 1] - p->tj0[i], plane = (int64_t)p->C * p->Hp * p->Wp;
    const cf_simd_ops *k = cf_simd();
    const cf_conv_run *a = p->runs + p->run_off[i], *e = p->runs + p->run_off[i + 1];
    int64_t rx = in_place && p->dx_exact_row < r1 ? p->dx_exact_row : r1;
    if (rx < r0) rx = r0;
    for (int64_t b = 0; b < nb; b++) {
        float *dst = dxpad + b * plane;
        const float *src = col + b * w;
        if (rx > r0) k->col2im_runs(dst, src, ld, p->rowoff, r0, rx, a, e);
        for (int64_t q = rx; q < r1; q++)
            for (const cf_conv_run *r = a; r < e; r++) {
                float *d = dst + p->rowoff[q] + r->src;
                const float *s = src + (q - r0) * ld + r->dst;
                for (int32_t t = 0; t < r->len; t++) d[t] += s[t];
            }
    }
}

/* Row stride of a tile's columns: its width plus slack for the run copies' overshoot. */
static inline int64_t col_ld(int64_t tn) { return (tn + 7) / 8 * 8 + RUN_BLOCK; }

/* One thread's share: samples [s_begin, s_end), blocks of at most spb, tiles [t_begin, t_end),
 * its own buffers. */
typedef struct conv_job {
    const cf_conv_plan *p;
    int O;
    const float *Wp;   /* packed banks, group g at g * wstride: forward W_g, backward W_g^T */
    size_t wstride;
    float *const *dWg; /* backward: where this thread accumulates (private for t > 0) */
    const float *bias;
    float *dbias;
    const float *x, *dy;
    float *y, *dx;
    int64_t s_begin, s_end;
    int t_begin, t_end;
    float *col, *out, *xpad;
    /* forward: max(0, .) on the outputs, a block's once all its tiles are written
     * (CF_RELU_BLOCK) or a tile's pixels once it is written (CF_RELU_TILE: shares of tiles) */
    int relu;
    bool pix; /* use_pix(p, O), worked out once a call rather than once a tile */
} conv_job;

enum { CF_RELU_NONE = 0, CF_RELU_BLOCK = 1, CF_RELU_TILE = 2 };

/* max(0, .) in place on tile i's pixels of nb samples from yb (with the permutation, its runs of
 * consecutive output pixels). */
static void relu_tile(const cf_conv_plan *p, int i, int O, float *yb, int64_t nb)
{
    const cf_simd_ops *k = cf_simd();
    for (int64_t b = 0; b < nb; b++)
        for (int o = 0; o < O; o++) {
            float *row = yb + (b * O + o) * p->P;
            if (!p->perm) {
                k->relu(row + p->tj0[i], row + p->tj0[i], p->tj0[i + 1] - p->tj0[i]);
                continue;
            }
            for (const cf_conv_run *r = p->pruns + p->prun_off[i];
                 r < p->pruns + p->prun_off[i + 1]; r++)
                k->relu(row + r->src, row + r->src, r->len);
        }
}

/* Tile i of the block of nb samples from s0 (xin: their padded input, or the input itself). */
static void forward_tile(const conv_job *j, int i, int64_t s0, int64_t nb, const float *xin)
{
    const cf_conv_plan *p = j->p;
    int O = j->O;
    int64_t P = p->P, CK = p->CK, plane = (int64_t)p->C * p->Hp * p->Wp;
    const cf_simd_ops *k = cf_simd();
    int g = p->tgroup[i];
    int64_t w = p->tj0[i + 1] - p->tj0[i], tn = nb * w;
    const float *Wp = j->Wp + (size_t)g * j->wstride;
    if (j->pix) {
        /* Direct over output channels: reads the padded input, writes y. */
        for (int64_t b = 0; b < nb; b++)
            k->conv_fwd_pix(O, (int)CK, Wp, xin + b * plane, p->rowoff,
                            p->csrc + p->tj0[i], p->perm + p->tj0[i], (int)w,
                            j->y + (s0 + b) * O * P, P, j->bias);
        return;
    }
    if (p->tdirect && p->tdirect[i] == 2 && (!p->direct_auto || O <= CF_CONV_DIRECT_MAX_O)) {
        /* Direct over the tile's output rows as one flat run of the padded planes. */
        for (int64_t b = 0; b < nb; b++)
            k->conv_fwd_flat(O, (int)CK, Wp, j->xpad + b * plane, p->rowoff, p->fsrc[i],
                             p->flen[i], p->Wp, p->OW, j->y + (s0 + b) * O * P, P, j->bias);
        return;
    }
    if (p->tdirect && p->tdirect[i] && (!p->direct_auto || O <= CF_CONV_DIRECT_MAX_O)) {
        /* Direct: the products read the padded input in place and write y. */
        for (int64_t b = 0; b < nb; b++)
            k->conv_fwd_runs(O, (int)CK, Wp, j->xpad + b * plane, p->rowoff,
                             p->runs + p->run_off[i], p->runs + p->run_off[i + 1],
                             p->rq + p->run_off[i], j->y + (s0 + b) * O * P, P,
                             j->bias);
        return;
    }
    /* One sample in natural order: the products write straight into y, then the bias
     * is added in place. Otherwise into the tile's outputs, then scattered with the
     * bias: y = (chain from 0) + b either way. */
    bool direct = !p->perm && nb == 1;
    float *dst = direct ? j->y + s0 * O * P + p->tj0[i] : j->out;
    int64_t ldd = direct ? P : tn, ld = col_ld(tn);
    for (int64_t r0 = 0; r0 < CK; r0 += p->rows) {
        int64_t r1 = CK - r0 < p->rows ? CK : r0 + p->rows;
        im2col(p, i, j->xpad, nb, r0, r1, j->col, ld);
        k->gemm_nn(O, (int)tn, (int)(r1 - r0), Wp + 4 * r0, (int)CK, j->col, (int)ld,
                   dst, (int)ldd, r0 > 0);
    }
    if (direct && j->bias) k->add_bias_rows(dst, ldd, O, w, j->bias);
    if (direct) return;
    for (int64_t b = 0; b < nb; b++) {
        float *yb = j->y + (s0 + b) * O * P;
        const float *src = j->out + b * w;
        if (!p->perm) {
            for (int o = 0; o < O; o++)
                k->add_scalar(yb + o * P + p->tj0[i], src + o * tn, w,
                              j->bias ? j->bias[o] : 0.0f);
        } else {
            k->scatter_runs(yb, P, src, tn, O, j->bias, p->pruns + p->prun_off[i],
                            p->pruns + p->prun_off[i + 1]);
        }
    }
}

static void forward_range(const conv_job *j)
{
    const cf_conv_plan *p = j->p;
    int O = j->O;
    int64_t P = p->P, in_size = (int64_t)p->C * p->H * p->W;
    const cf_simd_ops *k = cf_simd();
    bool pix = j->pix;
    int64_t spb = block_samples(p, O);
    for (int64_t s0 = j->s_begin; s0 < j->s_end; s0 += spb) {
        int64_t nb = j->s_end - s0 < spb ? j->s_end - s0 : spb;
        /* the products over output channels read exactly the taps: without a border they
         * read the input in place */
        const float *xin = j->x + s0 * in_size;
        if (!pix || p->pad) {
            pad_input(p, xin, nb, j->xpad);
            xin = j->xpad;
        }
        for (int i = j->t_begin; i < j->t_end; i++) {
            forward_tile(j, i, s0, nb, xin);
            if (j->relu == CF_RELU_TILE) relu_tile(p, i, O, j->y + s0 * O * P, nb);
        }
        if (j->relu == CF_RELU_BLOCK)
            k->relu(j->y + s0 * O * P, j->y + s0 * O * P, nb * O * P);
    }
}

/* The start of a backward block of nb samples from s0: their bias gradient and the padded
 * input, which is the input itself when it has no border and `in_place` (readers of exactly
 * the taps). */
static const float *backward_block_start(const conv_job *j, int64_t s0, int64_t nb,
                                         bool in_place)
{
    const cf_conv_plan *p = j->p;
    int64_t P = p->P, in_size = (int64_t)p->C * p->H * p->W;
    if (j->dbias)
        for (int64_t b = 0; b < nb; b++)
            cf_simd()->sum_rows(j->dy + (s0 + b) * j->O * P, P, j->O, P, j->dbias);
    if (in_place && p->pad == 0) return j->x + s0 * in_size;
    pad_input(p, j->x + s0 * in_size, nb, j->xpad);
    return j->xpad;
}

/* The input gradient's C planes (H x W) from its padded pixel-by-pixel form (Cp floats per
 * pixel of the Hp x Wp map), row by row; without a border the map's pixels are one run, moved
 * by one transpose (whose edge blocks then come once per map, not once per row). */
static void planes_from_pixels(const cf_conv_plan *p, const float *dxT, int Cp, float *dx)
{
    const cf_simd_ops *k = cf_simd();
    if (p->pad == 0) {
        int64_t HW = (int64_t)p->H * p->W;
        k->transpose(dxT, Cp, (int)HW, p->C, dx, HW);
        return;
    }
    for (int i = 0; i < p->H; i++)
        k->transpose(dxT + ((int64_t)(i + p->pad) * p->Wp + p->pad) * Cp, Cp, p->W, p->C,
                     dx + (int64_t)i * p->W, (int64_t)p->H * p->W);
}

/* Backward over output channels (conic plans, stride 1; see kernels/gemm.h): the weight
 * gradient from the output gradient transposed and the padded input read in place, the input
 * gradient tile by tile and tap by tap into a padded pixel-by-pixel buffer (the column path's
 * sums in its order, so its bits); no columns. */
static void backward_pix(const conv_job *j)
{
    const cf_conv_plan *p = j->p;
    int O = j->O, Mp = pad8(O), Cp = pad8(p->C), kk = p->k * p->k;
    int64_t P = p->P, CK = p->CK, in_size = (int64_t)p->C * p->H * p->W,
            plane = (int64_t)p->C * p->Hp * p->Wp, HWp = (int64_t)p->Hp * p->Wp;
    const cf_simd_ops *k = cf_simd();
    char *buf = (char *)j->col;
    float *dyT = (float *)buf;
    buf += cf_align64((size_t)P * Mp * sizeof(float));
    float *dWt = (float *)buf;
    buf += cf_align64((size_t)p->ngroups * (size_t)CK * Mp * sizeof(float));
    float *dxT = (float *)buf;
    size_t bank = (size_t)CK * Mp;
    memset(dWt, 0, (size_t)p->ngroups * bank * sizeof(float));
    for (int64_t q = 0; q < P; q++) /* lanes past O stay zero */
        for (int o = O; o < Mp; o++) dyT[q * Mp + o] = 0.0f;
    int64_t spb = block_samples(p, O);
    for (int64_t s0 = j->s_begin; s0 < j->s_end; s0 += spb) {
        int64_t nb = j->s_end - s0 < spb ? j->s_end - s0 : spb;
        const float *xin = backward_block_start(j, s0, nb, true);
        for (int64_t b = 0; b < nb; b++) {
            const float *dys = j->dy + (s0 + b) * O * P;
            k->transpose(dys, P, O, P, dyT, Mp);
            for (int i = 0; i < p->ntiles; i++)
                k->conv_bwd_w_pix(O, (int)CK, dyT, xin + b * plane, p->rowoff,
                                  p->csrc + p->tj0[i], p->perm + p->tj0[i],
                                  (int)(p->tj0[i + 1] - p->tj0[i]),
                                  dWt + (size_t)p->tgroup[i] * bank);
            if (!j->dx) continue;
            memset(dxT, 0, (size_t)(HWp * Cp) * sizeof(float));
            for (int i = 0; i < p->ntiles; i++)
                k->conv_bwd_x_pix(Cp, O, kk, j->Wp + (size_t)p->tgroup[i] * j->wstride, dys, P,
                                  p->rowoff, p->csrc + p->tj0[i], p->perm + p->tj0[i],
                                  (int)(p->tj0[i + 1] - p->tj0[i]), dxT);
            planes_from_pixels(p, dxT, Cp, j->dx + (s0 + b) * in_size);
        }
    }
    for (int g = 0; g < p->ngroups; g++)
        for (int o = 0; o < O; o++) {
            float *d = j->dWg[g] + (size_t)o * CK;
            const float *src = dWt + (size_t)g * bank + o;
            for (int64_t kk2 = 0; kk2 < CK; kk2++) d[kk2] += src[kk2 * Mp];
        }
}

static void backward_range(const conv_job *j)
{
    if (use_pix_bwd(j->p, j->O)) {
        backward_pix(j);
        return;
    }
    const cf_conv_plan *p = j->p;
    int O = j->O;
    int64_t P = p->P, CK = p->CK, in_size = (int64_t)p->C * p->H * p->W;
    int64_t HW = (int64_t)p->H * p->W, HWp = (int64_t)p->Hp * p->Wp, plane = p->C * HWp;
    const cf_simd_ops *k = cf_simd();
    float *dout = j->out;
    bool dx_cols = j->dx && !dx_pix_only(p, O);
    for (int64_t s0 = j->s_begin; s0 < j->s_end; s0 += p->spb) {
        int64_t nb = j->s_end - s0 < p->spb ? j->s_end - s0 : p->spb;
        (void)backward_block_start(j, s0, nb, false);
        /* The input gradient accumulates in padded planes after the padded input's, or in
         * dx itself where they are the same planes (dx_in_place). */
        bool in_place = dx_cols && p->dx_in_place;
        float *dxpad = in_place ? j->dx + s0 * in_size : j->xpad + (size_t)nb * p->C * HWp;
        if (dx_cols) memset(dxpad, 0, (size_t)(nb * p->C * HWp) * sizeof(float));
        for (int i = 0; i < p->ntiles; i++) {
            int g = p->tgroup[i];
            int64_t w = p->tj0[i + 1] - p->tj0[i], tn = nb * w;
            /* The tile's output gradient: read in place for one sample in natural order,
             * otherwise gathered sample by sample. */
            const float *dt = j->dy + s0 * O * P + p->tj0[i];
            int64_t ldt = P;
            if (p->perm || nb > 1) {
                for (int64_t b = 0; b < nb; b++) {
                    const float *dyb = j->dy + (s0 + b) * O * P;
                    if (!p->perm) {
                        for (int o = 0; o < O; o++)
                            memcpy(dout + o * tn + b * w, dyb + o * P + p->tj0[i],
                                   (size_t)w * sizeof(float));
                    } else {
                        k->gather_runs(dout + b * w, tn, dyb, P, O, p->pruns + p->prun_off[i],
                                       p->pruns + p->prun_off[i + 1]);
                    }
                }
                dt = dout;
                ldt = tn;
            }
            const float *Wt = j->Wp + (size_t)g * j->wstride;
            int64_t ld = col_ld(tn);
            /* Without the columns' input gradient, the weight gradient's chunks of rows are
             * multiples of 8 (AVX-512 leaves rows past a multiple of 8 to 8-lane tiles, about
             * 60 % of its rate; in chunks of p->rows, 100 at conv2d 64 x 64 and 50 x 50 with CK
             * 288, two of the three chunks left 4 rows each), and read in place it needs no
             * columns at all: all CK rows in one call (docs/performance.md, round 31). The same
             * sums: each element of dW is one tile's chain, added once. */
            int64_t rows = p->rows;
            if (!dx_cols) rows = p->nt_runs ? CK : rows >= 8 && rows < CK ? rows - rows % 8 : rows;
            for (int64_t r0 = 0; r0 < CK; r0 += rows) {
                int64_t r1 = CK - r0 < rows ? CK : r0 + rows;
                if (p->nt_runs) {
                    k->gemm_nt_runs(O, (int)(r1 - r0), dt, (int)ldt, j->xpad, plane, (int)nb,
                                    (int)w, p->rowoff + r0, p->runs + p->run_off[i],
                                    p->runs + p->run_off[i + 1], j->dWg[g] + r0, (int)CK);
                } else {
                    im2col(p, i, j->xpad, nb, r0, r1, j->col, ld);
                    k->gemm_nt(O, (int)(r1 - r0), (int)tn, dt, (int)ldt, j->col, (int)ld,
                               j->dWg[g] + r0, (int)CK);
                }
                if (!dx_cols) continue;
                k->gemm_nn((int)(r1 - r0), (int)tn, O, Wt + (size_t)r0 * O, O, dt, (int)ldt,
                           j->col, (int)ld, 0);
                col2im(p, i, j->col, ld, nb, r0, r1, dxpad, in_place);
            }
        }
        if (j->dx && !dx_cols) {
            int Cp = pad8(p->C);
            float *dxT = (float *)((char *)j->col + col_bytes(p));
            for (int64_t b = 0; b < nb; b++) {
                const float *dys = j->dy + (s0 + b) * O * P;
                memset(dxT, 0, (size_t)(HWp * Cp) * sizeof(float));
                for (int i = 0; i < p->ntiles; i++)
                    k->conv_bwd_x_pix(Cp, O, p->k * p->k, j->Wp + (size_t)p->tgroup[i] * j->wstride,
                                      dys, P, p->rowoff, p->csrc + p->tj0[i],
                                      p->perm + p->tj0[i], (int)(p->tj0[i + 1] - p->tj0[i]),
                                      dxT);
                planes_from_pixels(p, dxT, Cp, j->dx + (s0 + b) * in_size);
            }
        }
        if (!dx_cols || in_place) continue;
        for (int64_t pl = 0; pl < nb * p->C; pl++) {
            const float *src = dxpad + pl * HWp + p->pad * p->Wp + p->pad;
            float *dst = j->dx + s0 * in_size + pl * HW;
            for (int r = 0; r < p->H; r++, src += p->Wp, dst += p->W)
                memcpy(dst, src, (size_t)p->W * sizeof(float));
        }
    }
}
typedef struct conv_thread {
    conv_job job;
    bool backward;
} conv_thread;

static size_t jobs_bytes(int T) { return cf_align64((size_t)T * sizeof(conv_thread)); }

static void share_main(void *arg, int i)
{
    conv_thread *t = (conv_thread *)arg + i;
    if (t->backward) backward_range(&t->job);
    else forward_range(&t->job);
}

/* First tile of share t of T when the tiles are split: the shares get about equal numbers of
 * columns (the tiles' sizes differ: conic cones against rays). */
static int tile_split(const cf_conv_plan *p, int t, int T)
{
    if (t <= 0) return 0;
    if (t >= T) return p->ntiles;
    int64_t goal = p->P * t / T, acc = 0;
    int i = 0;
    while (i < p->ntiles && acc + (p->tj0[i + 1] - p->tj0[i]) / 2 < goal) acc += p->tj0[i + 1] - p->tj0[i], i++;
    return i;
}

/* Splits the batch over T shares run at once by cf_parallel_run (the calling thread's pool, see
 * core/pool.h; the caller does share 0); each share uses its own slice of the workspace. */
static void run_split(const conv_job *base, const float *const *Wg, const float *prepacked,
                      bool backward, int64_t n, int threads, void *ws, void *scratch,
                      float *const *dWg_shared, float *dbias_shared)
{
    const cf_conv_plan *p = base->p;
    int O = base->O, T = backward ? eff_threads(threads, n) : fwd_threads(p, n, threads);
    bool by_tiles = !backward && split_tiles(p, n, threads);
    bool pix = use_pix(p, O);
    /* Scratch: the job descriptors, the packed banks, per thread its buffers, then the
     * gradient banks of threads 1..T-1. */
    if (!scratch) scratch = ws;
    conv_thread *th = (conv_thread *)scratch;
    char *sp = (char *)scratch + jobs_bytes(T);
    float *packed = (float *)sp;
    sp += packed_bytes(p, O);
    size_t wstride = packed_floats(p, O, backward);
    if (!backward && prepacked) packed = (float *)prepacked;
    else if (!backward) cf_conv_pack_forward(p, O, Wg, packed);
    else if (base->dx)
        for (int g = 0; g < p->ngroups; g++) {
            if (use_pix_bwd(p, O) || dx_pix_only(p, O)) cf_gemm_pack_dx(p->C, O, p->k, Wg[g], packed + g * wstride);
            else cf_gemm_pack_at((int)p->CK, O, Wg[g], (int)p->CK, packed + g * wstride);
        }
    size_t tb = thread_bytes(p, O), bank = (size_t)O * (size_t)p->CK;
    size_t rfloats = cf_align64(((size_t)p->ngroups * bank + (size_t)O) * sizeof(float));
    char *reduce = sp + (size_t)T * tb;
    for (int t = 0; t < T; t++) {
        conv_job *j = &th[t].job;
        char *mine = sp + (size_t)t * tb;
        *j = *base;
        j->Wp = packed;
        j->wstride = wstride;
        j->s_begin = by_tiles ? 0 : n * t / T;
        j->s_end = by_tiles ? n : n * (t + 1) / T;
        j->t_begin = by_tiles ? tile_split(p, t, T) : 0;
        j->t_end = by_tiles ? tile_split(p, t + 1, T) : p->ntiles;
        j->relu = !base->relu ? CF_RELU_NONE : by_tiles ? CF_RELU_TILE : CF_RELU_BLOCK;
        j->pix = pix;
        j->col = (float *)mine;
        j->out = (float *)(mine + col_region(p, O));
        j->xpad = (float *)(mine + col_region(p, O) + out_bytes(p, O));
        th[t].backward = backward;
        if (backward && t > 0) {
            /* Private gradient banks of threads t > 0 and their pointer table, carved from
             * the end of the workspace. */
            char *rb = reduce + (size_t)(t - 1) * reduce_bytes(p, O);
            float *r = (float *)rb, **ptrs = (float **)(rb + rfloats);
            memset(r, 0, ((size_t)p->ngroups * bank + (size_t)O) * sizeof(float));
            for (int g = 0; g < p->ngroups; g++) ptrs[g] = r + (size_t)g * bank;
            j->dWg = ptrs;
            j->dbias = dbias_shared ? r + (size_t)p->ngroups * bank : NULL;
        } else if (backward) {
            j->dWg = dWg_shared;
            j->dbias = dbias_shared;
        }
    }
    cf_parallel_run(T, share_main, th);
    if (!backward) return;
    /* Deterministic reduction in thread order. */
    for (int t = 1; t < T; t++) {
        for (int g = 0; g < p->ngroups; g++) {
            const float *src = th[t].job.dWg[g];
            float *dst = dWg_shared[g];
            for (size_t i = 0; i < bank; i++) dst[i] += src[i];
        }
        if (dbias_shared)
            for (int o = 0; o < O; o++) dbias_shared[o] += th[t].job.dbias[o];
    }
}

size_t cf_conv_packed_forward_floats(const cf_conv_plan *p, int O)
{
    return (size_t)p->ngroups * packed_floats(p, O, false);
}

void cf_conv_pack_forward(const cf_conv_plan *p, int O, const float *const *Wg, float *packed)
{
    size_t wstride = packed_floats(p, O, false);
    atomic_fetch_add_explicit(&cf_conv_pack_counter, 1, memory_order_relaxed);
    for (int g = 0; g < p->ngroups; g++) {
        if (use_pix(p, O)) cf_gemm_pack_pix(O, (int)p->CK, Wg[g], (int)p->CK, packed + g * wstride);
        else cf_gemm_pack_a(O, (int)p->CK, Wg[g], (int)p->CK, packed + g * wstride);
    }
}

void cf_conv_forward(const cf_conv_plan *p, int O, const float *const *Wg, const float *bias,
                     const float *x, float *y, int64_t n, void *ws, void *scratch, int threads,
                     bool relu)
{
    conv_job j = {.p = p, .O = O, .bias = bias, .x = x, .y = y, .relu = relu};
    run_split(&j, Wg, NULL, false, n, threads, ws, scratch, NULL, NULL);
}

void cf_conv_forward_packed(const cf_conv_plan *p, int O, const float *packed, const float *bias,
                            const float *x, float *y, int64_t n, void *ws, void *scratch,
                            int threads, bool relu)
{
    conv_job j = {.p = p, .O = O, .bias = bias, .x = x, .y = y, .relu = relu};
    run_split(&j, NULL, packed, false, n, threads, ws, scratch, NULL, NULL);
}

void cf_conv_backward(const cf_conv_plan *p, int O, const float *const *Wg, float *const *dWg,
                      float *dbias, const float *x, const float *dy, float *dx, int64_t n,
                      void *ws, void *scratch, int threads)
{
    conv_job j = {.p = p, .O = O, .x = x, .dy = dy, .dx = dx};
    run_split(&j, Wg, NULL, true, n, threads, ws, scratch, dWg, dbias);
}
