"""Arrays in and out: zero-copy wrapping of float32 C-contiguous arrays, copies with a warning
otherwise, the Tensor handle, errors as exceptions."""
import gc
import warnings

import numpy as np

import cfnet
from cfnet import _lib
from cfnet_testutil import LeakCheckedTestCase


class TensorTest(LeakCheckedTestCase):
    def test_wrap_does_not_copy_contiguous_float32(self):
        a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with cfnet.Tensor.wrap(a) as t:
                self.assertEqual(_lib.load().cfnet_tensor_data(t.handle), a.ctypes.data)
                self.assertEqual(t.shape, (2, 3, 4))
                self.assertEqual(t.size, 24)
                self.assertEqual(t.ndim, 3)
                v = t.numpy()
                self.assertTrue(np.shares_memory(v, a))
                t.fill(7)
                self.assertTrue(np.all(a == 7))

    def test_other_arrays_are_copied_with_a_warning(self):
        cases = {
            "float64": np.zeros((2, 3)),
            "strided": np.zeros((4, 6), dtype=np.float32)[:, ::2],
            "fortran": np.asfortranarray(np.zeros((3, 4), dtype=np.float32)),
            "big-endian": np.zeros((2, 3), dtype=">f4"),
        }
        for name, a in cases.items():
            with self.subTest(name), warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                with cfnet.Tensor.wrap(a) as t:
                    self.assertEqual(t.shape, a.shape)
                    self.assertFalse(np.shares_memory(t.numpy(), a))
                self.assertEqual(len(w), 1)
                self.assertTrue(issubclass(w[0].category, cfnet.CopyWarning))
                self.assertIn("copied", str(w[0].message))

    def test_layer_input_copy_warns_and_gives_same_result(self):
        x = np.random.default_rng(1).normal(size=(2, 3, 5))
        with cfnet.relu() as r:
            r.setup((3, 5))
            with self.assertWarns(cfnet.CopyWarning):
                y64 = r.forward(x)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                y32 = r.forward(x.astype(np.float32))
            np.testing.assert_array_equal(y64, y32)

    def test_create_numpy_copy_fill_zero_reshape(self):
        with cfnet.Tensor((2, 5)) as t:
            v = t.numpy()
            self.assertEqual(v.dtype, np.float32)
            np.testing.assert_array_equal(v, np.zeros((2, 5)))
            t.copy_in(np.arange(10))
            np.testing.assert_array_equal(v.ravel(), np.arange(10))
            out = t.copy_out()
            self.assertFalse(np.shares_memory(out, v))
            t.reshape((5, 2))
            self.assertEqual(t.shape, (5, 2))
            np.testing.assert_array_equal(t.numpy(), np.arange(10).reshape(5, 2))
            t.zero()
            self.assertEqual(float(np.abs(v).sum()), 0.0)
            t2 = cfnet.Tensor.from_array([[1, 2], [3, 4]])
            np.testing.assert_array_equal(t2.copy_out(), [[1, 2], [3, 4]])
            t2.close()

    def test_errors_raise_with_status_and_message(self):
        with cfnet.Tensor((2, 5)) as t:
            with self.assertRaises(cfnet.ShapeMismatchError) as cm:
                t.copy_in(np.zeros(3))
            self.assertEqual(cm.exception.status, cfnet.Status.E_SHAPE_MISMATCH)
            self.assertIn("tensor_copy_in", cm.exception.message)
            self.assertIn("count is 3", str(cm.exception))
            self.assertIsInstance(cm.exception, ValueError)
            with self.assertRaises(cfnet.ShapeMismatchError):
                t.reshape((3, 3))
        with self.assertRaises(cfnet.InvalidArgumentError) as cm:
            cfnet.Tensor((2, 0))
        self.assertIn("positive", cm.exception.message)
        with self.assertRaises(cfnet.InvalidArgumentError):
            cfnet.Tensor((1,) * 6)
        with self.assertRaises(ValueError):
            cfnet.Tensor.wrap(np.zeros((1,) * 6, dtype=np.float32))

    def test_closed_tensor_raises_and_close_is_idempotent(self):
        t = cfnet.Tensor((3,))
        t.close()
        t.close()
        self.assertTrue(t.closed)
        with self.assertRaises(ValueError):
            t.shape
        self.assertIn("closed", repr(t))

    def test_garbage_collection_frees_and_views_keep_the_tensor_alive(self):
        before = _lib.live["tensor"]
        t = cfnet.Tensor((4,))
        v = t.numpy()
        del t
        gc.collect()
        self.assertEqual(_lib.live["tensor"], before + 1)  # v keeps it alive
        v[:] = 3
        self.assertEqual(float(v.sum()), 12.0)
        del v
        gc.collect()
        self.assertEqual(_lib.live["tensor"], before)

    def test_wrapped_array_outlives_the_callers_reference(self):
        t = cfnet.Tensor.wrap(np.ones(1000, dtype=np.float32))
        gc.collect()
        self.assertEqual(float(t.numpy().sum()), 1000.0)
        t.close()


if __name__ == "__main__":
    import unittest
    unittest.main()
