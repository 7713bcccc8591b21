"""The training loops, written once for every engine, as scikit-learn splits them.

``fit_stochastic`` runs SGD or Adam epoch by epoch: the stopping rule, the
learning-rate schedule, divergence, early stopping, the history, callbacks
and the verbose lines.  ``fit_lbfgs`` hands scipy's L-BFGS-B the full-batch
loss and gradient.  Neither touches an estimator: they read its constructor
parameters, run on an *engine*, and return a result (``StochasticFit``,
``LbfgsFit``) that the estimator publishes (``_BaseMLP._fit``: on a draft,
swapped in only when the whole fit succeeded).

An engine is where the rows are.  For ``fit_stochastic`` it has ``n_train``,
``start(theta, opt, batch_size)``, ``epoch(index)`` (the summed batch losses
x rows of one epoch, inf or nan where a loss overflowed), ``snapshot()`` (a copy of the
current weights), ``finish()`` (the final weights) and ``validation(theta)``
((score, loss) of the held-out rows, early stopping only); for ``fit_lbfgs``
it has ``weight_sum``, ``full_batch()`` (a callable (theta, grad) -> the
weighted loss sum, writing the gradient sum) and ``threads()`` (a context
for the run).  ``LocalEngine`` (below) is one process's rows on a backend
(CPU, CUDA; sparse rows included); ``fastmlp.dask._engine.ClusterEngine``
is a dask cluster's blocks (an epoch: one round per minibatch, or rounds of
per-block copies averaged).

The small named pieces scikit-learn's ``_fit_stochastic`` keeps inline:
``NoImprovement`` (the tol / n_iter_no_change rule), ``after_epoch_lr`` (the
"invscaling" schedule) and ``on_plateau`` (what "adaptive" does when the rule
fires).
"""

import contextlib
import time
import warnings

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils.optimize import _check_optimize_result

from . import _config, _fastpath
from ._callbacks import NO_CALLBACKS
from .backends.layout import FAN_IN, W_OFF, ZCOLS, B_OFF, A_OFF, UNITS

NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain "
              "large values and need to be preprocessed.")


class NoImprovement:
    """scikit-learn's stopping rule: count epochs that improve the tracked value by < tol.

    With early stopping the tracked value is the validation score (higher is
    better), otherwise the training loss (lower is better).  ``count`` resets
    to 0 on an improvement by at least ``tol``; training stops (or, for SGD
    with learning_rate="adaptive", the step shrinks) once ``count`` exceeds
    ``n_iter_no_change``.  ``n_iter_no_change=np.inf`` never fires.
    """

    def __init__(self, tol, patience, count=0, best_loss=np.inf, best_score=-np.inf):
        self.tol, self.patience, self.count = tol, patience, count
        self.best_loss, self.best_score = best_loss, best_score

    def loss(self, value):
        """Record a training loss; True when it is the best so far."""
        self.count = self.count + 1 if value > self.best_loss - self.tol else 0
        if value < self.best_loss:
            self.best_loss = value
            return True
        return False

    def score(self, value):
        """Record a validation score; True when it is the best so far (NaN never is)."""
        self.count = self.count + 1 if value < self.best_score + self.tol else 0
        if value > self.best_score:
            self.best_score = value
            return True
        return False

    @property
    def fired(self):
        return self.count > self.patience


def after_epoch_lr(params, opt, t):
    """The learning rate for the next epoch: scikit-learn's "invscaling" (SGD only)."""
    if params.solver == "sgd" and params.learning_rate == "invscaling":
        opt.learning_rate = params.learning_rate_init / (t + 1) ** params.power_t


def on_plateau(params, opt, rule, msg):
    """The rule fired: shrink the step ("adaptive" SGD) and go on, or stop (returns True)."""
    if params.solver == "sgd" and params.learning_rate == "adaptive":
        if opt.learning_rate > 1e-6:
            opt.learning_rate = opt.learning_rate / 5.0
            rule.count = 0
            if params.verbose:
                print(msg + f" Setting learning rate to {opt.learning_rate:f}")
            return False
        if params.verbose:
            print(msg + " Learning rate too small. Stopping.")
        return True
    if params.verbose:
        print(msg + " Stopping.")
    return True


def end_of_epoch(params, opt, rule, history, n_iter, n_train, tic):
    """What follows an epoch's loss (and validation score) being recorded: the verbose
    line, the learning-rate schedule and the stopping rule.  Returns True to stop."""
    if params.verbose:
        dt = time.perf_counter() - tic
        line = (f"Iteration {n_iter}, loss = {history.loss_curve[-1]:.8f}, "
                f"time = {dt:.3f}s, {n_train / max(dt, 1e-12):.0f} samples/s")
        if params.early_stopping:
            line += (f", validation score = {history.validation_scores[-1]:.6f}, "
                     f"validation loss = {history.validation_losses[-1]:.8f}")
        print(line)
    after_epoch_lr(params, opt, history.t)
    if not rule.fired:
        return False
    what = "Validation score" if params.early_stopping else "Training loss"
    msg = (f"{what} did not improve more than tol={params.tol:f} for "
           f"{params.n_iter_no_change} consecutive epochs.")
    return on_plateau(params, opt, rule, msg)


def validation_split(data, fraction, stratify, rng):
    """Indices (train, validation) as scikit-learn's early stopping draws them.

    ``stratify``: None, or what scikit-learn stratifies on for a single-output
    classifier (the label-binarized rows as booleans, so the split and the
    error for a class with a single member are scikit-learn's, which names the
    class as its binarized row: ``['False']``).
    """
    idx = np.arange(data.n)
    train_idx, val_idx = train_test_split(
        idx, random_state=rng, test_size=fraction, stratify=stratify)
    if val_idx.shape[0] < 2:
        raise ValueError(
            "The validation set is too small. Increase 'validation_fraction' "
            "or the size of your dataset.")
    return train_idx, val_idx


def batch_size_for(params, n_train):
    if params.batch_size == "auto":
        return min(200, n_train)
    if params.batch_size > n_train:
        warnings.warn(
            f"Got `batch_size` larger than the {n_train} training samples "
            f"(batch_size={params.batch_size}); it is going to be clipped.")
    return int(np.clip(params.batch_size, 1, n_train))


class History:
    """The per-epoch record a stochastic fit carries over (warm_start, partial_fit).

    The estimator builds it from its fitted attributes (a fresh one for a
    first fit) and publishes the one ``fit_stochastic`` returns.
    """

    def __init__(self, loss_curve=(), t=0, no_improvement=0, best_loss=None, best_score=None,
                 validation_scores=None, validation_losses=None):
        self.loss_curve, self.t, self.no_improvement = list(loss_curve), t, no_improvement
        self.best_loss, self.best_score = best_loss, best_score
        self.validation_scores = list(validation_scores) if validation_scores is not None else []
        self.validation_losses = list(validation_losses) if validation_losses is not None else []


class StochasticFit:
    """What ``fit_stochastic`` returns: the weights, the optimizer state (to continue
    from), the history and this call's epochs."""

    def __init__(self, theta, opt, history, n_iter):
        self.theta, self.opt, self.history, self.n_iter = theta, opt, history, n_iter


class LbfgsFit:
    """What ``fit_lbfgs`` returns: the weights, the final loss, the iterations and
    the number of full-batch evaluations."""

    def __init__(self, theta, loss, n_iter, evaluations):
        self.theta, self.loss, self.n_iter, self.evaluations = theta, loss, n_iter, evaluations


def fit_stochastic(params, engine, theta, opt, history, *, incremental=False,
                   callbacks=NO_CALLBACKS, reconstruct=None):
    """SGD / Adam, epoch by epoch on ``engine``; returns a ``StochasticFit``.

    params: the estimator, read for its constructor parameters only (solver,
    max_iter, tol, early_stopping, verbose, ...).  engine: where the epochs
    run (see the module docstring); theta, opt: the starting weights and
    optimizer state (opt is updated in place: the schedule's learning rate);
    history: the record to continue (``History``); incremental: one epoch, no
    max_iter warning (partial_fit).  callbacks: an ``EpochCallbacks`` (begun
    here, ended per epoch; its ``fit_end`` is the caller's, after publishing);
    reconstruct(theta): the attributes of an estimator predicting with theta.
    """
    p = params
    rule = NoImprovement(p.tol, p.n_iter_no_change, history.no_improvement,
                         np.inf if history.best_loss is None else history.best_loss,
                         -np.inf if history.best_score is None else history.best_score)
    n_train = engine.n_train
    engine.start(theta, opt, batch_size_for(p, n_train))
    callbacks.begin()

    def fitted_now():
        return reconstruct(engine.snapshot())

    best_theta = theta.copy() if p.early_stopping else None
    max_epochs = 1 if incremental else p.max_iter
    epoch0 = len(history.loss_curve)
    n_iter = 0  # as in scikit-learn, n_iter_ counts this call's epochs (t_ keeps counting)
    for _ in range(max_epochs):
        callbacks.epoch_begin()
        tic = time.perf_counter()
        total = engine.epoch(epoch0 + n_iter)
        n_iter += 1
        history.t += n_train
        if not np.isfinite(total) and p.early_stopping:
            history.loss_curve.append(np.nan)
            history.validation_scores.append(np.nan)
            history.validation_losses.append(np.nan)
            warnings.warn(
                f"Training diverged in epoch {n_iter}: the loss became {total}. The validation "
                f"score is recorded as nan, training stopped, and the weights of the best "
                f"validation score ({rule.best_score:.6g}) were restored. Lower "
                "learning_rate_init or standardise the inputs.", ConvergenceWarning)
            callbacks.epoch_end(fitted_now)
            break
        loss = total / n_train
        history.loss_curve.append(loss)
        if p.early_stopping:
            current = engine.snapshot()
            val_score, val_loss = engine.validation(current)
            history.validation_scores.append(val_score)
            history.validation_losses.append(val_loss)
            if rule.score(val_score):
                best_theta = current
        else:
            rule.loss(loss)
        stop = end_of_epoch(p, opt, rule, history, n_iter, n_train, tic)
        if callbacks.epoch_end(fitted_now):
            if p.verbose:
                print("A callback asked to stop.")
            stop = True
        if stop:
            break
        if not np.isfinite(total) and np.isnan(engine.snapshot()).any():
            # Without early stopping scikit-learn trains on after a loss overflows (the
            # weights may still be finite, and then the fit ends with a loss of inf).
            # Once a weight is NaN every later output, loss and step is NaN, and a NaN
            # loss never counts as "no improvement": scikit-learn runs to max_iter,
            # warns, and then raises.  The same, without the NaN epochs:
            if not incremental:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({p.max_iter}) reached "
                    "and the optimization hasn't converged yet.", ConvergenceWarning)
            raise ValueError(
                f"{NON_FINITE} Training diverged in epoch {n_iter}: the loss became "
                f"{total}. Lower learning_rate_init (now {p.learning_rate_init}) or "
                "standardise the inputs; the estimator was left as it was before this call.")
        if not incremental and n_iter == p.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({p.max_iter}) reached and "
                "the optimization hasn't converged yet.", ConvergenceWarning)

    theta = engine.finish()
    if p.early_stopping:
        theta = best_theta
    if not np.all(np.isfinite(theta)):
        raise ValueError(NON_FINITE)
    history.no_improvement = rule.count
    history.best_loss = None if p.early_stopping else rule.best_loss
    history.best_score = rule.best_score if p.early_stopping else None
    return StochasticFit(theta, opt, history, n_iter)


def fit_lbfgs(params, engine, spec, theta, n_outputs, out_activation, *,
              callbacks=NO_CALLBACKS, reconstruct=None):
    """L-BFGS-B over ``engine``'s full-batch sums; returns an ``LbfgsFit``.

    params: the estimator, read for its constructor parameters only (alpha,
    max_iter, max_fun, tol, verbose).  callbacks, reconstruct: as in
    ``fit_stochastic`` (an iteration is an epoch).
    """
    objective = LbfgsObjective(spec, engine.full_batch(), engine.weight_sum, params.alpha,
                               n_outputs, out_activation)
    callbacks.begin()
    with engine.threads():
        x, loss, n_iter = minimize_lbfgs(params, objective, objective.pack(theta),
                                         callbacks if callbacks.active else None, reconstruct)
    theta = objective.unpack(x)
    if not np.all(np.isfinite(theta)):
        raise ValueError(NON_FINITE)
    return LbfgsFit(theta, loss, n_iter, objective.n_evals)


class LocalEngine:
    """The engine of one process's rows on a backend (CPU or CUDA): the local estimators'.

    data: the training rows (``_TrainData``; after an early-stopping split,
    its training part); rng and shuffle: the epochs' order, drawn as
    scikit-learn draws it; validation(theta) -> (score, loss) of the held-out
    rows (early stopping).  A sparse X goes to the backend as CSR, or as dense
    rows a chunk at a time where ``densify`` says so.  dropout: None or a
    ``backends.layout.Dropout``, handed to the trainer with each epoch's index.
    """

    def __init__(self, backend, spec, data, alpha, rng=None, shuffle=False, validation=None,
                 dropout=None):
        self.backend, self.spec, self.data, self.alpha = backend, spec, data, alpha
        self.dropout = dropout
        self.rng, self.shuffle, self.validation = rng, shuffle, validation
        self.n_train = data.n
        self.weight_sum = float(data.n if data.sample_weight is None
                                else data.sample_weight.sum())
        self.trainer = self.order = None

    def start(self, theta, opt, batch_size):
        d = self.data
        if densify(self.backend, d.X):
            self.trainer = SparseRowsTrainer(self.backend, self.spec, d, batch_size, theta, opt,
                                             self.alpha, self.dropout)
        else:
            self.trainer = self.backend.Trainer(self.spec, d.X, d.Y, d.y, d.sw, batch_size,
                                                theta, opt, self.alpha, dropout=self.dropout)
        self.order = np.arange(self.n_train)

    def epoch(self, index):
        """One compiled epoch over the rows in a fresh order; the summed batch losses x rows."""
        if self.shuffle:
            self.order = _fastpath.shuffled(self.order, self.rng)  # = sklearn.utils.shuffle
        return self.trainer.epoch(np.ascontiguousarray(self.order, dtype=np.int64), index)

    def snapshot(self):
        return self.trainer.snapshot()

    def finish(self):
        return self.trainer.finish()

    def full_batch(self):
        """sums(theta, grad) -> sum_i w_i l_i, writing the unnormalised gradient."""
        d = self.data
        if densify(self.backend, d.X):
            return SparseRowsFullBatch(self.backend, self.spec, d)
        return self.backend.FullBatch(self.spec, d.X, d.Y, d.y, d.sw)

    def threads(self):
        # the CPU backend keeps NumPy's BLAS threads from fighting the kernels' (see
        # cpu.host_blas_serial); other backends need nothing
        return getattr(self.backend, "host_blas_serial", contextlib.nullcontext)()


def densify(backend, X):
    """Whether the sparse X is given to the backend as dense rows, a chunk at a time
    (``SparseRowsTrainer``, ``SparseRowsFullBatch``): where the backend does not take
    CSR, or where X is dense enough for BLAS to be faster
    (``_config.SPARSE_DENSIFY_ABOVE``).  A dense X: False."""
    if not sp.issparse(X):
        return False
    if not getattr(backend, "TAKES_CSR", False):
        return True
    n, d = X.shape
    return X.nnz > float(_config.SPARSE_DENSIFY_ABOVE) * n * d


def _rows(a, idx):
    """Rows idx of a per-row array (arrays with 0 rows stand for 'not used')."""
    return np.ascontiguousarray(a[idx]) if a.shape[0] else a


class SparseRowsTrainer:
    """A backend Trainer over sparse training data, densified a chunk of rows at a time
    (where ``densify`` says so; otherwise the backend's Trainer takes the CSR matrix).

    Each epoch walks the shuffled order in chunks of whole batches (about
    ``_config.SPARSE_CHUNK_BYTES`` of dense rows), densifies those rows in the model's
    dtype and runs the backend's compiled epoch over them, so the batches,
    their order and every update are those of the dense fit, while memory
    holds one dense chunk instead of the whole matrix.  theta and the
    optimizer state are carried from chunk to chunk (in place on the CPU; a
    GPU trainer copies them back at ``finish``).
    """

    def __init__(self, backend, spec, data, batch_size, theta, opt, alpha, dropout=None):
        self.backend, self.spec, self.data, self.dropout = backend, spec, data, dropout
        self.batch_size, self.theta, self.opt, self.alpha = batch_size, theta, opt, alpha
        row_bytes = data.X.shape[1] * np.dtype(spec.dtype).itemsize
        rows = max(1, int(_config.SPARSE_CHUNK_BYTES) // max(1, row_bytes))
        self.chunk = max(1, rows // batch_size) * batch_size

    def epoch(self, order, index=0):
        d = self.data
        total = 0.0
        for start in range(0, order.shape[0], self.chunk):
            idx = order[start:start + self.chunk]
            trainer = self.backend.Trainer(
                self.spec, d.X[idx].toarray(), _rows(d.Y, idx), _rows(d.y, idx),
                _rows(d.sw, idx), self.batch_size, self.theta, self.opt, self.alpha,
                dropout=self.dropout, rows=np.ascontiguousarray(idx, dtype=np.int64))
            part = trainer.epoch(np.arange(idx.shape[0], dtype=np.int64), index)
            self.theta = trainer.finish()
            trainer = None  # this chunk's dense rows go before the next chunk's come
            total += part
        return total

    def snapshot(self):
        return self.theta.copy()

    def finish(self):
        return self.theta


class SparseRowsFullBatch:
    """The backend's full-batch sums over sparse rows, densified a chunk at a time.

    Chunks of ``_config.FULL_BATCH_CHUNK_ROWS`` rows, added in order: the
    sums the dense path computes, with one dense chunk in memory.
    """

    def __init__(self, backend, spec, data):
        self.backend, self.spec, self.data = backend, spec, data
        self.chunk = max(1, int(_config.FULL_BATCH_CHUNK_ROWS))
        self.part = np.empty(spec.n_params, dtype=spec.dtype)

    def __call__(self, theta, grad):
        d = self.data
        grad[:] = 0.0
        total = 0.0
        for start in range(0, d.n, self.chunk):
            idx = slice(start, min(d.n, start + self.chunk))
            sums = self.backend.FullBatch(self.spec, d.X[idx].toarray(), _rows(d.Y, idx),
                                          _rows(d.y, idx), _rows(d.sw, idx))
            total += sums(theta, self.part)
            grad += self.part
        return total


def sklearn_order(spec):
    """Positions in theta of scikit-learn's packed vector (every coef, then every
    intercept), followed by the prelu slopes; and the number of coef entries.

    L-BFGS sees the parameters in scikit-learn's order, so that its dot
    products add up in the same order and a float64 fit follows scikit-learn's
    iterates to rounding.
    """
    coef, inter, slopes = [], [], []
    for r in spec.layers:
        fi, zc = int(r[FAN_IN]), int(r[ZCOLS])
        coef.append(np.arange(r[W_OFF], r[W_OFF] + fi * zc))
        inter.append(np.arange(r[B_OFF], r[B_OFF] + zc))
        if r[A_OFF] >= 0:
            slopes.append(np.arange(r[A_OFF], r[A_OFF] + r[UNITS]))
    n_coef = sum(len(c) for c in coef)
    return np.concatenate(coef + inter + slopes).astype(np.intp), n_coef


class LbfgsObjective:
    """scikit-learn's lbfgs objective over the backend's compiled full-batch sums.

    ``__call__(x)`` returns (loss, gradient) for scikit-learn's packed vector x:
    loss = sum_i w_i l_i / (W k) + alpha / (2 W) * |coefs|^2, where k is the
    number of outputs for the identity output (scikit-learn's squared loss
    averages over outputs while its gradient follows the sum) and 1 otherwise.
    ``sums`` is any callable (theta, grad) -> sum_i w_i l_i writing the
    unnormalised gradient (a backend's ``FullBatch``, or a sum over blocks).
    """

    def __init__(self, spec, sums, weight_sum, alpha, n_outputs, out_activation):
        self.spec, self.sums = spec, sums
        self.perm, self.n_coef = sklearn_order(spec)
        self.theta = np.empty(spec.n_params, dtype=spec.dtype)
        self.grad = np.empty(spec.n_params, dtype=spec.dtype)
        self.W, self.alpha = float(weight_sum), float(alpha)
        self.k = n_outputs if out_activation == "identity" else 1
        self.n_evals = 0

    def pack(self, theta):
        return np.asarray(theta, dtype=np.float64)[self.perm]

    def unpack(self, x):
        theta = np.empty(self.spec.n_params, dtype=self.spec.dtype)
        theta[self.perm] = x
        return theta

    def __call__(self, x):
        self.n_evals += 1
        self.theta[self.perm] = x
        data = self.sums(self.theta, self.grad)
        g = self.grad[self.perm].astype(np.float64)
        xc = x[:self.n_coef]
        loss = data / (self.W * self.k) + 0.5 * self.alpha * float(np.dot(xc, xc)) / self.W
        g /= self.W
        g[:self.n_coef] += (self.alpha / self.W) * xc
        return loss, g


def minimize_lbfgs(params, objective, x0, callbacks=None, reconstruct=None):
    """scipy's L-BFGS-B with scikit-learn's options; returns (x, loss, n_iter)."""
    it = [0]

    def progress(intermediate_result):
        it[0] += 1
        if params.verbose:
            print(f"Iteration {it[0]}, loss = {intermediate_result.fun:.8f}")
        if callbacks is not None:
            theta = objective.unpack(intermediate_result.x)
            stop = callbacks.epoch_end(lambda: reconstruct(theta))
            if stop:
                raise StopIteration
            callbacks.epoch_begin()

    if callbacks is not None:
        callbacks.epoch_begin()
    res = scipy.optimize.minimize(
        objective, x0, method="L-BFGS-B", jac=True, callback=progress,
        options={"maxfun": params.max_fun, "maxiter": params.max_iter, "gtol": params.tol})
    if res.status == 99 or "callback" in str(res.message).lower():
        n_iter = min(res.nit, params.max_iter)  # a callback asked to stop: no warning
    else:
        n_iter = _check_optimize_result("lbfgs", res, params.max_iter)
    return res.x, float(res.fun), n_iter
