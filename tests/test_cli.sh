#!/bin/sh
# The `cfnet` command end to end on a small synthetic set: synth, train, eval (above a stated
# accuracy), predict (columns, probabilities summing to 1), info, metadata round trip, resume
# equivalence (bit-identical files), every image layout, and each bad-input case with its message
# and exit status.
set -eu
build=${CFNET_BUILD:-build/default}
cfnet=${CFNET_TOOL:-}
if [ -z "$cfnet" ]; then
    if [ "$build" = build/default ]; then cfnet=bin/cfnet; else cfnet=$build/bin/cfnet; fi
fi
py=/usr/bin/python3
out="$build/test-output/cli"
rm -rf "$out"
mkdir -p "$out"
fails=0
fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}
# expect STATUS PATTERN CMD...: runs CMD, checks its exit status and that stderr+stdout match
# the (grep -E) pattern.
expect() {
    want=$1
    pat=$2
    shift 2
    set +e
    "$@" >"$out/last.txt" 2>&1
    got=$?
    set -e
    if [ "$got" != "$want" ]; then
        fail "exit $got (expected $want): $*"
        sed 's/^/    /' "$out/last.txt" | head -20
    elif [ -n "$pat" ] && ! grep -Eq -- "$pat" "$out/last.txt"; then
        fail "output of '$*' lacks /$pat/"
        sed 's/^/    /' "$out/last.txt" | head -20
    fi
}

# ---- help and usage --------------------------------------------------------------------------
expect 0 "Usage: cfnet COMMAND" "$cfnet" --help
for c in synth train eval predict info; do
    expect 0 "Usage: cfnet $c" "$cfnet" "$c" --help
done
expect 2 "unknown command" "$cfnet" frobnicate
expect 2 "" "$cfnet"
expect 2 "unknown option '--frob'" "$cfnet" train --frob x
expect 2 "missing -o MODEL" "$cfnet" train "$out"
expect 2 "--arch: expected cfnet, cnet, gcnn, gcnn-dft, cnn or gcnn-p4m" "$cfnet" train d -o m --arch resnet
expect 2 "--epochs: expected" "$cfnet" train d -o m --epochs 0
expect 2 "--val: expected" "$cfnet" train d -o m --val 2
expect 2 "needs a value" "$cfnet" train d -o m --epochs
expect 2 "missing INPUTS" "$cfnet" predict m
expect 2 "expected MODEL and DATA" "$cfnet" eval m
expect 0 "cfnet [0-9]+\.[0-9]+\.[0-9]+" "$cfnet" --version

# ---- synth --------------------------------------------------------------------------------------
d="$out/data"
expect 0 "wrote 150 images" "$cfnet" synth "$d" --classes 3 --per-class 40 --test-per-class 10 --size 32
test -f "$d/train/class00/0000.tif" || fail "synth wrote no class00/0000.tif"
test -f "$d/test/class02/0009.tif" || fail "synth wrote no test/class02/0009.tif"

# ---- train, eval, predict, info ----------------------------------------------------------------
m="$out/model.safetensors"
common="--width 8 --threads 2 --seed 3 --batch 16"
# shellcheck disable=SC2086
expect 0 "best validation balanced accuracy" "$cfnet" train "$d/train" -o "$m" --epochs 10 $common \
    --val 0.25 --log "$out/log.csv" --plot "$out/curves.svg"
test -s "$m" || fail "train wrote no model"
test -s "$out/model.last.safetensors" || fail "train wrote no checkpoint beside the model"
test "$(wc -l <"$out/log.csv")" = 11 || fail "log.csv should have a header and 10 epochs"
head -1 "$out/log.csv" | grep -q "^epoch,train_loss,train_accuracy,val_loss,val_accuracy,val_balanced_accuracy" ||
    fail "log.csv header"
grep -q "<polyline" "$out/curves.svg" || fail "curves.svg has no curves"

# eval: above a stated accuracy. 3 classes (chance 33 %); 10 epochs on 30 images per class
# reach 90 % here (other seeds: 73-100 %); the test asks for 60 %.
expect 0 "balanced accuracy" "$cfnet" eval "$m" "$d/test" --out "$out/eval" --threads 2
for f in metrics.json confusion.csv confusion.svg predictions.csv; do
    test -s "$out/eval/$f" || fail "eval --out wrote no $f"
done
grep -q "class01" "$out/eval/confusion.svg" || fail "confusion.svg lacks class names"
$py - "$out/eval/metrics.json" "$out/eval/confusion.csv" <<'EOF' || fail "eval metrics"
import json, sys, csv
m = json.load(open(sys.argv[1]))
assert m["images"] == 30, m["images"]
assert m["classes"] == ["class00", "class01", "class02"]
assert m["accuracy"] >= 0.6, "accuracy %.3f below the stated 0.60" % m["accuracy"]
assert abs(sum(c["support"] for c in m["per_class"]) - 30) == 0
rows = list(csv.reader(open(sys.argv[2])))
assert rows[0][1:] == m["classes"], rows[0]
assert sum(int(v) for r in rows[1:] for v in r[1:]) == 30
assert sum(int(rows[i + 1][i + 1]) for i in range(3)) == round(m["accuracy"] * 30)
EOF
expect 0 '"balanced_accuracy"' "$cfnet" eval "$m" "$d/test" --json --threads 2

expect 0 "predicted 30 images" "$cfnet" predict "$m" "$d/test" -o "$out/pred.csv" --threads 2
$py - "$out/pred.csv" <<'EOF' || fail "predictions CSV"
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
assert rows[0] == ["path", "predicted", "class00", "class01", "class02"], rows[0]
assert len(rows) == 31, len(rows)
for r in rows[1:]:
    p = [float(v) for v in r[2:]]
    assert abs(sum(p) - 1) < 1e-4, (r, sum(p))
    assert r[1] == rows[0][2 + p.index(max(p))]
EOF
# --tta on an invariant model (cfnet) changes nothing beyond rounding.
expect 0 "" "$cfnet" predict "$m" "$d/test/class01" -o "$out/pred_tta.csv" --tta --threads 2
$py - "$out/pred.csv" "$out/pred_tta.csv" <<'EOF' || fail "--tta on an invariant model"
import csv, sys
plain = {r[0]: [float(v) for v in r[2:]] for r in list(csv.reader(open(sys.argv[1])))[1:]}
tta = list(csv.reader(open(sys.argv[2])))[1:]
assert len(tta) == 10
for r in tta:
    assert max(abs(a - float(b)) for a, b in zip(plain[r[0]], r[2:])) < 1e-4, r
EOF
# --patience: with a learning rate too small to learn anything, validation stops improving
# after the first epochs and training stops long before --epochs.
# shellcheck disable=SC2086
expect 0 "early stop: validation balanced accuracy has not improved for 2 epochs" "$cfnet" train \
    "$d/train" -o "$out/p.safetensors" --epochs 30 $common --lr 1e-9 --patience 2 --log "$out/p.csv"
test "$(wc -l <"$out/p.csv")" -lt 12 || fail "--patience 2 did not stop early"

expect 0 "classes +3: class00 class01 class02" "$cfnet" info "$m"
grep -q "normalisation  percentile 1 99.8" "$out/last.txt" || fail "info lacks the normalisation"
grep -Eq "tool = cfnet [0-9]" "$out/last.txt" || fail "info lacks the tool version"
grep -q "train.state = " "$out/last.txt" || fail "info lacks the training state"
# metadata round trip as numpy-only readers see it (safetensors header, keys prefixed user.)
$py - "$m" <<'EOF' || fail "metadata in the safetensors header"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
meta = json.loads(b[8:8 + n])["__metadata__"]
assert json.loads(meta["user.classes"]) == ["class00", "class01", "class02"], meta
assert meta["user.channels"] == "2" and meta["user.input_size"] == "32", meta
assert meta["user.normalization"] == "percentile 1 99.8", meta
assert meta["user.arch"] == "cfnet" and meta["user.tool"].startswith("cfnet "), meta
EOF

# ---- resume: 2 epochs == 1 epoch + resume to 2, byte for byte -----------------------------------
a="$out/r2.safetensors"
b="$out/r1.safetensors"
# shellcheck disable=SC2086
expect 0 "" "$cfnet" train "$d/train" -o "$a" --epochs 2 $common --val 0.25 --balance --jitter 1
# shellcheck disable=SC2086
expect 0 "" "$cfnet" train "$d/train" -o "$b" --epochs 1 $common --val 0.25 --balance --jitter 1
expect 2 "" "$cfnet" train "$d/train" -o "$b" --epochs 2 --resume
expect 0 "epochs 2 to 2" "$cfnet" train "$d/train" -o "$b" --epochs 2 --threads 2 \
    --resume "$out/r1.last.safetensors"
cmp -s "$out/r2.last.safetensors" "$out/r1.last.safetensors" ||
    fail "resumed checkpoint differs from the uninterrupted run's"
cmp -s "$a" "$b" || fail "resumed best model differs from the uninterrupted run's"
expect 1 "already trained for 2 epochs" "$cfnet" train "$d/train" -o "$b" --epochs 2 --threads 2 \
    --resume "$out/r1.last.safetensors"

# ---- streaming from disk gives the same model as holding images in memory ----------------------
# shellcheck disable=SC2086
expect 0 "streaming them from disk" "$cfnet" train "$d/train" -o "$out/s.safetensors" --epochs 1 \
    $common --val 0.25 --max-memory 40K
# shellcheck disable=SC2086
expect 0 "" "$cfnet" train "$d/train" -o "$out/ns.safetensors" --epochs 1 $common --val 0.25
cmp -s "$out/s.safetensors" "$out/ns.safetensors" || fail "streamed training differs from in-memory"
# the p4m G-CNN (rotations and reflections) trains and is described as such
# shellcheck disable=SC2086
expect 0 "" "$cfnet" train "$d/train" -o "$out/p4m.safetensors" --epochs 1 --arch gcnn-p4m \
    --width 4 --threads 2 --seed 3 --batch 16 --val 0.25
expect 0 "gcnn-p4m" "$cfnet" info "$out/p4m.safetensors"
expect 0 "p4m_conv" "$cfnet" info "$out/p4m.safetensors"

# ---- every image layout reads to the same values -------------------------------------------------
# (tiled: 40x40 images in 16x16 tiles, partial tiles at the edges; the centre crop to 32 gives the
# same pixels as synthesising at 32)
for v in "tiff 16 interleaved 32" "tiff 16 planar 32" "tiff 16 tiled 32" "tiff 16 tiled 40" \
    "tiff 16 pages 40" "tiff 32 pages 32" "png 16 pages 32" "png 8 pages 32" "tiff 8 pages 32"; do
    # shellcheck disable=SC2086
    set -- $v
    dir="$out/fmt_$1_$2_$3_$4"
    expect 0 "" "$cfnet" synth "$dir" --classes 3 --per-class 1 --test-per-class 4 --size "$4" \
        --format "$1" --bits "$2" --layout "$3"
    expect 0 "" "$cfnet" predict "$m" "$dir/test" -o "$dir.csv" --threads 2
done
$py - "$out" <<'EOF' || fail "image layouts"
import csv, sys, os
o = sys.argv[1]
def load(name):
    rows = list(csv.reader(open(os.path.join(o, name))))[1:]
    return {os.path.splitext(os.path.relpath(r[0], os.path.join(o, name[:-4])))[0]:
            [float(v) for v in r[2:]] for r in rows}
ref = load("fmt_tiff_16_interleaved_32.csv")
assert len(ref) == 12
# interleaved, planar and tiled hold the same numbers: identical results (at 40 px, cropped by
# the model to 32, tiles are partial at the edges; the reference is then the 40 px page stack)
assert load("fmt_tiff_16_planar_32.csv") == ref
assert load("fmt_tiff_16_tiled_32.csv") == ref
assert load("fmt_tiff_16_tiled_40.csv") == load("fmt_tiff_16_pages_40.csv")
# float32 holds the intensities before the 16-bit offset/scale: percentile normalisation is
# affine-invariant, so only 16-bit rounding separates them; PNG 16-bit (grey+alpha) is exact.
for name, tol in [("fmt_tiff_32_pages_32.csv", 0.01), ("fmt_png_16_pages_32.csv", 0),
                  ("fmt_png_8_pages_32.csv", 0.05), ("fmt_tiff_8_pages_32.csv", 0.05)]:
    got = load(name)
    assert got.keys() == ref.keys(), name
    worst = max(abs(a - b) for k in ref for a, b in zip(ref[k], got[k]))
    assert worst <= tol, (name, worst)
EOF

# ---- bad input: one clear message naming the file (and line), status 1 ---------------------------
bad="$out/bad"
mkdir -p "$bad"
cp -r "$d/train" "$bad/trunc"
head -c 400 "$d/train/class01/0003.tif" >"$bad/trunc/class01/0003.tif"
# shellcheck disable=SC2086
expect 1 "trunc/class01/0003.tif: invalid TIFF" "$cfnet" train "$bad/trunc" -o "$bad/m" --epochs 1 $common
# --skip-bad: a warning and a count, training goes on
# shellcheck disable=SC2086
expect 0 "skipped 1 unreadable" "$cfnet" train "$bad/trunc" -o "$bad/m.safetensors" --epochs 1 \
    $common --skip-bad
grep -q "0003.tif: invalid TIFF.*(skipped)" "$out/last.txt" || fail "--skip-bad names the file"
# the same when streaming from disk: the bad image is left out, counted once over 2 epochs
# shellcheck disable=SC2086
expect 0 "skipped 1 unreadable" "$cfnet" train "$bad/trunc" -o "$bad/ms.safetensors" --epochs 2 \
    $common --skip-bad --max-memory 40K

cp -r "$d/train" "$bad/text"
echo "not an image" >"$bad/text/class00/0005.tif"
expect 1 "text/class00/0005.tif: not a TIFF or PNG file" "$cfnet" train "$bad/text" -o "$bad/m" --epochs 1

expect 0 "" "$cfnet" synth "$bad/one" --classes 3 --per-class 2 --test-per-class 0 --channels 1 --size 32
expect 1 "0000.tif: image has 1 channel, the model expects 2" "$cfnet" predict "$m" "$bad/one/train/class00/0000.tif"
expect 1 "image is 32x32, smaller than the input size 40 \(use --pad" "$cfnet" train "$d/train" -o "$bad/m" --size 40 --epochs 1

# differing sizes without --size
cp -r "$d/train" "$bad/sizes"
"$cfnet" synth "$bad/big" --classes 2 --per-class 1 --test-per-class 0 --size 40 -q
cp "$bad/big/train/class01/0000.tif" "$bad/sizes/class01/big.tif"
expect 1 "big.tif: image is 40x40 but the first image is 32x32; give --size" "$cfnet" train "$bad/sizes" -o "$bad/m" --epochs 1

# label not seen in training (folder and manifest)
cp -r "$d/test" "$bad/extra"
mkdir -p "$bad/extra/class99"
cp "$d/test/class00/0000.tif" "$bad/extra/class99/x.tif"
expect 1 "class99/x.tif: label 'class99' was not seen in training" "$cfnet" eval "$m" "$bad/extra"

# empty class folder
cp -r "$d/train" "$bad/empty"
mkdir -p "$bad/empty/class03"
expect 1 "class folder 'class03' has no images" "$cfnet" train "$bad/empty" -o "$bad/m" --epochs 1

# manifests: a good one with a split column (quoted path with a comma), then malformed lines
mf="$out/man"
mkdir -p "$mf/img"
cp "$d/train/class00/0000.tif" "$mf/img/a,0.tif"
{
    echo "path,label,split"
    for k in 00 01 02; do
        for n in 0000 0001 0002 0003 0004 0005; do
            cp "$d/train/class$k/$n.tif" "$mf/img/$k-$n.tif"
            s=train
            [ $n = 0005 ] && s="val"
            echo "img/$k-$n.tif,class$k,$s"
        done
        cp "$d/test/class$k/0000.tif" "$mf/img/t$k.tif"
        echo "img/t$k.tif,class$k,test"
    done
    echo '"img/a,0.tif",class00,train'
} >"$mf/m.csv"
# shellcheck disable=SC2086
expect 0 "on 16 images of 3 classes \(3 for validation\)" "$cfnet" train "$mf/m.csv" -o "$mf/model.safetensors" --epochs 1 $common
expect 0 "images +3" "$cfnet" eval "$mf/model.safetensors" "$mf/m.csv"
expect 0 "predicted 22 images" "$cfnet" predict "$mf/model.safetensors" "$mf/m.csv" -o "$mf/p.csv"
cp "$mf/m.csv" "$mf/bad1.csv"
echo "img/00-0000.tif,class00,train,extra" >>"$mf/bad1.csv"
expect 1 "bad1.csv:24: malformed CSV line: too many fields" "$cfnet" train "$mf/bad1.csv" -o "$bad/m"
printf 'path,label\nimg/00-0000.tif,class00\n"img/00-0001.tif,class00\n' >"$mf/bad2.csv"
expect 1 "bad2.csv:3: malformed CSV line: unterminated quoted field" "$cfnet" train "$mf/bad2.csv" -o "$bad/m"
printf 'img/00-0000.tif,class00\nimg/00-0001.tif\n' >"$mf/bad3.csv"
expect 1 "bad3.csv:2: malformed CSV line: expected path,label" "$cfnet" train "$mf/bad3.csv" -o "$bad/m"
printf 'img/00-0000.tif,class00,train\nimg/00-0001.tif,class00,holdout\n' >"$mf/bad4.csv"
expect 1 "bad4.csv:2: malformed CSV line: split 'holdout'" "$cfnet" train "$mf/bad4.csv" -o "$bad/m"
printf 'img/00-0000.tif,class00,train\nimg/01-0000.tif,class01,train\nimg/02-0000.tif,class02,val\n' >"$mf/bad5.csv"
expect 1 "bad5.csv:3: .*img/02-0000.tif: label 'class02' was not seen in training \(the classes are: class00, class01\)" "$cfnet" train "$mf/bad5.csv" -o "$bad/m"
printf 'img/00-0000.tif,class00\nimg/missing.tif,class01\n' >"$mf/bad6.csv"
expect 1 "bad6.csv:2: .*missing.tif: cannot open" "$cfnet" train "$mf/bad6.csv" -o "$bad/m"
expect 1 "not a model written by|cannot load the model" "$cfnet" predict "$mf/m.csv" "$d/test"
expect 1 "no such file" "$cfnet" train "$out/nowhere" -o "$bad/m"

# ---- the man page renders without warnings ------------------------------------------------------
if command -v groff >/dev/null 2>&1; then
    groff -man -Tutf8 -ww -z docs/cfnet.1 >"$out/man.txt" 2>&1 || fail "groff failed on docs/cfnet.1"
    [ -s "$out/man.txt" ] && { fail "docs/cfnet.1 has warnings"; cat "$out/man.txt"; }
fi

if [ $fails -ne 0 ]; then
    echo "test_cli: $fails failures"
    exit 1
fi
echo "test_cli: all checks passed"
