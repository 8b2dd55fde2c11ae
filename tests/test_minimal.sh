#!/bin/sh
# The minimal example end to end: train, predict, save, load, predict again; predictions match.
set -eu
build=${CFNET_BUILD:-build/default}
out="$build/test-output"
mkdir -p "$out"
rm -f "$out/minimal.cfnet"
"$build/examples/minimal" "$out/minimal.cfnet"
test -s "$out/minimal.cfnet"
