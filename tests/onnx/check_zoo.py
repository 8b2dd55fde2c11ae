"""docs/deploy.md, "BioImage Model Zoo", as a user follows it (run by tests/test_onnx.sh).

Runs the page's Python block (marked zoo-test-pair) as it is, for a saved classifier and a test
image with a bright outlier, written as the TIFF file the block reads (tifffile), then checks the
page's rdf.yaml (marked zoo-rdf) against what it wrote, as far as the model description format 0.4 can be checked without the zoo's tools: the
required fields, the tensor names against the ONNX model's, axes of the shapes' length, the
shapes against the model and the .npy files, float32 data, the opset. Last, the test input goes
through the rdf.yaml's preprocessing, computed as the zoo computes it (scale_range: numpy
percentiles over the axes given, per sample, (x - low) / (high - low + eps), eps 1e-6; clip;
scale_linear), and the exported model in ONNX Runtime: the result must be the test output.

Usage: check_zoo.py ORT_DIR WORKDIR
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import onnx

import cfnet

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, "..", "..", "docs", "deploy.md")


def block(text, tag):
    """The fenced block after the `<!-- tested: TAG` marker."""
    m = re.search(r"<!-- tested: %s\b[^\n]*\n```\w*\n(.*?)```" % re.escape(tag), text, re.S)
    if not m:
        raise SystemExit("check_zoo: FAIL: no tested %s block in docs/deploy.md" % tag)
    return m.group(1)


def zoo_preprocess(x, steps):
    """The zoo's preprocessing of a b c y x tensor, for the steps and kwargs deploy.md uses."""
    x = x.astype(np.float32)
    for step in steps:
        name, kw = step["name"], step.get("kwargs", {})
        if name == "scale_range":
            assert kw["mode"] == "per_sample", kw
            axes = tuple("bcyx".index(a) for a in kw["axes"])
            assert 0 not in axes, kw  # per sample: never over the batch
            lo = np.percentile(x, kw["min_percentile"], axis=axes, keepdims=True)
            hi = np.percentile(x, kw["max_percentile"], axis=axes, keepdims=True)
            x = ((x - lo) / (hi - lo + kw.get("eps", 1e-6))).astype(np.float32)
        elif name == "clip":
            x = np.clip(x, kw["min"], kw["max"]).astype(np.float32)
        elif name == "scale_linear":
            x = (x * kw.get("gain", 1.0) + kw.get("offset", 0.0)).astype(np.float32)
        else:
            raise AssertionError("preprocessing %s is not one this check knows" % name)
    return x


def main():
    ort_dir, work = sys.argv[1], os.path.abspath(sys.argv[2])
    os.makedirs(work, exist_ok=True)
    text = open(DOC, encoding="utf-8").read()
    snippet, rdf_text = block(text, "zoo-test-pair"), block(text, "zoo-rdf")
    failures = []

    # A 1-channel 28 x 28 classifier of 10 classes, as the rdf.yaml describes, saved as the
    # snippet loads it; a test image with a few hot pixels, so that the clip matters.
    rng = np.random.default_rng(11)
    with cfnet.classifier("cfnet", 1, 28, 10, width=4, seed=3) as net:
        for layer in net.layers:
            for name, p in layer.params.items():
                if name in ("bias", "beta"):
                    p[...] = rng.normal(0, 0.5, p.shape)
        net.save(os.path.join(work, "model.safetensors"))
    yy, xx = np.mgrid[:28, :28] - 13.5
    test_image = (600 * (np.hypot(yy, xx) < 7) + 300 * np.cos(xx / 3) + 500
                  + rng.normal(0, 40, (28, 28)))[None]
    test_image[0, 20, 9] = 30000  # one: above the 99.8th percentile of 784 pixels
    test_image = test_image.astype(np.uint16)
    try:
        import tifffile
    except ImportError:
        print("check_zoo: SKIPPED: python3-tifffile is not installed, so the page's block, which "
              "reads its test image with it, cannot run (scripts/install-deps --extra installs it)")
        return 0
    # one page of 16-bit pixels, as a microscope writes it; the snippet reads it itself
    tifffile.imwrite(os.path.join(work, "test_image.tif"), test_image[0])
    cwd = os.getcwd()
    os.chdir(work)  # the snippet names its files relative to the current folder
    try:
        exec(compile(snippet, "deploy.md:zoo-test-pair", "exec"), {"__name__": "__main__"})
    finally:
        os.chdir(cwd)
    # An S x S x 2 TIFF (samples per pixel, not pages) for a 2-channel model: the block's
    # reshape gave the network the interleaved values as two channels, without a word; now the
    # channels-last shape reaches probabilities(), which refuses it.
    two = os.path.join(work, "two")
    os.makedirs(two, exist_ok=True)
    with cfnet.classifier("cfnet", 2, 28, 10, width=4, seed=3) as net2:
        net2.save(os.path.join(two, "model.safetensors"))
    tifffile.imwrite(os.path.join(two, "test_image.tif"),
                     np.stack([test_image[0], test_image[0] // 2], axis=-1))
    os.chdir(two)
    try:
        exec(compile(snippet, "deploy.md:zoo-test-pair", "exec"), {"__name__": "__main__"})
        failures.append("an S x S x 2 TIFF went through the block as 2 x S x S")
    except cfnet.ShapeMismatchError:
        pass
    finally:
        os.chdir(cwd)
    if not np.array_equal(np.load(os.path.join(work, "test_input.npy")),
                          test_image[None].astype(np.float32)):
        failures.append("test_input.npy is not test_image.tif's pixels as stored")
    t_in = np.load(os.path.join(work, "test_input.npy"))
    t_out = np.load(os.path.join(work, "test_output.npy"))
    model = onnx.load(os.path.join(work, "model.onnx"))
    onnx.checker.check_model(model, full_check=True)

    try:
        import yaml
    except ImportError:
        print("check_zoo: SKIPPED in part: python3-yaml is not installed, so neither the "
              "rdf.yaml nor the package's run through ONNX Runtime is checked "
              "(scripts/install-deps --extra installs it)")
        return 1 if failures else 0
    rdf = yaml.safe_load(rdf_text)
    for key in ("format_version", "type", "name", "description", "authors", "cite", "license",
                "documentation", "timestamp", "inputs", "outputs", "test_inputs",
                "test_outputs", "weights"):
        if key not in rdf:
            failures.append("rdf.yaml: no %s" % key)
    if not str(rdf.get("format_version", "")).startswith("0.4.") or rdf.get("type") != "model":
        failures.append("rdf.yaml: not a model description of format 0.4")
    if not re.fullmatch(r"[A-Za-z0-9_\- ()]{1,64}", str(rdf.get("name", ""))):
        failures.append("rdf.yaml: name %r: letters, digits, _, - and spaces only" % rdf["name"])
    for c in rdf.get("cite", []):
        if "text" not in c or not ("doi" in c or "url" in c):
            failures.append("rdf.yaml: a cite entry needs text and a doi or url: %r" % c)
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    graph_in = [i.name for i in model.graph.input]
    graph_out = [o.name for o in model.graph.output]
    if [inp["name"]] != graph_in or [out["name"]] != graph_out:
        failures.append("rdf.yaml: tensors %s -> %s, the model's %s -> %s"
                        % (inp["name"], out["name"], graph_in, graph_out))
    meta = {p.key: p.value for p in model.metadata_props}
    want_in = [1] + [int(v) for v in meta["cfnet.input_shape"].split("x")]
    want_out = [1, int(meta["cfnet.output_shape"])]
    for what, t, arr, want in (("input", inp, t_in, want_in), ("output", out, t_out, want_out)):
        if len(t["axes"]) != len(t["shape"]) or not set(t["axes"]) <= set("bitczyx"):
            failures.append("rdf.yaml: %s axes %r for shape %r" % (what, t["axes"], t["shape"]))
        if t["data_type"] != "float32" or arr.dtype != np.float32:
            failures.append("rdf.yaml: %s data %s, the .npy file's %s" % (what, t["data_type"],
                                                                        arr.dtype))
        if list(t["shape"]) != want or list(arr.shape) != want:
            failures.append("rdf.yaml: %s shape %s, the .npy file's %s, the model's %s"
                            % (what, t["shape"], list(arr.shape), want))
    if rdf["test_inputs"] != ["test_input.npy"] or rdf["test_outputs"] != ["test_output.npy"]:
        failures.append("rdf.yaml: test files %s %s" % (rdf["test_inputs"], rdf["test_outputs"]))
    w = rdf["weights"]["onnx"]
    if w["source"] != "model.onnx" or w["opset_version"] != model.opset_import[0].version:
        failures.append("rdf.yaml: weights %r, the model's opset %d"
                        % (w, model.opset_import[0].version))
    if meta.get("cfnet.output") != "probabilities":
        failures.append("model.onnx: output %r, not probabilities" % meta.get("cfnet.output"))

    # The test pair through the zoo's preprocessing and ONNX Runtime; and, so that the comparison
    # can tell, the same without the clip (the hot pixels then change the result).
    steps = inp.get("preprocessing", [])
    inputs = [zoo_preprocess(t_in, steps),
              zoo_preprocess(t_in, [s for s in steps if s["name"] != "clip"])]
    jobs = []
    for i, x in enumerate(inputs):
        x.tofile(os.path.join(work, "zoo%d.in" % i))
        jobs.append({"model": os.path.join(work, "model.onnx"),
                     "input": os.path.join(work, "zoo%d.in" % i), "dims": list(x.shape),
                     "output": os.path.join(work, "zoo%d.out" % i)})
    with open(os.path.join(work, "zoo.json"), "w") as f:
        json.dump(jobs, f)
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)  # a sanitizer runtime preloaded for libcfnet is not for node
    run = subprocess.run(["node", os.path.join(HERE, "run_ort.js"), ort_dir,
                          os.path.join(work, "zoo.json")], capture_output=True, text=True, env=env)
    err = off = float("nan")
    if run.returncode != 0:
        print(run.stderr, file=sys.stderr)
        failures.append("ONNX Runtime failed on the package's model")
    else:
        got, unclipped = (np.fromfile(os.path.join(work, "zoo%d.out" % i),
                                      np.float32).reshape(t_out.shape) for i in range(2))
        err = float(np.abs(got - t_out).max())
        off = float(np.abs(unclipped - t_out).max())
        if not err <= 1e-5:
            failures.append("the package's test input, preprocessed as the rdf.yaml says, gives "
                            "%.3g away from its test output in ONNX Runtime" % err)
        if not off > 1e-3:
            failures.append("the test image does not exercise the clip (%.3g)" % off)
    for msg in failures:
        print("check_zoo: FAIL: " + msg, file=sys.stderr)
    if not failures:
        print("check_zoo: deploy.md's BioImage Model Zoo package: rdf.yaml matches the model and "
              "the test pair; preprocessed as the zoo does, ONNX Runtime gives the test output "
              "within %.1e (without the clip: %.1e)" % (err, off))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
