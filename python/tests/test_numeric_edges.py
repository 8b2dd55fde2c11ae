"""Numeric and empty-input edges of the binding: float64 values float32 cannot hold, NaN
inputs, non-finite outputs, no images, and numpy arrays in the layouts a lab user has (dtype,
memory order, lists of images)."""
import re
import warnings

import numpy as np

import cfnet
from cfnet_testutil import LeakCheckedTestCase, rotated_patterns, small_cfnet

BEYOND = "images[1, 0, 3, 4] is 1e+300, beyond the float32 range"


def big_images():
    x = rotated_patterns(2)[0].astype(np.float64)
    x[1, 0, 3, 4] = 1e300
    return x


class Float64BeyondFloat32Test(LeakCheckedTestCase):
    def test_every_entry_point_names_the_value(self):
        # Only prepare said so: the others cast 1e300 to an infinity and the library reported
        # "image 1 contains NaN or Inf" (or rotate and shift computed with it, silently).
        with small_cfnet() as net:
            x = big_images()
            calls = {
                "network_infer": lambda: net.infer(x),
                "network_probabilities": lambda: net.probabilities(x),
                "network_predict": lambda: net.predict(x),
                "network_evaluate": lambda: net.evaluate(x, [0, 1]),
                "network_train_step": lambda: net.train_step(x, [0, 1]),
                "network_train_epoch": lambda: net.train_epoch(x, [0, 1], batch=2),
                "network_forward": lambda: net.forward(x),
                "network_invariance": lambda: net.invariance(x),
                "image_normalize": lambda: cfnet.normalize(x),
                "image_rotate": lambda: cfnet.rotate(x, 90),
                "image_shift": lambda: cfnet.shift(x, 1, 0),
            }
            steps = net.step_count
            for fn, call in calls.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # numpy's overflow warning is not shown
                    warnings.simplefilter("ignore", cfnet.CopyWarning)
                    with self.assertRaises(cfnet.InvalidArgumentError, msg=fn) as e:
                        call()
                self.assertIn("%s: %s" % (fn, BEYOND), str(e.exception))
                self.assertNotIn("NaN or Inf", str(e.exception))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", cfnet.CopyWarning)
                with self.assertRaisesRegex(cfnet.InvalidArgumentError, re.escape(BEYOND)):
                    net.fit(x, [0, 1], batch=2)
                with self.assertRaisesRegex(cfnet.InvalidArgumentError,
                                            r"layer_forward: layer input\[1, 0, 3, 4\] is 1e\+300"):
                    net[0].forward(x)
            self.assertEqual(net.step_count, steps)  # nothing was trained

    def test_lists_tensors_and_the_negative_side(self):
        with self.assertRaisesRegex(cfnet.InvalidArgumentError,
                                    r"logits\[0, 1\] is -1e\+40, beyond"):
            cfnet.softmax_cross_entropy([[0.0, -1e40, 1.0]], [0])
        with self.assertRaisesRegex(cfnet.InvalidArgumentError,
                                    r"Tensor.from_array input\[2\] is 5e\+38"):
            cfnet.Tensor.from_array([1.0, 2.0, 5e38])
        with cfnet.Tensor((3,)) as t:
            with self.assertRaisesRegex(cfnet.InvalidArgumentError,
                                        r"tensor_copy_in: copy_in input\[0\] is 1e\+39"):
                t.copy_in(np.array([1e39, 0, 0]))
        # float32's own largest value, and true infinities, are what they are
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cfnet.CopyWarning)
            np.testing.assert_array_equal(cfnet.rotate(np.full((1, 4, 4), 3.4e38), 90),
                                          np.float32(3.4e38))
        with cfnet.Tensor.from_array([np.inf]) as t:
            self.assertEqual(t.numpy()[0], np.inf)


class NaNInputTest(LeakCheckedTestCase):
    def test_nan_and_infinite_images_are_refused_by_every_call(self):
        # The documented behaviour (python/README.md, "Rules"): refused with
        # InvalidArgumentError naming the image, nothing computed or trained.
        with small_cfnet() as net:
            x, y = rotated_patterns(3)
            for bad in (np.nan, np.inf, -np.inf):
                z = x.copy()
                z[2, 0, 5, 5] = bad
                steps = net.step_count
                for call in (net.infer, net.probabilities, net.predict, net.forward,
                             net.invariance, lambda a: net.evaluate(a, y),
                             lambda a: net.train_step(a, y),
                             lambda a: net.train_epoch(a, y, batch=3)):
                    with self.assertRaisesRegex(cfnet.InvalidArgumentError,
                                                "image 2 contains NaN or Inf"):
                        call(z)
                self.assertEqual(net.step_count, steps)
                with self.assertRaisesRegex(cfnet.InvalidArgumentError,
                                            "image 2, channel 0 contains (NaN|an infinity)"):
                    cfnet.normalize(z)


class NonFiniteOutputTest(LeakCheckedTestCase):
    def test_infer_warns_of_outputs_the_library_returns_as_ok(self):
        # cfnet_network_infer returns infinities from parameters too large with status OK;
        # probabilities and predict refuse them (NumericError), infer gave them silently.
        with small_cfnet() as net:
            x, y = rotated_patterns(3)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                net.infer(x)  # finite: no warning
                net.invariance(x)
            w = net[-1].params["weight"]
            w[...] = 3e38
            for call, what in ((net.infer, r"network_infer: the output for image 0 \(and 2 "
                                r"more\) is not finite"),
                               (net.forward, "network_forward: the output for image 0")):
                with self.assertWarnsRegex(RuntimeWarning, what) as cm:
                    out = call(x)
                self.assertEqual(cm.filename, __file__)  # the caller's line
                self.assertFalse(np.isfinite(out).all())  # returned as computed
            with self.assertWarnsRegex(RuntimeWarning, "network_infer: the output for image 0 "
                                       "is not finite"):
                net.infer(x[1])
            with self.assertWarnsRegex(RuntimeWarning, "network_invariance: the result is nan"):
                net.invariance(x)
            for call in (net.probabilities, net.predict):
                with self.assertRaisesRegex(cfnet.NumericError, "output for image 0 is not "
                                            "finite"):
                    call(x)


    def test_layer_forward_warns_as_network_forward_does(self):
        # Layer.forward returned the infinities of finite inputs silently, while Network.infer
        # and forward warned naming the image.
        with cfnet.dense(3) as layer:
            layer.setup((4,))
            x = np.ones((3, 4), np.float32)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                layer.forward(x)  # finite: no warning
            layer.params["weight"][...] = 3e38
            for training in (False, True):
                with self.assertWarnsRegex(RuntimeWarning, r"^layer_forward: the output for "
                                           r"image 0 \(and 2 more\) is not finite \(NaN or "
                                           r"infinite: parameters too large") as cm:
                    out = layer.forward(x, training=training)
                self.assertEqual(cm.filename, __file__)  # the caller's line
                self.assertFalse(np.isfinite(out).any())  # returned as computed
            layer.params["weight"][...] = 0.5
            z = x.copy()
            z[1, 2] = np.nan  # a NaN given is a NaN returned: no warning for that image
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                self.assertTrue(np.isnan(layer.forward(z)[1]).all())
            layer.params["weight"][...] = 3e38
            z[0, 0] = np.inf
            with self.assertWarnsRegex(RuntimeWarning, r"the output for image 2 is not finite"):
                layer.forward(z)


class NoImagesTest(LeakCheckedTestCase):
    def test_evaluate_and_training_say_there_are_no_images(self):
        # They said "images is empty ...: libcfnet needs at least one element along every
        # axis", as if the shape were the trouble.
        with small_cfnet() as net:
            for none in (np.zeros((0, 1, 16, 16), np.float32), [], np.array([])):
                with self.assertRaisesRegex(ValueError, r"^network_evaluate: no images \(shape "
                                            r"\(0,.*\): the mean loss and accuracy of no images "
                                            "are undefined"):
                    net.evaluate(none, [])
                for call, fn in ((net.train_step, "network_train_step"),
                                 (net.train_epoch, "network_train_epoch"), (net.fit, "fit")):
                    with self.assertRaisesRegex(ValueError, "^%s: no images .*nothing to train"
                                                % fn):
                        call(none, [])
            self.assertEqual(net.step_count, 0)

    def test_normalize_of_no_images_is_no_images(self):
        # It raised "images is empty", while infer and prepare give empty results.
        for inplace in (False, True):
            none = np.zeros((0, 2, 8, 9), np.float32)
            out = cfnet.normalize(none, inplace=inplace)
            self.assertEqual((out.shape, out.dtype), ((0, 2, 8, 9), np.float32))
            self.assertIs(out is none, inplace)
        for none in ([], np.array([], np.uint8)):
            out = cfnet.normalize(none)
            self.assertEqual((out.shape, out.dtype), ((0,), np.float32))
        with self.assertRaisesRegex(ValueError, "is empty"):  # no pixels is not no images
            cfnet.normalize(np.zeros((2, 1, 0, 5)))


class ListConvertedOnceTest(LeakCheckedTestCase):
    def test_a_list_of_images_is_stacked_once(self):
        # infer, probabilities and predict stacked a list three times (the no-images check,
        # require_numbers, as_float32's own), evaluate and training twice: a large list of
        # float64 images was converted again for each.
        from unittest import mock
        with small_cfnet() as net:
            x, y = rotated_patterns(3)
            imgs = [im.astype(np.float64) for im in x]
            calls = []
            real = np.asarray

            def counting(a, *args, **kw):
                if a is imgs:
                    calls.append(1)
                return real(a, *args, **kw)
            for name, call in (("infer", lambda: net.infer(imgs)),
                               ("probabilities", lambda: net.probabilities(imgs)),
                               ("predict", lambda: net.predict(imgs)),
                               ("evaluate", lambda: net.evaluate(imgs, y))):
                del calls[:]
                with mock.patch.object(np, "asarray", counting):
                    call()
                self.assertEqual((name, len(calls)), (name, 1))
            with self.assertRaisesRegex(TypeError, "holds None or other objects"):
                net.infer([[[[None]]]])
            del calls[:]
            with mock.patch.object(np, "asarray", counting):
                out = cfnet.normalize(imgs)  # (stacked twice: require_numbers, to_float32)
            self.assertEqual(len(calls), 1)
            np.testing.assert_array_equal(out, cfnet.normalize(np.asarray(imgs)))
            with self.assertRaisesRegex(TypeError, "holds None or other objects"):
                cfnet.normalize([[[[None]]]])

    def test_every_other_public_call_converts_a_list_once(self):
        # Tensor.from_array and copy_in stacked a list twice (require_numbers, to_float32),
        # invariance its angles twice, prepare each image of a list three times
        # (require_numbers, np.ndim, to_float32) and an array-like twice, fit a list order
        # once per epoch. Counted by np.asarray for lists, by __array__ for an array-like
        # (np.ndim converts through numpy's own asarray).
        from unittest import mock
        real = np.asarray
        vals = [1.0, 2.0, 3.0]
        calls = []

        class ArrayLike:
            def __init__(self, a):
                self.a = a

            def __array__(self, dtype=None, copy=None):
                calls.append(1)
                return self.a if dtype is None else self.a.astype(dtype)

        def count(call, arg):
            def counting(a, *args, **kw):
                if a is arg:
                    calls.append(1)
                return real(a, *args, **kw)
            del calls[:]
            with mock.patch.object(np, "asarray", counting):
                out = call()
            return len(calls), out
        n, t = count(lambda: cfnet.Tensor.from_array(vals), vals)
        with t:
            self.assertEqual(n, 1)
            np.testing.assert_array_equal(t.numpy(), vals)
            rev = vals[::-1]
            self.assertEqual(count(lambda: t.copy_in(rev), rev)[0], 1)
            np.testing.assert_array_equal(t.numpy(), rev)
        with self.assertRaisesRegex(TypeError, "holds None or other objects"):
            cfnet.Tensor.from_array([None])
        with small_cfnet() as net:
            x, y = rotated_patterns(3)
            angles = [90, 180]
            self.assertEqual(count(lambda: net.invariance(x, angles=angles), angles)[0], 1)
            order = [2, 0, 1]
            self.assertEqual(count(lambda: net.fit(x, y, epochs=3, batch=3, order=order),
                                   order)[0], 1)
        with cfnet.classifier("cnn", 1, 16, 3, width=2, seed=1) as net:
            net.metadata.update({"channels": "1", "input_size": "16", "pad": "0",
                                 "normalization": "percentile 1 99.8",
                                 "classes": '["a","b","c"]'})
            im = (x[0] * 100).astype(np.float64)
            one = im.tolist()
            n, got = count(lambda: net.prepare([one, im]), one)
            self.assertEqual(n, 1)
            np.testing.assert_array_equal(got, net.prepare(np.stack([im, im])))
            for images, want in (([ArrayLike(im)], 1), (ArrayLike(im), 1)):
                del calls[:]
                got = net.prepare(images)
                self.assertEqual(len(calls), want)
                np.testing.assert_array_equal(got.reshape(-1, 1, 16, 16)[0], net.prepare(im))


class LabArraysTest(LeakCheckedTestCase):
    def test_dtypes_and_memory_orders_give_the_same_results(self):
        with small_cfnet() as net:
            x, _ = rotated_patterns(3)
            x8 = np.round(x * 100).astype(np.uint8)
            ref = net.infer(x8.astype(np.float32))
            big = np.zeros((3, 1, 16, 32), np.uint16)
            big[..., ::2] = x8
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", cfnet.CopyWarning)
                for a in (x8, x8.astype(np.uint16), x8.astype(np.float64),
                          np.asfortranarray(x8.astype(np.float64)), big[..., ::2],
                          x8.astype(">f4"), x8[::-1][::-1], list(x8)):
                    np.testing.assert_array_equal(net.infer(a), ref)
                np.testing.assert_array_equal(cfnet.normalize(np.asfortranarray(x8)),
                                              cfnet.normalize(x8))

    def test_a_list_of_images_of_different_sizes_says_so(self):
        # numpy's own error: "setting an array element with a sequence. The requested array
        # has an inhomogeneous shape after 2 dimensions".
        with small_cfnet() as net:
            ims = [np.zeros((1, 16, 16)), np.zeros((1, 20, 18))]
            for call in (net.infer, net.probabilities, net.predict, cfnet.normalize,
                         lambda a: net.evaluate(a, [0, 1])):
                with self.assertRaisesRegex(ValueError, r"a list of arrays of different shapes "
                                            r"\(1x16x16, 1x20x18\) is not one N x C x H x W "
                                            "batch: crop or pad"):
                    call(ims)

    def test_one_image_given_to_evaluate_or_training_says_to_add_the_batch_axis(self):
        # It said "1 labels for 2 images": the channel axis was taken for the batch.
        x = np.zeros((2, 16, 16), np.float32)
        with cfnet.classifier("cnn", 2, 16, 3, seed=1) as net:
            for call, fn in ((lambda: net.evaluate(x, [0]), "network_evaluate"),
                             (lambda: net.train_step(x, [0]), "network_train_step"),
                             (lambda: net.train_epoch(x, [0]), "network_train_epoch"),
                             (lambda: net.fit(x, [0]), "network_train_epoch")):
                with self.assertRaisesRegex(cfnet.ShapeMismatchError,
                                            r"^%s: images are 2x16x16, expected N x 2x16x16; one "
                                            r"C x H x W image\? a batch of one is x\[None\]" % fn):
                    call()
            with self.assertRaisesRegex(cfnet.ShapeMismatchError, r"images are a single number "
                                        r"\(1.0\), not an array: expected"):
                net.evaluate(np.float32(1), [0])  # not "1 labels for 1 images" and a C error
            self.assertEqual(net.step_count, 0)
            self.assertEqual(len(net.evaluate(x[None], [0])), 2)

    def test_prepare_of_an_image_without_its_channel_axis_says_so(self):
        # A grayscale H x W image (tifffile, PIL): "images must be one C x H x W image ..., not
        # shape (20, 20)", and in a list "the image is 20x20, need C x H x W", with no fix.
        for channels, hint in ((1, r"one H x W image without its channel axis: {}\[None\]"),
                               (2, "the model takes 2 channels")):
            with cfnet.classifier("cnn", channels, 16, 3, width=2, seed=1) as net:
                net.metadata.update({"channels": str(channels), "input_size": "16", "pad": "0",
                                     "normalization": "percentile 1 99.8",
                                     "classes": '["a","b","c"]'})
                with self.assertRaisesRegex(ValueError, "not shape \\(20, 20\\); "
                                            + hint.format("images")):
                    net.prepare(np.zeros((20, 20)))
                with self.assertRaisesRegex(cfnet.ShapeMismatchError, "images\\[1\\] is 20x20, "
                                            "need C x H x W; " + hint.format(re.escape("images[1]"))):
                    net.prepare([np.zeros((channels, 20, 20)), np.zeros((20, 20))])
                if channels == 1:
                    self.assertEqual(net.prepare(np.zeros((20, 20))[None]).shape, (1, 16, 16))
