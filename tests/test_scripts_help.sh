#!/bin/sh
# The scripts the documentation names (the Makefile's own helpers install-dirs and ldconfig-note
# are not for users): `--help` prints the usage on standard output
# with status 0 and does nothing else (no download, no install, no build, no file or folder named
# after the option); an unknown option is a usage error with status 2. They run from a copy of
# scripts/ with stand-ins for npm, node, apt-get and make that record being called.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-scripts-help.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fails=0
fail() { echo "test_scripts_help: FAIL: $*" >&2; fails=$((fails + 1)); }

r=$tmp/repo
mkdir -p "$r" "$tmp/bin"
cp -R scripts "$r/"
for t in npm node apt-get make; do
    printf '#!/bin/sh\necho "%s $*" >> "%s/ran"\nexit 3\n' "$t" "$tmp" >"$tmp/bin/$t"
    chmod +x "$tmp/bin/$t"
done

n=0
for name in ablation-table fetch-mnist install-deps install-ort run-experiments run-suites; do
    s=$r/scripts/$name
    n=$((n + 1))
    for h in --help -h; do
        rm -f "$tmp/ran"
        st=0
        (cd "$r" && PATH="$tmp/bin:$PATH" "$s" "$h") >"$tmp/out" 2>"$tmp/err" || st=$?
        [ "$st" = 0 ] || fail "$name $h: status $st (expected 0): $(head -3 "$tmp/err")"
        grep -qi "usage" "$tmp/out" || fail "$name $h: no usage on standard output"
        [ -e "$tmp/ran" ] && fail "$name $h ran: $(cat "$tmp/ran")"
        for e in "$r"/* "$r"/.[!.]*; do
            [ -e "$e" ] && [ "$e" != "$r/scripts" ] && { fail "$name $h left ${e##*/}"; rm -rf -- "$e"; }
        done
    done
    st=0
    (cd "$r" && PATH="$tmp/bin:$PATH" "$s" --no-such-option) >"$tmp/out" 2>"$tmp/err" || st=$?
    [ "$st" = 2 ] || fail "$name --no-such-option: status $st (expected 2)"
    [ -s "$tmp/err" ] || fail "$name --no-such-option: no message on standard error"
done
[ "$fails" = 0 ] || exit 1
echo "test_scripts_help: --help and -h of the $n scripts print their usage and do nothing else;" \
    "an unknown option is status 2"
