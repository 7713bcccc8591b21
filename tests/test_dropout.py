"""Dropout (issue 31): masks drawn inside the kernels from a counter-based hash.

What is checked:

- the parameter: validation, get_params / clone / set_params, lbfgs refused, rate 0 is
  the old code path bit for bit;
- the generator: a NumPy reimplementation of the hash (written here, from the
  published constants) gives the kernels' masks; keep rates within binomial bounds
  overall, per unit and per row; no correlation between neighbouring units, rows,
  layers or epochs;
- the gradient with a fixed mask equals finite differences of a NumPy loss that
  applies the same masks (every activation family, prelu and maxout included);
- a row's mask depends on (seed, epoch, row index in the data, layer, unit) only: not
  on batch_size, the row order, the split of a batch into halves or the thread count;
- whole fits: CPU and the CUDA backend (numba's simulator) give the same weights to
  rounding in float64, both drivers; partial_fit and warm_start go on with new masks
  (the epoch counter advances: two partial_fit calls equal one fit of two epochs);
  early stopping, sparse input (CSR and densified chunks), pickle and skops.
"""

import pickle
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from fastmlp import MLPClassifier, MLPRegressor, _config
from fastmlp._registry import OUTPUTS, SGD
from fastmlp.backends import cpu, scalar
from fastmlp.backends.cpu.activations import dropout_forward
from fastmlp.backends.layout import Dropout, OptimizerState, make_layout, unpack

try:  # tests/ is a rootdir-relative path entry, not a package
    import reference as ref
except ImportError:  # pragma: no cover
    from tests import reference as ref

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# ------------------------------------------------------------------ a NumPy twin of the hash
_M = np.uint64(0xFFFFFFFF)


def _np_mix(x):
    """lowbias32 ([16 21f0aaad 15 735a2d97 15]) on uint64 arrays holding 32-bit values."""
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x21F0AAAD)) & _M
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(0x735A2D97)) & _M
    return x ^ (x >> np.uint64(15))


def np_keep(seed, epoch, layer, rows, units, rate):
    """(len(rows), units) bool: the kept units, computed in NumPy from the definition."""
    key = _np_mix(_np_mix(np.uint64(seed) & _M) ^ (np.uint64(epoch) & _M))
    lk = _np_mix((key + np.uint64(layer)) & _M)
    rk = _np_mix(lk ^ (np.asarray(rows, dtype=np.uint64) & _M))
    u = np.arange(units, dtype=np.uint64)
    bits = _np_mix((rk[:, None] + u[None, :] * np.uint64(0x9E3779B9)) & _M)
    thr = min(1 << 32, int(round((1.0 - rate) * 2.0 ** 32)))
    return bits < np.uint64(thr) if thr < (1 << 32) else np.ones(bits.shape, dtype=bool)


def kernel_mask(seed, epoch, layer, rows, units, rate, dtype=np.float64):
    """The CPU kernel's dropout of an all-ones H: 1 / (1 - rate) where kept, 0 elsewhere."""
    drop = Dropout((rate,), seed)
    spec = make_layout(3, (units,), 2, "relu", 0.0, 2, OUTPUTS["softmax"], dtype)
    thr, fl = drop.arrays(spec)
    H = np.ones((len(rows), units), dtype=dtype)
    dropout_forward(H, np.ascontiguousarray(rows, dtype=np.int64), drop.key(epoch), layer,
                    thr[0], fl[0, 0])
    return H


def test_kernel_masks_are_the_numpy_definition(rng):
    rows = rng.integers(0, 2 ** 40, 300)  # row indices beyond 2^32 are hashed too
    cases = ((0, 0, 0, 0.5), (12345, 7, 2, 0.2), (2 ** 31 - 2, 999, 5, 0.9))
    for seed, epoch, layer, rate in cases:
        H = kernel_mask(seed, epoch, layer, rows, 37, rate)
        keep = np_keep(seed, epoch, layer, rows, 37, rate)
        np.testing.assert_array_equal(H != 0, keep)
        np.testing.assert_array_equal(H[keep], 1.0 / (1.0 - rate))
        # the scalar function both backends compile, called as Python
        key = scalar.dropout_key(seed, epoch)
        thr = int(round((1.0 - rate) * 2.0 ** 32))
        for i in (0, 17, 299):
            for j in (0, 36):
                assert scalar.dropout_keep(key, layer, int(rows[i]), j, thr) == keep[i, j]


# ------------------------------------------------------------------ the generator's statistics
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_keep_rate_within_binomial_bounds(rate):
    n, units = 4000, 256
    keep = kernel_mask(2024, 3, 1, np.arange(n), units, rate) != 0
    p = 1.0 - rate
    sd = np.sqrt(p * (1 - p) / keep.size)
    assert abs(keep.mean() - p) < 5 * sd, keep.mean()
    # per unit (over the rows) and per row (over the units)
    assert np.all(np.abs(keep.mean(axis=0) - p) < 5 * np.sqrt(p * (1 - p) / n))
    assert np.all(np.abs(keep.mean(axis=1) - p) < 5 * np.sqrt(p * (1 - p) / units))


def _corr(a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def test_no_correlation_between_neighbours():
    n, units, rate = 3000, 128, 0.5
    keep = kernel_mask(7, 0, 0, np.arange(n), units, rate) != 0
    bound = 5 / np.sqrt(n * units)
    assert abs(_corr(keep[:, :-1], keep[:, 1:])) < bound  # neighbouring units
    assert abs(_corr(keep[:-1], keep[1:])) < bound  # neighbouring rows
    assert abs(_corr(keep[:-1, :-1], keep[1:, 1:])) < bound  # the diagonal
    # the next epoch, the next layer, the next seed: fresh masks
    for other in (kernel_mask(7, 1, 0, np.arange(n), units, rate),
                  kernel_mask(7, 0, 1, np.arange(n), units, rate),
                  kernel_mask(8, 0, 0, np.arange(n), units, rate)):
        assert abs(_corr(keep, other != 0)) < bound
    # the raw 32-bit values: uniform by deciles (chi-square, 9 degrees of freedom)
    key = scalar.dropout_key(7, 0)
    bits = np.array([scalar.dropout_bits(scalar.dropout_row_key(key, 0, r), u)
                     for r in range(200) for u in range(50)], dtype=np.float64) / 2.0 ** 32
    counts = np.histogram(bits, bins=10, range=(0, 1))[0]
    chi2 = float(((counts - bits.size / 10) ** 2 / (bits.size / 10)).sum())
    assert chi2 < 33.7, chi2  # p = 1e-4 for 9 degrees of freedom


# ------------------------------------------------------------------ the parameter
def _X(rng, n=40, d=5):
    return rng.normal(size=(n, d))


@pytest.mark.parametrize("dropout,err,match", [
    ((0.1, 0.2), ValueError, "dropout has 2 rates but the network has 1 hidden"),
    (1.0, ValueError, "dropout must be < 1"),
    (-0.1, ValueError, "dropout must be >= 0"),
    (float("nan"), ValueError, "dropout must be finite"),
    ("0.5", TypeError, "dropout must be a float in"),
    (True, TypeError, "dropout must be a float in"),
    (None, TypeError, "dropout must be a float in"),
    ([0.1, "a"], TypeError, r"dropout\[1\] must be a real number"),
])
def test_invalid_dropout_is_refused(rng, dropout, err, match):
    hidden = (4, 3) if isinstance(dropout, list) else (4,)
    X, y = _X(rng), rng.integers(0, 2, 40)
    with pytest.raises(err, match=match):
        MLPClassifier(hidden_layer_sizes=hidden, dropout=dropout, backend="cpu").fit(X, y)


def test_lbfgs_refuses_dropout(rng):
    X, y = _X(rng), rng.integers(0, 2, 40)
    with pytest.raises(ValueError, match="lbfgs needs a deterministic objective"):
        MLPClassifier((4,), solver="lbfgs", dropout=0.2, backend="cpu").fit(X, y)
    with pytest.raises(ValueError, match="lbfgs"):
        MLPRegressor(hidden_layer_sizes=(4, 3), solver="lbfgs", dropout=(0.0, 0.1),
                     backend="cpu").fit(X, X[:, 0])
    # rate 0 is no dropout: lbfgs runs
    MLPRegressor(hidden_layer_sizes=(4, 3), solver="lbfgs", dropout=(0.0, 0.0), max_iter=3,
                 backend="cpu").fit(X, X[:, 0])


def test_params_clone_set_params():
    clf = MLPClassifier(dropout=(0.1, 0.3), hidden_layer_sizes=(5, 4))
    assert clf.get_params()["dropout"] == (0.1, 0.3)
    assert clone(clf).get_params() == clf.get_params()
    assert MLPRegressor().get_params()["dropout"] == 0.0
    clf.set_params(dropout=0.5)
    assert clf.dropout == 0.5


@pytest.mark.parametrize("solver,dtype", [("sgd", "float32"), ("adam", "float64")])
def test_rate_zero_is_the_old_path_bit_for_bit(rng, solver, dtype):
    X, y = _X(rng, n=90), rng.integers(0, 3, 90)
    kw = dict(hidden_layer_sizes=(7, 5), max_iter=4, random_state=0, backend="cpu",
              solver=solver, dtype=dtype, batch_size=32)
    old = MLPClassifier(**kw).fit(X, y)
    for rate in (0.0, (0.0, 0.0)):
        new = MLPClassifier(**kw, dropout=rate).fit(X, y)
        for a, b in zip(old.coefs_ + old.intercepts_, new.coefs_ + new.intercepts_):
            np.testing.assert_array_equal(a, b)
        assert old.loss_curve_ == new.loss_curve_
        assert not hasattr(new, "_dropout_seed")


def test_dropout_changes_the_fit_and_not_predict(rng):
    X, y = _X(rng, n=90), rng.integers(0, 3, 90)
    kw = dict(hidden_layer_sizes=(7,), max_iter=3, random_state=0, backend="cpu")
    a = MLPClassifier(**kw).fit(X, y)
    b = MLPClassifier(**kw, dropout=0.3).fit(X, y)
    assert not np.allclose(a.coefs_[0], b.coefs_[0])
    # predict has no dropout: the reference forward pass of the weights as they are
    spec = b._spec
    np.testing.assert_allclose(b.predict_proba(X), ref.network_predict(spec, b._theta, X),
                               rtol=1e-5, atol=1e-6)
    assert np.array_equal(b.predict_proba(X), b.predict_proba(X))


# ------------------------------------------------------------------ gradients, fixed masks
def _masked_loss(spec, theta, X, Y, y, alpha, masks):
    """The training objective of one batch whose hidden outputs are multiplied by masks[l]
    (0 or 1 / (1 - rate)), in NumPy."""
    coefs, intercepts, slopes = unpack(spec, np.asarray(theta, dtype=np.float64))
    H = X
    for l, (W, b) in enumerate(zip(coefs, intercepts)):
        Z = H @ W + b
        if l == len(coefs) - 1:
            break
        H = ref.activation(spec.activation, Z, spec.param, slopes[l] if slopes else None,
                           spec.pieces) * masks[l]
    w = np.ones(X.shape[0])
    if spec.out_code == OUTPUTS["softmax"]:
        loss = ref.softmax_cross_entropy(Z, y, w, clip=False)[0]
    else:
        loss = ref.OUTPUT_LOSSES[spec.out_code](Z, Y, w)[0]
    return loss + alpha / (2.0 * X.shape[0]) * sum(float(np.sum(W ** 2)) for W in coefs)


def _trainer_grad(spec, theta, X, Y, y, alpha, drop, epoch, batch, order=None, lr=1.0):
    """(gradient of the first batch, epoch total) from one compiled SGD epoch (momentum 0)."""
    opt = OptimizerState.new(SGD, theta, learning_rate=lr, momentum=0.0, nesterov=False)
    th = theta.copy()
    tr = cpu.Trainer(spec, X, Y, y, np.zeros(0), batch, th, opt, alpha, dropout=drop)
    order = np.arange(X.shape[0], dtype=np.int64) if order is None else order
    total = tr.epoch(order, epoch)
    return (theta - tr.finish()) / lr if lr else None, total


@pytest.mark.parametrize("act", ["relu", "tanh", "logistic", "elu", "prelu", "maxout"])
def test_gradient_with_fixed_masks_matches_finite_differences(rng, act):
    n, d, hidden, k = 12, 4, (6, 5), 3
    spec = make_layout(d, hidden, k, act, 1.0 if act == "elu" else 0.0, 3,
                       OUTPUTS["softmax"], np.float64)
    theta = rng.uniform(-0.8, 0.8, spec.n_params)
    for _, _, s in [unpack(spec, theta)]:
        for a in s:
            a[...] = rng.uniform(0.1, 0.4, a.shape)
    X = rng.normal(size=(n, d))
    y = rng.integers(0, k, n)
    Y = np.zeros((0, k))
    rates, seed, epoch, alpha = (0.3, 0.5), 99, 4, 0.05
    drop = Dropout(rates, seed)
    grad, total = _trainer_grad(spec, theta, X, Y, y, alpha, drop, epoch, n)
    masks = [np_keep(seed, epoch, l, np.arange(n), h, r) / (1.0 - r)
             for l, (h, r) in enumerate(zip(hidden, rates))]
    assert 0 < masks[0].mean() and (masks[0] == 0).any()
    f = lambda t: _masked_loss(spec, t, X, Y, y, alpha, masks)  # noqa: E731
    assert abs(total / n - f(theta)) < 1e-10
    num = np.empty_like(theta)
    eps = 1e-6
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = eps
        num[i] = (f(theta + e) - f(theta - e)) / (2 * eps)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ masks: batch, order, split
@pytest.mark.parametrize("act", ["relu", "maxout"])
def test_masks_do_not_depend_on_batch_order_split_or_threads(rng, act, config):
    n, d, hidden, k = 70, 4, (6, 5), 2
    spec = make_layout(d, hidden, k, act, 0.0, 2, OUTPUTS["logistic"], np.float64)
    theta = rng.uniform(-0.8, 0.8, spec.n_params)
    X = rng.normal(size=(n, d))
    Y = (rng.random((n, k)) > 0.5).astype(np.float64)
    drop = Dropout((0.4, 0.2), 5)
    masks = [np_keep(5, 2, l, np.arange(n), h, r) / (1.0 - r)
             for l, (h, r) in enumerate(zip(hidden, (0.4, 0.2)))]
    want = _masked_loss(spec, theta, X, Y, None, 0.0, masks) * n
    # learning rate 0: theta stays, and the epoch total is the sum of the rows' losses
    config(CPU_SPLIT_MIN_ROWS=4)
    for batch in (n, 33, 7, 1):
        for order in (np.arange(n), rng.permutation(n)):
            _, total = _trainer_grad(spec, theta, X, Y, np.zeros(0, np.int64), 0.0, drop, 2,
                                     batch, np.ascontiguousarray(order, dtype=np.int64), lr=0.0)
            assert abs(total - want) < 1e-10 * abs(want), (batch, total, want)
    # the halves of a split batch in one thread, in two, and no split at all
    opt = OptimizerState.new(SGD, theta, learning_rate=0.1, momentum=0.0, nesterov=False)
    results = []
    from fastmlp.backends.cpu import sync

    for split, threads in ((4, 1), (4, 2 if sync.SPLIT else 1), (0, 1)):
        config(CPU_SPLIT_MIN_ROWS=split)
        tr = cpu.Trainer(spec, X, Y, np.zeros(0, np.int64), np.zeros(0), 32, theta.copy(),
                         opt.copy(), 0.0, dropout=drop)
        assert tr.parts == (2 if split else 1)
        tr.threads = threads if tr.parts > 1 else 1
        tr.epoch(np.arange(n, dtype=np.int64), 2)
        results.append(tr.finish().copy())
    np.testing.assert_array_equal(results[0], results[1])  # bitwise: same halves, same order
    np.testing.assert_allclose(results[0], results[2], rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ the estimators
def _clf(**kw):
    base = dict(hidden_layer_sizes=(8, 6), max_iter=3, random_state=0, backend="cpu",
                dtype="float64", batch_size=16, learning_rate_init=0.01, dropout=(0.3, 0.2),
                tol=0.0, n_iter_no_change=1000)
    base.update(kw)
    return MLPClassifier(**base)


def _same(a, b, exact=True):
    for x, z in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        if exact:
            np.testing.assert_array_equal(x, z)
        else:
            np.testing.assert_allclose(x, z, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_goes_on_with_new_masks(rng, solver):
    X, y = _X(rng, n=50), rng.integers(0, 3, 50)
    full = _clf(solver=solver, shuffle=False, max_iter=2).fit(X, y)
    inc = _clf(solver=solver, shuffle=False)
    inc.partial_fit(X, y, classes=[0, 1, 2])
    inc.partial_fit(X, y)
    # the second call's masks are epoch 1's, as in the two-epoch fit (the same seed drawn)
    _same(full, inc)
    assert inc._dropout_seed == full._dropout_seed
    # repeating epoch 0's masks would have given another model
    again = _clf(solver=solver, shuffle=False)
    again.partial_fit(X, y, classes=[0, 1, 2])
    again.__dict__.pop("loss_curve_")  # (its epoch count: 0 again)
    again.partial_fit(X, y)
    assert not np.allclose(again.coefs_[0], inc.coefs_[0])


def test_warm_start_goes_on_with_new_masks(rng):
    X, y = _X(rng, n=50), rng.integers(0, 3, 50)
    kw = dict(solver="sgd", momentum=0.0, shuffle=False)
    full = _clf(max_iter=2, **kw).fit(X, y)
    warm = _clf(max_iter=1, warm_start=True, **kw).fit(X, y)
    warm.fit(X, y)
    _same(full, warm)
    # a new fit (no warm start) draws its masks again from epoch 0
    assert len(_clf(max_iter=1, **kw).fit(X, y).loss_curve_) == 1


def test_early_stopping_validates_without_dropout(rng, monkeypatch):
    import fastmlp._estimator as est_module

    X, y = _X(rng, n=120), rng.integers(0, 3, 120)
    split = []
    real = est_module.validation_split

    def recording(*args, **kw):
        split.append(real(*args, **kw))
        return split[-1]

    monkeypatch.setattr(est_module, "validation_split", recording)
    clf = _clf(early_stopping=True, validation_fraction=0.25, max_iter=1,
               dropout=0.5).fit(X, y)
    # one epoch: the model is that epoch's weights, and its recorded validation score
    # and loss are those of predict on the held-out rows (no masks)
    val = split[0][1]
    assert clf.validation_scores_[0] == clf.score(X[val], y[val])
    P = clf.predict_proba(X[val])
    loss = -np.mean(np.log(np.clip(P[np.arange(len(val)), y[val]], 1e-300, 1)))
    assert abs(clf.validation_loss_curve_[0] - loss) < 1e-9
    longer = _clf(early_stopping=True, validation_fraction=0.25, max_iter=4).fit(X, y)
    assert len(longer.validation_scores_) == 4


@pytest.mark.parametrize("densify_above", [1.0, 0.0])
def test_sparse_input_has_the_dense_masks(rng, config, densify_above):
    X = _X(rng, n=60)
    X[rng.random(X.shape) < 0.5] = 0.0
    y = rng.integers(0, 3, 60)
    # 1.0: the CPU kernels multiply the CSR rows; 0.0: dense chunks of rows, each its own
    # Trainer (the rows' indices in the data key the masks); tiny chunks: several per epoch
    config(SPARSE_DENSIFY_ABOVE=densify_above, SPARSE_CHUNK_BYTES=16 * 5 * 8)
    dense = _clf().fit(X, y)
    sparse = _clf().fit(sp.csr_matrix(X), y)
    _same(dense, sparse, exact=False)


def test_maxout_prelu_float32_fit(rng):
    X, y = _X(rng, n=60), rng.integers(0, 3, 60)
    for act in ("maxout", "prelu"):
        clf = _clf(activation=act, dtype="float32", dropout=0.5).fit(X, y)
        assert np.isfinite(clf.loss_curve_).all()
        assert clf.coefs_[0].dtype == np.float32


def test_pickle_and_skops_round_trip(rng):
    X, y = _X(rng, n=50), rng.integers(0, 3, 50)
    clf = _clf(solver="sgd").fit(X, y)
    copies = [pickle.loads(pickle.dumps(clf))]
    try:
        import skops.io as sio
    except ImportError:  # pragma: no cover
        sio = None
    if sio is not None:
        blob = sio.dumps(clf)
        copies.append(sio.loads(blob, trusted=sio.get_untrusted_types(data=blob)))
    clf.partial_fit(X, y)
    for c in copies:
        assert c.get_params() == clf.get_params() and c._dropout_seed == clf._dropout_seed
        c.partial_fit(X, y)
        _same(clf, c)


def test_a_tampered_seed_is_refused(rng):
    X, y = _X(rng, n=50), rng.integers(0, 3, 50)
    clf = _clf().fit(X, y)
    state = clf.__getstate__()
    state["_dropout_seed"] = -3
    with pytest.raises(ValueError, match="_dropout_seed"):
        MLPClassifier().__setstate__(state)


def test_dask_estimators_take_dropout():
    """A parameter of the dask estimators too (their fits: tests/test_dask_sync.py)."""
    dask_est = pytest.importorskip("fastmlp.dask")
    for cls in (dask_est.DaskMLPClassifier, dask_est.DaskMLPRegressor):
        assert cls().get_params()["dropout"] == 0.0
        est = clone(cls(dropout=(0.2, 0.1), hidden_layer_sizes=(4, 3)))
        assert est.dropout == (0.2, 0.1)
        assert est._local_params()["dropout"] == (0.2, 0.1)  # what the local fit gets


# ------------------------------------------------------------------ CPU and CUDA (simulator)
@pytest.fixture
def tiny_cuda(monkeypatch):
    cb = pytest.importorskip("fastmlp.backends.cuda")
    if not cb.is_available():  # pragma: no cover
        pytest.skip(cb.unavailable_reason())
    from fastmlp.backends.cuda import _common, train as g_train

    monkeypatch.setattr(_config, "CUDA_TILE", 3)
    monkeypatch.setattr(_config, "CUDA_REGISTER_BLOCK", 2)
    monkeypatch.setattr(_common, "MAX_BLOCKS", 3)
    monkeypatch.setattr(g_train, "_FALLBACK_REASON", [])
    old = sys.getswitchinterval()
    if cb.is_simulated():
        sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(old)


@pytest.mark.parametrize("act,solver,driver", [
    ("relu", "adam", "persistent"),
    ("tanh", "sgd", "launches"),
    ("maxout", "adam", "launches"),
    ("prelu", "sgd", "persistent"),
])
def test_cpu_and_cuda_draw_the_same_masks(rng, tiny_cuda, config, act, solver, driver):
    config(CUDA_EPOCH_DRIVER=driver)
    X, y = rng.normal(size=(24, 4)), rng.integers(0, 3, 24)
    kw = dict(hidden_layer_sizes=(5, 4), activation=act, solver=solver, max_iter=2,
              batch_size=10, dropout=(0.5, 0.25), random_state=0, dtype="float64",
              learning_rate_init=0.05, tol=0.0, n_iter_no_change=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(backend="cpu", **kw).fit(X, y)
        b = MLPClassifier(backend="cuda", **kw).fit(X, y)
        c = MLPClassifier(backend="cpu", **{**kw, "dropout": 0.0}).fit(X, y)
    _same(a, b, exact=False)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)
    assert not np.allclose(a.coefs_[0], c.coefs_[0])  # the masks did something


def test_cuda_rate_zero_is_the_old_path(rng, tiny_cuda):
    X, y = rng.normal(size=(20, 3)), rng.integers(0, 2, 20)
    kw = dict(hidden_layer_sizes=(4,), max_iter=1, batch_size=8, random_state=0,
              dtype="float32", backend="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(**kw).fit(X, y)
        b = MLPClassifier(**kw, dropout=0.0).fit(X, y)
    _same(a, b)


def test_onnx_export_is_the_model_without_dropout(rng):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from fastmlp.onnx import to_onnx

    X, y = _X(rng, n=50), rng.integers(0, 3, 50)
    clf = _clf(dtype="float32").fit(X, y)
    sess = ort.InferenceSession(to_onnx(clf, zipmap=False).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    Xf = X.astype(np.float32)
    label, proba = sess.run(None, {sess.get_inputs()[0].name: Xf})
    np.testing.assert_allclose(proba, clf.predict_proba(Xf), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(label, clf.predict(Xf))


@pytest.mark.parametrize("densify_above", [0.25, 1.0])
def test_cuda_sparse_keeps_the_rows_masks(rng, tiny_cuda, config, densify_above):
    # half the entries non-zero: above 0.25 a sparse X is densified a few rows at a time,
    # each chunk its own Trainer whose rows carry their index in the data (the masks' key);
    # with 1.0 the CUDA backend takes the CSR matrix (its CSR_FORWARD phase drops units)
    X = rng.normal(size=(24, 4))
    X[rng.random(X.shape) < 0.5] = 0.0
    y = rng.integers(0, 3, 24)
    # chunks of 10 rows: three per epoch
    config(SPARSE_CHUNK_BYTES=10 * 4 * 8, SPARSE_DENSIFY_ABOVE=densify_above)
    kw = dict(hidden_layer_sizes=(5,), solver="sgd", max_iter=2, batch_size=5, dropout=0.5,
              random_state=0, dtype="float64", learning_rate_init=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(backend="cpu", **kw).fit(X, y)
        b = MLPClassifier(backend="cuda", **kw).fit(sp.csr_matrix(X), y)
    _same(a, b, exact=False)


@pytest.mark.parametrize("act", ["tanh", "maxout"])
@pytest.mark.parametrize("sparse", [False, True])
def test_full_batch_sums_with_masks_cpu_and_cuda(rng, tiny_cuda, act, sparse):
    """The full-batch sums under one epoch's masks (a dask block's share of a
    step-synchronous minibatch): the CUDA backend's equal the CPU's, and the masks of a
    row follow its index in the training rows, not its place in X."""
    cb = pytest.importorskip("fastmlp.backends.cuda")
    spec = make_layout(5, (4, 3), 3, act, 0.0, 2, OUTPUTS["softmax"], np.float64)
    theta = rng.normal(size=spec.n_params) * 0.5
    X = rng.normal(size=(11, 5))
    if sparse:
        X[rng.random(X.shape) < 0.6] = 0.0
        X = sp.csr_matrix(X)
    y = rng.integers(0, 3, 11).astype(np.int64)
    Y, sw = np.zeros((0, 3)), rng.uniform(0.5, 2.0, 11)
    rows = rng.permutation(40)[:11]  # the rows' indices in some training set
    drop = Dropout((0.4, 0.3), 77)
    out = {}
    for name, be in (("cpu", cpu), ("cuda", cb)):
        g = np.empty_like(theta)
        loss = be.FullBatch(spec, X, Y, y, sw, dropout=drop, rows=rows, epoch=5)(theta, g)
        out[name] = (loss, g)
    assert out["cuda"][0] == pytest.approx(out["cpu"][0], rel=1e-10)
    np.testing.assert_allclose(out["cuda"][1], out["cpu"][1], rtol=1e-9, atol=1e-12)
    # row i's masks are those of its index rows[i]: the same rows reversed give the same sums
    g = np.empty_like(theta)
    rev = slice(None, None, -1)
    Xr = np.ascontiguousarray(X[rev]) if not sparse else sp.csr_matrix(X.toarray()[rev])
    loss = cpu.FullBatch(spec, Xr, Y, y[rev].copy(), sw[rev].copy(), dropout=drop,
                         rows=rows[rev], epoch=5)(theta, g)
    assert loss == pytest.approx(out["cpu"][0], rel=1e-12)
    np.testing.assert_allclose(g, out["cpu"][1], rtol=1e-10, atol=1e-13)
    # and they are masks: without dropout, or in another epoch, the sums differ
    plain = cpu.FullBatch(spec, X, Y, y, sw)(theta, np.empty_like(theta))
    other = cpu.FullBatch(spec, X, Y, y, sw, dropout=drop, rows=rows, epoch=6)(
        theta, np.empty_like(theta))
    assert plain != pytest.approx(out["cpu"][0], rel=1e-6)
    assert other != pytest.approx(out["cpu"][0], rel=1e-6)
