"""Layers on their own: every create function, setup and shapes, forward and backward against
numpy, parameters and gradients as writable views, equivariance, errors."""
import numpy as np

import cfnet
from cfnet_testutil import LeakCheckedTestCase


def rot90(x, k=1):
    """Quarter turns counter-clockwise of the last two axes (row 0 at the top)."""
    return np.ascontiguousarray(np.rot90(x, k, axes=(-2, -1)))


class LayerTest(LeakCheckedTestCase):
    def test_every_create_function_gives_its_kind_and_shape(self):
        K = cfnet.LayerKind
        cases = [
            (cfnet.conv2d(4, 3, stride=2, padding="valid"), K.CONV2D, (2, 9, 9), (4, 4, 4)),
            (cfnet.conic_conv(4, 3, R=2, interp="bilinear"), K.CONIC_CONV, (2, 9, 9), (4, 9, 9)),
            (cfnet.p4_lift(3, 3), K.P4_LIFT, (2, 8, 8), (3, 4, 8, 8)),
            (cfnet.p4_conv(5, 3, padding=cfnet.Padding.VALID), K.P4_CONV, (3, 4, 8, 8),
             (5, 4, 6, 6)),
            (cfnet.group_pool("mean"), K.GROUP_POOL, (3, 4, 8, 8), (3, 8, 8)),
            (cfnet.dft_projection(6, R=2), K.DFT_PROJECTION, (3, 5, 5), (6, 8)),
            (cfnet.dft_magnitude(), K.DFT_MAGNITUDE, (6, 8), (6, 8)),
            (cfnet.dense(7), K.DENSE, (3, 4), (7,)),
            (cfnet.relu(), K.RELU, (3, 4), (3, 4)),
            (cfnet.pool(), K.POOL, (2, 9, 9), (2, 4, 4)),
            (cfnet.pool("mean", 2, 2), K.POOL, (2, 8, 8), (2, 4, 4)),
            (cfnet.batch_norm(0.2, 1e-3), K.BATCH_NORM, (3, 4, 4), (3, 4, 4)),
            (cfnet.dropout(0.5), K.DROPOUT, (10,), (10,)),
            (cfnet.softmax(), K.SOFTMAX, (10,), (10,)),
            (cfnet.p4m_lift(3, 3), K.P4M_LIFT, (2, 7, 7), (3, 8, 7, 7)),
            (cfnet.p4m_conv(2, 3, padding="valid"), K.P4M_CONV, (3, 8, 7, 7), (2, 8, 5, 5)),
            (cfnet.p4m_dft_magnitude(), K.P4M_DFT_MAGNITUDE, (3, 8, 1, 1), (3, 8)),
            (cfnet.group_pool(), K.GROUP_POOL, (3, 8, 5, 5), (3, 5, 5)),
            (cfnet.conic_conv_mirror(2, 3, 2), K.CONIC_CONV_MIRROR, (3, 7, 7), (2, 2, 7, 7)),
            (cfnet.conic_conv_mirror(2, 3, 1, "valid"), K.CONIC_CONV_MIRROR, (3, 2, 7, 7),
             (2, 2, 5, 5)),
        ]
        for layer, kind, shape_in, shape_out in cases:
            with self.subTest(kind.name), layer:
                self.assertEqual(layer.kind, kind)
                self.assertEqual(layer.kind_name, kind.name.lower())
                self.assertIn("not set up", repr(layer))
                with self.assertRaises(cfnet.StateError):
                    layer.output_shape
                self.assertEqual(layer.setup(shape_in, seed=3), shape_out)
                self.assertEqual(layer.input_shape, shape_in)
                x = np.random.default_rng(0).normal(size=(2,) + shape_in).astype(np.float32)
                y = layer.forward(x, training=True)
                self.assertEqual(y.shape, (2,) + shape_out)
                dx = layer.backward(x, y, np.ones_like(y))
                self.assertEqual(dx.shape, x.shape)
                self.assertIsNone(layer.backward(x, y, np.ones_like(y), need_dx=False))

    def test_dense_matches_numpy_and_params_are_writable_views(self):
        with cfnet.dense(3) as d:
            d.setup((2, 2), seed=1)
            p = d.params
            self.assertEqual(list(p), ["weight", "bias"])
            self.assertEqual(p["weight"].shape, (3, 4))
            rng = np.random.default_rng(2)
            W = rng.normal(size=(3, 4)).astype(np.float32)
            p["weight"][...] = W
            p["bias"][...] = [1, 2, 3]
            self.assertTrue(np.array_equal(d.params["weight"], W))  # a view, not a copy
            x = rng.normal(size=(5, 2, 2)).astype(np.float32)
            y = d.forward(x)
            np.testing.assert_allclose(y, x.reshape(5, 4) @ W.T + [1, 2, 3], rtol=1e-5)
            dy = rng.normal(size=y.shape).astype(np.float32)
            d.zero_grad()
            dx = d.backward(x, y, dy)
            np.testing.assert_allclose(dx, (dy @ W).reshape(x.shape), rtol=1e-5, atol=1e-6)
            g = d.grads
            np.testing.assert_allclose(g["weight"], dy.T @ x.reshape(5, 4), rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(g["bias"], dy.sum(0), rtol=1e-5, atol=1e-6)
            d.backward(x, y, dy, need_dx=False)  # accumulates
            np.testing.assert_allclose(g["bias"], 2 * dy.sum(0), rtol=1e-5, atol=1e-6)
            d.zero_grad()
            self.assertEqual(float(np.abs(g["weight"]).sum()), 0.0)

    def test_conic_conv_gradient_matches_finite_differences(self):
        with cfnet.conic_conv(2, 3, R=2) as c:
            c.setup((1, 6, 6), seed=4)
            rng = np.random.default_rng(5)
            x = rng.normal(size=(2, 1, 6, 6)).astype(np.float32)
            w = rng.normal(size=(2, 2, 6, 6)).astype(np.float32)  # loss = sum(w * y)
            y = c.forward(x)
            c.zero_grad()
            dx = c.backward(x, y, w)
            gw = c.grads["weight"].copy()
            weight = c.params["weight"]
            h = 1e-2
            for idx in [(0, 0, 0, 0), (1, 0, 1, 2), (0, 0, 2, 1)]:
                old = weight[idx]
                weight[idx] = old + h
                lp = float((w * c.forward(x)).sum())
                weight[idx] = old - h
                lm = float((w * c.forward(x)).sum())
                weight[idx] = old
                self.assertAlmostEqual((lp - lm) / (2 * h), gw[idx], delta=1e-2 * (1 + abs(gw[idx])))
            for idx in [(0, 0, 0, 0), (1, 0, 3, 2)]:
                xp, xm = x.copy(), x.copy()
                xp[idx] += h
                xm[idx] -= h
                num = float((w * c.forward(xp)).sum() - (w * c.forward(xm)).sum()) / (2 * h)
                self.assertAlmostEqual(num, dx[idx], delta=1e-2 * (1 + abs(dx[idx])))

    def test_conic_conv_commutes_with_quarter_turns(self):
        for S, interp in ((7, "nearest"), (8, "nearest"), (7, "steerable"), (8, "steerable")):
            with self.subTest(S=S, interp=interp), cfnet.conic_conv(3, 3, R=3, interp=interp) as c:
                c.setup((2, S, S), seed=1)
                x = np.random.default_rng(S).normal(size=(1, 2, S, S)).astype(np.float32)
                np.testing.assert_allclose(c.forward(rot90(x)), rot90(c.forward(x)), atol=1e-5)

    def test_p4_lift_rotates_and_cycles_the_group_axis(self):
        with cfnet.p4_lift(2, 3) as l:
            l.setup((1, 8, 8), seed=2)
            x = np.random.default_rng(0).normal(size=(1, 1, 8, 8)).astype(np.float32)
            y, yr = l.forward(x), l.forward(rot90(x))
            np.testing.assert_allclose(yr, np.roll(rot90(y), 1, axis=2), atol=1e-5)

    def test_batch_norm_state_and_modes(self):
        with cfnet.batch_norm(momentum=1.0) as bn:
            bn.setup((2, 3, 3))
            self.assertEqual(list(bn.params), ["gamma", "beta"])
            self.assertEqual(list(bn.state), ["running_mean", "running_var"])
            x = (np.random.default_rng(0).normal(size=(4, 2, 3, 3)) * 3 + 5).astype(np.float32)
            y = bn.forward(x, training=True)
            np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
            np.testing.assert_allclose(bn.state["running_mean"], x.mean(axis=(0, 2, 3)), rtol=1e-5)
            np.testing.assert_allclose(bn.state["running_var"],
                                       x.transpose(1, 0, 2, 3).reshape(2, -1).var(1, ddof=1),
                                       rtol=1e-4)
            rm = bn.state["running_mean"].reshape(1, 2, 1, 1)
            rv = bn.state["running_var"].reshape(1, 2, 1, 1)
            np.testing.assert_allclose(bn.forward(x), (x - rm) / np.sqrt(rv + 1e-5), atol=1e-4)

    def test_errors(self):
        with self.assertRaises(cfnet.InvalidArgumentError) as cm:
            cfnet.conic_conv(4, 2, R=1)  # even kernel
        self.assertIn("kernel", cm.exception.message)
        with self.assertRaises(ValueError):
            cfnet.conv2d(4, 3, padding="circular")
        with self.assertRaises(cfnet.InvalidArgumentError):
            cfnet.dropout(1.0)
        with cfnet.conic_conv(4, 3, R=1) as c:
            with self.assertRaises(cfnet.StateError):
                c.forward(np.zeros((1, 1, 5, 5), dtype=np.float32))
            with self.assertRaises(cfnet.ShapeMismatchError) as cm:
                c.setup((1, 5, 6))
            self.assertIn("conic_conv", cm.exception.message)
            c.setup((1, 5, 5))
            with self.assertRaises(cfnet.ShapeMismatchError):
                c.forward(np.zeros((1, 2, 5, 5), dtype=np.float32))
            with self.assertRaises(cfnet.StateError):  # backward without a matching forward
                c.backward(np.zeros((2, 1, 5, 5), np.float32), np.zeros((2, 4, 5, 5), np.float32),
                           np.zeros((2, 4, 5, 5), np.float32))

    def test_setup_again_reinitialises(self):
        with cfnet.dense(2) as d:
            d.setup((3,), seed=1)
            w1 = d.params["weight"].copy()
            d.setup((3,), seed=1)
            np.testing.assert_array_equal(d.params["weight"], w1)
            d.setup((5,), seed=2)
            self.assertEqual(d.params["weight"].shape, (2, 5))

    def test_close_and_gc_free_free_standing_layers(self):
        from cfnet import _lib
        import gc
        before = _lib.live["layer"]
        l = cfnet.relu()
        self.assertEqual(_lib.live["layer"], before + 1)
        l.close()
        l.close()
        self.assertEqual(_lib.live["layer"], before)
        with self.assertRaises(ValueError):
            l.kind
        l = cfnet.dense(3)
        l.setup((4,))
        w = l.params["weight"]
        del l
        gc.collect()
        self.assertEqual(_lib.live["layer"], before + 1)  # the view keeps it
        del w
        gc.collect()
        self.assertEqual(_lib.live["layer"], before)


if __name__ == "__main__":
    import unittest
    unittest.main()
