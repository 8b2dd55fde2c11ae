#!/bin/sh
# The model targets' libFuzzer dictionary, fuzz/dict_model.txt, cannot rot: every entry parses
# as libFuzzer reads a dictionary and is a word of the model format that the code or
# docs/format.md names, and every layer kind, layer field, tensor name, option and header key of
# the code is in it (tests/fuzz_dict.py, first shown to reject broken copies); every layer kind the
# built library reports is one the checker finds in src/, so none goes unchecked. And `make fuzz`
# passes it: run in a scratch copy of the tree with a stand-in for clang whose "fuzz targets"
# note how they were run, the model targets get -dict=fuzz/dict_model.txt, a target with a
# corpus of its own (fuzz_image) none, and a fuzz/dict_<name>.txt is the dictionary of its target.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
py=/usr/bin/python3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-fuzzdict.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "test_fuzz_dict: FAIL: $*"; exit 1; }

# the checker rejects a line libFuzzer would not read, a word the code does not name, a word
# twice, and a dictionary without a layer kind of the code; the last two say what to do (a
# layer kind added or renamed in the code fails here until the dictionary follows)
rejects() { # WHAT, then the broken copy on stdin
    cat >"$tmp/bad.txt"
    if "$py" tests/fuzz_dict.py "$tmp/bad.txt" . >"$tmp/bad.out" 2>&1; then
        fail "the checker passed a dictionary with $1"
    fi
}
{ cat fuzz/dict_model.txt; echo 'bad="\q"'; } | rejects "an invalid escape"
{ cat fuzz/dict_model.txt; echo 'bad="open'; } | rejects "an unclosed quote"
{ cat fuzz/dict_model.txt; echo 'bad-name="kind"'; } | rejects "a name AFL refuses"
{ cat fuzz/dict_model.txt; echo 'gone="no_such_layer"'; } | rejects "a word the code does not name"
grep -qF "'no_such_layer' is not the format's" "$tmp/bad.out" && grep -qF "(remove it from the dictionary" "$tmp/bad.out" ||
    fail "the word the code does not name not said with what to do: $(cat "$tmp/bad.out")"
{ cat fuzz/dict_model.txt; echo 'again="relu"'; } | rejects "a word twice"
grep -v '"relu"' fuzz/dict_model.txt | rejects "a layer kind left out"
grep -qF "'relu', a word of the format in the code, is not in the dictionary (add it, under its heading: NAME=\"relu\")" "$tmp/bad.out" ||
    fail "the missing layer kind not named with what to do: $(cat "$tmp/bad.out")"
echo "self-check: a bad escape, an open quote, a bad name, a word not the code's, a word twice and a missing kind are refused"

# a layer kind the library reports but the checker does not find in src/ (registered some other
# way) is refused, named with what to do: a stand-in library reporting one such kind
cat >"$tmp/kinds.c" <<'EOF'
static const char *const kinds[] = {"relu", "brand_new_kind"};
int cfnet_layer_kind_count(void) { return 2; }
const char *cfnet_layer_kind_name(int k) { return k >= 1 && k <= 2 ? kinds[k - 1] : "unknown"; }
EOF
${CC:-cc} -shared -fPIC -o "$tmp/libkinds.so" "$tmp/kinds.c" || fail "could not build the stand-in library"
if "$py" tests/fuzz_dict.py fuzz/dict_model.txt . "$tmp/libkinds.so" >"$tmp/bad.out" 2>&1; then
    fail "the checker passed a library kind it does not find in src/"
fi
grep -qF "'brand_new_kind', layer kind 2 of $tmp/libkinds.so, is not found in src/layers/" "$tmp/bad.out" &&
    grep -qF "teach source_kinds()" "$tmp/bad.out" && ! grep -qF "'relu'" "$tmp/bad.out" ||
    fail "the library kind the checker does not find not said (or relu blamed): $(cat "$tmp/bad.out")"
echo "self-check: a kind of the library that src/ does not show as the checker reads it is refused"

[ -f lib/libcfnet.so ] || fail "lib/libcfnet.so is not built (run make first)"
"$py" tests/fuzz_dict.py fuzz/dict_model.txt . lib/libcfnet.so || fail "fuzz/dict_model.txt does not match the code"
# SECURITY.md's paragraph on fuzzing names every dictionary the fuzzing runs use
for d in fuzz/dict_*.txt; do
    grep -qF "\`$d\`" SECURITY.md || fail "SECURITY.md does not name $d (its fuzzing paragraph)"
done

# `make fuzz` with a stand-in clang, in a scratch tree (its own build/, a copy of fuzz/)
mkdir "$tmp/tree" "$tmp/bin"
for f in Makefile include src scripts examples bench tests; do ln -s "$top/$f" "$tmp/tree/$f"; done
cp -r fuzz "$tmp/tree/fuzz"
cat >"$tmp/bin/clang" <<'EOF'
#!/bin/sh
# stands in for clang: the "fuzz target" it makes notes its name and arguments in $FUZZ_RUNS
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
printf '#!/bin/sh\necho "%s $*" >>"$FUZZ_RUNS"\n' "$(basename "$out")" >"$out"
chmod +x "$out"
EOF
chmod +x "$tmp/bin/clang"
unset MAKEFLAGS MFLAGS MAKELEVEL || true
fuzz_run() {
    : >"$tmp/runs.txt"
    PATH="$tmp/bin:$PATH" FUZZ_RUNS="$tmp/runs.txt" make --no-print-directory -C "$tmp/tree" fuzz FUZZ_SECONDS=1 >"$tmp/make.out" 2>&1 ||
        fail "make fuzz with a stand-in clang: $(tail -20 "$tmp/make.out")"
}
fuzz_run
for src in fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    line=$(grep "^$name " "$tmp/runs.txt") || fail "make fuzz did not run $name: $(cat "$tmp/runs.txt")"
    case $name in
    fuzz_image) case $line in *-dict=*) fail "make fuzz gave $name, of its own corpus, a dictionary: $line" ;; esac ;;
    *) case " $line " in *" -dict=fuzz/dict_model.txt "*) ;; *) fail "make fuzz ran $name without fuzz/dict_model.txt: $line" ;; esac ;;
    esac
done
# a target's own dictionary
printf '"\\x89PNG"\n' >"$tmp/tree/fuzz/dict_image.txt"
printf '"cfnet"\n' >"$tmp/tree/fuzz/dict_load.txt"
fuzz_run
grep -q "^fuzz_image .* -dict=fuzz/dict_image.txt " "$tmp/runs.txt" || fail "make fuzz ignored fuzz/dict_image.txt: $(cat "$tmp/runs.txt")"
grep -q "^fuzz_load .* -dict=fuzz/dict_load.txt " "$tmp/runs.txt" || fail "make fuzz ignored fuzz/dict_load.txt: $(cat "$tmp/runs.txt")"
grep -q "^fuzz_roundtrip .* -dict=fuzz/dict_model.txt " "$tmp/runs.txt" || fail "make fuzz lost the model dictionary of fuzz_roundtrip: $(cat "$tmp/runs.txt")"
echo "test_fuzz_dict: fuzz/dict_model.txt matches the code; make fuzz gives it to the model targets, a fuzz/dict_<name>.txt to its own"
