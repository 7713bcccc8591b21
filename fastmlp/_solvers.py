"""The two solver families of the estimators, as scikit-learn splits them.

``fit_stochastic`` runs SGD or Adam epoch by epoch (each epoch one compiled
call of the backend's ``Trainer``); ``fit_lbfgs`` hands scipy's L-BFGS-B a
function that evaluates the full-batch loss and gradient in one compiled call
of the backend's ``FullBatch``.  Both work on a *draft* estimator: they set
fitted attributes on it, and the estimator publishes the draft only when the
whole fit succeeded (``_BaseMLP._fit``), so a failed or interrupted fit
leaves the user's estimator as it was.

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
from ._callbacks import EpochCallbacks
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


def after_epoch_lr(est, opt, t):
    """The learning rate for the next epoch: scikit-learn's "invscaling" (SGD only)."""
    if est.solver == "sgd" and est.learning_rate == "invscaling":
        opt.learning_rate = est.learning_rate_init / (t + 1) ** est.power_t


def on_plateau(est, opt, rule, msg):
    """The rule fired: shrink the step ("adaptive" SGD) and go on, or stop (returns True)."""
    if est.solver == "sgd" and est.learning_rate == "adaptive":
        if opt.learning_rate > 1e-6:
            opt.learning_rate = opt.learning_rate / 5.0
            rule.count = 0
            if est.verbose:
                print(msg + f" Setting learning rate to {opt.learning_rate:f}")
            return False
        if est.verbose:
            print(msg + " Learning rate too small. Stopping.")
        return True
    if est.verbose:
        print(msg + " Stopping.")
    return True


def end_of_epoch(est, opt, rule, history, n_iter, n_train, tic):
    """What follows an epoch's loss (and validation score) being recorded: the verbose
    line, the learning-rate schedule and the stopping rule.  Returns True to stop."""
    if est.verbose:
        dt = time.perf_counter() - tic
        line = (f"Iteration {n_iter}, loss = {history.loss_curve[-1]:.8f}, "
                f"time = {dt:.3f}s, {n_train / max(dt, 1e-12):.0f} samples/s")
        if est.early_stopping:
            line += (f", validation score = {history.validation_scores[-1]:.6f}, "
                     f"validation loss = {history.validation_losses[-1]:.8f}")
        print(line)
    after_epoch_lr(est, opt, history.t)
    if not rule.fired:
        return False
    what = "Validation score" if est.early_stopping else "Training loss"
    msg = (f"{what} did not improve more than tol={est.tol:f} for "
           f"{est.n_iter_no_change} consecutive epochs.")
    return on_plateau(est, opt, rule, msg)


def validation_split(est, data, rng):
    """Indices (train, validation) as scikit-learn's early stopping draws them.

    Stratified for single-output classifiers (scikit-learn's rule), on what
    scikit-learn stratifies on: the label-binarized rows as booleans, so the
    split and the error for a class with a single member are scikit-learn's
    (which names the class as its binarized row: ``['False']``).
    """
    idx = np.arange(data.n)
    stratify = None
    if data.classifier and data.n_outputs == 1:
        stratify = est._label_binarizer.transform(data.raw).astype(bool)
    train_idx, val_idx = train_test_split(
        idx, random_state=rng, test_size=est.validation_fraction, stratify=stratify)
    if val_idx.shape[0] < 2:
        raise ValueError(
            "The validation set is too small. Increase 'validation_fraction' "
            "or the size of your dataset.")
    return train_idx, val_idx


def batch_size_for(est, n_train):
    if est.batch_size == "auto":
        return min(200, n_train)
    if est.batch_size > n_train:
        warnings.warn(
            f"Got `batch_size` larger than the {n_train} training samples "
            f"(batch_size={est.batch_size}); it is going to be clipped.")
    return int(np.clip(est.batch_size, 1, n_train))


def fit_stochastic(est, backend, spec, theta, data, rng, first_pass, incremental, owner):
    """SGD / Adam on the draft ``est``; sets its fitted attributes."""
    opt = None
    if incremental and not first_pass:
        prev = getattr(est, "_opt_state", None)
        if prev is not None and prev.state1.shape == theta.shape and prev.solver == est._solver_code:
            opt = prev.copy()  # trained on the side; published only if the call succeeds
    if opt is None:
        opt = est._new_optimizer(theta)

    history = _History.start(est, first_pass)
    rule = NoImprovement(est.tol, est.n_iter_no_change, history.no_improvement,
                         np.inf if history.best_loss is None else history.best_loss,
                         -np.inf if history.best_score is None else history.best_score)

    X_all, sample_weight = data.X, data.sample_weight
    Xv = yv = swv = None
    if est.early_stopping:
        train_idx, val_idx = validation_split(est, data, rng)
        Xv, yv = data.X[val_idx], data.raw[val_idx]
        swv = None if sample_weight is None else sample_weight[val_idx]
        data = data.subset(train_idx)
    n_train = data.n
    batch_size = batch_size_for(est, n_train)

    if densify(backend, data.X):
        trainer = SparseRowsTrainer(backend, spec, data, batch_size, theta, opt, est.alpha)
    else:
        trainer = backend.Trainer(spec, data.X, data.Y, data.y, data.sw, batch_size, theta, opt,
                                  est.alpha)
    callbacks = EpochCallbacks(
        owner, X_all, data.raw_all, 1 if incremental else est.max_iter,
        None if sample_weight is None else {"sample_weight": sample_weight})

    def fitted_now():
        return est._fitted_state(spec, trainer.snapshot(), data.n_outputs, data.out_activation)

    best_theta = theta.copy() if est.early_stopping else None
    order = np.arange(n_train)
    max_epochs = 1 if incremental else est.max_iter
    n_iter = 0  # as in scikit-learn, n_iter_ counts this call's epochs (t_ keeps counting)
    for _ in range(max_epochs):
        callbacks.epoch_begin()
        tic = time.perf_counter()
        if est.shuffle:
            order = _fastpath.shuffled(order, rng)  # = sklearn.utils.shuffle, 3x faster
        total = trainer.epoch(np.ascontiguousarray(order, dtype=np.int64))
        n_iter += 1
        history.t += n_train
        if not np.isfinite(total):
            if not est.early_stopping:
                if not incremental:
                    # scikit-learn trains on through the NaN epochs (a NaN loss never counts
                    # as "no improvement") to max_iter, warns that it did not converge, and
                    # only then finds the weights non-finite
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) reached "
                        "and the optimization hasn't converged yet.", ConvergenceWarning)
                raise ValueError(
                    f"{NON_FINITE} Training diverged in epoch {n_iter}: the loss became "
                    f"{total}. Lower learning_rate_init (now {est.learning_rate_init}) or "
                    "standardise the inputs; the estimator was left as it was before this call.")
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
        if est.early_stopping:
            current = trainer.snapshot()
            val_score, val_loss = est._validation_metrics(spec, current, Xv, yv, swv)
            history.validation_scores.append(val_score)
            history.validation_losses.append(val_loss)
            if rule.score(val_score):
                best_theta = current
        else:
            rule.loss(loss)
        stop = end_of_epoch(est, opt, rule, history, n_iter, n_train, tic)
        if callbacks.epoch_end(fitted_now):
            if est.verbose:
                print("A callback asked to stop.")
            stop = True
        if stop:
            break
        if not incremental and n_iter == est.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) reached and "
                "the optimization hasn't converged yet.", ConvergenceWarning)

    theta = trainer.finish()
    if est.early_stopping:
        theta = best_theta
    if not np.all(np.isfinite(theta)):
        raise ValueError(NON_FINITE)
    history.no_improvement = rule.count
    history.best_loss = None if est.early_stopping else rule.best_loss
    history.best_score = rule.best_score if est.early_stopping else None
    est._publish_weights(spec, theta, data)
    est._opt_state = opt
    history.store(est, n_iter)
    callbacks.fit_end(est._fitted_attributes)


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

    def __init__(self, backend, spec, data, batch_size, theta, opt, alpha):
        self.backend, self.spec, self.data = backend, spec, data
        self.batch_size, self.theta, self.opt, self.alpha = batch_size, theta, opt, alpha
        row_bytes = data.X.shape[1] * np.dtype(spec.dtype).itemsize
        rows = max(1, int(_config.SPARSE_CHUNK_BYTES) // max(1, row_bytes))
        self.chunk = max(1, rows // batch_size) * batch_size

    def epoch(self, order):
        d = self.data
        total = 0.0
        for start in range(0, order.shape[0], self.chunk):
            idx = order[start:start + self.chunk]
            trainer = self.backend.Trainer(
                self.spec, d.X[idx].toarray(), _rows(d.Y, idx), _rows(d.y, idx),
                _rows(d.sw, idx), self.batch_size, self.theta, self.opt, self.alpha)
            part = trainer.epoch(np.arange(idx.shape[0], dtype=np.int64))
            self.theta = trainer.finish()
            trainer = None  # this chunk's dense rows go before the next chunk's come
            if not np.isfinite(part):
                return np.nan
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


class _History:
    """The per-epoch record a stochastic fit carries over (warm_start, partial_fit)."""

    @classmethod
    def start(cls, est, first_pass):
        h = cls()
        keep = not first_pass and hasattr(est, "loss_curve_")
        h.loss_curve = list(est.loss_curve_) if keep else []
        h.t = est.t_ if keep else 0
        h.no_improvement = getattr(est, "_no_improvement_count", 0) if keep else 0
        h.best_loss = getattr(est, "best_loss_", None) if keep else None
        h.best_score = getattr(est, "best_validation_score_", None) if keep else None
        prev_scores = getattr(est, "validation_scores_", None) if keep else None
        prev_losses = getattr(est, "validation_loss_curve_", None) if keep else None
        h.validation_scores = list(prev_scores) if prev_scores is not None else []
        h.validation_losses = list(prev_losses) if prev_losses is not None else []
        return h

    def store(self, est, n_iter):
        est.loss_curve_ = self.loss_curve
        est.loss_ = self.loss_curve[-1]
        est.n_iter_ = n_iter
        est.t_ = self.t
        est.best_loss_ = self.best_loss
        if est.early_stopping:
            est.validation_scores_ = self.validation_scores
            est.validation_loss_curve_ = self.validation_losses
            est.best_validation_score_ = self.best_score
        else:
            est.validation_scores_ = None
            est.validation_loss_curve_ = None
            est.best_validation_score_ = None
        est._no_improvement_count = self.no_improvement


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


def minimize_lbfgs(est, objective, x0, callbacks=None):
    """scipy's L-BFGS-B with scikit-learn's options; returns (x, loss, n_iter)."""
    it = [0]

    def progress(intermediate_result):
        it[0] += 1
        if est.verbose:
            print(f"Iteration {it[0]}, loss = {intermediate_result.fun:.8f}")
        if callbacks is not None:
            theta = objective.unpack(intermediate_result.x)
            stop = callbacks.epoch_end(lambda: est._fitted_state(
                objective.spec, theta, objective.spec.n_outputs, est._out_activation_pending))
            if stop:
                raise StopIteration
            callbacks.epoch_begin()

    if callbacks is not None:
        callbacks.epoch_begin()
    res = scipy.optimize.minimize(
        objective, x0, method="L-BFGS-B", jac=True, callback=progress,
        options={"maxfun": est.max_fun, "maxiter": est.max_iter, "gtol": est.tol})
    if res.status == 99 or "callback" in str(res.message).lower():
        n_iter = min(res.nit, est.max_iter)  # a callback asked to stop: no warning
    else:
        n_iter = _check_optimize_result("lbfgs", res, est.max_iter)
    return res.x, float(res.fun), n_iter


def fit_lbfgs(est, backend, spec, theta, data, first_pass, owner):
    """L-BFGS-B on the draft ``est``; sets its fitted attributes as scikit-learn does."""
    if densify(backend, data.X):
        sums = SparseRowsFullBatch(backend, spec, data)
    else:
        sums = backend.FullBatch(spec, data.X, data.Y, data.y, data.sw)
    W = float(data.n if data.sample_weight is None else data.sample_weight.sum())
    objective = LbfgsObjective(spec, sums, W, est.alpha, data.n_outputs, data.out_activation)
    callbacks = EpochCallbacks(
        owner, data.X, data.raw_all, est.max_iter,
        None if data.sample_weight is None else {"sample_weight": data.sample_weight})
    est._out_activation_pending = data.out_activation
    # the CPU backend keeps NumPy's BLAS threads from fighting the kernels' (see
    # cpu.host_blas_serial); other backends need nothing
    threads = getattr(backend, "host_blas_serial", contextlib.nullcontext)
    try:
        with threads():
            x, loss, n_iter = minimize_lbfgs(
                est, objective, objective.pack(theta), callbacks if callbacks.active else None)
    finally:
        del est._out_activation_pending
    theta = objective.unpack(x)
    if not np.all(np.isfinite(theta)):
        raise ValueError(NON_FINITE)
    est._publish_weights(spec, theta, data)
    est.n_iter_ = n_iter
    est.loss_ = loss
    if first_pass:
        est.t_ = 0
        for name in ("loss_curve_", "best_loss_", "validation_scores_",
                     "validation_loss_curve_", "best_validation_score_",
                     "_no_improvement_count", "_opt_state"):
            est.__dict__.pop(name, None)
    else:
        est.t_ = getattr(est, "t_", 0)
    callbacks.fit_end(est._fitted_attributes)
