"""Networks: the cfnet_network handle, training, inference, invariance check, save and load."""
import contextlib
import ctypes
import functools
import numbers
import operator
import signal
import threading
from collections.abc import MutableMapping
import weakref

import numpy as np

from . import _lib
from ._enums import (INT64, UINT64, AugRotation, Family, ONNX_PROBABILITIES, PREPARE_PAD, Option,
                     Optimizer, SAVE_OPTIMIZER, SAVE_ALLOW_NONFINITE, SumKind, to_enum, to_int)
from ._layer import Layer
from ._tensor import (Borrow, as_float32, as_indices, as_labels, handle_shape,
                      require_nonempty, stack_numbers, to_float32, user_stacklevel,
                      warn_nonfinite, _stack)
from ._lib import fs_path
from ._handle import Handle
from ._errors import CancelledError, CfnetError

def _option_names():
    """(key, name) of every option the library knows, from cfnet_option_name."""
    lib = _lib.load()
    out, k = [], 1
    while True:
        name = lib.cfnet_option_name(k)
        if name is None:
            return out
        out.append((k, name.decode()))
        k += 1


def option_bounds(option):
    """(min, max): the closed range of values set_option accepts for an option (an Option, its
    value or name). Integer options accept only integers in it; aug_jitter must also be less than
    the image size."""
    opt = to_enum(Option, option)
    lo, hi = ctypes.c_double(), ctypes.c_double()
    _lib.load().call("cfnet_option_bounds", int(opt), ctypes.byref(lo), ctypes.byref(hi))
    if _lib.load().cfnet_option_is_integer(int(opt)) == 1:
        return int(lo.value), int(hi.value)
    return lo.value, hi.value


def option_default(option):
    """The value of an option in a new network (OPTIMIZER and AUG_ROTATION as their enums)."""
    opt = to_enum(Option, option)
    v = ctypes.c_double()
    _lib.load().call("cfnet_option_default", int(opt), ctypes.byref(v))
    if opt in _OPTION_VALUE_ENUMS:
        return _OPTION_VALUE_ENUMS[opt](int(v.value))
    return v.value


# cfnet_network_evaluate's batch when it is given 0, and the largest batch that evaluate runs
# as a call of its own: a float32 loss times a count below 2**29 is exact in double, and a
# float32 accuracy times a count below 2**23 rounds to the count of hits.
_EVALUATE_BATCH = 100
_EVALUATE_SPLIT_MAX = 2**22

# Option values that have names, for set_option / configure.
_OPTION_VALUE_ENUMS = {Option.OPTIMIZER: Optimizer, Option.AUG_ROTATION: AugRotation}


# ---- Ctrl-C (SIGINT) during a libcfnet call ----
#
# A Ctrl-C is delivered by Python at the next bytecode the main thread runs. During a libcfnet
# call that is the entry of a ctypes callback (the interrupt callback of inference, the progress
# function of train_epoch, the sum hook), where an exception raised by the SIGINT handler would
# be printed as "ignored" and lost, and the callback's return value undefined; without any
# callback the interrupt would wait for the end of the call. So every call that can take long,
# or that runs Python callbacks, runs inside ``_sigint_guard``: one mechanism for inference and
# training.
#
# In the main thread, while the SIGINT handler is a Python function (Python's default one,
# raising KeyboardInterrupt, or the host's own), the guard replaces it for the duration of the
# call by a recorder, and restores it in one place when the call returns (unless a callback of
# the call set a handler of its own meanwhile: that one stays). Recorded SIGINTs are handed to
# the handler that was in place at the call's own check points (``_sigint_poll``):
# libcfnet's interrupt callback before each layer or part of the batch of inference, and the
# progress callback after each training step. Python's default handler stops the call there
# (KeyboardInterrupt follows it); a host's handler is called there and stops the call if it
# raises (its exception follows it). Calls without check points (train_step) get their SIGINT
# after the call. A SIGINT after the last check point is handed over when the call returns.
# Either way the exception comes out of the guard after every handle of the call (Borrow) has
# been released, and it takes precedence over the CancelledError of the stop (or any other
# error) it caused.
#
# In any other thread (signal handlers can only be installed, and are only run, in the main
# thread), with SIG_IGN or SIG_DFL, or inside a call already guarded (evaluate's batches, a
# read-only call from a progress callback), the guard changes nothing: a SIGINT goes wherever
# it would go without it, and the check points of the thread say "go on".

class _GuardedCall:
    """The state of one guarded call in the main thread (see ``_sigint_guard``)."""
    __slots__ = ("handler", "pending", "stop", "raised")

    def __init__(self, handler):
        self.handler = handler  # the SIGINT handler in place before the call
        self.pending = []       # SIGINTs recorded and not yet handed to it
        self.stop = False       # the default handler's Ctrl-C: KeyboardInterrupt follows
        self.raised = []        # what the host's own handler raised

    def stopping(self):
        return self.stop or bool(self.raised)

    def deliver(self):
        """Hands the recorded SIGINTs to the handler in place before the call; True to stop.
        The host's handler may raise here."""
        while self.pending and not self.stopping():
            signum = self.pending.pop(0)
            if self.handler is signal.default_int_handler:
                self.stop = True
            else:
                self.handler(signum, None)
        return self.stopping()


_guard_tls = threading.local()  # .call: the _GuardedCall of the thread's current guarded call

# PyErr_CheckSignals through ctypes.pythonapi (a PyDLL: the GIL stays held; an exception from
# a handler would be raised here).
_check_signals = ctypes.pythonapi.PyErr_CheckSignals
_check_signals.restype = ctypes.c_int
_check_signals.argtypes = []


def _sigint_poll(call):
    """A check point of the guarded ``call`` (a _GuardedCall, or None: not guarded, go on):
    runs the pending Python signal handlers (a SIGINT's C handler only flags it, and the
    recorder would otherwise wait for a later bytecode boundary), then hands the recorded
    SIGINTs over. True to stop the C call; what the host's handler raised is kept in
    ``call.raised`` and re-raised by the guard."""
    if call is None:
        return False
    if call.stopping():
        return True
    try:
        _check_signals()
        return call.deliver()
    except BaseException as e:
        call.raised.append(e)
        return True


def _interrupt_check(user, done, total):
    """The cfnet_interrupt_fn every Network installs (cfnet_network_set_interrupt): libcfnet
    asks it before each layer of infer, probabilities, predict, evaluate and invariance, and
    between parts of the batch in per-sample layers. A check point of the thread's guarded
    call, if any (``_sigint_poll``)."""
    return 1 if _sigint_poll(getattr(_guard_tls, "call", None)) else 0


_INTERRUPT_FN = _lib.INTERRUPT_FN(_interrupt_check)  # kept alive with the module


@contextlib.contextmanager
def _sigint_guard():
    """Around a libcfnet call that can take long or runs Python callbacks (see the comment
    above ``_GuardedCall``); outermost, so that a SIGINT never lands between a borrowed
    tensor's creation and its release. Yields the _GuardedCall whose check points the call's
    own Python callbacks poll (``_sigint_poll``), or None where nothing is guarded (another
    thread, a SIGINT handler that is not a Python function); a nested guard yields the outer
    call's and leaves everything to it."""
    outer = getattr(_guard_tls, "call", None)
    if outer is not None:
        yield outer
        return
    handler = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(handler):
        yield None
        return
    call = _GuardedCall(handler)

    def record(signum, frame):
        call.pending.append(signum)
    signal.signal(signal.SIGINT, record)
    _guard_tls.call = call
    failure = None
    try:
        yield call
    except CancelledError as e:
        if not call.stopping():  # a stop of the call's own (progress returned True)
            failure = e
    except BaseException as e:  # after the SIGINTs below: a Ctrl-C is not lost to an error
        failure = e
    finally:
        _guard_tls.call = None
        # the one place the host's handler comes back, unless a callback of the call set a
        # handler of its own meanwhile: that one stays
        if signal.getsignal(signal.SIGINT) is record:
            signal.signal(signal.SIGINT, handler)
    if call.raised:
        raise call.raised[0]
    call.deliver()  # a SIGINT after the last check point (the host's handler may raise here)
    if call.stop:
        raise KeyboardInterrupt
    if failure is not None:
        raise failure


def _layout_hint(shape, input_shape):
    """"; <how to fix it>" for images of ``shape`` in a layout a numpy user often has instead of
    N x C x H x W (tifffile, PIL and skimage give H x W x C or H x W), else ""."""
    s, (c, hh, ww) = tuple(shape), input_shape
    if len(s) in (3, 4) and s[-1] == c and s[-3:-1] == (hh, ww) and s[-3:] != input_shape:
        return ("; channels last? (H x W x C): move the channel axis with "
                "np.moveaxis(x, -1, -3)")
    if s == input_shape:  # also for C = 1, where it could be one H x W image: x[None] too
        return "; one C x H x W image? a batch of one is x[None]"
    if c == 1 and len(s) == 3 and s[1:] == (hh, ww):
        return "; no channel axis? (N x H x W): add it with x[:, None]"
    if c == 1 and s == (hh, ww):
        return "; one image without its channel axis: x[None] (a batch of one: x[None, None])"
    return ""


def _prepare_input(image, what, channels):
    """One image for cfnet_network_prepare_image: a C-contiguous float32 array (to_float32: a
    value beyond float32's range raises InvalidArgumentError naming it). An image of no
    channels or no pixels raises ShapeMismatchError saying which (it was "image is empty")."""
    a = image if isinstance(image, np.ndarray) else np.asarray(image)
    if a.ndim == 3 and a.size == 0:
        from ._errors import ShapeMismatchError
        if a.shape[0] == 0:
            raise ShapeMismatchError(-3, "network_prepare_image: %s has 0 channels (shape %s), "
                                     "the model expects %d" % (what, a.shape, channels))
        raise ShapeMismatchError(-3, "network_prepare_image: %s has no pixels (shape %s): %d "
                                 "rows, %d columns" % ((what, a.shape) + a.shape[1:]))
    require_nonempty(a, what)

    def place(idx):
        if a.ndim == 3:  # the library's words: channels from 1, rows and columns from 0
            return "%s: channel %d at row %d, column %d" % (what, idx[0] + 1, idx[1], idx[2])
        return "%s: index %s" % (what, idx)
    return to_float32(a, what, "network_prepare_image", place)


def _is_number(x):
    """A Python or numpy scalar, or a 0-d array, of booleans, integers or reals."""
    if isinstance(x, np.ndarray):
        return x.ndim == 0 and x.dtype.kind in "biuf"
    return isinstance(x, (int, float, np.integer, np.floating, np.bool_))


def _refuse_number(images, what, input_shape, single=False):
    """ShapeMismatchError for a single number (a Python or numpy scalar, a 0-d array) given as
    images: the float32 conversion makes it a vector of one, and the shape message then read
    "images are 1". ``single``: the call takes one C x H x W image too. ``input_shape``: the
    network's, or a string ("2 x H x W" for prepare, which takes any size)."""
    if _is_number(images):
        from ._errors import ShapeMismatchError
        s = input_shape if isinstance(input_shape, str) else "x".join(map(str, input_shape))
        value = images.item() if isinstance(images, (np.ndarray, np.generic)) else images
        raise ShapeMismatchError(-3, "%s: images are a single number (%r), not an array: "
                                 "expected N x %s%s" % (what, value, s, " (or one %s image)"
                                                        % s if single else ""))


def _refuse_number_image(image, what, channels):
    """_refuse_number's message for one image of a list given to prepare."""
    if _is_number(image):
        from ._errors import ShapeMismatchError
        value = image.item() if isinstance(image, (np.ndarray, np.generic)) else image
        raise ShapeMismatchError(-3, "network_prepare_image: %s is a single number (%r), not an "
                                 "array: expected %d x H x W" % (what, value, channels))


def _refuse_no_images(images, what, why):
    """ValueError for no images ([], an N x ... array with N = 0) given to a call that has no
    result for none (evaluate, training), saying so instead of "images is empty"."""
    if isinstance(images, (list, tuple)):  # not stacked here: as_float32 does it once
        shape = (0,) if len(images) == 0 else None
    else:
        shape = np.shape(images)
    if shape and shape[0] == 0:
        raise ValueError("%s: no images (shape %s): %s" % (what, tuple(shape), why))


def _using(method):
    """Runs a Network method inside ``_in_call``: a close() from another thread (or from a
    callback) while the method's C call runs only marks the network closed, and its memory is
    freed when the call has returned."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        self._call_begin()  # _in_call without a generator: this wraps every small call too
        try:
            return method(self, *args, **kwargs)
        finally:
            self._call_end()
    return wrapper


def _using_net(method):
    """``_using`` for a Metadata method: the call counts on its network."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        net = self._net
        net._call_begin()
        try:
            return method(self, *args, **kwargs)
        finally:
            net._call_end()
    return wrapper


class Network(Handle):
    """A cfnet_network: a per-sample input shape C x H x W, a list of layers and the training
    state (options, optimiser, step count).

    ``Network(channels, height, width, seed=0)`` creates an empty network; ``append`` adds
    layers. Arrays go in and come out as numpy float32 arrays (``N x C x H x W`` images);
    C-contiguous float32 inputs are passed without copying, anything else is copied with a
    CopyWarning.

    The handle is freed by ``close()``, at the end of a ``with`` block, or when the object is
    garbage-collected. The network owns its layers: the Layer objects it hands out (from
    ``append``, ``layers``, indexing) keep it alive and are valid only while it is open;
    ``close()`` invalidates them. Numpy views of their parameters (``params``, ``grads``,
    ``state``) stay valid: while one is alive, ``close()`` keeps the memory, and it is freed
    when the last view goes.

    A Network cannot be pickled or copied (it holds a C pointer); ``to_bytes`` and
    ``from_bytes`` carry it across processes, and
    ``Network.from_bytes(net.to_bytes(optimizer=True))`` is a copy.

    Inference calls (infer, probabilities, predict, evaluate, invariance) release the GIL and
    may run from several threads at once on one network, as long as nothing modifies it
    meanwhile (append, options, training). A ``close()`` while another thread is inside a
    method of the network or of one of its layers frees the memory when that call returns.
    """

    def __init__(self, channels, height, width, seed=0, context=None):
        dims = (to_int(channels, "channels"), to_int(height, "height"), to_int(width, "width"))
        if context is None:
            h = _lib.new_handle("network", "cfnet_network_create", *dims,
                                to_int(seed, "seed", UINT64))
        else:
            h = _lib.new_handle("network", "cfnet_network_create_in", context._h(),
                                *dims, to_int(seed, "seed", UINT64))
        self._init(h, context)

    def _init(self, handle, context=None):
        self._handle = handle
        self._layers = weakref.WeakValueDictionary()  # index -> Layer wrapper handed out
        self._context = context  # must outlive the network: keep it alive
        self._finalizer = weakref.finalize(self, _lib.free_network, handle)
        if context is not None:
            context._register(self)
        lib = _lib.load()
        if "cfnet_network_set_interrupt" not in lib._missing:  # an older libcfnet: no Ctrl-C
            # The callback lets Ctrl-C stop inference between layers (_sigint_guard); set once
            # here, since setting it is refused while another thread runs inference.
            lib.call("cfnet_network_set_interrupt", handle,
                     ctypes.cast(_INTERRUPT_FN, ctypes.c_void_p), None)

    @classmethod
    def _from_handle(cls, handle, context=None):
        net = cls.__new__(cls)
        net._init(handle, context)
        return net

    @property
    def context(self):
        """The Context the network was created or loaded in, or None."""
        return self._context

    # ---- lifetime ----

    _copy_hint = (" (to copy it: Network.from_bytes(net.to_bytes(optimizer=True)); to_bytes "
                  "also carries it to another process)")

    def close(self):
        """Frees the network and its layers (idempotent); Layer objects taken from it become
        invalid. While a numpy view of a layer's parameters is alive the memory is kept, and
        freed when the last view goes."""
        if self._handle is None:
            return
        for layer in list(self._layers.values()):
            layer._invalidate()
        self._layers.clear()
        self._handle = None
        self._release()

    def _released(self):
        ctx = self._context
        if ctx is not None and ctx._handle is None:
            ctx._release()  # a context closed while this network's memory was kept

    # ---- composition ----

    @_using
    def append(self, layer):
        """Appends ``layer`` and sets it up for the current output shape. The network takes
        ownership in every case: on success ``layer`` becomes a view of the network's layer and
        is returned; on failure it is freed (``layer.consumed`` becomes True) and the error is
        raised. A layer that already belongs to a network, or whose ``params``/``grads``/
        ``state`` views are alive (the append replaces those tensors), raises StateError and
        is left alone."""
        h = self._h()
        if not isinstance(layer, Layer):
            raise TypeError("append needs a cfnet.Layer, not %s" % type(layer).__name__)
        lh = layer._h()
        lib = _lib.load()
        if layer.network is not None:
            lib.call("cfnet_network_append", h, lh)  # CFNET_E_STATE, nothing freed
            raise AssertionError("unreachable: appending an owned layer succeeded")
        layer._check_no_views("network_append")  # left alone, like an owned layer
        index = lib.cfnet_network_layer_count(h)
        layer._give_to(self)
        try:
            lib.call("cfnet_network_append", h, lh)
        except BaseException:
            layer._consume()
            raise
        layer._adopted(self)
        self._layers[index] = layer
        return layer

    def extend(self, layers):
        """Appends each layer in turn; returns self. On a failure the failing layer is consumed
        and the remaining ones are left untouched (still owned by the caller)."""
        for layer in layers:
            self.append(layer)
        return self

    @_using
    def __len__(self):
        return _lib.load().cfnet_network_layer_count(self._h())

    @_using
    def __getitem__(self, i):
        n = len(self)
        try:
            i = operator.index(i)  # an int, or a numpy integer
        except TypeError:
            raise TypeError("layer index must be an int, not %s" % type(i).__name__) from None
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("layer index out of range")
        layer = self._layers.get(i)
        if layer is None or layer.closed:
            layer = Layer(_lib.load().cfnet_network_layer(self._h(), i), network=self)
            self._layers[i] = layer
        return layer

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def layers(self):
        """The layers, as Layer objects valid while the network is open."""
        return list(self)

    @property
    @_using
    def input_shape(self):
        """Per-sample input shape (C, H, W)."""
        return handle_shape(_lib.load(), "cfnet_network_input_shape", self._h())

    @property
    @_using
    def output_shape(self):
        """Per-sample output shape of the last layer (the input shape if there is none)."""
        return handle_shape(_lib.load(), "cfnet_network_output_shape", self._h())

    @property
    @_using
    def param_count(self):
        """Total number of trainable scalars."""
        return _lib.load().cfnet_network_param_count(self._h())

    @property
    def metadata(self):
        """The network's user metadata as a mutable mapping of str to str, in key order; saved
        with the model (docs/format.md). ``net.metadata["classes"] = "a,b"``, ``del
        net.metadata["classes"]``, ``dict(net.metadata)``."""
        return Metadata(self)

    @_using
    def init_normal(self, sd=0.1, seed=0):
        """Redraws every weight from N(0, sd^2) whatever the layer's fan-in, the original CFNet
        code's initialisation and the CFNet preset's (cfnet_network_init_normal); biases,
        batch-norm parameters and the training state stay. Returns self."""
        _lib.load().call("cfnet_network_init_normal", self._h(), float(sd),
                         to_int(seed, "seed", UINT64))
        return self

    @property
    @_using
    def multiply_adds(self):
        """Nominal multiply-adds of one sample's forward pass (cfnet_network_multiply_adds;
        2 x this = FLOP)."""
        return _lib.load().cfnet_network_multiply_adds(self._h())

    @property
    @_using
    def memory_usage(self):
        """Bytes held by the network (parameters, optimiser state, layer tables, buffers and
        caches; see cfnet_network_memory_usage in cfnet.h)."""
        return _lib.load().cfnet_network_memory_usage(self._h())

    @_using
    def summary(self):
        """One line per layer plus totals, as a str."""
        lib = _lib.load()
        h = self._h()
        needed = ctypes.c_size_t()
        buf = ctypes.create_string_buffer(4096)
        status = lib.cfnet_network_summary(h, buf, len(buf), ctypes.byref(needed))
        if status == -9:  # CFNET_E_LIMIT: retry with the size asked for
            buf = ctypes.create_string_buffer(needed.value + 1)
            status = lib.cfnet_network_summary(h, buf, len(buf), ctypes.byref(needed))
        if status != 0:
            from ._errors import check
            check(status, lib.cfnet_last_error())
        return buf.value.decode()

    def __repr__(self):
        if self._handle is None:
            return "<cfnet.Network (closed)>"
        return "<cfnet.Network %s -> %s, %d layers, %d parameters>" % (
            self.input_shape, self.output_shape, len(self), self.param_count)

    # ---- forward and backward ----

    def _out(self, n):
        return np.empty((n,) + self.output_shape, dtype=np.float32)

    @_using
    def forward(self, x, training=False):
        """Network output for images x (N x C x H x W), as a new array. With training=True the
        activations are kept for ``backward``. No images (0 x C x H x W or []) give an empty
        0 x <output shape> array, as infer; with training=True they raise ValueError, as
        train_step does (backward would have nothing to run on). Takes batches only: one
        C x H x W image raises ShapeMismatchError saying that x[None] is a batch of one."""
        h = self._h()
        _refuse_number(x, "network_forward", self.input_shape)
        a = x if isinstance(x, np.ndarray) else _stack(x, "images")
        if self._no_images(a, "network_forward"):
            if training:
                _refuse_no_images(a, "network_forward", "a training forward needs at least "
                                  "one image (backward would have nothing to run on)")
            return self._out(0)
        x = as_float32(x, "images", fn="network_forward", stacked=a)
        self._check_layout(x, "network_forward")  # as infer and evaluate name the layout
        out = self._out(x.shape[0] if x.ndim else 0)
        with Borrow(x) as tx, Borrow(out) as to:
            _lib.load().call("cfnet_network_forward", h, tx, to, 1 if training else 0)
        warn_nonfinite(out, "network_forward")
        return out

    @_using
    def backward(self, d_out):
        """Backward pass after ``forward(x, training=True)``: d_out = d loss / d output;
        parameter gradients are accumulated into the layers' ``grads``."""
        h = self._h()
        d = as_float32(d_out, "output gradient", fn="network_backward")
        with Borrow(d) as td:
            _lib.load().call("cfnet_network_backward", h, td)

    @_using
    def zero_grad(self):
        """Sets every layer's parameter gradients to zero."""
        _lib.load().call("cfnet_network_zero_grad", self._h())

    def _batch(self, x, what):
        """(x as a passable float32 array with a batch axis, True if one was added): a single
        C x H x W image (the network's input shape) becomes a batch of one. None for no images
        (0 x C x H x W): the caller returns an empty result. ``what`` names the C function."""
        _refuse_number(x, what, self.input_shape, single=True)
        a = x if isinstance(x, np.ndarray) else _stack(x, "images")
        if self._no_images(a, what):
            return None, False
        x = as_float32(x, "images", fn=what, stacked=a)
        if x.ndim == 3 and tuple(x.shape) == self.input_shape:
            return x.reshape((1,) + x.shape), True
        self._check_layout(x, what, single=True)
        return x, False

    def _no_images(self, a, what):
        """True for no images, [] or np.array([]) or 0 x C x H x W (the input shape): the
        inference calls return an empty result. 0 x (another shape) raises ShapeMismatchError
        (as_float32 would call it empty, as if no images were not allowed here)."""
        if a.ndim == 1 and a.size == 0:
            return True
        if a.ndim == 4 and a.shape[0] == 0:
            shape = self.input_shape
            if tuple(a.shape[1:]) == shape:
                return True
            from ._errors import ShapeMismatchError
            raise ShapeMismatchError(-3, "%s: input is %s, expected N x %s"
                                     % (what, "x".join(map(str, a.shape)),
                                        "x".join(map(str, shape))))
        return False

    def _check_layout(self, x, what, single=False, exact=False):
        """ShapeMismatchError with a hint for images in a recognisable other layout (channels
        last, no channel axis, one image without the batch axis), or not 4-D (their first axis
        is not a count of images: the labels' count would be checked against it); other
        shapes are left to the library's own message unless ``exact`` (any N x C x H x W other
        than the input shape is refused here too). ``single``: the call takes one C x H x W
        image too, and the message says so. The one shape message of every call that takes
        images (infer, probabilities, predict, forward, evaluate, training, invariance)."""
        shape = self.input_shape
        hint = _layout_hint(x.shape, shape)
        if hint or x.ndim != 4 or (exact and tuple(x.shape[1:]) != shape):
            from ._errors import ShapeMismatchError
            s = "x".join(map(str, shape))
            raise ShapeMismatchError(-3, "%s: images are %s, expected N x %s%s%s"
                                     % (what, "x".join(map(str, x.shape)) or "a 0-d array", s,
                                        " (or one %s image)" % s if single else "", hint))

    @_using
    def prepare(self, images, pad=False):
        """Images prepared for a model trained by the ``cfnet`` command exactly as ``cfnet
        predict`` prepares them (cfnet_network_prepare_image), from the settings in the model's
        metadata: the normalisation over the whole image, then the centre S x S crop or zero
        pad. One image (C x H x W, the values as stored, any real dtype, byte order or layout)
        gives a C x S x S float32 array; a list or tuple of images (their sizes may differ) or
        an N x C x H x W array gives N x C x S x S, for probabilities(). ``pad=True`` zero-pads
        images smaller than S even when the model's "pad" is 0 (``predict --pad``); otherwise
        they raise ShapeMismatchError, as predict refuses them. No images ([], 0 x C x H x W)
        give 0 x C x S x S. A finite value float32 cannot hold (float64 beyond +-3.4e38)
        raises InvalidArgumentError naming it."""
        h = self._h()
        flags = PREPARE_PAD if pad else 0
        C, S, _ = self.input_shape
        _refuse_number(images, "network_prepare_image", "%d x H x W" % C, single=True)
        if isinstance(images, (list, tuple)):
            seq, single = images, False
        else:
            a = stack_numbers(images, "images")  # converted once
            if a.ndim == 1 and a.size == 0:  # np.array([]) of no images
                a = a.reshape(0, self.input_shape[0], 0, 0)
            if a.ndim == 4 and a.shape[0] == 0 and a.shape[1] != self.input_shape[0]:
                from ._errors import ShapeMismatchError
                raise ShapeMismatchError(-3, "network_prepare_image: input is %s, expected "
                                         "N x %d x H x W" % ("x".join(map(str, a.shape)),
                                                             self.input_shape[0]))
            if a.ndim not in (3, 4):
                raise ValueError("images must be one C x H x W image, a list of them or an "
                                 "N x C x H x W array, not shape %s%s"
                                 % (a.shape, self._no_channel_hint(a.ndim, "images")))
            if a.ndim == 4 and a.shape[0] and not a.shape[1]:
                from ._errors import ShapeMismatchError
                raise ShapeMismatchError(-3, "network_prepare_image: images have 0 channels "
                                         "(shape %s), the model expects %d" % (a.shape, C))
            seq, single = ([a], True) if a.ndim == 3 else (list(a), False)
        out = np.empty((len(seq), C, S, S), dtype=np.float32)
        if not len(seq):
            return out
        lib = _lib.load()
        with Borrow(out) as to:
            for i, im in enumerate(seq):
                # a list converted once (require_numbers, np.ndim and to_float32 did it each)
                if not single:
                    _refuse_number_image(im, "images[%d]" % i, C)
                im = stack_numbers(im, "images[%d]" % i)
                nd = np.ndim(im)
                if not single and (nd < 3 or nd > 4 or (nd == 4 and np.shape(im)[0] != 1)):
                    # named here: the library's message says "the image", not which one
                    from ._errors import ShapeMismatchError
                    raise ShapeMismatchError(
                        -3, "network_prepare_image: images[%d] is %s, need C x H x W%s"
                        % (i, "x".join(map(str, np.shape(im))),
                           self._no_channel_hint(nd, "images[%d]" % i)))
                x = _prepare_input(im, "image" if single else "images[%d]" % i, C)
                with Borrow(x) as tx:
                    lib.call("cfnet_network_prepare_image", h, tx, flags, to, i)
        return out[0] if single else out

    def _no_channel_hint(self, ndim, name):
        """"; <how to fix it>" for an H x W image (ndim 2) given to prepare, else ""."""
        if ndim != 2:
            return ""
        c = self.input_shape[0]
        if c == 1:
            return "; one H x W image without its channel axis: %s[None]" % name
        return "; the model takes %d channels: stack them as C x H x W" % c

    @_using
    def infer(self, x):
        """Read-only inference: the network output for x (N x <output shape>); for a single
        C x H x W image, the output without the batch axis; for no images (0 x C x H x W or []), an
        empty array. Outputs that are not finite (parameters too large, diverged or edited: the
        library checks the inputs, not the arithmetic) are returned with a RuntimeWarning
        naming the first such image. Ctrl-C (SIGINT) in the main thread stops it at the next
        layer or part of the batch (libcfnet's interrupt callback) and raises KeyboardInterrupt; so it does in
        probabilities, predict, evaluate and invariance."""
        h = self._h()
        x, single = self._batch(x, "network_infer")
        if x is None:
            return self._out(0)
        out = self._out(x.shape[0] if x.ndim else 0)
        with _sigint_guard(), Borrow(x) as tx, Borrow(out) as to:
            _lib.load().call("cfnet_network_infer", h, tx, to)
        warn_nonfinite(out, "network_infer")
        return out[0] if single else out

    @_using
    def probabilities(self, x):
        """Class probabilities (N x K) for x; a vector of K for a single C x H x W image (0 x K
        for no images)."""
        h = self._h()
        x, single = self._batch(x, "network_probabilities")
        k = int(np.prod(self.output_shape))
        if x is None:
            return np.empty((0, k), dtype=np.float32)
        n = x.shape[0] if x.ndim else 0
        probs = np.empty((n, k), dtype=np.float32)
        with _sigint_guard(), Borrow(x) as tx, Borrow(probs) as tp:
            _lib.load().call("cfnet_network_probabilities", h, tx, tp)
        return probs[0] if single else probs

    @_using
    def predict(self, x):
        """Predicted class (argmax of the output) per image, as an int32 array of length N
        (empty for no images); an int for a single C x H x W image."""
        h = self._h()
        x, single = self._batch(x, "network_predict")
        if x is None:
            return np.empty(0, dtype=np.int32)
        n = x.shape[0] if x.ndim else 0
        labels = np.empty(n, dtype=np.int32)
        with _sigint_guard(), Borrow(x) as tx:
            _lib.load().call("cfnet_network_predict", h, tx,
                             labels.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), n)
        return int(labels[0]) if single else labels

    # ---- options and training ----

    @_using
    def set_option(self, option, value):
        """Sets one option (an Option, its int value or name such as "learning_rate"). Named
        values are accepted for OPTIMIZER ("adam", "sgd") and AUG_ROTATION ("none", "quarter",
        "any"); booleans for AUG_FLIP."""
        opt = to_enum(Option, option)
        if opt in _OPTION_VALUE_ENUMS:
            value = to_enum(_OPTION_VALUE_ENUMS[opt], value)
        try:
            v = float(value)
        except (TypeError, ValueError):
            # float() alone said "could not convert string to float: 'yes'", naming no option
            raise TypeError("option %s takes a number%s, not %r"
                            % (opt.name.lower(), " (or True/False)" if opt == Option.AUG_FLIP
                               else "", value)) from None
        _lib.load().call("cfnet_network_set_option", self._h(), int(opt), v)

    @_using
    def get_option(self, option):
        """The current value of an option (a float; OPTIMIZER and AUG_ROTATION as their
        enums)."""
        opt = to_enum(Option, option)
        v = ctypes.c_double()
        _lib.load().call("cfnet_network_get_option", self._h(), int(opt), ctypes.byref(v))
        if opt in _OPTION_VALUE_ENUMS:
            return _OPTION_VALUE_ENUMS[opt](int(v.value))
        return v.value

    def configure(self, **options):
        """Sets several options by keyword, e.g. ``configure(learning_rate=5e-3,
        weight_decay=5e-4, aug_rotation="any", aug_jitter=3)``; returns self. Options are set
        in the order given; on an error the earlier ones stay set."""
        for name, value in options.items():
            self.set_option(name, value)
        return self

    @property
    def options(self):
        """Every option's current value, by the library's name (cfnet_option_name)."""
        return {name: self.get_option(k) for k, name in _option_names()}

    @_using
    def train_step(self, images, labels):
        """One optimisation step on a batch (augmentation, forward, loss, backward, update).
        Returns the batch loss before the update."""
        h = self._h()
        _refuse_no_images(images, "network_train_step", "there is nothing to train on")
        _refuse_number(images, "network_train_step", self.input_shape)
        x = as_float32(images, "images", fn="network_train_step")
        self._check_layout(x, "network_train_step")
        lab = as_labels(labels, x.shape[0] if x.ndim else None)
        loss = ctypes.c_float()
        raised = getattr(self, "_sum_raised", None)
        # Ctrl-C after the step (no check points: the sum hook must not fail the step)
        with _sigint_guard(), Borrow(x) as tx, self._in_call():
            try:
                _lib.load().call("cfnet_network_train_step", h, tx,
                                 lab.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), lab.size,
                                 ctypes.byref(loss))
            except Exception:
                if raised:  # the sum hook raised: that exception, not the status, is the news
                    e = raised.pop()
                    raised.clear()
                    raise e from None
                raise
        return loss.value

    @_using
    def set_sum_hook(self, fn):
        """Data-parallel training (docs/distributed.md, "Data-parallel training" in cfnet.h):
        during every train_step, ``fn(kind, array)`` must replace the numpy ``array`` in place by
        its element-wise sum over all processes — float32 for SumKind.GRADIENTS (every
        gradient, then the loss share), float64 for SumKind.STATISTICS (batch-norm sums). With
        mpi4py: ``lambda kind, a: comm.Allreduce(MPI.IN_PLACE, a, op=MPI.SUM)``. The array is
        valid only during the call. An exception raised by ``fn`` fails the step (parameters,
        optimiser and batch-norm state are left as they were) and propagates from train_step.
        ``None`` removes the hook."""
        h = self._h()
        if fn is None:
            _lib.load().call("cfnet_network_set_sum_hook", h, None, None)
            self._sum_cb = None
            return
        raised = self._sum_raised = []

        def trampoline(user, kind, data, count):
            try:
                grads = kind == SumKind.GRADIENTS
                ctype, dtype = (ctypes.c_float, np.float32) if grads else (ctypes.c_double,
                                                                          np.float64)
                arr = np.frombuffer((ctype * count).from_address(data), dtype=dtype)
                fn(SumKind(kind), arr)
                return 0
            except BaseException as e:
                raised.append(e)
                return -8  # CFNET_E_STATE; train_step re-raises e
        cb = _lib.SUM_FN(trampoline)
        _lib.load().call("cfnet_network_set_sum_hook", h, ctypes.cast(cb, ctypes.c_void_p), None)
        self._sum_cb = cb  # the C side keeps only the pointer

    @_using
    def set_batch_position(self, offset, global_batch):
        """The following train steps' batches are samples [offset, offset + n) of a global
        batch of ``global_batch`` (per-sample keyed augmentation and dropout, loss scaled by
        1 / global_batch); (0, 0) restores single-process training."""
        _lib.load().call("cfnet_network_set_batch_position", self._h(),
                         to_int(offset, "offset", INT64),
                         to_int(global_batch, "global_batch", INT64))

    @_using
    def gradients(self):
        """Every parameter gradient as one float32 array, in model-file order (layers in
        order, each layer's parameters in order)."""
        g = np.empty(self.param_count, dtype=np.float32)
        _lib.load().call("cfnet_network_gradients", self._h(),
                         g.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), g.size)
        return g

    @property
    @_using
    def step_count(self):
        """Optimisation steps taken so far."""
        return _lib.load().cfnet_network_step_count(self._h())

    @_using
    def evaluate(self, images, labels, batch=0):
        """Inference-mode (mean loss, accuracy) over the images, in batches of ``batch``
        (0 = 100). Ctrl-C (SIGINT) in the main thread stops it at the next layer (or part of the
        batch) and raises KeyboardInterrupt.

        Each batch is a cfnet_network_evaluate call of its own; the batches and their sums are those of one call over all the images,
        so the results are bit-identical to it. An error names images and labels by their
        index among all of them, as that one call does. No images raise ValueError: their mean
        loss and accuracy are undefined."""
        h = self._h()
        _refuse_no_images(images, "network_evaluate", "the mean loss and accuracy of no images "
                          "are undefined")
        _refuse_number(images, "network_evaluate", self.input_shape)
        x = as_float32(images, "images", fn="network_evaluate")
        self._check_layout(x, "network_evaluate")
        lab = as_labels(labels, x.shape[0] if x.ndim else None)
        lib = _lib.load()
        b = to_int(batch, "batch", INT64)
        n, size = lab.size, b or _EVALUATE_BATCH
        if b < 0 or x.ndim == 0 or n <= size or size > _EVALUATE_SPLIT_MAX:
            return self._evaluate_call(lib, h, x, lab, b)
        sum_loss, correct = 0.0, 0
        with _sigint_guard():  # the calls' own checks stop one at the next layer
            try:
                for s0 in range(0, n, size):
                    nb = min(size, n - s0)
                    loss, acc = self._evaluate_call(lib, h, x[s0:s0 + nb], lab[s0:s0 + nb], b)
                    # One batch per call: its loss is the batch's mean loss exactly, and its
                    # accuracy gives the count of hits exactly (nb <= _EVALUATE_SPLIT_MAX).
                    # The sums are formed as the library forms them, in double.
                    sum_loss += loss * nb
                    correct += round(acc * nb)
            except CancelledError:
                raise  # Ctrl-C: KeyboardInterrupt from _sigint_guard
            except CfnetError:
                # A batch's error counts images and labels within the batch: one call over all
                # of them raises the library's own error (validation comes first in it, so a
                # bad image or label fails at once).
                return self._evaluate_call(lib, h, x, lab, b)
        return float(np.float32(sum_loss / n)), float(np.float32(correct / n))

    @staticmethod
    def _evaluate_call(lib, h, x, lab, batch):
        loss, acc = ctypes.c_float(), ctypes.c_float()
        with _sigint_guard(), Borrow(x) as tx:
            lib.call("cfnet_network_evaluate", h, tx,
                     lab.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), lab.size, batch,
                     ctypes.byref(loss), ctypes.byref(acc))
        return loss.value, acc.value

    @_using
    def train_epoch(self, images, labels, batch=50, order=None, progress=None):
        """One epoch (cfnet_network_train_epoch): batches of ``batch`` in the order of
        ``order`` (a 1-D integer array of sample indices, repetitions allowed) or, when None,
        of a permutation drawn from the network's own generator (saved with the training
        state: resuming is bit identical); the last batch may be smaller; augmentation as
        configured.

        ``progress(step, steps, loss, accuracy)`` is called after every step (loss: that
        batch's loss; accuracy: the running training accuracy of the epoch). Return True (any
        true value) from it to stop the epoch after that step: train_epoch then raises
        CancelledError (its ``mean_loss`` and ``accuracy`` cover the steps done), and the steps
        done are kept (the network stays consistent and can be saved). An exception raised
        inside ``progress`` also stops the epoch after that step and propagates from
        train_epoch; so does ``close()`` called in ``progress`` (CancelledError: the network
        is freed once the epoch has stopped). Ctrl-C (SIGINT, e.g. a notebook's interrupt)
        in the main thread stops the epoch after the current step, with or without
        ``progress``, and raises KeyboardInterrupt; the steps done are kept.

        Returns (mean loss, training accuracy) of the epoch."""
        h = self._h()
        _refuse_no_images(images, "network_train_epoch", "there is nothing to train on")
        _refuse_number(images, "network_train_epoch", self.input_shape)
        x = as_float32(images, "images", fn="network_train_epoch")
        self._check_layout(x, "network_train_epoch")
        lab = as_labels(labels, x.shape[0] if x.ndim else None)
        mean, acc = ctypes.c_double(), ctypes.c_double()
        if order is not None:
            order = as_indices(order, "train_epoch: order")
            p_order = order.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
            count = order.size
        else:
            p_order, count = None, 0
        raised = []
        lib = _lib.load()
        n_batch = to_int(batch, "batch", INT64)
        p_labels = lab.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        # Ctrl-C stops the epoch after the current step: the progress callback is a check point
        with _sigint_guard() as guarded, Borrow(x) as tx, self._in_call():
            cb = None
            if progress is not None or guarded is not None:
                def trampoline(user, step, steps, loss, accuracy):
                    try:
                        if _sigint_poll(guarded):  # Ctrl-C: stop; the guard raises after
                            return 1
                        if progress is None:
                            return 0
                        stop = progress(step, steps, loss, accuracy)
                        return 1 if stop or self._handle is None else 0  # closed: stop
                    except BaseException as e:  # stop the epoch; re-raised below
                        raised.append(e)
                        return 1
                cb = _lib.PROGRESS_FN(trampoline)
            status = lib.cfnet_network_train_epoch(
                h, tx, p_labels, n_batch,
                p_order, int(count), ctypes.cast(cb, ctypes.c_void_p) if cb else None, None,
                ctypes.byref(mean), ctypes.byref(acc))
            # inside the guard: a Ctrl-C takes precedence over what it caused
            if raised:
                raise raised[0]
            if status != 0:
                from ._errors import check
                try:
                    check(status, lib.cfnet_last_error())
                except CancelledError as e:
                    e.mean_loss, e.accuracy = mean.value, acc.value
                    raise
        return mean.value, acc.value

    def fit(self, images, labels, epochs=1, batch=50, order=None, progress=None, rng=None,
            callback=None):
        """Trains ``epochs`` epochs with train_epoch and returns the list of mean losses per
        epoch.

        - ``order``: None (each epoch shuffled by the network's own generator), an array of
          sample indices used for every epoch, or a callable ``order(epoch)`` returning one per
          epoch (e.g. class-balanced sampling). An array is checked before the first epoch,
          also with ``epochs=0``, as ``images`` and ``labels`` are (floats raise TypeError).
        - ``rng``: a numpy Generator; if given (and ``order`` is None) each epoch visits
          ``rng.permutation(N)`` instead.
        - ``progress(epoch, step, steps, loss, accuracy)`` after every step; return True to
          stop: fit then returns early, the last entry being the mean loss of the steps done
          in the stopped epoch (``step_count`` says how many steps were taken). An exception
          raised in ``progress`` stops training the same way and propagates; so does
          KeyboardInterrupt on Ctrl-C (after the current step, with or without ``progress``).
        - ``callback(epoch, mean_loss)`` after each completed epoch.

        ``epoch`` counts from 0 (in ``order``, ``progress`` and ``callback``); ``step`` from 1
        to ``steps``.
        """
        from ._errors import CancelledError
        _refuse_no_images(images, "fit", "there is nothing to train on")
        _refuse_number(images, "network_train_epoch", self.input_shape)
        images = as_float32(images, "images", fn="network_train_epoch")
        self._check_layout(images, "network_train_epoch")
        labels = as_labels(labels, images.shape[0] if images.ndim else None)
        if order is not None and not callable(order):  # converted once, not every epoch
            order = as_indices(order, "fit: order")
        n = len(labels)
        losses = []
        for epoch in range(to_int(epochs, "epochs", (0, 2**63 - 1))):
            if callable(order):  # its result named as fit's, not as train_epoch's
                ep_order = order(epoch)
                if ep_order is not None:
                    ep_order = as_indices(ep_order, "fit: order(%d)" % epoch)
            elif order is not None:
                ep_order = order
            elif rng is not None:
                ep_order = rng.permutation(n)
            else:
                ep_order = None
            cb = None
            if progress is not None:
                def cb(step, steps, loss, accuracy, _e=epoch):
                    return progress(_e, step, steps, loss, accuracy)
            try:
                mean, _ = self.train_epoch(images, labels, batch, ep_order, cb)
            except CancelledError as e:
                losses.append(e.mean_loss)
                return losses
            losses.append(mean)
            if callback is not None:
                callback(epoch, mean)
        return losses

    @_using
    def invariance(self, x, angles=None, reflect=False):
        """Largest relative change max|f(g x) - f(x)| / max|f(x)| of the output over the
        rotations of x by ``angles`` in degrees (default 90, 180, 270); with reflect=True also
        over the mirrored x (left-right flip) and its rotations, i.e. all of D4 by default.
        ``x`` is N x C x H x W, or one C x H x W image."""
        h = self._h()
        _refuse_number(x, "network_invariance", self.input_shape, single=True)
        x = as_float32(x, "images", fn="network_invariance")
        if tuple(x.shape) == self.input_shape:  # one image
            x = x.reshape((1,) + x.shape)
        else:  # exact: the library would only say "input does not match the network"
            self._check_layout(x, "network_invariance", single=True, exact=True)
        if angles is not None:
            a = np.asarray(stack_numbers(angles, "angles"), dtype=np.float64)  # stacked once
            to_int(a.size, "the number of angles")  # a C int
            a = np.ascontiguousarray(a).reshape(-1)
        out = ctypes.c_double()
        flags = 1 if reflect else 0  # CFNET_INVARIANCE_REFLECT
        with _sigint_guard(), Borrow(x) as tx:
            if angles is None:
                _lib.load().call("cfnet_network_invariance_ex", h, tx, None, 0, flags,
                                 ctypes.byref(out))
            else:
                _lib.load().call("cfnet_network_invariance_ex", h, tx,
                                 a.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), a.size,
                                 flags, ctypes.byref(out))
        if not np.isfinite(out.value):
            import warnings
            warnings.warn("network_invariance: the result is %r: the network's outputs for "
                          "these images are not finite (parameters too large, diverged or "
                          "edited?)" % out.value, RuntimeWarning, stacklevel=user_stacklevel())
        return out.value

    # ---- saving and loading ----

    @_using
    def save(self, path, optimizer=False, allow_nonfinite=False):
        """Writes the network to ``path`` (safetensors layout, docs/format.md); with
        optimizer=True also the optimiser state. An existing file is replaced atomically.
        NaN or infinite values raise NumericError unless allow_nonfinite=True."""
        flags = (SAVE_OPTIMIZER if optimizer else 0) | (SAVE_ALLOW_NONFINITE if allow_nonfinite
                                                        else 0)
        _lib.load().call("cfnet_network_save", self._h(), fs_path(path), flags)

    @_using
    def to_bytes(self, optimizer=False, allow_nonfinite=False):
        """The saved network as bytes (what ``save`` would write)."""
        lib = _lib.load()
        h = self._h()
        buf = ctypes.c_void_p()
        size = ctypes.c_size_t()
        flags = (SAVE_OPTIMIZER if optimizer else 0) | (SAVE_ALLOW_NONFINITE if allow_nonfinite
                                                        else 0)
        lib.call("cfnet_network_save_buffer", h, flags, ctypes.byref(buf), ctypes.byref(size))
        _lib._count("buffer", 1)
        try:
            return ctypes.string_at(buf.value, size.value)
        finally:
            lib.cfnet_free(buf)
            _lib._count("buffer", -1)

    # ---- ONNX export ----

    @_using
    def export_onnx(self, path, probabilities=False):
        """Writes the network as an ONNX model (opset ``cfnet.ONNX_OPSET``; input "input"
        N x C x H x W, output "output") computing what ``infer`` computes, or with
        probabilities=True what ``probabilities`` computes. See docs/deploy.md."""
        flags = ONNX_PROBABILITIES if probabilities else 0
        _lib.load().call("cfnet_network_export_onnx", self._h(), fs_path(path), flags)

    @_using
    def to_onnx(self, probabilities=False):
        """The ONNX model as bytes (what ``export_onnx`` would write)."""
        lib = _lib.load()
        h = self._h()
        buf = ctypes.c_void_p()
        size = ctypes.c_size_t()
        lib.call("cfnet_network_export_onnx_buffer", h,
                 ONNX_PROBABILITIES if probabilities else 0, ctypes.byref(buf),
                 ctypes.byref(size))
        _lib._count("buffer", 1)
        try:
            return ctypes.string_at(buf.value, size.value)
        finally:
            lib.cfnet_free(buf)
            _lib._count("buffer", -1)

    @classmethod
    def load(cls, path, context=None):
        """A network read from a file written by ``save`` (or cfnet_network_save). Every field
        is validated: a malformed file raises FormatError (LimitError over the context's
        limits, CfnetIOError if it cannot be read)."""
        if context is None:
            h = _lib.new_handle("network", "cfnet_network_load", fs_path(path))
        else:
            h = _lib.new_handle("network", "cfnet_network_load_in", context._h(),
                                fs_path(path))
        return cls._from_handle(h, context)

    @classmethod
    def from_bytes(cls, data, context=None):
        """A network read from bytes produced by ``to_bytes`` (or a model file's contents)."""
        if isinstance(data, str):
            raise TypeError("from_bytes needs bytes (what to_bytes returns, or a model file's "
                            "contents), not str; for a path use Network.load")
        if isinstance(data, numbers.Integral):  # bytes(5) would be 5 zero bytes
            raise TypeError("from_bytes needs bytes (what to_bytes returns, or a model file's "
                            "contents), not %s" % type(data).__name__)
        buf = data if isinstance(data, bytes) else bytes(data)
        if context is None:
            h = _lib.new_handle("network", "cfnet_network_load_buffer", buf, len(buf))
        else:
            h = _lib.new_handle("network", "cfnet_network_load_buffer_in", context._h(), buf,
                                len(buf))
        return cls._from_handle(h, context)


class Metadata(MutableMapping):
    """A live view of a network's user metadata (cfnet_network_*_metadata): str keys and
    values (UTF-8 in the library; keys without control characters, bounded sizes, see the
    header), iterated in key order (sorted by their UTF-8 bytes)."""

    def __init__(self, net):
        self._net = net

    @staticmethod
    def _enc(s, what):
        if not isinstance(s, str):
            raise TypeError("metadata %s must be a str, not %s" % (what, type(s).__name__))
        if "\0" in s:
            raise ValueError("metadata %s contains a NUL character" % what)
        return s.encode("utf-8")

    @_using_net
    def __getitem__(self, key):
        v = ctypes.c_char_p()
        _lib.load().call("cfnet_network_get_metadata", self._net._h(), self._enc(key, "key"),
                         ctypes.byref(v))
        if v.value is None:
            raise KeyError(key)
        return v.value.decode("utf-8")

    @_using_net
    def __setitem__(self, key, value):
        _lib.load().call("cfnet_network_set_metadata", self._net._h(), self._enc(key, "key"),
                         self._enc(value, "value"))

    @_using_net
    def __delitem__(self, key):
        self[key]  # KeyError when absent
        _lib.load().call("cfnet_network_set_metadata", self._net._h(), self._enc(key, "key"),
                         None)

    @_using_net
    def __len__(self):
        return _lib.load().cfnet_network_metadata_count(self._net._h())

    @_using_net
    def __iter__(self):
        lib = _lib.load()
        h = self._net._h()
        keys = []
        for i in range(lib.cfnet_network_metadata_count(h)):
            k, v = ctypes.c_char_p(), ctypes.c_char_p()
            lib.call("cfnet_network_metadata_at", h, i, ctypes.byref(k), ctypes.byref(v))
            keys.append(k.value.decode("utf-8"))
        return iter(keys)

    def __repr__(self):
        if self._net._handle is None:  # repr must not raise (a notebook shows it)
            return "Metadata(<closed network>)"
        return "Metadata(%r)" % dict(self.items())


def remove_stale_temporaries(path):
    """Removes the temporary files that saves to ``path`` (``Network.save``, ``export_onnx``) of
    processes killed meanwhile left on this host, ``path.tmp.PID.HOST`` of a process that no
    longer exists and that no live writer holds locked; returns how many. A link at ``path`` is
    not followed (a save replaces the link and writes beside it). A folder that does not exist or
    cannot be read raises CfnetIOError."""
    removed = ctypes.c_size_t()
    _lib.load().call("cfnet_remove_stale_temporaries", fs_path(path), ctypes.byref(removed))
    return removed.value


def family_name(family):
    """The library's name of a preset family ("cfnet", "cnet", "gcnn", "gcnn-dft", "cnn",
    "gcnn-p4m")."""
    name = _lib.load().cfnet_family_name(int(family))
    if name is None:
        raise ValueError("unknown family %r" % (family,))
    return name.decode()


def _family(family):
    if isinstance(family, str):
        out = ctypes.c_int()
        _lib.load().call("cfnet_family_parse", family.encode("utf-8"), ctypes.byref(out))
        return Family(out.value)
    return to_enum(Family, family)


def classifier(family, channels, size, classes, width=0, seed=0):
    """The preset classifier of a family (a Family, or its name: "cfnet", "cnet", "gcnn",
    "gcnn-dft", "cnn", "gcnn-p4m") for N x channels x size x size images (size 16 to 512) and
    ``classes`` classes; ``width`` filters per layer (0: the default, 16; the p4 families use
    half, gcnn-p4m a third).
    See docs/guide.md for the architectures. Returns a Network."""
    h = _lib.new_handle("network", "cfnet_network_create_classifier", int(_family(family)),
                        to_int(channels, "channels"), to_int(size, "size"),
                        to_int(classes, "classes"), to_int(width, "width"),
                        to_int(seed, "seed", UINT64))
    return Network._from_handle(h)


def softmax_cross_entropy(logits, labels, grad=True):
    """Mean softmax cross-entropy of logits (N x K) against integer labels. Returns
    (loss, d loss / d logits) — the gradient only if ``grad``, else (loss, None)."""
    x = as_float32(logits, "logits", fn="softmax_cross_entropy")
    lab = as_labels(labels, x.shape[0] if x.ndim else None)
    loss = ctypes.c_float()
    g = np.empty_like(x) if grad else None
    lib = _lib.load()
    with Borrow(x) as tx:
        lp = lab.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        if g is None:
            lib.call("cfnet_softmax_cross_entropy", tx, lp, lab.size, ctypes.byref(loss), None)
        else:
            with Borrow(g) as tg:
                lib.call("cfnet_softmax_cross_entropy", tx, lp, lab.size, ctypes.byref(loss), tg)
    return loss.value, g
