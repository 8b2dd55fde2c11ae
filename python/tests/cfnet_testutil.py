"""Shared helpers for the binding's tests: small networks, a rotated-pattern dataset, the
live-handle counter check, and a child process interrupted by SIGINT inside a C call."""
import gc
import os
import signal
import subprocess
import sys
import unittest

import numpy as np

import cfnet
from cfnet import _lib

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))


def small_cfnet(S=16, classes=3, seed=1, bn=True):
    """Conic layers with equivariant pooling, the DFT transition and a dense layer."""
    net = cfnet.Network(1, S, S, seed=seed)
    layers = [cfnet.conic_conv(6, 3, R=2)]
    if bn:
        layers.append(cfnet.batch_norm())
    layers += [cfnet.relu(), cfnet.pool(), cfnet.conic_conv(8, 3, R=1), cfnet.relu(),
               cfnet.pool(), cfnet.dft_projection(8), cfnet.dft_magnitude(),
               cfnet.dense(classes)]
    return net.extend(layers)


def rotated_patterns(n, S=16, seed=0, noise=0.1):
    """Rotation-invariant classes: 0 ring, 1 bar through the centre, 2 off-centre blob, each at
    a random orientation with a small shift and noise. Returns (N x 1 x S x S float32, int32)."""
    rng = np.random.default_rng(seed)
    c = (S - 1) / 2.0
    i, j = np.mgrid[0:S, 0:S]
    x = np.empty((n, 1, S, S), dtype=np.float32)
    y = np.arange(n, dtype=np.int32) % 3
    for s in range(n):
        th = 2 * np.pi * rng.random()
        dx, dy = rng.uniform(-1, 1, size=2)
        u, v = j - c - dx, c - i - dy
        ru, rv = u * np.cos(th) + v * np.sin(th), -u * np.sin(th) + v * np.cos(th)
        if y[s] == 0:
            img = np.exp(-(np.sqrt(u * u + v * v) - 4.0) ** 2 / 1.5)
        elif y[s] == 1:
            img = np.exp(-rv * rv / 1.5) * (np.abs(ru) < 5)
        else:
            img = np.exp(-((ru - 3.5) ** 2 + rv * rv) / 3.0)
        x[s, 0] = img + noise * rng.standard_normal((S, S))
    return x, y


class LeakCheckedTestCase(unittest.TestCase):
    """Every test must leave the binding's live-handle counts as it found them."""

    def setUp(self):
        gc.collect()
        self._live_before = dict(_lib.live)

    def tearDown(self):
        gc.collect()
        self.assertEqual(dict(_lib.live), self._live_before, "handles leaked or freed twice")


# Put before the code of an interrupt_child: ``run_interrupted(call, *args)`` runs call(*args)
# and, at the first check point the C call asks (the binding's interrupt callback), prints
# "inside" and waits there until a signal has reached the process (signal.set_wakeup_fd), so
# that the parent's SIGINT lands inside the C call, before a single layer has run, whatever
# the timing. It returns ("interrupted" or "finished", the (done, total) of every check point
# asked): a call stopped by the SIGINT asks no check point after the one where it was waiting.
CHILD_PRELUDE = r"""
import os, select, signal, sys
# Python's KeyboardInterrupt handler, which it does not install when it starts with SIGINT
# ignored (inherited from a test run started by nohup or in the background of a script): the
# SIGINT would be lost, and the child would wait at its check point for 300 s
signal.signal(signal.SIGINT, signal.default_int_handler)
def run_interrupted(call, *args):
    r, w = os.pipe()
    os.set_blocking(w, False)
    checks = []
    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "_interrupt_check":
            checks.append((frame.f_locals["done"], frame.f_locals["total"]))
            if len(checks) == 1:
                print("inside", flush=True)
                select.select([r], [], [], 300)
    old = signal.set_wakeup_fd(w)
    sys.setprofile(profile)
    try:
        call(*args)
        return "finished", checks
    except KeyboardInterrupt:
        return "interrupted", checks
    finally:
        sys.setprofile(None)
        signal.set_wakeup_fd(old)
        os.close(r)
        os.close(w)
"""


def interrupt_child(test, code, *args, timeout=300):
    """Runs CHILD_PRELUDE + ``code`` with ``args`` in a child Python (this environment), sends
    it SIGINT (as Ctrl-C would) once it prints "inside", and returns the lines it printed after
    that; fails ``test`` if the child never got there or did not exit with status 0."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD_PRELUDE + code] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        first = proc.stdout.readline()
        if first != "inside\n":
            out, err = proc.communicate(timeout=timeout)
            test.fail("the child did not reach the C call: %r\n%s" % (first + out, err))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    test.assertEqual(proc.returncode, 0, err)
    return out.splitlines()
