#!/bin/sh
# Every function declared in the public header must be exercised with bad arguments in
# tests/test_misuse.c, so a new function cannot ship without its misuse test.
set -eu
missing=""
for f in $(grep -oE 'cfnet_[a-z0-9_]+\(' include/cfnet/cfnet.h | tr -d '(' | sort -u); do
    grep -q "$f(" tests/test_misuse.c || missing="$missing $f"
done
if [ -n "$missing" ]; then
    echo "test_api_coverage: not exercised in tests/test_misuse.c:$missing"
    exit 1
fi
echo "test_api_coverage: all $(grep -oE 'cfnet_[a-z0-9_]+\(' include/cfnet/cfnet.h | sort -u | wc -l) public functions have misuse tests"
