#!/usr/bin/env python3
"""The "Since X.Y" notes of the public header agree with the version nodes of src/cfnet.map.

Usage: version_nodes.py HEADER MAP ABI_BASELINE [LIBRARY]

- A function's version is the sentence "Since X.Y." in its own doc comment, else the
  "(since X.Y)" of the section banner it sits under, else the first node's version.
- A function listed by name in a node CFNET_X.Y must have version X.Y; a function that no node
  names falls to the first node's wildcard (cfnet_*), so it must have the first version and be
  in the ABI baseline (released with it): a function added later and forgotten in the map would
  otherwise be exported under the old node.
- Every name a node lists is declared in the header.
- With LIBRARY (the built libcfnet.so), every function is exported with the node of the map
  (readelf --dyn-syms).
- The newest node is the library's MAJOR.MINOR (cfnet_version_string), so CFNET_VERSION_NUMBER
  tells a program whether the functions of a node are there.
"""
import re
import subprocess
import sys


def parse_map(text):
    nodes = []  # (version, [names], has_wildcard)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    for m in re.finditer(r"CFNET_(\d+\.\d+)\s*\{(.*?)\}", text, re.S):
        glob = m.group(2).split("local:")[0]
        names = re.findall(r"\b(cfnet_[a-z0-9_]+)\s*;", glob)
        nodes.append((m.group(1), names, "cfnet_*" in glob))
    return nodes


def parse_header(text):
    """{function: (own since or None, section since or None)} and the header's MAJOR.MINOR."""
    major = re.search(r"#define CFNET_VERSION_MAJOR (\d+)", text).group(1)
    minor = re.search(r"#define CFNET_VERSION_MINOR (\d+)", text).group(1)
    funcs = {}
    section = None
    doc = ""
    pos = 0
    token = re.compile(r"/\*\*(.*?)\*/|/\*\s*-{10,}\s*\n(.*?)\*/|CFNET_API\b[^;{]*?\b(cfnet_[a-z0-9_]+)\s*\(",
                       re.S)
    for m in token.finditer(text):
        if m.group(1) is not None:
            doc = m.group(1)
        elif m.group(2) is not None:
            title = m.group(2).split("\n")[0]
            s = re.search(r"\(since (\d+\.\d+)\)", title)
            section = s.group(1) if s else None
            doc = ""
        else:
            own = re.search(r"\bSince (\d+\.\d+)\.", doc)
            funcs[m.group(3)] = (own.group(1) if own else None, section)
            doc = ""
    return funcs, "%s.%s" % (major, minor)


def check(header_text, map_text, abi_text):
    errors = []
    nodes = parse_map(map_text)
    if not nodes:
        return ["no CFNET_X.Y node in the map"]
    funcs, version = parse_header(header_text)
    base = nodes[0][0]
    if not nodes[0][2]:
        errors.append("the first node CFNET_%s has no cfnet_* wildcard" % base)
    for v, _, glob in nodes[1:]:
        if glob:
            errors.append("node CFNET_%s has a wildcard: only the first node may" % v)
    released = set(re.findall(r"<elf-symbol name='(cfnet_[a-z0-9_]+)' version='CFNET_%s'"
                              % re.escape(base), abi_text))
    node_of = {}
    for v, names, _ in nodes:
        for n in names:
            if n in node_of:
                errors.append("%s is listed in CFNET_%s and CFNET_%s" % (n, node_of[n], v))
            node_of[n] = v
            if n not in funcs:
                errors.append("CFNET_%s lists %s, which the header does not declare" % (v, n))
    for f, (own, sec) in sorted(funcs.items()):
        have = own or sec or base
        want = node_of.get(f, base)
        if have != want:
            where = "its doc comment" if own else ("its section" if sec else "no note: %s" % base)
            errors.append("%s is in node CFNET_%s but the header says since %s (%s)"
                          % (f, want, have, where))
        if f not in node_of and f not in released:
            errors.append("%s is in no node after CFNET_%s, so the wildcard exports it as "
                          "CFNET_%s, but the %s baseline does not have it: list it in the newest "
                          "node and write 'Since X.Y.' in its doc comment" % (f, base, base, base))
    newest = nodes[-1][0]
    if newest != version:
        errors.append("the newest node is CFNET_%s but the header's version is %s.x "
                      "(cfnet_version_string): they must agree" % (newest, version))
    return errors


def exported(library):
    """{symbol: node version} of the built library's dynamic symbols."""
    out = subprocess.run(["readelf", "--dyn-syms", "-W", library], check=True,
                         capture_output=True, text=True).stdout
    return dict(re.findall(r"\b(cfnet_[a-z0-9_]+)@@?CFNET_(\d+\.\d+)", out))


def check_library(header_text, map_text, library):
    funcs, _ = parse_header(header_text)
    nodes = parse_map(map_text)
    node_of = {n: v for v, names, _ in nodes for n in names}
    syms = exported(library)
    errors = []
    for f in sorted(funcs):
        want = node_of.get(f, nodes[0][0])
        if syms.get(f) != want:
            errors.append("%s: %s is exported as %s, the map says CFNET_%s"
                          % (library, f, "CFNET_" + syms[f] if f in syms else "nothing", want))
    return errors


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    texts = [open(p, encoding="utf-8").read() for p in sys.argv[1:4]]
    errors = check(*texts)
    if len(sys.argv) == 5:
        errors += check_library(texts[0], texts[1], sys.argv[4])
    funcs, version = parse_header(texts[0])
    for e in errors:
        print("version_nodes: %s" % e)
    if errors:
        sys.exit(1)
    nodes = parse_map(texts[1])
    print("version_nodes: %d functions; nodes %s; version %s" %
          (len(funcs), ", ".join("CFNET_%s (%s)" % (v, "wildcard" if g else len(n))
                                 for v, n, g in nodes), version))


if __name__ == "__main__":
    main()
