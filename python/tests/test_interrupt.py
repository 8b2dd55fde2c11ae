"""Ctrl-C stops Network.infer, predict, probabilities and invariance inside the C call: every
Network installs a cfnet_network_set_interrupt callback, which libcfnet asks between layers
and between parts of the batch in per-sample layers; results are bit-identical to calls
without it."""
import ctypes
import os
import signal
import threading
import traceback
import unittest

import numpy as np

import cfnet
from cfnet import _lib
from cfnet_testutil import LeakCheckedTestCase, interrupt_child


def bits(a):
    a = np.asarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else a.dtype)


class InterruptCallbackTest(LeakCheckedTestCase):
    def setUp(self):
        super().setUp()
        self.x = np.random.default_rng(4).standard_normal((1037, 1, 16, 16)).astype(np.float32)

    def results(self, net, x):
        return (bits(net.infer(x)), bits(net.probabilities(x)), net.predict(x),
                net.invariance(x[:50], reflect=True))

    def test_results_are_bit_identical_to_calls_without_the_callback(self):
        # cfnet has a DFT projection and dense layers (batch-dependent GEMMs) after conic
        # convolutions that run in parts of the batch; cnn plain convolutions.
        for family in ("cfnet", "cnn", "gcnn-p4m"):
            for threads in (1, 2):
                with cfnet.classifier(family, channels=1, size=16, classes=7, seed=3) as net, \
                        cfnet.classifier(family, channels=1, size=16, classes=7, seed=3) as bare:
                    net.set_option("threads", threads)
                    bare.set_option("threads", threads)
                    _lib.load().call("cfnet_network_set_interrupt", bare.handle, None, None)
                    want = self.results(bare, self.x)
                    got = self.results(net, self.x)
                    for w, g in zip(want, got):
                        np.testing.assert_array_equal(w, g, err_msg=(family, threads))
                    # from another thread too (the callback then never stops anything)
                    other = []
                    t = threading.Thread(target=lambda: other.append(self.results(net, self.x)))
                    t.start()
                    t.join()
                    for w, g in zip(want, other[0]):
                        np.testing.assert_array_equal(w, g, err_msg=(family, threads))

    def test_every_network_has_the_callback(self):
        # Created, loaded, copied: a callback that stops at once shows it is asked.
        calls = []

        def stop(user, done, total):
            calls.append((done, total))
            return 1
        cb = _lib.INTERRUPT_FN(stop)
        with cfnet.classifier("cnn", channels=1, size=16, classes=7, seed=3) as net:
            with cfnet.Network.from_bytes(net.to_bytes()) as copy:
                for n in (net, copy):
                    n.infer(self.x[:2])  # its own callback: nothing recorded, nothing stopped
                    _lib.load().call("cfnet_network_set_interrupt", n.handle,
                                     ctypes.cast(cb, ctypes.c_void_p), None)
                    with self.assertRaisesRegex(cfnet.CancelledError,
                                                "network_infer: stopped by the interrupt "
                                                "callback after 0 of"):
                        n.infer(self.x[:2])
        self.assertEqual(len(calls), 2)

    def test_a_signal_handler_exception_stops_the_call_and_propagates(self):
        # A host's own SIGINT handler that raises: its exception stops the C call at the next
        # check (it comes out of the binding's callback, inside the call) and propagates.
        class Stop(Exception):
            pass

        where = []

        def handler(signum, frame):
            where.append([f.name for f in traceback.extract_stack()])
            raise Stop()
        old = signal.signal(signal.SIGINT, handler)
        try:
            with cfnet.classifier("cnn", channels=1, size=16, classes=7, seed=3) as net:
                big = np.tile(self.x, (4, 1, 1, 1))
                timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
                timer.start()
                try:
                    with self.assertRaises(Stop):
                        for _ in range(100):  # until the signal has come
                            net.infer(big)
                finally:
                    timer.cancel()
                self.assertEqual(len(where), 1)
                self.assertIn("_interrupt_check", where[0])  # called inside the C call
                self.assertEqual(net.predict(self.x[:5]).shape, (5,))  # still usable
        finally:
            signal.signal(signal.SIGINT, old)


# The child runs one method on 600 images, interrupted at the call's first check point
# (cfnet_testutil.run_interrupted).
CHILD = r"""
import numpy as np
import cfnet
method = sys.argv[1]
net = cfnet.Network(1, 16, 16, seed=1)
net.extend([cfnet.conic_conv(48, 3, R=2), cfnet.relu(), cfnet.conic_conv(48, 3, R=2),
            cfnet.relu(), cfnet.pool(), cfnet.dft_projection(8), cfnet.dft_magnitude(),
            cfnet.dense(3)])
call = getattr(net, method)
x = np.random.default_rng(0).random((600, 1, 16, 16), dtype=np.float32)
ref = call(x)
outcome, checks = run_interrupted(call, x)
print(outcome)
print(len(checks))
print(np.array_equal(np.asarray(call(x)), np.asarray(ref)))  # still usable
"""


class InferenceInterruptTest(unittest.TestCase):
    def test_ctrl_c_stops_a_long_inference_call_inside_it(self):
        # It used to finish the whole call first, and raise KeyboardInterrupt after it. The
        # SIGINT arrives while the call waits at its first check point: stopped there, the call
        # asks no further one (going on to the end, it asks 8, invariance 32).
        for method in ("infer", "predict", "probabilities", "invariance"):
            with self.subTest(method=method):
                out = interrupt_child(self, CHILD, method)
                self.assertEqual(out, ["interrupted", "1", "True"])

    def test_ctrl_c_reaches_a_child_that_inherits_sigint_ignored(self):
        # A test run started with SIGINT ignored (nohup, a background job of a script): the
        # child inherited the ignore, so Python installed no KeyboardInterrupt handler, the
        # SIGINT was lost and the child waited 300 s at its check point.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            out = interrupt_child(self, CHILD, "infer", timeout=120)
        finally:
            signal.signal(signal.SIGINT, old)
        self.assertEqual(out, ["interrupted", "1", "True"])


if __name__ == "__main__":
    unittest.main()
