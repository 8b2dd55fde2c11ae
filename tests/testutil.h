/* Shared helpers for the cmocka suites: random data, rotations of maps, gradient checking. */
#ifndef CFNET_TESTUTIL_H
#define CFNET_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cfnet/cfnet.h"

/* Fails the test with the library's message when `expr` is not CFNET_OK. */
#define CF_ASSERT_OK(expr)                                                               \
    do {                                                                                 \
        cfnet_status st_ = (expr);                                                       \
        if (st_ != CFNET_OK)                                                             \
            fail_msg("%s -> %s: %s", #expr, cfnet_status_string(st_), cfnet_last_error()); \
    } while (0)

/* Asserts that `expr` returns `status` and left a non-empty error message. */
#define CF_ASSERT_STATUS(expr, status)                                                     \
    do {                                                                                   \
        cfnet_clear_error();                                                               \
        cfnet_status st_ = (expr);                                                         \
        if (st_ != (status))                                                               \
            fail_msg("%s -> %s (%d), expected %s", #expr, cfnet_status_string(st_), st_,  \
                     cfnet_status_string(status));                                         \
        if (cfnet_last_error()[0] == '\0') fail_msg("%s: no error message", #expr);       \
    } while (0)

/* Allocator hooks (cfnet_context_set_allocator, opaque: a tu_live_bytes) that keep the bytes
 * and the blocks live: each block carries its size in front of it. */
typedef struct tu_live_bytes {
    atomic_long live, blocks;
} tu_live_bytes;
void *tu_live_alloc(void *opaque, size_t size);
void tu_live_free(void *opaque, void *p);

/* Deterministic test random numbers (independent of the library's generator). */
typedef struct tu_rng {
    uint64_t s;
} tu_rng;
double tu_uniform(tu_rng *r);                /* [0, 1) */
double tu_normal(tu_rng *r);                 /* standard normal */
void tu_fill_normal(float *x, int64_t n, tu_rng *r);

/* Fills x with a random permutation of 0, 0.1, 0.2, ... (centred) plus noise in
 * [-0.02, 0.02]: any two values differ by at least 0.06, more than 2h for h = 1e-2, so a
 * finite-difference step never changes which element of a window is the maximum. */
void tu_fill_separated(float *x, int64_t n, tu_rng *r);

/* Allocates a tensor (asserting success) and fills it with N(0,1) values if r is not NULL. */
cfnet_tensor *tu_tensor(int ndim, const int64_t *shape, tu_rng *r);

/* Creates the output tensor N x <output shape> of a set-up layer. */
cfnet_tensor *tu_output_for(const cfnet_layer *l, int64_t n);

/* Rotates square maps by `quarter` quarter turns counter-clockwise (u right, v up), for each of
 * `planes` consecutive S x S planes: out(rot^q f)(i, j). `in` and `out` must not overlap. */
void tu_rot90_planes(const float *in, float *out, int64_t planes, int64_t S, int quarter);

/* Same for p4 maps n x C x 4 x S x S: rotates every plane spatially and shifts the rotation axis
 * by +quarter (out[.., (r + q) mod 4, ..] = rot^q in[.., r, ..]). */
void tu_rot90_p4(const float *in, float *out, int64_t n, int64_t C, int64_t S, int quarter);

/* Equivariance error of a set-up layer on x (N x input shape): rotates x by q quarter turns (as
 * a p4 map, tu_rot90_p4, when in_p4, else plane by plane), runs both through the layer in
 * `mode`, rotates the first output the same way (out_p4) and returns tu_max_rel_diff of the
 * two. Square maps only. */
double tu_rot90_error(cfnet_layer *l, const cfnet_tensor *x, int in_p4, int out_p4, int q,
                      cfnet_mode mode);

/* The dihedral group D4 (p4m), independently of the library: element g = 4 m + r is rho^r F^m,
 * F the mirror u -> -u (column j <-> S-1-j), rho the counter-clockwise quarter turn; products
 * are computed from the 2 x 2 integer matrices. */
int tu_d4_mul(int a, int b);
int tu_d4_inv(int a);

/* Applies T_g (mirror first if m = 1, then r quarter turns) to `planes` S x S planes. */
void tu_d4_planes(const float *in, float *out, int64_t planes, int64_t S, int g);

/* Same for p4m maps n x C x 8 x S x S: out[.., g h, ..] = T_g in[.., h, ..]. */
void tu_d4_p4m(const float *in, float *out, int64_t n, int64_t C, int64_t S, int g);

/* Equivariance error of a set-up layer under g, as tu_rot90_error: the input is transformed as
 * a p4m map when in_p4m (else plane by plane), the output likewise with out_p4m. */
double tu_d4_error(cfnet_layer *l, const cfnet_tensor *x, int in_p4m, int out_p4m, int g,
                   cfnet_mode mode);

/* max_i |a_i - b_i| / max(max_i |b_i|, tiny). */
double tu_max_rel_diff(const float *a, const float *b, int64_t n);

/* Gradient check of a set-up layer on input x (N x input shape): compares backward's dx and
 * parameter gradients of L = sum_i w_i y_i (w random) with central differences of step h,
 * accumulated in double. Checks at most `max_checks` randomly chosen coordinates per tensor
 * (all if <= 0). Returns the worst error |a - num| / max(|a|, |num|, scale) where scale is
 * 1e-2 times the largest |num| seen in that tensor; *worst_param receives the worst parameter
 * error (may be NULL). */
double tu_gradcheck(cfnet_layer *l, cfnet_tensor *x, cfnet_mode mode, double h, int max_checks,
                    double *worst_param);

/* Directory for files written by tests, created if needed: $CFNET_TEST_OUTDIR, else the
 * test-output folder of the build directory the test was built in (TU_DEFAULT_OUTDIR, set by
 * the Makefile as an absolute path, e.g. "/path/to/repo/build/default/test-output"), whatever
 * the current folder. */
const char *tu_outdir(void);

/* A case that cannot run because PACKAGE is not installed (free what the case holds first):
 * said, and a skip; under CFNET_TEST_STRICT=1 (CI's plain `make check`) a failure naming the
 * package and scripts/install-deps --extra. The script tests' rule (tests/skip_lib.sh). */
#define TU_SKIP_MISSING(what, package)                                                     \
    do {                                                                                   \
        if (tu_missing(what, package)) fail_msg("CFNET_TEST_STRICT=1: %s is not installed " \
                                                "(scripts/install-deps --extra)", package); \
        skip();                                                                            \
    } while (0)
/* Prints the skip of TU_SKIP_MISSING; nonzero under CFNET_TEST_STRICT=1. */
int tu_missing(const char *what, const char *package);

#endif
