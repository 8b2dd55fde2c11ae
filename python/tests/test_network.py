"""Networks: ownership of appended layers, deterministic freeing, inference, options, training,
invariance, thread-safe inference."""
import gc
import os
import resource
import threading
import unittest

import numpy as np

import cfnet
from cfnet import _lib
from cfnet_testutil import LeakCheckedTestCase, rotated_patterns, small_cfnet


class OwnershipTest(LeakCheckedTestCase):
    def test_append_turns_the_layer_into_a_view_of_the_networks_layer(self):
        with cfnet.Network(1, 8, 8) as net:
            d = cfnet.dense(3)
            self.assertIs(net.append(d), d)
            self.assertIs(d.network, net)
            self.assertIs(net[0], d)
            self.assertIs(net[-1], d)
            self.assertEqual(net.output_shape, (3,))
            d.params["bias"][...] = 5
            np.testing.assert_allclose(net.infer(np.zeros((2, 1, 8, 8), np.float32)), 5)
            d.close()  # drops the Python handle only; the network keeps the layer
            self.assertEqual(len(net), 1)
            self.assertEqual(net[0].kind, cfnet.LayerKind.DENSE)
        with self.assertRaises(ValueError) as cm:
            d.kind
        self.assertIn("network", str(cm.exception))

    def test_failed_append_consumes_the_layer(self):
        with cfnet.Network(1, 12, 12) as net:
            net.append(cfnet.conv2d(4, 3, 1, "valid"))
            net.append(cfnet.dense(5))
            bad = cfnet.conic_conv(4, 3, R=1)
            with self.assertRaises(cfnet.ShapeMismatchError) as cm:
                net.append(bad)
            self.assertIn("layer 2 (conic_conv)", cm.exception.message)
            self.assertTrue(bad.consumed)
            self.assertTrue(bad.closed)
            self.assertIn("consumed", repr(bad))
            with self.assertRaises(ValueError) as cm2:
                bad.kind
            self.assertIn("consumed", str(cm2.exception))
            with self.assertRaises(ValueError):
                net.append(bad)
            bad.close()  # harmless
            self.assertEqual(len(net), 2)

    def test_layer_of_one_network_cannot_join_another(self):
        with cfnet.Network(1, 8, 8) as a, cfnet.Network(1, 8, 8) as b:
            r = a.append(cfnet.relu())
            with self.assertRaises(cfnet.StateError):
                b.append(r)
            with self.assertRaises(cfnet.StateError):
                a.append(r)
            self.assertFalse(r.consumed)
            self.assertEqual(r.kind, cfnet.LayerKind.RELU)
            self.assertEqual((len(a), len(b)), (1, 0))
            with self.assertRaises(cfnet.StateError):
                r.setup((1, 8, 8))

    def test_closed_network_rejects_calls_and_leaves_layers_alone(self):
        net = cfnet.Network(1, 8, 8)
        net.close()
        net.close()
        r = cfnet.relu()
        with self.assertRaises(ValueError):
            net.append(r)
        self.assertFalse(r.consumed)
        r.close()
        with self.assertRaises(ValueError):
            net.infer(np.zeros((1, 1, 8, 8), np.float32))
        self.assertIn("closed", repr(net))

    def test_layer_wrappers_keep_the_network_alive(self):
        before = _lib.live["network"]
        net = small_cfnet()
        first = net[0]
        w = first.params["weight"]
        del net
        gc.collect()
        self.assertEqual(_lib.live["network"], before + 1)
        w[...] = 0
        self.assertEqual(float(np.abs(first.network[0].params["weight"]).sum()), 0.0)
        del first, w
        gc.collect()
        self.assertEqual(_lib.live["network"], before)

    def test_dropping_the_last_reference_frees_at_once(self):
        before = _lib.live["network"]
        net = small_cfnet()
        net.layers  # hands out wrappers, held only weakly by the network
        del net
        self.assertEqual(_lib.live["network"], before)

    @unittest.skipIf("asan" in os.environ.get("LD_PRELOAD", ""),
                     "AddressSanitizer keeps freed memory in quarantine")
    def test_no_memory_growth_over_many_networks(self):
        def rss_kb():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * resource.getpagesize() // 1024

        def once():
            net = cfnet.Network(1, 16, 16)
            net.append(cfnet.conv2d(8, 3))
            net.append(cfnet.dense(256))  # 8*16*16*256 floats = 2 MiB of weights
            net.layers
            try:
                net.append(cfnet.conic_conv(2, 3, R=1))  # fails: consumed
            except cfnet.ShapeMismatchError:
                pass
            net.train_step(np.zeros((2, 1, 16, 16), np.float32), [0, 1])
            if os.getpid() % 2:
                net.close()

        for _ in range(5):
            once()
        gc.collect()
        base = rss_kb()
        for _ in range(100):
            once()
        gc.collect()
        # A leaked network would hold >= 6 MiB (weights, gradients, Adam moments): 600 MiB.
        self.assertLess(rss_kb() - base, 60 * 1024)


class NetworkTest(LeakCheckedTestCase):
    def setUp(self):
        super().setUp()
        self.net = small_cfnet()
        self.x, self.y = rotated_patterns(30)

    def tearDown(self):
        self.net.close()
        super().tearDown()

    def test_shapes_summary_and_counts(self):
        net = self.net
        self.assertEqual(net.input_shape, (1, 16, 16))
        self.assertEqual(net.output_shape, (3,))
        self.assertEqual(len(net), 10)
        self.assertEqual([l.kind_name for l in net][:2], ["conic_conv", "batch_norm"])
        total = sum(p.size for l in net for p in l.params.values())
        self.assertEqual(net.param_count, total)
        s = net.summary()
        self.assertIn("dft_magnitude", s)
        self.assertIn("total parameters %d" % total, s)
        self.assertGreater(net.memory_usage, total * 4)

    def test_long_summary(self):
        with cfnet.Network(1, 4, 4) as net:
            net.extend(cfnet.relu() for _ in range(200))
            s = net.summary()
            self.assertGreater(len(s), 4096)
            self.assertEqual(s.count("relu"), 200)
            self.assertTrue(s.endswith("total parameters 0\n"))

    def test_inference_calls_agree(self):
        net, x = self.net, self.x[:6]
        out = net.infer(x)
        self.assertEqual(out.shape, (6, 3))
        np.testing.assert_array_equal(net.forward(x), out)
        p = net.probabilities(x)
        e = np.exp(out - out.max(1, keepdims=True))
        np.testing.assert_allclose(p, e / e.sum(1, keepdims=True), rtol=1e-5)
        np.testing.assert_array_equal(net.predict(x), out.argmax(1))
        self.assertEqual(net.predict(x).dtype, np.int32)

    def test_forward_backward_and_loss(self):
        net, x, y = self.net, self.x[:4], self.y[:4]
        out = net.forward(x, training=True)
        loss, g = cfnet.softmax_cross_entropy(out, y)
        e = np.exp(out - out.max(1, keepdims=True))
        sm = e / e.sum(1, keepdims=True)
        self.assertAlmostEqual(loss, float(-np.log(sm[np.arange(4), y]).mean()), places=4)
        np.testing.assert_allclose(g, (sm - np.eye(3)[y]) / 4, atol=1e-6)
        self.assertIsNone(cfnet.softmax_cross_entropy(out, y, grad=False)[1])
        net.zero_grad()
        net.backward(g)
        self.assertGreater(float(np.abs(net[-1].grads["weight"]).sum()), 0)
        net.zero_grad()
        self.assertEqual(float(np.abs(net[-1].grads["weight"]).sum()), 0)
        with self.assertRaises(cfnet.ShapeMismatchError):
            net.backward(np.zeros((5, 3), np.float32))

    def test_options_by_enum_name_and_value(self):
        net = self.net
        net.set_option(cfnet.Option.LEARNING_RATE, 5e-3)
        self.assertAlmostEqual(net.get_option("learning_rate"), 5e-3)
        net.configure(optimizer="sgd", momentum=0.5, aug_rotation="any", aug_jitter=2,
                      aug_flip=True, weight_decay=5e-4, threads=2)
        o = net.options
        self.assertEqual(o["optimizer"], cfnet.Optimizer.SGD)
        self.assertEqual(o["aug_rotation"], cfnet.AugRotation.ANY)
        self.assertEqual((o["momentum"], o["aug_jitter"], o["aug_flip"], o["threads"]),
                         (0.5, 2, 1, 2))
        with self.assertRaises(cfnet.InvalidArgumentError) as cm:
            net.set_option("beta1", 1.5)
        self.assertIn("beta", cm.exception.message)
        self.assertEqual(net.get_option("beta1"), 0.9)
        with self.assertRaises(ValueError):
            net.set_option("no_such_option", 1)
        with self.assertRaises(ValueError):
            net.set_option("optimizer", "rmsprop")

    def test_option_bounds_and_defaults_come_from_the_library(self):
        net = cfnet.Network(1, 8, 8)
        self.assertEqual(set(net.options), {o.name.lower() for o in cfnet.Option})
        for opt in cfnet.Option:
            self.assertEqual(net.get_option(opt), cfnet.option_default(opt))
        lo, hi = cfnet.option_bounds("threads")
        self.assertEqual(lo, 1)
        net.set_option("threads", hi)
        with self.assertRaises(cfnet.InvalidArgumentError):
            net.set_option("threads", hi + 1)
        lo, hi = cfnet.option_bounds(cfnet.Option.BETA1)
        self.assertEqual(lo, 0.0)
        self.assertLess(hi, 1.0)
        net.set_option("beta1", hi)
        self.assertEqual(cfnet.option_default("optimizer"), cfnet.Optimizer.ADAM)
        with self.assertRaises(ValueError):
            cfnet.option_bounds("no_such_option")

    def test_training_learns_the_rotated_patterns(self):
        x, y = rotated_patterns(150, seed=1)
        xt, yt = rotated_patterns(60, seed=2)
        net = self.net
        net.configure(learning_rate=5e-3)
        loss0, _ = net.evaluate(xt, yt)
        first = net.train_step(x[:30], y[:30])
        self.assertTrue(np.isfinite(first))
        self.assertEqual(net.step_count, 1)
        losses = net.fit(x, y, epochs=6, batch=30)
        self.assertEqual(net.step_count, 1 + 6 * 5)
        self.assertLess(losses[-1], losses[0])
        loss, acc = net.evaluate(xt, yt, batch=25)
        self.assertLess(loss, loss0)
        self.assertGreater(acc, 0.8)
        self.assertAlmostEqual(acc, float((net.predict(xt) == yt).mean()), places=5)

    def test_invariance_to_quarter_turns(self):
        x = self.x[:4]
        self.assertLess(self.net.invariance(x), 1e-4)
        self.assertLess(self.net.invariance(x, angles=[90, 180, 270, 360]), 1e-4)
        self.assertGreater(self.net.invariance(x, [45.0]), 1e-4)  # approximate only
        with cfnet.Network(1, 16, 16) as cnn:
            cnn.extend([cfnet.conv2d(4, 3), cfnet.relu(), cfnet.dense(3)])
            self.assertGreater(cnn.invariance(x), 1e-3)
        with self.assertRaises(cfnet.ShapeMismatchError):
            self.net.invariance(np.zeros((1, 1, 8, 8), np.float32))

    def test_invariance_to_reflections(self):
        x = self.x[:4]
        with cfnet.Network(1, 16, 16) as p4m:
            p4m.extend([cfnet.p4m_lift(3, 3), cfnet.relu(), cfnet.pool(),
                        cfnet.p4m_conv(3, 3), cfnet.relu(), cfnet.pool(), cfnet.pool("mean", 4, 1),
                        cfnet.p4m_conv(4, 1), cfnet.p4m_dft_magnitude(), cfnet.dense(3)])
            self.assertLess(p4m.invariance(x, reflect=True), 1e-5)
        with cfnet.Network(1, 16, 16) as p4:
            p4.extend([cfnet.p4_lift(3, 3), cfnet.relu(), cfnet.group_pool(),
                       cfnet.pool("mean", 16, 1), cfnet.dense(3)])
            self.assertLess(p4.invariance(x), 1e-5)
            self.assertGreater(p4.invariance(x, reflect=True), 1e-3)

    def test_concurrent_inference_from_threads(self):
        net, x = self.net, self.x
        want = net.infer(x)
        results, errors = [None] * 4, []

        def work(i):
            try:
                for _ in range(5):
                    results[i] = net.infer(x)
            except Exception as e:  # pragma: no cover
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        for r in results:
            np.testing.assert_array_equal(r, want)

    def test_same_seed_same_results(self):
        with small_cfnet(seed=7) as a, small_cfnet(seed=7) as b:
            for net in (a, b):
                net.train_step(self.x[:10], self.y[:10])
            np.testing.assert_array_equal(a.infer(self.x), b.infer(self.x))

    def test_errors_carry_status_and_message(self):
        with self.assertRaises(cfnet.ShapeMismatchError) as cm:
            self.net.infer(np.zeros((2, 1, 8, 8), np.float32))
        self.assertEqual(cm.exception.status, -3)
        self.assertEqual(cfnet.last_error(), cm.exception.message)
        with self.assertRaises(cfnet.InvalidArgumentError):
            self.net.train_step(self.x[:3], [0, 1, 7])
        with self.assertRaises(cfnet.InvalidArgumentError):
            cfnet.Network(0, 3, 3)
        with self.assertRaises(TypeError):
            self.net.append("relu")


class SumHookTest(LeakCheckedTestCase):
    """Network.set_sum_hook, as docs/distributed.md uses it with mpi4py, without MPI: two
    threads stand for two processes and the hook adds their buffers."""

    def test_two_halves_summed_train_like_the_whole_batch(self):
        x, y = rotated_patterns(12)
        with small_cfnet(seed=3) as one:
            one.configure(optimizer="sgd", learning_rate=0.01)
            one.set_sum_hook(lambda kind, a: None)  # one process: the sum is the buffer itself
            one.set_batch_position(0, 12)
            loss1 = one.train_step(x, y)
            ref = one.to_bytes()
        nets = [small_cfnet(seed=3) for _ in range(2)]
        barrier, bufs, kinds, losses = threading.Barrier(2), [None, None], [], [None, None]

        def member(r):
            def hook(kind, a):
                bufs[r] = a.copy()
                barrier.wait()
                total = bufs[0] + bufs[1]
                barrier.wait()
                a[...] = total
                if r == 0:
                    kinds.append((kind, a.dtype))
            net = nets[r]
            net.configure(optimizer="sgd", learning_rate=0.01)
            net.set_sum_hook(hook)
            net.set_batch_position(6 * r, 12)
            losses[r] = net.train_step(x[6 * r:6 * r + 6], y[6 * r:6 * r + 6])

        threads = [threading.Thread(target=member, args=(r,)) for r in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            self.assertEqual(kinds[0], (cfnet.SumKind.STATISTICS, np.float64))
            self.assertEqual(kinds[-1], (cfnet.SumKind.GRADIENTS, np.float32))
            for r in range(2):
                self.assertAlmostEqual(losses[r], loss1, places=4)  # the global mean
                self.assertEqual(nets[r].step_count, 1)
            self.assertEqual(nets[0].to_bytes(), nets[1].to_bytes())
            with cfnet.Network.from_bytes(ref) as a:
                for la, lb in zip(a, nets[0]):
                    for k in la.params:
                        np.testing.assert_allclose(lb.params[k], la.params[k], rtol=1e-4,
                                                   atol=1e-6)
        finally:
            for net in nets:
                net.close()

    def test_an_exception_in_the_hook_fails_the_step_and_changes_nothing(self):
        x, y = rotated_patterns(6)
        with small_cfnet() as net:
            before = net.to_bytes(optimizer=True)
            calls = []

            def hook(kind, a):
                calls.append(kind)
                if len(calls) == 3:
                    raise KeyError("lost the other ranks")
            net.set_sum_hook(hook)
            with self.assertRaises(KeyError) as cm:
                net.train_step(x, y)
            self.assertIn("lost the other ranks", str(cm.exception))
            self.assertEqual(len(calls), 3)
            self.assertEqual(net.step_count, 0)
            self.assertEqual(net.to_bytes(optimizer=True), before)
            net.set_sum_hook(None)
            net.train_step(x, y)  # the network trains on alone
            self.assertEqual(net.step_count, 1)


if __name__ == "__main__":
    unittest.main()
