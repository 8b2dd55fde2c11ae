"""Python binding of libcfnet (rotation-equivariant and -invariant networks for microscopy).

A thin ctypes layer over the C API in include/cfnet/cfnet.h; no compiler step. libcfnet is found
through $CFNET_LIBRARY (path of libcfnet.so), then ``pkg-config --variable=libdir cfnet``, then
the lib/ of the prefix the package was installed into (``make install-python``), then the build
tree (lib/ beside python/), then the dynamic linker's search path, and is loaded on first use
(``library_path()`` says which).

    import numpy as np, cfnet
    with cfnet.Network(1, 16, 16, seed=1) as net:
        net.append(cfnet.conic_conv(8, 3, R=2))
        net.append(cfnet.relu())
        net.append(cfnet.pool())
        net.append(cfnet.dft_projection(8))
        net.append(cfnet.dft_magnitude())
        net.append(cfnet.dense(3))
        net.configure(learning_rate=5e-3)
        loss = net.train_step(images, labels)        # images: N x 1 x 16 x 16 float32
        print(net.invariance(images[:4]))            # ~1e-7: invariant to quarter turns
        net.save("model.safetensors")

Errors raise CfnetError subclasses (``status``, ``message``). Arrays that are not C-contiguous
float32 are copied with a CopyWarning. See the class docstrings for ownership rules.
"""
from ._context import Context
from ._enums import (AugRotation, Family, Interp, LayerKind, Limit, Mode, Option, Optimizer, Padding,
                     PoolMode, ONNX_OPSET, ONNX_PROBABILITIES, PREPARE_PAD, SAVE_ALLOW_NONFINITE, SAVE_OPTIMIZER, Status,
                     SumKind)
from ._errors import (CancelledError, CfnetError, CfnetIOError, CopyWarning, FormatError,
                      InternalError, InvalidArgumentError, LimitError, NumericError,
                      OutOfMemoryError, ShapeMismatchError, StateError, UnsupportedError)
from ._image import normalize, rotate, shift
from ._layer import (Layer, batch_norm, conic_conv, conic_conv_mirror, conv2d, dense, dft_magnitude, dft_projection,
                     dropout, group_pool, kind_name, p4_conv, p4_lift, p4m_conv,
                     p4m_dft_magnitude, p4m_lift, pool, relu, softmax)
from ._network import (Network, classifier, family_name, option_bounds, option_default,
                       remove_stale_temporaries, softmax_cross_entropy)
from ._tensor import MAX_DIMS, Tensor



def _source_version():
    """The version in the source tree's header (the package is used from python/ in place)."""
    import os
    import re
    header = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir,
                          "include", "cfnet", "cfnet.h")
    try:
        with open(header, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return "unknown"
    parts = [re.search(r"^#define CFNET_VERSION_%s (\d+)" % p, text, re.M)
             for p in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(m.group(1) for m in parts) if all(parts) else "unknown"


try:  # an installed package: written by setup.py from the header at build time
    from ._version import __version__
except ImportError:
    __version__ = _source_version()


def library_path():
    """Path of the libcfnet shared library in use (loading it if needed)."""
    from . import _lib
    return _lib.load().path


def version():
    """Version string of the loaded libcfnet, e.g. "0.2.0"."""
    from . import _lib
    return _lib.load().cfnet_version_string().decode()


def version_number():
    """Version of the loaded libcfnet as one integer, major * 10000 + minor * 100 + patch."""
    from . import _lib
    return _lib.load().cfnet_version_number()


def status_string(status):
    """The library's name of a status code."""
    from . import _lib
    return _lib.load().cfnet_status_string(int(status)).decode()


def last_error():
    """This thread's last libcfnet error message (exceptions already carry it)."""
    from . import _lib
    return _lib.load().cfnet_last_error().decode("utf-8", "replace")


__all__ = [
    "Context", "Limit", "AugRotation", "Interp", "LayerKind", "Mode", "Option", "Optimizer", "Padding", "PoolMode",
    "ONNX_OPSET", "ONNX_PROBABILITIES", "PREPARE_PAD", "SAVE_ALLOW_NONFINITE", "SAVE_OPTIMIZER", "Status", "CfnetError", "CfnetIOError", "CopyWarning", "FormatError",
    "InternalError", "InvalidArgumentError", "LimitError", "OutOfMemoryError",
    "ShapeMismatchError", "StateError", "UnsupportedError", "normalize", "rotate", "shift",
    "Layer", "batch_norm", "conic_conv", "conv2d", "dense", "dft_magnitude", "dft_projection",
    "dropout", "group_pool", "kind_name", "p4_conv", "p4_lift", "p4m_conv", "p4m_dft_magnitude",
    "p4m_lift", "pool", "relu", "softmax", "conic_conv_mirror",
    "Network", "option_bounds", "option_default", "softmax_cross_entropy", "MAX_DIMS", "Tensor",
    "library_path", "version",
    "version_number", "status_string", "last_error",
    "Family", "classifier", "family_name", "remove_stale_temporaries", "NumericError", "CancelledError", "SumKind",
]
