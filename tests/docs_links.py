#!/usr/bin/env python3
"""Checks the relative links of Markdown pages: docs_links.py PAGE.md...

Every link [text](target) outside code (fenced blocks and `code spans`) that is not a URL must
name a file or folder that exists, relative to the page; a #fragment must be the anchor of a
heading of the target page (or of the page itself), as GitHub makes it: the heading's text in
lower case, without the characters that are not letters, digits, `_`, `-` or spaces, spaces as
`-`, and `-1`, `-2`, ... after a repeated heading. Prints one line per bad link; exit status 1
if there is one.
"""
import os
import re
import sys

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?:(?!\n[ \t]*\n).)+?\1", re.S)   # within a paragraph
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)


def without_indented_code(text):
    """Blanks the indented code blocks: lines indented by 4 spaces or a tab after a blank line,
    unless they continue a list item."""
    out, blank, in_list, in_code = [], True, False, False
    for line in text.split("\n"):
        if not line.strip():
            blank = True
            out.append(line)
            continue
        indented = re.match(r"( {4}|\t)", line) is not None
        if in_code and indented or indented and blank and not in_list:
            in_code = True
            out.append("")
        else:
            in_code = False
            if re.match(r" {0,3}([-*+]|\d+[.)])[ \t]", line):
                in_list = True
            elif blank and not line[0].isspace():
                in_list = False
            out.append(line)
        blank = False
    return "\n".join(out)


def without_code(text):
    # Blank the code blocks line for line, so that line numbers stay right.
    text = without_indented_code(FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text))
    return CODE_SPAN.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def anchors(path, cache={}):
    if path not in cache:
        with open(path, encoding="utf-8") as f:
            text = FENCE.sub("", f.read())
        seen, out = {}, set()
        for h in HEADING.findall(text):
            h = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", h)       # a link: its text
            a = re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            n = seen.get(a, 0)
            seen[a] = n + 1
            out.add(a if n == 0 else "%s-%d" % (a, n))
        cache[path] = out
    return cache[path]


def main(pages):
    bad = 0
    for page in pages:
        with open(page, encoding="utf-8") as f:
            text = without_code(f.read())
        for m in LINK.finditer(text):
            target = m.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):   # http:, https:, mailto:
                continue
            line = text.count("\n", 0, m.start()) + 1
            path, _, frag = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(dest):
                print("%s:%d: link to %s: no such file" % (page, line, target))
                bad += 1
            elif frag and dest.endswith(".md") and frag not in anchors(dest):
                print("%s:%d: link to %s: %s has no heading with the anchor #%s"
                      % (page, line, target, dest, frag))
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
