# Shared by the `cfnet` command's script tests (tests/test_cli*.sh), sourced after setting
# `name` (the folder under $CFNET_TEST_OUTDIR, else under $build/test-output): finds the
# command, makes an empty output folder `out`, and defines fail, expect and lacks. `fails`
# counts the failures.
build=${CFNET_BUILD:-build/default}
cfnet=${CFNET_TOOL:-}
if [ -z "$cfnet" ]; then
    if [ "$build" = build/default ]; then cfnet=bin/cfnet; else cfnet=$build/bin/cfnet; fi
fi
py=/usr/bin/python3
# shellcheck source=tests/skip_lib.sh
. "$(dirname "$0")/skip_lib.sh"
# (its own folder under `make check`, inside CFNET_TEST_OUTDIR, so that the same suite run by
# hand beside a check of the same build does not remove and refill the folder the other is
# using; a folder `name` inside it, as tests/test_ablation_table.sh's, never CFNET_TEST_OUTDIR
# itself, removed whole below: CFNET_TEST_OUTDIR=build/default/test-output, as C suites take
# it, removed every suite's output and the suite times)
out=${CFNET_TEST_OUTDIR:+$CFNET_TEST_OUTDIR/$name}
out=${out:-$build/test-output/$name}
rm -rf "$out"
mkdir -p "$out"
fails=0
fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}
# expect STATUS PATTERN CMD...: runs CMD, checks its exit status and that stderr+stdout match
# the (grep -E) pattern.
expect() {
    want=$1
    pat=$2
    shift 2
    set +e
    "$@" >"$out/last.txt" 2>&1
    got=$?
    set -e
    if [ "$got" != "$want" ]; then
        fail "exit $got (expected $want): $*"
        sed 's/^/    /' "$out/last.txt" | head -20
    elif [ -n "$pat" ] && ! grep -Eq -- "$pat" "$out/last.txt"; then
        fail "output of '$*' lacks /$pat/"
        sed 's/^/    /' "$out/last.txt" | head -20
    fi
}
# usage_said CMD WHAT: the last command's output is a usage error of `cfnet CMD`: its first
# line "cfnet CMD: ...", the pointer to CMD's --help, no "cfnet: error:" line.
usage_said() {
    head -n 1 "$out/last.txt" | grep -q "^cfnet $1: " || fail "$2: its first line is not 'cfnet $1: ...'"
    grep -q "^(see 'cfnet $1 --help')$" "$out/last.txt" || fail "$2: no pointer to 'cfnet $1 --help'"
    if grep -q "error:" "$out/last.txt"; then
        fail "$2: said as 'cfnet: error:', not as a usage error"
        sed 's/^/    /' "$out/last.txt" | head -20
    fi
}
# lacks PATTERN WHAT: the last command's output must not match.
lacks() {
    if grep -Eq -- "$1" "$out/last.txt"; then
        fail "$2"
        sed 's/^/    /' "$out/last.txt" | head -20
    fi
}
