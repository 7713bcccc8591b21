"""Scale-out: partial_fit streamed through dask-ml's Incremental on a dask.distributed cluster.

A real LocalCluster with worker processes: the estimator travels to the
workers and back by pickle, block by block.
"""

import numpy as np
import pytest

from fastmlp import MLPClassifier, MLPRegressor

import dask.array as da  # noqa: E402  (the test extra installs dask)
import distributed  # noqa: E402
import dask_ml.wrappers as wrappers  # noqa: E402


def _blobs(rng, n=600, d=6, k=3):
    centers = rng.normal(scale=4.0, size=(k, d))
    y = rng.integers(0, k, size=n)
    X = centers[y] + rng.normal(size=(n, d))
    return X.astype(np.float32), y


def test_incremental_streams_blocks_through_partial_fit(client, rng):
    X, y = _blobs(rng)
    Xd = da.from_array(X, chunks=(100, X.shape[1]))  # 6 blocks
    yd = da.from_array(y, chunks=100)
    est = MLPClassifier(hidden_layer_sizes=(16,), random_state=0, backend="cpu",
                        learning_rate_init=0.01)
    inc = wrappers.Incremental(est, shuffle_blocks=False)
    inc.fit(Xd, yd, classes=np.arange(3))
    fitted = inc.estimator_
    # one partial_fit call per block, one epoch each
    assert len(fitted.loss_curve_) == Xd.numblocks[0]
    assert fitted.t_ == X.shape[0]
    # the same blocks through partial_fit locally give the same weights
    local = MLPClassifier(hidden_layer_sizes=(16,), random_state=0, backend="cpu",
                          learning_rate_init=0.01)
    for start in range(0, X.shape[0], 100):
        local.partial_fit(X[start:start + 100], y[start:start + 100], classes=np.arange(3))
    for a, b in zip(fitted.coefs_, local.coefs_):
        np.testing.assert_array_equal(a, b)
    assert inc.score(Xd, yd) > 0.6  # one pass over 6 blocks; chance is 1/3


def test_parallel_post_fit_predicts_blockwise(client, rng):
    X, y = _blobs(rng)
    est = MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, random_state=0,
                        backend="cpu").fit(X, y)
    ppf = wrappers.ParallelPostFit(est)
    Xd = da.from_array(X, chunks=(150, X.shape[1]))
    pred = ppf.predict(Xd)
    proba = ppf.predict_proba(Xd)
    assert isinstance(pred, da.Array)
    np.testing.assert_array_equal(pred.compute(), est.predict(X))
    np.testing.assert_allclose(proba.compute(), est.predict_proba(X), rtol=1e-6)


def test_regressor_incremental(client, rng):
    X = rng.normal(size=(400, 4)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=400)
    Xd = da.from_array(X, chunks=(100, 4))
    yd = da.from_array(y, chunks=100)
    inc = wrappers.Incremental(MLPRegressor(hidden_layer_sizes=(16,), random_state=0,
                                            backend="cpu", learning_rate_init=0.01))
    for _ in range(5):  # five passes over the stream
        inc.partial_fit(Xd, yd)
    assert len(inc.estimator_.loss_curve_) == 5 * Xd.numblocks[0]
    assert inc.estimator_.score(X, y) > 0.5
