"""Saving and loading: files and bytes, the training state, errors, loader limits, and a saved
model read by numpy + json alone (no libcfnet) agreeing with the library's own view."""
import ast
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

import cfnet
from cfnet_testutil import LeakCheckedTestCase, rotated_patterns, small_cfnet

# A reader of the model file that uses nothing but the standard library and numpy
# (docs/format.md): 8-byte little-endian header length, JSON header, little-endian float32 data.
STANDALONE_READER = r'''
import json, struct, sys
import numpy as np

def read_model(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__")
    data = memoryview(blob)[8 + n:]
    tensors = {}
    for name, e in header.items():
        assert e["dtype"] == "F32", e
        begin, end = e["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(e["shape"])
    return meta, header, tensors, len(data)
'''


def standalone_read(path):
    ns = {}
    exec(STANDALONE_READER, ns)
    return ns["read_model"](path)


class PersistTest(LeakCheckedTestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "model.safetensors")
        self.x, self.y = rotated_patterns(40, seed=3)
        self.net = small_cfnet(seed=5)
        self.net.configure(learning_rate=3e-3, weight_decay=1e-4, aug_rotation="quarter")
        self.net.fit(self.x, self.y, epochs=1, batch=20)

    def tearDown(self):
        self.net.close()
        self.dir.cleanup()
        super().tearDown()

    def test_file_round_trip_is_bit_identical(self):
        self.net.save(self.path)
        with cfnet.Network.load(self.path) as copy:
            np.testing.assert_array_equal(copy.infer(self.x), self.net.infer(self.x))
            self.assertEqual(copy.summary(), self.net.summary())
            self.assertEqual(copy.options, self.net.options)
            self.assertEqual(copy.step_count, 0)  # training state not saved without the flag
            for a, b in zip(copy, self.net):
                for name in b.params:
                    np.testing.assert_array_equal(a.params[name], b.params[name])
                for name in b.state:
                    np.testing.assert_array_equal(a.state[name], b.state[name])

    def test_bytes_equal_the_file_and_round_trip(self):
        data = self.net.to_bytes()
        self.assertIsInstance(data, bytes)
        self.net.save(self.path)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), data)
        for buf in (data, bytearray(data), memoryview(data)):
            with cfnet.Network.from_bytes(buf) as copy:
                np.testing.assert_array_equal(copy.infer(self.x), self.net.infer(self.x))
        with self.assertRaisesRegex(TypeError, "Network.load"):  # a path given as data
            cfnet.Network.from_bytes(self.path)

    def test_optimizer_flag_continues_training_exactly(self):
        data = self.net.to_bytes(optimizer=True)
        self.assertGreater(len(data), len(self.net.to_bytes()))
        with cfnet.Network.from_bytes(data) as copy:
            self.assertEqual(copy.step_count, self.net.step_count)
            la = self.net.train_step(self.x[:20], self.y[:20])
            lb = copy.train_step(self.x[:20], self.y[:20])
            self.assertEqual(la, lb)
            np.testing.assert_array_equal(copy.infer(self.x), self.net.infer(self.x))

    def test_errors(self):
        data = self.net.to_bytes()
        with self.assertRaises(cfnet.FormatError) as cm:
            cfnet.Network.from_bytes(data[:100])
        self.assertTrue(cm.exception.message)
        with self.assertRaises(cfnet.FormatError):
            cfnet.Network.from_bytes(b"")
        bad = bytearray(data)
        n = int.from_bytes(bad[:8], "little")
        i = bytes(bad[:8 + n]).index(b'"cfnet"')
        bad[i + 1] = ord("X")  # format "Xfnet"
        with self.assertRaises(cfnet.FormatError) as cm:
            cfnet.Network.from_bytes(bytes(bad))
        self.assertIn("format", cm.exception.message)
        with self.assertRaises(cfnet.CfnetIOError):
            cfnet.Network.load(os.path.join(self.dir.name, "missing.safetensors"))
        with self.assertRaises(cfnet.CfnetIOError):
            self.net.save(os.path.join(self.dir.name, "no", "such", "dir", "m.safetensors"))
        with open(self.path, "wb") as f:
            f.write(b"previous")
        with self.assertRaises(cfnet.CfnetIOError):  # a directory cannot be replaced by a file
            self.net.save(self.dir.name)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"previous")

    def test_context_limits_and_networks_created_in_it(self):
        with cfnet.Context() as ctx:
            self.assertEqual(ctx.get_limit("header_bytes"), 16 << 20)
            self.assertEqual(ctx.get_limit(cfnet.Limit.TENSOR_BYTES), 4 << 30)
            ctx.set_limit(cfnet.Limit.HEADER_BYTES, 64)
            self.assertEqual(ctx.get_limit("header_bytes"), 64)
            made = cfnet.Network(1, 8, 8, context=ctx)
            made.append(cfnet.dense(2))
            self.assertIs(made.context, ctx)
            self.assertEqual(made.infer(np.zeros((3, 1, 8, 8), np.float32)).shape, (3, 2))
            with self.assertRaises(cfnet.StateError):
                ctx.close()  # a network created in it is still open
            made.close()
        self.assertTrue(ctx.closed)
        with self.assertRaises(cfnet.InvalidArgumentError):
            cfnet.Context(header_bytes=0)
        with self.assertRaises(ValueError):
            cfnet.Context().set_limit("layers", 3)

    def test_context_limits_apply_to_loading(self):
        missing = [f for f in ("cfnet_network_load_in", "cfnet_network_load_buffer_in")
                   if f in cfnet._lib.load()._missing]
        if missing:
            self.skipTest("declared in cfnet.h but not exported by this libcfnet: "
                          + ", ".join(missing))
        data = self.net.to_bytes()
        self.net.save(self.path)
        with cfnet.Context(header_bytes=64) as ctx:
            with self.assertRaises(cfnet.LimitError):
                cfnet.Network.from_bytes(data, context=ctx)
            ctx.set_limit("header_bytes", 1 << 20)
            ctx.set_limit("tensor_bytes", 16)
            with self.assertRaises(cfnet.LimitError):
                cfnet.Network.load(self.path, context=ctx)
            ctx.set_limit("tensor_bytes", 1 << 30)
            with cfnet.Network.load(self.path, context=ctx) as copy:
                self.assertIs(copy.context, ctx)
                np.testing.assert_array_equal(copy.infer(self.x), self.net.infer(self.x))

    def test_metadata_round_trip_and_numpy_reader(self):
        md = self.net.metadata
        md["class_names"] = json.dumps(["ER", "Golgi", "Zellkern"])
        md["note"] = "zwei\nZeilen — äöü"
        md["format"] = "a user key, not the library's"
        self.assertEqual(list(md), ["class_names", "format", "note"])
        self.net.save(self.path)
        with cfnet.Network.load(self.path) as copy:
            self.assertEqual(dict(copy.metadata), dict(md))
        with cfnet.Network.from_bytes(self.net.to_bytes(optimizer=True)) as copy:
            self.assertEqual(dict(copy.metadata), dict(md))
        # a numpy-only reader sees them as "user."-prefixed strings of "__metadata__"
        meta, _, _, _ = standalone_read(self.path)
        self.assertEqual(json.loads(meta["user.class_names"]), ["ER", "Golgi", "Zellkern"])
        self.assertEqual(meta["user.note"], "zwei\nZeilen — äöü")
        self.assertEqual(meta["format"], "cfnet")
        self.assertEqual(meta["user.format"], "a user key, not the library's")
        # the numpy-only reader of docs/format.md, taken from the page as it stands
        page = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                            "format.md")
        with open(page, encoding="utf-8") as f:
            text = f.read()
        section = text[text.index("## Reading a model with numpy alone"):]
        snippet = section[section.index("```python") + len("```python"):]
        snippet = snippet[:snippet.index("```")]
        self.assertIn('read_cfnet("model.safetensors")', snippet)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(snippet.replace('"model.safetensors"', repr(self.path)), {})
        lines = out.getvalue().splitlines()
        self.assertEqual(lines[0], str([kind for kind in (
            "conic_conv", "batch_norm", "relu", "pool", "conic_conv", "relu", "pool",
            "dft_projection", "dft_magnitude", "dense")]))
        self.assertEqual(lines[1], "(6, 1, 3, 3)")
        self.assertEqual(ast.literal_eval(lines[2]), {"class_names": md["class_names"], "format": md["format"],
                                          "note": md["note"]})
        del md["note"]
        self.assertNotIn("note", md)
        with self.assertRaises(KeyError):
            md["note"]
        with self.assertRaises(KeyError):
            del md["note"]
        with self.assertRaises(cfnet.InvalidArgumentError):
            md["bad\nkey"] = "x"
        with self.assertRaises(cfnet.LimitError):
            md["k" * 257] = "x"
        with self.assertRaises(TypeError):
            md["n"] = 3
        self.assertEqual(len(md), 2)

    def test_numpy_reader_matches_the_library(self):
        self.net.save(self.path)
        meta, header, tensors, data_len = standalone_read(self.path)
        self.assertEqual(meta["format"], "cfnet")
        arch = json.loads(meta["architecture"])
        self.assertEqual([l["kind"] for l in arch["layers"]], [l.kind_name for l in self.net])
        self.assertEqual(arch["input"], list(self.net.input_shape))
        # The weight tensor named in the issue, against the library's own view of it.
        w = tensors["0.conic_conv.weight"]
        self.assertEqual(w.dtype, np.dtype("<f4"))
        np.testing.assert_array_equal(w, self.net[0].params["weight"])
        # Every parameter and state tensor, and nothing else.
        expected = {}
        for i, layer in enumerate(self.net):
            for group in (layer.params, layer.state):
                for name, value in group.items():
                    expected["%d.%s.%s" % (i, layer.kind_name, name)] = value
        self.assertEqual(set(tensors), set(expected))
        for name, value in expected.items():
            np.testing.assert_array_equal(tensors[name], value, err_msg=name)
        # The tensors tile the data section.
        spans = sorted(tuple(e["data_offsets"]) for e in header.values())
        self.assertEqual(spans[0][0], 0)
        self.assertEqual(spans[-1][1], data_len)
        for (_, end), (begin, _) in zip(spans, spans[1:]):
            self.assertEqual(end, begin)

    def test_reader_runs_without_libcfnet(self):
        """A separate interpreter with neither the cfnet package nor the library reads the file
        and hands back the weight, which must equal the library's view."""
        self.net.save(self.path)
        out = os.path.join(self.dir.name, "weight.npy")
        code = STANDALONE_READER + r'''
meta, header, tensors, _ = read_model(sys.argv[1])
np.save(sys.argv[2], tensors["0.conic_conv.weight"])
np.save(sys.argv[3], tensors["7.dft_projection.weight"])
assert "cfnet" not in sys.modules
with open("/proc/self/maps") as f:
    assert "libcfnet" not in f.read(), "libcfnet is mapped"
print("ok")
'''
        env = {k: v for k, v in os.environ.items()
               if k not in ("CFNET_LIBRARY", "PYTHONPATH", "LD_PRELOAD")}
        out2 = os.path.join(self.dir.name, "proj.npy")
        r = subprocess.run([sys.executable, "-c", code, self.path, out, out2], env=env,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.stdout.strip(), "ok", r.stderr)
        np.testing.assert_array_equal(np.load(out), self.net[0].params["weight"])
        np.testing.assert_array_equal(np.load(out2), self.net[7].params["weight"])


    def test_remove_stale_temporaries(self):
        # a dead save's "<path>.tmp.<pid>.<host>" goes; another host's, a live process's and
        # other names stay; the count is returned
        child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                               capture_output=True, text=True, check=True)
        dead = int(child.stdout)
        host = os.uname().nodename
        stale = "%s.tmp.%d.%s" % (self.path, dead, host)
        kept = ["%s.tmp.%d.%s" % (self.path, os.getpid(), host),
                "%s.tmp.%d.other-%s" % (self.path, dead, host), self.path + ".tmp.foo"]
        for name in [stale] + kept:
            with open(name, "wb") as f:
                f.write(b"x")
        self.assertEqual(cfnet.remove_stale_temporaries(self.path), 1)
        self.assertFalse(os.path.exists(stale))
        for name in kept:
            self.assertTrue(os.path.exists(name), name)
        self.assertEqual(cfnet.remove_stale_temporaries(self.path), 0)
        self.net.save(self.path)
        with self.assertRaises(cfnet.CfnetIOError):
            cfnet.remove_stale_temporaries(os.path.join(self.dir.name, "missing", "m"))
        with self.assertRaises(cfnet.InvalidArgumentError):
            cfnet.remove_stale_temporaries("")

if __name__ == "__main__":
    import unittest
    unittest.main()


class NotAModelTest(LeakCheckedTestCase):
    def test_other_files_are_called_not_a_model(self):
        # Loading an image or the ONNX export instead of the model said only "header length
        # 21509198989641 exceeds the limit of 16777216 bytes", as if a limit were to be raised.
        tiff = b"II*\x00\x08\x00\x00\x00" + bytes(200)
        png = b"\x89PNG\r\n\x1a\n" + bytes(100)
        with small_cfnet() as net, tempfile.TemporaryDirectory() as d:
            onnx = net.to_onnx()
            for name, data in (("a.tif", tiff), ("a.png", png), ("m.onnx", onnx),
                               ("notes.txt", b"class names: ER, Golgi\n")):
                path = os.path.join(d, name)
                with open(path, "wb") as f:
                    f.write(data)
                for load in (lambda: cfnet.Network.load(path),
                             lambda: cfnet.Network.from_bytes(data)):
                    with self.assertRaisesRegex(cfnet.LimitError,
                                                "not a libcfnet model file"):
                        load()
            # a model's own header over a lowered cap is only over the limit
            ctx = cfnet.Context(header_bytes=16)
            with self.assertRaises(cfnet.LimitError) as cm:
                cfnet.Network.from_bytes(net.to_bytes(), context=ctx)
            self.assertNotIn("not a libcfnet model", str(cm.exception))
            ctx.close()
