"""Tensors: numpy arrays handed to libcfnet without copying, and the Tensor handle."""
import ctypes
import sys
import warnings
import weakref

import numpy as np

from . import _lib
from ._enums import INT64, to_int
from ._errors import CopyWarning, InvalidArgumentError
from ._handle import Handle

MAX_DIMS = 5

_PACKAGE = __name__.rpartition(".")[0]  # "cfnet"


def _in_package(frame):
    """Whether ``frame`` runs code of this package: told by its module's name, not by its
    file's folder (the code's file name is the build's in .pyc files compiled elsewhere, in a
    sourceless or frozen distribution, and then pointed the warnings into the binding)."""
    name = frame.f_globals.get("__name__")
    return isinstance(name, str) and (name == _PACKAGE or name.startswith(_PACKAGE + "."))


def user_stacklevel():
    """The ``stacklevel`` for a warnings.warn made by the function calling this one that points
    at the first frame outside this package: the user's line, however many of the binding's
    own functions (a method's ``_using`` wrapper, ``_batch``) are between."""
    f, level = sys._getframe(1), 1
    while f is not None and _in_package(f):
        f, level = f.f_back, level + 1
    return level


def _shape_array(shape):
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError("a shape must be a sequence of integers such as (2, 3), not %s"
                        % type(shape).__name__) from None
    dims = tuple(to_int(s, "a dimension", INT64) for s in dims)
    return (ctypes.c_int64 * max(len(dims), 1))(*dims), len(dims)


def is_passable(a):
    """True if ``a`` can be handed to libcfnet as is: a C-contiguous, aligned float32 ndarray in
    native byte order."""
    return (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.dtype.isnative
            and a.flags.c_contiguous and a.flags.aligned)


def require_nonempty(a, what):
    """ValueError naming ``what`` for an array with no elements: libcfnet tensors have at least
    one element in every dimension (the library would only name its internal tensor_wrap)."""
    if a.size == 0:
        raise ValueError("%s is empty (shape %s): libcfnet needs at least one element along every "
                         "axis (e.g. at least one image)" % (what, tuple(a.shape)))
    return a


def require_numbers(a, what):
    """TypeError for None, or for an array (or list) of anything but booleans, integers and
    real floats. numpy would turn each None into NaN, so a forgotten argument became an image
    of NaN, or a NaN written into a tensor without a word; it would drop the imaginary part of
    complex numbers and parse strings."""
    if a is None:
        raise TypeError("%s must be an array of numbers, not None" % what)
    if isinstance(a, np.ndarray):
        dtype = a.dtype
    else:
        try:
            dtype = np.asarray(a).dtype
        except ValueError:  # ragged: numpy's own conversion says what is wrong
            return
    if dtype.kind == "O":
        if isinstance(a, np.ndarray):
            raise TypeError("%s must be an array of numbers, not dtype object" % what)
        raise TypeError("%s must be an array of numbers (it holds None or other "
                        "objects)" % what)
    if dtype.kind not in "biuf":
        raise TypeError("%s must be an array of real numbers, not dtype %s" % (what, dtype))


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _stack(a, what):
    """np.asarray(a) for a list, tuple or scalar; a list of arrays of different shapes raises a
    ValueError saying so (numpy's own says "setting an array element with a sequence")."""
    try:
        return np.asarray(a)
    except ValueError:
        if not isinstance(a, (list, tuple)):
            raise
        shapes = sorted({tuple(np.shape(v)) for v in a})
        raise ValueError("%s: a list of arrays of different shapes (%s) is not one N x C x H x W "
                         "batch: crop or pad them to one size first (Network.prepare does, "
                         "for a model trained by the cfnet command), or pass them one at a "
                         "time" % (what, ", ".join("x".join(map(str, sh)) or "a number"
                                                   for sh in shapes[:4])
                                   + (", ..." if len(shapes) > 4 else ""))) from None


def stack_numbers(a, what, stacked=None):
    """``a`` as an ndarray (``a`` itself when it is one; a list or tuple stacked once, by
    _stack, or ``stacked`` when the caller did that already) after require_numbers: the one
    conversion of a list, which the checks and the float32 cast that follow are given instead
    of the list."""
    src = a if isinstance(a, np.ndarray) else stacked if stacked is not None else _stack(a, what)
    # (objects: the list's own words, "it holds None or other objects")
    require_numbers(a if src.dtype.kind == "O" else src, what)
    return src


def to_float32(a, what, fn=None, place=None):
    """``a`` (an ndarray, or what np.asarray takes) as a C-contiguous float32 ndarray (``a``
    itself when it already is one). A finite value that float32 cannot hold (float64 or long
    double beyond +-3.4e38) raises InvalidArgumentError naming it and where it is: the cast
    would make it an infinity, which the library would report as if the data held one (or
    which it would compute with). The one check for every float64 -> float32 conversion of
    the binding. ``fn`` (the C function's name) starts the message; ``place(index)`` words
    the position (default: ``what[i, j, ...]``)."""
    src = a if isinstance(a, np.ndarray) else _stack(a, what)
    with np.errstate(over="ignore"):  # numpy's overflow warning: the error below says more
        x = np.ascontiguousarray(src, dtype=np.float32)
    if src.dtype.kind == "f" and src.dtype.itemsize > 4 and x.size and not np.isfinite(x).all():
        big = np.isinf(x) & np.isfinite(src)
        if big.any():
            idx = tuple(int(v) for v in np.unravel_index(int(np.argmax(big)), src.shape))
            if place is not None:
                where = place(idx)
            else:
                where = "%s[%s]" % (what, ", ".join(map(str, idx))) if idx else what
            raise InvalidArgumentError(-1, "%s%s is %r, beyond the float32 range (+-%.7g) in "
                                       "which libcfnet computes; scale the values first"
                                       % (fn + ": " if fn else "", where, float(src[idx]),
                                          FLOAT32_MAX))
    return x


def as_float32(a, what="array", fn=None, stacked=None):
    """``a`` itself if it is passable, else a C-contiguous float32 copy (with a CopyWarning when
    ``a`` was already an ndarray: lists and scalars are expected to be converted), pointing at
    the user's line (user_stacklevel). An empty
    array raises ValueError (require_nonempty); a value beyond float32's range
    InvalidArgumentError (to_float32, whose message ``fn`` starts). ``stacked``: the ndarray
    the caller made of the list ``a`` already (a list is converted once, not again here)."""
    if is_passable(a):
        return require_nonempty(a, what)
    was_array = isinstance(a, np.ndarray)
    src = stack_numbers(a, what, stacked)
    require_nonempty(src, what)
    out = to_float32(src, what, fn)
    if was_array:
        warnings.warn("%s (%s, %s) copied to a C-contiguous float32 array for libcfnet"
                      % (what, a.dtype, "contiguous" if a.flags.c_contiguous else "strided"),
                      CopyWarning, stacklevel=user_stacklevel())
    return out


def warn_nonfinite(out, what, inputs=None):
    """A RuntimeWarning naming the first image whose output in ``out`` (N x ...) holds NaN or
    an infinity: libcfnet returns them with status OK from cfnet_network_infer, _forward and
    cfnet_layer_forward (the arithmetic is not checked), whereas probabilities, predict and
    evaluate raise NumericError for them. ``inputs`` (N x ..., for a call that does not refuse
    non-finite inputs, as layer_forward does not): only images whose input is finite count,
    a NaN given being a NaN returned. The one check of infer, Network.forward and
    Layer.forward."""
    if not out.ndim or not out.shape[0]:
        return
    bad = ~np.isfinite(out.reshape(out.shape[0], -1)).all(axis=1)
    if inputs is not None and bad.any():
        bad &= np.isfinite(inputs.reshape(inputs.shape[0], -1)).all(axis=1)
    if bad.any():
        warnings.warn("%s: the output for image %d%s is not finite (NaN or infinite: parameters "
                      "too large, diverged or edited?); returned as computed"
                      % (what, int(np.argmax(bad)),
                         " (and %d more)" % (int(bad.sum()) - 1) if bad.sum() > 1 else ""),
                      RuntimeWarning, stacklevel=user_stacklevel())


_INT32_MAX = 2**31 - 1


def as_labels(labels, n=None, what="labels"):
    """Labels as a C-contiguous int32 array. Only integers are accepted: an integer ndarray of
    any width (or a list of Python ints), one dimension, every value in [0, 2**31 - 1], and
    ``n`` of them when ``n`` is given. Floats, booleans, strings and 2-D arrays raise
    TypeError or ValueError saying what was wrong (nothing is truncated, wrapped, parsed or
    flattened)."""
    if isinstance(labels, (str, bytes)):
        raise TypeError("%s must be integers, not a %s" % (what, type(labels).__name__))
    lab = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
    if lab.size == 0 and lab.dtype.kind == "f" and not isinstance(labels, np.ndarray):
        lab = lab.astype(np.int32)  # [] converts to float64
    if lab.dtype.kind in "US" or (lab.dtype.kind == "O" and lab.size
                                  and all(isinstance(v, (str, bytes)) for v in lab.flat)):
        raise TypeError("%s must be integer class indices 0 .. K-1, not strings (dtype %s): "
                        "for class names, classes, idx = np.unique(labels, "
                        "return_inverse=True) gives the indices idx to pass, and classes[i] "
                        "names class i" % (what, lab.dtype))
    if lab.dtype.kind not in "iu":
        raise TypeError("%s must be an integer array, not dtype %s (convert explicitly, e.g. "
                        "labels.astype(np.int32), if the values are whole numbers)"
                        % (what, lab.dtype))
    if lab.ndim != 1:
        raise ValueError("%s must be a 1-D array (one label per image), not shape %s"
                         % (what, lab.shape))
    if n is not None and lab.size != n:
        raise ValueError("%d %s for %d images" % (lab.size, what, n))
    if lab.size:
        lo, hi = int(lab.min()), int(lab.max())
        if lo < 0 or hi > _INT32_MAX:
            bad = lo if lo < 0 else hi
            raise ValueError("%s: %d is not a class index (0 .. 2**31 - 1)" % (what, bad))
    return np.ascontiguousarray(lab, dtype=np.int32)


def as_indices(order, what="order"):
    """Sample indices as a C-contiguous int64 array: a non-empty 1-D integer array (or list of
    ints). Floats, booleans, strings and 2-D arrays raise TypeError or ValueError (nothing is
    truncated, parsed or flattened); the library checks the range."""
    if isinstance(order, (str, bytes)):
        raise TypeError("%s must be integers, not a %s" % (what, type(order).__name__))
    a = order if isinstance(order, np.ndarray) else np.asarray(order)
    if a.size == 0:
        raise ValueError("%s is empty" % what)
    if a.dtype.kind not in "iu":
        raise TypeError("%s must be an integer array of sample indices, not dtype %s"
                        % (what, a.dtype))
    if a.ndim != 1:
        raise ValueError("%s must be a 1-D array of sample indices, not shape %s"
                         % (what, a.shape))
    if a.dtype.kind == "u" and int(a.max()) > 2**63 - 1:
        raise ValueError("%s: %d is not a sample index" % (what, int(a.max())))
    return np.ascontiguousarray(a, dtype=np.int64)


def require_writeable(a, what):
    """Raises ValueError if libcfnet could write through ``a`` but numpy says it must not."""
    if not a.flags.writeable:
        raise ValueError("%s is read-only (e.g. a read-only memmap or np.frombuffer over bytes); "
                         "libcfnet may write to it: pass a writeable array, or a copy "
                         "(np.array(a)), or use Tensor.from_array" % what)


class _View:
    """Exposes C memory to numpy; the ndarray keeps this object, hence ``owner``, alive."""

    def __init__(self, ptr, shape, owner, readonly=False):
        self.__array_interface__ = {
            "data": (ptr, readonly),
            "shape": tuple(int(s) for s in shape),
            "typestr": "<f4",
            "version": 3,
        }
        self._owner = owner


def view(ptr, shape, owner, readonly=False, memory_owner=None):
    """An ndarray over ``prod(shape)`` floats of C memory at ``ptr``, keeping ``owner`` alive;
    ``memory_owner`` (default ``owner``), the Handle that frees that memory, defers freeing it
    while the view is alive (Handle._release)."""
    if not ptr:
        raise ValueError("no data")
    base = _View(ptr, shape, owner, readonly)
    (memory_owner if memory_owner is not None else owner)._track(base)
    return np.asarray(base)


def handle_shape(lib, fn, handle):
    """Shape from a cfnet_*_shape(handle, &ndim, shape) call, as a tuple."""
    nd = ctypes.c_int()
    buf = (ctypes.c_int64 * MAX_DIMS)()
    lib.call(fn, handle, ctypes.byref(nd), buf)
    return tuple(buf[i] for i in range(nd.value))


class Borrow:
    """A temporary cfnet_tensor over an array's buffer, freed on exit of the ``with`` block.
    The array must be passable (see as_float32)."""

    __slots__ = ("array", "handle")

    def __init__(self, array):
        self.array = array
        self.handle = None

    def __enter__(self):
        if self.array.ndim < 1 or self.array.ndim > MAX_DIMS:
            raise ValueError("arrays for libcfnet have 1..%d dimensions, not %d"
                             % (MAX_DIMS, self.array.ndim))
        shape, nd = _shape_array(self.array.shape)
        self.handle = _lib.new_handle("tensor", "cfnet_tensor_wrap",
                                      ctypes.c_void_p(self.array.ctypes.data), nd, shape)
        return self.handle

    def __exit__(self, *exc):
        if self.handle is not None:
            _lib.free_tensor(self.handle)
            self.handle = None


def _tensor_dims(a):
    """``a.shape``; ValueError for an array of no or more than MAX_DIMS dimensions, the one
    check of Tensor.wrap and Tensor.from_array."""
    if a.ndim < 1 or a.ndim > MAX_DIMS:
        raise ValueError("tensors have 1..%d dimensions, not %d" % (MAX_DIMS, a.ndim))
    return a.shape


class Tensor(Handle):
    """A cfnet_tensor handle: float32, row-major, 1 to 5 dimensions.

    ``Tensor(shape)`` allocates a zero-filled tensor owned by libcfnet; ``Tensor.wrap(array)``
    views a numpy array without copying (the Tensor keeps a reference to the array, so the
    buffer lives as long as the handle). ``numpy()`` returns a writable view of the data.

    The handle is freed by ``close()``, at the end of a ``with`` block, or when the object is
    garbage-collected. Views returned by ``numpy()`` keep the Tensor alive; after ``close()``
    they stay valid, and the memory is freed when the last of them goes.
    """

    _copy_hint = " (copy the data instead: Tensor.from_array(t.numpy()))"

    def __init__(self, shape):
        shape_arr, nd = _shape_array(shape)
        self._array = None
        self._handle = _lib.new_handle("tensor", "cfnet_tensor_create", nd, shape_arr)
        self._finalizer = weakref.finalize(self, _lib.free_tensor, self._handle)

    @classmethod
    def wrap(cls, array):
        """A Tensor over ``array``'s memory. Non-float32 or non-contiguous arrays are copied
        (with a CopyWarning); the copy, not ``array``, is then what the Tensor views. A
        read-only array raises ValueError: the tensor's data is writable (fill, copy_in,
        numpy()), so wrapping it would write through memory numpy marks immutable."""
        a = as_float32(array, "Tensor.wrap input")
        require_writeable(a, "Tensor.wrap input")
        shape_arr, nd = _shape_array(_tensor_dims(a))
        t = cls.__new__(cls)
        t._array = a
        t._handle = _lib.new_handle("tensor", "cfnet_tensor_wrap",
                                    ctypes.c_void_p(a.ctypes.data), nd, shape_arr)
        t._finalizer = weakref.finalize(t, _lib.free_tensor, t._handle)
        return t

    @classmethod
    def from_array(cls, array):
        """A new library-owned Tensor holding a copy of ``array``."""
        what = "Tensor.from_array input"
        a = to_float32(stack_numbers(array, what), what)  # a list stacked once
        try:  # wrap's words, not tensor_create's; still the InvalidArgumentError it raised
            _tensor_dims(require_nonempty(a, what))
        except ValueError as e:
            raise InvalidArgumentError(-1, str(e)) from None
        t = cls(a.shape)
        t.copy_in(a)
        return t

    def close(self):
        """Frees the handle (idempotent); while a view from numpy() is alive, its memory is
        kept until the last such view goes. A wrapped array stays valid."""
        if self._handle is not None:
            self._handle = None
            self._release()

    def _released(self):
        self._array = None

    @property
    def shape(self):
        """The shape, as a tuple."""
        return handle_shape(_lib.load(), "cfnet_tensor_shape", self._h())

    @property
    def ndim(self):
        """Number of dimensions (1 to 5)."""
        return _lib.load().cfnet_tensor_ndim(self._h())

    @property
    def size(self):
        """Number of elements."""
        return _lib.load().cfnet_tensor_numel(self._h())

    def numpy(self):
        """A writable ndarray view of the data with the current shape (no copy)."""
        lib = _lib.load()
        return view(lib.cfnet_tensor_data(self._h()), self.shape, self)

    def copy_in(self, array):
        """Copies ``array`` (same number of elements) into the tensor."""
        a = to_float32(stack_numbers(array, "copy_in input"), "copy_in input",
                       "tensor_copy_in")  # a list stacked once
        _lib.load().call("cfnet_tensor_copy_in", self._h(), ctypes.c_void_p(a.ctypes.data),
                         a.size)

    def copy_out(self):
        """A new ndarray holding a copy of the data."""
        out = np.empty(self.shape, dtype=np.float32)
        _lib.load().call("cfnet_tensor_copy_out", self._h(), ctypes.c_void_p(out.ctypes.data),
                         out.size)
        return out

    def fill(self, value):
        """Sets every element to ``value``."""
        _lib.load().call("cfnet_tensor_fill", self._h(), float(value))

    def zero(self):
        """Sets every element to 0."""
        _lib.load().call("cfnet_tensor_zero", self._h())

    def reshape(self, shape):
        """Changes the shape in place (same element count); existing numpy() views keep the old
        shape."""
        shape_arr, nd = _shape_array(shape)
        _lib.load().call("cfnet_tensor_reshape", self._h(), nd, shape_arr)

    def __repr__(self):
        if self._handle is None:
            return "<cfnet.Tensor (closed)>"
        return "<cfnet.Tensor shape=%s%s>" % (self.shape, " wrapping an array" if self._array is not None else "")
