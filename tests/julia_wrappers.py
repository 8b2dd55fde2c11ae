"""Checks bindings/julia/src/CFNet.jl against include/cfnet/cfnet.h (run by test_julia_wrappers.sh).

Julia is not installed where libcfnet is built and tested, so the `ccall` wrappers cannot be run.
Instead every `ccall((:cfnet_x, libcfnet), Ret, (T1, T2, ...), a1, a2, ...)` is parsed and
checked: cfnet_x is declared in the header, the argument-type tuple has as many entries as the C
declaration has parameters (and as many values are passed), and each Julia type matches the C type
(return type included). Header functions without a wrapper are listed, not failed.

Usage: julia_wrappers.py HEADER JULIA_FILE
"""
import re
import sys

# C type (normalised: no const, single spaces, "*" attached) -> accepted Julia types.
SCALARS = {
    "void": {"Cvoid"},
    "int": {"Cint", "Int32"},
    "unsigned": {"Cuint", "UInt32"},
    "float": {"Cfloat", "Float32"},
    "double": {"Cdouble", "Float64"},
    "size_t": {"Csize_t", "UInt"},
    "int32_t": {"Int32", "Cint"},
    "int64_t": {"Int64"},
    "uint64_t": {"UInt64"},
}
ENUMS = {"cfnet_status", "cfnet_padding", "cfnet_interp", "cfnet_pool_mode", "cfnet_mode",
         "cfnet_option", "cfnet_layer_kind", "cfnet_limit", "cfnet_family"}
HANDLES = {"cfnet_tensor", "cfnet_layer", "cfnet_network", "cfnet_context"}
FUNCTION_POINTERS = {"cfnet_alloc_fn", "cfnet_free_fn", "cfnet_progress_fn", "cfnet_sum_fn"}
HANDLE_JL = {"Handle", "Ptr{Cvoid}"}


def strip_c_comments(text):
    """Removes comments and preprocessor lines (with their continuations)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", " ", text, flags=re.M)


def c_type_of(param):
    """The type part of a C parameter declaration ("const int64_t *shape" -> "int64_t*")."""
    param = re.sub(r"\bconst\b", " ", param)
    param = re.sub(r"\s*\*\s*", "*", " ".join(param.split()))
    m = re.match(r"^(.*?[\s*])(\w+)$", param)
    return (m.group(1) if m else param).strip()


def parse_header(path):
    with open(path) as f:
        text = strip_c_comments(f.read())
    decls = {}
    for m in re.finditer(r"CFNET_API\s+([^;{]*?)\b(cfnet_\w+)\s*\(([^)]*)\)\s*;", text, re.S):
        ret = c_type_of(m.group(1) + " x")
        params = [p.strip() for p in m.group(3).split(",")]
        if params == ["void"]:
            params = []
        decls[m.group(2)] = (ret, [c_type_of(p) for p in params])
    return decls


def expected_julia(ctype, is_return):
    """Accepted Julia spellings of a C type."""
    if ctype in SCALARS:
        return SCALARS[ctype]
    if ctype in ENUMS:
        return {"Cint", "Int32"}
    if ctype in FUNCTION_POINTERS:
        return {"Ptr{Cvoid}"}
    if ctype == "char*":
        return {"Cstring", "Ptr{UInt8}", "Ptr{Cchar}"}
    if ctype.endswith("*"):
        base = ctype[:-1]
        if base in HANDLES:
            return HANDLE_JL
        inner = expected_julia(base, False)
        if base == "void":
            inner = {"Cvoid"}
        if base.endswith("*") and base[:-1] in HANDLES | {"void"}:
            inner = HANDLE_JL | {"Ptr{Cvoid}"}
        out = set()
        for t in inner:
            out.add("Ptr{%s}" % t)
            if not is_return:
                out.add("Ref{%s}" % t)
        return out
    raise ValueError("no Julia mapping for C type %r" % ctype)


def strip_julia_comments(text):
    text = re.sub(r"#=.*?=#", " ", text, flags=re.S)
    return re.sub(r"#[^\n]*", " ", text)


def split_top(s):
    """Splits on commas that are not inside (), {} or []."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    last = "".join(cur).strip()
    if last:
        parts.append(last)
    return parts


def parse_julia(path):
    with open(path) as f:
        text = strip_julia_comments(f.read())
    calls = []
    for m in re.finditer(r"\bccall\s*\(", text):
        i, depth = m.end(), 1
        while depth:
            if i >= len(text):
                raise ValueError("unbalanced ccall at offset %d" % m.start())
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        args = split_top(text[m.end():i - 1])
        line = text.count("\n", 0, m.start()) + 1
        calls.append((line, args))
    return calls


def main(header, julia):
    decls = parse_header(header)
    calls = parse_julia(julia)
    errors, wrapped = [], set()
    for line, args in calls:
        where = "%s:%d" % (julia, line)
        fm = re.match(r"^\(\s*:(\w+)\s*,\s*libcfnet\s*\)$", args[0]) if args else None
        if not fm or len(args) < 3:
            errors.append("%s: ccall not of the form ccall((:name, libcfnet), Ret, (Types...), "
                          "args...)" % where)
            continue
        name, ret, types = fm.group(1), args[1], args[2]
        if not (types.startswith("(") and types.endswith(")")):
            errors.append("%s: %s: argument types are not a literal tuple" % (where, name))
            continue
        jl_types = split_top(types[1:-1])
        values = args[3:]
        if name not in decls:
            errors.append("%s: %s is not declared in %s" % (where, name, header))
            continue
        wrapped.add(name)
        c_ret, c_params = decls[name]
        if len(jl_types) != len(c_params):
            errors.append("%s: %s takes %d arguments in C, the wrapper declares %d"
                          % (where, name, len(c_params), len(jl_types)))
            continue
        if len(values) != len(jl_types):
            errors.append("%s: %s declares %d argument types but passes %d values"
                          % (where, name, len(jl_types), len(values)))
        if ret not in expected_julia(c_ret, True):
            errors.append("%s: %s returns %s in C; Julia return type %s is not one of %s"
                          % (where, name, c_ret, ret, sorted(expected_julia(c_ret, True))))
        for k, (ct, jt) in enumerate(zip(c_params, jl_types)):
            if jt not in expected_julia(ct, False):
                errors.append("%s: %s argument %d is %s in C; Julia type %s is not one of %s"
                              % (where, name, k + 1, ct, jt, sorted(expected_julia(ct, False))))
    missing = sorted(set(decls) - wrapped)
    print("julia_wrappers: %d ccall wrappers checked against %d header functions"
          % (len(calls), len(decls)))
    if missing:
        print("julia_wrappers: note: not wrapped: %s" % ", ".join(missing))
    for e in errors:
        print("julia_wrappers: FAIL: " + e)
    if not calls:
        print("julia_wrappers: FAIL: no ccall found in %s" % julia)
        return 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
