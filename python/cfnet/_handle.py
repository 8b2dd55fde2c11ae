"""The lifetime plumbing shared by every handle-owning class."""


class Handle:
    """Base of Tensor, Layer, Network and Context: `_handle` is the C pointer (None once
    closed); subclasses define close() and may refine _closed_error()."""

    _handle = None

    def _closed_error(self):
        return ValueError("operation on a closed " + type(self).__name__)

    def _h(self):
        if self._handle is None:
            raise self._closed_error()
        return self._handle

    @property
    def handle(self):
        """The raw C pointer (an int), for other ctypes code."""
        return self._h()

    @property
    def closed(self):
        return self._handle is None

    def close(self):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
