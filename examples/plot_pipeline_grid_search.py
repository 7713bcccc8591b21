"""
=============================================
A Pipeline and GridSearchCV over activations
=============================================

fastmlp's estimators are scikit-learn estimators: they clone, take
``set_params`` and fit inside a :class:`~sklearn.pipeline.Pipeline`, so
:class:`~sklearn.model_selection.GridSearchCV` can search over fastmlp's own
parameters (here the activation and its settings) like over any other.
"""

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastmlp import MLPClassifier

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0)

pipe = make_pipeline(
    StandardScaler(),
    MLPClassifier(max_iter=40, random_state=0, backend="cpu"),
)

# %%
# Five activations, two layer widths, three folds: 30 fits of 40 epochs each.
# A list of grids lets each activation bring its own setting (leaky_relu's
# slope, maxout's pieces).

param_grid = [
    {"mlpclassifier__activation": ["relu", "tanh", "elu"],
     "mlpclassifier__hidden_layer_sizes": [(16,), (64,)]},
    {"mlpclassifier__activation": ["leaky_relu"], "mlpclassifier__negative_slope": [0.1],
     "mlpclassifier__hidden_layer_sizes": [(16,), (64,)]},
    {"mlpclassifier__activation": ["maxout"], "mlpclassifier__maxout_pieces": [2],
     "mlpclassifier__hidden_layer_sizes": [(16,), (64,)]},
]
search = GridSearchCV(pipe, param_grid, cv=3)

tic = time.perf_counter()
with warnings.catch_warnings():
    # 40 epochs is short on purpose; scikit-learn would warn on every fit
    warnings.simplefilter("ignore", ConvergenceWarning)
    search.fit(X_train, y_train)
print(f"{len(search.cv_results_['params']) * search.n_splits_} fits in "
      f"{time.perf_counter() - tic:.1f} s")
print("best:", search.best_params_)
print(f"cross-validated accuracy {search.best_score_:.4f}, "
      f"test accuracy {search.score(X_test, y_test):.4f}")

# %%
# Mean cross-validated accuracy of every candidate, with the spread over the
# three folds.

res = search.cv_results_
activations = ["relu", "tanh", "elu", "leaky_relu", "maxout"]
widths = [(16,), (64,)]
mean = np.empty((len(activations), len(widths)))
std = np.empty_like(mean)
for params, m, s in zip(res["params"], res["mean_test_score"], res["std_test_score"]):
    i = activations.index(params["mlpclassifier__activation"])
    j = widths.index(params["mlpclassifier__hidden_layer_sizes"])
    mean[i, j], std[i, j] = m, s
print(f"{'activation':>12}" + "".join(f"{'hidden ' + str(w):>14}" for w in widths))
for name, row in zip(activations, mean):
    print(f"{name:>12}" + "".join(f"{v:>14.4f}" for v in row))

fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
positions = np.arange(len(activations))
for j, width in enumerate(widths):
    ax.bar(positions + (j - 0.5) * 0.38, mean[:, j], width=0.36, yerr=std[:, j],
           capsize=3, label=f"hidden_layer_sizes={width}")
ax.set_xticks(positions, activations)
ax.set_ylim(0.8, 1.0)
ax.set_ylabel("mean accuracy over 3 folds")
ax.set_title("GridSearchCV over fastmlp activations and widths (digits)")
ax.legend(loc="lower right")
plt.show()
