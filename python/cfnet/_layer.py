"""Layers: the cfnet_layer handle and one create function per layer kind."""
import collections
import ctypes
import functools
import weakref

import numpy as np

from . import _lib
from ._enums import UINT64, Interp, LayerKind, Padding, PoolMode, to_enum, to_int
from ._errors import StateError
from ._tensor import (Borrow, MAX_DIMS, _shape_array, as_float32, handle_shape, view,
                      warn_nonfinite)
from ._handle import Handle


def _layer_call(method):
    """Runs a Layer method inside ``Layer._using``: a close() of the layer or of its network
    meanwhile (another thread) frees the memory only after the call."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._using():
            return method(self, *args, **kwargs)
    return wrapper


class Layer(Handle):
    """A cfnet_layer handle. Create one with the functions of this module (``conic_conv``,
    ``dense``, ...), then either use it on its own (``setup``, ``forward``, ``backward``) or
    hand it to ``Network.append``.

    Ownership:

    - A free-standing layer is freed by ``close()``, at the end of a ``with`` block, or when the
      object is garbage-collected.
    - ``Network.append`` passes the layer to the network, also when it fails: on success the
      object becomes a view of the network's layer (``network`` is set; it keeps the network
      alive and is valid only while the network is open); on failure it is *consumed*
      (``consumed`` is True, its handle is gone, every further use raises ValueError).
    - A layer owned by a network is never freed by Python; closing the network invalidates it.

    ``params``, ``grads`` and ``state`` are numpy views of the library's tensors: writing to them
    changes the layer. They keep the Layer (and its network) alive, and stay valid after the
    layer or its network is closed (the memory is freed when the last view goes);
    ``setup`` and ``Network.append``, which replace the tensors, are refused (StateError)
    while such a view is alive.
    """

    _copy_hint = " (copy its arrays instead: {k: v.copy() for k, v in layer.params.items()})"

    def __init__(self, handle, network=None):
        # Internal: wrap a handle. Use the create functions below or Network.layers instead.
        self._handle = handle
        self._network = network
        self._consumed = False
        self._finalizer = None if network is not None else weakref.finalize(
            self, _lib.free_layer, handle)

    # ---- ownership ----

    def _closed_error(self):
        if self._consumed:
            return ValueError("this layer was consumed by a failed Network.append")
        if self._network is not None:
            return ValueError("the network that owned this layer was closed")
        return ValueError("operation on a closed layer")

    @property
    def network(self):
        """The Network that owns this layer, or None for a free-standing layer."""
        return self._network

    @property
    def consumed(self):
        """True once a failed Network.append has freed the layer."""
        return self._consumed

    def close(self):
        """Frees a free-standing layer (idempotent). For a layer owned by a network this only
        drops the Python handle; the network keeps the layer."""
        if self._handle is None:
            return
        self._handle = None
        self._release()

    def _check_no_views(self, what):
        """StateError if numpy views of the tensors that ``what`` replaces are alive."""
        n = len(self._views or ())
        if n:
            raise StateError(-8, "%s: %d numpy view(s) of this layer's parameters or state are "
                             "alive, and this call would free their memory; delete them first "
                             "(keep a .copy() if the values are needed)" % (what, n))

    def _give_to(self, network):
        """Called by Network.append before the C call: from now on Python never frees it."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
            _lib._count("layer", -1)  # the network's count covers it now

    def _adopted(self, network):
        self._network = network

    def _consume(self):
        self._handle = None
        self._consumed = True

    def _invalidate(self):
        self._handle = None

    # ---- description ----

    @property
    @_layer_call
    def kind(self):
        """The layer's LayerKind."""
        return LayerKind(_lib.load().cfnet_layer_kind_of(self._h()))

    @property
    @_layer_call
    def kind_name(self):
        """The library's name of the layer's kind, e.g. "conic_conv"."""
        lib = _lib.load()
        return lib.cfnet_layer_kind_name(lib.cfnet_layer_kind_of(self._h())).decode()

    @property
    @_layer_call
    def input_shape(self):
        """Per-sample input shape (StateError before setup)."""
        return handle_shape(_lib.load(), "cfnet_layer_input_shape", self._h())

    @property
    @_layer_call
    def output_shape(self):
        """Per-sample output shape (StateError before setup)."""
        return handle_shape(_lib.load(), "cfnet_layer_output_shape", self._h())

    def __repr__(self):
        if self._handle is None:
            state = "consumed" if self._consumed else "closed"
            return "<cfnet.Layer (%s)>" % state
        try:
            shapes = " %s -> %s" % (self.input_shape, self.output_shape)
        except StateError:
            shapes = " (not set up)"
        owner = " in a network" if self._network is not None else ""
        return "<cfnet.Layer %s%s%s>" % (self.kind_name, shapes, owner)

    # ---- use ----

    @_layer_call
    def setup(self, input_shape, seed=0):
        """Sets the layer up for the per-sample ``input_shape`` (no batch axis); allocates and
        initialises the parameters from ``seed``. Returns the output shape. Replaces the
        parameter tensors, so it is refused (StateError) while a numpy view of them
        (``params``, ``grads``, ``state``) is alive, and for a layer owned by a network."""
        h = self._h()
        if self._network is not None:
            raise StateError(-8, "layer_setup: this layer belongs to a network and must not be "
                             "set up again")
        self._check_no_views("layer_setup")
        shape, nd = _shape_array(input_shape)
        _lib.load().call("cfnet_layer_setup", h, nd, shape, to_int(seed, "seed", UINT64))
        return self.output_shape

    def _using(self):
        """_in_call of the object that frees this layer's memory: the network that owns it,
        else the layer itself."""
        return (self._network if self._network is not None else self)._in_call()

    def forward(self, x, training=False):
        """y = layer(x) for x of shape ``(N,) + input_shape``; returns a new array. Outputs
        that are not finite for a finite input (parameters too large, diverged or edited) are
        returned with a RuntimeWarning naming the first such image, as Network.infer and
        forward do (a NaN or an infinity in x is computed with, without a warning)."""
        with self._using():
            return self._forward(x, training)

    def _forward(self, x, training):
        h = self._h()
        x = as_float32(x, "layer input", fn="layer_forward")
        y = np.empty((x.shape[0] if x.ndim else 0,) + self.output_shape, dtype=np.float32)
        with Borrow(x) as tx, Borrow(y) as ty:
            _lib.load().call("cfnet_layer_forward", h, tx, ty, 1 if training else 0)
        warn_nonfinite(y, "layer_forward", inputs=x)  # as Network.infer and forward do
        return y

    def backward(self, x, y, dy, need_dx=True):
        """Backward pass of the most recent forward (same x and y) with output gradient dy.
        Accumulates the parameter gradients (``grads``) and returns dx (None if not
        ``need_dx``)."""
        with self._using():
            return self._backward(x, y, dy, need_dx)

    def _backward(self, x, y, dy, need_dx):
        h = self._h()
        x = as_float32(x, "layer input", fn="layer_backward")
        y = as_float32(y, "layer output", fn="layer_backward")
        dy = as_float32(dy, "output gradient", fn="layer_backward")
        dx = np.empty(x.shape, dtype=np.float32) if need_dx else None
        with Borrow(x) as tx, Borrow(y) as ty, Borrow(dy) as tdy:
            if dx is None:
                _lib.load().call("cfnet_layer_backward", h, tx, ty, tdy, None)
            else:
                with Borrow(dx) as tdx:
                    _lib.load().call("cfnet_layer_backward", h, tx, ty, tdy, tdx)
        return dx

    @_layer_call
    def zero_grad(self):
        """Sets the parameter gradients (``grads``) to zero."""
        _lib.load().call("cfnet_layer_zero_grad", self._h())

    @_layer_call
    def _tensors(self, count_fn, get_fn, name_fn):
        lib = _lib.load()
        h = self._h()
        out = collections.OrderedDict()
        for i in range(getattr(lib, count_fn)(h)):
            t = getattr(lib, get_fn)(h, i)
            name = getattr(lib, name_fn)(h, i).decode()
            out[name] = view(lib.cfnet_tensor_data(t), handle_shape(lib, "cfnet_tensor_shape", t),
                             self, memory_owner=self._network or self)
        return out

    @property
    def params(self):
        """Trainable parameters, name -> writable numpy view ("weight", "bias", "gamma",
        "beta"); empty before setup."""
        return self._tensors("cfnet_layer_param_count", "cfnet_layer_param",
                             "cfnet_layer_param_name")

    @property
    def grads(self):
        """Parameter gradients, name -> numpy view (same names and shapes as ``params``)."""
        return self._tensors("cfnet_layer_param_count", "cfnet_layer_grad",
                             "cfnet_layer_param_name")

    @property
    def state(self):
        """Non-trainable state, name -> numpy view (batch norm: "running_mean",
        "running_var")."""
        return self._tensors("cfnet_layer_state_count", "cfnet_layer_state",
                             "cfnet_layer_state_name")


def _count(out_channels):
    return to_int(out_channels, "out_channels")


def _kernel(kernel):
    return to_int(kernel, "kernel")


def _create(fn, *args):
    return Layer(_lib.new_handle("layer", fn, *args))


def conv2d(out_channels, kernel, stride=1, padding="same"):
    """2D convolution (correlation) with bias: C x H x W -> out_channels x H' x W'."""
    return _create("cfnet_layer_conv2d_create", _count(out_channels), _kernel(kernel),
                   to_int(stride, "stride"),
                   to_enum(Padding, padding))


def conic_conv(out_channels, kernel, R, padding="same", interp="nearest"):
    """Conic convolution (paper eq. 12) with 4R rotations: C x S x S -> out_channels x S' x S'.
    Exactly equivariant to quarter turns."""
    return _create("cfnet_layer_conic_conv_create", _count(out_channels), _kernel(kernel),
                   to_int(R, "R"),
                   to_enum(Padding, padding), to_enum(Interp, interp))


def p4_lift(out_channels, kernel, padding="same"):
    """p4 lifting convolution: C x S x S -> out_channels x 4 x S' x S'."""
    return _create("cfnet_layer_p4_lift_create", _count(out_channels), _kernel(kernel),
                   to_enum(Padding, padding))


def p4_conv(out_channels, kernel, padding="same"):
    """p4 group convolution: C x 4 x S x S -> out_channels x 4 x S' x S'."""
    return _create("cfnet_layer_p4_conv_create", _count(out_channels), _kernel(kernel),
                   to_enum(Padding, padding))


def p4m_lift(out_channels, kernel, padding="same"):
    """p4m lifting convolution (rotations and mirror images, D4):
    C x S x S -> out_channels x 8 x S' x S'."""
    return _create("cfnet_layer_p4m_lift_create", _count(out_channels), _kernel(kernel),
                   to_enum(Padding, padding))


def p4m_conv(out_channels, kernel, padding="same"):
    """p4m group convolution: C x 8 x S x S -> out_channels x 8 x S' x S'."""
    return _create("cfnet_layer_p4m_conv_create", _count(out_channels), _kernel(kernel),
                   to_enum(Padding, padding))


def p4m_dft_magnitude():
    """Invariant head for p4m maps: per channel, |DFT| over the 2 x 4 grid of the 8 copies.
    C x 8 (or C x 8 x 1 x 1) -> C x 8; invariant to rotations and reflections."""
    return _create("cfnet_layer_p4m_dft_magnitude_create")


def conic_conv_mirror(out_channels, kernel, R, padding="same", interp="nearest"):
    """Conic convolution with reflection: two copies per filter (the second for the mirrored
    input), exactly equivariant to quarter turns and reflections.
    C x S x S or C x 2 x S x S -> out_channels x 2 x S' x S'."""
    return _create("cfnet_layer_conic_conv_mirror_create", _count(out_channels), _kernel(kernel),
                   to_int(R, "R"),
                   to_enum(Padding, padding), to_enum(Interp, interp))


def group_pool(mode="max"):
    """Pooling over the group axis of a p4, p4m or conic_conv_mirror map: C x 4 x H x W,
    C x 8 x H x W or C x 2 x H x W -> C x H x W."""
    return _create("cfnet_layer_group_pool_create", to_enum(PoolMode, mode))


def dft_projection(filters, R=1, interp="nearest"):
    """DFT transition (a): projection onto ``filters`` map-sized filters at 4R rotations.
    K x M x M -> filters x 4R; p4 K x 4 x M x M -> filters x 4 and p4m K x 8 x M x M ->
    filters x 8 (R = 1)."""
    return _create("cfnet_layer_dft_projection_create", to_int(filters, "filters"), to_int(R, "R"),
                   to_enum(Interp, interp))


def dft_magnitude():
    """DFT transition (b): |DFT2| of each sample's A x B grid (or C x G x 1 x 1 p4 map)."""
    return _create("cfnet_layer_dft_magnitude_create")


def dense(out_features):
    """Fully connected: the flattened per-sample input -> out_features."""
    return _create("cfnet_layer_dense_create", to_int(out_features, "out_features"))


def relu():
    """max(0, x), element-wise."""
    return _create("cfnet_layer_relu_create")


def pool(mode="max", window=0, stride=0):
    """Spatial pooling over the last two axes. window = 0 picks the equivariant choice (2 for
    even sizes, 3 for odd, stride 2)."""
    return _create("cfnet_layer_pool_create", to_enum(PoolMode, mode), to_int(window, "window"),
                   to_int(stride, "stride"))


def batch_norm(momentum=0.1, eps=1e-5):
    """Batch normalisation per channel (axis 0 of the per-sample shape)."""
    return _create("cfnet_layer_batch_norm_create", float(momentum), float(eps))


def dropout(drop):
    """Inverted dropout with drop probability 0 <= drop < 1 (identity in inference)."""
    return _create("cfnet_layer_dropout_create", float(drop))


def softmax():
    """Softmax over the flattened per-sample input."""
    return _create("cfnet_layer_softmax_create")


def kind_name(kind):
    """The library's name of a layer kind, e.g. "conic_conv" ("unknown" otherwise)."""
    return _lib.load().cfnet_layer_kind_name(int(kind)).decode()


__all__ = ["Layer", "conv2d", "conic_conv", "p4_lift", "p4_conv", "p4m_lift", "p4m_conv",
           "p4m_dft_magnitude", "conic_conv_mirror", "group_pool", "dft_projection",
           "dft_magnitude", "dense", "relu", "pool", "batch_norm", "dropout", "softmax",
           "kind_name", "MAX_DIMS"]
