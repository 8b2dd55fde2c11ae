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


if __name__ == "__main__":
    unittest.main()
