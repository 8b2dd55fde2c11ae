"""ONNX export against ONNX Runtime (run by tests/test_onnx.sh).

For every network below: export it with cfnet_network_export_onnx, validate the file with
onnx.checker (full check, with shape inference), run it in ONNX Runtime (onnxruntime-node, one
node process for all models) and compare with cfnet_network_infer on the same input (a batch
of three samples, and one of them alone, the batch axis being symbolic):
max |ORT - cfnet| / max |cfnet| <= 1e-5. The networks: a minimal network ending in each layer
kind (odd and even map sizes, 1 x 1 and 2 x 2 maps, R = 1, 2, 3 and 64, both paddings, every
interpolation including steerable), with parameters
and batch-norm statistics set to random values, the paper's five architectures (CFNet, CNet,
G-CNN, G-CNN+DFT, CNN) built from layers, and the library's preset classifiers of the five
families at an odd and an even size, and with three input channels. For the rotation-invariant
ones, ORT's outputs for the four quarter turns of the input must agree to the same tolerance. The probabilities flag must give
cfnet_network_probabilities; the metadata must name the shapes and carry the user metadata.

Usage: check_export.py ORT_DIR WORKDIR
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import onnx
import onnx.checker

import cfnet

TOL = 1e-5
rng = np.random.default_rng(20261201)


def randomize(net):
    """Random parameters and batch-norm statistics, so biases and statistics are exercised."""
    for layer in net.layers:
        for name, p in layer.params.items():
            if name in ("bias", "beta"):
                p[...] = rng.normal(0, 0.5, p.shape)
            elif name == "gamma":
                p[...] = rng.uniform(0.5, 1.5, p.shape)
        st = layer.state
        if "running_mean" in st:
            st["running_mean"][...] = rng.normal(0, 0.5, st["running_mean"].shape)
            st["running_var"][...] = rng.uniform(0.5, 2.0, st["running_var"].shape)
    return net


def build(shape, layers, seed=1):
    net = cfnet.Network(*shape, seed=seed)
    net.extend(layers)
    return randomize(net)


def cases():
    """(name, network, check invariance) for every case."""
    L = cfnet
    out = []

    def add(name, shape, layers, invariant=False):
        out.append((name, build(shape, layers), invariant))

    for S in (9, 10):
        for stride in (1, 2):
            add("conv2d_same_s%d_%d" % (stride, S), (2, S, S + 1), [L.conv2d(3, 3, stride)])
        add("conv2d_valid_%d" % S, (2, S, S), [L.conv2d(3, 5, 1, "valid")])
        for R in (1, 2, 3):
            for pad in ("same", "valid"):
                for interp in ("nearest", "bilinear"):
                    add("conic_R%d_k3_%s_%s_%d" % (R, pad, interp, S), (2, S, S),
                        [L.conic_conv(3, 3, R, pad, interp)])
            add("conic_R%d_k5_%d" % (R, S), (1, S, S), [L.conic_conv(2, 5, R)])
            add("dft_projection_R%d_%d" % (R, S), (2, S, S), [L.dft_projection(3, R)])
            add("dft_projection_R%d_bilinear_%d" % (R, S), (2, S, S),
                [L.dft_projection(2, R, "bilinear")])
            add("dft_magnitude_R%d_%d" % (R, S), (2, S, S),
                [L.dft_projection(3, R), L.dft_magnitude()])
        for pad in ("same", "valid"):
            add("p4_lift_%s_%d" % (pad, S), (2, S, S), [L.p4_lift(3, 3, pad)])
            add("p4_conv_%s_%d" % (pad, S), (1, S, S), [L.p4_lift(2, 3), L.p4_conv(3, 3, pad)])
        for mode in ("max", "mean"):
            add("group_pool_%s_%d" % (mode, S), (2, S, S), [L.p4_lift(3, 3), L.group_pool(mode)])
            add("pool_%s_equivariant_%d" % (mode, S), (2, S, S), [L.pool(mode)])
            add("pool_%s_k2s1_%d" % (mode, S), (2, S, S + 3), [L.pool(mode, 2, 1)])
            add("pool_%s_k3s2_%d" % (mode, S), (1, S + 2, S), [L.pool(mode, 3, 2)])
            add("pool_%s_p4_%d" % (mode, S), (1, S, S), [L.p4_lift(2, 3), L.pool(mode)])
        for pad in ("same", "valid"):
            add("p4m_lift_%s_%d" % (pad, S), (2, S, S), [L.p4m_lift(2, 3, pad)])
            add("p4m_conv_%s_%d" % (pad, S), (1, S, S), [L.p4m_lift(2, 3), L.p4m_conv(2, 3, pad)])
        for mode in ("max", "mean"):
            add("group_pool_p4m_%s_%d" % (mode, S), (1, S, S), [L.p4m_lift(2, 3), L.group_pool(mode)])
        add("batch_norm_p4m_%d" % S, (1, S, S), [L.p4m_lift(2, 3), L.batch_norm()])
        add("dft_projection_p4m_%d" % S, (1, S, S), [L.p4m_lift(2, 3), L.dft_projection(3)])
        add("dft_projection_p4_%d" % S, (1, S, S), [L.p4_lift(2, 3), L.dft_projection(3)])
        add("batch_norm_%d" % S, (3, S, S), [L.batch_norm()])
        add("batch_norm_p4_%d" % S, (1, S, S), [L.p4_lift(3, 3), L.batch_norm()])
        add("relu_%d" % S, (2, S, S), [L.relu()])
        add("dropout_%d" % S, (2, S, S), [L.dropout(0.3)])
        add("dense_%d" % S, (2, S, S - 1), [L.dense(4)])
        add("softmax_%d" % S, (1, S, S), [L.softmax()])
        add("softmax_flat_%d" % S, (1, S, S), [L.dense(5), L.softmax()])
    for S in (9, 10):
        for R in (1, 2, 3):
            add("conic_mirror_R%d_%d" % (R, S), (2, S, S), [L.conic_conv_mirror(3, 3, R)])
            add("conic_mirror_2copy_R%d_bilinear_valid_%d" % (R, S), (1, S, S),
                [L.conic_conv_mirror(2, 3, R), L.conic_conv_mirror(3, 3, R, "valid", "bilinear")])
        add("conic_mirror_group_pool_%d" % S, (1, S, S),
            [L.conic_conv_mirror(3, 3, 2), L.group_pool("max")])
    add("conic_mirror_1x1_output", (1, 3, 3), [L.conic_conv_mirror(2, 3, 2, "valid")])
    add("conic_1x1_output", (2, 3, 3), [L.conic_conv(2, 3, 2, "valid")])
    add("conic_2x2_output", (1, 4, 4), [L.conic_conv(2, 3, 1, "valid")])
    add("dft_magnitude_p4_1x1", (1, 5, 5), [L.p4_lift(3, 5, "valid"), L.dft_magnitude()])
    add("p4m_dft_magnitude_1x1", (1, 5, 5), [L.p4m_lift(3, 5, "valid"), L.p4m_dft_magnitude()])
    # Steerable resampling, tiny maps, R and kernels at their limits.
    for S in (8, 9):
        for R in (2, 3):
            add("conic_steerable_R%d_%d" % (R, S), (2, S, S),
                [L.conic_conv(3, 5, R, "same", "steerable")])
            add("dft_projection_steerable_R%d_%d" % (R, S), (2, S, S),
                [L.dft_projection(2, R, "steerable"), L.dft_magnitude()], invariant=True)
        add("conic_mirror_steerable_%d" % S, (1, S, S),
            [L.conic_conv_mirror(2, 3, 2, "valid", "steerable")])
    for S in (1, 2):
        add("conic_R3_k3_on_%dx%d" % (S, S), (2, S, S), [L.conic_conv(2, 3, 3)])
        add("p4m_k3_on_%dx%d" % (S, S), (1, S, S), [L.p4m_lift(2, 3), L.p4m_conv(2, 3)])
        add("dft_projection_R2_on_%dx%d" % (S, S), (2, S, S),
            [L.dft_projection(2, 2, "bilinear"), L.dft_magnitude()], invariant=True)
    add("conic_R64_k7", (1, 8, 8), [L.conic_conv(2, 7, 64)])
    add("batch_norm_flat", (1, 6, 6), [L.dense(4), L.batch_norm()])
    add("batch_norm_grid", (1, 6, 6), [L.dft_projection(3, 2), L.batch_norm()])

    # The paper's architectures, as the demo builds them (smaller).
    add("CFNet", (1, 20, 20),
        [L.conic_conv(6, 3, 2), L.batch_norm(), L.relu(), L.pool(),
         L.conic_conv(8, 3, 2), L.batch_norm(), L.relu(), L.pool(),
         L.dft_projection(6, 2), L.batch_norm(), L.relu(), L.dft_magnitude(),
         L.dense(16), L.relu(), L.dropout(0.5), L.dense(5)], invariant=True)
    add("CFNet_odd_R3", (1, 19, 19),
        [L.conic_conv(4, 5, 3, "same", "bilinear"), L.relu(), L.pool("mean"),
         L.conic_conv(5, 3, 1), L.relu(), L.pool(),
         L.dft_projection(4, 3), L.dft_magnitude(), L.dense(3), L.softmax()], invariant=True)
    add("CFNet_mirror", (1, 20, 20),
        [L.conic_conv_mirror(4, 3, 2), L.relu(), L.pool(), L.conic_conv_mirror(4, 3, 2),
         L.group_pool("max"), L.relu(), L.pool(), L.dft_projection(4, 2), L.dft_magnitude(),
         L.dense(3)], invariant=True)
    add("CNet", (1, 20, 20),
        [L.conic_conv(6, 3, 2), L.relu(), L.pool(), L.conic_conv(8, 3, 2), L.relu(), L.pool(),
         L.dense(5)])
    add("G-CNN", (1, 20, 20),
        [L.p4_lift(3, 3), L.batch_norm(), L.relu(), L.pool(), L.p4_conv(4, 3), L.relu(),
         L.group_pool(), L.pool(), L.dense(5)])
    add("G-CNN+DFT", (1, 20, 20),
        [L.p4_lift(3, 3), L.relu(), L.pool(), L.p4_conv(4, 3), L.relu(), L.pool(),
         L.dft_projection(5), L.batch_norm(), L.relu(), L.dft_magnitude(), L.dense(5)],
        invariant=True)
    add("G-CNN+DFT_1x1", (1, 7, 7),
        [L.p4_lift(3, 3), L.relu(), L.pool(), L.p4_conv(4, 3, "valid"),
         L.dft_magnitude(), L.dense(5)], invariant=True)
    add("G-CNN-p4m+DFT", (1, 12, 12),
        [L.p4m_lift(3, 3), L.relu(), L.pool(), L.p4m_conv(3, 3), L.dft_projection(4),
         L.batch_norm(), L.relu(), L.p4m_dft_magnitude(), L.dense(5)], invariant=True)
    add("G-CNN-p4m+DFT_1x1", (1, 7, 7),
        [L.p4m_lift(3, 3), L.relu(), L.pool(), L.p4m_conv(4, 3, "valid"),
         L.p4m_dft_magnitude(), L.dense(5)], invariant=True)
    add("CNN", (1, 20, 20),
        [L.conv2d(6, 3), L.batch_norm(), L.relu(), L.pool(), L.conv2d(8, 3, 2), L.relu(),
         L.dense(5), L.softmax()])
    # The library's preset classifiers (cfnet_network_create_classifier), odd and even sizes.
    for family in ("cfnet", "cnet", "gcnn", "gcnn-dft", "cnn", "gcnn-p4m"):
        for size in (16, 21):
            net = randomize(cfnet.classifier(family, 1, size, 4, width=4, seed=size))
            out.append(("preset_%s_%d" % (family, size), net,
                        family in ("cfnet", "gcnn-dft")))
    # and with three input channels (an RGB image, a three-stain sample)
    for family in ("cfnet", "cnet", "gcnn", "gcnn-dft", "cnn"):
        net = randomize(cfnet.classifier(family, 3, 17, 4, width=4, seed=17))
        out.append(("preset_%s_3ch_17" % family, net, family in ("cfnet", "gcnn-dft")))
    return out


def creation_order(name, model):
    """The exporter numbers every name of a layer ("l3_conic_conv/Reshape4") in the order it
    builds them, and builds a node's inputs before the node, left to right: so within a layer
    the numbers of a node's inputs increase from left to right. Inputs built as two arguments of
    one C call would come out in the compiler's order of evaluation (gcc and clang differ), and
    the exported bytes would depend on the compiler; CI runs this under both."""
    bad = []
    for n in model.graph.node:
        prefix = n.name.split("/")[0] + "/"
        nums = [int(m.group(1)) for m in (re.search(r"(\d+)$", i) for i in n.input
                                          if i.startswith(prefix)) if m]
        if any(b < a for a, b in zip(nums, nums[1:])):
            bad.append("%s: node %s takes its inputs out of creation order: %s"
                       % (name, n.name, list(n.input)))
    return bad


def rel_err(a, b):
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return float(np.max(np.abs(a - b))) / (scale if scale > 0 else 1.0)


def main():
    ort_dir, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    jobs, checks, failures = [], [], []
    nfiles = 0
    for name, net, invariant in cases():
        shape = net.input_shape
        x = rng.normal(0, 1, (3,) + tuple(shape)).astype(np.float32)
        for probs in (False, True):
            path = os.path.join(work, "%s%s.onnx" % (name, "_probs" if probs else ""))
            net.export_onnx(path, probabilities=probs)
            with open(path, "rb") as f:
                data = f.read()
            if data != net.to_onnx(probabilities=probs):
                failures.append("%s: export_onnx and to_onnx differ" % name)
            model = onnx.load(path)
            onnx.checker.check_model(model, full_check=True)
            failures += creation_order(name, model)
            nfiles += 1
            meta = {p.key: p.value for p in model.metadata_props}
            want_in = "x".join(str(d) for d in shape)
            if meta.get("cfnet.input_shape") != want_in or model.opset_import[0].version != 13:
                failures.append("%s: metadata %s / opset %s" % (name, meta,
                                                                model.opset_import[0].version))
            want = net.probabilities(x) if probs else net.infer(x)
            # the metadata and the graph's doc string describe the model's own output
            want_out = "x".join(str(d) for d in want.shape[1:])
            if (meta.get("cfnet.output_shape") != want_out
                    or "output N x %s (" % want_out not in model.graph.doc_string):
                failures.append("%s%s: output N x %s, but cfnet.output_shape %r and doc string %r"
                                % (name, "/probabilities" if probs else "", want_out,
                                   meta.get("cfnet.output_shape"), model.graph.doc_string))
            inputs = [("id", x)]
            # the batch axis is symbolic: one sample gives its row of three (for probabilities too)
            inputs.append(("b1", np.ascontiguousarray(x[1:2])))
            if invariant and not probs:
                inputs += [("rot%d" % k, np.ascontiguousarray(np.rot90(x, k, axes=(2, 3))))
                           for k in (1, 2, 3)]
            for tag, xi in inputs:
                base = os.path.join(work, "%s%s_%s" % (name, "_probs" if probs else "", tag))
                xi.tofile(base + ".in")
                jobs.append({"model": path, "input": base + ".in", "dims": list(xi.shape),
                             "output": base + ".out"})
                checks.append((name + ("/probabilities" if probs else ""), tag, want,
                               base + ".out"))
    # User metadata goes into metadata_props as it is; it wins over the library's own keys.
    net = build((1, 12, 12), [cfnet.conic_conv(2, 3, 2), cfnet.dense(3)])
    user = {"classes": "nucleus,cytoplasm,membrane", "normalisation": "percentile 1 99.8",
            "input size": "12x12", "note": "µm — ünïcode\nsecond line", "cfnet.layers": "mine"}
    for k, v in user.items():
        net.metadata[k] = v
    path = os.path.join(work, "metadata.onnx")
    net.export_onnx(path)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    props = [(p.key, p.value) for p in model.metadata_props]
    meta = dict(props)
    if len(props) != len(meta):
        failures.append("metadata: duplicate keys %s" % props)
    for k, v in user.items():
        if meta.get(k) != v:
            failures.append("metadata: %r is %r, not %r" % (k, meta.get(k), v))
    if meta.get("cfnet.input_shape") != "1x12x12" or "cfnet.version" not in meta:
        failures.append("metadata: library entries missing: %s" % meta)

    jobs_path = os.path.join(work, "jobs.json")
    with open(jobs_path, "w") as f:
        json.dump(jobs, f)
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)  # a sanitizer runtime preloaded for libcfnet is not for node
    run = subprocess.run(["node", os.path.join(here, "run_ort.js"), ort_dir, jobs_path],
                         capture_output=True, text=True, env=env)
    if run.returncode != 0:
        print(run.stderr, file=sys.stderr)
        print("check_export: FAIL: ONNX Runtime failed", file=sys.stderr)
        return 1
    results = json.loads(run.stdout)
    with open(os.path.join(ort_dir, "node_modules", "onnxruntime-node", "package.json")) as f:
        ort_version = json.load(f)["version"]
    worst = (0.0, "")
    worst_rot = (0.0, "")
    id_out = {}
    for (name, tag, want, out_path), res in zip(checks, results):
        got = np.fromfile(out_path, dtype=np.float32).reshape(res["dims"])
        if tag == "b1":
            e = rel_err(got, want[1:2]) if got.shape == want[1:2].shape else float("inf")
            if not e <= TOL:
                failures.append("%s: a batch of one differs from cfnet_network_infer by %.3g"
                                % (name, e))
        elif tag == "id":
            if got.shape != want.shape:
                failures.append("%s: ORT output %s, cfnet %s" % (name, got.shape, want.shape))
                continue
            e = rel_err(got, want)
            worst = max(worst, (e, name))
            if not e <= TOL:
                failures.append("%s: ORT differs from cfnet_network_infer by %.3g" % (name, e))
            id_out[name] = got
        else:
            e = rel_err(got, id_out[name])
            worst_rot = max(worst_rot, (e, name))
            if not e <= TOL:
                failures.append("%s: ORT output changes by %.3g under %s" % (name, e, tag))
    for msg in failures:
        print("check_export: FAIL: " + msg, file=sys.stderr)
    print("check_export: %d models passed onnx.checker, %d ORT runs; largest relative error "
          "%.2g (%s); largest change under quarter turns %.2g (%s); ONNX Runtime %s"
          % (nfiles, len(jobs), worst[0], worst[1], worst_rot[0], worst_rot[1], ort_version))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
