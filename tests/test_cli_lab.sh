#!/bin/sh
# The `cfnet` command on a lab's messy shared folder: macOS AppleDouble files (._NAME), .DS_Store,
# Thumbs.db, editor backups, mixed-case extensions, names with spaces, accents and leading dashes,
# class folders that are links whose target is gone or that loop, a manifest that lists
# AppleDouble files (made with `find`), a bad image without --skip-bad, an earlier run's table of
# predictions among predict's inputs, plate/well/site folders inside a class folder, and a link
# to a folder on a share that is not mounted among predict's inputs, a Synology share's
# @eaDir folders, a JPEG or a vendor's file (Zeiss CZI) named .tif, and a link to an image that
# is gone.
set -eu
name=cli-lab
# shellcheck source=tests/cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"
train="--epochs 1 --size 32 --width 4 --threads 2 --seed 3 --batch 8 --val 0"

src="$out/src"
expect 0 "wrote 12 images" "$cfnet" synth "$src" --classes 3 --per-class 4 --test-per-class 0 --size 32
# an AppleDouble file: magic 00 05 16 07, version 2, then filler up to 4 KiB
appledouble() {
    { printf '\000\005\026\007\000\002\000\000'; head -c 4088 /dev/zero; } >"$1"
}

# ---- 1. the messy folder: junk is skipped or ignored, every image counts once ------------------
lab="$out/lab"
cp -r "$src/train" "$lab"
for f in "$lab"/class0*/*.tif; do appledouble "$(dirname "$f")/._$(basename "$f")"; done
: >"$lab/.DS_Store"
: >"$lab/class00/.DS_Store"
: >"$lab/class01/Thumbs.db"
: >"$lab/class02/desktop.ini"
: >"$lab/class00/.~lock.notes.odt#"
cp "$lab/class00/0000.tif" "$lab/class00/0000.tif~"
mv "$lab/class00/0001.tif" "$lab/class00/0001.TIF"
mv "$lab/class00/0002.tif" "$lab/class00/0002.Tiff"
mv "$lab/class01/0001.tif" "$lab/class01/cell 01 µm é.tif"
mv "$lab/class01/0002.tif" "$lab/class01/-ctrl.tif"
m="$out/m.safetensors"
# shellcheck disable=SC2086
expect 0 "on 12 images of 3 classes" "$cfnet" train "$lab" -o "$m" $train
lacks "\._|skipped|warning" "train on the messy folder"
expect 0 "predicted 12 images" "$cfnet" predict "$m" "$lab" -o "$out/lab.csv"
grep -q "\._" "$out/lab.csv" && fail "predict listed an AppleDouble file"
grep -q "cell 01 µm é.tif" "$out/lab.csv" || fail "predict left out the name with spaces"

# ---- 2. a class folder that is a link that cannot be followed: an error, not a missing class ---
ln -s /nonexistent/share/class03 "$lab/class03"
# shellcheck disable=SC2086
expect 1 "lab/class03: a symbolic link in the dataset folder that cannot be followed \(-> /nonexistent/share/class03: No such file" \
    "$cfnet" train "$lab" -o "$out/x.safetensors" $train
expect 1 "lab/class03: a symbolic link .* cannot be followed" "$cfnet" eval "$m" "$lab"
rm "$lab/class03"
ln -s loopB "$lab/loopA"
ln -s loopA "$lab/loopB"
# shellcheck disable=SC2086
expect 1 "lab/loopA: a symbolic link .* cannot be followed \(-> loopB: a loop of links\)" \
    "$cfnet" train "$lab" -o "$out/x.safetensors" $train
rm "$lab/loopA" "$lab/loopB"
# a link to a class folder elsewhere is followed as before
ln -s ../src/train/class01 "$lab/elsewhere"
# shellcheck disable=SC2086
expect 0 "on 16 images of 4 classes" "$cfnet" train "$lab" -o "$out/x.safetensors" $train
rm "$lab/elsewhere"

# ---- 3. a manifest made with find lists the AppleDouble files: the message says what they are --
(cd "$lab" && find . -name '*.tif' | sort | sed 's|^\./||; s|\(.*\)/\(.*\)|"\1/\2",\1|') >"$lab/all.csv"
grep -q "\._0000.tif" "$lab/all.csv" || fail "find did not list the AppleDouble files"
# shellcheck disable=SC2086
expect 1 "all.csv:[0-9]+: .*/\._0000.tif: not a TIFF or PNG file \(a macOS AppleDouble file.* leave them out of the manifest\); give --skip-bad" \
    "$cfnet" train "$lab/all.csv" -o "$out/x.safetensors" $train
expect 1 "\._0003.tif: not a TIFF or PNG file \(a macOS AppleDouble file" \
    "$cfnet" predict "$m" "$lab/class02/._0003.tif"

# ---- 4. a bad image without --skip-bad: the message says that --skip-bad leaves it out --------
bad="$out/bad"
cp -r "$src/train" "$bad"
head -c 300 "$bad/class01/0000.tif" >"$bad/class01/0003.tif"
# shellcheck disable=SC2086
expect 1 "bad/class01/0003.tif: .*; give --skip-bad to leave out the images that cannot be used" \
    "$cfnet" train "$bad" -o "$out/x.safetensors" $train
# shellcheck disable=SC2086
expect 0 "skipped 1 unreadable" "$cfnet" train "$bad" -o "$out/x.safetensors" $train --skip-bad
lacks "give --skip-bad" "the hint with --skip-bad given"
expect 1 "0003.tif: .*; give --skip-bad" "$cfnet" predict "$m" "$bad" -o "$out/bad.csv"
expect 1 "0003.tif: .*; give --skip-bad" "$cfnet" eval "$m" "$bad"

# ---- 5. predict on an earlier run's folder, named with a shell pattern -------------------------
run="$out/run1"
mkdir -p "$run"
cp "$src/train/class00/"*.tif "$run/"
expect 0 "predicted 4 images" "$cfnet" predict "$m" "$run" -o "$run/predictions.csv"
expect 0 "" "$cfnet" eval "$m" "$src/train" --out "$run/report" -q
# the folder again: the table, the report and the model are not images (said, not read)
cp "$m" "$run/model.safetensors"
expect 0 "predicted 4 images" "$cfnet" predict "$m" "$run" -o "$run/predictions.csv"
set -- "$run"/*.csv
expect 1 "run1/predictions.csv: a table of predictions written by 'cfnet predict' \(columns path,predicted and one per class\), not a manifest" \
    "$cfnet" predict "$m" "$run"/*.tif "$@" -o "$out/p2.csv"
expect 1 "report/predictions.csv: a table of predictions written by 'cfnet eval' \(columns path,label,predicted" \
    "$cfnet" train "$run/report/predictions.csv" -o "$out/x.safetensors"

# ---- 6. plate/well/site folders inside a class folder: the messages name one and say what to do -
plate="$out/plate"
mkdir -p "$plate/a/plate1/A01" "$plate/b"
cp "$src/train/class00/"*.tif "$plate/a/plate1/A01/"
cp "$src/train/class01/"*.tif "$plate/b/"
: >"$plate/b/Thumbs.db"
# shellcheck disable=SC2086
expect 1 "plate/a: class folder 'a' holds folders, not images: .*; the folders inside a class folder \(such as plate, well or site folders\) are not searched: move their images up into the class folder, or list them in a CSV manifest" \
    "$cfnet" train "$plate" -o "$out/x.safetensors" $train
cp "$src/train/class02/0000.tif" "$plate/a/"
# shellcheck disable=SC2086
expect 0 "ignored 1 folder inside class folders: .*the first: .*plate/a/plate1; move their images up, or list them in a CSV manifest" \
    "$cfnet" train "$plate" -o "$out/x.safetensors" $train
grep -Eq "ignored 1 entry that is not a .tif/.tiff/.png file \(the first: .*plate/b/Thumbs.db\)" "$out/last.txt" ||
    fail "train did not name the file it ignored: $(cat "$out/last.txt")"

# ---- 7. predict: a link to a plate folder on a share that is not mounted is said, not counted
# among the files that are not images --------------------------------------------------------------
pl="$out/plates"
mkdir -p "$pl/plate1"
cp "$src/train/class00/"*.tif "$pl/plate1/"
ln -s /nonexistent/share/plate2 "$pl/plate2"
expect 0 "warning: skipped 1 symbolic link that cannot be followed \(the first: .*plates/plate2 -> /nonexistent/share/plate2: No such file or directory\); a folder of images" \
    "$cfnet" predict "$m" "$pl" -o "$out/plates.csv"
lacks "ignored 1 file" "predict counted the link among the files that are not images"
# a folder holding only such a link: the error says what the folder holds, not just "no images"
mkdir -p "$out/plates-only"
ln -s /nonexistent/share/plate3 "$out/plates-only/plate3"
expect 1 "plates-only: no .tif/.tiff/.png images in this folder, only 1 symbolic link that cannot be followed \(a folder of images on a share that is not mounted\? The first: .*plates-only/plate3 -> /nonexistent/share/plate3: No such file" \
    "$cfnet" predict "$m" "$out/plates-only" -o "$out/plates-only.csv"
# ... and with JPEGs beside the link: not "only" the link; the JPEGs are counted and named too
printf '\377\330\377\340' >"$out/plates-only/cell.jpg"
expect 1 "plates-only: no .tif/.tiff/.png images in this folder, only 1 symbolic link that cannot be followed \(.*plates-only/plate3 -> /nonexistent/share/plate3: No such file or directory\) and 1 other file \(the first: .*plates-only/cell.jpg\); convert images of other formats to TIFF or PNG" \
    "$cfnet" predict "$m" "$out/plates-only" -o "$out/plates-only.csv"
# ... and with only a file that is not an image beside the link: not told to convert it
rm "$out/plates-only/cell.jpg"
printf 'x' >"$out/plates-only/README.txt"
expect 1 "plates-only: no .tif/.tiff/.png images in this folder, only 1 symbolic link that cannot be followed \(.*plates-only/plate3 -> /nonexistent/share/plate3: No such file or directory\) and 1 other file \(the first: .*plates-only/README.txt\), not an image$" \
    "$cfnet" predict "$m" "$out/plates-only" -o "$out/plates-only.csv"

# ---- 8. a Synology share's @eaDir folders (thumbnails, metadata) are neither a class nor searched
syn="$out/syn"
cp -r "$src/train" "$syn"
mkdir -p "$syn/@eaDir/class00@SynoEAStream" "$syn/class00/@eaDir/0000.tif" "$syn/class01/@eaDir"
cp "$src/train/class00/0000.tif" "$syn/class00/@eaDir/0000.tif/SYNOPHOTO_THUMB_M.tif"
: >"$syn/class01/@eaDir/0000.tif@SynoEAStream"
# shellcheck disable=SC2086
expect 0 "on 12 images of 3 classes" "$cfnet" train "$syn" -o "$out/x.safetensors" $train
lacks "eaDir|ignored" "train took @eaDir as a class or counted it"
expect 0 "predicted 12 images" "$cfnet" predict "$m" "$syn" -o "$out/syn.csv"
lacks "eaDir|ignored" "predict searched @eaDir"

# ---- 9. a JPEG or a microscope vendor's file under a .tif name, or a .jpg given to predict: the
# message says what the file is, and --skip-bad leaves it out ----------------------------------------
vf="$out/vendor"
cp -r "$src/train" "$vf"
printf '\377\330\377\340\000\020JFIF\000' >"$vf/class01/0003.tif"
{ printf 'ZISRAWFILE'; head -c 200 /dev/zero; } >"$vf/class02/0003.tif"
# shellcheck disable=SC2086
expect 1 "class01/0003.tif: not a TIFF or PNG file \(it is a JPEG image; convert it to TIFF or PNG" \
    "$cfnet" train "$vf" -o "$out/x.safetensors" $train
# shellcheck disable=SC2086
expect 0 "skipped 2 unreadable" "$cfnet" train "$vf" -o "$out/x.safetensors" $train --skip-bad
grep -q "class02/0003.tif: not a TIFF or PNG file (it is a Zeiss CZI file; .*(skipped)" "$out/last.txt" ||
    fail "the CZI file was not named as such: $(cat "$out/last.txt")"
cp "$vf/class01/0003.tif" "$out/photo.jpg"
expect 1 "photo.jpg: not a TIFF or PNG file \(it is a JPEG image; [^)]*\); give --skip-bad" \
    "$cfnet" predict "$m" "$out/photo.jpg"
lacks "manifest's name" "predict took a JPEG for a list of images"

# ---- 10. an image in a class folder that is a link whose target is gone (a relative link copied
# without its target): the message says it is a link and where it points --------------------------
dl="$out/dangling"
cp -r "$src/train" "$dl"
ln -s ../../elsewhere/0009.tif "$dl/class01/0009.tif"
# shellcheck disable=SC2086
expect 1 "class01/0009.tif: cannot open: a symbolic link whose target does not exist \(-> \.\./\.\./elsewhere/0009.tif\); give --skip-bad" \
    "$cfnet" train "$dl" -o "$out/x.safetensors" $train
# shellcheck disable=SC2086
expect 0 "skipped 1 unreadable" "$cfnet" train "$dl" -o "$out/x.safetensors" $train --skip-bad

# ---- 11. images saved channels last: tifffile.imwrite of an H x W x C array (C not 3 or 4) writes
# a page per row, H pages of W x C, which read as H channels of a C-pixel-wide image; the size
# messages would say to give --size and --pad (and train on such stripes). Said as what it is;
# the same arrays saved channels first train. --------------------------------------------------
if "$py" -c 'import tifffile' 2>/dev/null; then
    "$py" - "$out/last" "$out/first" <<'EOF'
import os, sys, numpy as np, tifffile
rng = np.random.default_rng(0)
for k, cls in enumerate(["ctrl", "drug"]):
    for i in range(4):
        x = (rng.random((40, 48, 2)) * 4000).astype(np.uint16)  # H x W x C
        for top, a in ((sys.argv[1], x), (sys.argv[2], np.moveaxis(x, -1, 0))):
            os.makedirs(os.path.join(top, cls), exist_ok=True)
            tifffile.imwrite(os.path.join(top, cls, "cell%d.tif" % i), a)
EOF
    # shellcheck disable=SC2086
    expect 1 "ctrl/cell0.tif: 40 pages of 2x48 pixels: this looks like an array of height x width x channels \(channels last, here 2\) .*np.moveaxis\(x, -1, 0\)" \
        "$cfnet" train "$out/last" -o "$out/x.safetensors" $train
    lacks "give --size|--pad" "train on channels-last TIFFs"
    expect 1 "cell0.tif: 40 pages of 2x48 pixels: this looks like .*channels last" \
        "$cfnet" predict "$m" "$out/last/ctrl/cell0.tif"
    lacks "the model expects" "predict of a channels-last TIFF"
    # crop reads its fields row by row: the same, not "f.tif is 2x48 but its mask is 48x40"
    "$py" - "$out/lastmask.tif" <<'EOF'
import sys, numpy as np, tifffile
m = np.zeros((40, 48), np.uint16)
m[10:20, 10:20] = 1
tifffile.imwrite(sys.argv[1], m)
EOF
    expect 1 "cell0.tif: 40 pages of 2x48 pixels: this looks like .*channels last" \
        "$cfnet" crop "$out/last/ctrl/cell0.tif" "$out/lastmask.tif" -o "$out/lastcrops" --size 16
    lacks "its mask" "crop of a channels-last TIFF"
    # a field of more rows than the 1024 channels an image may have: the same, not "too many
    # channels"
    "$py" - "$out/lasttall.tif" <<'EOF'
import sys, numpy as np, tifffile
tifffile.imwrite(sys.argv[1], np.ones((1100, 64, 2), np.uint16))
EOF
    expect 1 "lasttall.tif: 1024 or more pages of 2x64 pixels: this looks like .*channels last.* which reads as 1024 or more channels" \
        "$cfnet" predict "$m" "$out/lasttall.tif"
    lacks "too many channels" "predict of a tall channels-last TIFF"
    # shellcheck disable=SC2086
    expect 0 "on 8 images of 2 classes" "$cfnet" train "$out/first" -o "$out/x.safetensors" $train --size 32
else
    skip_missing test_cli_lab "the channels-last TIFF check" python3-tifffile
fi

if [ $fails -ne 0 ]; then
    echo "test_cli_lab: $fails failures"
    exit 1
fi
echo "test_cli_lab: all checks passed"
