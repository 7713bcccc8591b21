"""Nothing lost on failure: a fit that fails or is interrupted leaves the estimator intact.

"Intact" means: every attribute (the pickled estimator is byte for byte the
same), so the predictions, classes_, n_features_in_, the optimizer state and
therefore the next partial_fit are those of an untouched twin.  Failures are
real ones (bad weights, a split that is too small, divergence, bad input) and
a KeyboardInterrupt injected at several points of a fit.  Also here: bounded
memory on hostile input, the float32 range error, and changed parameters
under warm_start.
"""

import pickle
import threading
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal

from fastmlp import MLPClassifier, MLPRegressor
from fastmlp import _callbacks, _estimator
from fastmlp.backends import cpu

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning",
                                        "ignore::RuntimeWarning")

SOLVERS = ["sgd", "adam", "lbfgs"]
KINDS = ["classifier", "regressor"]


def _make(kind, solver, **params):
    Est = MLPClassifier if kind == "classifier" else MLPRegressor
    return Est(solver=solver, hidden_layer_sizes=(5,), max_iter=4, random_state=0,
               backend="cpu", dtype="float64", **params)


def _data(rng, kind, n=60, d=6, n_classes=3):
    X = rng.standard_normal((n, d))
    if kind == "classifier":
        y = np.arange(n) % n_classes
    else:
        y = X @ rng.standard_normal(d)
    return X, y


def _fitted_pair(rng, kind, solver, **params):
    """An estimator and its twin, fitted the same way (and once more with partial_fit)."""
    X, y = _data(rng, kind)
    a, b = _make(kind, solver, **params), _make(kind, solver, **params)
    a.fit(X, y)
    b.fit(X, y)
    if solver != "lbfgs":
        a.partial_fit(X, y)
        b.partial_fit(X, y)
    return a, b, X, y


def _assert_intact(est, twin, X, y):
    # every attribute, pickled one by one (the same bytes: the same values, dtypes, shapes)
    a, b = est.__getstate__(), twin.__getstate__()
    differ = [k for k in sorted(set(a) | set(b))
              if pickle.dumps(a.get(k)) != pickle.dumps(b.get(k))]
    assert not differ, f"attributes changed: {differ}"
    assert_array_equal(est.predict(X), twin.predict(X))
    assert est.n_features_in_ == twin.n_features_in_
    if hasattr(twin, "classes_"):
        assert_array_equal(est.classes_, twin.classes_)
        assert_array_equal(est.predict_proba(X), twin.predict_proba(X))
    if hasattr(twin, "partial_fit"):
        # the optimizer state is the twin's: the next step lands on the same weights
        est.partial_fit(X, y)
        twin.partial_fit(X, y)
        for p, q in zip(est.coefs_ + est.intercepts_, twin.coefs_ + twin.intercepts_):
            assert_array_equal(p, q)


def _other_data(rng, kind):
    """Data of another width and label set: a refit on it changes everything."""
    X = rng.standard_normal((40, 4))
    y = np.array(["a", "b"] * 20) if kind == "classifier" else rng.standard_normal(40)
    return X, y


class _Interrupt:
    """Patch ``owner.name`` so that its k-th call raises KeyboardInterrupt."""

    def __init__(self, monkeypatch, owner, name, k):
        real = getattr(owner, name)
        self.calls = 0

        def wrapped(*args, **kwargs):
            self.calls += 1
            if self.calls == k:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapped)


# points of a fit where a KeyboardInterrupt is injected: (where, name, k, solvers)
POINTS = [
    ("validation of X", (_estimator, "validate_data"), 1, SOLVERS),
    ("first epoch", (cpu.Trainer, "epoch"), 1, ["sgd", "adam"]),
    ("third epoch", (cpu.Trainer, "epoch"), 3, ["sgd", "adam"]),
    ("end of training", (cpu.Trainer, "finish"), 1, ["sgd", "adam"]),
    ("first evaluation", (cpu.FullBatch, "__call__"), 1, ["lbfgs"]),
    ("fifth evaluation", (cpu.FullBatch, "__call__"), 5, ["lbfgs"]),
    ("publishing the weights", (_estimator._BaseMLP, "_publish_weights"), 1, SOLVERS),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("solver, point", [(s, p) for p in POINTS for s in p[3]],
                         ids=[f"{s}-{p[0]}" for p in POINTS for s in p[3]])
def test_interrupted_refit_leaves_the_estimator_intact(rng, monkeypatch, kind, solver, point):
    where, (owner, name), k, _ = point
    est, twin, X, y = _fitted_pair(rng, kind, solver)
    Xo, yo = _other_data(rng, kind)
    with monkeypatch.context() as m:
        spy = _Interrupt(m, owner, name, k)
        with pytest.raises(KeyboardInterrupt):
            est.set_params(max_iter=6).fit(Xo, yo)
        assert spy.calls == k
    est.set_params(max_iter=4)
    _assert_intact(est, twin, X, y)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("point", ["epoch", "finish", "_publish_weights"])
def test_interrupted_partial_fit_leaves_the_optimizer_state_intact(rng, monkeypatch, kind,
                                                                   solver, point):
    est, twin, X, y = _fitted_pair(rng, kind, solver)
    owner = _estimator._BaseMLP if point == "_publish_weights" else cpu.Trainer
    with monkeypatch.context() as m:
        _Interrupt(m, owner, point, 1)
        with pytest.raises(KeyboardInterrupt):
            est.partial_fit(X[::-1], y[::-1])
    _assert_intact(est, twin, X, y)


def _failing_refits(rng, kind, solver):
    """(what, params to set, data) of refits that fail with a real error."""
    X, y = _data(rng, kind)
    Xo, yo = _other_data(rng, kind)
    Xbig = X.copy()
    Xbig[0, 0] = 1e300
    cases = [
        ("all weights zero", {}, (Xo, yo), {"sample_weight": np.zeros(len(yo))}),
        ("a negative weight", {}, (Xo, yo), {"sample_weight": -np.ones(len(yo))}),
        ("validation split too small", {"early_stopping": True, "validation_fraction": 0.01},
         (Xo[:20], yo[:20]), {}),
        ("NaN in X", {}, (np.where(Xo > 1.5, np.nan, Xo), yo), {}),
        ("diverging", {"learning_rate_init": 1e6, "solver": "sgd"}, (Xbig, y), {}),
        ("float32 overflow", {"dtype": "float32", "warm_start": False},
         (Xo * 1e39, yo), {}),
    ]
    # lbfgs has no validation split
    return [c for c in cases if not (solver == "lbfgs" and "early_stopping" in c[1])]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("solver", SOLVERS)
def test_failed_refit_leaves_the_estimator_intact(rng, kind, solver):
    for what, params, (Xo, yo), fit_kw in _failing_refits(rng, kind, solver):
        est, twin, X, y = _fitted_pair(rng, kind, solver)
        saved = est.get_params()
        est.set_params(**params)
        with pytest.raises(ValueError):
            est.fit(Xo, yo, **fit_kw)
            pytest.fail(f"no error for {what}")
        est.set_params(**saved)
        _assert_intact(est, twin, X, y)


def test_failed_single_class_refit_keeps_the_old_classes(rng):
    est, twin, X, y = _fitted_pair(rng, "classifier", "adam")
    with pytest.raises(ValueError):  # one class, and a bad weight vector
        est.fit(X, np.zeros(len(y)), sample_weight=np.ones(3))
    _assert_intact(est, twin, X, y)


def test_callback_exception_leaves_the_estimator_intact(rng):
    pytest.importorskip("sklearn.callback", reason="the callback API needs scikit-learn >= 1.9")
    from sklearn.callback import ProgressBar  # noqa: F401  (the API exists)

    est, twin, X, y = _fitted_pair(rng, "classifier", "adam")
    with pytest.MonkeyPatch.context() as m:
        _Interrupt(m, _callbacks.EpochCallbacks, "epoch_begin", 2)
        with pytest.raises(KeyboardInterrupt):
            est.fit(*_other_data(rng, "classifier"))
    _assert_intact(est, twin, X, y)


# ---------------------------------------------------------------------- concurrency
def test_predict_during_refit_sees_old_or_new_model(rng):
    X = rng.standard_normal((300, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    models = [MLPClassifier(hidden_layer_sizes=h, max_iter=3, random_state=0, backend="cpu")
              for h in [(7,), (4, 3)]]
    for mdl in models:
        mdl.fit(X, y)
    expected = [mdl.predict_proba(X) for mdl in models]
    shared = MLPClassifier(hidden_layer_sizes=(7,), max_iter=3, random_state=0, backend="cpu")
    shared.fit(X, y)
    stop = threading.Event()
    seen, errors = [0, 0], []

    def reader():
        while not stop.is_set():
            for rows in (slice(0, 5), slice(None)):  # the small-input path and the full one
                try:
                    P = shared.predict_proba(X[rows])
                except Exception as exc:  # pragma: no cover - the failure being tested
                    errors.append(exc)
                    return
                hits = [i for i, E in enumerate(expected) if np.array_equal(P, E[rows])]
                if not hits:
                    errors.append(AssertionError("a prediction from neither model"))
                    return
                seen[hits[0]] += 1

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(12):
            shared.set_params(hidden_layer_sizes=[(7,), (4, 3)][i % 2]).fit(X, y)
    finally:
        stop.set()
        t.join()
    assert not errors, errors[0]
    assert seen[0] > 0 and seen[1] > 0


# ---------------------------------------------------------------------- memory
def _peak_mib(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_predict_on_a_huge_sparse_matrix_is_chunked(rng):
    X = rng.standard_normal((300, 2000))
    y = (X[:, 0] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0,
                        backend="cpu").fit(X, y)
    n, nnz = 400_000, 40_000  # as the probe: huge, almost empty
    rows = np.sort(rng.integers(0, n, nnz))
    indptr = np.searchsorted(rows, np.arange(n + 1))
    big = sp.csr_matrix((rng.standard_normal(nnz), rng.integers(0, 2000, nnz), indptr),
                        shape=(n, 2000))
    peak = _peak_mib(lambda: clf.predict_proba(big))
    # densified whole in float64 it would take 6100 MiB; one 4096-row chunk
    # in float32 is 31 MiB, the float32 copy of the non-zeros 0.3 MiB, the output 3 MiB
    assert peak < 45, peak
    dense_rows = big[:50].toarray()
    assert_array_equal(clf.predict_proba(big[:50]), clf.predict_proba(dense_rows))


def test_float64_input_to_a_float32_model_is_not_copied_whole(rng):
    X = rng.standard_normal((2000, 50))
    y = X[:, 0] > 0
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0,
                        backend="cpu").fit(X, y)
    big = rng.standard_normal((400_000, 50))  # 153 MiB in float64, 76 MiB as float32
    peak = _peak_mib(lambda: clf.predict_proba(big))
    assert peak < 30, peak
    assert_array_equal(clf.predict(big[:100]), clf.predict(big[:100].astype(np.float32)))


# ---------------------------------------------------------------------- clear errors
@pytest.mark.parametrize("kind", KINDS)
def test_values_beyond_float32_are_an_error(rng, kind):
    X, y = _data(rng, kind)
    est = _make(kind, "adam", ).set_params(dtype="float32")
    with pytest.raises(ValueError, match="beyond the range of float32.*dtype='float64'"):
        est.fit(X * 1e39, y)
    est.fit(X, y)
    bad = X.copy()
    bad[3, 2] = 1e39
    with pytest.raises(ValueError, match="beyond the range of float32"):
        est.predict(bad)
    with pytest.raises(ValueError, match="beyond the range of float32"):
        est.predict(sp.csr_matrix(bad))
    # the cast's own overflow flag, whatever the input's memory layout
    for layout in (np.asfortranarray(bad), np.repeat(bad, 2, axis=1)[:, ::2]):
        with pytest.raises(ValueError, match="beyond the range of float32"):
            est.predict(layout)
    # the float64 model takes them
    _make(kind, "adam").fit(X * 1e39 / 1e39, y).predict(bad)


@pytest.mark.parametrize("param, value, activation", [
    ("negative_slope", 0.2, "leaky_relu"),
    ("elu_alpha", 0.5, "elu"),
    ("maxout_pieces", 3, "maxout"),
    ("dtype", "float32", "relu"),
])
@pytest.mark.parametrize("incremental", [False, True])
def test_warm_start_rejects_changed_parameters(rng, param, value, activation, incremental):
    X, y = _data(rng, "classifier")
    est = _make("classifier", "adam", activation=activation, warm_start=True).fit(X, y)
    twin = pickle.loads(pickle.dumps(est))
    est.set_params(**{param: value})
    with pytest.raises(ValueError, match=f"{param} changed since the last fit"):
        est.partial_fit(X, y) if incremental else est.fit(X, y)
    est.set_params(**{param: twin.get_params()[param]})
    _assert_intact(est, twin, X, y)


# ---------------------------------------------------------------------- sparse training
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("solver, extra", [("adam", {}), ("sgd", {"early_stopping": True}),
                                           ("lbfgs", {})])
def test_sparse_fit_equals_dense_fit(rng, kind, solver, extra):
    """Densified a few batches at a time, a sparse fit is the dense fit, bit for bit."""
    from fastmlp import _config

    X, y = _data(rng, kind, n=150, d=12)
    X[rng.random(X.shape) < 0.7] = 0.0
    params = dict(batch_size=10, max_iter=6, **extra)
    # 25 float64 rows of 12 features a chunk: two whole batches, several chunks an epoch;
    # lbfgs sums 40-row chunks on both paths
    with _config.override(SPARSE_CHUNK_BYTES=25 * 12 * 8, FULL_BATCH_CHUNK_ROWS=40):
        dense = _make(kind, solver).set_params(**params).fit(X, y)
        sparse = _make(kind, solver).set_params(**params).fit(sp.csr_matrix(X), y)
    for a, b in zip(dense.coefs_ + dense.intercepts_, sparse.coefs_ + sparse.intercepts_):
        assert_array_equal(a, b)
    assert sparse.loss_ == pytest.approx(dense.loss_, rel=1e-13)  # epoch sum in chunks


def test_sparse_fit_memory_is_one_chunk(rng):
    n, d, nnz = 100_000, 1000, 50_000
    rows = np.sort(rng.integers(0, n, nnz))
    X = sp.csr_matrix((rng.standard_normal(nnz), rng.integers(0, d, nnz),
                       np.searchsorted(rows, np.arange(n + 1))), shape=(n, d))
    y = np.asarray(X[:, :10].sum(axis=1)).ravel() > 0
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=0, backend="cpu")
    clf.fit(X[:500], y[:500])  # the kernels compiled (or loaded) outside the measurement
    peak = _peak_mib(lambda: clf.fit(X, y))
    # densified whole: 381 MiB in float32; the CSR kernels hold no dense rows (a densified
    # chunk would be 8 MiB: _config.SPARSE_CHUNK_BYTES); the rest is the per-row arrays
    assert peak < 25, peak
    assert clf.score(X[:1000], y[:1000]) > 0.5
