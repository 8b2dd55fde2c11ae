"""Lifetime edges a user meets: numpy views that outlive an explicit close(), and copies or
pickles of handle-owning objects. Each case once read freed memory (a segfault for large
tensors) or shared a C pointer between two Python objects."""
import copy
import gc
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np

import cfnet
from cfnet import _lib
from cfnet_testutil import REPO, LeakCheckedTestCase, small_cfnet


class ViewsOutliveCloseTest(LeakCheckedTestCase):
    def test_parameter_view_outlives_with_block_of_network(self):
        before = _lib.live["network"]
        with small_cfnet() as net:
            w = net[0].params["weight"]
            g = net[0].grads["weight"]
            expected = w.copy()
        self.assertTrue(net.closed)
        self.assertEqual(_lib.live["network"], before + 1)  # kept for the views
        np.testing.assert_array_equal(w, expected)
        w[...] = 1.0  # still the network's memory: writable, not freed
        del w
        self.assertEqual(_lib.live["network"], before + 1)  # g still views it
        del g
        self.assertEqual(_lib.live["network"], before)  # freed with the last view
        self.assertIn("closed", repr(net))

    def test_close_without_views_frees_at_once(self):
        before = _lib.live["network"]
        net = small_cfnet()
        net[0].params["weight"].copy()  # the view is gone before close
        net.close()
        self.assertEqual(_lib.live["network"], before)

    def test_tensor_view_outlives_close(self):
        before = _lib.live["tensor"]
        t = cfnet.Tensor((3, 4))
        t.fill(2.0)
        a = t.numpy()
        t.close()
        self.assertEqual(_lib.live["tensor"], before + 1)
        self.assertEqual(float(a.sum()), 24.0)
        with self.assertRaises(ValueError):
            t.numpy()
        del a
        self.assertEqual(_lib.live["tensor"], before)

    def test_free_standing_layer_view_outlives_close(self):
        before = _lib.live["layer"]
        d = cfnet.dense(3)
        d.setup((4,))
        b = d.params["bias"]
        d.close()
        self.assertEqual(_lib.live["layer"], before + 1)
        b[:] = 5.0
        self.assertEqual(float(b.sum()), 15.0)
        del b
        self.assertEqual(_lib.live["layer"], before)

    def test_context_is_freed_after_a_kept_network(self):
        before = dict(_lib.live)
        ctx = cfnet.Context()
        net = cfnet.Network(1, 8, 8, context=ctx)
        net.append(cfnet.dense(2))
        w = net[0].params["weight"]
        net.close()
        ctx.close()  # the network is closed: allowed, but its memory still needs the context
        self.assertTrue(ctx.closed)
        self.assertEqual(_lib.live["context"], before["context"] + 1)
        self.assertEqual(_lib.live["network"], before["network"] + 1)
        del w
        self.assertEqual(_lib.live["network"], before["network"])
        self.assertEqual(_lib.live["context"], before["context"])

    def test_large_views_after_close_do_not_crash(self):
        # Large tensors are unmapped when freed: reading them after a premature free crashed
        # the interpreter. Run in a child so a crash fails the test instead of the suite.
        code = textwrap.dedent("""
            import numpy as np, cfnet
            with cfnet.Network(1, 64, 64) as net:
                net.append(cfnet.dense(3000))
                w = net[0].params["weight"]
                expected = float(w.sum())
            with cfnet.Tensor((1000, 1000)) as t:
                a = t.numpy()
            w[...] = 1.0
            a[...] = 2.0
            print(w.shape, float(a.sum()), float(w.sum()) != expected)
        """)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(os.environ), timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "(3000, 4096) 2000000.0 True")


class CloseInsideCallbacksTest(LeakCheckedTestCase):
    def test_close_from_progress_or_sum_hook_does_not_free_under_the_call(self):
        # The network used to be freed while train_epoch / train_step were still running on
        # it: a segfault. Run in a child so a crash fails the test instead of the suite.
        code = textwrap.dedent("""
            import numpy as np, cfnet
            from cfnet import _lib
            x = np.random.default_rng(0).standard_normal((6, 1, 16, 16)).astype(np.float32)
            y = np.arange(6) % 3
            def make():
                net = cfnet.Network(1, 16, 16, seed=1)
                return net.extend([cfnet.conic_conv(8, 3, R=2), cfnet.relu(), cfnet.pool(),
                                   cfnet.dft_projection(8), cfnet.dft_magnitude(),
                                   cfnet.dense(3)])
            net = make()
            try:
                net.train_epoch(x, y, batch=2, progress=lambda *a: net.close())
            except cfnet.CancelledError as e:
                print("cancelled", net.closed, net.step_count if not net.closed else 1)
            net = make()
            net.set_sum_hook(lambda kind, a: net.close())
            try:
                net.train_step(x, y)
            except ValueError as e:
                print("closed:", e)
            print(net.closed, _lib.live["network"])
        """)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(os.environ), timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split("\n")[0], "cancelled True 1")
        self.assertEqual(r.stdout.strip().split("\n")[-1], "True 0")  # both freed after


class ReplacingViewedTensorsTest(LeakCheckedTestCase):
    def test_setup_and_append_refuse_while_views_are_alive(self):
        # Both replace the layer's tensors: a view kept across them read freed memory.
        d = cfnet.dense(3)
        d.setup((1, 4, 4), seed=1)
        w = d.params["weight"]
        with self.assertRaisesRegex(cfnet.StateError, "view"):
            d.setup((1, 4, 4), seed=2)
        with cfnet.Network(1, 4, 4) as net:
            with self.assertRaisesRegex(cfnet.StateError, "view"):
                net.append(d)
            self.assertFalse(d.consumed)  # left alone
            self.assertEqual(len(net), 0)
            kept = w.copy()
            del w
            net.append(d)  # no view left: fine
            np.testing.assert_array_equal(d.params["weight"].shape, kept.shape)


class NoCopiesTest(LeakCheckedTestCase):
    def test_handles_cannot_be_copied_or_pickled(self):
        net = small_cfnet()
        layer = cfnet.dense(3)
        objs = [net, net[0], layer, cfnet.Tensor((2,)), cfnet.Context()]
        for obj in objs:
            for fn in (copy.copy, copy.deepcopy, pickle.dumps):
                with self.assertRaisesRegex(TypeError, "cannot copy or pickle a cfnet"):
                    fn(obj)
        with self.assertRaisesRegex(TypeError, "to_bytes"):
            copy.deepcopy(net)
        x = np.zeros((2, 1, 16, 16), np.float32)
        self.assertEqual(net.infer(x).shape, (2, 3))  # untouched by the attempts
        twin = cfnet.Network.from_bytes(net.to_bytes(optimizer=True))  # the documented copy
        np.testing.assert_array_equal(twin.infer(x), net.infer(x))
        for obj in objs + [twin]:
            obj.close()
        gc.collect()


CLOSE_DURING_CALL = r"""
import gc, sys, threading, time
import numpy as np
import cfnet
from cfnet import _lib

def run(name, obj, call):
    main = threading.main_thread()
    out = []
    def work():
        try:
            out.append(call())
        except ValueError as e:  # closed before the call began
            out.append(e)
    t = threading.Thread(target=work)
    t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and t.is_alive():  # wait until the worker is in the call
        frame = sys._current_frames().get(t.ident)
        names = set()
        while frame is not None:
            names.add(frame.f_code.co_name)
            frame = frame.f_back
        if name in names:
            break
        time.sleep(0.001)
    time.sleep(0.02)
    obj.close()
    t.join()
    assert obj.closed
    print(name, "finished" if not isinstance(out[0], Exception) else "refused")

x = np.random.default_rng(0).random((300, 1, 48, 48), dtype=np.float32)
y = np.arange(300) % 3
for name, call in [("evaluate", lambda n: n.evaluate(x, y)), ("infer", lambda n: n.infer(x)),
                   ("invariance", lambda n: n.invariance(x)),
                   ("train_epoch", lambda n: n.train_epoch(x, y, batch=20)),
                   ("forward", lambda n: n[0].forward(x))]:
    net = cfnet.classifier("cfnet", 1, 48, 3, width=4)
    run(name, net, lambda: call(net))
    del net
layer = cfnet.conic_conv(8, 5, R=4)
layer.setup((1, 48, 48))
run("forward", layer, lambda: layer.forward(x))
del layer
gc.collect()
assert not any(_lib.live.values()), _lib.live
print("done")
"""


class CloseFromAnotherThreadTest(LeakCheckedTestCase):
    def test_close_while_another_thread_is_in_a_call_does_not_free_under_it(self):
        # close() freed the network (or layer) while another thread's evaluate, infer,
        # invariance or layer forward was running in it: a crash. The memory is now kept until
        # the call has returned. (In a child process, so that a crash is a failure here.)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.join(REPO, "python"),
                                                        env.get("PYTHONPATH")) if p)
        r = subprocess.run([sys.executable, "-c", CLOSE_DURING_CALL], env=env,
                           capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, "status %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
        self.assertIn("done", r.stdout)


class CloseDuringEveryCallTest(LeakCheckedTestCase):
    """close() from another thread can land while any C call of a Network, its Metadata or a
    Layer runs (ctypes releases the GIL): here the library function itself closes the object
    before it runs, deterministically, and must still find the memory valid."""

    def _closing(self, obj, names):
        lib = _lib.load()
        freed = []
        saved = {n: getattr(lib, n) for n in names}

        def wrap(name, fn):
            def call(*args):
                obj.close()  # "another thread", in the middle of the call
                if not obj._finalizer.alive:
                    freed.append(name)
                return fn(*args)
            return call
        for n, fn in saved.items():
            setattr(lib, n, wrap(n, fn))
        return lib, saved, freed

    def _check(self, make, names, call):
        obj = make()
        lib, saved, freed = self._closing(obj, names)
        try:
            call(obj)
        except ValueError:
            pass  # closed before a later call of the same method: refused, not a crash
        finally:
            for n, fn in saved.items():
                setattr(lib, n, fn)
        self.assertEqual(freed, [], "freed during the call")
        self.assertTrue(obj.closed)
        del obj
        gc.collect()

    def test_small_network_calls_keep_the_memory(self):
        for names, call in [
                (["cfnet_network_step_count"], lambda n: n.step_count),
                (["cfnet_network_memory_usage"], lambda n: n.memory_usage),
                (["cfnet_network_param_count"], lambda n: n.param_count),
                (["cfnet_network_multiply_adds"], lambda n: n.multiply_adds),
                (["cfnet_network_layer_count"], lambda n: len(n)),
                (["cfnet_network_layer"], lambda n: n[0]),
                (["cfnet_network_metadata_count"], lambda n: list(n.metadata)),
                (["cfnet_network_get_metadata"], lambda n: n.metadata.get("k")),
                (["cfnet_network_set_metadata"], lambda n: n.metadata.update(k="v"))]:
            with self.subTest(names[0]):
                self._check(small_cfnet, names, call)

    def test_small_layer_calls_keep_the_memory(self):
        for names, call in [
                (["cfnet_layer_kind_of"], lambda l: l.kind),
                (["cfnet_layer_zero_grad"], lambda l: l.zero_grad()),
                (["cfnet_layer_param_count"], lambda l: l.params)]:
            with self.subTest(names[0]):
                def make():
                    layer = cfnet.conv2d(4, 3)
                    layer.setup((1, 8, 8))
                    return layer
                self._check(make, names, call)


if __name__ == "__main__":
    import unittest
    unittest.main()
