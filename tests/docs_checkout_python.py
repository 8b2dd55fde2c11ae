#!/usr/bin/env python3
"""Checks the commands in Markdown pages that run Python from a checkout: docs_checkout_python.py
PAGE.md...

A command here is a line of a code block (fenced or indented, at the top level or in a list
item, however deeply nested), or a `code span`, outside HTML comments, in which python3, mpirun
or mpiexec runs a script of the source tree: examples/python/*.py, python/tests/*.py or `-m
unittest discover -s python/tests`. The binding loads a libcfnet that pkg-config finds (an
installed, maybe older, one) before the checkout's lib/libcfnet.so, so such a command must
choose the library: `CFNET_LIBRARY=...` in the command itself, or an `export CFNET_LIBRARY=...`
on an earlier line of the same code block. Under mpirun or mpiexec the ranks must get it too:
`-x CFNET_LIBRARY` in the command (Open MPI's, Debian's MPI). A line of a code block that ends
in a backslash goes on with the next: one command. Prints one line per command that does not;
exit status 1 if there is one.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from docs_links import CODE_SPAN, COMMENT, blank  # noqa: E402

RUNS = re.compile(r"\b(?:python3?|mpirun|mpiexec)\b(?!/).*?(?:\bexamples/python/[\w./-]*\.py\b"
                  r"|\bpython/tests/[\w./-]*\.py\b|-s\s+python/tests\b)")
MPI = re.compile(r"\bmpi(?:run|exec)\b(?!/)")
ITEM = re.compile(r"([-*+]|\d{1,9}[.)])( {1,4}(?! )|$)")   # a list item's marker, 1-4 spaces
OPEN = re.compile(r"(`{3,}|~{3,})(.*)$")
BREAK = re.compile(r"(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")  # * * *, - - -


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def code_lines(lines):
    """For each line: "code" (in a fenced or indented code block), "fence" (a fence line) or
    None (text). CommonMark's blocks as far as the pages use them: a list item's content is
    indented by its marker's width, and a fence or an indented (by 4 more) code block inside an
    item counts from there, so blocks nested in lists are found at any depth. A fence, a
    thematic break (`* * *`, not an item) or a blank line before a less indented line ends the
    items it is not inside of, and a fenced block ends with its item; a closing fence is
    indented by 3 spaces at most (past its item's content)."""
    kind = [None] * len(lines)
    items = []          # the content indents of the open list items, innermost last
    fence = None        # (fence character, length, its item's indent) of the open fenced block
    blank = True        # the previous line was blank (or the page starts)
    in_code = False     # the previous line was in an indented code block
    for n, raw in enumerate(lines):
        line = raw.expandtabs(4)
        if fence and line.strip() and indent_of(line) < fence[2]:
            fence = None                            # its list item ended: so did the block
        if fence:
            closing = line.strip()
            if closing.startswith(fence[0] * fence[1]) and not closing.strip(fence[0]) and \
                    indent_of(line) - fence[2] <= 3:
                kind[n], fence = "fence", None
            else:
                kind[n] = "code"
            continue
        if not line.strip():
            blank = True
            continue
        col = indent_of(line)
        if blank or ITEM.match(line, col) or OPEN.match(line, col) or BREAK.match(line, col):
            while items and col < items[-1]:        # text or an item less indented ends items
                items.pop()
        base = items[-1] if items else 0
        if col - base >= 4 and (blank or in_code):
            kind[n], in_code, blank = "code", True, False
            continue
        in_code = False
        rest = line[col:]
        m = ITEM.match(rest) if col - base <= 3 and not BREAK.match(rest) else None
        if m:                                       # a list item; its content may be a fence
            width = len(m.group(1)) + max(len(m.group(2)), 1)
            items.append(col + width)
            rest = rest[width:]
        m = OPEN.match(rest) if col - base <= 3 else None
        if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
            kind[n], fence = "fence", (m.group(1)[0], len(m.group(1)), items[-1] if items else 0)
        blank = False
    return kind


def problem(cmd, exported):
    """What the command lacks, or None."""
    if not RUNS.search(cmd):
        return None
    if "CFNET_LIBRARY=" not in cmd and not exported:
        return "sets no CFNET_LIBRARY (an installed libcfnet would come first)"
    if MPI.search(cmd) and not re.search(r"-x\s+CFNET_LIBRARY\b", cmd):
        return "does not pass CFNET_LIBRARY to the ranks (%s -x CFNET_LIBRARY)" \
            % MPI.search(cmd).group(0)
    return None


def check_page(page):
    with open(page, encoding="utf-8") as f:
        text = COMMENT.sub(blank, f.read())
    lines = text.split("\n")
    kind = code_lines(lines)
    code = [k == "code" for k in kind]
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
    spans = "\n".join("" if k else line for line, k in zip(lines, kind))
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
