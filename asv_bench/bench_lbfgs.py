"""solver="lbfgs": the full-batch fit, beside scikit-learn's lbfgs on the same data."""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .common import require

# rows, features, classes, hidden layers, L-BFGS iterations (every one runs: tol=0)
LBFGS = dict(n=20000, d=100, k=10, hidden=(128,), iters=100)


def _data(dtype, seed=0):
    c = LBFGS
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((c["n"], c["d"])).astype(dtype)
    W = rng.standard_normal((c["d"], c["k"]))
    y = np.argmax(X @ W + 0.5 * rng.standard_normal((c["n"], c["k"])), axis=1)
    return X, y


def _params():
    return dict(solver="lbfgs", hidden_layer_sizes=LBFGS["hidden"], max_iter=LBFGS["iters"],
                random_state=0, tol=0.0)


class LbfgsFit:
    """``fit`` with solver="lbfgs", 100 iterations, fastmlp and scikit-learn."""

    params = (["fastmlp", "scikit-learn"], ["float32", "float64"])
    param_names = ["library", "dtype"]
    timeout = 600

    def setup(self, library, dtype):
        warnings.simplefilter("ignore", ConvergenceWarning)
        self.X, self.y = _data(dtype)
        if library == "fastmlp":
            require("cpu")
            # compile (or load numba's cache) outside the timings
            self._make(library, dtype, max_iter=2).fit(self.X[:300], self.y[:300])

    def _make(self, library, dtype, **kw):
        params = {**_params(), **kw}
        if library == "fastmlp":
            from fastmlp import MLPClassifier

            return MLPClassifier(backend="cpu", dtype=dtype, **params)
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(**params)

    def time_fit(self, library, dtype):
        self._make(library, dtype).fit(self.X, self.y)

    def peakmem_fit(self, library, dtype):
        self._make(library, dtype).fit(self.X, self.y)

    def track_final_loss(self, library, dtype):
        return float(self._make(library, dtype).fit(self.X, self.y).loss_)

    track_final_loss.unit = "loss"
