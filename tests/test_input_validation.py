"""Bad input gets a ValueError / TypeError / NotFittedError a user understands.

Every test asserts on the message (``match=``), and no message may come from
Numba: errors are raised before any compiled kernel sees the data.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError

from fastmlp import MLPClassifier, MLPRegressor, available_backends

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CPU = dict(backend="cpu")
ESTIMATORS = [MLPClassifier, MLPRegressor]


def _data(rng, Est, n=20, d=3):
    X = rng.normal(size=(n, d))
    if Est is MLPClassifier:
        y = np.arange(n) % 3
    else:
        y = X @ rng.normal(size=d)
    return X, y


def _raises(exc, match, func, *args, **kwargs):
    """pytest.raises, plus: the message does not come from Numba's compiler."""
    with pytest.raises(exc, match=match) as info:
        func(*args, **kwargs)
    text = str(info.value).lower()
    assert "numba" not in text and "nopython" not in text and "typing" not in text
    return info


# ---------------------------------------------------------------------- data
@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_X(rng, Est, bad):
    X, y = _data(rng, Est)
    X[3, 1] = bad
    _raises(ValueError, "Input X contains (NaN|infinity)", Est(**CPU).fit, X, y)
    good = Est(max_iter=2, **CPU).fit(*_data(rng, Est))
    _raises(ValueError, "Input X contains (NaN|infinity)", good.predict, X)


def test_non_finite_y(rng):
    X, y = _data(rng, MLPRegressor)
    y[0] = np.nan
    _raises(ValueError, "Input y contains NaN", MLPRegressor(**CPU).fit, X, y)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_empty_X(rng, Est):
    _raises(ValueError, "0 sample", Est(**CPU).fit, np.empty((0, 3)), np.empty(0))
    _raises(ValueError, "0 feature", Est(**CPU).fit, np.empty((5, 0)), np.arange(5) % 2)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_1d_X(rng, Est):
    X, y = _data(rng, Est)
    _raises(ValueError, "Expected 2D array, got 1D array", Est(**CPU).fit, X[:, 0], y)
    fitted = Est(max_iter=2, **CPU).fit(X, y)
    _raises(ValueError, "Expected 2D array, got 1D array", fitted.predict, X[0])


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_mismatched_lengths(rng, Est):
    X, y = _data(rng, Est)
    _raises(ValueError, "inconsistent numbers of samples", Est(**CPU).fit, X, y[:-1])
    _raises(ValueError, r"sample_weight.shape == \(19,\), expected \(20,\)",
            Est(**CPU).fit, X, y, sample_weight=np.ones(19))


@pytest.mark.both_backends
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_wrong_n_features_at_predict(rng, Est, backend):
    X, y = _data(rng, Est)
    est = Est(hidden_layer_sizes=(5,), max_iter=2, backend=backend).fit(X, y)
    _raises(ValueError, "X has 4 features, but .* is expecting 3 features", est.predict,
            rng.normal(size=(5, 4)))
    if Est is MLPClassifier:
        _raises(ValueError, "expecting 3 features", est.predict_proba, rng.normal(size=(5, 2)))
    # partial_fit with other features than the fitted network
    _raises(ValueError, "expecting 3 features", est.partial_fit, rng.normal(size=(5, 4)), y[:5])


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_predict_before_fit(rng, Est):
    X, _ = _data(rng, Est)
    _raises(NotFittedError, "not fitted yet", Est(**CPU).predict, X)
    if Est is MLPClassifier:
        _raises(NotFittedError, "not fitted yet", Est(**CPU).predict_proba, X)
        _raises(NotFittedError, "not fitted yet", Est(**CPU).predict_log_proba, X)


def test_sample_weight_bad_values(rng):
    X, y = _data(rng, MLPClassifier)
    _raises(ValueError, "Negative values in data passed to `sample_weight`",
            MLPClassifier(**CPU).fit, X, y, sample_weight=-np.ones(20))
    _raises(ValueError, "Sample weights must contain at least one non-zero number",
            MLPClassifier(**CPU).fit, X, y, sample_weight=np.zeros(20))
    sw = np.ones(20)
    sw[2] = np.nan
    _raises(ValueError, "NaN", MLPClassifier(**CPU).fit, X, y, sample_weight=sw)


def test_sparse_input_is_accepted(rng):
    X, y = _data(rng, MLPClassifier)
    dense = MLPClassifier(max_iter=3, random_state=0, **CPU).fit(X, y)
    sparse = MLPClassifier(max_iter=3, random_state=0, **CPU).fit(sp.csr_matrix(X), y)
    np.testing.assert_array_equal(dense.predict_proba(X), sparse.predict_proba(sp.csr_matrix(X)))


# ---------------------------------------------------------------------- targets
def test_classifier_rejects_continuous_targets(rng):
    X, _ = _data(rng, MLPClassifier)
    _raises(ValueError, "Unknown label type: 'continuous'.*MLPRegressor",
            MLPClassifier(**CPU).fit, X, rng.normal(size=20))


def test_regressor_rejects_string_targets(rng):
    X, _ = _data(rng, MLPRegressor)
    _raises(ValueError, "could not convert|dtype", MLPRegressor(**CPU).fit, X,
            np.array(["a", "b"] * 10))


def test_poisson_needs_non_negative_targets(rng):
    X, y = _data(rng, MLPRegressor)
    _raises(ValueError, r'loss="poisson" requires y >= 0',
            MLPRegressor(loss="poisson", **CPU).fit, X, y - 100)


def test_partial_fit_without_classes(rng):
    X, y = _data(rng, MLPClassifier)
    _raises(ValueError, "classes must be passed on the first call to partial_fit",
            MLPClassifier(**CPU).partial_fit, X, y)


def test_partial_fit_unknown_and_changed_classes(rng):
    X, y = _data(rng, MLPClassifier)
    clf = MLPClassifier(**CPU).partial_fit(X, y, classes=[0, 1, 2])
    _raises(ValueError, "`y` has classes not in `self.classes_`", clf.partial_fit, X,
            np.where(y == 2, 7, y))
    _raises(ValueError, "is not the same as on last call to partial_fit", clf.partial_fit, X, y,
            classes=[0, 1, 2, 3])
    _raises(ValueError, r"`y` has classes not in `self.classes_`",
            MLPClassifier(**CPU).partial_fit, X, np.where(y == 2, 5, y), classes=[0, 1, 2])


def test_partial_fit_with_early_stopping(rng):
    X, y = _data(rng, MLPRegressor)
    _raises(ValueError, "partial_fit does not support early_stopping=True",
            MLPRegressor(early_stopping=True, **CPU).partial_fit, X, y)


def test_warm_start_with_other_classes(rng):
    X, y = _data(rng, MLPClassifier)
    clf = MLPClassifier(warm_start=True, max_iter=2, **CPU).fit(X, y)
    _raises(ValueError, "warm_start can only be used where `y` has the same classes",
            clf.fit, X, np.where(y == 2, 1, y))


def test_warm_start_with_other_architecture(rng):
    X, y = _data(rng, MLPClassifier)
    clf = MLPClassifier(hidden_layer_sizes=(4,), warm_start=True, max_iter=2, **CPU).fit(X, y)
    clf.set_params(hidden_layer_sizes=(5,))
    _raises(ValueError, "hidden_layer_sizes changed since the last fit", clf.fit, X, y)


def test_validation_set_too_small(rng):
    X, y = _data(rng, MLPRegressor, n=10)
    _raises(ValueError, "The validation set is too small",
            MLPRegressor(early_stopping=True, validation_fraction=0.1, **CPU).fit, X, y)


def test_assigned_coefs_of_wrong_shape(rng):
    X, y = _data(rng, MLPClassifier)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, **CPU).fit(X, y)
    clf.coefs_ = [np.zeros((3, 5)), np.zeros((5, 3))]
    _raises(ValueError, r"coefs_\[0\] must have shape \(3, 4\)", clf.predict, X)
    clf.coefs_ = clf.coefs_[:1]
    _raises(ValueError, "must hold 2 arrays each", clf.predict, X)


# ---------------------------------------------------------------------- parameters
BAD_PARAMS = [
    (dict(activation="swish"), ValueError, "Unknown activation 'swish'; choose one of"),
    (dict(activation=3), TypeError, "activation must be a string"),
    (dict(solver="newton"), ValueError, r"solver must be one of \['lbfgs', 'sgd', 'adam'\], got 'newton'"),
    (dict(max_fun=0), ValueError, "max_fun must be >= 1"),
    (dict(max_fun=1.5), TypeError, "max_fun must be an integer"),
    (dict(n_iter_no_change=-np.inf), TypeError, "n_iter_no_change must be an integer"),
    (dict(backend="tpu"), ValueError, "backend must be one of .*'cuda'.*got 'tpu'"),
    (dict(dtype="float16"), ValueError, "dtype must be one of .*'float64'.*got 'float16'"),
    (dict(dtype=np.int32), ValueError, r"dtype must be one of .*got <class 'numpy.int32'>"),
    (dict(dtype=None), ValueError, "dtype must be one of .*got None"),
    (dict(dtype=np.float16), ValueError, "dtype must be one of"),
    (dict(learning_rate="cyclic"), ValueError, "learning_rate must be one of"),
    (dict(hidden_layer_sizes=(4, 0)), ValueError, r"hidden_layer_sizes must be > 0, got \[4, 0\]"),
    (dict(hidden_layer_sizes=-2), ValueError, "hidden_layer_sizes must be > 0"),
    (dict(hidden_layer_sizes=(4.5,)), TypeError, "hidden_layer_sizes must contain integers"),
    (dict(hidden_layer_sizes="big"), TypeError, "hidden_layer_sizes must contain integers"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1, got 0"),
    (dict(batch_size=-5), ValueError, "batch_size must be >= 1"),
    (dict(batch_size="all"), ValueError, "batch_size must be 'auto' or an int"),
    (dict(batch_size=2.5), TypeError, "batch_size must be an integer"),
    (dict(max_iter=0), ValueError, "max_iter must be >= 1, got 0"),
    (dict(max_iter=-1), ValueError, "max_iter must be >= 1"),
    (dict(learning_rate_init=0.0), ValueError, "learning_rate_init must be > 0.0, got 0.0"),
    (dict(learning_rate_init=-0.1), ValueError, "learning_rate_init must be > 0"),
    (dict(learning_rate_init=np.inf), ValueError, "learning_rate_init must be finite"),
    (dict(learning_rate_init="fast"), TypeError, "learning_rate_init must be a real number"),
    (dict(maxout_pieces=1), ValueError, "maxout_pieces must be >= 2, got 1"),
    (dict(alpha=-1.0), ValueError, "alpha must be >= 0"),
    (dict(momentum=1.5), ValueError, "momentum must be <= 1"),
    (dict(validation_fraction=1.0), ValueError, "validation_fraction must be < 1"),
    (dict(beta_1=1.0), ValueError, "beta_1 must be < 1"),
    (dict(epsilon=0.0), ValueError, "epsilon must be > 0"),
    (dict(n_iter_no_change=0), ValueError, "n_iter_no_change must be >= 1"),
    (dict(tol=-1e-4), ValueError, "tol must be >= 0"),
    (dict(negative_slope=-0.1), ValueError, "negative_slope must be >= 0"),
    (dict(elu_alpha=0.0), ValueError, "elu_alpha must be > 0"),
    (dict(shuffle="yes"), TypeError, "shuffle must be True or False"),
    (dict(early_stopping=None), TypeError, "early_stopping must be True or False"),
]


@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize("params, exc, match", BAD_PARAMS,
                         ids=[f"{k}={v!r}" for p, _, _ in BAD_PARAMS for k, v in p.items()])
def test_bad_parameters(rng, Est, params, exc, match):
    X, y = _data(rng, Est)
    params = {"backend": "cpu", **params}
    _raises(exc, match, Est(**params).fit, X, y)
    if "solver" in params:  # no partial_fit without a stochastic solver (scikit-learn)
        assert not hasattr(Est(**params), "partial_fit")
        return
    # partial_fit validates the same way
    kwargs = {"classes": [0, 1, 2]} if Est is MLPClassifier else {}
    _raises(exc, match, Est(**params).partial_fit, X, y, **kwargs)


def test_bad_class_weight(rng):
    X, y = _data(rng, MLPClassifier)
    _raises(ValueError, "class_weight must be None, 'balanced' or a dict",
            MLPClassifier(class_weight="auto", **CPU).fit, X, y)
    _raises(TypeError, "class_weight must be None, 'balanced' or a dict",
            MLPClassifier(class_weight=[1, 2, 3], **CPU).fit, X, y)
    _raises(ValueError, r"class_weight has labels \[9\] that are not classes",
            MLPClassifier(class_weight={9: 2.0}, **CPU).fit, X, y)
    _raises(ValueError, "class_weight values must be finite and >= 0",
            MLPClassifier(class_weight={0: -1.0}, **CPU).fit, X, y)
    Y = np.column_stack([y == 0, y == 1]).astype(int)
    _raises(ValueError, "class_weight is not supported for multilabel",
            MLPClassifier(class_weight="balanced", **CPU).fit, X, Y)


def test_bad_loss():
    X = np.ones((4, 2))
    _raises(ValueError, "loss must be one of", MLPRegressor(loss="huber", **CPU).fit, X, np.ones(4))


def test_unavailable_cuda_backend_is_explained(rng):
    # tiny: under pytest "cuda" may be numba's (slow) CUDA simulator
    X, y = _data(rng, MLPClassifier, n=9)
    clf = MLPClassifier(hidden_layer_sizes=(2,), backend="cuda", max_iter=1)
    if "cuda" in available_backends():
        assert clf.fit(X, y).predict(X).shape == (9,)
    else:
        _raises(RuntimeError, 'backend="cuda".*use backend="cpu"', clf.fit, X, y)


# ---------------------------------------------------------------------- divergence
@pytest.mark.both_backends
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_diverging_fit_raises(rng, Est, backend):
    X, y = _data(rng, Est, n=40)
    X = X * 1e3  # unscaled data
    est = Est(hidden_layer_sizes=(5,), solver="sgd", learning_rate_init=1e6, max_iter=20,
              random_state=0, backend=backend)
    _raises(ValueError, "diverged|non-finite", est.fit, X, y)
    assert not hasattr(est, "coefs_")  # no NaN weights were published


def test_diverging_warm_start_keeps_previous_weights(rng):
    X, y = _data(rng, MLPRegressor, n=40)
    reg = MLPRegressor(solver="sgd", max_iter=3, warm_start=True, random_state=0, **CPU).fit(X, y)
    before = [c.copy() for c in reg.coefs_]
    pred = reg.predict(X)
    reg.set_params(learning_rate_init=1e6)
    _raises(ValueError, "diverged|non-finite", reg.fit, X * 1e3, y)
    for a, b in zip(reg.coefs_, before):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(reg.predict(X), pred)


# ---------------------------------------------------------------------- malformed sparse input
def _malformed(X, fmt, how):
    """X in format fmt with one index array changed after scipy built (and checked) it."""
    M = X.asformat(fmt, copy=True) if fmt != "bsr" else sp.bsr_matrix(X, blocksize=(2, 2))
    if fmt == "coo":
        arr = "row" if how == "major" else "col"
        a = getattr(M, arr).copy()
        a[0] = -1 if how == "negative" else 10 ** 6
        setattr(M, arr, a)
    elif how == "indptr":
        M.indptr = M.indptr.copy()
        M.indptr[-1] = 10 ** 6
    else:
        M.indices = M.indices.copy()
        M.indices[0] = -3 if how == "negative" else 10 ** 6
    return M


@pytest.mark.parametrize("fmt, how", [
    (fmt, how) for fmt in ("csr", "csc", "bsr") for how in ("too large", "negative", "indptr")
] + [("coo", how) for how in ("too large", "negative", "major")])
def test_malformed_sparse_index_arrays_are_refused_before_any_kernel(rng, fmt, how):
    """Index arrays changed after scipy built the matrix would make a kernel (or scipy's own
    conversion) read or write outside its buffers; they are a ValueError instead.  ("major":
    COO's row array; the others change the column (minor) indices or CSR/CSC's indptr.)"""
    X = sp.random(40, 6, density=0.4, format="csr", random_state=rng.integers(1 << 30))
    y = (X.toarray()[:, 0] > 0.3).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0, **CPU).fit(X, y)
    bad = _malformed(X, fmt, how)
    before = [np.copy(getattr(bad, a)) for a in ("data", "indices", "indptr", "row", "col")
              if hasattr(bad, a)]
    if fmt in ("csr", "csc", "coo"):
        _raises(ValueError, "malformed sparse", MLPClassifier(max_iter=1, **CPU).fit, bad, y)
    for method in (clf.predict, clf.predict_proba):
        _raises(ValueError, "malformed sparse", method, bad)
    after = [getattr(bad, a) for a in ("data", "indices", "indptr", "row", "col")
             if hasattr(bad, a)]
    for a, b in zip(before, after):  # the user's (malformed) matrix is left as it was
        np.testing.assert_array_equal(a, b)
    # the same matrix, well formed, is accepted
    assert clf.predict(X.asformat(fmt) if fmt != "bsr" else X.tobsr()).shape == (40,)


@pytest.mark.parametrize("given,name", [(np.float32, "float32"), (np.dtype("float64"), "float64"),
                                        ("f8", "float64"), (np.float64, "float64")])
def test_dtype_takes_a_numpy_dtype_of_either(given, name):
    """dtype=np.float64 (or np.dtype, or a NumPy code) is the same model as the string; the
    parameter is kept as given (get_params, clone)."""
    from sklearn.base import clone

    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 4))
    y = rng.integers(0, 2, 60)
    kw = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    a = MLPClassifier(dtype=given, **kw).fit(X, y)
    b = MLPClassifier(dtype=name, **kw).fit(X, y)
    assert a.coefs_[0].dtype == np.dtype(name)
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert u.tobytes() == v.tobytes()
    assert a.get_params()["dtype"] is given and clone(a).get_params()["dtype"] == given
