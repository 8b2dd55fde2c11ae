"""examples/python/train.py runs, trains, checks invariance and writes a loadable model."""
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import cfnet
from cfnet_testutil import REPO

EXAMPLE = os.path.join(REPO, "examples", "python", "train.py")


class ExampleTest(unittest.TestCase):
    def test_train_example(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "model.safetensors")
            r = subprocess.run([sys.executable, EXAMPLE, "--train", "150", "--test", "60",
                                "--epochs", "3", "--out", out],
                               capture_output=True, text=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("reloaded network gives identical outputs; classes ring, bar, blob",
                          r.stdout)
            self.assertIn("quarter turns", r.stdout)
            with cfnet.Network.load(out) as net:
                self.assertEqual(net.input_shape, (1, 16, 16))
                self.assertEqual(net.output_shape, (3,))
                self.assertEqual(net[0].kind, cfnet.LayerKind.CONIC_CONV)
                self.assertEqual(net.metadata["class_names"], '["ring", "bar", "blob"]')
                x = np.zeros((1, 1, 16, 16), np.float32)
                self.assertEqual(net.predict(x).shape, (1,))

    def test_bad_arguments(self):
        """A wrong argument gives a one-line message and exit status 2 (usage) or 1 (an
        unwritable --out), not a traceback; a size outside the presets' 16 to 512 is refused
        before any image is made."""
        with tempfile.TemporaryDirectory() as d:
            cases = [(["--batch", "0"], 2, "argument --batch"),
                     (["--epochs", "-1"], 2, "argument --epochs"),
                     (["--train", "x"], 2, "argument --train"),
                     (["--seed", "-1"], 2, "argument --seed"),
                     (["--size", "10", "--train", "3", "--test", "3"], 2, "16 to 512"),
                     (["--size", "100000"], 2, "16 to 512"),
                     (["--train", "20", "--test", "5", "--epochs", "1", "--out",
                       os.path.join(d, "missing", "m.safetensors")], 1, "network_save")]
            for args, status, text in cases:
                r = subprocess.run([sys.executable, EXAMPLE] + args, cwd=d,
                                   capture_output=True, text=True, timeout=600)
                self.assertEqual(r.returncode, status, (args, r.stdout, r.stderr))
                self.assertIn(text, r.stderr, args)
                self.assertNotIn("Traceback", r.stderr, args)
            self.assertEqual(os.listdir(d), [])


if __name__ == "__main__":
    unittest.main()
