#!/bin/sh
# The `cfnet` command's options and its documentation agree, both ways:
#   - every option that `cfnet CMD --help` lists (short and long form) is named in that
#     command's section of docs/cli.md and in docs/cfnet.1, and `cfnet --help`'s own options
#     in both files;
#   - every option in the option tables of a docs/cli.md section, and every long option that
#     docs/cfnet.1 names, is one the command accepts (its --help lists it);
#   - the defaults in the option | default | meaning tables of docs/cli.md are the ones --help
#     states (tests/cli_doc_defaults.py).
# The checker is first shown to reject a copy of each file with one option renamed.
set -eu
name=cli_docs
# shellcheck source=tests/cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"

cmds="synth train eval predict info export crop"
ncmds=7

# The options of an --help text: the lines that start with two spaces and a dash, up to the
# first run of two spaces (the description).
help_options() { # CMD (empty: the top level)
    # shellcheck disable=SC2086
    "$cfnet" $1 --help | sed -n 's/^  *\(-.*\)$/\1/p' | sed 's/   *.*//' |
        grep -oE '(^|[ ,])--?[a-zA-Z][a-zA-Z-]*' | sed 's/^[ ,]*//' | sort -u
}
# The section of docs/cli.md for a command: from "## `cfnet CMD" to the next "## ".
section() { # CMD FILE
    awk -v h="## \`cfnet $1 " 'index($0, h) == 1 { on = 1; print; next }
        on && /^## / { exit } on { print }' "$2"
}
# The options in the first cell of the option tables of a section.
table_options() {
    sed -n 's/^| *\(`-[^|]*\)|.*/\1/p' | grep -oE '`--?[a-zA-Z][a-zA-Z-]*' | tr -d '`' | sort -u
}
# The man page's long options (\-\-name), unescaped.
man_options() {
    grep -oE '\\-\\-[a-z][a-z-]*(\\-[a-z]+)*' "$1" | sed 's/\\-/-/g' | sort -u
}
man_escape() { printf '%s' "$1" | sed 's/-/\\-/g'; }

for c in "" $cmds; do
    help_options "$c" >"$out/opts.${c:-top}"
    [ -s "$out/opts.${c:-top}" ] || fail "no options found in 'cfnet $c --help'"
done
sort -u "$out"/opts.* >"$out/opts.all"

check() { # CLI_MD CFNET_1: prints one line per disagreement
    for c in $cmds; do
        section "$c" "$1" >"$out/sec.$c"
        [ -s "$out/sec.$c" ] || { echo "$1 has no section '## \`cfnet $c ...'"; continue; }
        while read -r o; do
            case $o in -h | --help) continue ;; esac # said once for every command, below
            grep -qF -- "\`$o" "$out/sec.$c" || echo "$1, section cfnet $c, lacks $o"
            grep -qF -- "$(man_escape "$o")" "$2" || echo "$2 lacks $c $o"
        done <"$out/opts.$c"
        table_options <"$out/sec.$c" | while read -r o; do
            grep -qxF -- "$o" "$out/opts.$c" || echo "$1, section cfnet $c, names $o, which 'cfnet $c --help' does not list"
        done
    done
    while read -r o; do
        grep -qF -- "\`$o" "$1" || echo "$1 lacks the command's own $o"
        grep -qF -- "$(man_escape "$o")" "$2" || echo "$2 lacks the command's own $o"
    done <"$out/opts.top"
    man_options "$2" | while read -r o; do
        grep -qxF -- "$o" "$out/opts.all" || echo "$2 names $o, which no 'cfnet ... --help' lists"
    done
}

# The checker finds a renamed option in each file (a table row, the man page's text).
# shellcheck disable=SC2016
sed 's/^| `--jitter N`/| `--jiter N`/' docs/cli.md >"$out/cli.md"
sed 's/^\.BI \\-\\-patience/.BI \\-\\-patiense/' docs/cfnet.1 >"$out/cfnet.1"
cmp -s "$out/cli.md" docs/cli.md && fail "the broken copy of docs/cli.md is unchanged"
cmp -s "$out/cfnet.1" docs/cfnet.1 && fail "the broken copy of docs/cfnet.1 is unchanged"
check "$out/cli.md" docs/cfnet.1 >"$out/broken1.txt"
if ! grep -q "section cfnet train, lacks --jitter" "$out/broken1.txt" ||
    ! grep -q "names --jiter" "$out/broken1.txt"; then
    fail "a renamed option in docs/cli.md went unnoticed"
fi
check docs/cli.md "$out/cfnet.1" >"$out/broken2.txt"
if ! grep -q "lacks train --patience" "$out/broken2.txt" ||
    ! grep -q "names --patiense" "$out/broken2.txt"; then
    fail "a renamed option in docs/cfnet.1 went unnoticed"
fi

check docs/cli.md docs/cfnet.1 >"$out/result.txt"
if [ -s "$out/result.txt" ]; then
    sed 's/^/FAIL: /' "$out/result.txt"
    fails=$((fails + $(wc -l <"$out/result.txt")))
fi

# The defaults of the train and synth tables, after the checker has rejected a changed one.
"$cfnet" train --help >"$out/help.train"
"$cfnet" synth --help >"$out/help.synth"
"$cfnet" crop --help >"$out/help.crop"
defaults() { "$py" tests/cli_doc_defaults.py "$1" train="$out/help.train" synth="$out/help.synth" crop="$out/help.crop"; }
# shellcheck disable=SC2016
sed 's/^| `--epochs N` | 30 |/| `--epochs N` | 40 |/' docs/cli.md >"$out/cli-defaults.md"
cmp -s "$out/cli-defaults.md" docs/cli.md && fail "the copy of docs/cli.md with another default is unchanged"
defaults "$out/cli-defaults.md" >"$out/defaults-broken.txt" &&
    fail "tests/cli_doc_defaults.py accepted --epochs 40 in docs/cli.md"
grep -q "cfnet train --epochs: default 40" "$out/defaults-broken.txt" ||
    fail "tests/cli_doc_defaults.py did not name --epochs"
defaults docs/cli.md || fail "defaults in docs/cli.md differ from --help"

# A table row is one line: a line broken inside a row would end the table there (Markdown).
broken=$(awk 'prev ~ /^\|/ && $0 != "" && $0 !~ /^\|/ { print FILENAME ":" NR } { prev = $0 }' docs/cli.md)
[ -z "$broken" ] || fail "a table row of docs/cli.md goes on in the next line: $broken"

if [ "$fails" -ne 0 ]; then
    echo "test_cli_docs: $fails failures"
    exit 1
fi
echo "test_cli_docs: the $(wc -l <"$out/opts.all") options of cfnet and its $ncmds commands are in docs/cli.md and docs/cfnet.1, both name only those, and the defaults agree"
