"""Locating and loading libcfnet, and the ctypes prototypes of its public functions.

The library is looked up, in order, at:

1. ``$CFNET_LIBRARY``: the path of the shared library itself (``.../libcfnet.so``);
2. ``pkg-config --variable=libdir cfnet``: an installed copy (honours ``PKG_CONFIG_PATH``);
3. the prefix the package was installed into: ``PREFIX/lib`` when the package is in
   ``PREFIX/lib/pythonX.Y/site-packages`` (or ``dist-packages``), as ``make install-python``
   puts it next to ``make install``'s library;
4. the build tree: ``lib/`` next to the ``python/`` directory that holds this package;
5. the dynamic linker's own search (``ctypes.util.find_library("cfnet")``).

The first usable one is loaded. A candidate that is not a loadable library, or a libcfnet this
binding cannot use (another major version, an older minor version, or lacking a function of
those versions), is passed over for the next one; when none is usable, the error names each
candidate and why it was refused. ``$CFNET_LIBRARY`` is the exception: the user chose it, so
if it is unusable that is the error, and nothing else is tried.

Nothing is loaded at import time: the first call that needs the library loads it, so modules
that do not need it (and ``import cfnet`` itself) work without libcfnet.
"""
import ctypes
import ctypes.util
import os
import shutil
import subprocess
import threading

from ._errors import check, UnsupportedError

# The binding is written against this API version (major, minor): a library with another
# major version, or an older minor version, is refused.
API_VERSION = (0, 1)

_handle = ctypes.c_void_p
_int = ctypes.c_int
_i32 = ctypes.c_int32
_i64 = ctypes.c_int64
_u64 = ctypes.c_uint64
_dbl = ctypes.c_double
_flt = ctypes.c_float
_size = ctypes.c_size_t
_str = ctypes.c_char_p
_p_handle = ctypes.POINTER(ctypes.c_void_p)
_p_int = ctypes.POINTER(ctypes.c_int)
_p_i32 = ctypes.POINTER(ctypes.c_int32)
_p_i64 = ctypes.POINTER(ctypes.c_int64)
_p_flt = ctypes.POINTER(ctypes.c_float)
_p_dbl = ctypes.POINTER(ctypes.c_double)
_p_size = ctypes.POINTER(ctypes.c_size_t)
_status = ctypes.c_int
_void = None

# name: (restype, argtypes). Functions returning cfnet_status are checked by the callers.
PROTOTYPES = {
    "cfnet_version_number": (ctypes.c_uint, []),
    "cfnet_version_string": (_str, []),
    "cfnet_status_string": (_str, [_int]),
    "cfnet_last_error": (_str, []),
    "cfnet_clear_error": (_void, []),
    # tensors
    "cfnet_tensor_create": (_status, [_int, _p_i64, _p_handle]),
    "cfnet_tensor_wrap": (_status, [ctypes.c_void_p, _int, _p_i64, _p_handle]),
    "cfnet_tensor_wrap_const": (_status, [ctypes.c_void_p, _int, _p_i64, _p_handle]),
    "cfnet_tensor_free": (_void, [_handle]),
    "cfnet_tensor_ndim": (_int, [_handle]),
    "cfnet_tensor_dim": (_i64, [_handle, _int]),
    "cfnet_tensor_shape": (_status, [_handle, _p_int, _p_i64]),
    "cfnet_tensor_numel": (_i64, [_handle]),
    "cfnet_tensor_data": (ctypes.c_void_p, [_handle]),
    "cfnet_tensor_copy_in": (_status, [_handle, ctypes.c_void_p, _i64]),
    "cfnet_tensor_copy_out": (_status, [_handle, ctypes.c_void_p, _i64]),
    "cfnet_tensor_fill": (_status, [_handle, _flt]),
    "cfnet_tensor_zero": (_status, [_handle]),
    "cfnet_tensor_reshape": (_status, [_handle, _int, _p_i64]),
    # layers
    "cfnet_layer_conv2d_create": (_status, [_int, _int, _int, _int, _p_handle]),
    "cfnet_layer_conic_conv_create": (_status, [_int, _int, _int, _int, _int, _p_handle]),
    "cfnet_layer_p4_lift_create": (_status, [_int, _int, _int, _p_handle]),
    "cfnet_layer_p4_conv_create": (_status, [_int, _int, _int, _p_handle]),
    "cfnet_layer_group_pool_create": (_status, [_int, _p_handle]),
    "cfnet_layer_dft_projection_create": (_status, [_int, _int, _int, _p_handle]),
    "cfnet_layer_dft_magnitude_create": (_status, [_p_handle]),
    "cfnet_layer_dense_create": (_status, [_int, _p_handle]),
    "cfnet_layer_relu_create": (_status, [_p_handle]),
    "cfnet_layer_pool_create": (_status, [_int, _int, _int, _p_handle]),
    "cfnet_layer_batch_norm_create": (_status, [_flt, _flt, _p_handle]),
    "cfnet_layer_dropout_create": (_status, [_flt, _p_handle]),
    "cfnet_layer_softmax_create": (_status, [_p_handle]),
    "cfnet_layer_p4m_lift_create": (_status, [_int, _int, _int, _p_handle]),
    "cfnet_layer_p4m_conv_create": (_status, [_int, _int, _int, _p_handle]),
    "cfnet_layer_p4m_dft_magnitude_create": (_status, [_p_handle]),
    "cfnet_layer_conic_conv_mirror_create": (_status, [_int, _int, _int, _int, _int, _p_handle]),
    "cfnet_layer_free": (_void, [_handle]),
    "cfnet_layer_kind_of": (_int, [_handle]),
    "cfnet_layer_kind_name": (_str, [_int]),
    "cfnet_layer_setup": (_status, [_handle, _int, _p_i64, _u64]),
    "cfnet_layer_input_shape": (_status, [_handle, _p_int, _p_i64]),
    "cfnet_layer_output_shape": (_status, [_handle, _p_int, _p_i64]),
    "cfnet_layer_forward": (_status, [_handle, _handle, _handle, _int]),
    "cfnet_layer_backward": (_status, [_handle, _handle, _handle, _handle, _handle]),
    "cfnet_layer_param_count": (_int, [_handle]),
    "cfnet_layer_param": (_handle, [_handle, _int]),
    "cfnet_layer_grad": (_handle, [_handle, _int]),
    "cfnet_layer_param_name": (_str, [_handle, _int]),
    "cfnet_layer_state_count": (_int, [_handle]),
    "cfnet_layer_state": (_handle, [_handle, _int]),
    "cfnet_layer_state_name": (_str, [_handle, _int]),
    "cfnet_layer_zero_grad": (_status, [_handle]),
    # loss
    "cfnet_softmax_cross_entropy": (_status, [_handle, _p_i32, _i64, _p_flt, _handle]),
    # networks
    "cfnet_network_create": (_status, [_int, _int, _int, _u64, _p_handle]),
    "cfnet_network_free": (_void, [_handle]),
    "cfnet_network_append": (_status, [_handle, _handle]),
    "cfnet_network_layer_count": (_int, [_handle]),
    "cfnet_network_layer": (_handle, [_handle, _int]),
    "cfnet_network_input_shape": (_status, [_handle, _p_int, _p_i64]),
    "cfnet_network_output_shape": (_status, [_handle, _p_int, _p_i64]),
    "cfnet_network_param_count": (_i64, [_handle]),
    "cfnet_network_memory_usage": (_size, [_handle]),
    "cfnet_network_summary": (_status, [_handle, ctypes.c_char_p, _size, _p_size]),
    "cfnet_network_forward": (_status, [_handle, _handle, _handle, _int]),
    "cfnet_network_backward": (_status, [_handle, _handle]),
    "cfnet_network_zero_grad": (_status, [_handle]),
    "cfnet_network_infer": (_status, [_handle, _handle, _handle]),
    "cfnet_network_probabilities": (_status, [_handle, _handle, _handle]),
    "cfnet_network_predict": (_status, [_handle, _handle, _p_i32, _i64]),
    "cfnet_network_set_option": (_status, [_handle, _int, _dbl]),
    "cfnet_network_get_option": (_status, [_handle, _int, _p_dbl]),
    "cfnet_network_train_step": (_status, [_handle, _handle, _p_i32, _i64, _p_flt]),
    "cfnet_network_step_count": (_i64, [_handle]),
    "cfnet_network_evaluate": (_status, [_handle, _handle, _p_i32, _i64, _i64, _p_flt, _p_flt]),
    "cfnet_network_invariance": (_status, [_handle, _handle, _p_dbl, _int, _p_dbl]),
    "cfnet_network_invariance_ex": (_status, [_handle, _handle, _p_dbl, _int, ctypes.c_uint,
                                              _p_dbl]),
    # image helpers
    "cfnet_image_rotate": (_status, [_handle, _handle, _dbl]),
    "cfnet_image_shift": (_status, [_handle, _handle, _int, _int]),
    "cfnet_image_normalize": (_status, [_handle, _dbl, _dbl]),
    "cfnet_network_prepare_image": (_status, [_handle, _handle, _int, _handle, _i64]),
    # saving and loading
    "cfnet_network_save": (_status, [_handle, _str, ctypes.c_uint]),
    "cfnet_remove_stale_temporaries": (_status, [_str, _p_size]),
    "cfnet_network_save_buffer": (_status, [_handle, ctypes.c_uint, _p_handle, _p_size]),
    "cfnet_network_load": (_status, [_str, _p_handle]),
    "cfnet_network_load_buffer": (_status, [ctypes.c_void_p, _size, _p_handle]),
    "cfnet_free": (_void, [ctypes.c_void_p]),
    # ONNX export
    "cfnet_network_export_onnx": (_status, [_handle, _str, ctypes.c_uint]),
    "cfnet_network_export_onnx_buffer": (_status, [_handle, ctypes.c_uint, _p_handle, _p_size]),
    # contexts (allocator hooks are not bound: Python callbacks as a C allocator are not
    # worth their cost and hazards)
    "cfnet_context_create": (_status, [_p_handle]),
    "cfnet_context_free": (_void, [_handle]),
    "cfnet_context_set_limit": (_status, [_handle, _int, _u64]),
    "cfnet_context_get_limit": (_status, [_handle, _int, ctypes.POINTER(ctypes.c_uint64)]),
    "cfnet_network_create_in": (_status, [_handle, _int, _int, _int, _u64, _p_handle]),
    "cfnet_network_load_in": (_status, [_handle, _str, _p_handle]),
    "cfnet_network_load_buffer_in": (_status, [_handle, ctypes.c_void_p, _size, _p_handle]),
    # preset classifiers
    "cfnet_family_name": (_str, [_int]),
    "cfnet_family_parse": (_status, [_str, _p_int]),
    "cfnet_network_create_classifier": (_status, [_int, _int, _int, _int, _int, _u64, _p_handle]),
    "cfnet_network_multiply_adds": (_i64, [_handle]),
    "cfnet_network_init_normal": (_status, [_handle, _dbl, _u64]),
    # training epochs (the progress callback is passed as a PROGRESS_FN cast to void *)
    "cfnet_network_train_epoch": (_status, [_handle, _handle, _p_i32, _i64, _p_i64, _i64,
                                            ctypes.c_void_p, ctypes.c_void_p, _p_dbl, _p_dbl]),
    # user metadata
    "cfnet_network_set_metadata": (_status, [_handle, _str, _str]),
    "cfnet_network_get_metadata": (_status, [_handle, _str, ctypes.POINTER(_str)]),
    "cfnet_network_metadata_count": (_int, [_handle]),
    "cfnet_network_metadata_at": (_status, [_handle, _int, ctypes.POINTER(_str),
                                            ctypes.POINTER(_str)]),
    # introspection
    "cfnet_layer_kind_count": (_int, []),
    "cfnet_option_name": (_str, [_int]),
    "cfnet_option_bounds": (_status, [_int, _p_dbl, _p_dbl]),
    "cfnet_option_default": (_status, [_int, _p_dbl]),
    "cfnet_option_is_integer": (_int, [_int]),
    # data-parallel training (0.2): the hook is a CFUNCTYPE (SUM_FN) built by the caller, e.g.
    # around mpi4py's Allreduce (docs/distributed.md)
    "cfnet_network_set_sum_hook": (_status, [_handle, ctypes.c_void_p, ctypes.c_void_p]),
    "cfnet_network_set_batch_position": (_status, [_handle, _i64, _i64]),
    "cfnet_network_gradients": (_status, [_handle, _p_flt, _i64]),
    # interrupting inference (0.2): the callback is an INTERRUPT_FN cast to void *
    "cfnet_network_set_interrupt": (_status, [_handle, ctypes.c_void_p, ctypes.c_void_p]),
}

# The functions of PROTOTYPES added after 0.1 (src/cfnet.map's later nodes), by the version
# that brought them. A library must export every other one (those of API_VERSION and before):
# one that lacks any is refused; one of these missing raises UnsupportedError when called.
SINCE = dict.fromkeys((
    "cfnet_family_name", "cfnet_family_parse", "cfnet_network_create_classifier",
    "cfnet_network_multiply_adds", "cfnet_network_train_epoch", "cfnet_network_set_metadata",
    "cfnet_network_get_metadata", "cfnet_network_metadata_count", "cfnet_network_metadata_at",
    "cfnet_network_export_onnx", "cfnet_network_export_onnx_buffer", "cfnet_layer_kind_count",
    "cfnet_option_name", "cfnet_option_bounds", "cfnet_option_default",
    "cfnet_option_is_integer", "cfnet_layer_p4m_lift_create", "cfnet_layer_p4m_conv_create",
    "cfnet_layer_p4m_dft_magnitude_create", "cfnet_network_invariance_ex",
    "cfnet_network_set_sum_hook", "cfnet_network_set_batch_position", "cfnet_network_gradients",
    "cfnet_layer_conic_conv_mirror_create", "cfnet_network_init_normal",
    "cfnet_tensor_wrap_const", "cfnet_network_set_interrupt", "cfnet_network_prepare_image",
    "cfnet_remove_stale_temporaries"), (0, 2))

# cfnet_progress_fn
PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                               ctypes.c_double, ctypes.c_double)

# cfnet_interrupt_fn: int (*)(void *user, int64_t done, int64_t total)
INTERRUPT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)

# cfnet_sum_fn: cfnet_status (*)(void *user, cfnet_sum_kind kind, void *data, int64_t count)
SUM_FN = ctypes.CFUNCTYPE(_status, ctypes.c_void_p, _int, ctypes.c_void_p, _i64)


class _Lib:
    """The loaded library: attribute access returns the prototyped C function."""

    def __init__(self, cdll, path):
        self._cdll = cdll
        self.path = path
        self._missing = []
        for name, (restype, argtypes) in PROTOTYPES.items():
            try:
                fn = getattr(cdll, name)
            except AttributeError:
                self._missing.append(name)
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)

    def __getattr__(self, name):
        # Only reached for names that were not bound: a symbol this library build lacks.
        if name in PROTOTYPES:
            raise UnsupportedError(-6, "%s: not exported by the libcfnet at %s" % (name, self.path))
        raise AttributeError(name)

    def call(self, name, *args):
        """Calls a status-returning function and raises the matching CfnetError on failure."""
        status = getattr(self, name)(*args)
        if status != 0:
            check(status, self.cfnet_last_error())


_lock = threading.Lock()
_lib = None


def _candidates():
    """Yields (where, path, note): a library to try, or (where, None, note) for a place that
    names none (said in the error when no candidate is usable)."""
    env = os.environ.get("CFNET_LIBRARY")
    if env:
        # An explicit choice is final: a wrong path is an error, not a reason to look elsewhere.
        yield "CFNET_LIBRARY", env, None
        return
    if shutil.which("pkg-config"):
        try:
            out = subprocess.run(["pkg-config", "--variable=libdir", "cfnet"],
                                 capture_output=True, text=True, timeout=30)
            libdir = out.stdout.strip()
            if out.returncode == 0 and libdir:
                yield "pkg-config", os.path.join(libdir, "libcfnet.so"), None
            else:
                yield "pkg-config", None, "no cfnet package"
        except (OSError, subprocess.SubprocessError) as e:
            yield "pkg-config", None, "failed: %s" % e
    else:
        yield "pkg-config", None, "not installed"
    here = os.path.dirname(os.path.abspath(__file__))
    # PREFIX/lib/pythonX.Y/site-packages/cfnet -> PREFIX/lib, where `make install PREFIX=...`
    # put the library (so that a prefix outside pkg-config's search path needs no setting).
    site = os.path.dirname(here)
    pydir = os.path.dirname(site)
    if (os.path.basename(site) in ("site-packages", "dist-packages")
            and os.path.basename(pydir).startswith("python")):
        yield "installed prefix", os.path.join(os.path.dirname(pydir), "libcfnet.so"), None
    yield "build tree", os.path.normpath(os.path.join(here, os.pardir, os.pardir, "lib",
                                                      "libcfnet.so")), None
    found = ctypes.util.find_library("cfnet")
    if found:
        yield "system", found, None
    else:
        yield "system", None, "none on the dynamic linker's search path"


def _close(cdll):
    """Unloads a refused library, so that a later candidate of the same soname is not
    answered with it (best effort: nothing of it is in use). Returns whether it stays loaded
    (a library linked with -z nodelete, or one that something else in the process loaded)."""
    try:
        import _ctypes
        _ctypes.dlclose(cdll._handle)
    except (ImportError, AttributeError, OSError):
        return True
    if not hasattr(os, "RTLD_NOLOAD"):
        return False
    try:
        again = _ctypes.dlopen(cdll._name, os.RTLD_NOLOAD | os.RTLD_LAZY)
    except (OSError, AttributeError):
        return False                    # unloaded
    _ctypes.dlclose(again)
    return True


def _linker_paths(name):
    """The files the dynamic linker would load for a bare library name such as
    libcfnet.so.0: $LD_LIBRARY_PATH's directories, then ldconfig's cache."""
    paths = [os.path.join(d, name) for d in os.environ.get("LD_LIBRARY_PATH", "").split(":")
             if d]
    ldconfig = shutil.which("ldconfig") or shutil.which("ldconfig", path="/sbin:/usr/sbin")
    if ldconfig:
        try:
            out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=30,
                                 env=dict(os.environ, LC_ALL="C")).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            left, sep, right = line.partition(" => ")
            if sep and left.split() and left.split()[0] == name:
                paths.append(right.strip())
    return [q for i, q in enumerate(paths) if os.path.isfile(q) and q not in paths[:i]]


def load():
    """Returns the loaded library, loading it on first use (see the module docstring)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        stuck = {}      # refused libraries that stay loaded: handle -> the candidate's path
        candidates = list(_candidates())
        while candidates:
            where, path, note = candidates.pop(0)
            if path is None:
                tried.append("%s: %s" % (where, note))
                continue
            if where not in ("system", "CFNET_LIBRARY") and not os.path.exists(path):
                tried.append("%s: %s (absent)" % (where, path))
                continue
            try:
                cdll = ctypes.CDLL(path)
            except OSError as e:
                why = "not loadable: %s" % e
            else:
                if cdll._handle in stuck:
                    # dlopen answered a bare soname with a refused library that could not be
                    # unloaded: look for the file the linker would load, by its path.
                    why = "answered by %s, refused above and still loaded" % stuck[cdll._handle]
                    _close(cdll)
                    if os.sep not in path:
                        candidates[:0] = [(where, q, None) for q in _linker_paths(path)]
                else:
                    lib = _Lib(cdll, os.path.realpath(path) if os.path.exists(path) else path)
                    why = _refusal(lib)
                    if why is None:
                        _lib = lib
                        return _lib
                    if _close(cdll):
                        stuck[cdll._handle] = path
            if where == "CFNET_LIBRARY":
                raise OSError("CFNET_LIBRARY=%s: %s (unset CFNET_LIBRARY to search pkg-config, "
                              "the build tree and the system)" % (path, why))
            tried.append("%s: %s (%s)" % (where, path, why))
        raise OSError("no usable libcfnet; set CFNET_LIBRARY to the path of libcfnet.so. Tried: "
                      + "; ".join(tried))


def _refusal(lib):
    """Why this binding cannot use the library (None if it can): no version functions, another
    major version or an older minor version than API_VERSION, or a function of the API
    versions up to API_VERSION missing (see SINCE)."""
    for name in ("cfnet_version_number", "cfnet_version_string"):
        if name in lib._missing:
            return "does not export %s: not a libcfnet" % name
    v = lib.cfnet_version_number()
    major, minor = v // 10000, v // 100 % 100
    text = lib.cfnet_version_string()
    text = text.decode("utf-8", "replace") if text else "%d.%d.%d" % (major, minor, v % 100)
    if major != API_VERSION[0] or minor < API_VERSION[1]:
        return ("version %s; this binding needs %d.x with x >= %d"
                % (text, API_VERSION[0], API_VERSION[1]))
    lacking = [n for n in lib._missing if SINCE.get(n, (0, 1)) <= API_VERSION]
    if lacking:
        return ("version %s lacks %d function%s of %d.%d: %s%s"
                % (text, len(lacking), "s" if len(lacking) > 1 else "", API_VERSION[0],
                   API_VERSION[1], ", ".join(lacking[:3]), ", ..." if len(lacking) > 3 else ""))
    return None


# Live handles created through this binding, by kind: a debugging aid and the basis of the
# binding's leak tests (every handle created is freed exactly once).
live = {"tensor": 0, "layer": 0, "network": 0, "buffer": 0, "context": 0}
_live_lock = threading.Lock()


def _count(kind, delta):
    with _live_lock:
        live[kind] += delta


def free_tensor(h):
    load().cfnet_tensor_free(h)
    _count("tensor", -1)


def free_layer(h):
    load().cfnet_layer_free(h)
    _count("layer", -1)


def free_network(h):
    load().cfnet_network_free(h)
    _count("network", -1)


def free_context(h):
    load().cfnet_context_free(h)
    _count("context", -1)


def new_handle(kind, fn_name, *args):
    """Calls a create function whose last argument is the out-handle; returns the handle."""
    lib = load()
    out = ctypes.c_void_p()
    lib.call(fn_name, *args, ctypes.byref(out))
    _count(kind, 1)
    return out.value


def fs_path(path):
    """``path`` (str, bytes or os.PathLike) as bytes for the C API. A NUL byte would silently
    cut the path short in C (``save('x\\0y')`` would write ``x``), so it raises ValueError."""
    p = os.fsencode(path)
    if b"\0" in p:
        raise ValueError("path %r contains a NUL byte" % (path,))
    return p
