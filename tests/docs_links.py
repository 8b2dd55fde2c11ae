#!/usr/bin/env python3
"""Checks the relative links of Markdown pages: docs_links.py PAGE.md...

Every link [text](target), [text](<target> "title") and reference definition [ref]: target
outside code (fenced and indented blocks, `code spans`) and HTML comments that is not a URL must
name a file or folder that exists, relative to the page; a #fragment must be the anchor of a
heading of the target page (or of the page itself), as GitHub makes it (github-slugger): the
heading's rendered text (code spans' contents, a link's text, entities decoded, no tags, no
emphasis marks) in lower case, without the characters that are not letters, marks, decimal
digits, `_`, `-` or spaces (so `²`, `×`, `–`, `§` go, `µ` stays), spaces as `-`, and `-1`, `-2`,
... after a repeated anchor. On a link to any other file (source, data, a script: GitHub shows
it as numbered lines) a #fragment must be a line anchor of lines the file has, #L12 or
#L12-L20 (first <= last); a binary file (a NUL byte) has none. GitHub shows a folder with its
README.md below, so a #fragment on a link to a folder (`docs/#section`, `docs#section`) must be
the anchor of a heading of the folder's README.md; a folder without one has no fragments. A
`](` that starts no link this reads is an error too, so that no link is skipped unseen. Prints
one line per bad link; exit status 1 if there is one.
"""
import html
import os
import re
import sys
import unicodedata
from urllib.parse import unquote

FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})[^\n]*\n(?:.*?\n)??( {0,3})\2[`~]*[ \t]*$", re.S | re.M)
COMMENT = re.compile(r"<!--.*?-->", re.S)
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.S)  # in a paragraph
LINK = re.compile(r"""\]\([ \t]*(<[^<>\n]*>|[^()\s<]+)(?:[ \t]+("[^"\n]*"|'[^'\n]*'|\([^()\n]*\)))?[ \t]*\)""")
REF_DEF = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*(<[^<>\n]*>|\S+)", re.M)
HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*$", re.M)


def blank(m):
    # Blank a match line for line, so that line numbers stay right.
    return "\n" * m.group(0).count("\n")


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


def without_blocks(text):
    """The text without fenced and indented code blocks and HTML comments (line for line)."""
    return without_indented_code(COMMENT.sub(blank, FENCE.sub(blank, text)))


def without_code(text):
    return CODE_SPAN.sub(blank, without_blocks(text))


KEEP = ("L", "M", "Nd", "Nl", "Pc")   # github-slugger keeps these categories, spaces and '-'


def slug(heading):
    """GitHub's anchor of a heading's Markdown text (before the -N of a repeat)."""
    text, last = [], 0
    for m in list(CODE_SPAN.finditer(heading)) + [None]:
        plain = heading[last:m.start() if m else len(heading)]
        plain = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", plain)                  # an image: nothing
        plain = re.sub(r"\[([^\]]*)\](?:\([^)]*\)|\[[^\]]*\])", r"\1", plain)  # a link: its text
        plain = re.sub(r"</?[A-Za-z][^<>]*>", "", plain)                    # tags
        plain = re.sub(r"(?<![^\W_])_+(?=\S)|(?<=\S)_+(?![^\W_])", "", plain)  # _emphasis_
        plain = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", plain)              # \escapes
        text.append(html.unescape(plain))
        if m:
            code = m.group(2)
            if code.startswith(" ") and code.endswith(" ") and code.strip():
                code = code[1:-1]
            text.append(code)
            last = m.end()
    out = "".join(c for c in "".join(text).strip().lower()
                  if c in " -" or unicodedata.category(c).startswith(KEEP))
    return out.replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        with open(path, encoding="utf-8") as f:
            text = without_blocks(f.read())
        seen, out = {}, set()
        for h in HEADING.findall(text):
            a = base = slug(h or "")
            while a in seen:      # github-slugger: foo, foo-1, ... past a heading named foo-1
                seen[base] += 1
                a = "%s-%d" % (base, seen[base])
            seen[a] = 0
            out.add(a)
        cache[path] = out
    return cache[path]


def check(page, target, line):
    """Prints and counts a bad link target."""
    if target.startswith("<") and target.endswith(">"):
        target = target[1:-1]
    if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):   # http:, https:, mailto:
        return 0
    path, _, frag = target.partition("#")
    path, frag = unquote(path), unquote(frag)
    dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
    if not os.path.exists(dest):
        print("%s:%d: link to %s: no such file" % (page, line, target))
        return 1
    if frag and os.path.isdir(dest):
        readme = os.path.join(dest, "README.md")
        if not os.path.isfile(readme):
            print("%s:%d: link to %s: %s is a folder without a README.md: a #fragment names "
                  "nothing in it" % (page, line, target, dest))
            return 1
        if frag not in anchors(readme):
            print("%s:%d: link to %s: %s is a folder, and its README.md has no heading with "
                  "the anchor #%s" % (page, line, target, dest, frag))
            return 1
        return 0
    if frag and dest.endswith(".md") and frag not in anchors(dest):
        print("%s:%d: link to %s: %s has no heading with the anchor #%s"
              % (page, line, target, dest, frag))
        return 1
    if frag and not dest.endswith(".md"):
        why = line_anchor_error(dest, frag)
        if why:
            print("%s:%d: link to %s: %s" % (page, line, target, why))
            return 1
    return 0


def line_anchor_error(dest, frag):
    """What is wrong with the #fragment of a link to a file that GitHub shows as source (not a
    Markdown page), or None: it must be a line anchor, #L12 or #L12-L20, of lines the file has
    (first <= last)."""
    m = re.fullmatch(r"L([1-9][0-9]*)(?:-L([1-9][0-9]*))?", frag)
    if not m:
        return ("#%s is not a line anchor (#L12 or #L12-L20), the only fragment of a file "
                "that is not Markdown" % frag)
    with open(dest, "rb") as f:
        data = f.read()
    if b"\0" in data:
        return "%s is a binary file: it has no lines for #%s" % (dest, frag)
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    first, last = int(m.group(1)), int(m.group(2) or m.group(1))
    if last < first:
        return "#%s: the range ends before it starts" % frag
    if last > lines:
        return "#%s: %s has %d line%s" % (frag, dest, lines, "" if lines == 1 else "s")
    return None


def main(pages):
    bad = 0
    for page in pages:
        with open(page, encoding="utf-8") as f:
            text = without_code(f.read())
        lineno = lambda pos: text.count("\n", 0, pos) + 1
        read = set()
        for m in LINK.finditer(text):
            read.add(m.start())
            bad += check(page, m.group(1), lineno(m.start()))
        after = True   # a reference definition follows a blank line or another definition
        for i, line in enumerate(text.split("\n")):
            m = REF_DEF.match(line)
            if m and after:
                bad += check(page, m.group(1), i + 1)
            after = not line.strip() or (m is not None and after)
        for m in re.finditer(r"\]\(", text):
            if m.start() not in read:
                print("%s:%d: a link this checker cannot read: %s"
                      % (page, lineno(m.start()), text[m.start():m.start() + 60].split("\n")[0]))
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
