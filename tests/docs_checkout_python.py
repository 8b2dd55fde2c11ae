#!/usr/bin/env python3
"""Checks the commands in Markdown pages that run Python from a checkout: docs_checkout_python.py
PAGE.md...

A command here is a line of a code block (fenced or indented), or a `code span`, outside HTML
comments, in which python3 or mpirun runs a script of the source tree: examples/python/*.py,
python/tests/*.py or `-m unittest discover -s python/tests`. The binding loads a libcfnet that
pkg-config finds (an installed, maybe older, one) before the checkout's lib/libcfnet.so, so such
a command must choose the library: `CFNET_LIBRARY=...` in the command itself, or an
`export CFNET_LIBRARY=...` on an earlier line of the same code block. Under mpirun the ranks
must get it too: `-x CFNET_LIBRARY` in the command. A line of a code block that ends in a
backslash goes on with the next: one command. Prints one line per command that does not;
exit status 1 if there is one.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from docs_links import CODE_SPAN, COMMENT, FENCE, blank, without_blocks, \
    without_indented_code  # noqa: E402

RUNS = re.compile(r"\b(?:python3?|mpirun)\b(?!/).*?(?:\bexamples/python/[\w./-]*\.py\b"
                  r"|\bpython/tests/[\w./-]*\.py\b|-s\s+python/tests\b)")


def problem(cmd, exported):
    """What the command lacks, or None."""
    if not RUNS.search(cmd):
        return None
    if "CFNET_LIBRARY=" not in cmd and not exported:
        return "sets no CFNET_LIBRARY (an installed libcfnet would come first)"
    if re.search(r"\bmpirun\b", cmd) and not re.search(r"-x\s+CFNET_LIBRARY\b", cmd):
        return "does not pass CFNET_LIBRARY to the ranks (mpirun -x CFNET_LIBRARY)"
    return None


def check_page(page):
    with open(page, encoding="utf-8") as f:
        text = COMMENT.sub(blank, f.read())
    lines = text.split("\n")
    code = [False] * len(lines)
    for m in FENCE.finditer(text):
        first = text.count("\n", 0, m.start()) + 1          # the line after the opening fence
        last = text.count("\n", 0, m.end()) - 1             # the line before the closing one
        for i in range(first, last + 1):
            code[i] = True
    unfenced = FENCE.sub(blank, text).split("\n")
    for i, (a, b) in enumerate(zip(unfenced, without_indented_code("\n".join(unfenced))
                                   .split("\n"))):
        if a.strip() and not b.strip():
            code[i] = True
    bad = []
    exported = False
    i = 0
    while i < len(lines):
        line, start = lines[i], i
        i += 1
        if not code[start]:
            if line.strip():
                exported = False        # a code block ends at the next line of text
            continue
        if line.lstrip().startswith("#"):
            continue
        # A command continued with a backslash is one command, said at its first line.
        while line.rstrip().endswith("\\") and i < len(lines) and code[i]:
            line = line.rstrip()[:-1].rstrip() + " " + lines[i].strip()
            i += 1
        why = problem(line, exported)
        if why:
            bad.append((start + 1, line.strip(), why))
        if re.search(r"\bexport\b[^#]*\bCFNET_LIBRARY=", line):
            exported = True
    spans = without_blocks(text)
    for m in CODE_SPAN.finditer(spans):
        cmd = " ".join(m.group(2).split())
        why = problem(cmd, False)
        if why:
            bad.append((spans.count("\n", 0, m.start()) + 1, cmd, why))
    for line, cmd, why in sorted(bad):
        print("%s:%d: `%s` %s" % (page, line, cmd, why))
    return len(bad)


def main(pages):
    return 1 if sum(check_page(p) for p in pages) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
