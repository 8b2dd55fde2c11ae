"""The tables of docs/results.md agree with the CSVs in docs/results/ that they cite (run by
test_results_tables.sh): every number is recomputed from the per-run files and compared with
the text as printed.

- the 50-class biomarker table: parameters, mean ± sample sd (min–max) of the final test
  accuracy at N = 50 and 100, mean training time per run (biomarker-runs.csv); the last point
  of every learning curve (biomarker-curves.csv) is that run's final accuracy;
- the ablation study: summary.csv is the rows' NAME.summary.csv joined, each selected epoch is
  the one with the lowest validation error in NAME.csv, and the table between the
  ablation-table markers is scripts/ablation-table of summary.csv;
- the three-seed rotated-MNIST table: its rows are the ablation rows it names;
- the mirrored-digits table (rotmnist_reflect_summary.csv, rotmnist_reflect.csv).

Usage: results_tables.py DOC RESULTS_DIR   (prints FAIL lines and exits 1 on a mismatch)
"""
import csv
import os
import statistics
import subprocess
import sys

doc_path, res = sys.argv[1], sys.argv[2]
doc = open(doc_path, encoding="utf-8").read()
lines = doc.splitlines()
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def rows(path):
    with open(os.path.join(res, path), newline="") as f:
        return list(csv.DictReader(f))


def doc_table(header):
    """The table of `doc` whose header line starts with `header`: first cell -> cells."""
    starts = [i for i, l in enumerate(lines) if l.startswith(header)]
    if len(starts) != 1:
        fail("%s: %d tables with the header %r" % (doc_path, len(starts), header))
        return {}
    table = {}
    for l in lines[starts[0] + 2:]:
        if not l.startswith("|"):
            break
        cells = [c.strip() for c in l.strip()[1:-1].split("|")]
        table[cells[0]] = cells
    return table


def doc_row(table, first):
    if first not in table:
        fail("%s: no table row %r" % (doc_path, first))
    return table.get(first)


def mean_sd(v):
    return statistics.mean(v), statistics.stdev(v)


def check(what, printed, computed):
    if printed != computed:
        fail("%s: the text says %r, the CSV gives %r" % (what, printed, computed))


# ---- biomarker images, 50 classes ----
runs = rows("biomarker-runs.csv")
bm = doc_table("| model | parameters | test accuracy N = 50")
for model in ("CFNet", "CNet", "G-CNN+DFT", "G-CNN", "CNN"):
    mine = [r for r in runs if r["model"] == model]
    cells = doc_row(bm, model)
    if cells is None:
        continue
    check(model + " parameters", cells[1].replace(",", ""), mine[0]["parameters"])
    times = []
    for i, n in ((2, "50"), (3, "100")):
        acc = [100 * float(r["test_accuracy"]) for r in mine if r["n_train"] == n]
        m, sd = mean_sd(acc)
        check("%s N = %s" % (model, n), cells[i].replace("**", ""),
              "%.1f ± %.1f %% (%.1f–%.1f)" % (m, sd, min(acc), max(acc)))
        times.append("%.0f s" % statistics.mean(
            float(r["train_seconds"]) for r in mine if r["n_train"] == n))
    check(model + " train time", cells[4], " / ".join(times))
last = {}
for r in rows("biomarker-curves.csv"):
    k = (r["model"], r["n_train"], r["seed"])
    if k not in last or int(r["step"]) > last[k][0]:
        last[k] = (int(r["step"]), r["test_accuracy"])
for r in runs:
    k = (r["model"], r["n_train"], r["seed"])
    if k not in last or float(last[k][1]) != float(r["test_accuracy"]):
        fail("biomarker-curves.csv: the last point of %s is not its final accuracy" % (k,))


# ---- the ablation study ----
def selected(epochs, model, seed):
    es = [e for e in epochs if e["model"] == model and e["seed"] == seed]
    return min(es, key=lambda e: (float(e["val_error"]), int(e["epoch"])))


summary = rows("ablation/summary.csv")
joined = []
for label in dict.fromkeys(r["label"] for r in summary):
    own = rows("ablation/%s.summary.csv" % label)
    joined += own
    epochs = rows("ablation/%s.csv" % label)
    for r in own:
        e = selected(epochs, r["model"], r["seed"])
        if (e["epoch"], e["val_error"], e["test_error"]) != (r["epoch"], r["val_error"],
                                                            r["test_error"]):
            fail("ablation %s seed %s: selected epoch %s, but %s.csv has its lowest validation "
                 "error at epoch %s" % (label, r["seed"], r["epoch"], label, e["epoch"]))
if joined != summary:
    fail("ablation/summary.csv is not the rows' NAME.summary.csv joined")
table = subprocess.run([sys.executable, "scripts/ablation-table",
                        os.path.join(res, "ablation/summary.csv")],
                       capture_output=True, text=True, check=True).stdout
begin, end = "<!-- ablation-table: begin", "<!-- ablation-table: end -->"
if begin not in doc or end not in doc:
    fail("%s: no ablation-table markers" % doc_path)
else:
    block = doc[doc.index(begin):doc.index(end)].split("\n", 1)[1]
    check("the ablation table", block, table)
if open(os.path.join(res, "ablation/table.md"), encoding="utf-8").read() != table:
    fail("ablation/table.md is not scripts/ablation-table of summary.csv")

# ---- rotated MNIST, three seeds: rows of the ablation study ----
rm = doc_table("| model | parameters | epochs | validation error | **test error (ours)**")
for first, label in (("CNN", "main-cnn"), ("G-CNN", "gcnn-baseline"),
                     ("G-CNN+DFT", "main-gcnn-dft"),
                     ("CFNet (0.2 default: steerable, N(0, 0.1²) weights)",
                      "init-normal-steerable-e60"),
                     ("CFNet (0.1 recipe: nearest, He)", "baseline")):
    cells = doc_row(rm, first)
    mine = [r for r in summary if r["label"] == label]
    if not mine:
        fail("ablation/summary.csv: no row %s (for %r)" % (label, first))
    if cells is None or not mine:
        continue
    check(first + " parameters", cells[1].replace(",", ""), mine[0]["parameters"])
    for i, col in ((3, "val_error"), (4, "test_error")):
        check("%s %s" % (first, col), cells[i].replace("**", ""),
              "%.2f ± %.2f %%" % mean_sd([100 * float(r[col]) for r in mine]))
    check(first + " per seed", cells[5], ", ".join("%.2f" % (100 * float(r["test_error"]))
                                                   for r in mine))

# ---- rotated MNIST with mirrored test digits ----
reflect = rows("rotmnist_reflect_summary.csv")
epochs = rows("rotmnist_reflect.csv")
rf = doc_table("| model | parameters | validation error | **test error, mean ± sd**")
for first, model in (("G-CNN-p4m", "G-CNN-p4m"), ("G-CNN (p4)", "G-CNN"), ("CFNet", "CFNet")):
    mine = [r for r in reflect if r["model"] == model]
    cells = doc_row(rf, first)
    if cells is None or not mine:
        continue
    check(first + " parameters", cells[1].replace(",", ""), mine[0]["parameters"])
    for i, col in ((2, "val_error"), (3, "test_error")):
        check("%s %s" % (first, col), cells[i].replace("**", ""),
              "%.2f ± %.2f %%" % mean_sd([100 * float(r[col]) for r in mine]))
    check(first + " per seed", cells[4], ", ".join(
        "%.2f %% (%s)" % (100 * float(r["test_error"]), r["epoch"]) for r in mine))
    check(first + " train time", cells[5],
          "%.0f s" % statistics.mean(float(r["seconds"]) for r in mine))
    for r in mine:
        e = selected(epochs, model, r["seed"])
        if (e["epoch"], e["test_error"]) != (r["epoch"], r["test_error"]):
            fail("mirrored digits %s seed %s: selected epoch %s, lowest validation error at %s"
                 % (model, r["seed"], r["epoch"], e["epoch"]))

if failures:
    sys.exit(1)
print("results_tables: %s agrees with %s" % (doc_path, res))
