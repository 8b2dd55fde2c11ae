#!/bin/sh
# What the Makefile builds depends on the flags it was built with: after a plain build,
# `make WERROR=1`, `make BLAS=blas` and `make CFLAGS=...` rebuild (README.md, docs/contributing.md)
# instead of keeping objects built with other flags. Checked on one object in a scratch copy of
# the tree (the sources linked, the build directory its own).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-makeflags.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "test_make_flags: FAIL: $*" >&2; exit 1; }

for f in Makefile include src scripts examples bench tests fuzz; do ln -s "$top/$f" "$tmp/$f"; done
# A make of its own, with the default settings (not those of the `make check` running this).
unset MAKEFLAGS MFLAGS MAKELEVEL WERROR BLAS CFLAGS LDFLAGS OPT SANITIZE COVERAGE CC || true
obj=build/default/obj/core/version.o
m() { make --no-print-directory -C "$tmp" "$@" 2>&1; }

m -s "$obj" >"$tmp/build.log" || { cat "$tmp/build.log"; fail "building $obj"; }
m -n "$obj" | grep -q -- "-o $obj" && fail "$obj is rebuilt with unchanged flags"
out=$(m -n WERROR=1 "$obj")
printf '%s\n' "$out" | grep -- "-o $obj" | grep -q -- -Werror ||
    fail "make WERROR=1 keeps $obj built without -Werror"
out=$(m -n BLAS=blas "$obj")
printf '%s\n' "$out" | grep -- "-o $obj" | grep -vq -- -DCF_BLAS_OPENBLAS ||
    fail "make BLAS=blas keeps $obj built for OpenBLAS"
out=$(m -n CFLAGS=-DCFNET_TEST_FLAG "$obj")
printf '%s\n' "$out" | grep -- "-o $obj" | grep -q -- -DCFNET_TEST_FLAG ||
    fail "make CFLAGS=... keeps $obj built without them"
echo "test_make_flags: a change of WERROR, BLAS or CFLAGS rebuilds; unchanged flags do not"
