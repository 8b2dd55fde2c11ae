"""docs/format.md as a contract, checked from outside the library: a writer built from the page
alone produces model files that the library loads and that compute what the same network built
through the API computes; and a reader built from the page alone checks every field of files
the library wrote (layout, padding, tiling, names, shapes, metadata, architecture, options,
training state)."""
import json
import os
import re
import struct
import tempfile

import numpy as np

import cfnet
from cfnet_testutil import LeakCheckedTestCase

# ---- a writer that knows nothing but docs/format.md ----

# Parameter and state names per kind, in the order of the kind table of docs/format.md.
PARAMS = {"conv2d": ["weight", "bias"], "conic_conv": ["weight", "bias"],
          "p4_lift": ["weight", "bias"], "p4_conv": ["weight", "bias"],
          "p4m_lift": ["weight", "bias"], "p4m_conv": ["weight", "bias"],
          "conic_conv_mirror": ["weight", "bias"], "dft_projection": ["weight", "bias"],
          "dense": ["weight", "bias"], "batch_norm": ["gamma", "beta"]}
STATES = {"batch_norm": ["running_mean", "running_var"]}

# The fields of every kind in the architecture text (docs/format.md), with the JSON type.
ARCH_FIELDS = {
    "conv2d": {"out_channels": int, "kernel": int, "stride": int, "padding": int},
    "conic_conv": {"out_channels": int, "kernel": int, "R": int, "padding": int, "interp": int},
    "p4_lift": {"out_channels": int, "kernel": int, "padding": int},
    "p4_conv": {"out_channels": int, "kernel": int, "padding": int},
    "group_pool": {"mode": int},
    "dft_projection": {"filters": int, "R": int, "interp": int},
    "dft_magnitude": {},
    "dense": {"out_features": int},
    "relu": {},
    "pool": {"mode": int, "window": int, "stride": int},
    "batch_norm": {"momentum": float, "eps": float},
    "dropout": {"drop": float},
    "softmax": {},
    "p4m_lift": {"out_channels": int, "kernel": int, "padding": int},
    "p4m_conv": {"out_channels": int, "kernel": int, "padding": int},
    "p4m_dft_magnitude": {},
    "conic_conv_mirror": {"out_channels": int, "kernel": int, "R": int, "padding": int,
                          "interp": int},
}

OPTION_FIELDS = {"optimizer": str, "lr": float, "beta1": float, "beta2": float,
                 "epsilon": float, "momentum": float, "weight_decay": float,
                 "decay_rate": float, "decay_steps": int, "threads": int, "aug_rotation": str,
                 "aug_jitter": int, "aug_flip": int}


def spec_write(arch, tensors, user=None, extra_meta=None):
    """A model file from docs/format.md: `tensors` is a list of (name, float32 array) in the
    writer's order (layer order, parameters then state)."""
    meta = {"format": "cfnet", "format_version": "1", "library_version": "spec-writer",
            "architecture": json.dumps(arch)}
    for k, v in sorted((user or {}).items()):
        meta["user." + k] = v
    meta.update(extra_meta or {})
    header = {"__metadata__": meta}
    chunks = []
    off = 0
    for name, a in tensors:
        a = np.ascontiguousarray(a, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [off, off + a.nbytes]}
        chunks.append(a.tobytes())
        off += a.nbytes
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((-(8 + len(text))) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


# ---- a reader that knows nothing but docs/format.md ----

def spec_read(blob):
    """Parses and checks a model file against docs/format.md; returns (meta, arch, tensors,
    header key order)."""
    assert len(blob) >= 8
    (h,) = struct.unpack("<Q", blob[:8])
    assert 8 + h <= len(blob), "header past the end"
    assert (8 + h) % 8 == 0, "8 + H not a multiple of 8: %d" % h
    raw = blob[8:8 + h]
    text = raw.decode("utf-8")  # strict UTF-8
    body = text.rstrip(" ")
    assert body.endswith("}"), "header padding is not spaces"
    assert len(raw) - len(body.encode()) < 8, "more padding than needed"

    def no_dups(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), "duplicate keys"
        return dict(pairs)

    def no_constants(c):
        raise AssertionError("non-strict JSON constant " + c)

    keys = []

    def top(pairs):
        keys.extend(k for k, _ in pairs)
        return no_dups(pairs)

    header = json.loads(text, object_pairs_hook=top, parse_constant=no_constants)
    # object_pairs_hook runs for nested objects first: the top level's keys are the last ones.
    keys = keys[len(keys) - len(header):]
    meta = header.pop("__metadata__")
    assert isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())
    assert meta["format"] == "cfnet" and meta["format_version"] == "1"
    data = memoryview(blob)[8 + h:]
    spans = []
    tensors = {}
    for name, e in header.items():
        assert sorted(e) == ["data_offsets", "dtype", "shape"], e
        assert e["dtype"] == "F32"
        shape = e["shape"]
        assert all(isinstance(d, int) and d >= 0 for d in shape)
        b, en = e["data_offsets"]
        assert 0 <= b <= en and en - b == 4 * int(np.prod(shape, dtype=np.int64))
        spans.append((b, en))
        tensors[name] = np.frombuffer(data[b:en], dtype="<f4").reshape(shape)
    spans.sort()
    pos = 0
    for b, en in spans:
        assert b == pos, "gap or overlap at %d" % b
        pos = en
    assert pos == len(data), "bytes after the last tensor"
    arch = json.loads(meta["architecture"], parse_constant=no_constants)
    return meta, arch, tensors, [k for k in keys if k != "__metadata__"]


def expected_shapes(kind, fields, in_shape, out_shape):
    """Shapes of the kind table of docs/format.md."""
    C = in_shape[0]
    if kind in ("conv2d", "conic_conv", "p4_lift", "p4m_lift"):
        k = fields["kernel"]
        return {"weight": [fields["out_channels"], C, k, k], "bias": [fields["out_channels"]]}
    if kind == "conic_conv_mirror":
        k = fields["kernel"]
        c = C * 2 if len(in_shape) == 4 else C
        return {"weight": [fields["out_channels"], c, k, k], "bias": [fields["out_channels"]]}
    if kind in ("p4_conv", "p4m_conv"):
        k = fields["kernel"]
        g = 4 if kind == "p4_conv" else 8
        return {"weight": [fields["out_channels"], C, g, k, k],
                "bias": [fields["out_channels"]]}
    if kind == "dft_projection":
        n = fields["filters"]
        return {"weight": [n] + list(in_shape), "bias": [n]}
    if kind == "dense":
        d = int(np.prod(in_shape))
        return {"weight": [fields["out_features"], d], "bias": [fields["out_features"]]}
    if kind == "batch_norm":
        return {s: [C] for s in ("gamma", "beta", "running_mean", "running_var")}
    return {}


def rng_words(words):
    assert isinstance(words, list) and len(words) == 4
    for w in words:
        assert isinstance(w, str) and re.fullmatch(r"0|[1-9][0-9]*", w) and int(w) < 2 ** 64
    assert any(int(w) for w in words)


class SpecWriterTest(LeakCheckedTestCase):
    """Files written from docs/format.md alone load, and compute what the API computes."""

    def setUp(self):
        super().setUp()
        self.rng = np.random.default_rng(7)

    def build_and_compare(self, arch, api_layers, user=None, extra_meta=None, options=None):
        c, hh, ww = arch["input"]
        seed = int(arch.get("seed", "0"))
        with cfnet.Network(c, hh, ww, seed=seed) as ref:
            ref.extend(api_layers)
            tensors = []
            for i, layer in enumerate(ref.layers):
                for group in (layer.params, layer.state):
                    for pname, view in group.items():
                        if pname == "running_var":
                            v = self.rng.uniform(0.5, 2.0, view.shape)
                        else:
                            v = self.rng.standard_normal(view.shape) * 0.3
                        view[...] = v.astype(np.float32)
                        tensors.append(("%d.%s.%s" % (i, layer.kind_name, pname),
                                        view.copy()))
            for option, value in (options or {}).items():
                ref.set_option(option, value)
            blob = spec_write(arch, tensors, user, extra_meta)
            x = self.rng.standard_normal((3, c, hh, ww)).astype(np.float32)
            with cfnet.Network.from_bytes(blob) as net:
                self.assertEqual([l.kind_name for l in net.layers],
                                 [l["kind"] for l in arch["layers"]])
                np.testing.assert_array_equal(net.infer(x), ref.infer(x))
                self.assertEqual(dict(net.metadata), dict(user or {}))
                self.assertEqual(net.options, ref.options)
                self.assertEqual(net.step_count, 0)
                # the writer's tensor order and the library's are the same, so a reload of
                # the library's own file gives back the same data
                meta, arch2, saved, order = spec_read(net.to_bytes())
                self.assertEqual(order, [n for n, _ in tensors])
                for name, a in tensors:
                    np.testing.assert_array_equal(saved[name], a)
                return blob

    def test_conv_relu_dense(self):
        arch = {"input": [1, 8, 8], "seed": "3",
                "layers": [{"kind": "conv2d", "out_channels": 4, "kernel": 3, "stride": 1,
                            "padding": 1},
                           {"kind": "relu"},
                           {"kind": "dense", "out_features": 3}]}
        self.build_and_compare(arch, [cfnet.conv2d(4, 3, stride=1, padding="same"),
                                      cfnet.relu(), cfnet.dense(3)])

    def test_conic_dft_with_metadata_and_options(self):
        arch = {"input": [1, 9, 9], "seed": "18446744073709551615",
                "layers": [{"kind": "conic_conv", "out_channels": 4, "kernel": 3, "R": 2,
                            "padding": 1, "interp": 1},
                           {"kind": "batch_norm", "momentum": 0.25, "eps": 0.001},
                           {"kind": "relu"},
                           {"kind": "dft_projection", "filters": 3, "R": 2, "interp": 0},
                           {"kind": "dft_magnitude"},
                           {"kind": "dense", "out_features": 2},
                           {"kind": "softmax"}],
                "options": {"optimizer": "sgd", "lr": 0.5, "momentum": 0.75,
                            "decay_steps": 7, "aug_rotation": "quarter", "aug_flip": 1}}
        user = {"class_names": '["a","b"]', "format": "user's own", "z\u00e9": "line\nbreak"}
        self.build_and_compare(
            arch, [cfnet.conic_conv(4, 3, R=2, padding="same", interp="bilinear"),
                   cfnet.batch_norm(momentum=0.25, eps=0.001), cfnet.relu(),
                   cfnet.dft_projection(3, R=2, interp="nearest"), cfnet.dft_magnitude(),
                   cfnet.dense(2), cfnet.softmax()],
            user=user, extra_meta={"note": "tools may add notes"},
            options={"optimizer": "sgd", "learning_rate": 0.5, "momentum": 0.75,
                     "lr_decay_steps": 7, "aug_rotation": "quarter", "aug_flip": 1})

    def test_p4_network_in_shuffled_order(self):
        """The reader accepts any order of keys and offsets as long as the tiling rule holds."""
        arch = {"input": [2, 7, 7], "seed": "5",
                "layers": [{"kind": "p4_lift", "out_channels": 3, "kernel": 3, "padding": 0},
                           {"kind": "p4_conv", "out_channels": 2, "kernel": 3, "padding": 1},
                           {"kind": "group_pool", "mode": 1},
                           {"kind": "pool", "mode": 0, "window": 0, "stride": 2},
                           {"kind": "dense", "out_features": 2}]}
        layers = [cfnet.p4_lift(3, 3, padding="valid"), cfnet.p4_conv(2, 3, padding="same"),
                  cfnet.group_pool("mean"), cfnet.pool("max", 0, 2), cfnet.dense(2)]
        blob = self.build_and_compare(arch, layers)
        meta, arch2, tensors, order = spec_read(blob)
        shuffled = [(n, tensors[n]) for n in reversed(order)]
        shuffled_blob = spec_write(arch, shuffled)
        with cfnet.Network.from_bytes(blob) as a, cfnet.Network.from_bytes(shuffled_blob) as b:
            self.assertEqual(a.to_bytes(), b.to_bytes())


class SpecReaderTest(LeakCheckedTestCase):
    """Every field docs/format.md describes, in files the library wrote."""

    def check_file(self, net, blob, optimizer):
        meta, arch, tensors, order = spec_read(blob)
        self.assertEqual(meta["library_version"], cfnet.version())
        self.assertEqual(sorted(k for k in meta if not k.startswith("user.")),
                         ["architecture", "format", "format_version", "library_version"])
        user = {k[5:]: v for k, v in meta.items() if k.startswith("user.")}
        self.assertEqual(user, dict(net.metadata))
        self.assertEqual(list(arch["input"]), list(net.input_shape))
        self.assertTrue(re.fullmatch(r"0|[1-9][0-9]*", arch["seed"]))
        allowed_top = {"input", "seed", "layers", "options"} | ({"training"} if optimizer
                                                                 else set())
        self.assertEqual(set(arch), allowed_top)
        # options: every option, with its type
        self.assertEqual(set(arch["options"]), set(OPTION_FIELDS))
        for k, t in OPTION_FIELDS.items():
            v = arch["options"][k]
            if t is float:
                self.assertIsInstance(v, (int, float), k)
            else:
                self.assertIs(type(v), t, k)
        self.assertIn(arch["options"]["optimizer"], ("adam", "sgd"))
        self.assertIn(arch["options"]["aug_rotation"], ("none", "quarter", "any"))
        # layers: exactly the documented fields, with their types; float fields are the exact
        # float32 the layer uses
        self.assertEqual(len(arch["layers"]), len(net))
        expected_order = []
        for i, (entry, layer) in enumerate(zip(arch["layers"], net.layers)):
            kind = entry["kind"]
            self.assertEqual(kind, layer.kind_name)
            fields = {k: v for k, v in entry.items() if k != "kind"}
            self.assertEqual(set(fields), set(ARCH_FIELDS[kind]), kind)
            for k, t in ARCH_FIELDS[kind].items():
                if t is int:
                    self.assertIs(type(fields[k]), int, (kind, k))
                else:
                    self.assertIsInstance(fields[k], float, (kind, k))
                    self.assertEqual(float(np.float32(fields[k])), fields[k], (kind, k))
            shapes = expected_shapes(kind, fields, layer.input_shape, layer.output_shape)
            names = list(layer.params) + list(layer.state)
            self.assertEqual(sorted(names), sorted(shapes), kind)
            for pname in names:
                full = "%d.%s.%s" % (i, kind, pname)
                expected_order.append(full)
                self.assertEqual(list(tensors[full].shape), shapes[pname], full)
                src = layer.params.get(pname)
                if src is None:
                    src = layer.state[pname]
                np.testing.assert_array_equal(tensors[full], src)
        moments = [n for n in order if n.startswith("optimizer.")]
        self.assertEqual(order[:len(expected_order)], expected_order)
        if optimizer and net.step_count > 0:
            per = ["m", "v"] if arch["options"]["optimizer"] == "adam" else ["m"]
            want = ["optimizer.%s.%s" % (n, s) for n in expected_order
                    if n.split(".")[2] in ("weight", "bias", "gamma", "beta") for s in per]
            self.assertEqual(moments, want)
            tr = arch["training"]
            self.assertEqual(tr["step"], net.step_count)
            rng_words(tr["rng"])
            dropouts = [str(i) for i, l in enumerate(net.layers) if l.kind_name == "dropout"]
            self.assertEqual(sorted(tr["layer_rng"]), sorted(dropouts))
            for w in tr["layer_rng"].values():
                rng_words(w)
        else:
            self.assertEqual(moments, [])
        self.assertEqual(len(order), len(expected_order) + len(moments))
        # tensors in writer order have contiguous offsets from 0
        header = json.loads(blob[8:8 + struct.unpack("<Q", blob[:8])[0]])
        pos = 0
        for name in order:
            b, e = header[name]["data_offsets"]
            self.assertEqual(b, pos, name)
            pos = e
        # the data is little-endian float32: decode by hand byte by byte for one tensor
        first = order[0]
        b, e = header[first]["data_offsets"]
        start = 8 + struct.unpack("<Q", blob[:8])[0] + b
        raw = blob[start:start + 4]
        self.assertEqual(struct.unpack("<f", raw)[0], float(tensors[first].flat[0]))

    def user_order(self, blob):
        (h,) = struct.unpack("<Q", blob[:8])
        pairs = json.loads(blob[8:8 + h], object_pairs_hook=lambda p: p)
        meta = dict(pairs)["__metadata__"]
        return [k for k, _ in meta if k.startswith("user.")]

    def test_library_files(self):
        x = np.random.default_rng(1).standard_normal((8, 1, 9, 9)).astype(np.float32)
        y = np.arange(8, dtype=np.int32) % 2
        with cfnet.Network(1, 9, 9, seed=12345678901234567890) as net:
            net.extend([cfnet.conic_conv(3, 3, R=2, interp="steerable"),
                        cfnet.batch_norm(momentum=0.1, eps=1e-5), cfnet.relu(),
                        cfnet.dropout(0.3), cfnet.p4_lift(2, 3, padding="valid"),
                        cfnet.group_pool(), cfnet.pool(), cfnet.dense(4), cfnet.relu(),
                        cfnet.dense(2)])
            net.metadata["zeta"] = "last"
            net.metadata["alpha"] = "first"
            net.metadata["Mid"] = "\u00e9\n"
            for optimizer in (False, True):
                blob = net.to_bytes(optimizer=optimizer)
                self.check_file(net, blob, optimizer)
                self.assertEqual(self.user_order(blob), ["user.Mid", "user.alpha", "user.zeta"])
            net.train_step(x, y)
            net.train_step(x, y)
            for optimizer in (False, True):
                self.check_file(net, net.to_bytes(optimizer=optimizer), optimizer)
            net.set_option("optimizer", "sgd")
            net.train_step(x, y)
            self.check_file(net, net.to_bytes(optimizer=True), True)
            # the file save writes is what save_buffer returns
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "m.safetensors")
                net.save(path, optimizer=True)
                with open(path, "rb") as f:
                    self.assertEqual(f.read(), net.to_bytes(optimizer=True))

    def test_p4m_and_mirror_shapes(self):
        with cfnet.Network(2, 7, 7, seed=2) as net:
            net.extend([cfnet.p4m_lift(2, 3), cfnet.p4m_conv(2, 3, padding="valid"),
                        cfnet.dft_projection(2), cfnet.p4m_dft_magnitude(), cfnet.dense(2)])
            self.check_file(net, net.to_bytes(), False)
        with cfnet.Network(2, 7, 7, seed=2) as net:
            net.extend([cfnet.conic_conv_mirror(3, 3, R=1), cfnet.conic_conv_mirror(2, 3, R=2),
                        cfnet.group_pool(), cfnet.dense(2)])
            self.check_file(net, net.to_bytes(), False)
        with cfnet.Network(1, 8, 8, seed=2) as net:
            net.extend([cfnet.p4_lift(2, 3), cfnet.dft_projection(2), cfnet.dft_magnitude()])
            self.check_file(net, net.to_bytes(), False)


class MetadataHeaderCapTest(LeakCheckedTestCase):
    """User metadata counts towards the header cap as escaped JSON text (docs/format.md)."""

    def test_escaped_metadata_over_the_header_cap_is_refused_by_save(self):
        with cfnet.Network(1, 2, 2) as net:
            net.append(cfnet.relu())
            for i in range(7):  # 7 MiB of values: within CFNET_METADATA_MAX_TOTAL
                net.metadata["k%d" % i] = "\x01" * (1 << 20)
            with self.assertRaises(cfnet.LimitError) as cm:
                net.to_bytes()
            self.assertIn("header", str(cm.exception))
            for i in range(7):  # the same sizes of plain text fit
                net.metadata["k%d" % i] = "a" * (1 << 20)
            with cfnet.Network.from_bytes(net.to_bytes()) as back:
                self.assertEqual(dict(back.metadata), dict(net.metadata))


if __name__ == "__main__":
    import unittest
    unittest.main()
