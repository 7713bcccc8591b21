"""The CUDA backend on a CSR matrix X (``fastmlp/backends/cuda/sparse.py``, issue 24 item 2).

The sparse first layer must give the model of the same rows dense, on the CUDA backend
(its tiled GEMM phases) and on the CPU (its own CSR kernels): float64, to rounding.
Fresh random matrices each test: empty rows and empty columns, unsorted indices, int32
and int64 index arrays; every activation family's first layer (a fused act' and a
separate hidden backward phase), softmax / logistic / identity outputs, sgd, Nesterov
and Adam, sample weights, the full-batch sums of lbfgs, predict in chunks, both drivers
and grids of several blocks (3 x 3 thread blocks, at most 3 blocks, as tests/test_cuda.py
runs them in numba's simulator).
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import numba.cuda  # noqa: F401  (numba-cuda is in the test extra)
import fastmlp.backends.cuda as cb

from fastmlp import MLPClassifier, MLPRegressor, _config
from fastmlp._registry import ADAM, OUTPUTS, SGD
from fastmlp._solvers import densify
from fastmlp.backends import cpu as cpu_backend
from fastmlp.backends.cuda import _common, train as g_train
from fastmlp.backends.layout import ADAM_T

# the dense CUDA tests' helpers, and their tiny launches (an autouse fixture, used here too)
try:
    from test_cuda import _opt, _rel, _spec, _theta, tiny_launches  # noqa: F401
except ImportError:  # pragma: no cover - tests/ as a package
    from tests.test_cuda import _opt, _rel, _spec, _theta, tiny_launches  # noqa: F401

if not cb.is_available():  # pragma: no cover - only without simulator and GPU
    pytest.skip(f"CUDA backend unavailable: {cb.unavailable_reason()}", allow_module_level=True)

TOL = 1e-10


def _driver(config, monkeypatch, name):
    config(CUDA_EPOCH_DRIVER=name)
    monkeypatch.setattr(g_train, "_FALLBACK_REASON", [])


def _csr(rng, n, d, index_dtype=np.int32, density=0.3, dtype=np.float64, empty_rows=None):
    """A random n x d CSR matrix: some rows and columns empty, each row's indices in a
    random order, index arrays of ``index_dtype``."""
    M = rng.normal(size=(n, d)) * (rng.uniform(size=(n, d)) < density)
    rows = rng.choice(n, 2, replace=False) if empty_rows is None else empty_rows
    M[rows] = 0
    M[:, rng.choice(d, 2, replace=False)] = 0
    S = sp.csr_matrix(M)
    data, indices = S.data.copy(), S.indices.copy()
    for r in range(n):
        a, b = S.indptr[r], S.indptr[r + 1]
        p = rng.permutation(b - a)
        data[a:b], indices[a:b] = data[a:b][p], indices[a:b][p]
    X = sp.csr_matrix((data.astype(dtype), indices, S.indptr.copy()), shape=(n, d))
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    assert X.indices.dtype == index_dtype and X.nnz > 0
    return X


def _problem(rng, act, out, n, d, hidden, weighted, index_dtype=np.int32):
    binary = out == "logistic-binary"
    out_code = OUTPUTS["logistic" if binary else out]
    k = 1 if binary else 3
    spec = _spec(act, out_code, n_features=d, hidden=hidden, n_out=k)
    X = _csr(rng, n, d, index_dtype)
    if out_code == OUTPUTS["softmax"]:
        Y, y = np.zeros((0, k)), rng.integers(0, k, n).astype(np.int64)
    elif out_code == OUTPUTS["logistic"]:
        Y, y = rng.integers(0, 2, (n, k)).astype(np.float64), np.zeros(0, np.int64)
    else:
        Y, y = rng.normal(size=(n, k)), np.zeros(0, np.int64)
    sw = rng.uniform(0.2, 2.0, n) if weighted else np.zeros(0)
    return spec, X, Y, y, sw


def _train(be, spec, X, Y, y, sw, theta, solver, nesterov, cap, alpha, orders):
    th = theta.copy()
    opt = _opt(th, solver, nesterov)
    tr = be.Trainer(spec, X, Y, y, sw, cap, th, opt, alpha)
    losses = [tr.epoch(o) for o in orders]
    return losses, tr.finish().copy(), opt, tr


# --------------------------------------------------------------------------- the schedule


def test_csr_schedule_replaces_the_first_layers_phases():
    spec = _spec("maxout", 0, n_features=7, hidden=(4, 3), n_out=2)
    dense = g_train.schedule(spec.layers, spec.code, True)
    csr = g_train.schedule(spec.layers, spec.code, True, sparse=True)
    assert len(csr) == len(dense)
    changed = [(tuple(a), tuple(b)) for a, b in zip(dense, csr) if tuple(a) != tuple(b)]
    assert changed == [((g_train.FORWARD, 0), (g_train.CSR_FORWARD, 0)),
                       ((g_train.BACKWARD, 0), (g_train.CSR_BACKWARD, 0))]
    pred = g_train.schedule(spec.layers, spec.code, False, sparse=True)
    assert [tuple(r) for r in pred][0] == (g_train.CSR_FORWARD, 0)
    blocks = g_train.phase_blocks(spec.layers, csr, 10, 0, 2, spec.n_params, 3, 2)
    assert len(blocks) == len(csr) and min(blocks) >= 1
    kinds = [int(k) for k, _ in csr]
    # a thread per output element; a thread per (feature group, column) of dW
    assert blocks[kinds.index(g_train.CSR_FORWARD)] == -(-10 * 12 // 9)
    assert blocks[kinds.index(g_train.CSR_BACKWARD)] == -(-12 * 7 // 9)
    assert blocks[kinds.index(g_train.GATHER)] == -(-10 * 2 // 9)  # Y only, no X columns


def test_cuda_backend_takes_csr_below_the_densify_threshold(rng):
    assert cb.TAKES_CSR is True
    X = _csr(rng, 20, 10, density=0.1)
    assert not densify(cb, X)
    with _config.override(SPARSE_DENSIFY_ABOVE=0.01):
        assert densify(cb, X)  # dense-ish: dense rows, a chunk at a time, as on the CPU


# --------------------------------------------------------------------------- training epochs

# (activation, output, solver, weighted, driver, index dtype, hidden): relu / tanh fuse act'
# into the GEMM; maxout and prelu have a phase of their own (HIDDEN_BWD) before layer 0's
# backward; classifier outputs (softmax, logistic) and the regressor's (identity)
EPOCHS = [
    ("relu", "softmax", "adam", True, "persistent", np.int32, (5, 4)),
    ("tanh", "identity", "nesterov", False, "launches", np.int64, (5,)),
    ("maxout", "logistic", "adam", True, "persistent", np.int64, (4, 3)),
    ("prelu", "softmax", "sgd", True, "persistent", np.int64, (5,)),
    ("maxout", "identity", "sgd", False, "persistent", np.int32, (4,)),
    ("prelu", "logistic-binary", "adam", False, "launches", np.int32, (4, 3)),
    ("identity", "identity", "adam", True, "launches", np.int64, ()),  # no hidden layer
]


@pytest.mark.parametrize("act,out,solver,weighted,driver,itype,hidden", EPOCHS)
def test_csr_epochs_equal_dense_and_cpu(rng, monkeypatch, config, act, out, solver, weighted,
                                        driver, itype, hidden):
    _driver(config, monkeypatch, driver)
    n, d, cap = 14, 11, 5
    spec, X, Y, y, sw = _problem(rng, act, out, n, d, hidden, weighted, itype)
    theta = _theta(spec, rng)
    code = ADAM if solver == "adam" else SGD
    orders = [rng.permutation(n) for _ in range(2)]
    args = (Y, y, sw, theta, code, solver == "nesterov", cap, 0.02, orders)
    saved = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    g_loss, g_theta, g_opt, g_tr = _train(cb, spec, X, *args)
    assert g_tr.last_driver == driver and g_tr.prog.sparse
    d_loss, d_theta, d_opt, d_tr = _train(cb, spec, X.toarray(), *args)
    assert not d_tr.prog.sparse
    c_loss, c_theta, c_opt, _ = _train(cpu_backend, spec, X, *args)
    for other_loss, other_theta, other_opt in ((d_loss, d_theta, d_opt),
                                               (c_loss, c_theta, c_opt)):
        assert _rel(other_loss, g_loss) < TOL
        assert _rel(other_theta, g_theta) < TOL
        assert _rel(other_opt.state1, g_opt.state1) < TOL
        if code == ADAM:
            assert _rel(other_opt.state2, g_opt.state2) < TOL
        assert other_opt.hyper[ADAM_T] == g_opt.hyper[ADAM_T]
    for a, b in zip(saved, (X.data, X.indices, X.indptr)):  # only read
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("act", ["relu", "maxout"])
def test_csr_gradient_is_the_same_on_any_grid(rng, monkeypatch, config, act):
    """The sparse weight gradient has no atomics: the model is bitwise the same on one
    block and on three (other feature groups), and with the persistent kernel."""
    spec, X, Y, y, sw = _problem(rng, act, "softmax", 10, 9, (3,), True)
    theta = _theta(spec, rng)
    orders = [rng.permutation(10)]
    runs = []
    for driver, blocks in (("launches", 1), ("launches", 3), ("persistent", 3)):
        _driver(config, monkeypatch, driver)
        monkeypatch.setattr(_common, "MAX_BLOCKS", blocks)
        runs.append(_train(cb, spec, X, Y, y, sw, theta, ADAM, False, 4, 0.05, orders)[:2])
    for loss, th in runs[1:]:
        assert np.array_equal(th, runs[0][1])
        assert loss[0] == pytest.approx(runs[0][0][0], rel=1e-13)


def test_float32_csr_epoch_close_to_dense(rng, monkeypatch, config):
    _driver(config, monkeypatch, "persistent")
    spec = _spec("tanh", OUTPUTS["softmax"], np.float32, n_features=10, hidden=(4,))
    X = _csr(rng, 12, 10, dtype=np.float32)
    y = rng.integers(0, 3, 12).astype(np.int64)
    Y, sw = np.zeros((0, 3), np.float32), np.zeros(0, np.float32)
    theta = _theta(spec, rng)
    args = (Y, y, sw, theta, ADAM, False, 5, 1e-3, [np.arange(12)])
    s_loss, s_theta, _, _ = _train(cb, spec, X, *args)
    d_loss, d_theta, _, _ = _train(cb, spec, X.toarray(), *args)
    assert s_theta.dtype == np.float32
    assert s_loss[0] == pytest.approx(d_loss[0], rel=1e-5)
    np.testing.assert_allclose(s_theta, d_theta, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- lbfgs, predict


@pytest.mark.parametrize("act,out,weighted,itype,driver", [
    ("maxout", "softmax", True, np.int64, "persistent"),
    ("tanh", "identity", False, np.int32, "launches"),
    ("prelu", "logistic", True, np.int32, "persistent"),
    ("relu", "softmax", False, np.int64, "launches"),
])
def test_csr_full_batch_sums_and_loss_grad(rng, monkeypatch, config, act, out, weighted, itype,
                                           driver):
    _driver(config, monkeypatch, driver)
    config(FULL_BATCH_CHUNK_ROWS=4)  # 11 rows: chunks 4, 4, 3 (contiguous row ranges)
    spec, X, Y, y, sw = _problem(rng, act, out, 11, 8, (4,), weighted, itype)
    theta = _theta(spec, rng)
    grads = {}
    losses = {}
    for name, be, XX in (("csr", cb, X), ("dense", cb, X.toarray()), ("cpu", cpu_backend, X)):
        g = np.full_like(theta, np.nan)
        fb = be.FullBatch(spec, XX, Y, y, sw)
        fb(theta * 0.5, g)  # a second call reuses the device data
        losses[name] = fb(theta, g)
        grads[name] = g
    for other in ("dense", "cpu"):
        assert losses[other] == pytest.approx(losses["csr"], rel=TOL)
        assert _rel(grads[other], grads["csr"]) < TOL
    loss_s, grad_s = cb.loss_grad(spec, theta, X, Y, y, sw, 0.03)
    loss_d, grad_d = cb.loss_grad(spec, theta, X.toarray(), Y, y, sw, 0.03)
    assert loss_s == pytest.approx(loss_d, rel=TOL) and _rel(grad_d, grad_s) < TOL


@pytest.mark.parametrize("driver", ["persistent", "launches"])
@pytest.mark.parametrize("act,out", [("relu", "softmax"), ("maxout", "logistic"),
                                     ("prelu", "identity")])
def test_csr_predict_in_chunks(rng, monkeypatch, config, driver, act, out):
    _driver(config, monkeypatch, driver)
    config(PREDICT_CHUNK_ROWS=4)  # 14 rows: 4, 4, 4, 2; the second chunk has no non-zero
    spec = _spec(act, OUTPUTS[out], n_features=9, hidden=(5, 3))
    theta = _theta(spec, rng)
    X = _csr(rng, 14, 9, np.int64, empty_rows=[4, 5, 6, 7])
    for apply_out in (False, True):
        got = cb.predict(spec, theta, X, apply_out)
        assert got.shape == (14, 3) and got.dtype == np.float64
        assert _rel(cb.predict(spec, theta, X.toarray(), apply_out), got) < TOL
        assert _rel(cpu_backend.predict(spec, theta, X, apply_out), got) < TOL
    # no non-zero at all: every row is the network of a zero input
    Z = sp.csr_matrix((5, 9))
    assert _rel(cb.predict(spec, theta, np.zeros((5, 9)), True),
                cb.predict(spec, theta, Z, True)) < TOL


# --------------------------------------------------------------------------- estimators


def _messy_user_matrix(rng, n, d):
    """A user's CSR matrix with int64 indices, unsorted and duplicate entries."""
    X = _csr(rng, n, d, np.int64, density=0.2)
    rows = np.repeat(np.arange(n), np.diff(X.indptr))
    # duplicate the first entry of each non-empty row, split in two halves
    first = X.indptr[:-1][np.diff(X.indptr) > 0]
    data = np.concatenate([X.data, X.data[first] * 0.5])
    data[first] *= 0.5
    cols = np.concatenate([X.indices, X.indices[first]])
    r = np.concatenate([rows, rows[first]])
    order = np.argsort(r, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=n))])
    M = sp.csr_matrix((data[order], cols[order], indptr), shape=(n, d))
    M.indices, M.indptr = M.indices.astype(np.int64), M.indptr.astype(np.int64)
    assert not M.has_canonical_format
    return M


def test_classifier_on_csr_equals_dense_and_leaves_the_matrix_alone(rng, monkeypatch, config):
    _driver(config, monkeypatch, "persistent")
    X = _messy_user_matrix(rng, 30, 12)
    y = rng.integers(0, 3, 30)
    sw = rng.uniform(0.5, 2.0, 30)
    saved = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    kw = dict(hidden_layer_sizes=(5,), batch_size=8, max_iter=2, random_state=0,
              dtype="float64", tol=0.0, n_iter_no_change=100, backend="cuda",
              learning_rate_init=0.01, activation="relu", early_stopping=True,
              validation_fraction=0.2)
    given = []  # what the backend was handed: CSR, not densified rows
    for name in ("Trainer", "predict"):
        real = getattr(cb, name)
        monkeypatch.setattr(cb, name, lambda spec, *args, _r=real, _n=name, **kw: (
            given.append((_n, sp.issparse(args[0] if _n == "Trainer" else args[1])))
            or _r(spec, *args, **kw)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = MLPClassifier(**kw).fit(X, y, sample_weight=sw)
        assert given == [("Trainer", True), ("predict", True), ("predict", True)]
        b = MLPClassifier(**kw).fit(X.toarray(), y, sample_weight=sw)
    for x, z in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert _rel(z, x) < TOL
    assert _rel(b.loss_curve_, a.loss_curve_) < TOL
    assert len(a.validation_scores_) == 2  # the held-out CSR rows, predicted as CSR
    np.testing.assert_allclose(a.validation_scores_, b.validation_scores_, rtol=1e-12)
    assert _rel(b.predict_proba(X.toarray()), a.predict_proba(X)) < TOL
    np.testing.assert_array_equal(a.predict(X), b.predict(X.toarray()))
    for before, after in zip(saved, (X.data, X.indices, X.indptr)):
        assert before.dtype == after.dtype and np.array_equal(before, after)
    assert not X.has_canonical_format


def test_lbfgs_regressor_on_csr_equals_dense(rng, monkeypatch, config):
    _driver(config, monkeypatch, "persistent")
    X = _csr(rng, 20, 10, np.int32, density=0.2)
    y = rng.normal(size=20)
    kw = dict(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=4, random_state=0,
              dtype="float64", backend="cuda", activation="maxout")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = MLPRegressor(**kw).fit(X, y)
        b = MLPRegressor(**kw).fit(X.toarray(), y)
    for x, z in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert _rel(z, x) < 1e-8  # a few L-BFGS iterations amplify the last bits
    assert _rel(b.predict(X.toarray()), a.predict(X)) < 1e-8


def test_partial_fit_on_csr_equals_dense(rng, monkeypatch, config):
    _driver(config, monkeypatch, "launches")
    X = _csr(rng, 24, 10, np.int64, density=0.2)
    y = rng.integers(0, 3, 24)
    models = []
    for XX in (X, X.toarray()):
        m = MLPClassifier(hidden_layer_sizes=(4,), batch_size=8, random_state=0,
                          dtype="float64", backend="cuda", activation="tanh")
        m.partial_fit(XX[:12], y[:12], classes=[0, 1, 2])
        m.partial_fit(XX[12:], y[12:])
        models.append(m)
    a, b = models
    for x, z in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert _rel(z, x) < TOL
    assert _rel(b.loss_curve_, a.loss_curve_) < TOL
