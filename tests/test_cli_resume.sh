#!/bin/sh
# `cfnet train` on a cluster that kills and requeues jobs: --resume auto (a new run, a run
# continued from MODEL's checkpoint, a finished run that exits 0), the temporary files that a
# run killed while saving leaves (removed by the next run), a run killed with SIGKILL in the
# middle of a save then resumed to files byte-identical to an uninterrupted run's, and resuming
# from bad checkpoints (truncated, empty, another data set's), which writes nothing.
set -eu
name=cli_resume
# shellcheck source=tests/cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"

d="$out/data"
expect 0 "" "$cfnet" synth "$d" --classes 3 --per-class 12 --test-per-class 0 --size 16 -q
common="--width 4 --threads 2 --seed 3 --batch 8 -q"

# ---- the reference: an uninterrupted run of 3 epochs --------------------------------------------
# shellcheck disable=SC2086
expect 0 "" "$cfnet" train "$d/train" -o "$out/ref.safetensors" --epochs 3 $common

# ---- --resume auto: the same command line for the first job and every requeued one -------------
a="$out/auto.safetensors"
# shellcheck disable=SC2086
expect 0 "--resume auto: no checkpoint .*auto.last.safetensors yet; starting a new run" \
    "$cfnet" train "$d/train" -o "$a" --epochs 2 --width 4 --threads 2 --seed 3 --batch 8 --resume auto
# shellcheck disable=SC2086
expect 0 "--resume auto: continuing from .*auto.last.safetensors \(2 epochs done\)" \
    "$cfnet" train "$d/train" -o "$a" --epochs 3 --width 4 --threads 2 --seed 3 --batch 8 --resume auto
# the command line is the first job's: its stored options are not named as ignored
lacks "are ignored|is ignored" "--resume auto named the first job's own options as ignored"
cmp -s "$a" "$out/ref.safetensors" || fail "--resume auto: the model differs from an uninterrupted run's"
cmp -s "$out/auto.last.safetensors" "$out/ref.last.safetensors" ||
    fail "--resume auto: the checkpoint differs from an uninterrupted run's"
# a requeued job whose run had finished: status 0, saying so, nothing written
cp "$a" "$out/auto.before"
cp "$out/auto.last.safetensors" "$out/auto.last.before"
expect 0 "auto.last.safetensors: the run is complete \(already trained for 3 epochs\); nothing to do" \
    "$cfnet" train "$d/train" -o "$a" --epochs 3 --width 4 --threads 2 --seed 3 --batch 8 --resume auto
cmp -s "$a" "$out/auto.before" || fail "a finished run's requeued job changed the model"
cmp -s "$out/auto.last.safetensors" "$out/auto.last.before" || fail "a finished run's requeued job changed the checkpoint"
# a value that differs from the checkpoint's is still named
# shellcheck disable=SC2086
expect 0 "the run's settings come from the checkpoint; --width is ignored" \
    "$cfnet" train "$d/train" -o "$a" --epochs 3 --width 8 --threads 2 --seed 3 --batch 8 --resume auto
# an explicit --resume of a finished run stays an error
# shellcheck disable=SC2086
expect 1 "already trained for 3 epochs; give --epochs above that" \
    "$cfnet" train "$d/train" -o "$a" --epochs 3 $common --resume "$out/auto.last.safetensors"
# a run that --patience stopped early is finished too (its requeued job has the same --patience)
p="$out/patience.safetensors"
# shellcheck disable=SC2086
expect 0 "" "$cfnet" train "$d/train" -o "$p" --epochs 1000 $common --patience 1 --resume auto
cp "$out/patience.last.safetensors" "$out/patience.last.before"
expect 0 "the run is complete \(stopped early at epoch [0-9]+, no improvement for 1 epoch\)" \
    "$cfnet" train "$d/train" -o "$p" --epochs 1000 --width 4 --threads 2 --seed 3 --batch 8 \
    --patience 1 --resume auto
cmp -s "$out/patience.last.safetensors" "$out/patience.last.before" ||
    fail "a requeued job of a run stopped early trained on"
# an explicit checkpoint that is not there names --resume auto
# shellcheck disable=SC2086
expect 1 "cannot load the checkpoint: .*No such file or directory" \
    "$cfnet" train "$d/train" -o "$out/none.safetensors" --epochs 2 $common --resume "$out/none.last.safetensors"
grep -q "give --resume auto" "$out/last.txt" || fail "a missing checkpoint does not mention --resume auto"
test ! -e "$out/none.safetensors" || fail "a missing checkpoint started a run"
# a checkpoint that cannot be read is an error with --resume auto too, not a new run; an empty
# file or a folder is said to be one (it was the loader's "0 bytes is too short for the 8-byte
# header length" or "is not a regular file"), as eval and predict say it of MODEL
: >"$out/empty.last.safetensors"
# shellcheck disable=SC2086
# (the checkpoint path is derived from -o, so it is named as such, and what to do is said in
# terms of what was given: it was "--resume takes the MODEL.last.safetensors file")
expect 1 "^cfnet: error: --resume auto: .*/empty.last.safetensors \(the checkpoint path derived from -o .*/empty.safetensors\): not a checkpoint file \(it is an empty file\); move it away to start a new run, or give -o another file$" \
    "$cfnet" train "$d/train" -o "$out/empty.safetensors" --epochs 2 $common --resume auto
lacks "--resume takes" "--resume auto: a bad checkpoint's hint names --resume FILE, not given"
test ! -s "$out/empty.last.safetensors" || fail "--resume auto replaced an unreadable checkpoint"
mkdir -p "$out/folder.last.safetensors" "$out/folder"
# shellcheck disable=SC2086
expect 1 "folder.last.safetensors \(the checkpoint path derived from -o .*/folder.safetensors\): not a checkpoint file \(it is a folder\)" \
    "$cfnet" train "$d/train" -o "$out/folder.safetensors" --epochs 2 $common --resume auto
# a copy of the model where its checkpoint goes (cp model.safetensors model.last.safetensors): the
# hint was "continue from the checkpoint, e.g. --resume .../copy.last.last.safetensors", a path
# that neither the user nor cfnet gave
cp "$out/ref.safetensors" "$out/copy.last.safetensors"
# shellcheck disable=SC2086
expect 1 "^cfnet: error: --resume auto: .*/copy.last.safetensors \(the checkpoint path derived from -o .*/copy.safetensors\): a model without its training state \(a copy of the best model that -o writes\?\), not a checkpoint; move it away to start a new run, or give -o another file$" \
    "$cfnet" train "$d/train" -o "$out/copy.safetensors" --epochs 2 $common --resume auto
lacks "last.last" "--resume auto: a model as the checkpoint names MODEL.last.last.safetensors"
test ! -e "$out/copy.safetensors" || fail "--resume auto from a model's copy wrote a model"
# given as --resume: not pointed to its own checkpoint either
# shellcheck disable=SC2086
expect 1 "copy.last.safetensors: a model without its training state \(a copy of the best model that -o writes\?\), not a checkpoint$" \
    "$cfnet" train "$d/train" -o "$out/copy.safetensors" --epochs 2 $common --resume "$out/copy.last.safetensors"
lacks "last.last" "--resume MODEL.last.safetensors (a model) names MODEL.last.last.safetensors"
# shellcheck disable=SC2086
expect 1 "/folder: not a checkpoint file \(it is a folder\); --resume takes the MODEL.last.safetensors file that 'cfnet train' writes beside MODEL" \
    "$cfnet" train "$d/train" -o "$out/folder.safetensors" --epochs 2 $common --resume "$out/folder"
lacks "not a regular file" "train --resume FOLDER gave the loader's message"
test ! -e "$out/folder.safetensors" || fail "train --resume FOLDER wrote a model"
# an image (arguments in the wrong place): said to be one
# shellcheck disable=SC2086
expect 1 "0000.tif: not a checkpoint file \(it is a TIFF image\)" \
    "$cfnet" train "$d/train" -o "$out/img.safetensors" --epochs 2 $common --resume "$d/train/class00/0000.tif"
test ! -e "$out/img.safetensors" || fail "train --resume IMAGE wrote a model"

# ---- temporary files that a killed run left ------------------------------------------------------
k="$out/kill.safetensors"
host=$(hostname)
# a process id that is no longer alive (a subshell that has ended), and one that is (this shell)
dead=$(sh -c 'echo $$')
: >"$k.tmp.$dead.$host"
: >"$out/kill.last.safetensors.tmp.$dead.$host"
: >"$k.tmp.$dead.0"                 # check_writable's empty probe
: >"$k.tmp.$$.$host"                # a live process's: kept
: >"$k.tmp.$dead.otherhost"         # another host's: kept
echo x >"$k.tmp.$dead.1"            # not empty: not a probe, kept
: >"$out/other.safetensors.tmp.$dead.$host" # another model's: kept
# a file that a live run holds locked while it saves, of a process id not alive here (another
# machine of the same host name sharing the folder, another PID namespace): kept
held="$k.tmp.$(sh -c 'echo $$').$host"
echo x >"$held"
mkfifo "$out/release"
# shellcheck disable=SC2016
flock -x "$held" sh -c ': >"$1"; exec timeout 600 cat "$2" >/dev/null' sh "$out/locked" "$out/release" &
holder=$!
while [ ! -e "$out/locked" ]; do
    kill -0 "$holder" 2>/dev/null || fail "flock did not lock $held"
    sleep 0.1
done
set +e
# shellcheck disable=SC2086
"$cfnet" train "$d/train" -o "$k" --epochs 1 --width 4 --threads 2 --seed 3 --batch 8 >"$out/held.txt" 2>&1
st=$?
set -e
echo >"$out/release"
wait "$holder" || true
[ "$st" = 0 ] || fail "train with a locked temporary file: status $st: $(cat "$out/held.txt")"
grep -q "removed 2 temporary files of .*kill.safetensors " "$out/held.txt" ||
    fail "the dead run's temporary files were not named as removed: $(cat "$out/held.txt")"
cp "$out/held.txt" "$out/last.txt"
test -e "$held" || fail "a live run's locked temporary file was removed: $held"
grep -q "removed 1 temporary file of .*kill.last.safetensors " "$out/last.txt" ||
    fail "the checkpoint's temporary file was not named as removed"
for f in "$k.tmp.$dead.$host" "$out/kill.last.safetensors.tmp.$dead.$host" "$k.tmp.$dead.0"; do
    test ! -e "$f" || fail "a dead run's temporary file was left: $f"
done
for f in "$k.tmp.$$.$host" "$k.tmp.$dead.otherhost" "$k.tmp.$dead.1" "$out/other.safetensors.tmp.$dead.$host"; do
    test -e "$f" || fail "a file that is not a dead run's temporary file was removed: $f"
done

# a model name too long to take the suffix: the library shortens the name part of its temporary
# file to the folder's longest name, and those are removed too
nmax=$(getconf NAME_MAX "$out" 2>/dev/null || echo 255)
if [ "$nmax" -ge 64 ] && [ "$nmax" -le 1024 ]; then
    long="$(head -c $((nmax - 5 - 12)) /dev/zero | tr '\0' 'm').safetensors" # + ".last" fits
    sfx=".tmp.$dead.$host"
    short="$out/$(printf '%s' "$long" | head -c $((nmax - ${#sfx})))$sfx"
    : >"$short"
    # shellcheck disable=SC2086
    expect 0 "removed 1 temporary file of .*safetensors " \
        "$cfnet" train "$d/train" -o "$out/$long" --epochs 1 --width 4 --threads 2 --seed 3 --batch 8
    test ! -e "$short" || fail "a dead run's shortened temporary file was left"
    rm -f "$out/$long" "$out/${long%.safetensors}.last.safetensors"
fi

# the --plot SVG and its PNG are written the same way, "<name>.tmp.<pid>.<host>" locked until the
# rename (here seen from a fake converter while it writes the PNG to its standard output), and
# a dead run's are removed by the next run with the same --plot; locked or live ones are kept
fake="$out/fakebin"
mkdir -p "$fake"
# shellcheck disable=SC2016 # the fake's own variables; $1 is the SVG
printf '#!/bin/sh
t="%s/pl.png.tmp.$PPID.%s"
if [ -e "$t" ]; then flock -n -s "$t" true && echo unlocked || echo locked; else echo missing; fi >"%s/seen"
cat "$1"
' \
    "$out" "$host" "$out" >"$fake/rsvg-convert"
chmod +x "$fake/rsvg-convert"
echo x >"$out/pl.svg.tmp.$dead.$host"
echo x >"$out/pl.png.tmp.$dead.$host"
echo x >"$out/pl.svg.tmp.$$.$host"   # a live process's: kept
echo x >"$out/pl.png.tmp.$dead.otherhost"   # another host's: kept
plheld="$out/pl.svg.tmp.$(sh -c 'echo $$').$host"
echo x >"$plheld"
flock -x "$plheld" sh -c ': >"$1"; exec timeout 600 cat "$2" >/dev/null' sh "$out/pllocked" "$out/release" &
holder=$!
while [ ! -e "$out/pllocked" ]; do
    kill -0 "$holder" 2>/dev/null || fail "flock did not lock $plheld"
    sleep 0.1
done
set +e
# shellcheck disable=SC2086
env PATH="$fake:$PATH" "$cfnet" train "$d/train" -o "$out/pl.safetensors" --epochs 1 --width 4 \
    --threads 2 --seed 3 --batch 8 --plot "$out/pl.svg" >"$out/plot.txt" 2>&1
st=$?
set -e
echo >"$out/release"
wait "$holder" || true
[ "$st" = 0 ] || fail "train --plot with stale temporary files: status $st: $(cat "$out/plot.txt")"
grep -q "removed 1 temporary file of .*pl.svg " "$out/plot.txt" ||
    fail "the dead run's plot temporary file was not named as removed: $(cat "$out/plot.txt")"
grep -q "removed 1 temporary file of .*pl.png " "$out/plot.txt" ||
    fail "the dead run's PNG temporary file was not named as removed: $(cat "$out/plot.txt")"
for f in "$out/pl.svg.tmp.$dead.$host" "$out/pl.png.tmp.$dead.$host"; do
    test ! -e "$f" || fail "a dead run's plot temporary file was left: $f"
done
for f in "$out/pl.svg.tmp.$$.$host" "$out/pl.png.tmp.$dead.otherhost" "$plheld"; do
    test -e "$f" || fail "a plot file that is not a dead run's temporary file was removed: $f"
done
[ "$(cat "$out/seen" 2>/dev/null)" = locked ] ||
    fail "the PNG's temporary file was not pl.png.tmp.PID.HOST locked while written: $(cat "$out/seen" 2>/dev/null)"
cmp -s "$out/pl.svg" "$out/pl.png" || fail "the fake conversion did not write pl.png"
ls "$out"/pl.*.tmp.* | grep -v -e "\.$$\.$host\$" -e otherhost -e "$plheld" &&
    fail "train --plot left a temporary file"

# --plot through a link to a file: out_open writes beside the file the link names (and replaces
# that file), so that is where a dead run's temporary files are, and where the next run looks
mkdir -p "$out/plt"
echo old >"$out/plt/real.svg"
echo old >"$out/plt/real.png"
ln -sf plt/real.svg "$out/lnk.svg"
ln -sf plt/real.png "$out/lnk.png"
echo x >"$out/plt/real.svg.tmp.$dead.$host"
echo x >"$out/plt/real.png.tmp.$dead.$host"
set +e
# shellcheck disable=SC2086
env PATH="$fake:$PATH" "$cfnet" train "$d/train" -o "$out/lnk.safetensors" --epochs 1 --width 4 \
    --threads 2 --seed 3 --batch 8 --plot "$out/lnk.svg" >"$out/lnkplot.txt" 2>&1
st=$?
set -e
[ "$st" = 0 ] || fail "train --plot through a link: status $st: $(cat "$out/lnkplot.txt")"
for f in "$out/plt/real.svg.tmp.$dead.$host" "$out/plt/real.png.tmp.$dead.$host"; do
    test ! -e "$f" || fail "a dead run's temporary file beside a linked --plot's file was left: $f"
done
grep -q "removed 1 temporary file of .*lnk.svg " "$out/lnkplot.txt" ||
    fail "the linked plot's temporary file was not named as removed: $(cat "$out/lnkplot.txt")"
test -L "$out/lnk.svg" && test -L "$out/lnk.png" || fail "--plot replaced the links"

# ---- SIGKILL in the middle of a save (strace injects it at the Nth rename), then resume ----------
if ! command -v strace >/dev/null 2>&1; then
    skip_missing test_cli_resume "the SIGKILL-in-a-save checks" strace
elif ! strace -o /dev/null -qq -e trace=none true 2>/dev/null; then
    skip_env test_cli_resume "the SIGKILL-in-a-save checks" "strace cannot trace here: no ptrace in this container?"
else
    for n in 1 2 3 4; do # the run of 3 epochs saves 4 times (the model twice)
        s="$out/k$n.safetensors"
        set +e
        # shellcheck disable=SC2086
        timeout 120 strace -f -qq -o /dev/null -e trace=rename -e inject=rename:signal=KILL:when=$n \
            "$cfnet" train "$d/train" -o "$s" --epochs 3 $common >/dev/null 2>&1
        st=$?
        set -e
        [ "$st" != 0 ] || fail "rename $n: the run was not killed"
        ls "$out/k$n."*.tmp.* >/dev/null 2>&1 || fail "rename $n: no temporary file was left to test"
        for f in "$s" "$out/k$n.last.safetensors"; do
            if [ -e "$f" ]; then "$cfnet" info "$f" >/dev/null 2>&1 || fail "rename $n: $f does not load"; fi
        done
        # shellcheck disable=SC2086
        expect 0 "" timeout 120 "$cfnet" train "$d/train" -o "$s" --epochs 3 $common --resume auto
        cmp -s "$s" "$out/ref.safetensors" || fail "rename $n: the resumed model differs from an uninterrupted run's"
        cmp -s "$out/k$n.last.safetensors" "$out/ref.last.safetensors" ||
            fail "rename $n: the resumed checkpoint differs from an uninterrupted run's"
        ! ls "$out/k$n."*.tmp.* >/dev/null 2>&1 || fail "rename $n: the killed run's temporary file is still there"
    done
fi

# ---- resuming from bad checkpoints: a message and status 1, nothing written -----------------------
c="$out/ref.last.safetensors"
head -c 1000 "$c" >"$out/trunc.last.safetensors"
: >"$out/zero.last.safetensors"
for bad in trunc zero; do
    why="cannot load the checkpoint: format error"
    [ $bad = zero ] && why="not a checkpoint file \(it is an empty file\)"
    # shellcheck disable=SC2086
    expect 1 "$bad.last.safetensors: $why" "$cfnet" train "$d/train" \
        -o "$out/$bad.safetensors" --epochs 5 $common --resume "$out/$bad.last.safetensors"
    lacks "too short" "train --resume of an empty file gave the loader's message"
    test ! -e "$out/$bad.safetensors" || fail "a $bad checkpoint wrote a model"
done
# a checkpoint of another data set: other classes, other channels, another image size
expect 0 "" "$cfnet" synth "$out/classes" --classes 2 --per-class 12 --test-per-class 0 --size 16 -q
expect 0 "" "$cfnet" synth "$out/channels" --classes 3 --per-class 12 --test-per-class 0 --size 16 --channels 1 -q
expect 0 "" "$cfnet" synth "$out/size" --classes 3 --per-class 12 --test-per-class 0 --size 24 -q
for other in classes channels size; do
    cp "$c" "$out/$other.last.safetensors"
    cp "$out/ref.safetensors" "$out/$other.safetensors"
done
# shellcheck disable=SC2086
expect 1 "the classes of .*classes/train differ from the checkpoint's" "$cfnet" train "$out/classes/train" \
    -o "$out/classes.safetensors" --epochs 5 $common --resume "$out/classes.last.safetensors"
# shellcheck disable=SC2086
expect 1 "images have 1 channel, the checkpoint 2" "$cfnet" train "$out/channels/train" \
    -o "$out/channels.safetensors" --epochs 5 $common --resume "$out/channels.last.safetensors"
# shellcheck disable=SC2086
expect 1 "size/train.*24x24.*the checkpoint's run took 16x16" "$cfnet" train "$out/size/train" \
    -o "$out/size.safetensors" --epochs 5 $common --resume "$out/size.last.safetensors"
for other in classes channels size; do
    cmp -s "$out/$other.safetensors" "$out/ref.safetensors" || fail "resuming on other $other changed the model"
    cmp -s "$out/$other.last.safetensors" "$c" || fail "resuming on other $other changed the checkpoint"
done

[ "$fails" = 0 ] && echo "test_cli_resume: all passed"
exit "$fails"
