"""
===============================================
Decision boundaries: relu, tanh and maxout
===============================================

Three small networks with the same layer and a different hidden activation,
trained on the two interleaved half-moons of
:func:`sklearn.datasets.make_moons`.  The shading is the predicted probability
of the orange class, in bands of 0.1, so the shape of the learned function
shows, not only where it crosses 0.5.

A relu or maxout network is piecewise linear in its input: its bands are
straight, with corners where a unit switches on or off (relu) or where a
different piece wins (maxout).  tanh gives smooth, curved bands.  An L2
penalty (``alpha=0.3``) keeps the networks from squeezing every band into a
sharp edge.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons
from sklearn.inspection import DecisionBoundaryDisplay
from sklearn.model_selection import train_test_split

from fastmlp import MLPClassifier

X, y = make_moons(n_samples=400, noise=0.2, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)

common = dict(hidden_layer_sizes=(8,), alpha=0.3, learning_rate_init=0.02, max_iter=1000,
              random_state=1, backend="cpu")
networks = {
    "relu": MLPClassifier(activation="relu", **common),
    "tanh": MLPClassifier(activation="tanh", **common),
    # each of the 8 units takes the max of 3 affine pieces of the input
    "maxout, 3 pieces": MLPClassifier(activation="maxout", maxout_pieces=3, **common),
}

fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), sharey=True, layout="constrained")
for ax, (name, clf) in zip(axes, networks.items()):
    clf.fit(X_train, y_train)
    DecisionBoundaryDisplay.from_estimator(
        clf, X, response_method="predict_proba", grid_resolution=250, cmap="PuOr_r",
        alpha=0.8, vmin=0, vmax=1, levels=np.linspace(0, 1, 11), ax=ax)
    ax.scatter(X_train[:, 0], X_train[:, 1], c=y_train, cmap="PuOr_r", edgecolor="k", s=18)
    ax.scatter(X_test[:, 0], X_test[:, 1], c=y_test, cmap="PuOr_r", edgecolor="k", s=34,
               marker="^")
    ax.set_title(f"{name}: test accuracy {clf.score(X_test, y_test):.2f}")
    ax.set_xlabel("x1")
axes[0].set_ylabel("x2")
fig.suptitle("fastmlp MLPClassifier, one hidden layer of 8 units "
             "(circles: training rows, triangles: test rows)")
plt.show()
