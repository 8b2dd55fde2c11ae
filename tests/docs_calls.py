"""Calls of the C API written in the documentation have the header's number of arguments.

Usage: docs_calls.py HEADER FILE...

Every `cfnet_name(a, b, ...)` in FILE whose name the header declares (CFNET_API) must pass as
many arguments as the declaration takes, counting top-level commas. Skipped: a name with empty
parentheses (`cfnet_free()` names the function), calls written with an ellipsis (`...` or
`…`), and names the header does not declare (those of cfnet_mpi.h, for example). Prints one line per mismatch and exits 1 if there is any.
"""
import re
import sys


def declarations(header):
    text = re.sub(r"/\*.*?\*/", "", open(header, encoding="utf-8").read(), flags=re.S)
    decl = {}
    for m in re.finditer(r"CFNET_API\s+[\w\s*]+?\b(cfnet_\w+)\s*\(([^)]*)\)", text):
        args = m.group(2).strip()
        decl[m.group(1)] = 0 if args in ("", "void") else args.count(",") + 1
    return decl


def arguments(text, start):
    """The text between the parenthesis that opens at start - 1 and its match, or None."""
    depth, j = 1, start
    while j < len(text) and depth:
        if text[j] == "(":
            depth += 1
        elif text[j] == ")":
            depth -= 1
        j += 1
    return None if depth else text[start:j - 1]


def count(inner):
    depth, n = 0, 1
    for ch in inner:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            n += 1
    return n


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    decl = declarations(argv[1])
    if len(decl) < 50:
        print("docs_calls: only %d declarations found in %s" % (len(decl), argv[1]))
        return 1
    bad = checked = 0
    for path in argv[2:]:
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r"\b(cfnet_\w+)\(", text):
            name = m.group(1)
            if name not in decl:
                continue
            inner = arguments(text, m.end())
            if (inner is None or not inner.strip() or "\n\n" in inner or "..." in inner
                    or "\u2026" in inner):
                continue
            checked += 1
            n = count(inner)
            if n != decl[name]:
                line = text.count("\n", 0, m.start()) + 1
                print("%s:%d: %s(%s) passes %d argument(s); the header's takes %d"
                      % (path, line, name, " ".join(inner.split())[:80], n, decl[name]))
                bad += 1
    if bad:
        return 1
    print("docs_calls: %d calls of %d functions agree with the header" % (checked, len(decl)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
