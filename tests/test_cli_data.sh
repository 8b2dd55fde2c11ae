#!/bin/sh
# How the `cfnet` command finds its data: __MACOSX folders skipped, symbolic link loops in predict's
# folders, DATA that is neither a folder nor a .csv manifest, a file listed twice in a manifest,
# class names that differ only in case, the eval report's columns with UTF-8 class names, names
# that are not UTF-8, the same file in two class folders, the files predict's search leaves out, and
# class names in two Unicode forms, a quoted manifest path that starts with '#', a class name
# with a control character in the SVG report, long class names in it, a folder nested beyond the
# system's path limit, symbolic links that loop, and control characters of names in messages.
set -eu
name=cli-data
# shellcheck source=tests/cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"
train="--epochs 1 --size 32 --width 4 --threads 2 --seed 3 --batch 8 --val 0"

# Source images: 4 classes of 4 training images (32 x 32, 2 channels), in a new folder.
src="$out/src"
expect 0 "wrote 16 images" "$cfnet" synth "$src" --classes 4 --per-class 4 --test-per-class 0 --size 32
img="$src/train/class00/0000.tif"

# ---- 1. __MACOSX is neither a class nor searched ----------------------------------------------
mac="$out/mac"
mkdir -p "$mac/__MACOSX/class00"
cp -r "$src/train/class00" "$src/train/class01" "$mac/"
# what unzipping leaves: AppleDouble files (hidden) and, from some archivers, plain copies
cp "$img" "$mac/__MACOSX/class00/._0000.tif"
cp "$img" "$mac/__MACOSX/class00/0000.tif"
cp "$img" "$mac/__MACOSX/stray.tif"
# shellcheck disable=SC2086
expect 0 "on 8 images of 2 classes" "$cfnet" train "$mac" -o "$out/mac.safetensors" $train
lacks "__MACOSX" "train took __MACOSX as a class"
expect 0 "predicted 8 images" "$cfnet" predict "$out/mac.safetensors" "$mac" -o "$out/mac.csv"
grep -q "__MACOSX" "$out/mac.csv" && fail "predict searched __MACOSX"
expect 0 "images +8" "$cfnet" eval "$out/mac.safetensors" "$mac"
m="$out/mac.safetensors"

# a folder inside a class folder is not searched by train (unlike predict): said, not silent
nest="$out/nest"
mkdir -p "$nest"
cp -r "$src/train/class00" "$src/train/class01" "$nest/"
mkdir -p "$nest/class01/more"
cp "$img" "$nest/class01/more/x.tif"
# shellcheck disable=SC2086
expect 0 "ignored 1 folder inside class folders: a class's images must sit directly in its folder" \
    "$cfnet" train "$nest" -o "$out/nest.safetensors" $train

# ---- 2. a symbolic link loop under a folder given to predict -----------------------------------
loop="$out/loop"
mkdir -p "$loop/a/b"
cp "$src/train/class00/0000.tif" "$src/train/class00/0001.tif" "$loop/a/"
cp "$src/train/class01/0000.tif" "$loop/a/b/"
ln -s .. "$loop/a/b/up"     # back to a: a loop
ln -s ../.. "$loop/a/b/top" # back to the folder given
ln -s ../../a "$loop/a/b/again" # a again, by another path
expect 0 "predicted 3 images" "$cfnet" predict "$m" "$loop" -o "$out/loop.csv"
grep -Eq "skipped 3 folders reached again through a symbolic link" "$out/last.txt" ||
    fail "predict did not say it skipped the linked folders"
test "$(grep -c "symbolic link" "$out/last.txt")" = 1 || fail "more than one message about links"
test "$(wc -l <"$out/loop.csv")" = 4 || fail "loop.csv should have a header and 3 rows"
# a folder given twice is searched twice (as a file given twice is classified twice)
expect 0 "predicted 6 images" "$cfnet" predict "$m" "$loop/a" "$loop/a" -o "$out/loop2.csv"
# a link to a folder elsewhere is followed; a second path to a folder already searched is not
outer="$out/outer"
mkdir -p "$outer/real"
cp "$img" "$outer/real/"
ln -s real "$outer/alias"
ln -s ../../mac/class00 "$outer/real/elsewhere"
expect 0 "predicted 5 images" "$cfnet" predict "$m" "$outer" -o "$out/outer.csv"
grep -Eq "skipped 1 folder reached again .*the first: .*outer/real\)" "$out/last.txt" ||
    fail "the second path to outer/real was not the one skipped"

# ---- 3. DATA must be a folder or a .csv manifest; a manifest is named .csv for every command ---
expect 1 "0000.tif: DATA must be a folder with one sub-folder per class, or a .csv manifest" \
    "$cfnet" train "$img" -o "$out/x.safetensors"
lacks "NUL bytes" "train on an image parsed it as CSV"
expect 1 "0000.tif: DATA must be a folder with one sub-folder per class, or a .csv manifest" \
    "$cfnet" eval "$m" "$img"
man="$out/man"
mkdir -p "$man"
cp "$src/train/class00/0000.tif" "$man/a0.tif"
cp "$src/train/class00/0001.tif" "$man/a1.tif"
cp "$src/train/class01/0000.tif" "$man/b0.tif"
cp "$src/train/class01/0001.tif" "$man/b1.tif"
printf 'path,label\na0.tif,class00\na1.tif,class00\nb0.tif,class01\nb1.tif,class01\n' >"$man/good.txt"
cp "$man/good.txt" "$man/GOOD.CSV"
expect 1 "good.txt: DATA must be a folder with one sub-folder per class, or a .csv manifest" \
    "$cfnet" train "$man/good.txt" -o "$out/x.safetensors"
expect 1 "good.txt: DATA must be a folder" "$cfnet" eval "$m" "$man/good.txt"
expect 1 "good.txt: not a TIFF or PNG file \(a manifest's name must end in .csv\)" \
    "$cfnet" predict "$m" "$man/good.txt"
# shellcheck disable=SC2086
expect 0 "on 4 images of 2 classes" "$cfnet" train "$man/GOOD.CSV" -o "$out/x.safetensors" $train
expect 0 "images +4" "$cfnet" eval "$m" "$man/GOOD.CSV"
expect 0 "predicted 4 images" "$cfnet" predict "$m" "$man/GOOD.CSV" -o "$out/good.csv"
# an image without an image extension is still classified (the format is in its bytes)
cp "$img" "$man/plain.dat"
expect 0 "predicted 1 image in" "$cfnet" predict "$m" "$man/plain.dat" -o "$out/plain.csv"

# ---- 4. a file listed twice in a manifest -------------------------------------------------------
printf 'path,label\na0.tif,class00\nb0.tif,class01\n./a0.tif,class01\nb1.tif,class01\n' >"$man/twolabels.csv"
for cmd in train eval predict; do
    case $cmd in
    train) set -- train "$man/twolabels.csv" -o "$out/x.safetensors" ;;
    *) set -- "$cmd" "$m" "$man/twolabels.csv" ;;
    esac
    expect 1 "twolabels.csv: .*a0.tif is listed twice, lines 2 and 4 \(the second time as .*\./a0.tif\), under different labels \('class00' and 'class01'\)" \
        "$cfnet" "$@"
done
printf 'path,label\na0.tif,class00\nb0.tif,class01\na1.tif,class00\nb1.tif,class01\n' >"$man/same.csv"
printf '%s,class00\n' "$PWD/$man/a1.tif" >>"$man/same.csv" # an absolute path to a1.tif
# shellcheck disable=SC2086
expect 1 "same.csv: .*a1.tif is listed twice, lines 4 and 6" "$cfnet" train "$man/same.csv" -o "$out/x.safetensors" $train
expect 1 "same.csv: .*a1.tif is listed twice, lines 4 and 6" "$cfnet" eval "$m" "$man/same.csv"
# predict classifies a file once per row (one output row per input row)
expect 0 "predicted 5 images" "$cfnet" predict "$m" "$man/same.csv" -o "$out/same.csv"
# the same file in two splits is listed twice too (leakage)
printf 'path,label,split\na0.tif,class00,train\nb0.tif,class01,train\na0.tif,class00,test\n' >"$man/split.csv"
expect 1 "split.csv: .*a0.tif is listed twice, lines 2 and 4" "$cfnet" eval "$m" "$man/split.csv"
# a hard link is the same file
ln "$man/b1.tif" "$man/b1-link.tif"
printf 'a0.tif,class00\nb1.tif,class01\nb1-link.tif,class00\n' >"$man/hard.csv"
expect 1 "hard.csv: .*b1.tif is listed twice, lines 2 and 3 \(the second time as .*b1-link.tif\), under different labels" \
    "$cfnet" eval "$m" "$man/hard.csv"

# ---- 5. class names that differ only in case: kept apart, one warning per pair ------------------
case_="$out/case"
mkdir -p "$case_"
cp -r "$src/train/class00" "$case_/RING"
cp -r "$src/train/class01" "$case_/ring"
cp -r "$src/train/class02" "$case_/dot"
# shellcheck disable=SC2086
expect 0 "on 12 images of 3 classes" "$cfnet" train "$case_" -o "$out/case.safetensors" $train
grep -q "warning: .*classes 'RING' and 'ring' differ only in case; they are kept as two classes" \
    "$out/last.txt" || fail "no warning about RING and ring"
test "$(grep -c "differ only in case" "$out/last.txt")" = 1 || fail "not one warning for one pair"
printf 'path,label\na0.tif,Class00\na1.tif,class00\nb0.tif,CLASS00\nb1.tif,dot\n' >"$man/case.csv"
# shellcheck disable=SC2086
expect 0 "on 4 images of 4 classes" "$cfnet" train "$man/case.csv" -o "$out/x.safetensors" $train
test "$(grep -c "differ only in case" "$out/last.txt")" = 3 || fail "three labels: three pairs"
grep -q "classes 'CLASS00' and 'Class00' differ" "$out/last.txt" || fail "CLASS00/Class00 pair"

# ---- 6. eval's report: UTF-8 class names padded and cut (with …) by characters ------------------
long="aéééééééééééééééééééééééééééééééééééééééééééé" # 1 + 44 two-byte characters
utf="$out/utf"
mkdir -p "$utf"
cp -r "$src/train/class00" "$utf/ring shaped ü"
cp -r "$src/train/class01" "$utf/$long"
cp -r "$src/train/class02" "$utf/dot"
# shellcheck disable=SC2086
expect 0 "of 3 classes" "$cfnet" train "$utf" -o "$out/utf.safetensors" $train
"$cfnet" eval "$out/utf.safetensors" "$utf" >"$out/utf.txt" 2>"$out/utf.err" || fail "eval on UTF-8 names"
$py - "$out/utf.txt" "$long" <<'EOF' || fail "eval report columns with UTF-8 class names"
import sys
text = open(sys.argv[1], "rb").read().decode("utf-8")  # strict: no character cut in half
lines = text.split("\n")
h = next(i for i, l in enumerate(lines) if l.startswith("class "))
table = lines[h + 1:h + 4]
c = next(i for i, l in enumerate(lines) if l.startswith("confusion matrix"))
matrix = lines[c + 2:c + 5]
# names longer than 40 characters are cut to 39 and "…": the long one to "a", 38 é and "…"
cut = sys.argv[2][:39] + "\u2026"
assert any(l.startswith(cut + "  ") for l in table), table
assert any(l.startswith(cut + " ") for l in matrix), matrix
assert any(l.startswith("ring shaped ü" + " " * 27 + "  ") for l in table), table
# every row of the table and of the matrix has the same length in characters: the columns align
assert len({len(l) for l in table}) == 1, [len(l) for l in table]
assert len({len(l) for l in matrix}) == 1, [len(l) for l in matrix]
assert lines[h].index("precision") == 40 + 2, lines[h]
EOF

# ---- 7. names that are not UTF-8 (folders unzipped from an archive made on another system) -----
# A Latin-1 class folder name: the model stores its classes as UTF-8 JSON, where such a name
# cannot go (it used to drop out of the list silently: a model with 2 names for 3 outputs).
lat="$out/latin1"
mkdir -p "$lat"
cp -r "$src/train/class00" "$lat/caf$(printf '\351')"
cp -r "$src/train/class01" "$lat/tea"
# shellcheck disable=SC2086
expect 1 "latin1: class 'caf[\\]xE9' is not valid UTF-8 .*rename the class folder" \
    "$cfnet" train "$lat" -o "$out/latin1.safetensors" $train
test -e "$out/latin1.safetensors" && fail "train wrote a model for a class name that is not UTF-8"
printf 'path,label\na0.tif,caf\351\nb0.tif,tea\n' >"$man/latin1.csv"
# shellcheck disable=SC2086
expect 1 "class 'caf[\\]xE9' is not valid UTF-8 .*rename the label in the manifest" \
    "$cfnet" train "$man/latin1.csv" -o "$out/latin1.safetensors" $train
# eval --out of a DATA folder so named: metrics.json still names it (U+FFFD for the byte)
latd="$out/data$(printf '\351')"
mkdir -p "$latd"
cp -r "$src/train/class00" "$src/train/class01" "$latd/"
expect 0 "images +8" "$cfnet" eval "$m" "$latd" --out "$out/latin1-report"
"$py" - "$out/latin1-report/metrics.json" <<'PY' || fail "metrics.json lacks the data path"
import json, sys
j = json.load(open(sys.argv[1], encoding="utf-8"))
assert j["data"].endswith("data\ufffd"), j.get("data")
PY

# ---- 8. the same file in two class folders (a link) ----------------------------------------------
dup="$out/dup"
mkdir -p "$dup"
cp -r "$src/train/class00" "$src/train/class01" "$dup/"
ln -s class01 "$dup/class01-again" # a second class of the same images
# shellcheck disable=SC2086
expect 1 "dup: class folders 'class01' and 'class01-again' are the same folder \(one is a link to the other\)" \
    "$cfnet" train "$dup" -o "$out/dup.safetensors" $train
rm "$dup/class01-again"
ln -s ../class01/0002.tif "$dup/class00/linked.tif" # one image in two classes
# shellcheck disable=SC2086
expect 1 "dup: .*class00/linked.tif and .*class01/0002.tif are the same file \(a link\), in classes 'class00' and 'class01'" \
    "$cfnet" train "$dup" -o "$out/dup.safetensors" $train
expect 1 "are the same file \(a link\), in classes 'class00' and 'class01'" "$cfnet" eval "$m" "$dup"
rm "$dup/class00/linked.tif"
# One image under two names in one class, as tools that merge identical files (hardlink, rdfind,
# jdupes) leave a folder that held two copies: used as the two copies were, with a warning (it
# used to be refused, and a folder that trained before such a merge no longer did).
ln "$dup/class00/0000.tif" "$dup/class00/hard.tif"
ln -s 0001.tif "$dup/class00/soft.tif"
# shellcheck disable=SC2086
expect 0 "on 10 images of 2 classes" "$cfnet" train "$dup" -o "$out/dup.safetensors" $train
grep -Eq "dup: .*class00/0000.tif and .*class00/hard.tif are the same file \(a link\) in class 'class00' \(and more such names\); each name counts as one image" \
    "$out/last.txt" || fail "train did not say that two names in class00 are one file"
expect 0 "images +10" "$cfnet" eval "$out/dup.safetensors" "$dup"
# a link across classes is still refused when the folder also has such links
ln "$dup/class01/0002.tif" "$dup/class00/linked.tif"
# shellcheck disable=SC2086
expect 1 "dup: .*class00/linked.tif and .*class01/0002.tif are the same file \(a link\), in classes 'class00' and 'class01'" \
    "$cfnet" train "$dup" -o "$out/dup.safetensors" $train
lacks "each name counts" "a refused folder also warned about links within a class"
rm "$dup/class00/hard.tif" "$dup/class00/soft.tif" "$dup/class00/linked.tif"
# shellcheck disable=SC2086
expect 0 "on 8 images of 2 classes" "$cfnet" train "$dup" -o "$out/dup.safetensors" $train

# ---- 9. predict says how many files of its folders it left out --------------------------------
mixed="$out/mixed"
mkdir -p "$mixed/sub"
cp "$img" "$mixed/a.tif"
cp "$img" "$mixed/sub/b.TIF"
cp "$img" "$mixed/c.jpg"           # an image, but not one predict reads
cp "$img" "$mixed/sub/d"           # no name ending
printf 'x' >"$mixed/notes.txt"
printf 'x' >"$mixed/.DS_Store"     # hidden: skipped, not counted
printf 'x' >"$mixed/sub/Thumbs.db"
expect 0 "ignored 4 files in the folders searched that are not named .tif, .tiff or .png \(the first: .*mixed/c.jpg\)" \
    "$cfnet" predict "$m" "$mixed" -o "$out/mixed.csv"
grep -q "predicted 2 images" "$out/last.txt" || fail "predict should classify the two TIFFs"
expect 0 "" "$cfnet" predict "$m" "$mixed/a.tif" -o "$out/mixed1.csv"
lacks "ignored" "a file given by name is no folder search: nothing is ignored"
# a link named as an image whose target is gone (a share not mounted) is said, with its target;
# a link without an image name (a folder on that share?) has its own warning, not counted among
# the ignored files
ln -s "$out/not-mounted/e.tif" "$mixed/sub/e.tif"
ln -s "$out/not-mounted/f.tif" "$mixed/f.tif"
ln -s "$out/not-mounted/notes" "$mixed/sub/notes"
expect 0 "skipped 2 symbolic links named as images whose target does not exist \(the first: .*mixed/f.tif -> .*not-mounted/f.tif\)" \
    "$cfnet" predict "$m" "$mixed" -o "$out/mixed.csv"
grep -q "ignored 4 files" "$out/last.txt" || fail "a dangling link without an image name is no ignored file"
grep -q "skipped 1 symbolic link that cannot be followed (the first: .*mixed/sub/notes -> " "$out/last.txt" ||
    fail "a dangling link without an image name is not said"
grep -q "predicted 2 images" "$out/last.txt" || fail "predict should still classify the two TIFFs"
rm "$mixed/sub/e.tif"
expect 0 "skipped 1 symbolic link named as an image whose target" \
    "$cfnet" predict "$m" "$mixed" -o "$out/mixed.csv"
# a folder of nothing but such links (the whole share not mounted) is still refused, and the
# message says why rather than only "no images"
mkdir -p "$out/unmounted"
ln -s "$out/not-mounted/g.tif" "$out/unmounted/g.tif"
ln -s "$out/not-mounted/h.png" "$out/unmounted/h.png"
expect 1 "unmounted: no .tif/.tiff/.png images in this folder, only 2 symbolic links named as images whose target does not exist \(the first: .*unmounted/g.tif -> .*not-mounted/g.tif\)" \
    "$cfnet" predict "$m" "$out/unmounted" -o "$out/unmounted.csv"
# a link that loops (to itself, or two links to each other) is said to loop, not to have a target
# that does not exist (stat fails with ELOOP); another reason (a target name too long for the file
# system) is given as the system says it
loops="$out/loops"
mkdir -p "$loops"
cp "$img" "$loops/ok.tif"
ln -s self.tif "$loops/self.tif"
ln -s b.tif "$loops/a.tif"
ln -s a.tif "$loops/b.tif"
ln -s "$(printf '%0300d' 0).tif" "$loops/long.tif"
expect 0 "skipped 3 symbolic links named as images that lead into a loop of links \(the first: .*loops/[abs][a-z]*.tif -> [abs][a-z]*.tif\)" \
    "$cfnet" predict "$m" "$loops" -o "$out/loops.csv"
lacks "does not exist" "a link that loops was said to have no target"
grep -Eq "skipped 1 symbolic link named as an image whose target cannot be reached \(the first: .*loops/long.tif -> 0+.tif: File name too long\)" "$out/last.txt" ||
    fail "a link whose target name is too long: the system's reason"
grep -q "predicted 1 image" "$out/last.txt" || fail "predict should classify ok.tif beside the loops"
rm "$loops/ok.tif" "$loops/long.tif"
ln -s "$out/not-mounted/z.tif" "$loops/z.tif"
expect 1 "loops: no .tif/.tiff/.png images in this folder, only 1 symbolic link named as an image whose target does not exist \(the first: .*loops/z.tif -> .*not-mounted/z.tif\) and 3 symbolic links named as images that lead into a loop of links \(the first: " \
    "$cfnet" predict "$m" "$loops" -o "$out/loops.csv"
# given by name, such a link is said as it is, not as "no such file or directory"
expect 1 "loops/self.tif: a symbolic link that leads into a loop of links" \
    "$cfnet" predict "$m" "$loops/self.tif" -o "$out/loops.csv"
expect 1 "loops/a.tif: a symbolic link that leads into a loop of links" \
    "$cfnet" eval "$m" "$loops/a.tif"
# ... and a link to nothing given by name is named with its target (it was "no such file or
# directory", of a name that ls shows), as INPUT and as DATA; through a chain of links, the name
# at its end that is missing
expect 1 "loops/z.tif: a symbolic link to .*not-mounted/z.tif, which does not exist$" \
    "$cfnet" predict "$m" "$loops/z.tif" -o "$out/loops.csv"
lacks "no such file" "an INPUT that is a link to nothing"
ln -s z.tif "$loops/zz.tif"
expect 1 "loops/zz.tif: a symbolic link to z.tif, which leads to .*not-mounted/z.tif, which does not exist$" \
    "$cfnet" predict "$m" "$loops/zz.tif" -o "$out/loops.csv"
rm "$loops/zz.tif"
ln -s "$out/not-mounted/lab" "$loops/zd"
expect 1 "loops/zd: a symbolic link to .*not-mounted/lab, which does not exist$" \
    "$cfnet" train "$loops/zd" -o "$out/dl.safetensors" --epochs 1
expect 1 "loops/zd: a symbolic link to .*not-mounted/lab, which does not exist$" \
    "$cfnet" eval "$m" "$loops/zd"
lacks "no such file" "a DATA that is a link to nothing"
rm "$loops/zd"
# given through a loop of links further up: that link named (it was said to be the name given,
# "a symbolic link that leads into a loop of links")
ln -s dlb "$loops/dla"
ln -s dla "$loops/dlb"
expect 1 "loops/dla/x.tif: cannot be reached: .*loops/dla is a symbolic link to a loop of links \(-> dlb\)$" \
    "$cfnet" predict "$m" "$loops/dla/x.tif" -o "$out/loops.csv"
expect 1 "loops/dla/sub: cannot be reached: .*loops/dla is a symbolic link to a loop of links \(-> dlb\)$" \
    "$cfnet" train "$loops/dla/sub" -o "$out/dl.safetensors" --epochs 1
lacks "Too many levels|x.tif: a symbolic link|sub: a symbolic link" "an INPUT or DATA through a loop of links"
rm "$loops/dla" "$loops/dlb"
# ... or through a link to nothing further up: that link named, with its target (it was "no
# such file or directory", of a name that ls shows)
ln -s "$out/not-mounted" "$loops/dz"
expect 1 "loops/dz/x.tif: cannot be reached: .*loops/dz is a symbolic link to a missing target \(-> .*not-mounted\)$" \
    "$cfnet" predict "$m" "$loops/dz/x.tif" -o "$out/loops.csv"
expect 1 "loops/dz/sub: cannot be reached: .*loops/dz is a symbolic link to a missing target \(-> .*not-mounted\)$" \
    "$cfnet" train "$loops/dz/sub" -o "$out/dl.safetensors" --epochs 1
expect 1 "loops/dz/sub: cannot be reached: .*loops/dz is a symbolic link to a missing target \(-> .*not-mounted\)$" \
    "$cfnet" eval "$m" "$loops/dz/sub"
lacks "no such file" "an INPUT or DATA through a link to nothing"
rm "$loops/dz"

# ---- 10. a class name in decomposed Unicode (a folder copied from a Mac) against the composed one --
nfc="$out/nfc"
nfd="$out/nfd"
mkdir -p "$nfc" "$nfd"
cp -r "$src/train/class00" "$nfc/caf$(printf '\303\251')"  # é: U+00E9
cp -r "$src/train/class01" "$nfc/tea"
cp -r "$src/train/class00" "$nfd/cafe$(printf '\314\201')" # e + U+0301
cp -r "$src/train/class01" "$nfd/tea"
# shellcheck disable=SC2086
expect 0 "on 8 images of 2 classes" "$cfnet" train "$nfc" -o "$out/nfc.safetensors" $train
# (caf[^']+ matches either form of "café")
expect 1 "label 'caf[^']+' was not seen in training \\(the classes are: caf[^,]+, tea\\); the label is in decomposed Unicode \\(NFD.*the class 'caf[^']+' is composed \\(NFC\\)" \
    "$cfnet" eval "$out/nfc.safetensors" "$nfd"
# shellcheck disable=SC2086
expect 0 "on 8 images of 2 classes" "$cfnet" train "$nfd" -o "$out/nfd.safetensors" $train
expect 1 "the class 'caf[^']+' is in decomposed Unicode \(NFD.*the label is composed \(NFC\)" \
    "$cfnet" eval "$out/nfd.safetensors" "$nfc"
# no hint when no class looks alike
expect 1 "label 'caf[^']+' was not seen in training" "$cfnet" eval "$m" "$nfd"
lacks "NFD" "a hint about Unicode forms where no class looks alike"

# ---- 11. a manifest lists a file whose name starts with '#' by quoting it -------------------------
hash_="$out/hash"
mkdir -p "$hash_"
cp "$src/train/class00/0000.tif" "$hash_/#12.tif"
cp "$src/train/class00/0001.tif" "$hash_/a.tif"
cp "$src/train/class01/0000.tif" "$hash_/b.tif"
cp "$src/train/class01/0001.tif" "$hash_/c.tif"
printf 'path,label\n"#12.tif",class00\n#12.tif,class00\na.tif,class00\nb.tif,class01\nc.tif,class01\n' \
    >"$hash_/m.csv"
expect 0 "images +4" "$cfnet" eval "$m" "$hash_/m.csv" # the unquoted line is a comment
expect 0 "predicted 4 images" "$cfnet" predict "$m" "$hash_/m.csv" -o "$out/hash.csv"
"$py" - "$out/hash.csv" <<'PY' || fail "predict's CSV lacks #12.tif"
import csv, sys
rows = list(csv.reader(open(sys.argv[1], newline="")))
assert rows[1][0].endswith("/#12.tif"), rows[1]
PY

# ---- 11b. info's class list: a name with a space (or a quote) is quoted, the others are not -----
sp="$out/spaces"
mkdir -p "$sp"
cp "$src/train/class00/0000.tif" "$sp/a.tif"
cp "$src/train/class01/0000.tif" "$sp/b.tif"
cp "$src/train/class02/0000.tif" "$sp/c.tif"
cp "$src/train/class03/0000.tif" "$sp/d.tif"
printf 'path,label\na.tif,a b\nb.tif,a\302\240b\nc.tif,plain\nd.tif,"say ""hi"" \\o/"\n' >"$sp/m.csv"
# shellcheck disable=SC2086
expect 0 "of 4 classes" "$cfnet" train "$sp/m.csv" -o "$out/spaces.safetensors" $train
expect 0 "" "$cfnet" info "$out/spaces.safetensors"
grep -qxF "$(printf 'classes        4: "a b" "a\302\240b" plain "say \\"hi\\" \\\\o/"')" "$out/last.txt" ||
    fail "info's classes line should quote the names with a space or a quote: $(grep '^classes' "$out/last.txt")"

# ---- 12. a label with a control character: confusion.svg stays well-formed XML -------------------
# XML 1.0 has no way to write U+0001 (not even &#1;), so the SVG shows U+FFFD for it; the JSON and
# CSV files keep the name as it is.
ctl="$out/ctl"
mkdir -p "$ctl"
cp "$src/train/class00/0000.tif" "$ctl/a.tif"
cp "$src/train/class00/0001.tif" "$ctl/b.tif"
cp "$src/train/class01/0000.tif" "$ctl/c.tif"
cp "$src/train/class01/0001.tif" "$ctl/d.tif"
printf 'path,label\na.tif,ring\001x\nb.tif,ring\001x\nc.tif,"do\tt"\nd.tif,"do\tt"\n' >"$ctl/m.csv"
# shellcheck disable=SC2086
expect 0 "of 2 classes" "$cfnet" train "$ctl/m.csv" -o "$out/ctl.safetensors" $train
expect 0 "" "$cfnet" eval "$out/ctl.safetensors" "$ctl/m.csv" --out "$out/ctl-report" -q
# the text report shows U+FFFD for them too: a tab written as it is shifted its row's columns
"$cfnet" eval "$out/ctl.safetensors" "$ctl/m.csv" >"$out/ctl.txt" 2>/dev/null ||
    fail "eval of the control-character manifest"
"$py" - "$out/ctl.txt" <<'PY' || fail "the text report with a tab in a class name"
import sys
text = open(sys.argv[1], encoding="utf-8").read()
assert "\t" not in text and "\x01" not in text, repr(text)
lines = text.splitlines()
head = [l for l in lines if l.startswith("class ")][0]
rows = lines[lines.index(head) + 1:lines.index(head) + 3]
assert sorted(r.split()[0] for r in rows) == ["do\ufffdt", "ring\ufffdx"], rows
assert all(len(r) == len(rows[0]) for r in rows), rows     # the columns line up
PY
"$cfnet" info "$out/ctl.safetensors" >"$out/ctl-info.txt" || fail "info of the control-character model"
grep -q "^classes        2: do$(printf '\357\277\275')t ring$(printf '\357\277\275')x\$" "$out/ctl-info.txt" ||
    fail "info's classes line should show U+FFFD for a tab and a control character"
"$py" - "$out/ctl-report" <<'PY' || fail "confusion.svg with a control character in a class name"
import json, sys, xml.etree.ElementTree as ET
d = sys.argv[1]
texts = [t.text for t in ET.parse(d + "/confusion.svg").getroot().iter("{http://www.w3.org/2000/svg}text")]
assert "ring\ufffdx" in texts, texts
assert "ring\x01x" in json.load(open(d + "/metrics.json"))["classes"]
PY

# ---- 12b. long class names: confusion.svg's axis labels fit its margins ---------------------------
# the margins are made for 32 characters; a longer label ran off the picture's edge from its start
# (the part that tells classes apart), so it is cut with "…"; the cells' tooltips keep the name
lng="$out/long"
mkdir -p "$lng"
cp "$src/train/class00/0000.tif" "$src/train/class00/0001.tif" "$lng/"
a="ring-$(printf 'é%.0s' $(seq 60))-A"
b="ring-$(printf 'é%.0s' $(seq 60))-B"
printf 'path,label\n0000.tif,%s\n0001.tif,%s\n' "$a" "$b" >"$lng/m.csv"
cp "$src/train/class01/0000.tif" "$lng/1000.tif"
cp "$src/train/class01/0001.tif" "$lng/1001.tif"
printf '1000.tif,%s\n1001.tif,%s\n' "$b" "$a" >>"$lng/m.csv"
# shellcheck disable=SC2086
expect 0 "of 2 classes" "$cfnet" train "$lng/m.csv" -o "$out/long.safetensors" $train
expect 0 "" "$cfnet" eval "$out/long.safetensors" "$lng/m.csv" --out "$out/long-report" -q
"$py" - "$out/long-report" "$a" <<'PY' || fail "confusion.svg's labels of long class names"
import sys, xml.etree.ElementTree as ET
ns = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1] + "/confusion.svg").getroot()
labels = [t.text for t in root.iter(ns + "text") if t.text and t.text.startswith("ring-")]
assert len(labels) == 4, labels                       # two rows, two columns
assert all(len(l) == 32 and l.endswith("\u2026") for l in labels), labels
assert labels[0] == sys.argv[2][:31] + "\u2026", labels[0]
titles = [t.text for t in root.iter(ns + "title")]
assert any(t.startswith(sys.argv[2] + " -> ") for t in titles), titles[:2]
PY

# ---- 13. a folder nested deeper than the system's path limit is said, not left out silently -------
# readdir lists it, but no call takes its path (ENAMETOOLONG): its images would be missing from
# the table without a word
deep="$out/deep"
mkdir -p "$deep"
cp "$img" "$deep/top.tif"
# (made one folder at a time from inside the last: a shell's cd takes no such path)
"$py" -c 'import os, sys
os.chdir(sys.argv[1])
for _ in range(22):
    os.mkdir("d" * 200)
    os.chdir("d" * 200)' "$deep"
# the deepest folder's path is over 4096 bytes from the test's folder
expect 1 "cannot read: File name too long \(the path is [0-9]+ bytes, the system takes at most [0-9]+" \
    "$cfnet" predict "$m" "$deep" -o "$out/deep.csv"
[ -e "$out/deep.csv" ] && fail "predict wrote a table without the images it could not reach"
# (removed at once: tools that walk the build folder by path, such as git worktree remove, stop at it)
rm -rf "$deep"

# ---- 14. names from the data in messages: control characters shown as U+FFFD -------------------
# A class folder or a file named with a tab, an escape sequence or a C1 control (U+009B, CSI: C2 9B
# in UTF-8) went to the terminal as it is in warnings and errors. A no-break space (U+00A0, C2 A0)
# and bytes that are not UTF-8 are not controls and stay as they are.
vis="$out/vis"
tab=$(printf '\t')
esc=$(printf '\033')
csi=$(printf '\302\233')
nbsp=$(printf '\302\240')
mkdir -p "$vis/Ri${tab}ng${esc}[2J${csi}1m" "$vis/ri${tab}ng${esc}[2j${csi}1M" "$vis/no${nbsp}break"
for c in "Ri${tab}ng${esc}[2J${csi}1m" "ri${tab}ng${esc}[2j${csi}1M" "no${nbsp}break"; do
    cp "$src/train/class00/0000.tif" "$src/train/class00/0001.tif" "$vis/$c/"
done
# shellcheck disable=SC2086
expect 0 "differ only in case" "$cfnet" train "$vis" -o "$out/vis.safetensors" $train
cp "$out/last.txt" "$out/vis-train.txt"
mkdir -p "$out/visp"
printf 'not an image' >"$out/visp/bad${esc}[2J${csi}${nbsp}$(printf '\377').tif"
expect 1 "not a TIFF or PNG file" "$cfnet" predict "$out/vis.safetensors" "$out/visp" -o "$out/visp.csv"
"$py" - "$out/vis-train.txt" "$out/last.txt" <<'PY' || fail "control characters of names in messages"
import sys
train, pred = (open(p, "rb").read() for p in sys.argv[1:3])
for t in (train, pred):
    assert b"\t" not in t and b"\x1b" not in t and b"\xc2\x9b" not in t, t
fffd = "\ufffd".encode()
assert b"'Ri" + fffd + b"ng" + fffd + b"[2J" + fffd + b"1m'" in train, train
# U+00A0 is no control, and a byte that is not UTF-8 is written as it is
assert b"bad" + fffd + b"[2J" + fffd + b"\xc2\xa0\xff.tif" in pred, pred
PY
# confusion.svg and the eval table show the C1 control as U+FFFD too; metrics.json keeps it
expect 0 "" "$cfnet" eval "$out/vis.safetensors" "$vis" --out "$out/vis-report"
"$py" - "$out/vis-report" "$out/last.txt" <<'PY' || fail "a C1 control in confusion.svg and the eval table"
import json, sys, xml.etree.ElementTree as ET
d = sys.argv[1]
texts = [t.text for t in ET.parse(d + "/confusion.svg").getroot().iter("{http://www.w3.org/2000/svg}text")]
assert "Ri\tng\ufffd[2J\ufffd1m" in texts, texts   # XML keeps a tab; ESC and U+009B: U+FFFD
assert "no\u00a0break" in texts, texts
assert "Ri\tng\x1b[2J\x9b1m" in json.load(open(d + "/metrics.json"))["classes"]
table = open(sys.argv[2], "rb").read()
assert b"\xc2\x9b" not in table and b"\x1b" not in table, table
PY

# arguments typed or pasted with a control character: echoed with U+FFFD in messages and in the
# lines of info and of eval's report that name the files (an unknown command, a bad value, a
# model named with a tab, an escape sequence and a C1 control)
odd="$out/vis${tab}${esc}[2J${csi}.safetensors"
cp "$out/vis.safetensors" "$odd"
"$cfnet" "fr${esc}[2J${csi}ob" >"$out/vis-args.txt" 2>&1 && fail "an unknown command succeeded"
"$cfnet" train "$vis" -o m --epochs "2${esc}[2J" >>"$out/vis-args.txt" 2>&1 && fail "--epochs 2ESC succeeded"
"$cfnet" info "$odd" >>"$out/vis-args.txt" 2>&1 || fail "info of a model named with control characters"
"$cfnet" eval "$odd" "$vis" >>"$out/vis-args.txt" 2>&1 || fail "eval of a model named with control characters"
"$py" - "$out/vis-args.txt" <<'PY' || fail "control characters of arguments in messages and reports"
import sys
t = open(sys.argv[1], "rb").read()
assert b"\t" not in t and b"\x1b" not in t and b"\xc2\x9b" not in t, t
fffd = "\ufffd".encode()
assert b"unknown command 'fr" + fffd + b"[2J" + fffd + b"ob'" in t, t
assert b"got '2" + fffd + b"[2J'" in t, t
assert t.count(b"vis" + fffd + fffd + b"[2J" + fffd + b".safetensors") == 2, t  # info, eval
PY

# ---- float TIFFs with NaN (masked background) and models whose outputs overflow ---------------
# A float32 TIFF from a processing pipeline with NaN pixels is a bad file naming the counts (no
# NaN reaches the network), left out by --skip-bad; predict and eval of a model whose outputs are
# not finite (dense weights edited to 3e38, finite so the loader takes them) fail with status 1
# and write no rows of NaN probabilities.
fl="$out/float"
"$py" - "$fl" <<'PY' || fail "writing float TIFFs"
import os, struct, sys
import numpy as np
def tiff(path, a):
    a = np.ascontiguousarray(a, dtype="<f4")
    h, w = a.shape
    tags = [(256, 4, w), (257, 4, h), (258, 3, 32), (259, 3, 1), (262, 3, 1), (273, 4, 0),
            (277, 3, 1), (278, 4, h), (279, 4, a.nbytes), (339, 3, 3)]
    data_at = 8 + 2 + 12 * len(tags) + 4
    ifd = struct.pack("<H", len(tags))
    for tag, typ, val in tags:
        val = data_at if tag == 273 else val
        ifd += struct.pack("<HHI", tag, typ, 1) + (struct.pack("<HH", val, 0) if typ == 3 else struct.pack("<I", val))
    with open(path, "wb") as f:
        f.write(b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + a.tobytes())
rng = np.random.default_rng(1)
for c in ("a", "b"):
    os.makedirs(os.path.join(sys.argv[1], c), exist_ok=True)
    for i in range(4):
        tiff(os.path.join(sys.argv[1], c, "%d.tif" % i), rng.random((32, 32)) + (c == "b"))
m = rng.random((32, 32)) + 5
m[:10, :] = np.nan  # masked background
tiff(os.path.join(sys.argv[1], "a", "masked.tif"), m)
PY
# shellcheck disable=SC2086
expect 1 "masked.tif: non-finite values: 320 NaN and 0 infinite of 1024 \(the first in channel 1 at row 0, column 0\)" \
    "$cfnet" train "$fl" -o "$out/float.safetensors" $train
# shellcheck disable=SC2086
expect 0 "masked.tif: non-finite values: 320 NaN .*\(skipped\)" \
    "$cfnet" train "$fl" -o "$out/float.safetensors" $train --skip-bad
expect 1 "masked.tif: non-finite values: 320 NaN" \
    "$cfnet" predict "$out/float.safetensors" "$fl" -o "$out/float.csv"
expect 0 "predicted 8 images" \
    "$cfnet" predict "$out/float.safetensors" "$fl" -o "$out/float.csv" --skip-bad
grep -qi "nan" "$out/float.csv" && fail "predict wrote NaN: $(cat "$out/float.csv")"
"$py" - "$out/float.safetensors" "$out/float-inf.safetensors" <<'PY' || fail "editing the weights"
import json, struct, sys
import numpy as np
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
data = bytearray(b[8 + n:])
key = [k for k in h if k.endswith(".dense.weight")][-1]
s, e = h[key]["data_offsets"]
data[s:e] = np.full((e - s) // 4, 3e38, dtype="<f4").tobytes()
open(sys.argv[2], "wb").write(b[:8 + n] + bytes(data))
PY
rm -f "$out/float-inf.csv"
expect 1 "network_probabilities: the output for image 0 is not finite" \
    "$cfnet" predict "$out/float-inf.safetensors" "$fl" -o "$out/float-inf.csv" --skip-bad
test -e "$out/float-inf.csv" && fail "predict left a CSV of a model with non-finite outputs"
expect 1 "the output for image 0 is not finite" \
    "$cfnet" eval "$out/float-inf.safetensors" "$fl" --skip-bad

if [ $fails -ne 0 ]; then
    echo "test_cli_data: $fails failures"
    exit 1
fi
echo "test_cli_data: all checks passed"
