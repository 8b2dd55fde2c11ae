#!/bin/sh
# Replays the committed fuzz corpora through every fuzz target (built with the normal compiler):
# each input must load or be rejected without a crash, and round trips must hold. Target
# fuzz_X replays fuzz/corpus_X when that directory exists (fuzz_image: fuzz/corpus_image, the
# image readers), else the shared model corpus fuzz/corpus.
#
# Every fuzz/fuzz_*.c must have its replay driver in $CFNET_BUILD/fuzz; a missing driver, a
# driver that exits non-zero (an abort is 134, a sanitizer report 1) or one killed by a signal
# fails the test. Before replaying, the script checks itself on stand-in drivers (one crashing,
# one missing) so that it cannot silently pass again.
set -eu
build=${CFNET_BUILD:-build/default}
srcdir=${CFNET_FUZZ_SRC:-fuzz}
corpus=${CFNET_FUZZ_CORPUS:-fuzz/corpus}

replay_all() { # $1: build dir, $2: fuzz source dir, $3: corpus (or $3_<name>); non-zero on failure
    st=0; n=0
    for src in "$2"/fuzz_*.c; do
        [ -e "$src" ] || continue
        name=$(basename "$src" .c); name=${name#fuzz_}
        r="$1/fuzz/replay_$name"
        n=$((n + 1))
        if [ ! -x "$r" ]; then
            echo "FAIL: replay driver $r is missing (build it with make check)"
            st=1; continue
        fi
        c="$3"
        [ -d "${3}_$name" ] && c="${3}_$name"
        if out=$("$r" "$c" 2>&1); then
            echo "replay_$name ($c): $out"
        else
            rc=$?
            echo "FAIL: replay_$name exited with status $rc:"
            printf '%s\n' "$out" | tail -20
            st=1
        fi
    done
    if [ "$n" -eq 0 ]; then echo "FAIL: no fuzz targets in $2"; st=1; fi
    return $st
}

if [ "${CFNET_REPLAY_SELFTEST:-1}" = 1 ]; then
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/src" "$tmp/build/fuzz" "$tmp/corpus"
    : > "$tmp/src/fuzz_crash.c"; : > "$tmp/src/fuzz_gone.c"; : > "$tmp/corpus/x"
    printf '#!/bin/sh\nkill -ABRT $$\n' > "$tmp/build/fuzz/replay_crash"
    chmod +x "$tmp/build/fuzz/replay_crash"
    if replay_all "$tmp/build" "$tmp/src" "$tmp/corpus" >/dev/null 2>&1; then
        echo "FAIL: the replay check passed a crashing and a missing driver"; exit 1
    fi
    rm "$tmp/src/fuzz_crash.c"
    if replay_all "$tmp/build" "$tmp/src" "$tmp/corpus" >/dev/null 2>&1; then
        echo "FAIL: the replay check passed a missing driver"; exit 1
    fi
    echo "self-check: a crashing driver and a missing driver both fail"
fi

replay_all "$build" "$srcdir" "$corpus"
