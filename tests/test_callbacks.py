"""scikit-learn's callback API (sklearn.callback, scikit-learn >= 1.9) on fastmlp's estimators."""

import warnings

import numpy as np
import pytest

from fastmlp import MLPClassifier, MLPRegressor, _callbacks

sk_callback = pytest.importorskip("sklearn.callback", reason="needs scikit-learn >= 1.9")


def _data(rng, n=120):
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    return X, y


class StopAfter:
    """A minimal FitCallback that asks to stop after ``k`` epochs and records what it saw."""

    def __init__(self, k):
        self.k = k
        self.events = []

    def setup(self, estimator, context):
        self.events.append("setup")

    def teardown(self, estimator, context):
        self.events.append("teardown")

    def on_fit_task_begin(self, estimator, context):
        self.events.append(("begin", context.task_name))

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        self.events.append(("end", context.task_name))
        if context.task_name == "epoch":
            self.last_fitted = fitted_estimator
            return sum(e == ("end", "epoch") for e in self.events) >= self.k
        return False


def test_scoring_monitor_logs_every_epoch(rng):
    X, y = _data(rng)
    monitor = sk_callback.ScoringMonitor(scoring="accuracy")
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=6, learning_rate_init=0.05,
                        random_state=0, backend="cpu").set_callbacks(monitor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    rows = monitor.get_logs().data
    epochs = [r for r in rows if r["task_name"] == "epoch"]
    fits = [r for r in rows if r["task_name"] == "fit"]
    assert len(epochs) == clf.n_iter_ == 6
    assert len(fits) == 1
    # the fit-level score is the fitted model's score; the last epoch's is the same model
    assert fits[0]["accuracy"] == pytest.approx(clf.score(X, y))
    assert epochs[-1]["accuracy"] == pytest.approx(clf.score(X, y))


def test_a_callback_can_stop_training_and_sees_a_usable_model(rng):
    X, y = _data(rng)
    cb = StopAfter(3)
    reg = MLPRegressor(hidden_layer_sizes=(5,), max_iter=50, random_state=0, backend="cpu")
    reg.set_callbacks(cb).fit(X, X[:, 0])
    assert reg.n_iter_ == 3
    assert cb.events[0] == "setup" and cb.events[-1] == "teardown"
    assert cb.events.count(("begin", "epoch")) == cb.events.count(("end", "epoch")) == 3
    # the model handed to callbacks predicts like the estimator after that epoch
    np.testing.assert_allclose(cb.last_fitted.predict(X), reg.predict(X), rtol=1e-6)


def test_progress_bar_runs(rng):
    pytest.importorskip("rich", reason="scikit-learn's ProgressBar needs rich")
    X, y = _data(rng)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0, backend="cpu")
    clf.set_callbacks(sk_callback.ProgressBar())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    assert clf.n_iter_ == 3


def test_without_the_callback_api_nothing_changes(rng, monkeypatch):
    # what an older scikit-learn looks like to the fit loop
    monkeypatch.setattr(_callbacks, "HAVE_CALLBACKS", False)
    X, y = _data(rng)
    cb = StopAfter(1)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0, backend="cpu")
    clf._skl_callbacks = [cb]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    assert clf.n_iter_ == 3 and ("end", "epoch") not in cb.events
