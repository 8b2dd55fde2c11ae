#!/bin/sh
# The Python binding's unittest suite (python/tests) against the library just built.
# Needs a python3 that can import numpy: Debian's /usr/bin/python3 (python3-numpy) is preferred,
# since another python3 without numpy may come first on PATH.
# Environment (set by `make check`): CFNET_LIBDIR = absolute directory of libcfnet.so,
# CFNET_SANITIZE, CFNET_BUILD, CC (see tests/sanitizer_env.sh).
set -eu
cd "$(dirname "$0")/.."

py=""
for cand in /usr/bin/python3 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import numpy' >/dev/null 2>&1; then
        py=$(command -v "$cand")
        break
    fi
done
if [ -z "$py" ]; then
    echo "test_python: no python3 with numpy found (apt-get install python3-numpy)" >&2
    exit 1
fi

libdir=${CFNET_LIBDIR:-$(pwd)/lib}
CFNET_LIBRARY=$libdir/libcfnet.so
export CFNET_LIBRARY
[ -e "$CFNET_LIBRARY" ] || { echo "test_python: $CFNET_LIBRARY not built" >&2; exit 1; }

. tests/sanitizer_env.sh
. tests/skip_lib.sh
case "$SAN_KIND" in
asan)
    # A sanitized libcfnet inside an unsanitized interpreter: the runtime must come first.
    # Python's own allocations are not leak-checked.
    LD_PRELOAD=$SAN_PRELOAD
    ASAN_OPTIONS=detect_leaks=0
    export LD_PRELOAD ASAN_OPTIONS
    ;;
tsan)
    skip_env test_python "every check" "the interpreter is not instrumented for ThreadSanitizer"
    exit 0
    ;;
esac
echo "test_python: $py ($("$py" -c 'import numpy, sys; print("Python", sys.version.split()[0], "numpy", numpy.__version__)')), $CFNET_LIBRARY"
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
PYTHONPATH=$(pwd)/python${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH
# Python does not install its KeyboardInterrupt handler when it starts with SIGINT ignored (a
# test run started by nohup, or in the background of a script: `make check &`), and the Ctrl-C
# tests failed (and their children, inheriting the ignore, waited 300 s each): the runner puts
# Python's handler in place before the tests run.
runner='import signal, sys, unittest
signal.signal(signal.SIGINT, signal.default_int_handler)
unittest.main(module=None, argv=["python -m unittest"] + sys.argv[1:])'
"$py" -c "$runner" discover -s python/tests -t python/tests -v

# The Ctrl-C tests again, started with SIGINT ignored: they pass, and soon. The ignore is set
# inside timeout, which gives its child SIGINT's default action otherwise.
# shellcheck disable=SC2016
ignoring='trap "" INT; exec "$@"'
timeout 60 sh -c "$ignoring" sh "$py" -c \
    'import signal, sys; sys.exit(signal.getsignal(signal.SIGINT) is not signal.SIG_IGN)' ||
    { echo "test_python: FAIL: could not start $py with SIGINT ignored" >&2; exit 1; }
log=${CFNET_BUILD:-build/default}/test-output/python/ctrl-c-with-sigint-ignored.txt
mkdir -p "$(dirname "$log")"
st=0
timeout 300 sh -c "$ignoring" sh "$py" -c "$runner" discover -s python/tests -t python/tests \
    -k ctrl_c -k sigint >"$log" 2>&1 || st=$?
if [ "$st" != 0 ]; then
    cat "$log" >&2
    echo "test_python: FAIL: the Ctrl-C tests, started with SIGINT ignored, ended with status" \
         "$st (124: still running after 300 s)" >&2
    exit 1
fi
# Python before 3.12 ends a run of no tests with status 0: a -k that no longer matches (a test
# renamed) would pass here without running any
grep -Eq "^Ran [1-9][0-9]* tests? in" "$log" ||
    { cat "$log" >&2; echo "test_python: FAIL: -k ctrl_c -k sigint ran no test" >&2; exit 1; }
echo "test_python: the Ctrl-C tests pass when started with SIGINT ignored ($log)"
