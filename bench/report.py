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


def die(msg):
    sys.stderr.write("report.py: %s\n" % msg)
    sys.exit(1)


# Result lines: tag -> (fields, type of each field after the tag). Anything else but comments
# ('#') and blank lines is an error, as is a file that is empty or ends in the middle of a line:
# a truncated or damaged results file must not give a table with rows silently missing.
FORMAT = {
    "layer": (str, str, int, str, float, float, float, float),  # name shape threads mode fwd fb gf gf
    "net": (str, int, str, float, float, float, float),          # name threads mode train ips infer ips
    "rss": (str, int, str, int, int, int),                       # name threads mode peak base bytes
    "lat": (str, int, str, float, float, int),                   # name threads mode median p99 calls
    "macs": (str, int),                                          # name multiply-adds per sample
    "sgemm": (int, int, float, float),                           # n threads ms gflops
}


def parse(path, n, line):
    c = line.rstrip("\n").split("\t")
    want = FORMAT.get(c[0])
    if want is None:
        die("%s:%d: not a result line of the benchmarks: %r" % (path, n, line.rstrip("\n")))
    if len(c) != len(want) + 1:
        die("%s:%d: '%s' line with %d fields, %d expected (a truncated or damaged results "
            "file?): %r" % (path, n, c[0], len(c) - 1, len(want), line.rstrip("\n")))
    try:
        return c[0], [t(v) for t, v in zip(want, c[1:])]
    except ValueError:
        die("%s:%d: '%s' line with a field that is not a number: %r" % (
            path, n, c[0], line.rstrip("\n")))


if len(sys.argv) < 2:
    sys.stderr.write("usage: /usr/bin/python3 bench/report.py RESULT.tsv...  "
                     "(the files bench/run.sh wrote)\n")
    sys.exit(2)
kernels = {}   # "blas" / "cfnet kernels": the first such line of the run
results = 0
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        die("cannot read %s: %s" % (path, e.strerror if isinstance(e, OSError) else e))
    if not text:
        die("%s is empty (did the benchmark that writes it fail?)" % path)
    lines = text.splitlines(True)
    for n, line in enumerate(lines, 1):
        for tag in ("# blas: ", "# cfnet kernels: "):
            if line.startswith(tag):
                kernels.setdefault(tag[2:-2], line[len(tag):].strip())
        if line.startswith("#") or not line.strip():
            continue
        if not line.endswith("\n"):
            die("%s:%d: the file ends in the middle of a line (truncated?): %r" % (
                path, n, line))
        tag, c = parse(path, n, line)
        results += 1
        if tag == "layer":
            k = tuple(c[0:4])
            layers[k] = fastest(layers.get(k), tuple(c[4:8]), (True, True, False, False))
        elif tag == "net":
            k = tuple(c[0:3])
            nets[k] = fastest(nets.get(k), tuple(c[3:7]), (True, False, True, False))
        elif tag == "rss":
            rss[(c[0], c[1])] = tuple(c[3:6])
        elif tag == "lat":
            lat[(c[0], c[1], c[2])] = tuple(c[3:6])
        elif tag == "macs":
            macs[c[0]] = c[1]
        elif tag == "sgemm":   # the best run counts
            sgemm[c[1]] = max(sgemm.get(c[1], 0.0), c[3])
if not results:
    die("no benchmark results in %s" % " ".join(sys.argv[1:]))

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
    for n in ("yeast_cfnet", "preset64_cfnet", "preset64_gcnn"):
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
