#!/bin/sh
# `cfnet crop FIELD MASK... -o DIR`: every crop compared value for value with one computed
# independently in numpy (centroid, window, zero padding, --isolate, sample type kept), the
# cells.csv table, sparse uint32 labels (4000000000), signed, PNG and refused masks (negative,
# float, two channels, another size, no cells), DIR written whole or not at all, and crop ->
# predict giving the probabilities of the images the fields were built from, crop -> train.
set -eu
name=cli-crop
# shellcheck source=tests/cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"
"$py" -c 'import numpy' 2>/dev/null || { skip_missing test_cli_crop "every check" python3-numpy; exit 0; }
"$py" -c 'import tifffile' 2>/dev/null || { skip_missing test_cli_crop "every check" python3-tifffile; exit 0; }

# ---- help and usage ------------------------------------------------------------------------------
expect 0 "Usage: cfnet crop FIELD MASK" "$cfnet" crop --help
expect 2 "missing FIELD MASK" "$cfnet" crop -o "$out/x"
expect 2 "the mask of 'f.tif' is missing" "$cfnet" crop f.tif -o "$out/x"
expect 2 "missing -o DIR" "$cfnet" crop f.tif m.tif
expect 2 "--size: expected 4..4096, got '2'" "$cfnet" crop f.tif m.tif -o "$out/x" --size 2
expect 2 "--min-area: expected a positive integer" "$cfnet" crop f.tif m.tif -o "$out/x" --min-area 0
# -o DIR whose parent cannot be made (a file on the way): a usage error said as the others are
# (it was "cfnet: error: cannot create directory ..."), naming --output as crop's other
# refusals of it do (it was "cfnet crop: cannot create directory ...", the option unnamed)
: >"$out/afile"
# (the file on the way named, as for an input: it was "cannot create directory ...: Not a
# directory", the file in the way unnamed)
expect 2 "^cfnet crop: --output: cannot create directory .*/afile/x: .*/afile is a file, not a folder$" "$cfnet" crop f.tif m.tif -o "$out/afile/x/y"
usage_said crop "crop -o under a file"
expect 1 "^cfnet: error: cannot create directory .*/afile/x: .*/afile is a file, not a folder$" "$cfnet" synth "$out/afile/x/y"
# the parent itself a file (a missing folder's place taken), and a parent that cannot be made
# for want of permission: the same
expect 2 "^cfnet crop: --output: .*/afile exists and is not a directory$" "$cfnet" crop f.tif m.tif -o "$out/afile/sub"
usage_said crop "crop -o in a file"
# the parent a symbolic link to nothing: said as such, naming its target (it was "exists and is
# not a directory"), and nothing made at the target
ln -s "$out/gone" "$out/dangle"
expect 2 "^cfnet crop: --output: cannot create directory .*/dangle: .*/dangle is a symbolic link to a missing target \(-> .*/gone\)$" \
    "$cfnet" crop f.tif m.tif -o "$out/dangle/sub"
usage_said crop "crop -o in a link to nothing"
expect 2 "^cfnet crop: --output: cannot create directory .*/dangle/a: .*/dangle is a symbolic link to a missing target \(-> .*/gone\)$" \
    "$cfnet" crop f.tif m.tif -o "$out/dangle/a/b"
test -e "$out/gone" && fail "crop made the missing target of a link on the way to DIR"
rm "$out/dangle"
mkdir -p "$out/ro" && chmod 555 "$out/ro"
asother=env
if [ "$(id -u)" = 0 ]; then
    asother=""
    command -v setpriv >/dev/null 2>&1 &&
        setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$cfnet" 2>/dev/null &&
        setpriv --reuid=65534 --regid=65534 --clear-groups test -d "$out/ro" 2>/dev/null &&
        asother="setpriv --reuid=65534 --regid=65534 --clear-groups"
fi
if [ -n "$asother" ]; then
    # shellcheck disable=SC2086
    expect 2 "^cfnet crop: --output: cannot create directory .*/ro/new: Permission denied$" \
        $asother "$cfnet" crop f.tif m.tif -o "$out/ro/new/x"
    usage_said crop "crop -o under a folder without write permission"
    # shellcheck disable=SC2086
    expect 2 "^cfnet crop: --output: cannot make .*/ro/\.x\.crop-tmp\..* beside .*/ro/x: Permission denied$" \
        $asother "$cfnet" crop f.tif m.tif -o "$out/ro/x"
    usage_said crop "crop -o in a folder without write permission"
    test -z "$(ls -A "$out/ro")" || fail "crop -o in a folder without write permission left: $(ls -A "$out/ro")"
else
    skip_env test_cli_crop "crop -o where it may not write" "root without setpriv, or the user nobody cannot reach the build"
fi
chmod 755 "$out/ro"
expect 2 "have the same name 'f'" "$cfnet" crop a/f.tif m.tif b/f.png m2.tif -o "$out/x"
expect 2 "fields 'a/b.tif' and 'd/b.png' have the same name 'b'" \
    "$cfnet" crop x/c.tif m a/b.tif m c/a.tif m d/b.png m e/a.png m -o "$out/x"
mkdir -p "$out/full" && : >"$out/full/keep"
expect 2 "the folder is not empty" "$cfnet" crop f.tif m.tif -o "$out/full"
: >"$out/afile"
expect 2 "exists and is not a folder" "$cfnet" crop f.tif m.tif -o "$out/afile"

# ---- fields and masks ------------------------------------------------------------------------------
"$py" - "$out" <<'PY'
import sys, numpy as np, tifffile
o = sys.argv[1]
rng = np.random.default_rng(5)
H, W = 100, 120
f16 = rng.integers(0, 65536, (2, H, W), dtype=np.uint16)
m = np.zeros((H, W), np.uint32)
m[40:51, 50:61] = 4000000000      # a square: centroid (55, 45)
m[0:5, 0:5] = 7                   # in the corner: its window leaves the field
m[70:80, 20:26] = 3               # centroid (22.5, 74.5): a tie in both directions
m[70:80, 26:30] = 2000            # touches cell 3, inside its window
m[10, 100] = 12                   # one pixel
tifffile.imwrite(o + "/f16.tif", f16)
tifffile.imwrite(o + "/m32.tif", m)
tifffile.imwrite(o + "/f8.tif", rng.integers(0, 256, (H, W), dtype=np.uint8))
tifffile.imwrite(o + "/ffl.tif", rng.standard_normal((3, H, W)).astype(np.float32))
small = np.where(m > 0, m % 60000 + 1, 0)
tifffile.imwrite(o + "/mi32.tif", small.astype(np.int32))
tifffile.imwrite(o + "/mneg.tif", np.where(m == 3, -5, small).astype(np.int32))
tifffile.imwrite(o + "/mfloat.tif", small.astype(np.float32))
tifffile.imwrite(o + "/m2ch.tif", np.stack([small, small]).astype(np.uint16))
tifffile.imwrite(o + "/mzero.tif", np.zeros((H, W), np.uint16))
tifffile.imwrite(o + "/mother.tif", np.ones((H, W + 1), np.uint16))
np.save(o + "/m.npy", m)
PY

# check DIR FIELD MASK S PAD ISOLATE MINAREA: every crop and row of DIR against numpy
check() {
    "$py" - "$@" <<'PY' || fail "crops of $2 in $1 differ from numpy's (S=$4 pad=$5 isolate=$6)"
import csv, os, sys, numpy as np, tifffile
d, field, mask, S, pad, iso, mina = sys.argv[1:8]
S, pad, iso, mina = int(S), int(pad), int(iso), int(mina)
f = tifffile.imread(field)
f = f[None] if f.ndim == 2 else f
# the masks are all made from m.npy: as it is (uint32) or with small labels (m % 60000 + 1)
m = np.load(os.path.join(os.path.dirname(field), "m.npy")).astype(np.int64)
if not mask.endswith("m32.tif"):
    m = np.where(m > 0, m % 60000 + 1, 0)
C, H, W = f.shape
stem = os.path.splitext(os.path.basename(field))[0]
want = {}
kept = []
for lab in np.unique(m[m > 0]):
    ys, xs = np.nonzero(m == lab)
    if len(ys) < mina:
        continue
    cy, cx = ys.mean(), xs.mean()
    top, left = int(np.floor(cy - (S - 1) / 2 + 0.5)), int(np.floor(cx - (S - 1) / 2 + 0.5))
    out = top < 0 or left < 0 or top + S > H or left + S > W
    if out and not pad:
        continue
    crop = np.zeros((C, S, S), f.dtype)
    for y in range(S):
        for x in range(S):
            fy, fx = top + y, left + x
            if 0 <= fy < H and 0 <= fx < W and (not iso or m[fy, fx] == lab):
                crop[:, y, x] = f[:, fy, fx]
    kept.append((lab, (crop, lab, cx, cy, len(ys), left, top, int(out))))
# the label in the name zero-padded to the digits of the field's largest written label
digits = len(str(max(lab for lab, _ in kept))) if kept else 1
want = {"%s_%0*d.tif" % (stem, digits, lab): v for lab, v in kept}
rows = list(csv.reader(open(os.path.join(d, "cells.csv"))))
assert rows[0] == "path,field,mask,label,x,y,area,left,top,padded".split(","), rows[0]
rows = rows[1:]
assert sorted(r[0] for r in rows) == sorted(want), (sorted(r[0] for r in rows), sorted(want))
assert sorted(os.listdir(d)) == sorted(list(want) + ["cells.csv"]), os.listdir(d)
for r in rows:
    crop, lab, cx, cy, area, left, top, out = want[r[0]]
    assert r[1] == field and r[2] == mask, r
    assert (int(r[3]), int(r[6]), int(r[7]), int(r[8]), int(r[9])) == (lab, area, left, top, out), r
    assert abs(float(r[4]) - cx) < 6e-4 and abs(float(r[5]) - cy) < 6e-4, r
    got = tifffile.imread(os.path.join(d, r[0]))
    got = got[None] if got.ndim == 2 else got
    assert got.dtype == f.dtype, (r[0], got.dtype, f.dtype)
    assert got.shape == crop.shape and np.array_equal(got, crop), r[0]
PY
}

o1="$out/c1"
expect 0 "wrote 4 crops \(16x16\) of 1 field to .*; 1 cell too near the border left out \(--pad keeps them\)" \
    "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$o1" --size 16
check "$o1" "$out/f16.tif" "$out/m32.tif" 16 0 0 1
test -f "$o1/f16_4000000000.tif" || fail "no crop named by the uint32 label 4000000000"
grep -q '^f16_0000000003.tif,.*,3,22.500,74.500,60,15,67,0$' "$o1/cells.csv" || fail "cell 3's row: $(grep f16_0 "$o1/cells.csv")"
# labels zero-padded per field to the digits of its largest written label: the names sort by
# label (f_02 before f_10); a field whose largest written label has one digit is not padded,
# and a larger label that is left out (at the border, --min-area) does not count
"$py" - "$out" <<'PY'
import sys, numpy as np, tifffile
o = sys.argv[1]
m = np.zeros((60, 60), np.uint16)
for i, lab in enumerate((2, 10, 9)):
    m[20:24, 5 + 10 * i:9 + 10 * i] = lab
m[0:3, 0:3] = 100                 # in the corner: left out without --pad
m[50, 50] = 1000                  # one pixel: left out by --min-area 2
tifffile.imwrite(o + "/fpad.tif", np.arange(3600, dtype=np.uint16).reshape(60, 60))
tifffile.imwrite(o + "/mpad.tif", m)
m2 = np.zeros((60, 60), np.uint16); m2[20:24, 20:24] = 7; m2[40:44, 40:44] = 3
tifffile.imwrite(o + "/fone.tif", np.ones((60, 60), np.uint8))
tifffile.imwrite(o + "/mone.tif", m2)
PY
expect 0 "wrote 5 crops" "$cfnet" crop "$out/fpad.tif" "$out/mpad.tif" "$out/fone.tif" "$out/mone.tif" \
    -o "$out/cpadded" --size 8 --min-area 2
test "$(cd "$out/cpadded" && LC_ALL=C ls | tr '\n' ' ')" = "cells.csv fone_3.tif fone_7.tif fpad_02.tif fpad_09.tif fpad_10.tif " ||
    fail "names not zero-padded per field: $(ls "$out/cpadded" | tr '\n' ' ')"
grep -q '^fpad_02.tif,.*,2,' "$out/cpadded/cells.csv" || fail "cells.csv does not join: $(cat "$out/cpadded/cells.csv")"
o2="$out/c2"
expect 0 "wrote 5 crops \(15x15\) of 1 field .*; 1 cell too near the border zero-padded" \
    "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$o2" --size 15 --pad --isolate
check "$o2" "$out/f16.tif" "$out/m32.tif" 15 1 1 1
"$py" -c "
import tifffile, numpy as np, sys
a = tifffile.imread('$o2/f16_0000000003.tif')
assert (a[:, :, 11:] == 0).all() and (a[:, :, :11] != 0).any(), 'isolate kept cell 2000 in the crop of 3'
" || fail "--isolate"
# cells in pieces apart, the centroid between them: with --isolate their crops hold none of their
# pixels, one warning for the field with their count; a cell in pieces within its window does not count
"$py" - "$out" <<'PY'
import sys, numpy as np, tifffile
o = sys.argv[1]
m = np.zeros((100, 120), np.uint16)
m[10:13, 10:13] = m[10:13, 100:103] = 5
m[60:63, 10:13] = m[60:63, 100:103] = 6
m[40:50, 50:60] = 9
m[80:83, 50:53] = m[80:83, 58:61] = 8
tifffile.imwrite(o + "/mpieces.tif", m)
PY
expect 0 "f16.tif: 2 cells \\(label [56] first\\) with none of their pixels in their crop .*all zeros" \
    "$cfnet" crop "$out/f16.tif" "$out/mpieces.tif" -o "$out/cpieces" --size 15 --isolate
grep -c "none of" "$out/last.txt" | grep -qx 1 || fail "not one warning for the field: $(cat "$out/last.txt")"
expect 0 "wrote 4 crops" "$cfnet" crop "$out/f16.tif" "$out/mpieces.tif" -o "$out/cpieces2" --size 15
lacks "none of" "a warning about empty crops without --isolate"
# other sample types (8-bit, float), several pairs, --min-area, signed and PNG masks
o3="$out/c3"
expect 0 "wrote 6 crops \(9x9\) of 2 fields" \
    "$cfnet" crop "$out/f8.tif" "$out/mi32.tif" "$out/ffl.tif" "$out/m32.tif" -o "$o3" --size 9 --min-area 2
grep -q "2 cells smaller than --min-area 2 left out" "$out/last.txt" || fail "--min-area count missing"
mkdir -p "$out/c3a" "$out/c3b"
for f in "$o3"/f8_*; do cp "$f" "$out/c3a/"; done
grep -E '^(path|f8_)' "$o3/cells.csv" >"$out/c3a/cells.csv"
for f in "$o3"/ffl_*; do cp "$f" "$out/c3b/"; done
grep -E '^(path|ffl_)' "$o3/cells.csv" >"$out/c3b/cells.csv"
check "$out/c3a" "$out/f8.tif" "$out/mi32.tif" 9 0 0 2
check "$out/c3b" "$out/ffl.tif" "$out/m32.tif" 9 0 0 2
"$py" - "$out" <<'PY'
import sys, zlib, struct, numpy as np
o = sys.argv[1]
m = np.load(o + "/m.npy")
a = np.where(m > 0, m % 60000 + 1, 0).astype(">u2")
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
raw = b"".join(b"\0" + r.tobytes() for r in a)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", a.shape[1], a.shape[0], 16, 0, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(o + "/m16.png", "wb").write(png)
PY
expect 0 "wrote 4 crops" "$cfnet" crop "$out/f8.tif" "$out/m16.png" -o "$out/c4" --size 16
check "$out/c4" "$out/f8.tif" "$out/m16.png" 16 0 0 1
# palette (colour map, LUT) masks as Fiji/ImageJ writes them: the stored indices are the labels,
# the colours only display (8- and 16-bit TIFF, 8- and 4-bit PNG)
"$py" - "$out" <<'PY'
import sys, numpy as np, tifffile
from PIL import Image
o = sys.argv[1]
m = np.load(o + "/m.npy")
small = np.where(m > 0, m % 60000 + 1, 0)
cmap16 = np.zeros((3, 65536), np.uint16); cmap16[0] = 65535 - np.arange(65536)
tifffile.imwrite(o + "/mpal16.tif", small.astype(np.uint16), photometric="palette", colormap=cmap16)
ids = {4000000000: 200, 7: 7, 3: 3, 2000: 250, 12: 12}
m8 = np.vectorize(lambda v: ids.get(int(v), 0))(m).astype(np.uint8)
np.save(o + "/m8.npy", m8)
cmap8 = np.zeros((3, 256), np.uint16); cmap8[1] = (255 - np.arange(256)) * 257
tifffile.imwrite(o + "/mpal8.tif", m8, photometric="palette", colormap=cmap8)
im = Image.fromarray(m8, "P"); im.putpalette([(255 - i) % 256 for i in range(768)]); im.save(o + "/mpal8.png")
m4 = np.vectorize(lambda v: {200: 1, 7: 2, 3: 3, 250: 4, 12: 15}.get(int(v), 0))(m8).astype(np.uint8)
np.save(o + "/m4.npy", m4)
im = Image.fromarray(m4, "P"); im.putpalette([(255 - i) % 256 for i in range(48)]); im.save(o + "/mpal4.png", bits=4)
assert open(o + "/mpal4.png", "rb").read()[24:26] == b"\x04\x03", "PIL wrote no 4-bit palette PNG"
PY
expect 0 "wrote 4 crops" "$cfnet" crop "$out/f8.tif" "$out/mpal16.tif" -o "$out/cp16" --size 16
check "$out/cp16" "$out/f8.tif" "$out/mpal16.tif" 16 0 0 1
for p in mpal8.tif:m8 mpal8.png:m8 mpal4.png:m4; do
    expect 0 "wrote 4 crops" "$cfnet" crop "$out/f8.tif" "$out/${p%%:*}" -o "$out/c${p%%:*}" --size 16
    "$py" - "$out/c${p%%:*}/cells.csv" "$out/${p#*:}.npy" <<'PY' || fail "labels of ${p%%:*} are not its stored indices"
import csv, sys, numpy as np
rows = list(csv.DictReader(open(sys.argv[1])))
m = np.load(sys.argv[2])
got = sorted((int(r["label"]), int(r["area"])) for r in rows)
want = sorted((int(l), int((m == l).sum())) for l in np.unique(m[m > 0]))
want = [w for w in want if w[1] != 25]  # the 5x5 cell in the corner is too near the border
assert got == want, (got, want)
PY
done
# a binary (foreground) mask, one label over every cell: one crop, with a warning saying so; one
# small cell alone (a field of one cell) gives no warning
"$py" - "$out" <<'PY'
import sys, numpy as np, tifffile
o = sys.argv[1]
m = np.load(o + "/m.npy")
tifffile.imwrite(o + "/mbin.tif", np.where(m > 0, 255, 0).astype(np.uint8))
one = np.zeros(m.shape, np.uint8); one[50:53, 60:63] = 255
tifffile.imwrite(o + "/mone.tif", one)
PY
expect 0 "mbin.tif: one label only \\(255\\), of [0-9]+ pixels, more than a 8x8 crop holds: if this is a binary \\(foreground\\) mask, give each cell its own label first" \
    "$cfnet" crop "$out/f8.tif" "$out/mbin.tif" -o "$out/cbin" --size 8
expect 0 "wrote 1 crop \\(8x8\\) of 1 field" "$cfnet" crop "$out/f8.tif" "$out/mone.tif" -o "$out/cone" --size 8
! grep -q "one label only" "$out/last.txt" || fail "a mask of one small cell was called a binary mask"
# a palette field stays refused: its colours are the image
expect 1 "mpal8.tif: unsupported TIFF colour model \\(palette" "$cfnet" crop "$out/mpal8.tif" "$out/m32.tif" -o "$out/bad1"
# refused masks and fields: a message naming the file, status 1, nothing written
expect 1 "mneg.tif: not a label mask: negative label -5 at row 70, column 20" \
    "$cfnet" crop "$out/f16.tif" "$out/mneg.tif" -o "$out/bad1"
expect 1 "mfloat.tif: not a label mask: 32-bit float samples" "$cfnet" crop "$out/f16.tif" "$out/mfloat.tif" -o "$out/bad1"
# cellpose's _seg.npy given as the mask: the message names the mask files cellpose writes
printf 'PK\003\004rest' >"$out/mzip.zip"
expect 1 "m.npy: not a TIFF or PNG file \\(it is a NumPy array \\(.npy\\); a label mask is a TIFF or PNG: cellpose writes them with --save_tif or --save_png" \
    "$cfnet" crop "$out/f16.tif" "$out/m.npy" -o "$out/bad1"
expect 1 "mzip.zip: not a TIFF or PNG file \\(it is a ZIP archive; save the label mask as a TIFF or PNG\\)" \
    "$cfnet" crop "$out/f16.tif" "$out/mzip.zip" -o "$out/bad1"
expect 1 "m2ch.tif: not a label mask: 2 or more channels" "$cfnet" crop "$out/f16.tif" "$out/m2ch.tif" -o "$out/bad1"
lacks "did you swap" "a refused mask beside a field that is no label mask: a swap hinted"
# FIELD and MASK given the other way round, when it is clear (the mask refused as no label mask
# but an image, the field a label mask of patches of one label on a background of 0): the
# refusal asks whether they were swapped; a field of noise, or no label mask, is not guessed at
expect 1 "ffl.tif: not a label mask: .*; did you swap FIELD and MASK\\? .*/m32.tif reads as a label mask \\(5 labels on a background of 0\\) and .*/ffl.tif as an image: give the field first, then its mask$" \
    "$cfnet" crop "$out/m32.tif" "$out/ffl.tif" -o "$out/bad1"
expect 1 "f16.tif: not a label mask: 2 or more channels.*; did you swap FIELD and MASK\\? .*/mi32.tif reads as a label mask \\(5 labels" \
    "$cfnet" crop "$out/mi32.tif" "$out/f16.tif" -o "$out/bad1"
expect 1 "ffl.tif: not a label mask" "$cfnet" crop "$out/f8.tif" "$out/ffl.tif" -o "$out/bad1"
lacks "did you swap" "a field of noise taken for a label mask: a swap hinted"
expect 1 "ffl.tif: not a label mask" "$cfnet" crop "$out/mfloat.tif" "$out/ffl.tif" -o "$out/bad1"
lacks "did you swap" "a float field taken for a label mask: a swap hinted"
# a binary (thresholded) field, one label on 0, beside a broken mask: as much an image as a mask,
# so not clear: not asked (it was 'mbin.tif reads as a label mask (1 label ...)')
expect 1 "mfloat.tif: not a label mask: 32-bit float samples" "$cfnet" crop "$out/mbin.tif" "$out/mfloat.tif" -o "$out/bad1"
lacks "did you swap" "a binary field (one label) beside a float mask: a swap hinted"
expect 1 "mneg.tif: not a label mask: negative label" "$cfnet" crop "$out/mi32.tif" "$out/mneg.tif" -o "$out/bad1"
lacks "did you swap" "a mask with a negative label beside a label field (no image either way): a swap hinted"
test -e "$out/bad1" && fail "a refused pair left DIR"
expect 1 "mzero.tif: no cells" "$cfnet" crop "$out/f16.tif" "$out/mzero.tif" -o "$out/bad1"
expect 1 "f16.tif is 120x100 but its mask .*mother.tif is 121x100" "$cfnet" crop "$out/f16.tif" "$out/mother.tif" -o "$out/bad1"
expect 1 "missing.tif: " "$cfnet" crop "$out/f16.tif" "$out/missing.tif" -o "$out/bad1"
expect 1 "unsupported TIFF samples" "$cfnet" crop "$out/m32.tif" "$out/m32.tif" -o "$out/bad1"
# a failure on the second pair leaves nothing: no DIR, no staging folder
expect 1 "pair 2 of 2 failed; nothing written" \
    "$cfnet" crop "$out/f16.tif" "$out/m32.tif" "$out/f8.tif" "$out/mneg.tif" -o "$out/bad1"
test -e "$out/bad1" && fail "a failed crop left DIR"
for s in "$out"/.*crop-tmp*; do test -e "$s" && fail "a failed crop left its staging folder $s"; done
# ... nor the folders on the way to DIR that it made (an existing one stays)
mkdir "$out/kept"
expect 1 "pair 2 of 2 failed; nothing written" \
    "$cfnet" crop "$out/f16.tif" "$out/m32.tif" "$out/f8.tif" "$out/mneg.tif" -o "$out/kept/new1/new2/bad1"
test -e "$out/kept/new1" && fail "a failed crop left the folders it made on the way to DIR"
test -d "$out/kept" || fail "a failed crop removed a folder it did not make"
# ... and an existing empty DIR stays empty
mkdir "$out/empty"
expect 1 "pair 2 of 2 failed" "$cfnet" crop "$out/f16.tif" "$out/m32.tif" "$out/f8.tif" "$out/mneg.tif" -o "$out/empty"
test -z "$(ls -A "$out/empty")" || fail "a failed crop wrote into the empty DIR"
expect 0 "" "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/empty/" --size 16 -q
test "$(cat "$out/last.txt")" = "" || fail "-q printed something"
cmp "$out/empty/cells.csv" "$o1/cells.csv" || fail "the crop into an existing empty DIR differs"
# an existing empty DIR keeps its mode, setgid bit and group (a shared lab folder)
mkdir "$out/shared"
chmod 2750 "$out/shared"
grp=$(id -G | tr ' ' '\n' | tail -n 1)
[ "$(id -u)" = 0 ] && grp=1
chgrp "$grp" "$out/shared" 2>/dev/null || grp=$(stat -c %g "$out/shared")
expect 0 "wrote 4 crops" "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/shared" --size 16
test "$(stat -c %a:%g "$out/shared")" = "2750:$grp" || fail "DIR's mode and group not kept: $(stat -c %a:%g "$out/shared"), not 2750:$grp"
# a link to an empty folder: the crops go into the folder it names, the link stays
mkdir "$out/linked"
ln -s linked "$out/link"
expect 0 "wrote 4 crops" "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/link" --size 16
test -L "$out/link" || fail "crop replaced the link to DIR"
cmp "$out/linked/cells.csv" "$o1/cells.csv" || fail "the crop through a link to DIR differs"
# DIR a link in a loop of links (loopa -> loopb -> loopa): said as such, a usage error before
# anything is written (it was "a link to a folder that does not exist")
ln -s loopb "$out/loopa"
ln -s loopa "$out/loopb"
expect 2 "^cfnet crop: --output: $out/loopa is a link that leads into a loop of links \(make it a link to a folder, or give another DIR\)$" \
    "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/loopa" --size 16
usage_said crop "crop -o into a loop of links"
lacks "does not exist" "crop -o into a loop of links said as a link to a folder that does not exist"
for f in "$out"/.loopa.crop-*; do
    if [ -e "$f" ]; then fail "crop -o into a loop of links left $f"; fi
done
rm "$out/loopa" "$out/loopb"
# staging folders of this very process id (a run killed outright, in a container whose processes
# get the same ids run after run, e.g. pid 1 restarted after running out of memory): removed as
# any killed run's, or each restart left one more, up to 100 (then crop refused to start)
host=$("$py" -c 'import socket; print(socket.gethostname())')
# runmark PID [HOST]: the mark of a run of this host (or HOST), machine and boot, without its
# last newline (cf_platform_run_mark: the machine id, else "boot-" and the boot id)
boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || :)
machine=$(cat /etc/machine-id 2>/dev/null || cat /var/lib/dbus/machine-id 2>/dev/null || :)
[ -n "$machine" ] || machine=${boot:+boot-$boot}
runmark() { printf 'host=%s\nmachine=%s\nboot=%s\npid=%s' "${2-$host}" "$machine" "$boot" "$1"; }
mkdir "$out/pidrun"
expect 0 "removed 2 staging folders .*that killed runs left" sh -c 'for s in "$$.$5" "$$-1.$5"; do mkdir "$1/.x.crop-tmp.$s" && : >"$1/.x.crop-tmp.$s/old" &&  printf "%s\n" "$6" >"$1/.x.crop-tmp.$s/.cfnet-staging"; done && exec "$2" crop "$3" "$4" -o "$1/x" --size 16' \
    sh "$out/pidrun" "$cfnet" "$out/f16.tif" "$out/m32.tif" "$host" "$(runmark 1)"
cmp "$out/pidrun/x/cells.csv" "$o1/cells.csv" || fail "the crop beside an old staging folder differs"
test "$(ls -A "$out/pidrun" | tr '\n' ' ')" = "x " || fail "staging folders of this process id stayed: $(ls -A "$out/pidrun" | tr '\n' ' ')"
# ... but one of that id that a process holds locked (a live run of another container with the
# same id and host name) is left alone: another name
mkdir "$out/pidrun2"
expect 0 "wrote 4 crops" sh -c 'd="$1/.x.crop-tmp.$$.$5"; mkdir "$d" && : >"$d/old" && printf "%s\n" "$8" >"$d/.cfnet-staging" &&
    { "$6" -c "import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX)
open(sys.argv[1] + \"/locked\", \"w\").close(); time.sleep(60)" "$d" & echo $! >"$7"; } &&
    i=0; while [ ! -e "$d/locked" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done;
    exec "$2" crop "$3" "$4" -o "$1/x" --size 16' \
    sh "$out/pidrun2" "$cfnet" "$out/f16.tif" "$out/m32.tif" "$host" "$py" "$out/locker2.pid" "$(runmark 1)"
kill "$(cat "$out/locker2.pid")" 2>/dev/null || :
cmp "$out/pidrun2/x/cells.csv" "$o1/cells.csv" || fail "the crop beside a locked staging folder differs"
test "$(ls -A "$out/pidrun2" | grep -c crop-tmp)" = 1 || fail "crop touched the locked staging folder of its process id"
# staging folders that runs of this host killed outright (kill -9) left: removed by the next
# crop into the same DIR when no process holds their lock and, on this machine's own disk, they
# were locked once (no sticky bit, which marks a folder made and not yet locked) whatever
# process has their id now (this shell's: the id of a killed run came round again), or their
# process is gone (a finished subshell's id); those of another host, of a host whose name ends
# in ".2" (".PID.HOST.2", once "HOST" with a number), of another DIR, marked and of a live
# process (a run between making and locking it), locked, or holding a subfolder stay. Without a
# host (".PID", any host's), on this machine's own disk, by the lock alone: removed when locked
# once (no sticky bit), else kept. Only a folder holding the mark (.cfnet-staging) that a run
# makes once it holds the lock is a run's: one without it (a user's own folder of that name, or
# the folder of a live run that could not lock it, ENOLCK, made without the sticky bit in a
# setgid parent) stays.
dead=$(sh -c 'echo $$')
mkdir "$out/killed"
for s in ".y.crop-tmp.$dead.$host" ".y.crop-tmp.$dead-3.$host" ".y.crop-tmp.$$.$host" \
    ".y.crop-tmp.$dead-7.$host" ".y.crop-tmp.$$-6.$host" ".y.crop-tmp.$dead.$host.2" \
    ".y.crop-tmp.$dead" ".y.crop-tmp.$dead.other-$host" ".z.crop-tmp.$dead.$host" \
    ".y.crop-tmp.$dead.$host.x" ".y.crop-tmp.$dead-4.$host" ".y.crop-tmp.$dead-5.$host" \
    ".y.crop-tmp.$dead-8" ".y.crop-tmp.$$-11" ".y.crop-tmp.$dead-9.$host" ".y.crop-tmp.$$-10.$host" \
    ".y.crop-tmp.$dead-12" ".y.crop-tmp.$dead-13" ".y.crop-tmp.$dead-14" ".y.crop-tmp.$$-15" \
    ".y.crop-tmp.$dead-18" ".y.crop-tmp.$dead-19" ".y.crop-tmp.$dead-20" ".y.crop-tmp.$dead-21.$host" \
    ".y.crop-tmp.$dead-22.$host" ".y.crop-tmp.$dead-23" ".y.crop-tmp.$dead-24.$host"; do
    mkdir "$out/killed/$s" && : >"$out/killed/$s/f16_3.tif" && : >"$out/killed/$s/cells.csv" &&
        printf '%s\n' "$(runmark "$dead")" >"$out/killed/$s/.cfnet-staging"
done
# host-less folders whose mark names another host (a client's, on an NFS server whose own runs
# do not see the client's lock), or cannot be told (no newline after the host, a folder in the
# mark's place): kept
printf '%s\n' "$(runmark "$dead" "other-$host")" >"$out/killed/.y.crop-tmp.$dead-13/.cfnet-staging"
# marks of this host's name but of another machine (a cloned virtual machine sharing the folder,
# its own machine id) or of another boot (a clone whose machine id was not renewed), with and
# without the host in the folder's name, and the earlier mark of host and pid alone: kept
printf 'host=%s\nmachine=0%s\nboot=%s\npid=%s\n' "$host" "$machine" "$boot" "$dead" >"$out/killed/.y.crop-tmp.$dead-21.$host/.cfnet-staging"
printf 'host=%s\nmachine=%s\nboot=0%s\npid=%s\n' "$host" "$machine" "$boot" "$dead" >"$out/killed/.y.crop-tmp.$dead-22.$host/.cfnet-staging"
printf 'host=%s\nmachine=%s\nboot=0%s\npid=%s\n' "$host" "$machine" "$boot" "$dead" >"$out/killed/.y.crop-tmp.$dead-23/.cfnet-staging"
printf 'host=%s\npid=%s\n' "$host" "$dead" >"$out/killed/.y.crop-tmp.$dead-24.$host/.cfnet-staging"
printf 'host=%s' "$host" >"$out/killed/.y.crop-tmp.$dead-14/.cfnet-staging"
rm "$out/killed/.y.crop-tmp.$$-15/.cfnet-staging" && mkdir "$out/killed/.y.crop-tmp.$$-15/.cfnet-staging"
# ... the mark of a host whose name holds a newline after this host's name (the kernel takes any
# bytes), its first line "host=HOST" all the same; a FIFO (not waited on) and a link to a mark
# naming this host (not followed) in the mark's place: kept
printf 'host=%s\nx\npid=%s\n' "$host" "$dead" >"$out/killed/.y.crop-tmp.$dead-18/.cfnet-staging"
rm "$out/killed/.y.crop-tmp.$dead-19/.cfnet-staging" && mkfifo "$out/killed/.y.crop-tmp.$dead-19/.cfnet-staging"
printf '%s\n' "$(runmark "$dead")" >"$out/killed-mark"
rm "$out/killed/.y.crop-tmp.$dead-20/.cfnet-staging" && ln -s ../../killed-mark "$out/killed/.y.crop-tmp.$dead-20/.cfnet-staging"
# empty folders with a staging name, locked once (no sticky bit), their lock free, of a dead
# process: no mark, so kept (a folder of the user's, or a run killed before it made its mark)
mkdir "$out/killed/.y.crop-tmp.$dead-16.$host" "$out/killed/.y.crop-tmp.$dead-17"
rm "$out/killed/.y.crop-tmp.$dead-9.$host/.cfnet-staging" "$out/killed/.y.crop-tmp.$$-10.$host/.cfnet-staging" \
    "$out/killed/.y.crop-tmp.$dead-12/.cfnet-staging"
chmod +t "$out/killed/.y.crop-tmp.$dead-7.$host" "$out/killed/.y.crop-tmp.$$-6.$host" "$out/killed/.y.crop-tmp.$dead-8"
mkdir "$out/killed/.y.crop-tmp.$dead-5.$host/sub"
"$py" - "$out/killed/.y.crop-tmp.$dead-4.$host" <<'PY' &
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
open(sys.argv[1] + "/locked", "w").close()
time.sleep(60)
PY
locker=$!
i=0
while [ ! -e "$out/killed/.y.crop-tmp.$dead-4.$host/locked" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
local_fs=0
case $(stat -f -c %T "$out/killed") in ext2/ext3 | xfs | btrfs | f2fs | tmpfs) local_fs=1 ;; esac
gone=3
[ $local_fs = 1 ] && gone=6
expect 0 "removed $gone staging folders .*that killed runs left" \
    "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/killed/y" --size 16
kill "$locker" 2>/dev/null || :
wait "$locker" 2>/dev/null || :
kept=".y.crop-tmp.$$-6.$host .y.crop-tmp.$dead.$host.2 \
    .y.crop-tmp.$dead-4.$host .y.crop-tmp.$dead-5.$host .y.crop-tmp.$dead.$host.x \
    .y.crop-tmp.$dead.other-$host .z.crop-tmp.$dead.$host .y.crop-tmp.$dead-8 \
    .y.crop-tmp.$dead-9.$host .y.crop-tmp.$$-10.$host .y.crop-tmp.$dead-12 .y.crop-tmp.$dead-13 \
    .y.crop-tmp.$dead-14 .y.crop-tmp.$$-15 .y.crop-tmp.$dead-16.$host .y.crop-tmp.$dead-17 \
    .y.crop-tmp.$dead-18 .y.crop-tmp.$dead-19 .y.crop-tmp.$dead-20 .y.crop-tmp.$dead-21.$host \
    .y.crop-tmp.$dead-22.$host .y.crop-tmp.$dead-23 .y.crop-tmp.$dead-24.$host y"
[ $local_fs = 1 ] || kept="$kept .y.crop-tmp.$$.$host .y.crop-tmp.$dead .y.crop-tmp.$$-11"
# shellcheck disable=SC2086
test "$(cd "$out/killed" && LC_ALL=C ls -A | tr '\n' ' ')" = "$(printf '%s ' $kept | tr ' ' '\n' | LC_ALL=C sort | tr '\n' ' ')" ||
    fail "stale staging folders: $(cd "$out/killed" && ls -A | tr '\n' ' ')"
test -e "$out/killed/.y.crop-tmp.$dead-5.$host/cells.csv" || fail "files removed from a staging folder that holds a folder"
test -e "$out/killed/.y.crop-tmp.$$-6.$host/cells.csv" || fail "files removed from a live process's staging folder not locked yet"
test -e "$out/killed/.y.crop-tmp.$dead.$host.2/cells.csv" || fail "files removed from the staging folder of host $host.2"
test -e "$out/killed/.y.crop-tmp.$dead-9.$host/cells.csv" || fail "files removed from a folder named as a staging folder, without its mark"
test -e "$out/killed/.y.crop-tmp.$$-10.$host/cells.csv" || fail "files removed from a live run's folder it could not lock (no mark, no sticky bit)"
cmp "$out/killed/y/cells.csv" "$o1/cells.csv" || fail "the crop beside stale staging folders differs"
test -k "$out/killed/y" && fail "DIR kept the sticky bit of a staging folder not locked yet"
test -e "$out/killed/y/.cfnet-staging" && fail "DIR holds the staging folder's mark"
# an empty file with a claim's name (.DIR.crop-new.PID[-N][.HOST], of this host, its process gone
# or this shell's, its lock free; alone or beside an empty folder of the staging folder's name)
# is no run's: a run's claim is never seen without its whole mark. Kept, as is the folder (once,
# an empty claim of this host's name was removed on its lock alone, a file of the user's with it)
mkdir "$out/emptyclaim" "$out/emptyclaim/.x.crop-tmp.$dead-1.$host"
for c in "$dead.$host" "$dead-1.$host" "$$.$host" "$dead-2"; do : >"$out/emptyclaim/.x.crop-new.$c"; done
expect 0 "wrote 4 crops" "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/emptyclaim/x" --size 16
lacks "removed" "crop beside empty files with a claim's name said it removed something"
for c in "$dead.$host" "$dead-1.$host" "$$.$host" "$dead-2"; do
    test -f "$out/emptyclaim/.x.crop-new.$c" || fail "an empty file with a claim's name removed: .x.crop-new.$c"
done
test -d "$out/emptyclaim/.x.crop-tmp.$dead-1.$host" || fail "an empty folder beside an empty file with a claim's name removed"
# a machine whose identity is unknown (no boot id: outside Linux; CFNET_TEST_ID_ROOT, a folder
# standing for "/", gives the id files): its marks carry empty ids, which a clone of the same
# host name writes too, so an exact match proves nothing: a killed run's marked folder, and a
# claim beside an empty folder, with exactly such a mark stay, also with a machine id but no boot
# id; with both ids the same folders (of those ids) are removed
mkdir -p "$out/ids/none" "$out/ids/machine/etc" "$out/ids/both/etc" "$out/ids/both/proc/sys/kernel/random"
idm=0123456789abcdef0123456789abcdef idb=01234567-89ab-cdef-0123-456789abcdef
echo "$idm" >"$out/ids/machine/etc/machine-id"
echo "$idm" >"$out/ids/both/etc/machine-id"
echo "$idb" >"$out/ids/both/proc/sys/kernel/random/boot_id"
for r in none machine both; do
    case $r in
    none) m='' b='' ;;
    machine) m=$idm b='' ;;
    *) m=$idm b=$idb ;;
    esac
    d="$out/ids-$r"
    mkdir "$d" "$d/.x.crop-tmp.$dead.$host" "$d/.x.crop-tmp.$dead-1.$host"
    : >"$d/.x.crop-tmp.$dead.$host/cells.csv"
    printf 'host=%s\nmachine=%s\nboot=%s\npid=%s\n' "$host" "$m" "$b" "$dead" >"$d/.x.crop-tmp.$dead.$host/.cfnet-staging"
    printf 'host=%s\nmachine=%s\nboot=%s\npid=%s\n' "$host" "$m" "$b" "$dead" >"$d/.x.crop-new.$dead-1.$host"
    expect 0 "wrote 4 crops" env CFNET_TEST_ID_ROOT="$out/ids/$r" "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$d/x" --size 16
    case $r in
    both) grep -q "removed 2 staging folders" "$out/last.txt" || fail "the folders of a killed run of known ids were not removed: $(cat "$out/last.txt")"
        test "$(ls -A "$d")" = x || fail "beside the folders of a killed run of known ids: $(ls -A "$d" | tr '\n' ' ')" ;;
    *) lacks "removed" "the folders of a killed run whose mark has empty ids ($r) said removed"
        test "$(ls -A "$d" | wc -l)" = 4 || fail "the folders of a killed run whose mark has empty ids ($r) removed: $(ls -A "$d" | tr '\n' ' ')" ;;
    esac
done
test "$(stat -c %a "$out/killed/y")" = "$(stat -c %a "$out/pidrun/x")" || fail "DIR's mode: $(stat -c %a "$out/killed/y")"
# several staging folders that hold a killed run's whole output, each beside its claim: the note
# names them in the order of their names (strcmp), the same from run to run (it was the folder's
# own order, readdir's); made here in neither that order nor its reverse
mkdir "$out/sorted"
for k in 5 2 8 1 7 3 6 4; do
    mkdir "$out/sorted/.x.crop-tmp.$dead-$k.$host"
    : >"$out/sorted/.x.crop-tmp.$dead-$k.$host/cells.csv"
    printf '%s\n' "$(runmark "$dead")" >"$out/sorted/.x.crop-new.$dead-$k.$host"
done
expect 0 "8 staging folders \(\.x\.crop-tmp\.\*\) in $out/sorted hold the whole output of runs killed" \
    "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/sorted/x" --size 16
named=$(grep "hold the whole output" "$out/last.txt" | grep -o "[^ ]*/\.x\.crop-tmp\.[^ ]* beside" | sed 's/ beside$//')
test "$(printf '%s\n' "$named" | wc -l)" = 8 || fail "the note of 8 kept staging folders names $(printf '%s\n' "$named" | wc -l): $(cat "$out/last.txt")"
test "$named" = "$(printf '%s\n' "$named" | LC_ALL=C sort)" ||
    fail "the note of several kept staging folders names them out of order: $(echo "$named" | tr '\n' ' ')"
# two crops into the same new DIR at once: one writes it, the other (started after DIR was
# written: DIR not empty, status 2; or finding it written at its own rename: status 1) writes
# nothing and removes its staging folder; DIR is one run's whole output
mkdir "$out/both"
for k in 1 2 3; do
    "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/both/d$k" --size 16 >"$out/both1.txt" 2>&1 &
    p1=$!
    "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/both/d$k" --size 16 >"$out/both2.txt" 2>&1 &
    p2=$!
    s1=0 && wait $p1 || s1=$?
    s2=0 && wait $p2 || s2=$?
    case "$s1 $s2" in
    "0 1" | "0 2" | "1 0" | "2 0") ;;
    *) fail "two crops into one DIR: status $s1 and $s2: $(cat "$out/both1.txt" "$out/both2.txt")" ;;
    esac
    cmp "$out/both/d$k/cells.csv" "$o1/cells.csv" || fail "two crops into one DIR: cells.csv differs"
    test "$(ls "$out/both/d$k" | wc -l)" = "$(ls "$o1" | wc -l)" || fail "two crops into one DIR: $(ls "$out/both/d$k" | tr '\n' ' ')"
done
test "$(ls -A "$out/both" | tr '\n' ' ')" = "d1 d2 d3 " || fail "two crops into one DIR left $(ls -A "$out/both" | tr '\n' ' ')"
# the lock on the staging folder just made taken by another process (a cleaner that took it for
# a killed run's; strace makes the first flock fail as if held): the run makes its folder anew
# under the next name and locks that one, never going on unlocked, and leaves no folder behind
# (LeakSanitizer cannot run under ptrace: off for this run of a sanitized build)
if command -v strace >/dev/null 2>&1 && strace -o /dev/null true 2>/dev/null; then
    mkdir "$out/relock"
    expect 0 "wrote 4 crops" env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o "$out/relock.strace" -e trace=mkdir,flock,rmdir \
        -e inject=flock:error=EAGAIN:when=2 "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/relock/x" --size 16
    grep -q 'mkdir(".*/\.x\.crop-tmp\.[0-9]*-1\..*= 0' "$out/relock.strace" &&
        grep -q 'flock(.*LOCK_EX|LOCK_NB) *= 0' "$out/relock.strace" ||
        fail "a staging folder whose lock another process held: $(cat "$out/relock.strace")"
    cmp "$out/relock/x/cells.csv" "$o1/cells.csv" || fail "the crop after its lock was taken differs"
    test "$(ls -A "$out/relock" | tr '\n' ' ')" = "x " || fail "left beside DIR: $(ls -A "$out/relock" | tr '\n' ' ')"
    # the lock failing otherwise (ENOLCK: no lock records): the run goes on unlocked and does
    # not mark its folder as a locked run's (a cleaner would take it for a killed run's: in a
    # setgid parent it has no sticky bit either); DIR has no mark
    mkdir "$out/nolck"
    expect 0 "wrote 4 crops" env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o "$out/nolck.strace" -e trace=openat,flock \
        -e inject=flock:error=ENOLCK:when=1 "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/nolck/x" --size 16
    grep -q 'flock(.*ENOLCK' "$out/nolck.strace" || fail "no ENOLCK injected: $(cat "$out/nolck.strace")"
    grep -q 'cfnet-staging' "$out/nolck.strace" && fail "a run that could not lock its staging folder marked it"
    test "$(ls -A "$out/nolck/x" | grep -c cfnet-staging)" = 0 || fail "DIR holds the staging mark"
    cmp "$out/nolck/x/cells.csv" "$o1/cells.csv" || fail "the crop without a lock differs"
    # a DIR whose name leaves no room for the host in the staging folder's name (".DIR.crop-tmp.PID"):
    # the run's mark names its host, and a run killed before its rename (SIGKILL at syncfs, the
    # folder still marked) is removed by the next run on this host (on this machine's own disk)
    long=$(printf '%236s' '' | tr ' ' L)
    mkdir "$out/hostless"
    env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o /dev/null -e trace=syncfs \
        -e inject=syncfs:signal=KILL "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/hostless/$long" --size 16 \
        >/dev/null 2>&1 || :
    left=$(ls -A "$out/hostless")
    case $left in
    ".$long.crop-tmp."[0-9]*[0-9]) ;;
    *) fail "a run killed before its rename into a DIR of a long name left: $left" ;;
    esac
    head -n 1 "$out/hostless/$left/.cfnet-staging" | grep -qx "host=$host" ||
        fail "the mark of a staging folder without a host: $(cat "$out/hostless/$left/.cfnet-staging")"
    if [ $local_fs = 1 ]; then
        expect 0 "removed 1 staging folder .*that killed runs left" \
            "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/hostless/$long" --size 16
        test "$(ls -A "$out/hostless")" = "$long" || fail "beside a DIR of a long name: $(ls -A "$out/hostless")"
    fi
    # a failed run (syncfs failing) killed outright while it removes its staging folder (SIGKILL
    # at its fifth unlink of six, as after SIGTERM's grace): the mark is removed last, so the
    # folder left is still marked and the next run removes it (unmarked, it stayed for good)
    mkdir "$out/closekill"
    env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o /dev/null -e trace=syncfs,unlink,unlinkat \
        -e inject=syncfs:error=EIO -e inject=unlink,unlinkat:signal=KILL:when=5 \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/closekill/x" --size 16 >/dev/null 2>&1 || :
    left=$(ls -A "$out/closekill")
    case $left in
    .x.crop-tmp.[0-9]*) test -f "$out/closekill/$left/.cfnet-staging" ||
        fail "a run killed while removing its staging folder left it unmarked: $(ls -A "$out/closekill/$left" | tr '\n' ' ')" ;;
    *) fail "a run killed while removing its staging folder left: $left" ;;
    esac
    expect 0 "removed 1 staging folder .*that killed runs left" \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/closekill/x" --size 16
    test "$(ls -A "$out/closekill")" = "x" || fail "beside a run killed while removing its staging folder: $(ls -A "$out/closekill")"
    # an existing empty DIR that cannot be read for the machine's sake (no file descriptor left:
    # EMFILE injected into its opendir): an error (status 1), not a usage error (it was 'cfnet
    # crop: --output: DIR: Too many open files; crop writes into a new or empty folder ...', the
    # pointer to --help and status 2); nothing is made beside it
    mkdir -p "$out/emfile/x"
    expect 1 "^cfnet: error: --output: .*emfile/x: cannot read the folder: Too many open files$" \
        env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o "$out/emfile.strace" \
        -P "$out/emfile/x" -e trace=openat -e inject=openat:error=EMFILE \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/emfile/x" --size 16
    lacks "see 'cfnet crop --help'|new or empty folder" "crop -o DIR that cannot be read (EMFILE): said as a usage error"
    test "$(ls -A "$out/emfile" | tr '\n' ' ')" = "x " || fail "crop -o DIR that cannot be read left: $(ls -A "$out/emfile")"
    # a run killed outright while it makes its staging folder, at each step: before it locks its
    # claim (.x.crop-new.PID.HOST, written into an unnamed file first) and before it links it
    # into place (nothing left: the claim is never seen without its whole mark), before it makes
    # its folder (the claim alone, its whole mark in it), before it locks the folder (the claim
    # beside the empty folder), before it moves the claim into the folder as its mark (SIGKILL at
    # the first flock, link, mkdir, second flock, first rename). No empty, unmarked folder or claim
    # stays for good (once, an empty folder did): the next run proves them its own and removes them
    for at in flock:1 link:1 mkdir:1 flock:2 rename:1; do
        mkdir "$out/makekill"
        env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o /dev/null \
            -e trace=flock,link,linkat,mkdir,mkdirat,rename,renameat,renameat2 \
            -e inject="$(case $at in flock:*) echo flock ;; link:*) echo link,linkat ;; mkdir:*) echo mkdir,mkdirat ;; *) echo rename,renameat,renameat2 ;; esac)":signal=KILL:when="${at#*:}" \
            "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/makekill/x" --size 16 >/dev/null 2>&1 || :
        left=$(ls -A "$out/makekill" | tr '\n' ' ')
        case $at in
        flock:1 | link:1) test -z "$left" || fail "a run killed before it linked its claim (at $at) left: $left" ;;
        mkdir:1) case $left in
            ".x.crop-new."*".$host ") claim=$(ls -A "$out/makekill")
                test "$(cat "$out/makekill/$claim")" = "$(runmark "$(echo "$claim" | cut -d. -f4)")" ||
                    fail "a run killed before it made its folder left a claim without its whole mark: $(cat "$out/makekill/$claim")" ;;
            *) fail "a run killed before it made its folder left: $left" ;;
            esac ;;
        *) case $left in
            ".x.crop-new."*" .x.crop-tmp."*" ") test -z "$(ls -A "$out/makekill/.x.crop-tmp."*)" ||
                fail "a run killed at $at left a staging folder that is not empty" ;;
            *) fail "a run killed while making its staging folder (at $at) left: $left" ;;
            esac ;;
        esac
        expect 0 "wrote 4 crops" "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/makekill/x" --size 16
        case $at in
        flock:1 | link:1) lacks "removed" "a note of something removed where nothing was left (killed at $at)" ;;
        # the claim alone: removed with a note, once, as the folders are (it went unsaid)
        mkdir:1)
            grep -q "removed the claim $out/makekill/\.x\.crop-new\.[^ ]*\.$host that a run killed outright left (no staging folder of its own beside it)$" "$out/last.txt" ||
                fail "no note of the lone claim removed (killed at $at): $(cat "$out/last.txt")"
            test "$(grep -c "removed" "$out/last.txt")" = 1 || fail "the lone claim removed said more than once: $(cat "$out/last.txt")" ;;
        *)
            grep -q "removed 1 staging folder .*that killed runs left" "$out/last.txt" ||
                fail "no note of the staging folder removed (killed at $at)"
            lacks "removed the claim" "a claim beside its folder said removed alone (killed at $at)" ;;
        esac
        test "$(ls -A "$out/makekill")" = "x" || fail "beside a run killed while making its staging folder (at $at): $(ls -A "$out/makekill" | tr '\n' ' ')"
        cmp "$out/makekill/x/cells.csv" "$o1/cells.csv" || fail "the crop after a run killed at $at differs"
        rm -r "$out/makekill"
    done
    # a file system without unnamed files (O_TMPFILE refused, EOPNOTSUPP injected): the claim is
    # made by its name, locked, then written, and the run goes on as before; nothing left
    mkdir "$out/notmp"
    expect 0 "wrote 4 crops" env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o "$out/notmp.strace" \
        -P "$out/notmp" -e trace=openat,open -e inject=openat,open:error=EOPNOTSUPP:when=2 \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/notmp/x" --size 16
    grep -q 'O_TMPFILE.*EOPNOTSUPP.*INJECTED' "$out/notmp.strace" || fail "no O_TMPFILE refused: $(cat "$out/notmp.strace")"
    cmp "$out/notmp/x/cells.csv" "$o1/cells.csv" || fail "the crop without unnamed files differs"
    test "$(ls -A "$out/notmp")" = "x" || fail "beside a run without unnamed files: $(ls -A "$out/notmp" | tr '\n' ' ')"
    # the unnamed claim's link refused (EPERM: a security module, a file system refusing it;
    # EXDEV; ENOENT: a /proc whose fd links cannot be linked by): the claim is made by its name
    # as without unnamed files, never a refusal of the run (once, EPERM and EXDEV stopped it with
    # status 1, "cannot make .x.crop-tmp...: Operation not permitted"); nothing left
    for e in EPERM EXDEV ENOENT; do
        mkdir "$out/nolink"
        expect 0 "wrote 4 crops" env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o "$out/nolink.strace" \
            -e trace=linkat -e inject=linkat:error=$e:when=1 \
            "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/nolink/x" --size 16
        grep -q "linkat(.*/proc/self/fd/.*$e.*INJECTED" "$out/nolink.strace" || fail "no link of the claim refused ($e): $(cat "$out/nolink.strace")"
        cmp "$out/nolink/x/cells.csv" "$o1/cells.csv" || fail "the crop whose claim could not be linked ($e) differs"
        test "$(ls -A "$out/nolink")" = "x" || fail "beside a run whose claim could not be linked ($e): $(ls -A "$out/nolink" | tr '\n' ' ')"
        rm -r "$out/nolink"
    done
    # a run killed as it moves its finished output into DIR (SIGKILL at its second rename, the
    # folder's, after the mark went back out to the claim's name by a link; once, the output was
    # left unmarked and unsaid): the next run keeps that folder whole, with the claim beside it,
    # and says once where it is and what to do (the paths of the folder and its claim: move the
    # folder to a name of one's own, not DIR, which the new run writes, and remove the claim; or
    # remove both; once it said "rename it to DIR, or remove both", naming neither, and the claim
    # stayed after the rename); killed at that link (the mark not yet out), the folder is still
    # marked, and removed
    mkdir "$out/endkill"
    for n in 3 2; do
        case $n in
        3) calls=rename,renameat,renameat2 inject="-e inject=$calls:signal=KILL:when=2" ;;
        # the mark's move out: the first link, the second linkat (the first links the claim)
        *) calls=link,linkat inject="-e inject=link:signal=KILL:when=1 -e inject=linkat:signal=KILL:when=2" ;;
        esac
        # shellcheck disable=SC2086
        env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o /dev/null \
            -e trace=$calls $inject \
            "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/endkill/x$n" --size 16 >/dev/null 2>&1 || :
    done
    left=$(cd "$out/endkill" && ls -A | tr '\n' ' ')
    case $left in
    ".x2.crop-tmp."*" .x3.crop-new."*" .x3.crop-tmp."*" ") ;;
    *) fail "runs killed at their second and third renames left: $left" ;;
    esac
    expect 0 "the staging folder $out/endkill/\\.x3\\.crop-tmp\\.[^ ]* holds the whole output of a run killed as it moved it into $out/endkill/x3; kept, beside its claim $out/endkill/\\.x3\\.crop-new\\." \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/endkill/x3" --size 16
    lacks "removed" "a finished run's staging folder said removed"
    test "$(grep -c "holds the whole output" "$out/last.txt")" = 1 || fail "the note of a finished run's staging folder said more than once"
    todo=$(sed -n 's/.*(mv \([^ ]*\) NEWDIR && rm \([^ )]*\)); else remove both (rm -r \1 \2)$/\1 \2/p' "$out/last.txt")
    test -n "$todo" || fail "the note of a finished run's staging folder does not say what to do: $(cat "$out/last.txt")"
    cmp "$out/endkill/.x3.crop-tmp."*/cells.csv "$o1/cells.csv" || fail "the output of a run killed at its rename was not kept whole"
    expect 0 "removed 1 staging folder" "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/endkill/x2" --size 16
    left=$(cd "$out/endkill" && ls -A | tr '\n' ' ')
    case $left in
    ".x3.crop-new."*" .x3.crop-tmp."*" x2 x3 ") ;;
    *) fail "beside runs killed at their second and third renames: $left" ;;
    esac
    # what the note says to do: the output kept under a name of one's own, nothing left beside
    # shellcheck disable=SC2086
    set -- $todo
    mv "$1" "$out/endkill/x3-kept" && rm "$2"
    test "$(cd "$out/endkill" && ls -A | tr '\n' ' ')" = "x2 x3 x3-kept " || fail "after doing what the note says: $(cd "$out/endkill" && ls -A | tr '\n' ' ')"
    cmp "$out/endkill/x3-kept/cells.csv" "$o1/cells.csv" || fail "the kept output moved as the note says differs"
    # the note's commands are quoted for a shell, to be copied as they are: a folder whose name
    # holds a space and a quote (once, the paths were bare, and the commands split them)
    q="$out/end kill's"
    mkdir "$q"
    env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o /dev/null \
        -e trace=rename,renameat,renameat2 -e inject=rename,renameat,renameat2:signal=KILL:when=2 \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$q/x" --size 16 >/dev/null 2>&1 || :
    expect 0 "holds the whole output of a run killed as it moved it into" \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$q/x" --size 16
    todo=$(sed -n 's/.*(\(mv .* NEWDIR && rm .*\)); else remove both (rm -r .*)$/\1/p' "$out/last.txt")
    test -n "$todo" || fail "the note of a finished run's staging folder does not say what to do: $(cat "$out/last.txt")"
    sh -c "$(echo "$todo" | sed 's/ NEWDIR / "$1" /')" sh "$q/kept" >/dev/null 2>&1 ||
        fail "the note's commands failed for a folder named with a space and a quote: $todo"
    test "$(cd "$q" && ls -A | tr '\n' ' ')" = "kept x " || fail "after the note's commands for a folder named with a space and a quote: $(cd "$q" && ls -A | tr '\n' ' ')"
    cmp "$q/kept/cells.csv" "$o1/cells.csv" || fail "the kept output moved by the note's commands differs"
    # several such folders: each named with its own commands, quoted for a shell, as for one (it
    # was their number, the first and advice without commands); doing what it says for each
    # (one kept, one removed) leaves DIR and the kept output alone
    q2="$out/end kill's two"
    mkdir "$q2"
    for k in 1 2; do
        env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o /dev/null \
            -e trace=rename,renameat,renameat2 -e inject=rename,renameat,renameat2:signal=KILL:when=2 \
            "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$q2/x" --size 16 >/dev/null 2>&1 || :
    done
    expect 0 "2 staging folders \(\.x\.crop-tmp\.\*\) in $q2 hold the whole output of runs killed as they moved it into $q2/x; kept" \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$q2/x" --size 16
    test "$(grep -c "hold the whole output" "$out/last.txt")" = 1 || fail "the note of finished runs' staging folders said more than once"
    "$py" - "$out/last.txt" "$q2/kept" <<'PY' >"$out/todo.sh" || fail "the note of several finished runs' staging folders does not give each its commands: $(cat "$out/last.txt")"
import re, shlex, sys
text = open(sys.argv[1]).read()
line = next(l for l in text.splitlines() if "hold the whole output" in l)
todo = re.findall(r"beside [^:]*: keep \((mv .*? NEWDIR && rm .*?)\) or remove \((rm -r .*?)\)(?:; |$)", line)
assert len(todo) == 2, todo
folders = {shlex.split(keep)[1] for keep, _ in todo}
assert len(folders) == 2, folders
print(todo[0][0].replace(" NEWDIR ", " " + shlex.quote(sys.argv[2]) + " "))
print(todo[1][1])
PY
    sh "$out/todo.sh" >/dev/null 2>&1 || fail "the note's commands failed for several folders: $(cat "$out/todo.sh")"
    test "$(cd "$q2" && ls -A | tr '\n' ' ')" = "kept x " || fail "after the note's commands for several folders: $(cd "$q2" && ls -A | tr '\n' ' ')"
    cmp "$q2/kept/cells.csv" "$o1/cells.csv" || fail "the kept output moved by the note's commands (several folders) differs"
    # a claim of a live run (locked) and the empty folder beside it stay, as does an empty
    # folder beside a claim that is not this host's mark
    mkdir "$out/liveclaim"
    printf '%s\n' "$(runmark "$dead" "other-$host")" >"$out/liveclaim/.x.crop-new.$dead-1.$host"
    mkdir "$out/liveclaim/.x.crop-tmp.$dead-1.$host"
    printf '%s\n' "$(runmark "$dead")" >"$out/liveclaim/.x.crop-new.$dead-2.$host"
    mkdir "$out/liveclaim/.x.crop-tmp.$dead-2.$host"
    : >"$out/liveclaim/.x.crop-tmp.$dead-2.$host/mine"
    printf '%s\n' "$(runmark "$dead")" >"$out/liveclaim/.x.crop-new.$dead.$host"
    mkdir "$out/liveclaim/.x.crop-tmp.$dead.$host"
    "$py" - "$out/liveclaim/.x.crop-new.$dead.$host" <<'PY' &
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
open(sys.argv[1] + ".locked", "w").close()
time.sleep(60)
PY
    locker=$!
    i=0
    while [ ! -e "$out/liveclaim/.x.crop-new.$dead.$host.locked" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
    rm -f "$out/liveclaim/.x.crop-new.$dead.$host.locked"
    expect 0 "wrote 4 crops" "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/liveclaim/x" --size 16
    kill "$locker" 2>/dev/null || :
    wait "$locker" 2>/dev/null || :
    test "$(cd "$out/liveclaim" && LC_ALL=C ls -A | tr '\n' ' ')" = ".x.crop-new.$dead-1.$host .x.crop-new.$dead-2.$host .x.crop-new.$dead.$host .x.crop-tmp.$dead-1.$host .x.crop-tmp.$dead-2.$host .x.crop-tmp.$dead.$host x " ||
        fail "beside claims of a live run, of another host and of a folder that is not empty: $(cd "$out/liveclaim" && ls -A | tr '\n' ' ')"
    test -e "$out/liveclaim/.x.crop-tmp.$dead-2.$host/mine" || fail "a file removed from a folder beside a claim"
    # DIR's parent there, but its stat fails with an I/O error (EIO injected): an error (status
    # 1) that says so, not the usage error 'PARENT exists and is not a directory' (status 2); the
    # existing parent is kept
    mkdir -p "$out/eio/a"
    expect 1 "^cfnet: error: --output: cannot create directory .*eio/a: Input/output error$" \
        env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o "$out/eio.strace" \
        -P "$out/eio/a" -e trace=%%stat -e inject=%%stat:error=EIO \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/eio/a/x" --size 16
    lacks "see 'cfnet crop --help'|is not a directory" "crop -o DIR whose parent cannot be reached (EIO): said as a usage error"
    test "$(ls -A "$out/eio" | tr '\n' ' ')" = "a " && test -z "$(ls -A "$out/eio/a")" ||
        fail "crop -o DIR whose parent cannot be reached left: $(ls -A "$out/eio") / $(ls -A "$out/eio/a")"
    # a run killed between the link and the unlink that move its mark back out (SIGKILL at its
    # first unlink): its folder is still marked, removed as a killed run's, and its claim with
    # it; not said first to hold a finished run's output (once, it was, then removed)
    mkdir "$out/linkkill"
    env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o /dev/null \
        -e trace=unlink,unlinkat -e inject=unlink,unlinkat:signal=KILL:when=1 \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/linkkill/x" --size 16 >/dev/null 2>&1 || :
    test -n "$(ls -A "$out/linkkill"/.x.crop-tmp.*/.cfnet-staging 2>/dev/null)" ||
        fail "a run killed at its first unlink left no marked staging folder: $(ls -A "$out/linkkill" | tr '\n' ' ')"
    expect 0 "removed 1 staging folder" "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/linkkill/x" --size 16
    lacks "holds the whole output" "a marked staging folder said to hold a finished run's output"
    test "$(ls -A "$out/linkkill")" = "x" || fail "beside a run killed between its mark's link and unlink: $(ls -A "$out/linkkill" | tr '\n' ' ')"
    # a file that takes the claim's name while the run works (the name is free while the mark is
    # in the staging folder; the mark's move back out and the folder's rename are delayed 3 s):
    # kept whole, never replaced by the mark and unlinked with it (once, the rename out did)
    mkdir "$out/takeclaim"
    env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o /dev/null \
        -e trace=link,linkat,rename,renameat,renameat2 -e inject=link:delay_enter=3000000 -e inject=linkat:delay_enter=3000000:when=2 \
        -e inject=rename,renameat,renameat2:delay_enter=3000000:when=2 \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/takeclaim/x" --size 16 >"$out/takeclaim.txt" 2>&1 &
    runner=$!
    i=0
    while [ -z "$(ls -A "$out/takeclaim"/.x.crop-tmp.*/.cfnet-staging 2>/dev/null)" ] && [ $i -lt 600 ]; do sleep 0.02; i=$((i + 1)); done
    tmpname=$(cd "$out/takeclaim" && ls -d .x.crop-tmp.* 2>/dev/null)
    echo mine >"$out/takeclaim/$(echo "$tmpname" | sed 's/crop-tmp/crop-new/')"
    wait "$runner" || fail "crop with its claim's name taken failed: $(cat "$out/takeclaim.txt")"
    cmp "$out/takeclaim/x/cells.csv" "$o1/cells.csv" || fail "the crop with its claim's name taken differs"
    test "$(cat "$out/takeclaim/$(echo "$tmpname" | sed 's/crop-tmp/crop-new/')" 2>/dev/null)" = mine ||
        fail "a file with the claim's name replaced or removed: $(ls -A "$out/takeclaim" | tr '\n' ' ')"
else
    skip_env test_cli_crop "a staging folder whose lock another process held" "no strace, or ptrace not allowed"
fi
# every cell near the border: no crops is an error
expect 1 "no crops: 5 cells too near the border" "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/bad2" --size 99
test -e "$out/bad2" && fail "a crop without crops left DIR"

# ---- fields read row by row: every TIFF layout and PNG gives the crops of the plain TIFF ----------
# crop reads the mask, then the field, a row (a row of tiles) at a time: strips of one row, one
# compressed strip for the whole field, tiles (compressed or not, big-endian, taller than the
# field, interleaved or planar), planar strips,
# 16-bit and interlaced PNG (read whole) give the bytes of a field of one uncompressed strip; a
# JPEG-compressed field (YCbCr or RGB) those of its decoding.
"$py" - "$out/lay" <<'PY'
import os, struct, sys, zlib, numpy as np, tifffile
o = sys.argv[1]
rng = np.random.default_rng(9)
H, W = 131, 97
m = np.zeros((H, W), np.uint16)
lab = 1
for cy in range(2, H, 17):
    for cx in range(1, W, 13):
        r = int(rng.integers(1, 6))
        m[max(cy - r, 0):cy + r, max(cx - r, 0):cx + r] = lab
        lab += 1
f = rng.integers(0, 65536, (3, H, W), dtype=np.uint16)
rgb = np.moveaxis(f, 0, -1)
def png(path, a):  # grey, Adam7-interlaced, written by hand (filter 0 on every row)
    bd = 16 if a.dtype == np.uint16 else 8
    raw = b""
    for y0, x0, dy, dx in [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2),
                           (0, 1, 2, 2), (1, 0, 2, 1)]:
        sub = a[y0::dy, x0::dx]
        for row in sub.astype(">u2" if bd == 16 else np.uint8):
            raw += b"\0" + row.tobytes()
    ch = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + ch(b"IHDR", struct.pack(">IIBBBBB", W, H, bd, 0, 0, 0, 1))
                           + ch(b"IDAT", zlib.compress(raw)) + ch(b"IEND", b""))
def put(name, field, mask, **kw):
    os.makedirs(os.path.join(o, name))
    if isinstance(field, str):
        png(os.path.join(o, name, "f.png"), f[0])
    else:
        tifffile.imwrite(os.path.join(o, name, "f.tif"), field, **kw)
    if isinstance(mask, str):
        png(os.path.join(o, name, "m.png"), m.astype(np.uint8))
    else:
        tifffile.imwrite(os.path.join(o, name, "m.tif"), mask, **({"tile": (32, 48), "compression": "zlib"} if kw else {}))
put("plain", f, m)
put("plain1", f[:1], m)
put("rows1", f, m, rowsperstrip=1)
put("onestrip", f, m, rowsperstrip=H, compression="zlib")
put("tiled", f, m, tile=(32, 16), compression="zlib")
put("tiledrgb", rgb, m, tile=(16, 16), photometric="rgb", planarconfig="contig", compression="zlib")
put("tiledraw", f, m, tile=(144, 32))  # uncompressed tiles taller than the field, read directly
put("tiledrawrgb", rgb, m, tile=(48, 16), photometric="rgb", planarconfig="contig", byteorder=">")
put("planar", f, m, photometric="rgb", planarconfig="separate", rowsperstrip=5, compression="zlib")
put("rgbrows", rgb, m, photometric="rgb", planarconfig="contig", rowsperstrip=7, compression="zlib")
put("png", "png", "png")
# JPEG-compressed 8-bit RGB (libtiff's JPEG codec through Pillow; tifffile needs imagecodecs):
# YCbCr, decoded to RGB by libjpeg, and RGB; each beside a plain TIFF of Pillow's decoding of it
from PIL import Image
rgb8 = (rgb >> 8).astype(np.uint8)
for name, im in (("jpegycc", Image.fromarray(rgb8).convert("YCbCr")), ("jpegrgb", Image.fromarray(rgb8))):
    os.makedirs(os.path.join(o, name))
    im.save(os.path.join(o, name, "f.tif"), compression="jpeg", quality=90)
    tifffile.imwrite(os.path.join(o, name, "m.tif"), m)
    back = Image.open(os.path.join(o, name, "f.tif"))
    assert back.tag_v2.get(259) == 7 and back.tag_v2.get(262) == (6 if name == "jpegycc" else 2)
    put(name + "ref", np.moveaxis(np.array(back.convert("RGB")), -1, 0), m)
PY
for lay in plain rows1 onestrip tiled tiledrgb tiledraw tiledrawrgb planar rgbrows png jpegycc jpegrgb; do
    one=plain
    field="$out/lay/$lay/f.tif" mask="$out/lay/$lay/m.tif"
    if [ $lay = png ]; then one=plain1 field="$out/lay/png/f.png" mask="$out/lay/png/m.png"; fi
    case $lay in jpeg*) one=${lay}ref ;; esac
    for opt in "--size 16" "--size 21 --pad --isolate"; do
        # shellcheck disable=SC2086
        expect 0 "" "$cfnet" crop "$field" "$mask" -o "$out/lay/c-$lay" -q $opt
        # shellcheck disable=SC2086
        [ -d "$out/lay/c-$one" ] || expect 0 "" "$cfnet" crop "$out/lay/$one/f.tif" "$out/lay/$one/m.tif" -o "$out/lay/c-$one" -q $opt
        for c in "$out/lay/c-$one"/f_*.tif; do
            cmp -s "$c" "$out/lay/c-$lay/${c##*/}" || fail "crop ${c##*/} of the $lay field ($opt) differs from the plain TIFF's"
        done
        test "$(ls "$out/lay/c-$lay" | wc -l)" = "$(ls "$out/lay/c-$one" | wc -l)" || fail "the $lay field ($opt) gave other crops than the plain TIFF"
        rm -rf "$out/lay/c-$lay" "$out/lay/c-$one"
    done
done
expect 0 "" "$cfnet" crop "$out/lay/plain/f.tif" "$out/lay/plain/m.tif" -o "$out/lay/c-p" --size 16 -q
test "$(wc -l <"$out/lay/c-p/cells.csv")" -gt 40 || fail "the layout field has too few cells"

# An interlaced PNG is read whole (libpng finishes a row only in the last of its seven passes):
# one of more than 2^28 values, as field or mask, is refused saying so and what to do about it.
# 16400 x 16400 zeros, 256 kB compressed.
"$py" - "$out/ilace" <<'PY'
import os, struct, sys, zlib, numpy as np, tifffile
o = sys.argv[1]
os.makedirs(o)
W = H = 16400
c, idat = zlib.compressobj(9), []
for y0, x0, dy, dx in [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2),
                       (0, 1, 2, 2), (1, 0, 2, 1)]:
    rows, cols = -(-(H - y0) // dy), -(-(W - x0) // dx)
    for k in range(0, rows, 64):
        idat.append(c.compress(b"\0" * ((1 + cols) * min(64, rows - k))))
idat.append(c.flush())
ch = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(o + "/big.png", "wb").write(b"\x89PNG\r\n\x1a\n" + ch(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 0, 0, 0, 1))
                                 + ch(b"IDAT", b"".join(idat)) + ch(b"IEND", b""))
tifffile.imwrite(o + "/m.tif", np.ones((20, 20), np.uint16))
tifffile.imwrite(o + "/f.tif", np.ones((20, 20), np.uint8))
PY
for p in "big.png m.tif" "f.tif big.png"; do
    set -- $p
    expect 1 "big.png: interlaced PNG too large: 16400x16400 with 1 channel \(limit 268435456 values; an interlaced PNG is read whole.*save it without interlacing" \
        "$cfnet" crop "$out/ilace/$1" "$out/ilace/$2" -o "$out/ilace/c"
    test ! -e "$out/ilace/c" || fail "crop of a too large interlaced PNG wrote $out/ilace/c"
done
rm -f "$out/ilace/big.png"

# ---- uncompressed strips read directly, and the files where that must not happen ----------------
# TIFFs written byte by byte: big-endian (classic and BigTIFF, strips of 8 rows: read directly and
# byte-swapped; of 7, the last one partial), FillOrder 2 (libtiff reverses the bits of every byte:
# the crops are those of the reversed field, as image_read reads it, read directly or not), a
# BigTIFF whose strips lie past 4 GiB (a sparse file), and strips whose offsets or byte counts lie
# (past the end of the file, shorter than their rows): refused naming the file, nothing written.
# The same for uncompressed tiles (read directly a tile row at a time since 0.2), whose last tile
# shorter than a tile is refused too although it holds the field's rows: libtiff refuses it.
"$py" - "$out/raw" <<'PY'
import os, struct, sys, numpy as np, tifffile
o = sys.argv[1]
os.makedirs(o)
H, W = 40, 30
rng = np.random.default_rng(3)
f8 = rng.integers(1, 256, (H, W), dtype=np.uint8)
f16 = rng.integers(1, 65536, (H, W), dtype=np.uint16)
m = np.zeros((H, W), np.uint16)
m[2:6, 3:7] = 1; m[18:24, 12:18] = 2; m[34:39, 24:29] = 3; m[0:3, 27:30] = 4
tifffile.imwrite(o + "/m.tif", m)
tifffile.imwrite(o + "/f8.tif", f8)
tifffile.imwrite(o + "/f16.tif", f16)
rev = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], np.uint8)
tifffile.imwrite(o + "/f8rev.tif", rev[f8])
def tiff(name, a, rps, be=False, big=False, extra=(), offs=None, cnts=None, at=0, tile=None):
    e, q = (">" if be else "<"), ("Q" if big else "I")
    strips = [a[y:y + rps].astype(a.dtype.newbyteorder(e)).tobytes() for y in range(0, H, rps or H)]
    if tile:  # tiles of th x tw, the edge ones padded with zeros
        th, tw = tile
        pad = np.zeros((-(-H // th) * th, -(-W // tw) * tw), a.dtype)
        pad[:H, :W] = a
        strips = [pad[y:y + th, x:x + tw].astype(a.dtype.newbyteorder(e)).tobytes()
                  for y in range(0, H, th) for x in range(0, W, tw)]
    head = 16 if big else 8
    start = at or head + 1024
    offs = offs or [start + sum(map(len, strips[:i])) for i in range(len(strips))]
    cnts = cnts or [len(s) for s in strips]
    where = ([(322, 4, [tile[1]]), (323, 4, [tile[0]]), (324, 16 if big else 4, offs),
              (325, 16 if big else 4, cnts)] if tile else
             [(273, 16 if big else 4, offs), (278, 4, [rps]), (279, 16 if big else 4, cnts)])
    tags = sorted([(256, 4, [W]), (257, 4, [H]), (258, 3, [a.itemsize * 8]), (259, 3, [1]),
                   (262, 3, [1]), (277, 3, [1])] + where + list(extra))
    fmt = {3: "H", 4: "I", 16: "Q"}
    ifd = bytearray(struct.pack(e + ("Q" if big else "H"), len(tags)))
    blob = bytearray()
    end = head + len(ifd) + (20 if big else 12) * len(tags) + (8 if big else 4)
    for tag, typ, vals in tags:
        raw = struct.pack(e + fmt[typ] * len(vals), *vals)
        if len(raw) > (8 if big else 4):
            raw, blob = struct.pack(e + q, end + len(blob)), blob + raw
        ifd += struct.pack(e + ("HHQ" if big else "HHI"), tag, typ, len(vals)) + raw.ljust(8 if big else 4, b"\0")
    ifd += b"\0" * (8 if big else 4) + blob
    with open(f"{o}/{name}.tif", "wb") as fh:
        fh.write((b"MM" if be else b"II") + (struct.pack(e + "HHHQ", 43, 8, 0, head) if big else struct.pack(e + "HI", 42, head)))
        fh.write(bytes(ifd))
        fh.seek(start)
        fh.write(b"".join(strips))
tiff("be8", f16, 8, be=True)
tiff("be7", f16, 7, be=True)
tiff("bigbe8", f16, 8, be=True, big=True)
tiff("fo2", f8, H, extra=[(266, 3, [2])])
tiff("fo2_7", f8, 7, extra=[(266, 3, [2])])
tiff("far", f16, 8, big=True, at=5 << 30)
tiff("offpast", f8, 8, offs=[2000, 2240, 2480, 10 ** 6, 2960])
tiff("cntpast", f8, 8, cnts=[240, 240, 240, 240, 10 ** 6])
tiff("cntshort", f8, 8, cnts=[240, 240, 100, 240, 240])
tiff("tbe", f16, 0, be=True, tile=(48, 16))  # 2 tiles, taller than the field: read directly
tiff("tbigbe", f16, 0, be=True, big=True, tile=(16, 16))
tiff("tfar", f16, 0, big=True, at=5 << 30, tile=(48, 16))
tiff("todd", f16, 0, be=True, tile=(7, 11))  # not multiples of 16 (libtiff warns), edge tiles both ways
tiff("tfo2", f8, 0, extra=[(266, 3, [2])], tile=(48, 16))
tiff("toffpast", f8, 0, offs=[2000, 10 ** 6], tile=(48, 16))  # tiles of 768 bytes
tiff("tcntpast", f8, 0, cnts=[768, 10 ** 6], tile=(48, 16))
tiff("tcntshort", f8, 0, cnts=[768, 600], tile=(48, 16))  # its rows are there, libtiff wants all
PY
for p in "f16 be8" "f16 be7" "f16 bigbe8" "f16 far" "f8rev fo2" "f8rev fo2_7" "f16 tbe" \
    "f16 tbigbe" "f16 tfar" "f16 todd" "f8rev tfo2"; do
    set -- $p
    for f in "$1" "$2"; do
        rm -rf "$out/raw/c-$f"
        expect 0 "" "$cfnet" crop "$out/raw/$f.tif" "$out/raw/m.tif" -o "$out/raw/c-$f" -q --size 8 --pad
    done
    for c in "$out/raw/c-$1"/"$1"_*.tif; do
        lab=${c##*_}
        cmp -s "$c" "$out/raw/c-$2/$2_$lab" || fail "crop $lab of $2.tif differs from $1.tif's"
    done
done
rm -f "$out/raw/far.tif" "$out/raw/tfar.tif" # 5 GiB, sparse
for f in offpast cntpast cntshort toffpast tcntpast tcntshort; do
    expect 1 "raw/$f.tif: (truncated|invalid) TIFF.*(file ends|Not enough data)" \
        "$cfnet" crop "$out/raw/$f.tif" "$out/raw/m.tif" -o "$out/raw/c-$f" --size 8 --pad
    test ! -e "$out/raw/c-$f" || fail "crop of $f.tif wrote $out/raw/c-$f"
done

# ---- headers whose sizes multiply past any buffer ---------------------------------------------------
# Hand-made headers (files of a few KB): compressed (deflate) tiles 16 wide and 2^31 rows tall
# for a 4096 x (2^31 - 1) image, whose row of tiles crop held decoded (2^43 bytes: it said "out of
# memory"; a product that wraps where size_t is 32 bits gave a small buffer that the rows overran),
# and 3-sample tiles of 4096 x 2^31 on an image 2^31 - 1 wide. Refused, naming the file, as a
# field and as a mask; nothing written.
mkdir -p "$out/hdr"
"$py" - "$out/hdr" <<'PY'
import struct, sys, zlib
d = sys.argv[1]
z = zlib.compress(b"\0" * 64)
def tiled(name, W, H, tw, th, spp):
    n = -(-W // tw) if W < 2**20 else 1  # tiles across (one offset is enough to be refused)
    tags = sorted([(256, 4, [W]), (257, 4, [H]), (258, 3, [8] * spp), (259, 3, [8]), (262, 3, [1]),
                   (277, 3, [spp]), (322, 4, [tw]), (323, 4, [th]), (324, 4, [0] * n),
                   (325, 4, [len(z)] * n)])
    end = 8 + 2 + 12 * len(tags) + 4
    data_at = end + (2 * spp if spp > 2 else 0) + (8 * n if n > 1 else 0)
    tags = [(t, ty, [data_at] * n if t == 324 else v) for t, ty, v in tags]
    fmt = {3: "H", 4: "I"}
    ifd, blob = bytearray(struct.pack("<H", len(tags))), bytearray()
    for tag, typ, vals in tags:
        raw = struct.pack("<" + fmt[typ] * len(vals), *vals)
        if len(raw) > 4:
            raw, blob = struct.pack("<I", end + len(blob)), blob + raw
        ifd += struct.pack("<HHI", tag, typ, len(vals)) + raw.ljust(4, b"\0")
    head = b"II" + struct.pack("<HI", 42, 8) + bytes(ifd) + b"\0" * 4 + bytes(blob)
    assert len(head) == data_at, (len(head), data_at)
    open(f"{d}/{name}.tif", "wb").write(head + z)
tiled("tall", 4096, 2**31 - 1, 16, 2**31, 1)
tiled("wide", 2**31 - 1, 2**31 - 1, 4096, 2**31, 3)
tiled("tall3", 4096, 2**31 - 1, 16, 2**31, 3)
PY
for f in tall wide tall3; do
    expect 1 "hdr/$f.tif: (compressed TIFF tiles too large|invalid TIFF|image too large)" \
        "$cfnet" crop "$out/hdr/$f.tif" "$out/raw/m.tif" -o "$out/hdr/c-$f" --size 8
    expect 1 "hdr/$f.tif: (compressed TIFF tiles too large|invalid TIFF|not a label mask|image too large)" \
        "$cfnet" crop "$out/raw/f8rev.tif" "$out/hdr/$f.tif" -o "$out/hdr/c-$f" --size 8
    test ! -e "$out/hdr/c-$f" || fail "crop of $f.tif wrote $out/hdr/c-$f"
done
expect 1 "hdr/tall.tif: compressed TIFF tiles too large on page 1: 16x2147483648 tiles of 1 sample for a 4096x2147483647 image" \
    "$cfnet" crop "$out/hdr/tall.tif" "$out/raw/m.tif" -o "$out/hdr/c" --size 8
expect 1 "hdr/tall.tif: compressed TIFF tiles too large on page 1" \
    "$cfnet" crop "$out/raw/f8rev.tif" "$out/hdr/tall.tif" -o "$out/hdr/c" --size 8

# ... but a legitimate field in large compressed tiles is cropped: 1024 x 1024 tiles of an 8-bit
# RGB field 87400 wide (a row of tiles of 268 M values, 268 MB: refused when the limit counted
# values, 2^28, not the bytes held, 2^30), its mask in 256 x 256 tiles; tiles of one deflate
# stream each (a file of a few KB). 1024-row tiles 350000 wide (1.07 GB a row) are refused.
"$py" - "$out/hdr" <<'PY'
import struct, sys, zlib
d = sys.argv[1]
def tiled(name, W, H, t, spp, first):
    n = -(-W // t) * -(-H // t)
    zero = zlib.compress(bytes(t * t * spp))
    one = zlib.compress(first(t)) if first else zero
    tags = sorted([(256, 4, [W]), (257, 4, [H]), (258, 3, [8] * spp), (259, 3, [8]),
                   (262, 3, [2 if spp == 3 else 1]), (277, 3, [spp]), (284, 3, [1]),
                   (322, 4, [t]), (323, 4, [t]), (324, 4, [0] * n), (325, 4, [0] * n)])
    end = 8 + 2 + 12 * len(tags) + 4
    data_at = end + (2 * spp if spp > 2 else 0) + (8 * n if n > 1 else 0)
    offs, cnts = [data_at] + [data_at + len(one)] * (n - 1), [len(one)] + [len(zero)] * (n - 1)
    tags = [(g, ty, offs if g == 324 else cnts if g == 325 else v) for g, ty, v in tags]
    fmt = {3: "H", 4: "I"}
    ifd, blob = bytearray(struct.pack("<H", len(tags))), bytearray()
    for tag, typ, vals in tags:
        raw = struct.pack("<" + fmt[typ] * len(vals), *vals)
        if len(raw) > 4:
            raw, blob = struct.pack("<I", end + len(blob)), blob + raw
        ifd += struct.pack("<HHI", tag, typ, len(vals)) + raw.ljust(4, b"\0")
    head = b"II" + struct.pack("<HI", 42, 8) + bytes(ifd) + b"\0" * 4 + bytes(blob)
    assert len(head) == data_at, (len(head), data_at)
    open(f"{d}/{name}.tif", "wb").write(head + one + zero)
def cell(t):  # label 1 in rows and columns 40..59 of the first tile
    return b"".join(b"\0" * 40 + (b"\1" * 20 if 40 <= y < 60 else b"\0" * 20) + b"\0" * (t - 60)
                    for y in range(t))
tiled("big1024", 87400, 1024, 1024, 3, None)
tiled("bigm", 87400, 1024, 256, 1, cell)
tiled("huge1024", 350000, 1024, 1024, 3, None)
tiled("hugem", 350000, 1024, 256, 1, cell)
PY
expect 0 "wrote 1 crop \\(16x16\\) of 1 field" "$cfnet" crop "$out/hdr/big1024.tif" "$out/hdr/bigm.tif" -o "$out/hdr/cbig" --size 16
test "$(ls "$out/hdr/cbig" | tr '\n' ' ')" = "big1024_1.tif cells.csv " || fail "crop of 1024-row tiles: $(ls "$out/hdr/cbig" | tr '\n' ' ')"
expect 1 "hdr/huge1024.tif: compressed TIFF tiles too large on page 1: 1024x1024 tiles of 3 samples for a 350000x1024 image, a row of them 1075200000 bytes decoded at once \\(limit 1073741824\\)" \
    "$cfnet" crop "$out/hdr/huge1024.tif" "$out/hdr/hugem.tif" -o "$out/hdr/chuge" --size 16
test ! -e "$out/hdr/chuge" || fail "crop of huge1024.tif wrote $out/hdr/chuge"

# ---- memory that follows the crop size and the field's width, not its area ------------------------
# A 3 x 6000 x 6000 8-bit field and its mask (108 M values; 576 MB as floats and 32-bit labels,
# which crop held whole before) crop under a 150 MB address-space limit. The field is
# uncompressed, one strip per channel, as tifffile writes it: libtiff would hold each 36 MB strip
# whole (crop reads such strips a row at a time); the mask is in compressed strips. So is a field in
# strips of 5999 rows, its last strip of one row (such strips were left to libtiff, held whole),
# and a 16-bit one in uncompressed tiles of 6000 x 512 (a row of them held whole before).
# Not under the sanitizers, which reserve more address space than that.
case "${CFNET_SANITIZE:-}:${CFNET_BUILD:-build/default}" in
:*san*) plain=0 ;;
:*) plain=1 ;;
*) plain=0 ;;
esac
if [ "$plain" = 1 ]; then
    "$py" - "$out" <<'PY'
import sys, numpy as np, tifffile
o = sys.argv[1]
f = np.zeros((3, 6000, 6000), np.uint8)
m = np.zeros((6000, 6000), np.uint16)
for i, (y, x) in enumerate([(100, 100), (3000, 2000), (5900, 5950), (4000, 5000)]):
    f[:, y - 5:y + 5, x - 5:x + 5] = (10 * (i + 1) + np.arange(3))[:, None, None]
    m[y - 5:y + 5, x - 5:x + 5] = i + 1
tifffile.imwrite(o + "/bigf.tif", f)
tifffile.imwrite(o + "/bigm.tif", m, compression="zlib", rowsperstrip=64)
tifffile.imwrite(o + "/bigf2.tif", f, rowsperstrip=5999) # each page a strip of 5999 rows and one of 1
PY
    expect 0 "wrote 4 crops \(32x32\) of 1 field to .*; 0 cells too near the border left out" \
        sh -c 'ulimit -v 153600 && exec "$0" "$@"' "$cfnet" crop "$out/bigf.tif" "$out/bigm.tif" -o "$out/cbig" --size 32
    expect 0 "wrote 4 crops" \
        sh -c 'ulimit -v 153600 && exec "$0" "$@"' "$cfnet" crop "$out/bigf2.tif" "$out/bigm.tif" -o "$out/cbig2" --size 32
    for c in "$out/cbig"/bigf_*.tif; do
        cmp -s "$c" "$out/cbig2/bigf2_${c##*_}" || fail "crop ${c##*/} of the field in strips of 5999 rows differs"
    done
    rm -f "$out/bigf2.tif"
    # a 16-bit field in uncompressed tiles as tall as the field (6000 x 512): a row of tiles is
    # the whole field, 216 MB, which crop held before it read such tiles a row at a time
    "$py" - "$out" <<'PY'
import sys, numpy as np, tifffile
o = sys.argv[1]
f = tifffile.imread(o + "/bigf.tif").astype(np.uint16) * 257
tifffile.imwrite(o + "/bigft.tif", f, tile=(6000, 512))
PY
    expect 0 "wrote 4 crops" \
        sh -c 'ulimit -v 153600 && exec "$0" "$@"' "$cfnet" crop "$out/bigft.tif" "$out/bigm.tif" -o "$out/cbigt" --size 32
    rm -f "$out/bigft.tif"
    "$py" - "$out/cbigt" <<'PY' || fail "the crops of the 3 x 6000 x 6000 field in tall tiles are wrong"
import sys, numpy as np, tifffile
d = sys.argv[1]
for lab in (1, 2, 3, 4):
    a = tifffile.imread(f"{d}/bigft_{lab}.tif")
    assert a.shape == (3, 32, 32) and a.dtype == np.uint16, (a.shape, a.dtype)
    for c in range(3):
        assert (a[c] == 257 * (10 * lab + c)).sum() == 100 and a[c].max() == 257 * (10 * lab + c), (lab, c)
PY
    "$py" - "$out/cbig" <<'PY' || fail "the crops of the 3 x 6000 x 6000 field are wrong"
import sys, numpy as np, tifffile
d = sys.argv[1]
for lab in (1, 2, 3, 4):
    a = tifffile.imread(f"{d}/bigf_{lab}.tif")
    assert a.shape == (3, 32, 32), a.shape
    for c in range(3):
        assert (a[c] == 10 * lab + c).sum() == 100 and a[c].max() == 10 * lab + c, (lab, c)
PY
fi

# --isolate reads the mask twice; a mask replaced between the two reads by a wider one is refused
# (its rows overran the band of mask rows). A preloaded shim opens the wide mask the second time.
# Not under the sanitizers, whose runtime must come first among the preloaded libraries.
if [ "$plain" = 1 ] && command -v "${CC:-cc}" >/dev/null 2>&1; then
    "$py" - "$out" <<'PY'
import sys, numpy as np, tifffile
o = sys.argv[1]
f = np.zeros((20, 20), np.uint8); f[5:15, 5:15] = 7
m = np.zeros((20, 20), np.uint16); m[5:15, 5:15] = 1
w = np.ones((20, 4000), np.uint16)
tifffile.imwrite(o + "/swf.tif", f)
tifffile.imwrite(o + "/swm.tif", m)
tifffile.imwrite(o + "/swwide.tif", w)
PY
    cat >"$out/swshim.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
static int seen;
static const char *swap(const char *p)
{
    const char *m = getenv("SW_MASK"), *w = getenv("SW_WIDE");
    if (m && w && strcmp(p, m) == 0 && seen++ > 0) return w;
    return p;
}
typedef int (*open_fn)(const char *, int, ...);
int open(const char *p, int fl, ...)
{
    va_list ap;
    va_start(ap, fl);
    int mode = va_arg(ap, int);
    va_end(ap);
    return ((open_fn)dlsym(RTLD_NEXT, "open"))(swap(p), fl, mode);
}
int open64(const char *p, int fl, ...)
{
    va_list ap;
    va_start(ap, fl);
    int mode = va_arg(ap, int);
    va_end(ap);
    return ((open_fn)dlsym(RTLD_NEXT, "open64"))(swap(p), fl, mode);
}
EOF
    "${CC:-cc}" -shared -fPIC -o "$out/swshim.so" "$out/swshim.c" -ldl
    expect 1 "swm.tif: changed while crop read it \(20x20, then 4000x20\)" \
        env LD_PRELOAD="$out/swshim.so" SW_MASK="$out/swm.tif" SW_WIDE="$out/swwide.tif" \
        "$cfnet" crop "$out/swf.tif" "$out/swm.tif" -o "$out/csw" --size 16 --isolate
    [ -e "$out/csw" ] && fail "crop of a mask replaced between its reads left $out/csw"
    expect 0 "wrote 1 crop" env LD_PRELOAD="$out/swshim.so" SW_MASK="$out/swm.tif" \
        SW_WIDE="$out/swwide.tif" "$cfnet" crop "$out/swf.tif" "$out/swm.tif" -o "$out/csw2" --size 16
else
    skip_env test_cli_crop "the mask replaced between crop's two reads" "a sanitizer build, or no C compiler"
fi

# ---- a write that fails: a file size limit, as a full disk --------------------------------------
# A one-page TIFF smaller than libtiff's strip was written only by TIFFClose, which cannot say it
# failed: crop and synth reported success over cut-off files, and libtiff printed its own lines.
limited() { (trap '' XFSZ; ulimit -f 1; exec "$@"); }
expect 1 "writing .*/f8_[0-9]+\.tif failed: .*Write error.*\(File too large\) \(writing the crop of cell" \
    limited "$cfnet" crop "$out/f8.tif" "$out/m32.tif" -o "$out/climit" --size 48
lacks "^TIFF" "libtiff's own messages printed by crop under a size limit"
[ ! -e "$out/climit" ] || fail "crop under a size limit left $out/climit"
ls -a "$out" | grep -q "climit.crop-tmp" && fail "crop under a size limit left its staging folder"
expect 1 "writing .*0000\.tif failed: .*\(File too large\)" \
    limited "$cfnet" synth "$out/slimit" --classes 2 --per-class 1 --test-per-class 0 --channels 1
lacks "^TIFF|wrote" "synth under a size limit said libtiff's lines or that it wrote"
grep -q "nothing written to .*/slimit" "$out/last.txt" || fail "synth under a size limit did not say it wrote nothing"
# synth writes DIR whole or not at all: a failure midway (the 42 kB field written, its 85 kB mask
# cut off at 51 kB) leaves no DIR, no staging folder, none of the folders made on the way to
# DIR; an existing empty DIR stays empty (a partial dataset was left that train read)
limited100() { (trap '' XFSZ; ulimit -f 100; exec "$@"); }
mkdir "$out/smid"
expect 1 "writing .*field_000_mask\.tif failed: .*\(File too large\)" limited100 "$cfnet" synth \
    "$out/smid/new1/new2/d" --fields 4 --classes 2 --per-class 8 --test-per-class 0 --bits 8 --channels 1
grep -q "nothing written to .*/smid/new1/new2/d" "$out/last.txt" || fail "synth failed midway and did not say it wrote nothing"
test "$(ls -A "$out/smid")" = "" || fail "synth failed midway and left $(ls -A "$out/smid" | tr '\n' ' ')in DIR's folder"
mkdir "$out/smid/e"
expect 1 "field_000_mask\.tif failed" limited100 "$cfnet" synth "$out/smid/e" --fields 4 --classes 2 \
    --per-class 8 --test-per-class 0 --bits 8 --channels 1
test "$(ls -A "$out/smid" | tr '\n' ' ')" = "e " || fail "synth failed midway and left $(ls -A "$out/smid" | tr '\n' ' ')"
test -z "$(ls -A "$out/smid/e")" || fail "synth failed midway and wrote into the empty DIR"
# success: the same files as a new DIR, into an existing empty DIR (its mode kept) or through a
# link to one; staging folders that killed synth runs of this host left (a dead process's, with
# the dataset's folders in them) are removed, one holding anything but folders and files stays
expect 0 "wrote 4 fields of view" "$cfnet" synth "$out/smid/e" --fields 4 --classes 2 --per-class 8 \
    --test-per-class 0 --bits 8 --channels 1
mkdir "$out/smid/e2" && chmod 2750 "$out/smid/e2"
mkdir "$out/smid/e3" && ln -s e3 "$out/smid/l3"
shost=$("$py" -c 'import socket; print(socket.gethostname())')
sdead=$(sh -c 'echo $$')
for s in "" -2 -3; do
    mkdir -p "$out/smid/.st.synth-tmp.$sdead$s.$shost/train/class00" && printf '%s\n' "$(runmark "$sdead" "$shost")" >"$out/smid/.st.synth-tmp.$sdead$s.$shost/.cfnet-staging"
done
: >"$out/smid/.st.synth-tmp.$sdead.$shost/train/class00/0000.tif"
ln -s / "$out/smid/.st.synth-tmp.$sdead-3.$shost/train/class00/root"
for t in e2 l3 st; do
    expect 0 "wrote 4 fields of view" "$cfnet" synth "$out/smid/$t" --fields 4 --classes 2 \
        --per-class 8 --test-per-class 0 --bits 8 --channels 1
done
grep -q "removed 2 staging folders (.st.synth-tmp.\*) that killed runs left" "$out/last.txt" ||
    fail "synth did not remove the staging folders of a killed run: $(cat "$out/last.txt")"
test "$(cd "$out/smid" && LC_ALL=C ls -A | tr '\n' ' ')" = ".st.synth-tmp.$sdead-3.$shost e e2 e3 l3 st " ||
    fail "synth left or removed: $(cd "$out/smid" && ls -A | tr '\n' ' ')"
test -L "$out/smid/.st.synth-tmp.$sdead-3.$shost/train/class00/root" || fail "a staging folder holding a link was emptied"
test "$(stat -c %a "$out/smid/e2")" = 2750 || fail "synth did not keep DIR's mode: $(stat -c %a "$out/smid/e2")"
test -L "$out/smid/l3" || fail "synth replaced the link to DIR"
test -e "$out/smid/st/.cfnet-staging" && fail "synth's DIR holds the staging folder's mark"
for t in e2 e3 st; do
    diff -r "$out/smid/e" "$out/smid/$t" >/dev/null || fail "synth into $t wrote other files than into e"
done
# refused before anything is written: the current folder under another name than '.' (it
# was replaced, the shell left in a removed folder) and a link to nothing (refused only after
# the whole dataset was written, "cannot move the dataset into place: Not a directory")
acfnet=$(cd "$(dirname "$cfnet")" && pwd)/$(basename "$cfnet")
mkdir "$out/smid/cw"
for d in "$(cd "$out/smid/cw" && pwd)" ../cw; do
    set +e
    (cd "$out/smid/cw" && exec "$acfnet" synth "$d" --classes 2 --per-class 1 --test-per-class 0 \
        --channels 1) >"$out/last.txt" 2>&1
    got=$?
    set -e
    [ "$got" = 1 ] && grep -q "is the current folder, which the new folder would replace" "$out/last.txt" ||
        fail "synth $d from inside it: exit $got, $(cat "$out/last.txt")"
    test -z "$(ls -A "$out/smid/cw")" || fail "synth $d wrote into the current folder"
done
ln -s nowhere "$out/smid/dangling"
expect 1 "dangling is a link to a folder that does not exist" "$cfnet" synth "$out/smid/dangling" \
    --classes 2 --per-class 1 --test-per-class 0 --channels 1
lacks "move|nothing written" "synth into a link to nothing wrote the dataset before refusing it"
ls -a "$out/smid" | grep -q "dangling.synth-tmp" && fail "synth into a link to nothing left its staging folder"
# DIR a link in a loop of links: said as such (it was "a link to a folder that does not exist"),
# an error (status 1) as synth's other refusals of DIR, before anything is written
ln -s sloopb "$out/smid/sloopa"
ln -s sloopa "$out/smid/sloopb"
expect 1 "^cfnet: error: $out/smid/sloopa is a link that leads into a loop of links \(make it a link to a folder, or give another DIR\)$" \
    "$cfnet" synth "$out/smid/sloopa" --classes 2 --per-class 1 --test-per-class 0 --channels 1
lacks "does not exist|move|nothing written" "synth into a loop of links said as a link to nothing, or wrote the dataset"
for f in "$out"/smid/.sloopa.synth-*; do
    if [ -e "$f" ]; then fail "synth into a loop of links left $f"; fi
done
rm "$out/smid/sloopa" "$out/smid/sloopb"
# DIR reached through a loop of links further up (loopa/sub, loopa/sub/deeper), and an input
# given through one: that link named (it was "Too many levels of symbolic links"), before
# anything is written
ln -s dloopb "$out/smid/dloopa"
ln -s dloopa "$out/smid/dloopb"
for sub in sub sub/deeper; do
    expect 1 "^cfnet: error: $out/smid/dloopa/$sub: cannot be reached: $out/smid/dloopa is a symbolic link to a loop of links \(-> dloopb\)$" \
        "$cfnet" synth "$out/smid/dloopa/$sub" --classes 2 --per-class 1 --test-per-class 0 --channels 1
    lacks "Too many levels" "synth into dloopa/$sub"
    expect 2 "^cfnet crop: --output: $out/smid/dloopa/$sub: cannot be reached: $out/smid/dloopa is a symbolic link to a loop of links \(-> dloopb\)$" \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/smid/dloopa/$sub" --size 16
    usage_said crop "crop -o dloopa/$sub"
    lacks "Too many levels" "crop -o dloopa/$sub"
done
expect 1 "$out/smid/dloopa/f16.tif: .*$out/smid/dloopa is a symbolic link to a loop of links \(-> dloopb\)" \
    "$cfnet" crop "$out/smid/dloopa/f16.tif" "$out/m32.tif" -o "$out/smid/dlo" --size 16
lacks "Too many levels" "crop of an image given through a loop of links"
test -e "$out/smid/dlo" && fail "crop of an image given through a loop of links made its DIR"
rm "$out/smid/dloopa" "$out/smid/dloopb"
# ... and through a link to nothing further up: that link named, with its target (an image: it
# was "No such file or directory"; DIR: said so already)
ln -s dnowhere "$out/smid/dz"
expect 1 "$out/smid/dz/f16.tif: cannot open: $out/smid/dz is a symbolic link to a missing target \(-> dnowhere\)" \
    "$cfnet" crop "$out/smid/dz/f16.tif" "$out/m32.tif" -o "$out/smid/dzo" --size 16
lacks "No such file" "crop of an image given through a link to nothing"
test -e "$out/smid/dzo" && fail "crop of an image given through a link to nothing made its DIR"
for sub in sub sub/deeper; do
    expect 2 "^cfnet crop: --output: .*$out/smid/dz is a symbolic link to a missing target \(-> dnowhere\)$" \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/smid/dz/$sub" --size 16
    expect 1 "^cfnet: error: .*$out/smid/dz is a symbolic link to a missing target \(-> dnowhere\)$" \
        "$cfnet" synth "$out/smid/dz/$sub" --classes 2 --per-class 1 --test-per-class 0 --channels 1
done
test -e "$out/smid/dnowhere" && fail "crop or synth through a link to nothing made its target"
rm "$out/smid/dz"
# DIR a link to a folder, or a folder through such a link, on a way the user may not search:
# "permission denied", with the link (it was "a link to a folder that does not exist"); as
# another user when run as root (root may search anywhere)
asother=env
if [ "$(id -u)" = 0 ]; then
    asother=""
    command -v setpriv >/dev/null 2>&1 &&
        setpriv --reuid=65534 --regid=65534 --clear-groups "$cfnet" --version >/dev/null 2>&1 &&
        setpriv --reuid=65534 --regid=65534 --clear-groups ls "$out/smid" >/dev/null 2>&1 &&
        asother="setpriv --reuid=65534 --regid=65534 --clear-groups"
fi
if [ -n "$asother" ]; then
    mkdir -p "$out/smid/priv/x"
    chmod 000 "$out/smid/priv"
    ln -s priv/x "$out/smid/plink"
    # shellcheck disable=SC2086
    expect 1 "^cfnet: error: $out/smid/plink is a link to a folder that cannot be reached: permission denied \(make its way searchable, or give another DIR\)$" \
        $asother "$cfnet" synth "$out/smid/plink" --classes 2 --per-class 1 --test-per-class 0 --channels 1
    lacks "does not exist" "synth into a link to a folder that cannot be reached"
    # shellcheck disable=SC2086
    expect 1 "^cfnet: error: $out/smid/plink/sub: cannot be reached: $out/smid/plink is a symbolic link to a target that cannot be reached: permission denied \(-> priv/x\)$" \
        $asother "$cfnet" synth "$out/smid/plink/sub" --classes 2 --per-class 1 --test-per-class 0 --channels 1
    lacks "does not exist" "synth into a folder through a link to a folder that cannot be reached"
    chmod 755 "$out/smid/priv"
    test -z "$(ls -A "$out/smid/priv/x")" || fail "synth through a link it may not follow wrote there"
    rm -r "$out/smid/plink" "$out/smid/priv"
else
    skip_env test_cli_crop "synth into a link to a folder without search permission" "running as root, and no other user to run as that reaches the build (setpriv)"
fi
# an empty mount point (a volume; a bind mount of the same file system) is refused before
# anything is written: rename(2) cannot replace it ("cannot move the dataset into place: Device
# or resource busy" after the whole dataset); mounts made in a mount namespace of their own
if unshare -m true 2>/dev/null; then
    mkdir "$out/smid/mp" "$out/smid/mp2" "$out/smid/bsrc"
    set +e
    unshare -m sh -c 'mount -t tmpfs none "$1/mp" && mount --bind "$1/bsrc" "$1/mp2" || exit 9
        for d in mp mp2/; do "$2" synth "$1/$d" --classes 2 --per-class 1 --test-per-class 0 \
            --channels 1; echo "status $?"; ls -A "$1/$d"; done' sh "$out/smid" "$cfnet" >"$out/last.txt" 2>&1
    set -e
    n=$(grep -c "is a mount point, which the new folder cannot replace" "$out/last.txt" || :)
    [ "$n" = 2 ] && [ "$(grep -c "^status 1$" "$out/last.txt")" = 2 ] ||
        fail "synth into an empty mount point: $(cat "$out/last.txt")"
    lacks "move|^train" "synth into an empty mount point wrote the dataset before refusing it"
    ls -a "$out/smid" | grep -Eq "^\.mp2?\.synth-tmp" && fail "synth into a mount point left a staging folder"
    # a full disk (a tmpfs filled up): the staging folder is made but its mark cannot be
    # written (ENOSPC): refused, and neither the staging folder nor the new folders on the way
    # to DIR are left
    mkdir "$out/smid/full"
    set +e
    unshare -m sh -c 'mount -t tmpfs -o size=64k none "$1" || exit 9
        dd if=/dev/zero of="$1/fill" bs=4k 2>/dev/null; "$2" crop "$3" "$4" -o "$1/new/x" --size 16
        echo "status $?"; ls -A "$1"' sh "$out/smid/full" "$cfnet" "$out/f16.tif" "$out/m32.tif" >"$out/last.txt" 2>&1
    set -e
    # the machine's fault, not the name given: an error (status 1), not a usage error (it was
    # 'cfnet crop: ...', the pointer to --help and status 2)
    grep -q "^cfnet: error: --output: cannot make .*\.x\.crop-tmp\..*: No space left on device" "$out/last.txt" &&
        grep -q "^status 1$" "$out/last.txt" && ! grep -q "see 'cfnet crop --help'" "$out/last.txt" &&
        test "$(tail -n 1 "$out/last.txt")" = fill ||
        fail "crop onto a full disk: $(cat "$out/last.txt")"
    # -o's parent on a read-only file system (EROFS): the same, for the folders made on the way
    mkdir "$out/smid/rofs"
    set +e
    unshare -m sh -c 'mount -t tmpfs -o ro none "$1" || exit 9
        "$2" crop "$3" "$4" -o "$1/new/x" --size 16; echo "status $?"
        "$2" crop "$3" "$4" -o "$1/y" --size 16; echo "status $?"' sh "$out/smid/rofs" "$cfnet" \
        "$out/f16.tif" "$out/m32.tif" >"$out/last.txt" 2>&1
    set -e
    [ "$(grep -c "^status 1$" "$out/last.txt")" = 2 ] &&
        grep -q "^cfnet: error: --output: cannot create directory .*rofs/new: Read-only file system$" "$out/last.txt" &&
        grep -q "^cfnet: error: --output: cannot make .*\.y\.crop-tmp\..*: Read-only file system$" "$out/last.txt" &&
        ! grep -q "see 'cfnet crop --help'" "$out/last.txt" ||
        fail "crop onto a read-only file system: $(cat "$out/last.txt")"
else
    skip_env test_cli_crop "synth into a mount point" "no mount namespace: not root"
fi
# a new DIR in a setgid folder of a group the user is not in: DIR keeps the setgid bit it takes
# from the folder (clearing the staging folder's sticky bit with chmod(2) dropped it)
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1 &&
    setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$cfnet"; then
    mkdir "$out/sgid" && chgrp 0 "$out/sgid" && chmod 2777 "$out/sgid"
    expect 0 "wrote 4 fields of view" setpriv --reuid=65534 --regid=65534 --clear-groups \
        "$cfnet" synth "$out/sgid/d" --fields 4 --classes 2 --per-class 8 --test-per-class 0 --bits 8 --channels 1
    expect 0 "wrote" setpriv --reuid=65534 --regid=65534 --clear-groups \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/sgid/c" --size 16
    for t in d c; do
        test -g "$out/sgid/$t" && test ! -k "$out/sgid/$t" ||
            fail "a new DIR in a setgid folder of another group: mode $(stat -c %a "$out/sgid/$t")"
    done
    # an empty DIR of the user's without write permission (mode 0555): the staging folder takes
    # that mode before the rename, and the mark in it was unlinked after ("cannot move the crops
    # into place: Permission denied", the crops left in the staging folder)
    mkdir "$out/ro555" "$out/ro555/c" "$out/ro555/s" && chown -R 65534:65534 "$out/ro555" &&
        chmod 555 "$out/ro555/c" "$out/ro555/s"
    expect 0 "wrote 4 crops" setpriv --reuid=65534 --regid=65534 --clear-groups \
        "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/ro555/c" --size 16
    expect 0 "wrote" setpriv --reuid=65534 --regid=65534 --clear-groups \
        "$cfnet" synth "$out/ro555/s" --classes 2 --per-class 2 --test-per-class 0 --channels 1
    cmp "$out/ro555/c/cells.csv" "$o1/cells.csv" || fail "the crop into a DIR of mode 0555 differs"
    test "$(stat -c %a "$out/ro555/c") $(stat -c %a "$out/ro555/s")" = "555 555" ||
        fail "DIR of mode 0555: $(stat -c %a "$out/ro555/c") $(stat -c %a "$out/ro555/s")"
    test "$(ls -A "$out/ro555" | tr '\n' ' ')" = "c s " || fail "left beside a DIR of mode 0555: $(ls -A "$out/ro555" | tr '\n' ' ')"
    ls -A "$out/ro555/c" "$out/ro555/s" | grep -q cfnet-staging && fail "a DIR of mode 0555 holds the staging mark"
    # ... and a run whose rename fails there (another run wrote DIR first: ENOTEMPTY injected)
    # removes its staging folder, which had taken the mode 0555 (its files were left in it)
    # (the first rename is the claim's, moved into the staging folder as its mark; the mark goes
    # back out to the claim's name by a link: the second fails)
    if command -v strace >/dev/null 2>&1 && strace -o /dev/null true 2>/dev/null; then
        mkdir "$out/ro555/r" && chown 65534:65534 "$out/ro555/r" && chmod 555 "$out/ro555/r"
        expect 1 "cannot move the crops into place: Directory not empty" setpriv --reuid=65534 \
            --regid=65534 --clear-groups env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
            strace -f -o /dev/null -e trace=rename,renameat,renameat2 -e inject=rename,renameat,renameat2:error=ENOTEMPTY:when=2 \
            "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/ro555/r" --size 16
        test "$(ls -A "$out/ro555" | tr '\n' ' ')" = "c r s " || fail "left beside a DIR of mode 0555 after a failed rename: $(ls -A "$out/ro555" | tr '\n' ' ')"
    else
        skip_env test_cli_crop "a failed rename into a DIR of mode 0555" "no strace, or ptrace not allowed"
    fi
    chmod -R u+w "$out/ro555"
else
    skip_env test_cli_crop "a new DIR in a setgid folder of another group" "not root, or no setpriv"
fi

# ---- crop -> predict, crop -> train -------------------------------------------------------------------
d="$out/data"
expect 0 "wrote" "$cfnet" synth "$d" --classes 2 --per-class 12 --test-per-class 3 --size 32
m="$out/model.safetensors"
expect 0 "" "$cfnet" train "$d/train" -o "$m" --epochs 1 --width 4 --threads 2 --batch 8 --val 0 -q
# predict under a file size limit: a CSV larger than stdio's buffer failed while the rows were
# written, with status 1 and not a word said; an earlier CSV stays
expect 0 "" "$cfnet" synth "$out/many" --classes 2 --per-class 40 --test-per-class 0 --size 32 -q
: >"$out/plimit.csv"
expect 1 "plimit\.csv: write failed: File too large \(the file is unchanged\)" \
    limited "$cfnet" predict "$m" "$out/many" -o "$out/plimit.csv" -q
test -f "$out/plimit.csv" && test ! -s "$out/plimit.csv" || fail "predict under a size limit changed the earlier CSV"
# a field of the six test images side by side (with 3 pixels of background between them),
# its mask one square label per image: the crops are the images, so are the probabilities
"$py" - "$d/test" "$out" <<'PY'
import sys, glob, numpy as np, tifffile
t, o = sys.argv[1:3]
files = sorted(glob.glob(t + "/*/*.tif"))
field = np.zeros((2, 40, 3 + 35 * len(files)), np.uint16)
mask = np.zeros(field.shape[1:], np.uint16)
for i, f in enumerate(files):
    a = tifffile.imread(f)
    x = 3 + 35 * i
    field[:, 4:36, x:x + 32] = a
    mask[4:36, x:x + 32] = 10 * (i + 1)
tifffile.imwrite(o + "/row.tif", field)
tifffile.imwrite(o + "/rowmask.tif", mask)
open(o + "/order.txt", "w").write("\n".join(files) + "\n")
PY
expect 0 "wrote 6 crops \(32x32\)" "$cfnet" crop "$out/row.tif" "$out/rowmask.tif" -o "$out/crops" --size 32
expect 0 "" "$cfnet" predict "$m" "$out/crops" -o "$out/pc.csv" -q
# shellcheck disable=SC2046 # the six paths from order.txt, without spaces
expect 0 "" "$cfnet" predict "$m" $(cat "$out/order.txt") -o "$out/po.csv" -q
"$py" - "$out" <<'PY' || fail "predictions of the crops differ from those of the images"
import csv, sys
o = sys.argv[1]
orig = [r[1:] for r in list(csv.reader(open(o + "/po.csv")))[1:]]
crops = {r[0].rsplit("_", 1)[1]: r[1:] for r in list(csv.reader(open(o + "/pc.csv")))[1:]}
cells = {r[3]: r[0] for r in list(csv.reader(open(o + "/crops/cells.csv")))[1:]}
assert len(crops) == 6 and len(cells) == 6
for i, row in enumerate(orig):
    assert crops["%d.tif" % (10 * (i + 1))] == row, (i, row)
PY
# docs/cli.md's join of predictions.csv to cells.csv, run as written in a folder holding predict's
# CSV (its paths relative to that folder): every cell gets its crop's predicted class
mkdir -p "$out/join" && cp -R "$out/crops" "$out/join/crops"
cfnet_abs=$(cd "$(dirname "$cfnet")" && pwd)/$(basename "$cfnet")
m_abs=$(cd "$(dirname "$m")" && pwd)/$(basename "$m")
(cd "$out/join" && "$cfnet_abs" predict "$m_abs" crops -o predictions.csv -q) || fail "predict for the join"
awk 'index($0, "<!-- tested: crop-join") == 1 { w = 1; next } w == 1 && /^```/ { w = 2; next }
     w == 2 && /^```/ { exit } w == 2' docs/cli.md >"$out/join/join.py"
[ -s "$out/join/join.py" ] || fail "no tested join snippet in docs/cli.md"
(cd "$out/join" && "$py" join.py) || fail "docs/cli.md's join snippet failed"
"$py" - "$out/join" <<'PY' || fail "docs/cli.md's join gave other rows"
import csv, sys
o = sys.argv[1]
pred = {r["path"].rsplit("_", 1)[1][:-4]: r["predicted"] for r in csv.DictReader(open(o + "/predictions.csv"))}
rows = list(csv.DictReader(open(o + "/cells_predicted.csv")))
assert len(rows) == 6 and sorted(r["label"] for r in rows) == sorted(pred), rows
for r in rows:
    assert r["predicted"] == pred[r["label"]] and r["field"].endswith("row.tif"), r
PY
# class folders: one crop per class folder, then train on them
expect 0 "" "$cfnet" crop "$out/row.tif" "$out/rowmask.tif" -o "$out/cls/a" --size 32 -q
expect 0 "" "$cfnet" crop "$out/f16.tif" "$out/m32.tif" -o "$out/cls/b" --size 32 --pad -q
expect 0 "best|epoch" "$cfnet" train "$out/cls" -o "$out/cls.safetensors" --epochs 1 --width 4 --threads 2 --batch 4 --val 0
test -s "$out/cls.safetensors" || fail "train on crops wrote no model"

# ---- synth --fields: fields of view and masks to crop -----------------------------------------
sf="$out/sf"
expect 0 "wrote 6 fields of view of up to 5 cells \(20 cells" "$cfnet" synth "$sf/f" --fields 5 --classes 2 \
    --per-class 7 --test-per-class 3
expect 0 "" "$cfnet" synth "$sf/one" --classes 2 --per-class 7 --test-per-class 3 -q
for k in class00 class01; do
    # shellcheck disable=SC2046
    expect 0 "wrote 7 crops \(50x50\) of 2 fields to .*; 0 cells too near" "$cfnet" crop \
        $(for i in 000 001; do echo "$sf/f/train/$k/field_$i.tif" "$sf/f/train/$k/field_${i}_mask.tif"; done) \
        -o "$sf/crops/$k" --size 50
done
"$py" - "$sf" <<'PY' || fail "synth --fields: the masks do not label exactly the cells written"
import glob, os, sys, numpy as np, tifffile
o = sys.argv[1]
r = 25 ** 2
yy, xx = np.mgrid[0:50, 0:50]
disc = (yy - 24.5) ** 2 + (xx - 24.5) ** 2 <= r
fields = sorted(glob.glob(o + "/f/*/class*/field_???.tif"))
assert len(fields) == 6, fields
assert sorted(os.listdir(o + "/f/train/class00")) == ["field_000.tif", "field_000_mask.tif",
                                                      "field_001.tif", "field_001_mask.tif"]
cells = 0
for f in fields:
    split, cls, name = f.split("/")[-3:]
    K, M = int(name[6:9]), 5
    a, m = tifffile.imread(f), tifffile.imread(f[:-4] + "_mask.tif")
    assert m.dtype == np.uint16 and a.dtype == np.uint16 and a.shape == (2,) + m.shape, (a.shape, m.dtype)
    # the signal is where the labels are, in both channels
    assert ((a[0] > 0) == (m > 0)).all() and ((a[1] > 0) == (m > 0)).all(), f
    labels = sorted(set(np.unique(m)) - {0})
    n = {"train": 7, "test": 3}[split] - K * M
    assert labels == list(range(1, min(n, M) + 1)), (f, labels)
    for lab in labels:
        ys, xs = np.nonzero(m == lab)
        top, left = ys.min(), xs.min()
        assert ys.max() - top == 49 and xs.max() - left == 49, (f, lab)
        win = (m[top:top + 50, left:left + 50] == lab)
        assert (win == disc).all(), (f, lab)  # the label is the cell's disc, one piece
        one = tifffile.imread("%s/one/%s/%s/%04d.tif" % (o, split, cls, K * M + lab - 1))
        got = a[:, top:top + 50, left:left + 50] * win
        assert (got == one * disc).all(), (f, lab)  # and holds that cell's image
        cells += 1
assert cells == 20, cells
# crop: one crop per cell, each the cell's image
for cls in ("class00", "class01"):
    crops = sorted(glob.glob(o + "/crops/%s/field_*.tif" % cls))
    assert len(crops) == 7, crops
    for c in crops:
        K, lab = int(c[-9:-6]), int(c[-5:-4])
        one = tifffile.imread("%s/one/train/%s/%04d.tif" % (o, cls, K * 5 + lab - 1))
        assert (tifffile.imread(c) * disc == one * disc).all(), c
PY
# 8 bits: every pixel of a cell is nonzero in every channel, as at 16 bits (the dim ones rounded
# to 0, background inside the label); the field holds the cell's image with its 0s made 1
expect 0 "" "$cfnet" synth "$sf/f8" --fields 5 --classes 2 --per-class 7 --test-per-class 3 --bits 8 -q
expect 0 "" "$cfnet" synth "$sf/one8" --classes 2 --per-class 7 --test-per-class 3 --bits 8 -q
expect 0 "" "$cfnet" synth "$sf/p8" --fields 4 --classes 2 --per-class 4 --test-per-class 0 --bits 8 --format png -q
expect 0 "wrote 5 crops" "$cfnet" crop "$sf/f8/train/class01/field_000.tif" "$sf/f8/train/class01/field_000_mask.tif" \
    -o "$sf/crops8" --size 50
"$py" - "$sf" <<'PY' || fail "synth --fields --bits 8: cell pixels of 0, or not the cells' images"
import glob, sys, numpy as np, tifffile
o = sys.argv[1]
yy, xx = np.mgrid[0:50, 0:50]
disc = (yy - 24.5) ** 2 + (xx - 24.5) ** 2 <= 25 ** 2
fields = sorted(glob.glob(o + "/f8/*/class*/field_???.tif"))
assert len(fields) == 6, fields
for f in fields:
    split, cls, name = f.split("/")[-3:]
    a, m = tifffile.imread(f), tifffile.imread(f[:-4] + "_mask.tif")
    assert a.dtype == np.uint8 and a.shape == (2,) + m.shape, (a.shape, a.dtype)
    for c in range(2):
        assert ((a[c] > 0) == (m > 0)).all(), (f, c, int(((a[c] > 0) != (m > 0)).sum()))
    for lab in sorted(set(np.unique(m)) - {0}):
        ys, xs = np.nonzero(m == lab)
        top, left = ys.min(), xs.min()
        one = tifffile.imread("%s/one8/%s/%s/%04d.tif" % (o, split, cls, int(name[6:9]) * 5 + lab - 1))
        assert (one * disc == 0).any(), (f, lab)  # the case: a cell pixel of 0 without --fields
        assert (a[:, top:top + 50, left:left + 50] * disc == np.maximum(one, 1) * disc).all(), (f, lab)
for c in sorted(glob.glob(o + "/crops8/field_*.tif")):
    one = tifffile.imread("%s/one8/train/class01/%04d.tif" % (o, int(c[-5:-4]) - 1))
    assert (tifffile.imread(c) * disc == np.maximum(one, 1) * disc).all(), c
# PNG (grey+alpha): the same
from PIL import Image
pngs = sorted(glob.glob(o + "/p8/train/class*/field_???.png"))
assert len(pngs) == 2, pngs
for f in pngs:
    im = Image.open(f)
    assert im.mode == "LA", im.mode
    a = np.asarray(im)
    m = np.asarray(Image.open(f[:-4] + "_mask.png")).astype(np.int64)
    assert a.shape[:2] == m.shape and m.max() == 4, (a.shape, m.shape, m.max())
    for c in range(2):
        assert ((a[:, :, c] > 0) == (m > 0)).all(), (f, c)
PY
# the refusals of synth: DIR new or empty, --size is the crop's, M in 1..64
expect 1 "the folder is not empty" "$cfnet" synth "$sf/f" --fields 5
expect 2 "--size is for single-cell images" "$cfnet" synth "$sf/new" --fields 5 --size 64
expect 2 "--fields: expected 1..64, got '65'" "$cfnet" synth "$sf/new" --fields 65
expect 2 "--fields: expected 1..64, got '0'" "$cfnet" synth "$sf/new" --fields 0
[ -e "$sf/new" ] && fail "a refused synth --fields made its DIR"
# PNG: fields and 16-bit grey masks that crop reads
expect 0 "" "$cfnet" synth "$sf/png" --fields 4 --classes 2 --per-class 4 --test-per-class 0 \
    --format png --channels 1 -q
expect 0 "wrote 4 crops" "$cfnet" crop "$sf/png/train/class01/field_000.png" \
    "$sf/png/train/class01/field_000_mask.png" -o "$sf/pngcrops" --size 50
# docs/cli.md's walkthrough, synth fields -> crop per class -> train -> eval, as written
mkdir -p "$out/walk"
awk 'index($0, "<!-- tested: synth-fields") == 1 { w = 1; next } w == 1 && /^```/ { w = 2; next }
     w == 2 && /^```/ { exit } w == 2' docs/cli.md >"$out/walk/walk.sh"
grep -q "cfnet eval" "$out/walk/walk.sh" || fail "no tested synth-fields walkthrough in docs/cli.md"
mkdir -p "$out/walkbin" # the snippet runs `cfnet`: the one under test, whatever its file name
ln -sf "$cfnet_abs" "$out/walkbin/cfnet"
walkbin=$(cd "$out/walkbin" && pwd)
(cd "$out/walk" && PATH="$walkbin:$PATH" sh -e walk.sh >walk.log 2>&1) ||
    { fail "docs/cli.md's synth-fields walkthrough failed"; tail -20 "$out/walk/walk.log"; }
grep -q "wrote 50 crops (50x50) of 7 fields to cells/test/class02" "$out/walk/walk.log" ||
    fail "the walkthrough's crops"
grep -Eq "^balanced accuracy +[0-9.]+ %" "$out/walk/walk.log" || fail "the walkthrough's eval report"

if [ $fails -ne 0 ]; then
    echo "test_cli_crop: $fails failures"
    exit 1
fi
echo "test_cli_crop: all checks passed"
