"""The estimators end to end: fit, partial_fit, predict, predict_proba."""

import time
import warnings

from sklearn.exceptions import ConvergenceWarning

from .common import BACKENDS, DTYPES, SIZES, estimator, make_data, require


def _quiet():
    warnings.simplefilter("ignore", ConvergenceWarning)


class Fit:
    """``fit`` for the size's epochs (every epoch runs: tol=0, no early stop)."""

    params = (BACKENDS, DTYPES, list(SIZES))
    param_names = ["backend", "dtype", "size"]
    timeout = 300

    def setup(self, backend, dtype, size):
        require(backend)
        _quiet()
        self.X, self.y = make_data(size, dtype)
        # compile (or load numba's cache) outside the timings
        estimator(size, backend, dtype, max_iter=1).fit(self.X[:300], self.y[:300])

    def time_fit(self, backend, dtype, size):
        estimator(size, backend, dtype).fit(self.X, self.y)

    def peakmem_fit(self, backend, dtype, size):
        estimator(size, backend, dtype).fit(self.X, self.y)

    def track_train_accuracy(self, backend, dtype, size):
        return float(estimator(size, backend, dtype).fit(self.X, self.y).score(self.X, self.y))

    track_train_accuracy.unit = "accuracy"

    def track_samples_per_second(self, backend, dtype, size):
        est = estimator(size, backend, dtype)
        tic = time.perf_counter()
        est.fit(self.X, self.y)
        return self.X.shape[0] * est.n_iter_ / (time.perf_counter() - tic)

    track_samples_per_second.unit = "samples/s"


class PartialFit:
    """One ``partial_fit`` call (one epoch) on a network that has already seen the data."""

    params = (BACKENDS, DTYPES, list(SIZES))
    param_names = ["backend", "dtype", "size"]
    timeout = 300

    def setup(self, backend, dtype, size):
        require(backend)
        _quiet()
        self.X, self.y = make_data(size, dtype)
        self.classes = list(range(SIZES[size]["k"]))
        self.est = estimator(size, backend, dtype)
        self.est.partial_fit(self.X, self.y, classes=self.classes)

    def time_partial_fit(self, backend, dtype, size):
        self.est.partial_fit(self.X, self.y)

    def peakmem_partial_fit(self, backend, dtype, size):
        self.est.partial_fit(self.X, self.y)

    def track_samples_per_second(self, backend, dtype, size):
        tic = time.perf_counter()
        self.est.partial_fit(self.X, self.y)
        return self.X.shape[0] / (time.perf_counter() - tic)

    track_samples_per_second.unit = "samples/s"


class Predict:
    """``predict`` / ``predict_proba`` of a fitted network: all rows, and one row."""

    params = (BACKENDS, DTYPES, list(SIZES))
    param_names = ["backend", "dtype", "size"]
    timeout = 300

    def setup(self, backend, dtype, size):
        require(backend)
        _quiet()
        self.X, self.y = make_data(size, dtype)
        self.est = estimator(size, backend, dtype, max_iter=1).fit(self.X, self.y)
        self.row = self.X[:1].copy()
        self.est.predict_proba(self.X)
        self.est.predict(self.row)

    def time_predict(self, backend, dtype, size):
        self.est.predict(self.X)

    def time_predict_proba(self, backend, dtype, size):
        self.est.predict_proba(self.X)

    def time_predict_one_row(self, backend, dtype, size):
        self.est.predict(self.row)

    def peakmem_predict_proba(self, backend, dtype, size):
        self.est.predict_proba(self.X)

    def track_predict_rows_per_second(self, backend, dtype, size):
        tic = time.perf_counter()
        self.est.predict(self.X)
        return self.X.shape[0] / (time.perf_counter() - tic)

    track_predict_rows_per_second.unit = "rows/s"
