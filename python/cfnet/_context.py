"""Contexts: the loader's size limits (cfnet_context)."""
import ctypes
import weakref

from . import _lib
from ._enums import UINT64, Limit, to_enum, to_int
from ._errors import StateError
from ._handle import Handle


class Context(Handle):
    """A cfnet_context: the limits applied when loading models (JSON header bytes, tensor
    bytes). Pass it to ``Network(..., context=ctx)``, ``Network.load(path, context=ctx)`` or
    ``Network.from_bytes(data, context=ctx)``.

    The library requires a context to outlive the networks created in it: every such Network
    keeps its Context alive, and ``close()`` refuses (StateError) while one of them is open.
    The binding does not expose the allocator hooks (cfnet_context_set_allocator).
    """

    _copy_hint = ""

    def __init__(self, header_bytes=None, tensor_bytes=None):
        self._handle = _lib.new_handle("context", "cfnet_context_create")
        self._finalizer = weakref.finalize(self, _lib.free_context, self._handle)
        self._networks = weakref.WeakSet()
        if header_bytes is not None:
            self.set_limit(Limit.HEADER_BYTES, header_bytes)
        if tensor_bytes is not None:
            self.set_limit(Limit.TENSOR_BYTES, tensor_bytes)

    def close(self):
        """Frees the context (idempotent); refused while a network created in it is open."""
        if self._handle is None:
            return
        open_nets = [n for n in self._networks if not n.closed]
        if open_nets:
            raise StateError(-8, "context_free: %d network(s) created in this context are still "
                             "open" % len(open_nets))
        self._handle = None
        self._release()

    def _views_alive(self):
        # A closed network whose memory is still viewed by numpy needs the context: it is
        # freed after them.
        return any(n._finalizer is not None and n._finalizer.alive for n in self._networks)

    def set_limit(self, limit, value):
        """Sets a loader limit (Limit.HEADER_BYTES or TENSOR_BYTES, or "header_bytes", ...)."""
        _lib.load().call("cfnet_context_set_limit", self._h(), int(to_enum(Limit, limit)),
                         to_int(value, "limit", UINT64))

    def get_limit(self, limit):
        """The current value of a loader limit (Limit.HEADER_BYTES or TENSOR_BYTES, or its
        name)."""
        v = ctypes.c_uint64()
        _lib.load().call("cfnet_context_get_limit", self._h(), int(to_enum(Limit, limit)),
                         ctypes.byref(v))
        return v.value

    def _register(self, network):
        self._networks.add(network)

    def __repr__(self):
        if self._handle is None:
            return "<cfnet.Context (closed)>"
        return "<cfnet.Context header_bytes=%d tensor_bytes=%d>" % (
            self.get_limit(Limit.HEADER_BYTES), self.get_limit(Limit.TENSOR_BYTES))
