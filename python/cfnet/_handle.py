"""The lifetime plumbing shared by every handle-owning class."""
import contextlib
import threading
import weakref

# Guards Handle._busy (a read-modify-write) on interpreters without a global lock.
_busy_lock = threading.Lock()


class Handle:
    """Base of Tensor, Layer, Network and Context: `_handle` is the C pointer (None once
    closed); subclasses define close() and may refine _closed_error().

    Memory that numpy views point into (``Tensor.numpy()``, ``Layer.params``, ...) must not be
    freed while a view is alive: the owner tracks its views (``_track``), and ``_release``
    frees the handle at once when none is alive, else when the last one goes. Until then the
    object is closed for every call but its memory stays valid."""

    _handle = None
    _finalizer = None  # weakref.finalize freeing the C object; None if Python does not own it
    _views = None      # weak references to the live numpy views into this object's memory

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

    # Copies and pickles would share (or, in another process, dangle) the C pointer: refused.
    def _no_copy(self):
        raise TypeError("cannot copy or pickle a cfnet.%s: it holds a libcfnet handle%s"
                        % (type(self).__name__, self._copy_hint))

    _copy_hint = ""

    def __reduce_ex__(self, protocol):
        self._no_copy()

    def __copy__(self):
        self._no_copy()

    def __deepcopy__(self, memo):
        self._no_copy()

    # ---- numpy views into the handle's memory ----

    def _track(self, view):
        """Records a numpy view (its base object) into this object's memory."""
        if self._views is None:
            self._views = set()
        views = self._views
        owner = weakref.ref(self)

        def gone(ref):
            views.discard(ref)
            obj = owner()
            if obj is not None and not views and obj._handle is None:
                obj._release()
        views.add(weakref.ref(view, gone))

    _busy = 0  # calls into libcfnet in progress on this object (_in_call)

    @contextlib.contextmanager
    def _in_call(self):
        """Around a libcfnet call that uses this object's memory (Network methods, layer
        forward and backward; the training calls also run Python callbacks): a close()
        meanwhile, from another thread or from inside a callback, marks the object closed but
        keeps its memory until the call has returned (it used to be freed under the call: a
        crash)."""
        self._call_begin()
        try:
            yield
        finally:
            self._call_end()

    def _call_begin(self):
        with _busy_lock:  # the count stays exact when several threads run calls
            self._busy += 1

    def _call_end(self):
        with _busy_lock:
            self._busy -= 1
        if self._handle is None:
            self._release()

    def _views_alive(self):
        return bool(self._views) or self._busy > 0

    def _release(self):
        """Frees the C object (once), unless a numpy view into it is still alive: then it is
        freed when the last view goes (or with this object, whichever comes first)."""
        if self._finalizer is not None and self._finalizer.alive and not self._views_alive():
            self._finalizer()
            self._released()

    def _released(self):
        """Called after the C object was freed by _release (Network: its context may go)."""
