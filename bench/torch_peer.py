#!/usr/bin/python3
"""PyTorch peer of the libcfnet benchmarks: the same layers, shapes, networks and thread counts.

Conic convolution is done the way the original CFNet code does it: the (padded) input is cut
into the four quadrant slices of the output, every rotated filter of a quadrant's cones is
convolved over that slice, and masks (1 inside the cone, 1/2 on a ray between two cones,
1/(4R) at the centre) select and weight the results. p4 convolutions expand the filter bank
(rot90 and a cyclic shift of the input rotations) and run one conv2d. The DFT projection is a
rotated filter bank and one matmul; the magnitude is |torch.fft.fft2|.

    /usr/bin/python3 bench/torch_peer.py [--threads 1,2] [--only NAME] [--layers-only|--nets-only]

Output: tab-separated lines in the format of bench_layers and bench_nets, with mode "torch":
    layer <name> <SxSxC> <threads> torch <fwd ms> <fwd+bwd ms> <fwd GFLOP/s> <fwd+bwd GFLOP/s>
    net <name> <threads> torch <train ms> <train images/s> <infer ms> <infer images/s>
    lat <name> <threads> torch <median ms> <p99 ms> <calls>
Latency (--latency or the default run): batch-1 inference (eval mode, no_grad) of yeast_cfnet and
preset64_cfnet (the layers of cfnet_network_create_classifier(CFNET_FAMILY_CFNET, 2, 64, 22, 0)),
20 warm-up calls, then BENCH_LAT_CALLS (default 1000) timed calls; median and 99th percentile.
Timing: one warm-up call, then repetitions until 0.6 s (at least 3); the fastest is reported.
BENCH_REPS=n fixes the repetitions, as in the C programs. A value outside its range (in the
options or these variables) is a usage error: a message and status 2.
"""
import argparse
import math
import os
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("# torch: not available (apt-get install python3-torch); PyTorch peer skipped")
    sys.exit(0)

BATCH = 50


def env_number(name, default, kind, low):
    """The environment variable `name` as a `kind` >= low (default if unset); else exit 2."""
    v = os.environ.get(name)
    if v is None:
        return default
    try:
        x = kind(v)
        if not x >= low:
            raise ValueError
        return x
    except ValueError:
        sys.stderr.write("torch_peer.py: %s=%s: must be %s >= %s\n" % (
            name, v, "an integer" if kind is int else "a number", low))
        sys.exit(2)


MIN_SECONDS = env_number("BENCH_MIN_SECONDS", 0.6, float, 0.0)
REPS = min(env_number("BENCH_REPS", 0, int, 1), 200)      # 0: until MIN_SECONDS
LAT_CALLS = max(10, env_number("BENCH_LAT_CALLS", 1000, int, 1))


def best_time(fn, min_seconds=MIN_SECONDS):
    fn()
    times, total = [], 0.0
    while (len(times) < REPS if REPS else
           len(times) < 3 or (total < min_seconds and len(times) < 200)):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    return min(times)


# ---- geometry shared with libcfnet (docs/conventions.md) ----

def pixel_group(S, R, i, j):
    """Cone (0..4R-1), ray (4R + rho) or centre (8R) of output pixel (i, j); as conic_conv.c."""
    a, b = 2 * j - (S - 1), (S - 1) - 2 * i
    if a == 0 and b == 0:
        return 8 * R
    q = 0
    while not (a > 0 and b >= 0):
        a, b = b, -a
        q += 1
    nrot = 4 * R
    if b == 0:
        return 4 * R + (q * R) % nrot
    if a == b and R % 2 == 0:
        return 4 * R + (q * R + R // 2) % nrot
    cone = min(int(math.floor(math.atan2(b, a) / (math.pi / (2.0 * R)))), R - 1)
    return (cone + q * R) % nrot


def cone_masks(S, R):
    """masks[r] (S x S): weight of rotation r at each output pixel."""
    nrot = 4 * R
    m = torch.zeros(nrot, S, S)
    for i in range(S):
        for j in range(S):
            g = pixel_group(S, R, i, j)
            if g < nrot:
                m[g, i, j] = 1.0
            elif g < 2 * nrot:
                rho = g - nrot
                m[(rho - 1) % nrot, i, j] += 0.5
                m[rho, i, j] += 0.5
            else:
                m[:, i, j] = 1.0 / nrot
    return m


def rot_index(k, R, r):
    """Nearest-neighbour rotation of a k x k filter by r*pi/(2R) as a gather index (k*k, -1 =
    zero): (T phi)(z) = phi(round(g^-1 z)), round half away from zero, on a snapped grid."""
    c = (k - 1) / 2.0
    th = r * math.pi / (2.0 * R)
    idx = []
    for i in range(k):
        for j in range(k):
            u, v = j - c, c - i
            su = math.cos(th) * u + math.sin(th) * v      # g^-1 z
            sv = -math.sin(th) * u + math.cos(th) * v
            su, sv = round(su * 1e9) / 1e9, round(sv * 1e9) / 1e9
            ru = math.copysign(math.floor(abs(su) + 0.5), su)
            rv = math.copysign(math.floor(abs(sv) + 0.5), sv)
            si, sj = int(round(c - rv)), int(round(ru + c))
            idx.append(si * k + sj if 0 <= si < k and 0 <= sj < k else -1)
    return idx


def rotate_bank(w, idx):
    """w (..., k, k) rotated by a gather index; differentiable."""
    k = w.shape[-1]
    flat = w.reshape(*w.shape[:-2], k * k)
    flat = torch.cat([flat, torch.zeros_like(flat[..., :1])], dim=-1)
    ix = torch.tensor([i if i >= 0 else k * k for i in idx], dtype=torch.long)
    return flat[..., ix].reshape(w.shape)


# ---- layers ----

class ConicConv(nn.Module):
    """Conic convolution by quadrant slices and masks (the original code's scheme)."""

    def __init__(self, cin, cout, S, R, k=3, padding="same"):
        super().__init__()
        self.R, self.k = R, k
        self.pad = (k - 1) // 2 if padding == "same" else 0
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) * math.sqrt(2.0 / (cin * k * k)))
        self.bias = nn.Parameter(torch.zeros(cout))
        So = S + 2 * self.pad - k + 1
        self.So = So
        self.rot = [rot_index(k, R, r) for r in range(4 * R)]
        masks = cone_masks(So, R)
        top, left = (So + 1) // 2, (So + 1) // 2      # rows [0, top) hold v >= 0
        lo = So // 2                                   # rows / cols [lo, So) hold v <= 0 / u >= 0
        # Quadrant q (counter-clockwise from +u): output rows and columns.
        self.regions = [((0, top), (lo, So)), ((0, top), (0, left)),
                        ((lo, So), (0, left)), ((lo, So), (lo, So))]
        for q, ((r0, r1), (c0, c1)) in enumerate(self.regions):
            self.register_buffer(f"mask{q}",
                                 masks[q * R:(q + 1) * R, r0:r1, c0:c1].unsqueeze(1).clone())

    def forward(self, x):
        if self.pad:
            x = F.pad(x, (self.pad,) * 4)
        k, So = self.k, self.So
        out = None
        for q, ((r0, r1), (c0, c1)) in enumerate(self.regions):
            xs = x[:, :, r0:r1 + k - 1, c0:c1 + k - 1]
            mask = getattr(self, f"mask{q}")
            acc = None
            for i in range(self.R):
                w = rotate_bank(self.weight, self.rot[q * self.R + i])
                part = F.conv2d(xs, w) * mask[i]
                acc = part if acc is None else acc + part
            acc = F.pad(acc, (c0, So - c1, r0, So - r1))
            out = acc if out is None else out + acc
        return out + self.bias.view(1, -1, 1, 1)


class P4Conv(nn.Module):
    """p4 lifting (G = 1) or group (G = 4) convolution by filter expansion + conv2d."""

    def __init__(self, cin, cout, G, k=3, padding="same"):
        super().__init__()
        self.G, self.cout = G, cout
        self.pad = (k - 1) // 2 if padding == "same" else 0
        shape = (cout, cin, k, k) if G == 1 else (cout, cin, G, k, k)
        self.weight = nn.Parameter(torch.randn(*shape) * math.sqrt(2.0 / (cin * G * k * k)))
        self.bias = nn.Parameter(torch.zeros(cout))

    def expanded(self):
        w = self.weight
        if self.G == 1:
            banks = [torch.rot90(w, r, dims=(-2, -1)) for r in range(4)]
            e = torch.stack(banks, dim=1)                       # O x 4 x C x k x k
        else:
            banks = [torch.rot90(torch.roll(w, r, dims=2), r, dims=(-2, -1)) for r in range(4)]
            e = torch.stack(banks, dim=1)                       # O x 4 x C x 4 x k x k
            e = e.reshape(e.shape[0], 4, -1, *e.shape[-2:])
        return e.reshape(self.cout * 4, -1, *e.shape[-2:])

    def forward(self, x):
        n = x.shape[0]
        if self.G == 4:
            x = x.reshape(n, -1, *x.shape[-2:])
        y = F.conv2d(x, self.expanded(), self.bias.repeat_interleave(4), padding=self.pad)
        return y.reshape(n, self.cout, 4, *y.shape[-2:])


class DFTProjection(nn.Module):
    """Psi(n, r) = <rot90^r phi_n, f> + b_n (R' = 1), one matmul with the rotated bank."""

    def __init__(self, K, M, filters):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(filters, K, M, M) * math.sqrt(2.0 / (K * M * M)))
        self.bias = nn.Parameter(torch.zeros(filters))

    def forward(self, x):
        bank = torch.stack([torch.rot90(self.weight, r, dims=(-2, -1)) for r in range(4)], dim=1)
        y = x.flatten(1) @ bank.flatten(2).flatten(0, 1).t()
        return y.view(x.shape[0], -1, 4) + self.bias.view(1, -1, 1)


class DFTMagnitude(nn.Module):
    def forward(self, x):
        return torch.fft.fft2(x).abs()


# ---- layer benchmark ----

def bench_layer(name, mod, x, fwd_flops, bwd_factor, shape_name, threads, out):
    x = x.clone().requires_grad_(True)
    with torch.no_grad():
        y0 = mod(x)
    dy = torch.randn_like(y0)

    def fwd():
        mod(x)

    def fb():
        x.grad = None
        mod.zero_grad(set_to_none=True)
        mod(x).backward(dy)

    tf, tb = best_time(fwd), best_time(fb)
    out.write("layer\t%s\t%s\t%d\ttorch\t%.3f\t%.3f\t%.2f\t%.2f\n" % (
        name, shape_name, threads, 1e3 * tf, 1e3 * tb, fwd_flops / tf * 1e-9,
        fwd_flops * (1 + bwd_factor) / tb * 1e-9))
    out.flush()


def run_layers(threads, only, out, shape=None):
    torch.manual_seed(0)
    for S, C in ((28, 15), (50, 32), (64, 32)):
        if shape and S != shape:
            continue
        O, k = C, 3
        sn = "%dx%dx%d" % (S, S, C)
        x = torch.randn(BATCH, C, S, S)
        xg = torch.randn(BATCH, C, 4, S, S)
        conv = 2.0 * BATCH * O * C * k * k * S * S
        cases = [("conv2d", lambda: nn.Conv2d(C, O, k, padding=1), x, conv, 2.0)]
        for R in (1, 2, 4):
            cases.append(("conic_R%d" % R, lambda R=R: ConicConv(C, O, S, R), x, conv, 2.0))
        cases.append(("p4_lift", lambda: P4Conv(C, O, 1), x, 4 * conv, 2.0))
        cases.append(("p4_group", lambda: P4Conv(C, O, 4), xg, 16 * conv, 2.0))
        cases.append(("dft_projection", lambda: DFTProjection(C, S, C), x,
                      2.0 * BATCH * 4 * C * C * S * S, 2.0))
        g = 4.0 * C
        cases.append(("dft_magnitude", lambda: DFTMagnitude(), torch.randn(BATCH, C, 4),
                      5.0 * BATCH * g * math.log2(g), 1.0))
        for name, make, xin, flops, bf in cases:
            if only and not name.startswith(only):
                continue
            bench_layer(name, make(), xin, flops, bf, sn, threads, out)


# ---- networks (as bench/bench_nets.c) ----

class Net(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for l in self.layers:
            x = l(x)
        return x


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def p4_maxpool(x):
    n, c, g, h, w = x.shape
    return F.max_pool2d(x.reshape(n, c * g, h, w), 2).reshape(n, c, g, h // 2, w // 2)


def build(name):
    L = []
    if name == "rotmnist_cfnet":
        S, cin = 28, 1
        for i, R in enumerate((2, 2, 2, 1, 1, 1)):
            L += [ConicConv(cin, 15, S, R, padding="valid"), nn.ReLU()]
            S, cin = S - 2, 15
            if i == 1:
                L.append(nn.MaxPool2d(2))
                S //= 2
        L += [DFTProjection(15, S, 15), DFTMagnitude(), nn.Flatten(), nn.Linear(60, 10)]
        return Net(L), (1, 28, 28), 10
    if name == "rotmnist_gcnn":
        S, cin = 28, 1
        for i in range(6):
            L += [P4Conv(cin, 15, 1 if i == 0 else 4, padding="valid"), nn.ReLU()]
            S, cin = S - 2, 15
            if i == 1:
                L.append(Lambda(p4_maxpool))
                S //= 2
        L += [Lambda(lambda x: x.max(dim=2)[0]), nn.Flatten(), nn.Linear(15 * S * S, 10)]
        return Net(L), (1, 28, 28), 10
    if name == "rotmnist_cnn":
        S, cin = 28, 1
        for i in range(6):
            L += [nn.Conv2d(cin, 15, 3), nn.ReLU()]
            S, cin = S - 2, 15
            if i == 1:
                L.append(nn.MaxPool2d(2))
                S //= 2
        L += [nn.Flatten(), nn.Linear(15 * S * S, 10)]
        return Net(L), (1, 28, 28), 10
    if name == "yeast_cfnet":
        S, cin = 64, 2
        for i, R in enumerate((2, 2, 2, 1, 1, 1, 1)):
            L += [ConicConv(cin, 32, S, R), nn.BatchNorm2d(32), nn.ReLU()]
            cin = 32
            if i in (1, 3):
                L.append(nn.AvgPool2d(2))
                S //= 2
        L += [DFTProjection(32, S, 32), nn.BatchNorm1d(32), nn.ReLU(), DFTMagnitude(),
              nn.Flatten(), nn.Dropout(0.2), nn.Linear(128, 22)]
        return Net(L), (2, 64, 64), 22
    if name == "preset64_cfnet":
        # cfnet_network_create_classifier(CFNET_FAMILY_CFNET, 2, 64, 22, 0, ...): width 16,
        # conic R = 2 on maps >= 16, max pooling while the map is > 8, DFT transition, dense.
        S, cin = 64, 2
        for S_in in (64, 32, 16, 8):
            L += [ConicConv(cin, 16, S_in, 2 if S_in >= 16 else 1), nn.BatchNorm2d(16),
                  nn.ReLU()]
            cin = 16
            if S_in > 8:
                L.append(nn.MaxPool2d(2))
        L += [DFTProjection(16, 8, 16), nn.BatchNorm1d(16), nn.ReLU(), DFTMagnitude(),
              nn.Flatten(), nn.Linear(64, 22)]
        return Net(L), (2, 64, 64), 22
    raise ValueError(name)


NETS = ("rotmnist_cfnet", "rotmnist_gcnn", "rotmnist_cnn", "yeast_cfnet")


def run_nets(threads, only, out):
    for name in NETS:
        if only and name != only:
            continue
        torch.manual_seed(0)
        net, shape, classes = build(name)
        x = torch.randn(BATCH, *shape)
        labels = torch.arange(BATCH) % classes
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)

        def train():
            net.train()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), labels).backward()
            opt.step()

        def infer():
            net.eval()
            with torch.no_grad():
                net(x)

        tt, ti = best_time(train, 2 * MIN_SECONDS), best_time(infer)
        out.write("net\t%s\t%d\ttorch\t%.2f\t%.1f\t%.2f\t%.1f\n" % (
            name, threads, 1e3 * tt, BATCH / tt, 1e3 * ti, BATCH / ti))
        out.flush()


LAT_NETS = ("yeast_cfnet", "preset64_cfnet")


def run_latency(threads, only, out):
    calls = LAT_CALLS
    for name in LAT_NETS:
        if only and name != only:
            continue
        torch.manual_seed(0)
        net, shape, classes = build(name)
        net.eval()
        x = torch.randn(1, *shape)
        times = []
        with torch.no_grad():
            for _ in range(20):
                net(x)
            for _ in range(calls):
                t0 = time.perf_counter()
                net(x)
                times.append(time.perf_counter() - t0)
        times.sort()
        out.write("lat\t%s\t%d\ttorch\t%.4f\t%.4f\t%d\n" % (
            name, threads, 1e3 * times[calls // 2],
            1e3 * times[int((calls - 1) * 0.99 + 0.5)], calls))
        out.flush()


LAYER_NAMES = ("conv2d", "conic_R1", "conic_R2", "conic_R4", "p4_lift", "p4_group",
               "dft_projection", "dft_magnitude")


def thread_list(v):
    try:
        ts = [int(s) for s in v.split(",")]
    except ValueError:
        ts = []
    if not ts or any(t < 1 or t > 64 for t in ts):
        raise argparse.ArgumentTypeError("%r: comma-separated integers in 1..64" % v)
    return ts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2", type=thread_list,
                    help="comma-separated thread counts, each 1..64")
    ap.add_argument("--only")
    ap.add_argument("--layers-only", action="store_true")
    ap.add_argument("--nets-only", action="store_true")
    ap.add_argument("--latency", action="store_true", help="only the batch-1 latency")
    ap.add_argument("--shape", type=int, choices=(28, 50, 64),
                    help="layers at one shape only (28, 50 or 64)")
    a = ap.parse_args()
    if a.only and not (any(n.startswith(a.only) for n in LAYER_NAMES) or a.only in NETS
                       or a.only in LAT_NETS):
        ap.error("--only %s: not a layer (%s, or the start of these names) or a network (%s)"
                 % (a.only, ", ".join(LAYER_NAMES), ", ".join(NETS + LAT_NETS[1:])))
    torch.set_num_interop_threads(1)
    out = sys.stdout
    out.write("# torch %s, %s\n" % (torch.__version__,
              torch.backends.cpu.get_cpu_capability()
              if hasattr(torch.backends, "cpu") else "cpu"))
    for t in a.threads:
        torch.set_num_threads(t)
        if a.latency:
            run_latency(t, a.only, out)
            continue
        if not a.nets_only:
            run_layers(t, a.only, out, a.shape)
        if not a.layers_only:
            run_nets(t, a.only, out)
        if not a.layers_only and not a.nets_only:
            run_latency(t, a.only, out)


if __name__ == "__main__":
    main()
