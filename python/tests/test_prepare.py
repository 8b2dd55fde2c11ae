"""Network.prepare (cfnet_network_prepare_image) against docs/deploy.md's numpy recipe: the
percentile normalisation per channel over the whole image, the centre crop or pad; one image,
lists of images of different sizes, any dtype and layout; padding refused and allowed."""
import unittest
import warnings

import numpy as np

import cfnet


def reference(image, low, high, S):
    """numpy's percentiles (linear), stretched, clipped, then the centre S x S crop or pad."""
    x = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(x, [low, high], axis=(1, 2), keepdims=True)
    span = np.where(hi > lo, hi - lo, 1)
    x = np.where(hi > lo, np.clip((x - lo) / span, 0, 1), 0).astype(np.float32)
    out = np.zeros((x.shape[0], S, S), np.float32)

    def place(n):
        return ((n - S) // 2, 0, S) if n >= S else (0, (S - n) // 2, n)
    (sy, ty, ny), (sx, tx, nx) = place(x.shape[1]), place(x.shape[2])
    out[:, ty:ty + ny, tx:tx + nx] = x[:, sy:sy + ny, sx:sx + nx]
    return out


def model(pad="0", norm="percentile 1 99.8"):
    net = cfnet.classifier("cnn", 2, 16, 3, width=2, seed=1)
    net.metadata.update({"channels": "2", "input_size": "16", "pad": pad,
                         "normalization": norm, "classes": '["a","b","c"]'})
    return net


class PrepareTest(unittest.TestCase):
    def test_matches_the_numpy_recipe(self):
        rng = np.random.default_rng(4)
        with model(pad="1") as net:
            for H, W in [(16, 16), (21, 30), (17, 16), (9, 12), (40, 11)]:
                im = rng.integers(100, 4000, size=(2, H, W)).astype(np.uint16)
                want = reference(im, 1, 99.8, 16)
                for layout in (im, im.astype(">u2"), np.asfortranarray(im), im.astype(np.float64)):
                    with warnings.catch_warnings():
                        warnings.simplefilter("error")   # converted without a CopyWarning
                        got = net.prepare(layout)
                    self.assertEqual(got.dtype, np.float32)
                    self.assertEqual(got.shape, (2, 16, 16))
                    # the library's float32 arithmetic may differ from numpy's in the last bit
                    np.testing.assert_allclose(got, want, rtol=0, atol=2e-7)
            ims = [rng.random((2, 20, 18)) * 100, rng.random((2, 12, 16)), rng.random((2, 16, 16))]
            batch = net.prepare(ims)
            self.assertEqual(batch.shape, (3, 2, 16, 16))
            for b, im in zip(batch, ims):
                np.testing.assert_array_equal(b, net.prepare(im))
            self.assertEqual(net.prepare([]).shape, (0, 2, 16, 16))
            self.assertEqual(net.prepare(np.stack([ims[2], ims[2]])).shape, (2, 2, 16, 16))
            self.assertEqual(net.probabilities(batch).shape, (3, 3))

    def test_no_images(self):
        with model() as net:
            for none in ([], (), np.array([]), np.zeros((0, 2, 5, 7), np.uint16)):
                got = net.prepare(none)
                self.assertEqual((got.shape, got.dtype), ((0, 2, 16, 16), np.float32))
                self.assertEqual(net.probabilities(got).shape, (0, 3))
                if not isinstance(none, np.ndarray) or none.ndim == 1:
                    self.assertEqual(net.predict(none).shape, (0,))
            with self.assertRaisesRegex(cfnet.ShapeMismatchError, "0x3x16x16, expected N x 2 x H x W"):
                net.prepare(np.zeros((0, 3, 16, 16)))

    def test_values_beyond_float32_are_named_so(self):
        # They became infinities in the cast to float32, reported as "contains an infinity".
        with model() as net:
            im = np.ones((2, 16, 16))
            im[1, 3, 4] = 1e39
            with warnings.catch_warnings():
                warnings.simplefilter("error")   # and numpy's overflow warning is not shown
                for images, what in ((im, "image"), ([np.ones((2, 20, 20)), im], "images[1]")):
                    with self.assertRaises(cfnet.InvalidArgumentError) as e:
                        net.prepare(images)
                    msg = str(e.exception)
                    self.assertIn("%s: channel 2 at row 3, column 4 is 1e+39, beyond the "
                                  "float32 range" % what, msg)
                    self.assertNotIn("infinity", msg)
                im[1, 3, 4] = -1e300
                with self.assertRaisesRegex(cfnet.InvalidArgumentError, r"-1e\+300, beyond"):
                    net.prepare(im[None])
                im[1, 3, 4] = np.inf            # a true infinity is still called one
                with self.assertRaisesRegex(cfnet.InvalidArgumentError, "an infinity"):
                    net.prepare(im)

    def test_scale_model(self):
        with model(norm="scale 0.5") as net:
            im = np.arange(2 * 18 * 20, dtype=np.float32).reshape(2, 18, 20)
            np.testing.assert_array_equal(net.prepare(im), im[:, 1:17, 2:18] * np.float32(0.5))

    def test_small_images_need_pad(self):
        with model(pad="0") as net:
            small = np.ones((2, 10, 20), np.float32)
            with self.assertRaises(cfnet.ShapeMismatchError):
                net.prepare(small)
            self.assertEqual(net.prepare(small, pad=True).shape, (2, 16, 16))

    def test_refusals(self):
        with model() as net:
            with self.assertRaises(cfnet.ShapeMismatchError):
                net.prepare(np.ones((3, 16, 16)))            # channels
            with self.assertRaises(ValueError):
                net.prepare(np.ones((16, 16)))
            with self.assertRaises(TypeError):
                net.prepare(None)
            net.metadata["normalization"] = "zscore"
            with self.assertRaises(cfnet.FormatError) as e:
                net.prepare(np.ones((2, 16, 16)))
            self.assertIn("normalization", str(e.exception))
        with cfnet.classifier("cnn", 1, 16, 3, width=2) as plain:
            with self.assertRaises(cfnet.FormatError) as e:
                plain.prepare(np.ones((1, 16, 16)))
            self.assertIn("not trained by the cfnet command", str(e.exception))

    def test_a_number_or_an_empty_image_is_named_so(self):
        # A single number said "not shape ()", an image of no channels or pixels "is empty".
        with model() as net:
            for number in (3.0, np.float32(3), np.array(3.0)):
                with self.assertRaisesRegex(cfnet.ShapeMismatchError, r"^network_prepare_image: "
                                            r"images are a single number \(3\.0\), not an array: "
                                            r"expected N x 2 x H x W \(or one 2 x H x W image\)"):
                    net.prepare(number)
            with self.assertRaisesRegex(cfnet.ShapeMismatchError, r"images\[1\] is a single "
                                        r"number \(3\.0\), not an array: expected 2 x H x W"):
                net.prepare([np.ones((2, 16, 16)), 3.0])
            for images, msg in (
                    (np.zeros((0, 20, 20)), r"image has 0 channels \(shape \(0, 20, 20\)\), "
                                            "the model expects 2"),
                    ([np.ones((2, 16, 16)), np.zeros((0, 20, 20))], r"images\[1\] has 0 channels"),
                    (np.zeros((3, 0, 20, 20)), r"images have 0 channels \(shape \(3, 0, 20, 20\)\)"),
                    (np.zeros((2, 0, 20)), r"image has no pixels \(shape \(2, 0, 20\)\): 0 rows, "
                                           "20 columns"),
                    (np.zeros((1, 2, 20, 0)), r"images\[0\] has no pixels \(shape \(2, 20, 0\)\)")):
                with self.assertRaisesRegex(cfnet.ShapeMismatchError,
                                            "^network_prepare_image: " + msg) as e:
                    net.prepare(images, pad=True)
                self.assertNotIn("empty", str(e.exception))

    def test_a_list_item_of_the_wrong_rank_is_named(self):
        # A list whose item was 1-D (or 5-D, or 0 x ...) said "the image is 3", not which one.
        with model() as net:
            for images, msg in (
                    ([np.zeros(3)], r"images\[0\] is 3, need C x H x W"),
                    ([np.ones((2, 16, 16)), np.zeros(3)], r"images\[1\] is 3, need C x H x W"),
                    ([np.zeros((1, 1, 2, 16, 16))], r"images\[0\] is 1x1x2x16x16, need C x H x W"),
                    ([np.zeros((2, 2, 16, 16))], r"images\[0\] is 2x2x16x16, need C x H x W"),
                    ([[1.0, 2.0]], r"images\[0\] is 2, need C x H x W"),
                    ([np.zeros(0)], r"images\[0\] is 0, need C x H x W")):
                with self.assertRaisesRegex(cfnet.ShapeMismatchError,
                                            "^network_prepare_image: " + msg, msg=msg) as e:
                    net.prepare(images)
                self.assertNotIn("the image", str(e.exception))
            # one image of a list given with its batch axis of one is still taken
            self.assertEqual(net.prepare([np.ones((1, 2, 16, 16))]).shape, (1, 2, 16, 16))


if __name__ == "__main__":
    unittest.main()
