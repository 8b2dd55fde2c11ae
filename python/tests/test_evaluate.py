"""Network.evaluate runs one cfnet_network_evaluate call per batch so that Ctrl-C stops it
between batches; its results and errors are those of one call over all the images."""
import ctypes
import unittest

import numpy as np

import cfnet
from cfnet import _lib
from cfnet._tensor import Borrow
from cfnet_testutil import LeakCheckedTestCase, interrupt_child


def one_call(net, x, y, batch):
    """(loss, accuracy) from a single cfnet_network_evaluate over all of x."""
    loss, acc = ctypes.c_float(), ctypes.c_float()
    y = np.ascontiguousarray(y, dtype=np.int32)
    with Borrow(x) as tx:
        _lib.load().call("cfnet_network_evaluate", net.handle, tx,
                         y.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), y.size, batch,
                         ctypes.byref(loss), ctypes.byref(acc))
    return loss.value, acc.value


class EvaluateInBatchesTest(LeakCheckedTestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(4)
        self.x = rng.standard_normal((1037, 1, 16, 16)).astype(np.float32)
        self.y = rng.integers(0, 7, 1037).astype(np.int32)

    def test_results_are_bit_identical_to_one_call(self):
        # cfnet has a DFT projection, whose GEMM's last bits depend on the batch: the batches
        # must be the library's own.
        for family in ("cfnet", "cnn"):
            with cfnet.classifier(family, channels=1, size=16, classes=7, seed=3) as net:
                for batch in (0, 1, 7, 100, 128, 1036, 1037, 5000):
                    self.assertEqual(net.evaluate(self.x, self.y, batch=batch),
                                     one_call(net, self.x, self.y, batch), (family, batch))
                self.assertEqual(net.evaluate(self.x[:3], self.y[:3]),
                                 one_call(net, self.x[:3], self.y[:3], 0))

    def test_errors_count_images_among_all_of_them(self):
        # A later batch's error names the image or label by its index in the whole set, as
        # the library does for one call.
        with cfnet.classifier("cnn", channels=1, size=16, classes=7, seed=3) as net:
            x, y = self.x.copy(), self.y.copy()
            x[777, 0, 3, 3] = np.nan
            y[555] = 9
            with self.assertRaisesRegex(cfnet.InvalidArgumentError,
                                        r"^network_evaluate: image 777 contains NaN"):
                net.evaluate(x, y)
            x[777, 0, 3, 3] = 0
            with self.assertRaisesRegex(cfnet.InvalidArgumentError,
                                        r"^network_evaluate: label 555 is 9, must be in \[0, 7\)"):
                net.evaluate(x, y)
            with self.assertRaisesRegex(cfnet.InvalidArgumentError, "batch -1 is negative"):
                net.evaluate(self.x, self.y, batch=-1)
        with cfnet.Network(1, 16, 16) as net:
            net.append(cfnet.dense(7))
            net[0].params["weight"][...] = 1e30
            x = np.zeros_like(self.x)
            x[555] = 3e38  # finite, but its output is not
            with self.assertRaisesRegex(cfnet.InvalidArgumentError,
                                        "the output for image 555 is not finite"):
                net.evaluate(x, self.y, batch=10)


# The child evaluates 1000 images (ten of the binding's calls), interrupted at the first check
# point of the first call (cfnet_testutil.run_interrupted).
CHILD = r"""
import numpy as np
import cfnet
net = cfnet.Network(1, 16, 16, seed=1)
net.extend([cfnet.conic_conv(48, 3, R=2), cfnet.relu(), cfnet.conic_conv(48, 3, R=2),
            cfnet.relu(), cfnet.pool(), cfnet.dft_projection(8), cfnet.dft_magnitude(),
            cfnet.dense(3)])
x = np.random.default_rng(0).random((1000, 1, 16, 16), dtype=np.float32)
y = (np.arange(1000) % 3).astype(np.int32)
ref = net.evaluate(x, y)
outcome, checks = run_interrupted(net.evaluate, x, y)
print(outcome)
print(len(checks))
print(net.evaluate(x, y) == ref)  # still usable
"""


class EvaluateInterruptTest(unittest.TestCase):
    def test_ctrl_c_stops_a_long_evaluate_inside_the_current_batch(self):
        # It used to finish the whole evaluation first. The SIGINT arrives while the first
        # batch's call waits at its first check point: stopped there, evaluate asks no further
        # one (neither in that batch nor in a later one).
        out = interrupt_child(self, CHILD)
        self.assertEqual(out, ["interrupted", "1", "True"])


if __name__ == "__main__":
    unittest.main()
