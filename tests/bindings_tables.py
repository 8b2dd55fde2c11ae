"""Checks the bindings' tables against include/cfnet/cfnet.h (run by test_bindings_tables.sh).

- python/cfnet/_enums.py: every IntEnum mirrors its header enum (or #define family) exactly,
  names and values;
- python/cfnet/_lib.py PROTOTYPES: every entry names a header function, with as many arguments
  and matching ctypes types (return type included);
- layer kinds: every value of cfnet_layer_kind has its cfnet_layer_<name>_create in the header,
  in PROTOTYPES and in the Julia wrappers, a Python constructor cfnet.<name> and a Julia
  constructor <name>(...);
- options: the Julia OPTIONS table names every cfnet_option value;
- with --library PATH: the built library's cfnet_layer_kind_count(), kind names and option
  names (cfnet_option_name) agree with the header.

Usage: bindings_tables.py HEADER PYTHON_PACKAGE_DIR JULIA_FILE [--library LIBCFNET_SO]
"""
import ctypes
import importlib
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from julia_wrappers import header_enums, parse_header, strip_julia_comments  # noqa: E402

# Python class -> (header enum type or None for a #define family, constant prefix)
PY_ENUMS = {
    "Status": ("cfnet_status", "CFNET_"),
    "LayerKind": ("cfnet_layer_kind", "CFNET_LAYER_"),
    "Padding": ("cfnet_padding", "CFNET_PADDING_"),
    "Interp": ("cfnet_interp", "CFNET_INTERP_"),
    "PoolMode": ("cfnet_pool_mode", "CFNET_POOL_"),
    "Mode": ("cfnet_mode", "CFNET_MODE_"),
    "Option": ("cfnet_option", "CFNET_OPTION_"),
    "Limit": ("cfnet_limit", "CFNET_LIMIT_"),
    "Family": ("cfnet_family", "CFNET_FAMILY_"),
    "SumKind": ("cfnet_sum_kind", "CFNET_SUM_"),
    "Optimizer": (None, "CFNET_OPTIMIZER_"),
    "AugRotation": (None, "CFNET_AUG_ROTATION_"),
}


def header_defines(path, prefix):
    with open(path) as f:
        text = f.read()
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^#define (%s\w+) (-?\d+)u?\s*$" % prefix, text, re.M)}


def ctypes_of(ctype, handles):
    """Accepted ctypes objects for a normalised C type (see julia_wrappers.c_type_of)."""
    scalars = {
        "void": [None], "int": [ctypes.c_int], "unsigned": [ctypes.c_uint],
        "float": [ctypes.c_float], "double": [ctypes.c_double], "size_t": [ctypes.c_size_t],
        "int32_t": [ctypes.c_int32], "int64_t": [ctypes.c_int64], "uint64_t": [ctypes.c_uint64],
    }
    if ctype in scalars:
        return scalars[ctype]
    if ctype.startswith("cfnet_") and not ctype.endswith("*"):
        if ctype.endswith("_fn"):
            return [ctypes.c_void_p]
        return [ctypes.c_int]  # an enum
    if ctype == "char*":
        return [ctypes.c_char_p]
    if ctype == "void*" or (ctype.endswith("*") and ctype[:-1] in handles):
        return [ctypes.c_void_p]
    if ctype.endswith("**") and (ctype[:-2] in handles or ctype[:-2] == "void"):
        return [ctypes.POINTER(ctypes.c_void_p)]
    if ctype == "float*":  # tensor data: the binding passes raw addresses (numpy buffers)
        return [ctypes.POINTER(ctypes.c_float), ctypes.c_void_p]
    if ctype.endswith("*"):
        return [ctypes.POINTER(t) for t in ctypes_of(ctype[:-1], handles) if t is not None]
    raise ValueError("no ctypes mapping for C type %r" % ctype)


def check(header, pkgdir, julia, library=None):
    errors = []
    decls = parse_header(header)
    enums = header_enums(header)
    with open(header) as f:
        handles = set(re.findall(r"typedef struct (\w+) \1;", f.read()))

    sys.path.insert(0, os.path.dirname(os.path.abspath(pkgdir)))
    pkgname = os.path.basename(os.path.abspath(pkgdir))
    py_enums = importlib.import_module(pkgname + "._enums")
    py_lib = importlib.import_module(pkgname + "._lib")
    pkg = importlib.import_module(pkgname)

    # 1. enums
    for cls_name, (enum_type, prefix) in PY_ENUMS.items():
        cls = getattr(py_enums, cls_name, None)
        if cls is None:
            errors.append("_enums.py has no class %s" % cls_name)
            continue
        if enum_type:
            if enum_type not in enums:
                errors.append("the header has no enum %s" % enum_type)
                continue
            want = {k[len(prefix):]: v for k, v in enums[enum_type].items()}
        else:
            want = {k[len(prefix):]: v for k, v in header_defines(header, prefix).items()}
        have = {m.name: int(m.value) for m in cls}
        for name in sorted(set(want) | set(have)):
            if name not in have:
                errors.append("_enums.py %s lacks %s%s = %d" % (cls_name, prefix, name, want[name]))
            elif name not in want:
                errors.append("_enums.py %s.%s is not in the header" % (cls_name, name))
            elif have[name] != want[name]:
                errors.append("_enums.py %s.%s = %d, the header says %d"
                              % (cls_name, name, have[name], want[name]))
    for typ in sorted(set(enums) - {t for t, _ in PY_ENUMS.values() if t}):
        errors.append("header enum %s has no Python IntEnum in PY_ENUMS" % typ)

    # 2. PROTOTYPES
    for name, (restype, argtypes) in py_lib.PROTOTYPES.items():
        if name not in decls:
            errors.append("PROTOTYPES: %s is not declared in %s" % (name, header))
            continue
        c_ret, c_params = decls[name]
        if len(argtypes) != len(c_params):
            errors.append("PROTOTYPES: %s takes %d arguments in C, the table lists %d"
                          % (name, len(c_params), len(argtypes)))
            continue
        if restype not in ctypes_of(c_ret, handles):
            errors.append("PROTOTYPES: %s returns %s in C, the table says %r"
                          % (name, c_ret, restype))
        for k, (ct, pt) in enumerate(zip(c_params, argtypes)):
            if pt not in ctypes_of(ct, handles):
                errors.append("PROTOTYPES: %s argument %d is %s in C, the table says %r"
                              % (name, k + 1, ct, pt))

    # 3. layer kinds
    with open(julia) as f:
        jl = strip_julia_comments(f.read())
    jl_ccalls = set(re.findall(r"ccall\s*\(\s*\(\s*:(cfnet_\w+)", jl))
    kinds = enums.get("cfnet_layer_kind", {})
    for member in kinds:
        name = member[len("CFNET_LAYER_"):].lower()
        create = "cfnet_layer_%s_create" % name
        if create not in decls:
            errors.append("kind %s: the header does not declare %s" % (member, create))
        if create not in py_lib.PROTOTYPES:
            errors.append("kind %s: %s is not in the Python PROTOTYPES" % (member, create))
        if not callable(getattr(pkg, name, None)):
            errors.append("kind %s: the Python package has no constructor %s.%s"
                          % (member, pkgname, name))
        if create not in jl_ccalls:
            errors.append("kind %s: the Julia module does not wrap %s" % (member, create))
        if not re.search(r"^%s\([^)]*\)\s*=" % re.escape(name), jl, re.M):
            errors.append("kind %s: the Julia module has no constructor %s(...)" % (member, name))
    values = sorted(kinds.values())
    if values != list(range(1, len(values) + 1)):
        errors.append("cfnet_layer_kind values are not 1..%d: %s" % (len(values), values))

    # 4. Julia options
    om = re.search(r"const OPTIONS = Dict\((.*?)\)\s*$", jl, re.S | re.M)
    jl_opts = dict((k, int(v)) for k, v in re.findall(r":(\w+)\s*=>\s*(\d+)", om.group(1))) if om else {}
    want = {k[len("CFNET_OPTION_"):].lower(): v for k, v in enums.get("cfnet_option", {}).items()}
    if jl_opts != want:
        errors.append("Julia OPTIONS %s differ from the header's cfnet_option %s"
                      % (sorted(jl_opts.items()), sorted(want.items())))

    # 5. the library
    if library:
        lib = ctypes.CDLL(library)
        lib.cfnet_layer_kind_count.restype = ctypes.c_int
        lib.cfnet_layer_kind_name.restype = ctypes.c_char_p
        lib.cfnet_layer_kind_name.argtypes = [ctypes.c_int]
        n = lib.cfnet_layer_kind_count()
        if n != len(kinds):
            errors.append("the library knows %d layer kinds, the header's enum has %d"
                          % (n, len(kinds)))
        for member, value in kinds.items():
            got = lib.cfnet_layer_kind_name(value).decode()
            if got != member[len("CFNET_LAYER_"):].lower():
                errors.append("the library names kind %s (%d) %r" % (member, value, got))

        lib.cfnet_option_name.restype = ctypes.c_char_p
        lib.cfnet_option_name.argtypes = [ctypes.c_int]
        for member, value in enums.get("cfnet_option", {}).items():
            got = lib.cfnet_option_name(value)
            if got is None or got.decode() != member[len("CFNET_OPTION_"):].lower():
                errors.append("the library names option %s (%d) %r" % (member, value, got))
        n = len(enums.get("cfnet_option", {}))
        if lib.cfnet_option_name(n + 1) is not None:
            errors.append("the library knows an option %d beyond the header's" % (n + 1))

    print("bindings_tables: %d Python enums, %d prototypes, %d layer kinds checked"
          % (len(PY_ENUMS), len(py_lib.PROTOTYPES), len(kinds)))
    for e in errors:
        print("bindings_tables: FAIL: " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    lib = None
    if "--library" in args:
        i = args.index("--library")
        lib = args[i + 1]
        del args[i:i + 2]
    sys.exit(check(args[0], args[1], args[2], lib))
