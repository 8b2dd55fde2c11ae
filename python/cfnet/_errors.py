"""Exceptions: one CfnetError subclass per cfnet_status, plus the copy warning."""


class CfnetError(Exception):
    """A libcfnet call failed. ``status`` is the cfnet_status code (negative), ``message`` the
    library's one-line description (cfnet_last_error() at the time of the failure)."""

    status = None

    def __init__(self, status, message):
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self):
        return "%s (%s)" % (self.message or "libcfnet error", STATUS_NAMES.get(self.status, "unknown status"))


class InvalidArgumentError(CfnetError, ValueError):
    """CFNET_E_INVALID_ARGUMENT: NULL pointer, out-of-range value, bad option."""


class OutOfMemoryError(CfnetError, MemoryError):
    """CFNET_E_OUT_OF_MEMORY: an allocation failed; nothing was changed."""


class ShapeMismatchError(CfnetError, ValueError):
    """CFNET_E_SHAPE_MISMATCH: tensor shapes do not fit the operation."""


class CfnetIOError(CfnetError):
    """CFNET_E_IO: reading or writing a file failed."""


class FormatError(CfnetError):
    """CFNET_E_FORMAT: malformed or inconsistent serialized data."""


class UnsupportedError(CfnetError):
    """CFNET_E_UNSUPPORTED: a valid request that this build or layer cannot do (also raised by
    the binding for a function the loaded library does not export)."""


class InternalError(CfnetError):
    """CFNET_E_INTERNAL: a bug in libcfnet."""


class StateError(CfnetError):
    """CFNET_E_STATE: the call is not valid in the object's current state."""


class LimitError(CfnetError):
    """CFNET_E_LIMIT: a size limit was exceeded."""


class NumericError(CfnetError, ArithmeticError):
    """CFNET_E_NUMERIC: non-finite numbers (NaN or Inf) appeared."""


class CancelledError(CfnetError):
    """CFNET_E_CANCELLED: a host callback asked to stop; the work done so far is kept."""


class CopyWarning(UserWarning):
    """An array had to be copied (not C-contiguous, aligned, native float32) before it could be
    handed to libcfnet."""


ERRORS = {
    -1: InvalidArgumentError,
    -2: OutOfMemoryError,
    -3: ShapeMismatchError,
    -4: CfnetIOError,
    -5: FormatError,
    -6: UnsupportedError,
    -7: InternalError,
    -8: StateError,
    -9: LimitError,
    -10: NumericError,
    -11: CancelledError,
}

STATUS_NAMES = {
    0: "ok",
    -1: "invalid argument",
    -2: "out of memory",
    -3: "shape mismatch",
    -4: "input/output error",
    -5: "format error",
    -6: "unsupported",
    -7: "internal error",
    -8: "invalid state",
    -9: "limit exceeded",
    -10: "non-finite numbers",
    -11: "cancelled",
}


for _cls in [CfnetError, CopyWarning] + list(ERRORS.values()):
    _cls.__module__ = "cfnet"


def check(status, message):
    """Raises the CfnetError subclass for a non-zero status; ``message`` is bytes or str."""
    if status == 0:
        return
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    raise ERRORS.get(status, CfnetError)(status, message)
