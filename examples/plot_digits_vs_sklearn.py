"""
===========================================
Digits: fastmlp beside scikit-learn's MLP
===========================================

The same network, trained by :class:`fastmlp.MLPClassifier` and by
:class:`sklearn.neural_network.MLPClassifier` on the 8×8 digits that ship with
scikit-learn: test accuracy, fit time and the training curves.

Both use ``early_stopping=True``, so 10 % of the training rows are held out and
each epoch records a validation score; fastmlp also records the validation
*loss*, which :class:`~fastmlp.plotting.LossCurveDisplay` draws beside the
training loss.
"""

import time

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.preprocessing import StandardScaler

from fastmlp import MLPClassifier
from fastmlp.plotting import LossCurveDisplay

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

params = dict(hidden_layer_sizes=(64,), early_stopping=True, max_iter=200, random_state=0)

# %%
# The first fastmlp fit of a configuration compiles (or loads from numba's
# disk cache) the kernels it needs, and which kernels those are depends on the
# parameters and the data: early stopping, the batch size, the dtype, the
# kind of target.  So the warm-up fit below is the very fit timed afterwards,
# same parameters, same rows; the time it prints includes the compilation.

tic = time.perf_counter()
MLPClassifier(**params, backend="cpu").fit(X_train, y_train)
print(f"first fit, including compilation or cache load: {time.perf_counter() - tic:.2f} s")

# %%
# Train both and compare.

models = {"fastmlp": MLPClassifier(**params, backend="cpu"),
          "scikit-learn": SklearnMLP(**params)}
for name, model in models.items():
    tic = time.perf_counter()
    model.fit(X_train, y_train)
    seconds = time.perf_counter() - tic
    print(f"{name:>13}: test accuracy {model.score(X_test, y_test):.4f}, "
          f"{model.n_iter_} epochs, fit {seconds:.3f} s")

# %%
# The curves.  The training loss goes on the left axis, the validation
# accuracy on the right one.  Early stopping ends training once the
# validation score has not improved for ``n_iter_no_change`` (10) epochs and
# keeps the best epoch's weights.

fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
for ax, (name, model) in zip(axes, models.items()):
    display = LossCurveDisplay.from_estimator(model, ax=ax)
    ax.set_title(name)
    # the curves fill the upper right corner: put the legend where they are not
    ax.legend(handles=list(display.lines_.values()), loc="center right")
plt.show()

# %%
# The two draw the same initial weights and hold out the same validation rows
# (fastmlp draws both as scikit-learn does), so their curves look alike.  They
# are not identical because fastmlp computes in float32 by default; with
# ``dtype="float64"`` it reproduces scikit-learn's loss curve to about 1e-12.
