#!/bin/sh
# `cfnet export MODEL OUT.onnx`: writes exactly the bytes of cfnet_network_export_onnx (with and
# without --probabilities) for a model file that carries metadata, a file onnx.checker accepts
# with that metadata in metadata_props; --help, usage errors (exit 2) and a bad model or an
# unwritable output (exit 1, message) behave like the other commands.
# Also runs docs/deploy.md's recipes (Python prepare(), the node script) against predict.
# Environment (set by `make check`): CFNET_BUILD, CFNET_LIBDIR, CFNET_SANITIZE, CC.
set -eu
cd "$(dirname "$0")/.."
build=${CFNET_BUILD:-build/default}
cfnet=${CFNET_TOOL:-}
if [ -z "$cfnet" ]; then
    if [ "$build" = build/default ]; then cfnet=bin/cfnet; else cfnet=$build/bin/cfnet; fi
fi
py=/usr/bin/python3
. tests/skip_lib.sh
"$py" -c 'import numpy' 2>/dev/null || { skip_missing test_cli_export "every check" python3-numpy; exit 0; }
. tests/sanitizer_env.sh
case "$SAN_KIND" in
tsan) skip_env test_cli_export "every check" "the interpreter is not instrumented for ThreadSanitizer"; exit 0 ;;
esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-cli-export.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "test_cli_export: FAIL: $*" >&2; exit 1; }

# A model with metadata, and the library's own export of it, from Python.
pyrun() {
    if [ "$SAN_KIND" = asan ]; then
        LD_PRELOAD=$SAN_PRELOAD ASAN_OPTIONS=detect_leaks=0 PYTHONPATH=python \
            CFNET_LIBRARY=${CFNET_LIBDIR:-$(pwd)/lib}/libcfnet.so "$py" "$@"
    else
        PYTHONPATH=python CFNET_LIBRARY=${CFNET_LIBDIR:-$(pwd)/lib}/libcfnet.so "$py" "$@"
    fi
}
pyrun - "$tmp" <<'EOF_PY'
import sys, cfnet
d = sys.argv[1]
net = cfnet.classifier("cfnet", 1, 16, 3, width=4, seed=5)
net.metadata["classes"] = "a,b,c"
net.metadata["normalization"] = "percentile 1 99.8"
net.save(d + "/model.cfnet")
open(d + "/lib.onnx", "wb").write(net.to_onnx())
open(d + "/lib-probs.onnx", "wb").write(net.to_onnx(probabilities=True))
EOF_PY

"$cfnet" export "$tmp/model.cfnet" "$tmp/cli.onnx" > "$tmp/out.txt" || fail "cfnet export failed"
grep -q "^wrote $tmp/cli.onnx (ONNX opset 13): input N x 1 x 16 x 16, output N x 3 (network output)" "$tmp/out.txt" ||
    { cat "$tmp/out.txt"; fail "summary line"; }
cmp -s "$tmp/cli.onnx" "$tmp/lib.onnx" || fail "cfnet export differs from cfnet_network_export_onnx"
"$cfnet" export -q --probabilities "$tmp/model.cfnet" "$tmp/cli-probs.onnx" > "$tmp/out.txt" ||
    fail "cfnet export --probabilities failed"
[ ! -s "$tmp/out.txt" ] || fail "--quiet printed: $(cat "$tmp/out.txt")"
cmp -s "$tmp/cli-probs.onnx" "$tmp/lib-probs.onnx" || fail "--probabilities differs from the library's"
if "$py" -c 'import onnx.checker' 2>/dev/null; then
    "$py" - "$tmp/cli.onnx" <<'EOF_PY' || fail "onnx.checker or metadata"
import sys, onnx, onnx.checker
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
meta = {p.key: p.value for p in m.metadata_props}
assert meta["classes"] == "a,b,c" and meta["normalization"] == "percentile 1 99.8", meta
EOF_PY
else
    skip_missing test_cli_export "onnx.checker's check of the exported file" python3-onnx
fi

# Help, usage errors, runtime errors.
"$cfnet" export --help | grep -q "^Usage: cfnet export" || fail "--help"
"$cfnet" --help | grep -q "export MODEL OUT.onnx" || fail "cfnet --help does not list export"
set +e
"$cfnet" export "$tmp/model.cfnet" > "$tmp/err.txt" 2>&1; st=$?
[ $st = 2 ] && grep -q "MODEL and OUT.onnx expected" "$tmp/err.txt" || fail "missing OUT: exit $st: $(cat "$tmp/err.txt")"
"$cfnet" export --bogus a b > "$tmp/err.txt" 2>&1; st=$?
[ $st = 2 ] && grep -q "unknown option" "$tmp/err.txt" || fail "bad option: exit $st"
printf 'not a model' > "$tmp/bad.cfnet"
"$cfnet" export "$tmp/bad.cfnet" "$tmp/x.onnx" > "$tmp/err.txt" 2>&1; st=$?
[ $st = 1 ] && grep -q "bad.cfnet: not a model file (it is a text file)" "$tmp/err.txt" || fail "bad model: exit $st: $(cat "$tmp/err.txt")"
[ ! -e "$tmp/x.onnx" ] || fail "a failed export left a file"
# a safetensors file of another program (PyTorch's save_file: weights without the network, its
# metadata "format": "pt", or none) is named for what it is, with what MODEL must be (it was the
# loader's 'format error: network_load: metadata lacks "format_version"')
"$py" - "$tmp" <<'PY'
import json, struct, sys
for name, meta in (("pt", {"__metadata__": {"format": "pt"}}), ("bare", {})):
    h = dict(meta, weight={"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})
    b = json.dumps(h).encode()
    open(f"{sys.argv[1]}/{name}.safetensors", "wb").write(struct.pack("<Q", len(b)) + b + bytes(8))
PY
for m in pt bare; do
    want='format "pt"'
    [ $m = pt ] || want="no format in its metadata"
    for cmd in info predict; do
        "$cfnet" $cmd "$tmp/$m.safetensors" $([ $cmd = info ] || echo "$tmp") > "$tmp/err.txt" 2>&1 && st=0 || st=$?
        [ $st = 1 ] && grep -q "^cfnet: error: .*$m.safetensors: not a libcfnet model: a safetensors file of another program ($want; libcfnet's is \"cfnet\"), such as PyTorch's, which holds weights without the network; MODEL is a file written by 'cfnet train' or saved by libcfnet" "$tmp/err.txt" ||
            fail "$cmd of a $m safetensors file: exit $st: $(cat "$tmp/err.txt")"
    done
done
# the exported file given where the model goes (predict, info, export) is named for what it is
"$cfnet" predict "$tmp/cli.onnx" "$tmp/cli.onnx" > "$tmp/err.txt" 2>&1; st=$?
[ $st = 1 ] && grep -q "cli.onnx: not a model file (it is an ONNX model, as cfnet export writes)" "$tmp/err.txt" ||
    fail "an ONNX file as MODEL: exit $st: $(cat "$tmp/err.txt")"
"$cfnet" export "$tmp/model.cfnet" "$tmp/no/such/dir/x.onnx" > "$tmp/err.txt" 2>&1; st=$?
# a usage error (status 2), found before the model is read, as for train and predict
[ $st = 2 ] && head -n 1 "$tmp/err.txt" | grep -q "^cfnet export: OUT.onnx: .*/x.onnx: cannot create: No such file or directory$" &&
    grep -q "^(see 'cfnet export --help')$" "$tmp/err.txt" && ! grep -q "error:" "$tmp/err.txt" ||
    fail "unwritable output: exit $st: $(cat "$tmp/err.txt")"
mkdir "$tmp/folder.onnx"
"$cfnet" export "$tmp/model.cfnet" "$tmp/folder.onnx" > "$tmp/err.txt" 2>&1; st=$?
# said as the other argument errors are (it was "cfnet: error: export: ... is a folder")
[ $st = 2 ] && grep -q "^cfnet export: OUT.onnx: .*folder.onnx is a folder; give a file name$" "$tmp/err.txt" &&
    grep -q "^(see 'cfnet export --help')$" "$tmp/err.txt" && ! grep -q "error:" "$tmp/err.txt" ||
    fail "a folder as OUT: exit $st: $(cat "$tmp/err.txt")"
set -e

# OUT is written like predict's CSV: a pipe (or a device such as /dev/null) is written to, never
# replaced by a file; through a link, the file it names is replaced, with its permissions; "-"
# is standard output (the summary line then goes to standard error).
mkfifo "$tmp/pipe.onnx"
timeout 60 cat "$tmp/pipe.onnx" > "$tmp/from-pipe.onnx" &
reader=$!
"$cfnet" export -q "$tmp/model.cfnet" "$tmp/pipe.onnx" || fail "export into a pipe"
wait $reader || fail "nothing was written into the pipe"
[ -p "$tmp/pipe.onnx" ] || fail "export replaced a pipe by a file"
cmp -s "$tmp/from-pipe.onnx" "$tmp/lib.onnx" || fail "export into a pipe: other bytes"
echo old > "$tmp/target.onnx"
chmod 640 "$tmp/target.onnx"
ln -s target.onnx "$tmp/link.onnx"
"$cfnet" export -q "$tmp/model.cfnet" "$tmp/link.onnx" || fail "export through a link"
[ -L "$tmp/link.onnx" ] || fail "export replaced a link by a file"
cmp -s "$tmp/target.onnx" "$tmp/lib.onnx" || fail "export through a link: the file it names is not the model"
[ "$(stat -c %a "$tmp/target.onnx")" = 640 ] || fail "export changed the permissions of the file it replaced"
cfnet_abs=$(cd "$(dirname "$cfnet")" && pwd)/$(basename "$cfnet")
(cd "$tmp" && "$cfnet_abs" export model.cfnet - > stdout.onnx 2> err.txt) || fail "export to -"
cmp -s "$tmp/stdout.onnx" "$tmp/lib.onnx" || fail "export to -: other bytes on standard output"
grep -q "^wrote standard output (ONNX opset 13)" "$tmp/err.txt" || fail "export to -: summary: $(cat "$tmp/err.txt")"
[ ! -e "$tmp/-" ] || fail "export - wrote a file named -"
echo "test_cli_export: cfnet export writes the library's ONNX bytes; help and errors: ok"

# docs/cli.md, "A network trained elsewhere": a network from the Python binding, without the
# command's metadata, is refused by predict naming the missing key and the page; with the four
# keys the page's snippet adds, predict gives the network's own probabilities for the images
# normalised as the metadata says.
mkdir -p "$tmp/elsewhere/images"
pyrun - "$tmp/elsewhere" <<'EOF_PY' || fail "writing the network trained elsewhere and its images"
import sys, struct, zlib, numpy as np, cfnet
d = sys.argv[1]
with cfnet.classifier("cfnet", 1, 16, 3, width=4, seed=9) as net:
    net.save(d + "/mine.safetensors")
rng = np.random.default_rng(3)
for i in range(5):
    x = np.clip(rng.normal(900, 300, (16, 16)) + 3000 * (rng.random((16, 16)) < 0.02), 0, 65535)
    x = x.astype(np.uint16)
    raw = b"".join(b"\0" + x[y].astype(">u2").tobytes() for y in range(16))
    chunk = lambda t, b: struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))
    ihdr = struct.pack(">IIBBBBB", 16, 16, 16, 0, 0, 0, 0)
    open("%s/images/%d.png" % (d, i), "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
        chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    np.save("%s/images/%d.npy" % (d, i), x)
EOF_PY
set +e
"$cfnet" predict "$tmp/elsewhere/mine.safetensors" "$tmp/elsewhere/images" -o "$tmp/elsewhere/no.csv" \
    > "$tmp/err.txt" 2>&1; st=$?
set -e
[ $st = 1 ] && grep -q "mine.safetensors: not a model written by 'cfnet train' (its metadata has no \"classes\"; docs/cli.md, \"A network trained elsewhere\", says what to add)" "$tmp/err.txt" ||
    fail "a model without the command's metadata: exit $st: $(cat "$tmp/err.txt")"
awk 'index($0, "<!-- tested: trained-elsewhere") == 1 { want = 1; next }
     want == 1 && /^```/ { want = 2; next }
     want == 2 && /^```/ { exit }
     want == 2 { print }' docs/cli.md > "$tmp/elsewhere/snippet.py"
[ -s "$tmp/elsewhere/snippet.py" ] || fail "no tested trained-elsewhere snippet in docs/cli.md"
pyrun - "$tmp/elsewhere" <<'EOF_PY' || fail "docs/cli.md's trained-elsewhere snippet failed"
import os, sys
os.chdir(sys.argv[1])  # the snippet names its files relative to the current folder
exec(compile(open("snippet.py").read(), "snippet.py", "exec"), {"__name__": "__main__"})
EOF_PY
"$cfnet" predict "$tmp/elsewhere/mine-for-cfnet.safetensors" "$tmp/elsewhere/images" \
    -o "$tmp/elsewhere/pred.csv" 2> "$tmp/err.txt" || fail "predict with the added metadata: $(cat "$tmp/err.txt")"
# a "pad" other than 0 or 1 is refused when the model is loaded, not taken as 0 (as
# cfnet_network_prepare_image, which prepares predict's images, refuses it)
pyrun - "$tmp/elsewhere" <<'EOF_PY' || fail "writing a model with pad = yes"
import sys, cfnet
d = sys.argv[1]
with cfnet.Network.load(d + "/mine-for-cfnet.safetensors") as net:
    net.metadata["pad"] = "yes"
    net.save(d + "/bad-pad.safetensors")
EOF_PY
set +e
"$cfnet" predict "$tmp/elsewhere/bad-pad.safetensors" "$tmp/elsewhere/images" -o "$tmp/elsewhere/no.csv" \
    > "$tmp/err.txt" 2>&1; st=$?
set -e
[ $st = 1 ] && grep -q "bad-pad.safetensors: inconsistent metadata (channels, input_size, pad or normalization" "$tmp/err.txt" ||
    fail "a model with pad = yes: exit $st: $(cat "$tmp/err.txt")"
# an input_size that strtol reads but cfnet_network_prepare_image does not ("+16", " 16") is
# refused when the model is loaded, naming the key, not as a fault of each image (with
# --skip-bad every image was skipped)
pyrun - "$tmp/elsewhere" <<'EOF_PY' || fail "writing models with input_size +16"
import sys, cfnet
d = sys.argv[1]
for i, v in enumerate(["+16", " 16"]):
    with cfnet.Network.load(d + "/mine-for-cfnet.safetensors") as net:
        net.metadata["input_size"] = v
        net.save(d + "/bad-size%d.safetensors" % i)
EOF_PY
for i in 0 1; do
    set +e
    "$cfnet" predict --skip-bad "$tmp/elsewhere/bad-size$i.safetensors" "$tmp/elsewhere/images" \
        -o "$tmp/elsewhere/no.csv" > "$tmp/err.txt" 2>&1; st=$?
    set -e
    [ $st = 1 ] && grep -q "bad-size$i.safetensors: metadata \"input_size\" is \"[+ ]16\"" "$tmp/err.txt" &&
        ! grep -q "skipped" "$tmp/err.txt" ||
        fail "a model with input_size +16 / ' 16': exit $st: $(cat "$tmp/err.txt")"
done
"$cfnet" info "$tmp/elsewhere/mine-for-cfnet.safetensors" > "$tmp/elsewhere/info.txt" 2>&1 ||
    fail "info with the added metadata"
grep -q "^classes        3: ring bar blob$" "$tmp/elsewhere/info.txt" || fail "info: $(cat "$tmp/elsewhere/info.txt")"
grep -q "^normalisation  percentile 0.1 99.9$" "$tmp/elsewhere/info.txt" || fail "info: $(cat "$tmp/elsewhere/info.txt")"
pyrun - "$tmp/elsewhere" <<'EOF_PY' || fail "cfnet predict differs from the network trained elsewhere"
import sys, os, csv, numpy as np, cfnet
d = sys.argv[1]
rows = list(csv.reader(open(d + "/pred.csv")))
assert rows[0][2:] == ["ring", "bar", "blob"], rows[0]
rows = rows[1:]
assert len(rows) == 5, rows
x = np.stack([np.load(d + "/images/" + os.path.basename(r[0])[:-4] + ".npy") for r in rows])
x = x[:, None].astype(np.float32)
want = np.array([[float(v) for v in r[2:]] for r in rows])
with cfnet.Network.load(d + "/mine.safetensors") as net:
    got = net.probabilities(cfnet.normalize(x))
    raw = net.probabilities(x)
err = np.abs(got - want).max()
assert err <= 1e-5, "max |network - predict| = %g" % err
# the comparison can tell: the raw pixel values give other probabilities
assert np.abs(raw - want).max() > 1e-3, np.abs(raw - want).max()
EOF_PY
echo "test_cli_export: a network trained elsewhere, with docs/cli.md's metadata, predicts as itself: ok"

# docs/deploy.md, "A model trained with the cfnet command": its prepare() plus the exported
# model in ONNX Runtime give cfnet predict's probabilities, for images cropped and padded, with
# bright outliers (so that the clip to [0, 1] matters). Needs node, onnx and ONNX Runtime.
command -v node >/dev/null 2>&1 || { skip_missing test_cli_export "docs/deploy.md's recipe" "node (nodejs)"; exit 0; }
"$py" -c 'import onnx' 2>/dev/null || { skip_missing test_cli_export "docs/deploy.md's recipe" python3-onnx; exit 0; }
ort=$(scripts/install-ort 2>"$tmp/ort.log") || {
    cat "$tmp/ort.log"
    skip_missing test_cli_export "docs/deploy.md's recipe" "ONNX Runtime (npm onnxruntime-node, scripts/install-ort)"; exit 0; }
awk 'index($0, "<!-- tested: python-prepare") == 1 { want = 1; next }
     want == 1 && /^```/ { want = 2; next }
     want == 2 && /^```/ { exit }
     want == 2 { print }' docs/deploy.md > "$tmp/prepare.py"
[ -s "$tmp/prepare.py" ] || fail "no tested prepare() in docs/deploy.md"
mkdir -p "$tmp/data/ring" "$tmp/data/dot" "$tmp/in"
"$py" - "$tmp" <<'EOF_PY' || fail "writing the images"
import sys, struct, zlib, numpy as np
d = sys.argv[1]
def png(path, x):  # C x H x W uint16, 1 or 2 channels (grey, grey+alpha), 16-bit
    C, H, W = x.shape
    raw = b"".join(b"\0" + x[:, y, :].T.astype(">u2").tobytes() for y in range(H))
    chunk = lambda t, b: struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))
    ihdr = struct.pack(">IIBBBBB", W, H, 16, 0 if C == 1 else 4, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
                           chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
rng = np.random.default_rng(7)
def image(cls, H, W):
    yy, xx = np.mgrid[:H, :W] - np.array([(H - 1) / 2, (W - 1) / 2])[:, None, None]
    r = np.hypot(yy, xx)
    a = 800 * (np.abs(r - 8) < 2) if cls == 0 else 800 * (r < 4)
    x = np.stack([a + 100, 300 + 200 * np.cos(xx / 3)]) + rng.normal(0, 60, (2, H, W))
    x[:, rng.integers(0, H, 3), rng.integers(0, W, 3)] = 20000  # hot pixels
    return np.clip(x, 0, 65535).astype(np.uint16)
for i in range(6):
    png("%s/data/ring/%d.png" % (d, i), image(0, 40, 40))
    png("%s/data/dot/%d.png" % (d, i), image(1, 40, 40))
for i, (H, W) in enumerate([(40, 40), (45, 37), (26, 30), (32, 32), (20, 20), (44, 44)]):
    x = image(i % 2, H, W)
    png("%s/in/%d.png" % (d, i), x)
    np.save("%s/in/%d.npy" % (d, i), x)
EOF_PY
"$cfnet" train "$tmp/data" -o "$tmp/cli.safetensors" --size 32 --epochs 3 --width 4 --val 0 \
    --threads 2 --batch 4 -q || fail "cfnet train"
"$cfnet" predict --pad "$tmp/cli.safetensors" "$tmp/in" -o "$tmp/pred.csv" 2>/dev/null || fail "cfnet predict"
"$cfnet" export -q -p "$tmp/cli.safetensors" "$tmp/cli-p.onnx" || fail "cfnet export -p"
"$py" - "$tmp" "$ort" <<'EOF_PY' || fail "deploy.md's prepare() with the exported model differs from cfnet predict"
import sys, os, csv, json, subprocess, numpy as np, onnx
d, ort = sys.argv[1:3]
ns = {}
exec(open(d + "/prepare.py").read(), ns)
meta = {p.key: p.value for p in onnx.load(d + "/cli-p.onnx").metadata_props}
rows = list(csv.reader(open(d + "/pred.csv")))
assert rows[0][2:] == json.loads(meta["classes"]), (rows[0], meta["classes"])
rows = rows[1:]
images = [np.load(d + "/in/" + os.path.basename(r[0])[:-4] + ".npy") for r in rows]
want = np.array([[float(v) for v in r[2:]] for r in rows])
def run(batch, tag):
    batch.astype(np.float32).tofile("%s/%s.in" % (d, tag))
    jobs = [{"model": d + "/cli-p.onnx", "input": "%s/%s.in" % (d, tag), "dims": list(batch.shape),
             "output": "%s/%s.out" % (d, tag)}]
    json.dump(jobs, open("%s/%s.json" % (d, tag), "w"))
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    r = subprocess.run(["node", "tests/onnx/run_ort.js", ort, "%s/%s.json" % (d, tag)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return np.fromfile("%s/%s.out" % (d, tag), np.float32).reshape(len(batch), -1)
got = run(np.stack([ns["prepare"](x, meta) for x in images]), "doc")
err = np.abs(got - want).max()
assert err <= 2e-5, "max |ORT - predict| = %g" % err
# the test can tell: cfnet.normalize's default percentiles instead of the model's differ
other = dict(meta, normalization="percentile 0.1 99.9")
off = np.abs(run(np.stack([ns["prepare"](x, other) for x in images]), "other") - want).max()
assert off > 1e-3, "other percentiles agree too: %g" % off
print("test_cli_export: deploy.md's prepare() + ONNX Runtime = cfnet predict within %.1e "
      "(%d images; other percentiles: %.1e)" % (err, len(rows), off))
EOF_PY

# docs/deploy.md, "Node.js, ONNX Runtime": the page's script, run by node as written on each
# image (stored as raw float32), gives predict's class and probabilities, for the model above
# (percentiles) and for one trained with --scale; it refuses a model and an image it cannot use.
awk 'index($0, "<!-- tested: node-classify") == 1 { want = 1; next }
     want == 1 && /^```/ { want = 2; next }
     want == 2 && /^```/ { exit }
     want == 2 { print }' docs/deploy.md > "$tmp/classify.js"
[ -s "$tmp/classify.js" ] || fail "no tested node-classify script in docs/deploy.md"
"$py" - "$tmp" <<'EOF_PY' || fail "writing the images as raw float32"
import sys, glob, numpy as np
for f in glob.glob(sys.argv[1] + "/in/*.npy"):
    x = np.load(f)
    x.astype(np.float32).tofile(f[:-4] + ".f32")
    open(f[:-4] + ".dims", "w").write("%d %d %d\n" % x.shape)
EOF_PY
classify() { # MODEL.onnx IMAGE.f32 C H W: the page's script, its output in node.out, node.err
    NODE_PATH=$ort/node_modules timeout 60 node "$tmp/classify.js" "$@" > "$tmp/node.out" \
        2> "$tmp/node.err"
}
node_vs_predict() { # MODEL.onnx PREDICT.csv: the script on each image against predict's rows
    : > "$tmp/node.txt"
    for f in "$tmp"/in/*.f32; do
        # shellcheck disable=SC2046  # the three dimensions, as three arguments
        classify "$1" "$f" $(cat "${f%.f32}.dims") ||
            fail "deploy.md's node script on $f: $(cat "$tmp/node.err")"
        printf '%s %s\n' "$(basename "$f" .f32)" "$(cat "$tmp/node.out")" >> "$tmp/node.txt"
    done
    "$py" - "$tmp" "$2" <<'EOF_PY' || fail "deploy.md's node script differs from cfnet predict ($1)"
import sys, os, csv, json
d, pred = sys.argv[1:3]
got = {}
for line in open(d + "/node.txt"):
    name, out = line.split(" ", 1)
    got[name] = json.loads(out)
rows = list(csv.reader(open(pred)))[1:]
assert sorted(got) == sorted(os.path.basename(r[0])[:-4] for r in rows), (sorted(got), rows)
err = 0.0
for r in rows:
    g = got[os.path.basename(r[0])[:-4]]
    assert g["class"] == r[1], (r, g)
    assert len(g["probabilities"]) == len(r) - 2, (r, g)
    err = max([err] + [abs(a - float(b)) for a, b in zip(g["probabilities"], r[2:])])
assert err <= 1e-5, "max |node - predict| = %g" % err
print("test_cli_export: deploy.md's node script = cfnet predict within %.1e (%d images, %s)"
      % (err, len(rows), os.path.basename(pred)))
EOF_PY
}
node_vs_predict "$tmp/cli-p.onnx" "$tmp/pred.csv"
# a model trained with --scale: the script's other normalisation (the values reach 2, so that
# a scale ignored or misread changes the probabilities)
"$cfnet" train "$tmp/data" -o "$tmp/scale.safetensors" --size 32 --epochs 3 --width 4 --val 0 \
    --threads 2 --batch 4 --scale 1e-4 -q || fail "cfnet train --scale"
"$cfnet" predict --pad "$tmp/scale.safetensors" "$tmp/in" -o "$tmp/pred-scale.csv" 2>/dev/null ||
    fail "cfnet predict (--scale model)"
"$cfnet" export -q -p "$tmp/scale.safetensors" "$tmp/scale-p.onnx" || fail "cfnet export -p (--scale model)"
"$cfnet" export -q "$tmp/scale.safetensors" "$tmp/scale.onnx" || fail "cfnet export (--scale model)"
node_vs_predict "$tmp/scale-p.onnx" "$tmp/pred-scale.csv"
"$py" - "$tmp" "$ort" <<'EOF_PY' || fail "deploy.md's prepare() differs from predict (--scale)"
import sys, os, csv, json, subprocess, numpy as np, onnx
d, ort = sys.argv[1:3]
ns = {}
exec(open(d + "/prepare.py").read(), ns)
meta = {p.key: p.value for p in onnx.load(d + "/scale-p.onnx").metadata_props}
assert meta["normalization"] == "scale 0.0001", meta["normalization"]
rows = list(csv.reader(open(d + "/pred-scale.csv")))[1:]
batch = np.stack([ns["prepare"](np.load(d + "/in/" + os.path.basename(r[0])[:-4] + ".npy"), meta)
                  for r in rows]).astype(np.float32)
batch.tofile(d + "/scale.in")
json.dump([{"model": d + "/scale-p.onnx", "input": d + "/scale.in", "dims": list(batch.shape),
            "output": d + "/scale.out"}], open(d + "/scale.json", "w"))
env = dict(os.environ)
env.pop("LD_PRELOAD", None)
r = subprocess.run(["node", "tests/onnx/run_ort.js", ort, d + "/scale.json"], capture_output=True,
                   text=True, env=env)
assert r.returncode == 0, r.stderr
got = np.fromfile(d + "/scale.out", np.float32).reshape(len(rows), -1)
err = np.abs(got - np.array([[float(v) for v in r[2:]] for r in rows])).max()
assert err <= 2e-5, "max |ORT - predict| = %g" % err
print("test_cli_export: deploy.md's prepare() + ONNX Runtime = cfnet predict within %.1e "
      "(--scale model)" % err)
EOF_PY
# what it cannot use: each an exit status of 1 and a message naming the problem, no output
img="$tmp/in/0.f32"
expect_refusal() { # PATTERN ARGS...: the script fails with PATTERN in its message
    pattern=$1
    shift
    if classify "$@"; then fail "deploy.md's node script accepted $*: $(cat "$tmp/node.out")"; fi
    grep -q "^classify: .*$pattern" "$tmp/node.err" ||
        fail "deploy.md's node script on $*: '$(cat "$tmp/node.err")', expected '$pattern'"
    [ ! -s "$tmp/node.out" ] || fail "deploy.md's node script on $* printed $(cat "$tmp/node.out")"
}
expect_refusal "exported with .cfnet export -p." "$tmp/scale.onnx" "$img" 2 40 40
pyrun - "$tmp/nometa-p.onnx" <<'EOF_PY' || fail "a network without metadata"
import sys, cfnet
net = cfnet.classifier("cfnet", 2, 32, 2, width=4, seed=5)  # no metadata: not cfnet train's
open(sys.argv[1], "wb").write(net.to_onnx(probabilities=True))
EOF_PY
expect_refusal "exported with .cfnet export -p." "$tmp/nometa-p.onnx" "$img" 2 40 40
expect_refusal "has 12800 bytes, not the 11840 of 2 x 40 x 37" "$tmp/cli-p.onnx" "$img" 2 40 37
expect_refusal "usage: node classify.js" "$tmp/cli-p.onnx" "$img" 2 40
# NaN and infinite values (a float image's masked background): refused with predict's message
"$py" - "$img" "$tmp/nan.f32" <<'EOF_PY' || fail "writing an image with NaN"
import sys, numpy as np
x = np.fromfile(sys.argv[1], np.float32).reshape(2, 40, 40)
x[1, 3, 5:9] = np.nan
x[1, 10, 0] = np.inf
x[1, 20, 0] = -np.inf
x.tofile(sys.argv[2])
EOF_PY
expect_refusal "nan.f32: non-finite values: 4 NaN and 2 infinite of 3200 (the first in channel 2 at row 3, column 5); replace them" \
    "$tmp/cli-p.onnx" "$tmp/nan.f32" 2 40 40
# metadata_props (field 14) claiming 2^32 bytes: refused by ONNX Runtime at once (the reader,
# run first, walked 4 GB past the end of the file for minutes)
printf '\162\377\377\377\377\017\012\001k' > "$tmp/bad.onnx"
expect_refusal "" "$tmp/bad.onnx" "$img" 2 40 40
echo "test_cli_export: deploy.md's node script refuses a model without probabilities or metadata, an image of another size or with NaN: ok"
