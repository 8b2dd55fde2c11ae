"""Checks bindings/julia/src/CFNet.jl against include/cfnet/cfnet.h (run by test_julia_wrappers.sh).

Julia is not installed where libcfnet is built and tested, so the `ccall` wrappers cannot be run.
Instead every `ccall((:cfnet_x, libcfnet), Ret, (T1, T2, ...), a1, a2, ...)` is parsed and
checked: cfnet_x is declared in the header, the argument-type tuple has as many entries as the C
declaration has parameters (and as many values are passed), and each Julia type matches the C type
(return type included). Each wrapper is the raw function of the C name,
`cfnet_x(a1, a2, ...) = ccall((:cfnet_x, libcfnet), ...)`, passing its own arguments in their order.
Header functions without a wrapper are listed, not failed.

Beyond the ccalls:
- every integer `const NAME = value` equals the header's CFNET_NAME (enum member or #define), and
  a header enum that has one member mirrored has all of them;
- every `@cfunction(f, Ret, (Types...))` has the signature of a function-pointer typedef of the
  header (cfnet_progress_fn, cfnet_sum_fn, ...), and f catches exceptions (one thrown through
  the C library's frames would skip its cleanup);
- every exported name is defined in the module;
- with DOC files (example.jl, README.md): every option symbol given to set_option!, get_option,
  option_bounds or option_default is a key of the module's OPTIONS table.

Usage: julia_wrappers.py HEADER JULIA_FILE [DOC...]
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
FUNCTION_POINTERS = {"cfnet_alloc_fn", "cfnet_free_fn", "cfnet_progress_fn", "cfnet_sum_fn",
                     "cfnet_interrupt_fn"}
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
        calls.append((line, args, m.start()))
    return calls


def header_enums(path):
    """{enum type: {member: value}} for every typedef enum of the header."""
    with open(path) as f:
        text = strip_c_comments(f.read())
    enums = {}
    for m in re.finditer(r"typedef\s+enum\s+(\w+)\s*\{(.*?)\}\s*\1\s*;", text, re.S):
        members, nxt = {}, 0
        for item in m.group(2).split(","):
            item = item.strip()
            if not item:
                continue
            name, _, value = item.partition("=")
            nxt = int(value.strip(), 0) if value.strip() else nxt
            members[name.strip()] = nxt
            nxt += 1
        enums[m.group(1)] = members
    return enums


def header_constants(path):
    """({CFNET_NAME: value} of enum members and integer #defines, {enum type: [members]})."""
    with open(path) as f:
        raw = f.read()
    values, enums = {}, {}
    for name, members in header_enums(path).items():
        values.update(members)
        enums[name] = list(members)
    for m in re.finditer(r"^#define (CFNET_\w+) (-?(?:0x[0-9a-fA-F]+|\d+))[uU]?\s*$", raw, re.M):
        values[m.group(1)] = int(m.group(2), 0)
    return values, enums


def header_callbacks(path):
    """{typedef name: (return C type, [parameter C types])} of the function-pointer typedefs."""
    with open(path) as f:
        text = strip_c_comments(f.read())
    out = {}
    for m in re.finditer(r"typedef\s+([^;()]*?)\(\s*\*\s*(\w+)\s*\)\s*\(([^)]*)\)\s*;", text, re.S):
        params = [p.strip() for p in m.group(3).split(",")]
        if params == ["void"]:
            params = []
        out[m.group(2)] = (c_type_of(m.group(1) + " x"), [c_type_of(p) for p in params])
    return out


def wrapper_definition(text, start):
    """(name, [parameters]) of a one-line definition `name(params) =` right before offset
    `start`, or None."""
    m = re.search(r"(?:^|\n)[ \t]*(\w+)\(([^()]*)\)\s*=\s*$", text[:start])
    if not m:
        return None
    return m.group(1), [p.strip() for p in m.group(2).split(",") if p.strip()]


def check_module(header, julia, text, errors):
    """Constants, callbacks and exports (see the top of the file)."""
    values, enums = header_constants(header)
    mirrored = set()
    for m in re.finditer(r"^const (\w+) = (-?(?:0x[0-9a-fA-F]+|\d+))\s*$", text, re.M):
        name, value = m.group(1), int(m.group(2), 0)
        cname = "CFNET_" + name
        if cname not in values:
            errors.append("%s: const %s has no %s in the header" % (julia, name, cname))
        elif values[cname] != value:
            errors.append("%s: const %s = %d, the header's %s is %d"
                          % (julia, name, value, cname, values[cname]))
        mirrored.add(cname)
    for typ, members in sorted(enums.items()):
        have = [c for c in members if c in mirrored]
        if have and len(have) != len(members):
            errors.append("%s: enum %s is mirrored without %s"
                          % (julia, typ, ", ".join(c for c in members if c not in mirrored)))

    callbacks = header_callbacks(header)
    enum_types = set(enums)
    for m in re.finditer(r"@cfunction\s*\(", text):
        i, depth = m.end(), 1
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        args = split_top(text[m.end():i - 1])
        line = text.count("\n", 0, m.start()) + 1
        if len(args) != 3 or not (args[2].startswith("(") and args[2].endswith(")")):
            errors.append("%s:%d: @cfunction not of the form @cfunction(f, Ret, (Types...))"
                          % (julia, line))
            continue
        ret, types = args[1], split_top(args[2][1:-1])
        # a Julia exception must not unwind through the C library's frames
        fm = re.search(r"^function %s\((.*?)^end\b" % re.escape(args[0]), text, re.S | re.M)
        if not fm or not re.search(r"^\s*catch\b", fm.group(1), re.M):
            errors.append("%s:%d: the callback %s is not a top-level function that catches "
                          "exceptions (try ... catch)" % (julia, line, args[0]))

        def fits(ctype, jt, is_return):
            if ctype in enum_types:
                return jt in {"Cint", "Int32"}
            return jt in expected_julia(ctype, is_return)
        if not any(fits(cr, ret, True) and len(cp) == len(types) and
                   all(fits(c, t, False) for c, t in zip(cp, types))
                   for cr, cp in callbacks.values()):
            errors.append("%s:%d: @cfunction(%s, (%s)) matches no callback type of the header "
                          "(%s)" % (julia, line, ret, ", ".join(types), ", ".join(sorted(callbacks))))

    exported = set()
    for m in re.finditer(r"^export\s+((?:[^\n]*,[ \t]*\n)*[^\n]*)", text, re.M):
        exported |= {n.strip() for n in m.group(1).split(",") if n.strip()}
    for name in sorted(exported):
        e = re.escape(name)
        if not re.search(r"^(?:function\s+%s\s*\(|%s\s*\([^\n]*\)\s*=|(?:mutable\s+)?struct\s+%s\b"
                         r"|const\s+%s\s*=)" % (e, e, e, e), text, re.M):
            errors.append("%s: %s is exported but not defined" % (julia, name))


# Edges the Python binding handles, mirrored (Julia itself is not run here): no images give
# empty results from infer, probabilities and predict (libcfnet wraps no tensor with an empty
# axis), and throw "no images" from evaluate and training, before any tensor is made; and every
# array goes to the library through to_float32 (a Float64 beyond Float32's range is named, not
# made an infinity).
EDGES = [("infer", r'_empty_batch\(net, x, "network_infer"\) && return out'),
         ("probabilities", r'_empty_batch\(net, x, "network_probabilities"\) && return probs'),
         ("predict", r'_empty_batch\(net, x, "network_predict"\) && return labels'),
         ("train_step!", r'_refuse_no_images\(x, "network_train_step",'),
         ("train_epoch!", r'_refuse_no_images\(x, "network_train_epoch",'),
         ("evaluate", r'_refuse_no_images\(x, "network_evaluate",')]


def check_edges(julia, text, errors):
    for name, guard in EDGES:
        fm = re.search(r"^function %s\((.*?)^end\b" % re.escape(name), text, re.S | re.M)
        body = fm.group(1) if fm else ""
        g, w = re.search(guard, body), body.find("with_tensors(")
        if not g or w < 0 or g.start() > w:
            errors.append("%s: %s does not handle no images before with_tensors (%s)"
                          % (julia, name, guard.replace("\\", "")))
    if not re.search(r"^Tensor\(a::AbstractArray\{<:Real\}\) = Tensor\(to_float32\(a\)\)$",
                     text, re.M):
        errors.append("%s: Tensor(a::AbstractArray{<:Real}) does not convert through "
                      "to_float32" % julia)


def check_conversions(julia, text, decls, errors):
    """As in Python, the Float32 range error names the C function it is for, and only element
    types that can hold a value beyond Float32's range are scanned: every with_tensors call
    names a function of the header (cfnet_ + its first argument, a string literal) that its
    block calls, with_tensors converts through Tensor(a, fn) = Tensor(to_float32(a, fn)), the
    message starts with that name, and to_float32 returns before the scan for narrow types."""
    for m in re.finditer(r"with_tensors\(([^)\n]*)\)\s*do\b", text):
        lit = re.match(r'\s*"(\w+)"\s*,', m.group(1))
        line = text.count("\n", 0, m.start()) + 1
        block = text[m.end():m.end() + 400]
        if not lit or "cfnet_" + lit.group(1) not in decls:
            errors.append("%s:%d: with_tensors(%s) does not name a libcfnet function first"
                          % (julia, line, m.group(1)))
        elif not re.search(r"\bcfnet_%s(_ex)?\(" % lit.group(1), block):
            errors.append("%s:%d: with_tensors names %s, which its block does not call"
                          % (julia, line, lit.group(1)))
    for pattern, what in (
            (r"^function with_tensors\(f, fn::AbstractString, arrays\.\.\.\)\n"
             r"\s*ts = map\(a -> Tensor\(a, fn\), arrays\)",
             "with_tensors does not convert through Tensor(a, fn)"),
            (r"^Tensor\(a::AbstractArray\{<:Real\}, fn::AbstractString\) = "
             r"Tensor\(to_float32\(a, fn\)\)$",
             "Tensor(a, fn) does not convert through to_float32(a, fn)"),
            (r'throw\(CFNetError\(-1, "\$\(fn\): the value \$\(v\) at index',
             "to_float32's range error does not start with the function's name"),
            (r"^function to_float32\(a::AbstractArray\{T\}[^\n]*\n\s*out = Array\{Float32\}\(a\)"
             r"\n\s*_fits_float32\(T\) && return out",
             "to_float32 scans element types Float32 holds all of (Python scans float64 only)")):
        if not re.search(pattern, text, re.M):
            errors.append("%s: %s" % (julia, what))


def check_docs(text, docs, errors):
    """Option symbols used in the example and README are keys of OPTIONS."""
    om = re.search(r"const OPTIONS = Dict\((.*?)\)\s*$", text, re.S | re.M)
    keys = set(re.findall(r":(\w+)\s*=>", om.group(1))) if om else set()
    for doc in docs:
        with open(doc) as f:
            body = f.read()
        for m in re.finditer(r"\b(set_option!|get_option|option_bounds|option_default)\s*\("
                             r"[^:)]*?:(\w+)", body):
            if m.group(2) not in keys:
                line = body.count("\n", 0, m.start()) + 1
                errors.append("%s:%d: %s(:%s): not an option of OPTIONS"
                              % (doc, line, m.group(1), m.group(2)))


def main(header, julia, docs=()):
    decls = parse_header(header)
    calls = parse_julia(julia)
    with open(julia) as f:
        text = strip_julia_comments(f.read())
    errors, wrapped = [], set()
    check_module(header, julia, text, errors)
    check_docs(text, docs, errors)
    check_edges(julia, text, errors)
    check_conversions(julia, text, decls, errors)
    for line, args, start in calls:
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
        wd = wrapper_definition(text, start)
        if not wd:
            errors.append("%s: the ccall of %s is not the body of its raw wrapper %s(...) = ccall(...)"
                          % (where, name, name))
        elif wd[0] != name:
            errors.append("%s: the raw wrapper %s calls %s" % (where, wd[0], name))
        elif values != wd[1]:
            errors.append("%s: %s(%s) passes (%s): not its own arguments in their order"
                          % (where, name, ", ".join(wd[1]), ", ".join(values)))
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
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
