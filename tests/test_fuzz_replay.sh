#!/bin/sh
# Replays the committed fuzz corpus through every fuzz target (built with the normal compiler):
# each input must load or be rejected without a crash, and round trips must hold.
set -eu
build=${CFNET_BUILD:-build/default}
status=0
for r in "$build"/fuzz/replay_*; do
    [ -x "$r" ] || continue
    echo "$(basename "$r"): $("$r" fuzz/corpus)" || status=1
done
exit $status
