"""
========================================================
Speed-up against scikit-learn and PyTorch (measured)
========================================================

Bars of the times that ``python -m fastmlp bench --repeat 7`` measured, read
from ``benchmarks/results.json`` in the repository.  Nothing is timed while
these pages are built: the numbers are those of the machine named in the file
and in the chart's title.  The *BLAS floor* is the same computation's matrix
products alone, called one after another through NumPy: a yardstick rather
than a bound, since fastmlp runs two halves of each batch at once and can
finish a small network's fit under it.
"""

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

try:
    here = Path(__file__).resolve().parent
except NameError:                       # pasted into a console or notebook
    here = Path.cwd()
results = json.loads((here.parent / "benchmarks" / "results.json").read_text(encoding="utf-8"))
print("measured on:", results["machine"]["summary"])
print("date:", results["machine"]["date"])

TO_SECONDS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6}


def in_unit(time, unit):
    """A [value, unit] pair of the results file, converted to ``unit``."""
    value, its_unit = time
    return value * TO_SECONDS[its_unit] / TO_SECONDS[unit]


# %%
# Fit time
# --------
#
# The two training cases: a wide network on 20000 MNIST-sized rows, and a
# small one on 4000 rows where the Python work around each batch matters.

contenders = results["contenders"]
colors = {"fastmlp": "tab:blue", "scikit-learn": "tab:orange", "PyTorch": "tab:red",
          "BLAS floor": "0.6"}


def bars(ax, case, unit):
    times = [in_unit(case["times"][c], unit) for c in contenders]
    y = np.arange(len(contenders))[::-1]
    ax.barh(y, times, color=[colors[c] for c in contenders])
    ax.set_yticks(y, contenders)
    for yi, c, t in zip(y, contenders, times):
        note = f"{t:.4g} {unit}"
        ratio = case["ratios"].get(f"{c} / fastmlp")   # as the bench printed it
        if ratio is not None:
            note += f"   ({ratio:.2f}× fastmlp)"
        ax.text(t, yi, "  " + note, va="center", fontsize=9)
    ax.set_xlim(0, max(times) * 1.75)
    ax.set_xlabel(f"time ({unit}, lower is better)")
    ax.set_title(case["label"], fontsize=10, wrap=True)


fits = [c for c in results["cases"] if c["kind"] == "fit"]
fig, axes = plt.subplots(len(fits), 1, figsize=(9, 2.6 * len(fits) + 0.8), layout="constrained")
for ax, case, unit in zip(axes, fits, ["s", "ms"]):
    bars(ax, case, unit)
fig.suptitle(f"fit time, measured on {results['machine']['cpu']} "
             f"({results['machine']['cores']} cores), "
             f"{results['machine']['date']}")
plt.show()

# %%
# Prediction time
# ---------------
#
# One row, where the cost is the call itself, and 20000 rows, where it is the
# matrix products.

predicts = [c for c in results["cases"] if c["kind"] == "predict"]
fig, axes = plt.subplots(len(predicts), 1, figsize=(9, 2.6 * len(predicts) + 0.8),
                         layout="constrained")
for ax, case, unit in zip(axes, predicts, ["µs", "ms"]):
    bars(ax, case, unit)
fig.suptitle(f"prediction time, measured on {results['machine']['cpu']} "
             f"({results['machine']['cores']} cores), "
             f"{results['machine']['date']}")
plt.show()

# %%
# The ratios as the benchmark printed them:

for case in results["cases"]:
    ratios = ", ".join(f"{k} {v:.2f}×" for k, v in case["ratios"].items())
    print(f"{case['label']}: {ratios}")

# sphinx_gallery_thumbnail_number = 1
