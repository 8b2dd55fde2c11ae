#!/bin/sh
# A check skipped because something is not installed cannot pass CI unseen (tests/test_cli_crop.sh
# skipped itself for several releases): with CFNET_TEST_STRICT=1, as .ci/run sets for the plain
# `make check`, such a skip (tests/skip_lib.sh's skip_missing) fails its test, naming the package
# and scripts/install-deps --extra; without it, it is a skip that is said. A skip for the build
# or the machine (skip_env) stays a skip. Every skip goes to $CFNET_TEST_SKIPLOG, which `make
# check` lists at the end. Only tests/skip_lib.sh prints skips: a test that says SKIPPED or
# "skipped" its own way fails here.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-skip.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fails=0
fail() { echo "test_skip: FAIL: $*"; fails=$((fails + 1)); }

# 1. A real test with a dependency made absent: tests/test_fetch_mnist.sh on a PATH without
# node (every other program of PATH is there, through links).
mkdir "$tmp/bin"
old_ifs=$IFS
IFS=:
for d in $PATH; do
    # (the first of a name wins, as in PATH: ln leaves an existing link alone and goes on)
    [ -d "$d" ] && ln -s "$d"/* "$tmp/bin/" 2>/dev/null || true
done
IFS=$old_ifs
rm -f "$tmp/bin/node" "$tmp/bin/nodejs"
[ ! -e "$tmp/bin/node" ] || fail "node still on the test PATH"
run() { # strict: runs tests/test_fetch_mnist.sh without node, under CFNET_TEST_STRICT=strict
    st=0
    env -u CFNET_TEST_STRICT PATH="$tmp/bin" CFNET_TEST_SKIPLOG="$tmp/log" \
        ${1:+CFNET_TEST_STRICT=$1} /bin/sh tests/test_fetch_mnist.sh >"$tmp/out" 2>&1 || st=$?
}
: >"$tmp/log"
run ""
[ $st = 0 ] || { cat "$tmp/out"; fail "a skip for a missing node: exit $st (expected 0)"; }
grep -q "^test_fetch_mnist: SKIPPED every check: node (nodejs) is not installed (scripts/install-deps --extra)$" \
    "$tmp/out" || { cat "$tmp/out"; fail "the skip was not said"; }
grep -q "^test_fetch_mnist: SKIPPED every check: node (nodejs) is not installed$" "$tmp/log" ||
    { cat "$tmp/log"; fail "the skip is not in CFNET_TEST_SKIPLOG"; }
run 0
[ $st = 0 ] || fail "CFNET_TEST_STRICT=0: exit $st (expected 0)"
: >"$tmp/log"
run 1
[ $st = 1 ] || { cat "$tmp/out"; fail "CFNET_TEST_STRICT=1 and no node: exit $st (expected 1)"; }
grep -q "^test_fetch_mnist: FAIL: every check: node (nodejs) is not installed; CFNET_TEST_STRICT=1 makes this a failure, not a skip (scripts/install-deps --extra installs it)$" \
    "$tmp/out" || { cat "$tmp/out"; fail "the strict failure does not name the package and install-deps"; }
grep -q "FAILED (strict): every check: node (nodejs)" "$tmp/log" ||
    { cat "$tmp/log"; fail "the strict failure is not in CFNET_TEST_SKIPLOG"; }

# 1b. A C suite: test_prepare's decimal-comma locale case with no locale (LOCPATH) and no
# localedef (PATH): a cmocka skip, a failure under CFNET_TEST_STRICT=1 (TU_SKIP_MISSING).
prep=${CFNET_BUILD:-build/default}/tests/test_prepare
if [ -x "$prep" ]; then
    c() { # strict
        st=0
        env -u CFNET_TEST_STRICT LOCPATH=/nonexistent PATH=/nonexistent CFNET_TEST_SKIPLOG='' \
            CFNET_TEST_FILTER='metadata_numbers_do_not_depend_on_the_locale' \
            ${1:+CFNET_TEST_STRICT=$1} "$prep" >"$tmp/out" 2>&1 || st=$?
    }
    c ""
    [ $st = 0 ] && grep -q "SKIPPED .*locales is not installed" "$tmp/out" &&
        grep -q "SKIPPED .*metadata_numbers_do_not_depend_on_the_locale" "$tmp/out" ||
        { cat "$tmp/out"; fail "test_prepare without a comma locale: exit $st, not a skip"; }
    c 1
    [ $st = 1 ] && grep -q "FAIL: .*locales is not installed; CFNET_TEST_STRICT=1 makes this a failure" "$tmp/out" ||
        { cat "$tmp/out"; fail "test_prepare without a comma locale under CFNET_TEST_STRICT=1: exit $st"; }
else
    fail "$prep is not built (make test-bins)"
fi

# 2. The helper alone: a skip for the machine stays a skip under CFNET_TEST_STRICT=1, and the
# caller goes on after either kind of skip.
st=0
CFNET_TEST_STRICT=1 CFNET_TEST_SKIPLOG='' sh -c '. tests/skip_lib.sh
    skip_env test_x "the big checks" "under 16 GiB of memory"; echo went on' >"$tmp/out" 2>&1 || st=$?
[ $st = 0 ] && grep -q "^test_x: SKIPPED the big checks (under 16 GiB of memory)$" "$tmp/out" &&
    grep -q "^went on$" "$tmp/out" || { cat "$tmp/out"; fail "skip_env under CFNET_TEST_STRICT=1: exit $st"; }
st=0
env -u CFNET_TEST_STRICT CFNET_TEST_SKIPLOG='' sh -c '. tests/skip_lib.sh
    skip_missing test_x "a part" python3-foo; echo went on' >"$tmp/out" 2>&1 || st=$?
[ $st = 0 ] && grep -q "^went on$" "$tmp/out" || { cat "$tmp/out"; fail "skip_missing did not return"; }
st=0
CFNET_TEST_STRICT=1 CFNET_TEST_SKIPLOG='' sh -c '. tests/skip_lib.sh
    skip_missing test_x "a part" python3-foo; echo went on' >"$tmp/out" 2>&1 || st=$?
[ $st = 1 ] && ! grep -q "went on" "$tmp/out" && grep -q "python3-foo is not installed" "$tmp/out" ||
    { cat "$tmp/out"; fail "skip_missing under CFNET_TEST_STRICT=1: exit $st"; }

# 3. No test says a skip its own way (an `echo "...: SKIPPED"` would pass CI unseen again): skips
# go through tests/skip_lib.sh (script tests) or TU_SKIP_MISSING (C suites). (--skip-bad and the
# command's own "(skipped)" messages are what the tests check, not skips.)
grep -n -E '(echo|printf|print_message)[^#]*"[^"#]*(SKIPPED|[Ss]kipped|[Ss]kip:|not installed|not run\b|not checked|not tried)' \
    $(ls tests/test_*.sh tests/test_*.c | grep -v '^tests/test_skip.sh$') |
    grep -v -E 'skip-bad|\(skipped\)|skipped [0-9]' >"$tmp/own" || true
[ ! -s "$tmp/own" ] || { cat "$tmp/own"; fail "skips said outside tests/skip_lib.sh"; }
# ...and the strict switch is the one CI sets for its plain check.
grep -q '^CFNET_TEST_STRICT=1 make -j2 WERROR=1 check$' .ci/run ||
    fail ".ci/run's plain check does not set CFNET_TEST_STRICT=1"

if [ $fails -ne 0 ]; then
    echo "test_skip: $fails failures"
    exit 1
fi
echo "test_skip: a missing dependency is a skip that is said, and a failure under CFNET_TEST_STRICT=1"
