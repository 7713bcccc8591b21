"""
==================
The backend switch
==================

``backend="cpu"``, ``"cuda"`` or ``"auto"`` chooses where the arithmetic
runs; :func:`fastmlp.available_backends` says what this machine offers.  The
GPU code below runs when these pages are built on a machine with a usable
NVIDIA GPU; elsewhere (as on the machine that builds the published pages) the
same code runs on the CPU.
"""

import pickle
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_classification

import fastmlp
from fastmlp import MLPClassifier

print("available backends:", fastmlp.available_backends())

X, y = make_classification(n_samples=8000, n_features=40, n_informative=20, n_classes=5,
                           random_state=0)
X = X.astype(np.float32)

# %%
# Choose a backend
# ----------------
#
# ``"auto"`` (the default) picks the GPU when one is usable.  Asking for
# ``"cuda"`` explicitly raises a ``RuntimeError`` naming what is missing,
# so guard it the way this example does:

if "cuda" in fastmlp.available_backends():
    backends = ["cpu", "cuda"]
else:
    backends = ["cpu"]          # no GPU here: everything below runs on the CPU

models = {}
for backend in backends:
    clf = MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=20, random_state=0,
                        backend=backend)
    clf.fit(X[:200], y[:200])   # first fit of a configuration: compile or load the kernels
    tic = time.perf_counter()
    clf.fit(X, y)
    print(f"{backend}: fit {time.perf_counter() - tic:.2f} s, "
          f"training accuracy {clf.score(X, y):.3f}")
    models[backend] = clf

# %%
# A fitted model is NumPy arrays only
# -----------------------------------
#
# ``coefs_`` and ``intercepts_`` are NumPy arrays whatever the backend, so a
# model pickles the same way from either, and a model trained on a GPU
# predicts on a machine without one after ``set_params(backend="cpu")``:

trained = models[backends[-1]]
restored = pickle.loads(pickle.dumps(trained)).set_params(backend="cpu")
print("weights:", [type(W).__name__ + str(W.shape) for W in restored.coefs_])
print("same predictions after the round trip:",
      bool(np.array_equal(restored.predict(X), trained.predict(X))))

# %%
# Prediction time against batch size
# -----------------------------------
#
# One point per batch size and backend, the best of 20 calls of ``predict``.
# On the CPU, small batches cost microseconds: for up to 1024 clean float rows
# ``predict`` skips scikit-learn's input validation.  A GPU adds a kernel
# launch and two transfers to every call, so it pays off on large batches.

sizes = [1, 10, 100, 1000, 8000]
fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
for backend, clf in models.items():
    seconds = []
    for n in sizes:
        batch = np.ascontiguousarray(X[:n])
        clf.predict(batch)
        runs = []
        for _ in range(20):
            tic = time.perf_counter()
            clf.predict(batch)
            runs.append(time.perf_counter() - tic)
        seconds.append(min(runs))
    ax.loglog(sizes, np.array(seconds) * 1e6, "o-", label=f'backend="{backend}"')
    print(backend, ", ".join(f"{n} rows: {s * 1e6:.0f} µs" for n, s in zip(sizes, seconds)))
ax.set_xlabel("rows per predict call")
ax.set_ylabel("time per call (µs)")
ax.set_title("predict, hidden (64, 32), 40 features")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
plt.show()
