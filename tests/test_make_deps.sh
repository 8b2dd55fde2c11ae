#!/bin/sh
# Incremental builds (docs/contributing.md): a changed header rebuilds every object and program
# that includes it, directly or through another header, and nothing that does not; one protoc-c
# run makes both generated ONNX files (a parallel build must not run it twice at once); `make help`
# and docs/contributing.md name every target.
# Asks `make -n -W HEADER` (what would be rebuilt if HEADER changed, without changing it) of the
# tree that `make check` has just built, with the same make variables; run alone, after
# `make test-bins examples bench-bins` from the repository root.
set -eu
cd "$(dirname "$0")/.."
fail() { echo "test_make_deps: FAIL: $*" >&2; exit 1; }

# The command-line variables of the `make check` running this (SANITIZE=1, CC=clang, ...), so
# that the query sees the same build directory and flags; not its -j and jobserver.
vars=""
case " ${MAKEFLAGS:-} " in *" -- "*) vars=${MAKEFLAGS#* -- } ;; esac
unset MAKEFLAGS MFLAGS MAKELEVEL
m() { eval "make --no-print-directory $vars \"\$@\"" 2>&1; }
b=$(m -s --eval 'print-var-%: ; @echo $($*)' print-var-BUILD)
proto=$(m -s --eval 'print-var-%: ; @echo $($*)' print-var-ONNX_PROTO)
targets="all test-bins examples bench-bins"

m -n $targets | grep -q -- ' -o ' &&
    fail "$b is not up to date: run \`make test-bins examples bench-bins\` first"

# rebuilt HEADER: the outputs `make` would rebuild after HEADER changed.
rebuilt() { m -n -W "$1" $targets | grep -oE -- ' -o [^ ]+' | sed 's/^ -o //'; }
# must HEADER OUTPUT...: each OUTPUT is rebuilt.   mustnot HEADER OUTPUT...: none is.
must() {
    h=$1; shift; out=$(rebuilt "$h")
    for o in "$@"; do printf '%s\n' "$out" | grep -qx -- "$o" || fail "a change to $h does not rebuild $o"; done
}
mustnot() {
    h=$1; shift; out=$(rebuilt "$h")
    for o in "$@"; do printf '%s\n' "$out" | grep -qx -- "$o" && fail "a change to $h rebuilds $o"; done
    return 0
}

# The examples' shared headers reach the benchmarks too (they link examples/common/*.c).
must examples/common/models.h "$b/bench/bench_nets" "$b/bench/bench_layers" "$b/examples/demo"
must examples/common/biomarker.h "$b/tool/biomarker.o" "$b/bench/bench_sgemm" "$b/examples/features"
mustnot examples/common/models.h "$b/tests/test_version" "$b/obj/core/version.o"
# Test helpers, and private library headers a test includes itself.
must tests/testutil.h "$b/tests/testutil.o" "$b/tests/test_version" "$b/tests/test_tool_data"
must src/kernels/simd.h "$b/obj/kernels/simd.o" "$b/tests/test_simd" "$b/bench/bench_sgemm"
# A header of one program rebuilds that program only.
must bench/bench_util.h "$b/bench/bench_sgemm" "$b/bench/bench_nets"
mustnot bench/bench_util.h "$b/examples/minimal" "$b/tests/test_simd" "$b/obj/kernels/simd.o" \
    "$b/bench/bench_equivariance"
must src/tool/tool.h "$b/tool/main.o" "$b/tool/mpi_single.o" "$b/tests/test_tool_image"
mustnot src/tool/tool.h "$b/obj/core/version.o" "$b/examples/minimal"
must include/cfnet/cfnet.h "$b/obj/core/version.o" "$b/tests/testutil.o" "$b/tool/mpi_single.o" \
    "$b/examples/minimal"
echo "test_make_deps: changed headers rebuild what includes them (examples, benchmarks, tests, command)"

n=$(m -n -W "$proto" "$b/obj/io/onnx.o" "$b/obj/gen/onnx.pb-c.o" | grep -c '^protoc-c ' || true)
[ "$n" = 1 ] || fail "protoc-c runs $n times for onnx.pb-c.c and onnx.pb-c.h (one run makes both)"
echo "test_make_deps: one protoc-c run makes both generated files"

# Every phony target is in `make help` and in docs/contributing.md.
phony=$(awk '/^\.PHONY:/ { on = 1; sub(/^\.PHONY:/, "") } on { c = /\\$/; sub(/\\$/, ""); print; on = c }' Makefile |
        tr ' ' '\n' | grep -v '^$' | sort -u)
help=$(m -s help)
for t in $phony; do
    printf '%s\n' "$help" | grep -qE "(^|[ /,])$t([ ,]|$)" || fail "make help does not name the target $t"
    grep -qE "make( [A-Z_]+=[^ ]*)* $t([^a-z-]|$)" docs/contributing.md ||
        fail "docs/contributing.md does not name the target $t"
done
echo "test_make_deps: make help and docs/contributing.md name every target ($(echo $phony | wc -w))"

# The folders `make help` names are this build's, and the programs it names exist once built: a
# newcomer can copy its lines (another build, such as SANITIZE=1, gets its own folders).
printf '%s\n' "$help" | grep -qF "($b/tests/)" || fail "make help does not name $b/tests/"
for p in $(printf '%s\n' "$help" | grep -oE "$b/tests/test_[a-z_0-9]+" | sort -u); do
    [ -x "$p" ] || fail "make help names $p, which this build did not make"
done
san_help=$(make --no-print-directory -s SANITIZE=1 help 2>&1)
printf '%s\n' "$san_help" | grep -q "build/san-[^ ]*/tests/test_pool" ||
    fail "make SANITIZE=1 help does not name its own build folder"
printf '%s\n' "$san_help" | grep -E "build/default/(tests|examples|bench|mpi)|[ (]lib/|[ (]bin/" |
    grep -v -e "^make clean" -e "^One script test" | grep -q . && fail "make SANITIZE=1 help names the default build's folders"
echo "test_make_deps: make help names this build's folders ($b/)"
# `make help` writes nothing: `make SANITIZE=1 help` above wrote the flags stamp of that build
# (build/san-cc/flags, without this check's WERROR=1), so that a sanitizer build beside this
# check, or the next one, was rebuilt whole. Here a build folder of its own (CC names no
# compiler: nothing is built).
probe=build/san-cfnet-help-probe
rm -rf "$probe"
make --no-print-directory -s SANITIZE=1 CC=cfnet-help-probe help >/dev/null 2>&1 ||
    fail "make SANITIZE=1 CC=cfnet-help-probe help failed"
if [ -e "$probe" ]; then
    rm -rf "$probe"
    fail "make SANITIZE=1 help wrote its build's flags stamp ($probe)"
fi
echo "test_make_deps: make help writes no build's files"
