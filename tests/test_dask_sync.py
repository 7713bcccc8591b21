"""fastmlp.dask's stochastic solvers (issue 32): step-synchronous fits equal the local fit.

``sync="step"`` takes the local fit's minibatches (same shuffle, same
boundaries, the same early-stopping split) with the blocks' gradient shares
added along the block tree, so a float64 fit must follow the local fit to
rounding; the averaging variants ("epoch", every K steps) must run; ``sync``
is validated like every parameter; a worker lost mid-fit costs a retry.
A LocalCluster of two worker processes, one thread each.
"""

import os
import threading
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from fastmlp import MLPClassifier, MLPRegressor

import dask.array as da  # noqa: E402  (the test extra installs dask)
import distributed  # noqa: E402
from fastmlp.dask import DaskMLPClassifier, DaskMLPRegressor  # noqa: E402
from fastmlp.dask import _cluster, _engine  # noqa: E402

from dask_data import ROWS, blobs as _blobs, blocks as _blocks  # noqa: E402
BASE = dict(hidden_layer_sizes=(12,), batch_size=48, max_iter=12, random_state=0,
            backend="cpu", dtype="float64")


def _fit_both(est_cls, dask_cls, params, X, y, sample_weight=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = est_cls(**params).fit(X, y, sample_weight=sample_weight)
        arrays = _blocks(X, y) if sample_weight is None else _blocks(X, y, sample_weight)
        remote = dask_cls(**params).fit(*arrays)
    return local, remote


def _assert_same_fit(remote, local):
    assert remote.n_iter_ == local.n_iter_ and remote.t_ == local.t_
    np.testing.assert_allclose(remote.loss_curve_, local.loss_curve_, rtol=1e-8, atol=1e-12)
    for a, b in zip(remote.coefs_ + remote.intercepts_, local.coefs_ + local.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)
    if local.early_stopping:
        np.testing.assert_allclose(remote.validation_scores_, local.validation_scores_,
                                   rtol=1e-8)
        np.testing.assert_allclose(remote.validation_loss_curve_,
                                   local.validation_loss_curve_, rtol=1e-8)
        assert remote.best_validation_score_ == pytest.approx(local.best_validation_score_,
                                                              rel=1e-10)
    else:
        assert remote.best_loss_ == pytest.approx(local.best_loss_, rel=1e-8)


@pytest.mark.parametrize("kw", [
    dict(solver="adam", learning_rate_init=0.01),
    # early stopping: the local fit's stratified split, the best weights restored
    dict(solver="adam", learning_rate_init=0.02, early_stopping=True, validation_fraction=0.2,
         n_iter_no_change=2, max_iter=30),
    dict(solver="sgd", learning_rate_init=0.05, momentum=0.9, nesterovs_momentum=True,
         learning_rate="adaptive", tol=1e-2, n_iter_no_change=2, max_iter=20),
], ids=["adam", "adam-early-stopping", "sgd-nesterov-adaptive"])
def test_step_sync_classifier_equals_local_fit(client, kw):
    X, y = _blobs()
    local, remote = _fit_both(MLPClassifier, DaskMLPClassifier, dict(BASE, **kw), X, y)
    _assert_same_fit(remote, local)
    info = remote._dask_fit_info
    assert info["sync"] == "step" and info["actor_failures"] == 0
    n_train = remote.t_ // remote.n_iter_
    assert info["steps"] == remote.n_iter_ * -(-n_train // 48)
    if kw.get("early_stopping"):
        assert remote.n_iter_ < 30  # the rule fired: the same epoch as the local fit
    # per step one partial (loss, weight sum, gradient) from each worker (blocks 0-1 and
    # 2-3 are summed where they live), plus summaries and validation sums
    n_params = sum(c.size for c in remote.coefs_ + remote.intercepts_)
    assert info["bytes_received"] <= info["rounds"] * 2 * (8 * n_params + 16) + 4096


@pytest.mark.parametrize("kw, weighted", [
    (dict(solver="sgd", learning_rate_init=0.01, momentum=0.8, nesterovs_momentum=False,
          learning_rate="invscaling", power_t=0.25, alpha=1e-3), True),
    (dict(solver="adam", learning_rate_init=0.01), False),
], ids=["sgd-momentum-invscaling-weighted", "adam-two-outputs"])
def test_step_sync_regressor_equals_local_fit(client, kw, weighted):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 5))
    Y = np.column_stack([np.sin(X[:, 0]) + X[:, 1], X[:, 2] * X[:, 3]])
    y = Y[:, 0] if weighted else Y
    w = rng.uniform(0.2, 2.0, size=600) if weighted else None
    local, remote = _fit_both(MLPRegressor, DaskMLPRegressor, dict(BASE, **kw), X, y, w)
    _assert_same_fit(remote, local)


def test_step_sync_regressor_early_stopping_with_weights(client):
    """Unstratified split (a regressor) and weighted validation r2."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(600, 4))
    y = X[:, 0] - 2.0 * X[:, 1] * X[:, 2]
    w = rng.uniform(0.5, 1.5, size=600)
    params = dict(BASE, solver="adam", learning_rate_init=0.01, early_stopping=True,
                  validation_fraction=0.15, n_iter_no_change=3, max_iter=15)
    local, remote = _fit_both(MLPRegressor, DaskMLPRegressor, params, X, y, w)
    _assert_same_fit(remote, local)


def test_step_sync_binary_classifier_early_stopping_with_weights(client):
    """A single-output classifier: the local fit's split is stratified on the labels
    (which come to the client for it); weighted rows and weighted validation."""
    X, y = _blobs(seed=7, k=2)
    w = np.random.default_rng(7).uniform(0.3, 3.0, size=len(y))
    params = dict(BASE, solver="sgd", learning_rate_init=0.05, momentum=0.5,
                  early_stopping=True, validation_fraction=0.25, n_iter_no_change=2,
                  tol=1e-2, max_iter=15)
    local, remote = _fit_both(MLPClassifier, DaskMLPClassifier, params, X, y, w)
    _assert_same_fit(remote, local)
    assert remote.n_iter_ < 15


def test_step_sync_float32_follows_the_local_fit(client):
    """The default dtype: the same steps, float32 rounding apart (warm_start goes on)."""
    X, y = _blobs(seed=8)
    params = dict(BASE, dtype="float32", solver="adam", learning_rate_init=0.01, max_iter=5,
                  warm_start=True)
    local, remote = _fit_both(MLPClassifier, DaskMLPClassifier, params, X.astype(np.float32), y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local.fit(X.astype(np.float32), y)
        remote.fit(*_blocks(X.astype(np.float32), y))
    assert len(remote.loss_curve_) == len(local.loss_curve_) == 10
    assert remote.t_ == local.t_
    np.testing.assert_allclose(remote.loss_curve_, local.loss_curve_, rtol=1e-5)


def test_row_map_finds_each_training_row_in_its_block():
    """(block, position among the block's training rows), empty blocks and a split included."""
    from fastmlp.dask._estimators import _row_map

    chunks = [3, 0, 5, 4]
    starts = np.concatenate([[0], np.cumsum(chunks)])
    rng = np.random.default_rng(0)
    val = np.sort(rng.choice(12, size=3, replace=False))
    train = rng.permutation(np.setdiff1d(np.arange(12), val))  # train_test_split's order
    block, pos = _row_map(starts, train)
    for g, b, p in zip(train, block, pos):
        assert starts[b] <= g < starts[b + 1]
        kept = np.setdiff1d(np.arange(starts[b], starts[b + 1]), val)  # the block's train rows
        assert kept[p] == g


def test_sync_parameter_is_validated_and_cloned(client):
    X, y = _blobs(n=200)
    Xd, yd = da.from_array(X, chunks=(50, 8)), da.from_array(y, chunks=50)
    for bad in ("steps", 0, -2, 1.5, True, None):
        with pytest.raises(ValueError, match="'sync' parameter .* 'step'.*'epoch'.*"
                                             "positive int"):
            DaskMLPClassifier(sync=bad, max_iter=1).fit(Xd, yd)
    est = DaskMLPRegressor(sync=3)
    assert est.get_params()["sync"] == 3 and DaskMLPClassifier().sync == "step"
    assert clone(est).sync == 3
    assert clone(est.set_params(sync="epoch")).sync == "epoch"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = DaskMLPClassifier(sync=np.int64(2), max_iter=2, hidden_layer_sizes=(4,),
                                   random_state=0, backend="cpu").fit(Xd, yd)
    assert fitted.sync == 2 and fitted._dask_fit_info["sync"] == 2
    local = fitted.to_local()
    assert "sync" not in local.get_params() and "sync" not in vars(local)
    # lbfgs has no minibatches: sync does not change it
    lb = dict(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=5, random_state=0,
              backend="cpu", dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = DaskMLPClassifier(sync="step", **lb).fit(Xd, yd)
        b = DaskMLPClassifier(sync=4, **lb).fit(Xd, yd)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])


@pytest.mark.parametrize("sync", ["epoch", 1, 3])
def test_averaging_variants_run(client, sync):
    """Averaging once per epoch or every K local steps: reproducible, one round per
    K batches of the largest block (sync=1 with one block would be the local fit)."""
    X, y = _blobs(seed=3)
    Xd, yd = _blocks(X.astype(np.float32), y)
    params = dict(hidden_layer_sizes=(8,), solver="adam", learning_rate_init=0.01,
                  batch_size=32, max_iter=5, random_state=2, backend="cpu", sync=sync)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = DaskMLPClassifier(**params).fit(Xd, yd)
        b = DaskMLPClassifier(**params).fit(Xd, yd)
    assert a.loss_curve_ == b.loss_curve_ and a.n_iter_ == 5
    rounds_per_epoch = 1 if sync == "epoch" else -(-8 // sync)  # 250 rows: 8 batches
    assert a._dask_fit_info["steps"] == 5 * rounds_per_epoch
    assert a.loss_curve_[-1] < a.loss_curve_[0]
    assert a.score(X.astype(np.float32), y) > 0.8


def test_k1_on_one_block_is_the_local_fit(client):
    """Averaging after every step of a single block is the local fit without shuffling."""
    X, y = _blobs(seed=4, n=240, d=5)
    params = dict(hidden_layer_sizes=(6,), solver="sgd", learning_rate_init=0.05,
                  batch_size=32, max_iter=6, shuffle=False, random_state=1, backend="cpu",
                  dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = MLPClassifier(**params).fit(X, y)
        remote = DaskMLPClassifier(sync=1, **params).fit(
            da.from_array(X, chunks=(240, 5)), da.from_array(y, chunks=240))
    np.testing.assert_allclose(remote.loss_curve_, local.loss_curve_, rtol=1e-10)
    assert remote._dask_fit_info["steps"] == 6 * 8


def test_worker_lost_mid_step_sync_fit_costs_a_retry(client, monkeypatch):
    """Kill the worker holding most blocks after the 20th step: the lost round is run
    again as tasks (the blocks recomputed from their graph) and the fit is bit for bit
    the one without the fault."""
    X, y = _blobs(seed=5)
    Xd, yd = _blocks(X, y)
    params = dict(BASE, solver="adam", learning_rate_init=0.01, max_iter=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clean = DaskMLPClassifier(**params).fit(Xd, yd)
    killed, steps = [], []

    def kill_busiest():
        holders = client.run_on_scheduler(lambda dask_scheduler: [
            ws.address for ts in dask_scheduler.tasks.values()
            if str(ts.key).startswith("fastmlp-part-") for ws in (ts.who_has or ())])
        victim = max(set(holders), key=holders.count)
        killed.append((victim, len(steps)))
        try:
            client.run(os._exit, 1, workers=[victim])
        except Exception:  # the worker dies before it can answer
            pass

    original = _engine._SyncStep.__call__

    def counting(self, *args):
        steps.append(1)
        if len(steps) == 20:
            threading.Thread(target=kill_busiest).start()
        return original(self, *args)

    monkeypatch.setattr(_engine._SyncStep, "__call__", counting)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        faulted = DaskMLPClassifier(**params).fit(Xd, yd)
    (victim, at_step), = killed
    assert victim not in client.scheduler_info()["workers"]
    assert at_step < len(steps) == clean._dask_fit_info["steps"]
    assert faulted._dask_fit_info["actor_failures"] >= 1
    assert faulted.loss_curve_ == clean.loss_curve_
    for a, b in zip(faulted.coefs_ + faulted.intercepts_, clean.coefs_ + clean.intercepts_):
        np.testing.assert_array_equal(a, b)
    client.wait_for_workers(2, timeout=60)


def test_step_sync_does_not_depend_on_placement_or_path(client, monkeypatch):
    """Blocks alternating between workers and rounds as tasks: the same fit, bit for bit."""
    X, y = _blobs(seed=6, n=300)
    Xd = da.from_array(X, chunks=(75, 8))
    yd = da.from_array(y, chunks=75)
    params = dict(BASE, solver="sgd", learning_rate_init=0.05, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clean = DaskMLPClassifier(**params).fit(Xd, yd)

    def alternating(threads, held, rows):
        workers = sorted(threads)
        return {i: workers[i % len(workers)] for i in rows}

    def unreachable(self):
        raise OSError("the client cannot reach the workers")

    monkeypatch.setattr(_cluster, "_contiguous_homes", alternating)
    monkeypatch.setattr(_cluster._Cluster, "_submit_hosts", unreachable)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        other = DaskMLPClassifier(**params).fit(Xd, yd)
    assert not other._dask_fit_info["actors"]
    assert other.loss_curve_ == clean.loss_curve_
    for a, b in zip(other.coefs_ + other.intercepts_, clean.coefs_ + clean.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_an_overflowing_loss_and_a_diverging_fit_as_the_local_fit(client):
    """A loss that overflows with finite weights trains on (the loss curve records inf),
    as the local fit and scikit-learn do; weights that turn NaN raise the local fit's
    error, and the estimator keeps nothing."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3)) * 1e4  # (tests/test_parity.py's overflow case)
    y = X @ rng.standard_normal(3)
    params = dict(hidden_layer_sizes=(1,), activation="relu", solver="sgd", alpha=1.0,
                  batch_size=32, learning_rate_init=1.0, momentum=0.0, shuffle=False,
                  max_iter=2, random_state=0, backend="cpu", dtype="float64")
    chunks = (10, 15, 5, 10)
    blocks = (da.from_array(X, chunks=(chunks, 3)), da.from_array(y, chunks=(chunks,)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = MLPRegressor(**params).fit(X, y)
        remote = DaskMLPRegressor(**params).fit(*blocks)
    assert np.isinf(local.loss_curve_[-1])
    np.testing.assert_allclose(remote.loss_curve_, local.loss_curve_, rtol=1e-8)
    for a, b in zip(remote.coefs_, local.coefs_):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-7)
    params["max_iter"] = 6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="non-finite parameter weights"):
            MLPRegressor(**params).fit(X, y)
        est = DaskMLPRegressor(**params)
        with pytest.raises(ValueError, match="non-finite parameter weights"):
            est.fit(*blocks)
    assert not hasattr(est, "coefs_")


def test_dropout_step_synchronous_equals_the_local_fit(client):
    """Each block draws the local fit's masks for its rows of a minibatch (keyed by their
    index in the training rows and the epoch), so the step-synchronous fit with dropout
    is the local fit, early stopping and warm start included; the averaging modes
    refuse dropout."""
    X, y = _blobs(3)
    params = dict(BASE, solver="adam", dropout=(0.3,), early_stopping=True,
                  validation_fraction=0.2, n_iter_no_change=50, max_iter=6)
    local, remote = _fit_both(MLPClassifier, DaskMLPClassifier, params, X, y)
    _assert_same_fit(remote, local)
    assert remote._dropout_seed == local._dropout_seed
    no_drop = MLPClassifier(**dict(params, dropout=0.0)).fit(X, y)
    assert not np.allclose(no_drop.coefs_[0], local.coefs_[0])  # the masks did something
    # warm start: the next epochs' masks continue from the loss curve's length
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local.set_params(warm_start=True, max_iter=3).fit(X, y)
        remote.set_params(warm_start=True, max_iter=3).fit(*_blocks(X, y))
    _assert_same_fit(remote, local)
    with pytest.raises(ValueError, match="dropout.*sync='step'"):
        DaskMLPClassifier(**dict(params, sync="epoch")).fit(*_blocks(X, y))


def test_dropout_regressor_sgd_with_weights(client):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(600, 6))
    y = X @ rng.normal(size=6) + 0.1 * rng.normal(size=600)
    w = rng.uniform(0.2, 2.0, size=600)
    params = dict(BASE, solver="sgd", momentum=0.9, dropout=0.25, learning_rate_init=0.01,
                  max_iter=5, hidden_layer_sizes=(10, 7))
    local, remote = _fit_both(MLPRegressor, DaskMLPRegressor, params, X, y, sample_weight=w)
    _assert_same_fit(remote, local)
