# shellcheck shell=sh
# The one way the script tests skip something (sourced by tests/test_*.sh; POSIX sh). Every
# skip is printed, and added to $CFNET_TEST_SKIPLOG when set (`make check` lists them at the
# end of its log), so that a skipped check is never mistaken for a passed one.
#
# skip_missing TEST WHAT PACKAGE: WHAT cannot run because PACKAGE is not installed. A skip
#   without CFNET_TEST_STRICT; with CFNET_TEST_STRICT=1 (CI's plain `make check`) a failure:
#   the test exits with status 1, naming the package and scripts/install-deps --extra.
# skip_env TEST WHAT REASON: WHAT does not apply to this build or machine (a sanitizer build,
#   too little memory, no permission to mount or trace...): a skip, even with CFNET_TEST_STRICT.
# Both return otherwise: the caller goes on with its other checks, or exits 0 when none is left.
# (Only these two may print a skip: tests/test_skip.sh fails on any other.)
skip_missing() {
    if [ "${CFNET_TEST_STRICT:-0}" = 1 ]; then
        echo "$1: FAIL: $2: $3 is not installed; CFNET_TEST_STRICT=1 makes this a failure, not a skip (scripts/install-deps --extra installs it)"
        [ -z "${CFNET_TEST_SKIPLOG:-}" ] ||
            echo "$1: FAILED (strict): $2: $3 is not installed" >>"$CFNET_TEST_SKIPLOG"
        exit 1
    fi
    echo "$1: SKIPPED $2: $3 is not installed (scripts/install-deps --extra)"
    [ -z "${CFNET_TEST_SKIPLOG:-}" ] ||
        echo "$1: SKIPPED $2: $3 is not installed" >>"$CFNET_TEST_SKIPLOG"
}
skip_env() {
    echo "$1: SKIPPED $2 ($3)"
    [ -z "${CFNET_TEST_SKIPLOG:-}" ] || echo "$1: SKIPPED $2 ($3)" >>"$CFNET_TEST_SKIPLOG"
}
