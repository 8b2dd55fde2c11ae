"""Image helpers against numpy."""
import numpy as np

import cfnet
from cfnet_testutil import LeakCheckedTestCase


class ImageTest(LeakCheckedTestCase):
    def setUp(self):
        super().setUp()
        self.x = np.random.default_rng(0).normal(size=(2, 3, 7, 7)).astype(np.float32)

    def test_quarter_turns_are_numpy_rot90(self):
        for k in range(-1, 5):
            np.testing.assert_array_equal(cfnet.rotate(self.x, 90 * k),
                                          np.rot90(self.x, k, axes=(2, 3)))

    def test_other_angles_resample_and_invert_approximately(self):
        S = 33
        i, j = np.mgrid[0:S, 0:S]
        blob = np.exp(-((i - 16) ** 2 + (j - 20) ** 2) / 18.0).astype(np.float32)[None]
        r = cfnet.rotate(blob, 45)
        self.assertAlmostEqual(float(r.sum()), float(blob.sum()), delta=0.01 * float(blob.sum()))
        np.testing.assert_allclose(cfnet.rotate(r, -45), blob, atol=0.05)

    def test_shift_fills_with_zeros(self):
        out = cfnet.shift(self.x, 2, -1)
        want = np.zeros_like(self.x)
        want[..., 2:, :-1] = self.x[..., :-2, 1:]
        np.testing.assert_array_equal(out, want)

    def test_normalize_is_the_percentile_stretch(self):
        x = self.x.copy()
        out = cfnet.normalize(x, 5, 95)
        np.testing.assert_array_equal(x, self.x)  # not in place by default
        lo = np.percentile(x, 5, axis=(2, 3), keepdims=True)
        hi = np.percentile(x, 95, axis=(2, 3), keepdims=True)
        np.testing.assert_allclose(out, np.clip((x - lo) / (hi - lo), 0, 1), atol=1e-5)
        self.assertIs(cfnet.normalize(x, 5, 95, inplace=True), x)
        np.testing.assert_array_equal(x, out)
        with self.assertRaises(TypeError):
            cfnet.normalize(x[:, :, ::2], inplace=True)
        bad = x.copy()
        bad[1, 2, 0, 0] = np.nan
        with self.assertRaises(cfnet.InvalidArgumentError) as cm:
            cfnet.normalize(bad, inplace=True)
        self.assertIn("image 1, channel 2", cm.exception.message)

    def test_normalize_takes_one_image_as_prepare_does(self):
        # It raised ShapeMismatchError for C x H x W, which Network.prepare and infer accept.
        one = self.x[1].copy()
        want = cfnet.normalize(self.x, 5, 95)[1]
        out = cfnet.normalize(one, 5, 95)
        self.assertEqual(out.shape, one.shape)
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(cfnet.normalize(one.astype(np.float64), 5, 95), want)
        self.assertIs(cfnet.normalize(one, 5, 95, inplace=True), one)
        np.testing.assert_array_equal(one, want)

    def test_errors(self):
        with self.assertRaises(cfnet.ShapeMismatchError):
            cfnet.rotate(np.zeros((2, 3, 4), np.float32), 90)
        with self.assertRaises(cfnet.InvalidArgumentError):
            cfnet.rotate(self.x, float("nan"))


if __name__ == "__main__":
    import unittest
    unittest.main()
