"""Preset classifiers (cfnet.classifier), the family names, the multiply-add count."""
import unittest

import numpy as np

import cfnet
from cfnet_testutil import LeakCheckedTestCase


class PresetTest(LeakCheckedTestCase):
    def test_every_family_by_name_and_enum(self):
        for fam in cfnet.Family:
            name = cfnet.family_name(fam)
            with cfnet.classifier(name, 2, 33, 4, seed=3) as a, \
                    cfnet.classifier(fam, 2, 33, 4, seed=3) as b:
                self.assertEqual(a.input_shape, (2, 33, 33))
                self.assertEqual(a.output_shape, (4,))
                self.assertEqual(a.param_count, b.param_count)
                self.assertGreater(a.multiply_adds, a.param_count)
                x = np.random.default_rng(0).random((2, 2, 33, 33), dtype=np.float32)
                np.testing.assert_array_equal(a.infer(x), b.infer(x))
        self.assertEqual(cfnet.family_name(cfnet.Family.GCNN_DFT), "gcnn-dft")
        with cfnet.classifier("GCNN-DFT", 1, 16, 3) as net:
            self.assertEqual(net[0].kind, cfnet.LayerKind.P4_LIFT)

    def test_demo_networks(self):
        # 50 x 50, width 12, 10 classes: the parameter counts of make demo's table
        want = {"cfnet": 9850, "cnet": 5230, "gcnn": 4564, "gcnn-dft": 9466, "cnn": 5230}
        for name, params in want.items():
            with cfnet.classifier(name, 1, 50, 10, width=12, seed=1) as net:
                self.assertEqual(net.param_count, params, name)

    def test_init_normal(self):
        with cfnet.classifier("cnn", 1, 32, 10, width=32, seed=1) as net:
            biases = [p.copy() for layer in net for name, p in layer.params.items()
                      if name != "weight"]
            self.assertIs(net.init_normal(0.1, seed=5), net)
            weights = np.concatenate([layer.params["weight"].ravel() for layer in net
                                      if "weight" in layer.params])
            self.assertGreater(weights.size, 20000)
            self.assertAlmostEqual(float(weights.std()), 0.1, delta=0.003)
            self.assertAlmostEqual(float(weights.mean()), 0.0, delta=0.003)
            after = [p for layer in net for name, p in layer.params.items() if name != "weight"]
            for a, b in zip(biases, after):
                np.testing.assert_array_equal(a, b)
            with self.assertRaises(cfnet.InvalidArgumentError):
                net.init_normal(0.0)

    def test_invariant_families(self):
        x = np.random.default_rng(1).random((3, 1, 28, 28), dtype=np.float32)
        for name in ("cfnet", "gcnn-dft"):
            with cfnet.classifier(name, 1, 28, 5, width=6, seed=2) as net:
                self.assertLessEqual(net.invariance(x), 1e-5)

    def test_errors(self):
        with self.assertRaises(cfnet.InvalidArgumentError) as cm:
            cfnet.classifier("cfnet", 1, 15, 3)
        self.assertIn("16 to 512", cm.exception.message)
        with self.assertRaises(cfnet.InvalidArgumentError) as cm:
            cfnet.classifier("resnet", 1, 32, 3)
        self.assertIn("gcnn-dft", cm.exception.message)
        with self.assertRaises(ValueError):
            cfnet.classifier(9, 1, 32, 3)
        with self.assertRaises(ValueError):
            cfnet.family_name(0)
        with self.assertRaises(cfnet.InvalidArgumentError):
            cfnet.classifier("cnn", 1, 32, 3, width=-1)


if __name__ == "__main__":
    unittest.main()
