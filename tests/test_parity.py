"""Drop-in parity with scikit-learn's MLP: lbfgs and the behaviours a switching user meets.

Every test runs scikit-learn itself on the same data and compares: the same
numbers (float64, same random_state), the same attributes, the same warnings
and the same exception types with scikit-learn's key sentence.

On lbfgs iteration counts: both libraries evaluate the same objective (to
~1e-15 at the same point, see test_lbfgs_objective_is_the_batch_objective),
but L-BFGS on a non-convex network amplifies rounding-level differences
(BLAS summation order) once it runs long: measured on a (16,) multi-output
regression, the losses agree to 1e-15 after 30 iterations, 7e-8 after 100 and
2e-3 after 300.  The parity tests therefore stop where a fit has converged or
while the iterates still agree to 1e-6.
"""

import io
import re
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkC
from sklearn.neural_network import MLPRegressor as SkR
from sklearn.preprocessing import StandardScaler

from fastmlp import MLPClassifier, MLPRegressor
from fastmlp import _solvers

import sklearn_features

F64 = dict(backend="cpu", dtype="float64")


def _fit_both(Ours, Theirs, X, y, sample_weight=None, **params):
    sklearn_features.require(sample_weight, params)
    sw = {} if sample_weight is None else {"sample_weight": sample_weight}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = Theirs(**params).fit(X, y, **sw)
        ours = Ours(**F64, **params).fit(X, y, sample_weight=sample_weight)
    return ours, theirs


def _assert_same_fit(ours, theirs, rtol=1e-6):
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=rtol)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def _digits():
    X, y = datasets.load_digits(return_X_y=True)
    return X / 16.0, y


def _cancer():
    X, y = datasets.load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _multi_output(rng):
    X = rng.standard_normal((300, 6))
    Y = np.column_stack([X @ rng.standard_normal(6), np.tanh(X[:, 0] * X[:, 1]),
                         X[:, 2] ** 2]) + 0.05 * rng.standard_normal((300, 3))
    return X, Y


# ---------------------------------------------------------------------- lbfgs
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_lbfgs_matches_sklearn_digits(activation):
    X, y = _digits()
    ours, theirs = _fit_both(MLPClassifier, SkC, X, y, solver="lbfgs", activation=activation,
                             hidden_layer_sizes=(24,), random_state=1, max_iter=200)
    _assert_same_fit(ours, theirs)
    assert ours.t_ == theirs.t_ == 0
    assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_lbfgs_matches_sklearn_breast_cancer(activation):
    X, y = _cancer()
    ours, theirs = _fit_both(MLPClassifier, SkC, X, y, solver="lbfgs", activation=activation,
                             hidden_layer_sizes=(10, 5), alpha=1e-3, random_state=0,
                             max_iter=50)
    _assert_same_fit(ours, theirs)
    assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-6, atol=1e-9)


def test_lbfgs_matches_sklearn_multi_output_regression(rng):
    X, Y = _multi_output(rng)
    ours, theirs = _fit_both(MLPRegressor, SkR, X, Y, solver="lbfgs", hidden_layer_sizes=(16,),
                             random_state=0, max_iter=60)
    _assert_same_fit(ours, theirs)


def test_lbfgs_matches_sklearn_poisson_with_weights(rng):
    X = rng.standard_normal((150, 4))
    y = rng.poisson(np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1]))
    sw = rng.uniform(0.2, 3.0, 150)
    ours, theirs = _fit_both(MLPRegressor, SkR, X, y, sample_weight=sw, loss="poisson",
                             solver="lbfgs", hidden_layer_sizes=(8,), random_state=3,
                             max_iter=100)
    _assert_same_fit(ours, theirs)


def test_lbfgs_class_weight_is_sample_weight(rng):
    X, y = _cancer()
    cw = {0: 3.0, 1: 0.5}
    ours = MLPClassifier(solver="lbfgs", class_weight=cw, hidden_layer_sizes=(6,),
                         random_state=0, max_iter=60, **F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
        theirs = SkC(solver="lbfgs", hidden_layer_sizes=(6,), random_state=0,
                     max_iter=60).fit(X, y, sample_weight=np.where(y == 0, 3.0, 0.5))
    _assert_same_fit(ours, theirs)


def test_lbfgs_warm_start_matches_sklearn(rng):
    X, y = _cancer()
    kw = dict(solver="lbfgs", hidden_layer_sizes=(8,), random_state=0, max_iter=15,
              warm_start=True)
    ours, theirs = MLPClassifier(**F64, **kw), SkC(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(3):
            ours.fit(X, y)
            theirs.fit(X, y)
    _assert_same_fit(ours, theirs)


@pytest.mark.parametrize("activation", ["leaky_relu", "prelu", "elu", "maxout"])
def test_lbfgs_our_activations_reduce_the_loss(rng, activation):
    """Activations scikit-learn lacks: lbfgs descends the same objective the
    stochastic solvers and the gradient tests use."""
    X, y = _cancer()
    clf = MLPClassifier(solver="lbfgs", activation=activation, hidden_layer_sizes=(8,),
                        random_state=0, max_iter=40, **F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    init = MLPClassifier(solver="lbfgs", activation=activation, hidden_layer_sizes=(8,),
                         random_state=0, max_iter=1, max_fun=1, **F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        init.fit(X, y)
    assert clf.loss_ < 0.5 * init.loss_
    assert clf.score(X, y) > 0.95


def test_lbfgs_objective_is_the_batch_objective(rng):
    """The lbfgs objective (value and gradient) equals the full-batch loss and
    gradient that every other solver uses, in scikit-learn's packing order."""
    from fastmlp.backends import cpu
    from fastmlp.backends.layout import make_layout

    spec = make_layout(4, (5, 3), 2, "prelu", 0.0, 2, 1, np.float64)
    theta = rng.standard_normal(spec.n_params) * 0.5
    X = rng.standard_normal((30, 4))
    Y = (rng.random((30, 2)) > 0.5).astype(np.float64)
    sw = rng.uniform(0.5, 2.0, 30)
    loss, grad = cpu.loss_grad(spec, theta, X, Y, np.zeros(0, np.int64), sw, 0.1)
    obj = _solvers.LbfgsObjective(spec, cpu.FullBatch(spec, X, Y, np.zeros(0, np.int64), sw),
                                  sw.sum(), 0.1, 2, "logistic")
    x = obj.pack(theta)
    f, g = obj(x)
    assert f == pytest.approx(loss, rel=1e-12)
    assert_allclose(obj.unpack(g), grad, rtol=1e-10, atol=1e-14)
    assert_array_equal(obj.unpack(x), theta)


def test_lbfgs_max_iter_and_max_fun_warn(rng):
    X, y = _cancer()
    for params in (dict(max_iter=3), dict(max_fun=5)):
        with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
            ours = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(5,), random_state=0,
                                 **F64, **params).fit(X, y)
        with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
            theirs = SkC(solver="lbfgs", hidden_layer_sizes=(5,), random_state=0,
                         **params).fit(X, y)
        assert ours.n_iter_ == theirs.n_iter_
        assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-10)


def test_lbfgs_has_no_partial_fit_and_no_stochastic_attributes(rng):
    for Ours, Theirs in [(MLPClassifier, SkC), (MLPRegressor, SkR)]:
        assert not hasattr(Ours(solver="lbfgs"), "partial_fit")
        assert hasattr(Ours(solver="adam"), "partial_fit")
    assert not hasattr(SkC(solver="lbfgs"), "partial_fit")
    X, y = _cancer()
    clf = MLPClassifier(solver="adam", max_iter=2, random_state=0, **F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        clf.set_params(solver="lbfgs", max_iter=5).fit(X, y)
        sk = SkC(solver="lbfgs", max_iter=5, random_state=0).fit(X, y)
    for name in ("loss_curve_", "best_loss_", "validation_scores_"):
        assert not hasattr(sk, name)
        assert not hasattr(clf, name), name
    assert clf.t_ == sk.t_ == 0


def test_lbfgs_verbose_prints_iterations(rng):
    X, y = _cancer()
    out = io.StringIO()
    with redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(solver="lbfgs", max_iter=4, verbose=True, random_state=0,
                            hidden_layer_sizes=(4,), **F64).fit(X, y)
    lines = re.findall(r"Iteration (\d+), loss = ([0-9.]+)", out.getvalue())
    assert [int(i) for i, _ in lines] == list(range(1, clf.n_iter_ + 1))
    assert float(lines[-1][1]) == pytest.approx(clf.loss_, abs=1e-8)


def test_lbfgs_float32_default(rng):
    X, y = _digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(32,), random_state=0,
                            max_iter=60, backend="cpu").fit(X, y)
    assert clf.coefs_[0].dtype == np.float32
    assert clf.score(X, y) > 0.97


def test_lbfgs_memory_does_not_grow_with_rows(rng, monkeypatch):
    """The full-batch call walks the rows in chunks: its workspace is one chunk's."""
    from fastmlp import _config
    from fastmlp.backends import cpu

    spec_rows = []
    real = cpu.FullBatch

    class Spy(real):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            spec_rows.append((self.X.shape[0], self.cap, self.ws.size // self.threads,
                              self.parts))

    monkeypatch.setattr(cpu, "FullBatch", Spy)
    X = rng.standard_normal((1000, 5))
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings(), _config.override(FULL_BATCH_CHUNK_ROWS=64):
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(7,), max_iter=20, random_state=0,
                          **F64).fit(X, y)
    with warnings.catch_warnings(), _config.override(FULL_BATCH_CHUNK_ROWS=100_000):
        warnings.simplefilter("ignore", ConvergenceWarning)
        b = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(7,), max_iter=20, random_state=0,
                          **F64).fit(X, y)
    (n1, cap1, ws1, parts1), (n2, cap2, ws2, parts2) = spec_rows
    # 1000 rows in 4 parts of 250 (see _config.CPU_SPLIT_PART_ROWS), each walked in chunks
    assert n1 == n2 == 1000 and parts1 == parts2 == 4 and cap1 == 64 and cap2 == 250
    assert ws1 * 250 == ws2 * 64  # a thread's workspace: one chunk's, not n's
    assert a.loss_ == pytest.approx(b.loss_, rel=1e-9)  # same fit, summed in another order


# ---------------------------------------------------------------------- n_iter_no_change
def test_n_iter_no_change_inf_never_stops(rng):
    X, y = _cancer()
    kw = dict(solver="sgd", n_iter_no_change=np.inf, tol=10.0, max_iter=12,
              hidden_layer_sizes=(5,), random_state=0)
    ours, theirs = _fit_both(MLPClassifier, SkC, X, y, **kw)
    assert ours.n_iter_ == theirs.n_iter_ == 12
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    # a finite value stops early with this tol, at the same epoch as scikit-learn
    ours, theirs = _fit_both(MLPClassifier, SkC, X, y, **{**kw, "n_iter_no_change": 2})
    assert ours.n_iter_ == theirs.n_iter_ < 12


# ---------------------------------------------------------------------- divergence
def _diverging_regression(rng):
    X = rng.standard_normal((200, 5))
    return X, X @ rng.standard_normal(5) * 10


def test_divergence_under_early_stopping_keeps_the_best_model(rng):
    X, y = _diverging_regression(rng)
    kw = dict(solver="sgd", learning_rate_init=0.2, momentum=0.9, hidden_layer_sizes=(16,),
              early_stopping=True, random_state=0, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = SkR(**kw).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="Training diverged in epoch .* restored"):
        ours = MLPRegressor(**F64, **kw).fit(X, y)
    assert np.isnan(ours.validation_scores_[-1])
    k = len(ours.validation_scores_) - 1
    assert_allclose(ours.validation_scores_[:k], theirs.validation_scores_[:k], rtol=1e-9)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_, rel=1e-9)
    # the best-validation weights scikit-learn restores, and a usable model
    for a, b in zip(ours.coefs_, theirs.coefs_):
        assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert np.all(np.isfinite(ours.predict(X)))


def test_divergence_without_early_stopping_raises_like_sklearn(rng):
    X, y = _diverging_regression(rng)
    kw = dict(solver="sgd", learning_rate_init=0.2, momentum=0.9, hidden_layer_sizes=(16,),
              random_state=0, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
            SkR(**kw).fit(X, y)
    ours = MLPRegressor(**F64, **{**kw, "max_iter": 2}).fit(X, y)  # fine for 2 epochs
    before = [c.copy() for c in ours.coefs_]
    ours.set_params(max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
            ours.fit(X, y)
    for a, b in zip(ours.coefs_, before):  # the weights from before the call are kept
        assert_array_equal(a, b)


# ---------------------------------------------------------------------- single class
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_single_class_classifier(rng, solver):
    X = rng.standard_normal((40, 3))
    y = np.full(40, "only")
    ours, theirs = _fit_both(MLPClassifier, SkC, X, y, solver=solver, max_iter=5,
                             hidden_layer_sizes=(4,), random_state=0)
    assert_array_equal(ours.classes_, theirs.classes_)
    assert_array_equal(ours.predict(X), theirs.predict(X))
    assert ours.predict_proba(X).shape == theirs.predict_proba(X).shape == (40, 2)
    assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-6, atol=1e-9)
    _assert_same_fit(ours, theirs)


# ---------------------------------------------------------------------- errors
def test_stratified_split_with_a_lonely_class_raises_like_sklearn(rng):
    X = rng.standard_normal((50, 3))
    y = np.zeros(50, dtype=int)
    y[0] = 1  # binary: scikit-learn stratifies, and a class has one member
    kw = dict(early_stopping=True, max_iter=3, random_state=0)
    msg = "least populated class(es)? in y ha(s|ve) only 1 member"
    with pytest.raises(ValueError, match=msg) as e1:
        SkC(**kw).fit(X, y)
    with pytest.raises(ValueError, match=msg) as e2:
        MLPClassifier(**F64, **kw).fit(X, y)
    assert type(e1.value) is type(e2.value)


def test_multiclass_early_stopping_split_matches_sklearn(rng):
    """Multiclass is split without stratification, as scikit-learn does."""
    X, y = _digits()
    kw = dict(early_stopping=True, max_iter=4, random_state=0, hidden_layer_sizes=(16,))
    ours, theirs = _fit_both(MLPClassifier, SkC, X[:400], y[:400], **kw)
    assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-12)
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


def test_partial_fit_classes_checked_the_same_every_call(rng):
    X = rng.standard_normal((30, 3))
    y = rng.integers(0, 2, 30)
    for Est in (MLPClassifier, SkC):
        est = Est(max_iter=1, random_state=0)
        est.partial_fit(X, y, classes=[0, 0, 1])  # duplicates: the unique labels count
        est.partial_fit(X, y, classes=[0, 0, 1])
        est.partial_fit(X, y, classes=[1, 0])
        with pytest.raises(ValueError, match="is not the same as on last call to partial_fit"):
            est.partial_fit(X, y, classes=[0, 1, 2])


@pytest.mark.parametrize("Est, kind", [(MLPClassifier, "multiclass"), (MLPRegressor, "poisson")])
def test_lbfgs_on_the_cuda_backend_equals_the_cpu(rng, Est, kind):
    """Both backends' FullBatch give the same lbfgs fit (CUDA in numba's simulator here)."""
    from fastmlp import available_backends

    if "cuda" not in available_backends():  # pragma: no cover - CI has the simulator
        pytest.fail("the CUDA backend (or numba's simulator) is not available")
    X = rng.standard_normal((24, 3))
    if kind == "multiclass":
        y, extra = np.arange(24) % 3, {}
    else:
        y, extra = rng.poisson(np.exp(0.3 * X[:, 0])), {"loss": "poisson"}
    kw = dict(solver="lbfgs", hidden_layer_sizes=(4,), max_iter=4, random_state=0,
              dtype="float64", **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cpu = Est(backend="cpu", **kw).fit(X, y)
        gpu = Est(backend="cuda", **kw).fit(X, y)
    assert gpu.n_iter_ == cpu.n_iter_
    assert gpu.loss_ == pytest.approx(cpu.loss_, rel=1e-10)
    for a, b in zip(gpu.coefs_ + gpu.intercepts_, cpu.coefs_ + cpu.intercepts_):
        assert_allclose(a, b, rtol=1e-8, atol=1e-12)


def test_an_overflowing_loss_trains_on_like_sklearn():
    """Without early stopping a loss that overflows to inf with finite weights does not
    end the fit: both libraries train on to max_iter and report the inf loss."""
    kw = dict(hidden_layer_sizes=(1,), activation="relu", solver="sgd", alpha=1.0,
              batch_size=32, learning_rate_init=1.0, momentum=0.0, shuffle=False,
              max_iter=2, random_state=0)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((40, 3)) * 1e4
        y = X @ rng.standard_normal(3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = SkR(**kw).fit(X, y)
        with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
            ours = MLPRegressor(**F64, **kw).fit(X, y)
        assert np.isinf(theirs.loss_curve_[-1]) and np.isfinite(theirs.loss_curve_[0])
        assert ours.n_iter_ == theirs.n_iter_ == 2
        assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
        for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
            assert np.all(np.isfinite(a))
            assert_allclose(a, b, rtol=1e-9)
