"""Independent float64 references of the layers, written from docs/conventions.md and
docs/layers.md (not from src/): torch float64 serves only as an array library with autograd, so
the reference gradients are exact gradients of these definitions."""
import math
import numpy as np
import torch

D = torch.float64


def corr(f, w, pad):
    """f: N x C x H x W, w: O x C x k x k; correlation, zero padding pad, stride 1."""
    return torch.nn.functional.conv2d(f, w, padding=pad)


def rot90(a, q=1):
    """counter-clockwise quarter turns of the last two axes (value at (i,j) -> (S-1-j, i))."""
    return torch.rot90(a, q % 4, dims=(-2, -1))


def flip(a):
    return torch.flip(a, dims=(-1,))


def snap(x):
    return round(x * 1e9) / 1e9


def round_away(x):
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


def nearest_rot_matrix(k, alpha):
    """S (k*k x k*k): (T phi)(z) = phi(round(g^-1 z)), odd k."""
    h = (k - 1) // 2
    S = np.zeros((k * k, k * k))
    ca, sa = math.cos(alpha), math.sin(alpha)
    for a in range(k):
        for b in range(k):
            zu, zv = b - h, h - a
            u = ca * zu + sa * zv
            v = -sa * zu + ca * zv
            ru, rv = round_away(snap(u)), round_away(snap(v))
            if abs(ru) <= h and abs(rv) <= h:
                sa_, sb_ = h - rv, ru + h
                S[a * k + b, sa_ * k + sb_] = 1.0
    return torch.tensor(S, dtype=D)


def rotate_filter(w, r, R):
    """T_{g_R(r)} w for w ... x k x k, nearest, r = qR + s."""
    q, s = divmod(r, R)
    k = w.shape[-1]
    if s:
        S = nearest_rot_matrix(k, s * math.pi / (2 * R))
        w = (w.reshape(-1, k * k) @ S.T).reshape(w.shape)
    return rot90(w, q)


def cone_weights(So, R):
    """omega[r, i, j] for an So x So output map."""
    om = np.zeros((4 * R, So, So))
    c2 = So - 1  # doubled centre
    for i in range(So):
        for j in range(So):
            U, V = 2 * j - c2, c2 - 2 * i
            if U == 0 and V == 0:
                om[:, i, j] = 1.0 / (4 * R)
                continue
            th = math.atan2(V, U)
            if th < 0:
                th += 2 * math.pi
            t = th / (math.pi / (2 * R))
            n = round(t)
            if abs(t - n) < 1e-9:
                n %= 4 * R
                om[n, i, j] += 0.5
                om[(n - 1) % (4 * R), i, j] += 0.5
            else:
                om[int(math.floor(t)) % (4 * R), i, j] = 1.0
    return torch.tensor(om, dtype=D)


def conic(f, w, b, R, pad):
    k = w.shape[-1]
    p = (k - 1) // 2 if pad == "same" else 0
    outs = [corr(f, rotate_filter(w, r, R), p) for r in range(4 * R)]
    So = outs[0].shape[-1]
    om = cone_weights(So, R)
    y = sum(om[r] * outs[r] for r in range(4 * R))
    return y + b.view(1, -1, 1, 1)


def p4_lift(f, w, b, pad):
    k = w.shape[-1]
    p = (k - 1) // 2 if pad == "same" else 0
    ys = [corr(f, rot90(w, r), p) for r in range(4)]
    return torch.stack(ys, 2) + b.view(1, -1, 1, 1, 1)


def p4_conv(f, w, b, pad):
    # f N x C x 4 x S x S, w O x C x 4 x k x k
    k = w.shape[-1]
    p = (k - 1) // 2 if pad == "same" else 0
    N, C = f.shape[:2]
    ff = f.reshape(N, C * 4, f.shape[-2], f.shape[-1])
    ys = []
    for r in range(4):
        wr = torch.stack([rot90(w[:, :, (s - r) % 4], r) for s in range(4)], 2)
        ys.append(corr(ff, wr.reshape(w.shape[0], C * 4, k, k), p))
    return torch.stack(ys, 2) + b.view(1, -1, 1, 1, 1)


# D4: g = 4m + r  <->  rho^r F^m
def d4_mul(g1, g2):
    m1, r1 = divmod(g1, 4)
    m2, r2 = divmod(g2, 4)
    return 4 * (m1 ^ m2) + (r1 + (-1) ** m1 * r2) % 4


def d4_inv(g):
    m, r = divmod(g, 4)
    return (-r) % 4 if m == 0 else g


def d4_act(a, g):
    """T_g on a filter/map plane: rho^r F^m (mirror first)."""
    m, r = divmod(g, 4)
    if m:
        a = flip(a)
    return rot90(a, r)


def p4m_lift(f, w, b, pad):
    k = w.shape[-1]
    p = (k - 1) // 2 if pad == "same" else 0
    ys = [corr(f, d4_act(w, g), p) for g in range(8)]
    return torch.stack(ys, 2) + b.view(1, -1, 1, 1, 1)


def p4m_conv(f, w, b, pad):
    k = w.shape[-1]
    p = (k - 1) // 2 if pad == "same" else 0
    N, C = f.shape[:2]
    ff = f.reshape(N, C * 8, f.shape[-2], f.shape[-1])
    ys = []
    for g in range(8):
        gi = d4_inv(g)
        wg = torch.stack([d4_act(w[:, :, d4_mul(gi, h)], g) for h in range(8)], 2)
        ys.append(corr(ff, wg.reshape(w.shape[0], C * 8, k, k), p))
    return torch.stack(ys, 2) + b.view(1, -1, 1, 1, 1)


def transform_map(x, g, group_axis=None, G=None):
    """Transform a map by g in D4 spatially (and permute the group axis h -> g h)."""
    y = d4_act(x, g)
    if group_axis is not None:
        if G == 4:
            perm = [None] * 4
            for h in range(4):
                perm[(h + g) % 4] = h
        else:
            perm = [None] * 8
            for h in range(8):
                perm[d4_mul(g, h)] = h
        y = y.index_select(group_axis, torch.tensor(perm))
    return y


def dft_projection_planar_q(f, w, b, R):
    """planar projection for R = 1 (quarter turns) or general R with nearest (odd M)."""
    outs = []
    for r in range(4 * R):
        wr = rotate_filter(w, r, R)  # filters x K x M x M
        outs.append((wr.unsqueeze(0) * f.unsqueeze(1)).sum((2, 3, 4)))
    return torch.stack(outs, 2) + b.view(1, -1, 1)


def dft_projection_p4(f, w, b):
    outs = []
    for r in range(4):
        wr = torch.stack([rot90(w[:, :, (s - r) % 4], r) for s in range(4)], 2)
        outs.append((wr.unsqueeze(0) * f.unsqueeze(1)).sum((2, 3, 4, 5)))
    return torch.stack(outs, 2) + b.view(1, -1, 1)


def dft_projection_p4m(f, w, b):
    outs = []
    for g in range(8):
        gi = d4_inv(g)
        wg = torch.stack([d4_act(w[:, :, d4_mul(gi, h)], g) for h in range(8)], 2)
        outs.append((wg.unsqueeze(0) * f.unsqueeze(1)).sum((2, 3, 4, 5)))
    return torch.stack(outs, 2) + b.view(1, -1, 1)


def dft_mag(x):
    return torch.abs(torch.fft.fft2(x))


def pool(x, mode, k, s):
    sh = x.shape
    xx = x.reshape(-1, 1, sh[-2], sh[-1])
    if mode == "max":
        y = torch.nn.functional.max_pool2d(xx, k, s)
    else:
        y = torch.nn.functional.avg_pool2d(xx, k, s)
    return y.reshape(sh[:-2] + y.shape[-2:])


def batch_norm_train(x, gamma, beta, eps):
    C = x.shape[1]
    xx = x.transpose(0, 1).reshape(C, -1)
    mu = xx.mean(1)
    var = ((xx - mu[:, None]) ** 2).mean(1)
    shape = [1, C] + [1] * (x.dim() - 2)
    return gamma.view(shape) * (x - mu.view(shape)) / torch.sqrt(var.view(shape) + eps) + beta.view(shape), mu, var


def rot_matrix(k, alpha, interp):
    """(k*k x k*k) resampling map by alpha for odd or even k; nearest (half away from zero on the
    half-integer grid for even k, exact 0 by the float sign) or bilinear (zero outside)."""
    c = (k - 1) / 2
    S = np.zeros((k * k, k * k))
    ca, sa = math.cos(alpha), math.sin(alpha)
    for a in range(k):
        for b in range(k):
            zu, zv = b - c, c - a
            u = ca * zu + sa * zv
            v = -sa * zu + ca * zv
            if interp == "nearest":
                def nr(x):
                    xs = snap(x)
                    if k % 2:
                        return round_away(xs)
                    if xs == 0:
                        return math.copysign(0.5, x)
                    if xs == math.floor(xs):
                        return xs + math.copysign(0.5, xs)
                    return math.floor(xs) + 0.5
                ru, rv = nr(u), nr(v)
                sb, sa_ = ru + c, c - rv
                if 0 <= sa_ <= k - 1 and 0 <= sb <= k - 1:
                    S[a * k + b, int(round(sa_)) * k + int(round(sb))] = 1.0
            else:
                jx, ix = snap(u + c), snap(c - v)
                j0, i0 = math.floor(jx), math.floor(ix)
                fj, fi = jx - j0, ix - i0
                for di in (0, 1):
                    for dj in (0, 1):
                        wt = (fi if di else 1 - fi) * (fj if dj else 1 - fj)
                        ii, jj = i0 + di, j0 + dj
                        if 0 <= ii < k and 0 <= jj < k:
                            S[a * k + b, ii * k + jj] += wt
    return torch.tensor(S, dtype=D)


def rotate_filter2(w, r, R, interp):
    q, s = divmod(r, R)
    k = w.shape[-1]
    if s:
        S = rot_matrix(k, s * math.pi / (2 * R), interp)
        w = (w.reshape(-1, k * k) @ S.T).reshape(w.shape)
    return rot90(w, q)


def conic2(f, w, b, R, pad, interp):
    k = w.shape[-1]
    p = (k - 1) // 2 if pad == "same" else 0
    outs = [corr(f, rotate_filter2(w, r, R, interp), p) for r in range(4 * R)]
    So = outs[0].shape[-1]
    om = cone_weights(So, R)
    y = sum(om[r] * outs[r] for r in range(4 * R))
    return y + b.view(1, -1, 1, 1)


def dft_projection_planar2(f, w, b, R, interp):
    outs = []
    for r in range(4 * R):
        wr = rotate_filter2(w, r, R, interp)
        outs.append((wr.unsqueeze(0) * f.unsqueeze(1)).sum((2, 3, 4)))
    return torch.stack(outs, 2) + b.view(1, -1, 1)


def steer_matrix(k, alpha):
    c = (k - 1) / 2
    rings = [j + (0 if k % 2 else 0.5) for j in range((k - 1) // 2 + 1)]

    def row(u, v):
        rad, th = math.hypot(u, v), math.atan2(v, u)
        out = []
        for rho in rings:
            g = math.exp(-(rad - rho) ** 2 / (2 * 0.25))
            out.append(g)
            for m in range(1, int(math.floor(2 * rho + 1e-9)) + 1):
                out.append(0.0 if rad < 1e-12 else g * math.cos(m * th))
                out.append(0.0 if rad < 1e-12 else g * math.sin(m * th))
        return out
    ca, sa = math.cos(alpha), math.sin(alpha)
    B, Bs = [], []
    for a in range(k):
        for b in range(k):
            u, v = b - c, c - a
            B.append(row(u, v))
            Bs.append(row(ca * u + sa * v, -sa * u + ca * v))
    B, Bs = np.array(B), np.array(Bs)
    return torch.tensor(Bs @ np.linalg.pinv(B), dtype=D)


def rotate_filter_steer(w, r, R):
    q, s = divmod(r, R)
    k = w.shape[-1]
    if R > 1:
        S = steer_matrix(k, s * math.pi / (2 * R))
        w = (w.reshape(-1, k * k) @ S.T).reshape(w.shape)
    return rot90(w, q)
