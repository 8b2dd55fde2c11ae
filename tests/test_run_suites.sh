#!/bin/sh
# scripts/run-suites, which runs the suites of `make check` and `make check-valgrind` CHECK_JOBS
# at a time: on fake suites (one passing, one failing, one writing a skip, one slow that ends
# after the others), the output is the same with 1 and with 4 jobs: each suite's output whole and
# in suite order, "FAILED: SUITE" after a failed one, the skips in suite order, then the summary;
# the status is 1 when a suite failed, 0 when none did; every suite has its own
# CFNET_TEST_OUTDIR.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-run-suites-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fails=0
fail() { echo "test_run_suites: FAIL: $*"; fails=$((fails + 1)); }
unset CFNET_TEST_STRICT CHECK_JOBS

top=$(pwd)
# The runner's default outdir holds the real runs' times (make check writes them after all its
# suites, this one too): this test must not write there. It did (its runs without --outdir):
# after CI, build/default/test-output/suite-times.txt held only "0 .../d_pass.sh".
real_times() { cat build/default/test-output/suite-times*.txt 2>/dev/null | cksum; }
real_before=$(real_times)
mkdir "$tmp/s"
# slow: waits (in parallel runs) until the suite after it has ended, so that it ends last.
cat >"$tmp/s/a_slow.sh" <<EOF
#!/bin/sh
echo "slow: starts"
if [ "\${WAIT_FOR_LAST:-0}" = 1 ]; then
    n=0
    while [ ! -e "$tmp/last-done" ] && [ \$n -lt 600 ]; do sleep 0.1; n=\$((n + 1)); done
fi
echo a_slow >"\$CFNET_TEST_OUTDIR/who"
echo "slow: ends"
EOF
cat >"$tmp/s/b_fail.sh" <<EOF
#!/bin/sh
echo b_fail >"\$CFNET_TEST_OUTDIR/who"
echo "fail: out"
echo "fail: err" >&2
exit 3
EOF
cat >"$tmp/s/c_skip.sh" <<EOF
#!/bin/sh
. "$top/tests/skip_lib.sh"
echo c_skip >"\$CFNET_TEST_OUTDIR/who"
skip_env c_skip "the fake check" "a fake reason"
EOF
cat >"$tmp/s/d_pass.sh" <<EOF
#!/bin/sh
echo d_pass >"\$CFNET_TEST_OUTDIR/who"
echo "pass: out"
: >"$tmp/last-done"
EOF
chmod +x "$tmp"/s/*.sh
s=$tmp/s
suites="$s/a_slow.sh $s/b_fail.sh $s/c_skip.sh $s/d_pass.sh"

cat >"$tmp/want" <<EOF
== $s/a_slow.sh
slow: starts
slow: ends
== $s/b_fail.sh
fail: out
fail: err
FAILED: $s/b_fail.sh
== $s/c_skip.sh
c_skip: SKIPPED the fake check (a fake reason)
== $s/d_pass.sh
pass: out
== skips (tests/skip_lib.sh, TU_SKIP_MISSING):
c_skip: SKIPPED the fake check (a fake reason)
== test suites: 3 passed, 1 failed
EOF

for j in 1 4; do
    rm -rf "$tmp/out$j" "$tmp/last-done"
    w=0; [ $j = 1 ] || w=1
    st=0
    # shellcheck disable=SC2086
    WAIT_FOR_LAST=$w scripts/run-suites -j $j --outdir "$tmp/out$j" --skiplog "$tmp/out$j/skips.txt" \
        $suites >"$tmp/got$j" 2>&1 || st=$?
    [ "$st" = 1 ] || fail "-j $j: status $st with a failed suite, not 1"
    diff "$tmp/want" "$tmp/got$j" >"$tmp/diff$j" || { cat "$tmp/diff$j"; fail "-j $j: the output differs (- wanted, + got)"; }
    grep -qx "c_skip: SKIPPED the fake check (a fake reason)" "$tmp/out$j/skips.txt" ||
        fail "-j $j: the skip is not in the --skiplog file"
    for n in a_slow b_fail c_skip d_pass; do
        [ "$(cat "$tmp/out$j/$n.sh/who" 2>/dev/null)" = $n ] ||
            fail "-j $j: $n did not write into its own CFNET_TEST_OUTDIR ($tmp/out$j/$n.sh)"
    done
    [ "$(wc -l <"$tmp/out$j/suite-times.txt")" = 4 ] || fail "-j $j: suite-times.txt does not time the 4 suites"
done

# With 4 jobs the slow suite ended last: the order of the output is the suites', not the ends'.
[ -e "$tmp/last-done" ] || fail "the passing suite did not run"

# The failure is not lost wherever it is (last suite), and none failed means status 0.
st=0
scripts/run-suites -j 2 --outdir "$tmp/out-last" "$s/d_pass.sh" "$s/c_skip.sh" "$s/b_fail.sh" >"$tmp/last" 2>&1 || st=$?
[ "$st" = 1 ] && grep -qx "FAILED: $s/b_fail.sh" "$tmp/last" && tail -1 "$tmp/last" | grep -qx "== test suites: 2 passed, 1 failed" ||
    { cat "$tmp/last"; fail "a failing last suite: status $st"; }
st=0
CHECK_JOBS=3 scripts/run-suites --outdir "$tmp/out-ok" "$s/c_skip.sh" "$s/d_pass.sh" >"$tmp/ok" 2>&1 || st=$?
[ "$st" = 0 ] && tail -1 "$tmp/ok" | grep -qx "== test suites: 2 passed, 0 failed" ||
    { cat "$tmp/ok"; fail "passing suites: status $st"; }
# Without --skiplog no skip list; CFNET_TEST_STRICT is named in the summary.
grep -q "^== skips" "$tmp/ok" && fail "a skip list without --skiplog"
st=0
CFNET_TEST_STRICT=1 scripts/run-suites -j 2 --outdir "$tmp/out-strict" "$s/d_pass.sh" >"$tmp/strict" 2>&1 || st=$?
tail -1 "$tmp/strict" | grep -qx "== test suites: 1 passed, 0 failed (CFNET_TEST_STRICT=1)" ||
    { cat "$tmp/strict"; fail "the summary under CFNET_TEST_STRICT=1"; }

# check-valgrind's form: its own run command and header, its own summary.
st=0
# shellcheck disable=SC2016 # expanded by run-suites' sh -c
scripts/run-suites -j 2 --outdir "$tmp/out-vg" --summary valgrind --header 'echo "== valgrind $1"' \
    --run '"$1" >/dev/null' "$s/b_fail.sh" --header 'echo "== other $1"' "$s/d_pass.sh" >"$tmp/vg" 2>&1 || st=$?
printf '%s\n' "== valgrind $s/b_fail.sh" "fail: err" "FAILED: $s/b_fail.sh" "== other $s/d_pass.sh" \
    "== valgrind: 1 failed" >"$tmp/vg-want"
[ "$st" = 1 ] || fail "--summary valgrind: status $st with a failed suite, not 1"
diff "$tmp/vg-want" "$tmp/vg" >"$tmp/vg-diff" || { cat "$tmp/vg-diff"; fail "--summary valgrind: the output differs"; }

# A run stopped by SIGTERM (a CI time limit; Ctrl-C alike) stops the suites still running, with
# what they started; they used to go on on their own, writing into the build tree.
cat >"$tmp/s/e_hang.sh" <<EOF
#!/bin/sh
sleep 300 &
echo \$! >"$tmp/hang-child"
echo \$\$ >"$tmp/hang-pid.part" && mv "$tmp/hang-pid.part" "$tmp/hang-pid"
wait
EOF
chmod +x "$tmp/s/e_hang.sh"
scripts/run-suites -j 2 --outdir "$tmp/out-kill" "$s/e_hang.sh" "$s/c_skip.sh" >"$tmp/kill" 2>&1 &
runner=$!
n=0
while [ ! -e "$tmp/hang-pid" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
kill -TERM $runner
st=0
wait $runner || st=$?
[ "$st" = 143 ] || fail "run-suites stopped by SIGTERM: status $st, not 143"
for p in $(cat "$tmp/hang-pid" "$tmp/hang-child"); do
    n=0
    while kill -0 "$p" 2>/dev/null && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
    if kill -0 "$p" 2>/dev/null; then
        kill "$p"
        fail "run-suites stopped by SIGTERM left process $p of a running suite behind"
    fi
done
if grep -q Terminated "$tmp/kill"; then cat "$tmp/kill"; fail "run-suites stopped by SIGTERM: a job's 'Terminated' line"; fi

# check-valgrind's times do not replace check's (each run rewrote suite-times.txt with only its
# own suites, so that after check-valgrind the script suites had no time and started first).
# shellcheck disable=SC2016
scripts/run-suites -j 2 --outdir "$tmp/out4" --summary valgrind --run '"$1" >/dev/null' "$s/d_pass.sh" \
    >/dev/null 2>&1
[ "$(wc -l <"$tmp/out4/suite-times.txt")" = 4 ] || fail "a --summary valgrind run replaced check's suite-times.txt"
[ -e "$tmp/out4/suite-times-valgrind.txt" ] && [ "$(wc -l <"$tmp/out4/suite-times-valgrind.txt")" = 1 ] || fail "no suite-times-valgrind.txt"

# A run of some suites keeps the times of the others (it used to write only its own, so that a
# run of one suite made the next full run start the long ones in name order).
printf '%s\n' "50 $s/a_slow.sh" "40 $s/b_fail.sh" "9 $s/d_pass.sh" >"$tmp/out4/suite-times.txt"
scripts/run-suites -j 2 --outdir "$tmp/out4" "$s/d_pass.sh" "$s/c_skip.sh" >/dev/null 2>&1 || true
sort -k2 "$tmp/out4/suite-times.txt" | awk '{ print ($1 < 9 ? "new" : $1), $2 }' >"$tmp/merged"
printf '%s\n' "50 $s/a_slow.sh" "40 $s/b_fail.sh" "new $s/c_skip.sh" "new $s/d_pass.sh" >"$tmp/merged-want"
diff "$tmp/merged-want" "$tmp/merged" >"$tmp/merged-diff" ||
    { cat "$tmp/merged-diff"; fail "a run of two suites did not keep the other suites' times"; }
# ... and a run of no suites keeps them all (it emptied the file)
cp "$tmp/out4/suite-times.txt" "$tmp/times-before"
scripts/run-suites -j 2 --outdir "$tmp/out4" >/dev/null 2>&1 || true
cmp -s "$tmp/times-before" "$tmp/out4/suite-times.txt" || fail "a run of no suites changed the other suites' times"

# The start order with no times of the run's own: --default-times, the lines of --times-set
# (default check; valgrind with --summary valgrind), the suite named without build/<name>/; a
# suite timed nowhere first; the run's own times over the committed ones. Seen with 2 jobs:
# each suite adds its name to a shared log when it starts and ends only once the log has two
# names, so that the third starts after the first two have logged (the first two lines are the
# first pair, in either order).
o=$tmp/o/build/x/tests
mkdir -p "$o"
for n in p q r u; do
    cat >"$o/$n" <<EOF
#!/bin/sh
echo $n >>"$tmp/o/started"
k=0
while [ "\$(wc -l <"$tmp/o/started")" -lt 2 ] && [ \$k -lt 300 ]; do sleep 0.1; k=\$((k + 1)); done
EOF
    chmod +x "$o/$n"
done
printf '%s\n' "# comment" "check 5 tests/p" "check 20 tests/q" "check 10 tests/r" "valgrind 30 tests/p" \
    "valgrind 1 tests/q" "valgrind 20 tests/r" "sanitize 99 tests/r" >"$tmp/defaults"
pairs() { # pairs OUTDIR ARGS...: the start pairs of suites p q r u, as "a b | c d"
    rm -f "$tmp/o/started"
    d=$1; shift
    scripts/run-suites -j 2 --outdir "$d" --default-times "$tmp/defaults" "$@" \
        "$o/p" "$o/q" "$o/r" "$o/u" >/dev/null 2>&1 || true
    tr '\n' ' ' <"$tmp/o/started" |
        awk '{ a = $1 < $2 ? $1 " " $2 : $2 " " $1; b = $3 < $4 ? $3 " " $4 : $4 " " $3; print a " | " b }'
}
got=$(pairs "$tmp/od1")
[ "$got" = "q u | p r" ] || fail "--default-times (set check): start pairs '$got', not 'q u | p r'"
got=$(pairs "$tmp/od2" --summary valgrind)
[ "$got" = "p u | q r" ] || fail "--default-times (set valgrind): start pairs '$got', not 'p u | q r'"
got=$(pairs "$tmp/od3" --times-set sanitize)
[ "$got" = "p q | r u" ] || fail "--times-set sanitize: start pairs '$got', not 'p q | r u'"
# (the run's own times: p before u; q and r, timed only in the defaults, after them)
mkdir -p "$tmp/od4"
printf '%s\n' "100 $o/p" "50 $o/u" >"$tmp/od4/suite-times.txt"
got=$(pairs "$tmp/od4")
[ "$got" = "p u | q r" ] || fail "the run's own times over --default-times: start pairs '$got', not 'p u | q r'"
st=0
scripts/run-suites -j 2 --outdir "$tmp/od5" --default-times "$tmp/no-such-file" "$o/p" >/dev/null 2>&1 || st=$?
[ "$st" = 2 ] || fail "--default-times of a missing file: status $st, not 2"

# The committed times (make check's --default-times) have the three sets and name today's
# suites only (a suite renamed there would lose its place).
for set in check sanitize valgrind; do
    grep -q "^$set [0-9]* tests/test_interrupt$" tests/suite-times.txt ||
        fail "tests/suite-times.txt: no $set time of tests/test_interrupt"
done
awk '$1 != "#" { print $3 }' tests/suite-times.txt | sort -u | while read -r f; do
    case $f in
        tests/*.sh) [ -e "$f" ] ;;
        tests/*) [ -e "$f.c" ] ;;
        fuzz/replay_*) [ -e "fuzz/fuzz_${f#fuzz/replay_}.c" ] ;;
        *) false ;;
    esac || echo "tests/suite-times.txt: $f is no suite"
done >"$tmp/stale"
[ ! -s "$tmp/stale" ] || { cat "$tmp/stale"; fail "tests/suite-times.txt names suites that are gone"; }
# make suite-times: a set takes the times its run measured and keeps its committed lines for
# the suites that run did not time (they were dropped: after a check of some suites the set held
# those alone); a set whose run left no times keeps every line; suites that are gone are
# dropped. On copies, the build folder in $tmp (so that this make leaves the real build's flags
# file as it is).
mkdir -p "$tmp/st"
printf '%s\n' "# the header" "check 40 tests/test_interrupt" "check 30 tests/test_cli.sh" \
    "check 20 tests/test_gone" "sanitize 7 tests/test_interrupt" "valgrind 9 tests/test_interrupt" \
    "valgrind 8 tests/test_tensor" >"$tmp/st/committed"
printf '%s\n' "5 build/default/tests/test_interrupt" "3 /elsewhere/x.sh" >"$tmp/st/check"
printf '%s\n' "6 build/default/tests/test_tensor" >"$tmp/st/valgrind"
make -s suite-times BUILD="$tmp/st/build" SUITE_TIMES="$tmp/st/committed" \
    SUITE_TIMES_FROM="check:$tmp/st/check sanitize:$tmp/st/none valgrind:$tmp/st/valgrind" \
    >"$tmp/st/out" 2>&1 || { cat "$tmp/st/out"; fail "make suite-times on copies failed"; }
printf '%s\n' "# the header" "check 30 tests/test_cli.sh" "check 5 tests/test_interrupt" \
    "sanitize 7 tests/test_interrupt" "valgrind 9 tests/test_interrupt" "valgrind 6 tests/test_tensor" \
    >"$tmp/st/want"
diff "$tmp/st/want" "$tmp/st/committed" >"$tmp/st/diff" ||
    { cat "$tmp/st/diff"; fail "make suite-times did not keep the committed lines of the suites a run did not time"; }
# the set of the build this runs in: make check SANITIZE=... (exported to its suites) takes the
# sanitize set, a plain make check the check set
set=check
[ -z "${SANITIZE:-}" ] || set=sanitize
make -s -n check 2>/dev/null | grep -q -- "--default-times tests/suite-times.txt --times-set $set " ||
    fail "make check${SANITIZE:+ SANITIZE=$SANITIZE} does not pass --default-times tests/suite-times.txt --times-set $set"
make -s -n check-valgrind 2>/dev/null | grep -q -- "--default-times tests/suite-times.txt" ||
    fail "make check-valgrind does not pass --default-times tests/suite-times.txt"

# A wrong job count is a usage error.
st=0
scripts/run-suites -j 0 --outdir "$tmp/out-j0" "$s/d_pass.sh" >/dev/null 2>&1 || st=$?
[ "$st" = 2 ] || fail "-j 0: status $st, not 2"
# `make CHECK_JOBS=` passes an empty count: the default, as with CHECK_JOBS unset
st=0
CHECK_JOBS= scripts/run-suites -j '' --outdir "$tmp/out-jempty" "$s/d_pass.sh" >/dev/null 2>&1 || st=$?
[ "$st" = 0 ] || fail "-j '': status $st, not 0 (the default count)"
make -n -s check CHECK_JOBS= 2>/dev/null | grep -q "run-suites -j '' " ||
    fail "make check CHECK_JOBS= does not pass the empty count to run-suites as one argument"

[ "$(real_times)" = "$real_before" ] ||
    fail "the test changed the real runs' times (build/default/test-output/suite-times*.txt)"

if [ $fails -ne 0 ]; then
    echo "test_run_suites: $fails failures"
    exit 1
fi
echo "test_run_suites: suites run 1 or 4 at a time give the same ordered output, FAILED lines, skips and summary"
