"""examples/python/train.py runs, trains, checks invariance and writes a loadable model."""
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import cfnet
from cfnet_testutil import REPO

EXAMPLE = os.path.join(REPO, "examples", "python", "train.py")
MPI_EXAMPLE = os.path.join(REPO, "examples", "python", "mpi_train.py")

# An older cfnet installed in the interpreter's site-packages: importing it says so and exits.
OLD_PACKAGE = '''import sys
__version__ = "0.0.1"
sys.exit("an installed cfnet %s was imported: %s" % (__version__, __file__))
'''


class ExampleTest(unittest.TestCase):
    def test_train_example(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "model.safetensors")
            r = subprocess.run([sys.executable, EXAMPLE, "--train", "150", "--test", "60",
                                "--epochs", "3", "--out", out],
                               capture_output=True, text=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("reloaded network gives identical outputs; classes ring, bar, blob",
                          r.stdout)
            self.assertIn("quarter turns", r.stdout)
            with cfnet.Network.load(out) as net:
                self.assertEqual(net.input_shape, (1, 16, 16))
                self.assertEqual(net.output_shape, (3,))
                self.assertEqual(net[0].kind, cfnet.LayerKind.CONIC_CONV)
                self.assertEqual(net.metadata["class_names"], '["ring", "bar", "blob"]')
                x = np.zeros((1, 1, 16, 16), np.float32)
                self.assertEqual(net.predict(x).shape, (1,))

    def test_bad_arguments(self):
        """A wrong argument gives a one-line message and exit status 2 (usage) or 1 (an
        unwritable --out), not a traceback; a size outside the presets' 16 to 512 is refused
        before any image is made."""
        with tempfile.TemporaryDirectory() as d:
            cases = [(["--batch", "0"], 2, "argument --batch"),
                     (["--epochs", "-1"], 2, "argument --epochs"),
                     (["--train", "x"], 2, "argument --train"),
                     (["--seed", "-1"], 2, "argument --seed"),
                     (["--size", "10", "--train", "3", "--test", "3"], 2, "16 to 512"),
                     (["--size", "100000"], 2, "16 to 512"),
                     (["--train", "20", "--test", "5", "--epochs", "1", "--out",
                       os.path.join(d, "missing", "m.safetensors")], 1, "network_save")]
            for args, status, text in cases:
                r = subprocess.run([sys.executable, EXAMPLE] + args, cwd=d,
                                   capture_output=True, text=True, timeout=600)
                self.assertEqual(r.returncode, status, (args, r.stdout, r.stderr))
                self.assertIn(text, r.stderr, args)
                self.assertNotIn("Traceback", r.stderr, args)
            self.assertEqual(os.listdir(d), [])

    def test_checkout_package_before_installed(self):
        """Run from a checkout without PYTHONPATH, the examples use the checkout's package even
        when an installed (older) cfnet is on the path; a copy outside a checkout uses the
        installed one; a cfnet in PYTHONPATH comes before the checkout's."""
        with tempfile.TemporaryDirectory() as d:
            venv = os.path.join(d, "venv")
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages",
                            "--without-pip", venv], check=True, timeout=300)
            py = os.path.join(venv, "bin", "python3")
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  env=env, capture_output=True, text=True, check=True).stdout.strip()
            os.makedirs(os.path.join(site, "cfnet"))
            with open(os.path.join(site, "cfnet", "__init__.py"), "w") as f:
                f.write(OLD_PACKAGE)
            old = "an installed cfnet 0.0.1 was imported: " + site
            # The problem is there: a plain import, even from the checkout, finds the old one.
            r = subprocess.run([py, "-c", "import cfnet"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=300)
            self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn(old, r.stderr)

            out = os.path.join(d, "model.safetensors")
            r = subprocess.run([py, EXAMPLE, "--train", "30", "--test", "6", "--epochs", "1",
                                "--out", out], cwd=d, env=env,
                               capture_output=True, text=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("reloaded network gives identical outputs", r.stdout)
            if importlib.util.find_spec("mpi4py") and not os.environ.get("LD_PRELOAD"):
                r = subprocess.run([py, MPI_EXAMPLE, "--help"], cwd=d, env=env,
                                   capture_output=True, text=True, timeout=300)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("usage: mpi_train.py", r.stdout)

            # A cfnet in a folder PYTHONPATH names comes first: the user asked for that one.
            own = os.path.join(d, "own")
            os.makedirs(os.path.join(own, "cfnet"))
            with open(os.path.join(own, "cfnet", "__init__.py"), "w") as f:
                f.write(OLD_PACKAGE.replace("0.0.1", "9.9.9"))
            mpi = importlib.util.find_spec("mpi4py") and not os.environ.get("LD_PRELOAD")
            for script in (EXAMPLE, MPI_EXAMPLE) if mpi else (EXAMPLE,):
                r = subprocess.run([py, script, "--help"], cwd=d,
                                   env=dict(env, PYTHONPATH=own + os.pathsep + d),
                                   capture_output=True, text=True, timeout=300)
                self.assertNotEqual(r.returncode, 0, (script, r.stdout + r.stderr))
                self.assertIn("an installed cfnet 9.9.9 was imported: " + own, r.stderr, script)

            copy = os.path.join(d, "train.py")
            shutil.copy(EXAMPLE, copy)
            r = subprocess.run([py, copy, "--help"], cwd=d, env=env,
                               capture_output=True, text=True, timeout=300)
            self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn(old, r.stderr)


if __name__ == "__main__":
    unittest.main()
