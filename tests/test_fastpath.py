"""The small-input predict shortcut and the epoch shuffle give what the full path gives."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state, shuffle as sk_shuffle

from fastmlp import MLPClassifier, MLPRegressor, _fastpath

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def fitted(rng):
    X = rng.standard_normal((120, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    clf = MLPClassifier(hidden_layer_sizes=(8, 6), max_iter=5, random_state=0,
                        backend="cpu").fit(X, y)
    return clf, X


def _full_path(est, X, apply_out):
    """The forward pass without the shortcut: validate, pack, predict."""
    from sklearn.utils.validation import validate_data

    from fastmlp.backends import get_backend

    Xv = np.ascontiguousarray(validate_data(est, X, reset=False), dtype=est._spec.dtype)
    return get_backend(est.backend).predict(est._spec, est._current_theta(), Xv, apply_out)


@pytest.mark.parametrize("rows", [1, 3, _fastpath.MAX_ROWS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_input_matches_full_path(fitted, rows, dtype):
    clf, X = fitted
    Xs = np.ascontiguousarray(np.resize(X, (rows, X.shape[1])), dtype=dtype)
    assert _fastpath.small_input(clf, clf.__dict__, Xs) is not None
    np.testing.assert_array_equal(clf.predict_proba(Xs), _full_path(clf, Xs, True))
    np.testing.assert_array_equal(clf.predict(Xs), clf.classes_[_full_path(clf, Xs, False).argmax(1)])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_still_raises(fitted, bad):
    clf, X = fitted
    row = X[:1].copy()
    row[0, 2] = bad
    assert _fastpath.small_input(clf, clf.__dict__, row) is None
    with pytest.raises(ValueError, match="(?i)nan|inf"):
        clf.predict(row)


def test_wrong_width_still_raises(fitted):
    clf, X = fitted
    with pytest.raises(ValueError, match="features"):
        clf.predict(np.zeros((1, X.shape[1] + 1), dtype=np.float32))


def test_not_fitted_still_raises():
    with pytest.raises(NotFittedError):
        MLPClassifier(backend="cpu").predict(np.zeros((1, 3), dtype=np.float32))


def test_other_inputs_take_the_full_path(fitted):
    clf, X = fitted
    assert _fastpath.small_input(clf, clf.__dict__, X[:1].tolist()) is None  # not an ndarray
    assert _fastpath.small_input(clf, clf.__dict__, np.asfortranarray(X[:2])) is None  # not C-contiguous
    big = np.resize(X, (_fastpath.MAX_ROWS + 1, X.shape[1]))
    assert _fastpath.small_input(clf, clf.__dict__, big) is None  # not small
    assert _fastpath.small_input(clf, clf.__dict__, X[:1].astype(np.int64)) is None  # not float
    np.testing.assert_array_equal(clf.predict(X[:1].tolist()), clf.predict(X[:1]))


def test_assigned_coefs_are_used(fitted):
    clf, X = fitted
    row = X[:1].copy()
    before = clf.predict_proba(row)
    clf.coefs_[-1] = np.zeros_like(clf.coefs_[-1])  # a new array, not a view of the flat vector
    clf.intercepts_[-1] = np.zeros_like(clf.intercepts_[-1])
    np.testing.assert_allclose(clf.predict_proba(row), np.full_like(before, 1 / before.shape[1]),
                               rtol=1e-6)


def test_in_place_edits_are_used(fitted):
    clf, X = fitted
    row = X[:1].copy()
    clf.predict_proba(row)
    clf.coefs_[-1][...] = 0.0  # through the published view
    clf.intercepts_[-1][...] = 0.0
    P = clf.predict_proba(row)
    np.testing.assert_allclose(P, np.full_like(P, 1 / P.shape[1]), rtol=1e-6)


@pytest.mark.parametrize("which", ["coefs_", "intercepts_"])
def test_in_place_reshape_takes_the_full_path(fitted, which):
    # an in-place change of a published view's shape keeps its size: the shortcut must
    # notice it (len and ndim) and leave the answer to the full path, which refuses it
    clf, X = fitted
    row = X[:1].copy()
    clf.predict(row)  # the shortcut's record of the fitted state exists
    a = getattr(clf, which)[0]
    a.shape = (a.size, 1) if a.ndim == 1 else (a.shape[1], a.shape[0])
    with pytest.raises(ValueError, match=r"must have shape") as small:
        clf.predict(row)
    with pytest.raises(ValueError, match=r"must have shape") as full:
        clf.predict(np.repeat(row, _fastpath.MAX_ROWS + 1, axis=0))
    assert str(small.value) == str(full.value)


def test_growing_and_shrinking_inputs_reuse_the_workspace(fitted):
    # the per-thread workspace grows to the most rows asked for and serves fewer rows after
    clf, X = fitted
    for n in (1, 5, 2, 100, _fastpath.MAX_ROWS, 1, 7):
        rows = np.ascontiguousarray(np.resize(X[n:], (n, X.shape[1])))
        np.testing.assert_array_equal(clf.predict_proba(rows), _full_path(clf, rows, True))


def test_threads_predicting_at_once_get_their_own_answers(rng):
    # the kernel releases the GIL and the shortcut keeps a workspace per thread: threads
    # predicting different rows on one model at the same time must not mix them up
    # (wide layers and full-size inputs, so that the kernels overlap in time)
    from concurrent.futures import ThreadPoolExecutor

    X = rng.standard_normal((400, 64)).astype(np.float32)
    clf = MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=1, random_state=0,
                        backend="cpu").fit(X, rng.integers(0, 4, 400))
    n = 64
    rows = [np.ascontiguousarray(X[i:i + n - i % 3]) for i in range(0, 400 - n, 7)]
    want = [_full_path(clf, r, True) for r in rows]

    def job(i):
        return [clf.predict_proba(rows[(i + k) % len(rows)]) for k in range(60)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(job, range(4)))
    for i, got in enumerate(results):
        for k, P in enumerate(got):
            np.testing.assert_array_equal(P, want[(i + k) % len(rows)])


def test_refit_is_seen(fitted, rng):
    clf, X = fitted
    row = X[:1].copy()
    clf.predict_proba(row)
    clf.set_params(random_state=1).fit(X, rng.integers(0, 3, X.shape[0]))
    np.testing.assert_array_equal(clf.predict_proba(row), _full_path(clf, row, True))


def test_regressor_small_input(rng):
    X = rng.standard_normal((80, 3))
    y = X @ np.array([1.0, -1.0, 0.5])
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                       backend="cpu").fit(X, y)
    np.testing.assert_array_equal(reg.predict(X[:2]), _full_path(reg, X[:2], True).ravel())


@pytest.mark.parametrize("n", [1, 7, 1000])
def test_shuffled_is_sklearn_shuffle(n):
    order = np.arange(n) * 3
    a = sk_shuffle(order, random_state=check_random_state(11))
    b = _fastpath.shuffled(order, check_random_state(11))
    np.testing.assert_array_equal(a, b)
