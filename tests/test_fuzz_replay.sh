#!/bin/sh
# Replays the committed fuzz corpora through every fuzz target (built with the normal compiler);
# target replay_X reads fuzz/corpus_X when that directory exists, else the model corpus fuzz/corpus:
# each input must load or be rejected without a crash, and round trips must hold.
set -eu
build=${CFNET_BUILD:-build/default}
status=0
for r in "$build"/fuzz/replay_*; do
    [ -x "$r" ] || continue
    name=$(basename "$r")
    corpus=fuzz/corpus
    [ -d "fuzz/corpus_${name#replay_}" ] && corpus="fuzz/corpus_${name#replay_}"
    if res=$("$r" "$corpus"); then echo "$name ($corpus): $res"; else echo "FAILED: $name"; status=1; fi
done
exit $status
