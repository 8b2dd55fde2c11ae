"""Binding misuse: read-only memory, label validation, NUL in paths, single images. Each case
once crashed, mutated immutable memory or silently did something else than asked."""
import os
import re
import tempfile
import warnings

import numpy as np

import cfnet
from cfnet_testutil import LeakCheckedTestCase, rotated_patterns, small_cfnet


class ReadOnlyMemoryTest(LeakCheckedTestCase):
    def test_wrap_refuses_read_only_memmap(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "a.f32")
            np.arange(12, dtype=np.float32).tofile(path)
            mm = np.memmap(path, dtype=np.float32, mode="r", shape=(3, 4))
            with self.assertRaisesRegex(ValueError, "read-only"):
                cfnet.Tensor.wrap(mm)
            del mm
            # A writeable memmap is wrapped without a copy and written through.
            mw = np.memmap(path, dtype=np.float32, mode="r+", shape=(3, 4))
            with cfnet.Tensor.wrap(mw) as t:
                t.fill(2.0)
            mw.flush()
            del mw
            np.testing.assert_array_equal(np.fromfile(path, dtype=np.float32), 2.0)

    def test_wrap_refuses_frombuffer_over_bytes(self):
        data = bytes(16)
        a = np.frombuffer(data, dtype=np.float32)
        with self.assertRaisesRegex(ValueError, "read-only"):
            cfnet.Tensor.wrap(a)
        self.assertEqual(data, bytes(16))  # the immutable bytes are untouched

    def test_read_only_inputs_are_fine_where_the_library_only_reads(self):
        with small_cfnet() as net:
            x, _ = rotated_patterns(4)
            ro = x.copy()
            ro.flags.writeable = False
            np.testing.assert_array_equal(net.infer(ro), net.infer(x))
            with self.assertRaisesRegex(TypeError, "writable"):
                cfnet.normalize(ro, inplace=True)


class LabelTest(LeakCheckedTestCase):
    def setUp(self):
        super().setUp()
        self.net = small_cfnet()
        self.x, self.y = rotated_patterns(4)

    def tearDown(self):
        self.net.close()
        super().tearDown()

    def assert_refused(self, labels, exc, pattern):
        before = self.net.to_bytes(optimizer=True)
        with self.assertRaisesRegex(exc, pattern):
            self.net.train_step(self.x, labels)
        with self.assertRaisesRegex(exc, pattern):
            self.net.evaluate(self.x, labels)
        self.assertEqual(self.net.to_bytes(optimizer=True), before)

    def test_out_of_int32_range_is_not_wrapped(self):
        self.assert_refused(np.array([2**32, 0, 1, 2], dtype=np.int64), ValueError,
                            "not a class index")
        self.assert_refused(np.array([-1, 0, 1, 2]), ValueError, "not a class index")

    def test_floats_are_not_truncated(self):
        self.assert_refused(np.array([0.9, 1.7, 0.0, 1.0]), TypeError, "integer")
        self.assert_refused([0.0, 1.0, 2.0, 0.0], TypeError, "integer")

    def test_strings_and_booleans_are_not_parsed(self):
        self.assert_refused(["0", "1", "2", "0"], TypeError, "integer")
        self.assert_refused(np.array([True, False, True, False]), TypeError, "integer")
        self.assert_refused("0120", TypeError, "integer")

    def test_class_names_get_a_hint_that_suits_them(self):
        # The hint was labels.astype(np.int32), which fails on class names.
        names = np.array(["cat", "dog", "cat", "owl"])
        for labels in (names, list(names), names.astype(object), names.astype("S3")):
            self.assert_refused(labels, TypeError, r"not strings .*np\.unique\(labels, "
                                r"return_inverse=True\)")
        classes, idx = np.unique(names, return_inverse=True)  # the hint works as written
        self.assertEqual(list(classes), ["cat", "dog", "owl"])
        self.net.evaluate(self.x, idx)

    def test_two_dimensional_labels_are_not_flattened(self):
        self.assert_refused(np.array([[0, 1], [2, 0]]), ValueError, "1-D")

    def test_wrong_count(self):
        self.assert_refused(np.array([0, 1, 2]), ValueError, "3 labels for 4 images")

    def test_every_integer_dtype_within_range_works(self):
        for dt in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
                   np.uint64):
            loss, acc = self.net.evaluate(self.x, self.y.astype(dt))
            self.assertTrue(np.isfinite(loss))
        self.assertTrue(np.isfinite(self.net.train_step(self.x, [0, 1, 2, 0])))
        loss, _ = cfnet.softmax_cross_entropy(np.zeros((2, 3), np.float32), [1, 2])
        with self.assertRaisesRegex(TypeError, "integer"):
            cfnet.softmax_cross_entropy(np.zeros((2, 3), np.float32), [1.5, 2])


class PathTest(LeakCheckedTestCase):
    def test_nul_in_path_is_refused(self):
        with tempfile.TemporaryDirectory() as d, small_cfnet() as net:
            target = os.path.join(d, "x")
            for p in (target + "\0y", os.fsencode(target) + b"\0y"):
                with self.assertRaisesRegex(ValueError, "NUL"):
                    net.save(p)
                with self.assertRaisesRegex(ValueError, "NUL"):
                    cfnet.Network.load(p)
            self.assertEqual(os.listdir(d), [])  # nothing was written as "x"


class NumericTest(LeakCheckedTestCase):
    def test_diverging_training_raises_numeric_error_and_keeps_the_network(self):
        with small_cfnet(bn=False) as net:
            x, y = rotated_patterns(6)
            net.configure(optimizer="sgd", learning_rate=1e38)
            with self.assertRaises(cfnet.NumericError):
                for _ in range(30):
                    before = net.to_bytes(optimizer=True)
                    net.train_step(x, y)
            self.assertEqual(net.to_bytes(optimizer=True), before)
            for layer in net:
                for p in layer.params.values():
                    self.assertTrue(np.isfinite(p).all())

    def test_inference_refuses_nan_and_inf_images(self):
        # conic conv -> ReLU would turn a NaN into 0 and give finite, meaningless scores
        with small_cfnet(bn=False) as net:
            x, y = rotated_patterns(6)
            for bad in (np.nan, np.inf, -np.inf):
                xb = x.copy()
                xb[4, 0, 7, 3] = bad
                for call in (net.infer, net.predict, net.probabilities, net.invariance):
                    with self.assertRaisesRegex(cfnet.InvalidArgumentError,
                                                "image 4 contains NaN or Inf"):
                        call(xb)
                with self.assertRaisesRegex(cfnet.InvalidArgumentError, "image 4 "):
                    net.evaluate(xb, y)
            self.assertEqual(net.predict(x).shape, (6,))

    def test_saving_nan_needs_allow_nonfinite(self):
        with small_cfnet() as net, tempfile.TemporaryDirectory() as d:
            w = net[len(net) - 1].params["weight"]
            w[0, 0] = np.nan
            with self.assertRaisesRegex(cfnet.NumericError, "ALLOW_NONFINITE"):
                net.save(os.path.join(d, "m.safetensors"))
            self.assertEqual(os.listdir(d), [])
            net.save(os.path.join(d, "m.safetensors"), allow_nonfinite=True)
            with cfnet.Network.load(os.path.join(d, "m.safetensors")) as back:
                self.assertTrue(np.isnan(back[len(back) - 1].params["weight"][0, 0]))


class IntegerArgumentTest(LeakCheckedTestCase):
    def test_fractions_and_wrapping_values_are_refused(self):
        # ctypes used to truncate 0.6 to 0 and wrap 2**32 + 3 to 3, silently building
        # something else than asked (a dense layer of 3 outputs, an image not shifted).
        img = np.arange(9, dtype=np.float32).reshape(3, 3)
        with self.assertRaisesRegex(TypeError, "dy must be an integer"):
            cfnet.shift(img, 0.6, 0)
        with self.assertRaisesRegex(ValueError, "out_features = 4294967299 is out of range"):
            cfnet.dense(2**32 + 3)
        with self.assertRaisesRegex(ValueError, "channels = 4294967297 is out of range"):
            cfnet.Network(2**32 + 1, 16, 16)
        with self.assertRaisesRegex(TypeError, "R must be an integer"):
            cfnet.conic_conv(8, 3, R=1.5)
        with self.assertRaisesRegex(TypeError, "height must be an integer"):
            cfnet.Network(1, "16", 16)
        with self.assertRaisesRegex(TypeError, "dimension must be an integer"):
            cfnet.Tensor((2.5,))
        with self.assertRaisesRegex(ValueError, "limit = -1 is out of range"):
            cfnet.Context(header_bytes=-1)
        with small_cfnet() as net:
            x, y = rotated_patterns(4)
            with self.assertRaisesRegex(TypeError, "batch must be an integer"):
                net.evaluate(x, y, batch=2.5)

    def test_integers_of_any_kind_and_integral_floats_work(self):
        with cfnet.Network(np.int64(1), 16.0, np.uint8(16)) as net:
            self.assertEqual(net.input_shape, (1, 16, 16))
        with cfnet.Tensor((np.int32(2), 3.0)) as t:
            self.assertEqual(t.shape, (2, 3))
        np.testing.assert_array_equal(cfnet.shift(np.eye(3, dtype=np.float32), np.int8(1), 0)[1],
                                      [1, 0, 0])


class SeedAndCountTest(LeakCheckedTestCase):
    def test_seeds_are_checked_like_other_integers(self):
        # ctypes used to wrap seed=-1 to 2**64 - 1 and truncate 2.5 to 2 (init_normal) without a
        # word, or fail with "'float' object cannot be interpreted as an integer" for 16.0.
        calls = [lambda s: cfnet.Network(1, 16, 16, seed=s).close(),
                 lambda s: cfnet.classifier("cnn", 1, 16, 2, width=2, seed=s).close(),
                 lambda s: cfnet.relu().setup((1, 4, 4), seed=s)]
        with small_cfnet() as net:
            calls.append(lambda s: net.init_normal(seed=s))
            for call in calls:
                with self.assertRaisesRegex(ValueError, "seed = -1 is out of range"):
                    call(-1)
                with self.assertRaisesRegex(TypeError, "seed must be an integer, not 2.5"):
                    call(2.5)
                with self.assertRaisesRegex(TypeError, "seed must be an integer, not None"):
                    call(None)
                call(16.0)
                call(np.uint64(2**64 - 1))
        # init_normal(seed=2.5) used to give the weights of seed 2
        with small_cfnet() as a, small_cfnet() as b:
            a.init_normal(seed=2)
            b.init_normal(seed=2.0)
            np.testing.assert_array_equal(a[0].params["weight"], b[0].params["weight"])

    def test_fit_epochs_and_numpy_layer_indices(self):
        with small_cfnet() as net:
            x, y = rotated_patterns(4)
            with self.assertRaisesRegex(ValueError, "epochs = -1 is out of range"):
                net.fit(x, y, epochs=-1)  # used to return [] without training
            with self.assertRaisesRegex(TypeError, "epochs must be an integer"):
                net.fit(x, y, epochs=1.5)
            self.assertEqual(len(net.fit(x, y, epochs=np.int64(1), batch=2)), 1)
            # numpy integers (from np.arange, argmax, ...) index layers like ints
            self.assertEqual(net[np.int64(0)].kind, net[0].kind)
            self.assertEqual(net[np.uint8(1)].kind, net[1].kind)
            with self.assertRaisesRegex(TypeError, "layer index must be an int, not str"):
                net["0"]


class OptionValueTest(LeakCheckedTestCase):
    def test_a_value_that_is_not_a_number_names_the_option(self):
        # float() alone said "could not convert string to float: 'yes'" (a ValueError) or
        # "float() argument must be a string or a real number, not 'NoneType'".
        with small_cfnet() as net:
            for name, value, hint in (("aug_flip", "yes", r" \(or True/False\)"),
                                      ("learning_rate", None, ""),
                                      ("weight_decay", [1e-4, 2e-4], "")):
                with self.assertRaisesRegex(TypeError, "option %s takes a number%s, not %s"
                                            % (name, hint, re.escape(repr(value)))):
                    net.set_option(name, value)
                with self.assertRaisesRegex(TypeError, "option %s takes a number" % name):
                    net.configure(**{name: value})
            net.configure(aug_flip=True, learning_rate=np.float32(0.5), weight_decay="1e-4")
            self.assertEqual((net.get_option("aug_flip"), net.get_option("learning_rate"),
                              net.get_option("weight_decay")), (1.0, 0.5, 1e-4))


class NoneInputTest(LeakCheckedTestCase):
    def test_none_and_object_arrays_are_refused_by_name(self):
        # numpy turns None into NaN: copy_in(None) wrote a NaN, Tensor.wrap(None) made a tensor
        # of NaN, and a forgotten image argument failed as "image batch is 1" or
        # "1..5 dimensions, not 0".
        with cfnet.Tensor((2,)) as t:
            t.copy_in([1.0, 2.0])
            with self.assertRaisesRegex(TypeError, "copy_in input must be an array of numbers"):
                t.copy_in(None)
            with self.assertRaisesRegex(TypeError, "holds None"):
                t.copy_in([None, 1.0])
            np.testing.assert_array_equal(t.copy_out(), [1.0, 2.0])
        with small_cfnet() as net:
            x, y = rotated_patterns(4)
            calls = {"images": [lambda: net.train_step(None, y), lambda: net.evaluate(None, y),
                                lambda: net.infer(None), lambda: net.predict(None),
                                lambda: net.forward(None), lambda: net.invariance(None),
                                lambda: net.fit(None, y), lambda: cfnet.rotate(None, 90),
                                lambda: cfnet.shift(None, 1, 0), lambda: cfnet.normalize(None),
                                lambda: net.infer(np.array([None] * 4))],
                     "Tensor.wrap input": [lambda: cfnet.Tensor.wrap(None)],
                     "Tensor.from_array input": [lambda: cfnet.Tensor.from_array(None)],
                     "logits": [lambda: cfnet.softmax_cross_entropy(None, [0])]}
            for what, fns in calls.items():
                for call in fns:
                    with self.assertRaisesRegex(TypeError, what + " must be an array of numbers"):
                        call()


class EmptyBatchTest(LeakCheckedTestCase):
    def test_inference_on_no_images_gives_empty_results(self):
        with small_cfnet() as net:
            none = np.zeros((0, 1, 16, 16), np.float32)
            self.assertEqual(net.infer(none).shape, (0, 3))
            self.assertEqual(net.probabilities(none).shape, (0, 3))
            p = net.predict(none)
            self.assertEqual((p.shape, p.dtype), ((0,), np.int32))
            # forward raised "images is empty" where infer gave 0 x 3
            out = net.forward(none)
            self.assertEqual((out.shape, out.dtype), ((0, 3), np.float32))

    def test_a_training_forward_of_no_images_says_so(self):
        # as train_step: backward would have nothing to run on (it would have run on the
        # activations of the training forward before)
        with small_cfnet() as net:
            x, _ = rotated_patterns(2)
            out = net.forward(x, training=True)
            for none in (np.zeros((0, 1, 16, 16), np.float32), []):
                with self.assertRaisesRegex(ValueError, r"^network_forward: no images \(shape "
                                            r"\(0,( 1, 16, 16)?\)\): a training forward needs "
                                            "at least one image"):
                    net.forward(none, training=True)
            net.backward(np.ones_like(out))  # the earlier forward is still the one to use

    def test_an_empty_list_is_no_images(self):
        # [] and np.array([]) (shape (0,)) raised "images is empty"; docs/deploy.md's batched
        # loop hands them on for no images.
        with small_cfnet() as net:
            for none in ([], (), np.array([])):
                self.assertEqual(net.infer(none).shape, (0, 3))
                self.assertEqual(net.probabilities(none).shape, (0, 3))
                p = net.predict(none)
                self.assertEqual((p.shape, p.dtype), ((0,), np.int32))
                self.assertEqual(net.forward(none).shape, (0, 3))

    def test_no_images_of_another_shape_is_a_shape_mismatch(self):
        # It was "images is empty ...: libcfnet needs at least one element along every axis",
        # although no images of the right shape are fine.
        with small_cfnet() as net:
            for name in ("infer", "predict", "probabilities", "forward"):
                with self.assertRaisesRegex(cfnet.ShapeMismatchError, r"^network_%s: input is "
                                            r"0x1x8x8, expected N x 1x16x16 \(shape" % name):
                    getattr(net, name)(np.zeros((0, 1, 8, 8), np.float32))

    def test_other_calls_name_the_empty_argument(self):
        # They used to fail with "tensor_wrap: dimension 0 is 0", a call the user never made.
        with small_cfnet() as net:
            none = np.zeros((0, 1, 16, 16), np.float32)
            # (evaluate, training and normalize of no images: test_numeric_edges.py)
            calls = [lambda: net.invariance(none),
                     lambda: net.forward(np.zeros((2, 1, 0, 16))),
                     lambda: net.infer(np.zeros((2, 1, 0, 16))),
                     lambda: cfnet.rotate(none, 90), lambda: cfnet.normalize(np.zeros((2, 0))),
                     lambda: net[0].forward(none)]
            for call in calls:
                with self.assertRaisesRegex(ValueError, r"is empty \(shape") as cm:
                    call()
                self.assertNotIn("tensor_wrap", str(cm.exception))


class SingleImageTest(LeakCheckedTestCase):
    def test_predict_probabilities_infer_on_one_image(self):
        with small_cfnet() as net:
            x, _ = rotated_patterns(3)
            batch_p = net.probabilities(x)
            for i in range(3):
                p = net.probabilities(x[i])
                self.assertEqual(p.shape, (3,))
                np.testing.assert_allclose(p, batch_p[i], rtol=1e-6)
                self.assertEqual(net.predict(x[i]), int(net.predict(x)[i]))
                self.assertIsInstance(net.predict(x[i]), int)
                self.assertEqual(net.infer(x[i]).shape, (3,))

    def test_invariance_of_one_image_and_wrong_shapes(self):
        # invariance(x[0]) failed with "input does not match the network", naming no shape.
        with small_cfnet() as net:
            x, _ = rotated_patterns(3)
            self.assertEqual(net.invariance(x[1]), net.invariance(x[1:2]))
            self.assertEqual(net.invariance(x[1], angles=[45], reflect=True),
                             net.invariance(x[1:2], angles=[45], reflect=True))
            for bad in (np.zeros((2, 1, 8, 8), np.float32), np.zeros((16, 16), np.float32),
                        np.zeros((2, 2, 16, 16), np.float32)):
                with self.assertRaisesRegex(cfnet.ShapeMismatchError,
                                            r"images are %s, expected N x 1x16x16"
                                            % "x".join(map(str, bad.shape))):
                    net.invariance(bad)

    def test_other_shapes_say_to_add_the_batch_axis(self):
        with small_cfnet() as net:
            with self.assertRaisesRegex(ValueError, "batch of one: x\\[None, None\\]"):
                net.predict(np.zeros((16, 16), np.float32))
            # it said "add the batch axis with x[None]", which gives 1 x 2 x 16 x 16
            with self.assertRaisesRegex(ValueError, "add it with x\\[:, None\\]"):
                net.probabilities(np.zeros((2, 16, 16), np.float32))

    def test_channels_last_and_missing_channel_axis_are_named(self):
        # tifffile, PIL and skimage give H x W x C or H x W images: every call said only
        # "image batch is 5x16x16x2, expected N x 2x16x16", and predict of one H x W x C
        # image advised x[None], which does not fix it.
        x = np.zeros((3, 16, 16, 2), np.float32)
        y = np.zeros(3, np.int32)
        with cfnet.classifier("cnn", 2, 16, 3, seed=1) as net:
            calls = [lambda: net.predict(x), lambda: net.probabilities(x), lambda: net.infer(x),
                     lambda: net.train_step(x, y), lambda: net.fit(x, y),
                     lambda: net.train_epoch(x, y), lambda: net.evaluate(x, y),
                     lambda: net.invariance(x), lambda: net.forward(x)]
            for call in calls:
                with self.assertRaisesRegex(cfnet.ShapeMismatchError,
                                            r"3x16x16x2.*np\.moveaxis\(x, -1, -3\)"):
                    call()
            with self.assertRaisesRegex(ValueError, r"np\.moveaxis\(x, -1, -3\)"):
                net.predict(x[0])
            self.assertEqual(net.step_count, 0)
            self.assertEqual(net.predict(np.moveaxis(x, -1, -3)).shape, (3,))
        with cfnet.classifier("cnn", 1, 16, 3, seed=1) as net:
            for call in (lambda: net.train_step(x[..., 0], y), lambda: net.fit(x[..., 0], y),
                         lambda: net.evaluate(x[..., 0], y), lambda: net.invariance(x[..., 0])):
                with self.assertRaisesRegex(cfnet.ShapeMismatchError, r"x\[:, None\]"):
                    call()
            with self.assertRaisesRegex(cfnet.ShapeMismatchError, r"np\.moveaxis"):
                net.fit(x[..., :1], y)
            self.assertEqual(net.step_count, 0)


    def test_every_call_taking_images_says_a_wrong_shape_alike(self):
        # infer, probabilities and predict raised a plain ValueError "images must be N x C x H
        # x W ..., not shape (...)" naming no function, forward "arrays for libcfnet have 1..5
        # dimensions" or the library's "input is 1", where evaluate, training and invariance
        # raised ShapeMismatchError "network_evaluate: images are ..., expected N x ...".
        with small_cfnet() as net:
            y = [0, 1]
            calls = {"network_infer": net.infer, "network_probabilities": net.probabilities,
                     "network_predict": net.predict, "network_forward": net.forward,
                     "network_invariance": net.invariance,
                     "network_evaluate": lambda a: net.evaluate(a, y),
                     "network_train_step": lambda a: net.train_step(a, y)}
            single = ("network_infer", "network_probabilities", "network_predict",
                      "network_invariance")
            for bad in (np.zeros((2, 1, 1, 16, 16), np.float32), np.zeros((2, 256), np.float32),
                        np.zeros((1,) * 6, np.float32)):
                for fn, call in calls.items():
                    shape = "x".join(map(str, bad.shape))
                    with self.assertRaisesRegex(cfnet.ShapeMismatchError,
                                                r"^%s: images are %s, expected N x 1x16x16%s"
                                                % (fn, shape, r" \(or one 1x16x16 image\)"
                                                   if fn in single else r" \(")):
                        call(bad)
            self.assertEqual(net.step_count, 0)

    def test_copy_warnings_point_at_the_callers_line(self):
        # Every Network method's CopyWarning pointed at the binding's own _using wrapper
        # (_network.py), and Layer.forward's at _layer.py, while rotate's, wrap's and
        # softmax_cross_entropy's pointed at the caller's line, as warnings should.
        x, y = rotated_patterns(3)
        x64 = x.astype(np.float64)
        with small_cfnet() as net, cfnet.dense(3) as layer:
            layer.setup((4,))
            d = net.forward(x, training=True).astype(np.float64)
            calls = {"infer": lambda: net.infer(x64), "predict": lambda: net.predict(x64[0]),
                     "evaluate": lambda: net.evaluate(x64, y),
                     "train_step": lambda: net.train_step(x64, y),
                     "train_epoch": lambda: net.train_epoch(x64, y),
                     "fit": lambda: net.fit(x64, y), "forward": lambda: net.forward(x64),
                     "backward": lambda: net.forward(x, True) is net.backward(d), "invariance": lambda: net.invariance(x64),
                     "Layer.forward": lambda: layer.forward(np.ones((2, 4))),
                     "Layer.backward": lambda: layer.backward(np.ones((2, 4)), np.ones((2, 3)),
                                                              np.ones((2, 3))),
                     "rotate": lambda: cfnet.rotate(x64, 90)}
            for name, call in calls.items():
                with warnings.catch_warnings(record=True) as w:
                    warnings.simplefilter("always")
                    call()
                where = {(v.filename, v.category) for v in w}
                self.assertEqual((name, where), (name, {(__file__, cfnet.CopyWarning)}))

    def test_warnings_point_at_the_callers_line_from_compiled_files_alone(self):
        # The binding installed as .pyc files compiled in another folder (a sourceless or
        # frozen distribution: the code's file names are the build's, not the import's): its
        # frames were told by their folder, so the warnings pointed into cfnet/_tensor.py.
        import compileall
        import shutil
        import subprocess
        import sys
        src = os.path.dirname(os.path.abspath(cfnet.__file__))
        with tempfile.TemporaryDirectory() as d:
            build, inst = os.path.join(d, "build", "cfnet"), os.path.join(d, "inst", "cfnet")
            shutil.copytree(src, build, ignore=shutil.ignore_patterns("__pycache__"))
            self.assertTrue(compileall.compile_dir(build, quiet=1, legacy=True))
            shutil.copytree(build, inst, ignore=shutil.ignore_patterns("*.py"))
            shutil.rmtree(os.path.dirname(build))
            script = os.path.join(d, "user.py")
            with open(script, "w") as f:
                f.write("import sys, warnings\n"
                        "import numpy as np\n"
                        "sys.path.insert(0, sys.argv[1])\n"
                        "import cfnet\n"
                        "with warnings.catch_warnings(record=True) as w:\n"
                        "    warnings.simplefilter('always')\n"
                        "    cfnet.rotate(np.zeros((1, 1, 8, 8)), 90)\n"
                        "print(cfnet.__file__)\n"
                        "print(sorted({(v.filename, v.lineno) for v in w}))\n")
            r = subprocess.run([sys.executable, script, os.path.dirname(inst)], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=dict(os.environ))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.splitlines(),
                             [os.path.join(inst, "__init__.pyc"), repr([(script, 7)])])

    def test_from_array_refuses_what_wrap_refuses_alike(self):
        # Tensor.from_array of an empty or 6-D array raised the library's error for a call the
        # user did not make ("tensor_create: dimension 0 is 0"), wrap a ValueError naming it.
        # from_array keeps the class it raised (InvalidArgumentError, a ValueError), so that
        # callers catching CfnetError still catch it; only the words are wrap's.
        for bad, msg in ((np.zeros((2, 0)), r"input is empty \(shape \(2, 0\)\)"),
                         ([], r"input is empty \(shape \(0,\)\)"),
                         (np.zeros((1,) * 6), "^tensors have 1..5 dimensions, not 6$")):
            for what, call in (("Tensor.wrap", cfnet.Tensor.wrap),
                               ("Tensor.from_array", cfnet.Tensor.from_array)):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", cfnet.CopyWarning)
                    with self.assertRaises(ValueError) as e:
                        call(bad)
                self.assertEqual(isinstance(e.exception, cfnet.InvalidArgumentError),
                                 what == "Tensor.from_array")
                self.assertRegex(e.exception.message if what == "Tensor.from_array"
                                 else str(e.exception), msg.replace("input", what + " input"))


class NumberAsImagesTest(LeakCheckedTestCase):
    def test_a_single_number_is_named_as_one(self):
        # A 0-d input was described as "images are 1" (the float32 conversion made it a vector
        # of one): it reads as if the images were the number 1, or one image.
        with small_cfnet() as net:
            calls = {"network_infer": (net.infer, True),
                     "network_probabilities": (net.probabilities, True),
                     "network_predict": (net.predict, True),
                     "network_forward": (net.forward, False),
                     "network_evaluate": (lambda v: net.evaluate(v, [0]), False),
                     "network_train_step": (lambda v: net.train_step(v, [0]), False),
                     "network_train_epoch": (lambda v: net.train_epoch(v, [0]), False),
                     "network_invariance": (net.invariance, True)}
            for fn, (call, single) in calls.items():
                for value, shown in ((7, "7"), (np.float32(2.5), "2.5"),
                                     (np.array(3.0), "3.0"), (np.array(1, np.float32), "1.0")):
                    with self.assertRaisesRegex(cfnet.ShapeMismatchError,
                                                r"^%s: images are a single number \(%s\), not an "
                                                r"array: expected N x 1x16x16%s \(shape"
                                                % (fn, re.escape(shown), re.escape(
                                                    " (or one 1x16x16 image)") if single
                                                    else "")):
                        call(value)
            with self.assertRaisesRegex(cfnet.ShapeMismatchError, r"^network_train_epoch: images "
                                        r"are a single number \(1\)"):
                net.fit(1, [0])
            self.assertEqual(net.step_count, 0)

    def test_one_image_given_to_a_call_that_takes_batches_says_so(self):
        # forward (and evaluate, training) of one 1 x 16 x 16 image of a 1-channel network said
        # "no channel axis? (N x H x W)": the shape is one image's, which x[None] makes a batch.
        with small_cfnet() as net:
            one = np.zeros((1, 16, 16), np.float32)
            for fn, call in (("network_forward", net.forward),
                             ("network_evaluate", lambda v: net.evaluate(v, [0])),
                             ("network_train_step", lambda v: net.train_step(v, [0]))):
                with self.assertRaisesRegex(cfnet.ShapeMismatchError,
                                            r"^%s: images are 1x16x16, expected N x 1x16x16; one "
                                            r"C x H x W image\? a batch of one is x\[None\] "
                                            r"\(shape mismatch\)$" % fn):
                    call(one)
            self.assertEqual(net.forward(one[None]).shape, (1, 3))
            # three images without their channel axis are still named so
            with self.assertRaisesRegex(cfnet.ShapeMismatchError, r"images are 3x16x16, expected "
                                        r"N x 1x16x16; no channel axis\? \(N x H x W\)"):
                net.forward(np.zeros((3, 16, 16), np.float32))


class InputKindTest(LeakCheckedTestCase):
    def test_complex_strings_and_dates_are_refused_by_name(self):
        # numpy dropped the imaginary part (with only a ComplexWarning) and parsed strings:
        # infer(np.array([["0.5", ...]])) computed on the parsed numbers.
        x, _ = rotated_patterns(2)
        kinds = [x.astype(np.complex64), (x + 0j).tolist(), x.astype(str),
                 np.zeros(x.shape, "datetime64[s]")]
        with small_cfnet() as net, cfnet.Tensor(x.shape) as t:
            for bad in kinds:
                calls = {"images": [lambda: net.infer(bad), lambda: net.evaluate(bad, [0, 1]),
                                    lambda: net.train_step(bad, [0, 1]),
                                    lambda: cfnet.rotate(bad, 90), lambda: cfnet.normalize(bad)],
                         "Tensor.wrap input": [lambda: cfnet.Tensor.wrap(bad)],
                         "Tensor.from_array input": [lambda: cfnet.Tensor.from_array(bad)],
                         "copy_in input": [lambda: t.copy_in(bad)],
                         "angles": [lambda: net.invariance(x, angles=np.asarray(bad).ravel()[:2])]}
                for what, fns in calls.items():
                    for call in fns:
                        with self.assertRaisesRegex(TypeError, what + " must be an array of "
                                                    "real numbers, not dtype"):
                            call()
            # Booleans and integers are numbers.
            for fine in (x > 0.5, (x * 100).astype(np.int16), (x * 100).astype(int).tolist()):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", cfnet.CopyWarning)
                    np.testing.assert_array_equal(net.infer(fine),
                                                  net.infer(np.asarray(fine, np.float32)))

    def test_invariance_angles(self):
        x, _ = rotated_patterns(2)
        with small_cfnet() as net:
            with self.assertRaisesRegex(TypeError, "angles must be an array of numbers"):
                net.invariance(x, angles=[None])  # was a NaN angle: "degrees is not finite"
            # The count is a C int: it wrapped to a negative "n_angles is -2147483643".
            with self.assertRaisesRegex(ValueError, "the number of angles = 2147483653 is out "
                                        "of range"):
                net.invariance(x, angles=np.broadcast_to(90.0, (2**31 + 5,)))
            self.assertEqual(net.invariance(x, angles=(90, 180.0)),
                             net.invariance(x, angles=np.array([90, 180], np.int64)))
            with self.assertRaisesRegex(cfnet.ShapeMismatchError, r"images are a single number "
                                        r"\(1.0\), not an array: expected N x 1x16x16"):
                net.invariance(np.array(1, np.float32))

    def test_shapes_must_be_sequences(self):
        with self.assertRaisesRegex(TypeError, "a shape must be a sequence of integers such as "
                                    r"\(2, 3\), not int"):
            cfnet.Tensor(3)  # "'int' object is not iterable"
        with cfnet.dense(3) as layer:
            with self.assertRaisesRegex(TypeError, "a shape must be a sequence"):
                layer.setup(4)
            self.assertEqual(layer.setup([4]), (3,))

    def test_from_bytes_takes_bytes_like_objects_only(self):
        with small_cfnet() as net:
            data = net.to_bytes()
            x, _ = rotated_patterns(2)
            for like in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
                with cfnet.Network.from_bytes(like) as copy:
                    np.testing.assert_array_equal(copy.infer(x), net.infer(x))
        for bad in (5, np.int64(16), True):  # bytes(5) is five zero bytes: a FormatError
            with self.assertRaisesRegex(TypeError, "from_bytes needs bytes"):
                cfnet.Network.from_bytes(bad)


class ReprTest(LeakCheckedTestCase):
    def test_repr_of_closed_objects_does_not_raise(self):
        # repr(net.metadata) after net.close() raised ValueError: a notebook cell showing it
        # printed a traceback instead of the value.
        net = cfnet.classifier("cnn", 1, 16, 2, seed=1)
        net.metadata["classes"] = '["a", "b"]'
        meta, layer = net.metadata, net[0]
        self.assertEqual(repr(meta), "Metadata({'classes': '[\"a\", \"b\"]'})")
        net.close()
        for obj in (net, meta, layer):
            self.assertIn("closed", repr(obj))
        with self.assertRaises(ValueError):
            dict(meta)
