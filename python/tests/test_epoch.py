"""Network.train_epoch and Network.fit over cfnet_network_train_epoch: progress, cancel,
orders, resume."""
import os
import signal
import sys
import threading
import time
import unittest

import numpy as np

import cfnet
from cfnet_testutil import LeakCheckedTestCase, rotated_patterns


def make_net(seed=4):
    net = cfnet.classifier("cfnet", 1, 16, 3, width=4, seed=seed)
    net.configure(learning_rate=5e-3, aug_rotation="any", aug_jitter=1)
    return net


class EpochTest(LeakCheckedTestCase):
    def setUp(self):
        super().setUp()
        self.x, self.y = rotated_patterns(10, S=16, seed=3)

    def test_progress_values_and_results(self):
        calls = []
        with make_net() as net:
            mean, acc = net.train_epoch(self.x, self.y, batch=4,
                                        progress=lambda *a: calls.append(a))
            self.assertEqual([c[:2] for c in calls], [(1, 3), (2, 3), (3, 3)])
            self.assertEqual(calls[-1][3], acc)
            self.assertTrue(0 <= acc <= 1)
            self.assertEqual(net.step_count, 3)
            self.assertTrue(np.isfinite(mean))

    def test_fit_equals_train_epochs_and_resumes_bit_identically(self):
        with make_net() as a, make_net() as b:
            losses = a.fit(self.x, self.y, epochs=2, batch=4)
            self.assertEqual(len(losses), 2)
            m1, _ = b.train_epoch(self.x, self.y, batch=4)
            data = b.to_bytes(optimizer=True)
            with cfnet.Network.from_bytes(data) as c:
                m2, _ = b.train_epoch(self.x, self.y, batch=4)
                m2c, _ = c.train_epoch(self.x, self.y, batch=4)
                self.assertEqual(losses, [m1, m2])
                self.assertEqual(m2, m2c)
                self.assertEqual(a.to_bytes(optimizer=True), c.to_bytes(optimizer=True))

    def test_host_order_and_rng(self):
        with make_net() as a, make_net() as b:
            a.train_epoch(self.x, self.y, batch=3, order=[1, 1, 2, 9, 0])
            self.assertEqual(a.step_count, 2)
            b.fit(self.x, self.y, epochs=1, batch=3, order=lambda e: [1, 1, 2, 9, 0])
            self.assertEqual(a.to_bytes(optimizer=True), b.to_bytes(optimizer=True))
            with self.assertRaises(cfnet.InvalidArgumentError):
                a.train_epoch(self.x, self.y, batch=3, order=[0, 10])
            with self.assertRaises(ValueError):
                a.train_epoch(self.x, self.y, batch=3, order=[])
            # Indices are not truncated, parsed or flattened (they used to be, silently).
            for bad, exc in (([0.5, 1.7], TypeError), (np.array([1.0, 2.0]), TypeError),
                             (["0", "1"], TypeError), ([True, False], TypeError),
                             (np.array([[0, 1], [2, 3]]), ValueError)):
                with self.assertRaisesRegex(exc, "order must be"):
                    a.train_epoch(self.x, self.y, batch=3, order=bad)
                # named as fit's (it was "train_epoch: order ...")
                with self.assertRaisesRegex(exc, r"^fit: order\(0\) must be"):
                    a.fit(self.x, self.y, epochs=1, batch=3, order=lambda e: bad)
                with self.assertRaisesRegex(exc, r"^fit: order must be"):
                    a.fit(self.x, self.y, epochs=1, batch=3, order=bad)
            # fit checks the order given even for no epochs, as it checks images and labels
            # (a list of floats used to pass with epochs=0 and raise with epochs=1)
            for epochs in (0, 1):
                with self.assertRaisesRegex(TypeError, "^fit: order must be an integer array of "
                                            "sample indices, not dtype float64"):
                    a.fit(self.x, self.y, epochs=epochs, batch=3, order=[0.5, 1.0])
            self.assertEqual(a.fit(self.x, self.y, epochs=0, order=[1, 0]), [])
            with self.assertRaises(cfnet.InvalidArgumentError):
                a.train_epoch(self.x, self.y, batch=0)
            self.assertEqual(a.step_count, 2)
            a.fit(self.x, self.y, epochs=1, batch=5, rng=np.random.default_rng(1))
            self.assertEqual(a.step_count, 4)
            a.train_epoch(self.x, self.y, batch=3, order=np.array([0, 1], dtype=np.uint8))
            self.assertEqual(a.step_count, 5)

    def test_returning_true_cancels(self):
        with make_net() as net:
            with self.assertRaises(cfnet.CancelledError) as cm:
                net.train_epoch(self.x, self.y, batch=2, progress=lambda s, n, l, a: s == 2)
            self.assertEqual(net.step_count, 2)
            self.assertTrue(np.isfinite(cm.exception.mean_loss))
            self.assertIn("step 2 of 5", cm.exception.message)
            # fit stops early and returns what it has; the network is saveable and usable
            seen = []
            losses = net.fit(self.x, self.y, epochs=3, batch=2,
                             progress=lambda e, s, n, l, a: seen.append((e, s)) or (e, s) == (1, 3))
            self.assertEqual(len(losses), 2)
            self.assertEqual(seen[-1], (1, 3))
            self.assertEqual(net.step_count, 2 + 5 + 3)
            with cfnet.Network.from_bytes(net.to_bytes(optimizer=True)) as copy:
                self.assertEqual(copy.step_count, 10)
                np.testing.assert_array_equal(copy.infer(self.x), net.infer(self.x))

    def test_exception_in_progress_cancels_and_propagates(self):
        class Stop(Exception):
            pass

        def boom(epoch, step, steps, loss, acc):
            if step == 3:
                raise Stop("from the callback")
        with make_net() as net:
            with self.assertRaises(Stop):
                net.fit(self.x, self.y, epochs=2, batch=2, progress=boom)
            self.assertEqual(net.step_count, 3)


class InterruptTest(LeakCheckedTestCase):
    """Ctrl-C (SIGINT) during a long epoch stops it after the current step with
    KeyboardInterrupt, whether or not a progress function is given, and the network stays
    usable. It used to be dropped by ctypes at a callback's entry ("Exception ignored"): fit
    then returned as if nothing had happened, train_epoch raised CancelledError, and without a
    progress function the interrupt waited for the end of the epoch."""

    STEPS = 40000

    def interrupt_during(self, name, run, inside="train_epoch", expect=KeyboardInterrupt):
        main = threading.main_thread().ident
        done = threading.Event()

        def kill():
            # Wait until the main thread is inside ``inside`` (the C call), then Ctrl-C.
            deadline = time.monotonic() + 60
            while not done.is_set() and time.monotonic() < deadline:
                frame = sys._current_frames().get(main)
                names = set()
                while frame is not None:
                    names.add(frame.f_code.co_name)
                    frame = frame.f_back
                if inside in names:
                    time.sleep(0.1)
                    os.kill(os.getpid(), signal.SIGINT)
                    return
                time.sleep(0.01)
        t = threading.Thread(target=kill)
        t.start()
        try:
            with self.assertRaises(expect, msg=name):
                run()
        finally:
            done.set()
            t.join()

    def test_ctrl_c_stops_the_epoch_soon(self):
        x, y = rotated_patterns(10, S=16, seed=3)
        order = np.zeros(2 * self.STEPS, dtype=np.int64)
        self.assertIs(signal.getsignal(signal.SIGINT), signal.default_int_handler)
        with make_net() as net:
            cases = [("train_epoch", lambda: net.train_epoch(x, y, batch=2, order=order)),
                     ("train_epoch with progress",
                      lambda: net.train_epoch(x, y, batch=2, order=order,
                                              progress=lambda *a: False)),
                     ("fit with progress",
                      lambda: net.fit(x, y, epochs=2, batch=2, order=order,
                                      progress=lambda *a: None)),
                     ("fit", lambda: net.fit(x, y, epochs=2, batch=2, order=order))]
            for name, run in cases:
                before = net.step_count
                self.interrupt_during(name, run)
                self.assertLess(net.step_count - before, self.STEPS, name)
                # Python's handler is back, and the network is consistent and usable.
                self.assertIs(signal.getsignal(signal.SIGINT), signal.default_int_handler)
                self.assertEqual(net.predict(x).shape, (10,))
                self.assertTrue(np.isfinite(net.evaluate(x, y)[0]))
            net.train_epoch(x, y, batch=5)

    def test_a_host_sigint_handler_stops_the_epoch_and_its_exception_propagates(self):
        # A host's own SIGINT handler is called at the next step's check point, inside the
        # call, and its exception stops the epoch and propagates; it used to run at the
        # progress callback's entry, where ctypes printed its exception as "ignored" and the
        # epoch went on.
        class Stop(Exception):
            pass

        calls = []

        def handler(signum, frame):
            calls.append(signum)
            raise Stop()
        x, y = rotated_patterns(10, S=16, seed=3)
        order = np.zeros(2 * self.STEPS, dtype=np.int64)
        old = signal.signal(signal.SIGINT, handler)
        try:
            with make_net() as net:
                for name, progress in (("without progress", None),
                                       ("with progress", lambda *a: False)):
                    before = net.step_count
                    self.interrupt_during(
                        name, lambda: net.train_epoch(x, y, batch=2, order=order,
                                                      progress=progress), expect=Stop)
                    self.assertLess(net.step_count - before, self.STEPS, name)
                    self.assertIs(signal.getsignal(signal.SIGINT), handler)
                self.assertEqual(len(calls), 2)
                self.assertEqual(net.predict(x).shape, (10,))
        finally:
            signal.signal(signal.SIGINT, old)

    def test_a_handler_set_during_the_call_stays(self):
        # A progress function (or sum hook) that installs a SIGINT handler of its own, or
        # SIG_IGN, keeps it after the call; the guard put the handler from before the call back
        # over it.
        def mine(signum, frame):
            pass
        x, y = rotated_patterns(10, S=16, seed=3)
        old = signal.getsignal(signal.SIGINT)
        try:
            with make_net() as net:
                for new in (mine, signal.SIG_IGN):
                    signal.signal(signal.SIGINT, signal.default_int_handler)

                    def progress(step, steps, loss, accuracy):
                        signal.signal(signal.SIGINT, new)
                        return False
                    net.train_epoch(x, y, batch=5, progress=progress)
                    self.assertIs(signal.getsignal(signal.SIGINT), new, "train_epoch")
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    net.set_sum_hook(lambda kind, a: signal.signal(signal.SIGINT, new))
                    net.train_step(x, y)
                    net.set_sum_hook(None)
                    self.assertIs(signal.getsignal(signal.SIGINT), new, "train_step")
        finally:
            signal.signal(signal.SIGINT, old)

    def test_ctrl_c_during_a_train_step_with_a_sum_hook(self):
        # The hook's trampoline used to drop the interrupt and fail the step with a
        # StateError ("the sum hook failed"); now the step completes and KeyboardInterrupt
        # follows.
        x, y = rotated_patterns(12, S=16, seed=3)
        calls = []
        with make_net() as net:
            net.set_sum_hook(lambda kind, a: calls.append(kind))

            def loop():
                for _ in range(self.STEPS):
                    net.train_step(x, y)
            self.interrupt_during("train_step", loop, inside="train_step")
            self.assertLess(net.step_count, self.STEPS)
            self.assertIs(signal.getsignal(signal.SIGINT), signal.default_int_handler)
            net.set_sum_hook(None)
            self.assertTrue(np.isfinite(net.train_step(x, y)))


    def test_ctrl_c_never_lands_between_a_borrowed_tensor_and_its_release(self):
        # A Ctrl-C arriving as a call releases its temporary tensor over the caller's array
        # (Borrow) used to raise KeyboardInterrupt before the release: the tensor leaked. Here
        # the SIGINT is sent from inside the release itself, deterministically.
        from cfnet import _lib
        real_free = _lib.free_tensor

        def free_after_sigint(h):
            os.kill(os.getpid(), signal.SIGINT)
            real_free(h)
        x, y = rotated_patterns(6, S=16, seed=3)
        with make_net() as net:
            calls = [("train_step", lambda: net.train_step(x, y)),
                     ("train_epoch", lambda: net.train_epoch(x, y, batch=3)),
                     ("infer", lambda: net.infer(x)),
                     ("probabilities", lambda: net.probabilities(x)),
                     ("predict", lambda: net.predict(x)),
                     ("evaluate", lambda: net.evaluate(x, y)),
                     ("invariance", lambda: net.invariance(x))]
            for name, call in calls:
                _lib.free_tensor = free_after_sigint
                try:
                    with self.assertRaises(KeyboardInterrupt, msg=name):
                        call()
                finally:
                    _lib.free_tensor = real_free
                self.assertIs(signal.getsignal(signal.SIGINT), signal.default_int_handler)
            net.set_sum_hook(lambda kind, a: None)
            _lib.free_tensor = free_after_sigint
            try:
                with self.assertRaises(KeyboardInterrupt):
                    net.train_step(x, y)
            finally:
                _lib.free_tensor = real_free
            net.set_sum_hook(None)
            self.assertTrue(np.isfinite(net.train_step(x, y)))


if __name__ == "__main__":
    unittest.main()
