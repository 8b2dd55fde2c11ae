#!/bin/sh
# The published tables of docs/results.md agree with the CSVs of docs/results/ they cite
# (tests/results_tables.py); the checker is first shown to reject a copy with one number changed.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-results.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
py=/usr/bin/python3
[ -x "$py" ] || py=python3
must_reject() { # description sed-expression
    sed "$2" docs/results.md > "$tmp/results.md"
    cmp -s docs/results.md "$tmp/results.md" && { echo "test_results_tables: '$1' changed nothing" >&2; exit 1; }
    if "$py" tests/results_tables.py "$tmp/results.md" docs/results > "$tmp/out" 2>&1; then
        echo "test_results_tables: the checker accepted $1" >&2
        exit 1
    fi
    grep -q '^FAIL' "$tmp/out" || { cat "$tmp/out" >&2; exit 1; }
}
must_reject "a wrong biomarker mean" 's/| CFNet | 11,810 | \*\*91\.4 ±/| CFNet | 11,810 | **91.5 ±/'
must_reject "a wrong ablation cell" 's/^| dropout | CFNet | 3 | 14785 | 4\.27/| dropout | CFNet | 3 | 14785 | 4.28/'
must_reject "a wrong seed of the rotated-MNIST table" 's/| \*\*2\.88 ± 0\.55 %\*\* | 3\.25, 2\.25/| **2.88 ± 0.55 %** | 3.25, 2.35/'
must_reject "a wrong mirrored-digits time" 's/| 5\.85 % (21), 5\.40 % (27), 7\.15 % (12) | 753 s |/| 5.85 % (21), 5.40 % (27), 7.15 % (12) | 754 s |/'
"$py" tests/results_tables.py docs/results.md docs/results
