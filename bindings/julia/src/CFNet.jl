# CFNet.jl — Julia bindings for libcfnet (rotation-equivariant and -invariant networks).
#
# Two levels:
#   1. Raw wrappers: one function per C function of include/cfnet/cfnet.h, with the C name and
#      argument order (cfnet_tensor_create(ndim, shape, out) ...). Each is a single `ccall`;
#      tests/test_julia_wrappers.sh checks every one against the header (name, argument count
#      and types), since Julia itself is not available where the library is built and tested.
#   2. A small Julia-style layer: Tensor, Layer, Network with finalizers, CFNetError, and
#      functions for building, training, evaluating, checking invariance, saving and loading.
#
# Memory layout: libcfnet is row-major (N x C x H x W). A Julia array is column-major, so a
# Julia array of size (W, H, C, N) has exactly the memory of a row-major N x C x H x W tensor:
# sizes are reversed, data is not copied. Outputs come back the same way (K x N for N x K).
#
# The library is found through ENV["CFNET_LIBRARY"] (path of libcfnet.so) when the module is
# loaded, else by the dynamic linker under the name "libcfnet".
module CFNet

export CFNetError, Tensor, Layer, Network
export conv2d, conic_conv, p4_lift, p4_conv, group_pool, dft_projection, dft_magnitude, dense,
       relu, pool, batch_norm, dropout, softmax, p4m_lift, p4m_conv, p4m_dft_magnitude,
       conic_conv_mirror
export option_bounds, option_default
export infer, probabilities, predict, train_step!, train_epoch!, evaluate, invariance, set_option!, get_option,
       save, load_network, export_onnx, summary_string, output_shape, param_count, classifier,
       multiply_adds, init_normal!, metadata, set_metadata!, prepare, remove_stale_temporaries

const libcfnet = get(ENV, "CFNET_LIBRARY", "libcfnet")

const Handle = Ptr{Cvoid}

# ---------------------------------------------------------------------------------------------
# Raw wrappers (C names, C argument order). Enum arguments are Cint; out-parameters are
# Ptr{...} (pass a Ref or an Array).
# ---------------------------------------------------------------------------------------------

# Version, status codes and errors
cfnet_version_number() = ccall((:cfnet_version_number, libcfnet), Cuint, ())
cfnet_version_string() = ccall((:cfnet_version_string, libcfnet), Cstring, ())
cfnet_status_string(status) = ccall((:cfnet_status_string, libcfnet), Cstring, (Cint,), status)
cfnet_last_error() = ccall((:cfnet_last_error, libcfnet), Cstring, ())
cfnet_clear_error() = ccall((:cfnet_clear_error, libcfnet), Cvoid, ())

# Tensors
cfnet_tensor_create(ndim, shape, out) =
    ccall((:cfnet_tensor_create, libcfnet), Cint, (Cint, Ptr{Int64}, Ptr{Handle}), ndim, shape, out)
cfnet_tensor_wrap(data, ndim, shape, out) =
    ccall((:cfnet_tensor_wrap, libcfnet), Cint, (Ptr{Cfloat}, Cint, Ptr{Int64}, Ptr{Handle}),
          data, ndim, shape, out)
cfnet_tensor_wrap_const(data, ndim, shape, out) =
    ccall((:cfnet_tensor_wrap_const, libcfnet), Cint, (Ptr{Cfloat}, Cint, Ptr{Int64}, Ptr{Handle}),
          data, ndim, shape, out)
cfnet_tensor_free(t) = ccall((:cfnet_tensor_free, libcfnet), Cvoid, (Handle,), t)
cfnet_tensor_ndim(t) = ccall((:cfnet_tensor_ndim, libcfnet), Cint, (Handle,), t)
cfnet_tensor_dim(t, axis) = ccall((:cfnet_tensor_dim, libcfnet), Int64, (Handle, Cint), t, axis)
cfnet_tensor_shape(t, ndim, shape) =
    ccall((:cfnet_tensor_shape, libcfnet), Cint, (Handle, Ptr{Cint}, Ptr{Int64}), t, ndim, shape)
cfnet_tensor_numel(t) = ccall((:cfnet_tensor_numel, libcfnet), Int64, (Handle,), t)
cfnet_tensor_data(t) = ccall((:cfnet_tensor_data, libcfnet), Ptr{Cfloat}, (Handle,), t)
cfnet_tensor_copy_in(t, src, count) =
    ccall((:cfnet_tensor_copy_in, libcfnet), Cint, (Handle, Ptr{Cfloat}, Int64), t, src, count)
cfnet_tensor_copy_out(t, dst, count) =
    ccall((:cfnet_tensor_copy_out, libcfnet), Cint, (Handle, Ptr{Cfloat}, Int64), t, dst, count)
cfnet_tensor_fill(t, value) = ccall((:cfnet_tensor_fill, libcfnet), Cint, (Handle, Cfloat), t, value)
cfnet_tensor_zero(t) = ccall((:cfnet_tensor_zero, libcfnet), Cint, (Handle,), t)
cfnet_tensor_reshape(t, ndim, shape) =
    ccall((:cfnet_tensor_reshape, libcfnet), Cint, (Handle, Cint, Ptr{Int64}), t, ndim, shape)

# Layers
cfnet_layer_conv2d_create(out_channels, kernel, stride, padding, out) =
    ccall((:cfnet_layer_conv2d_create, libcfnet), Cint, (Cint, Cint, Cint, Cint, Ptr{Handle}),
          out_channels, kernel, stride, padding, out)
cfnet_layer_conic_conv_create(out_channels, kernel, R, padding, interp, out) =
    ccall((:cfnet_layer_conic_conv_create, libcfnet), Cint,
          (Cint, Cint, Cint, Cint, Cint, Ptr{Handle}), out_channels, kernel, R, padding, interp, out)
cfnet_layer_p4_lift_create(out_channels, kernel, padding, out) =
    ccall((:cfnet_layer_p4_lift_create, libcfnet), Cint, (Cint, Cint, Cint, Ptr{Handle}),
          out_channels, kernel, padding, out)
cfnet_layer_p4_conv_create(out_channels, kernel, padding, out) =
    ccall((:cfnet_layer_p4_conv_create, libcfnet), Cint, (Cint, Cint, Cint, Ptr{Handle}),
          out_channels, kernel, padding, out)
cfnet_layer_p4m_lift_create(out_channels, kernel, padding, out) =
    ccall((:cfnet_layer_p4m_lift_create, libcfnet), Cint, (Cint, Cint, Cint, Ptr{Handle}),
          out_channels, kernel, padding, out)
cfnet_layer_p4m_conv_create(out_channels, kernel, padding, out) =
    ccall((:cfnet_layer_p4m_conv_create, libcfnet), Cint, (Cint, Cint, Cint, Ptr{Handle}),
          out_channels, kernel, padding, out)
cfnet_layer_p4m_dft_magnitude_create(out) =
    ccall((:cfnet_layer_p4m_dft_magnitude_create, libcfnet), Cint, (Ptr{Handle},), out)
cfnet_layer_conic_conv_mirror_create(out_channels, kernel, R, padding, interp, out) =
    ccall((:cfnet_layer_conic_conv_mirror_create, libcfnet), Cint,
          (Cint, Cint, Cint, Cint, Cint, Ptr{Handle}), out_channels, kernel, R, padding, interp, out)
cfnet_layer_group_pool_create(mode, out) =
    ccall((:cfnet_layer_group_pool_create, libcfnet), Cint, (Cint, Ptr{Handle}), mode, out)
cfnet_layer_dft_projection_create(filters, R, interp, out) =
    ccall((:cfnet_layer_dft_projection_create, libcfnet), Cint, (Cint, Cint, Cint, Ptr{Handle}),
          filters, R, interp, out)
cfnet_layer_dft_magnitude_create(out) =
    ccall((:cfnet_layer_dft_magnitude_create, libcfnet), Cint, (Ptr{Handle},), out)
cfnet_layer_dense_create(out_features, out) =
    ccall((:cfnet_layer_dense_create, libcfnet), Cint, (Cint, Ptr{Handle}), out_features, out)
cfnet_layer_relu_create(out) = ccall((:cfnet_layer_relu_create, libcfnet), Cint, (Ptr{Handle},), out)
cfnet_layer_pool_create(mode, window, stride, out) =
    ccall((:cfnet_layer_pool_create, libcfnet), Cint, (Cint, Cint, Cint, Ptr{Handle}),
          mode, window, stride, out)
cfnet_layer_batch_norm_create(momentum, eps, out) =
    ccall((:cfnet_layer_batch_norm_create, libcfnet), Cint, (Cfloat, Cfloat, Ptr{Handle}),
          momentum, eps, out)
cfnet_layer_dropout_create(drop, out) =
    ccall((:cfnet_layer_dropout_create, libcfnet), Cint, (Cfloat, Ptr{Handle}), drop, out)
cfnet_layer_softmax_create(out) =
    ccall((:cfnet_layer_softmax_create, libcfnet), Cint, (Ptr{Handle},), out)
cfnet_layer_free(layer) = ccall((:cfnet_layer_free, libcfnet), Cvoid, (Handle,), layer)
cfnet_layer_kind_of(layer) = ccall((:cfnet_layer_kind_of, libcfnet), Cint, (Handle,), layer)
cfnet_layer_kind_name(kind) = ccall((:cfnet_layer_kind_name, libcfnet), Cstring, (Cint,), kind)
cfnet_layer_setup(layer, ndim, shape, seed) =
    ccall((:cfnet_layer_setup, libcfnet), Cint, (Handle, Cint, Ptr{Int64}, UInt64),
          layer, ndim, shape, seed)
cfnet_layer_input_shape(layer, ndim, shape) =
    ccall((:cfnet_layer_input_shape, libcfnet), Cint, (Handle, Ptr{Cint}, Ptr{Int64}),
          layer, ndim, shape)
cfnet_layer_output_shape(layer, ndim, shape) =
    ccall((:cfnet_layer_output_shape, libcfnet), Cint, (Handle, Ptr{Cint}, Ptr{Int64}),
          layer, ndim, shape)
cfnet_layer_forward(layer, x, y, mode) =
    ccall((:cfnet_layer_forward, libcfnet), Cint, (Handle, Handle, Handle, Cint), layer, x, y, mode)
cfnet_layer_backward(layer, x, y, dy, dx) =
    ccall((:cfnet_layer_backward, libcfnet), Cint, (Handle, Handle, Handle, Handle, Handle),
          layer, x, y, dy, dx)
cfnet_layer_param_count(layer) = ccall((:cfnet_layer_param_count, libcfnet), Cint, (Handle,), layer)
cfnet_layer_param(layer, i) = ccall((:cfnet_layer_param, libcfnet), Handle, (Handle, Cint), layer, i)
cfnet_layer_grad(layer, i) = ccall((:cfnet_layer_grad, libcfnet), Handle, (Handle, Cint), layer, i)
cfnet_layer_param_name(layer, i) =
    ccall((:cfnet_layer_param_name, libcfnet), Cstring, (Handle, Cint), layer, i)
cfnet_layer_state_count(layer) = ccall((:cfnet_layer_state_count, libcfnet), Cint, (Handle,), layer)
cfnet_layer_state(layer, i) = ccall((:cfnet_layer_state, libcfnet), Handle, (Handle, Cint), layer, i)
cfnet_layer_state_name(layer, i) =
    ccall((:cfnet_layer_state_name, libcfnet), Cstring, (Handle, Cint), layer, i)
cfnet_layer_zero_grad(layer) = ccall((:cfnet_layer_zero_grad, libcfnet), Cint, (Handle,), layer)

# Loss
cfnet_softmax_cross_entropy(logits, labels, n_labels, loss, grad) =
    ccall((:cfnet_softmax_cross_entropy, libcfnet), Cint,
          (Handle, Ptr{Int32}, Int64, Ptr{Cfloat}, Handle), logits, labels, n_labels, loss, grad)

# Networks
cfnet_network_create(channels, height, width, seed, out) =
    ccall((:cfnet_network_create, libcfnet), Cint, (Cint, Cint, Cint, UInt64, Ptr{Handle}),
          channels, height, width, seed, out)
cfnet_network_free(net) = ccall((:cfnet_network_free, libcfnet), Cvoid, (Handle,), net)
cfnet_network_append(net, layer) =
    ccall((:cfnet_network_append, libcfnet), Cint, (Handle, Handle), net, layer)
cfnet_network_layer_count(net) = ccall((:cfnet_network_layer_count, libcfnet), Cint, (Handle,), net)
cfnet_network_layer(net, i) = ccall((:cfnet_network_layer, libcfnet), Handle, (Handle, Cint), net, i)
cfnet_network_input_shape(net, ndim, shape) =
    ccall((:cfnet_network_input_shape, libcfnet), Cint, (Handle, Ptr{Cint}, Ptr{Int64}),
          net, ndim, shape)
cfnet_network_output_shape(net, ndim, shape) =
    ccall((:cfnet_network_output_shape, libcfnet), Cint, (Handle, Ptr{Cint}, Ptr{Int64}),
          net, ndim, shape)
cfnet_network_param_count(net) = ccall((:cfnet_network_param_count, libcfnet), Int64, (Handle,), net)
cfnet_network_memory_usage(net) =
    ccall((:cfnet_network_memory_usage, libcfnet), Csize_t, (Handle,), net)
cfnet_network_summary(net, buf, size, needed) =
    ccall((:cfnet_network_summary, libcfnet), Cint, (Handle, Ptr{UInt8}, Csize_t, Ptr{Csize_t}),
          net, buf, size, needed)
cfnet_network_forward(net, x, out, mode) =
    ccall((:cfnet_network_forward, libcfnet), Cint, (Handle, Handle, Handle, Cint), net, x, out, mode)
cfnet_network_backward(net, d_out) =
    ccall((:cfnet_network_backward, libcfnet), Cint, (Handle, Handle), net, d_out)
cfnet_network_zero_grad(net) = ccall((:cfnet_network_zero_grad, libcfnet), Cint, (Handle,), net)
cfnet_network_infer(net, x, out) =
    ccall((:cfnet_network_infer, libcfnet), Cint, (Handle, Handle, Handle), net, x, out)
cfnet_network_probabilities(net, x, probs) =
    ccall((:cfnet_network_probabilities, libcfnet), Cint, (Handle, Handle, Handle), net, x, probs)
cfnet_network_predict(net, x, labels, n) =
    ccall((:cfnet_network_predict, libcfnet), Cint, (Handle, Handle, Ptr{Int32}, Int64),
          net, x, labels, n)
cfnet_network_set_option(net, option, value) =
    ccall((:cfnet_network_set_option, libcfnet), Cint, (Handle, Cint, Cdouble), net, option, value)
cfnet_network_get_option(net, option, value) =
    ccall((:cfnet_network_get_option, libcfnet), Cint, (Handle, Cint, Ptr{Cdouble}),
          net, option, value)
cfnet_network_train_step(net, images, labels, n, loss) =
    ccall((:cfnet_network_train_step, libcfnet), Cint, (Handle, Handle, Ptr{Int32}, Int64, Ptr{Cfloat}),
          net, images, labels, n, loss)
cfnet_network_step_count(net) = ccall((:cfnet_network_step_count, libcfnet), Int64, (Handle,), net)
cfnet_network_evaluate(net, images, labels, n, batch, loss, accuracy) =
    ccall((:cfnet_network_evaluate, libcfnet), Cint,
          (Handle, Handle, Ptr{Int32}, Int64, Int64, Ptr{Cfloat}, Ptr{Cfloat}),
          net, images, labels, n, batch, loss, accuracy)
cfnet_network_invariance(net, x, angles, n_angles, max_rel_change) =
    ccall((:cfnet_network_invariance, libcfnet), Cint,
          (Handle, Handle, Ptr{Cdouble}, Cint, Ptr{Cdouble}), net, x, angles, n_angles, max_rel_change)
cfnet_network_invariance_ex(net, x, angles, n_angles, flags, max_rel_change) =
    ccall((:cfnet_network_invariance_ex, libcfnet), Cint,
          (Handle, Handle, Ptr{Cdouble}, Cint, Cuint, Ptr{Cdouble}),
          net, x, angles, n_angles, flags, max_rel_change)

# Image helpers
cfnet_image_rotate(inp, out, degrees) =
    ccall((:cfnet_image_rotate, libcfnet), Cint, (Handle, Handle, Cdouble), inp, out, degrees)
cfnet_image_shift(inp, out, dy, dx) =
    ccall((:cfnet_image_shift, libcfnet), Cint, (Handle, Handle, Cint, Cint), inp, out, dy, dx)
cfnet_image_normalize(images, low, high) =
    ccall((:cfnet_image_normalize, libcfnet), Cint, (Handle, Cdouble, Cdouble), images, low, high)
cfnet_network_prepare_image(net, image, flags, batch, index) =
    ccall((:cfnet_network_prepare_image, libcfnet), Cint, (Handle, Handle, Cint, Handle, Int64),
          net, image, flags, batch, index)

# Saving and loading
cfnet_network_save(net, path, flags) =
    ccall((:cfnet_network_save, libcfnet), Cint, (Handle, Cstring, Cuint), net, path, flags)
cfnet_remove_stale_temporaries(path, removed) =
    ccall((:cfnet_remove_stale_temporaries, libcfnet), Cint, (Cstring, Ptr{Csize_t}), path, removed)
cfnet_network_save_buffer(net, flags, buffer, size) =
    ccall((:cfnet_network_save_buffer, libcfnet), Cint, (Handle, Cuint, Ptr{Ptr{Cvoid}}, Ptr{Csize_t}),
          net, flags, buffer, size)
cfnet_network_load(path, out) =
    ccall((:cfnet_network_load, libcfnet), Cint, (Cstring, Ptr{Handle}), path, out)
cfnet_network_load_buffer(buffer, size, out) =
    ccall((:cfnet_network_load_buffer, libcfnet), Cint, (Ptr{Cvoid}, Csize_t, Ptr{Handle}),
          buffer, size, out)
cfnet_free(p) = ccall((:cfnet_free, libcfnet), Cvoid, (Ptr{Cvoid},), p)

# ONNX export (docs/deploy.md)
cfnet_network_export_onnx(net, path, flags) =
    ccall((:cfnet_network_export_onnx, libcfnet), Cint, (Handle, Cstring, Cuint), net, path, flags)
cfnet_network_export_onnx_buffer(net, flags, buffer, size) =
    ccall((:cfnet_network_export_onnx_buffer, libcfnet), Cint,
          (Handle, Cuint, Ptr{Ptr{Cvoid}}, Ptr{Csize_t}), net, flags, buffer, size)

# Contexts: allocation hooks (C function pointers, e.g. from @cfunction) and loader limits
cfnet_context_create(out) = ccall((:cfnet_context_create, libcfnet), Cint, (Ptr{Handle},), out)
cfnet_context_free(ctx) = ccall((:cfnet_context_free, libcfnet), Cvoid, (Handle,), ctx)
cfnet_context_set_allocator(ctx, alloc, free_fn, opaque) =
    ccall((:cfnet_context_set_allocator, libcfnet), Cint, (Handle, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}),
          ctx, alloc, free_fn, opaque)
cfnet_context_set_limit(ctx, limit, value) =
    ccall((:cfnet_context_set_limit, libcfnet), Cint, (Handle, Cint, UInt64), ctx, limit, value)
cfnet_context_get_limit(ctx, limit, value) =
    ccall((:cfnet_context_get_limit, libcfnet), Cint, (Handle, Cint, Ptr{UInt64}), ctx, limit, value)
cfnet_network_create_in(ctx, channels, height, width, seed, out) =
    ccall((:cfnet_network_create_in, libcfnet), Cint, (Handle, Cint, Cint, Cint, UInt64, Ptr{Handle}),
          ctx, channels, height, width, seed, out)
cfnet_network_load_in(ctx, path, out) =
    ccall((:cfnet_network_load_in, libcfnet), Cint, (Handle, Cstring, Ptr{Handle}), ctx, path, out)
cfnet_network_load_buffer_in(ctx, buffer, size, out) =
    ccall((:cfnet_network_load_buffer_in, libcfnet), Cint, (Handle, Ptr{Cvoid}, Csize_t, Ptr{Handle}),
          ctx, buffer, size, out)

# Preset classifiers
cfnet_family_name(family) = ccall((:cfnet_family_name, libcfnet), Cstring, (Cint,), family)
cfnet_family_parse(name, out) =
    ccall((:cfnet_family_parse, libcfnet), Cint, (Cstring, Ptr{Cint}), name, out)
cfnet_network_create_classifier(family, channels, size, classes, width, seed, out) =
    ccall((:cfnet_network_create_classifier, libcfnet), Cint,
          (Cint, Cint, Cint, Cint, Cint, UInt64, Ptr{Handle}),
          family, channels, size, classes, width, seed, out)
cfnet_network_multiply_adds(net) =
    ccall((:cfnet_network_multiply_adds, libcfnet), Int64, (Handle,), net)
cfnet_network_init_normal(net, sd, seed) =
    ccall((:cfnet_network_init_normal, libcfnet), Cint, (Handle, Cdouble, UInt64), net, sd, seed)

# User metadata
cfnet_network_set_metadata(net, key, value) =
    ccall((:cfnet_network_set_metadata, libcfnet), Cint, (Handle, Cstring, Ptr{UInt8}),
          net, key, value)
cfnet_network_get_metadata(net, key, value) =
    ccall((:cfnet_network_get_metadata, libcfnet), Cint, (Handle, Cstring, Ptr{Ptr{UInt8}}),
          net, key, value)
cfnet_network_metadata_count(net) =
    ccall((:cfnet_network_metadata_count, libcfnet), Cint, (Handle,), net)
cfnet_network_metadata_at(net, i, key, value) =
    ccall((:cfnet_network_metadata_at, libcfnet), Cint,
          (Handle, Cint, Ptr{Ptr{UInt8}}, Ptr{Ptr{UInt8}}), net, i, key, value)

# Training epochs (progress: a C function pointer, e.g. from @cfunction, or C_NULL)
cfnet_network_train_epoch(net, images, labels, batch, order, count, progress, user, mean_loss,
                          accuracy) =
    ccall((:cfnet_network_train_epoch, libcfnet), Cint,
          (Handle, Handle, Ptr{Int32}, Int64, Ptr{Int64}, Int64, Ptr{Cvoid}, Ptr{Cvoid},
           Ptr{Cdouble}, Ptr{Cdouble}),
          net, images, labels, batch, order, count, progress, user, mean_loss, accuracy)

# Introspection
cfnet_layer_kind_count() = ccall((:cfnet_layer_kind_count, libcfnet), Cint, ())
cfnet_option_name(option) = ccall((:cfnet_option_name, libcfnet), Cstring, (Cint,), option)
cfnet_option_bounds(option, min, max) =
    ccall((:cfnet_option_bounds, libcfnet), Cint, (Cint, Ptr{Cdouble}, Ptr{Cdouble}), option, min, max)
cfnet_option_default(option, value) =
    ccall((:cfnet_option_default, libcfnet), Cint, (Cint, Ptr{Cdouble}), option, value)
cfnet_option_is_integer(option) =
    ccall((:cfnet_option_is_integer, libcfnet), Cint, (Cint,), option)
# Data-parallel training (0.2): `fn` is a @cfunction(f, Cint, (Ptr{Cvoid}, Cint, Ptr{Cvoid}, Int64))
cfnet_network_set_sum_hook(net, fn, user) =
    ccall((:cfnet_network_set_sum_hook, libcfnet), Cint, (Handle, Ptr{Cvoid}, Ptr{Cvoid}), net, fn, user)
cfnet_network_set_batch_position(net, offset, global_n) =
    ccall((:cfnet_network_set_batch_position, libcfnet), Cint, (Handle, Int64, Int64), net, offset, global_n)
cfnet_network_gradients(net, out, count) =
    ccall((:cfnet_network_gradients, libcfnet), Cint, (Handle, Ptr{Cfloat}, Int64), net, out, count)
# Interrupting inference (0.2): `fn` is a @cfunction(f, Cint, (Ptr{Cvoid}, Int64, Int64)) that
# catches its exceptions, or C_NULL
cfnet_network_set_interrupt(net, fn, user) =
    ccall((:cfnet_network_set_interrupt, libcfnet), Cint, (Handle, Ptr{Cvoid}, Ptr{Cvoid}), net, fn, user)

# ---------------------------------------------------------------------------------------------
# Constants (values pinned by the header)
# ---------------------------------------------------------------------------------------------

const PADDING_VALID = 0
const PADDING_SAME = 1
const INTERP_NEAREST = 0
const INTERP_BILINEAR = 1
const INTERP_STEERABLE = 2
const POOL_MAX = 0
const POOL_MEAN = 1
const MODE_INFERENCE = 0
const MODE_TRAINING = 1
const OPTIONS = Dict(:optimizer => 1, :learning_rate => 2, :beta1 => 3, :beta2 => 4,
                     :epsilon => 5, :momentum => 6, :weight_decay => 7, :lr_decay_rate => 8,
                     :lr_decay_steps => 9, :threads => 10, :aug_rotation => 11,
                     :aug_jitter => 12, :aug_flip => 13)
const OPTIMIZER_ADAM = 0
const OPTIMIZER_SGD = 1
const AUG_ROTATION_NONE = 0
const AUG_ROTATION_QUARTER = 1
const AUG_ROTATION_ANY = 2
const INVARIANCE_REFLECT = 0x00000001
const SAVE_OPTIMIZER = 0x00000001
const SAVE_ALLOW_NONFINITE = 0x00000002
const ONNX_OPSET = 13
const ONNX_PROBABILITIES = 0x00000001
const PREPARE_PAD = 1
const LIMIT_HEADER_BYTES = 1
const LIMIT_TENSOR_BYTES = 2
const MAX_DIMS = 5
const FAMILY_CFNET = 1
const FAMILY_CNET = 2
const FAMILY_GCNN = 3
const FAMILY_GCNN_DFT = 4
const FAMILY_CNN = 5
const FAMILY_GCNN_P4M = 6

# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

"""A libcfnet call failed: `status` is the cfnet_status code, `message` cfnet_last_error()."""
struct CFNetError <: Exception
    status::Int
    message::String
end

Base.showerror(io::IO, e::CFNetError) =
    print(io, "CFNetError: ", e.message, " (", unsafe_string(cfnet_status_string(e.status)), ")")

function check(status::Integer)
    status == 0 && return nothing
    throw(CFNetError(status, unsafe_string(cfnet_last_error())))
end

version() = unsafe_string(cfnet_version_string())

# ---------------------------------------------------------------------------------------------
# Tensors over Julia arrays (no copy; sizes reversed, see the top of the file)
# ---------------------------------------------------------------------------------------------

"""A cfnet_tensor viewing a Julia Float32 array. The array is kept alive by the Tensor."""
mutable struct Tensor
    handle::Handle
    array::Array{Float32}
    function Tensor(a::Array{Float32})
        1 <= ndims(a) <= MAX_DIMS || throw(ArgumentError("tensors have 1..5 dimensions"))
        shape = Int64[reverse(size(a))...]
        out = Ref{Handle}(C_NULL)
        GC.@preserve a check(cfnet_tensor_wrap(pointer(a), length(shape), shape, out))
        t = new(out[], a)
        finalizer(t) do t
            t.handle == C_NULL || cfnet_tensor_free(t.handle)
            t.handle = C_NULL
        end
        return t
    end
end

"""`a` as an Array{Float32}, the type libcfnet computes in (`a` itself when it is one). A finite
value Float32 cannot hold (a Float64 beyond +-3.4e38) throws CFNetError(-1, ...)
(CFNET_E_INVALID_ARGUMENT) naming the calling C function `fn`, the value and its index, as the
Python binding does: the conversion would make it an infinity, which the library would report as
one (or compute with). Only element types that can hold such a value (wider than Float32:
Float64, BigFloat, BigInt, 128-bit integers) are scanned, as Python scans only float64 and wider.
The one check of every conversion (Tensor)."""
to_float32(a::Array{Float32}, fn::AbstractString = "Tensor") = a
function to_float32(a::AbstractArray{T}, fn::AbstractString = "Tensor") where {T<:Real}
    out = Array{Float32}(a)
    _fits_float32(T) && return out  # Bool, Float16/32, integers to 64 bits: no value beyond
    if any(isinf, out)
        for (k, v) in enumerate(a)  # the order of `out`'s elements
            if isinf(out[k]) && isfinite(v)
                idx = Tuple(CartesianIndices(a)[k])
                throw(CFNetError(-1, "$(fn): the value $(v) at index $(idx) is beyond the " *
                                     "Float32 range (+-3.4028235e38) in which libcfnet " *
                                     "computes; scale the values first"))
            end
        end
    end
    return out
end

_fits_float32(::Type{T}) where {T} =
    T <: Union{Bool, Float16, Float32, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64}

Tensor(a::AbstractArray{<:Real}) = Tensor(to_float32(a))
Tensor(a::AbstractArray{<:Real}, fn::AbstractString) = Tensor(to_float32(a, fn))

# `fn`: the C function the arrays are for, which a conversion error names (to_float32).
function with_tensors(f, fn::AbstractString, arrays...)
    ts = map(a -> Tensor(a, fn), arrays)
    try
        GC.@preserve ts f(map(t -> t.handle, ts)...)
    finally
        foreach(finalize, ts)
    end
end

function read_shape(fn, handle)
    nd = Ref{Cint}(0)
    shape = zeros(Int64, MAX_DIMS)
    check(fn(handle, nd, shape))
    return Tuple(shape[1:nd[]])
end

# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------

"""A layer not yet given to a network. `append!(net, layer)` passes ownership to the network
(also when it fails); the Layer is then empty and must not be used again."""
mutable struct Layer
    handle::Handle
    function Layer(create::Function)
        out = Ref{Handle}(C_NULL)
        check(create(out))
        l = new(out[])
        finalizer(l) do l
            l.handle == C_NULL || cfnet_layer_free(l.handle)
            l.handle = C_NULL
        end
        return l
    end
end

conv2d(out_channels, kernel; stride = 1, padding = PADDING_SAME) =
    Layer(o -> cfnet_layer_conv2d_create(out_channels, kernel, stride, padding, o))
conic_conv(out_channels, kernel, R; padding = PADDING_SAME, interp = INTERP_NEAREST) =
    Layer(o -> cfnet_layer_conic_conv_create(out_channels, kernel, R, padding, interp, o))
p4_lift(out_channels, kernel; padding = PADDING_SAME) =
    Layer(o -> cfnet_layer_p4_lift_create(out_channels, kernel, padding, o))
p4_conv(out_channels, kernel; padding = PADDING_SAME) =
    Layer(o -> cfnet_layer_p4_conv_create(out_channels, kernel, padding, o))
p4m_lift(out_channels, kernel; padding = PADDING_SAME) =
    Layer(o -> cfnet_layer_p4m_lift_create(out_channels, kernel, padding, o))
p4m_conv(out_channels, kernel; padding = PADDING_SAME) =
    Layer(o -> cfnet_layer_p4m_conv_create(out_channels, kernel, padding, o))
p4m_dft_magnitude() = Layer(o -> cfnet_layer_p4m_dft_magnitude_create(o))
conic_conv_mirror(out_channels, kernel, R; padding = PADDING_SAME, interp = INTERP_NEAREST) =
    Layer(o -> cfnet_layer_conic_conv_mirror_create(out_channels, kernel, R, padding, interp, o))
group_pool(mode = POOL_MAX) = Layer(o -> cfnet_layer_group_pool_create(mode, o))
dft_projection(filters; R = 1, interp = INTERP_NEAREST) =
    Layer(o -> cfnet_layer_dft_projection_create(filters, R, interp, o))
dft_magnitude() = Layer(o -> cfnet_layer_dft_magnitude_create(o))
dense(out_features) = Layer(o -> cfnet_layer_dense_create(out_features, o))
relu() = Layer(o -> cfnet_layer_relu_create(o))
pool(mode = POOL_MAX; window = 0, stride = 0) =
    Layer(o -> cfnet_layer_pool_create(mode, window, stride, o))
batch_norm(; momentum = 0.1f0, eps = 1.0f-5) =
    Layer(o -> cfnet_layer_batch_norm_create(momentum, eps, o))
dropout(drop) = Layer(o -> cfnet_layer_dropout_create(drop, o))
softmax() = Layer(o -> cfnet_layer_softmax_create(o))

# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------

"""A cfnet_network for inputs of C channels, H x W pixels; freed by its finalizer (or
`close`)."""
mutable struct Network
    handle::Handle
    function Network(handle::Handle)
        n = new(handle)
        finalizer(close, n)
        return n
    end
end

function Network(channels::Integer, height::Integer, width::Integer; seed::Integer = 0)
    out = Ref{Handle}(C_NULL)
    check(cfnet_network_create(channels, height, width, UInt64(seed), out))
    return Network(out[])
end

function Base.close(net::Network)
    net.handle == C_NULL || cfnet_network_free(net.handle)
    net.handle = C_NULL
    return nothing
end

function handle(net::Network)
    net.handle == C_NULL && throw(ArgumentError("network is closed"))
    return net.handle
end

"""Appends `layer`; the network owns it from now on, even if this throws."""
function Base.append!(net::Network, layer::Layer)
    h = handle(net)
    layer.handle == C_NULL && throw(ArgumentError("layer already given to a network"))
    lh = layer.handle
    layer.handle = C_NULL
    check(cfnet_network_append(h, lh))
    return net
end

Base.length(net::Network) = Int(cfnet_network_layer_count(handle(net)))
input_shape(net::Network) = read_shape(cfnet_network_input_shape, handle(net))
"""Per-sample output shape in C order (e.g. (K,) for K classes)."""
output_shape(net::Network) = read_shape(cfnet_network_output_shape, handle(net))
param_count(net::Network) = cfnet_network_param_count(handle(net))
"""The user metadata as a Dict{String,String} (a copy)."""
function metadata(net::Network)
    h = handle(net)
    d = Dict{String,String}()
    for i in 0:cfnet_network_metadata_count(h)-1
        k = Ref{Ptr{UInt8}}(C_NULL)
        v = Ref{Ptr{UInt8}}(C_NULL)
        check(cfnet_network_metadata_at(h, i, k, v))
        d[unsafe_string(k[])] = unsafe_string(v[])
    end
    return d
end

"""Sets metadata `key` to `value` (`nothing` removes it); saved with the model."""
function set_metadata!(net::Network, key::AbstractString, value::Union{AbstractString,Nothing})
    if value === nothing
        check(cfnet_network_set_metadata(handle(net), key, C_NULL))
    else
        v = String(value)
        GC.@preserve v check(cfnet_network_set_metadata(handle(net), key, pointer(v)))
    end
    return net
end

"""Nominal multiply-adds of one sample's forward pass (2 x this = FLOP)."""
multiply_adds(net::Network) = cfnet_network_multiply_adds(handle(net))

"""Redraws every weight of `net` from N(0, sd^2) whatever the fan-in (the original CFNet code's
initialisation, the CFNet preset's); biases and batch norm stay. Returns `net`."""
function init_normal!(net::Network, sd::Real = 0.1, seed::Integer = 0)
    check(cfnet_network_init_normal(handle(net), Float64(sd), UInt64(seed)))
    return net
end

"""The preset classifier of `family` ("cfnet", "cnet", "gcnn", "gcnn-dft", "cnn", "gcnn-p4m", or the
CFNET_FAMILY_ value) for `channels` x `size` x `size` images (size 16 to 512) and `classes`
classes; `width` filters per layer (0: 16). See docs/guide.md."""
function classifier(family, channels::Integer, size::Integer, classes::Integer;
                    width::Integer = 0, seed::Integer = 0)
    fam = Ref{Cint}(0)
    if family isa AbstractString || family isa Symbol
        check(cfnet_family_parse(String(family), fam))
    else
        fam[] = family
    end
    out = Ref{Handle}(C_NULL)
    check(cfnet_network_create_classifier(fam[], channels, size, classes, width, UInt64(seed), out))
    return Network(out[])
end

function summary_string(net::Network)
    needed = Ref{Csize_t}(0)
    cfnet_network_summary(handle(net), C_NULL, 0, needed)  # CFNET_E_LIMIT, needed is set
    buf = zeros(UInt8, needed[] + 1)
    check(cfnet_network_summary(handle(net), buf, length(buf), needed))
    return String(buf[1:needed[]])
end

function set_option!(net::Network, option::Symbol, value::Real)
    check(cfnet_network_set_option(handle(net), OPTIONS[option], Float64(value)))
    return net
end

function get_option(net::Network, option::Symbol)
    v = Ref{Cdouble}(0)
    check(cfnet_network_get_option(handle(net), OPTIONS[option], v))
    return v[]
end

"""(min, max): the closed range set_option! accepts for an option (integers only where
cfnet_option_is_integer says so); from the library's option table."""
function option_bounds(option::Symbol)
    lo = Ref{Cdouble}(0)
    hi = Ref{Cdouble}(0)
    check(cfnet_option_bounds(OPTIONS[option], lo, hi))
    return lo[], hi[]
end

"""The value of an option in a new network."""
function option_default(option::Symbol)
    v = Ref{Cdouble}(0)
    check(cfnet_option_default(OPTIONS[option], v))
    return v[]
end

nsamples(x::AbstractArray) = size(x, ndims(x))

"""True for no images (N = 0) of the network's input size: the caller returns an empty result
(libcfnet wraps no tensor with an empty axis), as the Python binding does. No images of another
size throw CFNetError(-3, ...) (CFNET_E_SHAPE_MISMATCH), as images of that size would."""
function _empty_batch(net::Network, x::AbstractArray, what::AbstractString)
    nsamples(x) == 0 || return false
    want = reverse(input_shape(net))
    size(x)[1:3] == want && return true
    throw(CFNetError(-3, "$(what): input is $(join(reverse(size(x)), "x")), expected N x " *
                         "$(join(reverse(want), "x"))"))
end

"""For calls that have no result for no images (evaluate, training): an ArgumentError saying
there are none, as the Python binding's ValueError does."""
function _refuse_no_images(x::AbstractArray, what::AbstractString, why::AbstractString)
    nsamples(x) == 0 && throw(ArgumentError("$(what): no images (size $(size(x))): $(why)"))
    return nothing
end

"""Network output for images `x` of size (W, H, C, N): an array of the reversed output shape
plus N, e.g. (K, N); (K, 0) for no images. Outputs may be non-finite when the parameters are
(too large, diverged): `probabilities` and `predict` throw for them, `infer` returns them."""
function infer(net::Network, x::AbstractArray{<:Real,4})
    out = zeros(Float32, reverse(output_shape(net))..., nsamples(x))
    _empty_batch(net, x, "network_infer") && return out
    with_tensors("network_infer", x, out) do tx, tout
        check(cfnet_network_infer(handle(net), tx, tout))
    end
    return out
end

function probabilities(net::Network, x::AbstractArray{<:Real,4})
    probs = zeros(Float32, prod(output_shape(net)), nsamples(x))
    _empty_batch(net, x, "network_probabilities") && return probs
    with_tensors("network_probabilities", x, probs) do tx, tp
        check(cfnet_network_probabilities(handle(net), tx, tp))
    end
    return probs
end

"""Images prepared for a model trained by the `cfnet` command exactly as `cfnet predict` prepares
them (cfnet_network_prepare_image, from the model's metadata: the normalisation over the whole
image, then the centre S x S crop or zero pad): a vector of images of size (W, H, C), the values
as stored, gives (S, S, C, N) Float32 for `probabilities` (no images: (S, S, C, 0)). `pad = true`
zero-pads images smaller than S even when the model's "pad" is 0 (`predict --pad`)."""
function prepare(net::Network, images::AbstractVector; pad::Bool=false)
    c, s, _ = input_shape(net)
    out = zeros(Float32, s, s, c, length(images))
    isempty(images) && return out  # (S, S, C, 0): libcfnet wraps no tensor with an empty axis
    with_tensors("network_prepare_image", out) do tout
        for (i, im) in enumerate(images)
            with_tensors("network_prepare_image", im) do ti
                check(cfnet_network_prepare_image(handle(net), ti, pad ? PREPARE_PAD : 0, tout,
                                                  i - 1))
            end
        end
    end
    return out
end

"""One image (W, H, C) prepared as above: (S, S, C)."""
prepare(net::Network, image::AbstractArray{<:Real,3}; pad::Bool=false) =
    dropdims(prepare(net, [image]; pad=pad); dims=4)

"""Predicted classes (0-based, as in C) for each image (none for no images)."""
function predict(net::Network, x::AbstractArray{<:Real,4})
    labels = zeros(Int32, nsamples(x))
    _empty_batch(net, x, "network_predict") && return labels
    with_tensors("network_predict", x) do tx
        check(cfnet_network_predict(handle(net), tx, labels, length(labels)))
    end
    return labels
end

"""One optimisation step; labels are 0-based class indices. Returns the batch loss."""
function train_step!(net::Network, x::AbstractArray{<:Real,4}, labels::AbstractVector{<:Integer})
    _refuse_no_images(x, "network_train_step", "there is nothing to train on")
    lab = Vector{Int32}(labels)
    loss = Ref{Cfloat}(0)
    with_tensors("network_train_step", x) do tx
        check(cfnet_network_train_step(handle(net), tx, lab, length(lab), loss))
    end
    return loss[]
end

# The C progress callback: `user` points to a Vector{Any} holding the Julia function given to
# train_epoch! and, after it threw, the exception. An exception must not unwind through the C
# library's frames: it is kept, the epoch is stopped (return 1), and train_epoch! throws it.
function _progress_trampoline(user::Ptr{Cvoid}, step::Int64, steps::Int64, loss::Cdouble,
                              accuracy::Cdouble)::Cint
    box = unsafe_pointer_to_objref(user)::Vector{Any}
    try
        return box[1](step, steps, loss, accuracy) === true ? Cint(1) : Cint(0)
    catch e
        box[2] = e
        return Cint(1)
    end
end

"""One epoch (cfnet_network_train_epoch) over images `x` (W, H, C, N) and `labels` (0-based):
batches of `batch`, in the order of `order` (0-based sample indices, repetitions allowed) or of
a permutation drawn from the network's generator when `order` is `nothing`. `progress(step,
steps, loss, accuracy)` is called after every step; returning `true` stops the epoch after that
step (a CFNetError with status -11, CFNET_E_CANCELLED, is thrown; the steps done are kept). An
exception thrown by `progress` also stops the epoch after that step and is thrown again by
train_epoch! (never through the C library's frames). Returns (mean loss, training accuracy)."""
function train_epoch!(net::Network, x::AbstractArray{<:Real,4}, labels::AbstractVector{<:Integer};
                      batch::Integer = 50, order = nothing, progress = nothing)
    _refuse_no_images(x, "network_train_epoch", "there is nothing to train on")
    lab = Vector{Int32}(labels)
    ord = order === nothing ? Int64[] : Vector{Int64}(order)
    mean = Ref{Cdouble}(0)
    acc = Ref{Cdouble}(0)
    cb = progress === nothing ? C_NULL :
         @cfunction(_progress_trampoline, Cint, (Ptr{Cvoid}, Int64, Int64, Cdouble, Cdouble))
    box = Any[progress, nothing]
    status = GC.@preserve box ord with_tensors("network_train_epoch", x) do tx
        user = progress === nothing ? C_NULL : pointer_from_objref(box)
        cfnet_network_train_epoch(handle(net), tx, lab, batch,
                                  order === nothing ? C_NULL : pointer(ord), length(ord),
                                  cb, user, mean, acc)
    end
    box[2] === nothing || throw(box[2])  # thrown by `progress`: the epoch stopped after that step
    check(status)
    return mean[], acc[]
end

"""(mean loss, accuracy) in inference mode; no images throw an ArgumentError (undefined)."""
function evaluate(net::Network, x::AbstractArray{<:Real,4}, labels::AbstractVector{<:Integer};
                  batch::Integer = 0)
    _refuse_no_images(x, "network_evaluate",
                      "the mean loss and accuracy of no images are undefined")
    lab = Vector{Int32}(labels)
    loss, acc = Ref{Cfloat}(0), Ref{Cfloat}(0)
    with_tensors("network_evaluate", x) do tx
        check(cfnet_network_evaluate(handle(net), tx, lab, length(lab), batch, loss, acc))
    end
    return loss[], acc[]
end

"""Largest relative output change under rotations of `x` by `angles` (degrees); with
`reflect = true` also under the mirrored `x` (left-right flip) and its rotations."""
function invariance(net::Network, x::AbstractArray{<:Real,4}; angles = [90.0, 180.0, 270.0],
                    reflect::Bool = false)
    a = Vector{Cdouble}(angles)
    change = Ref{Cdouble}(0)
    with_tensors("network_invariance", x) do tx
        flags = reflect ? INVARIANCE_REFLECT : 0x00000000
        check(cfnet_network_invariance_ex(handle(net), tx, a, length(a), flags, change))
    end
    return change[]
end

function save(net::Network, path::AbstractString; optimizer::Bool = false)
    check(cfnet_network_save(handle(net), path, optimizer ? SAVE_OPTIMIZER : 0x0))
    return path
end

"""Removes the temporary files that saves to `path` of processes killed meanwhile left on this
host (`path.tmp.PID.HOST` of a process that no longer exists, not locked by a live writer);
returns how many. A link at `path` is not followed: a save replaces it and writes beside it."""
function remove_stale_temporaries(path::AbstractString)
    removed = Ref{Csize_t}(0)
    check(cfnet_remove_stale_temporaries(path, removed))
    return Int(removed[])
end

"""Writes the network as an ONNX model (opset 13) computing what `infer` computes, or the class
probabilities with `probabilities = true`; see docs/deploy.md."""
function export_onnx(net::Network, path::AbstractString; probabilities::Bool = false)
    check(cfnet_network_export_onnx(handle(net), path, probabilities ? ONNX_PROBABILITIES : 0x0))
    return path
end

function load_network(path::AbstractString)
    out = Ref{Handle}(C_NULL)
    check(cfnet_network_load(path, out))
    return Network(out[])
end

end # module
