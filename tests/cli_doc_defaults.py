"""The defaults in docs/cli.md's option tables (option | default | meaning) agree with the
defaults that `cfnet CMD --help` states.

Usage: cli_doc_defaults.py CLI_MD CMD=HELP_FILE...

For every row of a command's table whose default cell names a value (a number or a word such as
`adam`; not "off", "(required)", "from the data", ...), the --help description of that option
must say "default VALUE" or "VALUE (default". Prints one line per disagreement; exit 1 if any.
"""
import re
import sys

SKIP = {"", "off", "(required)", "from", "all", "a"}


def help_descriptions(text):
    """{option: description} from an --help text (continuation lines joined)."""
    out, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^  +(-.*?)(?:\s{2,}(.*))?$", line)
        if m and m.group(1).startswith("-"):
            opts = re.findall(r"--?[a-zA-Z][a-zA-Z-]*", m.group(1))
            current = opts
            for o in opts:
                out[o] = m.group(2) or ""
        elif current and line.startswith("    ") and line.strip():
            for o in current:
                out[o] += " " + line.strip()
        else:
            current = None
    return out


def sections(md):
    """{command: [(options, default cell)]} from the three-column tables of each section."""
    out, cmd, three = {}, None, False
    for line in md.splitlines():
        m = re.match(r"^## `cfnet (\w+)", line)
        if m:
            cmd, three = m.group(1), False
            continue
        if line.startswith("| option | default | meaning"):
            three = True
            continue
        if cmd and three and line.startswith("| `-"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            opts = re.findall(r"`(--?[a-zA-Z][a-zA-Z-]*)", cells[0])
            out.setdefault(cmd, []).append((opts, cells[1]))
        elif not line.startswith("|"):
            three = three and line.strip() == ""
    return out


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    md = open(argv[1], encoding="utf-8").read()
    tables = sections(md)
    bad = checked = 0
    for arg in argv[2:]:
        cmd, path = arg.split("=", 1)
        desc = help_descriptions(open(path, encoding="utf-8").read())
        for opts, cell in tables.get(cmd, []):
            values = [v.strip().strip("`") for v in cell.split(", ")]
            long_opts = [o for o in opts if o.startswith("--")]
            if len(values) != len(long_opts):
                values = [values[0]] if len(long_opts) == 1 else []
            for o, v in zip(long_opts, values):
                token = v.split(" ")[0].strip("`") if v else ""
                if token in SKIP:
                    continue
                checked += 1
                d = desc.get(o)
                t = re.escape(token)
                if d is None or not re.search(r"default:? %s(?![\w.])|(?<![\w.])%s \((?:[^)]*, )?default"
                                              % (t, t), d):
                    print("%s: cfnet %s %s: default %s, but --help says: %s"
                          % (argv[1], cmd, o, token, d))
                    bad += 1
    if checked < 20:
        print("cli_doc_defaults: only %d defaults found in %s" % (checked, argv[1]))
        return 1
    if bad:
        return 1
    print("cli_doc_defaults: %d defaults of docs/cli.md agree with --help" % checked)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
