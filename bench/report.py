#!/usr/bin/python3
"""Tables of a `make bench` run: reads the tab-separated result files of bench/run.sh and prints
layer, network and memory tables, the targets of docs/performance.md measured at 2 threads, and
ends with the libcfnet / PyTorch time ratios. A case measured by several passes counts with
its best value in each column (libcfnet and PyTorch alike).

    /usr/bin/python3 bench/report.py RESULT.tsv...
"""
import sys

layers, nets, rss, sgemm, lat, macs = {}, {}, {}, {}, {}, {}


def fastest(old, new, faster):
    """Several passes (BENCH_PASSES in bench/run.sh) measure a case again: every column keeps
    its best value (faster[i]: min for times, max for rates), as each pass keeps its fastest
    repetition."""
    if old is None:
        return new
    return tuple((min if fa else max)(a, b) for a, b, fa in zip(old, new, faster))


kernels = {}   # "blas" / "cfnet kernels": the first such line of the run
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            for tag in ("# blas: ", "# cfnet kernels: "):
                if line.startswith(tag):
                    kernels.setdefault(tag[2:-2], line[len(tag):].strip())
            c = line.rstrip("\n").split("\t")
            if c[0] == "layer" and len(c) == 9:   # name shape threads mode fwd fb gf gf
                k = (c[1], c[2], int(c[3]), c[4])
                layers[k] = fastest(layers.get(k), tuple(float(v) for v in c[5:9]),
                                    (True, True, False, False))
            elif c[0] == "net" and len(c) == 8:    # name threads mode train ips infer ips
                k = (c[1], int(c[2]), c[3])
                nets[k] = fastest(nets.get(k), tuple(float(v) for v in c[4:8]),
                                  (True, False, True, False))
            elif c[0] == "rss" and len(c) == 7:    # name threads mode peak base bytes
                rss[(c[1], int(c[2]))] = (int(c[4]), int(c[5]), int(c[6]))
            elif c[0] == "lat" and len(c) == 7:    # name threads mode median p99 calls
                lat[(c[1], int(c[2]), c[3])] = (float(c[4]), float(c[5]), int(c[6]))
            elif c[0] == "macs" and len(c) == 3:   # name multiply-adds per sample
                macs[c[1]] = int(c[2])
            elif c[0] == "sgemm" and len(c) == 5:  # n threads ms gflops; the best run counts
                sgemm[int(c[2])] = max(sgemm.get(int(c[2]), 0.0), float(c[4]))

SHAPES = ("28x28x15", "50x50x32", "64x64x32")
LAYERS = ("conv2d", "conic_R1", "conic_R2", "conic_R4", "p4_lift", "p4_group", "p4m_lift",
          "p4m_group", "dft_projection", "dft_magnitude")
CONVS = LAYERS[:8]
NETS = ("rotmnist_cfnet", "rotmnist_gcnn", "rotmnist_cnn", "yeast_cfnet")


def f(v, fmt="%.2f"):
    return "-" if v is None else fmt % v


def ratio(a, b):
    return a / b if a is not None and b else None


def table(title, head, rows):
    print("\n### " + title + "\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


print("\nKernels: libcfnet %s; OpenBLAS %s" % (
    kernels.get("cfnet kernels", "(not printed)"), kernels.get("blas", "(not printed)")))


def lay(name, shape, t, mode="engine"):
    return layers.get((name, shape, t, mode))


if sgemm:
    table("sgemm ceiling (2048^3, OpenBLAS)", ["threads", "GFLOP/s"],
          [(t, "%.1f" % g) for t, g in sorted(sgemm.items())])

for t in (1, 2):
    rows = []
    for s in SHAPES:
        for n in LAYERS:
            c, tb, tr = lay(n, s, t), lay(n, s, t, "blas"), lay(n, s, t, "torch")
            if not c:
                continue
            frac = c[3] / sgemm[t] * 100 if t in sgemm and n in CONVS else None
            rows.append((n, s, f(c[0]), f(c[1]), f(c[3], "%.1f"), f(frac, "%.0f %%"),
                         f(tb[1] if tb else None), f(tr[1] if tr else None),
                         f(ratio(c[1], tr[1] if tr else None))))
    if rows:
        table("Layers, batch 50, %d thread%s" % (t, "s" if t > 1 else ""),
              ["layer", "shape", "fwd ms", "fwd+bwd ms", "fwd+bwd GFLOP/s", "of sgemm",
               "fwd+bwd ms, BLAS threads", "PyTorch fwd+bwd ms", "libcfnet/PyTorch"], rows)

# p4m (rotations and reflections) against p4, same filters: nominally 2x (lift), 4x (group)
rows = []
for t in (1, 2):
    for s in SHAPES:
        for a, b in (("p4m_lift", "p4_lift"), ("p4m_group", "p4_group")):
            m, p = lay(a, s, t), lay(b, s, t)
            if m and p:
                rows.append(("%s / %s" % (a, b), s, t, f(ratio(m[0], p[0])), f(ratio(m[1], p[1]))))
if rows:
    table("p4m / p4 time ratios (nominal: lift 2, group 4)",
          ["layers", "shape", "threads", "fwd", "fwd+bwd"], rows)

rows = []
for t in (1, 2):
    for n in NETS:
        c, b, tr = nets.get((n, t, "engine")), nets.get((n, t, "blas")), nets.get((n, t, "torch"))
        if not c:
            continue
        rows.append((n, t, f(c[0]), f(c[1], "%.0f"), f(c[3], "%.0f"),
                     f(b[0] if b else None), f(tr[0] if tr else None),
                     f(tr[3] if tr else None, "%.0f"), f(ratio(c[0], tr[0] if tr else None))))
if rows:
    table("Networks, batch 50: training step and inference",
          ["network", "threads", "train ms", "train img/s", "infer img/s",
           "train ms, BLAS threads", "PyTorch train ms", "PyTorch infer img/s",
           "train libcfnet/PyTorch"], rows)

rows = []
for (n, t), (peak, base, nb) in sorted(rss.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    rows.append((n, t, "%.1f" % (peak / 1024), "%.1f" % ((peak - base) / 1024),
                 "%.1f" % (nb / 2**20)))
if rows:
    table("Peak memory of training (child process per network, 3 steps)",
          ["network", "threads", "peak RSS MiB", "above start-up MiB",
           "cfnet_network_memory_usage MiB"], rows)

# Roofline: nominal GFLOP of a training step (forward + backward = 3 x forward, 2 flops per
# multiply-add of cfnet_network_multiply_adds, batch 50) against the sgemm ceiling.
rows = []
for t in (1, 2):
    for n in NETS:
        c = nets.get((n, t, "engine"))
        if not c or n not in macs:
            continue
        gf = 3 * 2 * macs[n] * 50 / 1e9
        rate = gf / (c[0] / 1e3)
        rows.append((n, t, "%.3f" % gf, "%.1f" % rate, f(sgemm.get(t), "%.1f"),
                     f(rate / sgemm[t] * 100 if t in sgemm else None, "%.0f %%")))
if rows:
    table("Roofline: training step (batch 50) against the sgemm ceiling",
          ["network", "threads", "GFLOP per step", "GFLOP/s", "sgemm GFLOP/s", "of sgemm"], rows)

rows = []
for t in (1, 2):
    for n in ("yeast_cfnet", "preset64_cfnet"):
        c, tr = lat.get((n, t, "engine")), lat.get((n, t, "torch"))
        if not c:
            continue
        rows.append((n, t, "%.3f" % c[0], "%.3f" % c[1], f(tr[0] if tr else None, "%.3f"),
                     f(tr[1] if tr else None, "%.3f"), c[2]))
if rows:
    table("Batch-1 inference latency (ms)",
          ["network", "threads", "median", "p99", "PyTorch median", "PyTorch p99", "calls"],
          rows)

# ---- targets (issue 16), measured in this run, 1 and 2 threads ----


def verdict(v, lim, le=True):
    if v is None:
        return "not measured"
    return "met" if (v <= lim if le else v >= lim) else "missed"


rows = []
for t in (1, 2):
    for s in SHAPES:
        c, tr = lay("conv2d", s, t), lay("conv2d", s, t, "torch")
        r = ratio(c[1] if c else None, tr[1] if tr else None)
        rows.append(("conv2d %s fwd+bwd / PyTorch" % s, t, "<= 0.90", f(r), verdict(r, 0.9)))
        r = ratio(c[0] if c else None, tr[0] if tr else None)
        rows.append(("conv2d %s inference (fwd) / PyTorch" % s, t, "<= 1.00", f(r),
                     verdict(r, 1.0)))
    for n in CONVS:
        c = lay(n, "50x50x32", t)
        fr = c[3] / sgemm[t] if c and t in sgemm else None
        rows.append(("%s 50x50x32 fwd+bwd rate / sgemm" % n, t, ">= 0.70", f(fr),
                     verdict(fr, 0.7, le=False)))
    for n, lim in (("rotmnist_cfnet", 0.25), ("rotmnist_cnn", 0.8), ("rotmnist_gcnn", 0.8),
                   ("yeast_cfnet", 0.4)):
        c, tr = nets.get((n, t, "engine")), nets.get((n, t, "torch"))
        r = ratio(c[0] if c else None, tr[0] if tr else None)
        rows.append(("%s training step / PyTorch" % n, t, "<= %.2f" % lim, f(r), verdict(r, lim)))
    c, tr = nets.get(("yeast_cfnet", t, "engine")), nets.get(("yeast_cfnet", t, "torch"))
    r = ratio(c[3] if c else None, tr[3] if tr else None)
    rows.append(("yeast_cfnet inference images/s / PyTorch", t, ">= 2.00", f(r),
                 verdict(r, 2.0, le=False)))
    for n in ("yeast_cfnet", "preset64_cfnet"):
        c, tr = lat.get((n, t, "engine")), lat.get((n, t, "torch"))
        for i, what in ((0, "median"), (1, "p99")):
            r = ratio(c[i] if c else None, tr[i] if tr else None)
            rows.append(("%s batch-1 latency %s / PyTorch" % (n, what), t, "<= 0.50", f(r),
                         verdict(r, 0.5)))
    a, b = rss.get(("rotmnist_cfnet", t)), rss.get(("rotmnist_gcnn", t))
    r1 = (a[0] - a[1]) / (b[0] - b[1]) if a and b else None
    r2 = a[0] / b[0] if a and b else None
    rows.append(("CFNet / G-CNN training peak RSS above start-up", t, "<= 0.35", f(r1),
                 verdict(r1, 0.35)))
    rows.append(("CFNet / G-CNN training peak RSS (whole process)", t, "<= 0.35", f(r2),
                 verdict(r2, 0.35)))
table("Targets (issue 16; T threads: libcfnet engine threads with OpenBLAS on 1 thread, "
      "PyTorch on T threads)", ["target", "threads", "bound", "measured", ""], rows)
print("\n%d of %d targets met, %d missed, %d not measured" % (
    sum(r[4] == "met" for r in rows), len(rows), sum(r[4] == "missed" for r in rows),
    sum(r[4] == "not measured" for r in rows)))

# ---- the closing table: libcfnet / PyTorch time ratios ----
rows = []
for t in (1, 2):
    for s in SHAPES:
        for n in LAYERS:
            c, tr = lay(n, s, t), lay(n, s, t, "torch")
            if c and tr:
                rows.append(("%s %s" % (n, s), t, f(ratio(c[0], tr[0])), f(ratio(c[1], tr[1]))))
    for n in NETS:
        c, tr = nets.get((n, t, "engine")), nets.get((n, t, "torch"))
        if c and tr:
            rows.append(("%s (infer | train)" % n, t, f(ratio(c[2], tr[2])),
                         f(ratio(c[0], tr[0]))))
if rows:
    table("libcfnet / PyTorch time ratios (< 1: libcfnet faster); networks: infer | train",
          ["case", "threads", "fwd (infer)", "fwd+bwd (train)"], rows)
else:
    print("\n(no PyTorch results: no ratio table)")
