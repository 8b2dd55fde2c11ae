#!/bin/sh
# The example programs (docs/examples.md) on wrong arguments and inputs: a message and a non-zero
# exit status (2 for a usage error), never a crash and never a file written under an option's
# name. Their normal runs: tests/test_minimal.sh, `make demo`, python/tests/test_example.py.
set -eu
name=examples
# shellcheck source=tests/cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"
ex=$build/examples

# minimal: one optional MODEL_PATH; an option is not taken for a file name. Run in the output
# folder, where a file written under an option's name would show.
in_out() { sh -c 'cd "$1" && shift && exec "$@"' sh "$out" "$@"; }
minimal=$(pwd)/$ex/minimal
expect 0 "usage: minimal" in_out "$minimal" --help
expect 2 "usage: minimal" in_out "$minimal" --bogus
expect 2 "usage: minimal" in_out "$minimal" a.cfnet b.cfnet
for f in --help --bogus a.cfnet; do
    [ ! -e "$out/$f" ] || fail "minimal wrote a model file named $f"
done
expect 1 "cannot create" "$minimal" "$out/no/such/folder/m.cfnet"

# --help: the usage on stdout, status 0, for every example.
for prog in minimal demo features rotmnist; do
    # shellcheck disable=SC2016
    expect 0 "usage: $prog" sh -c '"$1" --help 2>/dev/null' sh "$(pwd)/$ex/$prog"
done

# --help describes every option its synopsis lists (demo's --classes, --test, --models and
# --threads, rotmnist's --models, --threads and --label were listed only).
for prog in demo rotmnist features; do
    help=$("$ex/$prog" --help)
    for opt in $(printf '%s\n' "$help" | sed -n '/^usage:/,/^  -/p' | grep -o '\[--[a-z0-9-]*' | tr -d '['); do
        printf '%s\n' "$help" | grep -Eq -- "^  (--[a-z-]+/)*$opt( |/|\$)" ||
            fail "$prog --help lists $opt in its synopsis but does not describe it"
    done
done

# demo: every step trains on a batch of 50 different images, so fewer than 50 training images
# is a usage error (it read past the training set before).
expect 2 "fewer than one batch of 50" "$ex/demo" --classes 2 --train 10 --steps 1 --out "$out/d"
expect 2 "fewer than one batch of 50" "$ex/demo" --classes 5 --train 10,5 --steps 1 --out "$out/d"
# a number out of its range names the option and the range (it printed only the usage)
expect 2 "^demo: --steps must be at least 1, not 0$" "$ex/demo" --steps 0
expect 2 "^demo: --classes must be from 2 to 50, not 51$" "$ex/demo" --classes 51
expect 2 "^demo: --classes must be from 2 to 50, not 1$" "$ex/demo" --classes 1
expect 2 "^demo: --test must be at least 1, not 0$" "$ex/demo" --test 0
expect 2 "^demo: --eval-every must be 0 \(no learning curves\) or more, not -1$" "$ex/demo" --eval-every -1
expect 2 "^demo: --width must be at least 2, not 1$" "$ex/demo" --width 1
expect 2 "^demo: --seeds must be from 1 to 64, not 65$" "$ex/demo" --seeds 65
expect 2 "^demo: --threads must be at least 1, not 0$" "$ex/demo" --threads 0
# evaluations every E steps with E > S: none would fall in the run (it was silently none, and no
# learning-curve file); E = S is one point. (Small runs, should the refusal be missing.)
small="--classes 2 --train 25 --test 1 --models cnn --width 2 --out $out/d"
# shellcheck disable=SC2086
expect 2 "demo: --eval-every 3 is more than --steps 2: the run would never be evaluated; give an E from 1 to 2" \
    "$ex/demo" --steps 2 --eval-every 3 $small
[ ! -e "$out/d/biomarker-curves.csv" ] || fail "demo wrote curves for --eval-every 3 --steps 2"
# shellcheck disable=SC2086
expect 2 "demo: --eval-every 100 is more than --steps 2: the run would never be evaluated \(--full evaluates every 100 steps\)" \
    "$ex/demo" --full --steps 2 --seeds 1 $small
# shellcheck disable=SC2086
expect 0 "wrote .*biomarker-curves.csv" "$ex/demo" --steps 2 --eval-every 2 $small
grep -q "^CNN,25,1,2," "$out/d/biomarker-curves.csv" || fail "demo --eval-every 2 --steps 2: no point at step 2"
for n in 50,100,150 50x 50, ,50 50,,100; do # one or two numbers of images per class
    expect 2 "demo: --train takes one or two whole numbers N\[,N2\] from 1 to 1000000, not '$n'" \
        "$ex/demo" --train "$n" --steps 1 --models cnn --out "$out/d"
done
expect 2 "^demo: --train 50,50 names one size twice; give N alone, or two different sizes$" \
    "$ex/demo" --train 50,50 --steps 1 --models cnn --out "$out/d" # different
expect 0 "N = 25 50 training and 1 test" "$ex/demo" --classes 2 --train 25,50 --test 1 --steps 1 \
    --models cnn --out "$out/d"
expect 2 "usage: demo" "$ex/demo" --bogus 1
# Numbers are read whole: a trailing letter, an out-of-range count or an empty value is a usage
# error naming the option (they were read as 3, as 1, or as 0 before).
expect 2 "demo: --steps takes a whole number, not '3x'" "$ex/demo" --steps 3x --out "$out/d"
expect 2 "not '4294967297'" "$ex/demo" --steps 4294967297 --out "$out/d"
expect 2 "demo: --width takes a whole number, not ''" "$ex/demo" --width "" --out "$out/d"
# a value that cannot be used is a usage error too (status 2, as for a number that is not one)
expect 2 "unknown model 'foo'" "$ex/demo" --models foo --out "$out/d"
expect 2 "names no model" "$ex/demo" --models , --out "$out/d"
# a model named twice (a seventh entry used to be dropped without a word)
expect 2 "names 'cnn' twice" "$ex/demo" --models cnn,cfnet,cnn --out "$out/d"
expect 2 "names 'cfnet' twice" "$ex/demo" --models cfnet,cnet,gcnn,gcnn-dft,cnn,gcnn-p4m,cfnet --out "$out/d"
# a --models value of any length is read whole (one longer than 255 characters was cut, and the
# models past the cut were dropped without a word)
long_models="cnn$(printf ',%.0s' $(seq 300))foo"
expect 2 "unknown model 'foo'" "$ex/demo" --models "$long_models" --out /dev/null/d
expect 1 "^demo: cannot read $out/missing.csv: No such file or directory$" "$ex/demo" --plot "$out/missing.csv"
printf 'model,n_train,seed,step,test_accuracy\n' >"$out/header.csv"
expect 1 "has no runs" "$ex/demo" --plot "$out/header.csv"
expect 1 "^demo: cannot read $out: Is a directory$" "$ex/demo" --plot "$out"
printf 'model,n_train,seed,step,test_accuracy\nCFNet,50,1,abc,0.5\n' >"$out/bad.csv"
expect 1 "malformed line" "$ex/demo" --plot "$out/bad.csv"
# demo-runs.csv, the table every run writes, is not a learning-curve CSV (its parameter counts
# were drawn as steps before).
printf 'model,n_train,seed,parameters,test_accuracy,train_seconds\nCFNet,50,1,9850,0.1,2.3\n' \
    >"$out/demo-runs.csv"
expect 1 "is not a learning-curve CSV" "$ex/demo" --plot "$out/demo-runs.csv"
[ ! -e "$out/demo-runs.svg" ] || fail "demo --plot drew a runs table"

# features and rotmnist.
expect 2 "usage: features" "$ex/features" --bogus
expect 2 "features: --steps must be positive, not 0" "$ex/features" --steps 0 # as demo --steps 0
: >"$out/file"
expect 1 "cannot create" "$ex/features" --out "$out/file/sub"
lacks "training" "features trained before finding that --out cannot be made"
# features' PNG (docs/examples.md): a converter that fails, or none on PATH, is a warning that
# names it and the PPM written, status 0, and no partial PNG (it said nothing before, and `wrote`
# named only the PPM). PATH holds only fake converters; system() runs /bin/sh by its path.
fake=$out/fake-png
mkdir -p "$fake/bad" "$fake/none" "$fake/good"
printf '#!/bin/sh\necho partial\nexit 1\n' >"$fake/bad/convert" # as the stand-in convert
printf '#!/bin/sh\necho partial\nexit 1\n' >"$fake/bad/pnmtopng"
printf '#!/bin/sh\nexec /bin/cat "$1"\n' >"$fake/good/pnmtopng"
chmod +x "$fake/bad/convert" "$fake/bad/pnmtopng" "$fake/good/pnmtopng"
features_png() { # PATH DIR
    rm -rf "$2"
    env PATH="$1" "$ex/features" --steps 1 --out "$2"
}
expect 0 "features: warning: could not convert $out/fp/features.ppm to PNG with pnmtopng and convert \(no PNG written\); wrote only $out/fp/features.ppm" \
    features_png "$fake/bad" "$out/fp"
[ -s "$out/fp/features.ppm" ] || fail "features with failing converters wrote no PPM"
for f in "$out/fp"/*png*; do
    [ ! -e "$f" ] || fail "features left $f after failing converters"
done
mv "$fake/bad/pnmtopng" "$fake/bad-pnmtopng"
expect 0 "features: warning: could not convert .*/fp/features.ppm to PNG with convert \(no PNG written\)" \
    features_png "$fake/bad" "$out/fp"
expect 0 "features: no PNG: neither pnmtopng \(netpbm\) nor convert \(ImageMagick\) is on PATH; the picture is $out/fp/features.ppm" \
    features_png "$fake/none" "$out/fp"
expect 0 "wrote $out/fp/features.ppm and features.png" features_png "$fake/good" "$out/fp"
lacks "warning|no PNG" "features warned with a working pnmtopng"
cmp -s "$out/fp/features.ppm" "$out/fp/features.png" || fail "features.png is not pnmtopng's output"
[ ! -e "$out/fp/features.png.part" ] || fail "features left features.png.part"
expect 1 "run scripts/fetch-mnist first" "$ex/rotmnist" --data "$out/no-mnist"
mkdir -p "$out/dir-mnist/mnist-images-idx3-ubyte"
expect 1 "mnist-images-idx3-ubyte is not a file" "$ex/rotmnist" --data "$out/dir-mnist"
expect 2 "unknown resampling 'foo'" "$ex/rotmnist" --interp foo
expect 2 "rotmnist: --epochs takes a whole number, not 'abc'" "$ex/rotmnist" --epochs abc
expect 2 "rotmnist: --seed takes a whole number from 0, not '-1'" "$ex/rotmnist" --seed -1
expect 2 "rotmnist: --lr takes a number, not '1e-3x'" "$ex/rotmnist" --lr 1e-3x
expect 2 "rotmnist: --lr takes a number, not 'nan'" "$ex/rotmnist" --lr nan
expect 2 "features: --steps takes a whole number, not '5q'" "$ex/features" --steps 5q
# Lists of numbers are read whole too: a trailing letter, a seventh R, or a count that does not
# fit an int (taken as six R values, or wrapped to 50 training images, before).
expect 2 "rotmnist: --r-schedule takes six whole numbers" "$ex/rotmnist" --data "$out/no-mnist" \
    --r-schedule 2,2,2,1,1,1x
expect 2 "rotmnist: --r-schedule takes six whole numbers" "$ex/rotmnist" --data "$out/no-mnist" \
    --r-schedule 2,2,2,1,1,1,1
expect 2 "rotmnist: --r-schedule takes six whole numbers" "$ex/rotmnist" --data "$out/no-mnist" \
    --r-schedule 2,2,2,1,1,65
expect 1 "run scripts/fetch-mnist first" "$ex/rotmnist" --data "$out/no-mnist" \
    --r-schedule 4,4,2,2,1,1 # a good list: the run goes on to the data
expect 2 "demo: --train takes one or two whole numbers" "$ex/demo" --train 4294967346 \
    --steps 1 --models cnn --out "$out/d"
expect 2 "demo: --train takes one or two whole numbers" "$ex/demo" --train " 50" \
    --steps 1 --models cnn --out "$out/d"
# A misspelt model is refused before the data are read and anything trains.
expect 2 "unknown model 'foo'" "$ex/rotmnist" --data "$out/no-mnist" --models cnn,foo
expect 2 "names no model" "$ex/rotmnist" --data "$out/no-mnist" --models ,
expect 2 "unknown model 'foo'" "$ex/rotmnist" --data "$out/no-mnist" --models "$long_models"
expect 2 "names 'cnn' twice" "$ex/rotmnist" --data "$out/no-mnist" --models cnn,cnn
expect 2 "names 'cfnet' twice" "$ex/rotmnist" --data "$out/no-mnist" --models cfnet,cnet,gcnn,gcnn-dft,cnn,gcnn-p4m,cfnet
# So is an option the library refuses for one of the models (each network is built first).
expect 1 "p4m_lift: out_channels is 300000000" "$ex/rotmnist" --data "$out/no-mnist" \
    --models cnn,gcnn-p4m --p4m-width 300000000
expect 2 "usage: rotmnist" "$ex/rotmnist" --epochs
# A negative --max-steps stopped every model after its first step (0 is "no limit").
expect 2 "usage: rotmnist" "$ex/rotmnist" --data "$out/no-mnist" --max-steps -1

# A run with one seed reports its errors without a spread (it printed "+- 0.00%" before). The
# digits are 52 random 28x28 images in IDX files, enough for one batch, one validation and one
# test digit.
"$py" - "$out/mnist" <<'PY'
import os, random, struct, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
r = random.Random(1)
with open(os.path.join(d, "mnist-images-idx3-ubyte"), "wb") as f:
    f.write(struct.pack(">IIII", 0x803, 52, 28, 28))
    f.write(bytes(r.randrange(256) for _ in range(52 * 28 * 28)))
with open(os.path.join(d, "mnist-labels-idx1-ubyte"), "wb") as f:
    f.write(struct.pack(">II", 0x801, 52) + bytes(i % 10 for i in range(52)))
PY
expect 0 "" "$ex/rotmnist" --data "$out/mnist" --models cnn --train 50 --val 1 --test 1 \
    --epochs 1 --seeds 1
grep -Eq '^CNN +[0-9]+ +[0-9.]+% +[0-9.]+% ' "$out/last.txt" ||
    { fail "rotmnist, one seed: no plain error row"; sed 's/^/    /' "$out/last.txt" | tail -5; }
if grep -q -- '+-' "$out/last.txt"; then fail "rotmnist, one seed: a spread was printed"; fi

[ "$fails" -eq 0 ] || { echo "test_examples: $fails failure(s)"; exit 1; }
echo "test_examples: the examples refuse wrong arguments and inputs with a message"
