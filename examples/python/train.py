#!/usr/bin/python3
"""Train a small CFNet on generated rotated patterns with the Python binding, and save it.

Three rotation-invariant classes of 16 x 16 images, each drawn at a random angle with a small
shift and noise: a ring, a bar through the centre, and an off-centre blob. The network is the
library's preset CFNet for this size (cfnet.classifier: conic convolution layers with batch
norm and equivariant pooling, the DFT transition and a dense classifier, docs/guide.md); it is
trained with Adam and rotation augmentation, its invariance to rotations is measured, and it is
saved in the safetensors layout with the class names in its metadata, then loaded back and
checked.

Usage (from the repository root, after `make`):
    CFNET_LIBRARY=$PWD/lib/libcfnet.so /usr/bin/python3 examples/python/train.py [--out FILE]
Needs numpy (Debian: python3-numpy).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

# In a checkout (examples/python/ beside python/cfnet/) the script uses the checkout's package:
# its python/ goes on the module path before the standard library and so before an installed
# cfnet (site-packages, ~/.local, maybe an older version), which would be imported before it
# otherwise; a cfnet in a folder that PYTHONPATH names still comes first, as asked. A copy of
# the script outside a checkout imports the installed package.
CHECKOUT_PYTHON = os.path.normpath(os.path.join(os.path.dirname(os.path.realpath(__file__)),
                                                os.pardir, os.pardir, "python"))
if os.path.isfile(os.path.join(CHECKOUT_PYTHON, "cfnet", "__init__.py")):
    STDLIB = os.path.dirname(os.__file__)  # after the script's folder and PYTHONPATH's
    sys.path.insert(sys.path.index(STDLIB) if STDLIB in sys.path else 0, CHECKOUT_PYTHON)
import cfnet  # noqa: E402

CLASSES = ("ring", "bar", "blob")


def rotated_patterns(n, size, rng, noise=0.1):
    """n images (n x 1 x size x size float32) and labels (int32), classes in turn."""
    c = (size - 1) / 2
    i, j = np.mgrid[0:size, 0:size]
    x = np.empty((n, 1, size, size), dtype=np.float32)
    y = np.arange(n, dtype=np.int32) % len(CLASSES)
    for s in range(n):
        th = rng.uniform(0, 2 * np.pi)
        dx, dy = rng.uniform(-1, 1, size=2)
        u, v = j - c - dx, c - i - dy             # centred coordinates, v pointing up
        ru, rv = u * np.cos(th) + v * np.sin(th), -u * np.sin(th) + v * np.cos(th)
        if y[s] == 0:
            img = np.exp(-(np.hypot(u, v) - size / 4) ** 2 / 1.5)
        elif y[s] == 1:
            img = np.exp(-rv ** 2 / 1.5) * (np.abs(ru) < size / 3)
        else:
            img = np.exp(-((ru - size / 4.5) ** 2 + rv ** 2) / 3.0)
        x[s, 0] = img + noise * rng.standard_normal((size, size))
    return x, y


def build(size, seed):
    # 8 filters per layer; sizes 16 to 512 work (the depth and pooling follow from the size)
    net = cfnet.classifier("cfnet", 1, size, len(CLASSES), width=8, seed=seed)
    net.metadata["class_names"] = json.dumps(CLASSES)
    return net


def count(low, high=None):
    """An argparse type: an integer >= low (and <= high when given)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("'%s' is not an integer" % text) from None
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError("%d is not in %d to %d" % (value, low, high))
        if value < low:
            raise argparse.ArgumentTypeError("%d is less than %d" % (value, low))
        return value
    return parse


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # the presets' input sizes, checked before the images are made (--size 100000 would
    # otherwise run out of memory making them, before the library could refuse the size)
    ap.add_argument("--size", type=count(16, 512), default=16,
                    help="image size, 16 to 512 (default 16)")
    ap.add_argument("--train", type=count(1), default=600, help="training images (default 600)")
    ap.add_argument("--test", type=count(1), default=300, help="test images (default 300)")
    ap.add_argument("--epochs", type=count(1), default=8)
    ap.add_argument("--batch", type=count(1), default=50)
    ap.add_argument("--seed", type=count(0), default=1)
    ap.add_argument("--out", default="cfnet_rotated_patterns.safetensors",
                    help="model file to write")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    xtrain, ytrain = rotated_patterns(args.train, args.size, rng)
    xtest, ytest = rotated_patterns(args.test, args.size, rng)
    print("libcfnet %s (%s)" % (cfnet.version(), cfnet.library_path()))

    with build(args.size, args.seed) as net:
        print(net.summary())
        net.configure(learning_rate=5e-3, lr_decay_rate=0.95,
                      lr_decay_steps=max(1, args.train // args.batch),
                      weight_decay=5e-4, aug_rotation="any", aug_jitter=1)
        t0 = time.time()

        def report(epoch, loss):
            test_loss, acc = net.evaluate(xtest, ytest)
            print("epoch %2d  train loss %.4f  test loss %.4f  accuracy %.3f  (%.1f s)"
                  % (epoch + 1, loss, test_loss, acc, time.time() - t0))

        net.fit(xtrain, ytrain, epochs=args.epochs, batch=args.batch,
                rng=np.random.default_rng(args.seed), callback=report)

        loss, acc = net.evaluate(xtest, ytest)
        quarter = net.invariance(xtest[:50])
        other = net.invariance(xtest[:50], angles=[30, 45, 60])
        print("test accuracy %.3f; largest relative output change: quarter turns %.1e, "
              "30/45/60 degrees %.1e" % (acc, quarter, other))
        for angle in (90, 45):
            _, acc_rot = net.evaluate(cfnet.rotate(xtest, angle), ytest)
            print("accuracy on the test images turned by %d degrees: %.3f" % (angle, acc_rot))

        net.save(args.out)
        print("saved %s (%d bytes)" % (args.out, os.path.getsize(args.out)))
        with cfnet.Network.load(args.out) as copy:
            same = np.array_equal(copy.infer(xtest), net.infer(xtest))
            names = json.loads(copy.metadata["class_names"])
        print("reloaded network gives %s outputs; classes %s"
              % ("identical" if same else "DIFFERENT", ", ".join(names)))
        return 0 if same and quarter < 1e-4 and names == list(CLASSES) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (cfnet.CfnetError, OSError) as e:  # e.g. --size 10, or --out in a missing folder
        sys.exit("train.py: %s" % e)
