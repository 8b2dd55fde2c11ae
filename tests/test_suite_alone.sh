#!/bin/sh
# A C suite run alone (docs/contributing.md, "Running one test").
# 1. CFNET_TEST_FILTER=PATTERN runs only the matching cases.
# 2. The C suites write their scratch files only under tu_outdir() (tests/testutil.c):
# $CFNET_TEST_OUTDIR, else the build directory's test-output folder (docs/contributing.md), never
# into the current folder. Runs the suites that write the most files (the command's image and
# data tests) from an empty folder, with and without CFNET_TEST_OUTDIR.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${CFNET_BUILD:-build/default}
case "$build" in /*) ;; *) build=$top/$build ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-scratch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "test_suite_alone: FAIL: $*" >&2; exit 1; }

# Only testutil.c decides where scratch files go.
others=$(cd "$top" && grep -l 'CFNET_TEST_OUTDIR' tests/*.c | grep -vx tests/testutil.c || true)
[ -z "$others" ] || fail "$others read CFNET_TEST_OUTDIR themselves (use tu_outdir())"

suites="test_tool_image test_tool_data"
for s in $suites; do [ -x "$build/tests/$s" ] || fail "$build/tests/$s not built (make test-bins)"; done

[ -x "$build/tests/test_version" ] || fail "$build/tests/test_version not built (make test-bins)"
CFNET_TEST_FILTER='version_*' "$build/tests/test_version" > "$tmp/filter.log" 2>&1 ||
    { cat "$tmp/filter.log"; fail "test_version with CFNET_TEST_FILTER"; }
ran=$(grep -c '^\[ RUN      \]' "$tmp/filter.log" || true)
all=$(cd "$tmp" && CFNET_TEST_FILTER= "$build/tests/test_version" 2>&1 | grep -c '^\[ RUN      \]' || true)
grep -q '^\[ RUN      \] version_number_matches_header' "$tmp/filter.log" &&
    grep -q '^\[ RUN      \] version_string_matches_header' "$tmp/filter.log" && [ "$ran" = 2 ] && [ "$all" -gt 2 ] ||
    fail "CFNET_TEST_FILTER='version_*' ran $ran of $all cases of test_version, not the 2 named version_*"
echo "test_suite_alone: CFNET_TEST_FILTER runs the matching cases only ($ran of $all)"

mkdir "$tmp/cwd" "$tmp/out"
for s in $suites; do
    (cd "$tmp/cwd" && CFNET_TEST_OUTDIR="$tmp/out" "$build/tests/$s" > "$tmp/$s.log" 2>&1) ||
        { cat "$tmp/$s.log"; fail "$s with CFNET_TEST_OUTDIR"; }
done
left=$(ls -A "$tmp/cwd")
[ -z "$left" ] || fail "with CFNET_TEST_OUTDIR set, the suites wrote into the current folder: $left"
[ -n "$(ls -A "$tmp/out")" ] || fail "nothing was written into CFNET_TEST_OUTDIR"

for s in $suites; do
    (cd "$tmp/cwd" && unset CFNET_TEST_OUTDIR && "$build/tests/$s" > "$tmp/$s.log" 2>&1) ||
        { cat "$tmp/$s.log"; fail "$s without CFNET_TEST_OUTDIR"; }
done
left=$(ls -A "$tmp/cwd")
[ -z "$left" ] || fail "without CFNET_TEST_OUTDIR, the suites wrote into the current folder: $left"
[ -n "$(find "$build/test-output" -newer "$tmp/filter.log" -print -quit 2>/dev/null)" ] ||
    fail "without CFNET_TEST_OUTDIR, the suites wrote nothing into $build/test-output"
echo "test_suite_alone: scratch files go to CFNET_TEST_OUTDIR, else to $build/test-output, never into the current folder"
