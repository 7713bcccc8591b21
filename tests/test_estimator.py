"""Behaviour of MLPClassifier / MLPRegressor, in the spirit of scikit-learn's MLP tests.

Three kinds of test live here:

- behaviour: partial_fit, early stopping, warm start, multilabel, sample and
  class weights, verbose output, probabilities, fitted attributes, pickling,
  determinism and thread safety;
- number-for-number agreement with scikit-learn's MLP (dtype="float64", same
  random_state): the loss curve and the weights match to rounding;
- accuracy on three small scikit-learn data sets, within one point of
  scikit-learn's MLPClassifier.

Data are tiny and epochs few: the suite shares two cores with other work.
"""

import pickle
import re
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import datasets
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from fastmlp import MLP, MLPClassifier, MLPRegressor

import sklearn_features

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CPU = dict(backend="cpu")
F64 = dict(backend="cpu", dtype="float64")


# ---------------------------------------------------------------------- data
def _X(rng, n=60, d=5):
    return rng.normal(size=(n, d))


def _targets(rng, X, kind):
    """Learnable targets of the given kind for X: a noisy linear rule."""
    n, d = X.shape
    if kind == "binary":
        return (X @ rng.normal(size=d) + 0.3 * rng.normal(size=n) > 0).astype(int)
    if kind == "multiclass":
        return (X @ rng.normal(size=(d, 3)) + 0.3 * rng.normal(size=(n, 3))).argmax(axis=1)
    if kind == "multilabel":
        Y = (X @ rng.normal(size=(d, 3)) + 0.3 * rng.normal(size=(n, 3)) > 0).astype(int)
        Y[0] = [0, 1, 1]  # every column sees both values
        Y[1] = [1, 0, 0]
        return Y
    if kind == "regression":
        return X @ rng.normal(size=d) + 0.1 * rng.normal(size=n)
    if kind == "regression2":
        return X @ rng.normal(size=(d, 2)) + 0.1 * rng.normal(size=(n, 2))
    raise AssertionError(kind)


def _pair(kind):
    """(fastmlp class, scikit-learn class) for a target kind."""
    if kind.startswith("regression"):
        return MLPRegressor, SkMLPRegressor
    return MLPClassifier, SkMLPClassifier


def _all_params(est):
    return list(est.coefs_) + list(est.intercepts_)


def _assert_same_weights(ours, theirs, rtol=1e-8, atol=1e-12):
    assert len(ours.coefs_) == len(theirs.coefs_)
    for a, b in zip(_all_params(ours), _all_params(theirs)):
        assert a.shape == b.shape
        assert_allclose(a, b, rtol=rtol, atol=atol)


def _forward(est, X):
    """NumPy forward pass of a relu / identity-output network from coefs_/intercepts_."""
    H = np.asarray(X, dtype=np.float64)
    for l, (W, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        H = H @ W + b
        if l < len(est.coefs_) - 1:
            H = np.maximum(H, 0.0)
    return H


# ---------------------------------------------------------------------- scikit-learn agreement
SOLVERS = {
    "adam": dict(solver="adam", learning_rate_init=0.01),
    "sgd_nesterov": dict(solver="sgd", learning_rate_init=0.05, nesterovs_momentum=True),
    "sgd_momentum": dict(solver="sgd", learning_rate_init=0.05, nesterovs_momentum=False),
    "sgd_invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.05,
                           power_t=0.25),
    # tol so large that every epoch counts as "no improvement": the learning
    # rate is divided by 5 every other epoch until it falls below 1e-6
    "sgd_adaptive": dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05,
                         tol=10.0, n_iter_no_change=1),
}


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel", "regression"])
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_matches_sklearn(rng, solver, kind, activation):
    X = _X(rng)
    y = _targets(rng, X, kind)
    params = dict(hidden_layer_sizes=(7, 4), activation=activation, alpha=0.01, batch_size=16,
                  max_iter=12, random_state=0, **SOLVERS[solver])
    Ours, Theirs = _pair(kind)
    ours = Ours(**params, **F64).fit(X, y)
    theirs = Theirs(**params).fit(X, y)

    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-8)
    assert_allclose(ours.best_loss_, theirs.best_loss_, rtol=1e-8)
    _assert_same_weights(ours, theirs)
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.n_layers_ == theirs.n_layers_
    assert ours.n_outputs_ == theirs.n_outputs_
    if kind == "regression":
        assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-8, atol=1e-10)
    else:
        assert_array_equal(ours.classes_, theirs.classes_)
        assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-8, atol=1e-12)
        assert_array_equal(ours.predict(X), theirs.predict(X))


@sklearn_features.needs_sample_weight
@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel", "regression"])
@pytest.mark.parametrize("solver", ["adam", "sgd_nesterov", "sgd_momentum"])
def test_matches_sklearn_with_sample_weight(rng, solver, kind):
    X = _X(rng)
    y = _targets(rng, X, kind)
    sw = rng.uniform(0.2, 3.0, size=X.shape[0])
    params = dict(hidden_layer_sizes=(6,), alpha=0.1, batch_size=20, max_iter=10,
                  random_state=1, **SOLVERS[solver])
    Ours, Theirs = _pair(kind)
    ours = Ours(**params, **F64).fit(X, y, sample_weight=sw)
    theirs = Theirs(**params).fit(X, y, sample_weight=sw)
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-8)
    _assert_same_weights(ours, theirs)


@sklearn_features.needs_loss
@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_matches_sklearn_regression_weights(rng, loss):
    # Two outputs with squared error, and the Poisson loss: the weights follow
    # scikit-learn's gradient exactly.  (n_iter_no_change exceeds max_iter so
    # that stopping does not depend on the loss values.)
    X = _X(rng)
    if loss == "poisson":
        y = rng.poisson(np.exp(0.3 * X[:, 0] + 0.5)).astype(float)
    else:
        y = _targets(rng, X, "regression2")
    params = dict(loss=loss, hidden_layer_sizes=(6,), max_iter=10, n_iter_no_change=20,
                  random_state=0, batch_size=16, learning_rate_init=0.01)
    ours = MLPRegressor(**params, **F64).fit(X, y)
    theirs = SkMLPRegressor(**params).fit(X, y)
    assert ours.out_activation_ == theirs.out_activation_
    _assert_same_weights(ours, theirs)
    assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-8)
    if loss == "poisson":
        # the reported deviance includes scikit-learn's constant terms
        assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-8)


@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_early_stopping_matches_sklearn(rng, kind):
    # Binary targets: both libraries stratify the validation split the same way.
    X = _X(rng, n=120, d=4)
    y = _targets(rng, X, kind)
    params = dict(hidden_layer_sizes=(6,), max_iter=300, random_state=0, early_stopping=True,
                  n_iter_no_change=4, validation_fraction=0.25, learning_rate_init=0.01,
                  batch_size=16)
    Ours, Theirs = _pair(kind)
    ours = Ours(**params, **F64).fit(X, y)
    theirs = Theirs(**params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ < params["max_iter"]
    assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-10)
    assert_allclose(ours.best_validation_score_, theirs.best_validation_score_, rtol=1e-10)
    assert ours.best_loss_ is None and theirs.best_loss_ is None
    _assert_same_weights(ours, theirs)  # both restored the best epoch's weights


def test_warm_start_matches_sklearn(rng):
    X = _X(rng)
    y = _targets(rng, X, "multiclass")
    params = dict(hidden_layer_sizes=(5,), solver="sgd", learning_rate_init=0.05, max_iter=3,
                  random_state=0, warm_start=True, batch_size=16)
    ours = MLPClassifier(**params, **F64).fit(X, y)
    theirs = SkMLPClassifier(**params).fit(X, y)
    # assigned arrays are what the next warm-started fit starts from
    ours.coefs_ = [0.5 * c for c in ours.coefs_]
    theirs.coefs_ = [0.5 * c for c in theirs.coefs_]
    ours.set_params(max_iter=4).fit(X, y)
    theirs.set_params(max_iter=4).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 4
    assert ours.t_ == theirs.t_ == 7 * X.shape[0]
    assert len(ours.loss_curve_) == 7
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-8)
    _assert_same_weights(ours, theirs)


# ---------------------------------------------------------------------- partial_fit
@pytest.mark.parametrize("batch_size", [60, 20])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_matches_fit(rng, solver, batch_size):
    X = _X(rng)
    y = _targets(rng, X, "multiclass")
    k = 4
    params = dict(hidden_layer_sizes=(6,), solver=solver, learning_rate_init=0.05,
                  batch_size=batch_size, shuffle=False, random_state=0, max_iter=k, **F64)
    full = MLPClassifier(**params).fit(X, y)
    inc = MLPClassifier(**params)
    for _ in range(k):
        inc.partial_fit(X, y, classes=np.unique(y))
    assert_allclose(inc.loss_curve_, full.loss_curve_, rtol=1e-12)
    for a, b in zip(_all_params(inc), _all_params(full)):
        assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert inc.t_ == full.t_ == k * X.shape[0]
    assert inc.n_iter_ == 1  # as in scikit-learn: epochs of the last call


def test_partial_fit_regressor_matches_fit(rng):
    X = _X(rng)
    y = _targets(rng, X, "regression")
    params = dict(hidden_layer_sizes=(6,), solver="sgd", learning_rate="invscaling",
                  learning_rate_init=0.1, shuffle=False, random_state=0, max_iter=3, **F64)
    full = MLPRegressor(**params).fit(X, y)
    inc = MLPRegressor(**params)
    for _ in range(3):
        inc.partial_fit(X, y)
    assert_allclose(inc.loss_curve_, full.loss_curve_, rtol=1e-12)
    for a, b in zip(_all_params(inc), _all_params(full)):
        assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.both_backends
def test_partial_fit_classes_and_unseen_labels(rng, backend):
    X = _X(rng, n=40)
    y = np.array(["a", "b", "c", "d"])[_targets(rng, X, "multiclass")]
    clf = MLPClassifier(hidden_layer_sizes=(5,), random_state=0, backend=backend)
    # the first batch holds only some of the classes
    clf.partial_fit(X[:20], np.where(y[:20] == "d", "a", y[:20]), classes=["a", "b", "c", "d"])
    assert_array_equal(clf.classes_, ["a", "b", "c", "d"])
    clf.partial_fit(X[20:], y[20:])
    assert clf.predict_proba(X).shape == (40, 4)
    assert set(clf.predict(X)) <= {"a", "b", "c", "d"}


# ---------------------------------------------------------------------- early stopping
def _validation_split(est, n, y):
    """Reproduce the estimator's train/validation split.

    The estimator draws the initial weights and then splits with the same
    RandomState, as scikit-learn does; replay the draws, then split.
    """
    rs = np.random.RandomState(est.random_state)
    for W, b in zip(est.coefs_, est.intercepts_):
        rs.uniform(size=W.shape)
        rs.uniform(size=b.shape)
    # scikit-learn stratifies single-output classifiers only (binary, one class)
    stratify = y if getattr(est, "n_outputs_", 0) == 1 and hasattr(est, "classes_") else None
    return train_test_split(np.arange(n), random_state=rs,
                            test_size=est.validation_fraction, stratify=stratify)


def test_early_stopping_restores_best_weights(rng):
    X = _X(rng, n=150, d=4)
    y = _targets(rng, X, "multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0,
                        early_stopping=True, n_iter_no_change=5, learning_rate_init=0.01,
                        validation_fraction=0.2, **CPU).fit(X, y)
    assert clf.n_iter_ < 300
    assert len(clf.validation_scores_) == len(clf.loss_curve_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None
    _, val = _validation_split(clf, X.shape[0], y)  # multiclass: not stratified (scikit-learn)
    # predict uses the best epoch's weights, not the last epoch's
    assert clf.score(X[val], y[val]) == pytest.approx(clf.best_validation_score_)


def test_early_stopping_regressor_restores_best_weights(rng):
    X = _X(rng, n=120, d=4)
    y = _targets(rng, X, "regression")
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=300, random_state=0, early_stopping=True,
                       n_iter_no_change=3, learning_rate_init=0.01, **F64).fit(X, y)
    assert reg.n_iter_ < 300
    best = int(np.argmax(reg.validation_scores_))
    assert best < reg.n_iter_ - 1  # the last epoch was not the best one
    _, val = _validation_split(reg, X.shape[0], None)
    assert reg.score(X[val], y[val]) == pytest.approx(reg.best_validation_score_, rel=1e-10)


def test_early_stopping_verbose_reports_validation(rng, capsys):
    X = _X(rng, n=60)
    y = _targets(rng, X, "binary")
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, early_stopping=True, verbose=True,
                        random_state=0, **CPU).fit(X, y)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Iteration")]
    assert len(lines) == clf.n_iter_
    assert all("validation score" in ln for ln in lines)


# ---------------------------------------------------------------------- stopping, warm start
def test_convergence_warning_when_max_iter_reached(rng):
    X = _X(rng)
    y = _targets(rng, X, "binary")
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, **CPU).fit(X, y)


def test_tol_and_n_iter_no_change_stop_training(rng):
    X = _X(rng)
    y = _targets(rng, X, "regression")
    # with a huge tol no epoch after the first counts as an improvement; training
    # stops once more than n_iter_no_change epochs in a row did not improve
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=100, tol=1e6, n_iter_no_change=3,
                           random_state=0, **CPU).fit(X, y)
    assert reg.n_iter_ == 3 + 2
    assert reg.best_loss_ == min(reg.loss_curve_)


def test_warm_start_continues_and_counts_full_iterations(rng):
    X = _X(rng)
    y = _targets(rng, X, "multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, warm_start=True, random_state=0,
                        **CPU).fit(X, y)
    first = [c.copy() for c in clf.coefs_]
    clf.fit(X, y)
    assert clf.n_iter_ == 3
    assert len(clf.loss_curve_) == 6
    assert clf.loss_curve_[3] < clf.loss_curve_[0]
    assert not np.array_equal(clf.coefs_[0], first[0])
    # without warm_start every fit starts again from the same initial weights
    cold = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0, **CPU)
    a = [c.copy() for c in cold.fit(X, y).coefs_]
    b = cold.fit(X, y).coefs_
    for u, v in zip(a, b):
        assert_array_equal(u, v)
    assert len(cold.loss_curve_) == 3


def test_shuffle_changes_the_batches(rng):
    X = _X(rng)
    y = _targets(rng, X, "binary")
    params = dict(hidden_layer_sizes=(4,), max_iter=3, batch_size=10, random_state=0, **CPU)
    a = MLPClassifier(shuffle=True, **params).fit(X, y)
    b = MLPClassifier(shuffle=False, **params).fit(X, y)
    assert not np.array_equal(a.coefs_[0], b.coefs_[0])


# ---------------------------------------------------------------------- label types, multilabel
@pytest.mark.parametrize("labels", [
    np.array(["cat", "dog"]), np.array([-1, 1]), np.array([False, True]), np.array([1.0, 2.0]),
    np.array(["x", "y", "z"]), np.array([3, 7, 11]),
], ids=lambda a: "-".join(map(str, a)))
def test_any_label_type(rng, labels):
    X = _X(rng, n=60)
    kind = "binary" if len(labels) == 2 else "multiclass"
    y = labels[_targets(rng, X, kind)]
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, learning_rate_init=0.02,
                        random_state=0, **CPU).fit(X, y)
    assert_array_equal(clf.classes_, np.unique(labels))
    pred = clf.predict(X)
    assert pred.shape == (60,)
    assert pred.dtype == y.dtype
    assert set(pred) <= set(labels)
    assert clf.score(X, y) > 0.85
    assert clf.out_activation_ == ("logistic" if len(labels) == 2 else "softmax")
    assert clf.n_outputs_ == (1 if len(labels) == 2 else len(labels))


def test_multilabel(rng):
    X = _X(rng, n=80)
    Y = _targets(rng, X, "multilabel")
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, learning_rate_init=0.02,
                        random_state=0, **CPU).fit(X, Y)
    assert clf.out_activation_ == "logistic"
    assert clf.n_outputs_ == 3
    assert_array_equal(clf.classes_, [0, 1, 2])
    pred = clf.predict(X)
    assert pred.shape == Y.shape
    assert set(np.unique(pred)) <= {0, 1}
    assert clf.score(X, Y) > 0.8  # subset accuracy
    P = clf.predict_proba(X)
    assert P.shape == Y.shape
    assert np.all((P >= 0) & (P <= 1))
    assert_array_equal(pred, (P > 0.5).astype(int))
    # partial_fit on a multilabel problem
    inc = MLPClassifier(hidden_layer_sizes=(16,), random_state=0, **CPU)
    for _ in range(3):
        inc.partial_fit(X, Y, classes=[0, 1, 2])
    assert inc.predict(X).shape == Y.shape


# ---------------------------------------------------------------------- sample and class weights
@pytest.mark.both_backends
@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_sample_weight_equals_repeated_rows(rng, kind, backend):
    X = _X(rng, n=30)
    y = _targets(rng, X, kind)
    w = rng.integers(0, 4, size=30)
    w[:3] = [1, 2, 3]
    Xr, yr = X.repeat(w, axis=0), y.repeat(w, axis=0)
    Est = _pair(kind)[0]
    params = dict(hidden_layer_sizes=(5, 3), shuffle=False, max_iter=8 if backend == "cpu" else 2,
                  random_state=0, alpha=0.01, learning_rate_init=0.01, backend=backend,
                  dtype="float64")
    # one full batch each: the batch of the repeated data holds the repeated rows
    weighted = Est(batch_size=30, **params).fit(X, y, sample_weight=w.astype(float))
    repeated = Est(batch_size=int(w.sum()), **params).fit(Xr, yr)
    assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-10)
    for a, b in zip(_all_params(weighted), _all_params(repeated)):
        assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_class_weight_dict_equals_sample_weight(rng):
    X = _X(rng)
    y = np.array(["lo", "mid", "hi"])[_targets(rng, X, "multiclass")]
    cw = {"lo": 2.0, "mid": 0.5}  # "hi" keeps weight 1
    params = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0, **F64)
    a = MLPClassifier(class_weight=cw, **params).fit(X, y)
    b = MLPClassifier(**params).fit(X, y, sample_weight=[cw.get(c, 1.0) for c in y])
    for u, v in zip(_all_params(a), _all_params(b)):
        assert_array_equal(u, v)
    # class weights multiply sample weights
    sw = rng.uniform(0.5, 2.0, size=len(y))
    c = MLPClassifier(class_weight=cw, **params).fit(X, y, sample_weight=sw)
    d = MLPClassifier(**params).fit(X, y, sample_weight=sw * [cw.get(k, 1.0) for k in y])
    for u, v in zip(_all_params(c), _all_params(d)):
        assert_allclose(u, v, rtol=1e-12, atol=1e-15)


def test_class_weight_balanced_equals_sample_weight(rng):
    X = _X(rng)
    y = _targets(rng, X, "binary")
    y[:5] = 1  # make sure the classes are unbalanced in a known way
    params = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0, **F64)
    a = MLPClassifier(class_weight="balanced", **params).fit(X, y)
    b = MLPClassifier(**params).fit(X, y, sample_weight=compute_sample_weight("balanced", y))
    for u, v in zip(_all_params(a), _all_params(b)):
        assert_allclose(u, v, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------- outputs
def test_verbose_prints_one_line_per_epoch(rng, capsys):
    X = _X(rng)
    y = _targets(rng, X, "multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, verbose=True, random_state=0,
                        **CPU).fit(X, y)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Iteration")]
    assert len(lines) == clf.n_iter_ == 5
    for i, (line, loss) in enumerate(zip(lines, clf.loss_curve_), start=1):
        m = re.match(rf"Iteration {i}, loss = ([0-9.]+)", line)
        assert m, line
        assert float(m.group(1)) == pytest.approx(loss, abs=1e-7)


def test_not_verbose_prints_nothing(rng, capsys):
    X = _X(rng)
    MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, **CPU).fit(X, _targets(rng, X, "regression"))
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_proba_and_log_proba(rng, kind, dtype):
    X = _X(rng)
    y = _targets(rng, X, kind)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0, backend="cpu",
                        dtype=dtype).fit(X, y)
    P = clf.predict_proba(X)
    assert P.shape == (X.shape[0], len(clf.classes_))
    assert np.all(P >= 0)
    assert_allclose(P.sum(axis=1), 1.0, rtol=1e-6 if dtype == "float32" else 1e-12)
    assert_allclose(clf.predict_log_proba(X), np.log(P), rtol=1e-6)
    assert_array_equal(clf.predict(X), clf.classes_[P.argmax(axis=1)])
    assert clf.score(X, y) == accuracy_score(y, clf.predict(X))


@pytest.mark.both_backends
def test_fitted_attributes(rng, backend):
    X = _X(rng, n=40, d=5)
    y = _targets(rng, X, "multiclass")
    clf = MLP(hidden_layer_sizes=(6, 4), max_iter=2, random_state=0, backend=backend).fit(X, y)
    assert MLP is MLPClassifier
    assert [c.shape for c in clf.coefs_] == [(5, 6), (6, 4), (4, 3)]
    assert [b.shape for b in clf.intercepts_] == [(6,), (4,), (3,)]
    assert all(c.dtype == np.float32 for c in clf.coefs_ + clf.intercepts_)  # default dtype
    assert clf.n_layers_ == 4
    assert clf.n_outputs_ == 3
    assert clf.out_activation_ == "softmax"
    assert clf.n_features_in_ == 5
    assert not hasattr(clf, "feature_names_in_")
    assert not hasattr(clf, "prelu_alphas_")
    assert clf.n_iter_ == len(clf.loss_curve_) == 2
    assert clf.t_ == 2 * 40
    assert clf.loss_ == clf.loss_curve_[-1]
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None

    y_reg = _targets(rng, X, "regression")
    reg = MLPRegressor(hidden_layer_sizes=3, max_iter=2, backend=backend, dtype="float64")
    reg.fit(X, y_reg)
    assert [c.shape for c in reg.coefs_] == [(5, 3), (3, 1)]
    assert reg.coefs_[0].dtype == np.float64
    assert reg.out_activation_ == "identity" and reg.n_outputs_ == 1
    assert reg.predict(X).shape == (40,)


def test_feature_names_in(rng):
    import pandas as pd  # installed with dask-ml (test extra)
    X = pd.DataFrame(_X(rng, n=30, d=3), columns=["a", "b", "c"])
    y = _targets(rng, X.to_numpy(), "binary")
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, **CPU).fit(X, y)
    assert_array_equal(clf.feature_names_in_, ["a", "b", "c"])
    assert clf.predict(X).shape == (30,)


@pytest.mark.both_backends
def test_maxout_and_prelu_attributes(rng, backend):
    X = _X(rng, n=40, d=5)
    y = _targets(rng, X, "multiclass")
    mo = MLPClassifier(hidden_layer_sizes=(6, 4), activation="maxout", maxout_pieces=3,
                       max_iter=2, random_state=0, backend=backend).fit(X, y)
    assert [c.shape for c in mo.coefs_] == [(5, 18), (6, 12), (4, 3)]
    assert [b.shape for b in mo.intercepts_] == [(18,), (12,), (3,)]
    assert mo.predict_proba(X).shape == (40, 3)

    pr = MLPClassifier(hidden_layer_sizes=(6, 4), activation="prelu", prelu_init=0.2,
                       max_iter=2, random_state=0, backend=backend)
    pr.fit(X, y)
    assert [a.shape for a in pr.prelu_alphas_] == [(6,), (4,)]
    assert not np.allclose(pr.prelu_alphas_[0], 0.2)  # the slopes are learned
    assert pr.predict_proba(X).shape == (40, 3)
    # refitting with another activation drops the slopes
    pr.set_params(activation="relu").fit(X, y)
    assert not hasattr(pr, "prelu_alphas_")


@pytest.mark.parametrize("activation", ["leaky_relu", "prelu", "elu", "maxout", "sigmoid"])
def test_extra_activations_learn(rng, activation):
    X = _X(rng)
    y = _targets(rng, X, "multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(8,), activation=activation, max_iter=30,
                        learning_rate_init=0.01, random_state=0, **CPU).fit(X, y)
    assert clf.loss_curve_[-1] < 0.8 * clf.loss_curve_[0]
    assert np.isfinite(clf.predict_proba(X)).all()


def test_leaky_relu_limits_are_relu_and_identity(rng):
    X = _X(rng)
    y = _targets(rng, X, "multiclass")
    params = dict(hidden_layer_sizes=(6,), max_iter=5, random_state=0, **F64)
    leaky0 = MLPClassifier(activation="leaky_relu", negative_slope=0.0, **params).fit(X, y)
    relu = MLPClassifier(activation="relu", **params).fit(X, y)
    leaky1 = MLPClassifier(activation="leaky_relu", negative_slope=1.0, **params).fit(X, y)
    ident = MLPClassifier(activation="identity", **params).fit(X, y)
    for u, v in zip(_all_params(leaky0), _all_params(relu)):
        assert_allclose(u, v, rtol=1e-12, atol=1e-15)
    for u, v in zip(_all_params(leaky1), _all_params(ident)):
        assert_allclose(u, v, rtol=1e-12, atol=1e-15)


def test_sigmoid_is_logistic(rng):
    X = _X(rng)
    y = _targets(rng, X, "binary")
    params = dict(hidden_layer_sizes=(4,), max_iter=3, random_state=0, **F64)
    a = MLPClassifier(activation="sigmoid", **params).fit(X, y)
    b = MLPClassifier(activation="logistic", **params).fit(X, y)
    for u, v in zip(_all_params(a), _all_params(b)):
        assert_array_equal(u, v)


# ---------------------------------------------------------------------- coefs_ are the model
def test_assigning_coefs_changes_predict(rng):
    X = _X(rng)
    y = _targets(rng, X, "multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0, **F64).fit(X, y)
    clf.coefs_ = [np.zeros_like(c) for c in clf.coefs_]
    clf.intercepts_ = [np.zeros_like(b) for b in clf.intercepts_]
    assert_allclose(clf.predict_proba(X), 1.0 / 3.0)
    # a new bias on the output layer decides every prediction
    clf.intercepts_ = [clf.intercepts_[0], np.array([0.0, 0.0, 5.0])]
    assert_array_equal(clf.predict(X), np.full(X.shape[0], clf.classes_[2]))


def test_inplace_coef_edits_change_predict(rng):
    X = _X(rng)
    y = _targets(rng, X, "regression")
    reg = MLPRegressor(hidden_layer_sizes=(6, 3), max_iter=5, random_state=0, **F64).fit(X, y)
    assert_allclose(reg.predict(X), _forward(reg, X).ravel(), rtol=1e-10, atol=1e-12)
    reg.coefs_[1][...] = rng.normal(size=reg.coefs_[1].shape)
    reg.intercepts_[2][0] += 3.0
    assert_allclose(reg.predict(X), _forward(reg, X).ravel(), rtol=1e-10, atol=1e-12)
    # whole new arrays of other dtypes and layouts are packed as they are
    reg.coefs_ = [np.asfortranarray(c).astype(np.float32) for c in reg.coefs_]
    assert_allclose(reg.predict(X), _forward(reg, X).ravel(), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------- determinism, threads, pickle
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_random_state_is_bitwise_identical(rng, dtype):
    X = _X(rng)
    y = _targets(rng, X, "multiclass")
    params = dict(hidden_layer_sizes=(8, 4), max_iter=5, batch_size=16, backend="cpu",
                  dtype=dtype)
    a = MLPClassifier(random_state=3, **params).fit(X, y)
    b = MLPClassifier(random_state=3, **params).fit(X, y)
    c = MLPClassifier(random_state=4, **params).fit(X, y)
    for u, v in zip(_all_params(a), _all_params(b)):
        assert_array_equal(u, v)
    assert a.loss_curve_ == b.loss_curve_
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


def test_predict_from_several_threads(rng):
    X = _X(rng, n=60)
    y = _targets(rng, X, "multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=0, **CPU).fit(X, y)
    Xt = rng.normal(size=(3000, 5))
    chunks = np.array_split(Xt, 12)
    serial = [clf.predict_proba(c) for c in chunks]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(clf.predict_proba, chunks))
        labels = list(pool.map(clf.predict, chunks))
    for s, t, lab in zip(serial, threaded, labels):
        assert_array_equal(s, t)
        assert_array_equal(lab, clf.classes_[s.argmax(axis=1)])


@pytest.mark.both_backends
@pytest.mark.parametrize("activation", ["relu", "prelu", "maxout"])
def test_pickle_round_trip(rng, activation, backend):
    X = _X(rng)
    y = _targets(rng, X, "multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(6,), activation=activation, max_iter=2,
                        random_state=0, backend=backend).fit(X, y)
    back = pickle.loads(pickle.dumps(clf))
    assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert_array_equal(back.predict(X), clf.predict(X))
    # after unpickling coefs_ are still the model: in-place edits change predict
    back.coefs_[-1][...] = 0.0
    back.intercepts_[-1][...] = [0.0, 0.0, 4.0]
    assert_array_equal(back.predict(X), np.full(X.shape[0], clf.classes_[2]))
    assert not np.array_equal(back.predict_proba(X), clf.predict_proba(X))
    # and the unpickled model keeps training
    back.set_params(warm_start=True, max_iter=2).fit(X, y)
    assert len(back.loss_curve_) == 4


def test_pickle_regressor_and_unfitted(rng):
    X = _X(rng)
    y = _targets(rng, X, "regression")
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0, **CPU).fit(X, y)
    assert_array_equal(pickle.loads(pickle.dumps(reg)).predict(X), reg.predict(X))
    unfitted = pickle.loads(pickle.dumps(MLPRegressor(alpha=0.5)))
    assert unfitted.get_params() == MLPRegressor(alpha=0.5).get_params()
    assert clone(reg).get_params() == reg.get_params()


def test_auto_backend_runs(rng):
    # tiny: under pytest "auto" may pick numba's (slow) CUDA simulator
    X = _X(rng, n=9, d=2)
    y = np.arange(9) % 2
    clf = MLPClassifier(hidden_layer_sizes=(2,), max_iter=1, random_state=0).fit(X, y)
    assert clf.predict(X).shape == (9,)


def test_constructor_parameters_match_sklearn():
    # every scikit-learn parameter, same default
    for Ours, Theirs, extra in [
        (MLPClassifier, SkMLPClassifier, {"class_weight": None}),
        (MLPRegressor, SkMLPRegressor, {}),
    ]:
        theirs = Theirs().get_params()
        ours = Ours().get_params()
        added = dict(backend="auto", dtype="float32", negative_slope=0.01, prelu_init=0.25,
                     elu_alpha=1.0, maxout_pieces=2, dropout=0.0, **extra)
        if Ours is MLPRegressor and not sklearn_features.LOSS:  # scikit-learn < 1.7
            added["loss"] = "squared_error"
        assert ours == {**theirs, **added}


# ---------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("loader", [datasets.load_digits, datasets.load_breast_cancer,
                                    datasets.load_wine], ids=lambda f: f.__name__[5:])
def test_accuracy_matches_sklearn(loader):
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    params = dict(hidden_layer_sizes=(64,), max_iter=200, random_state=0)
    ours = MLPClassifier(**params, **CPU).fit(X_train, y_train).score(X_test, y_test)
    theirs = SkMLPClassifier(**params).fit(X_train, y_train).score(X_test, y_test)
    assert abs(ours - theirs) <= 0.01, (ours, theirs)


def test_batch_of_zero_weight_rows_is_harmless(rng):
    # class_weight 0 for a class and unshuffled sorted rows: whole batches weigh 0
    X = rng.normal(size=(60, 3))
    y = np.repeat([0, 1, 2], 20)
    X[y == 1] += 3.0
    X[y == 2] -= 3.0
    clf = MLPClassifier(hidden_layer_sizes=(6,), batch_size=10, shuffle=False, max_iter=30,
                        class_weight={0: 0.0, 1: 1.0, 2: 1.0}, random_state=0, backend="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert all(np.isfinite(c).all() for c in clf.coefs_)
    assert np.isfinite(clf.loss_)


def test_small_predicts_from_several_threads(rng):
    # the small-input fast path (<= 64 rows) from many threads, several estimators at once
    X = _X(rng, n=60)
    y = _targets(rng, X, "multiclass")
    models = [MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=s, **CPU).fit(X, y)
              for s in range(3)]
    rows = [rng.normal(size=(k % 7 + 1, 5)) for k in range(60)]
    jobs = [(m, r) for r in rows for m in models]
    serial = [m.predict_proba(r) for m, r in jobs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        threaded = list(pool.map(lambda job: job[0].predict_proba(job[1]), jobs))
    for s, t in zip(serial, threaded):
        assert_array_equal(s, t)
