/*
 * libcfnet — rotation-equivariant and rotation-invariant neural networks for microscopy.
 *
 * This file is the whole public API: if it is not declared here, it is not public.
 *
 * Conventions used throughout
 * ---------------------------
 * - Every fallible function returns a cfnet_status (CFNET_OK == 0, errors negative). On error a
 *   one-line description is available from cfnet_last_error() in the calling thread, and no
 *   output parameter or object has been changed unless stated otherwise.
 * - Objects are opaque handles created by `cfnet_<object>_create*` and destroyed by
 *   `cfnet_<object>_free`, which accepts NULL. Pointers returned by accessor functions are
 *   borrowed: they stay valid until the owning object is freed (or, for tensors, reshaped).
 * - Maps are float32, row-major, `N x C x H x W` (batch, channel, row, column); group (p4) maps are
 *   `N x C x 4 x H x W`. Layers see the batch dimension N as the first axis; shapes handed to
 *   cfnet_layer_setup() are per sample, without N.
 * - Rotation layers need square maps; conventions for coordinates, rotations and cones are in
 *   docs/conventions.md (pixel (i, j) sits at u = j - c, v = c - i, c = (S - 1)/2; rotations are
 *   counter-clockwise; layers compute correlation).
 * - Nothing a caller passes makes the library abort, assert or exit.
 * - Handles carry their kind and are checked at every entry point: a handle of another kind, a
 *   handle already freed (double free, use after free, as long as its memory has not been
 *   reused) give CFNET_E_INVALID_ARGUMENT (free functions record the message and do nothing).
 *   Still undefined: a pointer that was never a handle, or a freed handle whose memory the
 *   allocator has handed out again; memory checkers (ASan, valgrind) report any use after free.
 *
 * Thread safety: functions on distinct objects may run concurrently. A single object must not be
 * used from two threads at once unless a function's documentation says so. Objects a call only
 * reads may be shared: the same input tensor (a const cfnet_tensor * argument, e.g. one image
 * batch given to several networks) and the same context (cfnet_network_create_in, _load_in,
 * _load_buffer_in, cfnet_context_get_limit, and saving networks created in it) may be used by
 * any number of threads at once, as long as no thread changes or frees it meanwhile. The error
 * message is per thread. Networks detect the forbidden case: read-only calls (infer, probabilities,
 * predict, evaluate, invariance, save, save_buffer, summary, export, get_metadata, metadata_at,
 * prepare_image, gradients) may run in any number of threads at once (also on a network with
 * worker threads, CFNET_OPTION_THREADS > 1: each call gives the bits it gives alone), while a
 * call that modifies the network (train_step, train_epoch, forward, backward, zero_grad,
 * set_option, append, init_normal, set_metadata, set_sum_hook, set_batch_position,
 * set_interrupt) returns CFNET_E_STATE, doing nothing, if another thread is using the network —
 * and a read-only call returns CFNET_E_STATE while another thread modifies it. (Freeing a
 * network that another thread uses remains undefined.)
 *
 * FFTW: before planning its first transform, libcfnet calls fftwf_make_planner_thread_safe(),
 * so FFTW's planner (one per process) is locked by FFTW itself for every caller in the process,
 * including a host's own fftwf_plan_* calls; transforms execute without a lock. FFTW's planner
 * then calls lock functions of libfftw3f_threads, so that library stays loaded for the rest of
 * the process even if the host unloads libcfnet with dlclose.
 *
 * Host processes: once a network has worker threads (CFNET_OPTION_THREADS > 1), libcfnet stays
 * loaded until the process ends (dlclose does not unload it), since the workers run its code.
 * A child created by fork() may use the networks it inherited: their workers stayed in the
 * parent, so its calls run on threads started for each call (same results) until it sets the
 * thread count again, which starts workers of its own. A network that a thread of the parent
 * was using at the fork stays in use in the child: the calls that conflict with that use return
 * CFNET_E_STATE, with a message that says the process was forked while it was in use.
 */
#ifndef CFNET_CFNET_H
#define CFNET_CFNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Version
 * ------------------------------------------------------------------------------------------- */

/** Major version: incompatible ABI changes (the SONAME is libcfnet.so.MAJOR). */
#define CFNET_VERSION_MAJOR 0
/** Minor version: compatible additions. */
#define CFNET_VERSION_MINOR 2
/** Patch version: fixes only. */
#define CFNET_VERSION_PATCH 0
/** MAJOR * 10000 + MINOR * 100 + PATCH, e.g. 200 for 0.2.0. */
#define CFNET_VERSION_NUMBER \
    (CFNET_VERSION_MAJOR * 10000 + CFNET_VERSION_MINOR * 100 + CFNET_VERSION_PATCH)
#define CFNET_STRINGIFY_(x) #x
#define CFNET_STRINGIFY(x) CFNET_STRINGIFY_(x)
/** The version as a string literal, "MAJOR.MINOR.PATCH". */
#define CFNET_VERSION_STRING                                                          \
    CFNET_STRINGIFY(CFNET_VERSION_MAJOR) "." CFNET_STRINGIFY(CFNET_VERSION_MINOR) "." \
        CFNET_STRINGIFY(CFNET_VERSION_PATCH)

#if defined(_WIN32) && defined(CFNET_BUILDING_DLL)
#define CFNET_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define CFNET_API __attribute__((visibility("default")))
#else
#define CFNET_API
#endif

/** Version of the library actually linked, as CFNET_VERSION_NUMBER. Compare with the macro to
 *  check that header and library match. Never fails. */
CFNET_API unsigned cfnet_version_number(void);
/** Version of the linked library as a static string, e.g. "0.2.0". Never fails. */
CFNET_API const char *cfnet_version_string(void);

/* ---------------------------------------------------------------------------------------------
 * Status codes and errors
 * ------------------------------------------------------------------------------------------- */

/** Result of every fallible call. The values are pinned and the list is append-only. */
typedef enum cfnet_status {
    CFNET_OK = 0,
    CFNET_E_INVALID_ARGUMENT = -1, /**< NULL pointer, out-of-range value, bad option */
    CFNET_E_OUT_OF_MEMORY = -2,    /**< an allocation failed; nothing was changed */
    CFNET_E_SHAPE_MISMATCH = -3,   /**< tensor shapes do not fit the operation */
    CFNET_E_IO = -4,               /**< reading or writing a file failed */
    CFNET_E_FORMAT = -5,           /**< malformed or inconsistent serialized data */
    CFNET_E_UNSUPPORTED = -6,      /**< valid request that this build or layer cannot do */
    CFNET_E_INTERNAL = -7,         /**< a bug in libcfnet; please report it */
    CFNET_E_STATE = -8,            /**< call not valid in the object's current state */
    CFNET_E_LIMIT = -9,            /**< a size limit (caller-set or built-in) was exceeded */
    CFNET_E_NUMERIC = -10,         /**< non-finite numbers (NaN or Inf) appeared */
    CFNET_E_CANCELLED = -11        /**< a host callback asked to stop (the work done is kept) */
} cfnet_status;

/** Static, never-NULL name of a status, e.g. "invalid argument". Unknown codes give
 *  "unknown status". */
CFNET_API const char *cfnet_status_string(cfnet_status status);

/** The detail message of the last error in this thread ("" if none). The string belongs to the
 *  library and is valid until the next libcfnet call in this thread. Successful calls do not
 *  clear it. */
CFNET_API const char *cfnet_last_error(void);

/** Clears this thread's error message. */
CFNET_API void cfnet_clear_error(void);

/* ---------------------------------------------------------------------------------------------
 * Tensors: float32, row-major, 1 to CFNET_MAX_DIMS dimensions
 * ------------------------------------------------------------------------------------------- */

/** Largest number of tensor dimensions (N x C x G x H x W). */
#define CFNET_MAX_DIMS 5

/** A float32 tensor (opaque). */
typedef struct cfnet_tensor cfnet_tensor;

/** Creates a zero-filled tensor. `shape` holds `ndim` (1..CFNET_MAX_DIMS) positive sizes; the
 *  element count must fit in int64 and memory. The caller owns *out (cfnet_tensor_free). */
CFNET_API cfnet_status cfnet_tensor_create(int ndim, const int64_t *shape, cfnet_tensor **out);

/** Creates a tensor that views the caller's buffer `data` (numel floats) without copying. The
 *  caller keeps ownership of `data`, which must stay valid and must not be freed while the
 *  tensor is in use; cfnet_tensor_free() frees only the handle. */
CFNET_API cfnet_status cfnet_tensor_wrap(float *data, int ndim, const int64_t *shape,
                                         cfnet_tensor **out);

/** Since 0.2. Creates a read-only tensor that views the caller's const buffer `data` (numel
 *  floats) without copying, as cfnet_tensor_wrap does (same ownership rules). It may be given
 *  wherever a `const cfnet_tensor *` is taken (images, inputs, logits, gradients read). Every
 *  function that writes a tensor's values refuses it with CFNET_E_INVALID_ARGUMENT ("... is
 *  read-only") and writes nothing: cfnet_tensor_copy_in, _fill, _zero, cfnet_image_normalize,
 *  the output of cfnet_image_rotate and _shift, of cfnet_layer_forward, cfnet_network_forward,
 *  _infer and _probabilities, dx of cfnet_layer_backward and grad of
 *  cfnet_softmax_cross_entropy. cfnet_tensor_reshape and cfnet_tensor_free work as for any
 *  wrapped tensor; cfnet_tensor_data returns `data` itself, which the caller must not write
 *  through. */
CFNET_API cfnet_status cfnet_tensor_wrap_const(const float *data, int ndim,
                                               const int64_t *shape, cfnet_tensor **out);

/** Frees the tensor (and its data unless it wraps a caller's buffer). Accepts NULL. A layer's
 *  own tensor (cfnet_layer_param, cfnet_layer_grad, cfnet_layer_state) is not freed (the layer
 *  frees it): the call records a message (cfnet_last_error) and returns. */
CFNET_API void cfnet_tensor_free(cfnet_tensor *t);

/** Number of dimensions, or 0 for NULL. */
CFNET_API int cfnet_tensor_ndim(const cfnet_tensor *t);

/** Size of dimension `axis` (negative axes count from the end), or -1 if `t` is NULL or the axis
 *  is out of range. */
CFNET_API int64_t cfnet_tensor_dim(const cfnet_tensor *t, int axis);

/** Copies the shape into `shape[0..ndim-1]` (room for CFNET_MAX_DIMS) and sets *ndim. */
CFNET_API cfnet_status cfnet_tensor_shape(const cfnet_tensor *t, int *ndim, int64_t *shape);

/** Number of elements, or -1 for NULL. */
CFNET_API int64_t cfnet_tensor_numel(const cfnet_tensor *t);

/** Pointer to the contiguous float32 data (NULL for NULL). Borrowed: valid while the tensor
 *  lives. */
CFNET_API float *cfnet_tensor_data(const cfnet_tensor *t);

/** Copies `count` floats from `src` into the tensor; `count` must equal the element count. */
CFNET_API cfnet_status cfnet_tensor_copy_in(cfnet_tensor *t, const float *src, int64_t count);

/** Copies the tensor's `count` floats into `dst`; `count` must equal the element count. */
CFNET_API cfnet_status cfnet_tensor_copy_out(const cfnet_tensor *t, float *dst, int64_t count);

/** Sets every element to `value`. */
CFNET_API cfnet_status cfnet_tensor_fill(cfnet_tensor *t, float value);

/** Sets every element to zero. */
CFNET_API cfnet_status cfnet_tensor_zero(cfnet_tensor *t);

/** Changes the shape without moving data; the element count must stay the same. A layer's own
 *  tensor (cfnet_layer_param, _grad, _state) keeps the shape its layer gave it:
 *  CFNET_E_STATE. */
CFNET_API cfnet_status cfnet_tensor_reshape(cfnet_tensor *t, int ndim, const int64_t *shape);

/* ---------------------------------------------------------------------------------------------
 * Layers
 *
 * A layer is created with its hyper-parameters, then set up for a per-sample input shape
 * (cfnet_layer_setup, or implicitly when appended to a network), which validates the
 * configuration, fixes the output shape and allocates and initialises the parameters
 * (He initialisation by fan-in from the given seed; biases zero; batch-norm scale one).
 *
 * Forward takes x of shape `N x <input shape>` and writes y of shape `N x <output shape>`, for
 * any batch size N >= 1. Backward differentiates the function computed by the most recent
 * forward of the same layer; it must receive the same x and y, the gradient dy of the loss with
 * respect to y, and writes dx (may be NULL when not needed). Parameter gradients are ACCUMULATED
 * (+=) into the gradient tensors; clear them with cfnet_layer_zero_grad().
 * ------------------------------------------------------------------------------------------- */

/** A layer (opaque): owned by the caller until appended to a network. */
typedef struct cfnet_layer cfnet_layer;

/** Layer kinds. Pinned and append-only: the values are stored in model files. */
typedef enum cfnet_layer_kind {
    CFNET_LAYER_CONV2D = 1,
    CFNET_LAYER_CONIC_CONV = 2,
    CFNET_LAYER_P4_LIFT = 3,
    CFNET_LAYER_P4_CONV = 4,
    CFNET_LAYER_GROUP_POOL = 5,
    CFNET_LAYER_DFT_PROJECTION = 6,
    CFNET_LAYER_DFT_MAGNITUDE = 7,
    CFNET_LAYER_DENSE = 8,
    CFNET_LAYER_RELU = 9,
    CFNET_LAYER_POOL = 10,
    CFNET_LAYER_BATCH_NORM = 11,
    CFNET_LAYER_DROPOUT = 12,
    CFNET_LAYER_SOFTMAX = 13,
    CFNET_LAYER_P4M_LIFT = 14,         /**< since 0.2 */
    CFNET_LAYER_P4M_CONV = 15,         /**< since 0.2 */
    CFNET_LAYER_P4M_DFT_MAGNITUDE = 16, /**< since 0.2 */
    CFNET_LAYER_CONIC_CONV_MIRROR = 17  /**< since 0.2 */
} cfnet_layer_kind;

/** Spatial padding of convolutions. */
typedef enum cfnet_padding {
    CFNET_PADDING_VALID = 0, /**< no padding: S_out = (S - k) / stride + 1 */
    CFNET_PADDING_SAME = 1   /**< zero padding (k - 1) / 2: S_out = ceil(S / stride) */
} cfnet_padding;

/** How filters are resampled for rotations that are not multiples of 90 degrees (multiples of 90
 *  degrees are always exact permutations). */
typedef enum cfnet_interp {
    CFNET_INTERP_NEAREST = 0, /**< nearest neighbour, round half away from zero */
    CFNET_INTERP_BILINEAR = 1,
    /** Filters are projected (least squares) onto a circular-harmonic basis (Gaussian rings x
     *  cos/sin m theta) and rotated exactly within it, at every angle; quarter turns remain
     *  exact permutations of the projected filter. Filters up to 21 x 21. Layers with R = 1
     *  (quarter turns only) resample nothing and keep their filters unprojected. See
     *  docs/layers.md. */
    CFNET_INTERP_STEERABLE = 2
} cfnet_interp;

/** Reduction of pooling layers. */
typedef enum cfnet_pool_mode {
    CFNET_POOL_MAX = 0, /**< largest value of the window */
    CFNET_POOL_MEAN = 1 /**< mean of the window */
} cfnet_pool_mode;

/** Forward mode. Training uses batch statistics (batch norm) and drops units (dropout). */
typedef enum cfnet_mode {
    CFNET_MODE_INFERENCE = 0, /**< running statistics, no dropout; leaves the layer's
                               *   parameters and state as they are (its workspace is still
                               *   written: one layer runs in one thread at a time) */
    CFNET_MODE_TRAINING = 1   /**< batch statistics, dropout; may update layer state */
} cfnet_mode;

/** 2D convolution (correlation) with a bias per output channel.
 *  Input C x H x W, output out_channels x H' x W'. kernel odd >= 1, stride 1 or 2. */
CFNET_API cfnet_status cfnet_layer_conv2d_create(int out_channels, int kernel, int stride,
                                                 cfnet_padding padding, cfnet_layer **out);

/** Largest R of a conic convolution (4R filter rotations, 8R + 1 cone groups). Larger values
 *  give CFNET_E_INVALID_ARGUMENT from cfnet_layer_conic_conv_create. */
#define CFNET_CONIC_MAX_R 64

/** Conic convolution (paper eq. 12): each output pixel uses the filter rotated by r*pi/(2R) for
 *  the cone r it lies in (weights 1/2 on the rays between cones, 1/(4R) at the centre), plus a
 *  bias per output channel. Input C x S x S (square), output out_channels x S' x S'.
 *  1 <= R <= CFNET_CONIC_MAX_R (4R rotations), kernel odd >= 1. Exactly equivariant to quarter
 *  turns. */
CFNET_API cfnet_status cfnet_layer_conic_conv_create(int out_channels, int kernel, int R,
                                                     cfnet_padding padding, cfnet_interp interp,
                                                     cfnet_layer **out);

/** p4 lifting convolution Z^2 -> p4: input C x S x S, output out_channels x 4 x S' x S'. */
CFNET_API cfnet_status cfnet_layer_p4_lift_create(int out_channels, int kernel,
                                                  cfnet_padding padding, cfnet_layer **out);

/** p4 group convolution p4 -> p4: input C x 4 x S x S, output out_channels x 4 x S' x S'. */
CFNET_API cfnet_status cfnet_layer_p4_conv_create(int out_channels, int kernel,
                                                  cfnet_padding padding, cfnet_layer **out);

/** Max or mean over the group axis: input C x 4 x H x W (p4), C x 8 x H x W (p4m) or
 *  C x 2 x H x W (conic_conv_mirror), output C x H x W. */
CFNET_API cfnet_status cfnet_layer_group_pool_create(cfnet_pool_mode mode, cfnet_layer **out);

/** DFT transition, part (a): projection Psi(n, r) = <T_r phi_n, f> + b_n with `filters` learned
 *  filters as large as the input map, at 4R rotations r*pi/(2R).
 *  Planar input K x M x M -> output filters x 4R (any R >= 1; interp used for rotations that are
 *  not quarter turns). p4 input K x 4 x M x M -> output filters x 4 (R must be 1); p4m input
 *  K x 8 x M x M -> output filters x 8, the p4m group convolution at the centre (R must be 1;
 *  since 0.2), for cfnet_layer_p4m_dft_magnitude_create. */
CFNET_API cfnet_status cfnet_layer_dft_projection_create(int filters, int R, cfnet_interp interp,
                                                         cfnet_layer **out);

/** DFT transition, part (b): magnitude of the 2D DFT of each sample's A x B grid,
 *  |sum_{a,b} x[a,b] exp(-2 pi i (a a'/A + b b'/B))|. Input A x B, or C x G x 1 x 1 (a 1 x 1 p4
 *  map, treated as C x G). Output A x B: the full spectrum, including the redundant half
 *  (|Y(a,b)| = |Y(-a,-b)| for real input). Invariant to circular shifts along both axes. */
CFNET_API cfnet_status cfnet_layer_dft_magnitude_create(cfnet_layer **out);

/** Fully connected layer: the per-sample input (any shape) is flattened to D values;
 *  y = W x + b with W of shape out_features x D. Output shape: out_features. */
CFNET_API cfnet_status cfnet_layer_dense_create(int out_features, cfnet_layer **out);

/** y = max(0, x), any shape. */
CFNET_API cfnet_status cfnet_layer_relu_create(cfnet_layer **out);

/** Spatial max or mean pooling over the last two axes (so planar C x H x W and p4 C x 4 x H x W
 *  maps both work), window x window, step `stride`, no padding: S_out = (S - window)/stride + 1.
 *  window = 0 selects the equivariant choice of the original code: window 2 for even S, 3 for
 *  odd S, stride 2 (the `stride` argument must then be 0 or 2). */
CFNET_API cfnet_status cfnet_layer_pool_create(cfnet_pool_mode mode, int window, int stride,
                                               cfnet_layer **out);

/** Batch normalisation with statistics per channel (axis 0 of the per-sample shape) pooled over
 *  all other axes: planar C x H x W maps, group C x 4 x H x W maps (statistics shared over the
 *  rotations) and C x G projections (shared over G) alike. Training uses batch statistics and
 *  updates running averages: run = (1 - momentum) * run + momentum * batch (variance unbiased);
 *  inference uses the running statistics. Parameters gamma (scale) and beta (shift). */
CFNET_API cfnet_status cfnet_layer_batch_norm_create(float momentum, float eps, cfnet_layer **out);

/** Inverted dropout, any shape: in training each unit is zeroed with probability `drop` and the
 *  others scaled by 1 / (1 - drop); identity in inference. 0 <= drop < 1. The mask comes from the
 *  layer's own generator, seeded at setup. */
CFNET_API cfnet_status cfnet_layer_dropout_create(float drop, cfnet_layer **out);

/** Softmax over the flattened per-sample input (numerically stable). */
CFNET_API cfnet_status cfnet_layer_softmax_create(cfnet_layer **out);

/** Frees a layer that is not owned by a network. Accepts NULL. A layer a network owns is not
 *  freed (the network frees it): the call records a message (cfnet_last_error) and returns. */
CFNET_API void cfnet_layer_free(cfnet_layer *layer);

/** The layer's kind, or 0 for NULL. */
CFNET_API int cfnet_layer_kind_of(const cfnet_layer *layer);

/** Static name of a kind, e.g. "conic_conv" (used in model files), or "unknown". */
CFNET_API const char *cfnet_layer_kind_name(int kind);

/** Sets the layer up for per-sample input shape `shape[0..ndim-1]`: validates it, fixes the
 *  output shape, allocates the parameters and initialises them from `seed`. Calling it again
 *  re-initialises the layer for the new shape (parameters are replaced). On error the layer is
 *  unchanged. */
CFNET_API cfnet_status cfnet_layer_setup(cfnet_layer *layer, int ndim, const int64_t *shape,
                                         uint64_t seed);

/** Per-sample input shape given to setup (CFNET_E_STATE before setup). */
CFNET_API cfnet_status cfnet_layer_input_shape(const cfnet_layer *layer, int *ndim,
                                               int64_t *shape);

/** Per-sample output shape (CFNET_E_STATE before setup). `shape` has room for CFNET_MAX_DIMS. */
CFNET_API cfnet_status cfnet_layer_output_shape(const cfnet_layer *layer, int *ndim,
                                                int64_t *shape);

/** Forward pass: x is N x <input shape>, y must be a tensor of shape N x <output shape>.
 *  A training forward that would leave a NaN or an infinity in the layer's state (a batch-norm
 *  running statistic, from an input holding one or from activations whose variance overflows
 *  float) gives CFNET_E_NUMERIC naming the statistic and leaves the state as it was. */
CFNET_API cfnet_status cfnet_layer_forward(cfnet_layer *layer, const cfnet_tensor *x,
                                           cfnet_tensor *y, cfnet_mode mode);

/** Backward pass of the most recent forward (same x and y). dy has y's shape; dx, if not NULL,
 *  has x's shape and is overwritten. Parameter gradients are accumulated. */
CFNET_API cfnet_status cfnet_layer_backward(cfnet_layer *layer, const cfnet_tensor *x,
                                            const cfnet_tensor *y, const cfnet_tensor *dy,
                                            cfnet_tensor *dx);

/** Number of trainable parameter tensors (0 before setup or for NULL). */
CFNET_API int cfnet_layer_param_count(const cfnet_layer *layer);

/** Trainable parameter tensor i (borrowed), or NULL if out of range. Writable: a host may load
 *  its own values. */
CFNET_API cfnet_tensor *cfnet_layer_param(const cfnet_layer *layer, int i);

/** Gradient tensor of parameter i (borrowed, same shape), or NULL if out of range. */
CFNET_API cfnet_tensor *cfnet_layer_grad(const cfnet_layer *layer, int i);

/** Static name of parameter i ("weight", "bias", "gamma", "beta"), or NULL. */
CFNET_API const char *cfnet_layer_param_name(const cfnet_layer *layer, int i);

/** Number of non-trainable state tensors (batch norm: running mean and variance). */
CFNET_API int cfnet_layer_state_count(const cfnet_layer *layer);

/** State tensor i (borrowed), or NULL if out of range. */
CFNET_API cfnet_tensor *cfnet_layer_state(const cfnet_layer *layer, int i);

/** Static name of state tensor i ("running_mean", "running_var"), or NULL. */
CFNET_API const char *cfnet_layer_state_name(const cfnet_layer *layer, int i);

/** Sets every parameter gradient to zero. */
CFNET_API cfnet_status cfnet_layer_zero_grad(cfnet_layer *layer);

/** Number of layer kinds this library implements: the kinds are 1..cfnet_layer_kind_count()
 *  (cfnet_layer_kind values; a newer library may know more). Since 0.2. */
CFNET_API int cfnet_layer_kind_count(void);

/* ---------------------------------------------------------------------------------------------
 * Layers for p4m, the dihedral group D4 (rotations by quarter turns and reflections)
 *
 * A p4m map is N x C x 8 x S x S: copy g = 4 m + r is the response to the filters transformed by
 * rho^r F^m, where F mirrors u -> -u (columns j <-> S-1-j, the left-right flip) and rho is a
 * counter-clockwise quarter turn (docs/conventions.md). Transforming the input by any element of
 * D4 transforms the output spatially and permutes its 8 copies. group_pool (max or mean over the
 * 8 copies) and batch_norm (statistics shared over them) accept p4m maps as they are.
 * ------------------------------------------------------------------------------------------- */

/** p4m lifting convolution Z^2 -> p4m: input C x S x S, output out_channels x 8 x S' x S';
 *  weight out_channels x C x k x k. Options as cfnet_layer_p4_lift_create. Since 0.2. */
CFNET_API cfnet_status cfnet_layer_p4m_lift_create(int out_channels, int kernel,
                                                   cfnet_padding padding, cfnet_layer **out);

/** p4m group convolution p4m -> p4m: input C x 8 x S x S, output out_channels x 8 x S' x S';
 *  weight out_channels x C x 8 x k x k. Options as cfnet_layer_p4_conv_create. Since 0.2. */
CFNET_API cfnet_status cfnet_layer_p4m_conv_create(int out_channels, int kernel,
                                                   cfnet_padding padding, cfnet_layer **out);

/** Invariant head for p4m maps: per channel n, the magnitude of the DFT over Z2 x Z4 of the
 *  8 copies read as a 2 x 4 grid (m, r). Invariant to every element of D4 acting on the input
 *  of the network (docs/layers.md has the derivation). Input C x 8 or C x 8 x 1 x 1 (a p4m map
 *  reduced to 1 x 1), output C x 8. Since 0.2. */
CFNET_API cfnet_status cfnet_layer_p4m_dft_magnitude_create(cfnet_layer **out);

/** Conic convolution with reflection: two copies per filter, y[o, 0] = conic(f) and
 *  y[o, 1] = F conic(F~ f), where F~ mirrors the input (and swaps its two copies). Exactly
 *  equivariant to quarter turns and to the mirror (all of D4): transforming the input by
 *  rho^r F^m transforms the output spatially and, for m = 1, swaps its copies. Input C x S x S or
 *  C x 2 x S x S, output out_channels x 2 x S' x S'; weight out_channels x (C or 2C) x k x k.
 *  Options as cfnet_layer_conic_conv_create; about twice its cost. group_pool takes the 2-copy
 *  maps. Since 0.2. */
CFNET_API cfnet_status cfnet_layer_conic_conv_mirror_create(int out_channels, int kernel, int R,
                                                            cfnet_padding padding,
                                                            cfnet_interp interp,
                                                            cfnet_layer **out);

/* ---------------------------------------------------------------------------------------------
 * Loss
 * ------------------------------------------------------------------------------------------- */

/** Mean softmax cross-entropy of `logits` (N x K, or N x anything flattened to K) against
 *  integer labels[0..N-1] in [0, K). Writes the mean loss to *loss and, if `grad` is not NULL
 *  (same shape as logits), d loss / d logits = (softmax - onehot) / N. Numerically stable:
 *  logits of any finite size give finite gradients, and the loss (computed in double) is
 *  +Inf only when it exceeds the float range (a logit gap beyond about 3.4e38). A NaN or
 *  infinite logit gives CFNET_E_INVALID_ARGUMENT. */
CFNET_API cfnet_status cfnet_softmax_cross_entropy(const cfnet_tensor *logits,
                                                   const int32_t *labels, int64_t n_labels,
                                                   float *loss, cfnet_tensor *grad);

/* ---------------------------------------------------------------------------------------------
 * Networks
 *
 * A network is created for a per-sample input shape C x H x W, then layers are appended in
 * order; each append sets the layer up for the previous output shape. The network owns its
 * layers. All randomness (initialisation, dropout, augmentation, shuffling) comes from the
 * network's own generator, seeded at creation: two networks created with the same seed and fed
 * the same calls compute the same results (for a given thread count).
 *
 * Thread safety: a network must not be used from two threads at once, EXCEPT the read-only
 * calls listed under "Thread safety" at the top (cfnet_network_predict, _infer,
 * _probabilities, _evaluate, _invariance, _save, _save_buffer, _summary, _export_onnx, ...),
 * which may run concurrently from several threads on the same network provided no other call
 * modifies it meanwhile (a modifying call is refused with CFNET_E_STATE).
 * Distinct networks may be used concurrently from different threads.
 * ------------------------------------------------------------------------------------------- */

/** A network (opaque): an ordered list of layers it owns, options and training state. */
typedef struct cfnet_network cfnet_network;

/** Creates an empty network for inputs N x channels x height x width. The caller owns *out. */
CFNET_API cfnet_status cfnet_network_create(int channels, int height, int width, uint64_t seed,
                                            cfnet_network **out);

/** Frees the network and every layer it owns. Accepts NULL. */
CFNET_API void cfnet_network_free(cfnet_network *net);

/** Appends `layer` and sets it up for the current output shape (initialising its parameters
 *  from the network's generator). Ownership of `layer` passes to the network in every case:
 *  on failure the layer is freed and the network is unchanged — except when the layer already
 *  belongs to a network (CFNET_E_STATE; nothing is freed). The error message names the layer
 *  index, its kind and the shapes. A network holds at most 65536 layers and at most 192 MiB of
 *  layer tables besides its parameters (rotation maps, index tables, FFT planning buffers,
 *  measured while the layer is set up): over either, CFNET_E_LIMIT before the memory is
 *  allocated. Whatever append accepts, save writes and load reads back (docs/format.md). */
CFNET_API cfnet_status cfnet_network_append(cfnet_network *net, cfnet_layer *layer);

/** Number of layers (0 for NULL). */
CFNET_API int cfnet_network_layer_count(const cfnet_network *net);

/** Layer i (borrowed; owned by the network), or NULL. Its parameters may be read and written;
 *  it must not be freed or set up again. */
CFNET_API cfnet_layer *cfnet_network_layer(const cfnet_network *net, int i);

/** Per-sample input shape C x H x W: sets *ndim to 3 and fills shape[0..2]. */
CFNET_API cfnet_status cfnet_network_input_shape(const cfnet_network *net, int *ndim,
                                                 int64_t *shape);
/** Per-sample output shape (of the last layer; the input shape while the network is empty).
 *  `shape` has room for CFNET_MAX_DIMS. */
CFNET_API cfnet_status cfnet_network_output_shape(const cfnet_network *net, int *ndim,
                                                  int64_t *shape);

/** Total number of trainable scalars. */
CFNET_API int64_t cfnet_network_param_count(const cfnet_network *net);

/** Bytes currently held by the network: its own structures, parameters, gradients and state
 *  tensors, optimiser state, metadata; the tables each layer built when it was appended
 *  (rotation maps, convolution plans and index tables: for a convolution a few integers per
 *  pixel of its output plane); the activation and workspace buffers of the largest batch
 *  trained so far; the workspace a layer keeps once cfnet_layer_forward has run it alone
 *  (cfnet_network_layer); the inference buffer sets; and the inference caches of the conic (and
 *  mirrored conic), p4, p4m and DFT projection layers (a copy of their weights and their filter
 *  banks as inference reads them, made by the first inference).
 *  Inference buffer sets: an inference call takes a set the network keeps, or makes one when
 *  all are in use (or too small for its batch: then the small one is freed), and gives it back
 *  for later calls. The network so holds as many sets as the most inference calls that have run
 *  at the same time, each sized for the largest batch it has served, until a layer is appended,
 *  the thread count is set or the network is freed. A set is counted while a call uses it as
 *  while it is kept: a reading taken while inference calls run is at most the reading after
 *  they return (equal once every set is made), and two concurrent calls leave the usage two
 *  sets high where calls one at a time leave it one set high.
 *  Not counted: the allocator's header and alignment slack (under 128 bytes a block), the
 *  worker threads (CFNET_OPTION_THREADS above 1), buffers that a call frees before it returns,
 *  and what FFTW and the BLAS allocate for themselves. */
CFNET_API size_t cfnet_network_memory_usage(const cfnet_network *net);

/** Writes a summary, one line per layer ("index kind output-shape params"), plus a total line,
 *  into buf (always NUL-terminated if size > 0). *needed (may be NULL) receives the full
 *  length without the NUL; CFNET_E_LIMIT if it did not fit. */
CFNET_API cfnet_status cfnet_network_summary(const cfnet_network *net, char *buf, size_t size,
                                             size_t *needed);

/** Forward pass: x is N x C x H x W, out has shape N x <output shape> and receives the last
 *  layer's output. In training mode the activations are kept for cfnet_network_backward and the
 *  batch-norm running statistics and dropout generators move; a failed call (any status) leaves
 *  the parameters, running statistics and generators as they were, and a following
 *  cfnet_network_backward needs a new successful training forward. A training forward that
 *  would leave a running statistic non-finite (finite activations of order 1e19 and more, or a
 *  diverged layer) gives CFNET_E_NUMERIC naming the layer and statistic, as
 *  cfnet_network_train_step does. */
CFNET_API cfnet_status cfnet_network_forward(cfnet_network *net, const cfnet_tensor *x,
                                             cfnet_tensor *out, cfnet_mode mode);

/** Backward pass after a training forward: d_out has the output's shape and holds d loss /
 *  d output; parameter gradients are accumulated. */
CFNET_API cfnet_status cfnet_network_backward(cfnet_network *net, const cfnet_tensor *d_out);

/** Zeroes every parameter gradient. */
CFNET_API cfnet_status cfnet_network_zero_grad(cfnet_network *net);

/** Inference (read-only; thread-safe as above): out = network output for x (N x <output>).
 *  An image holding a NaN or an infinity gives CFNET_E_INVALID_ARGUMENT naming it, and out is
 *  left as it was (ReLU and max pooling could otherwise hide a NaN in a finite, meaningless
 *  output); the same holds for cfnet_network_probabilities, _predict, _forward, _evaluate and
 *  _invariance. Finite images can still give non-finite outputs when the parameters are
 *  (too large, diverged, edited): infer and forward return them with CFNET_OK, invariance a NaN,
 *  whereas probabilities and predict refuse them (CFNET_E_NUMERIC); check the output (isfinite)
 *  where that matters. */
CFNET_API cfnet_status cfnet_network_infer(const cfnet_network *net, const cfnet_tensor *x,
                                           cfnet_tensor *out);

/** Inference: class probabilities (softmax of the output, or the output itself if the last
 *  layer is a softmax) for x; probs is N x K. Finite images whose probabilities would be NaN
 *  (an output that is NaN or +infinite, or all of an image's outputs -infinite: parameters so
 *  large that the activations overflow, a diverged or edited network, which the loader takes as
 *  long as its values are finite) give CFNET_E_NUMERIC naming the image, and probs then holds
 *  nothing meaningful; cfnet_network_predict refuses the same images. An output of -infinity
 *  among finite ones is a probability of 0. */
CFNET_API cfnet_status cfnet_network_probabilities(const cfnet_network *net,
                                                   const cfnet_tensor *x, cfnet_tensor *probs);

/** Inference: labels[i] = argmax of the output for sample i, i < n == N. */
CFNET_API cfnet_status cfnet_network_predict(const cfnet_network *net, const cfnet_tensor *x,
                                             int32_t *labels, int64_t n);

/** Interrupt callback of a network (cfnet_network_set_interrupt), asked before each layer runs
 *  in a long read-only call, and between parts of the batch inside layers whose results do
 *  not depend on the batch (then with the same `done` again): `done` counts the layer runs the
 *  call has finished, `total` is the
 *  number it makes (layers times passes: one pass for infer, probabilities and predict, one per
 *  batch for evaluate, one per transformed input plus one for invariance; a layer run fused with
 *  the ReLU after it counts as two, so `done` may grow by 2). `user` is the pointer given to
 *  cfnet_network_set_interrupt. A non-zero return stops the call. Since 0.2. */
typedef int (*cfnet_interrupt_fn)(void *user, int64_t done, int64_t total);

/** Sets the network's interrupt callback (fn NULL: none, the default; `user` is then ignored).
 *  It is not saved. cfnet_network_infer, _probabilities, _predict, _evaluate, _invariance and
 *  _invariance_ex ask it before each layer they run, in the calling thread, with the callback
 *  and user pointer set when the call started. With a callback set, layers that compute each
 *  sample on its own (convolutions of every kind, pooling, group pooling, batch norm, ReLU,
 *  dropout, softmax) run on parts of the batch of about 32 MiB of input and output (at least
 *  16 samples), and the callback is also asked between the parts; the DFT projection, DFT
 *  magnitude and dense layers, whose OpenBLAS GEMMs and batched FFTs round differently for
 *  other batch sizes, run on the whole batch. A non-zero return stops the call with
 *  CFNET_E_CANCELLED ("... stopped by the interrupt callback after D of T layer runs"): no
 *  output is written (out, probs, labels, *loss, *accuracy, *max_rel_change keep their
 *  contents) and the network is unchanged, usable at once. The checks sit where no result's
 *  bits depend on them: with a callback that never stops, every result is bit-identical to a
 *  call without one. A call therefore stops within one part's run, or one whole-batch layer's
 *  (evaluate: over one of its batches). Training calls do not ask it
 *  (cfnet_network_train_epoch has its own progress callback).
 *
 *  Concurrent read-only calls on one network each ask the callback from their own thread, so it
 *  must be thread-safe if the host runs such calls in several threads. Like the progress
 *  callback of cfnet_network_train_epoch, it may make read-only calls on the network (calls
 *  that would modify it return CFNET_E_STATE) and it must return: a C++ exception or a longjmp
 *  out of it would unwind through libcfnet, leaving the network marked as in use and memory of
 *  the call lost; a C++ host catches inside the callback and returns non-zero to stop.
 *  Setting it modifies the network: CFNET_E_STATE while another thread uses it. Since 0.2. */
CFNET_API cfnet_status cfnet_network_set_interrupt(cfnet_network *net, cfnet_interrupt_fn fn,
                                                   void *user);

/** Training and run-time options, set by key (the list is append-only). */
typedef enum cfnet_option {
    CFNET_OPTION_OPTIMIZER = 1,      /**< CFNET_OPTIMIZER_ADAM (default) or _SGD */
    CFNET_OPTION_LEARNING_RATE = 2,  /**< initial learning rate, default 1e-3 */
    CFNET_OPTION_BETA1 = 3,          /**< Adam, default 0.9 */
    CFNET_OPTION_BETA2 = 4,          /**< Adam, default 0.999 */
    CFNET_OPTION_EPSILON = 5,        /**< Adam, default 1e-8 (the update runs in float: a
                                          value below float's range acts as the smallest
                                          positive float) */
    CFNET_OPTION_MOMENTUM = 6,       /**< SGD, default 0.9 */
    CFNET_OPTION_WEIGHT_DECAY = 7,   /**< L2 on weights (not biases or batch-norm), default 0 */
    CFNET_OPTION_LR_DECAY_RATE = 8,  /**< lr = lr0 * rate^floor(step / steps), default 1 */
    CFNET_OPTION_LR_DECAY_STEPS = 9, /**< default 1000 */
    CFNET_OPTION_THREADS = 10,       /**< threads for libcfnet's own loops, 1..CFNET_MAX_THREADS,
                                          default 1 */
    CFNET_OPTION_AUG_ROTATION = 11,  /**< CFNET_AUG_ROTATION_NONE (default), _QUARTER, _ANY */
    CFNET_OPTION_AUG_JITTER = 12,    /**< random shift by up to this many pixels, default 0 */
    CFNET_OPTION_AUG_FLIP = 13       /**< 1: random horizontal flips, default 0 */
} cfnet_option;

/** Largest value of CFNET_OPTION_THREADS (larger values give CFNET_E_INVALID_ARGUMENT). */
#define CFNET_MAX_THREADS 64

/* Threads: with CFNET_OPTION_THREADS = T > 1 a network keeps T - 1 worker threads from the moment
 * the option is set until cfnet_network_free (or until the option changes); the convolution
 * engine splits each batch over them, and ReLU, batch norm and pooling their loops (with the
 * same bits as on one thread). After a piece of work a worker polls for the next one for up to
 * 1 ms before it sleeps, unless there are more threads than processors (the environment
 * variable CFNET_SPIN_US, read when the workers are created, sets that time in microseconds,
 * 0 to 1000000; 0 never polls). While the engine
 * runs, and in the dense and DFT projection layers' products on any number of threads,
 * OpenBLAS is kept on one thread and the host's openblas_set_num_threads setting is
 * restored afterwards (process-wide: a host thread calling OpenBLAS during such a call runs
 * single-threaded meanwhile). The library's own loops use AVX2 or AVX-512 when the CPU has
 * them; the environment variable CFNET_CPU=generic|avx2|avx512 forces one variant (all give
 * bit-identical results). See docs/performance.md. */

/** CFNET_OPTION_OPTIMIZER value: Adam (beta1, beta2, epsilon). */
#define CFNET_OPTIMIZER_ADAM 0
/** CFNET_OPTION_OPTIMIZER value: SGD with momentum. */
#define CFNET_OPTIMIZER_SGD 1
/** CFNET_OPTION_AUG_ROTATION value: no rotation. */
#define CFNET_AUG_ROTATION_NONE 0
/** CFNET_OPTION_AUG_ROTATION value: a random multiple of 90 degrees (exact). */
#define CFNET_AUG_ROTATION_QUARTER 1
/** CFNET_OPTION_AUG_ROTATION value: a uniform random angle (bilinear). */
#define CFNET_AUG_ROTATION_ANY 2

/** Sets an option; values are validated (CFNET_E_INVALID_ARGUMENT, option unchanged). Changing
 *  the optimiser resets its state. */
CFNET_API cfnet_status cfnet_network_set_option(cfnet_network *net, cfnet_option option,
                                                double value);
/** Reads an option's current value into *value (CFNET_E_INVALID_ARGUMENT for an unknown
 *  option). */
CFNET_API cfnet_status cfnet_network_get_option(const cfnet_network *net, cfnet_option option,
                                                double *value);

/** Static name of an option: its enum name in lower case ("learning_rate", "aug_flip"), or NULL
 *  for a value that is not an option. Options are 1, 2, ... up to the first NULL. Since 0.2. */
CFNET_API const char *cfnet_option_name(int option);

/** The values cfnet_network_set_option accepts, as closed bounds: every v with *min <= v <=
 *  *max (an integer, for integer options) is valid. Open intervals are given by their nearest
 *  representable values (beta1: [0, 0.9999999999999999]), no upper bound by DBL_MAX.
 *  CFNET_OPTION_AUG_JITTER must also be
 *  less than the input's height and width, and a rotation augmentation needs square inputs.
 *  CFNET_E_INVALID_ARGUMENT for an unknown option or a NULL pointer. Since 0.2. */
CFNET_API cfnet_status cfnet_option_bounds(int option, double *min, double *max);

/** The option's value in a new network into *value (CFNET_E_INVALID_ARGUMENT for an unknown
 *  option or NULL). Since 0.2. */
CFNET_API cfnet_status cfnet_option_default(int option, double *value);

/** 1 if the option takes integers only (counts, flags and enumerated values such as
 *  CFNET_OPTION_OPTIMIZER), 0 if any real number in its bounds, -1 for an unknown option.
 *  Since 0.2. */
CFNET_API int cfnet_option_is_integer(int option);

/** One optimisation step on a batch: augmentation (per the options), training forward, mean
 *  softmax cross-entropy of the output against labels[0..n-1] (if the last layer is a softmax,
 *  its input is used as the logits), backward, weight decay, optimiser update, learning-rate
 *  schedule. *loss (may be NULL) receives the batch loss before the update.
 *
 *  The step is all or nothing: on any error the parameters, optimiser moments, step count,
 *  batch-norm running statistics and random generators are exactly as before (the parameter
 *  gradients are scratch space of the step). A step that would leave a non-finite value — a
 *  non-finite activation, loss or gradient, an update that overflows, or a batch-norm running
 *  statistic that overflows (finite activations of order 1e19 and more) — returns
 *  CFNET_E_NUMERIC naming the layer. After 2^53 steps the count is full: CFNET_E_LIMIT. */
CFNET_API cfnet_status cfnet_network_train_step(cfnet_network *net, const cfnet_tensor *images,
                                                const int32_t *labels, int64_t n, float *loss);

/** Number of optimisation steps taken so far. */
CFNET_API int64_t cfnet_network_step_count(const cfnet_network *net);

/** Inference-mode mean loss and accuracy (fraction in [0, 1]) over n images, processed in
 *  batches of at most `batch` (0 = 100). Either output may be NULL. Read-only. */
CFNET_API cfnet_status cfnet_network_evaluate(const cfnet_network *net,
                                              const cfnet_tensor *images, const int32_t *labels,
                                              int64_t n, int64_t batch, float *loss,
                                              float *accuracy);

/** Invariance check (the analogue of escnn's check_equivariance): runs x (N x C x S x S) and
 *  its rotations through the network and reports the largest relative output change.
 *
 *  Which layer choices keep exact quarter-turn invariance (in inference mode): conic_conv,
 *  p4_lift and p4_conv with valid or same padding (any R, kernel, odd or even size); relu,
 *  dropout, batch_norm (statistics per channel, shared over space and rotations); group_pool;
 *  pool only when its windows sit symmetrically, (S - window) mod stride == 0 — use window 0,
 *  the equivariant choice; then dft_projection followed by dft_magnitude (optionally with
 *  batch_norm and relu between them), after which dense and softmax see invariant features.
 *  conv2d, an asymmetric pool, or a dense layer before the DFT transition break invariance;
 *  rotations by other angles than quarter turns are only approximately handled.
 *
 *  Details: runs x (N x C x S x S) and
 *  its rotations by each angle in degrees (multiples of 90 are exact permutations, other
 *  angles bilinear) through the network in inference mode and reports the largest relative
 *  change max|f(rot x) - f(x)| / max|f(x)|. angles may be NULL (then 90, 180, 270). */
CFNET_API cfnet_status cfnet_network_invariance(const cfnet_network *net, const cfnet_tensor *x,
                                                const double *angles, int n_angles,
                                                double *max_rel_change);

/** cfnet_network_invariance_ex flag: also check reflections. The mirror F maps u -> -u
 *  (column j <-> W-1-j, the left-right flip of CFNET_OPTION_AUG_FLIP); the check then runs F x
 *  and each rotation of F x as well, which with the default angles covers all 7 non-identity
 *  elements of the dihedral group D4. */
#define CFNET_INVARIANCE_REFLECT 1u

/** cfnet_network_invariance with options: `flags` is 0 (then it is exactly
 *  cfnet_network_invariance) or CFNET_INVARIANCE_REFLECT; unknown bits give
 *  CFNET_E_INVALID_ARGUMENT. Networks built from p4m layers with a p4m_dft_magnitude head, or
 *  with group_pool followed by a mean over the whole map, are invariant to reflections too
 *  (docs/layers.md); the gcnn-p4m preset is not (its mean pooling leaves a 2 x 2 to 4 x 4 map).
 *  Thread-safe like cfnet_network_invariance. Since 0.2. */
CFNET_API cfnet_status cfnet_network_invariance_ex(const cfnet_network *net,
                                                   const cfnet_tensor *x, const double *angles,
                                                   int n_angles, unsigned flags,
                                                   double *max_rel_change);

/* ---------------------------------------------------------------------------------------------
 * Image helpers (used by training augmentation; available to hosts)
 * ------------------------------------------------------------------------------------------- */

/** Rotates every plane of `in` (..., S, S) counter-clockwise by `degrees` about its centre into
 *  `out` (same shape, distinct memory): exact for multiples of 90, bilinear otherwise with zero
 *  outside the image. */
CFNET_API cfnet_status cfnet_image_rotate(const cfnet_tensor *in, cfnet_tensor *out,
                                          double degrees);

/** Shifts every plane of `in` (..., H, W) by dy rows down and dx columns right into `out`,
 *  filling with zeros. */
CFNET_API cfnet_status cfnet_image_shift(const cfnet_tensor *in, cfnet_tensor *out, int dy,
                                         int dx);

/** In place, per image and channel of an N x C x H x W tensor: maps the low and high
 *  percentiles (0 <= low < high <= 100) to 0 and 1 and clips to [0, 1] (the original code's
 *  percentile stretch). A plane whose percentiles coincide becomes 0. */
CFNET_API cfnet_status cfnet_image_normalize(cfnet_tensor *images, double low_percentile,
                                             double high_percentile);

/** Flag of cfnet_network_prepare_image: zero-pad an image smaller than the input size even when
 *  the model's "pad" is 0 (as `cfnet predict --pad`). */
#define CFNET_PREPARE_PAD 1

/** Prepares one image for a network trained by the `cfnet` command exactly as `cfnet predict`
 *  does (the same code, the same bits), from the settings the network's metadata holds
 *  (docs/cli.md, "What the model file holds"): "channels" (C), "input_size" (S), "pad" ("1": pad
 *  smaller images; "0" or absent: refuse them) and "normalization" ("percentile LOW HIGH": per
 *  channel over the whole image, the LOW and HIGH percentiles to 0 and 1, clipped to [0, 1], a
 *  channel whose percentiles coincide 0; "scale X": times X in float32), then the centre S x S
 *  crop (offset (H - S) / 2 rounded down, likewise for W) or the centred zero pad (offset
 *  (S - H) / 2 rounded down). The numbers in the metadata are read the same way under any
 *  locale.
 *
 *  `image`: C x H x W or 1 x C x H x W, the values as stored (not scaled), finite; only read
 *  (a cfnet_tensor_wrap_const tensor will do). `batch`: N x C x S x S, writable; row `index`
 *  (0 <= index < N) is overwritten, nothing else. Allocate it with the network's input shape
 *  (cfnet_network_input_shape: C, S, S; a model of the command has it equal to its metadata),
 *  fill rows 0..N-1 and give it to cfnet_network_probabilities. `flags`: 0 or
 *  CFNET_PREPARE_PAD.
 *
 *  Errors (nothing written): NULL arguments, unknown flags, an index out of range, non-finite
 *  image values, a read-only batch (cfnet_tensor_wrap_const), an image that shares memory with row
 *  `index` CFNET_E_INVALID_ARGUMENT; an image of another rank, or of other than C channels, an
 *  image smaller than S without padding, a batch of another shape CFNET_E_SHAPE_MISMATCH; a
 *  network without these metadata keys (one not trained by the `cfnet` command), or with values
 *  that are malformed or disagree with the network's input shape CFNET_E_FORMAT naming the key; a
 *  value that overflows float32 when scaled CFNET_E_NUMERIC; no memory for the scratch plane
 *  CFNET_E_OUT_OF_MEMORY; a network another thread modifies CFNET_E_STATE. Thread-safe like
 *  cfnet_network_get_metadata (read-only: any number of threads may prepare images and run
 *  inference on one network at once). Since 0.2. */
CFNET_API cfnet_status cfnet_network_prepare_image(const cfnet_network *net,
                                                   const cfnet_tensor *image, int flags,
                                                   cfnet_tensor *batch, int64_t index);

/* ---------------------------------------------------------------------------------------------
 * Saving and loading (safetensors layout; see docs/format.md)
 * ------------------------------------------------------------------------------------------- */

/** Save flag: also store the training state — optimiser moments, step count and the random
 *  generators (augmentation, dropout) — so that a loaded copy continues training exactly as the
 *  original would. Without it the loaded network starts at step 0 with fresh generators. The
 *  training options are saved in either case. */
#define CFNET_SAVE_OPTIMIZER 1u

/** Save flag: write parameters, statistics or optimiser moments that are NaN or infinite.
 *  Without it such a network (usually a diverged one) gives CFNET_E_NUMERIC naming the tensor.
 *  The loader accepts what was saved this way. */
#define CFNET_SAVE_ALLOW_NONFINITE 2u

/** Writes the whole network (architecture, parameters, batch-norm statistics, training options,
 *  optionally the training state) to `path`. The file is written to a temporary file beside it
 *  and renamed, so on any failure (CFNET_E_IO, with the system's reason) an existing file at
 *  `path` is left intact; the new file keeps the permissions of the file it replaces. A
 *  symbolic link at `path` is replaced by the file, not followed. The temporary file is
 *  `path.tmp.PID.HOST`, locked (flock) until the rename, so that one a process killed while
 *  saving leaves can be told stale and removed (docs/format.md). Unknown flags
 *  give CFNET_E_INVALID_ARGUMENT; a network whose file would exceed the loader limits of its
 *  context (the defaults for a network created without one; user metadata counts as escaped
 *  JSON) gives CFNET_E_LIMIT. */
CFNET_API cfnet_status cfnet_network_save(const cfnet_network *net, const char *path,
                                          unsigned flags);

/** Same, into a new buffer of *size bytes that the caller frees with cfnet_free(). */
CFNET_API cfnet_status cfnet_network_save_buffer(const cfnet_network *net, unsigned flags,
                                                 void **buffer, size_t *size);

/** Loads a network saved by cfnet_network_save. Every field is validated; a malformed file
 *  gives CFNET_E_FORMAT (or CFNET_E_LIMIT for built-in size caps, CFNET_E_IO for file errors)
 *  with a message naming what was wrong, and no leak. *out is set only on success; the caller
 *  owns it (cfnet_network_free). */
CFNET_API cfnet_status cfnet_network_load(const char *path, cfnet_network **out);

/** Same, from `size` bytes at `buffer` (not retained). */
CFNET_API cfnet_status cfnet_network_load_buffer(const void *buffer, size_t size,
                                                 cfnet_network **out);

/** Removes the temporary files that saves to `path` (cfnet_network_save,
 *  cfnet_network_export_onnx) of processes killed meanwhile left: `path.tmp.PID.HOST` beside
 *  `path` (the name part shortened as the save shortens it for a long name), of this host, of a
 *  process id that no longer exists, and only while a shared lock on it is obtained without
 *  waiting (a live writer's lock keeps it; so do other hosts' files, this process's own,
 *  `path.tmp.XXXXXX` names and any other file). Call it before saving, e.g. when a job killed
 *  by a time limit starts again. A symbolic link at `path` is not followed: the saves replace
 *  the link and write beside it, so that is the folder looked in. `*removed` (may be NULL)
 *  receives how many files were removed. A host without a name removes nothing (CFNET_OK, 0).
 *  Errors (nothing removed): a NULL or empty `path`, or one ending in '/'
 *  (CFNET_E_INVALID_ARGUMENT); a folder of `path` that does not exist or cannot be read
 *  (CFNET_E_IO, with the system's reason). A file that vanishes or cannot be removed meanwhile
 *  is skipped. Thread-safe. Since 0.2. */
CFNET_API cfnet_status cfnet_remove_stale_temporaries(const char *path, size_t *removed);

/** Frees memory returned by libcfnet (cfnet_network_save_buffer,
 *  cfnet_network_export_onnx_buffer). Accepts NULL. */
CFNET_API void cfnet_free(void *p);

/* ---------------------------------------------------------------------------------------------
 * Contexts: allocation hooks and loader limits
 *
 * EXPERIMENTAL until 1.0: the context and allocator API below (cfnet_context_*,
 * cfnet_network_create_in, cfnet_network_load_in, cfnet_network_load_buffer_in) may still
 * change in a minor version; the rest of this header is stable.
 *
 * A context carries an allocator and the limits applied when loading models. The allocator is
 * stored in each object when it is created and inherited from there; there is no process-global
 * or per-thread hook:
 * - a network created or loaded in a context takes a copy of the context's allocator (changing
 *   the context's allocator later affects only networks created afterwards) and makes every
 *   allocation with it: training and inference buffers, optimiser state, saved buffers
 *   (cfnet_network_save_buffer, cfnet_network_export_onnx_buffer) and scratch;
 * - a layer appended to such a network allocates everything from then on (parameters,
 *   gradients, state, tables, workspaces) with the network's allocator. The cfnet_layer object
 *   itself is allocated by its create function, before it knows its network, with malloc (a few
 *   hundred bytes, freed with malloc's free when the network frees it); layers of a network
 *   loaded in a context are created with the context's allocator, struct included;
 * - tensors, layers and networks created outside any context use malloc.
 * Every block the library returns is 64-byte aligned, whatever the hooks' alignment, and goes
 * back to the hooks that made it (the hooks' `opaque` must stay valid while such blocks exist).
 * A context must outlive every network created in it (saving reads its limits). Memory that
 * FFTW, the BLAS and the JSON parser allocate internally does not go through the hooks.
 * ------------------------------------------------------------------------------------------- */

/** A context (opaque): allocator hooks and loader limits. */
typedef struct cfnet_context cfnet_context;

/** Allocation hook: returns `size` bytes aligned for any object type, or NULL on failure (never
 *  a C++ exception or longjmp: return NULL, and the call fails with CFNET_E_OUT_OF_MEMORY).
 *  The hooks are called from every thread that uses a network holding them (networks of one
 *  context used in different threads, concurrent read-only calls on one network), possibly at
 *  once: they must be thread-safe. */
typedef void *(*cfnet_alloc_fn)(void *opaque, size_t size);
/** Release hook for blocks returned by the matching cfnet_alloc_fn (never called with NULL). */
typedef void (*cfnet_free_fn)(void *opaque, void *ptr);

/** Creates a context with malloc/free and the default limits. */
CFNET_API cfnet_status cfnet_context_create(cfnet_context **out);

/** Frees a context. Accepts NULL. */
CFNET_API void cfnet_context_free(cfnet_context *ctx);

/** Sets the allocator (both hooks non-NULL, or both NULL for malloc/free). Affects networks
 *  created in the context afterwards. */
CFNET_API cfnet_status cfnet_context_set_allocator(cfnet_context *ctx, cfnet_alloc_fn alloc,
                                                   cfnet_free_fn free_fn, void *opaque);

/** Limits applied by the loaders; the list is append-only. */
typedef enum cfnet_limit {
    CFNET_LIMIT_HEADER_BYTES = 1, /**< JSON header size, default 16 MiB */
    CFNET_LIMIT_TENSOR_BYTES = 2  /**< total tensor data, default 4 GiB */
} cfnet_limit;

/** Sets a loader limit (value >= 1); a model over it is rejected with CFNET_E_LIMIT before
 *  anything of that size is allocated. */
CFNET_API cfnet_status cfnet_context_set_limit(cfnet_context *ctx, cfnet_limit limit,
                                               uint64_t value);

/** Reads a loader limit. */
CFNET_API cfnet_status cfnet_context_get_limit(const cfnet_context *ctx, cfnet_limit limit,
                                               uint64_t *value);

/** cfnet_network_create in a context (NULL: the default). */
CFNET_API cfnet_status cfnet_network_create_in(cfnet_context *ctx, int channels, int height,
                                               int width, uint64_t seed, cfnet_network **out);

/** cfnet_network_load in a context (NULL: the default). */
CFNET_API cfnet_status cfnet_network_load_in(cfnet_context *ctx, const char *path,
                                             cfnet_network **out);

/** cfnet_network_load_buffer in a context (NULL: the default). */
CFNET_API cfnet_status cfnet_network_load_buffer_in(cfnet_context *ctx, const void *buffer,
                                                    size_t size, cfnet_network **out);

/* ---------------------------------------------------------------------------------------------
 * Preset classifiers
 *
 * The paper's five families, and a p4m G-CNN (rotations and reflections), as ready-made classifiers for S x S inputs (see docs/guide.md for
 * the table of layers, map sizes, parameters and cost per input size). The architecture is
 * derived from S:
 * - a trunk of 3 x 3 convolutions with same padding, each followed by batch norm and ReLU;
 * - equivariant max pooling (window 2 on even maps, 3 on odd maps, stride 2, so every pooling
 *   keeps exact quarter-turn equivariance) after the first layers while the map is larger than
 *   8 x 8; one more convolution layer at the final map (4 x 4 to 8 x 8), at least 3 in all;
 * - conic layers use R = 2 (8 cones) on maps of 16 pixels and more, R = 1 below;
 * - CFNet and G-CNN+DFT end with the DFT transition (projection at 4 rotations, bilinear
 *   resampling, batch norm, ReLU, |DFT|) and a dense layer: the network is invariant to quarter
 *   turns of the input (in inference mode);
 * - CNet, G-CNN, G-CNN p4m and CNN end with an equivariant 2 x 2 / 3 x 3 mean pooling (G-CNN:
 *   after max pooling over the 4 rotations, G-CNN p4m: over the 8 rotations and reflections)
 *   and a dense layer.
 * For S = 50 and width 12 this is the network of the biomarker demo (50 -> 25 -> 12 -> 6). The
 * last layer outputs logits (no softmax): train with cfnet_network_train_step/train_epoch, get
 * probabilities with cfnet_network_probabilities.
 * ------------------------------------------------------------------------------------------- */

/** The five model families of the paper, and the p4m G-CNN. */
typedef enum cfnet_family {
    CFNET_FAMILY_CFNET = 1,    /**< conic convolutions, DFT transition (invariant) */
    CFNET_FAMILY_CNET = 2,     /**< conic convolutions, mean pooling, dense (no DFT) */
    CFNET_FAMILY_GCNN = 3,     /**< p4 group convolutions, group max pooling, dense */
    CFNET_FAMILY_GCNN_DFT = 4, /**< p4 group convolutions, DFT transition (invariant) */
    CFNET_FAMILY_CNN = 5,      /**< standard convolutions, dense */
    CFNET_FAMILY_GCNN_P4M = 6  /**< p4m (rotations and reflections) group convolutions, group
                                    max pooling over the 8 copies, dense; since 0.2 */
} cfnet_family;

/** Static name of a family: "cfnet", "cnet", "gcnn", "gcnn-dft", "cnn", "gcnn-p4m"; NULL for an
 *  unknown value. Since 0.2. */
CFNET_API const char *cfnet_family_name(int family);

/** Parses a family name as printed by cfnet_family_name (case-insensitive) into *out.
 *  CFNET_E_INVALID_ARGUMENT, with a message listing the names, for anything else. Since 0.2. */
CFNET_API cfnet_status cfnet_family_parse(const char *name, cfnet_family *out);

/** Creates the preset classifier of `family` for inputs N x channels x size x size and
 *  `classes` classes (2 to 1,000,000), its weights initialised from `seed` as by
 *  cfnet_network_create, except the CFNet family's (since 0.2): conic layers with steerable
 *  filter resampling (CFNET_INTERP_STEERABLE) and every weight from N(0, 0.1^2) as by
 *  cfnet_network_init_normal(net, 0.1, seed), the configuration chosen by the ablation study on
 *  rotated MNIST (docs/results.md); 0.1 built nearest-resampled, He-initialised CFNets. size: 16 to 512 (odd or even); any other size gives
 *  CFNET_E_INVALID_ARGUMENT with a message saying which sizes work. width: filters per
 *  convolution layer and DFT projection filters (1 to 1024); 0 selects the default, 16. The
 *  p4 families (G-CNN, G-CNN+DFT) use (width + 1) / 2 filters, each with 4 orientations, about
 *  the same number of convolution weights; the p4m family (width + 2) / 3 filters, each with 8
 *  transformations. channels: 1 to 4096. The caller owns *out
 *  (cfnet_network_free); training options are the defaults of cfnet_network_create. Since 0.2. */
CFNET_API cfnet_status cfnet_network_create_classifier(cfnet_family family, int channels,
                                                       int size, int classes, int width,
                                                       uint64_t seed, cfnet_network **out);

/** Redraws every weight of `net` (each layer's parameters named "weight": convolution, conic,
 *  p4, p4m, DFT projection and dense filters) from the normal distribution N(0, sd^2), whatever
 *  the layer's fan-in; biases, batch-norm parameters and statistics, the optimiser's state and
 *  the step count stay as they are. This is the original CFNet code's initialisation (sd 0.1)
 *  and the one the CFNet preset uses (docs/results.md, ablation study); layers are otherwise
 *  He-initialised when created. The numbers come from a splitmix64 stream started at `seed`
 *  (Box-Muller, two uniforms per weight), drawn layer by layer, parameter by parameter, in
 *  storage order, so they are the same on every machine. sd: finite, > 0 and <= 1000, else
 *  CFNET_E_INVALID_ARGUMENT and nothing changes. Since 0.2. */
CFNET_API cfnet_status cfnet_network_init_normal(cfnet_network *net, double sd, uint64_t seed);

/** Nominal multiply-adds of one sample's forward pass (2 x this = FLOP): each weight of a
 *  convolution, p4, DFT projection or dense layer counted once per output position; batch
 *  norm, ReLU, pooling and the DFT itself are not counted, and conic layers count one filter
 *  per pixel. -1 for NULL. Since 0.2. */
CFNET_API int64_t cfnet_network_multiply_adds(const cfnet_network *net);

/* ---------------------------------------------------------------------------------------------
 * User metadata: UTF-8 key/value strings kept with the network and saved in the model file
 * (in the safetensors "__metadata__", each key prefixed with "user."; see docs/format.md), so
 * that a model file can say what it classifies (class names, input size, normalisation, ...).
 * ------------------------------------------------------------------------------------------- */

/** Longest key in bytes (UTF-8, without the NUL). */
#define CFNET_METADATA_MAX_KEY 256
/** Longest value in bytes (UTF-8, without the NUL). */
#define CFNET_METADATA_MAX_VALUE 1048576
/** Most entries per network. */
#define CFNET_METADATA_MAX_COUNT 1024
/** Most bytes of all keys and values together. */
#define CFNET_METADATA_MAX_TOTAL 8388608

/** Sets `key` to a copy of `value`, or removes the key when `value` is NULL (removing an absent
 *  key is not an error). Keys: 1 to CFNET_METADATA_MAX_KEY bytes of valid UTF-8 without control
 *  characters (U+0000-U+001F, U+007F-U+009F). Values: at most CFNET_METADATA_MAX_VALUE bytes of
 *  valid UTF-8 (control characters such as newlines allowed). CFNET_E_INVALID_ARGUMENT for a
 *  malformed key or value, CFNET_E_LIMIT for a key or value too long or when the entry would
 *  exceed CFNET_METADATA_MAX_COUNT or CFNET_METADATA_MAX_TOTAL; nothing changes then. Setting a
 *  key invalidates the pointers previously returned for that key only. Since 0.2. */
CFNET_API cfnet_status cfnet_network_set_metadata(cfnet_network *net, const char *key,
                                                  const char *value);

/** Looks `key` up: *value = its value, or NULL (and CFNET_OK) when the key is absent. The string
 *  is owned by the network and valid until that key is set or removed or the network is
 *  freed. Since 0.2. */
CFNET_API cfnet_status cfnet_network_get_metadata(const cfnet_network *net, const char *key,
                                                  const char **value);

/** Number of metadata entries; -1 for NULL. Since 0.2. */
CFNET_API int cfnet_network_metadata_count(const cfnet_network *net);

/** The i-th entry in key order (sorted bytewise, as strcmp), 0 <= i < count: *key and *value are
 *  owned by the network, valid as for cfnet_network_get_metadata. Since 0.2. */
CFNET_API cfnet_status cfnet_network_metadata_at(const cfnet_network *net, int i,
                                                 const char **key, const char **value);

/* ---------------------------------------------------------------------------------------------
 * Training epochs with progress and cancel (for host programs: progress bars, Cancel buttons)
 * ------------------------------------------------------------------------------------------- */

/** Progress callback of cfnet_network_train_epoch, called after every step (in the calling
 *  thread): `step` counts 1..`steps`; `loss` is this step's batch loss (before the update);
 *  `accuracy` is the running training accuracy of the epoch so far (fraction of the samples
 *  seen whose training-mode output, before the update, has its label as the largest). `user` is
 *  the pointer given to train_epoch. A non-zero return cancels the epoch after this step. The
 *  callback may make read-only calls on the network (inference, evaluation, saving); calls
 *  that would modify it return CFNET_E_STATE. The callback must return: a C++ exception or a
 *  longjmp out of it would unwind through libcfnet, leaving the network marked as in use (every
 *  later modifying call then returns CFNET_E_STATE) and memory of the call lost. A C++ host
 *  catches inside the callback and returns non-zero to stop. */
typedef int (*cfnet_progress_fn)(void *user, int64_t step, int64_t steps, double loss,
                                 double accuracy);

/** One epoch over `images` (N x C x H x W) and labels[0..N-1]: batches of `batch` (> 0)
 *  samples, each trained as by cfnet_network_train_step (augmentation as configured); the last
 *  batch may be smaller. The visiting order:
 *  - order == NULL: a permutation of 0..N-1 drawn from the network's own generator (the one
 *    that also drives augmentation and is saved with CFNET_SAVE_OPTIMIZER, so that training
 *    resumed from a saved file continues bit for bit); `count` is ignored;
 *  - otherwise `count` (> 0) sample indices in [0, N), visited in that order; repetitions are
 *    allowed (e.g. class-balanced sampling by the host).
 *  `progress` (may be NULL) is called after every step with `user`; a non-zero return stops the
 *  epoch after that step with CFNET_E_CANCELLED: the steps done are kept (step count, weights,
 *  optimiser state, generators all consistent), the network can be saved, trained further or
 *  used for inference. *mean_loss (sample-weighted mean of the batch losses) and *accuracy
 *  (training accuracy as passed to the callback) cover the steps done; each may be NULL; they
 *  are written on success and on cancel.
 *  Errors: NULL network, images or labels, batch <= 0, a shape that does not match the network,
 *  a label outside [0, classes), an order index outside [0, N), count <= 0 with an order, or
 *  NaN/Inf in the images give CFNET_E_INVALID_ARGUMENT / CFNET_E_SHAPE_MISMATCH /
 *  CFNET_E_STATE (no layers) before anything changes. A failure during the epoch (out of
 *  memory, or CFNET_E_NUMERIC from a step that would diverge, which changes nothing itself)
 *  leaves the steps done before it applied; its message says "step S of T failed (S - 1
 *  earlier steps are kept)" followed by the step's own message. *mean_loss and *accuracy
 *  are not written then. Since 0.2. */
CFNET_API cfnet_status cfnet_network_train_epoch(cfnet_network *net, const cfnet_tensor *images,
                                                 const int32_t *labels, int64_t batch,
                                                 const int64_t *order, int64_t count,
                                                 cfnet_progress_fn progress, void *user,
                                                 double *mean_loss, double *accuracy);

/* ---------------------------------------------------------------------------------------------
 * ONNX export (see docs/deploy.md)
 *
 * The network becomes a standard ONNX model that ONNX Runtime (or any runtime for the default
 * operator set) runs: input "input" (N x C x H x W, float, N symbolic), output "output"
 * (N x <output shape>), computing what cfnet_network_infer computes, up to float rounding. Every
 * layer kind is written with default-domain operators of opset CFNET_ONNX_OPSET. The model's
 * metadata_props carry every user metadata entry (cfnet_network_set_metadata) unchanged, and
 * "cfnet.version", "cfnet.input_shape", "cfnet.output_shape" (of "output", batch axis left
 * out), "cfnet.output", "cfnet.layers" unless the user metadata has the same key.
 * ------------------------------------------------------------------------------------------- */

/** The ONNX operator set version of exported models (IR version 7). */
#define CFNET_ONNX_OPSET 13

/** Export flag: the model outputs class probabilities, N x K, as cfnet_network_probabilities
 *  does (a softmax over the flattened output is appended unless the last layer is a softmax). */
#define CFNET_ONNX_PROBABILITIES 1u

/** Writes the network as an ONNX model to `path` (temporary file and rename, so an existing file
 *  is left intact on failure: CFNET_E_IO with the system's reason). `flags`: 0 or
 *  CFNET_ONNX_PROBABILITIES (other bits, or an empty path: CFNET_E_INVALID_ARGUMENT). A network
 *  without layers gives CFNET_E_STATE, a layer kind without an ONNX form CFNET_E_UNSUPPORTED
 *  naming it, a model over protobuf's 2 GiB message limit CFNET_E_LIMIT. The network is not changed (thread-safe
 *  like cfnet_network_infer). Since 0.2. */
CFNET_API cfnet_status cfnet_network_export_onnx(const cfnet_network *net, const char *path,
                                                 unsigned flags);

/** Same, into a new buffer of *size bytes that the caller frees with cfnet_free(). Since 0.2. */
CFNET_API cfnet_status cfnet_network_export_onnx_buffer(const cfnet_network *net, unsigned flags,
                                                        void **buffer, size_t *size);

/* ---------------------------------------------------------------------------------------------
 * Data-parallel training (since 0.2)
 *
 * Several processes (MPI ranks, or any other transport) train one model together: each holds an
 * identical copy of the network, takes its share of every global batch, and the library asks the
 * host, through one hook, to sum numbers across the processes at fixed points of
 * cfnet_network_train_step. libcfnet itself does no communication and links no MPI; the optional
 * libcfnet_mpi (include/cfnet/cfnet_mpi.h, docs/distributed.md) implements the hook with
 * MPI_Allreduce.
 *
 * The contract, for N processes sharing a global batch of G samples:
 * - every process holds the same architecture, options, seed, parameters, batch-norm state and
 *   optimiser state before the first step (the host broadcasts them; libcfnet_mpi does);
 * - before each step, process p calls cfnet_network_set_batch_position(net, offset_p, G) for
 *   its n_p samples, which are samples [offset_p, offset_p + n_p) of the global batch (the
 *   shares cover the batch without overlap), and installs the same hook on every process;
 * - every process then calls cfnet_network_train_step with its n_p samples (n_p >= 1).
 * Then every process computes what one process given the whole batch at offset 0 computes,
 * up to the order of floating-point additions:
 * - augmentation and dropout draw from generators keyed by (network seed, layer, optimiser
 *   step, global sample index), so the split of the batch does not change them;
 * - the loss and its gradient are the mean over the G samples (each process's share is scaled
 *   by 1 / G, the hook adds the shares);
 * - batch normalisation is synchronised: its batch mean and variance are over the whole global
 *   batch (the hook adds the per-channel sums), and so is its backward.
 * The hook is called in the same order on every process, a fixed number of times per step:
 *   1. for each batch-norm layer in order, in the forward: CFNET_SUM_STATISTICS with C doubles
 *      (per-channel sums of x), then again with C doubles (per-channel sums of (x - mean)^2);
 *   2. for each batch-norm layer in reverse order, in the backward: CFNET_SUM_STATISTICS with
 *      2 C doubles (per-channel sums of dy, then of dy * (x - mean) / std) — except for a
 *      batch-norm layer that is the network's first, whose input gradient is not needed;
 *   3. once, after the backward and before the optimiser update: CFNET_SUM_GRADIENTS with
 *      cfnet_network_param_count(net) + 1 floats: every parameter gradient, layer by layer in
 *      network order, each layer's parameters in index order (cfnet_layer_param), each tensor
 *      flattened row-major — the order of the model file — then this process's share of the
 *      loss (sum of its samples' losses / G).
 * The hook must replace each element by its sum over the processes (an in-place all-reduce
 * with addition) and return CFNET_OK; after step 3 the library copies the sums back into the
 * gradient tensors, applies the update, and returns the global mean loss. Any other return
 * value aborts the step: cfnet_network_train_step returns that status, with a message naming
 * the hook, and the parameters, optimiser state and batch-norm running statistics are left as
 * they were. The data pointer is valid only during the call. The hook runs on the thread that
 * called cfnet_network_train_step.
 * Every process must make every call, or the others wait in theirs. So with a hook, non-finite
 * values in one process's forward do not end its step early: they reach the sums, and every
 * process fails the step with CFNET_E_NUMERIC (the process where they arose says so in its
 * message). Errors found before the first call (bad arguments, NaN in the images) end the step
 * on that process only: the host must then end all processes (MPI_Abort), as libcfnet_mpi's
 * documentation says.
 * ------------------------------------------------------------------------------------------- */

/** What a sum hook is asked to add up; the kind fixes the element type of the data. */
typedef enum cfnet_sum_kind {
    CFNET_SUM_GRADIENTS = 1, /**< float: parameter gradients, then the loss share */
    CFNET_SUM_STATISTICS = 2 /**< double: batch-norm per-channel sums */
} cfnet_sum_kind;

/** Sum hook: replaces data[0..count-1] (float for CFNET_SUM_GRADIENTS, double for
 *  CFNET_SUM_STATISTICS) by its element-wise sum over all processes. `user` is the pointer given
 *  to cfnet_network_set_sum_hook. Returns CFNET_OK, or an error status that aborts the step.
 *  Like cfnet_progress_fn, it must return (no C++ exception or longjmp out of it). */
typedef cfnet_status (*cfnet_sum_fn)(void *user, cfnet_sum_kind kind, void *data,
                                     int64_t count);

/** Installs (fn != NULL) or removes (fn == NULL) the sum hook of a network; `user` is passed
 *  through and not owned. A network without a hook trains alone. The hook is not saved with
 *  the model. With a hook and no batch position set, the local batch is the whole batch (a
 *  single process that inspects its gradients). */
CFNET_API cfnet_status cfnet_network_set_sum_hook(cfnet_network *net, cfnet_sum_fn fn,
                                                  void *user);

/** Declares that the batches of the following train steps are the samples starting at global
 *  index `offset` of a global batch of `global_n` samples (kept until changed). This switches
 *  augmentation and dropout to per-sample keyed randomness and scales the loss by 1 / global_n
 *  (see the contract above). cfnet_network_train_step then fails with CFNET_E_INVALID_ARGUMENT
 *  if offset + n > global_n, and with CFNET_E_STATE if n < global_n and no sum hook is set.
 *  global_n == 0 (with offset 0) returns to the default: the network's sequential generators,
 *  the local batch is the global batch. A single process that wants the randomness of a
 *  distributed run calls it with (0, n). Not saved with the model. Errors:
 *  CFNET_E_INVALID_ARGUMENT for negative values or offset >= global_n > 0. */
CFNET_API cfnet_status cfnet_network_set_batch_position(cfnet_network *net, int64_t offset,
                                                        int64_t global_n);

/** Copies every parameter gradient, in the order of the CFNET_SUM_GRADIENTS buffer (without the
 *  loss), into out[0..count-1]; count must equal cfnet_network_param_count(net). After a train
 *  step these are the gradients the update used (summed over processes when a hook is set). */
CFNET_API cfnet_status cfnet_network_gradients(const cfnet_network *net, float *out,
                                               int64_t count);

#ifdef __cplusplus
}
#endif

#endif /* CFNET_CFNET_H */
