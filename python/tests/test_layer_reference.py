"""Every layer at unusual configurations against an independent float64 reference written
from docs/conventions.md and docs/layers.md (layer_reference.py; torch float64 serves as the array
library and gives the reference gradients by autograd): 1x1 and 2x2 maps, odd and even sizes
with the cones' centre pixel and rays, R at its limits (1 ... 64), kernels 1 to 63, valid and
same padding, pool windows and strides that do not divide the size, p4 and p4m lifting and group
layers, the DFT projection on planar, p4 and p4m maps of odd and even size with nearest, bilinear
and steerable resampling, the DFT magnitudes on small grids and at |y| = 0, batch norm with one
value per channel, dropout 0, dense with one output, group pooling, max-pool ties, and small
networks (fused ReLU pairs, 1 and 2 threads). For each: forward, input and parameter gradients,
central finite differences on the library itself, exact quarter-turn (p4m: and reflection)
equivariance, and that what the library refuses is refused with a message. Skipped without
torch (Debian: python3-torch)."""
import itertools
import math
import unittest

import numpy as np

import cfnet

try:
    import torch
    import layer_reference as ref
except ImportError:  # pragma: no cover
    torch = None

rng = np.random.default_rng(1)
FAIL = []
NCHECK = [0]


def report(name, ok, msg=""):
    NCHECK[0] += 1
    if not ok:
        FAIL.append((name, msg))


def T(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=ref.D, requires_grad=True)


def close(a, b, tol=2e-5):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        return False, "shape %s vs %s" % (a.shape, b.shape)
    scale = max(1.0, np.abs(b).max() if b.size else 1.0)
    err = np.abs(a - b).max() / scale if a.size else 0.0
    return err <= tol, "err %.3g" % err


def check_layer(name, layer, in_shape, N, reffn, fd=True, tol=2e-5, training=False, fdeps=1e-2, fdtol=2e-3, xgen=None, init=None):
    try:
        out_shape = layer.setup(in_shape, seed=3)
    except cfnet.CfnetError as e:
        report(name, False, "setup refused: %s" % e)
        return None
    params = layer.params
    for k, v in params.items():
        v[...] = rng.standard_normal(v.shape).astype(np.float32)
    if init:
        init(layer)
    x = (xgen(N) if xgen else rng.standard_normal((N,) + tuple(in_shape))).astype(np.float32)
    y = layer.forward(x, training=training)
    tx = T(x)
    tp = {k: T(v) for k, v in params.items()}
    ty = reffn(tx, tp)
    ok, msg = close(y, ty.detach().numpy(), tol)
    report(name + " forward", ok, msg)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    layer.zero_grad()
    dx = layer.backward(x, y, dy)
    ty.backward(torch.tensor(dy.astype(np.float64)))
    ok, msg = close(dx, tx.grad.numpy(), tol)
    report(name + " dx", ok, msg)
    for k in params:
        ok, msg = close(layer.grads[k], tp[k].grad.numpy(), tol)
        report(name + " d" + k, ok, msg)
    if fd:
        # central finite differences of L = <dy, y> on the library itself
        def L(xv):
            return float(np.sum(dy.astype(np.float64) * layer.forward(xv, training=training)))
        idx = rng.choice(x.size, size=min(6, x.size), replace=False)
        for i in idx:
            xp = x.copy().reshape(-1); xm = x.copy().reshape(-1)
            xp[i] += fdeps; xm[i] -= fdeps
            g = (L(xp.reshape(x.shape)) - L(xm.reshape(x.shape))) / (2 * fdeps)
            d = dx.reshape(-1)[i]
            if abs(g - d) > fdtol * max(1, abs(d)):
                report(name + " fd dx", False, "i=%d fd %.6g vs %.6g" % (i, g, d))
                break
        else:
            report(name + " fd dx", True)
        for k, v in layer.params.items():
            gk = layer.grads[k].copy()
            idx = rng.choice(v.size, size=min(4, v.size), replace=False)
            for i in idx:
                old = v.reshape(-1)[i]
                v.reshape(-1)[i] = old + fdeps; lp = L(x)
                v.reshape(-1)[i] = old - fdeps; lm = L(x)
                v.reshape(-1)[i] = old
                g = (lp - lm) / (2 * fdeps)
                d = gk.reshape(-1)[i]
                if abs(g - d) > fdtol * max(1, abs(d)):
                    report(name + " fd d" + k, False, "i=%d fd %.6g vs %.6g" % (i, g, d))
                    break
            else:
                report(name + " fd d" + k, True)
    return x, y


def equiv(name, layer, x, in_group, out_group, elements=(1, 2, 3)):
    y = layer.forward(x)
    for g in elements:
        xg = ref.transform_map(torch.tensor(x), g, *(in_group or (None, None))).numpy().copy()
        yg = layer.forward(xg)
        ty = ref.transform_map(torch.tensor(y), g, *(out_group or (None, None))).numpy()
        err = np.abs(yg - ty).max() / max(1, np.abs(y).max())
        report(name + " equiv g=%d" % g, err <= 1e-5, "err %.3g" % err)


def refusal(name, fn):
    try:
        fn()
    except cfnet.CfnetError as e:
        msg = str(e)
        report(name + " refusal message", len(msg) > 10, msg)
        return True
    report(name + " refusal", False, "accepted")
    return False


# ---------------- conic ----------------
def sweep_conic():
    for S, k, R, pad in itertools.product([1, 2, 3, 4, 5, 6, 7, 8], [1, 3, 5, 7], [1, 2, 3, 4, 5, 8], ["same", "valid"]):
        if pad == "valid" and k > S:
            refusal("conic S%d k%d valid" % (S, k),
                    lambda: cfnet.conic_conv(2, k, R, pad).setup((1, S, S)))
            continue
        C, O = 2, 3
        name = "conic S%d k%d R%d %s" % (S, k, R, pad)
        layer = cfnet.conic_conv(O, k, R, pad)
        r = check_layer(name, layer, (C, S, S), 2,
                        lambda tx, tp: ref.conic(tx, tp["weight"], tp["bias"], R, pad), fd=(S <= 4 and R <= 2))
        if r:
            equiv(name, layer, r[0], None, None)


def sweep_p4():
    for S, k, pad in itertools.product([1, 2, 3, 4, 5, 6], [1, 3, 5, 7], ["same", "valid"]):
        if pad == "valid" and k > S:
            refusal("p4_lift S%d k%d valid" % (S, k), lambda: cfnet.p4_lift(2, k, pad).setup((1, S, S)))
            refusal("p4m_conv S%d k%d valid" % (S, k), lambda: cfnet.p4m_conv(2, k, pad).setup((1, 8, S, S)))
            continue
        for kind in ["p4_lift", "p4_conv", "p4m_lift", "p4m_conv"]:
            C, O = 2, 2
            name = "%s S%d k%d %s" % (kind, S, k, pad)
            layer = getattr(cfnet, kind)(O, k, pad)
            G = {"p4_lift": None, "p4_conv": 4, "p4m_lift": None, "p4m_conv": 8}[kind]
            GO = 4 if kind.startswith("p4_") else 8
            shape = (C, S, S) if G is None else (C, G, S, S)
            fn = getattr(ref, kind)
            r = check_layer(name, layer, shape, 2, lambda tx, tp: fn(tx, tp["weight"], tp["bias"], pad),
                            fd=(S <= 3))
            if r:
                els = (1, 2, 3) if GO == 4 else range(1, 8)
                equiv(name, layer, r[0], None if G is None else (2, G), (2, GO), els)


def sweep_projection():
    for M, K, R in itertools.product([1, 2, 3, 4, 5], [1, 2], [1, 2, 3]):
        if R == 1 or M % 2 == 1:
            name = "dft_projection planar M%d K%d R%d" % (M, K, R)
            layer = cfnet.dft_projection(3, R)
            check_layer(name, layer, (K, M, M), 2,
                        lambda tx, tp: ref.dft_projection_planar_q(tx, tp["weight"], tp["bias"], R), fd=(M <= 3))
        if R == 1:
            name = "dft_projection p4 M%d K%d" % (M, K)
            layer = cfnet.dft_projection(3, 1)
            r = check_layer(name, layer, (K, 4, M, M), 2,
                            lambda tx, tp: ref.dft_projection_p4(tx, tp["weight"], tp["bias"]), fd=(M <= 2))
            name = "dft_projection p4m M%d K%d" % (M, K)
            layer = cfnet.dft_projection(3, 1)
            r = check_layer(name, layer, (K, 8, M, M), 2,
                            lambda tx, tp: ref.dft_projection_p4m(tx, tp["weight"], tp["bias"]), fd=(M <= 2))
        else:
            refusal("dft_projection p4 R%d" % R, lambda: cfnet.dft_projection(3, R).setup((K, 4, M, M)))


def sweep_magnitude():
    for A, B in [(1, 1), (1, 2), (2, 1), (1, 4), (3, 4), (5, 7), (2, 8), (7, 1), (16, 12)]:
        name = "dft_magnitude %dx%d" % (A, B)
        check_layer(name, cfnet.dft_magnitude(), (A, B), 3, lambda tx, tp: ref.dft_mag(tx), fdeps=1e-3, fdtol=1e-2)
    for C, G in [(1, 4), (3, 4), (2, 8), (1, 12)]:
        name = "dft_magnitude C%dxG%dx1x1" % (C, G)
        check_layer(name, cfnet.dft_magnitude(), (C, G, 1, 1), 2,
                    lambda tx, tp: ref.dft_mag(tx.reshape(tx.shape[0], C, G)), fdeps=1e-3, fdtol=1e-2)
    for shape in [(1, 8), (3, 8), (2, 8, 1, 1)]:
        name = "p4m_dft_magnitude %s" % (shape,)
        check_layer(name, cfnet.p4m_dft_magnitude(), shape, 2,
                    lambda tx, tp: ref.dft_mag(tx.reshape(tx.shape[0], shape[0], 2, 4)).reshape(tx.shape[0], shape[0], 8),
                    fdeps=1e-3, fdtol=1e-2)
    for shape in [(4,), (2, 3, 4), (2, 4, 2, 2), (3, 8, 1, 2), (1, 1, 1)]:
        refusal("dft_magnitude %s" % (shape,), lambda: cfnet.dft_magnitude().setup(shape))
    for shape in [(4,), (2, 4), (2, 8, 2, 2), (16,)]:
        refusal("p4m_dft_magnitude %s" % (shape,), lambda: cfnet.p4m_dft_magnitude().setup(shape))


def sweep_pool():
    for S, k, s, mode in itertools.product([1, 2, 3, 4, 5, 7, 8], [1, 2, 3, 4], [1, 2, 3], ["max", "mean"]):
        if k > S:
            refusal("pool S%d k%d" % (S, k), lambda: cfnet.pool(mode, k, s).setup((2, S, S)))
            continue
        name = "pool %s S%d k%d s%d" % (mode, S, k, s)
        # distinct values so max has no ties
        check_layer(name, cfnet.pool(mode, k, s), (2, S, S + 1 if S + 1 >= k else S), 2,
                    lambda tx, tp: ref.pool(tx, mode, k, s), fd=(S <= 5), fdeps=1e-3, fdtol=1e-2)
    for S in [1, 2, 3, 4, 5, 6, 7, 8]:
        for mode in ["max", "mean"]:
            k = 2 if S % 2 == 0 else 3
            if k > S:
                refusal("pool equivariant S%d" % S, lambda: cfnet.pool(mode, 0, 0).setup((2, S, S)))
                continue
            layer = cfnet.pool(mode, 0, 0)
            r = check_layer("pool eq %s S%d" % (mode, S), layer, (2, S, S), 2,
                            lambda tx, tp: ref.pool(tx, mode, k, 2), fd=True, fdeps=1e-3, fdtol=1e-2)
            if r:
                equiv("pool eq %s S%d" % (mode, S), layer, r[0], None, None)
                layer4 = cfnet.pool(mode, 0, 0)
                r = check_layer("pool eq p4 %s S%d" % (mode, S), layer4, (2, 4, S, S), 1,
                                lambda tx, tp: ref.pool(tx, mode, k, 2), fd=False)
    for w, s in [(0, 1), (0, 3), (-1, 1), (2, 0), (2, -1)]:
        refusal("pool w%d s%d" % (w, s), lambda: cfnet.pool("max", w, s).setup((1, 4, 4)))
    refusal("pool eq nonsquare", lambda: cfnet.pool("max", 0, 0).setup((1, 4, 6)))
    refusal("pool rank1", lambda: cfnet.pool("max", 1, 1).setup((4,)))


def sweep_group_pool():
    for G in [2, 4, 8]:
        for mode in ["max", "mean"]:
            for S in [1, 2, 3]:
                layer = cfnet.group_pool(mode)
                fn = (lambda tx, tp: tx.max(2).values) if mode == "max" else (lambda tx, tp: tx.mean(2))
                r = check_layer("group_pool %s G%d S%d" % (mode, G, S), layer, (2, G, S, S), 2, fn, fd=True, fdeps=1e-3, fdtol=1e-2)
                if r and G in (4, 8):
                    els = (1, 2, 3) if G == 4 else range(1, 8)
                    equiv("group_pool %s G%d S%d" % (mode, G, S), layer, r[0], (2, G), None, els)
    for shape in [(2, 3, 2, 2), (2, 1, 2, 2), (2, 2, 2), (2, 16, 2, 2)]:
        refusal("group_pool %s" % (shape,), lambda: cfnet.group_pool("max").setup(shape))


def sweep_bn():
    for shape, N in [((3, 1, 1), 1), ((3, 1, 1), 2), ((2, 2, 2), 1), ((2, 4, 1, 1), 1), ((2, 8), 1), ((1,), 3), ((2, 3, 3), 4), ((2,4,2,2),2)]:
        layer = cfnet.batch_norm(0.1, 1e-5)
        name = "bn train %s N%d" % (shape, N)

        def fn(tx, tp):
            return ref.batch_norm_train(tx, tp["gamma"], tp["beta"], 1e-5)[0]
        try:
            layer.setup(shape)
        except cfnet.CfnetError as e:
            report(name, False, "setup refused %s" % e)
            continue
        r = check_layer(name, layer, shape, N, fn, fd=True, tol=1e-4, training=True, fdeps=1e-3, fdtol=1e-2)
        # running statistics after the forward(s) in check_layer: check one fresh forward
        layer2 = cfnet.batch_norm(0.25, 1e-5)
        layer2.setup(shape)
        x = rng.standard_normal((N,) + shape).astype(np.float32)
        layer2.forward(x, training=True)
        C = shape[0]
        xx = x.astype(np.float64).swapaxes(0, 1).reshape(C, -1)
        m = xx.shape[1]
        mu = xx.mean(1)
        var = xx.var(1) * (m / (m - 1) if m > 1 else 1)
        st = layer2.state
        ok1, msg1 = close(st["running_mean"], 0.25 * mu, 1e-5)
        ok2, msg2 = close(st["running_var"], 0.75 + 0.25 * var, 1e-5)
        report(name + " running_mean", ok1, msg1)
        report(name + " running_var", ok2, msg2)
    for mom, eps in [(0, 1e-5), (1.5, 1e-5), (0.1, 0), (0.1, -1), (float("nan"), 1e-5), (0.1, float("inf"))]:
        refusal("bn mom%s eps%s" % (mom, eps), lambda: cfnet.batch_norm(mom, eps))


def sweep_dropout():
    layer = cfnet.dropout(0.0)
    layer.setup((3, 4, 4))
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    y = layer.forward(x, training=True)
    report("dropout 0 forward", np.array_equal(x, y), "differs")
    dx = layer.backward(x, y, y)
    report("dropout 0 backward", np.array_equal(x, dx), "differs")
    for drop in [1.0, -0.1, 1.5, float("nan")]:
        refusal("dropout %s" % drop, lambda: cfnet.dropout(drop))
    d = float(np.nextafter(np.float32(1), np.float32(0)))
    try:
        layer = cfnet.dropout(d)
        layer.setup((1000,))
        x = np.ones((4, 1000), np.float32)
        y = layer.forward(x, training=True)
        report("dropout near 1 finite", np.isfinite(y).all(), "nonfinite")
        kept = (y != 0).mean()
        report("dropout near 1 values", np.all((y == 0) | np.isclose(y, 1 / (1 - np.float32(d)), rtol=1e-3)), "vals %s" % np.unique(y)[:5])
    except cfnet.CfnetError:
        pass  # refusing a rate this close to 1 is allowed
    # statistics for drop 0.5
    layer = cfnet.dropout(0.5)
    layer.setup((10000,))
    x = np.ones((2, 10000), np.float32)
    y = layer.forward(x, training=True)
    frac = (y == 0).mean()
    report("dropout 0.5 frac", abs(frac - 0.5) < 0.02, "frac %g" % frac)
    report("dropout 0.5 scale", np.all((y == 0) | (y == 2)), "vals")


def sweep_dense():
    for shape, O in [((1,), 1), ((3,), 1), ((2, 3, 3), 1), ((2, 8), 5), ((1, 1, 1), 1)]:
        layer = cfnet.dense(O)
        check_layer("dense %s O%d" % (shape, O), layer, shape, 3,
                    lambda tx, tp: tx.reshape(tx.shape[0], -1) @ tp["weight"].T + tp["bias"])
    for O in [0, -1]:
        refusal("dense O%d" % O, lambda: cfnet.dense(O))


def sweep_conv2d():
    for S, k, st, pad in itertools.product([1, 2, 3, 4, 5, 7], [1, 3, 5], [1, 2], ["same", "valid"]):
        if pad == "valid" and k > S:
            refusal("conv2d S%d k%d valid" % (S, k), lambda: cfnet.conv2d(2, k, st, pad).setup((1, S, S)))
            continue
        p = (k - 1) // 2 if pad == "same" else 0
        name = "conv2d S%d k%d s%d %s" % (S, k, st, pad)
        check_layer(name, cfnet.conv2d(3, k, st, pad), (2, S, S + 1), 2,
                    lambda tx, tp: torch.nn.functional.conv2d(tx, tp["weight"], tp["bias"], stride=st, padding=p), fd=(S <= 3))


def sweep_mirror():
    for S, k, R, pad, two in itertools.product([1, 2, 3, 4, 5], [1, 3, 5], [1, 2, 3], ["same", "valid"], [False, True]):
        if pad == "valid" and k > S:
            continue
        C, O = 2, 2
        name = "mirror S%d k%d R%d %s %s" % (S, k, R, pad, "2copy" if two else "planar")

        def fn(tx, tp):
            w, b = tp["weight"], tp["bias"]
            if two:
                xf = ref.flip(tx).flip(2)
                xa = tx.reshape(tx.shape[0], C * 2, S, S)
                xb = xf.reshape(tx.shape[0], C * 2, S, S)
            else:
                xa, xb = tx, ref.flip(tx)
            y0 = ref.conic(xa, w, b, R, pad)
            y1 = ref.flip(ref.conic(xb, w, b, R, pad))
            return torch.stack([y0, y1], 2)
        layer = cfnet.conic_conv_mirror(O, k, R, pad)
        shape = (C, 2, S, S) if two else (C, S, S)
        r = check_layer(name, layer, shape, 2, fn, fd=(S <= 3 and R <= 2))


def sweep_interp():
    for M, R, interp in itertools.product([1, 2, 3, 4, 5, 6, 7, 8], [2, 3, 4], ["nearest", "bilinear"]):
        name = "dft_projection %s M%d R%d" % (interp, M, R)
        layer = cfnet.dft_projection(2, R, interp)
        check_layer(name, layer, (2, M, M), 2,
                    lambda tx, tp: ref.dft_projection_planar2(tx, tp["weight"], tp["bias"], R, interp), fd=(M <= 3))
    for S, k, R, pad in itertools.product([2, 3, 5, 6, 9], [3, 5, 7], [2, 3, 4], ["same", "valid"]):
        if pad == "valid" and k > S:
            continue
        name = "conic bilinear S%d k%d R%d %s" % (S, k, R, pad)
        layer = cfnet.conic_conv(2, k, R, pad, "bilinear")
        r = check_layer(name, layer, (2, S, S), 2,
                        lambda tx, tp: ref.conic2(tx, tp["weight"], tp["bias"], R, pad, "bilinear"), fd=False)
        if r:
            equiv(name, layer, r[0], None, None)


def sweep_big():
    # engine paths: many channels, larger maps
    for S, C, O, k, R, pad in [(32, 2, 3, 3, 2, "same"), (32, 3, 33, 3, 1, "same"), (16, 32, 32, 3, 2, "same"),
                               (26, 4, 15, 3, 2, "valid"), (50, 1, 8, 5, 2, "same"), (13, 40, 5, 3, 2, "same"),
                               (24, 2, 32, 7, 3, "valid"), (64, 2, 4, 3, 1, "same"), (9, 1, 64, 1, 2, "same"),
                               (33, 2, 2, 3, 2, "same"), (31, 2, 40, 3, 2, "valid")]:
        name = "conic big S%d C%d O%d k%d R%d %s" % (S, C, O, k, R, pad)
        layer = cfnet.conic_conv(O, k, R, pad)
        r = check_layer(name, layer, (C, S, S), 3,
                        lambda tx, tp: ref.conic(tx, tp["weight"], tp["bias"], R, pad), fd=False, tol=1e-4)
        if r:
            equiv(name, layer, r[0], None, None)
        p = (k - 1) // 2 if pad == "same" else 0
        for st in [1, 2]:
            name = "conv2d big S%d C%d O%d k%d s%d %s" % (S, C, O, k, st, pad)
            check_layer(name, cfnet.conv2d(O, k, st, pad), (C, S, S), 3,
                        lambda tx, tp: torch.nn.functional.conv2d(tx, tp["weight"], tp["bias"], stride=st, padding=p),
                        fd=False, tol=1e-4)
    for S, C, O, k, pad in [(32, 2, 5, 3, "same"), (16, 3, 9, 5, "valid"), (11, 4, 3, 3, "same")]:
        for kind in ["p4_lift", "p4_conv", "p4m_lift", "p4m_conv"]:
            G = {"p4_lift": None, "p4_conv": 4, "p4m_lift": None, "p4m_conv": 8}[kind]
            shape = (C, S, S) if G is None else (C, G, S, S)
            fn = getattr(ref, kind)
            check_layer("%s big S%d C%d O%d" % (kind, S, C, O), getattr(cfnet, kind)(O, k, pad), shape, 2,
                        lambda tx, tp: fn(tx, tp["weight"], tp["bias"], pad), fd=False, tol=1e-4)


def sweep_limits():
    for args in [(1, 3, 0), (1, 3, 65), (1, 3, -1), (1, 0, 1), (1, 2, 1), (1, 65, 1), (1, -3, 1), (0, 3, 1)]:
        refusal("conic create %s" % (args,), lambda: cfnet.conic_conv(*args))
    # R at its limit
    for S in [1, 2, 7, 8]:
        layer = cfnet.conic_conv(2, 3, 64, "same")
        r = check_layer("conic R64 S%d" % S, layer, (1, S, S), 1,
                        lambda tx, tp: ref.conic(tx, tp["weight"], tp["bias"], 64, "same"), fd=False)
        if r:
            equiv("conic R64 S%d" % S, layer, r[0], None, None)
    layer = cfnet.conic_conv(1, 63, 1, "valid")
    check_layer("conic k63 valid S63", layer, (1, 63, 63), 1,
                lambda tx, tp: ref.conic(tx, tp["weight"], tp["bias"], 1, "valid"), fd=False, tol=1e-4)
    layer = cfnet.conic_conv(1, 63, 2, "same")
    check_layer("conic k63 same S4 R2", layer, (1, 4, 4), 1,
                lambda tx, tp: ref.conic(tx, tp["weight"], tp["bias"], 2, "same"), fd=False, tol=1e-4)
    for shape in [(1, 4, 5), (1, 5, 4), (4, 4), (1, 1, 4, 4), (2, 2, 4, 4)]:
        refusal("conic shape %s" % (shape,), lambda: cfnet.conic_conv(2, 3, 2).setup(shape))
        refusal("p4_lift shape %s" % (shape,), lambda: cfnet.p4_lift(2, 3).setup(shape))
        refusal("p4m_lift shape %s" % (shape,), lambda: cfnet.p4m_lift(2, 3).setup(shape))
        refusal("dft_projection shape %s" % (shape,), lambda: cfnet.dft_projection(2, 1).setup(shape))
    for shape in [(1, 3, 4, 4), (1, 8, 4, 4), (1, 4, 4, 5), (4, 4, 4)]:
        refusal("p4_conv shape %s" % (shape,), lambda: cfnet.p4_conv(2, 3).setup(shape))
    for shape in [(1, 4, 4, 4), (1, 8, 4, 5)]:
        refusal("p4m_conv shape %s" % (shape,), lambda: cfnet.p4m_conv(2, 3).setup(shape))
    for shape in [(1, 3, 4, 4), (1, 4, 4, 4), (1, 2, 4, 5)]:
        refusal("mirror shape %s" % (shape,), lambda: cfnet.conic_conv_mirror(2, 3, 2).setup(shape))
    for args in [(0, 1), (1, 0), (1, -1), (-1, 1)]:
        refusal("dft_projection create %s" % (args,), lambda: cfnet.dft_projection(*args))
    refusal("dft_projection p4m R2", lambda: cfnet.dft_projection(2, 2).setup((1, 8, 3, 3)))
    for args in [(1, 2, 1), (1, 3, 3), (1, 3, 0), (0, 3, 1)]:
        refusal("conv2d create %s" % (args,), lambda: cfnet.conv2d(*args))
    refusal("conic steerable k23 R2", lambda: cfnet.conic_conv(1, 23, 2, "same", "steerable").setup((1, 30, 30)))


def sweep_steer():
    for k, R in itertools.product([1, 2, 3, 4, 5, 7], [1, 2, 3]):
        S = 8 if k % 2 == 0 else 9
        if k % 2:
            def fn(tx, tp):
                p = (k - 1) // 2
                outs = [ref.corr(tx, ref.rotate_filter_steer(tp["weight"], r, R), p) for r in range(4 * R)]
                om = ref.cone_weights(S, R)
                return sum(om[r] * outs[r] for r in range(4 * R)) + tp["bias"].view(1, -1, 1, 1)
            layer = cfnet.conic_conv(2, k, R, "same", "steerable")
            r = check_layer("conic steerable k%d R%d" % (k, R), layer, (2, S, S), 2, fn, fd=False, tol=5e-5)
            if r:
                equiv("conic steerable k%d R%d" % (k, R), layer, r[0], None, None)
        M = k

        def pf(tx, tp):
            outs = []
            for r in range(4 * R):
                wr = ref.rotate_filter_steer(tp["weight"], r, R)
                outs.append((wr.unsqueeze(0) * tx.unsqueeze(1)).sum((2, 3, 4)))
            return torch.stack(outs, 2) + tp["bias"].view(1, -1, 1)
        check_layer("dft_projection steerable M%d R%d" % (M, R), cfnet.dft_projection(2, R, "steerable"),
                    (2, M, M), 2, pf, fd=False, tol=5e-5)


def sweep_ties():
    # max pool: ties go to the first maximum in row-major order
    for S, k, s in [(4, 2, 2), (5, 3, 2), (3, 3, 1), (4, 3, 1)]:
        layer = cfnet.pool("max", k, s)
        layer.setup((1, S, S))
        x = np.zeros((1, 1, S, S), np.float32)
        y = layer.forward(x)
        dy = np.ones_like(y)
        dx = layer.backward(x, y, dy)
        exp = np.zeros_like(x)
        for i in range(y.shape[-2]):
            for j in range(y.shape[-1]):
                exp[0, 0, i * s, j * s] += 1
        report("pool ties S%d k%d s%d" % (S, k, s), np.array_equal(dx, exp), "%s" % dx)
    layer = cfnet.group_pool("max")
    layer.setup((1, 4, 2, 2))
    x = np.zeros((1, 1, 4, 2, 2), np.float32)
    x[0, 0, 2:, 0, 0] = 1
    y = layer.forward(x)
    dx = layer.backward(x, y, np.ones_like(y))
    exp = np.zeros_like(x)
    exp[0, 0, 0, :, :] = 1
    exp[0, 0, 0, 0, 0] = 0
    exp[0, 0, 2, 0, 0] = 1
    report("group_pool ties", np.array_equal(dx, exp), "%s" % dx)
    # dft magnitude at |y| = 0
    for shape in [(4, 4), (1, 1), (2, 8), (3, 5)]:
        layer = cfnet.dft_magnitude()
        layer.setup(shape)
        for x in [np.zeros((1,) + shape, np.float32), np.ones((1,) + shape, np.float32)]:
            y = layer.forward(x)
            dy = rng.standard_normal(y.shape).astype(np.float32)
            dx = layer.backward(x, y, dy)
            Y = np.fft.fft2(x.astype(np.float64))
            mag = np.abs(Y)
            ph = np.where(mag > 0, Y / np.where(mag > 0, mag, 1), 0)
            exp = np.real(np.fft.ifft2(dy * ph) * np.prod(shape))
            ok, msg = close(dx, exp, 1e-5)
            report("dft_magnitude zero bins %s %g" % (shape, x.flat[0]), ok and np.isfinite(dx).all(), msg)
    layer = cfnet.p4m_dft_magnitude()
    layer.setup((2, 8))
    x = np.zeros((1, 2, 8), np.float32)
    y = layer.forward(x)
    dx = layer.backward(x, y, np.ones_like(y))
    report("p4m_dft_magnitude zero", np.array_equal(dx, np.zeros_like(x)), "%s" % dx)


def sweep_bn_modes():
    for shape in [(3, 2, 2), (2, 4, 1, 1), (3,)]:
        layer = cfnet.batch_norm(0.3, 1e-3)
        rm = rng.standard_normal(shape[0]).astype(np.float32)
        rv = rng.uniform(0.5, 2, shape[0]).astype(np.float32)

        def init(l):
            st = l.state
            st["running_mean"][...] = rm
            st["running_var"][...] = rv
        sh = [1, shape[0]] + [1] * (len(shape) - 1)

        def fn(tx, tp):
            return tp["gamma"].view(sh) * (tx - torch.tensor(rm, dtype=ref.D).view(sh)) / torch.sqrt(
                torch.tensor(rv, dtype=ref.D).view(sh) + 1e-3) + tp["beta"].view(sh)
        check_layer("bn inference %s" % (shape,), layer, shape, 3, fn, fd=True, tol=1e-5, init=init)
        # constant channel in training: var 0
        layer2 = cfnet.batch_norm(0.3, 1e-3)
        layer2.setup(shape)
        check_layer("bn train constant %s" % (shape,), layer2, shape, 2,
                    lambda tx, tp: ref.batch_norm_train(tx, tp["gamma"], tp["beta"], 1e-3)[0],
                    fd=False, tol=1e-4, training=True, xgen=lambda N: np.full((N,) + shape, 1.5))
    layer = cfnet.dropout(0.3)
    layer.setup((5,))
    x = rng.standard_normal((2, 5)).astype(np.float32)
    y = layer.forward(x, training=False)
    dx = layer.backward(x, y, y * 2)
    report("dropout inference", np.array_equal(y, x) and np.array_equal(dx, 2 * x), "")


def L_conic(O, k, R, pad):
    return (lambda: cfnet.conic_conv(O, k, R, pad), lambda x, p, tr: ref.conic(x, p["weight"], p["bias"], R, pad))


def L_relu():
    return (cfnet.relu, lambda x, p, tr: torch.relu(x))


def L_bn():
    def f(x, p, tr):
        if tr:
            return ref.batch_norm_train(x, p["gamma"], p["beta"], 1e-5)[0]
        sh = [1, x.shape[1]] + [1] * (x.dim() - 2)
        return p["gamma"].view(sh) * x / math.sqrt(1 + 1e-5) + p["beta"].view(sh)
    return (lambda: cfnet.batch_norm(0.1, 1e-5), f)


def L_pool(mode, k, s, kk=None, ss=None):
    return (lambda: cfnet.pool(mode, k, s), lambda x, p, tr: ref.pool(x, mode, kk or k, ss or s))


def L_p4lift(O, k, pad):
    return (lambda: cfnet.p4_lift(O, k, pad), lambda x, p, tr: ref.p4_lift(x, p["weight"], p["bias"], pad))


def L_p4conv(O, k, pad):
    return (lambda: cfnet.p4_conv(O, k, pad), lambda x, p, tr: ref.p4_conv(x, p["weight"], p["bias"], pad))


def L_p4mlift(O, k, pad):
    return (lambda: cfnet.p4m_lift(O, k, pad), lambda x, p, tr: ref.p4m_lift(x, p["weight"], p["bias"], pad))


def L_p4mconv(O, k, pad):
    return (lambda: cfnet.p4m_conv(O, k, pad), lambda x, p, tr: ref.p4m_conv(x, p["weight"], p["bias"], pad))


def L_gpool(mode):
    return (lambda: cfnet.group_pool(mode), lambda x, p, tr: x.max(2).values if mode == "max" else x.mean(2))


def L_conv(O, k, st, pad):
    pp = (k - 1) // 2 if pad == "same" else 0
    return (lambda: cfnet.conv2d(O, k, st, pad),
            lambda x, p, tr: torch.nn.functional.conv2d(x, p["weight"], p["bias"], stride=st, padding=pp))


def L_proj(n, R):
    def f(x, p, tr):
        if x.dim() == 4:
            return ref.dft_projection_planar2(x, p["weight"], p["bias"], R, "nearest")
        if x.shape[2] == 4:
            return ref.dft_projection_p4(x, p["weight"], p["bias"])
        return ref.dft_projection_p4m(x, p["weight"], p["bias"])
    return (lambda: cfnet.dft_projection(n, R), f)


def L_mag():
    return (cfnet.dft_magnitude, lambda x, p, tr: ref.dft_mag(x.reshape(x.shape[0], x.shape[1], -1)))


def L_p4mmag():
    return (cfnet.p4m_dft_magnitude,
            lambda x, p, tr: ref.dft_mag(x.reshape(x.shape[0], x.shape[1], 2, 4)).reshape(x.shape[0], x.shape[1], 8))


def L_dense(O):
    return (lambda: cfnet.dense(O), lambda x, p, tr: x.reshape(x.shape[0], -1) @ p["weight"].T + p["bias"])


def L_drop0():
    return (lambda: cfnet.dropout(0.0), lambda x, p, tr: x)


ARCHS = [
    ((1, 1, 1), [L_conic(3, 3, 2, "same"), L_relu(), L_conic(2, 1, 1, "same"), L_bn(), L_relu(), L_dense(1)]),
    ((2, 2, 2), [L_conic(3, 3, 3, "same"), L_relu(), L_pool("max", 0, 0, 2, 2), L_proj(2, 2), L_bn(), L_relu(), L_mag(), L_dense(3)]),
    ((1, 3, 3), [L_conic(4, 3, 2, "valid"), L_bn(), L_relu(), L_proj(3, 1), L_mag(), L_dense(2)]),
    ((2, 5, 5), [L_conic(4, 3, 2, "same"), L_relu(), L_pool("max", 0, 0, 3, 2), L_conic(3, 3, 1, "same"), L_relu(), L_proj(2, 3), L_mag(), L_dense(1)]),
    ((1, 4, 4), [L_p4lift(2, 3, "same"), L_relu(), L_p4conv(3, 3, "valid"), L_bn(), L_relu(), L_gpool("mean"), L_dense(2)]),
    ((1, 3, 3), [L_p4lift(2, 3, "valid"), L_relu(), L_mag(), L_dense(2)]),
    ((1, 6, 6), [L_p4mlift(2, 3, "same"), L_relu(), L_pool("mean", 0, 0, 2, 2), L_p4mconv(2, 3, "same"), L_bn(), L_relu(), L_proj(2, 1), L_p4mmag(), L_dense(2)]),
    ((1, 2, 2), [L_p4mlift(1, 1, "same"), L_relu(), L_p4mconv(2, 1, "valid"), L_relu(), L_gpool("max"), L_dense(2)]),
    ((2, 7, 7), [L_conv(3, 3, 2, "same"), L_relu(), L_conv(2, 3, 2, "same"), L_bn(), L_relu(), L_drop0(), L_dense(1)]),
    ((1, 5, 5), [L_p4lift(2, 5, "same"), L_relu(), L_p4conv(2, 5, "same"), L_relu(), L_proj(2, 1), L_mag(), L_dense(2)]),
    ((3, 9, 9), [L_conic(5, 5, 2, "valid"), L_relu(), L_conic(4, 3, 2, "valid"), L_relu(), L_pool("max", 0, 0, 3, 2), L_proj(2, 2), L_relu(), L_mag(), L_dense(3)]),
]


def sweep_network():
    for ai, (ishape, layers) in enumerate(ARCHS):
        name = "net%d %s" % (ai, ishape)
        net = cfnet.Network(*ishape, seed=5)
        try:
            for mk, _ in layers:
                net.append(mk())
        except cfnet.CfnetError as e:
            report(name, False, "append refused: %s" % e)
            continue
        params = []
        for l in net.layers:
            ps = l.params
            for k, v in ps.items():
                if k == "gamma":
                    v[...] = rng.uniform(0.5, 1.5, v.shape)
                elif k != "beta":
                    v[...] = (rng.standard_normal(v.shape) * 0.7).astype(np.float32)
            params.append({k: v.copy() for k, v in ps.items()})
        N = 3
        x = rng.standard_normal((N,) + ishape).astype(np.float32)

        def run(tr):
            tx = T(x)
            tp = [{k: T(v) for k, v in p.items()} for p in params]
            h = tx
            for (mk, fn), p in zip(layers, tp):
                h = fn(h, p, tr)
            return tx, tp, h
        _, _, ty = run(False)
        for th in (1, 2):
            net.set_option("threads", th)
            y = net.infer(x)
            ok, msg = close(y, ty.detach().numpy(), 1e-4)
            report(name + " infer threads%d" % th, ok, msg)
        for th in (1, 2):
            net.set_option("threads", th)
            net.zero_grad()
            yt = net.forward(x, training=True)
            tx, tp, ty2 = run(True)
            ok, msg = close(yt, ty2.detach().numpy(), 1e-4)
            report(name + " train forward threads%d" % th, ok, msg)
            dy = np.ones_like(yt)
            net.backward(dy)
            ty2.backward(torch.ones_like(ty2))
            for li, l in enumerate(net.layers):
                for k, g in l.grads.items():
                    ok, msg = close(g, tp[li][k].grad.numpy(), 1e-3)
                    report(name + " threads%d layer%d d%s" % (th, li, k), ok, msg)


def sweep_invariance():
    for ai, (ishape, layers) in enumerate(ARCHS):
        net = cfnet.Network(*ishape, seed=7)
        for mk, _ in layers:
            net.append(mk())
        kinds = [l.kind_name for l in net.layers]
        if "dft_magnitude" not in kinds and "p4m_dft_magnitude" not in kinds:
            continue
        x = rng.standard_normal((2,) + ishape).astype(np.float32)
        y = net.infer(x)
        els = range(1, 8) if "p4m_dft_magnitude" in kinds or "p4m_lift" in kinds else (1, 2, 3)
        for g in els:
            xg = ref.transform_map(torch.tensor(x), g).numpy().copy()
            err = np.abs(net.infer(xg) - y).max() / max(1, np.abs(y).max())
            report("net%d invariance g=%d" % (ai, g), err < 1e-5, "err %.3g" % err)


def sweep_grad_equiv():
    for S, k, R, pad in itertools.product([1, 2, 5, 6], [1, 3], [1, 2, 3], ["same", "valid"]):
        if pad == "valid" and k > S:
            continue
        layer = cfnet.conic_conv(3, k, R, pad)
        layer.setup((2, S, S), seed=1)
        x = rng.standard_normal((2, 2, S, S)).astype(np.float32)
        y = layer.forward(x)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        layer.zero_grad()
        dx = layer.backward(x, y, dy)
        gw = layer.grads["weight"].copy()
        xr = np.rot90(x, 1, (-2, -1)).copy()
        dyr = np.rot90(dy, 1, (-2, -1)).copy()
        yr = layer.forward(xr)
        layer.zero_grad()
        dxr = layer.backward(xr, yr, dyr)
        e1 = np.abs(dxr - np.rot90(dx, 1, (-2, -1))).max()
        e2 = np.abs(layer.grads["weight"] - gw).max() / max(1, np.abs(gw).max())
        report("conic grad equiv S%d k%d R%d %s" % (S, k, R, pad), e1 < 1e-5 and e2 < 1e-5, "dx %.3g dw %.3g" % (e1, e2))


def sweep_misc_refusals():
    refusal("pool k between H and W", lambda: cfnet.pool("max", 4, 1).setup((1, 3, 5)))
    refusal("pool k between W and H", lambda: cfnet.pool("max", 4, 1).setup((1, 5, 3)))
    refusal("proj steerable M22", lambda: cfnet.dft_projection(1, 2, "steerable").setup((1, 22, 22)))
    l = cfnet.pool("max", 0, 2); l.setup((1, 6, 6))
    report("pool eq stride 2", l.output_shape == (1, 3, 3), str(l.output_shape))
    refusal("conic_conv_mirror create R0", lambda: cfnet.conic_conv_mirror(1, 3, 0))
    refusal("p4_lift k2", lambda: cfnet.p4_lift(1, 2))
    refusal("p4m_conv k0", lambda: cfnet.p4m_conv(1, 0))
    refusal("p4m_lift O0", lambda: cfnet.p4m_lift(0, 3))
    refusal("dense on nothing", lambda: cfnet.dense(3).setup(()))
    refusal("relu no shape", lambda: cfnet.relu().setup(()))
    refusal("bn 0-dim", lambda: cfnet.batch_norm(0.1, 1e-5).setup(()))


def sweep_transition_equiv():
    """A quarter turn of the input shifts Psi by R along r (planar), by 1 (p4), permutes it by
    the group product (p4m); the magnitudes after it do not change."""
    for M, R, interp in itertools.product([1, 2, 3, 4, 5], [1, 2, 3], ["nearest", "bilinear", "steerable"]):
        layer = cfnet.dft_projection(3, R, interp)
        layer.setup((2, M, M), seed=2)
        x = rng.standard_normal((2, 2, M, M)).astype(np.float32)
        y = layer.forward(x)
        for q in (1, 2, 3):
            yq = layer.forward(np.ascontiguousarray(np.rot90(x, q, (-2, -1))))
            err = np.abs(yq - np.roll(y, q * R, axis=-1)).max() / max(1, np.abs(y).max())
            report("projection shift M%d R%d %s q%d" % (M, R, interp, q), err <= 1e-5, "err %.3g" % err)
    for M, G in itertools.product([1, 2, 3, 4], [4, 8]):
        layer = cfnet.dft_projection(3, 1)
        layer.setup((2, G, M, M), seed=2)
        mag = cfnet.p4m_dft_magnitude() if G == 8 else cfnet.dft_magnitude()
        mag.setup((3, G))
        x = rng.standard_normal((2, 2, G, M, M)).astype(np.float32)
        y = layer.forward(x)
        m0 = mag.forward(y)
        for a in range(1, G):
            xa = ref.transform_map(torch.tensor(x), a, 2, G).numpy().copy()
            ya = layer.forward(xa)
            exp = np.empty_like(y)
            for g in range(G):
                exp[..., ref.d4_mul(a, g) if G == 8 else (a + g) % 4] = y[..., g]
            err = np.abs(ya - exp).max() / max(1, np.abs(y).max())
            report("projection G%d M%d a%d permutes" % (G, M, a), err <= 1e-5, "err %.3g" % err)
            if G == 8:
                err = np.abs(mag.forward(ya) - m0).max() / max(1, np.abs(m0).max())
                report("p4m_dft_magnitude invariant M%d a%d" % (M, a), err <= 1e-5, "err %.3g" % err)


def sweep_mirror_equiv():
    """conic_conv_mirror: transforming the input by rho^r F^m (a 2-copy input also swaps its
    copies when m = 1) transforms the output spatially and swaps its copies when m = 1."""
    for S, k, R, pad, two in itertools.product([1, 2, 3, 4, 7], [1, 3], [1, 2, 3], ["same", "valid"], [False, True]):
        if pad == "valid" and k > S:
            continue
        layer = cfnet.conic_conv_mirror(2, k, R, pad)
        shape = (2, 2, S, S) if two else (2, S, S)
        layer.setup(shape, seed=4)
        x = rng.standard_normal((2,) + shape).astype(np.float32)
        y = layer.forward(x)
        for g in range(1, 8):
            m = g // 4
            xg = ref.transform_map(torch.tensor(x), g).numpy()
            yg = ref.transform_map(torch.tensor(y), g).numpy()
            if m:
                yg = yg[:, :, ::-1]
                if two:
                    xg = xg[:, :, ::-1]
            out = layer.forward(np.ascontiguousarray(xg))
            err = np.abs(out - yg).max() / max(1, np.abs(y).max())
            report("mirror equiv S%d k%d R%d %s %s g%d" % (S, k, R, pad, two, g), err <= 1e-5, "err %.3g" % err)


def sweep_pool_equiv():
    """Windows placed symmetrically, (S - p) mod s == 0, commute with the quarter turn."""
    for S, p, s in itertools.product(range(1, 10), range(1, 5), range(1, 4)):
        if p > S or (S - p) % s:
            continue
        for mode in ("max", "mean"):
            layer = cfnet.pool(mode, p, s)
            layer.setup((2, S, S))
            x = rng.standard_normal((2, 2, S, S)).astype(np.float32)
            y = layer.forward(x)
            for q in (1, 2, 3):
                yq = layer.forward(np.ascontiguousarray(np.rot90(x, q, (-2, -1))))
                err = np.abs(yq - np.rot90(y, q, (-2, -1))).max()
                report("pool equiv %s S%d p%d s%d q%d" % (mode, S, p, s, q), err <= 1e-6, "err %.3g" % err)


SWEEPS = ["conic", "p4", "projection", "magnitude", "pool", "group_pool", "bn", "bn_modes",
          "dropout", "dense", "conv2d", "mirror", "interp", "steer", "big", "limits", "ties",
          "network", "invariance", "grad_equiv", "misc_refusals", "transition_equiv",
          "mirror_equiv", "pool_equiv"]


@unittest.skipIf(torch is None, "torch is not installed (the float64 reference uses it)")
class LayerReferenceSweep(unittest.TestCase):
    def run_sweep(self, which):
        global rng
        rng = np.random.default_rng(SWEEPS.index(which) + 1)
        del FAIL[:]
        NCHECK[0] = 0
        torch.set_num_threads(1)
        globals()["sweep_" + which]()
        self.assertGreater(NCHECK[0], 0)
        self.assertEqual(FAIL, [], "%d of %d checks failed" % (len(FAIL), NCHECK[0]))


for _w in SWEEPS:
    setattr(LayerReferenceSweep, "test_" + _w, lambda self, w=_w: self.run_sweep(w))

if __name__ == "__main__":
    unittest.main()
