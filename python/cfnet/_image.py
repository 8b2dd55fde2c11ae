"""Image helpers: rotation, shift and percentile stretch (cfnet_image_*)."""
import numpy as np

from . import _lib
from ._enums import to_int
from ._tensor import Borrow, as_float32, require_nonempty, stack_numbers, to_float32


def rotate(images, degrees):
    """Every S x S plane of ``images`` (..., S, S) rotated counter-clockwise by ``degrees``
    about its centre, as a new array: exact for multiples of 90, bilinear otherwise (zero
    outside)."""
    x = as_float32(images, "images", fn="image_rotate")
    out = np.empty_like(x)
    with Borrow(x) as tx, Borrow(out) as to:
        _lib.load().call("cfnet_image_rotate", tx, to, float(degrees))
    return out


def shift(images, dy, dx):
    """Every plane of ``images`` (..., H, W) shifted dy rows down and dx columns right, zero
    filled, as a new array (whole pixels: a fractional shift raises TypeError)."""
    x = as_float32(images, "images", fn="image_shift")
    out = np.empty_like(x)
    with Borrow(x) as tx, Borrow(out) as to:
        _lib.load().call("cfnet_image_shift", tx, to, to_int(dy, "dy"), to_int(dx, "dx"))
    return out


def normalize(images, low=0.1, high=99.9, inplace=False):
    """Percentile stretch per image and channel of an N x C x H x W array, or of one
    C x H x W image (as ``Network.prepare`` takes one): the ``low`` and ``high`` percentiles
    map to 0 and 1, then clip to [0, 1] (defaults: the original CFNet code's 0.1 and 99.9).
    Returns a new array of the shape given, or, with inplace=True, modifies ``images`` (which
    must then be a C-contiguous float32 array) and returns it. No images (0 x C x H x W, or
    []) are returned as they are (a float32 copy unless inplace).

    The channel is the axis before H and W: move the channel axis of H x W x C images first
    (``np.moveaxis(x, -1, -3)``); an N x H x W x C array is taken as H channels of W x C
    planes, without an error."""
    if inplace:
        if not (isinstance(images, np.ndarray) and images.dtype == np.float32
                and images.dtype.isnative and images.flags.c_contiguous
                and images.flags.aligned and images.flags.writeable):
            raise TypeError("normalize(inplace=True) needs a writable C-contiguous float32 array")
        x = images
    else:
        # a list stacked once (require_numbers and to_float32 stacked it each)
        x = to_float32(stack_numbers(images, "images"), "images", "image_normalize")
        if x is images:
            x = x.copy()
    if (x.ndim == 4 and x.shape[0] == 0) or x.shape == (0,):
        # no images (0 x C x H x W, or []): nothing to stretch, as infer gives no outputs
        return x
    require_nonempty(x, "images")
    if x.ndim == 3:  # one C x H x W image: a batch of one, through a view of the same memory
        with Borrow(x.reshape((1,) + x.shape)) as tx:
            _lib.load().call("cfnet_image_normalize", tx, float(low), float(high))
        return x
    with Borrow(x) as tx:
        _lib.load().call("cfnet_image_normalize", tx, float(low), float(high))
    return x
