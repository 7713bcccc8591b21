"""fastmlp.dask: data-parallel fits on a LocalCluster of two worker processes.

lbfgs must equal the local fit on the concatenated rows; parameter averaging
(sync="epoch") must reach the local adam fit's accuracy (the default, step-synchronous
sgd / adam, is tests/test_dask_sync.py's); a worker killed mid-fit must cost a
retry, not the fit; bad input must fail before any training round.
"""

import os
import pickle
import threading
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from fastmlp import MLPClassifier, MLPRegressor

import dask.array as da  # noqa: E402  (the test extra installs dask)
import distributed  # noqa: E402
import fastmlp.dask as fdask  # noqa: E402
DaskMLPClassifier, DaskMLPRegressor = fdask.DaskMLPClassifier, fdask.DaskMLPRegressor
from fastmlp.dask import _cluster, _engine  # noqa: E402

from dask_data import ROWS, blobs as _blobs, blocks as _blocks  # noqa: E402
# L-BFGS amplifies rounding-level differences over long runs (tests/test_parity.py);
# 30 iterations keep the comparison one of the objective, not of the chaos
LBFGS = dict(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=30, random_state=0,
             backend="cpu", dtype="float64")


@pytest.fixture(scope="module")
def lbfgs_pair(client):
    """(local fit, dask fit) of the same lbfgs classifier on the same rows."""
    X, y = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = MLPClassifier(**LBFGS).fit(X, y)
        Xd, yd = _blocks(X, y)
        remote = DaskMLPClassifier(**LBFGS).fit(Xd, yd)
    return X, y, local, remote


def _assert_same_fit(a, b, rtol):
    np.testing.assert_allclose(a.loss_, b.loss_, rtol=rtol)
    assert a.n_iter_ == b.n_iter_
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(ca, cb, rtol=1e-6, atol=1e-9)


def test_lbfgs_classifier_equals_local_fit(lbfgs_pair):
    X, y, local, remote = lbfgs_pair
    _assert_same_fit(remote, local, rtol=1e-8)
    np.testing.assert_array_equal(remote.classes_, local.classes_)
    assert remote.n_features_in_ == 8 and remote.out_activation_ == "softmax"
    assert all(type(c) is np.ndarray for c in remote.coefs_)
    info = remote._dask_fit_info
    assert info["blocks"] == 4 and info["evaluations"] >= remote.n_iter_
    # params and reductions only: per evaluation one partial gradient (+ loss) from each
    # of the 2 workers (blocks 0-1 and 2-3, each pair summed where it lives), plus summaries
    n_params = sum(c.size for c in remote.coefs_ + remote.intercepts_)
    assert info["bytes_received"] <= info["rounds"] * 2 * (8 * n_params + 8) + 4096


def _assert_same_bits(a, b):
    assert a.loss_ == b.loss_ and a.n_iter_ == b.n_iter_
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(ca, cb)


def test_lbfgs_result_does_not_depend_on_placement_or_path(client, lbfgs_pair, monkeypatch):
    """Blocks alternating between the workers instead of contiguous runs, and rounds as
    tasks instead of through the actors: the same fit, bit for bit (the block sums are
    added along a tree fixed by block index)."""
    X, y, local, clean = lbfgs_pair
    assert clean._dask_fit_info["actors"] and clean._dask_fit_info["actor_failures"] == 0
    Xd, yd = _blocks(X, y)

    def alternating(threads, held, rows):
        workers = sorted(threads)
        return {i: workers[i % len(workers)] for i in rows}

    def unreachable(self):
        raise OSError("the client cannot reach the workers")

    monkeypatch.setattr(_cluster, "_contiguous_homes", alternating)
    monkeypatch.setattr(_cluster._Cluster, "_submit_hosts", unreachable)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        other = DaskMLPClassifier(**LBFGS).fit(Xd, yd)
    info = other._dask_fit_info
    assert not info["actors"] and info["actor_failures"] == _cluster._ROUND_ATTEMPTS + 1
    _assert_same_bits(other, clean)
    # four blocks on alternating workers: four partial sums per round reach the client
    n_params = sum(c.size for c in other.coefs_ + other.intercepts_)
    assert info["bytes_received"] <= info["rounds"] * 4 * (8 * n_params + 8) + 4096


def test_lbfgs_regressor_with_weights_equals_local_fit(client):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 5))
    Y = np.column_stack([np.sin(X[:, 0]) + X[:, 1], X[:, 2] * X[:, 3]])
    w = rng.uniform(0.2, 2.0, size=600)
    Xd, Yd, wd = _blocks(X, Y, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = MLPRegressor(**LBFGS).fit(X, Y, sample_weight=w)
        remote = DaskMLPRegressor(**LBFGS).fit(Xd, Yd, sample_weight=wd)
    _assert_same_fit(remote, local, rtol=1e-8)
    pred = remote.predict(Xd)
    assert isinstance(pred, da.Array) and pred.shape == (600, 2)
    np.testing.assert_allclose(pred.compute(), local.predict(X), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(remote.score(Xd, Yd), local.score(X, Y), rtol=1e-10)


def test_averaging_reaches_local_adam_accuracy_on_digits(client):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    chunks = (250, 400, 300, len(Xtr) - 950)
    Xd = da.from_array(Xtr, chunks=(chunks, 64))
    yd = da.from_array(ytr, chunks=(chunks,))
    kw = dict(hidden_layer_sizes=(64,), solver="adam", learning_rate_init=0.003, batch_size=32,
              max_iter=40, random_state=0, backend="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = MLPClassifier(**kw).fit(Xtr, ytr)
        remote = DaskMLPClassifier(sync="epoch", **kw).fit(Xd, yd)
    local_acc, remote_acc = local.score(Xte, yte), remote.score(Xte, yte)
    assert local_acc > 0.95
    assert remote_acc >= local_acc - 0.02, (remote_acc, local_acc)
    assert len(remote.loss_curve_) == remote.n_iter_
    assert remote.loss_curve_[-1] < remote.loss_curve_[0]
    assert remote._opt_state.steps > 0


def test_averaging_is_reproducible_with_early_stopping(client, capsys):
    X, y = _blobs(seed=2)
    Xd, yd = _blocks(X.astype(np.float32), y)
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.05, batch_size=16,
              max_iter=4,
              early_stopping=True, validation_fraction=0.2, n_iter_no_change=2,
              random_state=3, backend="cpu", verbose=True, sync="epoch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = DaskMLPClassifier(**kw).fit(Xd, yd)
        b = DaskMLPClassifier(**kw).fit(Xd, yd)
    for ca, cb in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(ca, cb)
    assert a.loss_curve_ == b.loss_curve_
    assert len(a.validation_scores_) == len(a.validation_loss_curve_) == a.n_iter_
    assert a.best_validation_score_ == max(a.validation_scores_) > 0.6
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Iteration")]
    assert len(lines) == a.n_iter_ + b.n_iter_ and "validation score" in lines[0]


def test_predict_is_blockwise_and_equals_local(lbfgs_pair):
    X, y, local, remote = lbfgs_pair
    Xd, = _blocks(X)
    pred, proba, logp = remote.predict(Xd), remote.predict_proba(Xd), remote.predict_log_proba(Xd)
    for out in (pred, proba, logp):
        assert isinstance(out, da.Array) and out.chunks[0] == ROWS
    np.testing.assert_array_equal(pred.compute(), local.predict(X))
    np.testing.assert_allclose(proba.compute(), local.predict_proba(X), rtol=1e-12)
    np.testing.assert_allclose(logp.compute(), local.predict_log_proba(X), rtol=1e-10)
    assert remote.score(Xd, da.from_array(y, chunks=150)) == local.score(X, y)
    np.testing.assert_array_equal(remote.predict(X), local.predict(X))  # NumPy in, NumPy out


def test_dataframe_input_and_feature_names(client):
    import dask.dataframe as dd
    import pandas as pd
    X, y = _blobs(seed=4, n=300, d=3)
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    ddf = dd.from_pandas(df, npartitions=3)
    ys = dd.from_pandas(pd.Series(y), npartitions=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = DaskMLPClassifier(**dict(LBFGS, max_iter=10)).fit(ddf, ys)
        local = MLPClassifier(**dict(LBFGS, max_iter=10)).fit(df, y)
    np.testing.assert_array_equal(clf.feature_names_in_, ["a", "b", "c"])
    _assert_same_fit(clf, local, rtol=1e-8)
    np.testing.assert_array_equal(clf.predict(ddf).compute(), local.predict(df))
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(ddf.rename(columns={"a": "z"}))


def test_pickle_and_to_local(client, lbfgs_pair):
    X, y, local, remote = lbfgs_pair
    remote.set_params(client=client)
    try:
        back = pickle.loads(pickle.dumps(remote))  # the client does not travel
    finally:
        remote.set_params(client=None)
    assert back.client is None and type(back) is DaskMLPClassifier
    np.testing.assert_array_equal(back.predict(da.from_array(X, chunks=200)).compute(),
                                  local.predict(X))
    plain = remote.to_local()
    assert type(plain) is MLPClassifier and "client" not in plain.get_params()
    assert not hasattr(plain, "_dask_fit_info")
    plain2 = pickle.loads(pickle.dumps(plain))
    np.testing.assert_array_equal(plain2.predict(X), local.predict(X))
    before = remote.coefs_[0].copy()
    plain.coefs_[0][...] = 0.0  # a copy: the dask estimator keeps its weights
    np.testing.assert_array_equal(remote.coefs_[0], before)
    assert not hasattr(remote, "partial_fit")


def test_bad_input_fails_before_training(client, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a training round started")

    monkeypatch.setattr(_cluster._Cluster, "round", no_training)
    X, y = _blobs(n=200)
    Xd, yd = da.from_array(X, chunks=(50, 8)), da.from_array(y, chunks=50)
    est = DaskMLPClassifier(**LBFGS)
    with pytest.raises(ValueError, match="chunked along rows only"):
        est.fit(da.from_array(X, chunks=(50, 4)), yd)
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        est.fit(Xd[Xd[:, 0] > -100], yd)
    with pytest.raises(ValueError, match="partitioned along rows like X"):
        est.fit(Xd, da.from_array(y, chunks=80))
    with pytest.raises(ValueError, match="rows"):
        est.fit(Xd, yd[:150])
    with pytest.raises(TypeError, match="dask array"):
        est.fit(X, y)
    bad = X.copy()
    bad[123, 2] = np.nan
    with pytest.raises(ValueError, match=r"Block 2 .*rows 100 to 149.*NaN"):
        est.fit(da.from_array(bad, chunks=(50, 8)), yd)
    with pytest.raises(ValueError, match="Unknown label type"):
        est.fit(Xd, yd + 0.5)
    with pytest.raises(ValueError, match="solver"):
        DaskMLPClassifier(solver="newton").fit(Xd, yd)
    def no_current_client(cls, allow_global=True):
        raise ValueError("No clients found")

    monkeypatch.setattr(distributed.Client, "current", classmethod(no_current_client))
    with pytest.raises(ValueError, match="needs a dask.distributed Client"):
        est.fit(Xd, yd)


def test_worker_lost_mid_fit_costs_a_retry_not_the_fit(client, lbfgs_pair, monkeypatch):
    """Kill the worker holding most blocks after the 3rd evaluation; same fit as without."""
    X, y, local, clean = lbfgs_pair
    Xd, yd = _blocks(X, y)
    killed = []

    def kill_busiest():
        holders = client.run_on_scheduler(lambda dask_scheduler: [
            ws.address for ts in dask_scheduler.tasks.values()
            if str(ts.key).startswith("fastmlp-part-") for ws in (ts.who_has or ())])
        victim = max(set(holders), key=holders.count)
        killed.append((victim, len(calls)))
        try:
            client.run(os._exit, 1, workers=[victim])
        except Exception:  # the worker dies before it can answer
            pass

    calls = []
    original = _engine._LbfgsSums.__call__

    def counting(self, theta, grad):
        calls.append(1)
        if len(calls) == 3:
            threading.Thread(target=kill_busiest).start()
        return original(self, theta, grad)

    monkeypatch.setattr(_engine._LbfgsSums, "__call__", counting)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        faulted = DaskMLPClassifier(**LBFGS).fit(Xd, yd)
    (victim, at_call), = killed
    assert victim not in client.scheduler_info()["workers"]  # that process is gone
    assert at_call < len(calls)  # and the fit went on evaluating after it
    _assert_same_bits(faulted, clean)
    assert faulted._dask_fit_info["actor_failures"] >= 1  # the lost round ran as tasks
    assert clean._dask_fit_info["actor_failures"] == 0
    client.wait_for_workers(2, timeout=60)


@pytest.mark.parametrize("est_cls, dask_cls, kw", [
    (MLPClassifier, DaskMLPClassifier,
     dict(solver="sgd", learning_rate="adaptive", momentum=0.9, learning_rate_init=0.2,
          tol=1e-3, n_iter_no_change=2)),
    (MLPClassifier, DaskMLPClassifier, dict(solver="adam", learning_rate_init=0.01)),
    (MLPRegressor, DaskMLPRegressor,
     dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.01)),
])
@pytest.mark.parametrize("sync", ["epoch", "step"])
def test_one_block_runs_the_local_loop(client, est_cls, dask_cls, kw, sync):
    """One loop for both engines: on a single block without shuffling, the cluster's
    averaged epoch (the block trains a copy, the copies are averaged: here one) is the
    local epoch, and so are its synchronous steps, so the shared loop gives the same
    history, stopping epoch and weights as the local fit."""
    X, y = _blobs(seed=4, n=240, d=5)
    if est_cls is MLPRegressor:
        y = X[:, 0] - 0.5 * X[:, 1] + 0.1 * y
    params = dict(hidden_layer_sizes=(6,), batch_size=32, max_iter=25, shuffle=False,
                  random_state=1, backend="cpu", dtype="float64", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = est_cls(**params).fit(X, y)
        remote = dask_cls(sync=sync, **params).fit(da.from_array(X, chunks=(len(X), X.shape[1])),
                                        da.from_array(y, chunks=(len(y),)))
    assert remote.n_iter_ == local.n_iter_ and remote.t_ == local.t_
    np.testing.assert_allclose(remote.loss_curve_, local.loss_curve_, rtol=1e-10)
    assert remote.best_loss_ == pytest.approx(local.best_loss_, rel=1e-10)
    for a, b in zip(remote.coefs_ + remote.intercepts_, local.coefs_ + local.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
