"""Sparse input: the first layer multiplies CSR rows directly, and equals the dense path.

Every path that takes X (the compiled epoch of sgd / adam, lbfgs's full-batch
sums, predict / predict_proba / score, partial_fit, early stopping's
validation) is fitted on a sparse matrix and on its dense twin, in float64;
the loss curves, weights and predictions agree to rounding (the sums over a
row's non-zeros and over its dense entries add the same products in another
order).  Hypothesis draws sparsity patterns and formats (CSR / CSC / COO,
matrices and arrays, int32 / int64 indices, unsorted and duplicate entries,
empty rows and columns); the user's matrix is never modified.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from fastmlp import MLPClassifier, MLPRegressor, _config
from fastmlp._solvers import densify
from fastmlp.backends import get_backend

RTOL, ATOL = 1e-9, 1e-11  # float64, sums in another order


def _csr(rng, n, d, density):
    """A random CSR matrix of standard-normal values, with an empty row and column."""
    X = sp.random(n, d, density=density, format="csr", random_state=rng,
                  data_rvs=rng.standard_normal)
    X = X.tolil()
    X[1, :] = 0.0
    X[:, 2] = 0.0
    X = X.tocsr()
    X.eliminate_zeros()
    return X


def _targets(rng, X, output):
    w = rng.standard_normal((X.shape[1], 3))
    s = X @ w + 0.3 * rng.standard_normal((X.shape[0], 3))
    if output == "softmax":
        return s.argmax(axis=1)
    if output == "logistic":
        return (s[:, 0] > 0).astype(int)
    if output == "multilabel":
        Y = (s > 0).astype(int)
        Y[0], Y[1] = 0, 1  # every label seen both ways
        return Y
    return s[:, :2]  # regression, two outputs


def _make(output, **params):
    base = dict(hidden_layer_sizes=(7, 5), dtype="float64", random_state=0, max_iter=4,
                batch_size=16, learning_rate_init=0.01, backend="cpu", tol=0.0)
    base.update(params)
    return MLPRegressor(**base) if output == "regression" else MLPClassifier(**base)


def _outputs(est, X):
    if isinstance(est, MLPClassifier):
        return est.predict_proba(X)
    return est.predict(X)


def _assert_same_fit(dense, sparse, Xd, Xs):
    assert dense.n_iter_ == sparse.n_iter_
    if hasattr(dense, "loss_curve_"):
        assert_allclose(sparse.loss_curve_, dense.loss_curve_, rtol=RTOL, atol=ATOL)
    assert_allclose(sparse.loss_, dense.loss_, rtol=RTOL, atol=ATOL)
    for a, b in zip(dense.coefs_ + dense.intercepts_, sparse.coefs_ + sparse.intercepts_):
        assert_allclose(b, a, rtol=RTOL, atol=ATOL)
    for a, b in zip(getattr(dense, "prelu_alphas_", None) or [],
                    getattr(sparse, "prelu_alphas_", None) or []):
        assert_allclose(b, a, rtol=RTOL, atol=ATOL)
    P = _outputs(sparse, Xs)
    assert_allclose(P, _outputs(dense, Xd), rtol=RTOL, atol=ATOL)
    # a fitted model predicts a sparse X as its dense twin, whichever way it was fitted
    assert_allclose(_outputs(dense, Xs), P, rtol=RTOL, atol=ATOL)
    assert_allclose(sparse.score(Xs, _score_y(sparse, Xd, dense)),
                    dense.score(Xd, _score_y(sparse, Xd, dense)), rtol=RTOL, atol=ATOL)


def _score_y(sparse, Xd, dense):
    return dense.predict(Xd)[::-1].copy()  # any targets of the right kind


def _fit_both(rng, output, n=70, d=40, density=0.08, sample_weight=False, **params):
    X = _csr(rng, n, d, density)
    y = _targets(rng, X, output)
    assert not densify(get_backend("cpu"), X)  # the CSR kernels run, not the dense rows
    sw = rng.uniform(0.2, 2.0, n) if sample_weight else None
    dense = _make(output, **params).fit(X.toarray(), y, sample_weight=sw)
    sparse = _make(output, **params).fit(X, y, sample_weight=sw)
    _assert_same_fit(dense, sparse, X.toarray(), X)
    return dense, sparse, X, y


OUTPUTS = ["softmax", "logistic", "multilabel", "regression"]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_sparse_fit_equals_dense_fit(rng, solver, output):
    _fit_both(rng, output, solver=solver)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("activation, solver, output", [
    ("tanh", "sgd", "logistic"),
    ("prelu", "adam", "softmax"),
    ("prelu", "lbfgs", "regression"),
    ("maxout", "adam", "multilabel"),
    ("maxout", "lbfgs", "softmax"),
])
def test_every_activation_family(rng, activation, solver, output):
    _fit_both(rng, output, solver=solver, activation=activation)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver, output", [("adam", "softmax"), ("sgd", "regression"),
                                            ("lbfgs", "logistic")])
def test_sample_weights(rng, solver, output):
    _fit_both(rng, output, solver=solver, sample_weight=True)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("output", ["softmax", "regression"])
def test_early_stopping_validates_on_sparse_rows(rng, output):
    dense, sparse, _, _ = _fit_both(rng, output, n=90, solver="adam", early_stopping=True,
                                    validation_fraction=0.2, max_iter=5)
    assert_allclose(sparse.validation_scores_, dense.validation_scores_, rtol=RTOL, atol=ATOL)
    assert_allclose(sparse.validation_loss_curve_, dense.validation_loss_curve_, rtol=RTOL,
                    atol=ATOL)


@pytest.mark.parametrize("output", ["softmax", "regression"])
def test_partial_fit(rng, output):
    X = _csr(rng, 60, 30, 0.1)
    y = _targets(rng, X, output)
    dense, sparse = _make(output, solver="sgd"), _make(output, solver="sgd")
    kw = {"classes": np.unique(y)} if output == "softmax" else {}
    for part in (slice(0, 25), slice(25, 60), slice(0, 60)):
        dense.partial_fit(X[part].toarray(), y[part], **kw)
        sparse.partial_fit(X[part], y[part], **kw)
    _assert_same_fit(dense, sparse, X.toarray(), X)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_densified_chunks_equal_the_csr_kernels(rng, config, solver):
    """Above _config.SPARSE_DENSIFY_ABOVE a sparse X is densified a chunk of rows at a
    time (BLAS); both routes give the same model, to rounding."""
    X = _csr(rng, 50, 20, 0.2)
    y = _targets(rng, X, "softmax")
    config(SPARSE_DENSIFY_ABOVE=1.0)
    on_csr = _make("softmax", solver=solver).fit(X, y)
    P = on_csr.predict_proba(X)
    config(SPARSE_DENSIFY_ABOVE=0.0)
    assert densify(get_backend("cpu"), X)
    densified = _make("softmax", solver=solver).fit(X, y)
    _assert_same_fit(densified, on_csr, X.toarray(), X)
    assert_allclose(on_csr.predict_proba(X), P, rtol=RTOL, atol=ATOL)


def _as_format(X, fmt, index_dtype, messy, rng):
    """X in a format, with its index arrays of a dtype; ``messy``: the entries of each
    row shuffled and some split into duplicates that add up to the same matrix."""
    C = X.tocoo()
    r, c, v = C.row, C.col, C.data
    if messy and v.size:
        k = rng.choice(v.size, max(1, v.size // 3), replace=False)
        part = rng.uniform(0.2, 0.8, k.size)
        split = v[k] * part
        v = v.copy()
        v[k] -= split
        r, c, v = np.r_[r, r[k]], np.r_[c, c[k]], np.r_[v, split]
        p = rng.permutation(v.size)
        r, c, v = r[p], c[p], v[p]
    if fmt in ("csr", "csr_array") and messy:
        # build CSR arrays by hand: rows in order, entries within a row unsorted, duplicates kept
        order = np.argsort(r, kind="stable")
        indptr = np.searchsorted(r[order], np.arange(X.shape[0] + 1))
        cls = sp.csr_array if fmt == "csr_array" else sp.csr_matrix
        out = cls((v[order], c[order].astype(index_dtype), indptr.astype(index_dtype)),
                  shape=X.shape)
        return out
    coo = sp.coo_matrix((v, (r.astype(index_dtype), c.astype(index_dtype))), shape=X.shape)
    if fmt == "coo":
        return coo
    out = {"csr": coo.tocsr, "csc": coo.tocsc, "csr_array": lambda: sp.csr_array(coo.tocsr())}[
        fmt]()
    out.indices = out.indices.astype(index_dtype)
    out.indptr = out.indptr.astype(index_dtype)
    return out


def _snapshot(X):
    if sp.isspmatrix_coo(X) or getattr(X, "format", None) == "coo":
        return [a.copy() for a in (X.data, X.row, X.col)], X.format
    return [a.copy() for a in (X.data, X.indices, X.indptr)], X.format


def _unchanged(X, snap):
    arrays, fmt = snap
    now = (X.data, X.row, X.col) if fmt == "coo" else (X.data, X.indices, X.indptr)
    assert X.format == fmt
    for a, b in zip(now, arrays):
        assert a.dtype == b.dtype
        assert_array_equal(a, b)


@pytest.fixture(scope="module")
def fitted():
    """A float64 and a float32 model of 25 features (fitted once for the hypothesis tests)."""
    r = np.random.default_rng(7)
    X = r.standard_normal((80, 25))
    y = r.integers(0, 3, 80)
    kw = dict(hidden_layer_sizes=(6,), max_iter=3, random_state=0, backend="cpu")
    return {dt: MLPClassifier(dtype=dt, **kw).fit(X, y) for dt in ("float64", "float32")}


FORMATS = ["csr", "csr_array", "csc", "coo"]


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 40), density=st.sampled_from([0.0, 0.02, 0.1, 0.5, 1.0]),
       fmt=st.sampled_from(FORMATS), index_dtype=st.sampled_from([np.int32, np.int64]),
       messy=st.booleans(), seed=st.integers(0, 2**16), chunk=st.integers(1, 50))
def test_predict_any_sparse_input(fitted, n, density, fmt, index_dtype, messy, seed, chunk):
    rng = np.random.default_rng(seed)
    X = sp.random(n, 25, density=density, format="csr", random_state=rng,
                  data_rvs=rng.standard_normal)
    Xs = _as_format(X, fmt, index_dtype, messy, rng)
    snap = _snapshot(Xs)
    dense = X.toarray()
    with _config.override(PREDICT_CHUNK_ROWS=chunk):
        for dt, est in fitted.items():
            tol = dict(rtol=RTOL, atol=ATOL) if dt == "float64" else dict(rtol=1e-5, atol=1e-6)
            assert_allclose(est.predict_proba(Xs), est.predict_proba(dense), **tol)
    _unchanged(Xs, snap)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@settings(max_examples=12, deadline=None, derandomize=True)
@given(n=st.integers(12, 40), d=st.integers(1, 30), density=st.sampled_from([0.03, 0.1]),
       fmt=st.sampled_from(FORMATS), index_dtype=st.sampled_from([np.int32, np.int64]),
       messy=st.booleans(), solver=st.sampled_from(["adam", "lbfgs"]),
       seed=st.integers(0, 2**16))
def test_fit_any_sparse_input(n, d, density, fmt, index_dtype, messy, solver, seed):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, format="csr", random_state=rng,
                  data_rvs=rng.standard_normal)
    y = np.arange(n) % 2
    Xs = _as_format(X, fmt, index_dtype, messy, rng)
    snap = _snapshot(Xs)
    kw = dict(hidden_layer_sizes=(4,), dtype="float64", random_state=0, max_iter=3,
              batch_size=8, solver=solver, backend="cpu", tol=0.0)
    dense = MLPClassifier(**kw).fit(X.toarray(), y)
    sparse = MLPClassifier(**kw).fit(Xs, y)
    _unchanged(Xs, snap)
    for a, b in zip(dense.coefs_ + dense.intercepts_, sparse.coefs_ + sparse.intercepts_):
        assert_allclose(b, a, rtol=RTOL, atol=ATOL)
    assert_allclose(sparse.predict_proba(Xs), dense.predict_proba(X.toarray()), rtol=RTOL,
                    atol=ATOL)
    _unchanged(Xs, snap)


def test_user_matrix_with_duplicates_is_not_modified(rng):
    X = _csr(rng, 40, 20, 0.2)
    messy = _as_format(X, "csr", np.int64, True, rng)
    assert not messy.has_canonical_format
    snap = _snapshot(messy)
    y = rng.integers(0, 2, 40)
    clf = _make("logistic", solver="adam").fit(messy, y)
    clf.predict_proba(messy)
    _unchanged(messy, snap)
    assert not messy.has_canonical_format
    assert_allclose(clf.predict_proba(messy), clf.predict_proba(X.toarray()), rtol=RTOL,
                    atol=ATOL)


def test_float32_model_on_sparse_float64(rng):
    X = _csr(rng, 60, 30, 0.1)
    y = rng.integers(0, 3, 60)
    kw = dict(hidden_layer_sizes=(8,), random_state=0, max_iter=3, backend="cpu")
    a = MLPClassifier(**kw).fit(X, y)
    b = MLPClassifier(**kw).fit(X.toarray(), y)
    for u, v in zip(a.coefs_, b.coefs_):
        assert u.dtype == np.float32
        assert_allclose(u, v, rtol=1e-4, atol=1e-5)
    assert_allclose(a.predict_proba(X), b.predict_proba(X.toarray()), rtol=1e-4, atol=1e-5)
    bad = X.copy()
    bad.data[0] = 1e39
    with pytest.raises(ValueError, match="beyond the range of float32"):
        a.predict(bad)
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        a.predict(bad)


def test_wrong_width_is_an_error(rng):
    X = _csr(rng, 30, 12, 0.2)
    y = rng.integers(0, 2, 30)
    clf = _make("logistic").fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(_csr(rng, 5, 13, 0.2))


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("n", [2, 3, 41])
def test_predict_split_between_threads(rng, config, monkeypatch, n, threads):
    """A CSR predict of many non-zeros runs consecutive row ranges in several threads
    (_config.CPU_SPLIT_PREDICT_MIN_NNZ, CPU_THREADS): the numbers of one thread, to
    rounding."""
    X = _csr(rng, 60, 30, 0.1)
    y = rng.integers(0, 3, 60)
    clf = _make("softmax", activation="maxout").fit(X, y)
    Xp = _csr(rng, n, 30, 0.2)
    config(CPU_SPLIT_PREDICT_MIN_NNZ=10**12, PREDICT_CHUNK_ROWS=4)
    one = clf.predict_proba(Xp)
    config(CPU_SPLIT_PREDICT_MIN_NNZ=0, CPU_THREADS=threads)  # (BLAS may round rows of
    # other chunk shapes apart)
    from fastmlp.backends import cpu

    calls = []
    real = cpu.predict_csr
    monkeypatch.setattr(cpu, "predict_csr", lambda S, *a: calls.append(S[2].shape[0] - 1)
                        or real(S, *a))
    assert_allclose(clf.predict_proba(Xp), one, rtol=RTOL, atol=ATOL)
    if cpu.sync.SPLIT:  # the row ranges, one a thread
        assert sorted(calls) == sorted(n * (i + 1) // min(threads, n) - n * i // min(threads, n)
                                       for i in range(min(threads, n)))
    assert_allclose(one, clf.predict_proba(Xp.toarray()), rtol=RTOL, atol=ATOL)
