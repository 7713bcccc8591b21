"""fastmlp.dask, worker side: the functions a round runs on one block of rows.

Pure functions of their arguments (a retried round recomputes them): preparing
a block where it lives (``_prepare_part``), its summary, its full-batch sums
(lbfgs), its share of a synchronous minibatch step and its local epoch (or K
steps) from the shared state (sgd / adam), and its validation sums.
"""

import dataclasses

import numpy as np
from dask.sizeof import sizeof as _sizeof
from sklearn.utils.validation import _check_sample_weight

from .._solvers import _rows
from ..backends import get_backend
from ..backends.layout import ADAM_T


class _Part:
    """One block of rows, prepared where it lives.

    train: a ``_TrainData`` (the block's training rows in the kernels'
    layouts); Xv, yv, swv: the block's early-stopping validation rows (X in the
    model's dtype, raw targets, float64 weights or None), or None;
    template: an unfitted local estimator holding the label encoding (for
    validation scores); block: the block's index along the rows.
    """

    __slots__ = ("block", "train", "Xv", "yv", "swv", "template", "full_batch")

    def __init__(self, block, train, Xv, yv, swv, template):
        self.block, self.train, self.template = block, train, template
        self.Xv, self.yv, self.swv = Xv, yv, swv
        self.full_batch = None  # (spec, the backend's FullBatch over train): see _block_sums

    def __getstate__(self):  # a part that moves to another worker leaves its workspaces
        return {k: getattr(self, k) for k in self.__slots__ if k != "full_batch"}

    def __setstate__(self, state):
        for k, v in state.items():
            setattr(self, k, v)
        self.full_batch = None

    @property
    def backend(self):
        return get_backend(self.template.backend)


@_sizeof.register(_Part)
def _sizeof_part(part):
    """Bytes a part holds (for the worker's memory accounting and spilling)."""
    d = part.train
    arrays = [d.X, d.Y, d.y, d.sw, d.raw, part.Xv, part.yv, part.swv, d.sample_weight]
    return 1000 + sum(_sizeof(a) for a in arrays if a is not None)


def _prepare_part(template, class_weight, X, y, sw, block, first_row, holdout):
    """Validate and convert one block (runs on the worker holding it).

    class_weight: float64 weight per class of ``template.classes_`` or None.
    holdout: None; or (validation_fraction, seed): a random share of the
    block's rows, drawn from (seed, block), is set aside for early stopping
    (parameter averaging); or an int array: the block's rows (from 0) that the
    client's split, drawn as the local fit draws it, holds out (step-synchronous
    training).  Errors name the block and its rows.
    """
    try:
        data = template._prepare_data(X, y, None, False, False, None)
        w = None
        if sw is not None:
            w = _check_sample_weight(sw, data.X, dtype=np.float64, ensure_non_negative=True)
        if class_weight is not None:
            cw = class_weight[np.searchsorted(template.classes_, data.raw)]
            w = cw if w is None else cw * w
    except ValueError as exc:
        raise ValueError(f"Block {block} of the training data (rows {first_row} to "
                         f"{first_row + len(X) - 1}): {exc}") from exc
    if w is not None:
        data.sample_weight = w
        data.sw = np.ascontiguousarray(w, dtype=data.X.dtype)
    Xv = yv = swv = None
    if holdout is not None:
        if isinstance(holdout, np.ndarray):
            val_idx = holdout
        else:
            fraction, seed = holdout
            n_val = int(np.ceil(fraction * data.n))  # train_test_split's rule
            val_idx = np.sort(np.random.default_rng([seed, block]).permutation(data.n)[:n_val])
        train_idx = np.setdiff1d(np.arange(data.n), val_idx)
        Xv, yv = np.ascontiguousarray(data.X[val_idx]), data.raw[val_idx]
        swv = None if w is None else w[val_idx]
        data = data.subset(train_idx)
    return _Part(block, data, Xv, yv, swv, template)


def _part_summary(part):
    """(training rows, their weight sum, validation rows, their weight sum)."""
    d = part.train
    w_train = float(d.n if d.sample_weight is None else d.sample_weight.sum())
    n_val = 0 if part.Xv is None else part.Xv.shape[0]
    w_val = float(n_val if part.swv is None else part.swv.sum())
    return d.n, w_train, n_val, w_val


def _same_spec(a, b):
    """Whether two NetSpecs describe the same network (a round's spec is a fresh copy)."""
    if a is b:
        return True
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if not (np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y):
            return False
    return True


def _block_sums(part, theta, spec):
    """(sum_i w_i l_i, sum_i w_i dl_i/dtheta as float64) over the block's rows."""
    d = part.train
    grad = np.zeros(spec.n_params, dtype=spec.dtype)
    if d.n == 0:
        return 0.0, grad.astype(np.float64)
    # the FullBatch (its workspaces) is built by the fit's first round on this block
    # and kept with the part; taken out while in use, so that two threads running
    # rounds on the same part (a stale task beside its retry) never share one
    cached, part.full_batch = part.full_batch, None
    if cached is None or not _same_spec(cached[0], spec):
        cached = (spec, part.backend.FullBatch(spec, d.X, d.Y, d.y, d.sw))
    loss = cached[1](theta, grad)
    part.full_batch = cached
    return float(loss), grad.astype(np.float64, copy=False)


class _Shared:
    """What every block of a stochastic epoch starts from (sent with the epoch's round)."""

    def __init__(self, theta, opt):
        self.theta, self.opt = theta, opt


def _block_epoch(part, shared, spec, seed, epoch, batch_size, alpha, shuffle, learning_rate,
                 batches=None):
    """Local SGD/Adam steps over the block from the shared state (which stays unchanged):
    the whole epoch, or only its batches ``batches = (first, end)`` (averaging every K
    steps: the epoch's rounds each take the next K of the block's batches).

    ``learning_rate`` is passed on its own, so that a schedule changing it
    after the state was scattered for validation still reaches the epoch.

    Returns row-weighted sums for the average: (rows, summed batch loss x rows,
    rows * theta, rows * state1, rows * state2, rows * Adam's step count), rows
    being the rows this call trained on (0 when the block has no batch left).
    The shuffle is drawn from (seed, epoch, block), so a retry repeats it.
    """
    d = part.train
    n = d.n
    cap = min(int(batch_size), n)
    if shuffle and n:
        order = np.random.default_rng([seed, epoch, part.block]).permutation(n)
    else:
        order = np.arange(n)
    if batches is not None:
        order = order[batches[0] * cap:batches[1] * cap]
    if order.shape[0] == 0:
        z = np.zeros(spec.n_params)
        return 0.0, 0.0, z, z, np.zeros(shared.opt.state2.shape[0]), 0.0
    theta, opt = shared.theta.copy(), shared.opt.copy()
    opt.learning_rate = learning_rate
    trainer = part.backend.Trainer(spec, d.X, d.Y, d.y, d.sw, cap, theta, opt, alpha)
    total = trainer.epoch(np.ascontiguousarray(order, dtype=np.int64))
    theta = trainer.finish()
    r = float(order.shape[0])
    return (r, float(total), r * theta.astype(np.float64), r * opt.state1.astype(np.float64),
            r * opt.state2.astype(np.float64), r * float(opt.hyper[ADAM_T]))


class _Step:
    """What every block of a synchronous step gets: the current parameters and, for
    each block (by its index along the rows), its rows of the step's minibatch (positions
    in the block's training rows, in the minibatch's order).  With dropout (a
    ``layout.Dropout``, else None): ``gids``, each block's rows as indices in the local
    fit's training rows (the masks' key), and the epoch's number."""

    def __init__(self, theta, rows, dropout=None, gids=None, epoch=0):
        self.theta, self.rows = theta, rows
        self.dropout, self.gids, self.epoch = dropout, gids, epoch


def _block_step(part, step, spec):
    """(sum_i w_i l_i, sum_i w_i, sum_i w_i dl_i/dtheta as float64) over the block's rows
    of one minibatch: the block's share of a synchronous step (zeros when it has none).

    Unnormalised and without the L2 term, like ``_block_sums``: the client adds the
    blocks' shares along the block tree and takes the step as the local epoch does.
    """
    d = part.train
    idx = step.rows.get(part.block)
    grad = np.zeros(spec.n_params, dtype=spec.dtype)
    if idx is None or idx.shape[0] == 0:
        return 0.0, 0.0, grad.astype(np.float64)
    sw = _rows(d.sw, idx)
    drop = {}
    if step.dropout is not None:  # the local epoch's masks for these rows
        drop = dict(dropout=step.dropout, rows=step.gids[part.block], epoch=step.epoch)
    sums = part.backend.FullBatch(spec, d.X[idx], _rows(d.Y, idx), _rows(d.y, idx), sw,
                                  **drop)
    loss = sums(step.theta, grad)
    wsum = float(idx.shape[0]) if sw.shape[0] == 0 else float(sw.sum(dtype=np.float64))
    return float(loss), wsum, grad.astype(np.float64, copy=False)


def _block_validation(part, shared, spec, y_mean):
    """Sums for the validation score and loss of the block's held-out rows.

    Classifier (y_mean None): (W, W * accuracy, W * loss).  Regressor:
    (W, W * loss, per-output weighted squared residuals, per-output weighted
    squared deviations from the validation mean y_mean); nan when a
    prediction is not finite.
    """
    est = part.template
    n_out = 1 if y_mean is None else y_mean.shape[0]
    if part.Xv is None or part.Xv.shape[0] == 0:
        return (0.0, 0.0, 0.0) if y_mean is None else (0.0, 0.0, np.zeros(n_out),
                                                       np.zeros(n_out))
    W = float(part.Xv.shape[0] if part.swv is None else part.swv.sum())
    score, loss = est._validation_metrics(spec, shared.theta, part.Xv, part.yv, part.swv)
    if y_mean is None:
        return W, W * score, W * loss
    P = part.backend.predict(spec, shared.theta, part.Xv, True).astype(np.float64)
    Y = part.yv.reshape(-1, 1) if part.yv.ndim == 1 else part.yv
    w = np.ones(Y.shape[0]) if part.swv is None else part.swv
    with np.errstate(all="ignore"):
        res = (w[:, None] * (Y - P) ** 2).sum(axis=0)
    if not np.isfinite(score):
        res = np.full(n_out, np.nan)
    return W, W * loss, res, (w[:, None] * (Y - y_mean) ** 2).sum(axis=0)


def _val_target_sums(part):
    """(validation weight sum, per-output weighted sum of the targets)."""
    if part.Xv is None or part.Xv.shape[0] == 0:
        return 0.0, 0.0
    Y = part.yv.reshape(-1, 1) if part.yv.ndim == 1 else part.yv
    w = np.ones(Y.shape[0]) if part.swv is None else part.swv
    return float(w.sum()), (w[:, None] * Y).sum(axis=0)


def _block_label_counts(y):
    return np.unique(np.asarray(y), return_counts=True)


def _merge_label_counts(*blocks):
    labels = np.unique(np.concatenate([b[0] for b in blocks]))
    counts = np.zeros(labels.shape[0], dtype=np.int64)
    for lab, cnt in blocks:
        counts[np.searchsorted(labels, lab)] += cnt
    return labels, counts


def _predict_block(X, est, method):
    return getattr(est, method)(X)

