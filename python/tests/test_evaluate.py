"""Network.evaluate runs one cfnet_network_evaluate call per batch so that Ctrl-C stops it
between batches; its results and errors are those of one call over all the images."""
import ctypes
import os
import signal
import subprocess
import sys
import time
import unittest

import numpy as np

import cfnet
from cfnet import _lib
from cfnet._tensor import Borrow
from cfnet_testutil import LeakCheckedTestCase


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


# The child evaluates as many images as take it about TARGET seconds, after measuring its
# speed on two batches, and says how long the evaluation was expected to take.
CHILD = r"""
import sys, time
import numpy as np
import cfnet
TARGET = 6.0
net = cfnet.Network(1, 16, 16, seed=1)
net.extend([cfnet.conic_conv(48, 3, R=2), cfnet.relu(), cfnet.conic_conv(48, 3, R=2),
            cfnet.relu(), cfnet.pool(), cfnet.dft_projection(8), cfnet.dft_magnitude(),
            cfnet.dense(3)])
x = np.random.default_rng(0).random((200, 1, 16, 16), dtype=np.float32)
y = (np.arange(200) % 3).astype(np.int32)
net.evaluate(x, y)
t = time.monotonic()
net.evaluate(x, y)
per_batch = (time.monotonic() - t) / 2
batches = int(min(max(TARGET / per_batch, 20), 400))
x, y = np.tile(x, (batches // 2, 1, 1, 1)), np.tile(y, batches // 2)
print("ready %.3f" % (per_batch * batches), flush=True)
t = time.monotonic()
try:
    net.evaluate(x, y)
except KeyboardInterrupt:
    print("interrupted after %.3f" % (time.monotonic() - t), flush=True)
    print(net.evaluate(x[:300], y[:300]) == net.evaluate(x[:300], y[:300]), flush=True)
    sys.exit(0)
print("finished after %.3f" % (time.monotonic() - t), flush=True)
"""


class EvaluateInterruptTest(unittest.TestCase):
    def test_ctrl_c_stops_a_long_evaluate_after_the_current_batch(self):
        # It used to finish the whole evaluation first.
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        try:
            ready = proc.stdout.readline().split()
            if not ready:
                self.fail("the child failed: %s" % proc.communicate()[1])
            expected = float(ready[1])
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=4 * expected + 60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        self.assertEqual(proc.returncode, 0, err)
        lines = out.split("\n")
        self.assertTrue(lines[0].startswith("interrupted after "), out)
        elapsed = float(lines[0].split()[-1])
        # About 0.5 s plus one batch; without the interrupt the whole evaluation, ~6 s.
        self.assertLess(elapsed, expected / 2, out)
        self.assertEqual(lines[1], "True", out)  # the network is still usable


if __name__ == "__main__":
    unittest.main()
