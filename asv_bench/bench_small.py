"""Issue #10's figures: small networks against their GEMM floor, one-row predict against its
GEMV floor, and the compile time of a first fit in a fresh environment.

The ``track_*_over_floor`` benchmarks return fastmlp's time divided by the floor's, both
measured in the same call (best of a few interleaved rounds), so they mean the same on any
machine: a regression in the non-GEMM work of a training step or of a prediction shows as a
rising ratio even where absolute times move with the hardware.  The cases are those of
``python -m fastmlp bench`` (``fastmlp/_bench.py``).
"""

import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from .common import require

ROUNDS = 3


def _best_of(funcs, rounds=ROUNDS, inner=1):
    """Best seconds per call of each function, rounds interleaved."""
    best = [np.inf] * len(funcs)
    for f in funcs:
        f()
    for _ in range(rounds):
        for i, f in enumerate(funcs):
            tic = time.perf_counter()
            for _ in range(inner):
                f()
            best[i] = min(best[i], (time.perf_counter() - tic) / inner)
    return best


class SmallNetworkFit:
    """Adam fits of the bench's small (4000x40, (100, 100)) and medium (20000x784,
    (256, 128)) cases, and the ratio to the same steps' GEMMs through NumPy."""

    params = (["small", "big"],)
    param_names = ["case"]
    timeout = 600
    number = 1
    repeat = 3

    def setup(self, case):
        require("cpu")
        from fastmlp import _bench

        warnings.simplefilter("ignore")
        self.c = _bench.FULL[case]
        self.X, self.y = _bench.make_data(self.c["n"], self.c["d"], self.c["k"])
        self.est = _bench.fastmlp_model(self.c)
        self.floor = _bench.blas_floor_fit(self.X, self.c, self.c["k"])
        self.est.fit(self.X, self.y)  # compile (or load the cache) outside the timings

    def time_fit(self, case):
        self.est.fit(self.X, self.y)

    def track_fit_over_gemm_floor(self, case):
        fit, floor = _best_of([lambda: self.est.fit(self.X, self.y), self.floor])
        return fit / floor

    track_fit_over_gemm_floor.unit = "ratio"


class OneRowPredict:
    """``predict`` of one row: 40 -> (100, 100) -> 10 and 784 -> (256, 128) -> 10, and the
    ratio to the three GEMVs alone (NumPy, new outputs: what any caller would pay)."""

    params = ([40, 784],)
    param_names = ["n_features"]
    timeout = 300

    def setup(self, n_features):
        require("cpu")
        from fastmlp import MLPClassifier

        warnings.simplefilter("ignore")
        hidden = (100, 100) if n_features == 40 else (256, 128)
        rng = np.random.default_rng(0)
        X = rng.standard_normal((300, n_features)).astype(np.float32)
        y = rng.integers(0, 10, 300)
        self.est = MLPClassifier(hidden_layer_sizes=hidden, max_iter=2, random_state=0).fit(X, y)
        self.row = np.ascontiguousarray(X[:1])
        self.Ws = [np.ascontiguousarray(W) for W in self.est.coefs_]
        self.est.predict(self.row)

    def _floor(self):
        h = self.row
        for W in self.Ws:
            h = np.dot(h, W)

    def time_predict_one_row(self, n_features):
        self.est.predict(self.row)

    def track_predict_over_gemv_floor(self, n_features):
        pred, floor = _best_of([lambda: self.est.predict(self.row), self._floor],
                               rounds=7, inner=2000)
        return pred / floor

    track_predict_over_gemv_floor.unit = "ratio"


FIRST_FIT = """
import time, warnings
import numpy as np
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from fastmlp import MLP
X, y = load_digits(return_X_y=True)
X = StandardScaler().fit_transform(X)
warnings.simplefilter("ignore")
tic = time.perf_counter()
MLP(hidden_layer_sizes=(64,), max_iter=200, random_state=0).fit(X[:200], y[:200])
print(time.perf_counter() - tic)
"""


class ColdStart:
    """The digits demo's first fit in a fresh process with an empty numba cache: what a new
    user waits for (compilation), in seconds."""

    timeout = 600
    number = 1
    repeat = 1

    def setup(self):
        require("cpu")

    def track_first_fit_compile_seconds(self):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            out = subprocess.run([sys.executable, "-c", FIRST_FIT], env=env, check=True,
                                 capture_output=True, text=True)
        return float(out.stdout.strip().splitlines()[-1])

    track_first_fit_compile_seconds.unit = "seconds"
