"""Issue #24's figures: text-like sparse input (fit and predict_proba of a CSR matrix) and a
mid-size (100-row) predict, fastmlp beside scikit-learn.

The ``track_*_speedup`` benchmarks return scikit-learn's time divided by fastmlp's, both
measured in the same call (best of interleaved rounds), so they mean the same on any
machine.  The cases are those of ``python -m fastmlp bench`` (``fastmlp/_bench.py``:
``FULL["sparse"]``, ``FULL["mid"]``).
"""

import warnings

import numpy as np

from .bench_small import _best_of
from .common import require


class SparseText:
    """Adam fit (3 epochs) and predict_proba of a 20000 x 30000 CSR matrix with 18
    non-zeros per row (hidden (64,)); the fit's peak memory."""

    timeout = 900
    number = 1
    repeat = 2

    def setup(self):
        require("cpu")
        from fastmlp import _bench

        warnings.simplefilter("ignore")
        self.c = _bench.FULL["sparse"]
        self.X, self.y = _bench.make_sparse_data(self.c["n"], self.c["d"], self.c["nnz"],
                                                 self.c["k"])
        self.est = _bench.fastmlp_model(self.c)
        self.sk = _bench.sklearn_model(self.c)
        self.est.fit(self.X, self.y)  # compile (or load the cache) outside the timings
        self.sk.fit(self.X, self.y)

    def time_fit(self):
        self.est.fit(self.X, self.y)

    def time_predict_proba(self):
        self.est.predict_proba(self.X)

    def peakmem_fit(self):
        self.est.fit(self.X, self.y)

    def track_predict_proba_speedup_over_sklearn(self):
        ours, theirs = _best_of([lambda: self.est.predict_proba(self.X),
                                 lambda: self.sk.predict_proba(self.X)])
        return theirs / ours

    track_predict_proba_speedup_over_sklearn.unit = "ratio"

    def track_fit_speedup_over_sklearn(self):
        ours, theirs = _best_of([lambda: self.est.fit(self.X, self.y),
                                 lambda: self.sk.fit(self.X, self.y)], rounds=1)
        return theirs / ours

    track_fit_speedup_over_sklearn.unit = "ratio"


class MidSizePredict:
    """``predict`` of 10, 100 and 1000 dense rows (100 features, hidden (128, 64))."""

    params = ([10, 100, 1000],)
    param_names = ["rows"]
    timeout = 300

    def setup(self, rows):
        require("cpu")
        from fastmlp import _bench

        warnings.simplefilter("ignore")
        c = _bench.FULL["mid"]
        X, y = _bench.make_data(c["n"], c["d"], c["k"])
        mc = dict(hidden=c["hidden"], batch=200, epochs=2)
        self.est = _bench.fastmlp_model(mc).fit(X, y)
        self.sk = _bench.sklearn_model(mc).fit(X, y)
        self.rows = np.ascontiguousarray(np.resize(X, (rows, X.shape[1])))
        self.est.predict(self.rows)

    def time_predict(self, rows):
        self.est.predict(self.rows)

    def track_predict_speedup_over_sklearn(self, rows):
        ours, theirs = _best_of([lambda: self.est.predict(self.rows),
                                 lambda: self.sk.predict(self.rows)], rounds=5, inner=50)
        return theirs / ours

    track_predict_speedup_over_sklearn.unit = "ratio"
